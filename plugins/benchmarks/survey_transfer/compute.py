"""Computation of the ``survey_transfer`` benchmark (torch / numpy); tables and plots are in ``report``.

It reads the store view only: the models' outputs, and the layer x layer maps it declares in :func:`requests`
(computed, validated and cached by the runner)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

import simbench

from ..layer_map.compute import map_key, map_summary, mapped_layers

#: records leave ``benchmark`` empty: the runner fills in the suite label of this benchmark entry
BENCH = ""
OVERALL = "overall"
LAYERS = "layers"


def regression_scores(pred: Any, y: Any) -> dict[str, np.ndarray]:
    """Per column Pearson ``r``, ``r2`` (1 - SS_res / SS_tot) and ``mae``; plus ``mse`` per column.

    ``pred`` and ``y`` are ``[n, T]`` (tensors or arrays).  A constant column
    (predictions or targets) has r = NaN; a constant target has R² = NaN.
    """
    p = np.asarray(torch.as_tensor(pred).detach().double().cpu()).reshape(len(pred), -1)
    t = np.asarray(torch.as_tensor(y).detach().double().cpu()).reshape(len(y), -1)
    if p.shape != t.shape:
        raise ValueError(f"predictions {p.shape} and targets {t.shape} differ in shape")
    pc, tc = p - p.mean(0), t - t.mean(0)
    ss_p, ss_t = (pc**2).sum(0), (tc**2).sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where((ss_p > 0) & (ss_t > 0), (pc * tc).sum(0) / np.sqrt(ss_p * ss_t), np.nan)
        r2 = np.where(ss_t > 0, 1.0 - ((p - t) ** 2).sum(0) / ss_t, np.nan)
    return {"r": r, "r2": r2, "mae": np.abs(p - t).mean(0), "mse": ((p - t) ** 2).mean(0)}


def resolve_tasks(bench: Any, meta: Mapping[str, Any] | None, n_cols: int) -> list[tuple[str, int]]:
    """``[(task name, column index)]`` from ``bench.targets``, ``meta["tasks"]`` or ``meta["targets"]``."""
    meta = meta or {}
    names = list(meta.get("targets") or [f"t{j}" for j in range(n_cols)])
    if len(names) != n_cols:
        names = [f"t{j}" for j in range(n_cols)]
    if bench.targets:
        missing = [t for t in bench.targets if t not in names]
        if missing:
            raise ValueError(f"survey_transfer: targets {missing} are not target columns (columns: {names})")
        return [(t, names.index(t)) for t in bench.targets]
    tasks = meta.get("tasks")
    if tasks:
        out = []
        for task, col in dict(tasks).items():
            if col not in names:
                raise ValueError(f"survey_transfer: the data's task {task!r} names column {col!r}, which it lacks")
            out.append((str(task), names.index(col)))
        return out
    return [(name, j) for j, name in enumerate(names)]


def _rec(statistic: str, value: float, probe: str, group: str, model: str, what: str, n: int, metric: str = "") -> Any:
    return simbench.Record(
        benchmark=BENCH, statistic=statistic, value=float(value), metric=metric, probe_set=probe,
        group=group, model_a=model, model_b=what, n=n,
    )


def map_probes(bench: Any) -> list[str]:
    """The probe sets whose layer maps are compared: in distribution first, then the unseen surveys."""
    return [bench.in_distribution, *bench.unseen]


def mapped_specs(bench: Any, specs: Sequence[Any]) -> list[Any]:
    """The models whose layers are mapped: all, or the first ``map_models_per_group`` of each group (zoo order)."""
    if not bench.map_models_per_group:
        return list(specs)
    seen: dict[str, int] = {}
    out = []
    for spec in specs:
        group = str(spec.factors.get(bench.group_by, "all"))
        seen[group] = seen.get(group, 0) + 1
        if seen[group] <= bench.map_models_per_group:
            out.append(spec)
    return out


def requests(bench: Any, view: Any) -> list[Any]:
    """With ``layer_metric`` set: one declared ``L x L`` map per (mapped model, ID or unseen probe set), the metric
    over the model's layers on that probe set."""
    if not bench.layer_metric:
        return []
    params = tuple(sorted(bench.layer_metric_params.items()))
    out = []
    for probe in map_probes(bench):
        if probe not in view.probe_sets:
            continue  # evaluate names the unknown probe set
        for spec in mapped_specs(bench, view.specs):
            layers, why = mapped_layers(bench, view, spec.id)
            if why:
                continue  # evaluate records the failed map
            sources = tuple(simbench.Source(spec.id, probe, layer) for layer in layers)
            out.append(simbench.MatrixRequest(map_key(spec.id, probe), bench.layer_metric, sources, params))
    return out


