"""The Python API, for notebooks and scripts (documented in ``docs/api.md``).

::

    import simbench

    res = simbench.run("quick", overrides={"zoo.seeds": [0, 1]}, run_dir="runs/demo")
    res.leaderboard            # the headline table (a pandas DataFrame)
    res.tables["timing"]       # every table by key
    res.records                # one row per measurement (docs/results.md)

    simbench.register_metric(MyMetric)   # no entry point, no plugin file
    simbench.list_suites()               # the suites shipped with the package

A suite is a shipped suite's name (``"quick"``), a path to a TOML file or a
dict with the same content.  Importing this module is cheap: torch, pandas
and the runner are imported inside the functions.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import hashlib
import importlib.util
import json
import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import UserError
from .hookspecs import hookimpl
from .kinds import KIND_SPECS, KindSpec, kind_of, kinds_text

SUITES_ENV = "SIMBENCH_SUITES_DIR"


# ----------------------------------------------------------------------------
# Shipped suites: found by name wherever simbench is installed
# ----------------------------------------------------------------------------


def shipped_suites_dir() -> Path | None:
    """The directory of the suites shipped with simbench (the package ``simbench_suites``).

    In a wheel they are package data; in an editable install of a checkout
    they are the checkout's ``suites/``.
    """
    spec = importlib.util.find_spec("simbench_suites")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            if Path(location).is_dir():
                return Path(location)
    checkout = Path(__file__).resolve().parents[1] / "suites"  # an editable install older than the package
    return checkout if checkout.is_dir() else None


def suite_dirs() -> list[Path]:
    """Where suite names are looked up, first match wins: ``$SIMBENCH_SUITES_DIR`` (``:``-separated), then shipped."""
    dirs = [Path(p) for p in os.environ.get(SUITES_ENV, "").split(os.pathsep) if p]
    shipped = shipped_suites_dir()
    return [d for d in dirs if d.is_dir()] + ([shipped] if shipped is not None else [])


def list_suites() -> list[dict[str, str]]:
    """Every suite findable by name: ``name``, ``path``, ``description`` (no plugin is loaded)."""
    rows: list[dict[str, str]] = []
    seen: set[str] = set()
    for directory in suite_dirs():
        for path in sorted(directory.glob("*.toml")):
            try:
                meta = tomllib.loads(path.read_text(encoding="utf-8")).get("suite", {})
                name, description = str(meta.get("name", path.stem)), str(meta.get("description", ""))
            except (tomllib.TOMLDecodeError, OSError, UnicodeDecodeError, AttributeError) as exc:
                name, description = path.stem, f"(unreadable: {exc})"
            if name in seen:  # an earlier directory overrides a shipped suite of the same name
                continue
            seen.add(name)
            rows.append({"name": name, "path": str(path), "description": " ".join(description.split())})
    return rows


def shipped_suites() -> dict[str, Path]:
    """The suites shipped with simbench only (``[suite] name`` -> file), not ``$SIMBENCH_SUITES_DIR``'s:
    the names whose official boards ``publish`` guards."""
    directory = shipped_suites_dir()
    out: dict[str, Path] = {}
    for path in sorted(directory.glob("*.toml")) if directory is not None else []:
        try:
            meta = tomllib.loads(path.read_text(encoding="utf-8")).get("suite", {})
            name = str(meta.get("name", path.stem)) if isinstance(meta, dict) else path.stem
        except (tomllib.TOMLDecodeError, OSError, UnicodeDecodeError):
            name = path.stem
        out.setdefault(name, path)
    return out


def shadowed_shipped_suite(name: str, path: Path) -> Path | None:
    """The shipped suite file that a suite named ``name`` read from ``path`` poses as, or None.

    Not None when ``name`` is a shipped suite's and ``path`` is not that file's
    content (``$SIMBENCH_SUITES_DIR/quick.toml``, or any file saying
    ``name = "quick"``): ``run`` says so, ``publish`` refuses the official name.
    """
    shipped = shipped_suites().get(name)
    if shipped is None:
        return None
    try:
        same = Path(path).resolve() == shipped.resolve() or Path(path).read_bytes() == shipped.read_bytes()
    except OSError:
        same = False
    return None if same else shipped


def resolve_suite(suite: str | os.PathLike[str]) -> Path:
    """A suite argument as a file: an existing path, else a suite name (file stem or ``[suite] name``).

    Anything that looks like a path (a separator or ``.toml``) is returned
    as it is, so a missing file gets the suite loader's own one-line error.
    """
    path = Path(suite)
    text = str(suite)
    if path.is_file() or os.sep in text or "/" in text or text.endswith(".toml"):
        return path
    rows = list_suites()
    for row in rows:
        if row["name"] == text or Path(row["path"]).stem == text:
            return Path(row["path"])
    names = [r["name"] for r in rows]
    close = difflib.get_close_matches(text, names, n=3, cutoff=0.5)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise UserError(f"{text}: no such suite file or shipped suite{hint} "
                    f"(shipped: {', '.join(names) or 'none'}; see `simbench list suites`)")


# ----------------------------------------------------------------------------
# Registering plugin classes from a notebook
# ----------------------------------------------------------------------------


class _SessionPlugin:
    """Classes registered with :func:`register_metric` / :func:`register`, offered through the normal hooks.

    It implements every kind's hook (one per entry of :data:`simbench.kinds.KIND_SPECS`, made when the
    object is), each offering the session's classes of that kind.
    """

    __name__ = "session"

    def __init__(self) -> None:
        self.classes: dict[tuple[str, str], type] = {}
        for kind in KIND_SPECS:
            setattr(self, kind.hook, self._hook(kind))

    def _hook(self, kind: KindSpec) -> Any:
        def hook(register: Any) -> None:
            for (k, _), cls in self.classes.items():
                if k == kind.name:
                    register(cls)

        hook.__name__ = hook.__qualname__ = kind.hook
        return hookimpl(hook)


SESSION = _SessionPlugin()


def _kind_of(cls: Any) -> str:
    kind = kind_of(cls)
    if kind is None:
        raise UserError(f"{cls!r}: expected a subclass of {kinds_text()}")
    return kind.name


def register(cls: type) -> type:
    """Register a plugin class of any kind (metric, zoo, ..., executor) for this Python session.

    Registering a class whose name is already registered this way replaces
    it (re-running a notebook cell).  Returns ``cls``, so it works as a
    decorator.  The class is checked like any plugin's when a run starts.
    """
    SESSION.classes[(_kind_of(cls), str(getattr(cls, "name", "")))] = cls
    return cls


def register_metric(cls: type) -> type:
    """Register a metric class for this Python session, without an entry point or plugin file."""
    if _kind_of(cls) != "metric":
        raise UserError(f"{cls!r}: expected a subclass of simbench.Metric")
    return register(cls)


def unregister_all() -> None:
    """Forget every class registered with :func:`register` / :func:`register_metric`."""
    SESSION.classes.clear()


def registry(plugins: Sequence[str | os.PathLike[str]] = ()) -> Any:
    """A fresh registry: installed plugins, the session's classes and the given plugin files."""
    from .registry import build_registry

    extra = [SESSION] if SESSION.classes else []
    return build_registry(plugin_files=[str(p) for p in plugins], extra_plugins=extra)


