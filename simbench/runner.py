"""Executes a suite stage by stage (see docs/architecture.md).

    data -> zoo (+ model perturbations) -> probe sets -> representations
         -> similarity matrices (metric x probe set) -> agreement matrices
         -> benchmarks -> results store

Every stage is a pure function of explicit inputs (a dataset config, a zoo
config, a probe-set key, a metric config) plus a seed derived from the suite
seed and the stage's name, so results do not depend on which stages were
cached.  Tensor outputs are cached under content hashes in the cache
directory; finished cells (one similarity matrix, one agreement matrix, one
benchmark evaluation) are written to the run directory, which is what makes
a killed run resume.

Plugin code is called only through :func:`plugin_call` (or, for metric
cells, :func:`call_with_timeout` or a worker process,
:func:`simbench.isolation.call_in_process`, per ``[run] isolation``): anything
it raises — ``SystemExit`` and a metric's ``UserError`` included,
``KeyboardInterrupt`` excepted — becomes a one-line failure of that plugin's
stage, recorded in the run, and the rest of the run goes on where it can.
Metrics and the benchmarks' reads get copies of shared tensors; whatever else
a plugin is handed (the data, probe sets, models) is checked against one
restoring copy (:class:`Restorer`) after the call, put back if changed, and
the plugin fails, so nothing it did in place reaches a later measurement.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .cache import TensorCache, class_code_hash, content_hash
from .errors import MeasurementFailed, StageFailed, SuiteError, UserError, one_line
from . import isolation, provenance
from .isolation import call_in_process, unavailable
from .plan import Executor, PlanTask, Stage, TaskResult, WorkerJob
from .registry import Registry
from .results import MATRIX_STATISTIC, RunDir, check_fresh_target, matrix_row, record_row
from .seeding import derive_seed
from .suite import PluginUse, Suite
from .types import (
    WEIGHTS_PROBE_SET,
    DataSplits,
    MatrixRequest,
    ModelSpec,
    PerturbContext,
    Perturbation,
    ProbeSet,
    Record,
    RunContext,
    Source,
)

log = logging.getLogger("simbench.runner")

CACHE_ENV = "SIMBENCH_CACHE_DIR"


def default_cache_dir() -> Path:
    """The stage cache when neither ``--cache-dir``, ``run.cache_dir`` nor ``$SIMBENCH_CACHE_DIR`` names one:
    the user cache directory (``platformdirs.user_cache_dir("simbench")``), so that every working directory
    reuses the zoos trained in any other."""
    import platformdirs

    return Path(platformdirs.user_cache_dir("simbench"))


INFER_BATCH = 2048
#: relative tolerance of the symmetry check (batched float32 GEMMs are not bit-symmetric)
SYMMETRY_RTOL = 1e-4
#: how far outside its declared range a value may fall (float rounding), relative to the range's scale
RANGE_RTOL = 1e-4


def seed_everything(seed: int) -> None:
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(derive_seed(seed, "numpy-legacy-global", bits=32))  # the legacy API takes 32 bits
    torch.manual_seed(seed)


def set_threads(threads: int) -> None:
    """Pin torch's intra-op (and, once per process, inter-op) thread pools.

    Default 1 (``[run] threads``): parallel runs and our metric worker thread
    then never oversubscribe the cores.
    """
    import torch

    torch.set_num_threads(max(1, int(threads)))
    try:
        torch.set_num_interop_threads(max(1, int(threads)))
    except RuntimeError:  # already set, or inter-op work already started in this process
        pass


def resolve_device(requested: str) -> str:
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise UserError("run.device = 'cuda' but no CUDA device is available; use 'auto' or 'cpu'")
    if requested.startswith("cuda:"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if int(requested[5:]) >= count:
            raise UserError(f"run.device = {requested!r} but this machine has {count} CUDA device(s); "
                            "use 'auto', 'cuda' or a smaller index")
    return requested


def describe_device(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        index = int(device[5:]) if device.startswith("cuda:") else torch.cuda.current_device()
        return f"{device} ({torch.cuda.get_device_name(index)})"
    return f"cpu ({platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads)"


def _plugin_key(use: PluginUse) -> dict[str, Any]:
    """What a plugin's cached products depend on: its name, parameters and the hash of its *code*.

    The hand-bumped ``version`` stays in the key, but editing the plugin's
    source (or installing another version of its distribution) is enough to
    invalidate its cache entries.
    """
    return {"name": use.name, "version": use.obj.version, "params": use.params, "code": class_code_hash(type(use.obj))}


# ----------------------------------------------------------------------------
# Plugin boundaries: one-line failures, time limits, in-place modification
# ----------------------------------------------------------------------------


class PluginCallFailed(Exception):
    """A plugin call raised (anything but KeyboardInterrupt); ``str`` is one line."""


class CellTimeout(Exception):
    """Injected into a metric worker thread whose cell ran past ``run.cell_timeout``."""


def plugin_call(what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call plugin code; any ``BaseException`` but ``KeyboardInterrupt`` becomes :class:`PluginCallFailed`.

    ``UserError`` (a plugin telling the user about a mistake) and
    ``MeasurementFailed`` pass through unchanged.  ``SystemExit`` is caught:
    a plugin calling ``sys.exit`` must not end the run with status 0.
    """
    try:
        return fn(*args, **kwargs)
    except (KeyboardInterrupt, UserError, MeasurementFailed, PluginCallFailed):
        raise
    except BaseException as exc:  # noqa: BLE001 - the plugin boundary
        raise PluginCallFailed(f"{what}: {one_line(exc)}") from exc


def _async_raise(thread: threading.Thread, exc_type: type[BaseException]) -> None:
    """Ask ``thread`` to raise ``exc_type`` at its next bytecode (interrupts Python-level loops)."""
    import ctypes

    if thread.ident is None:
        return
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident), ctypes.py_object(exc_type))


def _torch_threads() -> int:
    """This process's torch thread count (``[run] threads`` once the run set it); 0 if torch is not imported."""
    torch = sys.modules.get("torch")
    return int(torch.get_num_threads()) if torch is not None else 0


def call_with_timeout(fn: Callable[[], Any], timeout: float, what: str = "cell") -> Any:
    """``fn()`` in a daemon worker thread, waiting at most ``timeout`` seconds (0 = inline, no limit).

    On timeout the worker is sent :class:`CellTimeout` (which stops a metric
    looping in Python) and abandoned if it is stuck inside native code; it
    only holds copies of the inputs, and its result is never used, so the
    run goes on with :class:`MeasurementFailed` for this cell.  Ctrl-C still
    reaches the main thread, which is only waiting.
    """
    if not timeout:
        return fn()
    outcome: dict[str, Any] = {}
    started = time.monotonic()
    threads = _torch_threads()

    def work() -> None:
        try:
            if threads:
                # OpenMP's thread count is per thread: a new thread would start a team of one per core (measured:
                # a 40 x 8 matmul 100-500x slower on a busy 2-core machine), whatever [run] threads says
                import torch

                torch.set_num_threads(threads)
            outcome["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            outcome["error"] = exc

    worker = threading.Thread(target=work, name=f"simbench-{what}", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        _async_raise(worker, CellTimeout)
        worker.join(0.5)
        raise MeasurementFailed(f"timed out after {timeout:g} s (run.cell_timeout)")
    if "error" in outcome:
        raise outcome["error"]
    # native code holding the GIL keeps even this thread from waking at the limit: a result that came back
    # late is still a time-out (run.isolation = "process" stops such a metric at the limit itself)
    elapsed = time.monotonic() - started
    if elapsed > timeout:
        raise MeasurementFailed(f"timed out after {timeout:g} s (run.cell_timeout): it returned after "
                                f"{elapsed:.3g} s from code that could not be interrupted")
    return outcome["value"]


def metric_job(metric: Any, given: Any, given_kwargs: Mapping[str, Any], timing_repeats: int = 0,
               device: str = "cpu", seed: int | None = None, check: bool = False) -> tuple[Any, list[float], bool]:
    """A metric cell's computation, in one definition for the run's worker thread and a worker process.

    ``metric.pairwise(given, **given_kwargs)``; with ``timing_repeats`` (two
    sources) one warm-up and that many timed one-pair calls.  ``seed``
    reseeds (a worker process starts with the fork server's state);
    ``check`` fingerprints the inputs before and after, for a worker process
    whose copies the parent cannot compare.  A ``UserError`` the metric
    raises is its failure, not the user's: it becomes :class:`MeasurementFailed`
    (only ``KeyboardInterrupt`` passes a cell).  Returns ``(raw matrix,
    seconds per timed call, whether the inputs were modified)``.
    """
    if seed is not None:
        seed_everything(seed)
    before = fingerprint(given, dict(given_kwargs)) if check else ""
    try:
        raw = metric.pairwise(given, **given_kwargs)
        seconds = []
        if timing_repeats:
            a, b = given
            metric(a, b, **given_kwargs)  # warm-up of the one-pair path: lazy imports, allocator, kernels
            for _ in range(timing_repeats):
                _synchronize(device)
                started = time.perf_counter()
                metric(a, b, **given_kwargs)
                _synchronize(device)
                seconds.append(time.perf_counter() - started)
    except UserError as exc:
        raise MeasurementFailed(one_line(exc)) from None
    modified = bool(check) and fingerprint(given, dict(given_kwargs)) != before
    return raw, seconds, modified


def _synchronize(device: str) -> None:
    """Wait for queued CUDA kernels, so a timed call's wall time covers its work (no-op on the CPU)."""
    if str(device).startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def _tensors(obj: Any) -> Iterable[Any]:
    """Every tensor inside ``obj`` (modules' state, data splits, probe sets, containers)."""
    import torch

    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, torch.nn.Module):
        yield from obj.state_dict(keep_vars=True).values()
    elif isinstance(obj, DataSplits):
        for split in (obj.train, obj.val, obj.test):
            yield split.x
            yield split.y
    elif isinstance(obj, ProbeSet):
        yield obj.x
        yield obj.y
        yield from (obj.x_by_model or {}).values()
    elif isinstance(obj, Mapping):
        for value in obj.values():
            yield from _tensors(value)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            yield from _tensors(value)


def fingerprint(*objs: Any) -> str:
    """A content hash of every tensor in ``objs`` (no copies: hashes the bytes in place)."""
    import torch

    h = hashlib.blake2b(digest_size=16)
    for t in _tensors(objs):
        t = t.detach()
        if t.device.type != "cpu":
            t = t.cpu()
        t = t.contiguous()
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().data)
    return h.hexdigest()


