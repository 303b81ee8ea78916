"""Seed 004's general setting and the distillation analogue: alignment statistic, tests, verdicts, zoos."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from simbench_plugins.benchmarks import contamination as bench_mod
from simbench_plugins.benchmarks.contamination import distill as DB
from simbench_plugins.benchmarks.contamination import general as GB
from simbench_plugins.data import _contamination_impl as D
from simbench_plugins.data import contamination as data_mod
from simbench_plugins.zoos import _contamination_distill as ZD
from simbench_plugins.zoos import _contamination_impl as Z
from simbench_plugins.zoos import contamination as zoo_mod

import simbench
from simbench.testing import FakeStore, run_benchmark


@pytest.fixture(scope="module")
def data() -> simbench.DataSplits:
    return data_mod.FeatureContamination(core="sphere", d_input=64, n_train=300, n_val=60, n_test=400).load(
        simbench.RunContext(seed=0))


def test_holm_and_one_sided_t_known_values():
    assert GB.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert GB.holm([0.5, 0.001]) == pytest.approx([0.5, 0.002])
    t, p = GB.one_sided_t([1.0, 2.0, 3.0], 0.0)  # mean 2, sd 1, n 3: t = 2 sqrt 3
    assert t == pytest.approx(2 * math.sqrt(3)) and p == pytest.approx(0.5 * (1 - t / math.sqrt(t * t + 2)))  # t with 2 df
    assert GB.one_sided_t([1.0, 2.0, 3.0], 4.0)[1] > 0.95
    assert GB.one_sided_t([2.0, 2.0], 1.0) == (float("inf"), 0.0)


def test_background_alignment_is_zero_for_isotropic_weights_and_large_along_the_mean_direction(data):
    _, bg = D.subspaces(data.meta)
    g = torch.Generator().manual_seed(0)
    iso = torch.randn(4000, bg.shape[0], generator=g, dtype=torch.float64)
    assert float(D.background_alignment(iso, bg)) == pytest.approx(0.0, abs=0.1)
    # scale-free: a network that only diffuses more in the background is not more "aligned"
    assert float(D.background_alignment(10 * iso, bg)) == pytest.approx(float(D.background_alignment(iso, bg)))
    u = bg.sum(1) / bg.sum(1).norm()
    contaminated = iso * 0.1 + torch.randn(4000, 1, generator=g, dtype=torch.float64).abs() * u
    assert float(D.background_alignment(contaminated, bg)) > math.log(20)
    # core weights do not count: adding any core component leaves log R unchanged
    core, _ = D.subspaces(data.meta)
    shifted = iso + 5 * torch.randn(4000, core.shape[1], generator=g, dtype=torch.float64) @ core.T
    assert float(D.background_alignment(shifted, bg)) == pytest.approx(float(D.background_alignment(iso, bg)))


def _planted_store(data, aligned: dict[str, float], seeds: int = 4):
    """contamination_net models with hand-set weights: for arch ``a``, the hidden weights are isotropic plus
    ``aligned[a]`` times a positive coordinate along the mean background direction (and a core read-out that
    classifies the sphere data well enough)."""
    _, bg = D.subspaces(data.meta)
    u = (bg.sum(1) / bg.sum(1).norm()).float()
    zoo = zoo_mod.ContaminationNet(activations=tuple(aligned), seeds=tuple(range(seeds)), width=32, steps=1,
                                   record_every=1, bias=True, train_output=True, init="torch", optimizer="adamw")
    models, specs = {}, []
    for arch, strength in aligned.items():
        for s in range(seeds):
            spec = simbench.ModelSpec(id=f"contamination_net-{arch}-w32-s{s}",
                                      factors={"arch": arch, "seed": s, "step": 1})
            m = Z.instantiate(zoo, spec, data)
            g = torch.Generator().manual_seed(100 * s + len(arch))
            with torch.no_grad():
                w = torch.randn(32, data.meta["d_input"], generator=g) * 0.1
                w += strength * torch.rand(32, 1, generator=g) * u
                m.hidden.weight.copy_(w)
                m.a.copy_(torch.ones(32) / 32)
            models[spec.id] = m.eval()
            specs.append(spec)
    clean = simbench.ProbeSet("clean", data.test.x, data.test.y)
    (ood,) = data_mod.BackgroundShift().probe_sets(clean, simbench.PerturbContext(data=data))
    return FakeStore(models, specs, [clean, ood], data, metrics={})


def test_general_verdict_separates_planted_contamination_from_none(data):
    store = _planted_store(data, {"relu": 3.0, "identity": 0.0})
    # max_id_error = 1: these hand-set networks are not trained; the test is about the alignment test
    recs = run_benchmark(bench_mod.ContaminationGeneral(max_id_error=1.0), store)
    val = {(r.statistic, r.group): r.value for r in recs if r.model_a == ""}
    assert val[("arch_contaminated", "relu")] == 1.0 and val[("arch_role", "relu")] == 1.0
    assert val[("arch_contaminated", "identity")] == 0.0 and val[("arch_role", "identity")] == 0.0
    assert val[("verdict_reproduced", "verdict")] == 1.0
    # the per-model log R is the weights' own
    _, bg = D.subspaces(data.meta)
    spec = store.specs[0]
    w = store.weights(spec.id)[0].double().T
    got = [r.value for r in recs if r.statistic == "log_align" and r.model_a == spec.id]
    assert got == [pytest.approx(float(D.background_alignment(w, bg)))]
    tables = bench_mod.ContaminationGeneral.tables(recs)
    assert [t.key for t in tables] == ["general", "verdict", "per_model"]
    assert tables[1].frame["verdict"].iloc[0] == "reproduced"
    # if the planted activation is not aligned, the claim is not reproduced and the table names it
    recs = run_benchmark(bench_mod.ContaminationGeneral(max_id_error=1.0),
                         _planted_store(data, {"relu": 0.0, "identity": 0.0}))
    verdict = bench_mod.ContaminationGeneral.tables(recs)[1].frame
    assert verdict["verdict"].iloc[0] == "not reproduced (relu not contaminated)"
    # an activation that did not learn the task (max_id_error 0) is not contaminated whatever its weights
    recs = run_benchmark(bench_mod.ContaminationGeneral(max_id_error=0.0),
                         _planted_store(data, {"relu": 3.0, "identity": 0.0}))
    frame = bench_mod.ContaminationGeneral.tables(recs)[0].frame.set_index("arch")
    assert frame.loc["relu", "verdict"] == "not reproduced (did not learn the task ID)"


def test_general_zoo_trains_biases_with_adamw_and_records_the_alignment(data):
    zoo = zoo_mod.ContaminationNet(activations=("sigmoid",), seeds=(0,), width=16, steps=20, record_every=10,
                                   bias=True, train_output=True, optimizer="adamw", init="torch", lr=1e-2,
                                   weight_decay=1e-2)
    (model,) = zoo.build(data, simbench.RunContext(seed=0)).values()
    assert model.hidden.bias is not None and float(model.hidden.bias.detach().abs().sum()) > 0 and float(model.c) != 0
    x = data.test.x[:9]
    with torch.no_grad():
        f = torch.sigmoid(model.hidden(x)) @ model.a + model.c
        assert torch.allclose(model.score(x), f) and torch.allclose(model.read(x, ["output"])["output"], model(x))
    _, bg = D.subspaces(data.meta)
    col = D.HISTORY_COLUMNS.index("bg_align")
    final = float(D.background_alignment(model.hidden.weight.detach().double(), bg))
    assert float(model.history[-1, col]) == pytest.approx(final, abs=1e-5)
    # the torch initialisation: U(-1/sqrt(fan_in), 1/sqrt(fan_in)); the step-0 trace row is the initial weights
    assert float(model.history[0, 0]) == 0.0 and abs(float(model.history[0, col])) < 1.0


def test_verdict_code_rules():
    assert DB.verdict_code(True, True, 0.01, 0.01, 0.05) == "reproduced"
    assert DB.verdict_code(True, True, 0.01, 0.20, 0.05) == "not_lagging"
    assert DB.verdict_code(True, True, 0.20, 0.01, 0.05) == "no_gain"
    assert DB.verdict_code(False, True, 0.01, 0.01, 0.05) == "no_verdict_id"
    assert DB.verdict_code(True, False, 0.01, 0.01, 0.05) == "no_verdict_gap"
    assert DB.verdict_text(DB.CODES["not_lagging"], 0.93, 0.75).startswith("not reproduced (the student closes 93 %")


@pytest.fixture(scope="module")
def distilled(data):
    zoo = zoo_mod.ContaminationDistill(seeds=(0, 1), width=16, steps=60, lr=1e-2)
    models = zoo.build(data, simbench.RunContext(seed=0))
    clean = simbench.ProbeSet("clean", data.test.x, data.test.y)
    (ood,) = data_mod.BackgroundShift().probe_sets(clean, simbench.PerturbContext(data=data))
    return zoo, models, FakeStore(models, zoo.specs(), [clean, ood], data, metrics={}), clean, ood


def test_distill_teacher_ignores_the_background_and_the_student_imitates_it(distilled, data):
    zoo, models, _, clean, ood = distilled
    assert [s.id for s in zoo.specs()] == list(models)
    teacher, student = models[ZD.model_id("teacher", 0)], models[ZD.model_id("student", 0)]
    _, bg = D.subspaces(data.meta)
    # the teacher's first layer lies in the core subspace: its representation is unchanged by the shift
    assert float((teacher.hidden.weight.detach().double() @ bg).abs().max()) < 1e-5
    with torch.no_grad():
        assert torch.allclose(teacher.read(clean.x, ["hidden"])["hidden"], teacher.read(ood.x, ["hidden"])["hidden"],
                              atol=1e-4)
        h_t, h_s = teacher.read(clean.x, ["hidden"])["hidden"], student.read(clean.x, ["hidden"])["hidden"]
        fresh = ZD.instantiate(zoo, zoo.specs()[3], data)
        h_0 = torch.relu(fresh.hidden(clean.x))
    # distillation moved the student towards the teacher's representation (closer than a fresh network)
    assert float(((h_s - h_t) ** 2).sum()) < float(((h_0 - h_t) ** 2).sum())
    # the probe: logits = standardised features times the fitted weights
    x = clean.x[:5]
    with torch.no_grad():
        g = ((torch.relu(student.hidden(x)) - student.mu) / student.sd) @ student.probe_w + student.probe_b
        assert torch.allclose(student(x)[:, 1] - student(x)[:, 0], g, atol=1e-5)


def test_distill_benchmark_records_match_the_models(distilled):
    zoo, models, store, clean, ood = distilled
    recs = run_benchmark(bench_mod.ContaminationDistillation(), store)
    acc = {(r.model_a, r.probe_set): r.value for r in recs if r.statistic == "accuracy"}
    for spec in zoo.specs():
        for ps in (clean, ood):
            with torch.no_grad():
                want = float((models[spec.id](ps.x).argmax(1) == ps.y).double().mean())
            assert acc[(spec.id, ps.name)] == pytest.approx(want)
    # the teacher is exactly as accurate OOD as ID (it does not read the background)
    for s in (0, 1):
        t = ZD.model_id("teacher", s)
        assert acc[(t, "clean")] == pytest.approx(acc[(t, "background_shift/ood")], abs=1e-9)
    closed = {r.model_a: r.value for r in recs if r.statistic == "gap_closed"}
    for s in (0, 1):
        a = [acc[(ZD.model_id(r, s), "background_shift/ood")] for r in ("teacher", "student", "standard")]
        if a[0] > a[2]:
            assert closed[ZD.model_id("student", s)] == pytest.approx((a[1] - a[2]) / (a[0] - a[2]))
    tables = bench_mod.ContaminationDistillation.tables(recs)
    assert [t.key for t in tables] == ["distillation", "verdict", "per_model"]
    verdict = tables[1].frame
    assert verdict["verdict"].iloc[0].split(" (")[0] in {"reproduced", "not reproduced", "no verdict"}
    assert np.isfinite(tables[0].frame["accuracy_ood"]).all()
