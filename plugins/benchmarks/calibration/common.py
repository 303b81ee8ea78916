"""Names shared by the calibration benchmark's plugin class, computation and report (no imports back)."""

from __future__ import annotations

#: group labels of the records
SEPARATION = "separation"
TIMING = "timing"
INFO = "info"
WEIGHTS = "weights"
#: letter-value depths stored: quantiles 1/2^k and 1 - 1/2^k
LETTER_DEPTHS: tuple[int, ...] = (4, 8, 16, 32, 64)
#: group of the pre-declared overlap verdict's rows (seed 001 §3.1), and the probe-set label of pooled rows
OVERLAP = "overlap"
POOLED = "pooled"
