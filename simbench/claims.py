"""The claims page: every seed claim against the board that tests it, generated from the boards.

``simbench/claims.toml`` holds the declarative part of each claim (its text, seed and section, the seed's own
number, which board tests it, which cells of that board's JSON give the board's number, the verdict rule and the
known protocol deviations).  :func:`render` reads the published boards (``<out>/<board>.json``) and writes one row
per claim; no board number is ever typed into the data file, so a republished board changes the page and nothing
else has to be edited.  :func:`write` is what ``simbench publish`` (and ``simbench publish --claims-only``) call.

Selectors.  A board's number is a list of cells, each ``{table, where, column}``: the table with that ``key`` in
the board's ``tables`` (a multi-benchmark board's prefixed key, e.g. ``survey_transfer.verdict``, also matches its
unprefixed form), the one row whose cells equal every ``where`` entry, and the cell in ``column``; ``label`` names
it on the page and ``digits`` rounds a float (default 3).  ``{field = "verdict"}`` reads a top-level field.

Verdict rules (``verdict.rule``):

- ``board``: the board's own verdict cell (a selector); ``map`` renames its values (``yes`` -> ``reproduced``);
  with ``cells`` (a list of labelled selectors) one verdict when every cell agrees, else each cell's.
- ``compare``: counts how many of the board's numbers satisfy ``op value`` (``<``, ``<=``, ``>``, ``>=``);
  ``then`` when at least ``at_least`` do (default: all), else ``else``.
- ``spearman``: the first two numbers are Spearman's rho and n; the two-sided p of rho under independence
  (exact over all n! orders for n <= 8, Student's t otherwise); ``then`` when rho > 0 and p < ``alpha``
  (default 0.05), else ``not significant``.
- ``best_set``: in a functional-agreement ``ranking`` table, ``then`` when ``metric`` is alone in the best set,
  ``not significant`` when it shares it, ``not reproduced`` when it is outside it.

A claim with ``board = ""`` has no offline board (the experiment is not run); one whose board file is missing gets
a row saying so.
"""
from __future__ import annotations

import itertools
import json
import math
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import UserError

#: the page publish writes beside the boards
CLAIMS_FILE = "claims.md"
#: the declarative claims, shipped with the package
DATA_FILE = Path(__file__).with_name("claims.toml")

