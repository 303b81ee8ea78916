"""Computation of the ``manipulation`` benchmark (numpy on the runner's matrices)."""

from __future__ import annotations

from typing import Any

import numpy as np

import simbench
from simbench.errors import MeasurementFailed, UserError

from .._scale import calibrated
from .common import ALL_PROBES, REFERENCE

BENCH = ""
STATS = ("displacement", "closer_fraction", "movement_scaled")


def _numpy(matrix: Any) -> np.ndarray:
    if hasattr(matrix, "detach"):
        matrix = matrix.detach().cpu().numpy()
    return np.asarray(matrix, dtype=np.float64)


def pairs_of(specs: list[simbench.ModelSpec]) -> tuple[list[tuple[int, int, str]], np.ndarray]:
    """``[(original index, manipulated index, target)]`` and the indices of the unmanipulated models."""
    index = {s.id: k for k, s in enumerate(specs)}
    pairs = []
    for k, s in enumerate(specs):
        original = s.factors.get("original")
        if original is not None and original != s.id and original in index:
            pairs.append((index[original], k, str(s.factors.get("manipulated", "manipulated"))))
    manipulated = {k for _, k, _ in pairs}
    originals = np.array([k for k in range(len(specs)) if k not in manipulated and "original" not in specs[k].factors],
                         dtype=int)
    return pairs, originals


def pair_statistics(metric: Any, s: np.ndarray, pairs: list[tuple[int, int, str]],
                    originals: np.ndarray) -> dict[tuple[int, int], dict[str, float]]:
    """Displacement, closer fraction and calibrated movement of every (original, manipulated) pair.

    ``s`` is the oriented, symmetrised ``M x M`` similarity.  The yardstick is
    the set of unordered pairs of distinct unmanipulated models.
    """
    iu, ju = np.triu_indices(len(originals), k=1)
    ref = s[originals[iu], originals[ju]]
    typical = float(np.median(ref)) if len(ref) else float("nan")
    scaled = calibrated(metric, s)
    out = {}
    for o, m, _ in pairs:
        gap = s[o, o] - typical
        out[(o, m)] = {
            "similarity": float(s[o, m]),
            "displacement": float((s[o, o] - s[o, m]) / gap) if len(ref) and gap > 1e-12 else float("nan"),
            "closer_fraction": float(np.mean(ref >= s[o, m])) if len(ref) else float("nan"),
            "movement_scaled": float(scaled[o, o] - scaled[o, m]),
        }
    return out


