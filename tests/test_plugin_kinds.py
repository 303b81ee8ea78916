"""The plugin kinds are declared once (simbench.kinds.KIND_SPECS) and everything that names a kind agrees with it:
the hook specifications, the registry, the Python API's session registration, ``simbench list``'s choices and
the kinds table of docs/architecture.md.  Hooks are called through pluggy, one plugin at a time, so a plugin that
raises is named; entry points are loaded by pluggy."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import pluggy
import pytest

import simbench
from simbench import api, hookspecs
from simbench.errors import PluginError, one_line
from simbench.kinds import KIND_SPECS, KINDS, kind_of, kind_spec
from simbench.plugins import get_plugin_manager
from simbench.registry import Registry, build_registry
from tests.test_plugins import make_distribution

ROOT = Path(__file__).resolve().parents[1]


def minimal_class(kind: str, name: str) -> type:
    """The smallest valid plugin class of ``kind``: a frozen dataclass subclassing the kind's base."""
    spec = kind_spec(kind)
    namespace: dict[str, object] = {"name": name}
    if kind == "task":
        namespace.update(score_name="score", agreement=lambda self, outputs, targets: (None, None))
    return dataclass(frozen=True)(type(f"Minimal{kind.title()}", (spec.base,), namespace))


def test_the_table_is_consistent():
    assert KINDS == tuple(k.name for k in KIND_SPECS) and len(set(KINDS)) == len(KINDS)
    assert len({k.plural for k in KIND_SPECS}) == len(KINDS) and len({k.base for k in KIND_SPECS}) == len(KINDS)
    for kind in KIND_SPECS:
        assert kind_spec(kind.name) is kind and kind_spec(kind.plural) is kind and kind_of(kind.base) is kind
        assert kind.hook == f"register_{kind.plural}"
        module = __import__(kind.module, fromlist=["_"])  # the base is importable where messages say it is
        assert getattr(module, kind.base.__name__) is kind.base
    with pytest.raises(KeyError, match="unknown plugin kind 'metrik'"):
        kind_spec("metrik")
    assert kind_of(int) is None and kind_of("metric") is None


def test_hookspecs_are_exactly_the_kinds():
    marker = "simbench_spec"  # what pluggy's HookspecMarker("simbench") sets on a spec function
    specs = {name: fn for name, fn in vars(hookspecs).items() if callable(fn) and hasattr(fn, marker)}
    assert set(specs) == {k.hook for k in KIND_SPECS}
    pm = pluggy.PluginManager("simbench")
    pm.add_hookspecs(hookspecs)
    for kind in KIND_SPECS:
        caller = getattr(pm.hook, kind.hook)
        assert caller.spec is not None and caller.spec.argnames == ("register",)
        assert kind.base_path in (specs[kind.hook].__doc__ or "")
    # a misspelled hook is still refused, and the message lists the table's hooks
    assert {name for name in dir(pm.hook) if name.startswith("register")} == {k.hook for k in KIND_SPECS}


def test_registry_api_and_plugins_agree_on_every_kind():
    api.unregister_all()
    try:
        for kind in KINDS:
            cls = minimal_class(kind, f"kinds_test_{kind}")
            assert api._kind_of(cls) == kind
            assert api.register(cls) is cls
        reg = api.registry()
        for kind in KIND_SPECS:  # every kind came through its own hook, attributed to the session plugin
            entry = reg.entry(kind.name, f"kinds_test_{kind.name}")
            assert entry.plugin == "session" and entry.kind == kind.name
            assert getattr(reg.pm.hook, kind.hook).get_hookimpls()  # the session implements every hook
        assert reg.plugins["session"].registered == {k.plural: [f"kinds_test_{k.name}"] for k in KIND_SPECS}
    finally:
        api.unregister_all()
    with pytest.raises(simbench.errors.UserError, match=r"simbench\.Metric, .* or simbench\.executors\.Executor"):
        api.register(int)


def test_a_class_of_the_wrong_kind_names_the_base():
    class Plugin:
        __name__ = "wrong_base"

        @simbench.hookimpl
        def register_executors(self, register):
            register(minimal_class("metric", "not_an_executor"))

    with pytest.raises(PluginError, match=r"as a executor: expected a subclass of simbench\.executors\.Executor"):
        build_registry(extra_plugins=[Plugin()], load_entry_points=False)


def test_cli_list_offers_every_kind():
    from click.testing import CliRunner

    from simbench.cli import cli

    command = cli.commands["list"]
    what = next(p for p in command.params if p.name == "what")
    assert list(what.type.choices) == [*(k.plural for k in KIND_SPECS), "suites"]
    result = CliRunner().invoke(cli, ["list", "executors"])
    assert result.exit_code == 0 and result.output.startswith("executors:") and "local" in result.output


def test_the_architecture_page_lists_every_kind_with_its_base_and_hook():
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    section = text.split("## Plugin kinds", 1)[1]
    rows = re.findall(r"^\| (\w+) \| `(\w+)`[^|]* \| `(register_\w+)` \|", section, flags=re.MULTILINE)
    assert sorted(rows) == sorted((k.name, k.base.__name__, k.hook) for k in KIND_SPECS)


# -- hooks through pluggy ----------------------------------------------------------------------


