"""Datasets installed once per user (``simbench data mnist --from DIR``), where the suites find them.

The MNIST suites name their files as ``$SIMBENCH_MNIST_DIR/train*.parquet``.
``simbench data mnist --from DIR`` finds the hub-schema parquet files in
``DIR``, checks their sha256 against the known copies and copies them into
the user data directory (``platformdirs.user_data_dir("simbench")``, or
``$SIMBENCH_DATA_DIR``).  :func:`apply_env_defaults` -- called when a suite
is loaded -- then sets ``SIMBENCH_MNIST_DIR`` to that folder when the
variable is unset, so the suites run with no environment variable.  A value
the user set always wins.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError

#: overrides the user data directory (where ``simbench data`` installs datasets)
DATA_ENV = "SIMBENCH_DATA_DIR"


@dataclass(frozen=True)
class StoredDataset:
    """A dataset ``simbench data NAME --from DIR`` installs: its splits' known sha256 and the variable suites use."""

    name: str
    #: the environment variable the suites' ``data_files`` patterns start with
    env: str
    #: split -> the sha256 of every known good copy of that split's parquet file
    sha256: dict[str, tuple[str, ...]]
    title: str = ""

    def command(self) -> str:
        """The command that installs this dataset."""
        return f"simbench data {self.name} --from DIR"


#: name -> dataset.  MNIST: 60 000 / 10 000 images in the hub's schema for ``ylecun/mnist``
#: (``image`` = struct<bytes: PNG, path>, ``label`` = int64), rows in the original order.
DATASETS: dict[str, StoredDataset] = {
    "mnist": StoredDataset(
        "mnist", "SIMBENCH_MNIST_DIR",
        {"train": ("54042456aea252398f165ea2e1a6656bc034e492e72752b420d489e3a2823df6",),
         "test": ("c5ab1d6fdbae00f8a6fbf51fc9b1f1a17d8e156a3a5d69e864bf846c0a436b8d",)},
        "MNIST",
    ),
}


def data_dir() -> Path:
    """The user data directory: ``$SIMBENCH_DATA_DIR``, else ``platformdirs.user_data_dir("simbench")``."""
    override = os.environ.get(DATA_ENV, "").strip()
    if override:
        return Path(override).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("simbench"))


def dataset_dir(name: str) -> Path:
    """Where dataset ``name`` is (or would be) installed."""
    return data_dir() / name


def installed(name: str) -> bool:
    """Whether every split of dataset ``name`` is installed (files present; hashes were checked on install)."""
    ds = DATASETS[name]
    folder = dataset_dir(name)
    return all((folder / f"{split}.parquet").is_file() for split in ds.sha256)


def apply_env_defaults() -> dict[str, str]:
    """Set each installed dataset's variable (``SIMBENCH_MNIST_DIR``) where it is unset; return what was set.

    Called before a suite's ``data_files`` are resolved; a value in the
    environment is never replaced.
    """
    done = {}
    for name, ds in DATASETS.items():
        if os.environ.get(ds.env) is None and installed(name):
            os.environ[ds.env] = done[ds.env] = str(dataset_dir(name))
    return done


_VAR = re.compile(r"\$(?:\{(\w+)\}|(\w+))")


def missing_files_message(pattern: str) -> str:
    """One line for a ``data_files`` pattern that matches no file: which variable is unset, which command helps."""
    names = [a or b for a, b in _VAR.findall(pattern)]
    for ds in DATASETS.values():
        if ds.env in names:
            value = os.environ.get(ds.env)
            where = (f"${ds.env} is not set and {ds.title or ds.name} is not installed" if value is None
                     else f"${ds.env} is {value!r}")
            return (f"no file matches {pattern!r} ({where}); install {ds.title or ds.name} once with "
                    f"`{ds.command()}` (DIR holding {' and '.join(f'{s}*.parquet' for s in ds.sha256)}) "
                    f"or set {ds.env} to a folder holding them")
    unset = [n for n in names if n not in os.environ]
    if unset:
        return f"no such file {pattern!r} (${unset[0]} is not set)"
    return f"no such file {pattern!r}"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def find_files(name: str, source: Path) -> dict[str, Path]:
    """``split -> file``: the one ``<split>*.parquet`` per split in ``source`` (or in ``source/<name>``,
    the hub's layout); a one-line :class:`UserError` when a split has none or several."""
    ds = DATASETS[name]
    if not source.is_dir():
        raise UserError(f"--from {source}: no such directory")
    out = {}
    for split in ds.sha256:
        found: list[Path] = []
        for folder in (source, source / name):
            found = sorted(p for p in folder.glob(f"{split}*.parquet") if p.is_file())
            if found:
                break
        if not found:
            raise UserError(f"--from {source}: no {split}*.parquet file; expected the {ds.title or name} "
                            f"parquet files in the hub's schema ({', '.join(f'{s}.parquet' for s in ds.sha256)})")
        if len(found) > 1:
            raise UserError(f"--from {source}: several {split}*.parquet files ({', '.join(p.name for p in found)}); "
                            "expected one per split")
        out[split] = found[0]
    return out


def install(name: str, source: str | os.PathLike[str], verify: bool = True) -> tuple[Path, dict[str, str]]:
    """Copy dataset ``name``'s parquet files from ``source`` into :func:`dataset_dir`; return it and
    ``split -> sha256``.

    Every file is hashed first: with ``verify`` one whose sha256 is not a known
    copy is refused (one-line :class:`UserError`) and nothing is installed.
    Each file is written to a temporary name, hashed again and renamed, so an
    interrupted copy never leaves a partial file where the suites look.
    """
    if name not in DATASETS:
        raise UserError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    ds = DATASETS[name]
    files = find_files(name, Path(source).expanduser())
    digests = {}
    for split, path in files.items():
        try:
            digests[split] = _sha256(path)
        except OSError as exc:
            raise UserError(f"{path}: cannot read ({exc.strerror or exc})") from None
        if verify and digests[split] not in ds.sha256[split]:
            raise UserError(f"{path}: sha256 {digests[split][:16]}… is not a known {ds.title or name} {split} file "
                            f"(expected {ds.sha256[split][0][:16]}…); nothing installed (--no-verify installs it "
                            "anyway)")
    target = dataset_dir(name)
    try:
        target.mkdir(parents=True, exist_ok=True)
        for split, path in files.items():
            final = target / f"{split}.parquet"
            if final.is_file() and _sha256(final) == digests[split]:
                continue
            fd, tmp = tempfile.mkstemp(prefix=f".{split}.", suffix=".tmp", dir=target)
            os.close(fd)
            try:
                shutil.copyfile(path, tmp)
                if _sha256(Path(tmp)) != digests[split]:
                    raise UserError(f"{path}: changed while it was copied; try again")
                os.replace(tmp, final)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
    except OSError as exc:
        raise UserError(f"data directory {target}: cannot write ({exc.strerror or exc}); "
                        f"set {DATA_ENV} to a writable folder") from None
    return target, digests
