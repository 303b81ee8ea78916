"""The ``simbench`` command line.

Importing this module must not import torch: ``simbench --help`` and
``simbench list`` stay fast (a test checks it).

Why one module of ~700 lines: it is the whole command surface, one click
command per verb, each a thin layer (options, one-line errors, printing)
over a library call that lives elsewhere (:mod:`simbench.report`,
:mod:`simbench.publishing`, :mod:`simbench.bundle`, ...).  The commands share
the group, ``plugin_option``, the registry and console helpers and the
``main`` that turns every user mistake into one line; splitting them over
modules would add a registration step and a helpers module for no logic
moved, and ``--help`` reads the commands in this order.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from .errors import UserError
from .kinds import KIND_SPECS, kind_spec
from .registry import Registry, build_registry


def _registry(ctx: click.Context, files: tuple[str, ...] = ()) -> Registry:
    all_files = tuple(ctx.find_root().obj.get("plugins", ())) + tuple(files)
    return build_registry(plugin_files=all_files)


def plugin_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--plugin", "-p", "plugins", multiple=True, metavar="FILE.py",
        help="Load a plugin from a Python file (repeatable).",
    )(func)


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--plugin", "-p", "plugins", multiple=True, metavar="FILE.py", help="Load a plugin from a Python file.")
@click.version_option(package_name="simbench-metrics")  # the distribution's name; the import package is simbench
@click.pass_context
def cli(ctx: click.Context, plugins: tuple[str, ...]) -> None:
    """simbench: benchmark neural-network similarity metrics against what models do.

    \b
    simbench run quick                    run a shipped suite (or a path), write its leaderboard
    simbench validate SUITE               check a suite without running it
    simbench data mnist --from DIR        install MNIST once (sha256 checked) for the MNIST suites
    simbench list metrics [--json]        registered metrics (zoos, perturbations, ...)
    simbench plugins                      loaded plugins and what they registered
    simbench leaderboard RUN_DIR          render a finished run's leaderboard
    simbench publish [RUNS...]            every suite's leaderboard + index.html
    simbench show mnist_c --out g.png     a picture of a perturbation's variants
    simbench new metric NAME              a metric plugin package with its conformance test
    simbench bundle export RUN_DIR OUT    what a run measured, to rank new metrics against
    simbench score m.py --bundle B        rank a new metric against a bundle, no retraining
    """
    ctx.ensure_object(dict)
    ctx.obj["plugins"] = plugins


@cli.command()
@click.argument("suite_file", metavar="SUITE", type=click.Path(dir_okay=False, path_type=Path))
@plugin_option
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a suite value, e.g. --set run.seed=1 --set zoo.seeds=[0,1].")
@click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Run directory (default runs/<suite>-<hash>); rerunning resumes it.")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Stage cache (default $SIMBENCH_CACHE_DIR, else the user cache directory).")
@click.option("--no-cache", is_flag=True, help="Recompute every stage (finished cells still resume).")
@click.option("--fresh", is_flag=True, help="Delete the run directory first instead of resuming.")
@click.option("--leaderboard-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the leaderboard is written (default RUN_DIR/leaderboard; only `publish` writes leaderboards/).")
@click.option("--no-leaderboard", is_flag=True, help="Do not write leaderboard files.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars or tables.")
@click.option("--verbose", "-v", is_flag=True, help="Also print what plugins log (e.g. per-epoch training loss).")
@click.option("--executor", default=None, metavar="NAME",
              help="Who runs the plan: 'local' (default, this process) or 'dask' (default [run] executor).")
@click.option("--scheduler", default=None, metavar="ADDRESS",
              help="dask: an existing cluster, e.g. tcp://host:8786 (default $SIMBENCH_DASK_SCHEDULER, "
                   "else a LocalCluster); implies --executor dask.")
@click.option("--workers", type=click.IntRange(min=0), default=None,
              help="dask LocalCluster: worker processes (default [run] workers; 0 = one per core).")
@click.pass_context
def run(ctx: click.Context, suite_file: Path, plugins: tuple[str, ...], overrides: tuple[str, ...],
        run_dir: Path | None, cache_dir: Path | None, no_cache: bool, fresh: bool, leaderboard_dir: Path | None,
        no_leaderboard: bool, quiet: bool, verbose: bool = False, executor: str | None = None,
        scheduler: str | None = None, workers: int | None = None) -> None:
    """Run SUITE: train/load the zoo, probe, measure, benchmark, write the leaderboard.

    Rerunning the same command resumes a killed or interrupted run.  At the
    end a short summary is printed (fitted to the terminal, no word cut; into
    a file, whole lines); everything else is in the files.  Exit status 2: a mistake in the suite or command; 3: a resource
    problem (directory not writable, disk full, run already in progress) or
    a failed dataset/zoo.
    """
    from .report import run_and_report, summary_lines
    from .results import check_fresh_target
    from .runner import Runner, default_run_dir
    from .suite import load_suite

    from .api import shadowed_shipped_suite

    registry = _registry(ctx, plugins)
    resolved = resolve_suite(suite_file)
    suite = load_suite(resolved, registry, overrides)
    run_dir = run_dir or default_run_dir(suite)
    if fresh:
        check_fresh_target(run_dir, suite.path)  # refused before anything else happens
    console = _console()
    plain = not console.is_terminal
    # into a file: whole lines; on a terminal rich wraps each line at word boundaries to its width
    say = (lambda text: click.echo(text)) if plain else (lambda text: console.print(text, markup=False,
                                                                                     highlight=False))
    shipped = shadowed_shipped_suite(suite.name, resolved)
    if shipped is not None:  # said even with -q: a suite posing as a shipped one is never silent
        click.echo(f"warning: suite {suite.name!r} is {resolved}, not the shipped {shipped}; "
                   "publish will not publish it under that name", err=True)
    if not quiet:
        say(f"simbench: running suite {suite.name} from {resolved} -> {run_dir}")
        say("  Preparing the run (torch, device, plugin code versions)…")  # progress before any slow step
    if executor is not None:
        registry.entry("executor", executor)  # an unknown name: one line with the known ones
    runner = Runner(suite, registry, run_dir, cache_dir=cache_dir, console=console, quiet=quiet,
                    use_cache=not no_cache, fresh=fresh, verbose=verbose, plain=plain,
                    executor=executor or ("dask" if scheduler else None), scheduler=scheduler, workers=workers)
    try:
        done = run_and_report(runner, None if no_leaderboard else (leaderboard_dir or run_dir / "leaderboard"),
                              None if quiet else say)
    except KeyboardInterrupt:
        import shlex

        args = [a for a in (_ARGV if _ARGV is not None else sys.argv[1:]) if a != "--fresh"]
        again = shlex.join(args) if args else shlex.join(["run", str(suite_file)])  # pasteable: every word quoted
        click.echo(f"interrupted; finished cells are kept in {run_dir}. To resume: simbench {again}", err=True)
        sys.exit(130)
    if not quiet:
        # a terminal: its width, every line wrapped at words; a file: tables in 80 columns, other lines whole
        for line in summary_lines(done.tables, console.width if not plain else 80, wrap=not plain):
            click.echo(line)
        for path in done.written:
            if path.suffix in {".md", ".csv", ".json"}:
                say(f"wrote {path}")
        say(f"results: {done.run.path}")


@cli.command()
@click.argument("suite_file", metavar="SUITE", type=click.Path(dir_okay=False, path_type=Path))
@plugin_option
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a suite value.")
@click.option("--no-data", is_flag=True, help="Do not load the dataset (skips the data, layer and size checks).")
@click.pass_context
def validate(ctx: click.Context, suite_file: Path, plugins: tuple[str, ...], overrides: tuple[str, ...],
             no_data: bool = False) -> None:
    """Check SUITE without training: names, parameters, data files, data reachable offline, layers, size."""
    from .suite import load_suite

    registry = _registry(ctx, plugins)
    suite = load_suite(resolve_suite(suite_file), registry, overrides)
    from .requirements import check_requirements
    from .suite import check_data_files

    check_data_files(suite)
    check_requirements(suite, registry.get("executor", str(suite.run.get("executor") or "local")))
    estimate = None
    if not no_data:
        from .cells import resolve_task
        from .preflight import load_data_offline, preflight

        data = load_data_offline(suite)
        resolve_task(registry, data, suite.data.name)  # the task the data names is registered
        estimate = preflight(suite, data)
    specs = suite.zoo.obj.specs()
    held_out = sum(1 for s in specs if s.held_out)
    n_models = f"{len(specs) - held_out} models" + (f" (+{held_out} held out)" if held_out else "")
    variants = ["clean"] + [v for u in suite.perturbations if u.obj.target == "input" for v in u.obj.variants()]
    size = f", about {estimate.gigabytes:.2g} GB" if estimate is not None else ""
    click.echo(
        f"{suite_file}: ok — suite {suite.name!r}: {n_models} ({suite.zoo.name}), "
        f"{len(variants)} probe sets, {len(suite.metrics)} metrics, "
        f"benchmarks {', '.join(u.label for u in suite.benchmarks)}{size}"
    )
    from .costs import estimate as cost_estimate

    n_probes = estimate.probes if estimate is not None else int(suite.probes.get("n") or 0)
    if n_probes:
        analysed = (len(specs) - held_out) * (1 + sum(1 for u in suite.perturbations if u.obj.target == "model"))
        workers = (int(suite.run.get("workers") or 0) or os.cpu_count() or 1) if suite.run.get("executor") == "dask" else 1
        cost = cost_estimate([(u.name, u.obj.kind) for u in suite.metrics], analysed, n_probes, len(variants))
        click.echo(f"  {cost.line(max(workers, 1))}")


def _describe(entry: Any) -> dict[str, Any]:
    from .params import param_schema

    cls = entry.cls
    info: dict[str, Any] = {
        "name": entry.name,
        "plugin": entry.plugin,
        "description": cls.description or (cls.__doc__ or "").strip().splitlines()[0] if (cls.description or cls.__doc__) else "",
        "params": param_schema(cls).get("properties", {}),
    }
    if entry.kind == "metric":
        info.update({
            "kind": cls.kind, "higher_is_more_similar": cls.higher_is_more_similar, "symmetric": cls.symmetric,
            "value_range": list(cls.value_range), "invariances": sorted(cls.invariances),
            "needs_inputs": cls.needs_inputs,
        })
    if entry.kind == "perturbation":
        info["target"] = cls.target
    return info


def _text_width() -> int | None:
    """The terminal's width (``$COLUMNS`` first), or ``None`` when stdout is not a terminal (a file, a pipe)."""
    console = _console()
    return console.width if console.is_terminal else None


