"""Statistics over model pairs (the functional-agreement benchmark's own; not part of the core).

Everything here works on *unordered* pairs (the strict upper triangle of an
``M x M`` matrix) with metrics oriented so that higher = more similar.  Pairs
share models, so they are *dyadic* data, not independent observations: the
functions that give intervals and tests for the leaderboard resample models.

- Model-level resampling (Snijders & Borgatti 1999): :func:`resampling_units`
  picks the units (models, or the blocks of a single-factor group),
  :func:`bootstrap_counts` / :func:`pair_weights` turn draws of units into
  pair weights, :func:`weighted_correlations` computes every metric's and
  probe set's r for many weightings at once (matrix products), and
  :func:`bootstrap_correlations` / :func:`jackknife_correlations` wrap them.
  One set of draws serves every metric, so comparisons are paired.
- Comparisons and ranks live in ``ranking.py`` (one construction for the rank
  sets, the best set and every mark).
- :func:`mantel` and :func:`mantel_null`: permutation p-values that relabel
  models (rows and columns together), within blocks when ``blocks`` is given.
- Pairs-independent formulas, kept for comparison with the literature and
  labelled as such on the page: :func:`fisher_interval`, :func:`pearson`,
  :func:`spearman`, :func:`bonett_wright_interval`, and the dependent-correlation
  tests :func:`steiger_z` / :func:`meng_z` (dependence between the two
  correlations, not between pairs).
- :func:`bad_fraction`: Ding et al. (2021)'s bad fraction and the variant
  conditioned on the close pairs.

Stacked inputs ``[K, M, M]`` (K probe sets) are combined by the mean Fisher
z of the K correlations, with the *same* permutation / resample applied to
all K layers, so the aggregate has an honest permutation p and interval too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

Z_95 = 1.959963984540054  # two-sided 95 % normal quantile
_R_CLIP = 0.9999999  # keeps atanh finite for |r| = 1

#: significance marks as in seed 001 Fig. 3 (largest threshold last)
SIGNIFICANCE_LEVELS: tuple[tuple[float, str], ...] = ((0.001, "***"), (0.01, "**"), (0.05, "*"))


def upper_pairs(m: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices of the strict upper triangle (unordered pairs)."""
    return np.triu_indices(m, k=1)


def upper(matrix: np.ndarray) -> np.ndarray:
    """The strict upper triangle of a square matrix, as a vector."""
    matrix = np.asarray(matrix)
    i, j = upper_pairs(matrix.shape[0])
    return matrix[i, j]


@dataclass(frozen=True)
class Correlation:
    """A correlation with its Fisher-z 95 % interval and two-sided p-value."""

    r: float
    n: int
    ci_low: float
    ci_high: float
    p: float

    @property
    def z(self) -> float:
        return fisher_z(self.r)


def fisher_z(r: float) -> float:
    """atanh(r), clipped so |r| = 1 stays finite."""
    return float(np.arctanh(np.clip(r, -_R_CLIP, _R_CLIP)))


def fisher_interval(r: float, n: int, level_z: float = Z_95) -> tuple[float, float]:
    """tanh(z ± q/√(n−3)); the whole [-1, 1] range when n ≤ 3."""
    if n <= 3 or not math.isfinite(r):
        return -1.0, 1.0
    z, se = fisher_z(r), 1.0 / math.sqrt(n - 3)
    return math.tanh(z - level_z * se), math.tanh(z + level_z * se)


def normal_two_sided_p(z: float) -> float:
    """``2·P(Z > |z|)`` for a standard normal Z (erfc keeps tiny p-values accurate)."""
    return math.erfc(abs(z) / math.sqrt(2.0)) if math.isfinite(z) else (0.0 if math.isinf(z) else float("nan"))


def fisher_p(r: float, n: int) -> float:
    """Two-sided p-value of H0: ρ = 0 from the Fisher z statistic z·√(n−3)."""
    if n <= 3 or not math.isfinite(r):
        return 1.0
    return normal_two_sided_p(fisher_z(r) * math.sqrt(n - 3))


