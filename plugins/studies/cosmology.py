"""Seed 000 (layer-wise similarity under simulation-suite shift): its datasets, zoo and perturbation.

The ``layer_map`` benchmark it uses is general (the galaxy study uses it too)
and is registered with the built-in benchmarks.
"""

from __future__ import annotations

import simbench
from simbench_plugins.data.camels import CamelsCMD
from simbench_plugins.data.cosmo import CosmoFields
from simbench_plugins.perturbations.cosmo_shift import CosmoShift
from simbench_plugins.zoos.cosmo import CosmoCNN


@simbench.hookimpl
def register_datasets(register):  # type: ignore[no-untyped-def]
    register(CosmoFields)
    register(CamelsCMD)


@simbench.hookimpl
def register_zoos(register):  # type: ignore[no-untyped-def]
    register(CosmoCNN)


@simbench.hookimpl
def register_perturbations(register):  # type: ignore[no-untyped-def]
    register(CosmoShift)
