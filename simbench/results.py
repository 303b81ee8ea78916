"""Run directories: manifest, per-cell results, the consolidated store, resume.

A run is split into *cells* (one similarity matrix, one agreement matrix,
one benchmark evaluation, ...).  Each finished cell is written atomically
(temporary file + rename) to ``cells/<id>.json``; a rerun of the same command
skips the cells already there, so a killed run resumes without recomputing
finished work and without losing or duplicating rows.  At the end the cells
are concatenated, in plan order, into ``results.parquet`` (long format, one
number per row, numbers stored as numbers).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .errors import ResourceError, RunBusy, UserError
from .types import Record

COLUMNS = (
    "suite",
    "kind",
    "benchmark",
    "metric",
    "probe_set",
    "group",
    "model_a",
    "model_b",
    "statistic",
    "value",
    "n",
    "status",
    "error",
)
RESULTS_FILE = "results.parquet"
MANIFEST_FILE = "manifest.json"
LOCK_FILE = ".lock"

log = logging.getLogger("simbench.results")


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ResourceError(f"{path}: cannot write ({exc.strerror or exc})") from None


def is_run_dir(path: Path) -> bool:
    """Whether ``path`` is recognisably a simbench run directory (a manifest we wrote)."""
    try:
        manifest = json.loads((path / MANIFEST_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and "simbench_version" in manifest and isinstance(manifest.get("suite"), dict)


def check_fresh_target(path: Path, suite_path: Path | None = None) -> None:
    """Refuse ``--fresh`` on anything but a simbench run directory.

    Never the current directory, one of its ancestors, or a directory holding
    the suite file; never a directory without our manifest (a user's data).
    """
    if not path.exists():
        return
    target = path.resolve()
    cwd = Path.cwd().resolve()
    if target == cwd or target in cwd.parents:
        raise UserError(f"--fresh: refusing to delete {path}: it is the current directory or one of its parents")
    if suite_path is not None:
        suite = suite_path.resolve()
        if target in suite.parents:
            raise UserError(f"--fresh: refusing to delete {path}: it holds the suite file {suite_path}")
    if not path.is_dir():
        raise UserError(f"--fresh: refusing to delete {path}: it is not a directory")
    if any(p.name != LOCK_FILE for p in path.iterdir()) and not is_run_dir(path):
        raise UserError(
            f"--fresh: refusing to delete {path}: not a simbench run directory (no simbench {MANIFEST_FILE}); "
            "choose another --run-dir"
        )


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float) and value != value:  # NaN is not JSON
        return None
    return value


def record_row(suite: str, kind: str, record: Record) -> dict[str, Any]:
    row = {"suite": suite, "kind": kind, **asdict(record)}
    row["value"] = _finite_or_none(float(record.value)) if record.value is not None else None
    return {c: row.get(c) for c in COLUMNS}


class RunDir:
    """One run's directory.

    ``suite_sha256`` (when given) is written into every cell and checked when
    a cell is read back: a cell written by another suite (or another
    ``--set``) is discarded and recomputed, never mixed in.
    """

    def __init__(self, path: str | os.PathLike[str], suite_sha256: str = "") -> None:
        self.path = Path(path)
        self.cells_dir = self.path / "cells"
        self.suite_sha256 = suite_sha256
        self._lock_fh: Any = None
        self.discarded: list[str] = []

    # -- lock ----------------------------------------------------------------

    def ensure_writable(self) -> None:
        """Create the directory and prove it writable, or raise a one-line :class:`ResourceError`."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ResourceError(f"run directory {self.path}: cannot create it ({exc.strerror or exc})") from None
        if not self.path.is_dir():
            raise ResourceError(f"run directory {self.path}: exists and is not a directory")
        probe = self.path / f".write-test{os.getpid()}"
        try:
            probe.write_bytes(b"x")
            probe.unlink()
        except OSError as exc:
            raise ResourceError(f"run directory {self.path}: not writable ({exc.strerror or exc})") from None

    def acquire(self) -> None:
        """Take the run directory's OS lock (one writer at a time) or raise :class:`RunBusy`.

        ``fcntl.flock`` on ``.lock``: the kernel drops it when the process
        dies, even by SIGKILL, so a killed run never leaves a stale lock.
        """
        self.ensure_writable()
        fh = open(self.path / LOCK_FILE, "a+", encoding="utf-8")  # noqa: SIM115 - held until release()
        try:
            import fcntl
        except ImportError:  # pragma: no cover - no flock (Windows): single-writer is the user's duty
            self._lock_fh = fh
            return
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            pid = fh.read().strip() or "?"
            fh.close()
            raise RunBusy(
                f"run directory {self.path}: already running, pid {pid}; wait for it or choose another --run-dir"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        self._lock_fh = fh

    def release(self) -> None:
        if self._lock_fh is not None:
            self._lock_fh.close()  # closing drops the flock
            self._lock_fh = None

    def clear(self) -> None:
        """Delete everything but the lock (``--fresh``; callers checked :func:`check_fresh_target`)."""
        for child in self.path.iterdir():
            if child.name == LOCK_FILE:
                continue
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()

    def clean_temp(self) -> int:
        """Remove temporary files left by killed writes (call with the lock held); return how many."""
        removed = 0
        for folder in (self.path, self.cells_dir):
            if not folder.is_dir():
                continue
            for p in folder.glob(".*.tmp*"):
                p.unlink(missing_ok=True)
                removed += 1
        if removed:
            log.warning("%s: removed %d temporary file(s) left by an interrupted run", self.path, removed)
        return removed

    # -- manifest ------------------------------------------------------------

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST_FILE

    def read_manifest(self) -> dict[str, Any]:
        if not self.manifest_path.exists():
            raise UserError(f"{self.path}: not a simbench run directory (no {MANIFEST_FILE})")
        try:
            manifest = json.loads(self.manifest_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise UserError(f"{self.manifest_path}: damaged manifest ({exc})") from None
        if not isinstance(manifest, dict):
            raise UserError(f"{self.manifest_path}: damaged manifest (expected a JSON object)")
        return manifest

    def write_manifest(self, manifest: Mapping[str, Any]) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        _atomic_write(self.manifest_path, json.dumps(manifest, indent=2, sort_keys=True, default=str))

    # -- cells ---------------------------------------------------------------

    def _cell_path(self, cell_id: str) -> Path:
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", cell_id)[:60]
        digest = hashlib.sha1(cell_id.encode()).hexdigest()[:12]
        return self.cells_dir / f"{slug}-{digest}.json"

    def has_cell(self, cell_id: str) -> bool:
        return self.load_cell(cell_id) is not None

    def write_cell(self, cell_id: str, rows: Sequence[Mapping[str, Any]], meta: Mapping[str, Any] | None = None) -> None:
        self.cells_dir.mkdir(parents=True, exist_ok=True)
        payload = {"cell": cell_id, "suite_sha256": self.suite_sha256, "meta": dict(meta or {}),
                   "rows": [dict(r) for r in rows]}
        _atomic_write(self._cell_path(cell_id), json.dumps(payload, default=str))

    def remove_cell(self, cell_id: str) -> None:
        self._cell_path(cell_id).unlink(missing_ok=True)

    def load_cell(self, cell_id: str) -> tuple[list[dict[str, Any]], dict[str, Any]] | None:
        """A finished cell's rows and meta; ``None`` if absent, damaged or from another suite.

        A damaged cell (truncated, empty, not our format) or one written by
        another suite hash is logged, deleted and recomputed, like a damaged
        cache entry: a rerun never crashes on it and never mixes it in.
        """
        path = self._cell_path(cell_id)
        if not path.exists():
            return None
        reason = ""
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
            if not (isinstance(payload, dict) and payload.get("cell") == cell_id
                    and isinstance(payload.get("rows"), list) and isinstance(payload.get("meta"), dict)
                    and all(isinstance(r, dict) for r in payload["rows"])):
                reason = "not a complete cell file"
            elif self.suite_sha256 and payload.get("suite_sha256") != self.suite_sha256:
                reason = f"written by another suite (sha256 {str(payload.get('suite_sha256'))[:12]})"
        except (OSError, ValueError) as exc:
            reason = f"unreadable ({type(exc).__name__})"
        if reason:
            log.warning("cell %s in %s is %s; discarding and recomputing it", cell_id, self.path, reason)
            self.discarded.append(cell_id)
            path.unlink(missing_ok=True)
            return None
        return payload["rows"], payload["meta"]

    def read_cell(self, cell_id: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        found = self.load_cell(cell_id)
        if found is None:
            raise UserError(f"{self.path}: cell {cell_id!r} is missing or damaged; rerun the suite to recompute it")
        return found

    def _payloads(self) -> list[dict[str, Any]]:
        """Every readable cell file of this suite (damaged or foreign ones skipped)."""
        out = []
        for p in sorted(self.cells_dir.glob("*.json")) if self.cells_dir.exists() else []:
            try:
                payload = json.loads(p.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if not isinstance(payload, dict) or not isinstance(payload.get("cell"), str):
                continue
            if self.suite_sha256 and payload.get("suite_sha256") != self.suite_sha256:
                continue
            out.append(payload)
        return out

    def cell_ids(self) -> list[str]:
        return [p["cell"] for p in self._payloads()]

    # -- consolidated store ----------------------------------------------------

    def consolidate(self, cell_order: Iterable[str]) -> Any:
        """Concatenate cells in plan order into ``results.parquet``; return the DataFrame."""
        import pandas as pd

        rows: list[dict[str, Any]] = []
        for cell_id in cell_order:
            cell_rows, _ = self.read_cell(cell_id)
            rows.extend(cell_rows)
        frame = pd.DataFrame(rows, columns=list(COLUMNS))
        frame = normalise_frame(frame)
        tmp = self.path / f".{RESULTS_FILE}.tmp{os.getpid()}"
        try:
            frame.to_parquet(tmp, index=False)
            os.replace(tmp, self.path / RESULTS_FILE)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise ResourceError(f"{self.path / RESULTS_FILE}: cannot write ({exc.strerror or exc})") from None
        return frame

    def results(self) -> Any:
        import pandas as pd

        path = self.path / RESULTS_FILE
        if not path.exists():
            raise UserError(f"{self.path}: no {RESULTS_FILE}; the run has not finished (rerun it to resume)")
        return pd.read_parquet(path)

    def cell_meta(self) -> dict[str, dict[str, Any]]:
        return {p["cell"]: p.get("meta", {}) for p in self._payloads() if isinstance(p.get("meta"), dict)}


def normalise_frame(frame: Any) -> Any:
    """Column dtypes fixed so that equal runs give byte-identical tables."""
    import pandas as pd

    for col in COLUMNS:
        if col == "value":
            frame[col] = pd.to_numeric(frame[col], errors="coerce").astype("float64")
        elif col == "n":
            frame[col] = pd.to_numeric(frame[col], errors="coerce").astype("Int64")
        else:
            frame[col] = frame[col].fillna("").astype(str)
    return frame
