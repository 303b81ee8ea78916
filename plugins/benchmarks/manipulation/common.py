"""Names shared by the manipulation benchmark's plugin class, computation and report (no imports back)."""

from __future__ import annotations

ALL_PROBES = "(mean over probe sets)"
REFERENCE = "reference"
