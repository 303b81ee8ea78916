"""Benchmark ``cka_cubes``: seed 003 §3.2 (Fig. 3a, 3b) on the seed's synthetic cubes, as the seed ran them.

Seed 003 (*On the inadequacy of CKA as a measure of similarity in deep
learning*, ``/work/shared/seeds/003_0606242b8ab0131b.txt``) draws ``X`` as
10K points from the 1K-dimensional unit cube centred at the origin and 10K
from the same cube centred at ``(1.1, 0, ..., 0)``, and compares ``X`` with

* (a) ``Y`` = ``X`` with the second cube translated by ``c v``, ``v`` drawn
  from the ``d``-dimensional ball (uniformly; ``|v|`` is 1 up to 1e-3 at
  ``d = 1000``): "CKA quickly drops below 0.2 even for relatively small
  translation distances";
* (b) ``Y = X M``, ``M`` invertible with elements ``N(mu, sigma^2)`` (a
  singular draw is redrawn): "even for small values of mu and sigma, CKA
  drops to 0";
* (c) ``Y`` = ``X`` with a single point moved ``distance`` along a random
  unit direction.  The seed did this on a CIFAR-10 CNN's representations
  (Fig. 3c); here it is done on the cubes.

Mean and SD over ``instantiations`` random draws of ``v``, ``M`` or the
outlier (point, direction); ``X`` is drawn once, as in the seed.

The representations are synthetic arrays, not a model's activations, so
this benchmark is *zoo-free*: it draws ``X`` and every ``T(X)`` itself (from
the run seed, :func:`simbench.seeding.numpy_rng`) and calls each suite
metric's one-pair ``metric(X, T(X))`` (``view.metrics``) on them, one call
per instantiation and setting.  It reads nothing else from the store; the
suite's dataset and zoo are the smallest the suite format allows
(``docs/architecture.md``, "Zoo-free benchmarks").  A metric call that
raises is a failed row naming the metric and the setting; the others go on.

Record scheme (``benchmark`` = the suite label; ``group`` = transform):

=====================  ===========  ===============================  ==========================================
statistic              group        coords                           value (``n``)
=====================  ===========  ===============================  ==========================================
``value_mean``,        transform    ``c`` / ``mu``, ``sigma`` /      ``metric(X, T(X))``, mean and SD over the
``value_sd``                        ``distance``                     instantiations (``n`` = ok draws)
``threshold``          ``info``     ``model_a`` names it             a pre-declared verdict threshold
``size``               ``info``     ``model_a``: n / d / offset /    the cubes as drawn
                                    instantiations
=====================  ===========  ===============================  ==========================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field

import simbench
from simbench.errors import ParamError

from .common import TRANSFORMS


@dataclass(frozen=True)
class CkaCubes(simbench.Benchmark):
    """Seed 003 §3.2 Fig. 3a/3b (and 3c's outlier) on two ``dim``-dimensional unit cubes of ``n_per_cube`` points.

    ``translation_distances`` (c), ``invertible_mu`` x ``invertible_sigma``
    and ``outlier_distances`` are the sweeps; ``instantiations`` draws of
    each.  ``metrics`` picks suite metric labels (default: every activation
    metric of the suite).  The verdicts (``tables``) use the pre-declared
    thresholds: linear CKA below ``translation_below`` at some ``c <=
    translation_max_c`` (C*), and below ``invertible_below`` at some
    ``(mu, sigma)`` with both ``<= invertible_max`` (S*).  ``dtype``: the
    arrays the metrics get (``X`` is drawn in float64, then cast; the map's
    product is taken in ``dtype``).
    """

    name: ClassVar[str] = "cka_cubes"
    description: ClassVar[str] = "Seed 003 Fig. 3a/3b: CKA(X, T(X)) on the seed's two synthetic cubes"
    version: ClassVar[str] = "1"
    #: what ``simbench.testing.check_benchmark`` runs: small cubes, two draws
    check_example: ClassVar[dict[str, Any]] = {"params": {
        "n_per_cube": 60, "dim": 12, "instantiations": 2, "translation_distances": [0.0, 5.0],
        "invertible_mu": [0.0, 1.0], "invertible_sigma": [1.0], "outlier_distances": [0.0, 100.0]}}

    n_per_cube: Annotated[int, Field(ge=2)] = 10_000
    dim: Annotated[int, Field(ge=2)] = 1_000
    offset: float = 1.1
    instantiations: Annotated[int, Field(ge=1)] = 10
    transforms: tuple[str, ...] = TRANSFORMS
    translation_distances: tuple[float, ...] = (1.0, 2.0, 5.0, 10.0, 20.0)
    invertible_mu: tuple[float, ...] = (0.0, 0.01, 0.1, 1.0)
    invertible_sigma: tuple[Annotated[float, Field(gt=0.0)], ...] = (0.1, 1.0)
    outlier_distances: tuple[float, ...] = (100.0, 300.0, 1000.0, 3000.0)
    metrics: tuple[str, ...] = ()
    dtype: Literal["float64", "float32"] = "float64"
    #: C*: the largest translation distance that still counts as "relatively small" (seed: below 0.2)
    translation_max_c: Annotated[float, Field(gt=0.0)] = 10.0
    translation_below: Annotated[float, Field(gt=0.0)] = 0.2
    #: S*: the largest mu and sigma that still count as "small" (seed: CKA "drops to 0", read as < 0.05)
    invertible_max: Annotated[float, Field(gt=0.0)] = 1.0
    invertible_below: Annotated[float, Field(gt=0.0)] = 0.05

    def __post_init__(self) -> None:
        unknown = [t for t in self.transforms if t not in TRANSFORMS]
        if unknown:
            raise ParamError("transforms", f"unknown transform(s) {unknown}; expected some of {list(TRANSFORMS)}")
        for key in ("translation_distances", "outlier_distances"):
            if any(v < 0 for v in getattr(self, key)):
                raise ParamError(key, "distances must be >= 0")

    def evaluate(self, view: simbench.StoreView) -> list[simbench.Record]:
        from . import compute

        return compute.evaluate(self, view)

    @classmethod
    def tables(cls, records: Any) -> list[Any]:
        """The verdicts on the seed's two claims, then one mean/SD table per transform."""
        from . import report

        return report.tables(records)

    @classmethod
    def plots(cls, records: Any, out_dir: Any, view: simbench.StoreView | None = None) -> list[Any]:
        """The seed's Fig. 3 layout: (a) CKA vs c, (b) CKA vs mu (one line per sigma), (c) CKA vs outlier distance."""
        from . import report

        return report.plots(records, out_dir)
