"""The calibration benchmark's pre-declared overlap verdict (seed 001 §3.1, issue 26): the pooled AUROC and its
model-level bootstrap, the symmetric verdict rule, subset_metrics, and toy ensembles where the verdict must come
out one way or the other."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from simbench_plugins.benchmarks.calibration import Calibration
from simbench_plugins.benchmarks.calibration import compute as impl
from simbench_plugins.metrics import LinearCKA, Procrustes, WeightsCKA
from sklearn.metrics import roc_auc_score

import simbench
from simbench.errors import UserError
from simbench.results import record_row
from simbench.testing import FakeStore, fake_model_class, run_benchmark
from simbench.types import ModelSpec


def test_pair_weights_count_pairs_of_draws_of_two_different_models():
    # model 0 drawn twice, model 1 never, model 2 once: pairs (0,1), (0,2), (1,2) stand for 0, 2, 0 pairs of draws
    assert impl.pair_weights(np.array([2, 0, 1])).tolist() == [0.0, 2.0, 0.0]
    assert impl.pair_weights(np.ones(4, int)).tolist() == [1.0] * 6


def test_pooled_auroc_is_the_mann_whitney_auroc_and_weights_like_sklearn():
    rng = np.random.default_rng(3)
    n_low, n_high, sets = 6, 5, 3
    lows = [np.round(rng.normal(0.3, 0.2, 15), 1) for _ in range(sets)]  # rounding makes ties
    highs = [np.round(rng.normal(0.5, 0.2, 10), 1) for _ in range(sets)]
    pooled = impl.PooledAuroc(lows, highs, n_low, n_high)
    lo, hi = np.concatenate(lows), np.concatenate(highs)
    assert pooled.value() == pytest.approx(impl.auroc(hi, lo))
    # a bootstrap replicate's weights: sklearn's weighted AUROC on the same values
    wl = impl.pair_weights(np.array([2, 0, 1, 1, 0, 2]))
    wh = impl.pair_weights(np.array([1, 1, 3, 0, 0]))
    expected = roc_auc_score(np.r_[np.ones(len(hi)), np.zeros(len(lo))], np.r_[hi, lo],
                             sample_weight=np.r_[np.tile(wh, sets), np.tile(wl, sets)])
    assert pooled.value(wl, wh) == pytest.approx(expected)
    with pytest.raises(ValueError):
        impl.PooledAuroc([lo[:14]], [hi[:10]], n_low, n_high)


def test_bootstrap_of_separated_ensembles_stays_at_one_and_overlapping_ones_vary():
    rng = np.random.default_rng(0)
    sep = impl.PooledAuroc([rng.uniform(0, 0.4, 28)], [rng.uniform(0.6, 1, 21)], 8, 7)
    assert sep.value() == 1.0 and (sep.bootstrap(50, rng) == 1.0).all()  # resampling cannot create overlap
    over = impl.PooledAuroc([rng.uniform(0, 0.7, 28)], [rng.uniform(0.3, 1, 21)], 8, 7)
    reps = over.bootstrap(200, rng)
    assert 0.5 < over.value() < 1.0 and reps.std() > 0.01
    assert np.quantile(reps, 0.025) < over.value() < np.quantile(reps, 0.975)


@pytest.mark.parametrize("aurocs, verdict", [
    ([1.0, 1.0, 1.0], 0.0), ([0.9, 1.0, 1.0], 0.0), ([0.9, 0.99, 1.0], 1.0), ([0.7, 0.8, 0.9], 1.0),
    ([math.nan, 0.9, 0.8], 1.0), ([math.nan, 1.0, 1.0], 0.0), ([math.nan, 0.9, 1.0], math.nan),
    ([math.nan, math.nan, math.nan], math.nan)])
def test_overlap_verdict_is_symmetric(aurocs, verdict):
    got = impl.overlap_verdict(aurocs, 2)
    assert (math.isnan(got) and math.isnan(verdict)) or got == verdict
    # symmetric: mirroring overlap <-> separation flips a decided verdict (3 metrics, 2 needed either way)
    mirrored = [a if math.isnan(a) else (1.0 if a < 1.0 else 0.5) for a in aurocs]
    flipped = impl.overlap_verdict(mirrored, 2)
    assert (math.isnan(got) and math.isnan(flipped)) or flipped == 1.0 - got


def _store(noise: float, n: int = 6) -> FakeStore:
    """``n`` random networks and ``n`` noisy copies of one network (weight noise ``noise``) on 24 probes, probe
    sets clean and a shifted copy; suite metrics linear CKA, Procrustes, wCKA."""
    mlp = fake_model_class()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(96, 12, generator=g)
    y = (x @ torch.randn(12, 3, generator=g)).argmax(1)
    data = simbench.DataSplits(simbench.Split(x[:48], y[:48]), simbench.Split(x[48:72], y[48:72]),
                               simbench.Split(x[72:], y[72:]), task="classification", num_classes=3)
    models, specs = {}, []
    for i in range(n):
        models[f"random/s{i}"] = mlp(12, 8, 3, 10 + i).eval()
        specs.append(ModelSpec(f"random/s{i}", {"ensemble": "random", "seed": i, "epoch": 0}))
    for i in range(n):
        m = mlp(12, 8, 3, 0).eval()
        with torch.no_grad():
            for p in m.parameters():
                p.add_(noise * torch.randn(p.shape, generator=g))
        models[f"converged/e{i}"] = m
        specs.append(ModelSpec(f"converged/e{i}", {"ensemble": "converged", "seed": 0, "epoch": 96 + i}))
    probes = [simbench.ProbeSet("clean", x[72:], y[72:]), simbench.ProbeSet("shifted", x[72:] + 1.0, y[72:])]
    return FakeStore(models=models, specs=specs, probe_sets=probes, data=data,
                     metrics={"linear_cka": LinearCKA(), "procrustes": Procrustes(), "wcka": WeightsCKA()})


BENCH = {"probe_counts": (8, 0), "count_draws": 1, "count_models": 3, "timing_repeats": 0, "n_bootstrap": 40,
             "subset_metrics": ("dcka",), "subset_probes": 16}


def _frame(records):
    return pd.DataFrame([record_row("fake", "benchmark", r) for r in records])


@pytest.mark.parametrize("noise, expected", [(0.001, 0.0), (3.0, 1.0)])
def test_toy_ensembles_give_the_verdict_they_must(noise, expected):
    """Near-identical copies separate from random networks (not reproduced); copies drowned in weight noise are
    random networks themselves, so their values overlap (reproduced)."""
    store = _store(noise)
    frame = _frame(run_benchmark(Calibration(**BENCH), store))
    ok = frame[frame["status"] == "ok"]
    verdict = ok[(ok["group"] == "overlap") & (ok["statistic"] == "overlap_reproduced")]["value"]
    assert list(verdict) == [expected]
    auc = ok[(ok["group"] == "overlap") & (ok["statistic"] == "auroc")].set_index("metric")["value"]
    assert set(auc.index) == {"linear_cka", "procrustes", "dcka"}  # the weight metric has no overlap row
    if expected == 0.0:
        assert (auc == 1.0).all()
    else:
        assert (auc < 1.0).sum() >= 2
    # the pooled AUROC is the AUROC of both probe sets' pairs together (15 pairs per ensemble and set)
    rows = ok[(ok["metric"] == "linear_cka") & (ok["group"] == "overlap")].set_index("statistic")["value"]
    assert rows["sets"] == 2 and rows["gap"] == pytest.approx(rows["converged_min"] - rows["random_max"])
    assert (rows["overlaps"] == 1.0) == (rows["auroc"] < 1.0)
    tables = {t.key: t for t in Calibration.tables(frame)}
    overall = tables["overlap"].frame.set_index("metric").loc["(overall)"]
    assert overall["reproduced"] == ("yes" if expected else "no")
    head = tables["verdict"].frame
    assert ("overlap of the two ensembles" in set(head["metric"]))


def test_subset_metrics_read_the_same_random_rows_of_every_probe_set():
    store = _store(0.001)
    bench = Calibration(**BENCH)
    reqs = {r.key: r for r in bench.requests(store)}
    rows = impl.subset_rows(bench, store, 24)
    assert len(rows) == 16 and len(set(rows.tolist())) == 16
    for p in ("clean", "shifted"):
        low, high = reqs[impl.subset_key("dcka", p, "low")], reqs[impl.subset_key("dcka", p, "high")]
        assert [s.model for s in low.sources] == [f"random/s{i}" for i in range(6)]
        assert [s.model for s in high.sources] == [f"converged/e{i}" for i in range(6)]
        assert all(s.rows == tuple(rows.tolist()) and s.probe_set == p for s in (*low.sources, *high.sources))
    # the subset metric also gets the probe-count analysis on clean
    assert impl.count_key("dcka", 8, 0, "low") in reqs
    # the distribution on clean equals dCKA computed here on those rows
    from simbench_plugins.metrics import DeconfoundedCKA

    frame = _frame(run_benchmark(bench, store))
    reps = store.representations("clean")
    inputs = store.probe_set("clean").x[torch.as_tensor(rows)]
    m = DeconfoundedCKA().pairwise([reps[i][torch.as_tensor(rows)] for i in range(6)], inputs=inputs).numpy()
    iu = np.triu_indices(6, k=1)
    mean = frame[(frame["statistic"] == "mean") & (frame["metric"] == "dcka") & (frame["group"] == "random")
                 & (frame["probe_set"] == "clean")]["value"]
    assert float(mean.iloc[0]) == pytest.approx(m[iu].mean(), abs=1e-6)


def test_bad_parameters_are_one_line_errors():
    with pytest.raises(simbench.ParamError, match="at most 3") as err:
        Calibration(overlap_at_least=4)
    assert err.value.key == "overlap_at_least"
    with pytest.raises(simbench.ParamError, match="listed twice") as err:
        Calibration(subset_metrics=("dcka", "dcka"))
    assert err.value.key == "subset_metrics"
    store = _store(0.001)
    with pytest.raises(UserError, match="also suite metrics"):
        Calibration(subset_metrics=("linear_cka",)).requests(store)
