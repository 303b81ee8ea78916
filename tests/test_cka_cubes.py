"""The cka_cubes benchmark (seed 003 §3.2 Fig. 3a/3b on the seed's synthetic cubes): known values, the verdict
logic on planted records, records through the kit's FakeStore, and one-line errors."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

import simbench
from simbench.errors import UserError
from simbench.seeding import numpy_rng
from simbench.testing import FakeStore, check_benchmark, run_benchmark
from simbench_plugins.benchmarks.cka_cubes import CkaCubes
from simbench_plugins.benchmarks.cka_cubes import compute, report
from simbench_plugins.metrics import LinearCKA, Procrustes

N, D = 150, 20  # points per cube, dimension: small instances of the seed's 10 000 x 1 000


def gram_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA from the n x n Gram matrices and the centring matrix H (Kornblith et al. 2019, eq. 1-2) --
    independent of the metric plugin, which works in feature space."""
    n = len(x)
    h = np.eye(n) - np.ones((n, n)) / n
    k, l = h @ x @ x.T @ h, h @ y @ y.T @ h
    return float(np.sum(k * l) / np.sqrt(np.sum(k * k) * np.sum(l * l)))


@pytest.fixture(scope="module")
def cubes() -> np.ndarray:
    return compute.draw_cubes(N, D, 1.1, numpy_rng(0, "test", "cubes"))


def test_the_cubes_are_the_seeds(cubes):
    first, second = cubes[:N], cubes[N:]
    assert cubes.shape == (2 * N, D)
    assert first.min() >= -0.5 and first.max() <= 0.5
    assert second[:, 1:].min() >= -0.5 and second[:, 1:].max() <= 0.5
    assert second[:, 0].min() >= 0.6 and second[:, 0].max() <= 1.6  # centred at 1.1 along the first axis
    assert first[:, 0].max() < second[:, 0].min()  # linearly separable along the first dimension


def test_ball_direction_lies_in_the_ball_and_is_nearly_unit_in_high_dimension():
    v = [compute.ball_direction(1000, numpy_rng(0, "ball", k)) for k in range(20)]
    norms = np.linalg.norm(v, axis=1)
    assert norms.max() <= 1.0 and norms.min() > 0.99  # U^(1/1000) >= 0.99 with overwhelming probability
    assert not np.allclose(v[0], v[1])


def test_known_values(cubes):
    cka = LinearCKA()
    rng = numpy_rng(0, "test", "known")
    assert cka(cubes, cubes) == pytest.approx(1.0, abs=1e-12)
    assert cka(cubes, 3.7 * cubes) == pytest.approx(1.0, abs=1e-12)  # isotropic scaling
    v = compute.ball_direction(D, rng)
    assert cka(cubes, cubes + 25.0 * v) == pytest.approx(1.0, abs=1e-12)  # both cubes translated: centring undoes it
    q, _ = np.linalg.qr(rng.standard_normal((D, D)))
    assert cka(cubes, cubes @ q) == pytest.approx(1.0, abs=1e-12)  # an orthogonal map


@pytest.mark.parametrize("c", [0.5, 3.0, 20.0])
def test_translated_cube_matches_an_independent_computation(cubes, c):
    v = compute.ball_direction(D, numpy_rng(0, "test", "v"))
    y = compute.translate_second_cube(cubes, N, c, v)
    assert np.array_equal(y[:N], cubes[:N]) and np.allclose(y[N:] - cubes[N:], c * v)
    assert LinearCKA()(cubes, y) == pytest.approx(gram_cka(cubes, y), rel=1e-10)


def test_translation_cka_follows_the_rank_one_closed_form(cubes):
    # second cube moved by c v: centred Y = Xc + c b v^T, b = +-1/2 (cube indicator centred), so with S = Xc^T Xc
    # and u = Xc^T b: Xc^T Yc = S + c u v^T and Yc^T Yc = S + c (u v^T + v u^T) + c^2 (n/4) v v^T
    xc = cubes - cubes.mean(0)
    b = np.r_[-0.5 * np.ones(N), 0.5 * np.ones(N)]
    s, u = xc.T @ xc, xc.T @ b
    v = compute.ball_direction(D, numpy_rng(0, "test", "v2"))
    for c in (1.0, 10.0):
        cross = s + c * np.outer(u, v)
        yy = s + c * (np.outer(u, v) + np.outer(v, u)) + c * c * (2 * N / 4) * np.outer(v, v)
        closed = np.sum(cross ** 2) / np.sqrt(np.sum(s ** 2) * np.sum(yy ** 2))
        assert LinearCKA()(cubes, compute.translate_second_cube(cubes, N, c, v)) == pytest.approx(closed, rel=1e-9)


