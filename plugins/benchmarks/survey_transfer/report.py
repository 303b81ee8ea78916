"""Leaderboard tables and plots of the ``survey_transfer`` benchmark (pandas, scipy, matplotlib; no torch)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from simbench.types import Table

from .._records import records_frame

OVERALL = "overall"
LAYERS = "layers"
ROLE_NAMES = {0: "in distribution", 1: "other survey", 2: "unseen survey"}


def frame(records: Any) -> Any:
    """This benchmark's rows as a normalised DataFrame (see :func:`records_frame`)."""
    return records_frame(records, ok_only=True)


def config(df: Any) -> tuple[dict[str, int], str, list[str]]:
    """(probe set -> role, baseline group, groups in model order) recorded by ``evaluate``."""
    roles = {p: int(v) for p, v in zip(df.loc[df["statistic"] == "probe_role", "probe_set"],
                                          df.loc[df["statistic"] == "probe_role", "value"])}
    base = df.loc[df["statistic"] == "baseline", "group"]
    scores = df[df["statistic"].isin(["r", "r2", "mae"])]
    groups = list(dict.fromkeys(scores["group"]))
    baseline = str(base.iloc[0]) if len(base) else (groups[0] if groups else "")
    if baseline in groups:  # baseline first
        groups.remove(baseline)
        groups.insert(0, baseline)
    return roles, baseline, groups


def _probe_order(roles: dict[str, int], df: Any) -> list[str]:
    seen = list(dict.fromkeys(df.loc[df["statistic"].isin(["r", "r2"]), "probe_set"]))
    return sorted(seen, key=lambda p: (roles.get(p, 1), seen.index(p)))


def per_model(df: Any, what: str = OVERALL) -> Any:
    """Wide table: one row per (group, model, probe set) with r, r2, mae (and mse) of ``what`` (a task or overall)."""
    sub = df[(df["model_b"] == what) & df["statistic"].isin(["r", "r2", "mae", "mse"])]
    return sub.pivot_table(index=["group", "model_a", "probe_set"], columns="statistic", values="value",
                           aggfunc="first").reset_index()


def _mean_sd(values: Any) -> tuple[float, float]:
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if not len(v):
        return math.nan, math.nan
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else math.nan


def _pm(values: Any) -> str:
    m, s = _mean_sd(values)
    if not math.isfinite(m):
        return "–"
    return f"{m:.3f} ± {s:.3f}" if math.isfinite(s) else f"{m:.3f}"


def welch_p(a: Any, b: Any) -> float:
    """Two-sided Welch t-test p-value (NaN with fewer than two values per side)."""
    from scipy import stats as sps

    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if len(a) < 2 or len(b) < 2 or (np.ptp(a) == 0 and np.ptp(b) == 0):
        return math.nan
    return float(sps.ttest_ind(a, b, equal_var=False).pvalue)


def transfer_verdict(d_r: float, d_r2: float, d_mae: float, p: float) -> str:
    """Seed 002's claim for one (unseen survey, mix): the mix beats the single survey on r, R² and MAE."""
    if not all(math.isfinite(v) for v in (d_r, d_r2, d_mae)):
        return "undetermined"
    better = [d_r > 0, d_r2 > 0, d_mae < 0]
    if all(better):
        if math.isfinite(p) and p < 0.05:
            return "reproduced: mixed training transfers better (R² difference significant, p < 0.05)"
        return "same direction as the seed (better r, R², MAE), not significant over these seeds"
    if not any(better):
        return "not reproduced: mixed training transfers worse on r, R² and MAE"
    if d_r2 > 0:
        return "mixed evidence: better R², but not on every score"
    return "not reproduced: mixed training has the lower R²"


