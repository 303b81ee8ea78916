"""A suite's metric-stage time, estimated from measured per-metric costs (``simbench validate``).

The costs are measured, not guessed: ``benchmarks/bench_metric_costs.py``
times every built-in metric's all-pairs matrix on synthetic ReLU features
(one torch thread) at a few sizes and writes ``metric_costs.json`` next to
this module.  Each metric's seconds per matrix are modelled as

    t(M, n) = (a·M + b·M²) · (n / n_ref)^β

(a per-model part: centring, a Gram matrix, an SVD, ranking an RDM; a
per-pair part: the all-pairs products), ``a`` and ``b`` fitted from two
model counts at ``n_ref`` probes, ``β`` from two probe counts.  Weight
metrics (``kind = "weight"``) are measured once per run, activation metrics
once per probe set.  The estimate is for one core of the machine named in
the file; a metric without a measurement is listed as unknown, never
silently counted as free.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

COSTS_FILE = Path(__file__).with_name("metric_costs.json")


@dataclass(frozen=True)
class MetricCost:
    """The fitted cost model of one metric (see the module docstring)."""

    per_model: float
    per_pair: float
    n_ref: int
    n_exponent: float

    def seconds(self, n_models: int, n_probes: int) -> float:
        """Seconds for one all-pairs matrix of ``n_models`` models on ``n_probes`` probes."""
        scale = (max(n_probes, 1) / self.n_ref) ** self.n_exponent
        return (self.per_model * n_models + self.per_pair * n_models * n_models) * scale


@dataclass(frozen=True)
class Estimate:
    """A suite's metric-stage estimate: total seconds on one core, per metric, and the unmeasured."""

    seconds: float
    per_metric: dict[str, float] = field(default_factory=dict)
    unknown: tuple[str, ...] = ()
    machine: str = ""

    def line(self, workers: int = 1) -> str:
        """One line for ``validate``: the total, the largest costs, what is not measured."""
        if not self.per_metric:
            return f"metric stage: no measured costs for {', '.join(self.unknown) or 'these metrics'}"
        minutes = self.seconds / 60.0
        parallel = f", ~{minutes / workers:.0f} min on {workers} workers" if workers > 1 else ""
        top = sorted(self.per_metric.items(), key=lambda kv: -kv[1])[:3]
        biggest = ", ".join(f"{name} {sec / 60:.1f}" for name, sec in top)
        unknown = f"; not measured: {', '.join(self.unknown)}" if self.unknown else ""
        return (f"metric stage ≈ {minutes:.0f} min on one core{parallel} (largest: {biggest} min; costs measured on "
                f"{self.machine or 'an unnamed machine'})" + unknown)


@functools.lru_cache(maxsize=1)
def load_costs(path: str = str(COSTS_FILE)) -> tuple[dict[str, MetricCost], str]:
    """``({metric name: cost}, machine)`` from the measured table (empty when it is missing)."""
    try:
        doc: dict[str, Any] = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}, ""
    # a cost cannot fall with more probes: a negative fitted exponent is timing noise on a sub-0.1 s matrix
    costs = {name: MetricCost(float(c["per_model"]), float(c["per_pair"]), int(c["n_ref"]),
                              max(float(c["n_exponent"]), 0.0))
             for name, c in doc.get("metrics", {}).items()}
    return costs, str(doc.get("machine", ""))


def estimate(metrics: list[tuple[str, str]], n_models: int, n_probes: int, n_probe_sets: int,
             costs: dict[str, MetricCost] | None = None, machine: str = "") -> Estimate:
    """The metric stage of a run: ``metrics`` as ``(plugin name, kind)`` pairs, ``n_models`` models,
    ``n_probes`` probes per probe set, ``n_probe_sets`` probe sets (weight metrics: one matrix)."""
    if costs is None:
        costs, machine = load_costs()
    per_metric: dict[str, float] = {}
    unknown: list[str] = []
    for name, kind in metrics:
        cost = costs.get(name)
        if cost is None:
            unknown.append(name)
            continue
        matrices = 1 if kind == "weight" else n_probe_sets
        per_metric[name] = per_metric.get(name, 0.0) + matrices * cost.seconds(n_models, n_probes)
    return Estimate(sum(per_metric.values()), per_metric, tuple(dict.fromkeys(unknown)), machine)


def fit(samples: list[tuple[int, int, float]]) -> MetricCost:
    """A :class:`MetricCost` from ``(M, n, seconds)`` measurements: two model counts at the largest
    common probe count give ``a`` and ``b`` (least squares, clipped at 0), two probe counts at one
    model count give ``β``."""
    import numpy as np

    n_ref = max(n for _, n, _ in samples)
    at_ref = [(m, t) for m, n, t in samples if n == n_ref]
    design = np.array([[m, m * m] for m, _ in at_ref], dtype=float)
    times = np.array([t for _, t in at_ref], dtype=float)
    (a, b), *_ = np.linalg.lstsq(design, times, rcond=None)
    a, b = max(float(a), 0.0), max(float(b), 0.0)
    if a == 0.0 and b == 0.0:
        b = float(times.max() / max(m * m for m, _ in at_ref))
    exponent = 1.0
    m_small = min(m for m, _, _ in samples)
    by_n = sorted((n, t) for m, n, t in samples if m == m_small)
    if len(by_n) >= 2 and by_n[0][0] != by_n[-1][0] and by_n[0][1] > 0:
        exponent = max(float(np.log(by_n[-1][1] / by_n[0][1]) / np.log(by_n[-1][0] / by_n[0][0])), 0.0)
    return MetricCost(a, b, n_ref, exponent)
