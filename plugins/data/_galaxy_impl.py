"""Procedural galaxy images with Galaxy-Zoo-style vote fractions, and the Galaxy Zoo loader (torch code).

The generator (``galaxy_synth``) draws a morphology per galaxy, renders it as
an idealised 3-band image (no PSF, no noise: the ``survey_shift`` steps turn it
into what a survey records), and simulates volunteers answering a
Galaxy-Zoo-like decision tree about it.  All steps run on whole batches.

Morphology (the latent parameters, one row per galaxy; see :func:`sample_latents`):

==============  ==============================================================
``artefact``    1 for a non-galaxy image (a bright star with diffraction spikes
                or a satellite trail over a faint galaxy)
``bt``          bulge-to-total flux ratio (1 - disk fraction)
``n_sersic``    Sersic index of the bulge (4 for ellipticals, 1.5-3 for bulges)
``re``, ``h``   bulge effective radius and disk scale length (pixels)
``cos_i``       disk inclination (1 = face-on, 0 = edge-on); ``q_b`` bulge axis ratio
``pa``          position angle of the major axis
``bar``         bar strength in [0, 1] (0 = no bar); ``bar_angle`` in the disk plane
``spiral``      spiral-arm strength in [0, 1]; ``arms`` (2-4), ``pitch``, ``arm_phase``
``odd``         odd-feature strength in [0, 1]; ``odd_kind`` 0 = ring, 1 = merger
                (companion plus tidal bridge); ``odd_angle``, ``odd_dist``
``brightness``  peak pixel value of the rendered galaxy (apparent brightness)
==============  ==============================================================

Colours follow stellar populations: bulges and bars are red (old stars),
disks bluer and spiral arms and rings bluest (young stars), so a red /
infrared survey (``shallower_blurrier_ir``) sees arms and rings fade while a
blue-sensitive one does not.

Votes: ``n_volunteers`` volunteers per galaxy each follow the decision tree
(smooth / featured / artefact -> if featured: edge-on? -> if not edge-on:
bar? spiral? bulge size? ; everyone but "artefact" answers: anything odd?),
every answer drawn from per-galaxy answer probabilities that depend on how
visible the feature is (:func:`answer_probabilities`).  A question's vote
fractions are the answer counts over the volunteers who reached it; when none
did, the fractions are the answer probabilities (the expected fractions), so
fractions always sum to 1 within a question.  The spread of the fractions
around the probabilities is the label noise of real volunteer votes.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

import simbench
from simbench.errors import UserError
from simbench.seeding import numpy_rng, torch_generator

from ._impl import hub_splits, parquet_splits

#: Galaxy-Zoo-like questions and their answers, in target-column order.
QUESTIONS: dict[str, tuple[str, ...]] = {
    "smooth_or_featured": ("smooth", "featured", "artefact"),
    "edge_on": ("yes", "no"),
    "bar": ("yes", "no"),
    "spiral": ("yes", "no"),
    "bulge_size": ("small", "moderate", "large"),
    "odd": ("yes", "no"),
}
#: one headline column per question: the per-task scores of seed 002's tables
TASKS: dict[str, str] = {
    "disk": "smooth_or_featured_featured",
    "edge_on": "edge_on_yes",
    "bar": "bar_yes",
    "spiral": "spiral_yes",
    "bulge": "bulge_size_large",
    "odd": "odd_yes",
}
SPLITS: tuple[str, ...] = ("train", "val", "test")

# colours (g, r, i) of the stellar populations, before normalisation
RED = (0.55, 0.85, 1.0)
DISK = (0.85, 0.9, 0.8)
BLUE = (1.0, 0.75, 0.5)
WHITE = (1.0, 1.0, 0.95)

#: total flux (sum of pixel values, mean over bands) of the brightest galaxy on a 64 x 64 image
FLUX = 220.0

#: bulge-size answer centres in bulge-to-total ratio (small, moderate, large)
BULGE_CENTRES = (0.08, 0.3, 0.6)


def target_names(questions: Mapping[str, Sequence[str]] = QUESTIONS) -> list[str]:
    """``<question>_<answer>`` for every answer, in column order."""
    return [f"{q}_{a}" for q, answers in questions.items() for a in answers]


def question_slices(questions: Mapping[str, Sequence[str]] = QUESTIONS) -> dict[str, list[int]]:
    """Question -> its target columns."""
    out: dict[str, list[int]] = {}
    start = 0
    for q, answers in questions.items():
        out[q] = list(range(start, start + len(answers)))
        start += len(answers)
    return out


# --------------------------------------------------------------------------
# Morphology
# --------------------------------------------------------------------------


def sample_latents(n: int, gen: torch.Generator, artefact_rate: float = 0.04, odd_rate: float = 0.15) -> dict[str, torch.Tensor]:
    """Draw ``n`` morphologies (float64 tensors of shape ``[n]``; see the module docstring)."""

    def u(lo: float = 0.0, hi: float = 1.0) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=gen, dtype=torch.float64)

    def flag(p: float) -> torch.Tensor:
        return (torch.rand(n, generator=gen, dtype=torch.float64) < p).double()

    artefact = flag(artefact_rate)
    elliptical = flag(0.35) * (1 - artefact)
    disky = 1 - elliptical
    bt = elliptical * u(0.75, 1.0) + disky * 0.6 * u() ** 1.5
    n_sersic = elliptical * 4.0 + disky * u(1.5, 3.0)
    re = elliptical * u(4.0, 9.0) + disky * u(1.5, 3.5)
    h = u(3.5, 8.0)
    cos_i = u()
    lat = {
        "artefact": artefact,
        "elliptical": elliptical,
        "bt": bt,
        "n_sersic": n_sersic,
        "re": re,
        "h": h,
        "cos_i": cos_i,
        "q_b": elliptical * u(0.45, 1.0) + disky * u(0.75, 1.0),
        "pa": u(0.0, math.pi),
        "bar": disky * flag(0.4) * u(0.2, 1.0),
        "bar_angle": u(0.0, math.pi),
        "spiral": disky * flag(0.75) * u(0.15, 1.0),
        "arms": torch.randint(2, 5, (n,), generator=gen).double(),
        "pitch": u(math.radians(12), math.radians(30)),
        "arm_phase": u(0.0, 2 * math.pi),
        "odd": (1 - artefact) * flag(odd_rate) * u(0.3, 1.0),
        "odd_kind": flag(0.5),
        "odd_angle": u(0.0, 2 * math.pi),
        "odd_dist": u(11.0, 17.0),
        "cx": u(-1.5, 1.5),
        "cy": u(-1.5, 1.5),
        "brightness": u(0.45, 1.0),
        "artefact_kind": flag(0.5),
        "artefact_x": u(-10.0, 10.0),
        "artefact_y": u(-10.0, 10.0),
        "artefact_angle": u(0.0, math.pi),
    }
    return lat


def _col(lat: Mapping[str, torch.Tensor], name: str, device: Any) -> torch.Tensor:
    return lat[name].to(device=device, dtype=torch.float64)[:, None, None]


def _colour(rgb: Sequence[float], device: Any) -> torch.Tensor:
    return torch.tensor(rgb, dtype=torch.float64, device=device)[None, :, None, None]


def _sersic_bn(n: torch.Tensor) -> torch.Tensor:
    # Ciotti & Bertin (1999) asymptotic expansion; accurate to <1e-4 for n >= 0.5
    return 2 * n - 1.0 / 3 + 4.0 / (405 * n) + 46.0 / (25515 * n**2)


def _sersic_flux(n: torch.Tensor, re: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Total flux of ``exp(-b_n ((r/re)^(1/n) - 1))`` with axis ratio ``q`` (analytic)."""
    b = _sersic_bn(n)
    return 2 * math.pi * re**2 * q * n * torch.exp(b + torch.lgamma(2 * n) - 2 * n * torch.log(b))