def test_invertible_map_and_outlier_match_an_independent_computation(cubes):
    m = compute.invertible_matrix(D, 0.3, 1.0, numpy_rng(0, "test", "m"))
    assert np.linalg.matrix_rank(m) == D
    assert LinearCKA()(cubes, cubes @ m) == pytest.approx(gram_cka(cubes, cubes @ m), rel=1e-10)
    y = compute.move_one_point(cubes, 1e3, numpy_rng(0, "test", "o"))
    moved = np.flatnonzero(np.any(y != cubes, axis=1))
    assert len(moved) == 1 and np.linalg.norm(y[moved[0]] - cubes[moved[0]]) == pytest.approx(1e3)
    assert LinearCKA()(cubes, y) == pytest.approx(gram_cka(cubes, y), rel=1e-10)
    assert LinearCKA()(cubes, y) < 0.5  # one point of 300 moved far dominates the Gram matrix


def test_a_singular_draw_is_refused():
    with pytest.raises(RuntimeError, match="no invertible"):
        compute.invertible_matrix(4, 1.0, 1e-300, numpy_rng(0, "singular"), tries=3)  # rank one in float64


def _planted(values: dict[tuple[str, float, float], float], thresholds=(10.0, 0.2, 1.0, 0.05)) -> list:
    rec = []
    for name, v in zip(("translation_max_c", "translation_below", "invertible_max", "invertible_below"), thresholds,
                       strict=True):
        rec.append(simbench.Record("cka_cubes", "threshold", v, group="info", model_a=name))
    for (kind, a, b), v in values.items():
        coords = {"c": a} if kind == "translation" else {"mu": a, "sigma": b}
        rec += [simbench.Record("cka_cubes", "value_mean", v, metric="linear_cka", group=kind, n=10, coords=coords),
                simbench.Record("cka_cubes", "value_sd", 0.01, metric="linear_cka", group=kind, n=10, coords=coords)]
    return rec


def _verdict(records) -> pd.DataFrame:
    return report.verdicts(report.frame(records)).set_index("claim")


def test_verdicts_on_planted_values():
    t, i = report.CLAIMS["translation"], report.CLAIMS["invertible"]
    yes = _verdict(_planted({("translation", 5.0, 0): 0.3, ("translation", 10.0, 0): 0.15,
                             ("translation", 20.0, 0): 0.05, ("invertible", 0.0, 1.0): 0.7,
                             ("invertible", 1.0, 1.0): 0.04, ("invertible", 3.0, 1.0): 0.01}))
    assert yes.loc[t, "reproduced"] == "yes" and yes.loc[t, "observed"] == pytest.approx(0.15)
    assert yes.loc[t, "at"] == "c = 10" and yes.loc[t, "first_below"] == 10.0
    assert yes.loc[i, "reproduced"] == "yes" and yes.loc[i, "observed"] == pytest.approx(0.04)
    assert yes.loc[i, "share_below"] == pytest.approx(0.5)  # (0, 1) and (1, 1) are in the box, (3, 1) is not
    # below the threshold only beyond C* / S*: not reproduced, the first setting below still reported
    no = _verdict(_planted({("translation", 10.0, 0): 0.2, ("translation", 20.0, 0): 0.05,
                            ("invertible", 1.0, 1.0): 0.06, ("invertible", 3.0, 1.0): 0.01}))
    assert no.loc[t, "reproduced"] == "no" and no.loc[t, "first_below"] == 20.0  # 0.2 is not below 0.2
    assert no.loc[i, "reproduced"] == "no" and no.loc[i, "first_below"] == 3.0
    # other thresholds, same values: the rule reads the recorded thresholds
    other = _verdict(_planted({("translation", 20.0, 0): 0.05, ("invertible", 3.0, 1.0): 0.01},
                              thresholds=(20.0, 0.2, 3.0, 0.05)))
    assert set(other["reproduced"]) == {"yes"}
    # no setting inside the box: no verdict
    empty = _verdict(_planted({("translation", 50.0, 0): 0.01, ("invertible", 3.0, 2.0): 0.01}))
    assert set(empty["reproduced"]) == {"—"}


