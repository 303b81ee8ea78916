"""The run's store as plugins read it: :class:`StoreView`, one read-only view for a benchmark's
``requests``/``evaluate`` during a run and for its ``plots`` (and any reader) after the run.

One class, one method set, over one small store interface with two backends:

- during a run, :class:`_WorkerCells` reads a :class:`simbench.worker.Worker`'s state (the cells the
  runner computed or loaded from the cache, the models, the probe sets);
- after a run, :class:`_RunDirCells` reads a run directory (:class:`simbench.results.RunDir`: its
  stored matrices and ``results.parquet``).

The matrices a suite names (similarity per metric and probe set, agreement and accuracy per probe set)
read the same from either: ``similarity`` oriented so that higher = more similar, ``agreement``
``M x M``, ``accuracy`` ``[M]``, rows in ``specs`` order.  What a run directory does not keep (the
models and their representations, the probe inputs, the data, a benchmark's declared matrices) is
read during a run only; asking a finished run for it is a one-line :class:`UserError`.

Read-only: every tensor it hands out is a copy, and it never creates a cell (the runner computes every
one the suite names before the benchmark stage).

One name, one parameter name: ``simbench.StoreView``, handed to ``evaluate(self, view)``,
``requests(self, view)`` and ``plots(cls, records, out_dir, view=None)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .errors import MeasurementFailed, UserError
from .types import WEIGHTS_PROBE_SET, ModelSpec, ProbeSet, Source, matrix_from_rows

if TYPE_CHECKING:  # pragma: no cover
    from .worker import Worker

#: what a finished run directory cannot answer (it keeps matrices and records, not models or inputs)
_AFTER_RUN = "is read during a run only; a finished run directory keeps its matrices and records, not {}"


def _in_order(values: Any, stored: Sequence[str], ids: Sequence[str]) -> Any:
    """``values`` (rows/columns in ``stored`` order) re-indexed to ``ids``; NaN for models not stored."""
    import numpy as np

    if list(stored) == list(ids):
        return values
    where = {model: k for k, model in enumerate(stored)}
    index = np.array([where.get(model, -1) for model in ids], dtype=np.int64)
    out = values[np.ix_(np.maximum(index, 0), np.maximum(index, 0))].astype(np.float64, copy=True)
    out[index < 0, :] = np.nan
    out[:, index < 0] = np.nan
    return out


class _WorkerCells:
    """The store during a run: a worker's state (cells computed or loaded from the cache, models, probe sets)."""

    def __init__(self, runner: Worker, benchmark: str | None) -> None:
        self.runner = runner
        self.benchmark = benchmark

    def where(self, metric: str, probe_set: str) -> tuple[str, str]:
        if self.runner.metric_use(metric).obj.kind == "weight":
            return metric, WEIGHTS_PROBE_SET
        self.known_probe_set(probe_set)
        return metric, probe_set

    def known_probe_set(self, name: str) -> None:
        state = self.runner.state
        if name in state.failed_probe_sets:
            raise MeasurementFailed(f"probe set {name!r} failed: {state.failed_probe_sets[name]}")
        if name not in state.probe_sets:
            raise UserError(f"unknown probe set {name!r}; this suite has: {', '.join(state.probe_sets)}")

    def raw_similarity(self, metric: str, probe_set: str) -> Any:
        state = self.runner.state
        key = self.where(metric, probe_set)
        if key in state.failures:
            raise MeasurementFailed(state.failures[key])
        if key not in state.similarities:
            raise RuntimeError(f"similarity/{key[0]}/{key[1]} was not computed before the benchmark stage")
        return state.similarities[key].clone()

    def orient(self, metric: str, values: Any) -> Any:
        return self.runner.metric_use(metric).obj.to_similarity(values)

    def failure(self, metric: str, probe_set: str) -> str | None:
        try:
            key = self.where(metric, probe_set)
        except MeasurementFailed as exc:
            return str(exc)
        return self.runner.state.failures.get(key)

    def per_probe_set(self, probe_set: str, what: str) -> Any:
        self.known_probe_set(probe_set)
        table = self.runner.state.agreements if what == "agreement" else self.runner.state.accuracies
        if probe_set not in table:
            raise RuntimeError(f"agreement/{probe_set} was not computed before the benchmark stage")
        return table[probe_set].clone()

    def stored(self, kind: str, metric: str, probe_set: str) -> Any:
        """As :meth:`simbench.results.RunDir.matrix` returns it: raw float64 ndarray, or None."""
        state = self.runner.state
        if kind == "agreement":
            found = state.agreements.get(probe_set)
        else:
            key = (metric, probe_set)
            found = None if key in state.failures else state.similarities.get(key)
        return None if found is None else found.detach().double().numpy().copy()

    def declared(self, key: str, table: str) -> Any:
        return getattr(self.runner.state, table).get((self.benchmark or "", key))

    def undeclared(self, key: str) -> UserError:
        return UserError(f"benchmark {self.benchmark!r} reads matrix {key!r}, which its requests() did not declare")

    def model(self, model_id: str) -> Any:
        return self.runner.model(model_id)


