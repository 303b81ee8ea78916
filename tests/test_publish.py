"""Publishing: per-suite files, README index, one static HTML page checked in headless Chromium,
names that cannot mislabel, dirty trees refused, everything confined to --out, markdown made inert,
one broken benchmark report isolated."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

import simbench
from simbench import leaderboard, publishing, site
from simbench.errors import UserError
from simbench.runner import Runner
from simbench.suite import load_suite
from tests.conftest import TOY_PLUGINS, TOY_SUITE


@pytest.fixture(scope="module")
def toy_runs(tmp_path_factory) -> Path:
    """``runs/toy-a`` (the suite as written) and ``runs/toy-small`` (the same with a --set override)."""
    from simbench.registry import build_registry

    registry = build_registry(plugin_files=[str(TOY_PLUGINS)])
    root = tmp_path_factory.mktemp("pub")
    Runner(load_suite(TOY_SUITE, registry), registry, root / "runs" / "toy-a", cache_dir=root / "cache",
           quiet=True).run()
    Runner(load_suite(TOY_SUITE, registry, ["probes.n=30"]), registry, root / "runs" / "toy-small",
           cache_dir=root / "cache", quiet=True).run()
    return root / "runs"


@pytest.fixture
def toy_registry_():
    from simbench.registry import build_registry

    return build_registry(plugin_files=[str(TOY_PLUGINS)])


@pytest.fixture(scope="module")
def published(toy_runs) -> Path:
    from simbench.registry import build_registry

    out = toy_runs.parent / "leaderboards"
    # the runs come from this checkout, dirty while it is being developed
    publishing.publish([toy_runs], out, build_registry(plugin_files=[str(TOY_PLUGINS)]), allow_dirty=True)
    return out


def _copy_run(src: Path, dest: Path, **manifest_changes) -> Path:
    shutil.copytree(src, dest)
    manifest = json.loads((dest / "manifest.json").read_text())
    for key, value in manifest_changes.items():
        if key == "revision":  # older manifests have only git_revision, newer ones both
            manifest["git_revision"] = manifest["simbench_revision"] = value
        elif key.startswith("suite_"):
            manifest["suite"][key[len("suite_"):]] = value
        else:
            manifest[key] = value
    (dest / "manifest.json").write_text(json.dumps(manifest))
    return dest


def test_publish_writes_every_format_and_an_index(published):
    for name in ("toy.md", "toy.csv", "toy.json", "index.html", "README.md"):
        assert (published / name).exists(), name
    readme = (published / "README.md").read_text()
    assert "[toy](toy.md)" in readme and "do not edit by hand" in readme
    page = (published / "index.html").read_text()
    assert "http://" not in page and "https://" not in page  # no external assets
    assert page.count("<table") >= 3 and "Ranking" in page
    board = json.loads((published / "toy.json").read_text())
    assert board["schema_version"] == leaderboard.SCHEMA_VERSION == 1
    assert board["name"] == "toy" and board["provenance"]["suite"] == "toy"


def test_override_run_is_published_under_a_distinct_name(published, toy_runs):
    manifest = json.loads((toy_runs / "toy-small" / "manifest.json").read_text())
    name = f"toy+{manifest['suite']['sha256'][:8]}"
    board = json.loads((published / f"{name}.json").read_text())
    assert board["provenance"]["overrides"] == ["probes.n=30"] and board["name"] == name
    assert sum(p["n"] if isinstance(p, dict) else p for p in board["provenance"]["probe_sets"].values()) < 4 * 40
    official = json.loads((published / "toy.json").read_text())
    assert official["provenance"]["overrides"] == []  # the official name still holds the suite as written
    assert "not the suite as shipped" in (published / f"{name}.md").read_text()


def test_publishing_an_override_run_under_the_official_name_is_refused(toy_runs, tmp_path, toy_registry_):
    manifest = json.loads((toy_runs / "toy-small" / "manifest.json").read_text())
    name = f"toy+{manifest['suite']['sha256'][:8]}"
    with pytest.raises(UserError, match="shipped"):
        publishing.publish([toy_runs], tmp_path / "out", toy_registry_, allow_dirty=True, rename={name: "toy"})
    assert not (tmp_path / "out").exists()
    renamed = publishing.publish([toy_runs], tmp_path / "ok", toy_registry_, allow_dirty=True,
                                  rename={name: "toy-30-probes"})
    assert set(renamed.published) == {"toy", "toy-30-probes"}


def test_publish_cli_refuses_the_official_name(toy_runs, tmp_path, cli_here):
    manifest = json.loads((toy_runs / "toy-small" / "manifest.json").read_text())
    name = f"toy+{manifest['suite']['sha256'][:8]}"
    proc = cli_here("-p", str(TOY_PLUGINS), "publish", str(toy_runs), "--out", str(tmp_path / "out"), "--allow-dirty",
               "--rename", f"{name}=toy")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "distinct name" in proc.stderr


def test_dirty_runs_are_skipped_with_the_reason_unless_allowed(toy_runs, tmp_path, toy_registry_):
    runs = tmp_path / "runs"
    _copy_run(toy_runs / "toy-a", runs / "dirty", revision="0123abcd-dirty", suite_name="dirtysuite")
    _copy_run(toy_runs / "toy-a", runs / "clean", revision="0123abcd", suite_name="cleansuite")
    (runs / "unfinished").mkdir()
    (runs / "unfinished" / "manifest.json").write_text(json.dumps({"suite": {"name": "x"}}))
    report = publishing.publish([runs], tmp_path / "out", toy_registry_)
    assert set(report.published) == {"cleansuite"}
    reasons = {p.name: why for p, why in report.skipped}
    assert "--allow-dirty" in reasons["dirty"] and "modified source tree" in reasons["dirty"]
    assert "not finished" in reasons["unfinished"]
    assert not (tmp_path / "out" / "dirtysuite.md").exists()
    assert set(publishing.publish([runs], tmp_path / "out2", toy_registry_, allow_dirty=True).published) == {
        "cleansuite", "dirtysuite"}


def test_publish_cli_lists_skipped_runs(toy_runs, tmp_path, cli_here):
    runs = tmp_path / "runs"
    _copy_run(toy_runs / "toy-a", runs / "dirty", revision="0123abcd-dirty")
    _copy_run(toy_runs / "toy-a", runs / "clean", revision="0123abcd", suite_name="cleansuite")
    proc = cli_here("-p", str(TOY_PLUGINS), "publish", str(runs), "--out", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    assert "published cleansuite" in proc.stdout
    assert f"skipped {runs / 'dirty'}" in proc.stderr and "--allow-dirty" in proc.stderr


# -- confinement (issue 13, item 4) ------------------------------------------------------------


@pytest.mark.parametrize("evil", ["../../escaped", "/tmp/simbench-escaped-abs", "a/../../b", ".."])
def test_names_from_manifests_cannot_leave_out(toy_runs, tmp_path, toy_registry_, evil):
    runs = tmp_path / "deep" / "er" / "runs"
    _copy_run(toy_runs / "toy-a", runs / "evil", suite_name=evil, revision="0123abcd")
    out = tmp_path / "deep" / "er" / "out"
    before = {p for p in tmp_path.rglob("*") if not p.is_relative_to(out)}
    report = publishing.publish([runs], out, toy_registry_)
    (name,) = report.published
    assert "/" not in name and not name.startswith(".")
    after = {p for p in tmp_path.rglob("*") if not p.is_relative_to(out)}
    assert after == before, sorted(map(str, after - before))
    assert not Path("/tmp/simbench-escaped-abs.md").exists()
    assert all(p.resolve().is_relative_to(out.resolve()) for p in report.written)


def test_leaderboard_cli_confines_names_too(toy_runs, tmp_path, cli_here):
    run = _copy_run(toy_runs / "toy-a", tmp_path / "a" / "b" / "run", suite_name="../../../escaped")
    proc = cli_here("-p", str(TOY_PLUGINS), "leaderboard", str(run), "--out", str(tmp_path / "a" / "b" / "out"))
    assert proc.returncode == 0, proc.stderr
    assert not list(tmp_path.rglob("escaped.md")) or all(
        p.parent == tmp_path / "a" / "b" / "out" for p in tmp_path.rglob("*escaped*.md"))
    assert not (tmp_path / "escaped.md").exists()


def test_symlinks_under_out_are_not_followed(toy_runs, tmp_path, toy_registry_):
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "victim.md"
    victim.write_text("precious")
    out = tmp_path / "out"
    out.mkdir()
    (out / "toy.md").symlink_to(victim)
    (out / "toy_plots").symlink_to(outside, target_is_directory=True)
    runs = tmp_path / "runs"
    _copy_run(toy_runs / "toy-a", runs / "toy", revision="0123abcd")
    _copy_run(toy_runs / "toy-a", runs / "other", revision="0123abcd", suite_name="other")
    report = publishing.publish([runs], out, toy_registry_)
    assert victim.read_text() == "precious" and sorted(p.name for p in outside.iterdir()) == ["victim.md"]
    assert "other" in report.published  # the other suite is still published
    assert any("symbolic link" in why for _, why in report.skipped)


# -- markdown made inert (issue 13, item 10) -------------------------------------------------


def test_markdown_escapes_html_and_newlines_in_user_strings(toy_runs, tmp_path, toy_registry_):
    evil = "<script>alert(1)</script>\n# Injected heading\n| x | y |"
    runs = tmp_path / "runs"
    _copy_run(toy_runs / "toy-a", runs / "toy", revision="0123abcd", suite_description=evil,
              suite_path="<img src=x onerror=alert(1)>\n## path")
    out = tmp_path / "out"
    publishing.publish([runs], out, toy_registry_)
    for name in ("toy.md", "README.md"):
        text = (out / name).read_text()
        assert "<script>" not in text and "<img" not in text, name
        assert "&lt;script&gt;" in text, name
        assert not any(line.startswith(("# Injected", "## path", "| x | y |")) for line in text.splitlines()), name
    page = (out / "index.html").read_text()
    assert "alert(1)</script>" not in page and "<img src=x" not in page
    assert page.count("<script") == 1  # the page's own table sorter, nothing from the manifest


def test_markdown_table_cells_are_escaped():
    import pandas as pd

    text = leaderboard.markdown_table(pd.DataFrame({"me<b>tric": ["a|b", "<i>x</i>\n# h"], "v": [1.0, 2.0]}))
    assert "<b>" not in text and "<i>" not in text and "a\\|b" in text
    assert len(text.splitlines()) == 4


# -- one broken report does not block the others (issue 13, item 6) ----------------------------


@dataclass(frozen=True)
class BrokenReport(simbench.Benchmark):
    """A benchmark whose tables and plots raise."""

    name = "broken_report"

    def evaluate(self, ctx):  # pragma: no cover - never run, the records are copied
        return []

    @classmethod
    def tables(cls, records):
        raise RuntimeError("tables exploded")

    @classmethod
    def plots(cls, records, out_dir, view=None):
        raise RuntimeError("plots exploded")


class BrokenPlugin:
    __name__ = "broken_plugin"

    @simbench.hookimpl
    def register_benchmarks(self, register):
        register(BrokenReport)


def test_a_raising_benchmark_report_does_not_block_publish(toy_runs, tmp_path):
    from simbench.registry import build_registry

    registry = build_registry(plugin_files=[str(TOY_PLUGINS)], extra_plugins=[BrokenPlugin()])
    runs = tmp_path / "runs"
    _copy_run(toy_runs / "toy-a", runs / "toy", revision="0123abcd")
    broken = _copy_run(toy_runs / "toy-a", runs / "broken", revision="0123abcd", suite_name="broken",
                       benchmarks={"functional_agreement": {"name": "broken_report", "params": {}}})
    report = publishing.publish([runs], tmp_path / "out", registry)
    assert set(report.published) == {"toy", "broken"}
    assert any("tables failed: RuntimeError: tables exploded" in p for p in report.problems)
    assert any("plots failed: RuntimeError: plots exploded" in p for p in report.problems)
    good = json.loads((tmp_path / "out" / "toy.json").read_text())
    assert good["tables"][0]["key"] == "ranking" and good["plots"]
    bad = json.loads((tmp_path / "out" / "broken.json").read_text())
    assert [t["key"] for t in bad["tables"]] == ["timing"] and len(bad["problems"]) == 2
    assert "tables exploded" in (tmp_path / "out" / "index.html").read_text()
    out = tmp_path / "single"
    written = leaderboard.render(broken, out, registry)  # `simbench leaderboard` and `run` go on too
    assert (out / "broken.md").exists() and written


# -- the site ------------------------------------------------------------------------------------


def test_page_has_verdicts_first_images_as_files_and_fits_its_budget(published):
    page = (published / "index.html").read_text()
    assert site.page_weight(published / "index.html")["first_screen"] < publishing.PAGE_BUDGET_BYTES
    assert "data:image" not in page and "base64" not in page
    assert page.index('class="verdict"') < page.index('id="summary"')  # the boards table comes after the cards
    assert 'class="scroll"' in page  # wide tables scroll inside their box
    board = json.loads((published / "toy.json").read_text())
    assert board["plots"]
    board_page = (published / "toy.html").read_text()
    for rel in board["plots"]:
        assert (published / rel).is_file()
        assert f'<a href="{rel}"' in board_page and f'src="{rel}"' in board_page  # click to enlarge
    forest = next(rel for rel in board["plots"] if rel.endswith("_forest.png"))
    assert f'src="{forest}"' in page  # the index shows each board's headline figure only
    summary = page[page.index('id="summary"'):]
    assert "toy_gram_corr" in summary and "Core test suite on toy plugins" in summary


def test_internal_seed_references_become_plain_words():
    text = leaderboard.plain_words("Seed 001 §3.2 on embedded digits28; seed 003's finding (§3.4)")
    assert "Seed 001" not in text and "seed 003" not in text
    assert text.startswith("The weight-CKA calibration paper, section 3.2 on embedded")
    assert "the paper on the inadequacy of CKA's finding" in text


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(chromium() is None, reason="headless Chromium (Debian package 'chromium') is not installed")
def test_index_page_renders_in_headless_chromium(published, tmp_path):
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}"]
    for page in ("index.html", "toy.html"):
        url = (published / page).as_uri()
        dom = subprocess.run([chromium(), *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120)
        assert dom.returncode == 0, dom.stderr[-1000:]
        assert "<table" in dom.stdout and "Ranking" in dom.stdout and "toy_gram_corr" in dom.stdout
        assert dom.stdout.index("Verdict") < dom.stdout.index("functional_agreement_forest.png")
        shot = tmp_path / "page.png"
        subprocess.run([chromium(), *flags, f"--screenshot={shot}", "--window-size=1200,900", url],
                       capture_output=True, timeout=120)
        assert shot.exists() and shot.stat().st_size > 10_000  # a real rendering, not a blank page
        shot.unlink()


def test_docs_results_lists_every_column_and_key(published):
    doc = (Path(__file__).resolve().parents[1] / "docs" / "results.md").read_text()
    from simbench.results import COLUMNS

    for column in COLUMNS:
        assert f"`{column}`" in doc, column
    board = json.loads((published / "toy.json").read_text())
    for key in board:
        assert f"`{key}`" in doc, key
    for key in board["provenance"]:
        assert f"`{key}`" in doc, f"provenance.{key}"
    for key in board["tables"][0]:
        assert f"`{key}`" in doc, f"tables[].{key}"
    assert f"schema version {leaderboard.SCHEMA_VERSION}" in doc


def test_pages_name_the_data_files_with_size_and_sha256(tmp_path):
    """A reader can tell real MNIST from a stand-in: every data file's name, size and sha256 is on the page."""
    import hashlib

    from simbench.leaderboard import data_file_rows

    data = tmp_path / "test.parquet"
    data.write_bytes(b"0123456789" * 10)
    digest = hashlib.sha256(data.read_bytes()).hexdigest()
    recorded = {"data_files": {str(data): digest}, "data_file_bytes": {str(data): 100}}
    assert data_file_rows(recorded) == [("test.parquet", 100, digest)]
    # an older manifest without sizes: read from the file only while it still has the recorded content
    older = {"data_files": {str(data): digest}}
    assert data_file_rows(older) == [("test.parquet", 100, digest)]
    data.write_bytes(b"changed")
    assert data_file_rows(older) == [("test.parquet", None, digest)]
    assert data_file_rows({}) == []