def render(lat: Mapping[str, torch.Tensor], size: int = 64, device: Any = "cpu") -> torch.Tensor:
    """Idealised images ``[n, 3, size, size]`` (float32 in [0, 1]) of the given morphologies."""
    n = int(lat["bt"].shape[0])
    dev = torch.device(device)
    c = (size - 1) / 2.0
    grid = torch.arange(size, dtype=torch.float64, device=dev) - c
    gy, gx = grid[None, :, None], grid[None, None, :]
    col = lambda name: _col(lat, name, dev)  # noqa: E731
    dx, dy = gx - col("cx"), gy - col("cy")
    pa = col("pa")
    u = dx * torch.cos(pa) + dy * torch.sin(pa)  # along the major axis
    v = -dx * torch.sin(pa) + dy * torch.cos(pa)
    cos_i = col("cos_i")
    # a disk of intrinsic thickness 0.12 seen at inclination i
    q_d = torch.sqrt(cos_i**2 + 0.12**2 * (1 - cos_i**2))
    vd = v / q_d  # deprojected coordinate in the disk plane
    r_d = torch.sqrt(u**2 + vd**2).clamp_min(0.5)
    theta = torch.atan2(vd, u)
    h = col("h")

    # bulge (Sersic) and exponential disk, scaled so that bulge / (bulge + disk) = bt
    n_s, re, q_b, bt = col("n_sersic"), col("re"), col("q_b"), col("bt")
    r_b = torch.sqrt(u**2 + (v / q_b) ** 2).clamp_min(0.5)
    bulge_shape = torch.exp(-_sersic_bn(n_s) * ((r_b / re) ** (1 / n_s) - 1))
    disk_shape = torch.exp(-r_d / h)
    bulge = bulge_shape * bt / _sersic_flux(n_s, re, q_b)
    disk = disk_shape * (1 - bt) / (2 * math.pi * h**2 * q_d)

    # spiral arms: a logarithmic m-armed density wave in the disk plane (young, blue stars)
    s, m, pitch = col("spiral"), col("arms"), col("pitch")
    phase = m * (theta - torch.log(r_d / h + 0.1) / torch.tan(pitch)) + col("arm_phase")
    arm = ((1 + torch.cos(phase)) / 2) ** 4
    inner = 1 - torch.exp(-((r_d / (0.9 * h)) ** 2))  # no arms inside the bulge region
    arms = disk * s * (2.6 * arm * inner)
    disk_smooth = disk * (1 - 0.55 * s * inner)

    # bar: an elongated old-star structure through the centre, in the disk plane
    b, ba = col("bar"), col("bar_angle")
    bu = u * torch.cos(ba) + vd * torch.sin(ba)
    bv = -u * torch.sin(ba) + vd * torch.cos(ba)
    length = 1.5 * h
    bar = b * 1.6 * (disk_shape.new_ones(()) / (2 * math.pi * h**2 * q_d)) * torch.exp(
        -((bu / length) ** 2 + (bv / (0.22 * length)) ** 2) ** 1.5
    )

    # dust lane along the mid-plane of nearly edge-on disks
    dust = 0.75 * ((0.35 - cos_i) / 0.35).clamp(0, 1) * (1 - bt)
    lane = 1 - dust * torch.exp(-0.5 * (v / (0.08 * h + 0.4)) ** 2)

    red = (bulge + bar) * lane
    mid = disk_smooth * lane
    blue = arms * lane

    # odd features: a star-forming ring, or a merging companion with a tidal bridge
    odd, kind = col("odd"), col("odd_kind")
    ring_r = 2.8 * h
    ring = (1 - kind) * odd * 0.9 * torch.exp(-0.5 * ((r_d - ring_r) / (0.3 * h)) ** 2) / (2 * math.pi * h**2 * q_d)
    ang, dist = col("odd_angle"), col("odd_dist")
    ox, oy = col("cx") + dist * torch.cos(ang), col("cy") + dist * torch.sin(ang)
    rc = torch.sqrt((gx - ox) ** 2 + (gy - oy) ** 2).clamp_min(0.5)
    comp_re = 1.6 + 0.8 * odd
    companion = kind * odd * 0.45 * torch.exp(-_sersic_bn(torch.tensor(1.5)) * ((rc / comp_re) ** (1 / 1.5) - 1))
    companion = companion / _sersic_flux(torch.tensor(1.5, dtype=torch.float64), comp_re, torch.ones_like(comp_re))
    # bridge: distance to the segment from the galaxy centre to the companion
    ex, ey = ox - col("cx"), oy - col("cy")
    t = ((dx * ex + dy * ey) / (ex**2 + ey**2)).clamp(0.25, 0.9)
    dseg = torch.sqrt((dx - t * ex) ** 2 + (dy - t * ey) ** 2)
    bridge = kind * odd * 0.004 * torch.exp(-0.5 * (dseg / 1.3) ** 2)
    blue = blue + ring
    mid = mid + bridge
    red = red + companion

    img = red[:, None] * _colour(RED, dev) + mid[:, None] * _colour(DISK, dev) + blue[:, None] * _colour(BLUE, dev)

    # artefacts: the galaxy becomes faint next to a saturated star with spikes, or under a satellite trail
    art = lat["artefact"].to(dev, torch.float64)
    if bool((art > 0).any()):
        ak = col("artefact_kind")
        sx, sy = col("artefact_x"), col("artefact_y")
        rs2 = (gx - sx) ** 2 + (gy - sy) ** 2
        star = (1 + rs2 / 2.0) ** -2.5
        spikes = torch.exp(-0.5 * ((gx - sx) / 0.6) ** 2) * torch.exp(-torch.abs(gy - sy) / 12)
        spikes = spikes + torch.exp(-0.5 * ((gy - sy) / 0.6) ** 2) * torch.exp(-torch.abs(gx - sx) / 12)
        aa = col("artefact_angle")
        dl = (gx - sx) * torch.sin(aa) - (gy - sy) * torch.cos(aa)
        trail = torch.exp(-0.5 * (dl / 0.8) ** 2)
        artefact_img = (1 - ak) * (star + 0.35 * spikes) + ak * 0.8 * trail
        # the star / trail carries most of the light; the galaxy behind it keeps a fifth
        a = art[:, None, None, None]
        gal = img / img.mean(1, keepdim=True).sum((2, 3), keepdim=True).clamp_min(1e-12)
        art_img = artefact_img[:, None] * _colour(WHITE, dev)
        art_img = art_img / art_img.mean(1, keepdim=True).sum((2, 3), keepdim=True).clamp_min(1e-12)
        img = (1 - a) * img + a * (0.2 * gal + 0.8 * art_img)

    # apparent brightness sets the total flux (in pixel units); cores saturate at 1, as in display images
    flux = FLUX * (size / 64.0) ** 2 * lat["brightness"].to(dev, torch.float64)[:, None, None, None]
    img = img / img.mean(1, keepdim=True).sum((2, 3), keepdim=True).clamp_min(1e-12) * flux
    return img.clamp(0, 1).float()


