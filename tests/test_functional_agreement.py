"""The functional_agreement benchmark on a fake store view with planted relations."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats as sps

from simbench.errors import MeasurementFailed, UserError
from simbench.results import record_row
from simbench.types import ModelSpec
from simbench.view import StoreView
from simbench_plugins.benchmarks.functional_agreement import ALL_PROBES, WITH_EXCLUDED, FunctionalAgreement, stats
from simbench_plugins.benchmarks.functional_agreement import ranking
from simbench_plugins.benchmarks.functional_agreement.common import group_blocks, pair_groups, resolve_groups

FAST = {"n_permutations": 199, "n_bootstrap": 400, "min_clusters": 5}


class FakeContext:
    """12 models (arch x seed x epoch), two probe sets, planted similarity/agreement relations.

    Agreement falls with the distance between latent model positions.  Metrics:
    ``good`` = agreement + small noise, ``noisy`` = agreement + large noise,
    ``random`` = noise only, ``asym`` = ``good`` plus an antisymmetric part,
    ``broken`` = ``good``-like but fails on the ``shift`` probe set.
    """

    def __init__(self, seed: int = 0, metrics=("good", "noisy", "random", "broken"), collapsed=()) -> None:
        rng = np.random.default_rng(seed)
        self.suite_name, self.seed, self.device = "fake", 0, "cpu"
        self.specs = [ModelSpec(f"{a}/s{s}/e{e}", {"arch": a, "seed": s, "epoch": e})
                      for a in ("a", "b") for s in (0, 1, 2) for e in (1, 2)]
        m = len(self.specs)
        pos = np.array([[1.0 * (s.factors["arch"] == "b"), 0.5 * s.factors["epoch"]] for s in self.specs])
        pos += 0.3 * rng.normal(size=pos.shape)
        dist = ((pos[:, None] - pos[None]) ** 2).sum(-1)
        self.probe_sets = ["clean", "shift"]
        self.agree = {}
        for k, p in enumerate(self.probe_sets):
            a = np.exp(-dist / (1 + k)) + 0.02 * self._sym(rng, m)
            np.fill_diagonal(a, 1.0)
            self.agree[p] = a
        self.sim = {}
        for p in self.probe_sets:
            a = self.agree[p]
            self.sim[("good", p)] = a + 0.02 * self._sym(rng, m)
            self.sim[("noisy", p)] = a + 0.3 * self._sym(rng, m)
            self.sim[("random", p)] = self._sym(rng, m)
            self.sim[("broken", p)] = a + 0.05 * self._sym(rng, m)
            anti = rng.normal(size=(m, m))
            self.sim[("asym", p)] = self.sim[("good", p)] + (anti - anti.T)
        self.metrics = {name: None for name in metrics}
        self.calls: list[tuple[str, str]] = []
        # accuracy: every model well above chance (1/3) except the indices in ``collapsed``
        self.acc = {p: np.array([0.2 if i in collapsed else 0.9 - 0.01 * i for i in range(m)]) for p in self.probe_sets}
        self.data = SimpleNamespace(task="classification", num_classes=3)

    @staticmethod
    def _sym(rng, m):
        e = rng.normal(size=(m, m))
        return (e + e.T) / np.sqrt(2)

    def similarity(self, metric: str, probe_set: str) -> torch.Tensor:
        self.calls.append((metric, probe_set))
        if (metric, probe_set) == ("broken", "shift"):
            raise MeasurementFailed("LinAlgError: singular matrix")
        return torch.tensor(self.sim[(metric, probe_set)])

    def agreement(self, probe_set: str) -> torch.Tensor:
        return torch.tensor(self.agree[probe_set])

    def accuracy(self, probe_set: str) -> torch.Tensor:
        return torch.tensor(self.acc[probe_set])

    def failure(self, metric: str, probe_set: str) -> str | None:
        return "LinAlgError: singular matrix" if (metric, probe_set) == ("broken", "shift") else None


def as_frame(records) -> pd.DataFrame:
    """Records as the runner stores them (the frame ``tables``/``plots`` receive)."""
    return pd.DataFrame([record_row("fake", "benchmark", r) for r in records])


@pytest.fixture(scope="module")
def result():
    ctx = FakeContext()
    records = FunctionalAgreement(**FAST).evaluate(ctx)
    return ctx, records, as_frame(records)


def value(frame, statistic, metric, group="all", probe_set=ALL_PROBES, **extra):
    sel = (frame["statistic"] == statistic) & (frame["metric"] == metric) & (frame["group"] == group) & (
        frame["probe_set"] == probe_set)
    for key, v in extra.items():
        sel &= frame[key] == v
    rows = frame[sel]
    assert len(rows) == 1, (statistic, metric, group, probe_set, len(rows))
    return float(rows["value"].iloc[0])


def brute_force_mask(specs, group):
    pairs = []
    for i in range(len(specs)):
        for j in range(i + 1, len(specs)):
            diff = [k for k in specs[i].factors if specs[i].factors[k] != specs[j].factors[k]]
            pairs.append(group == "all" or diff == [group])
    return np.array(pairs)


def test_groups_blocks_and_expansion():
    specs = FakeContext().specs
    factors = [dict(s.factors) for s in specs]
    assert resolve_groups(("all", "*"), factors) == ["all", "arch", "seed", "epoch"]
    assert resolve_groups(("seed", "*", "all"), factors) == ["seed", "arch", "epoch", "all"]
    masks = pair_groups(factors, ["all", "arch", "seed", "epoch", "strategy"])
    assert "strategy" not in masks  # not a factor of this zoo
    assert {g: int(m.sum()) for g, m in masks.items()} == {"all": 66, "arch": 6, "seed": 12, "epoch": 6}
    for group, mask in masks.items():
        assert (mask == brute_force_mask(specs, group)).all(), group
    blocks = group_blocks(factors, "seed")
    assert len(set(blocks)) == 4  # arch x epoch
    i, j = stats.upper_pairs(len(specs))
    assert (masks["seed"] == (blocks[i] == blocks[j])).all()  # the group = the within-block pairs
    assert group_blocks(factors, "all") is None


def test_correlations_match_scipy_on_brute_force_groups(result):
    ctx, _, frame = result
    for group in ("all", "seed", "arch"):
        mask = brute_force_mask(ctx.specs, group)
        rs = []
        for probe in ctx.probe_sets:
            x, y = stats.upper(ctx.sim[("noisy", probe)])[mask], stats.upper(ctx.agree[probe])[mask]
            r = sps.pearsonr(x, y).statistic
            rs.append(r)
            rho = sps.spearmanr(x, y).statistic
            assert value(frame, "pearson_r", "noisy", group, probe) == pytest.approx(r)
            assert value(frame, "spearman_rho", "noisy", group, probe) == pytest.approx(rho)
            lo, hi = stats.fisher_interval(r, int(mask.sum()))
            assert value(frame, "pearson_indep_ci_low", "noisy", group, probe) == pytest.approx(lo)
            assert value(frame, "pearson_indep_ci_high", "noisy", group, probe) == pytest.approx(hi)
            # Bonett & Wright (2000): se of atanh(rho) = sqrt((1 + rho^2/2) / (n - 3))
            se = math.sqrt((1 + rho**2 / 2) / (mask.sum() - 3))
            assert value(frame, "spearman_indep_ci_low", "noisy", group, probe) == pytest.approx(
                math.tanh(math.atanh(rho) - 1.959963984540054 * se))
        assert value(frame, "pearson_r", "noisy", group) == pytest.approx(math.tanh(np.mean(np.arctanh(rs))))
        n = frame[(frame["metric"] == "noisy") & (frame["group"] == group) & (frame["statistic"] == "pearson_r")]["n"]
        assert (n == mask.sum()).all()


def test_planted_relations_rank_and_test_as_expected(result):
    _, records, frame = result
    for group in ("all", "seed"):
        ranks = {m: value(frame, "rank", m, group) for m in ("good", "noisy", "random")}
        assert ranks["good"] < ranks["noisy"] < ranks["random"]
    assert value(frame, "rank", "good") == 1 and value(frame, "rank", "random") == 4
    # the permutation test finds the planted relation and not the absent one
    assert value(frame, "pearson_perm_p", "good") == pytest.approx(1 / 200)
    assert value(frame, "pearson_perm_p", "random") > 0.1
    # intervals bracket the estimate; rank sets bracket the rank
    for metric in ("good", "noisy", "random"):
        r = value(frame, "pearson_r", metric)
        assert value(frame, "pearson_ci_low", metric) < r < value(frame, "pearson_ci_high", metric)
        rank = value(frame, "rank", metric)
        assert value(frame, "rank_set_low", metric) <= rank <= value(frame, "rank_set_high", metric)
    assert value(frame, "p_rank_first", "good") > 0.9
    # the best set holds the planted best and not pure noise; random is beaten (by good or noisy)
    assert value(frame, "in_best_set", "good") == 1.0 and value(frame, "in_best_set", "random") == 0.0
    worse = frame[(frame["statistic"] == "worse_p") & (frame["metric"] == "random") & (frame["group"] == "all")
                  & (frame["probe_set"] == ALL_PROBES)]
    assert len(worse) == 1 and worse["value"].iloc[0] < 0.05 and worse["model_b"].iloc[0] in {"good", "noisy"}
    assert value(frame, "worse_diff", "random", model_b=worse["model_b"].iloc[0]) > 0
    # Ding's bad fraction: a metric that tracks agreement never calls a far pair close; noise scores about chance
    assert value(frame, "bad_fraction", "good") == 0.0
    assert value(frame, "bad_fraction_chance", "random") == pytest.approx(0.04, abs=0.015)
    assert value(frame, "close_bad_fraction_chance", "random") == pytest.approx(0.2, abs=0.05)
    assert value(frame, "bad_fraction", "random") > value(frame, "bad_fraction", "good")
    assert all(isinstance(r.value, float) for r in records)  # one number per row


def test_failed_probe_set_is_recorded_and_excluded(result):
    _, _, frame = result
    failed = frame[frame["status"] == "failed"]
    assert len(failed) == 1
    row = failed.iloc[0]
    assert (row["metric"], row["probe_set"], row["group"], row["statistic"]) == ("broken", "shift", "all", "pearson_r")
    assert "singular" in row["error"] and math.isnan(row["value"])
    assert value(frame, "probe_sets", "broken") == 1 and value(frame, "probe_sets", "good") == 2
    assert not ((frame["metric"] == "broken") & (frame["probe_set"] == "shift") & (frame["status"] == "ok")).any()
    # its aggregate is its clean r alone (the failed probe set does not enter as 0)
    assert value(frame, "pearson_r", "broken") == pytest.approx(value(frame, "pearson_r", "broken", "all", "clean"))


def test_metric_comparisons_are_the_rank_set_tests(result):
    ctx, _, frame = result
    comp = frame[(frame["model_a"] != "") & (frame["model_b"] != "")]
    assert (comp["metric"] == comp["model_a"]).all()
    order = list(ctx.metrics)
    pairs = set(zip(comp["model_a"], comp["model_b"], strict=True))
    assert pairs == {(a, b) for i, a in enumerate(order) for b in order[i + 1:]}  # each unordered pair once
    assert set(comp["probe_set"]) == {ALL_PROBES}
    groups = set(frame.loc[frame["statistic"] == "few_clusters", "group"])
    few = {g for g in groups if value(frame, "few_clusters", "", g, "") == 1.0}
    assert few and set(comp["group"]) == groups - few  # no comparisons (they are verdicts) below min_clusters
    for group in sorted({"all", "seed"} - few):
        ra, rb = value(frame, "pearson_r", "good", group), value(frame, "pearson_r", "random", group)
        kw = {"model_a": "good", "model_b": "random"}
        assert value(frame, "pearson_diff", "good", group, **kw) == pytest.approx(ra - rb)
        assert value(frame, "pearson_diff_adj_p", "good", group, **kw) < 0.05
        assert value(frame, "z_diff_jack_se", "good", group, **kw) > 0


def test_paired_bootstrap_and_jackknife_reproduce_a_hand_computed_case():
    """Weighted moments equal the correlation of explicitly replicated pairs; the jackknife
    equals correlations recomputed with each model's pairs removed."""
    rng = np.random.default_rng(3)
    m = 6
    x = rng.normal(size=(m, m))
    x = x + x.T
    y = rng.normal(size=(m, m))
    y = y + y.T + x
    iu, ju = stats.upper_pairs(m)
    # one bootstrap draw by hand: models 0, 0, 2, 3, 5, 5 -> pair (i, j) appears c_i * c_j times
    counts = np.array([2.0, 0, 1, 1, 0, 2])
    w = counts[iu] * counts[ju]
    reps = np.repeat(np.arange(len(iu)), w.astype(int))
    expected = sps.pearsonr(x[iu, ju][reps], y[iu, ju][reps]).statistic
    got = stats.weighted_correlations(x[iu, ju][None, None], y[iu, ju][None], w[None])
    assert got[0, 0, 0] == pytest.approx(expected)
    # the leave-one-model-out jackknife
    jack = stats.jackknife_correlations(x, y)
    for u in range(m):
        keep = (iu != u) & (ju != u)
        assert jack[u, 0] == pytest.approx(sps.pearsonr(x[iu, ju][keep], y[iu, ju][keep]).statistic)
    # the jackknife standard error formula on known numbers: sqrt((U-1)/U * sum((t - mean)^2))
    assert stats.jackknife_se(np.array([1.0, 2.0, 3.0, 4.0])) == pytest.approx(math.sqrt(0.75 * 5.0))
    # blocks as units: leaving out a block drops exactly its pairs
    blocks = np.array(["a", "a", "b", "b", "c", "c"])
    jb = stats.jackknife_correlations(x, y, pairs=blocks[iu] == blocks[ju], blocks=blocks, min_clusters=2)
    assert jb.shape == (3, 1)


