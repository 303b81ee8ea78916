"""A metric's own notes on its matrix (``matrix_flags``) are recorded as flag rows, also from the cache."""

from __future__ import annotations

import pandas as pd

from simbench.leaderboard import run_tables
from simbench.report import summary_lines
from simbench.runner import Runner
from simbench.suite import load_suite
from tests.conftest import TOY_SUITE


def _run(tmp_path, registry, n, name):
    suite = load_suite(TOY_SUITE, registry, (f"probes.n={n}", 'metrics=[{name="pwcca"}, {name="linear_cka"}]'))
    runner = Runner(suite, registry, tmp_path / name, cache_dir=tmp_path / "cache", quiet=True)
    return runner.run()


def _flags(run):
    frame = run.results()
    return frame[frame["kind"] == "flag"].sort_values(["metric", "probe_set", "model_a"]).reset_index(drop=True)


def test_pwcca_ill_defined_regime_is_flagged_on_its_matrix_and_survives_the_cache(tmp_path, toy_registry):
    # widths 8 and 16 with 12 probes: d1 + d2 > n - 1 for every pair, so every model is in the regime
    run = _run(tmp_path, toy_registry, 12, "small")
    flags = _flags(run)
    assert set(flags["statistic"]) == {"ill_defined"} and set(flags["metric"]) == {"pwcca"}
    assert set(flags["model_a"]) == {f"w{w}/s{s}" for w in (8, 16) for s in (0, 1, 2)}
    assert flags["error"].str.contains("convention").all()
    assert any("pwcca is ill-defined" in line for line in summary_lines(run_tables(run, toy_registry)))
    # a second run reads the matrices from the cache: the same notes, from the entry's metadata
    again = _flags(_run(tmp_path, toy_registry, 12, "again"))
    pd.testing.assert_frame_equal(flags[["metric", "probe_set", "model_a", "statistic"]],
                                  again[["metric", "probe_set", "model_a", "statistic"]])
    # with 40 probes the widest pair has 16 + 16 < 39 dimensions: well defined, no note
    assert _flags(_run(tmp_path, toy_registry, 40, "large")).empty
