"""docs/adding-a-benchmark.md: every code block runs, in order, and does what the page says."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "adding-a-benchmark.md"


@pytest.mark.slow
def test_adding_a_benchmark_page_runs(tmp_path, monkeypatch):
    import simbench

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SIMBENCH_CACHE_DIR", str(tmp_path / "cache"))
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    assert len(blocks) == 3
    namespace: dict = {}
    try:
        for block in blocks:
            exec(compile(block, str(DOC), "exec"), namespace)  # noqa: S102 - our own documentation
    finally:
        simbench.api.unregister_all()
    gap = namespace["gap"]
    assert set(gap["metric"]) == {"linear_cka", "procrustes"}
    assert {"clean", "mnist_c/fog"} <= set(gap.columns)
    # quick's zoo has two architectures: both metrics see the factor on clean probes
    assert (gap["clean"] > 0).all()
