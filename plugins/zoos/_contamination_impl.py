"""Two-layer networks of seed 004 and their batched SGD / AdamW training (torch)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import simbench
from simbench.seeding import torch_generator
from simbench_plugins.data._contamination_impl import HISTORY_COLUMNS, background_alignment

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

    def __init__(
        self, d_in: int, width: int, activation: str, train_output: bool, n_records: int, bias: bool = False
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; expected one of {sorted(ACTIVATIONS)}")
        self.activation = activation
        self.act_fn = ACTIVATIONS[activation]
        self.hidden = nn.Linear(d_in, width, bias=bias)
        a = torch.zeros(width)
        if train_output:
            self.a = nn.Parameter(a)
        else:
            self.register_buffer("a", a)
        if bias:  # the output bias of the general setting (App. F.1): trained with the output weights
            self.register_buffer("c", torch.zeros(()))
        else:
            self.c = None
        self.register_buffer("history", torch.zeros(n_records, len(HISTORY_COLUMNS)))

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """The scalar network output ``f(x)``."""
        f = self.act_fn(self.hidden(x.flatten(1))) @ self.a
        return f if self.c is None else f + self.c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.score(x)
        return torch.stack([-0.5 * f, 0.5 * f], 1)

    def read(self, x: torch.Tensor, layers: Sequence[str]) -> dict[str, torch.Tensor]:
        unknown = [name for name in layers if name not in self.readable_layers]
        if unknown:
            raise KeyError(f"contamination_net has no layer(s) {unknown}; readable: {list(self.readable_layers)}")
        pre = self.hidden(x.flatten(1))
        post = self.act_fn(pre)
        f = post @ self.a if self.c is None else post @ self.a + self.c
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
        d_in, zoo.width, str(spec.factors["arch"]), zoo.train_output, len(record_steps(zoo.steps, zoo.record_every)),
        bias=zoo.bias,
    )


def _subspaces(data: simbench.DataSplits) -> tuple[torch.Tensor, torch.Tensor]:
    from simbench_plugins.data import _contamination_impl

    if data.meta.get("generator") != "feature_contamination":
        raise ValueError("contamination_net needs feature_contamination data (its subspaces are measured in training)")
    core, bg = _contamination_impl.subspaces(data.meta)
    return core.float(), bg.float()


def _forward(
    x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, a: torch.Tensor, c: torch.Tensor | None,
    act: Callable[[torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """Scores ``[S, n]`` of ``S`` stacked networks on inputs ``x [n, d]`` (or ``[S, n, d]``)."""
    pre = torch.einsum("nd,smd->snm" if x.dim() == 2 else "snd,smd->snm", x, w)
    if b is not None:
        pre = pre + b[:, None, :]
    f = (act(pre) * a[:, None, :]).sum(-1)
    return f if c is None else f + c[:, None]


@torch.no_grad()
def _trace(
    w: torch.Tensor,
    b: torch.Tensor | None,
    a: torch.Tensor,
    c: torch.Tensor | None,
    act: Callable[[torch.Tensor], torch.Tensor],
    core: torch.Tensor,
    bg: torch.Tensor,
    x_id: torch.Tensor,
    x_ood: torch.Tensor,
    y_sign: torch.Tensor,
) -> torch.Tensor:
    """``[S, 8]`` trace values (all columns but ``step``) for stacked weights ``w [S, m, d]``."""
    proj_bg = w @ bg  # [S, m, d_bg]: each neuron's coordinates on the background features
    cols = [(w @ core).norm(dim=-1).mean(1), proj_bg.norm(dim=-1).mean(1), proj_bg.mean((1, 2))]
    risks, errors = [], []
    for x in (x_id, x_ood):
        margin = y_sign[None] * _forward(x, w, b, a, c, act)
        risks.append(torch.clamp(1 - margin, min=0).mean(1))
        errors.append((margin <= 0).float().mean(1))
    return torch.stack(cols + risks + errors + [background_alignment(w.double(), bg.double()).float()], 1)


def _init(zoo: Any, gens: list[torch.Generator], d_in: int) -> tuple[torch.Tensor, ...]:
    """Initial ``(w [S, m, d], b [S, m] or None, a [S, m], c [S] or None)`` per seed generator.

    ``gaussian`` (the seed's §3.2): ``w ~ N(0, init_scale^2)``, ``a = +-1/width``, zero biases.  ``torch`` (the
    general setting, PyTorch's ``nn.Linear`` default): every weight and bias of a layer with fan-in ``k`` is
    ``U(-1/sqrt(k), 1/sqrt(k))``."""
    m = zoo.width
    if zoo.init == "torch":
        def unif(shape: tuple[int, ...], fan_in: int, g: torch.Generator) -> torch.Tensor:
            return (2 * torch.rand(shape, generator=g) - 1) / fan_in**0.5

        w0 = torch.stack([unif((m, d_in), d_in, g) for g in gens])
        a0 = torch.stack([unif((m,), m, g) for g in gens])
        b0 = torch.stack([unif((m,), d_in, g) for g in gens]) if zoo.bias else None
        c0 = torch.stack([unif((), m, g) for g in gens]) if zoo.bias else None
        return w0, b0, a0, c0
    w0 = torch.stack([torch.randn(m, d_in, generator=g) * zoo.init_scale for g in gens])
    a0 = torch.stack([(2 * torch.randint(2, (m,), generator=g) - 1).float() / m for g in gens])
    zeros = torch.zeros(len(gens), m) if zoo.bias else None
    return w0, zeros, a0, (torch.zeros(len(gens)) if zoo.bias else None)


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
        w0, b0, a0, c0 = _init(zoo, gens, d_in)
        w = w0.to(device).requires_grad_(True)
        a = a0.to(device).requires_grad_(zoo.train_output)
        b = None if b0 is None else b0.to(device).requires_grad_(True)
        c = None if c0 is None else c0.to(device).requires_grad_(zoo.train_output)
        params = [w] + ([b] if b is not None else []) + ([a] + ([c] if c is not None else []) if zoo.train_output
                                                          else [])
        if zoo.optimizer == "adamw":  # elementwise, so stacking the seeds' tensors trains each seed independently
            opt: torch.optim.Optimizer = torch.optim.AdamW(params, lr=zoo.lr, weight_decay=zoo.weight_decay)
        else:
            opt = torch.optim.SGD(params, lr=zoo.lr, weight_decay=zoo.weight_decay)
        history = torch.zeros(len(seeds), len(steps_to_record), len(HISTORY_COLUMNS))
        row = 0
        for step in range(zoo.steps + 1):
            if step == steps_to_record[row]:
                history[:, row, 0] = float(step)
                history[:, row, 1:] = _trace(
                    w.detach(), None if b is None else b.detach(), a.detach(), None if c is None else c.detach(),
                    act, core, bg, x_val, x_ood, y_val,
                ).cpu()
                row += 1
            if step == zoo.steps:
                break
            idx = torch.stack([torch.randint(len(x_train), (zoo.batch_size,), generator=g) for g in gens]).to(device)
            f = _forward(x_train[idx], w, b, a, c, act)
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
                if b is not None and c is not None:
                    module.hidden.bias.copy_(b[k].detach().cpu())
                    module.c.copy_(c[k].detach().cpu())
                module.history.copy_(history[k])
            models[spec.id] = module.to(ctx.device).eval()
    return models