# ----------------------------------------------------------------------------
# Declared cuts: a run of a suite that extends a full grid, published under the full grid's name
# ----------------------------------------------------------------------------

CUT_HEADER = "# toy-full cut for a quick test: fewer probes and one jitter scale, because CI is small.\n#\n"
FULL_HEADER = "# The toy grid's design: jitter scales 0.5 and 2, 40 probes, choices the toy paper leaves open.\n\n"


def _write_cut_suites(root: Path, probes: int = 30) -> dict[str, Path]:
    """``full.toml`` (suite toy-full), ``mid.toml`` extending it, ``cut.toml`` extending mid (a cut, transitively)."""
    root.mkdir(parents=True, exist_ok=True)
    full = root / "full.toml"
    full.write_text(FULL_HEADER + TOY_SUITE.read_text().replace('name = "toy"', 'name = "toy-full"'))
    (root / "mid.toml").write_text('schema = 1\n[suite]\nname = "toy-mid"\nextends = "full.toml"\n')
    cut = root / "cut.toml"
    cut.write_text(CUT_HEADER + 'schema = 1\n[suite]\nname = "toy-cut"\nextends = "mid.toml"\n'
                   'description = "toy-full cut"\n'
                   f'[[perturbations]]\nname = "toy_jitter"\nscales = [0.5]\n[probes]\nn = {probes}\n')
    return {"full": full, "cut": cut}


