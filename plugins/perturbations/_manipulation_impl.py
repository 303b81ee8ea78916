"""torch side of ``cka_map_manipulation`` (seed 003 §3.4)."""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

import simbench
from simbench.errors import UserError
from simbench.seeding import derive_seed, torch_generator

from ._cka import cka_map, mean_off_diagonal


def _device_of(model: Any, fallback: str) -> torch.device:
    try:
        return next(model.parameters()).device
    except (StopIteration, AttributeError):
        return torch.device(fallback)


def layer_map(model: Any, x: torch.Tensor, layers: Sequence[str]) -> torch.Tensor:
    """The model's ``[L, L]`` linear-CKA map on inputs ``x`` (differentiable if grads are on)."""
    reps = model.read(x, list(layers))
    return cka_map([reps[name] for name in layers])


def target_map(pert: Any, original_map: torch.Tensor) -> torch.Tensor:
    k = original_map.shape[0]
    if pert.map_target == "all_max":
        return torch.ones_like(original_map)
    if pert.map_target == "all_min":
        return torch.eye(k, dtype=original_map.dtype, device=original_map.device)
    if pert.map_target == "first_last_max":
        t = original_map.detach().clone()
        t[0, -1] = t[-1, 0] = 1.0
        return t
    i = torch.arange(k, device=original_map.device)
    if pert.map_target == "checkerboard":
        return ((i[:, None] + i[None, :]) % 2 == 0).to(original_map.dtype)
    if pert.map_target == "cross":
        return ((i[:, None] == i[None, :]) | (i[:, None] + i[None, :] == k - 1)).to(original_map.dtype)
    m = torch.tensor(pert.matrix, dtype=original_map.dtype, device=original_map.device)
    if m.shape != original_map.shape:
        raise UserError(f"cka_map_manipulation: matrix is {tuple(m.shape)} but the model has {k} layers to map")
    return m


def offdiag_distance(m: torch.Tensor, target: torch.Tensor) -> float:
    """Mean ``|m - target|`` over the off-diagonal cells (the diagonal of a CKA map is always 1)."""
    k = m.shape[0]
    mask = ~torch.eye(k, dtype=torch.bool, device=m.device)
    return float((m - target).abs()[mask].mean())


def _logcosh(x: torch.Tensor) -> torch.Tensor:
    # log(cosh(x)) = |x| + log1p(exp(-2|x|)) - log 2, stable for any |x|
    a = x.abs()
    return a + torch.log1p(torch.exp(-2.0 * a)) - math.log(2.0)


def _accuracy(model: Any, x: torch.Tensor, y: torch.Tensor, batch: int = 2048) -> float:
    with torch.no_grad():
        correct = sum(
            int((model(x[i : i + batch]).argmax(1) == y[i : i + batch]).sum()) for i in range(0, len(x), batch)
        )
    return correct / max(1, len(x))


