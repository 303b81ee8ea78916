"""Text helpers shared by the leaderboard files and the site: number format, inert markdown, the papers'
names in plain words, and a headline table in a few words (imports nothing else of simbench's but
its types, so ``leaderboard`` and ``site`` can both use it without an import circle)."""

from __future__ import annotations

import html
import math
import re
from typing import Any

from .types import Table

_SEEDS = {
    "000": "the astronomy out-of-distribution study",
    "001": "the weight-CKA calibration paper",
    "002": "the mixed-survey galaxy-morphology study",
    "003": "the paper on the inadequacy of CKA",
    "004": "the feature-contamination paper",
}
_SEED_RE = re.compile(r"\b[Ss]eed (00\d)('s)?(?:\s*(§\s*[\d.]+(?:\s*[-–]\s*[\d.]+)?))?")


def plain_words(text: Any) -> str:
    """Replace our internal "Seed 001 §3.2" references by what a reader knows: the paper and its section."""

    def repl(match: re.Match[str]) -> str:
        name = _SEEDS.get(match.group(1), f"reference {match.group(1)}")
        section = match.group(3)
        if section:
            name += f", section {section.lstrip('§').strip()}"
        return name + ("'s" if match.group(2) else "")

    out = _SEED_RE.sub(repl, str(text)).replace("§", "section ").replace("section  ", "section ")
    return out[:1].upper() + out[1:] if str(text)[:1].isupper() else out


def md_text(value: Any) -> str:
    """A user-supplied string made inert in markdown: HTML escaped, newlines folded, pipes escaped, and
    backslashes and square brackets escaped, so no link or image (``[x](javascript:...)``,
    ``![p](https://remote/pixel.png)``, a reference definition) can form."""
    text = str(value).replace("\\", "\\\\")
    text = html.escape(text, quote=False)
    text = re.sub(r"[\r\n\u2028\u2029]+", " ", text)
    return text.replace("|", "\\|").replace("`", "'").replace("[", "\\[").replace("]", "\\]")


def _fmt(value: Any) -> str:
    """A cell as text: floats to 3 decimals (scientific when tiny or huge), NaN as "–"."""
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
            return f"{value:.2e}"
        return f"{value:.3f}"
    return str(value)


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in {"true", "yes", "y", "1", "best", "✓"}
    try:
        return bool(value) and not (isinstance(value, float) and math.isnan(value))
    except (TypeError, ValueError):
        return False


def headline_rows(table: Table, limit: int = 3) -> list[str]:
    """The best entries of a headline table in a few words each, without knowing its exact columns.

    The rows flagged by an ``in_best_set``/``best_set`` column (when the table
    has one) or else the first ``limit`` rows.  Each names its label (the
    ``metric`` column, else the first text column), the first numeric value
    column with the first ``*ci_low``/``*ci_high`` interval, and the rank
    confidence set (a ``rank_set`` column) when there is one.
    """
    frame = table.frame
    cols = [str(c) for c in frame.columns]
    if not cols or not len(frame):
        return []
    text_cols = [c for c in cols if frame[c].dtype.kind not in "fiub"]
    label = "metric" if "metric" in cols else (text_cols[0] if text_cols else cols[0])
    rows = frame.head(limit)
    flag = next((c for c in ("in_best_set", "best_set") if c in cols), None)
    if flag:  # the statistically tied best set, however large (a few shown)
        best = frame[[_truthy(v) for v in frame[flag]]]
        rows = best.head(2 * limit) if len(best) else rows
    values = [c for c in cols if c != label and c != flag and "ci_" not in c and "rank" not in c
              and frame[c].dtype.kind in "f"]
    low = next((c for c in cols if c.endswith("ci_low") and "rank" not in c), None)
    high = f"{low[: -len('low')]}high" if low else None
    out = []
    for _, row in rows.iterrows():
        text = str(row[label])
        if values:
            text += f": {values[0]} {_fmt(row[values[0]])}"
            if low and high in cols:
                text += f" [{_fmt(row[low])}, {_fmt(row[high])}]"
        if "rank_set" in cols and str(row["rank_set"]):
            text += f", rank set {row['rank_set']}"
        out.append(text)
    return out
