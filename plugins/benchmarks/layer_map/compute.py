"""Computation of the ``layer_map`` benchmark (torch): its declared maps and the statistics of them; tables and
plots are in ``report``.  It reads the store view only: the runner computes every map (``requests``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

import simbench

from .common import DELTA_STATS

#: records leave ``benchmark`` empty: the runner fills in the suite label of this benchmark entry
BENCH = ""


# --------------------------------------------------------------------------
# Map statistics
# --------------------------------------------------------------------------


def offdiag_values(sim: torch.Tensor, symmetric: bool) -> torch.Tensor:
    """Off-diagonal entries: the strict upper triangle for symmetric maps, all ``i != j`` otherwise."""
    n = sim.shape[0]
    if symmetric:
        i, j = torch.triu_indices(n, n, offset=1)
        return sim[i, j]
    mask = ~torch.eye(n, dtype=torch.bool, device=sim.device)
    return sim[mask]


def skewness(v: torch.Tensor) -> float:
    """Fisher-Pearson coefficient g1 = m3 / m2^1.5 (0 for constant input)."""
    v = v.double()
    if v.numel() < 2:
        return 0.0
    d = v - v.mean()
    m2 = (d**2).mean()
    if float(m2) <= 1e-24:
        return 0.0
    return float((d**3).mean() / m2**1.5)


def spectrum(sim: torch.Tensor) -> torch.Tensor:
    """Eigenvalues of the symmetrised map, largest first."""
    sym = 0.5 * (sim + sim.T)
    return torch.linalg.eigvalsh(sym.double()).flip(0)


def effective_rank(eigs: torch.Tensor) -> float:
    """exp(Shannon entropy) of the positive eigenvalues normalised to sum 1 (Roy & Vetterli 2007)."""
    pos = eigs.clamp(min=0.0)
    total = float(pos.sum())
    if total <= 0:
        return float("nan")
    p = pos / total
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def block_score(eigs: torch.Tensor) -> float:
    """``1 - (erank - 1) / (L - 1)``: 0 for an identity map (all layers distinct), 1 for all-ones (one block)."""
    n = eigs.numel()
    if n < 2:
        return float("nan")
    return 1.0 - (effective_rank(eigs) - 1.0) / (n - 1.0)


def histogram(values: torch.Tensor, lo: float, hi: float, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Density over ``bins`` equal bins of ``[lo, hi]`` (values outside are clipped to the edges)."""
    v = values.double().cpu().numpy()
    v = np.clip(v, lo, hi)
    dens, edges = np.histogram(v, bins=bins, range=(lo, hi), density=True)
    return dens, edges


def map_summary(sim: torch.Tensor, symmetric: bool) -> dict[str, float]:
    """Summary statistics of one oriented (higher = more similar) map."""
    off = offdiag_values(sim, symmetric)
    eigs = spectrum(sim)
    n = sim.shape[0]
    adj = torch.cat([torch.diagonal(sim, 1), torch.diagonal(sim, -1)]) if not symmetric else torch.diagonal(sim, 1)
    out = {
        "n_layers": float(n),
        "diag_mean": float(torch.diagonal(sim).mean()),
        "offdiag_mean": float(off.mean()),
        "offdiag_median": float(off.median()),
        "offdiag_std": float(off.std(unbiased=False)),
        "offdiag_skew": skewness(off),
        "adjacent_mean": float(adj.mean()),
        "effective_rank": effective_rank(eigs),
        "block_score": block_score(eigs),
    }
    for k, e in enumerate(eigs.tolist()):
        out[f"eig_{k + 1}"] = float(e)
    return out


# --------------------------------------------------------------------------
# Task scores
# --------------------------------------------------------------------------


