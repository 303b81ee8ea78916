"""Tasks: the plugin kind that says how two models' outputs agree and how each model scores.

The built-ins ``classification`` and ``regression`` (``plugins/tasks.py``) hold the formulas the runner
used to hold as ``functional_agreement``; a dataset names its task in ``DataSplits.task`` and the runner
(and the kit's ``FakeStore``) resolve it in the registry.
"""

from __future__ import annotations

import textwrap

import pytest
import torch

import simbench
from simbench.errors import PluginError, UserError
from simbench.registry import build_registry
from simbench.runner import Runner
from simbench.suite import load_suite
from simbench.testing import FakeStore
from tests.conftest import TOY_PLUGINS, TOY_SUITE


@pytest.fixture(scope="module")
def tasks():
    registry = build_registry()
    return {name: registry.configure("task", name, {})[0] for name in ("classification", "regression")}


def _case(seed=0, m=4, n=50, c=3):
    g = torch.Generator().manual_seed(seed)
    outputs = torch.randn(m, n, c, generator=g)
    y = torch.randint(0, c, (n,), generator=g)
    return outputs, y, g


def test_the_builtin_tasks_are_registered_by_their_own_entry_point(registry):
    assert registry.names("task") == ["classification", "regression"]
    assert {e.plugin for e in registry.entries("task")} == {"builtin_tasks"}
    assert registry.get("task", "classification").score_name == "accuracy"
    assert registry.get("task", "regression").score_name == "r2"
    assert issubclass(registry.get("task", "regression"), simbench.Task)


def test_agreement_matrix_matches_a_direct_count(tasks):
    """(Moved from tests/test_runner.py, where it tested the core's functional_agreement.)"""
    outputs, y, g = _case()
    agreement, accuracy = tasks["classification"].agreement(outputs, y)
    preds = outputs.argmax(-1)
    for i in range(4):
        assert accuracy[i] == pytest.approx((preds[i] == y).float().mean().item())
        for j in range(4):
            assert agreement[i, j] == pytest.approx((preds[i] == preds[j]).float().mean().item())
    reg, r2 = tasks["regression"].agreement(outputs[..., :2], torch.randn(50, 2, generator=g))
    assert torch.allclose(torch.diag(reg), torch.ones(4, dtype=torch.float64))
    assert (reg <= 1 + 1e-9).all()


def test_classification_agreement_is_symmetric_with_unit_diagonal(tasks):
    outputs, y, _ = _case(seed=3, m=7, n=41, c=5)
    agreement, accuracy = tasks["classification"].agreement(outputs, y)
    assert agreement.dtype == torch.float64 and accuracy.dtype == torch.float64
    assert agreement.shape == (7, 7) and accuracy.shape == (7,)
    assert torch.equal(agreement, agreement.T)
    assert torch.equal(torch.diag(agreement), torch.ones(7, dtype=torch.float64))
    assert ((agreement >= 0) & (agreement <= 1)).all()


def test_classification_matches_an_explicit_double_loop(tasks):
    outputs = torch.tensor([[[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.1, 0.1, 0.8], [0.6, 0.3, 0.1]],
                            [[0.8, 0.1, 0.1], [0.6, 0.3, 0.1], [0.1, 0.2, 0.7], [0.1, 0.8, 0.1]],
                            [[0.1, 0.1, 0.8], [0.2, 0.7, 0.1], [0.3, 0.3, 0.4], [0.7, 0.2, 0.1]]])
    y = torch.tensor([0, 1, 2, 0])
    m, n, _ = outputs.shape
    preds = [[max(range(3), key=lambda c: float(outputs[a, k, c])) for k in range(n)] for a in range(m)]
    expected = [[sum(preds[a][k] == preds[b][k] for k in range(n)) / n for b in range(m)] for a in range(m)]
    score = [sum(preds[a][k] == int(y[k]) for k in range(n)) / n for a in range(m)]
    agreement, accuracy = tasks["classification"].agreement(outputs, y)
    assert agreement.tolist() == expected and accuracy.tolist() == score  # quarters: exact in float64
    assert expected[0][1] == 0.5 and score == [1.0, 0.5, 0.75]  # the case is not degenerate


