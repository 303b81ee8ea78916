"""The conformance kit: every built-in metric passes it, and it catches broken metrics."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pytest
import torch

import simbench
from simbench.registry import build_registry
from simbench.testing import (
    CHECKS,
    ConformanceError,
    check_invariance,
    check_metric,
    make_activations,
    make_network,
    run_check,
    transform_activation,
    transform_weights,
)

BUILTIN = "builtin_metrics"


def builtin_metric_classes() -> list[type]:
    registry = build_registry()
    return [e.cls for e in registry.entries("metric") if e.plugin == BUILTIN]


BUILTINS = builtin_metric_classes()
#: a few non-default configurations exercise parameters the defaults leave idle
CONFIGURED = [
    ("minibatch_cka", {"batch_size": 16, "seed": 3}),
    ("mutual_knn", {"k": 3}),
    ("jaccard_knn", {"k": 25}),
    ("svcca", {"variance_kept": 0.8}),
    ("rbf_cka", {"bandwidth_factor": 0.3}),
]


def test_every_metric_of_the_issue_is_registered_by_the_builtin_plugin():
    expected = {
        "linear_cka", "unbiased_cka", "rbf_cka", "minibatch_cka", "dcka", "procrustes", "angular_shape", "wcka",
        "cca_mean", "svcca", "pwcca", "rsa", "linear_regression_r2", "mutual_knn", "jaccard_knn",
    }  # fmt: skip
    assert expected <= {cls.name for cls in BUILTINS}


@pytest.mark.parametrize("check", CHECKS)
@pytest.mark.parametrize("cls", BUILTINS, ids=lambda c: c.name)
def test_builtin_metric_conforms(cls, check):
    run_check(cls(), check)


@pytest.mark.parametrize("name,params", CONFIGURED, ids=[c[0] for c in CONFIGURED])
def test_configured_builtin_metric_conforms(registry, name, params):
    metric, key, message = registry.configure("metric", name, params)
    assert metric is not None, (key, message)
    assert check_metric(metric, seed=5) == list(CHECKS)


def test_fixture_is_provided_by_the_pytest_plugin(simbench_check_metric):
    # the pytest11 entry point makes the fixture available without any import
    from simbench_plugins.metrics.cka import LinearCKA

    assert simbench_check_metric(LinearCKA, skip=("edge_cases",)) == [c for c in CHECKS if c != "edge_cases"]


# --------------------------------------------------------------------------
# The kit must catch broken metrics
# --------------------------------------------------------------------------


def _centred(x: torch.Tensor) -> torch.Tensor:
    return x - x.mean(0)


@dataclass(frozen=True)
class UncentredCKA(simbench.Metric):
    """Linear CKA without centring: wrongly claims translation invariance."""

    name = "uncentred_cka"
    invariances = frozenset({"orthogonal", "translation"})

    def __call__(self, a, b, **kwargs):
        return float((b.T @ a).norm() ** 2 / ((a.T @ a).norm() * (b.T @ b).norm()))


@dataclass(frozen=True)
class NaNOnConstant(simbench.Metric):
    """Correct linear CKA on good data, 0/0 = NaN on a constant representation."""

    name = "nan_on_constant"

    def __call__(self, a, b, **kwargs):
        a, b = _centred(a.double()), _centred(b.double())
        return float((b.T @ a).norm() ** 2 / ((a.T @ a).norm() * (b.T @ b).norm()))


@dataclass(frozen=True)
class BadPairwise(NaNOnConstant):
    """Batched path forgets to normalise the diagonal."""

    name = "bad_pairwise"

    def pairwise(self, reps, **kwargs):
        out = super().pairwise(reps, **kwargs)
        return out + torch.eye(len(reps), dtype=torch.float64)


@dataclass(frozen=True)
class Float32Pairwise(NaNOnConstant):
    name = "float32_pairwise"

    def pairwise(self, reps, **kwargs):
        return super().pairwise(reps, **kwargs).float()


@dataclass(frozen=True)
class Asymmetric(simbench.Metric):
    """Regression-style measure that wrongly declares symmetry."""

    name = "asymmetric"

    def __call__(self, a, b, **kwargs):
        a, b = _centred(a.double()), _centred(b.double())
        q, _ = torch.linalg.qr(b)
        return float((q.T @ a).norm() ** 2 / a.norm() ** 2)


@dataclass(frozen=True)
class WrongOrientation(simbench.Metric):
    """A distance that declares higher = more similar."""

    name = "wrong_orientation"
    value_range = (0.0, 2.0)

    def __call__(self, a, b, **kwargs):
        a, b = _centred(a.double()), _centred(b.double())
        a, b = a / a.norm(), b / b.norm()
        return float(2 - 2 * torch.linalg.matrix_norm(a.T @ b, ord="nuc"))


@dataclass(frozen=True)
class OutOfRange(simbench.Metric):
    """Unbiased HSIC ratio without clipping: can go negative although the range says [0, 1]."""

    name = "out_of_range"
    invariances = frozenset({"isotropic_scaling"})

    def __call__(self, a, b, **kwargs):
        return -0.5


@dataclass(frozen=True)
class FirstUnits(simbench.Metric):
    """A weight metric that compares the first hidden units' incoming weights: not permutation invariant."""

    name = "first_units"
    kind = "weight"
    invariances = frozenset({"weight_permutation"})

    def __call__(self, a, b, **kwargs):
        x, y = a[0][:, :3].flatten(), b[0][:, :3].flatten()
        return float(abs(x @ y) / (x.norm() * y.norm()))


