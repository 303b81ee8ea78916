"""Plugin loading: entry points, --plugin files, allow/block lists, duplicates, misspelled hooks."""

from __future__ import annotations

import json
import textwrap

import pytest

from simbench.errors import PluginError
from simbench.registry import build_registry
from tests.conftest import TOY_PLUGINS, TOY_SUITE

THIRD_PARTY = textwrap.dedent(
    '''
    from dataclasses import dataclass
    import simbench

    @dataclass(frozen=True)
    class MeanCosine(simbench.Metric):
        """Cosine of the two representations' mean activation vectors."""
        name = "{name}"

        def __call__(self, a, b):
            import torch
            ka, kb = a @ a.T, b @ b.T
            return float(torch.nn.functional.cosine_similarity(ka.flatten(), kb.flatten(), dim=0))

    @simbench.hookimpl
    def register_metrics(register):
        register(MeanCosine)
    '''
)


def make_distribution(root, module="acme_simbench", metric="acme_cosine", dist="acme-simbench"):
    """A throw-away installed distribution: a module plus a *.dist-info with entry_points.txt."""
    (root / f"{module}.py").write_text(THIRD_PARTY.format(name=metric))
    info = root / f"{dist.replace('-', '_')}-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text(f"[simbench]\nacme = {module}\n")
    return root


