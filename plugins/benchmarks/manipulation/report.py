"""Leaderboard tables and figures of the ``manipulation`` benchmark, from its records alone."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from simbench.types import Table

from .._records import records_frame as frame
from .common import ALL_PROBES, REFERENCE

#: "function preserved": the manipulated copy agrees with its original on at least this share of probes
PRESERVED = 0.95
#: a metric "moved a lot" when it moved at least half as far as a typical pair of different models
MOVED = 0.5
#: the targeted statistic "moved" when it changed towards the target by at least this much
MAP_MOVED = 0.05
#: a comical map "closely resembles" its target when its mean |map - target| over the off-diagonal cells is at most
CLOSE = 0.15
SUBJECT = "linear_cka"
#: what each map target targets: (statistic before, statistic after, label, rule)
#:   rule "raise" / "lower": reproduced when the statistic moves towards the target by >= MAP_MOVED;
#:   rule "close": reproduced when the off-diagonal distance to the target ends <= CLOSE
TARGETED = {
    "first_last_max": ("map_first_last_original", "map_first_last", "first<->last CKA", "raise"),
    "all_max": ("map_offdiag_original", "map_offdiag", "mean off-diagonal CKA", "raise"),
    "all_min": ("map_offdiag_original", "map_offdiag", "mean off-diagonal CKA", "lower"),
}
COMICAL_TARGET = ("map_target_distance_original", "map_target_distance", "mean off-diagonal |map - target|", "close")


def targeted(group: str) -> tuple[str, str, str, str]:
    """The statistic a map target moves and the rule that judges it (comical and explicit maps: the distance)."""
    return TARGETED.get(group, COMICAL_TARGET)


def _agreement(df: Any) -> Any:
    rows = df[(df["statistic"] == "agreement") & (df["status"] == "ok") & (df["metric"] == "")]
    return rows.groupby("group")["value"].agg(["mean", "min"])


def _reference(df: Any) -> float:
    rows = df[(df["statistic"] == "agreement_reference") & (df["group"] == REFERENCE)]
    return float(rows["value"].mean()) if len(rows) else float("nan")


def _accuracy_change(df: Any) -> Any:
    rows = df[(df["statistic"] == "accuracy_change") & (df["status"] == "ok") & (df["metric"] == "")]
    return rows.groupby("group")["value"].mean()


def tables(records: Any) -> list[Table]:
    import pandas as pd

    df = frame(records)
    if df.empty:
        return []
    ok = df[df["status"] == "ok"]
    out: list[Table] = []
    agg = ok[(ok["probe_set"] == ALL_PROBES) & (ok["metric"] != "")]
    agreement = _agreement(df)
    reference = _reference(df)
    acc_change = _accuracy_change(df)
    groups = list(dict.fromkeys(agg["group"]))
    if len(agg):
        wide = agg.pivot_table(index=["metric", "group"], columns="statistic", values="value",
                               aggfunc="first").reset_index()
        wide.columns.name = None
        head = wide.pivot_table(index="metric", columns="group", values="displacement_mean", aggfunc="first")
        head = head[[g for g in groups if g in head.columns]]
        head.columns = [f"displacement[{g}]" for g in head.columns]
        headline = "all" if "all" in groups else groups[0]
        extra = wide[wide["group"] == headline].set_index("metric")
        for col in ("closer_fraction_mean", "movement_scaled_mean", "rank"):
            if col in extra:
                head[f"{col.replace('_mean', '')}[{headline}]"] = extra[col]
        rank_col = f"rank[{headline}]"
        head = head.reset_index()
        if rank_col in head:
            head[rank_col] = pd.array([int(v) if pd.notna(v) else None for v in head[rank_col]], dtype="Int64")
            head = head.sort_values(rank_col).reset_index(drop=True)
            head.insert(0, "rank", head.pop(rank_col))
        func = "; ".join(f"{g}: agreement {agreement.loc[g, 'mean']:.3f} (min {agreement.loc[g, 'min']:.3f}), "
                         f"accuracy change {acc_change.get(g, float('nan')):+.3f}" for g in agreement.index)
        out.append(Table(
            "manipulation", "How far each metric moves between a model and its function-preserving manipulated copy",
            head,
            f"displacement = (S[o,o] - S[o,m]) / (S[o,o] - median S over pairs of distinct original models): 0 = "
            f"did not move, 1 = moved as far as a typical pair of different models (mean over pairs and probe "
            f"sets; rank 1 = moved least). closer_fraction = share of different-model pairs the metric calls at "
            f"least as similar as (original, manipulated). movement_scaled = drop on the calibrated scale. "
            f"Function of the manipulated pairs -- {func}; distinct originals agree on {reference:.3f} (median)."))

        # verdict: is seed 003 §3.4 reproduced here?  Each target is judged on the statistic it targets.
        rows = []
        maps = df[df["statistic"].str.startswith("map_") & (df["metric"] == "")]
        maps = maps.groupby(["group", "statistic"])["value"].mean()
        for g in [g for g in groups if g != "all"]:
            preserved = g in agreement.index and agreement.loc[g, "mean"] >= PRESERVED
            offdiag = [float(maps.get((g, k), float("nan"))) for k in ("map_offdiag_original", "map_offdiag")]
            before_key, after_key, label, rule = targeted(g)
            before = float(maps.get((g, before_key), float("nan")))
            after = float(maps.get((g, after_key), float("nan")))
            if not (math.isfinite(before) and math.isfinite(after)):
                map_moved = None
            elif rule == "raise":
                map_moved = after - before >= MAP_MOVED
            elif rule == "lower":
                map_moved = before - after >= MAP_MOVED
            else:
                map_moved = after <= CLOSE
            sub = wide[(wide["group"] == g) & (wide["metric"] == SUBJECT)]
            disp = float(sub["displacement_mean"].iloc[0]) if len(sub) else float("nan")
            moved_metrics = sorted(wide.loc[(wide["group"] == g) & (wide["displacement_mean"] >= MOVED), "metric"])
            still = sorted(wide.loc[(wide["group"] == g) & (wide["displacement_mean"] < MOVED), "metric"])
            ok_claim = None if map_moved is None else (preserved and map_moved)
            rows.append({
                "map_target": g,
                "agreement": float(agreement.loc[g, "mean"]) if g in agreement.index else float("nan"),
                "function_preserved": "yes" if preserved else "no",
                "targeted_statistic": label,
                "targeted": f"{before:.3f} -> {after:.3f}",
                "map_offdiag": f"{offdiag[0]:.3f} -> {offdiag[1]:.3f}",
                "reproduced": "n/a" if ok_claim is None else ("yes" if ok_claim else "no"),
                "why": _why(preserved, map_moved, rule, before, after),
                f"{SUBJECT}_displacement": disp,
                "moved_a_lot": ", ".join(moved_metrics) or "(none)",
                "barely_moved": ", ".join(still) or "(none)",
            })
        if rows:
            out.append(Table(
                "verdict", "Does this run show what seed 003 reports (§3.4)?", pd.DataFrame(rows),
                f"Computed from the records. Seed 003: a network's layer x layer CKA map can be pushed towards a "
                f"target while distillation keeps its outputs. 'function_preserved' = the manipulated copies agree "
                f"with their originals on >= {PRESERVED:g} of probes (mean). Each target is judged on what it "
                f"targets ('targeted', before -> after, mean over pairs; the perturbation's report on the test "
                f"split): first_last_max on the first<->last cell and all_max / all_min on the mean off-diagonal "
                f"CKA -- reproduced = preserved and the statistic moved towards the target by >= {MAP_MOVED:g}; the "
                f"comical maps (Fig. 5: checkerboard, cross) and explicit maps on the mean |map - target| over the "
                f"off-diagonal cells -- reproduced = preserved and that distance ends <= {CLOSE:g} (the map "
                f"'closely resembles' its target). map_offdiag = mean off-diagonal CKA before -> after, for every "
                f"target. {SUBJECT}_displacement and moved_a_lot / barely_moved (threshold displacement {MOVED:g}) "
                f"say what that does to the comparison of the original with its copy at the suite's layer. A map "
                f"target that does not preserve function tests nothing: any metric may move."))

    per = ok[(ok["probe_set"] != ALL_PROBES) & ok["statistic"].eq("displacement_mean")]
    if len(per) and per["probe_set"].nunique() > 1:
        headline = "all" if "all" in groups else (groups[0] if groups else "")
        grid = per[per["group"] == headline].pivot_table(index="metric", columns="probe_set", values="value",
                                                          aggfunc="first")
        grid = grid[[p for p in dict.fromkeys(per["probe_set"]) if p in grid.columns]].reset_index()
        grid.columns.name = None
        out.append(Table("probe_sets", f"Displacement per probe set ({headline})", grid,
                         "Weight metrics do not read probes (column 'weights')."))
    pairs = ok[(ok["statistic"] == "displacement") & (ok["model_b"] != "")]
    if len(pairs):
        p = pairs.pivot_table(index=["group", "model_a", "model_b"], columns=["metric"], values="value",
                              aggfunc="mean").reset_index()
        p.columns.name = None
        ag = df[(df["statistic"] == "agreement") & (df["metric"] == "")].groupby(["model_a", "model_b"])["value"].mean()
        p.insert(3, "agreement", [ag.get((a, b), float("nan")) for a, b in zip(p["model_a"], p["model_b"],
                                                                                  strict=True)])
        out.append(Table("pairs", "Displacement of every (original, manipulated) pair (mean over probe sets)",
                         p.rename(columns={"group": "map_target", "model_a": "original", "model_b": "manipulated"}),
                         "agreement = mean over probe sets of the fraction of equal predictions."))
    failed = df[df["status"] == "failed"]
    if len(failed):
        out.append(Table("failures", "Failed measurements", failed[["metric", "probe_set", "group", "error"]]
                         .reset_index(drop=True), "The metric raised or returned non-finite values."))
    return out


def _why(preserved: bool, map_moved: bool | None, rule: str, before: float, after: float) -> str:
    """An explanation read off the records."""
    if map_moved is None:
        return "the perturbation reported no layer map"
    if not preserved:
        return "fine-tuning towards this map changed the function (agreement below the threshold)"
    if rule == "close":
        if map_moved:
            return "the map closely resembles its target while function was preserved, as the seed reports"
        return f"the map stayed further than {CLOSE:g} from its target (mean off-diagonal |map - target|)"
    if not map_moved:
        if rule == "raise" and before >= 1.0 - MAP_MOVED and after >= before:
            return f"the targeted CKA was already near 1 ({before:.2f}): nothing left to raise"
        return "the targeted CKA barely moved at this lambda / number of epochs"
    return "the targeted CKA moved while function was preserved, as the seed reports"


def plots(records: Any, out_dir: Any) -> list[Path]:
    import numpy as np

    from .. import _plots

    df = frame(records)
    ok = df[df["status"] == "ok"]
    pairs = ok[(ok["statistic"] == "displacement") & (ok["model_b"] != "")]
    agg = ok[(ok["statistic"] == "displacement_mean") & (ok["probe_set"] == ALL_PROBES)]
    if agg.empty:
        return []
    label = _plots.safe_name(str(df["benchmark"].iloc[0]) or "manipulation")
    plt = _plots.pyplot()
    groups = [g for g in dict.fromkeys(agg["group"]) if g != "all"] or ["all"]
    headline = "all" if "all" in set(agg["group"]) else groups[0]
    order = list(agg[agg["group"] == headline].sort_values("value")["metric"])
    palette = dict(zip(groups, _plots.colors(len(groups)), strict=True))
    fig, ax = plt.subplots(figsize=(max(7.0, 0.7 * len(order) * max(1, len(groups)) ** 0.5 + 3), 4.8))
    width = 0.8 / len(groups)
    x = np.arange(len(order))
    for k, g in enumerate(groups):
        sub = agg[agg["group"] == g].set_index("metric")["value"]
        vals = [float(sub.get(m, np.nan)) for m in order]
        xs = x - 0.4 + width * (k + 0.5)
        ax.bar(xs, np.nan_to_num(vals), width=width * 0.92, color=palette[g], edgecolor="black", linewidth=0.5,
               label=g, zorder=2)
        # every pair (mean over probe sets) as a dot: the spread behind the bar
        per_pair = pairs[pairs["group"] == g].groupby(["metric", "model_a", "model_b"])["value"].mean().reset_index()
        for j, m in enumerate(order):
            v = per_pair.loc[per_pair["metric"] == m, "value"].to_numpy()
            ax.scatter(np.full(len(v), xs[j]), v, s=8, color="black", zorder=3)
    ax.axhline(0.0, color="black", linewidth=0.6)
    ax.axhline(1.0, color="0.4", linestyle="--", linewidth=0.8)
    ax.text(len(order) - 0.5, 1.0, "typical different model", ha="right", va="bottom", fontsize=7, color="0.3")
    ax.set_xticks(x)
    ax.set_xticklabels(order, rotation=35, ha="right", fontsize=8)
    ax.set_ylabel("displacement (0 = unmoved, 1 = like a different model)")
    ax.grid(axis="y", color="0.92", zorder=0)
    ax.legend(title="map target", fontsize=8, title_fontsize=8, loc="upper left")
    agreement = _agreement(df)
    note = ", ".join(f"{g}: {agreement.loc[g, 'mean']:.3f}" for g in agreement.index)
    ax.set_title(f"Manipulation (seed 003 §3.4): how far metrics move when function is preserved\n"
                 f"agreement of manipulated copies with their originals: {note}", fontsize=9)
    fig.tight_layout()
    return [_plots.save(fig, Path(out_dir) / f"{label}_displacement.png")]
