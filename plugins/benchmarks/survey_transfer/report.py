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


def holm(pvalues: Any) -> list[float]:
    """Holm's step-down adjusted p-values (NaNs stay NaN and are not counted in the family)."""
    p = [float(v) for v in pvalues]
    idx = sorted((i for i, v in enumerate(p) if math.isfinite(v)), key=lambda i: p[i])
    m = len(idx)
    out = [math.nan] * len(p)
    running = 0.0
    for rank, i in enumerate(idx):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def transfer_verdict(d_r: float, d_r2: float, d_mae: float, p: float, alpha: float = 0.05) -> str:
    """Seed 002's claim for one (unseen survey, mix): the mix beats the single survey on r, R² and MAE, with the
    (Holm-adjusted) Welch p of the R² difference below ``alpha``; anything else is "not reproduced"."""
    if not all(math.isfinite(v) for v in (d_r, d_r2, d_mae)):
        return "undetermined: a score is missing"
    better = [d_r > 0, d_r2 > 0, d_mae < 0]
    if all(better):
        if math.isfinite(p) and p < alpha:
            return f"reproduced: the mix transfers better (r, R², MAE; adjusted p < {alpha:g})"
        return f"not reproduced: better r, R² and MAE in the mean, but not significant (adjusted p ≥ {alpha:g})"
    if not any(better):
        return "not reproduced: the mix transfers worse on r, R² and MAE"
    if d_r2 > 0:
        return "not reproduced: mixed evidence (better R², not on every score)"
    return "not reproduced: the mix has the lower R²"


def declared(df: Any) -> tuple[dict[int, str], float]:
    """(role code -> mix: 1 = seed_mix, 2 = control_mix, 3 = overlap_mix; alpha) recorded by ``evaluate``."""
    rows = df[df["statistic"] == "mix_role"]
    roles = {int(v): str(g) for g, v in zip(rows["group"], rows["value"], strict=True)}
    a = df.loc[df["statistic"] == "alpha", "value"]
    return roles, float(a.iloc[0]) if len(a) else 0.05


def _compare(overall: Any, probe: str, a: str, b: str, stat: str = "r2") -> dict[str, Any]:
    """Mix ``b`` minus mix ``a`` on one probe set: mean differences of r, R², MAE and the Welch p of ``stat``."""
    sa = overall[(overall["probe_set"] == probe) & (overall["group"] == a)]
    sb = overall[(overall["probe_set"] == probe) & (overall["group"] == b)]
    d = {s: _mean_sd(sb[s])[0] - _mean_sd(sa[s])[0] for s in ("r", "r2", "mae")}
    return {"a": sa, "b": sb, "d": d, "p": welch_p(sb[stat], sa[stat]), "n": f"{len(sa)} / {len(sb)}"}


def control_verdict(seed_gain_sig: bool, seed_gain: float, ctrl_gain: float, ctrl_p: float, seed_vs_ctrl: float,
                    seed_vs_ctrl_p: float, alpha: float = 0.05) -> str:
    """Diversity or resemblance, for one unseen survey (the pre-declared rule; p-values Holm-adjusted)."""
    if not seed_gain_sig:
        return "nothing to separate: the seed's mix does not transfer significantly better here"
    if math.isfinite(ctrl_p) and ctrl_p < alpha and ctrl_gain > 0:
        if math.isfinite(seed_vs_ctrl_p) and seed_vs_ctrl_p < alpha and seed_vs_ctrl > 0:
            return "both: a non-resembling added survey helps too, the resembling one significantly more"
        return "diversity: a non-resembling added survey helps too (control gain significant)"
    if math.isfinite(seed_vs_ctrl_p) and seed_vs_ctrl_p < alpha and seed_vs_ctrl > 0:
        return "resemblance: the non-resembling added survey gives no significant gain and the seed's mix beats it"
    return "undetermined: the control's gain is neither significant nor significantly smaller"


def overlap_verdict(d_r: float, p: float, alpha: float = 0.05) -> str:
    """Seed 002's "a random mix transfers better than a maximum-overlap mix" on one unseen survey (overall r)."""
    if not math.isfinite(d_r):
        return "undetermined: a score is missing"
    if d_r > 0 and math.isfinite(p) and p < alpha:
        return f"reproduced: the random mix has the higher r (adjusted p < {alpha:g})"
    if d_r > 0:
        return f"not reproduced: higher r for the random mix in the mean, not significant (adjusted p ≥ {alpha:g})"
    if math.isfinite(p) and p < alpha:
        return f"not reproduced: the overlap mix has the significantly higher r (adjusted p < {alpha:g})"
    return "not reproduced: the overlap mix has the higher (or equal) mean r, not significant"


