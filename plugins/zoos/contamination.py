"""Zoo ``contamination_net``: two-layer networks of seed 004 trained by SGD on hinge loss.

Torch code lives in :mod:`simbench_plugins.zoos._contamination_impl`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field

import simbench
from simbench import ParamError

Activation = Literal["relu", "identity", "gelu", "tanh", "sigmoid", "leaky_relu"]


@dataclass(frozen=True)
class ContaminationNet(simbench.Zoo):
    """Two-layer networks ``f(x) = sum_r a_r act(<w_r, x>)`` of seed ``004_ae8e852829be66a0`` §3.2.

    Width ``width``; hidden weights ``w_r ~ N(0, init_scale^2 I)``; output
    weights ``a_r`` drawn uniformly from ``{-1/width, +1/width}`` and kept
    fixed (as in the seed's analysis) unless ``train_output``.  Trained by
    minibatch SGD (batch ``batch_size``, step ``lr``, ``steps`` iterations)
    on the hinge loss ``max(0, 1 - y f(x))`` with weight decay
    ``weight_decay``.  One model per ``activation`` and ``seed``; all seeds
    of one activation train together as one batched computation.

    The seed's general setting (App. F.1, Fig. 10) is ``bias = true``
    (trainable hidden biases, and an output bias trained with the output
    weights), ``train_output = true``, ``optimizer = "adamw"`` (decoupled
    weight decay ``weight_decay``) and ``init = "torch"`` (PyTorch's
    ``nn.Linear`` default, ``U(+-1/sqrt(fan_in))`` for weights and biases),
    with ``sphere`` core data.  The defaults are the simplified setting.

    Every ``record_every`` steps the training trace is stored in the model's
    ``history`` buffer (so the cached checkpoint keeps it): the mean norm of
    the hidden weights' projections onto the core and background subspaces,
    the mean signed background correlation, the hinge risk and error on
    the validation split, ID and with background weights shifted to
    ``U[-1, 0]`` (OOD), and ``bg_align`` (``log R`` of
    :func:`~simbench_plugins.data._contamination_impl.background_alignment`).  The forward pass returns two-class logits
    ``[-f/2, f/2]``, so argmax agreement is sign agreement.  Readable layers:
    ``preact``, ``hidden`` (after the activation) and ``output``, and in
    float64 ``act_derivative`` (the activation's derivative at ``preact``)
    and ``hidden_f64`` (``hidden`` evaluated in float64).
    """

    name: ClassVar[str] = "contamination_net"
    description: ClassVar[str] = "Two-layer nets trained by SGD on hinge loss (seed 004 feature contamination)"
    version: ClassVar[str] = "3"

    activations: tuple[Activation, ...] = ("relu", "identity", "gelu", "tanh")
    seeds: tuple[int, ...] = (0, 1, 2)
    width: Annotated[int, Field(ge=1)] = 256
    steps: Annotated[int, Field(ge=1)] = 2000
    batch_size: Annotated[int, Field(ge=1)] = 32
    lr: Annotated[float, Field(gt=0.0)] = 50.0
    weight_decay: Annotated[float, Field(ge=0.0)] = 1e-3
    init_scale: Annotated[float, Field(gt=0.0)] = 0.01
    train_output: bool = False
    bias: bool = False
    optimizer: Literal["sgd", "adamw"] = "sgd"
    init: Literal["gaussian", "torch"] = "gaussian"
    record_every: Annotated[int, Field(ge=1)] = 100

    def __post_init__(self) -> None:
        if not self.activations or not self.seeds:
            raise ParamError("activations", "need at least one activation and one seed")
        if len(set(self.activations)) != len(self.activations):
            raise ParamError("activations", f"must not repeat (got {list(self.activations)})")
        if len(set(self.seeds)) != len(self.seeds):
            raise ParamError("seeds", f"must not repeat (got {list(self.seeds)})")

    def specs(self) -> list[simbench.ModelSpec]:
        return [
            simbench.ModelSpec(
                id=f"contamination_net-{act}-w{self.width}-s{seed}",
                factors={"arch": act, "seed": seed, "step": self.steps},
            )
            for act in self.activations
            for seed in self.seeds
        ]

    def instantiate(self, spec: simbench.ModelSpec, data: simbench.DataSplits) -> Any:
        from . import _contamination_impl

        return _contamination_impl.instantiate(self, spec, data)

    def build(self, data: simbench.DataSplits, ctx: simbench.RunContext) -> dict[str, Any]:
        from . import _contamination_impl

        return _contamination_impl.build(self, data, ctx)


@dataclass(frozen=True)
class ContaminationDistill(simbench.Zoo):
    """Representation distillation on the feature-contamination generator (seed ``004_ae8e852829be66a0`` §2).

    Per seed three two-layer networks ``act(W x + b)`` (width ``width``, activation ``activation``, PyTorch's
    default initialisation, AdamW: ``lr``, ``weight_decay``, ``steps`` minibatches of ``batch_size``), each then
    frozen under a linear probe fitted on the ID training split (logistic regression, L2 ``probe_l2``, LBFGS
    ``probe_iters`` iterations), as in the seed's evaluation protocol:

    - ``teacher``: trained on the labels (hinge loss) with its first layer confined to the core subspace, so it
      ignores the background features and generalises out of distribution by construction (the seed's robust
      pre-trained encoder);
    - ``student``: randomly initialised, trained by MSE to reproduce the teacher's hidden representation on the
      ID inputs (representation distillation);
    - ``standard``: trained on the labels from the ID inputs (the seed's standard models).

    Model factors: ``arch`` = the role, ``seed``.  Readable layers ``hidden`` and ``output`` (the probe's
    logits ``[-g/2, g/2]``).  Torch code: :mod:`simbench_plugins.zoos._contamination_distill`.
    """

    name: ClassVar[str] = "contamination_distill"
    description: ClassVar[str] = "Teacher / distilled student / standard two-layer nets (seed 004 §2 analogue)"
    version: ClassVar[str] = "1"

    activation: Activation = "relu"
    seeds: tuple[int, ...] = tuple(range(10))
    width: Annotated[int, Field(ge=1)] = 128
    steps: Annotated[int, Field(ge=1)] = 2000
    batch_size: Annotated[int, Field(ge=1)] = 32
    lr: Annotated[float, Field(gt=0.0)] = 3e-3
    weight_decay: Annotated[float, Field(ge=0.0)] = 1e-2
    probe_l2: Annotated[float, Field(ge=0.0)] = 1e-3
    probe_iters: Annotated[int, Field(ge=1)] = 200

    def __post_init__(self) -> None:
        if not self.seeds:
            raise ParamError("seeds", "need at least one seed")
        if len(set(self.seeds)) != len(self.seeds):
            raise ParamError("seeds", f"must not repeat (got {list(self.seeds)})")

    def specs(self) -> list[simbench.ModelSpec]:
        from ._contamination_distill import ROLES, model_id

        return [simbench.ModelSpec(id=model_id(role, seed), factors={"arch": role, "seed": seed})
                for role in ROLES for seed in self.seeds]

    def instantiate(self, spec: simbench.ModelSpec, data: simbench.DataSplits) -> Any:
        from . import _contamination_distill

        return _contamination_distill.instantiate(self, spec, data)

    def build(self, data: simbench.DataSplits, ctx: simbench.RunContext) -> dict[str, Any]:
        from . import _contamination_distill

        return _contamination_distill.build(self, data, ctx)
