"""The published site: what a reader sees first (``index.html``, ``README.md``) and one page per board.

``simbench publish`` (:func:`simbench.publishing.publish`) renders each board's files
(``<name>.md|.csv|.json`` and plots) and hands them here.  This module decides

* **the verdict** of a board in one line (:func:`verdict`): for a functional-agreement
  ranking, the best set and the rank confidence set of the leader, or "no verdict
  (too few models)"; for a board that checks a paper's claims, how many it reproduced;
  otherwise the best rows of its headline table;
* **its headline figure** (:func:`headline_figure`): the forest plot when the board has
  one, else its first plot;
* **the order of the boards** (:func:`board_order`): the boards named in
  :data:`HEADLINE_BOARDS` first (the functional-agreement grids on real MNIST), then every
  other board on real data (a run that read data files), then boards on embedded or
  synthetic data; within a tier functional-agreement boards first, then by name;
* **the pages**: ``index.html`` is one card per board -- name, verdict, headline figure,
  the headline table collapsed -- and a sortable table of all boards; ``<name>.html``
  holds everything of one board (every table collapsed but the first, every figure);
  ``README.md`` lists the boards in the same order with their verdicts.

Figures fit the column and a phone (``max-width: 100%; height: auto``; the link opens
the full resolution); tables sort by a click on a header (a small inline script, no
framework, nothing loaded from the network: the pages work offline).

**Page weight.**  :data:`simbench.publishing.PAGE_BUDGET_BYTES` (2 MB) bounds what a
reader downloads to see the first screen: ``index.html`` plus the figures it loads
eagerly (the first board's headline figure; every other figure is
``loading="lazy"``).  :func:`page_weight` measures it and the whole index with every
figure it shows; publish reports a page over budget as a problem.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .boardtext import _fmt, headline_rows, md_text, plain_words
from .types import Table

#: boards shown first, in this order: the functional-agreement grids behind the project's answer
HEADLINE_BOARDS = ("paper-mlp", "finetune-cnn")
#: what the index says for a functional-agreement board below its ``min_clusters``
NO_VERDICT = "no verdict (too few models)"


@dataclass
class Board:
    """One published board as the site shows it."""

    name: str
    prov: Mapping[str, Any]
    tables: list[Table]
    plots: list[Path]
    problems: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        return verdict(self.tables)

    @property
    def figure(self) -> Path | None:
        return headline_figure(self.plots)

    @property
    def label(self) -> str:
        return variant_label(self.name, self.prov)


# ----------------------------------------------------------------------------
# What a board says: verdict, headline figure, label, order
# ----------------------------------------------------------------------------


def ranking_table(tables: Sequence[Table]) -> Table | None:
    """The first functional-agreement ranking among ``tables`` (a ``metric`` and a ``best_set`` column,
    one row per metric, ranked), or None."""
    for table in tables:
        cols = {str(c) for c in table.frame.columns}
        if {"metric", "best_set", "pearson_r"} <= cols and "group" not in cols and "probe_sets_of" not in cols:
            return table
    return None


def _yes(value: Any) -> bool:
    return str(value).strip().lower() in {"yes", "true", "1", "1.0"}


def _interval(row: Any, cols: Sequence[str]) -> str:
    for low in ("pearson_ci_low", "pearson_boot_ci_low"):
        high = low.replace("_low", "_high")
        if low in cols and high in cols:
            a, b = row[low], row[high]
            if isinstance(a, float) and isinstance(b, float) and math.isfinite(a) and math.isfinite(b):
                return f" [{_fmt(a)}, {_fmt(b)}]"
    return ""


def ranking_verdict(table: Table) -> str:
    """One line from a functional-agreement ranking: the best set and the leader's rank confidence set,
    or :data:`NO_VERDICT` (no rank sets: fewer resampling units than ``min_clusters``)."""
    frame = table.frame
    cols = [str(c) for c in frame.columns]
    if not len(frame):
        return "no metric ranked"
    ranked = frame
    if "pearson_r" in cols:
        finite = frame[[isinstance(v, float) and math.isfinite(v) for v in frame["pearson_r"]]]
        ranked = finite if len(finite) else frame
    leader = ranked.iloc[0]
    r = f"r = {_fmt(leader['pearson_r'])}{_interval(leader, cols)}" if "pearson_r" in cols else ""
    has_sets = "rank_set" in cols and any(str(v).strip() for v in frame["rank_set"])
    aliases = frame["aliases"] if "aliases" in cols else [""] * len(frame)
    best = [str(m) + (f" (= {a})" if str(a).strip() and str(a) != "nan" else "")
            for m, a, flag in zip(frame["metric"], aliases, frame["best_set"], strict=True) if _yes(flag)]
    title_no_verdict = "no verdict" in str(table.title)
    if title_no_verdict or not (has_sets or best):
        return f"{NO_VERDICT}; highest r: {leader['metric']} ({r})" if r else NO_VERDICT
    rank_set = str(leader["rank_set"]).strip() if "rank_set" in cols else ""
    lead = f"{leader['metric']} ({r}" + (f", rank set {rank_set}" if rank_set else "") + ")"
    total = len(frame)
    if len(best) == 1:
        return f"best: {lead}; every other metric is beaten"
    shown = ", ".join(best[:6]) + (f" and {len(best) - 6} more" if len(best) > 6 else "")
    return f"best set ({len(best)} of {total} metrics): {shown}; leader {lead}"


def _what(table: Table) -> str:
    """A verdict table's question as a short reference: "Does this run show what X reports (Y)?" -> "X, Y"."""

    title = plain_words(table.title).split(": ", 1)[-1].rstrip("?").strip()
    match = re.search(r"what (.+?) reports?\s*(?:\((.+)\))?$", title)
    if match:
        return match.group(1) + (f", {match.group(2)}" if match.group(2) else "")
    match = re.search(r"^[Ii]s (.+?) reproduced$", title)
    if match:
        return match.group(1)
    return title[:1].lower() + title[1:]