def evaluate(bench: Any, view: Any) -> list[simbench.Record]:
    specs = list(view.specs)
    pairs, originals = pairs_of(specs)
    if not pairs:
        raise UserError("manipulation: the zoo has no manipulated models; add a [[perturbations]] entry "
                        "'cka_map_manipulation' to the suite")
    probes = list(bench.probe_sets) or list(view.probe_sets)
    unknown = [p for p in probes if p not in view.probe_sets]
    if unknown:
        raise UserError(f"manipulation: unknown probe set(s) {unknown}; this suite has {list(view.probe_sets)}")
    targets = list(dict.fromkeys(t for _, _, t in pairs))
    groups = targets + (["all"] if len(targets) > 1 else [])
    ids = [s.id for s in specs]
    n_ref = len(originals) * (len(originals) - 1) // 2
    records: list[simbench.Record] = []

    # function: agreement and accuracy change of every pair, and the yardstick's agreement
    for probe in probes:
        agree = _numpy(view.agreement(probe))
        acc = _numpy(view.accuracy(probe))
        n = int(view.probe_set(probe).x.shape[0])
        for o, m, target in pairs:
            records += [simbench.Record(BENCH, "agreement", float(agree[o, m]), probe_set=probe, group=target,
                                        model_a=ids[o], model_b=ids[m], n=n),
                        simbench.Record(BENCH, "accuracy_change", float(acc[m] - acc[o]), probe_set=probe,
                                        group=target, model_a=ids[o], model_b=ids[m], n=n)]
        if probe == probes[0]:  # what the manipulation did to the layer map (the perturbation's own report)
            for o, m, target in pairs:
                f = specs[m].factors
                for key, stat in (("cka_offdiag_original", "map_offdiag_original"), ("cka_offdiag", "map_offdiag"),
                                  ("cka_map_distance", "map_distance"),
                                  ("cka_first_last_original", "map_first_last_original"),
                                  ("cka_first_last", "map_first_last"),
                                  ("cka_target_distance_original", "map_target_distance_original"),
                                  ("cka_target_distance", "map_target_distance")):
                    if isinstance(f.get(key), (int, float)):
                        records.append(simbench.Record(BENCH, stat, float(f[key]), group=target, model_a=ids[o],
                                                       model_b=ids[m]))
        if n_ref:
            iu, ju = np.triu_indices(len(originals), k=1)
            records.append(simbench.Record(BENCH, "agreement_reference",
                                           float(np.median(agree[originals[iu], originals[ju]])), probe_set=probe,
                                           group=REFERENCE, n=n_ref))

    # similarity: every metric on every probe set (weight metrics once)
    for label, metric in view.metrics.items():
        weight = metric.kind == "weight"
        per_probe: dict[str, dict[tuple[int, int], dict[str, float]]] = {}
        for probe in ([probes[0]] if weight else probes):
            where = "weights" if weight else probe
            try:
                s = _numpy(view.similarity(label, probe))
            except MeasurementFailed as exc:
                records.append(simbench.Record(BENCH, "displacement_mean", float("nan"), metric=label,
                                               probe_set=where, group=groups[0], status="failed",
                                               error=str(exc).splitlines()[0][:300] if str(exc) else "failed"))
                continue
            s = 0.5 * (s + s.T)
            stats = pair_statistics(metric, s, pairs, originals)
            per_probe[where] = stats
            for o, m, target in pairs:
                for stat, value in stats[(o, m)].items():
                    records.append(simbench.Record(BENCH, stat, value, metric=label, probe_set=where, group=target,
                                                   model_a=ids[o], model_b=ids[m], n=n_ref))
        if not per_probe:
            continue
        for group in groups:
            chosen = [(o, m) for o, m, t in pairs if group in ("all", t)]
            for where, stats in per_probe.items():
                for stat in STATS:
                    vals = np.array([stats[p][stat] for p in chosen])
                    records.append(simbench.Record(BENCH, f"{stat}_mean", float(np.mean(vals)), metric=label,
                                                   probe_set=where, group=group, n=len(chosen)))
            for stat in STATS:  # aggregate over probe sets: the mean of the per-probe-set means
                vals = [np.mean([stats[p][stat] for p in chosen]) for stats in per_probe.values()]
                records.append(simbench.Record(BENCH, f"{stat}_mean", float(np.mean(vals)), metric=label,
                                               probe_set=ALL_PROBES, group=group, n=len(chosen)))
    records += _ranks(records, groups)
    return records


def _ranks(records: list[simbench.Record], groups: list[str]) -> list[simbench.Record]:
    """Rank metrics per group by the aggregate displacement (then closer fraction); NaN last."""
    out = []
    for group in groups:
        agg = {r.metric: r.value for r in records if r.statistic == "displacement_mean" and r.group == group
               and r.probe_set == ALL_PROBES and r.status == "ok"}
        closer = {r.metric: r.value for r in records if r.statistic == "closer_fraction_mean" and r.group == group
                  and r.probe_set == ALL_PROBES and r.status == "ok"}
        key = lambda m: (not np.isfinite(agg[m]), agg[m] if np.isfinite(agg[m]) else 0.0,  # noqa: E731
                         closer.get(m, np.inf))
        for rank, metric in enumerate(sorted(agg, key=key), start=1):
            out.append(simbench.Record(BENCH, "rank", float(rank), metric=metric, probe_set=ALL_PROBES, group=group))
    return out
