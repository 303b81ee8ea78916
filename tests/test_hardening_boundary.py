"""Issue 28 items 1, 4, 5, 8, 9, 10, 11: the plugin-call boundary, the per-cell process, the cache and the readers.

Each test names the item it covers and reproduces the attack from the issue
with a hostile plugin from ``tests/fixtures/boundary_plugins.py`` (loaded as a
``--plugin`` file next to the toy plugins).  Runs share one cache per module,
so the toy zoo trains once.
"""

from __future__ import annotations

import io
import json
import time

import numpy as np
import pandas as pd
import pytest

from simbench.results import RunDir
from simbench.runner import Runner
from simbench.suite import load_suite
from tests.conftest import FIXTURES, TOY_PLUGINS, TOY_SUITE

BOUNDARY_PLUGINS = FIXTURES / "boundary_plugins.py"


@pytest.fixture(scope="module")
def registry():
    from simbench.registry import build_registry

    return build_registry(plugin_files=[str(TOY_PLUGINS), str(BOUNDARY_PLUGINS)])


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def run_toy(tmp_path, registry, overrides=(), name="run", cache=None, **kwargs):
    suite = load_suite(TOY_SUITE, registry, list(overrides))
    runner = Runner(suite, registry, tmp_path / name, cache_dir=cache or tmp_path / "cache", quiet=True, **kwargs)
    return runner, runner.run()


def one_error_line(proc):
    lines = [line for line in proc.stderr.splitlines() if line.strip() and not line.startswith("WARNING")]
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert len(lines) == 1, proc.stderr[-2000:]
    return lines[0]


def similarity(frame):
    return frame[frame["kind"] == "similarity"].groupby("metric")


# -- item 5: a time limit the OS timers can hold ---------------------------------------------------


@pytest.mark.parametrize("value", ["inf", "1e10", "-1", "nan"])
def test_cell_timeout_out_of_range_is_refused_in_one_line(cli_here, value):
    proc = cli_here("-p", str(TOY_PLUGINS), "validate", str(TOY_SUITE), "--set", f"run.cell_timeout={value}")
    assert proc.returncode == 2 and "run.cell_timeout" in one_error_line(proc)


def test_isolation_mode_is_validated(cli_here):
    proc = cli_here("-p", str(TOY_PLUGINS), "validate", str(TOY_SUITE), "--set", "run.isolation='fork'")
    assert proc.returncode == 2 and "run.isolation" in one_error_line(proc)
    proc = cli_here("-p", str(TOY_PLUGINS), "validate", str(TOY_SUITE), "--set", "run.cell_timeout=604800")
    assert proc.returncode == 0, proc.stderr


# -- item 9: a UserError raised by a metric is that metric's failure -------------------------------


@pytest.mark.parametrize("isolation", ["thread", "process"])
def test_user_error_in_a_metric_is_a_failed_cell(tmp_path, registry, shared_cache, isolation):
    overrides = ["metrics=[{name='hb_user_error'}, {name='toy_gram_corr'}]", "perturbations=[]",
                 f"run.isolation='{isolation}'"]
    _, run = run_toy(tmp_path, registry, overrides, cache=shared_cache)
    by_metric = similarity(run.results())
    bad = by_metric.get_group("hb_user_error")
    assert (bad["status"] == "failed").all()
    assert bad["error"].str.fullmatch("UserError: this metric does not like its inputs").all()
    assert (by_metric.get_group("toy_gram_corr")["status"] == "ok").all()


# -- item 8: the per-cell process ------------------------------------------------------------------


def test_native_code_holding_the_gil_is_killed_at_the_limit(tmp_path, registry, shared_cache):
    # ~14 s of regex backtracking in C, GIL held throughout: no thread-level interrupt can stop it
    overrides = ["metrics=[{name='hb_native_hang', n=27}, {name='toy_gram_corr'}]", "perturbations=[]",
                 "run.cell_timeout=1", "run.isolation='process'"]
    runner, run = run_toy(tmp_path, registry, overrides, cache=shared_cache)
    by_metric = similarity(run.results())
    hang = by_metric.get_group("hb_native_hang")
    assert (hang["status"] == "failed").all() and hang["error"].str.contains("timed out after 1 s").all()
    assert (by_metric.get_group("toy_gram_corr")["status"] == "ok").all()
    assert runner.stage_seconds["similarity"] < 8, runner.stage_seconds  # killed at 1 s, not waited for


def test_a_late_result_from_native_code_is_a_timeout_in_a_thread(tmp_path, registry, shared_cache):
    # in-process the thread cannot be interrupted while C holds the GIL; its late result must not count as ok
    overrides = ["metrics=[{name='hb_native_hang', n=24}]", "perturbations=[]", "run.cell_timeout=0.2",
                 "run.isolation='thread'"]
    _, run = run_toy(tmp_path, registry, overrides, cache=shared_cache)
    hang = similarity(run.results()).get_group("hb_native_hang")
    assert (hang["status"] == "failed").all() and hang["error"].str.contains("timed out after 0.2 s").all()


def test_os_exit_in_a_file_plugin_metric_is_a_failed_cell(tmp_path, registry, shared_cache):
    # isolation "auto" (the default) runs --plugin file metrics in a worker process
    overrides = ["metrics=[{name='hb_os_exit'}, {name='toy_gram_corr'}]", "perturbations=[]"]
    runner, run = run_toy(tmp_path, registry, overrides, cache=shared_cache)
    by_metric = similarity(run.results())
    gone = by_metric.get_group("hb_os_exit")
    assert (gone["status"] == "failed").all()
    assert gone["error"].str.contains("worker process ended without a result (exit code 0)", regex=False).all()
    assert (by_metric.get_group("toy_gram_corr")["status"] == "ok").all()
    assert run.read_manifest()["invocations"][-1]["finished"]


def test_a_worker_process_computes_the_same_matrices_as_the_thread(tmp_path, registry, shared_cache):
    common = ["metrics=[{name='toy_gram_corr'}, {name='toy_inplace'}]", "perturbations=[]"]
    _, thread = run_toy(tmp_path, registry, [*common, "run.isolation='thread'"], name="thread", use_cache=False)
    _, process = run_toy(tmp_path, registry, [*common, "run.isolation='process'"], name="process", use_cache=False)
    ids, a = thread.matrix("similarity", "toy_gram_corr", "clean")
    ids_b, b = process.matrix("similarity", "toy_gram_corr", "clean")
    assert ids == ids_b and np.array_equal(a, b)
    # the in-place check works across the process boundary too
    bad = similarity(process.results()).get_group("toy_inplace")
    assert (bad["status"] == "failed").all() and bad["error"].str.contains("in place").all()