def _echo_wrapped(text: str, width: int | None, indent: str = "") -> None:
    """``text`` whole on one line when ``width`` is ``None`` (into a file); otherwise wrapped at word
    boundaries to ``width`` columns, continuation lines starting with ``indent`` (never a word cut, unless
    one word alone is wider than the line)."""
    if width is None:
        click.echo(text)
        return
    import textwrap

    lead = len(text) - len(text.lstrip(" "))  # the line's own indent is kept, not collapsed
    for line in textwrap.wrap(text.lstrip(" "), width=width, initial_indent=" " * lead, subsequent_indent=indent,
                              break_on_hyphens=False) or [""]:
        click.echo(line)


def resolve_suite(arg: str | Path) -> Path:
    """A SUITE argument, a path or the name of a shipped suite, as a file (see :func:`simbench.api.resolve_suite`)."""
    from .api import resolve_suite as resolve

    return resolve(arg)


@cli.command("list")
@click.argument("what", required=False,
                type=click.Choice([*(kind.plural for kind in KIND_SPECS), "suites"]))
@plugin_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def list_cmd(ctx: click.Context, what: str | None, plugins: tuple[str, ...], as_json: bool) -> None:
    """List registered plugins of one kind (default: all kinds), or the shipped suites."""
    if what == "suites":
        from .api import list_suites

        rows = list_suites()  # $SIMBENCH_SUITES_DIR first, then the suites shipped with simbench
        if as_json:
            click.echo(json.dumps(rows, indent=1))
        else:
            width = _text_width()
            for r in rows:  # the whole description, wrapped at words under itself on a terminal
                _echo_wrapped(f"{r['name']:<22} {r['description']}", width, " " * 23)
            if rows:
                _echo_wrapped("run one by name (simbench run quick) or by path; --json shows where each file is",
                              width)
        return
    registry = _registry(ctx, plugins)
    kinds = [kind_spec(what)] if what else list(KIND_SPECS)
    payload = {k.plural: [_describe(e) for e in registry.entries(k.name)] for k in kinds}
    if as_json:
        click.echo(json.dumps(payload if what is None else payload[what], indent=1, default=str))
        return
    width = _text_width()
    for plural, items in payload.items():
        click.echo(f"{plural}:")
        for item in items:
            extra = ""
            if "kind" in item:
                extra = f" [{item['kind']}, {'similarity' if item['higher_is_more_similar'] else 'distance'}]"
            _echo_wrapped(f"  {item['name']:<24}{extra} {item['description']}  (from {item['plugin']})", width,
                          " " * 6)
        if not items:
            click.echo("  (none)")


