"""A metric undefined for some models (NaN rows, e.g. a collapsed model) is recorded as such, not as failed."""

from __future__ import annotations

import math

import pytest
import torch

from simbench.boundary import validate_matrix
from simbench.errors import MeasurementFailed
from simbench.leaderboard import run_tables
from simbench.report import summary_lines
from simbench.runner import Runner
from simbench.suite import load_suite
from tests.conftest import TOY_SUITE


def test_validate_matrix_accepts_whole_nan_rows_only():
    ids = ["a", "b", "c", "d"]
    m = torch.rand(4, 4, dtype=torch.float64)
    m = m + m.T
    rows = m.clone()
    rows[1, :] = rows[:, 1] = float("nan")
    matrix, flags = validate_matrix(rows, ids)
    assert flags == ["undefined:b"] and torch.isnan(matrix[1, 0])
    scattered = m.clone()
    scattered[0, 2] = scattered[2, 0] = float("nan")  # one pair, not a whole model: a failure
    all_but_one = m.clone()
    all_but_one[:3, :] = all_but_one[:, :3] = float("nan")  # fewer than two defined models: nothing measured
    for bad in (scattered, all_but_one):
        with pytest.raises(MeasurementFailed, match="non-finite"):
            validate_matrix(bad, ids)


def test_runner_records_undefined_models_and_the_benchmark_ranks_the_rest(tmp_path, toy_registry):
    suite = load_suite(TOY_SUITE, toy_registry, ["metrics=[{name='toy_gram_corr'}, {name='toy_undefined_first'}]"])
    run = Runner(suite, toy_registry, tmp_path / "run", cache_dir=tmp_path / "cache", quiet=True).run()
    frame = run.results(matrices=True)  # each matrix as one row per ordered pair
    sims = frame[(frame["kind"] == "similarity") & (frame["metric"] == "toy_undefined_first")]
    assert (sims["status"] == "ok").all()
    flags = frame[(frame["kind"] == "flag") & (frame["statistic"] == "undefined")]
    assert len(flags) and set(flags["metric"]) == {"toy_undefined_first"}
    undefined_model = flags["model_a"].iloc[0]
    with_model = sims[(sims["model_a"] == undefined_model) | (sims["model_b"] == undefined_model)]
    assert with_model["value"].isna().all() and sims.drop(with_model.index)["value"].notna().all()
    # the model is not excluded as collapsed, so the benchmark names it and fails that metric there
    bench = frame[(frame["kind"] == "benchmark") & (frame["metric"] == "toy_undefined_first")]
    failed = bench[bench["status"] == "failed"]
    assert len(failed) and failed["error"].str.contains(undefined_model, regex=False).all()
    assert any("undefined for 1 model" in line for line in summary_lines(run_tables(run, toy_registry)))
    ok = frame[(frame["kind"] == "benchmark") & (frame["metric"] == "toy_gram_corr") & (frame["statistic"] == "pearson_r")]
    assert ok["value"].map(math.isfinite).any()
