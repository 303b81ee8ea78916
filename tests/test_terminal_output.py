"""Terminal output that never cuts a word (issue 25 item 4): the live progress display, its time-based ETA,
the run summary, `list`, and the Python API's progress."""

from __future__ import annotations

import io
import re

import pandas as pd
import pytest

from simbench.leaderboard import RunTables, run_tables
from simbench.progress import Eta, ProgressUI
from simbench.report import format_frame, summary_lines
from tests.conftest import ROOT, TOY_PLUGINS, TOY_SUITE

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")
LONG_GROUP = "Training mlp 784-32-32-32-32-3 standard (3 seeds, 2 checkpoints)"


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def screen_lines(text: str) -> list[str]:
    """What a terminal shows, line by line: escape codes removed, split at newlines and carriage returns."""
    clean = ANSI.sub("", text)
    return [part for line in clean.split("\n") for part in line.split("\r")]


def words(text: str) -> str:
    """``text`` with every run of whitespace (line breaks and indents included) as one space."""
    return " ".join(text.split())


# -- the ETA: the task's elapsed time over its units of work ---------------------------------------------


def test_eta_is_the_elapsed_time_rate_over_units_done():
    clock = FakeClock()
    eta = Eta(10, clock)
    assert eta.remaining() is None and eta.time_text() == "0:00:00 ETA ?"  # no rate before the first unit
    clock.now += 5
    eta.advance(1)
    assert eta.remaining() == pytest.approx(45.0)  # 5 s per unit, 9 left
    clock.now += 15  # a slower stretch: 20 s for 4 units -> 5 s/unit over the whole elapsed time
    eta.advance(3)
    assert eta.remaining() == pytest.approx(30.0) and eta.elapsed == pytest.approx(20.0)
    assert eta.count_text("ensemble epochs") == "4/10 ensemble epochs"
    assert eta.time_text() == "0:00:20 ETA 0:00:30"
    clock.now += 40
    eta.advance(6)
    assert eta.finished and eta.remaining() == 0.0
    clock.now += 100  # the clock stops at the end
    assert eta.elapsed == pytest.approx(60.0) and eta.time_text() == "done in 0:01:00"
    unknown = Eta(None, clock)
    unknown.advance(3)
    assert unknown.remaining() is None and unknown.count_text("items") == "3 items"


def test_plain_progress_lines_carry_the_time_based_eta():
    clock = FakeClock()
    out = io.StringIO()
    with ProgressUI(plain=True, stream=out, clock=clock) as ui:
        advance = ui(LONG_GROUP, 10, "ensemble epochs")
        clock.now += 4
        advance(1)  # under PLAIN_EVERY seconds since the last line: no line
        clock.now += 8
        advance(1)
        clock.now += 48
        advance(8)
        ui("Nothing to do", 0, "matrices")  # an empty task: no line at all
    lines = out.getvalue().splitlines()
    assert lines == [
        f"  {LONG_GROUP}: 0/10 ensemble epochs",  # from the start: whole, never cut
        f"  {LONG_GROUP}: 2/10 ensemble epochs, 0:00:12 elapsed, ETA 0:00:48",  # 6 s/unit x 8 left
        f"  {LONG_GROUP}: 10/10 ensemble epochs, done in 0:01:00",
    ]


def test_quiet_progress_prints_nothing():
    out = io.StringIO()
    with ProgressUI(quiet=True, plain=True, stream=out) as ui:
        ui("Similarity", 3, "matrices")(3)
        ui.log("a line")
    assert out.getvalue() == ""


def test_live_display_fits_80_columns_without_cutting_numbers_or_words():
    from rich.console import Console

    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=80, color_system=None)
    clock = FakeClock()
    with ProgressUI(console, clock=clock) as ui:
        assert not ui.plain
        ui("Loading data digits28 and checking the suite", 1, "dataset")(1)
        train = ui(LONG_GROUP, 150, "ensemble epochs")
        clock.now += 13
        train(15)
        ui("Similarity", 1200, "matrices")
        ui._progress.refresh()
    lines = screen_lines(buf.getvalue())
    assert max(len(line) for line in lines) <= 80, [line for line in lines if len(line) > 80]
    shown = "\n".join(lines)
    assert "15/150 ensemble epochs" in shown and "0/1200 matrices" in shown  # counts whole, no "15/…"
    assert "0:00:13 ETA 0:01:57" in shown  # elapsed and ETA whole: 13 s for 15 units, 135 left
    assert "…" not in shown
    final = shown[shown.rindex("Loading data"):]  # the last frame drawn
    assert all(word in final.split() for word in LONG_GROUP.split())  # the label wraps at words, each whole


