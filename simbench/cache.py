"""Content-addressed tensor cache.

Every stage result that is expensive to recompute (trained weights, probe
sets, representations, similarity matrices) is stored as a safetensors file
named by the sha256 of a JSON description of everything it depends on.  A
sidecar ``.json`` records the file's own sha256: a truncated or corrupted
file is detected, reported, deleted and recomputed, never loaded.  Writes go
to a temporary file and are renamed into place, so a killed run leaves no
half-written entry.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.util
import json
import logging
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ResourceError, one_line

if TYPE_CHECKING:  # pragma: no cover
    import torch

log = logging.getLogger("simbench.cache")

#: refuse to start (before training) when the cache's disk has less free space than this
MIN_FREE_BYTES = 64 * 2**20

#: Bump to invalidate every cache entry when the core's stage code changes.
CORE_CACHE_VERSION = "1"


def _seeding_source_hash() -> str:
    """sha256 of :mod:`simbench.seeding`'s source.

    Plugin code hashes stop at the core (it is versioned as a whole), but every
    random stream of every plugin comes from the seed helper, so a change to
    its derivation must invalidate every cached product, not only the core's.
    """
    return hashlib.sha256((Path(__file__).parent / "seeding.py").read_bytes()).hexdigest()


SEEDING_HASH = _seeding_source_hash()


def content_hash(description: Any) -> str:
    """sha256 of a canonical JSON rendering (sorted keys, tuples as lists)."""
    blob = json.dumps(description, sort_keys=True, default=_json_default, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot hash {type(obj).__name__} in a cache key")


def _module_file(name: str) -> Path | None:
    module = sys.modules.get(name)
    file = getattr(module, "__file__", None) if module is not None else None
    if file is None:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError, AttributeError):
            return None
        file = spec.origin if spec is not None and spec.has_location else None
    if not file or not str(file).endswith(".py"):
        return None
    return Path(file)


def _imported_names(source: str, module: str, is_package: bool) -> set[str]:
    """Module names ``source`` imports anywhere (also inside functions), relative ones resolved."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    package = module if is_package else module.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".") if package else []
                base_parts = parts[: len(parts) - node.level + 1] if node.level <= len(parts) else []
                base = ".".join(p for p in [*base_parts, node.module or ""] if p)
            else:
                base = node.module or ""
            if base:
                out.add(base)
            out.update(f"{base}.{alias.name}" if base else alias.name for alias in node.names)
    return out


@functools.lru_cache(maxsize=1)
def _distributions_by_package() -> dict[str, list[str]]:
    """Top-level import name -> installing distributions (read once per process: listing every
    installed file of every distribution on each hash took 5-10 s in a 60-package environment)."""
    import importlib.metadata

    return importlib.metadata.packages_distributions()


@functools.lru_cache(maxsize=64)
def _record_digest(distribution: str) -> tuple[str, frozenset[str]]:
    """``(name==version:<sha256 of RECORD>, the installed paths RECORD lists)`` of one distribution."""
    import importlib.metadata

    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "", frozenset()
    record = dist.read_text("RECORD") or ""
    if not record:
        return "", frozenset()
    digest = hashlib.sha256(record.encode()).hexdigest()
    return f"{dist.metadata['Name']}=={dist.version}:{digest}", frozenset(str(f) for f in dist.files or [])


def _installed_distribution(file: Path) -> str:
    """``name==version:<sha256 of RECORD>`` when ``file`` belongs to a regular (non-editable)
    install, else ``""``.  Looks only at the distributions that install the file's top-level
    package (``importlib.metadata.packages_distributions``), so it costs milliseconds."""
    parts = file.resolve().parts
    roots = [i for i, part in enumerate(parts) if part in ("site-packages", "dist-packages")]
    if not roots or roots[-1] + 1 >= len(parts):
        return ""
    relative = "/".join(parts[roots[-1] + 1:])
    top = parts[roots[-1] + 1].removesuffix(".py")
    for distribution in _distributions_by_package().get(top, []):
        stamp, files = _record_digest(distribution)
        if stamp and relative in files:
            return stamp
    return ""


