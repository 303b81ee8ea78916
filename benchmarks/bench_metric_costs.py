"""Measure every built-in metric's all-pairs cost and write ``simbench/metric_costs.json``.

Run (about 5 minutes on the project's 2-core CPU, one torch thread)::

    .venv/bin/python benchmarks/bench_metric_costs.py [--write]

For each metric the all-pairs matrix (``metric.pairwise``, the batched path
the runner uses) is timed on synthetic ReLU read-outs (``d = 32``, the
width of the seed-001 MLPs' last hidden layer) at three sizes -- M = 24 and
M = 72 models at n = 1 000 probes, M = 24 at n = 500 -- best of two; weight
metrics on 784-32-32-32-3 networks.  :func:`simbench.costs.fit` turns them
into ``(a·M + b·M²)·(n/1000)^β`` and ``simbench validate`` prints the suite's
metric-stage estimate from it.  A check row compares the model's prediction
at M = 48 with a measurement in the same run; the printed table goes to
docs/benchmarks.md.  Without ``--write`` nothing is written.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

import torch  # noqa: E402

from bench_metrics import make_networks, make_reps  # noqa: E402  (the same synthetic read-outs and networks)
from simbench.costs import COSTS_FILE, fit  # noqa: E402
from simbench_plugins.metrics import METRICS  # noqa: E402

torch.set_num_threads(1)
SIZES = ((24, 1000), (72, 1000), (24, 500))
CHECK = (48, 1000)


def seconds(metric: Any, m: int, n: int) -> float:
    reps, inputs = make_reps(m, n, 32)
    data = make_networks(m) if metric.kind == "weight" else reps
    kw = {"inputs": inputs} if metric.needs_inputs else {}
    best = float("inf")
    for _ in range(2):
        start = time.perf_counter()
        metric.pairwise(data, **kw)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"write {COSTS_FILE.name}")
    args = parser.parse_args()
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, 1 thread"
    out: dict[str, Any] = {}
    print(f"Measured on {machine}\n")
    print("| metric | a (s per model) | b (s per pair) | β (n exponent) | M = 48 predicted | M = 48 measured |")
    print("|---|---:|---:|---:|---:|---:|")
    for cls in METRICS:
        metric = cls()
        samples = [(m, n, seconds(metric, m, n)) for m, n in SIZES]
        cost = fit(samples)
        check = seconds(metric, *CHECK)
        out[cls.name] = {"per_model": cost.per_model, "per_pair": cost.per_pair, "n_ref": cost.n_ref,
                         "n_exponent": round(cost.n_exponent, 3), "samples": samples}
        print(f"| {cls.name} | {cost.per_model:.4f} | {cost.per_pair:.6f} | {cost.n_exponent:.2f} | "
              f"{cost.seconds(*CHECK):.2f} s | {check:.2f} s |", flush=True)
    if args.write:
        COSTS_FILE.write_text(json.dumps({"machine": machine, "sizes": SIZES, "metrics": out}, indent=1) + "\n")
        print(f"\nwrote {COSTS_FILE}")


if __name__ == "__main__":
    main()
