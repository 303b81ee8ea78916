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

from simbench import leaderboard, publishing
from simbench.errors import UserError
from simbench.results import RunDir
from simbench.runner import Runner
from simbench.suite import load_suite
from tests.conftest import TOY_PLUGINS, TOY_SUITE, one_error_line


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


# -- item 7: a suite that merely carries a shipped name is never published under it ----------


def quick_impostor(tmp_path: Path) -> Path:
    """``$SIMBENCH_SUITES_DIR/quick.toml``: the toy suite calling itself ``quick``."""
    folder = tmp_path / "my_suites"
    folder.mkdir()
    (folder / "quick.toml").write_text(TOY_SUITE.read_text().replace('name = "toy"', 'name = "quick"'))
    return folder


def test_run_says_which_file_a_suite_name_resolved_to(tmp_path, cli_here, shared_cache):
    folder = quick_impostor(tmp_path)
    proc = cli_here("-p", str(TOY_PLUGINS), "run", "quick", "--no-leaderboard", "--cache-dir", str(shared_cache),
                    "--run-dir", str(tmp_path / "run"), env={"SIMBENCH_SUITES_DIR": str(folder)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"running suite quick from {folder / 'quick.toml'}" in proc.stdout
    warning = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and "not the shipped" in warning[0] and "suites/quick.toml" in warning[0]
    # publish refuses the official name for it, in one line, and publishes nothing in its place
    runs = tmp_path / "runs"
    copy_run(tmp_path / "run", runs / "quick")
    out = tmp_path / "out"
    proc = cli_here("-p", str(TOY_PLUGINS), "publish", str(runs), "--out", str(out),
                    env={"SIMBENCH_SUITES_DIR": str(folder)})
    assert proc.returncode == 2 and "not the shipped suites/quick.toml" in one_error_line(proc)
    assert not (out / "quick.md").exists()
    # under another name it is published
    proc = cli_here("-p", str(TOY_PLUGINS), "publish", str(runs), "--out", str(out), "--rename", "quick=my-quick",
                    env={"SIMBENCH_SUITES_DIR": str(folder)})
    assert proc.returncode == 0 and (out / "my-quick.md").exists() and not (out / "quick.md").exists()


def test_a_shipped_name_needs_the_shipped_file(toy_run, tmp_path, toy_registry):
    runs = tmp_path / "runs"
    copy_run(toy_run, runs / "impostor", name="quick")  # any file saying name = "quick"
    copy_run(toy_run, runs / "toy")
    report = publishing.publish([runs], tmp_path / "out", toy_registry, suites={},
                                 shipped={"quick": Path(__file__).parents[1] / "suites" / "quick.toml"})
    assert set(report.published) == {"toy"}
    assert any("not the shipped suites/quick.toml" in why for _, why in report.skipped)
    # a run made from the very file that is shipped under the name keeps it (content compared, not the path)
    shipped_copy = tmp_path / "shipped" / "toy.toml"
    shipped_copy.parent.mkdir()
    shipped_copy.write_bytes(TOY_SUITE.read_bytes())
    report = publishing.publish([runs / "toy"], tmp_path / "out2", toy_registry, shipped={"toy": shipped_copy})
    assert set(report.published) == {"toy"}
    shipped_copy.write_text(TOY_SUITE.read_text() + "\n# edited since\n")
    with pytest.raises(UserError, match="not the shipped"):
        publishing.publish([runs / "toy"], tmp_path / "out3", toy_registry, shipped={"toy": shipped_copy})


def test_the_suite_hash_is_recomputed_with_data_files_in_the_loaders_order(tmp_path, toy_registry, monkeypatch):
    # two patterns whose files sort the other way round (train* listed first, test* sorts first), as in
    # calibration-mnist: the manifest stores them sorted, the loader hashed them pattern by pattern
    data = tmp_path / "data"
    data.mkdir()
    for name in ("train-0.bin", "train-1.bin", "test-0.bin"):
        (data / name).write_bytes(name.encode())
    monkeypatch.setenv("SB_DATA", str(data))
    suite_file = tmp_path / "s.toml"
    suite_file.write_text(TOY_SUITE.read_text().replace(
        'name = "toy_blobs"', 'name = "mnist"\ndata_files = {train = "$SB_DATA/train*.bin", test = "$SB_DATA/test*.bin"}'))
    suite = load_suite(suite_file, toy_registry, ["probes.n=30"])
    manifest = {"suite": {"name": suite.name, "sha256": suite.sha256, "overrides": ["probes.n=30"],
                          "data_files": dict(sorted(suite.data_files.items()))}}
    assert list(manifest["suite"]["data_files"]) != list(suite.data_files)  # the order really differs
    monkeypatch.delenv("SB_DATA")  # publishing need not have the running shell's environment
    assert publishing.suite_gives_run(suite_file, manifest)
    assert not publishing.suite_gives_run(suite_file, {"suite": {**manifest["suite"], "overrides": ["probes.n=31"]}})


# -- item 12: publishing names, plots, markdown and CSV ----------------------------------------


@pytest.mark.parametrize("target", ["README", "readme", "Index", "quick+1a2b3c4d", "toy+00000000"])
def test_a_rename_cannot_take_the_index_or_a_hash_name(toy_run, tmp_path, cli_here, target):
    runs = tmp_path / "runs"
    copy_run(toy_run, runs / "toy")
    out = tmp_path / "out"
    proc = cli_here("-p", str(TOY_PLUGINS), "publish", str(runs), "--out", str(out), "--rename", f"toy={target}")
    assert proc.returncode == 2 and f"--rename toy={target}" in one_error_line(proc)
    assert not out.exists()


def test_a_run_named_like_the_index_or_with_a_plus_cannot_replace_or_pose(toy_run, tmp_path, toy_registry):
    runs = tmp_path / "runs"
    copy_run(toy_run, runs / "readme", name="README")
    copy_run(toy_run, runs / "forged", name="quick+1a2b3c4d")  # a name the suite loader never accepts
    copy_run(toy_run, runs / "toy")
    out = tmp_path / "out"
    report = publishing.publish([runs], out, toy_registry)
    assert set(report.published) == {"toy", "quick_1a2b3c4d"}  # never quick+<hash>: it did not come from quick
    assert any("reserved" in why for _, why in report.skipped)
    assert (out / "README.md").read_text().startswith("# Leaderboards")
    assert not list(out.glob("quick+*"))


def test_an_override_runs_hash_must_follow_from_its_overrides(toy_run, tmp_path, toy_registry, shared_cache):
    _, real = run_toy(tmp_path / "runs" / "small", toy_registry, ["probes.n=30"], cache=shared_cache)
    runs = tmp_path / "runs"
    manifest = real.read_manifest()
    name = f"toy+{manifest['suite']['sha256'][:8]}"
    # forged: the override run of another hash renamed by editing its manifest
    forged = copy_run(real.path, tmp_path / "forged" / "f", sha256="1a2b3c4d" + "0" * 56)
    forged_suite = json.loads((forged / "manifest.json").read_text())["suite"]
    forged_suite["path"] = str(TOY_SUITE)
    manifest_f = json.loads((forged / "manifest.json").read_text())
    manifest_f["suite"] = forged_suite
    (forged / "manifest.json").write_text(json.dumps(manifest_f))
    report = publishing.publish([runs, tmp_path / "forged"], tmp_path / "out", toy_registry, allow_dirty=True)
    assert name in report.published and "toy+1a2b3c4d" not in report.published
    assert any("does not follow from its suite file and --set overrides" in why for _, why in report.skipped)
    # the suite file gone: the run's own cells must carry the manifest's hash
    manifest_f["suite"]["path"] = str(tmp_path / "gone.toml")
    (forged / "manifest.json").write_text(json.dumps(manifest_f))
    with pytest.raises(UserError, match="does not follow"):
        publishing.publish([tmp_path / "forged"], tmp_path / "out2", toy_registry, allow_dirty=True)


def test_names_differing_only_in_case_are_refused(toy_run, tmp_path, toy_registry):
    runs = tmp_path / "runs"
    copy_run(toy_run, runs / "a", name="Toy")
    copy_run(toy_run, runs / "b")
    with pytest.raises(UserError, match="differ only in case"):
        publishing.publish([runs], tmp_path / "out", toy_registry)
    assert not (tmp_path / "out").exists()
    with pytest.raises(UserError, match="differ only in case"):
        publishing.publish([runs], tmp_path / "out", toy_registry, rename={"Toy": "TOY"})
    report = publishing.publish([runs], tmp_path / "out", toy_registry, rename={"Toy": "toy-upper"})
    assert set(report.published) == {"toy", "toy-upper"}


def test_leaderboard_out_replaces_only_its_own_plots(toy_run, tmp_path, cli_here):
    out = tmp_path / "out"
    plots = out / "toy_plots"
    plots.mkdir(parents=True)
    (plots / "mine.png").write_bytes(b"a user's figure")
    (plots / "notes.txt").write_text("mine")
    proc = cli_here("-p", str(TOY_PLUGINS), "leaderboard", str(toy_run), "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    board = json.loads((out / "toy.json").read_text())
    assert board["plots"]
    # an earlier render's plot that this one does not draw is stale: removed; the user's files stay
    (plots / "old_figure.png").write_bytes(b"stale")
    board["plots"].append("toy_plots/old_figure.png")
    (out / "toy.json").write_text(json.dumps(board))
    proc = cli_here("-p", str(TOY_PLUGINS), "leaderboard", str(toy_run), "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not (plots / "old_figure.png").exists()
    assert (plots / "mine.png").read_bytes() == b"a user's figure" and (plots / "notes.txt").read_text() == "mine"
    assert all((out / p).exists() for p in json.loads((out / "toy.json").read_text())["plots"])


EVIL_LABEL = '=HYPERLINK("http://x","[x](javascript:alert(1))")'


def test_user_text_is_inert_in_markdown_and_csv(tmp_path, toy_registry, shared_cache):
    import pandas as pd
    from markdown_it import MarkdownIt

    suite_file = tmp_path / "evil.toml"
    suite_file.write_text(TOY_SUITE.read_text().replace(
        'name = "toy_gram_corr"', f'name = "toy_gram_corr"\nlabel = {json.dumps(EVIL_LABEL)}').replace(
        'description = "Core test suite on toy plugins"',
        'description = "see [here](javascript:alert(1)) and ![p](https://evil.example/pixel.png) [r]: http://e"'))
    _, run = run_toy(tmp_path / "run", toy_registry, cache=shared_cache, suite_file=suite_file)
    runs = tmp_path / "runs"
    copy_run(run.path, runs / "toy")
    out = tmp_path / "out"
    publishing.publish([runs], out, toy_registry)
    md = MarkdownIt("commonmark").enable("table")
    for name in ("toy.md", "README.md"):
        text = (out / name).read_text()
        rendered = md.render(text)
        assert "javascript:" not in "".join(t.attrGet("href") or "" for t in _links(md, text)), name
        assert "<img" not in rendered or "evil.example" not in rendered.split("<img", 1)[1], name
        assert 'href="javascript' not in rendered and 'src="https://evil' not in rendered, name
    table = pd.read_csv(out / "toy.csv")
    labels = [v for v in table["metric"]] if "metric" in table else list(table.iloc[:, 0])
    assert "'" + EVIL_LABEL in labels and EVIL_LABEL not in labels  # neutralised, and still readable
    numeric = [c for c in table.columns if table[c].dtype.kind == "f"]
    assert numeric  # numbers stay numbers
    assert leaderboard.csv_cell("-0.25") == "-0.25" and leaderboard.csv_cell(-1.0) == -1.0
    assert leaderboard.csv_cell("@SUM(A1)") == "'@SUM(A1)" and leaderboard.csv_cell("+cmd") == "'+cmd"


def _links(md, text):
    out = []
    for token in md.parse(text):
        for child in token.children or []:
            if child.type in ("link_open", "image"):
                out.append(child)
    return out


# -- item 13: smaller holes ---------------------------------------------------------------------


def test_the_resume_command_after_ctrl_c_is_shell_quoted(tmp_path, cli_here, monkeypatch):
    from simbench.runner import Runner as RealRunner

    def interrupted(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(RealRunner, "run", interrupted)
    run_dir = tmp_path / "my run $(touch pwned); echo"
    args = ["-p", str(TOY_PLUGINS), "run", str(TOY_SUITE), "-q", "--fresh", "--no-leaderboard", "--run-dir",
            str(run_dir), "--set", "probes.n=30"]
    proc = cli_here(*args)
    assert proc.returncode == 130
    line = next(line for line in proc.stderr.splitlines() if "To resume: simbench " in line)
    resume = shlex.split(line.split("To resume: simbench ", 1)[1])
    assert resume == [a for a in args if a != "--fresh"]  # pasted into a shell: exactly these words, nothing run


@pytest.mark.parametrize("name, why", [("my_metric\n", "snake_case"), ("none", "keyword"), ("true", "keyword"),
                                       ("false", "keyword"), ("class", "keyword"), ("linear_cka", "already registered")])
def test_new_metric_refuses_names_that_would_break(tmp_path, cli_here, name, why):
    proc = cli_here("new", "metric", name, "--out", str(tmp_path))
    assert proc.returncode == 2 and why in one_error_line(proc)
    assert list(tmp_path.iterdir()) == []


def test_new_metric_package_compiles(tmp_path, cli_here):
    proc = cli_here("new", "metric", "my_metric", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    for path in (tmp_path / "simbench-my-metric").rglob("*.py"):
        compile(path.read_text(), str(path), "exec")


def test_run_threads_is_bounded(cli_here):
    proc = cli_here("-p", str(TOY_PLUGINS), "validate", str(TOY_SUITE), "--no-data", "--set", "run.threads=100000")
    line = one_error_line(proc)
    assert proc.returncode == 2 and "run.threads" in line and "at most 1024" in line
    proc = cli_here("-p", str(TOY_PLUGINS), "validate", str(TOY_SUITE), "--no-data", "--set", "run.threads=8")
    assert proc.returncode == 0, proc.stderr


def test_block_plugins_blocks_a_plugin_file_by_its_stem(tmp_path, cli_here, caplog):
    raising = tmp_path / "raising.py"
    raising.write_text("import simbench\n@simbench.hookimpl\ndef register_metrics(register):\n"
                       "    raise RuntimeError('cannot register today')\n")
    proc = cli_here("-p", str(raising), "-p", str(TOY_PLUGINS), "list", "metrics")
    assert proc.returncode == 0 and "Set SIMBENCH_BLOCK_PLUGINS=raising to stop loading it" in caplog.text
    caplog.clear()
    # the hint's name blocks the file: not imported, not registered, no failure reported
    proc = cli_here("-p", str(raising), "-p", str(TOY_PLUGINS), "list", "metrics", "--json",
                    env={"SIMBENCH_BLOCK_PLUGINS": "raising,toy_plugins"})
    assert proc.returncode == 0, proc.stderr
    names = {m["name"] for m in json.loads(proc.stdout)}
    assert "toy_gram_corr" not in names and "linear_cka" in names
    assert "cannot register today" not in proc.stderr + caplog.text
