"""The ``cosmo_cnn`` networks and their training loop (torch)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

import simbench
from simbench.seeding import derive_seed

from ._supervised import train_best_epoch


def _block(c_in: int, c_out: int, kernel: int, stride: int, padding: int) -> nn.Sequential:
    pad_mode = "circular" if padding else "zeros"  # periodic boxes: no artificial edges
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride, padding, padding_mode=pad_mode, bias=False),
        nn.BatchNorm2d(c_out),
        nn.LeakyReLU(0.2),
    )


class CosmoCNNModule(nn.Module):
    """Conv -> BN -> LeakyReLU blocks, then two dense layers with dropout.

    ``channels`` selects the input channels this model sees (its field).
    Implements :class:`simbench.types.ReadableModel`.
    """

    default_layer = "fc1"

    def __init__(
        self, channels: Sequence[int], size: int, n_out: int, hidden: int = 4, dense: int = 64, dropout: float = 0.2
    ) -> None:
        super().__init__()
        if size < 8 or size & (size - 1):
            raise ValueError(f"cosmo_cnn needs square power-of-two maps of at least 8 px (got {size})")
        self.channels = [int(c) for c in channels]
        blocks: list[nn.Module] = []
        c_in, c, s = len(self.channels), hidden, size
        while s > 4:
            blocks += [_block(c_in, c, 3, 1, 1), _block(c, c, 3, 1, 1), _block(c, 2 * c, 2, 2, 0)]
            c_in, c, s = 2 * c, 2 * c, s // 2
        self.blocks = nn.ModuleList(blocks)
        self.drop1 = nn.Dropout(dropout)
        self.fc1 = nn.Linear(c_in * 16, dense)
        self.act = nn.LeakyReLU(0.2)
        self.drop2 = nn.Dropout(dropout)
        self.fc2 = nn.Linear(dense, n_out)
        self.readable_layers: tuple[str, ...] = tuple(f"block{i + 1}" for i in range(len(blocks))) + ("fc1", "output")

    def _select(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels == list(range(x.shape[1])):
            return x
        return x[:, self.channels]

    def _run(self, x: torch.Tensor, want: set[str] | None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        acts: dict[str, torch.Tensor] = {}
        h = self._select(x)
        for i, block in enumerate(self.blocks):
            h = block(h)
            name = f"block{i + 1}"
            if want is not None and name in want:
                acts[name] = h.flatten(1)
        h = self.act(self.fc1(self.drop1(h.flatten(1))))
        if want is not None and "fc1" in want:
            acts["fc1"] = h
        out = self.fc2(self.drop2(h))
        if want is not None and "output" in want:
            acts["output"] = out
        return out, acts

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(x, None)[0]

    def read(self, x: torch.Tensor, layers: Sequence[str]) -> dict[str, torch.Tensor]:
        unknown = [name for name in layers if name not in self.readable_layers]
        if unknown:
            raise KeyError(f"cosmo_cnn has no layer(s) {unknown}; readable: {list(self.readable_layers)}")
        _, acts = self._run(x, set(layers))
        return {name: acts[name] for name in layers}

    def dense_weights(self) -> list[torch.Tensor]:
        return [self.fc1.weight.detach().t(), self.fc2.weight.detach().t()]


def channel_indices(field: str, data: simbench.DataSplits) -> list[int]:
    names = list(data.meta.get("channels") or [f"c{i}" for i in range(data.input_shape[0])])
    if field == "all":
        return list(range(len(names)))
    if field not in names:
        raise ValueError(f"cosmo_cnn: field {field!r} is not a channel of the data (channels: {names})")
    return [names.index(field)]


def instantiate(zoo: Any, spec: simbench.ModelSpec, data: simbench.DataSplits) -> CosmoCNNModule:
    if data.task != "regression" or len(data.input_shape) != 3:
        raise ValueError("cosmo_cnn needs regression data with [C, H, W] maps")
    n_out = int(data.train.y.shape[1]) if data.train.y.ndim == 2 else 1
    return CosmoCNNModule(
        channel_indices(str(spec.factors["field"]), data),
        int(data.input_shape[-1]),
        n_out,
        hidden=zoo.hidden,
        dense=zoo.dense,
        dropout=zoo.dropout,
    )


@torch.no_grad()
def _mse(model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: Any, batch: int = 256) -> float:
    model.eval()
    total = 0.0
    for i in range(0, len(x), batch):
        pred = model(x[i : i + batch].to(device))
        total += float(((pred - y[i : i + batch].to(device)) ** 2).sum())
    return total / max(1, len(x) * y.shape[1])


def train_one(
    model: CosmoCNNModule, zoo: Any, data: simbench.DataSplits, batch_seed: int, device: Any, advance: Any
) -> CosmoCNNModule:
    """Mean squared error on the normalised parameters; the best validation epoch is kept."""
    x_train, y_train = data.train.x, data.train.y.reshape(len(data.train), -1)
    if zoo.max_train:
        x_train, y_train = x_train[: zoo.max_train], y_train[: zoo.max_train]
    y_val = data.val.y.reshape(len(data.val), -1)
    return train_best_epoch(
        model, zoo, x_train, y_train,
        loss=lambda m, xb, yb: ((m(xb) - yb) ** 2).mean(),
        val_loss=lambda m: _mse(m, data.val.x, y_val, device),
        seed=batch_seed, device=device, advance=advance,
    )


def suite_data(data: simbench.DataSplits, suite: str) -> simbench.DataSplits:
    """``data`` with its training and validation maps regenerated by simulation suite ``suite`` (the same
    parameters and phases, standardised with the data's constants); ``data`` itself for its own suite."""
    meta = data.meta or {}
    if suite == meta.get("simulation"):
        return data
    if meta.get("generator") != "cosmo_fields":
        raise ValueError(f"cosmo_cnn: train_on = [{suite!r}] needs cosmo_fields data (it regenerates the training "
                         f"maps in that suite); got data generated by {meta.get('generator')!r}")
    from simbench_plugins.data import _cosmo_impl as generator

    if suite not in generator.SIMULATIONS:
        raise ValueError(f"cosmo_cnn: unknown train_on suite {suite!r}; expected one of {generator.SIMULATIONS}")
    train = simbench.Split(*generator.make_split(meta, "train", simulation=suite))
    val = simbench.Split(*generator.make_split(meta, "val", simulation=suite))
    return simbench.DataSplits(train=train, val=val, test=data.test, task=data.task, meta=data.meta)


def build(zoo: Any, data: simbench.DataSplits, ctx: simbench.RunContext) -> dict[str, Any]:
    specs = zoo.specs()
    advance = ctx.progress(f"Training {zoo.name}", total=len(specs) * zoo.epochs)
    models: dict[str, Any] = {}
    by_suite: dict[str, simbench.DataSplits] = {}
    for spec in specs:
        seed = int(spec.factors["seed"])
        suite = spec.factors.get("train_on")
        # without train_on the streams are the original ones (same models as before); with it, every
        # (suite, seed) has its own initial weights and batch order, so the models are independent
        tags: tuple[Any, ...] = (seed,) if suite is None else (seed, str(suite))
        train_data = data if suite is None else by_suite.setdefault(str(suite), suite_data(data, str(suite)))
        torch.manual_seed(derive_seed(ctx.seed, "cosmo", "init", *tags))  # initial weights
        model = instantiate(zoo, spec, train_data).to(ctx.device)
        models[spec.id] = train_one(model, zoo, train_data, derive_seed(ctx.seed, "cosmo", "batches", *tags),
                                    ctx.device, advance)
    return models
