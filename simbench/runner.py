"""Executes a suite stage by stage (see docs/architecture.md).

    data -> zoo (+ model perturbations) -> probe sets -> representations
         -> similarity matrices (metric x probe set) -> agreement matrices
         -> benchmarks -> results store

Every stage is a pure function of explicit inputs (a dataset config, a zoo
config, a probe-set key, a metric config) plus a seed derived from the suite
seed and the stage's name, so results do not depend on which stages were
cached.  Tensor outputs are cached under content hashes in the cache
directory; finished cells (one similarity matrix, one agreement matrix, one
benchmark evaluation) are written to the run directory, which is what makes
a killed run resume.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import logging
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .cache import TensorCache, content_hash
from .errors import MeasurementFailed, UserError
from .registry import Registry
from .results import RunDir, record_row
from .suite import PluginUse, Suite
from .types import WEIGHTS_PROBE_SET, DataSplits, ModelSpec, PerturbContext, ProbeSet, Record, RunContext

log = logging.getLogger("simbench.runner")

DEFAULT_CACHE_DIR = ".simbench-cache"
CACHE_ENV = "SIMBENCH_CACHE_DIR"
INFER_BATCH = 2048


def derive_seed(seed: int, *tags: str) -> int:
    """A 31-bit seed for one stage, stable across runs and Python versions."""
    digest = hashlib.sha256(":".join([str(seed), *tags]).encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def seed_everything(seed: int) -> None:
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def resolve_device(requested: str) -> str:
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise UserError("run.device = 'cuda' but no CUDA device is available; use 'auto' or 'cpu'")
    return requested


def describe_device(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return f"cuda ({torch.cuda.get_device_name(0)})"
    return f"cpu ({platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads)"


def git_revision(where: Path) -> str:
    """``<sha>`` or ``<sha>-dirty`` of the repository holding ``where``; ``unknown`` outside git."""
    try:
        cwd = where if where.is_dir() else where.parent
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        return f"{sha}-dirty" if dirty else sha
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def _plugin_key(use: PluginUse) -> dict[str, Any]:
    return {"name": use.name, "version": use.obj.version, "params": use.params}


# ----------------------------------------------------------------------------
# Progress display
# ----------------------------------------------------------------------------


class ProgressUI:
    """Rich progress bars, one task per stage; silent when ``quiet``."""

    def __init__(self, console: Any = None, quiet: bool = False) -> None:
        self.quiet = quiet
        self._progress: Any = None
        self.console = console

    def __enter__(self) -> ProgressUI:
        if not self.quiet:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=self.console,
                transient=False,
            )
            self._progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def __call__(self, description: str, total: int | None = None) -> Callable[[int], None]:
        if self._progress is None:
            return lambda advance=1: None
        task = self._progress.add_task(description, total=total)
        progress = self._progress

        def advance(step: int = 1) -> None:
            progress.advance(task, step)

        return advance


# ----------------------------------------------------------------------------
# The benchmark context
# ----------------------------------------------------------------------------


@dataclass
class _State:
    """What the stages produced so far, shared with the benchmark context."""

    data: DataSplits | None = None
    specs: list[ModelSpec] = field(default_factory=list)
    models: dict[str, Any] = field(default_factory=dict)
    zoo_key: str = ""
    probe_sets: dict[str, ProbeSet] = field(default_factory=dict)
    probe_keys: dict[str, str] = field(default_factory=dict)
    similarities: dict[tuple[str, str], Any] = field(default_factory=dict)
    failures: dict[tuple[str, str], str] = field(default_factory=dict)
    agreements: dict[str, Any] = field(default_factory=dict)
    accuracies: dict[str, Any] = field(default_factory=dict)


class RunnerContext:
    """The runner's implementation of :class:`simbench.types.BenchmarkContext`."""

    def __init__(self, runner: Runner) -> None:
        self._runner = runner
        state = runner.state
        assert state.data is not None
        self.suite_name = runner.suite.name
        self.seed = runner.suite.seed
        self.device = runner.device
        self.specs = list(state.specs)
        self.models = state.models
        self.data = state.data
        self.metrics = {use.label: use.obj for use in runner.suite.metrics}
        self.probe_sets = list(state.probe_sets)

    def similarity(self, metric: str, probe_set: str) -> Any:
        runner = self._runner
        use = runner.metric_use(metric)
        where = WEIGHTS_PROBE_SET if use.obj.kind == "weight" else probe_set
        key = (metric, where)
        if key not in runner.state.similarities and key not in runner.state.failures:
            runner.similarity_cell(use, where)
        if key in runner.state.failures:
            raise MeasurementFailed(runner.state.failures[key])
        return use.obj.to_similarity(runner.state.similarities[key])

    def failure(self, metric: str, probe_set: str) -> str | None:
        use = self._runner.metric_use(metric)
        where = WEIGHTS_PROBE_SET if use.obj.kind == "weight" else probe_set
        try:
            self.similarity(metric, probe_set)
        except MeasurementFailed:
            pass
        return self._runner.state.failures.get((metric, where))

    def agreement(self, probe_set: str) -> Any:
        if probe_set not in self._runner.state.agreements:
            self._runner.agreement_cell(probe_set)
        return self._runner.state.agreements[probe_set]

    def accuracy(self, probe_set: str) -> Any:
        if probe_set not in self._runner.state.accuracies:
            self._runner.agreement_cell(probe_set)
        return self._runner.state.accuracies[probe_set]

    def probe_set(self, name: str) -> ProbeSet:
        try:
            return self._runner.state.probe_sets[name]
        except KeyError:
            raise UserError(f"unknown probe set {name!r}; this suite has: {', '.join(self.probe_sets)}") from None

    def outputs(self, probe_set: str) -> list[Any]:
        return self._runner.representations(probe_set, None)[1]

    def representations(self, probe_set: str, layer: str | None = None) -> list[Any]:
        return self._runner.representations(probe_set, layer)[0]

    def make_plugin(self, kind: str, name: str, params: Mapping[str, Any] | None = None) -> Any:
        obj, key, message = self._runner.registry.configure(kind, name, params or {})
        if obj is None:
            raise UserError(f"{kind} {name!r}: parameter {key!r}: {message}")
        return obj

    def run_context(self) -> RunContext:
        return self._runner.ctx


