"""The plugin kinds, declared once.

:data:`KIND_SPECS` is the only list of plugin kinds.  Everything that names a
kind derives from it: the ``register_*`` hook specifications
(:mod:`simbench.hookspecs`), the registry's look-ups and class checks
(:mod:`simbench.registry`), the session registration of the Python API
(:func:`simbench.register`), the choices of ``simbench list`` and the kinds
table of ``docs/architecture.md`` (``tests/test_plugin_kinds.py`` holds them
all against this table).  Adding a kind is one line here plus its base class.

This module imports nothing heavy (no torch): the bases are plain classes.
"""

from __future__ import annotations

from dataclasses import dataclass

from .plan import Executor
from .types import Benchmark, Dataset, Metric, Perturbation, Task, Zoo


@dataclass(frozen=True)
class KindSpec:
    """One plugin kind: what a plugin registers and through which hook."""

    #: the kind's name in look-ups, errors and suite files ("metric")
    name: str
    #: the class every registered class of this kind subclasses
    base: type
    #: the plural, which names the hook (``register_<plural>``) and ``simbench list <plural>``
    plural: str
    #: what the kind's plugins are, for the hook's docstring and the docs ("similarity metrics")
    description: str
    #: the public module the base is imported from, for messages and docs
    module: str = "simbench"

    @property
    def hook(self) -> str:
        """The hook a plugin implements to register classes of this kind."""
        return f"register_{self.plural}"

    @property
    def base_path(self) -> str:
        """The base class as a plugin author imports it (``simbench.Metric``)."""
        return f"{self.module}.{self.base.__name__}"


#: every plugin kind, in the order listings show them
KIND_SPECS: tuple[KindSpec, ...] = (
    KindSpec("metric", Metric, "metrics", "similarity metrics"),
    KindSpec("zoo", Zoo, "zoos", "model zoos"),
    KindSpec("perturbation", Perturbation, "perturbations", "input, model or representation perturbations"),
    KindSpec("benchmark", Benchmark, "benchmarks", "benchmarks"),
    KindSpec("dataset", Dataset, "datasets", "datasets"),
    KindSpec("task", Task, "tasks", "tasks: how models' outputs agree and how each model scores"),
    KindSpec("executor", Executor, "executors", "executors that run a suite's plan", module="simbench.executors"),
)

#: the kinds' names, in :data:`KIND_SPECS` order
KINDS: tuple[str, ...] = tuple(spec.name for spec in KIND_SPECS)
_BY_NAME: dict[str, KindSpec] = {spec.name: spec for spec in KIND_SPECS}
_BY_PLURAL: dict[str, KindSpec] = {spec.plural: spec for spec in KIND_SPECS}
_BY_BASE: dict[type, KindSpec] = {spec.base: spec for spec in KIND_SPECS}


def kind_spec(name: str) -> KindSpec:
    """The kind called ``name`` ("metric") or, failing that, whose plural is ``name`` ("metrics")."""
    spec = _BY_NAME.get(name) or _BY_PLURAL.get(name)
    if spec is None:
        raise KeyError(f"unknown plugin kind {name!r}; expected one of {', '.join(KINDS)}")
    return spec


def kind_of(cls: object) -> KindSpec | None:
    """The kind whose base ``cls`` subclasses (the nearest in its MRO), or ``None`` for anything else."""
    if isinstance(cls, type):
        for base in cls.__mro__:
            spec = _BY_BASE.get(base)
            if spec is not None:
                return spec
    return None


def kinds_text(conjunction: str = "or") -> str:
    """The kinds' base classes as a sentence: ``simbench.Metric, ... or simbench.executors.Executor``."""
    paths = [spec.base_path for spec in KIND_SPECS]
    return f"{', '.join(paths[:-1])} {conjunction} {paths[-1]}"
