"""Functional agreement (Ding et al. 2021; seed 001 §2.4-2.5, §3.2-3.3, Fig. 3-4).

Does a metric's similarity track what two models *do*?  For every metric and
probe set we correlate, over unordered model pairs, the metric's similarity
(oriented so higher = more similar; asymmetric metrics are symmetrised as
``(S + S^T)/2``) with the fraction of probe inputs on which the two models'
predictions agree.  Pairs are grouped by which factor differs: ``"all"``
pairs, and for each factor (seed, epoch, arch, strategy, ...) the pairs that
differ in exactly that factor and agree in every other.

Statistics (:mod:`simbench.stats`): Pearson r and Spearman rho with Fisher-z
95 % intervals and two-sided p; for r also a Mantel permutation p and a
model-level bootstrap interval, which account for pairs that share a model
(the Fisher-z numbers treat pairs as independent).  The permutations relabel
the models (rows and columns together) of one matrix against the other; in a
single-factor group only relabellings that map the blocks of models sharing
every other factor onto each other are used, so the group maps onto itself.
The bootstrap resamples models with replacement and drops self-pairs ("all"
pairs), or resamples those blocks (a cluster bootstrap: pairs from different
blocks share no model) when a group has at least 4.
Probe sets are aggregated by the mean Fisher z; the aggregate's permutation
p and bootstrap interval apply one relabelling / resample to every probe set
at once.  Metrics are ranked per group by the aggregate r (rank 1 = best).
Pairs of metrics are compared with a dependent-correlation test (Steiger
1980 Z*, or Meng, Rosenthal & Rubin 1992), since both correlate with the
same agreement vector, and with the bootstrap interval of the difference
(the permutations and resamples of a group are shared by all metrics).  Ding
et al.'s *bad fraction*: of the 20 % of pairs the metric calls closest, the
share that are among the 20 % least agreeing (``bad_fraction_quantile``).

With ``similarity_probe_set = "clean"`` the similarity is measured on that
probe set only and correlated with the agreement on every probe set: does
similarity measured in distribution predict agreement out of distribution?

Record scheme (``benchmark`` = this benchmark's label, one number per row)
--------------------------------------------------------------------------

Per metric x group x probe set; ``probe_set = "(mean over probe sets)"`` for
the aggregate; ``group`` = ``"all"`` or a factor name; ``n`` = pairs:

=========================================  ================================================
statistic                                  value
=========================================  ================================================
``pearson_r``, ``spearman_rho``            correlation with agreement (aggregate: mean z)
``pearson_ci_low`` / ``_ci_high``          Fisher-z 95 % interval (aggregate: same n)
``pearson_p``, ``spearman_p``              two-sided Fisher-z p
``spearman_ci_low`` / ``_ci_high``         Fisher-z 95 % interval of rho
``pearson_perm_p``                         Mantel permutation p of r (two-sided)
``pearson_boot_ci_low`` / ``_ci_high``     model-bootstrap 95 % percentile interval of r
``bad_fraction``                           Ding et al.'s bad fraction (aggregate: mean)
``bad_fraction_chance``                    share of all pairs that are "far" (its chance level)
``probe_sets``                             aggregate only: number of probe sets averaged
``rank``, ``rank_spearman``                aggregate only: rank of the metric in its group
=========================================  ================================================

A metric that failed on a probe set gets one row ``pearson_r = NaN``,
``group = "all"``, ``status = "failed"`` with the error.

Metric comparisons: for every unordered metric pair (first metric ``a`` in
suite order), group and probe set (and the aggregate), one row per statistic.  ``metric`` and
``model_a`` hold ``a``, ``model_b`` holds the partner metric ``b``; these rows
are the only ones with a non-empty ``model_b``.  ``<test>`` is ``steiger`` or
``meng`` (parameter ``comparison_test``):

=========================================  ================================================
``pearson_diff``, ``spearman_diff``        r(a) - r(b), rho(a) - rho(b)
``similarity_r``                           Pearson r between a's and b's similarities
``pearson_<test>_z`` / ``_p``              dependent-correlation test of r(a) = r(b)
``spearman_<test>_z`` / ``_p``             the same test applied to the rho's
``pearson_diff_boot_ci_low`` / ``_high``   model-bootstrap interval of r(a) - r(b)
=========================================  ================================================

The aggregate comparison applies the test to the mean-z correlations over the
probe sets both metrics have, with the same n: conservative, since averaging
over probe sets shrinks sampling error.  When ``similarity_probe_set`` is set,
one row ``statistic = "similarity_measured_on"``, ``value = 1``, ``probe_set``
= that probe set records it.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field

import simbench
from simbench.errors import MeasurementFailed, ParamError, UserError
from simbench.types import Record, Table

ALL_PROBES = "(mean over probe sets)"
STATS = ("pearson_r", "pearson_ci_low", "pearson_ci_high", "pearson_p",
         "spearman_rho", "spearman_ci_low", "spearman_ci_high", "spearman_p")
ROBUST_STATS = ("pearson_perm_p", "pearson_boot_ci_low", "pearson_boot_ci_high")
BAD_STATS = ("bad_fraction", "bad_fraction_chance")
TESTS = ("steiger", "meng")
#: scatter-plot label of a pair that differs in more than one factor
SEVERAL = "several"
#: ``groups`` entry that expands to every factor that varies in the zoo
EVERY_FACTOR = "*"


def factor_names(factors: Sequence[dict[str, Any]]) -> list[str]:
    """Factor keys that take more than one value over the zoo, in order of first appearance."""
    keys = list(dict.fromkeys(k for f in factors for k in f))
    return [k for k in keys if len({repr(f.get(k)) for f in factors}) > 1]


def resolve_groups(names: Iterable[str], factors: Sequence[dict[str, Any]]) -> list[str]:
    """Expand ``"*"`` to every varying factor; keep order, drop duplicates."""
    out: list[str] = []
    for name in names:
        out.extend(factor_names(factors) if name == EVERY_FACTOR else [name])
    return list(dict.fromkeys(out))


def pair_groups(factors: list[dict[str, Any]], names: Iterable[str]) -> dict[str, Any]:
    """Boolean masks over the strict upper triangle: which pairs belong to each group.

    ``"all"`` is every unordered pair; a factor name selects the pairs that
    differ in exactly that factor and agree in every other.  Names that are
    no factor of the zoo are left out.
    """
    import numpy as np

    m = len(factors)
    iu, ju = np.triu_indices(m, k=1)
    keys = list(dict.fromkeys(k for f in factors for k in f))
    values = {k: np.array([repr(f.get(k)) for f in factors]) for k in keys}
    differs = {k: values[k][iu] != values[k][ju] for k in keys}
    n_diff = sum(differs.values()) if differs else np.zeros(len(iu), dtype=int)
    out: dict[str, Any] = {}
    for name in names:
        if name == "all":
            out[name] = np.ones(len(iu), dtype=bool)
        elif name in differs:
            out[name] = differs[name] & (n_diff == 1)
    return out


def group_blocks(factors: list[dict[str, Any]], name: str) -> Any:
    """Block labels of the models for a group's permutation test and bootstrap (None for ``"all"``).

    The pairs that differ only in factor ``name`` are exactly the pairs inside
    the blocks of models that share every other factor.  Relabellings that
    map blocks onto blocks map the group onto itself, and pairs from
    different blocks share no model, so blocks are the bootstrap's units.
    """
    import numpy as np

    if name == "all":
        return None
    keys = sorted({k for f in factors for k in f} - {name})
    return np.array([repr([f.get(k) for k in keys]) for f in factors])


def _numpy(matrix: Any) -> Any:
    import numpy as np

    if hasattr(matrix, "detach"):
        matrix = matrix.detach().cpu().numpy()
    return np.asarray(matrix, dtype=np.float64)


def _seed(seed: int, *tags: str) -> Any:
    """A generator from the suite seed and string tags (stable across Python versions)."""
    import numpy as np

    return np.random.default_rng([int(seed) & 0xFFFFFFFF, *(zlib.crc32(t.encode()) for t in tags)])


@dataclass
class _Cell:
    """What one metric x group produced, kept for ranks and comparisons."""

    n: int
    probes: list[str]
    r: dict[str, float]
    rho: dict[str, float]
    x: dict[str, Any]  # probe set -> similarity over the group's pairs
    ranks: dict[str, Any]  # probe set -> ranks of those similarities (for Spearman)
    boot: dict[str, Any]  # probe set -> bootstrap replicates of r (common draws across metrics)
    r_all: float = float("nan")
    rho_all: float = float("nan")


@dataclass(frozen=True)
class FunctionalAgreement(simbench.Benchmark):
    """Correlation between metric similarity and prediction agreement over model pairs.

    Seed 001 §2.4-2.5 and Fig. 3-4 (after Ding et al. 2021): per metric x
    pair group x probe set, Pearson r and Spearman rho with Fisher-z
    intervals, a Mantel permutation p and a model-bootstrap interval for r,
    Ding et al.'s bad fraction; aggregated over probe sets by the mean Fisher
    z; ranks per group; pairwise metric comparisons with a dependent-
    correlation test.  See the module docstring for the record scheme.

    Parameters: ``groups`` (``"all"``, factor names, ``"*"`` = every factor
    that varies in the zoo), ``min_pairs`` (smaller groups are skipped),
    ``n_permutations`` / ``n_bootstrap`` (0 turns either off),
    ``comparison_test`` (``"steiger"`` or ``"meng"``),
    ``bad_fraction_quantile`` (Ding et al. use 0.2), ``similarity_probe_set``
    (measure similarity on this probe set only; empty = on each probe set).
    """

    name = "functional_agreement"
    description = "Pearson/Spearman correlation of metric similarity with prediction agreement (Ding et al. 2021)"
    version = "2"

    groups: tuple[str, ...] = ("all", EVERY_FACTOR)
    min_pairs: Annotated[int, Field(ge=3)] = 4
    n_permutations: Annotated[int, Field(ge=0)] = 999
    n_bootstrap: Annotated[int, Field(ge=0)] = 500
    comparison_test: Literal["steiger", "meng"] = "steiger"
    bad_fraction_quantile: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.2
    similarity_probe_set: str = ""

    def __post_init__(self) -> None:
        if not self.groups:
            raise ParamError("groups", "name at least one group ('all', a factor name, or '*')")

    # -- evaluation -----------------------------------------------------------------------

    def evaluate(self, ctx: simbench.BenchmarkContext) -> list[Record]:
        import numpy as np

        from simbench import stats

        factors = [dict(s.factors) for s in ctx.specs]
        names = resolve_groups(self.groups, factors)
        masks = {g: m for g, m in pair_groups(factors, names).items() if int(m.sum()) >= self.min_pairs}
        probes = list(ctx.probe_sets)
        if self.similarity_probe_set and self.similarity_probe_set not in probes:
            raise UserError(f"benchmark {self.name}: similarity_probe_set {self.similarity_probe_set!r} is not a "
                            f"probe set of this suite; it has: {', '.join(probes)}")
        agreement = {p: _numpy(ctx.agreement(p)) for p in probes}
        records: list[Record] = []
        if self.similarity_probe_set:
            records.append(Record(self.name, "similarity_measured_on", 1.0, probe_set=self.similarity_probe_set))
        sims: dict[str, dict[str, Any]] = {}
        for metric in ctx.metrics:
            sims[metric] = {}
            for probe in probes:
                try:
                    s = _numpy(ctx.similarity(metric, self.similarity_probe_set or probe))
                except MeasurementFailed as exc:
                    records.append(Record(self.name, "pearson_r", float("nan"), metric=metric, probe_set=probe,
                                          group="all", status="failed", error=str(exc)))
                    continue
                sims[metric][probe] = 0.5 * (s + s.T)  # unordered pairs: symmetrise asymmetric metrics
        metrics = [m for m in ctx.metrics if sims[m]]
        cells: dict[str, dict[str, _Cell]] = {g: {} for g in masks}
        if not metrics:
            return records
        # every metric x probe set as one batch (NaN where a metric failed), so the permutations and
        # bootstrap draws of a group are shared by all metrics: common random numbers for comparisons
        m = len(ctx.specs)
        x = np.full((len(metrics), len(probes), m, m), np.nan)
        for q, metric in enumerate(metrics):
            for k, probe in enumerate(probes):
                if probe in sims[metric]:
                    x[q, k] = sims[metric][probe]
        y = np.stack([agreement[p] for p in probes])
        for group, mask in masks.items():
            blocks = group_blocks(factors, group)
            null = boot = None
            if self.n_permutations:
                observed, null = stats.mantel_null(x, y, mask, blocks, self.n_permutations,
                                                   _seed(ctx.seed, "mantel", group))
            if self.n_bootstrap:
                boot = stats.bootstrap_correlations(x, y, mask, self.n_bootstrap, _seed(ctx.seed, "bootstrap", group),
                                                    blocks)
            for q, metric in enumerate(metrics):
                ok = [k for k, p in enumerate(probes) if p in sims[metric]]
                perm = None if null is None else (observed[q, ok], null[:, q, ok])
                cells[group][metric] = self._metric_group(
                    metric, group, mask, [probes[k] for k in ok], sims[metric], agreement, perm,
                    None if boot is None else boot[:, q, ok], records)
        records += self._ranks(cells)
        records += self._comparisons(cells, metrics)
        return records

    def _metric_group(self, metric: str, group: str, mask: Any, ok: list[str], sims: dict[str, Any],
                      agreement: dict[str, Any], perm: tuple[Any, Any] | None, boot: Any,
                      records: list[Record]) -> _Cell:
        """Every statistic of one metric in one group, per probe set and aggregated.

        ``ok`` names the probe sets the metric has; ``perm`` is ``(observed [K], null [P, K])``
        from the Mantel permutations and ``boot`` the bootstrap replicates ``[B, K]`` over them.
        """
        import numpy as np

        from simbench import stats

        from scipy.stats import rankdata

        n = int(mask.sum())
        xs = np.stack([stats.upper(sims[p])[mask] for p in ok])  # [K, n]
        ys = np.stack([stats.upper(agreement[p])[mask] for p in ok])
        x_ranks = rankdata(xs, axis=-1)
        rs, rhos = stats.row_pearson(xs, ys), stats.row_pearson(x_ranks, rankdata(ys, axis=-1))
        cell = _Cell(n, ok, {}, {}, dict(zip(ok, xs, strict=True)), dict(zip(ok, x_ranks, strict=True)), {})

        def add(stat: str, value: float, probe: str) -> None:
            records.append(Record(self.name, stat, float(value), metric=metric, probe_set=probe, group=group, n=n))

        bads, chances = [], []
        for k, p in enumerate(ok):
            r, rho = stats.correlation_from_r(rs[k], n), stats.correlation_from_r(rhos[k], n)
            for stat, value in zip(STATS, (r.r, r.ci_low, r.ci_high, r.p, rho.r, rho.ci_low, rho.ci_high, rho.p),
                                   strict=True):
                add(stat, value, p)
            bad = stats.bad_fraction(xs[k], ys[k], self.bad_fraction_quantile)
            add("bad_fraction", bad.fraction, p)
            add("bad_fraction_chance", bad.chance, p)
            bads.append(bad.fraction)
            chances.append(bad.chance)
            cell.r[p], cell.rho[p] = r.r, rho.r
        cell.r_all = stats.mean_fisher_z([cell.r[p] for p in ok])
        cell.rho_all = stats.mean_fisher_z([cell.rho[p] for p in ok])
        agg_r, agg_rho = stats.correlation_from_r(cell.r_all, n), stats.correlation_from_r(cell.rho_all, n)
        for stat, value in zip(STATS, (agg_r.r, agg_r.ci_low, agg_r.ci_high, agg_r.p, agg_rho.r, agg_rho.ci_low,
                                       agg_rho.ci_high, agg_rho.p), strict=True):
            add(stat, value, ALL_PROBES)
        add("bad_fraction", float(np.mean(bads)), ALL_PROBES)
        add("bad_fraction_chance", float(np.mean(chances)), ALL_PROBES)
        add("probe_sets", float(len(ok)), ALL_PROBES)
        if perm is not None:
            observed, null = perm
            for k, p in enumerate(ok):
                add("pearson_perm_p", stats.permutation_p(float(observed[k]), null[:, k]), p)
            # the aggregate's null: the same relabelling applied to every probe set
            add("pearson_perm_p", stats.permutation_p(float(stats.aggregate_replicates(observed)),
                                                      stats.aggregate_replicates(null)), ALL_PROBES)
        if boot is not None:
            for k, p in enumerate(ok):
                cell.boot[p] = boot[:, k]
                lo, hi = stats.percentile_interval(boot[:, k])
                add("pearson_boot_ci_low", lo, p)
                add("pearson_boot_ci_high", hi, p)
            lo, hi = stats.percentile_interval(stats.aggregate_replicates(boot))
            add("pearson_boot_ci_low", lo, ALL_PROBES)
            add("pearson_boot_ci_high", hi, ALL_PROBES)
        return cell

    def _ranks(self, cells: dict[str, dict[str, _Cell]]) -> list[Record]:
        from scipy.stats import rankdata

        out = []
        for group, by_metric in cells.items():
            metrics = list(by_metric)
            if not metrics:
                continue
            for stat, attr in (("rank", "r_all"), ("rank_spearman", "rho_all")):
                values = [-getattr(by_metric[m], attr) for m in metrics]
                for metric, rank in zip(metrics, rankdata(values, method="min"), strict=True):
                    out.append(Record(self.name, stat, float(rank), metric=metric, probe_set=ALL_PROBES,
                                      group=group, n=by_metric[metric].n))
        return out

    def _comparisons(self, cells: dict[str, dict[str, _Cell]], order: list[str]) -> list[Record]:
        """Dependent-correlation tests and bootstrap differences for every unordered metric pair."""
        import numpy as np

        from simbench import stats

        out: list[Record] = []
        test = self.comparison_test
        for group, by_metric in cells.items():
            metrics = [m for m in order if m in by_metric]
            for i, a in enumerate(metrics):
                for b in metrics[i + 1:]:
                    ca, cb = by_metric[a], by_metric[b]
                    common = [p for p in ca.probes if p in cb.probes]
                    if not common:
                        continue
                    n = ca.n

                    def add(stat: str, value: float, probe: str, a: str = a, b: str = b, n: int = n) -> None:
                        out.append(Record(self.name, stat, float(value), metric=a, probe_set=probe, group=group,
                                          model_a=a, model_b=b, n=n))

                    r_ab = stats.row_pearson(np.stack([ca.x[p] for p in common]), np.stack([cb.x[p] for p in common]))
                    rho_ab = stats.row_pearson(np.stack([ca.ranks[p] for p in common]),
                                               np.stack([cb.ranks[p] for p in common]))
                    rows = [(p, ca.r[p], cb.r[p], r_ab[k], ca.rho[p], cb.rho[p], rho_ab[k])
                            for k, p in enumerate(common)]
                    mz = stats.mean_fisher_z
                    rows.append((ALL_PROBES, *(mz([row[k] for row in rows]) for k in range(1, 7))))
                    for p, ra, rb, rab, rhoa, rhob, rhoab in rows:
                        add("pearson_diff", ra - rb, p)
                        add("spearman_diff", rhoa - rhob, p)
                        add("similarity_r", rab, p)
                        t = stats.compare_dependent(ra, rb, rab, n, test)
                        add(f"pearson_{test}_z", t.z, p)
                        add(f"pearson_{test}_p", t.p, p)
                        t = stats.compare_dependent(rhoa, rhob, rhoab, n, test)
                        add(f"spearman_{test}_z", t.z, p)
                        add(f"spearman_{test}_p", t.p, p)
                    if ca.boot and cb.boot:
                        ba = np.stack([ca.boot[p] for p in common], axis=1)
                        bb = np.stack([cb.boot[p] for p in common], axis=1)
                        for k, p in enumerate(common):
                            lo, hi = stats.percentile_interval(ba[:, k] - bb[:, k])
                            add("pearson_diff_boot_ci_low", lo, p)
                            add("pearson_diff_boot_ci_high", hi, p)
                        lo, hi = stats.percentile_interval(stats.aggregate_replicates(ba)
                                                           - stats.aggregate_replicates(bb))
                        add("pearson_diff_boot_ci_low", lo, ALL_PROBES)
                        add("pearson_diff_boot_ci_high", hi, ALL_PROBES)
        return out

    # -- leaderboard tables -------------------------------------------------------------------

    @classmethod
    def tables(cls, records: Any) -> list[Table]:
        """Ranking (headline), per-group ranks, group rank overview, metric comparisons,
        bad fraction, per-probe-set r, and every metric x group x probe set."""
        import pandas as pd

        from simbench import stats

        frame = _frame(records)
        failed = frame[(frame["status"] == "failed") & (frame["metric"] != "")]
        per_metric = frame[(frame["status"] == "ok") & (frame["model_b"] == "") & (frame["metric"] != "")]
        compare = frame[(frame["status"] == "ok") & (frame["model_b"] != "")]
        groups = list(dict.fromkeys(per_metric["group"]))
        headline_group = "all" if "all" in groups else (groups[0] if groups else "all")
        measured_on = frame.loc[frame["statistic"] == "similarity_measured_on", "probe_set"]
        on_note = (f" Similarity measured on '{measured_on.iloc[0]}' only; agreement on each probe set."
                   if len(measured_on) else "")
        test = _comparison_test(compare)
        agg = _ranked(_wide(per_metric[per_metric["probe_set"] == ALL_PROBES], ["metric", "group"]))
        for col in (*STATS, "rank", "rank_spearman", "probe_sets", "bad_fraction"):
            if col not in agg:
                agg[col] = float("nan")
        tables: list[Table] = []

        # 1. headline ranking
        head = agg[agg["group"] == headline_group].copy()
        for metric in sorted(set(failed["metric"]) - set(head["metric"])):
            head = pd.concat([head, pd.DataFrame([{"metric": metric, "group": headline_group}])], ignore_index=True)
        head = head.sort_values(["pearson_r", "metric"], ascending=[False, True], na_position="last")
        head = head.reset_index(drop=True)
        head["rank"] = _as_int(head["rank"])
        best = head["metric"].iloc[0] if len(head) and pd.notna(head["pearson_r"].iloc[0]) else None
        vs = _versus(compare, headline_group, best, f"pearson_{test}_p") if best else {}
        head["vs_best_p"] = [vs.get(m, float("nan")) for m in head["metric"]]
        head["vs_best"] = ["(best)" if m == best else stats.significance_mark(vs.get(m, float("nan")))
                           for m in head["metric"]]
        head["probe_sets"] = _as_int(head["probe_sets"])
        errors = failed.groupby("metric")["error"].first()
        head["status"] = [f"FAILED on {int((failed['metric'] == m).sum())} probe set(s): {errors[m]}"
                          if m in errors.index else "ok" for m in head["metric"]]
        cols = ["rank", "metric", "pearson_r", "pearson_ci_low", "pearson_ci_high", "pearson_boot_ci_low",
                "pearson_boot_ci_high", "pearson_perm_p", "spearman_rho", "vs_best", "bad_fraction", "n",
                "probe_sets", "status"]
        tables.append(Table(
            "ranking", f"Ranking: correlation with functional agreement ({_group_label(headline_group)})",
            head[[c for c in cols if c in head.columns]],
            "Mean Fisher z over probe sets; higher is better; n = model pairs. ci = Fisher-z 95 % interval; "
            "boot_ci = model-level bootstrap 95 % interval; perm_p = Mantel permutation p (model labels permuted); "
            f"vs_best = {_test_label(test)} of r against the best metric (n.s., * p<0.05, ** p<0.01, *** p<0.001; "
            "p-values in the comparisons table); "
            "bad_fraction = share of the 20 % closest pairs (by the metric) that are among the 20 % least "
            "agreeing (Ding et al. 2021)." + on_note))

        # 2. per-group ranks with intervals
        long = agg.copy()
        long["group"] = pd.Categorical(long["group"], groups, ordered=True)
        long = long.sort_values(["group", "rank", "metric"]).reset_index(drop=True)
        long["group"] = long["group"].astype(str)
        for col in ("rank", "rank_spearman"):
            long[col] = _as_int(long[col])
        cols = ["group", "rank", "metric", "n", "pearson_r", "pearson_ci_low", "pearson_ci_high", "pearson_perm_p",
                "pearson_boot_ci_low", "pearson_boot_ci_high", "spearman_rho", "spearman_ci_low", "spearman_ci_high",
                "rank_spearman", "bad_fraction"]
        if len(groups) > 1:
            tables.append(Table("groups", "Per group: correlation with agreement by which factor differs",
                                long[[c for c in cols if c in long.columns]],
                                "Group 'all' = every pair; a factor name = the pairs that differ in exactly that "
                                "factor. Mean Fisher z over probe sets; ranks by Pearson r within the group."))
            ranks = long.pivot_table(index="metric", columns="group", values="rank", aggfunc="first")
            ranks = ranks[[g for g in groups if g in ranks.columns]]
            factor_cols = [g for g in ranks.columns if g != "all"] or list(ranks.columns)
            mean_rank = ranks[factor_cols].astype(float).mean(axis=1)
            for col in list(ranks.columns):
                ranks[col] = _as_int(ranks[col])
            ranks.insert(0, "mean_rank", mean_rank)
            ranks = ranks.sort_values("mean_rank").reset_index()
            ranks.columns.name = None
            tables.append(Table("group_ranks", "Rank of each metric per group (1 = highest Pearson r)", ranks,
                                "mean_rank averages the single-factor groups."))

        # 3. dependent comparisons (aggregate over probe sets)
        if len(compare):
            comp = _wide(compare[compare["probe_set"] == ALL_PROBES], ["group", "model_a", "model_b"])
            comp = comp.rename(columns={"model_a": "metric_a", "model_b": "metric_b"})
            r_of = agg.set_index(["metric", "group"])
            comp["pearson_r_a"] = [r_of["pearson_r"].get((a, g), float("nan"))
                                   for a, g in zip(comp["metric_a"], comp["group"], strict=True)]
            comp["pearson_r_b"] = [r_of["pearson_r"].get((b, g), float("nan"))
                                   for b, g in zip(comp["metric_b"], comp["group"], strict=True)]
            for kind in ("pearson", "spearman"):
                p_col = f"{kind}_{test}_p"
                if p_col in comp:
                    comp[f"{kind}_sig"] = [stats.significance_mark(p) for p in comp[p_col]]
            comp["group"] = pd.Categorical(comp["group"], groups, ordered=True)
            comp = comp.sort_values(["group", "metric_a", "metric_b"]).reset_index(drop=True)
            comp["group"] = comp["group"].astype(str)
            cols = ["group", "metric_a", "metric_b", "n", "pearson_r_a", "pearson_r_b", "pearson_diff", "similarity_r",
                    f"pearson_{test}_z", f"pearson_{test}_p", "pearson_sig", "pearson_diff_boot_ci_low",
                    "pearson_diff_boot_ci_high", "spearman_diff", f"spearman_{test}_z", f"spearman_{test}_p",
                    "spearman_sig"]
            tables.append(Table(
                "comparisons", f"Metric against metric: {_test_label(test)} (mean over probe sets)",
                comp[[c for c in cols if c in comp.columns]],
                "Both metrics correlate with the same agreement vector, so their correlations are dependent. "
                "diff = a - b; similarity_r = correlation of the two metrics over the pairs; "
                "sig: n.s., * p<0.05, ** p<0.01, *** p<0.001; diff_boot_ci = model-level bootstrap interval of the "
                "difference. The test on mean-z correlations uses the per-probe-set n (conservative). "
                "Per-probe-set comparisons are in the results."))

        # 4. bad fraction
        bad = agg.pivot_table(index="metric", columns="group", values="bad_fraction", aggfunc="first")
        if len(bad):
            bad = bad[[g for g in groups if g in bad.columns]]
            chance = agg.groupby("group")["bad_fraction_chance"].mean() if "bad_fraction_chance" in agg else None
            bad = bad.sort_values(headline_group if headline_group in bad.columns else bad.columns[0]).reset_index()
            bad.columns.name = None
            if chance is not None:
                row = {"metric": "(chance)", **{g: chance.get(g, float("nan")) for g in bad.columns if g != "metric"}}
                bad = pd.concat([bad, pd.DataFrame([row])], ignore_index=True)
            tables.append(Table("bad_fraction", "Bad fraction by group (lower is better; mean over probe sets)", bad,
                                "Share of the pairs a metric calls closest (top 20 % similarity) that are "
                                "functionally far (bottom 20 % agreement), Ding et al. 2021; '(chance)' is what a "
                                "metric unrelated to agreement scores."))

        # 5. per probe set (headline group)
        detail = _wide(per_metric[per_metric["probe_set"] != ALL_PROBES], ["metric", "group", "probe_set"])
        if len(detail):
            by_probe = detail[detail["group"] == headline_group].pivot_table(
                index="metric", columns="probe_set", values="pearson_r", aggfunc="first")
            probe_order = list(dict.fromkeys(per_metric["probe_set"]))
            by_probe = by_probe[[p for p in probe_order if p in by_probe.columns]]
            if by_probe.shape[1] > 1:
                by_probe = by_probe.reset_index()
                by_probe.columns.name = None
                tables.append(Table("probe_sets", f"Pearson r per probe set ({_group_label(headline_group)})",
                                    by_probe, "Correlation of similarity with agreement on each probe set." + on_note))

        # 6. everything
        cols = ["metric", "group", "probe_set", "n", *STATS, *ROBUST_STATS, *BAD_STATS]
        tables.append(Table("detail", "Every metric x group x probe set",
                            detail[[c for c in cols if c in detail.columns]] if len(detail) else detail,
                            "95 % intervals from Fisher z with standard error 1/sqrt(n-3); two-sided p; perm_p = "
                            "Mantel permutation p; boot_ci = model-level bootstrap interval." + on_note))
        return tables

    # -- plots --------------------------------------------------------------------------------

    @classmethod
    def plots(cls, records: Any, out_dir: Any, run: simbench.RunView | None = None) -> list[Any]:
        """Seed 001 Fig. 3-style bars (r and rho per group, intervals, significance against
        the best metric), a metric x probe-set heatmap of r, a bad-fraction heatmap and, given
        the run, a metric-vs-agreement scatter per pair group on the first probe set."""
        from . import _plots

        frame = _frame(records)
        per_metric = frame[(frame["status"] == "ok") & (frame["model_b"] == "") & (frame["metric"] != "")]
        if not len(per_metric):
            return []
        compare = frame[(frame["status"] == "ok") & (frame["model_b"] != "")]
        label = _plots.safe_name(str(frame["benchmark"].iloc[0]) or cls.name)
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        written = []
        agg = _ranked(_wide(per_metric[per_metric["probe_set"] == ALL_PROBES], ["metric", "group"]))
        groups = list(dict.fromkeys(per_metric["group"]))
        test = _comparison_test(compare)
        written.append(_correlation_figure(agg, compare, groups, test, out / f"{label}_correlations.png",
                                           title=f"{label}: correlation of metric similarity with agreement"))
        detail = _wide(per_metric[per_metric["probe_set"] != ALL_PROBES], ["metric", "group", "probe_set"])
        headline = "all" if "all" in groups else groups[0]
        sub = detail[detail["group"] == headline]
        if len(sub):
            probes = list(dict.fromkeys(per_metric["probe_set"]))
            grid = sub.pivot_table(index="metric", columns="probe_set", values="pearson_r", aggfunc="first")
            metrics = list(agg[agg["group"] == headline].sort_values("pearson_r", ascending=False)["metric"])
            grid = grid.reindex(index=[m for m in metrics if m in grid.index],
                                columns=[p for p in probes if p in grid.columns and p != ALL_PROBES])
            mean = agg[agg["group"] == headline].set_index("metric")["pearson_r"]
            grid["(mean, Fisher z)"] = [mean.get(m, float("nan")) for m in grid.index]
            written.append(_plots.heatmap(
                grid.to_numpy(), list(grid.index), list(grid.columns), out / f"{label}_probe_sets.png",
                title=f"Pearson r of similarity with agreement per probe set ({_group_label(headline)})",
                vmin=-1, vmax=1, cmap="RdBu_r", colorbar_label="Pearson r", missing_label="failed"))
        if "bad_fraction" in agg:
            grid = agg.pivot_table(index="metric", columns="group", values="bad_fraction", aggfunc="first")
            grid = grid.reindex(columns=[g for g in groups if g in grid.columns])
            if len(grid):
                chance = agg.groupby("group")["bad_fraction_chance"].mean() if "bad_fraction_chance" in agg else {}
                cols = [f"{g}\n(chance {chance.get(g, float('nan')):.2f})" for g in grid.columns]
                written.append(_plots.heatmap(
                    grid.to_numpy(), list(grid.index), cols, out / f"{label}_bad_fraction.png",
                    title="Bad fraction: closest pairs that disagree most (lower is better)",
                    vmin=0, vmax=max(0.5, float(grid.max().max()) if grid.size else 0.5), cmap="Reds",
                    colorbar_label="bad fraction"))
        if run is not None and run.specs:
            order = list(agg[agg["group"] == headline].sort_values("pearson_r", ascending=False)["metric"])
            probe = list(dict.fromkeys(per_metric["probe_set"]))[0]
            measured_on = frame.loc[frame["statistic"] == "similarity_measured_on", "probe_set"]
            figure = _scatter_figure(run, order, groups, probe, measured_on.iloc[0] if len(measured_on) else probe,
                                     out / f"{label}_scatter.png")
            if figure is not None:
                written.append(figure)
        return written


# -- helpers for tables and plots (records -> frames) -------------------------------------------


def _frame(records: Any) -> Any:
    """Records as a DataFrame with string columns normalised ('' for missing)."""
    from ._records import records_frame

    return records_frame(records)


def _scatter_figure(run: simbench.RunView, order: list[str], groups: list[str], probe: str, similarity_on: str,
                    path: Path) -> Path | None:
    """Metric similarity (x) against prediction agreement (y) over model pairs, one row per
    pair group and one column per metric, Pearson r in each panel (seed 001 Fig. 2 style)."""
    import numpy as np

    from simbench import stats

    from . import _plots

    agreement = run.pairs(probe)
    sims = agreement if similarity_on == probe else run.pairs(similarity_on)
    metrics = [m for m in order if m in sims.columns]
    if not metrics or not len(agreement):
        return None
    ids = [s.id for s in run.specs]
    factors = [dict(s.factors) for s in run.specs]
    masks = pair_groups(factors, factor_names(factors))
    labels = np.full(len(ids) * (len(ids) - 1) // 2, SEVERAL, dtype=object)
    for name, mask in masks.items():
        labels[mask] = name
    position = {model: i for i, model in enumerate(ids)}
    index = [_upper_index(position[a], position[b], len(ids)) for a, b in zip(agreement["model_a"],
                                                                              agreement["model_b"], strict=True)]
    pair_label = labels[index]
    sims = sims.set_index(["model_a", "model_b"]).reindex(list(zip(agreement["model_a"], agreement["model_b"],
                                                                   strict=True)))
    factor_groups = [g for g in groups if g != "all" and (pair_label == g).any()]
    rows = ["all", *factor_groups]
    hue = {**dict(zip(factor_groups, _plots.colors(len(factor_groups)), strict=True)), SEVERAL: "0.6"}
    plt = _plots.pyplot()
    fig, axes = plt.subplots(len(rows), len(metrics), figsize=(2.7 * len(metrics) + 0.6, 2.5 * len(rows) + 0.6),
                             squeeze=False, sharey="row")
    y_all = agreement["agreement"].to_numpy()
    for col, metric in enumerate(metrics):
        x_all = sims[metric].to_numpy()
        for row, group in enumerate(rows):
            ax = axes[row][col]
            keep = np.ones(len(x_all), dtype=bool) if group == "all" else pair_label == group
            x, y, g_keep = x_all[keep], y_all[keep], pair_label[keep]
            for g in ([*factor_groups, SEVERAL] if group == "all" else [group]):
                sel = g_keep == g
                if sel.any():
                    ax.scatter(x[sel], y[sel], s=8, alpha=0.6, color=hue.get(g, "grey"), linewidths=0,
                               label=g if (row == 0 and col == 0) else None)
            ok = np.isfinite(x) & np.isfinite(y)
            r = stats.row_pearson(x[ok][None], y[ok][None])[0] if ok.sum() >= 3 else float("nan")
            where = "all pairs" if group == "all" else f"differ only in {group}"
            ax.set_title(f"{metric} · {where}\nr = {r:.2f}, n = {int(ok.sum())}", fontsize=8)
            ax.tick_params(labelsize=7)
            if row == len(rows) - 1:
                ax.set_xlabel("similarity (higher = more similar)" + (f" on '{similarity_on}'" if similarity_on != probe else ""),
                              fontsize=8)
            if col == 0:
                ax.set_ylabel("prediction agreement", fontsize=8)
    if factor_groups:
        fig.legend(loc="upper right", fontsize=7, title="pair differs in", title_fontsize=7, markerscale=2)
    fig.suptitle(f"Metric similarity vs prediction agreement on '{probe}' (one point per model pair)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 0.92 if factor_groups else 1, 0.97))
    return _plots.save(fig, path)


def _upper_index(i: int, j: int, m: int) -> int:
    """Position of pair ``(i, j)``, ``i < j``, in the row-major strict upper triangle of an ``m x m`` matrix."""
    return i * m - i * (i + 1) // 2 + (j - i - 1)


def _wide(frame: Any, index: list[str]) -> Any:
    """Pivot statistics into columns, keep ``n`` and the first-seen row order."""
    import pandas as pd

    if not len(frame):
        return pd.DataFrame(columns=[*index, "n"])
    wide = frame.pivot_table(index=index, columns="statistic", values="value", aggfunc="first", dropna=False)
    wide = wide.reset_index()
    wide.columns.name = None
    n = frame.groupby(index, sort=False)["n"].first().reset_index()
    order = frame[index].drop_duplicates().reset_index(drop=True)
    out = order.merge(wide, on=index, how="left").merge(n, on=index, how="left")
    if "n" in out:
        out["n"] = pd.array([int(v) if pd.notna(v) else None for v in out["n"]], dtype="Int64")
    return out


def _as_int(column: Any) -> Any:
    """A numeric column as nullable integers (ranks and counts print as 1, not 1.000)."""
    import pandas as pd

    return pd.array([int(v) if pd.notna(v) else None for v in column], dtype="Int64")


def _ranked(agg: Any) -> Any:
    """Fill ``rank``/``rank_spearman`` from the aggregate r when the records lack them."""
    if not len(agg):
        return agg
    agg = agg.copy()
    for stat, source in (("rank", "pearson_r"), ("rank_spearman", "spearman_rho")):
        if source in agg and (stat not in agg or agg[stat].isna().all()):
            agg[stat] = agg.groupby("group")[source].rank(ascending=False, method="min")
    return agg


def _comparison_test(compare: Any) -> str:
    for test in TESTS:
        if (compare["statistic"] == f"pearson_{test}_p").any():
            return test
    return "steiger"


def _test_label(test: str) -> str:
    return {"steiger": "Steiger (1980) Z test", "meng": "Meng, Rosenthal & Rubin (1992) Z test"}.get(test, test)


def _group_label(group: str) -> str:
    return "all pairs" if group == "all" else f"pairs differing only in {group}"


def _versus(compare: Any, group: str, best: str, stat: str) -> dict[str, float]:
    """p-values of every metric's comparison with ``best`` in ``group`` (aggregate over probe sets)."""
    rows = compare[(compare["group"] == group) & (compare["probe_set"] == ALL_PROBES) & (compare["statistic"] == stat)
                   & ((compare["model_a"] == best) | (compare["model_b"] == best))]
    return {(b if a == best else a): float(v)
            for a, b, v in zip(rows["model_a"], rows["model_b"], rows["value"], strict=True)}


