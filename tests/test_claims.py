"""The claims page (leaderboards/claims.md): generated from the boards' JSON and simbench/claims.toml only, the
committed page is exactly what the generator writes, every declared cell resolves on the committed boards, a
board's number on the page follows its JSON, missing boards are said, and publish / publish --claims-only write it."""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import pytest

from simbench import claims, publishing
from simbench.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
BOARDS = ROOT / "leaderboards"


def test_committed_claims_page_is_exactly_what_the_generator_writes():
    text, problems = claims.render(BOARDS)
    assert problems == []
    assert (BOARDS / claims.CLAIMS_FILE).read_bytes() == text.encode("utf-8"), \
        "leaderboards/claims.md differs from what the boards give: run `simbench publish --claims-only` and commit"


def test_every_claim_with_a_board_resolves_on_the_committed_boards():
    rows = claims.evaluate(claims.load_claims(), BOARDS)
    assert len(rows) >= 25
    for row in rows:
        assert row.problem is None, row.problem
        if row.claim.board:
            assert (BOARDS / f"{row.claim.board}.json").is_file(), row.claim.id
            assert row.board_number != "—" and row.verdict, row.claim.id
        else:
            assert row.verdict == "no board: not run offline"
    ids = [c.id for c in claims.load_claims()]
    assert len(ids) == len(set(ids))
    assert {c.seed for c in claims.load_claims()} == {"000", "001", "002", "003", "004"}


def _row(text: str, claim_id: str) -> str:
    (line,) = [line for line in text.splitlines() if line.startswith(f'| <a id="{claim_id}"></a>')]
    return line


def test_the_boards_number_and_verdict_follow_the_json(tmp_path):
    """Change the board, not the data file: the page changes with it (nothing on the page is typed in)."""
    shutil.copy(BOARDS / "sanity.json", tmp_path / "sanity.json")
    before = _row(claims.render(tmp_path)[0], "003-invertible")
    assert "limit at infinite strength 0.198" in before and "| not reproduced |" in before
    board = json.loads((tmp_path / "sanity.json").read_text())
    (verdict,) = [t for t in board["tables"] if t["key"] == "verdict"]
    cols = verdict["columns"]
    row = next(r for r in verdict["rows"] if r[0].startswith("an invertible"))
    row[cols.index("linear_cka_limit")] = 0.123456
    row[cols.index("reproduced")] = "yes"
    (tmp_path / "sanity.json").write_text(json.dumps(board))
    after = _row(claims.render(tmp_path)[0], "003-invertible")
    assert "limit at infinite strength 0.123" in after and "0.198" not in after
    assert "| reproduced |" in after


def test_a_missing_board_and_a_claim_without_board_get_rows_that_say_so(tmp_path):
    # no boards at all; every shipped claim has a board now, so add one without
    offline = _claim(id="no-offline-board", board="", numbers=())
    text, problems = claims.render(tmp_path, [*claims.load_claims(), offline])
    assert problems == []
    assert "no board: `sanity` is not published here" in _row(text, "003-translation")
    assert "`sanity` (missing)" in _row(text, "003-translation")
    assert "no board: not run offline" in _row(text, "no-offline-board")


def test_a_selector_that_no_longer_resolves_is_a_problem_not_a_crash(tmp_path):
    board = json.loads((BOARDS / "sanity.json").read_text())
    board["tables"] = [t for t in board["tables"] if t["key"] != "verdict"]
    (tmp_path / "sanity.json").write_text(json.dumps(board))
    text, problems = claims.render(tmp_path)
    assert "selector failed" in _row(text, "003-translation")
    assert any(p.startswith("claim 003-translation: board sanity: no table 'verdict'") for p in problems)


def _board(tables):
    return {"tables": [{"key": k, "columns": cols, "rows": rows} for k, (cols, rows) in tables.items()]}


def _claim(**kw):
    base = {"id": "x", "seed": "001", "section": "§1", "claim": "c", "seed_number": "n", "board": "b",
            "numbers": ({"table": "t", "where": {"m": "a"}, "column": "v"},)}
    return claims.Claim(**{**base, **kw})


