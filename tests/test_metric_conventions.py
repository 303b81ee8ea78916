"""Issue 28 item 14: the metrics' conventions, each checked against an independently written formula (numpy,
written here from the papers), and PWCCA's one deterministic definition for the single-pair and all-pairs paths.

Where a convention departs from a reference library (rsatoolbox's dropping of constant probes, Kornblith's
RBF bandwidth), the formula here implements *our* convention and a second one the library's, to show that
the convention is what separates them.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from plugins.metrics import METRICS, PWCCA, RBFCKA, RSA, SVCCA, CCAMean, LinearCKA, UnbiasedCKA
from simbench.testing import PAIRWISE_CASES, check_pairwise, make_activations

TIGHT = 1e-12


def _reps(seed: int, n: int, widths: tuple[int, ...], relu: bool = False) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    latent = rng.standard_normal((n, 6))
    out = []
    for w in widths:
        x = latent @ rng.standard_normal((6, w)) + 0.7 * rng.standard_normal((n, w)) + rng.standard_normal(w)
        out.append(np.maximum(x, 0) if relu else x)
    return out


def _t(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64))


# --------------------------------------------------------------------------
# independent formulas (numpy)
# --------------------------------------------------------------------------


def _centre_gram(k: np.ndarray) -> np.ndarray:
    return k - k.mean(0, keepdims=True) - k.mean(1, keepdims=True) + k.mean()


def _cka_from_grams(k: np.ndarray, l_: np.ndarray) -> float:
    kc, lc = _centre_gram(k), _centre_gram(l_)
    return float((kc * lc).sum() / np.sqrt((kc * kc).sum() * (lc * lc).sum()))


def _sq_dists(x: np.ndarray) -> np.ndarray:
    sq = (x * x).sum(1)
    return np.maximum(sq[:, None] + sq[None, :] - 2 * x @ x.T, 0)


def _rbf_gram(x: np.ndarray, sigma2: float) -> np.ndarray:
    return np.exp(-_sq_dists(x) / (2 * sigma2))


def _sigma2_ours(x: np.ndarray, factor: float = 1.0) -> float:
    """Our convention: (factor x the median of the off-diagonal distances, each pair once)^2."""
    d2 = _sq_dists(x - x.mean(0))
    iu = np.triu_indices(len(x), 1)
    return float((factor * np.median(np.sqrt(d2[iu]))) ** 2)


def _sigma2_kornblith(x: np.ndarray, threshold: float = 1.0) -> float:
    """Kornblith et al.'s reference: threshold^2 x the median of all n^2 squared distances, diagonal included."""
    return float(threshold**2 * np.median(_sq_dists(x)))


def _avg_ranks(v: np.ndarray) -> np.ndarray:
    _, inverse, counts = np.unique(v, return_inverse=True, return_counts=True)
    starts = np.cumsum(counts) - counts
    return (starts + (counts - 1) / 2)[inverse]


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = _avg_ranks(a), _avg_ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra * rb).sum() / np.sqrt((ra * ra).sum() * (rb * rb).sum()))


def _corr_rdm(x: np.ndarray, constant_rows: str) -> np.ndarray:
    """Upper triangle of 1 - Pearson r between probes; a constant probe's r is 0 ('zero') or NaN ('nan')."""
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.corrcoef(x)
    if constant_rows == "zero":
        r = np.nan_to_num(r, nan=0.0)
    iu = np.triu_indices(len(x), 1)
    return 1.0 - r[iu]


def _rsa_ours(x: np.ndarray, y: np.ndarray) -> float:
    return _spearman(_corr_rdm(x, "zero"), _corr_rdm(y, "zero"))


def _rsa_rsatoolbox_style(x: np.ndarray, y: np.ndarray) -> float:
    """rsatoolbox's correlation RDM compared by Spearman: entries undefined in either RDM are dropped."""
    a, b = _corr_rdm(x, "nan"), _corr_rdm(y, "nan")
    keep = np.isfinite(a) & np.isfinite(b)
    return _spearman(a[keep], b[keep])


def _hsic1(k: np.ndarray, l_: np.ndarray) -> float:
    """Song et al. (2012)'s unbiased HSIC estimator."""
    n = len(k)
    k, l_ = k.copy(), l_.copy()
    np.fill_diagonal(k, 0)
    np.fill_diagonal(l_, 0)
    one = np.ones(n)
    return float(
        (np.trace(k @ l_) + (one @ k @ one) * (one @ l_ @ one) / ((n - 1) * (n - 2)) - 2 * (one @ k @ l_ @ one) / (n - 2))
        / (n * (n - 3))
    )


