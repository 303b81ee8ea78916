"""Evaluation of the ``calibration`` benchmark (numpy) from the store view; reporting is in ``report``.

It never runs a metric: ``requests`` declares the probe-count matrices (each
ensemble's first ``count_models`` models on random probe subsets, ``Source.rows``)
and the timed pairs (``MatrixRequest.timing_repeats``), the runner computes
them as cells, and ``evaluate`` reads them with ``view.matrix`` and
``view.matrix_seconds``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

import simbench
from simbench.errors import MeasurementFailed, UserError
from simbench.seeding import numpy_rng
from simbench.types import WEIGHTS_PROBE_SET

from .._scale import calibrated, scale_of
from .common import INFO, LETTER_DEPTHS, SEPARATION, TIMING, WEIGHTS

#: records leave ``benchmark`` empty: the runner fills in this benchmark entry's suite label
BENCH = ""


# --------------------------------------------------------------------------
# Statistics on whole matrices
# --------------------------------------------------------------------------


def within_pairs(matrix: np.ndarray, members: np.ndarray) -> np.ndarray:
    """Values of the unordered pairs among ``members`` (indices into the matrix), as a vector."""
    sub = matrix[np.ix_(members, members)]
    i, j = np.triu_indices(len(members), k=1)
    return sub[i, j]


def auroc(high: np.ndarray, low: np.ndarray) -> float:
    """P(a random ``high`` value > a random ``low`` value) + half the ties (Mann-Whitney U / n1 n2)."""
    from scipy.stats import rankdata

    high, low = np.asarray(high, float), np.asarray(low, float)
    if not len(high) or not len(low):
        return float("nan")
    ranks = rankdata(np.concatenate([high, low]))  # average ranks: ties count one half
    u = ranks[: len(high)].sum() - len(high) * (len(high) + 1) / 2.0
    return float(u / (len(high) * len(low)))


def overlap_coefficient(a: np.ndarray, b: np.ndarray, bins: int = 50) -> float:
    """Shared mass of the two empirical distributions on common histogram bins (1 = identical, 0 = disjoint)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    lo, hi = float(min(a.min(), b.min())), float(max(a.max(), b.max()))
    if hi <= lo:
        return 1.0
    edges = np.linspace(lo, hi, bins + 1)
    pa = np.histogram(a, edges)[0] / len(a)
    pb = np.histogram(b, edges)[0] / len(b)
    return float(np.minimum(pa, pb).sum())


def cohen_d(high: np.ndarray, low: np.ndarray) -> float:
    """Standardised difference of means with the pooled standard deviation."""
    n1, n2 = len(high), len(low)
    if n1 < 2 or n2 < 2:
        return float("nan")
    pooled = ((n1 - 1) * np.var(high, ddof=1) + (n2 - 1) * np.var(low, ddof=1)) / (n1 + n2 - 2)
    if pooled <= 0:
        return float("inf") if np.mean(high) != np.mean(low) else 0.0
    return float((np.mean(high) - np.mean(low)) / np.sqrt(pooled))


def letter_values(values: np.ndarray) -> dict[int, tuple[float, float]]:
    """Letter values (Hofmann, Wickham & Kafadar 2017): depth ``2^k`` -> the 1/2^k and 1 - 1/2^k quantiles.

    A depth is kept only while each tail beyond it holds at least 2 values;
    deeper letter values of a small sample would only repeat the extremes.
    """
    out: dict[int, tuple[float, float]] = {}
    n = len(values)
    for depth in LETTER_DEPTHS:
        if n / depth < 2:
            break
        lo, hi = np.quantile(values, [1.0 / depth, 1.0 - 1.0 / depth])
        out[depth] = (float(lo), float(hi))
    return out


