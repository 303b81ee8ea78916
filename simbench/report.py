"""The end of a run: its tables built once, the leaderboard files, and the summary in 80 columns.

:func:`run_and_report` is what ``simbench run`` and :func:`simbench.run`
both do (``simbench score`` and :func:`simbench.score` start at
:func:`report_run`): run the suite, build the finished run's tables once
(:func:`simbench.leaderboard.run_tables`), write the leaderboard files from
them, and hand them to :func:`summary_lines` (the terminal summary) and
:class:`simbench.api.Results`.  :func:`format_frame` lays out one table
without ever cutting a word.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .leaderboard import RunTables, render, run_tables
from .registry import Registry
from .results import RunDir

__all__ = ["Finished", "format_frame", "report_run", "run_and_report", "summary_lines"]


@dataclass
class Finished:
    """A finished run and what :func:`report_run` made of it."""

    run: RunDir
    registry: Registry | None
    #: the leaderboard files written (none without a leaderboard directory)
    written: list[Path] = field(default_factory=list)
    #: one line per benchmark report (tables, plots) that failed
    problems: list[str] = field(default_factory=list)
    _tables: RunTables | None = None

    @property
    def tables(self) -> RunTables:
        """The run's records and tables, built on first use and then kept."""
        if self._tables is None:
            self._tables = run_tables(self.run, self.registry)
            self.problems.extend(p for p in self._tables.problems if p not in self.problems)
        return self._tables


def report_run(run: RunDir, registry: Registry | None, leaderboard_dir: Path | None,
               say: Callable[[str], None] | None = None) -> Finished:
    """After a run: write its leaderboard into ``leaderboard_dir`` (None: no files) from its tables, built
    once; the tables stay on the result for the summary and the API (built there on first use when no
    leaderboard is written)."""
    done = Finished(run, registry)
    if leaderboard_dir is not None:
        if say is not None:
            say("  Writing the leaderboard (tables and plots)…")
        done._tables = run_tables(run, registry)
        done.written = render(run.path, Path(leaderboard_dir), registry, problems=done.problems, tables=done._tables)
    return done


def run_and_report(runner: Any, leaderboard_dir: Path | None, say: Callable[[str], None] | None = None) -> Finished:
    """``runner.run()`` (a :class:`simbench.runner.Runner`), then :func:`report_run`: the one path from a
    suite to its tables that ``simbench run`` and :func:`simbench.run` share."""
    result = runner.run()
    if say is not None:
        say(f"cells computed {runner.computed}, reused {runner.reused}; "
            f"cache hits {runner.cache.hits}, misses {runner.cache.misses}")
    return report_run(result, runner.registry, leaderboard_dir, say)



