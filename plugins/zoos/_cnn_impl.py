"""Building the ``finetuned_cnn`` zoo (torch code, imported lazily)."""

from __future__ import annotations

import copy
import logging
from collections import defaultdict
from typing import Any

import torch
import torch.nn.functional as F

import simbench
from simbench.errors import UserError

from ._mlp_impl import finish, member
from ._models import BaseCNN, ConvTrunk, FinetunedCNN, accuracy
from ._train import train_ensemble
from simbench.seeding import derive_seed, torch_generator

from .common import resolve_widths

log = logging.getLogger("simbench.zoos.finetuned_cnn")


def head_widths(head: str, data: simbench.DataSplits) -> tuple[int, ...]:
    return resolve_widths(head, ConvTrunk.out_features(data.input_shape), data.num_classes)


def make_finetuned_cnn(head: str, data: simbench.DataSplits) -> FinetunedCNN:
    """An untrained :class:`FinetunedCNN` with dense head ``head`` for ``data``."""
    if len(data.input_shape) != 3:
        raise UserError(f"finetuned_cnn needs image data [N, C, H, W], got input shape {list(data.input_shape)}")
    return FinetunedCNN(data.input_shape, head_widths(head, data))


def base_data(zoo: simbench.Zoo, data: simbench.DataSplits, ctx: simbench.RunContext) -> simbench.DataSplits:
    """The suite's dataset reloaded with ``zoo.base_classes`` (the base network learns all classes)."""
    from simbench_plugins.data.datasets import Digits28, Mnist, reload_params

    found = reload_params(dict(data.meta))
    known = {cls.name: cls for cls in (Digits28, Mnist)}
    if found is None or found[0] not in known:
        raise UserError(
            "zoo finetuned_cnn: the base network is trained on all classes, so the dataset must be one that "
            f"can be reloaded with other classes ({', '.join(known)}); got {dict(data.meta).get('dataset', 'unknown')!r}"
        )
    name, params = found
    params = {k: (tuple(v) if isinstance(v, list) else v) for k, v in params.items()}
    params["classes"] = tuple(zoo.base_classes)
    return known[name](**params).load(ctx)


def train_base(zoo: simbench.Zoo, data: simbench.DataSplits, ctx: simbench.RunContext) -> tuple[BaseCNN, dict[str, Any]]:
    """Train the base CNN, keeping the epoch with the best validation accuracy."""
    device = torch.device(ctx.device)
    with torch.random.fork_rng(devices=[]):  # nn.Module initialisers use the global generator
        torch.manual_seed(derive_seed(ctx.seed, "cnn-base", "init", zoo.base_seed))
        model = BaseCNN(data.input_shape, data.num_classes).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=zoo.base_lr)
    order = torch_generator(ctx.seed, "cnn-base", "order", zoo.base_seed)
    x, y = data.train.x.to(device), data.train.y.to(device)
    has_val = len(data.val) > 0
    best = (-1.0, 0, copy.deepcopy(model.state_dict()))
    advance = ctx.progress("Training finetuned_cnn base network", total=zoo.base_epochs, unit="epochs")
    for epoch in range(1, zoo.base_epochs + 1):
        model.train()
        perm = torch.randperm(len(y), generator=order).to(device)
        for start in range(0, len(y), zoo.base_batch_size):
            idx = perm[start : start + zoo.base_batch_size]
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
        model.eval()
        val_acc = accuracy(model, data.val.x, data.val.y) if has_val else float(epoch)
        if val_acc > best[0]:
            best = (val_acc, epoch, copy.deepcopy(model.state_dict()))
        advance(1)
    model.load_state_dict(best[2])
    model.eval()
    meta = {
        "best_epoch": best[1],
        "val_accuracy": best[0] if has_val else None,
        "test_accuracy": accuracy(model, data.test.x, data.test.y),
    }
    return model, meta


