from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from simbench_plugins.benchmarks.functional_agreement import stats


def test_pearson_and_spearman_match_scipy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=40)
    y = 0.5 * x + rng.normal(size=40)
    r, rho = stats.pearson(x, y), stats.spearman(x, y)
    assert r.r == pytest.approx(sps.pearsonr(x, y).statistic, abs=1e-12)
    assert rho.r == pytest.approx(sps.spearmanr(x, y).statistic, abs=1e-12)
    assert r.n == rho.n == 40


def test_fisher_interval_by_hand():
    # r = 0.5, n = 28: z = 0.549306, se = 1/5 = 0.2
    lo, hi = stats.fisher_interval(0.5, 28)
    z = 0.5 * math.log(1.5 / 0.5)
    assert lo == pytest.approx(math.tanh(z - 1.959964 * 0.2), abs=1e-6)
    assert hi == pytest.approx(math.tanh(z + 1.959964 * 0.2), abs=1e-6)
    assert lo == pytest.approx(0.1560, abs=1e-3) and hi == pytest.approx(0.7357, abs=1e-3)
    # p from z * sqrt(n-3) = 2.7465 -> two-sided 0.00602
    assert stats.fisher_p(0.5, 28) == pytest.approx(0.006024, abs=1e-5)


def test_degenerate_inputs_are_defined():
    c = stats.pearson(np.ones(10), np.arange(10.0))
    assert c.r == 0.0 and c.p == 1.0
    assert stats.fisher_interval(0.3, 3) == (-1.0, 1.0)


def test_mean_fisher_z_and_upper():
    assert stats.mean_fisher_z([0.5, 0.5]) == pytest.approx(0.5)
    assert stats.mean_fisher_z([0.0, 0.9]) < 0.45 + 0.2  # averaged in z space, not r space
    m = np.arange(16.0).reshape(4, 4)
    assert list(stats.upper(m)) == [1, 2, 3, 6, 7, 11]


# ----------------------------------------------------------------------------
# Dependent correlations: published worked examples
# ----------------------------------------------------------------------------


def test_steiger_1980_case_a():
    # Steiger (1980), Psychol. Bull. 87, p. 249, case A: r_jk = .4, r_jh = .5, r_kh = .1, n = 103.
    # The paper prints Z* = -.8913 from a covariance rounded to .0042; the unrounded eq. 14 gives -.88872.
    t = stats.steiger_z(0.4, 0.5, 0.1, 103)
    assert t.z == pytest.approx(-0.8887185, abs=1e-6)
    assert t.z == pytest.approx(-0.8913, abs=0.005)
    assert t.p == pytest.approx(2 * sps.norm.sf(0.8887185), abs=1e-6)
    assert t.mark == "n.s."
    # depcor (Silver, Hittner & May 2006, Appl. Psychol. Meas. 30, 152): r = .3, .4, r12 = .5, n = 100
    t = stats.steiger_z(0.3, 0.4, 0.5, 100)
    assert round(t.z, 4) == -1.0718 and round(t.p, 4) == 0.2838


def test_meng_rosenthal_rubin_1992_example():
    # Meng, Rosenthal & Rubin (1992), Psychol. Bull. 111, 172-175, worked example: n = 15,
    # r1 = .63, r2 = -.03, r12 = -.19 -> Z = 1.68, one-sided p = .047, 95 % CI of z1 - z2 = (-.129, 1.671).
    t = stats.meng_z(0.63, -0.03, -0.19, 15)
    assert round(t.z, 2) == 1.68
    assert round(t.p / 2, 3) == 0.047
    assert t.ci_low == pytest.approx(-0.129, abs=5e-4) and t.ci_high == pytest.approx(1.671, abs=1.5e-3)
    # May & Hittner (1997), Psychol. Rep. 80, 475-480: r1 = .5, r2 = .2, n = 50, r12 = 0 ... .8
    published = [1.62, 1.70, 1.80, 1.91, 2.06, 2.24, 2.50, 2.87, 3.50]
    for r12, z in zip(np.arange(9) / 10, published, strict=True):
        assert stats.meng_z(0.5, 0.2, r12, 50).z == pytest.approx(z, abs=0.006)


