"""The benchmark kit (``simbench.testing.check_benchmark``) over every registered benchmark, and the kit itself."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import pytest

import simbench
from simbench.registry import build_registry
from simbench.testing import ConformanceError, FakeStore, check_benchmark, run_benchmark

REGISTRY = build_registry()
BENCHMARKS = sorted(REGISTRY.names("benchmark"))

@pytest.fixture(scope="module")
def store() -> FakeStore:
    return FakeStore(registry=REGISTRY)


def test_every_builtin_is_parametrised():
    assert {"layer_map", "functional_agreement", "manipulation"} <= set(BENCHMARKS)


@pytest.mark.parametrize("name", BENCHMARKS)
def test_every_registered_benchmark_passes_the_kit(name, store):
    cls = REGISTRY.get("benchmark", name)
    # a benchmark that needs other data or models (a regression task, its study's zoo) declares its own store
    own = {"store", "meta"} & set(getattr(cls, "check_example", None) or {})
    records = check_benchmark(cls, store=None if own else store)
    assert records


def test_layer_map_passes_with_its_defaults_and_maps_what_it_declares(store):
    from simbench_plugins.benchmarks.layer_map import LayerMap

    records = check_benchmark(LayerMap, {"metric": "linear_cka", "max_models": 2}, store=store)
    maps = [r for r in records if r.statistic == "map" and r.status == "ok"]
    # 2 models x 2 probe sets x 3 x 3 layers, each entry located by its layer indices
    assert len(maps) == 2 * 2 * 9
    assert {(r.coords["layer_a"], r.coords["layer_b"]) for r in maps} == {(i, j) for i in range(3) for j in range(3)}
    pdf = [r for r in records if r.statistic == "pdf"]
    assert all(r.model_a == r.model_b == "" and r.coords["bin_low"] < r.coords["bin_high"] for r in pdf)


@dataclass(frozen=True)
class StringlyTyped(simbench.Benchmark):
    """Packs a number into model_b: the kit must refuse it."""

    name: ClassVar[str] = "stringly_typed"

    def evaluate(self, ctx):
        return [simbench.Record("", "gap", 0.5, model_b="3.0")]


@dataclass(frozen=True)
class NonFinite(simbench.Benchmark):
    name: ClassVar[str] = "non_finite"

    def evaluate(self, ctx):
        return [simbench.Record("", "gap", float("inf"))]


@dataclass(frozen=True)
class ReadsADeclaredMatrix(simbench.Benchmark):
    """Declares linear CKA between two models' layers and reports one entry (the kit computes it for real)."""

    name: ClassVar[str] = "reads_declared"

    def requests(self, view):
        a, b = view.specs[0].id, view.specs[1].id
        return [simbench.MatrixRequest("pair", "linear_cka", (simbench.Source(a, "clean", "l1"),
                                                              simbench.Source(b, "clean", "l1")))]

    def evaluate(self, ctx):
        m = ctx.matrix("pair")
        return [simbench.Record("", "cka", float(m[0, 1]), coords={"row": 0.0, "col": 1.0})]


def test_kit_refuses_numbers_in_text_fields(store):
    with pytest.raises(ConformanceError, match="model_b = '3.0' holds a number"):
        check_benchmark(StringlyTyped, store=store)


def test_kit_refuses_non_finite_ok_rows(store):
    with pytest.raises(ConformanceError, match="non-finite"):
        check_benchmark(NonFinite, store=store)


def test_declared_matrix_is_the_real_metric(store):
    import torch

    (record,) = check_benchmark(ReadsADeclaredMatrix, store=store)
    a = store.representation(simbench.Source(store.specs[0].id, "clean", "l1")).double()
    b = store.representation(simbench.Source(store.specs[1].id, "clean", "l1")).double()
    a, b = a - a.mean(0), b - b.mean(0)
    expected = (a.T @ b).norm() ** 2 / ((a.T @ a).norm() * (b.T @ b).norm())
    assert record.value == pytest.approx(float(expected), abs=1e-6)
    assert 0.0 < record.value < 1.0 and torch.is_tensor(store.matrix("pair"))


def test_store_view_hands_out_copies(store):
    first = store.representations("clean")
    first[0].zero_()
    assert store.representations("clean")[0].abs().sum() > 0
    sim = store.similarity("linear_cka", "clean")
    sim.zero_()
    assert store.similarity("linear_cka", "clean").abs().sum() > 0
    assert store.similarity("procrustes", "clean").max() <= 0  # a distance, oriented: higher = more similar


