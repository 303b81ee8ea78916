"""The suites of issue 4: paper-mlp (+ its digits28 variant) and finetune-cnn."""

from __future__ import annotations

import json

import pytest

from simbench.suite import load_suite
from tests.conftest import ROOT

SUITES = ROOT / "suites"


def test_paper_mlp_is_the_section_3_2_grid(registry) -> None:  # type: ignore[no-untyped-def]
    suite = load_suite(SUITES / "paper-mlp.toml", registry)
    assert suite.data.name == "mnist" and suite.data.obj.classes == (0, 1, 2)
    zoo = suite.zoo.obj
    assert zoo.archs == ("1x8", "4x8", "4x32") and set(zoo.strategies) == {"standard", "fgsm", "pgd"}
    assert zoo.eps == 0.3
    factors = {k: {s.factors[k] for s in zoo.specs()} for k in ("arch", "seed", "epoch", "strategy")}
    assert all(len(v) >= 3 for v in factors.values())  # every factor varies
    names = [m.name for m in suite.metrics]
    assert names[:4] == ["procrustes", "linear_cka", "dcka", "wcka"]  # the paper's four first
    assert set(names) == set(registry.names("metric"))  # then every built-in metric
    pert = {p.name: p.obj for p in suite.perturbations}
    assert len(pert["mnist_c"].corruptions) == 15 and len(pert["attacks"].attacks) == 5


def test_digits_variant_extends_paper_mlp(registry) -> None:  # type: ignore[no-untyped-def]
    parent = load_suite(SUITES / "paper-mlp.toml", registry)
    suite = load_suite(SUITES / "paper-mlp-digits.toml", registry)
    assert suite.data.name == "digits28" and suite.data.obj.classes == (0, 1, 2)  # classes inherited
    assert suite.zoo.obj.archs == parent.zoo.obj.archs and suite.zoo.obj.strategies == parent.zoo.obj.strategies
    assert len(suite.zoo.obj.specs()) < len(parent.zoo.obj.specs())
    assert [m.name for m in suite.metrics] == [m.name for m in parent.metrics]


def test_finetune_cnn_suite(registry) -> None:  # type: ignore[no-untyped-def]
    suite = load_suite(SUITES / "finetune-cnn.toml", registry)
    zoo = suite.zoo.obj
    assert zoo.name == "finetuned_cnn" and zoo.heads == ("1x32", "1x1024", "10x32")
    assert set(zoo.strategies) == {"standard", "pgd"} and zoo.base_classes == tuple(range(10))
    assert "wcka" in {m.name for m in suite.metrics}


@pytest.mark.slow
def test_paper_mlp_digits_end_to_end(tmp_path, cli_here) -> None:  # type: ignore[no-untyped-def]
    proc = cli_here(
        "run", "suites/paper-mlp-digits.toml",
        "--set", 'zoo.archs=["1x8", "4x32"]', "--set", "zoo.epochs=[3, 8]",
        "--set", 'zoo.held_out=["4x32/s100/e8/standard", "4x32/s100/e8/pgd"]',
        "--set", 'perturbations.1.sources=["4x32/s100/e8/standard", "4x32/s100/e8/pgd"]',
        # the paper's four metrics plus two others: the slow O(n^2) ones are covered by the metric tests
        "--set", "metrics=[{name='procrustes'},{name='linear_cka'},{name='dcka'},{name='wcka'},"
                 "{name='mutual_knn'},{name='svcca'}]",
        "--run-dir", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "cache"),
        "--leaderboard-dir", str(tmp_path / "lb"),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    board = json.loads((tmp_path / "lb" / "paper-mlp-digits.json").read_text())
    assert board["provenance"]["n_models"] == 2 * 2 * 2 * 3
    probe_sets = set(board["provenance"]["probe_sets"])
    assert {"clean", "mnist_c/fog", "attacks/pgd@standard", "attacks/pgd@pgd", "attacks/tpgd@pgd"} <= probe_sets
    assert board["provenance"]["held_out_models"] == ["4x32/s100/e8/standard", "4x32/s100/e8/pgd"]
    ranking = board["tables"][0]
    cols = ranking["columns"]
    rows = {row[cols.index("metric")]: row for row in ranking["rows"]}
    assert set(rows) == {"procrustes", "linear_cka", "dcka", "wcka", "mutual_knn", "svcca"}
    for row in rows.values():
        assert row[cols.index("status")] == "ok"
        assert -1 <= row[cols.index("pearson_r")] <= 1
