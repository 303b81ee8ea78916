"""Suite files: TOML, schema-versioned, validated before anything runs.

Every mistake becomes a :class:`SuiteError` naming the file, the key and
what was expected.  Plugin parameters are validated by each plugin's own
declared schema (its dataclass fields), so third-party plugins get the same
quality of errors as the built-ins.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import PluginError, SuiteError
from .registry import Registry

SCHEMA_VERSION = 1
TOP_KEYS = ("schema", "suite", "data", "zoo", "perturbations", "metrics", "benchmarks", "probes", "run")
SUITE_KEYS = {"name": str, "description": str, "extends": str}
PROBES_DEFAULTS: dict[str, Any] = {"n": 500, "layer": "default", "split": "test"}
RUN_DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "device": "auto",
    "cache_dir": "",
    # torch threads per process: 1 so parallel runs (and our metric worker) never oversubscribe the cores
    "threads": 1,
    # seconds one metric cell may take before it is recorded as timed out (0 = no limit)
    "cell_timeout": 1800.0,
    # where a metric cell runs: "thread" (this process, a worker thread), "process" (a worker process per cell,
    # killed at the time limit), "auto" (a process for metrics from --plugin files, a thread otherwise)
    "isolation": "auto",
    # refuse suites whose models + representations are estimated above this (GB)
    "max_size_gb": 32.0,
    "max_models": 10_000,
    # who runs the plan's tasks (a registered executor: "local" in this process, "dask"); not part of any result
    "executor": "local",
    # dask: an existing scheduler (tcp://host:8786; default $SIMBENCH_DASK_SCHEDULER, else a LocalCluster)
    "scheduler": "",
    # dask LocalCluster: worker processes (0 = one per core)
    "workers": 0,
}
#: the longest ``run.cell_timeout`` accepted: one week (seconds)
MAX_CELL_TIMEOUT = 7 * 24 * 3600.0
#: ``run.isolation``: how a metric cell is separated from the run (see simbench.isolation)
ISOLATION_MODES = ("auto", "thread", "process")
#: the most torch threads per process ``run.threads`` accepts (a fixed bound, so validation is the same on every machine)
MAX_THREADS = 1024
MAX_NAME_LENGTH = 64  # suite names and labels become file and directory names
MAX_DEPTH = 16  # tables/arrays nested deeper than this are refused (no RecursionError tracebacks)
DEVICES = ("auto", "cpu", "cuda")
SUITE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_TYPE_NAMES = {str: "a string", int: "an integer", bool: "a boolean", float: "a number", dict: "a table", list: "an array"}


@dataclass(frozen=True)
class PluginUse:
    """One plugin named by the suite, configured and validated."""

    kind: str
    name: str
    label: str  # unique within its section; defaults to name
    params: dict[str, Any]
    obj: Any
    key: str  # where it sits in the suite, e.g. "metrics[2]"


@dataclass(frozen=True)
class Suite:
    """A validated suite, ready for the runner."""

    path: Path
    sha256: str
    name: str
    description: str
    data: PluginUse
    zoo: PluginUse
    perturbations: tuple[PluginUse, ...]
    metrics: tuple[PluginUse, ...]
    benchmarks: tuple[PluginUse, ...]
    probes: dict[str, Any]
    run: dict[str, Any]
    raw: dict[str, Any] = field(repr=False, default_factory=dict)
    overrides: tuple[str, ...] = ()
    #: ``{path: sha256}`` of the dataset's ``data_files`` (part of ``sha256``)
    data_files: dict[str, str] = field(default_factory=dict)

    @property
    def seed(self) -> int:
        return int(self.run["seed"])


def _type_name(value: Any) -> str:
    for t, n in _TYPE_NAMES.items():
        if type(value) is t:
            return n
    return type(value).__name__


def _depth_error(value: Any, limit: int = MAX_DEPTH) -> str | None:
    """The dotted key of the first value nested deeper than ``limit``, or None (iterative: no recursion)."""
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    while stack:
        node, key, depth = stack.pop()
        if depth > limit:
            return key or "(top)"
        if isinstance(node, dict):
            stack.extend((v, f"{key}.{k}" if key else str(k), depth + 1) for k, v in node.items())
        elif isinstance(node, list):
            stack.extend((v, f"{key}.{i}" if key else str(i), depth + 1) for i, v in enumerate(node))
    return None


def _read_toml(path: Path, file_label: str) -> dict[str, Any]:
    if not path.is_file():
        raise SuiteError(file_label, "", "no such suite file")
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise SuiteError(file_label, "", f"not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise SuiteError(file_label, "", "not a UTF-8 text file") from None
    except RecursionError:
        raise SuiteError(file_label, "", f"nested too deeply; expected at most {MAX_DEPTH} levels") from None
    except OSError as exc:
        raise SuiteError(file_label, "", f"cannot read ({exc.strerror or exc})") from None
    deep = _depth_error(doc)
    if deep is not None:
        raise SuiteError(file_label, deep, f"nested too deeply; expected at most {MAX_DEPTH} levels")
    return doc


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge tables; arrays (including arrays of tables) are replaced."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _load_with_extends(path: Path, seen: tuple[Path, ...] = ()) -> tuple[dict[str, Any], list[bytes]]:
    label = str(path)
    resolved = path.resolve()
    if resolved in seen:
        raise SuiteError(label, "suite.extends", "circular 'extends' chain")
    doc = _read_toml(path, label)
    blobs = [path.read_bytes()]
    parent = doc.get("suite", {}).get("extends") if isinstance(doc.get("suite"), dict) else None
    if parent is None:
        return doc, blobs
    if not isinstance(parent, str):
        raise SuiteError(label, "suite.extends", f"expected a string (a path to another suite), got {_type_name(parent)}")
    parent_path = path.parent / parent
    if not parent_path.is_file():
        raise SuiteError(label, "suite.extends", f"no such suite file {parent_path}")
    base, base_blobs = _load_with_extends(parent_path, (*seen, resolved))
    merged = _merge(base, doc)
    merged["suite"].pop("extends", None)
    return merged, base_blobs + blobs


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"zoo.seeds=[0,1]"`` -> (["zoo", "seeds"], [0, 1]); the value is TOML."""
    if "=" not in text:
        raise SuiteError("--set", text, "expected KEY=VALUE, e.g. run.seed=1 or zoo.seeds=[0,1]")
    key, raw = text.split("=", 1)
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()  # bare words are strings: data.name=mnist
    except RecursionError:
        raise SuiteError("--set", text[:60], f"nested too deeply; expected at most {MAX_DEPTH} levels") from None
    keys = [p for p in key.strip().split(".") if p]
    if len(keys) > MAX_DEPTH or _depth_error(value, MAX_DEPTH - len(keys)) is not None:
        raise SuiteError("--set", text[:60], f"nested too deeply; expected at most {MAX_DEPTH} levels")
    return keys, value