def correlation_from_r(r: float, n: int) -> Correlation:
    """Wrap a correlation (e.g. a mean-Fisher-z aggregate) with its Fisher interval and p for ``n`` pairs."""
    lo, hi = fisher_interval(r, n)
    return Correlation(float(r), int(n), lo, hi, fisher_p(r, n))


def _scipy_correlation(x: np.ndarray, y: np.ndarray, kind: Literal["pearson", "spearman"]) -> Correlation:
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    n = len(x)
    if n < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return Correlation(0.0, n, -1.0, 1.0, 1.0)
    from scipy import stats as sps

    fn = sps.pearsonr if kind == "pearson" else sps.spearmanr
    return correlation_from_r(float(fn(x, y).statistic), n)


def pearson(x: np.ndarray, y: np.ndarray) -> Correlation:
    """Pearson r with Fisher-z interval and p, assuming independent observations (0 when either input is constant)."""
    return _scipy_correlation(x, y, "pearson")


def spearman(x: np.ndarray, y: np.ndarray) -> Correlation:
    """Spearman ρ with a Fisher-z interval (the usual large-sample approximation; independent observations)."""
    return _scipy_correlation(x, y, "spearman")


def mean_fisher_z(rs: list[float] | np.ndarray) -> float:
    """Average correlations in z space and transform back."""
    rs = np.asarray(rs, dtype=np.float64)
    if rs.size == 0:
        return float("nan")
    return float(np.tanh(np.mean(np.arctanh(np.clip(rs, -_R_CLIP, _R_CLIP)))))


def _mean_z_rows(r: np.ndarray) -> np.ndarray:
    """Mean Fisher z over the last axis, back-transformed (NaN-propagating)."""
    return np.tanh(np.mean(np.arctanh(np.clip(r, -_R_CLIP, _R_CLIP)), axis=-1))


# ----------------------------------------------------------------------------
# Comparing two dependent correlations
# ----------------------------------------------------------------------------


def significance_mark(p: float) -> str:
    """``"***"`` for p < 0.001, ``"**"`` < 0.01, ``"*"`` < 0.05, else ``"n.s."`` (NaN: ``""``)."""
    if p is None or not math.isfinite(p):
        return ""
    for level, mark in SIGNIFICANCE_LEVELS:
        if p < level:
            return mark
    return "n.s."


@dataclass(frozen=True)
class DependentComparison:
    """Test of H0: ρ(a, y) = ρ(b, y) for two correlations that share the variable y.

    ``r1 = r(a, y)``, ``r2 = r(b, y)``, ``r12 = r(a, b)``, all over the same
    ``n`` observations; ``z`` is the standard-normal statistic (positive when
    ``r1 > r2``), ``p`` its two-sided p-value, ``ci_low``/``ci_high`` a 95 %
    interval for ``atanh(r1) - atanh(r2)`` (Meng et al. only; NaN otherwise).
    """

    r1: float
    r2: float
    r12: float
    n: int
    z: float
    p: float
    method: str
    ci_low: float = float("nan")
    ci_high: float = float("nan")

    @property
    def diff(self) -> float:
        return self.r1 - self.r2

    @property
    def mark(self) -> str:
        return significance_mark(self.p)


def _ratio(diff: float, se: float) -> float:
    """``diff / se`` that stays defined when two metrics are (numerically) identical."""
    if se > 1e-12:
        return diff / se
    return 0.0 if abs(diff) < 1e-12 else math.copysign(math.inf, diff)


def steiger_z(r1: float, r2: float, r12: float, n: int) -> DependentComparison:
    """Steiger (1980), eq. 14 with the pooled correlation: the Z* test of ρ(a,y) = ρ(b,y).

    With ``r̄ = (r1 + r2)/2``, ``ψ = r12(1 − 2r̄²) − ½ r̄²(1 − 2r̄² − r12²)`` is
    the asymptotic covariance of the two correlations, ``s = ψ/(1 − r̄²)²``
    the covariance of their Fisher z's, and
    ``Z* = (z1 − z2)·√(n − 3) / √(2 − 2s)``.
    """
    r1c, r2c, r12c = (float(np.clip(v, -_R_CLIP, _R_CLIP)) for v in (r1, r2, r12))
    if n <= 3:
        return DependentComparison(r1, r2, r12, n, float("nan"), float("nan"), "steiger")
    rbar = 0.5 * (r1c + r2c)
    psi = r12c * (1 - 2 * rbar**2) - 0.5 * rbar**2 * (1 - 2 * rbar**2 - r12c**2)
    s = psi / (1 - rbar**2) ** 2
    se = math.sqrt(max(2.0 - 2.0 * s, 0.0) / (n - 3))
    z = _ratio(fisher_z(r1c) - fisher_z(r2c), se)
    return DependentComparison(r1, r2, r12, n, z, normal_two_sided_p(z), "steiger")