# ----------------------------------------------------------------------------
# Running and loading
# ----------------------------------------------------------------------------


@dataclass
class Results:
    """A finished run: its directory, manifest, records and leaderboard tables."""

    path: Path
    manifest: dict[str, Any]
    records: Any  # pandas.DataFrame, the columns of docs/results.md
    tables: dict[str, Any] = field(default_factory=dict)  # table key -> pandas.DataFrame
    titles: dict[str, str] = field(default_factory=dict)  # table key -> title
    problems: list[str] = field(default_factory=list)  # benchmark reports that failed (one line each)

    @property
    def leaderboard(self) -> Any:
        """The headline table (the first table of the first benchmark), or an empty frame."""
        import pandas as pd

        return next(iter(self.tables.values()), pd.DataFrame())

    @property
    def suite(self) -> str:
        """The suite's name."""
        return str(self.manifest.get("suite", {}).get("name", ""))

    def write_leaderboard(self, out_dir: str | os.PathLike[str], plugins: Sequence[str] = ()) -> list[Path]:
        """Write ``<suite>.md|.csv|.json`` and plots into ``out_dir`` (as ``simbench leaderboard`` does)."""
        from . import leaderboard as lb

        return lb.render(self.path, Path(out_dir), registry(plugins))

    def matrix(self, kind: str, metric: str = "", probe_set: str = "clean") -> tuple[list[str], Any]:
        """``(model ids, M x M float64 ndarray)`` of one stored matrix: ``kind`` ``"similarity"`` (a
        metric's label; probe set ``"weights"`` for weight metrics) or ``"agreement"``; values as stored
        (see :meth:`simbench.results.RunDir.matrix`)."""
        from .results import RunDir

        return RunDir(self.path).matrix(kind, metric, probe_set)

    def _repr_html_(self) -> str:
        """Jupyter shows the suite, the run directory and the headline table."""
        import html

        head = f"<p><b>{html.escape(self.suite)}</b> — <code>{html.escape(str(self.path))}</code></p>"
        return head + self.leaderboard.head(30).to_html(index=False)

    def __repr__(self) -> str:
        return (f"Results(suite={self.suite!r}, path={str(self.path)!r}, records={len(self.records)}, "
                f"tables={list(self.tables)})")