def evaluate(bench: Any, view: Any) -> list[Any]:
    probes = list(bench.probe_sets) or list(view.probe_sets)
    wanted = [bench.in_distribution, *bench.unseen]
    unknown = [p for p in dict.fromkeys(probes + wanted) if p not in view.probe_sets]
    if unknown:
        raise ValueError(f"survey_transfer: unknown probe set(s) {unknown}; available: {list(view.probe_sets)}")
    for p in wanted:
        if p not in probes:
            probes.append(p)
    if view.data.task != "regression":
        raise ValueError("survey_transfer needs a regression data set (vote fractions, parameters, ...)")
    specs = list(view.specs)
    groups = [str(s.factors.get(bench.group_by, "all")) for s in specs]
    if bench.baseline and bench.baseline not in groups:
        raise ValueError(f"survey_transfer: baseline {bench.baseline!r} is not a value of factor {bench.group_by!r} "
                         f"(values: {sorted(set(groups))})")
    records: list[Any] = []
    tasks: list[tuple[str, int]] | None = None
    for probe in probes:
        ps = view.probe_set(probe)
        y = ps.y.reshape(len(ps.y), -1)
        n = int(y.shape[0])
        if tasks is None:
            tasks = resolve_tasks(bench, view.data.meta, int(y.shape[1]))
        cols = [j for _, j in tasks]
        for spec, group, out in zip(specs, groups, view.outputs(probe), strict=True):
            s = regression_scores(out.reshape(n, -1), y)
            for stat in ("r", "r2", "mae"):
                for (task, j) in tasks:
                    records.append(_rec(stat, s[stat][j], probe, group, spec.id, task, n))
                records.append(_rec(stat, float(np.nanmean(s[stat][cols])), probe, group, spec.id, OVERALL, n))
            records.append(_rec("mse", float(s["mse"].mean()), probe, group, spec.id, OVERALL, n))
    # what the tables need to know about the configuration: each probe set's role and the baseline group
    for probe in probes:
        role = 0 if probe == bench.in_distribution else 2 if probe in bench.unseen else 1
        records.append(_rec("probe_role", role, probe, "", "", "", 0))
    records.append(_rec("baseline", 1.0, "", bench.baseline or groups[0], "", "", 0))
    for code, mix in ((1, bench.seed_mix), (2, bench.control_mix), (3, bench.overlap_mix)):
        if not mix:
            continue
        if mix not in groups:
            raise ValueError(f"survey_transfer: {('seed_mix', 'control_mix', 'overlap_mix')[code - 1]} {mix!r} is not "
                             f"a value of factor {bench.group_by!r} (values: {sorted(set(groups))})")
        records.append(_rec("mix_role", float(code), "", mix, "", "", 0))
    records.append(_rec("alpha", float(bench.alpha), "", "", "", "", 0))
    if bench.layer_metric:
        mapped = {s.id for s in mapped_specs(bench, specs)}
        keep = [(s, g) for s, g in zip(specs, groups, strict=True) if s.id in mapped]
        records.extend(layer_records(bench, view, [s for s, _ in keep], [g for _, g in keep]))
    return records


def layer_records(bench: Any, view: Any, specs: Sequence[Any], groups: Sequence[str]) -> list[Any]:
    """Block score and mean off-diagonal similarity of each model's layer map on the ID and unseen probe sets,
    and their unseen-minus-ID changes (the ``layer_map`` statistics, for the separation verdict).

    Each map is the declared matrix :func:`map_key`; a map the runner could not compute (or a model without
    the layers) is one failed ``block_score`` row for that model and probe set, and the others go on.
    """

    out: list[Any] = []
    ref: dict[str, dict[str, float]] = {}
    for probe in map_probes(bench):
        n = int(view.probe_set(probe).x.shape[0])
        for spec, group in zip(specs, groups, strict=True):
            _, why = mapped_layers(bench, view, spec.id)
            key = map_key(spec.id, probe)
            why = why or view.matrix_failure(key) or ""
            if why:
                out.append(simbench.Record(benchmark=BENCH, statistic="block_score", value=float("nan"),
                                           metric=bench.layer_metric, probe_set=probe, group=group, model_a=spec.id,
                                           model_b=LAYERS, n=n, status="failed", error=why))
                continue
            metric = view.matrix_metric(key)
            if getattr(metric, "kind", "activation") != "activation":
                raise ValueError(f"survey_transfer: layer_metric {bench.layer_metric!r} is not an activation metric")
            raw = view.matrix(key).double().cpu()
            sim = metric.to_similarity(raw)
            stats = map_summary(sim, bool(metric.symmetric))
            for name in ("block_score", "offdiag_mean"):
                out.append(_rec(name, stats[name], probe, group, spec.id, LAYERS, n, bench.layer_metric))
                if probe == bench.in_distribution:
                    ref.setdefault(spec.id, {})[name] = stats[name]
                elif name in ref.get(spec.id, {}):  # no change without the in-distribution map
                    out.append(_rec(f"delta_{name}", stats[name] - ref[spec.id][name], probe, group, spec.id,
                                    LAYERS, n, bench.layer_metric))
    return out
