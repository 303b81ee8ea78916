"""All-pairs metric performance: batched engine vs a per-pair loop vs the GEMM floor.

Run (about 40 minutes on the 2-core CPU; ``--quick`` for a 2-minute smoke run)::

    .venv/bin/python benchmarks/bench_metrics.py

Prints Markdown tables; every ratio is measured in the same run, one thread
(``torch.set_num_threads(1)``: on 2 shared cores oversubscription makes small
SVDs 50x slower).

* *batched*: ``metric.pairwise(reps)`` of the built-in plugin (per-model
  objects built once, all pairs from chunked GEMMs streamed under
  ``max_memory_mb``, default 4096);
* *pair loop*: ``metric(reps[i], reps[j])`` for every unordered pair -- the
  same library's single-pair path, so the max abs difference compares the
  two code paths.  Where the loop would take hours it is timed on a subset
  of pairs and extrapolated to all ``M (M - 1) / 2``; the table says so;
* *floor*: one symmetric rank-k update ``Z Z^T`` (BLAS ``ssyrk`` through
  ``scipy.linalg.blas``, single-threaded) of the stacked per-model objects
  the batched method multiplies: ``M x n(n-1)/2`` ranked RDM triangles (RSA),
  ``M x n(n+1)/2`` kernel triangles (RBF CKA), ``M x n^2`` k-NN weight
  matrices (mutual k-NN), ``[n, M d]`` centred features (linear and
  unbiased CKA, Procrustes), ``[n, M r]`` deconfounded features (dCKA) or
  orthonormal bases (CCA).  For long objects it is timed on a
  ``[M, 2^20]`` slab and scaled linearly to the full length (GEMM time is
  linear in k).  The floor counts no per-model build (sorting an RDM,
  exponentials of a kernel, top-k of a similarity matrix), so
  *batched / floor* also shows how much of the time those builds take.
  *floor + M builds* adds M times the measured cost of building one
  model's object once (ranking one RDM, one kernel's statistics and
  blocks, one k-NN weight matrix, one deconfounded feature matrix): the
  floor of any method that must build every object at least once.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from scipy.linalg import blas  # noqa: E402

from simbench_plugins.metrics import METRICS  # noqa: E402
from simbench_plugins.metrics import _linalg as la  # noqa: E402

torch.set_num_threads(1)
BY_NAME = {cls.name: cls for cls in METRICS}
SLAB = 1 << 20


def make_reps(m: int, n: int, d: int, seed: int = 0) -> tuple[list[torch.Tensor], torch.Tensor]:
    """``m`` float32 ReLU read-outs ``[n, d]`` of one shared latent (related models), and ``[n, 784]`` inputs."""
    g = torch.Generator().manual_seed(seed)
    latent = torch.randn(n, 16, generator=g)
    reps = [
        torch.relu(latent @ torch.randn(16, d, generator=g) + 0.5 * torch.randn(n, d, generator=g)) for _ in range(m)
    ]
    inputs = torch.relu(latent @ torch.randn(16, 784, generator=g) * 0.2)
    return reps, inputs


def make_networks(m: int, seed: int = 0) -> list[list[torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    widths = (784, 32, 32, 32, 3)
    return [[torch.randn(i, o, generator=g) / math.sqrt(i) for i, o in zip(widths[:-1], widths[1:])] for _ in range(m)]


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def syrk_floor(rows: int, length: int, reps: int = 1) -> float:
    """Seconds of one float32 syrk ``Z Z^T`` for ``Z [rows, length]`` (slab-timed and scaled when long)."""
    cols = min(length, SLAB)
    z = np.asfortranarray(np.random.default_rng(0).standard_normal((rows, cols), dtype=np.float32))
    best = math.inf
    for _ in range(reps):
        start = time.perf_counter()
        blas.ssyrk(1.0, z)
        best = min(best, time.perf_counter() - start)
    return best * length / cols


def loop_pairs(metric: Any, reps: list[Any], kw: dict[str, Any], pairs: list[tuple[int, int]]) -> tuple[float, dict]:
    values = {}
    start = time.perf_counter()
    for i, j in pairs:
        values[(i, j)] = float(metric(reps[i], reps[j], **kw))
    return time.perf_counter() - start, values


def pair_subset(m: int, count: int | None) -> list[tuple[int, int]]:
    every = [(i, j) for i in range(m) for j in range(i + 1, m)]
    if count is None or count >= len(every):
        return every
    step = len(every) / count
    return [every[int(k * step)] for k in range(count)]


def fmt(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 120:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.2f} s"


def floor_for(name: str, m: int, n: int, d: int) -> tuple[float, str]:
    if name == "rsa":
        return syrk_floor(m, n * (n - 1) // 2), "M x n(n-1)/2"
    if name == "rbf_cka":
        return syrk_floor(m, n * (n + 1) // 2), "M x n(n+1)/2"
    if name in ("mutual_knn", "jaccard_knn"):
        return syrk_floor(m, n * n), "M x n^2"
    # feature-space metrics: Z^T Z of [n, M w]
    return syrk_floor(m * min(n, d), n), "[n, M d] features"


def build_time(name: str, x: torch.Tensor, inputs: torch.Tensor) -> float:
    """Seconds to build one model's per-model object once (the part of the work no GEMM can replace)."""
    from simbench_plugins.metrics import cka, neighbours, rsa

    (x,), dtype = la.prepare_activations([x])
    n = x.shape[0]
    if name == "rsa":
        return timed(lambda: rsa.rdm_ranks(x))[0]
    if name == "rbf_cka":
        return timed(lambda: cka.RBFKernel(x, 1.0).block(0, n, 0, dtype))[0]
    if name in ("mutual_knn", "jaccard_knn"):
        return timed(lambda: neighbours.Neighbours(x, 10).block(0, n, dtype))[0]
    if name == "dcka":
        conf = cka._Confounder(inputs, n, dtype, x.device)
        return timed(lambda: conf.features(x))[0]
    return 0.0


