"""Seed 002 (galaxy morphology under survey shift): its datasets, zoo and benchmark.

The ``survey_shift`` perturbation is general (any image data) and is
registered with the built-in perturbations.
"""

from __future__ import annotations

import simbench
from simbench_plugins.benchmarks.survey_transfer import SurveyTransfer
from simbench_plugins.data.galaxy import GalaxySynth, GalaxyZoo
from simbench_plugins.zoos.galaxy import GalaxyCNN


@simbench.hookimpl
def register_datasets(register):  # type: ignore[no-untyped-def]
    register(GalaxySynth)
    register(GalaxyZoo)


@simbench.hookimpl
def register_zoos(register):  # type: ignore[no-untyped-def]
    register(GalaxyCNN)


@simbench.hookimpl
def register_benchmarks(register):  # type: ignore[no-untyped-def]
    register(SurveyTransfer)
