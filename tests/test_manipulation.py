"""CKA-map manipulation (seed 003 §3.4) on a small network trained here on real digits."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn
import torch.nn.functional as F

import simbench
from simbench.errors import UserError
from simbench.params import configure
from simbench_plugins.perturbations._cka import cka_map, linear_cka, mean_off_diagonal
from simbench_plugins.perturbations.manipulation import CkaMapManipulation
from tiny_mlp import TinyMLP


def accuracy(model: nn.Module, split: simbench.Split) -> float:
    with torch.no_grad():
        return float((model(split.x).argmax(1) == split.y).float().mean())


@pytest.fixture(scope="module")
def data() -> simbench.DataSplits:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32) / 16.0
    x = F.interpolate(x.unsqueeze(1), size=(20, 20), mode="bilinear", align_corners=False).clamp(0, 1)
    x = F.pad(x, (4, 4, 4, 4))  # 28 x 28 like MNIST
    y = torch.tensor(d.target)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    x, y = x[perm], y[perm]
    return simbench.DataSplits(
        train=simbench.Split(x[:1200], y[:1200]),
        val=simbench.Split(x[1200:1400], y[1200:1400]),
        test=simbench.Split(x[1400:], y[1400:]),
        num_classes=10,
    )


def train(data: simbench.DataSplits, sizes: tuple[int, ...], seed: int, epochs: int = 60) -> TinyMLP:
    torch.manual_seed(seed)
    model = TinyMLP(sizes)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(epochs):
        for i in range(0, len(data.train), 200):
            opt.zero_grad()
            F.cross_entropy(model(data.train.x[i : i + 200]), data.train.y[i : i + 200]).backward()
            opt.step()
    return model.eval()


SIZES = (784, 64, 64, 64, 64, 64, 10)


@pytest.fixture(scope="module")
def model(data: simbench.DataSplits) -> TinyMLP:
    return train(data, SIZES, seed=0)


def test_cka_map_matches_pairwise_linear_cka(model: TinyMLP, data: simbench.DataSplits) -> None:
    x = data.test.x[:300]
    with torch.no_grad():
        reps = model.read(x, model.readable_layers)
    m = cka_map([reps[k] for k in model.readable_layers])
    for i, a in enumerate(model.readable_layers):
        for j, b in enumerate(model.readable_layers):
            assert float(m[i, j]) == pytest.approx(float(linear_cka(reps[a], reps[b])), abs=1e-5)
    # reference formula, Gram form with an explicit centring matrix
    a, b = reps["fc1"].double(), reps["fc6"].double()
    h = torch.eye(300, dtype=torch.float64) - 1.0 / 300
    k, l_ = h @ a @ a.T @ h, h @ b @ b.T @ h
    expected = (k * l_).sum() / (k.norm() * l_.norm())
    assert float(m[0, -1]) == pytest.approx(float(expected), abs=1e-5)


def test_all_max_raises_cka_while_accuracy_holds(model: TinyMLP, data: simbench.DataSplits) -> None:
    new, report = CkaMapManipulation(map_target="all_max", epochs=10).manipulate(model, data)
    print(
        f"all_max: mean off-diagonal CKA {report['cka_offdiag_original']:.3f} -> {report['cka_offdiag']:.3f}; "
        f"test accuracy {report['accuracy_original']:.3f} -> {report['accuracy']:.3f}; "
        f"distance to target {report['cka_map_distance_original']:.3f} -> {report['cka_map_distance']:.3f}"
    )
    assert report["cka_offdiag"] > report["cka_offdiag_original"] + 0.05
    assert report["cka_map_distance"] < 0.3 * report["cka_map_distance_original"]
    first_last = report["map"][0, -1]
    assert first_last > report["map_original"][0, -1] + 0.1
    assert report["accuracy"] > report["accuracy_original"] - 0.03
    # the report's numbers are the model's: recompute them independently
    assert accuracy(new, data.test) == pytest.approx(report["accuracy"])
    with torch.no_grad():
        reps = new.read(data.test.x[:1000], new.readable_layers)
    assert float(linear_cka(reps["fc1"], reps["fc6"])) == pytest.approx(float(first_last), abs=1e-4)
    # the original is untouched
    assert accuracy(model, data.test) == pytest.approx(report["accuracy_original"])
    assert new is not model and not torch.equal(new.layers[0].weight, model.layers[0].weight)


def test_all_min_and_first_last_targets_move_the_map(model: TinyMLP, data: simbench.DataSplits) -> None:
    _, low = CkaMapManipulation(map_target="all_min", epochs=10).manipulate(model, data)
    print(
        f"all_min: off-diagonal CKA {low['cka_offdiag_original']:.3f} -> {low['cka_offdiag']:.3f}, "
        f"accuracy {low['accuracy_original']:.3f} -> {low['accuracy']:.3f}"
    )
    assert low["cka_offdiag"] < low["cka_offdiag_original"] - 0.1
    _, fl = CkaMapManipulation(map_target="first_last_max", epochs=5).manipulate(model, data)
    assert fl["target"][0, -1] == 1.0 and torch.equal(fl["target"][1:-1, 1:-1], fl["map_original"][1:-1, 1:-1])
    assert fl["map"][0, -1] > fl["map_original"][0, -1] + 0.05
    # explicit: a target equal to the current map changes (almost) nothing but the distillation noise
    explicit = tuple(tuple(min(1.0, max(0.0, float(v))) for v in row) for row in fl["map_original"].tolist())
    _, same = CkaMapManipulation(map_target="explicit", matrix=explicit, epochs=2).manipulate(model, data)
    assert same["cka_map_distance"] < 0.02 and abs(same["accuracy_change"]) < 0.02


def test_perturb_models_adds_labelled_zoo_entries(data: simbench.DataSplits) -> None:
    models = {"a": train(data, (784, 16, 16, 10), 1, epochs=5), "b": train(data, (784, 16, 16, 10), 2, epochs=5)}
    specs = [
        simbench.ModelSpec("a", {"arch": "784-16-16-10", "seed": 1}),
        simbench.ModelSpec("b", {"arch": "784-16-16-10", "seed": 2}),
    ]
    pert = CkaMapManipulation(map_target="all_max", epochs=2, models=("b",))
    ctx = simbench.PerturbContext(seed=0, models=models, specs=specs, data=data)
    out = pert.perturb_models(models, specs, data, ctx)
    assert len(out) == 1
    spec, module = out[0]
    assert spec.id == "b-cka-all-max" == pert.variant_id("b")
    assert spec.factors["arch"] == "784-16-16-10" and spec.factors["seed"] == 2
    assert spec.factors["manipulated"] == "all_max" and spec.factors["original"] == "b"
    assert all(isinstance(v, (str, int, float, bool)) for v in spec.factors.values())
    assert len(json.loads(spec.factors["cka_map"])) == 3
    assert spec.factors["accuracy"] == pytest.approx(accuracy(module, data.test), abs=1e-6)
    assert not module.training
    # a plain module: its state_dict alone rebuilds it
    fresh = TinyMLP((784, 16, 16, 10))
    fresh.load_state_dict(module.state_dict())
    torch.testing.assert_close(fresh(data.test.x[:8]), module(data.test.x[:8]))
    # deterministic given the seed
    again = pert.perturb_models(models, specs, data, ctx)[0][1]
    assert all(torch.equal(p, q) for p, q in zip(module.state_dict().values(), again.state_dict().values()))
    with pytest.raises(UserError, match="not in the zoo"):
        CkaMapManipulation(models=("zzz",)).perturb_models(models, specs, data, ctx)


def test_read_without_gradients_is_refused(data: simbench.DataSplits) -> None:
    class Detached(TinyMLP):
        def read(self, x, layers):  # type: ignore[no-untyped-def]
            return {k: v.detach() for k, v in super().read(x, layers).items()}

    m = Detached((784, 8, 8, 10)).eval()
    with pytest.raises(UserError, match="keep gradients"):
        CkaMapManipulation(epochs=1).manipulate(m, data)


def test_params_are_validated() -> None:
    obj, key, _ = configure(CkaMapManipulation, {"map_target": "explicit"})
    assert obj is None and key == "matrix"
    obj, key, msg = configure(CkaMapManipulation, {"map_target": "explicit", "matrix": [[1.0, 0.5], [0.5]]})
    assert obj is None and key == "matrix" and "square" in msg
    obj, key, _ = configure(CkaMapManipulation, {"map_target": "explicit", "matrix": [[1.0, 2.0], [2.0, 1.0]]})
    assert obj is None and key == "matrix"
    obj, key, _ = configure(CkaMapManipulation, {"map_target": "sideways"})
    assert obj is None and key == "map_target"
    obj, _, _ = configure(CkaMapManipulation, {"map_target": "explicit", "matrix": [[1.0, 0.2], [0.2, 1.0]]})
    assert obj.variants() == ["cka_map_manipulation/explicit"]


def test_mean_off_diagonal() -> None:
    m = torch.tensor([[1.0, 0.2, 0.4], [0.2, 1.0, 0.6], [0.4, 0.6, 1.0]])
    assert float(mean_off_diagonal(m)) == pytest.approx(0.4)