# ----------------------------------------------------------------------------
# The runner
# ----------------------------------------------------------------------------


class Runner:
    """Runs one validated suite into one run directory."""

    def __init__(
        self,
        suite: Suite,
        registry: Registry,
        run_dir: str | os.PathLike[str],
        cache_dir: str | os.PathLike[str] | None = None,
        console: Any = None,
        quiet: bool = False,
        use_cache: bool = True,
    ) -> None:
        self.suite = suite
        self.registry = registry
        self.run_dir = RunDir(run_dir)
        cache_root = cache_dir or suite.run.get("cache_dir") or os.environ.get(CACHE_ENV) or DEFAULT_CACHE_DIR
        self.cache = TensorCache(cache_root, enabled=use_cache)
        self.console = console
        self.quiet = quiet
        self.state = _State()
        self.device = "cpu"
        self.ctx = RunContext()
        self.cells: list[str] = []
        self.computed = 0
        self.reused = 0
        self._reps: dict[tuple[str, str], tuple[list[Any], list[Any]]] = {}
        self._ui: ProgressUI | None = None

    # -- helpers -----------------------------------------------------------------

    def stage_ctx(self, *tags: str) -> RunContext:
        """A context whose seed is derived from the suite seed and the stage name; reseeds torch."""
        seed = derive_seed(self.suite.seed, *tags)
        seed_everything(seed)
        return RunContext(seed=seed, device=self.device, progress=self.ctx.progress, cache=self.cache)

    def metric_use(self, label: str) -> PluginUse:
        for use in self.suite.metrics:
            if use.label == label:
                return use
        known = ", ".join(u.label for u in self.suite.metrics)
        raise UserError(f"unknown metric {label!r} in this suite; it has: {known}")

    def _progress(self, description: str, total: int | None) -> Callable[[int], None]:
        return self._ui(description, total) if self._ui is not None else (lambda advance=1: None)

    # -- manifest -----------------------------------------------------------------

    def _start_manifest(self) -> dict[str, Any]:
        import numpy as np
        import torch

        from . import __version__

        previous: dict[str, Any] | None = None
        if self.run_dir.manifest_path.exists():
            previous = self.run_dir.read_manifest()
            if previous.get("suite", {}).get("sha256") != self.suite.sha256:
                raise UserError(
                    f"{self.run_dir.path}: holds a run of a different suite "
                    f"(sha256 {previous.get('suite', {}).get('sha256', '?')[:12]}); "
                    "use --fresh to start over or --run-dir to choose another directory"
                )
        plugins = {
            name: {"source": info.source, "distribution": info.distribution, "version": info.version,
                   "location": info.location, "registered": info.registered}
            for name, info in self.registry.plugins.items()
        }
        manifest = {
            "simbench_version": __version__,
            "suite": {
                "name": self.suite.name,
                "path": str(self.suite.path),
                "sha256": self.suite.sha256,
                "overrides": list(self.suite.overrides),
                "description": self.suite.description,
            },
            "git_revision": git_revision(self.suite.path.resolve()),
            "device": describe_device(self.device),
            "device_type": self.device,
            "seed": self.suite.seed,
            "versions": {
                "python": sys.version.split()[0],
                "torch": torch.__version__,
                "numpy": np.__version__,
                "platform": platform.platform(),
            },
            "plugins": plugins,
            "data": {"name": self.suite.data.name, "params": self.suite.data.params},
            "zoo": {"name": self.suite.zoo.name, "params": self.suite.zoo.params},
            "metrics": {u.label: {"name": u.name, "params": u.params} for u in self.suite.metrics},
            "benchmarks": {u.label: {"name": u.name, "params": u.params} for u in self.suite.benchmarks},
            "started": (previous or {}).get("started", _now()),
            "finished": None,
            "invocations": (previous or {}).get("invocations", []) + [{"started": _now()}],
        }
        self.run_dir.write_manifest(manifest)
        return manifest

    # -- stages ---------------------------------------------------------------------

    def load_data(self) -> DataSplits:
        use = self.suite.data
        ctx = self.stage_ctx("data")
        data = use.obj.load(ctx)
        if not isinstance(data, DataSplits):
            raise UserError(f"dataset {use.name!r} returned {type(data).__name__}; expected simbench.DataSplits")
        return data

    def data_key(self) -> dict[str, Any]:
        return {**_plugin_key(self.suite.data), "seed": self.suite.seed}

    def build_zoo(self, data: DataSplits) -> tuple[list[ModelSpec], dict[str, Any], str]:
        zoo_use = self.suite.zoo
        zoo = zoo_use.obj
        specs = list(zoo.specs())
        ids = [s.id for s in specs]
        if len(set(ids)) != len(ids):
            raise UserError(f"zoo {zoo_use.name!r} produced duplicate model ids")
        if len(specs) < 2:
            raise UserError(f"zoo {zoo_use.name!r} with these parameters has {len(specs)} model(s); need at least 2")
        key = self.cache.key(
            "zoo", {"zoo": _plugin_key(zoo_use), "data": self.data_key(), "device": self.device}
        )

        def compute() -> tuple[dict[str, Any], dict[str, Any]]:
            ctx = self.stage_ctx("zoo")
            built = zoo.build(data, ctx)
            missing = [i for i in ids if i not in built]
            if missing:
                raise UserError(f"zoo {zoo_use.name!r} did not build models {missing[:3]}")
            return _flatten_state(built, ids), {"ids": ids}

        tensors, _ = self.cache.get_or_compute(key, compute)
        models = {spec.id: self._restore(zoo, spec, data, tensors, spec.id) for spec in specs}
        return specs, models, key

    def _restore(self, zoo: Any, spec: ModelSpec, data: DataSplits, tensors: Mapping[str, Any], prefix: str) -> Any:
        module = zoo.instantiate(spec, data)
        state = {k[len(prefix) + 2 :]: v for k, v in tensors.items() if k.startswith(prefix + "::")}
        module.load_state_dict(state, strict=True)
        return module.to(self.device).eval()

    def perturb_models(self, data: DataSplits) -> None:
        """Apply every model-target perturbation to the zoo's own models.

        Each perturbation sees the zoo as built, not the copies an earlier
        ``[[perturbations]]`` entry added: entries are independent and their
        order does not matter (two manipulations of a zoo give 2 x M copies,
        not copies of copies).
        """
        base_models, base_specs, base_key = dict(self.state.models), tuple(self.state.specs), self.state.zoo_key
        base_ids = [s.id for s in base_specs]
        for use in self.suite.perturbations:
            if use.obj.target != "model":
                continue
            key = self.cache.key("model_perturbation", {"perturbation": _plugin_key(use), "zoo": base_key})

            def compute(use: PluginUse = use) -> tuple[dict[str, Any], dict[str, Any]]:
                ctx = self.stage_ctx("model_perturbation", use.label)
                pctx = PerturbContext(
                    seed=ctx.seed, device=ctx.device, progress=ctx.progress, cache=ctx.cache,
                    models=dict(base_models), specs=base_specs, data=data,
                )
                entries = use.obj.perturb_models(dict(base_models), list(base_specs), data, pctx)
                new_specs = [{"id": s.id, "factors": dict(s.factors)} for s, _ in entries]
                for s, _ in entries:
                    if s.factors.get("original") not in base_ids:
                        raise UserError(
                            f"perturbation {use.name!r}: new model {s.id!r} must name its original in factors['original']"
                        )
                return _flatten_state({s.id: m for s, m in entries}, [s.id for s, _ in entries]), {"specs": new_specs}

            tensors, meta = self.cache.get_or_compute(key, compute)
            by_id = {s.id: s for s in self.state.specs}
            for item in meta["specs"]:
                spec = ModelSpec(item["id"], item["factors"])
                base = by_id[item["factors"]["original"]]
                if spec.id in self.state.models:
                    raise UserError(f"perturbation {use.name!r} produced model id {spec.id!r}, which already exists")
                self.state.models[spec.id] = self._restore(self.suite.zoo.obj, base, data, tensors, spec.id)
                self.state.specs.append(spec)
            self.state.zoo_key = content_hash([self.state.zoo_key, key])

    def make_probe_sets(self, data: DataSplits) -> None:
        split = data.test if self.suite.probes["split"] == "test" else data.val
        n = self.suite.probes["n"] or len(split)
        clean = ProbeSet("clean", split.x[:n].contiguous(), split.y[:n].contiguous(), {"split": self.suite.probes["split"]})
        clean_key = content_hash({"data": self.data_key(), "probes": self.suite.probes})
        self.state.probe_sets["clean"] = clean
        self.state.probe_keys["clean"] = clean_key
        inputs = [u for u in self.suite.perturbations if u.obj.target == "input"]
        advance = self._progress("Probe sets", len(inputs))
        for use in inputs:
            key = self.cache.key(
                "probe_sets", {"perturbation": _plugin_key(use), "clean": clean_key, "zoo": self.state.zoo_key}
            )

            def compute(use: PluginUse = use) -> tuple[dict[str, Any], dict[str, Any]]:
                ctx = self.stage_ctx("probe_sets", use.label)
                pctx = PerturbContext(
                    seed=ctx.seed, device=ctx.device, progress=ctx.progress, cache=ctx.cache,
                    models=self.state.models, specs=tuple(self.state.specs), data=data,
                )
                sets = use.obj.probe_sets(clean, pctx)
                tensors: dict[str, Any] = {}
                metas = []
                for j, ps in enumerate(sets):
                    tensors[f"{j}::x"] = ps.x
                    tensors[f"{j}::y"] = ps.y
                    for mid, xm in (ps.x_by_model or {}).items():
                        tensors[f"{j}::m::{mid}"] = xm
                    metas.append({"name": ps.name, "meta": dict(ps.meta), "per_model": ps.x_by_model is not None})
                return tensors, {"sets": metas}

            tensors, meta = self.cache.get_or_compute(key, compute)
            for j, item in enumerate(meta["sets"]):
                name = item["name"]
                if name in self.state.probe_sets:
                    raise UserError(f"perturbation {use.name!r} produced probe set {name!r} twice")
                per_model = None
                if item["per_model"]:
                    prefix = f"{j}::m::"
                    per_model = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
                self.state.probe_sets[name] = ProbeSet(name, tensors[f"{j}::x"], tensors[f"{j}::y"], item["meta"], per_model)
                self.state.probe_keys[name] = content_hash([key, name])
            advance(1)

    def representations(self, probe_set: str, layer: str | None) -> tuple[list[Any], list[Any]]:
        """Each model's activations at ``layer`` and its outputs on a probe set (cached)."""
        layer = layer or self.suite.probes["layer"]
        memo = (probe_set, layer)
        if memo in self._reps:
            return self._reps[memo]
        ps = self.state.probe_sets[probe_set]
        specs = self.state.specs
        key = self.cache.key(
            "representations", {"zoo": self.state.zoo_key, "probe_set": self.state.probe_keys[probe_set], "layer": layer}
        )

        def compute() -> tuple[dict[str, Any], dict[str, Any]]:
            import torch

            tensors = {}
            for i, spec in enumerate(specs):
                model = self.state.models[spec.id]
                name = model.default_layer if layer == "default" else layer
                if name not in model.readable_layers:
                    raise UserError(
                        f"probes.layer: model {spec.id!r} has no layer {name!r}; "
                        f"readable layers: {', '.join(model.readable_layers)}"
                    )
                x = ps.inputs_for(spec.id)
                reps, outs = [], []
                with torch.no_grad():
                    for start in range(0, x.shape[0], INFER_BATCH):
                        xb = x[start : start + INFER_BATCH].to(self.device)
                        reps.append(model.read(xb, [name])[name].reshape(xb.shape[0], -1).float().cpu())
                        outs.append(model(xb).float().cpu())
                tensors[f"rep::{i}"] = torch.cat(reps)
                tensors[f"out::{i}"] = torch.cat(outs)
            return tensors, {"ids": [s.id for s in specs]}

        tensors, _ = self.cache.get_or_compute(key, compute)
        result = ([tensors[f"rep::{i}"] for i in range(len(specs))], [tensors[f"out::{i}"] for i in range(len(specs))])
        self._reps[memo] = result
        return result

    # -- cells ------------------------------------------------------------------------

    def _cell(self, cell_id: str) -> tuple[bool, list[dict[str, Any]], dict[str, Any]]:
        """Whether a finished cell exists; if so, its rows and meta."""
        self.cells.append(cell_id)
        if self.run_dir.has_cell(cell_id):
            rows, meta = self.run_dir.read_cell(cell_id)
            self.reused += 1
            return True, rows, meta
        return False, [], {}

    def agreement_cell(self, probe_set: str) -> None:
        import torch

        cell_id = f"agreement/{probe_set}"
        done, rows, meta = self._cell(cell_id)
        if done:
            self.state.agreements[probe_set] = torch.tensor(meta["matrix"], dtype=torch.float64)
            self.state.accuracies[probe_set] = torch.tensor(meta["accuracy"], dtype=torch.float64)
            return
        data = self.state.data
        assert data is not None
        outputs = torch.stack(self.representations(probe_set, None)[1])  # [M, n, C]
        y = self.state.probe_sets[probe_set].y
        agreement, accuracy = functional_agreement(outputs, y, data.task)
        ids = [s.id for s in self.state.specs]
        rows = []
        for i in range(len(ids)):
            rows.append(record_row(self.suite.name, "accuracy", Record(
                "", "accuracy" if data.task == "classification" else "r2", float(accuracy[i]),
                probe_set=probe_set, model_a=ids[i], n=int(y.shape[0]))))
        for i, j in zip(*torch.triu_indices(len(ids), len(ids), 1).tolist(), strict=True):
            rows.append(record_row(self.suite.name, "agreement", Record(
                "", "agreement", float(agreement[i, j]), probe_set=probe_set, model_a=ids[i], model_b=ids[j],
                n=int(y.shape[0]))))
        self.run_dir.write_cell(cell_id, rows, {"matrix": agreement.tolist(), "accuracy": accuracy.tolist()})
        self.computed += 1
        self.state.agreements[probe_set] = agreement
        self.state.accuracies[probe_set] = accuracy

    def similarity_cell(self, use: PluginUse, where: str) -> None:
        """Compute (or reuse) one metric's M x M matrix on one probe set ("weights" for weight metrics)."""
        import torch

        cell_id = f"similarity/{use.label}/{where}"
        key = (use.label, where)
        done, rows, meta = self._cell(cell_id)
        if done:
            if meta.get("matrix") is None:
                self.state.failures[key] = meta.get("error", "failed")
            else:
                self.state.similarities[key] = torch.tensor(meta["matrix"], dtype=torch.float64)
            return
        ids = [s.id for s in self.state.specs]
        metric = use.obj
        started = time.perf_counter()
        matrix = None
        try:
            if metric.kind == "weight":
                reps = [self.state.models[i].dense_weights() for i in ids]
                reps = [[w.detach().to(self.device) for w in ws] for ws in reps]
                rep_key = self.state.zoo_key
            else:
                reps = [r.to(self.device) for r in self.representations(where, None)[0]]
                rep_key = content_hash([self.state.zoo_key, self.state.probe_keys[where], self.suite.probes["layer"]])
            kwargs = {}
            if metric.needs_inputs:
                kwargs["inputs"] = self.state.probe_sets[where].x.reshape(len(self.state.probe_sets[where].x), -1).to(
                    self.device
                )
            cache_key = self.cache.key("similarity", {"metric": _plugin_key(use), "reps": rep_key})
            found = self.cache.load(cache_key)
            if found is not None:
                matrix = found[0]["matrix"].to(torch.float64)
            else:
                self.stage_ctx("similarity", use.label, where)
                matrix = torch.as_tensor(metric.pairwise(reps, **kwargs)).detach().to("cpu", torch.float64)
                check_matrix(matrix, ids)
                self.cache.save(cache_key, {"matrix": matrix})
            error = ""
        except Exception as exc:  # a plugin's failure is a result, not a crash
            if isinstance(exc, UserError):
                raise
            matrix = None
            error = f"{type(exc).__name__}: {exc}" if not isinstance(exc, MeasurementFailed) else str(exc)
            error = error.splitlines()[0][:300] if error else type(exc).__name__
            log.warning("metric %s failed on %s: %s", use.label, where, error)
        seconds = time.perf_counter() - started
        rows = []
        probe_label = where
        if matrix is None:
            self.state.failures[key] = error
            rows.append(record_row(self.suite.name, "similarity", Record(
                "", "value", float("nan"), metric=use.label, probe_set=probe_label, status="failed", error=error)))
        else:
            self.state.similarities[key] = matrix
            m = len(ids)
            pairs = torch.triu_indices(m, m, 1).tolist() if metric.symmetric else [
                [i for i in range(m) for j in range(m) if i != j], [j for i in range(m) for j in range(m) if i != j]]
            for i, j in zip(*pairs, strict=True):
                rows.append(record_row(self.suite.name, "similarity", Record(
                    "", "value", float(matrix[i, j]), metric=use.label, probe_set=probe_label,
                    model_a=ids[i], model_b=ids[j])))
        self.run_dir.write_cell(
            cell_id, rows,
            {"matrix": None if matrix is None else matrix.tolist(), "error": error, "seconds": seconds,
             "n_models": len(ids)},
        )
        self.computed += 1

    def benchmark_cell(self, use: PluginUse, context: RunnerContext) -> None:
        cell_id = f"benchmark/{use.label}"
        done, _, _ = self._cell(cell_id)
        if done:
            return
        self.stage_ctx("benchmark", use.label)
        started = time.perf_counter()
        try:
            records = list(use.obj.evaluate(context))
            rows = [record_row(self.suite.name, "benchmark", _with_benchmark(r, use.label)) for r in records]
            error = ""
        except UserError:
            raise
        except Exception as exc:  # recorded, reported, and the run goes on
            error = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
            log.warning("benchmark %s failed: %s", use.label, error)
            rows = [record_row(self.suite.name, "benchmark", Record(use.label, "evaluate", float("nan"),
                                                                    status="failed", error=error))]
        self.run_dir.write_cell(cell_id, rows, {"seconds": time.perf_counter() - started, "error": error,
                                                "benchmark": use.name})
        self.computed += 1

    # -- the whole run ------------------------------------------------------------------

    def run(self) -> RunDir:
        """Execute every stage; return the run directory (results.parquet written)."""
        self.device = resolve_device(self.suite.run["device"])
        manifest = self._start_manifest()
        with ProgressUI(self.console, self.quiet) as ui:
            self._ui = ui
            self.ctx = RunContext(seed=self.suite.seed, device=self.device, progress=ui, cache=self.cache)
            stages = ui("Data + zoo", 2)
            data = self.load_data()
            self.state.data = data
            stages(1)
            specs, models, zoo_key = self.build_zoo(data)
            self.state.specs, self.state.models, self.state.zoo_key = specs, models, zoo_key
            self.perturb_models(data)
            stages(1)
            self.make_probe_sets(data)
            probe_names = list(self.state.probe_sets)

            advance = ui("Representations", len(probe_names))
            for name in probe_names:
                self.representations(name, None)
                advance(1)
            advance = ui("Agreement", len(probe_names))
            for name in probe_names:
                self.agreement_cell(name)
                advance(1)
            cells = [
                (use, WEIGHTS_PROBE_SET if use.obj.kind == "weight" else name)
                for use in self.suite.metrics
                for name in ([WEIGHTS_PROBE_SET] if use.obj.kind == "weight" else probe_names)
            ]
            advance = ui("Similarity", len(cells))
            for use, where in cells:
                self.similarity_cell(use, where)
                advance(1)
            context = RunnerContext(self)
            advance = ui("Benchmarks", len(self.suite.benchmarks))
            for use in self.suite.benchmarks:
                self.benchmark_cell(use, context)
                advance(1)
        self._ui = None
        order = list(dict.fromkeys(self.cells))
        self.run_dir.consolidate(order)
        manifest["finished"] = _now()
        manifest["invocations"][-1].update(
            {"finished": manifest["finished"], "cells_computed": self.computed, "cells_reused": self.reused,
             "cache_hits": self.cache.hits, "cache_misses": self.cache.misses, "cache_rebuilt": self.cache.rebuilt}
        )
        manifest["n_models"] = len(self.state.specs)
        manifest["probe_sets"] = {
            name: {"n": int(ps.x.shape[0]), "meta": dict(ps.meta)} for name, ps in self.state.probe_sets.items()
        }
        manifest["models"] = [{"id": s.id, "factors": dict(s.factors)} for s in self.state.specs]
        manifest["cell_order"] = order
        self.run_dir.write_manifest(manifest)
        return self.run_dir


