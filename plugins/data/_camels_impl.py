"""Reading the CAMELS Multifield Dataset (CMD) 2D maps from a local directory.

CMD (Villaescusa-Navarro et al. 2022; the data of seed ``000_3674ff43c5aa32ce``)
ships one ``.npy`` file per field, suite and set, named
``Maps_<field>_<suite>_<set>_z=<redshift>.npy`` with shape
``(n_sims * maps_per_sim, 256, 256)`` (15 maps per simulation, simulation
major), and one parameter text file per suite and set,
``params_<set>_<suite>.txt``, with one row per simulation and the columns
``Omega_m, sigma_8, A_SN1, A_AGN1, A_SN2, A_AGN2``.

Maps are memory-mapped, so only the selected simulations are read; they are
block-averaged to ``size`` pixels (in linear units), then ``log10``-ed and
standardised with the training split's statistics.  Splits are made by
*simulation* so that no simulation's maps appear in two splits.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from simbench.errors import UserError
from simbench.seeding import numpy_rng

TARGET_NAMES: tuple[str, ...] = ("omega_m", "sigma_8", "a_sn1", "a_agn1", "a_sn2", "a_agn2")
#: CMD's astrophysical parameters are sampled log-uniformly
LOG_TARGETS: tuple[bool, ...] = (False, False, True, True, True, True)
SPLITS: tuple[str, ...] = ("train", "val", "test")


def maps_path(root: str | Path, field: str, suite: str, sim_set: str, redshift: str) -> Path:
    return Path(root) / f"Maps_{field}_{suite}_{sim_set}_z={redshift}.npy"


def params_path(root: str | Path, suite: str, sim_set: str, explicit: str = "") -> Path:
    """The parameter file: ``explicit`` if given, else CMD's name (or its common variant)."""
    root = Path(root)
    if explicit:
        p = Path(explicit)
        return p if p.is_absolute() else root / p
    candidates = [root / f"params_{sim_set}_{suite}.txt", root / f"params_{suite}_{sim_set}.txt"]
    for c in candidates:
        if c.exists():
            return c
    return candidates[0]


def read_params(path: Path) -> np.ndarray:
    if not path.exists():
        raise UserError(f"camels_cmd: parameter file not found: {path}")
    params = np.loadtxt(path, dtype=np.float64, ndmin=2)
    return params


def open_maps(path: Path) -> np.ndarray:
    if not path.exists():
        raise UserError(f"camels_cmd: map file not found: {path}")
    maps = np.load(path, mmap_mode="r")
    if maps.ndim != 3 or maps.shape[1] != maps.shape[2]:
        raise UserError(f"camels_cmd: {path} has shape {maps.shape}; expected (n_maps, H, H)")
    return maps


def downsample(block: np.ndarray, size: int) -> np.ndarray:
    """Average ``[n, H, H]`` maps over ``H/size`` square blocks (``H`` must be a multiple)."""
    h = block.shape[-1]
    if h == size:
        return np.asarray(block, dtype=np.float64)
    if h % size:
        raise UserError(f"camels_cmd: map size {h} is not a multiple of size={size}")
    f = h // size
    return np.asarray(block, dtype=np.float64).reshape(block.shape[0], size, f, size, f).mean(axis=(2, 4))


def split_simulations(
    n_sims: int, max_sims: int, val_fraction: float, test_fraction: float, seed: int
) -> dict[str, list[int]]:
    """Disjoint simulation indices per split (deterministic given ``seed``)."""
    sims = np.arange(n_sims if max_sims <= 0 else min(max_sims, n_sims))
    perm = numpy_rng(seed, "camels", "simulations").permutation(sims)
    n_test = max(1, int(round(test_fraction * len(perm))))
    n_val = max(1, int(round(val_fraction * len(perm))))
    if n_test + n_val >= len(perm):
        raise UserError(f"camels_cmd: {len(perm)} simulations are too few for train/val/test splits")
    return {
        "test": sorted(int(s) for s in perm[:n_test]),
        "val": sorted(int(s) for s in perm[n_test : n_test + n_val]),
        "train": sorted(int(s) for s in perm[n_test + n_val :]),
    }


def target_transform(params: np.ndarray) -> dict[str, list[Any]]:
    """Per-column min/max (of log10 for the log-sampled columns) used to scale targets to [0, 1]."""
    cols = params.shape[1]
    log = [LOG_TARGETS[j] if j < len(LOG_TARGETS) else False for j in range(cols)]
    vals = np.where(np.array(log)[None, :], np.log10(np.clip(params, 1e-300, None)), params)
    return {"log": log, "min": vals.min(0).tolist(), "max": vals.max(0).tolist()}