def _unbiased_cka_raw(x: np.ndarray, y: np.ndarray) -> float:
    """The reference's ratio, negative when the cross HSIC estimate is."""
    xc, yc = x - x.mean(0), y - y.mean(0)
    k, l_ = xc @ xc.T, yc @ yc.T
    return _hsic1(k, l_) / np.sqrt(_hsic1(k, k) * _hsic1(l_, l_))


def _basis(x: np.ndarray, variance_kept: float | None = None) -> np.ndarray:
    u, s, _ = np.linalg.svd(x - x.mean(0), full_matrices=False)
    r = int((s > s.max() * max(x.shape) * np.finfo(float).eps).sum())
    if variance_kept is not None:
        share = np.cumsum(s[:r] ** 2) / (s[:r] ** 2).sum()
        r = int(np.argmax(share >= variance_kept - 1e-12)) + 1
    return u[:, :r]


def _mean_cca(x: np.ndarray, y: np.ndarray, variance_kept: float | None = None) -> float:
    qx, qy = _basis(x, variance_kept), _basis(y, variance_kept)
    return float(np.linalg.svd(qx.T @ qy, compute_uv=False).sum() / min(qx.shape[1], qy.shape[1]))


def _pwcca_plain(x: np.ndarray, y: np.ndarray) -> float:
    """Morcos et al.: canonical correlations weighted by the summed |projections| of X's centred units on
    X's unit-norm canonical variates (well defined when no correlation is repeated)."""
    xc = x - x.mean(0)
    qx, qy = _basis(x), _basis(y)
    u, rho, _ = np.linalg.svd(qx.T @ qy)
    k = min(qx.shape[1], qy.shape[1])
    variates = qx @ u[:, :k]
    weights = np.abs(variates.T @ xc).sum(1)
    return float((weights * rho[:k]).sum() / weights.sum())


# --------------------------------------------------------------------------
# conventions that match a reference formula
# --------------------------------------------------------------------------


@pytest.mark.parametrize("widths", [(8, 64), (64, 8), (32, 32)])
def test_linear_cka_is_the_gram_formula(widths):
    x, y = _reps(0, 300, widths)
    xc, yc = x - x.mean(0), y - y.mean(0)
    assert abs(LinearCKA()(_t(x), _t(y)) - _cka_from_grams(xc @ xc.T, yc @ yc.T)) < TIGHT


@pytest.mark.parametrize("widths", [(8, 64), (64, 512)])
def test_procrustes_and_angular_shape_are_the_nuclear_norm_formulas(widths):
    from plugins.metrics import AngularShape, Procrustes

    x, y = _reps(14, 200, widths)
    xc, yc = x - x.mean(0), y - y.mean(0)
    xc, yc = xc / np.linalg.norm(xc), yc / np.linalg.norm(yc)
    nuclear = np.linalg.svd(xc.T @ yc, compute_uv=False).sum()
    assert abs(Procrustes()(_t(x), _t(y)) - (2 - 2 * nuclear)) < TIGHT
    assert abs(AngularShape()(_t(x), _t(y)) - np.arccos(min(nuclear, 1.0))) < 1e-10


@pytest.mark.parametrize("factor", [1.0, 0.5])
@pytest.mark.parametrize("widths", [(8, 64), (64, 8)])
def test_rbf_cka_is_kornblith_rbf_cka_with_our_bandwidth(widths, factor):
    x, y = _reps(1, 301, widths)  # odd count of pairs and even: 301 * 300 / 2 is even
    expected = _cka_from_grams(_rbf_gram(x, _sigma2_ours(x, factor)), _rbf_gram(y, _sigma2_ours(y, factor)))
    got = RBFCKA(bandwidth_factor=factor)(_t(x), _t(y))
    assert abs(got - expected) < TIGHT
    assert abs(RBFCKA(bandwidth_factor=factor).pairwise([_t(x), _t(y)])[0, 1].item() - expected) < TIGHT


