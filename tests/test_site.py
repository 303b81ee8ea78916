"""The published site answers "which metric should I trust?" on its first screen (issue 25, items 5 and 6).

Per board a one-line verdict and the headline (forest) figure first, boards in a documented order,
detail tables on each board's own page, figures that fit the column, sortable tables with no network
asset, a page-weight budget; readable variant boards, ``--rename`` moving the files, a warning for a
run with no recorded revision.  Screenshots in headless Chromium at 1 280 x 900 and 390 x 844 check the
first screen (skipped where Chromium is not installed).
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from simbench import leaderboard, publishing, site
from simbench.types import Table
from tests.conftest import TOY_PLUGINS, TOY_SUITE

VERDICT_OVERRIDE = "benchmarks.0.min_clusters=3"  # six toy models: enough for a verdict with this


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """``runs/toy`` (six models: no verdict) and ``runs/toy-v`` (the same with min_clusters=3: a verdict)."""
    from simbench.registry import build_registry
    from simbench.runner import Runner
    from simbench.suite import load_suite

    registry = build_registry(plugin_files=[str(TOY_PLUGINS)])
    root = tmp_path_factory.mktemp("site")
    Runner(load_suite(TOY_SUITE, registry), registry, root / "runs" / "toy", cache_dir=root / "cache",
           quiet=True).run()
    Runner(load_suite(TOY_SUITE, registry, [VERDICT_OVERRIDE]), registry, root / "runs" / "toy-v",
           cache_dir=root / "cache", quiet=True).run()
    return root / "runs"


@pytest.fixture(scope="module")
def reg():
    from simbench.registry import build_registry

    return build_registry(plugin_files=[str(TOY_PLUGINS)])


@pytest.fixture(scope="module")
def out(runs, reg) -> Path:
    target = runs.parent / "leaderboards"
    publishing.publish([runs], target, reg, allow_dirty=True)
    return target


def _variant(runs: Path) -> str:
    sha = json.loads((runs / "toy-v" / "manifest.json").read_text())["suite"]["sha256"]
    return f"toy+{sha[:8]}"


# -- the verdict, the headline figure, the order ------------------------------------------------


def _ranking(rows, title="Ranking: how well similarity tracks prediction agreement (all pairs)"):
    cols = ["rank", "rank_set", "metric", "aliases", "pearson_r", "pearson_ci_low", "pearson_ci_high", "best_set",
            "beaten_by", "worse_p", "mark", "p_rank_first"]
    return Table("ranking", title, pd.DataFrame(rows, columns=cols))


def test_verdict_names_the_best_set_and_the_leaders_rank_set():
    table = _ranking([[1, "1–2", "cka", "", 0.9, 0.8, 0.95, "yes", "", float("nan"), "", 0.7],
                      [2, "1–3", "rsa", "rsa_cos", 0.85, 0.7, 0.9, "yes", "", float("nan"), "", 0.3],
                      [3, "2–3", "cca", "", 0.5, 0.3, 0.6, "", "cka", 0.01, "*", 0.0]],
                     "Ranking: ... (all pairs); best set: cka, rsa (rank sets contain 1)")
    text = site.verdict([table])
    assert text.startswith("best set (2 of 3 metrics): cka, rsa (= rsa_cos); leader cka")
    assert "rank set 1–2" in text and "r = 0.900 [0.800, 0.950]" in text and "cca" not in text
    one = _ranking([[1, "1–1", "cka", "", 0.9, 0.8, 0.95, "yes", "", float("nan"), "", 1.0],
                    [2, "2–2", "rsa", "", 0.5, 0.4, 0.6, "", "cka", 0.001, "**", 0.0]])
    assert site.verdict([one]).startswith("best: cka (r = 0.900 [0.800, 0.950], rank set 1–1); every other")
    few = _ranking([[1, "", "cka", "", 0.9, 0.1, 0.99, "", "", float("nan"), "", 0.6],
                    [2, "", "rsa", "", 0.8, 0.0, 0.99, "", "", float("nan"), "", 0.4]],
                   "Ranking: ... (all pairs); no verdict (too few models)")
    assert site.verdict([few]).startswith("no verdict (too few models)")


def test_verdict_of_a_board_that_checks_a_papers_claims():
    claims = Table("verdict", "Does this run show what seed 003 reports (§3.4)?", pd.DataFrame(
        {"claim": ["a", "b", "c"], "observed": ["x", "y", "z"], "reproduced": ["yes", "no", "yes"]}))
    headline = Table("manipulation", "How far each metric moves", pd.DataFrame({"rank": [1], "metric": ["cka"],
                                                                               "displacement": [0.3]}))
    text = site.verdict([headline, claims])
    assert text == "2 of 3 reproduced (the paper on the inadequacy of CKA, section 3.4)"
    finding = Table("c.finding", "c: Is seed 004's finding reproduced?",
                    pd.DataFrame({"statistic": ["ratio", "reproduced"], "value": [3.0, 1.0]}))
    assert site.verdict([finding]) == "reproduced (the feature-contamination paper's finding)"
    plain = Table("t", "Some table", pd.DataFrame({"metric": ["a", "b"], "score": [0.5, 0.2]}))
    assert site.verdict([plain]).startswith("Some table: a: score 0.500")


def test_headline_figure_is_the_forest_plot_and_boards_follow_the_documented_order():
    plots = [Path("x_plots/functional_agreement_scatter_all.png"), Path("x_plots/functional_agreement_forest.png")]
    assert site.headline_figure(plots).name == "functional_agreement_forest.png"
    assert site.headline_figure(plots[:1]) == plots[0] and site.headline_figure([]) is None
    fa = [_ranking([[1, "", "cka", "", 0.9, 0.8, 0.95, "", "", 0.0, "", 1.0]])]
    other = [Table("t", "t", pd.DataFrame({"metric": ["a"]}))]
    real = {"data_files": [("test.parquet", 1, "ab")]}

    def board(name, tables, prov):
        return site.Board(name, prov, tables, [])

    boards = [board("calibration", other, {}), board("quick", fa, {}), board("sanity-mnist", other, real),
              board("finetune-cnn", fa, real), board("paper-mlp-digits", fa, {}), board("paper-mlp", fa, real),
              board("manipulation-mnist", other, real), board("paper-mlp+1a2b3c4d", fa, real)]
    assert [b.name for b in site.ordered(boards)] == [
        "paper-mlp", "finetune-cnn",  # HEADLINE_BOARDS, in that order
        "paper-mlp+1a2b3c4d", "manipulation-mnist", "sanity-mnist",  # real data: functional agreement first
        "paper-mlp-digits", "quick", "calibration"]  # embedded / synthetic data
    assert site.HEADLINE_BOARDS == ("paper-mlp", "finetune-cnn")


# -- the pages -------------------------------------------------------------------------------------


def test_index_shows_verdict_and_figure_first_and_details_elsewhere(out, runs):
    page = (out / "index.html").read_text()
    variant = _variant(runs)
    assert "http://" not in page and "https://" not in page and "<script src" not in page  # works offline
    for name in ("toy", variant):
        card = page[page.index(f'<section class="board" id="{name}">'):]
        card = card[:card.index("</section>")]
        # verdict, then the forest plot, then the rest; the detail tables are on the board's own page
        assert card.index('class="verdict"') < card.index("functional_agreement_forest.png") < card.index("<details>")
        assert f'<a href="{name}.html">' in card and card.count("<table") == 1  # the headline table, collapsed
    assert "no verdict (too few models)" in page
    assert re.search(r"best: toy_gram_corr \(r = [-0-9.]+ \[[-0-9.]+, [-0-9.]+\], rank set 1–1\)", page)
    imgs = re.findall(r"<img\b[^>]*>", page)
    assert 'loading="lazy"' not in imgs[0] and all('loading="lazy"' in tag for tag in imgs[1:])
    assert all(re.search(r'width="\d+" height="\d+"', tag) for tag in imgs)  # layout reserved, aspect kept
    assert "max-width:100%;height:auto" in page.replace(" ", "")
    assert 'class="boards sortable"' in page and "addEventListener('click'" in page
    weight = site.page_weight(out / "index.html")
    assert weight["first_screen"] <= publishing.PAGE_BUDGET_BYTES and weight["html"] < 100_000


def test_a_first_screen_over_budget_is_reported(runs, reg, tmp_path, monkeypatch):
    monkeypatch.setattr(publishing, "PAGE_BUDGET_BYTES", 20_000)
    report = publishing.publish([runs], tmp_path / "out", reg, allow_dirty=True)
    assert report.weight["first_screen"] > 20_000 >= report.weight["html"]
    assert any(p.startswith("index.html and the figures of its first screen are") for p in report.problems)


def test_board_pages_hold_every_table_collapsed_and_every_figure(out):
    page = (out / "toy.html").read_text()
    board = json.loads((out / "toy.json").read_text())
    assert page.count("<details") == len(board["tables"]) and page.count("<details open") == 1
    assert page.count('<table class="sortable">') == len(board["tables"])
    for rel in board["plots"]:
        assert f'src="{rel}"' in page and f'<a href="{rel}"' in page and (out / rel).is_file()
    assert page.index('class="verdict"') < page.index("functional_agreement_forest.png") < page.index("<details")
    assert '<a href="index.html">' in page and "https://" not in page


def test_markdown_board_and_readme_put_the_verdict_first(out, runs):
    md = (out / "toy.md").read_text().splitlines()
    verdict = next(i for i, line in enumerate(md) if line.startswith("**Verdict:**"))
    forest = next(i for i, line in enumerate(md) if "functional_agreement_forest.png" in line)
    first_table = next(i for i, line in enumerate(md) if line.startswith("## "))
    assert verdict < forest < first_table and verdict < 10
    assert sum("functional_agreement_forest.png" in line for line in md) == 1
    readme = (out / "README.md").read_text()
    assert "| suite | result |" in readme and "[toy](toy.md) | no verdict (too few models)" in readme
    assert f"[{leaderboard.md_text(_variant(runs))}]({_variant(runs)}.md) | best: toy_gram_corr" in readme
    board = json.loads((out / "toy.json").read_text())
    assert board["verdict"].startswith("no verdict (too few models)") and board["label"] == "toy"


def test_a_variant_says_what_was_overridden(out, runs):
    name = _variant(runs)
    board = json.loads((out / f"{name}.json").read_text())
    assert board["label"] == f"toy with {VERDICT_OVERRIDE}"
    md = (out / f"{name}.md").read_text()
    assert f"**A variant of suite toy, not the suite as shipped: {VERDICT_OVERRIDE}" in md
    assert md.index(VERDICT_OVERRIDE) < md.index("Core test suite on toy plugins")  # the shipped text, marked as such
    assert "The suite as shipped is described as" in md
    index = (out / "index.html").read_text()
    card = index[index.index(f'id="{name}"'):]
    assert f"(toy with {VERDICT_OVERRIDE})" in card[:card.index("</h2>")]
    readme_row = next(line for line in (out / "README.md").read_text().splitlines() if line.startswith(f"| [{name}"))
    assert "Core test suite on toy plugins" not in readme_row and VERDICT_OVERRIDE in readme_row


def test_rename_moves_the_files_and_removes_only_what_publish_wrote(runs, reg, tmp_path):
    target = tmp_path / "out"
    name = _variant(runs)
    publishing.publish([runs], target, reg, allow_dirty=True)
    before = {p.name for p in target.iterdir()}
    assert {f"{name}.md", f"{name}.csv", f"{name}.json", f"{name}.html", f"{name}_plots"} <= before
    (target / f"{name}_plots" / "mine.txt").write_text("a file someone else put there")
    report = publishing.publish([runs], target, reg, allow_dirty=True, rename={name: "toy-verdict"})
    assert set(report.published) == {"toy", "toy-verdict"}
    assert not any((target / f"{name}{s}").exists() for s in (".md", ".csv", ".json", ".html"))
    assert [p.name for p in (target / f"{name}_plots").iterdir()] == ["mine.txt"]  # not ours: kept
    assert {p.name for p in report.removed} >= {f"{name}.md", f"{name}.json", f"{name}.html", f"{name}.csv"}
    assert (target / "toy-verdict.html").is_file() and name not in (target / "index.html").read_text()
    # an old-name file that publish did not write (no board JSON of that name) is never removed
    (target / f"{name}.md").write_text("my notes")
    publishing.publish([runs], target, reg, allow_dirty=True, rename={name: "toy-verdict"})
    assert (target / f"{name}.md").read_text() == "my notes"


def test_a_run_without_a_revision_is_published_with_a_warning(runs, reg, tmp_path):
    from tests.test_publish import _copy_run

    _copy_run(runs / "toy", tmp_path / "runs" / "wheel", revision="unknown", suite_name="wheel")
    report = publishing.publish([tmp_path / "runs"], tmp_path / "out", reg)
    assert set(report.published) == {"wheel"}
    assert any(p.startswith("wheel: ") and "no recorded source revision" in p for p in report.problems)
    assert "no recorded source revision" in (tmp_path / "out" / "wheel.html").read_text()


def test_publish_help_shows_runs_as_optional(cli_here):
    proc = cli_here("publish", "--help")
    assert proc.returncode == 0
    assert "[OPTIONS] [RUNS]..." in proc.stdout and "default: runs/" in proc.stdout


# -- headless Chromium: the first screen -----------------------------------------------------------


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


#: appended to a copy of the page: where the first verdict and the first figure are, after layout, in a
#: W px wide page (Chromium's --dump-dom window is at least 500 px wide and not always as tall as asked:
#: the page is laid out at W by setting the root element's width; its CSS has no media queries)
PROBE = """<script>window.addEventListener('load',function(){
var W=%d,root=document.documentElement;if(innerWidth!==W)root.style.width=W+'px';
var v=document.querySelector('.verdict').getBoundingClientRect();
var f=document.querySelector('figure.headline img').getBoundingClientRect();
var p=document.createElement('pre');p.id='probe';
p.textContent=JSON.stringify({vw:root.getBoundingClientRect().width,verdict:[v.top,v.bottom],
figure:[f.top,f.bottom,f.left,f.right],
overflow:document.body.scrollWidth-document.body.clientWidth,complete:document.images[0].complete});
document.body.appendChild(p)});</script>"""


@pytest.mark.skipif(chromium() is None, reason="headless Chromium (Debian package 'chromium') is not installed")
@pytest.mark.parametrize("width,height", [(1280, 900), (390, 844)])
def test_first_screen_in_headless_chromium(out, tmp_path, width, height):
    from PIL import Image, ImageStat

    flags = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
             f"--user-data-dir={tmp_path / 'profile'}", f"--window-size={width},{height}"]
    probe = out / f"probe-{width}.html"
    probe.write_text((out / "index.html").read_text().replace("</body>", PROBE % width + "</body>"))
    try:
        dom = subprocess.run([*flags, "--run-all-compositor-stages-before-draw", "--virtual-time-budget=5000",
                              "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120)
    finally:
        probe.unlink()
    assert dom.returncode == 0, dom.stderr[-1000:]
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom.stdout)
    assert found, dom.stdout[-2000:]
    pos = json.loads(html.unescape(found.group(1)))
    assert pos["vw"] <= width and pos["complete"]
    # the answer is on the first screen: the verdict and the whole first figure, not cropped sideways
    assert 0 <= pos["verdict"][0] < pos["verdict"][1] <= height
    assert pos["verdict"][1] <= pos["figure"][0] < pos["figure"][1] <= height
    assert pos["figure"][2] >= 0 and pos["figure"][3] <= width and pos["overflow"] <= 1  # no sideways scroll
    shot = tmp_path / f"index-{width}.png"
    subprocess.run([*flags, "--hide-scrollbars", f"--screenshot={shot}", (out / "index.html").as_uri()],
                   capture_output=True, timeout=120)
    with Image.open(shot) as image:
        assert image.size == (width, height)
        stat = ImageStat.Stat(image.convert("L"))
        assert stat.stddev[0] > 20  # text and a figure, not a blank page
        top = image.convert("L").crop((0, 0, width, height // 2))
        assert ImageStat.Stat(top).stddev[0] > 20


#: clicks twice on the header of the first numeric column of the first sortable table with 3+ distinct values
SORT_PROBE = """<script>window.addEventListener('load',function(){
var out={};var tables=[].slice.call(document.querySelectorAll('table.sortable'));
function col(t,j){return [].slice.call(t.tBodies[0].rows).map(function(r){return parseFloat(r.cells[j].textContent)})}
for(var k=0;k<tables.length&&!out.asc;k++){var t=tables[k],ths=t.tHead.rows[0].cells;
for(var j=0;j<ths.length;j++){var v=col(t,j);
if(v.length>=3&&v.every(function(x){return !isNaN(x)})&&new Set(v).size>=3){
out.before=v;ths[j].click();out.asc=col(t,j);ths[j].click();out.desc=col(t,j);out.head=ths[j].textContent;
out.sort=ths[j].getAttribute('aria-sort');break}}}
var p=document.createElement('pre');p.id='probe';p.textContent=JSON.stringify(out);document.body.appendChild(p)});</script>"""


@pytest.mark.skipif(chromium() is None, reason="headless Chromium (Debian package 'chromium') is not installed")
def test_tables_sort_by_a_click_in_headless_chromium(out, tmp_path):
    probe = out / "probe-sort.html"
    probe.write_text((out / "toy.html").read_text().replace("</body>", SORT_PROBE + "</body>"))
    try:
        dom = subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                              "--disable-background-networking", "--disable-component-update", "--disable-sync",
                              f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000", "--dump-dom",
                              probe.as_uri()], capture_output=True, text=True, timeout=120)
    finally:
        probe.unlink()
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom.stdout)
    assert found, dom.stderr[-2000:]
    result = json.loads(html.unescape(found.group(1)))
    assert result.get("asc"), result  # some column of the toy board has three distinct numbers
    assert result["asc"] == sorted(result["before"]) and result["desc"] == sorted(result["before"], reverse=True)
    assert result["sort"] == "descending"
