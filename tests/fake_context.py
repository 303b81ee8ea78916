"""A ``simbench.BenchmarkContext`` over in-memory models, for benchmarks that read models directly.

Import as ``from fake_context import ModelsContext``.  It serves models, probe sets, outputs and
representations; the runner's precomputed matrices (similarity, agreement, accuracy) are not
there, and reading them fails the test, which is how the tests pin that a benchmark does not
depend on them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch

import simbench


class ModelsContext:
    """``models`` in ``specs`` order, ``probes`` (ProbeSets), ``data``; ``metric_classes`` for ``make_plugin``."""

    def __init__(self, models: Mapping[str, Any], specs: Sequence[simbench.ModelSpec],
                 probes: Iterable[simbench.ProbeSet], data: simbench.DataSplits,
                 metric_classes: Sequence[type] = ()) -> None:
        self.suite_name, self.seed, self.device = "test", 0, "cpu"
        self.models, self.specs, self.data = dict(models), list(specs), data
        self.metrics: dict[str, Any] = {}
        self._probes = {p.name: p for p in probes}
        self.probe_sets = list(self._probes)
        self._metric_classes = {m.name: m for m in metric_classes}
        self.calls: list[tuple[str, str]] = []  # (probe set, layer) of every representations() call

    def probe_set(self, name: str) -> simbench.ProbeSet:
        return self._probes[name]

    def outputs(self, probe_set: str) -> list[torch.Tensor]:
        x = self._probes[probe_set].x
        with torch.no_grad():
            return [self.models[s.id](x) for s in self.specs]

    def representations(self, probe_set: str, layer: str | None = None) -> list[torch.Tensor]:
        self.calls.append((probe_set, str(layer)))
        x = self._probes[probe_set].x
        with torch.no_grad():
            return [self.models[s.id].read(x, [layer])[layer] for s in self.specs]

    def make_plugin(self, kind: str, name: str, params: Mapping[str, Any] | None = None) -> Any:
        assert kind == "metric" and name in self._metric_classes, f"unexpected plugin request {kind}/{name}"
        return self._metric_classes[name](**dict(params or {}))

    def _not_here(self, what: str) -> Any:
        raise AssertionError(f"this benchmark should not read the runner's {what} matrices")

    def similarity(self, metric: str, probe_set: str) -> torch.Tensor:
        return self._not_here("similarity")

    def agreement(self, probe_set: str) -> torch.Tensor:
        return self._not_here("agreement")

    def accuracy(self, probe_set: str) -> torch.Tensor:
        return self._not_here("accuracy")

    def failure(self, metric: str, probe_set: str) -> str | None:
        return None

    def run_context(self) -> simbench.RunContext:
        return simbench.RunContext()
