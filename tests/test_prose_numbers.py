"""Numbers in README.md and docs/*.md that come from a board cannot go stale.

The convention the test checks (docs/results.md, "Numbers in prose"):

- A text unit (a paragraph, a list item or a table row) is *about* a board when it names it: `` `sanity` ``,
  a link to ``leaderboards/sanity.md`` (``.html``, ``.json``) or ``(sanity.md)``, "the sanity board", or
  when it sits under a heading that does (a heading may also name ``suites/sanity.toml``).
- Every decimal number in such a unit (``0.690``, ``−0.05``, ``1.2 %``; not integers, not numbers with a unit
  of time, size or a ``×`` ratio, not section numbers such as ``§3.2``) must be one of that board's values at
  the printed precision (rounding-aware), **in context**: the value's row in the board JSON (its column name,
  the short labels of its row such as the metric or the map target, or, for a number inside a board string,
  the words just before it) must share words with the clause around the number. So "linear CKA 0.69" is checked
  against linear CKA's cells, not against any 0.69 anywhere in a 500 kB board.
- Numbers that are legitimately something else (the seed's own number, an older board's value kept as history)
  are listed in ``ALLOWED`` below with the reason; an entry that no longer matches anything fails the test too.

Prose that should not copy board numbers links to ``leaderboards/claims.md`` (generated from the boards).
"""

from __future__ import annotations

import bisect
import json
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BOARDS = {p.stem: p for p in sorted((ROOT / "leaderboards").glob("*.json"))}
FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

#: files that are records of earlier boards (every number in them is history), with the reason
EXEMPT_FILES = {
    "docs/reseed.md": "the record of the reseed: each row quotes the boards before and after it, both superseded",
}

#: (file, an exact snippet of the text that holds the number, the number as printed, why it is not a board value)
HISTORY = "an earlier board's value, quoted as history beside the current one"
WCKA_HEAD = "a finetune-cnn head's accuracy before and after a retraining; the sentence names only paper-mlp"
ALLOWED: list[tuple[str, str, str, str]] = [
    ("docs/performance.md", "| 1.37 (slower) |", "1.37", "a ratio of two timings of the executors, not a board value"),
    ("docs/bundles.md", "load average 3.8–5.8", "3.8", "the machine's load during a timing"),
    ("docs/bundles.md", "load average 3.8–5.8", "5.8", "the machine's load during a timing"),
    ("docs/wcka.md", "0.993 → 0.997", "0.993", WCKA_HEAD),
    ("docs/wcka.md", "0.993 → 0.997", "0.997", WCKA_HEAD),
    ("docs/zoos.md", "21 × (1.75·180", "1.75", "a fitted cost coefficient (seconds per model), not a board value"),
    ("docs/zoos.md", "(accuracy\n0.361", "0.361", "a model of an earlier training that no published board has (history)"),
]

_NUM = re.compile(r"(?<![\w.§/])([−+-](?=\d))?(\d+\.\d+)(?![\w.]*\d)(\s?%)?")
_UNIT = re.compile(r"\s?(s|ms|min|minutes?|h|hours?|seconds?|MB|GB|GiB|kB|KB|×|x)\b|×")
_SKIP_BEFORE = re.compile(r"(§|§[\d.]+[-–]|\bsections?|\btheorem|\bdefinition|\blemma|\bfig\.?|\btable|\bpython|\bversion|v)\s*$",
                          re.IGNORECASE)
_STRING_NUM = re.compile(r"(?<![\w.])([−+-](?=\d))?(\d+(?:\.\d+)?(?:e[−+-]?\d+)?)")
_STOP = {"the", "of", "a", "an", "to", "at", "and", "in", "is", "on", "for", "with", "by", "as", "from", "this",
         "that", "it", "not", "no", "yes", "ok", "or", "be", "are", "was", "its", "than", "p", "n"}


def _norm(text: str) -> str:
    text = text.replace("`", " ").replace("−", "-").lower()
    text = re.sub(r"\bk-nn\b", "knn", text)  # mutual k-NN, as the boards write mutual_knn
    return re.sub(r"\boff-diagonal\b", "offdiag", text)


