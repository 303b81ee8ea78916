"""The store as a benchmark reads it during a run: :class:`RunnerView`, the implementation of
:class:`simbench.types.StoreView` over a :class:`simbench.worker.Worker`'s state.

Read-only: every tensor it hands out is a copy, and it never creates a
similarity or agreement cell (the runner computes every one the suite names
before the benchmark stage).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .boundary import clone, clone_probe_set
from .cells import model_buffers
from .errors import MeasurementFailed, UserError
from .types import WEIGHTS_PROBE_SET, ProbeSet, Source

if TYPE_CHECKING:  # pragma: no cover
    from .worker import Worker


class RunnerView:
    """The runner's implementation of :class:`simbench.types.StoreView`: read-only, every tensor a copy.

    It never creates a similarity or agreement cell: the runner computes
    every one the suite names before the benchmark stage, and asking for one
    that is not there is an error in the runner, not a computation.
    ``benchmark`` is the label of the benchmark it serves (whose declared
    matrices :meth:`matrix` reads); ``None`` for the view ``requests`` gets.
    """

    def __init__(self, runner: Worker, benchmark: str | None = None) -> None:
        self._runner = runner
        self.benchmark = benchmark
        state = runner.state
        assert state.data is not None
        self.suite_name = runner.suite.name
        self.seed = runner.suite.seed
        self.device = runner.device
        self.specs = list(state.specs)
        self.data = state.data
        self.metrics = {use.label: use.obj for use in runner.suite.metrics}
        self.probe_sets = list(state.probe_sets)

    def _where(self, metric: str, probe_set: str) -> tuple[str, str]:
        use = self._runner.metric_use(metric)
        if use.obj.kind == "weight":
            return metric, WEIGHTS_PROBE_SET
        self._known_probe_set(probe_set)
        return metric, probe_set

    def _known_probe_set(self, name: str) -> None:
        state = self._runner.state
        if name in state.failed_probe_sets:
            raise MeasurementFailed(f"probe set {name!r} failed: {state.failed_probe_sets[name]}")
        if name not in state.probe_sets:
            raise UserError(f"unknown probe set {name!r}; this suite has: {', '.join(self.probe_sets)}")

    def similarity(self, metric: str, probe_set: str) -> Any:
        state = self._runner.state
        key = self._where(metric, probe_set)
        if key in state.failures:
            raise MeasurementFailed(state.failures[key])
        if key not in state.similarities:
            raise RuntimeError(f"similarity/{key[0]}/{key[1]} was not computed before the benchmark stage")
        return self._runner.metric_use(metric).obj.to_similarity(state.similarities[key].clone())

    def failure(self, metric: str, probe_set: str) -> str | None:
        try:
            key = self._where(metric, probe_set)
        except MeasurementFailed as exc:
            return str(exc)
        return self._runner.state.failures.get(key)

    def _agreement_state(self, probe_set: str, table: dict[str, Any]) -> Any:
        self._known_probe_set(probe_set)
        if probe_set not in table:
            raise RuntimeError(f"agreement/{probe_set} was not computed before the benchmark stage")
        return table[probe_set].clone()

    def agreement(self, probe_set: str) -> Any:
        return self._agreement_state(probe_set, self._runner.state.agreements)

    def accuracy(self, probe_set: str) -> Any:
        return self._agreement_state(probe_set, self._runner.state.accuracies)

    def probe_set(self, name: str) -> ProbeSet:
        self._known_probe_set(name)
        return clone_probe_set(self._runner.state.probe_sets[name])

    def outputs(self, probe_set: str) -> list[Any]:
        self._known_probe_set(probe_set)
        return clone(self._runner.representations(probe_set, None)[1])

    def representations(self, probe_set: str, layer: str | None = None) -> list[Any]:
        self._known_probe_set(probe_set)
        return clone(self._runner.representations(probe_set, layer)[0])

    def layers(self, model_id: str) -> tuple[str, ...]:
        return tuple(self._runner.model(model_id).readable_layers)

    def weights(self, model_id: str) -> list[Any]:
        return [w.detach().clone() for w in self._runner.model(model_id).dense_weights()]

    def buffers(self, model_id: str) -> dict[str, Any]:
        return model_buffers(self._runner.model(model_id))

    def representation(self, source: Source) -> Any:
        self._runner.check_source(source, f"representation({source!r})")
        found = self._runner.source_tensor(source)
        return clone(found)

    def matrix(self, key: str) -> Any:
        state = self._runner.state
        cell = (self.benchmark or "", key)
        if cell in state.matrix_failures:
            raise MeasurementFailed(state.matrix_failures[cell])
        if cell not in state.matrices:
            raise UserError(f"benchmark {self.benchmark!r} reads matrix {key!r}, which its requests() did not declare")
        return state.matrices[cell].clone()

    def matrix_failure(self, key: str) -> str | None:
        return self._runner.state.matrix_failures.get((self.benchmark or "", key))

    def matrix_metric(self, key: str) -> Any:
        found = self._runner.state.matrix_metrics.get((self.benchmark or "", key))
        if found is None:
            raise UserError(f"benchmark {self.benchmark!r} reads matrix {key!r}, which its requests() did not declare")
        return found

    def matrix_seconds(self, key: str) -> list[float] | None:
        self.matrix(key)  # a failed cell raises; an undeclared key is a one-line error
        found = self._runner.state.matrix_seconds.get((self.benchmark or "", key))
        return None if found is None else list(found)
