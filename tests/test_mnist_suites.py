"""The real-MNIST suites (issue 15): full grids, their CPU cuts, and the offline data_files route.

Every test writes its own tiny parquet files in the hub's schema; nothing reads ../shared/data.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

import simbench
from simbench.errors import UserError
from simbench.suite import load_suite
from tests.conftest import ROOT

SUITES = ROOT / "suites"
DATA_FILES = '{train="$SIMBENCH_MNIST_DIR/train*.parquet", test="$SIMBENCH_MNIST_DIR/test*.parquet"}'
CPU_CUTS = {"paper-mlp-cpu.toml": "paper-mlp.toml", "finetune-cnn-cpu.toml": "finetune-cnn.toml"}
MNIST_SUITES = ("paper-mlp-cpu.toml", "finetune-cnn-cpu.toml", "calibration-mnist.toml", "manipulation-mnist.toml")


def _write_parquet(path, n: int, seed: int) -> None:
    """``n`` random 28x28 'digits' (labels cycle 0-9) as the hub's schema: image = struct<bytes, path>, label."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    rng = np.random.default_rng(seed)
    blobs = []
    for _ in range(n):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, size=(28, 28), dtype=np.uint8), mode="L").save(buf, format="PNG")
        blobs.append({"bytes": buf.getvalue(), "path": None})
    pq.write_table(pa.table({"image": blobs, "label": (np.arange(n) % 10).astype(np.int64)}), str(path))


@pytest.fixture
def mnist_dir(tmp_path, monkeypatch):
    _write_parquet(tmp_path / "train.parquet", 300, 0)
    _write_parquet(tmp_path / "test.parquet", 90, 1)
    monkeypatch.setenv("SIMBENCH_MNIST_DIR", str(tmp_path))
    return tmp_path


def _attack_source(suite) -> str:
    return next(p.obj.source for p in suite.perturbations if p.name == "attacks")


@pytest.mark.parametrize("name", ["finetune-cnn.toml", "finetune-cnn-cpu.toml"])
def test_attacks_are_crafted_against_a_model_of_the_zoo(registry, name) -> None:  # type: ignore[no-untyped-def]
    suite = load_suite(SUITES / name, registry)
    attacks = next(p.obj for p in suite.perturbations if p.name == "attacks")
    assert attacks.source in {s.id for s in suite.zoo.obj.specs()}
    assert "/standard" in attacks.source
    assert attacks.eps == 0.3 and attacks.steps == 40 and attacks.attacks == ("fgsm", "ffgsm", "gn", "pgd", "tpgd")


@pytest.mark.parametrize("name", ["paper-mlp.toml", "paper-mlp-cpu.toml"])
def test_paper_mlp_attacks_come_from_held_out_sources_one_per_strategy(registry, name) -> None:  # type: ignore[no-untyped-def]
    suite = load_suite(SUITES / name, registry)
    attacks = next(p.obj for p in suite.perturbations if p.name == "attacks")
    specs = {s.id: s for s in suite.zoo.obj.specs()}
    sources = [specs[i] for i in attacks.sources]
    assert all(s.held_out for s in sources)  # trained by the zoo's recipe, never analysed
    assert {s.factors["strategy"] for s in sources} == set(suite.zoo.obj.strategies)
    assert not {s.factors["seed"] for s in sources} & set(suite.zoo.obj.seeds)
    assert attacks.eps == 0.3 and attacks.steps == 40 and attacks.attacks == ("fgsm", "ffgsm", "gn", "pgd", "tpgd")
    assert len(attacks.variants()) == 5 * 3


@pytest.mark.parametrize("cut,full", sorted(CPU_CUTS.items()))
def test_cpu_cuts_keep_the_design_of_the_full_grid(registry, cut, full) -> None:  # type: ignore[no-untyped-def]
    small, big = load_suite(SUITES / cut, registry), load_suite(SUITES / full, registry)
    assert small.data.name == big.data.name == "mnist" and small.data.obj.classes == (0, 1, 2)
    assert small.data.obj.data_files and not big.data.obj.data_files  # the full grid takes them from --set
    zs, zb = small.zoo.obj, big.zoo.obj
    assert zs.name == zb.name and zs.eps == zb.eps == 0.3
    assert len(zs.specs()) <= len(zb.specs())
    if cut == "paper-mlp-cpu.toml":  # the full grid; only the probes are cut
        assert [s.id for s in zs.specs()] == [s.id for s in zb.specs()]
        assert small.probes["n"] == 1000 and big.probes["n"] == 0
    assert len(zs.seeds) >= 2 and len(zs.epochs) >= 2  # every kept factor still varies
    assert [m.name for m in small.metrics] == [m.name for m in big.metrics] and len(small.metrics) == 15
    pert_s = {p.name: p.obj for p in small.perturbations}
    pert_b = {p.name: p.obj for p in big.perturbations}
    assert pert_s["mnist_c"].corruptions == pert_b["mnist_c"].corruptions and len(pert_s["mnist_c"].corruptions) == 15
    for key in ("attacks", "eps", "steps", "alpha"):
        assert getattr(pert_s["attacks"], key) == getattr(pert_b["attacks"], key)
    assert "cut" in small.description or "cpu" in small.description.lower()