@pytest.fixture(scope="module")
def cut_run(tmp_path_factory) -> tuple[Path, dict[str, Path]]:
    """A finished run of ``toy-cut`` (extends toy-mid, which extends toy-full) and the suite files."""
    from simbench.registry import build_registry

    registry = build_registry(plugin_files=[str(TOY_PLUGINS)])
    root = tmp_path_factory.mktemp("cut")
    files = _write_cut_suites(root / "suites")
    Runner(load_suite(files["cut"], registry), registry, root / "runs" / "toy-cut", cache_dir=root / "cache",
           quiet=True).run()
    return root / "runs", files


def test_a_declared_cut_is_published_under_the_full_name_with_what_was_cut(cut_run, tmp_path, toy_registry_):
    runs, files = cut_run
    shipped = {"toy-full": files["full"]}
    report = publishing.publish([runs], tmp_path / "out", toy_registry_, allow_dirty=True,
                                 rename={"toy-cut": "toy-full"}, suites=shipped)
    assert set(report.published) == {"toy-full"}
    board = json.loads((tmp_path / "out" / "toy-full.json").read_text())
    prov = board["provenance"]
    assert prov["cut_from"] == "toy-full" and prov["suite"] == "toy-cut"
    # exactly the two settings the cut changes, full value -> run value; names and extends are not settings
    assert prov["cut"] == [{"key": "perturbations.toy_jitter.scales", "full": [0.5, 2.0], "run": [0.5]},
                           {"key": "probes.n", "full": 40, "run": 30}]
    assert prov["cut_why"][0].startswith("toy-full cut for a quick test") and "CI is small" in prov["cut_why"][0]
    page = (tmp_path / "out" / "toy-full.md").read_text()
    assert page.splitlines()[0] == "# Leaderboard: toy-full (a cut of the full `toy-full` grid, run as suite `toy-cut`)"
    assert "## Cut from the full grid" in page and "| `probes.n` | 40 | 30 |" in page and "CI is small" in page
    assert "not the suite as shipped" not in page  # the cut statement replaces the generic variant line
    # what the cut keeps is stated too: the full suite's own header (the choices its design makes)
    assert prov["full_design"][0].startswith("The toy grid's design") and "choices the toy paper leaves open" in page
    assert "Cut from the full grid" in (tmp_path / "out" / "toy-full.html").read_text()
    assert "A cut of the full" in (tmp_path / "out" / "index.html").read_text()
    import pandas as pd

    csv = pd.read_csv(tmp_path / "out" / "toy-full.csv")
    assert set(csv["cut_from"]) == {"toy-full"} and "probes.n: 40 -> 30" in csv["cut"].iloc[0]
    # the numbers are the run's own: the same tables as publishing it under its own name
    plain = publishing.publish([runs], tmp_path / "plain", toy_registry_, allow_dirty=True)
    same = json.loads((tmp_path / "plain" / "toy-cut.json").read_text())
    assert board["tables"] == same["tables"] and "cut_from" not in same["provenance"]


