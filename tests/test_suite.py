"""Every class of suite validation error: one line naming file, key and expectation."""

from __future__ import annotations

import pytest

from simbench.errors import SuiteError
from simbench.suite import load_suite
from tests.conftest import TOY_PLUGINS, TOY_SUITE

BASE = TOY_SUITE.read_text()


def write(tmp_path, text, name="s.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def error_for(tmp_path, text, registry, overrides=()):
    path = write(tmp_path, text)
    with pytest.raises(SuiteError) as info:
        load_suite(path, registry, overrides)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(path)) or message.startswith("--set")
    return info.value


def test_the_toy_suite_is_valid(toy_registry):
    suite = load_suite(TOY_SUITE, toy_registry)
    assert suite.name == "toy" and suite.zoo.name == "toy_zoo"
    assert [u.label for u in suite.metrics] == ["toy_gram_corr"]
    assert suite.perturbations[0].obj.scales == (0.5, 2.0)  # TOML arrays become tuples
    assert len(suite.sha256) == 64


@pytest.mark.parametrize(
    ("edit", "key", "fragment"),
    [
        (lambda t: 'bogus = 1\n' + t, "bogus", "unknown key; expected one of: schema"),
        (lambda t: t.replace('description = "Core', 'colour = "red"\ndescription = "Core'), "suite.colour",
         "unknown key"),
        (lambda t: t.replace("schema = 1", "schema = 7"), "schema", "expected 1"),
        (lambda t: t.replace("schema = 1", ""), "schema", "missing; expected schema = 1"),
        (lambda t: t.replace("n = 40", 'n = "forty"'), "probes.n", "expected an integer, got a string"),
        (lambda t: t.replace("n = 40", "n = -1"), "probes.n", "expected an integer >= 0"),
        (lambda t: t.replace('device = "cpu"', 'device = "tpu"'), "run.device", "expected one of auto, cpu, cuda"),
        (lambda t: t.replace('name = "toy_gram_corr"', 'name = "toy_gram_cor"'), "metrics[0].name",
         "did you mean 'toy_gram_corr'"),
        (lambda t: t.replace('name = "toy_zoo"', 'name = "toy_zoo"\nseeds = [0, "one"]'), "zoo.seeds.1",
         "valid integer"),
        (lambda t: t.replace('name = "toy_zoo"', 'name = "toy_zoo"\nwidth = 3'), "zoo.width",
         "unknown parameter; expected one of: seeds, widths, steps"),
        (lambda t: t.replace('name = "toy_blobs"', 'name = "toy_blobs"\nclasses = 1'), "data.classes",
         "greater than or equal to 2"),
        (lambda t: 'metrics = "toy_gram_corr"\n' + t.replace('[[metrics]]\nname = "toy_gram_corr"', ''), "metrics",
         "expected an array of tables"),
        (lambda t: t.replace('[[benchmarks]]\nname = "functional_agreement"', ""), "benchmarks", "at least one"),
        (lambda t: t.replace('name = "toy"', 'name = "has space"'), "suite.name", "expected letters"),
        (lambda t: t.replace('[data]\nname = "toy_blobs"', "[data]"), "data.name", "missing"),
        (lambda t: t + '\n[[metrics]]\nname = "toy_gram_corr"\n', "metrics[1].label", "distinct label"),
        # a representation transform is for benchmarks' declared matrices; listed here it would do nothing
        (lambda t: t + '\n[[perturbations]]\nname = "representation_transform"\n', "perturbations[1]",
         "transforms representations, which only a benchmark's declared matrices use"),
    ],
)
def test_validation_errors(tmp_path, toy_registry, edit, key, fragment):
    err = error_for(tmp_path, edit(BASE), toy_registry)
    assert err.key == key, str(err)
    assert fragment in err.message, str(err)


def test_invalid_toml_and_missing_file(tmp_path, toy_registry):
    err = error_for(tmp_path, "schema = = 1", toy_registry)
    assert "not valid TOML" in err.message
    with pytest.raises(SuiteError, match="no such suite file"):
        load_suite(tmp_path / "nope.toml", toy_registry)


def test_extends_and_overrides(tmp_path, toy_registry):
    write(tmp_path, BASE, "base.toml")
    child = write(tmp_path, 'schema = 1\n[suite]\nname = "child"\nextends = "base.toml"\n[probes]\nn = 20\n',
                  "child.toml")
    suite = load_suite(child, toy_registry, ["zoo.seeds=[4, 5]", "metrics.0.name=toy_gram_corr"])
    assert suite.name == "child" and suite.probes["n"] == 20 and suite.zoo.obj.seeds == (4, 5)
    assert suite.description.startswith("Core test suite")  # inherited
    other = load_suite(child, toy_registry)
    assert other.sha256 != suite.sha256  # overrides are part of the suite's identity
    loop = write(tmp_path, 'schema = 1\n[suite]\nname = "l"\nextends = "loop.toml"\n', "loop.toml")
    with pytest.raises(SuiteError, match="circular"):
        load_suite(loop, toy_registry)


def test_plugin_post_init_errors_name_the_key(tmp_path, toy_registry):
    # a ParamError raised in a plugin's __post_init__ names its parameter
    from dataclasses import dataclass

    import simbench
    from simbench.registry import build_registry

    @dataclass(frozen=True)
    class Picky(simbench.Metric):
        name = "picky"
        k: int = 3

        def __post_init__(self):
            if self.k % 2 == 0:
                raise simbench.ParamError("k", "expected an odd number of neighbours")

    class Plugin:
        @simbench.hookimpl
        def register_metrics(self, register):
            register(Picky)

    reg = build_registry(plugin_files=[str(TOY_PLUGINS)], extra_plugins=[Plugin()])
    err = error_for(tmp_path, BASE.replace('name = "toy_gram_corr"', 'name = "picky"\nk = 4'), reg)
    assert err.key == "metrics[0].k" and "odd number" in err.message


def test_cli_validate_one_line_exit_2(tmp_path, cli_here):
    bad = write(tmp_path, BASE.replace("n = 40", 'n = "forty"'))
    proc = cli_here("-p", str(TOY_PLUGINS), "validate", str(bad))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "probes.n" in lines[0] and str(bad) in lines[0]
    ok = cli_here("-p", str(TOY_PLUGINS), "validate", str(TOY_SUITE))
    assert ok.returncode == 0 and "ok" in ok.stdout and "6 models" in ok.stdout