def test_dependent_tests_are_antisymmetric_and_defined_for_identical_metrics():
    for method in ("steiger", "meng"):
        a = stats.compare_dependent(0.7, 0.4, 0.3, 60, method)
        b = stats.compare_dependent(0.4, 0.7, 0.3, 60, method)
        assert a.z == pytest.approx(-b.z) and a.p == pytest.approx(b.p) and a.z > 0
        same = stats.compare_dependent(0.6, 0.6, 1.0, 60, method)
        assert same.z == 0.0 and same.p == 1.0 and same.mark == "n.s."
        # the more the two metrics agree with each other, the stronger the evidence for a fixed difference
        assert stats.compare_dependent(0.7, 0.4, 0.8, 60, method).z > a.z
    with pytest.raises(ValueError, match="steiger"):
        stats.compare_dependent(0.1, 0.2, 0.3, 10, "welch")  # type: ignore[arg-type]


def test_significance_marks():
    assert [stats.significance_mark(p) for p in (0.0004, 0.001, 0.004, 0.03, 0.05, 0.5)] == [
        "***", "**", "**", "*", "n.s.", "n.s."]
    assert stats.significance_mark(float("nan")) == ""


def test_steiger_z_matches_a_simulated_null_distribution():
    # Under H0 (rho_1 = rho_2), Z* is standard normal: simulate trivariate normal data
    rng = np.random.default_rng(3)
    cov = np.array([[1.0, 0.5, 0.5], [0.5, 1.0, 0.6], [0.5, 0.6, 1.0]])  # r(y,a) = r(y,b) = .5, r(a,b) = .6
    zs = []
    for _ in range(400):
        y, a, b = rng.multivariate_normal(np.zeros(3), cov, size=80).T
        zs.append(stats.steiger_z(np.corrcoef(a, y)[0, 1], np.corrcoef(b, y)[0, 1], np.corrcoef(a, b)[0, 1], 80).z)
    assert abs(np.mean(zs)) < 0.15 and 0.85 < np.std(zs) < 1.15


# ----------------------------------------------------------------------------
# Permutations, Mantel tests, bootstrap
# ----------------------------------------------------------------------------


def _dyadic(rng, effects, noise_sd=1.0):
    """x_ij = u_i + u_j + e_ij: pairs that share a model are correlated."""
    m = len(effects)
    e = rng.normal(scale=noise_sd, size=(m, m))
    return effects[:, None] + effects[None, :] + (e + e.T) / np.sqrt(2)


def _factorial_blocks():
    """12 models: arch x seed x epoch; blocks of the 'seed' group = models sharing arch and epoch."""
    fac = [(a, s, e) for a in range(2) for s in range(3) for e in range(2)]
    blocks = np.array([f"{a}/{e}" for a, s, e in fac])
    i, j = stats.upper_pairs(len(fac))
    return blocks, blocks[i] == blocks[j]


def test_block_permutations_map_blocks_onto_blocks():
    rng = np.random.default_rng(0)
    blocks = np.array(list("aabbccddd"))  # three blocks of 2, one of 3
    perms = stats.block_permutations(blocks, 9, 500, rng)
    assert perms.shape == (500, 9)
    assert (np.sort(perms, axis=1) == np.arange(9)).all()  # every row is a permutation
    i, j = np.triu_indices(9, 1)
    same = blocks[i] == blocks[j]
    for p in perms[:50]:
        assert (blocks[p[i]] == blocks[p[j]])[same].all()  # within-block pairs stay within blocks
    # the 3-block stays put, 2-blocks are exchanged with each other, members are shuffled
    assert set(perms[:, 6:].ravel()) == {6, 7, 8}
    assert len({tuple(p) for p in perms[:, :6]}) > 40
    assert (perms[:, 0] == 2).any() and (perms[:, 0] == 1).any()
    free = stats.block_permutations(None, 5, 2000, rng)
    counts = np.bincount(free[:, 0], minlength=5)
    assert counts.min() > 300  # uniform: each model lands in slot 0 about 400 times


