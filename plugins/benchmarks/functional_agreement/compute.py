"""The functional-agreement statistics: from stacked M x M matrices to records.

One :class:`Analysis` runs every pair group of one model set.  Per group it
draws one set of model-level resamples (bootstrap, jackknife, permutations)
and applies it to every metric and probe set at once, so aggregates over
probe sets and comparisons between metrics are computed per draw (paired).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from simbench.seeding import numpy_rng
from simbench.types import Record

from . import ranking, stats

from .common import ALL_PROBES, group_blocks, pair_groups, resolve_groups

#: fewest blocks for a single-factor group to resample blocks rather than models
_MIN_BLOCKS = 4


def as_numpy(matrix: Any) -> np.ndarray:
    """A tensor or array as a float64 numpy array."""
    if hasattr(matrix, "detach"):
        matrix = matrix.detach().cpu().numpy()
    return np.asarray(matrix, dtype=np.float64)


def mean_z(r: np.ndarray, failed: np.ndarray, subset: Sequence[int]) -> np.ndarray:
    """Mean Fisher z over the probe sets ``subset`` of ``r`` ``[..., Q, K]``, skipping the (metric,
    probe set) cells in ``failed`` ``[Q, K]``; NaN for a metric with no usable probe set there.
    A NaN replicate of a usable cell (a degenerate resample) makes that replicate NaN."""
    z = np.arctanh(np.clip(r[..., subset], -stats._R_CLIP, stats._R_CLIP))
    use = ~failed[:, subset]
    z = np.where(use, z, 0.0)
    count = use.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, z.sum(axis=-1) / np.maximum(count, 1), np.nan)


class Analysis:
    """Every statistic of ``metrics`` on one set of models.

    ``aggregates`` maps an aggregate label (``ALL_PROBES``, ``"(mean over
    mnist_c)"``, ...) to the probe-set indices it averages; ``detail`` adds
    per-probe-set rows, permutation tests and metric-vs-metric comparisons.
    """

    def __init__(self, bench: Any, metrics: list[str], probes: list[str], aggregates: dict[str, list[int]],
                 seed: int, detail: bool = True) -> None:
        self.bench = bench
        self.metrics = metrics
        self.probes = probes
        self.aggregates = aggregates
        self.seed = seed
        self.detail = detail

    def run(self, x: np.ndarray, y: np.ndarray, factors: list[dict[str, Any]], groups: list[str] | None = None,
            rename: dict[str, str] | None = None) -> list[Record]:
        """Records for ``x`` ``[Q, K, M, M]`` similarities (NaN = failed) against ``y`` ``[K, M, M]``."""
        names = resolve_groups(groups or self.bench.groups, factors)
        masks = pair_groups(factors, names)
        out: list[Record] = []
        for group, mask in masks.items():
            if int(mask.sum()) < self.bench.min_pairs:
                continue
            label = (rename or {}).get(group, group)
            out += self._group(x, y, mask, group_blocks(factors, group), label)
        return out

    # -- one group --------------------------------------------------------------------------------

    def _group(self, x: np.ndarray, y: np.ndarray, mask: np.ndarray, blocks: Any, group: str) -> list[Record]:
        from scipy.stats import rankdata

        bench = self.bench
        m = x.shape[-1]
        iu, ju, cluster_of_pair, n_units = stats.resampling_units(m, mask, blocks, _MIN_BLOCKS)
        n = len(iu)
        failed = ~np.isfinite(x[:, :, iu, ju]).all(axis=-1)  # [Q, K]
        x0 = np.where(np.isfinite(x), x, 0.0)
        xv, yv = x0[:, :, iu, ju], y[:, iu, ju]  # [Q, K, P], [K, P]
        # A probe set on which every pair of the group agrees equally (a corruption that sends every
        # model to one class) says nothing about any metric: r is undefined there, not 0, so the
        # probe set leaves every mean of this group instead of pulling all metrics towards 0
        flat = np.ptp(yv, axis=-1) <= 1e-12 if n else np.zeros(len(self.probes), dtype=bool)  # [K]
        failed = failed | flat[None, :]
        r = stats.row_pearson(xv, yv[None])  # [Q, K]
        xr, yr = rankdata(xv, axis=-1), rankdata(yv, axis=-1)
        rho = stats.row_pearson(xr, yr[None])
        r[failed], rho[failed] = np.nan, np.nan
        few = n_units < bench.min_clusters
        records: list[Record] = []

        def add(stat: str, value: float, metric: str = "", probe: str = "", **kw: Any) -> None:
            records.append(Record(bench.name, stat, float(value), metric=metric, probe_set=probe, group=group,
                                  n=kw.pop("n", n), **kw))

        add("pairs", n)
        add("clusters", n_units)
        add("few_clusters", float(few))
        add("min_clusters", bench.min_clusters)
        add("tie_margin", bench.tie_margin)
        for k in np.flatnonzero(flat):
            add("agreement_constant", float(yv[k, 0]), probe=self.probes[k])

        boot = jack = null = None
        spearman: tuple[np.ndarray, np.ndarray] | None = None
        if bench.n_bootstrap:
            counts = stats.bootstrap_counts(n_units, bench.n_bootstrap, numpy_rng(self.seed, "bootstrap", group))
            boot = stats.bootstrap_replicates(xv, yv, counts, iu, ju, cluster_of_pair)
            boot[:, failed] = np.nan
            weights = stats.jackknife_weights(iu, ju, cluster_of_pair, n_units)
            jack = stats.weighted_correlations(xv, yv, weights)
            jack[:, failed] = np.nan
            if self.claims:
                # Spearman's rho under the same resamples: Pearson of the pairs' ranks (ranked once on the
                # whole group, the usual rank-then-resample approximation), so the seed's two correlations
                # get the same model-level test
                boot_rho = stats.bootstrap_replicates(xr, yr, counts, iu, ju, cluster_of_pair)
                jack_rho = stats.weighted_correlations(xr, yr, weights)
                boot_rho[:, failed], jack_rho[:, failed] = np.nan, np.nan
                spearman = (boot_rho, jack_rho)
        if self.detail and bench.n_permutations:
            # blocks keep a single-factor group mapped onto itself under relabelling
            _, null = stats.mantel_null(x0, y, mask, blocks, bench.n_permutations,
                                                    numpy_rng(self.seed, "mantel", group))
            null[:, failed] = np.nan

        if self.detail:
            self._per_probe_set(add, r, rho, xv, yv, n, boot, jack, null)
        for label, subset in self.aggregates.items():
            sets = self._aggregate(add, label, subset, r, rho, failed, xv, yv, n, boot, jack, null, few)
            if sets is not None and spearman is not None:
                self._claims(add, label, "pearson", mean_z(r, failed, subset), sets, few)
                z_rho = mean_z(rho, failed, subset)
                rho_sets = ranking.rank_sets(z_rho, mean_z(spearman[0], failed, subset),
                                             mean_z(spearman[1], failed, subset), level=bench.level,
                                             margin=bench.tie_margin)
                self._claims(add, label, "spearman", z_rho, rho_sets, few)
        return records

    @property
    def claims(self) -> bool:
        """Whether this analysis tests the benchmark's ``focus`` metric against its ``rivals``."""
        return bool(self.detail and self.bench.focus and self.bench.focus in self.metrics
                    and any(r in self.metrics for r in self.bench.rivals))

    def _claims(self, add: Any, label: str, correlation: str, z: np.ndarray, sets: ranking.RankSets,
                few: bool) -> None:
        """The focus metric against each rival: difference, its simultaneous interval on the Fisher-z
        scale, the step-down adjusted p of either direction (the same family as the rank sets), and
        the verdict: +1 the focus is better (claim reproduced), -1 the rival is (reversed), 0 neither."""
        bench = self.bench
        f = self.metrics.index(bench.focus)
        for rival in bench.rivals:
            if rival not in self.metrics or not (np.isfinite(z[f]) and np.isfinite(z[self.metrics.index(rival)])):
                continue
            j = self.metrics.index(rival)
            d, se = float(z[f] - z[j]), float(sets.se[f, j])
            kw = {"model_b": rival}
            add(f"claim_{correlation}_diff", np.tanh(z[f]) - np.tanh(z[j]), bench.focus, label, **kw)
            add(f"claim_{correlation}_z_diff", d, bench.focus, label, **kw)
            if np.isfinite(se) and np.isfinite(sets.critical):
                add(f"claim_{correlation}_z_ci_low", d - sets.critical * se, bench.focus, label, **kw)
                add(f"claim_{correlation}_z_ci_high", d + sets.critical * se, bench.focus, label, **kw)
            better, worse = sets.pair_p[f, j], sets.pair_p[j, f]
            add(f"claim_{correlation}_p_better", float(better) if np.isfinite(better) else 1.0, bench.focus, label, **kw)
            add(f"claim_{correlation}_p_worse", float(worse) if np.isfinite(worse) else 1.0, bench.focus, label, **kw)
            if not few:
                verdict = 1.0 if sets.beats[f, j] else (-1.0 if sets.beats[j, f] else 0.0)
                add(f"claim_{correlation}_verdict", verdict, bench.focus, label, **kw)

    def _per_probe_set(self, add: Any, r: np.ndarray, rho: np.ndarray, xv: np.ndarray, yv: np.ndarray, n: int,
                       boot: Any, jack: Any, null: Any) -> None:
        q_bad = self.bench.bad_fraction_quantile
        for q, metric in enumerate(self.metrics):
            for k, probe in enumerate(self.probes):
                if not np.isfinite(r[q, k]):
                    continue
                add("pearson_r", r[q, k], metric, probe)
                add("spearman_rho", rho[q, k], metric, probe)
                lo, hi = stats.fisher_interval(r[q, k], n)
                add("pearson_indep_ci_low", lo, metric, probe)
                add("pearson_indep_ci_high", hi, metric, probe)
                lo, hi = stats.bonett_wright_interval(rho[q, k], n)
                add("spearman_indep_ci_low", lo, metric, probe)
                add("spearman_indep_ci_high", hi, metric, probe)
                if jack is not None:
                    se = float(stats.jackknife_se(np.arctanh(np.clip(jack[:, q, k], -stats._R_CLIP, stats._R_CLIP))))
                    half = ranking.interval_quantile(jack.shape[0]) * se
                    z_qk = np.arctanh(np.clip(r[q, k], -stats._R_CLIP, stats._R_CLIP))
                    add("pearson_ci_low", np.tanh(z_qk - half), metric, probe)
                    add("pearson_ci_high", np.tanh(z_qk + half), metric, probe)
                    add("pearson_jack_se", se, metric, probe)
                if null is not None:
                    add("pearson_perm_p", stats.permutation_p(float(r[q, k]), null[:, q, k]), metric, probe)
                bad = stats.bad_fraction(xv[q, k], yv[k], q_bad)
                add("bad_fraction", bad.fraction, metric, probe)
                add("bad_fraction_chance", bad.chance, metric, probe)
                add("close_bad_fraction", bad.close_fraction, metric, probe)
                add("close_bad_fraction_chance", bad.close_chance, metric, probe)

    def _aggregate(self, add: Any, label: str, subset: list[int], r: np.ndarray, rho: np.ndarray, failed: np.ndarray,
                   xv: np.ndarray, yv: np.ndarray, n: int, boot: Any, jack: Any, null: Any,
                   few: bool) -> ranking.RankSets | None:
        bench = self.bench
        z = mean_z(r, failed, subset)  # [Q]
        z_rho = mean_z(rho, failed, subset)
        ok = np.isfinite(z)
        if not ok.any():
            return None
        q_bad = bench.bad_fraction_quantile
        for q, metric in enumerate(self.metrics):
            if not ok[q]:
                continue
            use = [k for k in subset if not failed[q, k]]
            add("pearson_r", np.tanh(z[q]), metric, label)
            add("spearman_rho", np.tanh(z_rho[q]), metric, label)
            add("probe_sets", len(use), metric, label)
            lo, hi = stats.fisher_interval(float(np.tanh(z[q])), n)
            add("pearson_indep_ci_low", lo, metric, label)
            add("pearson_indep_ci_high", hi, metric, label)
            lo, hi = stats.bonett_wright_interval(float(np.tanh(z_rho[q])), n)
            add("spearman_indep_ci_low", lo, metric, label)
            add("spearman_indep_ci_high", hi, metric, label)
            bads = [stats.bad_fraction(xv[q, k], yv[k], q_bad) for k in use]
            for stat in ("fraction", "chance", "close_fraction", "close_chance"):
                name = {"fraction": "bad_fraction", "chance": "bad_fraction_chance",
                        "close_fraction": "close_bad_fraction", "close_chance": "close_bad_fraction_chance"}[stat]
                add(name, float(np.mean([getattr(b, stat) for b in bads])), metric, label)
            if null is not None:
                add("pearson_perm_p", stats.permutation_p(float(z[q]), mean_z(null[:, q:q + 1], failed[q:q + 1],
                                                                            subset)[:, 0]), metric, label)
        from scipy.stats import rankdata

        for q, rank in zip(np.flatnonzero(ok), rankdata(-z_rho[ok], method="min"), strict=True):
            add("rank_spearman", rank, self.metrics[q], label)
        if boot is None:
            for q, rank in zip(np.flatnonzero(ok), rankdata(-z[ok], method="min"), strict=True):
                add("rank", rank, self.metrics[q], label)
            return None
        zb = mean_z(boot, failed, subset)  # [B, Q]
        zj = mean_z(jack, failed, subset)  # [U, Q]
        units = zj.shape[0]
        se = stats.jackknife_se(zj)
        half = ranking.interval_quantile(units) * se
        for q in np.flatnonzero(ok):
            metric = self.metrics[q]
            add("pearson_ci_low", np.tanh(z[q] - half[q]), metric, label)
            add("pearson_ci_high", np.tanh(z[q] + half[q]), metric, label)
            add("pearson_jack_se", float(se[q]), metric, label)
        sets = ranking.rank_sets(z, zb, zj, level=bench.level, margin=bench.tie_margin)
        for q in np.flatnonzero(ok):
            metric = self.metrics[q]
            add("rank", sets.rank[q], metric, label)
            add("p_rank_first", sets.p_first[q], metric, label)
            if few:  # too few units for a verdict: no rank sets, best set or marks
                continue
            add("rank_set_low", sets.low[q], metric, label)
            add("rank_set_high", sets.high[q], metric, label)
            add("in_best_set", float(sets.in_best[q]), metric, label)
            if sets.beaten_by[q] >= 0:
                other = self.metrics[sets.beaten_by[q]]
                add("worse_p", sets.mark_p[q], metric, label, model_b=other)
                add("worse_diff", np.tanh(z[sets.beaten_by[q]]) - np.tanh(z[q]), metric, label, model_b=other)
        if not few:
            add("best_set_size", float(sets.in_best[ok].sum()), "", label)
        if self.detail and label == ALL_PROBES and not few:
            self._comparisons(add, z, sets, ok)
        return sets

    def _comparisons(self, add: Any, z: np.ndarray, sets: ranking.RankSets, ok: np.ndarray) -> None:
        """Every unordered metric pair (suite order): the difference, its jackknife SE and the
        step-down adjusted p of the same family of tests the rank sets come from."""
        pairs = [(a, b) for i, a in enumerate(np.flatnonzero(ok)) for b in np.flatnonzero(ok)[i + 1:]]
        for a, b in pairs:
            ma, mb = self.metrics[a], self.metrics[b]
            kw = {"model_a": ma, "model_b": mb}
            add("pearson_diff", np.tanh(z[a]) - np.tanh(z[b]), ma, ALL_PROBES, **kw)
            add("z_diff_jack_se", float(sets.se[a, b]), ma, ALL_PROBES, **kw)
            p = np.nanmin([sets.pair_p[a, b], sets.pair_p[b, a], np.inf])
            add("pearson_diff_adj_p", float(p) if np.isfinite(p) else 1.0, ma, ALL_PROBES, **kw)