def test_paper_mlp_full_grid_is_the_seed_design(registry) -> None:  # type: ignore[no-untyped-def]
    zoo = load_suite(SUITES / "paper-mlp.toml", registry).zoo.obj
    assert zoo.archs == ("1x8", "4x8", "4x32") and zoo.strategies == ("standard", "fgsm", "pgd")
    assert len(zoo.seeds) == 5 and zoo.epochs == (2, 5, 10, 20)
    assert sum(not s.held_out for s in zoo.specs()) == 180 and sum(s.held_out for s in zoo.specs()) == 3
    cpu = load_suite(SUITES / "paper-mlp-cpu.toml", registry).zoo.obj
    assert cpu.archs == zoo.archs and cpu.strategies == zoo.strategies


@pytest.mark.parametrize("name", MNIST_SUITES)
def test_mnist_suites_read_the_files_in_SIMBENCH_MNIST_DIR(registry, mnist_dir, name) -> None:  # type: ignore[no-untyped-def]
    suite = load_suite(SUITES / name, registry)
    data = suite.data.obj.load(simbench.RunContext(seed=0))
    assert data.meta["source"] == "local parquet"
    assert data.num_classes == len(suite.data.obj.classes)
    assert len(data.test) > 0 and len(data.train) > 0


def test_full_grid_takes_data_files_from_the_command_line(registry, mnist_dir) -> None:  # type: ignore[no-untyped-def]
    suite = load_suite(SUITES / "paper-mlp.toml", registry, [f"data.data_files={DATA_FILES}"])
    data = suite.data.obj.load(simbench.RunContext(seed=0))
    assert data.meta["source"] == "local parquet" and data.num_classes == 3


def test_unset_SIMBENCH_MNIST_DIR_is_a_one_line_error(registry, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("SIMBENCH_MNIST_DIR", raising=False)
    suite = load_suite(SUITES / "calibration-mnist.toml", registry)
    with pytest.raises(UserError, match="SIMBENCH_MNIST_DIR"):
        suite.data.obj.load(simbench.RunContext(seed=0))


@pytest.mark.slow
def test_paper_mlp_cpu_end_to_end_on_tiny_parquet(  # type: ignore[no-untyped-def]
        tmp_path, cli_here, mnist_dir) -> None:
    proc = cli_here(
        "run", "suites/paper-mlp-cpu.toml",
        "--set", "zoo.epochs=[1, 2]", "--set", "zoo.warmup_epochs=1", "--set", "zoo.steps=2", "--set", "probes.n=30",
        "--set", 'perturbations.0.corruptions=["shot_noise"]',
        "--set", 'perturbations.1.attacks=["fgsm", "pgd"]', "--set", "zoo.seeds=[0, 1]",
        "--set", 'zoo.held_out=["4x32/s100/e2/standard", "4x32/s100/e2/pgd"]',
        "--set", 'perturbations.1.sources=["4x32/s100/e2/standard", "4x32/s100/e2/pgd"]', "--set", 'run.executor="local"',
        "--set", "metrics=[{name='procrustes'},{name='linear_cka'},{name='wcka'}]",
        "--run-dir", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "cache"),
        "--leaderboard-dir", str(tmp_path / "lb"),
        env={"SIMBENCH_MNIST_DIR": str(mnist_dir)},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    board = json.loads((tmp_path / "lb" / "paper-mlp-cpu.json").read_text())
    assert board["provenance"]["n_models"] == 3 * 3 * 2 * 2
    assert board["provenance"]["held_out_models"] == ["4x32/s100/e2/standard", "4x32/s100/e2/pgd"]
