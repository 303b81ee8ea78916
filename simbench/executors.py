"""Executors: who runs a plan's tasks (see :mod:`simbench.plan`).

Two ship, registered through the ``register_executors`` hook like any
plugin (a lab may register its own):

``local``   today's behaviour and the default: the runner computes each task
            in its own process when it reaches it (no task leaves the process).
``dask``    ``dask.distributed``: a ``LocalCluster`` of worker processes on this
            machine (one torch thread each), or an existing cluster named by
            ``--scheduler tcp://host:8786`` / ``$SIMBENCH_DASK_SCHEDULER`` /
            ``[run] scheduler``.  Workers read their inputs from and write
            their output to the shared cache directory (never through the
            scheduler); the client writes every cell.

Faults: a task whose worker dies is retried on another worker by Dask (up to
``ALLOWED_FAILURES`` worker deaths, then it is a failed cell); a task that
raises is never retried (tasks catch plugin errors and return them); a killed
client resumes from the run directory and the cache like any run.

This module imports neither torch nor dask at import time.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from .errors import UserError
from .hookspecs import hookimpl
from .plan import Task, TaskResult

if TYPE_CHECKING:  # pragma: no cover
    from .runner import Runner

log = logging.getLogger("simbench.executors")

SCHEDULER_ENV = "SIMBENCH_DASK_SCHEDULER"
#: how many worker deaths one task may cause before it is a failed cell (Dask's scheduler setting)
ALLOWED_FAILURES = 3


@dataclass(frozen=True)
class Executor:
    """Runs a stage's tasks; the runner (the client) stays the only writer of the run directory.

    ``remote`` executors send tasks to other processes: the runner then
    requires the tensor cache (the shared directory large arrays move through)
    and checks every worker's plugins before sending anything.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    remote: ClassVar[bool] = False

    def open(self, runner: Runner) -> None:
        """Start (or connect to) whatever runs the tasks; check the workers can run this suite."""

    def run(self, tasks: Sequence[Task], job: WorkerJob) -> dict[str, TaskResult]:
        """Run ``tasks`` (independent of each other); return one result per task id."""
        return {t.id: run_task(job, t) for t in tasks}

    def close(self) -> None:
        """Release workers started by :meth:`open` (not a cluster someone else started)."""


@dataclass(frozen=True)
class LocalExecutor(Executor):
    """Every task in this process, computed when the runner reaches it (the default)."""

    name: ClassVar[str] = "local"
    description: ClassVar[str] = "in this process, stage by stage (the default)"


@dataclass(frozen=True)
class WorkerJob:
    """What a worker needs to rebuild the client's suite and plugins (all plain data)."""

    suite_path: str
    overrides: tuple[str, ...]
    plugin_files: tuple[str, ...]
    suite_sha256: str
    cache_dir: str  # absolute; shared by client and workers
    device: str  # as the suite asks: "auto", "cpu", "cuda", "cuda:N"
    threads: int
    data_fingerprint: str = ""
    plugins: tuple[tuple[str, str, str, str], ...] = ()  # (kind, name, plugin, code hash) the suite names


# ----------------------------------------------------------------------------
# The worker side (module-level functions: Dask pickles them by reference)
# ----------------------------------------------------------------------------

_RUNNERS: dict[WorkerJob, Any] = {}
#: set per worker by the client when several GPUs are visible: one device per worker
_WORKER_DEVICE: dict[str, str] = {}


def suite_plugins(runner_or_suite: Any, registry: Any) -> tuple[tuple[str, str, str, str], ...]:
    """``(kind, name, plugin, code hash)`` of every plugin the suite names, as this process has them."""
    from .cache import class_code_hash

    suite = runner_or_suite
    uses = [suite.data, suite.zoo, *suite.perturbations, *suite.metrics, *suite.benchmarks]
    out = []
    for use in uses:
        try:
            entry = registry.entry(use.kind, use.name)
        except Exception:  # noqa: BLE001 - not registered here
            out.append((use.kind, use.name, "", ""))
            continue
        out.append((use.kind, use.name, entry.plugin, class_code_hash(entry.cls)))
    return tuple(dict.fromkeys(out))