def _claims_verdict(table: Table) -> str | None:
    """"k of n reproduced" from a table with a ``reproduced`` column; ``(overall)`` rows, when there are,
    give their own summary (``observed``)."""
    frame = table.frame
    cols = [str(c) for c in frame.columns]
    if "reproduced" not in cols or not len(frame):
        return None
    first = cols[0]
    overall = frame[frame[first].astype(str) == "(overall)"]
    rows = frame[frame[first].astype(str) != "(overall)"]
    values = [v for v in rows["reproduced"] if str(v).strip() and not (isinstance(v, float) and math.isnan(v))]
    if not values and not len(overall):
        return None
    if len(overall) and "observed" in cols:
        texts = []
        for _, row in overall.iterrows():
            what = str(row[cols[1]]) if len(overall) > 1 and cols[1] != "observed" else ""
            texts.append(f"{what}: {row['observed']}" if what else str(row["observed"]))
        text = "; ".join(texts)
    else:
        text = f"{sum(_yes(v) for v in values)} of {len(values)} reproduced"
    return f"{text} ({_what(table)})"


def _finding_verdict(table: Table) -> str | None:
    """A ``finding`` table's ``reproduced`` statistic (1 = yes), or a table's ``verdict`` column."""
    frame = table.frame
    cols = [str(c) for c in frame.columns]
    if not len(frame):
        return None
    if "verdict" in cols:
        label = frame[cols[0]].astype(str)
        return "; ".join(f"{lab}: {text}" for lab, text in zip(label, frame["verdict"].astype(str), strict=True))
    if not {"statistic", "value"} <= set(cols):
        return None
    rows = frame[frame["statistic"].astype(str) == "reproduced"]
    if not len(rows):
        return None
    return f"{'reproduced' if _yes(rows['value'].iloc[0]) else 'not reproduced'} ({_what(table)})"


def _finding_rows(table: Table) -> str | None:
    """A ``finding`` table of ``statistic``/``value`` rows, in a few words (no reproduced statistic)."""
    frame = table.frame
    cols = [str(c) for c in frame.columns]
    if not str(table.key).endswith("finding") or not {"statistic", "value"} <= set(cols) or not len(frame):
        return None
    out = []
    for _, row in frame.head(2).iterrows():
        who = f"{row['metric']} " if "metric" in cols else ""
        out.append(f"{who}{str(row['statistic']).replace('_', ' ')} = {_fmt(row['value'])}"
                   + (f" (n = {row['n']})" if "n" in cols else ""))
    return f"{_what(table)}: " + "; ".join(out)


