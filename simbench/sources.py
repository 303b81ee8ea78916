"""What a benchmark's declared matrix reads: its :class:`~simbench.types.Source` s, checked, keyed and materialised.

:class:`SourceReader` is part of :class:`simbench.worker.Worker` (a mixin: it
reads the worker's state, representations and registry): the client checks
and keys every request's sources when it plans (``check_source``,
``_source_key``); the plan's ``sources`` task materialises them wherever it
runs (``source_tensor``: a layer read, a transform, rows, a dtype, through
:func:`simbench.cells.materialise_source`), and the store view reads them
the same way (``view.representation(source)``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .cache import class_code_hash, plugin_key
from .cells import SOURCE_DTYPES, SOURCE_MEMO_BYTES, materialise_source, read_layer
from .errors import MeasurementFailed, UserError
from .types import Perturbation, Source

if TYPE_CHECKING:  # pragma: no cover
    from .registry import Registry


def source_to_args(source: Source) -> dict[str, Any]:
    """A :class:`Source` as JSON-able task arguments."""
    return {"model": source.model, "probe_set": source.probe_set, "layer": source.layer,
            "transform": source.transform, "transform_params": [list(p) for p in source.transform_params],
            "transform_seed": source.transform_seed, "rows": None if source.rows is None else list(source.rows),
            "dtype": source.dtype}


def source_from_args(args: Mapping[str, Any]) -> Source:
    return Source(args["model"], args["probe_set"], args["layer"], args["transform"],
                  tuple((k, _hashable(v)) for k, v in args["transform_params"]), int(args["transform_seed"]),
                  None if args["rows"] is None else tuple(int(r) for r in args["rows"]), args["dtype"])


def _hashable(value: Any) -> Any:
    return tuple(_hashable(v) for v in value) if isinstance(value, list) else value


class SourceReader:
    """Sources of declared matrices, on a :class:`~simbench.worker.Worker`'s state (see the module)."""

    registry: Registry
    state: Any  # simbench.worker._State (not imported: the worker imports this module)
    device: str
    _reps: dict[tuple[str, str], tuple[list[Any], list[Any]]]
    _layer_memo: dict[tuple[str, str], Any]
    _source_memo: dict[Source, tuple[Any, int]]

    def request_metric(self, metric: str, params: Sequence[tuple[str, Any]] | Mapping[str, Any]) -> tuple[Any, dict[str, Any]]:
        """A request's metric object and its cache key part: the suite's metric ``metric`` (a label, when no
        parameters are given), else the registered metric ``metric`` configured with ``params``."""
        params = dict(params)
        if not params:
            for use in self.suite.metrics:
                if use.label == metric:
                    return use.obj, plugin_key(use)
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
            x = self.state.probe_sets[probe_set].inputs_for(model_id)
            return {"rep": read_layer(self.state.models[model_id], x, layer, self.device)}, {}

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

    def _request_inputs(self, sources: Sequence[Source], metric: Any) -> tuple[Any, dict[str, Any]]:
        first = sources[0]
        reps = [self.source_tensor(src) for src in sources]
        reps = [[w.to(self.device) for w in r] if isinstance(r, list) else r.to(self.device) for r in reps]
        kwargs: dict[str, Any] = {}
        if metric.needs_inputs and not first.is_weights:
            x = self.state.probe_sets[first.probe_set].inputs_for(first.model)
            x = x.reshape(len(x), -1)
            kwargs["inputs"] = (x[list(first.rows)] if first.rows is not None else x).to(self.device)
        return reps, kwargs
