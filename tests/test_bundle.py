"""Benchmark bundles (docs/bundles.md): export a run, rank a new metric against it without the zoo or the cache.

One toy run (6 models, 3 probe sets, an activation metric from the toy plugins, linear CKA and the weight
metric wCKA) is exported once per module; every test scores or damages its own copy.
"""

from __future__ import annotations

import io
import json
import shutil
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import simbench
from simbench.bundle import FORMAT_VERSION, export, open_bundle
from simbench.errors import UserError
from tests.conftest import TOY_PLUGINS, TOY_SUITE

SUITE = f"""schema = 1
[suite]
name = "toy"
extends = "{TOY_SUITE}"

[[metrics]]
name = "toy_gram_corr"

[[metrics]]
name = "linear_cka"

[[metrics]]
name = "wcka"

[[benchmarks]]
name = "functional_agreement"
n_bootstrap = 100
n_permutations = 19
"""
KEY = ["kind", "benchmark", "metric", "probe_set", "group", "model_a", "model_b", "statistic"]
NEW_METRIC = '''
from dataclasses import dataclass
import simbench

@dataclass(frozen=True)
class GramCosine(simbench.Metric):
    """Cosine similarity of the two representations' (uncentred) n x n Gram matrices."""
    name = "gram_cosine"

    def __call__(self, a, b):
        import torch
        ka, kb = a.double() @ a.double().T, b.double() @ b.double().T
        return float(torch.nn.functional.cosine_similarity(ka.flatten(), kb.flatten(), dim=0))

@simbench.hookimpl
def register_metrics(register):
    register(GramCosine)
'''


def joint(statistic: str) -> bool:
    """Statistics of the whole set of metrics (ranks, the best set, comparisons with the best, p-values adjusted
    over the metrics): they legitimately change when a metric joins; no other statistic of a bundled metric may."""
    return (statistic.startswith(("rank", "p_rank", "best", "in_best", "vs_best", "worse"))
            or "holm" in statistic or statistic.endswith("_adj_p"))


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    from simbench.registry import build_registry
    from simbench.runner import Runner
    from simbench.suite import RUN_DEFAULTS, load_suite

    root = tmp_path_factory.mktemp("published")
    reg = build_registry(plugin_files=[str(TOY_PLUGINS)])
    # metric cells in this process (a worker process per cell, for --plugin metrics, costs seconds here)
    isolation = '\n[run]\nisolation = "thread"\n' if "isolation" in RUN_DEFAULTS else ""
    (root / "toy-bundle.toml").write_text(SUITE + isolation)
    suite = load_suite(root / "toy-bundle.toml", reg)
    run = Runner(suite, reg, root / "run", cache_dir=root / "cache", quiet=True).run()
    export(run.path, root / "bundle", cache_dir=root / "cache", registry=reg)
    return root


def test_bundle_is_readable_without_simbench(published):
    b = published / "bundle"
    doc = json.loads((b / "bundle.json").read_text())
    assert doc["format"] == "simbench-bundle" and doc["format_version"] == FORMAT_VERSION
    ids = json.loads((b / "models.json").read_text())["ids"]
    assert ids == json.loads((published / "run/matrices/models.json").read_text())["ids"]
    assert [p["name"] for p in doc["probe_sets"]] == ["clean", "toy_jitter/0.5", "toy_jitter/2.0"]
    for rel, entry in doc["files"].items():  # every file listed with its size and sha256
        assert (b / rel).stat().st_size == entry["bytes"]
    x = np.load(b / "probe_sets/toy_jitter%2F0%2E5/x.npy", allow_pickle=False)
    rep = np.load(b / "representations/clean/0.npy", allow_pickle=False)
    out = np.load(b / "outputs/clean.npy", allow_pickle=False)
    assert x.shape[0] == rep.shape[0] == out.shape[1] == 40 and out.shape[0] == len(ids)
    assert doc["weights"] and (b / "weights/0/0.npy").exists()  # wCKA is a weight metric
    for rel in ("matrices/similarity/linear_cka/clean.npy", "matrices/agreement/clean.npy",
                "matrices/similarity/wcka/weights.npy"):
        assert (b / rel).read_bytes() == (published / "run" / rel).read_bytes()
    acc = pd.read_parquet(b / "accuracy.parquet")
    assert len(acc) == 3 * len(ids) and set(acc["statistic"]) == {"accuracy"}
    assert list(acc["model"][:len(ids)]) == ids


