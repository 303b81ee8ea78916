"""``cka_map_manipulation``: fine-tune models towards a target CKA map (no torch at import)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field

import simbench

TARGETS: tuple[str, ...] = ("first_last_max", "all_max", "all_min", "checkerboard", "cross", "explicit")
#: the "comical" targets (seed 003 Fig. 5): fixed patterns, not read from the original map
COMICAL: tuple[str, ...] = ("checkerboard", "cross")


@dataclass(frozen=True)
class CkaMapManipulation(simbench.Perturbation):
    """Model variants whose layer-by-layer CKA map is pushed towards a target (seed 003 §3.4).

    Each chosen model is copied and fine-tuned on the training split with

        L = T^2 KL(softmax(f_orig(x)/T) || softmax(f(x)/T)) + lambda * mean(logcosh(M_f(x) - M_target))

    where ``M_f(x)`` is the differentiable linear-CKA map between the
    model's readable layers (``model.read``) on each minibatch.  Targets:
    ``first_last_max`` (the original map with first<->last set to 1),
    ``all_max`` (all ones), ``all_min`` (identity), the "comical" maps of
    Fig. 5 -- ``checkerboard`` (1 where ``i + j`` is even, else 0: every
    other layer alike) and ``cross`` (1 on the diagonal and the
    anti-diagonal, else 0: layer ``i`` alike only to layer ``L - 1 - i``) --
    or ``explicit`` (``matrix``).  (The seed's Fig. 5 maps are not in its
    text; these two are ours.)
    AdamW, cosine schedule with linear warm-up over the first
    ``warmup_fraction`` of the steps (the paper: lambda = 100, lr 1e-3, 50 epochs,
    500 warm-up steps; our default epochs are few so it runs on a CPU).

    Each variant is a new zoo entry with ``factors = {**original.factors,
    "manipulated": target, "original": original.id}`` plus the achieved
    numbers on the test split: ``cka_offdiag_original``, ``cka_offdiag``
    (mean off-diagonal CKA), ``cka_first_last_original``, ``cka_first_last``
    (the first<->last cell), ``cka_map_distance`` (mean |M - target| over all
    cells), ``cka_target_distance_original``, ``cka_target_distance`` (mean
    |M - target| over the off-diagonal cells, before / after),
    ``accuracy_original``, ``accuracy``, ``accuracy_change`` and ``cka_map``
    (the achieved map as a JSON string).
    """

    name: ClassVar[str] = "cka_map_manipulation"
    description: ClassVar[str] = "fine-tune models towards a target CKA map while distilling their outputs (seed 003)"
    target: ClassVar[str] = "model"

    map_target: Literal["first_last_max", "all_max", "all_min", "checkerboard", "cross", "explicit"] = "all_max"
    matrix: tuple[tuple[float, ...], ...] = ()
    layers: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    lam: Annotated[float, Field(ge=0.0)] = 100.0
    temperature: Annotated[float, Field(gt=0.0)] = 1.0
    epochs: Annotated[int, Field(ge=1)] = 20
    lr: Annotated[float, Field(gt=0.0)] = 1e-3
    weight_decay: Annotated[float, Field(ge=0.0)] = 1e-2
    batch_size: Annotated[int, Field(ge=4)] = 256
    warmup_fraction: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.1
    eval_n: Annotated[int, Field(ge=0)] = 1000

    def __post_init__(self) -> None:
        if self.map_target == "explicit":
            if not self.matrix:
                raise simbench.ParamError(
                    "matrix", "map_target = 'explicit' needs a square matrix of target CKA values"
                )
            k = len(self.matrix)
            if any(len(row) != k for row in self.matrix):
                raise simbench.ParamError(
                    "matrix", f"expected a square matrix; got rows of lengths {[len(r) for r in self.matrix]}"
                )
            if any(not 0.0 <= v <= 1.0 for row in self.matrix for v in row):
                raise simbench.ParamError("matrix", "CKA targets must lie in [0, 1]")
            if self.layers and len(self.layers) != k:
                raise simbench.ParamError("matrix", f"the matrix is {k}x{k} but {len(self.layers)} layers are named")
        elif self.matrix:
            raise simbench.ParamError("matrix", "a matrix is only used with map_target = 'explicit'")

    def variants(self) -> list[str]:
        return [f"{self.name}/{self.map_target}"]

    def variant_id(self, original_id: str) -> str:
        """The zoo id of the manipulated copy of ``original_id``."""
        return f"{original_id}-cka-{self.map_target.replace('_', '-')}"

    def perturb_models(
        self,
        models: Mapping[str, Any],
        specs: Sequence[simbench.ModelSpec],
        data: simbench.DataSplits,
        ctx: simbench.PerturbContext,
    ) -> list[tuple[simbench.ModelSpec, Any]]:
        from ._manipulation_impl import perturb_models

        return perturb_models(self, models, specs, data, ctx)

    def manipulate(
        self, model: Any, data: simbench.DataSplits, seed: int = 0, device: str | None = None
    ) -> tuple[Any, dict[str, Any]]:
        """One manipulated copy of ``model`` and its report (see the class docstring)."""
        from ._manipulation_impl import manipulate

        return manipulate(self, model, data, seed=seed, device=device)
