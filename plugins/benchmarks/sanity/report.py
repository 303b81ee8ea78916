"""Leaderboard tables and figures of the ``sanity`` benchmark, from its records alone (no torch)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from simbench.types import Table

from .._records import records_frame as frame
from .common import INFO, INVARIANCE_GROUP, TRANSFORMS

#: seed 003: linear CKA "quickly drop[s] below 0.2"; a metric that stays above ROBUST keeps its verdict
LOW, ROBUST = 0.2, 0.8
#: the read-out may lose at most this much accuracy for a transform to count as usefulness-preserving
ACCURACY_SLACK = 0.02
SUBJECT = "linear_cka"  # the metric seed 003 examines
LABELS = {"class_translation": "class translation (distance, RMS radii)",
          "invertible_linear": "invertible map X M, M ~ N(mu, sigma^2) (mu)",
          "outlier": "one outlier (distance, RMS radii)"}
CELL = {("1", "1"): "pass", ("1", "0"): "FAIL", ("0", "1"): "holds (undeclared)", ("0", "0"): "no"}


def curves(df: Any) -> Any:
    """One row per metric x transform x strength with value/scaled mean and sd (ok rows only)."""
    rows = df[(df["status"] == "ok") & df["group"].isin(TRANSFORMS) & (df["metric"] != "")]
    if rows.empty:
        return rows
    wide = rows.pivot_table(index=["metric", "group", "coord_strength"], columns="statistic", values="value",
                            aggfunc="first").reset_index()
    wide.columns.name = None
    wide = wide.rename(columns={"group": "transform", "coord_strength": "strength"})
    order = {t: k for k, t in enumerate(TRANSFORMS)}
    return wide.sort_values(["metric", "transform", "strength"], key=lambda c: c.map(order) if c.name == "transform"
                            else c).reset_index(drop=True)


def accuracy_curves(df: Any) -> Any:
    rows = df[(df["status"] == "ok") & (df["statistic"] == "probe_accuracy_mean")].copy()
    rows["strength"] = rows["coord_strength"].astype(float)
    return rows.rename(columns={"group": "transform", "value": "probe_accuracy"})[
        ["transform", "strength", "probe_accuracy"]].sort_values(["transform", "strength"])


def _limits(df: Any) -> dict[str, float]:
    rows = df[(df["statistic"] == "linear_cka_limit") & (df["status"] == "ok")]
    return {str(g): float(v) for g, v in zip(rows["group"], rows["value"], strict=True)}


def _original_accuracy(df: Any) -> float:
    rows = df[(df["statistic"] == "probe_accuracy_original") & (df["status"] == "ok")]
    return float(rows["value"].iloc[0]) if len(rows) else float("nan")


def extremes(cur: Any) -> Any:
    """Per metric x transform: the lowest calibrated value along the sweep and the strength where it occurs."""
    idx = cur.groupby(["metric", "transform"])["scaled_mean"].idxmin().dropna()
    ext = cur.loc[idx, ["metric", "transform", "strength", "scaled_mean", "value_mean"]]
    return ext.rename(columns={"scaled_mean": "lowest_scaled", "value_mean": "lowest_value",
                               "strength": "at_strength"})


def tables(records: Any) -> list[Table]:
    import pandas as pd

    df = frame(records)
    if df.empty:
        return []
    out: list[Table] = []
    cur = curves(df)
    acc = accuracy_curves(df)
    acc0 = _original_accuracy(df)

    # 1. headline: lowest calibrated value per transform, ranked by the mean over transforms
    if len(cur):
        ext = extremes(cur)
        head = ext.pivot_table(index="metric", columns="transform", values="lowest_scaled", aggfunc="first")
        head = head[[t for t in TRANSFORMS if t in head.columns]]
        head["mean_lowest"] = head.mean(axis=1)
        head = head.sort_values(["mean_lowest"], ascending=False).reset_index()
        head.columns.name = None
        head.insert(0, "rank", range(1, len(head) + 1))
        worst_acc = {t: float(acc.loc[acc["transform"] == t, "probe_accuracy"].min()) for t in head.columns
                     if t in TRANSFORMS}
        acc_note = ", ".join(f"{t} {v:.3f}" for t, v in worst_acc.items())
        out.append(Table(
            "sanity", "Lowest similarity along usefulness-preserving transforms (calibrated: 1 = identical)", head,
            f"metric(X, T(X)) for real activations X and the transformed copy T(X), minimum over each sweep "
            f"(means over models and random draws); rank 1 = stays most similar. A linear read-out fitted on "
            f"T(X) scores {acc0:.3f} on the original X and at worst: {acc_note} -- the transforms keep the "
            f"representation about as useful, so a metric that drops near 0 misjudges it (seed 003 §3.2-3.3)."))

    # 2. verdict on seed 003's claims
    verdict = verdict_rows(cur, acc, acc0, _limits(df))
    if verdict:
        v = pd.DataFrame(verdict)
        claims = v[v["claim"] != "(overall)"]
        out.append(Table(
            "verdict", "Does this run show what seed 003 reports (§3.2-3.3)?", v,
            f"Computed from the records. Seed 003: linear CKA between X and T(X) drops below ~{LOW:g} under a "
            f"class translation that keeps the classes linearly separable, under an invertible random linear map, "
            f"and when one point moves far away, although a linear classifier does as well on T(X). 'reproduced' "
            f"needs linear CKA's lowest calibrated value < {LOW:g} with the read-out accuracy within "
            f"{ACCURACY_SLACK:g} of the original; {SUBJECT}_limit = linear CKA between X and the transform's limit at "
            f"infinite strength (CKA with the class indicator; with X 1 for the invertible map), the floor the "
            f"sweep can reach. Metrics whose lowest value stays >= {ROBUST:g} are listed as robust. {int((claims['reproduced'] == 'yes').sum())} of {len(claims)} claims reproduced."))

    # 3. declared invariances
    inv = df[(df["group"] == INVARIANCE_GROUP) & (df["status"] == "ok")]
    if len(inv):
        wide = inv.pivot_table(index=["metric", "model_b"], columns="statistic", values="value",
                               aggfunc="first").reset_index()
        wide["cell"] = [CELL[(str(int(d)), str(int(h)))] for d, h in zip(wide["declared"], wide["holds"], strict=True)]
        grid = wide.pivot_table(index="metric", columns="model_b", values="cell", aggfunc="first").fillna("n/a")
        grid = grid.reset_index()
        grid.columns.name = None
        tol = df.loc[(df["group"] == INFO) & (df["statistic"] == "tolerance"), "value"]
        failed = wide[(wide["declared"] == 1) & (wide["holds"] == 0)]
        declared = wide[wide["declared"] == 1]
        out.append(Table(
            "invariances", "Declared invariances, checked on real activations / weights", grid,
            f"pass = declared and holds; FAIL = declared but the value changes; 'holds (undeclared)' = invariant "
            f"although not declared; no = not declared and not invariant; n/a = does not apply to this kind of "
            f"metric. Holds = max relative change <= {float(tol.iloc[0]) if len(tol) else float('nan'):g} under "
            f"random members of the group (simbench.testing transforms) applied to either or both of two models' "
            f"representations. {len(declared) - len(failed)} of {len(declared)} declared invariances pass."))
        detail = wide[["metric", "model_b", "declared", "holds", "change"]].rename(columns={"model_b": "invariance"})
        detail["declared"] = detail["declared"].astype(int)
        detail["holds"] = detail["holds"].astype(int)
        out.append(Table("invariance_changes", "Invariance checks: the largest relative change observed", detail,
                         "change = max |metric(t(a), b) - metric(a, b)| over draws and over transforming the "
                         "first, second or both arguments, divided by the width of the metric's value range."))

    # 4. the curves
    if len(cur):
        cols = ["metric", "transform", "strength", "value_mean", "value_sd", "scaled_mean", "scaled_sd"]
        table = cur[[c for c in cols if c in cur.columns]].merge(acc, on=["transform", "strength"], how="left")
        out.append(Table("curves", "metric(X, T(X)) along each transform", table,
                         "value = the metric's own scale; scaled = calibrated (0 = unrelated, 1 = identical); "
                         "probe_accuracy = linear read-out fitted on T(X)."))
    failed_rows = df[df["status"] == "failed"]
    if len(failed_rows):
        out.append(Table("failures", "Failed measurements", failed_rows[["metric", "group", "model_b", "error"]]
                         .rename(columns={"model_b": "setting"}).reset_index(drop=True),
                         "The metric raised or returned non-finite values; the benchmark went on."))
    return out


def _why(ok: bool | None, lim: float) -> str:
    """An explanation read off the records: a high limit caps how far linear CKA can fall."""
    if ok is None or not math.isfinite(lim):
        return ""
    if ok:
        return "linear CKA fell as the seed reports"
    if lim >= LOW:
        return (f"at infinite strength linear CKA tends to {lim:.2f} (>= {LOW:g}): this representation carries "
                f"much of its variance along the moved direction, unlike the seed's isotropic synthetic data")
    return "linear CKA stayed above the threshold although its limit is low: the sweep stops short"


def _yes(ok: bool | None) -> str:
    return "n/a" if ok is None else ("yes" if ok else "no")


def verdict_rows(cur: Any, acc: Any, acc0: float, limit: dict[str, float] | None = None) -> list[dict[str, Any]]:
    if cur is None or not len(cur):
        return []
    ext = extremes(cur)
    rows = []
    claims = {"class_translation": "class translation keeping linear separability drives linear CKA towards 0",
              "invertible_linear": "an invertible random linear map drives linear CKA towards 0",
              "outlier": "moving a single point far away drives linear CKA towards 0"}
    for transform, claim in claims.items():
        sub = ext[ext["transform"] == transform]
        if sub.empty:
            continue
        lowest_acc = float(acc.loc[acc["transform"] == transform, "probe_accuracy"].min())
        kept = (acc0 - lowest_acc) <= ACCURACY_SLACK if math.isfinite(lowest_acc) and math.isfinite(acc0) else None
        subject = sub[sub["metric"] == SUBJECT]
        robust = sorted(sub.loc[sub["lowest_scaled"] >= ROBUST, "metric"])
        if len(subject):
            low = float(subject["lowest_scaled"].iloc[0])
            at = float(subject["at_strength"].iloc[0])
            ok = (low < LOW and bool(kept)) if kept is not None else None
            observed = f"{SUBJECT} {low:.3f} at strength {at:g}; read-out accuracy {acc0:.3f} -> >= {lowest_acc:.3f}"
        else:
            ok, observed = None, f"{SUBJECT} not in this suite"
        lim = (limit or {}).get(transform, float("nan"))
        rows.append({"claim": claim, "observed": observed, "reproduced": _yes(ok),
                     f"{SUBJECT}_limit": lim, "why": _why(ok, lim),
                     "robust_metrics": ", ".join(robust) if robust else "(none)"})
    if rows:
        done = [r for r in rows if r["reproduced"] != "n/a"]
        rows.append({"claim": "(overall)", "observed": f"{sum(r['reproduced'] == 'yes' for r in done)} of "
                     f"{len(done)} reproduced", "reproduced": _yes(bool(done) and all(r["reproduced"] == "yes"
                                                                                     for r in done)),
                     f"{SUBJECT}_limit": float("nan"), "why": "", "robust_metrics": ""})
    return rows


# --------------------------------------------------------------------------
# Plots
# --------------------------------------------------------------------------


def plots(records: Any, out_dir: Any) -> list[Path]:
    from .. import _plots

    df = frame(records)
    if df.empty:
        return []
    label = _plots.safe_name(str(df["benchmark"].iloc[0]) or "sanity")
    out = Path(out_dir)
    written = []
    cur = curves(df)
    if len(cur):
        written.append(_curve_figure(cur, accuracy_curves(df), _original_accuracy(df), out / f"{label}_curves.png"))
    inv = df[(df["group"] == INVARIANCE_GROUP) & (df["status"] == "ok")]
    if len(inv):
        written.append(_invariance_figure(inv, out / f"{label}_invariances.png"))
    return written


def _curve_figure(cur: Any, acc: Any, acc0: float, path: Path) -> Path:
    from .. import _plots

    plt = _plots.pyplot()
    transforms = [t for t in TRANSFORMS if t in set(cur["transform"])]
    metrics = list(dict.fromkeys(cur["metric"]))
    palette = dict(zip(metrics, _plots.colors(len(metrics)), strict=True))
    styles = ["-", "--", ":", "-."]
    fig, axes = plt.subplots(2, len(transforms), figsize=(5.2 * len(transforms) + 2.4, 7.4), squeeze=False,
                             gridspec_kw={"height_ratios": [3, 1]}, sharex="col")
    for col, t in enumerate(transforms):
        ax = axes[0][col]
        for k, m in enumerate(metrics):
            sub = cur[(cur["metric"] == m) & (cur["transform"] == t)].sort_values("strength")
            if sub.empty:
                continue
            width = 2.2 if m == SUBJECT else 1.2
            ax.plot(sub["strength"], sub["scaled_mean"], marker="o", markersize=3, linewidth=width, color=palette[m],
                    linestyle=styles[(k // 10) % 4], label=m, zorder=3 if m == SUBJECT else 2)
            if "scaled_sd" in sub and sub["scaled_sd"].fillna(0).gt(0).any():
                ax.fill_between(sub["strength"], sub["scaled_mean"] - sub["scaled_sd"].fillna(0),
                                sub["scaled_mean"] + sub["scaled_sd"].fillna(0), color=palette[m], alpha=0.08)
        ax.axhspan(0, LOW, color="#C44E52", alpha=0.06, zorder=0)
        ax.set_ylim(-0.05, 1.05)
        ax.set_title(LABELS.get(t, t), fontsize=9)
        ax.grid(color="0.92")
        if col == 0:
            ax.set_ylabel("metric(X, T(X)), calibrated\n(1 = identical, 0 = unrelated)")
        _xscale(ax, cur.loc[cur["transform"] == t, "strength"])
        ax2 = axes[1][col]
        sub = acc[acc["transform"] == t].sort_values("strength")
        ax2.plot(sub["strength"], sub["probe_accuracy"], marker="s", markersize=3, color="black",
                 label="read-out on T(X)")
        if math.isfinite(acc0):
            ax2.axhline(acc0, color="0.5", linestyle="--", linewidth=0.8, label="read-out on X")
        ax2.set_ylim(max(0.0, min([acc0, *sub["probe_accuracy"].tolist()]) - 0.05), 1.01)
        ax2.set_xlabel(LABELS.get(t, t).split("(")[-1].rstrip(")"))
        ax2.grid(color="0.92")
        if col == 0:
            ax2.set_ylabel("linear read-out\naccuracy")
            ax2.legend(fontsize=7, loc="lower left")
        _xscale(ax2, sub["strength"])
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.6), fontsize=8, frameon=False)
    fig.suptitle("Sanity (seed 003 §3.2-3.3): similarity of a representation to a transformed copy that is as useful",
                 fontsize=11)
    fig.tight_layout()
    return _plots.save(fig, path)


def _xscale(ax: Any, strengths: Any) -> None:
    s = [float(v) for v in strengths if float(v) > 0]
    if s and max(s) / min(s) >= 20:
        ax.set_xscale("symlog", linthresh=min(s))


def _invariance_figure(inv: Any, path: Path) -> Path:
    import numpy as np
    from matplotlib.colors import ListedColormap

    from .. import _plots

    plt = _plots.pyplot()
    wide = inv.pivot_table(index=["metric", "model_b"], columns="statistic", values="value", aggfunc="first")
    metrics = list(dict.fromkeys(inv["metric"]))
    names = sorted(set(inv["model_b"]))
    codes = {"pass": 0, "holds (undeclared)": 1, "no": 2, "FAIL": 3}
    grid = np.full((len(metrics), len(names)), np.nan)
    text = [["n/a"] * len(names) for _ in metrics]
    for (m, name), row in wide.iterrows():
        cell = CELL[(str(int(row["declared"])), str(int(row["holds"])))]
        i, j = metrics.index(m), names.index(name)
        grid[i, j] = codes[cell]
        text[i][j] = cell
    cmap = ListedColormap(["#55A868", "#B7E1C1", "#E6E6E6", "#C44E52"]).with_extremes(bad="white")
    fig, ax = plt.subplots(figsize=(1.5 * len(names) + 3.0, 0.36 * len(metrics) + 1.8))
    ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=-0.5, vmax=3.5, aspect="auto")
    for i in range(len(metrics)):
        for j in range(len(names)):
            ax.text(j, i, text[i][j], ha="center", va="center", fontsize=7,
                    color="white" if text[i][j] in ("pass", "FAIL") else "black")
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(metrics)))
    ax.set_yticklabels(metrics, fontsize=8)
    ax.set_title("Declared invariances on real representations (pass / FAIL = declared; others undeclared)",
                 fontsize=9)
    fig.tight_layout()
    return _plots.save(fig, path)