def test_bonett_and_ding_known_values():
    lo, hi = stats.bonett_wright_interval(0.5, 103)
    se = math.sqrt(1.125 / 100)
    assert (lo, hi) == pytest.approx((math.tanh(math.atanh(0.5) - 1.959963984540054 * se),
                                      math.tanh(math.atanh(0.5) + 1.959963984540054 * se)))
    # Ding et al.: 10 pairs, quantile 0.2 -> 2 closest, 2 least agreeing; one pair is both
    sim = np.arange(10.0)  # pairs 8, 9 are the closest
    agr = np.array([5, 6, 7, 8, 9, 10, 11, 12, 0, 13.0])  # pairs 0 and 8 agree least
    bad = stats.bad_fraction(sim, agr, 0.2)
    assert (bad.fraction, bad.chance, bad.close_fraction, bad.close_chance) == pytest.approx((0.1, 0.04, 0.5, 0.2))


def _replicates(rng, obs_shift, units=40, n_boot=2000, noise=0.05):
    """Paired bootstrap and jackknife replicates with a common component (metrics correlated)."""
    q = len(obs_shift)
    common = rng.normal(size=(n_boot, 1))
    boot = 0.5 + np.asarray(obs_shift) + common + noise * rng.normal(size=(n_boot, q))
    jc = rng.normal(size=(units, 1))
    # jackknife replicates whose SE matches the bootstrap SD: sqrt((U-1)/U * U * var) = sqrt(U-1) * sd
    jack = 0.5 + np.asarray(obs_shift) + (jc + noise * rng.normal(size=(units, q))) / math.sqrt(units - 1)
    return np.asarray(obs_shift) + 0.5, boot, jack