def verdict(tables: Sequence[Table]) -> str:
    """A board's answer in one line (see the module docstring)."""

    parts = []
    ranking = ranking_table(tables)
    if ranking is not None:
        parts.append(ranking_verdict(ranking))
    for table in tables:
        found = _claims_verdict(table) or _finding_verdict(table)
        if found:
            parts.append(found)
            break
    if not parts:
        found = next((f for f in map(_finding_rows, tables) if f), None)
        if found:
            parts.append(found)
    if not parts and tables:
        rows = headline_rows(tables[0], limit=3)
        title = plain_words(tables[0].title).split(": ", 1)[-1]
        if rows:
            parts.append(f"{title}: " + "; ".join(rows))
    return "; ".join(parts) or "no table"


def headline_figure(plots: Sequence[Path]) -> Path | None:
    """The forest plot when a board has one (the ranking with its intervals), else its first plot."""
    for plot in plots:
        if plot.name.endswith("_forest.png"):
            return plot
    return plots[0] if plots else None


def variant_label(name: str, prov: Mapping[str, Any]) -> str:
    """What a board is, readably: the name, and for an override variant the suite and what was set."""
    overrides = [str(o) for o in prov.get("overrides") or []]
    if prov.get("cut_from"):
        return f"{name} (a cut, run as suite {prov.get('suite')})"
    if overrides:
        return f"{prov.get('suite')} with {', '.join(overrides)}"
    return name


def subtitle(prov: Mapping[str, Any]) -> str:
    """What a board's heading adds to its name: for a cut, the suite that ran; for a variant, what was set."""
    overrides = [str(o) for o in prov.get("overrides") or []]
    if prov.get("cut_from"):
        return f"a cut of the full grid, run as suite {prov.get('suite')}"
    if overrides:
        return f"{prov.get('suite')} with {', '.join(overrides)}"
    return ""


def described(prov: Mapping[str, Any]) -> str:
    """What the board measures: the suite's description, except for an override variant, whose shipped
    description no longer holds -- it is described by what was overridden."""

    overrides = [str(o) for o in prov.get("overrides") or []]
    if overrides and not prov.get("cut_from"):
        return (f"A variant of suite {prov.get('suite')}, not the suite as shipped: "
                f"{', '.join(overrides)} (set with --set).")
    return plain_words(prov.get("description") or "")


def board_order(board: Board) -> tuple[Any, ...]:
    """Sort key: :data:`HEADLINE_BOARDS` in order, then boards on real data (the run read data files),
    then embedded/synthetic data; functional-agreement boards first within a tier, then by name."""
    if board.name in HEADLINE_BOARDS:
        return (0, HEADLINE_BOARDS.index(board.name), board.name)
    tier = 1 if board.prov.get("data_files") else 2
    return (tier, 0 if ranking_table(board.tables) is not None else 1, board.name)


def ordered(boards: Sequence[Board]) -> list[Board]:
    return sorted(boards, key=board_order)


# ----------------------------------------------------------------------------
# HTML
# ----------------------------------------------------------------------------

CSS = """
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:1100px;
padding:0.5rem 1rem 2rem;color:#222;line-height:1.4}
h1{font-size:1.5rem;margin:0.4rem 0 0.2rem}h2{font-size:1.2rem;margin:0 0 0.2rem}
h3{font-size:1rem;margin:1rem 0 0.3rem}
.lead{margin:0 0 0.6rem;color:#333;font-size:0.95rem}
.board{border-top:2px solid #333;padding:0.5rem 0 1rem}
.verdict{margin:0.2rem 0 0.4rem;font-size:1rem}.verdict b{color:#7a1f1f}
.description,.prov,.links{font-size:0.85rem;color:#555;margin:0.3rem 0}
figure{margin:0.3rem 0}
img{max-width:100%;height:auto;display:block;border:1px solid #ddd}
figure.headline img{width:auto;max-height:70vh}
figcaption{font-size:0.8rem;color:#555}
.scroll{overflow-x:auto;max-width:100%;margin:0.3rem 0 1rem;border:1px solid #eee}
table{border-collapse:collapse;font-size:0.8rem}
th,td{border:1px solid #ccc;padding:0.15rem 0.45rem;text-align:right;white-space:nowrap}
th{background:#f0f0f0}td:first-child,th:first-child{text-align:left}
table.sortable th{cursor:pointer;user-select:none}
th[aria-sort=ascending]::after{content:" \\25B2"}th[aria-sort=descending]::after{content:" \\25BC"}
table.boards td{white-space:normal;text-align:left;vertical-align:top}table.boards th{text-align:left}
details{margin:0.3rem 0}summary{cursor:pointer;font-weight:600}
.caption{font-style:italic;color:#555;font-size:0.85rem}.problem{color:#a00}
pre.why{white-space:pre-wrap;font-size:0.8rem;background:#f7f7f7;padding:0.4rem}
nav{font-size:0.85rem}nav a{margin-right:0.8rem}
"""