# --------------------------------------------------------------------------
# The runner side: declared matrices are cells, computed before benchmarks, read through a read-only view
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Declares(simbench.Benchmark):
    """Declares ``metric`` over every model's ``layer`` on the clean probes (plus a transformed copy of the
    first model when ``transform`` is set); ``bad`` declares something the runner must refuse."""

    name: ClassVar[str] = "test_declares"
    metric: str = "toy_gram_corr"
    layer: str = "logits"
    bad: str = ""

    def requests(self, view):
        if self.bad == "raise":
            raise RuntimeError("requests blew up")
        ids = [s.id for s in view.specs]
        sources = tuple(simbench.Source(i, "clean", self.layer) for i in ids)
        out = [simbench.MatrixRequest("all", self.metric, sources)]
        if self.bad == "duplicate":
            out.append(simbench.MatrixRequest("all", self.metric, sources))
        if self.bad == "layer":
            out.append(simbench.MatrixRequest("odd", self.metric, (simbench.Source(ids[0], "clean", "nope"),)))
        if self.bad == "transform":
            out.append(simbench.MatrixRequest("odd", self.metric, (simbench.Source(ids[0], "clean", transform="toy_jitter"),)))
        if self.bad == "transformed":  # not bad: the first model against a transformed subset of itself
            moved = simbench.Source(ids[0], "clean", "hidden", "representation_transform",
                                    (("kind", "invertible_linear"), ("sigma", 0.5)), 7, tuple(range(0, 40, 2)))
            out.append(simbench.MatrixRequest("moved", "linear_cka",
                                              (simbench.Source(ids[0], "clean", "hidden", rows=moved.rows), moved)))
        return out

    def evaluate(self, ctx):
        assert not hasattr(ctx, "models") and not hasattr(ctx, "make_plugin")
        m = ctx.matrix("all")
        if self.bad == "transformed":
            import torch

            cka = ctx.matrix("moved")
            plain, source = self.requests(ctx)[-1].sources
            x = ctx.representation(source)
            base = ctx.representation(plain)
            assert torch.equal(base, ctx.representations("clean", "hidden")[0][list(source.rows)].to(base.dtype))
            # the metric on the sources as the view materialises them (the transform may return float64)
            expected = ctx.matrix_metric("moved").pairwise([base.double(), x.double()])
            assert torch.allclose(torch.as_tensor(expected).double(), cka, atol=1e-6)
            assert x.shape[0] == 20 and not torch.allclose(x.double(), base.double())
        return [simbench.Record("", "mean", float(m.mean()), metric=self.metric, n=int(m.shape[0]),
                                coords={"k": float(m.shape[0])})]


class _TestPlugin:
    @staticmethod
    @simbench.hookimpl
    def register_benchmarks(register):
        register(Declares)


@pytest.fixture(scope="module")
def toy():
    from tests.conftest import TOY_PLUGINS

    return build_registry(plugin_files=[str(TOY_PLUGINS)], extra_plugins=[_TestPlugin])


def _run(tmp_path, registry, bench, cache, name="run"):
    from simbench.runner import Runner
    from simbench.suite import load_suite
    from tests.conftest import TOY_SUITE

    suite = load_suite(TOY_SUITE, registry, [f"benchmarks=[{bench}]"])
    runner = Runner(suite, registry, tmp_path / name, cache_dir=cache, quiet=True)
    return runner, runner.run()


def test_declared_matrix_is_a_cell_computed_like_a_similarity_cell(tmp_path, toy):
    import torch

    cache = tmp_path / "cache"
    runner, run = _run(tmp_path, toy, "{name='test_declares'}", cache)
    frame = run.results()
    cell = frame[frame["kind"] == "matrix"]
    assert list(cell["group"]) == ["all"] and list(cell["status"]) == ["ok"]
    m = len(runner.state.specs)
    # the matrix is the metric's pairwise over the models' logits, exactly what the suite's metric gives
    reps = runner.representations("clean", "logits")[0]
    metric = runner.metric_use("toy_gram_corr").obj
    expected = torch.as_tensor(metric.pairwise([r.clone() for r in reps])).double()
    stored = runner.state.matrices[("test_declares", "all")]
    assert torch.equal(stored, expected)
    bench = frame[(frame["kind"] == "benchmark") & (frame["status"] == "ok")]
    assert float(bench["value"].iloc[0]) == pytest.approx(float(expected.mean()))
    assert float(bench["coord_k"].iloc[0]) == m
    # resumed: every cell reused, nothing recomputed
    again, _ = _run(tmp_path, toy, "{name='test_declares'}", cache)
    assert again.computed == 0
    # a fresh run directory on the same cache: the matrix comes from the cache, identical
    third, _ = _run(tmp_path, toy, "{name='test_declares'}", cache, name="other")
    assert torch.equal(third.state.matrices[("test_declares", "all")], expected)
    assert third.cache.hits > 0


