"""Computation behind the built-in metrics (imports torch; loaded lazily).

Each metric has a single-pair function ``pair_<key>(metric, a, b, ...)``
written directly from its definition, and an all-pairs function
``pairwise_<key>(metric, reps, ...)`` that prepares every model once and
gets all pairs from the engine in :mod:`._linalg`.  Both share the
per-representation preparation, so ``pairwise`` matching the pair loop tests
the engine (tiling, padding, block bookkeeping), not a copy of itself.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from simbench.errors import MeasurementFailed

from . import _linalg as la

Tensor = torch.Tensor


def pair(metric: Any, a: Any, b: Any, **kwargs: Any) -> float:
    la.check_kwargs(metric.name, kwargs)
    fn = IMPLEMENTATIONS[metric.impl_key][0]
    return float(fn(metric, a, b, inputs=kwargs.get("inputs")))


def pairwise(metric: Any, reps: Sequence[Any], **kwargs: Any) -> Tensor:
    la.check_kwargs(metric.name, kwargs)
    fn = IMPLEMENTATIONS[metric.impl_key][1]
    out = fn(metric, list(reps), inputs=kwargs.get("inputs"))
    return out.to(device="cpu", dtype=torch.float64)


def _cka_value(hxy: Tensor, hxx: Tensor, hyy: Tensor) -> float:
    """``hxy / sqrt(hxx hyy)`` clipped to [0, 1]; 0 when either self term is not positive."""
    hxx_, hyy_ = max(float(hxx), 0.0), max(float(hyy), 0.0)
    if hxx_ <= 0 or hyy_ <= 0:
        return 0.0
    return min(max(float(hxy) / math.sqrt(hxx_ * hyy_), 0.0), 1.0)


# --------------------------------------------------------------------------
# Linear CKA (Kornblith et al. 2019)
# --------------------------------------------------------------------------


def _linear_features(x: Tensor) -> Tensor:
    return la.compress(la.center(x))


def pair_linear_cka(m: Any, a: Any, b: Any, inputs: Any = None) -> float:
    (x, y), _ = la.prepare_activations([a, b])
    fx, fy = _linear_features(x), _linear_features(y)
    return _cka_value(la.frob2(fy.T @ fx), la.frob2(fx.T @ fx), la.frob2(fy.T @ fy))


def pairwise_linear_cka(m: Any, reps: list[Any], inputs: Any = None) -> Tensor:
    xs, _ = la.prepare_activations(reps)
    feats = [_linear_features(x) for x in xs]
    return la.normalize_kernel_matrix(la.frob2_auto(feats, m.max_memory_mb))


# --------------------------------------------------------------------------
# Unbiased linear CKA (Song et al. 2012 HSIC estimator) and minibatch CKA
# --------------------------------------------------------------------------


class UndefinedSimilarity(MeasurementFailed, ValueError):
    """The metric has no value for these representations (0/0), e.g. a degenerate representation.

    A :class:`~simbench.errors.MeasurementFailed`, so the runner records the
    cell as failed with this message, and a ``ValueError``, so callers that
    treat bad inputs as ``ValueError`` (the conformance kit) see a clear refusal.
    """


def _unbiased_terms(x: Tensor) -> tuple[Tensor, Tensor]:
    """Compressed centred features and squared row norms (float64)."""
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


def _unbiased_cka_pairwise(name: str, reps: list[Any], max_memory_mb: int) -> Tensor:
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


def _unbiased_cka_pair(name: str, a: Any, b: Any) -> float:
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
    return _cka_value(hxy, hxx, hyy)


def pair_unbiased_cka(m: Any, a: Any, b: Any, inputs: Any = None) -> float:
    return _unbiased_cka_pair("unbiased_cka", a, b)


def pairwise_unbiased_cka(m: Any, reps: list[Any], inputs: Any = None) -> Tensor:
    return _unbiased_cka_pairwise("unbiased_cka", reps, m.max_memory_mb)


# Minibatch CKA sums HSIC1 over the batches of one random partition of the
# probe inputs, so its value depends on which input sits in which row.
# HSIC1 is a U-statistic of order 4 (Song et al. 2012): over uniformly random
# batches its expectation is HSIC1 of the whole probe set, so the expectation
# of every batch sum is (#batches) x HSIC1(K, L), and the ratio of the expected
# sums -- the order-free minibatch CKA -- is unbiased CKA of the full set.


def pair_minibatch_cka(m: Any, a: Any, b: Any, inputs: Any = None) -> float:
    return _unbiased_cka_pair("minibatch_cka", a, b)


def pairwise_minibatch_cka(m: Any, reps: list[Any], inputs: Any = None) -> Tensor:
    return _unbiased_cka_pairwise("minibatch_cka", reps, m.max_memory_mb)


# --------------------------------------------------------------------------
# RBF CKA
# --------------------------------------------------------------------------


def _median(v: Tensor) -> Tensor:
    """Median with the two middle values averaged for even counts (as numpy)."""
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
        self.xc = la.center(x).to(torch.float64)
        self.sq = self.xc.square().sum(dim=1)
        n = self.xc.shape[0]
        self.n = n
        dist2 = self._dist2(0, n, 0)
        dist = dist2[upper_mask(n, x.device) if upper is None else upper].sqrt_()
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
        d2 = self.sq[r0:r1, None] + self.sq[None, c0:] - 2.0 * (self.xc[r0:r1] @ self.xc[c0:].T)
        d2 = d2.clamp_min_(0)
        rows = torch.arange(r0, r1, device=d2.device)
        on_diag = rows >= c0
        d2[rows[on_diag] - r0, rows[on_diag] - c0] = 0  # a point's distance to itself, exactly
        return d2

    def block(self, r0: int, r1: int, c0: int, dtype: torch.dtype) -> Tensor:
        """Rows ``r0:r1``, columns ``c0:n`` of the centred kernel."""
        if self.zero:
            return torch.zeros(r1 - r0, self.n - c0, dtype=dtype, device=self.xc.device)
        k = torch.exp(self._dist2(r0, r1, c0).mul_(-self.gamma))
        k -= self.colmean[None, c0:]
        k -= self.colmean[r0:r1, None]
        k += self.grand
        return k.to(dtype)


def rbf_centered_kernel(x: Tensor, factor: float) -> Tensor:
    """Doubly centred Gaussian kernel with bandwidth ``factor x`` median pairwise distance (float64)."""
    return RBFKernel(x, factor).block(0, x.shape[0], 0, torch.float64)


def pair_rbf_cka(m: Any, a: Any, b: Any, inputs: Any = None) -> float:
    (x, y), _ = la.prepare_activations([a, b])
    kx, ky = rbf_centered_kernel(x, m.bandwidth_factor), rbf_centered_kernel(y, m.bandwidth_factor)
    dot = lambda p, q: (p * q).sum(dtype=torch.float64)  # noqa: E731
    return _cka_value(dot(kx, ky), dot(kx, kx), dot(ky, ky))


def pairwise_rbf_cka(m: Any, reps: list[Any], inputs: Any = None) -> Tensor:
    """Every model's kernel statistics once, then the centred kernels streamed in row blocks (one GEMM each)."""
    xs, dtype = la.prepare_activations(reps)
    n = xs[0].shape[0]
    upper = upper_mask(n, xs[0].device)
    kernels = [RBFKernel(x, m.bandwidth_factor, upper) for x in xs]
    del upper

    def block(i: int, r0: int, r1: int) -> Tensor:
        return kernels[i].block(r0, r1, r0, dtype)

    h = la.symmetric_kernel_products(len(xs), n, block, dtype, xs[0].device, m.max_memory_mb)
    return la.normalize_kernel_matrix(h)


