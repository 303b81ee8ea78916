"""Seed 004 (feature contamination): its dataset, background shift, zoo and benchmark."""

from __future__ import annotations

from simbench_plugins.benchmarks.contamination import Contamination, ContaminationDistillation, ContaminationGeneral
from simbench_plugins.data.contamination import BackgroundShift, FeatureContamination
from simbench_plugins.zoos.contamination import ContaminationDistill, ContaminationNet

import simbench


@simbench.hookimpl
def register_datasets(register):  # type: ignore[no-untyped-def]
    register(FeatureContamination)


@simbench.hookimpl
def register_perturbations(register):  # type: ignore[no-untyped-def]
    register(BackgroundShift)


@simbench.hookimpl
def register_zoos(register):  # type: ignore[no-untyped-def]
    register(ContaminationNet)
    register(ContaminationDistill)


@simbench.hookimpl
def register_benchmarks(register):  # type: ignore[no-untyped-def]
    register(Contamination)
    register(ContaminationGeneral)
    register(ContaminationDistillation)
