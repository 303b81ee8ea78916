"""The CKA family: linear, unbiased, RBF, minibatch and deconfounded CKA.

Each class is followed by its computation: a single-pair function written
directly from the definition and an all-pairs function that prepares every
model once and gets all pairs from the engine in :mod:`._linalg`.  Both share
the per-representation preparation, so ``pairwise`` matching the pair loop
tests the engine (tiling, padding, block bookkeeping), not a copy of itself.
torch is imported inside the functions: importing this module stays light.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field

from ._base import (
    ISOMETRY,
    OVERHEAD_BYTES,
    BuiltinMetric,
    UndefinedSimilarity,
    as_matrix,
    check_kwargs,
    feature_bytes,
    stream_bytes,
)

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import Tensor


# --------------------------------------------------------------------------
# Linear CKA (Kornblith et al. 2019)
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class LinearCKA(BuiltinMetric):
    """Linear centred kernel alignment (Kornblith et al. 2019; seed 001 eq. 3).

    ``||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)`` on column-centred X, Y,
    computed in feature space.  All pairs come from one strip-tiled GEMM of
    the concatenated centred features.  A zero-variance representation gets 0.
    """

    name = "linear_cka"
    description = "Linear CKA (Kornblith et al. 2019)"
    kind = "activation"
    higher_is_more_similar = True
    symmetric = True
    value_range = (0.0, 1.0)
    invariances = ISOMETRY

    def __call__(self, a: Any, b: Any, **kwargs: Any) -> float:
        check_kwargs(self.name, kwargs)
        return float(pair_linear_cka(a, b))

    def pairwise(self, reps: Sequence[Any], **kwargs: Any) -> torch.Tensor:
        check_kwargs(self.name, kwargs)
        return as_matrix(pairwise_linear_cka(list(reps), self.max_memory_mb))


def _linear_features(x: Tensor) -> Tensor:
    from . import _linalg as la

    return la.compress(la.center(x))


def pair_linear_cka(a: Any, b: Any) -> float:
    from . import _linalg as la

    (x, y), _ = la.prepare_activations([a, b])
    fx, fy = _linear_features(x), _linear_features(y)
    return la.cka_value(la.frob2(fy.T @ fx), la.frob2(fx.T @ fx), la.frob2(fy.T @ fy))


def pairwise_linear_cka(reps: list[Any], max_memory_mb: int) -> Tensor:
    from . import _linalg as la

    xs, _ = la.prepare_activations(reps)
    feats = [_linear_features(x) for x in xs]
    return la.normalize_kernel_matrix(la.frob2_auto(feats, max_memory_mb))


# --------------------------------------------------------------------------
# Unbiased linear CKA (Song et al. 2012 HSIC estimator)
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class UnbiasedCKA(BuiltinMetric):
    """Linear CKA with the unbiased HSIC estimator of Song et al. (2012).

    Removes the positive bias of CKA at small n (independent Gaussian
    features: biased ~0.20, unbiased ~0.02 at n = 32, d = 8).  Needs n >= 4.
    A representation whose self-HSIC is zero or at rounding level (a collapsed
    model) makes the value 0/0: it raises ``MeasurementFailed`` (also a
    ``ValueError``) naming it, which the runner records as a failed cell.

    Conventions: HSIC1 is the unbiased estimator of Song et al. (2012), as in
    Kornblith et al.'s reference code (``cka(..., debiased=True)``), which
    it matches to rounding when the cross HSIC is positive.  A **negative
    cross HSIC is clipped to 0** (the reference returns the negative ratio),
    so values lie in [0, 1].  Implementations that normalise HSIC
    differently (repsim's, which issue 28 found to deviate from the paper)
    are not matched.
    """

    name = "unbiased_cka"
    description = "Linear CKA with the unbiased HSIC estimator (Song et al. 2012)"
    kind = "activation"
    higher_is_more_similar = True
    symmetric = True
    value_range = (0.0, 1.0)
    invariances = ISOMETRY

    def __call__(self, a: Any, b: Any, **kwargs: Any) -> float:
        check_kwargs(self.name, kwargs)
        return float(unbiased_cka_pair("unbiased_cka", a, b))

    def pairwise(self, reps: Sequence[Any], **kwargs: Any) -> torch.Tensor:
        check_kwargs(self.name, kwargs)
        return as_matrix(unbiased_cka_pairwise("unbiased_cka", list(reps), self.max_memory_mb))


def _unbiased_terms(x: Tensor) -> tuple[Tensor, Tensor]:
    """Compressed centred features and squared row norms (float64)."""
    import torch

    from . import _linalg as la

    xc = la.center(x)
    return la.compress(xc), xc.square().sum(dim=1, dtype=torch.float64)


def _self_hsic_scale(cross: Tensor, kk: Tensor, t: Tensor, n: int) -> Tensor:
    """The size of the terms that cancel in a self-HSIC: its rounding error is eps times this."""
    return (cross.abs() + kk * (1.0 + 2.0 / (n - 2)) + t * t / ((n - 1) * (n - 2))) / (n * (n - 3))


def _degenerate(hself: Tensor, scale: Tensor, n: int, dtype: torch.dtype) -> Tensor:
    """Self-HSIC indistinguishable from rounding noise (or exactly 0): the representation has no usable variance.

    Such an estimate is noise of either sign, and CKA of it flips between 0
    and 1, so it is reported as undefined instead.  ``16 sqrt(n) eps`` covers
    the float32 GEMM's error in the cancelling terms.
    """
    import torch

    tol = 16.0 * math.sqrt(n) * torch.finfo(dtype).eps
    return hself <= tol * scale


def _refuse_degenerate(name: str, bad: list[int], n: int) -> None:
    if bad:
        which = ", ".join(str(i) for i in bad[:10]) + (" ..." if len(bad) > 10 else "")
        raise UndefinedSimilarity(
            f"{name} is undefined for representation(s) {which}: HSIC(K, K) is zero or at rounding level "
            f"(no variance beyond rounding over the {n} probe inputs, e.g. a collapsed model), so CKA would be 0/0"
        )


def _unbiased_hsic_matrix(name: str, xs: Sequence[Tensor], max_memory_mb: int) -> tuple[Tensor, list[int]]:
    """All pairs' unbiased HSIC and the indices of degenerate representations (their pairs are undefined).

    Raises :class:`UndefinedSimilarity` when fewer than two representations are
    defined: there is no pair left to compare."""
    import torch

    from . import _linalg as la

    n = xs[0].shape[0]
    if n < 4:
        raise ValueError(f"unbiased HSIC needs at least 4 probe inputs, got {n}")
    terms = [_unbiased_terms(x) for x in xs]
    cross = la.frob2_auto([f for f, _ in terms], max_memory_mb)
    rownorms = torch.stack([k for _, k in terms])  # [M, n]
    kk = rownorms @ rownorms.T
    t = rownorms.sum(dim=1)
    h = la.unbiased_hsic(cross, kk, t[:, None], t[None, :], n)
    scale = _self_hsic_scale(cross.diagonal(), kk.diagonal(), t, n)
    bad = [int(i) for i in torch.nonzero(_degenerate(h.diagonal(), scale, n, xs[0].dtype)).flatten()]
    if len(xs) - len(bad) < 2:
        _refuse_degenerate(name, bad, n)
    return h, bad


def unbiased_cka_pairwise(name: str, reps: list[Any], max_memory_mb: int) -> Tensor:
    """All pairs of unbiased CKA; a degenerate representation's row and column are NaN."""
    from . import _linalg as la

    xs, _ = la.prepare_activations(reps)
    if xs[0].shape[0] < 4:
        raise ValueError(f"{name} needs at least 4 probe inputs (unbiased HSIC), got {xs[0].shape[0]}")
    h, bad = _unbiased_hsic_matrix(name, xs, max_memory_mb)
    out = la.normalize_kernel_matrix(h)
    if bad:
        # a degenerate representation (e.g. a collapsed model's) has no CKA with anything: its row and column
        # are NaN, and the runner records the matrix as undefined for those models only, not as failed
        out[bad, :] = float("nan")
        out[:, bad] = float("nan")
    return out


def unbiased_cka_pair(name: str, a: Any, b: Any) -> float:
    """Unbiased CKA of one pair; raises :class:`UndefinedSimilarity` for a degenerate side."""
    from . import _linalg as la

    (x, y), dtype = la.prepare_activations([a, b])
    n = x.shape[0]
    if n < 4:
        raise ValueError(f"{name} needs at least 4 probe inputs (unbiased HSIC), got {n}")
    fx, kx = _unbiased_terms(x)
    fy, ky = _unbiased_terms(y)
    tx, ty = kx.sum(), ky.sum()
    cxx, cyy = la.frob2(fx.T @ fx), la.frob2(fy.T @ fy)
    hxy = la.unbiased_hsic(la.frob2(fy.T @ fx), kx @ ky, tx, ty, n)
    hxx = la.unbiased_hsic(cxx, kx @ kx, tx, tx, n)
    hyy = la.unbiased_hsic(cyy, ky @ ky, ty, ty, n)
    bad = [
        i
        for i, (h, c, k, t) in enumerate(((hxx, cxx, kx @ kx, tx), (hyy, cyy, ky @ ky, ty)))
        if bool(_degenerate(h, _self_hsic_scale(c, k, t, n), n, dtype))
    ]
    _refuse_degenerate(name, bad, n)
    return la.cka_value(hxy, hxx, hyy)


# --------------------------------------------------------------------------
# RBF CKA
# --------------------------------------------------------------------------

#: float64 temporaries per entry of one model's streamed kernel block (squared distances, GEMM,
#: exponentials, the sqrt(2) weights), measured
RBF_BLOCK_TEMP = 52

#: bytes per n^2 of building one model's kernel statistics (measured at n = 2000)
RBF_BUILD_BYTES = 40


@dataclass(frozen=True)
class RBFCKA(BuiltinMetric):
    """CKA on Gaussian kernels (Kornblith et al. 2019).

    Bandwidth = ``bandwidth_factor`` x the median pairwise Euclidean distance
    of each representation, so the measure is scale-invariant.  All pairs:
    each model's bandwidth and kernel column means once, then the centred
    kernels' upper triangles streamed in row blocks (one GEMM per block).

    Convention: ``K_ij = exp(-||x_i - x_j||^2 / (2 sigma^2))`` with
    ``sigma = bandwidth_factor x`` the median of the **off-diagonal**
    distances (each unordered pair once; the two middle values averaged for
    an even count; the median of the non-zero distances when more than half
    coincide).  Kornblith et al.'s reference code (``gram_rbf``) instead sets
    ``sigma^2 = threshold^2 x`` the median of *all* n^2 squared distances,
    the n zeros of the diagonal included, which is slightly smaller (values
    ~1e-5 apart at n = 1000).  With the bandwidth matched, the two agree to
    rounding (tested against an independent numpy formula).
    """

    name = "rbf_cka"
    description = "RBF-kernel CKA, median-heuristic bandwidth (Kornblith et al. 2019)"
    kind = "activation"
    higher_is_more_similar = True
    symmetric = True
    value_range = (0.0, 1.0)
    invariances = ISOMETRY

    bandwidth_factor: Annotated[float, Field(gt=0)] = 1.0

    def __call__(self, a: Any, b: Any, **kwargs: Any) -> float:
        check_kwargs(self.name, kwargs)
        return float(pair_rbf_cka(a, b, self.bandwidth_factor))

    def pairwise(self, reps: Sequence[Any], **kwargs: Any) -> torch.Tensor:
        check_kwargs(self.name, kwargs)
        return as_matrix(pairwise_rbf_cka(list(reps), self.bandwidth_factor, self.max_memory_mb))

    def memory_bytes(self, n: int, d: int, m: int) -> int:
        """Peak of ``pairwise``: every model's prepared float32 copy and float64 centred features, plus
        the larger of building one model's kernel statistics (~40 bytes per ``n^2`` measured: the float64 squared
        distances, the upper-triangle mask, the distances the median is selected from, the exponentials)
        and one streamed row block (every model's block, float32, and ~52 bytes an entry of float64
        temporaries building one model's block), sized exactly as the engine sizes it.  The build is
        not bounded by ``max_memory_mb``: it is counted here, so validate refuses what would not fit."""
        cap = self.memory_limit_bytes()
        held = m * n * d * 12 + m * n * 16
        return held + max(RBF_BUILD_BYTES * n * n, stream_bytes(m, n, cap, True, RBF_BLOCK_TEMP)) + OVERHEAD_BYTES


def _median(v: Tensor) -> Tensor:
    """Median with the two middle values averaged for even counts (as numpy)."""
    import torch

    length = v.numel()
    lo = torch.kthvalue(v, (length + 1) // 2).values
    hi = torch.kthvalue(v, length // 2 + 1).values
    return (lo + hi) / 2


class RBFKernel:
    """One representation's doubly centred Gaussian kernel, produced in row blocks.

    Bandwidth ``sigma = factor x`` the median pairwise distance (the median of
    the non-zero distances if more than half the pairs coincide).  Built once
    per model: the centred features and squared norms (float64), sigma, and
    the kernel's column means, so any block of the centred kernel
    ``K - 1 mu^T - mu 1^T + mean(mu)`` can be produced on demand at the cost
    of its entries.  A representation whose rows all coincide has the zero
    kernel.
    """

    def __init__(self, x: Tensor, factor: float, upper: Tensor | None = None) -> None:
        import torch

        from . import _linalg as la

        self.xc = la.center(x).to(torch.float64)
        self.sq = self.xc.square().sum(dim=1)
        n = self.xc.shape[0]
        self.n = n
        dist2 = self._dist2(0, n, 0)
        dist = dist2[la.upper_mask(n, x.device) if upper is None else upper].sqrt_()
        med = _median(dist)
        if float(med) <= 0:  # more than half the pairs coincide (or all do)
            nonzero = dist[dist > 0]
            self.zero = nonzero.numel() == 0
            if self.zero:
                return
            med = _median(nonzero)
        self.zero = False
        del dist
        self.gamma = 1.0 / (2.0 * float(factor * med) ** 2)
        self.colmean = torch.exp(dist2.mul_(-self.gamma)).mean(dim=0)
        self.grand = self.colmean.mean()

    def _dist2(self, r0: int, r1: int, c0: int) -> Tensor:
        import torch

        d2 = self.sq[r0:r1, None] + self.sq[None, c0:] - 2.0 * (self.xc[r0:r1] @ self.xc[c0:].T)
        d2 = d2.clamp_min_(0)
        rows = torch.arange(r0, r1, device=d2.device)
        on_diag = rows >= c0
        d2[rows[on_diag] - r0, rows[on_diag] - c0] = 0  # a point's distance to itself, exactly
        return d2

    def block(self, r0: int, r1: int, c0: int, dtype: torch.dtype) -> Tensor:
        """Rows ``r0:r1``, columns ``c0:n`` of the centred kernel."""
        import torch

        if self.zero:
            return torch.zeros(r1 - r0, self.n - c0, dtype=dtype, device=self.xc.device)
        k = torch.exp(self._dist2(r0, r1, c0).mul_(-self.gamma))
        k -= self.colmean[None, c0:]
        k -= self.colmean[r0:r1, None]
        k += self.grand
        return k.to(dtype)


def rbf_centered_kernel(x: Tensor, factor: float) -> Tensor:
    """Doubly centred Gaussian kernel with bandwidth ``factor x`` median pairwise distance (float64)."""
    import torch

    return RBFKernel(x, factor).block(0, x.shape[0], 0, torch.float64)


def pair_rbf_cka(a: Any, b: Any, bandwidth_factor: float) -> float:
    import torch

    from . import _linalg as la

    (x, y), _ = la.prepare_activations([a, b])
    kx, ky = rbf_centered_kernel(x, bandwidth_factor), rbf_centered_kernel(y, bandwidth_factor)
    dot = lambda p, q: (p * q).sum(dtype=torch.float64)  # noqa: E731
    return la.cka_value(dot(kx, ky), dot(kx, kx), dot(ky, ky))


def pairwise_rbf_cka(reps: list[Any], bandwidth_factor: float, max_memory_mb: int) -> Tensor:
    """Every model's kernel statistics once, then the centred kernels streamed in row blocks (one GEMM each)."""
    from . import _linalg as la

    xs, dtype = la.prepare_activations(reps)
    n = xs[0].shape[0]
    upper = la.upper_mask(n, xs[0].device)
    kernels = [RBFKernel(x, bandwidth_factor, upper) for x in xs]
    del upper

    def block(i: int, r0: int, r1: int) -> Tensor:
        return kernels[i].block(r0, r1, r0, dtype)

    h = la.symmetric_kernel_products(len(xs), n, block, dtype, xs[0].device, max_memory_mb)
    return la.normalize_kernel_matrix(h)


# --------------------------------------------------------------------------
# Minibatch CKA (Nguyen et al. 2021)
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class MinibatchCKA(BuiltinMetric):
    """Minibatch linear CKA (Nguyen et al. 2021; used by seed 000).

    ``sum_b HSIC1(K_b, L_b) / sqrt(sum_b HSIC1(K_b, K_b) sum_b HSIC1(L_b, L_b))``
    over ``n // batch_size`` batches, averaged over the assignment of probe
    inputs to batches so that the value does not depend on their order.
    HSIC1 is a U-statistic, so each expected batch sum is (#batches) x HSIC1
    of the whole set and the value equals ``unbiased_cka``; ``batch_size``
    and ``seed`` are accepted and do not change it.  Undefined (raises
    ``MeasurementFailed``) for a representation without variance beyond rounding.
    """

    name = "minibatch_cka"
    description = "Minibatch CKA with unbiased HSIC (Nguyen et al. 2021)"
    kind = "activation"
    higher_is_more_similar = True
    symmetric = True
    value_range = (0.0, 1.0)
    invariances = ISOMETRY

    batch_size: Annotated[int, Field(ge=4)] = 256
    seed: Annotated[int, Field(ge=0)] = 0

    # Minibatch CKA sums HSIC1 over the batches of one random partition of the
    # probe inputs, so its value depends on which input sits in which row.
    # HSIC1 is a U-statistic of order 4 (Song et al. 2012): over uniformly random
    # batches its expectation is HSIC1 of the whole probe set, so the expectation
    # of every batch sum is (#batches) x HSIC1(K, L), and the ratio of the expected
    # sums -- the order-free minibatch CKA -- is unbiased CKA of the full set.

    def __call__(self, a: Any, b: Any, **kwargs: Any) -> float:
        check_kwargs(self.name, kwargs)
        return float(unbiased_cka_pair("minibatch_cka", a, b))

    def pairwise(self, reps: Sequence[Any], **kwargs: Any) -> torch.Tensor:
        check_kwargs(self.name, kwargs)
        return as_matrix(unbiased_cka_pairwise("minibatch_cka", list(reps), self.max_memory_mb))


# --------------------------------------------------------------------------
# Deconfounded CKA (Cui et al. 2022)
# --------------------------------------------------------------------------

#: width assumed for the probe inputs of dCKA in the memory estimate (784 = MNIST pixels, rounded up)
INPUT_WIDTH = 1024


@dataclass(frozen=True)
class DeconfoundedCKA(BuiltinMetric):
    """Deconfounded CKA (Cui et al. 2022; seed 001 section 2.1.3).

    Each centred linear Gram matrix K is regressed on the probe inputs'
    centred Gram matrix K0 (``K - alpha K0``, least squares), made PSD by
    dropping negative eigenvalues, and compared by CKA.  Receives the probe
    inputs (``inputs=Tensor[n, ...]``).
    """

    name = "dcka"
    description = "Deconfounded CKA: input-similarity regressed out (Cui et al. 2022)"
    kind = "activation"
    higher_is_more_similar = True
    symmetric = True
    value_range = (0.0, 1.0)
    invariances = ISOMETRY
    needs_inputs = True

    def __call__(self, a: Any, b: Any, **kwargs: Any) -> float:
        check_kwargs(self.name, kwargs)
        return float(pair_dcka(a, b, kwargs.get("inputs")))

    def pairwise(self, reps: Sequence[Any], **kwargs: Any) -> torch.Tensor:
        check_kwargs(self.name, kwargs)
        return as_matrix(pairwise_dcka(list(reps), kwargs.get("inputs"), self.max_memory_mb))

    def memory_bytes(self, n: int, d: int, m: int) -> int:
        """The QR and eigenproblem of ``[X, X0]`` with ``X0`` the probe inputs (width 1024 assumed), one model
        at a time."""
        w, feats = feature_bytes(n, d, m)
        a = n * (w + min(n, INPUT_WIDTH)) * 8
        core = (w + min(n, INPUT_WIDTH)) ** 2 * 8
        return feats + 4 * a + 3 * core + min(self.memory_limit_bytes(), 2 * feats) + OVERHEAD_BYTES


class _Confounder:
    """The probe inputs' centred Gram matrix K0, prepared once for every model."""

    def __init__(self, inputs: Any, n: int, dtype: torch.dtype, device: Any) -> None:
        from . import _linalg as la

        self.x0 = la.compress(la.center(la.prepare_inputs(inputs, n, dtype, device)))
        self.h00 = la.frob2(self.x0.T @ self.x0)  # <K0, K0>

    def features(self, x: Tensor) -> Tensor:
        """``F`` with ``F F^T`` = the PSD part of ``K - alpha K0`` (all Gram matrices centred).

        ``alpha = <K0, K> / <K0, K0>`` is the least-squares coefficient of
        vec(K) on vec(K0).  ``K - alpha K0 = A S A^T`` with ``A = [X, X0]``:
        when A has fewer columns than rows, the eigenproblem is solved in
        A's column space (``A = QR``, eigenvectors of ``R S R^T``), which is
        exact and far cheaper than an ``n x n`` eigendecomposition.
        """
        import torch

        from . import _linalg as la

        xc = la.compress(la.center(x))
        n = xc.shape[0]
        alpha = la.frob2(self.x0.T @ xc) / self.h00 if float(self.h00) > 0 else torch.zeros((), dtype=torch.float64)
        alpha = float(alpha)
        a = torch.cat([xc, self.x0], dim=1)
        signs = torch.cat(
            [
                torch.ones(xc.shape[1], dtype=torch.float64, device=x.device),
                torch.full((self.x0.shape[1],), -alpha, dtype=torch.float64, device=x.device),
            ]
        )
        if a.shape[1] < n:
            q, r = torch.linalg.qr(a)
            r64 = r.to(torch.float64)
            core = (r64 * signs) @ r64.T
            basis = q
        else:
            a64 = a.to(torch.float64)
            core = (a64 * signs) @ a64.T
            basis = None
        core = (core + core.T) / 2
        ev, vec = torch.linalg.eigh(core)
        tol = float(ev.abs().max()) * core.shape[0] * torch.finfo(x.dtype).eps if ev.numel() else 0.0
        keep = ev > tol
        f = (vec[:, keep] * ev[keep].sqrt()).to(x.dtype)
        if basis is not None:
            f = basis @ f
        # K - alpha K0 is centred, so F is up to rounding; centre exactly as HSIC does
        return la.center(f) if f.shape[1] else f.new_zeros(n, 1)


def pair_dcka(a: Any, b: Any, inputs: Any) -> float:
    from . import _linalg as la

    (x, y), dtype = la.prepare_activations([a, b])
    conf = _Confounder(inputs, x.shape[0], dtype, x.device)
    fx, fy = conf.features(x), conf.features(y)
    return la.cka_value(la.frob2(fy.T @ fx), la.frob2(fx.T @ fx), la.frob2(fy.T @ fy))


def pairwise_dcka(reps: list[Any], inputs: Any, max_memory_mb: int) -> Tensor:
    from . import _linalg as la

    xs, dtype = la.prepare_activations(reps)
    conf = _Confounder(inputs, xs[0].shape[0], dtype, xs[0].device)
    feats = [conf.features(x) for x in xs]
    return la.normalize_kernel_matrix(la.frob2_auto(feats, max_memory_mb))
