"""The plugin-call boundary: one-line failures, time limits, copies, in-place changes, output validation.

Plugin code is called only through :func:`plugin_call` (or, for metric
cells, :func:`call_with_timeout` or a worker process,
:func:`simbench.isolation.call_in_process`, per ``[run] isolation``):
anything it raises -- ``SystemExit`` and a metric's ``UserError`` included,
``KeyboardInterrupt`` excepted -- becomes a one-line failure of that
plugin's stage.  Metrics and the benchmarks' reads get copies of shared
tensors (:func:`clone`, checked with :func:`same`); whatever else a plugin is
handed (the data, probe sets, models) is checked against one restoring copy
(:class:`Restorer`) after the call, put back if changed, and the plugin
fails, so nothing it did in place reaches a later measurement.  A metric's
matrix is accepted only through :func:`validate_matrix`.

:func:`metric_job` is a metric cell's computation, shared by the run's
worker thread and a worker process (which unpickles it by this module's
name).  The runner, Dask workers and the test kit all measure through
:func:`simbench.cells.measure`, which calls these.
"""

from __future__ import annotations

import hashlib
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from .errors import MeasurementFailed, UserError, one_line
from .seeding import derive_seed
from .types import DataSplits, ProbeSet

log = logging.getLogger("simbench.runner")

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


def clone(obj: Any) -> Any:
    """A deep copy of the tensors in lists/tuples/dicts (what metrics and benchmarks are handed)."""
    import torch

    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, list):
        return [clone(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(clone(v) for v in obj)
    if isinstance(obj, dict):
        return {k: clone(v) for k, v in obj.items()}
    return obj


def same(a: Any, b: Any) -> bool:
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


def clone_probe_set(ps: ProbeSet) -> ProbeSet:
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


def metric_notes(metric: Any, reps: Any, kwargs: Mapping[str, Any], ids: Sequence[str], what: str) -> list[str]:
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
