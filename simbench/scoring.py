"""Score a new metric against a benchmark bundle: no zoo, no probe sets, no published metric recomputed.

:func:`score_bundle` rebuilds the run's store from a bundle (:mod:`simbench.bundle`) in a new run directory:
the bundled agreement and similarity cells are written as finished cells, every model's representations,
outputs and (when bundled) weights are handed to the runner in memory, and the runner's own stage code then
computes only the new metrics' cells (:meth:`simbench.runner.Runner.similarity_cell`: copies of the inputs,
the time limit, the modified-input check, matrix validation, the cache) and reruns the benchmarks on the
whole store.  The published metrics' matrices are the bundle's bytes, so every per-metric statistic equals
the run's; joint statistics (ranks, the best set, comparisons with the best) include the new metric.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .bundle import Bundle, open_bundle
from .errors import MeasurementFailed, UserError
from .hookspecs import hookimpl
from .provenance import now

WEIGHTS = "weights"


class _MetricClasses:
    """A plugin object registering metric classes given from Python (``simbench.score(MyMetric, ...)``)."""

    __name__ = "score"

    def __init__(self, classes: Sequence[type]) -> None:
        self.classes = list(classes)

    @hookimpl
    def register_metrics(self, register: Any) -> None:
        for cls in self.classes:
            register(cls)


class _BundledModel:
    """What the runner reads from a model when scoring: its dense weights, if the bundle holds them."""

    def __init__(self, bundle: Bundle, index: int, layer: str) -> None:
        self._bundle, self._index = bundle, index
        self.readable_layers, self.default_layer = (layer,), layer

    def dense_weights(self) -> list[Any]:
        import torch

        doc = self._bundle.doc
        if not doc.get("weights"):
            raise MeasurementFailed(f"bundle {self._bundle.source} holds no weights (its suite has no weight "
                                    "metric); export the run with --weights to score a weight metric")
        out, j = [], 0
        while f"weights/{self._index}/{j}.npy" in doc["files"]:
            t = torch.from_numpy(self._bundle.array(f"weights/{self._index}/{j}.npy"))
            stride = doc.get("weight_strides", {}).get(f"{self._index}/{j}")
            if stride and tuple(stride) != tuple(t.stride()):  # the layout the model had (BLAS rounds by layout)
                t = torch.empty_strided(tuple(t.shape), tuple(stride), dtype=t.dtype).copy_(t)
            out.append(t)
            j += 1
        return out


def _new_metric_uses(metric: Any, names: Sequence[str], reg: Any, start: int, file: str) -> list[Any]:
    """The new metrics as configured :class:`PluginUse` objects."""
    from . import suite as suite_mod
    from .suite import PluginUse
    from .types import Metric

    items = list(metric) if isinstance(metric, (list, tuple)) else [metric]
    uses: list[Any] = []
    for item in items:
        if isinstance(item, Metric):  # a configured instance: its parameters as given
            uses.append(PluginUse("metric", item.name, item.name, item.params(), item, f"metrics[{start + len(uses)}]"))
            continue
        if isinstance(item, type):
            wanted = [item.name]
        elif str(item).endswith(".py"):
            stem = Path(str(item)).stem
            if stem not in reg.plugins:
                raise UserError(f"{item}: plugin not loaded ({reg.skipped.get(stem, 'see the warning above')})")
            wanted = list(names) or list(reg.plugins[stem].registered.get("metrics", []))
            if not wanted:
                raise UserError(f"{item}: registers no metric (expected a register_metrics hook)")
        else:
            wanted = [str(item)]  # an already registered metric's name
        for name in wanted:
            uses.append(suite_mod._plugin("metric", {"name": name}, f"metrics[{start + len(uses)}]", file, reg))
    return uses


def scoring_suite(bundle: Bundle, new: Sequence[Any], reg: Any, device: str) -> Any:
    """The bundle's suite with the new metrics appended (plugins other than metrics and benchmarks are not
    needed, so their names are kept as recorded and never looked up)."""
    from . import suite as suite_mod
    from .cache import plugin_key as _plugin_key
    from .suite import PROBES_DEFAULTS, RUN_DEFAULTS, PluginUse, Suite

    doc = bundle.json("suite/suite.json")
    file = f"bundle {bundle.source}"
    published = suite_mod._plugin_list("metric", doc, "metrics", file, reg)
    labels = {u.label for u in published}
    for use in new:
        if use.label in labels:
            raise UserError(f"metric {use.label!r} is already in bundle {bundle.source}; give the new metric "
                            "another name")
        labels.add(use.label)
    benchmarks = suite_mod._plugin_list("benchmark", doc, "benchmarks", file, reg)

    def recorded_use(kind: str, table: dict[str, Any], key: str) -> Any:
        params = {k: v for k, v in table.items() if k not in ("name", "label")}
        return PluginUse(kind, str(table["name"]), str(table.get("label", table["name"])), params, None, key)

    perturbations = tuple(recorded_use("perturbation", t, f"perturbations[{i}]")
                          for i, t in enumerate(doc.get("perturbations", [])))
    identity = json.dumps({"bundle_suite": bundle.suite["sha256"],
                           "metrics": [[u.label, _plugin_key(u)] for u in new]}, sort_keys=True, default=str)
    raw = {**doc, "metrics": [*doc.get("metrics", []), *({"name": u.name, "label": u.label, **u.params} for u in new)]}
    return Suite(
        path=Path(str(bundle.suite.get("path") or f"{doc['suite']['name']}.toml")),
        sha256=hashlib.sha256(identity.encode()).hexdigest(),
        name=str(doc["suite"]["name"]),
        description=str(doc["suite"].get("description", "")),
        data=recorded_use("dataset", doc["data"], "data"),
        zoo=recorded_use("zoo", doc["zoo"], "zoo"),
        perturbations=perturbations,
        metrics=(*published, *new),
        benchmarks=benchmarks,
        probes={**PROBES_DEFAULTS, **doc.get("probes", {})},
        run={**RUN_DEFAULTS, **doc.get("run", {}), "device": device, "executor": "local", "cache_dir": ""},
        raw=raw,
        overrides=tuple(f"metrics+={{name='{u.name}', label='{u.label}'}}" for u in new),
        data_files=dict(bundle.suite.get("data_files") or {}),
    )


def check_suite(bundle: Bundle, loaded: Any) -> None:
    """Refuse (one line) a bundle that is not a run of the suite ``loaded`` (a :class:`simbench.suite.Suite`):
    compared by name and resolved content, so a machine without the suite's data files can check it."""
    mine = bundle.json("suite/suite.json")
    if loaded.name != bundle.suite["name"]:
        raise UserError(f"bundle {bundle.source} is a run of suite {bundle.suite['name']!r} "
                        f"(sha256 {str(bundle.suite['sha256'])[:12]}), not of {loaded.name!r}")
    def text(value: Any) -> str:
        return json.dumps(value, sort_keys=True, default=str)

    differ = [k for k in sorted(set(loaded.raw) | set(mine)) if text(loaded.raw.get(k)) != text(mine.get(k))]
    if differ:
        raise UserError(f"bundle {bundle.source} was measured with another version of suite {loaded.name!r} "
                        f"(sha256 {str(bundle.suite['sha256'])[:12]}; its [{', '.join(differ)}] differ from this one's)")


