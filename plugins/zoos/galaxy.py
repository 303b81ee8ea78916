"""Zoo ``galaxy_cnn``: small CNNs regressing Galaxy-Zoo vote fractions, trained on one survey or a mix (seed 002).

Torch code lives in :mod:`simbench_plugins.zoos._galaxy_impl`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar

from pydantic import Field

import simbench
from simbench import ParamError

from ._galaxy_names import CLEAN, PAIRINGS, mix_label


@dataclass(frozen=True)
class GalaxyCNN(simbench.Zoo):
    """Galaxy-morphology CNNs trained on one imaging survey or on a mix of surveys (seed ``002_611b2e197fb6c8f4``).

    Seed 002 fine-tunes a vision transformer on SDSS images (Galaxy Zoo vote
    fractions) and compares it with one trained on an equal-sized mix of SDSS
    and DECaLS, both evaluated on unseen UKIDSS images.  Here the dataset's
    (idealised) training images are pushed through survey presets of
    ``survey_shift`` (:data:`simbench_plugins.perturbations.survey.PRESETS`):
    each entry of ``train_surveys`` is one training mix; a mix of ``k``
    surveys assigns every ``k``-th training (and validation) image to each
    survey, so all mixes train on the same galaxies and the same number of
    images.  ``"clean"`` means no survey.

    ``pairing`` (one entry per mix; default all ``"random"``) says how a
    mix's training images are drawn: ``"random"`` = ``N`` different galaxies,
    every ``k``-th through each survey (seed 002's random SDSS + DECaLS mix);
    ``"overlap"`` = the first ``ceil(N / k)`` galaxies, each seen through all
    ``k`` surveys (seed 002's "maximum overlap" mix: galaxies that appear in
    both surveys; same number of images, fewer distinct galaxies).  Its label
    is the mix label plus ``-overlap``.  The validation images are those of
    the random mix of the same surveys, so every mix selects its epoch on the
    same images.

    ``extra_surveys`` names further surveys by the free parameters of
    ``survey_shift`` (``band_mix``, ``band_gamma``, ``psf``, ``psf_fwhm``,
    ``noise_std``, ``stretch`` ...; the steps of
    :meth:`~simbench_plugins.perturbations.survey.SurveyShift.custom_steps`),
    e.g. a control survey the presets lack; a mix may then name it.  The
    probe set of such a survey is ``survey_shift/custom`` with the same
    parameters.

    Architecture: four blocks of 3x3 convolution -> BatchNorm -> ReLU -> 2x2
    max-pool (``width``, 2, 4, 4 x ``width`` channels), global average
    pooling, a dense layer (``dense`` units, ReLU) and a linear head.  The
    output is a softmax per Galaxy Zoo question (``meta["questions"]`` of the
    data), so predictions are vote fractions that sum to 1 within each
    question like the targets, and the loss is the soft cross-entropy of the
    volunteers' vote fractions under the predicted answer probabilities (the
    multinomial likelihood of the votes, as in Zoobot; Walmsley et al. 2022).
    Data without ``questions`` get one sigmoid per target and binary
    cross-entropy.  AdamW with a one-cycle schedule, random right-angle
    rotations and flips (morphology does not depend on orientation), the
    epoch with the lowest validation loss is kept.

    Factors: ``arch``, ``seed``, ``train_surveys`` (the mix label, e.g.
    ``reference+deeper_sharper``), ``n_train_surveys`` and ``pairing``.  Readable layers:
    ``block1`` ... ``block4``, ``pool`` (global average), ``fc1`` and ``output``.
    """

    name: ClassVar[str] = "galaxy_cnn"
    description: ClassVar[str] = "CNNs regressing Galaxy Zoo vote fractions, trained on one survey or a mix"

    train_surveys: tuple[tuple[str, ...], ...] = (("reference",), ("reference", "deeper_sharper"))
    seeds: tuple[int, ...] = (0,)
    width: Annotated[int, Field(ge=1, le=128)] = 8
    dense: Annotated[int, Field(ge=2, le=4096)] = 64
    epochs: Annotated[int, Field(ge=1)] = 10
    batch_size: Annotated[int, Field(ge=2)] = 64
    lr: Annotated[float, Field(gt=0.0)] = 3e-3
    weight_decay: Annotated[float, Field(ge=0.0)] = 1e-4
    augment: bool = True
    max_train: Annotated[int, Field(ge=0)] = 0
    pairing: tuple[str, ...] = ()
    extra_surveys: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from simbench_plugins.perturbations.survey import PRESETS

        for name in self.extra_surveys:
            if name == CLEAN or name in PRESETS or not name.replace("_", "").isalnum():
                raise ParamError(
                    "extra_surveys", f"{name!r} must be a new name of letters, digits and '_' (not a preset or '{CLEAN}')"
                )
            self.survey_steps(name)  # validates the parameters
        if not self.train_surveys:
            raise ParamError("train_surveys", "must list at least one training mix, e.g. [['reference']]")
        for mix in self.train_surveys:
            if not mix:
                raise ParamError("train_surveys", "a training mix must name at least one survey")
            if len(set(mix)) != len(mix):
                raise ParamError("train_surveys", f"a mix lists a survey twice: {list(mix)}")
            unknown = [s for s in mix if s != CLEAN and s not in PRESETS and s not in self.extra_surveys]
            if unknown:
                known = ", ".join([*PRESETS, *self.extra_surveys])
                raise ParamError("train_surveys", f"unknown survey(s) {unknown}; expected '{CLEAN}' or one of {known}")
        if self.pairing and len(self.pairing) != len(self.train_surveys):
            raise ParamError("pairing", f"needs one entry per training mix ({len(self.train_surveys)}), "
                                        f"got {len(self.pairing)}")
        bad = [p for p in self.pairing if p not in PAIRINGS]
        if bad:
            raise ParamError("pairing", f"unknown pairing(s) {bad}; expected one of {', '.join(PAIRINGS)}")
        labels = [mix_label(m, p) for m, p in zip(self.train_surveys, self.pairings(), strict=True)]
        if len(set(labels)) != len(labels):
            raise ParamError("train_surveys", f"a training mix is listed twice: {labels}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ParamError("seeds", "must list at least one seed, without repeats")

    # a dict-valued field would make the generated hash fail; hash the parameters' JSON instead
    def __hash__(self) -> int:
        return hash(json.dumps(self.params(), sort_keys=True, default=list))

    def pairings(self) -> tuple[str, ...]:
        """The pairing of every mix (``"random"`` where ``pairing`` is empty)."""
        return tuple(self.pairing) or ("random",) * len(self.train_surveys)

    def survey_steps(self, name: str) -> Any:
        """The survey steps of ``name``: an ``extra_surveys`` entry, else the preset of that name."""
        from simbench_plugins.perturbations.survey import SurveyShift, survey_steps

        if name not in self.extra_surveys:
            return survey_steps(name)
        params = {k: (tuple(tuple(r) for r in v) if k == "band_mix" else v) for k, v in self.extra_surveys[name].items()}
        try:
            steps = SurveyShift(presets=(), **params).custom_steps()
        except ParamError as exc:
            raise ParamError(f"extra_surveys.{name}.{exc.key}", str(exc)) from None
        except TypeError as exc:
            raise ParamError(f"extra_surveys.{name}", f"unknown survey_shift parameter ({exc})") from None
        return steps

    def specs(self) -> list[simbench.ModelSpec]:
        return [
            simbench.ModelSpec(
                id=f"galaxy_cnn-{mix_label(mix, pairing)}-s{seed}",
                factors={
                    "arch": f"cnn-w{self.width}-d{self.dense}",
                    "seed": seed,
                    "train_surveys": mix_label(mix, pairing),
                    "n_train_surveys": len(mix),
                    "pairing": pairing,
                },
            )
            for mix, pairing in zip(self.train_surveys, self.pairings(), strict=True)
            for seed in self.seeds
        ]

    def instantiate(self, spec: simbench.ModelSpec, data: simbench.DataSplits) -> Any:
        from . import _galaxy_impl

        return _galaxy_impl.instantiate(self, spec, data)

    def build(self, data: simbench.DataSplits, ctx: simbench.RunContext) -> dict[str, Any]:
        from . import _galaxy_impl

        return _galaxy_impl.build(self, data, ctx)