class _RunDirCells:
    """The store after a run: a run directory's stored matrices (or, for store format 1 and for a bare
    frame, its per-pair rows) and ``results.parquet``."""

    def __init__(self, frame: Any, specs: Sequence[ModelSpec], metrics: Mapping[str, Any], store: Any) -> None:
        self.frame = frame
        self.specs = specs
        self.metrics = metrics
        self.store = store

    def stored(self, kind: str, metric: str, probe_set: str) -> Any:
        ids = [s.id for s in self.specs]
        if self.store is not None:
            try:
                stored, values = self.store.matrix(kind, metric, probe_set)
            except (KeyError, MeasurementFailed):
                return None
            return _in_order(values, stored, ids)
        frame = self.frame
        rows = frame[(frame["kind"] == kind) & (frame["metric"] == (metric if kind == "similarity" else ""))
                     & (frame["probe_set"] == probe_set)]
        return matrix_from_rows(rows, ids)

    def where(self, metric: str, probe_set: str) -> tuple[str, str]:
        cls = self.metrics.get(metric)
        if cls is not None and getattr(cls, "kind", "") == "weight":
            return metric, WEIGHTS_PROBE_SET
        return metric, probe_set

    def _failed(self, kind: str, metric: str, probe_set: str) -> str | None:
        if self.store is not None:
            try:
                self.store.matrix(kind, metric, probe_set)
            except MeasurementFailed as exc:
                return str(exc)
            except KeyError:
                return None
            return None
        frame = self.frame
        rows = frame[(frame["kind"] == kind) & (frame["metric"] == metric) & (frame["probe_set"] == probe_set)]
        failed = rows[rows["status"] == "failed"]
        if len(failed) and not (rows["status"] == "ok").any():
            return str(failed["error"].iloc[0]) if "error" in failed else "failed"
        return None

    def _matrix(self, kind: str, metric: str, probe_set: str) -> Any:
        import torch

        error = self._failed(kind, metric, probe_set)
        if error is not None:
            raise MeasurementFailed(error)
        values = self.stored(kind, metric, probe_set)
        if values is None:
            what = f"similarity/{metric}" if kind == "similarity" else kind
            raise UserError(f"this run has no {what} matrix on probe set {probe_set!r}")
        return torch.from_numpy(values.copy())

    def raw_similarity(self, metric: str, probe_set: str) -> Any:
        return self._matrix("similarity", *self.where(metric, probe_set))

    def orient(self, metric: str, values: Any) -> Any:
        cls = self.metrics.get(metric)
        return values if cls is None else cls.to_similarity(values)

    def failure(self, metric: str, probe_set: str) -> str | None:
        return self._failed("similarity", *self.where(metric, probe_set))

    def per_probe_set(self, probe_set: str, what: str) -> Any:
        if what == "agreement":
            return self._matrix("agreement", "", probe_set)
        import numpy as np
        import torch

        frame = self.frame
        rows = frame[(frame["kind"] == "accuracy") & (frame["probe_set"] == probe_set)]
        if not len(rows):
            raise UserError(f"this run has no accuracy on probe set {probe_set!r}")
        ok = rows[rows["status"] == "ok"]
        if not len(ok):
            raise MeasurementFailed(str(rows["error"].iloc[0]) if "error" in rows else "failed")
        score = dict(zip(ok["model_a"], ok["value"].astype(float)))
        return torch.from_numpy(np.array([score.get(s.id, np.nan) for s in self.specs], dtype=np.float64))

    def known_probe_set(self, name: str) -> None:
        raise UserError(f"probe set {name!r}: the probe inputs {_AFTER_RUN.format('the probe sets')}")

    def declared(self, key: str, table: str) -> Any:
        return None

    def undeclared(self, key: str) -> UserError:
        return UserError(f"declared matrix {key!r} {_AFTER_RUN.format('declared matrices')}")

    def model(self, model_id: str) -> Any:
        raise UserError(f"model {model_id!r} {_AFTER_RUN.format('the models')}")