def scale_targets(params: np.ndarray, transform: Mapping[str, Sequence[Any]]) -> np.ndarray:
    log = np.array(transform["log"], dtype=bool)
    lo = np.array(transform["min"], dtype=np.float64)
    hi = np.array(transform["max"], dtype=np.float64)
    vals = np.where(log[None, :], np.log10(np.clip(params, 1e-300, None)), params)
    return (vals - lo) / np.where(hi > lo, hi - lo, 1.0)


def read_split(meta: Mapping[str, Any], split: str, suite: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x [n, C, size, size] float32, y [n, P] float32)`` of one split, from ``suite``'s files.

    ``suite`` defaults to the dataset's own; another suite's files give the
    same simulations and map slices under different physics (the shift).
    If ``meta`` has no ``"norm"`` yet, ``x`` is left in raw ``log10`` units.
    """
    suite = suite or meta["suite"]
    root = meta["root"]
    sims = list(meta["splits"][split])
    per_sim = int(meta["maps_per_sim"])
    used = int(meta["used_maps_per_sim"])
    rows = np.array([s * per_sim + j for s in sims for j in range(used)], dtype=np.int64)
    params = read_params(params_path(root, suite, meta["set"], meta.get("params_file", "")))
    if params.shape[0] != int(meta["n_sims"]):
        raise UserError(
            f"camels_cmd: suite {suite!r} has {params.shape[0]} simulations, expected {meta['n_sims']} "
            "(the shifted suite must hold the same simulations)"
        )
    y = scale_targets(params[[s for s in sims for _ in range(used)]], meta["target_transform"])
    chans = []
    for field in meta["fields"]:
        maps = open_maps(maps_path(root, field, suite, meta["set"], meta["redshift"]))
        if maps.shape[0] != int(meta["n_sims"]) * per_sim:
            raise UserError(f"camels_cmd: {field} maps of suite {suite!r} do not hold {per_sim} maps per simulation")
        out = np.empty((len(rows), meta["size"], meta["size"]), dtype=np.float64)
        chunk = 256  # bounded memory for 256x256 float32 maps read from a memory map
        for i in range(0, len(rows), chunk):
            out[i : i + chunk] = downsample(maps[rows[i : i + chunk]], int(meta["size"]))
        if meta["log"]:
            out = np.log10(np.clip(out, float(meta["log_floor"]), None))
        chans.append(out)
    x = np.stack(chans, 1)
    norm = meta.get("norm")
    if norm is not None:
        for c, field in enumerate(meta["fields"]):
            mean, std = norm[field]
            x[:, c] = (x[:, c] - mean) / std
    return torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y.astype(np.float32))


def load(
    root: str,
    suite: str,
    fields: Sequence[str],
    sim_set: str,
    redshift: str,
    size: int,
    max_sims: int,
    maps_per_sim: int,
    val_fraction: float,
    test_fraction: float,
    log: bool,
    params_file: str,
    seed: int,
) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], dict[str, Any]]:
    if not root:
        raise UserError("camels_cmd: set `root` (or SIMBENCH_CAMELS_ROOT) to the directory holding the CMD 2D maps")
    params = read_params(params_path(root, suite, sim_set, params_file))
    n_sims = params.shape[0]
    first = open_maps(maps_path(root, fields[0], suite, sim_set, redshift))
    if first.shape[0] % n_sims:
        raise UserError(f"camels_cmd: {first.shape[0]} maps do not divide evenly over {n_sims} simulations")
    per_sim = first.shape[0] // n_sims
    used = per_sim if maps_per_sim <= 0 else min(maps_per_sim, per_sim)
    meta: dict[str, Any] = {
        "generator": "camels_cmd",
        "root": str(root),
        "suite": suite,
        "simulation": suite,
        "set": sim_set,
        "redshift": redshift,
        "fields": list(fields),
        "channels": list(fields),
        "size": int(size),
        "log": bool(log),
        "log_floor": 1e-30,
        "params_file": params_file,
        "n_sims": int(n_sims),
        "maps_per_sim": int(per_sim),
        "used_maps_per_sim": int(used),
        "targets": list(TARGET_NAMES[: params.shape[1]])
        + [f"param_{j}" for j in range(len(TARGET_NAMES), params.shape[1])],
        "target_transform": target_transform(params),
        "splits": split_simulations(n_sims, max_sims, val_fraction, test_fraction, seed),
        "box_mpc_h": 25.0,
    }
    raw_train, _ = read_split(meta, "train")
    meta["norm"] = {}
    for c, field in enumerate(fields):
        v = raw_train[:, c].double()
        std = float(v.std())
        meta["norm"][field] = [float(v.mean()), std if std > 0 and math.isfinite(std) else 1.0]
    splits = {split: read_split(meta, split) for split in SPLITS}
    return splits, meta