def r2_scores(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Coefficient of determination per target column: ``1 - SS_res / SS_tot``."""
    pred = pred.double().reshape(len(pred), -1)
    y = y.double().reshape(len(y), -1).to(pred.device)
    ss_res = ((pred - y) ** 2).sum(0)
    ss_tot = ((y - y.mean(0)) ** 2).sum(0)
    return 1.0 - ss_res / ss_tot.clamp(min=1e-300)


def task_scores(
    output: torch.Tensor, y: torch.Tensor, task: str, targets: Sequence[str], score_targets: Sequence[str]
) -> dict[str, float]:
    if task == "classification":
        pred = output.reshape(len(output), -1).argmax(1).cpu()
        return {"task_score": float((pred == y.reshape(-1).long().cpu()).double().mean())}
    r2 = r2_scores(output, y).cpu()
    names = list(targets) if len(targets) == r2.numel() else [f"t{j}" for j in range(r2.numel())]
    out = {f"r2_{name}": float(v) for name, v in zip(names, r2.tolist())}
    chosen = list(score_targets) or names
    missing = [t for t in chosen if t not in names]
    if missing:
        raise ValueError(f"layer_map: score_targets {missing} are not targets of the data (targets: {names})")
    out["task_score"] = float(np.mean([out[f"r2_{t}"] for t in chosen]))
    return out


# --------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------


def _probes(bench: Any, view: Any) -> list[str]:
    """The probe sets to map, reference first (so deltas can be formed as we go)."""
    probes = list(bench.probe_sets) or list(view.probe_sets)
    unknown = [p for p in probes if p not in view.probe_sets]
    if unknown:
        raise ValueError(f"layer_map: unknown probe set(s) {unknown}; available: {list(view.probe_sets)}")
    if bench.reference in probes:
        probes.remove(bench.reference)
        probes.insert(0, bench.reference)
    return probes


def mapped_layers(bench: Any, view: Any, model_id: str) -> tuple[list[str], str]:
    """The layers mapped for one model (``bench.layers``, default all readable ones), and why the model
    cannot be mapped ("" if it can).  Shared with ``survey_transfer``, which maps layers the same way."""
    readable = list(view.layers(model_id))
    layers = list(bench.layers) or readable
    missing = [name for name in layers if name not in readable]
    if missing:
        return layers, f"ValueError: model {model_id} has no layer(s) {missing}"
    if len(layers) < 2:
        return layers, f"ValueError: model {model_id} has fewer than two readable layers"
    return layers, ""


def map_key(model_id: str, probe: str) -> str:
    """The key of one model's layer x layer map on one probe set among this benchmark's declared matrices."""
    return f"{model_id}@{probe}"


def requests(bench: Any, view: Any) -> list[Any]:
    """One declared matrix per (model, probe set): ``bench.metric`` over the model's layers on that probe set."""
    out = []
    for probe in _probes(bench, view):
        for spec in list(view.specs)[: bench.max_models]:
            layers, why = mapped_layers(bench, view, spec.id)
            if why:
                continue  # evaluate records the failed map
            sources = tuple(simbench.Source(spec.id, probe, layer) for layer in layers)
            out.append(simbench.MatrixRequest(map_key(spec.id, probe), bench.metric, sources,
                                              tuple(sorted(bench.metric_params.items()))))
    return out


def _record(bench: Any, statistic: str, value: float, probe: str, model: str, n: int, a: str = "", b: str = "",
            coords: dict[str, float] | None = None) -> Any:
    return simbench.Record(
        benchmark=BENCH,
        statistic=statistic,
        value=float(value),
        metric=bench.metric,
        probe_set=probe,
        group=model,
        model_a=a,
        model_b=b,
        n=n,
        coords=coords or {},
    )


def _failed(bench: Any, probe: str, model: str, n: int, error: str) -> Any:
    return simbench.Record(benchmark=BENCH, statistic="map", value=float("nan"), metric=bench.metric, probe_set=probe,
                           group=model, n=n, status="failed", error=error)


def evaluate(bench: Any, view: Any) -> list[Any]:
    probes = _probes(bench, view)
    specs = list(view.specs)[: bench.max_models]
    targets = list(view.data.meta.get("targets", [])) if view.data.meta else []
    records: list[Any] = []
    reference_stats: dict[str, dict[str, float]] = {}
    for probe in probes:
        ps = view.probe_set(probe)
        n = int(ps.x.shape[0])
        outputs = view.outputs(probe)
        for index, spec in enumerate(specs):
            layers, why = mapped_layers(bench, view, spec.id)
            if why:
                records.append(_failed(bench, probe, spec.id, n, why))
                continue
            key = map_key(spec.id, probe)
            try:
                raw = view.matrix(key).double().cpu()
                if not torch.isfinite(raw).all():
                    raise ValueError("the metric returned non-finite map entries")
            except Exception as exc:  # one failed map must not sink the other models
                error = str(exc) if isinstance(exc, simbench.MeasurementFailed) else f"{type(exc).__name__}: {exc}"
                records.append(_failed(bench, probe, spec.id, n, error))
                continue
            metric = view.matrix_metric(key)
            if getattr(metric, "kind", "activation") != "activation":
                raise ValueError(f"layer_map needs an activation metric; {bench.metric!r} is a {metric.kind} metric")
            lo, hi = metric.value_range
            if not metric.higher_is_more_similar:
                lo, hi = -hi, -lo
            symmetric = bool(metric.symmetric)
            for i, li in enumerate(layers):
                for j, lj in enumerate(layers):
                    records.append(_record(bench, "map", raw[i, j], probe, spec.id, n, li, lj,
                                           {"layer_a": float(i), "layer_b": float(j)}))
            sim = metric.to_similarity(raw) if not metric.higher_is_more_similar else raw
            stats = map_summary(sim, symmetric)
            stats.update(task_scores(outputs[index], ps.y, view.data.task, targets, bench.score_targets))
            for name, value in stats.items():
                # an eigenvalue's rank is a coordinate too (the statistic keeps its name for the tables)
                coords = {"rank": float(name[4:])} if name.startswith("eig_") else None
                records.append(_record(bench, name, value, probe, spec.id, n, coords=coords))
            dens, edges = histogram(offdiag_values(sim, symmetric), lo, hi, bench.bins)
            for d, (a, b) in zip(dens, zip(edges[:-1], edges[1:])):
                records.append(_record(bench, "pdf", d, probe, spec.id, n,
                                       coords={"bin_low": float(a), "bin_high": float(b)}))
            if probe == bench.reference:
                reference_stats[spec.id] = stats
            elif spec.id in reference_stats:
                ref = reference_stats[spec.id]
                for name in DELTA_STATS:
                    if name in stats and name in ref:
                        records.append(_record(bench, f"delta_{name}", stats[name] - ref[name], probe, spec.id, n))
    records.extend(finding_summary(bench, records))
    return records


def finding_summary(bench: Any, records: Sequence[Any]) -> list[Any]:
    """Across (model, shifted probe set) pairs: does a larger task-score drop go with more block structure?

    Spearman correlations of ``-delta_task_score`` with ``delta_block_score``
    and with ``delta_offdiag_mean`` (``group = "all"``); seed 000 predicts
    them positive.  Needs at least three pairs.
    """
    from scipy import stats as sps

    deltas: dict[tuple[str, str], dict[str, float]] = {}
    for r in records:
        if r.statistic.startswith("delta_") and r.status == "ok":
            deltas.setdefault((r.group, r.probe_set), {})[r.statistic] = r.value
    rows = [d for d in deltas.values() if {"delta_task_score", "delta_block_score", "delta_offdiag_mean"} <= set(d)]
    out: list[Any] = []
    if len(rows) < 3:
        return out
    drop = np.array([-d["delta_task_score"] for d in rows])
    for stat in ("delta_block_score", "delta_offdiag_mean"):
        gain = np.array([d[stat] for d in rows])
        if np.ptp(drop) == 0 or np.ptp(gain) == 0:
            continue
        rho = float(sps.spearmanr(drop, gain).statistic)
        out.append(
            simbench.Record(
                benchmark=BENCH,
                statistic=f"spearman_task_drop_vs_{stat}",
                value=rho,
                metric=bench.metric,
                group="all",
                n=len(rows),
            )
        )
    return out