class StoreView:
    """A read-only view of a run's store: what a benchmark reads in ``requests``/``evaluate`` during a
    run, and what its ``plots`` (or any reader) read from the finished run.  Every tensor is a copy.

    Build one with ``StoreView(worker, benchmark)`` (the runner does) or :meth:`of_run` (the
    leaderboard does, from a run directory).  ``specs`` fixes the row/column order of every ``M x M``
    matrix; ``probe_sets`` names the probe sets in suite order (``"clean"`` first); ``metrics`` maps each
    suite metric label to its metric (the configured object during a run, the registered class after
    it; metadata only -- ``to_similarity``, ``value_range``, ``invariances`` -- a reader never calls
    it).  ``frame`` is ``results.parquet`` and ``manifest`` the run's manifest (after a run; ``None``
    and ``{}`` during it).

    The same in both: :meth:`similarity` (oriented so that higher = more similar; weight metrics return
    the same matrix for every probe set; :class:`simbench.errors.MeasurementFailed` for a failed cell),
    :meth:`failure`, :meth:`agreement`, :meth:`accuracy`, :meth:`stored_matrix` (raw ndarray or None) and
    :meth:`pairs`.  During a run only: the models and inputs (:meth:`probe_set`, :meth:`outputs`,
    :meth:`representations`, :meth:`layers`, :meth:`weights`, :meth:`buffers`, :meth:`representation`,
    ``data``) and this benchmark's declared matrices (:meth:`matrix` and friends, declared with
    :meth:`simbench.Benchmark.requests`).  Nothing here computes a cell.
    """

    suite_name: str
    seed: int
    device: str
    specs: Sequence[ModelSpec]
    metrics: Mapping[str, Any]
    probe_sets: Sequence[str]
    data: Any
    frame: Any
    manifest: Mapping[str, Any]

    def __init__(self, runner: Worker, benchmark: str | None = None) -> None:
        """The view a benchmark gets during a run: ``runner``'s state; ``benchmark`` is the label whose
        declared matrices :meth:`matrix` reads (``None`` for the view ``requests`` gets)."""
        self._cells: _WorkerCells | _RunDirCells = _WorkerCells(runner, benchmark)
        self._runner = runner
        state = runner.state
        assert state.data is not None
        self.suite_name = runner.suite.name
        self.seed = runner.suite.seed
        self.device = runner.device
        self.specs = list(state.specs)
        self.data = state.data
        self.metrics = {use.label: use.obj for use in runner.suite.metrics}
        self.probe_sets = list(state.probe_sets)
        self.frame = None
        self.manifest = {}

    @classmethod
    def of_run(cls, frame: Any, specs: Sequence[ModelSpec], manifest: Mapping[str, Any] | None = None,
               metrics: Mapping[str, Any] | None = None, store: Any = None) -> StoreView:
        """The view of a finished run: ``frame`` its ``results.parquet``, ``specs`` its models in zoo
        order, ``metrics`` each metric label's registered class (values of a metric not given stay as
        stored), ``store`` its :class:`simbench.results.RunDir` (without one, matrices are rebuilt from
        per-pair rows in ``frame``, as run directories of store format 1 kept them)."""
        self = cls.__new__(cls)
        manifest = dict(manifest or {})
        self._runner = None
        self.specs = list(specs)
        self.metrics = dict(metrics or {})
        self._cells = _RunDirCells(frame, self.specs, self.metrics, store)
        suite = manifest.get("suite", {})
        self.suite_name = str(suite.get("name", "") if isinstance(suite, Mapping) else suite)
        self.seed = int(manifest.get("seed", 0) or 0)
        self.device = str(manifest.get("device", ""))
        self.probe_sets = list(manifest.get("probe_sets", {}))
        self.data = None
        self.frame = frame
        self.manifest = manifest
        return self

    @property
    def benchmark(self) -> str | None:
        """The label of the benchmark this view serves (whose declared matrices :meth:`matrix` reads)."""
        return getattr(self._cells, "benchmark", None)

    @benchmark.setter
    def benchmark(self, label: str | None) -> None:
        self._cells.benchmark = label  # type: ignore[union-attr]

    @property
    def store(self) -> Any:
        """The finished run's :class:`simbench.results.RunDir` (None during a run or for a bare frame)."""
        return getattr(self._cells, "store", None)

    # -- the suite's matrices: the same during and after a run -------------------------------------

    def similarity(self, metric: str, probe_set: str) -> Any:
        """``Tensor[M, M]`` of ``metric`` on ``probe_set``, oriented so that higher = more similar."""
        return self._cells.orient(metric, self._cells.raw_similarity(metric, probe_set))

    def failure(self, metric: str, probe_set: str) -> str | None:
        """The one-line error of a failed similarity cell, or None."""
        return self._cells.failure(metric, probe_set)

    def agreement(self, probe_set: str) -> Any:
        """``Tensor[M, M]``: how alike two models' outputs are on the probe set (the data's :class:`Task`)."""
        return self._cells.per_probe_set(probe_set, "agreement")

    def accuracy(self, probe_set: str) -> Any:
        """``Tensor[M]``: each model's task score on the probe set: the data's :class:`Task`'s ``score_name``,
        accuracy (classification) or R^2 (regression) for the built-ins."""
        return self._cells.per_probe_set(probe_set, "accuracy")

    def stored_matrix(self, kind: str, metric: str = "", probe_set: str = "clean") -> Any:
        """One stored matrix as an ``M x M`` float64 ndarray in ``specs`` order, as stored (not
        oriented); ``None`` when the run has none (or its cell failed).  ``kind`` is ``"similarity"``
        or ``"agreement"``; weight metrics are stored under the probe set ``"weights"``."""
        return self._cells.stored(kind, metric if kind == "similarity" else "", probe_set)

    def pairs(self, probe_set: str) -> Any:
        """One row per unordered model pair (zoo order, ``a`` before ``b``) on ``probe_set``.

        Columns ``model_a``, ``model_b``, ``agreement`` and one column per metric
        with a stored matrix (weight metrics, stored once, appear for every probe
        set), oriented by the metric's ``to_similarity`` (a distance is negated, as
        :meth:`similarity` does; metrics whose class is unknown stay as stored).
        Every metric is symmetrised as ``0.5 * (S[a, b] + S[b, a])``, as the
        functional-agreement benchmark does (exact for a symmetric matrix); a
        failed metric's column is absent.  No rows when the probe set has no
        agreement matrix.
        """
        import numpy as np
        import pandas as pd

        ids = [s.id for s in self.specs]
        agreement = self.stored_matrix("agreement", "", probe_set)
        iu, ju = np.triu_indices(len(ids), 1) if agreement is not None else (np.zeros(0, int), np.zeros(0, int))
        out: dict[str, Any] = {"model_a": [ids[i] for i in iu], "model_b": [ids[j] for j in ju],
                               "agreement": agreement[iu, ju] if agreement is not None else np.zeros(0)}
        if self.frame is not None:
            frame = self.frame
            measured = list(dict.fromkeys(frame[(frame["kind"] == "similarity") & (frame["status"] == "ok")]["metric"]))
        else:
            measured = list(self.metrics)
        for metric in measured:
            values = self.stored_matrix("similarity", metric, probe_set)
            if values is None:
                values = self.stored_matrix("similarity", metric, WEIGHTS_PROBE_SET)
            if values is None:
                continue
            pair = 0.5 * (values[iu, ju] + values[ju, iu])
            out[metric] = self.metrics[metric].to_similarity(pair) if metric in self.metrics else pair
        return pd.DataFrame(out)

    # -- the models and inputs: during a run only --------------------------------------------------

    def probe_set(self, name: str) -> ProbeSet:
        """The probe set's inputs and labels (a copy)."""
        from .boundary import clone_probe_set

        self._cells.known_probe_set(name)
        return clone_probe_set(self._runner.state.probe_sets[name])

    def outputs(self, probe_set: str) -> list[Any]:
        """Each model's outputs (logits or regression predictions) on the probe set, in spec order."""
        from .boundary import clone

        self._cells.known_probe_set(probe_set)
        return clone(self._runner.representations(probe_set, None)[1])

    def representations(self, probe_set: str, layer: str | None = None) -> list[Any]:
        """Each model's ``[n, d]`` activations at ``layer`` (default: the suite's layer); float32, or float64
        for a layer the model returns in float64."""
        from .boundary import clone

        self._cells.known_probe_set(probe_set)
        return clone(self._runner.representations(probe_set, layer)[0])

    def layers(self, model_id: str) -> tuple[str, ...]:
        """The model's readable layers, input side first."""
        return tuple(self._cells.model(model_id).readable_layers)

    def weights(self, model_id: str) -> list[Any]:
        """The model's dense weight matrices (each ``[in, out]``, input side first)."""
        return [w.detach().clone() for w in self._cells.model(model_id).dense_weights()]

    def buffers(self, model_id: str) -> dict[str, Any]:
        """The model's stored non-weight tensors by name (torch buffers, saved with its checkpoint: e.g. a
        training trace the zoo recorded, BatchNorm statistics); ``{}`` when it has none."""
        from .cells import model_buffers

        return model_buffers(self._cells.model(model_id))

    def representation(self, source: Source) -> Any:
        """One materialised source (layer read, transform and rows applied), e.g. for a probe's accuracy."""
        from .boundary import clone

        if self._runner is None:
            raise UserError(f"representation({source!r}) {_AFTER_RUN.format('the models')}")
        self._runner.check_source(source, f"representation({source!r})")
        return clone(self._runner.source_tensor(source))

    # -- this benchmark's declared matrices: during a run only -------------------------------------

    def matrix(self, key: str) -> Any:
        """This benchmark's declared matrix ``key`` as stored (raw, ``K x K``); ``MeasurementFailed`` if it failed."""
        failed = self._cells.declared(key, "matrix_failures")
        if failed is not None:
            raise MeasurementFailed(failed)
        found = self._cells.declared(key, "matrices")
        if found is None:
            raise self._cells.undeclared(key)
        return found.clone()

    def matrix_failure(self, key: str) -> str | None:
        """The one-line error of a failed declared matrix, or None."""
        return self._cells.declared(key, "matrix_failures")

    def matrix_metric(self, key: str) -> Any:
        """The configured metric of declared matrix ``key`` (metadata: orientation, range, symmetry; never call it)."""
        found = self._cells.declared(key, "matrix_metrics")
        if found is None:
            raise self._cells.undeclared(key)
        return found

    def matrix_seconds(self, key: str) -> list[float] | None:
        """Wall seconds of each timed one-pair call of declared matrix ``key`` (``timing_repeats`` of them),
        None for a request that was not timed; ``MeasurementFailed`` if the cell failed."""
        self.matrix(key)  # a failed cell raises; an undeclared key is a one-line error
        found = self._cells.declared(key, "matrix_seconds")
        return None if found is None else list(found)

