"""Conformance kit for metric plugin authors (also a pytest plugin).

Point it at your metric in your own test suite::

    from simbench.testing import check_metric

    def test_my_metric_conforms():
        check_metric(MyMetric())          # raises AssertionError listing every failure

or, one check per test (clearer reports)::

    import pytest
    from simbench.testing import CHECKS, run_check

    @pytest.mark.parametrize("check", CHECKS)
    def test_conformance(check):
        run_check(MyMetric(), check)

simbench registers this module as a pytest plugin (entry point ``pytest11``),
so the ``simbench_check_metric`` fixture is available in any project that has
simbench installed.  The checks, on seeded synthetic data in float64:

``declarations``  class attributes are well formed (kind, orientation, range,
                  invariances from :data:`simbench.types.INVARIANCES` that fit
                  the kind, frozen dataclass);
``identity``      ``metric(a, a)`` is the most-similar end of ``value_range``;
``range``         values lie in ``value_range``;
``symmetry``      ``metric(a, b) == metric(b, a)`` when ``symmetric`` is declared;
``invariances``   every declared invariance holds, transforming either argument
                  (orthogonal rotation, isotropic scaling, unit permutation,
                  translation, invertible linear map; for weight metrics,
                  hidden-unit permutation and positive diagonal rescaling
                  through (Leaky)ReLU layers);
``pairwise``      ``metric.pairwise(reps)`` is a float64 ``M x M`` matrix equal
                  to the single-pair calls (1e-5), for models of different widths,
                  also with ``d1 + d2 > n`` (spaces that must share dimensions);
``edge_cases``    constant, zero, rank-one, tiny- and huge-scale, wide (d > n),
                  duplicated-row and float32 inputs give a finite value in
                  range or a clear ``ValueError`` -- never NaN;
``probe_permutation``  a metric is a function of the *set* of probe inputs:
                  reordering the rows of both representations (and of the
                  probe inputs, for metrics that take them) with one
                  permutation leaves the value unchanged, also when inputs
                  are duplicated (ties in distances and neighbours) and for
                  a constant representation.

For benchmarks, :func:`check_benchmark` runs a benchmark class on
:class:`FakeStore` -- one shared, small synthetic :class:`simbench.StoreView`
(readable models, outputs, labels, weights, similarity matrices from the
real metric plugins) -- as the runner would: ``requests``, the declared
matrices computed with the real metrics, ``evaluate``; then it checks the
records (types, finite ``ok`` values, no number in a text field, numeric
``coords``) and that ``tables``/``summary`` render::

    from simbench.testing import check_benchmark

    def test_my_benchmark_conforms():
        check_benchmark(MyBenchmark, {"param": 1})

Importing this module is cheap: torch is imported inside the functions.

(About 1 000 lines, above the ~600 of other core modules: it is the kit's
one public module -- metric checks, :class:`FakeStore`, benchmark checks --
that authors import by one name and read as one page.)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .errors import one_line
from .types import INVARIANCES, Metric
from .view import StoreView

if TYPE_CHECKING:  # pragma: no cover
    import torch

try:  # the kit works without pytest; the fixture needs it
    import pytest
except ImportError:  # pragma: no cover
    pytest = None  # type: ignore[assignment]

CHECKS: tuple[str, ...] = (
    "declarations",
    "identity",
    "range",
    "symmetry",
    "invariances",
    "pairwise",
    "edge_cases",
    "probe_permutation",
)

ACTIVATION_INVARIANCES = frozenset(
    {"orthogonal", "isotropic_scaling", "permutation", "translation", "invertible_linear"}
)
WEIGHT_INVARIANCES = frozenset({"weight_permutation", "weight_positive_scaling"})


class ConformanceError(AssertionError):
    """One or more conformance checks failed; the message lists each failure."""


# --------------------------------------------------------------------------
# Synthetic data
# --------------------------------------------------------------------------


def _generator(seed: int, *tags: str) -> torch.Generator:
    """The kit's stream ``tags`` under ``seed`` (:mod:`simbench.seeding`, like every other stream)."""
    from .seeding import torch_generator

    return torch_generator(seed, "testing", *tags)


