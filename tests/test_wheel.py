"""What a pip user gets: the built wheel, installed into a fresh virtualenv, used from an empty directory.

No network: the wheel is built with ``--no-build-isolation`` from a copy of
the sources, installed with ``--no-deps --no-index``, and the fresh venv sees
the project venv's site-packages (torch, pandas, ...) through a ``.pth`` line.
A plain path line in a ``.pth`` adds that directory to ``sys.path`` without
processing its own ``.pth`` files, so the checkout's editable-install finder
stays inactive: ``simbench`` must come from the wheel (checked).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest

from tests.conftest import ROOT

SOURCES = ("simbench", "plugins", "suites", "pyproject.toml", "README.md")


def test_every_plugin_subpackage_is_packaged():
    # setuptools' explicit package list silently drops a new sub-package from the wheel
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages = set(config["packages"])
    for init in (ROOT / "plugins").rglob("__init__.py"):
        dotted = ".".join(("simbench_plugins", *init.parent.relative_to(ROOT / "plugins").parts))
        assert dotted in packages, f"pyproject.toml [tool.setuptools] packages lacks {dotted}"
    assert "simbench_suites" in packages and config["package-data"]["simbench_suites"] == ["*.toml"]


def _copy_sources(dest: Path) -> None:
    import shutil

    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in SOURCES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=ignore)
        else:
            shutil.copy2(src, dest / name)


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory) -> Path:
    """A fresh venv with only the built simbench wheel installed (dependencies from the project venv)."""
    root = tmp_path_factory.mktemp("wheel")
    src, dist, venv = root / "src", root / "dist", root / "venv"
    src.mkdir()
    _copy_sources(src)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    build = subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", str(dist),
                            str(src)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-2000:]
    wheel = next(dist.glob("simbench_metrics-*.whl"))  # the distribution simbench-metrics
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    install = subprocess.run([*pip, "--python", str(python), "install", "--no-deps", "--no-index", "-q", str(wheel)],
                             capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr[-2000:]
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    (Path(purelib) / "_project_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv


def _env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SIMBENCH_", "PYTHONPATH"))}
    env.update({"SIMBENCH_CACHE_DIR": str(tmp / "cache"), "HF_HUB_OFFLINE": "1"})
    return env


def test_wheel_has_the_suites_and_imports_outside_the_checkout(wheel_venv, tmp_path):
    work = tmp_path / "empty"
    work.mkdir()
    probe = subprocess.run(
        [str(wheel_venv / "bin" / "python"), "-c",
         "import simbench, simbench_plugins, simbench_suites; "
         "print(simbench.__file__); print(simbench_plugins.__file__); print(list(simbench_suites.__path__)[0])"],
        cwd=work, env=_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert probe.returncode == 0, probe.stderr
    for line in probe.stdout.splitlines():
        assert str(wheel_venv) in line and str(ROOT) not in line, line
    listed = subprocess.run([str(wheel_venv / "bin" / "simbench"), "list", "suites"], cwd=work, env=_env(tmp_path),
                            capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0 and re.search(r"^quick\s", listed.stdout, re.M), listed.stdout + listed.stderr


@pytest.mark.slow
def test_readme_plugin_example_and_run_quick_from_an_empty_directory(wheel_venv, tmp_path):
    from tests.test_docs import README, readme_plugin_source

    work = tmp_path / "empty"
    work.mkdir()
    (work / "my_metric.py").write_text(readme_plugin_source())
    command = re.search(r"Run it: `simbench (.*?)`", README)
    assert command, "README must say how to run the plugin example"
    import shlex

    env = _env(tmp_path)
    simbench = str(wheel_venv / "bin" / "simbench")
    plain = subprocess.run([simbench, "run", "quick", "-q"], cwd=work, env=env, capture_output=True, text=True,
                           timeout=900)
    assert plain.returncode == 0, plain.stderr[-3000:]
    example = subprocess.run([simbench, *shlex.split(command.group(1)), "-q"], cwd=work, env=env,
                             capture_output=True, text=True, timeout=900)
    assert example.returncode == 0, example.stderr[-3000:]
    boards = sorted((work / "runs").glob("quick-*/leaderboard/quick.json"))
    assert len(boards) == 2  # one per run, inside each run directory
    assert not (work / "leaderboards").exists()  # only `publish` writes leaderboards/
    assert any("mean_cosine" in b.read_text() for b in boards)
