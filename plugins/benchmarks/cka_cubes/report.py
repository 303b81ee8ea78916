"""Leaderboard tables, verdicts and the Fig. 3 layout of the ``cka_cubes`` benchmark, from its records alone."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from simbench.types import Table

from .._records import records_frame as frame
from .common import INFO, INVERTIBLE, OUTLIER, SUBJECT, TRANSFORMS, TRANSLATION

COORDS = {TRANSLATION: ["c"], INVERTIBLE: ["mu", "sigma"], OUTLIER: ["distance"]}
TITLES = {TRANSLATION: "(a) second cube translated by c v, v from the d-ball",
          INVERTIBLE: "(b) Y = X M, M invertible, elements N(mu, sigma^2)",
          OUTLIER: "(c) one point moved a distance (seed: CIFAR CNN features)"}
#: the verdicts' claims (the seed's words) -- keys of the verdict table's rows
CLAIMS = {TRANSLATION: "translating one cube drives linear CKA below 0.2 at a small distance",
          INVERTIBLE: "an invertible map with small mu, sigma drives linear CKA to about 0"}


def curves(df: Any) -> Any:
    """One row per metric x transform x setting: ``mean``, ``sd``, ``n`` (ok rows only)."""
    import pandas as pd

    rows = df[(df["status"] == "ok") & df["group"].isin(TRANSFORMS) & (df["metric"] != "")]
    if rows.empty:
        return pd.DataFrame()
    for c in ("c", "mu", "sigma", "distance"):
        col = f"coord_{c}"
        if col not in rows:
            rows = rows.assign(**{col: float("nan")})
    keys = ["metric", "group", "coord_c", "coord_mu", "coord_sigma", "coord_distance"]
    wide = rows.pivot_table(index=keys, columns="statistic", values="value", aggfunc="first",
                            dropna=False).reset_index()
    ns = rows[rows["statistic"] == "value_mean"].set_index(keys)["n"]
    wide = wide.merge(ns.rename("n").reset_index(), on=keys, how="left")
    wide.columns.name = None
    wide = wide.rename(columns={"group": "transform", "value_mean": "mean", "value_sd": "sd",
                                **{f"coord_{c}": c for c in ("c", "mu", "sigma", "distance")}})
    return wide.dropna(subset=["mean"])


def _info(df: Any, statistic: str) -> dict[str, float]:
    rows = df[(df["group"] == INFO) & (df["statistic"] == statistic) & (df["status"] == "ok")]
    return {str(k): float(v) for k, v in zip(rows["model_a"], rows["value"], strict=True)}


def verdicts(df: Any) -> Any:
    """The two pre-declared verdicts, read on the suite label ``linear_cka``:

    * translation: reproduced when the mean over instantiations is below ``translation_below`` at some
      ``c <= translation_max_c`` (C*); ``observed`` is the lowest mean there, ``at`` its ``c``, ``first_below``
      the smallest ``c`` of the sweep whose mean is below the threshold (any ``c``);
    * invertible: reproduced when the mean is below ``invertible_below`` at some ``(mu, sigma)`` with both
      ``<= invertible_max`` (S*); ``observed`` the lowest mean in that box, ``share_below`` the fraction of the
      box's settings below the threshold.
    """
    import pandas as pd

    th = _info(df, "threshold")
    cur = curves(df)
    sub = cur[cur["metric"] == SUBJECT] if len(cur) else cur
    rows = []
    if "translation_max_c" in th:
        cstar, below = th["translation_max_c"], th["translation_below"]
        t = sub[sub["transform"] == TRANSLATION] if len(sub) else sub
        box = t[t["c"] <= cstar] if len(t) else t
        under = t[t["mean"] < below] if len(t) else t
        low = box.loc[box["mean"].idxmin()] if len(box) else None
        rows.append({"claim": CLAIMS[TRANSLATION],
                     "rule": f"mean {SUBJECT} < {below:g} at some c <= C* = {cstar:g}",
                     "observed": None if low is None else float(low["mean"]),
                     "at": None if low is None else f"c = {low['c']:g}",
                     "first_below": None if under.empty else float(under["c"].min()),
                     "share_below": None if box.empty else float((box["mean"] < below).mean()),
                     "reproduced": "—" if low is None else ("yes" if low["mean"] < below else "no")})
    if "invertible_max" in th:
        smax, below = th["invertible_max"], th["invertible_below"]
        t = sub[sub["transform"] == INVERTIBLE] if len(sub) else sub
        box = t[(t["mu"] <= smax) & (t["sigma"] <= smax)] if len(t) else t
        under = t[t["mean"] < below] if len(t) else t
        low = box.loc[box["mean"].idxmin()] if len(box) else None
        rows.append({"claim": CLAIMS[INVERTIBLE],
                     "rule": f"mean {SUBJECT} < {below:g} at some mu, sigma <= S* = {smax:g}",
                     "observed": None if low is None else float(low["mean"]),
                     "at": None if low is None else f"mu = {low['mu']:g}, sigma = {low['sigma']:g}",
                     "first_below": None if under.empty else float(under["mu"].min()),
                     "share_below": None if box.empty else float((box["mean"] < below).mean()),
                     "reproduced": "—" if low is None else ("yes" if low["mean"] < below else "no")})
    return pd.DataFrame(rows, columns=["claim", "reproduced", "observed", "at", "rule", "first_below",
                                       "share_below"])


def tables(records: Any) -> list[Table]:
    df = frame(records)
    if df.empty:
        return []
    size = _info(df, "size")
    where = (f"n = {size.get('n', float('nan')):g} points (two cubes), d = {size.get('d', float('nan')):g}, "
             f"offset {size.get('offset', float('nan')):g}, {size.get('instantiations', float('nan')):g} "
             "instantiations")
    out = [Table("verdict", "Seed 003 Fig. 3a/3b on the synthetic cubes: verdicts (thresholds fixed before the run)",
                 verdicts(df),
                 caption=(f"{where}. observed = the lowest mean {SUBJECT} inside the threshold box; first_below = "
                          "the smallest c (translation) or mu (map) of the whole sweep whose mean is below the "
                          "threshold; share_below = the fraction of the box's settings below it. A verdict of — "
                          f"means the suite has no `{SUBJECT}` label or no setting inside the box."))]
    cur = curves(df)
    for kind in TRANSFORMS:
        part = cur[cur["transform"] == kind] if len(cur) else cur
        if part.empty:
            continue
        cols = ["metric", *COORDS[kind], "mean", "sd", "n"]
        part = part.sort_values(["metric", *COORDS[kind][::-1]])[[c for c in cols if c in part.columns]]
        out.append(Table(kind, TITLES[kind], part.reset_index(drop=True),
                         caption=f"metric(X, T(X)): mean and SD over instantiations (n = draws that succeeded). "
                                 f"{where}."))
    failed = df[df["status"] == "failed"]
    if len(failed):
        import pandas as pd

        fail = pd.DataFrame({"metric": failed["metric"], "transform": failed["group"], "error": failed["error"]})
        out.append(Table("failures", "Failed settings", fail.reset_index(drop=True)))
    return out


def plots(records: Any, out_dir: Any) -> list[Path]:
    """One figure in the seed's Fig. 3 layout: a row of panels (a) c, (b) mu (one line style per sigma), (c) the
    outlier distance (log axis); mean with a band of +- one SD; the verdict thresholds as dotted lines."""
    from .. import _plots

    df = frame(records)
    cur = curves(df) if not df.empty else df
    if df.empty or cur.empty:
        return []
    th = _info(df, "threshold")
    label = _plots.safe_name(str(df["benchmark"].iloc[0]) or "cka_cubes")
    plt = _plots.pyplot()
    kinds = [k for k in TRANSFORMS if k in set(cur["transform"])]
    metrics = list(dict.fromkeys(cur["metric"]))
    palette = dict(zip(metrics, _plots.colors(len(metrics)), strict=True))
    fig, axes = plt.subplots(1, len(kinds), figsize=(5.0 * len(kinds), 4.2), squeeze=False)
    styles = ["-", "--", ":", "-."]
    for ax, kind in zip(axes[0], kinds, strict=True):
        part = cur[cur["transform"] == kind]
        for m in metrics:
            pm = part[part["metric"] == m]
            groups = ([(f"sigma = {s:g}", pm[pm["sigma"] == s]) for s in sorted(set(pm["sigma"]))]
                      if kind == INVERTIBLE else [("", pm)])
            xcol = {TRANSLATION: "c", INVERTIBLE: "mu", OUTLIER: "distance"}[kind]
            for k, (tag, g) in enumerate(groups):
                g = g.sort_values(xcol)
                if g.empty:
                    continue
                name = f"{m} {tag}".strip()
                ax.plot(g[xcol], g["mean"], marker="o", markersize=3, color=palette[m],
                        linestyle=styles[k % len(styles)], linewidth=2.0 if m == SUBJECT else 1.2, label=name)
                sd = g["sd"].fillna(0)
                ax.fill_between(g[xcol], g["mean"] - sd, g["mean"] + sd, color=palette[m], alpha=0.12)
        if kind == TRANSLATION and "translation_below" in th:
            ax.axhline(th["translation_below"], color="#C44E52", linestyle=":", linewidth=1)
            ax.axvline(th["translation_max_c"], color="#C44E52", linestyle=":", linewidth=1)
        if kind == INVERTIBLE and "invertible_below" in th:
            ax.axhline(th["invertible_below"], color="#C44E52", linestyle=":", linewidth=1)
            ax.axvline(th["invertible_max"], color="#C44E52", linestyle=":", linewidth=1)
            positive = part["mu"][part["mu"] > 0]
            if len(positive) and positive.min() > 0 and part["mu"].max() / positive.min() > 50:
                ax.set_xscale("symlog", linthresh=float(positive.min()))
                ax.set_xlim(left=0.0)
        if kind == OUTLIER and (part["distance"] > 0).any() and not math.isclose(part["distance"].max(), 0):
            ax.set_xscale("symlog", linthresh=float(part["distance"][part["distance"] > 0].min()))
        ax.set_title(TITLES[kind], fontsize=8)
        ax.set_xlabel({TRANSLATION: "translation distance c", INVERTIBLE: "mu",
                       OUTLIER: "distance of the moved point"}[kind])
        ax.set_ylabel("metric(X, T(X)) on its own scale")
        ax.set_ylim(-0.02, max(1.05, 1.05 * float((part["mean"] + part["sd"].fillna(0)).max())))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    fig.suptitle("Seed 003 Fig. 3 on the synthetic cubes (mean ± SD over instantiations)", fontsize=9)
    return [_plots.save(fig, Path(out_dir) / f"{label}_fig3.png")]