@cli.command()
@plugin_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def plugins(ctx: click.Context, plugins: tuple[str, ...], as_json: bool) -> None:
    """Loaded plugins: name, version, source and what each registered."""
    registry = _registry(ctx, plugins)
    rows = [
        {"name": i.name, "source": i.source, "distribution": i.distribution, "version": i.version,
         "location": i.location, "registered": i.registered}
        for i in registry.plugins.values()
    ]
    # a plugin whose register hook raised is listed as skipped (the warning said why)
    rows += [{"name": name, "skipped": reason} for name, reason in getattr(registry, "skipped", {}).items()]
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    for r in rows:
        if "skipped" in r:
            click.echo(f"{r['name']} — SKIPPED: {r['skipped']}")
            continue
        what = "; ".join(f"{k}: {', '.join(v)}" for k, v in sorted(r["registered"].items())) or "nothing"
        version = f" {r['version']}" if r["version"] else ""
        click.echo(f"{r['name']} ({r['source']}{': ' + r['distribution'] if r['distribution'] else ''}{version}) — {what}")


@cli.command()
@click.argument("run_dirs", metavar="RUN_DIR...", nargs=-1, required=True,
                type=click.Path(file_okay=False, path_type=Path))
@plugin_option
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output directory, everything is written inside it (default: RUN_DIR/leaderboard).")
@click.pass_context
def leaderboard(ctx: click.Context, run_dirs: tuple[Path, ...], plugins: tuple[str, ...], out: Path | None) -> None:
    """Render leaderboard tables (md, csv, json, plots) from finished run directories into --out.

    In --out, a run with --set overrides is written as <suite>+<hash8>, like `publish` does.
    """
    from . import leaderboard as lb
    from .results import RunDir

    registry = _registry(ctx, plugins)
    for run_dir in run_dirs:
        if not run_dir.is_dir():
            raise UserError(f"{run_dir}: no such run directory")
        problems: list[str] = []
        # in a shared --out an override run must not take the suite's name; inside its own run directory it may
        name = lb.published_name(RunDir(run_dir).read_manifest()) if out is not None else None
        for path in lb.render(run_dir, out or run_dir / "leaderboard", registry, name=name, problems=problems):
            click.echo(f"wrote {path}")
        for problem in problems:
            click.echo(f"warning: {run_dir}: {problem}", err=True)