def load(run_dir: str | os.PathLike[str], plugins: Sequence[str | os.PathLike[str]] = ()) -> Results:
    """The :class:`Results` of a finished run directory (nothing is recomputed)."""
    from .leaderboard import run_tables
    from .results import RunDir

    run = RunDir(run_dir)
    board = run_tables(run, registry(plugins))
    return _results(run.path, board, board.problems)


def _results(path: Path, board: Any, problems: list[str]) -> Results:
    """:class:`Results` from a run's tables as :func:`simbench.leaderboard.run_tables` built them."""
    tables = board.tables
    return Results(path, board.manifest, board.frame, {t.key: t.frame for t in tables},
                   {t.key: t.title for t in tables}, list(problems))


def _toml_value(value: Any) -> str:
    """A Python value as a TOML literal (for overrides given as a dict)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise UserError(f"override value {value!r}: expected a bool, number, string, list or dict")


def _override_texts(overrides: Mapping[str, Any] | Sequence[str]) -> list[str]:
    if isinstance(overrides, Mapping):
        return [f"{key}={_toml_value(value)}" for key, value in overrides.items()]
    if isinstance(overrides, str):
        return [overrides]
    return [str(o) for o in overrides]


def load_suite(suite: str | os.PathLike[str] | Mapping[str, Any], overrides: Mapping[str, Any] | Sequence[str] = (),
               plugins: Sequence[str | os.PathLike[str]] = (), reg: Any = None) -> Any:
    """A validated :class:`simbench.suite.Suite` from a name, a path or a dict (``--set``-style overrides)."""
    from . import suite as suite_mod

    reg = reg if reg is not None else registry(plugins)
    texts = _override_texts(overrides)
    if not isinstance(suite, Mapping):
        return suite_mod.load_suite(resolve_suite(suite), reg, texts)
    doc = copy.deepcopy(dict(suite))
    name = str(doc.get("suite", {}).get("name", "suite")) if isinstance(doc.get("suite"), Mapping) else "suite"
    label = f"<dict suite {name}>"
    for text in texts:
        keys, value = suite_mod.parse_override(text)
        try:
            suite_mod.apply_override(doc, keys, value)
        except (IndexError, ValueError, TypeError, AttributeError):
            raise UserError(f"overrides: {text}: does not name a key of the suite") from None
    data = doc.get("data") if isinstance(doc.get("data"), dict) else {}
    data_files = suite_mod.data_file_digests(data.get("data_files"), label)
    # the same content hashes the same however the dict was built; data files count by content, as for files
    digest = hashlib.sha256(json.dumps(suite, sort_keys=True, default=str).encode() + "\0".join(texts).encode()
                            + json.dumps(data_files, sort_keys=True).encode())
    loaded = suite_mod.validate(doc, label, reg, digest.hexdigest(), Path(f"{name}.toml"), tuple(texts))
    return dataclasses.replace(loaded, data_files=data_files)


def run(suite: str | os.PathLike[str] | Mapping[str, Any], overrides: Mapping[str, Any] | Sequence[str] = (),
        run_dir: str | os.PathLike[str] | None = None, *, plugins: Sequence[str | os.PathLike[str]] = (),
        cache_dir: str | os.PathLike[str] | None = None, use_cache: bool = True, quiet: bool = False,
        leaderboard_dir: str | os.PathLike[str] | None = None) -> Results:
    """Run a suite (a shipped name, a TOML path or a dict) and return its :class:`Results`.

    ``overrides`` are ``--set`` values, as a dict (``{"zoo.seeds": [0, 1]}``)
    or strings (``["zoo.seeds=[0,1]"]``).  The run directory defaults to
    ``runs/<suite>-<hash>`` under the current directory; rerunning resumes it.
    The leaderboard files go to ``<run_dir>/leaderboard`` unless
    ``leaderboard_dir`` says otherwise.

    Progress is shown as the run goes (a live display in a terminal or a
    Jupyter notebook, plain lines otherwise), from its first second;
    ``quiet=True`` prints nothing.
    """
    from .report import run_and_report
    from .runner import Runner, default_run_dir

    say = _progress_printer(quiet)
    say(f"simbench: loading plugins and suite {suite if not isinstance(suite, Mapping) else '(a dict)'}…")
    reg = registry(plugins)
    loaded = load_suite(suite, overrides, reg=reg)
    path = Path(run_dir) if run_dir is not None else default_run_dir(loaded)
    say(f"simbench: running suite {loaded.name} -> {path}")
    say("  Preparing the run (torch, device, plugin code versions)…")
    runner = Runner(loaded, reg, path, cache_dir=Path(cache_dir) if cache_dir else None, quiet=quiet,
                    use_cache=use_cache, console=say.console)
    done = run_and_report(runner, Path(leaderboard_dir) if leaderboard_dir else path / "leaderboard", say)
    return _results(done.run.path, done.tables, done.problems)


def _progress_printer(quiet: bool) -> Any:
    """``say(line)`` for :func:`run`: nothing when ``quiet``; rich in a terminal or a notebook (wrapped at
    words), whole plain lines otherwise.  ``say.console`` is the console the progress display uses."""
    from rich.console import Console

    console = Console()
    live = console.is_terminal or console.is_jupyter

    def say(text: str) -> None:
        if quiet:
            return
        if live:
            console.print(text, markup=False, highlight=False)
        else:
            print(text, flush=True)

    say.console = console  # type: ignore[attr-defined]
    return say


def score(metric: Any, bundle: Any, *, suite: Any = None, run_dir: str | os.PathLike[str] | None = None,
          plugins: Sequence[str | os.PathLike[str]] = (), cache_dir: str | os.PathLike[str] | None = None,
          device: str = "cpu", fresh: bool = False, leaderboard_dir: str | os.PathLike[str] | None = None,
          allow_changed_benchmark: bool = False) -> Results:
    """Rank a new metric against a benchmark bundle (``docs/bundles.md``) and return the :class:`Results`.

    ``metric``: a :class:`simbench.Metric` subclass or configured instance, a plugin file path (``.py``: every
    metric it registers), a registered metric's name, or a list of these.  ``bundle``: a bundle directory, a
    ``.tar``/``.tar.gz``/``.zip`` of one, ``hf://OWNER/NAME[@REVISION]`` or an opened
    :class:`simbench.bundle.Bundle`.  ``suite`` (a name, path or dict): refuse the bundle unless it is a run of
    it.  Only the new metric's matrices are computed; the published metrics' matrices, the agreement and
    accuracies are the bundle's, and the benchmarks run again with the new metric among them.  A bundle whose
    published numbers this simbench's benchmarks do not reproduce is refused unless ``allow_changed_benchmark``.
    """
    from .report import report_run
    from .scoring import score_bundle

    loaded = load_suite(suite, plugins=plugins) if suite is not None else None
    runner = score_bundle(metric, bundle, suite=loaded, out=run_dir, cache_dir=cache_dir, plugins=plugins,
                          device=device, fresh=fresh, strict=not allow_changed_benchmark,
                          extra_plugins=[SESSION] if SESSION.classes else [])
    result = runner.run_dir
    done = report_run(result, runner.registry,
                      Path(leaderboard_dir) if leaderboard_dir else result.path / "leaderboard")
    return _results(result.path, done.tables, done.problems)
