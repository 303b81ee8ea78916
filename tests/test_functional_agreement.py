"""The functional_agreement benchmark on a fake BenchmarkContext with planted relations."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats as sps

from simbench import stats
from simbench.errors import MeasurementFailed, UserError
from simbench.results import record_row
from simbench.types import ModelSpec, RunView
from simbench_plugins.benchmarks.functional_agreement import (
    ALL_PROBES,
    FunctionalAgreement,
    group_blocks,
    pair_groups,
    resolve_groups,
)

FAST = {"n_permutations": 199, "n_bootstrap": 200}


class FakeContext:
    """12 models (arch x seed x epoch), two probe sets, planted similarity/agreement relations.

    Agreement falls with the distance between latent model positions.  Metrics:
    ``good`` = agreement + small noise, ``noisy`` = agreement + large noise,
    ``random`` = noise only, ``asym`` = ``good`` plus an antisymmetric part,
    ``broken`` = ``good``-like but fails on the ``shift`` probe set.
    """

    def __init__(self, seed: int = 0, metrics=("good", "noisy", "random", "broken")) -> None:
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
            assert value(frame, "pearson_r", "noisy", group, probe) == pytest.approx(r)
            assert value(frame, "spearman_rho", "noisy", group, probe) == pytest.approx(sps.spearmanr(x, y).statistic)
            lo, hi = stats.fisher_interval(r, int(mask.sum()))
            assert value(frame, "pearson_ci_low", "noisy", group, probe) == pytest.approx(lo)
            assert value(frame, "pearson_ci_high", "noisy", group, probe) == pytest.approx(hi)
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
    assert value(frame, "pearson_perm_p", "good", "seed") == pytest.approx(1 / 200)
    assert value(frame, "pearson_perm_p", "random") > 0.1
    # bootstrap intervals bracket the estimate
    for metric in ("good", "noisy", "random"):
        r = value(frame, "pearson_r", metric)
        assert value(frame, "pearson_boot_ci_low", metric) < r < value(frame, "pearson_boot_ci_high", metric)
    # bad fraction: a metric that tracks agreement never calls a far pair close; noise scores about chance
    assert value(frame, "bad_fraction", "good") == 0.0
    chance = value(frame, "bad_fraction_chance", "random")
    assert chance == pytest.approx(0.2, abs=0.05)
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


def test_metric_comparisons(result):
    ctx, _, frame = result
    comp = frame[frame["model_b"] != ""]
    assert (comp["metric"] == comp["model_a"]).all()
    order = list(ctx.metrics)
    pairs = set(zip(comp["model_a"], comp["model_b"], strict=True))
    assert pairs == {(a, b) for i, a in enumerate(order) for b in order[i + 1:]}  # each unordered pair once
    for group in ("all", "seed"):
        ra, rb = value(frame, "pearson_r", "good", group), value(frame, "pearson_r", "random", group)
        n = int(brute_force_mask(ctx.specs, group).sum())
        rab = value(frame, "similarity_r", "good", group, model_b="random")
        expected = stats.steiger_z(ra, rb, rab, n)
        assert value(frame, "pearson_diff", "good", group, model_b="random") == pytest.approx(ra - rb)
        assert value(frame, "pearson_steiger_z", "good", group, model_b="random") == pytest.approx(expected.z)
        assert value(frame, "pearson_steiger_p", "good", group, model_b="random") < 0.001
        assert value(frame, "pearson_diff_boot_ci_low", "good", group, model_b="random") > 0
    # per probe set the inter-metric correlation is the one of the similarity vectors
    x = stats.upper(ctx.sim[("good", "clean")])
    y = stats.upper(ctx.sim[("noisy", "clean")])
    assert value(frame, "similarity_r", "good", "all", "clean", model_b="noisy") == pytest.approx(
        sps.pearsonr(x, y).statistic)
    # broken failed on "shift": its comparisons use the probe sets both metrics have
    assert set(comp[comp["model_b"] == "broken"]["probe_set"]) == {"clean", ALL_PROBES}


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


def test_meng_test_and_group_selection():
    bench = FunctionalAgreement(groups=("all", "seed"), comparison_test="meng", n_permutations=0, n_bootstrap=0)
    frame = as_frame(bench.evaluate(FakeContext(metrics=("good", "random"))))
    assert set(frame["group"]) == {"all", "seed"}
    assert "pearson_meng_p" in set(frame["statistic"]) and "pearson_steiger_p" not in set(frame["statistic"])
    tables = {t.key: t for t in FunctionalAgreement.tables(frame)}
    assert "Meng" in tables["comparisons"].title
    assert "pearson_meng_z" in tables["comparisons"].frame.columns


def test_tables(result):
    _, _, frame = result
    tables = FunctionalAgreement.tables(frame)
    by_key = {t.key: t for t in tables}
    assert tables[0].key == "ranking"
    assert list(by_key) == ["ranking", "groups", "group_ranks", "comparisons", "bad_fraction", "probe_sets", "detail"]
    head = by_key["ranking"].frame
    for col in ("rank", "metric", "pearson_r", "spearman_rho", "n", "probe_sets", "status", "pearson_ci_low",
                "pearson_ci_high", "pearson_perm_p", "pearson_boot_ci_low", "pearson_boot_ci_high", "vs_best"):
        assert col in head.columns, col
    assert list(head["metric"])[0] == "good" and list(head["rank"]) == [1, 2, 3, 4]
    status = dict(zip(head["metric"], head["status"], strict=True))
    assert status["broken"].startswith("FAILED on 1 probe set(s)") and "singular" in status["broken"]
    assert status["good"] == "ok"
    vs = dict(zip(head["metric"], head["vs_best"], strict=True))
    assert vs["good"] == "(best)" and vs["random"] == "***"
    groups = by_key["groups"].frame
    assert set(groups["group"]) == {"all", "arch", "seed", "epoch"} and len(groups) == 16
    assert list(by_key["group_ranks"].frame.columns[:2]) == ["metric", "mean_rank"]
    comp = by_key["comparisons"].frame
    assert len(comp) == 4 * 6  # groups x unordered metric pairs
    assert set(comp["pearson_sig"]) <= {"n.s.", "*", "**", "***"}
    bad = by_key["bad_fraction"].frame
    assert list(bad["metric"])[-1] == "(chance)"
    assert set(by_key["probe_sets"].frame.columns) == {"metric", "clean", "shift"}
    assert len(by_key["detail"].frame) == 4 * 4 * 2 - 4  # broken has no "shift" rows


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

    _, _, frame = result
    ctx, _, frame = result
    paths = FunctionalAgreement.plots(frame, tmp_path / "plots", run=run_view(ctx))
    assert [p.name for p in paths] == ["functional_agreement_correlations.png", "functional_agreement_probe_sets.png",
                                       "functional_agreement_bad_fraction.png", "functional_agreement_scatter.png"]
    for path in paths:
        with Image.open(path) as img:
            assert img.format == "PNG" and img.size[0] > 400 and img.size[1] > 300
            assert len(np.unique(np.asarray(img.convert("L")))) > 20  # not blank



def run_view(ctx: FakeContext) -> RunView:
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
    return RunView(pd.DataFrame(rows), ctx.specs, {})


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
    oriented = RunView(view.frame, view.specs, {}, {"good": Procrustes})
    assert not Procrustes.higher_is_more_similar
    assert (oriented.pairs("clean")["good"] == -view.pairs("clean")["good"]).all()
