"""Feature contamination (seed 004): data model, shift, zoo and benchmark."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import simbench
from simbench.registry import build_registry
from simbench.testing import FakeStore, run_benchmark
from simbench_plugins.benchmarks import contamination as bench_mod
from simbench_plugins.benchmarks.contamination import compute as B
from simbench_plugins.data import contamination as data_mod
from simbench_plugins.data import _contamination_impl as D
from simbench_plugins.zoos import contamination as zoo_mod
from simbench_plugins.zoos import _contamination_impl as Z

ROOT_SUITES = Path(__file__).resolve().parents[1] / "suites"


@pytest.fixture(scope="module")
def data() -> simbench.DataSplits:
    return data_mod.FeatureContamination(n_train=1000, n_val=400, n_test=4000).load(simbench.RunContext(seed=0))


def test_features_are_orthonormal_and_inputs_in_their_span(data):
    m = D.dictionary(data.meta)
    k = data.meta["d_core"] + data.meta["d_background"]
    assert m.shape == (256, k)
    assert torch.allclose(m.T @ m, torch.eye(k, dtype=torch.float64), atol=1e-10)
    core, bg = D.subspaces(data.meta)
    assert float((core.T @ bg).abs().max()) < 1e-10
    x = data.test.x.double()
    residual = x - x @ m @ m.T
    assert float(residual.norm() / x.norm()) < 1e-6
    assert torch.equal(D.dictionary(data.meta), m)  # deterministic


def test_core_carries_the_label_background_is_independent_of_it(data):
    zc, zb = D.coordinates(data.test.x, data.meta)
    labels = data.test.y
    sign = (2 * labels - 1).double()[:, None]
    # core weights are y * U[0, 1]: their sign is the label
    assert bool(((zc * sign) >= -1e-5).all())
    assert float((zc * sign).mean()) == pytest.approx(0.5, abs=0.02)
    # background weights are U[0, 1] whatever the label: same class-conditional means and spreads
    assert float(zb.min()) >= -1e-5 and float(zb.max()) <= 1 + 1e-5
    n1, n0 = int(labels.sum()), int((1 - labels).sum())
    se = (1 / 12) ** 0.5 * (1 / n1 + 1 / n0) ** 0.5
    gap = zb[labels == 1].mean(0) - zb[labels == 0].mean(0)
    assert float(gap.abs().max()) < 4.5 * se
    corr = np.corrcoef(np.column_stack([labels.numpy(), zb.numpy()]).T)[0, 1:]
    assert np.abs(corr).max() < 0.07
    # ... while each core coordinate is strongly label-correlated
    corr_core = np.corrcoef(np.column_stack([labels.numpy(), zc.numpy()]).T)[0, 1:]
    assert corr_core.min() > 0.7


def test_background_shift_moves_only_the_background(data):
    clean = simbench.ProbeSet("clean", data.test.x[:500], data.test.y[:500])
    pert = data_mod.BackgroundShift()
    (ood,) = pert.probe_sets(clean, simbench.PerturbContext(data=data, seed=0))
    assert ood.name == "background_shift/ood" and pert.variants() == ["background_shift/ood"]
    zc0, zb0 = D.coordinates(clean.x, data.meta)
    zc1, zb1 = D.coordinates(ood.x, data.meta)
    assert torch.allclose(zc0, zc1, atol=1e-5)
    assert torch.equal(ood.y, clean.y)
    assert float(zb1.max()) <= 1e-5 and float(zb1.min()) >= -1 - 1e-5
    assert float(zb1.mean()) == pytest.approx(-0.5, abs=0.02)
    again = pert.probe_sets(clean, simbench.PerturbContext(data=data, seed=0))[0]
    assert torch.equal(again.x, ood.x)
    with pytest.raises(ValueError):
        data_mod.BackgroundShift(low=0.0, high=-1.0)


def test_sphere_core_variant():
    d = data_mod.FeatureContamination(core="sphere", n_train=8, n_val=8, n_test=200).load(simbench.RunContext())
    zc, _ = D.coordinates(d.test.x, d.meta)
    radius = zc.norm(dim=1)
    expected = torch.where(d.test.y == 1, 1.0, 2.0).double()
    assert torch.allclose(radius, expected, atol=1e-5)


# --------------------------------------------------------------------------
# Zoo + benchmark
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(data):
    zoo = zoo_mod.ContaminationNet(activations=("relu", "identity"), seeds=(0, 1), width=128, steps=600,
                                   record_every=200)
    models = zoo.build(data, simbench.RunContext(seed=0))
    clean = simbench.ProbeSet("clean", data.test.x[:1000], data.test.y[:1000])
    (ood,) = data_mod.BackgroundShift().probe_sets(clean, simbench.PerturbContext(data=data))
    # the benchmark sees a read-only store view (no models): outputs, layers, weights and buffers
    store = FakeStore(models, zoo.specs(), [clean, ood], data, metrics={})
    records = run_benchmark(bench_mod.Contamination(), store)
    return zoo, models, store, records


def _value(records, stat, model="", group="", probe=""):
    hits = [r.value for r in records if r.statistic == stat and r.model_a == model and (not group or r.group == group)
            and r.probe_set == probe]
    assert len(hits) == 1, (stat, model, group, probe, hits)
    return hits[0]


def test_zoo_models_are_readable_and_round_trip(trained, data):
    zoo, models, _, _ = trained
    assert [s.id for s in zoo.specs()] == list(models)
    spec = zoo.specs()[0]
    model = models[spec.id]
    assert isinstance(model, simbench.types.ReadableModel) and not model.training
    x = data.test.x[:7]
    acts = model.read(x, ["preact", "hidden", "output"])
    assert acts["preact"].shape == (7, 128) and torch.allclose(acts["hidden"], torch.relu(acts["preact"]))
    assert torch.allclose(acts["output"], model(x))
    # the float64 layers the benchmark reads: the activation and its slope at the (float32) pre-activations
    with torch.no_grad():  # as the runner reads: the derivative must not need the caller's autograd
        both = model.read(x, ["preact", "hidden_f64", "act_derivative"])
    assert both["hidden_f64"].dtype == both["act_derivative"].dtype == torch.float64
    assert torch.equal(both["hidden_f64"], torch.relu(both["preact"].double()))
    assert torch.equal(both["act_derivative"], (both["preact"] > 0).double())
    assert model.readable_layers.index("preact") < model.readable_layers.index("hidden") < \
        model.readable_layers.index("output")
    w1, a = model.dense_weights()
    assert w1.shape == (256, 128) and a.shape == (128, 1)
    assert set(a.reshape(-1).abs().tolist()) == {1 / 128}  # fixed output weights
    fresh = zoo.instantiate(spec, data)
    fresh.load_state_dict(model.state_dict())
    assert torch.allclose(fresh(x), model(x)) and torch.equal(fresh.history, model.history)
    assert model.history[:, 0].tolist() == [0, 1, 2, 5, 10, 20, 50, 100, 200, 400, 600]
    # same seed: the ReLU and identity models start from the same weights
    relu0, lin0 = models[zoo.specs()[0].id], models[zoo.specs()[2].id]
    assert torch.allclose(relu0.history[0, 1:4], lin0.history[0, 1:4])


def test_relu_is_contaminated_and_fails_ood_linear_is_not(trained):
    _, _, _, records = trained
    bg = {a: _value(records, "mean_bg_proj", group=a) for a in ("relu", "identity")}
    gap = {a: _value(records, "mean_ood_gap_risk", group=a, probe="background_shift/ood") for a in ("relu", "identity")}
    growth = {a: _value(records, "mean_bg_growth", group=a) for a in ("relu", "identity")}
    # ReLU weights drift into the background subspace, along the (non-negative) background features;
    # linear weights only diffuse there under SGD noise, with no mean direction
    assert growth["relu"] > 3 * growth["identity"]
    assert bg["relu"] > 2 * bg["identity"]
    corr = {a: _value(records, "mean_bg_corr", group=a) for a in ("relu", "identity")}
    assert corr["relu"] > 0.02 and abs(corr["identity"]) < 0.1 * corr["relu"]
    assert gap["relu"] > 0.1 and gap["identity"] < 0.05
    assert _value(records, "mean_hinge_risk", group="relu", probe="clean") < 0.2  # learned ID
    # the model-level half of the verdict: one-sided paired t-tests over the seeds (2 pairs here)
    from simbench_plugins.benchmarks.contamination.general import one_sided_t

    ood = "background_shift/ood"
    pairs = [(f"contamination_net-relu-w128-s{s}", f"contamination_net-identity-w128-s{s}") for s in (0, 1)]
    log_ratio = [np.log(_value(records, "bg_proj", r) / _value(records, "bg_proj", i)) for r, i in pairs]
    gap_diff = [_value(records, "ood_gap_risk", r, probe=ood) - _value(records, "ood_gap_risk", i, probe=ood)
                for r, i in pairs]
    p_cont, p_fail = one_sided_t(log_ratio, np.log(2.0))[1], one_sided_t(gap_diff, 0.1)[1]
    assert _value(records, "n_seed_pairs", group="finding", probe=ood) == 2
    assert _value(records, "p_contaminated", group="finding", probe=ood) == pytest.approx(p_cont)
    assert _value(records, "p_fails_ood", group="finding", probe=ood) == pytest.approx(p_fail)
    assert _value(records, "reproduced", group="finding", probe=ood) == float(p_cont < 0.05 and p_fail < 0.05)
    # identity networks have no activation asymmetry at all
    assert _value(records, "mean_asymmetry", group="identity", probe="clean") == pytest.approx(0.0, abs=1e-9)
    assert _value(records, "mean_asymmetry", group="relu", probe="clean") > 0.3


@pytest.mark.parametrize("index", [1, 2])  # a ReLU and an identity model
def test_recorded_statistics_match_direct_computation(trained, data, index):
    zoo, models, store, records = trained
    spec = zoo.specs()[index]
    model = models[spec.id]
    for probe in ("clean", "background_shift/ood"):
        ps = store.probe_set(probe)
        f = model.score(ps.x).detach().double()
        y = (2 * ps.y - 1).double()
        risk = float((1 - y * f).clamp(min=0).mean())
        assert _value(records, "hinge_risk", spec.id, probe=probe) == pytest.approx(risk)
        assert _value(records, "error", spec.id, probe=probe) == pytest.approx(float((y * f <= 0).double().mean()))
        # selectivity and asymmetry of the model's own activation, in float64 at its float32 pre-activations
        with torch.no_grad():
            pre = model.read(ps.x, ["preact"])["preact"].double()
        post, slope = model.act_fn(pre), Z.activation_derivative(model.act_fn, pre)
        labels = ps.y.long()
        sel = float(B.selectivity(post, labels, 2, 1e-6).mean())
        asym = float(B.asymmetry(slope, labels, 1e-6).mean())
        assert _value(records, "selectivity", spec.id, probe=probe) == pytest.approx(sel, rel=1e-12, abs=1e-15)
        assert _value(records, "asymmetry", spec.id, probe=probe) == pytest.approx(asym, rel=1e-12, abs=1e-15)
    core, bg = D.subspaces(data.meta)
    w = model.hidden.weight.detach().double()
    assert _value(records, "bg_proj", spec.id) == pytest.approx(float((w @ bg).norm(dim=1).mean()))
    assert _value(records, "core_proj", spec.id) == pytest.approx(float((w @ core).norm(dim=1).mean()))
    # the trace: one row per recorded SGD step, the step a numeric coordinate (not a string in model_b);
    # the last row is the final model, measured on the validation split
    trace = [r for r in records if r.statistic == "trace_bg_proj" and r.model_a == spec.id]
    assert [r.coords["step"] for r in trace] == [0, 1, 2, 5, 10, 20, 50, 100, 200, 400, 600]
    assert all(r.model_b == "" for r in trace)
    assert [r.value for r in trace] == pytest.approx(model.history[:, 2].double().tolist(), rel=1e-12)
    assert trace[-1].value == pytest.approx(_value(records, "bg_proj", spec.id), rel=1e-5)


def test_benchmark_reads_only_the_store_view(trained):
    """No model is handed out: the store has none to give, and the benchmark passes the kit on it."""
    from simbench.testing import check_benchmark

    _, _, store, _ = trained
    assert not hasattr(store, "models") and not hasattr(store, "make_plugin")
    records = check_benchmark(bench_mod.Contamination, store=store)
    assert any(r.statistic == "reproduced" for r in records)


def test_a_zoo_without_the_float64_layers_is_a_clear_error(data):
    """A zoo without the layers (e.g. an older contamination_net) is named, not a KeyError deep inside."""
    clean = simbench.ProbeSet("clean", data.test.x[:50], data.test.y[:50])
    store = FakeStore(probe_sets=[clean], data=data, metrics={})  # the kit's MLPs: no act_derivative
    with pytest.raises(ValueError, match="has no layer.*act_derivative"):
        run_benchmark(bench_mod.Contamination(), store)


def test_selectivity_and_asymmetry_formulas():
    post = torch.tensor([[2.0, 0.0], [4.0, 1.0], [0.0, 1.0], [0.0, 3.0]])
    labels = torch.tensor([1, 1, 0, 0])
    # neuron 0: mu1 = 3, mu0 = 0 -> 1; neuron 1: mu1 = 0.5, mu0 = 2 -> (2 - .5) / 2.5
    sel = B.selectivity(post, labels, 2, 0.0)
    assert sel.tolist() == pytest.approx([1.0, 0.6])
    deriv = Z.activation_derivative(torch.relu, torch.tensor([[1.0], [2.0], [-1.0], [3.0]]))
    assert deriv.reshape(-1).tolist() == [1.0, 1.0, 0.0, 1.0] and deriv.dtype == torch.float64
    x = torch.linspace(-3, 3, 13, dtype=torch.float64)
    assert torch.allclose(Z.activation_derivative(torch.tanh, x), 1 - torch.tanh(x) ** 2, atol=1e-15)
    asym = B.asymmetry(deriv, labels, 0.0)
    assert asym.tolist() == pytest.approx([(1 - 0.5) / 1.5])


def test_plot_and_registration(trained, tmp_path):
    _, _, _, records = trained
    (path,) = bench_mod.plot(pd.DataFrame([r.__dict__ for r in records]), tmp_path)
    assert path.exists() and path.stat().st_size > 10_000
    tables = bench_mod.Contamination.tables(pd.DataFrame([r.__dict__ for r in records]))
    assert [t.key for t in tables] == ["contamination", "finding", "per_model"]
    head = tables[0].frame.set_index("arch")
    assert head.loc["relu", "ood_gap_risk"] > head.loc["identity", "ood_gap_risk"]
    from simbench_plugins.studies import contamination as study_mod  # the study's one entry point

    registry = build_registry(extra_plugins=[study_mod], load_entry_points=False)
    assert registry.get("dataset", "feature_contamination") is data_mod.FeatureContamination
    assert registry.get("perturbation", "background_shift") is data_mod.BackgroundShift
    assert registry.get("zoo", "contamination_net") is zoo_mod.ContaminationNet
    assert registry.get("benchmark", "contamination") is bench_mod.Contamination


def test_a_small_run_reads_float64_layers_and_the_trace_through_the_runner(tmp_path):
    """The shipped suite, shrunk, through the real runner: the store keeps the float64 layers (the records equal
    the float64 computation on the run's own models) and the view's buffers give the zoo's trace."""
    from simbench.runner import Runner
    from simbench.suite import load_suite

    registry = build_registry()
    overrides = ["data.n_train=300", "data.n_val=60", "data.n_test=200", "probes.n=120",
                 "zoo.activations=['tanh', 'relu']", "zoo.seeds=[0]", "zoo.width=16", "zoo.steps=30",
                 "zoo.record_every=10", "benchmarks=[{name='contamination'}]", "metrics=[{name='linear_cka'}]"]
    suite = load_suite(ROOT_SUITES / "contamination.toml", registry, overrides)
    runner = Runner(suite, registry, tmp_path / "run", cache_dir=tmp_path / "cache", quiet=True)
    frame = runner.run().results()
    bench = frame[(frame["kind"] == "benchmark")]
    assert (bench["status"] == "ok").all(), bench[bench["status"] != "ok"]["error"].tolist()
    spec = runner.state.specs[0]  # tanh: a derivative that float32 would round
    model = runner.state.models[spec.id]
    stored = runner.representations("clean", "act_derivative")[0][0]
    assert stored.dtype == torch.float64  # not rounded to float32 by the store
    ps = runner.state.probe_sets["clean"]
    with torch.no_grad():
        pre = model.read(ps.x, ["preact"])["preact"].double()
    slope = Z.activation_derivative(model.act_fn, pre)
    asym = float(B.asymmetry(slope, ps.y.long(), 1e-6).mean())
    row = bench[(bench["statistic"] == "asymmetry") & (bench["probe_set"] == "clean") & (bench["model_a"] == spec.id)]
    assert float(row["value"].iloc[0]) == pytest.approx(asym, rel=1e-12)
    trace = bench[(bench["statistic"] == "trace_bg_proj") & (bench["model_a"] == spec.id)].sort_values("coord_step")
    assert trace["coord_step"].tolist() == [0, 1, 2, 5, 10, 20, 30]
    assert trace["value"].tolist() == pytest.approx(model.history[:, 2].double().tolist(), rel=1e-12)
