"""Issue 28 items 1, 4, 5, 8, 9, 10, 11: the plugin-call boundary, the per-cell process, the cache and the readers.

Each test names the item it covers and reproduces the attack from the issue
with a hostile plugin from ``tests/fixtures/boundary_plugins.py`` (loaded as a
``--plugin`` file next to the toy plugins).  Runs share one cache per module,
so the toy zoo trains once.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest

from simbench.results import RunDir
from simbench.runner import Runner
from simbench.suite import load_suite
from tests.conftest import FIXTURES, TOY_PLUGINS, TOY_SUITE, one_error_line

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


# -- item 10: a checksum-valid cache entry whose content fails validation is rebuilt ---------------


def test_a_cached_matrix_that_fails_validation_is_rebuilt(tmp_path, registry):
    import torch

    overrides = ["metrics=[{name='toy_gram_corr'}]", "perturbations=[]"]
    runner, first = run_toy(tmp_path, registry, overrides, name="first")
    key = runner.similarity_key(runner.suite.metrics[0], "clean")
    good = runner.cache.load(key)[0]["matrix"]
    # a well-formed entry (its sidecar checksum matches) holding values outside toy_gram_corr's range [-1, 1]
    runner.cache.save(key, {"matrix": torch.full_like(good, 5.0)})
    assert runner.cache.load(key) is not None
    again, second = run_toy(tmp_path, registry, overrides, name="second")
    cells = similarity(second.results()).get_group("toy_gram_corr")
    assert (cells["status"] == "ok").all(), cells["error"].tolist()
    before, after = first.matrix("similarity", "toy_gram_corr")[1], second.matrix("similarity", "toy_gram_corr")[1]
    assert np.array_equal(before, after)
    assert key in second.read_manifest()["invocations"][-1]["cache_rebuilt"]
    assert torch.equal(again.cache.load(key)[0]["matrix"], good)  # the entry holds the real matrix again


# -- item 11: readers check the model list and the arrays' headers ---------------------------------


def _stamp(run_dir, cell_id, data):
    """Replace a matrix cell's array with ``data`` and give the cell the matching checksum (a crafted array)."""
    rd = RunDir(run_dir)
    path = rd.cell_path(cell_id)
    payload = json.loads(path.read_text())
    (run_dir / payload["meta"]["array"]).write_bytes(data)
    payload["meta"]["array_sha256"] = __import__("hashlib").sha256(data).hexdigest()
    path.write_text(json.dumps(payload))


def _npy(array, allow_pickle=False):
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=allow_pickle)
    return buf.getvalue()


def _huge_header():
    """A valid .npy header claiming a 100 000 x 100 000 float64 matrix (80 GB), followed by 32 bytes."""
    data = _npy(np.zeros((2, 2)))
    big = data.replace(b"(2, 2)", b"(100000, 100000)").replace(b" " * 10 + b"\n", b"\n", 1)
    assert len(big) == len(data)
    return big


def test_a_reordered_model_list_is_refused_by_readers_and_rewritten_on_resume(tmp_path, registry, shared_cache):
    from simbench.errors import UserError

    overrides = ["metrics=[{name='toy_gram_corr'}]", "perturbations=[]"]
    _, run = run_toy(tmp_path, registry, overrides, cache=shared_cache)
    ids, values = run.matrix("similarity", "toy_gram_corr")
    models = tmp_path / "run" / "matrices" / "models.json"
    models.write_text(json.dumps({"ids": list(reversed(ids))}, indent=1))
    # every reader goes through RunDir.matrix (StoreView, plots, simbench.load): a mislabelled matrix is refused
    with pytest.raises(UserError, match="another model list than matrices/models.json") as info:
        RunDir(tmp_path / "run").matrix("similarity", "toy_gram_corr")
    assert "\n" not in str(info.value)
    with pytest.raises(UserError):
        RunDir(tmp_path / "run").matrix("agreement")
    # the writer puts its own model order back; every cell is still good and reused
    runner, resumed = run_toy(tmp_path, registry, overrides, cache=shared_cache)
    assert runner.computed == 0 and not runner.run_dir.discarded
    assert json.loads(models.read_text())["ids"] == ids
    assert np.array_equal(RunDir(tmp_path / "run").matrix("similarity", "toy_gram_corr")[1], values)


@pytest.mark.parametrize("crafted", ["float32", "object", "huge_header", "wrong_size", "not_npy"])
def test_crafted_arrays_with_a_matching_checksum_are_recomputed(tmp_path, registry, shared_cache, crafted):
    from simbench.errors import UserError

    overrides = ["metrics=[{name='toy_gram_corr'}]", "perturbations=[]"]
    _, run = run_toy(tmp_path, registry, overrides, cache=shared_cache)
    first = run.results(matrices=True)
    ids, values = run.matrix("similarity", "toy_gram_corr")
    data = {
        "float32": lambda: _npy(values.astype(np.float32)),
        "object": lambda: _npy(np.array([[{"a": 1}] * len(ids)] * len(ids), dtype=object), allow_pickle=True),
        "huge_header": _huge_header,
        "wrong_size": lambda: _npy(np.zeros((len(ids) + 1, len(ids) + 1))),
        "not_npy": lambda: b"definitely not an array",
    }[crafted]()
    _stamp(tmp_path / "run", "similarity/toy_gram_corr/clean", data)
    # a reader gets one line, never a MemoryError or an unpickled object
    with pytest.raises(UserError, match="unusable array") as info:
        RunDir(tmp_path / "run").matrix("similarity", "toy_gram_corr")
    assert "\n" not in str(info.value)
    # resume discards the cell and recomputes it: the same table as before
    runner, resumed = run_toy(tmp_path, registry, overrides, cache=shared_cache)
    assert runner.run_dir.discarded == ["similarity/toy_gram_corr/clean"] and runner.computed == 1
    pd.testing.assert_frame_equal(first, resumed.results(matrices=True))


