"""The calibration benchmark (seed 001 §3.1) on real random and trained networks, served by the kit's FakeStore."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

import simbench
from simbench.results import record_row
from simbench.testing import FakeStore, check_benchmark, run_benchmark
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


def calibration_store(n=8):
    """``n`` random-init MLPs and ``n`` checkpoints of one MLP at consecutive late epochs, served by the kit's
    :class:`simbench.testing.FakeStore` (real activations; every matrix from the real metric plugins)."""
    xtr, ytr, xte, yte = digits()
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
    data = simbench.DataSplits(simbench.Split(xtr, ytr), simbench.Split(xte[:10], yte[:10]), simbench.Split(xte, yte),
                               task="classification", num_classes=3)
    metrics = {"linear_cka": LinearCKA(), "procrustes": Procrustes(), "wcka": WeightsCKA(), "nan_metric": NaNMetric()}
    return FakeStore(models={s.id: m for s, m in zip(specs, models)}, specs=specs,
                     probe_sets=[simbench.ProbeSet("clean", xte, yte)], data=data, metrics=metrics)


def as_frame(records):
    return pd.DataFrame([record_row("fake", "benchmark", r) for r in records])


BENCH = Calibration(probe_counts=(10, 30, 100, 0), count_draws=3, count_models=8, timing_repeats=3, n_bootstrap=200)


@pytest.fixture(scope="module")
def run():
    store = calibration_store()
    records = run_benchmark(BENCH, store)
    return store, records, as_frame(records)


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
    store, _, frame = run
    m = store.metrics["procrustes"]
    s = calibrated(m, store.similarity("procrustes", "clean").numpy())
    i, j = np.triu_indices(8, k=1)
    rand, conv = s[:8][:, :8][i, j], s[8:][:, 8:][i, j]
    assert value(frame, "mean", "procrustes", "random", "clean") == pytest.approx(rand.mean())
    assert value(frame, "sd", "procrustes", "converged", "clean") == pytest.approx(conv.std(ddof=1))
    assert value(frame, "bias", "procrustes", "converged", "clean") == pytest.approx(conv.mean() - 1.0)
    # Procrustes d^2 in [0, 2] maps to 1 - d^2 / 2
    d2 = -store.similarity("procrustes", "clean").numpy()
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
    # every count, the probe count as a coordinate (and n), weight metrics measured at each count too
    assert sorted(t.loc[t["metric"] == "wcka", "coord_probes"]) == [10.0, 30.0, 100.0, float(frame["n"].max())]
    assert (t["coord_probes"] == t["n"]).all()
    q25 = value(frame, "seconds_q25", "linear_cka", "timing", n=10)
    q75 = value(frame, "seconds_q75", "linear_cka", "timing", n=10)
    lo, hi = value(frame, "seconds_min", "linear_cka", "timing", n=10), value(frame, "seconds_max", "linear_cka",
                                                                               "timing", n=10)
    assert lo <= q25 <= value(frame, "seconds_median", "linear_cka", "timing", n=10) <= q75 <= hi
    assert value(frame, "repeats", "linear_cka", "timing", n=10) == BENCH.timing_repeats
    # the pair is the first two random networks, named (not numbered) in the text fields
    row = t[t["metric"] == "linear_cka"].iloc[0]
    assert (row["model_a"], row["model_b"]) == ("random/s0", "random/s1")


def test_requests_declare_the_probe_subsets_and_the_timed_pairs(run):
    store, _, _ = run
    reqs = {r.key: r for r in BENCH.requests(store)}
    n = store.probe_set("clean").x.shape[0]
    subsets = dict(calibration_impl._subsets(BENCH, store, n))
    # activation metrics: per count, draw and ensemble, the first count_models members on that draw's rows
    for k, draws in subsets.items():
        for d, idx in enumerate(draws):
            low = reqs[calibration_impl.count_key("linear_cka", k, d, "low")]
            high = reqs[calibration_impl.count_key("linear_cka", k, d, "high")]
            assert [s.model for s in low.sources] == [f"random/s{i}" for i in range(8)]
            assert all(s.model.startswith("converged/") for s in high.sources) and len(high.sources) == 8
            rows = None if k == n else tuple(int(i) for i in idx)
            assert all(s.rows == rows and s.probe_set == "clean" for s in (*low.sources, *high.sources))
            assert low.timing_repeats == 0
    assert len(subsets[10]) == BENCH.count_draws and len(subsets[n]) == 1
    # a weight metric has no probe-count matrices, but a timed pair of weights per count
    assert not any(k.startswith("probes/wcka/") for k in reqs)
    for k in subsets:
        timed = reqs[calibration_impl.timing_key("wcka", k)]
        assert timed.timing_repeats == BENCH.timing_repeats and [s.is_weights for s in timed.sources] == [True, True]
        act = reqs[calibration_impl.timing_key("procrustes", k)]
        assert [s.model for s in act.sources] == ["random/s0", "random/s1"]
        assert act.sources[0].rows == (None if k == n else tuple(int(i) for i in subsets[k][0]))


def test_probe_count_rows_are_the_metric_on_the_declared_subsets(run):
    """by_probes_* equal linear CKA computed here on the same random probe subsets (seeded: identical)."""
    store, _, frame = run
    metric = LinearCKA()
    reps = store.representations("clean")
    n = reps[0].shape[0]
    ids = [s.id for s in store.specs]
    for k, draws in calibration_impl._subsets(BENCH, store, n):
        pooled = {"random": [], "converged": []}
        for idx in draws:
            for group in pooled:
                members = [i for i, s in enumerate(store.specs) if s.factors["ensemble"] == group][:8]
                m = metric.pairwise([reps[i][torch.as_tensor(idx)] for i in members]).numpy()
                s = calibrated(metric, 0.5 * (m + m.T))
                iu = np.triu_indices(len(members), k=1)
                pooled[group].append(s[iu])
        for group, expected in (("random", 0.0), ("converged", 1.0)):
            v = np.concatenate(pooled[group])
            assert value(frame, "by_probes_mean", "linear_cka", group, "clean", n=k) == pytest.approx(v.mean(),
                                                                                                     abs=1e-12)
            assert value(frame, "by_probes_bias", "linear_cka", group, "clean", n=k) == pytest.approx(
                v.mean() - expected, abs=1e-12)
            assert value(frame, "by_probes_pairs", "linear_cka", group, "clean", n=k) == len(v)
        rows = frame[(frame["statistic"] == "by_probes_mean") & (frame["n"] == k)]
        assert (rows["coord_probes"] == k).all()
    assert len(ids) == 16


def test_letter_values_are_rows_with_a_depth_coordinate(run):
    store, _, frame = run
    m = store.metrics["linear_cka"]
    s = calibrated(m, store.similarity("linear_cka", "clean").numpy())
    i, j = np.triu_indices(8, k=1)
    rand = s[:8][:, :8][i, j]  # 28 pairs: depths 4 and 8 (each tail keeps >= 2 values)
    lv = frame[(frame["statistic"].isin(["lv_lo", "lv_hi"])) & (frame["metric"] == "linear_cka")
               & (frame["group"] == "random") & (frame["probe_set"] == "clean")]
    assert sorted(set(lv["coord_depth"])) == [4.0, 8.0]
    for depth in (4, 8):
        lo = lv[(lv["statistic"] == "lv_lo") & (lv["coord_depth"] == depth)]["value"]
        assert float(lo.iloc[0]) == pytest.approx(np.quantile(rand, 1 / depth))
    assert not frame["statistic"].str.match(r".*_\d+$").any()  # no number packed into a statistic name


def test_the_benchmark_passes_the_kit_and_runs_no_metric():
    """check_benchmark on the default fake store (the two architectures as ensembles), with its check_example;
    the view it gets has no models and no plugin factory, so it can only read."""
    records = check_benchmark(Calibration)
    assert any(r.statistic == "by_probes_mean" and r.status == "ok" for r in records)
    assert any(r.statistic == "seconds_median" and r.status == "ok" for r in records)
    assert not hasattr(FakeStore, "models") and not hasattr(FakeStore, "make_plugin")
    import simbench_plugins.benchmarks.calibration.compute as compute

    source = Path(compute.__file__).read_text()
    assert "pairwise(" not in source and "import torch" not in source and ".models" not in source


def test_tables_verdict_and_plots(run, tmp_path):
    _, _, frame = run
    tables = {t.key: t for t in Calibration.tables(frame)}
    head = tables["calibration"].frame
    assert head.iloc[0]["metric"] == "wcka"  # best calibrated on real networks
    verdict = tables["verdict"].frame
    wcka = verdict[verdict["metric"] == "wcka"]
    assert list(wcka["reproduced"]) == ["yes", "yes"]
    shrink = verdict[(verdict["metric"] == "linear_cka") & (verdict["claim"] == "bias shrinks as probes grow")]
    # 4 probe counts with one inversion (rho -0.8): a decreasing curve, but 4 points cannot show a trend at 5 %
    # (the exact one-sided p is 4/24); the verdict says so instead of counting the sign
    (observed,) = shrink["observed"]
    assert "rho -0.80 (p 0.17, 4 counts)" in observed and list(shrink["reproduced"]) == ["no"]
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
    assert lv[4][0] > lv[8][0] > lv[16][0] and lv[4][1] < lv[8][1] < lv[16][1]
    assert 64 not in calibration_impl.letter_values(rng.normal(size=100))
    a, b = rng.normal(0, 1, 2000), rng.normal(10, 1, 2000)
    assert calibration_impl.overlap_coefficient(a, b) < 0.01
    assert calibration_impl.overlap_coefficient(a, a) == pytest.approx(1.0)
    assert math.isclose(calibration_report.DEFAULT_TOLERANCE, Calibration().tolerance)


def test_a_bias_trend_needs_more_than_a_negative_sign():
    from simbench_plugins.benchmarks.calibration.report import trend_p

    counts = [10, 20, 50, 100, 200, 500, 1000, 2000]
    assert trend_p(counts, [0.9, 0.7, 0.5, 0.4, 0.3, 0.25, 0.2, 0.18]) == pytest.approx(1 / 40320)  # exact: 1 of 8!
    flat = [0.195, 0.21, 0.18, 0.2, 0.19, 0.205, 0.185, 0.173]  # rho < 0 by a hair: not a trend
    assert trend_p(counts, flat) > 0.05
    assert trend_p(counts, flat[::-1]) > 0.5 and trend_p(counts[:2], [0.5, 0.4]) == 0.5
    # against scipy's permutation test on the same statistic
    from scipy.stats import permutation_test, spearmanr

    rng = np.random.default_rng(5)
    values = list(rng.normal(size=6) - 0.3 * np.arange(6))
    ref = permutation_test((values,), lambda v: spearmanr(counts[:6], v).statistic, permutation_type="pairings",
                           alternative="less", n_resamples=np.inf).pvalue
    assert trend_p(counts[:6], values) == pytest.approx(ref)
