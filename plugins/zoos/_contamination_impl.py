"""Two-layer networks of seed 004 and their batched SGD training (torch)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import simbench
from simbench.seeding import torch_generator

#: columns of a model's ``history`` buffer, one row per recorded training step
HISTORY_COLUMNS: tuple[str, ...] = (
    "step",
    "core_proj",
    "bg_proj",
    "bg_corr",
    "id_risk",
    "ood_risk",
    "id_error",
    "ood_error",
)

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": torch.relu,
    "identity": lambda t: t,
    "gelu": F.gelu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "leaky_relu": lambda t: F.leaky_relu(t, 0.1),
}


def record_steps(steps: int, every: int) -> list[int]:
    """Steps at which the trace is recorded: every ``every`` steps, the last step, and a 1-2-5 series
    below ``every`` (feature learning starts within the first few dozen steps)."""
    early = {m * 10**e for e in range(7) for m in (1, 2, 5) if m * 10**e < min(every, steps)}
    return sorted(set(range(0, steps + 1, every)) | {steps} | early)


def activation_derivative(act_fn: Callable[[torch.Tensor], torch.Tensor], pre: torch.Tensor) -> torch.Tensor:
    """Elementwise derivative of an elementwise activation at ``pre``, in float64 (by autograd, so every
    activation of :data:`ACTIVATIONS` is covered without a hand-written derivative)."""
    with torch.enable_grad():
        p = pre.detach().double().requires_grad_(True)
        (g,) = torch.autograd.grad(act_fn(p).sum(), p)
    return g


class ContaminationNetModule(nn.Module):
    """``f(x) = sum_r a_r act(<w_r, x>)``; forward returns logits ``[-f/2, f/2]``.

    Implements :class:`simbench.types.ReadableModel`; ``history`` holds the
    training trace (columns :data:`HISTORY_COLUMNS`).  Besides ``preact``,
    ``hidden`` and ``output`` it reads two float64 layers for the
    contamination benchmark's per-neuron statistics, whose means over
    thousands of entries float32 rounding would move: ``act_derivative``,
    the activation's derivative at the pre-activations (Theorem 4.1's
    asymmetry), and ``hidden_f64``, the activation evaluated in float64 at
    the same (float32) pre-activations (selectivity, eq. 61).
    """

    default_layer = "hidden"
    readable_layers: tuple[str, ...] = ("preact", "act_derivative", "hidden", "hidden_f64", "output")

    def __init__(self, d_in: int, width: int, activation: str, train_output: bool, n_records: int) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; expected one of {sorted(ACTIVATIONS)}")
        self.activation = activation
        self.act_fn = ACTIVATIONS[activation]
        self.hidden = nn.Linear(d_in, width, bias=False)
        a = torch.zeros(width)
        if train_output:
            self.a = nn.Parameter(a)
        else:
            self.register_buffer("a", a)
        self.register_buffer("history", torch.zeros(n_records, len(HISTORY_COLUMNS)))

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """The scalar network output ``f(x)``."""
        return self.act_fn(self.hidden(x.flatten(1))) @ self.a

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.score(x)
        return torch.stack([-0.5 * f, 0.5 * f], 1)

    def read(self, x: torch.Tensor, layers: Sequence[str]) -> dict[str, torch.Tensor]:
        unknown = [name for name in layers if name not in self.readable_layers]
        if unknown:
            raise KeyError(f"contamination_net has no layer(s) {unknown}; readable: {list(self.readable_layers)}")
        pre = self.hidden(x.flatten(1))
        post = self.act_fn(pre)
        f = post @ self.a
        acts = {"preact": pre, "hidden": post, "output": torch.stack([-0.5 * f, 0.5 * f], 1)}
        if "hidden_f64" in layers:  # only when asked: similarity metrics read the float32 layers
            acts["hidden_f64"] = self.act_fn(pre.double())
        if "act_derivative" in layers:
            acts["act_derivative"] = activation_derivative(self.act_fn, pre)
        return {name: acts[name] for name in layers}

    def dense_weights(self) -> list[torch.Tensor]:
        return [self.hidden.weight.detach().t(), self.a.detach()[:, None]]


def instantiate(zoo: Any, spec: simbench.ModelSpec, data: simbench.DataSplits) -> ContaminationNetModule:
    d_in = int(torch.tensor(data.input_shape).prod())
    return ContaminationNetModule(
        d_in, zoo.width, str(spec.factors["arch"]), zoo.train_output, len(record_steps(zoo.steps, zoo.record_every))
    )


def _subspaces(data: simbench.DataSplits) -> tuple[torch.Tensor, torch.Tensor]:
    from simbench_plugins.data import _contamination_impl

    if data.meta.get("generator") != "feature_contamination":
        raise ValueError("contamination_net needs feature_contamination data (its subspaces are measured in training)")
    core, bg = _contamination_impl.subspaces(data.meta)
    return core.float(), bg.float()


@torch.no_grad()
def _trace(
    w: torch.Tensor,
    a: torch.Tensor,
    act: Callable[[torch.Tensor], torch.Tensor],
    core: torch.Tensor,
    bg: torch.Tensor,
    x_id: torch.Tensor,
    x_ood: torch.Tensor,
    y_sign: torch.Tensor,
) -> torch.Tensor:
    """``[S, 7]`` trace values (all columns but ``step``) for stacked weights ``w [S, m, d]``."""
    proj_bg = w @ bg  # [S, m, d_bg]: each neuron's coordinates on the background features
    cols = [(w @ core).norm(dim=-1).mean(1), proj_bg.norm(dim=-1).mean(1), proj_bg.mean((1, 2))]
    risks, errors = [], []
    for x in (x_id, x_ood):
        f = (act(torch.einsum("nd,smd->snm", x, w)) * a[:, None, :]).sum(-1)
        margin = y_sign[None] * f
        risks.append(torch.clamp(1 - margin, min=0).mean(1))
        errors.append((margin <= 0).float().mean(1))
    return torch.stack(cols + risks + errors, 1)


def build(zoo: Any, data: simbench.DataSplits, ctx: simbench.RunContext) -> dict[str, Any]:
    from simbench_plugins.data import _contamination_impl

    device = torch.device(ctx.device)
    core, bg = (t.to(device) for t in _subspaces(data))
    x_train = data.train.x.flatten(1).float().to(device)
    y_train = (2 * data.train.y.float() - 1).to(device)
    x_val = data.val.x.flatten(1).float().to(device)
    y_val = (2 * data.val.y.float() - 1).to(device)
    gen_ood = torch_generator(ctx.seed, "contamination", "ood-background")
    lo, hi = data.meta.get("ood_background", [-1.0, 0.0])
    x_ood = _contamination_impl.shift_background(data.val.x.flatten(1).float().cpu(), data.meta, lo, hi, gen_ood)
    x_ood = x_ood.to(device)
    d_in = x_train.shape[1]
    seeds = list(zoo.seeds)
    steps_to_record = record_steps(zoo.steps, zoo.record_every)
    advance = ctx.progress(f"Training {zoo.name}", total=len(zoo.activations) * zoo.steps)
    models: dict[str, Any] = {}
    for activation in zoo.activations:
        act = ACTIVATIONS[activation]
        # the same seed gives the same initial weights and batch order for every activation,
        # so the activations are compared on equal terms
        gens = [torch_generator(ctx.seed, "contamination", "init-and-batches", s) for s in seeds]
        w0 = torch.stack([torch.randn(zoo.width, d_in, generator=g) * zoo.init_scale for g in gens])
        a0 = torch.stack([(2 * torch.randint(2, (zoo.width,), generator=g) - 1).float() / zoo.width for g in gens])
        w = w0.to(device).requires_grad_(True)
        a = a0.to(device).requires_grad_(zoo.train_output)
        params = [w, a] if zoo.train_output else [w]
        opt = torch.optim.SGD(params, lr=zoo.lr, weight_decay=zoo.weight_decay)
        history = torch.zeros(len(seeds), len(steps_to_record), len(HISTORY_COLUMNS))
        row = 0
        for step in range(zoo.steps + 1):
            if step == steps_to_record[row]:
                history[:, row, 0] = float(step)
                history[:, row, 1:] = _trace(w.detach(), a.detach(), act, core, bg, x_val, x_ood, y_val).cpu()
                row += 1
            if step == zoo.steps:
                break
            idx = torch.stack([torch.randint(len(x_train), (zoo.batch_size,), generator=g) for g in gens]).to(device)
            f = (act(torch.einsum("sbd,smd->sbm", x_train[idx], w)) * a[:, None, :]).sum(-1)
            # a sum over models of each model's mean loss: every model gets its own gradient
            loss = torch.clamp(1 - y_train[idx] * f, min=0).mean(1).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            advance(1)
        for k, seed in enumerate(seeds):
            spec = simbench.ModelSpec(
                id=f"contamination_net-{activation}-w{zoo.width}-s{seed}",
                factors={"arch": activation, "seed": seed, "step": zoo.steps},
            )
            module = instantiate(zoo, spec, data)
            with torch.no_grad():
                module.hidden.weight.copy_(w[k].detach().cpu())
                module.a.copy_(a[k].detach().cpu())
                module.history.copy_(history[k])
            models[spec.id] = module.to(ctx.device).eval()
    return models
