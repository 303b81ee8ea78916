"""Run directories: manifest, per-cell results, the consolidated store, resume.

A run is split into *cells* (one similarity matrix, one agreement matrix,
one benchmark evaluation, ...).  Each finished cell is written atomically
(temporary file + rename) to ``cells/<id>.json``; a rerun of the same command
skips the cells already there, so a killed run resumes without recomputing
finished work and without losing or duplicating rows.  At the end the cells
are concatenated, in plan order, into ``results.parquet`` (long format, one
number per row, numbers stored as numbers).

Matrices are not rows: each similarity matrix (one per metric and probe set,
or ``weights``) and each agreement matrix (one per probe set) is one ``.npy``
file under ``matrices/`` (float64, written atomically like a cell), the model
order is written once to ``matrices/models.json``, and the cell keeps only a
pointer and the file's sha256.  ``results.parquet`` has one row per matrix
(``statistic == "matrix"``).  Run directories written before this store
(``store_format`` 1, one row per model pair) are still read: their matrices are
rebuilt from those rows (:meth:`RunDir.matrix`).

Why one module of ~730 lines: it is the run directory's whole on-disk
format — what may be adopted or deleted, the atomic cell files, the matrix
files and their one reader check (:meth:`RunDir._array_problem`), the
manifest, consolidation into ``results.parquet`` and the row layout
(:data:`COLUMNS`, :func:`record_row`) — so that a writer and every reader of
a file change together in one place.  Readers of a finished run (the
leaderboard, ``simbench.load``, bundles) and the runner's writer share it.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .errors import MeasurementFailed, ResourceError, RunBusy, UserError, one_line
from .types import Record, matrix_from_rows

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
MATRICES_DIR = "matrices"
#: the model order of every stored matrix (rows and columns), written once per run directory
MODELS_FILE = f"{MATRICES_DIR}/models.json"
#: 1: every matrix entry was a row of results.parquet (and the whole matrix a JSON list in the cell);
#: 2: one .npy file per matrix, one row per matrix.  Recorded in the manifest as ``store_format``.
STORE_FORMAT = 2
#: ``statistic`` of the one results row that stands for a stored matrix
MATRIX_STATISTIC = "matrix"

log = logging.getLogger("simbench.results")


def _atomic_write(path: Path, text: str | bytes) -> None:
    """Write ``path`` so that a reader (or a crash) only ever sees the old or the whole new file:
    temp file in the same directory, fsync, rename."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    data = text.encode("utf-8") if isinstance(text, str) else text
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ResourceError(f"{path}: cannot write ({exc.strerror or exc})") from None


def _file_name(label: str) -> str:
    """``label`` as one safe path component: letters, digits, ``_`` and ``-`` kept, every other byte
    ``%XX`` (so ``mnist_c/fog`` -> ``mnist_c%2Ffog``, never a subdirectory, never ``..``); reversible."""
    text = "".join(ch if ch.isascii() and (ch.isalnum() or ch in "_-") else
                   "".join(f"%{b:02X}" for b in ch.encode("utf-8")) for ch in label)
    if not text:
        return "%00"
    if len(text) > 180:  # file names stop at 255 bytes; the digest keeps long labels apart
        text = f"{text[:160]}~{hashlib.sha1(label.encode()).hexdigest()[:16]}"
    return text


def matrix_path(kind: str, metric: str, probe_set: str) -> str:
    """Where a matrix lives, relative to the run directory.

    ``matrices/similarity/<metric>/<probe_set>.npy`` and
    ``matrices/agreement/<probe_set>.npy``, each label through
    :func:`_file_name` (weight metrics use the probe set ``weights``).
    """
    if kind == "similarity":
        return f"{MATRICES_DIR}/similarity/{_file_name(metric)}/{_file_name(probe_set)}.npy"
    if kind == "agreement":
        return f"{MATRICES_DIR}/agreement/{_file_name(probe_set)}.npy"
    raise ValueError(f"unknown matrix kind {kind!r}; expected 'similarity' or 'agreement'")


