"""Benchmark ``sanity``: metric values along usefulness-preserving transforms, and declared invariances.

Seed 003 §3.2-3.3 (``/work/shared/seeds/003_0606242b8ab0131b.txt``): linear
CKA between a representation ``X`` and a transformed copy ``T(X)`` drops
towards 0 when one class is translated along a direction that keeps the
classes linearly separable, when ``X`` is multiplied by an invertible random
matrix ``M ~ N(mu, sigma^2)``, or when a single point is moved far away --
although a linear read-out is as good on ``T(X)`` as on ``X``.  This
benchmark declares (``requests``) every metric's matrix over ``X`` and its
transformed copies ``T(X)`` -- the ``representation_transform`` perturbation
(the three transforms, swept over a strength grid) applied by the runner to
real activations of the zoo's models -- and records ``metric(X, T(X))``
beside the accuracy of a logistic-regression read-out it fits on ``T(X)``
(read from the view).  It also checks each metric's declared invariances
(``simbench.types.INVARIANCES``) on real activations (two models of the zoo)
or real weights: the kind ``invariance`` of the same perturbation applies
the conformance kit's random transforms (:mod:`simbench.testing`).  The
benchmark never runs a metric or a model: the runner computes, validates and
caches every matrix it declares, and a failed matrix is a failed row here.

Record scheme (``benchmark`` = the suite label; one number per row):

=========================  =================  ==========  =====================================================
statistic                  group              coords /    value (``n``)
                                              model_b
=========================  =================  ==========  =====================================================
``value_mean``,            transform kind     strength    ``metric(X, T(X))`` on the metric's own scale, mean
``value_sd``                                              and sd over models x random draws (``n``)
``scaled_mean``,           transform kind     strength    the same on the calibrated scale (0 = unrelated,
``scaled_sd``                                             1 = identical; see ``calibration.calibrated``)
``probe_accuracy_mean``    transform kind     strength    ``metric = ""``: accuracy of a linear read-out
                                                          (multinomial logistic regression) fitted on ``T(X)``
``probe_accuracy_original`` ``info``          -           ``metric = ""``: the read-out's accuracy on X
``change``                 ``invariance``     invariance  max |metric(t(a), b) - metric(a, b)| (either or both
                                                          arguments transformed) / width of ``value_range``
``declared``               ``invariance``     invariance  1 if the metric declares the invariance
``holds``                  ``invariance``     invariance  1 if ``change <= invariance_tolerance``
``passed``                 ``invariance``     invariance  declared invariances only: 1 = holds, 0 = fails
``linear_cka_limit``       transform kind     -           ``metric = ""``: the ``linear_cka`` metric between X
                                                          and the transform's limit at infinite strength (class
                                                          indicator; ``X 1``), mean over models
``tolerance``              ``info``           -           ``invariance_tolerance``
=========================  =================  ==========  =====================================================

The strength is the coordinate ``coords["strength"]`` (a float: translation
/ outlier distance in RMS radii of the centred representation, or ``mu`` of
the invertible map); ``model_b`` holds the invariance name; ``model_a``
names the models used.  Weight metrics have no activations to transform:
they get invariance rows (weight permutation, positive rescaling through
ReLU) only.  A metric whose matrix fails (or holds non-finite values) gets a
row with ``status = "failed"`` and the error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field

import simbench
from simbench.errors import ParamError
from simbench.types import INVARIANCES

from .common import INFO, INVARIANCE_GROUP, TRANSFORMS


@dataclass(frozen=True)
class Sanity(simbench.Benchmark):
    """Seed 003 §3.2-3.3 sanity checks, on the zoo's real activations.

    ``transforms`` picks from ``class_translation`` (class
    ``translation_label``, -1 = the lowest, swept over
    ``translation_distances``, along the ``direction`` that keeps a linear
    classifier's decisions), ``invertible_linear`` (``Y = X M``, entries
    ``N(mu, invertible_sigma^2)``, swept over ``invertible_mu``) and
    ``outlier`` (one point moved ``outlier_distances`` RMS radii).  Each
    strength is drawn ``repeats`` times (different seeds) for each of the
    first ``max_models`` models on ``probe_set``; every metric compares the
    original with all transformed copies in one declared matrix per model.
    ``invariances`` (default: all known) are checked with the conformance
    kit's random transforms, ``invariance_draws`` draws each, on the first two
    models; an observed change up to ``invariance_tolerance`` (relative to the
    metric's value range) counts as invariant.
    """

    name: ClassVar[str] = "sanity"
    description: ClassVar[str] = "metric(X, T(X)) along class translation / invertible map / outlier; invariances"
    version: ClassVar[str] = "1"
    #: what ``simbench.testing.check_benchmark`` runs: every transform and invariance, a short sweep (the
    #: read-out fits dominate the time: one per copy)
    check_example: ClassVar[dict[str, Any]] = {"params": {
        "translation_distances": [0.0, 4.0], "invertible_mu": [0.0, 1.0], "outlier_distances": [0.0, 10.0],
        "repeats": 2, "invariance_draws": 1}}

    probe_set: str = "clean"
    max_models: Annotated[int, Field(ge=1)] = 2
    repeats: Annotated[int, Field(ge=1)] = 3
    transforms: tuple[str, ...] = TRANSFORMS
    translation_distances: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)
    direction: Literal["separating", "random"] = "separating"
    translation_label: int = -1
    invertible_mu: tuple[float, ...] = (0.0, 0.1, 0.3, 1.0, 3.0)
    invertible_sigma: Annotated[float, Field(gt=0.0)] = 1.0
    outlier_distances: tuple[float, ...] = (0.0, 1.0, 3.0, 10.0, 30.0, 100.0)
    invariances: tuple[str, ...] = ()
    invariance_draws: Annotated[int, Field(ge=1)] = 3
    invariance_tolerance: Annotated[float, Field(gt=0.0)] = 1e-4

    def __post_init__(self) -> None:
        unknown = [t for t in self.transforms if t not in TRANSFORMS]
        if unknown:
            raise ParamError("transforms", f"unknown transform(s) {unknown}; expected some of {list(TRANSFORMS)}")
        bad = sorted(set(self.invariances) - INVARIANCES)
        if bad:
            raise ParamError("invariances", f"unknown invariance(s) {bad}; known: {sorted(INVARIANCES)}")
        for key in ("translation_distances", "outlier_distances"):
            if any(v < 0 for v in getattr(self, key)):
                raise ParamError(key, "distances must be >= 0")

    def requests(self, view: simbench.StoreView) -> list[simbench.MatrixRequest]:
        """Per activation metric and model: the metric over X and every transformed copy; the linear-CKA limits;
        per metric: one batch of the first two models and their invariance-transformed copies."""
        from . import compute

        return compute.requests(self, view)

    def evaluate(self, view: simbench.StoreView) -> list[simbench.Record]:
        from . import compute

        return compute.evaluate(self, view)

    @classmethod
    def tables(cls, records: Any) -> list[Any]:
        """Verdict on seed 003's claims, value at the strongest setting, the invariance pass/fail table, curves."""
        from . import report

        return report.tables(records)

    @classmethod
    def plots(cls, records: Any, out_dir: Any, view: simbench.StoreView | None = None) -> list[Any]:
        """One panel per transform: each metric's calibrated value against strength, read-out accuracy below."""
        from . import report

        return report.plots(records, out_dir)
