"""torch / torchattacks side of the ``attacks`` perturbation."""

from __future__ import annotations

from typing import Any

import torch

import simbench
from simbench.errors import UserError
from simbench.seeding import derive_seed

INSTALL_HINT = (
    "the 'attacks' perturbation needs torchattacks; install it without its dependencies "
    "(a plain install replaces torch and downgrades requests): pip install --no-deps torchattacks==3.5.1"
)


def load_torchattacks() -> Any:
    """Import torchattacks lazily, with an actionable error if it is missing.

    Only the ``torchattacks`` package is imported: its wheel also ships a
    top-level ``robustbench`` package that imports torchvision, never touch it.
    """
    try:
        import torchattacks
    except ImportError as exc:
        raise UserError(INSTALL_HINT) from exc
    return torchattacks


def pick_source(source: str, ctx: simbench.PerturbContext) -> str:
    models = {**dict(ctx.models), **dict(getattr(ctx, "held_out", {}) or {})}
    if not models:
        raise UserError("the 'attacks' perturbation needs trained models (PerturbContext.models is empty)")
    if source:
        if source not in models:
            raise UserError(
                f"attacks: source model {source!r} is neither in the zoo nor held out by it; available: "
                f"{', '.join(sorted(models))}"
            )
        return source
    specs = [s for s in ctx.specs if s.id in models]
    for spec in specs:
        if spec.factors.get("strategy") == "standard":
            return spec.id
    return specs[0].id if specs else next(iter(models))


def _model_device(model: Any, fallback: torch.device) -> torch.device:
    try:
        return next(model.parameters()).device
    except (StopIteration, AttributeError):
        return fallback


def craft(
    pert: Any, model: Any, x: torch.Tensor, y: torch.Tensor, attack: str, seed: int = 0, model_id: str = ""
) -> torch.Tensor:
    """Run one attack on ``x`` in batches; returns a tensor on ``x``'s device and dtype, in [0, 1].

    Random starts are drawn from a generator seeded by (seed, attack,
    model id), so a probe set does not depend on the order of crafting.
    """
    ta = load_torchattacks()
    if x.numel() and (float(x.min()) < 0.0 or float(x.max()) > 1.0):
        raise UserError("attacks need probe inputs in [0, 1]; this dataset's inputs are outside that range")
    if attack not in ("gn", "tpgd") and (y.dtype.is_floating_point or y.dim() != 1):
        raise UserError(f"attack {attack!r} needs class labels (a classification dataset)")
    device = _model_device(model, x.device)
    eps = float(pert.eps)
    if attack == "fgsm":
        atk = ta.FGSM(model, eps=eps)
    elif attack == "ffgsm":
        atk = ta.FFGSM(model, eps=eps, alpha=1.25 * eps)
    elif attack == "gn":
        atk = ta.GN(model, std=eps)
    elif attack == "pgd":
        atk = ta.PGD(model, eps=eps, alpha=float(pert.step_size), steps=int(pert.steps), random_start=True)
    elif attack == "tpgd":
        atk = ta.TPGD(model, eps=eps, alpha=float(pert.step_size), steps=int(pert.steps))
    else:  # pragma: no cover - validated in __post_init__
        raise ValueError(f"unknown attack {attack!r}")
    atk.set_device(device)
    devices = (
        [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    )
    out = []
    # Attacks need gradients: leave any surrounding no_grad / inference_mode.
    # torchattacks draws random starts from the global generator: fork it.
    with torch.inference_mode(False), torch.enable_grad(), torch.random.fork_rng(devices=devices):
        torch.manual_seed(derive_seed(seed, attack, model_id))
        for start in range(0, x.shape[0], int(pert.batch_size)):
            xb = x[start : start + pert.batch_size].detach().clone().to(device, torch.float32)
            yb = y[start : start + pert.batch_size].detach().clone().to(device)
            adv = atk(xb, yb)
            out.append(adv.detach().clamp(0.0, 1.0).to(x.device, x.dtype))
    return torch.cat(out, 0) if out else x.clone()


def probe_sets(pert: Any, clean: simbench.ProbeSet, ctx: simbench.PerturbContext) -> list[simbench.ProbeSet]:
    models = {**dict(ctx.models), **dict(getattr(ctx, "held_out", {}) or {})}
    sources = [pick_source(s, ctx) for s in pert.sources] or [pick_source(pert.source, ctx)]
    held_out = set(getattr(ctx, "held_out", {}) or {})
    variants = iter(pert.variants())
    results = []
    for source in sources:
        results += _source_probe_sets(pert, clean, ctx, models, source, source in held_out, variants)
    return results


def _source_probe_sets(pert: Any, clean: simbench.ProbeSet, ctx: simbench.PerturbContext, models: dict[str, Any],
                       source: str, held_out: bool, variants: Any) -> list[simbench.ProbeSet]:
    results = []
    for attack, variant in zip(pert.attacks, variants):
        meta: dict[str, Any] = {
            "perturbation": pert.name,
            "attack": attack,
            "eps": pert.eps,
            "alpha": pert.step_size if attack in ("pgd", "tpgd") else (1.25 * pert.eps if attack == "ffgsm" else None),
            "steps": pert.steps if attack in ("pgd", "tpgd") else 1,
            "source": source,
            "source_held_out": held_out,
            "per_model": pert.per_model,
        }
        x_src = craft(pert, models[source], clean.x, clean.y, attack, ctx.seed, source)
        by_model = None
        if pert.per_model:
            by_model = {
                mid: x_src if mid == source else craft(pert, m, clean.x, clean.y, attack, ctx.seed, mid)
                for mid, m in dict(ctx.models).items()
            }
        results.append(simbench.ProbeSet(name=variant, x=x_src, y=clean.y, meta=meta, x_by_model=by_model))
    return results