# --------------------------------------------------------------------------
# Deconfounded CKA (Cui et al. 2022)
# --------------------------------------------------------------------------


class _Confounder:
    """The probe inputs' centred Gram matrix K0, prepared once for every model."""

    def __init__(self, inputs: Any, n: int, dtype: torch.dtype, device: Any) -> None:
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


def pair_dcka(m: Any, a: Any, b: Any, inputs: Any = None) -> float:
    (x, y), dtype = la.prepare_activations([a, b])
    conf = _Confounder(inputs, x.shape[0], dtype, x.device)
    fx, fy = conf.features(x), conf.features(y)
    return _cka_value(la.frob2(fy.T @ fx), la.frob2(fx.T @ fx), la.frob2(fy.T @ fy))


def pairwise_dcka(m: Any, reps: list[Any], inputs: Any = None) -> Tensor:
    xs, dtype = la.prepare_activations(reps)
    conf = _Confounder(inputs, xs[0].shape[0], dtype, xs[0].device)
    feats = [conf.features(x) for x in xs]
    return la.normalize_kernel_matrix(la.frob2_auto(feats, m.max_memory_mb))


# --------------------------------------------------------------------------
# Weights CKA (seed 001, eq. 5)
# --------------------------------------------------------------------------


def chain_product(weights: Any, what: str) -> Tensor:
    """``W(1) W(2) ... W(l)``: a model's dense weights, each ``[in, out]``, input side first."""
    if isinstance(weights, Tensor):
        weights = [weights]
    ws = [la.as_tensor(w) for w in weights]
    if not ws:
        raise ValueError(f"{what}: no weight matrices")
    for k, w in enumerate(ws):
        if w.ndim != 2:
            raise ValueError(f"{what}: weight matrix {k} must be 2-D [in, out], got shape {tuple(w.shape)}")
        if not bool(torch.isfinite(w).all()):
            raise ValueError(f"{what}: weight matrix {k} contains NaN or infinite values")
    dtype = la.compute_dtype(ws)
    # wCKA is scale-invariant; exact power-of-two scaling keeps the chain and its squares finite
    ws = [la.pow2_normalize(w.to(dtype)) for w in ws]
    chain = ws[0]
    for k, w in enumerate(ws[1:], start=1):
        if w.shape[0] != chain.shape[1]:
            raise ValueError(
                f"{what}: weight matrix {k} has {w.shape[0]} inputs but the previous layer has "
                f"{chain.shape[1]} outputs (expected [in, out] matrices, input side first)"
            )
        chain = la.pow2_normalize(chain @ w)
    return chain