def _correlation_figure(agg: Any, compare: Any, groups: list[str], test: str, path: Path, title: str) -> Path:
    """Seed 001 Fig. 3: Pearson r (top) and Spearman rho (bottom) per group, 95 % intervals,
    brackets marking the dependent test of the best metric against each other one."""
    import math

    from simbench import stats

    from . import _plots

    plt = _plots.pyplot()
    headline = "all" if "all" in groups else groups[0]
    order = list(agg[agg["group"] == headline].sort_values(["pearson_r", "metric"], ascending=[False, True])["metric"])
    order += [m for m in dict.fromkeys(agg["metric"]) if m not in order]
    palette = dict(zip(order, _plots.colors(len(order)), strict=True))
    rows = (("pearson_r", "pearson_ci_low", "pearson_ci_high", "Pearson r", "pearson"),
            ("spearman_rho", "spearman_ci_low", "spearman_ci_high", "Spearman ρ", "spearman"))
    width = max(2.6, 0.5 * len(order) + 1.0)
    fig, axes = plt.subplots(2, len(groups), figsize=(width * len(groups), 7.4), squeeze=False)
    for row, (stat, lo_col, hi_col, ylabel, kind) in enumerate(rows):
        tops, bottoms = [], []
        for col, group in enumerate(groups):
            ax = axes[row][col]
            sub = agg[agg["group"] == group].set_index("metric")
            metrics = [m for m in order if m in sub.index]

            def get(column: str, sub: Any = sub, metrics: list[str] = metrics) -> list[float]:
                return [float(sub[column].get(m, float("nan"))) if column in sub else float("nan") for m in metrics]

            vals, lo, hi = get(stat), get(lo_col), get(hi_col)
            alt = (get("pearson_boot_ci_low"), get("pearson_boot_ci_high")) if kind == "pearson" else (None, None)
            xs, top = _plots.bars_with_intervals(ax, metrics, vals, lo, hi, [palette[m] for m in metrics], *alt)
            finite = [v for v in vals if math.isfinite(v)]
            if finite:
                best = metrics[max(range(len(vals)), key=lambda i: vals[i] if math.isfinite(vals[i]) else -9)]
                p_of = _versus(compare, group, best, f"{kind}_{test}_p")
                b = metrics.index(best)
                others = sorted((i for i, m in enumerate(metrics) if m != best and m in p_of),
                                key=lambda i: abs(i - b))
                y = top + 0.08
                for i in others:
                    _plots.bracket(ax, xs[b], xs[i], y, stats.significance_mark(p_of[metrics[i]]))
                    y += 0.15
                top = y
            tops.append(top)
            lows = [*lo, *finite, *(alt[0] or [])]
            bottoms.append(min([0.0, *[v for v in lows if math.isfinite(v)]]))
            n = sub["n"].dropna()
            ax.set_title(f"{group}" + (f"  (n = {int(n.iloc[0])} pairs)" if len(n) else ""), fontsize=9)
            if col == 0:
                ax.set_ylabel(ylabel)
        y_lo, y_hi = min(bottoms) - 0.08, max(max(tops) + 0.02, 1.0)
        for ax in axes[row]:
            ax.set_ylim(y_lo, y_hi)
            ax.set_yticks([t for t in (-1.0, -0.5, 0.0, 0.5, 1.0) if y_lo <= t <= y_hi])  # brackets above 1
    fig.suptitle(title, fontsize=11)
    fig.text(0.5, -0.01, "Bars: mean Fisher z over probe sets. Black whiskers: Fisher-z 95 % interval; grey band "
             "(Pearson): model-level bootstrap 95 % interval. Brackets: " + _test_label(test)
             + " of the best metric against each other metric (n.s., * p<0.05, ** p<0.01, *** p<0.001).",
             ha="center", va="top", fontsize=8, wrap=True)
    fig.tight_layout()
    return _plots.save(fig, path)
