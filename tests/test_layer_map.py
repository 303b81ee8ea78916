"""The ``layer_map`` benchmark on the kit's fake store (``simbench.testing.FakeStore``): it declares its maps,
the store computes them with the metric, and the benchmark reads them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats as sps
from torch import nn

import simbench
from simbench.registry import build_registry
from simbench_plugins.benchmarks import layer_map
from simbench_plugins.benchmarks.layer_map import compute as L
from simbench.testing import FakeStore, run_benchmark


# --------------------------------------------------------------------------
# Test doubles: two metrics, readable models, a fake store
# --------------------------------------------------------------------------


def _cka(a: torch.Tensor, b: torch.Tensor) -> float:
    """Linear CKA in its Gram form (an independent formula from the feature form)."""
    a = a.double() - a.double().mean(0)
    b = b.double() - b.double().mean(0)
    k, l_ = a @ a.T, b @ b.T
    return float((k * l_).sum() / (k.norm() * l_.norm()))


@dataclass(frozen=True)
class GramCKA(simbench.Metric):
    name: ClassVar[str] = "test_cka"
    symmetric: ClassVar[bool] = True

    def __call__(self, a: Any, b: Any, **kwargs: Any) -> float:
        return _cka(a, b)


@dataclass(frozen=True)
class RegressionR2(simbench.Metric):
    """Asymmetric: R^2 of predicting b from a by least squares."""

    name: ClassVar[str] = "test_r2"
    symmetric: ClassVar[bool] = False
    scale: float = 1.0

    def __call__(self, a: Any, b: Any, **kwargs: Any) -> float:
        a = a.double() - a.double().mean(0)
        b = b.double() - b.double().mean(0)
        coef = torch.linalg.lstsq(a, b).solution
        return self.scale * float(1 - ((a @ coef - b) ** 2).sum() / (b**2).sum())


@dataclass(frozen=True)
class Broken(simbench.Metric):
    name: ClassVar[str] = "broken"

    def __call__(self, a: Any, b: Any, **kwargs: Any) -> float:
        raise RuntimeError("boom")


class Chain(nn.Module):
    """A readable MLP; ``stagnant`` layers are near-copies of the previous one (a block)."""

    default_layer = "l4"

    def __init__(self, d: int, n_out: int, stagnant: bool, seed: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.stagnant = stagnant
        self.first = nn.Linear(d, 16)
        self.mids = nn.ModuleList(nn.Linear(16, 16) for _ in range(3))
        self.head = nn.Linear(16, n_out)
        with torch.no_grad():
            for lin in [self.first, *self.mids, self.head]:
                lin.weight.copy_(torch.randn(lin.weight.shape, generator=g) / lin.weight.shape[1] ** 0.5)
                lin.bias.zero_()
        self.readable_layers = ("l1", "l2", "l3", "l4", "output")

    def read(self, x: torch.Tensor, layers: Sequence[str]) -> dict[str, torch.Tensor]:
        acts = {}
        h = torch.tanh(self.first(x.flatten(1)))
        acts["l1"] = h
        for i, lin in enumerate(self.mids):
            # stagnant: a tiny residual change per layer; diverse: a fresh random nonlinear map
            h = h + 0.01 * torch.tanh(lin(h)) if self.stagnant else torch.relu(lin(h)) ** 2
            acts[f"l{i + 2}"] = h
        acts["output"] = self.head(h)
        return {name: acts[name].flatten(1) for name in layers}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.read(x, ["output"])["output"]

    def dense_weights(self) -> list[torch.Tensor]:
        return [self.first.weight.t(), self.head.weight.t()]


def models_ctx(models: Mapping[str, Any], probes: Mapping[str, simbench.ProbeSet], data: simbench.DataSplits,
               metrics: Sequence[type]) -> FakeStore:
    """A store over ``models`` (factor ``seed`` = position) and the named probe sets; no suite metrics."""
    specs = [simbench.ModelSpec(id=k, factors={"seed": i}) for i, k in enumerate(models)]
    return FakeStore(models, specs, list(probes.values()), data, metrics={}, metric_classes=metrics)


def evaluate(bench: Any, ctx: FakeStore) -> list[simbench.Record]:
    """What the runner does: the benchmark's requests, computed by the store, then evaluate."""
    return run_benchmark(bench, ctx)


