"""Zoo ``memorisation``: generalising, memorising and untrained CNNs (seed 003 §3.1; no torch at import)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field

import simbench
from simbench.errors import ParamError

from ._memorisation_names import CONDITIONS, GENERALISING, MEMORISING, RANDOM
from .common import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, check_distinct

__all__ = ["CONDITIONS", "GENERALISING", "MEMORISING", "RANDOM", "MemorisationZoo"]


@dataclass(frozen=True)
class MemorisationZoo(simbench.Zoo):
    """Seed 003 §3.1: CNNs that generalise, CNNs that memorise permuted labels, and untrained CNNs.

    Every model is the seed's appendix network scaled to the data: ``len(channels)``
    convolutions (kernel sizes ``kernels``, padding 0, stride 1, each followed by
    BatchNorm and ReLU) and one dense layer to the classes.  Conditions
    (factor ``condition``):

    * ``generalising``: trained on the training split with its true labels;
    * ``memorising``: trained on the same images with the labels randomly
      permuted (one permutation per seed: each model is an independent draw of
      the condition) -- it can only fit them by memorising;
    * ``random``: untrained (its initialisation; BatchNorm at its initial
      running statistics).

    Both trained conditions use the seed's recipe: AdamW (``lr``,
    ``weight_decay``), a cosine schedule over ``epochs`` epochs, mini-batches
    of ``batch_size``; the first ``train_n`` training images (0 = all).  Each
    (condition, seed) has its own initialisation and data order, so no two
    models share weights by construction.  Each model keeps two buffers:
    ``test_accuracy`` (true test labels) and ``train_accuracy`` (on the labels
    it was trained with; for ``random``, the true labels).

    Readable layers: ``conv1`` ... ``convK`` (after BatchNorm and ReLU) and
    ``logits``; default: the last convolution.  Model ids read
    ``"<condition>/s<seed>"``.
    """

    name: ClassVar[str] = "memorisation"
    description: ClassVar[str] = "generalising / memorising (permuted labels) / untrained CNNs (seed 003 §3.1)"
    version: ClassVar[str] = "1"

    conditions: tuple[Literal["generalising", "memorising", "random"], ...] = CONDITIONS
    seeds: tuple[int, ...] = (0, 1, 2)
    channels: tuple[PositiveInt, ...] = (16, 16, 32, 32, 32, 64, 64, 64)
    kernels: tuple[PositiveInt, ...] = (7, 7, 3, 3, 3, 3, 3, 3)
    epochs: PositiveInt = 100
    lr: PositiveFloat = 1e-3
    weight_decay: NonNegativeFloat = 5e-4
    batch_size: PositiveInt = 128
    train_n: NonNegativeInt = 0
    batchnorm: bool = True
    seed: Annotated[int, Field(ge=0)] = 0

    def __post_init__(self) -> None:
        check_distinct("conditions", self.conditions, minimum=None)
        check_distinct("seeds", self.seeds, minimum=0)
        if not self.channels:
            raise ParamError("channels", "expected at least one convolution")
        if len(self.kernels) != len(self.channels):
            raise ParamError("kernels", f"expected one kernel size per convolution ({len(self.channels)}), "
                             f"got {len(self.kernels)}")

    def specs(self) -> list[simbench.ModelSpec]:
        return [
            simbench.ModelSpec(
                id=f"{condition}/s{seed}",
                factors={"condition": condition, "seed": seed, "epoch": 0 if condition == RANDOM else self.epochs},
            )
            for condition in self.conditions
            for seed in self.seeds
        ]

    def groups(self) -> list[list[str]]:
        """One group per model: each trains on its own, so a failed or cached model leaves the others alone."""
        return [[s.id] for s in self.specs()]

    def build(self, data: simbench.DataSplits, ctx: simbench.RunContext) -> dict[str, Any]:
        from ._memorisation_impl import build_models

        return build_models(self, [s.id for s in self.specs()], data, ctx)

    def build_group(self, ids: Any, data: simbench.DataSplits, ctx: simbench.RunContext) -> dict[str, Any]:
        from ._memorisation_impl import build_models

        return build_models(self, list(ids), data, ctx)

    def instantiate(self, spec: simbench.ModelSpec, data: simbench.DataSplits) -> Any:
        from ._memorisation_impl import make_net

        return make_net(self, data)
