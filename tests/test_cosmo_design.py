"""Seed 000's designed shift test: the size-matched control probes, both training directions, and the
model-level tests of ``layer_map`` with ``design_factor`` (symmetric verdicts)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from scipy import stats as sps

import simbench
from simbench import ParamError
from simbench_plugins.benchmarks import layer_map
from simbench_plugins.benchmarks.layer_map import design as D
from simbench_plugins.benchmarks.layer_map import report as R
from simbench_plugins.data import _cosmo_impl as C
from simbench_plugins.data import cosmo as cosmo_data
from simbench_plugins.perturbations import cosmo_shift
from simbench_plugins.zoos import _cosmo_impl as Z
from simbench_plugins.zoos import cosmo as cosmo_zoo


@pytest.fixture(scope="module")
def data() -> simbench.DataSplits:
    return cosmo_data.CosmoFields(size=16, n_train=24, n_val=8, n_test=40).load(simbench.RunContext(seed=0))


def _clean(data: simbench.DataSplits, idx: list[int]) -> simbench.ProbeSet:
    return simbench.ProbeSet("clean", data.test.x[idx], data.test.y[idx])


# --------------------------------------------------------------------------
# The control: same size as the suite shift, in distribution, same targets
# --------------------------------------------------------------------------


def test_rotated_phases_at_zero_are_the_test_maps_and_stay_white_noise(data):
    idx = torch.arange(10)
    x0, y0 = C.rotated_split(data.meta, "A", idx, 0.0)
    assert torch.allclose(x0, data.test.x[:10], atol=1e-5) and torch.equal(y0, data.test.y[:10])
    phases, extra = C.control_phases(data.meta, torch.arange(40))
    mixed = math.cos(1.1) * phases + math.sin(1.1) * extra
    # an exact draw of the training noise: unit variance, and uncorrelated with the original beyond cos(theta)
    assert abs(float(mixed.var()) - 1.0) < 0.03
    corr = float((mixed * phases).mean() / (mixed.std() * phases.std()))
    assert abs(corr - math.cos(1.1)) < 0.03


def test_matched_control_reaches_the_suite_shift_size(data):
    idx = torch.arange(0, 40, 2)
    xa, _ = C.make_split(data.meta, "test", simulation="A")
    xb, _ = C.make_split(data.meta, "test", simulation="B")
    for field in ("matter", "temperature"):
        c = data.meta["fields"].index(field)
        target = C.paired_rms(xa[idx][:, c], xb[idx][:, c])
        x, y, theta, reached = C.matched_control(data.meta, "A", idx, field, target)
        assert 0 < theta < math.pi
        assert reached == pytest.approx(target, rel=1e-3)
        assert reached == pytest.approx(C.paired_rms(x[:, c], xa[idx][:, c]), rel=1e-6)
        assert torch.equal(y, data.test.y[idx])  # the targets do not move: only the realisation does
    # the temperature shift is the large one, so its control rotates the phases further
    temp = C.matched_control(data.meta, "A", idx, "temperature", C.paired_rms(xa[idx][:, 1], xb[idx][:, 1]))[2]
    matt = C.matched_control(data.meta, "A", idx, "matter", C.paired_rms(xa[idx][:, 0], xb[idx][:, 0]))[2]
    assert temp > matt


def test_a_target_beyond_a_phase_flip_stops_at_pi(data):
    idx = torch.arange(5)
    _, _, theta, reached = C.matched_control(data.meta, "B", idx, "matter", 1e6)
    assert theta == pytest.approx(math.pi) and reached < 1e6


def test_cosmo_shift_control_probe_sets(data):
    idx = [3, 7, 11, 19, 23, 31]
    clean = _clean(data, idx)
    pert = cosmo_shift.CosmoShift(to=("A", "B"), control_fields=("temperature",))
    names = ["cosmo_shift/A", "cosmo_shift/B", "cosmo_shift/control-A-temperature",
             "cosmo_shift/control-B-temperature"]
    assert pert.variants() == names
    sets = pert.probe_sets(clean, simbench.PerturbContext(seed=0, data=data))
    assert [s.name for s in sets] == names
    by = {s.name: s for s in sets}
    ctrl = by["cosmo_shift/control-B-temperature"]
    assert torch.equal(ctrl.y, clean.y)
    assert ctrl.meta["simulation"] == "B" and ctrl.meta["control_for"] == "A"
    size = C.paired_rms(by["cosmo_shift/B"].x[:, 1], by["cosmo_shift/A"].x[:, 1])
    assert ctrl.meta["shift_size"] == pytest.approx(size, rel=1e-5)
    assert C.paired_rms(ctrl.x[:, 1], by["cosmo_shift/B"].x[:, 1]) == pytest.approx(size, rel=1e-3)


def test_cosmo_shift_control_refuses_what_it_cannot_make(data):
    with pytest.raises(ParamError):
        cosmo_shift.CosmoShift(control_fields=("matter", "matter"))
    clean = _clean(data, [0, 1, 2])
    ctx = simbench.PerturbContext(seed=0, data=data)
    with pytest.raises(ValueError, match="not a field"):
        cosmo_shift.CosmoShift(to=("B",), control_fields=("pressure",)).probe_sets(clean, ctx)
    camels = simbench.DataSplits(train=data.train, val=data.val, test=data.test, task="regression",
                                 meta={**data.meta, "generator": "camels_cmd"})
    with pytest.raises(ValueError, match="needs cosmo_fields"):
        cosmo_shift.CosmoShift(to=("B",), control_fields=("matter",))._controls(camels.meta, torch.arange(3), clean)


# --------------------------------------------------------------------------
# Both directions: models trained on either suite
# --------------------------------------------------------------------------


def test_zoo_train_on_gives_one_model_per_suite_and_regenerates_the_training_maps(data):
    zoo = cosmo_zoo.CosmoCNN(fields=("matter",), seeds=(0, 1), train_on=("A", "B"))
    specs = zoo.specs()
    assert [s.id for s in specs] == ["cosmo_cnn-matter-h4-A-s0", "cosmo_cnn-matter-h4-A-s1",
                                     "cosmo_cnn-matter-h4-B-s0", "cosmo_cnn-matter-h4-B-s1"]
    assert [s.factors["train_on"] for s in specs] == ["A", "A", "B", "B"]
    # without train_on the ids (and so the cached models) are the old ones
    assert cosmo_zoo.CosmoCNN(fields=("matter",)).specs()[0].id == "cosmo_cnn-matter-h4-s0"
    assert Z.suite_data(data, "A") is data
    b = Z.suite_data(data, "B")
    xb, yb = C.make_split(data.meta, "train", simulation="B")
    assert torch.equal(b.train.x, xb) and torch.equal(b.train.y, data.train.y)
    assert not torch.allclose(b.train.x, data.train.x)
    with pytest.raises(ParamError):
        cosmo_zoo.CosmoCNN(train_on=("A", "A"))


def test_zoo_builds_both_directions_with_independent_streams(data):
    zoo = cosmo_zoo.CosmoCNN(fields=("temperature",), seeds=(0,), train_on=("A", "B"), epochs=1, batch_size=8,
                             hidden=2, dense=8)
    models = zoo.build(data, simbench.RunContext(seed=0))
    a, b = models["cosmo_cnn-temperature-h2-A-s0"], models["cosmo_cnn-temperature-h2-B-s0"]
    assert not torch.allclose(a.fc1.weight, b.fc1.weight)


# --------------------------------------------------------------------------
# The model-level tests and their symmetric verdicts
# --------------------------------------------------------------------------


def test_spearman_permutation_matches_scipy_and_is_sign_symmetric():
    rng = np.random.default_rng(0)
    x = rng.normal(size=30)
    y = x + rng.normal(size=30)
    rho, p = D.spearman_permutation(x, y, 1999, 0)
    assert rho == pytest.approx(sps.spearmanr(x, y).statistic)
    assert p < 0.01
    rho_neg, p_neg = D.spearman_permutation(x, -y, 1999, 0)
    assert rho_neg == pytest.approx(-rho) and p_neg == pytest.approx(p)
    _, p_null = D.spearman_permutation(x, rng.normal(size=30), 1999, 1)
    assert p_null > 0.05
    assert p >= 1 / 2000  # never zero: the observed pairing counts


def test_sign_flip_is_exact_for_small_cells():
    assert D.sign_flip([0.1, 0.2, 0.3, 0.4, 0.5], 99, 0) == (pytest.approx(0.3), pytest.approx(2 / 32))
    mean, p = D.sign_flip([0.1, -0.1, 0.2, -0.2], 99, 0)
    assert mean == pytest.approx(0.0) and p == 1.0


def test_group_permutation_separates_and_is_undefined_for_one_group():
    diff, p = D.group_permutation([1.0] * 8 + [0.0] * 8, [True] * 8 + [False] * 8, 1999, 0)
    assert diff == 1.0 and p < 0.001
    assert all(math.isnan(v) for v in D.group_permutation([1.0, 2.0], [True, True], 99, 0))


def _units(excess_block: list[float], shift_scores: list[float]) -> list[dict]:
    out = []
    for k, (e, s) in enumerate(zip(excess_block, shift_scores)):
        ref = {"task_score": 0.9, "block_score": 0.5, "offdiag_mean": 0.5}
        ctrl = {"task_score": 0.9, "block_score": 0.5, "offdiag_mean": 0.5}
        shifted = {"task_score": s, "block_score": 0.5 + e, "offdiag_mean": 0.5 + e}
        out.append({"model": f"m{k}", "cell": "fails" if s < 0.5 else "robust", "reference": ref,
                    "control": ctrl, "shifted": shifted})
    return out


def _verdicts(units: list[dict]) -> dict[str, str]:
    bench = layer_map.LayerMap(design_factor="train_on", reference_sets={"A": "a"}, shifted_sets={"A": "b"},
                               control_sets={"A": "c"}, permutations=1999)
    records = D.shift_tests(bench, units)
    tests = {r.statistic: R.verdict(r.value, r.coords["p"], r.coords["alpha"]) for r in records
             if r.statistic.startswith("test_")}
    return tests


def test_the_designed_tests_reproduce_reverse_or_not_by_one_rule():
    shift = [0.9 - 0.1 * k for k in range(20)]  # ten handle the shift, ten fail it, by growing amounts
    rising = [0.01 * k for k in range(20)]  # the seed's link: more failure, more block structure
    assert _verdicts(_units(rising, shift))["test_spearman_block_score"] == "reproduced"
    assert _verdicts(_units(rising, shift))["test_groups_block_score"] == "reproduced"
    falling = [-v for v in rising]
    assert _verdicts(_units(falling, shift))["test_spearman_block_score"] == "reversed"
    noise = list(np.random.default_rng(3).normal(0, 0.01, size=20))
    assert _verdicts(_units(noise, shift))["test_spearman_block_score"] == "not reproduced"


def test_verdict_and_pattern_rules_are_symmetric():
    assert R.verdict(0.4, 0.01, 0.05) == "reproduced"
    assert R.verdict(-0.4, 0.01, 0.05) == "reversed"
    assert R.verdict(0.4, 0.06, 0.05) == R.verdict(-0.4, 0.06, 0.05) == "not reproduced"
    assert R.verdict(float("nan"), 0.01, 0.05) == "undefined"
    # one threshold per axis: a rise of 0.03 is 'blocks' whether or not the model fails
    assert R._finding(-1.0, 0.03) == "fails & blocks"
    assert R._finding(-0.1, 0.03) == "robust, blocks"
    assert R._finding(-0.1, 0.005) == "robust & diverse"
    assert R._finding(-1.0, 0.005) == "fails, no blocks"


def test_roles_are_picked_by_the_factor_and_formatted_with_the_fields():
    bench = layer_map.LayerMap(design_factor="train_on", reference_sets={"A": "s/A", "B": "s/B"},
                               shifted_sets={"A": "s/B", "B": "s/A"},
                               control_sets={"A": "s/control-A-{field}", "B": "s/control-B-{field}"})
    spec = simbench.ModelSpec(id="m", factors={"field": "matter", "train_on": "B", "seed": 0})
    assert D.roles(bench, spec) == {"reference": "s/B", "shifted": "s/A", "control": "s/control-B-matter"}
    with pytest.raises(ValueError, match="no factor 'train_on'"):
        D.roles(bench, simbench.ModelSpec(id="m", factors={"field": "matter"}))
    with pytest.raises(ValueError, match="no entry"):
        D.roles(bench, simbench.ModelSpec(id="m", factors={"train_on": "C"}))


def test_design_params_are_validated():
    with pytest.raises(ParamError, match="design_factor 'train_on'") as err:
        layer_map.LayerMap(design_factor="train_on")
    assert err.value.key == "reference_sets"
    with pytest.raises(ParamError, match="needs design_factor") as err:
        layer_map.LayerMap(control_sets={"A": "x"})
    assert err.value.key == "control_sets"
    with pytest.raises(ParamError, match="same keys"):
        layer_map.LayerMap(design_factor="t", reference_sets={"A": "a"}, shifted_sets={"B": "b"},
                           control_sets={"A": "c"})


def test_design_tables_carry_the_verdict_first_column_and_cells():
    import pandas as pd

    shift = [0.9 - 0.1 * k for k in range(20)]
    bench = layer_map.LayerMap(design_factor="train_on", reference_sets={"A": "a"}, shifted_sets={"A": "b"},
                               control_sets={"A": "c"}, permutations=999)
    records = D.shift_tests(bench, _units([0.01 * k for k in range(20)], shift))
    frame = pd.DataFrame([{**r.__dict__, "benchmark": "layer_map"} for r in records])
    tables = {t.key: t for t in layer_map.LayerMap.tables(frame)}
    test = tables["shift_test"].frame
    row = test[test["statistic"] == "test_spearman_block_score"].iloc[0]
    assert row["verdict"] == "reproduced" and row["models"] == 20 and test.columns[0] == "test"
    cells = tables["shift_cells"].frame
    assert set(cells["cell"]) == {"fails", "robust"}
    assert len(tables["shift_excess"].frame) == 20
