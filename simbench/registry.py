"""Typed look-ups over the plugin hooks.

The rest of simbench never calls ``pm.hook.*`` directly: it asks a
:class:`Registry` for a plugin class by kind and name.  Building the registry
calls every kind's ``register_*`` hook through pluggy once per plugin (a
subset hook caller holding that plugin's implementation alone), so each
registered class is attributed to the plugin that supplied it and a plugin
whose hook raises is skipped and named, while pluggy's ordering, tracing and
call monitoring still apply.  The kinds come from :mod:`simbench.kinds`.
"""

from __future__ import annotations

import difflib
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from . import params as params_mod
from .errors import PluginError, one_line
from .kinds import KINDS, kind_spec
from .plugins import BLOCK_ENV, PluginInfo, get_plugin_manager
from .types import INVARIANCES, Task, plots_view_parameter

NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")

log = logging.getLogger("simbench.registry")


@dataclass(frozen=True)
class Entry:
    """A registered plugin class and the plugin that supplied it."""

    kind: str
    name: str
    cls: type
    plugin: str


def _check_class(kind: str, cls: Any, plugin: str) -> None:
    spec = kind_spec(kind)
    what = f"plugin {plugin!r} registered {cls!r} as a {kind}"
    if not isinstance(cls, type) or not issubclass(cls, spec.base):
        raise PluginError(f"{what}: expected a subclass of {spec.base_path}")
    # the class itself must be decorated: otherwise its annotated fields silently would not be parameters
    if "__dataclass_fields__" not in cls.__dict__ or not cls.__dataclass_params__.frozen:  # type: ignore[attr-defined]
        raise PluginError(f"{what}: expected a frozen dataclass (@dataclass(frozen=True))")
    name = getattr(cls, "name", "")
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise PluginError(f"{what}: expected a `name` class attribute in snake_case, got {name!r}")
    if kind == "metric":
        unknown = set(cls.invariances) - INVARIANCES
        if unknown:
            raise PluginError(
                f"{what}: unknown invariances {sorted(unknown)}; expected a subset of {sorted(INVARIANCES)}"
            )
        if cls.kind not in ("activation", "weight"):
            raise PluginError(f"{what}: kind must be 'activation' or 'weight', got {cls.kind!r}")
    if kind == "perturbation" and cls.target not in ("input", "model", "representation"):
        raise PluginError(f"{what}: target must be 'input', 'model' or 'representation', got {cls.target!r}")
    if kind == "task":
        score = getattr(cls, "score_name", "")
        if not isinstance(score, str) or not NAME_RE.match(score):
            raise PluginError(f"{what}: expected a `score_name` class attribute in snake_case, got {score!r}")
        if cls.agreement is Task.agreement:  # the base method only raises: refuse at registration, not mid-run
            raise PluginError(f"{what}: must implement agreement(outputs, targets) -> (M x M agreement, [M] scores)")
    if kind == "benchmark" and not plots_view_parameter(cls):
        # the leaderboard always passes the finished run's view, by name
        raise PluginError(f"{what}: plots must accept the store view: def plots(cls, records, out_dir, view=None)")


class Registry:
    """Every plugin class, by kind and name, with the plugin that supplied it."""

    def __init__(self, pm: Any, infos: Mapping[str, PluginInfo]) -> None:
        self.pm = pm
        self.plugins: dict[str, PluginInfo] = dict(infos)
        self._entries: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}
        #: plugins whose hook raised: name -> one-line reason (they registered nothing)
        self.skipped: dict[str, str] = {}
        for kind in KINDS:
            hook = kind_spec(kind).hook
            impls = list(reversed(getattr(pm.hook, hook).get_hookimpls()))  # pluggy's call order
            for impl in impls:
                plugin_name = impl.plugin_name
                if plugin_name in self.skipped:
                    continue
                # the hook through pluggy, with this plugin's implementation alone: who registered what is known
                others = [other.plugin for other in impls if other.plugin is not impl.plugin]
                call = pm.subset_hook_caller(hook, remove_plugins=others)
                try:
                    call(register=self._register_callback(kind, plugin_name))
                except (KeyboardInterrupt, PluginError):
                    raise  # our own validation of what it registered stays an error
                except BaseException as exc:  # noqa: BLE001 - one broken plugin must not break every command
                    self._skip(plugin_name, hook, exc)

    def _skip(self, plugin_name: str, hook: str, exc: BaseException) -> None:
        """Forget everything ``plugin_name`` registered and report it in one line."""
        reason = f"{hook} raised {one_line(exc)}"[:300]
        self.skipped[plugin_name] = reason
        for kind in KINDS:
            for name in [n for n, e in self._entries[kind].items() if e.plugin == plugin_name]:
                del self._entries[kind][name]
        info = self.plugins.pop(plugin_name, None)
        if info is not None:
            info.registered.clear()
        log.warning("plugin %r: %s; skipped. Set %s=%s to stop loading it", plugin_name, reason, BLOCK_ENV,
                    plugin_name)

    def _register_callback(self, kind: str, plugin_name: str) -> Any:
        def register(cls: Any) -> None:
            _check_class(kind, cls, plugin_name)
            existing = self._entries[kind].get(cls.name)
            if existing is not None:
                raise PluginError(
                    f"{kind} {cls.name!r} is registered by both plugin {existing.plugin!r} "
                    f"and plugin {plugin_name!r}; block one with SIMBENCH_BLOCK_PLUGINS"
                )
            self._entries[kind][cls.name] = Entry(kind, cls.name, cls, plugin_name)
            info = self.plugins.get(plugin_name)
            if info is not None:
                info.registered.setdefault(kind_spec(kind).plural, []).append(cls.name)

        return register

    # -- look-ups ----------------------------------------------------------

    def names(self, kind: str) -> list[str]:
        return sorted(self._entries[kind])

    def entries(self, kind: str) -> list[Entry]:
        return [self._entries[kind][n] for n in self.names(kind)]

    def entry(self, kind: str, name: str) -> Entry:
        try:
            return self._entries[kind][name]
        except KeyError:
            raise PluginError(unknown_name_message(kind, name, self.names(kind))) from None

    def get(self, kind: str, name: str) -> type:
        return self.entry(kind, name).cls

    def configure(self, kind: str, name: str, params: Mapping[str, Any]) -> tuple[Any, str | None, str | None]:
        """Validate parameters with the plugin's own schema; see :func:`simbench.params.configure`."""
        return params_mod.configure(self.get(kind, name), params)


def unknown_name_message(kind: str, name: str, known: Iterable[str]) -> str:
    known = list(known)
    close = difflib.get_close_matches(str(name), known, n=3, cutoff=0.5)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    available = ", ".join(known) if known else "(none registered)"
    return f"unknown {kind} {name!r}{hint} (available: {available})"


def build_registry(
    plugin_files: Iterable[str] = (), extra_plugins: Iterable[Any] = (), load_entry_points: bool = True
) -> Registry:
    """Load plugins and return a fresh registry (no global state)."""
    pm, infos = get_plugin_manager(plugin_files, extra_plugins, load_entry_points)
    return Registry(pm, infos)
