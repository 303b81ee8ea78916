"""The sanity benchmark (seed 003 §3.2-3.3) on real digit representations, through the kit's FakeStore and a run."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
import torch

import simbench
from simbench.results import record_row
from simbench.seeding import derive_seed, torch_generator
from simbench.testing import (ACTIVATION_INVARIANCES, FakeStore, run_benchmark, transform_activation,
                              transform_weights)
from simbench.types import DataSplits, ModelSpec, ProbeSet, Split
from simbench_plugins.benchmarks.sanity import Sanity
from simbench_plugins.benchmarks.sanity import compute as sanity_impl
from simbench_plugins.metrics import CCAMean, LinearCKA, WeightsCKA
from simbench_plugins.perturbations.representation import RepresentationTransform


@dataclass(frozen=True)
class LyingCKA(LinearCKA):
    """Linear CKA that wrongly declares invariance to invertible linear maps."""

    name = "lying_cka"
    invariances = LinearCKA.invariances | {"invertible_linear"}


@dataclass(frozen=True)
class NaNMetric(simbench.Metric):
    name = "nan_metric"
    invariances = frozenset({"orthogonal"})

    def __call__(self, a, b, **kwargs):
        return float("nan")


class Net(torch.nn.Module):
    readable_layers = ("hidden", "logits")
    default_layer = "hidden"

    def __init__(self, seed, hidden):
        super().__init__()
        torch.manual_seed(seed)
        self.fc1, self.fc2 = torch.nn.Linear(64, hidden), torch.nn.Linear(hidden, 3)

    def read(self, x, layers):
        h = torch.relu(self.fc1(x))
        return {k: {"hidden": h, "logits": self.fc2(h)}[k] for k in layers}

    def forward(self, x):
        return self.read(x, ["logits"])["logits"]

    def dense_weights(self):
        return [self.fc1.weight.detach().T, self.fc2.weight.detach().T]


def digits_store() -> FakeStore:
    """Two small ReLU networks (16 and 12 hidden units) trained briefly on real digits 0-2; 150 test digits."""
    from sklearn.datasets import load_digits

    d = load_digits(n_class=3)
    x = torch.tensor(d.data, dtype=torch.float32) / 16.0
    y = torch.tensor(d.target)
    specs = [ModelSpec(f"net/s{s}", {"seed": s}) for s in (0, 1)]
    models = {}
    for s, hidden, spec in zip((0, 1), (16, 12), specs):
        net = Net(s, hidden)
        opt = torch.optim.Adam(net.parameters(), lr=1e-2)
        for _ in range(30):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(x[150:]), y[150:]).backward()
            opt.step()
        models[spec.id] = net.eval()
    data = DataSplits(Split(x[150:], y[150:]), Split(x[150:], y[150:]), Split(x[:150], y[:150]), num_classes=3)
    metrics = {"linear_cka": LinearCKA(), "cca_mean": CCAMean(), "lying_cka": LyingCKA(), "wcka": WeightsCKA(),
               "nan_metric": NaNMetric()}
    return FakeStore(models, specs, [ProbeSet("clean", x[:150], y[:150])], data, metrics=metrics,
                     metric_classes=(LyingCKA, NaNMetric))


BENCH = Sanity(translation_distances=(0.0, 1.0, 1000.0), invertible_mu=(0.0, 3.0), outlier_distances=(0.0, 300.0),
               repeats=2, invariance_draws=2)


def frame_of(records) -> pd.DataFrame:
    return pd.DataFrame([record_row("fake", "benchmark", r) for r in records])


@pytest.fixture(scope="module")
def run():
    store = digits_store()
    records = run_benchmark(BENCH, store)
    return store, records, frame_of(records)


def value(frame, statistic, metric, group, strength=None, setting=""):
    rows = frame[(frame["statistic"] == statistic) & (frame["metric"] == metric) & (frame["group"] == group)
                 & (frame["model_b"] == setting)]
    if strength is not None:
        rows = rows[rows["coord_strength"] == strength]
    assert len(rows) == 1, (statistic, metric, group, strength, setting, len(rows))
    return float(rows["value"].iloc[0])


def test_curves_follow_the_seed(run):
    _, _, frame = run
    # no transform: identical
    assert value(frame, "value_mean", "linear_cka", "class_translation", 0.0) == pytest.approx(1.0, abs=1e-9)
    assert value(frame, "value_mean", "linear_cka", "outlier", 0.0) == pytest.approx(1.0, abs=1e-9)
    # one point moved 300 RMS radii away wrecks linear CKA (seed 003 §3.3) ...
    assert value(frame, "value_mean", "linear_cka", "outlier", 300.0) < 0.2
    # ... but not CCA, which is invariant to invertible linear maps (and mean CCA barely sees one point)
    assert value(frame, "scaled_mean", "cca_mean", "invertible_linear", 3.0) == pytest.approx(1.0, abs=1e-6)
    assert value(frame, "value_mean", "linear_cka", "invertible_linear", 3.0) < 0.95
    # a class translation keeps the classes linearly separable: the read-out does not get worse
    acc0 = float(frame.loc[frame["statistic"] == "probe_accuracy_original", "value"].iloc[0])
    assert value(frame, "probe_accuracy_mean", "", "class_translation", 1000.0) >= acc0 - 1e-9
    # strengths are coordinates; no text field holds a number
    curve = frame[frame["statistic"] == "value_mean"]
    assert set(curve["coord_strength"].dropna()) == {0.0, 1.0, 1000.0, 3.0, 300.0}
    assert (curve["model_b"] == "").all()


def _old_copies(store, model_index):
    """The transformed copies as the benchmark made them before it declared its matrices: the perturbation
    called directly on the float64 representation, seeded by (run seed, model, kind, draw)."""
    spec = store.specs[model_index]
    x = store.representations("clean")[model_index].to(torch.float64)
    y = store.probe_set("clean").y
    copies = [x]
    for kind, _strength, params, draws in sanity_impl.settings(BENCH):
        pert = RepresentationTransform(**params)
        for r in range(draws):
            ctx = simbench.RunContext(seed=derive_seed(store.seed, "sanity", spec.id, kind, r))
            copies.append(pert.transform_representation(x, y, ctx).to(torch.float64))
    return copies


def test_declared_curves_equal_the_metric_on_directly_made_copies(run):
    """What the runner computes from the declared sources is what the benchmark used to compute itself."""
    store, _, _ = run
    store.benchmark = BENCH.name
    for i, spec in enumerate(store.specs):
        expected = LinearCKA().pairwise(_old_copies(store, i))
        declared = store.matrix(sanity_impl.curve_key("linear_cka", spec.id))
        assert declared.shape == expected.shape == (1 + 3 + 2 * 2 + 2 * 2,) * 2
        assert torch.allclose(declared, torch.as_tensor(expected).double(), rtol=0, atol=1e-12)


def test_invariance_batches_replay_one_random_stream(run):
    """t(b) declared with skip_widths is the draw the kit gives b after a, from one generator (the old batch)."""
    store, _, _ = run
    store.benchmark = BENCH.name
    a_id, b_id = (s.id for s in store.specs)
    for label, weight in (("linear_cka", False), ("wcka", True)):
        if weight:
            a = [w.to(torch.float64) for w in store.weights(a_id)]
            b = [w.to(torch.float64) for w in store.weights(b_id)]
            names, kit = ["weight_permutation", "weight_positive_scaling"], transform_weights
        else:
            a, b = (r.to(torch.float64) for r in store.representations("clean"))
            names, kit = sorted(ACTIVATION_INVARIANCES), transform_activation
        batch = [a, b]
        for name in names:
            for d in range(BENCH.invariance_draws):
                g = torch_generator(store.seed, "invariance", label, name, d)
                batch += [kit(name, a, g), kit(name, b, g)]
        metric = store.metrics[label]
        expected = torch.as_tensor(metric.pairwise(batch)).double()
        assert torch.allclose(store.matrix(sanity_impl.invariance_key(label)), expected, rtol=0, atol=1e-12)


def test_class_translation_tends_to_the_recorded_limit(run):
    store, _, frame = run
    y = store.probe_set("clean").y

    def cka(x, z):  # the closed form, independent of the metric plugin that measured the limit
        x, z = x - x.mean(0), z - z.mean(0)
        return float((z.T @ x).norm() ** 2 / ((x.T @ x).norm() * (z.T @ z).norm()))

    reps = [r.double() for r in store.representations("clean")]
    indicator = (y == 0).double().unsqueeze(1)
    lims = [cka(r, indicator) for r in reps]
    row_sums = [cka(r, r.sum(1, keepdim=True)) for r in reps]
    limit = frame[(frame["statistic"] == "linear_cka_limit")].set_index("group")["value"]
    assert float(limit["class_translation"]) == pytest.approx(np.mean(lims), abs=1e-12)
    assert float(limit["invertible_linear"]) == pytest.approx(np.mean(row_sums), abs=1e-12)
    far = value(frame, "value_mean", "linear_cka", "class_translation", 1000.0)
    assert far == pytest.approx(np.mean(lims), abs=0.01)


def test_invariance_table_pass_fail(run):
    _, _, frame = run
    tables = {t.key: t for t in Sanity.tables(frame)}
    grid = tables["invariances"].frame.set_index("metric")
    assert grid.loc["linear_cka", "orthogonal"] == "pass"
    assert grid.loc["linear_cka", "translation"] == "pass"
    assert grid.loc["linear_cka", "invertible_linear"] == "no"  # a known non-invariance, not declared
    assert grid.loc["cca_mean", "invertible_linear"] == "pass"
    assert grid.loc["lying_cka", "invertible_linear"] == "FAIL"  # declared but false
    assert grid.loc["wcka", "weight_permutation"] == "pass"
    assert grid.loc["wcka", "weight_positive_scaling"] == "pass"
    assert grid.loc["wcka", "orthogonal"] == "n/a"
    passed = frame[(frame["statistic"] == "passed") & (frame["metric"] == "lying_cka")]
    assert dict(zip(passed["model_b"], passed["value"]))["invertible_linear"] == 0.0


def test_failures_verdict_and_plots(run, tmp_path):
    _, _, frame = run
    failed = frame[frame["status"] == "failed"]
    assert set(failed["metric"]) == {"nan_metric"}
    assert len(failed) == 2  # the curves and the invariance check
    assert failed["error"].str.len().gt(0).all()
    tables = {t.key: t for t in Sanity.tables(frame)}
    verdict = tables["verdict"].frame.set_index("claim")
    outlier = [c for c in verdict.index if "single point" in c][0]
    assert verdict.loc[outlier, "reproduced"] == "yes"
    assert tables["sanity"].frame.iloc[0]["metric"] in {"cca_mean"}
    assert set(tables["curves"].frame["strength"]) == {0.0, 1.0, 1000.0, 3.0, 300.0}
    paths = Sanity.plots(frame, tmp_path)
    assert len(paths) == 2 and all(p.stat().st_size > 10_000 for p in paths)


def test_requests_name_every_transform_and_run_no_metric(run):
    store, _, _ = run
    requests = {r.key: r for r in BENCH.requests(store)}
    activation = [k for k, m in store.metrics.items() if m.kind == "activation"]
    assert set(requests) == ({sanity_impl.curve_key(m, s.id) for m in activation for s in store.specs}
                             | {sanity_impl.limit_key(s.id) for s in store.specs}
                             | {sanity_impl.invariance_key(m) for m in store.metrics})
    curve = requests[sanity_impl.curve_key("cca_mean", store.specs[1].id)]
    assert curve.metric == "cca_mean" and not curve.sources[0].transform
    assert {s.transform for s in curve.sources[1:]} == {"representation_transform"}
    assert all(s.dtype == "float64" and s.model == store.specs[1].id for s in curve.sources)
    weights = requests[sanity_impl.invariance_key("wcka")].sources
    assert all(s.is_weights for s in weights)
    # b's copies skip the draws of a's hidden layer (16 units) on the shared stream
    assert dict(weights[3].transform_params)["skip_widths"] == (16,)
    assert "skip_widths" not in dict(weights[2].transform_params)


def test_parameter_checks():
    with pytest.raises(simbench.ParamError):
        Sanity(transforms=("rotation",))
    with pytest.raises(simbench.ParamError):
        Sanity(invariances=("affine",))


SMALL = ("{name='sanity', repeats=1, translation_distances=[0.0, 4.0], invertible_mu=[0.0, 1.0], "
         "outlier_distances=[0.0, 10.0], invariance_draws=1}")


def test_a_run_computes_what_the_kit_computes(tmp_path):
    """A real run (toy zoo of a 16- and an 8-unit net): the runner transforms activations and weights, and the
    records equal those the kit's store computes from the same models (1e-12); a resumed run reuses every cell."""
    from simbench.registry import build_registry
    from simbench.runner import Runner
    from simbench.suite import load_suite
    from tests.conftest import TOY_PLUGINS, TOY_SUITE

    registry = build_registry(plugin_files=[str(TOY_PLUGINS)])
    overrides = ["zoo.seeds=[0]", "zoo.widths=[16, 8]", "perturbations=[]",
                 "metrics=[{name='linear_cka'}, {name='wcka'}]", f"benchmarks=[{SMALL}]"]
    suite = load_suite(TOY_SUITE, registry, overrides)
    runner = Runner(suite, registry, tmp_path / "run", cache_dir=tmp_path / "cache", quiet=True)
    frame = runner.run().results()
    cells = frame[frame["kind"] == "matrix"]
    assert len(cells) == 2 * 1 + 2 + 2 and (cells["status"] == "ok").all(), cells["error"]
    got = frame[frame["kind"] == "benchmark"].reset_index(drop=True)
    assert (got["status"] == "ok").all(), got["error"]
    # the same benchmark on the kit's store over the run's own models and probes
    state = runner.state
    store = FakeStore(state.models, state.specs, list(state.probe_sets.values()), state.data,
                      metrics={u.label: u.obj for u in suite.metrics}, registry=registry)
    bench = suite.benchmarks[0].obj
    kit = frame_of(run_benchmark(bench, store))
    assert list(got["statistic"]) == list(kit["statistic"]) and list(got["model_b"]) == list(kit["model_b"])
    x, y = got["value"].to_numpy(float), kit["value"].to_numpy(float)
    assert np.allclose(x, y, rtol=0, atol=1e-12)
    holds = got[(got["statistic"] == "holds") & (got["metric"] == "wcka")].set_index("model_b")["value"]
    assert holds.to_dict() == {"weight_permutation": 1.0, "weight_positive_scaling": 1.0}
    again = Runner(load_suite(TOY_SUITE, registry, overrides), registry, tmp_path / "run",
                   cache_dir=tmp_path / "cache", quiet=True)
    again.run()
    assert again.computed == 0
