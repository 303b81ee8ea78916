"""Regression tests for the numerical defects of issue 11 (item 3): each fails on the code before the fix.

* k-NN ties were broken by position (torch.topk): reordering probes moved values,
  and a constant representation scored an arbitrary number;
* RSA rounded float32 distances to 4 decimals;
* nuclear norms via eigenvalues of the squared cross-covariance floored
  angular_shape at ~1e-4 for a pure rotation;
* unbiased / minibatch CKA of a representation constant up to rounding
  flipped between 0 and 1 instead of being undefined;
* float32 inputs of scale 1e20 / 1e-20 overflowed or underflowed to NaN / 0.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.spatial.distance import pdist

from simbench.errors import MeasurementFailed
from simbench.registry import build_registry
from simbench.testing import make_activations, random_orthogonal

torch.set_num_threads(1)

METRICS = {e.name: e.cls for e in build_registry().entries("metric") if e.plugin == "builtin_metrics"}
ACTIVATION = sorted(name for name, cls in METRICS.items() if cls.kind == "activation")


def _kw(metric, inputs):
    return {"inputs": inputs} if metric.needs_inputs else {}


# --------------------------------------------------------------------------
# k-NN ties
# --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["mutual_knn", "jaccard_knn"])
def test_knn_with_tied_neighbours_does_not_depend_on_probe_order(name):
    (a, b), _ = make_activations(5, n=40, widths=(6, 5))
    dup = torch.cat([torch.arange(28), torch.arange(12)])  # duplicated inputs tie at the k-th neighbour
    a, b = a[dup], b[dup]
    metric = METRICS[name](k=5)
    base = metric(a, b)
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        p = torch.randperm(40, generator=g)
        assert metric(a[p], b[p]) == pytest.approx(base, abs=1e-12)
        assert float(metric.pairwise([a[p], b[p]])[0, 1]) == pytest.approx(base, abs=1e-12)


@pytest.mark.parametrize("name", ["mutual_knn", "jaccard_knn"])
def test_knn_splits_ties_as_the_average_over_tie_breaks(name):
    # The metric's value is the mean over uniformly random tie-breaks of both representations.  With
    # independent tie-breaks the expected overlap is sum_j P(j in kNN_a(i)) P(j in kNN_b(i)), where j is in
    # for sure above the k-th similarity and with probability (free slots / tied) at it.  A brute force
    # over 2000 random tie-breaks checks that formula; the metric must then match it to rounding (a
    # deterministic tie-break, e.g. by index, is off by ~0.015 here).
    g = torch.Generator().manual_seed(3)
    a = torch.randint(0, 3, (14, 2), generator=g).double() + 1  # few distinct rows: many ties
    b = torch.randint(0, 3, (14, 2), generator=g).double() + 1
    k, n = 4, 14

    def cosine(x):
        z = x / x.norm(dim=1, keepdim=True)
        return (z @ z.T).numpy().round(12)

    def inclusion(x):
        """[n, n]: the probability that j is among i's k nearest under a random tie-break."""
        sim, p = cosine(x), np.zeros((n, n))
        for i in range(n):
            others = np.delete(np.arange(n), i)
            s = sim[i, others]
            kth = np.sort(s)[::-1][k - 1]
            sure, tied = s > kth, s == kth
            p[i, others[sure]] = 1.0
            p[i, others[tied]] = (k - sure.sum()) / tied.sum()
        return p

    def knn_sets(x, rng, trials):
        """[trials, n, n] membership of j in i's k nearest, each trial with its own random tie-break."""
        sim = cosine(x)
        others = np.array([[j for j in range(n) if j != i] for i in range(n)])  # [n, n-1]
        shape = (trials, n, n - 1)
        key = rng.random(shape)  # random tie-break
        # sort by similarity (descending), ties by the random key; one vectorised sort for every trial
        order = np.lexsort((key, np.broadcast_to(-sim[np.arange(n)[:, None], others], shape)), axis=-1)
        top = np.take_along_axis(np.broadcast_to(others, shape), order[..., :k], axis=-1)
        member = np.zeros((trials, n, n), dtype=bool)
        np.put_along_axis(member, top, True, axis=-1)
        return member

    o = (inclusion(a) * inclusion(b)).sum(1)  # expected overlap per input
    rng = np.random.default_rng(0)
    overlaps = (knn_sets(a, rng, 2000) & knn_sets(b, rng, 2000)).sum(-1)  # [trials, n]
    se = np.std(overlaps, axis=0) / math.sqrt(len(overlaps))
    assert (np.abs(overlaps.mean(0) - o) <= 5 * se + 1e-12).all(), (overlaps.mean(0), o, se)
    assert ((o % 1) != 0).any()  # ties matter for this data: some expected overlaps are fractional
    metric = METRICS[name](k=k)
    expected = np.mean(o / k) if name == "mutual_knn" else np.mean(o / (2 * k - o))
    assert metric(a, b) == pytest.approx(expected, abs=1e-9)
    assert float(metric.pairwise([a, b])[0, 1]) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("name,expected", [("mutual_knn", lambda k, n: k / (n - 1)),
                                           ("jaccard_knn", lambda k, n: (k * k / (n - 1)) / (2 * k - k * k / (n - 1)))])