def test_rank_sets_keep_equals_and_drop_the_clearly_worse():
    rng = np.random.default_rng(0)
    obs, boot, jack = _replicates(rng, [0.0, 0.0, 0.0, -0.5])
    sets = ranking.rank_sets(obs, boot, jack)
    assert sets.in_best.tolist() == [True, True, True, False]
    assert sets.rank[3] == 4 and sets.low[3] == sets.high[3] == 4
    assert set(sets.low[:3]) == {1} and set(sets.high[:3]) == {3}
    assert sets.beaten_by[3] in {0, 1, 2} and sets.mark_p[3] < 0.01 and (sets.beaten_by[:3] == -1).all()
    # identical metrics are never separated; a lone metric is the best
    twins = ranking.rank_sets(np.array([0.3, 0.3]), np.tile(boot[:, :1], (1, 2)), np.tile(jack[:, :1], (1, 2)))
    assert twins.in_best.all() and (twins.high == 2).all()
    lone = ranking.rank_sets(np.array([0.3, np.nan]), boot[:, :2], jack[:, :2])
    assert lone.in_best.tolist() == [True, False] and lone.rank.tolist() == [1, -1]


def test_tie_margin_keeps_a_rounding_level_difference_from_excluding_anyone():
    """A difference of 0.002 in z measured very precisely is significant without a margin and a tie with it."""
    rng = np.random.default_rng(1)
    obs, boot, jack = _replicates(rng, [0.0, -0.002], noise=1e-5)
    assert ranking.rank_sets(obs, boot, jack, margin=0.0).in_best.tolist() == [True, False]
    assert ranking.rank_sets(obs, boot, jack, margin=0.01).in_best.tolist() == [True, True]
    # a real difference still separates with the margin
    obs, boot, jack = _replicates(rng, [0.0, -0.05], noise=1e-3)
    assert ranking.rank_sets(obs, boot, jack, margin=0.01).in_best.tolist() == [True, False]