def _clone(obj: Any) -> Any:
    """A deep copy of the tensors in lists/tuples/dicts (what metrics and benchmarks are handed)."""
    import torch

    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, list):
        return [_clone(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_clone(v) for v in obj)
    if isinstance(obj, dict):
        return {k: _clone(v) for k, v in obj.items()}
    return obj


def _same(a: Any, b: Any) -> bool:
    """Whether two (nested) tensor structures hold the same values (NaN equal to NaN)."""
    import torch

    ta, tb = list(_tensors(a)), list(_tensors(b))
    if len(ta) != len(tb):
        return False
    for x, y in zip(ta, tb, strict=True):
        if x.shape != y.shape or x.dtype != y.dtype:
            return False
        if x.is_floating_point() or x.is_complex():
            if not torch.equal(x, y) and not torch.allclose(x, y, rtol=0, atol=0, equal_nan=True):
                return False
        elif not torch.equal(x, y):
            return False
    return True


def _clone_probe_set(ps: ProbeSet) -> ProbeSet:
    return ProbeSet(ps.name, ps.x.clone(), ps.y.clone(), dict(ps.meta),
                    None if ps.x_by_model is None else {k: v.clone() for k, v in ps.x_by_model.items()})


def _named_tensors(what: str, obj: Any) -> Iterable[tuple[str, Any]]:
    """``(name, tensor)`` for the tensors of a dataset or a probe set, named for an error message."""
    if isinstance(obj, DataSplits):
        for split in ("train", "val", "test"):
            yield f"the data's {split}.x", getattr(obj, split).x
            yield f"the data's {split}.y", getattr(obj, split).y
    elif isinstance(obj, ProbeSet):
        yield f"probe set {obj.name!r}", obj.x
        yield f"probe set {obj.name!r}", obj.y
        for mid, xm in (obj.x_by_model or {}).items():
            yield f"probe set {obj.name!r} (inputs for {mid})", xm
    else:
        for t in _tensors(obj):
            yield what, t


def _equal(a: Any, b: Any) -> bool:
    """Same shape, dtype and values (NaN equal to NaN), whatever the devices."""
    import torch

    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    b = b.to(a.device)
    if torch.equal(a, b):
        return True
    return (a.is_floating_point() or a.is_complex()) and bool(torch.allclose(a, b, rtol=0, atol=0, equal_nan=True))


class Restorer:
    """The one restoring copy of everything plugins share: the data, the probe sets and the models.

    Plugins that are handed shared objects rather than copies (a zoo gets the
    data; a perturbation the data and the models; a benchmark's view the data;
    a model reads the probe sets) are checked after every call through
    :meth:`restore`: whatever a plugin changed in place is put back from this
    copy *before anything else runs*, and the call fails, naming what it
    changed.  So the next plugin reads the originals, and a fresh run and a
    resumed one (which skips the culprit's finished cell) see the same data.
    The copy is made once per object (memory: one more copy of the data and the
    probe sets; the models' copy is the state loaded from the cache anyway),
    and checking costs one comparison of those tensors per plugin call.
    """

    def __init__(self) -> None:
        #: id of a live tensor -> (what it is, the live tensor, its pristine copy)
        self._tensors: dict[int, tuple[str, Any, Any]] = {}
        #: model id -> (module, pristine state dict)
        self._models: dict[str, tuple[Any, dict[str, Any]]] = {}

    def keep(self, what: str, obj: Any) -> None:
        """Remember ``obj``'s tensors as they are now (a dataset, a probe set, or any tensor container)."""
        for name, t in _named_tensors(what, obj):
            if id(t) not in self._tensors:
                self._tensors[id(t)] = (name, t, t.detach().clone())

    def keep_model(self, model_id: str, module: Any, state: Mapping[str, Any]) -> None:
        """Remember a model by its pristine ``state`` (a copy the module does not share)."""
        self._models[model_id] = (module, dict(state))

    def forget_model(self, model_id: str) -> None:
        self._models.pop(model_id, None)

    def restore(self, models: bool = True) -> list[str]:
        """Put back whatever changed since it was kept; return what changed (empty: nothing).
        ``models=False``: the data and probe sets only."""
        import torch

        changed: list[str] = []
        with torch.no_grad():
            for name, live, saved in self._tensors.values():
                if _equal(live, saved):
                    continue
                if live.shape == saved.shape and live.dtype == saved.dtype:
                    live.copy_(saved)  # in place: every holder of this tensor (or a view of it) sees the original
                else:
                    live.set_(saved.clone())
                changed.append(name)
            for mid, (module, state) in (self._models.items() if models else ()):
                current = module.state_dict()
                if current.keys() == state.keys() and all(_equal(current[k], v) for k, v in state.items()):
                    continue
                try:
                    module.load_state_dict(state, strict=True)
                except RuntimeError:  # a parameter replaced by one of another shape
                    module.load_state_dict(state, strict=True, assign=True)
                changed.append(f"model {mid!r}")
        return list(dict.fromkeys(changed))


# ----------------------------------------------------------------------------
# Progress display
# ----------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------
# The benchmark context
# ----------------------------------------------------------------------------


@dataclass
class _State:
    """What the stages produced so far, shared with the benchmark context."""

    data: DataSplits | None = None
    specs: list[ModelSpec] = field(default_factory=list)
    models: dict[str, Any] = field(default_factory=dict)
    #: the zoo's held-out models (trained, given to perturbations, never analysed)
    held_out: dict[str, Any] = field(default_factory=dict)
    held_out_specs: list[ModelSpec] = field(default_factory=list)
    zoo_key: str = ""
    probe_sets: dict[str, ProbeSet] = field(default_factory=dict)
    probe_keys: dict[str, str] = field(default_factory=dict)
    similarities: dict[tuple[str, str], Any] = field(default_factory=dict)
    failures: dict[tuple[str, str], str] = field(default_factory=dict)
    agreements: dict[str, Any] = field(default_factory=dict)
    accuracies: dict[str, Any] = field(default_factory=dict)
    failed_probe_sets: dict[str, str] = field(default_factory=dict)
    #: benchmarks' declared matrices: (benchmark label, request key) -> matrix / one-line error
    matrices: dict[tuple[str, str], Any] = field(default_factory=dict)
    matrix_failures: dict[tuple[str, str], str] = field(default_factory=dict)
    matrix_metrics: dict[tuple[str, str], Any] = field(default_factory=dict)
    #: timed declared matrices: (benchmark label, request key) -> wall seconds of each timed call
    matrix_seconds: dict[tuple[str, str], list[float]] = field(default_factory=dict)


class RunnerView:
    """The runner's implementation of :class:`simbench.types.StoreView`: read-only, every tensor a copy.

    It never creates a similarity or agreement cell: the runner computes
    every one the suite names before the benchmark stage, and asking for one
    that is not there is an error in the runner, not a computation.
    ``benchmark`` is the label of the benchmark it serves (whose declared
    matrices :meth:`matrix` reads); ``None`` for the view ``requests`` gets.
    """

    def __init__(self, runner: Runner, benchmark: str | None = None) -> None:
        self._runner = runner
        self._benchmark = benchmark
        state = runner.state
        assert state.data is not None
        self.suite_name = runner.suite.name
        self.seed = runner.suite.seed
        self.device = runner.device
        self.specs = list(state.specs)
        self.data = state.data
        self.metrics = {use.label: use.obj for use in runner.suite.metrics}
        self.probe_sets = list(state.probe_sets)

    def _where(self, metric: str, probe_set: str) -> tuple[str, str]:
        use = self._runner.metric_use(metric)
        if use.obj.kind == "weight":
            return metric, WEIGHTS_PROBE_SET
        self._known_probe_set(probe_set)
        return metric, probe_set

    def _known_probe_set(self, name: str) -> None:
        state = self._runner.state
        if name in state.failed_probe_sets:
            raise MeasurementFailed(f"probe set {name!r} failed: {state.failed_probe_sets[name]}")
        if name not in state.probe_sets:
            raise UserError(f"unknown probe set {name!r}; this suite has: {', '.join(self.probe_sets)}")

    def similarity(self, metric: str, probe_set: str) -> Any:
        state = self._runner.state
        key = self._where(metric, probe_set)
        if key in state.failures:
            raise MeasurementFailed(state.failures[key])
        if key not in state.similarities:
            raise RuntimeError(f"similarity/{key[0]}/{key[1]} was not computed before the benchmark stage")
        return self._runner.metric_use(metric).obj.to_similarity(state.similarities[key].clone())

    def failure(self, metric: str, probe_set: str) -> str | None:
        try:
            key = self._where(metric, probe_set)
        except MeasurementFailed as exc:
            return str(exc)
        return self._runner.state.failures.get(key)

    def _agreement_state(self, probe_set: str, table: dict[str, Any]) -> Any:
        self._known_probe_set(probe_set)
        if probe_set not in table:
            raise RuntimeError(f"agreement/{probe_set} was not computed before the benchmark stage")
        return table[probe_set].clone()

    def agreement(self, probe_set: str) -> Any:
        return self._agreement_state(probe_set, self._runner.state.agreements)

    def accuracy(self, probe_set: str) -> Any:
        return self._agreement_state(probe_set, self._runner.state.accuracies)

    def probe_set(self, name: str) -> ProbeSet:
        self._known_probe_set(name)
        return _clone_probe_set(self._runner.state.probe_sets[name])

    def outputs(self, probe_set: str) -> list[Any]:
        self._known_probe_set(probe_set)
        return _clone(self._runner.representations(probe_set, None)[1])

    def representations(self, probe_set: str, layer: str | None = None) -> list[Any]:
        self._known_probe_set(probe_set)
        return _clone(self._runner.representations(probe_set, layer)[0])

    def layers(self, model_id: str) -> tuple[str, ...]:
        return tuple(self._runner.model(model_id).readable_layers)

    def weights(self, model_id: str) -> list[Any]:
        return [w.detach().clone() for w in self._runner.model(model_id).dense_weights()]

    def buffers(self, model_id: str) -> dict[str, Any]:
        return model_buffers(self._runner.model(model_id))

    def representation(self, source: Source) -> Any:
        self._runner.check_source(source, f"representation({source!r})")
        found = self._runner.source_tensor(source)
        return _clone(found)

    def matrix(self, key: str) -> Any:
        state = self._runner.state
        cell = (self._benchmark or "", key)
        if cell in state.matrix_failures:
            raise MeasurementFailed(state.matrix_failures[cell])
        if cell not in state.matrices:
            raise UserError(f"benchmark {self._benchmark!r} reads matrix {key!r}, which its requests() did not declare")
        return state.matrices[cell].clone()

    def matrix_failure(self, key: str) -> str | None:
        return self._runner.state.matrix_failures.get((self._benchmark or "", key))

    def matrix_metric(self, key: str) -> Any:
        found = self._runner.state.matrix_metrics.get((self._benchmark or "", key))
        if found is None:
            raise UserError(f"benchmark {self._benchmark!r} reads matrix {key!r}, which its requests() did not declare")
        return found

    def matrix_seconds(self, key: str) -> list[float] | None:
        self.matrix(key)  # a failed cell raises; an undeclared key is a one-line error
        found = self._runner.state.matrix_seconds.get((self._benchmark or "", key))
        return None if found is None else list(found)


def model_buffers(model: Any) -> dict[str, Any]:
    """Copies of a model's stored non-weight tensors (torch buffers: saved with its checkpoint, not trained by
    the optimiser, e.g. a training trace or BatchNorm statistics), by name; ``{}`` for a model without any."""
    named = getattr(model, "named_buffers", None)
    return {name: b.detach().clone() for name, b in named()} if callable(named) else {}




# ----------------------------------------------------------------------------
# Checks before training
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SizeEstimate:
    """What a suite will hold in memory, estimated without training (models built on torch's meta device)."""

    n_models: int
    parameters: int  # all models together
    width: int  # features per probe at the suite's layer (largest model)
    probes: int
    probe_sets: int

    @property
    def gigabytes(self) -> float:
        reps = self.n_models * self.probes * self.width * self.probe_sets
        return 4.0 * (self.parameters + reps) / 1e9


def preflight(suite: Suite, data: DataSplits, sample: int = 64) -> SizeEstimate | None:
    """Check what can be checked before training, raising a one-line :class:`SuiteError`.

    * the number of models against ``run.max_models``;
    * ``probes.layer`` against each model's ``readable_layers`` (models are
      instantiated on torch's ``meta`` device: no memory, no training);
    * a size estimate (models x parameters + probes x width) against
      ``run.max_size_gb``.

    Up to ``sample`` specs, spread over the zoo, are instantiated; the
    estimate extrapolates.  A zoo whose ``instantiate`` cannot run on the meta
    device is skipped silently (the layer is then checked after training).
    """
    import torch

    from .suite import check_data_files

    check_data_files(suite)
    file = str(suite.path)
    try:
        specs = list(plugin_call(f"zoo {suite.zoo.name!r} specs", suite.zoo.obj.specs))
    except PluginCallFailed as exc:
        raise StageFailed(str(exc)) from None
    limit = int(suite.run["max_models"])
    if len(specs) > limit:
        raise SuiteError(file, "run.max_models",
                         f"the zoo has {len(specs)} models, more than the limit of {limit}; raise run.max_models to allow it")
    if not specs:
        return None
    step = max(1, len(specs) // sample)
    chosen = specs[::step][:sample]
    layer = suite.probes["layer"]
    params: list[int] = []
    width = 0
    n = suite.probes["n"] or (len(data.test) if suite.probes["split"] == "test" else len(data.val))
    for spec in chosen:
        try:
            with torch.device("meta"):
                module = suite.zoo.obj.instantiate(spec, data)
        except KeyboardInterrupt:
            raise
        except Exception:  # noqa: BLE001 - not meta-capable: checked after training instead
            return None
        except BaseException as exc:  # noqa: BLE001 - sys.exit is no meta-device limitation: the zoo is broken
            raise StageFailed(f"zoo {suite.zoo.name!r} instantiate: {one_line(exc)}") from None
        readable = tuple(getattr(module, "readable_layers", ()) or ())
        name = getattr(module, "default_layer", "") if layer == "default" else layer
        if readable and name not in readable:
            raise SuiteError(file, "probes.layer",
                             f"model {spec.id!r} has no layer {name!r}; readable layers: {', '.join(readable)}")
        params.append(sum(int(p.numel()) for p in module.parameters()))
        try:
            x = torch.empty((1, *data.input_shape), device="meta")
            out = module.read(x, [name])[name]
            width = max(width, int(out.reshape(1, -1).shape[1]))
        except KeyboardInterrupt:
            raise
        except Exception:  # noqa: BLE001 - the estimate then counts parameters only
            pass
        except BaseException as exc:  # noqa: BLE001 - sys.exit in a model's read
            raise StageFailed(f"zoo {suite.zoo.name!r}: model {spec.id!r} read: {one_line(exc)}") from None
    n_probe_sets = 1 + sum(len(u.obj.variants()) for u in suite.perturbations if u.obj.target == "input")
    analysed = [s for s in specs if not s.held_out]  # held-out models are trained, never measured
    n_models = len(analysed) * (1 + sum(1 for u in suite.perturbations if u.obj.target == "model"))
    if width:
        from .suite import check_metric_memory

        # the load-time check knew no width; now each metric's estimate uses the models' real one
        check_metric_memory(file, suite.metrics, int(n), n_models, width)
    estimate = SizeEstimate(n_models, int(sum(params) / len(params) * n_models), width, int(n), n_probe_sets)
    limit_gb = float(suite.run["max_size_gb"])
    if estimate.gigabytes > limit_gb:
        raise SuiteError(
            file, "run.max_size_gb",
            f"estimated {estimate.gigabytes:.3g} GB ({n_models} models x {estimate.parameters // max(1, n_models)} "
            f"parameters, {n_probe_sets} probe sets x {n} probes x width {width}), above the limit of {limit_gb:g} GB; "
            "make the suite smaller or raise run.max_size_gb",
        )
    return estimate


def load_data_offline(suite: Suite) -> DataSplits:
    """Load the suite's dataset with the Hugging Face hub switched off (``validate``: never download).

    A dataset that needs a download answers with a one-line error naming it.
    """
    from .suite import check_data_files

    check_data_files(suite)  # a missing file is named as such, not as an unreachable dataset
    saved = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")}
    os.environ.update({"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"})
    try:
        use = suite.data
        ctx = RunContext(seed=derive_seed(suite.seed, "data"), device="cpu")
        try:
            data = plugin_call(f"dataset {use.name!r}", use.obj.load, ctx)
        except PluginCallFailed as exc:
            raise UserError(f"{suite.path}: data: not reachable without downloading ({exc})") from None
        except UserError as exc:
            raise UserError(f"{suite.path}: data: {exc}") from None
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    if not isinstance(data, DataSplits):
        raise UserError(f"dataset {suite.data.name!r} returned {type(data).__name__}; expected simbench.DataSplits")
    return data


# ----------------------------------------------------------------------------
# Output validation
# ----------------------------------------------------------------------------


def _declares_range(cls: type) -> bool:
    """Whether a metric class (not just the base) declares ``value_range``."""
    from .types import Metric

    return any("value_range" in c.__dict__ for c in cls.__mro__ if c is not Metric and issubclass(c, Metric))


def validate_matrix(raw: Any, ids: Sequence[str], metric: Any = None) -> tuple[Any, list[str]]:
    """The metric's output as a float64 CPU matrix, and its flags; :class:`MeasurementFailed` if invalid.

    Invalid: not M x M, complex, non-numeric, non-finite, outside the
    metric's declared ``value_range`` (when the class declares one), or
    asymmetric while declared ``symmetric``.  Flag ``"constant"``: every
    off-diagonal entry equal (a metric that cannot tell models apart).
    """
    import torch

    try:
        matrix = torch.as_tensor(raw).detach()
    except Exception as exc:  # noqa: BLE001
        raise MeasurementFailed(f"pairwise returned {type(raw).__name__}, not a matrix ({one_line(exc)})") from None
    if matrix.is_complex():
        raise MeasurementFailed("pairwise returned complex values; expected real numbers")
    if not (matrix.is_floating_point() or matrix.dtype in (torch.int8, torch.int16, torch.int32, torch.int64,
                                                            torch.uint8)):
        raise MeasurementFailed(f"pairwise returned dtype {matrix.dtype}; expected real numbers")
    matrix = matrix.to("cpu", torch.float64)
    m = len(ids)
    flags: list[str] = [f"undefined:{ids[i]}" for i in _undefined_models(matrix, ids)]
    check_matrix(matrix, ids, allow_nan_models=[i for i, model in enumerate(ids) if f"undefined:{model}" in flags])
    if metric is not None and _declares_range(type(metric)):
        lo, hi = (float(v) for v in metric.value_range)
        scale = max(1.0, *(abs(v) for v in (lo, hi) if v == v and abs(v) != float("inf")))
        tol = RANGE_RTOL * scale
        bad = (matrix < lo - tol) | (matrix > hi + tol)
        if bad.any():
            i, j = (int(v) for v in bad.nonzero()[0])
            raise MeasurementFailed(
                f"value {float(matrix[i, j]):.6g} ({ids[i]} vs {ids[j]}) outside the declared range [{lo:g}, {hi:g}]"
            )
    if metric is not None and getattr(metric, "symmetric", False):
        gap = (matrix - matrix.T).abs().max()
        scale = float(matrix.abs().max())
        if float(gap) > SYMMETRY_RTOL * max(scale, 1e-12):
            i, j = (int(v) for v in ((matrix - matrix.T).abs() == gap).nonzero()[0])
            raise MeasurementFailed(
                f"declared symmetric but [{ids[i]}, {ids[j]}] = {float(matrix[i, j]):.6g} and "
                f"[{ids[j]}, {ids[i]}] = {float(matrix[j, i]):.6g}"
            )
    if m >= 3:
        off = matrix[~torch.eye(m, dtype=torch.bool)]
        if float(off.max() - off.min()) <= 1e-12 * max(1.0, float(off.abs().max())):
            flags.append("constant")
    return matrix, flags


#: what each kind of matrix flag means (the run's flag rows carry it as their text)
FLAG_MEANINGS = {
    "constant": "every pair of models gets the same value",
    "undefined": "the metric has no value for any pair with this model",
    "ill_defined": "pairs with this model are in a regime where the metric's value rests on a convention "
                   "(e.g. pwcca when the two representations share dimensions)",
}


def _metric_notes(metric: Any, reps: Any, kwargs: Mapping[str, Any], ids: Sequence[str], what: str) -> list[str]:
    """The metric's own notes on its matrix (``matrix_flags(reps, ids)``, e.g. ``"ill_defined:<model>"``), in
    the runner's flag format; none when it declares no such method.  A note that cannot be computed is
    logged and left out: it qualifies the matrix, it does not fail it."""
    notes = getattr(metric, "matrix_flags", None)
    if not callable(notes):
        return []
    try:
        out = notes(reps, list(ids), **dict(kwargs))
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 - a plugin's failure is logged, never a crash
        log.warning("%s: matrix_flags failed (%s); the matrix is kept without notes", what, one_line(exc))
        return []
    return [str(f) for f in out or [] if isinstance(f, str) and ":" in f]


def _undefined_models(matrix: Any, ids: Sequence[str]) -> list[int]:
    """Models whose every pair is NaN while at least two other models stay defined: the metric says it has
    no value for that model (e.g. unbiased CKA of a collapsed model's constant representation)."""
    import torch

    m = len(ids)
    if tuple(matrix.shape) != (m, m) or m < 3:
        return []
    off = ~torch.eye(m, dtype=torch.bool)
    nan = torch.isnan(matrix) & off
    whole = [i for i in range(m) if bool(nan[i][off[i]].all()) and bool(nan[:, i][off[:, i]].all())]
    return whole if m - len(whole) >= 2 else []


def check_matrix(matrix: Any, ids: Sequence[str], allow_nan_models: Sequence[int] = ()) -> None:
    """Raise :class:`MeasurementFailed` unless ``matrix`` is a finite M x M matrix (NaN allowed only in the
    rows and columns of ``allow_nan_models``)."""
    import torch

    m = len(ids)
    if tuple(matrix.shape) != (m, m):
        raise MeasurementFailed(f"pairwise returned shape {tuple(matrix.shape)}; expected ({m}, {m})")
    bad = ~torch.isfinite(matrix)
    if len(allow_nan_models):
        allowed = torch.zeros(m, dtype=torch.bool)
        allowed[list(allow_nan_models)] = True
        bad &= ~(allowed[:, None] | allowed[None, :])
    if bad.any():
        i, j = (int(v) for v in bad.nonzero()[0])
        raise MeasurementFailed(
            f"returned non-finite values for {int(bad.sum())} of {m * m} entries (first: {ids[i]} vs {ids[j]})"
        )


def stored_activations(t: Any) -> Any:
    """A layer's activations as the store keeps them: float32 on the CPU, unless the model returns the layer in
    float64 on purpose (a statistic that rounding to float32 would change, e.g. an activation's derivative):
    such a layer keeps its float64 precision.  No built-in layer read by a similarity metric is float64."""
    import torch

    return t.to(device="cpu", dtype=torch.float64 if t.dtype == torch.float64 else torch.float32)


#: how many bytes of transformed sources a run keeps in memory for reuse (Runner.source_tensor)
SOURCE_MEMO_BYTES = 256 * 2**20
#: what :attr:`Source.dtype` may ask for (``""``: as stored)
SOURCE_DTYPES = ("", "float32", "float64")


def source_dtype(x: Any, dtype: str) -> Any:
    """A materialised source (a tensor, or a list of weight matrices) cast to ``dtype`` (``""``: unchanged).
    The cast keeps each tensor's memory layout (a transposed weight stays transposed)."""
    import torch

    if not dtype:
        return x
    target = getattr(torch, dtype)
    return [w.to(target) for w in x] if isinstance(x, list) else x.to(target)


def materialise_source(source: Source, layer: Callable[[], Any], weights: Callable[[], list[Any]],
                       labels: Callable[[], Any], transform: Any = None, device: str = "cpu") -> Any:
    """The tensor (or list of weight matrices) a :class:`~simbench.types.Source` names, in one definition.

    ``layer()`` reads the model's activations at the source's layer on its
    probe set, ``weights()`` its dense weights, ``labels()`` the probe set's
    labels; ``transform`` is the configured representation perturbation (or
    None).  The transform gets copies and the source's ``transform_seed``;
    ``rows`` are taken after it, then ``dtype``.  The runner and
    :class:`simbench.testing.FakeStore` both materialise sources here, so the
    kit checks a benchmark against the runner's semantics, not a copy of them.
    """
    import torch

    ctx = RunContext(seed=source.transform_seed, device=device)
    if source.is_weights:
        ws = [w.detach() for w in weights()]
        if source.transform:  # the whole list at once: a weight permutation links neighbouring layers
            ws = plugin_call(f"perturbation {source.transform!r}", transform.transform_weights,
                             [w.clone() for w in ws], ctx)
            ws = [torch.as_tensor(w) for w in ws]
        return source_dtype(ws, source.dtype)
    x = layer()
    if source.transform:
        x = torch.as_tensor(plugin_call(f"perturbation {source.transform!r}", transform.transform_representation,
                                        x.clone(), labels().clone(), ctx))
    if source.rows is not None:
        x = x[list(source.rows)]
    return source_dtype(x, source.dtype)


def _non_finite(ps: ProbeSet) -> str:
    """Why a probe set cannot be used (NaN/inf inputs), or ``""``."""
    import torch

    for what, t in [("inputs", ps.x), *((f"inputs for {k}", v) for k, v in (ps.x_by_model or {}).items())]:
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            return f"{what} contain {int((~torch.isfinite(t)).sum())} NaN/inf values"
    return ""


# ----------------------------------------------------------------------------
# The runner
# ----------------------------------------------------------------------------


class Runner:
    """Runs one validated suite into one run directory."""

    def __init__(
        self,
        suite: Suite,
        registry: Registry,
        run_dir: str | os.PathLike[str],
        cache_dir: str | os.PathLike[str] | None = None,
        console: Any = None,
        quiet: bool = False,
        use_cache: bool = True,
        fresh: bool = False,
        verbose: bool = False,
        plain: bool | None = None,
        executor: Any = None,
        scheduler: str | None = None,
        workers: int | None = None,
    ) -> None:
        self.suite = suite
        self.registry = registry
        self.run_dir = RunDir(run_dir, suite.sha256)
        cache_root = cache_dir or suite.run.get("cache_dir") or os.environ.get(CACHE_ENV) or default_cache_dir()
        self.cache = TensorCache(cache_root, enabled=use_cache)
        self.console = console
        self.quiet = quiet
        self.fresh = fresh
        self.verbose = verbose
        self.plain = plain
        self.state = _State()
        self.device = "cpu"
        self.ctx = RunContext()
        self.cells: list[str] = []
        self.computed = 0
        self.reused = 0
        self.failures: list[dict[str, str]] = []  # stage failures (perturbations, probe sets), for the manifest
        self.data_fingerprint = ""
        #: the configured task plugin the data names (``DataSplits.task``), set when the data is loaded
        self.task: Any = None
        self._reps: dict[tuple[str, str], tuple[list[Any], list[Any]]] = {}
        self._ui: ProgressUI | None = None
        self._model_state: dict[str, dict[str, Any]] = {}
        #: the pristine copy of the data, probe sets and models, checked after every plugin call that gets them
        self.restorer = Restorer()
        #: who runs the plan's tasks: an Executor, or the name of a registered one ([run] executor by default)
        self._executor_spec = (executor or suite.run.get("executor", "local"),
                               scheduler if scheduler is not None else suite.run.get("scheduler", ""),
                               workers if workers is not None else suite.run.get("workers", 0))
        self.executor: Any = None
        #: output key -> one-line error / seconds of tasks an executor ran (the client writes their cells)
        self._task_failures: dict[str, str] = {}
        self._task_seconds: dict[str, float] = {}
        #: output key -> wall seconds of each timed call of a timed declared matrix (measured here or on a worker)
        self._call_seconds: dict[str, list[float]] = {}
        #: wall seconds per stage in this invocation (client's view; in the manifest's invocation entry)
        self.stage_seconds: dict[str, float] = {}
        #: benchmark label -> one-line error of its ``requests`` (the benchmark's cell fails with it)
        self._request_failures: dict[str, str] = {}
        #: (probe set, layer) -> activations per model, for the declared matrices being computed
        self._layer_memo: dict[tuple[str, str], Any] = {}
        #: transformed sources already materialised (insertion order = age), up to SOURCE_MEMO_BYTES: several
        #: requests (and the benchmark's view) often share one transformed copy, which may be costly to make
        self._source_memo: dict[Source, tuple[Any, int]] = {}

    # -- helpers -----------------------------------------------------------------

    def stage_ctx(self, *tags: str) -> RunContext:
        """A context whose seed is derived from the suite seed and the stage name; reseeds torch."""
        seed = derive_seed(self.suite.seed, *tags)
        seed_everything(seed)
        return RunContext(seed=seed, device=self.device, progress=self.ctx.progress, cache=self.cache,
                          log=self.ctx.log, verbose=self.verbose)

    def metric_use(self, label: str) -> PluginUse:
        for use in self.suite.metrics:
            if use.label == label:
                return use
        known = ", ".join(u.label for u in self.suite.metrics)
        raise UserError(f"unknown metric {label!r} in this suite; it has: {known}")

    def _progress(self, description: str, total: int | None, unit: str = "") -> Callable[[int], None]:
        return self._ui(description, total, unit) if self._ui is not None else (lambda advance=1: None)

    def _warn(self, message: str) -> None:
        log.warning("%s", message)

    def _record_stage_failure(self, cell_id: str, kind: str, label: str, error: str) -> None:
        """A failed perturbation / probe set: a failed row in the results, a line in the manifest."""
        self._warn(f"{cell_id} failed: {error}")
        self.failures.append({"stage": cell_id, "error": error})
        where = {"model_a": label} if kind == "zoo" else {"probe_set": label}
        row = record_row(self.suite.name, kind, Record("", "status", float("nan"), status="failed", error=error,
                                                       **where))
        self.run_dir.write_cell(cell_id, [row], {"error": error})
        self.cells.append(cell_id)

    def _clear_stage_failure(self, cell_id: str) -> None:
        """A stage that failed in an earlier invocation and succeeded now leaves no failure behind."""
        self.run_dir.remove_cell(cell_id)

    def _restore_models(self) -> None:
        """Put back everything a plugin modified in place (data, probe sets, models): :meth:`Restorer.restore`."""
        self.restorer.restore()

    def _check_untouched(self, what: str, models: bool = True) -> None:
        """After a plugin call: restore what it changed in place and fail it (:class:`PluginCallFailed`) if anything.

        ``models=False`` skips comparing the models (a call that is not handed them, e.g. ``instantiate``)."""
        changed = self.restorer.restore(models=models)
        if changed:
            shown = ", ".join(changed[:3]) + (f" and {len(changed) - 3} more" if len(changed) > 3 else "")
            raise PluginCallFailed(f"{what} modified {shown} in place (restored); a plugin must copy what it changes")

    # -- manifest -----------------------------------------------------------------

    def _start_manifest(self) -> dict[str, Any]:
        from ._version import __version__

        previous: dict[str, Any] | None = None
        if self.run_dir.manifest_path.exists():
            try:
                previous = self.run_dir.read_manifest()
            except UserError:
                previous = None  # a damaged manifest: rewritten below; the cells carry their own suite hash
                self._warn(f"{self.run_dir.manifest_path}: damaged; writing a new one")
            if previous is not None and previous.get("suite", {}).get("sha256") != self.suite.sha256:
                raise UserError(
                    f"{self.run_dir.path}: holds a run of a different suite "
                    f"(sha256 {str(previous.get('suite', {}).get('sha256', '?'))[:12]}); "
                    "use --fresh to start over or --run-dir to choose another directory"
                )
        plugins = {
            name: {"source": info.source, "distribution": info.distribution, "version": info.version,
                   "location": info.location, "registered": info.registered}
            for name, info in self.registry.plugins.items()
        }
        revision = provenance.simbench_revision()
        manifest = {
            "simbench_version": __version__,
            "simbench_revision": revision,
            "suite": {
                "name": self.suite.name,
                "path": str(self.suite.path),
                "sha256": self.suite.sha256,
                "overrides": list(self.suite.overrides),
                "description": self.suite.description,
                "data_files": dict(self.suite.data_files),
                "data_file_bytes": {path: _file_size(path) for path in self.suite.data_files},
            },
            # kept for readers of older manifests: now simbench's own revision, never the suite file's repository
            "git_revision": revision,
            "device": describe_device(self.device),
            "device_type": self.device,
            "seed": self.suite.seed,
            "threads": int(self.suite.run["threads"]),
            "versions": provenance.versions(),
            "plugins": plugins,
            "data": {"name": self.suite.data.name, "params": self.suite.data.params},
            "zoo": {"name": self.suite.zoo.name, "params": self.suite.zoo.params},
            "metrics": {u.label: {"name": u.name, "params": u.params} for u in self.suite.metrics},
            "benchmarks": {u.label: {"name": u.name, "params": u.params} for u in self.suite.benchmarks},
            "started": (previous or {}).get("started", provenance.now()),
            "finished": None,
            "invocations": list((previous or {}).get("invocations", [])) + [{"started": provenance.now(), "pid": os.getpid()}],
        }
        for key in ("data_fingerprint", "n_models", "models", "held_out_models", "probe_sets", "cell_order"):
            if previous and key in previous:
                manifest[key] = previous[key]
        self.run_dir.write_manifest(manifest)
        return manifest

    def _finish_manifest(self, manifest: dict[str, Any], **update: Any) -> None:
        """Re-read the manifest and update *this* invocation's entry, so no invocation is ever lost."""
        try:
            current = self.run_dir.read_manifest()
        except UserError:
            current = manifest
        invocations = list(current.get("invocations", []))
        mine = manifest["invocations"][-1]
        for i, entry in enumerate(invocations):
            if entry.get("started") == mine["started"] and entry.get("pid") == mine.get("pid"):
                invocations[i] = {**entry, **update.pop("invocation", {})}
                break
        else:
            invocations.append({**mine, **update.pop("invocation", {})})
        current.update(manifest | {"invocations": invocations})
        current.update(update)
        self.run_dir.write_manifest(current)

    # -- stages ---------------------------------------------------------------------

    def load_data(self) -> DataSplits:
        use = self.suite.data
        ctx = self.stage_ctx("data")
        try:
            data = plugin_call(f"dataset {use.name!r}", use.obj.load, ctx)
        except PluginCallFailed as exc:
            raise StageFailed(f"{exc}; nothing can run without data") from None
        if not isinstance(data, DataSplits):
            raise UserError(f"dataset {use.name!r} returned {type(data).__name__}; expected simbench.DataSplits")
        self.task = resolve_task(self.registry, data, use.name)  # an unknown task stops the run before training
        return data

    def data_key(self) -> dict[str, Any]:
        # the loaded data's content (and the data files' sha256) are part of every downstream key
        return {**_plugin_key(self.suite.data), "seed": self.suite.seed, "content": self.data_fingerprint,
                "files": dict(self.suite.data_files)}

    def build_zoo(self, data: DataSplits) -> tuple[list[ModelSpec], dict[str, Any], str]:
        """Train (or load from the cache) every model; each of the zoo's groups on its own.

        A zoo with one group (the default) is one stage: if it fails the run
        stops with one line.  With several groups, a group that fails is
        recorded (``zoo/<first id>``) and the run goes on with the others,
        as long as two models are left.
        """
        zoo_use = self.suite.zoo
        zoo = zoo_use.obj
        what = f"zoo {zoo_use.name!r}"
        specs, groups, whole = self.zoo_layout()

        keys: list[str] = []
        models: dict[str, Any] = {}
        kept: set[str] = set()
        # several groups: a line counting them above each group's own (epochs), with the zoo's time-based ETA
        advance = (self._progress(f"Zoo {zoo_use.name} ({len(specs)} models)", len(groups), "groups")
                   if not whole else (lambda step=1: None))
        for group in groups:
            key = self.zoo_group_key(group, whole)
            cell_id = f"zoo/{group[0]}"
            try:
                tensors, _ = self._get_or_compute(key, self._zoo_compute(data, group, whole))
                by_id = {s.id: s for s in specs}
                try:
                    for mid in group:
                        models[mid] = self._restore(zoo, by_id[mid], data, tensors, mid)
                finally:
                    self._check_untouched(f"{what} instantiate", models=False)
            except (StageFailed, PluginCallFailed) as exc:
                if whole:
                    raise StageFailed(str(exc)) from None
                self._record_stage_failure(cell_id, "zoo", group[0], f"group of {len(group)} models: {exc}")
                for mid in group:
                    models.pop(mid, None)
                    self.restorer.forget_model(mid)
                advance(1)
                continue
            if not whole:
                self._clear_stage_failure(cell_id)
            keys.append(key)
            kept.update(group)
            advance(1)
        # held-out models (ModelSpec.held_out) are trained with their group but never analysed: they go
        # to the perturbations only (PerturbContext.held_out), e.g. as attack sources outside the zoo
        held = [s for s in specs if s.held_out and s.id in kept]
        self.state.held_out = {s.id: models.pop(s.id) for s in held}
        self.state.held_out_specs = held
        if len([s for s in specs if s.id in kept and not s.held_out]) < 2:
            raise StageFailed(f"{what}: fewer than two models were built (every failing group is listed above)")
        specs = [s for s in specs if s.id in kept and not s.held_out]
        return specs, models, keys[0] if whole else content_hash(keys)

    def zoo_layout(self) -> tuple[list[ModelSpec], list[list[str]], bool]:
        """The zoo's specs and groups (cheap, nothing trained), checked; and whether it is one group."""
        zoo_use = self.suite.zoo
        zoo = zoo_use.obj
        what = f"zoo {zoo_use.name!r}"
        try:
            specs = list(plugin_call(f"{what} specs", zoo.specs))
            groups = [list(g) for g in plugin_call(f"{what} groups", zoo.groups)]
        except PluginCallFailed as exc:
            raise StageFailed(str(exc)) from None
        ids = [s.id for s in specs]
        if len(set(ids)) != len(ids):
            raise UserError(f"zoo {zoo_use.name!r} produced duplicate model ids")
        if len(specs) < 2:
            raise UserError(f"zoo {zoo_use.name!r} with these parameters has {len(specs)} model(s); need at least 2")
        grouped = [i for g in groups for i in g]
        if sorted(grouped) != sorted(ids):
            raise UserError(f"zoo {zoo_use.name!r}: groups() must list every model id exactly once")
        return specs, groups, len(groups) == 1

    def zoo_group_key(self, group: Sequence[str], whole: bool) -> str:
        """The cache key of one zoo group's trained weights (the whole zoo when it is one group)."""
        base = {"zoo": _plugin_key(self.suite.zoo), "data": self.data_key(), "device": self.device}
        return self.cache.key("zoo", base if whole else {**base, "group": list(group)})

    def _zoo_compute(self, data: DataSplits, group: Sequence[str],
                     whole: bool) -> Callable[[], tuple[dict[str, Any], dict[str, Any]]]:
        """Train one group (the whole zoo when ``whole``): its flattened state dicts, for the cache."""
        zoo_use = self.suite.zoo
        zoo = zoo_use.obj
        what = f"zoo {zoo_use.name!r}"
        group = list(group)

        def compute() -> tuple[dict[str, Any], dict[str, Any]]:
            # every group sees the zoo stage's seed: a zoo derives each model's seeds from it (and the model's
            # own factors), so a model does not depend on how the zoo is split into groups
            ctx = self.stage_ctx("zoo")
            try:
                try:
                    if whole:
                        built = plugin_call(f"{what} build", zoo.build, data, ctx)
                    else:
                        built = plugin_call(f"{what} build_group", zoo.build_group, list(group), data, ctx)
                finally:
                    self._check_untouched(f"{what} build")
            except PluginCallFailed as exc:
                raise StageFailed(str(exc)) from None
            if not isinstance(built, Mapping):
                raise StageFailed(f"{what} build returned {type(built).__name__}; expected {{model id: module}}")
            missing = [i for i in group if i not in built]
            if missing:
                raise StageFailed(f"zoo {zoo_use.name!r} did not build models {missing[:3]}")
            return _flatten_state(built, group), {"ids": group}

        return compute

    def _get_or_compute(self, key: str,
                        compute: Callable[[], tuple[Mapping[str, Any], Mapping[str, Any]]]) -> tuple[dict[str, Any], dict[str, Any]]:
        """The cache's ``get_or_compute``, except that a task an executor already ran and saw fail is not rerun."""
        failed = self._task_failures.get(key)
        if failed is not None and self.cache.load(key) is None:
            self.cache.misses += 1
            raise StageFailed(failed)
        return self.cache.get_or_compute(key, compute)

    def _restore(self, zoo: Any, spec: ModelSpec, data: DataSplits, tensors: Mapping[str, Any], prefix: str) -> Any:
        """One model from its cached state.  The caller checks the data once after a batch of these
        (``_check_untouched(..., models=False)``): a check per model would cost M comparisons of the data."""
        module = plugin_call(f"zoo {self.suite.zoo.name!r} instantiate", zoo.instantiate, spec, data)
        state = {k[len(prefix) + 2 :]: v for k, v in tensors.items() if k.startswith(prefix + "::")}
        module.load_state_dict(state, strict=True)
        # kept to put weights back if a plugin modifies a model in place
        self._model_state[prefix] = state
        self.restorer.keep_model(prefix, module, state)
        return module.to(self.device).eval()

    def perturb_models(self, data: DataSplits) -> None:
        """Apply every model-target perturbation to the zoo's own models.

        Each perturbation sees the zoo as built, not the copies an earlier
        ``[[perturbations]]`` entry added: entries are independent and their
        order does not matter (two manipulations of a zoo give 2 x M copies,
        not copies of copies).  One that raises, or modifies the zoo's models
        in place, is recorded as failed and the run goes on without it.
        """
        base_models, base_specs, base_key = dict(self.state.models), tuple(self.state.specs), self.state.zoo_key
        base_ids = [s.id for s in base_specs]
        for use in self.suite.perturbations:
            if use.obj.target != "model":
                continue
            cell_id = f"perturbation/{use.label}"
            key = self.cache.key("model_perturbation", {"perturbation": _plugin_key(use), "zoo": base_key})

            def compute(use: PluginUse = use) -> tuple[dict[str, Any], dict[str, Any]]:
                ctx = self.stage_ctx("model_perturbation", use.label)
                pctx = PerturbContext(
                    seed=ctx.seed, device=ctx.device, progress=ctx.progress, cache=ctx.cache, log=ctx.log,
                    verbose=ctx.verbose, models=dict(base_models), specs=base_specs, data=data,
                )
                try:
                    entries = plugin_call(f"perturbation {use.label!r}", use.obj.perturb_models,
                                          dict(base_models), list(base_specs), data, pctx)
                finally:  # the zoo's models or the data changed in place: put back, and this perturbation fails
                    self._check_untouched(f"perturbation {use.label!r}")
                entries = list(entries)
                new_specs = [{"id": s.id, "factors": dict(s.factors)} for s, _ in entries]
                for s, _ in entries:
                    if s.factors.get("original") not in base_ids:
                        raise PluginCallFailed(
                            f"perturbation {use.name!r}: new model {s.id!r} must name its original in factors['original']"
                        )
                return _flatten_state({s.id: m for s, m in entries}, [s.id for s, _ in entries]), {"specs": new_specs}

            added: list[tuple[ModelSpec, Any]] = []
            try:
                tensors, meta = self.cache.get_or_compute(key, compute)
                by_id = {s.id: s for s in self.state.specs}
                for item in meta["specs"]:
                    spec = ModelSpec(item["id"], item["factors"])
                    base = by_id[item["factors"]["original"]]
                    if spec.id in self.state.models or spec.id in {s.id for s, _ in added}:
                        raise PluginCallFailed(
                            f"perturbation {use.name!r} produced model id {spec.id!r}, which already exists")
                    added.append((spec, self._restore(self.suite.zoo.obj, base, data, tensors, spec.id)))
                self._check_untouched(f"zoo {self.suite.zoo.name!r} instantiate", models=False)
            except PluginCallFailed as exc:
                for spec, _ in added:  # never part of the run: not kept for restoring either
                    self.restorer.forget_model(spec.id)
                self._restore_models()
                self._record_stage_failure(cell_id, "perturbation", use.label, str(exc))
                continue
            self._clear_stage_failure(cell_id)
            for spec, module in added:
                self.state.models[spec.id] = module
                self.state.specs.append(spec)
            self.state.zoo_key = content_hash([self.state.zoo_key, key])

    def make_probe_sets(self, data: DataSplits) -> None:
        """The clean probe set and every input perturbation's probe sets.

        A perturbation that raises, or modifies its inputs or the models in
        place, is recorded as failed; a probe set with NaN/inf inputs is
        recorded as failed and left out.  Neither enters the cache.
        """
        split = data.test if self.suite.probes["split"] == "test" else data.val
        n = self.suite.probes["n"] or len(split)
        # clone: the probe set must not share memory with the dataset a plugin could modify
        clean = ProbeSet("clean", split.x[:n].clone(), split.y[:n].clone(), {"split": self.suite.probes["split"]})
        self.restorer.keep("clean", clean)
        clean_key = content_hash({"data": self.data_key(), "probes": self.suite.probes})
        self.state.probe_sets["clean"] = clean
        self.state.probe_keys["clean"] = clean_key
        inputs = [u for u in self.suite.perturbations if u.obj.target == "input"]
        advance = self._progress("Probe sets", len(inputs), "perturbations")
        for use in inputs:
            cell_id = f"perturbation/{use.label}"
            key = self.cache.key(
                "probe_sets", {"perturbation": _plugin_key(use), "clean": clean_key, "zoo": self.state.zoo_key}
            )

            def compute(use: PluginUse = use) -> tuple[dict[str, Any], dict[str, Any]]:
                ctx = self.stage_ctx("probe_sets", use.label)
                pctx = PerturbContext(
                    seed=ctx.seed, device=ctx.device, progress=ctx.progress, cache=ctx.cache, log=ctx.log,
                    verbose=ctx.verbose, models=self.state.models, specs=tuple(self.state.specs), data=data,
                    held_out=self.state.held_out, held_out_specs=tuple(self.state.held_out_specs),
                )
                given = _clone_probe_set(clean)
                try:
                    sets = list(plugin_call(f"perturbation {use.label!r}", use.obj.probe_sets, given, pctx))
                finally:  # the models or the data changed in place: put back, and this perturbation fails
                    self._check_untouched(f"perturbation {use.label!r}")
                if not _same(given, clean):
                    raise PluginCallFailed(f"perturbation {use.label!r} modified its input probe set in place")
                tensors: dict[str, Any] = {}
                metas = []
                rejected = []
                for ps in sets:
                    if not isinstance(ps, ProbeSet):
                        raise PluginCallFailed(f"perturbation {use.label!r} returned {type(ps).__name__}; "
                                               "expected simbench.ProbeSet")
                    why = _non_finite(ps)
                    if why:  # never cached: the probe set fails, the perturbation's other sets go on
                        rejected.append({"name": ps.name, "error": why})
                        continue
                    j = len(metas)
                    tensors[f"{j}::x"] = ps.x
                    tensors[f"{j}::y"] = ps.y
                    for mid, xm in (ps.x_by_model or {}).items():
                        tensors[f"{j}::m::{mid}"] = xm
                    metas.append({"name": ps.name, "meta": dict(ps.meta), "per_model": ps.x_by_model is not None})
                return tensors, {"sets": metas, "rejected": rejected}

            try:
                tensors, meta = self.cache.get_or_compute(key, compute)
            except PluginCallFailed as exc:
                self._restore_models()
                self._record_stage_failure(cell_id, "perturbation", use.label, str(exc))
                advance(1)
                continue
            self._clear_stage_failure(cell_id)
            for item in meta.get("rejected", []):
                self._record_stage_failure(f"probe_set/{item['name']}", "probe_set", item["name"],
                                           f"perturbation {use.label!r}: {item['error']}")
            for j, item in enumerate(meta["sets"]):
                name = item["name"]
                if name in self.state.probe_sets:
                    raise UserError(f"perturbation {use.name!r} produced probe set {name!r} twice")
                per_model = None
                if item["per_model"]:
                    prefix = f"{j}::m::"
                    per_model = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
                self.run_dir.remove_cell(f"probe_set/{name}")
                self.state.probe_sets[name] = ProbeSet(name, tensors[f"{j}::x"], tensors[f"{j}::y"], item["meta"], per_model)
                self.restorer.keep(name, self.state.probe_sets[name])
                self.state.probe_keys[name] = content_hash([key, name])
            advance(1)

    def representations(self, probe_set: str, layer: str | None) -> tuple[list[Any], list[Any]]:
        """Each model's activations at ``layer`` and its outputs on a probe set (cached)."""
        layer = layer or self.suite.probes["layer"]
        if probe_set in self.state.failed_probe_sets:
            raise MeasurementFailed(f"probe set {probe_set!r} failed: {self.state.failed_probe_sets[probe_set]}")
        memo = (probe_set, layer)
        if memo in self._reps:
            return self._reps[memo]
        ps = self.state.probe_sets[probe_set]
        specs = self.state.specs
        key = self.representations_key(probe_set, layer)

        def compute() -> tuple[dict[str, Any], dict[str, Any]]:
            import torch

            tensors = {}
            for i, spec in enumerate(specs):
                model = self.state.models[spec.id]
                name = model.default_layer if layer == "default" else layer
                if name not in model.readable_layers:
                    raise UserError(
                        f"probes.layer: model {spec.id!r} has no layer {name!r}; "
                        f"readable layers: {', '.join(model.readable_layers)}"
                    )
                x = ps.inputs_for(spec.id)
                reps, outs = [], []
                with torch.no_grad():
                    for start in range(0, x.shape[0], INFER_BATCH):
                        xb = x[start : start + INFER_BATCH].to(self.device)
                        reps.append(stored_activations(model.read(xb, [name])[name].reshape(xb.shape[0], -1)))
                        outs.append(model(xb).float().cpu())
                tensors[f"rep::{i}"] = torch.cat(reps)
                tensors[f"out::{i}"] = torch.cat(outs)
                if not bool(torch.isfinite(tensors[f"out::{i}"]).all()):
                    raise MeasurementFailed(f"model {spec.id!r} gives NaN/inf outputs on probe set {probe_set!r}")
            # a model's read/forward (zoo code) is handed slices of the probe set itself: an in-place op on its
            # input would change what every later model and probe set reads
            try:
                self._check_untouched(f"reading the models on probe set {probe_set!r}")
            except PluginCallFailed as exc:
                raise MeasurementFailed(str(exc)) from None
            return tensors, {"ids": [s.id for s in specs]}

        def check(tensors: Mapping[str, Any], meta: Mapping[str, Any]) -> None:
            # a checksum-valid entry for other models (or missing one) is rebuilt, never read misaligned
            if list(meta.get("ids", [])) != [s.id for s in specs]:
                raise ValueError("it was written for other models")
            for i in range(len(specs)):
                for part in ("rep", "out"):
                    t = tensors.get(f"{part}::{i}")
                    if t is None or t.ndim != 2 or t.shape[0] != ps.x.shape[0]:
                        raise ValueError(f"{part}::{i} is missing or not [{ps.x.shape[0]}, features]")

        tensors, _ = self.cache.get_or_compute(key, compute, check)
        result = ([tensors[f"rep::{i}"] for i in range(len(specs))], [tensors[f"out::{i}"] for i in range(len(specs))])
        self._reps[memo] = result
        return result

    def representations_key(self, probe_set: str, layer: str | None = None) -> str:
        """The cache key of every model's activations and outputs on one probe set."""
        layer = layer or self.suite.probes["layer"]
        return self.cache.key(
            "representations", {"zoo": self.state.zoo_key, "probe_set": self.state.probe_keys[probe_set], "layer": layer}
        )

    # -- cells ------------------------------------------------------------------------

    def _cell(self, cell_id: str) -> tuple[bool, list[dict[str, Any]], dict[str, Any]]:
        """Whether a finished cell exists; if so, its rows and meta (damaged or foreign cells are recomputed)."""
        self.cells.append(cell_id)
        found = self.run_dir.load_cell(cell_id)
        if found is not None:
            self.reused += 1
            return True, found[0], found[1]
        return False, [], {}

    def agreement_cell(self, probe_set: str) -> None:
        import torch

        cell_id = f"agreement/{probe_set}"
        ids = [s.id for s in self.state.specs]
        self.run_dir.set_models(ids)  # before the cell is read: a cell for another model list is recomputed
        done, rows, meta = self._cell(cell_id)
        if done:
            self.state.agreements[probe_set] = torch.from_numpy(self.run_dir.read_array(meta))
            self.state.accuracies[probe_set] = torch.tensor(meta["accuracy"], dtype=torch.float64)
            return
        data = self.state.data
        assert data is not None
        task = self.task if self.task is not None else resolve_task(self.registry, data, self.suite.data.name)
        outputs = torch.stack(self.representations(probe_set, None)[1])  # [M, n, C]
        y = self.state.probe_sets[probe_set].y
        agreement, accuracy = task_agreement(task, outputs, y, len(ids))
        rows = []
        for i in range(len(ids)):
            rows.append(record_row(self.suite.name, "accuracy", Record(
                "", task.score_name, float(accuracy[i]),
                probe_set=probe_set, model_a=ids[i], n=int(y.shape[0]))))
        # the matrix is one array file (the cell keeps a pointer and its sha256) and one row, not M^2 rows
        rows.append(matrix_row(self.suite.name, "agreement", "", probe_set, len(ids)))
        pointer = self.run_dir.write_matrix("agreement", "", probe_set, agreement)
        self.run_dir.write_cell(cell_id, rows, {**pointer, "accuracy": accuracy.tolist(), "n_models": len(ids),
                                                "task": task.name})
        self.computed += 1
        self.state.agreements[probe_set] = agreement
        self.state.accuracies[probe_set] = accuracy

    def similarity_cell(self, use: PluginUse, where: str) -> None:
        """Compute (or reuse) one metric's M x M matrix on one probe set ("weights" for weight metrics).

        The metric gets copies of the representations (weights, inputs), runs
        in a worker thread under ``run.cell_timeout``, and its output is
        validated (:func:`validate_matrix`).  Only a valid matrix from a
        metric that left its inputs untouched is cached; anything else is a
        failed cell with the reason, and the run goes on.
        """
        import torch

        cell_id = f"similarity/{use.label}/{where}"
        key = (use.label, where)
        ids = [s.id for s in self.state.specs]
        self.run_dir.set_models(ids)  # before the cell is read: a cell for another model list is recomputed
        done, rows, meta = self._cell(cell_id)
        if done:
            if meta.get("array") is None:
                self.state.failures[key] = meta.get("error", "failed")
            else:
                self.state.similarities[key] = torch.from_numpy(self.run_dir.read_array(meta))
            return
        metric = use.obj
        started = time.perf_counter()

        def inputs() -> tuple[Any, dict[str, Any]]:
            if metric.kind == "weight":
                reps = [[w.detach().to(self.device) for w in self.state.models[i].dense_weights()] for i in ids]
            else:
                reps = [r.to(self.device) for r in self.representations(where, None)[0]]
            kwargs = {}
            if metric.needs_inputs:
                kwargs["inputs"] = self._inputs(where).to(self.device)
            return reps, kwargs

        cache_key = self.similarity_key(use, where)
        matrix, flags, error = self._matrix_or_error(metric, ids, cache_key, inputs, ("similarity", use.label, where),
                                                     f"{use.label}@{where}")
        if error:
            log.warning("metric %s failed on %s: %s", use.label, where, error)
        seconds = time.perf_counter() - started
        # computed by an executor's worker: its time, not the time it took to read the result
        seconds = self._task_seconds.get(cache_key, seconds)
        rows = []
        probe_label = where
        if matrix is None:
            self.state.failures[key] = error
            rows.append(record_row(self.suite.name, "similarity", Record(
                "", MATRIX_STATISTIC, float("nan"), metric=use.label, probe_set=probe_label, status="failed",
                error=error)))
        else:
            self.state.similarities[key] = matrix
            # the whole matrix (asymmetric metrics: both directions) is one array file, and one row here
            rows.append(matrix_row(self.suite.name, "similarity", use.label, probe_label, len(ids)))
            for flag in flags:
                # a separate kind, so readers of similarity rows are unaffected; the leaderboard may show it
                name, _, model = flag.partition(":")
                rows.append(record_row(self.suite.name, "flag", Record(
                    "", name, 1.0, metric=use.label, probe_set=probe_label, model_a=model,
                    error=FLAG_MEANINGS.get(name, ""))))
        pointer = {} if matrix is None else self.run_dir.write_matrix("similarity", use.label, probe_label, matrix)
        self.run_dir.write_cell(cell_id, rows, {**pointer, "error": error, "seconds": seconds, "n_models": len(ids),
                                                "flags": flags})
        self.computed += 1

    def similarity_key(self, use: PluginUse, where: str) -> str:
        """The cache key of one metric's validated M x M matrix on one probe set (or the weights)."""
        if use.obj.kind == "weight":
            rep_key = self.state.zoo_key
        else:
            rep_key = content_hash([self.state.zoo_key, self.state.probe_keys[where], self.suite.probes["layer"]])
        return self.cache.key("similarity", {"metric": _plugin_key(use), "reps": rep_key})

    def _inputs(self, where: str) -> Any:
        """A probe set's inputs flattened to ``[n, features]`` (what ``needs_inputs`` metrics get)."""
        x = self.state.probe_sets[where].x
        return x.reshape(len(x), -1)

    def _matrix_or_error(self, metric: Any, ids: Sequence[str], cache_key: str,
                         inputs: Callable[[], tuple[Any, Mapping[str, Any]]], seed_tags: Sequence[str],
                         what: str, timing_repeats: int = 0) -> tuple[Any, list[str], str]:
        """``(matrix, flags, "")`` or ``(None, [], one-line error)``: the cached matrix, the error of a task an
        executor ran and saw fail, or the metric run now on ``inputs()`` (:meth:`_measure`).

        The one failure boundary of every metric cell (similarity cells and benchmarks' declared matrices):
        anything but ``KeyboardInterrupt`` (and the runner's own ``UserError``; a metric's becomes
        :class:`MeasurementFailed` in :func:`metric_job`) becomes the cell's one-line error.  A cached matrix that
        fails validation is discarded and computed again.  A timed matrix
        (``timing_repeats``) is measured now unless a worker measured it in this run (``_call_seconds``).
        """
        try:
            timed_elsewhere = cache_key in self._call_seconds
            found = self.cache.load(cache_key) if not timing_repeats or timed_elsewhere else None
            cached = None
            if found is not None:
                try:
                    cached = validate_matrix(found[0].get("matrix"), ids, metric)
                except Exception as exc:  # noqa: BLE001 - the entry, not the metric, is bad
                    # only valid matrices are ever cached: one that fails validation was damaged or planted, and
                    # is rebuilt rather than failing this cell (blaming the metric) in every later run
                    self.cache.discard(cache_key, f"holds a matrix that fails validation ({one_line(exc)})")
                    self._call_seconds.pop(cache_key, None)
            if cached is not None:
                matrix, flags = cached
                meta = found[1] if found is not None else {}
                notes = meta.get("notes") if isinstance(meta, Mapping) else None
                flags = flags + (list(notes) if isinstance(notes, list) else
                                 _metric_notes(metric, *inputs(), ids, what))
            elif cache_key in self._task_failures:  # an executor ran it and it failed: not run twice
                raise MeasurementFailed(self._task_failures[cache_key])
            else:
                reps, kwargs = inputs()
                matrix, flags = self._measure(metric, seed_tags, what, ids, reps, kwargs, cache_key, timing_repeats)
            return matrix, flags, ""
        except (KeyboardInterrupt, UserError):
            raise
        except BaseException as exc:  # noqa: BLE001 - a plugin's failure (SystemExit included) is a result
            return None, [], one_line(exc, typed=not isinstance(exc, MeasurementFailed))

    def _measure(self, metric: Any, seed_tags: Sequence[str], what: str, ids: Sequence[str], reps: Any,
                 kwargs: Mapping[str, Any], cache_key: str, timing_repeats: int = 0) -> tuple[Any, list[str]]:
        """Run a metric on copies of its inputs under the cell time limit; validate and cache the matrix.

        The one place a metric runs, in the client (local executor) or on a
        worker (a similarity or matrix task): :class:`MeasurementFailed` or the
        metric's own exception if it fails.  ``ids`` label the matrix's rows.  ``timing_repeats > 0`` (two
        sources): after the matrix, one warm-up call of the metric's one-pair ``metric(a, b)``, then that many
        timed calls, all under one cell time limit; their wall seconds go to ``self._call_seconds[cache_key]``.
        """
        seed = self.stage_ctx(*seed_tags).seed
        timeout = float(self.suite.run["cell_timeout"])
        if self.isolated(metric):
            # a worker process per cell (simbench.isolation): it gets its own copies through the pipe, checks them
            # itself, and is killed at the time limit or fails the cell if it vanishes
            raw, seconds, modified = call_in_process(
                metric_job, (metric, reps, dict(kwargs), timing_repeats, self.device, seed, True), timeout=timeout,
                threads=int(self.suite.run["threads"]), plugin_files=self._plugin_files(), what=what)
        else:
            given, given_kwargs = _clone(reps), _clone(dict(kwargs))
            raw, seconds, _ = call_with_timeout(
                lambda: metric_job(metric, given, given_kwargs, timing_repeats, self.device), timeout, what)
            modified = not _same(given, reps) or not _same(given_kwargs, dict(kwargs))
        if modified:
            raise MeasurementFailed("modified its input tensors in place; a metric must not change its inputs")
        matrix, flags = validate_matrix(raw, ids, metric)
        notes = _metric_notes(metric, reps, kwargs, ids, what)
        flags = flags + notes
        self.cache.save(cache_key, {"matrix": matrix}, {"notes": notes})
        if timing_repeats:
            self._call_seconds[cache_key] = seconds
        return matrix, flags

    def isolated(self, metric: Any) -> bool:
        """Whether a metric's cells run in a worker process (``run.isolation``; see :mod:`simbench.isolation`).

        ``"process"``: always; ``"thread"``: never; ``"auto"`` (the default):
        for metrics from ``--plugin`` files, code nobody installed or reviewed,
        whose ``os._exit`` or GIL-holding loop must not take the run with it.
        Never in a daemonic process (a Dask worker), which may not have children.
        """
        mode = str(self.suite.run.get("isolation", "auto"))
        if mode == "thread" or unavailable():
            return False
        if mode == "process":
            return True
        try:
            entry = self.registry.entry("metric", type(metric).name)
            info = self.registry.plugins.get(entry.plugin)
        except Exception:  # noqa: BLE001 - not registered by name (a notebook's class): in this process
            return False
        return info is not None and info.source == "file"

    def _plugin_files(self) -> list[str]:
        """The run's ``--plugin`` files (what a worker process loads before it unpickles a plugin)."""
        return [str(Path(info.location).resolve()) for info in self.registry.plugins.values() if info.source == "file"]

    def benchmark_cell(self, use: PluginUse, view: RunnerView | None = None) -> None:
        """Evaluate one benchmark on a read-only view of the store (its declared matrices computed before).

        A benchmark whose ``requests`` raised, or that raises, modifies the
        models or the data, is one failed row; the run goes on.
        """
        cell_id = f"benchmark/{use.label}"
        done, _, _ = self._cell(cell_id)
        if done:
            return
        self.stage_ctx("benchmark", use.label)
        started = time.perf_counter()
        if view is None:
            view = RunnerView(self, use.label)
        try:
            if use.label in self._request_failures:
                raise PluginCallFailed(self._request_failures[use.label])
            try:
                records = list(plugin_call(f"benchmark {use.label!r}", use.obj.evaluate, view))
            finally:  # the data (view.data is the run's own) changed in place: put back before the next benchmark
                self._check_untouched(f"benchmark {use.label!r}")
            rows = [record_row(self.suite.name, "benchmark", _with_benchmark(r, use.label)) for r in records]
            error = ""
        except Exception as exc:  # noqa: BLE001 - recorded, reported, and the run goes on (a UserError too)
            error = one_line(exc, typed=not isinstance(exc, PluginCallFailed))
            log.warning("benchmark %s failed: %s", use.label, error)
            rows = [record_row(self.suite.name, "benchmark", Record(use.label, "evaluate", float("nan"),
                                                                    status="failed", error=error))]
            self._restore_models()  # cheap, and undoes any in-place change the benchmark made
        self.run_dir.write_cell(cell_id, rows, {"seconds": time.perf_counter() - started, "error": error,
                                                "benchmark": use.name})
        self.computed += 1

    # -- benchmarks' declared matrices ----------------------------------------------------

    def model(self, model_id: str) -> Any:
        try:
            return self.state.models[model_id]
        except KeyError:
            raise UserError(f"unknown model {model_id!r}; this run has {len(self.state.specs)} models "
                            f"({', '.join(s.id for s in self.state.specs[:5])}, ...)") from None

    def request_metric(self, metric: str, params: Sequence[tuple[str, Any]] | Mapping[str, Any]) -> tuple[Any, dict[str, Any]]:
        """A request's metric object and its cache key part: the suite's metric ``metric`` (a label, when no
        parameters are given), else the registered metric ``metric`` configured with ``params``."""
        params = dict(params)
        if not params:
            for use in self.suite.metrics:
                if use.label == metric:
                    return use.obj, _plugin_key(use)
        obj, key, message = self.registry.configure("metric", metric, params)
        if obj is None:
            raise UserError(f"metric {metric!r}: parameter {key!r}: {message}")
        cls = type(obj)
        return obj, {"name": cls.name, "version": obj.version, "params": obj.params(), "code": class_code_hash(cls)}

    def _transform(self, source: Source) -> Any:
        obj, key, message = self.registry.configure("perturbation", source.transform, dict(source.transform_params))
        if obj is None:
            raise UserError(f"perturbation {source.transform!r}: parameter {key!r}: {message}")
        if obj.target != "representation":
            raise UserError(f"perturbation {source.transform!r} has target {obj.target!r}; a source's transform "
                            "must be a target = 'representation' perturbation")
        return obj

    def check_source(self, source: Source, where: str) -> None:
        """``UserError`` (one line, naming ``where``) if a source names an unknown model, layer, probe set or
        transform; a source on a failed probe set passes (its matrix fails when computed)."""
        try:
            if not isinstance(source, Source):
                raise UserError(f"expected simbench.Source, got {type(source).__name__}")
            model = self.model(source.model)
            if source.dtype not in SOURCE_DTYPES:
                raise UserError(f"dtype must be one of {', '.join(repr(d) for d in SOURCE_DTYPES)}, "
                                f"got {source.dtype!r}")
            if source.is_weights:
                overridden = source.transform and (type(self._transform(source)).transform_weights
                                                   is not Perturbation.transform_weights)
                if source.transform and not overridden:
                    raise UserError(f"perturbation {source.transform!r} does not transform weights "
                                    "(it has no transform_weights)")
                return
            if source.probe_set not in self.state.probe_sets and source.probe_set not in self.state.failed_probe_sets:
                raise UserError(f"unknown probe set {source.probe_set!r}; this suite has: "
                                f"{', '.join(self.state.probe_sets)}")
            if source.layer != "default" and source.layer not in model.readable_layers:
                raise UserError(f"model {source.model!r} has no layer {source.layer!r}; readable layers: "
                                f"{', '.join(model.readable_layers)}")
            if source.rows is not None and source.probe_set in self.state.probe_sets:
                n = int(self.state.probe_sets[source.probe_set].x.shape[0])
                if not source.rows or min(source.rows) < 0 or max(source.rows) >= n:
                    raise UserError(f"rows must be non-empty indices in [0, {n}) of probe set {source.probe_set!r}")
            if source.transform:
                self._transform(source)
        except UserError as exc:
            raise UserError(f"{where}: {exc}") from None

    def _source_key(self, source: Source) -> Any:
        """What one source's tensor depends on (part of a declared matrix's cache key)."""
        if source.is_weights:
            key: dict[str, Any] = {"weights": self.state.zoo_key, "model": source.model}
        else:
            layer = self.suite.probes["layer"] if source.layer == "default" else source.layer
            key = {"zoo": self.state.zoo_key, "probe_set": self.state.probe_keys.get(source.probe_set, ""),
                   "model": source.model, "layer": layer, "rows": source.rows}
        if source.dtype:  # only when set, so the keys of sources without one stay what they were
            key["dtype"] = source.dtype
        if source.transform:
            use = self._transform(source)
            cls = type(use)
            key["transform"] = {"name": cls.name, "version": use.version, "params": use.params(),
                                "code": class_code_hash(cls), "seed": source.transform_seed}
        return key

    def _model_layer(self, probe_set: str, layer: str, model_id: str) -> Any:
        """One model's activations at ``layer`` on a probe set: from the run's representations when every model
        has the layer (the same tensors ``representations`` gives), else read from that model alone (cached)."""
        if probe_set in self.state.failed_probe_sets:
            raise MeasurementFailed(f"probe set {probe_set!r} failed: {self.state.failed_probe_sets[probe_set]}")
        index = [s.id for s in self.state.specs].index(model_id)
        if layer == "default":
            return self.representations(probe_set, None)[0][index]
        memo = (probe_set, layer)
        if memo not in self._layer_memo:
            if len(self._layer_memo) >= 2:  # requests are grouped by probe set: keep little in memory
                self._layer_memo.clear()
            if all(layer in self.state.models[s.id].readable_layers for s in self.state.specs):
                suite_layer = (probe_set, self.suite.probes["layer"])
                self._layer_memo[memo] = self.representations(probe_set, layer)[0]
                if memo != suite_layer:
                    self._reps.pop(memo, None)  # not kept alive for the rest of the run
            else:
                self._layer_memo[memo] = {}
        found = self._layer_memo[memo]
        if isinstance(found, list):
            return found[index]
        if model_id not in found:
            found[model_id] = self._read_one(probe_set, layer, model_id)
        return found[model_id]

    def _read_one(self, probe_set: str, layer: str, model_id: str) -> Any:
        """A layer that not every model has, read from one model (batched as the representations stage)."""
        key = self.cache.key("representations", {"zoo": self.state.zoo_key, "probe_set": self.state.probe_keys[probe_set],
                                                 "layer": layer, "model": model_id})

        def compute() -> tuple[dict[str, Any], dict[str, Any]]:
            import torch

            model = self.state.models[model_id]
            x = self.state.probe_sets[probe_set].inputs_for(model_id)
            reps = []
            with torch.no_grad():
                for start in range(0, x.shape[0], INFER_BATCH):
                    xb = x[start : start + INFER_BATCH].to(self.device)
                    reps.append(stored_activations(model.read(xb, [layer])[layer].reshape(xb.shape[0], -1)))
            return {"rep": torch.cat(reps)}, {}

        return self.cache.get_or_compute(key, compute)[0]["rep"]

    def source_tensor(self, source: Source) -> Any:
        """One source materialised: a model's weights, or its activations with the transform and rows applied.

        A transformed source is computed once and kept (up to :data:`SOURCE_MEMO_BYTES`, oldest dropped
        first); callers never modify what they get (metrics and the view get copies)."""
        if not source.transform:
            return self._materialise(source)
        if source in self._source_memo:
            return self._source_memo[source][0]
        found = self._materialise(source)
        size = sum(t.numel() * t.element_size() for t in (found if isinstance(found, list) else [found]))
        if size <= SOURCE_MEMO_BYTES:
            while self._source_memo and size + sum(n for _, n in self._source_memo.values()) > SOURCE_MEMO_BYTES:
                self._source_memo.pop(next(iter(self._source_memo)))
            self._source_memo[source] = (found, size)
        return found

    def _materialise(self, source: Source) -> Any:
        return materialise_source(
            source,
            layer=lambda: self._model_layer(source.probe_set, source.layer, source.model),
            weights=lambda: self.model(source.model).dense_weights(),
            labels=lambda: self.state.probe_sets[source.probe_set].y,
            transform=self._transform(source) if source.transform else None,
            device=self.device,
        )

    def _request_inputs(self, request: MatrixRequest, metric: Any) -> tuple[Any, dict[str, Any]]:
        first = request.sources[0]
        reps = [self.source_tensor(src) for src in request.sources]
        reps = [[w.to(self.device) for w in r] if isinstance(r, list) else r.to(self.device) for r in reps]
        kwargs: dict[str, Any] = {}
        if metric.needs_inputs and not first.is_weights:
            x = self.state.probe_sets[first.probe_set].inputs_for(first.model)
            x = x.reshape(len(x), -1)
            kwargs["inputs"] = (x[list(first.rows)] if first.rows is not None else x).to(self.device)
        return reps, kwargs

    def collect_requests(self) -> list[_Planned]:
        """Every unfinished benchmark's declared matrices, checked (``UserError`` names benchmark and key).

        A benchmark whose ``requests`` raises is remembered as failed (its
        cell becomes one failed row); the others go on.
        """
        planned: list[_Planned] = []
        # asked also for finished benchmarks: their matrix cells are reused (never recomputed) and stay in the
        # results in the same order as in an uninterrupted run
        for use in self.suite.benchmarks:
            try:
                view = RunnerView(self)
                try:
                    requests = list(plugin_call(f"benchmark {use.label!r} requests", use.obj.requests, view))
                finally:
                    self._check_untouched(f"benchmark {use.label!r} requests")
            except (PluginCallFailed, MeasurementFailed) as exc:
                self._request_failures[use.label] = one_line(exc, typed=False)
                continue
            seen: set[str] = set()
            for request in requests:
                where = f"benchmark {use.label!r} request {getattr(request, 'key', request)!r}"
                if not isinstance(request, MatrixRequest):
                    raise UserError(f"{where}: expected simbench.MatrixRequest, got {type(request).__name__}")
                if not request.key or len(request.key) > 200 or not request.key.isprintable() or any(
                        c.isspace() for c in request.key):
                    raise UserError(f"{where}: key must be 1 to 200 printable characters without spaces")
                if request.key in seen:
                    raise UserError(f"{where}: the key is declared twice")
                seen.add(request.key)
                if len(request.sources) < 1:
                    raise UserError(f"{where}: needs at least one source")
                timing = request.timing_repeats
                if isinstance(timing, bool) or not isinstance(timing, int) or timing < 0:
                    raise UserError(f"{where}: timing_repeats must be an integer >= 0, got {timing!r}")
                if timing and len(request.sources) != 2:
                    raise UserError(f"{where}: a timed request (timing_repeats) times the metric on one pair; it "
                                    f"needs exactly 2 sources, not {len(request.sources)}")
                try:
                    metric, metric_key = self.request_metric(request.metric, request.metric_params)
                except UserError as exc:
                    raise UserError(f"{where}: {exc}") from None
                weights = [src.is_weights for src in request.sources if isinstance(src, Source)]
                if any(weights) != (metric.kind == "weight") or (any(weights) and not all(weights)):
                    raise UserError(f"{where}: metric {request.metric!r} is a {metric.kind} metric; its sources must "
                                    f"all be {'weights' if metric.kind == 'weight' else 'activations'}")
                for src in request.sources:
                    self.check_source(src, where)
                labels = [f"{src.model}@{src.layer}" for src in request.sources]
                labels = labels if len(set(labels)) == len(labels) else [f"{i}:{lab}" for i, lab in enumerate(labels)]
                identity: dict[str, Any] = {"metric": metric_key,
                                            "sources": [self._source_key(src) for src in request.sources]}
                if timing:  # a timed cell is its own task (several may time the same matrix): its own output key
                    identity["timed"] = [use.label, request.key, timing]
                key = self.cache.key("matrix", identity)
                planned.append(_Planned(use.label, request, metric, key, tuple(labels)))
                self.state.matrix_metrics[(use.label, request.key)] = metric
        return planned

    def matrix_stage(self, planned: Sequence[_Planned]) -> Stage:
        """One task per declared matrix whose cell is not finished and whose matrix is not cached.

        For a remote executor the client materialises the sources (layer
        reads, transforms, rows) into the cache first; a worker only runs the
        metric.  The local executor computes each when it reaches the cell.
        """
        remote = self.executor is not None and self.executor.remote
        tasks = []
        for item in planned:
            cell_id = f"matrix/{item.benchmark}/{item.request.key}"
            timed = item.request.timing_repeats > 0  # measured in this run, whatever the cache holds
            if self.run_dir.cell_path(cell_id).exists() or (self.cache.has(item.cache_key) and not timed):
                continue
            inputs_key = self.cache.key("matrix_inputs", {"matrix": item.cache_key})
            if remote and not self.cache.has(inputs_key):
                try:
                    reps, kwargs = self._request_inputs(item.request, item.metric)
                except (PluginCallFailed, MeasurementFailed) as exc:  # the cell records it
                    self._task_failures[item.cache_key] = one_line(exc, typed=False)
                    continue
                self.cache.save(inputs_key, *_pack_sources(reps, kwargs.get("inputs")))
            tasks.append(PlanTask(cell_id, "matrix", item.cache_key, (inputs_key,),
                              {"benchmark": item.benchmark, "key": item.request.key, "metric": item.request.metric,
                               "metric_params": dict(item.request.metric_params), "labels": list(item.labels),
                               "timing_repeats": item.request.timing_repeats}))
        return Stage("Benchmark matrices", tuple(tasks))

    def matrix_cell(self, item: _Planned) -> None:
        """Compute (or reuse) one benchmark's declared matrix, with the same boundary as a similarity cell."""
        import torch

        cell_id = f"matrix/{item.benchmark}/{item.request.key}"
        cell = (item.benchmark, item.request.key)
        done, _, meta = self._cell(cell_id)
        if done:
            if meta.get("values") is None:
                self.state.matrix_failures[cell] = meta.get("error", "failed")
            else:
                self.state.matrices[cell] = torch.tensor(meta["values"], dtype=torch.float64)
                if meta.get("call_seconds") is not None:
                    self.state.matrix_seconds[cell] = list(meta["call_seconds"])
            return
        started = time.perf_counter()
        matrix, flags, error = self._matrix_or_error(
            item.metric, item.labels, item.cache_key, lambda: self._request_inputs(item.request, item.metric),
            ("matrix", item.benchmark, item.request.key), cell_id, item.request.timing_repeats)
        call_seconds = self._call_seconds.pop(item.cache_key, None) if item.request.timing_repeats else None
        if error:
            log.warning("%s failed: %s", cell_id, error)
            self.state.matrix_failures[cell] = error
        else:
            self.state.matrices[cell] = matrix
            if call_seconds is not None:
                self.state.matrix_seconds[cell] = call_seconds
        seconds = self._task_seconds.get(item.cache_key, time.perf_counter() - started)
        # one row per matrix (the matrix itself is in the cell): which benchmark declared it, its size, its status
        row = record_row(self.suite.name, "matrix", Record(
            item.benchmark, "size", float(len(item.labels)), metric=item.request.metric, group=item.request.key,
            n=len(item.labels), status="failed" if error else "ok", error=error))
        # K x K is small (sources, not models): kept in the cell as "values" (the store's .npy arrays are M x M)
        self.run_dir.write_cell(cell_id, [row], {"values": None if matrix is None else matrix.tolist(), "error": error,
                                                 "seconds": seconds, "labels": list(item.labels), "flags": flags,
                                                 "call_seconds": None if error else call_seconds})
        self.computed += 1

    # -- the plan: stages of tasks an executor may run elsewhere --------------------------

    def zoo_stage(self) -> Stage:
        """One task per zoo group whose weights are not in the cache yet."""
        _, groups, whole = self.zoo_layout()
        tasks = []
        for group in groups:
            key = self.zoo_group_key(group, whole)
            if not self.cache.has(key):
                tasks.append(PlanTask(f"zoo/{group[0]}", "zoo_group", key, (), {"group": list(group), "whole": whole}))
        return Stage("Zoo groups", tuple(tasks))

    def representation_stage(self, probe_names: Sequence[str]) -> Stage:
        """One task per probe set whose representations (every model's activations and outputs) are not cached.

        The client writes the probe set's inputs to the cache; a worker loads
        the zoo (and model perturbations) from the cache, forwards the probe
        set through every model and writes the representations entry, which
        the client's representations stage then finds.
        """
        remote = self.executor is not None and self.executor.remote
        tasks = []
        for name in probe_names:
            key = self.representations_key(name)
            if not remote or self.cache.has(key):
                continue
            ps = self.state.probe_sets[name]
            inputs_key = self.cache.key("representation_inputs", {"representations": key})
            if not self.cache.has(inputs_key):
                tensors = {"x": ps.x, "y": ps.y, **{f"m::{mid}": xm for mid, xm in (ps.x_by_model or {}).items()}}
                self.cache.save(inputs_key, tensors, {"per_model": ps.x_by_model is not None})
            tasks.append(PlanTask(f"representations/{name}", "representations", key, (inputs_key,),
                              {"probe_set": name, "probe_key": self.state.probe_keys[name],
                               "zoo_key": self.state.zoo_key, "ids": [s.id for s in self.state.specs]}))
        return Stage("Representations", tuple(tasks))

    def similarity_stage(self, cells: Sequence[tuple[PluginUse, str]]) -> Stage:
        """One task per (metric, probe set) whose cell is not finished and whose matrix is not cached.

        Its inputs (representations, weights, probe inputs) are put in the
        cache first, so a worker reads them from the shared directory.
        """
        tasks = []
        for use, where in cells:
            cell_id = f"similarity/{use.label}/{where}"
            key = self.similarity_key(use, where)
            if self.run_dir.cell_path(cell_id).exists() or self.cache.has(key):
                continue
            if use.obj.kind == "weight":
                inputs = [self._weights_entry()]
            else:
                self.representations(where, None)  # cached by the representations stage; a no-op here
                inputs = [self.representations_key(where)]
            if use.obj.needs_inputs:
                inputs.append(self._inputs_entry(where))
            tasks.append(PlanTask(cell_id, "similarity", key, tuple(inputs),
                              {"metric": use.label, "where": where, "ids": [s.id for s in self.state.specs]}))
        return Stage("Similarity", tuple(tasks))

    def _weights_entry(self) -> str:
        """Every model's dense weights in the cache (what weight metrics read on a worker)."""
        key = self.cache.key("weights", {"zoo": self.state.zoo_key})
        if not self.cache.has(key):
            tensors, counts, strides = {}, [], {}
            for i, spec in enumerate(self.state.specs):
                ws = list(self.state.models[spec.id].dense_weights())
                counts.append(len(ws))
                for j, w in enumerate(ws):
                    tensors[f"w::{i}::{j}"] = w.detach()
                    strides[f"w::{i}::{j}"] = list(w.stride())
            # the layout too (dense_weights often returns transposed views): BLAS rounds differently for
            # another memory layout, and a worker must compute the client's numbers to the last bit
            self.cache.save(key, tensors, {"counts": counts, "ids": [s.id for s in self.state.specs],
                                           "strides": strides})
        return key

    def _inputs_entry(self, where: str) -> str:
        key = self.cache.key("inputs", {"probe_set": self.state.probe_keys[where]})
        if not self.cache.has(key):
            self.cache.save(key, {"x": self._inputs(where)})
        return key

    def _load_entry(self, key: str) -> tuple[dict[str, Any], dict[str, Any]]:
        found = self.cache.load(key)
        if found is None:
            raise UserError(f"cache entry {key} is missing from {self.cache.root} on this worker; the cache "
                            "directory must be shared by the client and every worker (--cache-dir)")
        return found

    def run_task(self, task: PlanTask) -> dict[str, Any]:
        """Run one task in this process (a worker): read its inputs from the cache, write its output there.

        Raises what the stage raises (a plugin failure, :class:`MeasurementFailed`);
        :func:`simbench.executors.run_task` turns that into a failed result.
        """
        if task.kind == "zoo_group":
            data = self._worker_data()
            self.cache.get_or_compute(task.output, self._zoo_compute(data, task.args["group"], task.args["whole"]))
            return {}
        if task.kind == "representations":
            self._worker_models()
            if self.state.zoo_key != task.args["zoo_key"] or [s.id for s in self.state.specs] != task.args["ids"]:
                raise MeasurementFailed("the zoo this worker loads from the cache differs from the client's")
            name = task.args["probe_set"]
            tensors, meta = self._load_entry(task.inputs[0])
            per_model = ({k[3:]: v for k, v in tensors.items() if k.startswith("m::")} if meta.get("per_model")
                         else None)
            self.state.probe_sets[name] = ProbeSet(name, tensors["x"], tensors["y"], {}, per_model)
            self.restorer.keep(name, self.state.probe_sets[name])
            self.state.probe_keys[name] = task.args["probe_key"]
            self.representations(name, None)  # computes and writes the cache entry task.output
            return {}
        if task.kind == "similarity":
            use = self.metric_use(task.args["metric"])
            ids = list(task.args["ids"])
            tensors, meta = self._load_entry(task.inputs[0])
            if list(meta.get("ids", ids)) != ids:
                raise UserError(f"cache entry {task.inputs[0]} holds other models than the plan")
            if use.obj.kind == "weight":
                strides = meta.get("strides", {})
                reps: Any = [[_with_strides(tensors[f"w::{i}::{j}"], strides.get(f"w::{i}::{j}")).to(self.device)
                              for j in range(n)] for i, n in enumerate(meta["counts"])]
            else:
                reps = [tensors[f"rep::{i}"].to(self.device) for i in range(len(ids))]
            kwargs = {}
            if use.obj.needs_inputs:
                kwargs["inputs"] = self._load_entry(task.inputs[1])[0]["x"].to(self.device)
            where = task.args["where"]
            _, flags = self._measure(use.obj, ("similarity", use.label, where), f"{use.label}@{where}", ids, reps,
                                     kwargs, task.output)
            return {"flags": flags}
        if task.kind == "matrix":
            metric, _ = self.request_metric(task.args["metric"], task.args["metric_params"])
            tensors, meta = self._load_entry(task.inputs[0])
            reps = _unpack_sources(tensors, meta, self.device)
            kwargs = {"inputs": tensors["inputs"].to(self.device)} if "inputs" in tensors else {}
            timing = int(task.args.get("timing_repeats", 0))
            _, flags = self._measure(metric, ("matrix", task.args["benchmark"], task.args["key"]), task.id,
                                     list(task.args["labels"]), reps, kwargs, task.output, timing)
            return {"flags": flags, "call_seconds": self._call_seconds.pop(task.output, None)}
        raise UserError(f"unknown task kind {task.kind!r}")

    def _worker_models(self) -> None:
        """The zoo and its model perturbations on a worker, loaded from the cache once per worker."""
        if self.state.specs:
            return
        data = self._worker_data()
        specs, models, zoo_key = self.build_zoo(data)
        self.state.specs, self.state.models, self.state.zoo_key = specs, models, zoo_key
        self.perturb_models(data)

    def _worker_data(self) -> DataSplits:
        """The dataset, loaded once per worker and checked against the client's by content."""
        if self.state.data is None:
            data = self.load_data()
            if self.data_fingerprint and fingerprint(data) != self.data_fingerprint:
                raise UserError(f"dataset {self.suite.data.name!r} loads other data on this worker than on the "
                                "client; share the data files (and the Hugging Face cache)")
            self.state.data = data
            self.restorer.keep("the data", data)
        return self.state.data

    def _job(self) -> WorkerJob:
        files = tuple(str(Path(info.location).resolve()) for info in self.registry.plugins.values()
                      if info.source == "file")
        return WorkerJob(
            suite_path=str(Path(self.suite.path).resolve()), overrides=tuple(self.suite.overrides),
            plugin_files=files, suite_sha256=self.suite.sha256, cache_dir=str(self.cache.root.resolve()),
            device=str(self.suite.run["device"]), threads=int(self.suite.run["threads"]),
            data_fingerprint=self.data_fingerprint, plugins=suite_plugins(self.suite, self.registry),
        )

    def _dispatch(self, stage: Stage) -> None:
        """Hand a stage's tasks to a remote executor; remember failures and times for the client's cells.

        The local executor sends nothing: the stage code computes each task
        when it reaches it, as it always did.  After a remote stage the same
        stage code finds every output in the cache.
        """
        if self.executor is None or not self.executor.remote or not stage.tasks:
            return
        if self.verbose:  # the plan itself: each task, the cache entries it reads and the one it writes
            for line in stage.describe():
                self.ctx.log(f"task {line}")
        advance = self._progress(f"{stage.name} ({self.executor.name})", len(stage.tasks), "tasks")
        import inspect

        reports = "progress" in inspect.signature(self.executor.run).parameters  # executors written before it
        results = (self.executor.run(stage.tasks, self._job(), WORKER_CALLS, progress=advance) if reports
                   else self.executor.run(stage.tasks, self._job(), WORKER_CALLS))
        for task in stage.tasks:
            result = results[task.id]
            self._task_seconds[task.output] = result.seconds
            if not result.ok:
                self._task_failures[task.output] = result.error
            elif (result.meta or {}).get("call_seconds") is not None:  # a timed matrix, timed on the worker
                self._call_seconds[task.output] = [float(v) for v in result.meta["call_seconds"]]
        if not reports:
            advance(len(stage.tasks))

    def _open_executor(self) -> None:
        import dataclasses

        name, scheduler, workers = self._executor_spec
        if isinstance(name, Executor):
            executor = name
        else:
            cls = self.registry.get("executor", str(name))
            declared = {f.name for f in dataclasses.fields(cls)}
            given = {"scheduler": scheduler, "workers": workers}
            executor = cls(**{k: v for k, v in given.items() if k in declared and v not in (None, "")})
        if executor.remote and not self.cache.enabled:
            raise UserError(f"executor {executor.name!r} moves arrays through the cache directory; "
                            "drop --no-cache (use --cache-dir DIR on a shared disk)")
        executor.open(WORKER_CALLS, dict(self.suite.run))
        self.executor = executor

    # -- the whole run ------------------------------------------------------------------

    def run(self) -> RunDir:
        """Execute every stage; return the run directory (results.parquet written).

        Holds the run directory's lock throughout: a second process on the
        same directory is refused with "already running, pid N".

        The suite's data files and the modules its plugins and executor
        ``require`` are checked before the run directory is made; a run
        refused later but before training (the data, the preflight checks,
        the cache or the executor) removes the run directory again when this
        call created it, so a failed first attempt leaves nothing behind.
        """
        from .requirements import check_requirements
        from .suite import check_data_files

        if self.fresh:
            check_fresh_target(self.run_dir.path, self.suite.path)  # before the lock file is created in it
        check_data_files(self.suite)
        name = self._executor_spec[0]
        executor = name if isinstance(name, Executor) else self.registry.get("executor", str(name))
        check_requirements(self.suite, executor)
        created = _missing_folders(self.run_dir.path)
        self._past_preflight = False
        self.run_dir.acquire()
        try:
            return self._run_locked()
        except UserError:
            if created and not self._past_preflight:
                _remove_folders(created)  # still locked: no other run can have adopted the directory
            raise
        finally:
            self.run_dir.release()

    def _run_locked(self) -> RunDir:
        if self.fresh:
            check_fresh_target(self.run_dir.path, self.suite.path)
            self.run_dir.clear()
        self.run_dir.clean_temp()
        self.cache.check_writable()
        self.cache.clean_temp()
        set_threads(int(self.suite.run["threads"]))
        self.device = resolve_device(self.suite.run["device"])
        manifest = self._start_manifest()
        started = time.perf_counter()
        self._open_executor()
        self.stage_seconds["executor start"] = time.perf_counter() - started
        try:
            self._stages()
        except StageFailed as exc:
            self._finish_manifest(manifest, invocation={"failed": str(exc), "finished": provenance.now(),
                                                        "executor": self.executor.name})
            raise
        finally:
            self.executor.close()
        order = list(dict.fromkeys(self.cells))
        self.run_dir.consolidate(order)
        finished = provenance.now()
        self._finish_manifest(
            manifest,
            invocation={"finished": finished, "cells_computed": self.computed, "cells_reused": self.reused,
                        "cells_discarded": list(self.run_dir.discarded), "cache_hits": self.cache.hits,
                        "cache_misses": self.cache.misses, "cache_rebuilt": self.cache.rebuilt,
                        "stage_failures": self.failures, "executor": self.executor.name,
                        "stage_seconds": {k: round(v, 3) for k, v in self.stage_seconds.items()}},
            finished=finished,
            data_fingerprint=self.data_fingerprint,
            n_models=len(self.state.specs),
            probe_sets={name: {"n": int(ps.x.shape[0]), "meta": dict(ps.meta)}
                        for name, ps in self.state.probe_sets.items()},
            models=[{"id": s.id, "factors": dict(s.factors)} for s in self.state.specs],
            held_out_models=[{"id": s.id, "factors": dict(s.factors)} for s in self.state.held_out_specs],
            cell_order=order,
        )
        return self.run_dir

    def _stages(self) -> None:
        with ProgressUI(self.console, self.quiet, self.plain) as ui:
            self._ui = ui
            self.ctx = RunContext(seed=self.suite.seed, device=self.device, progress=ui, cache=self.cache,
                                  log=ui.log if self.verbose else _silent, verbose=self.verbose)
            # a time-based ETA needs units of work: the data is one (its own line, from the run's first second),
            # the zoo's groups and each group's epochs are others (build_zoo and the zoo plugin report them)
            loading = ui(f"Loading data {self.suite.data.name} and checking the suite", 1, "dataset")
            from .suite import check_data_files

            check_data_files(self.suite)
            lap = self._lap()
            data = self.load_data()
            self.state.data = data
            self.data_fingerprint = fingerprint(data)
            self.restorer.keep("the data", data)
            preflight(self.suite, data)  # layer names, sizes: refused before any training
            self._past_preflight = True  # from here on a failed run keeps its directory (and manifest)
            loading(1)
            lap("data")
            self._dispatch(self.zoo_stage())
            specs, models, zoo_key = self.build_zoo(data)
            self.state.specs, self.state.models, self.state.zoo_key = specs, models, zoo_key
            lap("zoo")
            self.perturb_models(data)
            lap("model perturbations")
            self.make_probe_sets(data)
            probe_names = list(self.state.probe_sets)
            lap("probe sets")

            self._dispatch(self.representation_stage(probe_names))
            advance = ui("Representations", len(probe_names), "probe sets")
            for name in probe_names:
                try:
                    self.representations(name, None)
                    self.run_dir.remove_cell(f"probe_set/{name}")
                except MeasurementFailed as exc:
                    self._record_stage_failure(f"probe_set/{name}", "probe_set", name, str(exc))
                    self.state.failed_probe_sets[name] = str(exc)
                    del self.state.probe_sets[name]
                advance(1)
            lap("representations")
            probe_names = list(self.state.probe_sets)
            advance = ui("Agreement", len(probe_names), "probe sets")
            for name in probe_names:
                self.agreement_cell(name)
                advance(1)
            lap("agreement")
            cells = [
                (use, WEIGHTS_PROBE_SET if use.obj.kind == "weight" else name)
                for use in self.suite.metrics
                for name in ([WEIGHTS_PROBE_SET] if use.obj.kind == "weight" else probe_names)
            ]
            # the fork server of isolated cells imports their (importable) metric modules once, not every cell
            isolation.preload(sorted({type(use.obj).__module__ for use in self.suite.metrics if self.isolated(use.obj)
                                      and not type(use.obj).__module__.startswith("simbench_file_plugin_")}))
            self._dispatch(self.similarity_stage(cells))
            advance = ui("Similarity", len(cells), "matrices")
            for use, where in cells:
                self.similarity_cell(use, where)
                advance(1)
            lap("similarity")
            # benchmarks read, never compute: the matrices they declare are cells computed here, before them
            planned = self.collect_requests()
            self._dispatch(self.matrix_stage(planned))
            advance = ui("Benchmark matrices", len(planned), "matrices")
            for item in planned:
                self.matrix_cell(item)
                advance(1)
            self._layer_memo.clear()
            lap("benchmark matrices")
            advance = ui("Benchmarks", len(self.suite.benchmarks), "benchmarks")
            for use in self.suite.benchmarks:
                self.benchmark_cell(use)
                advance(1)
            lap("benchmarks")
        self._ui = None

    def _lap(self) -> Callable[[str], None]:
        """``lap(stage)`` adds the seconds since the previous lap to ``stage_seconds[stage]`` (the manifest's)."""
        last = [time.perf_counter()]

        def lap(stage: str) -> None:
            now = time.perf_counter()
            self.stage_seconds[stage] = self.stage_seconds.get(stage, 0.0) + now - last[0]
            last[0] = now

        return lap


def _silent(message: str) -> None:
    return None


# ----------------------------------------------------------------------------
# The worker side of a remote executor (module-level: Dask pickles these by name)
# ----------------------------------------------------------------------------

_WORKER_RUNNERS: dict[WorkerJob, Runner] = {}
#: set per worker by the executor when several GPUs are visible: one device per worker
_WORKER_DEVICE: dict[str, str] = {}


def suite_plugins(suite: Suite, registry: Registry) -> tuple[tuple[str, str, str, str], ...]:
    """``(kind, name, plugin, code hash)`` of every plugin the suite names, as this process has them."""
    uses = [suite.data, suite.zoo, *suite.perturbations, *suite.metrics, *suite.benchmarks]
    out = []
    for use in uses:
        try:
            entry = registry.entry(use.kind, use.name)
        except Exception:  # noqa: BLE001 - not registered in this process
            out.append((use.kind, use.name, "", ""))
            continue
        out.append((use.kind, use.name, entry.plugin, class_code_hash(entry.cls)))
    return tuple(dict.fromkeys(out))


def worker_plugins(job: WorkerJob) -> tuple[tuple[str, str, str, str], ...] | str:
    """On a worker: the job's plugins as this worker has them, or a one-line reason it cannot load any."""
    from .registry import build_registry

    try:
        registry = build_registry(plugin_files=list(job.plugin_files))
    except Exception as exc:  # noqa: BLE001 - reported to the client in one line
        return f"cannot load plugins ({one_line(exc)})"
    out = []
    for kind, name, _, _ in job.plugins:
        try:
            entry = registry.entry(kind, name)
        except Exception:  # noqa: BLE001
            out.append((kind, name, "", ""))
            continue
        out.append((kind, name, entry.plugin, class_code_hash(entry.cls)))
    return tuple(out)


def worker_runner(job: WorkerJob) -> Runner:
    """This process's runner for ``job``, built once per worker (it never writes a run directory)."""
    found = _WORKER_RUNNERS.get(job)
    if found is not None:
        return found
    from .registry import build_registry
    from .suite import load_suite

    registry = build_registry(plugin_files=list(job.plugin_files))
    suite = load_suite(Path(job.suite_path), registry, job.overrides)
    if suite.sha256 != job.suite_sha256:
        raise UserError(f"{job.suite_path}: differs on this worker from the client's (suite sha256 "
                        f"{suite.sha256[:12]} vs {job.suite_sha256[:12]}); share the suite file")
    runner = Runner(suite, registry, Path(job.cache_dir) / ".worker-run-dir-unused", cache_dir=job.cache_dir,
                    quiet=True)
    set_threads(job.threads)
    runner.device = _WORKER_DEVICE.get("device") or resolve_device(job.device)
    runner.data_fingerprint = job.data_fingerprint
    _WORKER_RUNNERS.clear()  # one job at a time: an old suite's data and models are not kept alive
    _WORKER_RUNNERS[job] = runner
    return runner


def run_task(job: WorkerJob, task: PlanTask) -> TaskResult:
    """Run one task in this process; a plugin's failure comes back as ``ok=False`` (and is never retried).

    ``UserError`` (the worker cannot serve this job: another suite, no shared
    cache) propagates: the client stops with its one line.
    """
    started = time.perf_counter()
    worker = _worker_name()
    try:
        meta = worker_runner(job).run_task(task)
    except (KeyboardInterrupt, UserError):
        raise
    except BaseException as exc:  # noqa: BLE001 - the plugin boundary, as in the client
        error = one_line(exc, typed=not isinstance(exc, (MeasurementFailed, PluginCallFailed, StageFailed)))
        log.warning("task %s failed on %s: %s", task.id, worker, error)
        return TaskResult(task.id, False, error, time.perf_counter() - started, worker)
    return TaskResult(task.id, True, "", time.perf_counter() - started, worker, dict(meta or {}))


def set_worker_device(device: str) -> str:
    """Pin this worker to one device (e.g. ``cuda:1``) for every later task."""
    _WORKER_DEVICE["device"] = device
    _WORKER_RUNNERS.clear()
    return device


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except Exception:  # noqa: BLE001 - not on a dask worker
        return f"pid {os.getpid()}"


#: what the runner hands an executor (see simbench.plan.WorkerCalls)
WORKER_CALLS = {"run_task": run_task, "plugins": worker_plugins, "set_device": set_worker_device}


@dataclass(frozen=True)
class _Planned:
    """One benchmark's declared matrix, checked: its metric object, cache key and row labels."""

    benchmark: str
    request: MatrixRequest
    metric: Any
    cache_key: str
    labels: tuple[str, ...]


def _pack_sources(reps: Sequence[Any], inputs: Any = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Materialised sources as one cache entry (what a worker reads for a matrix task)."""
    tensors: dict[str, Any] = {}
    meta: dict[str, Any] = {"kinds": [], "counts": [], "strides": {}}
    for k, rep in enumerate(reps):
        if isinstance(rep, list):  # a model's dense weights; the layout is kept (see _weights_entry)
            meta["kinds"].append("weights")
            meta["counts"].append(len(rep))
            for j, w in enumerate(rep):
                tensors[f"w::{k}::{j}"] = w.detach().cpu()
                meta["strides"][f"w::{k}::{j}"] = list(w.stride())
        else:
            meta["kinds"].append("rep")
            meta["counts"].append(0)
            tensors[f"rep::{k}"] = rep.detach().cpu()
    if inputs is not None:
        tensors["inputs"] = inputs.detach().cpu()
    return tensors, meta


def _unpack_sources(tensors: Mapping[str, Any], meta: Mapping[str, Any], device: str) -> list[Any]:
    out: list[Any] = []
    for k, (kind, count) in enumerate(zip(meta["kinds"], meta["counts"], strict=True)):
        if kind == "weights":
            out.append([_with_strides(tensors[f"w::{k}::{j}"], meta["strides"].get(f"w::{k}::{j}")).to(device)
                        for j in range(count)])
        else:
            out.append(tensors[f"rep::{k}"].to(device))
    return out


def _with_benchmark(record: Record, label: str) -> Record:
    from dataclasses import replace

    return replace(record, benchmark=record.benchmark or label)


def _with_strides(t: Any, stride: Sequence[int] | None) -> Any:
    """``t`` laid out in memory with ``stride`` (as the tensor it was saved from), values unchanged."""
    import torch

    if stride is None or tuple(stride) == tuple(t.stride()):
        return t
    out = torch.empty_strided(tuple(t.shape), tuple(stride), dtype=t.dtype, device=t.device)
    return out.copy_(t)


def _flatten_state(models: Mapping[str, Any], ids: Sequence[str]) -> dict[str, Any]:
    tensors = {}
    for mid in ids:
        for name, value in models[mid].state_dict().items():
            tensors[f"{mid}::{name}"] = value.detach().cpu().clone()
    return tensors


def resolve_task(registry: Registry, data: DataSplits, dataset: str) -> Any:
    """The registered task plugin ``data.task`` names, configured with its defaults.

    A name no plugin registers is a one-line :class:`UserError` naming the
    dataset and listing the registered tasks.
    """
    from .registry import unknown_name_message

    name, known = data.task, registry.names("task")
    if not isinstance(name, str) or name not in known:
        raise UserError(f"dataset {dataset!r} returned data for an {unknown_name_message('task', name, known)}; "
                        "a plugin registers tasks with a register_tasks hook")
    obj, key, message = registry.configure("task", name, {})
    if obj is None:
        raise UserError(f"task {name!r} (named by dataset {dataset!r}) cannot be configured with its defaults: "
                        f"parameter {key!r}: {message}")
    return obj


def task_agreement(task: Any, outputs: Any, targets: Any, m: int) -> tuple[Any, Any]:
    """``task.agreement(outputs, targets)`` behind the plugin boundary, checked: ``(M x M, [M])`` float64 tensors.

    Everything after it reads the agreement, so a task that raises or returns
    something else stops the run with one line naming the task.
    """
    import torch

    try:
        result = plugin_call(f"task {task.name!r}", task.agreement, outputs, targets.clone())
    except PluginCallFailed as exc:
        raise StageFailed(f"{exc}; nothing can be compared without the models' agreement") from None
    pair = tuple(result) if isinstance(result, (tuple, list)) else (result,)
    if not (len(pair) == 2 and all(isinstance(t, torch.Tensor) for t in pair)
            and tuple(pair[0].shape) == (m, m) and tuple(pair[1].shape) == (m,)):
        got = ", ".join(str(tuple(t.shape)) if isinstance(t, torch.Tensor) else type(t).__name__ for t in pair)
        raise StageFailed(f"task {task.name!r}: agreement returned ({got}); expected a pair of tensors "
                          f"({m}, {m}) and ({m},)")
    agreement, scores = pair
    return agreement.to(torch.float64), scores.to(torch.float64)


def _file_size(path: str) -> int | None:
    """Size in bytes of a data file the suite names (None if it vanished since it was hashed)."""
    try:
        return os.path.getsize(path)
    except OSError:
        return None


def _missing_folders(path: Path) -> list[Path]:
    """``path`` and those of its parents that do not exist yet, innermost first."""
    out = []
    for folder in (path, *path.absolute().parents):
        if folder.exists() or folder.is_symlink():
            break
        out.append(folder)
    return out


def _remove_folders(created: list[Path]) -> None:
    """Remove the run directory this run created (``created[0]``) and each created parent left empty."""
    import shutil

    shutil.rmtree(created[0], ignore_errors=True)
    for folder in created[1:]:
        try:
            folder.rmdir()
        except OSError:  # not empty: something else lives there now
            break


def default_run_dir(suite: Suite, root: str | os.PathLike[str] = "runs") -> Path:
    """``runs/<suite>-<hash8>``: a changed suite gets a new directory, the same suite resumes."""
    return Path(root) / f"{suite.name}-{suite.sha256[:8]}"
