"""Names shared by the sanity benchmark's plugin class, computation and report (no imports back)."""

from __future__ import annotations

TRANSFORMS: tuple[str, ...] = ("class_translation", "invertible_linear", "outlier")
INVARIANCE_GROUP = "invariance"
INFO = "info"
