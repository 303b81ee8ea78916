"""Leaderboard tables and plots of the ``contamination`` benchmark (pandas, matplotlib; no torch)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from simbench.types import Table

from .._records import records_frame


def frame(records: Any) -> Any:
    """This benchmark's rows as a normalised DataFrame (see :func:`records_frame`)."""
    return records_frame(records, ok_only=True)


def _probes(df: Any) -> tuple[str, list[str]]:
    """(ID probe set, OOD probe sets), read off the rows: OOD sets are those with ``ood_gap_*`` rows."""
    ood = list(dict.fromkeys(df.loc[df["statistic"] == "ood_gap_risk", "probe_set"]))
    ids = [p for p in dict.fromkeys(df.loc[df["statistic"] == "hinge_risk", "probe_set"]) if p not in ood]
    return (ids[0] if ids else "clean"), ood


def tables(records: Any) -> list[Table]:
    import pandas as pd

    df = frame(records)
    if df.empty:
        return []
    id_probe, ood = _probes(df)
    means = df[(df["model_a"] == "") & df["statistic"].str.startswith("mean_")]
    archs = [a for a in dict.fromkeys(means["group"]) if a != "finding"]
    rows = []
    for arch in archs:
        m = means[means["group"] == arch]

        def get(stat: str, probe: str, m: Any = m) -> float:
            v = m[(m["statistic"] == f"mean_{stat}") & (m["probe_set"] == probe)]["value"]
            return float(v.iloc[0]) if len(v) else float("nan")

        row: dict[str, Any] = {"arch": arch, "n_models": int(m["n"].max()) if m["n"].notna().any() else 0}
        row["risk_id"] = get("hinge_risk", id_probe)
        for p in ood:
            suffix = "" if len(ood) == 1 else f" ({p})"
            row[f"risk_ood{suffix}"] = get("hinge_risk", p)
            row[f"ood_gap_risk{suffix}"] = get("ood_gap_risk", p)
            row[f"error_ood{suffix}"] = get("error", p)
        row["error_id"] = get("error", id_probe)
        for stat in ("core_proj", "bg_proj", "bg_corr", "bg_growth"):
            row[stat] = get(stat, "")
        row["selectivity_id"] = get("selectivity", id_probe)
        if ood:
            row["selectivity_ood"] = get("selectivity", ood[0])
        row["asymmetry_id"] = get("asymmetry", id_probe)
        rows.append(row)
    out = [Table(
        "contamination", "Feature contamination per activation (means over seeds)", pd.DataFrame(rows),
        "risk = hinge risk, error = 0-1 error, on the ID probe set and on the background-shifted (OOD) one; "
        "core_proj / bg_proj = mean norm of the hidden weights' projection onto the core / background "
        "subspace after training; bg_corr = mean signed coordinate on the background features; bg_growth = "
        "bg_proj after / before training; selectivity = seed 004 eq. 61; asymmetry = class imbalance of the "
        "activation derivative (Theorem 4.1). Seed 004: ReLU accumulates background projections "
        "(bg_growth > 1) and fails OOD, the linear network does not.",
    )]
    finding = df[df["group"] == "finding"]
    if len(finding):
        out.append(Table("finding", "Is seed 004's finding reproduced?",
                         finding[["statistic", "value", "probe_set"]].reset_index(drop=True),
                         "reproduced = contaminated (ReLU bg_proj >= 2x linear, bg_corr > 0, and a one-sided "
                         "paired t-test over seeds of log(bg_proj ReLU / linear) > log 2 with p < alpha) and "
                         "fails_ood (ReLU OOD hinge-risk gap >= 0.1 and >= 5x linear, and a one-sided paired "
                         "t-test of gap ReLU - gap linear > 0.1 with p < alpha); alpha = 0.05 unless the suite "
                         "sets it. The 0-1 error is not tested."))
    per_model = df[(df["model_a"] != "") & ~df["statistic"].str.startswith("trace_")]
    if len(per_model):
        wide = per_model.pivot_table(index=["group", "model_a", "probe_set"], columns="statistic", values="value",
                                     aggfunc="first").reset_index().rename(columns={"group": "arch",
                                                                                    "model_a": "model"})
        out.append(Table("per_model", "Per model and probe set", wide))
    return out


def plot(records: Any, out_dir: str | Path) -> list[Path]:
    """Training traces of the core / background projections and of ID / OOD risk per activation
    (seed 004 Fig. 8), and per-activation bars of risk, selectivity and asymmetry."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    df = frame(records)
    if df.empty:
        return []
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    label = str(df["benchmark"].iloc[0]) or "contamination"
    archs = [a for a in dict.fromkeys(df["group"]) if a and a != "finding"]
    colors = {a: f"C{i}" for i, a in enumerate(archs)}
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6))

    def traces(ax: Any, cols: tuple[tuple[str, str, str], ...], ylabel: str, title: str) -> None:
        for arch in archs:
            for col, style, name in cols:
                t = df[(df["group"] == arch) & (df["statistic"] == col)]
                if t.empty:
                    continue
                mean = t.groupby("coord_step")["value"].mean()  # the trace's SGD step is a coordinate
                ax.plot(mean.index, mean.values, style, color=colors[arch], label=f"{arch} {name}")
        ax.set_xscale("symlog", linthresh=1.0)  # the early steps are where the features are learned
        ax.set_xlabel("SGD step")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.legend(fontsize=7, ncol=2)

    traces(axes[0], (("trace_bg_proj", "-", "background"), ("trace_core_proj", ":", "core")),
           "mean projection norm of hidden weights", "Weight projections during training")
    traces(axes[1], (("trace_id_risk", "-", "ID"), ("trace_ood_risk", "--", "OOD")),
           "hinge risk (validation)", "ID (solid) vs OOD (dashed) risk")
    ax = axes[2]
    stats = ["hinge_risk", "selectivity", "asymmetry"]
    probes = [p for p in dict.fromkeys(df.loc[df["statistic"] == "mean_hinge_risk", "probe_set"]) if p]
    width = 0.8 / max(1, len(archs))
    pos = np.arange(len(stats) * len(probes))
    for i, arch in enumerate(archs):
        vals = []
        for stat in stats:
            for probe in probes:
                m = df[(df["group"] == arch) & (df["statistic"] == f"mean_{stat}") & (df["probe_set"] == probe)]
                vals.append(float(m["value"].iloc[0]) if not m.empty else np.nan)
        ax.bar(pos + i * width, vals, width, color=colors[arch], label=arch)
    ax.set_xticks(pos + 0.4 - width / 2, [f"{s}\n{p}" for s in stats for p in probes], fontsize=7)
    verdict = df[df["statistic"] == "reproduced"]
    title = "Per-activation means"
    if not verdict.empty:
        title += f" — seed 004 finding reproduced: {'yes' if float(verdict['value'].iloc[0]) == 1.0 else 'no'}"
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    path = out / f"{label}_training.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]
