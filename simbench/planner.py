"""The client's side of a run before its cells: the models and probe sets every key depends on, and the plan.

:class:`Planner` is the part of :class:`simbench.runner.Runner` that derives
each stage's :class:`~simbench.plan.PlanTask` s -- their cache keys computed
once, here, from the models' and probe sets' keys; nothing computed -- and
the two stages that stay on the client because later keys depend on them:
model perturbations (attacks need the models; a perturbation names its
probe sets only when it runs) and the probe sets.  A task whose output is
cached or whose cell is finished is not planned.  It also checks the
benchmarks' declared matrices (``collect_requests``) and writes what the
tasks read and no cache holds yet (probe inputs, the models' weights).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .boundary import PluginCallFailed, clone_probe_set, plugin_call, same
from .cache import content_hash, plugin_key
from .cells import flatten_state, non_finite
from .errors import MeasurementFailed, UserError, one_line
from .plan import PlanTask, Stage
from .results import RunDir, record_row
from .sources import source_to_args
from .suite import PluginUse
from .types import DataSplits, MatrixRequest, ModelSpec, PerturbContext, ProbeSet, Record, Source
from .view import StoreView
from .worker import Worker

log = logging.getLogger("simbench.runner")


@dataclass(frozen=True)
class Planned:
    """One benchmark's declared matrix, checked: its metric object, cache key and row labels."""

    benchmark: str
    request: MatrixRequest
    metric: Any
    cache_key: str
    labels: tuple[str, ...]



