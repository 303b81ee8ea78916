"""Executes a suite stage by stage: orchestration only (see docs/architecture.md, "Plan, executors and the store").

    data -> zoo (+ model perturbations) -> probe sets -> representations
         -> agreement -> similarity matrices (metric x probe set)
         -> benchmarks' declared matrices -> benchmarks -> results store

Every planned stage is the same three steps: the plan (each task's cache
keys derived once; nothing computed), ``executor.run(tasks)`` (the local
executor runs them in this process, a remote one on its workers; both
through :class:`simbench.worker.Worker`), then the cells written here from
the tasks' outputs.  The runner itself computes no task's product: a cell
whose output is missing (a damaged cache entry, a caller outside a run such
as ``simbench score``) gets its task run through the executor then and there.
What a cell computes lives in :mod:`simbench.cells`, behind the plugin-call
boundary of :mod:`simbench.boundary`.

Every stage is a pure function of explicit inputs plus a seed derived from
the suite seed and the stage's name, so results do not depend on which
stages were cached or which process ran them.  Finished cells are written to
the run directory, which is what makes a killed run resume.

(About 700 lines, above the ~600 of other core modules: it is the run's one
control flow -- stage order, dispatch, and the writers that turn each task's
output into a cell -- which reads best in one place; planning, computing,
the view and the manifest live in their own modules.)
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from . import isolation, provenance
from .boundary import FLAG_MEANINGS, PluginCallFailed, fingerprint, plugin_call, validate_matrix
from .cache import TensorCache, content_hash
from .cells import resolve_task, task_agreement
from .errors import MeasurementFailed, StageFailed, UserError, one_line
from .executors import LocalExecutor
from .plan import Executor, PlanTask, Stage, WorkerJob
from .manifest import finish_manifest, start_manifest
from .preflight import preflight
from .progress import ProgressUI
from .registry import Registry
from .results import MATRIX_STATISTIC, RunDir, check_fresh_target, matrix_row, record_row
from .suite import PluginUse, Suite
from .types import (
    WEIGHTS_PROBE_SET,
    DataSplits,
    ModelSpec,
    Record,
    RunContext,
)
from .view import StoreView
from .planner import Planned, Planner
from .worker import WORKER_CALLS, adopt, resolve_device, set_threads, suite_plugins

log = logging.getLogger("simbench.runner")

CACHE_ENV = "SIMBENCH_CACHE_DIR"


def default_cache_dir() -> Path:
    """The stage cache when neither ``--cache-dir``, ``run.cache_dir`` nor ``$SIMBENCH_CACHE_DIR`` names one:
    the user cache directory (``platformdirs.user_cache_dir("simbench")``), so that every working directory
    reuses the zoos trained in any other."""
    import platformdirs

    return Path(platformdirs.user_cache_dir("simbench"))


class Runner(Planner):
    """Runs one validated suite into one run directory (the client: the only writer of the run directory).

    A :class:`~simbench.worker.Worker` itself: with the local executor the
    plan's tasks run on this object, so the data, models and representations
    are loaded once."""

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
        cache_root = cache_dir or suite.run.get("cache_dir") or os.environ.get(CACHE_ENV) or default_cache_dir()
        super().__init__(suite, registry, TensorCache(cache_root, enabled=use_cache), verbose)
        self.run_dir = RunDir(run_dir, suite.sha256)
        self.console = console
        self.quiet = quiet
        self.fresh = fresh
        self.plain = plain
        self.cells: list[str] = []
        self.computed = 0
        self.reused = 0
        self.failures: list[dict[str, str]] = []  # stage failures (perturbations, probe sets), for the manifest
        self._ui: ProgressUI | None = None
        #: who runs the plan's tasks: an Executor, or the name of a registered one ([run] executor by default)
        self._executor_spec = (executor or suite.run.get("executor", "local"),
                               scheduler if scheduler is not None else suite.run.get("scheduler", ""),
                               workers if workers is not None else suite.run.get("workers", 0))
        self.executor: Any = None
        #: output key -> one-line error / seconds of tasks an executor ran (the client writes their cells)
        self._task_failures: dict[str, str] = {}
        self._task_seconds: dict[str, float] = {}
        #: output key -> wall seconds of each timed call of a timed declared matrix (from the task's result)
        self._call_seconds: dict[str, list[float]] = {}
        #: wall seconds per stage in this invocation (client's view; in the manifest's invocation entry)
        self.stage_seconds: dict[str, float] = {}
        #: benchmark label -> one-line error of its ``requests`` (the benchmark's cell fails with it)
        self._request_failures: dict[str, str] = {}

    # -- helpers -----------------------------------------------------------------

    # -- manifest -----------------------------------------------------------------

    def _start_manifest(self) -> dict[str, Any]:
        return start_manifest(self.run_dir, self.suite, self.registry, self.device, self._warn)

    def _finish_manifest(self, manifest: dict[str, Any], **update: Any) -> None:
        finish_manifest(self.run_dir, manifest, **update)

    # -- running tasks ------------------------------------------------------------

    def _job(self) -> WorkerJob:
        files = tuple(str(Path(info.location).resolve()) for info in self.registry.plugins.values()
                      if info.source == "file")
        return WorkerJob(
            suite_path=str(Path(self.suite.path).resolve()), overrides=tuple(self.suite.overrides),
            plugin_files=files, suite_sha256=self.suite.sha256, cache_dir=str(self.cache.root.resolve()),
            device=str(self.suite.run["device"]), threads=int(self.suite.run["threads"]),
            data_fingerprint=self.data_fingerprint, plugins=suite_plugins(self.suite, self.registry),
        )

    def _dispatch(self, stage: Stage, advance: Callable[[int], None] | None = None) -> None:
        """Hand a stage's tasks to the executor; remember failures, times and timings for the cells.

        The local executor runs them on this object (:func:`simbench.worker.adopt`); a remote one on its
        workers.  ``advance`` (the stage's progress line) moves as tasks finish.
        """
        if not stage.tasks:
            return
        executor = self.executor if self.executor is not None else LocalExecutor()
        if self.verbose:  # the plan itself: each task, the cache entries it reads and the one it writes
            for line in stage.describe():
                self.ctx.log(f"task {line}")
        if advance is None:
            advance = self._progress(f"{stage.name} ({executor.name})", len(stage.tasks), "tasks")
        job = self._job()
        if not executor.remote:
            adopt(job, self)
        # a task makes a cache entry: a miss (a representations task counts its own, in the worker's cache)
        self.cache.misses += sum(t.kind != "representations" or executor.remote for t in stage.tasks)
        import inspect

        reports = "progress" in inspect.signature(executor.run).parameters  # executors written before it
        results = (executor.run(stage.tasks, job, WORKER_CALLS, progress=advance) if reports
                   else executor.run(stage.tasks, job, WORKER_CALLS))
        for task in stage.tasks:
            result = results[task.id]
            self._task_seconds[task.output] = result.seconds
            if not result.ok:
                self._task_failures[task.output] = result.error
            elif (result.meta or {}).get("call_seconds") is not None:  # a timed matrix: timed where it ran
                self._call_seconds[task.output] = [float(v) for v in result.meta["call_seconds"]]
        if not reports:
            advance(len(stage.tasks))

    def _fetch(self, task: PlanTask, stage: str, needs: Sequence[PlanTask] = (),
               force: bool = False) -> tuple[dict[str, Any], dict[str, Any]]:
        """A task's output.  One that is missing (never planned: a caller outside a run; or its entry damaged
        since) runs now, after the tasks it ``needs`` whose outputs are missing; ``force`` runs it whatever
        the cache holds (a timed request).  A failed task is :class:`MeasurementFailed` with its one line
        (never run twice)."""
        failed = self._task_failures
        if task.output in failed:
            raise MeasurementFailed(failed[task.output])
        found = None if force else self.output(task.output)
        if found is not None:
            self.cache.hits += task.output not in self._task_seconds  # not made by a task of this invocation
            return found
        for prior in needs:
            if prior.output not in failed and prior.output not in self._entries and not self.cache.has(prior.output):
                self._dispatch(Stage(stage, (prior,)), lambda step=1: None)
            if prior.output in failed:
                raise MeasurementFailed(failed[prior.output])
        self._dispatch(Stage(stage, (task,)), lambda step=1: None)
        if task.output in failed:
            raise MeasurementFailed(failed[task.output])
        found = self.output(task.output)
        if found is None:
            raise MeasurementFailed(f"task {task.id}: its output {task.output} is missing from the cache")
        return found

    # -- stages ---------------------------------------------------------------------

    def build_zoo(self, data: DataSplits) -> tuple[list[ModelSpec], dict[str, Any], str]:
        """Train (through the plan's ``zoo_group`` tasks) or load every model; each of the zoo's groups on its own.

        A zoo with one group (the default) is one stage: if it fails the run
        stops with one line.  With several groups, a group that fails is
        recorded (``zoo/<first id>``) and the run goes on with the others,
        as long as two models are left.
        """
        zoo_use = self.suite.zoo
        what = f"zoo {zoo_use.name!r}"
        specs, groups, whole = self.zoo_layout()
        by_id = {s.id: s for s in specs}
        # several groups: a line counting them above each group's own (epochs), with the zoo's time-based ETA
        advance = (self._progress(f"Zoo {zoo_use.name} ({len(specs)} models)", len(groups), "groups")
                   if not whole else (lambda step=1: None))
        stage = self.zoo_stage()
        self._dispatch(stage, advance)
        sent = {t.output for t in stage.tasks}
        keys: list[str] = []
        models: dict[str, Any] = {}
        kept: set[str] = set()
        entries: list[list[Any]] = []
        for group in groups:
            task = self._zoo_task(group, whole)
            cell_id = f"zoo/{group[0]}"
            try:
                tensors, _ = self._fetch(task, "Zoo groups")
                models.update(self.load_models(tensors, [(mid, by_id[mid]) for mid in group]))
            except (StageFailed, PluginCallFailed, MeasurementFailed) as exc:
                if whole:
                    raise StageFailed(str(exc)) from None
                self._record_stage_failure(cell_id, "zoo", group[0], f"group of {len(group)} models: {exc}")
                for mid in group:
                    self.restorer.forget_model(mid)
                if task.output not in sent:
                    advance(1)
                continue
            if not whole:
                self._clear_stage_failure(cell_id)
            keys.append(task.output)
            kept.update(group)
            entries.append([task.output, [[mid, mid] for mid in group if not by_id[mid].held_out]])
            if task.output not in sent:
                advance(1)
        self._entries.clear()
        # held-out models (ModelSpec.held_out) are trained with their group but never analysed: they go
        # to the perturbations only (PerturbContext.held_out), e.g. as attack sources outside the zoo
        held = [s for s in specs if s.held_out and s.id in kept]
        self.state.held_out = {s.id: models.pop(s.id) for s in held}
        self.state.held_out_specs = held
        if len([s for s in specs if s.id in kept and not s.held_out]) < 2:
            raise StageFailed(f"{what}: fewer than two models were built (every failing group is listed above)")
        specs = [s for s in specs if s.id in kept and not s.held_out]
        self.state.model_entries = entries
        return specs, models, keys[0] if whole else content_hash(keys)

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
        """Write (or reuse) one metric's M x M matrix on one probe set ("weights" for weight metrics).

        The matrix is the output of the plan's ``similarity`` task (run by the
        executor: the metric on copies of the representations, under
        ``run.cell_timeout``, its output validated); a task that failed is a
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
        started = time.perf_counter()
        task = self._similarity_task(use, where)
        matrix, flags, error = self._matrix_or_error(use.obj, ids, task, "Similarity")
        if error:
            log.warning("metric %s failed on %s: %s", use.label, where, error)
        # computed by a task: its time, not the time it took to read the result
        seconds = self._task_seconds.get(task.output, time.perf_counter() - started)
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

    def _matrix_or_error(self, metric: Any, ids: Sequence[str], task: PlanTask, stage: str,
                         needs: Sequence[PlanTask] = ()) -> tuple[Any, list[str], str]:
        """``(matrix, flags, "")`` or ``(None, [], one-line error)`` from a metric task's output (run now if it is
        missing: :meth:`_fetch`).  The one failure boundary of every metric cell (similarity cells and benchmarks'
        declared matrices): anything but ``KeyboardInterrupt`` and the runner's own ``UserError`` becomes the cell's
        one-line error.  Only valid matrices are ever cached: one that fails validation was damaged or planted,
        and is discarded and made again rather than failing this cell (blaming the metric) in every later run.
        A timed matrix (``timing_repeats``) is measured in this run, whatever the cache holds."""
        timed = bool(task.args.get("timing_repeats", 0)) and task.output not in self._call_seconds
        try:
            for attempt in range(2):
                found = self._fetch(task, stage, needs, force=timed or attempt > 0)
                notes = found[1].get("notes")
                try:
                    if not isinstance(notes, list):
                        raise ValueError("no notes")
                    matrix, flags = validate_matrix(found[0].get("matrix"), ids, metric)
                    return matrix, flags + [str(n) for n in notes], ""
                except Exception as exc:  # noqa: BLE001 - the entry, not the metric, is bad
                    if attempt:
                        raise MeasurementFailed(f"its task's matrix fails validation ({one_line(exc)})") from None
                    self.cache.discard(task.output, f"holds a matrix that fails validation ({one_line(exc)})")
                    self._entries.pop(task.output, None)
                    self._call_seconds.pop(task.output, None)
            raise AssertionError("unreachable")
        except (KeyboardInterrupt, UserError):
            raise
        except BaseException as exc:  # noqa: BLE001 - a plugin's failure (SystemExit included) is a result
            return None, [], one_line(exc, typed=not isinstance(exc, MeasurementFailed))

    def benchmark_cell(self, use: PluginUse, view: StoreView | None = None) -> None:
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
            view = StoreView(self, use.label)
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


    def matrix_cell(self, item: Planned) -> None:
        """Write (or reuse) one benchmark's declared matrix: the output of its ``matrix`` task, whose ``sources``
        task materialised its inputs; the same boundary as a similarity cell."""
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
        sources, task = self._matrix_tasks(item)
        matrix, flags, error = self._matrix_or_error(item.metric, item.labels, task, "Benchmark matrices", (sources,))
        call_seconds = self._call_seconds.pop(task.output, None) if item.request.timing_repeats else None
        if error:
            log.warning("%s failed: %s", cell_id, error)
            self.state.matrix_failures[cell] = error
        else:
            self.state.matrices[cell] = matrix
            if call_seconds is not None:
                self.state.matrix_seconds[cell] = call_seconds
        seconds = self._task_seconds.get(task.output, time.perf_counter() - started)
        # one row per matrix (the matrix itself is in the cell): which benchmark declared it, its size, its status
        row = record_row(self.suite.name, "matrix", Record(
            item.benchmark, "size", float(len(item.labels)), metric=item.request.metric, group=item.request.key,
            n=len(item.labels), status="failed" if error else "ok", error=error))
        # K x K is small (sources, not models): kept in the cell as "values" (the store's .npy arrays are M x M)
        self.run_dir.write_cell(cell_id, [row], {"values": None if matrix is None else matrix.tolist(), "error": error,
                                                 "seconds": seconds, "labels": list(item.labels), "flags": flags,
                                                 "call_seconds": None if error else call_seconds})
        self.computed += 1


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
            specs, models, zoo_key = self.build_zoo(data)
            self.state.specs, self.state.models, self.state.zoo_key = specs, models, zoo_key
            lap("zoo")
            self.perturb_models(data)
            lap("model perturbations")
            self.make_probe_sets(data)
            probe_names = list(self.state.probe_sets)
            lap("probe sets")

            advance = ui("Representations", len(probe_names), "probe sets")
            stage = self.representation_stage(probe_names)
            self._dispatch(stage, advance)
            sent = {t.id for t in stage.tasks}
            for name in probe_names:
                try:
                    failed = self._task_failures.get(self.representations_key(name))
                    if failed is not None:
                        raise MeasurementFailed(failed)
                    self.representations(name, None)  # the task's output (in memory, or read from the cache)
                    self.run_dir.remove_cell(f"probe_set/{name}")
                except MeasurementFailed as exc:
                    self._record_stage_failure(f"probe_set/{name}", "probe_set", name, str(exc))
                    self.state.failed_probe_sets[name] = str(exc)
                    del self.state.probe_sets[name]
                if f"representations/{name}" not in sent:
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
            advance = ui("Similarity", len(cells), "matrices")
            stage = self.similarity_stage(cells)
            self._dispatch(stage, advance)
            sent = {t.id for t in stage.tasks}
            for use, where in cells:
                self.similarity_cell(use, where)
                if f"similarity/{use.label}/{where}" not in sent:
                    advance(1)
            self._entries.clear()
            lap("similarity")
            # benchmarks read, never compute: the matrices they declare are cells computed here, before them
            planned = self.collect_requests()
            sources, matrices = self.matrix_stages(planned)
            self._dispatch(sources, ui("Benchmark sources", len(sources.tasks), "requests") if sources.tasks else None)
            failed = {t.output for t in sources.tasks if t.output in self._task_failures}  # the cells record it
            matrices = Stage(matrices.name, tuple(t for t in matrices.tasks if t.inputs[0] not in failed))
            advance = ui("Benchmark matrices", len(planned), "matrices")
            self._dispatch(matrices, advance)
            sent = {t.id for t in matrices.tasks}
            for item in planned:
                self.matrix_cell(item)
                if f"matrix/{item.benchmark}/{item.request.key}" not in sent:
                    advance(1)
            self._entries.clear()
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


def _silent(message: str) -> None:
    return None


def _with_benchmark(record: Record, label: str) -> Record:
    from dataclasses import replace

    return replace(record, benchmark=record.benchmark or label)


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