#: words prose uses for a board's column names
_SYNONYMS = {"ρ": "spearman", "rho": "spearman", "r": "pearson"}


def _stem(word: str) -> str:
    word = _SYNONYMS.get(word, word)
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


def _tokens(text: str) -> frozenset[str]:
    words = (_stem(t) for t in re.split(r"[^\wρ²]+|_", _norm(text)))
    return frozenset(t for t in words if len(t) > 1 and t not in _STOP and not re.fullmatch(r"[\d.]+", t))


@dataclass(frozen=True)
class Fact:
    """A value of a board, the labels that name it (each a set of words) and, for a number printed inside a
    board string, its printed decimals (a string's "1 of 3" supports "1", not "1.000")."""

    value: float
    labels: tuple[frozenset[str], ...]
    decimals: int | None = None


#: a word in at most this many of a board's labels names a cell on its own
DISTINCT = 3
#: string columns that name other rows or hold prose, so they do not name the row they are in
NOT_ROW_LABELS = {"beaten_by", "aliases", "moved_a_lot", "barely_moved", "robust_metrics", "why", "mark",
                  "best_set", "status", "rank_set", "expected", "reproduced", "verdict", "function_preserved",
                  "finding", "most fragile mix", "most robust mix", "group means"}
#: a table with at most this many rows lets its column name alone name a cell
COLUMN_ROWS = 12
#: a table with more rows than this is per-pair or per-step detail: prose quotes summaries (claims.md, ALLOWED)
DETAIL_ROWS = 100


def _string_facts(text: str, labels: list[frozenset[str]]) -> list[Fact]:
    out = []
    for m in _STRING_NUM.finditer(text):
        try:
            value = float(m.group(0).replace("−", "-"))
        except ValueError:
            continue
        digits = m.group(2)
        decimals = len(digits.split(".")[1]) if "." in digits and "e" not in digits else (0 if "e" not in digits
                                                                                              else 99)
        before = _tokens(" ".join(re.split(r"\s+", text[:m.start()].strip())[-3:]))
        out.append(Fact(value, tuple(labels + [before]), decimals))
    return out


def _facts(node, key: str = "") -> list[Fact]:
    if isinstance(node, bool) or node is None:
        return []
    if isinstance(node, (int, float)):
        return [Fact(float(node), (_tokens(key),))] if math.isfinite(node) else []
    if isinstance(node, str):
        return _string_facts(node, [_tokens(key)])
    if isinstance(node, list):
        return [f for item in node for f in _facts(item, key)]
    if "columns" in node and "rows" in node:  # a board table: each cell is labelled by its column and its row
        out = _facts({k: v for k, v in node.items() if k not in ("columns", "rows")})
        if len(node["rows"]) > DETAIL_ROWS:
            return out
        columns = [str(c) for c in node["columns"]]
        for row in node["rows"]:
            row_labels = [_tokens(c) for name, c in zip(columns, row)
                          if isinstance(c, str) and c and name not in NOT_ROW_LABELS]
            for column, cell in zip(columns, row):
                # a column names a value on its own only in a short table; in a long one (a ranking of 14
                # metrics) "r = 0.60" must also name the row (the metric)
                labels = ([_tokens(column)] if len(node["rows"]) <= COLUMN_ROWS else []) + row_labels
                if isinstance(cell, str):
                    out += _string_facts(cell, labels)
                elif isinstance(cell, (int, float)) and not isinstance(cell, bool) and math.isfinite(cell):
                    out.append(Fact(float(cell), tuple(labels)))
        return out
    return [f for k, v in node.items() for f in _facts(v, str(k))]


_CACHE: dict[str, tuple[list[float], list[Fact], dict[str, int]]] = {}


