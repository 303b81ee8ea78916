"""Functional agreement (Ding et al. 2021; seed 001 §2.4-2.5, §3.2-3.3, Fig. 3-4).

Does a metric's similarity track what two models *do*?  For every metric and
probe set we correlate, over unordered model pairs, the metric's similarity
(oriented so higher = more similar; asymmetric metrics are symmetrised as
``(S + S^T)/2``) with the fraction of probe inputs on which the two models'
predictions agree.  Pairs are grouped by which factor differs: ``"all"``
pairs, and for each factor (seed, epoch, arch, strategy, ...) the pairs that
differ in exactly that factor and agree in every other.

Model pairs share models, so they are not independent observations.  Every
interval and test here resamples *models* (or, in a single-factor group, the
blocks of models that share every other factor), paired across metrics:

- ``pearson_ci_*``: 95 % interval ``tanh(z ± t(U−1)·se)`` with ``se`` the
  leave-one-unit-out jackknife standard error of atanh(r) and U the
  resampling units (models or blocks); chosen over the percentile bootstrap
  because the shipped size study (``benchmarks/bench_ranking.py``) measured
  it closer to 95 % at 36 models; ``pearson_perm_p``: Mantel permutation p
  (model labels permuted);
- probe sets are aggregated by the mean Fisher z, with one draw applied to
  every probe set, so aggregates have honest intervals too; aggregates are
  formed over all probe sets and per family (clean, each perturbation);
- ONE construction gives every ranking statement (``ranking.py``):
  simultaneous, studentized, step-down max-t tests of every ordered metric
  pair on the paired model bootstrap (Romano & Wolf 2005), with an
  indifference margin ``tie_margin`` on the z scale.  A metric's rank
  confidence set (Mogstad, Romano, Shaikh & Wilhelm 2024) counts the metrics
  that beat it and that it beats; the best set is the metrics whose rank set
  contains 1; a metric outside it is marked with the adjusted p of the metric
  that beats it (``worse_p``, named in ``model_b``).  Family-wise error over
  all pairs is controlled at ``level``;
- metrics whose similarity matrices are identical on every probe set (to
  ``duplicate_tolerance``) are analysed once; the others are listed as its
  aliases (``alias_of`` records);
- groups with fewer than ``min_clusters`` resampling units get intervals and
  observed ranks but no verdict: no rank sets, best set or marks;
- ``pearson_indep_ci_*`` (Fisher) and ``spearman_indep_ci_*`` (Bonett &
  Wright 2000) assume independent pairs and are shown only as such.

Models whose accuracy on the clean probe set is at most ``min_accuracy``
(default: chance + ``collapse_margin``) are excluded from the ranking; the
analysis with them is kept as group ``"all (incl. excluded models)"``.

See ``docs/benchmarks.md`` for the record scheme and what every statistic
assumes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import Field

import simbench
from simbench.errors import MeasurementFailed, ParamError, UserError
from simbench.types import Record, Table

from .common import ALL_PROBES, CLEAN, EVERY_FACTOR, WITH_EXCLUDED, WITHIN, family_label, family_of

__all__ = ["FunctionalAgreement", "ALL_PROBES", "WITH_EXCLUDED"]


@dataclass(frozen=True)
class FunctionalAgreement(simbench.Benchmark):
    """Correlation between metric similarity and prediction agreement over model pairs.

    Seed 001 §2.4-2.5 and Fig. 3-4 (after Ding et al. 2021), with model-level
    uncertainty: per metric x pair group x probe set, Pearson r with its
    model-level interval (jackknife SE, t quantiles) and Mantel p, Spearman
    rho, Ding et al.'s bad fraction; aggregated over probe sets by the mean
    Fisher z; rank confidence sets, the best set and the marks, all from one
    family of simultaneous paired tests (``ranking.py``).

    Parameters: ``groups`` (``"all"``, factor names, ``"*"`` = every factor
    that varies in the zoo), ``min_pairs`` (smaller groups are skipped),
    ``n_permutations`` / ``n_bootstrap`` (0 turns either off; without the
    bootstrap there are no intervals, ranks intervals or best set),
    ``min_clusters`` (fewer resampling units: no verdict), ``level``
    (family-wise, of the rank sets, best set and marks), ``tie_margin``
    (differences of mean Fisher z up to it count as ties),
    ``duplicate_tolerance`` (metrics whose matrices differ by at most this,
    relative to their largest value, are reported once), ``bad_fraction_quantile``
    (Ding et al. use 0.2), ``min_accuracy`` (models at or below it on the
    clean probe set are excluded; default chance + ``collapse_margin``),
    ``similarity_probe_set`` (measure similarity on this probe set only),
    ``focus`` / ``rivals`` (a claim to test head on: ``focus`` against each
    rival, per group and probe family, with Pearson and Spearman side by side,
    from the same family of tests as the rank sets), ``within`` (factors held
    fixed: for each value, the whole ranking again on the pairs of models that
    share it, e.g. ``within = ["strategy"]``).
    """

    name = "functional_agreement"
    description = "How well each metric's similarity tracks prediction agreement (Ding et al. 2021), model-level statistics"
    version = "4"

    groups: tuple[str, ...] = ("all", EVERY_FACTOR)
    min_pairs: Annotated[int, Field(ge=3)] = 4
    n_permutations: Annotated[int, Field(ge=0)] = 999
    n_bootstrap: Annotated[int, Field(ge=0)] = 2000
    min_clusters: Annotated[int, Field(ge=2)] = 20
    level: Annotated[float, Field(gt=0.0, lt=0.5)] = 0.05
    #: equals ranking.TIE_MARGIN (kept literal so listing plugins does not import numpy)
    tie_margin: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.01
    duplicate_tolerance: Annotated[float, Field(ge=0.0, lt=1.0)] = 1e-6
    bad_fraction_quantile: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.2
    min_accuracy: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    collapse_margin: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.1
    similarity_probe_set: str = ""
    focus: str = ""
    rivals: tuple[str, ...] = ()
    within: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.groups:
            raise ParamError("groups", "name at least one group ('all', a factor name, or '*')")
        if bool(self.focus) != bool(self.rivals):
            raise ParamError("rivals" if self.focus else "focus",
                             "give both 'focus' (a metric label) and 'rivals' (the metrics it is claimed to beat)")
        if self.focus in self.rivals:
            raise ParamError("rivals", f"the focus metric {self.focus!r} cannot be its own rival")

    # -- evaluation -----------------------------------------------------------------------

    def evaluate(self, view: simbench.StoreView) -> list[Record]:
        import numpy as np

        from .compute import Analysis, as_numpy

        probes = list(view.probe_sets)
        if self.similarity_probe_set and self.similarity_probe_set not in probes:
            raise UserError(f"benchmark {self.name}: similarity_probe_set {self.similarity_probe_set!r} is not a "
                            f"probe set of this suite; it has: {', '.join(probes)}")
        records: list[Record] = []
        if self.similarity_probe_set:
            records.append(Record(self.name, "similarity_measured_on", 1.0, probe_set=self.similarity_probe_set))
        ids = [s.id for s in view.specs]
        kept = self._models_kept(view, ids, records)

        agreement = np.stack([as_numpy(view.agreement(p)) for p in probes])
        metrics: list[str] = []
        layers = []
        for metric in view.metrics:
            layer = np.full((len(probes), len(ids), len(ids)), np.nan)
            for k, probe in enumerate(probes):
                try:
                    s = as_numpy(view.similarity(metric, self.similarity_probe_set or probe))
                except MeasurementFailed as exc:
                    records.append(Record(self.name, "pearson_r", float("nan"), metric=metric, probe_set=probe,
                                          group="all", status="failed", error=str(exc)))
                    continue
                s = 0.5 * (s + s.T)  # unordered pairs: symmetrise asymmetric metrics
                # a metric may be undefined for some models (NaN rows, e.g. a collapsed model's constant
                # representation); harmless when those models are excluded, a failure otherwise
                defined = np.isfinite(s[np.ix_(kept, kept)]) | np.eye(len(kept), dtype=bool)
                undefined = [ids[kept[i]] for i in np.flatnonzero(~defined.all(axis=1))]
                if undefined:
                    records.append(Record(self.name, "pearson_r", float("nan"), metric=metric, probe_set=probe,
                                          group="all", status="failed",
                                          error=f"undefined for {len(undefined)} model(s) that are not excluded: "
                                                f"{', '.join(undefined[:5])}"))
                    continue
                layer[k] = s
            if np.isfinite(layer).any():
                metrics.append(metric)
                layers.append(layer)
        if not metrics:
            return records
        metrics, layers = self._drop_duplicates(metrics, layers, kept, records)
        x = np.stack(layers)  # [Q, K, M, M]; NaN where a metric failed on a probe set
        factors = [dict(s.factors) for s in view.specs]
        families = list(dict.fromkeys(family_of(p) for p in probes))
        aggregates = {ALL_PROBES: list(range(len(probes)))}
        if len(families) > 1:
            for fam in families:
                aggregates[family_label(fam)] = [k for k, p in enumerate(probes) if family_of(p) == fam]
        keep = np.asarray(kept)
        primary = Analysis(self, metrics, probes, aggregates, view.seed)
        records += primary.run(x[:, :, keep][:, :, :, keep], agreement[:, keep][:, :, keep],
                               [factors[i] for i in keep], groups=None)
        if len(keep) < len(ids):
            secondary = Analysis(self, metrics, probes, {ALL_PROBES: aggregates[ALL_PROBES]}, view.seed,
                                 detail=False)
            records += secondary.run(x, agreement, factors, groups=["all"], rename={"all": WITH_EXCLUDED})
        for factor in self.within:
            records += self._within(factor, x, agreement, factors, list(keep), metrics, probes, aggregates, view.seed)
        return records

    def _within(self, factor: str, x: Any, agreement: Any, factors: list[dict[str, Any]], keep: list[int],
                metrics: list[str], probes: list[str], aggregates: dict[str, list[int]], seed: int) -> list[Record]:
        """The ranking (every probe family) on the pairs of kept models that share ``factor``'s value,
        one value at a time: the models are the resampling units, as for 'all'."""
        from .compute import Analysis

        values = list(dict.fromkeys(factors[i].get(factor) for i in keep))
        if len(values) < 2:
            return [Record(self.name, "within_skipped", 1.0, group=f"{WITHIN}{factor}",
                           status="failed", error=f"factor {factor!r} does not vary among the kept models")]
        records: list[Record] = []
        for value in values:
            sub = [i for i in keep if factors[i].get(factor) == value]
            if len(sub) < 3:
                continue
            analysis = Analysis(self, metrics, probes, aggregates, seed, detail=False)
            records += analysis.run(x[:, :, sub][:, :, :, sub], agreement[:, sub][:, :, sub],
                                    [factors[i] for i in sub], groups=["all"],
                                    rename={"all": f"{WITHIN}{factor} = {value}"})
        return records

    def _drop_duplicates(self, metrics: list[str], layers: list[Any], kept: list[int],
                         records: list[Record]) -> tuple[list[str], list[Any]]:
        """Keep the first of each set of metrics whose matrices agree on the kept models and every
        probe set to ``duplicate_tolerance`` (relative to the larger absolute value, NaN where the
        other is NaN); record ``alias_of`` for the others so the page lists them once."""
        import numpy as np

        keep_m: list[str] = []
        keep_l: list[Any] = []
        ix = np.ix_(range(layers[0].shape[0]), kept, kept) if layers else None
        for metric, layer in zip(metrics, layers, strict=True):
            a = layer[ix]
            for other, other_layer in zip(keep_m, keep_l, strict=True):
                b = other_layer[ix]
                same_nan = np.array_equal(np.isnan(a), np.isnan(b))
                scale = max(float(np.nanmax(np.abs(a), initial=0.0)), float(np.nanmax(np.abs(b), initial=0.0)), 1e-300)
                if same_nan and float(np.nanmax(np.abs(a - b), initial=0.0)) <= self.duplicate_tolerance * scale:
                    records.append(Record(self.name, "alias_of", 1.0, metric=metric, model_b=other))
                    break
            else:
                keep_m.append(metric)
                keep_l.append(layer)
        return keep_m, keep_l

    def _models_kept(self, view: simbench.StoreView, ids: list[str], records: list[Record]) -> list[int]:
        """Record every model's accuracy on every probe set; return the indices of the models
        that are not collapsed (accuracy on the clean probe set above ``min_accuracy``)."""
        import numpy as np

        from .compute import as_numpy

        probes = list(view.probe_sets)
        accuracy = {}
        for p in probes:
            accuracy[p] = as_numpy(view.accuracy(p)).reshape(-1)
            for model, value in zip(ids, accuracy[p], strict=True):
                records.append(Record(self.name, "model_accuracy", float(value), probe_set=p, model_a=model))
        threshold = self.min_accuracy
        if threshold is None:
            classes = int(getattr(view.data, "num_classes", 0) or 0)
            if getattr(view.data, "task", "classification") != "classification" or classes < 2:
                return list(range(len(ids)))  # no chance level to judge a regression model by
            threshold = 1.0 / classes + self.collapse_margin
        judge = CLEAN if CLEAN in accuracy else probes[0]
        kept = [i for i in range(len(ids)) if accuracy[judge][i] > threshold]
        if len(kept) < 3:  # nothing left to rank: keep everyone and say so
            records.append(Record(self.name, "min_accuracy_ignored", float(threshold), probe_set=judge))
            kept = list(range(len(ids)))
        records.append(Record(self.name, "min_accuracy", float(threshold), probe_set=judge))
        records.append(Record(self.name, "models_excluded", float(len(ids) - len(kept)), probe_set=judge,
                              n=len(ids)))
        for i in sorted(set(range(len(ids))) - set(kept)):
            records.append(Record(self.name, "model_excluded", 1.0, probe_set=judge, model_a=ids[i]))
        return kept if len(kept) else list(np.arange(len(ids)))

    # -- leaderboard ----------------------------------------------------------------------

    @classmethod
    def tables(cls, records: Any) -> list[Table]:
        """Ranking with the best set (headline), rankings per probe family and per group, the
        per-model accuracy table, the ranking with collapsed models, metric comparisons, bad
        fraction, r per probe set, and every metric x group x probe set."""
        from .report import tables

        return tables(records)

    @classmethod
    def summary(cls, records: Any) -> Any:
        """For the terminal: metric, r with its model-level interval, rank set, P(rank 1), verdict, status."""
        from .report import summary

        return summary(records)

    @classmethod
    def plots(cls, records: Any, out_dir: Any, view: simbench.StoreView | None = None) -> list[Any]:
        """A forest plot (r with model-bootstrap interval per metric, best set marked, per probe
        family), a metric x probe-set heatmap of r, a bad-fraction heatmap and, given the run's view, a
        metric-vs-agreement scatter per pair group."""
        from .report import plots

        return plots(records, out_dir, view, default_label=cls.name)
