"""Compare the ranking tables of two published leaderboards (JSON), metric by metric.

Used for ``docs/reseed.md``: the boards published before and after every
random stream was re-derived (``simbench.seeding``), to show which
conclusions survive a reseed.  Usage::

    python docs/img/compare_boards.py OLD_DIR NEW_DIR [BOARD ...]

prints, per board and ranking table, each metric's r and rank before and
after, whether it is in the best set, the Spearman correlation of the two
r vectors, how many metrics' new r falls inside their old model-bootstrap
interval, and whether the best metric (and best set) changed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def rankings(path: Path) -> dict[str, dict[str, dict]]:
    """``{table key: {metric: row dict}}`` for every ranking table in a board's JSON."""
    board = json.loads(path.read_text())
    out = {}
    for table in board["tables"]:
        if not table["key"].endswith("ranking"):
            continue
        cols = table["columns"]
        out[table["key"]] = {row[cols.index("metric")]: dict(zip(cols, row)) for row in table["rows"]}
    return out


def spearman(a: list[float], b: list[float]) -> float:
    def ranks(v: list[float]) -> list[float]:
        order = sorted(range(len(v)), key=lambda i: v[i])
        r = [0.0] * len(v)
        i = 0
        while i < len(v):
            j = i
            while j + 1 < len(v) and v[order[j + 1]] == v[order[i]]:
                j += 1
            for k in range(i, j + 1):
                r[order[k]] = (i + j) / 2 + 1
            i = j + 1
        return r

    ra, rb = ranks(a), ranks(b)
    ma, mb = sum(ra) / len(ra), sum(rb) / len(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    var = (sum((x - ma) ** 2 for x in ra) * sum((y - mb) ** 2 for y in rb)) ** 0.5
    return cov / var if var else float("nan")


def compare(old: Path, new: Path) -> str:
    lines = []
    for key, before in rankings(old).items():
        after = rankings(new).get(key)
        if after is None:
            lines.append(f"{key}: missing in the new board")
            continue
        metrics = [m for m in before if m in after and before[m]["pearson_r"] is not None
                   and after[m]["pearson_r"] is not None]
        r0 = [before[m]["pearson_r"] for m in metrics]
        r1 = [after[m]["pearson_r"] for m in metrics]
        best0 = {m for m in metrics if before[m]["best_set"] == "yes"}
        best1 = {m for m in metrics if after[m]["best_set"] == "yes"}
        top0 = min(metrics, key=lambda m: before[m]["rank"])
        top1 = min(metrics, key=lambda m: after[m]["rank"])
        with_ci = [m for m in metrics if before[m].get("pearson_boot_ci_low") is not None]
        inside = sum(before[m]["pearson_boot_ci_low"] <= after[m]["pearson_r"] <= before[m]["pearson_boot_ci_high"]
                     for m in with_ci)
        lines.append(f"{key}: Spearman(r before, r after) = {spearman(r0, r1):.2f}; "
                     f"r after inside the interval before: "
                     f"{f'{inside} of {len(with_ci)}' if with_ci else 'n/a (no intervals)'}; "
                     f"max |dr| = {max(abs(a - b) for a, b in zip(r0, r1)):.3f}; "
                     f"first {top0} -> {top1}; best set {len(best0)} -> {len(best1)} metrics, "
                     f"{len(best0 & best1)} in both")
        lines.append(f"  {'metric':<24}{'r before':>9}{'rank':>5}{'best':>5}{'r after':>9}{'rank':>5}{'best':>5}")
        for m in sorted(metrics, key=lambda m: after[m]["rank"]):
            b, a = before[m], after[m]
            lines.append(f"  {m:<24}{b['pearson_r']:>9.3f}{b['rank']:>5}{b['best_set']:>5}"
                         f"{a['pearson_r']:>9.3f}{a['rank']:>5}{a['best_set']:>5}")
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    old_dir, new_dir, *boards = (Path(a) if i < 2 else a for i, a in enumerate(argv))
    names = boards or sorted(p.stem for p in Path(old_dir).glob("*.json"))
    for name in names:
        old, new = Path(old_dir) / f"{name}.json", Path(new_dir) / f"{name}.json"
        if not (old.exists() and new.exists()):
            continue
        text = compare(old, new)
        if text:
            print(f"== {name}\n{text}\n")


if __name__ == "__main__":
    main(sys.argv[1:])
