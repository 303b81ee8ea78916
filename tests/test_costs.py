"""The metric-stage estimate of ``simbench validate`` (simbench/costs.py)."""

from __future__ import annotations

import pytest

from simbench.costs import MetricCost, estimate, fit, load_costs


def test_fit_recovers_a_known_cost_model():
    true = MetricCost(per_model=0.05, per_pair=0.002, n_ref=1000, n_exponent=1.7)
    samples = [(m, n, true.seconds(m, n)) for m, n in ((24, 1000), (72, 1000), (24, 500))]
    got = fit(samples)
    assert got.per_model == pytest.approx(0.05, rel=1e-6)
    assert got.per_pair == pytest.approx(0.002, rel=1e-6)
    assert got.n_exponent == pytest.approx(1.7, rel=1e-6)
    assert got.seconds(180, 3147) == pytest.approx(true.seconds(180, 3147), rel=1e-6)


def test_estimate_counts_weight_metrics_once_and_names_the_unmeasured():
    costs = {"act": MetricCost(0.0, 0.001, 1000, 1.0), "w": MetricCost(0.0, 0.001, 1000, 1.0)}
    est = estimate([("act", "activation"), ("w", "weight"), ("new_metric", "activation")], 10, 1000, 5,
                   costs=costs, machine="test cpu")
    assert est.per_metric == {"act": pytest.approx(5 * 0.1), "w": pytest.approx(0.1)}
    assert est.unknown == ("new_metric",)
    line = est.line(2)
    assert "new_metric" in line and "test cpu" in line and "2 workers" in line


def test_the_shipped_costs_cover_every_built_in_metric():
    from simbench_plugins.metrics import METRICS

    costs, machine = load_costs()
    assert costs and machine  # simbench/metric_costs.json ships with the package
    assert {cls.name for cls in METRICS} <= set(costs)
    assert all(c.per_model >= 0 and c.per_pair >= 0 and 0 <= c.n_exponent < 4 for c in costs.values())