def _with_benchmark(record: Record, label: str) -> Record:
    from dataclasses import replace

    return replace(record, benchmark=record.benchmark or label)


def _flatten_state(models: Mapping[str, Any], ids: Sequence[str]) -> dict[str, Any]:
    tensors = {}
    for mid in ids:
        for name, value in models[mid].state_dict().items():
            tensors[f"{mid}::{name}"] = value.detach().cpu().clone()
    return tensors


def check_matrix(matrix: Any, ids: Sequence[str]) -> None:
    """Raise :class:`MeasurementFailed` unless ``matrix`` is a finite M x M matrix."""
    import torch

    m = len(ids)
    if tuple(matrix.shape) != (m, m):
        raise MeasurementFailed(f"pairwise returned shape {tuple(matrix.shape)}; expected ({m}, {m})")
    bad = ~torch.isfinite(matrix)
    if bad.any():
        i, j = (int(v) for v in bad.nonzero()[0])
        raise MeasurementFailed(
            f"returned non-finite values for {int(bad.sum())} of {m * m} entries (first: {ids[i]} vs {ids[j]})"
        )


def functional_agreement(outputs: Any, targets: Any, task: str) -> tuple[Any, Any]:
    """``M x M`` functional similarity and per-model task score.

    Classification: the fraction of probes on which two models' argmax
    predictions agree (one batched one-hot product), and accuracy.
    Regression: ``1 - mean squared difference of predictions / variance of
    the targets`` (1 = identical predictions), and R².
    """
    import torch

    outputs = outputs.to(torch.float64)
    m, n = outputs.shape[0], outputs.shape[1]
    if task == "classification":
        preds = outputs.argmax(-1)  # [M, n]
        onehot = torch.nn.functional.one_hot(preds, outputs.shape[-1]).to(torch.float64)  # [M, n, C]
        flat = onehot.reshape(m, -1)
        agreement = flat @ flat.T / n
        accuracy = (preds == targets.to(preds.device)).to(torch.float64).mean(1)
        return agreement, accuracy
    y = targets.to(torch.float64).reshape(n, -1)
    out = outputs.reshape(m, n, -1)
    var = y.var(0, unbiased=False).clamp_min(1e-12)  # per target
    sq = out.pow(2).sum(1)  # [M, T]
    cross = torch.einsum("ant,bnt->abt", out, out)
    msd = (sq[:, None, :] + sq[None, :, :] - 2 * cross) / n  # mean squared difference per target
    agreement = 1.0 - (msd / var).mean(-1)
    resid = ((out - y[None]) ** 2).mean(1)
    r2 = (1.0 - resid / var).mean(-1)
    return agreement, r2


def default_run_dir(suite: Suite, root: str | os.PathLike[str] = "runs") -> Path:
    """``runs/<suite>-<hash8>``: a changed suite gets a new directory, the same suite resumes."""
    return Path(root) / f"{suite.name}-{suite.sha256[:8]}"

