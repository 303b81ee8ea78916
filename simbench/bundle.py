"""Benchmark bundles: what a finished run measured, in files any NumPy/pandas reader can open.

A bundle is a directory (or a ``.tar``/``.tar.gz``/``.zip`` of one, or a
Hugging Face dataset repository holding one) with a manifest, ``bundle.json``
(format name and version, provenance, and every other file with its sha256
and size), and NumPy/parquet/JSON files: the probe sets, every model's
representations (the layer the suite's metrics read) and outputs on them,
dense weights when the suite has a weight metric, the agreement matrices and
accuracies, every metric's matrices, the resolved suite and the run's
manifest and records.  The layout, dtypes and orderings are in
``docs/bundles.md``.  :func:`export` writes one from a run directory and the
stage cache that run used (read only); :func:`open_bundle` finds, unpacks and
verifies one; :mod:`simbench.scoring` scores a new metric against it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tarfile
import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar

from .cache import TensorCache, file_sha256
from .errors import UserError, one_line
from .plan import Executor
from .provenance import now
from .results import _file_name

FORMAT = "simbench-bundle"
FORMAT_VERSION = 1
MANIFEST = "bundle.json"
HUB_PREFIXES = ("hf://", "hf:")
ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".zip")


# ----------------------------------------------------------------------------
# Reading the stage cache without ever writing it
# ----------------------------------------------------------------------------


class ReadOnlyCache(TensorCache):
    """The run's stage cache, read only: a missing or damaged entry is a one-line error, never a computation,
    and nothing is written or deleted (an export may read another user's cache)."""

    def check_writable(self) -> None:
        if not self.root.is_dir():
            raise UserError(f"cache directory {self.root}: not found; export reads the stage cache the run used "
                            "(--cache-dir DIR)")

    def clean_temp(self) -> int:
        return 0

    def load(self, key: str) -> Any:
        data_path, meta_path = self._paths(key)
        if not data_path.exists() or not meta_path.exists():
            return None
        from safetensors.torch import load_file

        try:
            meta = json.loads(meta_path.read_text())
            ok = file_sha256(data_path) == meta["sha256"]
        except (OSError, ValueError, KeyError, TypeError):
            ok = False
        if not ok:
            raise UserError(f"cache entry {key} in {self.root} is damaged (sha256 differs); rerun the suite "
                            "to rebuild it, then export")
        return load_file(str(data_path)), meta.get("meta", {})

    def save(self, key: str, tensors: Any, meta: Any = None) -> None:
        return None  # never reached: get_or_compute refuses a miss

    def discard(self, key: str, reason: str) -> None:
        raise UserError(f"cache entry {key} in {self.root} {reason}; rerun the suite to rebuild it, then export")

    def get_or_compute(self, key: str, compute: Any, check: Any = None) -> Any:
        found = self.load(key)
        if found is None:
            raise UserError(f"cache entry {key} is missing from {self.root}; export reads the stage cache the run "
                            "used (pass it with --cache-dir DIR)")
        if check is not None:
            try:
                check(*found)
            except Exception as exc:  # noqa: BLE001 - any reason the content is unusable
                self.discard(key, f"holds unusable content ({type(exc).__name__}: {str(exc)[:200]})")
        self.hits += 1
        return found


@dataclass(frozen=True)
class _NoTasks(Executor):
    """The replay's executor: a stage whose output the cache lacks is refused in one line, never run (an export
    reads the stages the run made; it trains and measures nothing)."""

    name: ClassVar[str] = "read-only replay"
    root: str = ""

    def run(self, tasks: Any, job: Any, calls: Any, progress: Any = None) -> dict[str, Any]:
        raise UserError(f"cache entry {tasks[0].output} is missing from {self.root}; export reads the stage cache "
                        "the run used (pass it with --cache-dir DIR)")


# ----------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------


class _Writer:
    """Writes files under a directory and remembers each one's sha256 and size (for ``bundle.json``)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.files: dict[str, dict[str, Any]] = {}

    def bytes(self, rel: str, data: bytes) -> None:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        self.files[rel] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}

    def npy(self, rel: str, array: Any) -> None:
        import numpy as np

        if hasattr(array, "detach"):
            array = array.detach().cpu().numpy()
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
        self.bytes(rel, buf.getvalue())

    def json(self, rel: str, obj: Any) -> None:
        # key order kept: a model's factors are in the zoo's order, which benchmarks group pairs by
        self.bytes(rel, json.dumps(obj, indent=1, default=str).encode("utf-8"))

    def parquet(self, rel: str, frame: Any) -> None:
        buf = io.BytesIO()
        frame.to_parquet(buf, index=False)
        self.bytes(rel, buf.getvalue())


def _payload(run: Any, cell_id: str) -> dict[str, Any]:
    payload = run._payload(cell_id)  # as stored: nothing checked, nothing deleted (the run is read only)
    if payload is None:
        raise UserError(f"{run.path}: cell {cell_id!r} is missing or damaged; resume the run, then export")
    return payload


def export(run_dir: str | os.PathLike[str], out: str | os.PathLike[str], *, cache_dir: str | os.PathLike[str] | None = None,
           suite_path: str | os.PathLike[str] | None = None, weights: bool | None = None, registry: Any = None,
           log: Any = None) -> Path:
    """Write the bundle of the finished run ``run_dir`` to ``out`` (a new directory, or an archive path ending in
    ``.tar``, ``.tar.gz``, ``.tgz`` or ``.zip``); return ``out``.

    The representations, probe sets and weights are not in the run directory but in the stage cache the run
    used (``cache_dir``, default as for ``simbench run``): the run's early stages are replayed against that cache
    read only, so a missing entry is a one-line error and nothing is trained, computed or written there.
    ``weights``: bundle every model's dense weights (default: when the suite has a weight metric).
    """
    from .results import RunDir

    say = log or (lambda text: None)
    run = RunDir(run_dir)
    manifest = run.read_manifest()
    if not manifest.get("finished"):
        raise UserError(f"{run.path}: the run has not finished; resume it (rerun the same command), then export")
    if run.store_format() < 2:
        raise UserError(f"{run.path}: store format 1 (matrices as rows); resume it with this simbench to rewrite "
                        "its matrices as arrays, then export")
    out = Path(out)
    archive = next((s for s in ARCHIVE_SUFFIXES if out.name.endswith(s)), "")
    if out.exists() and not (out.is_dir() and not archive and not any(out.iterdir())):
        raise UserError(f"{out}: already exists; choose a new path for the bundle")
    order = [str(c) for c in manifest.get("cell_order", [])]
    declared = sorted({c.split("/")[1] for c in order if c.startswith("matrix/")})
    if declared:
        raise UserError(f"{run.path}: benchmark(s) {', '.join(declared)} declare their own matrices; a bundle holds "
                        "the suite's similarity and agreement matrices only")
    with tempfile.TemporaryDirectory(prefix="simbench-export-") as tmp:
        stage = out.with_name(f".{out.name}.tmp{os.getpid()}") if not archive else Path(tmp) / "bundle"
        if stage.exists():
            shutil.rmtree(stage)
        stage.mkdir(parents=True)
        try:
            _export_into(run, manifest, order, _Writer(stage), Path(tmp) / "replay", cache_dir, suite_path,
                         weights, registry, say)
            if archive:
                _write_archive(stage, out, archive)
            else:
                if out.exists():
                    out.rmdir()  # empty (checked above)
                os.replace(stage, out)
        finally:
            if stage.exists() and not archive:
                shutil.rmtree(stage, ignore_errors=True)
    return out


def _export_into(run: Any, manifest: dict[str, Any], order: list[str], w: _Writer, replay_dir: Path,
                 cache_dir: Any, suite_path: Any, weights: bool | None, registry: Any, say: Any) -> None:
    import numpy as np
    import pandas as pd

    from .provenance import simbench_revision
    from .registry import build_registry
    from .boundary import fingerprint
    from .runner import Runner
    from .worker import set_threads
    from .suite import check_data_files, load_suite
    from ._version import __version__

    info = manifest.get("suite", {})
    reg = registry if registry is not None else build_registry()
    path = Path(suite_path) if suite_path else Path(str(info.get("path", "")))
    if not path.is_file():
        raise UserError(f"the run's suite file {str(path)!r} is not here; pass it with --suite FILE")
    suite = load_suite(path, reg, list(info.get("overrides") or []))
    if suite.sha256 != info.get("sha256"):
        raise UserError(f"{path}: differs from the suite the run used (sha256 {suite.sha256[:12]} vs "
                        f"{str(info.get('sha256'))[:12]}: the file, a file it extends or a data file changed); "
                        "pass the run's suite file with --suite FILE")
    runner = Runner(suite, reg, replay_dir, cache_dir=cache_dir, quiet=True)
    runner.cache = ReadOnlyCache(runner.cache.root)
    runner.cache.check_writable()
    runner.executor = _NoTasks(str(runner.cache.root))  # the plan's tasks find every output, or the export stops
    runner.device = str(manifest.get("device_type") or "cpu")
    set_threads(int(suite.run["threads"]))
    say(f"replaying {suite.name}'s stages from the cache {runner.cache.root} (read only)")
    check_data_files(suite)
    data = runner.load_data()
    runner.state.data = data
    runner.data_fingerprint = fingerprint(data)
    if runner.data_fingerprint != manifest.get("data_fingerprint"):
        raise UserError(f"dataset {suite.data.name!r} loads other data than the run had (fingerprint "
                        f"{runner.data_fingerprint[:12]} vs {str(manifest.get('data_fingerprint'))[:12]})")
    specs, models, zoo_key = runner.build_zoo(data)
    runner.state.specs, runner.state.models, runner.state.zoo_key = specs, models, zoo_key
    runner.perturb_models(data)
    runner.make_probe_sets(data)
    ids = [s.id for s in runner.state.specs]
    if ids != run.models():
        raise UserError(f"{run.path}: its models ({len(run.models())}) differ from the zoo the suite builds now "
                        f"({len(ids)}); export with the simbench revision of the run")
    probes = [c.split("/", 1)[1] for c in order if c.startswith("agreement/")]
    layer = str(suite.probes["layer"])
    probe_meta = manifest.get("probe_sets", {})
    probe_entries = []
    for name in probes:
        ps = runner.state.probe_sets[name]
        d = f"probe_sets/{_file_name(name)}"
        w.npy(f"{d}/x.npy", ps.x)
        w.npy(f"{d}/y.npy", ps.y)
        by_model = [i for i, mid in enumerate(ids) if ps.x_by_model is not None and mid in ps.x_by_model]
        for i in by_model:
            w.npy(f"{d}/by_model/{i}.npy", ps.x_by_model[ids[i]])
        reps, outs = runner.representations(name, None)
        for i, rep in enumerate(reps):
            w.npy(f"representations/{_file_name(name)}/{i}.npy", rep)
        w.npy(f"outputs/{_file_name(name)}.npy", np.stack([o.detach().cpu().numpy() for o in outs]))
        runner._reps.clear()
        probe_entries.append({"name": name, "file": _file_name(name), "n": int(ps.x.shape[0]),
                              "meta": (probe_meta.get(name) or {}).get("meta", {}), "by_model": by_model})
        say(f"  {name}: {len(reps)} representations")
    has_weight_metric = any(u.obj.kind == "weight" for u in suite.metrics)
    strides: dict[str, list[int]] = {}
    if weights if weights is not None else has_weight_metric:
        for i, mid in enumerate(ids):
            for j, t in enumerate(runner.state.models[mid].dense_weights()):
                w.npy(f"weights/{i}/{j}.npy", t.detach().cpu())
                strides[f"{i}/{j}"] = list(t.stride())
    layers = {mid: (runner.state.models[mid].default_layer if layer == "default" else layer) for mid in ids}
    w.json("models.json", {"ids": ids, "models": [{"id": s.id, "factors": dict(s.factors)}
                                                  for s in runner.state.specs]})
    # the run's matrices and the cells that recorded them (rows, flags, accuracies), byte for byte
    cells: dict[str, Any] = {}
    accuracy_rows = []
    for cell_id in order:
        if cell_id.startswith(("benchmark/", "matrix/")):
            continue
        payload = _payload(run, cell_id)
        meta = dict(payload.get("meta", {}))
        rel = meta.pop("array", None)
        if rel:
            data_bytes = (run.path / rel).read_bytes()
            if hashlib.sha256(data_bytes).hexdigest() != meta.get("array_sha256"):
                raise UserError(f"{run.path / rel}: sha256 differs from its cell's; the run directory is damaged")
            w.bytes(rel, data_bytes)
            meta["file"] = rel
        meta.pop("models_sha256", None)
        cells[cell_id] = {"rows": payload["rows"], "meta": meta}
        accuracy_rows += [{"probe_set": r["probe_set"], "model": r["model_a"], "statistic": r["statistic"],
                           "value": float(r["value"])} for r in payload["rows"] if r.get("kind") == "accuracy"]
    w.json("cells.json", {"order": [c for c in order if c in cells], "cells": cells})
    w.parquet("accuracy.parquet", pd.DataFrame(accuracy_rows, columns=["probe_set", "model", "statistic", "value"]))
    w.json("suite/suite.json", suite.raw)
    w.bytes("run/manifest.json", run.manifest_path.read_bytes())
    w.bytes("run/results.parquet", (run.path / "results.parquet").read_bytes())
    from .cache import plugin_key as _plugin_key

    doc = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created": now(),
        "exported_by": {"simbench_version": __version__, "simbench_revision": simbench_revision()},
        "suite": {k: info.get(k) for k in ("name", "sha256", "description", "path", "overrides", "data_files")},
        "run": {k: manifest.get(k) for k in ("simbench_version", "simbench_revision", "finished", "seed", "device",
                                              "device_type", "started")},
        "data": {**dict(manifest.get("data", {})), "fingerprint": manifest.get("data_fingerprint"),
                 "task": data.task, "num_classes": int(data.num_classes), "input_shape": list(data.input_shape)},
        "n_models": len(ids),
        "layer": layer,
        "layers": layers,
        "probe_sets": probe_entries,
        "metrics": [{"label": u.label, "name": u.name, "params": u.params, "kind": u.obj.kind} for u in suite.metrics],
        "benchmarks": [{"label": u.label, "name": u.name, "params": u.params, "version": u.obj.version,
                        "code": _plugin_key(u)["code"]} for u in suite.benchmarks],
        "weights": bool(strides),
        "weight_strides": strides,
    }
    doc["files"] = dict(sorted(w.files.items()))
    (w.root / MANIFEST).write_text(json.dumps(doc, indent=1, default=str), encoding="utf-8")


def _write_archive(stage: Path, out: Path, kind: str) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    files = sorted(p for p in stage.rglob("*") if p.is_file())
    if kind == ".zip":
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
            for p in files:
                zf.write(p, p.relative_to(stage).as_posix())
    else:
        with tarfile.open(tmp, "w:gz" if kind in (".tar.gz", ".tgz") else "w") as tf:
            for p in files:
                tf.add(p, p.relative_to(stage).as_posix(), recursive=False)
    os.replace(tmp, out)


# ----------------------------------------------------------------------------
# Finding, unpacking and verifying
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Bundle:
    """A verified bundle on disk: its directory and its ``bundle.json``."""

    root: Path
    doc: dict[str, Any]
    source: str

    def path(self, rel: str) -> Path:
        """A file of the bundle; only files ``bundle.json`` lists (and so were verified) are handed out."""
        if rel not in self.doc["files"]:
            raise UserError(f"bundle {self.source}: {rel} is not listed in {MANIFEST}")
        return self.root / rel

    def array(self, rel: str) -> Any:
        import numpy as np

        try:
            return np.load(self.path(rel), allow_pickle=False)
        except ValueError as exc:
            raise UserError(f"bundle {self.source}: {rel} is not a .npy array ({exc})") from None

    def json(self, rel: str) -> Any:
        try:
            return json.loads(self.path(rel).read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise UserError(f"bundle {self.source}: {rel} is not valid JSON ({exc})") from None

    @property
    def suite(self) -> dict[str, Any]:
        return dict(self.doc["suite"])


def _safe_rel(name: str, where: str) -> str:
    """``name`` as a relative POSIX path that stays inside its directory, or a one-line error."""
    p = PurePosixPath(name.replace("\\", "/"))
    if not name or p.is_absolute() or ".." in p.parts or (p.parts and ":" in p.parts[0]):
        raise UserError(f"{where}: refuses the entry {name!r} (an absolute path or one that leaves the bundle)")
    return p.as_posix()


def _extract(archive: Path, into: Path) -> Path:
    """Unpack ``archive`` into ``into`` after checking every entry: no absolute path, no ``..``, no link,
    no device; return the bundle's root (the directory holding ``bundle.json``)."""
    into.mkdir(parents=True, exist_ok=True)
    if archive.name.endswith(".zip"):
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            for info in infos:
                _safe_rel(info.filename, str(archive))
                if (info.external_attr >> 16) & 0o170000 == 0o120000:
                    raise UserError(f"{archive}: refuses the symbolic link {info.filename!r}")
            for info in infos:
                zf.extract(info, into)
    else:
        with tarfile.open(archive) as tf:
            members = tf.getmembers()
            for m in members:
                _safe_rel(m.name, str(archive))
                if not (m.isfile() or m.isdir()):
                    raise UserError(f"{archive}: refuses {m.name!r} (links and special files are not allowed)")
            tf.extractall(into, members=members, filter="data")
    found = sorted(into.rglob(MANIFEST), key=lambda p: len(p.parts))
    if not found:
        raise UserError(f"{archive}: holds no {MANIFEST}; not a simbench bundle")
    return found[0].parent


def _download_hub(spec: str) -> Path:
    """``hf://owner/name[@revision][/subdir]``: a dataset repository on the Hugging Face hub, downloaded
    with ``huggingface_hub.snapshot_download`` (its own cache; ``HF_HUB_OFFLINE=1`` reads only that)."""
    body = next(spec[len(p):] for p in HUB_PREFIXES if spec.startswith(p))
    parts = body.split("/")
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise UserError(f"{spec}: expected hf://OWNER/NAME[@REVISION][/SUBDIR]")
    repo, _, revision = f"{parts[0]}/{parts[1]}".partition("@")
    subdir = "/".join(parts[2:])
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise UserError(f"{spec}: loading a bundle from the hub needs huggingface_hub (pip install huggingface_hub)") from None
    try:
        patterns = {"allow_patterns": [f"{subdir.strip('/')}/*"]} if subdir else {}  # only the bundle's folder
        local = snapshot_download(repo_id=repo, repo_type="dataset", revision=revision or None, **patterns)
    except Exception as exc:  # offline, no such repository, no permission: one line
        raise UserError(f"{spec}: cannot download from the Hugging Face hub ({one_line(exc, 250)})") from None
    root = Path(local) / _safe_rel(subdir, spec) if subdir else Path(local)
    return root


def _temporary_dir() -> Path:
    """A directory to unpack an archive into, removed when the process ends."""
    import atexit

    path = Path(tempfile.mkdtemp(prefix="simbench-bundle-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def open_bundle(source: str | os.PathLike[str], unpack_dir: str | os.PathLike[str] | None = None,
                verify: bool = True) -> Bundle:
    """A bundle from a directory, an archive (unpacked into ``unpack_dir`` or a temporary directory) or
    ``hf://OWNER/NAME[@REVISION][/SUBDIR]``; its format checked and every listed file's size and sha256
    verified.  Every problem is one :class:`UserError` line."""
    text = str(source)
    if text.startswith(HUB_PREFIXES):
        root = _download_hub(text)
    else:
        path = Path(source)
        if not path.exists():
            raise UserError(f"{path}: no such bundle (a directory, a .tar/.tar.gz/.zip, or hf://OWNER/NAME)")
        if path.is_file():
            if not path.name.endswith(ARCHIVE_SUFFIXES):
                raise UserError(f"{path}: expected a bundle directory or a .tar, .tar.gz, .tgz or .zip archive")
            target = Path(unpack_dir) if unpack_dir else _temporary_dir()
            try:
                root = _extract(path, target)
            except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as exc:
                raise UserError(f"{path}: not a readable archive ({type(exc).__name__}: {exc})") from None
        else:
            root = path
    return Bundle(root, read_manifest(root, text, verify), text)


def read_manifest(root: Path, label: str = "", verify: bool = True) -> dict[str, Any]:
    """``bundle.json`` of the bundle at ``root``, checked: format, version, and (``verify``) every file."""
    label = label or str(root)
    manifest = root / MANIFEST
    if not manifest.is_file():
        raise UserError(f"{label}: no {MANIFEST}; not a simbench bundle")
    try:
        doc = json.loads(manifest.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise UserError(f"{label}/{MANIFEST}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise UserError(f"{label}/{MANIFEST}: format is {doc.get('format') if isinstance(doc, dict) else None!r}; "
                        f"expected {FORMAT!r}")
    if doc.get("format_version") != FORMAT_VERSION:
        raise UserError(f"{label}: bundle format version {doc.get('format_version')!r}; this simbench reads version "
                        f"{FORMAT_VERSION} (upgrade simbench, or export the run again)")
    files = doc.get("files")
    if not isinstance(files, Mapping) or not files:
        raise UserError(f"{label}/{MANIFEST}: no 'files' table")
    for rel, entry in files.items():
        rel = _safe_rel(str(rel), f"{label}/{MANIFEST}")
        path = root / rel
        if not path.is_file():
            raise UserError(f"{label}: file {rel} listed in {MANIFEST} is missing")
        if not verify:
            continue
        size = path.stat().st_size
        if size != entry.get("bytes"):
            raise UserError(f"{label}: file {rel} has {size} bytes, {MANIFEST} says {entry.get('bytes')} "
                            "(damaged or modified)")
        if file_sha256(path) != entry.get("sha256"):
            raise UserError(f"{label}: file {rel} has another sha256 than {MANIFEST} lists (damaged or modified)")
    return doc
