"""A newcomer's first hour (issue 25): the distribution name, optional modules, installed MNIST, the cache.

Nothing here reads real MNIST: the data tests write tiny parquet files in the hub's schema and declare
their sha256 as the known ones.
"""

from __future__ import annotations

import hashlib
import io
import os
import tomllib
from pathlib import Path

import numpy as np
import pytest

from simbench import datastore
from simbench.errors import SuiteError
from simbench.requirements import DISTRIBUTION, check_requirements, install_command, missing_requirements
from simbench.suite import check_data_files, load_suite
from tests.conftest import ROOT, TOY_PLUGINS, TOY_SUITE, one_error_line

SUITES = ROOT / "suites"


# -- the distribution name ----------------------------------------------------------------------------


def test_the_distribution_is_not_the_unrelated_simbench_on_the_index():
    from simbench.plugins import BUILTIN_DISTRIBUTION

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["name"] == DISTRIBUTION == BUILTIN_DISTRIBUTION == "simbench-metrics"
    assert any(d.startswith("platformdirs") for d in project["dependencies"])
    assert any(d.startswith("dask[distributed]") for d in project["optional-dependencies"]["dask"])
    # the built-ins are recognised as built-ins: an allow-list of third-party plugins does not drop them
    import importlib.metadata

    assert importlib.metadata.distribution(DISTRIBUTION).metadata["Name"] == DISTRIBUTION


