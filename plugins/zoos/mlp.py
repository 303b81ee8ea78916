"""Zoo ``mlp``: the fully connected networks of seed 001 §3.2 (no torch at import)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import simbench
from simbench.errors import ParamError

from .common import (
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    Strategy,
    check_archs,
    check_distinct,
)


@dataclass(frozen=True)
class TrainingParams:
    """Training hyper-parameters shared by the MLP-based zoos (mixed into their dataclasses)."""

    eps: PositiveFloat = 0.3
    alpha: PositiveFloat = 0.01
    steps: PositiveInt = 40
    fgsm_alpha: NonNegativeFloat = 0.0
    optimizer: Literal["adam", "sgd"] = "adam"
    lr: PositiveFloat = 1e-3
    momentum: NonNegativeFloat = 0.9
    weight_decay: NonNegativeFloat = 0.0
    batch_size: PositiveInt = 32
    warmup_epochs: NonNegativeInt = 0

    def train_config(self, epochs: int, checkpoints: tuple[int, ...], strategy: str) -> Any:
        from ._train import TrainConfig

        return TrainConfig(
            epochs=epochs,
            checkpoints=tuple(checkpoints),
            strategy=strategy,
            optimizer=self.optimizer,
            lr=self.lr,
            momentum=self.momentum,
            weight_decay=self.weight_decay,
            batch_size=self.batch_size,
            eps=self.eps,
            alpha=self.alpha,
            steps=self.steps,
            fgsm_alpha=self.fgsm_alpha,
            warmup_epochs=self.warmup_epochs,
        )


@dataclass(frozen=True)
class MlpZoo(TrainingParams, simbench.Zoo):
    """Fully connected ReLU networks differing in architecture, seed, epoch and training strategy.

    The model grid of seed 001 §3.2 (Fig. 2-3): architectures given by the
    paper's names (``"1x8"``, ``"4x8"``, ``"4x32"`` = depth x width of the
    hidden layers; input and output sizes from the data) or by all layer sizes
    (``"784-32-32-32-32-3"``); every ``seed`` gives its own initialisation and
    data order; checkpoints at each of ``epochs`` (0 = untrained); training
    ``strategies``: ``standard``, ``fgsm`` (plain FGSM adversarial training,
    Goodfellow et al. 2015 as cited by seed 001: one step of size ``eps`` from
    the clean input, no random start), ``fgsm_rs`` (FGSM with a random start,
    Wong et al. 2020, step ``fgsm_alpha``, default 1.25 eps) and ``pgd``
    (Madry et al. 2018: ``steps`` steps of size ``alpha`` from a random
    start), all in an L-inf ball of radius ``eps`` (MNIST default 0.3).
    Adam (or SGD) with learning rate ``lr`` and mini-batches of ``batch_size``
    (32, Keras' default; the paper gives no training details).  With
    ``warmup_epochs = k`` the attack radius grows linearly over the first
    ``k`` epochs, which keeps small networks from collapsing to a constant
    output under adversarial training at eps = 0.3.

    Models that differ only in seed are trained together as one vectorised
    ensemble.  A model with the same seed has the same initialisation under
    every strategy, and the same data order under every architecture and
    strategy, so a pair differing in one factor differs in nothing else.
    Model ids read ``"<arch>/s<seed>/e<epoch>/<strategy>"``.

    ``held_out`` lists models, by id, that are trained by exactly this recipe
    (their seed's own initialisation and data order, trained in their
    (architecture, strategy) ensemble) but are *not* part of the zoo: their
    seeds must not be among ``seeds``.  They reach perturbations only
    (:attr:`simbench.PerturbContext.held_out`), e.g. as attack sources that
    favour no zoo member, and are never measured or analysed.
    """

    name: ClassVar[str] = "mlp"
    description: ClassVar[str] = "fully connected ReLU nets (seed 001 §3.2): archs x seeds x epochs x standard/FGSM/PGD"
    version: ClassVar[str] = "2"  # 2: fgsm is plain FGSM (was random-start FGSM, now fgsm_rs)

    archs: tuple[str, ...] = ("1x8", "4x8", "4x32")
    seeds: tuple[int, ...] = (0, 1, 2)
    epochs: tuple[int, ...] = (5, 10)
    strategies: tuple[Strategy, ...] = ("standard",)
    held_out: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_archs("archs", self.archs)
        check_distinct("seeds", self.seeds, minimum=0)
        check_distinct("epochs", self.epochs, minimum=0)
        check_distinct("strategies", self.strategies, minimum=None)
        if max(self.epochs) > 10_000:
            raise ParamError("epochs", "expected at most 10000 epochs")
        if self.held_out:
            check_distinct("held_out", self.held_out, minimum=None)
        for model_id in self.held_out:
            self.held_out_factors(model_id)

    def held_out_factors(self, model_id: str) -> dict[str, Any]:
        """The factors of a held-out model id, checked against the grid (its seed must be outside it)."""
        parts = model_id.split("/")
        expected = (f"a model id '<arch>/s<seed>/e<epoch>/<strategy>' with arch in {list(self.archs)}, "
                    f"epoch in {sorted(self.epochs)}, strategy in {list(self.strategies)} and a seed not in "
                    f"{list(self.seeds)}")
        if (len(parts) != 4 or not parts[1].startswith("s") or not parts[1][1:].isdigit()
                or not parts[2].startswith("e") or not parts[2][1:].isdigit()):
            raise ParamError("held_out", f"{model_id!r}: expected {expected}")
        arch, seed, epoch, strategy = parts[0], int(parts[1][1:]), int(parts[2][1:]), parts[3]
        if arch not in self.archs or epoch not in self.epochs or strategy not in self.strategies or seed in self.seeds:
            raise ParamError("held_out", f"{model_id!r}: expected {expected}")
        return {"arch": arch, "seed": seed, "epoch": epoch, "strategy": strategy}

    def specs(self) -> list[simbench.ModelSpec]:
        zoo = [
            simbench.ModelSpec(
                id=f"{arch}/s{seed}/e{epoch}/{strategy}",
                factors={"arch": arch, "seed": seed, "epoch": epoch, "strategy": strategy},
            )
            for arch in self.archs
            for strategy in self.strategies
            for seed in self.seeds
            for epoch in sorted(self.epochs)
        ]
        held = [simbench.ModelSpec(id=i, factors=self.held_out_factors(i), held_out=True) for i in self.held_out]
        return zoo + held

    def groups(self) -> list[list[str]]:
        """One group per (architecture, strategy): its seeds and epochs train as one ensemble, so the runner
        (and a Dask executor) can build, cache and isolate each on its own."""
        out: dict[tuple[str, str], list[str]] = {}
        for spec in self.specs():
            out.setdefault((str(spec.factors["arch"]), str(spec.factors["strategy"])), []).append(spec.id)
        return list(out.values())

    def build(self, data: simbench.DataSplits, ctx: simbench.RunContext) -> dict[str, Any]:
        from ._mlp_impl import build_mlp_zoo

        return build_mlp_zoo(self, data, ctx)

    def build_group(self, ids: Any, data: simbench.DataSplits, ctx: simbench.RunContext) -> dict[str, Any]:
        from ._mlp_impl import build_mlp_zoo

        return build_mlp_zoo(self, data, ctx, only=set(ids))

    def instantiate(self, spec: simbench.ModelSpec, data: simbench.DataSplits) -> Any:
        from ._mlp_impl import make_mlp

        return make_mlp(str(spec.factors["arch"]), data)
