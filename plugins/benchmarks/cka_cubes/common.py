"""Names shared by the ``cka_cubes`` benchmark's modules (no torch, no numpy)."""

from __future__ import annotations

#: the three transforms, in the seed's panel order (Fig. 3a, 3b; 3c's outlier, here on the cubes)
TRANSLATION, INVERTIBLE, OUTLIER = "translation", "invertible", "outlier"
TRANSFORMS = (TRANSLATION, INVERTIBLE, OUTLIER)
#: group of the rows that hold the pre-declared thresholds and the cubes' size
INFO = "info"
#: the metric seed 003 examines; the verdicts are read from the suite label whose metric has this name
SUBJECT = "linear_cka"