def _chains(reps: Sequence[Any]) -> list[Tensor]:
    chains = [chain_product(w, f"model {i}") for i, w in enumerate(reps)]
    dtype = la.compute_dtype(chains)
    d_in = chains[0].shape[0]
    for i, c in enumerate(chains):
        if c.shape[0] != d_in:
            raise ValueError(
                f"wCKA needs models with the same input size: model 0 has {d_in}, model {i} has {c.shape[0]}"
            )
    return [c.to(dtype) for c in chains]


def pair_wcka(m: Any, a: Any, b: Any, inputs: Any = None) -> float:
    wa, wb = (la.compress(c) for c in _chains([a, b]))
    return _cka_value(la.frob2(wb.T @ wa), la.frob2(wa.T @ wa), la.frob2(wb.T @ wb))


def pairwise_wcka(m: Any, reps: list[Any], inputs: Any = None) -> Tensor:
    if not reps:
        raise ValueError("no models given")
    feats = [la.compress(c) for c in _chains(reps)]
    return la.normalize_kernel_matrix(la.frob2_auto(feats, m.max_memory_mb))


# --------------------------------------------------------------------------
# Orthogonal Procrustes (Ding et al. 2021) and the angular shape metric (Williams et al. 2021)
# --------------------------------------------------------------------------


def _shape_features(x: Tensor) -> Tensor:
    """Centred, unit-Frobenius features in float64.

    The cross-covariance is formed in float64 so that ``1 - ||X^T Y||_*`` for
    a near-identical pair keeps its ~1e-16 resolution: arccos turns an error
    e near 1 into an angle sqrt(2 e), so float32 products would floor
    ``angular_shape`` at ~5e-4.
    """
    return la.compress(la.unit_frobenius(la.center(x.to(torch.float64))))


def _procrustes(nuc: Tensor, sx: Tensor, sy: Tensor) -> Tensor:
    return (sx + sy - 2.0 * nuc).clamp(0.0, 2.0)


def _angular(nuc: Tensor, sx: Tensor, sy: Tensor) -> Tensor:
    """``arccos(nuc / (|x| |y|))``; a zero-variance side gives pi/2 (0 if both are)."""
    cos = la.safe_div(nuc, torch.sqrt(sx * sy).expand_as(nuc))
    angle = torch.arccos(cos.clamp(-1.0, 1.0))
    both_zero = (sx <= 0) & (sy <= 0)
    return torch.where(both_zero, torch.zeros_like(angle), angle)


def _pair_shape(a: Any, b: Any) -> tuple[Tensor, Tensor, Tensor]:
    (x, y), _ = la.prepare_activations([a, b])
    fx, fy = _shape_features(x), _shape_features(y)
    return la.nuclear_norms(fx.T @ fy), la.frob2(fx), la.frob2(fy)


