"""Issue 23 item 3: one store view (``simbench.StoreView``) for benchmarks during a run and for the
leaderboard afterwards.  The view a benchmark reads during a run and the view the leaderboard builds
from the finished run directory must answer the suite's matrices identically; the old names (``RunView``,
``BenchmarkContext``, a ``plots`` parameter named ``run``) are gone.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

import simbench
from simbench import leaderboard
from simbench.errors import MeasurementFailed, PluginError, UserError
from simbench.runner import Runner
from simbench.suite import load_suite
from simbench.types import plots_view_parameter
from simbench.view import StoreView
from tests.conftest import TOY_PLUGINS, TOY_SUITE

#: a symmetric toy metric, an asymmetric built-in, a distance (oriented by negation), a weight metric
#: (stored once under "weights") and one that fails
METRICS = ("metrics=[{name='toy_gram_corr'}, {name='linear_regression_r2'}, {name='procrustes'}, "
           "{name='wcka'}, {name='toy_raises'}]")


def bits(a) -> bytes:
    return np.ascontiguousarray(np.asarray(a, dtype=np.float64)).view(np.uint64).tobytes()


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    """The view a benchmark reads during a toy run and the leaderboard's view of the finished run."""
    from simbench.registry import build_registry

    registry = build_registry(plugin_files=[str(TOY_PLUGINS)])
    suite = load_suite(TOY_SUITE, registry, [METRICS])
    runner = Runner(suite, registry, tmp_path_factory.mktemp("view") / "run",
                    cache_dir=tmp_path_factory.mktemp("cache"), quiet=True)
    run = runner.run()
    during = StoreView(runner, suite.benchmarks[0].label)
    after = leaderboard.run_view(run.results(), run.read_manifest(), registry, run)
    return during, after


def test_one_class_one_set_of_names():
    # one name: the old ones (RunView, BenchmarkContext, the runner's RunnerView) are gone
    assert simbench.StoreView is StoreView and "StoreView" in simbench.__all__
    assert not hasattr(simbench, "RunView") and not hasattr(simbench, "BenchmarkContext")
    from simbench import types, view

    assert not hasattr(view, "RunnerView") and not hasattr(types, "StoreView") and not hasattr(types, "RunView")


def test_the_same_view_answers_the_same_matrices_during_and_after_the_run(both):
    during, after = both
    assert type(during) is type(after) is StoreView
    assert [s.id for s in during.specs] == [s.id for s in after.specs]
    assert list(during.probe_sets) == list(after.probe_sets) and len(after.probe_sets) == 3
    assert (during.suite_name, during.seed) == (after.suite_name, after.seed) == ("toy", 0)
    compared = 0
    for probe_set in after.probe_sets:
        assert bits(during.agreement(probe_set)) == bits(after.agreement(probe_set)), probe_set
        assert bits(during.accuracy(probe_set)) == bits(after.accuracy(probe_set)), probe_set
        for metric in ("toy_gram_corr", "linear_regression_r2", "procrustes", "wcka"):
            a, b = during.similarity(metric, probe_set), after.similarity(metric, probe_set)
            assert a.shape == b.shape == (len(after.specs),) * 2
            assert bits(a) == bits(b), (metric, probe_set)
            assert during.failure(metric, probe_set) is None and after.failure(metric, probe_set) is None
            compared += 1
        # a failed cell fails the same way in both
        assert during.failure("toy_raises", probe_set) == after.failure("toy_raises", probe_set)
        assert "boom" in after.failure("toy_raises", probe_set)
        for view in (during, after):
            with pytest.raises(MeasurementFailed, match="boom"):
                view.similarity("toy_raises", probe_set)
        pd.testing.assert_frame_equal(during.pairs(probe_set), after.pairs(probe_set), check_exact=True)
    assert compared == 12
    # oriented: a distance is negated, a similarity is not, in both
    raw = after.stored_matrix("similarity", "procrustes", "clean")
    assert np.array_equal(after.similarity("procrustes", "clean").numpy(), -raw, equal_nan=True)
    raw = after.stored_matrix("similarity", "toy_gram_corr", "clean")
    assert np.array_equal(during.similarity("toy_gram_corr", "clean").numpy(), raw, equal_nan=True)
    # a weight metric is one matrix for every probe set
    assert bits(after.similarity("wcka", "clean")) == bits(after.similarity("wcka", after.probe_sets[-1]))