def test_score_with_an_empty_cache_reproduces_the_published_numbers(published, tmp_path, cli_here):
    (tmp_path / "gram_cosine.py").write_text(NEW_METRIC)
    work = tmp_path / "fresh"
    work.mkdir()
    r = cli_here("-p", str(TOY_PLUGINS), "score", str(tmp_path / "gram_cosine.py"), "--bundle",
                 str(published / "bundle"), "--out", "scored", "--cache-dir", "cache", cwd=work)
    assert r.returncode == 0, r.stderr
    # no zoo trained, no probe set or representation made, no published metric recomputed: the empty cache
    # now holds the new metric's three matrices and nothing else
    assert sorted(p.parent.name for p in (work / "cache").rglob("*.safetensors")) == ["similarity"] * 3
    manifest = json.loads((work / "scored/manifest.json").read_text())
    last = manifest["invocations"][-1]
    assert last["cells_computed"] == 3 + 1  # the new metric on 3 probe sets, the benchmark
    assert last["cells_reused"] == 3 + 2 * 3 + 1  # agreement x 3, toy_gram_corr and linear_cka x 3, wcka
    assert manifest["bundle"]["reproduced"]["ok"] and manifest["bundle"]["scored"] == ["gram_cosine"]
    for path in (published / "run/matrices").rglob("*.npy"):  # the published matrices, byte for byte
        assert (work / "scored/matrices" / path.relative_to(published / "run/matrices")).read_bytes() == path.read_bytes()
    before = pd.read_parquet(published / "run/results.parquet")
    after = pd.read_parquet(work / "scored/results.parquet")

    def bundled(frame):
        rows = frame[(frame["kind"] == "benchmark") & (frame["metric"] != "gram_cosine")]
        return rows[~rows["statistic"].map(joint)].fillna({c: -1.0 for c in frame if c.startswith("coord_")})

    coords = [c for c in before if c.startswith("coord_")]
    merged = bundled(before).merge(bundled(after), on=KEY + coords, how="left", suffixes=("_run", "_score"),
                                   validate="one_to_one")
    assert len(merged) > 100 and merged["status_score"].notna().all()
    np.testing.assert_allclose(merged["value_score"], merged["value_run"], rtol=0, atol=1e-12, equal_nan=True)
    assert ((after["metric"] == "gram_cosine") & (after["statistic"] == "pearson_r")).any()
    # the same leaderboard writer: the new metric is on the board, the bundled metrics' r are the run's
    board = json.loads(next((work / "scored/leaderboard").glob("*.json")).read_text())
    table = board["tables"][0]
    ranking = {r["metric"]: r for r in (dict(zip(table["columns"], row)) for row in table["rows"])}
    old = simbench.load(published / "run", plugins=[TOY_PLUGINS]).leaderboard.set_index("metric")
    assert "gram_cosine" in ranking
    for metric in ("toy_gram_corr", "linear_cka", "wcka"):
        assert ranking[metric]["pearson_r"] == pytest.approx(old.loc[metric, "pearson_r"], abs=1e-12)


@dataclass(frozen=True)
class WeightNormRatio(simbench.Metric):
    """Ratio of the two models' total weight norms (smaller over larger): a weight metric for the test."""

    name = "weight_norm_ratio"
    kind = "weight"

    def __call__(self, a, b):
        na, nb = sum(float(w.norm()) for w in a), sum(float(w.norm()) for w in b)
        return min(na, nb) / max(na, nb)


