"""Cells as pure functions: what one unit of a run computes, with no knowledge of caches or run directories.

Each function takes explicit inputs and returns its product; the plugin
calls inside go through the boundary (:mod:`simbench.boundary`: copies,
time limit, isolation, in-place checks, output validation).  The local
executor, Dask workers (both through :class:`simbench.worker.Worker`) and
the test kit (:class:`simbench.testing.FakeStore`) all compute here, so a
benchmark checked with the kit sees the runner's semantics, not a copy:

* :func:`measure` -- a metric's matrix over K representations (a similarity
  cell, a benchmark's declared matrix, a timed request);
* :func:`task_agreement` -- the agreement matrix and task scores of a probe set;
* :func:`read_layer` / :func:`read_representations` -- models' activations
  and outputs on a probe set;
* :func:`build_zoo_group` -- one zoo group's trained weights;
* :func:`materialise_source` -- the tensor a :class:`~simbench.types.Source` names.

The cache keys these products are stored under are derived by the plan (the
runner), never here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import isolation
from .boundary import (
    PluginCallFailed,
    call_with_timeout,
    clone,
    metric_job,
    metric_notes,
    plugin_call,
    same,
    seed_everything,
    validate_matrix,
)
from .errors import MeasurementFailed, StageFailed, UserError
from .registry import Registry
from .types import DataSplits, ProbeSet, RunContext, Source

log = logging.getLogger("simbench.runner")

#: probes per forward pass when reading models
INFER_BATCH = 2048


@dataclass(frozen=True)
class Measured:
    """A metric cell's product: the validated float64 matrix, its flags (validation's and the metric's own
    notes), the notes alone (what the cache keeps beside the matrix) and, for a timed request, the wall
    seconds of each timed one-pair call."""

    matrix: Any
    flags: list[str]
    notes: list[str] = field(default_factory=list)
    call_seconds: list[float] | None = None


def measure(metric: Any, reps: Any, kwargs: Mapping[str, Any], ids: Sequence[str], *, what: str,
            seed: int | None = None, timeout: float = 0.0, device: str = "cpu", isolated: bool = False,
            threads: int = 1, plugin_files: Sequence[str] = (), timing_repeats: int = 0) -> Measured:
    """Run a metric on copies of its inputs under the cell time limit and validate its matrix.

    The one place a metric runs (the runner's cells on any executor, and the
    kit): :class:`MeasurementFailed` or the metric's own exception if it
    fails.  ``ids`` label the matrix's rows.  ``seed`` reseeds the global
    generators first (None: left as they are).  ``isolated`` runs it in a
    worker process (:mod:`simbench.isolation`), which gets its own copies
    through the pipe, checks them itself, and is killed at the time limit.
    ``timing_repeats > 0`` (two sources): after the matrix, one warm-up call
    of the metric's one-pair ``metric(a, b)``, then that many timed calls,
    all under one cell time limit.
    """
    if seed is not None:
        seed_everything(seed)
    if isolated:
        raw, seconds, modified = isolation.call_in_process(
            metric_job, (metric, reps, dict(kwargs), timing_repeats, device, seed, True), timeout=timeout,
            threads=threads, plugin_files=list(plugin_files), what=what)
    else:
        given, given_kwargs = clone(reps), clone(dict(kwargs))
        raw, seconds, _ = call_with_timeout(
            lambda: metric_job(metric, given, given_kwargs, timing_repeats, device), timeout, what)
        modified = not same(given, reps) or not same(given_kwargs, dict(kwargs))
    if modified:
        raise MeasurementFailed("modified its input tensors in place; a metric must not change its inputs")
    matrix, flags = validate_matrix(raw, ids, metric)
    notes = metric_notes(metric, reps, kwargs, ids, what)
    return Measured(matrix, flags + notes, notes, list(seconds) if timing_repeats else None)


def read_layer(model: Any, x: Any, layer: str, device: str) -> Any:
    """One model's activations at ``layer`` on inputs ``x``, batched, as the store keeps them."""
    import torch

    reps = []
    with torch.no_grad():
        for start in range(0, x.shape[0], INFER_BATCH):
            xb = x[start : start + INFER_BATCH].to(device)
            reps.append(stored_activations(model.read(xb, [layer])[layer].reshape(xb.shape[0], -1)))
    return torch.cat(reps)


