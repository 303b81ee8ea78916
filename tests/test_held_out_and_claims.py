"""Held-out attack sources, the head-on claim table and the within-factor ranking (issue 24)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats as sps

import simbench
from simbench.errors import ParamError
from simbench_plugins.benchmarks.functional_agreement import ALL_PROBES, FunctionalAgreement
from simbench_plugins.benchmarks.functional_agreement.report import tables
from simbench_plugins.perturbations.attacks import Attacks
from simbench_plugins.zoos.mlp import MlpZoo
from test_functional_agreement import FAST, FakeContext, as_frame, value

# -- held-out models -------------------------------------------------------------------------------


def test_held_out_models_are_specs_of_their_group_but_flagged():
    zoo = MlpZoo(archs=("1x8", "4x8"), seeds=(0, 1), epochs=(1, 2), held_out=("4x8/s7/e2/standard",))
    specs = zoo.specs()
    held = [s for s in specs if s.held_out]
    assert [s.id for s in held] == ["4x8/s7/e2/standard"]
    assert held[0].factors == {"arch": "4x8", "seed": 7, "epoch": 2, "strategy": "standard"}
    assert sum(not s.held_out for s in specs) == 2 * 2 * 2
    group = next(g for g in zoo.groups() if "4x8/s7/e2/standard" in g)
    assert all(i.startswith("4x8/") for i in group)  # trained in its (arch, strategy) ensemble


@pytest.mark.parametrize("bad", ["4x8/s0/e2/standard",  # seed of the zoo: would be a zoo member
                                 "4x8/s7/e3/standard",  # no such checkpoint
                                 "2x8/s7/e2/standard",  # architecture not in the grid
                                 "4x8/seven/e2/standard"])
def test_held_out_ids_outside_the_recipe_are_refused(bad):
    with pytest.raises(ParamError, match="seed not in") as info:
        MlpZoo(archs=("1x8", "4x8"), seeds=(0, 1), epochs=(1, 2), held_out=(bad,))
    assert info.value.key == "held_out"


def test_attack_sources_name_their_probe_sets_by_what_differs():
    pert = Attacks(attacks=("fgsm", "pgd"), sources=("4x32/s100/e20/standard", "4x32/s100/e20/pgd"))
    assert pert.variants() == ["attacks/fgsm@standard", "attacks/pgd@standard", "attacks/fgsm@pgd", "attacks/pgd@pgd"]
    assert Attacks(attacks=("fgsm",), sources=("a/s1",)).variants() == ["attacks/fgsm"]
    for bad in ({"sources": ("a", "a")}, {"sources": ("a", "b"), "source": "a"}):
        with pytest.raises(ParamError) as info:
            Attacks(**bad)
        assert info.value.key == "sources"


def test_a_run_crafts_attacks_against_held_out_sources_and_never_analyses_them(tmp_path):
    pytest.importorskip("torchattacks")
    suite = tmp_path / "held.toml"
    suite.write_text("""schema = 1
