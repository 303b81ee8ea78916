"""Leaderboards, rendered from run directories only (never edited by hand).

Each benchmark plugin turns its own records into tables (and plots); this
module adds provenance and the core's own tables (failures, compute time)
and writes ``<name>.md``, ``<name>.csv`` (the headline table) and
``<name>.json`` (everything, numbers as numbers, with ``schema_version``;
see ``docs/results.md``).  Which runs are published, under which names, is
:mod:`simbench.publishing`'s (``simbench publish``, which adds the site:
``<name>.html``, ``index.html``, ``README.md``, :mod:`simbench.site`).

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

import json
import logging
import math
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .boardtext import _fmt, md_text, plain_words
from .errors import PluginError, UserError, one_line
from .provenance import is_dirty, recorded_revision
from .registry import Registry
from .results import RunDir
from .types import Benchmark, ModelSpec, Table, plots_view_parameter
from .view import StoreView

log = logging.getLogger("simbench.leaderboard")

#: Version of the leaderboard JSON layout (``docs/results.md``); bump it when a key changes meaning.
SCHEMA_VERSION = 1
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


def write_text(out: Path, name: str, text: str) -> Path:
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
        "simbench_revision": recorded_revision(manifest),
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


def cut_value(value: Any) -> str:
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
    of a finished run goes through here (:func:`run_tables`): ``simbench leaderboard``, ``publish``
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


@dataclass
class RunTables:
    """A finished run's records and tables, built once (:func:`run_tables`) and read by every report of it:
    the leaderboard files (:func:`render`), the end-of-run summary (:func:`simbench.report.summary_lines`)
    and :class:`simbench.api.Results`."""

    manifest: dict[str, Any]
    #: the records (``results.parquet``, checked by :func:`read_records`)
    frame: Any
    #: where the run came from (:func:`provenance`); a published cut adds its keys
    prov: dict[str, Any] = field(default_factory=dict)
    #: benchmark label -> the tables its ``tables`` returned (titles as the benchmark wrote them)
    benchmarks: dict[str, list[Table]] = field(default_factory=dict)
    #: benchmark label -> why its ``tables`` failed (one line)
    failed: dict[str, str] = field(default_factory=dict)
    #: the core's own tables (compute time, failed measurements)
    core: list[Table] = field(default_factory=list)
    #: benchmark label -> its class (the base :class:`Benchmark` where the plugin is gone)
    classes: dict[str, type[Benchmark]] = field(default_factory=dict)
    #: one line per benchmark whose ``tables`` failed, as the board lists them
    problems: list[str] = field(default_factory=list)

    @property
    def tables(self) -> list[Table]:
        """Every table as the board shows it: each benchmark's (keys and titles prefixed with its label
        when the suite has several), then the core's."""
        out: list[Table] = []
        for label, tables in self.benchmarks.items():
            if len(self.manifest.get("benchmarks", {})) > 1:
                tables = [Table(f"{label}.{t.key}", f"{label}: {t.title}", t.frame, t.caption) for t in tables]
            out.extend(tables)
        return out + list(self.core)

    def records(self, label: str) -> Any:
        """The records of benchmark ``label``."""
        return self.frame[(self.frame["kind"] == "benchmark") & (self.frame["benchmark"] == label)]


