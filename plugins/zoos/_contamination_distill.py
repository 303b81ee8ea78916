"""Representation distillation on the feature-contamination generator (seed 004 §2 analogue), in torch.

Per seed three two-layer networks of one architecture (``x -> act(W x + b)``, width ``m``, then a linear
probe), all trained with AdamW on the ID training split:

- ``teacher``: trained on the labels (hinge loss, a trainable output layer) with its first layer confined to the
  core subspace (parameterised as ``W = V C^T``, ``C`` the core basis): a network that generalises out of
  distribution by construction, the analogue of the seed's robust pre-trained encoder;
- ``student``: randomly initialised, trained to match the teacher's hidden representation by mean squared error
  (representation distillation, seed §2 / App. E) on the ID inputs, which carry the background features;
- ``standard``: trained on the labels from the ID inputs (ERM, the seed's "standard models").

Then, as the seed's protocol, each network's hidden layer is frozen and a linear probe (L2-regularised logistic
regression on standardised features) is fitted on the ID training split; the model's output is the probe's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import simbench
from simbench.seeding import torch_generator

from ._contamination_impl import ACTIVATIONS

ROLES: tuple[str, ...] = ("teacher", "student", "standard")


class DistillNetModule(nn.Module):
    """``h = act(W x + b)`` and a linear probe on standardised ``h``; forward returns logits ``[-g/2, g/2]``.

    Implements :class:`simbench.types.ReadableModel` (layers ``hidden``, ``output``)."""

    default_layer = "hidden"
    readable_layers: tuple[str, ...] = ("hidden", "output")

    def __init__(self, d_in: int, width: int, activation: str) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; expected one of {sorted(ACTIVATIONS)}")
        self.activation = activation
        self.act_fn = ACTIVATIONS[activation]
        self.hidden = nn.Linear(d_in, width)
        self.register_buffer("mu", torch.zeros(width))
        self.register_buffer("sd", torch.ones(width))
        self.register_buffer("probe_w", torch.zeros(width))
        self.register_buffer("probe_b", torch.zeros(()))

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """The probe's logit ``g(x)`` for class 1."""
        return ((self.act_fn(self.hidden(x.flatten(1))) - self.mu) / self.sd) @ self.probe_w + self.probe_b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = self.score(x)
        return torch.stack([-0.5 * g, 0.5 * g], 1)

    def read(self, x: torch.Tensor, layers: Sequence[str]) -> dict[str, torch.Tensor]:
        unknown = [name for name in layers if name not in self.readable_layers]
        if unknown:
            raise KeyError(f"contamination_distill has no layer(s) {unknown}; readable: {list(self.readable_layers)}")
        h = self.act_fn(self.hidden(x.flatten(1)))
        g = ((h - self.mu) / self.sd) @ self.probe_w + self.probe_b
        acts = {"hidden": h, "output": torch.stack([-0.5 * g, 0.5 * g], 1)}
        return {name: acts[name] for name in layers}

    def dense_weights(self) -> list[torch.Tensor]:
        return [self.hidden.weight.detach().t(), self.probe_w.detach()[:, None]]


def model_id(role: str, seed: int) -> str:
    """The model id of one role and seed."""
    return f"contamination_distill-{role}-s{seed}"


def instantiate(zoo: Any, spec: simbench.ModelSpec, data: simbench.DataSplits) -> DistillNetModule:
    d_in = int(torch.tensor(data.input_shape).prod())
    return DistillNetModule(d_in, zoo.width, zoo.activation)


def _unif(shape: tuple[int, ...], fan_in: int, g: torch.Generator) -> torch.Tensor:
    return (2 * torch.rand(shape, generator=g) - 1) / fan_in**0.5


