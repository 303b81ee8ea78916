"""``attacks``: adversarial probe sets through torchattacks (no torch at import)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

from pydantic import Field

import simbench

#: attack name -> torchattacks class
ATTACKS: dict[str, str] = {"fgsm": "FGSM", "ffgsm": "FFGSM", "gn": "GN", "pgd": "PGD", "tpgd": "TPGD"}


@dataclass(frozen=True)
class Attacks(simbench.Perturbation):
    """Adversarial probe sets (seed 001 §3.2): FGSM, Fast FGSM, Gaussian noise, PGD, TRADES-PGD.

    Goodfellow et al. 2014; Wong et al. 2020; Madry et al. 2018; Zhang et al.
    2019 — run through torchattacks 3.5.1, L-infinity, inputs kept in [0, 1].

    By default every attack is crafted once against a *source* model (the
    suite's ``source``, else the zoo's first ``strategy = "standard"`` model,
    else its first model), so that all model pairs are compared on the same
    inputs.  ``sources`` names several source models instead -- zoo models
    or, better, the zoo's held-out models (``ModelSpec.held_out``: trained by
    the zoo's recipe, not in the zoo, so the attack favours no zoo member) --
    and every attack is crafted against each: probe sets
    ``attacks/<attack>@<source label>``, the label being the part of the
    source id that differs between the sources (``attacks/pgd@standard``).
    ``per_model = true`` crafts against each model in turn and fills
    ``ProbeSet.x_by_model`` (robustness studies).

    ``eps`` bounds the perturbation (for ``gn`` it is the noise standard
    deviation); ``alpha`` is the PGD / TRADES step (default ``2.5 eps /
    steps``, Madry et al.); Fast FGSM steps by ``1.25 eps`` from a uniform
    random start (Wong et al.).  Random starts are seeded from the run seed.
    """

    name: ClassVar[str] = "attacks"
    description: ClassVar[str] = "adversarial inputs via torchattacks: fgsm, ffgsm, gn, pgd, tpgd"
    target: ClassVar[str] = "input"
    #: torchattacks 3.5.1 is installed without its pinned dependencies (`pip install --no-deps torchattacks==3.5.1`)
    requires: ClassVar[tuple[str, ...]] = ("torchattacks",)

    attacks: tuple[str, ...] = tuple(ATTACKS)
    eps: Annotated[float, Field(gt=0.0, le=1.0)] = 0.15
    alpha: Annotated[float, Field(gt=0.0, le=1.0)] | None = None
    steps: Annotated[int, Field(ge=1, le=10_000)] = 10
    source: str = ""
    sources: tuple[str, ...] = ()
    per_model: bool = False
    batch_size: Annotated[int, Field(ge=1)] = 1024

    def __post_init__(self) -> None:
        if not self.attacks:
            raise simbench.ParamError(
                "attacks", f"at least one attack is needed; expected some of {', '.join(ATTACKS)}"
            )
        for a in self.attacks:
            if a not in ATTACKS:
                raise simbench.ParamError("attacks", f"unknown attack {a!r}; expected one of {', '.join(ATTACKS)}")
        if len(set(self.attacks)) != len(self.attacks):
            raise simbench.ParamError("attacks", "an attack is listed twice")
        if len(set(self.sources)) != len(self.sources):
            raise simbench.ParamError("sources", "a source model is listed twice")
        if self.sources and (self.source or self.per_model):
            raise simbench.ParamError("sources", "give either 'sources' or 'source' / 'per_model', not both")

    def source_labels(self) -> list[str]:
        """Short names of ``sources``: the parts of their ids (split at '/') that differ between them."""
        if len(self.sources) < 2:
            return [""] * len(self.sources)
        parts = [s.split("/") for s in self.sources]
        width = max(len(p) for p in parts)
        padded = [p + [""] * (width - len(p)) for p in parts]
        differ = [k for k in range(width) if len({p[k] for p in padded}) > 1]
        return ["-".join(p[k] for k in differ if p[k]) for p in padded]

    def variants(self) -> list[str]:
        """Probe-set names: one per attack, or one per (source, attack) with several ``sources``."""
        labels = self.source_labels()
        if len(labels) < 2:
            return [f"{self.name}/{a}" for a in self.attacks]
        return [f"{self.name}/{a}@{label}" for label in labels for a in self.attacks]

    @property
    def step_size(self) -> float:
        """The PGD / TRADES step actually used."""
        return self.alpha if self.alpha is not None else 2.5 * self.eps / self.steps

    def source_model(self, ctx: simbench.PerturbContext) -> str:
        """The id of the model attacks are crafted against (see the class docstring)."""
        from ._attacks_impl import pick_source

        return pick_source(self.source, ctx)

    def craft(self, model: Any, x: Any, y: Any, attack: str, seed: int = 0, model_id: str = "") -> Any:
        """Adversarial copies of ``x`` against ``model`` (any device; gradients enabled inside)."""
        from ._attacks_impl import craft

        return craft(self, model, x, y, attack, seed, model_id)

    def probe_sets(self, clean: simbench.ProbeSet, ctx: simbench.PerturbContext) -> list[simbench.ProbeSet]:
        from ._attacks_impl import probe_sets

        return probe_sets(self, clean, ctx)