def test_constant_representation_scores_the_documented_chance_level(name, expected):
    (a, b), _ = make_activations(2, n=31, widths=(6, 5))
    k, n = 5, 31
    metric = METRICS[name](k=k)
    constant = torch.full_like(a, 2.0)
    for x, y in ((constant, b), (b, constant), (constant, torch.zeros_like(b))):
        assert metric(x, y) == pytest.approx(expected(k, n), abs=1e-12)
        assert float(metric.pairwise([x, y])[0, 1]) == pytest.approx(expected(k, n), abs=1e-12)


# --------------------------------------------------------------------------
# RSA: no rounding
# --------------------------------------------------------------------------


def test_rsa_does_not_round_float32_distances():
    # all inputs close to one pattern: correlation distances ~1e-4, which 4-decimal rounding merged
    g = torch.Generator().manual_seed(0)
    base = torch.randn(1, 20, generator=g)
    a = (base + 0.01 * torch.randn(30, 20, generator=g)).float()
    b = torch.randn(30, 8, generator=g).float() + 0.3 * a[:, :8]
    ref = stats.spearmanr(pdist(a.double().numpy(), "correlation"), pdist(b.double().numpy(), "correlation")).statistic
    metric = METRICS["rsa"]()
    assert metric(a, b) == pytest.approx(ref, abs=1e-6)
    assert float(metric.pairwise([a, b])[0, 1]) == pytest.approx(ref, abs=1e-6)


# --------------------------------------------------------------------------
# Nuclear norms: ~1e-7, not ~1e-4
# --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["angular_shape", "procrustes"])
def test_pure_rotation_and_identity_give_distance_near_zero_in_float32(name):
    (a, _), _ = make_activations(7, n=200, widths=(16, 4))
    a = a.float()
    rotated = (a @ random_orthogonal(16, torch.Generator().manual_seed(1)).float()).float()
    metric = METRICS[name]()
    for y in (a, rotated):
        assert 0.0 <= metric(a, y) < 1e-6
        assert 0.0 <= float(metric.pairwise([a, y])[0, 1]) < 1e-6


def test_cca_of_a_rotated_copy_is_one_to_float32_precision():
    (a, _), _ = make_activations(8, n=200, widths=(12, 4))
    a = a.float()
    rotated = a @ random_orthogonal(12, torch.Generator().manual_seed(2)).float()
    assert METRICS["cca_mean"]()(a, rotated) == pytest.approx(1.0, abs=1e-6)


# --------------------------------------------------------------------------
# Unbiased / minibatch CKA of a degenerate representation: undefined, recorded
# --------------------------------------------------------------------------


def _constant_up_to_rounding(n: int, d: int) -> torch.Tensor:
    """One activation row repeated, each copy off by at most one unit in the last place
    (a collapsed model's rows computed in different batch orders)."""
    g = torch.Generator().manual_seed(4)
    row = torch.rand(1, d, generator=g) + 0.5
    wiggle = torch.randint(-1, 2, (n, d), generator=g).float()
    return (row * (1 + wiggle * torch.finfo(torch.float32).eps)).float()


@pytest.mark.parametrize("name", ["unbiased_cka", "minibatch_cka"])
@pytest.mark.parametrize("which", ["rounding noise", "exactly constant"])
def test_degenerate_representation_makes_unbiased_cka_undefined(name, which):
    (a, b), _ = make_activations(9, n=60, widths=(6, 5), dtype=torch.float32)
    bad = _constant_up_to_rounding(60, 6) if which == "rounding noise" else torch.full((60, 6), 0.3)
    metric = METRICS[name]()
    for x, y in ((bad, b), (a, bad)):
        with pytest.raises(MeasurementFailed, match="undefined"):
            metric(x, y)
    # all pairs: only the degenerate representation's row and column are undefined (NaN)
    matrix = metric.pairwise([a, bad, b, a])
    undefined = ~torch.isfinite(matrix)
    assert undefined[1].sum() == 4 and undefined[:, 1].sum() == 4 and undefined.sum() == 7
    assert matrix[0, 2] == pytest.approx(metric(a, b), abs=1e-6)  # well-defined pairs are unaffected
    assert 0.0 < metric(a, b) < 1.0
    with pytest.raises(MeasurementFailed, match="undefined for representation.*1"):
        metric.pairwise([a, bad])  # nothing left to compare


# --------------------------------------------------------------------------
# Scale before squaring: float32 of any finite scale
# --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ACTIVATION)
@pytest.mark.parametrize("scale", [1e20, 1e-20, 3e37])
def test_float32_inputs_of_any_scale_give_the_unscaled_value(name, scale):
    (a, b), inputs = make_activations(6, n=40, widths=(6, 5), dtype=torch.float32)
    inputs = inputs.float()
    metric = METRICS[name]()
    kw = _kw(metric, inputs)
    reference = metric(a, b, **kw)
    assert math.isfinite(reference)
    big = (a.double() * scale).float()
    assert torch.isfinite(big).all()
    value = metric(big, b, **kw)
    assert value == pytest.approx(reference, abs=1e-5)
    both = metric.pairwise([big, (b.double() * scale).float()], **kw)
    assert torch.isfinite(both).all()
    # relative float32 error of the scaled copy itself is ~1e-7
    assert float(both[0, 1]) == pytest.approx(reference, abs=1e-4)
    if metric.needs_inputs:
        assert metric(a, b, inputs=(inputs.double() * scale).float()) == pytest.approx(reference, abs=1e-5)
