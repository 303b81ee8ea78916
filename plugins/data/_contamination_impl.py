"""The feature-contamination data model (seed ``004_ae8e852829be66a0``, Definition 3.1), in torch.

A dictionary of ``d_core + d_background`` orthonormal feature vectors in
``R^d_input``; an example with label ``y in {-1, +1}`` is

    x = sum_{j in core} y * z_j * m_j  +  sum_{j in background} z_j * m_j

with ``z_j ~ U[0, 1]`` independently of everything else (so the background
weights are independent of the label).  Out of distribution only the
background weights move, to ``z_j ~ U[low, high]`` (``U[-1, 0]`` in the
seed's App. F.1).  The ``sphere`` core variant (App. F.1, "more general
settings") puts the core part of class +1 on the unit sphere and class -1 on
the radius-2 sphere of the core subspace: not linearly separable.

Classes are stored as ``0`` (``y = -1``) and ``1`` (``y = +1``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from simbench.seeding import torch_generator

SPLITS: tuple[str, ...] = ("train", "val", "test")


def dictionary(meta: Mapping[str, Any]) -> torch.Tensor:
    """``[d_input, d_core + d_background]`` float64 matrix with orthonormal columns (core first)."""
    d_in = int(meta["d_input"])
    k = int(meta["d_core"]) + int(meta["d_background"])
    g = torch_generator(int(meta["seed"]), "dictionary")
    q, r = torch.linalg.qr(torch.randn(d_in, k, generator=g, dtype=torch.float64))
    # fix the QR sign ambiguity so the dictionary is a deterministic function of the seed
    return q * torch.sign(torch.diagonal(r)).where(torch.diagonal(r) != 0, torch.ones(k, dtype=torch.float64))


def subspaces(meta: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """(core basis ``[d_input, d_core]``, background basis ``[d_input, d_background]``)."""
    m = dictionary(meta)
    dc = int(meta["d_core"])
    return m[:, :dc], m[:, dc:]


def sample_weights(
    n: int, meta: Mapping[str, Any], gen: torch.Generator, background: tuple[float, float] = (0.0, 1.0)
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(labels in {0, 1} [n], core coordinates [n, d_core], background weights [n, d_bg])``."""
    dc, db = int(meta["d_core"]), int(meta["d_background"])
    labels = torch.randint(2, (n,), generator=gen)
    sign = (2 * labels - 1).double()[:, None]
    if meta.get("core", "linear") == "sphere":
        u = torch.randn(n, dc, generator=gen, dtype=torch.float64)
        u = u / u.norm(dim=1, keepdim=True)
        core = u * torch.where(labels[:, None] == 1, 1.0, 2.0).double()
    else:
        core = sign * torch.rand(n, dc, generator=gen, dtype=torch.float64)
    lo, hi = background
    bg = lo + (hi - lo) * torch.rand(n, db, generator=gen, dtype=torch.float64)
    return labels, core, bg


def compose(core: torch.Tensor, bg: torch.Tensor, meta: Mapping[str, Any]) -> torch.Tensor:
    m = dictionary(meta).to(core.device)
    return torch.cat([core, bg], 1) @ m.T


def make_split(meta: Mapping[str, Any], split: str) -> tuple[torch.Tensor, torch.Tensor]:
    n = int(meta["sizes"][split])
    gen = torch_generator(int(meta["seed"]), "split", split)
    labels, core, bg = sample_weights(n, meta, gen, tuple(meta["id_background"]))
    return compose(core, bg, meta).float(), labels.long()


def coordinates(x: torch.Tensor, meta: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """Core and background coordinates of inputs (exact: the dictionary is orthonormal)."""
    core, bgb = subspaces(meta)
    xd = x.double().reshape(len(x), -1)
    return xd @ core.to(xd.device), xd @ bgb.to(xd.device)


def shift_background(
    x: torch.Tensor, meta: Mapping[str, Any], low: float, high: float, gen: torch.Generator
) -> torch.Tensor:
    """Replace every background weight by a fresh ``U[low, high]`` draw; the core part is untouched."""
    _, bgb = subspaces(meta)
    bgb = bgb.to(x.device)
    xd = x.double().reshape(len(x), -1)
    old = xd @ bgb
    new = low + (high - low) * torch.rand(old.shape, generator=gen, dtype=torch.float64)
    return (xd + (new.to(xd.device) - old) @ bgb.T).to(x.dtype).reshape(x.shape)


def load(
    d_core: int, d_background: int, d_input: int, sizes: Mapping[str, int], core: str, seed: int
) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], dict[str, Any]]:
    meta: dict[str, Any] = {
        "generator": "feature_contamination",
        "d_core": int(d_core),
        "d_background": int(d_background),
        "d_input": int(d_input),
        "core": core,
        "seed": int(seed),
        "sizes": {k: int(v) for k, v in sizes.items()},
        "id_background": [0.0, 1.0],
        "ood_background": [-1.0, 0.0],
        "classes": ["y=-1", "y=+1"],
    }
    return {s: make_split(meta, s) for s in SPLITS}, meta


# -- read by the contamination zoo (in training) and benchmarks (afterwards): kept with the generator
# whose background subspace they measure, so a benchmark never imports the zoo's training code

#: columns of a contamination_net model's ``history`` buffer, one row per recorded training step
HISTORY_COLUMNS: tuple[str, ...] = (
    "step",
    "core_proj",
    "bg_proj",
    "bg_corr",
    "id_risk",
    "ood_risk",
    "id_error",
    "ood_error",
    "bg_align",
)


def background_alignment(w: torch.Tensor, bg: torch.Tensor) -> torch.Tensor:
    """``log R`` of hidden weights ``w [..., m, d]``: ``R`` = the weights' mean squared coordinate along the mean
    background direction ``u`` (the normalised sum of the background features, the direction every background
    weight's positive mean points to) over their mean squared coordinate along the other ``d_background - 1``
    background directions.  Feature contamination (seed 004 Thm 4.2: every neuron's weight on every background
    feature grows with the same sign) drives ``R`` far above 1; weights that only diffuse in the background
    subspace (optimiser noise, a random initialisation) have ``R`` about 1 whatever their size."""
    u = bg.sum(1)
    u = u / u.norm()
    along = (w @ u) ** 2  # [..., m]
    total = ((w @ bg) ** 2).sum(-1)
    other = (total - along).clamp(min=1e-30) / (bg.shape[1] - 1)
    return torch.log(along.mean(-1) / other.mean(-1))