def board_facts(name: str) -> tuple[list[float], list[Fact], dict[str, int]]:
    """The board's facts sorted by value, the sorted values (for bisecting) and, per word, in how many distinct
    labels of the board it occurs (a word in few labels, such as ``wcka`` or ``welch``, names a cell alone;
    a common one, such as ``cka``, only together with another word of the label)."""
    if name not in _CACHE:
        facts = sorted(_facts(json.loads(BOARDS[name].read_text(encoding="utf-8"))), key=lambda f: f.value)
        spread: dict[str, int] = {}
        for label in {label for f in facts for label in f.labels}:
            for word in label:
                spread[word] = spread.get(word, 0) + 1
        _CACHE[name] = ([f.value for f in facts], facts, spread)
    return _CACHE[name]


def names_in(text: str, heading: bool = False) -> set[str]:
    """The boards a unit of text (or a heading) names."""
    found = set()
    for name in BOARDS:
        e = re.escape(name)
        pattern = rf"`{e}`|leaderboards/{e}\.(?:md|html|json)|\({e}\.(?:md|html)\)|\b{e} board"
        if heading:
            pattern += rf"|suites/{e}\.toml"
        if re.search(pattern, text):
            found.add(name)
    return found


def units(text: str) -> list[tuple[int, str, set[str]]]:
    """(first line, text, boards named by the headings above it) for every paragraph, list item and table row
    outside code fences."""
    out: list[tuple[int, str, set[str]]] = []
    heads: list[tuple[int, set[str]]] = []
    current: list[str] = []
    start = 0
    fence = False

    def flush() -> None:
        if current:
            out.append((start, "\n".join(current), set().union(*[n for _, n in heads])))
            current.clear()

    for number, line in enumerate(text.split("\n"), 1):
        if line.lstrip().startswith("```"):
            flush()
            fence = not fence
            continue
        if fence:
            continue
        if not line.strip():
            flush()
        elif line.startswith("#"):
            flush()
            level = len(line) - len(line.lstrip("#"))
            heads = [(lv, n) for lv, n in heads if lv < level] + [(level, names_in(line, heading=True))]
        elif line.lstrip().startswith("|") or re.match(r"\s*(?:[-*]|\d+\.)\s", line):
            flush()
            start = number
            current.append(line)
            if line.lstrip().startswith("|"):
                flush()
        else:
            if not current:
                start = number
            current.append(line)
    flush()
    return out


def _clause(unit: str, start: int, end: int, header: list[str] | None = None) -> str:
    """The clause around a number: between the nearest sentence, ';' or table-cell boundaries; in a table row,
    with the column's header and the row's first cell, which name what the cell holds."""
    if header is not None and unit.lstrip().startswith("|"):
        cells = unit.split("|")
        index = unit[:start].count("|") - 1
        context = [header[index] if 0 <= index < len(header) else "", cells[1] if len(cells) > 1 else ""]
        return " ".join(context) + " | " + _clause(unit, start, end)
    bounds = [m.end() for m in re.finditer(r"[.;!?](?=\s)|\||\n\s*\n", unit[:start])]
    after = re.search(r"[.;!?](?=\s)|\||$", unit[end:])
    return unit[(bounds[-1] if bounds else 0):end + (after.start() if after else 0)]


def _previous_is_table(text: str, line: int) -> bool:
    lines = text.split("\n")
    return line >= 2 and lines[line - 2].lstrip().startswith("|")


def numbers(unit: str):
    """(match, value, decimals, is_percent) for each decimal number in the unit that the convention checks."""
    for m in _NUM.finditer(unit):
        sign, digits, percent = m.group(1), m.group(2), m.group(3)
        if _SKIP_BEFORE.search(unit[max(0, m.start() - 12):m.start()]):
            continue
        if re.search(r"[≥≤<>±]\s*$", unit[max(0, m.start() - 3):m.start()]):
            continue  # a bound or a spread, not a value
        if not percent and _UNIT.match(unit, m.end()):
            continue
        value = float(digits) * (-1 if sign in ("-", "−") else 1)
        yield m, value, len(digits.split(".")[1]), bool(percent)