def test_a_rename_onto_a_shipped_name_without_extends_is_refused(toy_runs, cut_run, tmp_path, toy_registry_):
    _, files = cut_run
    shipped = {"toy-full": files["full"]}
    # suite toy does not extend toy-full: publishing it under that name would mislabel it
    with pytest.raises(UserError, match=r"--rename toy=toy-full: 'toy-full' is the name of a suite as shipped.*extends"):
        publishing.publish([toy_runs], tmp_path / "out", toy_registry_, allow_dirty=True,
                            rename={"toy": "toy-full"}, suites=shipped)
    assert not (tmp_path / "out").exists()
    # a cut extending another file that merely shares the shipped name is not a cut of the shipped suite
    elsewhere = tmp_path / "elsewhere.toml"
    elsewhere.write_text(files["full"].read_text().replace("n = 40", "n = 41"))
    with pytest.raises(UserError, match="declared cut"):
        publishing.publish([cut_run[0]], tmp_path / "out2", toy_registry_, allow_dirty=True,
                            rename={"toy-cut": "toy-full"}, suites={"toy-full": elsewhere})
    # a name that is no suite's stays free, as before
    free = publishing.publish([toy_runs], tmp_path / "ok", toy_registry_, allow_dirty=True,
                               rename={"toy": "toy-renamed"}, suites=shipped)
    assert "toy-renamed" in free.published


