"""Benchmark ``calibration``: do metrics read ~0 for unrelated networks and ~1 for the same network?

Seed 001 §3.1 and Fig. 1 (``/work/shared/seeds/001_9ba3a7735213233a.txt``):
two ensembles whose similarity is known in advance -- randomly initialised
networks (any two should score ~0) and checkpoints of one network from
adjacent epochs after convergence (any two should score ~1) -- built by the
``calibration`` zoo, which labels each model with the factor ``ensemble``.

Values are compared on a common *calibrated scale* (see :func:`calibrated`):
0 = the metric's "unrelated" end, 1 = its "identical" end, so distances
(Procrustes, angular shape) and correlations (RSA) sit beside the CKAs.

Record scheme (``benchmark`` = the suite label; one number per row; pairs are
the unordered pairs *within* one ensemble; asymmetric metrics are symmetrised
as ``(S + S^T) / 2``):

=====================================  ===============  ========================================================
statistic                              group            value (``n``)
=====================================  ===============  ========================================================
``mean``, ``sd``, ``median``,          ensemble         calibrated similarity over the ensemble's pairs
``min``, ``max``                                        (``n`` = pairs)
``lv_lo``, ``lv_hi``                   ensemble         letter values (Hofmann et al. 2017): the 1/2^k and
                                                        1 - 1/2^k quantiles, coordinate ``depth`` = 2^k,
                                                        k = 2 (quartiles) ... 6
``bias``                               ensemble         ``mean - expected`` (expected 0 for the random, 1 for
                                                        the converged ensemble)
``rmse``                               ensemble         root mean squared distance from the expected value
``mean_ci_low`` / ``_high``            ensemble         model-level bootstrap 95 % interval of ``mean``
``raw_mean``, ``raw_sd``               ensemble         the same on the metric's own scale
``auroc``                              ``separation``   P(converged pair > random pair) (+ half the ties):
                                                        1 = the ensembles never overlap, 0.5 = no separation
``overlap``                            ``separation``   overlapping coefficient of the two distributions
                                                        (shared histogram mass, 0 = disjoint, 1 = identical)
``cohen_d``                            ``separation``   (mean_converged - mean_random) / pooled sd
``by_probes_<stat>``                   ensemble or      the probe-count analysis: coordinate ``probes`` (and
                                       ``separation``   ``n``) = number of probes; stat in mean, sd, median,
                                                        q25, q75, bias, pairs, auroc, ``draws`` (random probe
                                                        subsets pooled)
``seconds_median``, ``seconds_q25``,   ``timing``       compute time of one pair (``metric(a, b)`` on the
``seconds_q75``, ``seconds_min``,                       models ``model_a``, ``model_b``) on ``probes`` probes
``seconds_max``, ``repeats``                            (coordinate, and ``n``); ``repeats`` = how many timed
                                                        calls (the runner's timed requests)
``gap``, ``frac_random_above``,        ``separation``   per probe set: min(high) - max(low) (< 0: the ranges overlap); the
``frac_converged_below``                                shares of low values above ``seed_random_above`` and of high
                                                        values below ``seed_converged_below`` (calibrated scale)
``auroc``, ``auroc_ci_low`` / ``_high``  ``overlap``    ``probe_set = "pooled"``: every probe set's within-ensemble pairs
``random_max``, ``random_q95``,                         pooled (seed 001 Fig. 1a probes "clean or 15 corruptions");
``converged_q05``, ``converged_min``,                   interval = model-level bootstrap (``PooledAuroc``); ``overlaps``
``gap``, ``frac_random_above``,                         = 1 iff auroc < 1; ``seed_spread`` = 1 iff max(low) >
``frac_converged_below``, ``overlaps``,                 ``seed_random_above`` and min(high) < ``seed_converged_below``;
``seed_spread``, ``sets``,                              ``sets_overlapping`` = probe sets on which the metric overlaps
``sets_overlapping``                                    alone
``overlap_reproduced``,                ``overlap``      metric ``""``: the pre-declared verdict (1 reproduced, 0 not, NaN
``metrics_overlapping``,                                undetermined; ``compute.overlap_verdict``) over
``metrics_declared``                                    ``overlap_metrics``, ``n`` = how many were measured
``subset_probes``                      ``info``         a ``subset_metrics`` metric's probe count per probe set
``declared_overlap``                   ``info``         1 for a metric in ``overlap_metrics``
``weight_metric``                      ``info``         1 for a weight metric (no probes), 0 otherwise
``scale_low``, ``scale_high``          ``info``         the raw values mapped to 0 and 1
``expected``                           ``info``         0 / 1 for the ensemble named in ``model_a``
``tolerance``                          ``info``         the verdict's tolerance (parameter ``tolerance``)
=====================================  ===============  ========================================================

The distributions read the suite's similarity matrices on each probe set in
``probe_sets`` (default: all; weight metrics once, ``probe_set = "weights"``).
The probe-count and timing analyses use ``count_probe_set`` and the first
``count_models`` models of each ensemble: the benchmark declares those
matrices (``requests``: random probe subsets as ``Source.rows``, the timed
pairs with ``timing_repeats``) and the runner computes them as cells; it runs
no metric itself.  ``subset_metrics`` are registered activation metrics that
are not suite metrics: the benchmark declares them per probe set and ensemble
on one fixed random subset of ``subset_probes`` rows (the same images in every
probe set), for metrics too costly to run on every probe of every probe set.

The overlap verdict (seed 001 §3.1: random and similar networks' values are
"wide and overlap") is declared by ``overlap_metrics`` (default the seed's
three activation metrics), ``overlap_at_least`` (2): 'reproduced' iff at least
that many have a pooled AUROC below 1, 'not reproduced' iff so many are fully
separated that it cannot be reached (symmetric), else undetermined.  A metric that raises or returns NaN gets one row
``mean = NaN`` (``by_probes_mean`` / ``seconds_median`` for a failed declared
matrix), ``status = "failed"`` with the error, and the benchmark goes on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

from pydantic import Field

import simbench
from simbench.errors import ParamError

from .._scale import calibrated, scale_of
from .common import INFO, LETTER_DEPTHS, SEPARATION, TIMING, WEIGHTS

__all__ = ["INFO", "LETTER_DEPTHS", "SEPARATION", "TIMING", "WEIGHTS", "Calibration", "calibrated", "scale_of"]


@dataclass(frozen=True)
class Calibration(simbench.Benchmark):
    """Calibration against ensembles of known similarity (seed 001 §3.1, Fig. 1).

    Per metric: the distribution of calibrated similarity over the pairs of
    the random-init ensemble (expected 0) and of the adjacent-epoch ensemble
    (expected 1) -- mean, sd, letter values, bias, RMSE, a model-level
    bootstrap interval of the mean -- and how well the two are told apart
    (AUROC, overlapping coefficient, Cohen's d).  For activation metrics, the
    same against the number of probes (``probe_counts``; 0 = all probes;
    ``count_draws`` random subsets each) and the compute time of one pair
    against the number of probes (``timing_repeats`` calls, median and
    quartiles).  The pre-declared overlap verdict pools every probe set's
    pairs per metric in ``overlap_metrics`` (see the module docstring);
    ``subset_metrics`` run on ``subset_probes`` rows of every probe set.
    The zoo labels models with ``factor``; ``low`` / ``high``
    name the ensembles expected at 0 / 1.  See the module docstring for the
    record scheme; the leaderboard's verdict table checks seed 001's claims.
    """

    name: ClassVar[str] = "calibration"
    description: ClassVar[str] = "random-init (expect 0) vs adjacent-epoch (expect 1) ensembles; probes; time"
    version: ClassVar[str] = "2"

    factor: str = "ensemble"
    low: str = "random"
    high: str = "converged"
    probe_sets: tuple[str, ...] = ()
    count_probe_set: str = "clean"
    probe_counts: tuple[int, ...] = (10, 20, 50, 100, 200, 0)
    count_draws: Annotated[int, Field(ge=1)] = 3
    count_models: Annotated[int, Field(ge=2)] = 20
    timing_repeats: Annotated[int, Field(ge=0)] = 20
    n_bootstrap: Annotated[int, Field(ge=0)] = 500
    tolerance: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.1
    subset_metrics: tuple[str, ...] = ()
    subset_probes: Annotated[int, Field(ge=4)] = 500
    overlap_metrics: tuple[str, ...] = ("procrustes", "linear_cka", "dcka")
    overlap_at_least: Annotated[int, Field(ge=1)] = 2
    seed_random_above: Annotated[float, Field(ge=0.0, le=1.0)] = 0.3
    seed_converged_below: Annotated[float, Field(ge=0.0, le=1.0)] = 0.8

    #: for ``simbench.testing.check_benchmark``: the fake store's two architectures stand in for the ensembles
    check_example: ClassVar[dict[str, Any]] = {"params": {
        "factor": "arch", "low": "wide", "high": "narrow", "probe_counts": (10, 0), "count_draws": 2,
        "count_models": 3, "timing_repeats": 2, "n_bootstrap": 50}}

    def __post_init__(self) -> None:
        if self.low == self.high:
            raise ParamError("high", f"must differ from low ({self.low!r})")
        if any(k < 0 for k in self.probe_counts):
            raise ParamError("probe_counts", "expected probe counts >= 1 (or 0 for all probes)")
        if any(0 < k < 4 for k in self.probe_counts):
            raise ParamError("probe_counts", "several metrics need at least 4 probes; use counts >= 4")
        if len(set(self.subset_metrics)) != len(self.subset_metrics):
            raise ParamError("subset_metrics", "a metric is listed twice")
        if not self.overlap_metrics:
            raise ParamError("overlap_metrics", "expected at least one metric label (the seed's three: procrustes, "
                             "linear_cka, dcka)")
        if self.overlap_at_least > len(self.overlap_metrics):
            raise ParamError("overlap_at_least", f"expected at most {len(self.overlap_metrics)} (the number of "
                             "overlap_metrics)")

    def requests(self, view: simbench.StoreView) -> list[simbench.MatrixRequest]:
        """The probe-count matrices (random probe subsets of each ensemble's first ``count_models`` models) and
        the timed pairs, per metric; the runner computes them before :meth:`evaluate` reads them."""
        from . import compute

        return compute.requests(self, view)

    def evaluate(self, view: simbench.StoreView) -> list[simbench.Record]:
        """Distributions from the suite's matrices, probe counts and timing from the declared ones."""
        from . import compute

        return compute.evaluate(self, view)

    @classmethod
    def tables(cls, records: Any) -> list[Any]:
        """Headline distribution table, the verdict on seed 001's claims, separation, probe counts, timing."""
        from . import report

        return report.tables(records)

    @classmethod
    def plots(cls, records: Any, out_dir: Any, view: simbench.StoreView | None = None) -> list[Any]:
        """Letter-value box plots per ensemble, calibration against probe count, time against probe count."""
        from . import report

        return report.plots(records, out_dir)