def tables(records: Any) -> list[Table]:
    import pandas as pd

    df = frame(records)
    if df.empty or not df["statistic"].isin(["r", "r2"]).any():
        return []
    roles, baseline, groups = config(df)
    probes = _probe_order(roles, df)
    overall = per_model(df)
    out: list[Table] = []

    # ---- verdict: single survey vs each other mix on each unseen survey -------------------------------
    unseen = [p for p in probes if roles.get(p) == 2]
    rows = []
    for probe in unseen:
        base = overall[(overall["probe_set"] == probe) & (overall["group"] == baseline)]
        for g in groups[1:]:
            other = overall[(overall["probe_set"] == probe) & (overall["group"] == g)]
            d = {s: _mean_sd(other[s])[0] - _mean_sd(base[s])[0] for s in ("r", "r2", "mae")}
            p = welch_p(other["r2"], base["r2"])
            rows.append({
                "unseen survey": probe, "single survey": baseline, "mix": g,
                "R² single": _mean_sd(base["r2"])[0], "R² mix": _mean_sd(other["r2"])[0],
                "Δr": d["r"], "ΔR²": d["r2"], "ΔMAE": d["mae"], "p (Welch, R²)": p,
                "seeds": f"{len(base)} / {len(other)}", "verdict": transfer_verdict(d["r"], d["r2"], d["mae"], p),
            })
    if rows:
        out.append(Table(
            "verdict", "Seed 002's finding: does mixed-survey training transfer better to an unseen survey?",
            pd.DataFrame(rows),
            "Overall scores = averages over the tasks, per model; Δ = mix minus single survey (means over seeds); "
            "p = two-sided Welch t-test of the per-seed overall R². 'Reproduced' needs better r, R² and MAE and "
            "p < 0.05; with few seeds a real but small gain can fail the test.",
        ))

    # ---- overall scores per mix and survey, with degradation from the in-distribution survey -----------
    id_probe = next((p for p in probes if roles.get(p) == 0), probes[0])
    rows = []
    for g in groups:
        ref = overall[(overall["group"] == g) & (overall["probe_set"] == id_probe)]
        ref_r, ref_r2, ref_mae = (_mean_sd(ref[s])[0] for s in ("r", "r2", "mae"))
        for probe in probes:
            sub = overall[(overall["group"] == g) & (overall["probe_set"] == probe)]
            r, r_sd = _mean_sd(sub["r"])
            r2, r2_sd = _mean_sd(sub["r2"])
            mae, mae_sd = _mean_sd(sub["mae"])
            rows.append({
                "training mix": g, "probe set": probe, "role": ROLE_NAMES.get(roles.get(probe, 1), ""),
                "models": len(sub), "r": r, "r sd": r_sd, "R²": r2, "R² sd": r2_sd, "MAE": mae, "MAE sd": mae_sd,
                "MSE": _mean_sd(sub["mse"])[0] if "mse" in sub else math.nan,
                "Δr %": 100 * (r - ref_r) / abs(ref_r) if ref_r else math.nan,
                "ΔR² %": 100 * (r2 - ref_r2) / abs(ref_r2) if ref_r2 else math.nan,
                "ΔMAE %": 100 * (mae - ref_mae) / abs(ref_mae) if ref_mae else math.nan,
            })
    out.append(Table(
        "overall", "Overall scores per training mix and survey (mean and sd over seeds)", pd.DataFrame(rows),
        f"r, R², MAE averaged over the tasks for each model, then mean and sd over the models of a mix; "
        f"Δ % = change relative to the in-distribution survey ({id_probe}), as in seed 002's degradation table.",
    ))

    # ---- seed 002's single-survey vs mixed table, one per unseen survey ---------------------------------
    for probe in unseen:
        rows = []
        for stat, label in (("r", "Correlation r"), ("r2", "R²"), ("mae", "MAE"), ("mse", "MSE")):
            row = {"metric": label}
            for g in groups:
                sub = overall[(overall["group"] == g) & (overall["probe_set"] == probe)]
                row[g] = _pm(sub[stat]) if stat in sub else "–"
            rows.append(row)
        out.append(Table(f"unseen_{_key(probe)}", f"Unseen survey {probe}: single survey vs mix (mean ± sd)",
                         pd.DataFrame(rows), "Seed 002's comparison table, on this unseen survey."))

    # ---- per task ------------------------------------------------------------------------------------
    tasks = [t for t in dict.fromkeys(df.loc[df["statistic"] == "r", "model_b"]) if t != OVERALL]
    for stat, label in (("r", "r"), ("r2", "R²"), ("mae", "MAE")):
        sub = df[(df["statistic"] == stat) & df["model_b"].isin(tasks)]
        rows = []
        for task in tasks:
            row: dict[str, Any] = {"task": task}
            for probe in probes:
                for g in groups:
                    v = sub[(sub["model_b"] == task) & (sub["probe_set"] == probe) & (sub["group"] == g)]["value"]
                    row[f"{_short(probe)} · {g}"] = _mean_sd(v)[0]
            rows.append(row)
        out.append(Table(f"per_task_{stat}", f"Per-task {label} by survey and training mix (mean over seeds)",
                         pd.DataFrame(rows),
                         "Columns: probe set (survey) · training mix. Seed 002's per-feature tables."))

    # ---- layer maps: do they tell robust from fragile models? ------------------------------------------
    out.extend(layer_tables(df, overall, roles, groups, id_probe))
    return out


