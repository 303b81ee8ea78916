"""Leaderboard tables and figures of the functional-agreement benchmark (records -> frames, PNGs)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import simbench
from simbench.types import Table

from . import stats
from .common import (ALL_PROBES, SEVERAL, WITH_EXCLUDED, WITHIN, factor_names, group_label, is_aggregate,
                     pair_groups)

#: the columns of a ranking table, in order (those present are shown)
RANK_COLUMNS = ("rank", "rank_set", "metric", "aliases", "pearson_r", "pearson_ci_low", "pearson_ci_high",
                "best_set", "beaten_by", "worse_p", "mark", "p_rank_first", "spearman_rho", "bad_fraction", "n",
                "probe_sets", "status")

RANK_CAPTION = (
    "r = Pearson correlation of the metric's similarity with prediction agreement over model pairs, averaged over "
    "probe sets in Fisher z; ci = 95 % interval tanh(z ± t(U−1)·se) with se the leave-one-model-out jackknife "
    "standard error (models are the units, so pairs sharing a model stay dependent). Every ranking statement comes "
    "from one family of simultaneous tests: each ordered metric pair is tested by its paired difference of mean "
    "Fisher z, studentized, against the step-down max-t null of the paired model bootstrap (Romano & Wolf 2005), "
    "family-wise error 5 % over all pairs, differences within the tie margin Δz = {margin} counted as ties. "
    "rank_set = 95 % rank confidence set (Mogstad et al. 2024): 1 + the metrics that beat it, to Q − the metrics it "
    "beats. best_set = the metrics whose rank set contains 1. beaten_by / worse_p = the metric that beats it with "
    "the smallest adjusted p, and that p; mark = * p < 0.05, ** < 0.01, *** < 0.001 (a mark means exactly: outside "
    "the best set). p_rank_first = share of bootstrap resamples in which the metric scores highest (descriptive). "
    "aliases = metrics with the same similarity matrices, analysed once. bad_fraction = Ding et al. (2021): share of "
    "all pairs that the metric puts among its closest 20 % while they are among the 20 % least agreeing (chance "
    "0.04). n = model pairs.")


def frame_of(records: Any) -> Any:
    """Records as a DataFrame with string columns normalised ('' for missing)."""
    from .._records import records_frame

    return records_frame(records)


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
    out["n"] = _as_int(out["n"])
    return out


def _as_int(column: Any) -> Any:
    """A numeric column as nullable integers (ranks and counts print as 1, not 1.000)."""
    import pandas as pd

    return pd.array([int(v) if pd.notna(v) else None for v in column], dtype="Int64")


class _Parts:
    """The record frame split by kind of row."""

    def __init__(self, records: Any) -> None:
        frame = frame_of(records)
        self.frame = frame
        ok = frame["status"] == "ok"
        self.failed = frame[(frame["status"] == "failed") & (frame["metric"] != "")]
        self.per_metric = frame[ok & (frame["metric"] != "") & (frame["model_a"] == "") & (frame["model_b"] == "")]
        claim = frame["statistic"].str.startswith("claim_")
        self.claims = frame[ok & claim]
        self.worse = frame[ok & (frame["metric"] != "") & (frame["model_a"] == "") & (frame["model_b"] != "")
                             & (frame["statistic"] != "alias_of") & ~claim]
        aliases = frame[ok & (frame["statistic"] == "alias_of")]
        self.aliases: dict[str, list[str]] = {}
        for alias, original in zip(aliases["metric"], aliases["model_b"], strict=True):
            self.aliases.setdefault(original, []).append(alias)
        self.compare = frame[ok & (frame["model_a"] != "") & (frame["model_b"] != "")]
        self.models = frame[ok & (frame["metric"] == "") & (frame["model_a"] != "")]
        self.group_rows = frame[ok & (frame["metric"] == "") & (frame["model_a"] == "")]
        self.groups = [g for g in dict.fromkeys(self.per_metric["group"])]
        #: the groups of a ``within`` analysis (one factor held fixed), shown in their own table
        self.within = [g for g in self.groups if g.startswith(WITHIN)]
        main = [g for g in self.groups if g != WITH_EXCLUDED and g not in self.within]
        self.headline = "all" if "all" in main else (main[0] if main else "all")
        self.aggregates = [p for p in dict.fromkeys(self.per_metric["probe_set"]) if is_aggregate(p)]

    def group_stat(self, group: str, stat: str, probe_set: str = "") -> float:
        rows = self.group_rows[(self.group_rows["group"] == group) & (self.group_rows["statistic"] == stat)]
        if probe_set:
            rows = rows[rows["probe_set"] == probe_set]
        return float(rows["value"].iloc[0]) if len(rows) else float("nan")

    def few(self, group: str) -> bool:
        """True when the group has fewer resampling units than ``min_clusters``: no verdict."""
        return self.group_stat(group, "few_clusters") == 1.0

    def ranking(self, group: str, probe_set: str = ALL_PROBES) -> Any:
        """One ranking: a row per metric with r, interval, rank set, best set and marks."""
        import pandas as pd

        rows = self.per_metric[(self.per_metric["group"] == group) & (self.per_metric["probe_set"] == probe_set)]
        table = _wide(rows, ["metric"])
        vs = self.worse[(self.worse["group"] == group) & (self.worse["probe_set"] == probe_set)]
        beaten_by = dict(zip(vs["metric"], vs["model_b"], strict=True))
        vs = _wide(vs, ["metric"]).drop(columns=["n"], errors="ignore")
        if len(vs):
            table = table.merge(vs, on="metric", how="left")
        for col in ("pearson_r", "rank", "in_best_set", "worse_p"):
            if col not in table:
                table[col] = float("nan")
        if group == self.headline and probe_set == ALL_PROBES:
            for metric in sorted(set(self.failed["metric"]) - set(table["metric"])):
                table = pd.concat([table, pd.DataFrame([{"metric": metric}])], ignore_index=True)
        table = table.sort_values(["pearson_r", "metric"], ascending=[False, True], na_position="last")
        table = table.reset_index(drop=True)
        few = self.few(group)
        table["aliases"] = [", ".join(self.aliases.get(m, [])) for m in table["metric"]]
        if few or "rank_set_low" not in table:
            table["rank_set"] = ""
        else:
            table["rank_set"] = [f"{int(lo)}–{int(hi)}" if pd.notna(lo) and pd.notna(hi) else ""
                                 for lo, hi in zip(table["rank_set_low"], table["rank_set_high"], strict=True)]
        table["best_set"] = ["yes" if v == 1.0 else "" for v in table["in_best_set"]]
        table["beaten_by"] = [beaten_by.get(m, "") for m in table["metric"]]
        table["mark"] = [_mark(p, inside, few) for p, inside in zip(table["worse_p"], table["in_best_set"],
                                                                   strict=True)]
        for col in ("rank", "rank_set_low", "rank_set_high", "probe_sets", "rank_spearman"):
            if col in table:
                table[col] = _as_int(table[col])
        errors = self.failed.groupby("metric")["error"].first()
        table["status"] = [f"FAILED on {int((self.failed['metric'] == m).sum())} probe set(s): {errors[m]}"
                           if m in errors.index else "ok" for m in table["metric"]]
        return table

    def best_set(self, group: str, probe_set: str = ALL_PROBES) -> list[str]:
        """The best set, ordered by r (empty where the group has too few units for a verdict)."""
        if self.few(group):
            return []
        rows = self.per_metric[(self.per_metric["group"] == group) & (self.per_metric["probe_set"] == probe_set)
                               & (self.per_metric["statistic"] == "in_best_set") & (self.per_metric["value"] == 1.0)]
        r = self.per_metric[(self.per_metric["group"] == group) & (self.per_metric["probe_set"] == probe_set)
                            & (self.per_metric["statistic"] == "pearson_r")].set_index("metric")["value"]
        return sorted(rows["metric"], key=lambda m: -float(r.get(m, -2)))

    def tie_margin_text(self) -> str:
        margin = self.group_rows.loc[self.group_rows["statistic"] == "tie_margin", "value"]
        return f"{float(margin.iloc[0]):g}" if len(margin) else "0.01"

    def min_clusters(self, group: str) -> int | None:
        value = self.group_stat(group, "min_clusters")
        return int(value) if math.isfinite(value) else None


def _mark(p: float, inside: float, few: bool) -> str:
    """Stars for a metric outside the best set; nothing inside it or without a verdict."""
    if few or inside != 0.0 or not (p == p):
        return ""
    return stats.significance_mark(p)


def _few_note(parts: _Parts, group: str) -> str:
    units = parts.group_stat(group, "clusters")
    if parts.few(group) and math.isfinite(units):
        need = parts.min_clusters(group)
        return (f" Only {int(units)} independent resampling units (models or blocks of models), fewer than "
                f"min_clusters = {need if need is not None else '?'}: intervals are rough and no verdict is given "
                "(no rank sets, best set or marks).")
    return ""


def _best_title(parts: _Parts, group: str, probe_set: str = ALL_PROBES) -> str:
    if parts.few(group):
        return "; no verdict (too few models)"
    best = parts.best_set(group, probe_set)
    if not best:
        return ""
    if len(best) == 1:
        return f"; best: {best[0]} (every other metric is beaten)"
    shown = ", ".join(best[:6]) + (f" and {len(best) - 6} more" if len(best) > 6 else "")
    return f"; best set: {shown} (rank sets contain 1)"


def _constant_note(parts: _Parts, groups: list[str]) -> str:
    """Which probe sets a group left out because every pair of it agrees equally there (r undefined)."""
    rows = parts.group_rows[(parts.group_rows["statistic"] == "agreement_constant")
                            & parts.group_rows["group"].isin(groups)]
    if not len(rows):
        return ""
    listed = "; ".join(f"{g.removeprefix(WITHIN) if g.startswith(WITHIN) else group_label(g)}: "
                       f"{', '.join(sorted(rows.loc[rows['group'] == g, 'probe_set']))}"
                       for g in groups if (rows["group"] == g).any())
    return (" Left out of the means (every pair of the group agrees equally there, so r is undefined for "
            f"every metric) — {listed}.")


def _exclusion_note(parts: _Parts) -> str:
    rows = parts.group_rows[parts.group_rows["statistic"] == "models_excluded"]
    if not len(rows):
        return ""
    excluded, total = int(rows["value"].iloc[0]), rows["n"].iloc[0]
    thresholds = parts.frame.loc[parts.frame["statistic"] == "min_accuracy", "value"]
    threshold = float(thresholds.iloc[0]) if len(thresholds) else float("nan")
    total_text = f" of {int(total)}" if total == total and total is not None else ""
    if not excluded:
        return f" No model is at or below the accuracy threshold {threshold:.3f} on the clean probe set."
    return (f" {excluded}{total_text} models are excluded as collapsed (clean accuracy ≤ {threshold:.3f}, chance + "
            "margin); the ranking with them is a separate table.")


def summary(records: Any) -> Any:
    """The headline ranking in a few columns that fit 80 terminal columns (the runner merges
    ``*_low``/``*_high`` into intervals): metric, r and interval, rank set, P(rank 1), verdict."""
    parts = _Parts(records)
    head = parts.ranking(parts.headline)
    few = parts.few(parts.headline)
    verdict = []
    for best, by, mark in zip(head["best_set"], head["beaten_by"], head["mark"], strict=True):
        verdict.append("best set" if best == "yes" else (f"< {by} {mark}" if by else ""))
    out = head[["metric"]].copy()
    out["r"] = head["pearson_r"]
    if "pearson_ci_low" in head:
        out["r_95_low"], out["r_95_high"] = head["pearson_ci_low"], head["pearson_ci_high"]
    if not few and (head["rank_set"] != "").any():
        out["ranks"] = head["rank_set"]
    if "p_rank_first" in head:
        out["P(#1)"] = head["p_rank_first"]
    if not few:
        out["verdict"] = verdict
    failed = head["status"] != "ok"
    if failed.any():
        out["status"] = ["FAILED" if f else "ok" for f in failed]
    out.attrs["title"] = f"Ranking ({group_label(parts.headline)}){_best_title(parts, parts.headline)}"
    return out


def tables(records: Any) -> list[Table]:
    """Every table of the benchmark, the headline ranking first."""
    import pandas as pd

    parts = _Parts(records)
    frame = parts.frame
    measured_on = frame.loc[frame["statistic"] == "similarity_measured_on", "probe_set"]
    on_note = (f" Similarity measured on '{measured_on.iloc[0]}' only; agreement on each probe set."
               if len(measured_on) else "")
    head_group = parts.headline
    out: list[Table] = []

    # 1. headline ranking
    head = parts.ranking(head_group)
    out.append(Table(
        "ranking", f"Ranking: how well similarity tracks prediction agreement ({group_label(head_group)})"
        + _best_title(parts, head_group),
        head[[c for c in RANK_COLUMNS if c in head.columns]],
        RANK_CAPTION.format(margin=parts.tie_margin_text()) + _exclusion_note(parts) + _few_note(parts, head_group)
        + _constant_note(parts, [head_group]) + on_note))

    # 2. per probe-set family (clean, each perturbation)
    families = [p for p in parts.aggregates if p != ALL_PROBES]
    if families:
        frames = []
        for fam in families:
            t = parts.ranking(head_group, fam)
            t.insert(0, "probe_sets_of", fam.removeprefix("(mean over ").removesuffix(")"))
            frames.append(t)
        fam_table = pd.concat(frames, ignore_index=True)
        cols = ["probe_sets_of", "rank", "rank_set", "metric", "pearson_r", "pearson_ci_low", "pearson_ci_high",
                "best_set", "beaten_by", "worse_p", "mark", "p_rank_first"]
        sets = ("no verdict (too few models)" if parts.few(head_group) else
                "; ".join(f"{f.removeprefix('(mean over ').removesuffix(')')}: "
                          f"{', '.join(parts.best_set(head_group, f))}" for f in families))
        out.append(Table("by_probe_family", "Ranking on clean, corrupted and attacked probe sets separately",
                         fam_table[[c for c in cols if c in fam_table.columns]],
                         f"Best sets — {sets}. Same statistics as the headline, averaged over the probe sets of one "
                         "family only."))

    # 2b. the claim the suite names (focus against rivals), per group and probe family
    claims = _claims_table(parts)
    if claims is not None:
        out.append(claims)

    # 2c. within: the ranking with one factor held fixed
    if parts.within:
        frames = []
        for group in parts.within:
            for agg in parts.aggregates or [ALL_PROBES]:
                t = parts.ranking(group, agg)
                t.insert(0, "probe_sets_of", agg.removeprefix("(mean over ").removesuffix(")"))
                t.insert(0, "models_with", group.removeprefix(WITHIN))
                frames.append(t)
        within = pd.concat(frames, ignore_index=True)
        cols = ["models_with", "probe_sets_of", "rank", "rank_set", "metric", "n", "pearson_r", "pearson_ci_low",
                "pearson_ci_high", "best_set", "beaten_by", "worse_p", "mark", "spearman_rho", "bad_fraction"]
        sets = "; ".join(f"{g.removeprefix(WITHIN)}, {a.removeprefix('(mean over ').removesuffix(')')}: "
                         f"{', '.join(parts.best_set(g, a)) or 'no verdict'}"
                         for g in parts.within for a in (parts.aggregates or [ALL_PROBES]))
        out.append(Table("within", "Ranking with one factor held fixed (pairs of models that share it)",
                         within[[c for c in cols if c in within.columns]],
                         "The headline statistics again on the pairs of models that share the named factor's value "
                         "(models are the resampling units), for every probe family: does a metric's lead survive "
                         f"when that factor cannot drive agreement? Best sets — {sets}."
                         + _constant_note(parts, parts.within)))

    # 3. per group
    main_groups = [g for g in parts.groups if g != WITH_EXCLUDED and g not in parts.within]
    if len(main_groups) > 1:
        frames = []
        for group in main_groups:
            t = parts.ranking(group)
            t.insert(0, "group", group)
            t["clusters"] = parts.group_stat(group, "clusters")
            frames.append(t)
        long = pd.concat(frames, ignore_index=True)
        long["clusters"] = _as_int(long["clusters"])
        cols = ["group", "rank", "rank_set", "metric", "n", "clusters", "pearson_r", "pearson_ci_low",
                "pearson_ci_high", "best_set", "beaten_by", "worse_p", "mark", "spearman_rho", "rank_spearman",
                "bad_fraction"]
        need = sorted({parts.min_clusters(g) for g in main_groups} - {None})
        need_text = ", ".join(map(str, need)) or "min_clusters"
        out.append(Table("groups", "Per group: which factor differs between the two models",
                         long[[c for c in cols if c in long.columns]],
                         "Group 'all' = every pair; a factor name = the pairs that differ in exactly that factor. "
                         "In a factor group the resampling units are the blocks of models that share every other "
                         f"factor (clusters); with fewer than {need_text} (min_clusters) no verdict is given: no "
                         "rank sets, best set or marks." + _constant_note(parts, main_groups)))
        ranks = long.pivot_table(index="metric", columns="group", values="rank", aggfunc="first")
        ranks = ranks[[g for g in main_groups if g in ranks.columns]]
        factor_cols = [g for g in ranks.columns if g != "all"] or list(ranks.columns)
        mean_rank = ranks[factor_cols].astype(float).mean(axis=1)
        for col in list(ranks.columns):
            ranks[col] = _as_int(ranks[col])
        ranks.insert(0, "mean_rank", mean_rank)
        ranks = ranks.sort_values("mean_rank").reset_index()
        ranks.columns.name = None
        out.append(Table("group_ranks", "Rank of each metric per group (1 = highest r)", ranks,
                         "mean_rank averages the single-factor groups; see the groups table for rank sets."))

    # 4. per-model accuracy
    acc = parts.models[parts.models["statistic"] == "model_accuracy"]
    if len(acc):
        grid = acc.pivot_table(index="model_a", columns="probe_set", values="value", aggfunc="first", sort=False)
        probes = list(dict.fromkeys(acc["probe_set"]))
        grid = grid[[p for p in probes if p in grid.columns]]
        excluded = set(parts.models.loc[parts.models["statistic"] == "model_excluded", "model_a"])
        table = pd.DataFrame({"model": grid.index})
        table["clean_accuracy"] = grid[probes[0]].to_numpy()
        others = [p for p in probes[1:]]
        if others:
            table["mean_perturbed"] = grid[others].mean(axis=1).to_numpy()
            table["min_perturbed"] = grid[others].min(axis=1).to_numpy()
        table["excluded"] = ["yes" if m in excluded else "" for m in table["model"]]
        table = table.sort_values(["clean_accuracy", "model"]).reset_index(drop=True)
        out.append(Table("models", f"Per-model accuracy ({len(excluded)} of {len(table)} excluded as collapsed)",
                         table, f"Accuracy on the clean probe set ('{probes[0]}'), and the mean and minimum over the "
                         "perturbed probe sets." + _exclusion_note(parts)))

    # 5. ranking with the collapsed models
    if WITH_EXCLUDED in parts.groups:
        t = parts.ranking(WITH_EXCLUDED)
        out.append(Table("with_excluded", "Ranking with the collapsed models included" + _best_title(parts, WITH_EXCLUDED),
                         t[[c for c in RANK_COLUMNS if c in t.columns]],
                         "The headline analysis on every model, collapsed ones included: how much they drive the "
                         "result." + _few_note(parts, WITH_EXCLUDED)))

    # 6. metric against metric
    if len(parts.compare):
        comp = _wide(parts.compare, ["group", "model_a", "model_b"]).rename(columns={"model_a": "metric_a",
                                                                                    "model_b": "metric_b"})
        comp["mark"] = [stats.significance_mark(p) for p in comp.get("pearson_diff_adj_p", [])]
        cols = ["group", "metric_a", "metric_b", "n", "pearson_diff", "z_diff_jack_se", "pearson_diff_adj_p", "mark"]
        out.append(Table("comparisons", "Metric against metric (mean over probe sets, the tests behind the rank sets)",
                         comp[[c for c in cols if c in comp.columns]],
                         "diff = r(a) − r(b); z_diff_jack_se = leave-one-model-out jackknife SE of the difference of "
                         "mean Fisher z; adj_p = step-down max-t adjusted p (family-wise over every ordered pair in "
                         "the group, tie margin included) of the claim that the better-scoring metric is better: the "
                         "same tests that give the rank sets, so a mark here is a separation there."))

    # 7. bad fraction (Ding et al.) and the conditional variant
    agg = _wide(parts.per_metric[parts.per_metric["probe_set"] == ALL_PROBES], ["metric", "group"])
    if "bad_fraction" in agg and len(agg):
        sub = agg[agg["group"] == head_group].sort_values("bad_fraction")
        cols = ["metric", "bad_fraction", "bad_fraction_chance", "close_bad_fraction", "close_bad_fraction_chance"]
        out.append(Table("bad_fraction", f"Bad fraction ({group_label(head_group)}; lower is better)",
                         sub[[c for c in cols if c in sub.columns]].reset_index(drop=True),
                         "bad_fraction: Ding et al. (2021) — over all pairs, the share the metric puts among its 20 % "
                         "closest while they are among the 20 % least agreeing (chance ≈ 0.04). close_bad_fraction: "
                         "the same pairs as a share of the metric's closest 20 % (chance ≈ 0.20). Mean over probe "
                         "sets."))

    # 8. r per probe set
    detail = _wide(parts.per_metric[~parts.per_metric["probe_set"].map(is_aggregate)], ["metric", "group", "probe_set"])
    if len(detail):
        by_probe = detail[detail["group"] == head_group].pivot_table(
            index="metric", columns="probe_set", values="pearson_r", aggfunc="first")
        order = list(dict.fromkeys(detail["probe_set"]))
        by_probe = by_probe[[p for p in order if p in by_probe.columns]]
        if by_probe.shape[1] > 1:
            by_probe = by_probe.reset_index()
            by_probe.columns.name = None
            out.append(Table("probe_sets", f"Pearson r per probe set ({group_label(head_group)})", by_probe,
                             "Correlation of similarity with agreement on each probe set." + on_note))
        cols = ["metric", "group", "probe_set", "n", "pearson_r", "pearson_ci_low", "pearson_ci_high",
                "pearson_jack_se", "pearson_perm_p", "pearson_indep_ci_low", "pearson_indep_ci_high", "spearman_rho",
                "spearman_indep_ci_low", "spearman_indep_ci_high", "bad_fraction", "close_bad_fraction"]
        out.append(Table("detail", "Every metric x group x probe set", detail[[c for c in cols if c in detail.columns]],
                         "ci = 95 % interval tanh(z ± t(U−1)·jack_se); jack_se = leave-one-model-out jackknife "
                         "standard error of atanh(r); perm_p = Mantel permutation p (model labels permuted). indep_ci = Fisher (r) and "
                         "Bonett & Wright (rho) intervals that ASSUME INDEPENDENT PAIRS: too narrow here, shown for "
                         "comparison with the literature." + on_note))
    return out


_VERDICT = {1.0: "reproduced", 0.0: "not significant", -1.0: "reversed"}


def _claims_table(parts: _Parts) -> Table | None:
    """One row per (group, probe family, rival): the focus metric against the rival under Pearson and
    Spearman side by side (difference, simultaneous 95 % interval of the Fisher-z difference, adjusted
    p in the observed direction, verdict), with Ding et al.'s bad fraction of both."""
    import pandas as pd

    c = parts.claims
    if not len(c):
        return None
    focus = str(c["metric"].iloc[0])
    value = {(g, p, b, st): v for g, p, b, st, v in zip(c["group"], c["probe_set"], c["model_b"], c["statistic"],
                                                       c["value"], strict=True)}
    bad = parts.per_metric[parts.per_metric["statistic"] == "bad_fraction"]
    bad_of = {(g, p, m): v for g, p, m, v in zip(bad["group"], bad["probe_set"], bad["metric"], bad["value"],
                                                strict=True)}
    rows = []
    for group, probe, rival in dict.fromkeys(zip(c["group"], c["probe_set"], c["model_b"], strict=True)):
        row: dict[str, Any] = {"group": group, "probe_sets_of": probe.removeprefix("(mean over ").removesuffix(")"),
                               "focus": focus, "rival": rival}
        for corr in ("pearson", "spearman"):
            get = lambda stat, corr=corr: value.get((group, probe, rival, f"claim_{corr}_{stat}"), float("nan"))  # noqa: E731
            diff = get("diff")
            row[f"{corr}_diff"] = diff
            row[f"{corr}_z_diff_low"], row[f"{corr}_z_diff_high"] = get("z_ci_low"), get("z_ci_high")
            row[f"{corr}_adj_p"] = get("p_better") if diff >= 0 else get("p_worse")
            verdict = get("verdict")
            row[f"{corr}_verdict"] = _VERDICT.get(verdict, "no verdict (too few units)")
        row["bad_fraction_focus"] = bad_of.get((group, probe, focus), float("nan"))
        row["bad_fraction_rival"] = bad_of.get((group, probe, rival), float("nan"))
        rows.append(row)
    table = pd.DataFrame(rows)
    return Table("claims", f"The claim tested head on: {focus} against "
                 f"{', '.join(dict.fromkeys(c['model_b']))}, per group and probe family",
                 table, f"diff = {focus} − rival in Pearson r (of similarity with agreement) and in Spearman rho, "
                 "each averaged over the family's probe sets in Fisher z; z_diff_low/high = simultaneous 95 % "
                 "interval of the Fisher-z difference (single-step max-t over every metric pair of the group, "
                 "jackknife SE, t(U−1)); adj_p = step-down adjusted p of the observed direction (the tests behind "
                 "the rank sets; Spearman: the same construction on the pairs' ranks); verdict: reproduced = "
                 f"{focus} better beyond the tie margin, reversed = the rival better, not significant = neither. "
                 "bad_fraction = Ding et al. (2021), lower is better. Groups: 'all' = every pair, a factor = the "
                 "pairs differing only in it.")