def manipulate(
    pert: Any, model: Any, data: simbench.DataSplits, seed: int = 0, device: str | None = None
) -> tuple[Any, dict[str, Any]]:
    """Fine-tune a copy of ``model`` towards the target CKA map; return it (eval mode) and a report."""
    dev = torch.device(device) if device else _device_of(model, "cpu")
    layers = list(pert.layers) or list(model.readable_layers)
    if len(layers) < 2:
        raise UserError(f"cka_map_manipulation needs at least two readable layers; got {layers}")
    unknown = [name for name in layers if name not in model.readable_layers]
    if unknown:
        raise UserError(
            f"cka_map_manipulation: layers {unknown} are not readable; readable: {list(model.readable_layers)}"
        )

    teacher = model.to(dev).eval()
    student = copy.deepcopy(teacher)
    xtr = data.train.x.to(dev)  # labels are not needed: the teacher's outputs are the targets
    xte, yte = data.test.x.to(dev), data.test.y.to(dev)
    eval_x = xte[: pert.eval_n] if pert.eval_n else xte

    with torch.no_grad():
        map_before = layer_map(teacher, eval_x, layers)
        acc_before = _accuracy(teacher, xte, yte)
    target = target_map(pert, map_before)

    gen = torch_generator(seed, "cka_map_manipulation")
    n = xtr.shape[0]
    bs = min(pert.batch_size, n)
    steps_per_epoch = max(1, n // bs)  # drop the ragged last batch: CKA on a handful of points is noise
    total = steps_per_epoch * pert.epochs
    warmup = int(pert.warmup_fraction * total)
    opt = torch.optim.AdamW(student.parameters(), lr=pert.lr, weight_decay=pert.weight_decay)

    def lr_factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
    t = pert.temperature
    student.train()
    with torch.inference_mode(False), torch.enable_grad():
        for _ in range(pert.epochs):
            order = torch.randperm(n, generator=gen).to(dev)
            for s in range(steps_per_epoch):
                idx = order[s * bs : (s + 1) * bs]
                xb = xtr[idx]
                with torch.no_grad():
                    teacher_logits = teacher(xb)
                logits = student(xb)
                reps = student.read(xb, layers)
                if not all(reps[name].requires_grad for name in layers):
                    raise UserError(
                        "cka_map_manipulation needs model.read to keep gradients (no detach / no_grad inside read)"
                    )
                m = cka_map([reps[name] for name in layers])
                distill = F.kl_div(
                    F.log_softmax(logits / t, dim=1),
                    F.log_softmax(teacher_logits / t, dim=1),
                    log_target=True,
                    reduction="batchmean",
                ) * (t * t)
                loss = distill + pert.lam * _logcosh(m - target).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
    student.eval()
    for p in student.parameters():
        p.requires_grad_(True)

    with torch.no_grad():
        map_after = layer_map(student, eval_x, layers)
        acc_after = _accuracy(student, xte, yte)
    report = {
        "layers": layers,
        "target": target.cpu(),
        "map_original": map_before.cpu(),
        "map": map_after.cpu(),
        "cka_offdiag_original": float(mean_off_diagonal(map_before)),
        "cka_offdiag": float(mean_off_diagonal(map_after)),
        "cka_first_last_original": float(map_before[0, -1]),
        "cka_first_last": float(map_after[0, -1]),
        "cka_map_distance_original": float((map_before - target).abs().mean()),
        "cka_map_distance": float((map_after - target).abs().mean()),
        "cka_target_distance_original": offdiag_distance(map_before, target),
        "cka_target_distance": offdiag_distance(map_after, target),
        "accuracy_original": acc_before,
        "accuracy": acc_after,
        "accuracy_change": acc_after - acc_before,
        "steps": total,
    }
    return student, report


def perturb_models(
    pert: Any,
    models: Mapping[str, Any],
    specs: Sequence[simbench.ModelSpec],
    data: simbench.DataSplits,
    ctx: simbench.PerturbContext,
) -> list[tuple[simbench.ModelSpec, Any]]:
    if data.task != "classification":
        raise UserError("cka_map_manipulation distils class probabilities: it needs a classification dataset")
    by_id = {s.id: s for s in specs}
    chosen = list(pert.models) or [s.id for s in specs if s.id in models]
    missing = [m for m in chosen if m not in models or m not in by_id]
    if missing:
        raise UserError(f"cka_map_manipulation: models {missing} are not in the zoo; available: {', '.join(by_id)}")
    advance = ctx.progress(f"Manipulating CKA maps ({pert.map_target})", total=len(chosen))
    out = []
    for model_id in chosen:
        original = by_id[model_id]
        seed = derive_seed(ctx.seed, model_id)  # independent of which models are chosen
        module, report = manipulate(pert, models[model_id], data, seed=seed, device=ctx.device)
        factors = {
            **original.factors,
            "manipulated": pert.map_target,
            "original": original.id,
            "cka_offdiag_original": round(report["cka_offdiag_original"], 6),
            "cka_offdiag": round(report["cka_offdiag"], 6),
            "cka_map_distance": round(report["cka_map_distance"], 6),
            "cka_first_last_original": round(report["cka_first_last_original"], 6),
            "cka_first_last": round(report["cka_first_last"], 6),
            "cka_target_distance_original": round(report["cka_target_distance_original"], 6),
            "cka_target_distance": round(report["cka_target_distance"], 6),
            "accuracy_original": round(report["accuracy_original"], 6),
            "accuracy": round(report["accuracy"], 6),
            "accuracy_change": round(report["accuracy_change"], 6),
            "cka_map": json.dumps([[round(v, 4) for v in row] for row in report["map"].tolist()]),
        }
        out.append((simbench.ModelSpec(id=pert.variant_id(original.id), factors=factors), module))
        advance(1)
    return out