def test_python_api_scores_classes_and_weight_metrics(published, tmp_path):
    res = simbench.score([WeightNormRatio], bundle=published / "bundle", suite=published / "toy-bundle.toml",
                         plugins=[TOY_PLUGINS],
                         run_dir=tmp_path / "scored", cache_dir=tmp_path / "cache")
    assert "weight_norm_ratio" in set(res.leaderboard["metric"])
    ids, matrix = res.matrix("similarity", "weight_norm_ratio", "weights")  # computed on the bundled weights
    assert len(ids) == 6 and np.allclose(np.diag(matrix), 1.0)
    assert res.manifest["bundle"]["reproduced"]["ok"]
    with pytest.raises(UserError, match=r"another version of suite 'toy' \(sha256 \w+; its \[[a-z, ]*metrics"):
        simbench.score([WeightNormRatio], bundle=published / "bundle", suite=TOY_SUITE, plugins=[TOY_PLUGINS])
    with pytest.raises(UserError, match="already in bundle"):
        simbench.score("linear_cka", bundle=published / "bundle", plugins=[TOY_PLUGINS], run_dir=tmp_path / "x",
                       cache_dir=tmp_path / "c")


def _copy(published, tmp_path) -> Path:
    return Path(shutil.copytree(published / "bundle", tmp_path / "bundle"))


def test_a_tampered_file_is_refused_in_one_line(published, tmp_path, cli_here):
    b = _copy(published, tmp_path)
    rep = b / "representations/clean/0.npy"
    data = bytearray(rep.read_bytes())
    data[-1] ^= 1
    rep.write_bytes(bytes(data))
    r = cli_here("-p", str(TOY_PLUGINS), "score", "procrustes", "--bundle", str(b), "--out", str(tmp_path / "s"),
                 cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert "representations/clean/0.npy" in r.stderr and "sha256" in r.stderr
    assert cli_here("bundle", "verify", str(b)).returncode == 2
    assert cli_here("bundle", "verify", str(published / "bundle")).returncode == 0


def test_a_bundle_of_another_suite_or_format_is_refused(published, tmp_path, cli_here):
    r = cli_here("-p", str(TOY_PLUGINS), "score", "procrustes", "--bundle", str(published / "bundle"),
                 "--suite", "quick", "--out", str(tmp_path / "s"), cwd=tmp_path)
    assert r.returncode == 2 and "is a run of suite 'toy'" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    b = _copy(published, tmp_path)
    doc = json.loads((b / "bundle.json").read_text())
    (b / "bundle.json").write_text(json.dumps({**doc, "format_version": FORMAT_VERSION + 1}))
    with pytest.raises(UserError, match="bundle format version 2; this simbench reads version 1"):
        open_bundle(b)


def test_export_reads_the_cache_and_never_computes(published, tmp_path):
    reg = simbench.api.registry([TOY_PLUGINS])
    with pytest.raises(UserError, match="cache directory .*: not found; export reads the stage cache"):
        export(published / "run", tmp_path / "b", cache_dir=tmp_path / "no-cache", registry=reg)
    (tmp_path / "empty-cache").mkdir()
    with pytest.raises(UserError, match=r"cache entry zoo/\w+ is missing from .*--cache-dir"):
        export(published / "run", tmp_path / "b", cache_dir=tmp_path / "empty-cache", registry=reg)
    assert not any((tmp_path / "empty-cache").iterdir()) and not (tmp_path / "b").exists()
    with pytest.raises(UserError, match="already exists"):
        export(published / "run", published / "bundle", cache_dir=published / "cache")


def test_archives_round_trip_and_path_traversal_is_refused(published, tmp_path, cli_here):
    archive = tmp_path / "toy.tar.gz"
    r = cli_here("-p", str(TOY_PLUGINS), "bundle", "export", str(published / "run"), str(archive), "--cache-dir",
                 str(published / "cache"))
    assert r.returncode == 0 and f"wrote {archive}" in r.stdout, r.stderr
    assert cli_here("bundle", "verify", str(archive)).returncode == 0
    b = open_bundle(archive, unpack_dir=tmp_path / "unpacked")
    assert b.doc["n_models"] == 6 and (tmp_path / "unpacked/bundle.json").exists()

    evil_tar = tmp_path / "evil.tar"
    with tarfile.open(evil_tar, "w") as tf:
        info = tarfile.TarInfo("../escaped.txt")
        info.size = 3
        tf.addfile(info, io.BytesIO(b"bad"))
    with pytest.raises(UserError, match="leaves the bundle"):
        open_bundle(evil_tar, unpack_dir=tmp_path / "x")
    evil_zip = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil_zip, "w") as zf:
        zf.writestr("bundle/../../escaped.txt", "bad")
    with pytest.raises(UserError, match="leaves the bundle"):
        open_bundle(evil_zip, unpack_dir=tmp_path / "y")
    link_tar = tmp_path / "link.tar"
    with tarfile.open(link_tar, "w") as tf:
        info = tarfile.TarInfo("bundle.json")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(info)
    with pytest.raises(UserError, match="links and special files"):
        open_bundle(link_tar, unpack_dir=tmp_path / "z")
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path.parent / "escaped.txt").exists()