def test_regression_matches_an_explicit_double_loop(tasks):
    g = torch.Generator().manual_seed(7)
    m, n, t = 3, 6, 2
    outputs = torch.randn(m, n, t, generator=g)
    y = torch.randn(n, t, generator=g, dtype=torch.float64)
    o = outputs.double()
    var = [sum((float(y[k, c]) - float(y[:, c].mean())) ** 2 for k in range(n)) / n for c in range(t)]
    expected = [[1 - sum(sum((float(o[a, k, c]) - float(o[b, k, c])) ** 2 for k in range(n)) / n / var[c]
                         for c in range(t)) / t for b in range(m)] for a in range(m)]
    r2 = [sum(1 - sum((float(o[a, k, c]) - float(y[k, c])) ** 2 for k in range(n)) / n / var[c]
              for c in range(t)) / t for a in range(m)]
    agreement, score = tasks["regression"].agreement(outputs, y)
    torch.testing.assert_close(agreement, torch.tensor(expected, dtype=torch.float64), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(score, torch.tensor(r2, dtype=torch.float64), rtol=1e-12, atol=1e-12)
    assert torch.allclose(agreement, agreement.T, rtol=0, atol=1e-12)
    # a single target given as a vector [n] is one target
    single, single_r2 = tasks["regression"].agreement(outputs[..., :1], y[:, 0])
    ref, ref_r2 = tasks["regression"].agreement(outputs[..., :1], y[:, :1])
    assert torch.equal(single, ref) and torch.equal(single_r2, ref_r2)


def test_a_task_is_validated_when_registered(tmp_path):
    bad = tmp_path / "bad_task.py"
    bad.write_text(textwrap.dedent('''
        from dataclasses import dataclass
        import simbench
        @dataclass(frozen=True)
        class T(simbench.Task):
            name = "odd_task"
            score_name = "Not Snake"
        @simbench.hookimpl
        def register_tasks(register):
            register(T)
    '''))
    with pytest.raises(PluginError, match="score_name"):
        build_registry(plugin_files=[str(bad)])
    wrong = tmp_path / "wrong_base.py"
    wrong.write_text(textwrap.dedent('''
        from dataclasses import dataclass
        import simbench
        @dataclass(frozen=True)
        class T(simbench.Metric):
            name = "metric_as_task"
        @simbench.hookimpl
        def register_tasks(register):
            register(T)
    '''))
    with pytest.raises(PluginError, match="subclass of simbench.Task"):
        build_registry(plugin_files=[str(wrong)])
    empty = tmp_path / "no_agreement.py"
    empty.write_text(textwrap.dedent('''
        from dataclasses import dataclass
        import simbench
        @dataclass(frozen=True)
        class T(simbench.Task):
            name = "no_agreement"
            score_name = "accuracy"
        @simbench.hookimpl
        def register_tasks(register):
            register(T)
    '''))
    with pytest.raises(PluginError, match="must implement agreement"):
        build_registry(plugin_files=[str(empty)])


# a third party's task and a dataset that names it, in one plugin file
SOFT = '''
from dataclasses import dataclass
import simbench


@dataclass(frozen=True)
class SoftAgreement(simbench.Task):
    """Agreement = expected agreement of the models' softmax predictions; score = mean top probability."""

    name = "soft_agreement"
    score_name = "mean_confidence"

    def agreement(self, outputs, targets):
        import torch

        p = torch.softmax(outputs.to(torch.float64), -1)  # [M, n, C]
        return torch.einsum("anc,bnc->ab", p, p) / p.shape[1], p.max(-1).values.mean(1)


@dataclass(frozen=True)
class SoftBlobs(simbench.Dataset):
    """toy_blobs' clusters, with the task as a parameter."""

    name = "soft_blobs"
    task: str = "soft_agreement"

    def load(self, ctx):
        import torch

        g = torch.Generator().manual_seed(ctx.seed)
        centres = torch.randn(3, 16, generator=g) * 2
        y = torch.arange(300) % 3
        x = centres[y] + torch.randn(300, 16, generator=g) * 1.5
        split = lambda s: simbench.Split(x[s], y[s])  # noqa: E731
        return simbench.DataSplits(split(slice(0, 180)), split(slice(180, 240)), split(slice(240, None)),
                                   task=self.task, num_classes=3)


@simbench.hookimpl
def register_tasks(register):
    register(SoftAgreement)


@simbench.hookimpl
def register_datasets(register):
    register(SoftBlobs)
'''


@pytest.fixture
def soft_plugin(tmp_path):
    path = tmp_path / "soft_task.py"
    path.write_text(SOFT)
    return path


def test_a_third_party_task_from_a_plugin_file_is_used_by_a_run(tmp_path, soft_plugin):
    registry = build_registry(plugin_files=[str(TOY_PLUGINS), str(soft_plugin)])
    assert registry.entry("task", "soft_agreement").plugin == "soft_task"
    suite = load_suite(TOY_SUITE, registry, ["data.name='soft_blobs'"])
    runner = Runner(suite, registry, tmp_path / "run", cache_dir=tmp_path / "cache", quiet=True)
    run = runner.run()
    assert runner.task.name == "soft_agreement"
    frame = run.results()
    scores = frame[frame["kind"] == "accuracy"]
    assert len(scores) == 6 * 3 and set(scores["statistic"]) == {"mean_confidence"}
    task = registry.get("task", "soft_agreement")()
    ids = [m["id"] for m in run.read_manifest()["models"]]
    for probe_set in ("clean", "toy_jitter/0.5"):
        stored_ids, stored = run.matrix("agreement", "", probe_set)
        outputs = torch.stack(runner.representations(probe_set, None)[1])
        expected, confidence = task.agreement(outputs, runner.state.probe_sets[probe_set].y)
        assert stored_ids == ids and torch.equal(torch.from_numpy(stored), expected)
        rows = scores[scores["probe_set"] == probe_set].set_index("model_a").loc[ids, "value"]
        assert rows.tolist() == confidence.tolist()
        assert not torch.equal(torch.diag(expected), torch.ones(6, dtype=torch.float64))  # not classification's
    bench = frame[(frame["kind"] == "benchmark") & (frame["status"] == "failed")]
    assert bench.empty, bench["error"].tolist()


def test_an_unknown_task_is_one_line_before_any_training(tmp_path, soft_plugin, cli_here):
    proc = cli_here("-p", str(TOY_PLUGINS), "-p", str(soft_plugin), "run", str(TOY_SUITE),
                    "--set", "data.name='soft_blobs'", "--set", "data.task='classificaton'",
                    "--run-dir", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "cache"))
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    line = lines[0]
    assert "dataset 'soft_blobs'" in line and "unknown task 'classificaton'" in line
    assert "did you mean 'classification'" in line and "classification, regression, soft_agreement" in line
    assert not list((tmp_path / "cache").rglob("*.safetensors"))  # nothing was trained


