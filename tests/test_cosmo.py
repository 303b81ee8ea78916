"""The synthetic cosmology fields, the ``cosmo_shift`` perturbation and the ``cosmo_cnn`` zoo."""

from __future__ import annotations

import pytest
import torch

import simbench
from simbench.registry import build_registry
from simbench_plugins.data import cosmo as cosmo_data
from simbench_plugins.data import _cosmo_impl as C
from simbench_plugins.perturbations import cosmo_shift
from simbench_plugins.zoos import cosmo as cosmo_zoo


def _grid(n: int, **fixed: float) -> torch.Tensor:
    """``n`` normalised parameter rows at the prior centre, with some columns overridden."""
    y = torch.full((n, len(C.PARAM_NAMES)), 0.5)
    for name, value in fixed.items():
        y[:, C.PARAM_NAMES.index(name)] = value
    return y


def _same_phases(n: int, size: int = 64) -> torch.Tensor:
    return C.sample_phases(1, size, 3, "train").expand(n, size, size).contiguous()


def test_power_rises_with_sigma8_at_every_scale():
    n = 5
    y = _grid(n)
    y[:, 1] = torch.linspace(0.0, 1.0, n)  # sigma_8 from 0.6 to 1.0
    maps = C.log_fields(y, _same_phases(n), "A")
    for field in C.FIELDS:
        _, pk = C.radial_power(maps[field])
        # same phases: every k bin's power must grow with sigma_8
        assert (pk[1:] > pk[:-1]).all(), field
    # the linear spectrum is exactly proportional to sigma_8^2
    k = C.wavenumbers(64)
    s8 = C.to_physical(y)["sigma_8"]
    p = C.linear_power(k, C.to_physical(y)["omega_m"], s8)
    ratio = p[-1].sum() / p[0].sum()
    assert ratio == pytest.approx(float(s8[-1] ** 2 / s8[0] ** 2), rel=1e-9)


def test_omega_m_tilts_the_spectrum_towards_small_scales():
    n = 3
    y = _grid(n)
    y[:, 0] = torch.tensor([0.0, 0.5, 1.0])
    _, pk = C.radial_power(C.log_fields(y, _same_phases(n), "A")["matter"])
    tilt = pk[:, 16:].sum(1) / pk[:, :4].sum(1)
    assert (tilt[1:] > tilt[:-1]).all()


def test_suites_differ_at_small_scales_not_large():
    n = 64
    y = C.sample_targets(n, 1, "test")
    phases = C.sample_phases(n, 64, 1, "test")
    a = C.log_fields(y, phases, "A")
    b = C.log_fields(y, phases, "B")
    k, pa = C.radial_power(a["matter"])
    _, pb = C.radial_power(b["matter"])
    ratio = (pb / pa).mean(0)
    assert abs(float(ratio[k <= 2].mean()) - 1) < 0.05  # large scales: the same universe
    assert float(ratio[k >= 20].mean()) < 0.92  # small scales: measurably different physics
    # the temperature shift is far larger than the matter shift (pixelwise, in units of the field's spread)
    shift = {f: float((b[f] - a[f]).abs().mean() / a[f].std()) for f in C.FIELDS}
    assert shift["temperature"] > 3 * shift["matter"]


def test_dataset_load_shapes_normalisation_and_determinism():
    ds = cosmo_data.CosmoFields(size=32, n_train=64, n_val=16, n_test=16)
    data = ds.load(simbench.RunContext(seed=0))
    assert data.task == "regression"
    assert data.train.x.shape == (64, 2, 32, 32) and data.train.x.dtype == torch.float32
    assert data.test.y.shape == (16, 4) and float(data.test.y.min()) >= 0 and float(data.test.y.max()) <= 1
    means = data.train.x.mean((0, 2, 3))
    stds = data.train.x.std((0, 2, 3))
    assert torch.allclose(means, torch.zeros(2), atol=1e-4) and torch.allclose(stds, torch.ones(2), atol=1e-3)
    again = ds.load(simbench.RunContext(seed=0))
    assert torch.equal(again.test.x, data.test.x) and torch.equal(again.test.y, data.test.y)
    other = ds.load(simbench.RunContext(seed=1))
    assert not torch.equal(other.test.x, data.test.x)
    # splits are different draws
    assert not torch.equal(data.val.y, data.test.y)