def _step_down_reference(obs, boot, jack, level, margin):
    """Romano & Wolf's step-down written as the textbook loop (reject, shrink the set, repeat)."""
    from scipy.stats import norm, t as student

    q, u = len(obs), len(jack)
    d = obs[:, None] - obs[None, :]
    dj = jack[:, :, None] - jack[:, None, :]
    se = np.sqrt((u - 1) / u * ((dj - dj.mean(0)) ** 2).sum(0))
    db = boot[:, :, None] - boot[:, None, :]
    sd = db.std(axis=0, ddof=1)
    hyps = [(i, j) for i in range(q) for j in range(q) if i != j]
    t = {h: norm.isf(student.sf((d[h] - margin) / se[h], u - 1)) for h in hyps}
    null = {h: (db[:, h[0], h[1]] - d[h]) / sd[h] for h in hyps}
    active, rejected = set(hyps), set()
    while True:
        mx = np.max([null[h] for h in active], axis=0)
        # reject where the bootstrap p of the max over the active set is below the level
        new = {h for h in active if (1 + (mx >= t[h]).sum()) / (len(mx) + 1) < level}
        if not new:
            return rejected
        rejected |= new
        active -= new
        if not active:
            return rejected


@pytest.mark.parametrize("seed", range(6))
def test_rank_sets_match_the_textbook_step_down_and_never_contradict_themselves(seed):
    rng = np.random.default_rng(seed)
    q = int(rng.integers(3, 8))
    obs, boot, jack = _replicates(rng, rng.normal(scale=0.08, size=q), units=30, n_boot=400, noise=0.05)
    sets = ranking.rank_sets(obs, boot, jack, level=0.05, margin=0.01)
    reference = _step_down_reference(obs, boot, jack, 0.05, 0.01)
    assert {(int(i), int(j)) for i, j in zip(*np.nonzero(sets.beats), strict=True)} == reference
    for j in range(q):
        beaten = sets.beats[:, j].any()
        assert sets.in_best[j] == (sets.low[j] == 1) == (not beaten) == (sets.beaten_by[j] == -1)
        assert sets.low[j] <= sets.rank[j] <= sets.high[j]
        if beaten:
            assert sets.mark_p[j] < 0.05 and sets.beats[sets.beaten_by[j], j]
            assert obs[sets.beaten_by[j]] > obs[j]
        else:
            assert not sets.mark_p[j] < 0.05
    assert sets.in_best[np.argmax(obs)]  # the observed leader is always in the best set


