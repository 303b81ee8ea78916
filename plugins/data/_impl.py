"""Loading code for the dataset plugins (imports numpy/torch; loaded lazily)."""

from __future__ import annotations

import functools
import glob
import importlib.util
import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

import simbench
from simbench.errors import UserError
from simbench.seeding import numpy_rng

#: MNIST digits are fitted into a 20x20 box and centred in a 28x28 frame.
BOX, FRAME = 20, 28


def select_classes(y: np.ndarray, classes: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the examples whose label is in ``classes`` and their new labels (position in ``classes``)."""
    lookup = np.full(max(int(y.max(initial=0)), max(classes)) + 1, -1, dtype=np.int64)
    lookup[list(classes)] = np.arange(len(classes))
    new = lookup[y]
    keep = np.flatnonzero(new >= 0)
    return keep, new[keep]


def stratified_split(
    y: np.ndarray, fractions: Sequence[float], rng: np.random.Generator
) -> list[np.ndarray]:
    """Split indices of ``y`` into ``len(fractions) + 1`` shuffled parts, stratified by label.

    Part ``k`` (``k < len(fractions)``) receives ``round(fractions[k] * n_c)``
    examples of every class ``c``; the last part keeps the rest.  Each part is
    shuffled, so its first examples cover every class.
    """
    parts: list[list[np.ndarray]] = [[] for _ in range(len(fractions) + 1)]
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        start = 0
        for k, frac in enumerate(fractions):
            take = int(round(frac * len(idx)))
            parts[k].append(idx[start : start + take])
            start += take
        parts[-1].append(idx[start:])
    return [rng.permutation(np.concatenate(p)) for p in parts]


def digits_to_28(images: np.ndarray) -> torch.Tensor:
    """8x8 digits with values 0-16 -> float32 ``[N, 1, 28, 28]`` in [0, 1], MNIST geometry."""
    x = torch.as_tensor(np.asarray(images, dtype=np.float32) / 16.0).unsqueeze(1)
    x = torch.nn.functional.interpolate(x, size=(BOX, BOX), mode="bilinear", align_corners=False, antialias=True)
    pad = (FRAME - BOX) // 2
    x = torch.nn.functional.pad(x.clamp_(0.0, 1.0), (pad, pad, pad, pad))
    return x.contiguous()


def _meta(plugin: Any, **extra: Any) -> dict[str, Any]:
    params = {k: (list(v) if isinstance(v, tuple) else v) for k, v in plugin.params().items()}
    return {"dataset": plugin.name, "params": params, "classes": list(plugin.classes), **extra}


def _split(x: torch.Tensor, y: np.ndarray, idx: np.ndarray) -> simbench.Split:
    return simbench.Split(x=x[torch.as_tensor(idx)].contiguous(), y=torch.as_tensor(y[idx], dtype=torch.long))


@functools.lru_cache(maxsize=1)
def digits_raw() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled digits: (float64 [1797, 8, 8] with values 0-16, int64 labels)."""
    # Reading the bundled CSV directly skips importing scikit-learn (~2 s); same data as load_digits().
    spec = importlib.util.find_spec("sklearn")
    path = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz" if spec and spec.origin else None
    if path is not None and path.is_file():
        table = np.loadtxt(path, delimiter=",")
        return table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(np.int64)
    from sklearn.datasets import load_digits  # pragma: no cover - unusual installation layout

    raw = load_digits()  # pragma: no cover
    return np.asarray(raw.images), np.asarray(raw.target, dtype=np.int64)  # pragma: no cover


def load_digits28(ds: simbench.Dataset, ctx: simbench.RunContext) -> simbench.DataSplits:
    """The ``digits28`` data set: sklearn digits, class subset, stratified split."""
    images, targets = digits_raw()
    keep, labels = select_classes(targets, ds.classes)
    x = digits_to_28(images[keep])
    val, test, train = stratified_split(labels, [ds.val_fraction, ds.test_fraction], numpy_rng(ctx.seed, "digits28"))
    return simbench.DataSplits(
        train=_split(x, labels, train),
        val=_split(x, labels, val),
        test=_split(x, labels, test),
        task="classification",
        num_classes=len(ds.classes),
        meta=_meta(ds, source="sklearn.datasets.load_digits"),
    )


# --------------------------------------------------------------------------
# MNIST
# --------------------------------------------------------------------------

HOW_TO_GET = (
    "either run `python -c \"import datasets; datasets.load_dataset('ylecun/mnist')\"` once with network "
    "access (it fills the Hugging Face cache; unset HF_HUB_OFFLINE/HF_DATASETS_OFFLINE for that), or download "
    "train-00000-of-00001.parquet and test-00000-of-00001.parquet from "
    "https://huggingface.co/datasets/ylecun/mnist/tree/main/mnist and set "
    "data_files = {train = \"...\", test = \"...\"} in the suite's [data] table"
)


def _offline() -> bool:
    truthy = {"1", "true", "yes", "on"}
    if any(os.environ.get(v, "").strip().lower() in truthy for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")):
        return True
    try:  # the libraries read the variables at import time; trust their view too
        import datasets.config

        return bool(getattr(datasets.config, "HF_HUB_OFFLINE", False))
    except Exception:  # pragma: no cover - datasets missing or broken
        return False


def expand_data_files(patterns: str | Sequence[str], key: str, plugin: str) -> list[str]:
    """The files a suite's ``data_files.<key>`` names (paths or glob patterns, ``~`` and ``$VARS``
    expanded), sorted; a one-line :class:`UserError` naming ``plugin`` when one matches nothing."""
    files: list[str] = []
    for pattern in [patterns] if isinstance(patterns, str) else list(patterns):
        pattern = os.path.expandvars(os.path.expanduser(pattern))
        found = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else ([pattern] if Path(pattern).is_file() else [])
        if not found:
            raise UserError(f"{plugin}: data_files.{key}: no such file {pattern!r}")
        files.extend(found)
    return files


def _decode_table(table: Any, where: str) -> tuple[np.ndarray, np.ndarray]:
    """A pyarrow table with ``image`` (PNG bytes struct or binary) and ``label`` -> (uint8 [N,28,28], int64 [N])."""
    from PIL import Image

    if "image" not in table.column_names or "label" not in table.column_names:
        raise UserError(f"mnist: {where}: expected columns 'image' and 'label', got {table.column_names}")
    labels = np.asarray(table.column("label").to_numpy(zero_copy_only=False), dtype=np.int64)
    col = table.column("image").combine_chunks()
    import pyarrow as pa

    if pa.types.is_struct(col.type):
        col = col.field("bytes")
    blobs = col.to_pylist()
    images = np.empty((len(blobs), 28, 28), dtype=np.uint8)
    for i, blob in enumerate(blobs):  # PNG decoding has no batched form
        if blob is None:
            raise UserError(f"mnist: {where}: row {i} has no image bytes")
        with Image.open(io.BytesIO(blob)) as im:
            arr = np.asarray(im.convert("L"))
        if arr.shape != (28, 28):
            raise UserError(f"mnist: {where}: row {i} is {arr.shape[1]}x{arr.shape[0]}, expected 28x28")
        images[i] = arr
    return images, labels


def parquet_splits(plugin: str, files: Any, columns: Sequence[str] | None = None) -> tuple[dict[str, Any], str]:
    """The train and test splits from local parquet files, as Arrow tables, and the files' fingerprint.

    ``files[split]`` is a path, glob or list of them (``data_files.<split>`` of
    the suite); each split's files are concatenated.  The fingerprint names
    every file with its size and modification time.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    out, fingerprint = {}, []
    for split in ("train", "test"):
        tables = []
        for p in expand_data_files(files[split], split, plugin):
            try:
                tables.append(pq.read_table(p, columns=list(columns) if columns else None))
            except Exception as exc:
                what = f" with columns {', '.join(columns)}" if columns else ""
                raise UserError(f"{plugin}: data_files.{split}: cannot read {p!r} as parquet{what}: {exc}") from exc
            st = os.stat(p)
            fingerprint.append(f"{os.path.abspath(p)}:{st.st_size}:{st.st_mtime_ns}")
        out[split] = pa.concat_tables(tables, promote_options="default")
    return out, "|".join(fingerprint)


def hub_splits(plugin: str, hub_id: str, config: str | None, cache_dir: str | None,
               how_to_get: str) -> tuple[dict[str, Any], str]:
    """The train and test splits of a Hugging Face hub data set, as Arrow tables, and their fingerprint.

    A data set that cannot be loaded is one line: why (offline and not in the
    cache, or the library's error) and ``how_to_get`` it.
    """
    import datasets

    try:
        dd = datasets.load_dataset(hub_id, config or None, cache_dir=cache_dir or None)
    except Exception as exc:
        if _offline():
            cache = cache_dir or getattr(datasets.config, "HF_DATASETS_CACHE", "the default cache")
            where = f"offline (HF_HUB_OFFLINE/HF_DATASETS_OFFLINE is set) and not in the Hugging Face cache {str(cache)!r}"
        else:
            first_line = str(exc).splitlines()[0] if str(exc) else ""
            where = f"{type(exc).__name__}: {first_line}"
        raise UserError(f"{plugin}: cannot load {hub_id!r} ({where}); {how_to_get}") from exc
    out, fingerprint = {}, []
    for split in ("train", "test"):
        if split not in dd:
            raise UserError(f"{plugin}: {hub_id!r} has no {split!r} split (has {list(dd)})")
        part = dd[split]
        fingerprint.append(getattr(part, "_fingerprint", split))
        out[split] = part.with_format("arrow")[:]
    return out, "|".join(fingerprint)


def _read_mnist(ds: simbench.Dataset) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], str]:
    """Decoded images and labels per split, from ``data_files`` when given, else from the hub."""
    if ds.data_files:
        tables, fingerprint = parquet_splits("mnist", ds.data_files, columns=("image", "label"))
        return {s: _decode_table(t, f"data_files.{s}") for s, t in tables.items()}, fingerprint
    tables, fingerprint = hub_splits("mnist", ds.hub_id, None, ds.cache_dir, HOW_TO_GET)
    return {s: _decode_table(t, f"{ds.hub_id}[{s}]") for s, t in tables.items()}, fingerprint


def load_mnist(ds: simbench.Dataset, ctx: simbench.RunContext) -> simbench.DataSplits:
    """The ``mnist`` data set: class subset, stratified train/val split, shuffled official test split."""
    raw, fingerprint = _read_mnist(ds)
    rng = numpy_rng(ctx.seed, "mnist")

    def subset(split: str) -> tuple[torch.Tensor, np.ndarray]:
        images, labels = raw[split]
        keep, new = select_classes(labels, ds.classes)
        x = torch.from_numpy(images[keep]).unsqueeze(1).to(torch.float32).div_(255.0)
        return x, new

    x_tr, y_tr = subset("train")
    x_te, y_te = subset("test")
    if len(y_tr) == 0 or len(y_te) == 0:
        raise UserError(f"mnist: no training or test images of classes {list(ds.classes)}")
    val, train = stratified_split(y_tr, [ds.val_fraction], rng)
    test = rng.permutation(len(y_te))
    if ds.max_train and ds.max_train < len(train):
        # keep the validation set in proportion to the capped training set
        val = val[: int(np.ceil(ds.max_train * len(val) / len(train)))]
        train = train[: ds.max_train]
    if ds.max_test:
        test = test[: ds.max_test]
    return simbench.DataSplits(
        train=_split(x_tr, y_tr, train),
        val=_split(x_tr, y_tr, val),
        test=_split(x_te, y_te, test),
        task="classification",
        num_classes=len(ds.classes),
        meta=_meta(ds, source="local parquet" if ds.data_files else ds.hub_id, fingerprint=fingerprint),
    )
