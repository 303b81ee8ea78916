"""Shape metrics: orthogonal Procrustes distance and the angular shape metric, with their computation.

torch is imported inside the functions: importing this module stays light.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._base import ISOMETRY, BuiltinMetric, as_matrix, check_kwargs

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import Tensor


@dataclass(frozen=True)
class Procrustes(BuiltinMetric):
    """Orthogonal Procrustes distance (Ding et al. 2021).

    Centre, scale to unit Frobenius norm, then
    ``d^2 = ||X||^2 + ||Y||^2 - 2 ||X^T Y||_*`` (the squared distance, as
    Ding et al. report it), in [0, 2]; lower = more similar.  All pairs: one
    strip-tiled float64 GEMM plus batched nuclear norms (SVDs) of the d x d blocks.
    """

    name = "procrustes"
    description = "Orthogonal Procrustes distance (Ding et al. 2021)"
    kind = "activation"
    higher_is_more_similar = False
    symmetric = True
    value_range = (0.0, 2.0)
    invariances = ISOMETRY
    tile_size = 8  # float64 features: the blocks' SVDs
    tile_bytes_per_entry = 40

    def __call__(self, a: Any, b: Any, **kwargs: Any) -> float:
        check_kwargs(self.name, kwargs)
        return float(_procrustes(*_pair_shape(a, b)))

    def pairwise(self, reps: Sequence[Any], **kwargs: Any) -> torch.Tensor:
        check_kwargs(self.name, kwargs)
        return as_matrix(_procrustes(*_pairwise_shape(list(reps), self.max_memory_mb)))


@dataclass(frozen=True)
class AngularShape(BuiltinMetric):
    """Angular shape metric (Williams et al. 2021).

    ``arccos(||X^T Y||_* / (||X||_F ||Y||_F))`` on centred X, Y: a true
    metric on shapes modulo rotation, in [0, pi/2]; lower = more similar.
    Cross products and nuclear norms (SVD) are float64, so a rotated copy of
    a float32 representation comes out at ~1e-7 (arccos near 1 turns the
    1e-16 rounding of the cosine into a ~2e-8 angle).
    """

    name = "angular_shape"
    description = "Angular shape metric, orthogonal group (Williams et al. 2021)"
    kind = "activation"
    higher_is_more_similar = False
    symmetric = True
    value_range = (0.0, math.pi / 2)
    invariances = ISOMETRY
    tile_size = 8  # float64 features: the blocks' SVDs
    tile_bytes_per_entry = 40

    def __call__(self, a: Any, b: Any, **kwargs: Any) -> float:
        check_kwargs(self.name, kwargs)
        return float(_angular(*_pair_shape(a, b)))

    def pairwise(self, reps: Sequence[Any], **kwargs: Any) -> torch.Tensor:
        check_kwargs(self.name, kwargs)
        return as_matrix(_angular(*_pairwise_shape(list(reps), self.max_memory_mb)))


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
    import torch

    from . import _linalg as la

    return la.compress(la.unit_frobenius(la.center(x.to(torch.float64))))


def _procrustes(nuc: Tensor, sx: Tensor, sy: Tensor) -> Tensor:
    return (sx + sy - 2.0 * nuc).clamp(0.0, 2.0)


def _angular(nuc: Tensor, sx: Tensor, sy: Tensor) -> Tensor:
    """``arccos(nuc / (|x| |y|))``; a zero-variance side gives pi/2 (0 if both are)."""
    import torch

    from . import _linalg as la

    cos = la.safe_div(nuc, torch.sqrt(sx * sy).expand_as(nuc))
    angle = torch.arccos(cos.clamp(-1.0, 1.0))
    both_zero = (sx <= 0) & (sy <= 0)
    return torch.where(both_zero, torch.zeros_like(angle), angle)


def _pair_shape(a: Any, b: Any) -> tuple[Tensor, Tensor, Tensor]:
    from . import _linalg as la

    (x, y), _ = la.prepare_activations([a, b])
    fx, fy = _shape_features(x), _shape_features(y)
    return la.nuclear_norms(fx.T @ fy), la.frob2(fx), la.frob2(fy)


def _pairwise_shape(reps: list[Any], max_memory_mb: int) -> tuple[Tensor, Tensor, Tensor]:
    import torch

    from . import _linalg as la

    xs, _ = la.prepare_activations(reps)
    feats = [_shape_features(x) for x in xs]
    sq = torch.stack([la.frob2(f) for f in feats])
    # X^T X is PSD: its nuclear norm is its trace, ||X||_F^2 -- no SVD needed on the diagonal
    nuc = la.block_reduce(feats, lambda blocks, i, j: la.nuclear_norms(blocks), max_memory_mb, diagonal=sq)
    return nuc, sq[:, None], sq[None, :]