def test_mantel_null_matches_a_loop_over_permutations():
    rng = np.random.default_rng(1)
    blocks, mask = _factorial_blocks()
    x = np.stack([_dyadic(rng, rng.normal(size=12)) for _ in range(3)])
    y = np.stack([_dyadic(rng, rng.normal(size=12)) for _ in range(3)])
    observed, null = stats.mantel_null(x, y, mask, blocks, n_permutations=40, seed=7)
    perms = stats.block_permutations(blocks, 12, 40, np.random.default_rng(7))
    i, j = stats.upper_pairs(12)
    for k in range(3):
        assert observed[k] == pytest.approx(np.corrcoef(x[k][i, j][mask], y[k][i, j][mask])[0, 1])
        for t in (0, 17, 39):
            yp = y[k][np.ix_(perms[t], perms[t])]  # relabel the models of y
            assert null[t, k] == pytest.approx(np.corrcoef(x[k][i, j][mask], yp[i, j][mask])[0, 1])
            # the group maps onto itself, so relabelling x instead gives the same statistic
            inv = np.argsort(perms[t])
            xp = x[k][np.ix_(inv, inv)]
            assert null[t, k] == pytest.approx(np.corrcoef(xp[i, j][mask], y[k][i, j][mask])[0, 1])
    test = stats.mantel(x, y, mask, blocks, n_permutations=40, seed=7)
    assert test.statistic == pytest.approx(stats.mean_fisher_z(observed))
    # a batch of metrics shares the permutations and gives each metric's own numbers
    x2 = np.stack([x, 2 * x + 1, _dyadic(rng, rng.normal(size=12))[None].repeat(3, 0)])
    obs_q, null_q = stats.mantel_null(x2, y, mask, blocks, n_permutations=40, seed=7)
    assert obs_q.shape == (3, 3) and null_q.shape == (40, 3, 3)
    assert np.allclose(null_q[:, 0], null) and np.allclose(null_q[:, 1], null)  # r is affine invariant
    assert np.allclose(null_q[:, 2], stats.mantel_null(x2[2], y, mask, blocks, n_permutations=40, seed=7)[1])


def test_mantel_p_is_uniform_under_the_null_where_fisher_p_is_not():
    rng = np.random.default_rng(2)
    blocks, mask = _factorial_blocks()
    ps, ps_group, fisher = [], [], []
    for _ in range(300):
        x, y = _dyadic(rng, rng.normal(size=16)), _dyadic(rng, rng.normal(size=16))
        ps.append(stats.mantel(x, y, n_permutations=199, seed=rng).p)
        fisher.append(stats.pearson(stats.upper(x), stats.upper(y)).p)
        x, y = _dyadic(rng, rng.normal(size=12)), _dyadic(rng, rng.normal(size=12))
        ps_group.append(stats.mantel(x, y, mask, blocks, n_permutations=199, seed=rng).p)
    for p in (ps, ps_group):
        assert sps.kstest(p, "uniform").pvalue > 0.01
        assert 0.02 < np.mean(np.array(p) < 0.05) < 0.09
    # model effects make pairs dependent: the Fisher-z p rejects far too often
    assert np.mean(np.array(fisher) < 0.05) > 0.25


def test_mantel_p_is_small_under_a_planted_effect():
    rng = np.random.default_rng(4)
    u = rng.normal(size=14)
    x = _dyadic(rng, u)
    y = x + 0.5 * _dyadic(rng, np.zeros(14))
    test = stats.mantel(x, y, n_permutations=499, seed=0)
    assert test.p == pytest.approx(1 / 500) and test.statistic > 0.8
    assert stats.mantel(x, -y, n_permutations=499, seed=0).p == pytest.approx(1 / 500)  # two-sided
    assert stats.mantel(x, -y, n_permutations=499, seed=0, alternative="greater").p > 0.9


def test_model_bootstrap_covers_the_truth_and_fisher_does_not():
    # x_ij = u_i + u_j + e, y_ij = v_i + v_j + f with corr(u, v) = c: the pair-level correlation is 2c/3
    rng = np.random.default_rng(5)
    c, m = 0.6, 20
    truth = 2 * c / 3
    boot_hits = fisher_hits = 0
    for _ in range(150):
        u = rng.normal(size=m)
        v = c * u + np.sqrt(1 - c * c) * rng.normal(size=m)
        x, y = _dyadic(rng, u), _dyadic(rng, v)
        lo, hi = stats.bootstrap_interval(x, y, n_boot=300, seed=rng)
        boot_hits += lo <= truth <= hi
        r = stats.pearson(stats.upper(x), stats.upper(y))
        fisher_hits += r.ci_low <= truth <= r.ci_high
    assert boot_hits / 150 >= 0.88
    assert fisher_hits / 150 < boot_hits / 150 - 0.15