def fit_probe(h: torch.Tensor, labels: torch.Tensor, l2: float, iters: int) -> tuple[torch.Tensor, ...]:
    """``(mu, sd, w, b)``: L2-regularised logistic regression (LBFGS, full batch) on standardised features
    ``h [n, m]`` (float64)."""
    h = h.double()
    mu, sd = h.mean(0), h.std(0) + 1e-6
    z = (h - mu) / sd
    y = labels.double()
    w = torch.zeros(z.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=iters, line_search_fn="strong_wolfe", tolerance_grad=1e-9)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(z @ w + b, y) + l2 * (w**2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return mu, sd, w.detach(), b.detach()


def _train(zoo: Any, role: str, seeds: list[int], x: torch.Tensor, y_sign: torch.Tensor,
           target: torch.Tensor | None, ctx: simbench.RunContext, advance: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Stacked ``(W [S, m, d_x], b [S, m])`` of one role, trained with AdamW for ``zoo.steps`` minibatch steps:
    on the hinge loss of ``y_sign`` (with a trainable output layer), or by MSE to ``target [S, n, m]``."""
    act = ACTIVATIONS[zoo.activation]
    m, d = zoo.width, x.shape[1]
    gens = [torch_generator(ctx.seed, "contamination-distill", role, s) for s in seeds]
    w = torch.stack([_unif((m, d), d, g) for g in gens]).requires_grad_(True)
    b = torch.stack([_unif((m,), d, g) for g in gens]).requires_grad_(True)
    params = [w, b]
    if target is None:
        a = torch.stack([_unif((m,), m, g) for g in gens]).requires_grad_(True)
        c = torch.stack([_unif((), m, g) for g in gens]).requires_grad_(True)
        params += [a, c]
    opt = torch.optim.AdamW(params, lr=zoo.lr, weight_decay=zoo.weight_decay)
    rows = torch.arange(len(seeds))[:, None]
    for _ in range(zoo.steps):
        idx = torch.stack([torch.randint(len(x), (zoo.batch_size,), generator=g) for g in gens])
        h = act(torch.einsum("sbd,smd->sbm", x[idx], w) + b[:, None, :])
        if target is None:
            f = (h * a[:, None, :]).sum(-1) + c[:, None]
            loss = torch.clamp(1 - y_sign[idx] * f, min=0).mean(1).sum()
        else:
            loss = ((h - target[rows, idx]) ** 2).mean((1, 2)).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        advance(1)
    return w.detach(), b.detach()


def build(zoo: Any, data: simbench.DataSplits, ctx: simbench.RunContext) -> dict[str, Any]:
    from simbench_plugins.data import _contamination_impl as data_impl

    if data.meta.get("generator") != "feature_contamination":
        raise ValueError("contamination_distill needs feature_contamination data (the teacher reads its core subspace)")
    act = ACTIVATIONS[zoo.activation]
    core = data_impl.subspaces(data.meta)[0].float()  # [d, d_core]
    x = data.train.x.flatten(1).float()
    y_sign = 2 * data.train.y.float() - 1
    seeds = list(zoo.seeds)
    advance = ctx.progress(f"Training {zoo.name}", total=len(ROLES) * zoo.steps)
    with torch.random.fork_rng(devices=[]):
        # teacher: first layer on the core coordinates only, W = V C^T (exactly in the core subspace)
        v, b_t = _train(zoo, "teacher", seeds, x @ core, y_sign, None, ctx, advance)
        w_t = v @ core.T
        h_t = act(torch.einsum("nd,smd->snm", x, w_t) + b_t[:, None, :])
        w_s, b_s = _train(zoo, "student", seeds, x, y_sign, h_t, ctx, advance)
        w_b, b_b = _train(zoo, "standard", seeds, x, y_sign, None, ctx, advance)
    models: dict[str, Any] = {}
    for role, (w, b) in zip(ROLES, ((w_t, b_t), (w_s, b_s), (w_b, b_b))):
        for k, seed in enumerate(seeds):
            spec = simbench.ModelSpec(id=model_id(role, seed), factors={"arch": role, "seed": seed})
            module = instantiate(zoo, spec, data)
            with torch.no_grad():
                module.hidden.weight.copy_(w[k])
                module.hidden.bias.copy_(b[k])
                h = act(x @ w[k].T + b[k])
                mu, sd, pw, pb = fit_probe(h, data.train.y, zoo.probe_l2, zoo.probe_iters)
                module.mu.copy_(mu)
                module.sd.copy_(sd)
                module.probe_w.copy_(pw)
                module.probe_b.copy_(pb)
            models[spec.id] = module.to(ctx.device).eval()
    return models
