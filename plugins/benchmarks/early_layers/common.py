"""Names shared by the ``early_layers`` benchmark's modules (no torch, no numpy)."""

from __future__ import annotations

#: group of the rows that hold the pre-declared thresholds
SETTINGS = "settings"
#: group of the function rows (accuracies, agreement)
FUNCTION = "function"
#: the seed's three conditions, in the seed's order (zoo ``memorisation``'s factor values)
GENERALISING, MEMORISING, RANDOM = "generalising", "memorising", "random"


def pair_label(a: str, b: str) -> str:
    """``"generalising vs memorising"`` (cross) or ``"generalising"`` (within)."""
    return a if a == b else f"{a} vs {b}"
