"""Training: vectorised ensembles equal one-at-a-time training; attacks; learning; robustness."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import simbench
from simbench_plugins.data.datasets import Digits28
from simbench_plugins.zoos._mlp_impl import member
from simbench_plugins.zoos._train import (
    TrainConfig,
    adversarial_inputs,
    batched_mlp_forward,
    batched_mlp_input_grad,
    fgsm,
    fgsm_fast,
    pgd,
    plain_mlp,
    train_ensemble,
    train_one,
)
from simbench_plugins.zoos.mlp import MlpZoo


@pytest.fixture(scope="module")
def digits012() -> simbench.DataSplits:
    return Digits28(classes=(0, 1, 2)).load(simbench.RunContext(seed=0))


def _max_diff(a: list, b: list) -> float:
    return max(float((p - q).abs().max()) for (wa, ba), (wb, bb) in zip(a, b) for p, q in ((wa, wb), (ba, bb)))


@pytest.mark.parametrize("strategy", ["standard", "fgsm", "fgsm_rs", "pgd"])
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_vectorised_training_equals_one_model_at_a_time(strategy: str, optimizer: str) -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(90, 1, 5, 5, generator=gen)  # image-shaped inputs: the ensemble flattens them itself
    y = torch.randint(0, 3, (90,), generator=gen)
    widths = (25, 12, 12, 3)
    members = [member(widths, seed, strategy, run_seed=0) for seed in range(3)]
    cfg = TrainConfig(
        epochs=3, checkpoints=(0, 1, 3), strategy=strategy, optimizer=optimizer, lr=0.01, batch_size=32,
        eps=0.1, alpha=0.03, steps=3, warmup_epochs=1, weight_decay=1e-3,
    )  # 90 = 2 full batches + a partial one; the warm-up changes eps between epochs
    ens = train_ensemble(widths, members, x, y, cfg, dtype=torch.float64)
    assert sorted(ens.snapshots) == [0, 1, 3]
    for i, mem in enumerate(members):
        alone = train_one(widths, mem, x, y, cfg, dtype=torch.float64)
        for epoch in (0, 1, 3):
            assert _max_diff(ens.snapshots[epoch][i], alone[epoch]) < 1e-5
        # and training did something
        assert _max_diff(alone[3], alone[0]) > 1e-3
    # members really are different models (own init, own data order)
    assert _max_diff(ens.snapshots[3][0], ens.snapshots[3][1]) > 1e-2


def test_hand_written_input_gradient_equals_autograd() -> None:
    gen = torch.Generator().manual_seed(3)
    widths = (20, 9, 7, 4)
    m, b = 3, 11
    weights = [torch.randn(m, i, o, generator=gen, dtype=torch.float64) for i, o in zip(widths[:-1], widths[1:])]
    biases = [torch.randn(m, 1, o, generator=gen, dtype=torch.float64) for o in widths[1:]]
    x = torch.rand(m, b, widths[0], generator=gen, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 4, (m, b), generator=gen)
    loss = F.cross_entropy(batched_mlp_forward(weights, biases, x).reshape(m * b, -1), y.reshape(-1), reduction="sum")
    (expected,) = torch.autograd.grad(loss, x)
    got = batched_mlp_input_grad(weights, biases, x.detach(), y)
    assert torch.allclose(got, expected, atol=1e-12, rtol=1e-10)
    assert float(expected.abs().max()) > 1e-3


def test_members_differ_only_in_their_own_data_order() -> None:
    """Same init, different data seeds -> different models; same seeds -> identical models."""
    x, y = torch.rand(64, 10), torch.randint(0, 2, (64,))
    widths = (10, 8, 2)
    base = member(widths, 0, "standard", 0)
    other_order = type(base)(init=base.init, data_seed=base.data_seed + 1, attack_seed=base.attack_seed)
    cfg = TrainConfig(epochs=2, checkpoints=(2,), batch_size=16, lr=0.01)
    res = train_ensemble(widths, [base, base, other_order], x, y, cfg, dtype=torch.float64)
    assert _max_diff(res.snapshots[2][0], res.snapshots[2][1]) == 0.0
    assert _max_diff(res.snapshots[2][0], res.snapshots[2][2]) > 1e-4


def _tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return plain_mlp((16, 12, 3)).double()


def test_pgd_matches_torchattacks_reference() -> None:
    torchattacks = pytest.importorskip("torchattacks")
    model = _tiny_model()
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(40, 16, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (40,), generator=gen)
    ours = pgd(lambda z: F.cross_entropy(model(z), y), x, None, eps=0.1, alpha=0.02, steps=7)
    attack = torchattacks.PGD(model, eps=0.1, alpha=0.02, steps=7, random_start=False)
    theirs = attack(x, y)
    assert torch.allclose(ours, theirs, atol=1e-12)


def test_attacks_stay_in_the_eps_ball_and_increase_the_loss() -> None:
    model = _tiny_model()
    gen = torch.Generator().manual_seed(2)
    x = torch.rand(200, 16, generator=gen, dtype=torch.float64)
    y = model(x).argmax(1)
    loss = lambda z: F.cross_entropy(model(z), y)  # noqa: E731
    noise = (torch.rand(x.shape, generator=gen, dtype=torch.float64) * 2 - 1) * 0.2
    for adv in (
        fgsm(loss, x, eps=0.2),
        fgsm_fast(loss, x, noise, eps=0.2, alpha=0.25),
        pgd(loss, x, noise, eps=0.2, alpha=0.05, steps=10),
    ):
        assert float((adv - x).abs().max()) <= 0.2 + 1e-12
        assert float(adv.min()) >= 0.0 and float(adv.max()) <= 1.0
        with torch.no_grad():
            assert float(loss(adv)) > float(loss(x))


def test_standard_models_beat_chance_on_digits28(digits012: simbench.DataSplits) -> None:
    zoo = MlpZoo(archs=("1x8", "4x32"), seeds=(0, 1), epochs=(0, 10), strategies=("standard",))
    models = zoo.build(digits012, simbench.RunContext(seed=0))
    for spec in zoo.specs():
        acc = float(models[spec.id].test_accuracy)
        if spec.factors["epoch"] == 10:
            assert acc > 0.85, spec.id  # chance is 1/3
        else:
            assert acc < 0.7, spec.id  # untrained


def test_pgd_training_makes_models_more_robust_to_pgd(digits012: simbench.DataSplits) -> None:
    eps = 0.1
    zoo = MlpZoo(
        archs=("784-32-32-3",), seeds=(0, 1), epochs=(10,), strategies=("standard", "pgd"),
        eps=eps, alpha=0.04, steps=3, warmup_epochs=3,
    )
    models = zoo.build(digits012, simbench.RunContext(seed=0))
    x, y = digits012.test.x, digits012.test.y
    robust: dict[str, list[float]] = {"standard": [], "pgd": []}
    for spec in zoo.specs():
        model = models[spec.id]
        assert float(model.test_accuracy) > 0.9  # both still classify clean images
        adv = pgd(lambda z, m=model: F.cross_entropy(m(z), y), x, None, eps=eps, alpha=eps / 10, steps=20)
        robust[spec.factors["strategy"]].append(float((model(adv).argmax(1) == y).float().mean()))
    gap = sum(robust["pgd"]) / 2 - sum(robust["standard"]) / 2
    assert gap > 0.15, robust


def test_fgsm_strategy_is_plain_fgsm_and_fgsm_rs_has_a_random_start() -> None:
    """``fgsm`` = Goodfellow et al. (the seed's citation): exactly clip(x + eps * sign(grad_x loss(x)), 0, 1)
    from the clean input, no noise drawn; ``fgsm_rs`` = Wong et al.: random start, step 1.25 eps."""
    model = _tiny_model()
    gen = torch.Generator().manual_seed(4)
    x = torch.rand(64, 16, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (64,), generator=gen)
    loss = lambda z: F.cross_entropy(model(z), y)  # noqa: E731
    xg = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(loss(xg), xg)
    eps = 0.1
    expected = (x + eps * grad.sign()).clamp(0, 1)
    drawn: list[torch.Tensor] = []

    def noise() -> torch.Tensor:
        drawn.append((torch.rand(x.shape, generator=gen, dtype=x.dtype) * 2 - 1) * eps)
        return drawn[-1]

    plain = adversarial_inputs(loss, x.clone(), TrainConfig(epochs=1, checkpoints=(1,), strategy="fgsm", eps=eps), noise)
    assert not drawn  # no random start
    assert torch.equal(plain, expected)
    assert float((plain - x).abs().max()) <= eps + 1e-12
    # every pixel that is not clipped moved by exactly eps
    inside = (expected > 0) & (expected < 1)
    assert torch.allclose((plain - x).abs()[inside], torch.full_like(plain[inside], eps))

    rs = adversarial_inputs(loss, x.clone(), TrainConfig(epochs=1, checkpoints=(1,), strategy="fgsm_rs", eps=eps), noise)
    assert len(drawn) == 1  # one random start
    assert not torch.allclose(rs, expected)
    assert float((rs - x).abs().max()) <= eps + 1e-12 and float(rs.min()) >= 0 and float(rs.max()) <= 1
    # Wong et al.: step 1.25 eps from the random start, then projected back to the eps-ball
    start = (x + drawn[0]).clamp(0, 1)
    sg = start.clone().requires_grad_(True)
    (g0,) = torch.autograd.grad(loss(sg), sg)
    wong = torch.maximum(torch.minimum(start + 1.25 * eps * g0.sign(), (x + eps).clamp(max=1)), (x - eps).clamp(min=0))
    assert torch.allclose(rs, wong, atol=1e-12)


def test_plain_fgsm_training_draws_no_attack_noise() -> None:
    """Zoo level: members that differ only in their attack-noise seed train identically under ``fgsm``
    (no random start) and differently under ``fgsm_rs`` and ``pgd``."""
    gen = torch.Generator().manual_seed(5)
    x, y = torch.rand(64, 10, generator=gen), torch.randint(0, 3, (64,), generator=gen)
    widths = (10, 8, 3)
    base = member(widths, 0, "fgsm", 0)
    other_noise = type(base)(init=base.init, data_seed=base.data_seed, attack_seed=base.attack_seed + 1)
    for strategy, same in (("fgsm", True), ("fgsm_rs", False), ("pgd", False)):
        cfg = TrainConfig(epochs=2, checkpoints=(2,), strategy=strategy, batch_size=16, lr=0.01, eps=0.1, steps=2)
        res = train_ensemble(widths, [base, other_noise], x, y, cfg, dtype=torch.float64)
        diff = _max_diff(res.snapshots[2][0], res.snapshots[2][1])
        assert (diff == 0.0) if same else (diff > 1e-6), (strategy, diff)


def test_zoos_accept_fgsm_rs() -> None:
    assert MlpZoo(strategies=("standard", "fgsm", "fgsm_rs", "pgd")).specs()[-1].factors["strategy"] == "pgd"


def test_epoch_log_reports_loss_and_accuracy_without_changing_training():
    """Verbose runs log one line per epoch; the logged path trains exactly like the silent one."""
    from simbench_plugins.zoos._train import TrainConfig, init_mlp, Member, train_ensemble

    gen = torch.Generator().manual_seed(0)
    x = torch.rand(64, 12, generator=gen)
    y = (x[:, 0] > 0.5).long()
    widths = (12, 6, 2)
    members = [Member(init=init_mlp(widths, torch.Generator().manual_seed(s)), data_seed=s, attack_seed=s)
               for s in (1, 2)]
    cfg = TrainConfig(epochs=3, checkpoints=(3,), batch_size=16, lr=0.01)
    lines: list[str] = []
    logged = train_ensemble(widths, members, x, y, cfg, log=lines.append, label="toy: ")
    silent = train_ensemble(widths, members, x, y, cfg)
    assert len(lines) == 3 and lines[0].startswith("toy: epoch 1/3: train loss")
    assert "accuracy" in lines[-1]
    for a, b in zip(logged.snapshots[3], silent.snapshots[3]):
        for (wa, ba), (wb, bb) in zip(a, b):
            assert torch.allclose(wa, wb, atol=1e-6) and torch.allclose(ba, bb, atol=1e-6)