#: click (or Enter) on a header sorts its table; numbers as numbers, blanks last; nothing else
SORT_JS = """
(function(){
function key(row,i){var t=((row.cells[i]||{}).textContent||'').trim().replace('\\u2212','-');
var n=parseFloat(t);return isNaN(n)?t.toLowerCase():n}
function sort(th){var table=th.closest('table.sortable');if(!table)return;
var i=Array.prototype.indexOf.call(th.parentNode.children,th),body=table.tBodies[0];
var dir=th.getAttribute('aria-sort')==='ascending'?-1:1;
Array.prototype.forEach.call(th.parentNode.children,function(h){h.removeAttribute('aria-sort')});
th.setAttribute('aria-sort',dir>0?'ascending':'descending');
var rows=Array.prototype.slice.call(body.rows);
rows.sort(function(a,b){var x=key(a,i),y=key(b,i),nx=typeof x==='number',ny=typeof y==='number';
if(nx&&ny)return dir*(x-y);if(nx)return -1;if(ny)return 1;if(x===y)return 0;
if(x==='')return 1;if(y==='')return -1;return dir*(x<y?-1:1)});
rows.forEach(function(r){body.appendChild(r)})}
document.addEventListener('click',function(e){var th=e.target.closest&&e.target.closest('th');if(th)sort(th)});
document.addEventListener('keydown',function(e){if(e.key==='Enter'&&e.target.tagName==='TH')sort(e.target)});
})();
"""


def html_table(frame: Any, css_class: str = "sortable") -> str:
    """A table in a horizontally scrolling box; sortable by its headers."""
    head = "".join(f'<th scope="col" tabindex="0">{html.escape(str(c))}</th>' for c in frame.columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in row) + "</tr>"
                   for row in frame.itertuples(index=False))
    cls = f' class="{css_class}"' if css_class else ""
    return f'<div class="scroll"><table{cls}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def display_size(path: Path) -> tuple[int, int] | None:
    """CSS pixels at which a figure has the physical size its author chose (pixels x 96 / dpi); the page
    caps the width at the column (``max-width: 100%``) and keeps the aspect ratio."""
    try:
        from PIL import Image

        with Image.open(path) as image:
            dpi = float((image.info.get("dpi") or (100, 100))[0]) or 100.0
            return max(1, round(image.width * 96 / dpi)), max(1, round(image.height * 96 / dpi))
    except Exception:  # noqa: BLE001 - an unreadable image is still shown, at the browser's idea of its size
        return None


def figure_html(plot: Path, lazy: bool = True, css_class: str = "") -> str:
    rel = html.escape(f"{plot.parent.name}/{plot.name}")
    size = display_size(plot)
    dims = f' width="{size[0]}" height="{size[1]}"' if size else ""
    load = ' loading="lazy"' if lazy else ' fetchpriority="high"'
    cls = f' class="{css_class}"' if css_class else ""
    return (f'<figure{cls}><a href="{rel}" title="open full size"><img alt="{html.escape(plot.stem)}" '
            f'src="{rel}"{dims}{load}></a>'
            f"<figcaption>{html.escape(plot.stem.replace('_', ' '))} (click to enlarge)</figcaption></figure>")


def _page(title: str, body: str) -> str:
    return ("<!doctype html><html lang=en><head><meta charset=utf-8>"
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>{body}"
            f"<script>{SORT_JS}</script></body></html>")


def _files_links(name: str) -> str:
    n = html.escape(name)
    return (f'<a href="{n}.html">all tables and figures</a> · <a href="{n}.md">md</a> · '
            f'<a href="{n}.csv">csv</a> · <a href="{n}.json">json</a>')


