"""Computation of the ``early_layers`` benchmark (numpy on the runner's matrices)."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np

import simbench
from simbench.errors import MeasurementFailed, UserError
from simbench.seeding import numpy_rng

from .common import FUNCTION, SETTINGS

BENCH = ""
#: exact enumeration of relabellings up to this many; random permutations beyond
EXACT_LIMIT = 20_000


def _numpy(matrix: Any) -> np.ndarray:
    if hasattr(matrix, "detach"):
        matrix = matrix.detach().cpu().numpy()
    return np.asarray(matrix, dtype=np.float64)


def layer_key(layer: str) -> str:
    return f"layer/{layer}"


def conditions_of(bench: Any, specs: list[Any]) -> dict[str, list[int]]:
    """Indices of the models of each of ``bench.conditions`` (spec order)."""
    out: dict[str, list[int]] = {c: [] for c in bench.conditions}
    for k, spec in enumerate(specs):
        value = spec.factors.get(bench.factor)
        if value in out:
            out[str(value)].append(k)
    small = [c for c, ks in out.items() if len(ks) < 2]
    if small:
        raise UserError(f"early_layers: needs at least two models of each condition (factor {bench.factor!r}); "
                        f"{small} have fewer. Conditions in the zoo: "
                        f"{sorted({str(s.factors.get(bench.factor)) for s in specs})}")
    return out


def layers_of(bench: Any, view: Any) -> list[str]:
    specs = list(view.specs)
    readable = list(view.layers(specs[0].id))
    layers = list(bench.layers) or readable
    for spec in specs:
        missing = [name for name in layers if name not in view.layers(spec.id)]
        if missing:
            raise UserError(f"early_layers: model {spec.id} has no layer(s) {missing}; readable: "
                            f"{list(view.layers(spec.id))}")
    return layers


def requests(bench: Any, view: Any) -> list[Any]:
    if bench.probe_set not in view.probe_sets:
        raise UserError(f"early_layers: probe_set {bench.probe_set!r} is not in the suite ({list(view.probe_sets)})")
    specs = list(view.specs)
    conditions_of(bench, specs)
    return [simbench.MatrixRequest(layer_key(layer), bench.metric,
                                   tuple(simbench.Source(s.id, bench.probe_set, layer) for s in specs))
            for layer in layers_of(bench, view)]


def relabellings(n_a: int, n_b: int, permutations: int, seed: int) -> np.ndarray:
    """Boolean ``[R, n_a + n_b]`` masks of "in A": every relabelling keeping the group sizes (the observed
    one first), or the observed one and ``permutations`` random ones when there are more than EXACT_LIMIT."""
    n = n_a + n_b
    observed = np.array([True] * n_a + [False] * n_b)
    if math.comb(n, n_a) <= EXACT_LIMIT:
        masks = [observed]
        for chosen in itertools.combinations(range(n), n_a):
            m = np.zeros(n, dtype=bool)
            m[list(chosen)] = True
            if not np.array_equal(m, observed):
                masks.append(m)
        return np.array(masks)
    rng = numpy_rng(seed, "early_layers", n_a, n_b)
    return np.array([observed] + [rng.permutation(observed) for _ in range(permutations)])


def within_minus_cross(s: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Mean similarity of same-label pairs minus mean of different-label pairs, for every mask (upper
    triangle of the symmetric ``s`` over the pooled models)."""
    iu, ju = np.triu_indices(s.shape[0], k=1)
    vals = s[iu, ju]
    same = masks[:, iu] == masks[:, ju]
    return (same * vals).sum(1) / same.sum(1) - (~same * vals).sum(1) / (~same).sum(1)


def permutation_p(s: np.ndarray, n_a: int, n_b: int, permutations: int, seed: int) -> float:
    """One-sided p of the within-minus-cross statistic (models of A first, then B, in ``s``)."""
    t = within_minus_cross(s, relabellings(n_a, n_b, permutations, seed))
    return float(np.mean(t >= t[0] - 1e-12))


def mean_gap_p(a: np.ndarray, b: np.ndarray, permutations: int, seed: int) -> float:
    """One-sided permutation p of ``mean(a) - mean(b)`` over relabellings of the pooled values."""
    pooled = np.concatenate([a, b])
    masks = relabellings(len(a), len(b), permutations, seed)
    gaps = np.array([pooled[m].mean() - pooled[~m].mean() for m in masks])
    return float(np.mean(gaps >= gaps[0] - 1e-12))


