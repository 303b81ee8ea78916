"""The Python API (docs/api.md): every code block of the page runs, in order, in an empty directory."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

import simbench
from simbench.errors import UserError
from tests.conftest import ROOT

API_DOC = ROOT / "docs" / "api.md"


@pytest.fixture(autouse=True)
def _forget_session_classes():
    yield
    simbench.api.unregister_all()


def doc_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", API_DOC.read_text(), re.S)


@pytest.mark.slow
def test_api_doc_examples_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SIMBENCH_CACHE_DIR", str(tmp_path / "cache"))
    blocks = doc_blocks()
    assert len(blocks) >= 4
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(API_DOC), "exec"), namespace)  # noqa: S102 - our own documentation
    res, again = namespace["res"], namespace["again"]
    assert res.suite == "quick-two-seeds" and again.path.name == "api-dict"
    assert set(namespace["board"]["metric"]) == {"linear_cka", "procrustes"}
    assert (tmp_path / "runs" / "api-demo" / "leaderboard" / "quick.json").exists()
    assert not (tmp_path / "leaderboards").exists()  # only `simbench publish` writes there
    gram = [r for r in (tmp_path / "runs").glob("quick-*/leaderboard/quick.md")]
    assert gram and "gram_cosine" in gram[0].read_text()


def test_register_metric_validates_and_replaces():
    @dataclass(frozen=True)
    class One(simbench.Metric):
        name = "api_test_metric"

        def __call__(self, a, b):
            return 1.0

    @dataclass(frozen=True)
    class Two(One):
        name = "api_test_metric"

    assert simbench.register_metric(One) is One
    simbench.register_metric(Two)  # same name: replaces, as re-running a notebook cell does
    reg = simbench.api.registry()
    assert reg.get("metric", "api_test_metric") is Two and reg.entry("metric", "api_test_metric").plugin == "session"
    with pytest.raises(UserError, match="simbench.Metric"):
        simbench.register_metric(int)

    @dataclass(frozen=True)
    class Z(simbench.Zoo):
        name = "api_test_zoo"

        def specs(self):
            return []

    with pytest.raises(UserError, match="simbench.Metric"):
        simbench.register_metric(Z)
    simbench.register(Z)
    assert simbench.api.registry().get("zoo", "api_test_zoo") is Z


def test_register_takes_every_plugin_kind_including_tasks():
    @dataclass(frozen=True)
    class Ranking(simbench.Task):
        name = "api_test_task"
        score_name = "top1"

        def agreement(self, outputs, targets):  # share of probes on which the top classes agree, and top-1 accuracy
            top = outputs.argmax(-1)
            return (top[:, None] == top[None]).double().mean(-1), (top == targets).double().mean(-1)

    assert simbench.register(Ranking) is Ranking
    reg = simbench.api.registry()
    assert reg.get("task", "api_test_task") is Ranking and reg.entry("task", "api_test_task").plugin == "session"
    with pytest.raises(UserError, match=r"simbench\.Dataset, simbench\.Task or simbench\.executors\.Executor"):
        simbench.register(int)  # every kind of simbench.kinds is registrable, executors included


def test_suite_argument_forms(tmp_path):
    quick = simbench.api.resolve_suite("quick")
    assert quick.name == "quick.toml" and quick.is_file()
    assert simbench.api.resolve_suite(str(quick)) == quick
    assert simbench.api.resolve_suite("no/such.toml").name == "such.toml"  # paths pass through
    with pytest.raises(UserError, match="did you mean 'quick'"):
        simbench.api.resolve_suite("quik")
    import tomllib

    doc = tomllib.loads(quick.read_text())
    a = simbench.api.load_suite(doc, {"zoo.seeds": [0, 1]})
    b = simbench.api.load_suite(doc, ["zoo.seeds=[0, 1]"])
    assert a.sha256 == b.sha256 and a.overrides == ("zoo.seeds=[0, 1]",)
    assert list(a.zoo.params["seeds"]) == [0, 1]
    with pytest.raises(UserError):
        simbench.api.load_suite(doc, {"zoo.seeds": object()})
