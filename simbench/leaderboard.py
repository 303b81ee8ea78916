"""Leaderboards, rendered from run directories only (never edited by hand).

Each benchmark plugin turns its own records into tables (and plots); this
module adds provenance and the core's own tables (failures, compute time)
and writes ``<name>.md``, ``<name>.csv`` (the headline table) and
``<name>.json`` (everything, numbers as numbers, with ``schema_version``;
see ``docs/results.md``); ``publish`` adds the site (``<name>.html``,
``index.html``, ``README.md``: :mod:`simbench.site`).

Three rules keep what is written honest and contained:

* everything goes under the output directory: names read from manifests are
  sanitised (:func:`safe_name`) and no path component below the output
  directory may be a symbolic link (:func:`_target`);
* a run with ``--set`` overrides is published as ``<suite>+<hash8>``, never
  under the suite's own name (:func:`published_name`);
* one benchmark's ``tables``/``plots`` raising is recorded as a one-line
  problem and the other benchmarks, suites and ``publish`` go on.
"""

from __future__ import annotations

import html
import json
import logging
import math
import os
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .boardtext import _fmt, md_text, plain_words
from .errors import PluginError, UserError, one_line
from .registry import Registry
from .results import RunDir
from .types import Benchmark, ModelSpec, RunView, Table

log = logging.getLogger("simbench.leaderboard")

#: Version of the leaderboard JSON layout (``docs/results.md``); bump it when a key changes meaning.
SCHEMA_VERSION = 1
#: ``index.html`` plus the figures its first screen loads (those not ``loading="lazy"``) must stay below this
#: many bytes (:func:`simbench.site.page_weight`; publish reports a page over it as a problem).
PAGE_BUDGET_BYTES = 2_000_000
_SAFE_RE = re.compile(r"[^A-Za-z0-9_.+-]+")


# ----------------------------------------------------------------------------
# Names, paths and text that came from a manifest: never trusted
# ----------------------------------------------------------------------------


def safe_name(name: Any, fallback: str = "suite") -> str:
    """A file-name stem from a manifest value: no separators, no leading dots, at most 100 characters."""
    text = _SAFE_RE.sub("_", str(name or "")).strip("._") or fallback
    return text[:100]


def _target(out: Path, *parts: str) -> Path:
    """``out/parts...`` after checking that no component below ``out`` is a symbolic link.

    ``out`` itself may be a link (the user chose it); below it simbench writes
    only real files and directories, so a planted link cannot redirect a write.
    """
    path = out
    for part in parts:
        if part in ("", ".", "..") or "/" in part or "\\" in part:
            raise UserError(f"{out}: refusing to write {part!r} (not a plain file name)")
        path = path / part
        if path.is_symlink():
            raise UserError(f"{path}: is a symbolic link; simbench does not write through links (remove it)")
    return path


def _write_text(out: Path, name: str, text: str) -> Path:
    path = _target(out, name)
    path.write_text(text, encoding="utf-8")
    return path


#: first characters that make a spreadsheet read a CSV cell as a formula (OWASP's list)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """A CSV cell a spreadsheet will not run: text starting with ``= + - @`` (or a tab, a carriage return)
    gets a leading ``'``; numbers, and text that reads as a plain number (``-0.5``), are kept."""
    if not isinstance(value, str) or not value.startswith(_FORMULA_START):
        return value
    try:
        float(value)
        return value
    except ValueError:
        return "'" + value


def csv_frame(frame: Any) -> Any:
    """``frame`` with every text cell and column name through :func:`csv_cell` (numeric columns untouched)."""
    out = frame.copy()
    for col in out.columns:
        if out[col].dtype == object or str(out[col].dtype) in ("string", "str"):
            out[col] = out[col].map(csv_cell)
    out.columns = [csv_cell(str(c)) for c in out.columns]
    return out


# ----------------------------------------------------------------------------
# Provenance and names
# ----------------------------------------------------------------------------


def _revision(manifest: Mapping[str, Any]) -> str:
    """simbench's own revision as the manifest records it (newer manifests), else the older ``git_revision``."""
    for key in ("simbench_revision", "simbench_git_revision"):
        value = manifest.get(key)
        if isinstance(value, Mapping):
            value = value.get("revision") or value.get("sha")
        if value:
            return str(value)
    prov = manifest.get("provenance")
    if isinstance(prov, Mapping) and prov.get("simbench_revision"):
        return str(prov["simbench_revision"])
    return str(manifest.get("git_revision") or "unknown")


def is_dirty(manifest: Mapping[str, Any]) -> bool:
    """Whether the run came from a source tree with uncommitted changes."""
    if manifest.get("dirty") is True or manifest.get("simbench_dirty") is True:
        return True
    return _revision(manifest).endswith("-dirty")


def provenance(manifest: dict[str, Any]) -> dict[str, Any]:
    """Where a run came from, read from whatever its manifest records (older manifests lack some keys)."""
    suite = manifest.get("suite", {}) if isinstance(manifest.get("suite"), Mapping) else {}
    data = manifest.get("data", {}) if isinstance(manifest.get("data"), Mapping) else {}
    probe_sets = manifest.get("probe_sets", {}) if isinstance(manifest.get("probe_sets"), Mapping) else {}
    return {
        "suite": suite.get("name"),
        "published_name": published_name(manifest),
        "suite_path": shown_suite_path(suite.get("path")),
        "description": suite.get("description", ""),
        "suite_sha256": suite.get("sha256"),
        "overrides": list(suite.get("overrides", []) or []),
        "dataset": dict(data),
        "data_fingerprint": manifest.get("data_fingerprint") or data.get("fingerprint"),
        "data_files": data_file_rows(suite),
        "zoo": manifest.get("zoo", {}),
        "n_models": manifest.get("n_models"),
        "probe_sets": {k: (v.get("n") if isinstance(v, Mapping) else v) for k, v in probe_sets.items()},
        "simbench_version": manifest.get("simbench_version"),
        "simbench_revision": _revision(manifest),
        "git_revision": manifest.get("git_revision"),
        "dirty": is_dirty(manifest),
        "device": manifest.get("device"),
        "seed": manifest.get("seed"),
        "finished": manifest.get("finished"),
        "held_out_models": [m.get("id") for m in manifest.get("held_out_models", []) or [] if isinstance(m, Mapping)],
        "invocations": run_times(manifest),
    }


