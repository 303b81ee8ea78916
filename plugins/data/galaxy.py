"""Datasets ``galaxy_synth`` (procedural galaxies with vote fractions) and ``galaxy_zoo`` (Hugging Face).

Seed ``002_611b2e197fb6c8f4``: galaxy morphology regressed from images as
Galaxy Zoo vote fractions, and how it transfers between imaging surveys.
The torch code lives in :mod:`simbench_plugins.data._galaxy_impl`; this module
only declares the plugins so that listing plugins stays cheap.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Annotated, ClassVar

from pydantic import Field

import simbench
from simbench import ParamError


@dataclass(frozen=True)
class GalaxySynth(simbench.Dataset):
    """Procedural galaxy images with Galaxy-Zoo-like vote fractions (seed 002's task, offline).

    Each example is an idealised 3-band (g, r, i) ``size x size`` image in
    [0, 1] of a galaxy drawn from a simple morphology model: a Sersic bulge
    and an exponential disk (bulge-to-total ratio, inclination, position
    angle), optionally a bar, logarithmic spiral arms, a dust lane in edge-on
    disks, and odd features (a star-forming ring, or a merging companion with a
    tidal bridge); a few images are artefacts (a bright star with diffraction
    spikes, a satellite trail).  Bulges and bars are red, arms and rings blue.
    There is no PSF and no noise: a survey is applied afterwards (the zoo's
    ``train_surveys``, the ``survey_shift`` probe sets).

    Targets (``[N, 14]`` float32) are vote fractions of ``n_volunteers``
    simulated volunteers following a Galaxy-Zoo decision tree: smooth /
    featured / artefact; edge-on yes / no; bar yes / no; spiral yes / no;
    bulge small / moderate / large; anything odd yes / no.  Fractions sum to 1
    within each question; finite volunteer counts give the label noise of real
    votes.  ``meta["targets"]`` names the columns, ``meta["questions"]`` groups
    them, ``meta["tasks"]`` names one headline column per task (disk, edge-on,
    bar, spiral, bulge, odd: seed 002's per-feature tables).  Deterministic
    given the run seed.
    """

    name: ClassVar[str] = "galaxy_synth"
    description: ClassVar[str] = "Procedural galaxy images (bulge, disk, bar, arms, edge-on, odd) with vote fractions"
    version: ClassVar[str] = "1"

    size: Annotated[int, Field(ge=32, le=256)] = 64
    n_train: Annotated[int, Field(ge=8)] = 3000
    n_val: Annotated[int, Field(ge=8)] = 400
    n_test: Annotated[int, Field(ge=8)] = 600
    n_volunteers: Annotated[int, Field(ge=1, le=1000)] = 40
    artefact_rate: Annotated[float, Field(ge=0.0, le=0.5)] = 0.04
    odd_rate: Annotated[float, Field(ge=0.0, le=1.0)] = 0.15

    def load(self, ctx: simbench.RunContext) -> simbench.DataSplits:
        from . import _galaxy_impl

        return _galaxy_impl.load_synth(self, ctx)


DEFAULT_QUESTIONS: tuple[str, ...] = ("smooth-or-featured", "disk-edge-on", "bar", "has-spiral-arms", "bulge-size")


@dataclass(frozen=True)
class GalaxyZoo(simbench.Dataset):
    """Galaxy Zoo images and volunteer vote fractions through Hugging Face ``datasets``.

    Default: Galaxy Zoo 2 on SDSS images (``mwalmsley/gz2``, Walmsley et al.
    2024, the SDSS catalogue seed 002 trains on); other campaigns of the same
    format (``mwalmsley/gz_desi``, ``mwalmsley/gz_ukidss``, ...) through
    ``hub_id`` / ``config``.  Columns: ``image`` (JPEG/PNG) and, per question,
    ``<question>-<campaign>_<answer>_fraction``; ``questions`` picks the
    questions by their hub name (without the campaign suffix), and the
    answers are read from the columns.  Images are resized to ``size`` (RGB,
    [0, 1]); targets are the fractions of each question (uniform when nobody
    answered, so each question sums to 1).  The hub's test split is the test
    split; ``val_fraction`` of the (shuffled) training split is held out.

    The hub is used through the usual ``HF_HUB_OFFLINE`` /
    ``HF_DATASETS_OFFLINE`` variables and cache (``cache_dir`` or
    ``HF_DATASETS_CACHE``); ``data_files = {train = "...", test = "..."}``
    reads local parquet files (paths may be globs) instead.  ``max_train`` /
    ``max_test`` (0 = all) cap the split sizes.
    """

    name: ClassVar[str] = "galaxy_zoo"
    description: ClassVar[str] = "Galaxy Zoo images + vote fractions via Hugging Face datasets or local parquet"
    version: ClassVar[str] = "1"

    hub_id: str = "mwalmsley/gz2"
    config: str = ""
    questions: tuple[str, ...] = DEFAULT_QUESTIONS
    size: Annotated[int, Field(ge=16, le=512)] = 64
    val_fraction: Annotated[float, Field(ge=0.0, lt=0.9)] = 0.1
    data_files: dict[str, str | tuple[str, ...]] = field(default_factory=dict)
    cache_dir: str = ""
    max_train: Annotated[int, Field(ge=0)] = 0
    max_test: Annotated[int, Field(ge=0)] = 0

    def __post_init__(self) -> None:
        if not self.questions:
            raise ParamError("questions", "must name at least one question")
        if len(set(self.questions)) != len(self.questions):
            raise ParamError("questions", f"must not repeat a question (got {list(self.questions)})")
        if self.data_files and set(self.data_files) != {"train", "test"}:
            raise ParamError(
                "data_files", f"expected a table with exactly the keys 'train' and 'test', got {sorted(self.data_files)}"
            )
        if not self.data_files and not self.hub_id:
            raise ParamError("hub_id", "set a hub dataset id or data_files")

    # A dict-valued field would make the generated hash fail; hash the parameters' JSON instead.
    def __hash__(self) -> int:
        return hash(json.dumps(self.params(), sort_keys=True, default=list))

    def load(self, ctx: simbench.RunContext) -> simbench.DataSplits:
        from . import _galaxy_impl

        return _galaxy_impl.load_zoo(self, ctx)