# -- figures ---------------------------------------------------------------------------------------


def plots(records: Any, out_dir: Any, view: simbench.StoreView | None, default_label: str) -> list[Any]:
    """Forest plot, per-probe-set heatmap, bad-fraction heatmap and (given the run) scatter plots."""
    from .. import _plots

    parts = _Parts(records)
    if not len(parts.per_metric):
        return []
    frame = parts.frame
    label = _plots.safe_name(str(frame["benchmark"].iloc[0]) or default_label)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = [_forest(parts, out / f"{label}_forest.png")]
    detail = _wide(parts.per_metric[~parts.per_metric["probe_set"].map(is_aggregate)], ["metric", "group", "probe_set"])
    head = parts.headline
    order = list(parts.ranking(head)["metric"])
    sub = detail[detail["group"] == head] if len(detail) else detail
    if len(sub):
        grid = sub.pivot_table(index="metric", columns="probe_set", values="pearson_r", aggfunc="first")
        probes = list(dict.fromkeys(sub["probe_set"]))
        grid = grid.reindex(index=[m for m in order if m in grid.index], columns=[p for p in probes if p in grid.columns])
        written.append(_plots.heatmap(
            grid.to_numpy(), list(grid.index), list(grid.columns), out / f"{label}_probe_sets.png",
            title=f"Pearson r of similarity with agreement per probe set ({group_label(head)})",
            vmin=-1, vmax=1, cmap="RdBu_r", colorbar_label="Pearson r", missing_label="failed"))
    if view is not None and view.specs:
        probe = next((p for p in dict.fromkeys(parts.per_metric["probe_set"]) if not is_aggregate(p)), None)
        measured_on = frame.loc[frame["statistic"] == "similarity_measured_on", "probe_set"]
        if probe is not None:
            for group_figure in _scatter_figures(view, order, [g for g in parts.groups
                                                               if g != WITH_EXCLUDED and g not in parts.within], probe,
                                                 measured_on.iloc[0] if len(measured_on) else probe, out, label):
                written.append(group_figure)
    return written