def _publish_bundles(ctx: click.Context, published: dict[str, Any], out: Path, cache_dir: Path | None,
                     plugins: tuple[str, ...]) -> None:
    """``publish --bundle``: each published run's bundle as ``<out>/<name>.bundle.tar.gz``, replacing the one an
    earlier publish wrote there; a run that cannot be bundled (a benchmark that declares its own matrices, a
    missing cache entry) is named with its one-line reason and the others go on."""
    from .bundle import export

    registry = _registry(ctx, plugins)
    for name, run in published.items():
        target = out / f"{name}.bundle.tar.gz"
        try:
            if target.is_file():
                target.unlink()  # the name is publish's own: an earlier publish --bundle wrote it
            export(run, target, cache_dir=cache_dir, registry=registry)
        except UserError as exc:
            click.echo(f"no bundle for {name}: {exc}", err=True)
            continue
        click.echo(f"wrote the bundle of {name}: {target} ({target.stat().st_size / 1e6:.1f} MB)")


def _renames(values: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for text in values:
        old, sep, new = text.partition("=")
        if not sep or not old or not new:
            raise UserError(f"--rename {text}: expected OLD=NEW, e.g. --rename quick+1a2b3c4d=quick-2seeds")
        out[old] = new
    return out


def _publish_claims(out: Path, other_options: bool) -> None:
    """``publish --claims-only``: rewrite ``<out>/claims.md`` from the boards already in ``out``."""
    from . import claims

    if other_options:
        raise UserError("publish --claims-only rereads the boards in --out; it takes no RUNS, --rename or --bundle")
    if not out.is_dir() or not any(out.glob("*.json")):
        raise UserError(f"publish --claims-only: no boards (<name>.json) in {out}; publish runs there first")
    problems: list[str] = []
    path = claims.write(out, problems)
    for problem in problems:
        click.echo(f"warning: {problem}", err=True)
    click.echo(f"wrote {path} ({len(claims.load_claims())} claims)")


@cli.command()
@click.argument("paths", metavar="[RUNS]...", nargs=-1, type=click.Path(file_okay=False, path_type=Path))
@plugin_option
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("leaderboards"),
              show_default=True, help="Output directory (everything is written inside it).")
