"""``mnist_c``: the 15 MNIST-C corruptions as probe sets (no torch at import)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

from pydantic import Field

import simbench

from ._mnist_c_names import CORRUPTIONS


@dataclass(frozen=True)
class MnistC(simbench.Perturbation):
    """The 15 MNIST-C corruptions of Mu & Gilmer (2019), one probe set each.

    Used by seed 001 (§3.2) to probe functional agreement out of distribution.
    Implemented in torch (batched, CPU or CUDA), seeded per image from the
    run seed and the image's index in the probe set; outputs stay in [0, 1]
    and keep the input's shape.  ``severity`` scales every corruption's
    strength around the MNIST-C default (1.0); ``stripe`` and ``canny_edges``
    have no strength.
    """

    name: ClassVar[str] = "mnist_c"
    description: ClassVar[str] = "MNIST-C corruptions (Mu & Gilmer 2019): one probe set per corruption"
    target: ClassVar[str] = "input"

    corruptions: tuple[str, ...] = CORRUPTIONS
    severity: Annotated[float, Field(gt=0.0, le=10.0)] = 1.0

    def __post_init__(self) -> None:
        if not self.corruptions:
            raise simbench.ParamError(
                "corruptions", f"at least one corruption is needed; expected some of {', '.join(CORRUPTIONS)}"
            )
        for c in self.corruptions:
            if c not in CORRUPTIONS:
                raise simbench.ParamError(
                    "corruptions", f"unknown corruption {c!r}; expected one of {', '.join(CORRUPTIONS)}"
                )
        if len(set(self.corruptions)) != len(self.corruptions):
            raise simbench.ParamError("corruptions", "a corruption is listed twice")

    def variants(self) -> list[str]:
        return [f"{self.name}/{c}" for c in self.corruptions]

    def apply(self, x: Any, corruption: str, seed: int = 0, index: Any = None) -> Any:
        """One corruption of a batch ``x`` (see :func:`._mnist_c_impl.corrupt`)."""
        from ._mnist_c_impl import corrupt

        return corrupt(x, corruption, seed=seed, severity=self.severity, index=index)

    def probe_sets(self, clean: simbench.ProbeSet, ctx: simbench.PerturbContext) -> list[simbench.ProbeSet]:
        out = []
        for corruption, variant in zip(self.corruptions, self.variants()):
            x = self.apply(clean.x, corruption, seed=ctx.seed)
            meta = {"perturbation": self.name, "corruption": corruption, "severity": self.severity}
            out.append(simbench.ProbeSet(name=variant, x=x, y=clean.y, meta=meta))
        return out