def code_hash(module: str) -> str:
    """sha256 of the code that defines a plugin living in ``module``.

    For a regular installed distribution: its name, version and ``RECORD``
    (which holds the hash of every file it installed).  Otherwise (a source
    checkout, an editable install, a ``--plugin`` file): the source of the
    module and, transitively, of every module of the same top-level package
    it imports anywhere (also inside functions, where heavy implementation
    modules are imported lazily).  Editing any of them changes the hash, so
    cached results computed by the old code are never reused.
    """
    first = _module_file(module)
    if first is None:
        return "unknown:" + module
    try:
        stat = first.stat()
        stamp = (str(first), stat.st_mtime_ns, stat.st_size)
    except OSError:
        stamp = (str(first), 0, 0)
    return _code_hash(module, stamp)


@functools.lru_cache(maxsize=256)
def _code_hash(module: str, stamp: tuple[str, int, int]) -> str:
    # memoised per (module, file stamp): a --plugin file edited between two runs in one process is rehashed
    top = module.split(".")[0]
    first = Path(stamp[0])
    installed = _installed_distribution(first)
    if installed:
        return hashlib.sha256(installed.encode()).hexdigest()
    seen: dict[str, bytes] = {}
    todo = [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        file = _module_file(name) if name != module else first
        if file is None:
            continue
        try:
            blob = file.read_bytes()
        except OSError:
            continue
        seen[name] = blob
        is_package = file.name == "__init__.py"
        for imported in _imported_names(blob.decode("utf-8", "replace"), name, is_package):
            # only our own package: the core and third-party libraries are versioned elsewhere
            if imported.split(".")[0] == top and imported not in seen and top != "simbench":
                todo.append(imported)
    h = hashlib.sha256()
    for name in sorted(seen):
        h.update(name.encode() + b"\0" + hashlib.sha256(seen[name]).digest())
    return h.hexdigest()


def plugin_key(use: Any) -> dict[str, Any]:
    """What a plugin's cached products depend on: its name, parameters and the hash of its *code*
    (``use``: a :class:`simbench.suite.PluginUse`).

    The hand-bumped ``version`` stays in the key, but editing the plugin's
    source (or installing another version of its distribution) is enough to
    invalidate its cache entries.
    """
    return {"name": use.name, "version": use.obj.version, "params": use.params, "code": class_code_hash(type(use.obj))}


def class_code_hash(cls: type) -> str:
    """:func:`code_hash` of the module defining ``cls`` and of its bases' modules (outside the core)."""
    modules = sorted({c.__module__ for c in cls.__mro__ if c.__module__ not in ("builtins",)
                      and not c.__module__.startswith("simbench.") and c.__module__ != "simbench"})
    return content_hash([code_hash(m) for m in modules])


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class TensorCache:
    """A directory of ``<kind>/<hash>.safetensors`` entries with checksums."""

    def __init__(self, root: str | os.PathLike[str], enabled: bool = True) -> None:
        self.root = Path(root)
        self.enabled = enabled
        self.hits = 0
        self.misses = 0
        self.rebuilt: list[str] = []
        #: entries that could not be written (disk full, read-only): the run went on without caching them
        self.save_failures = 0

    def check_writable(self) -> None:
        """Create the cache directory and prove it writable, or raise a one-line :class:`ResourceError`.

        Called before any training, so a read-only or misplaced cache is
        reported at once, not after an hour of work.
        """
        if not self.enabled:
            return
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = self.root / f".write-test{os.getpid()}"
            probe.write_bytes(b"x")
            probe.unlink()
        except OSError as exc:
            raise ResourceError(
                f"cache directory {self.root}: not writable ({exc.strerror or exc}); "
                "use --cache-dir DIR or --no-cache"
            ) from None
        free = _free_bytes(self.root)
        if free is not None and free < MIN_FREE_BYTES:
            raise ResourceError(
                f"cache directory {self.root}: only {free // 2**20} MB free on its disk; "
                "free some space or use --cache-dir DIR on another disk"
            )

    def clean_temp(self) -> int:
        """Remove temporary files whose writing process is gone (another live run may be writing its own)."""
        removed = 0
        if not self.root.is_dir():
            return 0
        for p in self.root.glob("*/*.tmp*"):
            pid_text = p.suffix[len(".tmp"):]
            if pid_text.isdigit() and _alive(int(pid_text)):
                continue
            p.unlink(missing_ok=True)
            removed += 1
        return removed

    def key(self, kind: str, description: Mapping[str, Any]) -> str:
        return f"{kind}/{content_hash({'core': CORE_CACHE_VERSION, 'seeding': SEEDING_HASH, **description})}"

    def _paths(self, key: str) -> tuple[Path, Path]:
        base = self.root / key
        return base.with_suffix(".safetensors"), base.with_suffix(".json")

    def has(self, key: str) -> bool:
        """Whether an entry exists (not checked: :meth:`load` verifies it)."""
        data_path, meta_path = self._paths(key)
        return self.enabled and data_path.exists() and meta_path.exists()

    def load(self, key: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
        """The stored tensors and metadata, or ``None`` if absent or damaged."""
        if not self.enabled:
            return None
        data_path, meta_path = self._paths(key)
        if not data_path.exists() or not meta_path.exists():
            return None
        from safetensors.torch import load_file

        try:
            meta = json.loads(meta_path.read_text())
            if file_sha256(data_path) != meta["sha256"]:
                raise ValueError("checksum mismatch (truncated or corrupted)")
            tensors = load_file(str(data_path))
        except Exception as exc:
            log.warning("cache entry %s is damaged (%s); rebuilding it", data_path, exc)
            self.rebuilt.append(key)
            for p in (data_path, meta_path):
                p.unlink(missing_ok=True)
            return None
        return tensors, meta.get("meta", {})

    def save(self, key: str, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any] | None = None) -> None:
        if not self.enabled:
            return
        from safetensors import SafetensorError
        from safetensors.torch import save_file

        data_path, meta_path = self._paths(key)
        tmp = data_path.with_suffix(f".tmp{os.getpid()}")
        tmp_meta = meta_path.with_suffix(f".tmp{os.getpid()}")
        try:
            data_path.parent.mkdir(parents=True, exist_ok=True)
            # clone: safetensors refuses tensors that share memory (e.g. one label tensor reused)
            save_file({k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}, str(tmp))
            digest = file_sha256(tmp)
            os.replace(tmp, data_path)
            tmp_meta.write_text(json.dumps({"sha256": digest, "meta": dict(meta or {})}, default=_json_default))
            os.replace(tmp_meta, meta_path)
        except (OSError, SafetensorError) as exc:
            # disk full or the directory became read-only (safetensors reports an I/O failure as its own
            # SafetensorError, not OSError): the result is still good, only not cached.  One warning per
            # cache; later failures are counted, not repeated (a full disk fails every write after it).
            for p in (tmp, tmp_meta, data_path, meta_path):
                p.unlink(missing_ok=True)
            self.save_failures += 1
            reason = str(getattr(exc, "strerror", None) or "").strip() or one_line(exc, typed=False)
            (log.warning if self.save_failures == 1 else log.debug)(
                "cache entry %s not written (%s); going on without caching it (further failures are not "
                "repeated)", data_path, reason[:200])

    def discard(self, key: str, reason: str) -> None:
        """Delete an entry whose checksum matched but whose content is not what its key stands for (a matrix
        that fails validation, representations missing a model): logged, counted as rebuilt, recomputed by the
        caller -- never kept to fail every later run the same way."""
        data_path, meta_path = self._paths(key)
        log.warning("cache entry %s %s; discarding and rebuilding it", data_path, reason)
        self.rebuilt.append(key)
        for p in (data_path, meta_path):
            p.unlink(missing_ok=True)

    def get_or_compute(
        self,
        key: str,
        compute: Callable[[], tuple[Mapping[str, torch.Tensor], Mapping[str, Any]]],
        check: Callable[[Mapping[str, torch.Tensor], Mapping[str, Any]], None] | None = None,
    ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Load ``key`` or compute, store and return it.

        ``check(tensors, meta)`` (optional) raises if a stored entry's content
        is unusable although its checksum matches; the entry is then
        :meth:`discard`-ed and computed again.
        """
        found = self.load(key)
        if found is not None and check is not None:
            try:
                check(*found)
            except Exception as exc:  # noqa: BLE001 - any reason the content is unusable
                self.discard(key, f"holds unusable content ({one_line(exc, 250)})")
                found = None
        if found is not None:
            self.hits += 1
            return found
        self.misses += 1
        tensors, meta = compute()
        self.save(key, tensors, meta)
        return dict(tensors), dict(meta)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def _free_bytes(path: Path) -> int | None:
    import shutil

    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None
