"""The runner end to end on the toy plugins: results, failures, caching, kill-and-resume."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from simbench.results import RunDir
from simbench.runner import Runner
from simbench.suite import load_suite
from tests.conftest import TOY_PLUGINS, TOY_SUITE


def run_toy(tmp_path, registry, overrides=(), name="run", cache="cache"):
    suite = load_suite(TOY_SUITE, registry, overrides)
    runner = Runner(suite, registry, tmp_path / name, cache_dir=tmp_path / cache, quiet=True)
    return runner, runner.run()


def test_run_writes_manifest_and_long_table(tmp_path, toy_registry):
    runner, run = run_toy(tmp_path, toy_registry)
    manifest = run.read_manifest()
    for key in ("simbench_version", "git_revision", "device", "seed", "started", "finished", "versions", "plugins"):
        assert manifest[key] not in (None, ""), key
    assert manifest["suite"]["sha256"] == runner.suite.sha256
    frame = run.results()
    assert list(frame.columns)[:3] == ["suite", "kind", "benchmark"]
    assert frame["value"].dtype == "float64"
    sims = frame[frame["kind"] == "similarity"]
    # one row per matrix (3 probe sets), not one per pair; the matrices are array files
    assert len(sims) == 3 and (sims["statistic"] == "matrix").all() and (sims["n"] == 6).all()
    assert manifest["store_format"] == 2
    for probe_set in sims["probe_set"]:
        ids, agreement = run.matrix("agreement", "", probe_set)
        assert agreement.shape == (6, 6) and ((agreement >= 0) & (agreement <= 1)).all()
        assert ids == [m["id"] for m in manifest["models"]]
    fa = frame[(frame["kind"] == "benchmark") & (frame["statistic"] == "pearson_r") & (frame["group"] == "all")]
    assert set(fa["probe_set"]) >= {"clean", "toy_jitter/0.5", "toy_jitter/2.0", "(mean over probe sets)"}


def test_rerun_reuses_cache_and_cells(tmp_path, toy_registry):
    _, run = run_toy(tmp_path, toy_registry)
    first = run.results()
    runner, run = run_toy(tmp_path, toy_registry)
    assert runner.computed == 0 and runner.reused == 7
    pd.testing.assert_frame_equal(first, run.results())
    # a new run directory, same cache: models and representations come from the cache, no training
    runner, run2 = run_toy(tmp_path, toy_registry, name="run2")
    assert runner.cache.misses == 0 and runner.cache.hits >= 4
    pd.testing.assert_frame_equal(first, run2.results())


def test_corrupted_cache_is_rebuilt_with_same_numbers(tmp_path, toy_registry):
    _, run = run_toy(tmp_path, toy_registry)
    for path in (tmp_path / "cache").rglob("*.safetensors"):
        path.write_bytes(path.read_bytes()[:-9])
    runner, run2 = run_toy(tmp_path, toy_registry, name="run2")
    assert runner.cache.rebuilt, "damaged entries must be detected"
    pd.testing.assert_frame_equal(run.results(), run2.results())


def test_raising_and_nan_metrics_are_recorded_and_run_goes_on(tmp_path, toy_registry):
    metrics = "metrics=[{name='toy_gram_corr'}, {name='toy_raises'}, {name='toy_nan'}]"
    _, run = run_toy(tmp_path, toy_registry, [metrics])
    frame = run.results()
    failed = frame[(frame["kind"] == "similarity") & (frame["status"] == "failed")]
    assert set(failed["metric"]) == {"toy_raises", "toy_nan"}
    assert failed[failed["metric"] == "toy_raises"]["error"].str.contains("boom").all()
    assert failed[failed["metric"] == "toy_nan"]["error"].str.contains("non-finite").all()
    ok = frame[(frame["kind"] == "benchmark") & (frame["metric"] == "toy_gram_corr") & (frame["status"] == "ok")]
    assert len(ok) > 0
    from simbench import leaderboard

    out = tmp_path / "lb"
    leaderboard.render(run.path, out, toy_registry)
    board = json.loads((out / "toy.json").read_text())
    ranking = board["tables"][0]
    rows = {r[ranking["columns"].index("metric")]: r for r in ranking["rows"]}
    status = ranking["columns"].index("status")
    assert rows["toy_gram_corr"][status] == "ok"
    assert rows["toy_raises"][status].startswith("FAILED") and "boom" in rows["toy_raises"][status]
    assert "FAILED" in rows["toy_nan"][status]
    assert "Failed measurements" in (out / "toy.md").read_text()


@pytest.mark.slow
def test_kill_and_resume_gives_the_identical_table(tmp_path, cli):
    metrics = "metrics=[{name='toy_gram_corr'}, {name='toy_kill'}]"
    # toy_kill kills its own process, which must be the run's: a per-cell worker process (run.isolation "auto" for a
    # --plugin file) would only lose that cell
    common = ["-p", str(TOY_PLUGINS), "run", str(TOY_SUITE), "-q", "--no-leaderboard", "--set", metrics,
              "--set", "run.isolation='thread'"]
    marker = tmp_path / "killed"
    killed = cli(*common, "--run-dir", str(tmp_path / "a"), "--cache-dir", str(tmp_path / "ca"),
                 env={"SIMBENCH_TEST_KILL_FILE": str(marker)})
    assert killed.returncode != 0 and marker.exists(), killed.stderr  # died by SIGKILL mid-run
    partial = RunDir(tmp_path / "a")
    assert 0 < len(partial.cell_ids()) < 10 and not (tmp_path / "a" / "results.parquet").exists()
    resumed = cli(*common, "--run-dir", str(tmp_path / "a"), "--cache-dir", str(tmp_path / "ca"),
                  env={"SIMBENCH_TEST_KILL_FILE": str(marker)})
    assert resumed.returncode == 0, resumed.stderr
    clean = cli(*common, "--run-dir", str(tmp_path / "b"), "--cache-dir", str(tmp_path / "cb"))
    assert clean.returncode == 0, clean.stderr
    a, b = RunDir(tmp_path / "a"), RunDir(tmp_path / "b")
    pd.testing.assert_frame_equal(a.results(), b.results())
    invocations = a.read_manifest()["invocations"]
    assert len(invocations) == 2 and invocations[1]["cells_reused"] > 0
    assert not a.results().duplicated().any()


def test_a_changed_suite_refuses_an_old_run_dir(tmp_path, toy_registry):
    run_toy(tmp_path, toy_registry)
    from simbench.errors import UserError

    with pytest.raises(UserError, match="different suite"):
        run_toy(tmp_path, toy_registry, ["probes.n=30"])


def test_model_perturbations_each_see_only_the_zoo(tmp_path, toy_registry):
    """Two model-perturbation entries give 2 x M copies of the zoo's models, never copies of copies."""
    overrides = ["perturbations=[{name='toy_scale_weights', factor=2.0}, {name='toy_scale_weights', label='x3', "
                 "factor=3.0}]"]
    _, run = run_toy(tmp_path, toy_registry, overrides)
    ids = [m["id"] for m in run.read_manifest()["models"]]
    zoo = [i for i in ids if "*" not in i]
    assert len(zoo) == 6 and len(ids) == 18
    assert sorted(i for i in ids if "*" in i) == sorted([f"{z}*2" for z in zoo] + [f"{z}*3" for z in zoo])