@click.option("--allow-dirty", is_flag=True,
              help="Also publish runs made from a source tree with uncommitted changes.")
@click.option("--rename", "renames", multiple=True, metavar="OLD=NEW",
              help="Publish a run under another name, e.g. quick+1a2b3c4d=quick-2seeds; a shipped suite's name only "
                   "for a run of a suite that extends it (paper-mlp-cpu=paper-mlp), listed as a cut.")
@click.option("--bundle", "with_bundles", is_flag=True,
              help="Also write each published run's benchmark bundle beside its board, as <name>.bundle.tar.gz "
                   "(from the stage cache the run used; see docs/bundles.md).")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="--bundle: the stage cache the runs used (default as for `run`).")
@click.option("--claims-only", is_flag=True,
              help="Only rewrite <out>/claims.md from the boards already in --out (no runs read or rendered).")
@click.pass_context
def publish(ctx: click.Context, paths: tuple[Path, ...], plugins: tuple[str, ...], out: Path, allow_dirty: bool,
            renames: tuple[str, ...], with_bundles: bool, cache_dir: Path | None, claims_only: bool = False) -> None:
    """Render the latest run of every suite under RUNS (default: runs/) plus index.html and README.md.

    \b
    A run with --set overrides is published as <suite>+<hash8>, never under
    the suite's own name; its board says what was set. --rename OLD=NEW
    gives it a readable name and removes what publish wrote under OLD.
    Runs from a modified source tree are skipped unless --allow-dirty; every
    skipped run is listed with the reason. A run with no recorded source
    revision (from an installed wheel) is published with a warning.

    \b
    --rename CUT=FULL publishes a run of suite CUT under the shipped name FULL
    only when CUT extends FULL (a declared cut, e.g. paper-mlp-cpu=paper-mlp);
    the board then lists every setting that differs from FULL and why.

    \b
    Every publish also rewrites claims.md (each seed claim against the board
    that tests it, from simbench/claims.toml); --claims-only does only that.
    """
    if claims_only:
        _publish_claims(out, bool(paths or renames or with_bundles))
        return
    from .api import list_suites, shipped_suites
    from .publishing import publish as publish_runs
    from .results import RunDir

    suites = {row["name"]: Path(row["path"]) for row in list_suites()}
    report = publish_runs(list(paths) or [Path("runs")], out, _registry(ctx, plugins), allow_dirty=allow_dirty,
                          rename=_renames(renames), suites=suites, shipped=shipped_suites())
    from .site import subtitle

    moved = set(_renames(renames).values())
    for name, run in report.published.items():
        prov = RunDir(run).read_manifest()
        suite = prov.get("suite") if isinstance(prov.get("suite"), dict) else {}
        what = subtitle({"suite": suite.get("name"), "overrides": suite.get("overrides")}) if "+" in name else ""
        hint = f"; give it a readable name with --rename {name}=NEW" if what and name not in moved else ""
        click.echo(f"published {name} from {run}" + (f" ({what}{hint})" if what else ""))
    for old, new in _renames(renames).items():
        gone = [p for p in report.removed if p.name.startswith(f"{old}.") or p.parent.name == f"{old}_plots"]
        if gone:
            click.echo(f"removed the {len(gone)} files publish wrote for {old} in {out} (the board moved to {new})")
    for run, why in report.skipped:
        click.echo(f"skipped {run}: {why}", err=True)
    for problem in report.problems:
        click.echo(f"warning: {problem}", err=True)
    if with_bundles:
        _publish_bundles(ctx, report.published, out, cache_dir, plugins)
    weight = report.weight
    click.echo(f"wrote {len(report.written)} files to {out} (index.html, README.md and one leaderboard per suite)"
               + (f"; index.html with its first screen's figures: {weight['first_screen'] / 1e6:.2f} MB, with every "
                  f"figure it shows: {weight['all'] / 1e6:.2f} MB" if weight else ""))


