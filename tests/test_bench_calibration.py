"""The calibration benchmark (seed 001 §3.1) on real random and trained networks in a small fake run."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

import simbench
from simbench.errors import MeasurementFailed
from simbench.results import record_row
from simbench.types import ModelSpec
from simbench_plugins.benchmarks.calibration import compute as calibration_impl
from simbench_plugins.benchmarks.calibration import report as calibration_report
from simbench_plugins.benchmarks.calibration import Calibration, calibrated, scale_of
from simbench_plugins.metrics import LinearCKA, Procrustes, WeightsCKA


class MLP(torch.nn.Module):
    """A ReLU MLP exposing the ReadableModel protocol (last hidden layer by default)."""

    readable_layers = ("hidden1", "hidden2", "logits")
    default_layer = "hidden2"

    def __init__(self, sizes=(64, 32, 32, 3)) -> None:
        super().__init__()
        self.layers = torch.nn.ModuleList(torch.nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))

    def read(self, x, layers):
        h, out = x.flatten(1), {}
        for name, layer in zip(self.readable_layers, self.layers):
            h = layer(h)
            if name != "logits":
                h = torch.relu(h)
            out[name] = h
        return {k: out[k] for k in layers}

    def forward(self, x):
        return self.read(x, ["logits"])["logits"]

    def dense_weights(self):
        return [layer.weight.detach().T for layer in self.layers]


@dataclass(frozen=True)
class NaNMetric(simbench.Metric):
    """A broken metric: NaN for every pair."""

    name = "nan_metric"

    def __call__(self, a, b, **kwargs):
        return float("nan")


def digits(n_train=400):
    from sklearn.datasets import load_digits

    d = load_digits(n_class=3)
    x = torch.tensor(d.data, dtype=torch.float32) / 16.0
    y = torch.tensor(d.target)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    return x[perm[:n_train]], y[perm[:n_train]], x[perm[n_train:]], y[perm[n_train:]]


class FakeContext:
    """``n`` random-init MLPs and ``n`` checkpoints of one MLP at consecutive late epochs, real activations."""

    def __init__(self, n=8, metrics=None):
        xtr, ytr, xte, yte = digits()
        self.suite_name, self.seed, self.device = "fake", 0, "cpu"
        models, specs = [], []
        for s in range(n):
            torch.manual_seed(100 + s)
            models.append(MLP().eval())
            specs.append(ModelSpec(f"random/s{s}", {"ensemble": "random", "seed": s, "epoch": 0}))
        torch.manual_seed(0)
        net = MLP()
        opt = torch.optim.Adam(net.parameters(), lr=3e-3)
        for epoch in range(1, 30 + n):
            for i in range(0, len(xtr), 32):
                opt.zero_grad()
                torch.nn.functional.cross_entropy(net(xtr[i:i + 32]), ytr[i:i + 32]).backward()
                opt.step()
            if epoch >= 30:
                copy = MLP()
                copy.load_state_dict(net.state_dict())
                models.append(copy.eval())
                specs.append(ModelSpec(f"converged/e{epoch}", {"ensemble": "converged", "seed": 0, "epoch": epoch}))
        self.specs = specs
        self.models = {s.id: m for s, m in zip(specs, models)}
        self.probe = simbench.ProbeSet("clean", xte, yte)
        self.probe_sets = ["clean"]
        with torch.no_grad():
            self.reps = [m.read(xte, ["hidden2"])["hidden2"] for m in models]
        self.metrics = metrics or {"linear_cka": LinearCKA(), "procrustes": Procrustes(), "wcka": WeightsCKA(),
                                   "nan_metric": NaNMetric()}

    def similarity(self, metric, probe_set):
        m = self.metrics[metric]
        reps = [self.models[s.id].dense_weights() for s in self.specs] if m.kind == "weight" else self.reps
        s = torch.as_tensor(m.pairwise(reps)).double()
        if not torch.isfinite(s).all():
            raise MeasurementFailed("returned non-finite values")
        return m.to_similarity(s)

    def representations(self, probe_set, layer=None):
        return self.reps

    def probe_set(self, name):
        return self.probe


def as_frame(records):
    return pd.DataFrame([record_row("fake", "benchmark", r) for r in records])


@pytest.fixture(scope="module")
def run():
    ctx = FakeContext()
    bench = Calibration(probe_counts=(10, 30, 100, 0), count_draws=3, count_models=8, timing_repeats=3,
                        n_bootstrap=200)
    records = bench.evaluate(ctx)
    return ctx, records, as_frame(records)


def value(frame, statistic, metric, group, probe_set=None, n=None):
    sel = (frame["statistic"] == statistic) & (frame["metric"] == metric) & (frame["group"] == group)
    if probe_set is not None:
        sel &= frame["probe_set"] == probe_set
    if n is not None:
        sel &= frame["n"] == n
    rows = frame[sel]
    assert len(rows) == 1, (statistic, metric, group, probe_set, n, len(rows))
    return float(rows["value"].iloc[0])


def test_auroc_matches_sklearn_with_ties():
    rng = np.random.default_rng(0)
    high = np.round(rng.normal(0.6, 0.2, 57), 1)  # rounding makes ties
    low = np.round(rng.normal(0.4, 0.2, 43), 1)
    expected = roc_auc_score(np.r_[np.ones(57), np.zeros(43)], np.r_[high, low])
    assert calibration_impl.auroc(high, low) == pytest.approx(expected)
    assert calibration_impl.auroc(np.array([2.0, 3.0]), np.array([0.0, 1.0])) == 1.0


def test_distribution_and_auroc_records_match_direct_computation(run):
    ctx, _, frame = run
    m = ctx.metrics["procrustes"]
    s = calibrated(m, ctx.similarity("procrustes", "clean").numpy())
    i, j = np.triu_indices(8, k=1)
    rand, conv = s[:8][:, :8][i, j], s[8:][:, 8:][i, j]
    assert value(frame, "mean", "procrustes", "random", "clean") == pytest.approx(rand.mean())
    assert value(frame, "sd", "procrustes", "converged", "clean") == pytest.approx(conv.std(ddof=1))
    assert value(frame, "bias", "procrustes", "converged", "clean") == pytest.approx(conv.mean() - 1.0)
    # Procrustes d^2 in [0, 2] maps to 1 - d^2 / 2
    d2 = -ctx.similarity("procrustes", "clean").numpy()
    assert s[0, 1] == pytest.approx(1 - d2[0, 1] / 2)
    expected = roc_auc_score(np.r_[np.ones(len(conv)), np.zeros(len(rand))], np.r_[conv, rand])
    assert value(frame, "auroc", "procrustes", "separation", "clean") == pytest.approx(expected)
    lo, hi = value(frame, "mean_ci_low", "procrustes", "random", "clean"), value(
        frame, "mean_ci_high", "procrustes", "random", "clean")
    assert lo < rand.mean() < hi


def test_seed_001_findings_on_real_networks(run):
    _, _, frame = run
    # wCKA: ~0 for random networks, ~1 for adjacent checkpoints (seed 001 Fig. 1a)
    assert abs(value(frame, "mean", "wcka", "random", "weights")) < 0.1
    assert value(frame, "mean", "wcka", "converged", "weights") > 0.9
    # linear CKA of random networks is biased away from 0, and the bias shrinks with more probes (Fig. 1b)
    full = value(frame, "by_probes_bias", "linear_cka", "random", "clean", n=int(frame["n"].max()))
    few = value(frame, "by_probes_bias", "linear_cka", "random", "clean", n=10)
    assert full > 0.1
    assert few > full + 0.05
    assert value(frame, "by_probes_draws", "linear_cka", "random", "clean", n=10) == 3


def test_nan_metric_is_recorded_as_failed_and_the_rest_goes_on(run):
    _, records, frame = run
    failed = frame[frame["status"] == "failed"]
    assert set(failed["metric"]) == {"nan_metric"}
    assert {"mean", "by_probes_mean"} <= set(failed["statistic"])
    assert all("non-finite" in e for e in failed.loc[failed["statistic"] != "seconds_median", "error"])
    assert (frame[(frame["metric"] == "linear_cka")]["status"] == "ok").all()


def test_timing_rows(run):
    _, _, frame = run
    t = frame[(frame["group"] == "timing") & (frame["statistic"] == "seconds_median") & (frame["status"] == "ok")]
    assert set(t["metric"]) >= {"linear_cka", "procrustes", "wcka"}
    assert (t["value"] > 0).all()
    q25 = value(frame, "seconds_q25", "linear_cka", "timing", n=10)
    q75 = value(frame, "seconds_q75", "linear_cka", "timing", n=10)
    assert q25 <= value(frame, "seconds_median", "linear_cka", "timing", n=10) <= q75


def test_tables_verdict_and_plots(run, tmp_path):
    _, _, frame = run
    tables = {t.key: t for t in Calibration.tables(frame)}
    head = tables["calibration"].frame
    assert head.iloc[0]["metric"] == "wcka"  # best calibrated on real networks
    verdict = tables["verdict"].frame
    wcka = verdict[verdict["metric"] == "wcka"]
    assert list(wcka["reproduced"]) == ["yes", "yes"]
    shrink = verdict[(verdict["metric"] == "linear_cka") & (verdict["claim"] == "bias shrinks as probes grow")]
    assert list(shrink["reproduced"]) == ["yes"]
    assert "failures" in tables
    paths = Calibration.plots(frame, tmp_path)
    assert {p.name for p in paths} == {"fake_boxes.png", "fake_probe_counts.png", "fake_timing.png"} or all(
        p.exists() and p.stat().st_size > 10_000 for p in paths)
    assert len(paths) == 3 and all(p.exists() and p.stat().st_size > 10_000 for p in paths)


def test_scale_and_helpers():
    assert scale_of(LinearCKA()) == (0.0, 1.0)
    assert scale_of(Procrustes()) == (2.0, 0.0)
    from simbench_plugins.metrics import RSA

    assert scale_of(RSA()) == (0.0, 1.0)  # a correlation: unrelated = 0, not -1
    rng = np.random.default_rng(1)
    lv = calibration_impl.letter_values(rng.normal(size=500))
    assert lv["lv_lo_4"] > lv["lv_lo_8"] > lv["lv_lo_16"] and lv["lv_hi_4"] < lv["lv_hi_8"] < lv["lv_hi_16"]
    assert "lv_lo_64" not in calibration_impl.letter_values(rng.normal(size=100))
    a, b = rng.normal(0, 1, 2000), rng.normal(10, 1, 2000)
    assert calibration_impl.overlap_coefficient(a, b) < 0.01
    assert calibration_impl.overlap_coefficient(a, a) == pytest.approx(1.0)
    assert math.isclose(calibration_report.DEFAULT_TOLERANCE, Calibration().tolerance)
