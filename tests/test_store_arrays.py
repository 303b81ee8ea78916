"""Issue 17 item 4: similarity and agreement matrices are stored as array files, not one row per pair.

A run writes each matrix once (``matrices/**.npy``, float64) with its model
order in ``matrices/models.json``; the cell keeps a pointer and the sha256;
``results.parquet`` keeps one row per matrix.  Run directories of the
previous format (one row per pair, the matrix as a JSON list in the cell)
still render, and a writer resuming one rewrites those cells as arrays.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from simbench import leaderboard
from simbench.errors import MeasurementFailed
from simbench.results import COLUMNS, MATRICES_DIR, RunDir, matrix_path, normalise_frame
from simbench.runner import Runner
from simbench.suite import load_suite
from tests.conftest import TOY_SUITE

#: a symmetric toy metric, an asymmetric built-in (both directions stored), a weight metric
#: (stored once under "weights") and one that fails (a failed cell: no array)
METRICS = ("metrics=[{name='toy_gram_corr'}, {name='linear_regression_r2'}, {name='wcka'}, "
           "{name='toy_raises'}]")
SYMMETRIC = {"toy_gram_corr": True, "linear_regression_r2": False, "wcka": True}


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def run_toy(path, registry, cache, overrides=(METRICS,)):
    suite = load_suite(TOY_SUITE, registry, list(overrides))
    runner = Runner(suite, registry, path, cache_dir=cache, quiet=True)
    return runner, runner.run()


def bits(a) -> bytes:
    """The exact float64 bit pattern (NaN payloads and -0.0 included)."""
    return np.ascontiguousarray(np.asarray(a, dtype=np.float64)).view(np.uint64).tobytes()


@pytest.fixture(scope="module")
def finished(tmp_path_factory, shared_cache):
    """One toy run in the current format, and the matrices the runner held in memory when it wrote them."""
    from simbench.registry import build_registry
    from tests.conftest import TOY_PLUGINS

    registry = build_registry(plugin_files=[str(TOY_PLUGINS)])
    path = tmp_path_factory.mktemp("finished") / "run"
    runner, run = run_toy(path, registry, shared_cache)
    held = {("similarity", *key): m.numpy().copy() for key, m in runner.state.similarities.items()}
    held |= {("agreement", "", p): m.numpy().copy() for p, m in runner.state.agreements.items()}
    return registry, run, held


# -- the store API -----------------------------------------------------------------------------------


def test_write_matrix_round_trips_bit_identical(tmp_path):
    run = RunDir(tmp_path / "run")
    ids = ["m0", "m1", "m2", "m3"]
    run.set_models(ids)
    rng = np.random.default_rng(0)
    values = rng.standard_normal((4, 4))
    values[0] = np.nan  # an undefined model's row
    values[1, 2], values[2, 1], values[3, 3] = -0.0, 5e-324, 1.7976931348623157e308
    pointer = run.write_matrix("similarity", "cka", "mnist_c/fog", values)
    # one file per matrix inside matrices/, the probe set's "/" encoded rather than a subdirectory
    assert pointer["array"] == "matrices/similarity/cka/mnist_c%2Ffog.npy"
    assert (run.path / pointer["array"]).is_file()
    assert bits(run.read_array(pointer)) == bits(values)
    # a label cannot climb out of the run directory
    assert ".." not in matrix_path("similarity", "../../x", "../y").split("/")
    assert json.loads((run.path / MATRICES_DIR / "models.json").read_text())["ids"] == ids


def test_a_damaged_pointer_or_array_is_refused(tmp_path):
    run = RunDir(tmp_path / "run")
    run.set_models(["a", "b"])
    pointer = run.write_matrix("agreement", "", "clean", np.eye(2))
    (run.path / pointer["array"]).write_bytes((run.path / pointer["array"]).read_bytes()[:-3])
    with pytest.raises(Exception, match="damaged array"):
        run.read_array(pointer)
    with pytest.raises(Exception, match="no valid array path"):
        run.read_array({**pointer, "array": "../manifest.json"})


def test_temp_arrays_of_a_killed_write_are_removed(tmp_path):
    run = RunDir(tmp_path / "run")
    run.set_models(["a", "b"])
    pointer = run.write_matrix("similarity", "cka", "clean", np.eye(2))
    stray = (run.path / pointer["array"]).with_name(".clean.npy.tmp12345")
    stray.write_bytes(b"half a matrix")
    assert run.clean_temp() == 1 and not stray.exists() and (run.path / pointer["array"]).exists()


# -- a run ------------------------------------------------------------------------------------------


def test_results_have_one_row_per_matrix_and_no_pair_rows(finished):
    _, run, held = finished
    frame = run.results()
    matrices = frame[frame["kind"].isin(["similarity", "agreement"])]
    # not one row per pair: one per (metric, probe set) or agreement probe set, with no model columns
    assert not (matrices["model_a"] != "").any() and not (matrices["model_b"] != "").any()
    assert (matrices["statistic"] == "matrix").all()
    ok = matrices[matrices["status"] == "ok"]
    assert len(ok) == len(held) == len(ok.drop_duplicates(["kind", "metric", "probe_set"]))
    failed = matrices[matrices["status"] == "failed"]
    assert set(failed["metric"]) == {"toy_raises"} and failed["error"].str.contains("boom").all()
    # the cells point at the arrays instead of holding the matrix as a list
    for cell in (run.path / "cells").glob("*.json"):
        meta = json.loads(cell.read_text())["meta"]
        assert "matrix" not in meta
    assert run.read_manifest()["store_format"] == 2


def test_every_matrix_reads_back_bit_identical(finished):
    _, run, held = finished
    ids = [m["id"] for m in run.read_manifest()["models"]]
    for (kind, metric, probe_set), values in held.items():
        stored_ids, stored = run.matrix(kind, metric, probe_set)
        assert stored_ids == ids
        assert stored.dtype == np.float64 and bits(stored) == bits(values), (kind, metric, probe_set)
    assert ("similarity", "wcka", "weights") in held  # a weight metric: once, under "weights"
    # the file names docs/results.md gives, read with numpy alone
    assert json.loads((run.path / "matrices" / "models.json").read_text())["ids"] == ids
    on_disk = np.load(run.path / "matrices" / "similarity" / "toy_gram_corr" / "toy_jitter%2F0%2E5.npy")
    assert bits(on_disk) == bits(held[("similarity", "toy_gram_corr", "toy_jitter/0.5")])
    assert bits(np.load(run.path / "matrices" / "agreement" / "clean.npy")) == bits(held[("agreement", "", "clean")])
    with pytest.raises(MeasurementFailed, match="boom"):
        run.matrix("similarity", "toy_raises", "clean")
    with pytest.raises(KeyError):
        run.matrix("similarity", "no_such_metric", "clean")


def test_expanded_results_are_the_matrix_entries(finished):
    _, run, held = finished
    long = run.results(matrices=True)
    rows = long[(long["kind"] == "similarity") & (long["metric"] == "linear_regression_r2")
                & (long["probe_set"] == "clean")]
    ids = [m["id"] for m in run.read_manifest()["models"]]
    m = len(ids)
    assert len(rows) == m * (m - 1)  # every ordered pair of an asymmetric metric, no diagonal
    values = held[("similarity", "linear_regression_r2", "clean")]
    for a, b, v in zip(rows["model_a"], rows["model_b"], rows["value"], strict=True):
        assert v == values[ids.index(a), ids.index(b)]


def test_damaged_and_missing_arrays_are_recomputed_on_resume(finished, tmp_path, shared_cache):
    registry, original, held = finished
    path = tmp_path / "run"
    shutil.copytree(original.path, path)
    truncated = path / matrix_path("similarity", "toy_gram_corr", "toy_jitter/0.5")
    truncated.write_bytes(truncated.read_bytes()[:-17])
    (path / matrix_path("agreement", "", "clean")).unlink()
    runner, run = run_toy(path, registry, shared_cache)
    assert sorted(runner.run_dir.discarded) == [
        "agreement/clean", "similarity/toy_gram_corr/toy_jitter/0.5"]
    assert runner.computed == 2
    for key, values in held.items():
        assert bits(run.matrix(*key)[1]) == bits(values), key
    pd.testing.assert_frame_equal(run.results(), original.results())


# -- run directories of store format 1 (one row per pair) -------------------------------------------


def to_legacy(run: RunDir, dest) -> RunDir:
    """``run`` rewritten as the previous store wrote it: per-pair rows (upper triangle for symmetric
    metrics and agreement, both directions for asymmetric ones), the matrix as a JSON list in each
    cell, no arrays and no ``store_format`` in the manifest."""
    shutil.copytree(run.path, dest)
    shutil.rmtree(dest / MATRICES_DIR)
    manifest = json.loads((dest / "manifest.json").read_text())
    del manifest["store_format"]
    (dest / "manifest.json").write_text(json.dumps(manifest))
    ids = [m["id"] for m in manifest["models"]]
    m = len(ids)
    frame = run.results()
    probes = frame[frame["kind"] == "accuracy"].groupby("probe_set")["n"].first()
    rows = []
    for row in frame.to_dict("records"):
        if row["statistic"] != "matrix" or row["status"] != "ok":
            rows.append(row)
            continue
        values = run.matrix(row["kind"], row["metric"], row["probe_set"])[1]
        upper = row["kind"] == "agreement" or SYMMETRIC[row["metric"]]
        pairs = [(i, j) for i in range(m) for j in range(m) if (i < j if upper else i != j)]
        for i, j in pairs:
            rows.append({**row, "model_a": ids[i], "model_b": ids[j], "value": float(values[i, j]),
                         "statistic": "value" if row["kind"] == "similarity" else "agreement",
                         "n": int(probes[row["probe_set"]]) if row["kind"] == "agreement" else None})
    normalise_frame(pd.DataFrame(rows, columns=list(COLUMNS))).to_parquet(dest / "results.parquet", index=False)
    for cell in (dest / "cells").glob("*.json"):
        payload = json.loads(cell.read_text())
        meta = payload["meta"]
        if meta.pop("array", None) is not None:
            kind, _, rest = payload["cell"].partition("/")
            metric, probe_set = rest.split("/", 1) if kind == "similarity" else ("", rest)
            meta["matrix"] = run.matrix(kind, metric, probe_set)[1].tolist()
            meta.pop("array_sha256"), meta.pop("models_sha256")
        cell.write_text(json.dumps(payload))
    return RunDir(dest)


def old_pairs(frame: pd.DataFrame, ids: list[str], probe_set: str) -> pd.DataFrame:
    """What ``StoreView.pairs`` gave for per-pair rows before the array store (its algorithm, restated):
    each unordered pair's mean over the stored directions."""
    order = {model: i for i, model in enumerate(ids)}
    frame = frame[frame["status"] == "ok"]
    i_a, i_b = frame["model_a"].map(order), frame["model_b"].map(order)
    frame = frame.assign(a=np.minimum(i_a, i_b), b=np.maximum(i_a, i_b)).dropna(subset=["a", "b"])
    agree = frame[(frame["kind"] == "agreement") & (frame["probe_set"] == probe_set)]
    out = agree.groupby(["a", "b"])["value"].mean().rename("agreement").to_frame()
    sims = frame[frame["kind"] == "similarity"]
    for metric in dict.fromkeys(sims["metric"]):
        rows = sims[(sims["metric"] == metric) & sims["probe_set"].isin([probe_set, "weights"])]
        out[metric] = rows.groupby(["a", "b"])["value"].mean()
    out = out.reset_index()
    out.insert(0, "model_b", [ids[int(b)] for b in out.pop("b")])
    out.insert(0, "model_a", [ids[int(a)] for a in out.pop("a")])
    return out


