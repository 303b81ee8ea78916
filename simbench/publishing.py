"""Publishing policy: which runs become boards in ``leaderboards/``, under which names.

``simbench publish`` (:func:`publish`) finds the finished runs under the
given paths, keeps each suite's latest publishable run, checks every name
before anything is written, renders each board
(:func:`simbench.leaderboard.render_board`), and writes the site
(:mod:`simbench.site`) and ``claims.md`` (:mod:`simbench.claims`).  The
rules it holds:

* a run from a modified source tree is skipped unless ``allow_dirty``
  (:func:`simbench.provenance.is_dirty`);
* a shipped suite's name, or ``<name>+<hash8>``, only for a run made from
  that file with those overrides (:func:`suite_gives_run`);
* ``--rename CUT=FULL`` onto a shipped suite's name only for a *declared
  cut*, a run of a suite that ``extends`` it; the board lists every setting
  that differs (:func:`declared_cut`);
* reserved names (:data:`RESERVED_NAMES`), ``+`` in a rename target and
  names differing only in case are refused; a renamed board's old files go
  (:func:`_remove_board`, only what publish wrote).

Rendering one board is :mod:`simbench.leaderboard`'s; nothing here draws a table.
"""

from __future__ import annotations

import html
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .boardtext import plain_words
from .errors import UserError
from .leaderboard import (
    cut_value,
    own_plots,
    published_name,
    render_board,
    safe_name,
    shown_suite_path,
    write_text,
)
from .provenance import is_dirty, recorded_revision
from .registry import Registry
from .results import RunDir

__all__ = ["PAGE_BUDGET_BYTES", "RESERVED_NAMES", "PublishReport", "declared_cut", "find_runs", "publish",
           "suite_cut", "suite_gives_run"]


#: ``index.html`` plus the figures its first screen loads (those not ``loading="lazy"``) must stay below this
#: many bytes (:func:`simbench.site.page_weight`; publish reports a page over it as a problem).
PAGE_BUDGET_BYTES = 2_000_000


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
    rows = "".join(f"<tr><td><code>{html.escape(r['key'])}</code></td><td>{html.escape(cut_value(r['full']))}</td>"
                   f"<td>{html.escape(cut_value(r['run']))}</td></tr>" for r in prov["cut"])
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
            report.skipped.append((run, f"made from a modified source tree (revision {recorded_revision(manifest)}); "
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
            files, prov, tables = render_board(run_path, out_dir, registry, name, problems, cuts.get(name))
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
        files.append(write_text(out_dir, f"{name}.html", site.board_page(board, cut_html)))
        report.written.extend(files)
        report.published[name] = run_path
        report.problems.extend(f"{name}: {p}" for p in problems)
        boards.append(board)
    if not report.published:
        raise UserError("nothing could be published: " + "; ".join(f"{p}: {why}" for p, why in report.skipped))
    for old, new in rename.items():  # the board moved: what publish wrote under the old name goes
        if new in report.published and old not in report.published:
            report.removed.extend(_remove_board(out_dir, old))
    index = write_text(out_dir, "index.html", site.index_page(boards))
    report.written.append(index)
    weight = site.page_weight(index)
    if weight["first_screen"] > PAGE_BUDGET_BYTES:
        report.problems.append(f"index.html and the figures of its first screen are "
                               f"{weight['first_screen'] / 1e6:.1f} MB (budget {PAGE_BUDGET_BYTES / 1e6:.0f} MB)")
    report.weight = weight
    report.written.append(write_text(out_dir, "README.md", site.readme(boards)))
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
    for path in own_plots(out, name) + [out / f"{name}{suffix}" for suffix in BOARD_SUFFIXES]:
        if path.is_file() and not path.is_symlink():
            path.unlink()
            removed.append(path)
    plot_dir = out / f"{name}_plots"
    if plot_dir.is_dir() and not plot_dir.is_symlink() and not any(plot_dir.iterdir()):
        plot_dir.rmdir()
    return removed