# -- the run summary ----------------------------------------------------------------------------------------


def test_format_frame_wraps_long_cells_at_words():
    frame = pd.DataFrame({
        "metric": ["linear_cka", "procrustes"],
        "r": [0.4, 0.3],
        "verdict": ["best: procrustes (separated from every other metric by the bootstrap)", "best set"],
        "status": ["ok", "FAILED: isolated cell ran out of memory after 120 s, see the manifest"],
    })
    lines = format_frame(frame, 80)
    assert all(len(line) <= 80 for line in lines), lines
    text = words("\n".join(lines))
    for cell in [*frame["verdict"], *frame["status"]]:
        assert words(cell) in text or all(w in text.split() for w in cell.split()), cell
    assert "…" not in "\n".join(lines)


LONG_ERROR = ("benchmark 'functional_agreement' raised ValueError: the agreement matrix of probe set "
              "mnist_c/shot_noise has 3 models with no finite entries, so no pair of models can be compared")


def failing_run() -> RunTables:
    rows = [
        {"kind": "benchmark", "benchmark": "functional_agreement", "statistic": "evaluate", "status": "failed",
         "error": LONG_ERROR, "metric": "", "probe_set": "", "model_a": ""},
        {"kind": "similarity", "benchmark": "", "statistic": "matrix", "status": "failed", "error": "boom",
         "metric": "a_metric_with_a_long_name", "probe_set": "clean", "model_a": ""},
    ]
    # what summary_lines reads of a finished run: its manifest and records (no benchmark tables: it failed)
    return RunTables({"benchmarks": {"functional_agreement": {"name": "functional_agreement"}}}, pd.DataFrame(rows))


def test_summary_wraps_at_words_on_a_terminal_and_writes_whole_lines_into_a_file():
    run = failing_run()
    on_terminal = summary_lines(run, 80, wrap=True)
    assert len(on_terminal) > 3 and all(len(line) <= 80 for line in on_terminal), on_terminal
    assert f"FAILED: {words(LONG_ERROR)}" in words("\n".join(on_terminal))  # every word, whole, in order
    into_file = summary_lines(run, 80, wrap=False)
    assert f"  FAILED: {LONG_ERROR}" in into_file  # one whole line
    assert "1 failed measurement(s): a_metric_with_a_long_name" in into_file


# -- the command line at 80 columns --------------------------------------------------------------------------

TERMINAL_80 = {"TTY_COMPATIBLE": "1", "COLUMNS": "80"}  # rich: a terminal 80 columns wide


def test_list_suites_wraps_whole_descriptions_at_80_columns(tmp_path, cli_here):
    from simbench.api import list_suites

    descriptions = [r["description"] for r in list_suites()]
    proc = cli_here("list", "suites", cwd=tmp_path, env=TERMINAL_80)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80, [line for line in lines if len(line) > 80]
    shown = words(proc.stdout)
    for description in descriptions:
        assert words(description) in shown, description  # all of it, no word cut, no "…"
    assert "…" not in proc.stdout
    # into a file: one whole line per suite
    into_file = cli_here("list", "suites", cwd=tmp_path).stdout.splitlines()
    for description in descriptions:
        assert any(line.endswith(" " + description) for line in into_file), description


def test_list_metrics_wraps_whole_descriptions_at_80_columns(cli_here):
    from simbench.cli import _describe
    from simbench.registry import build_registry

    described = [_describe(e) for e in build_registry().entries("metric")]
    assert described
    proc = cli_here("list", "metrics", env=TERMINAL_80)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80, [line for line in lines if len(line) > 80]
    shown = words(proc.stdout)
    for item in described:
        assert words(f"{item['name']} [{item['kind']},") in shown
        assert words(f"{item['description']} (from {item['plugin']})") in shown, item["name"]
    into_file = cli_here("list", "metrics").stdout.splitlines()
    for item in described:
        assert any(line.startswith(f"  {item['name']} ") and line.endswith(f"{item['description']}  (from "
                                                                           f"{item['plugin']})")
                   for line in into_file), item["name"]