def test_records_through_the_kit_and_tables_render():
    records = check_benchmark(CkaCubes)
    df = report.frame(records)
    ok = df[(df["statistic"] == "value_mean") & (df["status"] == "ok")]
    assert set(ok["metric"]) == {"linear_cka", "procrustes"}  # the kit's activation metrics; wcka compares weights
    assert set(ok["group"]) == {"translation", "invertible", "outlier"}
    assert (ok["n"] == 2).all()
    zero = ok[(ok["group"] == "translation") & (ok["coord_c"] == 0.0)]
    assert zero.set_index("metric")["value"].to_dict() == pytest.approx({"linear_cka": 1.0, "procrustes": 0.0},
                                                                         abs=1e-6)  # c = 0 is X itself
    keys = [t.key for t in CkaCubes.tables(records)]
    assert keys[:4] == ["verdict", "translation", "invertible", "outlier"]


def test_evaluate_uses_the_seed_s_recipe_and_is_reproducible():
    bench = CkaCubes(n_per_cube=40, dim=8, instantiations=3, translation_distances=(2.0,), invertible_mu=(0.5,),
                     invertible_sigma=(1.0,), outlier_distances=(50.0,), metrics=("linear_cka",))
    a = run_benchmark(bench, FakeStore(seed=3))
    b = run_benchmark(bench, FakeStore(seed=3))
    va = {(r.group, r.statistic): r.value for r in a if r.statistic in ("value_mean", "value_sd")}
    vb = {(r.group, r.statistic): r.value for r in b if r.statistic in ("value_mean", "value_sd")}
    assert va == vb
    # the mean is the mean of the metric over the instantiations the benchmark draws
    x = compute.draw_cubes(40, 8, 1.1, numpy_rng(3, compute.TAG, "X"))
    direct = [gram_cka(x, compute.transformed(bench, x, 3, "translation", {"c": 2.0}, k)) for k in range(3)]
    assert va[("translation", "value_mean")] == pytest.approx(np.mean(direct), rel=1e-9)
    assert va[("translation", "value_sd")] == pytest.approx(np.std(direct, ddof=1), rel=1e-6)


@dataclass(frozen=True)
class Broken(simbench.Metric):
    name = "broken"

    def __call__(self, a, b, **kwargs):
        raise ValueError("boom")


def test_a_metric_that_raises_is_a_failed_row_and_the_rest_goes_on():
    store = FakeStore(metrics={"linear_cka": LinearCKA(), "broken": Broken()})
    bench = CkaCubes(n_per_cube=20, dim=4, instantiations=2, transforms=("translation",),
                     translation_distances=(1.0,))
    rows = run_benchmark(bench, store)
    failed = [r for r in rows if r.status == "failed"]
    assert len(failed) == 1 and failed[0].metric == "broken" and "boom" in failed[0].error
    assert any(r.metric == "linear_cka" and r.status == "ok" for r in rows)


def test_user_mistakes_are_one_line():
    with pytest.raises(simbench.ParamError, match="unknown transform") as bad:
        CkaCubes(transforms=("shear",))
    assert bad.value.key == "transforms"
    with pytest.raises(simbench.ParamError, match=">= 0") as neg:
        CkaCubes(translation_distances=(-1.0,))
    assert neg.value.key == "translation_distances"
    store = FakeStore(metrics={"linear_cka": LinearCKA(), "procrustes": Procrustes()})
    with pytest.raises(UserError, match="not suite metric labels"):
        run_benchmark(CkaCubes(n_per_cube=5, dim=3, metrics=("cka",)), store)


def test_float32_arrays_give_the_float64_values():
    kw = dict(n_per_cube=300, dim=40, instantiations=2, translation_distances=(5.0,), invertible_mu=(1.0,),
              invertible_sigma=(0.1,), outlier_distances=(300.0,), metrics=("linear_cka",))
    rows = {dt: {(r.group, r.statistic): r.value for r in run_benchmark(CkaCubes(dtype=dt, **kw), FakeStore())
                 if r.statistic == "value_mean"} for dt in ("float64", "float32")}
    assert rows["float32"].keys() == rows["float64"].keys() and len(rows["float64"]) == 3
    for key, v in rows["float64"].items():
        assert rows["float32"][key] == pytest.approx(v, abs=1e-5), key