def _card(board: Board, first: bool) -> str:

    name = html.escape(board.name)
    sub = subtitle(board.prov)
    parts = [f'<section class="board" id="{name}">',
             f'<h2><a href="{name}.html">{name}</a>'
             + (f' <small>({html.escape(sub)})</small>' if sub else "") + "</h2>",
             f'<p class="verdict"><b>Verdict:</b> {html.escape(board.verdict)}</p>']
    if board.figure is not None:
        parts.append(figure_html(board.figure, lazy=not first, css_class="headline"))
    parts += [f'<p class="problem">{html.escape(p)}</p>' for p in board.problems]
    data = board.prov.get("dataset") or {}
    data_name = data.get("name") if isinstance(data, Mapping) else data
    parts.append(f'<p class="description">{html.escape(described(board.prov))} '
                 f'<span class="prov">({html.escape(str(data_name))}, {html.escape(str(board.prov.get("n_models")))} '
                 f'models, {html.escape(str(board.prov.get("finished") or "")[:10])})</span></p>')
    if board.prov.get("cut_from"):
        parts.append(f'<p class="prov">A cut of the full <code>{html.escape(str(board.prov["cut_from"]))}</code> '
                     f'grid (run as suite <code>{html.escape(str(board.prov.get("suite")))}</code>): '
                     f'<a href="{name}.html#cut">what was cut and why</a>.</p>')
    if board.tables:
        table = board.tables[0]
        parts.append(f"<details><summary>{html.escape(plain_words(table.title))}</summary>"
                     + html_table(table.frame) + "</details>")
    parts.append(f'<p class="links">{_files_links(board.name)}</p></section>')
    return "\n".join(parts)


def index_page(boards: Sequence[Board]) -> str:
    """``index.html``: one card per board (verdict, headline figure first), then every board in a table."""
    boards = ordered(boards)
    rows = []
    for board in boards:
        data = board.prov.get("dataset") or {}
        data_name = data.get("name") if isinstance(data, Mapping) else data
        rows.append(f'<tr><td><a href="#{html.escape(board.name)}">{html.escape(board.name)}</a></td>'
                    f"<td>{html.escape(board.verdict)}</td><td>{html.escape(described(board.prov))}</td>"
                    f"<td>{html.escape(str(data_name))}</td><td>{html.escape(str(board.prov.get('n_models')))}</td>"
                    f"<td>{html.escape(str(board.prov.get('finished') or '')[:10])}</td></tr>")
    body = (
        "<h1>simbench leaderboards</h1>"
        '<p class="lead">Which similarity metric tracks what neural networks actually do? Each board: its verdict '
        "and its figure first (the forest plot: each metric's correlation with the models' prediction agreement, "
        "95 % intervals; filled red = best set), most telling boards first. "
        '<a href="#boards">All boards</a>.</p>'
        + "\n".join(_card(board, i == 0) for i, board in enumerate(boards))
        + '<section id="boards"><h2 id="summary">All boards</h2>'
        '<p class="description">Click a header to sort. Generated by <code>simbench publish</code> from run '
        "directories; do not edit by hand.</p>"
        '<div class="scroll"><table class="boards sortable"><thead><tr>'
        + "".join(f'<th scope="col" tabindex="0">{h}</th>' for h in
                  ("board", "verdict", "what it measures", "data", "models", "finished"))
        + "</tr></thead><tbody>" + "".join(rows) + "</tbody></table></div></section>"
    )
    return _page("simbench leaderboards", body)