# --------------------------------------------------------------------------
# Votes
# --------------------------------------------------------------------------


def answer_probabilities(lat: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Per question, ``[n, answers]`` probabilities that a volunteer gives each answer.

    They depend on how visible a feature is, not only on whether it exists:
    bars and arms are hard to see in inclined disks, faint galaxies look
    smoother, and weak features get split votes.
    """
    art, bt, cos_i = lat["artefact"], lat["bt"], lat["cos_i"]
    disk = 1 - bt
    face = (cos_i / 0.5).clamp(0, 1)  # how well the disk plane can be seen
    visible = (0.6 + 0.4 * lat["brightness"])
    sig = torch.sigmoid
    featured = 7.0 * (disk - 0.45) + 3.0 * lat["spiral"] * visible + 2.0 * lat["bar"] + 2.5 * disk * (cos_i < 0.3).double()
    logits = torch.stack([-featured / 2, featured / 2, -5.0 + 8.0 * art], 1)
    p = {"smooth_or_featured": torch.softmax(logits, 1)}
    edge = sig(16.0 * (0.27 - cos_i)) * (0.15 + 0.85 * (disk > 0.3).double())
    p["edge_on"] = torch.stack([edge, 1 - edge], 1)
    bar = sig(10.0 * (lat["bar"] * face * visible - 0.22))
    p["bar"] = torch.stack([bar, 1 - bar], 1)
    spiral = sig(10.0 * (lat["spiral"] * face * visible - 0.2))
    p["spiral"] = torch.stack([spiral, 1 - spiral], 1)
    centres = torch.tensor(BULGE_CENTRES, dtype=torch.float64)
    p["bulge_size"] = torch.softmax(-(((bt[:, None] - centres[None]) / 0.12) ** 2), 1)
    odd = sig(10.0 * (lat["odd"] * visible - 0.25))
    p["odd"] = torch.stack([odd, 1 - odd], 1)
    return p


def simulate_votes(lat: Mapping[str, torch.Tensor], gen: torch.Generator, n_volunteers: int = 40) -> torch.Tensor:
    """Vote fractions ``[n, len(target_names())]`` (float32) from volunteers following the decision tree."""
    probs = answer_probabilities(lat)
    n = int(lat["bt"].shape[0])
    answers = {q: torch.multinomial(p.float(), n_volunteers, replacement=True, generator=gen) for q, p in probs.items()}
    everyone = torch.ones(n, n_volunteers, dtype=torch.bool)
    featured = answers["smooth_or_featured"] == 1
    face_on = featured & (answers["edge_on"] == 1)
    reach = {
        "smooth_or_featured": everyone,
        "edge_on": featured,
        "bar": face_on,
        "spiral": face_on,
        "bulge_size": face_on,
        "odd": answers["smooth_or_featured"] != 2,
    }
    cols = []
    for q, p in probs.items():
        k = p.shape[1]
        counts = torch.nn.functional.one_hot(answers[q], k).double() * reach[q][..., None].double()
        counts = counts.sum(1)  # [n, k]
        total = counts.sum(1, keepdim=True)
        frac = torch.where(total > 0, counts / total.clamp_min(1), p)
        cols.append(frac)
    return torch.cat(cols, 1).float()


# --------------------------------------------------------------------------
# Splits
# --------------------------------------------------------------------------


def make_split(meta: Mapping[str, Any], split: str, chunk: int = 512) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """``(x [n, 3, size, size], y [n, targets], latents)`` of one split, generated in chunks."""
    n = int(meta["sizes"][split])
    seed = int(meta["seed"])
    lat = sample_latents(
        n, torch_generator(seed, split, "latents"),
        artefact_rate=float(meta["artefact_rate"]), odd_rate=float(meta["odd_rate"]),
    )
    y = simulate_votes(lat, torch_generator(seed, split, "votes"), int(meta["n_volunteers"]))
    xs = [render({k: v[i : i + chunk] for k, v in lat.items()}, int(meta["size"])) for i in range(0, n, chunk)]
    x = torch.cat(xs) if xs else torch.zeros(0, 3, int(meta["size"]), int(meta["size"]))
    return x, y, lat


def load_synth(ds: Any, ctx: simbench.RunContext) -> simbench.DataSplits:
    """The ``galaxy_synth`` data set."""
    meta: dict[str, Any] = {
        "generator": "galaxy_synth",
        "dataset": ds.name,
        "params": ds.params(),
        "size": int(ds.size),
        "seed": int(ctx.seed),
        "sizes": {"train": ds.n_train, "val": ds.n_val, "test": ds.n_test},
        "n_volunteers": int(ds.n_volunteers),
        "artefact_rate": float(ds.artefact_rate),
        "odd_rate": float(ds.odd_rate),
        "channels": ["g", "r", "i"],
        "targets": target_names(),
        "questions": {q: list(a) for q, a in QUESTIONS.items()},
        "tasks": dict(TASKS),
    }
    splits = {}
    for split in SPLITS:
        x, y, _ = make_split(meta, split)
        splits[split] = simbench.Split(x, y)
    return simbench.DataSplits(train=splits["train"], val=splits["val"], test=splits["test"], task="regression", meta=meta)


# --------------------------------------------------------------------------
# Image statistics (used by the tests to check that labels match the pictures)
# --------------------------------------------------------------------------


def polar(size: int, cx: float = 0.0, cy: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    c = (size - 1) / 2.0
    g = torch.arange(size, dtype=torch.float64) - c
    dy, dx = g[:, None] - cy, g[None, :] - cx
    return torch.sqrt(dx**2 + dy**2), torch.atan2(dy, dx)


def fourier_amplitude(img: torch.Tensor, m: int, r_lo: float, r_hi: float) -> torch.Tensor:
    """``|sum I e^{i m phi}| / sum I`` over the annulus ``r_lo <= r < r_hi`` (luminance, per image)."""
    lum = img.double().mean(1)
    r, phi = polar(img.shape[-1])
    w = ((r >= r_lo) & (r < r_hi)).double()
    tot = (lum * w).sum((-2, -1)).clamp_min(1e-12)
    re = (lum * w * torch.cos(m * phi)).sum((-2, -1))
    im = (lum * w * torch.sin(m * phi)).sum((-2, -1))
    return torch.sqrt(re**2 + im**2) / tot


def axis_ratio(img: torch.Tensor) -> torch.Tensor:
    """Minor / major axis from the luminance second moments (per image)."""
    lum = img.double().mean(1)
    size = img.shape[-1]
    g = torch.arange(size, dtype=torch.float64)
    tot = lum.sum((-2, -1)).clamp_min(1e-12)
    mx = (lum * g[None, None, :]).sum((-2, -1)) / tot
    my = (lum * g[None, :, None]).sum((-2, -1)) / tot
    dx = g[None, None, :] - mx[:, None, None]
    dy = g[None, :, None] - my[:, None, None]
    ixx = (lum * dx**2).sum((-2, -1)) / tot
    iyy = (lum * dy**2).sum((-2, -1)) / tot
    ixy = (lum * dx * dy).sum((-2, -1)) / tot
    tr, det = ixx + iyy, ixx * iyy - ixy**2
    disc = torch.sqrt((tr**2 / 4 - det).clamp_min(0))
    return torch.sqrt((tr / 2 - disc).clamp_min(0) / (tr / 2 + disc))


def colour_index(img: torch.Tensor) -> torch.Tensor:
    """Flux-weighted ``g / i`` ratio (bluer images have larger values)."""
    return img[:, 0].double().sum((-2, -1)) / img[:, 2].double().sum((-2, -1)).clamp_min(1e-12)


# --------------------------------------------------------------------------
# Galaxy Zoo through Hugging Face datasets
# --------------------------------------------------------------------------


def how_to_get(hub_id: str) -> str:
    return (
        f"either run `python -c \"import datasets; datasets.load_dataset('{hub_id}')\"` once with network access "
        "(it fills the Hugging Face cache; unset HF_HUB_OFFLINE/HF_DATASETS_OFFLINE for that), or download the "
        f"parquet shards from https://huggingface.co/datasets/{hub_id}/tree/main and set "
        "data_files = {train = \"...\", test = \"...\"} in the suite's [data] table"
    )


def question_columns(columns: Sequence[str], question: str) -> tuple[list[str], list[str]]:
    """The ``<question>-<campaign>_<answer>_fraction`` columns of one question and their answers.

    Galaxy Zoo tables on the hub name columns
    ``smooth-or-featured-gz2_smooth_fraction`` (question, campaign suffix,
    answer); a column ``<question>_<answer>_fraction`` without a campaign is
    accepted too.
    """
    cols, answers = [], []
    for c in columns:
        if not c.endswith("_fraction"):
            continue
        stem = c[: -len("_fraction")]
        head, sep, answer = stem.rpartition("_")
        if not sep:
            continue
        if head == question or (head.startswith(question + "-") and "-" not in head[len(question) + 1 :].strip("-")):
            cols.append(c)
            answers.append(answer)
    return cols, answers


def decode_images(table: Any, size: int, where: str) -> torch.Tensor:
    """``image`` column (struct with PNG/JPEG ``bytes`` or plain binary) -> ``[N, 3, size, size]`` in [0, 1]."""
    import pyarrow as pa
    from PIL import Image

    col = table.column("image").combine_chunks()
    if pa.types.is_struct(col.type):
        col = col.field("bytes")
    blobs = col.to_pylist()
    out = np.empty((len(blobs), size, size, 3), dtype=np.uint8)
    for i, blob in enumerate(blobs):  # JPEG/PNG decoding has no batched form
        if blob is None:
            raise UserError(f"galaxy_zoo: {where}: row {i} has no image bytes")
        with Image.open(io.BytesIO(blob)) as im:
            im = im.convert("RGB")
            if im.size != (size, size):
                im = im.resize((size, size), Image.Resampling.LANCZOS)
            out[i] = np.asarray(im)
    return torch.from_numpy(out).permute(0, 3, 1, 2).float().div_(255.0)


def decode_targets(table: Any, questions: Sequence[str], where: str) -> tuple[torch.Tensor, dict[str, list[str]]]:
    """Vote fractions of the chosen questions (``[N, targets]``); a question nobody answered gets uniform
    fractions, so every question's fractions sum to 1."""
    names = table.column_names
    blocks, found = [], {}
    for q in questions:
        cols, answers = question_columns(names, q)
        if not cols:
            raise UserError(
                f"galaxy_zoo: {where}: no '<{q}>-<campaign>_<answer>_fraction' columns "
                f"(columns start: {', '.join(names[:8])} ...)"
            )
        arr = np.stack([np.asarray(table.column(c).to_numpy(zero_copy_only=False), dtype=np.float64) for c in cols], 1)
        arr = np.nan_to_num(arr, nan=0.0)
        total = arr.sum(1, keepdims=True)
        arr = np.where(total > 0, arr / np.where(total > 0, total, 1.0), 1.0 / len(cols))
        blocks.append(arr)
        found[q] = answers
    return torch.from_numpy(np.concatenate(blocks, 1)).float(), found


def load_zoo(ds: Any, ctx: simbench.RunContext) -> simbench.DataSplits:
    """The ``galaxy_zoo`` data set: hub or local parquet, images resized to ``size``, vote fractions."""
    if ds.data_files:
        raw, fingerprint = parquet_splits("galaxy_zoo", ds.data_files)
    else:
        raw, fingerprint = hub_splits("galaxy_zoo", ds.hub_id, ds.config, ds.cache_dir, how_to_get(ds.hub_id))
    rng = numpy_rng(ctx.seed, "galaxy_zoo", "order")
    tables = {}
    for split in ("train", "test"):
        t = raw[split]
        order = rng.permutation(t.num_rows)
        cap = ds.max_train if split == "train" else ds.max_test
        if split == "train" and cap:
            cap = cap + int(math.ceil(cap * ds.val_fraction / (1 - ds.val_fraction)))
        if cap:
            order = order[:cap]
        tables[split] = t.take(order)
    train = tables["train"]
    n_val = int(round(train.num_rows * ds.val_fraction))
    if train.num_rows - n_val < 1 or tables["test"].num_rows < 1:
        raise UserError("galaxy_zoo: the training and test splits need at least one image each")
    rest = train.slice(n_val)
    if ds.max_train:
        rest = rest.slice(0, ds.max_train)
    parts = {"val": train.slice(0, n_val), "train": rest, "test": tables["test"]}
    splits, answers = {}, None
    for name, t in parts.items():
        x = decode_images(t, ds.size, name)
        y, found = decode_targets(t, ds.questions, name)
        if answers is None:
            answers = found
        elif found != answers:
            raise UserError(f"galaxy_zoo: split {name} has other answers than the training split ({found} vs {answers})")
        splits[name] = simbench.Split(x, y)
    assert answers is not None
    meta = {
        "generator": "galaxy_zoo",
        "dataset": ds.name,
        "params": ds.params(),
        "source": "data_files" if ds.data_files else ds.hub_id,
        "fingerprint": fingerprint,
        "size": int(ds.size),
        "channels": ["r", "g", "b"],
        "targets": [f"{q}_{a}" for q, ans in answers.items() for a in ans],
        "questions": answers,
        "tasks": {q: f"{q}_{ans[0]}" for q, ans in answers.items()},
    }
    return simbench.DataSplits(train=splits["train"], val=splits["val"], test=splits["test"], task="regression", meta=meta)