def test_validate_names_an_unknown_task_too(tmp_path, soft_plugin, cli_here):
    proc = cli_here("-p", str(TOY_PLUGINS), "-p", str(soft_plugin), "validate", str(TOY_SUITE),
                    "--set", "data.name='soft_blobs'", "--set", "data.task='classificaton'")
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "unknown task 'classificaton'" in lines[0], proc.stderr
    ok = cli_here("-p", str(TOY_PLUGINS), "-p", str(soft_plugin), "validate", str(TOY_SUITE),
                  "--set", "data.name='soft_blobs'", "--set", "data.task='soft_agreement'")
    assert ok.returncode == 0, ok.stderr


def test_a_task_that_returns_the_wrong_shape_stops_the_run_in_one_line(tmp_path):
    from simbench.errors import StageFailed
    from simbench.cells import task_agreement

    class Flat(simbench.Task):
        name = "flat"

        def agreement(self, outputs, targets):
            return torch.zeros(outputs.shape[0]), torch.zeros(outputs.shape[0])

    class Raises(simbench.Task):
        name = "raises"

        def agreement(self, outputs, targets):
            raise SystemExit("no")

    outputs, y, _ = _case()
    with pytest.raises(StageFailed, match=r"task 'flat': agreement returned \(\(4,\), \(4,\)\); expected"):
        task_agreement(Flat(), outputs, y, 4)
    with pytest.raises(StageFailed, match="task 'raises': SystemExit"):
        task_agreement(Raises(), outputs, y, 4)


def test_the_fake_store_computes_agreement_with_the_task_plugin(tasks):
    for name in ("classification", "regression"):
        store = FakeStore(task=name)
        assert store.task.name == name
        outputs = torch.stack(store.outputs("clean"))
        agreement, score = tasks[name].agreement(outputs, store.probe_set("clean").y)
        assert torch.equal(store.agreement("clean"), agreement) and torch.equal(store.accuracy("clean"), score)


def test_the_fake_store_names_an_unknown_task():
    import dataclasses

    data = dataclasses.replace(FakeStore().data, task="ranking")
    with pytest.raises(UserError, match=r"unknown task 'ranking'.*available: classification, regression"):
        FakeStore(data=data)
