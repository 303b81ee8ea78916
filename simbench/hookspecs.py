"""The whole plugin surface: one ``register_<plural>`` hook per plugin kind.

The hooks are made from the kinds table (:data:`simbench.kinds.KIND_SPECS`),
so a kind is declared in one place; the hook of kind ``metric`` is
``register_metrics``, and so on for every kind (``docs/architecture.md``
lists them).

Each hook receives a ``register`` callback.  Call it with a plugin *class*
(a frozen dataclass subclassing the kind's base, e.g. ``simbench.Metric``);
the core validates it, records which plugin supplied it, and refuses a
duplicate name::

    @simbench.hookimpl
    def register_metrics(register):
        register(MyMetric)
"""

from __future__ import annotations

from collections.abc import Callable

import pluggy

from .kinds import KIND_SPECS, KindSpec

hookspec = pluggy.HookspecMarker("simbench")
hookimpl = pluggy.HookimplMarker("simbench")


def _make_hookspec(kind: KindSpec) -> Callable[[Callable[[type], None]], None]:
    """The hook specification of one kind: ``register_<plural>(register)``, documented from the table."""

    def spec(register: Callable[[type], None]) -> None:
        """Filled in below from the kind."""

    spec.__name__ = spec.__qualname__ = kind.hook
    spec.__module__ = __name__
    spec.__doc__ = f"Register {kind.description} (subclasses of ``{kind.base_path}``)."
    return hookspec(spec)


for _kind in KIND_SPECS:
    globals()[_kind.hook] = _make_hookspec(_kind)
del _kind
