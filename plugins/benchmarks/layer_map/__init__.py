"""Benchmark ``layer_map``: layer x layer similarity maps in and out of distribution.

Record scheme (long format, one number per row; ``benchmark`` = the suite label, filled in by the runner,
``metric`` = the map's metric, ``probe_set`` = the probe set, ``group`` = the
model id, ``n`` = number of probes):

=====================  ===========================  =====================================================
statistic              model_a / model_b            value
=====================  ===========================  =====================================================
``map``                layer_i / layer_j            map entry ``[i, j]`` (every ordered pair); coords
                                                    ``layer_a = i``, ``layer_b = j`` (0-based)
``offdiag_mean``       -                            mean of the off-diagonal entries
``offdiag_median``     -                            their median
``offdiag_std``        -                            their standard deviation
``offdiag_skew``       -                            their skewness (Fisher-Pearson g1)
``adjacent_mean``      -                            mean similarity of consecutive layers
``diag_mean``          -                            mean of the diagonal (1 for CKA)
``pdf``                -                            density of off-diagonal values in the bin; coords
                                                    ``bin_low``, ``bin_high`` (the bin's edges)
``eig_<k>``            -                            k-th largest eigenvalue of the (symmetrised) map;
                                                    coords ``rank = k``
``effective_rank``     -                            exp(entropy) of the normalised positive eigenvalues
``block_score``        -                            ``1 - (effective_rank - 1) / (L - 1)``: 0 = every layer
                                                    distinct (identity map), 1 = one block (all layers alike)
``n_layers``           -                            L
``task_score``         -                            mean R^2 over ``score_targets`` (regression) or accuracy
``r2_<target>``        -                            R^2 of each regression target
``delta_<stat>``       -                            ``stat(probe_set) - stat(reference)`` for the summaries
``spearman_task_drop_  -                            ``group = "all"``, ``probe_set = ""``: Spearman rho over
vs_delta_<stat>``                                   (model, shifted probe set) pairs of the task-score drop
                                                    with ``delta_block_score`` / ``delta_offdiag_mean``
                                                    (without ``design_factor``)
=====================  ===========================  =====================================================

With ``design_factor`` set (the designed shift test, :mod:`.design`), each model is mapped on its own
reference, shifted and control probe sets, and the rows add ``excess_drop`` / ``excess_<stat>`` per model
(``probe_set = ""``), ``test_spearman_<stat>`` / ``test_groups_<stat>`` (``group = "design"``, coords ``p``,
``alpha``, ``permutations``, group sizes) and ``cell_<stat>`` per cell of models (``group`` = the cell).

Off-diagonal statistics use ``i < j`` for symmetric metrics and all
``i != j`` otherwise.  Distance-like metrics (``higher_is_more_similar =
False``) are negated before the statistics, so "higher = more similar"
throughout; ``map`` rows keep the metric's own values.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar

from pydantic import Field

import simbench
from simbench import ParamError

#: summary statistics that also get a ``delta_`` row against the reference probe set
from .common import DELTA_STATS


@dataclass(frozen=True)
class LayerMap(simbench.Benchmark):
    """Layer-wise similarity maps under distribution shift (seed ``000_3674ff43c5aa32ce``).

    For each model (the first ``max_models`` of the zoo) and each probe set,
    the benchmark declares (``requests``) an ``L x L`` map: a similarity
    ``metric`` (default ``minibatch_cka``, configured with ``metric_params``)
    between every readable layer's output and every other's, which the
    runner computes, validates and caches like any similarity cell.  The seed forwards the probes twice and compares the passes; in eval
    mode (no dropout, BatchNorm running statistics) the two passes are
    identical, so one pass is used.  Summaries follow the seed: the
    distribution of off-diagonal values (mean, skew, a histogram PDF), the
    eigenvalue spectrum, and one block-structure score, beside the model's
    task score (R^2 for regression, accuracy for classification) on the same
    probes.  The seed's finding: a model that fails out of distribution has
    stagnant, block-structured layers on the shifted probes (higher
    off-diagonal similarity, larger block score); a robust one does not.

    The designed shift test (``design_factor``, default off): each model is
    mapped on three probe sets chosen by its factor ``design_factor`` (e.g.
    ``train_on``): ``reference_sets[value]`` (in distribution),
    ``shifted_sets[value]`` (the shift under test) and ``control_sets[value]``
    (an input change of the same size inside the training distribution);
    templates may name factors (``"{field}"``).  Pre-declared, two-sided,
    model-level tests at level ``alpha`` (``permutations`` random draws): the
    Spearman rho over models of the excess task-score drop (control minus
    shifted) against the excess block score (shifted minus control); the
    block-score excess of models that fail (task score drops by more than
    ``fail_drop``) minus that of the others; per cell of seeds, a sign-flip
    test of the paired shifted-vs-control excess.  See :mod:`.design`.

    ``probe_sets`` (default: all, ``reference`` first) names the probe sets;
    ``layers`` (default: every readable layer) the layers; ``score_targets``
    the regression targets averaged into ``task_score`` (default: all; names
    from the data's ``meta["targets"]``).  See the module docstring for the
    record scheme, and :func:`plot` for the heatmaps.
    """

    name: ClassVar[str] = "layer_map"
    description: ClassVar[str] = "Layer x layer similarity maps, off-diagonal statistics and R^2, ID vs shifted"

    metric: str = "minibatch_cka"
    metric_params: dict[str, Any] = field(default_factory=dict)
    probe_sets: tuple[str, ...] = ()
    reference: str = "clean"
    max_models: Annotated[int, Field(ge=1)] = 8
    layers: tuple[str, ...] = ()
    score_targets: tuple[str, ...] = ()
    bins: Annotated[int, Field(ge=2, le=200)] = 20
    design_factor: str = ""
    reference_sets: dict[str, str] = field(default_factory=dict)
    shifted_sets: dict[str, str] = field(default_factory=dict)
    control_sets: dict[str, str] = field(default_factory=dict)
    fail_drop: Annotated[float, Field(gt=0.0)] = 0.2
    alpha: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.05
    permutations: Annotated[int, Field(ge=99, le=1_000_000)] = 9999
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.metric:
            raise ParamError("metric", "must name an activation metric")
        if len(set(self.layers)) != len(self.layers):
            raise ParamError("layers", "must not repeat a layer")
        if self.layers and len(self.layers) < 2:
            raise ParamError("layers", "a layer map needs at least two layers")
        tables = {"reference_sets": self.reference_sets, "shifted_sets": self.shifted_sets,
                  "control_sets": self.control_sets}
        if self.design_factor:
            for key, table in tables.items():
                if not table:
                    raise ParamError(key, f"must map each value of design_factor {self.design_factor!r} to a probe "
                                     "set (e.g. {A = \"clean\", B = \"cosmo_shift/B\"})")
            if not (set(self.reference_sets) == set(self.shifted_sets) == set(self.control_sets)):
                raise ParamError("reference_sets", "reference_sets, shifted_sets and control_sets must have the same "
                                 f"keys (got {sorted(self.reference_sets)}, {sorted(self.shifted_sets)}, "
                                 f"{sorted(self.control_sets)})")
            if self.probe_sets:
                raise ParamError("probe_sets", "is set by reference_sets / shifted_sets / control_sets when "
                                 "design_factor is set; leave it out")
        else:
            for key, table in tables.items():
                if table:
                    raise ParamError(key, "needs design_factor (the model factor that picks each model's probe sets)")

    def requests(self, view: simbench.StoreView) -> list[simbench.MatrixRequest]:
        """One ``L x L`` map per (model, probe set): ``metric`` over the model's layers, computed by the runner."""
        if self.design_factor:
            from . import design

            return design.requests(self, view)
        from . import compute

        return compute.requests(self, view)

    def evaluate(self, view: simbench.StoreView) -> Iterable[simbench.Record]:
        if self.design_factor:
            from . import design

            return design.evaluate(self, view)
        from . import compute

        return compute.evaluate(self, view)

    @classmethod
    def tables(cls, records: Any) -> list[Any]:
        """Per model and probe set summaries (headline), shifted-minus-reference deltas with a verdict per
        model, the across-model correlation of task-score drop with block structure, and failures."""
        from . import report

        return report.tables(records)

    @classmethod
    def plots(cls, records: Any, out_dir: Any, view: simbench.StoreView | None = None) -> list[Any]:
        """Heatmaps per model (probe sets side by side, scores in the titles), PDFs and spectra."""
        return plot(records, out_dir)


def plot(records: Any, out_dir: str | Path) -> list[Path]:
    """Write one PNG per (metric, model): the maps side by side, scores in the titles.

    ``records`` holds this benchmark's rows: a pandas DataFrame with the
    columns of :class:`simbench.Record`, or an iterable of records.  Below the
    heatmaps: the PDF of off-diagonal values and the eigenvalue spectrum per
    probe set, as in seed 000's Fig. 1-2.  Returns the written paths.
    """
    from . import report

    return report.plot(records, out_dir)