def _cell_text(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value != value:
            return "-"
        if value.is_integer() and abs(value) < 1e6:
            return str(int(value))
        return f"{value:+.3f}" if abs(value) < 100 else f"{value:.3g}"
    text = " ".join(str(value).split())  # newlines and tabs never break the layout
    return text


def _merge_intervals(frame: Any) -> Any:
    """Pairs of columns ``<stem>_low`` / ``<stem>_high`` become one column ``<stem>`` shown as ``[lo, hi]``."""
    frame = frame.copy()
    frame.columns = [str(c) for c in frame.columns]
    for low in [c for c in frame.columns if c.endswith("_low")]:
        stem = low[: -len("_low")]
        high = f"{stem}_high"
        if high not in frame.columns or stem in frame.columns:
            continue
        merged = [f"[{_cell_text(lo)}, {_cell_text(hi)}]" for lo, hi in zip(frame[low], frame[high], strict=True)]
        at = list(frame.columns).index(low)
        frame = frame.drop(columns=[low, high])
        frame.insert(at, stem, merged)
    return frame


def format_frame(frame: Any, width: int = 80, max_rows: int = 20, max_cell: int = 24) -> list[str]:
    """A DataFrame as plain-text lines no wider than ``width``, with no word ever cut.

    Columns are kept left to right while they fit (``metric`` first,
    ``status`` always kept at the end); the columns left out are named on a
    last line (they are in the leaderboard files).  A column is at most
    ``max_cell`` wide (wider only to hold its longest word) and a longer cell
    wraps at word boundaries onto more lines of its row; space left over
    widens the columns that wrap.  More than ``max_rows`` rows end with a line
    saying how many are left out.  Only a single word wider than ``width``
    itself is ever broken.
    """
    import textwrap

    frame = _merge_intervals(frame)
    columns = [str(c) for c in frame.columns]
    order = (["metric"] if "metric" in columns else []) + [c for c in columns if c not in ("metric", "status")]
    cells = {c: [_cell_text(v) for v in frame[c].tolist()[:max_rows]] for c in columns}
    gap = 2

    def natural(c: str) -> int:
        return max([len(c), *(len(v) for v in cells[c])])

    def longest_word(c: str) -> int:
        return max(len(w) for text in [c, *cells[c]] for w in (text.split() or [""]))

    def target(c: str, limit: int = max_cell) -> int:
        return min(width, max(longest_word(c), min(natural(c), limit)))

    # status: reserved at its longest word (at least 10 columns where it has that much text), widened below
    status_w = min(width, max(longest_word("status"), min(natural("status"), 10))) if "status" in columns else 0
    budget = width - (status_w + gap if status_w else 0)
    chosen: list[list[Any]] = []  # [column, width]
    used = 0
    for c in order:
        w = target(c)
        need = w + (gap if chosen else 0)
        if used + need > budget:
            if not chosen:  # the first column alone: as wide as there is room
                chosen.append([c, max(1, budget)])
                used = budget
            break
        used += need
        chosen.append([c, w])
    if status_w:
        chosen.append(["status", max(1, min(target("status", 18), width - used - (gap if used else 0)))])
        used += chosen[-1][1] + (gap if len(chosen) > 1 else 0)
    # room left over: widen, left to right, the columns whose cells would wrap
    for item in chosen:
        extra = min(width - used, natural(item[0]) - item[1])
        if extra > 0:
            item[1] += extra
            used += extra

    def numeric(c: str, v: str) -> bool:
        return bool(v) and (v[0] in "+-" or v[0].isdigit()) and c != "status"

    def row(values: list[str]) -> list[str]:
        wrapped = [textwrap.wrap(v, w, break_on_hyphens=False) or [""] for (_, w), v in zip(chosen, values, strict=True)]
        lines = []
        for i in range(max(len(parts) for parts in wrapped)):
            parts = []
            for (c, w), v, texts in zip(chosen, values, wrapped, strict=True):
                text = texts[i] if i < len(texts) else ""
                parts.append(text.rjust(w) if numeric(c, v) else text.ljust(w))
            lines.append((" " * gap).join(parts).rstrip())
        return lines

    out = row([c for c, _ in chosen])
    out.append((" " * gap).join("-" * w for _, w in chosen))
    n = len(frame)
    for i in range(min(n, max_rows)):
        out.extend(row([cells[c][i] for c, _ in chosen]))
    if n > max_rows:
        out.extend(_wrap(f"... {n - max_rows} more rows in the leaderboard files", width))
    dropped = [c for c in columns if c not in {c for c, _ in chosen}]
    if dropped:
        out.extend(_wrap(f"(more columns in the files: {', '.join(dropped)})", width))
    return out


def summary_lines(board: RunTables, width: int = 80, wrap: bool = True) -> list[str]:
    """The end-of-run summary: per benchmark its ``summary`` frame (default: the headline table, as
    ``board`` holds it: :func:`simbench.leaderboard.run_tables`), then failures.

    Tables are laid out in ``width`` columns (see :func:`format_frame`: no
    word cut).  With ``wrap`` (a terminal) every other line is wrapped at
    word boundaries to ``width`` too; without it (output into a file) those
    lines are written whole, one line each.
    """
    from .boundary import PluginCallFailed, plugin_call
    from .types import Benchmark

    def fit(text: str, indent: str = "") -> list[str]:
        return _wrap(text, width, indent) if wrap else [indent + text]

    frame = board.frame
    lines: list[str] = []
    for label in board.manifest.get("benchmarks", {}):
        records = board.records(label)
        cls: type[Benchmark] = board.classes.get(label, Benchmark)
        failed = records[(records["status"] == "failed") & (records["statistic"] == "evaluate")]
        title = f"{label}:"
        if len(failed):
            lines.extend(fit(title))
            lines.extend(fit(f"FAILED: {failed['error'].iloc[0]}", "  "))
            continue
        try:
            if getattr(cls.summary, "__func__", None) is Benchmark.summary.__func__:
                # the default: the headline table, under its own title
                if label in board.failed:
                    raise PluginCallFailed(f"benchmark {label!r} {board.failed[label]}")
                tables = board.benchmarks.get(label, [])
                short = tables[0].frame if tables else None
                if tables:
                    title = f"{label}: {tables[0].title}"
            else:
                short = plugin_call(f"benchmark {label!r} summary", cls.summary, records)
                if getattr(short, "attrs", {}).get("title"):
                    title = f"{label}: {short.attrs['title']}"
        except PluginCallFailed as exc:
            lines.extend(fit(title))
            lines.extend(fit(f"(no summary: {exc})", "  "))
            continue
        lines.extend(fit(title))
        if short is None or len(short) == 0:
            lines.append("  (no rows)")
            continue
        lines.extend(format_frame(short, width))
    failed = frame[(frame["status"] == "failed") & (frame["kind"] != "benchmark")]
    if len(failed):
        what = ", ".join(sorted({f"{r.metric or r.probe_set}" for r in failed.itertuples()}))
        lines.extend(fit(f"{len(failed)} failed measurement(s): {what}"))
    flags = frame[frame["kind"] == "flag"]
    for row in flags.drop_duplicates(["metric", "statistic"]).itertuples():
        if row.statistic in ("undefined", "ill_defined"):
            models = sorted(set(flags.loc[(flags["metric"] == row.metric) & (flags["statistic"] == row.statistic),
                                          "model_a"]))
            what = "is undefined" if row.statistic == "undefined" else "is ill-defined (a convention decides)"
            lines.extend(fit(f"flag: {row.metric} {what} for {len(models)} model(s): "
                             f"{', '.join(models[:5])}{' …' if len(models) > 5 else ''}"))
        else:
            lines.extend(fit(f"flag: {row.metric} gives a {row.statistic} matrix on {row.probe_set}"))
    return lines


def _wrap(text: str, width: int, indent: str = "") -> list[str]:
    """``text`` wrapped at word boundaries to ``width`` columns (continuation lines indented two
    more); a single word longer than the line is the only thing ever broken."""
    import textwrap

    return textwrap.wrap(text, width=width, initial_indent=indent, subsequent_indent=indent + "  ",
                         break_on_hyphens=False) or [indent.rstrip()]
