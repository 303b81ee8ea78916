"""Zoo ``galaxy_cnn``: small CNNs regressing Galaxy-Zoo vote fractions, trained on one survey or a mix (seed 002).

Torch code lives in :mod:`simbench_plugins.zoos._galaxy_impl`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

from pydantic import Field

import simbench
from simbench import ParamError

from ._galaxy_names import CLEAN, mix_label


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
    ``reference+deeper_sharper``) and ``n_train_surveys``.  Readable layers:
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

    def __post_init__(self) -> None:
        from simbench_plugins.perturbations.survey import PRESETS

        if not self.train_surveys:
            raise ParamError("train_surveys", "must list at least one training mix, e.g. [['reference']]")
        for mix in self.train_surveys:
            if not mix:
                raise ParamError("train_surveys", "a training mix must name at least one survey")
            if len(set(mix)) != len(mix):
                raise ParamError("train_surveys", f"a mix lists a survey twice: {list(mix)}")
            unknown = [s for s in mix if s != CLEAN and s not in PRESETS]
            if unknown:
                raise ParamError(
                    "train_surveys", f"unknown survey(s) {unknown}; expected '{CLEAN}' or one of {', '.join(PRESETS)}"
                )
        labels = [mix_label(m) for m in self.train_surveys]
        if len(set(labels)) != len(labels):
            raise ParamError("train_surveys", f"a training mix is listed twice: {labels}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ParamError("seeds", "must list at least one seed, without repeats")

    def specs(self) -> list[simbench.ModelSpec]:
        return [
            simbench.ModelSpec(
                id=f"galaxy_cnn-{mix_label(mix)}-s{seed}",
                factors={
                    "arch": f"cnn-w{self.width}-d{self.dense}",
                    "seed": seed,
                    "train_surveys": mix_label(mix),
                    "n_train_surveys": len(mix),
                },
            )
            for mix in self.train_surveys
            for seed in self.seeds
        ]

    def instantiate(self, spec: simbench.ModelSpec, data: simbench.DataSplits) -> Any:
        from . import _galaxy_impl

        return _galaxy_impl.instantiate(self, spec, data)

    def build(self, data: simbench.DataSplits, ctx: simbench.RunContext) -> dict[str, Any]:
        from . import _galaxy_impl

        return _galaxy_impl.build(self, data, ctx)
