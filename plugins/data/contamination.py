"""Dataset ``feature_contamination`` and its OOD perturbation ``background_shift`` (seed 004).

Torch code lives in :mod:`simbench_plugins.data._contamination_impl`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, ClassVar, Literal

from pydantic import Field

import simbench
from simbench import ParamError
from simbench.seeding import torch_generator


@dataclass(frozen=True)
class FeatureContamination(simbench.Dataset):
    """The ID data of Definition 3.1 of seed ``004_ae8e852829be66a0`` (feature contamination).

    Inputs live in ``R^d_input`` and are sums of ``d_core`` core features and
    ``d_background`` background features, all orthonormal (a random
    orthonormal dictionary fixed by the run seed).  The label ``y = +-1``
    multiplies the core weights (``U[0, 1]``, or spheres of radius 1 / 2 with
    ``core = "sphere"``); the background weights are ``U[0, 1]``, drawn
    independently of the label.  Binary classification: class 1 is ``y = +1``.
    The OOD distribution (background weights ``U[-1, 0]``, core unchanged)
    is the ``background_shift`` perturbation.
    """

    name: ClassVar[str] = "feature_contamination"
    description: ClassVar[str] = "Orthogonal core + label-independent background features (seed 004, Def. 3.1)"

    d_core: Annotated[int, Field(ge=1)] = 32
    d_background: Annotated[int, Field(ge=1)] = 32
    d_input: Annotated[int, Field(ge=2)] = 256
    core: Literal["linear", "sphere"] = "linear"
    n_train: Annotated[int, Field(ge=2)] = 2000
    n_val: Annotated[int, Field(ge=2)] = 500
    n_test: Annotated[int, Field(ge=2)] = 1000

    def __post_init__(self) -> None:
        if self.d_core + self.d_background > self.d_input:
            raise ParamError(
                "d_input",
                f"must be at least d_core + d_background = {self.d_core + self.d_background} "
                "(the features are orthonormal)",
            )

    def load(self, ctx: simbench.RunContext) -> simbench.DataSplits:
        from . import _contamination_impl

        sizes = {"train": self.n_train, "val": self.n_val, "test": self.n_test}
        splits, meta = _contamination_impl.load(
            self.d_core, self.d_background, self.d_input, sizes, self.core, ctx.seed
        )
        return simbench.DataSplits(
            train=simbench.Split(*splits["train"]),
            val=simbench.Split(*splits["val"]),
            test=simbench.Split(*splits["test"]),
            task="classification",
            num_classes=2,
            meta=meta,
        )


@dataclass(frozen=True)
class BackgroundShift(simbench.Perturbation):
    """The OOD shift of seed 004 (Definition 3.1, App. F.1): background weights only.

    Every background weight of each clean probe is replaced by a fresh draw
    from ``U[low, high]`` (seed default ``U[-1, 0]``); core weights and labels
    are kept, so a model that uses only core features is unaffected.  Needs
    ``feature_contamination`` data (its dictionary gives the subspaces).  The
    probe set is named ``background_shift/<label>``.
    """

    name: ClassVar[str] = "background_shift"
    description: ClassVar[str] = "Feature-contamination OOD shift: resample background weights only"

    low: float = -1.0
    high: float = 0.0
    label: str = "ood"

    def __post_init__(self) -> None:
        if not self.high > self.low:
            raise ParamError("high", f"must exceed low (got low={self.low}, high={self.high})")
        if not self.label or "/" in self.label:
            raise ParamError("label", f"invalid probe-set label {self.label!r}")

    def variants(self) -> list[str]:
        return [f"{self.name}/{self.label}"]

    def probe_sets(self, clean: simbench.ProbeSet, ctx: simbench.PerturbContext) -> list[simbench.ProbeSet]:
        import torch

        from . import _contamination_impl

        meta = ctx.data.meta if ctx.data is not None else {}
        if meta.get("generator") != "feature_contamination":
            raise ValueError("background_shift needs feature_contamination data")
        gen = torch_generator(ctx.seed, "background_shift")
        x = _contamination_impl.shift_background(clean.x, meta, self.low, self.high, gen)
        return [
            simbench.ProbeSet(
                name=f"{self.name}/{self.label}", x=x, y=clean.y, meta={"background": [self.low, self.high]}
            )
        ]