def _regression_ctx(metrics: Sequence[type] = (GramCKA,)) -> FakeStore:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(60, 8, generator=g)
    y = torch.rand(60, 2, generator=g)
    shifted = x * 3 + 1
    data = simbench.DataSplits(
        train=simbench.Split(x, y),
        val=simbench.Split(x, y),
        test=simbench.Split(x, y),
        task="regression",
        meta={"targets": ["omega_m", "sigma_8"]},
    )
    models = {"diverse": Chain(8, 2, False, 1), "stagnant": Chain(8, 2, True, 2)}
    probes = {"clean": simbench.ProbeSet("clean", x, y), "shift/x3": simbench.ProbeSet("shift/x3", shifted, y)}
    return models_ctx(models, probes, data, metrics)


def _maps(records: Sequence[simbench.Record], model: str, probe: str) -> pd.DataFrame:
    df = pd.DataFrame([r.__dict__ for r in records])
    sub = df[(df.statistic == "map") & (df.group == model) & (df.probe_set == probe)]
    return sub.pivot(index="model_a", columns="model_b", values="value")


def _stat(records: Sequence[simbench.Record], stat: str, model: str, probe: str) -> float:
    (value,) = [r.value for r in records if r.statistic == stat and r.group == model and r.probe_set == probe]
    return value


# --------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------


def test_symmetric_metric_gives_unit_diagonal_and_symmetric_maps():
    ctx = _regression_ctx()
    records = evaluate(layer_map.LayerMap(metric="test_cka"), ctx)
    assert all(r.status == "ok" for r in records)
    for model in ("diverse", "stagnant"):
        for probe in ("clean", "shift/x3"):
            m = _maps(records, model, probe)
            layers = ctx.models_[model].readable_layers
            m = m.loc[list(layers), list(layers)].to_numpy()
            np.testing.assert_allclose(np.diag(m), 1.0, atol=1e-9)
            np.testing.assert_allclose(m, m.T, atol=1e-12)
            assert _stat(records, "diag_mean", model, probe) == pytest.approx(1.0)
            # entries agree with the metric computed pair by pair
            x = ctx.probe_set(probe).x
            acts = ctx.models_[model].read(x, ["l1", "output"])
            assert m[0, -1] == pytest.approx(_cka(acts["l1"].detach(), acts["output"].detach()), abs=1e-9)
            # summaries are those of the upper triangle
            upper = m[np.triu_indices(len(layers), 1)]
            assert _stat(records, "offdiag_mean", model, probe) == pytest.approx(upper.mean())
            assert _stat(records, "offdiag_skew", model, probe) == pytest.approx(sps.skew(upper), abs=1e-9)
            eig = np.linalg.eigvalsh(m)[::-1]
            assert _stat(records, "eig_1", model, probe) == pytest.approx(eig[0])
            # the PDF integrates to one over [0, 1]
            pdf = [r for r in records if r.statistic == "pdf" and r.group == model and r.probe_set == probe]
            widths = [r.coords["bin_high"] - r.coords["bin_low"] for r in pdf]
            assert len(pdf) == 20 and sum(r.value * w for r, w in zip(pdf, widths)) == pytest.approx(1.0)


def test_stagnant_layers_score_as_blocks():
    ctx = _regression_ctx()
    records = evaluate(layer_map.LayerMap(metric="test_cka"), ctx)
    for probe in ("clean", "shift/x3"):
        assert _stat(records, "block_score", "stagnant", probe) > _stat(records, "block_score", "diverse", probe)
        assert _stat(records, "offdiag_mean", "stagnant", probe) > _stat(records, "offdiag_mean", "diverse", probe)
        assert _stat(records, "adjacent_mean", "stagnant", probe) > _stat(records, "adjacent_mean", "diverse", probe)


def test_task_scores_and_deltas():
    ctx = _regression_ctx()
    records = evaluate(layer_map.LayerMap(metric="test_cka", score_targets=("sigma_8",)), ctx)
    for model in ("diverse", "stagnant"):
        for probe in ("clean", "shift/x3"):
            ps = ctx.probe_set(probe)
            pred = ctx.models_[model](ps.x).detach().double()
            y = ps.y.double()
            r2 = 1 - ((pred - y) ** 2).sum(0) / ((y - y.mean(0)) ** 2).sum(0)
            assert _stat(records, "r2_omega_m", model, probe) == pytest.approx(float(r2[0]))
            assert _stat(records, "task_score", model, probe) == pytest.approx(float(r2[1]))
        delta = _stat(records, "delta_block_score", model, "shift/x3")
        assert delta == pytest.approx(
            _stat(records, "block_score", model, "shift/x3") - _stat(records, "block_score", model, "clean")
        )
    assert not [r for r in records if r.statistic.startswith("delta_") and r.probe_set == "clean"]
    # one declared map per (model, probe set), over every readable layer, nothing computed by the benchmark
    requests = layer_map.LayerMap(metric="test_cka").requests(ctx)
    assert sorted(r.key for r in requests) == sorted(f"{m}@{p}" for m in ("diverse", "stagnant")
                                                      for p in ("clean", "shift/x3"))
    assert all([s.layer for s in r.sources] == ["l1", "l2", "l3", "l4", "output"] for r in requests)


