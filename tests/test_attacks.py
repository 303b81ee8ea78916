"""Adversarial probe sets on a small MLP trained here on real digits (sklearn)."""

from __future__ import annotations

import sys

import pytest
import torch
from torch import nn
import torch.nn.functional as F

import simbench
from simbench.errors import UserError
from simbench.params import configure
from simbench_plugins.perturbations.attacks import Attacks
from tiny_mlp import TinyMLP


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.data, dtype=torch.float32) / 16.0  # [1797, 64] in [0, 1]
    y = torch.tensor(d.target, dtype=torch.long)
    return x[:1200], y[:1200], x[1200:], y[1200:]


def train(x: torch.Tensor, y: torch.Tensor, seed: int, epochs: int = 100) -> TinyMLP:
    torch.manual_seed(seed)
    model = TinyMLP()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(epochs):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def zoo(digits) -> tuple[dict[str, TinyMLP], list[simbench.ModelSpec]]:  # type: ignore[no-untyped-def]
    xtr, ytr, _, _ = digits
    # "adv0" only carries a non-standard strategy label: source selection must skip it
    models = {"adv0": train(xtr, ytr, 0, epochs=40), "std1": train(xtr, ytr, 1), "std2": train(xtr, ytr, 2)}
    specs = [
        simbench.ModelSpec("adv0", {"seed": 0, "strategy": "pgd"}),
        simbench.ModelSpec("std1", {"seed": 1, "strategy": "standard"}),
        simbench.ModelSpec("std2", {"seed": 2, "strategy": "standard"}),
    ]
    return models, specs


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def run(pert: Attacks, zoo, digits, seed: int = 0) -> list[simbench.ProbeSet]:  # type: ignore[no-untyped-def]
    models, specs = zoo
    _, _, xte, yte = digits
    clean = simbench.ProbeSet("clean", xte, yte)
    return pert.probe_sets(clean, simbench.PerturbContext(seed=seed, models=models, specs=specs))


def test_fgsm_and_pgd_reduce_accuracy_within_the_eps_ball(zoo, digits) -> None:  # type: ignore[no-untyped-def]
    models, _ = zoo
    _, _, xte, yte = digits
    eps = 0.1
    fgsm, pgd = run(Attacks(attacks=("fgsm", "pgd"), eps=eps), zoo, digits)
    source = models["std1"]
    clean_acc = accuracy(source, xte, yte)
    fgsm_acc, pgd_acc = accuracy(source, fgsm.x, yte), accuracy(source, pgd.x, yte)
    print(f"clean {clean_acc:.3f}  fgsm {fgsm_acc:.3f}  pgd {pgd_acc:.3f}")
    assert clean_acc > 0.9
    assert fgsm_acc < clean_acc - 0.3
    assert pgd_acc < fgsm_acc  # iterated attack is stronger
    for p in (fgsm, pgd):
        assert p.x.shape == xte.shape and p.y is yte
        assert (p.x - xte).abs().max() <= eps + 1e-6
        assert p.x.min() >= 0 and p.x.max() <= 1
        assert p.meta["source"] == "std1"
    # transferred to another standard model, the attack still hurts
    assert accuracy(models["std2"], pgd.x, yte) < accuracy(models["std2"], xte, yte) - 0.1


def test_fgsm_matches_a_hand_written_fgsm(zoo, digits) -> None:  # type: ignore[no-untyped-def]
    models, _ = zoo
    _, _, xte, yte = digits
    eps = 0.07
    (fgsm,) = run(Attacks(attacks=("fgsm",), eps=eps), zoo, digits)
    x = xte.clone().requires_grad_(True)
    loss = F.cross_entropy(models["std1"](x), yte)
    (grad,) = torch.autograd.grad(loss, x)
    expected = (xte + eps * grad.sign()).clamp(0, 1)
    torch.testing.assert_close(fgsm.x, expected, rtol=0, atol=1e-6)


