"""Benchmark ``contamination``: feature contamination measurements (seed 004).

Record scheme (``benchmark`` = the suite label, filled in by the runner; one number per row):

=====================  ==========  =========  ==============  ==================================================
statistic              model_a     group      probe_set       value
=====================  ==========  =========  ==============  ==================================================
``hinge_risk``         model id    arch       each            mean ``max(0, 1 - y f(x))``
``error``              model id    arch       each            0-1 error (sign of ``f``)
``selectivity``        model id    arch       each            mean neuron selectivity, eq. 61 (on activation
                                                              magnitudes)
``asymmetry``          model id    arch       each            mean ``|D+ - D-| / (D+ + D-)``, ``D`` = class-mean
                                                              activation derivative (0 for a linear net)
``ood_gap_risk``       model id    arch       each OOD set    ``hinge_risk(OOD) - hinge_risk(ID)``
``ood_gap_error``      model id    arch       each OOD set    ``error(OOD) - error(ID)``
``core_proj``          model id    arch       ""              mean over neurons of the norm of the hidden
                                                              weight's projection onto the core subspace
``bg_proj``            model id    arch       ""              the same onto the background subspace
``bg_corr``            model id    arch       ""              mean signed coordinate of hidden weights on the
                                                              background features
``bg_growth``          model id    arch       ""              ``bg_proj`` final / at initialisation
``trace_<column>``     model id    arch       ""              training trace (coords ``step`` = SGD step); columns:
                                                              core_proj, bg_proj, bg_corr, id_risk, ood_risk,
                                                              id_error, ood_error (validation split)
``mean_<stat>``        ""          arch       as the stat     mean over the arch's models (seeds)
``reproduced``         ""          finding    first OOD set   1 if the seed's finding holds, else 0
=====================  ==========  =========  ==============  ==================================================

The finding (seed 004 §4, App. F.1): networks with ReLU accumulate weight
projections onto the label-independent background features during training
and fail OOD, linear (identity) networks do not.  ``reproduced`` is 1 when
(a) the ReLU models' mean ``bg_proj`` is at least twice the identity
models', with positive ``bg_corr``, and a one-sided paired t-test over the
seeds (a ReLU and an identity model of one seed share initial weights and
batch order) of ``log(bg_proj ReLU / identity) > log 2`` has p < ``alpha``;
and (b) their mean OOD hinge-risk gap is at least 0.1 and five times the
identity models', and a one-sided paired t-test of ``gap ReLU - gap
identity > 0.1`` has p < ``alpha``.  The components (``p_contaminated``,
``p_fails_ood``, ``n_seed_pairs``, ...) are recorded beside it
(``group = "finding"``).  The 0-1 error is not tested.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar

from pydantic import Field

import simbench


@dataclass(frozen=True)
class Contamination(simbench.Benchmark):
    """Feature contamination (seed ``004_ae8e852829be66a0``) of two-layer networks.

    Needs ``feature_contamination`` data (its dictionary defines the core and
    background subspaces) and the ``contamination_net`` zoo's models, whose
    float64 layers ``hidden_f64`` (post-activations) and ``act_derivative``
    (the activation's derivative at the pre-activations) and ``history``
    buffer (the training trace) it reads from the store view, with the hidden
    weights; it runs no model.  Per model and
    probe set: hinge risk and error, neuron selectivity (App. F.3, eq. 61)
    and activation asymmetry (Theorem 4.1); per model: weight projections
    onto the core and background subspaces, finally and over training (from
    the model's ``history``); per architecture: means over seeds; and a
    verdict row saying whether the seed's ReLU-vs-linear finding holds.
    ``ood_probe_sets`` defaults to every probe set but ``id_probe_set``.
    """

    name: ClassVar[str] = "contamination"
    description: ClassVar[str] = "ID/OOD risk, background weight projections, selectivity, activation asymmetry"

    id_probe_set: str = "clean"
    ood_probe_sets: tuple[str, ...] = ()
    eps: Annotated[float, Field(gt=0.0)] = 1e-6
    contaminated_arch: str = "relu"
    linear_arch: str = "identity"
    alpha: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.05

    #: what ``simbench.testing.check_benchmark`` runs it on: a real, small run of its study's data and zoo
    check_example: ClassVar[dict[str, Any]] = {"store": {
        "dataset": ("feature_contamination", {"n_train": 200, "n_val": 50, "n_test": 120}),
        "zoo": ("contamination_net", {"activations": ("relu", "identity"), "seeds": (0,), "width": 16,
                                      "steps": 40, "record_every": 20}),
        "perturbations": [("background_shift", {})],
        "metrics": {},
    }}

    def evaluate(self, view: simbench.StoreView) -> Iterable[simbench.Record]:
        from . import compute

        return compute.evaluate(self, view)

    @classmethod
    def tables(cls, records: Any) -> list[Any]:
        """Per-activation means (headline), the verdict on the seed's finding, and per-model values."""
        from . import report

        return report.tables(records)

    @classmethod
    def plots(cls, records: Any, out_dir: Any, view: simbench.StoreView | None = None) -> list[Any]:
        return plot(records, out_dir)


def plot(records: Any, out_dir: str | Path) -> list[Path]:
    """Training traces of the background / core projections and ID / OOD risk per activation, and bars."""
    from . import report

    return report.plot(records, out_dir)


@dataclass(frozen=True)
class ContaminationGeneral(simbench.Benchmark):
    """Feature contamination in seed 004's general setting (App. F.1, Fig. 3(d) / 10), tested over models.

    For ``contamination_net`` models trained in the general setting (``sphere`` core, biases, AdamW): per model
    the background alignment ``log R`` of the hidden weights (energy along the mean background direction over
    the mean energy along the other background directions; ``R`` = 1 when no background direction is
    preferred), at initialisation (the zoo's trace) and after training, and ID / OOD hinge risk and 0-1 error.
    Per activation, a one-sided one-sample t-test over its models (seeds) of ``mean log R >
    log(align_threshold)``, Holm-adjusted over the tested activations (``tested_archs``, default every arch but
    ``control_archs``); an activation is contaminated when the adjusted p is below ``alpha`` and its mean ID
    error is at most ``max_id_error``.  Reproduced when every tested activation is contaminated.  Also reported
    (not part of the verdict): a one-sided paired t-test of OOD error > ID error.  Computation:
    :mod:`simbench_plugins.benchmarks.contamination.general`.
    """

    name: ClassVar[str] = "contamination_general"
    description: ClassVar[str] = "Seed 004 general setting: background alignment per activation, model-level test"

    id_probe_set: str = "clean"
    ood_probe_set: str = "background_shift/ood"
    tested_archs: tuple[str, ...] = ()
    control_archs: tuple[str, ...] = ("identity",)
    align_threshold: Annotated[float, Field(gt=0.0)] = 2.0
    alpha: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.05
    max_id_error: Annotated[float, Field(ge=0.0, le=1.0)] = 0.2

    check_example: ClassVar[dict[str, Any]] = {"store": {
        "dataset": ("feature_contamination", {"core": "sphere", "d_input": 64, "n_train": 200, "n_val": 50,
                                              "n_test": 120}),
        "zoo": ("contamination_net", {"activations": ("relu", "identity"), "seeds": (0, 1), "width": 16,
                                      "steps": 40, "record_every": 20, "bias": True, "train_output": True,
                                      "optimizer": "adamw", "init": "torch", "lr": 3e-3, "weight_decay": 1e-2}),
        "perturbations": [("background_shift", {})],
        "metrics": {},
    }}

    def evaluate(self, view: simbench.StoreView) -> Iterable[simbench.Record]:
        from . import general

        return general.evaluate(self, view)

    @classmethod
    def tables(cls, records: Any) -> list[Any]:
        """Per-activation tests, the verdict, per-model values."""
        from . import general

        return general.tables(records)


@dataclass(frozen=True)
class ContaminationDistillation(simbench.Benchmark):
    """Seed 004 §2 on the synthetic generator: does a student distilled from an OOD-robust teacher close only
    part of the OOD gap between standard training and the teacher?

    Needs the ``contamination_distill`` zoo (a teacher, a distilled student and a standard network per seed,
    each under a linear probe fitted ID).  Per model: probe accuracy ID and OOD, background alignment of the
    hidden weights; per seed: the student's relative representation error ID / OOD and the fraction of the
    teacher-vs-standard OOD accuracy gap it closes; the pre-declared verdict (one-sided t-tests over seeds:
    closed fraction > 0 and < ``max_closed``, both at ``alpha``; no verdict when the student's mean ID accuracy
    is more than ``id_tolerance`` below the teacher's).  Computation:
    :mod:`simbench_plugins.benchmarks.contamination.distill`.
    """

    name: ClassVar[str] = "contamination_distill"
    description: ClassVar[str] = "Seed 004 §2 analogue: teacher vs distilled student vs standard, OOD gap closed"

    id_probe_set: str = "clean"
    ood_probe_set: str = "background_shift/ood"
    max_closed: Annotated[float, Field(gt=0.0, le=1.0)] = 0.75
    alpha: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.05
    id_tolerance: Annotated[float, Field(ge=0.0)] = 0.02

    check_example: ClassVar[dict[str, Any]] = {"store": {
        "dataset": ("feature_contamination", {"core": "sphere", "d_input": 64, "n_train": 200, "n_val": 50,
                                              "n_test": 120}),
        "zoo": ("contamination_distill", {"seeds": (0, 1), "width": 16, "steps": 40}),
        "perturbations": [("background_shift", {})],
        "metrics": {},
    }}

    def evaluate(self, view: simbench.StoreView) -> Iterable[simbench.Record]:
        from . import distill

        return distill.evaluate(self, view)

    @classmethod
    def tables(cls, records: Any) -> list[Any]:
        """Accuracies per role, the verdict, per-model values."""
        from . import distill

        return distill.tables(records)