def apply_override(doc: dict[str, Any], path: list[str], value: Any) -> None:
    """Set ``doc[path]`` in a suite document (``path`` from :func:`parse_override`); numeric parts index
    arrays (``metrics.1.k=5``).  Raises ``IndexError``/``ValueError``/``TypeError``/``AttributeError`` when the
    path does not fit the document."""
    node: Any = doc
    for part in path[:-1]:
        if isinstance(node, list):
            node = node[int(part)]
        else:
            node = node.setdefault(part, {})
    if isinstance(node, list):
        node[int(path[-1])] = value
    else:
        node[path[-1]] = value


def load_suite(path: str | Path, registry: Registry, overrides: Sequence[str] = ()) -> Suite:
    """Read, merge (``extends``), override (``--set``) and validate a suite file."""
    path = Path(path)
    label = str(path)
    doc, blobs = _load_with_extends(path)
    for text in overrides:
        keys, value = parse_override(text)
        try:
            apply_override(doc, keys, value)
        except (IndexError, ValueError, TypeError, AttributeError):
            raise SuiteError("--set", text, "does not name a key of the suite") from None
    data_table = doc.get("data") if isinstance(doc.get("data"), dict) else {}
    from .datastore import apply_env_defaults

    apply_env_defaults()  # $SIMBENCH_MNIST_DIR: the folder `simbench data mnist --from DIR` filled, when unset
    data_files = data_file_digests(data_table.get("data_files"), label)
    # the data files' content is part of the suite's identity: a zoo trained on one file never serves another
    digest = hashlib.sha256(
        b"\0".join(blobs) + "\0".join(overrides).encode()
        + "".join(f"\0{p}={h}" for p, h in data_files.items()).encode()
    ).hexdigest()
    suite = validate(doc, label, registry, digest, path, tuple(overrides))
    return dataclasses.replace(suite, data_files=data_files)