def test_hub_loader_on_a_local_repository_layout(published, tmp_path, monkeypatch):
    import huggingface_hub

    repo = tmp_path / "hub/datasets--simbench--toy-bundle/snapshots/abc123"  # the hub cache's snapshot layout
    shutil.copytree(published / "bundle", repo / "quick")
    calls = []

    def snapshot_download(repo_id, repo_type=None, revision=None, **kwargs):
        calls.append({"repo_id": repo_id, "repo_type": repo_type, "revision": revision, **kwargs})
        return str(repo)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    b = open_bundle("hf://simbench/toy-bundle@v1/quick")
    assert calls == [{"repo_id": "simbench/toy-bundle", "repo_type": "dataset", "revision": "v1",
                      "allow_patterns": ["quick/*"]}]
    assert b.root == repo / "quick" and b.suite["name"] == "toy"
    assert b.array("representations/clean/0.npy").shape[0] == 40

    def offline(**kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co' to load this file")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(UserError, match=r"^hf://simbench/other: cannot download from the Hugging Face hub"):
        open_bundle("hf://simbench/other")


def test_a_bundle_missing_a_published_cell_is_refused_not_recomputed(published, tmp_path):
    import hashlib

    b = _copy(published, tmp_path)
    cells = json.loads((b / "cells.json").read_text())
    cells["order"].remove("similarity/linear_cka/clean")
    del cells["cells"]["similarity/linear_cka/clean"]
    data = json.dumps(cells).encode()
    (b / "cells.json").write_bytes(data)
    doc = json.loads((b / "bundle.json").read_text())  # consistently re-signed: the check is on content
    doc["files"]["cells.json"] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    (b / "bundle.json").write_text(json.dumps(doc))
    with pytest.raises(UserError, match=r"cells.json lacks 1 of the run's cells \(similarity/linear_cka/clean"):
        simbench.score("procrustes", bundle=b, plugins=[TOY_PLUGINS], run_dir=tmp_path / "s",
                       cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.safetensors"))


def test_publish_can_write_each_runs_bundle_beside_its_board(published, tmp_path, cli_here):
    """`publish --bundle` writes <name>.bundle.tar.gz next to the board, readable and verified like an export."""
    out = tmp_path / "boards"
    r = cli_here("-p", str(TOY_PLUGINS), "publish", str(published / "run"), "--out", str(out), "--allow-dirty",
                 "--bundle", "--cache-dir", str(published / "cache"))
    assert r.returncode == 0, r.stderr
    archive = out / "toy.bundle.tar.gz"
    assert archive.is_file() and (out / "toy.json").is_file() and "wrote the bundle of toy" in r.stdout
    b = open_bundle(archive, unpack_dir=tmp_path / "unpacked")
    assert b.suite["name"] == "toy"
    # publishing again replaces the bundle it wrote (same name), it does not refuse or pile up
    r = cli_here("-p", str(TOY_PLUGINS), "publish", str(published / "run"), "--out", str(out), "--allow-dirty",
                 "--bundle", "--cache-dir", str(published / "cache"))
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in out.glob("*.bundle.tar.gz")) == ["toy.bundle.tar.gz"]