def matrix_cell_id(kind: str, metric: str, probe_set: str) -> str:
    """The id of the cell that produced a matrix (the runner's naming)."""
    return f"similarity/{metric}/{probe_set}" if kind == "similarity" else f"agreement/{probe_set}"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _npy_bytes(matrix: Any) -> bytes:
    import numpy as np

    if hasattr(matrix, "detach"):  # a torch tensor, possibly on an accelerator (no torch import here)
        matrix = matrix.detach().cpu().numpy()
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(np.asarray(matrix, dtype=np.float64)), allow_pickle=False)
    return buf.getvalue()


def _models_text(ids: Sequence[str]) -> str:
    """``matrices/models.json`` as the writer renders it (its sha256 stamps every matrix cell)."""
    return json.dumps({"ids": list(ids)}, indent=1)


def _npy_problem(data: bytes, n_models: int | None) -> str:
    """Why ``data`` is not a float64 ``n_models x n_models`` ``.npy`` array ('' when it is), from its header alone.

    A matching checksum only says the file is the one the cell names; what it
    holds is checked here before :func:`numpy.load` allocates anything, so a
    crafted header (object dtype, float32, ``(100000, 100000)``) is refused
    instead of unpickled, misread or turned into a MemoryError.
    """
    import numpy as np
    from numpy.lib import format as npy

    buf = io.BytesIO(data)
    try:
        version = npy.read_magic(buf)
        if version == (1, 0):
            shape, fortran, dtype = npy.read_array_header_1_0(buf)
        elif version == (2, 0):
            shape, fortran, dtype = npy.read_array_header_2_0(buf)
        else:
            return f"unsupported .npy version {version}"
    except (ValueError, SyntaxError, TypeError) as exc:
        return f"not a .npy array: {one_line(exc, 120, typed=False)}"
    if dtype.hasobject or dtype != np.dtype(np.float64):
        return f"dtype {dtype}, expected float64"
    if len(shape) != 2 or shape[0] != shape[1]:
        return f"shape {shape}, expected a square matrix"
    if n_models is not None and shape[0] != n_models:
        return f"{shape[0]} x {shape[1]}, but the run has {n_models} models"
    if len(data) - buf.tell() != shape[0] * shape[1] * 8:
        return f"{len(data) - buf.tell()} bytes of data for a {shape[0]} x {shape[1]} float64 matrix"
    return ""


