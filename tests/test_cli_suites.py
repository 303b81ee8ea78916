"""Suites by name from any directory, `run` writing its leaderboard into the run directory, `simbench new`."""

from __future__ import annotations

import pytest

import json
import os
import subprocess
import sys

from tests.conftest import ROOT, TOY_PLUGINS, TOY_SUITE


def test_list_suites_from_an_empty_directory(tmp_path, cli_here):
    proc = cli_here("list", "suites", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    names = [line.split()[0] for line in proc.stdout.splitlines() if line and not line.startswith("run one")]
    assert {"quick", "paper-mlp-digits", "calibration"} <= set(names)
    # into a file (not a terminal): each description whole on its suite's line (test_terminal_output: 80 columns)
    described = {line.split()[0]: " ".join(line.split()[1:]) for line in proc.stdout.splitlines() if line}
    assert described["quick"].endswith("linear CKA vs Procrustes") and "…" not in proc.stdout
    rows = json.loads(cli_here("list", "suites", "--json", cwd=tmp_path).stdout)
    quick = next(r for r in rows if r["name"] == "quick")
    assert os.path.isabs(quick["path"]) and quick["path"].endswith("quick.toml")


def test_suites_dir_env_adds_suites_by_name(tmp_path, cli_here):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "toy.toml").write_text(TOY_SUITE.read_text())
    env = {"SIMBENCH_SUITES_DIR": str(tmp_path / "mine")}
    listed = cli_here("list", "suites", cwd=tmp_path, env=env)
    assert listed.stdout.splitlines()[0].startswith("toy ")
    proc = cli_here("-p", str(TOY_PLUGINS), "validate", "toy", cwd=tmp_path, env=env)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr


def test_validate_by_name_and_by_path_from_anywhere(tmp_path, cli_here):
    by_name = cli_here("validate", "quick", "--no-data", cwd=tmp_path)
    assert by_name.returncode == 0 and "suite 'quick'" in by_name.stdout, by_name.stderr
    by_path = cli_here("validate", str(ROOT / "suites" / "quick.toml"), "--no-data", cwd=tmp_path)
    assert by_path.returncode == 0, by_path.stderr
    wrong = cli_here("validate", "quik", cwd=tmp_path)
    assert wrong.returncode == 2 and "did you mean 'quick'" in wrong.stderr and "Traceback" not in wrong.stderr
    missing = cli_here("validate", "nope/quick.toml", cwd=tmp_path)
    assert missing.returncode == 2 and "no such suite file" in missing.stderr


@pytest.mark.slow
def test_run_writes_its_leaderboard_into_the_run_directory(tmp_path, cli_here):
    proc = cli_here("-p", str(TOY_PLUGINS), "run", str(TOY_SUITE), "-q", "--run-dir", str(tmp_path / "run"),
               "--cache-dir", str(tmp_path / "cache"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    board = json.loads((tmp_path / "run" / "leaderboard" / "toy.json").read_text())
    assert board["schema_version"] == 1
    assert not (tmp_path / "leaderboards").exists()
    again = cli_here("-p", str(TOY_PLUGINS), "leaderboard", str(tmp_path / "run"), "--out", str(tmp_path / "lb"))
    assert again.returncode == 0 and (tmp_path / "lb" / "toy.md").exists(), again.stderr


@pytest.mark.slow
def test_new_metric_writes_a_package_whose_conformance_tests_pass(tmp_path, cli_here):
    proc = cli_here("new", "metric", "my_sim", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    root = tmp_path / "simbench-my-sim"
    for rel in ("pyproject.toml", "README.md", "simbench_my_sim/plugin.py", "tests/test_my_sim.py"):
        assert (root / rel).is_file(), rel
    assert 'my_sim = "simbench_my_sim.plugin"' in (root / "pyproject.toml").read_text()
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], cwd=root,
                           env={**os.environ, "PYTHONPATH": str(root)}, capture_output=True, text=True, timeout=600)
    from simbench.testing import CHECKS

    assert tests.returncode == 0 and f"{len(CHECKS)} passed" in tests.stdout, tests.stdout[-2000:] + tests.stderr[-2000:]
    listed = cli_here("-p", str(root / "simbench_my_sim" / "plugin.py"), "list", "metrics")
    assert "my_sim" in listed.stdout
    again = cli_here("new", "metric", "my_sim", "--out", str(tmp_path))
    assert again.returncode == 2 and "already exists" in again.stderr
    bad = cli_here("new", "metric", "My-Sim", "--out", str(tmp_path))
    assert bad.returncode == 2 and "snake_case" in bad.stderr
