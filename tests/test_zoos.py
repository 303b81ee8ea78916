"""Zoo plugins: specs and factor labels, tiny builds, readable models, reloading, caching."""

from __future__ import annotations

import pytest
import torch

import simbench
from simbench.cache import TensorCache
from simbench.params import configure
from simbench.registry import build_registry
from simbench_plugins.data.datasets import Digits28
from simbench_plugins.zoos.calibration import CalibrationZoo
from simbench_plugins.zoos.common import parse_arch
from simbench_plugins.zoos.finetuned_cnn import FinetunedCnnZoo
from simbench_plugins.zoos.mlp import MlpZoo


@pytest.fixture(scope="module")
def digits012() -> simbench.DataSplits:
    return Digits28(classes=(0, 1, 2)).load(simbench.RunContext(seed=0))


def _linears(model: torch.nn.Module) -> list[torch.nn.Linear]:
    return [m for m in model.modules() if isinstance(m, torch.nn.Linear)]


def _same_state(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# --------------------------------------------------------------------------
# cheap parts: registration, params, specs
# --------------------------------------------------------------------------


def test_zoos_and_datasets_are_registered() -> None:
    reg = build_registry()
    assert {"mlp", "finetuned_cnn", "calibration"} <= set(reg.names("zoo"))
    assert {"digits28", "mnist"} <= set(reg.names("dataset"))


def test_parse_arch() -> None:
    assert parse_arch("4x32") == ((32, 32, 32, 32), None, None)
    assert parse_arch("1x8") == ((8,), None, None)
    assert parse_arch("784-32-32-3") == ((32, 32), 784, 3)
    for bad in ("784-3", "4x", "x32", "deep", "784--3", "0x8"):
        with pytest.raises(ValueError):
            parse_arch(bad)


def test_mlp_specs_cover_the_grid_with_readable_ids() -> None:
    zoo = MlpZoo(archs=("784-32-32-3", "1x8"), seeds=(0, 4), epochs=(10, 5), strategies=("standard", "pgd"))
    specs = zoo.specs()
    assert len(specs) == 2 * 2 * 2 * 2 == len({s.id for s in specs})
    assert specs[0].id == "784-32-32-3/s0/e5/standard"
    assert specs[0].factors == {"arch": "784-32-32-3", "seed": 0, "epoch": 5, "strategy": "standard"}
    for spec in specs:
        f = spec.factors
        assert spec.id == f"{f['arch']}/s{f['seed']}/e{f['epoch']}/{f['strategy']}"
    grid = {(s.factors["arch"], s.factors["seed"], s.factors["epoch"], s.factors["strategy"]) for s in specs}
    assert grid == {(a, s, e, t) for a in zoo.archs for s in (0, 4) for e in (5, 10) for t in ("standard", "pgd")}


@pytest.mark.parametrize(
    ("params", "key"),
    [
        ({"archs": ["784-3"]}, "archs"),
        ({"archs": ["big"]}, "archs"),
        ({"archs": []}, "archs"),
        ({"seeds": [1, 1]}, "seeds"),
        ({"epochs": [-1]}, "epochs"),
        ({"strategies": ["trades"]}, "strategies.0"),
        ({"eps": 0.0}, "eps"),
        ({"batch_size": 0}, "batch_size"),
        ({"optimiser": "adam"}, "optimiser"),
    ],
)
def test_mlp_rejects_bad_params(params: dict, key: str) -> None:
    obj, bad_key, message = configure(MlpZoo, params)
    assert obj is None and bad_key == key and message


def test_calibration_specs_are_labelled_by_ensemble() -> None:
    zoo = CalibrationZoo(n_random=4, n_converged=3, converged_after=7, seed=2)
    specs = zoo.specs()
    random = [s for s in specs if s.factors["ensemble"] == "random"]
    converged = [s for s in specs if s.factors["ensemble"] == "converged"]
    assert len(random) == 4 and len(converged) == 3
    assert [s.factors["epoch"] for s in converged] == [8, 9, 10]
    assert {s.factors["seed"] for s in converged} == {2} and 2 not in {s.factors["seed"] for s in random}
    assert len({s.factors["seed"] for s in random}) == 4
    assert all(s.factors["epoch"] == 0 for s in random)


# --------------------------------------------------------------------------
# mlp builds
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mlp_zoo_models(digits012: simbench.DataSplits) -> tuple[MlpZoo, dict]:
    zoo = MlpZoo(
        archs=("784-16-16-3", "1x8"), seeds=(0, 1), epochs=(0, 2), strategies=("standard", "fgsm"),
        eps=0.1, batch_size=64,
    )
    calls: list[tuple[str, int | None]] = []

    def progress(description: str, total: int | None = None, unit: str = ""):  # type: ignore[no-untyped-def]
        calls.append((description, total))
        return lambda advance=1: None

    models = zoo.build(digits012, simbench.RunContext(seed=0, progress=progress))
    assert calls and calls[0][1] == 2 * 2 * 2  # (arch, strategy) groups x epochs
    # the progress line names what trains: architectures, strategies, seeds, checkpoints
    assert calls[0][0] == "Training mlp 784-16-16-3/1x8 standard/fgsm (2 seeds, 2 checkpoints)"
    # a group built on its own (as the runner does) names its own architecture and strategy
    calls.clear()
    group = [s.id for s in zoo.specs() if s.factors["arch"] == "1x8" and s.factors["strategy"] == "fgsm"]
    zoo.build_group(group, digits012, simbench.RunContext(seed=0, progress=progress))
    assert [d for d, _ in calls] == ["Training mlp 1x8 fgsm (2 seeds, 2 checkpoints)"]
    return zoo, models


def test_mlp_build_matches_specs_and_factor_labels(mlp_zoo_models, digits012) -> None:  # type: ignore[no-untyped-def]
    zoo, models = mlp_zoo_models
    assert list(models) == [s.id for s in zoo.specs()]
    for spec in zoo.specs():
        model = models[spec.id]
        assert isinstance(model, simbench.types.ReadableModel)
        assert not model.training
        widths = [lin.in_features for lin in _linears(model)] + [_linears(model)[-1].out_features]
        expected = [784, 16, 16, 3] if spec.factors["arch"] == "784-16-16-3" else [784, 8, 3]
        assert widths == expected
        assert 0.0 <= float(model.test_accuracy) <= 1.0
        with torch.no_grad():
            acc = float((model(digits012.test.x).argmax(1) == digits012.test.y).float().mean())
        assert float(model.test_accuracy) == pytest.approx(acc)


def test_mlp_factors_change_only_what_they_name(mlp_zoo_models) -> None:  # type: ignore[no-untyped-def]
    _, models = mlp_zoo_models
    # epoch 0 is the initialisation: shared across strategies, distinct across seeds
    assert _same_state(models["784-16-16-3/s0/e0/standard"], models["784-16-16-3/s0/e0/fgsm"])
    assert not _same_state(models["784-16-16-3/s0/e0/standard"], models["784-16-16-3/s1/e0/standard"])
    # training moves the weights, differently per strategy
    assert not _same_state(models["784-16-16-3/s0/e0/standard"], models["784-16-16-3/s0/e2/standard"])
    assert not _same_state(models["784-16-16-3/s0/e2/standard"], models["784-16-16-3/s0/e2/fgsm"])


def test_mlp_build_is_deterministic_and_reloadable(mlp_zoo_models, digits012) -> None:  # type: ignore[no-untyped-def]
    zoo, models = mlp_zoo_models
    small = MlpZoo(archs=("784-16-16-3",), seeds=(1,), epochs=(2,), strategies=("fgsm",), eps=0.1, batch_size=64)
    again = small.build(digits012, simbench.RunContext(seed=0))
    # trained alone (an ensemble of one) or with seed 0 beside it: the same model, to float tolerance
    one, many = again["784-16-16-3/s1/e2/fgsm"], models["784-16-16-3/s1/e2/fgsm"]
    for (ka, a), (kb, b) in zip(one.state_dict().items(), many.state_dict().items()):
        assert ka == kb and torch.allclose(a, b, atol=1e-5, equal_nan=True)
    # a different run seed gives different models
    other = small.build(digits012, simbench.RunContext(seed=1))["784-16-16-3/s1/e2/fgsm"]
    assert not _same_state(one, other)
    # instantiate + load_state_dict reproduces the module exactly (the runner's checkpoint cache)
    for spec in zoo.specs():
        fresh = zoo.instantiate(spec, digits012)
        fresh.load_state_dict(models[spec.id].state_dict())
        fresh.eval()
        with torch.no_grad():
            assert torch.equal(fresh(digits012.test.x), models[spec.id](digits012.test.x))
        assert float(fresh.test_accuracy) == float(models[spec.id].test_accuracy)


def test_mlp_readable_layers(mlp_zoo_models, digits012) -> None:  # type: ignore[no-untyped-def]
    _, models = mlp_zoo_models
    model = models["784-16-16-3/s0/e2/standard"]
    assert model.readable_layers == ("hidden1", "hidden2", "logits") and model.default_layer == "hidden2"
    x = digits012.test.x[:7]
    with torch.no_grad():
        reads = model.read(x, list(model.readable_layers))
        lin = _linears(model)
        h1 = torch.relu(lin[0](x.flatten(1)))
        h2 = torch.relu(lin[1](h1))
        assert torch.allclose(reads["hidden1"], h1) and torch.allclose(reads["hidden2"], h2)
        assert torch.allclose(reads["logits"], model(x))
    assert [tuple(r.shape) for r in reads.values()] == [(7, 16), (7, 16), (7, 3)]
    weights = model.dense_weights()
    assert [tuple(w.shape) for w in weights] == [(784, 16), (16, 16), (16, 3)]
    assert torch.equal(weights[0], lin[0].weight.T)
    with pytest.raises(KeyError):
        model.read(x, ["hidden9"])
    assert models["1x8/s0/e2/standard"].default_layer == "hidden1"


def test_arch_sizes_must_fit_the_data(digits012) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(simbench.errors.UserError, match="10 outputs but the data has 3 classes"):
        MlpZoo(archs=("784-8-10",), seeds=(0,), epochs=(1,)).build(digits012, simbench.RunContext())


# --------------------------------------------------------------------------
# calibration and finetuned_cnn builds
# --------------------------------------------------------------------------


def test_calibration_build(digits012) -> None:  # type: ignore[no-untyped-def]
    zoo = CalibrationZoo(arch="1x8", n_random=3, n_converged=3, converged_after=4, batch_size=64)
    models = zoo.build(digits012, simbench.RunContext(seed=0))
    assert list(models) == [s.id for s in zoo.specs()]
    random = [models[s.id] for s in zoo.specs() if s.factors["ensemble"] == "random"]
    converged = [models[s.id] for s in zoo.specs() if s.factors["ensemble"] == "converged"]
    assert not _same_state(random[0], random[1])
    # consecutive checkpoints of one run: close to each other, far from the random networks
    step = (converged[1].dense_weights()[0] - converged[0].dense_weights()[0]).norm()
    gap = (converged[0].dense_weights()[0] - random[0].dense_weights()[0]).norm()
    assert 0 < step < gap
    assert all(float(m.test_accuracy) > 0.8 for m in converged)


@pytest.fixture(scope="module")
def cnn_build(digits012, tmp_path_factory) -> tuple:  # type: ignore[no-untyped-def]
    zoo = FinetunedCnnZoo(
        heads=("1x16", "2x8"), seeds=(0, 1), epochs=(1, 2), strategies=("standard", "pgd"),
        base_epochs=2, eps=0.1, alpha=0.05, steps=2, batch_size=64,
    )
    cache = TensorCache(tmp_path_factory.mktemp("cache"))
    labels: list[str] = []

    def progress(description: str, total: int | None = None, unit: str = ""):  # type: ignore[no-untyped-def]
        labels.append(description)
        return lambda advance=1: None

    models = zoo.build(digits012, simbench.RunContext(seed=0, cache=cache, progress=progress))
    # the progress line names the heads, strategies, seeds and checkpoints it fine-tunes
    assert "Fine-tuning finetuned_cnn heads 1x16/2x8 standard/pgd (2 seeds, 2 checkpoints)" in labels
    return zoo, models, cache


def test_finetuned_cnn_build(cnn_build, digits012) -> None:  # type: ignore[no-untyped-def]
    zoo, models, cache = cnn_build
    assert cache.misses == 1  # the base network went into the cache
    assert list(models) == [s.id for s in zoo.specs()] and len(models) == 2 * 2 * 2 * 2
    ref = next(iter(models.values()))
    for spec in zoo.specs():
        model = models[spec.id]
        assert not model.training and isinstance(model, simbench.types.ReadableModel)
        # one frozen base: identical convolutions in every model
        assert torch.equal(model.trunk.conv1.weight, ref.trunk.conv1.weight)
        assert not any(p.requires_grad for p in model.trunk.parameters())
        # weight metrics see the dense head only: [512, hidden...] -> [.., 3]
        weights = model.dense_weights()
        hidden = (16,) if spec.factors["arch"] == "1x16" else (8, 8)
        assert [tuple(w.shape) for w in weights] == list(zip((512, *hidden), (*hidden, 3)))
        assert model.readable_layers == ("conv1", "conv2", *(f"hidden{i + 1}" for i in range(len(hidden))), "logits")
    # the base learnt features the heads can use (chance is 1/3)
    assert max(float(m.test_accuracy) for m in models.values()) > 0.8
    x = digits012.test.x[:5]
    with torch.no_grad():
        reads = ref.read(x, ["conv2", ref.default_layer, "logits"])
    assert reads["conv2"].shape == (5, 512) and torch.allclose(reads["logits"], ref(x))


def test_finetuned_cnn_reuses_cached_base_and_reloads(cnn_build, digits012) -> None:  # type: ignore[no-untyped-def]
    zoo, models, cache = cnn_build
    small = FinetunedCnnZoo(
        heads=("1x16",), seeds=(0,), epochs=(1,), strategies=("standard",), base_epochs=2, batch_size=64
    )
    again = small.build(digits012, simbench.RunContext(seed=0, cache=cache))
    assert cache.hits == 1 and cache.misses == 1
    model = again["cnn+1x16/s0/e1/standard"]
    assert torch.equal(model.trunk.conv2.weight, models["cnn+1x16/s0/e1/standard"].trunk.conv2.weight)
    for spec in zoo.specs()[:3]:
        fresh = zoo.instantiate(spec, digits012)
        fresh.load_state_dict(models[spec.id].state_dict())
        with torch.no_grad():
            assert torch.equal(fresh.eval()(digits012.test.x), models[spec.id](digits012.test.x))


def test_mlp_groups_build_the_same_models_as_the_whole_zoo(mlp_zoo_models, digits012) -> None:  # type: ignore[no-untyped-def]
    """One group per (arch, strategy); building the groups one by one equals building the zoo at once."""
    zoo, models = mlp_zoo_models
    groups = zoo.groups()
    assert sorted(i for g in groups for i in g) == sorted(s.id for s in zoo.specs())
    assert len(groups) == len(zoo.archs) * len(zoo.strategies)
    for group in groups:
        assert len({(i.split("/")[0], i.split("/")[-1]) for i in group}) == 1  # one arch and strategy each
    built = zoo.build_group(groups[-1], digits012, simbench.RunContext(seed=0))
    assert sorted(built) == sorted(groups[-1])
    for model_id, model in built.items():
        assert _same_state(model, models[model_id])


def test_grouped_mlp_zoo_in_the_runner_gives_the_models_of_the_whole_zoo(tmp_path, digits012) -> None:  # type: ignore[no-untyped-def]
    """Given the zoo stage's seed (what the runner hands every group), each group's models are the whole
    zoo's: a run reproduces whether or not the zoo is split into groups."""
    from simbench.seeding import derive_seed

    zoo = MlpZoo(archs=("784-8-3", "784-16-3"), seeds=(0,), epochs=(1,), strategies=("standard",), batch_size=64)
    stage_seed = derive_seed(0, "zoo")
    whole = zoo.build(digits012, simbench.RunContext(seed=stage_seed))
    for group in zoo.groups():
        for model_id, model in zoo.build_group(group, digits012, simbench.RunContext(seed=stage_seed)).items():
            assert _same_state(model, whole[model_id])