class Planner(Worker):
    """Plans a run's stages and makes what they depend on (see the module); the runner adds the rest."""

    run_dir: RunDir
    cells: list[str]
    failures: list[dict[str, str]]
    _ui: Any
    _request_failures: dict[str, str]

    def _progress(self, description: str, total: int | None, unit: str = "") -> Callable[[int], None]:
        return self._ui(description, total, unit) if self._ui is not None else (lambda advance=1: None)

    def _warn(self, message: str) -> None:
        log.warning("%s", message)

    def _record_stage_failure(self, cell_id: str, kind: str, label: str, error: str) -> None:
        """A failed perturbation / probe set: a failed row in the results, a line in the manifest."""
        self._warn(f"{cell_id} failed: {error}")
        self.failures.append({"stage": cell_id, "error": error})
        where = {"model_a": label} if kind == "zoo" else {"probe_set": label}
        row = record_row(self.suite.name, kind, Record("", "status", float("nan"), status="failed", error=error,
                                                       **where))
        self.run_dir.write_cell(cell_id, [row], {"error": error})
        self.cells.append(cell_id)

    def _clear_stage_failure(self, cell_id: str) -> None:
        """A stage that failed in an earlier invocation and succeeded now leaves no failure behind."""
        self.run_dir.remove_cell(cell_id)

    def perturb_models(self, data: DataSplits) -> None:
        """Apply every model-target perturbation to the zoo's own models.

        Each perturbation sees the zoo as built, not the copies an earlier
        ``[[perturbations]]`` entry added: entries are independent and their
        order does not matter (two manipulations of a zoo give 2 x M copies,
        not copies of copies).  One that raises, or modifies the zoo's models
        in place, is recorded as failed and the run goes on without it.
        """
        base_models, base_specs, base_key = dict(self.state.models), tuple(self.state.specs), self.state.zoo_key
        base_ids = [s.id for s in base_specs]
        for use in self.suite.perturbations:
            if use.obj.target != "model":
                continue
            cell_id = f"perturbation/{use.label}"
            key = self.cache.key("model_perturbation", {"perturbation": plugin_key(use), "zoo": base_key})

            def compute(use: PluginUse = use) -> tuple[dict[str, Any], dict[str, Any]]:
                ctx = self.stage_ctx("model_perturbation", use.label)
                pctx = PerturbContext(
                    seed=ctx.seed, device=ctx.device, progress=ctx.progress, cache=ctx.cache, log=ctx.log,
                    verbose=ctx.verbose, models=dict(base_models), specs=base_specs, data=data,
                )
                try:
                    entries = plugin_call(f"perturbation {use.label!r}", use.obj.perturb_models,
                                          dict(base_models), list(base_specs), data, pctx)
                finally:  # the zoo's models or the data changed in place: put back, and this perturbation fails
                    self._check_untouched(f"perturbation {use.label!r}")
                entries = list(entries)
                new_specs = [{"id": s.id, "factors": dict(s.factors)} for s, _ in entries]
                for s, _ in entries:
                    if s.factors.get("original") not in base_ids:
                        raise PluginCallFailed(
                            f"perturbation {use.name!r}: new model {s.id!r} must name its original in factors['original']"
                        )
                return flatten_state({s.id: m for s, m in entries}, [s.id for s, _ in entries]), {"specs": new_specs}

            added: list[tuple[ModelSpec, Any]] = []
            try:
                tensors, meta = self.cache.get_or_compute(key, compute)
                by_id = {s.id: s for s in self.state.specs}
                for item in meta["specs"]:
                    spec = ModelSpec(item["id"], item["factors"])
                    base = by_id[item["factors"]["original"]]
                    if spec.id in self.state.models or spec.id in {s.id for s, _ in added}:
                        raise PluginCallFailed(
                            f"perturbation {use.name!r} produced model id {spec.id!r}, which already exists")
                    added.append((spec, self._restore(self.suite.zoo.obj, base, data, tensors, spec.id)))
                self._check_untouched(f"zoo {self.suite.zoo.name!r} instantiate", models=False)
            except PluginCallFailed as exc:
                for spec, _ in added:  # never part of the run: not kept for restoring either
                    self.restorer.forget_model(spec.id)
                self._restore_models()
                self._record_stage_failure(cell_id, "perturbation", use.label, str(exc))
                continue
            self._clear_stage_failure(cell_id)
            for spec, module in added:
                self.state.models[spec.id] = module
                self.state.specs.append(spec)
            self.state.model_entries.append([key, [[spec.id, spec.factors["original"]] for spec, _ in added]])
            self.state.zoo_key = content_hash([self.state.zoo_key, key])

    def make_probe_sets(self, data: DataSplits) -> None:
        """The clean probe set and every input perturbation's probe sets.

        A perturbation that raises, or modifies its inputs or the models in
        place, is recorded as failed; a probe set with NaN/inf inputs is
        recorded as failed and left out.  Neither enters the cache.
        """
        split = data.test if self.suite.probes["split"] == "test" else data.val
        n = self.suite.probes["n"] or len(split)
        # clone: the probe set must not share memory with the dataset a plugin could modify
        clean = ProbeSet("clean", split.x[:n].clone(), split.y[:n].clone(), {"split": self.suite.probes["split"]})
        self.restorer.keep("clean", clean)
        clean_key = content_hash({"data": self.data_key(), "probes": self.suite.probes})
        self.state.probe_sets["clean"] = clean
        self.state.probe_keys["clean"] = clean_key
        inputs = [u for u in self.suite.perturbations if u.obj.target == "input"]
        advance = self._progress("Probe sets", len(inputs), "perturbations")
        for use in inputs:
            cell_id = f"perturbation/{use.label}"
            key = self.cache.key(
                "probe_sets", {"perturbation": plugin_key(use), "clean": clean_key, "zoo": self.state.zoo_key}
            )

            def compute(use: PluginUse = use) -> tuple[dict[str, Any], dict[str, Any]]:
                ctx = self.stage_ctx("probe_sets", use.label)
                pctx = PerturbContext(
                    seed=ctx.seed, device=ctx.device, progress=ctx.progress, cache=ctx.cache, log=ctx.log,
                    verbose=ctx.verbose, models=self.state.models, specs=tuple(self.state.specs), data=data,
                    held_out=self.state.held_out, held_out_specs=tuple(self.state.held_out_specs),
                )
                given = clone_probe_set(clean)
                try:
                    sets = list(plugin_call(f"perturbation {use.label!r}", use.obj.probe_sets, given, pctx))
                finally:  # the models or the data changed in place: put back, and this perturbation fails
                    self._check_untouched(f"perturbation {use.label!r}")
                if not same(given, clean):
                    raise PluginCallFailed(f"perturbation {use.label!r} modified its input probe set in place")
                tensors: dict[str, Any] = {}
                metas = []
                rejected = []
                for ps in sets:
                    if not isinstance(ps, ProbeSet):
                        raise PluginCallFailed(f"perturbation {use.label!r} returned {type(ps).__name__}; "
                                               "expected simbench.ProbeSet")
                    why = non_finite(ps)
                    if why:  # never cached: the probe set fails, the perturbation's other sets go on
                        rejected.append({"name": ps.name, "error": why})
                        continue
                    j = len(metas)
                    tensors[f"{j}::x"] = ps.x
                    tensors[f"{j}::y"] = ps.y
                    for mid, xm in (ps.x_by_model or {}).items():
                        tensors[f"{j}::m::{mid}"] = xm
                    metas.append({"name": ps.name, "meta": dict(ps.meta), "per_model": ps.x_by_model is not None})
                return tensors, {"sets": metas, "rejected": rejected}

            try:
                tensors, meta = self.cache.get_or_compute(key, compute)
            except PluginCallFailed as exc:
                self._restore_models()
                self._record_stage_failure(cell_id, "perturbation", use.label, str(exc))
                advance(1)
                continue
            self._clear_stage_failure(cell_id)
            for item in meta.get("rejected", []):
                self._record_stage_failure(f"probe_set/{item['name']}", "probe_set", item["name"],
                                           f"perturbation {use.label!r}: {item['error']}")
            for j, item in enumerate(meta["sets"]):
                name = item["name"]
                if name in self.state.probe_sets:
                    raise UserError(f"perturbation {use.name!r} produced probe set {name!r} twice")
                per_model = None
                if item["per_model"]:
                    prefix = f"{j}::m::"
                    per_model = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
                self.run_dir.remove_cell(f"probe_set/{name}")
                self.state.probe_sets[name] = ProbeSet(name, tensors[f"{j}::x"], tensors[f"{j}::y"], item["meta"], per_model)
                self.restorer.keep(name, self.state.probe_sets[name])
                self.state.probe_keys[name] = content_hash([key, name])
            advance(1)

    def collect_requests(self) -> list[Planned]:
        """Every unfinished benchmark's declared matrices, checked (``UserError`` names benchmark and key).

        A benchmark whose ``requests`` raises is remembered as failed (its
        cell becomes one failed row); the others go on.
        """
        planned: list[Planned] = []
        # asked also for finished benchmarks: their matrix cells are reused (never recomputed) and stay in the
        # results in the same order as in an uninterrupted run
        for use in self.suite.benchmarks:
            try:
                view = StoreView(self)
                try:
                    requests = list(plugin_call(f"benchmark {use.label!r} requests", use.obj.requests, view))
                finally:
                    self._check_untouched(f"benchmark {use.label!r} requests")
            except (PluginCallFailed, MeasurementFailed) as exc:
                self._request_failures[use.label] = one_line(exc, typed=False)
                continue
            seen: set[str] = set()
            for request in requests:
                where = f"benchmark {use.label!r} request {getattr(request, 'key', request)!r}"
                if not isinstance(request, MatrixRequest):
                    raise UserError(f"{where}: expected simbench.MatrixRequest, got {type(request).__name__}")
                if not request.key or len(request.key) > 200 or not request.key.isprintable() or any(
                        c.isspace() for c in request.key):
                    raise UserError(f"{where}: key must be 1 to 200 printable characters without spaces")
                if request.key in seen:
                    raise UserError(f"{where}: the key is declared twice")
                seen.add(request.key)
                if len(request.sources) < 1:
                    raise UserError(f"{where}: needs at least one source")
                timing = request.timing_repeats
                if isinstance(timing, bool) or not isinstance(timing, int) or timing < 0:
                    raise UserError(f"{where}: timing_repeats must be an integer >= 0, got {timing!r}")
                if timing and len(request.sources) != 2:
                    raise UserError(f"{where}: a timed request (timing_repeats) times the metric on one pair; it "
                                    f"needs exactly 2 sources, not {len(request.sources)}")
                try:
                    metric, metric_key = self.request_metric(request.metric, request.metric_params)
                except UserError as exc:
                    raise UserError(f"{where}: {exc}") from None
                weights = [src.is_weights for src in request.sources if isinstance(src, Source)]
                if any(weights) != (metric.kind == "weight") or (any(weights) and not all(weights)):
                    raise UserError(f"{where}: metric {request.metric!r} is a {metric.kind} metric; its sources must "
                                    f"all be {'weights' if metric.kind == 'weight' else 'activations'}")
                for src in request.sources:
                    self.check_source(src, where)
                labels = [f"{src.model}@{src.layer}" for src in request.sources]
                labels = labels if len(set(labels)) == len(labels) else [f"{i}:{lab}" for i, lab in enumerate(labels)]
                identity: dict[str, Any] = {"metric": metric_key,
                                            "sources": [self._source_key(src) for src in request.sources]}
                if timing:  # a timed cell is its own task (several may time the same matrix): its own output key
                    identity["timed"] = [use.label, request.key, timing]
                key = self.cache.key("matrix", identity)
                planned.append(Planned(use.label, request, metric, key, tuple(labels)))
                self.state.matrix_metrics[(use.label, request.key)] = metric
        return planned

    def _zoo_task(self, group: Sequence[str], whole: bool) -> PlanTask:
        return PlanTask(f"zoo/{group[0]}", "zoo_group", self.zoo_group_key(group, whole), (),
                        {"group": list(group), "whole": whole})

    def zoo_stage(self) -> Stage:
        """One task per zoo group whose weights are not in the cache yet."""
        _, groups, whole = self.zoo_layout()
        tasks = [self._zoo_task(group, whole) for group in groups]
        return Stage("Zoo groups", tuple(t for t in tasks if not self.cache.has(t.output)))

    def _models_args(self) -> dict[str, Any]:
        """Where a worker finds the analysed models: the cache entries the client loaded them from."""
        return {"models": self.state.model_entries, "ids": [s.id for s in self.state.specs],
                "zoo_key": self.state.zoo_key}

    def _probe_entry(self, name: str) -> list[str]:
        """``[entry key, probe-set key]``: a probe set's inputs in the cache, for a worker (written once)."""
        ps = self.state.probe_sets[name]
        key = self.cache.key("representation_inputs", {"representations": self.representations_key(name)})
        if not self.cache.has(key):
            tensors = {"x": ps.x, "y": ps.y, **{f"m::{mid}": xm for mid, xm in (ps.x_by_model or {}).items()}}
            self.cache.save(key, tensors, {"per_model": ps.x_by_model is not None})
        return [key, self.state.probe_keys[name]]

    def representation_stage(self, probe_names: Sequence[str]) -> Stage:
        """One task per probe set whose representations (every model's activations and outputs) are not cached.

        A worker loads the models from the cache entries the client loaded them
        from and the probe set's inputs from the entry the client writes here,
        forwards the probe set through every model and writes the
        representations entry, which the client then reads.
        """
        layer = self.suite.probes["layer"]
        tasks = []
        for name in probe_names:
            key = self.representations_key(name)
            if (name, layer) in self._reps or self.cache.has(key):
                continue
            probe = self._probe_entry(name)
            tasks.append(PlanTask(f"representations/{name}", "representations", key, (probe[0],),
                                  {"probe_set": name, "probe_sets": {name: probe}, **self._models_args()}))
        return Stage("Representations", tuple(tasks))

    def _similarity_task(self, use: PluginUse, where: str) -> PlanTask:
        if use.obj.kind == "weight":
            inputs = [self._weights_entry()]
        else:
            inputs = [self.representations_key(where)]
        if use.obj.needs_inputs:
            inputs.append(self._inputs_entry(where))
        return PlanTask(f"similarity/{use.label}/{where}", "similarity", self.similarity_key(use, where),
                        tuple(inputs), {"metric": use.label, "where": where, "ids": [s.id for s in self.state.specs]})

    def similarity_stage(self, cells: Sequence[tuple[PluginUse, str]]) -> Stage:
        """One task per (metric, probe set) whose cell is not finished and whose matrix is not cached.

        Its inputs (representations, weights, probe inputs) are in the cache
        (and, for the local executor, in memory), so a worker reads them from
        the shared directory.
        """
        tasks = []
        for use, where in cells:
            cell_id = f"similarity/{use.label}/{where}"
            if self.run_dir.cell_path(cell_id).exists() or self.cache.has(self.similarity_key(use, where)):
                continue
            tasks.append(self._similarity_task(use, where))
        return Stage("Similarity", tuple(tasks))

    def _matrix_tasks(self, item: Planned) -> tuple[PlanTask, PlanTask]:
        """A declared matrix's two tasks: materialise its sources into one entry, then run its metric on them."""
        request = item.request
        inputs_key = self.cache.key("matrix_inputs", {"matrix": item.cache_key})
        names = sorted({s.probe_set for s in request.sources if not s.is_weights and s.probe_set in self.state.probe_sets})
        sources = PlanTask(f"sources/{item.benchmark}/{request.key}", "sources", inputs_key, (),
                           {"sources": [source_to_args(s) for s in request.sources], "metric": request.metric,
                            "metric_params": [list(p) for p in request.metric_params],
                            "probe_sets": {name: self._probe_entry(name) for name in names},
                            "failed_probe_sets": {s.probe_set: self.state.failed_probe_sets[s.probe_set]
                                                  for s in request.sources if s.probe_set in self.state.failed_probe_sets},
                            **self._models_args()})
        matrix = PlanTask(f"matrix/{item.benchmark}/{request.key}", "matrix", item.cache_key, (inputs_key,),
                          {"benchmark": item.benchmark, "key": request.key, "metric": request.metric,
                           "metric_params": dict(request.metric_params), "labels": list(item.labels),
                           "timing_repeats": request.timing_repeats})
        return sources, matrix

    def matrix_stages(self, planned: Sequence[Planned]) -> tuple[Stage, Stage]:
        """The declared matrices whose cell is not finished and whose matrix is not cached (a timed one is
        measured in this run, whatever the cache holds): the ``sources`` tasks of those whose inputs are not
        materialised yet, then one ``matrix`` task each."""
        sources, matrices = [], []
        for item in planned:
            cell_id = f"matrix/{item.benchmark}/{item.request.key}"
            timed = item.request.timing_repeats > 0
            if self.run_dir.cell_path(cell_id).exists() or (self.cache.has(item.cache_key) and not timed):
                continue
            source_task, matrix_task = self._matrix_tasks(item)
            if not self.cache.has(source_task.output):
                sources.append(source_task)
            matrices.append(matrix_task)
        return Stage("Benchmark sources", tuple(sources)), Stage("Benchmark matrices", tuple(matrices))

    def _weights_entry(self) -> str:
        """Every model's dense weights in the cache (what weight metrics read on a worker)."""
        key = self.cache.key("weights", {"zoo": self.state.zoo_key})
        if key not in self._entries:  # kept in memory for the local executor's tasks; written once
            tensors, counts, strides = {}, [], {}
            for i, spec in enumerate(self.state.specs):
                ws = list(self.state.models[spec.id].dense_weights())
                counts.append(len(ws))
                for j, w in enumerate(ws):
                    tensors[f"w::{i}::{j}"] = w.detach()
                    strides[f"w::{i}::{j}"] = list(w.stride())
            # the layout too (dense_weights often returns transposed views): BLAS rounds differently for
            # another memory layout, and a worker must compute the client's numbers to the last bit
            meta = {"counts": counts, "ids": [s.id for s in self.state.specs], "strides": strides}
            self._save_entry(key, tensors, meta, write=not self.cache.has(key))
        return key

    def _inputs_entry(self, where: str) -> str:
        key = self.cache.key("inputs", {"probe_set": self.state.probe_keys[where]})
        if key not in self._entries:
            self._save_entry(key, {"x": self._inputs(where)}, {}, write=not self.cache.has(key))
        return key