def test_rbf_cka_bandwidth_differs_from_kornblith_median_with_the_diagonal():
    # the reference's median of all n^2 squared distances counts the n zeros of the diagonal: a smaller
    # bandwidth, so a (slightly) different value -- the convention is what separates the two
    x, y = _reps(2, 200, (8, 64))
    kornblith = _cka_from_grams(_rbf_gram(x, _sigma2_kornblith(x)), _rbf_gram(y, _sigma2_kornblith(y)))
    assert _sigma2_kornblith(x) < _sigma2_ours(x)
    assert abs(RBFCKA()(_t(x), _t(y)) - kornblith) > 1e-9


@pytest.mark.parametrize("widths", [(8, 64), (64, 512)])
def test_rsa_is_correlation_rdm_spearman_without_constant_probes(widths):
    x, y = _reps(3, 150, widths)
    expected = _rsa_rsatoolbox_style(x, y)
    assert abs(expected - _rsa_ours(x, y)) < TIGHT  # no constant probe: the two conventions coincide
    assert abs(RSA()(_t(x), _t(y)) - expected) < TIGHT
    assert abs(RSA().pairwise([_t(x), _t(y)])[0, 1].item() - expected) < TIGHT


def test_rsa_keeps_constant_probes_at_correlation_zero_where_rsatoolbox_drops_them():
    x, y = _reps(4, 120, (16, 24), relu=True)
    x[[3, 50, 77]] = 0.0  # dead probes: every unit inactive
    y[[50, 90]] = 0.0
    ours = RSA()(_t(x), _t(y))
    assert abs(ours - _rsa_ours(x, y)) < TIGHT
    assert abs(ours - _rsa_rsatoolbox_style(x, y)) > 1e-4


def test_unbiased_cka_is_song_et_al_hsic1_where_positive():
    x, y = _reps(5, 60, (8, 64))
    expected = _unbiased_cka_raw(x, y)
    assert expected > 0
    assert abs(UnbiasedCKA()(_t(x), _t(y)) - expected) < TIGHT
    assert abs(UnbiasedCKA().pairwise([_t(x), _t(y)])[0, 1].item() - expected) < TIGHT


def test_unbiased_cka_clips_a_negative_cross_hsic_to_zero():
    rng = np.random.default_rng(6)
    for _ in range(50):  # independent features at small n: the estimate is negative about half the time
        x, y = rng.standard_normal((12, 3)), rng.standard_normal((12, 3))
        if _unbiased_cka_raw(x, y) < -1e-3:
            break
    else:  # pragma: no cover
        pytest.fail("no negative unbiased HSIC found")
    assert UnbiasedCKA()(_t(x), _t(y)) == 0.0
    assert UnbiasedCKA().pairwise([_t(x), _t(y)])[0, 1].item() == 0.0


@pytest.mark.parametrize("widths", [(8, 64), (64, 32)])
def test_mean_cca_and_svcca_follow_the_papers(widths):
    x, y = _reps(7, 400, widths)
    assert abs(CCAMean()(_t(x), _t(y)) - _mean_cca(x, y)) < TIGHT
    # SVCCA: the fewest leading PCs whose cumulative share of the variance reaches 0.99 (not repsim's rule)
    assert abs(SVCCA()(_t(x), _t(y)) - _mean_cca(x, y, 0.99)) < TIGHT
    assert abs(SVCCA(variance_kept=0.9)(_t(x), _t(y)) - _mean_cca(x, y, 0.9)) < TIGHT


def test_svcca_does_not_depend_on_the_activations_scale():
    # repsim compares the normalised cumulative variance with 0.99 x the *total* variance, so how many
    # components it keeps changes with the scale; the paper's rule (ours) does not
    x, y = _reps(8, 300, (16, 32))
    assert abs(SVCCA()(_t(x), _t(y)) - SVCCA()(_t(1e3 * x), _t(y))) < 1e-12


# --------------------------------------------------------------------------
# PWCCA: one deterministic definition
# --------------------------------------------------------------------------


@pytest.mark.parametrize("widths", [(8, 64, 20), (30, 12, 40)])
def test_pwcca_outside_the_ill_defined_regime_is_the_plain_definition(widths):
    reps = _reps(9, 200, widths)
    pw = PWCCA().pairwise([_t(r) for r in reps])
    assert not PWCCA().ill_defined_pairs([_t(r) for r in reps]).any()
    for i, x in enumerate(reps):
        for j, y in enumerate(reps):
            if i != j:
                expected = _pwcca_plain(x, y)
                assert abs(PWCCA()(_t(x), _t(y)) - expected) < TIGHT
                assert abs(pw[i, j].item() - expected) < TIGHT


