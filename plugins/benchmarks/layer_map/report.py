"""Leaderboard tables and heatmaps of the ``layer_map`` benchmark (pandas, matplotlib; no torch)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from simbench.types import Table

from .._records import records_frame

SUMMARY = (
    "task_score",
    "offdiag_mean",
    "offdiag_median",
    "offdiag_skew",
    "adjacent_mean",
    "eig_1",
    "effective_rank",
    "block_score",
    "n_layers",
)
DELTAS = ("delta_task_score", "delta_block_score", "delta_offdiag_mean", "delta_offdiag_skew", "delta_eig_1")


def frame(records: Any) -> Any:
    """This benchmark's rows as a normalised DataFrame (see :func:`records_frame`)."""
    return records_frame(records)


def _ok(df: Any) -> Any:
    return df[df["status"] == "ok"] if "status" in df.columns else df


def tables(records: Any) -> list[Table]:
    import pandas as pd

    df = frame(records)
    if df.empty:
        return []
    ok = _ok(df)
    per = ok[~ok["statistic"].isin(["map", "pdf"]) & (ok["group"] != "all")]
    wide = per.pivot_table(index=["metric", "group", "probe_set"], columns="statistic", values="value",
                           aggfunc="first").reset_index()
    order = {p: i for i, p in enumerate(dict.fromkeys(ok["probe_set"]))}
    wide = wide.sort_values(["metric", "group", "probe_set"], key=lambda c: c.map(order) if c.name == "probe_set"
                            else c).reset_index(drop=True)
    r2_cols = sorted(c for c in wide.columns if str(c).startswith("r2_"))
    cols = ["metric", "group", "probe_set", *[c for c in SUMMARY if c in wide.columns][:1], *r2_cols,
            *[c for c in SUMMARY[1:] if c in wide.columns]]
    head = wide[cols].rename(columns={"group": "model"})
    out = [Table(
        "layer_maps", "Layer maps per model and probe set", head,
        "task_score = mean R^2 over the scored targets (regression) or accuracy; off-diagonal statistics of the "
        "layer x layer map (upper triangle for symmetric metrics); block_score = 1 - (effective rank - 1) / "
        "(L - 1) of the map's eigenvalues: 0 = every layer distinct, 1 = all layers alike. Seed 000: a model "
        "that fails under a shift shows higher off-diagonal similarity and block structure on the shifted probes.",
    )]
    delta_cols = [c for c in DELTAS if c in wide.columns]
    if delta_cols:
        d = wide.dropna(subset=delta_cols, how="all")[["metric", "group", "probe_set", *delta_cols]]
        d = d.rename(columns={"group": "model"}).reset_index(drop=True)
        if len(d):
            d["finding"] = [
                _finding(row.get("delta_task_score", math.nan), row.get("delta_block_score", math.nan))
                for row in d.to_dict("records")
            ]
            out.append(Table(
                "shift_deltas", "Shifted minus reference probe set", d,
                "finding: 'fails & blocks' = task score (R^2 or accuracy) drops by more than 0.2 and block_score "
                "rises (seed 000's failure pattern); 'robust & diverse' = task score within 0.2 and block_score "
                "does not rise by more "
                "than 0.05; otherwise the pattern does not match the seed.",
            ))
    summ = ok[ok["group"] == "all"]
    if len(summ):
        s = summ[["metric", "statistic", "value", "n"]].reset_index(drop=True)
        out.append(Table(
            "finding", "Across models: task-score drop vs change in layer similarity", s,
            "Spearman correlation over (model, shifted probe set) pairs between the drop in task score and the "
            "change in block_score / mean off-diagonal similarity; seed 000 predicts positive values.",
        ))
    failed = df[df["status"] == "failed"] if "status" in df.columns else df.iloc[:0]
    if len(failed):
        out.append(Table("failures", "Failed maps", failed[["metric", "group", "probe_set", "error"]]
                         .rename(columns={"group": "model"}).reset_index(drop=True)))
    return out


def _finding(d_task: float, d_block: float) -> str:
    if not (math.isfinite(d_task) and math.isfinite(d_block)):
        return ""
    if d_task < -0.2 and d_block > 0:
        return "fails & blocks"
    if d_task >= -0.2 and d_block <= 0.05:
        return "robust & diverse"
    return "does not match"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "plot"


