"""CKA sanity transforms on representations (seed 003 §3.2-3.3)."""

from __future__ import annotations

import itertools
import pytest
import torch
import torch.nn.functional as F

import simbench
from simbench.params import configure
from simbench_plugins.perturbations._cka import linear_cka
from simbench_plugins.perturbations.representation import RepresentationTransform as RT

CTX = simbench.RunContext(seed=0)


def cka(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(linear_cka(a.double(), b.double()))


def linear_accuracy(w: torch.Tensor, b: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> float:
    return float(((x.double() @ w + b).argmax(1) == y).double().mean())


@pytest.fixture(scope="module")
def cubes() -> tuple[torch.Tensor, torch.Tensor]:
    """Seed 003 §3.2: two unit cubes in d dimensions, the second shifted by 1.1 along the first axis."""
    g = torch.Generator().manual_seed(0)
    n, d = 600, 1000
    x = torch.rand(2 * n, d, generator=g, dtype=torch.float64) - 0.5
    x[n:, 0] += 1.1
    return x, torch.cat([torch.zeros(n), torch.ones(n)]).long()


@pytest.fixture(scope="module")
def hidden() -> tuple[torch.Tensor, torch.Tensor]:
    """A real representation: the last hidden layer of an MLP trained on sklearn's digits."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.data, dtype=torch.float32) / 16.0
    y = torch.tensor(d.target)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 128), torch.nn.ReLU())
    head = torch.nn.Linear(128, 10)
    opt = torch.optim.Adam([*net.parameters(), *head.parameters()], lr=1e-2)
    for _ in range(100):
        opt.zero_grad()
        F.cross_entropy(head(net(x)), y).backward()
        opt.step()
    with torch.no_grad():
        return net(x), y


def test_class_translation_drops_cka_below_02_while_a_linear_classifier_separates(cubes) -> None:  # type: ignore[no-untyped-def]
    x, y = cubes
    info = RT(kind="class_translation", distance=3.0, label=1).details(x, y, CTX)
    out = info["x"]
    w, b = info["classifier"]
    value = cka(x, out)
    acc_x, acc_y = linear_accuracy(w, b, x, y), linear_accuracy(w, b, out, y)
    print(f"cubes: linear CKA {value:.3f}; linear classifier accuracy {acc_x:.3f} on X, {acc_y:.3f} on Y")
    assert value < 0.2
    assert acc_x > 0.9 and acc_y >= acc_x
    # only the translated class moved, all by the same vector: within-class geometry is intact
    moved = y == 1
    assert torch.equal(out[~moved], x[~moved])
    delta = out[moved] - x[moved]
    torch.testing.assert_close(delta, delta[:1].expand_as(delta))
    # the shift has the requested length: 3 RMS radii of the centred representation
    rms = (x - x.mean(0)).pow(2).sum(1).mean().sqrt()
    assert float(delta[0].norm()) == pytest.approx(3.0 * float(rms))


def test_class_translation_on_a_trained_network(hidden) -> None:  # type: ignore[no-untyped-def]
    x, y = hidden
    values = []
    for label in (1, 4, 8):  # a spread of classes (all ten: 0.06-0.35)
        info = RT(distance=30.0, label=label).details(x, y, CTX)
        w, b = info["classifier"]
        values.append(cka(x, info["x"]))
        # the classifier's decisions on the moved class can only improve, others do not move
        before = (x.double() @ w + b).argmax(1)
        after = (info["x"].double() @ w + b).argmax(1)
        moved = y == label
        assert torch.equal(after[~moved], before[~moved])
        assert ((after == y) | (before != y))[moved].all()
        assert linear_accuracy(w, b, info["x"], y) > 0.9
    print(
        "digits MLP hidden layer, CKA after translating classes 1, 4, 8 by 30 RMS radii:", [round(v, 3) for v in values]
    )
    # the floor as the distance grows is the CKA between X and the class indicator: it depends on the class
    assert max(values) < 0.4 and min(values) < 0.2
    small = [cka(x, RT(distance=d, label=5).transform_representation(x, y, CTX)) for d in (0.0, 1.0, 3.0, 10.0)]
    assert small[0] == pytest.approx(1.0) and all(a > b for a, b in itertools.pairwise(small))


def test_random_direction_translation(cubes) -> None:  # type: ignore[no-untyped-def]
    x, y = cubes
    a = RT(direction="random", distance=3.0, label=1).transform_representation(x, y, CTX)
    assert cka(x, a) < 0.2
    again = RT(direction="random", distance=3.0, label=1).transform_representation(x, y, CTX)
    other = RT(direction="random", distance=3.0, label=1).transform_representation(x, y, simbench.RunContext(seed=1))
    assert torch.equal(a, again) and not torch.equal(a, other)


def test_invertible_linear_map(hidden) -> None:  # type: ignore[no-untyped-def]
    x, y = hidden
    info = RT(kind="invertible_linear", mu=1.0, sigma=1.0).details(x, y, CTX)
    out, m = info["x"], info["matrix"]
    # invertible: the original is recovered exactly by a linear map
    torch.testing.assert_close(out.double() @ torch.linalg.inv(m), x.double(), rtol=1e-3, atol=2e-3)
    shifted = cka(x, out)
    centred = cka(x, RT(kind="invertible_linear", mu=0.0, sigma=1.0).transform_representation(x, y, CTX))
    print(f"invertible M ~ N(1, 1): CKA {shifted:.3f};  M ~ N(0, 1): CKA {centred:.3f}")
    assert shifted < 0.5 < centred  # a mean in M wrecks CKA (seed Fig. 3b)


def test_single_outlier(hidden) -> None:  # type: ignore[no-untyped-def]
    x, y = hidden
    info = RT(kind="outlier", distance=100.0).details(x, y, CTX)
    out, i = info["x"], info["index"]
    keep = torch.ones(len(x), dtype=torch.bool)
    keep[i] = False
    assert torch.equal(out[keep], x[keep])
    assert cka(x, out) < 0.2  # one point of 1797 decides the value
    near = RT(kind="outlier", distance=1.0).transform_representation(x, y, CTX)
    assert cka(x, near) > 0.95


def test_params_and_variants() -> None:
    assert RT().variants() == ["representation_transform/class_translation"]
    assert RT.target == "representation"
    obj, key, _ = configure(RT, {"kind": "rotate"})
    assert obj is None and key == "kind"
    obj, key, _ = configure(RT, {"kind": "invertible_linear", "sigma": 0.0})
    assert obj is None and key == "sigma"
    with pytest.raises(ValueError, match="label 42 does not occur"):
        RT(label=42).transform_representation(torch.randn(10, 3), torch.zeros(10, dtype=torch.long), CTX)


def test_every_kind_returns_float64(hidden) -> None:  # type: ignore[no-untyped-def]
    x, y = hidden
    x32 = x.float()
    for params in ({"kind": "outlier", "distance": 3.0}, {"kind": "invertible_linear"}, {"kind": "row_sum"},
                   {"kind": "class_indicator", "label": 4}, {"kind": "invariance", "invariance": "orthogonal"}):
        out = RT(**params).transform_representation(x32, y, CTX)
        assert out.dtype == torch.float64, params
    # computed from the float64 values of the input: a float32 and a float64 input give the same copy
    a = RT(kind="outlier", distance=3.0).transform_representation(x32, y, CTX)
    b = RT(kind="outlier", distance=3.0).transform_representation(x32.double(), y, CTX)
    assert torch.equal(a, b)


def test_limit_kinds_are_what_the_transforms_tend_to(hidden) -> None:  # type: ignore[no-untyped-def]
    x, y = hidden
    ind = RT(kind="class_indicator", label=-1).transform_representation(x, y, CTX)
    assert ind.shape == (len(x), 1) and torch.equal(ind[:, 0], (y == 0).double())
    far = RT(kind="class_translation", label=-1, distance=1e4).transform_representation(x, y, CTX)
    assert cka(far, ind) == pytest.approx(1.0, abs=1e-4)  # the translated copy *is* the indicator at the limit
    rows = RT(kind="row_sum").transform_representation(x, y, CTX)
    torch.testing.assert_close(rows[:, 0], x.double().sum(1))
    big_mu = RT(kind="invertible_linear", mu=1e4, sigma=1.0).transform_representation(x, y, CTX)
    assert cka(big_mu, rows) == pytest.approx(1.0, abs=1e-4)
    with pytest.raises(ValueError, match="label 42 does not occur"):
        RT(kind="class_indicator", label=42).transform_representation(x, y, CTX)


def test_invariance_kind_replays_the_kits_shared_stream() -> None:
    """t(a) then t(b) from one generator (the kit) == two separately seeded transforms, b's skipping a's widths."""
    from simbench.testing import make_activations, make_network, transform_activation, transform_weights

    # float32-representable values, so a float32 input (as a run stores activations) is the same input
    (a, b), _ = make_activations(seed=3, widths=(10, 7))
    a, b = a.float().double(), b.float().double()
    seed = 12345
    for name in ("orthogonal", "isotropic_scaling", "permutation", "translation", "invertible_linear"):
        g = torch.Generator().manual_seed(seed)
        ta, tb = transform_activation(name, a, g), transform_activation(name, b, g)
        ctx = simbench.RunContext(seed=seed)
        assert torch.equal(RT(kind="invariance", invariance=name).transform_representation(a.float(), None, ctx), ta)
        got = RT(kind="invariance", invariance=name, skip_widths=(10,)).transform_representation(b, None, ctx)
        assert torch.equal(got, tb), name
        # without the skip it is a different draw (isotropic scaling aside, every group draws per width)
        assert not torch.equal(RT(kind="invariance", invariance=name).transform_representation(b, None, ctx), tb)
    wa, wb = make_network(seed=1, widths=(6, 5, 4, 3)), make_network(seed=2, widths=(6, 9, 8, 3))
    wa = [w.float().double() for w in wa]
    for name in ("weight_permutation", "weight_positive_scaling"):
        g = torch.Generator().manual_seed(seed)
        ta, tb = transform_weights(name, wa, g), transform_weights(name, wb, g)
        ctx = simbench.RunContext(seed=seed)
        got_a = RT(kind="invariance", invariance=name).transform_weights([w.float() for w in wa], ctx)
        got_b = RT(kind="invariance", invariance=name, skip_widths=(5, 4)).transform_weights(wb, ctx)
        assert all(torch.equal(p, q) for p, q in zip(got_a, ta, strict=True))
        assert all(torch.equal(p, q) for p, q in zip(got_b, tb)) and len(got_b) == 3


def test_invariance_kind_checks() -> None:
    x, ctx = torch.randn(8, 3), CTX
    with pytest.raises(ValueError, match="transforms weights, not activations"):
        RT(kind="invariance", invariance="weight_permutation").transform_representation(x, None, ctx)
    with pytest.raises(ValueError, match="transforms activations, not weights"):
        RT(kind="invariance", invariance="orthogonal").transform_weights([x], ctx)
    with pytest.raises(ValueError, match="kind 'outlier' transforms activations"):
        RT(kind="outlier").transform_weights([x], ctx)
    obj, key, _ = configure(RT, {"kind": "invariance", "invariance": "affine"})
    assert obj is None and key == "invariance"
    obj, key, _ = configure(RT, {"kind": "outlier", "skip_widths": [3]})
    assert obj is None and key == "skip_widths"
    obj, _, _ = configure(RT, {"kind": "invariance", "invariance": "orthogonal", "skip_widths": [3, 4]})
    assert obj is not None and obj.skip_widths == (3, 4)
    assert obj.variants() == ["representation_transform/invariance/orthogonal"]