def evaluate(bench: Any, view: Any) -> list[simbench.Record]:
    specs = list(view.specs)
    ids = [s.id for s in specs]
    groups = conditions_of(bench, specs)
    layers = layers_of(bench, view)
    conds = list(bench.conditions)
    cross = list(itertools.combinations(conds, 2))
    records: list[simbench.Record] = [
        simbench.Record(BENCH, "threshold", float(v), group=SETTINGS, model_a=k)
        for k, v in (("high", bench.high), ("max_agreement", bench.max_agreement), ("min_gap", bench.min_gap),
                     ("memorised", bench.memorised), ("alpha", bench.alpha))]

    for li, layer in enumerate(layers):
        coords = {"layer": float(li)}
        try:
            s = _numpy(view.matrix(layer_key(layer)))
        except MeasurementFailed as exc:
            records.append(simbench.Record(BENCH, "cka_mean", float("nan"), metric=bench.metric, group=layer,
                                           status="failed", coords=coords,
                                           error=str(exc).splitlines()[0][:300] if str(exc) else "failed"))
            continue
        s = view.matrix_metric(layer_key(layer)).to_similarity(0.5 * (s + s.T))
        for a, b in itertools.combinations(range(len(ids)), 2):
            records.append(simbench.Record(BENCH, "cka", float(s[a, b]), metric=bench.metric, group=layer,
                                           model_a=ids[a], model_b=ids[b], coords=coords))
        pair_values: dict[tuple[str, str], np.ndarray] = {}
        for c in conds:
            ks = groups[c]
            iu, ju = np.triu_indices(len(ks), k=1)
            pair_values[(c, c)] = s[np.array(ks)[iu], np.array(ks)[ju]]
        for a, b in cross:
            pair_values[(a, b)] = s[np.ix_(groups[a], groups[b])].ravel()
        for (a, b), vals in pair_values.items():
            for stat, fn in (("cka_mean", np.mean), ("cka_min", np.min), ("cka_max", np.max)):
                records.append(simbench.Record(BENCH, stat, float(fn(vals)), metric=bench.metric, group=layer,
                                               model_a=a, model_b=b, n=len(vals), coords=coords))
        for a, b in cross:
            mean = float(np.mean(pair_values[(a, b)]))
            floor = float(min(pair_values[(a, a)].min(), pair_values[(b, b)].min()))
            ks = groups[a] + groups[b]
            p = permutation_p(s[np.ix_(ks, ks)], len(groups[a]), len(groups[b]), bench.permutations, bench.seed)
            alike = mean >= bench.high and mean >= floor
            for stat, value in (("within_min", floor), ("alike", float(alike)), ("p_separates", p)):
                records.append(simbench.Record(BENCH, stat, value, metric=bench.metric, group=layer, model_a=a,
                                               model_b=b, n=len(ks), coords=coords))

    # function: accuracy on the probes, accuracy on the training labels, agreement
    probe = bench.probe_set
    acc = _numpy(view.accuracy(probe))
    agree = _numpy(view.agreement(probe))
    n_probes = int(view.probe_set(probe).x.shape[0])
    for c in conds:
        for k in groups[c]:
            records.append(simbench.Record(BENCH, "test_accuracy", float(acc[k]), probe_set=probe, group=FUNCTION,
                                           model_a=ids[k], model_b=c, n=n_probes))
            buffers = view.buffers(ids[k])
            if "train_accuracy" in buffers:
                records.append(simbench.Record(BENCH, "train_accuracy", float(buffers["train_accuracy"]),
                                               group=FUNCTION, model_a=ids[k], model_b=c))
        records.append(simbench.Record(BENCH, "accuracy_mean", float(np.mean(acc[groups[c]])), probe_set=probe,
                                       group=FUNCTION, model_a=c, n=len(groups[c])))
        trains = [float(view.buffers(ids[k])["train_accuracy"]) for k in groups[c]
                  if "train_accuracy" in view.buffers(ids[k])]
        if trains:
            records.append(simbench.Record(BENCH, "memorised", float(np.mean(trains)), group=FUNCTION, model_a=c,
                                           n=len(trains)))
    for a, b in [(c, c) for c in conds] + cross:
        if a == b:
            ks = groups[a]
            iu, ju = np.triu_indices(len(ks), k=1)
            vals = agree[np.array(ks)[iu], np.array(ks)[ju]]
        else:
            vals = agree[np.ix_(groups[a], groups[b])].ravel()
        records.append(simbench.Record(BENCH, "agreement_mean", float(np.mean(vals)), probe_set=probe,
                                       group=FUNCTION, model_a=a, model_b=b, n=len(vals)))
    g = conds[0]
    for c in conds[1:]:
        gap = float(np.mean(acc[groups[g]]) - np.mean(acc[groups[c]]))
        p = mean_gap_p(acc[groups[g]], acc[groups[c]], bench.permutations, bench.seed)
        records += [simbench.Record(BENCH, "accuracy_gap", gap, probe_set=probe, group=FUNCTION, model_a=g,
                                    model_b=c, n=len(groups[g]) + len(groups[c])),
                    simbench.Record(BENCH, "p_accuracy", p, probe_set=probe, group=FUNCTION, model_a=g, model_b=c,
                                    n=len(groups[g]) + len(groups[c]))]
    return records