def row(metric_label: str, m: int, n: int, d: int, loop_s: float, note: str, batched_s: float,
        floor_s: float, floor_kind: str, build_s: float, diff: float) -> str:
    floor_build = floor_s + m * build_s
    return (
        f"| {metric_label} | {m} | {n} | {d} | {fmt(loop_s)}{note} | {fmt(batched_s)} | {fmt(floor_s)} ({floor_kind}) "
        f"| {loop_s / batched_s:.1f}x | {batched_s / floor_s:.1f} | {fmt(floor_build)} | {batched_s / floor_build:.2f} "
        f"| {diff:.1e} |"
    )


HEADER = (
    "| metric | M | n | d | pair loop | batched | GEMM floor (syrk of) | loop / batched | batched / GEMM floor "
    "| floor + M builds | batched / (floor + builds) | max abs diff |\n"
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
)


def kernel_section(args: argparse.Namespace, all_pairs: dict[str, float]) -> None:
    n, d = args.n, 32
    print(f"### Kernel and RDM metrics (n = {n}, d = {d}, float32)\n")
    print(HEADER)
    for m in args.models:
        reps, inputs = make_reps(m, n, d)
        for name in args.kernel_metrics:
            metric = BY_NAME[name]()
            kw = {"inputs": inputs} if metric.needs_inputs else {}
            batched_s, out = timed(lambda: metric.pairwise(reps, **kw))
            every = m * (m - 1) // 2
            subset = pair_subset(m, None if name == "unbiased_cka" else args.loop_pairs)
            loop_s, values = loop_pairs(metric, reps, kw, subset)
            note = ""
            if len(subset) < every:
                loop_s *= every / len(subset)
                note = f" (extrapolated from {len(subset)} pairs)"
            diff = max(abs(float(out[i, j]) - v) for (i, j), v in values.items())
            floor_s, kind = floor_for(name, m, n, d)
            build_s = build_time(name, reps[0], inputs)
            print(row(name, m, n, d, loop_s, note, batched_s, floor_s, kind, build_s, diff), flush=True)
            if m == max(args.models):
                all_pairs[name] = batched_s
            del out


