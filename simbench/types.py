"""The plugin object types and the result records.

Every plugin object is a *frozen dataclass* whose fields are its parameters:
the field annotations (with optional ``Annotated[..., Field(ge=1)]``
constraints) are the parameter schema that suite files are validated against
(see :mod:`simbench.params`).  Facts that describe the plugin rather than
configure it (name, orientation, invariances, ...) are ``ClassVar``s, so a
listing never has to instantiate or import anything heavy.

This module must not import torch: ``simbench --help`` and ``simbench list``
stay fast.  Tensor types appear in annotations only.

Why one module of ~650 lines: it is the whole surface a plugin author
programs against, read top to bottom in one place (``simbench/__init__``
re-exports it): the base class of every plugin kind with its documented
methods, the data, model and probe-set types they exchange, the records and
tables benchmarks produce, the contexts the runner hands to plugins and the
matrix requests (the store view they read is :class:`simbench.view.StoreView`).
Most of its length is those
docstrings; it holds no logic beyond small defaults and checks, so a split
would only scatter the contract over several files.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, runtime_checkable  # noqa: F401

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from .view import StoreView

#: Invariances a metric may declare.  The conformance kit
#: (:mod:`simbench.testing`) knows how to check each of them.
INVARIANCES: frozenset[str] = frozenset(
    {
        "orthogonal",  # X -> X Q, Q orthogonal
        "isotropic_scaling",  # X -> c X, c > 0
        "permutation",  # permute units (columns)
        "translation",  # X -> X + 1 b^T
        "invertible_linear",  # X -> X A, A invertible
        "weight_permutation",  # permute hidden units of a network
        "weight_positive_scaling",  # positive diagonal rescaling through (Leaky)ReLU
    }
)


@dataclass(frozen=True)
class Plugin:
    """Base class of every plugin object.

    Subclasses set ``name`` (a ClassVar) and declare their parameters as
    dataclass fields with defaults.  ``__post_init__`` may raise
    ``ValueError`` for cross-parameter checks; the message reaches the user as
    a one-line suite error.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    #: bump when the plugin's computation changes; part of every cache key
    version: ClassVar[str] = "1"
    #: importable modules the plugin needs beyond simbench's own dependencies (e.g. ``("torchattacks",)``):
    #: ``validate`` and ``run`` refuse a suite that uses the plugin while one is missing, before any training,
    #: in one line naming the plugin, the module and the pip command (:mod:`simbench.requirements`)
    requires: ClassVar[tuple[str, ...]] = ()

    def params(self) -> dict[str, Any]:
        """The configured parameters as a plain dict (for hashing and records)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


# --------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Metric(Plugin):
    """A representational similarity measure.

    Activation metrics (``kind = "activation"``) compare two ``Tensor[n, d]``
    representations of the same ``n`` probe inputs.  Weight metrics
    (``kind = "weight"``) compare two models' ordered dense weight matrices
    (each ``Tensor[in, out]``, input layer first) and need no probe data.

    Implement ``__call__`` for one pair; override ``pairwise`` when all pairs
    can be computed at once (the runner always calls ``pairwise``).  If
    ``needs_inputs`` is true, both receive ``inputs=Tensor[n, d0]``, the
    flattened probe inputs.
    """

    kind: ClassVar[Literal["activation", "weight"]] = "activation"
    higher_is_more_similar: ClassVar[bool] = True
    symmetric: ClassVar[bool] = True
    value_range: ClassVar[tuple[float, float]] = (0.0, 1.0)
    invariances: ClassVar[frozenset[str]] = frozenset()
    needs_inputs: ClassVar[bool] = False

    def __call__(self, a: Any, b: Any, **kwargs: Any) -> float:
        raise NotImplementedError(f"metric {self.name!r} does not implement __call__")

    def pairwise(self, reps: Sequence[Any], **kwargs: Any) -> torch.Tensor:
        """All pairs as an ``M x M`` float64 matrix; entry ``[i, j] = self(reps[i], reps[j])``.

        The default loops over pairs (the upper triangle only when the metric
        is symmetric).  Batched metrics override it.
        """
        import torch

        m = len(reps)
        out = torch.empty(m, m, dtype=torch.float64)
        for i in range(m):
            for j in range(i if self.symmetric else 0, m):
                value = float(self(reps[i], reps[j], **kwargs))
                out[i, j] = value
                if self.symmetric:
                    out[j, i] = value
        return out

    def memory_bytes(self, n: int, d: int, m: int) -> int | None:
        """Estimated peak memory (bytes) of ``pairwise`` on ``m`` representations ``[n, d]``; None = unknown."""
        return None

    def memory_limit_bytes(self) -> int | None:
        """The memory this metric may use (its ``max_memory_mb`` for the built-ins); None = no limit."""
        return None

    def max_probes(self, d: int = 1024, m: int = 2, limit_bytes: int | None = None) -> int | None:
        """The largest probe count whose :meth:`memory_bytes` fits ``limit_bytes`` (default: the metric's limit).

        None when there is no estimate or limit, or when 10^8 probes fit.
        """
        limit = self.memory_limit_bytes() if limit_bytes is None else limit_bytes
        if limit is None or self.memory_bytes(2, d, m) is None:
            return None
        lo, hi = 1, 10**8
        if (self.memory_bytes(hi, d, m) or 0) <= limit:
            return None
        while lo < hi:  # memory grows with n: bisect for the last n that fits
            mid = (lo + hi + 1) // 2
            if (self.memory_bytes(mid, d, m) or 0) <= limit:
                lo = mid
            else:
                hi = mid - 1
        return lo

    def memory_refusal(self, n: int, d: int = 1024, m: int = 2) -> str | None:
        """Why ``n`` probes cannot run within the metric's memory limit (with the estimate), or None if they can."""
        limit, need = self.memory_limit_bytes(), self.memory_bytes(n, d, m)
        if limit is None or need is None or need <= limit:
            return None
        return (
            f"needs about {need / 2**30:.2f} GiB at n = {n} probes (estimate for {m} models of width {d}), "
            f"over its limit of {limit / 2**30:.2f} GiB; it supports at most n = {self.max_probes(d, m)} probes "
            "-- lower probes.n or raise the metric's max_memory_mb"
        )

    @classmethod
    def to_similarity(cls, value: Any) -> Any:
        """Orient a value (scalar or tensor) so that higher = more similar."""
        return value if cls.higher_is_more_similar else -value


# --------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Split:
    """Inputs ``x`` (``Tensor[N, ...]``, float32, in [0, 1] for images) and targets ``y``."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return int(self.x.shape[0])


@dataclass(frozen=True)
class DataSplits:
    """What a dataset plugin returns: deterministic train / validation / test splits."""

    train: Split
    val: Split
    test: Split
    #: the name of a registered :class:`Task` (built-ins: ``"classification"``, ``"regression"``): how the
    #: runner compares two models' outputs (agreement) and scores each model against the targets
    task: str = "classification"
    num_classes: int = 0  # classification only; labels are 0..num_classes-1
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train.x.shape[1:])


@dataclass(frozen=True)
class Dataset(Plugin):
    """Loads named data.  ``load`` must be deterministic given ``ctx.seed``."""

    def load(self, ctx: RunContext) -> DataSplits:
        raise NotImplementedError(f"dataset {self.name!r} does not implement load")


@dataclass(frozen=True)
class Task(Plugin):
    """What the models are trained to do: how two models' outputs agree, and how each model scores.

    A dataset names its task in ``DataSplits.task``; the runner looks the
    name up among the registered tasks (configured with its defaults) and
    calls :meth:`agreement` once per probe set, on every model's outputs.
    The agreement matrix is what benchmarks read as ``view.agreement``; the
    per-model scores are recorded as rows of kind ``accuracy`` whose
    statistic is ``score_name`` and read as ``view.accuracy``.

    (The executor's unit of work is :class:`simbench.plan.PlanTask`.)
    """

    #: the statistic the per-model score is recorded as (``"accuracy"``, ``"r2"``)
    score_name: ClassVar[str] = "score"

    def agreement(self, outputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(M x M agreement, per-model score [M])``, both float64.

        ``outputs`` is ``[M, n, ...]`` (every model's outputs on the ``n``
        probes, float32), ``targets`` the probe set's targets ``[n, ...]``.
        ``agreement[i, j]`` is how alike models ``i`` and ``j`` behave
        (higher = more alike), ``score[i]`` how well model ``i`` does.
        """
        # registration refuses a Task that does not override this, so a run never gets here
        raise NotImplementedError(f"task {self.name!r} does not implement agreement")


# --------------------------------------------------------------------------
# Zoos and models
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelSpec:
    """One model of a zoo, identified by ``id`` and labelled by its factors.

    ``factors`` holds at least what distinguishes the models of the zoo
    (e.g. ``arch``, ``seed``, ``epoch``, ``strategy``); benchmarks group model
    pairs by which factor differs.  Values must be JSON scalars.

    ``held_out`` marks a model the zoo trains by its own recipe but that is
    *not* part of the zoo: the runner trains and caches it with its group,
    gives it to perturbations (:attr:`PerturbContext.held_out`, e.g. as an
    attack source that favours no zoo member), names it in the manifest, and
    never measures or analyses it.
    """

    id: str
    factors: Mapping[str, Any]
    held_out: bool = False


@runtime_checkable
class ReadableModel(Protocol):
    """What the runner needs from a zoo's ``torch.nn.Module``.

    ``forward(x)`` returns logits (or regression outputs).  ``read`` returns
    the named layers' activations flattened to ``Tensor[n, d]``.
    ``readable_layers`` lists every layer that can be read, input side first;
    ``default_layer`` is the one suites use unless they name another.
    ``dense_weights`` returns the dense weight matrices (each ``[in, out]``,
    input side first) that weight metrics compare.
    """

    readable_layers: tuple[str, ...]
    default_layer: str

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...

    def read(self, x: torch.Tensor, layers: Sequence[str]) -> dict[str, torch.Tensor]: ...

    def dense_weights(self) -> list[torch.Tensor]: ...


@dataclass(frozen=True)
class Zoo(Plugin):
    """A family of models that differ in labelled factors.

    ``specs`` is cheap (no torch, no training) so suites can be validated and
    zoo sizes listed.  ``build`` trains every model (the runner caches the
    resulting weights under a content hash); ``instantiate`` returns the
    untrained architecture of one spec, into which cached weights are loaded.
    """

    def specs(self) -> list[ModelSpec]:
        raise NotImplementedError(f"zoo {self.name!r} does not implement specs")

    def build(self, data: DataSplits, ctx: RunContext) -> dict[str, Any]:
        """Train all models; return ``{spec.id: module}`` in eval mode."""
        raise NotImplementedError(f"zoo {self.name!r} does not implement build")

    def instantiate(self, spec: ModelSpec, data: DataSplits) -> Any:
        """An untrained module with the architecture of ``spec``."""
        raise NotImplementedError(f"zoo {self.name!r} does not implement instantiate")

    def groups(self) -> list[list[str]]:
        """Model ids trained together (cheap, like ``specs``); every id in exactly one group.

        The runner builds and caches each group on its own: a group whose
        training fails is recorded and the run goes on with the others.
        Default: one group, the whole zoo (``build``).
        """
        return [[s.id for s in self.specs()]]

    def build_group(self, ids: Sequence[str], data: DataSplits, ctx: RunContext) -> dict[str, Any]:
        """Train the models ``ids`` (one of :meth:`groups`); default: ``build`` restricted to them."""
        built = self.build(data, ctx)
        return {i: built[i] for i in ids if i in built}


# --------------------------------------------------------------------------
# Perturbations
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class ProbeSet:
    """A named batch of probe inputs shared by all models.

    ``name`` is ``"clean"`` or ``"<perturbation>/<variant>"``.  When
    ``x_by_model`` is given (e.g. attacks crafted against each model), model
    ``m`` is probed on ``x_by_model[m]`` instead of ``x``.
    """

    name: str
    x: torch.Tensor
    y: torch.Tensor
    meta: Mapping[str, Any] = field(default_factory=dict)
    x_by_model: Mapping[str, torch.Tensor] | None = None

    def inputs_for(self, model_id: str) -> torch.Tensor:
        if self.x_by_model is not None and model_id in self.x_by_model:
            return self.x_by_model[model_id]
        return self.x


@dataclass(frozen=True)
class Perturbation(Plugin):
    """Turns a probe set into perturbed probe sets (``target = "input"``),
    models into variants (``target = "model"``), or activations into
    transformed activations (``target = "representation"``, for sanity
    checks).  Deterministic given ``ctx.seed``.
    """

    target: ClassVar[Literal["input", "model", "representation"]] = "input"

    def variants(self) -> list[str]:
        """Names of the probe sets / model variants this configuration produces (cheap)."""
        return [self.name]

    def probe_sets(self, clean: ProbeSet, ctx: PerturbContext) -> list[ProbeSet]:
        raise NotImplementedError(f"perturbation {self.name!r} does not perturb inputs")

    def perturb_models(
        self, models: Mapping[str, Any], specs: Sequence[ModelSpec], data: DataSplits, ctx: PerturbContext
    ) -> list[tuple[ModelSpec, Any]]:
        """New (spec, module) entries; each spec's factors should name its original."""
        raise NotImplementedError(f"perturbation {self.name!r} does not perturb models")

    def transform_representation(self, x: torch.Tensor, y: torch.Tensor, ctx: RunContext) -> torch.Tensor:
        """``target = "representation"``: a transformed copy of activations ``x`` (``[n, d]``, labels ``y``)."""
        raise NotImplementedError(f"perturbation {self.name!r} does not transform representations")

    def transform_weights(self, weights: Sequence[torch.Tensor], ctx: RunContext) -> list[torch.Tensor]:
        """``target = "representation"``, optional: a transformed copy of a model's dense weights (each
        ``[in, out]``, input side first), for a weights :class:`Source` with this transform."""
        raise NotImplementedError(f"perturbation {self.name!r} does not transform weights")


# --------------------------------------------------------------------------
# Benchmarks and records
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Record:
    """One measurement in the results store (long format, one number per row).

    Text fields name things (a metric label, a probe set, model ids, a layer
    name); numbers never go into them.  A number that *locates* the
    measurement -- a perturbation strength, a layer index, a histogram bin
    edge, an eigenvalue's rank -- goes into ``coords``, a mapping from a
    snake_case coordinate name to a float::

        Record(bench, "pdf", density, coords={"bin_low": 0.25, "bin_high": 0.30})
        Record(bench, "map", value, model_a="conv1", model_b="fc1", coords={"layer_a": 0, "layer_b": 5})

    The results store has one column per coordinate name, ``coord_<name>``
    (float64, NaN where a row does not have it), so reports read
    ``records["coord_strength"]`` and never parse strings (``docs/results.md``).
    """

    benchmark: str
    statistic: str
    value: float
    metric: str = ""
    probe_set: str = ""
    group: str = ""
    model_a: str = ""
    model_b: str = ""
    n: int | None = None
    status: Literal["ok", "failed"] = "ok"
    error: str = ""
    coords: Mapping[str, float] = field(default_factory=dict)

    # a Mapping field is not hashable; records are compared, never used as set members or dict keys
    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True)
class Table:
    """One leaderboard table: a pandas DataFrame plus what it shows."""

    key: str  # file-name friendly, e.g. "ranking"
    title: str
    frame: Any  # pandas.DataFrame
    caption: str = ""


@dataclass(frozen=True)
class Benchmark(Plugin):
    """Consumes the matrices the runner computed and returns records.

    ``tables`` and ``plots`` turn this benchmark's stored records (a pandas
    DataFrame with the columns of :class:`Record`) into leaderboard tables and
    PNG figures; they are classmethods because leaderboards are rendered from
    run directories alone, long after the run.
    """

    def requests(self, view: StoreView) -> Iterable[MatrixRequest]:
        """The extra matrices this benchmark reads besides the suite's (default: none).

        Called after the similarity stage with the store as it is then
        (specs, probe sets, layers, data, the suite's matrices); the runner
        computes, validates, caches and stores each request as the cell
        ``matrix/<benchmark label>/<key>``, and :meth:`evaluate` reads it with
        ``view.matrix(key)``.  A benchmark never runs a metric or a model itself.
        """
        return ()

    def evaluate(self, view: StoreView) -> Iterable[Record]:
        """This benchmark's records, read from the store view ``view`` (never computed there)."""
        raise NotImplementedError(f"benchmark {self.name!r} does not implement evaluate")

    @classmethod
    def tables(cls, records: Any) -> list[Table]:
        """Leaderboard tables; the first is the headline table.  Default: a pivot of every statistic."""
        frame = records.pivot_table(
            index=["metric", "probe_set", "group"], columns="statistic", values="value", aggfunc="first"
        ).reset_index()
        return [Table("results", f"{cls.name} results", frame)]

    @classmethod
    def summary(cls, records: Any) -> Any:
        """A short DataFrame for the end-of-run summary in the terminal (aim for 80 columns).

        Default: the headline table (the first of :meth:`tables`); the
        runner keeps the columns that fit, ``metric`` first and ``status``
        last.  Override to show, e.g., metric, r with its interval, rank
        interval and status only; everything else is in the leaderboard files.
        """
        tables = cls.tables(records)
        return tables[0].frame if tables else None

    @classmethod
    def plots(cls, records: Any, out_dir: Any, view: StoreView | None = None) -> list[Any]:
        """Write PNG figures into ``out_dir``; return their paths.  Default: none.

        ``view`` (when the leaderboard has the run directory) is the finished
        run's :class:`~simbench.view.StoreView` -- the same view ``evaluate``
        read during the run -- giving the whole run besides this benchmark's
        records: the stored similarity and agreement matrices
        (``view.similarity``, ``view.pairs``) and the model specs, e.g. for
        per-pair scatter plots.  The parameter may still be named ``run`` (as in
        the built-in benchmarks, until they are next edited): the leaderboard
        passes the view under whichever of the two names ``plots`` declares.
        """
        return []


def plots_view_parameter(cls: Any) -> str:
    """``"view"`` when ``cls.plots`` takes the finished run's store view (the only name it has), else ``""``."""
    import inspect

    return "view" if "view" in inspect.signature(cls.plots).parameters else ""


#: the probe-set label under which the runner stores weight metrics' matrices (probe-independent)
WEIGHTS_PROBE_SET = "weights"


def matrix_from_rows(rows: Any, ids: Sequence[str]) -> Any:
    """One matrix from per-pair rows (``model_a``, ``model_b``, ``value``, ``status``), as run
    directories of store format 1 kept it; ``None`` when there is no ``ok`` pair row.

    ``M x M`` float64 in ``ids`` order; a pair stored in one direction only
    (symmetric metrics, agreement) is mirrored, duplicates are averaged, and
    entries never stored (the diagonal, models not in ``ids``) are NaN.
    """
    import numpy as np

    order = {model: i for i, model in enumerate(ids)}
    ok = rows[rows["status"] == "ok"]
    i, j = ok["model_a"].map(order), ok["model_b"].map(order)
    keep = i.notna() & j.notna()
    if not keep.any():
        return None
    means = ok.assign(i=i, j=j)[keep].groupby(["i", "j"])["value"].mean()
    r = means.index.get_level_values("i").to_numpy(dtype=np.int64)
    c = means.index.get_level_values("j").to_numpy(dtype=np.int64)
    m = len(ids)
    values = np.full((m, m), np.nan)
    present = np.zeros((m, m), dtype=bool)
    values[r, c] = means.to_numpy(dtype=np.float64)
    present[r, c] = True
    mirror = present.T & ~present
    values[mirror] = values.T[mirror]
    return values


# --------------------------------------------------------------------------
# Contexts the runner hands to plugins
# --------------------------------------------------------------------------


class Progress(Protocol):
    """``advance = progress("Training mlp", total=64, unit="models")``; ``unit`` names what is counted."""

    def __call__(self, description: str, total: int | None = None, unit: str = "") -> Callable[[int], None]: ...


def _no_progress(description: str, total: int | None = None, unit: str = "") -> Callable[[int], None]:
    return lambda advance=1: None


def _no_log(message: str) -> None:
    return None


@dataclass(frozen=True)
class RunContext:
    """Seed, device, a progress-bar factory and the run's tensor cache.

    ``advance = ctx.progress("Training mlp", total=64); advance(1)`` drives a
    progress bar.  ``cache`` (a :class:`simbench.cache.TensorCache` or None)
    lets a plugin cache intermediate products of its own (e.g. a base network
    that several zoo members fine-tune); the runner already caches every
    stage's output.
    """

    seed: int = 0
    device: str = "cpu"
    progress: Callable[..., Callable[[int], None]] = _no_progress
    cache: Any = None
    #: ``ctx.log("epoch 3: loss 0.41, accuracy 0.93")`` prints a line in verbose mode (``simbench run -v``)
    log: Callable[[str], None] = _no_log
    verbose: bool = False


@dataclass(frozen=True)
class PerturbContext(RunContext):
    """Adds the trained models (for attacks) in zoo order, and the zoo's held-out models
    (:attr:`ModelSpec.held_out`: trained by the zoo's recipe, never analysed)."""

    models: Mapping[str, Any] = field(default_factory=dict)
    specs: Sequence[ModelSpec] = ()
    held_out: Mapping[str, Any] = field(default_factory=dict)
    held_out_specs: Sequence[ModelSpec] = ()
    data: DataSplits | None = None


@dataclass(frozen=True)
class Source:
    """One representation a :class:`MatrixRequest` compares.

    ``model`` is a model id, ``probe_set`` a probe set of the run (ignored for
    weights), ``layer`` a readable layer of that model (``"default"``: the
    suite's ``probes.layer``; :data:`WEIGHTS_PROBE_SET` (``"weights"``): the
    model's dense weight matrices).  Layers need not be shared by every model.
    ``transform`` names a registered ``target = "representation"``
    perturbation, configured with ``transform_params`` and applied by the
    runner as ``transform_representation(x, y, RunContext(seed=transform_seed))``
    (``y``: the probe labels) -- for a weights source as
    ``transform_weights(weights, RunContext(seed=transform_seed))`` on the
    whole list, since a function-preserving weight transform couples
    consecutive layers; the benchmark chooses the seed.  ``rows`` keeps
    a subset of the probe rows, applied after the transform.  ``dtype``
    (``"float32"`` or ``"float64"``; ``""``: as stored, float32 activations)
    casts the result (every weight matrix), last: a benchmark comparing a
    model with float64 transformed copies of it asks for the original in
    float64 too, so the metric computes every pair in one precision.  All
    fields are hashable so a request is a cache key.
    """

    model: str
    probe_set: str = ""
    layer: str = "default"
    transform: str = ""
    transform_params: tuple[tuple[str, Any], ...] = ()
    transform_seed: int = 0
    rows: tuple[int, ...] | None = None
    dtype: str = ""

    @property
    def is_weights(self) -> bool:
        return self.layer == WEIGHTS_PROBE_SET


@dataclass(frozen=True)
class MatrixRequest:
    """A matrix a benchmark declares up front: ``metric`` over ``sources`` (``K x K``, ``K = len(sources)``).

    ``key`` is unique within the benchmark and file-name friendly (1 to 200
    printable characters, no spaces; ``/`` allowed, as in probe-set names); ``metric`` is a metric label of the suite
    (its configured object, when ``metric_params`` is empty) or a registered
    metric name configured with ``metric_params``.  The stored matrix is the
    metric's raw ``pairwise`` output, validated like a similarity cell and
    *not* oriented: the benchmark orients it with the metric class's
    ``to_similarity`` when it needs "higher = more similar".  ``needs_inputs`` metrics get the first
    source's probe inputs (``rows`` applied).

    ``timing_repeats > 0`` makes a two-source request a *timed* one: after
    computing the 2 x 2 matrix the runner calls the metric's one-pair
    ``metric(a, b)`` on the same inputs once to warm up and ``timing_repeats``
    times timed, under the same failure capture (one cell time limit for all
    calls; CUDA synchronised around each), and stores the wall seconds of
    each timed call with the cell, read with :meth:`StoreView.matrix_seconds`.
    A timed request is always measured in the run (its timing is never taken
    from the cache) and, with a remote executor, on the worker that runs its
    task.
    """

    key: str
    metric: str
    sources: tuple[Source, ...]
    metric_params: tuple[tuple[str, Any], ...] = ()
    timing_repeats: int = 0