def supported(value: float, decimals: int, percent: bool, clause: str, boards: set[str]) -> bool:
    """Whether one of ``boards`` holds ``value`` at this precision with a label that the clause names: two words
    of the label, or one word that few of the board's labels contain (``DISTINCT``)."""
    words = _tokens(clause)
    candidates = [(value, decimals, 0.5 * 10 ** -decimals)]
    if words & {"drop", "fall", "loss"}:  # "a drop of 4.1" is a board's change of -4.1
        candidates.append((-value, decimals, 0.5 * 10 ** -decimals))
    if percent:
        candidates.append((value / 100, decimals + 2, 0.5 * 10 ** -(decimals + 2)))
    for name in boards:
        values, facts, spread = board_facts(name)
        for target, places, tol in candidates:
            tol += 1e-9 * max(1.0, abs(target))
            i = bisect.bisect_left(values, target - tol)
            while i < len(values) and values[i] <= target + tol:
                fact = facts[i]
                i += 1
                if fact.decimals is not None and fact.decimals < places:
                    continue
                for label in fact.labels:
                    shared = label & words
                    if len(shared) >= min(len(label), 2) or any(spread[w] <= DISTINCT for w in shared):
                        return True
    return False


@dataclass(frozen=True)
class Finding:
    """A number in prose that the named boards do not hold."""

    file: str
    line: int
    number: str
    boards: tuple[str, ...]
    clause: str

    def __str__(self) -> str:
        return (f"{self.file}:{self.line}: {self.number!r} is in no cell of {', '.join(self.boards)} that the "
                f"clause names: ...{' '.join(self.clause.split())[-160:]}...")


def check(rel: str, text: str, allowed: list[tuple[str, str, str, str]],
          used: set[int]) -> tuple[list[Finding], int]:
    """Every unsupported number of the markdown ``text`` of file ``rel`` (and how many numbers it checked);
    ``used`` collects the indices of the ALLOWED entries that excused something."""
    findings, checked = [], 0
    header: list[str] | None = None
    for line, unit, heading_boards in units(text):
        if unit.lstrip().startswith("|"):
            if header is None or not _previous_is_table(text, line):
                header = unit.split("|")[1:]  # the first row of a table is its header
        else:
            header = None
        boards = names_in(unit) | heading_boards
        if not boards:
            continue
        for m, value, decimals, percent in numbers(unit):
            checked += 1
            clause = _clause(unit, m.start(), m.end(), header)
            if supported(value, decimals, percent, clause, boards):
                continue
            printed = {m.group(2), (m.group(1) or "") + m.group(2)}
            excused = [i for i, (f, snippet, number, _) in enumerate(allowed) if f == rel and number in printed
                       and any(s <= m.start(2) < s + len(snippet) for s in
                               (k.start() for k in re.finditer(re.escape(snippet), unit)))]
            if excused:
                used.update(excused)
                continue
            findings.append(Finding(rel, line + unit[:m.start()].count("\n"), m.group(0).strip(),
                                    tuple(sorted(boards)), clause))
    return findings, checked


def test_every_board_number_in_readme_and_docs_is_on_its_board():
    used: set[int] = set()
    findings, checked = [], 0
    for path in FILES:
        if path.relative_to(ROOT).as_posix() in EXEMPT_FILES:
            continue
        found, n = check(path.relative_to(ROOT).as_posix(), path.read_text(encoding="utf-8"), ALLOWED, used)
        findings += found
        checked += n
    # the convention covers the README's results table and the docs' result sections (fewer numbers since issue 26:
    # result prose links to leaderboards/claims.md instead of copying board numbers)
    assert checked > 80
    assert not findings, "numbers that no board holds (fix the prose, or ALLOWED with a reason):\n" + \
        "\n".join(map(str, findings))
    stale = [ALLOWED[i] for i in range(len(ALLOWED)) if i not in used]
    assert not stale, f"ALLOWED entries that excuse nothing any more (remove them): {stale}"
    assert all(len(entry) == 4 and entry[3].strip() for entry in ALLOWED)  # every exemption says why


def _unit_check(text: str) -> list[Finding]:
    return check("docs/example.md", text, [], set())[0]