def run_tables(run: RunDir, registry: Registry | None) -> RunTables:
    """The records, provenance and every table of a finished run, each benchmark's ``tables`` called once.

    A benchmark whose ``tables`` raises contributes no tables; the failure is
    one line in ``problems`` (and ``failed``) and the other benchmarks go on.
    A damaged or foreign ``results.parquet`` is one line (:func:`read_records`).
    """
    manifest = run.read_manifest()
    frame = read_records(run)
    board = RunTables(manifest, frame, provenance(manifest))
    for label, info in manifest.get("benchmarks", {}).items():
        cls = _benchmark_class(registry, info.get("name", label)) or Benchmark
        board.classes[label] = cls
        records = board.records(label)
        try:
            board.benchmarks[label] = list(cls.tables(records)) if len(records) else []
        except (Exception, SystemExit) as exc:  # a broken report (sys.exit too) must not hide the others
            board.failed[label] = f"tables failed: {type(exc).__name__}: {exc}"
            _problem(board.problems, f"benchmark {label!r}: {board.failed[label]}")
    board.core = _core_tables(run, frame)
    return board


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
             store: RunDir | None = None) -> StoreView:
    """The finished run's :class:`StoreView` (the view benchmarks read during the run) as plots read it:
    records, the stored matrices (``store``, the run directory; either store format), the zoo's models and
    metric classes from the manifest."""
    specs = [ModelSpec(m["id"], dict(m.get("factors", {}))) for m in manifest.get("models", [])]
    metrics = {}
    for label, info in manifest.get("metrics", {}).items():
        try:
            metrics[label] = registry.get("metric", info["name"]) if registry is not None else None
        except PluginError:  # uninstalled since the run: its values stay as stored
            continue
    return StoreView.of_run(frame, specs, manifest, {k: v for k, v in metrics.items() if v is not None}, store)


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
    for old in own_plots(out, stem):  # ours from an earlier render (stale); a file someone else put there stays
        old.unlink()
    written: list[Path] = []
    for label, info in manifest.get("benchmarks", {}).items():
        cls = _benchmark_class(registry, info.get("name", label))
        records = frame[(frame["kind"] == "benchmark") & (frame["benchmark"] == label)]
        if cls is None or not len(records):
            continue
        with tempfile.TemporaryDirectory(prefix="simbench-plots-") as tmp:
            try:
                produced = [Path(p) for p in cls.plots(records, Path(tmp), **{plots_view_parameter(cls): view})]
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


def own_plots(out: Path, stem: str) -> list[Path]:
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
           problems: list[str] | None = None, tables: RunTables | None = None) -> list[Path]:
    """Write ``<name>.md|.csv|.json`` (and plots) for one run; return the written paths.

    ``name`` defaults to the suite's (sanitised) name; ``problems`` collects one
    line per benchmark report that failed.  ``tables``: the run's tables when the caller has built them
    already (:func:`run_tables`), so they are not built twice.
    """
    return render_board(run_path, out_dir, registry, name, [] if problems is None else problems,
                        tables=tables)[0]


def render_board(run_path: str | Path, out_dir: str | Path, registry: Registry | None, name: str | None,
                 problems: list[str], cut: Mapping[str, Any] | None = None, tables: RunTables | None = None
                 ) -> tuple[list[Path], dict[str, Any], list[Table]]:
    """:func:`render`, also returning the provenance and tables (publish reuses them: tables can be slow).

    ``cut`` (from :func:`simbench.publishing.declared_cut`) marks a board published under the name
    of the full suite its run was cut from: the title says so, a section lists
    every setting that differs and why, and the JSON/CSV carry the same.
    """
    run = RunDir(run_path)
    board = tables if tables is not None else run_tables(run, registry)
    problems.extend(board.problems)
    prov, tables, frame = dict(board.prov), board.tables, board.frame
    if cut:
        prov.update(cut_from=cut["cut_from"], cut=list(cut["cut"]), cut_why=list(cut["cut_why"]),
                    full_design=list(cut.get("full_design", [])))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = safe_name(name or prov["suite"])
    written: list[Path] = []
    plot_paths = _render_plots(run, frame, board.manifest, registry, out, stem, problems)

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
    written.append(write_text(out, f"{stem}.md", "\n".join(md)))

    if tables:
        csv_path = _target(out, f"{stem}.csv")
        headline = tables[0].frame
        if cut:  # every row says the numbers come from the cut (a CSV travels without its page)
            headline = headline.assign(cut_from=cut["cut_from"],
                                       cut="; ".join(f"{r['key']}: {cut_value(r['full'])} -> {cut_value(r['run'])}"
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
    written.append(write_text(out, f"{stem}.json", json.dumps(payload, indent=1, default=str)))
    return written + plot_paths, prov, tables


def _cut_markdown(prov: Mapping[str, Any]) -> list[str]:
    """The page's "Cut from the full grid" section: what differs from the full suite, and why."""
    md = ["## Cut from the full grid", "",
          f"Published under the name of the full suite `{md_text(prov['cut_from'])}`, but the run is of suite "
          f"`{md_text(prov['suite'])}` (`{md_text(prov['suite_path'])}`), which extends it. Every setting that "
          "differs, as both suites resolve (defaults filled in):", "",
          "| key | full grid | this run |", "|---|---|---|"]
    md += [f"| `{md_text(r['key'])}` | {md_text(cut_value(r['full']))} | {md_text(cut_value(r['run']))} |"
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


