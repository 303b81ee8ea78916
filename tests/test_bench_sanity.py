"""The sanity benchmark (seed 003 §3.2-3.3) on real digit representations in a small fake run."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
import torch

import simbench
from simbench.results import record_row
from simbench.types import ModelSpec
from simbench_plugins.benchmarks.sanity import compute as sanity_impl
from simbench_plugins.benchmarks.sanity import Sanity
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

    def __init__(self, seed):
        super().__init__()
        torch.manual_seed(seed)
        self.fc1, self.fc2 = torch.nn.Linear(64, 16), torch.nn.Linear(16, 3)

    def read(self, x, layers):
        h = torch.relu(self.fc1(x))
        return {k: {"hidden": h, "logits": self.fc2(h)}[k] for k in layers}

    def forward(self, x):
        return self.read(x, ["logits"])["logits"]

    def dense_weights(self):
        return [self.fc1.weight.detach().T, self.fc2.weight.detach().T]


class FakeContext:
    """Two small ReLU networks trained briefly on real digits 0-2; their hidden activations on 150 test digits."""

    def __init__(self):
        from sklearn.datasets import load_digits

        d = load_digits(n_class=3)
        x = torch.tensor(d.data, dtype=torch.float32) / 16.0
        y = torch.tensor(d.target)
        self.suite_name, self.seed, self.device = "fake", 0, "cpu"
        self.specs = [ModelSpec(f"net/s{s}", {"seed": s}) for s in (0, 1)]
        self.models = {}
        for s, spec in zip((0, 1), self.specs):
            net = Net(s)
            opt = torch.optim.Adam(net.parameters(), lr=1e-2)
            for _ in range(30):
                opt.zero_grad()
                torch.nn.functional.cross_entropy(net(x[150:]), y[150:]).backward()
                opt.step()
            self.models[spec.id] = net.eval()
        self.probe = simbench.ProbeSet("clean", x[:150], y[:150])
        self.probe_sets = ["clean"]
        with torch.no_grad():
            self.reps = [self.models[s.id].read(x[:150], ["hidden"])["hidden"] for s in self.specs]
        self.metrics = {"linear_cka": LinearCKA(), "cca_mean": CCAMean(), "lying_cka": LyingCKA(),
                        "wcka": WeightsCKA(), "nan_metric": NaNMetric()}

    def representations(self, probe_set, layer=None):
        return self.reps

    def probe_set(self, name):
        return self.probe

    def make_plugin(self, kind, name, params=None):
        assert (kind, name) == ("perturbation", "representation_transform")
        return RepresentationTransform(**(params or {}))


@pytest.fixture(scope="module")
def run():
    ctx = FakeContext()
    bench = Sanity(translation_distances=(0.0, 1.0, 1000.0), invertible_mu=(0.0, 3.0),
                   outlier_distances=(0.0, 300.0), repeats=2, invariance_draws=2)
    records = bench.evaluate(ctx)
    return ctx, records, pd.DataFrame([record_row("fake", "benchmark", r) for r in records])


def value(frame, statistic, metric, group, setting):
    rows = frame[(frame["statistic"] == statistic) & (frame["metric"] == metric) & (frame["group"] == group)
                 & (frame["model_b"] == setting)]
    assert len(rows) == 1, (statistic, metric, group, setting, len(rows))
    return float(rows["value"].iloc[0])


def test_curves_follow_the_seed(run):
    _, _, frame = run
    # no transform: identical
    assert value(frame, "value_mean", "linear_cka", "class_translation", "0.0") == pytest.approx(1.0, abs=1e-9)
    assert value(frame, "value_mean", "linear_cka", "outlier", "0.0") == pytest.approx(1.0, abs=1e-9)
    # one point moved 300 RMS radii away wrecks linear CKA (seed 003 §3.3) ...
    assert value(frame, "value_mean", "linear_cka", "outlier", "300.0") < 0.2
    # ... but not CCA, which is invariant to invertible linear maps (and mean CCA barely sees one point)
    assert value(frame, "scaled_mean", "cca_mean", "invertible_linear", "3.0") == pytest.approx(1.0, abs=1e-6)
    assert value(frame, "value_mean", "linear_cka", "invertible_linear", "3.0") < 0.95
    # a class translation keeps the classes linearly separable: the read-out does not get worse
    acc0 = float(frame.loc[frame["statistic"] == "probe_accuracy_original", "value"].iloc[0])
    assert value(frame, "probe_accuracy_mean", "", "class_translation", "1000.0") >= acc0 - 1e-9


def test_class_translation_tends_to_the_recorded_limit(run):
    ctx, _, frame = run
    x, y = ctx.reps[0].double(), ctx.probe.y
    indicator = (y == 0).double().unsqueeze(1)
    direct = float(LinearCKA()(x, indicator))
    limit = frame[(frame["statistic"] == "linear_cka_limit") & (frame["group"] == "class_translation")]
    lims = [float(sanity_impl.limits(r.double(), y, 0)["class_translation"]) for r in ctx.reps]
    assert sanity_impl.limits(x, y, 0)["class_translation"] == pytest.approx(direct, abs=1e-9)
    assert float(limit["value"].iloc[0]) == pytest.approx(np.mean(lims))
    far = value(frame, "value_mean", "linear_cka", "class_translation", "1000.0")
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
    tables = {t.key: t for t in Sanity.tables(frame)}
    verdict = tables["verdict"].frame.set_index("claim")
    outlier = [c for c in verdict.index if "single point" in c][0]
    assert verdict.loc[outlier, "reproduced"] == "yes"
    assert tables["sanity"].frame.iloc[0]["metric"] in {"cca_mean"}
    paths = Sanity.plots(frame, tmp_path)
    assert len(paths) == 2 and all(p.stat().st_size > 10_000 for p in paths)


def test_parameter_checks():
    with pytest.raises(simbench.ParamError):
        Sanity(transforms=("rotation",))
    with pytest.raises(simbench.ParamError):
        Sanity(invariances=("affine",))
