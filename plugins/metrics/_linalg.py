"""Shared linear algebra for the built-in metrics (imports torch; load lazily).

Two kinds of helpers live here:

* per-representation preparation (validation, centring, orthonormal bases,
  compression of wide representations, average ranks), used by both the
  single-pair and the all-pairs code paths so they cannot drift apart;
* the all-pairs engine: every model's prepared features are stacked side by
  side into one ``[n, M * w]`` matrix ``Z`` and every pair's cross product
  ``Z_i^T Z_j`` comes out of a few large GEMMs over *strips* of ``Z`` (only
  the upper block triangle is computed), followed by block reductions
  (squared Frobenius norms, batched nuclear norms, ...).  Tiles are sized so
  the intermediates stay under a memory cap.

Conventions: a representation is ``Tensor[n, d]`` (rows are probe inputs).
Computation happens in float32 unless an input is float64, on the inputs'
device; reductions accumulate in float64.  Results are float64.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

Tensor = torch.Tensor

#: (values for pairs (i, j)) or (values for (i, j), values for (j, i))
Reduced = Tensor | tuple[Tensor, Tensor]


# --------------------------------------------------------------------------
# Input validation
# --------------------------------------------------------------------------


def compute_dtype(tensors: Sequence[Tensor]) -> torch.dtype:
    """float64 if any input is float64, else float32 (half precision is promoted)."""
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def as_tensor(x: Any) -> Tensor:
    if isinstance(x, Tensor):
        return x
    return torch.as_tensor(x)


def check_activation(x: Any, what: str = "representation") -> Tensor:
    """A ``[n, d]`` tensor with finite values (a clear ``ValueError`` otherwise)."""
    x = as_tensor(x)
    if x.ndim != 2:
        raise ValueError(f"{what} must be a 2-D tensor [n, d] (probe inputs x units), got shape {tuple(x.shape)}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{what} is empty (shape {tuple(x.shape)})")
    if x.is_complex():
        raise ValueError(f"{what} must be real, got dtype {x.dtype}")
    if not x.is_floating_point():
        x = x.to(torch.float32)
    # the sum is finite for almost every finite input and costs a fraction of an elementwise check
    if not bool(torch.isfinite(x.sum())) and not bool(torch.isfinite(x).all()):
        raise ValueError(f"{what} contains NaN or infinite values")
    return x


def prepare_activations(reps: Sequence[Any], min_n: int = 2) -> tuple[list[Tensor], torch.dtype]:
    """Validate a list of ``[n, d]`` representations of the same probe inputs; cast to one dtype."""
    if len(reps) == 0:
        raise ValueError("no representations given")
    xs = [check_activation(r, f"representation {i}") for i, r in enumerate(reps)]
    n = xs[0].shape[0]
    for i, x in enumerate(xs):
        if x.shape[0] != n:
            raise ValueError(
                f"representations must share the probe inputs: representation 0 has {n} rows, "
                f"representation {i} has {x.shape[0]}"
            )
        if x.device != xs[0].device:
            raise ValueError(f"representations are on different devices ({xs[0].device} and {x.device})")
    if n < min_n:
        raise ValueError(f"need at least {min_n} probe inputs, got {n}")
    dtype = compute_dtype(xs)
    return [pow2_normalize(x.to(dtype)) for x in xs], dtype


def pow2_normalize(x: Tensor) -> Tensor:
    """``x`` times the power of two that brings its largest magnitude into [0.5, 1).

    Every activation metric is invariant to isotropic scaling, and a power of
    two changes no mantissa, so this is exact; it stops the squares and
    fourth powers behind CKA, HSIC and nuclear norms from overflowing (scale
    1e20) or underflowing (1e-20) in float32.  A zero matrix is returned as is.
    """
    peak = float(x.abs().max())
    if not peak > 0:
        return x
    exponent = -math.frexp(peak)[1]
    if exponent == 0:
        return x
    # a multiplication by a power of two is exact; two halves keep each factor representable in float32
    half = exponent // 2
    return x * (2.0**half) * (2.0 ** (exponent - half))


def prepare_inputs(inputs: Any, n: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """The probe inputs, flattened to ``[n, d0]``."""
    if inputs is None:
        raise ValueError("this metric needs the probe inputs: pass inputs=Tensor[n, ...]")
    x0 = as_tensor(inputs)
    if x0.ndim < 2:
        x0 = x0.reshape(-1, 1)
    x0 = check_activation(x0.reshape(x0.shape[0], -1), "inputs")
    if x0.shape[0] != n:
        raise ValueError(f"inputs have {x0.shape[0]} rows but the representations have {n}")
    return pow2_normalize(x0.to(device=device, dtype=dtype))


# --------------------------------------------------------------------------
# Per-representation preparation
# --------------------------------------------------------------------------


def center(x: Tensor) -> Tensor:
    """Subtract column means; columns constant up to rounding become exactly zero.

    Rounding in the mean would otherwise leave ~eps-sized noise in a constant
    column, which whitening (CCA) would blow up into a full direction.  A
    column whose values differ by a few units in the last place (a collapsed
    unit computed in different batch orders, say) is constant: its "variance"
    is rounding, and leaving it in makes self-HSIC a random sign.
    """
    xc = x - x.mean(dim=0, keepdim=True)
    lo, hi = torch.aminmax(x, dim=0)
    constant = (hi - lo) <= 4 * torch.finfo(x.dtype).eps * torch.maximum(lo.abs(), hi.abs())
    if bool(constant.any()):
        xc[:, constant] = 0
    return xc


def compress(x: Tensor) -> Tensor:
    """An ``[n, min(n, d)]`` matrix with the same Gram matrix ``x x^T``.

    Every quantity that depends on ``x`` only through ``x x^T`` (Frobenius and
    nuclear norms of ``x^T y``, row norms, the Gram matrix) is unchanged, and
    wide representations (d > n) become cheap: ``x^T = Q R`` gives
    ``x x^T = R^T R``.
    """
    n, d = x.shape
    if d <= n:
        return x
    r = torch.linalg.qr(x.T, mode="r").R  # [n, n]
    return r.T.contiguous()


def unit_frobenius(x: Tensor) -> Tensor:
    """``x / ||x||_F`` (a zero matrix stays zero)."""
    norm = torch.linalg.matrix_norm(x)
    return x / norm if float(norm) > 0 else x


def rank_tol(s: Tensor, shape: tuple[int, int]) -> float:
    """Singular values at or below this are numerical zeros (numpy's matrix_rank rule)."""
    if s.numel() == 0:
        return 0.0
    return float(s.max()) * max(shape) * torch.finfo(s.dtype).eps


def orth_basis(xc: Tensor, variance_kept: float | None = None) -> Tensor:
    """Orthonormal basis ``[n, r]`` of the column space of (centred) ``xc``.

    ``variance_kept`` keeps only the leading principal directions that explain
    that fraction of the variance (SVCCA); otherwise the numerical rank is kept.
    """
    u, s, _ = torch.linalg.svd(xc, full_matrices=False)
    r = int((s > rank_tol(s, tuple(xc.shape))).sum())
    if variance_kept is not None and r > 0:
        energy = s[:r].to(torch.float64).square()
        cum = torch.cumsum(energy, 0) / energy.sum()
        # smallest k with cum[k-1] >= variance_kept (tolerate rounding of 1.0)
        k = int(torch.searchsorted(cum, torch.tensor(variance_kept - 1e-12, dtype=cum.dtype, device=cum.device))) + 1
        r = min(r, k)
    return u[:, :r]


def orth_bases(xs: Sequence[Tensor], variance_kept: float | None) -> list[Tensor]:
    """:func:`orth_basis` of each centred representation (the CCA family and linear regression R^2)."""
    return [orth_basis(center(x), variance_kept) for x in xs]


def upper_mask(n: int, device: Any) -> Tensor:
    """Boolean mask of the strict upper triangle (row-major order, as ``triu_indices``; 1 byte per entry)."""
    return torch.ones(n, n, dtype=torch.bool, device=device).triu_(1)


def row_standardize(x: Tensor) -> Tensor:
    """Rows centred and scaled to unit norm (zero-variance rows become zero)."""
    xc = x - x.mean(dim=1, keepdim=True)
    constant = (x == x[:, :1]).all(dim=1)
    norms = torch.linalg.vector_norm(xc, dim=1, keepdim=True)
    out = xc / norms.clamp_min(torch.finfo(x.dtype).tiny)
    out[constant] = 0
    return out


def average_ranks(v: Tensor, tol: float = 0.0) -> Tensor:
    """Ranks (0-based) of a 1-D tensor with ties given their average rank (as scipy's rankdata).

    Neighbours in sorted order closer than ``tol`` are tied: values equal in
    exact arithmetic but computed from differently placed rows differ by
    rounding, and that noise must not decide their order.
    """
    sorted_v, order = torch.sort(v)
    length = v.numel()
    new_group = torch.ones(length, dtype=torch.bool, device=v.device)
    new_group[1:] = (sorted_v[1:] - sorted_v[:-1]) > tol
    group = torch.cumsum(new_group, 0) - 1
    starts = torch.nonzero(new_group).flatten()
    counts = torch.diff(torch.cat([starts, torch.tensor([length], device=v.device)]))
    avg = starts.to(v.dtype) + (counts.to(v.dtype) - 1) / 2
    ranks = torch.empty_like(v)
    ranks[order] = avg[group]
    return ranks


def standardize_vector(v: Tensor) -> Tensor:
    """Centre and scale to unit norm; a constant vector becomes zero (correlation 0)."""
    vc = v - v.mean()
    if bool((v == v[0]).all()):
        return torch.zeros_like(v)
    return vc / torch.linalg.vector_norm(vc)


# --------------------------------------------------------------------------
# Small dense reductions
# --------------------------------------------------------------------------


def nuclear_norms(blocks: Tensor) -> Tensor:
    """Nuclear norms of a batch of matrices ``[..., a, b]``: singular values in float64.

    An SVD of the block itself, not eigenvalues of its square: squaring
    halves the exponent range and turns a singular value s into s^2, so
    values below sqrt(eps) * s_max were lost and near-identical pairs came
    out at ~1e-4 instead of ~1e-8.
    """
    b64 = blocks.to(torch.float64)
    if b64.shape[-1] == 0 or b64.shape[-2] == 0:
        return b64.new_zeros(b64.shape[:-2])
    return torch.linalg.svdvals(b64).sum(-1)


def frob2(x: Tensor) -> Tensor:
    """Squared Frobenius norm in float64."""
    return x.square().sum(dtype=torch.float64)


def safe_div(num: Tensor, den: Tensor) -> Tensor:
    """``num / den`` where ``den > 0``, else 0 (a defined answer for degenerate inputs, never NaN)."""
    ok = den > 0
    return torch.where(ok, num / torch.where(ok, den, torch.ones_like(den)), torch.zeros_like(num))


def cka_value(hxy: Tensor, hxx: Tensor, hyy: Tensor) -> float:
    """``hxy / sqrt(hxx hyy)`` clipped to [0, 1]; 0 when either self term is not positive (CKA and wCKA)."""
    hxx_, hyy_ = max(float(hxx), 0.0), max(float(hyy), 0.0)
    if hxx_ <= 0 or hyy_ <= 0:
        return 0.0
    return min(max(float(hxy) / math.sqrt(hxx_ * hyy_), 0.0), 1.0)


def normalize_kernel_matrix(h: Tensor) -> Tensor:
    """``h_ij / sqrt(h_ii h_jj)`` clipped to [0, 1]; 0 where a diagonal entry is not positive."""
    diag = h.diagonal().clamp_min(0)
    return safe_div(h, torch.sqrt(diag[:, None] * diag[None, :])).clamp(0.0, 1.0)


def unbiased_hsic(cross: Tensor, kk: Tensor, tx: Tensor, ty: Tensor, n: int) -> Tensor:
    """Song et al. (2012) unbiased HSIC of linear kernels of *centred* features, from feature-space terms.

    With ``K = X X^T``, ``L = Y Y^T`` and zeroed diagonals, and X, Y centred
    (so ``1^T X = 0``): ``tr(K~L~) = ||Y^T X||_F^2 - kx.ky``,
    ``1^T K~ 1 = -||X||_F^2``, ``1^T K~ L~ 1 = kx.ky`` where ``kx`` are the
    squared row norms.  ``cross = ||Y^T X||_F^2``, ``kk = kx.ky``,
    ``tx = ||X||_F^2``, ``ty = ||Y||_F^2`` (broadcastable tensors).
    """
    if n < 4:
        raise ValueError(f"unbiased HSIC needs at least 4 probe inputs, got {n}")
    return (cross - kk + tx * ty / ((n - 1) * (n - 2)) - 2.0 * kk / (n - 2)) / (n * (n - 3))


# --------------------------------------------------------------------------
# The all-pairs engine
# --------------------------------------------------------------------------


def cap_elements(max_memory_mb: int, dtype: torch.dtype, copies: int = 4) -> int:
    """How many elements one tile may hold so ``copies`` temporaries fit in the cap."""
    size = torch.empty((), dtype=dtype).element_size()
    return max(1, (int(max_memory_mb) << 20) // (size * copies))


def stack_padded(feats: Sequence[Tensor], width: int | None = None) -> tuple[Tensor, int]:
    """``[n, M * w]``: each ``[n, d_i]`` feature matrix zero-padded to ``w`` columns.

    Zero columns change neither Frobenius nor nuclear norms of cross products,
    so models of different widths share one GEMM.
    """
    n = feats[0].shape[0]
    w = max(1, width if width is not None else max(int(f.shape[1]) for f in feats))
    z = feats[0].new_zeros(n, len(feats), w)
    for i, f in enumerate(feats):
        z[:, i, : f.shape[1]] = f
    return z.reshape(n, len(feats) * w), w


def tile_ranges(
    m: int, wa: int, wb: int, symmetric: bool, max_memory_mb: int, dtype: torch.dtype
) -> Iterator[tuple[int, int, int, int]]:
    """The ``(i0, i1, j0, j1)`` model ranges :func:`iter_tiles` multiplies (also used to count its cost).

    Symmetric: only strips ``j >= i0``, at most ~M/8 models tall so the
    saving over the full square is real; every tile at most as large as the
    memory cap allows.
    """
    budget = cap_elements(max_memory_mb, dtype)
    per_block = wa * wb
    g = max(1, min(math.ceil(m / 8) if symmetric else m, math.isqrt(max(1, budget // per_block))))
    for i0 in range(0, m, g):
        i1 = min(m, i0 + g)
        h = max(1, budget // (per_block * (i1 - i0)))
        for j0 in range(i0 if symmetric else 0, m, h):
            yield i0, i1, j0, min(m, j0 + h)


def iter_tiles(
    za: Tensor, wa: int, zb: Tensor | None, wb: int, m: int, max_memory_mb: int
) -> Iterator[tuple[int, int, int, int, Tensor]]:
    """Yield ``(i0, i1, j0, j1, tile)`` with ``tile[p, :, q, :] = Za_{i0+p}^T Zb_{j0+q}``.

    ``zb is None`` means ``zb = za`` and a symmetric result (see :func:`tile_ranges`).
    """
    zb_ = za if zb is None else zb
    for i0, i1, j0, j1 in tile_ranges(m, wa, wb, zb is None, max_memory_mb, za.dtype):
        tile = za[:, i0 * wa : i1 * wa].T @ zb_[:, j0 * wb : j1 * wb]
        yield i0, i1, j0, j1, tile.view(i1 - i0, wa, j1 - j0, wb)


def symmetrize_upper(out: Tensor) -> Tensor:
    """Copy the upper triangle onto the lower one."""
    upper = torch.triu(out)
    return upper + torch.triu(out, 1).T


def frob2_features(
    feats_a: Sequence[Tensor], feats_b: Sequence[Tensor] | None, max_memory_mb: int
) -> Tensor:
    """``out[i, j] = ||A_i^T B_j||_F^2`` for all pairs via strip GEMMs (``B = A`` if None)."""
    m = len(feats_a)
    za, wa = stack_padded(feats_a)
    zb, wb = (None, wa) if feats_b is None else stack_padded(feats_b)
    out = torch.zeros(m, m, dtype=torch.float64, device=za.device)
    for i0, i1, j0, j1, tile in iter_tiles(za, wa, zb, wb, m, max_memory_mb):
        out[i0:i1, j0:j1] = tile.square().sum(dim=(1, 3), dtype=torch.float64)
    return symmetrize_upper(out) if feats_b is None else out


def inner_products(
    make_vectors: Callable[[int, int], Tensor],
    m: int,
    length: int,
    dtype: torch.dtype,
    device: Any,
    max_memory_mb: int,
    reserve_bytes: int = 0,
) -> Tensor:
    """``out[i, j] = <v_i, v_j>`` for per-model vectors of ``length`` built on demand.

    ``make_vectors(i0, i1)`` returns ``[i1 - i0, length]``.  When all M
    vectors fit under the cap they are built once and multiplied in one
    GEMM.  Otherwise groups of ``g`` (two groups fit) are built and every
    pair of groups multiplied: a group is rebuilt about ``M / (2 g)`` times,
    so the cap trades memory for ~``M / g`` extra builds.  ``reserve_bytes``
    (building one vector's temporaries) is kept free of the cap.
    """
    g = group_size(m, length, dtype, max_memory_mb, reserve_bytes)
    out = torch.zeros(m, m, dtype=torch.float64, device=device)
    for i0 in range(0, m, g):
        i1 = min(m, i0 + g)
        va = make_vectors(i0, i1)
        for j0 in range(i0, m, g):
            j1 = min(m, j0 + g)
            out[i0:i1, j0:j1] = gram_acc(va) if j0 == i0 else gram_acc(va, make_vectors(j0, j1))
    return symmetrize_upper(out)


def group_size(m: int, length: int, dtype: torch.dtype, max_memory_mb: int, reserve_bytes: int = 0) -> int:
    """Models per group in :func:`inner_products`: all M if they fit the cap, else two groups' worth."""
    size = torch.empty((), dtype=dtype).element_size()
    budget = max(0, (int(max_memory_mb) << 20) - int(reserve_bytes)) // size
    if m * length <= budget:
        return max(1, m)
    return max(1, min(m, budget // max(1, 2 * length)))


def frob2_gram(feats: Sequence[Tensor], max_memory_mb: int) -> Tensor:
    """``||F_i^T F_j||_F^2 = <F_i F_i^T, F_j F_j^T>``, the Gram matrices streamed in row blocks."""
    n = feats[0].shape[0]

    def block(i: int, r0: int, r1: int) -> Tensor:
        f = feats[i]
        return f[r0:r1] @ f[r0:].T

    return symmetric_kernel_products(len(feats), n, block, feats[0].dtype, feats[0].device, max_memory_mb)


#: one memory-bound elementwise pass over an entry costs about this many GEMM multiply-adds
#: (measured on the 2-core development CPU, one thread: ~0.024 ns per float32 multiply-add in a
#: large GEMM, ~1.3 ns per entry of a weighting/copy pass over an n x n block)
ELEMENTWISE_COST = 50.0


def route_costs(
    n: int, m: int, w: int, max_memory_mb: int = 4096, dtype: torch.dtype = torch.float32
) -> dict[str, float]:
    """Cost (in GEMM multiply-adds) of the two routes for all-pairs ``||F_i^T F_j||_F^2``.

    Counted by walking the same tiles and blocks the routes compute, for
    ``m`` models of ``n x w`` features; elementwise passes weigh
    :data:`ELEMENTWISE_COST` multiply-adds each:

    * feature route: each strip tile ``[n, a w]^T [n, b w]`` costs
      ``n a b w^2`` multiply-adds, and one pass (square and sum) over its
      ``a b w^2`` entries;
    * Gram route: each row block ``r0:r1`` of each model's Gram triangle
      (``e = (r1 - r0)(n - r0)`` entries) costs ``e w`` multiply-adds to build,
      four passes (write, weight, copy into the buffer, read back in pieces),
      and ``M^2 e`` multiply-adds in the GEMM.
    """
    feature = 0.0
    for i0, i1, j0, j1 in tile_ranges(m, w, w, True, max_memory_mb, dtype):
        entries = (i1 - i0) * (j1 - j0) * w * w
        feature += entries * n + entries * ELEMENTWISE_COST
    gram = 0.0
    c = triangle_rows_per_block(m, n, dtype, max_memory_mb)
    for r0 in range(0, n, c):
        entries = (min(n, r0 + c) - r0) * (n - r0)
        gram += m * entries * w + 4 * m * entries * ELEMENTWISE_COST + m * m * entries
    return {"feature": feature, "gram": gram}


def choose_route(n: int, m: int, w: int, max_memory_mb: int = 4096, dtype: torch.dtype = torch.float32) -> str:
    """The cheaper route by :func:`route_costs`."""
    costs = route_costs(n, m, w, max_memory_mb, dtype)
    return "feature" if costs["feature"] <= costs["gram"] else "gram"


def frob2_auto(feats: Sequence[Tensor], max_memory_mb: int, route: str = "auto") -> Tensor:
    """All-pairs ``||F_i^T F_j||_F^2``, by whichever of the two routes costs fewer operations."""
    m, n = len(feats), feats[0].shape[0]
    w = max(int(f.shape[1]) for f in feats)
    if route == "auto":
        route = choose_route(n, m, w, max_memory_mb, feats[0].dtype)
    if route == "feature":
        return frob2_features(feats, None, max_memory_mb)
    if route == "gram":
        return frob2_gram(feats, max_memory_mb)
    raise ValueError(f"unknown route {route!r}")


def block_reduce(
    feats: Sequence[Tensor],
    reduce: Callable[[Tensor, Tensor, Tensor], Reduced],
    max_memory_mb: int,
    width: int | None = None,
    diagonal: Tensor | None = None,
) -> Tensor:
    """All pairs ``i <= j`` of ``B_ij = F_i^T F_j`` reduced by ``reduce(blocks, i, j)``.

    ``blocks`` is ``[P, w, w]`` (zero-padded), ``i`` and ``j`` are ``[P]``
    model indices.  ``reduce`` returns the value of each pair ``(i, j)``, or a
    tuple ``(value(i, j), value(j, i))`` for asymmetric metrics; otherwise the
    result is symmetric.  ``diagonal`` (``[M]``), when the value of a model
    with itself is known in closed form, skips the ``i == j`` blocks: at
    large widths their SVDs would cost as much as M more pairs.
    """
    m = len(feats)
    z, w = stack_padded(feats, width)
    out = torch.zeros(m, m, dtype=torch.float64, device=z.device)
    if diagonal is not None:
        out.diagonal().copy_(diagonal.to(torch.float64))
    for i0, i1, j0, j1, tile in iter_tiles(z, w, None, w, m, max_memory_mb):
        ii, jj = torch.meshgrid(
            torch.arange(i0, i1, device=z.device), torch.arange(j0, j1, device=z.device), indexing="ij"
        )
        keep = jj > ii if diagonal is not None else jj >= ii
        ii, jj = ii[keep], jj[keep]
        if ii.numel() == 0:
            continue
        blocks = tile.permute(0, 2, 1, 3)[ii - i0, jj - j0]
        values = reduce(blocks, ii, jj)
        if isinstance(values, tuple):
            out[ii, jj] = values[0].to(torch.float64)
            out[jj, ii] = values[1].to(torch.float64)
        else:
            out[ii, jj] = values.to(torch.float64)
            out[jj, ii] = values.to(torch.float64)
    return out


# --------------------------------------------------------------------------
# Streaming all-pairs inner products of per-model n x n objects
# --------------------------------------------------------------------------
#
# Kernel and RDM metrics compare per-model objects with n^2 entries (a centred
# kernel, an RDM's ranked upper triangle, a k-NN weight matrix).  Holding all
# M of them (3.6 GB at M = 180, n = 3147) is not always possible, and
# rebuilding them for every tile costs M^2 builds.  Instead each object is
# produced in row blocks: block r of every model is built (each model's
# block exactly once over the whole computation) and ``out += V_r V_r^T`` is
# one GEMM over the stacked blocks, accumulated in float64.  Memory is the
# block buffer, bounded by the cap for any M and n.

SQRT2 = math.sqrt(2.0)

#: the streamed block buffer never exceeds this (MB), whatever the cap
STREAM_BLOCK_MB = 512

#: float32 products are summed over at most this many terms before the float64 accumulator
ACC_CHUNK = 4096


def gram_acc(va: Tensor, vb: Tensor | None = None) -> Tensor:
    """``va @ vb^T`` (``vb = va`` if None) accumulated in float64.

    Inner products of per-model objects run over millions of terms; one
    float32 GEMM would accumulate all of them in float32 (relative error
    ~1e-4 at n = 3147).  Pieces of :data:`ACC_CHUNK` columns are multiplied
    in the objects' dtype (full GEMM speed) and summed in float64.
    """
    other = va if vb is None else vb
    if va.dtype == torch.float64:
        return va @ other.T
    out = torch.zeros(va.shape[0], other.shape[0], dtype=torch.float64, device=va.device)
    for c0 in range(0, va.shape[1], ACC_CHUNK):
        a = va[:, c0 : c0 + ACC_CHUNK]
        b = a if vb is None else vb[:, c0 : c0 + ACC_CHUNK]
        out += (a @ b.T).to(torch.float64)
    return out


def rows_per_block(m: int, row_length: int, dtype: torch.dtype, max_memory_mb: int) -> int:
    """Rows per block so that ``m`` models' blocks (plus one model's temporaries) fit the cap."""
    size = torch.empty((), dtype=dtype).element_size()
    # blocks beyond ~512 MB make the GEMM no faster, only the peak memory higher
    budget = (min(int(max_memory_mb), STREAM_BLOCK_MB) << 20) // size
    return max(1, budget // max(1, (m + 3) * row_length))


def triangle_rows_per_block(m: int, n: int, dtype: torch.dtype, max_memory_mb: int) -> int:
    """Row blocks for the upper triangle: at most n/8 rows, so blocks skip ~7/16 of the square."""
    return max(1, min(rows_per_block(m, n, dtype, max_memory_mb), math.ceil(n / 8)))


def symmetric_kernel_products(
    m: int,
    n: int,
    block: Callable[[int, int, int], Tensor],
    dtype: torch.dtype,
    device: Any,
    max_memory_mb: int,
) -> Tensor:
    """``out[i, j] = <K_i, K_j>_F`` for symmetric ``n x n`` kernels produced in row blocks.

    ``block(i, r0, r1)`` returns rows ``r0:r1``, columns ``r0:n`` of model
    ``i``'s kernel.  Only the upper triangle is streamed: off-diagonal
    entries are weighted by sqrt(2) so each inner product counts them twice,
    which halves the GEMM (``M^2 n (n+1) / 2`` multiply-adds).
    """
    out = torch.zeros(m, m, dtype=torch.float64, device=device)
    c = triangle_rows_per_block(m, n, dtype, max_memory_mb)
    for r0 in range(0, n, c):
        r1 = min(n, r0 + c)
        rows = torch.arange(r0, r1, device=device)[:, None]
        cols = torch.arange(r0, n, device=device)[None, :]
        # built in the compute dtype: a float32 sqrt(2) would bias float64 results by ~1e-8
        weight = (cols > rows).to(dtype) * torch.tensor(SQRT2, dtype=dtype, device=device) + (cols == rows).to(dtype)
        v = torch.empty(m, (r1 - r0) * (n - r0), dtype=dtype, device=device)
        for i in range(m):
            v[i] = (block(i, r0, r1) * weight).reshape(-1)
        out += gram_acc(v)
    return out


def row_block_products(
    m: int,
    n: int,
    block: Callable[[int, int, int], Tensor],
    dtype: torch.dtype,
    device: Any,
    max_memory_mb: int,
    per_row: Callable[[Tensor], Tensor] | None = None,
) -> Tensor:
    """``out[i, j] = sum_r f(<W_i[r], W_j[r]>)`` for ``n x n`` (not symmetric) objects in row blocks.

    ``block(i, r0, r1)`` returns rows ``r0:r1`` of model ``i``'s object.
    Without ``per_row`` (``f`` = identity) the sum is one GEMM per block;
    with it, each row's ``M x M`` inner products come from a batched GEMM and
    are mapped by ``per_row`` before summing (Jaccard needs that).
    """
    out = torch.zeros(m, m, dtype=torch.float64, device=device)
    c = rows_per_block(m, n, dtype, max_memory_mb)
    if per_row is not None:  # the [c, M, M] products need room too
        size = torch.empty((), dtype=dtype).element_size()
        c = max(1, min(c, ((int(max_memory_mb) << 20) // (4 * size)) // max(1, m * m)))
    for r0 in range(0, n, c):
        r1 = min(n, r0 + c)
        v = torch.empty(m, r1 - r0, n, dtype=dtype, device=device)
        for i in range(m):
            v[i] = block(i, r0, r1)
        if per_row is None:
            out += gram_acc(v.reshape(m, -1))
        else:
            t = v.transpose(0, 1)  # [c, M, n]
            out += per_row(torch.bmm(t, t.transpose(1, 2)).to(torch.float64)).sum(0)
    return out
