"""Canonical-correlation measures: mean CCA, SVCCA and PWCCA, with their computation.

torch is imported inside the functions: importing this module stays light.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field

from ._base import ISOMETRY, BuiltinMetric, as_matrix, check_kwargs

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import Tensor


@dataclass(frozen=True)
class CCAMean(BuiltinMetric):
    """Mean canonical correlation between centred X and Y.

    Canonical correlations are the singular values of ``Qx^T Qy`` for
    orthonormal bases of the column spaces (numerical rank kept), so the mean
    is ``||Qx^T Qy||_* / min(rank)``.  Invariant to any invertible linear map.
    Needs n well above the rank: with n <= d every correlation is 1.
    """

    name = "cca_mean"
    description = "Mean canonical correlation"
    kind = "activation"
    higher_is_more_similar = True
    symmetric = True
    value_range = (0.0, 1.0)
    invariances = ISOMETRY | {"invertible_linear"}
    tile_size = 8  # float64 features: the blocks' SVDs
    tile_bytes_per_entry = 40

    def __call__(self, a: Any, b: Any, **kwargs: Any) -> float:
        check_kwargs(self.name, kwargs)
        return float(pair_cca(a, b, None))

    def pairwise(self, reps: Sequence[Any], **kwargs: Any) -> torch.Tensor:
        check_kwargs(self.name, kwargs)
        return as_matrix(pairwise_cca(list(reps), None, self.max_memory_mb))


@dataclass(frozen=True)
class SVCCA(BuiltinMetric):
    """SVCCA (Raghu et al. 2017): mean CCA after keeping the leading principal
    components that explain ``variance_kept`` of each representation's variance.

    Convention (the paper's): each centred representation keeps its fewest
    leading principal components whose cumulative share of the variance
    reaches ``variance_kept`` (0.99), then the mean of all ``min(k_x, k_y)``
    canonical correlations, unregularised and untruncated.  repsim's SVCCA
    deviates: it compares the *normalised* cumulative variance with
    ``0.99 x`` the *total* variance (so how many components it keeps depends
    on the activations' scale) and adds ``1e-10`` to the covariances; it is
    not matched.
    """

    name = "svcca"
    description = "Singular vector CCA (Raghu et al. 2017)"
    kind = "activation"
    higher_is_more_similar = True
    symmetric = True
    value_range = (0.0, 1.0)
    invariances = ISOMETRY
    tile_size = 8  # float64 features: the blocks' SVDs
    tile_bytes_per_entry = 40

    variance_kept: Annotated[float, Field(gt=0, le=1)] = 0.99

    def __call__(self, a: Any, b: Any, **kwargs: Any) -> float:
        check_kwargs(self.name, kwargs)
        return float(pair_cca(a, b, self.variance_kept))

    def pairwise(self, reps: Sequence[Any], **kwargs: Any) -> torch.Tensor:
        check_kwargs(self.name, kwargs)
        return as_matrix(pairwise_cca(list(reps), self.variance_kept, self.max_memory_mb))


@dataclass(frozen=True)
class PWCCA(BuiltinMetric):
    """Projection-weighted CCA (Morcos et al. 2018).

    Canonical correlations weighted by how much of the *first* argument's
    units each canonical variate accounts for (summed absolute projections
    of the centred units on the unit-norm canonical variate, Morcos et al.'s
    definition), hence asymmetric.  Not matched to google/svcca's
    ``pwcca.py``, which forms its directions and projections differently
    (it projects the uncentred activations, for one); no library reference
    is claimed.

    Convention (deterministic where the paper's is not): when the two
    centred column spaces share dimensions -- always when
    ``rank(X) + rank(Y) > n - 1``, the *ill-defined regime* -- several
    canonical correlations equal 1 and the SVD's basis of their variates is
    arbitrary, so the reference code's weights (and value) depend on
    rounding.  Here correlations within ``1024 eps`` (of the compute dtype)
    of 1 form one block whose weight is taken on its principal basis (the
    singular vectors of the units' coordinates in the block), which depends
    on the data only.  The rule applies wherever correlations come that
    close to 1 (a model with itself, near-identical models in float32);
    elsewhere the value is the plain definition, unchanged.  ``__call__``
    and ``pairwise`` compute through the same function
    (:func:`_pwcca_values`) and agree to rounding (~1e-15 in float64).  :meth:`ill_defined_pairs` and :meth:`matrix_flags` name the
    pairs / models in the ill-defined regime.
    """

    name = "pwcca"
    description = "Projection-weighted CCA (Morcos et al. 2018)"
    kind = "activation"
    higher_is_more_similar = True
    symmetric = False
    value_range = (0.0, 1.0)
    invariances = frozenset({"isotropic_scaling", "permutation", "translation"})
    tile_size = 8  # float64 bases: the blocks' SVDs and the units' coordinates on the variates
    tile_bytes_per_entry = 64

    def __call__(self, a: Any, b: Any, **kwargs: Any) -> float:
        check_kwargs(self.name, kwargs)
        return float(pair_pwcca(a, b))

    def pairwise(self, reps: Sequence[Any], **kwargs: Any) -> torch.Tensor:
        check_kwargs(self.name, kwargs)
        return as_matrix(pairwise_pwcca(list(reps), self.max_memory_mb))

    def ill_defined_pairs(self, reps: Sequence[Any], **kwargs: Any) -> torch.Tensor:
        """``[M, M]`` bool: pairs whose centred ranks sum above ``n - 1`` (their spaces must share dimensions)."""
        import torch

        check_kwargs(self.name, kwargs)
        ranks, n = pwcca_ranks(reps)
        r = torch.tensor(ranks)
        out = (r[:, None] + r[None, :]) > n - 1
        return out & ~torch.eye(len(ranks), dtype=torch.bool)

    def matrix_flags(self, reps: Sequence[Any], ids: Sequence[str] | None = None, **kwargs: Any) -> list[str]:
        """``"ill_defined:<model>"`` for every model in at least one ill-defined pair (see the class docs)."""
        bad = self.ill_defined_pairs(reps, **kwargs)
        names = [str(i) for i in range(len(reps))] if ids is None else [str(i) for i in ids]
        return [f"ill_defined:{names[i]}" for i in range(len(names)) if bool(bad[i].any())]


# --------------------------------------------------------------------------
# Mean CCA and SVCCA (Raghu et al. 2017)
# --------------------------------------------------------------------------


def _mean_cca(nuc: Tensor, rx: Tensor, ry: Tensor) -> Tensor:
    """Mean canonical correlation = ||Qx^T Qy||_* / min(rank x, rank y); 0 for a zero-rank side."""
    import torch

    from . import _linalg as la

    k = torch.minimum(rx, ry).to(torch.float64)
    return la.safe_div(nuc, k.expand_as(nuc)).clamp(0.0, 1.0)


def pair_cca(a: Any, b: Any, variance_kept: float | None) -> float:
    """Mean CCA of one pair (SVCCA with ``variance_kept``)."""
    import torch

    from . import _linalg as la

    (x, y), _ = la.prepare_activations([a, b])
    qx, qy = (q.to(torch.float64) for q in la.orth_bases([x, y], variance_kept))
    nuc = la.nuclear_norms(qx.T @ qy)
    return float(_mean_cca(nuc, torch.tensor(qx.shape[1]), torch.tensor(qy.shape[1])))


def pairwise_cca(reps: list[Any], variance_kept: float | None, max_memory_mb: int) -> Tensor:
    """Mean CCA of all pairs (SVCCA with ``variance_kept``)."""
    import torch

    from . import _linalg as la

    xs, _ = la.prepare_activations(reps)
    bases = la.orth_bases(xs, variance_kept)
    ranks = torch.tensor([q.shape[1] for q in bases], device=xs[0].device)
    # Q^T Q = I: the nuclear norm of a basis with itself is its rank
    nuc = la.block_reduce(
        [q.to(torch.float64) for q in bases],
        lambda blocks, i, j: la.nuclear_norms(blocks),
        max_memory_mb,
        diagonal=ranks.to(torch.float64),
    )
    return _mean_cca(nuc, ranks[:, None], ranks[None, :])


# --------------------------------------------------------------------------
# PWCCA (Morcos et al. 2018)
# --------------------------------------------------------------------------

#: canonical correlations within this many units in the last place (of the compute dtype) of 1 are one
#: eigenspace: the correlations of dimensions the two spaces share, equal to 1 up to rounding
#: (measured spread ~10 ulp at n = 50-300 in float32 and float64)
SHARED_TOL_ULP = 1024


def _unit_weights(coords: Tensor, shared: Tensor, n_shared: Tensor) -> tuple[Tensor, Tensor]:
    """Projection weights of the canonical variates outside the shared block, and the block's total weight.

    ``coords`` ([P, k, d]) holds the units' coordinates on the canonical
    variates.  Variates with correlation 1 (``shared``, the leading
    ``n_shared`` of them) span the intersection of the two column spaces,
    whose basis the SVD picks arbitrarily; the weight of that block is
    taken on its *principal* basis -- the left singular vectors of the
    units' coordinates in it -- which depends on the units only: the sum of
    ``sigma_t ||v_t||_1`` over its singular triplets.
    """
    import torch

    weights = coords.abs().sum(-1)
    outside = weights * ~shared
    block = torch.zeros(weights.shape[:-1], dtype=weights.dtype, device=weights.device)
    several = torch.nonzero(n_shared >= 2).flatten()
    if several.numel():
        c = coords[several] * shared[several, :, None]
        _, s, vh = torch.linalg.svd(c, full_matrices=False)
        block[several] = (s[..., :, None] * vh).abs().sum(dim=(-1, -2))
    single = n_shared == 1
    block = torch.where(single, (weights * shared).sum(-1), block)
    return outside, block


def _pwcca_values(blocks: Tensor, proj_x: Tensor, proj_y: Tensor, k: Tensor, tol: float) -> tuple[Tensor, Tensor]:
    """PWCCA in both directions for a batch of ``Qx^T Qy`` blocks.

    ``proj_x = Qx^T Xc`` ([.., rx, dx]) expresses X's centred units in its
    basis; the canonical variates of X are ``Qx U``, so unit ``c``'s
    projection on variate ``t`` is ``(U^T proj_x)[t, c]``.  Morcos et al.
    weight each canonical correlation by the summed absolute projections of
    the units onto its variate.  Only the first ``k = min(rx, ry)`` canonical
    pairs exist.  Correlations within ``tol`` of 1 (dimensions the two
    spaces share) form one block whose weight is basis-free
    (:func:`_unit_weights`), so the single-pair and all-pairs paths, whose
    SVDs pick different bases of that block, give the same value.
    """
    import torch

    from . import _linalg as la

    u, s, vh = torch.linalg.svd(blocks.to(torch.float64))
    kk = min(s.shape[-1], u.shape[-1], vh.shape[-2])
    rho = s[..., :kk].clamp(0.0, 1.0)
    mask = torch.arange(kk, device=blocks.device) < k[..., None]
    shared = (rho >= 1.0 - tol) & mask
    n_shared = shared.sum(-1)
    rho_shared = la.safe_div((rho * shared).sum(-1), n_shared.to(rho.dtype))
    cx = u[..., :, :kk].transpose(-1, -2) @ proj_x.to(torch.float64)
    cy = vh[..., :kk, :] @ proj_y.to(torch.float64)

    def weighted(coords: Tensor) -> Tensor:
        outside, block = _unit_weights(coords, shared, n_shared)
        outside = outside * mask
        num = (outside * rho).sum(-1) + block * rho_shared
        return la.safe_div(num, outside.sum(-1) + block)

    return weighted(cx).clamp(0.0, 1.0), weighted(cy).clamp(0.0, 1.0)


def _shared_tol(dtype: torch.dtype) -> float:
    import torch

    return SHARED_TOL_ULP * float(torch.finfo(dtype).eps)


def _pwcca_parts(reps: list[Any]) -> tuple[list[Tensor], list[Tensor], float, int]:
    """Each model's orthonormal basis and its centred units' coordinates in it (shared by both paths)."""
    from . import _linalg as la

    xs, dtype = la.prepare_activations(reps)
    centred = [la.center(x) for x in xs]
    bases = [la.orth_basis(xc) for xc in centred]
    projs = [q.T @ xc for q, xc in zip(bases, centred)]
    return bases, projs, _shared_tol(dtype), xs[0].shape[0]


def pair_pwcca(a: Any, b: Any) -> float:
    """PWCCA of one pair: :func:`_pwcca_values` on the single block ``Qx^T Qy``."""
    import torch

    (qx, qy), (px, py), tol, _ = _pwcca_parts([a, b])
    k = torch.tensor(min(qx.shape[1], qy.shape[1]), device=qx.device)
    value, _ = _pwcca_values((qx.double().T @ qy.double())[None], px[None], py[None], k[None], tol)
    return float(value[0])


def pairwise_pwcca(reps: list[Any], max_memory_mb: int) -> Tensor:
    """PWCCA of all pairs: the same :func:`_pwcca_values` on the engine's zero-padded blocks."""
    import torch

    from . import _linalg as la

    bases, projs, tol, _ = _pwcca_parts(list(reps))
    ranks = torch.tensor([q.shape[1] for q in bases], device=bases[0].device)
    w = max(1, int(ranks.max()))
    dmax = max(p.shape[1] for p in projs)
    proj = bases[0].new_zeros(len(bases), w, dmax)  # Q_i^T X_i, zero-padded
    for i, p in enumerate(projs):
        proj[i, : p.shape[0], : p.shape[1]] = p

    def reduce(blocks: Tensor, i: Tensor, j: Tensor) -> tuple[Tensor, Tensor]:
        return _pwcca_values(blocks, proj[i], proj[j], torch.minimum(ranks[i], ranks[j]), tol)

    return la.block_reduce([q.to(torch.float64) for q in bases], reduce, max_memory_mb, width=w)


def pwcca_ranks(reps: Sequence[Any]) -> tuple[list[int], int]:
    """The numerical ranks of the centred representations and the probe count ``n``."""
    bases, _, _, n = _pwcca_parts(list(reps))
    return [int(q.shape[1]) for q in bases], n
