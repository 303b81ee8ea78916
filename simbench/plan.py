"""A suite's work as an explicit plan of pure, content-addressed tasks.

A :class:`PlanTask` is one unit an executor may run anywhere: train one zoo
group, read every model on one probe set, compute one metric's M x M matrix
on one probe set, materialise the sources of one matrix a benchmark declared
(``sources``: one cache entry), compute that matrix (``matrix``).  Every
executor runs the plan, the local one included (:mod:`simbench.worker` runs
each task; :mod:`simbench.cells` computes it).  It names the
store entries it reads (``inputs``: tensor-cache keys) and the one entry it
writes (``output``: a tensor-cache key), and carries only JSON-able
arguments, so it can be shipped to another process or machine.  Because
every key is a content hash of everything the output depends on, a task
whose output already exists is skipped, a task run twice (a worker lost
mid-task, the task retried elsewhere) writes the same bytes, and which
process ran it changes nothing.

The plan is laid out in *stages* (zoo groups, representations, similarity matrices, benchmark sources,
benchmark matrices):
later keys depend on what earlier stages produced (a failed zoo group changes
the zoo, a perturbation names its probe sets only when it runs), so the
runner asks for one stage's tasks when the stage before it is done.  Within
a stage, tasks are independent and run in parallel.

The results store (the run directory) has one writer, the client: tasks
return a small :class:`TaskResult` (ok or a one-line error, seconds, which
worker) and the client writes the cells from the cache entries.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

#: the kinds of task the core ships to executors; the rest of the plan runs on the client
TASK_KINDS = ("zoo_group", "representations", "similarity", "sources", "matrix")


@dataclass(frozen=True)
class PlanTask:
    """One pure unit of work with declared inputs and one output in the store."""

    id: str  # the cell or stage it fills, e.g. "zoo/w8/s0", "similarity/linear_cka/clean", "matrix/layer_map/m0/clean"
    kind: str  # one of TASK_KINDS
    output: str  # the tensor-cache key it writes
    inputs: tuple[str, ...] = ()  # tensor-cache keys it reads (must exist before it runs)
    args: Mapping[str, Any] = field(default_factory=dict)  # JSON-able parameters


@dataclass(frozen=True)
class TaskResult:
    """What a task hands back to the client: never a large array (those are in the cache)."""

    task_id: str
    ok: bool
    error: str = ""
    seconds: float = 0.0
    worker: str = ""
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Stage:
    """Tasks that may run in parallel; the next stage starts when all are done."""

    name: str
    tasks: tuple[PlanTask, ...]

    def describe(self) -> list[str]:
        """One line per task: ``id <- inputs -> output`` (keys shortened), for logs and docs."""
        out = []
        for t in self.tasks:
            ins = ", ".join(k.split("/")[0] + "/" + k.split("/")[-1][:8] for k in t.inputs) or "-"
            out.append(f"{t.id}  <- {ins}  -> {t.output.split('/')[0]}/{t.output.split('/')[-1][:8]}")
        return out


@dataclass(frozen=True)
class WorkerJob:
    """What a worker needs to rebuild the client's suite and plugins (all plain data)."""

    suite_path: str
    overrides: tuple[str, ...]
    plugin_files: tuple[str, ...]
    suite_sha256: str
    cache_dir: str  # absolute; shared by the client and every worker
    device: str  # as the suite asks: "auto", "cpu", "cuda", "cuda:N"
    threads: int
    data_fingerprint: str = ""
    #: (kind, name, plugin, code hash) of every plugin the suite names, as the client has them
    plugins: tuple[tuple[str, str, str, str], ...] = ()


#: the worker-side entry points the runner hands an executor (module-level functions, picklable by name):
#: "run_task"(job, task) -> TaskResult, "plugins"(job) -> plugins as the worker has them (or a reason),
#: "set_device"(device) -> device (one GPU per worker)
WorkerCalls = Mapping[str, Callable[..., Any]]


@dataclass(frozen=True)
class Executor:
    """Runs a stage's tasks; the runner (the client) stays the only writer of the run directory.

    Register a subclass (a frozen dataclass whose fields are its settings:
    ``scheduler`` and ``workers`` are filled from ``[run]`` / the command
    line when declared) through ``register_executors``.  ``remote`` executors
    send tasks to other processes: the runner then requires the tensor cache
    (the shared directory large arrays move through) and expects
    :meth:`run` to check every worker's plugins before sending anything.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    remote: ClassVar[bool] = False
    #: importable modules the executor needs (as :attr:`simbench.Plugin.requires`), checked before a run starts
    requires: ClassVar[tuple[str, ...]] = ()

    def open(self, calls: WorkerCalls, settings: Mapping[str, Any]) -> None:
        """Start (or connect to) whatever runs the tasks.  ``settings``: the suite's ``[run]`` table."""

    def run(self, tasks: Sequence[PlanTask], job: WorkerJob, calls: WorkerCalls,
            progress: Callable[[int], None] | None = None) -> dict[str, TaskResult]:
        """Run ``tasks`` (independent of each other); return one result per task id.

        ``progress(k)`` (optional) is called as tasks finish, ``k`` at a time,
        so the runner's display advances during a long stage."""
        out = {}
        for t in tasks:
            out[t.id] = calls["run_task"](job, t)
            if progress is not None:
                progress(1)
        return out

    def close(self) -> None:
        """Release what :meth:`open` started (never a cluster someone else started)."""