def test_a_legacy_run_directory_gives_the_same_pairs_and_board(finished, tmp_path):
    registry, run, _ = finished
    legacy = to_legacy(run, tmp_path / "legacy")
    assert legacy.store_format() == 1 and not (legacy.path / MATRICES_DIR).exists()
    ids = [m["id"] for m in run.read_manifest()["models"]]
    manifest = legacy.read_manifest()
    old_view = leaderboard.run_view(legacy.results(), manifest, registry, legacy)
    new_view = leaderboard.run_view(run.results(), run.read_manifest(), registry, run)
    for probe_set in ("clean", "toy_jitter/0.5", "toy_jitter/2.0"):
        expected = old_pairs(legacy.results(), ids, probe_set)
        # oriented as before: every metric here is a similarity, so the stored values are the view's
        assert all(registry.get("metric", n).higher_is_more_similar for n in ("linear_regression_r2", "wcka"))
        pd.testing.assert_frame_equal(old_view.pairs(probe_set), expected, check_exact=True)
        # and the array store gives the same pairs (exactly, up to symmetrising a not exactly symmetric matrix)
        pd.testing.assert_frame_equal(new_view.pairs(probe_set), expected, check_exact=False, rtol=1e-12,
                                      atol=1e-12)
    # the whole board (tables and figures) renders the same from either store
    legacy_board, new_board = tmp_path / "lb-legacy", tmp_path / "lb-new"
    assert leaderboard.render(legacy.path, legacy_board, registry) and leaderboard.render(run.path, new_board, registry)
    old_json, new_json = (json.loads((d / "toy.json").read_text()) for d in (legacy_board, new_board))
    assert old_json["tables"] == new_json["tables"] and old_json["plots"] == new_json["plots"]
    assert old_json["plots"], "the toy board has figures (the scatter plots read StoreView.pairs)"


