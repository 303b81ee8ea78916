"""The manipulation benchmark (seed 003 §3.4) on planted (original, function-preserving copy) pairs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
import torch

import simbench
from simbench.errors import MeasurementFailed, UserError
from simbench.results import record_row
from simbench.types import ModelSpec
from simbench_plugins.benchmarks.manipulation import ALL_PROBES, Manipulation
from simbench_plugins.metrics import CCAMean, LinearCKA


@dataclass(frozen=True)
class NaNMetric(simbench.Metric):
    name = "nan_metric"

    def __call__(self, a, b, **kwargs):
        return float("nan")


class FakeContext:
    """Four 'original' representations (different random ReLU features of real digits) and, for two of
    them, a copy mixed by an invertible linear map -- what a downstream layer can undo exactly, so the
    function is preserved (agreement 1), while linear CKA is not invariant to it."""

    def __init__(self):
        from sklearn.datasets import load_digits

        d = load_digits(n_class=3)
        x = torch.tensor(d.data[:200], dtype=torch.float64) / 16.0
        g = torch.Generator().manual_seed(0)
        reps, specs = [], []
        for s in range(4):
            reps.append(torch.relu(x @ torch.randn(64, 12, generator=g, dtype=torch.float64)))
            specs.append(ModelSpec(f"m{s}", {"seed": s}))
        for s in (0, 1):
            a = torch.eye(12, dtype=torch.float64) + 2.0 * torch.randn(12, 12, generator=g, dtype=torch.float64)
            reps.append(reps[s] @ a)
            specs.append(ModelSpec(f"m{s}-cka-all-max", {"seed": s, "original": f"m{s}", "manipulated": "all_max",
                                                        "cka_offdiag_original": 0.5, "cka_offdiag": 0.9}))
        self.reps, self.specs = reps, specs
        self.suite_name, self.seed, self.device = "fake", 0, "cpu"
        self.probe_sets = ["clean"]
        self.probe = simbench.ProbeSet("clean", x, torch.zeros(len(x), dtype=torch.long))
        self.metrics = {"linear_cka": LinearCKA(), "cca_mean": CCAMean(), "nan_metric": NaNMetric()}
        m = len(specs)
        agree = np.full((m, m), 0.8)
        for k, s in enumerate(specs):
            if "original" in s.factors:
                agree[k, int(s.factors["original"][1:])] = agree[int(s.factors["original"][1:]), k] = 1.0
        np.fill_diagonal(agree, 1.0)
        self.agree = agree

    def similarity(self, metric, probe_set):
        m = self.metrics[metric]
        s = torch.as_tensor(m.pairwise(self.reps)).double()
        if not torch.isfinite(s).all():
            raise MeasurementFailed("returned non-finite values")
        return m.to_similarity(s)

    def agreement(self, probe_set):
        return torch.tensor(self.agree)

    def accuracy(self, probe_set):
        return torch.full((len(self.specs),), 0.9, dtype=torch.float64)

    def probe_set(self, name):
        return self.probe


@pytest.fixture(scope="module")
def run():
    ctx = FakeContext()
    records = Manipulation().evaluate(ctx)
    return ctx, pd.DataFrame([record_row("fake", "benchmark", r) for r in records])


def agg(frame, statistic, metric, probe_set=ALL_PROBES, group="all_max"):
    rows = frame[(frame["statistic"] == statistic) & (frame["metric"] == metric) & (frame["probe_set"] == probe_set)
                 & (frame["group"] == group) & (frame["model_a"] == "")]
    assert len(rows) == 1, (statistic, metric, len(rows))
    return float(rows["value"].iloc[0])


def test_invariant_metric_ranks_above_non_invariant(run):
    _, frame = run
    assert agg(frame, "displacement_mean", "cca_mean") == pytest.approx(0.0, abs=1e-6)
    assert agg(frame, "closer_fraction_mean", "cca_mean") == 0.0
    assert agg(frame, "displacement_mean", "linear_cka") > 0.05
    assert agg(frame, "rank", "cca_mean") == 1
    assert agg(frame, "rank", "linear_cka") == 2


def test_displacement_matches_direct_computation(run):
    ctx, frame = run
    s = LinearCKA().pairwise(ctx.reps).numpy()
    i, j = np.triu_indices(4, k=1)
    ref = s[:4, :4][i, j]
    expected = (s[0, 0] - s[0, 4]) / (s[0, 0] - np.median(ref))
    row = frame[(frame["statistic"] == "displacement") & (frame["metric"] == "linear_cka")
                & (frame["model_a"] == "m0")]
    assert float(row["value"].iloc[0]) == pytest.approx(expected)
    row = frame[(frame["statistic"] == "closer_fraction") & (frame["metric"] == "linear_cka")
                & (frame["model_a"] == "m0")]
    assert float(row["value"].iloc[0]) == pytest.approx(np.mean(ref >= s[0, 4]))
    ag = frame[(frame["statistic"] == "agreement") & (frame["model_a"] == "m1")]
    assert float(ag["value"].iloc[0]) == 1.0


def test_nan_metric_fails_and_the_rest_goes_on(run):
    _, frame = run
    failed = frame[frame["status"] == "failed"]
    assert set(failed["metric"]) == {"nan_metric"}
    assert "non-finite" in failed["error"].iloc[0]
    assert not (frame[(frame["statistic"] == "rank")]["metric"] == "nan_metric").any()


def test_tables_and_plot(run, tmp_path):
    _, frame = run
    tables = {t.key: t for t in Manipulation.tables(frame)}
    head = tables["manipulation"].frame
    assert list(head["metric"])[:2] == ["cca_mean", "linear_cka"]
    verdict = tables["verdict"].frame.iloc[0]
    assert verdict["function_preserved"] == "yes" and verdict["reproduced"] == "yes"  # map 0.5 -> 0.9
    paths = Manipulation.plots(frame, tmp_path)
    assert len(paths) == 1 and paths[0].stat().st_size > 10_000


def test_needs_manipulated_models():
    ctx = FakeContext()
    ctx.specs = ctx.specs[:4]
    with pytest.raises(UserError, match="cka_map_manipulation"):
        Manipulation().evaluate(ctx)