MISSING = "missing:"


def data_file_digests(spec: Any, file: str) -> dict[str, str]:
    """``{path: sha256}`` of every file a ``[data] data_files`` value names (paths or globs).

    A pattern that matches nothing maps to ``"missing:<key>"`` (so a suite
    whose data lives elsewhere can still be listed and loaded);
    :func:`check_data_files` turns that into a suite error, which
    ``validate`` and ``run`` (before training) call.
    """
    import glob
    import os

    from .cache import file_sha256

    if not spec:
        return {}
    items: list[tuple[str, Any]] = list(spec.items()) if isinstance(spec, dict) else [("", spec)]
    out: dict[str, str] = {}
    for split, patterns in items:
        key = f"data.data_files.{split}" if split else "data.data_files"
        for pattern in [patterns] if isinstance(patterns, str) else list(patterns or ()):
            if not isinstance(pattern, str):
                continue  # the dataset's own schema reports the type
            expanded = os.path.expandvars(os.path.expanduser(pattern))
            found = sorted(glob.glob(expanded)) if glob.has_magic(expanded) else (
                [expanded] if Path(expanded).is_file() else [])
            if not found:
                out[pattern] = MISSING + key
                continue
            for p in found:
                try:
                    out[p] = file_sha256(Path(p))
                except OSError as exc:
                    raise SuiteError(file, key, f"cannot read {p!r} ({exc.strerror or exc})") from None
    return out


def check_data_files(suite: Suite) -> None:
    """Raise a one-line :class:`SuiteError` for a ``data_files`` entry that names no file (naming the
    unset variable and ``simbench data mnist --from DIR`` where that is the fix)."""
    from .datastore import missing_files_message

    for pattern, digest in suite.data_files.items():
        if digest.startswith(MISSING):
            raise SuiteError(str(suite.path), digest[len(MISSING):], missing_files_message(pattern))


def _expect_table(doc: Mapping[str, Any], key: str, file: str, required: bool = True) -> dict[str, Any]:
    value = doc.get(key)
    if value is None:
        if required:
            raise SuiteError(file, key, f"missing; expected a [{key}] table")
        return {}
    if not isinstance(value, dict):
        raise SuiteError(file, key, f"expected a table ([{key}]), got {_type_name(value)}")
    return value


def _check_fields(table: Mapping[str, Any], spec: Mapping[str, Any], file: str, section: str) -> dict[str, Any]:
    out = dict(spec)
    for key, value in table.items():
        if key not in spec:
            raise SuiteError(file, f"{section}.{key}", f"unknown key; expected one of: {', '.join(spec)}")
        want = type(spec[key])
        if want is float and type(value) is int:
            value = float(value)  # 60 means 60.0 where a number is expected
        ok = isinstance(value, want) and not (want is int and isinstance(value, bool))
        if not ok:
            raise SuiteError(file, f"{section}.{key}", f"expected {_TYPE_NAMES[want]}, got {_type_name(value)} {value!r}")
        out[key] = value
    return out


def _plugin(kind: str, table: Any, key: str, file: str, registry: Registry) -> PluginUse:
    if not isinstance(table, dict):
        raise SuiteError(file, key, f"expected a table naming a {kind} plugin, got {_type_name(table)}")
    params = dict(table)
    name = params.pop("name", None)
    label = params.pop("label", None)
    if name is None:
        raise SuiteError(file, f"{key}.name", f"missing; expected the name of a registered {kind}")
    if not isinstance(name, str):
        raise SuiteError(file, f"{key}.name", f"expected a string, got {_type_name(name)}")
    if label is not None and not isinstance(label, str):
        raise SuiteError(file, f"{key}.label", f"expected a string, got {_type_name(label)}")
    for what, text in (("name", name), ("label", label)):
        if text is not None and len(text) > MAX_NAME_LENGTH:
            raise SuiteError(file, f"{key}.{what}", f"expected at most {MAX_NAME_LENGTH} characters, got {len(text)}")
    try:
        obj, bad_key, message = registry.configure(kind, name, params)
    except PluginError as exc:
        raise SuiteError(file, f"{key}.name", str(exc)) from None
    if obj is None:
        where = f"{key}.{bad_key}" if bad_key else key
        raise SuiteError(file, where, f"{message} [{kind} {name!r}]")
    return PluginUse(kind, name, label or name, obj.params(), obj, key)