def _forest(parts: _Parts, path: Path) -> Path:
    """Each metric's r with its model-bootstrap interval, sorted by overall rank, one panel per
    aggregate (all probe sets, then each family); filled markers = in the best set."""
    from .. import _plots

    plt = _plots.pyplot()
    head = parts.headline
    panels = parts.aggregates or [ALL_PROBES]
    overall = parts.ranking(head)
    order = [m for m in overall["metric"] if m == m]
    height = 1.2 + 0.32 * len(order)
    fig, axes = plt.subplots(1, len(panels), figsize=(min(3.4 * len(panels) + 1.6, 16), height), sharey=True,
                             squeeze=False)
    for ax, panel in zip(axes[0], panels, strict=True):
        table = parts.ranking(head, panel).set_index("metric")
        for y, metric in enumerate(order):
            if metric not in table.index or not math.isfinite(float(table.at[metric, "pearson_r"])):
                ax.text(0, y, "failed", va="center", fontsize=7, color="0.4")
                continue
            r = float(table.at[metric, "pearson_r"])
            lo = float(table.at[metric, "pearson_ci_low"]) if "pearson_ci_low" in table else float("nan")
            hi = float(table.at[metric, "pearson_ci_high"]) if "pearson_ci_high" in table else float("nan")
            best = table.at[metric, "best_set"] == "yes"
            color = "#C44E52" if best else "#4C72B0"
            if math.isfinite(lo) and math.isfinite(hi):
                ax.plot([lo, hi], [y, y], color=color, linewidth=2.0, solid_capstyle="butt")
            ax.plot([r], [y], marker="o", markersize=6, color=color, markerfacecolor=color if best else "white",
                    markeredgewidth=1.5)
            rank = table.at[metric, "rank"] if "rank" in table else None
            rank_set = table.at[metric, "rank_set"] if "rank_set" in table else ""
            if rank is not None and rank_set:
                ax.annotate(f"#{rank} [{rank_set}]", (1.0, y), xycoords=("axes fraction", "data"),
                            xytext=(4, 0), textcoords="offset points", va="center", fontsize=7, color="0.3",
                            annotation_clip=False)
        ax.axvline(0, color="0.7", linewidth=0.8)
        name = "all probe sets" if panel == ALL_PROBES else panel.removeprefix("(mean over ").removesuffix(")")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("Pearson r with agreement", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(axis="x", color="0.92")
    axes[0][0].set_yticks(range(len(order)))
    # a metric analysed once for its aliases (identical matrices) carries their names
    axes[0][0].set_yticklabels([m + "".join(f"\n= {a}" for a in parts.aliases.get(m, [])) for m in order],
                               fontsize=8)
    axes[0][0].invert_yaxis()
    verdict = ("no verdict: too few models for rank sets or a best set" if parts.few(head)
               else "filled red = best set; #rank [95 % rank set]")
    fig.suptitle(f"Correlation with prediction agreement ({group_label(head)}): 95 % model-level intervals; {verdict}",
                 fontsize=9)
    fig.tight_layout()
    return _plots.save(fig, path)


def _upper_index(i: int, j: int, m: int) -> int:
    """Position of pair ``(i, j)``, ``i < j``, in the row-major strict upper triangle of an ``m x m`` matrix."""
    return i * m - i * (i + 1) // 2 + (j - i - 1)


def _scatter_figures(view: simbench.StoreView, order: list[str], groups: list[str], probe: str, similarity_on: str,
                     out: Path, label: str) -> list[Path]:
    """Metric similarity (x) against prediction agreement (y) over model pairs, one figure per pair
    group (legible at page width), one panel per metric, Pearson r in each panel (seed 001 Fig. 2 style)."""
    import numpy as np

    from .. import _plots

    agreement = view.pairs(probe)
    sims = agreement if similarity_on == probe else view.pairs(similarity_on)
    metrics = [m for m in order if m in sims.columns]
    if not metrics or not len(agreement):
        return []
    ids = [s.id for s in view.specs]
    factors = [dict(s.factors) for s in view.specs]
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
    hue = {**dict(zip(factor_groups, _plots.colors(len(factor_groups)), strict=True)), SEVERAL: "0.6"}
    plt = _plots.pyplot()
    y_all = agreement["agreement"].to_numpy()
    written = []
    cols = min(5, len(metrics))
    rows_n = math.ceil(len(metrics) / cols)
    for group in ["all", *factor_groups]:
        fig, axes = plt.subplots(rows_n, cols, figsize=(2.6 * cols + 0.6, 2.4 * rows_n + 0.8), squeeze=False,
                                 sharey=True)
        for idx, metric in enumerate(metrics):
            ax = axes[idx // cols][idx % cols]
            x_all = sims[metric].to_numpy()
            keep = np.ones(len(x_all), dtype=bool) if group == "all" else pair_label == group
            x, y, g_keep = x_all[keep], y_all[keep], pair_label[keep]
            for g in ([*factor_groups, SEVERAL] if group == "all" else [group]):
                sel = g_keep == g
                if sel.any():
                    ax.scatter(x[sel], y[sel], s=8, alpha=0.6, color=hue.get(g, "grey"), linewidths=0,
                               label=g if idx == 0 else None)
            ok = np.isfinite(x) & np.isfinite(y)
            r = stats.row_pearson(x[ok][None], y[ok][None])[0] if ok.sum() >= 3 else float("nan")
            ax.set_title(f"{metric}\nr = {r:.2f}, n = {int(ok.sum())}", fontsize=8)
            ax.tick_params(labelsize=7)
            if idx % cols == 0:
                ax.set_ylabel("prediction agreement", fontsize=8)
        for idx in range(len(metrics), rows_n * cols):
            axes[idx // cols][idx % cols].axis("off")
        if group == "all" and factor_groups:
            fig.legend(loc="upper right", fontsize=7, title="pair differs in", title_fontsize=7, markerscale=2)
        where = "all pairs" if group == "all" else f"pairs differing only in {group}"
        fig.suptitle(f"Similarity (x, higher = more similar{', on ' + repr(similarity_on) if similarity_on != probe else ''}) "
                     f"vs prediction agreement on '{probe}' (y): {where}", fontsize=9)
        fig.tight_layout(rect=(0, 0, 0.9 if group == "all" and factor_groups else 1, 0.95))
        written.append(_plots.save(fig, out / f"{label}_scatter_{_plots.safe_name(group)}.png"))
    return written