def meng_z(r1: float, r2: float, r12: float, n: int) -> DependentComparison:
    """Meng, Rosenthal & Rubin (1992): ``Z = (z1 − z2)·√((n − 3) / (2(1 − r12)h))``.

    ``r̄² = (r1² + r2²)/2``, ``f = min(1, (1 − r12)/(2(1 − r̄²)))``,
    ``h = (1 − f r̄²)/(1 − r̄²)``; the 95 % interval of ``z1 − z2`` is
    ``(z1 − z2) ± 1.96·√(2(1 − r12)h/(n − 3))``.
    """
    r1c, r2c, r12c = (float(np.clip(v, -_R_CLIP, _R_CLIP)) for v in (r1, r2, r12))
    if n <= 3:
        return DependentComparison(r1, r2, r12, n, float("nan"), float("nan"), "meng")
    r2bar = 0.5 * (r1c**2 + r2c**2)
    f = min(1.0, (1 - r12c) / (2 * (1 - r2bar)))
    h = (1 - f * r2bar) / (1 - r2bar)
    se = math.sqrt(max(2 * (1 - r12c) * h, 0.0) / (n - 3))
    diff = fisher_z(r1c) - fisher_z(r2c)
    z = _ratio(diff, se)
    return DependentComparison(r1, r2, r12, n, z, normal_two_sided_p(z), "meng", diff - Z_95 * se, diff + Z_95 * se)


def compare_dependent(
    r1: float, r2: float, r12: float, n: int, method: Literal["steiger", "meng"] = "steiger"
) -> DependentComparison:
    """Compare two correlations with a common variable; ``method`` picks the test."""
    if method == "steiger":
        return steiger_z(r1, r2, r12, n)
    if method == "meng":
        return meng_z(r1, r2, r12, n)
    raise ValueError(f"unknown dependent-correlation test {method!r}; expected 'steiger' or 'meng'")


# ----------------------------------------------------------------------------
# Permutation (Mantel) tests and the model-level bootstrap
# ----------------------------------------------------------------------------