def test_the_scaffold_pins_the_real_distribution(tmp_path, cli_here):
    from packaging.requirements import Requirement

    from simbench import __version__

    proc = cli_here("new", "metric", "my_sim", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    deps = tomllib.loads((tmp_path / "simbench-my-sim" / "pyproject.toml").read_text())["project"]["dependencies"]
    assert len(deps) == 1
    req = Requirement(deps[0])
    assert req.name == "simbench-metrics"
    assert req.specifier.contains(__version__)  # the simbench it was written against
    assert not req.specifier.contains("0.2.0") and not req.specifier.contains("1.0.0") and not req.specifier.contains(
        "0.0.9")
    # a metric named "metrics" would make a package called simbench-metrics: simbench itself
    proc = cli_here("new", "metric", "metrics", "--out", str(tmp_path / "other"))
    assert proc.returncode == 2 and "simbench itself" in one_error_line(proc)


# -- optional modules (Plugin.requires) ------------------------------------------------------------------

_NEEDY = '''
from dataclasses import dataclass
import simbench

@dataclass(frozen=True)
class NeedyMetric(simbench.Metric):
    """Needs a module nobody has."""
    name = "needy"
    requires = ("simbench_no_such_module_xyz",)

    def __call__(self, a, b, **kwargs):
        return 1.0

@dataclass(frozen=True)
class ContentMetric(simbench.Metric):
    """Needs only what is installed."""
    name = "content"
    requires = ("json", "numpy.linalg")

    def __call__(self, a, b, **kwargs):
        return 1.0

@simbench.hookimpl
def register_metrics(register):
    register(NeedyMetric)
    register(ContentMetric)
'''


def test_a_missing_required_module_is_one_line_in_validate_and_run_leaves_no_run_dir(tmp_path, cli_here):
    needy = tmp_path / "needy.py"
    needy.write_text(_NEEDY)
    base = ["-p", str(TOY_PLUGINS), "-p", str(needy)]
    ok = cli_here(*base, "validate", str(TOY_SUITE), "--set", "metrics=[{name='content'}]")
    assert ok.returncode == 0, ok.stderr
    proc = cli_here(*base, "validate", str(TOY_SUITE), "--no-data", "--set",
                    "metrics=[{name='toy_gram_corr'},{name='needy'}]")
    line = one_error_line(proc)
    assert proc.returncode == 2
    assert "metrics[1]" in line and "metric 'needy'" in line and "'simbench_no_such_module_xyz'" in line
    assert "pip install simbench_no_such_module_xyz" in line
    run_dir = tmp_path / "runs" / "needy"
    proc = cli_here(*base, "run", str(TOY_SUITE), "-q", "--run-dir", str(run_dir), "--cache-dir",
                    str(tmp_path / "cache"), "--set", "metrics=[{name='needy'}]")
    assert proc.returncode == 2 and "simbench_no_such_module_xyz" in one_error_line(proc)
    assert not (tmp_path / "runs").exists() and not (tmp_path / "cache").exists()


def test_the_dask_executor_requires_dask_and_names_the_extra(toy_registry, monkeypatch):
    from simbench import requirements
    from simbench.executors import DaskExecutor

    suite = load_suite(TOY_SUITE, toy_registry)
    assert DaskExecutor.requires == ("dask", "distributed")
    monkeypatch.setattr(requirements, "is_installed", lambda module: module != "distributed")
    assert missing_requirements(suite, DaskExecutor) == [("run.executor", "executor", "dask", "distributed")]
    assert missing_requirements(suite, toy_registry.get("executor", "local")) == []
    with pytest.raises(SuiteError, match=r"run.executor: executor 'dask' needs the module 'distributed'.*"
                                         r"pip install 'simbench-metrics\[dask\]'"):
        check_requirements(suite, DaskExecutor)


def test_install_commands_are_the_ones_that_work():
    assert install_command("torchattacks") == "pip install --no-deps torchattacks==3.5.1"
    assert install_command("dask.array") == "pip install 'simbench-metrics[dask]'"
    assert install_command("foo.bar") == "pip install foo"


# -- MNIST, installed once -----------------------------------------------------------------------------------


def _write_parquet(path, n: int, seed: int) -> str:
    """``n`` random 28x28 'digits' in the hub's schema; returns the file's sha256."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    rng = np.random.default_rng(seed)
    blobs = []
    for _ in range(n):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, size=(28, 28), dtype=np.uint8), mode="L").save(buf, format="PNG")
        blobs.append({"bytes": buf.getvalue(), "path": None})
    pq.write_table(pa.table({"image": blobs, "label": (np.arange(n) % 10).astype(np.int64)}), str(path))
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def fake_mnist(tmp_path, monkeypatch):
    """A folder with the hub's file names, declared the known MNIST copy; an empty user data directory."""
    source = tmp_path / "download" / "mnist"
    source.mkdir(parents=True)
    digests = {"train": _write_parquet(source / "train-00000-of-00001.parquet", 300, 0),
               "test": _write_parquet(source / "test-00000-of-00001.parquet", 90, 1)}
    monkeypatch.setitem(datastore.DATASETS, "mnist", datastore.StoredDataset(
        "mnist", "SIMBENCH_MNIST_DIR", {k: (v,) for k, v in digests.items()}, "MNIST"))
    monkeypatch.setenv("SIMBENCH_DATA_DIR", str(tmp_path / "user-data"))
    monkeypatch.setenv("SIMBENCH_MNIST_DIR", "recorded so that monkeypatch restores its absence")
    monkeypatch.delenv("SIMBENCH_MNIST_DIR")
    return source, digests


def test_data_mnist_verifies_and_copies_into_the_user_data_dir(tmp_path, cli_here, fake_mnist):
    source, digests = fake_mnist
    proc = cli_here("data", "mnist", "--from", str(source.parent))  # the hub's layout: DIR/mnist/*.parquet
    assert proc.returncode == 0, proc.stderr
    target = tmp_path / "user-data" / "mnist"
    assert sorted(p.name for p in target.iterdir()) == ["test.parquet", "train.parquet"]  # no temporary left
    for split, digest in digests.items():
        assert hashlib.sha256((target / f"{split}.parquet").read_bytes()).hexdigest() == digest
    assert str(target) in proc.stdout
    again = cli_here("data", "mnist", "--from", str(source))  # idempotent
    assert again.returncode == 0, again.stderr


def test_data_mnist_refuses_a_wrong_hash_in_one_line_and_installs_nothing(tmp_path, cli_here, fake_mnist):
    source, _ = fake_mnist
    _write_parquet(source / "test-00000-of-00001.parquet", 90, 7)  # other bytes
    proc = cli_here("data", "mnist", "--from", str(source))
    line = one_error_line(proc)
    assert proc.returncode == 2 and "test-00000-of-00001.parquet" in line and "sha256" in line
    assert not (tmp_path / "user-data" / "mnist" / "train.parquet").exists()
    forced = cli_here("data", "mnist", "--from", str(source), "--no-verify")
    assert forced.returncode == 0 and (tmp_path / "user-data" / "mnist" / "test.parquet").is_file()
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = cli_here("data", "mnist", "--from", str(empty))
    assert proc.returncode == 2 and "train*.parquet" in one_error_line(proc)


def test_the_mnist_suites_find_installed_mnist_with_no_environment_variable(tmp_path, cli_here, fake_mnist,
                                                                            registry):
    import simbench

    assert cli_here("data", "mnist", "--from", str(fake_mnist[0])).returncode == 0
    assert "SIMBENCH_MNIST_DIR" not in os.environ
    suite = load_suite(SUITES / "paper-mlp-cpu.toml", registry)
    target = tmp_path / "user-data" / "mnist"
    assert sorted(suite.data_files) == [str(target / "test.parquet"), str(target / "train.parquet")]
    check_data_files(suite)
    data = suite.data.obj.load(simbench.RunContext(seed=0))
    assert data.meta["source"] == "local parquet" and len(data.train) > 0
    # a variable the user set wins over the installed copy
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.environ["SIMBENCH_MNIST_DIR"] = str(elsewhere)  # restored by the fixture's monkeypatch
    with pytest.raises(SuiteError, match="elsewhere"):
        check_data_files(load_suite(SUITES / "paper-mlp-cpu.toml", registry))


def test_missing_mnist_names_the_data_command_before_any_run_dir(tmp_path, cli_here, fake_mnist):
    proc = cli_here("validate", "paper-mlp-cpu")
    line = one_error_line(proc)
    assert proc.returncode == 2
    assert "data.data_files.train" in line and "SIMBENCH_MNIST_DIR is not set" in line
    assert "simbench data mnist --from DIR" in line
    run_dir = tmp_path / "runs" / "mnist"
    proc = cli_here("run", "paper-mlp-cpu", "-q", "--run-dir", str(run_dir), "--cache-dir", str(tmp_path / "cache"))
    assert proc.returncode == 2 and "simbench data mnist --from DIR" in one_error_line(proc)
    assert not (tmp_path / "runs").exists()


def test_a_run_refused_in_preflight_leaves_no_run_dir_it_created(tmp_path, cli_here):
    base = ["-p", str(TOY_PLUGINS), "run", str(TOY_SUITE), "-q", "--no-leaderboard", "--cache-dir",
            str(tmp_path / "cache"), "--set", "probes.layer='nope'"]
    run_dir = tmp_path / "a" / "b" / "run"
    proc = cli_here(*base, "--run-dir", str(run_dir))
    assert proc.returncode == 2 and "probes.layer" in one_error_line(proc)  # refused after the data loaded
    assert not (tmp_path / "a").exists()  # the run directory and the parents this run made are gone
    existing = tmp_path / "existing"
    existing.mkdir()
    proc = cli_here(*base, "--run-dir", str(existing))
    assert proc.returncode == 2 and existing.is_dir()  # a directory the user had is never removed


# -- the stage cache -------------------------------------------------------------------------------------------


def test_the_stage_cache_defaults_to_the_user_cache_dir(tmp_path, toy_registry, monkeypatch):
    import platformdirs

    from simbench.runner import CACHE_ENV, Runner

    suite = load_suite(TOY_SUITE, toy_registry)
    monkeypatch.delenv(CACHE_ENV)
    runner = Runner(suite, toy_registry, tmp_path / "run")
    assert runner.cache.root == Path(platformdirs.user_cache_dir("simbench"))
    assert not (tmp_path / "run").exists()  # constructing a runner writes nothing
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "env-cache"))
    assert Runner(suite, toy_registry, tmp_path / "run").cache.root == tmp_path / "env-cache"
    assert Runner(suite, toy_registry, tmp_path / "run", cache_dir=tmp_path / "flag").cache.root == tmp_path / "flag"


def test_the_tests_never_use_the_users_directories():
    # conftest.py: a relative cache beside each command's working directory, an empty data directory
    assert os.environ["SIMBENCH_CACHE_DIR"] == ".simbench-cache"
    assert not datastore.installed("mnist")
