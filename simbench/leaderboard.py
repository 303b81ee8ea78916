"""Leaderboards, rendered from run directories only (never edited by hand).

Each benchmark plugin turns its own records into tables (and plots); this
module adds provenance and the core's own tables (failures, compute time)
and writes ``<suite>.md``, ``<suite>.csv`` (the headline table) and
``<suite>.json`` (everything, numbers as numbers).
"""

from __future__ import annotations

import inspect
import json
import math
from pathlib import Path
from typing import Any

from .errors import PluginError, UserError
from .registry import Registry
from .results import RunDir
from .types import Benchmark, ModelSpec, RunView, Table


def provenance(manifest: dict[str, Any]) -> dict[str, Any]:
    suite = manifest.get("suite", {})
    return {
        "suite": suite.get("name"),
        "suite_path": suite.get("path"),
        "description": suite.get("description", ""),
        "suite_sha256": suite.get("sha256"),
        "overrides": suite.get("overrides", []),
        "dataset": manifest.get("data", {}),
        "zoo": manifest.get("zoo", {}),
        "n_models": manifest.get("n_models"),
        "probe_sets": {k: v.get("n") for k, v in manifest.get("probe_sets", {}).items()},
        "simbench_version": manifest.get("simbench_version"),
        "git_revision": manifest.get("git_revision"),
        "device": manifest.get("device"),
        "seed": manifest.get("seed"),
        "finished": manifest.get("finished"),
    }


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


def build_tables(run: RunDir, registry: Registry | None) -> tuple[dict[str, Any], list[Table], Any]:
    """The provenance, all tables and the records of a finished run."""
    manifest = run.read_manifest()
    frame = run.results()
    tables: list[Table] = []
    benchmarks = manifest.get("benchmarks", {})
    for label, info in benchmarks.items():
        records = frame[(frame["kind"] == "benchmark") & (frame["benchmark"] == label)]
        cls: type[Benchmark] = Benchmark
        if registry is not None:
            try:
                cls = registry.get("benchmark", info["name"])
            except PluginError:
                cls = Benchmark
        benchmark_tables = cls.tables(records) if len(records) else []
        if len(benchmarks) > 1:
            benchmark_tables = [Table(f"{label}.{t.key}", f"{label}: {t.title}", t.frame, t.caption)
                                for t in benchmark_tables]
        tables.extend(benchmark_tables)
    tables.extend(_core_tables(run, frame))
    return provenance(manifest), tables, frame


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
            return f"{value:.2e}"
        return f"{value:.3f}"
    return str(value).replace("|", "\\|")