def test_classification_accuracy():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(40, 8, generator=g)
    model = Chain(8, 3, False, 4)
    with torch.no_grad():
        y = model(x).argmax(1)
    y[:10] = (y[:10] + 1) % 3  # exactly 10 of 40 wrong
    data = simbench.DataSplits(*(simbench.Split(x, y),) * 3, task="classification", num_classes=3)
    ctx = models_ctx({"m": model}, {"clean": simbench.ProbeSet("clean", x, y)}, data, [GramCKA])
    records = evaluate(layer_map.LayerMap(metric="test_cka"), ctx)
    assert _stat(records, "task_score", "m", "clean") == pytest.approx(0.75)


def test_asymmetric_metric_keeps_both_orders():
    ctx = _regression_ctx([RegressionR2])
    bench = layer_map.LayerMap(metric="test_r2", metric_params={"scale": 1.0}, layers=("l1", "l2", "output"))
    records = evaluate(bench, ctx)
    m = _maps(records, "diverse", "clean").loc[["l1", "l2", "output"], ["l1", "l2", "output"]].to_numpy()
    np.testing.assert_allclose(np.diag(m), 1.0, atol=1e-9)
    assert abs(m[0, 2] - m[2, 0]) > 1e-3  # predicting 2 outputs from 16 units is not the reverse
    off = m[~np.eye(3, dtype=bool)]
    assert _stat(records, "offdiag_mean", "diverse", "clean") == pytest.approx(off.mean())


def test_block_score_reference_values():
    eye = torch.eye(6, dtype=torch.float64)
    ones = torch.ones(6, 6, dtype=torch.float64)
    blocks = torch.block_diag(torch.ones(3, 3), torch.ones(3, 3)).double()
    assert L.block_score(L.spectrum(eye)) == pytest.approx(0.0, abs=1e-12)
    assert L.block_score(L.spectrum(ones)) == pytest.approx(1.0)
    assert L.block_score(L.spectrum(blocks)) == pytest.approx(1 - (2 - 1) / 5)
    assert L.skewness(torch.tensor([1.0, 1.0, 1.0])) == 0.0


def test_failures_are_recorded_not_raised():
    ctx = _regression_ctx([Broken])
    records = evaluate(layer_map.LayerMap(metric="broken"), ctx)
    failed = [r for r in records if r.status == "failed"]
    assert len(failed) == 4 and all("boom" in r.error for r in failed)


def test_unknown_probe_set_and_bad_params():
    ctx = _regression_ctx()
    with pytest.raises(ValueError, match="unknown probe set"):
        evaluate(layer_map.LayerMap(metric="test_cka", probe_sets=("nope",)), ctx)
    obj, key, _ = simbench.params.configure(layer_map.LayerMap, {"layers": ["l1"]})
    assert obj is None and key == "layers"
    obj, _, _ = simbench.params.configure(layer_map.LayerMap, {"metric": "linear_cka", "metric_params": {"k": 3}})
    assert obj.metric_params == {"k": 3}


def test_plot_writes_heatmaps(tmp_path):
    ctx = _regression_ctx()
    records = evaluate(layer_map.LayerMap(metric="test_cka"), ctx)
    paths = layer_map.plot(pd.DataFrame([r.__dict__ for r in records]), tmp_path)
    assert sorted(p.name for p in paths) == ["layer_map_diverse_test_cka.png", "layer_map_stagnant_test_cka.png"]
    tables = layer_map.LayerMap.tables(pd.DataFrame([r.__dict__ for r in records]))
    assert [t.key for t in tables][:2] == ["layer_maps", "shift_deltas"]
    assert len(tables[0].frame) == 4 and "r2_omega_m" in tables[0].frame.columns
    assert all(p.stat().st_size > 10_000 for p in paths)


def test_registered_as_a_builtin():
    assert build_registry().get("benchmark", "layer_map") is layer_map.LayerMap