@pytest.mark.parametrize(("text", "wrong"), [
    ("On `sanity` the invertible map reaches linear CKA 0.298.", None),
    ("On `sanity` the invertible map reaches linear CKA 0.30.", None),  # the same value printed at 2 decimals
    ("On `sanity` the invertible map reaches linear CKA 0.31.", "0.31"),  # wrong in the second decimal
    ("On `sanity` class translation reaches linear CKA 0.69.", None),
    ("On `sanity` class translation reaches linear CKA 0.67.", "0.67"),  # the pre-reseed value
    ("`paper-mlp`: wCKA has the highest r, 0.672 [0.614, 0.722].", None),
    ("`paper-mlp`: wCKA has the highest r, 0.95.", "0.95"),
    ("`manipulation`: `all_min` keeps agreement 0.90 with the originals.", None),
    ("`manipulation`: `all_min` keeps agreement 0.80 with the originals.", "0.80"),
    ("Under `calibration`, wCKA reads 0.999 for adjacent epochs.", None),
    # the 100 + 100 board prints so many numbers that most 2-decimal values occur on it: a 4-decimal one
    ("Under `calibration`, wCKA reads 0.9871 for adjacent epochs.", "0.9871"),
    ("`finetune-cnn-digits`: wCKA 0.18, 10th.", None),
    ("`finetune-cnn-digits`: wCKA 0.19, 10th.", "0.19"),  # the board's 0.1849 rounds to 0.18
    ("`survey-shift`: significant on the first unseen survey (Welch p = 0.021).", None),
    ("`survey-shift`: significant on the first unseen survey (Welch p = 0.067).", "0.067"),  # an older board's
    # one ReLU network's OOD 0-1 error (0.015 on the 3- and the 6-seed board; the mean moved 0.012 -> 0.013)
    ("`contamination`: one ReLU network's 0-1 error out of distribution is 1.5 %.", None),
    ("`contamination`: ReLU's 0-1 error out of distribution is 3.4 %.", "3.4 %"),
    ("Seed 003 §3.2 is tested by `sanity` in 12.5 s.", None),  # section numbers and timings are not checked
])
def test_the_check_catches_a_wrong_number_and_passes_the_right_one(text, wrong):
    findings = _unit_check(text + "\n")
    assert [f.number for f in findings] == ([wrong] if wrong else [])


def test_a_heading_that_names_a_board_covers_its_section():
    text = "## `sanity` (seed 003)\n\nThe invertible map reaches linear CKA 0.41.\n\n## Other\n\nCKA 0.41.\n"
    findings = _unit_check(text)
    assert [(f.number, f.boards) for f in findings] == [("0.41", ("sanity",))]


def test_a_table_cell_is_read_with_its_column_header_and_row(tmp_path, monkeypatch):
    # a board of our own (the published cosmo-shift board changes when it is rerun): two rows of a layer_maps table
    board = {"tables": [{"key": "layer_maps", "columns": ["model", "probe_set", "block_score"],
                         "rows": [["cosmo_cnn-temperature-h4-s0", "cosmo_shift/B", 0.973],
                                  ["cosmo_cnn-temperature-h4-s1", "cosmo_shift/B", 0.968]]}]}
    (tmp_path / "cosmo-shift.json").write_text(json.dumps(board), encoding="utf-8")
    monkeypatch.setattr(sys.modules[__name__], "BOARDS", {"cosmo-shift": tmp_path / "cosmo-shift.json"})
    monkeypatch.setattr(sys.modules[__name__], "_CACHE", {})
    text = ("### Result: `suites/cosmo-shift.toml`\n\n| model | probes | block score |\n|---|---|---|\n"
            "| temperature, seed 0 | B | 0.973 |\n| temperature, seed 1 | B | 0.958 |\n")
    assert [f.number for f in _unit_check(text)] == ["0.958"]  # the board has 0.968 for that model


def test_allowed_entries_excuse_only_their_own_number():
    text = "On `sanity` class translation once reached 0.82 and now 0.61.\n"
    allowed = [("docs/example.md", "once reached 0.82", "0.82", "history")]
    used: set[int] = set()
    findings = check("docs/example.md", text, allowed, used)[0]
    assert [f.number for f in findings] == ["0.61"] and used == {0}