def read_representations(models: Mapping[str, Any], ids: Sequence[str], ps: ProbeSet, layer: str,
                         device: str) -> dict[str, Any]:
    """Every model's activations at ``layer`` (``"default"``: each model's own) and outputs on a probe set:
    ``{"rep::i": [n, d], "out::i": [n, C]}`` in ``ids`` order.  A model without the layer is a
    :class:`UserError`; non-finite outputs are :class:`MeasurementFailed` (the probe set fails)."""
    import torch

    tensors = {}
    for i, mid in enumerate(ids):
        model = models[mid]
        name = model.default_layer if layer == "default" else layer
        if name not in model.readable_layers:
            raise UserError(
                f"probes.layer: model {mid!r} has no layer {name!r}; "
                f"readable layers: {', '.join(model.readable_layers)}"
            )
        x = ps.inputs_for(mid)
        reps, outs = [], []
        with torch.no_grad():
            for start in range(0, x.shape[0], INFER_BATCH):
                xb = x[start : start + INFER_BATCH].to(device)
                reps.append(stored_activations(model.read(xb, [name])[name].reshape(xb.shape[0], -1)))
                outs.append(model(xb).float().cpu())
        tensors[f"rep::{i}"] = torch.cat(reps)
        tensors[f"out::{i}"] = torch.cat(outs)
        if not bool(torch.isfinite(tensors[f"out::{i}"]).all()):
            raise MeasurementFailed(f"model {mid!r} gives NaN/inf outputs on probe set {ps.name!r}")
    return tensors


def build_zoo_group(zoo: Any, what: str, group: Sequence[str], whole: bool, data: DataSplits, ctx: RunContext,
                    check_untouched: Callable[[str], None]) -> dict[str, Any]:
    """Train one zoo group (the whole zoo when ``whole``): its models' flattened state dicts.

    ``check_untouched(what)`` runs after the plugin call (the data it was
    handed is checked and restored there).  A failure is :class:`StageFailed`.
    """
    group = list(group)
    try:
        try:
            if whole:
                built = plugin_call(f"{what} build", zoo.build, data, ctx)
            else:
                built = plugin_call(f"{what} build_group", zoo.build_group, list(group), data, ctx)
        finally:
            check_untouched(f"{what} build")
    except PluginCallFailed as exc:
        raise StageFailed(str(exc)) from None
    if not isinstance(built, Mapping):
        raise StageFailed(f"{what} build returned {type(built).__name__}; expected {{model id: module}}")
    missing = [i for i in group if i not in built]
    if missing:
        raise StageFailed(f"{what} did not build models {missing[:3]}")
    return flatten_state(built, group)


def flatten_state(models: Mapping[str, Any], ids: Sequence[str]) -> dict[str, Any]:
    """Models' state dicts as one flat ``{"<id>::<name>": tensor}`` (how the cache keeps a group)."""
    tensors = {}
    for mid in ids:
        for name, value in models[mid].state_dict().items():
            tensors[f"{mid}::{name}"] = value.detach().cpu().clone()
    return tensors


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


def non_finite(ps: ProbeSet) -> str:
    """Why a probe set cannot be used (NaN/inf inputs), or ``""``."""
    import torch

    for what, t in [("inputs", ps.x), *((f"inputs for {k}", v) for k, v in (ps.x_by_model or {}).items())]:
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            return f"{what} contain {int((~torch.isfinite(t)).sum())} NaN/inf values"
    return ""


def model_buffers(model: Any) -> dict[str, Any]:
    """Copies of a model's stored non-weight tensors (torch buffers: saved with its checkpoint, not trained by
    the optimiser, e.g. a training trace or BatchNorm statistics), by name; ``{}`` for a model without any."""
    named = getattr(model, "named_buffers", None)
    return {name: b.detach().clone() for name, b in named()} if callable(named) else {}


def pack_sources(reps: Sequence[Any], inputs: Any = None) -> tuple[dict[str, Any], dict[str, Any]]:
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


def unpack_sources(tensors: Mapping[str, Any], meta: Mapping[str, Any], device: str) -> list[Any]:
    out: list[Any] = []
    for k, (kind, count) in enumerate(zip(meta["kinds"], meta["counts"], strict=True)):
        if kind == "weights":
            out.append([with_strides(tensors[f"w::{k}::{j}"], meta["strides"].get(f"w::{k}::{j}")).to(device)
                        for j in range(count)])
        else:
            out.append(tensors[f"rep::{k}"].to(device))
    return out


def with_strides(t: Any, stride: Sequence[int] | None) -> Any:
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