def _layers(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """Validate shapes: ``x`` ``[M, M]``, ``[K, M, M]`` or ``[Q, K, M, M]`` (Q metrics);
    ``y`` ``[M, M]`` or ``[K, M, M]``.  Returns ``x`` as ``[Q, K, M, M]``, ``y`` as
    ``[K, M, M]`` (float64) and whether ``x`` had a metric axis."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    batched = x.ndim == 4
    if x.ndim == 2:
        x = x[None]
    if x.ndim == 3:
        x = x[None]
    if y.ndim == 2:
        y = y[None]
    if x.ndim != 4 or y.ndim != 3 or x.shape[-1] != x.shape[-2] or y.shape[-2:] != x.shape[-2:]:
        raise ValueError(f"expected M x M matrices, K x M x M stacks or Q x K x M x M batches; got x {x.shape}, "
                         f"y {y.shape}")
    k = max(x.shape[1], y.shape[0])
    if x.shape[1] not in (1, k) or y.shape[0] not in (1, k):
        raise ValueError(f"x has {x.shape[1]} layers and y {y.shape[0]}; they must match (or one be 1)")
    return np.broadcast_to(x, (x.shape[0], k, *x.shape[2:])), np.broadcast_to(y, (k, *y.shape[1:])), batched


def _pair_mask(pairs: np.ndarray | None, m: int) -> np.ndarray:
    """A boolean vector over the strict upper triangle from a vector or an ``M x M`` mask."""
    n_pairs = m * (m - 1) // 2
    if pairs is None:
        return np.ones(n_pairs, dtype=bool)
    pairs = np.asarray(pairs, dtype=bool)
    if pairs.ndim == 2:
        pairs = upper(pairs)
    if pairs.shape != (n_pairs,):
        raise ValueError(f"pair mask has shape {pairs.shape}; expected ({n_pairs},) or ({m}, {m})")
    return pairs


def row_pearson(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson r along the last axis (broadcasting); 0 where either side is constant, like :func:`pearson`."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    xc = x - x.mean(axis=-1, keepdims=True)
    yc = y - y.mean(axis=-1, keepdims=True)
    num = (xc * yc).sum(axis=-1)
    sxx, syy = (xc * xc).sum(axis=-1), (yc * yc).sum(axis=-1)
    den = np.sqrt(sxx * syy)
    # "constant" relative to the data's scale, so rounding noise of a constant vector is not a signal
    tiny = 1e-24 * (x * x).sum(axis=-1) * (y * y).sum(axis=-1)
    ok = den * den > np.maximum(tiny, 1e-300)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.clip(np.where(ok, num / np.where(ok, den, 1.0), 0.0), -1.0, 1.0)


def block_permutations(blocks: np.ndarray | None, m: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` random relabellings of ``range(m)`` (an ``[n, m]`` array) that map blocks onto blocks.

    With ``blocks=None`` these are uniform random permutations.  Otherwise
    every block goes to a random block of the same size and its members to
    random members of that block, so a set of pairs made of within-block
    pairs (e.g. "pairs that differ only in seed", whose blocks are the models
    sharing every other factor) is mapped onto itself.  Pairs in different
    blocks share no model and may be exchanged; pairs sharing a model stay
    together -- the dependence the test must respect.
    """
    if blocks is None:
        return np.argsort(rng.random((n, m)), axis=1)
    codes = np.unique(np.asarray(blocks), return_inverse=True)[1].reshape(-1)
    if codes.shape != (m,):
        raise ValueError(f"blocks has {codes.shape[0]} labels for {m} models")
    perms = np.empty((n, m), dtype=np.int64)
    members = [np.flatnonzero(codes == b) for b in range(codes.max() + 1)]
    for size in sorted({len(mem) for mem in members}):
        table = np.stack([mem for mem in members if len(mem) == size])  # [blocks of this size, size]
        nb = table.shape[0]
        to_block = np.argsort(rng.random((n, nb)), axis=1)  # block b -> block to_block[:, b]
        to_member = np.argsort(rng.random((n, nb, size)), axis=2)  # member t -> member to_member[:, b, t]
        targets = table[to_block[:, :, None], to_member]  # [n, nb, size]
        perms[:, table.reshape(-1)] = targets.reshape(n, -1)
    return perms


def _chunk(rows: int, work_per_row: int, budget: int = 4_000_000) -> int:
    return max(1, min(rows, budget // max(work_per_row, 1)))


@dataclass(frozen=True)
class PermutationTest:
    """A Mantel-style permutation test: ``statistic`` (observed r, or the mean-Fisher-z r
    over stacked layers) and its permutation ``p`` from ``n_permutations`` permutations."""

    statistic: float
    p: float
    n_permutations: int


def mantel_null(
    x: np.ndarray,
    y: np.ndarray,
    pairs: np.ndarray | None = None,
    blocks: np.ndarray | None = None,
    n_permutations: int = 999,
    seed: int | np.random.Generator = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Observed and permuted Pearson r between the pair values of ``x`` and ``y``.

    ``x`` is a symmetric ``[M, M]`` matrix, a ``[K, M, M]`` stack (K probe
    sets) or a ``[Q, K, M, M]`` batch (Q metrics); ``y`` is ``[M, M]`` or
    ``[K, M, M]``.  ``pairs`` selects unordered pairs (a boolean vector over
    the strict upper triangle or an ``M x M`` mask).  Each permutation
    relabels the models of ``y`` (rows and columns together, one relabelling
    for every layer and metric) and leaves ``x`` fixed; ``blocks``
    restricts the relabellings as in :func:`block_permutations`.  When the
    relabellings map the selected pairs onto themselves (all pairs, or a
    group with its blocks) this is the same test as relabelling ``x``.

    Returns ``(observed, permuted)``: ``[K]`` and ``[n_permutations, K]``
    (``[Q, K]`` and ``[n_permutations, Q, K]`` for a batch).  The permuted
    ``y`` is gathered once per permutation and correlated with every metric
    by one matrix product per layer.
    """
    xq, yk, batched = _layers(x, y)
    q, k, m = xq.shape[0], xq.shape[1], xq.shape[-1]
    mask = _pair_mask(pairs, m)
    iu, ju = upper_pairs(m)
    iu, ju = iu[mask], ju[mask]
    xv = xq[:, :, iu, ju]  # [Q, K, P]
    observed = row_pearson(xv, yk[None, :, iu, ju])  # [Q, K]
    xc = (xv - xv.mean(axis=-1, keepdims=True)).transpose(1, 0, 2)  # [K, Q, P]
    x_norm = np.sqrt((xc * xc).sum(axis=-1))  # [K, Q]
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    perms = block_permutations(blocks, m, n_permutations, rng)
    selected = np.zeros((m, m), dtype=bool)
    selected[iu, ju] = True
    selected |= selected.T
    # centred on the selected pairs: when a relabelling maps them onto themselves (the usual case),
    # their mean and norm do not change and need no recomputation
    yv = yk[:, iu, ju]
    y_mean = yv.mean(axis=-1)
    # pair-major layout: each gathered index reads one contiguous run of K values (cache friendly)
    flat_y = np.ascontiguousarray((yk - y_mean[:, None, None]).reshape(k, m * m).T)  # [M*M, K]
    y_norm_fixed = np.sqrt(((yv - y_mean[:, None]) ** 2).sum(axis=-1))[:, None]  # [K, 1]
    null = np.empty((n_permutations, q, k))
    # small chunks: large gathered temporaries were several times slower per element
    step = _chunk(n_permutations, k * len(iu), budget=2_000_000)
    for start in range(0, n_permutations, step):
        p = perms[start:start + step]
        pi, pj = p[:, iu], p[:, ju]
        yp = np.ascontiguousarray(flat_y[pi * m + pj].transpose(2, 0, 1))  # [K, chunk, P]: relabelled y
        if selected[pi, pj].all():
            y_norm = y_norm_fixed
        else:
            yp = yp - yp.mean(axis=-1, keepdims=True)
            y_norm = np.sqrt((yp * yp).sum(axis=-1))  # [K, chunk]
        num = np.matmul(xc, yp.transpose(0, 2, 1))  # [K, Q, chunk]; x is centred, so sum(x~ y) = cov
        den = x_norm[:, :, None] * y_norm[:, None, :]
        with np.errstate(invalid="ignore", divide="ignore"):
            r = np.clip(np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0), -1.0, 1.0)
        null[start:start + step] = r.transpose(2, 1, 0)
    if batched:
        return observed, null
    return observed[0], null[:, 0]


def permutation_p(observed: float, null: np.ndarray, alternative: str = "two-sided") -> float:
    """``(1 + #{null at least as extreme}) / (1 + #null)``; two-sided compares |values|."""
    null = np.asarray(null, dtype=np.float64)
    null = null[np.isfinite(null)]
    if not math.isfinite(observed) or null.size == 0:
        return float("nan")
    tol = 1e-12  # the identity permutation must count as "as extreme"
    if alternative == "two-sided":
        hits = np.abs(null) >= abs(observed) - tol
    elif alternative == "greater":
        hits = null >= observed - tol
    elif alternative == "less":
        hits = null <= observed + tol
    else:
        raise ValueError(f"alternative must be 'two-sided', 'greater' or 'less', not {alternative!r}")
    return float((1 + hits.sum()) / (1 + null.size))


def mantel(
    x: np.ndarray,
    y: np.ndarray,
    pairs: np.ndarray | None = None,
    blocks: np.ndarray | None = None,
    n_permutations: int = 999,
    seed: int | np.random.Generator = 0,
    alternative: Literal["two-sided", "greater", "less"] = "two-sided",
) -> PermutationTest:
    """Mantel test of the Pearson correlation between two model x model matrices.

    For ``[K, M, M]`` stacks the statistic is the mean-Fisher-z of the K
    correlations under one shared relabelling per permutation.  See
    :func:`mantel_null` for the arguments.
    """
    if np.ndim(x) == 4:
        raise ValueError("mantel tests one metric; use mantel_null for a batch of metrics")
    observed, null = mantel_null(x, y, pairs, blocks, n_permutations, seed)
    stat = float(_mean_z_rows(observed))
    return PermutationTest(stat, permutation_p(stat, _mean_z_rows(null), alternative), n_permutations)


def resampling_units(
    m: int, pairs: np.ndarray | None = None, blocks: np.ndarray | None = None, min_clusters: int = 4
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, int]:
    """The pairs a resampling works on and the units it resamples.

    Returns ``(iu, ju, cluster_of_pair, n_units)``.  Without usable ``blocks``
    the units are the ``m`` models (``cluster_of_pair`` is None: a pair
    belongs to both its models).  With ``blocks`` (labels per model; the
    selected pairs lie within blocks, as for a single-factor group) and at
    least ``min_clusters`` blocks holding selected pairs, the units are those
    blocks: pairs from different blocks share no model, so blocks are
    independent; ``cluster_of_pair`` maps each kept pair to its block.
    """
    mask = _pair_mask(pairs, m)
    iu, ju = upper_pairs(m)
    if blocks is not None:
        codes = np.unique(np.asarray(blocks), return_inverse=True)[1].reshape(-1)
        within = mask & (codes[iu] == codes[ju])
        n_clusters = len(np.unique(codes[iu[within]]))
        if n_clusters >= min_clusters:
            iu, ju = iu[within], ju[within]
            _, cluster_of_pair = np.unique(codes[iu], return_inverse=True)
            return iu, ju, cluster_of_pair, n_clusters
    return iu[mask], ju[mask], None, m


def bootstrap_counts(n_units: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """``[n_boot, n_units]``: how often each unit is drawn in each replicate (n_units draws with replacement)."""
    draws = rng.integers(0, n_units, size=(n_boot, n_units))
    counts = np.zeros((n_boot, n_units))
    np.add.at(counts, (np.arange(n_boot)[:, None], draws), 1.0)
    return counts


def pair_weights(counts: np.ndarray, iu: np.ndarray, ju: np.ndarray, cluster_of_pair: np.ndarray | None) -> np.ndarray:
    """``[R, P]`` pair weights of a cluster-level bootstrap from unit counts ``[R, U]``.

    Models as units (Snijders & Borgatti 1999): drawing model i ``c_i`` times
    and j ``c_j`` times yields ``c_i·c_j`` copies of the pair (i, j) and none
    of a model with itself.  Blocks as units: a pair's weight is how often its
    block was drawn.
    """
    if cluster_of_pair is not None:
        return counts[:, cluster_of_pair]
    return counts[:, iu] * counts[:, ju]


def bootstrap_replicates(xv: np.ndarray, yv: np.ndarray, counts: np.ndarray, iu: np.ndarray, ju: np.ndarray,
                         cluster_of_pair: np.ndarray | None) -> np.ndarray:
    """``[B, Q, K]`` weighted correlations for the unit counts ``[B, U]``, built in chunks so the
    ``[B, P]`` weights never exist at once (P is large for big zoos)."""
    out = np.empty((counts.shape[0], xv.shape[0], xv.shape[1]))
    step = max(1, 2_000_000 // max(len(iu), 1))
    for start in range(0, counts.shape[0], step):
        w = pair_weights(counts[start:start + step], iu, ju, cluster_of_pair)
        out[start:start + step] = weighted_correlations(xv, yv, w)
    return out


def jackknife_weights(iu: np.ndarray, ju: np.ndarray, cluster_of_pair: np.ndarray | None,
                      n_units: int) -> np.ndarray:
    """``[n_units, P]`` 0/1 pair weights, row u leaving out every pair that involves unit u."""
    units = np.arange(n_units)[:, None]
    if cluster_of_pair is not None:
        return (cluster_of_pair[None, :] != units).astype(np.float64)
    return ((iu[None, :] != units) & (ju[None, :] != units)).astype(np.float64)


def weighted_correlations(xv: np.ndarray, yv: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted Pearson r of every row of ``xv`` ``[Q, K, P]`` with ``yv`` ``[K, P]``, one
    weighting per row of ``weights`` ``[R, P]``: returns ``[R, Q, K]``.

    Each weighting's moments are matrix products, so all metrics and probe
    sets of a replicate cost one pass; a weighting with fewer than 3 pairs of
    positive weight, or a degenerate variance, gives NaN.
    """
    q, k, n_pairs = xv.shape
    # centre first (unweighted) so the one-pass weighted moments stay accurate
    xc = (xv - xv.mean(axis=-1, keepdims=True)).reshape(q * k, n_pairs)  # [L, P]
    yc = yv - yv.mean(axis=-1, keepdims=True)  # [K, P]
    xy = (xc.reshape(q, k, -1) * yc[None]).reshape(q * k, -1)
    out = np.empty((weights.shape[0], q * k))
    step = _chunk(weights.shape[0], n_pairs)
    for start in range(0, weights.shape[0], step):
        w = weights[start:start + step]  # [chunk, P]
        total = w.sum(axis=1, keepdims=True)
        safe = np.maximum(total, 1e-300)
        mx, my = (w @ xc.T) / safe, np.tile((w @ yc.T) / safe, q)  # [chunk, L]
        cov = (w @ xy.T) / safe - mx * my
        var_x = (w @ (xc * xc).T) / safe - mx * mx
        var_y = np.tile((w @ (yc * yc).T) / safe, q) - my * my
        den = np.sqrt(np.clip(var_x, 0, None) * np.clip(var_y, 0, None))
        enough = ((w > 0).sum(axis=1) >= 3)[:, None]
        with np.errstate(invalid="ignore", divide="ignore"):
            out[start:start + step] = np.where(enough & (den > 1e-12 * (1 + np.abs(cov))),
                                               cov / np.where(den > 0, den, 1.0), np.nan)
    return np.clip(out, -1.0, 1.0).reshape(-1, q, k)


def _pair_values(x: np.ndarray, y: np.ndarray, iu: np.ndarray, ju: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    xq, yk, batched = _layers(x, y)
    return xq[:, :, iu, ju], yk[:, iu, ju], batched


def bootstrap_correlations(
    x: np.ndarray,
    y: np.ndarray,
    pairs: np.ndarray | None = None,
    n_boot: int = 500,
    seed: int | np.random.Generator = 0,
    blocks: np.ndarray | None = None,
    min_clusters: int = 4,
) -> np.ndarray:
    """Model-level bootstrap replicates of Pearson r: ``[n_boot, K]`` (``[n_boot, Q, K]`` for a
    ``[Q, K, M, M]`` batch of metrics; shapes as in :func:`mantel_null`).

    Without ``blocks``, each replicate draws ``M`` models with replacement
    and takes every pair of draws (both orders collapse to one unordered
    pair), dropping pairs of a model with itself and pairs outside ``pairs``
    (judged on the original models, so a group keeps its meaning); a pair
    drawn twice counts twice.  With ``blocks`` whose selected pairs lie
    within blocks, whole blocks are resampled (see :func:`resampling_units`;
    fewer than ``min_clusters`` blocks fall back to models).  The same draws
    serve every layer and metric, so probe sets can be aggregated and metrics
    compared per replicate (a paired bootstrap).
    """
    m = np.shape(x)[-1]
    iu, ju, cluster_of_pair, n_units = resampling_units(m, pairs, blocks, min_clusters)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    xv, yv, batched = _pair_values(x, y, iu, ju)
    out = bootstrap_replicates(xv, yv, bootstrap_counts(n_units, n_boot, rng), iu, ju, cluster_of_pair)
    return out if batched else out[:, 0]


def jackknife_correlations(
    x: np.ndarray,
    y: np.ndarray,
    pairs: np.ndarray | None = None,
    blocks: np.ndarray | None = None,
    min_clusters: int = 4,
) -> np.ndarray:
    """Leave-one-unit-out replicates of Pearson r, ``[U, K]`` (``[U, Q, K]`` for a batch): unit u's
    row drops every pair involving model u (or block u, as in :func:`bootstrap_correlations`)."""
    m = np.shape(x)[-1]
    iu, ju, cluster_of_pair, n_units = resampling_units(m, pairs, blocks, min_clusters)
    w = jackknife_weights(iu, ju, cluster_of_pair, n_units)
    xv, yv, batched = _pair_values(x, y, iu, ju)
    out = weighted_correlations(xv, yv, w)
    return out if batched else out[:, 0]


def jackknife_se(replicates: np.ndarray) -> np.ndarray:
    """The jackknife standard error ``√((U−1)/U · Σ(θ₍ᵤ₎ − θ̄)²)`` over axis 0 (NaN rows dropped per column)."""
    import warnings

    reps = np.asarray(replicates, dtype=np.float64)
    u = np.isfinite(reps).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN column has no SE: NaN, not a warning
        mean = np.nanmean(reps, axis=0)
        return np.where(u > 1, np.sqrt((u - 1) / np.maximum(u, 1) * np.nansum((reps - mean) ** 2, axis=0)), np.nan)


def percentile_interval(replicates: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The central ``level`` percentile interval of finite replicates (NaN, NaN when none)."""
    reps = np.asarray(replicates, dtype=np.float64)
    reps = reps[np.isfinite(reps)]
    if reps.size == 0:
        return float("nan"), float("nan")
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(reps, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def bootstrap_interval(
    x: np.ndarray,
    y: np.ndarray,
    pairs: np.ndarray | None = None,
    n_boot: int = 500,
    seed: int | np.random.Generator = 0,
    level: float = 0.95,
    blocks: np.ndarray | None = None,
) -> tuple[float, float]:
    """Percentile interval of the model-level bootstrap of Pearson r (mean Fisher z over a stack)."""
    reps = bootstrap_correlations(x, y, pairs, n_boot, seed, blocks)
    return percentile_interval(_mean_z_rows(reps), level)


# ----------------------------------------------------------------------------
# Paired comparisons, multiple testing, ranks and the set of best metrics
# ----------------------------------------------------------------------------


def bonett_wright_interval(rho: float, n: int, level_z: float = Z_95) -> tuple[float, float]:
    """Bonett & Wright (2000) interval of Spearman's rho: ``tanh(atanh(ρ) ± q·√((1 + ρ²/2)/(n − 3)))``.

    Assumes independent observations (here: independent model pairs).
    """
    if n <= 3 or not math.isfinite(rho):
        return -1.0, 1.0
    z, se = fisher_z(rho), math.sqrt((1.0 + rho * rho / 2.0) / (n - 3))
    return math.tanh(z - level_z * se), math.tanh(z + level_z * se)


# ----------------------------------------------------------------------------
# Ding et al. (2021): the bad fraction
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class BadFraction:
    """Ding et al. (2021)'s bad fraction and the share conditioned on the close pairs.

    ``fraction``: over all pairs, the share that the metric puts among its
    closest ``q`` while they are among the functionally farthest ``q``
    (Ding et al.'s definition, chance ``q²``: ``chance``).
    ``close_fraction``: the same count divided by the number of close pairs
    (chance ``q``: ``close_chance``).  ``n_close`` is that number.  The
    chance levels are computed from the actual set sizes, which ties enlarge.
    """

    fraction: float
    chance: float
    close_fraction: float
    close_chance: float
    n_close: int


def bad_fraction(similarity: np.ndarray, agreement: np.ndarray, quantile: float = 0.2) -> BadFraction:
    """Ding et al. (2021): pairs the metric calls close (top ``quantile`` by similarity, i.e.
    bottom by distance) that are functionally far (bottom ``quantile`` by agreement).

    Thresholds are inclusive quantiles, so tied values enter together.
    """
    s = np.asarray(similarity, dtype=np.float64)
    a = np.asarray(agreement, dtype=np.float64)
    if s.size == 0:
        nan = float("nan")
        return BadFraction(nan, nan, nan, nan, 0)
    close = s >= np.quantile(s, 1.0 - quantile)
    far = a <= np.quantile(a, quantile)
    n_close, both = int(close.sum()), int((close & far).sum())
    return BadFraction(both / s.size, float(close.mean() * far.mean()), both / max(n_close, 1), float(far.mean()),
                       n_close)