def layer_tables(df: Any, overall: Any, roles: dict[str, int], groups: list[str], id_probe: str) -> list[Table]:
    import pandas as pd
    from scipy import stats as sps

    lay = df[df["model_b"] == LAYERS]
    if lay.empty:
        return []
    metric = str(lay["metric"].iloc[0])
    wide = lay.pivot_table(index=["group", "model_a", "probe_set"], columns="statistic", values="value",
                           aggfunc="first").reset_index()
    id_r2 = {m: v for m, v in zip(overall.loc[overall["probe_set"] == id_probe, "model_a"],
                                  overall.loc[overall["probe_set"] == id_probe, "r2"])}
    rows = []
    for rec in wide.to_dict("records"):
        if roles.get(rec["probe_set"]) != 2:
            continue
        r2 = overall[(overall["model_a"] == rec["model_a"]) & (overall["probe_set"] == rec["probe_set"])]["r2"]
        drop = id_r2.get(rec["model_a"], math.nan) - (float(r2.iloc[0]) if len(r2) else math.nan)
        ref = wide[(wide["model_a"] == rec["model_a"]) & (wide["probe_set"] == id_probe)]
        rows.append({
            "model": rec["model_a"], "training mix": rec["group"], "unseen survey": rec["probe_set"],
            "R² drop": drop,
            "block ID": float(ref["block_score"].iloc[0]) if len(ref) else math.nan,
            "block unseen": rec.get("block_score", math.nan),
            "Δblock": rec.get("delta_block_score", math.nan),
            "Δoff-diag mean": rec.get("delta_offdiag_mean", math.nan),
        })
    if not rows:
        return []
    per = pd.DataFrame(rows)
    out = [Table("layer_maps", f"Layer maps ({metric}): in-distribution vs unseen survey, per model", per,
                 f"R² drop = overall R² on {id_probe} minus on the unseen survey (larger = more fragile); block = "
                 "block_score of the layer x layer map (0 = every layer distinct, 1 = all alike); Δ = unseen minus "
                 "in distribution. Seed 000's pattern: fragile models become block-structured on shifted inputs.")]
    verdict_rows = []
    for stat, label in (("Δblock", "block score"), ("Δoff-diag mean", "mean off-diagonal similarity")):
        ok = per[np.isfinite(per["R² drop"]) & np.isfinite(per[stat])]
        n = len(ok)
        if n >= 3 and np.ptp(ok["R² drop"]) > 0 and np.ptp(ok[stat]) > 0:
            res = sps.spearmanr(ok["R² drop"], ok[stat])
            rho, p = float(res.statistic), float(res.pvalue)
        else:
            rho, p = math.nan, math.nan
        # do the group means order the mixes the same way as their fragility?
        means = ok.groupby("training mix")[["R² drop", stat]].mean()
        if len(means) >= 2:
            frag, rob = means["R² drop"].idxmax(), means["R² drop"].idxmin()
            order = "fragile mix has the larger mean Δ" if means.loc[frag, stat] > means.loc[rob, stat] else \
                "robust mix has the larger (or equal) mean Δ"
        else:
            frag = rob = ""
            order = ""
        if math.isfinite(rho) and rho > 0 and p < 0.05:
            verdict = "yes: models that degrade more gain more " + label
        elif math.isfinite(rho) and rho < 0 and p < 0.05:
            verdict = "opposite: models that degrade more gain less " + label
        else:
            verdict = "no: the change in " + label + " does not track the R² drop (not significant)"
        verdict_rows.append({"layer statistic": label, "Spearman ρ (R² drop vs Δ)": rho, "p": p, "pairs": n,
                             "most fragile mix": frag, "most robust mix": rob, "group means": order,
                             "verdict": verdict})
    out.append(Table(
        "layer_verdict", "Do the layer maps tell the robust models from the fragile ones?", pd.DataFrame(verdict_rows),
        "Spearman correlation over (model, unseen survey) pairs between the R² drop and the rise of the map "
        "statistic; 'yes' needs ρ > 0 with p < 0.05. 'group means' compares the mean rise of the mix that degrades "
        "most with the mix that degrades least.",
    ))
    return out


