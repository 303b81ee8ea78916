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
#: the rows of the designed shift test (``design_factor``), tabled apart from the per-map summaries
DESIGNED = r"^(?:(?:excess|test|cell|size)_|exemplar$)"
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
    designed = ok["statistic"].str.match(DESIGNED)
    design_rows, ok = ok[designed], ok[~designed]
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
                f"finding (one rule for both sides): a model 'fails' when its task score (R^2 or accuracy) drops by "
                f"more than {FAIL_DROP}, and its map 'blocks' when block_score rises by more than {BLOCK_RISE}; "
                "'fails & blocks' and 'robust & diverse' (neither) match seed 000, 'fails, no blocks' and "
                "'robust, blocks' do not.",
            ))
    summ = ok[ok["group"] == "all"]
    if len(summ):
        s = summ[["metric", "statistic", "value", "n"]].reset_index(drop=True)
        out.append(Table(
            "finding", "Across models: task-score drop vs change in layer similarity", s,
            "Spearman correlation over (model, shifted probe set) pairs between the drop in task score and the "
            "change in block_score / mean off-diagonal similarity; seed 000 predicts positive values.",
        ))
    out.extend(design_tables(design_rows))
    failed = df[df["status"] == "failed"] if "status" in df.columns else df.iloc[:0]
    if len(failed):
        out.append(Table("failures", "Failed maps", failed[["metric", "group", "probe_set", "error"]]
                         .rename(columns={"group": "model"}).reset_index(drop=True)))
    return out


#: the per-model pattern rule of the shift_deltas table: one threshold per axis, the same on both sides
FAIL_DROP = 0.2
BLOCK_RISE = 0.01


def _finding(d_task: float, d_block: float) -> str:
    """Seed 000's per-model pattern: fails (task drop > FAIL_DROP) x blocks (block-score rise > BLOCK_RISE)."""
    if not (math.isfinite(d_task) and math.isfinite(d_block)):
        return ""
    fails, blocks = d_task < -FAIL_DROP, d_block > BLOCK_RISE
    if fails == blocks:
        return "fails & blocks" if fails else "robust & diverse"
    return "fails, no blocks" if fails else "robust, blocks"


def verdict(value: float, p: float, alpha: float) -> str:
    """The designed test's symmetric verdict: the seed predicts a positive statistic."""
    if not (math.isfinite(value) and math.isfinite(p)):
        return "undefined"
    if p < alpha:
        return "reproduced" if value > 0 else "reversed"
    return "not reproduced"


def _coord(row: Mapping[str, Any], name: str) -> float:
    v = row.get(f"coord_{name}", math.nan)
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def design_tables(rows: Any) -> list[Table]:
    """The designed shift test (``design_factor``): the model-level tests with their verdicts, the per-cell
    paired comparison of shifted vs control, and the per-model excesses."""
    import pandas as pd

    if rows is None or rows.empty:
        return []
    out: list[Table] = []
    tests = rows[rows["statistic"].str.match(r"^test_")]
    if len(tests):
        recs = []
        for r in tests.to_dict("records"):
            stat = str(r["statistic"])
            kind, _, on = stat[len("test_"):].partition("_")
            p, alpha = _coord(r, "p"), _coord(r, "alpha")
            what = {"spearman": "Spearman rho over models (excess drop vs excess)",
                    "groups": "failing minus handling models (excess)"}.get(kind, kind)
            recs.append({
                "test": f"{on}: {what}",
                "metric": r["metric"],
                "statistic": stat,
                "value": float(r["value"]),
                "p": p,
                "models": int(r["n"]),
                "failing": _coord(r, "n_fail") if kind == "groups" else math.nan,
                "alpha": alpha,
                "verdict": verdict(float(r["value"]), p, alpha),
            })
        out.append(Table(
            "shift_test", "Designed test: suite shift vs size-matched control, models as units", pd.DataFrame(recs),
            "Per model, excess drop = task score on the control minus on the shifted probes; excess = the map "
            "statistic on the shifted probes minus on the control (the control moves the inputs as far but stays "
            "in the training distribution). Spearman: rho over models of excess drop vs excess, p from a "
            "model-level permutation; fail minus handle: mean excess of models whose task score drops by more "
            "than the declared threshold under the shift minus the others', p from permuting the labels over "
            "models. Both two-sided; verdict: 'reproduced' if the value is positive and p < alpha, 'reversed' if "
            "negative and p < alpha, else 'not reproduced'.",
        ))
    cells = rows[rows["statistic"].str.match(r"^cell_")]
    if len(cells):
        recs = []
        for r in cells.to_dict("records"):
            p, alpha = _coord(r, "p"), _coord(r, "alpha")
            recs.append({
                "metric": r["metric"],
                "cell": r["group"],
                "map statistic": str(r["statistic"])[len("cell_"):],
                "models": int(r["n"]),
                "failing": _coord(r, "n_fail"),
                "drop (shift)": _coord(r, "shift_drop"),
                "drop (control)": _coord(r, "control_drop"),
                "excess (shift - control)": float(r["value"]),
                "p (sign flip)": p,
                "change": ("rises" if r["value"] > 0 else "falls") if math.isfinite(p) and p < alpha else "no change",
            })
        out.append(Table(
            "shift_cells", "Per cell of seeds: shifted vs control, paired within models", pd.DataFrame(recs),
            "drop = mean task-score drop from the model's reference probes; excess = mean over the cell's models of "
            "the map statistic on the shifted probes minus on the control; p: two-sided sign-flip test over the "
            "models (exact up to 16). Seed 000 predicts 'rises' where the models fail and no rise where they "
            "handle the shift.",
        ))
    sizes = rows[rows["statistic"].str.match(r"^size_")]
    if len(sizes):
        wide = sizes.pivot_table(index=["probe_set"], columns="statistic", values="value",
                                 aggfunc="first").reset_index()
        wide = wide.rename(columns={"size_shift_size": "suite shift size", "size_control_size": "control size",
                                    "size_theta": "phase rotation (rad)", "probe_set": "control probe set"})
        out.append(Table(
            "control_sizes", "Control probe sets: how far they move the inputs", wide,
            "size = mean over probes of the per-map RMS pixel difference (standardised units, the control's "
            "field) between a probe before and after the change; the control's phase rotation is chosen so that "
            "its size equals the suite shift's.",
        ))
    per = rows[rows["statistic"].str.match(r"^excess_")]
    if len(per):
        wide = per.pivot_table(index=["metric", "group"], columns="statistic", values="value",
                               aggfunc="first").reset_index().rename(columns={"group": "model"})
        out.append(Table(
            "shift_excess", "Per model: shifted minus control", wide,
            "excess_drop = task score on the control minus on the shifted probes; excess_<stat> = the map "
            "statistic on the shifted probes minus on the control.",
        ))
    return out


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
    exemplars = set(df.loc[df["statistic"] == "exemplar", "group"])
    df = df[~df["statistic"].str.match(DESIGNED)]
    if exemplars:  # the designed test: one model per cell of seeds (its reference, shifted and control maps)
        df = df[df["group"].isin(exemplars)]
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
