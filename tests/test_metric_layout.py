"""A built-in metric's flags and its computation live next to each other: no lookup by string.

Every registered built-in metric class defines its own ``__call__`` (one pair)
and ``pairwise`` (all pairs) in the module that declares it, and those
methods call that module's functions directly.  Nothing in
``plugins/metrics`` keeps a name -> implementation table or assembles a
function from a string at run time.
"""

from __future__ import annotations

import ast
import inspect

import pytest

from simbench.registry import build_registry
from tests.conftest import ROOT

METRICS_DIR = ROOT / "plugins" / "metrics"
BUILTIN = {e.name: e.cls for e in build_registry().entries("metric") if e.plugin == "builtin_metrics"}


def _defining_module(cls: type, attr: str) -> str:
    """The module of the function that ``cls.attr`` resolves to (following inheritance)."""
    for klass in cls.__mro__:
        if attr in klass.__dict__:
            module = inspect.getmodule(klass.__dict__[attr])
            return module.__name__ if module else "?"
    raise AssertionError(f"{cls.__name__} has no {attr}")


def test_every_builtin_metric_is_checked():
    assert len(BUILTIN) == 15 and "linear_cka" in BUILTIN and "wcka" in BUILTIN


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_pair_and_pairwise_are_defined_next_to_the_class(name):
    cls = BUILTIN[name]
    assert cls.__module__.startswith("simbench_plugins.metrics.")
    for attr in ("__call__", "pairwise"):
        where = _defining_module(cls, attr)
        assert where == cls.__module__, f"{cls.__name__}.{attr} is defined in {where}, not next to the class"


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_the_class_carries_no_implementation_key(name):
    cls = BUILTIN[name]
    assert not any("impl_key" in klass.__dict__ for klass in cls.__mro__), f"{cls.__name__} has an impl_key"


def _string_lookups(source: str) -> list[str]:
    """What in ``source`` finds code by name: an IMPLEMENTATIONS table, ``globals()[...]`` or
    ``getattr(module, <computed name>)``, or an ``impl_key``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Name) and node.id == "IMPLEMENTATIONS":
            found.append(f"line {node.lineno}: IMPLEMENTATIONS")
        elif isinstance(node, (ast.Name, ast.Attribute)) and "impl_key" in (getattr(node, "id", None),
                                                                            getattr(node, "attr", None)):
            found.append(f"line {node.lineno}: impl_key")
        elif isinstance(node, ast.Subscript) and isinstance(node.value, ast.Call):
            func = node.value.func
            if isinstance(func, ast.Name) and func.id in ("globals", "vars", "locals"):
                found.append(f"line {node.lineno}: {func.id}()[...]")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr":
            if len(node.args) >= 2 and not isinstance(node.args[1], ast.Constant):
                found.append(f"line {node.lineno}: getattr with a computed name")
    return found


def test_no_module_in_plugins_metrics_looks_code_up_by_string():
    modules = sorted(METRICS_DIR.glob("*.py"))
    assert {p.name for p in modules} >= {"cka.py", "cca.py", "shape.py", "rsa.py", "neighbours.py", "weights.py"}
    assert not (METRICS_DIR / "_impl.py").exists(), "the string-dispatched _impl.py is back"
    found = {p.name: hits for p in modules if (hits := _string_lookups(p.read_text(encoding="utf-8")))}
    assert not found, found


def test_the_scan_finds_planted_lookups():
    planted = (
        "IMPLEMENTATIONS = {'a': (f, g)}\n"
        "def pair(m, a, b):\n"
        "    fn = globals()['pair_' + m.impl_key]\n"
        "    return getattr(_impl, 'pairwise_' + m.name)(a, b)\n"
    )
    assert len(_string_lookups(planted)) == 4
    assert _string_lookups("def f(x):\n    return getattr(x, 'shape')\n") == []