def test_a_cut_whose_suite_file_changed_since_the_run_is_refused(cut_run, tmp_path, toy_registry_):
    """Comments may change after the run; settings may not, or the cut listed would not be the one that ran."""
    runs, _ = cut_run
    files = _write_cut_suites(tmp_path / "suites", probes=20)
    moved = _copy_run(runs / "toy-cut", tmp_path / "runs" / "toy-cut", suite_path=str(files["cut"]))
    with pytest.raises(UserError, match=r"cut\.toml no longer gives the run's probes\.n"):
        publishing.publish([moved.parent], tmp_path / "out", toy_registry_, allow_dirty=True,
                            rename={"toy-cut": "toy-full"}, suites={"toy-full": files["full"]})
    files["cut"].write_text(files["cut"].read_text().replace("n = 20", "n = 30").replace("CI is small", "CI is tiny"))
    report = publishing.publish([moved.parent], tmp_path / "ok", toy_registry_, allow_dirty=True,
                                 rename={"toy-cut": "toy-full"}, suites={"toy-full": files["full"]})
    assert "CI is tiny" in json.loads((tmp_path / "ok" / "toy-full.json").read_text())["provenance"]["cut_why"][0]
    assert report.published == {"toy-full": moved}


def test_publish_cli_publishes_a_cut_of_a_suite_found_by_name(cut_run, tmp_path, cli_here):
    runs, files = cut_run
    env = {"SIMBENCH_SUITES_DIR": str(files["full"].parent)}
    proc = cli_here("-p", str(TOY_PLUGINS), "publish", str(runs), "--out", str(tmp_path / "out"), "--allow-dirty",
               "--rename", "toy-cut=toy-full", env=env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "out" / "toy-full.json").read_text())["provenance"]["cut_from"] == "toy-full"
    refused = cli_here("-p", str(TOY_PLUGINS), "publish", str(runs), "--out", str(tmp_path / "no"), "--allow-dirty",
                  "--rename", "toy-cut=quick")  # a shipped suite it does not extend
    assert refused.returncode == 2 and "Traceback" not in refused.stderr and "declared cut" in refused.stderr
