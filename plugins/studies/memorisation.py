"""Seed 003 §3.1 (early layers of generalising, memorising and random networks): its zoo and benchmark."""

from __future__ import annotations

from simbench_plugins.benchmarks.early_layers import EarlyLayers
from simbench_plugins.zoos.memorisation import MemorisationZoo

import simbench


@simbench.hookimpl
def register_zoos(register):  # type: ignore[no-untyped-def]
    register(MemorisationZoo)


@simbench.hookimpl
def register_benchmarks(register):  # type: ignore[no-untyped-def]
    register(EarlyLayers)