@dataclass(frozen=True)
class FirstHalfCKA(simbench.Metric):
    """Linear CKA on the first half of the probe rows only: depends on their order."""

    name = "first_half_cka"
    invariances = frozenset({"orthogonal", "isotropic_scaling", "permutation", "translation"})

    def __call__(self, a, b, **kwargs):
        a, b = a[: a.shape[0] // 2].double(), b[: b.shape[0] // 2].double()
        a, b = a - a.mean(0), b - b.mean(0)
        na, nb = (a.T @ a).norm(), (b.T @ b).norm()
        return 0.0 if na == 0 or nb == 0 else float((b.T @ a).norm() ** 2 / (na * nb))


@dataclass(frozen=True)
class MisfitDeclaration(simbench.Metric):
    name = "misfit"
    invariances = frozenset({"weight_permutation"})

    def __call__(self, a, b, **kwargs):
        return 1.0


@pytest.mark.parametrize(
    "metric,check,fragment",
    [
        (UncentredCKA(), "invariances", "'translation' invariance"),
        (NaNOnConstant(), "edge_cases", "constant representation"),
        (BadPairwise(), "pairwise", "pairwise[0, 0]"),
        (Float32Pairwise(), "pairwise", "float64"),
        (Asymmetric(), "symmetry", "declared symmetric"),
        (WrongOrientation(), "identity", "expected 2.0"),
        (OutOfRange(), "range", "outside the declared range"),
        (FirstUnits(), "invariances", "'weight_permutation'"),
        (MisfitDeclaration(), "declarations", "do not apply to a activation metric"),
        (FirstHalfCKA(), "probe_permutation", "reordering the probe inputs"),
    ],
    ids=lambda v: getattr(v, "name", None) if isinstance(v, simbench.Metric) else None,
)
def test_kit_catches_broken_metric(metric, check, fragment):
    with pytest.raises(ConformanceError, match="fails") as info:
        run_check(metric, check)
    assert fragment in str(info.value)
    with pytest.raises(ConformanceError):
        check_metric(metric)


def test_check_metric_reports_every_failure_at_once():
    with pytest.raises(ConformanceError) as info:
        check_metric(UncentredCKA())
    text = str(info.value)
    assert "'invariances'" in text and "'edge_cases'" in text


def test_kit_rejects_unknown_checks_and_non_metrics():
    with pytest.raises(ValueError, match="unknown checks"):
        check_metric(UncentredCKA(), checks=("identiy",))
    with pytest.raises(TypeError):
        check_metric(object())


def test_kit_passes_a_correct_third_party_metric():
    @dataclass(frozen=True)
    class GoodCKA(simbench.Metric):
        name = "good_cka"
        invariances = frozenset({"orthogonal", "isotropic_scaling", "permutation", "translation"})

        def __call__(self, a, b, **kwargs):
            a, b = _centred(a.double()), _centred(b.double())
            na, nb = (a.T @ a).norm(), (b.T @ b).norm()
            if na == 0 or nb == 0:
                return 0.0
            return float((b.T @ a).norm() ** 2 / (na * nb))

    assert check_metric(GoodCKA) == list(CHECKS)
    assert dataclasses.is_dataclass(GoodCKA)


# --------------------------------------------------------------------------
# The kit's transformations are what they claim to be
# --------------------------------------------------------------------------


@pytest.mark.parametrize("activation", [torch.relu, torch.nn.functional.leaky_relu])
@pytest.mark.parametrize("name", ["weight_permutation", "weight_positive_scaling"])
def test_weight_transforms_preserve_the_network_function(name, activation):
    net = make_network(1, (16, 12, 10, 3))
    new = transform_weights(name, net, torch.Generator().manual_seed(2))
    assert any(not torch.allclose(w, v) for w, v in zip(net, new))

    def forward(ws, x):
        for w in ws[:-1]:
            x = activation(x @ w)
        return x @ ws[-1]

    x = torch.randn(50, 16, dtype=torch.float64)
    assert torch.allclose(forward(net, x), forward(new, x), atol=1e-10)


def test_activation_transforms_are_in_their_groups():
    (x,), _ = make_activations(0, widths=(6,))
    g = torch.Generator().manual_seed(0)
    q = transform_activation("orthogonal", torch.eye(6, dtype=torch.float64), g)
    assert torch.allclose(q.T @ q, torch.eye(6, dtype=torch.float64), atol=1e-12)
    a = transform_activation("invertible_linear", torch.eye(6, dtype=torch.float64), g)
    s = torch.linalg.svdvals(a)
    assert float(s.min()) > 0.3 and float(s.max() / s.min()) > 1.2  # invertible, not orthogonal
    y = transform_activation("translation", x, g)
    assert torch.allclose(y - y.mean(0), x - x.mean(0), atol=1e-12) and not torch.allclose(y, x)
    p = transform_activation("permutation", x, g)
    assert torch.equal(p.sort(dim=1).values, x.sort(dim=1).values)
    with pytest.raises(ValueError, match="unknown activation invariance"):
        transform_activation("rotation", x, g)


def test_invariance_check_refuses_a_misapplied_invariance():
    from simbench_plugins.metrics.cka import LinearCKA

    with pytest.raises(ConformanceError, match="weight metrics only"):
        check_invariance(LinearCKA(), "weight_permutation")
