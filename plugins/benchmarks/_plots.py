"""Shared matplotlib helpers for benchmark plots (PNG, Agg backend).

Import this module lazily, inside ``plots`` methods: it imports matplotlib,
which listing plugins must not pay for.  Helpers draw onto axes or write a
whole figure and return the written path.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; never open a window (headless machines, tests)

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

DPI = 130
#: one colour per metric, the same in every panel of a figure
PALETTE = ("#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C", "#CCB974",
           "#64B5CD")


def pyplot() -> Any:
    """matplotlib.pyplot with the Agg backend selected."""
    return plt


def safe_name(label: str) -> str:
    """A file-name friendly version of a label."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", label).strip("_") or "plot"


def colors(n: int) -> list[str]:
    return [PALETTE[i % len(PALETTE)] for i in range(n)]


def save(fig: Any, path: str | Path) -> Path:
    """Write ``fig`` as PNG and close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight", facecolor="white")
    plt.close(fig)
    return path


def bracket(ax: Any, x1: float, x2: float, y: float, text: str, height: float = 0.025) -> None:
    """A significance bracket from ``x1`` to ``x2`` at height ``y`` with ``text`` on top."""
    ax.plot([x1, x1, x2, x2], [y - height, y, y, y - height], color="black", linewidth=0.8, zorder=5)
    ax.text((x1 + x2) / 2, y + 0.005, text, ha="center", va="bottom", fontsize=8, zorder=5)


def heatmap(
    data: Any,
    rows: Sequence[str],
    cols: Sequence[str],
    path: str | Path,
    title: str = "",
    vmin: float | None = None,
    vmax: float | None = None,
    cmap: str = "viridis",
    colorbar_label: str = "",
    fmt: str = "{:.2f}",
    missing_label: str = "n/a",
) -> Path:
    """A labelled, annotated heatmap (rows x cols) written to ``path``; NaN cells are grey
    and labelled ``missing_label``."""
    data = np.asarray(data, dtype=float)
    fig_w = min(2.5 + 0.62 * max(len(cols), 1) + 0.07 * max((len(r) for r in rows), default=0), 24)
    fig_h = min(1.6 + 0.38 * max(len(rows), 1) + 0.06 * max((len(c) for c in cols), default=0), 16)
    fig, ax = plt.subplots(figsize=(fig_w, fig_h))
    cm = plt.get_cmap(cmap).with_extremes(bad="0.85")
    im = ax.imshow(np.ma.masked_invalid(data), cmap=cm, vmin=vmin, vmax=vmax, aspect="auto")
    ax.set_xticks(range(len(cols)))
    ax.set_xticklabels(cols, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(rows, fontsize=8)
    if data.size <= 600:
        lo = vmin if vmin is not None else np.nanmin(data) if np.isfinite(data).any() else 0.0
        hi = vmax if vmax is not None else np.nanmax(data) if np.isfinite(data).any() else 1.0
        for (i, j), v in np.ndenumerate(data):
            if not math.isfinite(v):
                ax.text(j, i, missing_label, ha="center", va="center", fontsize=7, color="0.3")
                continue
            rgba = cm((v - lo) / (hi - lo) if hi > lo else 0.5)
            dark = 0.299 * rgba[0] + 0.587 * rgba[1] + 0.114 * rgba[2] < 0.5
            ax.text(j, i, fmt.format(v), ha="center", va="center", fontsize=7, color="white" if dark else "black")
    bar = fig.colorbar(im, ax=ax, fraction=0.04, pad=0.02)
    if colorbar_label:
        bar.set_label(colorbar_label, fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    return save(fig, path)
