"""Names shared by the galaxy zoo's plugin module and its torch implementation (neither imports the other
at module level)."""

from __future__ import annotations

#: a training "survey" that leaves the images as the dataset gives them
CLEAN = "clean"


#: suffix of the label of a mix drawn with maximum overlap (the same galaxies through every survey of the mix)
OVERLAP = "overlap"
#: the ways a mix's training images are drawn (the zoo's ``pairing``)
PAIRINGS = ("random", OVERLAP)


def mix_label(surveys: tuple[str, ...], pairing: str = "random") -> str:
    """The model-id / factor label of a training-survey mix, e.g. ``reference+deeper_sharper``, or
    ``reference+deeper_sharper-overlap`` for a maximum-overlap mix of the same surveys."""
    label = "+".join(surveys)
    return label if pairing == "random" else f"{label}-{pairing}"
