"""Benchmark records as a DataFrame: the one loader every report module uses."""

from __future__ import annotations

from typing import Any

TEXT_COLUMNS = ("metric", "probe_set", "group", "model_a", "model_b", "error", "status", "benchmark", "statistic")


def records_frame(records: Any, ok_only: bool = False) -> Any:
    """Records (a DataFrame from the results store or an iterable of :class:`simbench.Record`) as a
    DataFrame of benchmark rows with text columns normalised ('' for missing) and numeric ``value``.

    ``ok_only`` drops failed rows (for reports that only read measurements).
    """
    import pandas as pd

    if isinstance(records, pd.DataFrame):
        df = records.copy()
    else:  # Record objects: their coords become coord_<name> columns, as in the results store
        rows = []
        for r in records:
            row = {k: v for k, v in r.__dict__.items() if k != "coords"}
            row.update({f"coord_{k}": float(v) for k, v in (getattr(r, "coords", None) or {}).items()})
            rows.append(row)
        df = pd.DataFrame(rows)
    if "coords" in df.columns:  # a frame built from Record.__dict__: expand it the same way
        expanded = pd.DataFrame([dict(c) if isinstance(c, dict) else {} for c in df.pop("coords")], index=df.index)
        for name in expanded.columns:
            df[f"coord_{name}"] = pd.to_numeric(expanded[name], errors="coerce")
    if "kind" in df.columns:
        df = df[df["kind"] == "benchmark"]
    for col in TEXT_COLUMNS:
        if col not in df:
            df[col] = ""
        df[col] = df[col].fillna("").astype(str)
    if "n" not in df:
        df["n"] = None
    if "value" not in df:
        df["value"] = float("nan")
    df["value"] = pd.to_numeric(df["value"], errors="coerce")
    if ok_only:
        df = df[df["status"] == "ok"]
    return df