[suite]
name = "held"
[data]
name = "digits28"
classes = [0, 1, 2]
[zoo]
name = "mlp"
archs = ["784-8-3"]
seeds = [0, 1, 2, 3]
epochs = [1, 2]
held_out = ["784-8-3/s9/e2/standard"]
[[perturbations]]
name = "attacks"
attacks = ["fgsm"]
eps = 0.1
sources = ["784-8-3/s9/e2/standard", "784-8-3/s0/e2/standard"]
[[metrics]]
name = "linear_cka"
[[benchmarks]]
name = "functional_agreement"
n_bootstrap = 100
n_permutations = 19
[probes]
n = 60
""")
    simbench.run(suite, run_dir=tmp_path / "run", cache_dir=tmp_path / "cache", quiet=True)
    run_dir = tmp_path / "run"
    manifest = json.loads((run_dir / "manifest.json").read_text())
    analysed = [m["id"] for m in manifest["models"]]
    assert "784-8-3/s9/e2/standard" not in analysed and len(analysed) == 8
    assert [m["id"] for m in manifest["held_out_models"]] == ["784-8-3/s9/e2/standard"]
    sets = manifest["probe_sets"]
    # the label is what differs between the two source ids: the seed part
    held = next(v for k, v in sets.items() if k.startswith("attacks/fgsm@") and v["meta"]["source"].endswith("s9/e2/standard"))
    assert held["meta"]["source_held_out"] is True
    zoo_source = next(v for k, v in sets.items() if k.startswith("attacks/fgsm@") and "/s0/" in v["meta"]["source"])
    assert zoo_source["meta"]["source_held_out"] is False


# -- the head-on claim table -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def claims():
    ctx = FakeContext(metrics=("good", "noisy", "random"))
    records = FunctionalAgreement(focus="good", rivals=("noisy", "random"), **FAST).evaluate(ctx)
    return ctx, records, as_frame(records)


def test_claim_differences_are_the_rankings_own_numbers(claims):
    _, _, frame = claims
    for rival in ("noisy", "random"):
        d = value(frame, "claim_pearson_diff", "good", model_b=rival)
        assert d == pytest.approx(value(frame, "pearson_r", "good") - value(frame, "pearson_r", rival), abs=1e-12)
        d_rho = value(frame, "claim_spearman_diff", "good", model_b=rival)
        assert d_rho == pytest.approx(value(frame, "spearman_rho", "good") - value(frame, "spearman_rho", rival),
                                      abs=1e-12)
        # the Pearson p is the comparisons table's adjusted p: one family of tests
        p_cmp = value(frame, "pearson_diff_adj_p", "good", model_a="good", model_b=rival)
        assert value(frame, "claim_pearson_p_better", "good", model_b=rival) == pytest.approx(p_cmp)


def test_claim_verdicts_follow_the_tests_and_the_interval(claims):
    _, _, frame = claims
    for corr in ("pearson", "spearman"):
        for group in ("all", "arch", "epoch", "seed"):
            rows = frame[(frame["statistic"] == f"claim_{corr}_verdict") & (frame["group"] == group)]
            for _, row in rows.iterrows():
                kw = {"model_b": row["model_b"]}
                p_better = value(frame, f"claim_{corr}_p_better", "good", group, row["probe_set"], **kw)
                p_worse = value(frame, f"claim_{corr}_p_worse", "good", group, row["probe_set"], **kw)
                expected = 1.0 if p_better < 0.05 else (-1.0 if p_worse < 0.05 else 0.0)
                assert row["value"] == expected
                low = value(frame, f"claim_{corr}_z_ci_low", "good", group, row["probe_set"], **kw)
                high = value(frame, f"claim_{corr}_z_ci_high", "good", group, row["probe_set"], **kw)
                z = value(frame, f"claim_{corr}_z_diff", "good", group, row["probe_set"], **kw)
                assert low <= z <= high
                # single-step simultaneous interval clear of the tie margin => the step-down test rejects too
                if low > 0.01:
                    assert row["value"] == 1.0
    # planted: good tracks agreement far better than pure noise
    assert value(frame, "claim_pearson_verdict", "good", model_b="random") == 1.0
    assert value(frame, "claim_spearman_verdict", "good", model_b="random") == 1.0


def test_claim_table_and_a_reversed_claim(claims):
    _, records, _ = claims
    table = next(t for t in tables(as_frame(records)) if t.key == "claims")
    row = table.frame[(table.frame["group"] == "all") & (table.frame["rival"] == "random")
                      & (table.frame["probe_sets_of"] == "probe sets")].iloc[0]
    assert row["pearson_verdict"] == row["spearman_verdict"] == "reproduced"
    assert {"bad_fraction_focus", "bad_fraction_rival", "pearson_adj_p", "spearman_adj_p"} <= set(table.frame.columns)
    # the same data with the roles swapped: the claim is reversed
    ctx = FakeContext(metrics=("good", "random"))
    swapped = as_frame(FunctionalAgreement(focus="random", rivals=("good",), **FAST).evaluate(ctx))
    assert value(swapped, "claim_pearson_verdict", "random", model_b="good") == -1.0


def test_focus_without_rivals_is_a_parameter_error():
    for bad in ({"focus": "wcka"}, {"focus": "wcka", "rivals": ("wcka",)}):
        with pytest.raises(ParamError, match="rival") as info:
            FunctionalAgreement(**bad)
        assert info.value.key == "rivals"


# -- within one factor -----------------------------------------------------------------------------


def test_within_ranks_on_the_sub_zoo_pairs_only():
    ctx = FakeContext(metrics=("good", "noisy", "random"))
    records = FunctionalAgreement(within=("arch",), **FAST).evaluate(ctx)
    frame = as_frame(records)
    for arch in ("a", "b"):
        group = f"within arch = {arch}"
        idx = np.asarray([i for i, s in enumerate(ctx.specs) if s.factors["arch"] == arch])
        iu, ju = np.triu_indices(len(idx), k=1)
        for metric in ("good", "noisy"):
            zs = []
            for p in ctx.probe_sets:
                s = 0.5 * (ctx.sim[(metric, p)] + ctx.sim[(metric, p)].T)
                zs.append(np.arctanh(sps.pearsonr(s[idx[iu], idx[ju]], ctx.agree[p][idx[iu], idx[ju]])[0]))
            assert value(frame, "pearson_r", metric, group) == pytest.approx(np.tanh(np.mean(zs)), abs=1e-9)
        assert value(frame, "clusters", "", group, "") == len(idx)  # the sub-zoo's models are the units
    by_name = {t.key: t for t in tables(frame)}
    assert set(by_name["within"].frame["models_with"]) == {"arch = a", "arch = b"}
    assert not any(str(g).startswith("within") for g in by_name["groups"].frame["group"])
    assert ALL_PROBES in set(frame["probe_set"])


def test_a_probe_set_where_every_pair_agrees_equally_leaves_the_means():
    # every model of arch a gives the same answers on 'shift' (a corruption that sends them all to one
    # class): r is undefined there for every metric, so within arch = a the means are those of 'clean'
    # alone and the jackknife interval exists (before the fix r = 0 entered the mean and the interval was NaN)
    ctx = FakeContext(metrics=("good", "noisy", "random"))
    idx = np.asarray([i for i, s in enumerate(ctx.specs) if s.factors["arch"] == "a"])
    ctx.agree["shift"][np.ix_(idx, idx)] = 1.0
    frame = as_frame(FunctionalAgreement(within=("arch",), **{**FAST, "n_permutations": 0}).evaluate(ctx))
    group = "within arch = a"
    iu, ju = np.triu_indices(len(idx), k=1)
    for metric in ("good", "noisy"):
        s = 0.5 * (ctx.sim[(metric, "clean")] + ctx.sim[(metric, "clean")].T)
        clean_r = sps.pearsonr(s[idx[iu], idx[ju]], ctx.agree["clean"][idx[iu], idx[ju]])[0]
        assert value(frame, "pearson_r", metric, group) == pytest.approx(clean_r, abs=1e-9)
        low, high = value(frame, "pearson_ci_low", metric, group), value(frame, "pearson_ci_high", metric, group)
        assert np.isfinite(low) and low < clean_r < high
    assert value(frame, "agreement_constant", "", group, "shift") == 1.0
    # arch b still agrees differently on 'shift': both probe sets enter its mean, and nothing is noted
    assert not ((frame["statistic"] == "agreement_constant") & (frame["group"] == "within arch = b")).any()
    within = {t.key: t for t in tables(frame)}["within"]
    assert "arch = a: shift" in within.caption and "arch = b" not in within.caption.split("Left out")[1]
