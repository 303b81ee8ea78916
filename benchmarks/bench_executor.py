"""The same plan serially and on a 2-worker Dask LocalCluster; thread pinning (issue 14).

    python benchmarks/bench_executor.py                       # paper-mlp-digits, full size
    python benchmarks/bench_executor.py --set zoo.seeds=[0]   # a smaller override

Every configuration runs from an empty cache (everything is trained and
measured) into its own run directory, in this order, in one process:

1. local executor, 1 torch thread (the default)          -> the baseline
2. dask, 2 workers x 1 thread                            -> executor ratio; results must be identical
3. local executor, 2 torch threads                       -> thread-pinning ratio, one process
4. dask, 2 workers x 2 threads (4 threads on the cores)  -> thread-pinning ratio, two processes

It prints wall times, the ratios and a per-stage breakdown (the client's
view: with dask, "zoo" and "similarity" include waiting for the workers).
Results of 1 and 2 are compared value by value (tolerance 1e-12); 3 and 4 use
another thread count, so their float reductions may differ in the last bits
and are not compared.  A benchmark, not a test: numbers depend on the
machine's load, so run it on an otherwise idle machine and quote ratios.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(suite_file: Path, overrides: list[str], workdir: Path, label: str, executor: str, threads: int,
         workers: int) -> tuple[float, dict[str, float], object]:
    from simbench.registry import build_registry
    from simbench.runner import Runner
    from simbench.suite import load_suite

    registry = build_registry()
    suite = load_suite(suite_file, registry, [*overrides, f"run.threads={threads}"])
    runner = Runner(suite, registry, workdir / label, cache_dir=workdir / f"cache-{label}", quiet=True, fresh=True,
                    executor=executor, workers=workers)
    started = time.perf_counter()
    run = runner.run()
    seconds = time.perf_counter() - started
    return seconds, dict(runner.stage_seconds), run.results()


def _max_diff(a: object, b: object) -> float:
    import numpy as np

    x, y = a["value"].to_numpy(float), b["value"].to_numpy(float)  # type: ignore[index]
    text = [c for c in a.columns if c != "value"]  # type: ignore[attr-defined]
    if len(x) != len(y) or not a[text].reset_index(drop=True).equals(b[text].reset_index(drop=True)):  # type: ignore[index]
        return float("inf")
    if not np.array_equal(np.isnan(x), np.isnan(y)):
        return float("inf")
    return float(np.nanmax(np.abs(x - y))) if len(x) else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default=str(ROOT / "suites" / "paper-mlp-digits.toml"))
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--skip-threads", action="store_true", help="only configurations 1 and 2")
    parser.add_argument("--keep", action="store_true", help="keep the run and cache directories")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="bench-executor-"))
    configs = [("serial-1t", "local", 1), (f"dask-{args.workers}w-1t", "dask", 1)]
    if not args.skip_threads:
        configs += [("serial-2t", "local", 2), (f"dask-{args.workers}w-2t", "dask", 2)]
    print(f"suite {args.suite} {' '.join(args.overrides)}; {os.cpu_count()} cores; "
          f"load average {os.getloadavg()[0]:.1f} at start")
    out: dict[str, tuple[float, dict[str, float], object]] = {}
    try:
        for label, executor, threads in configs:
            out[label] = _run(Path(args.suite), args.overrides, workdir, label, executor, threads, args.workers)
            print(f"  {label:14s} {out[label][0]:8.1f} s  (load average {os.getloadavg()[0]:.1f})", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    base, dask_label = "serial-1t", f"dask-{args.workers}w-1t"
    diff = _max_diff(out[base][2], out[dask_label][2])
    print(f"\nserial vs dask results: max |difference| = {diff:.3g} ({'identical' if diff <= 1e-12 else 'DIFFERENT'})")
    print(f"dask {args.workers} workers / serial wall time: {out[dask_label][0] / out[base][0]:.2f} "
          f"(speed-up {out[base][0] / out[dask_label][0]:.2f}x)")
    if not args.skip_threads:
        d2 = f"dask-{args.workers}w-2t"
        print(f"serial, 2 threads / 1 thread: {out['serial-2t'][0] / out[base][0]:.2f}")
        print(f"dask {args.workers} workers, 2 threads / 1 thread each: {out[d2][0] / out[dask_label][0]:.2f}")
    stages = list(dict.fromkeys(s for _, st, _ in out.values() for s in st))
    print("\nper stage (s): " + " | ".join(out))
    for stage in stages:
        print(f"  {stage:20s} " + " | ".join(f"{out[k][1].get(stage, 0.0):8.1f}" for k in out))
    return 0 if diff <= 1e-12 else 1


if __name__ == "__main__":
    sys.exit(main())