def _check_consistency(bundle: Bundle) -> None:
    """The bundle's own fingerprints agree: the run manifest, the models, the suite and the data."""
    run = bundle.json("run/manifest.json")
    doc = bundle.doc
    if run.get("suite", {}).get("sha256") != doc["suite"]["sha256"]:
        raise UserError(f"bundle {bundle.source}: run/manifest.json names another suite than bundle.json")
    if run.get("data_fingerprint") != doc["data"]["fingerprint"]:
        raise UserError(f"bundle {bundle.source}: data fingerprint of run/manifest.json differs from bundle.json")
    ids = bundle.json("models.json")["ids"]
    if [m.get("id") for m in run.get("models", [])] != ids or len(ids) != doc["n_models"]:
        raise UserError(f"bundle {bundle.source}: models.json differs from the run's models")


def score_bundle(metric: Any, bundle: str | os.PathLike[str] | Bundle, *, suite: Any = None,
                 out: str | os.PathLike[str] | None = None, cache_dir: str | os.PathLike[str] | None = None,
                 plugins: Sequence[str | os.PathLike[str]] = (), names: Sequence[str] = (), device: str = "cpu",
                 fresh: bool = False, quiet: bool = True, registry: Any = None, strict: bool = True,
                 extra_plugins: Sequence[Any] = ()) -> Any:
    """Score ``metric`` against ``bundle``; return the finished :class:`Runner` (its ``run_dir``, counts).

    ``suite``: a loaded :class:`simbench.suite.Suite` the bundle must be a run of.  ``extra_plugins``: plugin
    objects for the registry (the notebook session's classes).
    """
    from .registry import build_registry
    from .results import check_fresh_target
    from .runner import Runner
    from .worker import resolve_device, set_threads

    b = bundle if isinstance(bundle, Bundle) else open_bundle(bundle)
    _check_consistency(b)
    items = list(metric) if isinstance(metric, (list, tuple)) else [metric]
    files = list(dict.fromkeys(str(Path(p).resolve()) for p in [
        *plugins, *(m for m in items if isinstance(m, (str, os.PathLike)) and str(m).endswith(".py"))]))
    items = [str(Path(m).resolve()) if isinstance(m, (str, os.PathLike)) and str(m).endswith(".py") else m
             for m in items]
    metric = items
    reg = registry or build_registry(plugin_files=files, extra_plugins=list(extra_plugins))
    classes = [m if isinstance(m, type) else type(m) for m in items if not isinstance(m, (str, os.PathLike))]
    extra = []
    for cls in classes:
        known = reg.entry("metric", cls.name).cls if cls.name in reg.names("metric") else None
        if known is None:
            extra.append(cls)
        elif known is not cls:
            raise UserError(f"metric {cls.name!r} is already registered by another class; give yours another name")
    if extra:
        reg = build_registry(plugin_files=files, extra_plugins=[*extra_plugins, _MetricClasses(extra)])
    if suite is not None:
        check_suite(b, suite)
    new = _new_metric_uses(metric, names, reg, len(b.doc["metrics"]), f"bundle {b.source}")
    if not new:
        raise UserError("no metric to score")
    s = scoring_suite(b, new, reg, device)
    if out is None:
        from .runner import default_run_dir

        out = default_run_dir(s)
    if fresh:
        check_fresh_target(Path(out), None)
    runner = Runner(s, reg, out, cache_dir=cache_dir, quiet=quiet, fresh=fresh)
    started = time.perf_counter()
    runner.run_dir.acquire()
    try:
        if fresh:
            runner.run_dir.clear()
        runner.run_dir.clean_temp()
        runner.cache.check_writable()
        runner.cache.clean_temp()
        set_threads(int(s.run["threads"]))
        runner.device = resolve_device(device)
        manifest = runner._start_manifest()
        order = _fill_store(runner, b, strict)
        seconds = time.perf_counter() - started
        runner._finish_manifest(
            manifest,
            invocation={"finished": now(), "cells_computed": runner.computed, "cells_reused": runner.reused,
                        "cache_hits": runner.cache.hits, "cache_misses": runner.cache.misses,
                        "executor": "local", "stage_seconds": {"score": round(seconds, 3)}},
            finished=now(), data_fingerprint=b.doc["data"]["fingerprint"], n_models=b.doc["n_models"],
            probe_sets={p["name"]: {"n": p["n"], "meta": p["meta"]} for p in b.doc["probe_sets"]},
            models=b.json("models.json")["models"], cell_order=order,
            bundle={"source": b.source, "suite_sha256": b.suite["sha256"], "run": b.doc["run"],
                    "format_version": b.doc["format_version"], "scored": [u.label for u in new],
                    "reproduced": runner.reproduced},
        )
    finally:
        runner.run_dir.release()
    return runner