# -- item 1: one restoring copy of everything a plugin may touch -----------------------------------


def benchmark_values(frame, label):
    rows = frame[(frame["kind"] == "benchmark") & (frame["benchmark"] == label)]
    return rows.set_index("statistic")["value"].to_dict()


def test_a_benchmark_that_mutates_the_data_fails_and_the_next_reads_the_original(tmp_path, registry, shared_cache):
    common = ["metrics=[{name='toy_gram_corr'}]", "perturbations=[]"]
    _, alone = run_toy(tmp_path, registry, [*common, "benchmarks=[{name='hb_reads_data'}]"], name="alone",
                       cache=shared_cache)
    both = [*common, "benchmarks=[{name='hb_mutates_data'}, {name='hb_reads_data'}]"]
    runner, fresh = run_toy(tmp_path, registry, both, name="both", cache=shared_cache)
    frame = fresh.results()
    # the benchmark after the culprit reads the original data: the same numbers as without the culprit
    assert benchmark_values(frame, "hb_reads_data") == benchmark_values(alone.results(), "hb_reads_data")
    culprit = frame[(frame["kind"] == "benchmark") & (frame["benchmark"] == "hb_mutates_data")]
    assert list(culprit["status"]) == ["failed"]
    assert "modified the data's train.y, the data's test.x in place (restored)" in culprit["error"].iloc[0]
    data = runner.state.data  # the run's own data is the original again
    assert float(data.train.y.double().sum()) == benchmark_values(frame, "hb_reads_data")["train_y_sum"] > 0
    # a resume (the culprit's cell reused, the reader's recomputed) gives the same table as the fresh run
    RunDir(tmp_path / "both").remove_cell("benchmark/hb_reads_data")
    _, resumed = run_toy(tmp_path, registry, both, name="both", cache=shared_cache)
    pd.testing.assert_frame_equal(frame, resumed.results())


def test_a_perturbation_that_mutates_the_data_fails_and_the_next_reads_the_original(tmp_path, registry):
    # separate caches: the second perturbation's probe set must be computed after the first in each run
    common = ["metrics=[{name='toy_gram_corr'}]"]
    _, alone = run_toy(tmp_path, registry, [*common, "perturbations=[{name='hb_data_probe'}]"], name="alone",
                       cache=tmp_path / "c1")
    both = [*common, "perturbations=[{name='hb_mutates_data_pert'}, {name='hb_data_probe'}]"]
    runner, run = run_toy(tmp_path, registry, both, name="both", cache=tmp_path / "c2")
    frame = run.results()
    # the perturbation after the culprit reads the original data: the same matrix as without the culprit
    a = alone.matrix("similarity", "toy_gram_corr", "hb_data_probe/v")[1]
    b = run.matrix("similarity", "toy_gram_corr", "hb_data_probe/v")[1]
    assert np.array_equal(a, b)
    failed = frame[(frame["kind"] == "perturbation") & (frame["status"] == "failed")]
    assert list(failed["probe_set"]) == ["hb_mutates_data_pert"]
    assert "modified the data's test.x in place" in failed["error"].iloc[0]


# -- item 4: sys.exit in reports, publish and the preflight ---------------------------------------


@pytest.mark.parametrize("command", ["validate", "run"])
def test_sys_exit_in_a_zoo_instantiate_during_preflight_is_one_line(tmp_path, cli_here, command):
    args = ["-p", str(TOY_PLUGINS), "-p", str(BOUNDARY_PLUGINS), command, str(TOY_SUITE), "--set",
            "zoo.name='hb_exit_zoo'"]
    if command == "run":
        args += ["-q", "--no-leaderboard", "--run-dir", str(tmp_path / "r"), "--cache-dir", str(tmp_path / "c")]
    proc = cli_here(*args)
    line = one_error_line(proc)
    assert proc.returncode == 3 and "hb_exit_zoo" in line and "instantiate: SystemExit" in line


def test_sys_exit_in_tables_and_plots_is_a_recorded_problem(tmp_path, cli_here, caplog):
    plugins = ["-p", str(TOY_PLUGINS), "-p", str(BOUNDARY_PLUGINS)]
    run_dir = tmp_path / "runs" / "toy"
    proc = cli_here(*plugins, "run", str(TOY_SUITE), "-q", "--run-dir", str(run_dir), "--cache-dir",
                    str(tmp_path / "c"), "--set", "benchmarks=[{name='hb_exit_report'}, {name='hb_reads_data'}]",
                    "--set", "perturbations=[]")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "tables failed: SystemExit" in caplog.text and "plots failed: SystemExit" in caplog.text
    board = (run_dir / "leaderboard" / "toy.md").read_text()
    assert "tables failed: SystemExit" in board and "test_x_sum" in board  # the other benchmark's table is there
    out = tmp_path / "published"
    proc = cli_here(*plugins, "publish", str(tmp_path / "runs"), "--out", str(out), "--allow-dirty")
    assert proc.returncode == 0 and "published toy" in proc.stdout, proc.stderr[-2000:]
    assert (out / "README.md").exists() and (out / "index.html").exists()
    assert "tables failed: SystemExit" in proc.stderr