@cli.command()
@click.argument("perturbation")
@plugin_option
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE",
              help="A perturbation parameter (TOML value), e.g. --param 'corruptions=[\"fog\"]'.")
@click.option("--data", "dataset", default="digits28", show_default=True, help="Dataset the images come from.")
@click.option("--n", "n_images", default=6, show_default=True, type=click.IntRange(1, 20), help="Images per row.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("gallery.png"),
              show_default=True)
@click.pass_context
def show(ctx: click.Context, perturbation: str, plugins: tuple[str, ...], params: tuple[str, ...], dataset: str,
         n_images: int, seed: int, out: Path) -> None:
    """Write a picture of every variant of an input PERTURBATION on a few test images."""
    from .gallery import render_gallery
    from .suite import parse_override
    from .types import PerturbContext, RunContext

    registry = _registry(ctx, plugins)
    values = {}
    for text in params:
        keys, value = parse_override(text)
        values[".".join(keys)] = value
    obj, key, message = registry.configure("perturbation", perturbation, values)
    if obj is None:
        raise UserError(f"--param {key}: {message} [perturbation {perturbation!r}]")
    data_obj, key, message = registry.configure("dataset", dataset, {})
    if data_obj is None:
        raise UserError(f"--data {dataset}: {message}")
    data = data_obj.load(RunContext(seed=seed))
    x, y = data.test.x, data.test.y
    # one image per class first, so the rows show different inputs
    picks = [int((y == c).nonzero()[0][0]) for c in y.unique().tolist()][:n_images] if y.dim() == 1 else []
    picks += [i for i in range(len(y)) if i not in picks][: n_images - len(picks)]
    try:
        path = render_gallery(obj, x[picks], out, PerturbContext(seed=seed, data=data), labels=y[picks])
    except UserError:
        raise
    except Exception as exc:  # e.g. an attack, which needs trained models: say so in one line
        raise UserError(f"perturbation {perturbation!r} cannot be shown on bare images: {exc}") from None
    click.echo(f"wrote {path}")


@cli.group()
def new() -> None:
    """Start a plugin package: simbench new metric NAME."""


@new.command("metric")
@click.argument("name")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("."), show_default=True,
              help="Directory in which simbench-NAME/ is created.")
