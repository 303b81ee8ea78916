"""Issue 28 items 2, 3, 6, 7, 12 and 13: files, the command line and publishing.

Each test names the issue item it covers and reproduces the attack the issue
describes.  Runs share one stage cache per module (the toy zoo trains once).
"""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path

import pytest

from simbench import leaderboard
from simbench.errors import UserError
from simbench.results import RunDir
from simbench.runner import Runner
from simbench.suite import load_suite
from tests.conftest import TOY_PLUGINS, TOY_SUITE


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory, shared_cache) -> Path:
    """One finished toy run (read-only for the tests: copy it before changing it)."""
    from simbench.registry import build_registry

    registry = build_registry(plugin_files=[str(TOY_PLUGINS)])
    path = tmp_path_factory.mktemp("runs") / "toy"
    Runner(load_suite(TOY_SUITE, registry), registry, path, cache_dir=shared_cache, quiet=True).run()
    return path


def run_toy(path, registry, overrides=(), cache=None, suite_file=TOY_SUITE, **kwargs):
    suite = load_suite(suite_file, registry, overrides)
    runner = Runner(suite, registry, path, cache_dir=cache, quiet=True, **kwargs)
    return runner, runner.run()


def one_error_line(proc):
    lines = [line for line in proc.stderr.splitlines() if line.strip() and not line.startswith("WARNING")]
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert len(lines) == 1, proc.stderr[-2000:]
    return lines[0]


def copy_run(src: Path, dest: Path, **suite_changes) -> Path:
    shutil.copytree(src, dest)
    manifest = json.loads((dest / "manifest.json").read_text())
    manifest["git_revision"] = manifest["simbench_revision"] = "0123abcd"  # a clean tree
    manifest["suite"].update(suite_changes)
    (dest / "manifest.json").write_text(json.dumps(manifest))
    return dest


# -- item 2: --fresh can never delete a user's files ------------------------------------------


def test_a_users_folder_is_never_adopted_as_a_run_directory(tmp_path, cli_here, shared_cache):
    precious = tmp_path / "precious"
    (precious / "chapter").mkdir(parents=True)
    (precious / "thesis.tex").write_text("years of work")
    (precious / "chapter" / "one.tex").write_text("more work")
    base = ["-p", str(TOY_PLUGINS), "run", str(TOY_SUITE), "-q", "--no-leaderboard", "--cache-dir", str(shared_cache),
            "--run-dir", str(precious)]
    proc = cli_here(*base)
    assert proc.returncode == 2 and "not a simbench run directory" in one_error_line(proc)
    assert sorted(p.name for p in precious.iterdir()) == ["chapter", "thesis.tex"]  # nothing written into it
    proc = cli_here(*base, "--fresh")
    assert proc.returncode == 2 and "not a simbench run directory" in one_error_line(proc)
    assert (precious / "thesis.tex").read_text() == "years of work"
    assert (precious / "chapter" / "one.tex").read_text() == "more work"


def test_fresh_deletes_only_what_simbench_wrote(tmp_path, toy_registry, shared_cache):
    run_dir = tmp_path / "run"
    run_toy(run_dir, toy_registry, cache=shared_cache)
    (run_dir / "notes.txt").write_text("mine")  # a user's file put into a run directory later
    (run_dir / "figures").mkdir()
    (run_dir / "figures" / "f.pdf").write_text("mine too")
    runner, run = run_toy(run_dir, toy_registry, cache=shared_cache, fresh=True)
    assert runner.reused == 0 and runner.computed > 0  # a fresh start: every cell recomputed
    assert (run_dir / "notes.txt").read_text() == "mine"
    assert (run_dir / "figures" / "f.pdf").read_text() == "mine too"
    assert (run_dir / "results.parquet").exists() and (run_dir / "manifest.json").exists()


# -- item 3: a full disk while caching keeps the work ------------------------------------------


