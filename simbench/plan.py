"""A suite's work as an explicit plan of pure, content-addressed tasks.

A :class:`Task` is one unit an executor may run anywhere: train one zoo
group, compute one metric's M x M matrix on one probe set.  It names the
store entries it reads (``inputs``: tensor-cache keys) and the one entry it
writes (``output``: a tensor-cache key), and carries only JSON-able
arguments, so it can be shipped to another process or machine.  Because
every key is a content hash of everything the output depends on, a task
whose output already exists is skipped, a task run twice (a worker lost
mid-task, the task retried elsewhere) writes the same bytes, and which
process ran it changes nothing.

The plan is laid out in *stages* (zoo groups, then similarity matrices):
later keys depend on what earlier stages produced (a failed zoo group changes
the zoo, a perturbation names its probe sets only when it runs), so the
runner asks for one stage's tasks when the stage before it is done.  Within
a stage, tasks are independent and run in parallel.

The results store (the run directory) has one writer, the client: tasks
return a small :class:`TaskResult` (ok or a one-line error, seconds, which
worker) and the client writes the cells from the cache entries.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: the kinds of task the core ships to executors; the rest of the plan runs on the client
TASK_KINDS = ("zoo_group", "similarity")


@dataclass(frozen=True)
class Task:
    """One pure unit of work with declared inputs and one output in the store."""

    id: str  # the cell or stage it fills, e.g. "zoo/w8/s0", "similarity/linear_cka/clean"
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
    tasks: tuple[Task, ...]

    def describe(self) -> list[str]:
        """One line per task: ``id <- inputs -> output`` (keys shortened), for logs and docs."""
        out = []
        for t in self.tasks:
            ins = ", ".join(k.split("/")[0] + "/" + k.split("/")[-1][:8] for k in t.inputs) or "-"
            out.append(f"{t.id}  <- {ins}  -> {t.output.split('/')[0]}/{t.output.split('/')[-1][:8]}")
        return out
