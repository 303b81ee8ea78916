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
                             names the skip hints print

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
from .errors import PluginError

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
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise PluginError(f"--plugin {path}: failed to import: {type(exc).__name__}: {message}"[:400]) from None
    return module


def _hook_names() -> str:
    return ", ".join(n for n in dir(hookspecs) if n.startswith("register_"))


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

    def add(obj: Any, info: PluginInfo) -> None:
        if pm.get_plugin(info.name) is not None or info.name in infos:
            other = infos.get(info.name)
            where = f" (already loaded from {other.location or other.source})" if other else ""
            raise PluginError(f"plugin {info.name!r} from {info.location or info.source} is loaded twice{where}")
        pm.register(obj, name=info.name)
        infos[info.name] = info

    if load_entry_points:
        allow, block = _env_list(ALLOW_ENV), _env_list(BLOCK_ENV) or set()
        seen: set[tuple[str, str]] = set()
        found: list[tuple[Any, Any, str]] = []
        for dist in importlib.metadata.distributions():
            for ep in dist.entry_points:
                if ep.group != ENTRY_POINT_GROUP:
                    continue
                key = (ep.name, ep.value)
                if key in seen:  # the same distribution found twice on sys.path
                    continue
                seen.add(key)
                found.append((dist, ep, dist.metadata["Name"] or "?"))
        if allow is not None:
            unknown = sorted(allow - {ep.name for _, ep, _ in found})
            if unknown:
                third = sorted(ep.name for _, ep, d in found if d != BUILTIN_DISTRIBUTION)
                raise PluginError(
                    f"{ALLOW_ENV} names {', '.join(repr(u) for u in unknown)}, which no installed plugin provides "
                    f"(installed third-party plugins: {', '.join(third) or 'none'}; built-ins always load)"
                )
        for dist, ep, dist_name in found:
            builtin = dist_name == BUILTIN_DISTRIBUTION
            if ep.name in block or (allow is not None and not builtin and ep.name not in allow):
                continue
            try:
                module = ep.load()
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # noqa: BLE001 - sys.exit at import included: skip, do not die
                message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                log.warning(
                    "plugin %r (entry point %r of %s) failed to import (%s%s); skipped. "
                    "Set %s=%s to stop loading it",
                    ep.name, ep.value, dist_name, type(exc).__name__, f": {message}"[:200] if message else "",
                    BLOCK_ENV, ep.name,
                )
                continue
            add(
                module,
                PluginInfo(ep.name, "entry point", dist_name, dist.version or "", f"{dist_name}:{ep.value}"),
            )

    # the core's own executors ("local", "dask"): infrastructure, not science, so registered here and not
    # listed among the plugins (a lab's executor package registers through the entry point group instead)
    from . import executors as core_executors

    pm.register(core_executors, name="simbench.executors")

    blocked = _env_list(BLOCK_ENV) or set()
    for file in plugin_files:
        path = Path(file)
        if path.stem in blocked:  # the name the skip hints give for a file plugin (its stem), honoured here too
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