def board_page(board: Board, cut_html: str = "") -> str:
    """``<name>.html``: verdict and headline figure, provenance, every table (collapsed but the first),
    every figure."""

    prov = board.prov
    name = html.escape(board.name)
    shipped = ""
    if prov.get("overrides") and not prov.get("cut_from") and prov.get("description"):
        shipped = (f'<p class="prov">The suite as shipped is described as: '
                   f'{html.escape(plain_words(prov["description"]))}</p>')
    sub = subtitle(prov)
    parts = [f'<nav><a href="index.html">← all boards</a></nav><h1>{name}'
             + (f' <small>({html.escape(sub)})</small>' if sub else "") + "</h1>",
             f'<p class="verdict"><b>Verdict:</b> {html.escape(board.verdict)}</p>']
    if board.figure is not None:
        parts.append(figure_html(board.figure, lazy=False, css_class="headline"))
    parts.append(f'<p class="description">{html.escape(described(prov))}</p>{shipped}')
    parts.append(_provenance_html(prov))
    if cut_html:
        parts.append(f'<div id="cut">{cut_html}</div>')
    parts += [f'<p class="problem">{html.escape(p)}</p>' for p in board.problems]
    for i, table in enumerate(board.tables):
        caption = f'<p class="caption">{html.escape(plain_words(table.caption))}</p>' if table.caption else ""
        parts.append(f'<details{" open" if i == 0 else ""} id="{html.escape(table.key)}"><summary>'
                     f"{html.escape(plain_words(table.title))} <small>({len(table.frame)} rows)</small></summary>"
                     f"{caption}{html_table(table.frame)}</details>")
    others = [p for p in board.plots if p != board.figure]
    if others:
        parts.append("<h3>Figures</h3>" + "".join(figure_html(p) for p in others))
    return _page(f"{board.name} — simbench leaderboard", "\n".join(parts))


def _provenance_html(prov: Mapping[str, Any]) -> str:
    dataset = prov.get("dataset") or {}
    text = (f'suite <code>{html.escape(str(prov.get("suite_path")))}</code> '
            f'(sha256 {html.escape(str(prov.get("suite_sha256") or "")[:12])})'
            + (f' with overrides <code>{html.escape(" ".join(map(str, prov.get("overrides") or [])))}</code>'
               if prov.get("overrides") else "")
            + f' · data {html.escape(str(dataset.get("name") if isinstance(dataset, Mapping) else dataset))}'
            + "".join(f" ({html.escape(str(n))}, sha256 {html.escape(str(d)[:12])}…)"
                      for n, _, d in prov.get("data_files") or [])
            + f' · {html.escape(str(prov.get("n_models")))} models · simbench '
            f'{html.escape(str(prov.get("simbench_version")))} · revision '
            f'{html.escape(str(prov.get("simbench_revision"))[:12])}'
            + (f' · data fingerprint {html.escape(str(prov.get("data_fingerprint"))[:12])}'
               if prov.get("data_fingerprint") else "")
            + f' · {html.escape(str(prov.get("device")))} · {html.escape(str(prov.get("finished")))}')
    return f'<p class="prov">{text}</p>'


# ----------------------------------------------------------------------------
# README.md and the page weight
# ----------------------------------------------------------------------------


def readme(boards: Sequence[Board]) -> str:
    """``README.md``: every board in the site's order with its verdict (the result column)."""

    lines = ["# Leaderboards", "",
             "Generated by `simbench publish` from run directories; do not edit by hand. "
             "Open `index.html` for each board's verdict and figure first; `<board>.html` has all its tables.", "",
             "| suite | result | what it measures | data | models | finished | files |",
             "|---|---|---|---|---|---|---|"]
    for board in ordered(boards):
        prov, name = board.prov, board.name
        data = prov.get("dataset") or {}
        data = data.get("name") if isinstance(data, Mapping) else data
        lines.append(f"| [{md_text(name)}]({name}.md) | {md_text(board.verdict)} | {md_text(described(prov))} "
                     f"| {md_text(data)} | {md_text(prov.get('n_models'))} "
                     f"| {md_text(str(prov.get('finished') or '')[:10])} "
                     f"| [html]({name}.html) · [md]({name}.md) · [csv]({name}.csv) · [json]({name}.json) |")
    return "\n".join(lines) + "\n"


_IMG_RE = re.compile(r"<img\b[^>]*>")
_SRC_RE = re.compile(r'\bsrc="([^"]+)"')


def page_weight(index: Path) -> dict[str, int]:
    """Bytes of ``index.html`` (``html``), of it plus the figures it loads eagerly -- the first screen
    (``first_screen``) -- and of it plus every figure it shows (``all``)."""
    text = index.read_text(encoding="utf-8")
    own = len(text.encode())
    eager = lazy = 0
    for tag in _IMG_RE.findall(text):
        src = _SRC_RE.search(tag)
        path = index.parent / html.unescape(src.group(1)) if src else None
        size = path.stat().st_size if path is not None and path.is_file() else 0
        if 'loading="lazy"' in tag:
            lazy += size
        else:
            eager += size
    return {"html": own, "first_screen": own + eager, "all": own + eager + lazy}
