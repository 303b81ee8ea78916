"""Computation of the ``cka_cubes`` benchmark (numpy): the seed's cubes, the three transforms, the metric calls.

Every array is drawn from :func:`simbench.seeding.numpy_rng` with the run seed and named tags, so a run is
reproducible and one instantiation's draw does not depend on the grid around it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np

import simbench
from simbench.errors import one_line
from simbench.seeding import numpy_rng

from .common import INFO, INVERTIBLE, OUTLIER, TRANSLATION

TAG = "cka_cubes"


def draw_cubes(n_per_cube: int, dim: int, offset: float, rng: np.random.Generator) -> np.ndarray:
    """``X``: ``n_per_cube`` points uniform in the unit cube ``[-1/2, 1/2]^dim`` centred at the origin, then as many
    from the same cube centred at ``(offset, 0, ..., 0)`` (float64, ``[2 n_per_cube, dim]``)."""
    x = rng.uniform(-0.5, 0.5, size=(2 * n_per_cube, dim))
    x[n_per_cube:, 0] += offset
    return x


def ball_direction(dim: int, rng: np.random.Generator) -> np.ndarray:
    """A point drawn uniformly from the unit ``dim``-ball (Gaussian direction, radius ``U^(1/dim)``)."""
    g = rng.standard_normal(dim)
    return g / np.linalg.norm(g) * rng.uniform() ** (1.0 / dim)


def translate_second_cube(x: np.ndarray, n_per_cube: int, c: float, v: np.ndarray) -> np.ndarray:
    """``X`` with the rows of the second cube moved by ``c v`` (seed 003 Fig. 3a)."""
    y = x.copy()
    y[n_per_cube:] += c * v
    return y


def invertible_matrix(dim: int, mu: float, sigma: float, rng: np.random.Generator,
                      tries: int = 20) -> np.ndarray:
    """``M`` with i.i.d. ``N(mu, sigma^2)`` elements, redrawn until numerically invertible (seed 003: "we verify
    the invertibility of M ... and only keep invertible matrices"): smallest singular value above
    ``dim * eps * largest``."""
    for _ in range(tries):
        m = rng.normal(mu, sigma, size=(dim, dim))
        s = np.linalg.svd(m, compute_uv=False)
        if s[-1] > dim * np.finfo(np.float64).eps * s[0]:
            return m
    raise RuntimeError(f"no invertible {dim}x{dim} N({mu}, {sigma}^2) matrix in {tries} draws")


def move_one_point(x: np.ndarray, distance: float, rng: np.random.Generator) -> np.ndarray:
    """``X`` with one random row moved ``distance`` along a random unit direction (seed 003 Fig. 3c's outlier)."""
    y = x.copy()
    i = int(rng.integers(len(x)))
    g = rng.standard_normal(x.shape[1])
    y[i] += distance * g / np.linalg.norm(g)
    return y


def settings(bench: Any) -> list[tuple[str, dict[str, float]]]:
    """``(transform, coords)`` for every point of the sweep, in table order."""
    out: list[tuple[str, dict[str, float]]] = []
    for kind in bench.transforms:
        if kind == TRANSLATION:
            out += [(kind, {"c": float(c)}) for c in bench.translation_distances]
        elif kind == INVERTIBLE:
            out += [(kind, {"mu": float(mu), "sigma": float(s)})
                    for s in bench.invertible_sigma for mu in bench.invertible_mu]
        else:
            out += [(kind, {"distance": float(d)}) for d in bench.outlier_distances]
    return out


def transformed(bench: Any, x: np.ndarray, seed: int, kind: str, coords: dict[str, float],
                k: int) -> np.ndarray:
    """``T(X)`` (in ``x``'s dtype) for instantiation ``k`` of a setting.  The random part (``v``, ``M``, the outlier's point and
    direction) depends on the seed, the transform and ``k`` -- for the map also on ``(mu, sigma)`` -- so every
    translation distance moves the cube along the same ``v_k``, as in the seed's curves."""
    if kind == TRANSLATION:
        v = ball_direction(bench.dim, numpy_rng(seed, TAG, TRANSLATION, k))
        return translate_second_cube(x, bench.n_per_cube, coords["c"], v)
    if kind == INVERTIBLE:
        m = invertible_matrix(bench.dim, coords["mu"], coords["sigma"],
                              numpy_rng(seed, TAG, INVERTIBLE, coords["mu"], coords["sigma"], k))
        return x @ m.astype(x.dtype, copy=False)
    return move_one_point(x, coords["distance"], numpy_rng(seed, TAG, OUTLIER, k))


def activation_metrics(bench: Any, view: simbench.StoreView) -> dict[str, Any]:
    """Label -> configured metric: ``bench.metrics`` (labels of the suite), or every activation metric of the
    suite.  An unknown or weight-metric label is a one-line error naming the parameter."""
    from simbench.errors import UserError

    if bench.metrics:
        unknown = [m for m in bench.metrics if m not in view.metrics]
        if unknown:
            raise UserError(f"benchmark cka_cubes: metrics {unknown} are not suite metric labels "
                            f"(the suite has {sorted(view.metrics)})")
        chosen = {m: view.metrics[m] for m in bench.metrics}
        weight = [m for m, obj in chosen.items() if getattr(obj, "kind", "activation") != "activation"]
        if weight:
            raise UserError(f"benchmark cka_cubes: metrics {weight} compare weights, not representations")
        return chosen
    return {m: obj for m, obj in view.metrics.items() if getattr(obj, "kind", "activation") == "activation"}


def _draws(bench: Any, x: np.ndarray, seed: int, kind: str, coords: dict[str, float]) -> Iterator[Any]:
    for k in range(bench.instantiations):
        try:
            yield transformed(bench, x, seed, kind, coords, k)
        except Exception as exc:  # noqa: BLE001 - a draw that fails is that setting's failure, not the run's
            yield exc


def evaluate(bench: Any, view: simbench.StoreView) -> list[simbench.Record]:
    """Every metric on ``(X, T(X))`` for every setting and instantiation: mean/SD rows per metric and setting,
    the thresholds and the cubes' size as ``info`` rows."""
    label = ""  # the runner stamps the suite label on every record
    metrics = activation_metrics(bench, view)
    x64 = draw_cubes(bench.n_per_cube, bench.dim, bench.offset, numpy_rng(view.seed, TAG, "X"))
    x = x64.astype(bench.dtype, copy=False)
    records: list[simbench.Record] = []
    for name, value in (("translation_max_c", bench.translation_max_c), ("translation_below", bench.translation_below),
                        ("invertible_max", bench.invertible_max), ("invertible_below", bench.invertible_below)):
        records.append(simbench.Record(label, "threshold", float(value), group=INFO, model_a=name))
    for name, value in (("n", 2 * bench.n_per_cube), ("d", bench.dim), ("offset", bench.offset),
                        ("instantiations", bench.instantiations)):
        records.append(simbench.Record(label, "size", float(value), group=INFO, model_a=name))
    for kind, coords in settings(bench):
        values: dict[str, list[float]] = {m: [] for m in metrics}
        errors: dict[str, str] = {}
        for y in _draws(bench, x, view.seed, kind, coords):
            for m, metric in metrics.items():
                if m in errors:
                    continue
                if isinstance(y, Exception):
                    errors[m] = f"drawing T(X): {one_line(y)}"
                    continue
                try:
                    v = float(metric(x.copy(), y.copy()))  # copies: a metric that writes to its input harms no other
                except Exception as exc:  # noqa: BLE001 - plugin boundary: one failed row, the rest goes on
                    errors[m] = f"{m}(X, T(X)) raised: {one_line(exc)}"
                    continue
                if not math.isfinite(v):
                    errors[m] = f"{m}(X, T(X)) = {v}"
                    continue
                values[m].append(v)
        for m in metrics:
            if m in errors:
                records.append(simbench.Record(label, "value_mean", float("nan"), metric=m, group=kind,
                                               status="failed", error=errors[m], coords=coords))
                continue
            arr = np.asarray(values[m])
            sd = float(arr.std(ddof=1)) if len(arr) > 1 else 0.0
            n = len(arr)
            records += [simbench.Record(label, "value_mean", float(arr.mean()), metric=m, group=kind, n=n,
                                        coords=coords),
                        simbench.Record(label, "value_sd", sd, metric=m, group=kind, n=n, coords=coords)]
    return records