def test_verdict_rules_compare_best_set_and_board_cells(tmp_path):
    board = _board({"t": (["m", "v", "ok"], [["a", 0.9, "yes"], ["b", 1.0, "no"], ["c", 0.5, "yes"]]),
                    "ranking": (["metric", "best_set"], [["wcka", "yes"], ["cka", "yes"], ["dcka", ""]])})
    (tmp_path / "b.json").write_text(json.dumps(board))
    three = tuple({"table": "t", "where": {"m": m}, "column": "v"} for m in "abc")
    rule = {"rule": "compare", "op": "<", "value": 1.0, "at_least": 2}
    (row,) = claims.evaluate([_claim(numbers=three, verdict=rule)], tmp_path)
    assert row.verdict.startswith("reproduced (2 of 3 < 1.0")
    (row,) = claims.evaluate([_claim(numbers=three, verdict={**rule, "at_least": 3})], tmp_path)
    assert row.verdict.startswith("not reproduced (2 of 3")
    (row,) = claims.evaluate([_claim(verdict={"rule": "best_set", "metric": "wcka"})], tmp_path)
    assert row.verdict.startswith("not significant (wcka is one of 2")
    (row,) = claims.evaluate([_claim(verdict={"rule": "best_set", "metric": "dcka"})], tmp_path)
    assert row.verdict.startswith("not reproduced (dcka is outside")
    cells = [{"label": m, "table": "t", "where": {"m": m}, "column": "ok"} for m in "ab"]
    (row,) = claims.evaluate([_claim(verdict={"rule": "board", "cells": cells, "map": {"yes": "Y", "no": "N"}})],
                             tmp_path)
    assert row.verdict == "a: Y; b: N"
    (row,) = claims.evaluate([_claim(verdict={"rule": "board", "cells": cells[:1], "map": {"yes": "Y"}})], tmp_path)
    assert row.verdict == "Y" and row.board_number == "0.900"


def _spearman_p_brute(rho: float, n: int) -> float:
    base = list(range(n))
    rhos = [1 - 6 * sum((i - p) ** 2 for i, p in zip(base, perm)) / (n * (n * n - 1))
            for perm in itertools.permutations(base)]
    return sum(abs(r) >= abs(rho) - 1e-12 for r in rhos) / len(rhos)


@pytest.mark.parametrize(("rho", "n"), [(1.0, 4), (0.8, 4), (0.6, 5), (-0.9, 6), (0.2, 7)])
def test_spearman_p_is_the_exact_permutation_p(rho, n):
    assert claims.spearman_p(rho, n) == pytest.approx(_spearman_p_brute(rho, n))
    assert claims.spearman_p(1.0, 4) == pytest.approx(2 / 24)  # only the two perfect orders reach |rho| = 1


def test_a_bad_claims_file_is_one_line_naming_the_file_and_claim(tmp_path):
    bad = tmp_path / "claims.toml"
    bad.write_text('[[claim]]\nid = "a"\nseed = "1"\nsection = "s"\nclaim = "c"\nseed_number = "n"\nboard = ""\n'
                   'colour = "red"\n')
    with pytest.raises(UserError, match=r"claims.toml: claim 'a': unknown key\(s\) colour"):
        claims.load_claims(bad)
    bad.write_text('[[claim]]\nid = "a"\nseed = "1"\nsection = "s"\nclaim = "c"\nseed_number = "n"\nboard = "b"\n'
                   'numbers = [{table = "t", column = "v"}]\nverdict = {rule = "vibes"}\n')
    with pytest.raises(UserError, match="verdict.rule must be board, compare, spearman or best_set"):
        claims.load_claims(bad)


def test_publish_claims_only_cli(tmp_path, cli_here):
    shutil.copy(BOARDS / "sanity.json", tmp_path / "sanity.json")
    result = cli_here("publish", "--claims-only", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "claims.md").read_text() == claims.render(tmp_path)[0]
    refused = cli_here("publish", "--claims-only", "runs", "--out", str(tmp_path))
    assert refused.returncode != 0 and "takes no RUNS" in refused.stderr and "Traceback" not in refused.stderr
    empty = cli_here("publish", "--claims-only", "--out", str(tmp_path / "none"))
    assert empty.returncode != 0 and "no boards" in empty.stderr and "Traceback" not in empty.stderr


def test_publish_writes_the_claims_page_from_every_board_in_out(tmp_path):
    """A publish of one toy run also rewrites claims.md, reading the boards already in --out (sanity here)."""
    from simbench.registry import build_registry
    from simbench.runner import Runner
    from simbench.suite import load_suite
    from tests.conftest import TOY_PLUGINS, TOY_SUITE

    registry = build_registry(plugin_files=[str(TOY_PLUGINS)])
    Runner(load_suite(TOY_SUITE, registry, ["probes.n=30"]), registry, tmp_path / "runs" / "toy",
           cache_dir=tmp_path / "cache", quiet=True).run()
    out = tmp_path / "boards"
    out.mkdir()
    shutil.copy(BOARDS / "sanity.json", out / "sanity.json")
    report = publishing.publish([tmp_path / "runs"], out, registry, allow_dirty=True)
    assert out / "claims.md" in report.written
    text = (out / "claims.md").read_text()
    assert text == claims.render(out)[0]
    assert "linear_cka 0.020" in _row(text, "003-outlier")
    assert "not published here" in _row(text, "001-fc-wcka-best")
    assert "claims" in publishing.RESERVED_NAMES  # no suite can be published over the page