@pytest.mark.parametrize(("n", "widths"), [(50, (30, 40, 20)), (100, (60, 70, 8, 130)), (40, (8, 16, 5, 30))])
def test_pwcca_call_and_pairwise_agree_in_the_ill_defined_regime(n, widths):
    # d1 + d2 > n - 1: the centred spaces share dimensions and several canonical correlations are 1; the
    # two paths' SVDs pick different bases of those variates (they were 1e-4 - 1e-3 apart in float64)
    reps = [_t(r) for r in _reps(10, n, widths)]
    metric = PWCCA()
    bad = metric.ill_defined_pairs(reps)
    assert bad.any()
    pw = metric.pairwise(reps)
    loop = torch.tensor([[metric(a, b) for b in reps] for a in reps], dtype=torch.float64)
    assert float((pw - loop).abs().max()) < 1e-12
    # the order of the models (other tiles, other padding) changes nothing either
    order = list(reversed(range(len(reps))))
    again = metric.pairwise([reps[k] for k in order])
    assert float((again - pw[order][:, order]).abs().max()) < 1e-12
    assert torch.allclose(pw.diagonal(), torch.ones(len(reps), dtype=torch.float64), atol=1e-12)


def test_pwcca_in_the_ill_defined_regime_does_not_depend_on_the_basis_of_the_shared_space():
    # an orthogonal rotation of Y changes the SVD's arbitrary basis of the shared variates, not the value
    n = 60
    x, y = _reps(11, n, (40, 35))
    q, _ = np.linalg.qr(np.random.default_rng(12).standard_normal((35, 35)))
    metric = PWCCA()
    assert metric.ill_defined_pairs([_t(x), _t(y)])[0, 1]
    assert abs(metric(_t(x), _t(y)) - metric(_t(x), _t(y @ q))) < 1e-12


def test_pwcca_flags_the_models_of_the_ill_defined_regime():
    reps = [_t(r) for r in _reps(13, 50, (10, 45, 8, 20))]
    metric = PWCCA()
    bad = metric.ill_defined_pairs(reps)
    # centred ranks: 10, 45, 8, 20 (n - 1 = 49): only pairs with the 45-wide model exceed n - 1
    expected = torch.zeros(4, 4, dtype=torch.bool)
    expected[1, [0, 2, 3]] = expected[[0, 2, 3], 1] = True
    assert torch.equal(bad, expected)
    assert metric.matrix_flags(reps, ids=["a", "b", "c", "d"]) == ["ill_defined:a", "ill_defined:b",
                                                                   "ill_defined:c", "ill_defined:d"]
    assert metric.matrix_flags(reps[:1] + reps[2:]) == []
    # the other built-ins note nothing
    assert LinearCKA().matrix_flags(reps) == []


# --------------------------------------------------------------------------
# the conformance kit checks call == pairwise for every built-in, d1 + d2 > n included
# --------------------------------------------------------------------------


def test_the_kit_has_a_case_where_the_spaces_must_share_dimensions():
    assert any(sorted(widths)[-1] + sorted(widths)[-2] > n - 1 for n, widths in PAIRWISE_CASES)


@pytest.mark.parametrize("cls", METRICS, ids=[c.name for c in METRICS])
def test_every_builtin_metric_call_equals_pairwise_in_float64(cls):
    # far tighter than the kit's default 1e-5; angular_shape's arccos turns a 1e-16 cosine into ~2e-8
    check_pairwise(cls(), atol=1e-7 if cls.name == "angular_shape" else 1e-12)


def test_the_kit_catches_a_pairwise_that_differs_in_the_shared_regime():
    from simbench.testing import ConformanceError

    class Drifting(PWCCA):
        name = "drifting_pwcca"

        def pairwise(self, reps, **kwargs):
            out = super().pairwise(reps, **kwargs)
            n = reps[0].shape[0]
            ranks = torch.tensor([min(r.shape[1], n - 1) for r in reps])
            return out + 1e-4 * ((ranks[:, None] + ranks[None, :]) > n - 1)  # only in the regime

    with pytest.raises(ConformanceError, match="n = 20"):
        check_pairwise(Drifting())
    reps, _ = make_activations(0, n=20, widths=(14, 12))
    assert PWCCA().ill_defined_pairs(reps)[0, 1]
