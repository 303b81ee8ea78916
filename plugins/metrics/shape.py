"""Shape metrics: orthogonal Procrustes distance and the angular shape metric."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ._base import ISOMETRY, BuiltinMetric


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
