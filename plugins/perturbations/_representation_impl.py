"""torch side of ``representation_transform`` (seed 003 §3.2-3.3)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from simbench.seeding import torch_generator


def rms_radius(x: torch.Tensor) -> torch.Tensor:
    """sqrt(mean squared distance of the rows from their mean): the representation's scale."""
    xc = x - x.mean(0, keepdim=True)
    return xc.pow(2).sum(1).mean().sqrt()


def fit_linear_classifier(x: torch.Tensor, y: torch.Tensor, iters: int = 200) -> tuple[torch.Tensor, torch.Tensor]:
    """Multinomial logistic regression (tiny L2) by L-BFGS; returns ``W [d, C]``, ``b [C]`` in x's coordinates.

    ``y`` holds labels ``0..C-1`` (classes may be missing).  Deterministic.
    """
    x = x.to(torch.float64)
    classes = int(y.max()) + 1
    mean, std = x.mean(0), x.std(0).clamp_min(1e-8)
    z = (x - mean) / std
    w = torch.zeros(z.shape[1], classes, dtype=torch.float64, device=x.device, requires_grad=True)
    b = torch.zeros(classes, dtype=torch.float64, device=x.device, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=iters, line_search_fn="strong_wolfe")
    target = y.to(x.device).long()

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(z @ w + b, target) + 1e-4 * w.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    w_x = w.detach() / std.view(-1, 1)  # back to the original coordinates
    b_x = b.detach() - mean @ w_x
    return w_x, b_x


def separating_direction(w: torch.Tensor, label: int) -> torch.Tensor:
    """Unit vector v with ``(w_label - w_j) . v`` equal and positive for every other class j.

    Moving class ``label``'s points along v raises their score margin over
    every other class, so the classifier's decisions on them cannot get worse
    and no other point moves.
    """
    others = [j for j in range(w.shape[1]) if j != label]
    d = (w[:, label : label + 1] - w[:, others]).T  # [C-1, d]
    ones = torch.ones(d.shape[0], dtype=d.dtype, device=d.device)
    try:  # min-norm solution of d v = 1 through the small (C-1) x (C-1) system
        v = d.T @ torch.linalg.solve(d @ d.T, ones)
    except RuntimeError:  # rank-deficient (fewer features than classes): least squares
        v = torch.linalg.pinv(d) @ ones
    if not bool((d @ v > 0).all()):
        raise ValueError("representation_transform: no direction raises every margin of this class")
    return v / v.norm()


def _label(pert: Any, labels: torch.Tensor) -> int:
    """The class a transform moves (or indicates): ``pert.label``, -1 = the lowest label present."""
    present = torch.unique(labels)
    label = int(present[0]) if pert.label == -1 else int(pert.label)
    if not bool((labels == label).any()):
        raise ValueError(f"representation_transform: label {label} does not occur; labels present: {present.tolist()}")
    return label


def _kit_generator(seed: int) -> torch.Generator:
    # the kit's transforms draw from a generator seeded with the seed itself (not a derived stream), so a
    # benchmark that used to seed the kit directly keeps its draws
    return torch.Generator(device="cpu").manual_seed(int(seed))


def _weight_invariance(name: str) -> bool:
    from simbench.testing import WEIGHT_INVARIANCES

    return name in WEIGHT_INVARIANCES


def transform_with_details(pert: Any, x: torch.Tensor, y: torch.Tensor, seed: int) -> dict[str, Any]:
    if x.dim() != 2:
        x = x.reshape(x.shape[0], -1)
    # computed and returned in float64: the copies are compared at tolerances (1e-4 of a metric's range and
    # below) where rounding the result back to float32 would show
    xd = x.to(torch.float64)
    n, d = xd.shape
    info: dict[str, Any] = {"kind": pert.kind}
    if pert.kind == "class_translation":
        labels = y.to(x.device).long()
        label = _label(pert, labels)
        if pert.direction == "separating":
            w, b = fit_linear_classifier(xd, labels)
            v = separating_direction(w, label)
            info.update(classifier=(w, b))
        else:
            v = torch.randn(d, generator=torch_generator(seed, "translation"), dtype=torch.float64).to(x.device)
            v = v / v.norm()
        shift = pert.distance * rms_radius(xd) * v
        moved = labels == label
        out = xd + moved.unsqueeze(1).to(xd.dtype) * shift
        info.update(direction=v, label=label, moved=moved, shift=shift)
    elif pert.kind == "invertible_linear":
        g = torch_generator(seed, "matrix")
        for _ in range(100):
            m = pert.mu + pert.sigma * torch.randn(d, d, generator=g, dtype=torch.float64)
            # "invertible" in floating point: the smallest singular value is not negligible
            s = torch.linalg.svdvals(m)
            if float(s[-1]) > 1e-10 * float(s[0]):
                break
        else:  # pragma: no cover - essentially impossible for sigma > 0
            raise RuntimeError("no invertible matrix found")
        m = m.to(x.device)
        out = xd @ m
        info.update(matrix=m)
    elif pert.kind == "outlier":
        g = torch_generator(seed, "outlier")
        i = int(torch.randint(n, (1,), generator=g))
        v = torch.randn(d, generator=g, dtype=torch.float64)
        shift = pert.distance * rms_radius(xd) * (v / v.norm()).to(x.device)
        out = xd.clone()
        out[i] += shift
        info.update(index=i, shift=shift)
    elif pert.kind == "class_indicator":
        labels = y.to(x.device).long().reshape(-1)
        label = _label(pert, labels)
        out = (labels == label).to(torch.float64).unsqueeze(1)
        info.update(label=label)
    elif pert.kind == "row_sum":
        out = xd.sum(1, keepdim=True)
    elif pert.kind == "invariance":
        from simbench.testing import transform_activation

        if _weight_invariance(pert.invariance):
            raise ValueError(f"representation_transform: {pert.invariance!r} transforms weights, not activations")
        g = _kit_generator(seed)
        for width in pert.skip_widths:  # the draws of the tensors transformed before from the same stream
            transform_activation(pert.invariance, torch.zeros(2, width, dtype=torch.float64), g)
        out = transform_activation(pert.invariance, xd.cpu(), g)  # the kit draws on the CPU
    else:  # pragma: no cover - Literal-validated
        raise ValueError(f"unknown kind {pert.kind!r}")
    info["x"] = out
    return info


def transform_weights(pert: Any, weights: Any, seed: int) -> list[torch.Tensor]:
    """Kind ``invariance`` with a weight invariance: the kit's function-preserving transform, in float64."""
    from simbench.testing import transform_weights as kit_transform

    if pert.kind != "invariance" or not _weight_invariance(pert.invariance):
        what = f"invariance {pert.invariance!r}" if pert.kind == "invariance" else f"kind {pert.kind!r}"
        raise ValueError(f"representation_transform: {what} transforms activations, not weights")
    g = _kit_generator(seed)
    if pert.skip_widths:  # one layer's draw per width, as transforming a network with these hidden widths draws
        widths = list(pert.skip_widths)
        shapes = zip([1, *widths], [*widths, 1], strict=True)
        kit_transform(pert.invariance, [torch.zeros(i, o, dtype=torch.float64) for i, o in shapes], g)
    # .to keeps each matrix's memory layout (a transposed view stays one), as the kit's clone does
    return kit_transform(pert.invariance, [torch.as_tensor(w).to(torch.float64).cpu() for w in weights], g)


def transform(pert: Any, x: torch.Tensor, y: torch.Tensor, seed: int) -> torch.Tensor:
    return transform_with_details(pert, x, y, seed)["x"]
