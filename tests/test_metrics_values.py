"""Known values, and every metric against an independent reference computed another way
(Gram-matrix formulas, scipy, scikit-learn)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import linalg as sla
from scipy import stats
from scipy.spatial.distance import pdist, squareform

from simbench.registry import build_registry
from simbench.testing import make_activations

METRICS = {e.name: e.cls for e in build_registry().entries("metric") if e.plugin == "builtin_metrics"}


def gaussian(n: int, d: int, seed: int) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def related_pair(seed: int = 0, n: int = 80, widths=(9, 7)):
    (a, b), inputs = make_activations(seed, n=n, widths=widths, input_dim=11)
    return a, b, inputs


def centering(n: int) -> np.ndarray:
    return np.eye(n) - np.ones((n, n)) / n


def gram_cka(k: np.ndarray, l: np.ndarray) -> float:
    """CKA from Gram matrices with the explicit centring matrix (Kornblith et al., eq. 2 of seed 001)."""
    h = centering(k.shape[0])
    kc, lc = h @ k @ h, h @ l @ h
    return float(np.sum(kc * lc) / np.sqrt(np.sum(kc * kc) * np.sum(lc * lc)))


def hsic1(k: np.ndarray, l: np.ndarray) -> float:
    """Song et al. (2012) unbiased HSIC, written exactly as in METHODS.md."""
    n = k.shape[0]
    kt, lt = k.copy(), l.copy()
    np.fill_diagonal(kt, 0)
    np.fill_diagonal(lt, 0)
    one = np.ones(n)
    trace = np.trace(kt @ lt)
    sums = (one @ kt @ one) * (one @ lt @ one) / ((n - 1) * (n - 2))
    cross = 2 * one @ kt @ lt @ one / (n - 2)
    return float((trace + sums - cross) / (n * (n - 3)))


# --------------------------------------------------------------------------
# CKA family
# --------------------------------------------------------------------------


@pytest.mark.parametrize("d", [7, 150])  # feature form, and the compressed wide case (d > n)
def test_linear_cka_gram_form_equals_feature_form(d):
    a, b = gaussian(60, d, 1), gaussian(60, d, 2) + 0.5 * gaussian(60, d, 1)
    ref = gram_cka(a.numpy() @ a.numpy().T, b.numpy() @ b.numpy().T)
    metric = METRICS["linear_cka"]()
    assert abs(metric(a, b) - ref) < 1e-5
    assert abs(float(metric.pairwise([a, b])[0, 1]) - ref) < 1e-5


def test_biased_cka_of_independent_features_is_about_0_2_and_unbiased_is_near_0():
    # METHODS.md: n = 32, moderate d -> biased ~0.20, unbiased ~0.02; 40 models give 780 independent-ish pairs
    reps = [gaussian(32, 8, s) for s in range(40)]
    off = ~torch.eye(40, dtype=torch.bool)
    biased = METRICS["linear_cka"]().pairwise(reps)[off]
    unbiased = METRICS["unbiased_cka"]().pairwise(reps)[off]
    assert 0.17 < float(biased.mean()) < 0.23
    assert float(unbiased.mean()) < 0.04
    assert float(unbiased.min()) >= 0.0  # negative estimates are clipped, never NaN


def test_unbiased_cka_equals_the_gram_form_estimator():
    a, b, _ = related_pair(3, n=30)
    k, l = a.numpy() @ a.numpy().T, b.numpy() @ b.numpy().T  # uncentred: HSIC1 is translation invariant
    ref = hsic1(k, l) / math.sqrt(hsic1(k, k) * hsic1(l, l))
    assert ref > 0.1
    assert abs(METRICS["unbiased_cka"]()(a, b) - ref) < 1e-8


@pytest.mark.parametrize("name", ["unbiased_cka", "minibatch_cka"])
def test_unbiased_hsic_needs_four_inputs(name):
    metric = METRICS[name]()
    x = gaussian(3, 4, 0)
    with pytest.raises(ValueError, match="at least 4"):
        metric(x, x)
    with pytest.raises(ValueError, match="at least 4"):
        metric.pairwise([x, x])
    assert math.isfinite(metric(gaussian(4, 4, 0), gaussian(4, 3, 1)))


def test_minibatch_cka_is_nguyen_et_al_averaged_over_batch_assignments():
    # HSIC1 is a U-statistic: averaged over every batch of size B it is HSIC1 of the whole set (exactly)
    import itertools

    a, b, _ = related_pair(4, n=8)
    k, l = a.numpy() @ a.numpy().T, b.numpy() @ b.numpy().T
    batches = [list(s) for s in itertools.combinations(range(8), 5)]
    mean = np.mean([hsic1(k[np.ix_(s, s)], l[np.ix_(s, s)]) for s in batches])
    assert mean == pytest.approx(hsic1(k, l), rel=1e-10, abs=1e-12)
    # so the order-free minibatch CKA (ratio of expected batch sums) is unbiased CKA, for any batch size or seed
    a, b, _ = related_pair(4, n=50)
    unbiased = METRICS["unbiased_cka"]()(a, b)
    for params in ({"batch_size": 8, "seed": 7}, {"batch_size": 64}):
        metric = METRICS["minibatch_cka"](**params)
        assert abs(metric(a, b) - unbiased) < 1e-12
        assert abs(float(metric.pairwise([a, b])[0, 1]) - unbiased) < 1e-12
    # one seeded partition (the old definition) is not a function of the probe set: reordering moves it
    def one_partition(x, y, seed):
        perm = torch.randperm(50, generator=torch.Generator().manual_seed(seed))
        sums = np.zeros(3)
        for idx in torch.tensor_split(perm, 50 // 8):
            kk, ll = x[idx].numpy() @ x[idx].numpy().T, y[idx].numpy() @ y[idx].numpy().T
            sums += [hsic1(kk, ll), hsic1(kk, kk), hsic1(ll, ll)]
        return sums[0] / math.sqrt(sums[1] * sums[2])

    order = torch.randperm(50, generator=torch.Generator().manual_seed(1))
    assert abs(one_partition(a, b, 7) - one_partition(a[order], b[order], 7)) > 1e-3


def test_rbf_cka_matches_an_explicit_gram_computation():
    a, b, _ = related_pair(5, n=45)
    factor = 0.7

    def kernel(x):
        d2 = squareform(pdist(x, "sqeuclidean"))
        sigma = factor * np.median(np.sqrt(pdist(x, "sqeuclidean")))
        return np.exp(-d2 / (2 * sigma**2))

    ref = gram_cka(kernel(a.numpy()), kernel(b.numpy()))
    metric = METRICS["rbf_cka"](bandwidth_factor=factor)
    assert abs(metric(a, b) - ref) < 1e-10
    assert abs(float(metric.pairwise([a, b])[0, 1]) - ref) < 1e-10


def dcka_reference(x: np.ndarray, y: np.ndarray, x0: np.ndarray) -> float:
    """Cui et al. (2022) deconfounded CKA with dense n x n matrices (seed 001, 2.1.3)."""
    h = centering(x.shape[0])

    def deconfound(k, k0):
        alpha = np.sum(k0 * k) / np.sum(k0 * k0)
        w, v = np.linalg.eigh(k - alpha * k0)
        return (v * np.clip(w, 0, None)) @ v.T

    k0 = h @ x0 @ x0.T @ h
    return gram_cka(deconfound(h @ x @ x.T @ h, k0), deconfound(h @ y @ y.T @ h, k0))


@pytest.mark.parametrize("n", [60, 15])  # low-rank route (d + d0 < n), and the dense n x n route
def test_dcka_matches_the_dense_reference(n):
    a, b, inputs = related_pair(6, n=n)
    ref = dcka_reference(a.numpy(), b.numpy(), inputs.numpy())
    metric = METRICS["dcka"]()
    assert abs(metric(a, b, inputs=inputs) - ref) < 1e-8
    assert abs(float(metric.pairwise([a, b], inputs=inputs)[0, 1]) - ref) < 1e-8


def test_dcka_removes_similarity_inherited_from_the_inputs():
    # inputs with three dominant directions: any random read-out of them shares that structure
    x0 = gaussian(200, 20, 0) * torch.tensor([5.0] * 3 + [0.5] * 17, dtype=torch.float64)
    a = x0 @ gaussian(20, 10, 1) + 0.3 * gaussian(200, 10, 2)
    b = x0 @ gaussian(20, 10, 3) + 0.3 * gaussian(200, 10, 4)
    cka, dcka = METRICS["linear_cka"]()(a, b), METRICS["dcka"]()(a, b, inputs=x0)
    assert cka > 0.5 and dcka < 0.15, (cka, dcka)
    with pytest.raises(ValueError, match="needs the probe inputs"):
        METRICS["dcka"]()(a, b)


def torch_mlp_weights(seed: int, widths=(784, 32, 32, 32, 32, 3)) -> list[torch.Tensor]:
    torch.manual_seed(seed)
    layers = [torch.nn.Linear(i, o) for i, o in zip(widths[:-1], widths[1:])]
    return [layer.weight.detach().T.contiguous() for layer in layers]  # [in, out], input side first


def test_wcka_of_random_networks_is_near_0_and_of_a_network_with_itself_is_1():
    nets = [torch_mlp_weights(s) for s in range(8)]
    metric = METRICS["wcka"]()
    matrix = metric.pairwise(nets)
    off = ~torch.eye(8, dtype=torch.bool)
    assert float(matrix[off].mean()) < 0.05 and float(matrix[off].max()) < 0.2
    assert torch.allclose(matrix.diagonal(), torch.ones(8, dtype=torch.float64), atol=1e-6)
    assert abs(metric(nets[0], [w.clone() for w in nets[0]]) - 1.0) < 1e-6


def test_wcka_is_eq5_on_the_chain_product():
    nets = [torch_mlp_weights(s, (20, 6, 5, 3)) for s in (0, 1)]
    w1, w2 = (np.linalg.multi_dot([w.double().numpy() for w in net]) for net in nets)
    ref = np.linalg.norm(w2.T @ w1) ** 2 / (np.linalg.norm(w1.T @ w1) * np.linalg.norm(w2.T @ w2))
    assert abs(METRICS["wcka"]()(*nets) - ref) < 1e-6


def test_wcka_refuses_mismatched_shapes():
    metric = METRICS["wcka"]()
    good = torch_mlp_weights(0, (20, 6, 3))
    with pytest.raises(ValueError, match="weight matrix 1 has 5 inputs"):
        metric([torch.randn(20, 6), torch.randn(5, 3)], good)
    with pytest.raises(ValueError, match="same input size"):
        metric.pairwise([good, torch_mlp_weights(0, (21, 6, 3))])


# --------------------------------------------------------------------------
# Shape metrics
# --------------------------------------------------------------------------


def test_procrustes_of_a_rotated_scaled_translated_copy_is_0():
    x = gaussian(100, 12, 0)
    q, _ = torch.linalg.qr(gaussian(12, 12, 1))
    y = 3.0 * x @ q + 5.0
    assert abs(METRICS["procrustes"]()(x, y)) < 1e-10
    assert abs(METRICS["angular_shape"]()(x, y)) < 1e-6
    assert float(METRICS["procrustes"]().pairwise([x, y]).abs().max()) < 1e-10


def test_procrustes_equals_the_residual_of_scipys_orthogonal_procrustes():
    a, b, _ = related_pair(7, widths=(8, 8))

    def normalise(x):
        x = x - x.mean(0)
        return x / np.linalg.norm(x)

    xa, xb = normalise(a.numpy()), normalise(b.numpy())
    rotation, _ = sla.orthogonal_procrustes(xb, xa)
    ref = np.linalg.norm(xb @ rotation - xa) ** 2
    assert abs(METRICS["procrustes"]()(a, b) - ref) < 1e-10
    # the angular metric is the arc whose chord is the Procrustes distance
    assert abs(METRICS["angular_shape"]()(a, b) - math.acos(1 - ref / 2)) < 1e-8


# --------------------------------------------------------------------------
# CCA family
# --------------------------------------------------------------------------


def test_cca_mean_equals_mean_cosine_of_scipys_principal_angles():
    a, b, _ = related_pair(8)
    ac, bc = (x.numpy() - x.numpy().mean(0) for x in (a, b))
    ref = float(np.mean(np.cos(sla.subspace_angles(ac, bc))))
    assert abs(METRICS["cca_mean"]()(a, b) - ref) < 1e-10


def test_svcca_is_cca_on_the_leading_principal_components():
    a, b, _ = related_pair(9, widths=(12, 10))

    def top_pcs(x, kept):
        xc = x - x.mean(0)
        u, s, _ = np.linalg.svd(xc, full_matrices=False)
        k = int(np.searchsorted(np.cumsum(s**2) / np.sum(s**2), kept) + 1)
        return u[:, :k] * s[:k]

    ref = float(np.mean(np.cos(sla.subspace_angles(top_pcs(a.numpy(), 0.9), top_pcs(b.numpy(), 0.9)))))
    assert abs(METRICS["svcca"](variance_kept=0.9)(a, b) - ref) < 1e-10
    assert METRICS["svcca"](variance_kept=1.0)(a, b) == pytest.approx(METRICS["cca_mean"]()(a, b), abs=1e-10)


def pwcca_reference(x: np.ndarray, y: np.ndarray) -> float:
    """Morcos et al. (2018) through covariance matrices (no QR): whiten, SVD, weight by |<h_i, x_j>|."""
    x, y = x - x.mean(0), y - y.mean(0)

    def inv_sqrt(s):
        w, v = np.linalg.eigh(s)
        return (v / np.sqrt(w)) @ v.T

    sxx, syy, sxy = x.T @ x, y.T @ y, x.T @ y
    u, rho, _ = np.linalg.svd(inv_sqrt(sxx) @ sxy @ inv_sqrt(syy))
    k = min(x.shape[1], y.shape[1])
    variates = x @ inv_sqrt(sxx) @ u[:, :k]  # orthonormal canonical variates of x
    weights = np.abs(variates.T @ x).sum(axis=1)
    return float(np.sum(weights * rho[:k]) / np.sum(weights))


def test_pwcca_matches_the_covariance_form_and_is_asymmetric():
    a, b, _ = related_pair(10)
    metric = METRICS["pwcca"]()
    ab, ba = metric(a, b), metric(b, a)
    assert abs(ab - pwcca_reference(a.numpy(), b.numpy())) < 1e-8
    assert abs(ba - pwcca_reference(b.numpy(), a.numpy())) < 1e-8
    assert abs(ab - ba) > 1e-3
    matrix = metric.pairwise([a, b])
    assert abs(float(matrix[0, 1]) - ab) < 1e-8 and abs(float(matrix[1, 0]) - ba) < 1e-8


def test_cca_correlations_are_one_when_n_does_not_exceed_the_rank():
    # a documented property, not a bug: with n <= d the centred spaces coincide
    assert METRICS["cca_mean"]()(gaussian(10, 12, 0), gaussian(10, 12, 1)) == pytest.approx(1.0, abs=1e-8)


# --------------------------------------------------------------------------
# RSA, regression, neighbours
# --------------------------------------------------------------------------


def test_rsa_equals_scipy_spearman_of_correlation_distances():
    a, b, _ = related_pair(11, n=50)
    ref = stats.spearmanr(pdist(a.numpy(), "correlation"), pdist(b.numpy(), "correlation")).statistic
    assert abs(METRICS["rsa"]()(a, b) - ref) < 1e-10
    assert abs(float(METRICS["rsa"]().pairwise([a, b])[0, 1]) - ref) < 1e-10


def test_rsa_handles_ties_like_scipy():
    a, b, _ = related_pair(12, n=30)
    a = torch.relu(a - a.mean(0))  # ReLU activations: many zero rows -> tied distances
    a[:6] = 0
    da = pdist(a.numpy(), "correlation")
    da[np.isnan(da)] = 1.0  # scipy leaves zero-variance rows undefined; simbench defines r = 0
    ref = stats.spearmanr(np.round(da, 9), pdist(b.numpy(), "correlation")).statistic
    assert abs(METRICS["rsa"]()(a, b) - ref) < 1e-10


def test_linear_regression_r2_equals_sklearn():
    from sklearn.linear_model import LinearRegression
    from sklearn.metrics import r2_score

    a, b, _ = related_pair(13)
    x, y = a.numpy(), b.numpy()
    prediction = LinearRegression().fit(y, x).predict(y)  # predict the first argument from the second
    ref = r2_score(x, prediction, multioutput="variance_weighted")
    metric = METRICS["linear_regression_r2"]()
    assert abs(metric(a, b) - ref) < 1e-10
    assert abs(float(metric.pairwise([a, b])[0, 1]) - ref) < 1e-10


@pytest.mark.parametrize("name", ["mutual_knn", "jaccard_knn"])
def test_knn_overlap_equals_sklearn_neighbours(name):
    from sklearn.neighbors import NearestNeighbors

    a, b, _ = related_pair(14, n=70)
    k = 7

    def neighbours(x):
        idx = NearestNeighbors(n_neighbors=k + 1, metric="cosine").fit(x).kneighbors(x, return_distance=False)
        return [set(row) - {i} if i in row else set(row[:k]) for i, row in enumerate(idx)]

    na, nb = neighbours(a.numpy()), neighbours(b.numpy())
    if name == "mutual_knn":
        ref = np.mean([len(p & q) / k for p, q in zip(na, nb)])
    else:
        ref = np.mean([len(p & q) / len(p | q) for p, q in zip(na, nb)])
    metric = METRICS[name](k=k)
    assert abs(metric(a, b) - ref) < 1e-12
    assert abs(float(metric.pairwise([a, b])[0, 1]) - ref) < 1e-12


def test_knn_needs_more_inputs_than_neighbours():
    with pytest.raises(ValueError, match="more than 10 probe inputs"):
        METRICS["mutual_knn"]()(gaussian(10, 3, 0), gaussian(10, 3, 1))
