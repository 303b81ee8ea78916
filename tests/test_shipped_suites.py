"""Every shipped suite validates; the demo suite runs end to end on the built-in plugins."""

from __future__ import annotations

import json

import pytest

from simbench.suite import load_suite
from tests.conftest import ROOT

SUITES = sorted((ROOT / "suites").glob("*.toml"))


@pytest.mark.parametrize("path", SUITES, ids=[p.stem for p in SUITES])
def test_shipped_suite_validates(path, registry):
    suite = load_suite(path, registry)
    assert suite.description, "every shipped suite says what it is for"
    assert len(suite.zoo.obj.specs()) >= 2


@pytest.mark.slow
def test_quick_suite_end_to_end(tmp_path, cli_here):
    # the demo suite at reduced size (two seeds, short training) through the console entry point, `main`
    out = tmp_path
    proc = cli_here("run", "suites/quick.toml", "--set", "zoo.seeds=[0, 1]", "--set", "zoo.epochs=[2, 4]",
               "--run-dir", str(out / "run"), "--cache-dir", str(out / "cache"), "--leaderboard-dir", str(out / "lb"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Ranking" in proc.stdout  # the rich table
    for suffix in ("md", "csv", "json"):
        assert (out / "lb" / f"quick.{suffix}").exists()
    board = json.loads((out / "lb" / "quick.json").read_text())
    ranking = board["tables"][0]
    cols = ranking["columns"]
    rows = {row[cols.index("metric")]: row for row in ranking["rows"]}
    assert set(rows) == {"linear_cka", "procrustes"}
    for row in rows.values():
        assert row[cols.index("status")] == "ok"
        assert -1 <= row[cols.index("pearson_r")] <= 1
    assert board["provenance"]["n_models"] == 8
    assert set(board["provenance"]["probe_sets"]) == {"clean", "mnist_c/shot_noise", "mnist_c/fog", "mnist_c/rotate"}
