"""The plan/executor seam (issue 14): the dask executor against the local one on the toy plugins.

One 2-worker ``LocalCluster`` (processes, one thread each) serves the module;
its workers see ``SIMBENCH_TEST_KILL_FILE``, so the ``toy_kill`` metric
SIGKILLs the first worker that runs it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from simbench.errors import SuiteError, UserError
from simbench.executors import DaskExecutor, LocalExecutor, compare_plugins
from simbench.runner import Runner
from simbench.suite import load_suite
from tests.conftest import ROOT, TOY_SUITE, run_cli

pytest.importorskip("distributed")

METRICS = "metrics=[{name='toy_gram_corr'},{name='toy_raises'},{name='wcka'},{name='dcka'},{name='linear_cka'}]"


@pytest.fixture(scope="module")
def kill_marker(tmp_path_factory):
    return tmp_path_factory.mktemp("kill") / "killed"


@pytest.fixture(scope="module")
def cluster(kill_marker):
    from distributed import LocalCluster

    import logging

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                      env={"SIMBENCH_TEST_KILL_FILE": str(kill_marker), "OMP_NUM_THREADS": "1"},
                      silence_logs=logging.ERROR) as cl:
        yield cl


def _run(tmp_path, registry, overrides, name, executor=None, cache="cache"):
    suite = load_suite(TOY_SUITE, registry, overrides)
    runner = Runner(suite, registry, tmp_path / name, cache_dir=tmp_path / cache, quiet=True, executor=executor)
    return runner, runner.run()


def assert_same_results(a: pd.DataFrame, b: pd.DataFrame, atol: float = 1e-12) -> None:
    """Same rows in the same order; numbers equal to ``atol`` (NaN where NaN)."""
    assert len(a) == len(b)
    text = [c for c in a.columns if c != "value"]
    pd.testing.assert_frame_equal(a[text].reset_index(drop=True), b[text].reset_index(drop=True))
    x, y = a["value"].to_numpy(float), b["value"].to_numpy(float)
    assert np.array_equal(np.isnan(x), np.isnan(y))
    assert np.nanmax(np.abs(x - y)) <= atol


@pytest.mark.slow
def test_dask_gives_the_local_results(tmp_path, toy_registry, cluster):
    _, local = _run(tmp_path, toy_registry, [METRICS], "local", cache="cache-local")
    runner, remote = _run(tmp_path, toy_registry, [METRICS], "dask", DaskExecutor(scheduler=cluster.scheduler_address),
                          cache="cache-dask")
    assert_same_results(local.results(matrices=True), remote.results(matrices=True))
    # the zoo and every metric cell ran on the workers; the failing metric is a failed cell, not retried
    assert any(k.startswith("zoo/") for k in runner._task_seconds)
    # every probe set's representations were computed on a worker (3 probe sets), none failed
    assert sum(k.startswith("representations/") for k in runner._task_seconds) == 3
    assert not any(k.startswith("representations/") for k in runner._task_failures)
    assert sum(k.startswith("similarity/") for k in runner._task_seconds) == 5 * 3 - 2  # wcka: once
    assert sum("boom" in e for e in runner._task_failures.values()) == 3
    frame = remote.results()
    failed = frame[(frame["metric"] == "toy_raises")]
    assert (failed["status"] == "failed").all() and failed["error"].str.contains("boom").all()
    manifest = remote.read_manifest()
    assert manifest["invocations"][-1]["executor"] == "dask"
    # a rerun resumes: nothing is sent to the cluster
    runner, again = _run(tmp_path, toy_registry, [METRICS], "dask", DaskExecutor(scheduler=cluster.scheduler_address),
                         cache="cache-dask")
    assert runner.computed == 0 and not runner._task_seconds
    assert_same_results(local.results(matrices=True), again.results(matrices=True))


@pytest.mark.slow
def test_a_worker_killed_mid_task_is_retried_elsewhere(tmp_path, toy_registry, cluster, kill_marker):
    overrides = ["metrics=[{name='toy_kill'},{name='toy_gram_corr'}]", "zoo.widths=[16]"]
    _, local = _run(tmp_path, toy_registry, overrides, "local", cache="cache-local")
    assert not kill_marker.exists()
    runner, remote = _run(tmp_path, toy_registry, overrides, "dask", DaskExecutor(scheduler=cluster.scheduler_address),
                          cache="cache-dask")
    assert kill_marker.exists(), "a worker must have been killed (SIGKILL) mid-task"
    assert not runner._task_failures
    assert_same_results(local.results(matrices=True), remote.results(matrices=True))


@pytest.mark.slow
def test_killed_client_resumes_from_the_store_on_dask(tmp_path, cluster, toy_registry):
    """The client killed (SIGKILL) mid-run: rerunning, now on the cluster, resumes and matches an uninterrupted run."""
    suite = str(TOY_SUITE)
    plugins = ["--plugin", str(ROOT / "tests" / "fixtures" / "toy_plugins.py")]
    # run.isolation "thread": toy_kill must kill the client itself, not a per-cell worker process
    args = ["run", suite, *plugins, "--set", "metrics=[{name='toy_gram_corr'},{name='toy_kill'}]", "-q",
            "--no-leaderboard", "--cache-dir", str(tmp_path / "cache"), "--set", "run.isolation='thread'"]
    marker = tmp_path / "client-killed"
    first = run_cli(*args, "--run-dir", str(tmp_path / "run"), env={"SIMBENCH_TEST_KILL_FILE": str(marker)})
    assert first.returncode == -9 and marker.exists()
    again = run_cli(*args, "--run-dir", str(tmp_path / "run"), "--scheduler", cluster.scheduler_address)
    assert again.returncode == 0, again.stderr
    # the uninterrupted reference, in this process (a third interpreter start only costs time)
    _run(tmp_path, toy_registry, ["metrics=[{name='toy_gram_corr'},{name='toy_kill'}]"], "whole", cache="cache2")
    assert_same_results(pd.read_parquet(tmp_path / "run" / "results.parquet"),
                        pd.read_parquet(tmp_path / "whole" / "results.parquet"))


def test_a_worker_without_a_plugin_is_named_in_one_line(tmp_path, toy_registry):
    """A LocalCluster started by the runner ([run] executor = dask) whose workers block the benchmarks."""
    blocked = DaskExecutor(workers=1, worker_env=(("SIMBENCH_BLOCK_PLUGINS", "builtin_benchmarks"),))
    with pytest.raises(UserError) as err:
        _run(tmp_path, toy_registry, [METRICS], "run", blocked)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("dask worker tcp://")
    assert "benchmark 'functional_agreement' (plugin 'builtin_benchmarks') is not installed there" in message


@pytest.mark.slow
def test_cli_missing_plugin_on_an_existing_cluster_is_one_line_exit_2(tmp_path):
    import logging

    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0",
                      env={"SIMBENCH_BLOCK_PLUGINS": "builtin_metrics"}, silence_logs=logging.ERROR) as cl:
        out = run_cli("run", str(TOY_SUITE), "--plugin", str(ROOT / "tests" / "fixtures" / "toy_plugins.py"),
                      "--set", "metrics=[{name='linear_cka'}]", "-q", "--run-dir", str(tmp_path / "run2"),
                      "--cache-dir", str(tmp_path / "cache"), "--executor", "dask",
                      env={"SIMBENCH_DASK_SCHEDULER": cl.scheduler_address})
    assert out.returncode == 2, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "metric 'linear_cka' (plugin 'builtin_metrics') is not installed there" in lines[0]
    assert "Traceback" not in out.stderr


# -- cheap checks (no cluster) -------------------------------------------------------------------


def test_compare_plugins_names_worker_and_plugin():
    client = [("metric", "m", "pkg", "abc"), ("zoo", "z", "pkg", "def")]
    assert compare_plugins("w1", client, client) == ""
    assert "metric 'm' (plugin 'pkg') is not installed" in compare_plugins("w1", client, [("zoo", "z", "pkg", "def")])
    other = compare_plugins("w1", client, [("metric", "m", "pkg", "xyz"), ("zoo", "z", "pkg", "def")])
    assert other.startswith("dask worker w1: metric 'm'") and "other code" in other
    assert compare_plugins("w1", client, "cannot load plugins (x)") == "dask worker w1: cannot load plugins (x)"


def test_executors_are_registered_plugins(toy_registry):
    assert toy_registry.names("executor") == ["dask", "local"]
    assert toy_registry.get("executor", "local") is LocalExecutor


def test_run_executor_is_validated(toy_registry):
    with pytest.raises(SuiteError, match=r"run.executor.*did you mean 'dask'"):
        load_suite(TOY_SUITE, toy_registry, ["run.executor='dusk'"])
    suite = load_suite(TOY_SUITE, toy_registry, ["run.device='cuda:1'", "run.executor='dask'", "run.workers=2"])
    assert suite.run["device"] == "cuda:1" and suite.run["executor"] == "dask"
    with pytest.raises(SuiteError, match="run.device"):
        load_suite(TOY_SUITE, toy_registry, ["run.device='gpu'"])


def test_dask_needs_the_cache(tmp_path, toy_registry):
    suite = load_suite(TOY_SUITE, toy_registry)
    runner = Runner(suite, toy_registry, tmp_path / "run", cache_dir=tmp_path / "c", quiet=True, use_cache=False,
                    executor="dask")
    with pytest.raises(UserError, match="moves arrays through the cache directory"):
        runner.run()


def test_plan_stages_declare_inputs_and_skip_cached_outputs(tmp_path, toy_registry):
    runner, _ = _run(tmp_path, toy_registry, [METRICS], "run")
    assert runner.zoo_stage().tasks == ()  # trained and cached: nothing to send
    cells = [(use, "weights" if use.obj.kind == "weight" else "clean") for use in runner.suite.metrics]
    fresh = Runner(runner.suite, toy_registry, tmp_path / "other", cache_dir=tmp_path / "cache", quiet=True)
    fresh.state = runner.state
    # every valid matrix is cached; a failed cell's is not, so only it would be sent again
    assert [t.id for t in fresh.similarity_stage(cells).tasks] == ["similarity/toy_raises/clean"]
    # a new cache: every task is planned, each naming its inputs and its one output
    empty = Runner(runner.suite, toy_registry, tmp_path / "other2", cache_dir=tmp_path / "cache2", quiet=True)
    empty.state, empty.data_fingerprint = runner.state, runner.data_fingerprint
    empty._reps = runner._reps
    stage = empty.similarity_stage(cells)
    kinds = {t.id: t for t in stage.tasks}
    assert set(kinds) == {f"similarity/{u.label}/{w}" for u, w in cells}
    assert kinds["similarity/wcka/weights"].inputs[0].startswith("weights/")
    assert kinds["similarity/dcka/clean"].inputs[0].startswith("representations/")
    assert kinds["similarity/dcka/clean"].inputs[1].startswith("inputs/")
    assert all(t.output.startswith("similarity/") for t in stage.tasks)
    assert len(stage.describe()) == len(stage.tasks)


def test_weights_reach_workers_in_the_clients_memory_layout(tmp_path, toy_registry):
    """dense_weights() often returns transposed views; BLAS rounds differently for another layout."""
    runner, _ = _run(tmp_path, toy_registry, [METRICS], "run")
    key = runner._weights_entry()
    tensors, meta = runner.cache.load(key)
    from simbench.cells import with_strides as _with_strides

    for i, spec in enumerate(runner.state.specs):
        for j, w in enumerate(runner.state.models[spec.id].dense_weights()):
            got = _with_strides(tensors[f"w::{i}::{j}"], meta["strides"][f"w::{i}::{j}"])
            assert got.stride() == w.stride() and bool((got == w).all())


ALWAYS_KILL = '''
import os, signal
from dataclasses import dataclass
import simbench


@dataclass(frozen=True)
class AlwaysKill(simbench.Metric):
    """SIGKILLs any dask worker that runs it (never the client)."""

    name = "toy_always_kill"

    def __call__(self, a, b):
        if os.environ.get("SIMBENCH_TEST_ALWAYS_KILL"):  # set on the workers only
            os.kill(os.getpid(), signal.SIGKILL)
        return 0.0


@simbench.hookimpl
def register_metrics(register):
    register(AlwaysKill)
'''


@pytest.mark.slow
def test_a_task_that_kills_every_worker_is_a_failed_cell_not_retried_forever(tmp_path):
    import logging

    from distributed import LocalCluster

    from simbench.executors import ALLOWED_FAILURES
    from simbench.registry import build_registry

    plugin = tmp_path / "always_kill.py"
    plugin.write_text(ALWAYS_KILL)
    registry = build_registry(plugin_files=[str(ROOT / "tests" / "fixtures" / "toy_plugins.py"), str(plugin)])
    overrides = ["metrics=[{name='toy_gram_corr'},{name='toy_always_kill'}]", "perturbations=[]"]
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                      env={"SIMBENCH_TEST_ALWAYS_KILL": "1"}, silence_logs=logging.CRITICAL) as cl:
        runner, run = _run(tmp_path, registry, overrides, "run", DaskExecutor(scheduler=cl.scheduler_address))
    frame = run.results()
    killed = frame[(frame["metric"] == "toy_always_kill") & (frame["kind"] == "similarity")]
    assert len(killed) == 1 and killed["status"].iloc[0] == "failed"
    assert f"worker died {ALLOWED_FAILURES} times" in killed["error"].iloc[0]
    assert (frame[frame["metric"] == "toy_gram_corr"]["status"] == "ok").all()