def _title(probe: str, stats: Mapping[str, float]) -> str:
    r2 = {k[3:]: v for k, v in stats.items() if k.startswith("r2_")}
    if r2:
        shown = [(k, v) for k, v in r2.items() if k in ("omega_m", "sigma_8")] or list(r2.items())[:3]
        score = ", ".join(f"R²({k})={v:.2f}" for k, v in shown)
    elif "task_score" in stats:
        score = f"acc={stats['task_score']:.3f}"
    else:
        score = ""
    block = stats.get("block_score")
    extra = f"\nblock={block:.2f}, off-diag mean={stats.get('offdiag_mean', math.nan):.2f}" if block is not None else ""
    return f"{probe}\n{score}{extra}"


def plot(records: Any, out_dir: str | Path) -> list[Path]:
    """One PNG per (metric, model): the maps side by side with scores in the titles, then the PDF of
    off-diagonal values and the eigenvalue spectrum per probe set (seed 000, Fig. 1-2)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    df = frame(records)
    out = Path(out_dir)
    written: list[Path] = []
    if df.empty:
        return written
    df = _ok(df)
    df = df[df["group"] != "all"]
    label = _safe(str(df["benchmark"].iloc[0])) if len(df) and df["benchmark"].iloc[0] else "layer_map"
    for (metric, model), sub in df.groupby(["metric", "group"], sort=False):
        probes = list(dict.fromkeys(sub["probe_set"]))
        maps = sub[sub["statistic"] == "map"]
        if maps.empty:
            continue
        out.mkdir(parents=True, exist_ok=True)
        ncol = max(2, len(probes))
        fig, axes = plt.subplots(2, ncol, figsize=(4.4 * ncol + 1.0, 9.0), squeeze=False, layout="constrained")
        lo = min(0.0, float(maps["value"].min()))
        hi = max(1.0, float(maps["value"].max()))
        image = None
        for col, probe in enumerate(probes):
            pm = maps[maps["probe_set"] == probe]
            layers = list(dict.fromkeys(pm["model_a"]))
            pos = {name: k for k, name in enumerate(layers)}
            grid = np.full((len(layers), len(layers)), np.nan)
            for a, b, v in zip(pm["model_a"], pm["model_b"], pm["value"]):
                grid[pos[a], pos[b]] = v
            rows = sub[(sub["probe_set"] == probe) & ~sub["statistic"].isin(["map", "pdf"])]
            stats = {s: float(v) for s, v in zip(rows["statistic"], rows["value"])}
            ax = axes[0, col]
            # origin lower: the diagonal runs bottom-left to top-right, as in seed 000's figures
            image = ax.imshow(grid, origin="lower", vmin=lo, vmax=hi, cmap="magma")
            ax.set_title(_title(probe, stats), fontsize=9)
            ticks = list(range(0, len(layers), max(1, math.ceil(len(layers) / 8))))
            ax.set_xticks(ticks, [str(t + 1) for t in ticks])
            ax.set_yticks(ticks, [str(t + 1) for t in ticks])
            ax.set_xlabel("layer")
            ax.set_ylabel("layer")
        for col in range(len(probes), ncol):
            axes[0, col].axis("off")
        if image is not None:
            fig.colorbar(image, ax=list(axes[0]), shrink=0.9, label=str(metric))
        ax_pdf, ax_eig = axes[1, 0], axes[1, 1]
        for probe in probes:
            pdf = sub[(sub["statistic"] == "pdf") & (sub["probe_set"] == probe)]
            if not pdf.empty:
                a = pdf["coord_bin_low"].to_numpy(dtype=float)
                b = pdf["coord_bin_high"].to_numpy(dtype=float)
                v = pdf["value"].to_numpy()
                ax_pdf.step(np.r_[a, b[-1:]], np.r_[v, v[-1:]], where="post", label=probe)
            eig = sub[sub["statistic"].str.match(r"^eig_\d+$") & (sub["probe_set"] == probe)]
            if not eig.empty:
                order = eig["coord_rank"].to_numpy(dtype=float)
                vals = eig["value"].to_numpy()[np.argsort(order)]
                ax_eig.plot(np.arange(1, len(vals) + 1), np.clip(vals, 1e-6, None), marker="o", label=probe)
        ax_pdf.set_xlabel("off-diagonal similarity")
        ax_pdf.set_ylabel("PDF")
        ax_pdf.legend(fontsize=8)
        ax_eig.set_yscale("log")
        ax_eig.set_xlabel("rank")
        ax_eig.set_ylabel("eigenvalue")
        ax_eig.legend(fontsize=8)
        for col in range(2, ncol):
            axes[1, col].axis("off")
        fig.suptitle(f"{model} — {metric}", fontsize=11)
        path = out / f"{label}_{_safe(str(model))}_{_safe(str(metric))}.png"
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        written.append(path)
    return written