def test_rank_sets_cover_the_true_best_under_a_shared_model_design():
    """Coverage: the set holds the truly best metrics in at least 95 % of trials (minus Monte Carlo error),
    and excludes a clearly worse metric most of the time."""
    rng = np.random.default_rng(11)
    trials, covered, excluded = 120, 0, 0
    m = 30
    iu, ju = stats.upper_pairs(m)
    for _ in range(trials):
        pos = rng.normal(size=(m, 2))
        y = np.exp(-((pos[:, None] - pos[None]) ** 2).sum(-1) / 2)[None]
        x = np.empty((3, 1, m, m))
        for a, noise in enumerate((0.25, 0.25, 1.5)):  # metric 2 is much noisier: worse
            u = rng.normal(size=m)
            e = rng.normal(size=(m, m))
            x[a, 0] = y[0] + noise * (0.25 * (u[:, None] + u[None, :]) + 0.1 * (e + e.T))
        z = np.arctanh(stats.bootstrap_correlations(x, y, n_boot=300, seed=rng)[:, :, 0])
        zj = np.arctanh(stats.jackknife_correlations(x, y)[:, :, 0])
        obs = np.arctanh(stats.row_pearson(x[:, 0][:, iu, ju], y[0][iu, ju]))
        sets = ranking.rank_sets(obs, z, zj)
        covered += bool(sets.in_best[0] and sets.in_best[1])  # metrics 0 and 1 are equally the best
        excluded += bool(not sets.in_best[2])
    mc = math.sqrt(0.05 * 0.95 / trials)
    assert covered / trials >= 0.95 - 2 * mc
    assert excluded / trials > 0.8


def _null_trial(rng, m=36, q=4, k=1, n_boot=250):
    """Shared-model null: every metric = the same function of agreement + noise with a model-level part,
    so pairs sharing a model are dependent and no metric is better than another."""
    pos = rng.normal(size=(m, 2))
    dist = ((pos[:, None] - pos[None]) ** 2).sum(-1)
    y = np.stack([np.exp(-dist / 2) for _ in range(k)])
    x = np.empty((q, k, m, m))
    for a in range(q):
        for b in range(k):
            u = rng.normal(size=m)  # a model-level deviation: shared by every pair of the model
            e = rng.normal(size=(m, m))
            x[a, b] = y[b] + 0.25 * (u[:, None] + u[None, :]) + 0.1 * (e + e.T)
    from simbench_plugins.benchmarks.functional_agreement.compute import Analysis

    bench = FunctionalAgreement(n_bootstrap=n_boot, n_permutations=0, groups=("all",), min_clusters=20)
    factors = [{"seed": i} for i in range(m)]
    analysis = Analysis(bench, [f"m{i}" for i in range(q)], [f"p{i}" for i in range(k)],
                        {ALL_PROBES: list(range(k))}, int(rng.integers(1 << 30)), detail=False)
    # read the records directly: a data frame per trial cost more than the analysis itself (160 trials)
    records = analysis.run(x, y, factors)
    out = np.array([rec.value == 0.0 for rec in records if rec.statistic == "in_best_set"
                    and rec.probe_set == ALL_PROBES])
    naive = []
    r = {}
    for a in range(q):
        (r[a],) = [rec.value for rec in records if rec.statistic == "pearson_r" and rec.metric == f"m{a}"
                   and rec.group == "all" and rec.probe_set == ALL_PROBES]
    best = max(r, key=r.get)
    iu, ju = stats.upper_pairs(m)
    for a in range(q):
        if a == best:
            continue
        rab = np.mean([stats.row_pearson(x[a, b, iu, ju], x[best, b, iu, ju]) for b in range(k)])
        naive.append(stats.steiger_z(r[best], r[a], float(rab), len(iu)).p)
    return out.any(), (np.asarray(naive) < 0.05).any()


def test_false_exclusion_rate_under_a_shared_model_null():
    """No metric is better, models are shared by pairs: the family-wise rate of excluding any metric
    from the best set (= of any mark) is at most 5 % (plus Monte Carlo error) over 400 trials, while
    the pairs-independent Steiger test is far above it.  benchmarks/bench_ranking.py is the full study."""
    rng = np.random.default_rng(2026)
    trials = 400
    results = np.array([_null_trial(rng) for _ in range(trials)])
    ours, naive = results.mean(axis=0)
    mc = math.sqrt(0.05 * 0.95 / trials)
    assert ours <= 0.05 + 2 * mc, ours
    assert naive > 0.2, naive  # why the old marks were wrong: the dependence between pairs matters


def test_few_clusters_give_no_verdict_anywhere():
    ctx = FakeContext()
    frame = as_frame(FunctionalAgreement(n_permutations=0, n_bootstrap=200, min_clusters=13).evaluate(ctx))
    assert value(frame, "few_clusters", "", "all", "") == 1.0 and value(frame, "clusters", "", "all", "") == 12
    assert not frame["statistic"].isin(["in_best_set", "rank_set_low", "worse_p", "best_set_size"]).any()
    tables = FunctionalAgreement.tables(frame)
    head = tables[0]
    assert (head.frame["best_set"] == "").all() and (head.frame["mark"] == "").all()
    assert (head.frame["rank_set"] == "").all() and (head.frame["beaten_by"] == "").all()
    assert "no verdict" in head.title and "best" not in head.title.replace("no verdict", "")
    assert "Only 12 independent resampling units" in head.caption and "min_clusters = 13" in head.caption
    groups = next(t for t in tables if t.key == "groups")
    assert "fewer than 13" in groups.caption
    short = FunctionalAgreement.summary(frame)
    assert "verdict" not in short.columns and "ranks" not in short.columns and "no verdict" in short.attrs["title"]