def is_run_dir(path: Path) -> bool:
    """Whether ``path`` is recognisably a simbench run directory (a manifest we wrote)."""
    try:
        manifest = json.loads((path / MANIFEST_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and "simbench_version" in manifest and isinstance(manifest.get("suite"), dict)


#: what simbench writes at the top of a run directory: ``--fresh`` deletes these (and its temporary files), nothing else
OWNED_ENTRIES = (MANIFEST_FILE, RESULTS_FILE, "cells", MATRICES_DIR, "leaderboard", LOCK_FILE)


def _ours(name: str) -> bool:
    """Whether a top-level entry of a run directory is one simbench writes (or a temporary file of ours)."""
    return name in OWNED_ENTRIES or name.startswith(".write-test") or (name.startswith(".") and ".tmp" in name)


def check_adoptable(path: Path) -> None:
    """Refuse to run in a non-empty directory that is not a simbench run directory (one line, exit 2).

    A directory is adopted when it is missing or empty (a lock or temporary
    file of ours aside), holds our manifest (:func:`is_run_dir`), or holds a
    damaged ``manifest.json`` and nothing but what simbench writes.  A user's
    folder (``--run-dir precious``) is never written into, so a later
    ``--fresh`` can never be pointed at it.
    """
    if not path.is_dir() or is_run_dir(path):
        return
    entries = sorted(p.name for p in path.iterdir())
    foreign = [name for name in entries if not _ours(name)]
    our_only = [name for name in entries if name not in (LOCK_FILE,) and not name.startswith(".")]
    if not foreign and (not our_only or MANIFEST_FILE in entries):
        return
    shown = ", ".join(repr(n) for n in (foreign or our_only)[:3]) + (", ..." if len(foreign or our_only) > 3 else "")
    raise UserError(f"run directory {path}: not empty and not a simbench run directory (no simbench "
                    f"{MANIFEST_FILE}; holds {shown}); choose a new or empty --run-dir")


def check_fresh_target(path: Path, suite_path: Path | None = None) -> None:
    """Refuse ``--fresh`` on anything but a simbench run directory.

    Never the current directory, one of its ancestors, or a directory holding
    the suite file; never a directory without our manifest (a user's data).
    Inside a run directory ``--fresh`` deletes only what simbench wrote
    (:meth:`RunDir.clear`).
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


#: prefix of the results columns that hold a record's numeric coordinates (``coords={"strength": 3.0}``
#: -> column ``coord_strength``, float64, NaN where a row has no such coordinate)
COORD_PREFIX = "coord_"


def record_row(suite: str, kind: str, record: Record) -> dict[str, Any]:
    row = {"suite": suite, "kind": kind, **asdict(record)}
    row["value"] = _finite_or_none(float(record.value)) if record.value is not None else None
    out = {c: row.get(c) for c in COLUMNS}
    for name, value in (record.coords or {}).items():
        out[f"{COORD_PREFIX}{name}"] = _finite_or_none(float(value))
    return out


def matrix_row(suite: str, kind: str, metric: str, probe_set: str, n_models: int) -> dict[str, Any]:
    """The one results row that stands for a stored matrix: ``statistic == "matrix"``, ``n`` = models,
    no value (the numbers are in the array file; read them with :meth:`RunDir.matrix`)."""
    return record_row(suite, kind, Record("", MATRIX_STATISTIC, float("nan"), metric=metric, probe_set=probe_set,
                                          n=n_models))


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
        #: sha256 of the current models.json (set by the writer, :meth:`set_models`): an array cell
        #: written for another model list is discarded like a cell of another suite
        self._models_sha256 = ""
        self._n_models: int | None = None  # how many models the writer's list has (every array is M x M)
        self._frame: Any = None  # results.parquet, read once for legacy matrices
        self._format: int | None = None  # the manifest's store_format, read once by matrix()

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
        check_adoptable(self.path)  # never a user's folder: --fresh could later be pointed at it
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

    def clear(self) -> list[str]:
        """Delete what simbench wrote (:data:`OWNED_ENTRIES`, temporary files) but the lock; return what was kept.

        ``--fresh``; callers checked :func:`check_fresh_target`.  Anything else
        in the directory (a file the user put there) is left in place and
        named in one warning; a symbolic link is removed, never followed.
        """
        kept = []
        for child in sorted(self.path.iterdir()):
            if child.name == LOCK_FILE:
                continue
            if not _ours(child.name):
                kept.append(child.name)
                continue
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
        if kept:
            log.warning("--fresh: kept %d entr%s that simbench did not write in %s: %s", len(kept),
                        "y" if len(kept) == 1 else "ies", self.path, ", ".join(kept[:5]))
        return kept

    def clean_temp(self) -> int:
        """Remove temporary files left by killed writes (call with the lock held); return how many."""
        removed = 0
        matrices = self.path / MATRICES_DIR
        folders = [self.path, self.cells_dir, *(p for p in matrices.rglob("*") if p.is_dir())]
        if matrices.is_dir():
            folders.append(matrices)
        for folder in folders:
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
        """Write the manifest, stamped with the :data:`STORE_FORMAT` this code writes matrices in."""
        self.path.mkdir(parents=True, exist_ok=True)
        stamped = {**manifest, "store_format": STORE_FORMAT}
        _atomic_write(self.manifest_path, json.dumps(stamped, indent=2, sort_keys=True, default=str))

    def store_format(self) -> int:
        """1 for run directories written before matrices were arrays (no ``store_format`` key), else the key."""
        value = self.read_manifest().get("store_format", 1)
        return value if isinstance(value, int) else 1

    # -- matrices ------------------------------------------------------------

    def _no_links(self, rel: str) -> Path:
        """``self.path / rel`` after checking that no directory below the run directory on the way is a
        symbolic link: the writer never follows a planted ``matrices/`` or ``cells/`` out of the run dir."""
        path = self.path
        for part in Path(rel).parts[:-1]:
            path = path / part
            if path.is_symlink():
                raise UserError(f"{path}: is a symbolic link; simbench does not write through links "
                                "in a run directory (remove it)")
        return self.path / rel

    def set_models(self, ids: Sequence[str]) -> None:
        """Record the model order of every matrix this writer stores (``matrices/models.json``).

        Written once (rewritten only if the zoo changed since an earlier
        invocation); afterwards a finished matrix cell written for another
        model list is discarded and recomputed, never read in the wrong order.
        """
        text = _models_text(ids)
        digest = _sha256(text.encode("utf-8"))
        self._n_models = len(ids)
        if digest == self._models_sha256:
            return
        path = self._no_links(MODELS_FILE)
        try:
            current = path.read_bytes()
        except OSError:
            current = b""
        if _sha256(current) != digest:
            path.parent.mkdir(parents=True, exist_ok=True)
            _atomic_write(path, text)
        self._models_sha256 = digest

    def models(self) -> list[str]:
        """The model order of the stored matrices: ``matrices/models.json``, or for run directories
        written before it existed, the manifest's zoo order (what their per-pair rows name)."""
        path = self.path / MODELS_FILE
        if path.exists():
            try:
                ids = json.loads(path.read_text(encoding="utf-8"))["ids"]
                if isinstance(ids, list) and all(isinstance(i, str) for i in ids):
                    return ids
            except (OSError, ValueError, KeyError, TypeError):
                pass
            raise UserError(f"{path}: damaged model list; rerun the suite to rewrite it")
        return [m["id"] for m in self.read_manifest().get("models", []) if isinstance(m, dict) and "id" in m]

    def write_matrix(self, kind: str, metric: str, probe_set: str, matrix: Any) -> dict[str, Any]:
        """Store one M x M matrix (float64 ``.npy``, atomically) and return the pointer its cell keeps.

        Call :meth:`set_models` first: the pointer names the model list the
        rows and columns follow.  Write the cell *after* this returns, so a
        crash in between leaves an orphan array (overwritten on resume), never
        a cell pointing at a missing one.
        """
        if not self._models_sha256:
            raise RuntimeError("RunDir.set_models must be called before write_matrix")
        rel = matrix_path(kind, metric, probe_set)
        data = _npy_bytes(matrix)
        target = self._no_links(rel)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ResourceError(f"{target.parent}: cannot create ({exc.strerror or exc})") from None
        _atomic_write(target, data)
        return {"array": rel, "array_sha256": _sha256(data), "models_sha256": self._models_sha256}

    def _model_list(self) -> tuple[str, int | None]:
        """``(sha256, count)`` of the model list the matrices must follow: the writer's (:meth:`set_models`), or for
        a reader the one ``models.json`` names now, rendered as the writer renders it (so a reordered or edited
        file no longer matches the ``models_sha256`` its cells were stamped with)."""
        if self._models_sha256:
            return self._models_sha256, self._n_models
        ids = self.models()
        return _sha256(_models_text(ids).encode("utf-8")), len(ids)

    def _array_problem(self, meta: Mapping[str, Any]) -> str:
        """Why a cell's array cannot be used ('' when it can): missing, damaged, for another model list, or not
        a float64 M x M array for this run's M models (checked from the ``.npy`` header, before any loading)."""
        rel = meta.get("array")
        parts = Path(rel).parts if isinstance(rel, str) else ()
        # a pointer is data from disk: it may only name a .npy file inside matrices/
        if (len(parts) < 3 or parts[0] != MATRICES_DIR or ".." in parts or Path(rel).is_absolute()
                or not rel.endswith(".npy")):
            return "pointing at no valid array path"
        models_sha256, n_models = self._model_list()
        if meta.get("models_sha256") != models_sha256:
            return (f"computed for another model list than {MODELS_FILE} names now (reordered or replaced since); "
                    "its rows would be mislabelled")
        try:
            data = (self.path / rel).read_bytes()
        except OSError:
            return f"missing its array {rel}"
        if _sha256(data) != meta.get("array_sha256"):
            return f"pointing at a damaged array {rel} (sha256 differs)"
        problem = _npy_problem(data, n_models)
        return f"pointing at an unusable array {rel} ({problem})" if problem else ""

    def read_array(self, meta: Mapping[str, Any]) -> Any:
        """The float64 matrix a cell's meta points to, checked against its sha256 (:class:`UserError` if not)."""
        import numpy as np

        problem = self._array_problem(meta)
        data = b"" if problem else (self.path / meta["array"]).read_bytes()
        if not problem and _sha256(data) != meta.get("array_sha256"):  # changed since the check
            problem = f"pointing at a damaged array {meta['array']} (sha256 differs)"
        if problem:
            raise UserError(f"{self.path}: matrix cell {problem}; rerun the suite to recompute it")
        try:
            values = np.load(io.BytesIO(data), allow_pickle=False)
        except ValueError as exc:
            raise UserError(f"{self.path / meta['array']}: not a .npy matrix ({exc})") from None
        if values.dtype != np.float64 or values.ndim != 2 or values.shape[0] != values.shape[1]:
            raise UserError(f"{self.path / meta['array']}: expected a square float64 matrix, "
                            f"found {values.dtype} {values.shape}")
        return values

    def matrix(self, kind: str, metric: str = "", probe_set: str = "clean") -> tuple[list[str], Any]:
        """``(model ids, M x M float64 ndarray)`` of one stored matrix, rows and columns in ``ids`` order.

        ``kind`` is ``"similarity"`` (``metric`` = the metric's label;
        ``probe_set="weights"`` for weight metrics) or ``"agreement"`` (no
        metric).  Values are as the metric returned them (not oriented).  For
        a run directory of ``store_format`` 1 the matrix is rebuilt from its
        per-pair rows: entries never stored (the diagonal; the lower triangle
        of a symmetric metric is mirrored from the upper) are NaN.  Raises
        :class:`MeasurementFailed` (the cell's error) for a failed cell and
        :class:`KeyError` when the run has no such matrix.
        """
        if kind not in ("similarity", "agreement"):
            raise ValueError(f"unknown matrix kind {kind!r}; expected 'similarity' or 'agreement'")
        metric = metric if kind == "similarity" else ""
        cell_id = matrix_cell_id(kind, metric, probe_set)
        payload = self._payload(cell_id)
        meta = payload.get("meta", {}) if payload is not None else {}
        if isinstance(meta, dict) and meta.get("array"):
            return self.models(), self.read_array(meta)
        if isinstance(meta, dict) and meta.get("error"):
            raise MeasurementFailed(str(meta["error"]))
        missing = KeyError(f"{self.path}: no {kind} matrix{f' for metric {metric!r}' if metric else ''} "
                           f"on probe set {probe_set!r}")
        if self._format is None:
            self._format = self.store_format()
        if self._format >= 2:
            raise missing
        if self._frame is None:
            self._frame = self.results()
        frame = self._frame
        ids = self.models()
        rows = frame[(frame["kind"] == kind) & (frame["metric"] == metric) & (frame["probe_set"] == probe_set)]
        failed = rows[rows["status"] == "failed"]
        if len(failed) and not (rows["status"] == "ok").any():
            raise MeasurementFailed(str(failed["error"].iloc[0]))
        values = matrix_from_rows(rows, ids)
        if values is None:
            raise missing
        return ids, values

    # -- cells ---------------------------------------------------------------

    def cell_path(self, cell_id: str) -> Path:
        """Where cell ``cell_id``'s file is (whether or not it exists; nothing is read or checked)."""
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", cell_id)[:60]
        digest = hashlib.sha1(cell_id.encode()).hexdigest()[:12]
        return self.cells_dir / f"{slug}-{digest}.json"

    def has_cell(self, cell_id: str) -> bool:
        return self.load_cell(cell_id) is not None

    def write_cell(self, cell_id: str, rows: Sequence[Mapping[str, Any]], meta: Mapping[str, Any] | None = None) -> None:
        self._no_links("cells/cell.json")
        self.cells_dir.mkdir(parents=True, exist_ok=True)
        payload = {"cell": cell_id, "suite_sha256": self.suite_sha256, "meta": dict(meta or {}),
                   "rows": [dict(r) for r in rows]}
        _atomic_write(self.cell_path(cell_id), json.dumps(payload, default=str))

    def remove_cell(self, cell_id: str) -> None:
        self.cell_path(cell_id).unlink(missing_ok=True)

    def load_cell(self, cell_id: str) -> tuple[list[dict[str, Any]], dict[str, Any]] | None:
        """A finished cell's rows and meta; ``None`` if absent, damaged or from another suite.

        A damaged cell (truncated, empty, not our format) or one written by
        another suite hash is logged, deleted and recomputed, like a damaged
        cache entry: a rerun never crashes on it and never mixes it in.
        """
        path = self.cell_path(cell_id)
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
            elif payload["meta"].get("array") is not None:
                reason = self._array_problem(payload["meta"])
            elif self.suite_sha256 and payload["meta"].get("matrix") is not None:
                # store format 1 (matrix as a JSON list and one row per pair): the writer redoes it as an
                # array (the similarity cache usually still holds the matrix, so nothing is recomputed)
                reason = "in the old store format (matrix as rows)"
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

    def _payload(self, cell_id: str) -> dict[str, Any] | None:
        """One cell's file as stored (no checks, nothing deleted: for readers of a finished run)."""
        try:
            payload = json.loads(self.cell_path(cell_id).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return payload if isinstance(payload, dict) and payload.get("cell") == cell_id else None

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
        coords = sorted({c for row in rows for c in row if c.startswith(COORD_PREFIX)})
        frame = pd.DataFrame(rows, columns=[*COLUMNS, *coords])
        frame = normalise_frame(frame)
        tmp = self.path / f".{RESULTS_FILE}.tmp{os.getpid()}"
        try:
            frame.to_parquet(tmp, index=False)
            os.replace(tmp, self.path / RESULTS_FILE)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise ResourceError(f"{self.path / RESULTS_FILE}: cannot write ({exc.strerror or exc})") from None
        return frame

    def results(self, matrices: bool = False) -> Any:
        """``results.parquet`` as a DataFrame.

        ``matrices=True`` also expands every stored matrix into the long format:
        its one ``statistic == "matrix"`` row is replaced, in place, by one row
        per ordered model pair ``a != b`` (statistic ``value`` for similarity,
        ``agreement`` for agreement).  M(M-1) rows per matrix: for small runs,
        tests and comparisons, not for a large grid (use :meth:`matrix`).
        """
        import pandas as pd

        path = self.path / RESULTS_FILE
        if not path.exists():
            raise UserError(f"{self.path}: no {RESULTS_FILE}; the run has not finished (rerun it to resume)")
        frame = pd.read_parquet(path)
        if not matrices:
            return frame
        is_matrix = ((frame["statistic"] == MATRIX_STATISTIC) & (frame["status"] == "ok")
                     & frame["kind"].isin(["similarity", "agreement"]))
        if not is_matrix.any():
            return frame
        import numpy as np

        parts = []
        start = 0
        for pos in np.flatnonzero(is_matrix.to_numpy()):
            row = frame.iloc[pos]
            ids, values = self.matrix(row["kind"], row["metric"], row["probe_set"])
            m = len(ids)
            a, b = np.nonzero(~np.eye(m, dtype=bool))  # row-major: (0, 1), (0, 2), ... (1, 0), ...
            entries = pd.DataFrame({c: [row[c]] * len(a) for c in COLUMNS})
            entries["model_a"] = np.asarray(ids, dtype=object)[a]
            entries["model_b"] = np.asarray(ids, dtype=object)[b]
            entries["statistic"] = "value" if row["kind"] == "similarity" else "agreement"
            entries["value"] = values[a, b]
            entries["n"] = pd.array([pd.NA] * len(a), dtype="Int64")
            parts += [frame.iloc[start:pos], entries]
            start = pos + 1
        parts.append(frame.iloc[start:])
        return normalise_frame(pd.concat(parts, ignore_index=True))

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
    for col in [c for c in frame.columns if str(c).startswith(COORD_PREFIX)]:
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype("float64")
    return frame