def _plugin_list(kind: str, doc: Mapping[str, Any], key: str, file: str, registry: Registry) -> tuple[PluginUse, ...]:
    value = doc.get(key, [])
    if not isinstance(value, list):
        raise SuiteError(file, key, f"expected an array of tables ([[{key}]]), got {_type_name(value)}")
    uses = tuple(_plugin(kind, item, f"{key}[{i}]", file, registry) for i, item in enumerate(value))
    labels: dict[str, str] = {}
    for use in uses:
        if use.label in labels:
            raise SuiteError(
                file,
                f"{use.key}.label",
                f"{kind} label {use.label!r} is also used by {labels[use.label]}; give each entry a distinct label",
            )
        labels[use.label] = use.key
    return uses


def suite_model_count(zoo: PluginUse, perturbations: Sequence[PluginUse]) -> int:
    """The models a suite's matrices compare: the zoo's specs, and a copy per model perturbation (as preflight
    counts them); 2 when the zoo cannot list its specs here (the run reports that itself)."""
    try:
        specs = zoo.obj.specs()
        count = len(specs)
    except (Exception, SystemExit):  # noqa: BLE001 - a broken zoo is reported by the stage that calls it
        return 2
    return max(2, count * (1 + sum(1 for u in perturbations if getattr(u.obj, "target", "") == "model")))


def metric_memory_refusal(metric: Any, n: int, n_models: int, width: int | None) -> str | None:
    """Why ``metric``'s all-pairs matrix of ``n_models`` models of ``width`` features at ``n`` probes would exceed
    its memory limit (with the estimate), or None.

    ``width`` None means not known yet (before the models are instantiated): the estimate then uses width 1,
    so only a probe count that fits no width is refused.  Weight metrics do not depend on the probes.
    """
    if getattr(metric, "kind", "activation") == "weight":
        return None
    limit = metric.memory_limit_bytes()
    d, m = max(1, int(width or 1)), max(2, int(n_models))
    need = metric.memory_bytes(n, d, m)
    if limit is None or need is None or need <= limit:
        return None
    what = f"{m} models of width {d}" if width else f"{m} models, at any width"
    most = metric.max_probes(d, m)
    return (
        f"needs about {need / 2**30:.2f} GiB at n = {n} probes (estimate for {what}), over its limit of "
        f"{limit / 2**30:.2f} GiB; it supports at most n = {most} probes -- lower probes.n or raise the metric's "
        "max_memory_mb"
    )


def check_metric_memory(file: str, metrics: Sequence[PluginUse], n: int, n_models: int, width: int | None) -> None:
    """A :class:`SuiteError` naming the first metric whose estimate (:func:`metric_memory_refusal`) exceeds its
    ``max_memory_mb``.  Called when a suite is loaded (widths unknown) and again once the models' real
    width is known (``check_metric_memory(str(suite.path), suite.metrics, n, n_models, width)``)."""
    for use in metrics:
        refusal = metric_memory_refusal(use.obj, n, n_models, width)
        if refusal:
            raise SuiteError(file, "probes.n", f"metric {use.label!r} {refusal}")