def worker_plugins(job: WorkerJob) -> tuple[tuple[str, str, str, str], ...] | str:
    """On a worker: the suite's plugins as this worker has them, or a one-line reason it cannot load them."""
    from .registry import build_registry

    try:
        registry = build_registry(plugin_files=list(job.plugin_files))
    except Exception as exc:  # noqa: BLE001 - reported to the client in one line
        return f"cannot load plugins ({_one_line(exc)})"
    out = []
    for kind, name, _, _ in job.plugins:
        try:
            entry = registry.entry(kind, name)
        except Exception:  # noqa: BLE001
            out.append((kind, name, "", ""))
            continue
        from .cache import class_code_hash

        out.append((kind, name, entry.plugin, class_code_hash(entry.cls)))
    return tuple(out)


def compare_plugins(worker: str, client: Sequence[tuple[str, str, str, str]],
                    found: tuple[tuple[str, str, str, str], ...] | str) -> str:
    """``""`` if the worker has every plugin at the client's code hash, else one line naming worker and plugin."""
    if isinstance(found, str):
        return f"dask worker {worker}: {found}"
    have = {(k, n): (p, h) for k, n, p, h in found}
    for kind, name, plugin, digest in client:
        theirs = have.get((kind, name), ("", ""))
        if not theirs[0]:
            return (f"dask worker {worker}: {kind} {name!r} (plugin {plugin!r}) is not installed there; "
                    "install the same plugins on every worker")
        if theirs[1] != digest:
            return (f"dask worker {worker}: {kind} {name!r} (plugin {theirs[0]!r}) has other code than the "
                    f"client's (code hash {theirs[1][:12]} vs {digest[:12]}); install the same version everywhere")
    return ""


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    line = text.splitlines()[0] if text else ""
    return (f"{type(exc).__name__}: {line}" if line else type(exc).__name__)[:300]


def worker_runner(job: WorkerJob) -> Any:
    """This process's runner for ``job`` (built once per worker and job; never writes a run directory)."""
    found = _RUNNERS.get(job)
    if found is not None:
        return found
    from .registry import build_registry
    from .runner import Runner, resolve_device, set_threads
    from .suite import load_suite

    registry = build_registry(plugin_files=list(job.plugin_files))
    suite = load_suite(Path(job.suite_path), registry, job.overrides)
    if suite.sha256 != job.suite_sha256:
        raise UserError(f"{job.suite_path}: differs on this worker from the client's (suite sha256 "
                        f"{suite.sha256[:12]} vs {job.suite_sha256[:12]}); share the suite file")
    runner = Runner(suite, registry, Path(job.cache_dir) / ".worker-unused-run-dir", cache_dir=job.cache_dir,
                    quiet=True)
    set_threads(job.threads)
    runner.device = _WORKER_DEVICE.get("device") or resolve_device(job.device)
    runner.data_fingerprint = job.data_fingerprint
    _RUNNERS.clear()  # one job per worker at a time: do not keep an old suite's data and models alive
    _RUNNERS[job] = runner
    return runner


def run_task(job: WorkerJob, task: Task) -> TaskResult:
    """Run one task in this process; plugin failures come back as ``ok=False`` (never retried)."""
    started = time.perf_counter()
    worker = _worker_name()
    try:
        runner = worker_runner(job)
        meta = runner.run_task(task)
    except (KeyboardInterrupt, UserError):
        raise
    except BaseException as exc:  # noqa: BLE001 - a plugin's failure is a result, not a retry
        from .errors import MeasurementFailed
        from .runner import PluginCallFailed

        error = str(exc) if isinstance(exc, (MeasurementFailed, PluginCallFailed)) else _one_line(exc)
        error = (error.splitlines()[0] if error else type(exc).__name__)[:300]
        return TaskResult(task.id, False, error, time.perf_counter() - started, worker)
    return TaskResult(task.id, True, "", time.perf_counter() - started, worker, dict(meta or {}))


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except Exception:  # noqa: BLE001 - not on a dask worker
        return f"pid {os.getpid()}"


def _set_worker_device(device: str) -> str:
    _WORKER_DEVICE["device"] = device
    _RUNNERS.clear()
    return device