def _short(probe: str) -> str:
    return probe.split("/", 1)[1] if "/" in probe else probe


def _key(probe: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9_]+", "_", _short(probe)).strip("_")


# --------------------------------------------------------------------------
# Plots
# --------------------------------------------------------------------------


def plots(records: Any, out_dir: str | Path) -> list[Path]:
    """``<label>_r2.png`` and ``<label>_r.png``: per-task scores per survey (one panel each), bars per training
    mix with ±sd whiskers; ``<label>_r_heatmap.png``: mean r per (survey, mix) x task."""
    df = frame(records)
    if df.empty or not df["statistic"].isin(["r", "r2"]).any():
        return []
    from .. import _plots

    plt = _plots.pyplot()
    roles, _, groups = config(df)
    probes = _probe_order(roles, df)
    label = _plots.safe_name(str(df["benchmark"].iloc[0]) or "survey_transfer")
    tasks = [t for t in dict.fromkeys(df.loc[df["statistic"] == "r", "model_b"]) if t != OVERALL] + [OVERALL]
    colours = _plots.colors(len(groups))
    out = Path(out_dir)
    written: list[Path] = []
    for stat, ylabel in (("r2", "R²"), ("r", "Pearson r")):
        sub = df[df["statistic"] == stat]
        fig, axes = plt.subplots(1, len(probes), figsize=(3.6 * len(probes) + 0.8, 4.2), sharey=True, squeeze=False)
        floor = -1.0
        for ax, probe in zip(axes[0], probes, strict=True):
            width = 0.8 / max(1, len(groups))
            x = np.arange(len(tasks))
            for k, g in enumerate(groups):
                means, sds = [], []
                for task in tasks:
                    v = sub[(sub["probe_set"] == probe) & (sub["group"] == g) & (sub["model_b"] == task)]["value"]
                    m, s = _mean_sd(v)
                    means.append(m)
                    sds.append(s if math.isfinite(s) else 0.0)
                means_a = np.array(means)
                shown = np.clip(np.nan_to_num(means_a, nan=0.0), floor, None)
                pos = x - 0.4 + width * (k + 0.5)
                ax.bar(pos, shown, width, color=colours[k], edgecolor="black", linewidth=0.5,
                       label=g if probe == probes[0] else None, zorder=2)
                ax.errorbar(pos, shown, yerr=sds, fmt="none", ecolor="black", elinewidth=0.8, capsize=2, zorder=3)
                for xp, m in zip(pos, means_a, strict=True):
                    if math.isfinite(m) and m < floor:  # clipped: write the value on the bar
                        ax.text(xp, floor + 0.03, f"{m:.1f}", rotation=90, ha="center", va="bottom", fontsize=6)
            ax.axhline(0, color="black", linewidth=0.6)
            ax.set_xticks(x)
            ax.set_xticklabels(tasks, rotation=40, ha="right", fontsize=8)
            ax.set_title(f"{_short(probe)}\n({ROLE_NAMES.get(roles.get(probe, 1), '')})", fontsize=9)
            ax.grid(axis="y", color="0.9", zorder=0)
            ax.set_ylim(floor, 1.02)
        axes[0, 0].set_ylabel(f"{ylabel} (mean ± sd over seeds)")
        fig.legend(loc="lower center", ncol=len(groups), fontsize=8, title="training mix", title_fontsize=8,
                   bbox_to_anchor=(0.5, -0.12))
        fig.suptitle(f"{ylabel} per task and survey, by training mix", fontsize=11)
        fig.tight_layout()
        written.append(_plots.save(fig, out / f"{label}_{stat}.png"))
    sub = df[df["statistic"] == "r"]
    rows, grid = [], []
    for probe in probes:
        for g in groups:
            rows.append(f"{_short(probe)} · {g}")
            grid.append([_mean_sd(sub[(sub["probe_set"] == probe) & (sub["group"] == g) & (sub["model_b"] == t)]
                                  ["value"])[0] for t in tasks])
    written.append(_plots.heatmap(np.array(grid), rows, tasks, out / f"{label}_r_heatmap.png",
                                  title="Pearson r per task (mean over seeds): survey · training mix",
                                  vmin=-0.2, vmax=1.0, cmap="viridis", colorbar_label="r"))
    return written