def test_params_are_validated():
    with pytest.raises(ValueError):
        cosmo_data.CosmoFields(size=48)
    obj, key, _ = simbench.params.configure(cosmo_data.CosmoFields, {"fields": ["matter", "pressure"]})
    assert obj is None and key.startswith("fields")


def test_cosmo_shift_keeps_params_and_phases():
    data = cosmo_data.CosmoFields(size=32, n_train=32, n_val=8, n_test=24).load(simbench.RunContext(seed=0))
    order = torch.tensor([5, 0, 17, 3, 9, 11])  # probes need not be the first rows, nor in order
    clean = simbench.ProbeSet("clean", data.test.x[order], data.test.y[order])
    pert = cosmo_shift.CosmoShift(to=("A", "B"))
    assert pert.variants() == ["cosmo_shift/A", "cosmo_shift/B"]
    same, shifted = pert.probe_sets(clean, simbench.PerturbContext(data=data))
    assert same.name == "cosmo_shift/A" and shifted.name == "cosmo_shift/B"
    # regenerating with the data's own suite reproduces the clean maps: the phases are the same
    assert torch.allclose(same.x, clean.x, atol=1e-5)
    assert torch.equal(shifted.y, clean.y)
    diff = (shifted.x - clean.x).abs().mean((0, 2, 3))
    assert float(diff[1]) > float(diff[0]) > 0.01  # temperature moves more than matter
    foreign = simbench.ProbeSet("clean", torch.randn(2, 2, 32, 32), torch.rand(2, 4))
    with pytest.raises(ValueError, match="test split"):
        pert.probe_sets(foreign, simbench.PerturbContext(data=data))


def test_zoo_builds_readable_models_and_round_trips():
    data = cosmo_data.CosmoFields(size=16, n_train=48, n_val=16, n_test=16).load(simbench.RunContext(seed=0))
    zoo = cosmo_zoo.CosmoCNN(fields=("temperature", "all"), seeds=(0,), epochs=1, batch_size=16)
    specs = zoo.specs()
    assert [s.factors["field"] for s in specs] == ["temperature", "all"]
    models = zoo.build(data, simbench.RunContext(seed=0))
    assert set(models) == {s.id for s in specs}
    x = data.test.x[:5]
    for spec in specs:
        model = models[spec.id]
        assert isinstance(model, simbench.types.ReadableModel)
        assert not model.training
        # 16 px: two levels of three blocks, then fc1 and output
        assert model.readable_layers == ("block1", "block2", "block3", "block4", "block5", "block6", "fc1", "output")
        with torch.no_grad():
            acts = model.read(x, model.readable_layers)
            out = model(x)
        assert all(v.shape[0] == 5 and v.ndim == 2 for v in acts.values())
        assert torch.allclose(acts["output"], out)
        assert acts["block1"].shape[1] == 4 * 16 * 16
        w1, w2 = model.dense_weights()
        assert w1.shape == (16 * 4 * 4, zoo.dense) and w2.shape == (zoo.dense, 4)
        fresh = zoo.instantiate(spec, data)
        fresh.load_state_dict(model.state_dict())
        fresh.eval()
        with torch.no_grad():
            assert torch.allclose(fresh(x), out)
    # a field-specific model ignores the other channel
    t_model = models[specs[0].id]
    x2 = x.clone()
    x2[:, 0] = torch.randn_like(x2[:, 0])
    with torch.no_grad():
        assert torch.allclose(t_model(x2), t_model(x))
    with pytest.raises(ValueError, match="not a channel"):
        cosmo_zoo.CosmoCNN(fields=("pressure",)).build(data, simbench.RunContext())


def test_registration_through_hooks():
    from simbench_plugins.studies import cosmology  # the study's one entry point

    registry = build_registry(extra_plugins=[cosmology], load_entry_points=False)
    assert registry.get("dataset", "cosmo_fields") is cosmo_data.CosmoFields
    assert registry.get("zoo", "cosmo_cnn") is cosmo_zoo.CosmoCNN
    assert registry.get("perturbation", "cosmo_shift") is cosmo_shift.CosmoShift
