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

    def __call__(self, a: Any, b: Any, **kwargs: Any) -> float:
        check_kwargs(self.name, kwargs)
        return float(pair_cca(a, b, None))

    def pairwise(self, reps: Sequence[Any], **kwargs: Any) -> torch.Tensor:
        check_kwargs(self.name, kwargs)
        return as_matrix(pairwise_cca(list(reps), None, self.max_memory_mb))


@dataclass(frozen=True)
class SVCCA(BuiltinMetric):
    """SVCCA (Raghu et al. 2017): mean CCA after keeping the leading principal
    components that explain ``variance_kept`` of each representation's variance."""

    name = "svcca"
    description = "Singular vector CCA (Raghu et al. 2017)"
    kind = "activation"
    higher_is_more_similar = True
    symmetric = True
    value_range = (0.0, 1.0)
    invariances = ISOMETRY

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
    units each canonical variate accounts for (summed absolute projections),
    hence asymmetric.
    """

    name = "pwcca"
    description = "Projection-weighted CCA (Morcos et al. 2018)"
    kind = "activation"
    higher_is_more_similar = True
    symmetric = False
    value_range = (0.0, 1.0)
    invariances = frozenset({"isotropic_scaling", "permutation", "translation"})

    def __call__(self, a: Any, b: Any, **kwargs: Any) -> float:
        check_kwargs(self.name, kwargs)
        return float(pair_pwcca(a, b))

    def pairwise(self, reps: Sequence[Any], **kwargs: Any) -> torch.Tensor:
        check_kwargs(self.name, kwargs)
        return as_matrix(pairwise_pwcca(list(reps), self.max_memory_mb))


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


def _pwcca_values(blocks: Tensor, proj_x: Tensor, proj_y: Tensor, k: Tensor) -> tuple[Tensor, Tensor]:
    """PWCCA in both directions for a batch of ``Qx^T Qy`` blocks.

    ``proj_x = Qx^T Xc`` ([.., rx, dx]) expresses X's centred units in its
    basis; the canonical variates of X are ``Qx U``, so unit ``c``'s
    projection on variate ``t`` is ``(U^T proj_x)[t, c]``.  Morcos et al.
    weight each canonical correlation by the summed absolute projections of
    the units onto its variate.  Only the first ``k = min(rx, ry)`` canonical
    pairs exist.
    """
    import torch

    from . import _linalg as la

    u, s, vh = torch.linalg.svd(blocks.to(torch.float64))
    kk = min(s.shape[-1], u.shape[-1], vh.shape[-2])
    rho = s[..., :kk].clamp(0.0, 1.0)
    mask = torch.arange(kk, device=blocks.device) < k[..., None]
    wx = (u[..., :, :kk].transpose(-1, -2) @ proj_x.to(torch.float64)).abs().sum(-1) * mask
    wy = (vh[..., :kk, :] @ proj_y.to(torch.float64)).abs().sum(-1) * mask

    def weighted(w: Tensor) -> Tensor:
        return la.safe_div((w * rho).sum(-1), w.sum(-1))

    return weighted(wx).clamp(0.0, 1.0), weighted(wy).clamp(0.0, 1.0)


def pair_pwcca(a: Any, b: Any) -> float:
    import torch

    from . import _linalg as la

    (x, y), _ = la.prepare_activations([a, b])
    xc, yc = la.center(x), la.center(y)
    qx, qy = la.orth_basis(xc), la.orth_basis(yc)
    k = torch.tensor(min(qx.shape[1], qy.shape[1]), device=x.device)
    value, _ = _pwcca_values(qx.double().T @ qy.double(), qx.T @ xc, qy.T @ yc, k)
    return float(value)


def pairwise_pwcca(reps: list[Any], max_memory_mb: int) -> Tensor:
    import torch

    from . import _linalg as la

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

    return la.block_reduce([q.to(torch.float64) for q in bases], reduce, max_memory_mb, width=w)