def base_trunk(zoo: simbench.Zoo, data: simbench.DataSplits, ctx: simbench.RunContext) -> tuple[ConvTrunk, dict[str, Any]]:
    """The trained, frozen convolutions of the base network (from the run's cache when possible)."""
    full = base_data(zoo, data, ctx)
    description = {
        "zoo": zoo.name,
        "version": zoo.version,
        "dataset": dict(full.meta),
        "seed": ctx.seed,
        "base": {
            "classes": list(zoo.base_classes),
            "epochs": zoo.base_epochs,
            "lr": zoo.base_lr,
            "batch_size": zoo.base_batch_size,
            "seed": zoo.base_seed,
        },
    }

    def compute() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        model, meta = train_base(zoo, full, ctx)
        return {k: v.detach().cpu() for k, v in model.state_dict().items()}, meta

    if ctx.cache is not None:
        state, meta = ctx.cache.get_or_compute(ctx.cache.key("finetuned_cnn_base", description), compute)
    else:
        state, meta = compute()
    trunk = ConvTrunk(data.input_shape[0])
    trunk.load_state_dict({k[len("trunk.") :]: v for k, v in state.items() if k.startswith("trunk.")})
    trunk.requires_grad_(False)
    return trunk.to(ctx.device).eval(), dict(meta)


@torch.no_grad()
def _features(trunk: ConvTrunk, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    device = next(trunk.parameters()).device
    return torch.cat([trunk(x[i : i + batch_size].to(device)) for i in range(0, len(x), batch_size)])


def build_finetuned_cnn_zoo(zoo: simbench.Zoo, data: simbench.DataSplits, ctx: simbench.RunContext) -> dict[str, Any]:
    specs = zoo.specs()
    trunk, base_meta = base_trunk(zoo, data, ctx)
    log.info("finetuned_cnn base network: %s", base_meta)
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for spec in specs:
        key = (spec.factors["arch"], spec.factors["strategy"])
        if spec.factors["seed"] not in groups[key]:
            groups[key].append(spec.factors["seed"])
    checkpoints = tuple(sorted(zoo.epochs))
    heads, strategies = ("/".join(dict.fromkeys(key[i] for key in groups)) for i in (0, 1))
    n_seeds = len({seed for seeds in groups.values() for seed in seeds})
    advance = ctx.progress(f"Fine-tuning {zoo.name} heads {heads} {strategies} ({n_seeds} seeds, "
                           f"{len(checkpoints)} checkpoints)", total=len(groups) * max(checkpoints), unit="ensemble epochs")
    # Standard fine-tuning never changes the frozen convolutions' output: compute the features once.
    train_features = _features(trunk, data.train.x) if "standard" in zoo.strategies else None
    trained: dict[tuple[str, str, int, int], FinetunedCNN] = {}
    for (head, strategy), seeds in groups.items():
        widths = head_widths(head, data)
        members = [member(widths, s, strategy, ctx.seed) for s in seeds]
        cfg = zoo.train_config(max(checkpoints), checkpoints, strategy)
        if strategy == "standard":
            assert train_features is not None
            result = train_ensemble(widths, members, train_features, data.train.y, cfg, ctx.device, advance=advance,
                                    log=getattr(ctx, "log", None), label=f"{head} {strategy}: ")
        else:  # the attack perturbs images, through the frozen convolutions
            result = train_ensemble(
                widths, members, data.train.x, data.train.y, cfg, ctx.device, encode=trunk, advance=advance,
                log=getattr(ctx, "log", None), label=f"{head} {strategy}: ")
        for epoch, snaps in result.snapshots.items():
            for seed, snap in zip(seeds, snaps):
                model = FinetunedCNN(data.input_shape, widths)
                model.trunk.load_state_dict(trunk.state_dict())
                model.head.load_params(snap)
                trained[(head, strategy, seed, epoch)] = model
    out: dict[str, Any] = {}
    for spec in specs:
        f = spec.factors
        out[spec.id] = finish(trained[(f["arch"], f["strategy"], f["seed"], f["epoch"])], data, ctx.device)
    return out