# ----------------------------------------------------------------------------
# Dask
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class DaskExecutor(Executor):
    """Tasks on ``dask.distributed`` workers; arrays move as files in the shared cache directory.

    ``scheduler`` (or ``$SIMBENCH_DASK_SCHEDULER``): an existing cluster's
    address; empty starts a ``LocalCluster`` of ``workers`` processes (0 = one
    per core) with one thread each, torch pinned to ``[run] threads``.
    """

    name: ClassVar[str] = "dask"
    description: ClassVar[str] = "dask.distributed: a LocalCluster, or --scheduler tcp://host:8786"
    remote: ClassVar[bool] = True
    scheduler: str = ""
    workers: int = 0
    worker_env: tuple[tuple[str, str], ...] = ()  # extra environment for LocalCluster workers (tests)

    def open(self, runner: Runner) -> None:
        try:
            import dask
            from distributed import Client, LocalCluster
        except ImportError:
            raise UserError("run.executor = 'dask' needs dask.distributed: pip install 'simbench[dask]'") from None
        state = self._state()
        address = self.scheduler or os.environ.get(SCHEDULER_ENV, "")
        # a task may take down at most ALLOWED_FAILURES workers before it counts as failed (not forever)
        dask.config.set({"distributed.scheduler.allowed-failures": ALLOWED_FAILURES})
        if address:
            try:
                client = Client(address, timeout="30s")
            except Exception as exc:  # noqa: BLE001 - one line, not a traceback
                raise UserError(f"dask scheduler {address}: cannot connect ({_one_line(exc)})") from None
            cluster = None
        else:
            n = self.workers or os.cpu_count() or 1
            threads = int(runner.suite.run["threads"])
            env = {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), **dict(self.worker_env)}
            cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                                   env=env, silence_logs=logging.ERROR)
            client = Client(cluster)
        state.update(client=client, cluster=cluster)
        self._assign_devices(runner)

    def _state(self) -> dict[str, Any]:
        # frozen dataclass: the live client and cluster live outside the fields
        key = id(self)
        return _DASK_STATE.setdefault(key, {})

    def _assign_devices(self, runner: Runner) -> None:
        """Several GPUs on a LocalCluster's machine: worker i uses cuda:(i mod count)."""
        requested = str(runner.suite.run["device"])
        if requested not in ("auto", "cuda"):
            return
        client = self._state()["client"]
        counts = client.run(_cuda_count)
        for i, (address, count) in enumerate(sorted(counts.items())):
            if count > 1:
                client.run(_set_worker_device, f"cuda:{i % count}", workers=[address])

    def check_workers(self, job: WorkerJob) -> None:
        """One line naming the first worker that lacks a plugin (or has other code) than the client."""
        client = self._state()["client"]
        found = client.run(worker_plugins, job)
        if not found:
            raise UserError("dask cluster has no workers")
        for worker in sorted(found):
            problem = compare_plugins(worker, job.plugins, found[worker])
            if problem:
                raise UserError(problem)

    def run(self, tasks: Sequence[Task], job: WorkerJob) -> dict[str, TaskResult]:
        from distributed import wait

        if not tasks:
            return {}
        self.check_workers(job)
        client = self._state()["client"]
        # pure=False: the cache, not Dask's result store, is what makes reruns cheap; retries=0: a task
        # that raises is not retried (run_task returns plugin failures; only a lost worker reschedules)
        futures = {t.id: client.submit(run_task, job, t, key=f"simbench-{t.id}-{os.urandom(4).hex()}",
                                       pure=False, retries=0) for t in tasks}
        wait(list(futures.values()))
        out: dict[str, TaskResult] = {}
        for task_id, future in futures.items():
            try:
                out[task_id] = future.result()
            except UserError:
                raise
            except Exception as exc:  # noqa: BLE001 - KilledWorker after ALLOWED_FAILURES deaths, and the like
                text = _one_line(exc)
                if type(exc).__name__ == "KilledWorker":
                    text = f"its worker died {ALLOWED_FAILURES} times while running it (KilledWorker)"
                out[task_id] = TaskResult(task_id, False, text)
        return out

    def close(self) -> None:
        state = _DASK_STATE.pop(id(self), {})
        client, cluster = state.get("client"), state.get("cluster")
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()


_DASK_STATE: dict[int, dict[str, Any]] = {}


def _cuda_count() -> int:
    try:
        import torch

        return int(torch.cuda.device_count())
    except Exception:  # noqa: BLE001
        return 0


def make_executor(registry: Any, name: str, **params: Any) -> Executor:
    """The registered executor ``name``, configured with the fields it declares (others ignored)."""
    import dataclasses

    cls = registry.get("executor", name)
    fields = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in params.items() if k in fields and v not in (None, "")})


ExecutorFactory = Callable[..., Executor]


@hookimpl
def register_executors(register: Callable[[type], None]) -> None:
    """The core's two executors."""
    register(LocalExecutor)
    register(DaskExecutor)
