"""Building the ``mlp`` zoo (torch code, imported lazily)."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import torch

import simbench

from ._models import MLP, accuracy
from ._train import Member, init_mlp, train_ensemble
from simbench.seeding import derive_seed, torch_generator

from .common import resolve_widths


def data_widths(arch: str, data: simbench.DataSplits) -> tuple[int, ...]:
    """Layer sizes of ``arch`` for ``data`` (flattened inputs, ``num_classes`` outputs)."""
    return resolve_widths(arch, math.prod(data.input_shape), data.num_classes)


def make_mlp(arch: str, data: simbench.DataSplits) -> MLP:
    """An untrained :class:`MLP` of ``arch`` for ``data``."""
    return MLP(data_widths(arch, data))


def member(widths: tuple[int, ...], seed: int, strategy: str, run_seed: int) -> Member:
    """A model's initial weights and seeds.

    The initialisation depends on (run seed, layer sizes, seed) only, and the
    data order on (run seed, seed) only, so models that differ in strategy (or
    in architecture) differ in nothing else.
    """
    gen = torch_generator(run_seed, "mlp", "init", widths, seed)
    return Member(
        init=init_mlp(widths, gen),
        data_seed=derive_seed(run_seed, "mlp", "data-order", seed),
        attack_seed=derive_seed(run_seed, "mlp", "attack-noise", widths, strategy, seed),
    )


def train_group(
    params: Any,
    widths: tuple[int, ...],
    strategy: str,
    seeds: list[int],
    checkpoints: tuple[int, ...],
    data: simbench.DataSplits,
    ctx: simbench.RunContext,
    advance: Any = None,
) -> dict[tuple[int, int], MLP]:
    """Train the models of one (architecture, strategy) for every seed at once -> {(seed, epoch): MLP}."""
    members = [member(widths, s, strategy, ctx.seed) for s in seeds]
    cfg = params.train_config(max(checkpoints), checkpoints, strategy)
    x = data.train.x.reshape(len(data.train), -1)
    log = getattr(ctx, "log", None)
    label = f"{'-'.join(map(str, widths))} {strategy} (seeds {', '.join(map(str, seeds))}): "
    result = train_ensemble(widths, members, x, data.train.y, cfg, device=ctx.device, advance=advance, log=log,
                            label=label)
    models: dict[tuple[int, int], MLP] = {}
    for epoch, snaps in result.snapshots.items():
        for seed, snap in zip(seeds, snaps):
            models[(seed, epoch)] = MLP(widths).load_params(snap)
    return models


def finish(model: torch.nn.Module, data: simbench.DataSplits, device: str) -> torch.nn.Module:
    """Move to ``device``, switch to eval mode, record the clean test accuracy."""
    model = model.to(device).eval()
    model.test_accuracy.fill_(accuracy(model, data.test.x, data.test.y))
    return model


def build_mlp_zoo(zoo: simbench.Zoo, data: simbench.DataSplits, ctx: simbench.RunContext,
                  only: set[str] | None = None) -> dict[str, Any]:
    """Train the zoo (or the models ``only``, whole (arch, strategy) ensembles) -> {model id: MLP}.

    A model's training depends on its ensemble alone, so building groups one
    by one gives the same models as building the zoo at once."""
    specs = [s for s in zoo.specs() if only is None or s.id in only]
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for spec in specs:
        key = (spec.factors["arch"], spec.factors["strategy"])
        if spec.factors["seed"] not in groups[key]:
            groups[key].append(spec.factors["seed"])
    checkpoints = tuple(sorted(zoo.epochs))
    archs, strategies = ("/".join(dict.fromkeys(key[i] for key in groups)) for i in (0, 1))
    n_seeds = len({seed for seeds in groups.values() for seed in seeds})
    advance = ctx.progress(f"Training {zoo.name} {archs} {strategies} ({n_seeds} seeds, {len(checkpoints)} checkpoints)",
                           total=len(groups) * max(checkpoints), unit="ensemble epochs")
    trained: dict[tuple[str, str, int, int], MLP] = {}
    for (arch, strategy), seeds in groups.items():
        widths = data_widths(arch, data)
        for (seed, epoch), model in train_group(zoo, widths, strategy, seeds, checkpoints, data, ctx, advance).items():
            trained[(arch, strategy, seed, epoch)] = model
    out: dict[str, Any] = {}
    for spec in specs:
        f = spec.factors
        out[spec.id] = finish(trained[(f["arch"], f["strategy"], f["seed"], f["epoch"])], data, ctx.device)
    return out


def build_calibration_zoo(zoo: simbench.Zoo, data: simbench.DataSplits, ctx: simbench.RunContext) -> dict[str, Any]:
    widths = data_widths(zoo.arch, data)
    specs = zoo.specs()
    checkpoints = zoo.converged_epochs()
    advance = ctx.progress(f"Training zoo {zoo.name} (1 network, {len(checkpoints)} checkpoints)",
                           total=max(checkpoints), unit="epochs")
    trained = train_group(zoo, widths, "standard", [zoo.seed], checkpoints, data, ctx, advance)
    out: dict[str, Any] = {}
    for spec in specs:
        f = spec.factors
        if f["ensemble"] == "converged":
            model = trained[(f["seed"], f["epoch"])]
        else:  # an untrained network: its own initialisation, nothing else
            model = MLP(widths).load_params(member(widths, f["seed"], "standard", ctx.seed).init)
        out[spec.id] = finish(model, data, ctx.device)
    return out
