"""Local-neighbourhood measures: mutual k-NN and Jaccard k-NN overlap."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from pydantic import Field

from ._base import BuiltinMetric

_COSINE = frozenset({"orthogonal", "isotropic_scaling", "permutation"})


@dataclass(frozen=True)
class MutualKNN(BuiltinMetric):
    """Mutual k-nearest-neighbour alignment (Huh et al. 2024).

    Mean over probe inputs of ``|N_k^X(i) & N_k^Y(i)| / k`` with cosine
    neighbours (an input is not its own neighbour).  Needs n > k.  Ties at
    the k-th neighbour are split: the expected overlap over uniformly random
    tie-breaks, so the value does not depend on the order of the probes.  A
    constant representation scores the chance level ``k / (n - 1)``.
    """

    name = "mutual_knn"
    description = "Mutual k-NN overlap, cosine neighbours"
    kind = "activation"
    higher_is_more_similar = True
    symmetric = True
    value_range = (0.0, 1.0)
    invariances = _COSINE

    k: Annotated[int, Field(ge=1)] = 10


@dataclass(frozen=True)
class JaccardKNN(BuiltinMetric):
    """Mean Jaccard index ``|N_k^X(i) & N_k^Y(i)| / |N_k^X(i) | N_k^Y(i)|`` of
    cosine k-NN sets (Klabunde et al. 2023).  Needs n > k.  With ties at the
    k-th neighbour, each input's expected overlap ``o`` over random
    tie-breaks gives ``o / (2k - o)``; a constant representation scores that
    with ``o = k^2 / (n - 1)``."""

    name = "jaccard_knn"
    description = "Jaccard k-NN overlap, cosine neighbours"
    kind = "activation"
    higher_is_more_similar = True
    symmetric = True
    value_range = (0.0, 1.0)
    invariances = _COSINE

    k: Annotated[int, Field(ge=1)] = 10