def _fill_store(runner: Any, b: Bundle, strict: bool = True) -> list[str]:
    """Put the bundle in the runner's state and run directory, compute the new cells and the benchmarks;
    return the cell order (the run's, new similarity cells after the published ones, benchmarks last)."""
    import torch

    from .cache import content_hash
    from .types import DataSplits, ModelSpec, ProbeSet, Split

    doc, s = b.doc, runner.suite
    models = b.json("models.json")
    ids = list(models["ids"])
    layer = str(s.probes["layer"])
    sha = {rel: entry["sha256"] for rel, entry in doc["files"].items()}
    state = runner.state
    state.specs = [ModelSpec(m["id"], dict(m["factors"])) for m in models["models"]]
    state.models = {mid: _BundledModel(b, i, doc["layers"].get(mid, layer)) for i, mid in enumerate(ids)}
    state.zoo_key = content_hash({"bundle_models": sha["models.json"],
                                  "weights": sorted(v for k, v in sha.items() if k.startswith("weights/"))})
    empty = Split(torch.empty((0, *doc["data"]["input_shape"])), torch.empty(0, dtype=torch.long))
    state.data = DataSplits(empty, empty, empty, task=doc["data"]["task"], num_classes=doc["data"]["num_classes"],
                            meta={"bundle": b.source})
    runner.data_fingerprint = doc["data"]["fingerprint"]
    for entry in doc["probe_sets"]:
        name, f = entry["name"], entry["file"]
        x = torch.from_numpy(b.array(f"probe_sets/{f}/x.npy"))
        y = torch.from_numpy(b.array(f"probe_sets/{f}/y.npy"))
        by_model = {ids[i]: torch.from_numpy(b.array(f"probe_sets/{f}/by_model/{i}.npy")) for i in entry["by_model"]}
        state.probe_sets[name] = ProbeSet(name, x, y, entry["meta"], by_model or None)
        reps = [torch.from_numpy(b.array(f"representations/{f}/{i}.npy")) for i in range(len(ids))]
        outs = torch.from_numpy(b.array(f"outputs/{f}.npy"))
        runner._reps[(name, layer)] = (reps, [outs[i] for i in range(len(ids))])
        state.probe_keys[name] = content_hash({"bundle_probe_set": sorted(
            v for k, v in sha.items() if k.startswith((f"probe_sets/{f}/", f"representations/{f}/")))})
    # the run's finished cells, their matrices byte for byte
    runner.run_dir.set_models(ids)
    cells = b.json("cells.json")
    for cell_id in cells["order"]:
        cell = cells["cells"][cell_id]
        meta = dict(cell["meta"])
        rel = meta.pop("file", None)
        if rel:
            row = next(r for r in cell["rows"] if r.get("statistic") == "matrix")
            meta.update(runner.run_dir.write_matrix(row["kind"], row["metric"], row["probe_set"], b.array(rel)))
        runner.run_dir.write_cell(cell_id, cell["rows"], meta)
    probes = [p["name"] for p in doc["probe_sets"]]
    published = {m["label"] for m in doc["metrics"]}
    needed = [f"agreement/{p}" for p in probes] + [
        f"similarity/{u.label}/{where}" for u in s.metrics if u.label in published
        for where in ([WEIGHTS] if u.obj.kind == "weight" else probes)]
    missing = [c for c in needed if c not in cells["cells"]]
    if missing:  # never recomputed here: the published numbers are the bundle's or none
        raise UserError(f"bundle {b.source}: cells.json lacks {len(missing)} of the run's cells ({missing[0]}, ...); "
                        "export the finished run again")
    for name in probes:
        runner.agreement_cell(name)
    new_cells = []
    for use in s.metrics:
        for where in ([WEIGHTS] if use.obj.kind == "weight" else probes):
            runner.similarity_cell(use, where)
            if use.label not in published:
                new_cells.append(f"similarity/{use.label}/{where}")
    planned = runner.collect_requests()
    if planned:
        raise UserError(f"benchmark {planned[0].benchmark!r} declares its own matrices; scoring against a bundle "
                        "supports benchmarks that read the suite's matrices only")
    runner.reproduced = reproduce(runner, b, published, strict)
    for use in s.benchmarks:
        runner.benchmark_cell(use)
    order = list(cells["order"])
    last = max((i for i, c in enumerate(order) if c.startswith("similarity/")), default=len(order) - 1)
    order[last + 1:last + 1] = new_cells
    order += [f"benchmark/{u.label}" for u in s.benchmarks]
    runner.run_dir.consolidate(order)
    return order


