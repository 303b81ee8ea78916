"""Computation of the ``sanity`` benchmark (torch): its declared matrices and the records read from them; tables
and plots are in ``report``.  It reads the store view only: the runner transforms the representations and weights
(the ``representation_transform`` perturbation, named in each source) and runs every metric (``requests``)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

import simbench
from simbench.errors import UserError
from simbench.seeding import derive_seed
from simbench.testing import ACTIVATION_INVARIANCES, WEIGHT_INVARIANCES
from simbench.types import INVARIANCES, WEIGHTS_PROBE_SET

from .._scale import calibrated
from .common import INFO, INVARIANCE_GROUP

BENCH = ""


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



# --------------------------------------------------------------------------
# What the benchmark declares
# --------------------------------------------------------------------------

#: the perturbation every transformed source names
TRANSFORM = "representation_transform"
#: every source in float64: the transforms return float64, and the original must meet its copies in one precision
F64 = "float64"


def _original(bench: Any, model_id: str) -> simbench.Source:
    return simbench.Source(model_id, bench.probe_set, dtype=F64)


def sweep_sources(bench: Any, model_id: str, run_seed: int) -> list[tuple[str, float, simbench.Source]]:
    """``(kind, strength, source)`` for every transformed copy of one model's representation, in sweep order
    (each strength's draws in turn); draw ``r`` of a kind is seeded by (run seed, model, kind, r)."""
    out = []
    for kind, strength, params, draws in settings(bench):
        for r in range(draws):
            seed = derive_seed(run_seed, "sanity", model_id, kind, r)
            out.append((kind, strength, simbench.Source(model_id, bench.probe_set, transform=TRANSFORM,
                                                        transform_params=tuple(sorted(params.items())),
                                                        transform_seed=seed, dtype=F64)))
    return out


def _applicable(bench: Any, metric: Any) -> list[str]:
    wanted = sorted(bench.invariances or INVARIANCES)
    return [v for v in wanted if v in (WEIGHT_INVARIANCES if metric.kind == "weight" else ACTIVATION_INVARIANCES)]


def curve_key(label: str, model_id: str) -> str:
    return f"curve/{label}/{model_id}"


def limit_key(model_id: str) -> str:
    return f"limit/{model_id}"


def invariance_key(label: str) -> str:
    return f"invariance/{label}"


def _check_probe_set(bench: Any, view: Any) -> None:
    if bench.probe_set not in view.probe_sets:
        raise UserError(f"sanity: unknown probe set {bench.probe_set!r}; this suite has {list(view.probe_sets)}")


def _limits_wanted(bench: Any) -> bool:
    return "class_translation" in bench.transforms or "invertible_linear" in bench.transforms


def requests(bench: Any, view: Any) -> list[simbench.MatrixRequest]:
    """Per activation metric and model: the metric over [X, every transformed copy]; per model: linear CKA over
    [X, the class indicator, X 1] (the limits); per metric with an applicable invariance: the metric over
    [a, b, then t(a), t(b) for every invariance and draw] for the first two models' activations or weights."""
    _check_probe_set(bench, view)
    run_seed = int(view.seed)
    specs = list(view.specs)[: bench.max_models]
    out: list[simbench.MatrixRequest] = []
    for label, metric in view.metrics.items():
        if metric.kind != "activation":
            continue
        for spec in specs:
            sources = (_original(bench, spec.id), *(src for _, _, src in sweep_sources(bench, spec.id, run_seed)))
            out.append(simbench.MatrixRequest(curve_key(label, spec.id), label, sources))
    if _limits_wanted(bench):
        # the transforms' limits at infinite strength, measured by the linear CKA metric itself (seed 003 studies
        # linear CKA; the registered metric with its defaults unless the suite configures one labelled so)
        for spec in specs:
            limits = tuple(simbench.Source(spec.id, bench.probe_set, transform=TRANSFORM,
                                           transform_params=params, dtype=F64)
                           for params in ((("kind", "class_indicator"), ("label", bench.translation_label)),
                                          (("kind", "row_sum"),)))
            out.append(simbench.MatrixRequest(limit_key(spec.id), "linear_cka", (_original(bench, spec.id), *limits)))
    out += invariance_requests(bench, view, run_seed)
    return out


def invariance_requests(bench: Any, view: Any, run_seed: int) -> list[simbench.MatrixRequest]:
    """One batch per metric: ``a``, ``b`` (the first two models), then ``t(a)``, ``t(b)`` for every applicable
    invariance x draw, both from one random stream seeded by (run seed, metric label, invariance, draw): ``t(b)``
    skips the draws that transformed ``a`` (``skip_widths``), as when both were transformed in turn."""
    specs = list(view.specs)
    if len(specs) < 2:
        return []
    a_id, b_id = specs[0].id, specs[1].id
    widths: dict[bool, tuple[int, ...]] = {}
    out = []
    for label, metric in view.metrics.items():
        applicable = _applicable(bench, metric)
        if not applicable:
            continue
        weight = metric.kind == "weight"
        if weight not in widths:  # what transforming a draws: its width, or its hidden layers' widths
            widths[weight] = (tuple(int(w.shape[1]) for w in view.weights(a_id)[:-1]) if weight
                              else (int(view.representation(_original(bench, a_id)).shape[1]),))

        def source(model_id: str, **kw: Any) -> simbench.Source:
            if weight:
                return simbench.Source(model_id, "", WEIGHTS_PROBE_SET, dtype=F64, **kw)
            return simbench.Source(model_id, bench.probe_set, dtype=F64, **kw)

        sources = [source(a_id), source(b_id)]
        for name in applicable:
            for d in range(bench.invariance_draws):
                seed = derive_seed(run_seed, "invariance", label, name, d)
                params = (("invariance", name), ("kind", "invariance"))
                sources += [source(a_id, transform=TRANSFORM, transform_params=params, transform_seed=seed),
                            source(b_id, transform=TRANSFORM, transform_params=(*params, ("skip_widths", widths[weight])),
                                   transform_seed=seed)]
        out.append(simbench.MatrixRequest(invariance_key(label), label, tuple(sources)))
    return out


# --------------------------------------------------------------------------
# Records, read from the view
# --------------------------------------------------------------------------


def _failed(statistic: str, label: str, group: str, error: str, **kw: Any) -> simbench.Record:
    return simbench.Record(BENCH, statistic, float("nan"), metric=label, group=group, status="failed",
                           error=error[:300], **kw)


def _row(view: Any, key: str) -> tuple[torch.Tensor | None, str]:
    """The declared matrix ``key`` (float64), or its one-line error; a matrix with non-finite values (a metric
    may leave a whole row undefined) is an error here: every entry of it is read."""
    error = view.matrix_failure(key)
    if error:
        return None, error
    m = view.matrix(key).double()
    if not bool(torch.isfinite(m).all()):
        return None, "ValueError: non-finite similarity values"
    return m, ""


def evaluate(bench: Any, view: Any) -> list[simbench.Record]:
    _check_probe_set(bench, view)
    specs = list(view.specs)[: bench.max_models]
    y = view.probe_set(bench.probe_set).y
    run_seed = int(view.seed)
    records: list[simbench.Record] = [simbench.Record(BENCH, "tolerance", bench.invariance_tolerance, group=INFO)]
    model_ids = ",".join(s.id for s in specs)
    common = dict(probe_set=bench.probe_set, model_a=model_ids)

    # 1. the read-out on every transformed copy (the copies the runner built for the curves' matrices)
    accuracy: dict[tuple[str, float], list[float]] = {}
    for spec in specs:
        for kind, strength, source in sweep_sources(bench, spec.id, run_seed):
            accuracy.setdefault((kind, strength), []).append(probe_accuracy(view.representation(source), y))
    if _limits_wanted(bench):
        lims: dict[str, list[float]] = {}
        errors = []
        for spec in specs:
            m, error = _row(view, limit_key(spec.id))
            if m is None:
                errors.append(error)
                continue
            lims.setdefault("class_translation", []).append(float(m[0, 1]))
            lims.setdefault("invertible_linear", []).append(float(m[0, 2]))
        for kind in ("class_translation", "invertible_linear"):
            if kind not in bench.transforms:
                continue
            if errors:
                records.append(_failed("linear_cka_limit", "", kind, errors[0], **common))
            else:
                records.append(simbench.Record(BENCH, "linear_cka_limit", float(np.mean(lims[kind])), group=kind,
                                               n=len(lims[kind]), **common))
    for (kind, strength), accs in accuracy.items():
        records.append(simbench.Record(BENCH, "probe_accuracy_mean", float(np.mean(accs)), group=kind,
                                       n=len(accs), coords={"strength": strength}, **common))
    originals = [probe_accuracy(view.representation(_original(bench, s.id)), y) for s in specs]
    records.append(simbench.Record(BENCH, "probe_accuracy_original", float(np.mean(originals)), group=INFO,
                                   n=len(originals), **common))

    # 2. every activation metric: the first row of each model's matrix, original against all its copies
    sweep = settings(bench)
    for label, metric in view.metrics.items():
        if metric.kind != "activation":
            continue
        values: dict[tuple[str, float], list[float]] = {}
        error = ""
        for spec in specs:
            m, error = _row(view, curve_key(label, spec.id))
            if m is None:
                break
            copies = sweep_sources(bench, spec.id, run_seed)
            for (kind, strength, _), v in zip(copies, m[0, 1:].tolist(), strict=True):
                values.setdefault((kind, strength), []).append(float(v))
        if error:
            records.append(_failed("value_mean", label, sweep[0][0], error, probe_set=bench.probe_set))
            continue
        for (kind, strength), vals in values.items():
            v = np.asarray(vals)
            s = np.asarray(calibrated(metric, metric.to_similarity(v)))
            sd = lambda a: float(np.std(a, ddof=1)) if len(a) > 1 else 0.0  # noqa: E731
            for stat, val in (("value_mean", v.mean()), ("value_sd", sd(v)), ("scaled_mean", s.mean()),
                              ("scaled_sd", sd(s))):
                records.append(simbench.Record(BENCH, stat, float(val), metric=label, group=kind, n=len(v),
                                               coords={"strength": strength}, **common))

    # 3. declared invariances, on two real models
    records += invariance_records(bench, view)
    return records


def _width(metric: Any) -> float:
    lo, hi = metric.value_range
    return float(hi - lo) if math.isfinite(hi - lo) else 1.0


def invariance_records(bench: Any, view: Any) -> list[simbench.Record]:
    """Per metric and applicable invariance: the largest change under the kit's random transforms."""
    specs = list(view.specs)
    if len(specs) < 2:
        return []
    pair = f"{specs[0].id},{specs[1].id}"
    out: list[simbench.Record] = []
    for label, metric in view.metrics.items():
        applicable = _applicable(bench, metric)
        if not applicable:
            continue
        weight = metric.kind == "weight"
        s, error = _row(view, invariance_key(label))
        if s is None:
            out.append(_failed("change", label, INVARIANCE_GROUP, error, model_b=applicable[0]))
            continue
        # the batch is a, b, then (t(a), t(b)) for every invariance x draw (invariance_requests)
        base = float(s[0, 1])
        change: dict[str, float] = {}
        k = 2
        for name in applicable:
            for _ in range(bench.invariance_draws):
                ia, ib = k, k + 1
                diffs = [abs(float(s[ia, 1]) - base), abs(float(s[0, ib]) - base), abs(float(s[ia, ib]) - base)]
                change[name] = max(change.get(name, 0.0), max(diffs) / _width(metric))
                k += 2
        for name in applicable:
            declared = name in metric.invariances
            holds = change[name] <= bench.invariance_tolerance
            common = dict(metric=label, group=INVARIANCE_GROUP, model_a=pair, model_b=name,
                          probe_set=WEIGHTS_PROBE_SET if weight else bench.probe_set, n=bench.invariance_draws)
            out += [simbench.Record(BENCH, "change", change[name], **common),
                    simbench.Record(BENCH, "declared", float(declared), **common),
                    simbench.Record(BENCH, "holds", float(holds), **common)]
            if declared:
                out.append(simbench.Record(BENCH, "passed", float(holds), **common))
    return out
