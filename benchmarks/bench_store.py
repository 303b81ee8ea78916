"""Size and speed of the result store for a synthetic grid (issue 17 item 4).

Drives the runner's real ``similarity_cell`` / ``agreement_cell`` and
``RunDir.consolidate`` on a grid shaped like seed 001 (default M = 180 models,
21 probe sets, 15 metrics: 13 symmetric, 2 asymmetric), with the metrics'
matrices served from a stand-in cache so that no metric runs: what is timed
is storing, not measuring.  Prints one JSON object: bytes of
``results.parquet``, ``cells/`` and ``matrices/``, rows in the parquet, the
median seconds and the tracemalloc peak of writing one similarity cell.

Run it once per code version to compare them, e.g. the previous store with
``PYTHONPATH`` pointing at an older checkout (``--probe-sets 1`` keeps its
~M^2 rows per cell affordable; everything scales linearly in probe sets):

    .venv/bin/python benchmarks/bench_store.py --out /tmp/grid
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
import tracemalloc
from pathlib import Path
from types import SimpleNamespace

import torch

ROOT = Path(__file__).resolve().parents[1]
TOY_PLUGINS = ROOT / "tests" / "fixtures" / "toy_plugins.py"
TOY_SUITE = ROOT / "tests" / "fixtures" / "toy.toml"


def _bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=180)
    parser.add_argument("--probe-sets", type=int, default=21)
    parser.add_argument("--metrics", type=int, default=15)
    parser.add_argument("--asymmetric", type=int, default=2, help="how many of the metrics are asymmetric")
    parser.add_argument("--probes", type=int, default=1000, help="probe inputs per set (agreement only)")
    parser.add_argument("--out", type=Path, required=True, help="run directory to (re)create")
    args = parser.parse_args()
    torch.set_num_threads(1)

    from simbench.registry import build_registry
    from simbench.plan import PlanTask
    from simbench.runner import Runner
    from simbench.suite import load_suite
    from simbench.types import ModelSpec

    registry = build_registry(plugin_files=[str(TOY_PLUGINS)])
    names = ["linear_regression_r2" if k >= args.metrics - args.asymmetric else "toy_gram_corr"
             for k in range(args.metrics)]
    metrics = ", ".join(f"{{name='{n}', label='metric{k:02d}'}}" for k, n in enumerate(names))
    suite = load_suite(TOY_SUITE, registry, [f"metrics=[{metrics}]", "perturbations=[]"])
    if args.out.exists():
        shutil.rmtree(args.out)
    runner = Runner(suite, registry, args.out, cache_dir=args.out / "unused-cache", quiet=True)
    m = args.models
    runner.state.specs = [ModelSpec(f"model{i:03d}", {"seed": i % 5}) for i in range(m)]
    # probe sets are only names here (nothing is measured on them), shaped like "mnist_c/fog"
    probe_sets = ["clean"] + [f"shift/{k:02d}" for k in range(args.probe_sets - 1)]

    # one synthetic matrix per metric x probe set, as a metric would return it (float64, diagonal 1)
    gen = torch.Generator().manual_seed(0)
    matrices: dict[str, torch.Tensor] = {}
    for use in suite.metrics:
        for p in probe_sets:
            s = torch.rand(m, m, generator=gen, dtype=torch.float64)
            s = s if not use.obj.symmetric else 0.5 * (s + s.T)
            s.fill_diagonal_(1.0)
            matrices[f"{use.label}@{p}"] = s
    runner.similarity_key = lambda use, where: f"{use.label}@{where}"
    # the cell reads its task's output (the matrix and the metric's notes): every one is "cached" here
    runner._similarity_task = lambda use, where: PlanTask(f"similarity/{use.label}/{where}", "similarity",
                                                          runner.similarity_key(use, where))
    runner.cache.load = lambda key: ({"matrix": matrices[key]}, {"notes": []})

    # agreement: stand-in outputs (M x probes x 10 classes) for every probe set
    labels = torch.randint(0, 10, (args.probes,), generator=gen)
    outputs = [torch.randn(args.probes, 10, generator=gen) for _ in range(m)]
    runner.state.data = SimpleNamespace(task="classification")
    runner.state.probe_sets = {p: SimpleNamespace(y=labels) for p in probe_sets}
    runner.representations = lambda probe_set, layer: (None, outputs)

    agreement_seconds, seconds, peaks = [], [], []
    for p in probe_sets:
        started = time.perf_counter()
        runner.agreement_cell(p)
        agreement_seconds.append(time.perf_counter() - started)
    for k, use in enumerate(suite.metrics):
        for p in probe_sets:
            # tracemalloc slows Python allocation down: the first metric's cells give the memory peak,
            # the others the time
            if k == 0:
                tracemalloc.start()
                runner.similarity_cell(use, p)
                peaks.append(tracemalloc.get_traced_memory()[1])
                tracemalloc.stop()
                continue
            started = time.perf_counter()
            runner.similarity_cell(use, p)
            seconds.append(time.perf_counter() - started)
    started = time.perf_counter()
    frame = runner.run_dir.consolidate(runner.cells)
    consolidate_seconds = time.perf_counter() - started
    shutil.rmtree(args.out / "unused-cache", ignore_errors=True)
    sizes = {"results_parquet": (args.out / "results.parquet").stat().st_size, "cells": _bytes(args.out / "cells"),
             "matrices": _bytes(args.out / "matrices")}
    print(json.dumps({
        "models": m, "probe_sets": len(probe_sets), "metrics": len(suite.metrics), "asymmetric": args.asymmetric,
        "simbench": os.path.dirname(sys.modules["simbench"].__file__),
        "rows": len(frame), "bytes": sizes, "total_bytes": sum(sizes.values()),
        "similarity_cell_seconds_median": statistics.median(seconds),
        "similarity_cell_peak_bytes_median": statistics.median(peaks),
        "agreement_cell_seconds_median": statistics.median(agreement_seconds),
        "consolidate_seconds": consolidate_seconds,
    }, indent=1))


if __name__ == "__main__":
    main()