def test_all_attacks_deterministic_and_seeded(zoo, digits) -> None:  # type: ignore[no-untyped-def]
    pert = Attacks(eps=0.05, steps=3)
    first = run(pert, zoo, digits, seed=0)
    again = run(pert, zoo, digits, seed=0)
    other = run(pert, zoo, digits, seed=1)
    _, _, xte, _ = digits
    assert (
        [p.name for p in first] == pert.variants() == [f"attacks/{a}" for a in ("fgsm", "ffgsm", "gn", "pgd", "tpgd")]
    )
    for a, b, c in zip(first, again, other):
        assert torch.equal(a.x, b.x), a.name
        assert not torch.equal(a.x, xte), a.name
        if a.name != "attacks/fgsm":  # every attack but FGSM has a random start or noise
            assert not torch.equal(a.x, c.x), a.name
    gn = first[2].x - xte
    interior = (xte > 0.3) & (xte < 0.7)  # away from the clamp at 0 and 1
    assert abs(float(gn[interior].std()) - 0.05) < 0.005


def test_source_selection(zoo, digits) -> None:  # type: ignore[no-untyped-def]
    models, specs = zoo
    ctx = simbench.PerturbContext(models=models, specs=specs)
    assert Attacks().source_model(ctx) == "std1"  # first standard model, not the first model
    assert Attacks(source="std2").source_model(ctx) == "std2"
    no_standard = [simbench.ModelSpec(s.id, {"strategy": "pgd"}) for s in specs]
    assert Attacks().source_model(simbench.PerturbContext(models=models, specs=no_standard)) == "adv0"
    with pytest.raises(UserError, match="source model 'nope'"):
        Attacks(source="nope").source_model(ctx)
    with pytest.raises(UserError, match="needs trained models"):
        Attacks().source_model(simbench.PerturbContext())


def test_per_model_mode_crafts_against_each_model(zoo, digits) -> None:  # type: ignore[no-untyped-def]
    models, _ = zoo
    _, _, xte, yte = digits
    (pgd,) = run(Attacks(attacks=("pgd",), eps=0.1, per_model=True), zoo, digits)
    assert pgd.x_by_model is not None and set(pgd.x_by_model) == set(models)
    assert torch.equal(pgd.inputs_for("std1"), pgd.x)
    assert not torch.equal(pgd.inputs_for("std2"), pgd.x)
    for mid, m in models.items():
        own = pgd.inputs_for(mid)
        assert (own - xte).abs().max() <= 0.1 + 1e-6
        # each model is attacked hardest by the inputs crafted against it
        others = [accuracy(m, pgd.inputs_for(o), yte) for o in models if o != mid]
        assert accuracy(m, own, yte) <= min(others)


def test_attacks_run_under_no_grad_and_inference_mode(zoo, digits) -> None:  # type: ignore[no-untyped-def]
    pert = Attacks(attacks=("fgsm",), eps=0.05)
    (reference,) = run(pert, zoo, digits)
    with torch.no_grad():
        (a,) = run(pert, zoo, digits)
    with torch.inference_mode():
        (b,) = run(pert, zoo, digits)
    assert torch.equal(a.x, reference.x) and torch.equal(b.x, reference.x)


def test_missing_torchattacks_says_how_to_install(zoo, digits, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setitem(sys.modules, "torchattacks", None)  # makes `import torchattacks` fail
    with pytest.raises(UserError, match=r"pip install --no-deps torchattacks==3\.5\.1"):
        run(Attacks(attacks=("fgsm",)), zoo, digits)


def test_inputs_outside_unit_interval_are_refused(zoo, digits) -> None:  # type: ignore[no-untyped-def]
    models, specs = zoo
    _, _, xte, yte = digits
    clean = simbench.ProbeSet("clean", xte * 2 - 1, yte)
    with pytest.raises(UserError, match=r"\[0, 1\]"):
        Attacks(attacks=("fgsm",)).probe_sets(clean, simbench.PerturbContext(models=models, specs=specs))


def test_params_are_validated() -> None:
    obj, key, msg = configure(Attacks, {"attacks": ["fgsm", "cw"]})
    assert obj is None and key == "attacks" and "unknown attack 'cw'" in msg
    obj, key, _ = configure(Attacks, {"eps": 0})
    assert obj is None and key == "eps"
    obj, _, _ = configure(Attacks, {"eps": 0.3, "steps": 40, "source": "m1", "per_model": True})
    assert obj.step_size == pytest.approx(2.5 * 0.3 / 40)
    assert configure(Attacks, {"alpha": 0.01})[0].step_size == 0.01


def test_importing_attacks_does_not_import_robustbench(zoo, digits) -> None:  # type: ignore[no-untyped-def]
    run(Attacks(attacks=("gn",)), zoo, digits)
    assert "robustbench" not in sys.modules and "torchvision" not in sys.modules
