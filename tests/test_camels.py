"""CAMELS Multifield Dataset loading, on small files the test writes in CMD's format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import simbench
from simbench.errors import UserError
from simbench_plugins.data import camels, _camels_impl
from simbench_plugins.perturbations import cosmo_shift

N_SIMS, PER_SIM, RES = 12, 3, 32


def _write_suite(root: Path, suite: str, scale: float, rng: np.random.Generator) -> np.ndarray:
    params = np.column_stack(
        [
            rng.uniform(0.1, 0.5, N_SIMS),
            rng.uniform(0.6, 1.0, N_SIMS),
            10 ** rng.uniform(np.log10(0.25), np.log10(4), N_SIMS),
            10 ** rng.uniform(np.log10(0.25), np.log10(4), N_SIMS),
            10 ** rng.uniform(np.log10(0.5), np.log10(2), N_SIMS),
            10 ** rng.uniform(np.log10(0.5), np.log10(2), N_SIMS),
        ]
    )
    np.savetxt(root / f"params_LH_{suite}.txt", params)
    for field in ("Mtot", "T"):
        # positive maps whose level encodes the simulation index, so rows can be traced back
        sims = np.repeat(np.arange(N_SIMS), PER_SIM)
        base = (1.0 + sims)[:, None, None] * scale
        maps = base * np.exp(rng.normal(0, 0.3, (N_SIMS * PER_SIM, RES, RES)))
        np.save(root / f"Maps_{field}_{suite}_LH_z=0.00.npy", maps.astype(np.float32))
    return params


@pytest.fixture()
def cmd_dir(tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    tng = _write_suite(tmp_path, "IllustrisTNG", 1.0, rng)
    simba = _write_suite(tmp_path, "SIMBA", 3.0, rng)
    return tmp_path, tng, simba


def test_loads_cmd_files_by_simulation(cmd_dir):
    root, params, _ = cmd_dir
    ds = camels.CamelsCMD(root=str(root), fields=("Mtot", "T"), size=16, val_fraction=0.2, test_fraction=0.25)
    data = ds.load(simbench.RunContext(seed=0))
    meta = data.meta
    splits = meta["splits"]
    sims = [set(splits[s]) for s in ("train", "val", "test")]
    assert not (sims[0] & sims[1]) and not (sims[0] & sims[2]) and not (sims[1] & sims[2])
    assert sum(len(s) for s in sims) == N_SIMS
    assert len(data.test) == len(splits["test"]) * PER_SIM
    assert data.train.x.shape == (len(splits["train"]) * PER_SIM, 2, 16, 16)
    assert meta["maps_per_sim"] == PER_SIM and meta["targets"][:2] == ["omega_m", "sigma_8"]

    # x: block-averaged to 16 px, log10, standardised with the training statistics
    raw = np.load(root / "Maps_Mtot_IllustrisTNG_LH_z=0.00.npy")
    sim = splits["test"][0]
    row = raw[sim * PER_SIM + 1].astype(np.float64)
    expected = np.log10(row.reshape(16, 2, 16, 2).mean(axis=(1, 3)))
    mean, std = meta["norm"]["Mtot"]
    np.testing.assert_allclose(data.test.x[1, 0].numpy(), (expected - mean) / std, rtol=1e-5, atol=1e-5)
    assert abs(float(data.train.x[:, 0].mean())) < 1e-4 and abs(float(data.train.x[:, 0].std()) - 1) < 1e-3

    # y: each map carries its simulation's parameters; omega_m scaled linearly, A_SN1 in log10
    om = params[:, 0]
    np.testing.assert_allclose(
        data.test.y[PER_SIM, 0].item(), (om[splits["test"][1]] - om.min()) / (om.max() - om.min()), rtol=1e-5
    )
    lsn = np.log10(params[:, 2])
    np.testing.assert_allclose(
        data.test.y[0, 2].item(), (lsn[sim] - lsn.min()) / (lsn.max() - lsn.min()), rtol=1e-5, atol=1e-6
    )
    assert torch.equal(data.test.y[0], data.test.y[PER_SIM - 1])  # maps of one simulation share labels


def test_max_sims_and_maps_per_sim(cmd_dir):
    root, _, _ = cmd_dir
    data = camels.CamelsCMD(root=str(root), max_sims=8, maps_per_sim=2, size=32).load(simbench.RunContext(seed=3))
    used = set(sum((data.meta["splits"][s] for s in ("train", "val", "test")), []))
    assert used == set(range(8))
    assert len(data.train) + len(data.val) + len(data.test) == 8 * 2


def test_shift_reads_the_other_suite_for_the_same_simulations(cmd_dir):
    root, _, simba_params = cmd_dir
    data = camels.CamelsCMD(root=str(root), fields=("Mtot",), size=16).load(simbench.RunContext(seed=0))
    clean = simbench.ProbeSet("clean", data.test.x, data.test.y)
    (shifted,) = cosmo_shift.CosmoShift(to=("SIMBA",)).probe_sets(clean, simbench.PerturbContext(data=data))
    assert shifted.name == "cosmo_shift/SIMBA" and shifted.x.shape == clean.x.shape
    # SIMBA maps were written 3x brighter: log10(3) higher, in units of the TNG training std
    std = data.meta["norm"]["Mtot"][1]
    offset = (shifted.x - clean.x).mean((1, 2, 3))
    assert torch.allclose(offset, torch.full_like(offset, np.log10(3.0) / std), atol=0.15 / std)
    # the labels are SIMBA's own, scaled like the training targets
    sim = data.meta["splits"]["test"][0]
    expected = _camels_impl.scale_targets(simba_params[[sim]], data.meta["target_transform"])[0]
    np.testing.assert_allclose(shifted.y[0].numpy(), expected, rtol=1e-5, atol=1e-6)


def test_missing_files_are_user_errors(tmp_path, monkeypatch):
    with pytest.raises(UserError, match="parameter file not found"):
        camels.CamelsCMD(root=str(tmp_path)).load(simbench.RunContext())
    monkeypatch.delenv(camels.ROOT_ENV, raising=False)
    with pytest.raises(UserError, match="root"):
        camels.CamelsCMD(root="").load(simbench.RunContext())


def test_root_from_environment(cmd_dir, monkeypatch):
    root, _, _ = cmd_dir
    monkeypatch.setenv(camels.ROOT_ENV, str(root))
    data = camels.CamelsCMD(size=16).load(simbench.RunContext(seed=0))
    assert data.meta["root"] == str(root)
