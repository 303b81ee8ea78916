"""Seed 003 §3.1: the ``memorisation`` zoo and the ``early_layers`` benchmark (planted designs, exact tests)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import simbench
from simbench.errors import ParamError, UserError
from simbench.types import ModelSpec
from simbench_plugins.benchmarks.early_layers import EarlyLayers
from simbench_plugins.benchmarks.early_layers import compute, report
from simbench_plugins.metrics import LinearCKA
from simbench_plugins.zoos._memorisation_impl import ConvNet, permuted_labels
from simbench_plugins.zoos.memorisation import MemorisationZoo

CONDS = ("generalising", "memorising", "random")


# ---------------------------------------------------------------- the exact permutation tests


def test_relabellings_enumerate_every_split_observed_first() -> None:
    masks = compute.relabellings(4, 4, permutations=99, seed=0)
    assert masks.shape == (math.comb(8, 4), 8)
    assert masks[0].tolist() == [True] * 4 + [False] * 4
    assert len({m.tobytes() for m in masks}) == len(masks) and (masks.sum(1) == 4).all()


def test_permutation_p_is_smallest_for_a_planted_gap_and_one_without() -> None:
    s = np.full((8, 8), 0.5)
    s[:4, :4] = s[4:, 4:] = 0.9  # within 0.9, cross 0.5
    np.fill_diagonal(s, 1.0)
    # the statistic is symmetric under swapping the two groups: two relabellings reach the observed value
    assert compute.permutation_p(s, 4, 4, 99, 0) == pytest.approx(2 / 70)
    flat = np.full((8, 8), 0.7)
    np.fill_diagonal(flat, 1.0)
    assert compute.permutation_p(flat, 4, 4, 99, 0) == pytest.approx(1.0)


def test_mean_gap_p_exact_and_one_sided() -> None:
    hi, lo = np.array([0.95, 0.96, 0.97, 0.98]), np.array([0.1, 0.11, 0.09, 0.1])
    assert compute.mean_gap_p(hi, lo, 99, 0) == pytest.approx(1 / 70)
    assert compute.mean_gap_p(lo, hi, 99, 0) == pytest.approx(1.0)
    # three against three cannot reach 0.05 (1 / 20): the suite needs four models per condition
    assert compute.mean_gap_p(hi[:3], lo[:3], 99, 0) == pytest.approx(1 / 20)


# ---------------------------------------------------------------- the benchmark on a planted design


class FakeView:
    """12 models (4 per condition) with planted layer matrices, accuracies, agreement and training accuracy."""

    def __init__(self, cross_conv1: float = 0.9, memorised: float = 1.0, g_acc: float = 0.95) -> None:
        self.specs = [ModelSpec(f"{c}/s{s}", {"condition": c, "seed": s}) for c in CONDS for s in range(4)]
        self.probe_sets = ["clean"]
        self.cond = [s.factors["condition"] for s in self.specs]
        rng = np.random.default_rng(0)
        m = len(self.specs)
        same = np.array([[a == b for b in self.cond] for a in self.cond])

        def planted(within: float, cross: float) -> np.ndarray:
            s = np.where(same, within, cross) + rng.uniform(-0.01, 0.01, (m, m))
            s = 0.5 * (s + s.T)
            np.fill_diagonal(s, 1.0)
            return s

        self.mats = {"conv1": planted(0.9, cross_conv1), "conv2": planted(0.8, 0.3)}
        self.acc = np.array([g_acc if c == "generalising" else 0.1 for c in self.cond])
        self.agree = np.where(same & (np.array(self.cond)[:, None] == "generalising"), 0.97, 0.1)
        np.fill_diagonal(self.agree, 1.0)
        self.train = {s.id: (memorised if s.factors["condition"] == "memorising" else 0.99) for s in self.specs}

    def layers(self, model_id: str) -> tuple[str, ...]:
        return ("conv1", "conv2")

    def matrix(self, key: str) -> torch.Tensor:
        return torch.tensor(self.mats[key.split("/", 1)[1]])

    def matrix_metric(self, key: str):  # noqa: ANN201
        return LinearCKA()

    def accuracy(self, probe: str) -> torch.Tensor:
        return torch.tensor(self.acc)

    def agreement(self, probe: str) -> torch.Tensor:
        return torch.tensor(self.agree)

    def probe_set(self, name: str) -> simbench.ProbeSet:
        return simbench.ProbeSet(name, torch.zeros(100, 1, 4, 4), torch.zeros(100, dtype=torch.long))

    def buffers(self, model_id: str) -> dict[str, torch.Tensor]:
        return {"train_accuracy": torch.tensor(self.train[model_id])}


def _verdict(view: FakeView) -> dict[str, dict]:
    bench = EarlyLayers()
    requests = bench.requests(view)
    assert [r.key for r in requests] == ["layer/conv1", "layer/conv2"]
    assert all(len(r.sources) == 12 and r.metric == "linear_cka" for r in requests)
    records = bench.evaluate(view)
    rows = report.verdict_rows(report.frame(records))
    tables = {t.key: t for t in EarlyLayers.tables(records)}
    assert {"verdict", "layers", "function"} <= set(tables)
    return {r["pair"]: r for r in rows}


def test_planted_alike_early_layer_with_different_function_is_reproduced() -> None:
    rows = _verdict(FakeView())
    for pair in ("generalising vs memorising", "generalising vs random", "memorising vs random"):
        assert rows[pair]["reproduced"] == "yes", rows[pair]["why"]
        assert rows[pair]["alike_through"] == "1 of 2 layers"  # conv2's cross CKA (0.3) is far below within
        assert rows[pair]["cka[conv1]"] == pytest.approx(0.9, abs=0.011)
    assert rows["generalising vs memorising"]["p_accuracy"] == pytest.approx(1 / 70)
    assert rows["(overall)"]["reproduced"] == "yes"


def test_low_cross_cka_or_no_memorisation_or_no_gap_is_not_reproduced() -> None:
    low = _verdict(FakeView(cross_conv1=0.6))
    assert all(low[p]["reproduced"] == "no" for p in low)
    assert "below the pre-declared" in low["generalising vs random"]["why"]
    # high (0.85 >= 0.8) but below every within-condition pair (0.89..0.91): outside the spread
    outside = _verdict(FakeView(cross_conv1=0.85))
    assert outside["generalising vs random"]["alike_first"] == "no"
    assert "outside the spread" in outside["generalising vs random"]["why"]
    unmemorised = _verdict(FakeView(memorised=0.3))
    assert unmemorised["generalising vs memorising"]["reproduced"] == "no"
    assert unmemorised["generalising vs random"]["reproduced"] == "yes"
    same_function = _verdict(FakeView(g_acc=0.2))  # generalising no better than chance + 0.1
    assert same_function["generalising vs random"]["function_differs"] == "no"


def test_too_few_models_per_condition_is_one_clear_error() -> None:
    view = FakeView()
    view.specs = view.specs[:5] + view.specs[8:]  # one memorising model left
    with pytest.raises(UserError, match="at least two models of each condition"):
        EarlyLayers().requests(view)
    with pytest.raises(ParamError):
        EarlyLayers(conditions=("a", "a", "b"))


# ---------------------------------------------------------------- the zoo


def test_zoo_specs_ids_and_checks() -> None:
    zoo = MemorisationZoo(seeds=(0, 1), epochs=3)
    assert [s.id for s in zoo.specs()] == ["generalising/s0", "generalising/s1", "memorising/s0", "memorising/s1",
                                           "random/s0", "random/s1"]
    assert zoo.specs()[4].factors == {"condition": "random", "seed": 0, "epoch": 0}
    assert len(zoo.groups()) == 6
    with pytest.raises(ParamError):
        MemorisationZoo(kernels=(3,))


def test_convnet_layers_shapes_and_weights() -> None:
    net = ConvNet((1, 28, 28), (8, 8, 16), (7, 7, 3), 10)
    assert net.readable_layers == ("conv1", "conv2", "conv3", "logits") and net.default_layer == "conv3"
    net.eval()
    reps = net.read(torch.rand(5, 1, 28, 28), net.readable_layers)
    assert reps["conv1"].shape == (5, 8 * 22 * 22) and reps["conv3"].shape == (5, 16 * 14 * 14)
    assert reps["logits"].shape == (5, 10) and (reps["conv1"] >= 0).all()
    assert [tuple(w.shape) for w in net.dense_weights()] == [(49, 8), (8 * 49, 8), (8 * 9, 16), (16 * 14 * 14, 10)]
    with pytest.raises(UserError, match="shrink"):
        ConvNet((1, 8, 8), (4, 4), (7, 7), 10)


def test_permuted_labels_keep_class_counts_and_differ_by_seed() -> None:
    y = torch.arange(100) % 10
    a, b = permuted_labels(y, 0, 0), permuted_labels(y, 0, 1)
    assert torch.equal(torch.bincount(a), torch.bincount(y)) and not torch.equal(a, y) and not torch.equal(a, b)
    assert torch.equal(a, permuted_labels(y, 0, 0))


@pytest.fixture
def one_thread():  # noqa: ANN201 - as the runner trains (threads = 1); many tiny convolutions crawl on a busy CPU otherwise
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_tiny_zoo_trains_memorises_and_keeps_random_untrained(one_thread) -> None:  # noqa: ANN001
    g = torch.Generator().manual_seed(0)
    x = torch.rand(16, 1, 6, 6, generator=g)
    y = torch.arange(16) % 4
    x = x + 0.5 * y.view(-1, 1, 1, 1).float()  # learnable true labels
    split = simbench.Split(x, y)
    data = simbench.DataSplits(train=split, val=simbench.Split(x[:0], y[:0]), test=split, num_classes=4)
    zoo = MemorisationZoo(seeds=(0,), channels=(8, 8), kernels=(3, 3), epochs=40, lr=2e-2, batch_size=16)
    ctx = simbench.RunContext(seed=0)
    models = zoo.build(data, ctx)
    assert set(models) == {"generalising/s0", "memorising/s0", "random/s0"}
    assert float(models["memorising/s0"].train_accuracy) >= 0.9  # fits its permuted labels
    assert float(models["generalising/s0"].test_accuracy) >= 0.9
    # every model has its own initialisation: the random one is not the trained ones' starting point
    w = [models[k].convs[0].weight for k in ("generalising/s0", "memorising/s0", "random/s0")]
    assert not torch.allclose(w[0], w[2]) and not torch.allclose(w[1], w[2])
    again = zoo.build_group(["random/s0"], data, ctx)["random/s0"]
    assert torch.equal(again.convs[0].weight, models["random/s0"].convs[0].weight)