def _pairwise_shape(m: Any, reps: list[Any]) -> tuple[Tensor, Tensor, Tensor]:
    xs, _ = la.prepare_activations(reps)
    feats = [_shape_features(x) for x in xs]
    sq = torch.stack([la.frob2(f) for f in feats])
    # X^T X is PSD: its nuclear norm is its trace, ||X||_F^2 -- no SVD needed on the diagonal
    nuc = la.block_reduce(feats, lambda blocks, i, j: la.nuclear_norms(blocks), m.max_memory_mb, diagonal=sq)
    return nuc, sq[:, None], sq[None, :]


def pair_procrustes(m: Any, a: Any, b: Any, inputs: Any = None) -> float:
    return float(_procrustes(*_pair_shape(a, b)))


def pairwise_procrustes(m: Any, reps: list[Any], inputs: Any = None) -> Tensor:
    return _procrustes(*_pairwise_shape(m, reps))


def pair_angular_shape(m: Any, a: Any, b: Any, inputs: Any = None) -> float:
    return float(_angular(*_pair_shape(a, b)))


def pairwise_angular_shape(m: Any, reps: list[Any], inputs: Any = None) -> Tensor:
    return _angular(*_pairwise_shape(m, reps))


# --------------------------------------------------------------------------
# CCA family: mean CCA, SVCCA (Raghu et al. 2017), PWCCA (Morcos et al. 2018)
# --------------------------------------------------------------------------


def _mean_cca(nuc: Tensor, rx: Tensor, ry: Tensor) -> Tensor:
    """Mean canonical correlation = ||Qx^T Qy||_* / min(rank x, rank y); 0 for a zero-rank side."""
    k = torch.minimum(rx, ry).to(torch.float64)
    return la.safe_div(nuc, k.expand_as(nuc)).clamp(0.0, 1.0)


def _bases(xs: Sequence[Tensor], variance_kept: float | None) -> list[Tensor]:
    return [la.orth_basis(la.center(x), variance_kept) for x in xs]


def _pair_cca(a: Any, b: Any, variance_kept: float | None) -> float:
    (x, y), _ = la.prepare_activations([a, b])
    qx, qy = (q.to(torch.float64) for q in _bases([x, y], variance_kept))
    nuc = la.nuclear_norms(qx.T @ qy)
    return float(_mean_cca(nuc, torch.tensor(qx.shape[1]), torch.tensor(qy.shape[1])))


def _pairwise_cca(m: Any, reps: list[Any], variance_kept: float | None) -> Tensor:
    xs, _ = la.prepare_activations(reps)
    bases = _bases(xs, variance_kept)
    ranks = torch.tensor([q.shape[1] for q in bases], device=xs[0].device)
    # Q^T Q = I: the nuclear norm of a basis with itself is its rank
    nuc = la.block_reduce(
        [q.to(torch.float64) for q in bases],
        lambda blocks, i, j: la.nuclear_norms(blocks),
        m.max_memory_mb,
        diagonal=ranks.to(torch.float64),
    )
    return _mean_cca(nuc, ranks[:, None], ranks[None, :])


def pair_cca_mean(m: Any, a: Any, b: Any, inputs: Any = None) -> float:
    return _pair_cca(a, b, None)


def pairwise_cca_mean(m: Any, reps: list[Any], inputs: Any = None) -> Tensor:
    return _pairwise_cca(m, reps, None)


def pair_svcca(m: Any, a: Any, b: Any, inputs: Any = None) -> float:
    return _pair_cca(a, b, m.variance_kept)


def pairwise_svcca(m: Any, reps: list[Any], inputs: Any = None) -> Tensor:
    return _pairwise_cca(m, reps, m.variance_kept)