_OPS = {"<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}


class SelectorError(Exception):
    """A selector that does not name exactly one cell of the board (the message says which part failed)."""


@dataclass(frozen=True)
class Claim:
    """One seed claim as declared in ``claims.toml`` (see the module docstring for the fields)."""

    id: str
    seed: str
    section: str
    claim: str
    seed_number: str
    board: str
    numbers: tuple[Mapping[str, Any], ...] = ()
    verdict: Mapping[str, Any] = field(default_factory=dict)
    test: str = ""
    deviations: tuple[str, ...] = ()


@dataclass(frozen=True)
class Row:
    """A claim as rendered: the board's number and the verdict read or computed from the board's JSON."""

    claim: Claim
    board_number: str
    verdict: str
    problem: str | None = None


_KEYS = {"id", "seed", "section", "claim", "seed_number", "board", "numbers", "verdict", "test", "deviations"}


def load_claims(path: Path | None = None) -> list[Claim]:
    """The claims declared in ``path`` (default: the package's ``claims.toml``), in file order.

    Raises :class:`UserError` naming the file and the claim for an unknown key, a missing field or a duplicate id.
    """
    path = Path(path or DATA_FILE)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise UserError(f"{path}: cannot read the claims ({exc})") from None
    out: list[Claim] = []
    seen: set[str] = set()
    for i, entry in enumerate(data.get("claim", [])):
        where = f"{path}: claim {entry.get('id', i + 1)!r}"
        unknown = set(entry) - _KEYS
        if unknown:
            raise UserError(f"{where}: unknown key(s) {', '.join(sorted(unknown))} "
                            f"(expected {', '.join(sorted(_KEYS))})")
        missing = [k for k in ("id", "seed", "section", "claim", "seed_number", "board") if k not in entry]
        if missing:
            raise UserError(f"{where}: missing {', '.join(missing)}")
        if entry["id"] in seen:
            raise UserError(f"{where}: duplicate id")
        seen.add(entry["id"])
        if entry["board"] and not entry.get("numbers"):
            raise UserError(f"{where}: a claim with a board needs `numbers` (the cells that give the board's number)")
        rule = dict(entry.get("verdict", {})).get("rule")
        if entry["board"] and rule not in {"board", "compare", "spearman", "best_set"}:
            raise UserError(f"{where}: verdict.rule must be board, compare, spearman or best_set, not {rule!r}")
        out.append(Claim(id=str(entry["id"]), seed=str(entry["seed"]), section=str(entry["section"]),
                         claim=str(entry["claim"]), seed_number=str(entry["seed_number"]), board=str(entry["board"]),
                         numbers=tuple(entry.get("numbers", ())), verdict=dict(entry.get("verdict", {})),
                         test=str(entry.get("test", "")), deviations=tuple(entry.get("deviations", ()))))
    return out


def _table(board: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    tables = [t for t in board.get("tables", []) if isinstance(t, dict)]
    exact = [t for t in tables if t.get("key") == key]
    if not exact:  # a multi-benchmark board prefixes its tables with the benchmark's name
        exact = [t for t in tables if str(t.get("key", "")).rpartition(".")[2] == key]
    if not exact:
        raise SelectorError(f"no table {key!r} (tables: {', '.join(str(t.get('key')) for t in tables)})")
    return exact[0]


def select(board: Mapping[str, Any], selector: Mapping[str, Any]) -> Any:
    """The one value ``selector`` names in the board's JSON ``board`` (see the module docstring)."""
    if "field" in selector:
        if selector["field"] not in board:
            raise SelectorError(f"no field {selector['field']!r}")
        return board[selector["field"]]
    table = _table(board, str(selector.get("table")))
    columns = list(table.get("columns", []))
    where = dict(selector.get("where", {}))
    for name in [*where, selector.get("column")]:
        if name not in columns:
            raise SelectorError(f"table {table.get('key')!r} has no column {name!r}")
    rows = [r for r in table.get("rows", []) if all(r[columns.index(k)] == v for k, v in where.items())]
    if len(rows) != 1:
        raise SelectorError(f"table {table.get('key')!r}: {len(rows)} rows where {where} (expected one)")
    return rows[0][columns.index(selector["column"])]


def _format(value: Any, digits: int = 3) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.{digits}f}".replace("-", "−")
    return str(value)


def spearman_p(rho: float, n: int) -> float:
    """Two-sided p of Spearman's ``rho`` over ``n`` untied pairs under independence: exact (all n! orders) for
    n <= 8, Student's t approximation above."""
    if n < 3:
        return 1.0
    if n <= 8:
        d_obs = (1 - rho) * n * (n * n - 1) / 6  # sum of squared rank differences for this rho
        d_ref = (n * n * n - n) / 6  # the d of rho = 0 (half of the largest d, that of reversed ranks)
        base = range(n)
        count = total = 0
        for perm in itertools.permutations(base):
            d = sum((i - p) ** 2 for i, p in zip(base, perm))
            total += 1
            count += abs(d - d_ref) >= abs(d_obs - d_ref) - 1e-9
        return count / total
    if abs(rho) >= 1:
        return 0.0
    t = rho * math.sqrt((n - 2) / (1 - rho * rho))
    from scipy import stats

    return float(2 * stats.t.sf(abs(t), n - 2))


def _verdict(claim: Claim, board: Mapping[str, Any], values: list[Any]) -> str:
    rule = dict(claim.verdict)
    kind = rule.get("rule")
    if kind == "board":
        names = dict(rule.get("map", {}))
        if "cells" not in rule:
            text = _format(select(board, rule))
            return str(names.get(text, text))
        found = [(cell.get("label", ""), str(names.get(_format(select(board, cell)), _format(select(board, cell)))))
                 for cell in rule["cells"]]
        if len({v for _, v in found}) == 1:
            return found[0][1]
        return "; ".join(f"{label}: {v}" for label, v in found)
    if kind == "compare":
        op = _OPS[str(rule["op"])]
        numeric = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if len(numeric) != len(values):
            raise SelectorError("rule compare needs numeric cells")
        hits = sum(op(v, float(rule["value"])) for v in numeric)
        need = int(rule.get("at_least", len(numeric)))
        word = rule.get("then", "reproduced") if hits >= need else rule.get("else", "not reproduced")
        return f"{word} ({hits} of {len(numeric)} {rule['op']} {rule['value']}; needs {need})"
    if kind == "spearman":
        rho, n = float(values[0]), int(values[1])
        p = spearman_p(rho, n)
        alpha = float(rule.get("alpha", 0.05))
        how = "exact" if n <= 8 else "t approx."
        word = rule.get("then", "reproduced") if rho > 0 and p < alpha else "not significant"
        return f"{word} (ρ = {_format(rho, 2)}, n = {n}, two-sided p = {p:.3f}, {how})"
    if kind == "best_set":
        table = _table(board, str(rule.get("table", "ranking")))
        cols = list(table["columns"])
        rows = table["rows"]
        best = [r[cols.index("metric")] for r in rows if r[cols.index("best_set")] == "yes"]
        metric = rule["metric"]
        if metric not in [r[cols.index("metric")] for r in rows]:
            raise SelectorError(f"metric {metric!r} is not ranked")
        if not best:
            return "no verdict (the board has no best set)"
        if best == [metric]:
            return f"{rule.get('then', 'reproduced')} ({metric} alone in the best set)"
        if metric in best:
            return f"not significant ({metric} is one of {len(best)} metrics in the best set)"
        return f"not reproduced ({metric} is outside the best set of {len(best)})"
    raise SelectorError(f"unknown verdict rule {kind!r}")


def evaluate(claims: Sequence[Claim], boards_dir: Path) -> list[Row]:
    """Each claim's row, reading the boards' JSON in ``boards_dir``; a selector that does not resolve gives a row
    with :attr:`Row.problem` set (rendered on the page, and a warning from publish)."""
    cache: dict[str, Any] = {}
    rows: list[Row] = []
    for claim in claims:
        if not claim.board:
            rows.append(Row(claim, "—", "no board: not run offline"))
            continue
        path = Path(boards_dir) / f"{claim.board}.json"
        if claim.board not in cache:
            try:
                cache[claim.board] = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                cache[claim.board] = None
        board = cache[claim.board]
        if board is None:
            rows.append(Row(claim, "—", f"no board: `{claim.board}` is not published here"))
            continue
        try:
            values = [select(board, s) for s in claim.numbers]
            shown = "; ".join((f"{s['label']} " if s.get("label") else "") + _format(v, int(s.get("digits", 3)))
                              for s, v in zip(claim.numbers, values))
            rows.append(Row(claim, shown, _verdict(claim, board, values)))
        except (SelectorError, KeyError, ValueError, TypeError) as exc:
            problem = f"claim {claim.id}: board {claim.board}: {exc}"
            rows.append(Row(claim, "—", "selector failed", problem))
    return rows


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def render(boards_dir: Path, claims: Sequence[Claim] | None = None) -> tuple[str, list[str]]:
    """The text of ``claims.md`` for the boards in ``boards_dir`` and the problems found (selectors that no
    longer resolve).  Deterministic: the same boards give the same bytes."""
    claims = load_claims() if claims is None else claims
    rows = evaluate(claims, boards_dir)
    shown: dict[str, str] = {}  # board -> its cell: link, what ran (a declared cut says so), models, revision
    for claim in claims:
        path = Path(boards_dir) / f"{claim.board}.json"
        if claim.board and claim.board not in shown and path.is_file():
            try:
                board = json.loads(path.read_text(encoding="utf-8"))
                prov = board.get("provenance", {})
            except (OSError, ValueError, AttributeError):
                continue
            label = str(board.get("label") or claim.board)
            what = label[len(claim.board):].strip() if label.startswith(claim.board) else ""
            shown[claim.board] = (f"[`{claim.board}`]({claim.board}.md)" + (f" {what}" if what else "")
                                  + (f", {prov['n_models']} models" if prov.get("n_models") else "")
                                  + f" @{str(prov.get('simbench_revision') or 'unknown')[:7]}")
    lines = [
        "# Seed claims against the boards",
        "",
        "Generated by `simbench publish` (or `simbench publish --claims-only`, which rereads the boards already",
        "here) from `simbench/claims.toml` and the boards' JSON in this folder; never edit it by hand.",
        "One row per seed claim: the seed's number, the board's number (read from `<board>.json`), the verdict",
        "and its test, and how the board's protocol deviates from the seed's. A claim with no offline board",
        "says so. Prose elsewhere links here instead of copying board numbers (docs/results.md).",
        "",
        "| id | seed claim | seed's number | board | board's number | verdict | test | protocol deviations |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        c = row.claim
        board = shown.get(c.board) or (f"`{c.board}` (missing)" if c.board else "none")
        lines.append("| " + " | ".join(_cell(x) for x in [
            f'<a id="{c.id}"></a>{c.id}', f"{c.claim} (seed {c.seed} {c.section})", c.seed_number, board,
            row.board_number, row.verdict, c.test or "—", "; ".join(c.deviations) or "—"]) + " |")
    problems = [r.problem for r in rows if r.problem]
    return "\n".join(lines) + "\n", problems


def write(out_dir: Path, problems: list[str] | None = None) -> Path:
    """Write ``<out_dir>/claims.md`` from the boards there; append selector problems to ``problems``."""
    text, found = render(Path(out_dir))
    if problems is not None:
        problems.extend(f"claims.md: {p}" for p in found)
    target = Path(out_dir) / CLAIMS_FILE
    if target.is_symlink():
        raise UserError(f"{target}: is a symbolic link; publish writes claims.md itself")
    target.write_text(text, encoding="utf-8")
    return target
