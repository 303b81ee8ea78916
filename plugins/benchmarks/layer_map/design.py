"""The ``layer_map`` benchmark's designed shift test (``design_factor`` set): per model, a reference, a shifted and
a size-matched control probe set, and a model-level test of the seed's link between failing and block structure.

Each model (the unit) is mapped on three probe sets picked by one of its factors (``design_factor``, e.g. the
simulation suite it was trained on): its in-distribution ``reference``, the ``shifted`` set (the distribution
shift under test) and a ``control`` set (an input change of the same size that stays in the training
distribution).  Per model the *excess* of the shift over its control is

- ``excess_drop``  = task score on the control - task score on the shifted set (how much more it fails), and
- ``excess_<stat>`` = ``stat`` on the shifted set - ``stat`` on the control (how much more block-structured);

the reference cancels from both, so a change the control produces as well (any input change of that size)
does not count.  Pre-declared tests (two-sided, level ``alpha``, the same rule for either sign):

``test_spearman_<stat>``  Spearman rho over models of ``excess_drop`` vs ``excess_<stat>``; p from a
                           model-level permutation (``permutations`` random pairings, seeded).
``test_groups_<stat>``     mean ``excess_<stat>`` of models that fail under the shift (task score drops by more
                           than ``fail_drop`` from the reference) minus that of the others; p from permuting the
                           fail / handle labels over models.
``cell_<stat>``            per cell of models that share every factor but ``seed``: mean ``excess_<stat>`` with
                           a sign-flip p (exact up to 16 models), i.e. the paired shifted-vs-control comparison
                           within models; coords carry the cell's mean drops.

Verdicts (in the report): "reproduced" when the statistic is positive and p < alpha, "reversed" when it is
negative and p < alpha, "not reproduced" otherwise.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

import simbench

from .common import DELTA_STATS
from .compute import histogram, map_key, map_summary, mapped_layers, offdiag_values, task_scores

#: records leave ``benchmark`` empty: the runner fills in the suite label of this benchmark entry
BENCH = ""
#: the map statistics the designed test is run on (block structure first: the claim's statistic)
TEST_STATS: tuple[str, ...] = ("block_score", "offdiag_mean")
ROLES: tuple[str, ...] = ("reference", "shifted", "control")
DESIGN_GROUP = "design"


def roles(bench: Any, spec: Any) -> dict[str, str]:
    """``{role: probe set}`` of one model: the templates for its ``design_factor`` value, formatted with its
    factors (``"{field}"`` -> the model's field).  Raises ``ValueError`` naming what is missing."""
    factors = dict(spec.factors)
    if bench.design_factor not in factors:
        raise ValueError(f"layer_map: model {spec.id} has no factor {bench.design_factor!r} (design_factor); "
                         f"its factors: {sorted(factors)}")
    value = str(factors[bench.design_factor])
    out = {}
    for role, table in zip(ROLES, (bench.reference_sets, bench.shifted_sets, bench.control_sets)):
        if value not in table:
            raise ValueError(f"layer_map: {role}_sets has no entry for {bench.design_factor} = {value!r} "
                             f"(model {spec.id}); entries: {sorted(table)}")
        try:
            out[role] = table[value].format_map({k: str(v) for k, v in factors.items()})
        except (KeyError, ValueError, IndexError) as exc:
            raise ValueError(f"layer_map: {role}_sets[{value!r}] = {table[value]!r} names a factor model "
                             f"{spec.id} lacks ({exc}); its factors: {sorted(factors)}") from None
    return out


def _specs(bench: Any, view: Any) -> list[tuple[int, Any]]:
    return list(enumerate(view.specs))[: bench.max_models]


def requests(bench: Any, view: Any) -> list[Any]:
    """One declared map per (model, role): ``bench.metric`` over the model's layers on that role's probe set."""
    out = []
    seen = set()
    for _, spec in _specs(bench, view):
        layers, why = mapped_layers(bench, view, spec.id)
        if why:
            continue
        for probe in roles(bench, spec).values():
            if probe not in view.probe_sets:
                raise ValueError(f"layer_map: unknown probe set {probe!r} (model {spec.id}); "
                                 f"available: {list(view.probe_sets)}")
            key = map_key(spec.id, probe)
            if key in seen:
                continue
            seen.add(key)
            sources = tuple(simbench.Source(spec.id, probe, layer) for layer in layers)
            out.append(simbench.MatrixRequest(key, bench.metric, sources, tuple(sorted(bench.metric_params.items()))))
    return out


def _record(bench: Any, statistic: str, value: float, probe: str, model: str, n: int, a: str = "", b: str = "",
            coords: dict[str, float] | None = None) -> Any:
    return simbench.Record(benchmark=BENCH, statistic=statistic, value=float(value), metric=bench.metric,
                           probe_set=probe, group=model, model_a=a, model_b=b, n=n, coords=coords or {})


def _failed(bench: Any, probe: str, model: str, n: int, error: str) -> Any:
    return simbench.Record(benchmark=BENCH, statistic="map", value=float("nan"), metric=bench.metric, probe_set=probe,
                           group=model, n=n, status="failed", error=error)


def _map_records(bench: Any, view: Any, spec: Any, index: int, probe: str, layers: Sequence[str],
                 targets: Sequence[str], outputs: Any) -> tuple[list[Any], dict[str, float] | None]:
    """The records of one model's map on one probe set (as ``compute.evaluate`` writes them) and its summary."""
    ps = view.probe_set(probe)
    n = int(ps.x.shape[0])
    key = map_key(spec.id, probe)
    try:
        raw = view.matrix(key).double().cpu()
        if not torch.isfinite(raw).all():
            raise ValueError("the metric returned non-finite map entries")
    except Exception as exc:  # one failed map must not sink the other models
        error = str(exc) if isinstance(exc, simbench.MeasurementFailed) else f"{type(exc).__name__}: {exc}"
        return [_failed(bench, probe, spec.id, n, error)], None
    metric = view.matrix_metric(key)
    if getattr(metric, "kind", "activation") != "activation":
        raise ValueError(f"layer_map needs an activation metric; {bench.metric!r} is a {metric.kind} metric")
    lo, hi = metric.value_range
    if not metric.higher_is_more_similar:
        lo, hi = -hi, -lo
    symmetric = bool(metric.symmetric)
    records = [_record(bench, "map", raw[i, j], probe, spec.id, n, li, lj, {"layer_a": float(i), "layer_b": float(j)})
               for i, li in enumerate(layers) for j, lj in enumerate(layers)]
    sim = metric.to_similarity(raw) if not metric.higher_is_more_similar else raw
    stats = map_summary(sim, symmetric)
    stats.update(task_scores(outputs[index], ps.y, view.data.task, targets, bench.score_targets))
    for name, value in stats.items():
        coords = {"rank": float(name[4:])} if name.startswith("eig_") else None
        records.append(_record(bench, name, value, probe, spec.id, n, coords=coords))
    dens, edges = histogram(offdiag_values(sim, symmetric), lo, hi, bench.bins)
    for d, (a, b) in zip(dens, zip(edges[:-1], edges[1:])):
        records.append(_record(bench, "pdf", d, probe, spec.id, n, coords={"bin_low": float(a), "bin_high": float(b)}))
    return records, stats


def evaluate(bench: Any, view: Any) -> list[Any]:
    """Maps and summaries per (model, role), deltas against each model's reference, and the designed tests."""
    targets = list(view.data.meta.get("targets", [])) if view.data.meta else []
    records: list[Any] = []
    outputs_cache: dict[str, Any] = {}
    units: list[dict[str, Any]] = []
    for index, spec in _specs(bench, view):
        sets = roles(bench, spec)
        layers, why = mapped_layers(bench, view, spec.id)
        if why:
            for probe in dict.fromkeys(sets.values()):
                records.append(_failed(bench, probe, spec.id, int(view.probe_set(probe).x.shape[0]), why))
            continue
        stats: dict[str, dict[str, float] | None] = {}
        for role, probe in sets.items():
            if probe not in outputs_cache:
                outputs_cache[probe] = view.outputs(probe)
            recs, summary = _map_records(bench, view, spec, index, probe, layers, targets, outputs_cache[probe])
            if role == "reference" or probe not in (sets["reference"],):
                records.extend(recs)
            stats[role] = summary
        ref = stats["reference"]
        if ref is not None:
            for role in ("shifted", "control"):
                s = stats[role]
                if s is None or sets[role] == sets["reference"]:
                    continue
                n = int(view.probe_set(sets[role]).x.shape[0])
                for name in DELTA_STATS:
                    if name in s and name in ref:
                        records.append(_record(bench, f"delta_{name}", s[name] - ref[name], sets[role], spec.id, n))
        if all(stats[r] is not None for r in ROLES):
            cell = "/".join(f"{k}={v}" for k, v in sorted(spec.factors.items()) if k != "seed")
            units.append({"model": spec.id, "cell": cell, **{r: stats[r] for r in ROLES}})
    records.extend(shift_tests(bench, units))
    records.extend(control_sizes(bench, view, [p for p in outputs_cache]))
    return records


#: numeric probe-set meta a control perturbation may record (``cosmo_shift``'s size-matched control)
SIZE_KEYS: tuple[str, ...] = ("shift_size", "control_size", "theta")


def control_sizes(bench: Any, view: Any, probes: Sequence[str]) -> list[Any]:
    """``size_<key>`` rows (``group = "design"``) for the probe sets whose ``meta`` records how far the control
    moved the inputs and how far the shift it is matched to did (``cosmo_shift``'s ``control_fields``)."""
    out = []
    for probe in probes:
        meta = getattr(view.probe_set(probe), "meta", None) or {}
        for key in SIZE_KEYS:
            value = meta.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                out.append(_record(bench, f"size_{key}", float(value), probe, DESIGN_GROUP,
                                   int(view.probe_set(probe).x.shape[0])))
    return out


# --------------------------------------------------------------------------
# The model-level tests
# --------------------------------------------------------------------------


def _ranks(v: np.ndarray) -> np.ndarray:
    from scipy import stats as sps

    return sps.rankdata(v)


def spearman_permutation(x: Sequence[float], y: Sequence[float], permutations: int, seed: int) -> tuple[float, float]:
    """Spearman rho of ``x`` and ``y`` and its two-sided permutation p over units:
    ``(1 + #{|rho*| >= |rho|}) / (permutations + 1)`` with ``y`` randomly re-paired to ``x``."""
    rx, ry = _ranks(np.asarray(x, float)), _ranks(np.asarray(y, float))
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denom = math.sqrt(float((rx**2).sum() * (ry**2).sum()))
    if denom == 0:
        return float("nan"), float("nan")
    rho = float((rx * ry).sum() / denom)
    rng = np.random.default_rng(seed)
    perm = np.argsort(rng.random((permutations, len(ry))), axis=1)
    null = (ry[perm] * rx).sum(1) / denom
    p = (1.0 + float((np.abs(null) >= abs(rho) - 1e-12).sum())) / (permutations + 1.0)
    return rho, p


def group_permutation(values: Sequence[float], labels: Sequence[bool], permutations: int,
                      seed: int) -> tuple[float, float]:
    """Mean of ``values`` where ``labels`` minus mean where not, and its two-sided permutation p (labels
    shuffled over units).  NaN when either group is empty."""
    v = np.asarray(values, float)
    lab = np.asarray(labels, bool)
    if lab.all() or not lab.any():
        return float("nan"), float("nan")
    diff = float(v[lab].mean() - v[~lab].mean())
    rng = np.random.default_rng(seed)
    k = int(lab.sum())
    perm = np.argsort(rng.random((permutations, len(v))), axis=1)
    shuffled = v[perm]
    null = shuffled[:, :k].mean(1) - shuffled[:, k:].mean(1)
    p = (1.0 + float((np.abs(null) >= abs(diff) - 1e-12).sum())) / (permutations + 1.0)
    return diff, p


def sign_flip(values: Sequence[float], permutations: int, seed: int) -> tuple[float, float]:
    """Mean of paired differences ``values`` and its two-sided sign-flip p: exact (all ``2^n`` sign patterns)
    for ``n <= 16``, else ``(1 + #{|mean*| >= |mean|}) / (permutations + 1)`` over random flips."""
    v = np.asarray(values, float)
    if len(v) == 0:
        return float("nan"), float("nan")
    mean = float(v.mean())
    if len(v) <= 16:
        signs = np.array(list(itertools.product((-1.0, 1.0), repeat=len(v))))
        null = (signs * v).mean(1)
        return mean, float((np.abs(null) >= abs(mean) - 1e-12).mean())
    rng = np.random.default_rng(seed)
    signs = rng.choice((-1.0, 1.0), size=(permutations, len(v)))
    null = (signs * v).mean(1)
    return mean, (1.0 + float((np.abs(null) >= abs(mean) - 1e-12).sum())) / (permutations + 1.0)


def shift_tests(bench: Any, units: Sequence[Mapping[str, Any]]) -> list[Any]:
    """The pre-declared model-level tests of the module docstring over ``units`` (one dict per model with its
    ``reference`` / ``shifted`` / ``control`` summaries, ``model`` and ``cell``)."""
    out: list[Any] = []
    if not units:
        return out
    n = len(units)
    drop = np.array([u["control"]["task_score"] - u["shifted"]["task_score"] for u in units])
    fails = np.array([u["reference"]["task_score"] - u["shifted"]["task_score"] > bench.fail_drop for u in units])
    ctrl_drop = np.array([u["reference"]["task_score"] - u["control"]["task_score"] for u in units])
    common = {"alpha": float(bench.alpha), "permutations": float(bench.permutations)}
    for u, d in zip(units, drop):
        out.append(_record(bench, "excess_drop", d, "", u["model"], 0))
    for cell in dict.fromkeys(u["cell"] for u in units):  # the first model of each cell gets the heatmap plot
        out.append(_record(bench, "exemplar", 1.0, "", next(u["model"] for u in units if u["cell"] == cell), 0))
    for k, stat in enumerate(TEST_STATS):
        excess = np.array([u["shifted"][stat] - u["control"][stat] for u in units])
        for u, e in zip(units, excess):
            out.append(_record(bench, f"excess_{stat}", e, "", u["model"], 0))
        if n >= 3 and np.ptp(drop) > 0 and np.ptp(excess) > 0:
            rho, p = spearman_permutation(drop, excess, bench.permutations, bench.seed + 101 * k)
            out.append(_record(bench, f"test_spearman_{stat}", rho, "", DESIGN_GROUP, n, coords={"p": p, **common}))
        diff, p = group_permutation(excess, fails, bench.permutations, bench.seed + 101 * k + 1)
        out.append(_record(bench, f"test_groups_{stat}", diff, "", DESIGN_GROUP, n,
                           coords={"p": p, "n_fail": float(fails.sum()), "n_handled": float((~fails).sum()), **common}))
        cells = list(dict.fromkeys(u["cell"] for u in units))
        for c, cell in enumerate(cells):
            idx = [i for i, u in enumerate(units) if u["cell"] == cell]
            mean, p = sign_flip(excess[idx], bench.permutations, bench.seed + 101 * k + 2 + c)
            ref_drop = np.array([units[i]["reference"]["task_score"] - units[i]["shifted"]["task_score"] for i in idx])
            out.append(_record(bench, f"cell_{stat}", mean, "", cell, len(idx), coords={
                "p": p, "shift_drop": float(ref_drop.mean()), "control_drop": float(ctrl_drop[idx].mean()),
                "excess_drop": float(drop[idx].mean()), "n_fail": float(fails[idx].sum()), **common}))
    return out