def tables(records: Any) -> list[Table]:
    import pandas as pd

    df = frame(records)
    if df.empty or not df["statistic"].isin(["r", "r2"]).any():
        return []
    roles, baseline, groups = config(df)
    mix_roles, alpha = declared(df)
    probes = _probe_order(roles, df)
    overall = per_model(df)
    out: list[Table] = []
    unseen = [p for p in probes if roles.get(p) == 2]
    others = groups[1:]
    seed_mix = mix_roles.get(1) or (others[0] if others else "")
    control, overlap = mix_roles.get(2, ""), mix_roles.get(3, "")

    # ---- verdict: single survey vs each other mix on each unseen survey (Holm over the unseen surveys) ------
    rows = []
    verdict_of: dict[tuple[str, str], tuple[float, str]] = {}
    for g in others:
        comps = [_compare(overall, probe, baseline, g) for probe in unseen]
        adjusted = holm([c["p"] for c in comps])
        for probe, c, p_adj in zip(unseen, comps, adjusted, strict=True):
            d = c["d"]
            verdict = transfer_verdict(d["r"], d["r2"], d["mae"], p_adj, alpha)
            verdict_of[(probe, g)] = (p_adj, verdict)
            role = {seed_mix: "seed's mix", control: "control", overlap: "overlap"}.get(g, "")
            rows.append({
                "unseen survey": probe, "single survey": baseline, "mix": g, "mix role": role,
                "R² single": _mean_sd(c["a"]["r2"])[0], "R² mix": _mean_sd(c["b"]["r2"])[0],
                "Δr": d["r"], "ΔR²": d["r2"], "ΔMAE": d["mae"], "p (Welch, R²)": c["p"], "p (Holm)": p_adj,
                "seeds": c["n"], "verdict": verdict,
            })
    verdict_table = None
    if rows:
        verdict_table = Table(
            "verdict", "Seed 002's finding: does mixed-survey training transfer better to an unseen survey?",
            pd.DataFrame(rows),
            "Overall scores = averages over the tasks, per model; Δ = mix minus single survey (means over seeds, "
            "the seeds are the units); p = two-sided Welch t-test of the per-seed overall R², Holm-adjusted over "
            f"the {len(unseen)} unseen surveys for each mix (declared before the run). 'Reproduced' needs better r, "
            f"R² and MAE and adjusted p < {alpha:g}; anything else is 'not reproduced'.",
        )

    # ---- control: does a non-resembling added survey help too? ----------------------------------------
    control_rows = []
    if control and seed_mix and unseen:
        ctrl = [_compare(overall, probe, baseline, control) for probe in unseen]
        versus = [_compare(overall, probe, control, seed_mix) for probe in unseen]
        ctrl_adj, vs_adj = holm([c["p"] for c in ctrl]), holm([c["p"] for c in versus])
        for k, probe in enumerate(unseen):
            p_seed, v_seed = verdict_of.get((probe, seed_mix), (math.nan, ""))
            seed_sig = v_seed.startswith("reproduced")
            seed_gain = _compare(overall, probe, baseline, seed_mix)["d"]["r2"]
            control_rows.append({
                "unseen survey": probe, "seed's mix": seed_mix, "control mix": control,
                "ΔR² seed's mix": seed_gain, "p seed's mix (Holm)": p_seed,
                "ΔR² control": ctrl[k]["d"]["r2"], "p control (Holm)": ctrl_adj[k],
                "ΔR² seed's mix − control": versus[k]["d"]["r2"], "p seed's mix vs control (Holm)": vs_adj[k],
                "seeds": f"{ctrl[k]['n']} / {versus[k]['n'].split(' / ')[1]}",
                "verdict": control_verdict(seed_sig, seed_gain, ctrl[k]["d"]["r2"], ctrl_adj[k], versus[k]["d"]["r2"],
                                           vs_adj[k], alpha),
            })

    # ---- overlap: random mix vs maximum-overlap mix of the same surveys (seed 002: r 0.810 vs 0.796) -----
    overlap_rows = []
    if overlap and seed_mix and unseen:
        comps = [_compare(overall, probe, overlap, seed_mix, stat="r") for probe in unseen]
        adjusted = holm([c["p"] for c in comps])
        for probe, c, p_adj in zip(unseen, comps, adjusted, strict=True):
            overlap_rows.append({
                "unseen survey": probe, "random mix": seed_mix, "overlap mix": overlap,
                "r random": _mean_sd(c["b"]["r"])[0], "r overlap": _mean_sd(c["a"]["r"])[0],
                "Δr": c["d"]["r"], "ΔR²": c["d"]["r2"], "ΔMAE": c["d"]["mae"],
                "p (Welch, r)": c["p"], "p (Holm)": p_adj, "seeds": f"{len(c['a'])} / {len(c['b'])}",
                "verdict": overlap_verdict(c["d"]["r"], p_adj, alpha),
            })

    # ---- the questions in one table (the board's headline) ---------------------------------------------
    summary = []
    for probe in unseen:
        if seed_mix:
            summary.append({"question": f"{seed_mix} beats {baseline} on {_short(probe)}",
                            "verdict": verdict_of.get((probe, seed_mix), (math.nan, "undetermined"))[1]})
    for row in control_rows:
        summary.append({"question": f"diversity or resemblance on {_short(row['unseen survey'])}",
                        "verdict": row["verdict"]})
    for row in overlap_rows:
        summary.append({"question": f"random beats overlap mix on {_short(row['unseen survey'])}",
                        "verdict": row["verdict"]})
    if summary and (control_rows or overlap_rows):
        out.append(Table("summary", "Seed 002's questions and their verdicts", pd.DataFrame(summary),
                         "Each verdict comes from the tables below (tests over seeds, Holm over the unseen surveys)."))
    if verdict_table is not None:
        out.append(verdict_table)
    if control_rows:
        out.append(Table(
            "control", "Diversity or resemblance? The control mix adds a survey that does not resemble the unseen ones",
            pd.DataFrame(control_rows),
            "ΔR² = difference of mean per-seed overall R²; p = two-sided Welch over seeds, Holm-adjusted over the "
            "unseen surveys within each comparison. Rule (declared before the run): if the seed's mix is not "
            "significantly better than the single survey there is nothing to separate; 'diversity' = the control "
            "mix also gains significantly; 'resemblance' = it does not, and the seed's mix beats it significantly; "
            "otherwise undetermined.",
        ))
    if overlap_rows:
        out.append(Table(
            "overlap", "Random mix vs maximum-overlap mix of the same surveys", pd.DataFrame(overlap_rows),
            "Overlap mix: half as many distinct galaxies, each seen through both surveys (same number of images). "
            "Δ = random minus overlap; p = two-sided Welch over seeds of the per-seed overall r (the seed's number), "
            f"Holm-adjusted over the unseen surveys; 'reproduced' needs higher r and adjusted p < {alpha:g}.",
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
    out.extend(layer_tables(df, overall, roles, groups, id_probe, alpha))
    return out


def layer_tables(df: Any, overall: Any, roles: dict[str, int], groups: list[str], id_probe: str,
                 alpha: float = 0.05) -> list[Table]:
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
    unseen = list(dict.fromkeys(per["unseen survey"]))
    for stat, label in (("Δblock", "block score"), ("Δoff-diag mean", "mean off-diagonal similarity")):
        found = []
        for probe in unseen:  # the models are the units: one test per unseen survey, Holm over the surveys
            ok = per[(per["unseen survey"] == probe) & np.isfinite(per["R² drop"]) & np.isfinite(per[stat])]
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
                frag = rob = order = ""
            found.append((probe, rho, p, n, frag, rob, order))
        adjusted = holm([f[2] for f in found])
        for (probe, rho, p, n, frag, rob, order), p_adj in zip(found, adjusted, strict=True):
            verdict_rows.append({"layer statistic": label, "unseen survey": probe, "Spearman ρ (R² drop vs Δ)": rho,
                                 "p": p, "p (Holm)": p_adj, "models": n, "most fragile mix": frag,
                                 "most robust mix": rob, "group means": order,
                                 "verdict": layer_verdict(rho, p_adj, label, alpha)})
    out.append(Table(
        "layer_verdict", "Do the layer maps tell the robust models from the fragile ones?", pd.DataFrame(verdict_rows),
        "Per unseen survey, Spearman correlation over the mapped models (the units) between the R² drop and the rise "
        f"of the map statistic, Holm-adjusted over the unseen surveys; 'reproduced' needs ρ > 0 with adjusted p < "
        f"{alpha:g}, a significant ρ < 0 is the opposite. 'group means' compares the mean rise of the mix that "
        "degrades most with the mix that degrades least.",
    ))
    return out


def layer_verdict(rho: float, p: float, label: str, alpha: float = 0.05) -> str:
    """Seed 000's link (a model that fails out of distribution gets more similar layers) on one unseen survey."""
    if math.isfinite(rho) and math.isfinite(p) and p < alpha:
        if rho > 0:
            return f"reproduced: models that degrade more gain more {label}"
        return f"not reproduced: the opposite, models that degrade more gain less {label} (significant)"
    return f"not reproduced: the change in {label} does not track the R² drop (not significant)"


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