def _pwcca_values(blocks: Tensor, proj_x: Tensor, proj_y: Tensor, k: Tensor) -> tuple[Tensor, Tensor]:
    """PWCCA in both directions for a batch of ``Qx^T Qy`` blocks.

    ``proj_x = Qx^T Xc`` ([.., rx, dx]) expresses X's centred units in its
    basis; the canonical variates of X are ``Qx U``, so unit ``c``'s
    projection on variate ``t`` is ``(U^T proj_x)[t, c]``.  Morcos et al.
    weight each canonical correlation by the summed absolute projections of
    the units onto its variate.  Only the first ``k = min(rx, ry)`` canonical
    pairs exist.
    """
    u, s, vh = torch.linalg.svd(blocks.to(torch.float64))
    kk = min(s.shape[-1], u.shape[-1], vh.shape[-2])
    rho = s[..., :kk].clamp(0.0, 1.0)
    mask = torch.arange(kk, device=blocks.device) < k[..., None]
    wx = (u[..., :, :kk].transpose(-1, -2) @ proj_x.to(torch.float64)).abs().sum(-1) * mask
    wy = (vh[..., :kk, :] @ proj_y.to(torch.float64)).abs().sum(-1) * mask

    def weighted(w: Tensor) -> Tensor:
        return la.safe_div((w * rho).sum(-1), w.sum(-1))

    return weighted(wx).clamp(0.0, 1.0), weighted(wy).clamp(0.0, 1.0)


def pair_pwcca(m: Any, a: Any, b: Any, inputs: Any = None) -> float:
    (x, y), _ = la.prepare_activations([a, b])
    xc, yc = la.center(x), la.center(y)
    qx, qy = la.orth_basis(xc), la.orth_basis(yc)
    k = torch.tensor(min(qx.shape[1], qy.shape[1]), device=x.device)
    value, _ = _pwcca_values(qx.double().T @ qy.double(), qx.T @ xc, qy.T @ yc, k)
    return float(value)


def pairwise_pwcca(m: Any, reps: list[Any], inputs: Any = None) -> Tensor:
    xs, _ = la.prepare_activations(reps)
    centred = [la.center(x) for x in xs]
    bases = [la.orth_basis(xc) for xc in centred]
    ranks = torch.tensor([q.shape[1] for q in bases], device=xs[0].device)
    w = max(1, int(ranks.max()))
    dmax = max(x.shape[1] for x in xs)
    proj = xs[0].new_zeros(len(xs), w, dmax)  # Q_i^T X_i, zero-padded
    for i, (q, xc) in enumerate(zip(bases, centred)):
        proj[i, : q.shape[1], : xc.shape[1]] = q.T @ xc

    def reduce(blocks: Tensor, i: Tensor, j: Tensor) -> tuple[Tensor, Tensor]:
        return _pwcca_values(blocks, proj[i], proj[j], torch.minimum(ranks[i], ranks[j]))

    return la.block_reduce([q.to(torch.float64) for q in bases], reduce, m.max_memory_mb, width=w)


# --------------------------------------------------------------------------
# RSA: correlation-distance RDMs compared by Spearman (Kriegeskorte et al. 2008)
# --------------------------------------------------------------------------


#: distances closer than this are tied: equal in exact arithmetic, they differ by float64
#: rounding (~1e-15) that depends on where the rows sit; far below any real difference
RDM_TIE_TOL = 1e-11


def upper_mask(n: int, device: Any) -> Tensor:
    """Boolean mask of the strict upper triangle (row-major order, as ``triu_indices``; 1 byte per entry)."""
    return torch.ones(n, n, dtype=torch.bool, device=device).triu_(1)


def rdm_ranks(x: Tensor, upper: Tensor | None = None) -> Tensor:
    """Standardised average ranks (float64) of the RDM's upper triangle (1 - Pearson r between inputs).

    The correlations are computed in float64 and never rounded to a grid:
    ties are the values within :data:`RDM_TIE_TOL`, which absorbs rounding
    noise without merging distinct float32 distances.
    """
    z = la.row_standardize(x.to(torch.float64))
    n = z.shape[0]
    rdm = (z @ z.T)[upper_mask(n, x.device) if upper is None else upper]
    rdm = torch.sub(1.0, rdm, out=rdm)
    return la.standardize_vector(la.average_ranks(rdm, tol=RDM_TIE_TOL))


def pair_rsa(m: Any, a: Any, b: Any, inputs: Any = None) -> float:
    (x, y), _ = la.prepare_activations([a, b], min_n=3)
    return min(max(float((rdm_ranks(x) * rdm_ranks(y)).sum(dtype=torch.float64)), -1.0), 1.0)