def new_metric(name: str, out: Path) -> None:
    """Write simbench-NAME/: a metric plugin package with its entry point and conformance test."""
    from .registry import build_registry
    from .scaffold import new_metric as write

    files = write(name, out, taken=build_registry().names("metric"))  # a registered name would clash once installed
    root = files[0].parent
    click.echo(f"wrote {root}/ ({', '.join(str(f.relative_to(root)) for f in files)})")
    click.echo(f"next: cd {root} && pip install -e '.[dev]' && pytest")


# -- datasets installed once per user (simbench/datastore.py) --------------------


@cli.group("data")
def data_group() -> None:
    """Install a dataset once, where the suites find it: simbench data mnist --from DIR.

    Files go to $SIMBENCH_DATA_DIR, else the user data directory.
    """


@data_group.command("mnist", short_help="Check MNIST's sha256 and install it where the suites look.")
@click.option("--from", "source", required=True, type=click.Path(file_okay=False, path_type=Path), metavar="DIR",
              help="A folder holding MNIST as parquet files in the hub's schema: train*.parquet and test*.parquet.")
@click.option("--no-verify", is_flag=True,
              help="Install files whose sha256 is not a known MNIST copy (their hash still enters each suite's "
                   "identity).")
def data_mnist(source: Path, no_verify: bool) -> None:
    """Check MNIST's sha256 and copy it into the user data directory; the MNIST suites then need no
    SIMBENCH_MNIST_DIR."""
    import os

    from .datastore import DATASETS, install

    target, digests = install("mnist", source, verify=not no_verify)
    click.echo(f"installed MNIST in {target} "
               f"({', '.join(f'{split}.parquet sha256 {d[:12]}…' for split, d in digests.items())})")
    env = DATASETS["mnist"].env
    if os.environ.get(env) is not None:
        click.echo(f"note: {env} is set ({os.environ[env]}) and wins over this copy; unset it to use this one")
    else:
        click.echo("the MNIST suites now find it with no environment variable, e.g. simbench run paper-mlp-cpu")


# -- benchmark bundles (docs/bundles.md) ----------------------------------------


@cli.group("bundle")
def bundle_group() -> None:
    """Benchmark bundles: what a run measured, to rank new metrics against (docs/bundles.md)."""


@bundle_group.command("export")
@click.argument("run_dir", metavar="RUN_DIR", type=click.Path(file_okay=False, path_type=Path))
@click.argument("out", metavar="OUT", type=click.Path(path_type=Path))
@plugin_option
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path),
              help="The stage cache the run used, read only "
                   "(default $SIMBENCH_CACHE_DIR, else the user cache directory).")
@click.option("--suite", "suite_file", default=None, metavar="SUITE",
              help="The run's suite (a name or a file), if it is no longer at the path its manifest records.")
@click.option("--weights/--no-weights", default=None,
              help="Bundle every model's dense weights (default: when the suite has a weight metric).")
@click.pass_context
def bundle_export(ctx: click.Context, run_dir: Path, out: Path, plugins: tuple[str, ...], cache_dir: Path | None,
                  suite_file: str | None, weights: bool | None) -> None:
    """Write the bundle of the finished run RUN_DIR to OUT (a new directory, or .tar/.tar.gz/.zip)."""
    from .bundle import export

    export(run_dir, out, cache_dir=cache_dir, suite_path=resolve_suite(suite_file) if suite_file else None,
           weights=weights,
           registry=_registry(ctx, plugins), log=click.echo)
    size = out.stat().st_size if out.is_file() else sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    click.echo(f"wrote {out} ({size / 2**20:.1f} MiB)")


@bundle_group.command("verify")
@click.argument("source", metavar="BUNDLE")
def bundle_verify(source: str) -> None:
    """Check a bundle (directory, archive or hf://OWNER/NAME): format, and every file's size and sha256."""
    from .bundle import open_bundle

    b = open_bundle(source)
    click.echo(f"{source}: ok (format {b.doc['format_version']}, suite {b.suite['name']} "
               f"{str(b.suite['sha256'])[:8]}, {b.doc['n_models']} models, {len(b.doc['probe_sets'])} probe sets, "
               f"{len(b.doc['metrics'])} metrics, {len(b.doc['files'])} files)")


