"""Compare two run directories of the same suite: every result but timings must be identical.

    .venv/bin/python benchmarks/compare_runs.py RUN_A RUN_B [RUN_A2 RUN_B2 ...]

For a refactor of the core (no plugin changed, so no cache key changes), two
runs of one suite -- before and after, from an empty and from a warm cache --
must agree exactly: ``results.parquet`` row for row in every column (values
bit for bit, NaN where NaN), except the values of rows whose statistic is a
wall-clock timing (``*seconds*``, ``*time*``: measured, never reproducible),
and every stored matrix (``matrices/**.npy``) byte for byte.  Prints one line
per pair and exits 1 on the first difference it describes.
"""

from __future__ import annotations

import sys
from pathlib import Path

#: statistics whose values are wall-clock measurements (compared by presence, not value)
TIMING_WORDS = ("seconds", "time")


def compare(a: Path, b: Path) -> list[str]:
    """The differences between run directories ``a`` and ``b`` (empty: identical but for timings)."""
    import numpy as np
    import pandas as pd

    fa, fb = pd.read_parquet(a / "results.parquet"), pd.read_parquet(b / "results.parquet")
    problems: list[str] = []
    if list(fa.columns) != list(fb.columns):
        return [f"columns differ: {list(fa.columns)} vs {list(fb.columns)}"]
    if len(fa) != len(fb):
        return [f"{len(fa)} rows vs {len(fb)}"]
    text = [c for c in fa.columns if c != "value"]
    for column in text:
        left, right = fa[column].reset_index(drop=True), fb[column].reset_index(drop=True)
        same = (left == right) | (left.isna() & right.isna())
        if not bool(same.all()):
            i = int((~same).to_numpy().nonzero()[0][0])
            problems.append(f"column {column!r} differs first at row {i}: {left[i]!r} vs {right[i]!r}")
    timing = fa["statistic"].astype(str).str.contains("|".join(TIMING_WORDS))
    x, y = fa["value"].to_numpy(float), fb["value"].to_numpy(float)
    same = (x == y) | (np.isnan(x) & np.isnan(y)) | timing.to_numpy()
    if not bool(same.all()):
        i = int((~same).nonzero()[0][0])
        row = fa.iloc[i]
        problems.append(f"{int((~same).sum())} values differ; first row {i} ({row['kind']} {row['benchmark']} "
                        f"{row['metric']} {row['probe_set']} {row['statistic']}): {x[i]!r} vs {y[i]!r}")
    arrays_a = sorted(p.relative_to(a) for p in (a / "matrices").rglob("*") if p.is_file())
    arrays_b = sorted(p.relative_to(b) for p in (b / "matrices").rglob("*") if p.is_file())
    if arrays_a != arrays_b:
        problems.append(f"stored matrices differ in name: {sorted(set(arrays_a) ^ set(arrays_b))[:5]}")
    for rel in arrays_a:
        if rel in arrays_b and (a / rel).read_bytes() != (b / rel).read_bytes():
            problems.append(f"matrix {rel} differs")
    return problems


def main(argv: list[str]) -> int:
    if len(argv) < 2 or len(argv) % 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    status = 0
    for a, b in zip(argv[::2], argv[1::2], strict=True):
        problems = compare(Path(a), Path(b))
        print(f"{a} vs {b}: " + ("identical (timings aside)" if not problems else problems[0]))
        for line in problems[1:]:
            print(f"  {line}")
        status = status or (1 if problems else 0)
    return status


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