def test_a_copy_every_time(both):
    during, after = both
    for view in (during, after):
        first = view.similarity("toy_gram_corr", "clean")
        first.fill_(7.0)
        assert not (view.similarity("toy_gram_corr", "clean") == 7.0).all()


def test_what_a_run_directory_does_not_keep_is_a_one_line_error_after_the_run(both):
    during, after = both
    model = after.specs[0].id
    assert during.layers(model) and len(during.representations("clean")) == len(during.specs)
    assert after.frame is not None and after.manifest["suite"]["name"] == "toy" and during.frame is None
    for call in (lambda: after.representations("clean"), lambda: after.outputs("clean"),
                 lambda: after.probe_set("clean"), lambda: after.layers(model), lambda: after.weights(model),
                 lambda: after.matrix("anything")):
        with pytest.raises(UserError, match="read during a run only"):
            call()
    with pytest.raises(UserError, match="no similarity/no_such_metric matrix on probe set 'clean'"):
        after.similarity("no_such_metric", "clean")


def test_plots_take_the_view_as_view_and_no_other_name(tmp_path):
    from simbench.registry import build_registry

    @dataclass(frozen=True)
    class New(simbench.Benchmark):
        name = "new_plots"

        @classmethod
        def plots(cls, records, out_dir, view=None):
            return []

    @dataclass(frozen=True)
    class Old(simbench.Benchmark):
        name = "old_plots"

        @classmethod
        def plots(cls, records, out_dir, run=None):
            return []

    assert plots_view_parameter(simbench.Benchmark) == "view"
    assert plots_view_parameter(New) == "view" and plots_view_parameter(Old) == ""
    plugin = tmp_path / "new_name.py"
    plugin.write_text(textwrap.dedent("""
        from dataclasses import dataclass
        import simbench
        @dataclass(frozen=True)
        class New(simbench.Benchmark):
            name = "new_plots"
            def evaluate(self, view: simbench.StoreView):
                return []
            @classmethod
            def plots(cls, records, out_dir, view=None):
                return []
        @simbench.hookimpl
        def register_benchmarks(register):
            register(New)
    """))
    assert build_registry(plugin_files=[str(plugin)]).get("benchmark", "new_plots")
    old = tmp_path / "old_name.py"  # the parameter's old name is refused in one line naming the plugin
    old.write_text(plugin.read_text().replace("view=None", "run=None"))
    with pytest.raises(PluginError, match=r"old_name.*as a benchmark: plots must accept the store view"):
        build_registry(plugin_files=[str(old)])


def test_the_leaderboard_hands_plots_the_finished_runs_view(both, tmp_path, monkeypatch):
    """``plots`` gets the finished run's view from the leaderboard, answering like the run's own."""
    from simbench.registry import build_registry

    _, after = both
    run = after.store
    seen: dict[str, object] = {}

    @dataclass(frozen=True)
    class New(simbench.Benchmark):
        name = "functional_agreement"

        @classmethod
        def plots(cls, records, out_dir, view=None):
            seen["view"] = view
            return []

    registry = build_registry(plugin_files=[str(TOY_PLUGINS)])
    frame, manifest = run.results(), run.read_manifest()
    for cls, name in ((New, "view"),):
        monkeypatch.setattr(leaderboard, "_benchmark_class", lambda registry, name, cls=cls: cls)
        leaderboard._render_plots(run, frame, manifest, registry, tmp_path / name, "toy", None)
        view = seen[name]
        assert isinstance(view, StoreView) and view.store is run
        assert bits(view.similarity("toy_gram_corr", "clean")) == bits(after.similarity("toy_gram_corr", "clean"))