@pytest.mark.slow
def test_entry_point_plugin_is_listed_and_ranked(tmp_path, cli_here):
    site = make_distribution(tmp_path / "site" if (tmp_path / "site").mkdir() is None else tmp_path)
    env = {"PYTHONPATH": str(site)}
    listed = cli_here("list", "metrics", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    entry = next(m for m in json.loads(listed.stdout) if m["name"] == "acme_cosine")
    assert entry["plugin"] == "acme"
    plugins = json.loads(cli_here("plugins", "--json", env=env).stdout)
    acme = next(p for p in plugins if p["name"] == "acme")
    assert acme["distribution"] == "acme-simbench" and acme["version"] == "1.2.3"
    assert acme["registered"] == {"metrics": ["acme_cosine"]}
    out = tmp_path / "out"
    proc = cli_here("-p", str(TOY_PLUGINS), "run", str(TOY_SUITE), "-q", "--set", "metrics=[{name='acme_cosine'}]",
               "--run-dir", str(out / "run"), "--cache-dir", str(out / "cache"), "--leaderboard-dir", str(out / "lb"),
               env=env)
    assert proc.returncode == 0, proc.stderr
    board = json.loads((out / "lb" / "toy.json").read_text())
    ranking = board["tables"][0]
    assert [row[ranking["columns"].index("metric")] for row in ranking["rows"]] == ["acme_cosine"]


@pytest.mark.slow
def test_plugin_file_is_loaded(tmp_path, cli_here):
    plugin = tmp_path / "my_metric.py"
    plugin.write_text(THIRD_PARTY.format(name="file_cosine"))
    proc = cli_here("-p", str(plugin), "list", "metrics")
    assert proc.returncode == 0 and "file_cosine" in proc.stdout and "(from my_metric)" in proc.stdout
    out = tmp_path / "out"
    proc = cli_here("-p", str(TOY_PLUGINS), "run", str(TOY_SUITE), "-q", "-p", str(plugin),
               "--set", "metrics=[{name='file_cosine'}, {name='toy_gram_corr'}]",
               "--run-dir", str(out / "run"), "--cache-dir", str(out / "cache"), "--leaderboard-dir", str(out / "lb"))
    assert proc.returncode == 0, proc.stderr
    assert "file_cosine" in (out / "lb" / "toy.md").read_text()


def test_missing_or_broken_plugin_file(tmp_path, cli_here):
    proc = cli_here("-p", str(tmp_path / "nope.py"), "list")
    assert proc.returncode == 2 and "no such file" in proc.stderr and "Traceback" not in proc.stderr
    broken = tmp_path / "broken.py"
    broken.write_text("import does_not_exist_anywhere\n")
    proc = cli_here("-p", str(broken), "list")
    assert proc.returncode == 2 and "broken.py: failed to import: ModuleNotFoundError" in proc.stderr


def test_duplicate_names_name_both_plugins(tmp_path):
    a, b = tmp_path / "alpha.py", tmp_path / "beta.py"
    a.write_text(THIRD_PARTY.format(name="same_name"))
    b.write_text(THIRD_PARTY.format(name="same_name"))
    with pytest.raises(PluginError) as info:
        build_registry(plugin_files=[str(a), str(b)])
    assert "'alpha'" in str(info.value) and "'beta'" in str(info.value) and "same_name" in str(info.value)


def test_misspelled_hook_is_an_error(tmp_path):
    bad = tmp_path / "typo.py"
    bad.write_text("import simbench\n@simbench.hookimpl\ndef register_metric(register):\n    pass\n")
    with pytest.raises(PluginError, match="register_metric"):
        build_registry(plugin_files=[str(bad)])


def test_registered_object_is_validated(tmp_path):
    bad = tmp_path / "notdc.py"
    bad.write_text(textwrap.dedent('''
        import simbench
        class M(simbench.Metric):
            name = "not_frozen"
        @simbench.hookimpl
        def register_metrics(register):
            register(M)
    '''))
    with pytest.raises(PluginError, match="frozen dataclass"):
        build_registry(plugin_files=[str(bad)])
    worse = tmp_path / "inv.py"
    worse.write_text(textwrap.dedent('''
        from dataclasses import dataclass
        import simbench
        @dataclass(frozen=True)
        class M(simbench.Metric):
            name = "odd"
            invariances = frozenset({"rotation"})
        @simbench.hookimpl
        def register_metrics(register):
            register(M)
    '''))
    with pytest.raises(PluginError, match="unknown invariances"):
        build_registry(plugin_files=[str(worse)])
    narrow = tmp_path / "plots.py"
    narrow.write_text(textwrap.dedent('''
        from dataclasses import dataclass
        import simbench
        @dataclass(frozen=True)
        class B(simbench.Benchmark):
            name = "two_argument_plots"
            @classmethod
            def plots(cls, records, out_dir):
                return []
        @simbench.hookimpl
        def register_benchmarks(register):
            register(B)
    '''))
    # one plots signature for every benchmark: the leaderboard always passes the store view
    expected = r"plots must accept the store view: def plots\(cls, records, out_dir, view=None\)"
    with pytest.raises(PluginError, match=expected):
        build_registry(plugin_files=[str(narrow)])


def test_allow_and_block_lists(monkeypatch, tmp_path):
    make_distribution(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    importlib.invalidate_caches()
    assert "acme" in build_registry().plugins
    monkeypatch.setenv("SIMBENCH_BLOCK_PLUGINS", "acme")
    reg = build_registry()
    assert "acme" not in reg.plugins and "builtin_benchmarks" in reg.plugins
    monkeypatch.delenv("SIMBENCH_BLOCK_PLUGINS")
    # the allow-list selects third-party plugins; the built-ins always load (issue 16 item 7)
    monkeypatch.setenv("SIMBENCH_PLUGINS", "acme")
    reg = build_registry()
    assert "acme" in reg.plugins and "builtin_metrics" in reg.plugins and reg.names("metric")
    monkeypatch.setenv("SIMBENCH_PLUGINS", "")
    reg = build_registry()
    assert "acme" not in reg.plugins and "builtin_benchmarks" in reg.plugins


def test_allow_list_with_an_unknown_name_is_an_error(monkeypatch, tmp_path, cli_here):
    make_distribution(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("SIMBENCH_PLUGINS", "acme,acmee")
    with pytest.raises(PluginError, match="'acmee'"):
        build_registry()
    proc = cli_here("list", "metrics", env={"PYTHONPATH": str(tmp_path), "SIMBENCH_PLUGINS": "acmee"})
    assert proc.returncode == 2 and "acmee" in proc.stderr and "Traceback" not in proc.stderr


def test_unknown_name_did_you_mean(registry):
    with pytest.raises(PluginError, match="did you mean 'functional_agreement'"):
        registry.get("benchmark", "functional_agrement")
