"""``representation_transform``: CKA sanity transforms on activations (no torch at import)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field

import simbench
from simbench.types import INVARIANCES


@dataclass(frozen=True)
class RepresentationTransform(simbench.Perturbation):
    """Transforms of a representation that keep its usefulness but can wreck linear CKA (seed 003 §3.2-3.3).

    ``kind`` picks one transform of activations ``X`` (``[n, d]``, labels ``y``):

    - ``class_translation``: move every point of one class (``label``; -1 =
      the lowest label present) by ``distance`` times the RMS radius of the
      centred representation.  ``direction = "separating"`` fits a
      multinomial logistic regression on ``X`` and moves along the min-norm
      direction that raises the class's margin over every other class
      equally, so the same linear classifier still separates the classes
      (its accuracy cannot drop); ``"random"`` uses a random unit direction,
      as in the synthetic experiment of §3.2.
    - ``invertible_linear``: ``Y = X M`` with ``M[i, j] ~ N(mu, sigma^2)``,
      redrawn until well conditioned (§3.2, Fig. 3b).
    - ``outlier``: move a single randomly chosen point ``distance`` RMS radii
      away in a random direction (§3.3).

    Two kinds give the limits of the first two at infinite strength, up to
    scale and an orthogonal embedding (which CKA-like metrics do not see):

    - ``class_indicator``: the ``[n, 1]`` indicator of class ``label``
      (``X + c 1_label v^T`` is dominated by ``1_label v^T`` as ``c -> inf``);
    - ``row_sum``: ``X 1`` (``X M`` with ``M ~ N(mu, sigma^2)`` is dominated
      by ``mu X 1 1^T`` as ``mu / sigma -> inf``).

    ``invariance`` applies a random member of the named invariance group
    (``simbench.types.INVARIANCES``) with the conformance kit's transforms
    (``simbench.testing.transform_activation`` / ``transform_weights``),
    drawn from a generator seeded with the run context's seed; the weight
    invariances apply to weights only (:meth:`transform_weights`), the others
    to activations only.  ``skip_widths`` first draws, and discards, the
    transform of a tensor of each of these widths (activations: a whole
    transform per width; weights: one hidden layer per width): the second of
    two tensors transformed in turn from one generator then gets the draw it
    got there, so a benchmark can declare both as separate sources.

    Every kind computes in float64 and returns float64, whatever the input's
    dtype.  Deterministic given the run seed.
    """

    name: ClassVar[str] = "representation_transform"
    description: ClassVar[str] = (
        "CKA sanity transforms: class translation, invertible linear map, one outlier (seed 003)"
    )
    target: ClassVar[str] = "representation"

    kind: Literal["class_translation", "invertible_linear", "outlier", "class_indicator", "row_sum",
                  "invariance"] = "class_translation"
    distance: Annotated[float, Field(ge=0.0)] = 10.0
    direction: Literal["separating", "random"] = "separating"
    label: int = -1
    mu: float = 1.0
    sigma: Annotated[float, Field(ge=0.0)] = 1.0
    invariance: str = ""
    skip_widths: tuple[Annotated[int, Field(ge=1)], ...] = ()

    def __post_init__(self) -> None:
        if self.kind == "invertible_linear" and self.sigma == 0.0:
            raise simbench.ParamError("sigma", "sigma = 0 gives a singular matrix; use sigma > 0")
        if self.kind == "invariance" and self.invariance not in INVARIANCES:
            raise simbench.ParamError("invariance", f"kind 'invariance' needs one of {sorted(INVARIANCES)}, "
                                                    f"got {self.invariance!r}")
        if self.kind != "invariance" and (self.invariance or self.skip_widths):
            raise simbench.ParamError("invariance" if self.invariance else "skip_widths",
                                      "only used with kind = 'invariance'")

    def variants(self) -> list[str]:
        return [f"{self.name}/{self.kind}" + (f"/{self.invariance}" if self.invariance else "")]

    def transform_representation(self, x: Any, y: Any, ctx: simbench.RunContext) -> Any:
        from ._representation_impl import transform

        return transform(self, x, y, ctx.seed)

    def transform_weights(self, weights: Any, ctx: simbench.RunContext) -> list[Any]:
        """Kind ``invariance`` with a weight invariance: a function-preserving transform of the dense weights."""
        from ._representation_impl import transform_weights

        return transform_weights(self, weights, ctx.seed)

    def details(self, x: Any, y: Any, ctx: simbench.RunContext) -> dict[str, Any]:
        """The transformed activations plus what was done (classifier, direction, moved rows)."""
        from ._representation_impl import transform_with_details

        return transform_with_details(self, x, y, ctx.seed)