@pytest.mark.parametrize("bad, message", [
    ("duplicate", "benchmark 'test_declares' request 'all': the key is declared twice"),
    ("layer", "benchmark 'test_declares' request 'odd': model '.*' has no layer 'nope'"),
    ("transform", "request 'odd': perturbation 'toy_jitter' has target 'input'"),
])
def test_bad_requests_are_one_line_user_errors(tmp_path, toy, bad, message):
    from simbench.errors import UserError

    with pytest.raises(UserError, match=message):
        _run(tmp_path, toy, f"{{name='test_declares', bad='{bad}'}}", tmp_path / "cache")


def test_requests_that_raise_or_a_failing_metric_fail_that_benchmark_only(tmp_path, toy):
    cache = tmp_path / "cache"
    _, run = _run(tmp_path, toy, "{name='test_declares', bad='raise'}, {name='test_declares', label='boom', "
                  "metric='toy_raises'}, {name='functional_agreement'}", cache)
    frame = run.results()
    bench = frame[frame["kind"] == "benchmark"]
    raised = bench[bench["benchmark"] == "test_declares"]
    assert list(raised["status"]) == ["failed"] and "requests blew up" in raised["error"].iloc[0]
    boom = bench[bench["benchmark"] == "boom"]
    assert list(boom["status"]) == ["failed"] and boom["error"].iloc[0]
    cell = frame[(frame["kind"] == "matrix") & (frame["benchmark"] == "boom")]
    assert list(cell["status"]) == ["failed"] and cell["error"].iloc[0] in boom["error"].iloc[0]
    assert (bench[bench["benchmark"] == "functional_agreement"]["status"] == "ok").any()


@pytest.mark.slow
def test_declared_matrices_run_as_dask_tasks_with_the_local_results(tmp_path):
    """A ``matrix`` task on a 2-worker LocalCluster: the client materialises the sources, a worker runs the
    metric; the records equal a local run's (1e-12)."""
    pytest.importorskip("distributed")
    import logging

    import numpy as np
    from distributed import LocalCluster

    from simbench.executors import DaskExecutor
    from simbench.runner import Runner
    from simbench.suite import load_suite
    from tests.conftest import TOY_PLUGINS, TOY_SUITE

    registry = build_registry(plugin_files=[str(TOY_PLUGINS)])
    overrides = ["benchmarks=[{name='layer_map', metric='toy_gram_corr', reference='clean'}]"]

    def run(name, executor=None):
        suite = load_suite(TOY_SUITE, registry, overrides)
        runner = Runner(suite, registry, tmp_path / name, cache_dir=tmp_path / f"cache-{name}", quiet=True,
                        executor=executor)
        return runner, runner.run().results()

    _, local = run("local")
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                      silence_logs=logging.ERROR) as cluster:
        runner, remote = run("dask", DaskExecutor(scheduler=cluster.scheduler_address))
    assert sum(k.startswith("matrix/") for k in runner._task_seconds) == len(runner.state.matrices) > 0
    a = local[local["kind"] == "benchmark"].reset_index(drop=True)
    b = remote[remote["kind"] == "benchmark"].reset_index(drop=True)
    assert len(a) == len(b) and (a["status"] == "ok").all()
    assert (a["statistic"] == b["statistic"]).all()
    x, y = a["value"].to_numpy(float), b["value"].to_numpy(float)
    assert np.array_equal(np.isnan(x), np.isnan(y)) and np.nanmax(np.abs(x - y)) <= 1e-12


def test_a_resumed_run_keeps_the_declared_matrices_rows(tmp_path, toy):
    cache = tmp_path / "cache"
    _, run = _run(tmp_path, toy, "{name='test_declares'}", cache)
    first = run.results()
    again, run = _run(tmp_path, toy, "{name='test_declares'}", cache)
    assert again.computed == 0
    second = run.results()
    assert list(second["kind"]) == list(first["kind"]) and (second["kind"] == "matrix").sum() == 1


def test_transformed_sources_and_row_subsets(tmp_path, toy):
    _, run = _run(tmp_path, toy, "{name='test_declares', bad='transformed'}", tmp_path / "cache")
    frame = run.results()
    assert (frame[frame["kind"] == "benchmark"]["status"] == "ok").all(), frame[frame["kind"] == "benchmark"]["error"]
    cells = frame[frame["kind"] == "matrix"]
    assert list(cells["group"]) == ["all", "moved"] and (cells["status"] == "ok").all()
