"""Computation of the ``sanity`` benchmark (torch); tables and plots are in ``sanity_report``."""

from __future__ import annotations

import math
import zlib
from typing import Any

import numpy as np
import torch

import simbench
from simbench.errors import UserError
from simbench.testing import ACTIVATION_INVARIANCES, WEIGHT_INVARIANCES, transform_activation, transform_weights
from simbench.types import INVARIANCES

from .._scale import calibrated
from .common import INFO, INVARIANCE_GROUP

BENCH = ""


def _seed(seed: int, *tags: str) -> int:
    return (int(seed) * 1_000_003 + sum(zlib.crc32(t.encode()) * (k + 1) for k, t in enumerate(tags))) % (2**31 - 1)


def _error(exc: BaseException) -> str:
    return (f"{type(exc).__name__}: {exc}".splitlines() or [type(exc).__name__])[0][:300]


def settings(bench: Any) -> list[tuple[str, float, dict[str, Any], int]]:
    """``(kind, strength, perturbation params, draws)`` for every point of the sweep."""
    out = []
    for kind in bench.transforms:
        if kind == "class_translation":
            # the separating direction is deterministic: one draw is all there is
            draws = 1 if bench.direction == "separating" else bench.repeats
            params = {"kind": kind, "direction": bench.direction, "label": bench.translation_label}
            out += [(kind, float(d), {**params, "distance": float(d)}, draws)
                    for d in bench.translation_distances]
        elif kind == "invertible_linear":
            out += [(kind, float(mu), {"kind": kind, "mu": float(mu), "sigma": bench.invertible_sigma}, bench.repeats)
                    for mu in bench.invertible_mu]
        else:
            out += [(kind, float(d), {"kind": kind, "distance": float(d)}, bench.repeats)
                    for d in bench.outlier_distances]
    return out


def whiten(x: torch.Tensor) -> torch.Tensor:
    """Centre and whiten ``x`` with its own covariance (directions of negligible variance dropped).

    The read-out then sees the same features whatever invertible linear map
    or rescaling was applied, so its accuracy measures separability, not the
    conditioning of the features.
    """
    x = x.detach().cpu().double()
    xc = x - x.mean(0)
    evals, evecs = torch.linalg.eigh(xc.T @ xc / max(len(x) - 1, 1))
    keep = evals > evals.max() * 1e-10
    return xc @ evecs[:, keep] / evals[keep].sqrt()


