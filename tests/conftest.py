"""Shared fixtures: a fresh registry per test, the toy plugin file, CLI runners."""

from __future__ import annotations

import os
import subprocess
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

import pytest

# `make test` runs the tests in pytest-xdist workers, one per core: each worker (and every subprocess a
# test starts from it) then gets one BLAS/OpenMP thread, so two workers on two cores do not
# oversubscribe them.  Set before anything imports torch, which reads it once; an explicit value wins.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")

# Never the user's own directories: the stage cache defaults to the user cache directory and installed
# datasets live in the user data directory.  The tests keep the cache beside the directory each command
# runs in (a relative path: a test in tmp_path gets its own, as before the user-level default), and see
# an empty data directory, so an MNIST installed by `simbench data mnist` never changes what they test.
# A test that needs either sets its own (monkeypatch.setenv / env=...).
os.environ["SIMBENCH_CACHE_DIR"] = ".simbench-cache"
os.environ["SIMBENCH_DATA_DIR"] = str(Path(__file__).resolve().parent / ".no-user-data")

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures"
TOY_PLUGINS = FIXTURES / "toy_plugins.py"
TOY_SUITE = FIXTURES / "toy.toml"


@pytest.fixture
def registry():
    """A fresh registry with the built-ins only."""
    from simbench.registry import build_registry

    return build_registry()


@pytest.fixture
def toy_registry():
    """A fresh registry with the built-ins and the toy test plugins."""
    from simbench.registry import build_registry

    return build_registry(plugin_files=[str(TOY_PLUGINS)])


def run_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
            timeout: int = 600) -> subprocess.CompletedProcess[str]:
    """Run ``simbench ARGS`` in a subprocess (the real console script path)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "simbench.cli", *args], cwd=cwd or ROOT, env=full_env,
        capture_output=True, text=True, timeout=timeout,
    )


@pytest.fixture
def cli():
    return run_cli


@dataclass
class CliResult:
    """What :func:`cli_here` returns: the fields of a ``CompletedProcess`` that the tests read."""

    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def cli_here(capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):
    """Run ``simbench ARGS`` in this process, through ``simbench.cli.main`` (what the console script calls).

    Same call and result as ``cli`` (``returncode``, ``stdout``, ``stderr``) without starting an
    interpreter, which costs seconds per command (torch, scipy, the plugins) -- most of what a CLI test
    took.  An exception that escapes ``main`` becomes exit status 1 with its traceback on stderr, as in
    a subprocess, so ``"Traceback" not in stderr`` still means something.  ``env={"PYTHONPATH": ...}``
    puts those folders first on ``sys.path`` for the call (entry points are read from ``sys.path``
    on every registry build) and forgets the modules imported from them, before and after, so a
    module name reused by another test is imported afresh.  Use ``cli`` where being a fresh process
    is the point: kills and signals, what a command imports.
    """

    def run(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> CliResult:
        from simbench.cli import main

        env = dict(env or {})
        paths = [Path(p).resolve() for p in env.pop("PYTHONPATH", "").split(os.pathsep) if p]

        def forget_modules_from_paths() -> None:
            if not paths:
                return
            for name, module in list(sys.modules.items()):
                file = getattr(module, "__file__", None)
                if file and any(Path(file).resolve().is_relative_to(p) for p in paths):
                    del sys.modules[name]
                elif any((p / f"{name}.py").exists() or (p / name / "__init__.py").exists() for p in paths):
                    del sys.modules[name]  # the same name imported from elsewhere by an earlier test

        capfd.readouterr()  # drop whatever the test printed before
        with monkeypatch.context() as patch:
            patch.chdir(cwd or ROOT)
            for key, value in env.items():
                patch.setenv(key, value)
            for path in reversed(paths):
                patch.syspath_prepend(str(path))
            forget_modules_from_paths()
            try:
                main(list(args))
                code: object = 0
            except SystemExit as exc:
                code = exc.code
                if isinstance(code, str):  # sys.exit("message"): Python prints it and exits 1
                    print(code, file=sys.stderr)
            except Exception:  # noqa: BLE001 - a crash: what the interpreter would do
                traceback.print_exc()
                code = 1
            forget_modules_from_paths()
        out, err = capfd.readouterr()
        return CliResult(args, code if isinstance(code, int) else (0 if code is None else 1), out, err)

    return run


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Files holding ``slow`` tests first, each file's tests in their own order.

    ``make test`` hands whole files to the xdist workers in collection order; starting with the
    long files (the end-to-end runs, the Dask clusters) keeps one of them from arriving last
    and running alone while the other worker idles.  A plain run only changes the file order.
    """
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)  # stable: the order within a file is kept


def one_error_line(proc):
    """The one line a refused command printed on stderr (warnings aside), asserting there is exactly one and no
    traceback: the promise every user mistake keeps."""
    lines = [line for line in proc.stderr.splitlines() if line.strip() and not line.startswith("WARNING")]
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert len(lines) == 1, proc.stderr[-2000:]
    return lines[0]