def markdown_table(frame: Any) -> str:
    cols = list(frame.columns)
    lines = ["| " + " | ".join(str(c) for c in cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(_fmt(v) for v in row) + " |")
    return "\n".join(lines)


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item"):
        return _json_value(value.item())
    return value


def run_view(frame: Any, manifest: dict[str, Any], registry: Registry | None) -> RunView:
    """The whole run as benchmark plots read it (rows, the zoo's models and metric classes from the manifest)."""
    specs = [ModelSpec(m["id"], dict(m.get("factors", {}))) for m in manifest.get("models", [])]
    metrics = {}
    for label, info in manifest.get("metrics", {}).items():
        try:
            metrics[label] = registry.get("metric", info["name"]) if registry is not None else None
        except PluginError:  # uninstalled since the run: its values stay as stored
            continue
    return RunView(frame, specs, manifest, {k: v for k, v in metrics.items() if v is not None})


def _call_plots(cls: Any, records: Any, plot_dir: Path, view: RunView) -> list[Any]:
    """``cls.plots`` with the run view when its signature takes one (older plugins take two arguments)."""
    try:
        takes_run = "run" in inspect.signature(cls.plots).parameters
    except (TypeError, ValueError):
        takes_run = False
    return cls.plots(records, plot_dir, run=view) if takes_run else cls.plots(records, plot_dir)


def render(run_path: str | Path, out_dir: str | Path, registry: Registry | None) -> list[Path]:
    """Write ``<suite>.md|.csv|.json`` (and plots) for one run; return the written paths."""
    run = RunDir(run_path)
    prov, tables, frame = build_tables(run, registry)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = prov["suite"]
    written: list[Path] = []

    plot_paths: list[Path] = []
    manifest = run.read_manifest()
    view = run_view(frame, manifest, registry)
    if registry is not None:
        for label, info in manifest.get("benchmarks", {}).items():
            try:
                cls = registry.get("benchmark", info["name"])
            except PluginError:
                continue
            records = frame[(frame["kind"] == "benchmark") & (frame["benchmark"] == label)]
            if len(records):
                plot_dir = out / f"{stem}_plots"
                plot_paths.extend(Path(p) for p in _call_plots(cls, records, plot_dir, view))

    md = [f"# Leaderboard: {stem}", "",
          "_Generated by `simbench leaderboard` from a run directory; do not edit by hand._", ""]
    if prov["description"]:
        md += [f"**{prov['description']}**", ""]
    md.append(f"- suite: `{prov['suite_path']}` (sha256 `{(prov['suite_sha256'] or '')[:12]}`)"
              + (f", overrides {prov['overrides']}" if prov["overrides"] else ""))
    md.append(f"- data: `{prov['dataset'].get('name')}` {json.dumps(prov['dataset'].get('params', {}))}")
    md.append(f"- zoo: `{prov['zoo'].get('name')}`, {prov['n_models']} models")
    md.append(f"- probe sets: {', '.join(f'{k} ({v})' for k, v in prov['probe_sets'].items())}")
    md.append(f"- simbench {prov['simbench_version']}, git `{prov['git_revision']}`, device {prov['device']}, "
              f"seed {prov['seed']}, finished {prov['finished']}")
    md.append("")
    for table in tables:
        md += [f"## {table.title}", ""]
        if table.caption:
            md += [table.caption, ""]
        md += [markdown_table(table.frame), ""]
    if plot_paths:
        md += ["## Plots", ""]
        md += [f"![{p.stem}]({p.relative_to(out).as_posix()})" for p in plot_paths]
        md.append("")
    md_path = out / f"{stem}.md"
    md_path.write_text("\n".join(md))
    written.append(md_path)

    if tables:
        csv_path = out / f"{stem}.csv"
        tables[0].frame.to_csv(csv_path, index=False)
        written.append(csv_path)
    payload = {
        "provenance": prov,
        "tables": [
            {"key": t.key, "title": t.title, "caption": t.caption, "columns": [str(c) for c in t.frame.columns],
             "rows": [[_json_value(v) for v in row] for row in t.frame.itertuples(index=False)]}
            for t in tables
        ],
        "plots": [p.relative_to(out).as_posix() for p in plot_paths],
    }
    json_path = out / f"{stem}.json"
    json_path.write_text(json.dumps(payload, indent=1, default=str))
    written.append(json_path)
    return written + plot_paths


def rich_table(table: Table, max_rows: int = 30) -> Any:
    """A rich Table for the terminal."""
    from rich.table import Table as RichTable

    out = RichTable(title=table.title, caption=table.caption or None)
    for col in table.frame.columns:
        out.add_column(str(col), overflow="fold")
    for row in list(table.frame.itertuples(index=False))[:max_rows]:
        out.add_row(*(_fmt(v) for v in row))
    return out


# ----------------------------------------------------------------------------
# Publishing: every suite's leaderboard, one static HTML page, an index
# ----------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1200px;
padding:0 1rem;color:#222}
h1{border-bottom:2px solid #333}h2{margin-top:2.5rem;border-bottom:1px solid #aaa}
table{border-collapse:collapse;margin:0.5rem 0 1.5rem;font-size:0.85rem}
th,td{border:1px solid #ccc;padding:0.2rem 0.5rem;text-align:right}th{background:#f0f0f0}
td:first-child,th:first-child{text-align:left}.prov{font-size:0.85rem;color:#555}
.caption{font-style:italic;color:#555}img{max-width:100%;border:1px solid #ddd;margin:0.5rem 0}
nav a{margin-right:1rem}
"""


def find_runs(paths: list[Path]) -> list[Path]:
    """Finished run directories under the given paths (a path may itself be a run directory)."""
    runs = []
    for path in paths:
        candidates = [path] if (path / "manifest.json").exists() else sorted(p.parent for p in path.glob("*/manifest.json"))
        runs.extend(c for c in candidates if (c / "results.parquet").exists())
    return runs


def latest_per_suite(runs: list[Path]) -> dict[str, Path]:
    """For each suite name, the most recently finished run."""
    best: dict[str, tuple[str, Path]] = {}
    for run in runs:
        manifest = RunDir(run).read_manifest()
        name, finished = manifest["suite"]["name"], manifest.get("finished") or ""
        if name not in best or finished > best[name][0]:
            best[name] = (finished, run)
    return {name: run for name, (_, run) in sorted(best.items())}


def _html_table(frame: Any) -> str:
    import html

    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in row) + "</tr>"
        for row in frame.itertuples(index=False)
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def publish(paths: list[Path], out_dir: Path, registry: Registry | None) -> list[Path]:
    """Render every suite's latest run into ``out_dir`` plus ``index.html`` and ``README.md``."""
    import base64
    import html

    runs = latest_per_suite(find_runs(paths))
    if not runs:
        raise UserError(f"no finished run directories under {', '.join(str(p) for p in paths)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    sections, index_rows = [], []
    for name, run_path in runs.items():
        files = render(run_path, out_dir, registry)
        written.extend(files)
        prov, tables, _ = build_tables(RunDir(run_path), registry)
        plots = [p for p in files if p.suffix == ".png"]
        parts = [f'<section id="{html.escape(name)}"><h2>{html.escape(name)}</h2>',
                 f'<p class="description">{html.escape(str(prov["description"]))}</p>',
                 f'<p class="prov">suite <code>{html.escape(str(prov["suite_path"]))}</code> '
                 f'(sha256 {html.escape((prov["suite_sha256"] or "")[:12])}) · data {html.escape(str(prov["dataset"].get("name")))} · '
                 f'{prov["n_models"]} models · simbench {html.escape(str(prov["simbench_version"]))} · '
                 f'git {html.escape(str(prov["git_revision"])[:12])} · {html.escape(str(prov["device"]))} · '
                 f'{html.escape(str(prov["finished"]))}</p>']
        for table in tables:
            parts.append(f"<h3>{html.escape(table.title)}</h3>")
            if table.caption:
                parts.append(f'<p class="caption">{html.escape(table.caption)}</p>')
            parts.append(_html_table(table.frame))
        for plot in plots:
            data = base64.b64encode(plot.read_bytes()).decode()
            parts.append(f'<img alt="{html.escape(plot.stem)}" src="data:image/png;base64,{data}">')
        parts.append("</section>")
        sections.append("\n".join(parts))
        headline = tables[0].title if tables else ""
        index_rows.append((name, prov, headline))
    nav = " ".join(f'<a href="#{html.escape(n)}">{html.escape(n)}</a>' for n in runs)
    page = (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>simbench leaderboards</title>"
            f"<style>{_CSS}</style></head><body><h1>simbench leaderboards</h1>"
            f"<p>Generated by <code>simbench publish</code> from run directories; do not edit by hand.</p>"
            f"<nav>{nav}</nav>\n" + "\n".join(sections) + "</body></html>")
    index = out_dir / "index.html"
    index.write_text(page)
    written.append(index)
    lines = ["# Leaderboards", "",
             "Generated by `simbench publish` from run directories; do not edit by hand. "
             "Open `index.html` for every table and plot on one page.", "",
             "| suite | what it measures | data | models | device | finished | files |",
             "|---|---|---|---|---|---|---|"]
    for name, prov, _ in index_rows:
        what = str(prov["description"]).replace("|", "/")
        lines.append(f"| [{name}]({name}.md) | {what} | {prov['dataset'].get('name')} | {prov['n_models']} | {prov['device']} "
                     f"| {prov['finished']} | [md]({name}.md) · [csv]({name}.csv) · [json]({name}.json) |")
    readme = out_dir / "README.md"
    readme.write_text("\n".join(lines) + "\n")
    written.append(readme)
    return written
