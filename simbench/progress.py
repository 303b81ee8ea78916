"""The run's progress display: one line per stage with a count and a time-based ETA.

:class:`ProgressUI` is what the runner hands plugins as ``ctx.progress``: a
live ``rich`` display on a terminal (or a notebook with ipywidgets), plain
lines at most every :attr:`ProgressUI.PLAIN_EVERY` seconds otherwise (CI,
logs), nothing with ``quiet``.  :class:`Eta` is the arithmetic behind the
time column, separate so that it can be tested with a fake clock.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

__all__ = ["Eta", "ProgressUI"]


def _clock(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Eta:
    """The time left of one task, from its elapsed time: ``elapsed / done * (total - done)``.

    ``done`` and ``total`` count the task's own units of work (ensemble
    epochs, probe sets, matrices), so the estimate is the measured rate of
    this task, never a count of stages.  ``clock`` returns seconds (default
    :func:`time.monotonic`; tests pass a fake one).
    """

    def __init__(self, total: int | None, clock: Callable[[], float] = time.monotonic) -> None:
        self.total = total
        self.clock = clock
        self.started = clock()
        self.done = 0
        self.ended: float | None = None

    def advance(self, step: int = 1) -> None:
        """Count ``step`` more units done; the clock stops when the total is reached."""
        self.done += step
        if self.finished and self.ended is None:
            self.ended = self.clock()

    @property
    def finished(self) -> bool:
        return self.total is not None and self.done >= self.total

    @property
    def elapsed(self) -> float:
        """Seconds since the task started (until it finished, once it has)."""
        return (self.ended if self.ended is not None else self.clock()) - self.started

    def remaining(self) -> float | None:
        """Seconds left at the rate so far; ``None`` before the first unit is done or without a total."""
        if not self.total or self.done <= 0:
            return None
        if self.finished:
            return 0.0
        return self.elapsed / self.done * (self.total - self.done)

    def count_text(self, unit: str = "") -> str:
        """``"3/10 ensemble epochs"`` (``"3 units"`` without a total)."""
        of = f"/{self.total}" if self.total else ""
        return f"{self.done}{of}{' ' + unit if unit else ''}"

    def time_text(self) -> str:
        """``"0:00:12 ETA 0:00:30"`` while running (``ETA ?`` before the first unit), ``"done in 0:00:42"``."""
        if self.finished:
            return f"done in {_clock(self.elapsed)}"
        left = self.remaining()
        if not self.total:
            return _clock(self.elapsed)
        return f"{_clock(self.elapsed)} ETA {'?' if left is None else _clock(left)}"


def _rich_progress(console: Any, clock: Callable[[], float]) -> Any:
    """A rich ``Progress`` whose rows fit 80 columns without cutting a number.

    The counts and times are fixed-width columns that never wrap; the
    description is the one flexible column and wraps at word boundaries
    onto more lines when the terminal is narrow.  Counts, elapsed time and
    ETA come from each task's :class:`Eta` (a time-based estimate).
    """
    from rich import get_console
    from rich.progress import BarColumn, Progress, ProgressColumn, TextColumn
    from rich.table import Column
    from rich.text import Text

    console = console if console is not None else get_console()

    class CountColumn(ProgressColumn):
        def render(self, task: Any) -> Text:
            return Text(task.fields["eta"].count_text(task.fields["unit"]))

    class TimeColumn(ProgressColumn):
        max_refresh = 0.5

        def render(self, task: Any) -> Text:
            return Text(task.fields["eta"].time_text())

    return Progress(
        TextColumn("{task.description}", markup=False, style="bold",
                   table_column=Column(ratio=1, no_wrap=False, overflow="fold", min_width=16)),
        BarColumn(bar_width=8 if console.width < 100 else 20),
        CountColumn(table_column=Column(no_wrap=True)),
        TimeColumn(table_column=Column(no_wrap=True)),
        console=console,
        transient=False,
        expand=True,
        get_time=clock,
    )


def _live_capable(console: Any) -> bool:
    """Whether ``console`` shows a live display: a terminal, or a Jupyter notebook with ipywidgets (which
    rich draws it with; without them, plain lines)."""
    if console.is_terminal:
        return True
    if not getattr(console, "is_jupyter", False):
        return False
    import importlib.util

    return importlib.util.find_spec("ipywidgets") is not None


class ProgressUI:
    """Progress per task (what runs, units done, elapsed time, a time-based ETA); silent when ``quiet``.

    On a terminal (or in a Jupyter notebook): a live rich display whose rows
    fit the console (80 columns included) — descriptions wrap, numbers are
    never cut.  Otherwise (redirected to a file, a CI log): whole plain lines —
    when a task starts, then at most every ``PLAIN_EVERY`` seconds, then when
    it ends — so a log shows progress without carriage-return noise.
    """

    PLAIN_EVERY = 10.0

    def __init__(self, console: Any = None, quiet: bool = False, plain: bool | None = None,
                 stream: Any = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.quiet = quiet
        self._progress: Any = None
        self.console = console
        if plain is None:
            plain = not (_live_capable(console) if console is not None else sys.stdout.isatty())
        self.plain = plain
        self.stream = stream
        self.clock = clock

    def __enter__(self) -> ProgressUI:
        if not self.quiet and not self.plain:
            self._progress = _rich_progress(self.console, self.clock)
            self._progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)
            self._progress = None

    def _write(self, line: str) -> None:
        stream = self.stream or sys.stdout
        stream.write(line + "\n")
        stream.flush()

    def log(self, message: str) -> None:
        """One line of information (verbose training logs, warnings) above the bars."""
        if self.quiet:
            return
        if self._progress is not None:
            self._progress.console.print(message, markup=False, highlight=False)
        else:
            self._write(message)

    def __call__(self, description: str, total: int | None = None, unit: str = "") -> Callable[[int], None]:
        """Start a task of ``total`` units (``None``: unknown); returns ``advance(step=1)``."""
        if self.quiet or total == 0:  # nothing to do: no line
            return lambda advance=1: None
        eta = Eta(total, self.clock)
        if self._progress is not None:
            task = self._progress.add_task(description, total=total, unit=unit, eta=eta)
            progress = self._progress

            def advance(step: int = 1) -> None:
                eta.advance(step)
                progress.advance(task, step)

            return advance
        state = {"printed": eta.started}
        self._write(f"  {description}: {eta.count_text(unit)}")

        def advance_plain(step: int = 1) -> None:
            eta.advance(step)
            now = self.clock()
            if not eta.finished and now - state["printed"] < self.PLAIN_EVERY:
                return
            state["printed"] = now
            time_text = eta.time_text()
            if not eta.finished:
                time_text = time_text.replace(" ETA", " elapsed, ETA", 1) if eta.total else f"{time_text} elapsed"
            self._write(f"  {description}: {eta.count_text(unit)}, {time_text}")

        return advance_plain
