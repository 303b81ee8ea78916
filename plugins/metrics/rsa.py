"""Representational similarity analysis and linear regression R^2."""

from __future__ import annotations

from dataclasses import dataclass

from ._base import ISOMETRY, BuiltinMetric


@dataclass(frozen=True)
class RSA(BuiltinMetric):
    """Representational similarity analysis (Kriegeskorte et al. 2008).

    Each representation's RDM holds 1 - Pearson r between the activation
    vectors of two probe inputs; RDMs are compared by the Spearman
    correlation of their upper triangles (ties get average ranks; distances
    are float64 and never rounded, values within 1e-11 count as tied).  An
    input with constant activations correlates 0 with every other.  All
    pairs: each model's ranked triangle built once, one GEMM over them.
    """

    name = "rsa"
    description = "RSA: correlation-distance RDMs compared by Spearman rho"
    kind = "activation"
    higher_is_more_similar = True
    symmetric = True
    value_range = (-1.0, 1.0)
    invariances = frozenset({"isotropic_scaling", "permutation"})


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
