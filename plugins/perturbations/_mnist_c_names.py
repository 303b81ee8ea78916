"""The MNIST-C corruption names: read by the light plugin module and by the torch implementation,
which therefore never import each other at module level."""

from __future__ import annotations

#: the MNIST-C corruptions in the order of Mu & Gilmer (2019), Table 1
CORRUPTIONS: tuple[str, ...] = (
    "shot_noise",
    "impulse_noise",
    "glass_blur",
    "motion_blur",
    "shear",
    "scale",
    "rotate",
    "brightness",
    "translate",
    "stripe",
    "fog",
    "spatter",
    "dotted_line",
    "zigzag",
    "canny_edges",
)