def test_collapsed_models_are_excluded_and_shown():
    ctx = FakeContext(collapsed=(0, 5))
    frame = as_frame(FunctionalAgreement(n_permutations=0, n_bootstrap=100, min_clusters=5).evaluate(ctx))
    assert value(frame, "models_excluded", "", "", "clean") == 2
    assert value(frame, "min_accuracy", "", "", "clean") == pytest.approx(1 / 3 + 0.1)
    excluded = set(frame.loc[frame["statistic"] == "model_excluded", "model_a"])
    assert excluded == {ctx.specs[0].id, ctx.specs[5].id}
    n_kept = value(frame, "pairs", "", "all", "")
    assert n_kept == 10 * 9 / 2
    assert value(frame, "pairs", "", WITH_EXCLUDED, "") == 66
    acc = frame[frame["statistic"] == "model_accuracy"]
    assert len(acc) == 12 * 2
    tables = {t.key: t for t in FunctionalAgreement.tables(frame)}
    models = tables["models"].frame
    assert list(models["excluded"][:2]) == ["yes", "yes"] and (models["excluded"][2:] == "").all()
    assert "with_excluded" in tables and "2 of 12 models are excluded" in tables["ranking"].caption


def test_tables(result):
    _, _, frame = result
    tables = FunctionalAgreement.tables(frame)
    by_key = {t.key: t for t in tables}
    assert tables[0].key == "ranking"
    assert list(by_key) == ["ranking", "by_probe_family", "groups", "group_ranks", "models", "comparisons", "bad_fraction", "probe_sets",
                            "detail"]
    head = by_key["ranking"].frame
    for col in ("rank", "rank_set", "metric", "aliases", "pearson_r", "pearson_ci_low", "pearson_ci_high",
                "best_set", "beaten_by", "worse_p", "mark", "p_rank_first", "spearman_rho", "n", "probe_sets",
                "status"):
        assert col in head.columns, col
    assert list(head["metric"])[0] == "good" and list(head["rank"]) == [1, 2, 3, 4]
    assert "best" in by_key["ranking"].title
    status = dict(zip(head["metric"], head["status"], strict=True))
    assert status["broken"].startswith("FAILED on 1 probe set(s)") and "singular" in status["broken"]
    marks = dict(zip(head["metric"], head["mark"], strict=True))
    assert marks["good"] == "" and marks["random"] in {"*", "**", "***"}
    # one story: a mark exactly when outside the best set, which is exactly when the rank set excludes 1
    for _, row in head.iterrows():
        if row["status"] != "ok":
            continue
        marked = row["mark"] in {"*", "**", "***"}
        assert marked == (row["best_set"] != "yes") == (not row["rank_set"].startswith("1–")) == bool(row["beaten_by"])
    groups = by_key["groups"].frame
    assert set(groups["group"]) == {"all", "arch", "seed", "epoch"}
    assert list(by_key["group_ranks"].frame.columns[:2]) == ["metric", "mean_rank"]
    verdict_groups = [g for g in ("all", "arch", "seed", "epoch") if value(frame, "few_clusters", "", g, "") == 0.0]
    assert len(by_key["comparisons"].frame) == len(verdict_groups) * 6  # groups with a verdict x metric pairs
    assert set(by_key["probe_sets"].frame.columns) == {"metric", "clean", "shift"}
    assert "ASSUME INDEPENDENT PAIRS" in by_key["detail"].caption


def test_probe_families_are_ranked_separately():
    ctx = FakeContext(metrics=("good", "noisy"))
    ctx.probe_sets = ["clean", "mnist_c/fog", "mnist_c/rotate"]
    for p in ctx.probe_sets[1:]:
        ctx.agree[p] = ctx.agree["shift"]
        ctx.acc[p] = ctx.acc["shift"]
        for metric in ("good", "noisy"):
            ctx.sim[(metric, p)] = ctx.sim[(metric, "shift")]
    frame = as_frame(FunctionalAgreement(n_permutations=0, n_bootstrap=100, groups=("all",)).evaluate(ctx))
    assert {"(mean over clean)", "(mean over mnist_c)", ALL_PROBES} <= set(frame["probe_set"])
    assert value(frame, "pearson_r", "noisy", "all", "(mean over clean)") == pytest.approx(
        value(frame, "pearson_r", "noisy", "all", "clean"))
    tables = {t.key: t for t in FunctionalAgreement.tables(frame)}
    fam = tables["by_probe_family"].frame
    assert set(fam["probe_sets_of"]) == {"clean", "mnist_c"}