def pairwise_rsa(m: Any, reps: list[Any], inputs: Any = None) -> Tensor:
    """Each model's ranked upper triangle built once (if all fit the cap) and one GEMM over them."""
    xs, dtype = la.prepare_activations(reps, min_n=3)
    n = xs[0].shape[0]
    upper = upper_mask(n, xs[0].device)

    def vectors(i0: int, i1: int) -> Tensor:
        out = torch.empty(i1 - i0, n * (n - 1) // 2, dtype=dtype, device=xs[0].device)
        for k, x in enumerate(xs[i0:i1]):
            out[k] = rdm_ranks(x, upper)
        return out

    # building one ranked RDM needs ~40 bytes per n^2 (see _base.memory_estimate): keep it out of the vectors' share
    reserve = 40 * n * n + sum(x.numel() * x.element_size() for x in xs)
    return la.inner_products(
        vectors, len(xs), n * (n - 1) // 2, dtype, xs[0].device, m.max_memory_mb, reserve
    ).clamp(-1, 1)


# --------------------------------------------------------------------------
# Linear regression R^2
# --------------------------------------------------------------------------


def pair_linear_regression_r2(m: Any, a: Any, b: Any, inputs: Any = None) -> float:
    """R^2 of the least-squares prediction of ``a`` (centred) from ``b`` (centred)."""
    (x, y), _ = la.prepare_activations([a, b])
    xc = la.center(x)
    qy = la.orth_basis(la.center(y))
    total = la.frob2(xc)
    if float(total) <= 0:
        return 0.0
    return min(max(float(la.frob2(qy.T @ xc) / total), 0.0), 1.0)


def pairwise_linear_regression_r2(m: Any, reps: list[Any], inputs: Any = None) -> Tensor:
    xs, _ = la.prepare_activations(reps)
    targets = [la.compress(la.center(x)) for x in xs]
    bases = _bases(xs, None)
    explained = la.frob2_features(targets, bases, m.max_memory_mb)  # [i, j] = ||X_i^T Q_j||^2
    total = torch.stack([la.frob2(t) for t in targets])[:, None]
    return la.safe_div(explained, total.expand_as(explained)).clamp(0.0, 1.0)


# --------------------------------------------------------------------------
# k-nearest-neighbour overlap (mutual k-NN, Jaccard k-NN)
# --------------------------------------------------------------------------


#: cosine similarities within this of the k-th largest are tied with it (float64 rounding is ~1e-15)
KNN_TIE_TOL = 1e-10


class Neighbours:
    """One representation's k-NN sets with ties split: a weight matrix ``W`` (n x n), built in row blocks.

    ``W[i, j]`` is the probability that j is among i's k nearest other inputs
    (cosine similarity) when ties are broken uniformly at random: 1 above the
    k-th largest similarity, ``(k - above) / tied`` for the inputs tied with
    it, 0 below; every row sums to k.  The expected overlap of two
    independently tie-broken sets is ``<W_X[i], W_Y[i]>``, so the metrics
    depend on the set of probe inputs only, never on their order.  A
    constant (or zero) representation ties every input with every other and
    scores the chance level ``k / (n - 1)`` in mutual k-NN.
    """

    def __init__(self, x: Tensor, k: int) -> None:
        n = x.shape[0]
        if k >= n:
            raise ValueError(f"k = {k} nearest neighbours need more than {k} probe inputs, got {n}")
        x64 = x.to(torch.float64)
        norms = torch.linalg.vector_norm(x64, dim=1, keepdim=True)
        self.z = torch.where(norms > 0, x64 / norms.clamp_min(torch.finfo(torch.float64).tiny), torch.zeros_like(x64))
        self.k, self.n = k, n
        self.kth = torch.empty(n, dtype=torch.float64, device=x.device)
        self.share = torch.empty(n, dtype=torch.float64, device=x.device)
        step = max(1, (1 << 22) // n)  # ~32 MB of similarities at a time
        for r0 in range(0, n, step):
            r1 = min(n, r0 + step)
            sim = self._similarities(r0, r1)
            kth = torch.topk(sim, k, dim=1).values[:, -1:]
            above = (sim > kth + KNN_TIE_TOL).sum(dim=1)
            tied = ((sim - kth).abs() <= KNN_TIE_TOL).sum(dim=1)
            self.kth[r0:r1] = kth[:, 0]
            self.share[r0:r1] = (k - above).to(torch.float64) / tied

    def _similarities(self, r0: int, r1: int) -> Tensor:
        sim = self.z[r0:r1] @ self.z.T
        rows = torch.arange(r0, r1, device=sim.device)
        sim[rows - r0, rows] = -math.inf  # an input is not its own neighbour
        return sim

    def block(self, r0: int, r1: int, dtype: torch.dtype = torch.float64) -> Tensor:
        """Rows ``r0:r1`` of ``W``."""
        sim = self._similarities(r0, r1)
        kth = self.kth[r0:r1, None]
        w = (sim > kth + KNN_TIE_TOL).to(torch.float64)
        w += ((sim - kth).abs() <= KNN_TIE_TOL) * self.share[r0:r1, None]
        return w.to(dtype)


def _knn_stat(overlap: Tensor, k: int, jaccard: bool) -> Tensor:
    """Per-input overlap -> mutual (``o / k``) or Jaccard (``o / (2k - o)``) value (mean over inputs outside)."""
    return overlap / (2 * k - overlap) if jaccard else overlap / k


def pair_knn(m: Any, a: Any, b: Any, jaccard: bool) -> float:
    (x, y), _ = la.prepare_activations([a, b])
    nx, ny = Neighbours(x, m.k), Neighbours(y, m.k)
    overlap = (nx.block(0, x.shape[0]) * ny.block(0, y.shape[0])).sum(dim=1)
    return float(_knn_stat(overlap, m.k, jaccard).mean())


def pairwise_knn(m: Any, reps: list[Any], jaccard: bool) -> Tensor:
    """Each model's thresholds once; the weight matrices streamed in row blocks, one GEMM per block.

    Mutual k-NN is bilinear in the weights (a GEMM over whole blocks);
    Jaccard maps each input's overlap first (a batched GEMM per row).
    """
    xs, dtype = la.prepare_activations(reps)
    n = xs[0].shape[0]
    nbrs = [Neighbours(x, m.k) for x in xs]

    def block(i: int, r0: int, r1: int) -> Tensor:
        return nbrs[i].block(r0, r1, dtype)

    if jaccard:
        k = m.k
        total = la.row_block_products(
            len(xs), n, block, dtype, xs[0].device, m.max_memory_mb, per_row=lambda o: _knn_stat(o, k, True)
        )
    else:
        total = la.row_block_products(len(xs), n, block, dtype, xs[0].device, m.max_memory_mb) / m.k
    return (total / n).clamp(0.0, 1.0)


def pair_mutual_knn(m: Any, a: Any, b: Any, inputs: Any = None) -> float:
    return pair_knn(m, a, b, jaccard=False)


def pairwise_mutual_knn(m: Any, reps: list[Any], inputs: Any = None) -> Tensor:
    return pairwise_knn(m, reps, jaccard=False)


def pair_jaccard_knn(m: Any, a: Any, b: Any, inputs: Any = None) -> float:
    return pair_knn(m, a, b, jaccard=True)


def pairwise_jaccard_knn(m: Any, reps: list[Any], inputs: Any = None) -> Tensor:
    return pairwise_knn(m, reps, jaccard=True)


#: ``impl_key`` -> (single-pair function, all-pairs function): every computation referenced by name,
#: so a metric's code is found by reading (and by tools), not assembled from a string at run time
IMPLEMENTATIONS = {
    "linear_cka": (pair_linear_cka, pairwise_linear_cka),
    "unbiased_cka": (pair_unbiased_cka, pairwise_unbiased_cka),
    "minibatch_cka": (pair_minibatch_cka, pairwise_minibatch_cka),
    "rbf_cka": (pair_rbf_cka, pairwise_rbf_cka),
    "dcka": (pair_dcka, pairwise_dcka),
    "wcka": (pair_wcka, pairwise_wcka),
    "procrustes": (pair_procrustes, pairwise_procrustes),
    "angular_shape": (pair_angular_shape, pairwise_angular_shape),
    "cca_mean": (pair_cca_mean, pairwise_cca_mean),
    "svcca": (pair_svcca, pairwise_svcca),
    "pwcca": (pair_pwcca, pairwise_pwcca),
    "rsa": (pair_rsa, pairwise_rsa),
    "linear_regression_r2": (pair_linear_regression_r2, pairwise_linear_regression_r2),
    "knn": (pair_knn, pairwise_knn),
    "mutual_knn": (pair_mutual_knn, pairwise_mutual_knn),
    "jaccard_knn": (pair_jaccard_knn, pairwise_jaccard_knn),
}
