"""Optional modules a suite's plugins need, checked before anything runs.

A plugin (:class:`simbench.Plugin`) or an executor (:class:`simbench.plan.Executor`)
declares the importable modules it needs beyond simbench's own dependencies in
its ``requires`` class attribute, e.g. ``requires = ("torchattacks",)``.
``simbench validate`` and ``simbench run`` (before the run directory is made,
before any training) refuse a suite that uses such a plugin while a module is
missing, in one line naming the plugin, the module and the pip command that
installs it.  Nothing is imported to check: ``importlib.util.find_spec`` only.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from typing import Any

from .errors import SuiteError

#: the name simbench is published under (the import package is ``simbench``; the index's
#: ``simbench`` is an unrelated project)
DISTRIBUTION = "simbench-metrics"

#: module -> the command that installs it where a plain ``pip install MODULE`` is wrong
INSTALL_COMMANDS: dict[str, str] = {
    # torchattacks 3.5.1 declares requests~=2.25.1 and torchvision but imports only torch, numpy, scipy
    "torchattacks": "pip install --no-deps torchattacks==3.5.1",
    "dask": f"pip install '{DISTRIBUTION}[dask]'",
    "distributed": f"pip install '{DISTRIBUTION}[dask]'",
}


def install_command(module: str) -> str:
    """The pip command that installs ``module`` (an importable name)."""
    top = module.split(".")[0]
    return INSTALL_COMMANDS.get(top, f"pip install {top}")


def is_installed(module: str) -> bool:
    """Whether ``module`` can be imported here, without importing it (its parent packages aside)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package is missing, or a broken __spec__
        return False


def _uses(suite: Any) -> Iterator[tuple[str, str, str, type]]:
    """``(suite key, kind, name, class)`` of every plugin the suite configures."""
    for use in (suite.data, suite.zoo, *suite.perturbations, *suite.metrics, *suite.benchmarks):
        yield use.key, use.kind, use.name, type(use.obj)


def missing_requirements(suite: Any, executor: Any = None) -> list[tuple[str, str, str, str]]:
    """``(suite key, kind, plugin name, module)`` for each required module that is not installed.

    ``executor``: the executor class or instance the run will use (its ``requires`` count too).
    """
    found = []
    uses = list(_uses(suite))
    if executor is not None:
        cls = executor if isinstance(executor, type) else type(executor)
        uses.append(("run.executor", "executor", str(getattr(cls, "name", "") or cls.__name__), cls))
    for key, kind, name, cls in uses:
        for module in tuple(getattr(cls, "requires", ()) or ()):
            if not is_installed(str(module)):
                found.append((key, kind, name, str(module)))
    return found


def check_requirements(suite: Any, executor: Any = None) -> None:
    """Raise a one-line :class:`SuiteError` for the first module a plugin of ``suite`` needs and lacks."""
    for key, kind, name, module in missing_requirements(suite, executor):
        raise SuiteError(str(suite.path), key,
                         f"{kind} {name!r} needs the module {module!r}, which is not installed; "
                         f"install it with: {install_command(module)}")
