"""Timed declared matrices (``MatrixRequest.timing_repeats``): the runner times the metric's one-pair call after a
warm-up, under the cell's failure capture, stores the per-call seconds with the cell (``view.matrix_seconds``),
keeps them on resume and never takes a timing from the cache."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from simbench.errors import UserError
from simbench.registry import build_registry

TIMED_PLUGINS = Path(__file__).parent / "fixtures" / "timed_plugins.py"


@pytest.fixture(scope="module")
def toy():
    from tests.conftest import TOY_PLUGINS

    return build_registry(plugin_files=[str(TOY_PLUGINS), str(TIMED_PLUGINS)])


def _calls(registry) -> list[int]:
    """The counting metric's call log (the plugin file's module, as the registry loaded it)."""
    return sys.modules[registry.get("metric", "test_counts_calls").__module__].CALLS


def _run(tmp_path, registry, bench, cache, name="run", executor=None):
    from simbench.runner import Runner
    from simbench.suite import load_suite
    from tests.conftest import TOY_SUITE

    # run.isolation "thread": the counting metric's call log lives in this process (a --plugin file's metric would
    # otherwise run in a worker process per cell, where these calls would not be seen)
    suite = load_suite(TOY_SUITE, registry, [f"benchmarks=[{bench}]", "run.isolation='thread'"])
    runner = Runner(suite, registry, tmp_path / name, cache_dir=cache, quiet=True, executor=executor)
    return runner, runner.run()


def _seconds(frame):
    rows = frame[(frame["kind"] == "benchmark") & (frame["statistic"] == "call")].sort_values("coord_call")
    return [float(v) for v in rows["value"]]


def test_a_timed_pair_times_the_one_pair_call_after_a_warm_up(tmp_path, toy):
    import torch

    calls = _calls(toy)
    calls.clear()
    runner, run = _run(tmp_path, toy, "{name='test_times_a_pair', repeats=4}", tmp_path / "cache")
    seconds = _seconds(run.results())
    assert len(seconds) == 4 and all(s > 0 for s in seconds)
    # the cell keeps the per-call seconds beside the matrix; an untimed cell has none
    meta = run.cell_meta()
    assert meta["matrix/test_times_a_pair/timed"]["call_seconds"] == seconds
    assert meta["matrix/test_times_a_pair/plain"].get("call_seconds") is None
    # one-pair calls: each 2 x 2 matrix (the default pairwise of a symmetric metric: (0,0), (0,1), (1,1)) for the
    # timed and the plain request, then one warm-up and 4 timed calls for the timed one
    assert len(calls) == 3 + 3 + 1 + 4
    timed = runner.state.matrices[("test_times_a_pair", "timed")]
    assert torch.equal(timed, runner.state.matrices[("test_times_a_pair", "plain")])  # timing changes no number


def test_a_timing_is_kept_on_resume_and_measured_again_in_a_new_run(tmp_path, toy):
    calls = _calls(toy)
    cache = tmp_path / "cache"
    _, run = _run(tmp_path, toy, "{name='test_times_a_pair', repeats=3}", cache)
    first = _seconds(run.results())
    calls.clear()
    again, run = _run(tmp_path, toy, "{name='test_times_a_pair', repeats=3}", cache)
    assert again.computed == 0 and not calls  # resumed: the cells (and the timing) reused, no call made
    assert _seconds(run.results()) == first
    # a fresh run directory on the same cache: the plain matrix comes from the cache, the timed pair is measured
    calls.clear()
    third, run = _run(tmp_path, toy, "{name='test_times_a_pair', repeats=3}", cache, name="other")
    assert len(calls) == 3 + 1 + 3 and third.cache.hits > 0
    assert len(_seconds(run.results())) == 3


def test_a_failing_timed_metric_is_a_failed_cell_and_the_benchmark_reports_it(tmp_path, toy):
    _, run = _run(tmp_path, toy, "{name='test_times_a_pair', metric='toy_raises'}", tmp_path / "cache")
    frame = run.results()
    cells = frame[frame["kind"] == "matrix"]
    assert list(cells["status"]) == ["failed", "failed"] and "boom" in cells["error"].iloc[0]
    bench = frame[frame["kind"] == "benchmark"]
    assert list(bench["status"]) == ["failed"] and "boom" in bench["error"].iloc[0]


def test_a_timed_request_needs_exactly_two_sources(tmp_path, toy):
    with pytest.raises(UserError, match="request 'three': a timed request .* needs exactly 2 sources, not 3"):
        _run(tmp_path, toy, "{name='test_times_a_pair', bad='three'}", tmp_path / "cache")


def test_the_fake_store_times_like_the_runner(toy):
    from simbench.testing import FakeStore, run_benchmark

    calls = _calls(toy)
    metric = toy.get("metric", "test_counts_calls")()
    store = FakeStore(metrics={"test_counts_calls": metric}, registry=toy)
    calls.clear()
    records = run_benchmark(toy.get("benchmark", "test_times_a_pair")(layer="output", repeats=5), store)
    assert [r.coords["call"] for r in records] == [0, 1, 2, 3, 4] and all(r.value > 0 for r in records)
    assert len(calls) == 3 + 1 + 5 + 3


@pytest.mark.slow
def test_a_timed_pair_is_timed_on_the_dask_worker(tmp_path, toy):
    """With a remote executor the worker that runs the task times it; the seconds come back with the task."""
    pytest.importorskip("distributed")
    import logging

    from distributed import LocalCluster

    from simbench.executors import DaskExecutor

    calls = _calls(toy)
    calls.clear()
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0",
                      silence_logs=logging.ERROR) as cluster:
        runner, run = _run(tmp_path, toy, "{name='test_times_a_pair', repeats=3}", tmp_path / "cache",
                           executor=DaskExecutor(scheduler=cluster.scheduler_address))
    seconds = _seconds(run.results())
    assert len(seconds) == 3 and all(s > 0 for s in seconds)
    assert sum(k.startswith("matrix/") for k in runner._task_seconds) == 2  # both matrices ran as worker tasks
    assert not calls  # ... and none in this process
