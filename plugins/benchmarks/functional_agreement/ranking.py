"""One construction for every ranking statement on a page: simultaneous paired differences.

The best set, each metric's rank confidence set, the marks and the pairwise
comparisons all come from ONE family of tests, so a page cannot contradict
itself (Mogstad, Romano, Shaikh & Wilhelm 2024, "Inference for ranks";
Romano & Wolf 2005, step-down max-t):

- for every ordered pair of metrics (i, j) the hypothesis "i is not better
  than j by more than the tie margin", ``H_ij: θ_i − θ_j ≤ δ``, where θ is a
  metric's mean Fisher z;
- the statistic is the paired difference studentized by its leave-one-unit-out
  jackknife standard error, ``t_ij = (d_ij − δ) / se_ij``, read against
  Student's t with ``U − 1`` degrees of freedom (U = resampling units) and put
  on the normal scale (``Φ⁻¹(F_t(t))``): a small-sample correction whose
  calibration the shipped size study (``benchmarks/bench_ranking.py``) checks;
- the joint null of all those statistics is the paired model-level bootstrap:
  ``T*_ij = (d*_ij − d_ij) / sd*_ij`` (re-centred, studentized by the bootstrap
  standard deviation), and the step-down max-T procedure turns it into
  adjusted p-values that control the family-wise error over *all* pairs;
- "i beats j" ⇔ the adjusted p of ``H_ij`` is below the level.  Then
  metric j's rank confidence set is ``[1 + #{i beats j}, Q − #{j beats k}]``,
  the best set is the metrics whose rank set contains 1 (nobody beats them),
  and a metric outside it is marked with the smallest adjusted p of any metric
  that beats it, named as ``beaten_by``.

Metrics whose replicates are identical (``se = 0``) or whose difference lies
within the margin carry no evidence against each other.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: default indifference margin on the Fisher-z scale (about 0.01 in r): two metrics whose mean z
#: differ by less are treated as tied, so a rounding-level difference never excludes anyone
TIE_MARGIN = 0.01
_SE_FLOOR = 1e-12


@dataclass(frozen=True)
class RankSets:
    """Rank inference for Q metrics (arrays are indexed like the input; NaN / -1 where a metric
    has no score).

    ``rank``: observed rank (1 = highest score, ties share the best rank); ``low``/``high``: the
    rank confidence set; ``in_best``: ``low == 1``; ``beats[i, j]``: i is better than j;
    ``pair_p[i, j]``: step-down adjusted p of "i better than j"; ``se[i, j]``: jackknife SE of
    the difference; ``beaten_by[j]``: the metric whose claim against j has the smallest adjusted
    p (-1: none); ``mark_p[j]``: that p; ``p_first``: share of bootstrap replicates in which the
    metric scores highest; ``units``: resampling units behind the jackknife.
    """

    rank: np.ndarray
    low: np.ndarray
    high: np.ndarray
    in_best: np.ndarray
    beats: np.ndarray
    pair_p: np.ndarray
    se: np.ndarray
    beaten_by: np.ndarray
    mark_p: np.ndarray
    p_first: np.ndarray
    units: int
    #: single-step simultaneous critical value on the t(U−1) scale: ``d_ij ± critical·se_ij`` covers every
    #: paired difference at once with probability 1 − level (NaN where nothing could be compared)
    critical: float = float("nan")


def jackknife_se(replicates: np.ndarray) -> np.ndarray:
    """``√((U−1)/U · Σ_u (θ₍ᵤ₎ − θ̄)²)`` over axis 0 (rows are leave-one-unit-out replicates)."""
    reps = np.asarray(replicates, dtype=np.float64)
    u = reps.shape[0]
    if u < 2:
        return np.full(reps.shape[1:], np.nan)
    return np.sqrt((u - 1) / u * ((reps - reps.mean(axis=0)) ** 2).sum(axis=0))


def t_to_normal(t: np.ndarray, df: float) -> np.ndarray:
    """Student-t statistics with ``df`` degrees of freedom mapped to the normal score of the same
    upper-tail probability (``±inf`` stay ``±inf``)."""
    from scipy.stats import norm, t as student

    t = np.asarray(t, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return np.where(np.isfinite(t), norm.isf(student.sf(t, df)), t)


def interval_quantile(units: int, level: float = 0.95) -> float:
    """The two-sided Student-t quantile with ``units − 1`` degrees of freedom used for a metric's
    interval ``tanh(z ± q·se_jack)``."""
    from scipy.stats import t as student

    return float(student.ppf(0.5 + level / 2.0, max(units - 1, 1)))


def rank_sets(observed: np.ndarray, boot: np.ndarray, jack: np.ndarray, level: float = 0.05,
              margin: float = TIE_MARGIN) -> RankSets:
    """Rank confidence sets, best set and marks of ``observed`` ``[Q]`` scores (higher is better)
    from paired bootstrap ``[B, Q]`` and jackknife ``[U, Q]`` replicates (rows with a NaN in a
    scored metric are dropped).  See the module docstring for the construction."""
    from scipy.stats import rankdata

    obs = np.asarray(observed, dtype=np.float64)
    n = len(obs)
    rank = np.full(n, -1)
    low, high, beaten_by = np.full(n, -1), np.full(n, -1), np.full(n, -1)
    in_best = np.zeros(n, dtype=bool)
    beats = np.zeros((n, n), dtype=bool)
    pair_p, se_full = np.full((n, n), np.nan), np.full((n, n), np.nan)
    mark_p, p_first = np.full(n, np.nan), np.full(n, np.nan)
    idx = np.flatnonzero(np.isfinite(obs))
    q = len(idx)
    zb = np.asarray(boot, dtype=np.float64)[:, idx]
    zb = zb[np.isfinite(zb).all(axis=1)]
    zj = np.asarray(jack, dtype=np.float64)[:, idx]
    zj = zj[np.isfinite(zj).all(axis=1)]
    units = len(zj)
    if q == 0:
        return RankSets(rank, low, high, in_best, beats, pair_p, se_full, beaten_by, mark_p, p_first, units)
    o = obs[idx]
    rank[idx] = rankdata(-o, method="min").astype(int)
    if len(zb):
        top = zb == zb.max(axis=1, keepdims=True)
        p_first[idx] = (top / top.sum(axis=1, keepdims=True)).mean(axis=0)  # ties share a replicate
    if q == 1 or len(zb) < 2 or units < 3:
        # nothing to compare (or no resamples): every metric's rank set is the whole range
        low[idx], high[idx], in_best[idx] = 1, q, True
        return RankSets(rank, low, high, in_best, beats, pair_p, se_full, beaten_by, mark_p, p_first, units)

    d = o[:, None] - o[None, :]  # [i, j] = s_i - s_j
    se = jackknife_se(zj[:, :, None] - zj[:, None, :])
    db = zb[:, :, None] - zb[:, None, :]  # [B, i, j]
    sd = db.std(axis=0, ddof=1)
    usable = (se > _SE_FLOOR) & (sd > _SE_FLOOR) & ~np.eye(q, dtype=bool)
    hi_i, hi_j = np.nonzero(usable)
    if len(hi_i):
        t_obs = t_to_normal((d[hi_i, hi_j] - margin) / se[hi_i, hi_j], units - 1)
        t_null = (db[:, hi_i, hi_j] - d[hi_i, hi_j]) / sd[hi_i, hi_j]  # [B, H]
        order = np.argsort(-t_obs, kind="stable")
        # step-down: the l-th largest statistic is judged against the max over itself and every
        # smaller one (the hypotheses not yet rejected), then adjusted p-values are made monotone
        suffix_max = np.maximum.accumulate(t_null[:, order][:, ::-1], axis=1)[:, ::-1]
        raw = (1.0 + (suffix_max >= t_obs[order][None, :]).sum(axis=0)) / (len(zb) + 1.0)
        adjusted = np.empty_like(raw)
        adjusted[order] = np.maximum.accumulate(raw)
        p_local = np.full((q, q), np.nan)
        p_local[hi_i, hi_j] = adjusted
        pair_p[np.ix_(idx, idx)] = p_local
        wins = np.nan_to_num(p_local, nan=1.0) < level
        beats[np.ix_(idx, idx)] = wins
        critical = _t_critical(float(np.quantile(t_null.max(axis=1), 1.0 - level)), units - 1)
    else:
        wins = np.zeros((q, q), dtype=bool)
        p_local = np.full((q, q), np.nan)
        critical = float("nan")
    se_full[np.ix_(idx, idx)] = np.where(np.eye(q, dtype=bool), np.nan, se)
    low[idx] = 1 + wins.sum(axis=0)
    high[idx] = q - wins.sum(axis=1)
    in_best[idx] = low[idx] == 1
    for col, j in enumerate(idx):
        p_col = p_local[:, col]
        if np.isfinite(p_col).any():
            best_i = int(np.nanargmin(np.where(np.isfinite(p_col), p_col + 0.0, np.inf) - 1e-9 * d[:, col]))
            mark_p[j] = p_col[best_i]
            if wins[best_i, col]:
                beaten_by[j] = idx[best_i]
    return RankSets(rank, low, high, in_best, beats, pair_p, se_full, beaten_by, mark_p, p_first, units, critical)


def _t_critical(normal_critical: float, df: float) -> float:
    """The normal-scale critical value mapped back to Student's t with ``df`` degrees of freedom (the
    inverse of :func:`t_to_normal`), so that ``(d − δ) / se ≥ result`` ⇔ the statistic exceeds it."""
    from scipy.stats import norm, t as student

    return float(student.isf(norm.sf(normal_critical), max(df, 1)))