@pytest.mark.slow
def test_run_quick_at_80_columns_and_into_a_file(tmp_path, cli_here):
    """The shipped `quick` suite on an 80-column terminal: the live display and the summary fit, each training
    group is named, no word or number is cut; then the same run into a file: whole lines."""
    from simbench.registry import build_registry
    from simbench.results import RunDir

    common = ["run", "quick", "--run-dir", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "cache"),
              "--no-leaderboard"]
    proc = cli_here(*common, env=TERMINAL_80)
    assert proc.returncode == 0, proc.stderr
    lines = screen_lines(proc.stdout)
    assert max(len(line) for line in lines) <= 80, [line for line in lines if len(line) > 80]
    shown = words("\n".join(lines))
    tokens = set(shown.split())
    for group in ("Training mlp 784-32-32-32-32-3 standard (3 seeds, 2 checkpoints)",
                  "Training mlp 784-8-3 standard (3 seeds, 2 checkpoints)"):
        assert all(word in tokens for word in group.split()), group  # named, wrapped at words
    assert "10/10 ensemble epochs" in shown and "8/8 matrices" in shown and "Loading data digits28" in shown
    assert not re.search(r"\d…|…\d|:…", shown)  # no number cut short ("15/…", "0:0…")
    summary = summary_lines(run_tables(RunDir(tmp_path / "run", None), build_registry()), 80, wrap=True)
    assert all(len(line) <= 80 for line in summary)
    for line in summary:
        assert words(line) in shown  # the summary, as printed, every word whole

    again = cli_here(*common, env={"COLUMNS": "80"})  # into a file (not a terminal): resumes, prints again
    assert again.returncode == 0, again.stderr
    out = again.stdout.splitlines()
    assert "\x1b[" not in again.stdout
    whole = summary_lines(run_tables(RunDir(tmp_path / "run", None), build_registry()), 80, wrap=False)
    assert all(line in out for line in whole)
    assert any(line.startswith("  Similarity: 8/8 matrices, done in") for line in out)


# -- the Python API --------------------------------------------------------------------------------------


@pytest.mark.slow
def test_api_run_shows_progress_unless_quiet(tmp_path, capfd, monkeypatch):
    import json

    from simbench_plugins.benchmarks.functional_agreement import FunctionalAgreement

    import simbench

    built = []  # each call of the benchmark's tables(): the end of a run builds them once (issue 23 item 5)
    tables = FunctionalAgreement.tables.__func__
    monkeypatch.setattr(FunctionalAgreement, "tables",
                        classmethod(lambda cls, records: built.append(len(records)) or tables(cls, records)))
    common = {"plugins": [str(TOY_PLUGINS)], "cache_dir": tmp_path / "cache"}
    res = simbench.run(str(TOY_SUITE), run_dir=tmp_path / "a", **common)
    out = capfd.readouterr().out
    assert out.splitlines()[0].startswith("simbench: loading plugins and suite")  # before anything slow
    assert "Preparing the run" in out and "  Loading data toy_blobs and checking the suite: 0/1 dataset" in out
    assert "Similarity: 3/3 matrices, done in" in out and "Writing the leaderboard" in out
    assert len(built) == 1 and built[0] > 0  # the leaderboard files and the Results share one build
    board = json.loads((tmp_path / "a" / "leaderboard" / "toy.json").read_text())
    assert [t["key"] for t in board["tables"]] == list(res.tables) and "ranking" in res.tables
    simbench.run(str(TOY_SUITE), run_dir=tmp_path / "b", quiet=True, **common)
    quiet = capfd.readouterr()
    assert quiet.out == "" and "Similarity" not in quiet.err


def test_api_run_keeps_its_quiet_parameter():
    import inspect

    import simbench

    assert inspect.signature(simbench.run).parameters["quiet"].default is False
    assert (ROOT / "docs" / "api.md").read_text().count("quiet=False") >= 1
