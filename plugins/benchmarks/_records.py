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

    df = records if isinstance(records, pd.DataFrame) else pd.DataFrame([r.__dict__ for r in records])
    df = df.copy()
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
