"""The all-pairs engine: tiling under a memory cap, routes, compression of wide
representations, precision, input validation, and cheap plugin imports."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from scipy import stats

from simbench.registry import build_registry
from simbench.testing import make_activations
from simbench_plugins.metrics import _linalg

METRICS = {e.name: e.cls for e in build_registry().entries("metric") if e.plugin == "builtin_metrics"}
ACTIVATION = sorted(name for name, cls in METRICS.items() if cls.kind == "activation")


def zoo(m: int = 11, n: int = 40, seed: int = 0):
    """Representations of different widths (3..9) of the same inputs."""
    widths = [3 + (k * 5) % 7 for k in range(m)]
    reps, inputs = make_activations(seed, n=n, widths=widths, input_dim=6)
    return reps, inputs


def loop(metric, reps, inputs):
    kw = {"inputs": inputs} if metric.needs_inputs else {}
    return torch.tensor([[metric(a, b, **kw) for b in reps] for a in reps], dtype=torch.float64)


@pytest.mark.parametrize("name", ACTIVATION)
def test_pairwise_is_unchanged_by_tiling_under_a_tiny_memory_cap(name, monkeypatch):
    metric = METRICS[name]()
    reps, inputs = zoo()
    kw = {"inputs": inputs} if metric.needs_inputs else {}
    reference = loop(metric, reps, inputs)
    # a cap of ~2 blocks per tile forces many strips, column chunks and rebuilt Gram groups
    monkeypatch.setattr(_linalg, "cap_elements", lambda *args, **kwargs: 200)
    # and the streamed kernel / RDM / k-NN objects: 3-row blocks, RDM vectors in groups of 2 (rebuilt per group pair)
    monkeypatch.setattr(_linalg, "rows_per_block", lambda *args, **kwargs: 3)
    monkeypatch.setattr(_linalg, "group_size", lambda *args, **kwargs: 2)
    tiled = metric.pairwise(reps, **kw)
    # arccos turns 1e-16 rounding near identity into ~1e-8 angles
    assert torch.allclose(tiled, reference, atol=1e-6 if name == "angular_shape" else 1e-10, rtol=0)


def test_strips_cover_only_the_upper_block_triangle():
    z = torch.randn(10, 20 * 3, dtype=torch.float64)
    seen = torch.zeros(20, 20, dtype=torch.bool)
    for i0, i1, j0, j1, tile in _linalg.iter_tiles(z, 3, None, 3, 20, max_memory_mb=1024):
        assert j0 >= i0 and tile.shape == (i1 - i0, 3, j1 - j0, 3)
        seen[i0:i1, j0:j1] = True
    upper = torch.ones(20, 20, dtype=torch.bool).triu()
    assert bool(seen[upper].all()) and int(seen.sum()) < 20 * 20  # full upper triangle, not the whole square


def test_feature_and_gram_routes_agree():
    reps, _ = zoo(m=6)
    feats = [_linalg.center(x) for x in reps]
    a = _linalg.frob2_auto(feats, 1024, route="feature")
    b = _linalg.frob2_auto(feats, 1024, route="gram")
    assert torch.allclose(a, b, rtol=1e-12, atol=0)


@pytest.mark.parametrize("name", ["linear_cka", "unbiased_cka", "procrustes", "angular_shape", "linear_regression_r2"])
def test_wide_representations_are_compressed_exactly(name):
    metric = METRICS[name]()
    reps, _ = make_activations(3, n=20, widths=(50, 35, 64), input_dim=4)
    # arccos near 1: a 1e-16 rounding difference in the nuclear norm is a ~2e-8 angle
    atol = 1e-7 if name == "angular_shape" else 1e-10
    assert torch.allclose(metric.pairwise(reps), loop(metric, reps, None), atol=atol, rtol=0)
    wide = reps[0]
    small = _linalg.compress(_linalg.center(wide))
    assert small.shape == (20, 20)
    assert torch.allclose(small @ small.T, _linalg.center(wide) @ _linalg.center(wide).T, atol=1e-9)


@pytest.mark.parametrize("name", ["linear_cka", "procrustes", "cca_mean", "unbiased_cka"])
def test_float32_inputs_stay_close_to_float64(name):
    metric = METRICS[name]()
    reps, _ = zoo(m=5, n=300)
    exact = metric.pairwise(reps)
    single = metric.pairwise([x.float() for x in reps])
    assert single.dtype == torch.float64 and single.device.type == "cpu"
    assert float((single - exact).abs().max()) < 1e-4


def test_average_ranks_match_scipy_with_ties():
    v = torch.tensor([3.0, 1.0, 3.0, 2.0, 1.0, 3.0, 0.5], dtype=torch.float64)
    expected = stats.rankdata(v.numpy()) - 1
    assert np.allclose(_linalg.average_ranks(v).numpy(), expected)


def test_nuclear_norms_match_svd_for_rank_deficient_blocks():
    g = torch.Generator().manual_seed(0)
    full = torch.randn(7, 5, 4, generator=g, dtype=torch.float64)
    low = torch.randn(7, 5, 1, generator=g, dtype=torch.float64)
    low = low @ torch.randn(7, 1, 4, generator=g, dtype=torch.float64)
    for blocks in (full, low, full.transpose(1, 2)):
        assert torch.allclose(_linalg.nuclear_norms(blocks), torch.linalg.svdvals(blocks).sum(-1), atol=1e-12)


def test_constant_columns_are_exactly_zero_after_centring():
    x = torch.randn(30, 3) * 1e-3
    x[:, 1] = 0.1  # not exactly representable: a naive mean leaves rounding noise
    assert bool((_linalg.center(x)[:, 1] == 0).all())
    # CCA must not whiten that noise into a spurious, perfectly correlated direction
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(30, generator=g), torch.randn(30, generator=g)
    x = torch.stack([a, torch.full((30,), 0.1)], dim=1)
    y = torch.stack([b, torch.full((30,), 0.1)], dim=1)
    r = abs(float(torch.corrcoef(torch.stack([a, b]))[0, 1]))
    assert METRICS["cca_mean"]()(x, y) == pytest.approx(r, abs=1e-5)


@pytest.mark.parametrize(
    "args,kwargs,error,match",
    [
        ((torch.randn(10, 3), torch.randn(11, 3)), {}, ValueError, "share the probe inputs"),
        ((torch.randn(10), torch.randn(10, 3)), {}, ValueError, "2-D tensor"),
        ((torch.full((10, 3), float("nan")), torch.randn(10, 3)), {}, ValueError, "NaN"),
        ((torch.randn(10, 3), torch.randn(10, 3)), {"probes": 1}, TypeError, "unexpected keyword"),
    ],
)
def test_invalid_inputs_give_clear_errors(args, kwargs, error, match):
    metric = METRICS["linear_cka"]()
    with pytest.raises(error, match=match):
        metric(*args, **kwargs)
    with pytest.raises(error, match=match):
        metric.pairwise(list(args), **kwargs)


def test_integer_inputs_are_accepted():
    x = torch.randint(0, 5, (20, 4))
    assert abs(METRICS["linear_cka"]()(x, x) - 1.0) < 1e-6


def test_docs_describe_every_builtin_metric_and_parameter():
    from tests.conftest import ROOT

    text = (ROOT / "docs" / "metrics.md").read_text()
    for name, cls in METRICS.items():
        row = next((line for line in text.splitlines() if line.startswith(f"| `{name}` |")), None)
        assert row is not None, f"docs/metrics.md has no table row for {name}"
        for field in (f.name for f in dataclasses.fields(cls)):
            assert f"`{field}`" in row, f"docs/metrics.md: {name} row does not mention parameter {field}"
        assert ("similarity" if cls.higher_is_more_similar else "distance") in row
        assert ("yes" if cls.symmetric else "**no**") in row
        for invariance in cls.invariances:
            assert invariance.replace("_", " ") in row, (name, invariance)


@pytest.mark.parametrize("d,route", [(32, "feature"), (256, "gram"), (1024, "gram")])
def test_linear_cka_route_cost_model_at_the_issue_widths(d, route):
    # n = 3147 probes, M = 50 models: the feature route's (M d)^2 n GEMM loses to the Gram route's M^2 n^2 / 2
    # once d exceeds ~sqrt(n / 2) plus the Gram build; every multiply-add and elementwise pass is counted
    costs = _linalg.route_costs(3147, 50, d)
    assert _linalg.choose_route(3147, 50, d) == route
    assert min(costs, key=costs.get) == route
    # the counts follow the tiles and blocks actually computed: the feature route covers at least the
    # upper block triangle and less than the full square
    full, upper = 3147 * (50 * d) ** 2, 3147 * (50 * d) * (50 * d + d) / 2
    assert upper <= costs["feature"] < full * 1.01


def test_gram_route_streams_the_same_value_as_the_feature_route_for_wide_features():
    reps, _ = make_activations(5, n=30, widths=(40, 25, 33), input_dim=4)
    feats = [_linalg.compress(_linalg.center(x)) for x in reps]
    assert torch.allclose(
        _linalg.frob2_auto(feats, 1, route="gram"), _linalg.frob2_auto(feats, 1, route="feature"), rtol=1e-12, atol=0
    )
