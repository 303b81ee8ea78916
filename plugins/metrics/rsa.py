"""Representational similarity analysis and linear regression R^2, with their computation.

torch is imported inside the functions: importing this module stays light.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._base import FLOAT32, ISOMETRY, OVERHEAD_BYTES, BuiltinMetric, as_matrix, check_kwargs

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import Tensor


# --------------------------------------------------------------------------
# RSA: correlation-distance RDMs compared by Spearman (Kriegeskorte et al. 2008)
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class RSA(BuiltinMetric):
    """Representational similarity analysis (Kriegeskorte et al. 2008).

    Each representation's RDM holds 1 - Pearson r between the activation
    vectors of two probe inputs; RDMs are compared by the Spearman
    correlation of their upper triangles (ties get average ranks; distances
    are float64 and never rounded, values within 1e-11 count as tied).  All
    pairs: each model's ranked triangle built once, one GEMM over them.

    Convention: a probe input whose activations are **constant (e.g. all
    zero, a dead ReLU layer)** has no Pearson correlation; here it
    correlates **0** with every other input (RDM entries 1), and the probe
    stays in the comparison.  rsatoolbox (correlation RDM, Spearman
    comparison) gets NaN for those entries and drops them, so the two differ
    when such probes exist (~3e-3 on ReLU models with dead probes); without
    constant probes they agree to rounding (tested against an independent
    numpy / scipy-style formula).
    """

    name = "rsa"
    description = "RSA: correlation-distance RDMs compared by Spearman rho"
    kind = "activation"
    higher_is_more_similar = True
    symmetric = True
    value_range = (-1.0, 1.0)
    invariances = frozenset({"isotropic_scaling", "permutation"})

    def __call__(self, a: Any, b: Any, **kwargs: Any) -> float:
        check_kwargs(self.name, kwargs)
        return float(pair_rsa(a, b))

    def pairwise(self, reps: Sequence[Any], **kwargs: Any) -> torch.Tensor:
        check_kwargs(self.name, kwargs)
        return as_matrix(pairwise_rsa(list(reps), self.max_memory_mb))

    def memory_bytes(self, n: int, d: int, m: int) -> int:
        """Peak of ``pairwise``: the prepared float32 copies, building one ranked RDM (~56 bytes per ``n^2``
        measured: the float64 triangle, its sorted values and int64 order, tie groups, average ranks)
        and the float32 rank vectors held -- all M if they fit what the cap leaves beside the build
        (the engine reserves 40 bytes per ``n^2`` and the inputs), else two groups' worth.  The build is
        not bounded by ``max_memory_mb``: it is counted here, so validate refuses what would not fit."""
        cap = self.memory_limit_bytes()
        prepared = m * n * d * FLOAT32
        pairs = n * (n - 1) // 2
        room = max(0, cap - 40 * n * n - prepared) // FLOAT32
        if m * pairs <= room:
            held = m * pairs * FLOAT32
        else:
            held = 2 * max(1, min(m, room // max(1, 2 * pairs))) * pairs * FLOAT32
        return prepared + RDM_BUILD_BYTES * n * n + held + OVERHEAD_BYTES


#: bytes per n^2 of building one ranked RDM (measured at n = 2000)
RDM_BUILD_BYTES = 56


#: distances closer than this are tied: equal in exact arithmetic, they differ by float64
#: rounding (~1e-15) that depends on where the rows sit; far below any real difference
RDM_TIE_TOL = 1e-11


def rdm_ranks(x: Tensor, upper: Tensor | None = None) -> Tensor:
    """Standardised average ranks (float64) of the RDM's upper triangle (1 - Pearson r between inputs).

    The correlations are computed in float64 and never rounded to a grid:
    ties are the values within :data:`RDM_TIE_TOL`, which absorbs rounding
    noise without merging distinct float32 distances.
    """
    import torch

    from . import _linalg as la

    z = la.row_standardize(x.to(torch.float64))
    n = z.shape[0]
    rdm = (z @ z.T)[la.upper_mask(n, x.device) if upper is None else upper]
    rdm = torch.sub(1.0, rdm, out=rdm)
    return la.standardize_vector(la.average_ranks(rdm, tol=RDM_TIE_TOL))


def pair_rsa(a: Any, b: Any) -> float:
    import torch

    from . import _linalg as la

    (x, y), _ = la.prepare_activations([a, b], min_n=3)
    return min(max(float((rdm_ranks(x) * rdm_ranks(y)).sum(dtype=torch.float64)), -1.0), 1.0)


def pairwise_rsa(reps: list[Any], max_memory_mb: int) -> Tensor:
    """Each model's ranked upper triangle built once (if all fit the cap) and one GEMM over them."""
    import torch

    from . import _linalg as la

    xs, dtype = la.prepare_activations(reps, min_n=3)
    n = xs[0].shape[0]
    upper = la.upper_mask(n, xs[0].device)

    def vectors(i0: int, i1: int) -> Tensor:
        out = torch.empty(i1 - i0, n * (n - 1) // 2, dtype=dtype, device=xs[0].device)
        for k, x in enumerate(xs[i0:i1]):
            out[k] = rdm_ranks(x, upper)
        return out

    # building one ranked RDM needs ~40 bytes per n^2 (see RSA.memory_bytes): keep it out of the vectors' share
    reserve = 40 * n * n + sum(x.numel() * x.element_size() for x in xs)
    return la.inner_products(
        vectors, len(xs), n * (n - 1) // 2, dtype, xs[0].device, max_memory_mb, reserve
    ).clamp(-1, 1)


# --------------------------------------------------------------------------
# Linear regression R^2
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class LinearRegressionR2(BuiltinMetric):
    """Fraction of the first argument's variance explained by a least-squares
    linear map from the second (both centred); asymmetric.  With n at or
    below the second argument's rank the fit is perfect (R^2 = 1)."""

    name = "linear_regression_r2"
    description = "R^2 of predicting the first representation linearly from the second"
    kind = "activation"
    higher_is_more_similar = True
    symmetric = False
    value_range = (0.0, 1.0)
    invariances = ISOMETRY

    def __call__(self, a: Any, b: Any, **kwargs: Any) -> float:
        check_kwargs(self.name, kwargs)
        return float(pair_linear_regression_r2(a, b))

    def pairwise(self, reps: Sequence[Any], **kwargs: Any) -> torch.Tensor:
        check_kwargs(self.name, kwargs)
        return as_matrix(pairwise_linear_regression_r2(list(reps), self.max_memory_mb))


def pair_linear_regression_r2(a: Any, b: Any) -> float:
    """R^2 of the least-squares prediction of ``a`` (centred) from ``b`` (centred)."""
    from . import _linalg as la

    (x, y), _ = la.prepare_activations([a, b])
    xc = la.center(x)
    qy = la.orth_basis(la.center(y))
    total = la.frob2(xc)
    if float(total) <= 0:
        return 0.0
    return min(max(float(la.frob2(qy.T @ xc) / total), 0.0), 1.0)


def pairwise_linear_regression_r2(reps: list[Any], max_memory_mb: int) -> Tensor:
    import torch

    from . import _linalg as la

    xs, _ = la.prepare_activations(reps)
    targets = [la.compress(la.center(x)) for x in xs]
    bases = la.orth_bases(xs, None)
    explained = la.frob2_features(targets, bases, max_memory_mb)  # [i, j] = ||X_i^T Q_j||^2
    total = torch.stack([la.frob2(t) for t in targets])[:, None]
    return la.safe_div(explained, total.expand_as(explained)).clamp(0.0, 1.0)
