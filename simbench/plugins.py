"""The plugin manager factory.

Plugins come from three places, loaded the same way:

1. every installed distribution's entry points in the ``simbench`` group
   (simbench's own built-ins are registered there too, by our pyproject, so
   the core never imports ``simbench_plugins`` directly);
2. ``--plugin FILE.py`` files the user names on the command line;
3. plugin objects passed explicitly (tests).

Environment variables choose which entry points load:

``SIMBENCH_PLUGINS``         comma-separated allow-list of *third-party*
                             entry-point names; simbench's own built-ins
                             always load (block them explicitly).  A name
                             that no installed distribution provides is an
                             error, so a typo never silently loads nothing.
``SIMBENCH_BLOCK_PLUGINS``   comma-separated plugin names to skip: entry-point
                             names, and ``--plugin`` files by file stem
                             (``-p my_metric.py`` is ``my_metric``), the
                             names the skip hints print (pluggy's
                             ``set_blocked``: nothing loads under the name)

Entry points are loaded by pluggy (``load_setuptools_entrypoints``; where
each came from: ``list_plugin_distinfo``).  A plugin name that two
distributions declare with different targets is an error naming both.

An installed plugin that fails to import (``SystemExit`` included) is
reported in one line, with the ``SIMBENCH_BLOCK_PLUGINS`` hint, and skipped:
one broken third-party package must not break every command.  A ``--plugin``
file the user named explicitly that fails to import is an error.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import logging
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy

from . import hookspecs
from .errors import PluginError, one_line
from .kinds import KIND_SPECS

log = logging.getLogger("simbench.plugins")

ENTRY_POINT_GROUP = "simbench"
#: the distribution whose entry points are simbench's own built-ins (not subject to the allow-list)
BUILTIN_DISTRIBUTION = "simbench-metrics"  # the import package is simbench; the index's "simbench" is another project
ALLOW_ENV = "SIMBENCH_PLUGINS"
BLOCK_ENV = "SIMBENCH_BLOCK_PLUGINS"


@dataclass
class PluginInfo:
    """Where a registered plugin came from."""

    name: str
    source: str  # "entry point", "file", "object"
    distribution: str = ""
    version: str = ""
    location: str = ""
    registered: dict[str, list[str]] = field(default_factory=dict)


def _env_list(var: str) -> set[str] | None:
    raw = os.environ.get(var)
    if raw is None:
        return None
    return {item.strip() for item in raw.split(",") if item.strip()}


def _load_module_from_file(path: Path) -> ModuleType:
    if not path.is_file():
        raise PluginError(f"--plugin {path}: no such file")
    if path.suffix != ".py":
        raise PluginError(f"--plugin {path}: expected a Python file ending in .py")
    # a stable name (not Python's per-process salted hash): the module name is part of the plugin's code
    # hash, so cache keys and a dask worker's plugin check must agree across processes
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:6]
    module_name = f"simbench_file_plugin_{path.stem}_{digest}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:  # pragma: no cover - defensive
        raise PluginError(f"--plugin {path}: cannot be imported")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 - sys.exit at import included
        sys.modules.pop(module_name, None)
        raise PluginError(f"--plugin {path}: failed to import: {one_line(exc, 400)}"[:400]) from None
    return module


def _hook_names() -> str:
    return ", ".join(kind.hook for kind in KIND_SPECS)


def _load_entry_points(pm: pluggy.PluginManager, infos: dict[str, PluginInfo]) -> None:
    """Load the allowed ``simbench`` entry points with pluggy, recording each in ``infos``.

    Names on the block list are already blocked in ``pm`` (``set_blocked``);
    every third-party name the allow list leaves out is blocked too, until
    the entry points are loaded.  An entry point that fails
    to import (``SystemExit`` included) stops pluggy's loop without naming
    itself, so the remaining names are then loaded one at a time: the broken
    one is reported in one line with the block-list hint and skipped.
    """
    allow = _env_list(ALLOW_ENV)
    block = {name for name in _env_list(BLOCK_ENV) or () if pm.is_blocked(name)}
    found = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)  # one per name and distribution
    by_name: dict[str, list[Any]] = {}
    for ep in found:
        by_name.setdefault(ep.name, []).append(ep)
    for name, eps in by_name.items():
        if name not in block and len({ep.value for ep in eps}) > 1:  # two distributions claim one plugin name: refuse, naming both
            where = " and ".join(f"{_dist_name(ep)}:{ep.value}" for ep in eps)
            raise PluginError(f"plugin {name!r} is provided twice, by {where}; uninstall one")
    if allow is not None:
        unknown = sorted(allow - set(by_name))
        if unknown:
            third = sorted(n for n, eps in by_name.items() if _dist_name(eps[0]) != BUILTIN_DISTRIBUTION)
            raise PluginError(
                f"{ALLOW_ENV} names {', '.join(repr(u) for u in unknown)}, which no installed plugin provides "
                f"(installed third-party plugins: {', '.join(third) or 'none'}; built-ins always load)"
            )
    not_allowed = [] if allow is None else [
        n for n, eps in by_name.items()
        if _dist_name(eps[0]) != BUILTIN_DISTRIBUTION and n not in allow and n not in block
    ]
    for name in not_allowed:
        pm.set_blocked(name)
    try:
        pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    except KeyboardInterrupt:
        raise
    except BaseException:  # noqa: BLE001 - one failed to import: load the rest by name to find and skip it
        for name in by_name:
            if pm.has_plugin(name) or pm.is_blocked(name):
                continue
            try:
                pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP, name=name)
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # noqa: BLE001 - sys.exit at import included: skip, do not die
                ep = by_name[name][0]
                log.warning(
                    "plugin %r (entry point %r of %s) failed to import (%s); skipped. Set %s=%s to stop loading it",
                    name, ep.value, _dist_name(ep), one_line(exc, 200), BLOCK_ENV, name,
                )
    for name in not_allowed:
        pm.unblock(name)
    for plugin, dist in pm.list_plugin_distinfo():
        name = pm.get_name(plugin) or "?"
        dist_name = dist.metadata["Name"] or "?"
        value = by_name[name][0].value if name in by_name else "?"
        infos[name] = PluginInfo(name, "entry point", dist_name, dist.version or "", f"{dist_name}:{value}")


def _dist_name(ep: Any) -> str:
    """The name of the distribution that declares ``ep`` ("?" when unknown)."""
    dist = getattr(ep, "dist", None)
    return (dist.metadata["Name"] if dist is not None else None) or "?"


def get_plugin_manager(
    plugin_files: Iterable[str | os.PathLike[str]] = (),
    extra_plugins: Iterable[Any] = (),
    load_entry_points: bool = True,
) -> tuple[pluggy.PluginManager, dict[str, PluginInfo]]:
    """A fresh plugin manager with every allowed plugin loaded.

    Returns the manager and a description of each loaded plugin.  Raises
    :class:`PluginError` (one line, naming the plugin) when a plugin cannot
    be imported or implements a hook that does not exist.
    """
    pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
    pm.add_hookspecs(hookspecs)
    infos: dict[str, PluginInfo] = {}
    blocked = _env_list(BLOCK_ENV) or set()
    for name in sorted(blocked):  # pluggy then loads nothing by that name: no entry point, file or object
        pm.set_blocked(name)

    def add(obj: Any, info: PluginInfo) -> None:
        if pm.is_blocked(info.name):
            log.warning("plugin %r (%s): not loaded (%s names it)", info.name, info.location or info.source,
                        BLOCK_ENV)
            return
        if pm.get_plugin(info.name) is not None or info.name in infos:
            other = infos.get(info.name)
            where = f" (already loaded from {other.location or other.source})" if other else ""
            raise PluginError(f"plugin {info.name!r} from {info.location or info.source} is loaded twice{where}")
        pm.register(obj, name=info.name)
        infos[info.name] = info

    if load_entry_points:
        _load_entry_points(pm, infos)

    # the core's own executors ("local", "dask"): infrastructure, not science, so registered here and not
    # listed among the plugins (a lab's executor package registers through the entry point group instead)
    from . import executors as core_executors

    pm.register(core_executors, name="simbench.executors")

    for file in plugin_files:
        path = Path(file)
        if pm.is_blocked(path.stem):  # the name the skip hints give for a file plugin (its stem), honoured here too
            log.warning("--plugin %s: not loaded (%s names %r)", path, BLOCK_ENV, path.stem)
            continue
        module = _load_module_from_file(path)
        add(module, PluginInfo(path.stem, "file", location=str(path)))

    for obj in extra_plugins:
        name = getattr(obj, "__name__", None) or type(obj).__name__
        add(obj, PluginInfo(name, "object", location=name))

    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        name = pm.get_name(exc.plugin) if getattr(exc, "plugin", None) is not None else "?"
        raise PluginError(f"plugin {name!r}: {exc}; expected only these hooks: {_hook_names()}") from exc
    return pm, infos
