"""Zoo ``finetuned_cnn``: dense heads fine-tuned on a frozen convolutional base (seed 001 §3.3)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

from pydantic import Field

import simbench
from simbench.errors import ParamError

from .common import PositiveFloat, PositiveInt, Strategy, check_archs, check_distinct
from .mlp import TrainingParams


@dataclass(frozen=True)
class FinetunedCnnZoo(TrainingParams, simbench.Zoo):
    """Fine-tuned convolutional networks of seed 001 §3.3 (Fig. 4).

    A base CNN -- conv 64@5x5 -> max-pool -> conv 32@5x5 -> max-pool -> dense
    1 024 -> dense 10 -- is trained on *all* ``base_classes`` of the suite's
    dataset (reloaded with every class) for ``base_epochs`` epochs, keeping
    the epoch with the best validation accuracy (the paper's was epoch 24).
    Its convolutions are then frozen and new dense ReLU ``heads`` (the paper's
    ``"1x32"``, ``"1x1024"``, ``"10x32"``; depth x width) are fine-tuned on the
    suite's classes (e.g. digits 0-2) with ``standard`` or ``pgd`` (or
    ``fgsm`` / ``fgsm_rs``, as for ``mlp``) training, for every seed, with
    checkpoints at ``epochs``.  The
    attacks perturb the input images, through the frozen convolutions.

    The factor ``arch`` names the head.  Readable layers are ``conv1``,
    ``conv2``, the head's hidden layers and ``logits``; ``dense_weights``
    returns the head's matrices only (what weight metrics such as wCKA see).
    The base network is cached in the run's tensor cache when there is one.
    Model ids read ``"cnn+<head>/s<seed>/e<epoch>/<strategy>"``.
    """

    name: ClassVar[str] = "finetuned_cnn"
    description: ClassVar[str] = "frozen conv base (all classes) + fine-tuned dense heads (seed 001 §3.3)"
    version: ClassVar[str] = "2"  # 2: fgsm is plain FGSM (was random-start FGSM, now fgsm_rs)

    heads: tuple[str, ...] = ("1x32", "1x1024", "10x32")
    seeds: tuple[int, ...] = (0, 1, 2)
    epochs: tuple[int, ...] = (5, 10)
    strategies: tuple[Strategy, ...] = ("standard", "pgd")
    base_classes: tuple[int, ...] = tuple(range(10))
    base_epochs: PositiveInt = 30
    base_lr: PositiveFloat = 1e-3
    base_batch_size: PositiveInt = 128
    base_seed: Annotated[int, Field(ge=0)] = 0

    def __post_init__(self) -> None:
        check_archs("heads", self.heads)
        check_distinct("seeds", self.seeds, minimum=0)
        check_distinct("epochs", self.epochs, minimum=0)
        check_distinct("strategies", self.strategies, minimum=None)
        check_distinct("base_classes", self.base_classes, minimum=0)
        if len(self.base_classes) < 2:
            raise ParamError("base_classes", "expected at least two classes")

    def specs(self) -> list[simbench.ModelSpec]:
        return [
            simbench.ModelSpec(
                id=f"cnn+{head}/s{seed}/e{epoch}/{strategy}",
                factors={"arch": head, "seed": seed, "epoch": epoch, "strategy": strategy},
            )
            for head in self.heads
            for strategy in self.strategies
            for seed in self.seeds
            for epoch in sorted(self.epochs)
        ]

    def build(self, data: simbench.DataSplits, ctx: simbench.RunContext) -> dict[str, Any]:
        from ._cnn_impl import build_finetuned_cnn_zoo

        return build_finetuned_cnn_zoo(self, data, ctx)

    def instantiate(self, spec: simbench.ModelSpec, data: simbench.DataSplits) -> Any:
        from ._cnn_impl import make_finetuned_cnn

        return make_finetuned_cnn(str(spec.factors["arch"]), data)
