"""The side of a run that computes: a suite's state and the plan's tasks, in one process.

A :class:`Worker` holds what the stages produced so far (data, models, probe
sets, representations) and runs :class:`~simbench.plan.PlanTask` s: it reads
a task's inputs from the tensor cache (or finds them already in memory),
computes through :mod:`simbench.cells` and writes the task's one output to
the cache.  Every executor runs tasks here: the ``local`` executor in the
client's own process, on the client's worker (the :class:`simbench.runner.Runner`
*is* a worker, so nothing is loaded twice); a remote executor on a worker
that :func:`worker_for` rebuilds from a :class:`~simbench.plan.WorkerJob`
(suite file, overrides, ``--plugin`` files), loading the data and the models
from the shared cache once per worker.  The client then writes every cell
from the outputs; it never computes a task's product itself.

The task kinds (:data:`simbench.plan.TASK_KINDS`):

``zoo_group``        train one zoo group (the whole zoo when it is one group)
``representations``  every model's activations and outputs on one probe set
``similarity``       one metric's M x M matrix on one probe set (or the weights)
``sources``          the sources one benchmark request names, materialised into one entry
``matrix``           a benchmark's declared K x K matrix over those sources (timed if asked)
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .boundary import PluginCallFailed, Restorer, fingerprint, plugin_call, seed_everything
from .cache import TensorCache, class_code_hash, content_hash, plugin_key
from .cells import (
    build_zoo_group,
    measure,
    pack_sources,
    read_representations,
    resolve_task,
    unpack_sources,
    with_strides,
)
from .errors import MeasurementFailed, StageFailed, UserError, one_line
from .isolation import unavailable
from .plan import PlanTask, TaskResult, WorkerJob
from .registry import Registry
from .seeding import derive_seed
from .sources import SourceReader, source_from_args
from .suite import PluginUse, Suite
from .types import DataSplits, ModelSpec, ProbeSet, RunContext, Source

log = logging.getLogger("simbench.runner")


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


@dataclass
class _State:
    """What the stages produced so far, shared with the store view."""

    data: DataSplits | None = None
    specs: list[ModelSpec] = field(default_factory=list)
    models: dict[str, Any] = field(default_factory=dict)
    #: the zoo's held-out models (trained, given to perturbations, never analysed)
    held_out: dict[str, Any] = field(default_factory=dict)
    held_out_specs: list[ModelSpec] = field(default_factory=list)
    zoo_key: str = ""
    #: the cache entries the analysed models were loaded from: [key, [[model id, id of the spec it
    #: is instantiated as], ...]] (a worker loads the same models from the same entries)
    model_entries: list[list[Any]] = field(default_factory=list)
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


class Worker(SourceReader):
    """One process's view of a suite's state, and the plan's tasks run against it (see the module)."""

    def __init__(self, suite: Suite, registry: Registry, cache: TensorCache, verbose: bool = False) -> None:
        self.suite = suite
        self.registry = registry
        self.cache = cache
        self.verbose = verbose
        self.state = _State()
        self.device = "cpu"
        self.ctx = RunContext()
        self.data_fingerprint = ""
        #: the configured task plugin the data names (``DataSplits.task``), set when the data is loaded
        self.task: Any = None
        #: the pristine copy of the data, probe sets and models, checked after every plugin call that gets them
        self.restorer = Restorer()
        self._reps: dict[tuple[str, str], tuple[list[Any], list[Any]]] = {}
        #: (probe set, layer) -> activations per model, for the declared matrices being computed
        self._layer_memo: dict[tuple[str, str], Any] = {}
        #: transformed sources already materialised (insertion order = age), up to SOURCE_MEMO_BYTES: several
        #: requests (and the benchmark's view) often share one transformed copy, which may be costly to make
        self._source_memo: dict[Source, tuple[Any, int]] = {}
        #: cache entries this process wrote or read for tasks, kept while a stage uses them (key -> entry)
        self._entries: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
        #: whether :meth:`_save_entry` keeps what it writes in memory (the client, which reads the outputs and
        #: clears them after each stage; a remote worker keeps nothing: its outputs are read from the cache)
        self.keep_entries = True

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

    def model(self, model_id: str) -> Any:
        try:
            return self.state.models[model_id]
        except KeyError:
            raise UserError(f"unknown model {model_id!r}; this run has {len(self.state.specs)} models "
                            f"({', '.join(s.id for s in self.state.specs[:5])}, ...)") from None

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

    def output(self, key: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """A task's output as the client reads it: from this process's memory (the local executor ran it
        here), else from the cache; None when neither has it (a failed task, a damaged entry)."""
        return self._entries.get(key) or self.cache.load(key)

    def _load_entry(self, key: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """A task's input entry: from this process's memory when it made or read it, else from the cache."""
        if key in self._entries:
            return self._entries[key]
        found = self.cache.load(key)
        if found is None:
            raise UserError(f"cache entry {key} is missing from {self.cache.root} on this worker; the cache "
                            "directory must be shared by the client and every worker (--cache-dir)")
        return found

    def _save_entry(self, key: str, tensors: Mapping[str, Any], meta: Mapping[str, Any], write: bool = True,
                    keep: bool = True) -> None:
        """Write a task's input or output to the cache (unless ``write`` is false: it is there already) and keep it
        in memory while this stage needs it (:attr:`keep_entries`; ``keep=False``: only if the cache cannot)."""
        if write:
            self.cache.save(key, tensors, meta)
        if self.keep_entries and (keep or not self.cache.enabled):
            self._entries[key] = (dict(tensors), dict(meta))

    # -- data and models ------------------------------------------------------------

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

    def ensure_data(self) -> DataSplits:
        """The dataset, loaded once per worker and checked against the client's by content."""
        if self.state.data is None:
            data = self.load_data()
            if self.data_fingerprint and fingerprint(data) != self.data_fingerprint:
                raise UserError(f"dataset {self.suite.data.name!r} loads other data on this worker than on the "
                                "client; share the data files (and the Hugging Face cache)")
            self.state.data = data
            self.restorer.keep("the data", data)
        return self.state.data

    def data_key(self) -> dict[str, Any]:
        # the loaded data's content (and the data files' sha256) are part of every downstream key
        return {**plugin_key(self.suite.data), "seed": self.suite.seed, "content": self.data_fingerprint,
                "files": dict(self.suite.data_files)}

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
        base = {"zoo": plugin_key(self.suite.zoo), "data": self.data_key(), "device": self.device}
        return self.cache.key("zoo", base if whole else {**base, "group": list(group)})

    def _restore(self, zoo: Any, spec: ModelSpec, data: DataSplits, tensors: Mapping[str, Any], prefix: str) -> Any:
        """One model from its cached state.  The caller checks the data once after a batch of these
        (``_check_untouched(..., models=False)``): a check per model would cost M comparisons of the data."""
        module = plugin_call(f"zoo {self.suite.zoo.name!r} instantiate", zoo.instantiate, spec, data)
        state = {k[len(prefix) + 2 :]: v for k, v in tensors.items() if k.startswith(prefix + "::")}
        module.load_state_dict(state, strict=True)
        # kept to put weights back if a plugin modifies a model in place
        self.restorer.keep_model(prefix, module, state)
        return module.to(self.device).eval()

    def load_models(self, tensors: Mapping[str, Any], members: Sequence[tuple[str, ModelSpec]]) -> dict[str, Any]:
        """The modules of one cache entry (a zoo group, a model perturbation's copies): ``members`` are
        ``(model id, spec it is instantiated as)``.  ``PluginCallFailed`` if the zoo's ``instantiate`` fails
        or changes the data."""
        data = self.ensure_data()
        out: dict[str, Any] = {}
        try:
            for mid, spec in members:
                out[mid] = self._restore(self.suite.zoo.obj, spec, data, tensors, mid)
        finally:
            self._check_untouched(f"zoo {self.suite.zoo.name!r} instantiate", models=False)
        return out

    def _ensure_models(self, entries: Sequence[Sequence[Any]], ids: Sequence[str], zoo_key: str) -> None:
        """On a worker: the analysed models, loaded from the cache entries the client loaded them from."""
        if self.state.zoo_key == zoo_key and [s.id for s in self.state.specs] == list(ids):
            return
        try:
            by_id = {s.id: s for s in plugin_call(f"zoo {self.suite.zoo.name!r} specs", self.suite.zoo.obj.specs)}
        except PluginCallFailed as exc:
            raise StageFailed(str(exc)) from None
        models: dict[str, Any] = {}
        for key, members in entries:
            tensors, _ = self._load_entry(key)
            models.update(self.load_models(tensors, [(mid, by_id[base]) for mid, base in members]))
        missing = [mid for mid in ids if mid not in models]
        if missing:
            raise MeasurementFailed(f"the zoo this worker loads from the cache lacks models {missing[:3]}")
        self.state.models = models
        self.state.specs = [ModelSpec(mid, {}) for mid in ids]
        self.state.zoo_key = zoo_key
        self._reps.clear()

    def _ensure_probe_set(self, name: str, inputs_key: str, probe_key: str) -> None:
        """On a worker: a probe set from the entry the client wrote (a no-op where it is already known)."""
        if self.state.probe_keys.get(name) == probe_key and name in self.state.probe_sets:
            return
        tensors, meta = self._load_entry(inputs_key)
        per_model = ({k[3:]: v for k, v in tensors.items() if k.startswith("m::")} if meta.get("per_model")
                     else None)
        self.state.probe_sets[name] = ProbeSet(name, tensors["x"], tensors["y"], {}, per_model)
        self.restorer.keep(name, self.state.probe_sets[name])
        self.state.probe_keys[name] = probe_key
        for memo in [m for m in self._reps if m[0] == name]:
            del self._reps[memo]

    # -- representations ---------------------------------------------------------------

    def representations(self, probe_set: str, layer: str | None) -> tuple[list[Any], list[Any]]:
        """Each model's activations at ``layer`` and its outputs on a probe set (cached).

        The suite's layer is made by the plan's ``representations`` tasks; the
        same computation (:func:`simbench.cells.read_representations`) serves a
        benchmark's read of another layer."""
        layer = layer or self.suite.probes["layer"]
        if probe_set in self.state.failed_probe_sets:
            raise MeasurementFailed(f"probe set {probe_set!r} failed: {self.state.failed_probe_sets[probe_set]}")
        memo = (probe_set, layer)
        if memo in self._reps:
            return self._reps[memo]
        ps = self.state.probe_sets[probe_set]
        ids = [s.id for s in self.state.specs]
        key = self.representations_key(probe_set, layer)

        def compute() -> tuple[dict[str, Any], dict[str, Any]]:
            tensors = read_representations(self.state.models, ids, ps, layer, self.device)
            # a model's read/forward (zoo code) is handed slices of the probe set itself: an in-place op on its
            # input would change what every later model and probe set reads
            try:
                self._check_untouched(f"reading the models on probe set {probe_set!r}")
            except PluginCallFailed as exc:
                raise MeasurementFailed(str(exc)) from None
            return tensors, {"ids": ids}

        def check(tensors: Mapping[str, Any], meta: Mapping[str, Any]) -> None:
            # a checksum-valid entry for other models (or missing one) is rebuilt, never read misaligned
            if list(meta.get("ids", [])) != ids:
                raise ValueError("it was written for other models")
            for i in range(len(ids)):
                for part in ("rep", "out"):
                    t = tensors.get(f"{part}::{i}")
                    if t is None or t.ndim != 2 or t.shape[0] != ps.x.shape[0]:
                        raise ValueError(f"{part}::{i} is missing or not [{ps.x.shape[0]}, features]")

        tensors, _ = self.cache.get_or_compute(key, compute, check)
        result = ([tensors[f"rep::{i}"] for i in range(len(ids))], [tensors[f"out::{i}"] for i in range(len(ids))])
        self._reps[memo] = result
        return result

    def representations_key(self, probe_set: str, layer: str | None = None) -> str:
        """The cache key of every model's activations and outputs on one probe set."""
        layer = layer or self.suite.probes["layer"]
        return self.cache.key(
            "representations", {"zoo": self.state.zoo_key, "probe_set": self.state.probe_keys[probe_set], "layer": layer}
        )

    def similarity_key(self, use: PluginUse, where: str) -> str:
        """The cache key of one metric's validated M x M matrix on one probe set (or the weights)."""
        if use.obj.kind == "weight":
            rep_key = self.state.zoo_key
        else:
            rep_key = content_hash([self.state.zoo_key, self.state.probe_keys[where], self.suite.probes["layer"]])
        return self.cache.key("similarity", {"metric": plugin_key(use), "reps": rep_key})

    def _inputs(self, where: str) -> Any:
        """A probe set's inputs flattened to ``[n, features]`` (what ``needs_inputs`` metrics get)."""
        x = self.state.probe_sets[where].x
        return x.reshape(len(x), -1)

    # -- metrics ---------------------------------------------------------------------

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

    def _measure(self, metric: Any, seed_tags: Sequence[str], what: str, ids: Sequence[str], reps: Any,
                 kwargs: Mapping[str, Any], cache_key: str, timing_repeats: int = 0) -> dict[str, Any]:
        """:func:`simbench.cells.measure` with this run's settings; the valid matrix goes to the cache.
        Returns the task's result meta (flags; a timed request's seconds per call)."""
        seed = self.stage_ctx(*seed_tags).seed  # reseeds this process too (a metric in a thread uses it)
        measured = measure(metric, reps, kwargs, ids, what=what, seed=seed,
                           timeout=float(self.suite.run["cell_timeout"]), device=self.device,
                           isolated=self.isolated(metric), threads=int(self.suite.run["threads"]),
                           plugin_files=self._plugin_files(), timing_repeats=timing_repeats)
        self._save_entry(cache_key, {"matrix": measured.matrix}, {"notes": measured.notes})
        return {"flags": measured.flags, "call_seconds": measured.call_seconds}

    # -- tasks -----------------------------------------------------------------------------

    def run_task(self, task: PlanTask) -> dict[str, Any]:
        """Run one task in this process: read its inputs, compute through :mod:`simbench.cells`, write its
        output to the cache; return its result meta (a few JSON-able values).

        Raises what the computation raises (a plugin failure, :class:`MeasurementFailed`);
        :func:`run_task` (module level) turns that into a failed result.
        """
        args = task.args
        if task.kind == "zoo_group":
            zoo = self.suite.zoo
            # every group sees the zoo stage's seed: a zoo derives each model's seeds from it (and the model's
            # own factors), so a model does not depend on how the zoo is split into groups
            data = self.ensure_data()
            tensors = build_zoo_group(zoo.obj, f"zoo {zoo.name!r}", args["group"], args["whole"], data,
                                      self.stage_ctx("zoo"), self._check_untouched)
            self._save_entry(task.output, tensors, {"ids": list(args["group"])})
            return {}
        if task.kind in ("representations", "sources"):
            self._ensure_models(args["models"], args["ids"], args["zoo_key"])
            for name, (inputs_key, probe_key) in args["probe_sets"].items():
                self._ensure_probe_set(name, inputs_key, probe_key)
            self.state.failed_probe_sets.update(args.get("failed_probe_sets", {}))
        if task.kind == "representations":
            self.representations(args["probe_set"], None)  # computes and writes the cache entry task.output
            return {}
        if task.kind == "sources":
            sources = [source_from_args(s) for s in args["sources"]]
            metric, _ = self.request_metric(args["metric"], args["metric_params"])
            reps, kwargs = self._request_inputs(sources, metric)
            tensors, meta = pack_sources(reps, kwargs.get("inputs"))
            # large (K sources): read back from the cache by its matrix task, held in memory only without one
            self._save_entry(task.output, tensors, meta, keep=False)
            return {}
        if task.kind == "similarity":
            use = self.metric_use(args["metric"])
            ids = list(args["ids"])
            memo = self._reps.get((args["where"], self.suite.probes["layer"]))
            known = (use.obj.kind != "weight" and memo is not None and args["where"] in self.state.probe_keys
                     and self.representations_key(args["where"]) == task.inputs[0])
            tensors, meta = ({}, {}) if known else self._load_entry(task.inputs[0])
            if list(meta.get("ids", ids)) != ids:
                raise UserError(f"cache entry {task.inputs[0]} holds other models than the plan")
            if use.obj.kind == "weight":
                strides = meta.get("strides", {})
                reps: Any = [[with_strides(tensors[f"w::{i}::{j}"], strides.get(f"w::{i}::{j}")).to(self.device)
                              for j in range(n)] for i, n in enumerate(meta["counts"])]
            else:
                found = memo[0] if known and memo is not None else [tensors[f"rep::{i}"] for i in range(len(ids))]
                reps = [r.to(self.device) for r in found]
            kwargs = {}
            if use.obj.needs_inputs:
                kwargs["inputs"] = self._load_entry(task.inputs[1])[0]["x"].to(self.device)
            where = args["where"]
            return self._measure(use.obj, ("similarity", use.label, where), f"{use.label}@{where}", ids, reps,
                                 kwargs, task.output)
        if task.kind == "matrix":
            metric, _ = self.request_metric(args["metric"], args["metric_params"])
            tensors, meta = self._load_entry(task.inputs[0])
            reps = unpack_sources(tensors, meta, self.device)
            kwargs = {"inputs": tensors["inputs"].to(self.device)} if "inputs" in tensors else {}
            return self._measure(metric, ("matrix", args["benchmark"], args["key"]), task.id, list(args["labels"]),
                                 reps, kwargs, task.output, int(args.get("timing_repeats", 0)))
        raise UserError(f"unknown task kind {task.kind!r}")


# ----------------------------------------------------------------------------
# The entry points an executor calls (module-level: Dask pickles these by name)
# ----------------------------------------------------------------------------

_WORKERS: dict[WorkerJob, Worker] = {}
#: set per worker by the executor when several GPUs are visible: one device per worker
_WORKER_DEVICE: dict[str, str] = {}


def adopt(job: WorkerJob, worker: Worker) -> None:
    """Serve ``job``'s tasks in this process with ``worker`` (the client's own, for the local executor)."""
    _WORKERS.clear()
    _WORKERS[job] = worker


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


def worker_for(job: WorkerJob) -> Worker:
    """This process's worker for ``job``: the one :func:`adopt` named, else built once per worker process."""
    found = _WORKERS.get(job)
    if found is not None:
        return found
    from .registry import build_registry
    from .suite import load_suite

    registry = build_registry(plugin_files=list(job.plugin_files))
    suite = load_suite(Path(job.suite_path), registry, job.overrides)
    if suite.sha256 != job.suite_sha256:
        raise UserError(f"{job.suite_path}: differs on this worker from the client's (suite sha256 "
                        f"{suite.sha256[:12]} vs {job.suite_sha256[:12]}); share the suite file")
    worker = Worker(suite, registry, TensorCache(job.cache_dir))
    worker.keep_entries = False
    set_threads(job.threads)
    worker.device = _WORKER_DEVICE.get("device") or resolve_device(job.device)
    worker.data_fingerprint = job.data_fingerprint
    adopt(job, worker)  # one job at a time: an old suite's data and models are not kept alive
    return worker


def run_task(job: WorkerJob, task: PlanTask) -> TaskResult:
    """Run one task in this process; a plugin's failure comes back as ``ok=False`` (and is never retried).

    ``UserError`` (the worker cannot serve this job: another suite, no shared
    cache) propagates: the client stops with its one line.
    """
    started = time.perf_counter()
    worker = _worker_name()
    try:
        meta = worker_for(job).run_task(task)
    except StageFailed as exc:  # a plugin's failure (a zoo group's build), though a UserError: the task's result
        error = one_line(exc, typed=False)
        log.warning("task %s failed on %s: %s", task.id, worker, error)
        return TaskResult(task.id, False, error, time.perf_counter() - started, worker)
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
    _WORKERS.clear()
    return device


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except Exception:  # noqa: BLE001 - not on a dask worker
        return f"pid {os.getpid()}"


#: what the runner hands an executor (see simbench.plan.WorkerCalls)
WORKER_CALLS = {"run_task": run_task, "plugins": worker_plugins, "set_device": set_worker_device}
