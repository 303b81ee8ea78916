"""Benchmark ``survey_transfer``: per-task r, R², MAE of regression models across surveys (seed 002).

Record scheme (long format, one number per row; ``benchmark`` = the suite
label, filled in by the runner; ``group`` = the model's training mix, the
value of the zoo factor ``group_by``; ``model_a`` = the model id;
``probe_set`` = the survey; ``n`` = number of probes):

===========================  ===========  ======================================================
statistic                    model_b      value
===========================  ===========  ======================================================
``r`` / ``r2`` / ``mae``     task name    Pearson r, R² and mean absolute error of one task
``r`` / ``r2`` / ``mae`` /   ``overall``  the same averaged over the tasks (seed 002's "overall"),
``mse``                                   and the mean squared error over all task columns
``block_score``,             ``layers``   layer x layer map of the model on the probe set
``offdiag_mean``                          (``layer_metric``; see ``layer_map``); a map that could
                                          not be computed is one failed ``block_score`` row
``delta_block_score``,       ``layers``   unseen-survey minus in-distribution value of the map
``delta_offdiag_mean``                    statistic (unseen probe sets only)
``probe_role``               -            per probe set: 0 = in distribution, 1 = other, 2 = unseen
``baseline``                 -            1, ``group`` = the single-survey (baseline) group
``mix_role``                 -            ``group`` = a mix named by ``seed_mix`` (value 1),
                                          ``control_mix`` (2) or ``overlap_mix`` (3)
``alpha``                    -            the declared significance level
===========================  ===========  ======================================================

Tables and the verdicts are computed from these rows by
:mod:`simbench_plugins.benchmarks.survey_transfer.report`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar

from pydantic import Field

import simbench
from simbench import ParamError


@dataclass(frozen=True)
class SurveyTransfer(simbench.Benchmark):
    """Does a model trained on one survey transfer to another, and does mixed-survey training help?

    Seed ``002_611b2e197fb6c8f4`` trains a galaxy-morphology regressor on one
    survey (SDSS) or on a mix (SDSS + DECaLS) and evaluates both on an unseen
    survey (UKIDSS), reporting per task (Galaxy Zoo question) the Pearson
    correlation r, R² and the mean absolute error, and their averages over
    tasks.  This benchmark does the same for any regression zoo: per model and
    probe set (a survey) it computes r, R² and MAE per task, grouped by the
    zoo factor ``group_by`` (default ``train_surveys``: the training mix);
    the tables give mean ± sd over the models of a group (seeds), the
    degradation from the ``in_distribution`` probe set, the seed's
    single-survey vs mixed comparison on every ``unseen`` probe set with a
    plain verdict (Welch t-test over seeds on the overall R²), and per-task r.

    The test is declared here, before any run: the models (seeds) are the
    units; per unseen survey a two-sided Welch t-test of the per-seed overall
    R² of two mixes, Holm-adjusted over the ``unseen`` surveys (one family
    per pair of mixes) at level ``alpha``.  A comparison is "reproduced" only
    with better r, R² and MAE and an adjusted p < ``alpha``; anything else
    says "not reproduced" with the reason.

    ``control_mix`` names a mix whose added survey does not resemble the
    unseen ones (as far from the in-distribution survey as the seed's mix's
    added survey, shifted the other way); the ``control`` table asks, per
    unseen survey, whether a gain of ``seed_mix`` (default: the first
    non-baseline group) over the single survey is explained by survey
    diversity (the control mix gains too, significantly) or by the added
    survey's resemblance to the unseen one (the control does not gain and
    ``seed_mix`` beats it significantly).  ``overlap_mix`` names a
    maximum-overlap mix of the same surveys as ``seed_mix`` (the zoo's
    ``pairing = "overlap"``); the ``overlap`` table tests seed 002's "a random
    mix transfers better than a maximum-overlap mix" on the overall r (the
    seed's number), Welch over seeds, Holm over the unseen surveys.

    Tasks: ``targets`` (target column names) if given, else the data's
    ``meta["tasks"]`` (task name -> column), else every column of
    ``meta["targets"]``.  ``baseline`` names the single-survey group (default:
    the group of the zoo's first model).

    With ``layer_metric`` set (default ``linear_cka``, a suite metric label or
    a registered name configured with ``layer_metric_params``), it also
    declares (``requests``) each model's layer x layer map on the
    in-distribution and unseen probe sets, as the ``layer_map`` benchmark
    does, over ``layers`` or every readable layer, for every model or the
    first ``map_models_per_group`` of each group (zoo order; 0 = all); the
    runner computes and caches them.  It asks whether the change in block structure tells the
    models that degrade most from those that do not (Spearman correlation
    over models and unseen surveys between the R² drop and the block-score
    rise).  It reads outputs and those maps from the store view and runs no
    model or metric itself.
    """

    name: ClassVar[str] = "survey_transfer"
    description: ClassVar[str] = "Per-task r, R², MAE across surveys; single-survey vs mixed training (seed 002)"

    in_distribution: str = "survey_shift/reference"
    unseen: tuple[str, ...] = ()
    probe_sets: tuple[str, ...] = ()
    group_by: str = "train_surveys"
    baseline: str = ""
    targets: tuple[str, ...] = ()
    layer_metric: str = "linear_cka"
    layer_metric_params: dict[str, Any] = field(default_factory=dict)
    layers: tuple[str, ...] = ()
    seed_mix: str = ""
    control_mix: str = ""
    overlap_mix: str = ""
    alpha: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.05
    map_models_per_group: Annotated[int, Field(ge=0)] = 0

    #: what ``simbench.testing.check_benchmark`` runs it on: the shared fake store's models as regressors
    check_example: ClassVar[dict[str, Any]] = {
        "params": {"in_distribution": "clean", "unseen": ["noise/0.5"], "group_by": "arch"},
        "store": {"task": "regression"},
    }

    def __post_init__(self) -> None:
        if not self.in_distribution:
            raise ParamError("in_distribution", "must name the probe set the models were trained on")
        if self.in_distribution in self.unseen:
            raise ParamError("unseen", f"{self.in_distribution!r} is the in-distribution probe set")
        if len(set(self.targets)) != len(self.targets):
            raise ParamError("targets", "must not repeat a target")
        if self.layers and len(self.layers) < 2:
            raise ParamError("layers", "a layer map needs at least two layers")
        named = [m for m in (self.seed_mix, self.control_mix, self.overlap_mix) if m]
        if len(set(named)) != len(named):
            raise ParamError("control_mix", "seed_mix, control_mix and overlap_mix must name different mixes")
        if self.baseline and self.baseline in named:
            raise ParamError("baseline", f"{self.baseline!r} is also named as seed_mix, control_mix or overlap_mix")

    def __hash__(self) -> int:  # a dict-valued field would make the generated hash fail
        import json

        return hash(json.dumps(self.params(), sort_keys=True, default=list))

    def requests(self, view: simbench.StoreView) -> list[simbench.MatrixRequest]:
        """One ``L x L`` map per model and ID / unseen probe set (``layer_metric`` over its layers); none
        without ``layer_metric``."""
        from . import compute

        return compute.requests(self, view)

    def evaluate(self, view: simbench.StoreView) -> Iterable[simbench.Record]:
        from . import compute

        return compute.evaluate(self, view)

    @classmethod
    def tables(cls, records: Any) -> list[Any]:
        """Verdicts (headline), overall scores per mix and survey, the seed's single vs mixed table on each
        unseen survey, per-task r / R² / MAE, and the layer-map separation of robust from fragile models."""
        from . import report

        return report.tables(records)

    @classmethod
    def plots(cls, records: Any, out_dir: Any, view: simbench.StoreView | None = None) -> list[Any]:
        """Per-task R² and r by survey, grouped by training mix; a heatmap of per-task r."""
        from . import report

        return report.plots(records, out_dir)
