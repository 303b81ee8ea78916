"""The calibrated scale: every metric mapped onto 0 = unrelated, 1 = identical (shared by the calibration,
sanity and manipulation benchmarks)."""

from __future__ import annotations

import math
from typing import Any


def scale_of(metric: Any) -> tuple[float, float] | None:
    """``(unrelated, identical)`` raw values of a metric, or None when its range is unbounded.

    Similarities: identical = the top of ``value_range``; unrelated = 0 for a
    range that straddles 0 (correlations such as RSA), else the bottom.
    Distances (``higher_is_more_similar = False``): identical = the bottom,
    unrelated = the top (Procrustes: ``1 - d^2 / 2``, the nuclear-norm
    alignment).  A metric may override both with a ClassVar
    ``calibration_scale = (unrelated, identical)``.
    """
    own = getattr(metric, "calibration_scale", None)
    if own is not None:
        return float(own[0]), float(own[1])
    lo, hi = (float(v) for v in metric.value_range)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return None
    if metric.higher_is_more_similar:
        return (0.0 if lo < 0.0 < hi else lo), hi
    return hi, lo


def calibrated(metric: Any, oriented: Any) -> Any:
    """Map oriented similarities (higher = more similar, as ``view.similarity`` returns them) to the
    calibrated scale: 0 = unrelated, 1 = identical.  NaN everywhere when the metric has no scale."""
    scale = scale_of(metric)
    raw = oriented if metric.higher_is_more_similar else -oriented
    if scale is None:
        return raw * float("nan")
    unrelated, identical = scale
    return (raw - unrelated) / (identical - unrelated)
