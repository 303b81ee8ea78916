"""Provenance: where a run, a bundle or a score came from.

simbench's own source revision (read without running anyone's git hooks),
the time stamps every manifest carries, and the versions of the libraries
whose numbers a run depends on.  The runner writes them into a run's
manifest, ``simbench export`` into a bundle, ``simbench score`` into a
scored run; the leaderboard and ``publish`` read them back
(:func:`recorded_revision`, :func:`is_dirty`), also from older manifests.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["is_dirty", "now", "recorded_revision", "simbench_revision", "versions"]


def now() -> str:
    """The current UTC time, ISO 8601 to the second (``2026-12-07T02:42:21+00:00``)."""
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def versions() -> dict[str, str]:
    """The versions a run's numbers depend on: Python, torch, numpy and the platform."""
    import numpy as np
    import torch

    return {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
    }


def _read_git_head(git_dir: Path) -> str:
    """The commit ``HEAD`` names, read from ``.git`` files directly (no git process)."""
    head = (git_dir / "HEAD").read_text(encoding="utf-8").strip()
    if not head.startswith("ref:"):
        return head
    ref = head[4:].strip()
    for base in (git_dir, _common_dir(git_dir)):
        loose = base / ref
        if loose.is_file():
            return loose.read_text(encoding="utf-8").strip()
        packed = base / "packed-refs"
        if packed.is_file():
            for line in packed.read_text(encoding="utf-8").splitlines():
                parts = line.split()
                if len(parts) == 2 and parts[1] == ref:
                    return parts[0]
    return "unknown"


def _common_dir(git_dir: Path) -> Path:
    common = git_dir / "commondir"
    if common.is_file():
        return (git_dir / common.read_text(encoding="utf-8").strip()).resolve()
    return git_dir


def _git_dir(root: Path) -> Path | None:
    dot = root / ".git"
    if dot.is_dir():
        return dot
    if dot.is_file():  # a worktree or submodule: "gitdir: PATH"
        text = dot.read_text(encoding="utf-8").strip()
        if text.startswith("gitdir:"):
            return (root / text[7:].strip()).resolve()
    return None


def simbench_revision() -> str:
    """``<sha>``, ``<sha>-dirty`` or ``unknown``: the revision of simbench's *own* source tree.

    Never the repository that holds the suite file (a user's repository may
    configure ``core.fsmonitor`` or hooks that git would run).  The commit is
    read from ``.git`` files directly; the dirty check runs git on our own
    tree only, with system/global config ignored, fsmonitor and hooks off and
    no optional locks.  Installed from a wheel (no ``.git``): ``unknown``.
    """
    root = Path(__file__).resolve().parent.parent
    git_dir = _git_dir(root)
    if git_dir is None:
        return "unknown"
    try:
        sha = _read_git_head(git_dir)
    except OSError:
        return "unknown"
    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_TERMINAL_PROMPT": "0",
           "GIT_OPTIONAL_LOCKS": "0"}
    try:
        dirty = subprocess.run(
            ["git", "-c", "core.fsmonitor=false", "-c", f"core.hooksPath={os.devnull}", "-c", "core.untrackedCache=false",
             "--no-optional-locks", "status", "--porcelain", "--untracked-files=no", "--ignore-submodules"],
            cwd=root, env=env, capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return sha
    return f"{sha}-dirty" if dirty else sha


# reading it back from a manifest


def recorded_revision(manifest: Mapping[str, Any]) -> str:
    """simbench's own revision as the manifest records it (newer manifests), else the older ``git_revision``."""
    for key in ("simbench_revision", "simbench_git_revision"):
        value = manifest.get(key)
        if isinstance(value, Mapping):
            value = value.get("revision") or value.get("sha")
        if value:
            return str(value)
    prov = manifest.get("provenance")
    if isinstance(prov, Mapping) and prov.get("simbench_revision"):
        return str(prov["simbench_revision"])
    return str(manifest.get("git_revision") or "unknown")


def is_dirty(manifest: Mapping[str, Any]) -> bool:
    """Whether the run came from a source tree with uncommitted changes."""
    if manifest.get("dirty") is True or manifest.get("simbench_dirty") is True:
        return True
    return recorded_revision(manifest).endswith("-dirty")
