"""The whole plugin surface: one ``register_*`` hook per plugin kind.

Each hook receives a ``register`` callback.  Call it with a plugin *class*
(a frozen dataclass subclassing the matching base in :mod:`simbench.types`);
the core validates it, records which plugin supplied it, and refuses a
duplicate name.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("simbench")
hookimpl = pluggy.HookimplMarker("simbench")


@hookspec
def register_metrics(register):  # type: ignore[no-untyped-def]
    """Register similarity metrics (subclasses of ``simbench.Metric``)."""


@hookspec
def register_zoos(register):  # type: ignore[no-untyped-def]
    """Register model zoos (subclasses of ``simbench.Zoo``)."""


@hookspec
def register_perturbations(register):  # type: ignore[no-untyped-def]
    """Register input or model perturbations (subclasses of ``simbench.Perturbation``)."""


@hookspec
def register_benchmarks(register):  # type: ignore[no-untyped-def]
    """Register benchmarks (subclasses of ``simbench.Benchmark``)."""


@hookspec
def register_datasets(register):  # type: ignore[no-untyped-def]
    """Register datasets (subclasses of ``simbench.Dataset``)."""


@hookspec
def register_tasks(register):  # type: ignore[no-untyped-def]
    """Register tasks (subclasses of ``simbench.Task``): how models' outputs agree and how each model scores."""


@hookspec
def register_executors(register):  # type: ignore[no-untyped-def]
    """Register executors that run a suite's plan (subclasses of ``simbench.executors.Executor``)."""