@cli.command("score")
@click.argument("metrics", metavar="METRIC...", nargs=-1, required=True)
@click.option("--bundle", "source", required=True, metavar="BUNDLE",
              help="A bundle directory, a .tar/.tar.gz/.zip of one, or hf://OWNER/NAME[@REVISION].")
@plugin_option
@click.option("--suite", "suite_file", default=None, metavar="SUITE",
              help="Refuse the bundle unless it is a run of this suite (a name or a path).")
@click.option("--metric", "names", multiple=True, metavar="NAME",
              help="Score only these of the metrics the METRIC files register (repeatable).")
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run directory of the scoring run (default runs/<suite>-<hash>).")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Stage cache for the new metric's matrices "
                   "(default $SIMBENCH_CACHE_DIR, else the user cache directory).")
@click.option("--device", default="cpu", show_default=True, help="Where the new metric runs: cpu, cuda, auto.")
@click.option("--fresh", is_flag=True, help="Delete the scoring run directory first instead of resuming.")
@click.option("--allow-changed-benchmark", is_flag=True,
              help="Rank even if this simbench's benchmarks no longer reproduce the bundle's published numbers.")
@click.option("--quiet", "-q", is_flag=True, help="Print only the files written.")
@click.pass_context
def score_cmd(ctx: click.Context, metrics: tuple[str, ...], source: str, plugins: tuple[str, ...],
              suite_file: str | None, names: tuple[str, ...], out: Path | None, cache_dir: Path | None,
              device: str, fresh: bool, allow_changed_benchmark: bool, quiet: bool) -> None:
    """Rank METRIC (a plugin file, or a registered metric's name) against a bundle, without retraining.

    Computes only the new metric's matrices on the bundled representations, reruns the benchmarks with it
    among the published metrics and writes the run directory and its leaderboard.
    """
    from .report import report_run, summary_lines
    from .scoring import score_bundle

    from .api import load_suite

    files = tuple(ctx.find_root().obj.get("plugins", ())) + plugins
    suite = load_suite(suite_file, plugins=files) if suite_file else None
    runner = score_bundle(list(metrics), source, suite=suite, out=out, cache_dir=cache_dir, plugins=files,
                          names=names, device=device, fresh=fresh, strict=not allow_changed_benchmark)
    result = runner.run_dir
    if not runner.reproduced["ok"]:
        click.echo(f"warning: this simbench's benchmarks do not reproduce the bundle's published numbers (max "
                   f"|difference| {runner.reproduced['max_abs_diff']}); every number on this board is this code's",
                   err=True)
    done = report_run(result, runner.registry, result.path / "leaderboard")
    if not quiet:
        click.echo(f"cells computed {runner.computed} (the new metric's and the benchmarks'), reused "
                   f"{runner.reused} from the bundle; cache hits {runner.cache.hits}")
        console = _console()
        for line in summary_lines(done.tables, console.width if console.is_terminal else 80,
                                  wrap=console.is_terminal):
            click.echo(line)
    for path in done.written:
        if path.suffix in {".md", ".csv", ".json"}:
            click.echo(f"wrote {path}")
    click.echo(f"results: {result.path}")


#: the arguments of the command being run (``main``'s ``argv``), for the resume line after Ctrl-C
_ARGV: list[str] | None = None


def main(argv: list[str] | None = None) -> None:
    """Console entry point: user mistakes print one line and exit 2, never a traceback."""
    global _ARGV
    _ARGV = list(argv) if argv is not None else sys.argv[1:]
    try:
        cli.main(args=argv, prog_name="simbench", standalone_mode=False)
    except UserError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2 if exc.exit_code == 2 else exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted; rerun the same command to resume", err=True)
        sys.exit(130)
    except OSError as exc:  # disk full, read-only or vanished directory: one line, exit 3
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        click.echo(f"error: {where}{exc.strerror or exc}", err=True)
        sys.exit(3)
    except RecursionError:
        click.echo("error: input nested too deeply", err=True)
        sys.exit(2)


if __name__ == "__main__":  # pragma: no cover
    main()