def reproduce(runner: Any, b: Bundle, published: set[str], strict: bool = True) -> dict[str, Any]:
    """Evaluate every benchmark on the published metrics alone and compare its records with the bundle's run.

    This is the compatibility check: the bundle's numbers must come out again, to 1e-12, from this
    simbench's benchmark code (whatever its revision).  ``strict``: a difference is a one-line refusal;
    otherwise it is reported (``max_abs_diff``) and the board is this code's.
    """
    import dataclasses

    import numpy as np
    import pandas as pd

    from .results import COLUMNS, COORD_PREFIX, normalise_frame, record_row
    from .view import StoreView

    rows = []
    for use in runner.suite.benchmarks:
        view = StoreView(runner, use.label)
        view.metrics = {k: v for k, v in view.metrics.items() if k in published}
        runner.stage_ctx("benchmark", use.label)  # the seed the benchmark cell gets
        try:
            records = list(use.obj.evaluate(view))
        except Exception as exc:  # noqa: BLE001 - compared below with what the run recorded
            records = []
            rows.append({"kind": "benchmark", "benchmark": use.label, "statistic": "evaluate",
                         "status": "failed", "error": type(exc).__name__})
        rows += [record_row(runner.suite.name, "benchmark",
                            dataclasses.replace(r, benchmark=r.benchmark or use.label)) for r in records]
    coords = sorted({c for r in rows for c in r if c.startswith(COORD_PREFIX)})
    mine = normalise_frame(pd.DataFrame(rows, columns=[*COLUMNS, *coords]))
    theirs = pd.read_parquet(b.path("run/results.parquet"))
    theirs = theirs[theirs["kind"] == "benchmark"].reset_index(drop=True)
    text = [c for c in COLUMNS if c not in ("suite", "value", "n", "error")]
    same_rows = len(mine) == len(theirs) and mine[text].equals(theirs[text].astype(str))
    diff = float("inf")
    if same_rows:
        a, c = mine["value"].to_numpy(float), theirs["value"].to_numpy(float)
        both = np.isnan(a) & np.isnan(c)
        diff = float(np.max(np.where(both, 0.0, np.abs(a - c)), initial=0.0))
        if np.isnan(diff):
            diff = float("inf")
    ok = diff <= 1e-12
    if not ok and strict:
        what = f"max |difference| {diff:.3g}" if same_rows else f"{len(mine)} records vs {len(theirs)}"
        raise UserError(f"bundle {b.source}: this simbench's benchmarks do not reproduce the bundle's published "
                        f"numbers ({what}); the bundle was made by simbench {b.doc['run'].get('simbench_revision')}: "
                        "score with that revision, or pass --allow-changed-benchmark to rank under this code")
    return {"ok": ok, "max_abs_diff": diff if np.isfinite(diff) else None, "records": len(theirs)}
