"""simbench: a plugin-based benchmarking suite for neural-network similarity metrics.

Importing this package is cheap (no torch); plugin authors need only::

    import simbench

    @dataclass(frozen=True)
    class MyMetric(simbench.Metric):
        name = "my_metric"
        def __call__(self, a, b): ...

    @simbench.hookimpl
    def register_metrics(register):
        register(MyMetric)
"""

from __future__ import annotations

from .errors import ParamError
from .hookspecs import hookimpl
from .types import (
    Benchmark,
    BenchmarkContext,
    Dataset,
    DataSplits,
    Metric,
    ModelSpec,
    Perturbation,
    PerturbContext,
    ProbeSet,
    Record,
    RunContext,
    RunView,
    Split,
    Zoo,
)

__version__ = "0.1.0"

__all__ = [
    "Benchmark",
    "BenchmarkContext",
    "DataSplits",
    "Dataset",
    "Metric",
    "ModelSpec",
    "ParamError",
    "PerturbContext",
    "Perturbation",
    "ProbeSet",
    "Record",
    "RunContext",
    "RunView",
    "Split",
    "Zoo",
    "__version__",
    "hookimpl",
]