def test_model_bootstrap_replicates_match_a_loop():
    rng = np.random.default_rng(6)
    m = 7
    x, y = _dyadic(rng, rng.normal(size=m)), _dyadic(rng, rng.normal(size=m))
    mask = rng.random(m * (m - 1) // 2) < 0.7
    reps = stats.bootstrap_correlations(x, y, mask, n_boot=25, seed=11)
    draws = np.random.default_rng(11).integers(0, m, size=(25, m))
    full = np.zeros((m, m), dtype=bool)
    full[np.triu_indices(m, 1)] = mask
    full |= full.T
    for b in range(25):
        xs, ys = [], []
        for p in range(m):
            for q in range(p + 1, m):
                i, j = draws[b, p], draws[b, q]
                if i != j and full[i, j]:  # self-pairs dropped, group judged on the original models
                    xs.append(x[i, j])
                    ys.append(y[i, j])
        if len(set(zip(xs, ys, strict=True))) >= 3:
            assert reps[b, 0] == pytest.approx(np.corrcoef(xs, ys)[0, 1])
        else:
            assert np.isnan(reps[b, 0])


def test_cluster_bootstrap_resamples_blocks():
    rng = np.random.default_rng(8)
    blocks, mask = _factorial_blocks()  # 4 blocks of 3 models, 3 pairs each
    x, y = _dyadic(rng, rng.normal(size=12)), _dyadic(rng, rng.normal(size=12))
    reps = stats.bootstrap_correlations(x, y, mask, n_boot=30, seed=3, blocks=blocks)
    i, j = stats.upper_pairs(12)
    xs, ys, pb = x[i, j][mask], y[i, j][mask], blocks[i][mask]
    names = np.unique(pb)
    draws = np.random.default_rng(3).integers(0, len(names), size=(30, len(names)))
    for b in range(30):
        sel = np.concatenate([np.flatnonzero(pb == names[d]) for d in draws[b]])
        assert reps[b, 0] == pytest.approx(np.corrcoef(xs[sel], ys[sel])[0, 1])
    # too few blocks for a cluster bootstrap: falls back to resampling models
    two = np.array(["a"] * 6 + ["b"] * 6)
    i2 = two[i] == two[j]
    fallback = stats.bootstrap_correlations(x, y, i2, n_boot=30, seed=3, blocks=two)
    assert np.allclose(fallback, stats.bootstrap_correlations(x, y, i2, n_boot=30, seed=3), equal_nan=True)


def test_stacked_bootstrap_uses_common_draws():
    rng = np.random.default_rng(9)
    x = _dyadic(rng, rng.normal(size=10))
    y = x + _dyadic(rng, rng.normal(size=10))
    both = stats.bootstrap_correlations(np.stack([x, x]), np.stack([y, y]), n_boot=50, seed=1)
    assert np.allclose(both[:, 0], both[:, 1], equal_nan=True)
    lo, hi = stats.bootstrap_interval(np.stack([x, x]), np.stack([y, y]), n_boot=50, seed=1)
    assert (lo, hi) == pytest.approx(stats.bootstrap_interval(x, y, n_boot=50, seed=1))
    batch = stats.bootstrap_correlations(np.stack([x[None], -x[None]]), y, n_boot=50, seed=1)
    assert batch.shape == (50, 2, 1)
    assert np.allclose(batch[:, 0, 0], both[:, 0], equal_nan=True)
    assert np.allclose(batch[:, 1, 0], -both[:, 0], equal_nan=True)
    assert lo < stats.pearson(stats.upper(x), stats.upper(y)).r < hi
    assert stats.percentile_interval(np.array([np.nan, np.nan])) != stats.percentile_interval(np.arange(3.0))


def test_bad_fraction():
    agreement = np.linspace(0.5, 1.0, 10)
    assert stats.bad_fraction(agreement, agreement).fraction == 0.0  # closest pairs agree most
    worst = stats.bad_fraction(-agreement, agreement)  # closest pairs are the least agreeing
    # Ding et al.: a share of ALL pairs (chance q^2); the conditional variant divides by the close pairs (chance q)
    assert worst.fraction == 0.2 and worst.chance == pytest.approx(0.04)
    assert worst.close_fraction == 1.0 and worst.n_close == 2 and worst.close_chance == pytest.approx(0.2)
    rng = np.random.default_rng(0)
    a = rng.random(5000)
    unrelated = stats.bad_fraction(rng.random(5000), a)
    assert unrelated.fraction == pytest.approx(0.04, abs=0.01)
    assert unrelated.close_fraction == pytest.approx(0.2, abs=0.03)
    ties = stats.bad_fraction(np.arange(10.0), np.r_[np.zeros(5), np.ones(5)])
    assert ties.close_chance == 0.5 and ties.fraction == 0.0  # tied agreement values enter "far" together


def test_normal_p_values():
    assert stats.normal_two_sided_p(1.959963984540054) == pytest.approx(0.05)
    assert stats.normal_two_sided_p(30.0) == pytest.approx(2 * sps.norm.sf(30.0), rel=1e-9)  # tiny p stay accurate
    assert stats.normal_two_sided_p(float("inf")) == 0.0
