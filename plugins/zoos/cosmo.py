"""Zoo ``cosmo_cnn``: CNNs regressing cosmological parameters from 2D maps.

Torch code lives in :mod:`simbench_plugins.zoos._cosmo_impl`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

from pydantic import Field

import simbench
from simbench import ParamError


@dataclass(frozen=True)
class CosmoCNN(simbench.Zoo):
    """Parameter-regression CNNs in the style of the CAMELS Multifield Dataset models.

    The architecture follows the pre-trained networks of seed
    ``000_3674ff43c5aa32ce`` (Villaescusa-Navarro et al. 2021): blocks of
    convolution -> BatchNorm -> LeakyReLU (two 3x3 convolutions with circular
    padding, as the maps are periodic, then a 2x2 stride-2 convolution that
    doubles the channels, per resolution level, down to 4x4), then two fully
    connected layers with dropout regressing all targets (mean squared error
    on the [0, 1]-scaled parameters).  One model per input ``field`` (a
    channel name of the data, e.g. ``matter`` / ``temperature`` for
    ``cosmo_fields`` or ``Mtot`` / ``T`` for ``camels_cmd``; ``all`` = a
    multifield model on every channel) and per ``seed``.  Trained with Adam
    and random flips / right-angle rotations (the statistics are isotropic);
    the epoch with the lowest validation loss is kept, as in seed 000.

    ``train_on`` (default: empty = the data's own suite) names simulation
    suites to train on, one model per (field, suite, seed): for a suite other
    than the data's, the training and validation maps are regenerated with
    that suite's physics (same parameters and phases; ``cosmo_fields`` data
    only), standardised with the data's constants.  This gives both shift
    directions in one run (trained on A and tested on B, and the reverse).
    The model's ``train_on`` factor records the suite.

    Readable layers: ``block1`` ... ``blockK`` (every block's output), ``fc1``
    (first dense layer, after its activation) and ``output``.
    """

    name: ClassVar[str] = "cosmo_cnn"
    description: ClassVar[str] = "Conv-BN-LeakyReLU CNNs regressing cosmological parameters from maps"

    fields: tuple[str, ...] = ("matter", "temperature")
    seeds: tuple[int, ...] = (0,)
    hidden: Annotated[int, Field(ge=1, le=128)] = 4
    dense: Annotated[int, Field(ge=2, le=4096)] = 64
    dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.2
    epochs: Annotated[int, Field(ge=1)] = 15
    batch_size: Annotated[int, Field(ge=2)] = 64
    lr: Annotated[float, Field(gt=0.0)] = 2e-3
    weight_decay: Annotated[float, Field(ge=0.0)] = 1e-5
    augment: bool = True
    max_train: Annotated[int, Field(ge=0)] = 0
    train_on: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.fields:
            raise ParamError("fields", "must name at least one input field (a data channel, or 'all')")
        if not self.seeds:
            raise ParamError("seeds", "must list at least one seed")
        if len(set(self.fields)) != len(self.fields) or len(set(self.seeds)) != len(self.seeds):
            raise ParamError("fields", "fields and seeds must not repeat")
        if len(set(self.train_on)) != len(self.train_on) or any(not s or "/" in s for s in self.train_on):
            raise ParamError("train_on", f"must list distinct suite names (got {list(self.train_on)})")

    def specs(self) -> list[simbench.ModelSpec]:
        if self.train_on:
            return [
                simbench.ModelSpec(
                    id=f"cosmo_cnn-{field}-h{self.hidden}-{suite}-s{seed}",
                    factors={"arch": f"cnn-h{self.hidden}-d{self.dense}", "field": field, "train_on": suite,
                             "seed": seed},
                )
                for suite in self.train_on
                for field in self.fields
                for seed in self.seeds
            ]
        return [
            simbench.ModelSpec(
                id=f"cosmo_cnn-{field}-h{self.hidden}-s{seed}",
                factors={"arch": f"cnn-h{self.hidden}-d{self.dense}", "field": field, "seed": seed},
            )
            for field in self.fields
            for seed in self.seeds
        ]

    def instantiate(self, spec: simbench.ModelSpec, data: simbench.DataSplits) -> Any:
        from . import _cosmo_impl

        return _cosmo_impl.instantiate(self, spec, data)

    def build(self, data: simbench.DataSplits, ctx: simbench.RunContext) -> dict[str, Any]:
        from . import _cosmo_impl

        return _cosmo_impl.build(self, data, ctx)