def bootstrap_mean(matrix: np.ndarray, members: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Model-level bootstrap replicates of the mean over within-ensemble pairs.

    Each replicate draws the ensemble's models with replacement and averages
    every pair of draws except a model drawn with itself; pairs that share a
    model are not independent, so resampling models (not pairs) keeps that
    dependence in the interval.  Vectorised over replicates.
    """
    m = len(members)
    if n_boot == 0 or m < 3:
        return np.empty(0)
    sub = matrix[np.ix_(members, members)]
    out = np.empty(n_boot)
    iu, ju = np.triu_indices(m, k=1)
    step = max(1, 2_000_000 // (m * m))
    for start in range(0, n_boot, step):
        draws = rng.integers(0, m, size=(min(step, n_boot - start), m))
        a, b = draws[:, iu], draws[:, ju]  # [B, P] model indices of each pair of draws
        keep = a != b
        vals = sub[a, b]
        out[start:start + len(draws)] = (vals * keep).sum(1) / np.maximum(keep.sum(1), 1)
    return out


def distribution(values: np.ndarray, raw: np.ndarray, expected: float) -> dict[str, float]:
    """Summary of one ensemble's calibrated values (and raw values)."""
    return {
        "mean": float(np.mean(values)),
        "sd": float(np.std(values, ddof=1)) if len(values) > 1 else float("nan"),
        "median": float(np.median(values)),
        "min": float(np.min(values)),
        "max": float(np.max(values)),
        "bias": float(np.mean(values) - expected),
        "rmse": float(np.sqrt(np.mean((values - expected) ** 2))),
        "raw_mean": float(np.mean(raw)),
        "raw_sd": float(np.std(raw, ddof=1)) if len(raw) > 1 else float("nan"),
    }


# --------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------


def _numpy(matrix: Any) -> np.ndarray:
    if hasattr(matrix, "detach"):
        matrix = matrix.detach().cpu().numpy()
    return np.asarray(matrix, dtype=np.float64)


def _record(statistic: str, value: float, metric: str = "", probe_set: str = "", group: str = "",
            n: int | None = None, **extra: Any) -> simbench.Record:
    return simbench.Record(BENCH, statistic, float(value), metric=metric, probe_set=probe_set, group=group, n=n,
                           **extra)


def _failed(metric: str, probe_set: str, group: str, error: str, statistic: str = "mean",
            **extra: Any) -> simbench.Record:
    return simbench.Record(BENCH, statistic, float("nan"), metric=metric, probe_set=probe_set, group=group,
                           status="failed", error=(error.splitlines() or ["failed"])[0][:300], **extra)


def ensembles(bench: Any, specs: Sequence[simbench.ModelSpec]) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the ``low`` (expected 0) and ``high`` (expected 1) ensemble members in spec order."""
    labels = [str(s.factors.get(bench.factor, "")) for s in specs]
    low = np.array([i for i, v in enumerate(labels) if v == bench.low], dtype=int)
    high = np.array([i for i, v in enumerate(labels) if v == bench.high], dtype=int)
    if len(low) < 2 or len(high) < 2:
        found = sorted(set(labels))
        raise UserError(f"calibration: need at least 2 models with {bench.factor} = {bench.low!r} and 2 with "
                        f"{bench.factor} = {bench.high!r}; the zoo has {bench.factor} values {found} "
                        "(use the 'calibration' zoo)")
    return low, high


def _probe_sets(bench: Any, view: Any) -> list[str]:
    """The probe sets of the distributions (default: all); an unknown one is a one-line suite error."""
    probes = list(bench.probe_sets) or list(view.probe_sets)
    unknown = [p for p in [*probes, bench.count_probe_set] if p not in view.probe_sets]
    if unknown:
        raise UserError(f"calibration: unknown probe set(s) {unknown}; this suite has {list(view.probe_sets)}")
    return probes


def _count_probes(bench: Any, view: Any) -> int | str:
    """How many probes ``count_probe_set`` holds, or its one-line failure (a probe set that failed in the run)."""
    try:
        return int(view.probe_set(bench.count_probe_set).x.shape[0])
    except MeasurementFailed as exc:
        return str(exc) or "failed"


def _subsets(bench: Any, view: Any, n_probes: int) -> list[tuple[int, list[np.ndarray]]]:
    """``(count, [index arrays])`` per probe count: ``count_draws`` random subsets, one for 'all'.

    The same subsets every call (one generator from the suite seed), so ``requests`` and ``evaluate`` agree.
    """
    counts = sorted({min(k, n_probes) if k else n_probes for k in bench.probe_counts})
    rng = numpy_rng(view.seed, "calibration", "probe_subsets")
    out = []
    for k in counts:
        if k >= n_probes:
            out.append((n_probes, [np.arange(n_probes)]))
        else:
            out.append((k, [np.sort(rng.choice(n_probes, size=k, replace=False)) for _ in range(bench.count_draws)]))
    return out


def _rows(idx: np.ndarray, n_probes: int) -> tuple[int, ...] | None:
    """A subset as ``Source.rows`` (None = every probe, in order: the stored tensor itself)."""
    return None if len(idx) == n_probes else tuple(int(i) for i in idx)


def _members(bench: Any, low: np.ndarray, high: np.ndarray) -> list[tuple[str, str, np.ndarray]]:
    """``(key tag, ensemble name, member indices)`` of the probe-count analysis: the first ``count_models``."""
    return [("low", bench.low, low[: bench.count_models]), ("high", bench.high, high[: bench.count_models])]


def count_key(label: str, count: int, draw: int, side: str) -> str:
    """Request key of one probe-count matrix: metric label, probe count, draw, ``low``/``high`` ensemble."""
    return f"probes/{label}/{count}/{draw}/{side}"


def timing_key(label: str, count: int) -> str:
    """Request key of one timed pair: metric label and probe count."""
    return f"timing/{label}/{count}"


def requests(bench: Any, view: Any) -> list[simbench.MatrixRequest]:
    """The probe-count matrices of every activation metric and the timed pairs of every metric.

    Probe counts: for each count and draw (:func:`_subsets`), one matrix per
    ensemble over its first ``count_models`` models on those rows of
    ``count_probe_set``.  Timing: per count, the first two ``low`` models on
    the first draw's rows (weight metrics: their weights, once per count,
    so the flat line is measured, not assumed), ``timing_repeats`` timed calls.
    """
    low, high = ensembles(bench, view.specs)
    _probe_sets(bench, view)
    n_probes = _count_probes(bench, view)
    if isinstance(n_probes, str):  # the probe set failed: evaluate reports it
        return []
    ids = [s.id for s in view.specs]
    probe = bench.count_probe_set
    subsets = _subsets(bench, view, n_probes)
    out: list[simbench.MatrixRequest] = []
    for label, metric in view.metrics.items():
        weight = metric.kind == "weight"
        if not weight:
            for k, draws in subsets:
                for d, idx in enumerate(draws):
                    rows = _rows(idx, n_probes)
                    for side, _, members in _members(bench, low, high):
                        sources = tuple(simbench.Source(ids[int(i)], probe, rows=rows) for i in members)
                        out.append(simbench.MatrixRequest(count_key(label, k, d, side), label, sources))
        if bench.timing_repeats:
            a, b = ids[int(low[0])], ids[int(low[1])]
            for k, draws in subsets:
                if weight:
                    pair = (simbench.Source(a, layer=WEIGHTS_PROBE_SET), simbench.Source(b, layer=WEIGHTS_PROBE_SET))
                else:
                    rows = _rows(draws[0], n_probes)
                    pair = (simbench.Source(a, probe, rows=rows), simbench.Source(b, probe, rows=rows))
                out.append(simbench.MatrixRequest(timing_key(label, k), label, pair,
                                                  timing_repeats=bench.timing_repeats))
    return out


def evaluate(bench: Any, view: Any) -> list[simbench.Record]:
    low, high = ensembles(bench, view.specs)
    probes = _probe_sets(bench, view)
    records: list[simbench.Record] = [
        _record("tolerance", bench.tolerance, group=INFO),
        _record("expected", 0.0, group=INFO, model_a=bench.low),  # which ensemble is expected where
        _record("expected", 1.0, group=INFO, model_a=bench.high),
    ]
    n_probes = _count_probes(bench, view)
    for label, metric in view.metrics.items():
        weight = metric.kind == "weight"
        records.append(_record("weight_metric", 1.0 if weight else 0.0, metric=label, group=INFO))
        scale = scale_of(metric)
        if scale is not None:
            records += [_record("scale_low", scale[0], metric=label, group=INFO),
                        _record("scale_high", scale[1], metric=label, group=INFO)]
        for probe in ([probes[0]] if weight else probes):
            where = WEIGHTS if weight else probe
            try:
                oriented = _numpy(view.similarity(label, probe))
            except MeasurementFailed as exc:
                records.append(_failed(label, where, bench.low, str(exc)))
                continue
            records += _distributions(bench, view, label, metric, where, oriented, low, high)
        if isinstance(n_probes, str):  # the count probe set failed in the run: neither analysis can run
            records.append(_failed(label, bench.count_probe_set, bench.low, n_probes, "by_probes_mean"))
            continue
        if not weight:
            records += _probe_counts(bench, view, label, metric, low, high, n_probes)
        if bench.timing_repeats:
            records += _timing(bench, view, label, low, n_probes)
    return records


def _distributions(bench: Any, view: Any, label: str, metric: Any, where: str, oriented: np.ndarray,
                   low: np.ndarray, high: np.ndarray) -> list[simbench.Record]:
    oriented = 0.5 * (oriented + oriented.T)  # unordered pairs: symmetrise asymmetric metrics
    if not np.isfinite(oriented).all():
        return [_failed(label, where, bench.low, "non-finite similarity values")]
    scaled = calibrated(metric, oriented)
    raw = oriented if metric.higher_is_more_similar else -oriented
    out: list[simbench.Record] = []
    values = {}
    for group, members, expected in ((bench.low, low, 0.0), (bench.high, high, 1.0)):
        v = within_pairs(scaled, members)
        values[group] = v
        n = len(v)
        stats = distribution(v, within_pairs(raw, members), expected)
        if bench.n_bootstrap and np.isfinite(v).all():
            reps = bootstrap_mean(scaled, members, bench.n_bootstrap, numpy_rng(view.seed, "calibration", label, where,
                                                                              group))
            stats["mean_ci_low"], stats["mean_ci_high"] = (float(q) for q in np.quantile(reps, [0.025, 0.975]))
        out += [_record(k, val, metric=label, probe_set=where, group=group, n=n) for k, val in stats.items()]
        # letter values: one row per depth and side, the depth (2^k) a coordinate
        for depth, (lo, hi) in letter_values(v).items():
            out += [_record("lv_lo", lo, metric=label, probe_set=where, group=group, n=n, coords={"depth": depth}),
                    _record("lv_hi", hi, metric=label, probe_set=where, group=group, n=n, coords={"depth": depth})]
    hi_v, lo_v = values[bench.high], values[bench.low]
    n = len(hi_v) + len(lo_v)
    if np.isfinite(hi_v).all() and np.isfinite(lo_v).all():
        out += [_record("auroc", auroc(hi_v, lo_v), metric=label, probe_set=where, group=SEPARATION, n=n),
                _record("overlap", overlap_coefficient(hi_v, lo_v), metric=label, probe_set=where,
                        group=SEPARATION, n=n),
                _record("cohen_d", cohen_d(hi_v, lo_v), metric=label, probe_set=where, group=SEPARATION, n=n)]
    else:  # no calibrated scale: separation on the raw (oriented) values, which AUROC does not mind
        hi_r, lo_r = within_pairs(oriented, high), within_pairs(oriented, low)
        out += [_record("auroc", auroc(hi_r, lo_r), metric=label, probe_set=where, group=SEPARATION, n=n),
                _record("overlap", overlap_coefficient(hi_r, lo_r), metric=label, probe_set=where,
                        group=SEPARATION, n=n)]
    return out


def _count_matrix(view: Any, key: str) -> np.ndarray | str:
    """A declared probe-count matrix as float64, or the one-line reason it cannot be used."""
    failure = view.matrix_failure(key)
    if failure is not None:
        return failure
    matrix = _numpy(view.matrix(key))
    if not np.isfinite(matrix).all():  # e.g. a model the metric has no value for on these probes
        return f"non-finite similarity values in {key}"
    return matrix


def _probe_counts(bench: Any, view: Any, label: str, metric: Any, low: np.ndarray, high: np.ndarray,
                  n_probes: int) -> list[simbench.Record]:
    """Calibration against the number of probes, on ``count_models`` models of each ensemble (declared matrices)."""
    probe = bench.count_probe_set
    out: list[simbench.Record] = []
    for k, draws in _subsets(bench, view, n_probes):
        pooled: dict[str, list[np.ndarray]] = {bench.low: [], bench.high: []}
        error = ""
        for d in range(len(draws)):
            for side, group, members in _members(bench, low, high):
                s = _count_matrix(view, count_key(label, k, d, side))
                if isinstance(s, str):
                    error = s
                    break
                s = calibrated(metric, metric.to_similarity(0.5 * (s + s.T)))
                pooled[group].append(within_pairs(s, np.arange(len(members))))
            if error:
                break
        if error:  # a failed matrix is this count's result; the other counts go on
            out.append(_failed(label, probe, bench.low, error, "by_probes_mean", n=k, coords={"probes": k}))
            continue
        for group, expected in ((bench.low, 0.0), (bench.high, 1.0)):
            v = np.concatenate(pooled[group])
            q25, q75 = np.quantile(v, [0.25, 0.75])
            stats = {"mean": np.mean(v), "sd": np.std(v, ddof=1), "median": np.median(v), "q25": q25, "q75": q75,
                     "bias": np.mean(v) - expected, "pairs": len(v), "draws": len(draws)}
            out += [_record(f"by_probes_{s}", val, metric=label, probe_set=probe, group=group, n=k,
                            coords={"probes": k}) for s, val in stats.items()]
        out.append(_record("by_probes_auroc", auroc(np.concatenate(pooled[bench.high]),
                                                    np.concatenate(pooled[bench.low])),
                           metric=label, probe_set=probe, group=SEPARATION, n=k, coords={"probes": k}))
    return out


def _timing(bench: Any, view: Any, label: str, low: np.ndarray, n_probes: int) -> list[simbench.Record]:
    """Seconds for one pair per probe count: the runner's ``timing_repeats`` timed calls after a warm-up."""
    a_id, b_id = view.specs[int(low[0])].id, view.specs[int(low[1])].id
    out: list[simbench.Record] = []
    for k, _ in _subsets(bench, view, n_probes):
        key = timing_key(label, k)
        failure = view.matrix_failure(key)
        if failure is not None:
            out.append(_failed(label, bench.count_probe_set, TIMING, failure, "seconds_median", n=k,
                               coords={"probes": k}))
            continue
        s = np.asarray(view.matrix_seconds(key) or [], dtype=float)
        if not len(s):
            raise RuntimeError(f"declared timed matrix {key!r} came back without timings")
        q25, med, q75 = np.quantile(s, [0.25, 0.5, 0.75])
        stats = {"seconds_median": med, "seconds_q25": q25, "seconds_q75": q75, "seconds_min": s.min(),
                 "seconds_max": s.max(), "repeats": len(s)}
        out += [_record(name, val, metric=label, probe_set=bench.count_probe_set, group=TIMING, n=k,
                        model_a=a_id, model_b=b_id, coords={"probes": k}) for name, val in stats.items()]
    return out
