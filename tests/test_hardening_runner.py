"""Issue 13 (hardening) and issue 16 items 3/5/7 on the core run path, with the toy plugins.

Each test names the issue item it covers.  Runs share one stage cache per
module (the toy zoo trains once), so the file stays fast.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap

import pandas as pd
import pytest

from simbench.errors import ResourceError, RunBusy, SuiteError, UserError
from simbench.provenance import simbench_revision
from simbench.report import format_frame
from simbench.results import RunDir
from simbench.runner import Runner
from simbench.suite import check_data_files, load_suite
from tests.conftest import ROOT, TOY_PLUGINS, TOY_SUITE, one_error_line


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def run_toy(tmp_path, registry, overrides=(), name="run", cache=None, suite_file=TOY_SUITE, **kwargs):
    suite = load_suite(suite_file, registry, overrides)
    runner = Runner(suite, registry, tmp_path / name, cache_dir=cache or tmp_path / "cache", quiet=True, **kwargs)
    return runner, runner.run()



def sims(frame, metric):
    rows = frame[(frame["kind"] == "similarity") & (frame["metric"] == metric)]
    return rows.sort_values(["probe_set", "model_a", "model_b"])["value"].to_numpy()


# -- item 1: --fresh deletes only a run directory ---------------------------------------------


def test_fresh_refuses_anything_but_a_run_directory(tmp_path, cli_here):
    precious = tmp_path / "data"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    common = ["-p", str(TOY_PLUGINS), "run", str(TOY_SUITE), "-q", "--fresh", "--no-leaderboard"]
    proc = cli_here(*common, "--run-dir", str(precious))
    assert proc.returncode == 2 and "not a simbench run directory" in one_error_line(proc)
    assert (precious / "thesis.tex").exists()
    # the current directory, and a directory holding the suite file, are never deleted
    suite = tmp_path / "toy.toml"
    suite.write_text(TOY_SUITE.read_text())
    proc = cli_here("-p", str(TOY_PLUGINS), "run", str(suite), "-q", "--fresh", "--run-dir", ".", cwd=tmp_path)
    assert proc.returncode == 2 and "current directory" in one_error_line(proc)
    assert suite.exists()
    proc = cli_here("-p", str(TOY_PLUGINS), "run", str(suite), "-q", "--fresh", "--run-dir", str(tmp_path))
    assert proc.returncode == 2 and "holds the suite file" in one_error_line(proc)
    assert suite.exists()


def test_fresh_restarts_a_real_run_directory(tmp_path, toy_registry, shared_cache):
    run_toy(tmp_path, toy_registry, cache=shared_cache)
    (tmp_path / "run" / "cells" / "stray.json").write_text("{}")
    runner, run = run_toy(tmp_path, toy_registry, cache=shared_cache, fresh=True)
    assert runner.reused == 0 and runner.computed > 0
    assert not (tmp_path / "run" / "cells" / "stray.json").exists()


# -- item 2: plugins never see mutable shared state ------------------------------------------


def test_in_place_metric_fails_alone_and_poisons_nothing(tmp_path, toy_registry, shared_cache):
    _, clean = run_toy(tmp_path, toy_registry, ["metrics=[{name='toy_gram_corr'}]"], name="clean",
                       cache=shared_cache)
    _, run = run_toy(tmp_path, toy_registry, ["metrics=[{name='toy_inplace'}, {name='toy_gram_corr'}]"],
                     name="dirty", cache=shared_cache)
    frame = run.results()
    bad = frame[(frame["metric"] == "toy_inplace") & (frame["kind"] == "similarity")]
    assert (bad["status"] == "failed").all() and bad["error"].str.contains("in place").all()
    # the next metric sees the original representations: the same numbers as a run without the culprit
    assert (sims(run.results(matrices=True), "toy_gram_corr")
            == sims(clean.results(matrices=True), "toy_gram_corr")).all()
    # and nothing the failed metric produced is in the cache: a later clean run recomputes it and fails again
    _, again = run_toy(tmp_path, toy_registry, ["metrics=[{name='toy_inplace'}]"], name="again", cache=shared_cache)
    assert (again.results().query("kind == 'similarity'")["status"] == "failed").all()


# -- item 3: one writer, cells carry the suite hash ---------------------------------------------


def test_second_writer_is_refused_with_the_pid(tmp_path, toy_registry):
    holder = RunDir(tmp_path / "run")
    holder.acquire()
    try:
        with pytest.raises(RunBusy, match=f"already running, pid {os.getpid()}"):
            run_toy(tmp_path, toy_registry)
    finally:
        holder.release()


def test_cells_of_another_suite_are_never_mixed_in(tmp_path, toy_registry, shared_cache):
    _, run = run_toy(tmp_path, toy_registry, cache=shared_cache)
    first = run.results()
    cell = next(p for p in (tmp_path / "run" / "cells").glob("similarity*.json"))
    payload = json.loads(cell.read_text())
    assert payload["suite_sha256"] == load_suite(TOY_SUITE, toy_registry).sha256
    payload["suite_sha256"] = "0" * 64
    payload["rows"] = [{**r, "value": 42.0} for r in payload["rows"]]
    cell.write_text(json.dumps(payload))
    runner, run = run_toy(tmp_path, toy_registry, cache=shared_cache)
    assert runner.computed == 1 and len(runner.run_dir.discarded) == 1
    pd.testing.assert_frame_equal(first, run.results())
    assert len(run.read_manifest()["invocations"]) == 2


# -- item 5: provenance never runs the suite repository's hooks ------------------------------


def test_provenance_is_simbench_own_and_runs_no_repository_hooks(tmp_path, toy_registry, shared_cache):
    repo = tmp_path / "repo"
    repo.mkdir()
    marker = tmp_path / "fsmonitor-ran"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    hook = repo / "hook.sh"
    hook.write_text(f"#!/bin/sh\ntouch {marker}\n")
    hook.chmod(0o755)
    subprocess.run(["git", "-C", str(repo), "config", "core.fsmonitor", str(hook)], check=True)
    suite = repo / "toy.toml"
    suite.write_text(TOY_SUITE.read_text())
    _, run = run_toy(tmp_path, toy_registry, suite_file=suite, cache=shared_cache)
    assert not marker.exists(), "git ran the suite repository's fsmonitor hook"
    manifest = run.read_manifest()
    ours = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert manifest["simbench_revision"].split("-")[0] == ours == simbench_revision().split("-")[0]
    assert manifest["git_revision"] == manifest["simbench_revision"]
    assert manifest["data_fingerprint"] and manifest["suite"]["sha256"]


# -- item 6: isolation at every stage ----------------------------------------------------------


def test_failing_perturbations_are_recorded_and_the_run_goes_on(tmp_path, toy_registry, shared_cache):
    overrides = ["perturbations=[{name='toy_broken'}, {name='toy_jitter', scales=[0.5]}, "
                 "{name='toy_broken_models'}]"]
    _, run = run_toy(tmp_path, toy_registry, overrides, cache=shared_cache)
    frame = run.results()
    failed = frame[(frame["kind"] == "perturbation") & (frame["status"] == "failed")]
    errors = dict(zip(failed["probe_set"], failed["error"], strict=True))
    assert "perturbation exploded" in errors["toy_broken"]
    assert "SystemExit" in errors["toy_broken_models"]
    measured = set(frame[frame["kind"] == "similarity"]["probe_set"])
    assert measured == {"clean", "toy_jitter/0.5"}


def test_system_exit_and_timeouts_in_metrics_are_failed_cells(tmp_path, toy_registry, shared_cache):
    overrides = ["metrics=[{name='toy_exits'}, {name='toy_hangs'}, {name='toy_gram_corr'}]", "run.cell_timeout=0.5",
                 "perturbations=[]"]
    _, run = run_toy(tmp_path, toy_registry, overrides, cache=shared_cache)
    frame = run.results().query("kind == 'similarity'")
    by_metric = frame.groupby("metric")
    assert by_metric.get_group("toy_exits")["error"].str.contains("SystemExit").all()
    assert by_metric.get_group("toy_hangs")["error"].str.contains("timed out after 0.5 s").all()
    assert (by_metric.get_group("toy_gram_corr")["status"] == "ok").all()


def test_a_failing_zoo_group_is_recorded_and_the_others_run(tmp_path, toy_registry, shared_cache):
    _, run = run_toy(tmp_path, toy_registry, ["zoo.name='toy_grouped_zoo'"], cache=shared_cache)
    frame = run.results()
    failed = frame[frame["kind"] == "zoo"]
    assert list(failed["model_a"]) == ["w16/s0"] and "width 16 diverged" in failed["error"].iloc[0]
    models = {m["id"] for m in run.read_manifest()["models"]}
    assert models == {"w8/s0", "w8/s1", "w8/s2"}
    assert (frame[frame["kind"] == "similarity"]["status"] == "ok").all()


@pytest.mark.slow
def test_failing_dataset_or_zoo_is_one_line(tmp_path, cli_here):
    base = ["-p", str(TOY_PLUGINS), "run", str(TOY_SUITE), "-q", "--no-leaderboard", "--cache-dir",
            str(tmp_path / "c")]
    proc = cli_here(*base, "--run-dir", str(tmp_path / "a"), "--set", "data.name=toy_broken_data")
    assert proc.returncode == 3 and "the data server said no" in one_error_line(proc)
    proc = cli_here(*base, "--run-dir", str(tmp_path / "b"), "--set", "zoo.name=toy_broken_zoo")
    assert proc.returncode == 3 and "training script called exit()" in one_error_line(proc)
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert "SystemExit" in manifest["invocations"][-1]["failed"]


def test_broken_plugins_are_skipped_or_refused_in_one_line(tmp_path, cli):
    raising = tmp_path / "raising.py"
    raising.write_text("import simbench\n@simbench.hookimpl\ndef register_metrics(register):\n"
                       "    raise RuntimeError('cannot register today')\n")
    proc = cli("-p", str(raising), "list", "metrics")
    assert proc.returncode == 0 and "linear_cka" in proc.stdout
    assert "cannot register today" in proc.stderr and "SIMBENCH_BLOCK_PLUGINS=raising" in proc.stderr
    proc = cli("-p", str(raising), "plugins")
    assert proc.returncode == 0 and "raising — SKIPPED: register_metrics raised RuntimeError" in proc.stdout
    exits = tmp_path / "exits.py"
    exits.write_text("import sys\nsys.exit(0)\n")
    proc = cli("-p", str(exits), "list")
    assert proc.returncode == 2 and "exits.py: failed to import: SystemExit" in one_error_line(proc)
    # an installed (entry-point) plugin calling sys.exit at import is skipped with the block-list hint
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "quitter.py").write_text("import sys\nsys.exit(1)\n")
    info = tmp_path / "site" / "quitter-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: quitter\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[simbench]\nquitter = quitter\n")
    proc = cli("list", "metrics", env={"PYTHONPATH": str(tmp_path / "site")})
    assert proc.returncode == 0 and "linear_cka" in proc.stdout
    assert "SIMBENCH_BLOCK_PLUGINS=quitter" in proc.stderr and "Traceback" not in proc.stderr


# -- item 7: damaged cells and temp files ---------------------------------------------------------


def test_damaged_cells_are_recomputed_and_temp_files_cleaned(tmp_path, toy_registry, shared_cache):
    import torch

    _, run = run_toy(tmp_path, toy_registry, cache=shared_cache)
    first = run.results()
    cells = sorted((tmp_path / "run" / "cells").glob("*.json"))
    cells[0].write_text("")
    cells[1].write_text(cells[1].read_text()[:40])
    stale = tmp_path / "run" / "cells" / ".agreement_clean-123.json.tmp99999"
    stale.write_text("half a cell")
    runner, run = run_toy(tmp_path, toy_registry, cache=shared_cache)
    assert runner.computed == 2 and not stale.exists()
    pd.testing.assert_frame_equal(first, run.results())
    # threads are pinned (issue 14): one per process unless [run] threads says otherwise
    assert torch.get_num_threads() == 1 and run.read_manifest()["threads"] == 1


# -- item 8: output validation -------------------------------------------------------------------


def test_invalid_metric_outputs_fail_and_constant_matrices_are_flagged(tmp_path, toy_registry, shared_cache):
    modes = ["complex", "range", "asymmetric", "constant"]
    metrics = ", ".join(f"{{name='toy_bad_output', mode='{m}', label='{m}'}}" for m in modes)
    _, run = run_toy(tmp_path, toy_registry, [f"metrics=[{metrics}]", "perturbations=[]"], cache=shared_cache)
    frame = run.results()
    sim = frame[frame["kind"] == "similarity"]
    errors = sim.groupby("metric")["error"].first()
    assert "complex" in errors["complex"]
    assert "outside the declared range [0, 1]" in errors["range"]
    assert "declared symmetric" in errors["asymmetric"]
    assert (sim[sim["metric"] == "constant"]["status"] == "ok").all()
    flags = frame[frame["kind"] == "flag"]
    assert list(flags["metric"]) == ["constant"] and list(flags["statistic"]) == ["constant"]


def test_nan_inputs_fail_that_probe_set_only(tmp_path, toy_registry, shared_cache):
    _, run = run_toy(tmp_path, toy_registry, ["perturbations=[{name='toy_nan_inputs'}]"], cache=shared_cache)
    frame = run.results()
    failed = frame[(frame["kind"] == "probe_set") & (frame["status"] == "failed")]
    assert list(failed["probe_set"]) == ["toy_nan_inputs/nan"] and "NaN" in failed["error"].iloc[0]
    assert set(frame[frame["kind"] == "agreement"]["probe_set"]) == {"clean", "toy_nan_inputs/ok"}


# -- item 9: validate before training; resource errors ----------------------------------------


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["probes.layer=hiddn"], "probes.layer"),
        (["zoo.widths=[1000000000]"], "run.max_size_gb"),
        (["run.max_models=3"], "run.max_models"),
        (["suite.name=" + "x" * 300], "suite.name"),
    ],
)
def test_validate_refuses_before_training(tmp_path, cli_here, overrides, key):
    args = [a for o in overrides for a in ("--set", o)]
    proc = cli_here("-p", str(TOY_PLUGINS), "validate", str(TOY_SUITE), *args)
    assert proc.returncode == 2 and key in one_error_line(proc)
    # `run` refuses the same suite before training (no cache entry written)
    proc = cli_here("-p", str(TOY_PLUGINS), "run", str(TOY_SUITE), "-q", *args, "--run-dir", str(tmp_path / "r"),
               "--cache-dir", str(tmp_path / "c"))
    assert proc.returncode == 2 and key in one_error_line(proc)
    assert not list((tmp_path / "c").glob("zoo/*"))


def test_deep_nesting_is_one_line(tmp_path, cli_here, toy_registry):
    deep = tmp_path / "deep.toml"
    deep.write_text(TOY_SUITE.read_text() + "\n[zoo.x]\ny = " + "[" * 700 + "]" * 700 + "\n")
    proc = cli_here("-p", str(TOY_PLUGINS), "validate", str(deep))
    assert proc.returncode == 2 and "nested too deeply" in one_error_line(proc)
    proc = cli_here("-p", str(TOY_PLUGINS), "validate", str(TOY_SUITE), "--set", "zoo.seeds=" + "[" * 700 + "]" * 700)
    assert proc.returncode == 2 and "nested too deeply" in one_error_line(proc)
    with pytest.raises(SuiteError, match="nested too deeply"):
        load_suite(TOY_SUITE, toy_registry, ["zoo.seeds=" + "[" * 30 + "]" * 30])


def test_resource_errors_are_one_line_before_training(tmp_path, cli_here):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    base = ["-p", str(TOY_PLUGINS), "run", str(TOY_SUITE), "-q", "--no-leaderboard"]
    proc = cli_here(*base, "--run-dir", str(blocker / "run"), "--cache-dir", str(tmp_path / "c"))
    assert proc.returncode == 3 and "cannot create" in one_error_line(proc)
    proc = cli_here(*base, "--run-dir", str(tmp_path / "r"), "--cache-dir", str(blocker / "cache"))
    assert proc.returncode == 3 and "cache directory" in one_error_line(proc)
    assert not (tmp_path / "r" / "cells").exists()


def test_disk_full_while_writing_a_cell_is_a_resource_error(tmp_path, monkeypatch):
    import errno

    import simbench.results as results

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(results.os, "fsync", full)
    with pytest.raises(ResourceError, match="No space left on device") as info:
        RunDir(tmp_path / "run", "abc").write_cell("x", [])
    assert info.value.exit_code == 3 and "\n" not in str(info.value)
    assert not list((tmp_path / "run" / "cells").glob(".*tmp*"))


# -- issue 16 item 3: caches keyed by the plugin's code -------------------------------------------

PLUGIN_TEMPLATE = textwrap.dedent(
    '''
    from dataclasses import dataclass
    import simbench

    @dataclass(frozen=True)
    class Signed(simbench.Metric):
        name = "signed_cos"
        value_range = (-1.0, 1.0)

        def __call__(self, a, b):
            import torch
            ka, kb = (a @ a.T).flatten(), (b @ b.T).flatten()
            return SIGN * float(torch.nn.functional.cosine_similarity(ka, kb, dim=0))

    @simbench.hookimpl
    def register_metrics(register):
        register(Signed)
    '''
)


def test_editing_a_plugin_body_invalidates_its_cache(tmp_path, shared_cache):
    from simbench.registry import build_registry

    plugin = tmp_path / "signed.py"
    plugin.write_text(PLUGIN_TEMPLATE.replace("SIGN", "1.0"))
    registry = build_registry(plugin_files=[str(TOY_PLUGINS), str(plugin)])
    overrides = ["metrics=[{name='signed_cos'}]", "perturbations=[]"]
    _, before = run_toy(tmp_path, registry, overrides, name="before", cache=shared_cache)
    plugin.write_text(PLUGIN_TEMPLATE.replace("SIGN", "-1.0"))  # same name, same `version`: only the body changed
    registry = build_registry(plugin_files=[str(TOY_PLUGINS), str(plugin)])
    _, after = run_toy(tmp_path, registry, overrides, name="after", cache=shared_cache)
    b, a = sims(before.results(matrices=True), "signed_cos"), sims(after.results(matrices=True), "signed_cos")
    assert len(a) and (a == -b).all()


def test_data_files_are_part_of_the_suite_hash_and_checked_by_validate(tmp_path, registry, cli_here):
    data = tmp_path / "train.parquet"
    data.write_bytes(b"one")
    text = TOY_SUITE.read_text().replace(
        '[data]\nname = "toy_blobs"',
        f'[data]\nname = "mnist"\ndata_files = {{train = "{data}", test = "{data}"}}',
    ).replace('name = "toy_zoo"', 'name = "mlp"').replace('name = "toy_jitter"\nscales = [0.5, 2.0]',
                                                            'name = "mnist_c"').replace("toy_gram_corr", "linear_cka")
    suite = tmp_path / "s.toml"
    suite.write_text(text)
    first = load_suite(suite, registry)
    assert first.data_files == {str(data): __import__("hashlib").sha256(b"one").hexdigest()}
    with pytest.raises(SuiteError, match="data.data_files.train: no such file"):
        check_data_files(load_suite(suite, registry, ["data.data_files.train=\"nope.parquet\""]))
    data.write_bytes(b"two")
    assert load_suite(suite, registry).sha256 != first.sha256
    suite.write_text(text.replace(str(data), str(tmp_path / "missing.parquet")))
    proc = cli_here("validate", str(suite))
    line = one_error_line(proc)
    assert proc.returncode == 2 and "data.data_files." in line and "no such file" in line


def test_validate_checks_data_is_reachable_without_downloading(tmp_path, cli_here):
    text = TOY_SUITE.read_text().replace('[data]\nname = "toy_blobs"', '[data]\nname = "mnist"\ncache_dir = "'
                                         + str(tmp_path / "hf") + '"')
    suite = tmp_path / "s.toml"
    suite.write_text(text)
    proc = cli_here("-p", str(TOY_PLUGINS), "validate", str(suite))
    assert proc.returncode == 2 and "data" in one_error_line(proc)


# -- issue 16 item 5: readable output on the plain-text path -------------------------------------


@pytest.mark.slow
def test_plain_progress_and_an_80_column_summary(tmp_path, cli):
    proc = cli("-p", str(TOY_PLUGINS), "run", str(TOY_SUITE), "--run-dir", str(tmp_path / "r"),
               "--cache-dir", str(tmp_path / "c"), env={"COLUMNS": "200"})
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.splitlines()
    assert any(line.strip().startswith("Similarity: 3/3 matrices, done in") for line in out), proc.stdout
    # each task's line from its start (the data's first, before anything slow), then its end
    assert out.index("  Representations: 0/3 probe sets") < out.index(next(
        line for line in out if line.startswith("  Representations: 3/3 probe sets, done in")))
    assert "  Loading data toy_blobs and checking the suite: 0/1 dataset" in out
    table = out[out.index(next(line for line in out if line.startswith("metric "))):]
    assert all(len(line) <= 80 for line in table if not line.startswith(("wrote ", "results: "))), out
    assert "…" not in proc.stdout.replace("…\n", "\n")  # nothing cut short (only the "Preparing…" lines end so)
    assert any(line.startswith("toy_gram_corr") for line in out)
    assert "\x1b[" not in proc.stdout  # no terminal escape codes in a log file


@pytest.mark.slow
def test_verbose_prints_what_plugins_log(tmp_path, cli):
    common = ["-p", str(TOY_PLUGINS), "run", str(TOY_SUITE), "--no-leaderboard", "--cache-dir", str(tmp_path / "c")]
    proc = cli(*common, "-v", "--run-dir", str(tmp_path / "a"))
    assert proc.returncode == 0 and "w8/s0: final loss" in proc.stdout, proc.stderr
    proc = cli(*common, "--run-dir", str(tmp_path / "b"), "--set", "run.seed=3")
    assert proc.returncode == 0 and "final loss" not in proc.stdout


@pytest.mark.slow
def test_interrupt_says_how_to_resume(tmp_path, cli):
    proc = cli("-p", str(TOY_PLUGINS), "run", str(TOY_SUITE), "-q", "--set", "metrics=[{name='toy_interrupt'}]",
               "--run-dir", str(tmp_path / "r"), "--cache-dir", str(tmp_path / "c"))
    assert proc.returncode == 130
    assert "To resume: simbench" in proc.stderr and "--run-dir" in proc.stderr and "Traceback" not in proc.stderr


def test_format_frame_fits_80_columns():
    frame = pd.DataFrame({
        "metric": ["a_metric_with_a_rather_long_name_indeed", "b"],
        "pearson_r": [0.123456, -0.5],
        "pearson_r_ci_low": [0.1, -0.7], "pearson_r_ci_high": [0.2, -0.3],
        **{f"extra_statistic_{i}": [1.5, 2.5] for i in range(12)},
        "status": ["ok", "FAILED: a very long\nmultiline error message that goes on"],
    })
    lines = format_frame(frame, 80)
    assert all(len(line) <= 80 for line in lines), lines
    assert lines[0].split()[:3] == ["metric", "pearson_r", "pearson_r_ci"] and lines[0].split()[-1] == "status"
    assert "[+0.100, +0.200]" in lines[2]
    # nothing cut: the long cells wrap at words inside their column, the left-out columns are all named
    text = " ".join(" ".join(lines).split())
    assert all(w in text.split() for w in ["FAILED:", "a", "very", "long", "multiline", "error", "message", "that"])
    assert "a_metric_with_a_rather_long_name_indeed" in text and "…" not in text
    assert "(more columns in the files: extra_statistic_0," in text and text.endswith("extra_statistic_11)")


def test_user_errors_from_runner_are_user_errors(tmp_path, toy_registry):
    # a metric label unknown to the suite is a user mistake, not a crash
    suite = load_suite(TOY_SUITE, toy_registry)
    runner = Runner(suite, toy_registry, tmp_path / "r", cache_dir=tmp_path / "c", quiet=True)
    with pytest.raises(UserError, match="unknown metric"):
        runner.metric_use("nope")


def test_a_full_cache_disk_is_refused_before_training(tmp_path, monkeypatch):
    import shutil

    from simbench.cache import TensorCache

    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(ResourceError, match="MB free on its disk") as info:
        TensorCache(tmp_path / "cache").check_writable()
    assert info.value.exit_code == 3
