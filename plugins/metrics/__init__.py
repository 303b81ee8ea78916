"""Built-in similarity metrics.

Each family's module declares its metric classes and, next to them, their
computation: every class's ``__call__`` and ``pairwise`` call functions of
its own module, which import torch (and the shared :mod:`._linalg`) on first
use, so importing the classes stays light.
"""

from __future__ import annotations

import simbench

from .cca import PWCCA, SVCCA, CCAMean
from .cka import RBFCKA, DeconfoundedCKA, LinearCKA, MinibatchCKA, UnbiasedCKA
from .neighbours import JaccardKNN, MutualKNN
from .rsa import RSA, LinearRegressionR2
from .shape import AngularShape, Procrustes
from .weights import WeightsCKA

METRICS = (
    LinearCKA,
    UnbiasedCKA,
    RBFCKA,
    MinibatchCKA,
    DeconfoundedCKA,
    Procrustes,
    AngularShape,
    WeightsCKA,
    CCAMean,
    SVCCA,
    PWCCA,
    RSA,
    LinearRegressionR2,
    MutualKNN,
    JaccardKNN,
)


@simbench.hookimpl
def register_metrics(register):  # type: ignore[no-untyped-def]
    """Register every built-in metric."""
    for cls in METRICS:
        register(cls)
