"""The core's executors: who runs a plan's tasks (see :mod:`simbench.plan`).

Two ship, registered through the ``register_executors`` hook like any
plugin (a lab may register its own):

``local``   the default: every task runs in the client's own process, one after
            another, through the same worker code as on a cluster
            (:func:`simbench.worker.run_task` on the runner itself).
``dask``    ``dask.distributed``: a ``LocalCluster`` of worker processes on this
            machine (one thread each, torch pinned to ``[run] threads``), or an
            existing cluster named by ``--scheduler tcp://host:8786``,
            ``$SIMBENCH_DASK_SCHEDULER`` or ``[run] scheduler``.  Workers read
            their inputs from and write their output to the shared cache
            directory (never through the scheduler); the client writes every cell.

Faults: a task whose worker dies is rescheduled on another worker by Dask (a
task may take down ``ALLOWED_FAILURES`` workers, then it is a failed cell); a
task that raises is never retried (``retries=0``; the worker-side entry point
returns plugin failures as results); a killed client resumes from the run
directory and the cache like any run.

This module imports neither torch nor dask at import time, and nothing of the
core above :mod:`simbench.plan`: the runner hands the worker-side functions in.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from .errors import UserError, one_line
from .hookspecs import hookimpl
from .plan import Executor, PlanTask, TaskResult, WorkerCalls, WorkerJob

log = logging.getLogger("simbench.executors")

SCHEDULER_ENV = "SIMBENCH_DASK_SCHEDULER"
#: how many worker deaths one task may cause before it counts as failed (Dask's "allowed-failures")
ALLOWED_FAILURES = 3

__all__ = ["ALLOWED_FAILURES", "SCHEDULER_ENV", "DaskExecutor", "Executor", "LocalExecutor", "compare_plugins"]


@dataclass(frozen=True)
class LocalExecutor(Executor):
    """Every task in this process, one after another (the default): :meth:`Executor.run`'s loop."""

    name: ClassVar[str] = "local"
    description: ClassVar[str] = "in this process, stage by stage (the default)"


def compare_plugins(worker: str, client: Sequence[tuple[str, str, str, str]],
                    found: Sequence[tuple[str, str, str, str]] | str) -> str:
    """``""`` if ``worker`` has every plugin at the client's code hash, else one line naming worker and plugin."""
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


def _cuda_count() -> int:
    try:
        import torch

        return int(torch.cuda.device_count())
    except Exception:  # noqa: BLE001 - no torch / no driver: no GPU
        return 0


#: live clients and clusters, by executor id (the executor is a frozen dataclass: its fields are settings)
_DASK_STATE: dict[int, dict[str, Any]] = {}


@dataclass(frozen=True)
class DaskExecutor(Executor):
    """Tasks on ``dask.distributed`` workers; arrays move as files in the shared cache directory.

    ``scheduler`` (else ``$SIMBENCH_DASK_SCHEDULER``): an existing cluster's
    address; empty starts a ``LocalCluster`` of ``workers`` processes (0 = one
    per core), one thread each.  With several GPUs visible to a worker and
    ``device`` ``auto``/``cuda``, worker *i* uses ``cuda:(i mod count)``.
    """

    name: ClassVar[str] = "dask"
    description: ClassVar[str] = "dask.distributed: a LocalCluster, or --scheduler tcp://host:8786"
    remote: ClassVar[bool] = True
    requires: ClassVar[tuple[str, ...]] = ("dask", "distributed")
    scheduler: str = ""
    workers: int = 0
    #: extra environment for LocalCluster workers (e.g. CUDA_VISIBLE_DEVICES; tests block a plugin this way)
    worker_env: tuple[tuple[str, str], ...] = ()

    def open(self, calls: WorkerCalls, settings: Mapping[str, Any]) -> None:
        try:
            import dask
            from distributed import Client, LocalCluster
        except ImportError:
            raise UserError("run.executor = 'dask' needs dask.distributed: "
                            "pip install 'simbench-metrics[dask]'") from None
        address = self.scheduler or os.environ.get(SCHEDULER_ENV, "")
        # a task may take down at most ALLOWED_FAILURES workers before it counts as failed (never forever)
        dask.config.set({"distributed.scheduler.allowed-failures": ALLOWED_FAILURES})
        cluster = None
        if address:
            try:
                client = Client(address, timeout="30s")
            except Exception as exc:  # noqa: BLE001 - one line, not a traceback
                raise UserError(f"dask scheduler {address}: cannot connect ({one_line(exc)})") from None
        else:
            n = self.workers or os.cpu_count() or 1
            threads = str(int(settings.get("threads", 1)))
            # BLAS/OpenMP pools pinned like torch's: N processes never oversubscribe the cores
            env = {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads,
                   **dict(self.worker_env)}
            cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0",
                                   env=env, silence_logs=logging.ERROR)
            client = Client(cluster)
        _DASK_STATE[id(self)] = {"client": client, "cluster": cluster}
        if str(settings.get("device", "auto")) in ("auto", "cuda"):
            counts = client.run(_cuda_count)
            for i, (address_i, count) in enumerate(sorted(counts.items())):
                if count > 1:
                    client.run(calls["set_device"], f"cuda:{i % count}", workers=[address_i])

    def _client(self) -> Any:
        return _DASK_STATE[id(self)]["client"]

    def check_workers(self, job: WorkerJob, calls: WorkerCalls) -> None:
        """Raise one line naming the first worker that lacks a plugin of the suite (or has other code)."""
        found = self._client().run(calls["plugins"], job)
        if not found:
            raise UserError("dask cluster has no workers")
        for worker in sorted(found):
            problem = compare_plugins(worker, job.plugins, found[worker])
            if problem:
                raise UserError(problem)

    def run(self, tasks: Sequence[PlanTask], job: WorkerJob, calls: WorkerCalls,
            progress: Callable[[int], None] | None = None) -> dict[str, TaskResult]:
        from distributed import as_completed

        if not tasks:
            return {}
        self.check_workers(job, calls)
        client = self._client()
        # retries=0: a task that raises is not retried (plugin failures come back as results anyway);
        # only a lost worker makes the scheduler run a task again, elsewhere
        futures = {t.id: client.submit(calls["run_task"], job, t, key=f"simbench-{t.id}-{os.urandom(4).hex()}",
                                       pure=False, retries=0) for t in tasks}
        # report each task as it finishes: a metric stage on a small cluster runs for most of an hour
        for _ in as_completed(list(futures.values())):
            if progress is not None:
                progress(1)
        out: dict[str, TaskResult] = {}
        for task_id, future in futures.items():
            try:
                out[task_id] = future.result()
            except UserError:
                raise
            except Exception as exc:  # noqa: BLE001 - KilledWorker after ALLOWED_FAILURES deaths, and the like
                text = one_line(exc)
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


@hookimpl
def register_executors(register: Callable[[type], None]) -> None:
    """The core's two executors."""
    register(LocalExecutor)
    register(DaskExecutor)