def test_a_writer_resuming_a_legacy_directory_rewrites_its_matrices_as_arrays(finished, tmp_path, shared_cache):
    registry, run, held = finished
    legacy = to_legacy(run, tmp_path / "legacy")
    runner, resumed = run_toy(legacy.path, registry, shared_cache)
    # every matrix cell of the old format is redone (from the similarity cache), nothing else
    assert sorted(runner.run_dir.discarded) == sorted(
        f"{k}/{p}" if k == "agreement" else f"{k}/{m}/{p}" for k, m, p in held)
    assert runner.cache.misses == 0
    assert resumed.read_manifest()["store_format"] == 2
    for key, values in held.items():
        assert bits(resumed.matrix(*key)[1]) == bits(values), key
    pd.testing.assert_frame_equal(resumed.results(), run.results())


def test_results_api_gives_the_same_matrices(finished):
    import simbench
    from tests.conftest import TOY_PLUGINS

    _, run, held = finished
    res = simbench.load(run.path, plugins=[str(TOY_PLUGINS)])
    ids, values = res.matrix("similarity", "linear_regression_r2", "toy_jitter/2.0")
    assert ids == [m["id"] for m in run.read_manifest()["models"]]
    assert bits(values) == bits(held[("similarity", "linear_regression_r2", "toy_jitter/2.0")])
    assert bits(res.matrix("agreement", probe_set="clean")[1]) == bits(held[("agreement", "", "clean")])
