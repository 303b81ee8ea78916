"""Evaluation of the ``calibration`` benchmark (numpy) from the store view; reporting is in ``report``.

It never runs a metric: ``requests`` declares the probe-count matrices (each
ensemble's first ``count_models`` models on random probe subsets, ``Source.rows``)
and the timed pairs (``MatrixRequest.timing_repeats``), the runner computes
them as cells, and ``evaluate`` reads them with ``view.matrix`` and
``view.matrix_seconds``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

import simbench
from simbench.errors import MeasurementFailed, UserError
from simbench.seeding import numpy_rng
from simbench.types import WEIGHTS_PROBE_SET

from .._scale import calibrated, scale_of
from .common import INFO, LETTER_DEPTHS, OVERLAP, POOLED, SEPARATION, TIMING, WEIGHTS

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


def pair_weights(counts: np.ndarray) -> np.ndarray:
    """Weight of each unordered pair (``triu`` order) when the models are drawn ``counts`` times: the number of
    pairs of draws of two different models, ``c_i c_j`` (a model drawn with itself makes no pair)."""
    i, j = np.triu_indices(len(counts), k=1)
    return (counts[i] * counts[j]).astype(float)


class PooledAuroc:
    """AUROC of ``high`` over ``low`` values pooled over probe sets, and its model-level bootstrap.

    ``low`` / ``high`` hold, per probe set, the values of every unordered pair
    of an ensemble of ``n_low`` / ``n_high`` models in ``triu`` order.  Pairs
    that share a model are not independent, so a bootstrap replicate resamples
    the *models* of each ensemble (with replacement, separately) and weights
    each pair by how many pairs of draws it stands for (:func:`pair_weights`);
    the probe sets are fixed (not resampled) and a pair keeps its weight on
    every probe set.  The weighted AUROC is the Mann-Whitney statistic with
    weights (ties count one half); with unit weights it equals :func:`auroc`.
    """

    def __init__(self, low: Sequence[np.ndarray], high: Sequence[np.ndarray], n_low: int, n_high: int) -> None:
        self.n_low, self.n_high = n_low, n_high
        p_low, p_high = n_low * (n_low - 1) // 2, n_high * (n_high - 1) // 2
        if any(len(v) != p_low for v in low) or any(len(v) != p_high for v in high):
            raise ValueError("each probe set needs the values of every pair, in triu order")
        lo = np.concatenate(list(low)).astype(float)
        hi = np.concatenate(list(high)).astype(float)
        order = np.argsort(lo, kind="stable")
        self.low_sorted = lo[order]
        self.low_pair = np.tile(np.arange(p_low), len(low))[order]
        self.high = hi
        self.high_pair = np.tile(np.arange(p_high), len(high))
        self.below = np.searchsorted(self.low_sorted, hi, side="left")
        self.at_or_below = np.searchsorted(self.low_sorted, hi, side="right")

    def value(self, w_low: np.ndarray | None = None, w_high: np.ndarray | None = None) -> float:
        """The (weighted) AUROC; ``w_low`` / ``w_high`` weight each pair of an ensemble (default 1)."""
        wl = np.ones(len(self.low_sorted)) if w_low is None else w_low[self.low_pair]
        wh = np.ones(len(self.high)) if w_high is None else w_high[self.high_pair]
        cum = np.concatenate([[0.0], np.cumsum(wl)])
        less, leq = cum[self.below], cum[self.at_or_below]
        den = wh.sum() * cum[-1]
        return float((wh * (less + 0.5 * (leq - less))).sum() / den) if den > 0 else float("nan")

    def bootstrap(self, n_boot: int, rng: np.random.Generator) -> np.ndarray:
        """``n_boot`` model-level bootstrap replicates of the AUROC (see the class docstring)."""
        out = np.empty(n_boot)
        for r in range(n_boot):
            cl = np.bincount(rng.integers(0, self.n_low, self.n_low), minlength=self.n_low)
            ch = np.bincount(rng.integers(0, self.n_high, self.n_high), minlength=self.n_high)
            out[r] = self.value(pair_weights(cl), pair_weights(ch))
        return out


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


def subset_key(label: str, probe_set: str, side: str) -> str:
    """Request key of one ``subset_metrics`` matrix: metric, probe set, ``low``/``high`` ensemble."""
    return f"subset/{label}/{probe_set}/{side}"


def subset_rows(bench: Any, view: Any, n_probes: int) -> np.ndarray:
    """The ``subset_probes`` rows (sorted) every probe set is read on for ``subset_metrics``: one random draw from
    the suite seed, the same rows (images) in every probe set; all rows when the probe sets are no larger."""
    if bench.subset_probes >= n_probes:
        return np.arange(n_probes)
    rng = numpy_rng(view.seed, "calibration", "subset_rows", bench.subset_probes)
    return np.sort(rng.choice(n_probes, size=bench.subset_probes, replace=False))


def metric_uses(bench: Any, view: Any) -> list[tuple[str, Any, bool]]:
    """``(label, configured suite metric or None, computed on a probe subset)``: the suite's metrics, then
    ``subset_metrics`` (registered names the benchmark declares itself); a name in both is a suite error."""
    clash = [m for m in bench.subset_metrics if m in view.metrics]
    if clash:
        raise UserError(f"calibration: subset_metrics {clash} are also suite metrics; list a metric in one place "
                        "(subset_metrics computes it on subset_probes rows, the suite on every probe)")
    return [(label, m, False) for label, m in view.metrics.items()] + [(m, None, True) for m in bench.subset_metrics]


def _set_size(view: Any, probe: str) -> int | None:
    try:
        return int(view.probe_set(probe).x.shape[0])
    except MeasurementFailed:
        return None


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
    probes = _probe_sets(bench, view)
    uses = metric_uses(bench, view)
    ids = [s.id for s in view.specs]
    out: list[simbench.MatrixRequest] = []
    for label, _, subset in uses:  # subset_metrics: each ensemble on the same subset_probes rows of every probe set
        if not subset:
            continue
        for p in probes:
            size = _set_size(view, p)
            if size is None:  # a failed probe set: evaluate reports it
                continue
            rows = _rows(subset_rows(bench, view, size), size)
            for side, members in (("low", low), ("high", high)):
                sources = tuple(simbench.Source(ids[int(i)], p, rows=rows) for i in members)
                out.append(simbench.MatrixRequest(subset_key(label, p, side), label, sources))
    n_probes = _count_probes(bench, view)
    if isinstance(n_probes, str):  # the probe set failed: evaluate reports it
        return out
    probe = bench.count_probe_set
    subsets = _subsets(bench, view, n_probes)
    for label, metric, subset in uses:
        weight = not subset and metric.kind == "weight"
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
    records += [_record("overlap_at_least", bench.overlap_at_least, group=INFO),
                _record("seed_random_above", bench.seed_random_above, group=INFO),
                _record("seed_converged_below", bench.seed_converged_below, group=INFO)]
    n_probes = _count_probes(bench, view)
    pooled_auroc: dict[str, float] = {}
    for label, metric, subset in metric_uses(bench, view):
        if subset:
            metric = _subset_metric(view, label, probes)
            if metric is None:  # every probe set failed: no matrix was declared
                records.append(_failed(label, probes[0], bench.low, "no probe set to compute it on"))
                continue
            if metric.kind == "weight":
                raise UserError(f"calibration: subset_metrics {label!r} is a weight metric; subset_metrics takes "
                                "activation metrics (a weight metric reads no probes: list it as a suite metric)")
            records.append(_record("subset_probes", bench.subset_probes, metric=label, group=INFO))
        weight = metric.kind == "weight"
        records.append(_record("weight_metric", 1.0 if weight else 0.0, metric=label, group=INFO))
        records.append(_record("declared_overlap", 1.0 if label in bench.overlap_metrics else 0.0, metric=label,
                               group=INFO))
        scale = scale_of(metric)
        if scale is not None:
            records += [_record("scale_low", scale[0], metric=label, group=INFO),
                        _record("scale_high", scale[1], metric=label, group=INFO)]
        per_set: list[tuple[str, np.ndarray, np.ndarray, bool]] = []
        for probe in ([probes[0]] if weight else probes):
            where = WEIGHTS if weight else probe
            if subset:
                oriented = _subset_block(view, metric, label, probe, low, high)
                if isinstance(oriented, str):
                    records.append(_failed(label, where, bench.low, oriented))
                    continue
            else:
                try:
                    oriented = _numpy(view.similarity(label, probe))
                except MeasurementFailed as exc:
                    records.append(_failed(label, where, bench.low, str(exc)))
                    continue
            found, values = _distributions(bench, view, label, metric, where, oriented, low, high)
            records += found
            if values is not None:
                per_set.append((probe, *values))
        if not weight:
            found, auc = _overlap(bench, view, label, per_set, len(probes), len(low), len(high))
            records += found
            pooled_auroc[label] = auc
        if isinstance(n_probes, str):  # the count probe set failed in the run: neither analysis can run
            records.append(_failed(label, bench.count_probe_set, bench.low, n_probes, "by_probes_mean"))
            continue
        if not weight:
            records += _probe_counts(bench, view, label, metric, low, high, n_probes)
        if bench.timing_repeats:
            records += _timing(bench, view, label, low, n_probes)
    return records + _overlap_verdict(bench, pooled_auroc)


def _subset_metric(view: Any, label: str, probes: Sequence[str]) -> Any:
    """The configured object of a ``subset_metrics`` metric, from its first declared matrix (None if none)."""
    for p in probes:
        try:
            return view.matrix_metric(subset_key(label, p, "low"))
        except (LookupError, UserError):
            continue
    return None


def _subset_block(view: Any, metric: Any, label: str, probe: str, low: np.ndarray,
                  high: np.ndarray) -> np.ndarray | str:
    """An ``M x M`` oriented matrix holding a ``subset_metrics`` metric's two within-ensemble matrices on
    ``probe`` (the cross-ensemble block, never read, is 0), or the one-line reason it cannot be built."""
    m = len(view.specs)
    out = np.zeros((m, m))
    for side, members in (("low", low), ("high", high)):
        s = _count_matrix(view, subset_key(label, probe, side))
        if isinstance(s, str):
            return s
        out[np.ix_(members, members)] = metric.to_similarity(s)
    return out


def overlap_verdict(aurocs: Sequence[float], at_least: int) -> float:
    """The pre-declared overlap verdict over the declared metrics' pooled AUROCs: 1 (reproduced) when at least
    ``at_least`` are below 1 (the ensembles' values overlap), 0 (not reproduced) when at least
    ``len - at_least + 1`` are 1 (no overlap: ``at_least`` overlapping is out of reach), NaN when failed or
    missing metrics leave it open.  Symmetric: with every metric measured, exactly one of the two holds."""
    measured = [a for a in aurocs if math.isfinite(a)]
    overlapping = sum(a < 1.0 for a in measured)
    separated = len(measured) - overlapping
    if overlapping >= at_least:
        return 1.0
    if separated >= len(aurocs) - at_least + 1:
        return 0.0
    return float("nan")


def _overlap_verdict(bench: Any, pooled: dict[str, float]) -> list[simbench.Record]:
    aurocs = [pooled.get(m, float("nan")) for m in bench.overlap_metrics]
    measured = sum(math.isfinite(a) for a in aurocs)
    return [_record("overlap_reproduced", overlap_verdict(aurocs, bench.overlap_at_least), group=OVERLAP,
                    probe_set=POOLED, n=measured),
            _record("metrics_overlapping", sum(a < 1.0 for a in aurocs if math.isfinite(a)), group=OVERLAP,
                    probe_set=POOLED, n=measured),
            _record("metrics_declared", len(aurocs), group=OVERLAP, probe_set=POOLED, n=measured)]


def _overlap(bench: Any, view: Any, label: str, per_set: list[tuple[str, np.ndarray, np.ndarray, bool]],
             n_sets: int, n_low: int, n_high: int) -> tuple[list[simbench.Record], float]:
    """Seed 001's overlap claim for one activation metric, its values pooled over every probe set (the seed's
    Fig. 1a probes 'clean or 15 corruptions'): pooled AUROC with a model-level bootstrap interval, the extremes
    and the gap between the ensembles, the shares beyond the seed's dCKA numbers, and how many single probe sets
    overlap.  Returns the records and the pooled AUROC (NaN if no probe set was measured)."""
    if not per_set:
        return [_failed(label, POOLED, OVERLAP, "no probe set measured (non-finite or failed values on every one)", "auroc")], float("nan")
    lows, highs = [v[1] for v in per_set], [v[2] for v in per_set]
    on_scale = all(v[3] for v in per_set)
    pooled = PooledAuroc(lows, highs, n_low, n_high)
    auc = pooled.value()
    lo, hi = np.concatenate(lows), np.concatenate(highs)
    n = len(lo) + len(hi)
    stats: dict[str, float] = {
        "auroc": auc, "random_max": float(lo.max()), "converged_min": float(hi.min()),
        "random_q95": float(np.quantile(lo, 0.95)), "converged_q05": float(np.quantile(hi, 0.05)),
        "gap": float(hi.min() - lo.max()), "overlaps": 1.0 if auc < 1.0 else 0.0,
        "sets": float(len(per_set)), "sets_expected": float(n_sets),
        "sets_overlapping": float(sum(auroc(h, lw) < 1.0 for _, lw, h, _ in per_set)),
    }
    if on_scale:  # the seed's numbers for dCKA, on the calibrated scale
        stats["frac_random_above"] = float(np.mean(lo > bench.seed_random_above))
        stats["frac_converged_below"] = float(np.mean(hi < bench.seed_converged_below))
        stats["seed_spread"] = float(lo.max() > bench.seed_random_above and hi.min() < bench.seed_converged_below)
    if bench.n_bootstrap and n_low >= 3 and n_high >= 3:
        reps = pooled.bootstrap(bench.n_bootstrap, numpy_rng(view.seed, "calibration", "overlap", label))
        reps = reps[np.isfinite(reps)]  # a replicate that drew one model only has no pair: it says nothing
        if len(reps) >= bench.n_bootstrap / 2:
            stats["auroc_ci_low"], stats["auroc_ci_high"] = (float(q) for q in np.quantile(reps, [0.025, 0.975]))
    return [_record(k, v, metric=label, probe_set=POOLED, group=OVERLAP, n=n) for k, v in stats.items()], auc


def _distributions(bench: Any, view: Any, label: str, metric: Any, where: str, oriented: np.ndarray,
                   low: np.ndarray, high: np.ndarray
                   ) -> tuple[list[simbench.Record], tuple[np.ndarray, np.ndarray, bool] | None]:
    """The records of one metric on one probe set, and ``(low values, high values, on the calibrated scale)``
    of the within-ensemble pairs (raw oriented values when the metric has no calibrated scale; None if failed)."""
    oriented = 0.5 * (oriented + oriented.T)  # unordered pairs: symmetrise asymmetric metrics
    if not np.isfinite(oriented).all():
        return [_failed(label, where, bench.low, "non-finite similarity values")], None
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
                _record("cohen_d", cohen_d(hi_v, lo_v), metric=label, probe_set=where, group=SEPARATION, n=n),
                _record("gap", float(hi_v.min() - lo_v.max()), metric=label, probe_set=where, group=SEPARATION, n=n),
                _record("frac_random_above", float(np.mean(lo_v > bench.seed_random_above)), metric=label,
                        probe_set=where, group=SEPARATION, n=n),
                _record("frac_converged_below", float(np.mean(hi_v < bench.seed_converged_below)), metric=label,
                        probe_set=where, group=SEPARATION, n=n)]
        return out, (lo_v, hi_v, True)
    # no calibrated scale: separation on the raw (oriented) values, which AUROC does not mind
    hi_r, lo_r = within_pairs(oriented, high), within_pairs(oriented, low)
    out += [_record("auroc", auroc(hi_r, lo_r), metric=label, probe_set=where, group=SEPARATION, n=n),
            _record("overlap", overlap_coefficient(hi_r, lo_r), metric=label, probe_set=where,
                    group=SEPARATION, n=n),
            _record("gap", float(hi_r.min() - lo_r.max()), metric=label, probe_set=where, group=SEPARATION, n=n)]
    return out, (lo_r, hi_r, False)


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