def test_similarity_probe_set_measures_on_clean_only():
    ctx = FakeContext(metrics=("good", "noisy"))
    records = FunctionalAgreement(similarity_probe_set="clean", n_permutations=0, n_bootstrap=0).evaluate(ctx)
    frame = as_frame(records)
    assert {p for _, p in ctx.calls} == {"clean"}
    x = stats.upper(ctx.sim[("noisy", "clean")])
    y = stats.upper(ctx.agree["shift"])
    assert value(frame, "pearson_r", "noisy", "all", "shift") == pytest.approx(sps.pearsonr(x, y).statistic)
    marker = frame[frame["statistic"] == "similarity_measured_on"]
    assert list(marker["probe_set"]) == ["clean"]
    assert not frame["statistic"].isin(["pearson_perm_p", "pearson_boot_ci_low"]).any()  # switched off
    tables = {t.key: t for t in FunctionalAgreement.tables(frame)}
    assert "measured on 'clean'" in tables["ranking"].caption
    with pytest.raises(UserError, match="similarity_probe_set 'typo'"):
        FunctionalAgreement(similarity_probe_set="typo").evaluate(FakeContext())


def test_asymmetric_similarity_is_symmetrised():
    ctx = FakeContext(metrics=("asym",))
    frame = as_frame(FunctionalAgreement(n_permutations=0, n_bootstrap=0).evaluate(ctx))
    s = ctx.sim[("asym", "clean")]
    x = stats.upper(0.5 * (s + s.T))
    y = stats.upper(ctx.agree["clean"])
    assert value(frame, "pearson_r", "asym", "all", "clean") == pytest.approx(sps.pearsonr(x, y).statistic)


def test_tables_when_every_measurement_failed():
    from simbench.types import Record

    records = [Record("functional_agreement", "pearson_r", float("nan"), metric="boom", probe_set=p, group="all",
                      status="failed", error="RuntimeError: boom") for p in ("clean", "shift")]
    tables = FunctionalAgreement.tables(as_frame(records))
    head = tables[0].frame
    assert list(head["metric"]) == ["boom"]
    assert head["status"].iloc[0] == "FAILED on 2 probe set(s): RuntimeError: boom"


def test_plots_are_written(result, tmp_path):
    from PIL import Image

    ctx, _, frame = result
    paths = FunctionalAgreement.plots(frame, tmp_path / "plots", view=run_view(ctx))
    names = [p.name for p in paths]
    assert names[:2] == ["functional_agreement_forest.png", "functional_agreement_probe_sets.png"]
    assert "functional_agreement_scatter_all.png" in names and "functional_agreement_scatter_seed.png" in names
    for path in paths:
        with Image.open(path) as img:
            assert img.format == "PNG" and img.size[0] > 400 and img.size[1] > 300
            assert len(np.unique(np.asarray(img.convert("L")))) > 20  # not blank


def run_view(ctx: FakeContext) -> StoreView:
    """The fake run as the leaderboard stores it: similarity and agreement matrices as pair rows.

    ``asym`` is stored in both directions (as the runner stores asymmetric metrics), ``wcka``
    once under the probe set ``weights``, and ``broken`` has a failed row on ``shift``.
    """
    ids = [s.id for s in ctx.specs]
    m = len(ids)
    rows = []
    upper = [(i, j) for i in range(m) for j in range(i + 1, m)]
    both = [(i, j) for i in range(m) for j in range(m) if i != j]
    for p in ctx.probe_sets:
        rows += [dict(kind="agreement", metric="", probe_set=p, model_a=ids[i], model_b=ids[j], status="ok",
                      value=ctx.agree[p][i, j]) for i, j in upper]
        for metric in ("good", "asym", "broken"):
            if (metric, p) == ("broken", "shift"):
                rows.append(dict(kind="similarity", metric=metric, probe_set=p, model_a="", model_b="",
                                 status="failed", value=float("nan")))
                continue
            rows += [dict(kind="similarity", metric=metric, probe_set=p, model_a=ids[i], model_b=ids[j], status="ok",
                          value=ctx.sim[(metric, p)][i, j]) for i, j in (both if metric == "asym" else upper)]
    rows += [dict(kind="similarity", metric="wcka", probe_set="weights", model_a=ids[j], model_b=ids[i],
                  status="ok", value=float(i + j)) for i, j in upper]  # stored in the other direction
    return StoreView.of_run(pd.DataFrame(rows), ctx.specs, {})


def test_run_view_pairs_are_the_stored_matrices():
    ctx = FakeContext(metrics=("good", "asym", "broken"))
    view = run_view(ctx)
    m = len(ctx.specs)
    pairs = view.pairs("shift")
    assert len(pairs) == m * (m - 1) // 2
    assert list(pairs.columns[:3]) == ["model_a", "model_b", "agreement"]
    assert set(pairs.columns) == {"model_a", "model_b", "agreement", "good", "asym", "wcka"}  # broken failed here
    ids = [s.id for s in ctx.specs]
    for _, row in pairs.sample(8, random_state=1).iterrows():
        i, j = ids.index(row["model_a"]), ids.index(row["model_b"])
        assert i < j
        assert row["agreement"] == pytest.approx(ctx.agree["shift"][i, j])
        assert row["good"] == pytest.approx(ctx.sim[("good", "shift")][i, j])
        asym = ctx.sim[("asym", "shift")]
        assert row["asym"] == pytest.approx(0.5 * (asym[i, j] + asym[j, i]))
        assert row["wcka"] == pytest.approx(i + j)
    assert "broken" in view.pairs("clean").columns