def validate(
    doc: Mapping[str, Any],
    file: str,
    registry: Registry,
    sha256: str = "",
    path: Path | None = None,
    overrides: tuple[str, ...] = (),
) -> Suite:
    """Validate a parsed suite document; raise :class:`SuiteError` on the first problem."""
    for key in doc:
        if key not in TOP_KEYS:
            raise SuiteError(file, key, f"unknown key; expected one of: {', '.join(TOP_KEYS)}")
    schema = doc.get("schema")
    if schema is None:
        raise SuiteError(file, "schema", f"missing; expected schema = {SCHEMA_VERSION}")
    if type(schema) is not int or schema != SCHEMA_VERSION:
        raise SuiteError(file, "schema", f"expected {SCHEMA_VERSION} (the only schema this simbench reads), got {schema!r}")

    meta = _check_fields(_expect_table(doc, "suite", file), {"name": "", "description": "", "extends": ""}, file, "suite")
    if not meta["name"]:
        raise SuiteError(file, "suite.name", "missing; expected a name for the suite")
    if len(meta["name"]) > MAX_NAME_LENGTH:
        raise SuiteError(file, "suite.name", f"expected at most {MAX_NAME_LENGTH} characters, got {len(meta['name'])}")
    if not SUITE_NAME_RE.match(meta["name"]):
        raise SuiteError(file, "suite.name", f"expected letters, digits, '-', '_' or '.', got {meta['name']!r}")

    data = _plugin("dataset", _expect_table(doc, "data", file), "data", file, registry)
    zoo = _plugin("zoo", _expect_table(doc, "zoo", file), "zoo", file, registry)
    perturbations = _plugin_list("perturbation", doc, "perturbations", file, registry)
    metrics = _plugin_list("metric", doc, "metrics", file, registry)
    benchmarks = _plugin_list("benchmark", doc, "benchmarks", file, registry)
    if not benchmarks:
        raise SuiteError(file, "benchmarks", "missing; expected at least one [[benchmarks]] table")

    probes = _check_fields(_expect_table(doc, "probes", file, required=False), PROBES_DEFAULTS, file, "probes")
    if probes["n"] < 0:
        raise SuiteError(file, "probes.n", f"expected an integer >= 0 (0 = the whole split), got {probes['n']}")
    if probes["split"] not in ("test", "val"):
        raise SuiteError(file, "probes.split", f"expected 'test' or 'val', got {probes['split']!r}")
    if probes["n"]:  # refuse now, with the estimate, what would run out of memory mid-run
        # the widths are known only once models are instantiated (preflight): here only what fits no width
        check_metric_memory(file, metrics, probes["n"], suite_model_count(zoo, perturbations), None)
    run = _check_fields(_expect_table(doc, "run", file, required=False), RUN_DEFAULTS, file, "run")
    if run["device"] not in DEVICES and not re.fullmatch(r"cuda:[0-9]+", str(run["device"])):
        raise SuiteError(file, "run.device", f"expected one of {', '.join(DEVICES)} or cuda:N, got {run['device']!r}")
    if run["executor"] not in registry.names("executor"):
        from .registry import unknown_name_message

        raise SuiteError(file, "run.executor", unknown_name_message("executor", run["executor"],
                                                                    registry.names("executor")))
    if run["workers"] < 0:
        raise SuiteError(file, "run.workers", f"expected a number >= 0, got {run['workers']!r}")
    for key, low in (("threads", 1), ("cell_timeout", 0), ("max_size_gb", 0), ("max_models", 2)):
        if run[key] < low or run[key] != run[key]:
            raise SuiteError(file, f"run.{key}", f"expected a number >= {low}, got {run[key]!r}")
    if run["threads"] > MAX_THREADS:  # torch would try to start them all (and oversubscribe every core)
        raise SuiteError(file, "run.threads", f"expected at most {MAX_THREADS} threads per process, "
                         f"got {run['threads']!r}")

    # a time limit is waited on with OS timers that overflow near 9.2e9 s: inf would pass the check above and
    # then fail every metric cell with OverflowError, so bound it to something a run could actually use
    if run["cell_timeout"] > MAX_CELL_TIMEOUT:
        raise SuiteError(file, "run.cell_timeout", f"expected seconds between 0 (no limit) and {MAX_CELL_TIMEOUT:g} "
                         f"(one week), got {run['cell_timeout']!r}")
    if run["isolation"] not in ISOLATION_MODES:
        raise SuiteError(file, "run.isolation", f"expected one of {', '.join(repr(m) for m in ISOLATION_MODES)}, "
                         f"got {run['isolation']!r}")

    for use in perturbations:  # the runner applies input and model perturbations; nothing else may be listed
        if use.obj.target == "representation":
            raise SuiteError(file, use.key, f"perturbation {use.name!r} transforms representations, which only a "
                             "benchmark's declared matrices use (Source.transform); expected an input or model "
                             "perturbation here")
    variants: dict[str, str] = {}
    for use in perturbations:
        for variant in use.obj.variants():
            if variant in variants:
                raise SuiteError(file, use.key, f"produces probe set {variant!r} already produced by {variants[variant]}")
            variants[variant] = use.key

    return Suite(
        path=path or Path(file),
        sha256=sha256,
        name=meta["name"],
        description=meta["description"],
        data=data,
        zoo=zoo,
        perturbations=perturbations,
        metrics=metrics,
        benchmarks=benchmarks,
        probes=probes,
        run=run,
        raw=dict(doc),
        overrides=overrides,
    )
