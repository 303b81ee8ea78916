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

and notebooks (``docs/api.md``)::

    simbench.register_metric(MyMetric)          # no entry point needed
    res = simbench.run("quick", overrides={"metrics": [{"name": "my_metric"}]})
    res.leaderboard                             # a pandas DataFrame
"""

from __future__ import annotations

from .api import Results, list_suites, load, register, register_metric, run, score
from .errors import MeasurementFailed, ParamError
from .hookspecs import hookimpl
from .types import (
    Benchmark,
    Dataset,
    DataSplits,
    MatrixRequest,
    Metric,
    ModelSpec,
    Perturbation,
    PerturbContext,
    ProbeSet,
    Record,
    RunContext,
    Source,
    Split,
    Table,
    Task,
    Zoo,
)
from .view import StoreView

from ._version import __version__

__all__ = [
    "Benchmark",
    "DataSplits",
    "Dataset",
    "MatrixRequest",
    "MeasurementFailed",
    "Metric",
    "ModelSpec",
    "ParamError",
    "PerturbContext",
    "Perturbation",
    "ProbeSet",
    "Record",
    "RunContext",
    "Results",
    "Source",
    "Split",
    "StoreView",
    "Table",
    "Task",
    "Zoo",
    "__version__",
    "hookimpl",
    "list_suites",
    "load",
    "register",
    "register_metric",
    "run",
    "score",
]