def test_disk_full_while_caching_goes_on_uncached_with_one_warning(tmp_path, cli_here, monkeypatch, caplog):
    import safetensors.torch
    from safetensors import SafetensorError

    calls = []

    def full_disk(tensors, filename, metadata=None):
        calls.append(filename)
        Path(filename).write_bytes(b"partial")  # what a write cut short leaves behind
        raise SafetensorError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, '
                              'message: "No space left on device" })')

    monkeypatch.setattr(safetensors.torch, "save_file", full_disk)
    cache = tmp_path / "cache"
    proc = cli_here("-p", str(TOY_PLUGINS), "run", str(TOY_SUITE), "-q", "--no-leaderboard", "--cache-dir",
                    str(cache), "--run-dir", str(tmp_path / "run"))
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert calls  # the zoo (and more) tried to go to the cache
    # one warning (printed on stderr by logging's last-resort handler outside pytest), later failures counted
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "not written" in r.getMessage()]
    assert len(warnings) == 1 and "No space left on device" in warnings[0], warnings
    assert not [p for p in cache.rglob("*") if p.is_file() and not p.name.startswith(".")]  # nothing half-written
    frame = RunDir(tmp_path / "run").results()
    assert len(frame) and (frame[frame["kind"] == "similarity"]["status"] == "ok").all()


def test_disk_full_oserror_while_caching_is_not_a_traceback(tmp_path, monkeypatch):
    import errno

    import safetensors.torch
    import torch

    from simbench.cache import TensorCache

    def full_disk(tensors, filename, metadata=None):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", full_disk)
    cache = TensorCache(tmp_path / "c")
    cache.save("zoo/abc", {"w": torch.ones(2)})
    cache.save("zoo/def", {"w": torch.ones(2)})
    assert cache.save_failures == 2 and not cache.has("zoo/abc")


# -- item 13: the writer never follows a symlinked matrices/ out of the run directory ----------


def test_the_writer_refuses_a_symlinked_matrices_folder(tmp_path, toy_registry, shared_cache, cli_here):
    run_dir = tmp_path / "run"
    run_toy(run_dir, toy_registry, cache=shared_cache)
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.rmtree(run_dir / "matrices")
    (run_dir / "matrices").symlink_to(outside, target_is_directory=True)
    for cell in (run_dir / "cells").glob("*.json"):
        cell.unlink()  # every cell recomputed: its matrix would be written through the link
    proc = cli_here("-p", str(TOY_PLUGINS), "run", str(TOY_SUITE), "-q", "--no-leaderboard", "--cache-dir",
                    str(shared_cache), "--run-dir", str(run_dir))
    assert proc.returncode == 2 and "symbolic link" in one_error_line(proc)
    assert list(outside.iterdir()) == []


# -- item 6: a damaged or foreign results.parquet is one line for every reader -----------------


@pytest.mark.parametrize("damage", ["truncated", "foreign", "not parquet"])
def test_a_damaged_or_foreign_results_file_is_one_line(toy_run, tmp_path, cli_here, damage):
    import pandas as pd

    import simbench

    run = copy_run(toy_run, tmp_path / "runs" / "toy")
    results = run / "results.parquet"
    if damage == "truncated":
        results.write_bytes(results.read_bytes()[:300])
    elif damage == "foreign":
        pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}).to_parquet(results)
    else:
        results.write_text("suite,kind\nquick,benchmark\n")
    proc = cli_here("-p", str(TOY_PLUGINS), "leaderboard", str(run), "--out", str(tmp_path / "out"))
    line = one_error_line(proc)
    assert proc.returncode == 2 and str(results) in line and "results file" in line
    with pytest.raises(UserError, match="results file") as caught:
        simbench.load(run, plugins=[str(TOY_PLUGINS)])
    assert str(caught.value) in line  # the same check, the same words
    # publish lists the run as skipped with the same line and publishes the others
    copy_run(toy_run, tmp_path / "runs" / "good", name="good")
    proc = cli_here("-p", str(TOY_PLUGINS), "publish", str(tmp_path / "runs"), "--out", str(tmp_path / "pub"))
    assert proc.returncode == 0 and "published good" in proc.stdout, proc.stderr[-2000:]
    assert f"skipped {run}: {caught.value}" in proc.stderr