def run_times(manifest: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Each finished invocation of the run: wall seconds (started to finished), executor, cache use
    and the seconds of each stage, as the runner recorded them."""
    from datetime import datetime

    out = []
    for inv in manifest.get("invocations", []) or []:
        if not isinstance(inv, Mapping) or not inv.get("finished") or not inv.get("started"):
            continue
        try:
            wall = (datetime.fromisoformat(str(inv["finished"])) - datetime.fromisoformat(str(inv["started"])))
            seconds = round(wall.total_seconds(), 1)
        except ValueError:
            seconds = None
        out.append({"wall_seconds": seconds, "executor": inv.get("executor"), "cache_hits": inv.get("cache_hits"),
                    "cache_misses": inv.get("cache_misses"), "stage_seconds": dict(inv.get("stage_seconds") or {})})
    return out


def _duration(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)):
        return "?"
    return f"{seconds / 60:.1f} min" if seconds >= 90 else f"{seconds:.0f} s"


def run_time_lines(prov: Mapping[str, Any]) -> list[str]:
    """Markdown lines: how long each invocation of the run took, stage by stage."""
    lines = []
    for k, inv in enumerate(prov.get("invocations") or [], start=1):
        stages = ", ".join(f"{md_text(name)} {_duration(sec)}" for name, sec in inv["stage_seconds"].items())
        cache = (f", cache hits {inv['cache_hits']} / misses {inv['cache_misses']}"
                 if inv.get("cache_hits") is not None else "")
        lines.append(f"- run time (invocation {k}, executor {md_text(inv.get('executor'))}{cache}): "
                     f"{_duration(inv['wall_seconds'])} end to end" + (f"; stages: {stages}" if stages else ""))
    return lines


def shown_suite_path(path: Any) -> str:
    """The suite file as a reader can find it: ``suites/<file>`` for a shipped suite, else the file name
    (the sha256 beside it identifies the content; the machine's directories mean nothing to a reader)."""
    if not path:
        return ""
    parts = Path(str(path)).parts
    if len(parts) >= 2 and parts[-2] in ("suites", "simbench_suites"):
        return f"suites/{parts[-1]}"
    return parts[-1]


def data_file_rows(suite: Mapping[str, Any]) -> list[tuple[str, int | None, str]]:
    """``(file name, size in bytes or None, sha256)`` of every data file a run's suite named.

    The size is the one the manifest recorded; for older manifests it is read
    from the file when it still exists *and* still has the recorded sha256.
    """
    import hashlib

    digests = suite.get("data_files") or {}
    sizes = suite.get("data_file_bytes") or {}
    rows = []
    if not isinstance(digests, Mapping):
        return rows
    for path, digest in sorted(digests.items()):
        size = sizes.get(path) if isinstance(sizes, Mapping) else None
        if size is None and os.path.isfile(path):
            h = hashlib.sha256()
            with open(path, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
            size = os.path.getsize(path) if h.hexdigest() == digest else None
        rows.append((os.path.basename(str(path)), size, str(digest)))
    return rows


def published_name(manifest: Mapping[str, Any]) -> str:
    """The suite's name, or ``<name>+<hash8>`` for a run with ``--set`` overrides (a different experiment)."""
    suite = manifest.get("suite", {}) if isinstance(manifest.get("suite"), Mapping) else {}
    # a suite name never holds '+' (the loader refuses it): one read from a manifest that does cannot pose
    # as an override variant "<suite>+<hash8>" of another suite
    name = safe_name(str(suite.get("name") or "").replace("+", "_"))
    if suite.get("overrides"):
        return f"{name}+{str(suite.get('sha256') or '0' * 8)[:8]}"
    return name


#: board names publish never gives a run: they are (or differ only in case from) the index files it writes
RESERVED_NAMES = ("README", "index", "claims")


def _data_file_order(spec: Any, recorded: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """A manifest's ``data_files`` (stored with sorted keys) in the order the suite loader hashed them:
    pattern by pattern as the suite lists them, each pattern's files sorted, a file counted at its first
    pattern (:func:`simbench.suite.data_file_digests`).  ``$VARS`` match anything: the publishing shell
    need not have the running shell's environment."""
    import fnmatch

    items = list(spec.items()) if isinstance(spec, dict) else [("", spec)]
    placed: dict[str, Any] = {}
    for _, patterns in items:
        for pattern in [patterns] if isinstance(patterns, str) else list(patterns or ()):
            if not isinstance(pattern, str):
                continue
            if pattern in recorded and str(recorded[pattern]).startswith("missing:"):
                placed.setdefault(pattern, recorded[pattern])
                continue
            wild = os.path.expanduser(re.sub(r"\$(\{[A-Za-z_][A-Za-z0-9_]*\}|[A-Za-z_][A-Za-z0-9_]*)", "*", pattern))
            exact = os.path.expandvars(os.path.expanduser(pattern))
            for path in sorted(recorded):
                if path not in placed and (path == exact or fnmatch.fnmatchcase(path, wild)):
                    placed[path] = recorded[path]
    placed.update({path: recorded[path] for path in sorted(recorded) if path not in placed})
    return list(placed.items())


def suite_gives_run(path: Path, manifest: Mapping[str, Any]) -> bool:
    """Whether the suite file ``path`` (with its ``extends`` chain), the run's ``--set`` overrides and its
    recorded data files hash to the suite sha256 the run recorded (the loader's formula,
    :func:`simbench.suite.load_suite`): the run was made from exactly this content and these overrides."""
    import hashlib

    from .suite import _load_with_extends, apply_override, parse_override

    info = manifest.get("suite") if isinstance(manifest.get("suite"), Mapping) else {}
    overrides = [str(o) for o in (info.get("overrides") or [])]
    recorded = info.get("data_files") if isinstance(info.get("data_files"), Mapping) else {}
    try:
        doc, blobs = _load_with_extends(Path(path))
        for text in overrides:
            keys, value = parse_override(text)
            apply_override(doc, keys, value)
    except Exception:  # noqa: BLE001 - unreadable, or overrides that no longer apply: not this suite
        return False
    data = doc.get("data") if isinstance(doc.get("data"), dict) else {}
    files = _data_file_order(data.get("data_files"), recorded)
    digest = hashlib.sha256(b"\0".join(blobs) + "\0".join(overrides).encode()
                            + "".join(f"\0{p}={h}" for p, h in files).encode()).hexdigest()
    return digest == info.get("sha256")


def _official_problem(run: Path, manifest: Mapping[str, Any], shipped: Mapping[str, Path]) -> str | None:
    """Why a run may not be published under the name :func:`published_name` gives it (None: it may).

    A shipped suite's name (or ``<shipped>+<hash8>``) only for a run of the shipped file itself, checked by
    content (:func:`suite_gives_run`), so a ``$SIMBENCH_SUITES_DIR/quick.toml`` or any file saying
    ``name = "quick"`` never takes the official board; a ``+<hash8>`` only when the hash follows from the
    suite file and the run's overrides (the file as recorded; when it is gone, the run's own cells must
    carry the manifest's hash).
    """
    info = manifest.get("suite") if isinstance(manifest.get("suite"), Mapping) else {}
    base = published_name({"suite": {"name": info.get("name")}})
    overrides = bool(info.get("overrides"))
    if base in shipped:
        if suite_gives_run(shipped[base], manifest):
            return None
        return (f"its suite {base!r} is not the shipped {shown_suite_path(shipped[base])} (content or overrides "
                f"differ from what the run recorded: another file of the same name, or the shipped file changed "
                f"since); publish it under another name with --rename {published_name(manifest)}=NEW")
    if not overrides:
        return None
    recorded = Path(str(info.get("path") or ""))
    if info.get("path") and recorded.is_file():
        ok = suite_gives_run(recorded, manifest)
    else:  # the file is gone: at least the run's cells must have been written under the manifest's hash
        ok = {str(p.get("suite_sha256")) for p in RunDir(run)._payloads()} == {str(info.get("sha256"))}
    if ok:
        return None
    return (f"its name {published_name(manifest)!r} does not follow from its suite file and --set overrides "
            "(the recorded sha256 differs); publish it under another name with --rename")


# ----------------------------------------------------------------------------
# Declared cuts: a run of a suite that `extends` a full grid, published under the full grid's name
# ----------------------------------------------------------------------------


def _suite_chain(path: Path) -> list[tuple[Path, str]]:
    """``(file, [suite] name)`` of a suite file and every file it ``extends``, the file itself first."""
    import tomllib

    chain: list[tuple[Path, str]] = []
    seen: set[Path] = set()
    current: Path | None = path
    while current is not None and current.is_file() and current.resolve() not in seen:
        seen.add(current.resolve())
        try:
            meta = tomllib.loads(current.read_text(encoding="utf-8")).get("suite", {})
        except (tomllib.TOMLDecodeError, OSError, UnicodeDecodeError):
            break  # publish refuses below; the loader gives the exact error when the suite is run
        meta = meta if isinstance(meta, dict) else {}
        chain.append((current, str(meta.get("name", current.stem))))
        parent = meta.get("extends")
        current = current.parent / parent if isinstance(parent, str) else None
    return chain


def header_comment(path: Path) -> list[str]:
    """The comment lines a suite file opens with (``# `` removed): where a cut says what it cuts and why."""
    lines: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        lines.append(line[2:] if line.startswith("# ") else line[1:])
    while lines and not lines[-1].strip():
        lines.pop()
    return lines


def _plain(value: Any) -> Any:
    """A value as its JSON reads back (tuples become lists), so a suite and a manifest compare equal."""
    return json.loads(json.dumps(value, default=str, sort_keys=True))


def _flat_suite(suite: Any) -> dict[str, Any]:
    """A validated suite (defaults filled in) as ``{dotted key: value}``; plugins are keyed by label."""
    out: dict[str, Any] = {}
    uses = [("data", suite.data), ("zoo", suite.zoo)]
    for section in ("perturbations", "metrics", "benchmarks"):
        uses += [(f"{section}.{use.label}", use) for use in getattr(suite, section)]
    for key, use in uses:
        out[key] = use.name
        out.update({f"{key}.{param}": _plain(value) for param, value in use.params.items()})
    for section in ("probes", "run"):
        out.update({f"{section}.{param}": _plain(value) for param, value in getattr(suite, section).items()})
    return out


def suite_cut(full: Any, run: Any) -> list[dict[str, Any]]:
    """Every key whose resolved value differs between the full suite and the cut that ran.

    One row ``{"key", "full", "run"}`` per key (``None`` where a side lacks
    it); a plugin present on one side only is one row (its name), not one per
    parameter.
    """
    a, b = _flat_suite(full), _flat_suite(run)
    rows = []
    for key in list(a) + [k for k in b if k not in a]:
        parent = key.rsplit(".", 1)[0] if "." in key else None
        if parent in (a.keys() ^ b.keys()):
            continue  # the whole plugin is missing on one side: its own row says so
        if a.get(key) != b.get(key) or (key in a) != (key in b):
            rows.append({"key": key, "full": a.get(key), "run": b.get(key)})
    return rows


def _run_mismatch(suite: Any, manifest: Mapping[str, Any]) -> str | None:
    """The first recorded setting of the run that the suite file no longer gives (None: they agree)."""
    def recorded(section: str) -> dict[str, Any]:
        table = manifest.get(section)
        return {label: (info or {}).get("params") for label, info in table.items()} if isinstance(table, Mapping) else {}

    def known(use: Any, then: Any) -> dict[str, Any]:
        """The use's parameters, less those the run could not record because the plugin gained them later
        and that are at their default (a parameter added since does not change what the run did)."""
        import dataclasses

        params = dict(use.params)
        if not isinstance(then, Mapping) or not dataclasses.is_dataclass(use.obj):
            return params
        defaults = {f.name: f.default for f in dataclasses.fields(use.obj) if f.default is not dataclasses.MISSING}
        return {k: v for k, v in params.items()
                if k in then or k not in defaults or _plain(v) != _plain(defaults[k])}

    run_metrics, run_benchmarks = recorded("metrics"), recorded("benchmarks")
    zoo_then = (manifest.get("zoo") or {}).get("params") if isinstance(manifest.get("zoo"), Mapping) else None
    checks = [
        ("data", _plain({"name": suite.data.name, "params": suite.data.params}), _plain(manifest.get("data"))),
        ("zoo", _plain({"name": suite.zoo.name, "params": known(suite.zoo, zoo_then)}), _plain(manifest.get("zoo"))),
        ("metrics", _plain({u.label: known(u, run_metrics.get(u.label)) for u in suite.metrics}),
         _plain(run_metrics)),
        ("benchmarks", _plain({u.label: known(u, run_benchmarks.get(u.label)) for u in suite.benchmarks}),
         _plain(run_benchmarks)),
        ("run.seed", suite.seed, manifest.get("seed")),
    ]
    probe_sets = manifest.get("probe_sets") if isinstance(manifest.get("probe_sets"), Mapping) else {}
    variants = sorted({"clean"} | {v for use in suite.perturbations for v in use.obj.variants()})
    checks.append(("perturbations (probe sets)", variants, sorted(probe_sets)))
    clean = probe_sets.get("clean")
    if suite.probes["n"] and isinstance(clean, Mapping):
        checks.append(("probes.n", suite.probes["n"], clean.get("n")))
    for what, now, then in checks:
        if now != then:
            return what
    return None


def declared_cut(manifest: Mapping[str, Any], new: str, registry: Registry | None,
                 suites: Mapping[str, Path]) -> dict[str, Any] | None:
    """What a run cut from suite ``new`` when its suite ``extends`` ``new`` (directly or transitively).

    Returns ``{"cut_from", "cut", "cut_why", "full_design"}`` (``cut``:
    :func:`suite_cut`; ``cut_why``: the cut suite's header comment, else its
    description; ``full_design``: the full suite's header comment, where a
    suite states the choices its design makes, e.g. those a paper leaves open) or
    ``None`` when the run's suite does not extend a suite named ``new``.  The
    run's suite file is the one its manifest names, else the suite findable
    by that name; it must still resolve to what the run recorded (comments may
    have changed since, settings may not), otherwise :class:`UserError`.
    """
    from .suite import load_suite

    info = manifest.get("suite") if isinstance(manifest.get("suite"), Mapping) else {}
    run_name = str(info.get("name"))
    recorded = Path(str(info.get("path") or ""))
    path = recorded if info.get("path") and recorded.is_file() else suites.get(run_name)
    if path is None or not Path(path).is_file():
        return None
    chain = _suite_chain(Path(path))
    parents = [p for p, name in chain[1:] if name == new]
    if not parents:
        return None
    full_path = parents[0]
    shipped = suites.get(new)
    if shipped is not None and Path(shipped).read_bytes() != full_path.read_bytes():
        return None  # it extends some other file that happens to share the name
    if registry is None:
        raise UserError(f"--rename {run_name}={new}: listing what the cut changed needs the plugins (no registry)")
    try:
        run_suite = load_suite(path, registry, list(info.get("overrides") or []))
        full_suite = load_suite(full_path, registry)
    except UserError as exc:
        raise UserError(f"--rename {run_name}={new}: cannot read the suites to compare: {exc}") from None
    mismatch = _run_mismatch(run_suite, manifest)
    if mismatch:
        raise UserError(f"--rename {run_name}={new}: {shown_suite_path(path)} no longer gives the run's {mismatch}; "
                        "publish from the commit the run was made from")
    why = [plain_words(line) for line in header_comment(Path(path))] or [plain_words(run_suite.description)]
    design = [plain_words(line) for line in header_comment(full_path)]
    return {"cut_from": new, "cut": suite_cut(full_suite, run_suite), "cut_why": why, "full_design": design}


def _cut_value(value: Any) -> str:
    """A suite value as the cut table shows it (``—`` where the suite lacks the key)."""
    return "—" if value is None else json.dumps(value, default=str, ensure_ascii=False)


# ----------------------------------------------------------------------------
# Tables
# ----------------------------------------------------------------------------


def _core_tables(run: RunDir, frame: Any) -> list[Table]:
    import pandas as pd

    tables = []
    meta = run.cell_meta()
    rows = []
    for cell, info in meta.items():
        if cell.startswith("similarity/"):
            _, metric, where = cell.split("/", 2)
            rows.append({"metric": metric, "probe_set": where, "seconds": info.get("seconds", float("nan"))})
    if rows:
        timing = pd.DataFrame(rows).groupby("metric")["seconds"].agg(["median", "sum", "count"]).reset_index()
        timing.columns = ["metric", "median_seconds_per_matrix", "total_seconds", "matrices"]
        tables.append(Table("timing", "Compute time per metric (all M x M pairs of one probe set)", timing,
                            "Wall-clock seconds measured during the run, first computation only."))
    failed = frame[(frame["status"] == "failed")]
    if len(failed):
        tables.append(Table("failures", "Failed measurements",
                            failed[["kind", "benchmark", "metric", "probe_set", "error"]].drop_duplicates(),
                            "A metric that raised or returned non-finite values; the run went on."))
    return tables


def _problem(problems: list[str] | None, message: str) -> None:
    log.warning(message)
    if problems is not None:
        problems.append(message)


def _benchmark_class(registry: Registry | None, name: str) -> type[Benchmark] | None:
    if registry is None:
        return None
    try:
        return registry.get("benchmark", name)
    except PluginError:  # uninstalled since the run: its records stay readable
        return None


def read_records(run: RunDir) -> Any:
    """A finished run's ``results.parquet``, checked: a readable parquet file with every column of
    :data:`simbench.results.COLUMNS`, their types as written (:func:`simbench.results.normalise_frame`).

    A damaged, truncated or foreign file is a one-line :class:`UserError` naming the file.  Every reader
    of a finished run goes through here (:func:`build_tables`): ``simbench leaderboard``, ``publish``
    (which lists the run as skipped with this line) and ``simbench.load``.
    """
    from .results import COLUMNS, RESULTS_FILE, normalise_frame

    path = run.path / RESULTS_FILE
    try:
        frame = run.results()
    except UserError:
        raise
    except Exception as exc:  # pyarrow's own errors for a truncated or foreign file, a MemoryError, ...
        raise UserError(f"{path}: not a readable results file ({one_line(exc, 250)}); "
                        "rerun the suite to rebuild it") from None
    missing = [c for c in COLUMNS if c not in getattr(frame, "columns", ())]
    if missing:
        raise UserError(f"{path}: not a simbench results file (no column {', '.join(map(repr, missing[:3]))}"
                        f"{', ...' if len(missing) > 3 else ''}); rerun the suite to rebuild it")
    try:
        return normalise_frame(frame)
    except Exception as exc:  # a column of the right name holding something else
        raise UserError(f"{path}: not a simbench results file ({type(exc).__name__} reading its columns); "
                        "rerun the suite to rebuild it") from None


def build_tables(run: RunDir, registry: Registry | None,
                 problems: list[str] | None = None) -> tuple[dict[str, Any], list[Table], Any]:
    """The provenance, all tables and the records of a finished run.

    A benchmark whose ``tables`` raises contributes no tables; the failure is
    appended to ``problems`` (one line) and the other benchmarks go on.  A
    damaged or foreign ``results.parquet`` is one line (:func:`read_records`).
    """
    manifest = run.read_manifest()
    frame = read_records(run)
    tables: list[Table] = []
    benchmarks = manifest.get("benchmarks", {})
    for label, info in benchmarks.items():
        records = frame[(frame["kind"] == "benchmark") & (frame["benchmark"] == label)]
        cls = _benchmark_class(registry, info.get("name", label)) or Benchmark
        try:
            benchmark_tables = list(cls.tables(records)) if len(records) else []
        except (Exception, SystemExit) as exc:  # a broken report (sys.exit too) must not hide the others
            _problem(problems, f"benchmark {label!r}: tables failed: {type(exc).__name__}: {exc}")
            continue
        if len(benchmarks) > 1:
            benchmark_tables = [Table(f"{label}.{t.key}", f"{label}: {t.title}", t.frame, t.caption)
                                for t in benchmark_tables]
        tables.extend(benchmark_tables)
    tables.extend(_core_tables(run, frame))
    return provenance(manifest), tables, frame




def markdown_table(frame: Any) -> str:
    """A GitHub markdown table; every cell and header is made inert (:func:`md_text`)."""
    cols = list(frame.columns)
    lines = ["| " + " | ".join(md_text(c) for c in cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(md_text(_fmt(v)) for v in row) + " |")
    return "\n".join(lines)


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item"):
        return _json_value(value.item())
    return value


def run_view(frame: Any, manifest: dict[str, Any], registry: Registry | None,
             store: RunDir | None = None) -> RunView:
    """The whole run as benchmark plots read it: records, the stored matrices (``store``, the run
    directory; either store format), the zoo's models and metric classes from the manifest."""
    specs = [ModelSpec(m["id"], dict(m.get("factors", {}))) for m in manifest.get("models", [])]
    metrics = {}
    for label, info in manifest.get("metrics", {}).items():
        try:
            metrics[label] = registry.get("metric", info["name"]) if registry is not None else None
        except PluginError:  # uninstalled since the run: its values stay as stored
            continue
    return RunView(frame, specs, manifest, {k: v for k, v in metrics.items() if v is not None}, store)


def _render_plots(run: RunDir, frame: Any, manifest: dict[str, Any], registry: Registry | None, out: Path,
                  stem: str, problems: list[str] | None) -> list[Path]:
    """Plots of every benchmark, drawn in a private temporary directory and copied into ``out/<stem>_plots``.

    Drawing elsewhere first means a plugin cannot write outside ``out`` through
    our directory, and only the regular files it reports are published.
    """
    if registry is None:
        return []
    view = run_view(frame, manifest, registry, run)
    plot_dir = _target(out, f"{stem}_plots")
    for old in _own_plots(out, stem):  # ours from an earlier render (stale); a file someone else put there stays
        old.unlink()
    written: list[Path] = []
    for label, info in manifest.get("benchmarks", {}).items():
        cls = _benchmark_class(registry, info.get("name", label))
        records = frame[(frame["kind"] == "benchmark") & (frame["benchmark"] == label)]
        if cls is None or not len(records):
            continue
        with tempfile.TemporaryDirectory(prefix="simbench-plots-") as tmp:
            try:
                produced = [Path(p) for p in cls.plots(records, Path(tmp), run=view)]
            except (Exception, SystemExit) as exc:  # a broken figure (sys.exit too) must not hide the tables
                _problem(problems, f"benchmark {label!r}: plots failed: {type(exc).__name__}: {exc}")
                continue
            root = Path(tmp).resolve()
            for src in produced:
                if src.is_symlink() or not src.is_file() or root not in src.resolve().parents:
                    continue
                plot_dir.mkdir(parents=True, exist_ok=True)
                dest = _target(out, f"{stem}_plots", safe_name(src.name, "plot.png"))
                shutil.copyfile(src, dest)
                written.append(dest)
    return written


def _own_plots(out: Path, stem: str) -> list[Path]:
    """The plot files an earlier render of ``stem`` wrote into ``out/<stem>_plots/``, as its ``<stem>.json``
    lists them (``"plots"``): only those are replaced, never another file in that folder."""
    board, plot_dir = out / f"{stem}.json", out / f"{stem}_plots"
    if board.is_symlink() or not board.is_file() or plot_dir.is_symlink() or not plot_dir.is_dir():
        return []
    try:
        listed = json.loads(board.read_text(encoding="utf-8")).get("plots", [])
    except (OSError, ValueError, AttributeError):
        return []
    found = []
    for rel in listed if isinstance(listed, list) else []:
        parts = str(rel).split("/")
        if len(parts) == 2 and parts[0] == plot_dir.name and parts[1] == safe_name(parts[1], ""):
            path = plot_dir / parts[1]
            if path.is_file() or path.is_symlink():
                found.append(path)
    return found


def render(run_path: str | Path, out_dir: str | Path, registry: Registry | None, name: str | None = None,
           problems: list[str] | None = None) -> list[Path]:
    """Write ``<name>.md|.csv|.json`` (and plots) for one run; return the written paths.

    ``name`` defaults to the suite's (sanitised) name; ``problems`` collects one
    line per benchmark report that failed.
    """
    return _render(run_path, out_dir, registry, name, [] if problems is None else problems)[0]


def _render(run_path: str | Path, out_dir: str | Path, registry: Registry | None, name: str | None,
            problems: list[str], cut: Mapping[str, Any] | None = None
            ) -> tuple[list[Path], dict[str, Any], list[Table]]:
    """:func:`render`, also returning the provenance and tables (publish reuses them: tables can be slow).

    ``cut`` (from :func:`declared_cut`) marks a board published under the name
    of the full suite its run was cut from: the title says so, a section lists
    every setting that differs and why, and the JSON/CSV carry the same.
    """
    run = RunDir(run_path)
    prov, tables, frame = build_tables(run, registry, problems)
    if cut:
        prov.update(cut_from=cut["cut_from"], cut=list(cut["cut"]), cut_why=list(cut["cut_why"]),
                    full_design=list(cut.get("full_design", [])))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = safe_name(name or prov["suite"])
    written: list[Path] = []
    manifest = run.read_manifest()
    plot_paths = _render_plots(run, frame, manifest, registry, out, stem, problems)

    title = f"# Leaderboard: {md_text(stem)}"
    if cut:
        title += f" (a cut of the full `{md_text(cut['cut_from'])}` grid, run as suite `{md_text(prov['suite'])}`)"
    md = [title, "", "_Generated by `simbench` from a run directory; do not edit by hand._", ""]
    from . import site

    variant = bool(prov["overrides"]) and not cut
    if variant:  # the shipped description no longer holds: say what was overridden
        md += [f"**{md_text(site.described(prov))}**", ""]
    elif prov["description"]:
        md += [f"**{md_text(plain_words(prov['description']))}**", ""]
    if cut:
        md += [f"_Not the full `{md_text(cut['cut_from'])}` grid: a declared cut of it (see "
               "\"Cut from the full grid\" below)._", ""]
    elif stem != safe_name(prov["suite"]) and not variant:
        md += [f"_A variant of suite `{md_text(prov['suite'])}`, not the suite as shipped._", ""]
    board_verdict = site.verdict(tables)
    figure = site.headline_figure(plot_paths)
    md += [f"**Verdict:** {md_text(board_verdict)}", ""]
    if figure is not None:
        md += [f"![{md_text(figure.stem)}]({figure.parent.name}/{figure.name})", ""]
    if variant and prov["description"]:
        md += [f"_The suite as shipped is described as: {md_text(plain_words(prov['description']))}_", ""]
    md.append(f"- suite: `{md_text(prov['suite_path'])}` (sha256 `{md_text((prov['suite_sha256'] or '')[:12])}`)"
              + (f", overrides {md_text(prov['overrides'])}" if prov["overrides"] else ""))
    dataset = prov["dataset"]
    md.append(f"- data: `{md_text(dataset.get('name'))}` {md_text(json.dumps(dataset.get('params', {})))}"
              + (f", fingerprint `{md_text(str(prov['data_fingerprint'])[:16])}`" if prov["data_fingerprint"] else ""))
    for name, size, digest in prov["data_files"]:
        md.append(f"- data file: `{md_text(name)}`" + (f", {md_text(f'{size:,}')} bytes" if size is not None else "")
                  + f", sha256 `{md_text(digest)}`")
    md.append(f"- zoo: `{md_text(prov['zoo'].get('name') if isinstance(prov['zoo'], Mapping) else prov['zoo'])}`, "
              f"{md_text(prov['n_models'])} models")
    if prov.get("held_out_models"):
        md.append(f"- held out (trained by the zoo's recipe, not in the zoo, never analysed; e.g. attack sources): "
                  f"{', '.join(f'`{md_text(m)}`' for m in prov['held_out_models'])}")
    md.append(f"- probe sets: {', '.join(f'{md_text(k)} ({md_text(v)})' for k, v in prov['probe_sets'].items())}")
    md.append(f"- simbench {md_text(prov['simbench_version'])}, revision `{md_text(prov['simbench_revision'])}`, "
              f"device {md_text(prov['device'])}, seed {md_text(prov['seed'])}, finished {md_text(prov['finished'])}")
    md += run_time_lines(prov)
    md.append("")
    if cut:
        md += _cut_markdown(prov)
    if problems:
        md += ["## Report problems", ""] + [f"- {md_text(p)}" for p in problems] + [""]
    for table in tables:
        md += [f"## {md_text(plain_words(table.title))}", ""]
        if table.caption:
            md += [md_text(plain_words(table.caption)), ""]
        md += [markdown_table(table.frame), ""]
    if [p for p in plot_paths if p != figure]:
        md += ["## Plots", ""]
        md += [f"![{md_text(p.stem)}]({p.parent.name}/{p.name})" for p in plot_paths if p != figure]
        md.append("")
    written.append(_write_text(out, f"{stem}.md", "\n".join(md)))

    if tables:
        csv_path = _target(out, f"{stem}.csv")
        headline = tables[0].frame
        if cut:  # every row says the numbers come from the cut (a CSV travels without its page)
            headline = headline.assign(cut_from=cut["cut_from"],
                                       cut="; ".join(f"{r['key']}: {_cut_value(r['full'])} -> {_cut_value(r['run'])}"
                                                     for r in cut["cut"]))
        csv_frame(headline).to_csv(csv_path, index=False)
        written.append(csv_path)
    payload = {
        "schema_version": SCHEMA_VERSION,
        "name": stem,
        "label": site.variant_label(stem, prov),
        "verdict": board_verdict,
        "provenance": prov,
        "tables": [
            {"key": t.key, "title": t.title, "caption": t.caption, "columns": [str(c) for c in t.frame.columns],
             "rows": [[_json_value(v) for v in row] for row in t.frame.itertuples(index=False)]}
            for t in tables
        ],
        "plots": [f"{p.parent.name}/{p.name}" for p in plot_paths],
        "problems": list(problems),
    }
    written.append(_write_text(out, f"{stem}.json", json.dumps(payload, indent=1, default=str)))
    return written + plot_paths, prov, tables


def _cut_markdown(prov: Mapping[str, Any]) -> list[str]:
    """The page's "Cut from the full grid" section: what differs from the full suite, and why."""
    md = ["## Cut from the full grid", "",
          f"Published under the name of the full suite `{md_text(prov['cut_from'])}`, but the run is of suite "
          f"`{md_text(prov['suite'])}` (`{md_text(prov['suite_path'])}`), which extends it. Every setting that "
          "differs, as both suites resolve (defaults filled in):", "",
          "| key | full grid | this run |", "|---|---|---|"]
    md += [f"| `{md_text(r['key'])}` | {md_text(_cut_value(r['full']))} | {md_text(_cut_value(r['run']))} |"
           for r in prov["cut"]]
    if not prov["cut"]:
        md.append("| (none) | | |")
    md += ["", f"Why, in `{md_text(prov['suite_path'])}`'s own words:", "", "```text"]
    md += [line.replace("```", "` ` `") for line in prov["cut_why"]]  # a fence inside would end the block
    md += ["```", ""]
    if prov.get("full_design"):  # everything the cut keeps: the full grid's own statement of its choices
        md += [f"The full grid's design, in `suites/{md_text(prov['cut_from'])}.toml`'s own words (what the cut "
               "keeps, unless listed above):", "", "```text"]
        md += [line.replace("```", "` ` `") for line in prov["full_design"]]
        md += ["```", ""]
    return md


# ----------------------------------------------------------------------------
# Publishing: every suite's leaderboard, the site (simbench.site), an index
# ----------------------------------------------------------------------------


def find_runs(paths: Sequence[Path], skipped: list[tuple[Path, str]] | None = None) -> list[Path]:
    """Finished run directories under the given paths (a path may itself be a run directory).

    Unfinished runs (a manifest but no ``results.parquet``) are appended to
    ``skipped`` with the reason.
    """
    runs = []
    for path in paths:
        path = Path(path)
        candidates = [path] if (path / "manifest.json").exists() else sorted(p.parent for p in path.glob("*/manifest.json"))
        for candidate in candidates:
            if (candidate / "results.parquet").exists():
                runs.append(candidate)
            elif skipped is not None:
                skipped.append((candidate, "not finished (no results.parquet; rerun it to resume)"))
    return runs


def latest_per_suite(runs: list[Path]) -> dict[str, Path]:
    """For each published name (:func:`published_name`), the most recently finished run."""
    best: dict[str, tuple[str, Path]] = {}
    for run in runs:
        manifest = RunDir(run).read_manifest()
        name, finished = published_name(manifest), manifest.get("finished") or ""
        if name not in best or finished > best[name][0]:
            best[name] = (finished, run)
    return {name: run for name, (_, run) in sorted(best.items())}


@dataclass
class PublishReport:
    """What :func:`publish` did: files written, runs published under which name, runs skipped and why."""

    out: Path
    written: list[Path] = field(default_factory=list)
    published: dict[str, Path] = field(default_factory=dict)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    removed: list[Path] = field(default_factory=list)
    weight: dict[str, int] = field(default_factory=dict)


def _cut_html(prov: Mapping[str, Any]) -> str:
    """The board page's version of the "Cut from the full grid" section."""
    rows = "".join(f"<tr><td><code>{html.escape(r['key'])}</code></td><td>{html.escape(_cut_value(r['full']))}</td>"
                   f"<td>{html.escape(_cut_value(r['run']))}</td></tr>" for r in prov["cut"])
    return (f'<h3>Cut from the full grid</h3><p class="cut">Published under the name of the full suite '
            f'<code>{html.escape(str(prov["cut_from"]))}</code>; the run is of suite '
            f'<code>{html.escape(str(prov["suite"]))}</code>, which extends it. Every setting that differs:</p>'
            '<div class="scroll"><table><thead><tr><th>key</th><th>full grid</th><th>this run</th></tr></thead>'
            f"<tbody>{rows}</tbody></table></div>"
            f'<pre class="why">{html.escape(chr(10).join(prov["cut_why"]))}</pre>'
            + (f'<p class="cut">The full grid\'s design, in its own words:</p>'
               f'<pre class="why">{html.escape(chr(10).join(prov["full_design"]))}</pre>'
               if prov.get("full_design") else ""))


def publish(paths: Sequence[Path], out_dir: Path, registry: Registry | None, allow_dirty: bool = False,
            rename: Mapping[str, str] | None = None, suites: Mapping[str, Path] | None = None,
            shipped: Mapping[str, Path] | None = None) -> PublishReport:
    """Render every suite's latest publishable run into ``out_dir`` plus ``index.html`` and ``README.md``.

    A run is skipped (and listed in the report with the reason) when it is
    unfinished, comes from a source tree with uncommitted changes (unless
    ``allow_dirty``) or cannot be rendered.  A run with overrides is published
    as ``<suite>+<hash8>``; ``rename`` maps a name to a new one.  The new name
    may be that of a suite as shipped (``suites``: name -> file, the suites
    findable by name; or of a suite a run under ``paths`` ran) only when the
    run is a *declared cut* of it: a run, without overrides, of a suite that
    ``extends`` it.  The board then says so in its title, lists every setting
    that differs from the full suite and the cut's reasons
    (:func:`declared_cut`).  Any other rename onto such a name is refused: it
    would mislabel the run.

    Names are checked before anything is written: :data:`RESERVED_NAMES`
    (``README``, ``index``, in any case) and a rename target holding ``+``
    are refused, as are two names that differ only in case (one file on a
    case-insensitive disk).  ``shipped`` (name -> file: the suites shipped
    with simbench, not ``$SIMBENCH_SUITES_DIR``) guards the official names:
    a run published under a shipped suite's name, or ``<name>+<hash8>``,
    must have been made from that file (:func:`_official_problem`); other
    runs are skipped with the reason.
    """
    out_dir = Path(out_dir)
    report = PublishReport(out_dir)
    rename = dict(rename or {})
    suites = {str(k): Path(v) for k, v in (suites or {}).items()}
    candidates = find_runs(paths, report.skipped)
    publishable = []
    official: set[str] = set()
    for run in candidates:
        manifest = RunDir(run).read_manifest()
        official.add(safe_name(manifest.get("suite", {}).get("name")))
        if is_dirty(manifest) and not allow_dirty:
            report.skipped.append((run, f"made from a modified source tree (revision {_revision(manifest)}); "
                                        "commit first or pass --allow-dirty"))
            continue
        publishable.append(run)
    runs = latest_per_suite(publishable)
    cuts: dict[str, dict[str, Any]] = {}
    for old, new in rename.items():
        if old not in runs:
            raise UserError(f"--rename {old}={new}: no run to publish under {old!r} "
                            f"(available: {', '.join(runs) or 'none'})")
        if safe_name(new) != new or "+" in new:
            raise UserError(f"--rename {old}={new}: expected letters, digits, '-', '_' or '.' "
                            "('+<hash>' names are given by publish to runs with overrides)")
        if new.casefold() in {r.casefold() for r in RESERVED_NAMES}:
            raise UserError(f"--rename {old}={new}: {new!r} is reserved "
                            "(publish writes README.md, index.html and claims.md)")
        taken = new in official or new in suites or (new in runs and rename.get(new, new) == new)
        if "+" in old and taken:
            raise UserError(f"--rename {old}={new}: {new!r} is the name of a suite as shipped; "
                            "a run with overrides must keep a distinct name")
        if new in runs and rename.get(new, new) == new:
            raise UserError(f"--rename {old}={new}: a run of suite {new!r} itself is published too; "
                            "one name cannot hold both")
        cut = None if "+" in old else declared_cut(RunDir(runs[old]).read_manifest(), new, registry, suites)
        if cut is not None:
            cuts[new] = cut
        elif taken:
            raise UserError(f"--rename {old}={new}: {new!r} is the name of a suite as shipped; only a run of a "
                            f"suite that extends it (a declared cut) may be published under it")
    if len(set(rename.values())) < len(rename):
        raise UserError(f"--rename: two runs renamed to one name ({', '.join(f'{o}={n}' for o, n in rename.items())})")
    runs = {rename.get(name, name): run for name, run in runs.items()}
    for name, run_path in list(runs.items()):
        problem = None
        if name.casefold() in {r.casefold() for r in RESERVED_NAMES}:
            problem = (f"its name {name!r} is reserved (publish writes README.md, index.html and claims.md); "
                       "use --rename")
        elif name not in rename.values():
            problem = _official_problem(run_path, RunDir(run_path).read_manifest(), dict(shipped or {}))
        if problem:
            report.skipped.append((run_path, problem))
            del runs[name]
    folded: dict[str, str] = {}
    for name in runs:
        if name.casefold() in folded:
            raise UserError(f"publish: {folded[name.casefold()]!r} and {name!r} differ only in case (one file on a "
                            "case-insensitive disk); publish one under another name with --rename OLD=NEW")
        folded[name.casefold()] = name
    if not runs:
        reasons = "; ".join(f"{p}: {why}" for p, why in report.skipped)
        raise UserError(f"no publishable run directories under {', '.join(str(p) for p in paths)}"
                        + (f" ({reasons})" if reasons else ""))
    out_dir.mkdir(parents=True, exist_ok=True)
    from . import site

    boards: list[site.Board] = []
    for name, run_path in sorted(runs.items()):
        problems: list[str] = []
        try:
            files, prov, tables = _render(run_path, out_dir, registry, name, problems, cuts.get(name))
        except UserError as exc:
            report.skipped.append((run_path, str(exc)))
            continue
        except (Exception, SystemExit) as exc:  # one broken run (a plugin's sys.exit too) must not block the others
            report.skipped.append((run_path, f"could not be rendered: {type(exc).__name__}: {exc}"))
            continue
        if str(prov.get("simbench_revision") or "unknown") == "unknown":
            problems.append(f"made by simbench {prov.get('simbench_version')} with no recorded source revision "
                            "(an installed wheel, or no git): the board cannot be traced to a commit; publish from "
                            "a git checkout to record one")
        board = site.Board(name, prov, tables, [p for p in files if p.suffix == ".png"], problems)
        cut_html = _cut_html(prov) if prov.get("cut_from") else ""
        files.append(_write_text(out_dir, f"{name}.html", site.board_page(board, cut_html)))
        report.written.extend(files)
        report.published[name] = run_path
        report.problems.extend(f"{name}: {p}" for p in problems)
        boards.append(board)
    if not report.published:
        raise UserError("nothing could be published: " + "; ".join(f"{p}: {why}" for p, why in report.skipped))
    for old, new in rename.items():  # the board moved: what publish wrote under the old name goes
        if new in report.published and old not in report.published:
            report.removed.extend(_remove_board(out_dir, old))
    index = _write_text(out_dir, "index.html", site.index_page(boards))
    report.written.append(index)
    weight = site.page_weight(index)
    if weight["first_screen"] > PAGE_BUDGET_BYTES:
        report.problems.append(f"index.html and the figures of its first screen are "
                               f"{weight['first_screen'] / 1e6:.1f} MB (budget {PAGE_BUDGET_BYTES / 1e6:.0f} MB)")
    report.weight = weight
    report.written.append(_write_text(out_dir, "README.md", site.readme(boards)))
    from . import claims  # every board in out_dir, this publish's and earlier ones

    report.written.append(claims.write(out_dir, report.problems))
    return report


#: the files publish writes for a board ``<name>``, beside its plots (``<name>.json`` lists those)
BOARD_SUFFIXES = (".md", ".csv", ".html", ".json")


def _remove_board(out: Path, name: str) -> list[Path]:
    """Delete what publish wrote for board ``name`` in ``out`` (``--rename`` moved it): only when
    ``<name>.json`` is publish's own (``schema_version``, ``name`` == ``name``, ``provenance``); then the plots
    it lists, ``<name>.md|.csv|.html|.json`` and the plot folder if that leaves it empty.  Links and files
    publish did not write stay."""
    board = out / f"{name}.json"
    if safe_name(name) != name or board.is_symlink() or not board.is_file():
        return []
    try:
        payload = json.loads(board.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    if not isinstance(payload, dict) or payload.get("name") != name or "schema_version" not in payload \
            or not isinstance(payload.get("provenance"), dict):
        return []
    removed = []
    for path in _own_plots(out, name) + [out / f"{name}{suffix}" for suffix in BOARD_SUFFIXES]:
        if path.is_file() and not path.is_symlink():
            path.unlink()
            removed.append(path)
    plot_dir = out / f"{name}_plots"
    if plot_dir.is_dir() and not plot_dir.is_symlink() and not any(plot_dir.iterdir()):
        plot_dir.rmdir()
    return removed