def test_scatter_correlations_are_the_benchmarks(result, tmp_path):
    """The scatter plot reads the same pairs the benchmark correlated: r of the view's columns == pearson_r."""
    ctx, _, frame = result
    pairs = run_view(ctx).pairs("clean")
    r = sps.pearsonr(pairs["good"], pairs["agreement"]).statistic
    assert r == pytest.approx(value(frame, "pearson_r", "good", "all", "clean"))


def test_run_view_orients_distances_like_the_benchmark():
    """A distance metric's stored values are negated in the view, as ``ctx.similarity`` does."""
    from simbench_plugins.metrics.shape import Procrustes

    ctx = FakeContext(metrics=("good",))
    view = run_view(ctx)
    oriented = StoreView.of_run(view.frame, view.specs, {}, {"good": Procrustes})
    assert not Procrustes.higher_is_more_similar
    assert (oriented.pairs("clean")["good"] == -view.pairs("clean")["good"]).all()


def test_metric_undefined_for_collapsed_models_only_is_kept():
    """NaN rows for an excluded (collapsed) model are harmless; for a kept model they fail that probe set."""
    ctx = FakeContext(metrics=("good", "noisy"), collapsed=(0,))
    for p in ctx.probe_sets:
        ctx.sim[("good", p)] = ctx.sim[("good", p)].copy()
        ctx.sim[("good", p)][0, 1:] = ctx.sim[("good", p)][1:, 0] = np.nan  # model 0: collapsed and undefined
        ctx.sim[("noisy", p)] = ctx.sim[("noisy", p)].copy()
        ctx.sim[("noisy", p)][3, 4] = ctx.sim[("noisy", p)][4, 3] = np.nan  # kept models: a real failure
    frame = as_frame(FunctionalAgreement(n_permutations=0, n_bootstrap=50, groups=("all",)).evaluate(ctx))
    assert math.isfinite(value(frame, "pearson_r", "good"))
    failed = frame[frame["status"] == "failed"]
    assert set(failed["metric"]) == {"noisy"} and failed["error"].str.contains("undefined for 2 model").all()
    # with the collapsed model included, "good" is undefined: no ranking row for it there
    assert not ((frame["group"] == WITH_EXCLUDED) & (frame["metric"] == "good")
                & (frame["statistic"] == "pearson_r")).any()


def test_terminal_summary_is_short_and_fits_80_columns(result):
    from simbench.report import format_frame

    _, _, frame = result
    summary = FunctionalAgreement.summary(frame)
    assert list(summary.columns) == ["metric", "r", "r_95_low", "r_95_high", "ranks", "P(#1)", "verdict", "status"]
    lines = format_frame(summary, width=80)
    assert max(len(line) for line in lines) <= 80
    assert "[" in lines[2] and "good" in lines[2]  # intervals merged, best metric first
    assert "best set" in lines[2] and any("< " in line for line in lines)  # verdict named, with who beats whom


def test_identical_metrics_are_analysed_once_with_their_aliases():
    """Two metrics with the same matrices (to the tolerance) appear once, the first in suite order, with
    the other named as its alias; a metric that differs by more than the tolerance stays separate."""
    ctx = FakeContext(metrics=("twin_b", "twin_a", "near", "noisy"))
    for p in ctx.probe_sets:
        base = ctx.sim[("good", p)]
        ctx.sim[("twin_b", p)] = base
        ctx.sim[("twin_a", p)] = base * (1 + 1e-9)  # rounding-level: an alias
        noise = np.random.default_rng(5).normal(size=base.shape)
        ctx.sim[("near", p)] = base + 1e-3 * (noise + noise.T)  # a real (tiny) difference
    frame = as_frame(FunctionalAgreement(n_permutations=0, n_bootstrap=200, min_clusters=5,
                                         groups=("all",)).evaluate(ctx))
    aliases = frame[frame["statistic"] == "alias_of"]
    assert list(zip(aliases["metric"], aliases["model_b"], strict=True)) == [("twin_a", "twin_b")]
    head = FunctionalAgreement.tables(frame)[0].frame
    assert "twin_a" not in set(head["metric"]) and {"twin_b", "near", "noisy"} <= set(head["metric"])
    assert dict(zip(head["metric"], head["aliases"], strict=True))["twin_b"] == "twin_a"
    # the near-duplicate is within the tie margin of twin_b: both stay in the best set
    best = dict(zip(head["metric"], head["best_set"], strict=True))
    assert best["twin_b"] == best["near"] == "yes"


def test_min_accuracy_out_of_range_is_a_one_line_suite_error():
    from pathlib import Path

    from simbench.errors import SuiteError
    from simbench.registry import build_registry
    from simbench.suite import load_suite

    quick = Path(__file__).resolve().parents[1] / "suites" / "quick.toml"
    with pytest.raises(SuiteError, match=r"benchmarks\[0\]\.min_accuracy: input should be less than or equal to 1"):
        load_suite(quick, build_registry(), ["benchmarks=[{name='functional_agreement', min_accuracy=1.5}]"])
