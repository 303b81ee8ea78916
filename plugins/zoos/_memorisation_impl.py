"""Building the ``memorisation`` zoo (torch code, imported lazily)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import simbench
from simbench.errors import UserError
from simbench.seeding import derive_seed, torch_generator

from ._memorisation_names import MEMORISING, RANDOM
from ._models import ReadableMixin, accuracy



class ConvNet(ReadableMixin):
    """Convolutions (padding 0, stride 1), each followed by optional BatchNorm and ReLU, then one dense layer.

    Seed 003's appendix network with ``channels`` / ``kernels`` as given.
    Readable layers ``conv1`` ... ``convK`` (after the ReLU) and ``logits``.
    """

    def __init__(self, input_shape: Sequence[int], channels: Sequence[int], kernels: Sequence[int],
                 num_classes: int, batchnorm: bool = True) -> None:
        super().__init__()
        c, h, w = (int(v) for v in input_shape)
        convs, norms = [], []
        for out, k in zip(channels, kernels, strict=True):
            h, w = h - k + 1, w - k + 1
            if h < 1 or w < 1:
                raise UserError(f"zoo memorisation: kernels {list(kernels)} shrink the {list(input_shape)} input "
                                "to nothing (padding 0)")
            convs.append(nn.Conv2d(c, int(out), int(k)))
            norms.append(nn.BatchNorm2d(int(out)) if batchnorm else nn.Identity())
            c = int(out)
        self.convs = nn.ModuleList(convs)
        self.norms = nn.ModuleList(norms)
        self.fc = nn.Linear(c * h * w, num_classes)
        self.readable_layers = (*(f"conv{k}" for k in range(1, len(convs) + 1)), "logits")
        self.default_layer = f"conv{len(convs)}"
        self._init_readable()
        self.register_buffer("train_accuracy", torch.tensor(float("nan")))

    def _activations(self, x: torch.Tensor, wanted: set[str]) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        h = x
        for k, (conv, norm) in enumerate(zip(self.convs, self.norms), start=1):
            h = torch.relu(norm(conv(h)))
            if f"conv{k}" in wanted:
                out[f"conv{k}"] = h
        out["logits"] = self.fc(h.flatten(1))
        return out

    def dense_weights(self) -> list[torch.Tensor]:
        """Each convolution's kernels as ``[in * k * k, out]``, then the dense layer ``[in, classes]``."""
        return [conv.weight.detach().flatten(1).T for conv in self.convs] + [self.fc.weight.detach().T]


def make_net(zoo: simbench.Zoo, data: simbench.DataSplits) -> ConvNet:
    """An untrained :class:`ConvNet` of ``zoo`` for ``data``."""
    if data.task != "classification" or len(data.input_shape) != 3:
        raise UserError("zoo memorisation needs an image classification dataset ([N, C, H, W] inputs); got task "
                        f"{data.task!r} with input shape {list(data.input_shape)}")
    return ConvNet(data.input_shape, zoo.channels, zoo.kernels, data.num_classes, zoo.batchnorm)


def training_set(zoo: simbench.Zoo, data: simbench.DataSplits) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``train_n`` training images (0 = all) and their true labels."""
    n = len(data.train.y) if not zoo.train_n else min(zoo.train_n, len(data.train.y))
    if zoo.train_n and zoo.train_n > len(data.train.y):
        raise UserError(f"zoo memorisation: train_n = {zoo.train_n} but the training split has only "
                        f"{len(data.train.y)} images")
    return data.train.x[:n], data.train.y[:n]


def permuted_labels(y: torch.Tensor, run_seed: int, seed: int) -> torch.Tensor:
    """The labels ``y`` randomly permuted (class counts kept), one permutation per (run seed, seed)."""
    gen = torch_generator(run_seed, "memorisation", "labels", seed)
    return y[torch.randperm(len(y), generator=gen)]


def train(zoo: simbench.Zoo, model: ConvNet, x: torch.Tensor, y: torch.Tensor, order: torch.Generator,
          device: torch.device, advance: Any = None) -> None:
    """AdamW with a per-step cosine schedule over ``zoo.epochs`` epochs of mini-batches (the seed's recipe)."""
    n = len(y)
    bs = min(zoo.batch_size, n)
    steps = zoo.epochs * math.ceil(n / bs)
    opt = torch.optim.AdamW(model.parameters(), lr=zoo.lr, weight_decay=zoo.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1.0 + math.cos(math.pi * min(s, steps) / steps)))
    x, y = x.to(device), y.to(device)
    with torch.inference_mode(False), torch.enable_grad():
        for _ in range(zoo.epochs):
            model.train()
            perm = torch.randperm(n, generator=order).to(device)
            for start in range(0, n, bs):
                idx = perm[start : start + bs]
                opt.zero_grad(set_to_none=True)
                F.cross_entropy(model(x[idx]), y[idx]).backward()
                opt.step()
                sched.step()
            if advance is not None:
                advance(1)
    model.eval()


def build_models(zoo: simbench.Zoo, ids: Sequence[str], data: simbench.DataSplits,
                 ctx: simbench.RunContext) -> dict[str, Any]:
    """Train (or, for ``random``, just initialise) the models ``ids`` -> ``{id: module}`` in eval mode."""
    specs = {s.id: s for s in zoo.specs()}
    device = torch.device(ctx.device)
    x, y_true = training_set(zoo, data)
    trained = [i for i in ids if specs[i].factors["condition"] != RANDOM]
    advance = ctx.progress("Training memorisation zoo", total=zoo.epochs * len(trained), unit="epochs") \
        if trained else None
    out: dict[str, Any] = {}
    for model_id in ids:
        condition, seed = str(specs[model_id].factors["condition"]), int(specs[model_id].factors["seed"])
        with torch.random.fork_rng(devices=[]):  # nn.Module initialisers use the global generator
            torch.manual_seed(derive_seed(ctx.seed, "memorisation", "init", condition, seed))
            model = make_net(zoo, data).to(device)
        y = permuted_labels(y_true, ctx.seed, seed) if condition == MEMORISING else y_true
        if condition != RANDOM:
            order = torch_generator(ctx.seed, "memorisation", "order", condition, seed)
            train(zoo, model, x, y, order, device, advance)
        model.eval()
        model.train_accuracy.fill_(accuracy(model, x, y))
        model.test_accuracy.fill_(accuracy(model, data.test.x, data.test.y))
        getattr(ctx, "log", lambda m: None)(
            f"memorisation {model_id}: train accuracy {float(model.train_accuracy):.3f} (its labels), "
            f"test accuracy {float(model.test_accuracy):.3f}")
        out[model_id] = model
    return out
