"""The CKA family: linear, unbiased, RBF, minibatch and deconfounded CKA."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from pydantic import Field

from ._base import ISOMETRY, BuiltinMetric


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


@dataclass(frozen=True)
class UnbiasedCKA(BuiltinMetric):
    """Linear CKA with the unbiased HSIC estimator of Song et al. (2012).

    Removes the positive bias of CKA at small n (independent Gaussian
    features: biased ~0.20, unbiased ~0.02 at n = 32, d = 8).  Needs n >= 4.
    Negative HSIC estimates are clipped, so values lie in [0, 1].  A
    representation whose self-HSIC is zero or at rounding level (a collapsed
    model) makes the value 0/0: it raises ``MeasurementFailed`` (also a
    ``ValueError``) naming it, which the runner records as a failed cell.
    """

    name = "unbiased_cka"
    description = "Linear CKA with the unbiased HSIC estimator (Song et al. 2012)"
    kind = "activation"
    higher_is_more_similar = True
    symmetric = True
    value_range = (0.0, 1.0)
    invariances = ISOMETRY


@dataclass(frozen=True)
class RBFCKA(BuiltinMetric):
    """CKA on Gaussian kernels (Kornblith et al. 2019).

    Bandwidth = ``bandwidth_factor`` x the median pairwise Euclidean distance
    of each representation, so the measure is scale-invariant.  All pairs:
    each model's bandwidth and kernel column means once, then the centred
    kernels' upper triangles streamed in row blocks (one GEMM per block).
    """

    name = "rbf_cka"
    description = "RBF-kernel CKA, median-heuristic bandwidth (Kornblith et al. 2019)"
    kind = "activation"
    higher_is_more_similar = True
    symmetric = True
    value_range = (0.0, 1.0)
    invariances = ISOMETRY

    bandwidth_factor: Annotated[float, Field(gt=0)] = 1.0


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
