"""Names shared by the galaxy zoo's plugin module and its torch implementation (neither imports the other
at module level)."""

from __future__ import annotations

#: a training "survey" that leaves the images as the dataset gives them
CLEAN = "clean"


def mix_label(surveys: tuple[str, ...]) -> str:
    """The model-id / factor label of a training-survey mix, e.g. ``reference+deeper_sharper``."""
    return "+".join(surveys)