def feature_section(args: argparse.Namespace) -> None:
    n = args.n
    print(f"\n### Feature-space metrics (n = {n}, float32; linear CKA's route chosen by the cost model)\n")
    print(HEADER)
    for d in args.widths:
        m = args.feature_models if d < 1024 else args.wide_models
        reps, _ = make_reps(m, n, d, seed=d)
        for name in ("linear_cka", "procrustes", "cca_mean"):
            metric = BY_NAME[name]()
            batched_s, out = timed(lambda: metric.pairwise(reps))
            loop_s, values = loop_pairs(metric, reps, {}, pair_subset(m, None))
            diff = max(abs(float(out[i, j]) - v) for (i, j), v in values.items())
            floor_s, kind = floor_for(name, m, n, d)
            label = name
            if name == "linear_cka":
                route = la.choose_route(n, m, min(n, d))
                feats = [la.compress(la.center(x)) for x in reps]
                t_feat, _ = timed(lambda: la.frob2_auto(feats, 4096, route="feature"))
                t_gram, _ = timed(lambda: la.frob2_auto(feats, 4096, route="gram"))
                label = f"linear_cka (model: {route}; feature {fmt(t_feat)}, gram {fmt(t_gram)})"
            print(row(label, m, n, d, loop_s, "", batched_s, floor_s, kind, 0.0, diff), flush=True)


def all_metrics_section(args: argparse.Namespace, all_pairs: dict[str, float]) -> None:
    m, n, d = max(args.models), args.n, 32
    print(f"\n### Every built-in metric, all pairs of M = {m} models, n = {n}, d = {d} (batched, one thread)\n")
    reps, inputs = make_reps(m, n, d)
    nets = make_networks(m)
    for cls in METRICS:
        if cls.name in all_pairs:
            continue
        metric = cls()
        kw = {"inputs": inputs} if metric.needs_inputs else {}
        data = nets if metric.kind == "weight" else reps
        all_pairs[cls.name], _ = timed(lambda: metric.pairwise(data, **kw))
        print(f"- {cls.name}: {fmt(all_pairs[cls.name])}", flush=True)
    total = sum(all_pairs.values())
    print("\n| metric | all pairs (M = %d, n = %d) |\n|---|---:|" % (m, n))
    for cls in METRICS:
        print(f"| {cls.name} | {fmt(all_pairs[cls.name])} |")
    print(f"| **all 15** | **{fmt(total)}** |")


def memory_section(args: argparse.Namespace) -> None:
    limit = 24 << 30
    m = max(args.models)
    print(f"\n### Largest n per metric within 24 GiB (max_memory_mb = 24576, M = {m}, d = 32)\n")
    print("| metric | largest n | estimate at n = 10 000 |\n|---|---:|---:|")
    for cls in METRICS:
        metric = cls(max_memory_mb=24576)
        largest = metric.max_probes(d=32, m=m, limit_bytes=limit)
        est = metric.memory_bytes(10_000, 32, m)
        shown = "no n-limit" if largest is None else f"{largest:,}"
        print(f"| {cls.name} | {shown} | {est / 2**30:.1f} GiB |" if est is not None else f"| {cls.name} | {shown} | - |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3147, help="probe inputs (the MNIST 0-2 test split)")
    parser.add_argument("--models", type=int, nargs="+", default=[50, 180])
    parser.add_argument("--widths", type=int, nargs="+", default=[32, 256, 1024])
    parser.add_argument(
        "--kernel-metrics", nargs="+", default=["rsa", "rbf_cka", "unbiased_cka", "dcka", "mutual_knn"]
    )
    parser.add_argument("--feature-models", type=int, default=16, help="M for the d < 1024 feature rows")
    parser.add_argument("--wide-models", type=int, default=6, help="M for the d = 1024 feature rows")
    parser.add_argument("--loop-pairs", type=int, default=4, help="pairs timed for the extrapolated loops")
    parser.add_argument("--sections", nargs="+", default=["kernel", "feature", "all", "memory"])
    parser.add_argument("--quick", action="store_true", help="small sizes, a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.n, args.models, args.widths, args.feature_models, args.wide_models = 300, [6, 10], [32, 256], 6, 4
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} thread, {os.cpu_count()} CPUs "
        f"({platform.processor() or platform.machine()}), load average {os.getloadavg()[0]:.1f} at start\n"
    )
    all_pairs: dict[str, float] = {}
    if "kernel" in args.sections:
        kernel_section(args, all_pairs)
    if "feature" in args.sections:
        feature_section(args)
    if "all" in args.sections:
        all_metrics_section(args, all_pairs)
    if "memory" in args.sections:
        memory_section(args)
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