def probe_accuracy(x: torch.Tensor, y: torch.Tensor) -> float:
    """Training accuracy of a multinomial logistic regression on whitened ``x``: is ``x`` still
    linearly separable by class?  (Seed 003 §3.3 judges usefulness by a linear classifier.)"""
    from sklearn.linear_model import LogisticRegression

    yv = y.detach().cpu().numpy()
    if len(np.unique(yv)) < 2:
        return float("nan")
    xs = whiten(x).numpy()
    clf = LogisticRegression(max_iter=2000, C=10.0).fit(xs, yv)
    return float(clf.score(xs, yv))


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Feature-space linear CKA of two column-centred representations (float64)."""
    x = x.double() - x.double().mean(0)
    y = y.double() - y.double().mean(0)
    cross = torch.linalg.matrix_norm(y.T @ x) ** 2
    den = torch.linalg.matrix_norm(x.T @ x) * torch.linalg.matrix_norm(y.T @ y)
    return float(cross / den) if float(den) > 0 else float("nan")


def limits(x: torch.Tensor, y: torch.Tensor, label: int) -> dict[str, float]:
    """Linear CKA between ``X`` and each transform's limit at infinite strength.

    Translating class ``label`` by ``c v`` gives ``X + c 1_label v^T``, which
    for ``c -> inf`` is dominated by the rank-one ``1_label v^T``; linear CKA
    only sees its Gram matrix, so the limit is ``CKA(X, 1_label)`` whatever
    ``v``.  ``X M`` with ``M ~ N(mu, sigma^2)`` is dominated for
    ``mu / sigma -> inf`` by ``mu X 1 1^T``: the limit is ``CKA(X, X 1)``.  How
    far CKA can fall therefore depends on how much of ``X`` these directions
    carry -- little in seed 003's isotropic synthetic data, a lot in a
    trained network's class-structured last layer.
    """
    indicator = (y.reshape(-1) == label).to(torch.float64).unsqueeze(1)
    return {"class_translation": linear_cka(x, indicator),
            "invertible_linear": linear_cka(x, x.double().sum(1, keepdim=True))}


def evaluate(bench: Any, ctx: Any) -> list[simbench.Record]:
    if bench.probe_set not in ctx.probe_sets:
        raise UserError(f"sanity: unknown probe set {bench.probe_set!r}; this suite has {list(ctx.probe_sets)}")
    specs = list(ctx.specs)[: bench.max_models]
    reps_all = ctx.representations(bench.probe_set)
    ps = ctx.probe_set(bench.probe_set)
    y = ps.y
    inputs = ps.x.reshape(len(ps.x), -1).to(torch.float64)
    device = getattr(ctx, "device", "cpu")
    run_seed = int(getattr(ctx, "seed", 0))
    records: list[simbench.Record] = [simbench.Record(BENCH, "tolerance", bench.invariance_tolerance, group=INFO)]

    # 1. transformed copies of every chosen model's representation (the perturbation plugin does the work)
    sweep = settings(bench)
    copies: dict[int, list[torch.Tensor]] = {}
    keys: list[tuple[str, float, int]] = []
    accuracy: dict[tuple[str, float], list[float]] = {}
    for i, spec in enumerate(specs):
        x = reps_all[i].to(torch.float64)
        copies[i] = [x]
        for kind, strength, params, draws in sweep:
            pert = ctx.make_plugin("perturbation", "representation_transform", params)
            for r in range(draws):
                rc = simbench.RunContext(seed=_seed(run_seed, "sanity", spec.id, kind, str(r)), device=device)
                tx = pert.transform_representation(x, y, rc).to(torch.float64)
                copies[i].append(tx)
                if i == 0:
                    keys.append((kind, strength, r))
                accuracy.setdefault((kind, strength), []).append(probe_accuracy(tx, y))
    model_ids = ",".join(s.id for s in specs)
    if "class_translation" in bench.transforms or "invertible_linear" in bench.transforms:
        label = int(torch.unique(y)[0]) if bench.translation_label == -1 else int(bench.translation_label)
        lims: dict[str, list[float]] = {}
        for i in copies:
            for kind, value in limits(copies[i][0], y, label).items():
                lims.setdefault(kind, []).append(value)
        for kind, vals in lims.items():
            if kind in bench.transforms:
                records.append(simbench.Record(BENCH, "linear_cka_limit", float(np.mean(vals)), group=kind,
                                               probe_set=bench.probe_set, model_a=model_ids, n=len(vals)))
    for (kind, strength), accs in accuracy.items():
        records.append(simbench.Record(BENCH, "probe_accuracy_mean", float(np.mean(accs)), group=kind,
                                       probe_set=bench.probe_set, model_a=model_ids, model_b=repr(strength),
                                       n=len(accs)))
    records.append(simbench.Record(BENCH, "probe_accuracy_original", float(np.mean(
        [probe_accuracy(copies[i][0], y) for i in copies])), group=INFO, probe_set=bench.probe_set,
        model_a=model_ids, n=len(copies)))

    # 2. every activation metric: original against all its copies, one pairwise call per model
    for label, metric in ctx.metrics.items():
        if metric.kind != "activation":
            continue
        values: dict[tuple[str, float], list[float]] = {}
        try:
            for i in copies:
                reps = [c.to(device) for c in copies[i]]
                kwargs = {"inputs": inputs.to(device)} if metric.needs_inputs else {}
                row = torch.as_tensor(metric.pairwise(reps, **kwargs))[0, 1:].detach().cpu().double().numpy()
                if not np.isfinite(row).all():
                    raise ValueError("non-finite similarity values")
                for (kind, strength, _), v in zip(keys, row, strict=True):
                    values.setdefault((kind, strength), []).append(float(v))
        except Exception as exc:  # a metric's failure is a result; the benchmark goes on
            if isinstance(exc, UserError):
                raise
            records.append(simbench.Record(BENCH, "value_mean", float("nan"), metric=label, group=sweep[0][0],
                                           probe_set=bench.probe_set, status="failed", error=_error(exc)))
            continue
        for (kind, strength), vals in values.items():
            v = np.asarray(vals)
            s = np.asarray(calibrated(metric, metric.to_similarity(v)))
            sd = lambda a: float(np.std(a, ddof=1)) if len(a) > 1 else 0.0  # noqa: E731
            for stat, val in (("value_mean", v.mean()), ("value_sd", sd(v)), ("scaled_mean", s.mean()),
                              ("scaled_sd", sd(s))):
                records.append(simbench.Record(BENCH, stat, float(val), metric=label, group=kind,
                                               probe_set=bench.probe_set, model_a=model_ids,
                                               model_b=repr(strength), n=len(v)))

    # 3. declared invariances, on two real models
    records += invariance_records(bench, ctx, reps_all, inputs, run_seed)
    return records


def _width(metric: Any) -> float:
    lo, hi = metric.value_range
    return float(hi - lo) if math.isfinite(hi - lo) else 1.0


def invariance_records(bench: Any, ctx: Any, reps_all: list[torch.Tensor], inputs: torch.Tensor,
                       run_seed: int) -> list[simbench.Record]:
    """Per metric and applicable invariance: the largest change under the kit's random transforms."""
    specs = list(ctx.specs)
    if len(specs) < 2:
        return []
    wanted = sorted(bench.invariances or INVARIANCES)
    device = getattr(ctx, "device", "cpu")
    pair = f"{specs[0].id},{specs[1].id}"
    out: list[simbench.Record] = []
    for label, metric in ctx.metrics.items():
        weight = metric.kind == "weight"
        applicable = [v for v in wanted if v in (WEIGHT_INVARIANCES if weight else ACTIVATION_INVARIANCES)]
        if not applicable:
            continue
        if weight:
            a = [w.detach().to(torch.float64).cpu() for w in ctx.models[specs[0].id].dense_weights()]
            b = [w.detach().to(torch.float64).cpu() for w in ctx.models[specs[1].id].dense_weights()]
        else:
            a, b = reps_all[0].to(torch.float64).cpu(), reps_all[1].to(torch.float64).cpu()
        # one batch: a, b, then (t(a), t(b)) for every invariance x draw
        batch = [a, b]
        index: list[tuple[str, int, int]] = []
        for name in applicable:
            for d in range(bench.invariance_draws):
                g = torch.Generator().manual_seed(_seed(run_seed, "invariance", label, name, str(d)))
                if weight:
                    ta, tb = transform_weights(name, a, g), transform_weights(name, b, g)
                else:
                    ta, tb = transform_activation(name, a, g), transform_activation(name, b, g)
                index.append((name, len(batch), len(batch) + 1))
                batch += [ta, tb]
        try:
            moved = [[w.to(device) for w in item] for item in batch] if weight else [t.to(device) for t in batch]
            kwargs = {"inputs": inputs.to(device)} if metric.needs_inputs else {}
            s = torch.as_tensor(metric.pairwise(moved, **kwargs)).detach().cpu().double()
            if not bool(torch.isfinite(s).all()):
                raise ValueError("non-finite similarity values")
        except Exception as exc:
            if isinstance(exc, UserError):
                raise
            out.append(simbench.Record(BENCH, "change", float("nan"), metric=label, group=INVARIANCE_GROUP,
                                       model_b=applicable[0], status="failed", error=_error(exc)))
            continue
        base = float(s[0, 1])
        change: dict[str, float] = {}
        for name, ia, ib in index:
            diffs = [abs(float(s[ia, 1]) - base), abs(float(s[0, ib]) - base), abs(float(s[ia, ib]) - base)]
            change[name] = max(change.get(name, 0.0), max(diffs) / _width(metric))
        for name in applicable:
            declared = name in metric.invariances
            holds = change[name] <= bench.invariance_tolerance
            common = dict(metric=label, group=INVARIANCE_GROUP, model_a=pair, model_b=name,
                          probe_set="weights" if weight else bench.probe_set, n=bench.invariance_draws)
            out += [simbench.Record(BENCH, "change", change[name], **common),
                    simbench.Record(BENCH, "declared", float(declared), **common),
                    simbench.Record(BENCH, "holds", float(holds), **common)]
            if declared:
                out.append(simbench.Record(BENCH, "passed", float(holds), **common))
    return out
