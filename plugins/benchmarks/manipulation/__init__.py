"""Benchmark ``manipulation``: how far does a metric move when the function does not?

Seed 003 §3.4 (``/work/shared/seeds/003_0606242b8ab0131b.txt``): a trained
network can be fine-tuned so that its layer-by-layer CKA map takes almost any
shape while distillation keeps its outputs.  The ``cka_map_manipulation``
perturbation adds such copies to the zoo (factors ``original`` and
``manipulated`` = the map target).  Each (original, manipulated) pair agrees
on almost every probe, so a metric grounded in function should call the two
nearly identical; this benchmark measures how far each metric moves instead,
against the yardstick of the zoo itself -- the pairs of distinct original
models, which really do differ in function.

Per metric, probe set and pair (oriented similarity ``S``, higher = more
similar; asymmetric metrics symmetrised):

- ``displacement = (S[o, o] - S[o, m]) / (S[o, o] - median S[o', o''])``:
  0 = the metric did not move, 1 = it moved as far as a typical pair of
  different original models (the median over distinct originals);
- ``closer_fraction``: share of the original-original pairs the metric
  calls at least as similar as the (original, manipulated) pair (0 = the
  manipulated copy is closer than every genuinely different model);
- ``movement_scaled``: the drop on the calibrated scale (0 = unrelated,
  1 = identical; see ``calibration.calibrated``).

Record scheme (``benchmark`` = the suite label, one number per row):

==============================  ==============  =========================  ========================================
statistic                       group           model_a / model_b          value (``n``)
==============================  ==============  =========================  ========================================
``similarity``                  map target      original / manipulated     ``S[o, m]`` (metric's own orientation:
                                                                           oriented, i.e. distances negated)
``displacement``,               map target      original / manipulated     as above (``n`` = reference pairs)
``closer_fraction``,
``movement_scaled``
``displacement_mean``, ...      map target      -                          mean over the target's pairs (``n``
                                                                           pairs); ``probe_set`` = a probe set or
                                                                           ``(mean over probe sets)``
``rank``                        map target      -                          aggregate only: 1 = moved least
``agreement``                   map target      original / manipulated     ``metric = ""``: fraction of equal
                                                                           predictions on the probe set
``accuracy_change``             map target      original / manipulated     ``metric = ""``: accuracy(m) - acc.(o)
``map_offdiag_original``,       map target      original / manipulated     ``metric = ""``: mean off-diagonal linear
``map_offdiag``,                                                           CKA of the layer map before / after,
``map_distance``,                                                          mean |map - target| (all cells), the
``map_first_last_original``,                                               first<->last cell before / after, and
``map_first_last``,                                                        mean |map - target| over the off-diagonal
``map_target_distance_original``,                                          cells before / after (from the
``map_target_distance``                                                    perturbation's factors, when present)
``agreement_reference``         ``reference``   -                          ``metric = ""``: median agreement of
                                                                           distinct originals
==============================  ==============  =========================  ========================================

Weight metrics are measured once (``probe_set = "weights"``) and join the
aggregate.  Group ``all`` pools every target when there are several.  A
metric that fails gets a row ``displacement_mean = NaN``, ``status =
"failed"`` and the benchmark goes on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import simbench

from .common import ALL_PROBES, REFERENCE


@dataclass(frozen=True)
class Manipulation(simbench.Benchmark):
    """Seed 003 §3.4: similarity of a model and its CKA-map-manipulated, function-preserving copy.

    Needs a zoo run with the ``cka_map_manipulation`` perturbation (any map
    target; several perturbations may be listed) and at least two unmanipulated
    models for the yardstick.  ``probe_sets`` (default: all) names the probe
    sets used.  Metrics are ranked per map target by the mean displacement
    over pairs and probe sets (rank 1 = moved least, i.e. best at seeing that
    the function was preserved).  See the module docstring for the records.
    """

    name: ClassVar[str] = "manipulation"
    description: ClassVar[str] = "how far each metric moves between a model and its CKA-manipulated copy (seed 003)"
    version: ClassVar[str] = "1"

    probe_sets: tuple[str, ...] = ()

    def evaluate(self, view: simbench.StoreView) -> list[simbench.Record]:
        from . import compute

        return compute.evaluate(self, view)

    @classmethod
    def tables(cls, records: Any) -> list[Any]:
        """Ranking by displacement per target, the verdict on seed 003 §3.4, per-probe-set detail, pairs."""
        from . import report

        return report.tables(records)

    @classmethod
    def plots(cls, records: Any, out_dir: Any, view: simbench.StoreView | None = None) -> list[Any]:
        """Displacement per metric and target (bars with the per-pair spread)."""
        from . import report

        return report.plots(records, out_dir)