def _metric_plugin(name: str, metric: str, *, first: bool = False, fail: bool = False) -> object:
    class Plugin:
        __name__ = name

        @simbench.hookimpl(tryfirst=first)
        def register_metrics(self, register):
            if fail:
                raise RuntimeError("cannot register today\nsecond line")
            register(minimal_class("metric", metric))

    return Plugin()


def test_hooks_go_through_pluggy_one_plugin_per_call_in_pluggys_order():
    plugins = [_metric_plugin("early", "early_metric", first=True), _metric_plugin("late", "late_metric"),
               _metric_plugin("broken", "never", fail=True)]
    pm, infos = get_plugin_manager(extra_plugins=plugins, load_entry_points=False)
    calls: list[tuple[str, list[str]]] = []
    pm.add_hookcall_monitoring(lambda hook, impls, kwargs: calls.append((hook, [i.plugin_name for i in impls])),
                               lambda outcome, hook, impls, kwargs: None)
    reg = Registry(pm, infos)
    assert all(len(names) == 1 for _, names in calls)  # one implementation per call: attribution is exact
    expected = {(k.hook, impl.plugin_name) for k in KIND_SPECS for impl in getattr(pm.hook, k.hook).get_hookimpls()}
    assert {(hook, names[0]) for hook, names in calls} == expected
    order = [names[0] for hook, names in calls if hook == "register_metrics"]
    # pluggy's order: tryfirst before everything although registered first, then last-registered first
    assert order == ["early", "broken", "late"]
    assert reg.names("metric") == ["early_metric", "late_metric"]
    assert reg.entry("metric", "early_metric").plugin == "early"
    assert reg.skipped == {"broken": "register_metrics raised RuntimeError: cannot register today"}
    assert "broken" not in reg.plugins


# -- entry points through pluggy ------------------------------------------------------------------


def test_entry_points_load_through_pluggy_and_a_broken_one_is_skipped_by_name(monkeypatch, tmp_path, caplog):
    import importlib

    make_distribution(tmp_path)  # acme-simbench, entry point "acme"
    (tmp_path / "quitter.py").write_text("raise ImportError('no such thing\\nmore')\n")
    info = tmp_path / "quitter-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: quitter\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[simbench]\nquitter = quitter\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    with caplog.at_level(logging.WARNING, logger="simbench.plugins"):
        pm, infos = get_plugin_manager()
    broken = [r.getMessage() for r in caplog.records if "quitter" in r.getMessage()]
    assert len(broken) == 1 and "\n" not in broken[0]
    assert "failed to import (ImportError: no such thing); skipped" in broken[0]
    assert "SIMBENCH_BLOCK_PLUGINS=quitter" in broken[0]
    # what pluggy loaded is what simbench describes: every entry-point plugin, with its distribution
    loaded = {pm.get_name(plugin): dist.metadata["Name"] for plugin, dist in pm.list_plugin_distinfo()}
    entry_points = {name: i.distribution for name, i in infos.items() if i.source == "entry point"}
    assert loaded == entry_points and loaded["acme"] == "acme-simbench" and "builtin_metrics" in loaded
    assert "quitter" not in loaded and infos["acme"].location == "acme-simbench:acme_simbench"
    # a blocked name is a pluggy block: nothing loads under it
    monkeypatch.setenv("SIMBENCH_BLOCK_PLUGINS", "acme,quitter")
    caplog.clear()
    pm, infos = get_plugin_manager()
    assert pm.is_blocked("acme") and "acme" not in infos and not [r for r in caplog.records if "quitter" in
                                                                     r.getMessage()]


def test_one_plugin_name_from_two_distributions_is_refused_naming_both(monkeypatch, tmp_path):
    import importlib

    make_distribution(tmp_path / "a" if (tmp_path / "a").mkdir() is None else tmp_path)
    b = tmp_path / "b"
    b.mkdir()
    make_distribution(b, module="other_acme", metric="other_cosine", dist="other-acme")  # also names "acme"
    monkeypatch.syspath_prepend(str(tmp_path / "a"))
    monkeypatch.syspath_prepend(str(b))
    importlib.invalidate_caches()
    with pytest.raises(PluginError, match=r"plugin 'acme' is provided twice, by .*acme-simbench:acme_simbench") as info:
        get_plugin_manager()
    assert "other-acme:other_acme" in str(info.value) and "\n" not in str(info.value)


# -- one line -----------------------------------------------------------------------------------


def test_one_line():
    assert one_line(ValueError("bad value\nTraceback ...")) == "ValueError: bad value"
    assert one_line(ValueError("  ")) == "ValueError"
    assert one_line(ValueError("x" * 500), limit=20) == "ValueError: " + "x" * 8
    assert one_line(PluginError("plugin 'a': broken\nmore"), typed=False) == "plugin 'a': broken"
    assert one_line(SystemExit(), typed=False) == "SystemExit"


def test_the_core_has_one_one_line():
    """No module of simbench/ defines its own ``one_line`` or cuts an exception's message by hand."""
    offenders = []
    for path in sorted((ROOT / "simbench").glob("*.py")):
        text = path.read_text(encoding="utf-8")
        if path.name != "errors.py" and re.search(r"^def _?one_line\(", text, flags=re.MULTILINE):
            offenders.append(f"{path.name}: defines one_line")
        offenders += [f"{path.name}: {m.group(0)}" for m in re.finditer(r"str\(exc\)[^\n]*splitlines\(\)", text)]
    assert not offenders, offenders