def make_activations(
    seed: int = 0, n: int = 64, widths: Sequence[int] = (10, 8), input_dim: int = 12, dtype: Any = None
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Related representations ``[n, w]`` of the same ``n`` probe inputs, plus the inputs.

    All are noisy (non)linear read-outs of one 5-dimensional latent, with
    non-zero means and unequal column scales, so similarities are neither 0
    nor 1 and translation/scaling actually change the raw numbers.
    """
    import torch

    dtype = dtype or torch.float64
    g = _generator(seed, "activations")

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    latent = randn(n, 5)
    reps = []
    for k, w in enumerate(widths):
        h = latent @ (randn(5, w) * torch.exp(randn(w)))  # unequal column scales
        if k % 2:
            h = torch.tanh(h)
        h = h + 0.5 * randn(n, w) + randn(w)  # noise and a non-zero mean
        reps.append(h.to(dtype))
    inputs = latent @ randn(5, input_dim) + 0.3 * randn(n, input_dim)
    return reps, inputs.to(dtype)


def make_network(seed: int = 0, widths: Sequence[int] = (16, 12, 10, 3), dtype: Any = None) -> list[torch.Tensor]:
    """Dense weight matrices ``[in, out]`` (input side first) of a random MLP with these layer widths."""
    import torch

    dtype = dtype or torch.float64
    g = _generator(seed, "weights")
    return [
        (torch.randn(i, o, generator=g, dtype=torch.float64) / math.sqrt(i)).to(dtype)
        for i, o in zip(widths[:-1], widths[1:])
    ]


def random_orthogonal(d: int, generator: torch.Generator, dtype: Any = None) -> torch.Tensor:
    """A Haar-random ``d x d`` orthogonal matrix."""
    import torch

    q, r = torch.linalg.qr(torch.randn(d, d, generator=generator, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))[None, :]
    return q.to(dtype or torch.float64)


def transform_activation(name: str, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Apply a random member of the named invariance group to ``x`` (``[n, d]``)."""
    import torch

    d = x.shape[1]
    dt = x.dtype
    if name == "orthogonal":
        return x @ random_orthogonal(d, generator, dt)
    if name == "isotropic_scaling":
        c = float(torch.exp(torch.empty(()).uniform_(-3.0, 3.0, generator=generator)))
        return x * c
    if name == "permutation":
        return x[:, torch.randperm(d, generator=generator)]
    if name == "translation":
        scale = float(x.std()) if x.numel() > 1 else 1.0
        return x + 3.0 * scale * torch.randn(d, generator=generator, dtype=torch.float64).to(dt)
    if name == "invertible_linear":
        # well conditioned (singular values in [e^-1, e]) but far from orthogonal
        s = torch.exp(torch.empty(d, dtype=torch.float64).uniform_(-1.0, 1.0, generator=generator))
        a = random_orthogonal(d, generator) @ torch.diag(s) @ random_orthogonal(d, generator)
        return x @ a.to(dt)
    raise ValueError(f"unknown activation invariance {name!r}; expected one of {sorted(ACTIVATION_INVARIANCES)}")


def transform_weights(name: str, weights: Sequence[torch.Tensor], generator: torch.Generator) -> list[torch.Tensor]:
    """Apply a random function-preserving transform of every hidden layer of a (Leaky)ReLU MLP.

    ``weight_permutation``: ``W_k -> W_k P``, ``W_{k+1} -> P^T W_{k+1}``;
    ``weight_positive_scaling``: ``W_k -> W_k D``, ``W_{k+1} -> D^-1 W_{k+1}``
    with D positive diagonal (ReLU and LeakyReLU are positively homogeneous).
    """
    import torch

    ws = [w.clone() for w in weights]
    for k in range(len(ws) - 1):
        width = ws[k].shape[1]
        if name == "weight_permutation":
            p = torch.randperm(width, generator=generator)
            ws[k], ws[k + 1] = ws[k][:, p], ws[k + 1][p, :]
        elif name == "weight_positive_scaling":
            s = torch.empty(width, dtype=torch.float64).uniform_(-1.5, 1.5, generator=generator)
            s = torch.exp(s).to(ws[k].dtype)
            ws[k], ws[k + 1] = ws[k] * s[None, :], ws[k + 1] / s[:, None]
        else:
            raise ValueError(f"unknown weight invariance {name!r}; expected one of {sorted(WEIGHT_INVARIANCES)}")
    return ws


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


def _instance(metric: Any) -> Metric:
    if isinstance(metric, type):
        if not issubclass(metric, Metric):
            raise TypeError(f"{metric!r} is not a simbench.Metric subclass")
        return metric()
    if not isinstance(metric, Metric):
        raise TypeError(f"{metric!r} is not a simbench.Metric")
    return metric


def _label(metric: Metric) -> str:
    return getattr(metric, "name", "") or type(metric).__name__


def _tol(metric: Metric, atol: float) -> float:
    lo, hi = metric.value_range
    width = hi - lo if math.isfinite(hi - lo) else 1.0
    return atol * max(1.0, width)


def _call(metric: Metric, a: Any, b: Any, inputs: Any) -> float:
    kwargs = {"inputs": inputs} if metric.needs_inputs else {}
    return float(metric(a, b, **kwargs))


def _pairwise(metric: Metric, reps: Sequence[Any], inputs: Any) -> Any:
    kwargs = {"inputs": inputs} if metric.needs_inputs else {}
    return metric.pairwise(reps, **kwargs)


def _examples(metric: Metric, seed: int) -> tuple[Any, Any, Any]:
    """A related pair ``(a, b)`` and the probe inputs for this metric's kind."""
    if metric.kind == "weight":
        return make_network(seed, (16, 12, 10, 3)), make_network(seed + 1, (16, 9, 3)), None
    (a, b), inputs = make_activations(seed)
    return a, b, inputs


def _best(metric: Metric) -> float:
    lo, hi = metric.value_range
    return hi if metric.higher_is_more_similar else lo


def _fail(metric: Metric, check: str, message: str) -> ConformanceError:
    return ConformanceError(f"metric {_label(metric)!r} fails {check!r}: {message}")


# --------------------------------------------------------------------------
# The checks
# --------------------------------------------------------------------------


def check_declarations(metric: Any) -> None:
    """Class attributes are well formed and consistent with the metric's kind."""
    m = _instance(metric)
    cls = type(m)
    if not dataclasses.is_dataclass(cls) or not cls.__dataclass_params__.frozen:  # type: ignore[attr-defined]
        raise _fail(m, "declarations", "expected a frozen dataclass (@dataclass(frozen=True))")
    if not isinstance(cls.name, str) or not cls.name:
        raise _fail(m, "declarations", "missing `name`")
    if cls.kind not in ("activation", "weight"):
        raise _fail(m, "declarations", f"kind must be 'activation' or 'weight', got {cls.kind!r}")
    if not isinstance(cls.higher_is_more_similar, bool) or not isinstance(cls.symmetric, bool):
        raise _fail(m, "declarations", "higher_is_more_similar and symmetric must be bools")
    lo, hi = cls.value_range
    if not (isinstance(lo, (int, float)) and isinstance(hi, (int, float)) and lo < hi):
        raise _fail(m, "declarations", f"value_range must be (low, high) with low < high, got {cls.value_range!r}")
    unknown = set(cls.invariances) - INVARIANCES
    if unknown:
        raise _fail(
            m, "declarations", f"unknown invariances {sorted(unknown)}; expected a subset of {sorted(INVARIANCES)}"
        )
    fitting = ACTIVATION_INVARIANCES if cls.kind == "activation" else WEIGHT_INVARIANCES
    misfit = set(cls.invariances) - fitting
    if misfit:
        raise _fail(m, "declarations", f"invariances {sorted(misfit)} do not apply to a {cls.kind} metric")
    if cls.needs_inputs and cls.kind != "activation":
        raise _fail(m, "declarations", "needs_inputs only makes sense for activation metrics")


def check_identity(metric: Any, seed: int = 0, atol: float = 1e-6) -> None:
    """``metric(a, a)`` is the most-similar end of the value range."""
    m = _instance(metric)
    a, b, inputs = _examples(m, seed)
    for name, x in (("a", a), ("b", b)):
        value = _call(m, x, x, inputs)
        if not abs(value - _best(m)) <= _tol(m, atol):
            raise _fail(m, "identity", f"metric(x, x) = {value!r} for example {name}, expected {_best(m)!r}")


def check_range(metric: Any, seed: int = 0, atol: float = 1e-6) -> None:
    """Values on related and on unrelated pairs lie in ``value_range``."""
    m = _instance(metric)
    a, b, inputs = _examples(m, seed)
    c, _, _ = _examples(m, seed + 101)
    lo, hi = m.value_range
    tol = _tol(m, atol)
    for label, (x, y) in {"related": (a, b), "reversed": (b, a), "unrelated": (a, c)}.items():
        value = _call(m, x, y, inputs)
        if not (math.isfinite(value) and lo - tol <= value <= hi + tol):
            raise _fail(m, "range", f"{label} pair gives {value!r}, outside the declared range {m.value_range}")


def check_symmetry(metric: Any, seed: int = 0, atol: float = 1e-6) -> None:
    """``metric(a, b) == metric(b, a)`` if the metric declares ``symmetric = True``."""
    m = _instance(metric)
    if not m.symmetric:
        return
    a, b, inputs = _examples(m, seed)
    ab, ba = _call(m, a, b, inputs), _call(m, b, a, inputs)
    if not abs(ab - ba) <= _tol(m, atol):
        raise _fail(m, "symmetry", f"declared symmetric but metric(a, b) = {ab!r} and metric(b, a) = {ba!r}")


def check_invariance(metric: Any, invariance: str, seed: int = 0, atol: float = 1e-6) -> None:
    """One declared invariance: transforming either argument (or both) leaves the value unchanged."""
    m = _instance(metric)
    a, b, inputs = _examples(m, seed)
    g = _generator(seed, "invariance")
    if invariance in WEIGHT_INVARIANCES:
        if m.kind != "weight":
            raise _fail(m, "invariances", f"{invariance!r} applies to weight metrics only")

        def t(x: Any) -> Any:
            return transform_weights(invariance, x, g)

    else:
        if m.kind != "activation":
            raise _fail(m, "invariances", f"{invariance!r} applies to activation metrics only")

        def t(x: Any) -> Any:
            return transform_activation(invariance, x, g)

    base = _call(m, a, b, inputs)
    tol = _tol(m, atol)
    for label, (x, y) in {"first": (t(a), b), "second": (a, t(b)), "both": (t(a), t(b))}.items():
        value = _call(m, x, y, inputs)
        if not abs(value - base) <= tol:
            raise _fail(
                m,
                "invariances",
                f"declared {invariance!r} invariance, but transforming the {label} argument"
                f"{'s' if label == 'both' else ''} changes {base!r} to {value!r}",
            )


def check_invariances(metric: Any, seed: int = 0, atol: float = 1e-6) -> None:
    """Every declared invariance (see :func:`check_invariance`)."""
    m = _instance(metric)
    for invariance in sorted(m.invariances):
        check_invariance(m, invariance, seed, atol)


#: (n, widths) of the activation sets :func:`check_pairwise` compares: models of different widths with
#: n well above them; and n below the sum of two widths (d1 + d2 > n - 1: the centred column spaces must
#: share dimensions, several canonical correlations are exactly 1), one model wider than n
PAIRWISE_CASES: tuple[tuple[int, tuple[int, ...]], ...] = ((64, (10, 8, 10, 5)), (20, (14, 12, 9, 25)))


def check_pairwise(metric: Any, seed: int = 0, atol: float = 1e-5) -> None:
    """``pairwise`` is a finite float64 ``M x M`` matrix equal to the single-pair calls.

    Activation metrics are checked on every case of :data:`PAIRWISE_CASES`
    (float64), each with an exact copy of the first model up to a unit
    permutation; weight metrics on four networks of different shapes.
    """
    m = _instance(metric)
    if m.kind == "weight":
        shapes = [(16, 12, 10, 3), (16, 9, 3), (16, 12, 7, 3), (16, 4)]
        _check_pairwise_on(m, [make_network(seed + k, widths) for k, widths in enumerate(shapes)], None, atol, "")
        return
    for n, widths in PAIRWISE_CASES:
        reps, inputs = make_activations(seed, n=n, widths=widths)
        # an exact copy up to a permutation of units: identical pairs must agree too
        reps.append(transform_activation("permutation", reps[0], _generator(seed, "rotation")))
        _check_pairwise_on(m, reps, inputs, atol, f" (n = {n}, widths {list(widths)} and a copy)")


def _check_pairwise_on(m: Metric, reps: list[Any], inputs: Any, atol: float, where: str) -> None:
    """One set: ``pairwise`` equals the pair calls; a set the metric refuses (``ValueError``, e.g. too few
    probes for its ``k``) must be refused by both paths."""
    import torch

    try:
        out = _pairwise(m, reps, inputs)
    except ValueError as exc:
        try:
            _call(m, reps[0], reps[1], inputs)
        except ValueError:
            return
        raise _fail(m, "pairwise", f"pairwise refused{where} ({exc}) but the single-pair call gives a value") from None
    if not isinstance(out, torch.Tensor):
        raise _fail(m, "pairwise", f"expected a torch.Tensor, got {type(out).__name__}")
    size = len(reps)
    if tuple(out.shape) != (size, size):
        raise _fail(m, "pairwise", f"expected shape ({size}, {size}), got {tuple(out.shape)}")
    if out.dtype != torch.float64:
        raise _fail(m, "pairwise", f"expected dtype float64, got {out.dtype}")
    if not bool(torch.isfinite(out).all()):
        raise _fail(m, "pairwise", f"non-finite entries:\n{out}")
    loop = torch.tensor([[_call(m, x, y, inputs) for y in reps] for x in reps], dtype=torch.float64)
    diff = (out.cpu() - loop).abs()
    worst = float(diff.max())
    if worst > atol:
        i, j = divmod(int(diff.argmax()), size)
        raise _fail(
            m,
            "pairwise",
            f"pairwise[{i}, {j}] = {float(out[i, j])!r} but metric(reps[{i}], reps[{j}]) = {float(loop[i, j])!r}"
            f"{where}",
        )


def _activation_edge_cases(seed: int) -> dict[str, tuple[Any, Any, Any]]:
    import torch

    (a, b), inputs = make_activations(seed, n=40, widths=(6, 5), input_dim=7)
    n = a.shape[0]
    g = _generator(seed, "degenerate")
    constant_col = a.clone()
    constant_col[:, 0] = 2.5
    duplicated = a.clone()
    duplicated[n // 2 :] = a[: n - n // 2]
    wide, wide_inputs = make_activations(seed, n=12, widths=(30, 25), input_dim=40)
    few, few_inputs = make_activations(seed, n=5, widths=(3, 3), input_dim=4)
    rank_one = torch.randn(n, 1, generator=g, dtype=torch.float64) @ torch.randn(1, 6, generator=g, dtype=torch.float64)
    return {
        "constant representation": (torch.full_like(a, 3.7), b, inputs),
        "both constant": (torch.full_like(a, 3.7), torch.full_like(b, -1.0), inputs),
        "zero representation": (torch.zeros_like(a), b, inputs),
        "constant column": (constant_col, b, inputs),
        "single unit": (a[:, :1], b[:, :1], inputs),
        "rank one": (rank_one, b, inputs),
        "tiny scale": (a * 1e-12, b, inputs),
        "huge scale": (a * 1e12, b * 1e-3, inputs),
        "duplicated inputs": (duplicated, b, inputs),
        "wide (d > n)": (wide[0], wide[1], wide_inputs),
        "few inputs (n = 5)": (few[0], few[1], few_inputs),
        "float32": (a.float(), b.float(), inputs.float()),
        "zero inputs": (a, b, torch.zeros_like(inputs)),
    }


def _weight_edge_cases(seed: int) -> dict[str, tuple[Any, Any, Any]]:
    import torch

    net = make_network(seed, (16, 12, 10, 3))
    other = make_network(seed + 1, (16, 9, 3))
    return {
        "zero weights": ([torch.zeros_like(w) for w in net], other, None),
        "single layer": (net[:1], other[:1], None),
        "one hidden unit": (make_network(seed, (16, 1, 3)), other, None),
        "float32": ([w.float() for w in net], [w.float() for w in other], None),
        "huge scale": ([w * 1e8 for w in net], other, None),
    }


def check_edge_cases(metric: Any, seed: int = 0, atol: float = 1e-6) -> None:
    """Degenerate inputs give finite in-range values or a clear ``ValueError``, never NaN."""
    m = _instance(metric)
    cases = _weight_edge_cases(seed) if m.kind == "weight" else _activation_edge_cases(seed)
    lo, hi = m.value_range
    tol = _tol(m, max(atol, 1e-5))
    for label, (a, b, inputs) in cases.items():
        for how in ("call", "pairwise"):
            try:
                if how == "call":
                    values = [_call(m, a, b, inputs)]
                else:
                    values = [float(v) for v in _pairwise(m, [a, b], inputs).flatten()]
            except ValueError as exc:  # a clear refusal is fine
                if not str(exc).strip():
                    raise _fail(m, "edge_cases", f"{label} ({how}): ValueError without a message") from exc
                continue
            except Exception as exc:
                raise _fail(m, "edge_cases", f"{label} ({how}): raised {type(exc).__name__}: {exc}") from exc
            for value in values:
                if not (math.isfinite(value) and lo - tol <= value <= hi + tol):
                    raise _fail(
                        m, "edge_cases", f"{label} ({how}): value {value!r} is not finite and in {m.value_range}"
                    )


def _probe_permutation_cases(seed: int) -> dict[str, tuple[Any, Any, Any]]:
    import torch

    (a, b), inputs = make_activations(seed, n=48, widths=(7, 6), input_dim=9)
    # a quarter of the inputs repeated: exact ties in distances and at the k-th neighbour
    dup = torch.cat([torch.arange(36), torch.arange(12)])
    # few distinct values per unit: many tied distances and tied neighbours
    coarse = torch.round(a * 2) / 2
    return {
        "distinct inputs": (a, b, inputs),
        "duplicated inputs": (a[dup], b[dup], inputs[dup]),
        "coarse (tied) values": (coarse, b, inputs),
        "constant representation": (torch.full_like(a, 3.7), b, inputs),
    }


def check_probe_permutation(metric: Any, seed: int = 0, atol: float = 1e-6) -> None:
    """The value is a function of the set of probe inputs, not of their order.

    The same random permutation is applied to the rows of both
    representations (and of the probe inputs); ties must not be broken by
    position.  A case that the metric refuses with a ``ValueError`` must be
    refused in every order.  Weight metrics see no probe inputs and pass.
    """
    import torch

    m = _instance(metric)
    if m.kind != "activation":
        return
    g = _generator(seed, "probe-permutation")
    tol = _tol(m, atol)
    for label, (a, b, inputs) in _probe_permutation_cases(seed).items():
        try:
            base: float | None = _call(m, a, b, inputs)
        except ValueError:
            base = None
        for _ in range(3):
            p = torch.randperm(a.shape[0], generator=g)
            try:
                value: float | None = _call(m, a[p], b[p], inputs[p])
            except ValueError as exc:
                if base is not None:
                    raise _fail(m, "probe_permutation", f"{label}: reordering the probe inputs raised {exc}") from exc
                continue
            if base is None:
                raise _fail(m, "probe_permutation", f"{label}: refused in one order but gives {value!r} in another")
            if not abs(value - base) <= tol:
                raise _fail(
                    m,
                    "probe_permutation",
                    f"{label}: reordering the probe inputs changes {base!r} to {value!r} "
                    "(ties broken by position, or a position-dependent batch or seed?)",
                )


_CHECK_FUNCTIONS: dict[str, Callable[..., None]] = {
    "declarations": lambda m, seed, atol: check_declarations(m),
    "identity": lambda m, seed, atol: check_identity(m, seed, atol),
    "range": lambda m, seed, atol: check_range(m, seed, atol),
    "symmetry": lambda m, seed, atol: check_symmetry(m, seed, atol),
    "invariances": lambda m, seed, atol: check_invariances(m, seed, atol),
    "pairwise": lambda m, seed, atol: check_pairwise(m, seed, max(atol, 1e-5)),
    "edge_cases": lambda m, seed, atol: check_edge_cases(m, seed, atol),
    "probe_permutation": lambda m, seed, atol: check_probe_permutation(m, seed, atol),
}


def run_check(metric: Any, check: str, seed: int = 0, atol: float = 1e-6) -> None:
    """Run one named check (one of :data:`CHECKS`); raises :class:`ConformanceError` on failure."""
    if check not in _CHECK_FUNCTIONS:
        raise ValueError(f"unknown check {check!r}; expected one of {list(CHECKS)}")
    _CHECK_FUNCTIONS[check](_instance(metric), seed, atol)


def check_metric(
    metric: Any, *, checks: Sequence[str] = CHECKS, skip: Sequence[str] = (), seed: int = 0, atol: float = 1e-6
) -> list[str]:
    """Run the conformance checks on a metric class or instance.

    Returns the names of the checks that ran; raises :class:`ConformanceError`
    listing every failed check.  ``skip`` leaves checks out (say why in your
    test), ``atol`` is the absolute tolerance (scaled by the value range's
    width when that exceeds 1; ``pairwise`` uses at least 1e-5).
    """
    m = _instance(metric)
    unknown = (set(checks) | set(skip)) - set(CHECKS)
    if unknown:
        raise ValueError(f"unknown checks {sorted(unknown)}; expected some of {list(CHECKS)}")
    ran, failures = [], []
    for check in checks:
        if check in skip:
            continue
        ran.append(check)
        try:
            run_check(m, check, seed, atol)
        except ConformanceError as exc:
            failures.append(str(exc))
        except Exception as exc:  # a crash is a failure of that check, reported with the rest
            failures.append(f"metric {_label(m)!r} crashed in {check!r}: {type(exc).__name__}: {exc}")
    if failures:
        raise ConformanceError("\n".join(failures))
    return ran


if pytest is not None:

    @pytest.fixture
    def simbench_check_metric() -> Callable[..., list[str]]:
        """The conformance kit's :func:`check_metric`, as a fixture: ``simbench_check_metric(MyMetric())``."""
        return check_metric


# --------------------------------------------------------------------------
# The benchmark kit: one shared fake store, and check_benchmark
# --------------------------------------------------------------------------

_FAKE_CLASSES: dict[str, type] = {}


def fake_model_class() -> type:
    """A small readable MLP (``simbench.ReadableModel``): layers ``l1``, ``l2``, ``output``; ``default_layer = "l2"``."""
    if "mlp" in _FAKE_CLASSES:
        return _FAKE_CLASSES["mlp"]
    import torch
    from torch import nn

    class FakeMLP(nn.Module):
        readable_layers = ("l1", "l2", "output")
        default_layer = "l2"

        def __init__(self, d_in: int, hidden: int, n_out: int, seed: int) -> None:
            super().__init__()
            g = _generator(seed, "toy-model")
            self.fc1, self.fc2, self.head = nn.Linear(d_in, hidden), nn.Linear(hidden, hidden), nn.Linear(hidden, n_out)
            with torch.no_grad():
                for lin in (self.fc1, self.fc2, self.head):
                    lin.weight.copy_(torch.randn(lin.weight.shape, generator=g) / math.sqrt(lin.weight.shape[1]))
                    lin.bias.copy_(0.1 * torch.randn(lin.bias.shape, generator=g))

        def read(self, x: torch.Tensor, layers: Sequence[str]) -> dict[str, torch.Tensor]:
            h1 = torch.relu(self.fc1(x.flatten(1)))
            h2 = torch.tanh(self.fc2(h1))
            acts = {"l1": h1, "l2": h2, "output": self.head(h2)}
            return {name: acts[name].flatten(1) for name in layers}

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.read(x, ["output"])["output"]

        def dense_weights(self) -> list[torch.Tensor]:
            return [self.fc1.weight.t(), self.fc2.weight.t(), self.head.weight.t()]

    _FAKE_CLASSES["mlp"] = FakeMLP
    return FakeMLP


class FakeStore(StoreView):
    """A small synthetic :class:`simbench.StoreView` whose matrices come from the real metric plugins.

    Default: six readable MLPs (factors ``arch`` (two widths), ``seed``,
    ``epoch``) plus two slightly perturbed copies (factors ``original``,
    ``manipulated``, as a model perturbation adds them) on a 3-class problem
    with a planted rule, probe sets
    ``clean`` and ``noise/0.5``, the suite metrics ``linear_cka``,
    ``procrustes`` and ``wcka`` (a weight metric); similarity matrices are
    computed by those plugins, agreement and accuracy from the models'
    outputs by the data's task plugin (``DataSplits.task``, resolved in the
    registry as the runner resolves it).  Pass ``models``/``specs``/
    ``probe_sets``/``data`` to serve your own, ``metrics`` (label ->
    configured metric) for other suite metrics,
    ``metric_classes`` for metrics that are not registered (test doubles).

    :func:`run_benchmark` drives a benchmark through it as the runner does:
    ``requests``, then the declared matrices, then ``evaluate``.

    It is the runner's own store, not a second implementation: the view is
    :class:`simbench.view.StoreView` over a :class:`simbench.worker.Worker`
    whose cache is in memory only, its representations and sources are the
    worker's, and every matrix is measured by :func:`simbench.cells.measure`
    (copies, the modified-input check, :func:`~simbench.boundary.validate_matrix`)
    and the agreement by :func:`simbench.cells.task_agreement`.
    """

    def __init__(self, models: Any = None, specs: Any = None, probe_sets: Any = None, data: Any = None,
                 metrics: Any = None, metric_classes: Sequence[type] = (), meta: Any = None, seed: int = 0,
                 registry: Any = None, task: str = "classification") -> None:
        import torch

        from .types import DataSplits, ModelSpec, ProbeSet, Split

        self._registry = registry
        self._metric_classes = {c.name: c for c in metric_classes}
        g = _generator(seed, "fake-store")
        if data is None and task not in ("classification", "regression"):  # what the synthetic data can be
            raise ValueError(f"task must be 'classification' or 'regression', not {task!r} (pass data= for another)")
        if data is None:
            x = torch.randn(96, 12, generator=g)
            w = torch.randn(12, 3, generator=g)
            if task == "classification":
                y, num_classes, planted = (x @ w).argmax(1), 3, {}
            else:  # three fractions that sum to one, a smooth function of the inputs (vote-fraction-like)
                y, num_classes, planted = torch.softmax(x @ w, 1), 0, {"targets": ["t0", "t1", "t2"]}
            data = DataSplits(Split(x[:48], y[:48]), Split(x[48:72], y[48:72]), Split(x[72:], y[72:]),
                              task=task, num_classes=num_classes, meta={**planted, **dict(meta or {})})
        elif meta is not None:
            data = dataclasses.replace(data, meta={**dict(data.meta), **dict(meta)})
        self.data = data
        if models is None:
            mlp = fake_model_class()
            n_out = max(1, data.num_classes) if data.task == "classification" else int(data.test.y[0].numel())
            models, specs = {}, []
            for i in range(6):
                arch, hidden = ("narrow", 8) if i % 2 else ("wide", 16)
                mid = f"m{i}"
                models[mid] = mlp(int(data.test.x[0].numel()), hidden, n_out, seed * 100 + i).eval()
                specs.append(ModelSpec(mid, {"arch": arch, "seed": i // 2, "epoch": i % 3}))
            for i in (0, 1):  # two perturbed copies, as a model perturbation adds them (factors name the original)
                base, mid = specs[i], f"m{i}~nudged"
                models[mid] = mlp(int(data.test.x[0].numel()), 16 if i % 2 == 0 else 8, n_out, seed * 100 + i).eval()
                with torch.no_grad():
                    for param in models[mid].parameters():
                        param.add_(0.05 * torch.randn(param.shape, generator=g))
                specs.append(ModelSpec(mid, {**base.factors, "original": base.id, "manipulated": "nudged"}))
        self.models_ = dict(models)  # private: a benchmark never reads models
        specs = list(specs) if specs is not None else [ModelSpec(k, {"seed": i}) for i, k in enumerate(models)]
        if probe_sets is None:
            clean = ProbeSet("clean", data.test.x.clone(), data.test.y.clone())
            noisy = ProbeSet("noise/0.5", clean.x + 0.5 * torch.randn(clean.x.shape, generator=g), clean.y.clone(),
                             {"sigma": 0.5})
            probe_sets = [clean, noisy]
        if metrics is None:
            metrics = {name: self._configure("metric", name, {}) for name in ("linear_cka", "procrustes", "wcka")}
        super().__init__(_memory_worker(self._registry_or_default(), data, self.models_, specs, probe_sets,
                                        dict(metrics), seed))
        self.benchmark = ""  # the label whose declared matrices matrix() reads
        #: the data's task plugin (``DataSplits.task``), resolved as the runner resolves it
        self.task = self._runner.task
        self._compute_suite_matrices()

    @classmethod
    def from_plugins(cls, dataset: tuple[str, dict[str, Any]], zoo: tuple[str, dict[str, Any]],
                     perturbations: Sequence[tuple[str, dict[str, Any]]] = (), probes: int = 0, seed: int = 0,
                     metrics: Any = None, registry: Any = None) -> FakeStore:
        """A store over a real, small run: the registered ``dataset`` and ``zoo`` (each ``(name, params)``)
        loaded and trained here, the clean probe set (the first ``probes`` test inputs; 0 = all) and the
        probe sets of the input ``perturbations``; for benchmarks that need a study's own data and models."""
        from .registry import build_registry
        from .types import PerturbContext, ProbeSet, RunContext

        registry = registry if registry is not None else build_registry()
        data = _configured(registry, "dataset", *dataset).load(RunContext(seed=seed))
        family = _configured(registry, "zoo", *zoo)
        models = dict(family.build(data, RunContext(seed=seed)))
        specs = [s for s in family.specs() if s.id in models]
        n = probes or len(data.test)
        clean = ProbeSet("clean", data.test.x[:n].clone(), data.test.y[:n].clone())
        probe_sets = [clean]
        for name, params in perturbations:
            pert = _configured(registry, "perturbation", name, params)
            probe_sets += pert.probe_sets(clean, PerturbContext(seed=seed, models=models, specs=specs, data=data))
        return cls(models, specs, probe_sets, data, metrics=metrics, seed=seed, registry=registry)

    def _registry_or_default(self) -> Any:
        if self._registry is None:
            from .registry import build_registry

            self._registry = build_registry()
        return self._registry

    def _configure(self, kind: str, name: str, params: Any) -> Any:
        if kind == "metric" and name in self._metric_classes:
            return self._metric_classes[name](**dict(params))
        if self._registry is None:
            from .registry import build_registry

            self._registry = build_registry()
        return _configured(self._registry, kind, name, params)

    def _compute_suite_matrices(self) -> None:
        """Every agreement and suite-metric cell, through the cells the runner's tasks compute with."""
        import torch

        from .cells import measure, task_agreement
        from .types import WEIGHTS_PROBE_SET

        worker, state = self._runner, self._runner.state
        ids = [s.id for s in self.specs]
        for name in self.probe_sets:
            outputs = torch.stack(worker.representations(name, None)[1])
            state.agreements[name], state.accuracies[name] = task_agreement(
                self.task, outputs, state.probe_sets[name].y, len(ids))
        for label, metric in self.metrics.items():
            wheres = [WEIGHTS_PROBE_SET] if metric.kind == "weight" else self.probe_sets
            for where in wheres:
                try:
                    if metric.kind == "weight":
                        reps = [[w.detach() for w in state.models[i].dense_weights()] for i in ids]
                    else:
                        reps = worker.representations(where, None)[0]
                    kwargs = {"inputs": worker._inputs(where)} if metric.needs_inputs and metric.kind != "weight" else {}
                    state.similarities[(label, where)] = measure(metric, reps, kwargs, ids, what=f"{label}@{where}").matrix
                except Exception as exc:  # noqa: BLE001 - a failed cell, as in a run
                    state.failures[(label, where)] = f"{type(exc).__name__}: {exc}"

    # -- declared matrices ------------------------------------------------------------

    def compute_requests(self, label: str, requests: Sequence[Any]) -> None:
        """Compute ``label``'s declared matrices with the real metrics (failures stored as one-line errors)."""
        from .cells import measure
        from .types import MatrixRequest, Source

        worker, state = self._runner, self._runner.state
        seen: set[str] = set()
        for request in requests:
            assert isinstance(request, MatrixRequest), f"requests() yielded {type(request).__name__}"
            assert request.key and request.key not in seen, f"request key {request.key!r} empty or repeated"
            assert request.sources and all(isinstance(s, Source) for s in request.sources), \
                f"request {request.key!r}: sources must be a non-empty tuple of simbench.Source"
            seen.add(request.key)
            params = dict(request.metric_params)
            metric = (self.metrics[request.metric] if request.metric in self.metrics and not params
                      else self._configure("metric", request.metric, params))
            cell = (label, request.key)
            state.matrix_metrics[cell] = metric
            try:
                reps, kwargs = worker._request_inputs(list(request.sources), metric)
                labels = [f"{i}:{s.model}@{s.layer}" for i, s in enumerate(request.sources)]
                measured = measure(metric, reps, kwargs, labels, what=f"{label}/{request.key}",
                                   timing_repeats=request.timing_repeats)
                state.matrices[cell] = measured.matrix
                if measured.call_seconds is not None:
                    state.matrix_seconds[cell] = measured.call_seconds
            except Exception as exc:  # noqa: BLE001 - a failed cell, as in a run
                state.matrix_failures[cell] = one_line(exc)


def _memory_worker(registry: Any, data: Any, models: Any, specs: Sequence[Any], probe_sets: Sequence[Any],
                   metrics: dict[str, Any], seed: int) -> Any:
    """A :class:`simbench.worker.Worker` over the given data, models and probe sets, with an in-memory cache
    (nothing is written anywhere): the store :class:`FakeStore` reads through the runner's own view."""
    from pathlib import Path

    from .cache import TensorCache
    from .cells import resolve_task
    from .suite import PluginUse, Suite
    from .worker import Worker

    uses = tuple(PluginUse("metric", getattr(type(obj), "name", label), label, {}, obj, f"metrics[{i}]")
                 for i, (label, obj) in enumerate(metrics.items()))
    suite = Suite(Path("fake"), "", "fake", "", PluginUse("dataset", "fake", "fake", {}, None, "data"),
                  PluginUse("zoo", "fake", "fake", {}, None, "zoo"), (), uses, (),
                  {"layer": "default", "n": 0, "split": "test"},
                  {"seed": seed, "cell_timeout": 0, "threads": 1, "isolation": "thread"})
    worker = Worker(suite, registry, TensorCache(Path("fake-store-cache"), enabled=False))
    worker.task = resolve_task(registry, data, "fake")
    state = worker.state
    state.data, state.specs, state.models = data, list(specs), dict(models)
    worker.restorer.keep("the data", data)
    for ps in probe_sets:
        state.probe_sets[ps.name] = ps
        state.probe_keys[ps.name] = ps.name
        worker.restorer.keep(ps.name, ps)
    return worker


def _configured(registry: Any, kind: str, name: str, params: Any) -> Any:
    """The registered ``kind`` plugin ``name`` configured with ``params`` (``ValueError`` naming a bad one)."""
    obj, key, message = registry.configure(kind, name, dict(params))
    if obj is None:
        raise ValueError(f"{kind} {name!r}: parameter {key!r}: {message}")
    return obj


def run_benchmark(benchmark: Any, store: FakeStore | None = None, label: str | None = None) -> list[Any]:
    """Drive ``benchmark`` through ``store`` (default: a new :class:`FakeStore`) as the runner does."""
    store = store if store is not None else FakeStore()
    store.benchmark = label or benchmark.name
    store.compute_requests(store.benchmark, list(benchmark.requests(store)))
    return list(benchmark.evaluate(store))


_TEXT_FIELDS = ("benchmark", "statistic", "metric", "probe_set", "group", "model_a", "model_b")


def _numeric_text(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return bool(text.strip())


def example_store(cls: type) -> FakeStore:
    """The store a benchmark class is checked on: its ``check_example["store"]`` -- keyword arguments of
    :class:`FakeStore` (e.g. ``{"task": "regression"}``), or of :meth:`FakeStore.from_plugins` when they name
    a ``zoo`` -- with ``check_example["meta"]`` added to the data's meta; the default :class:`FakeStore`
    without one."""
    example = dict(getattr(cls, "check_example", None) or {})
    spec = dict(example.get("store") or {})
    if "zoo" in spec:
        store = FakeStore.from_plugins(**spec)
        if example.get("meta"):
            store.data = dataclasses.replace(store.data, meta={**dict(store.data.meta), **dict(example["meta"])})
        return store
    return FakeStore(meta=example.get("meta"), **spec)


def check_benchmark(cls: type, params: Any = None, store: FakeStore | None = None) -> list[Any]:
    """Run a benchmark class on a fake store and check its records; return them.

    ``params`` configures it (default: the class's ``check_example["params"]``
    if it declares one, else its defaults); ``store`` (default:
    :func:`example_store`, the class's ``check_example["store"]`` and
    ``["meta"]``, else the shared :class:`FakeStore`).
    Raises :class:`ConformanceError` listing every problem: records that are
    not :class:`simbench.Record`, empty statistic names, non-finite values in
    ``ok`` rows, a number stored in a text field (``model_b="3.0"``: use
    ``coords``), non-numeric coordinates, failed rows without an error, or
    ``tables``/``summary`` that do not render from the stored rows.
    """
    import pandas as pd

    from .params import configure
    from .results import normalise_frame, record_row
    from .types import Record, Table

    example = dict(getattr(cls, "check_example", None) or {})
    given = dict(params if params is not None else example.get("params", {}))
    bench, key, message = configure(cls, given)
    if bench is None:
        raise ConformanceError(f"benchmark {cls.__name__}: parameter {key!r}: {message}")
    if store is None:
        store = example_store(cls)
    records = run_benchmark(bench, store)
    problems: list[str] = []
    if not records:
        problems.append("evaluate returned no records")
    for i, r in enumerate(records):
        where = f"record {i} ({getattr(r, 'statistic', '?')!r})"
        if not isinstance(r, Record):
            problems.append(f"{where}: is {type(r).__name__}, not simbench.Record")
            continue
        if not isinstance(r.statistic, str) or not r.statistic:
            problems.append(f"{where}: empty statistic name")
        if r.status not in ("ok", "failed"):
            problems.append(f"{where}: status {r.status!r}")
        if r.status == "ok" and not (isinstance(r.value, (int, float)) and math.isfinite(float(r.value))):
            problems.append(f"{where}: ok row with non-finite value {r.value!r}")
        if r.status == "failed" and not r.error:
            problems.append(f"{where}: failed row without an error")
        for name in _TEXT_FIELDS:
            text = getattr(r, name)
            if not isinstance(text, str):
                problems.append(f"{where}: {name} = {text!r} is not a string")
            elif _numeric_text(text):
                problems.append(f"{where}: {name} = {text!r} holds a number; put it in coords")
        for name, value in dict(r.coords or {}).items():
            if not isinstance(name, str) or not name.isidentifier():
                problems.append(f"{where}: coordinate name {name!r} is not an identifier")
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                problems.append(f"{where}: coordinate {name!r} = {value!r} is not a number")
    if not problems:
        frame = normalise_frame(pd.DataFrame([record_row(store.suite_name, "benchmark", r) for r in records]))
        frame["benchmark"] = frame["benchmark"].where(frame["benchmark"] != "", bench.name)
        try:
            tables = cls.tables(frame)
            if not isinstance(tables, list) or not all(isinstance(t, Table) for t in tables):
                problems.append("tables() must return a list of simbench.Table")
            else:
                for t in tables:
                    t.frame.to_string()
            short = cls.summary(frame)
            if short is not None:
                short.to_string()
        except Exception as exc:  # noqa: BLE001 - reported with the rest
            problems.append(f"tables()/summary() failed on the stored rows: {type(exc).__name__}: {exc}")
    if problems:
        shown = problems[:20] + ([f"... and {len(problems) - 20} more"] if len(problems) > 20 else [])
        raise ConformanceError(f"benchmark {cls.__name__}:\n" + "\n".join(shown))
    return records
