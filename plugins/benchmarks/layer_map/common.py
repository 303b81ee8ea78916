"""Names shared by the layer_map benchmark's plugin class, computation and report (no imports back)."""

from __future__ import annotations

DELTA_STATS: tuple[str, ...] = (
    "offdiag_mean",
    "offdiag_median",
    "offdiag_skew",
    "adjacent_mean",
    "eig_1",
    "effective_rank",
    "block_score",
    "task_score",
)
