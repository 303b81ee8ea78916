"""Size and power of the functional-agreement ranking, by simulation (issue "One answer, calibrated").

The benchmark's own ``Analysis`` is the black box: each trial draws a dyadic data set from a
generative model with *model-level random effects in both the similarity and the agreement*,
runs the analysis the boards run (same bootstrap, jackknife, step-down tests, tie margin,
min_clusters), and reads the records.  Per cell (metrics Q x models M x scenario) it reports

- ``false_exclusion``: share of trials in which at least one truly best metric is left out of the
  best set (family-wise; target <= 5 %);
- ``false_mark``: share of trials in which a truly best metric carries a mark (identical to the
  above by construction -- a mark means "outside the best set" -- and measured separately);
- ``coverage``: share of (trial, metric) intervals ``pearson_ci_*`` that contain the true r
  (target 95 %), and ``rank_coverage``: share of trials in which every metric's rank confidence
  set contains its true rank (ties: any rank its tie group spans);
- ``power``: share of truly worse metrics excluded from the best set, and ``power_all``: share of
  trials in which all of them are.

Generative model (pairs i < j of M models, unit-variance agreement):
``y_ij = u_i + u_j + e_ij`` (model effects u, variance 0.3 each, pair noise 0.4);
``x_qij = λ_q y_ij + (s_i + s_j + w_ij) + (v_qi + v_qj + η_qij)``: a component shared by every
metric (variance 1.0, half of it model-level) and a metric-specific one (variance 0.3, half
model-level), so metrics are strongly correlated with each other as real metrics are.
``λ_q`` sets each metric's population correlation with agreement,
``ρ_q = λ_q / sqrt(λ_q² + 1.3)``.  Model-level effects are Student-t with 3 degrees of freedom
(heavy-tailed; scaled to the same variance) unless ``--normal``: heavy tails are where percentile
bootstrap intervals under-cover at 36 models.

Scenarios: ``tied`` (every metric ρ = 0.6), ``dr0.1`` / ``dr0.2`` (one metric at 0.6, the others
tied at 0.5 / 0.4).  Monte-Carlo standard error of a rate p over T trials: sqrt(p(1-p)/T).

    .venv/bin/python benchmarks/bench_ranking.py                    # the shipped study (~1 h on 2 cores)
    .venv/bin/python benchmarks/bench_ranking.py --trials 100 --models 36 --metrics 4
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHARED, SPECIFIC = 1.0, 0.3  # variances of the shared and metric-specific parts of a similarity
U_VAR, E_VAR = 0.3, 0.4  # agreement: model effect variance (each model), pair noise variance
MODEL_SHARE = 0.5  # share of each similarity component that is model-level
SCENARIOS = {"tied": 0.0, "dr0.1": 0.1, "dr0.2": 0.2}
BEST_RHO = 0.6


def loading(rho: float) -> float:
    """λ giving population correlation ``rho`` with agreement (var y = 1, noise variance 1.3)."""
    return rho * math.sqrt(SHARED + SPECIFIC) / math.sqrt(1.0 - rho * rho)


def _effects(rng: np.random.Generator, variance: float, n: int, heavy: bool) -> np.ndarray:
    if heavy:  # Student t3 has variance 3
        return rng.standard_t(3, n) * math.sqrt(variance / 3.0)
    return rng.normal(0.0, math.sqrt(variance), n)


def draw(rng: np.random.Generator, m: int, rhos: np.ndarray, heavy: bool) -> tuple[np.ndarray, np.ndarray]:
    """One data set: similarities ``[Q, 1, M, M]`` and agreement ``[1, M, M]`` (symmetric)."""
    iu, ju = np.triu_indices(m, 1)
    p = len(iu)

    def dyadic(model_var: float, pair_var: float) -> np.ndarray:
        a = _effects(rng, model_var, m, heavy)
        return a[iu] + a[ju] + rng.normal(0.0, math.sqrt(pair_var), p)

    y = dyadic(U_VAR, E_VAR)
    shared = dyadic(SHARED * MODEL_SHARE / 2, SHARED * (1 - MODEL_SHARE))
    x = np.stack([loading(r) * y + shared + dyadic(SPECIFIC * MODEL_SHARE / 2, SPECIFIC * (1 - MODEL_SHARE))
                  for r in rhos])

    def square(v: np.ndarray) -> np.ndarray:
        out = np.zeros(v.shape[:-1] + (m, m))
        out[..., iu, ju] = v
        out[..., ju, iu] = v
        return out

    return square(x)[:, None], square(y)[None]


def run_cell(q: int, m: int, scenario: str, trials: int, n_boot: int, heavy: bool, seed: int) -> dict:
    from simbench_plugins.benchmarks.functional_agreement import ALL_PROBES, FunctionalAgreement
    from simbench_plugins.benchmarks.functional_agreement.compute import Analysis

    delta = SCENARIOS[scenario]
    rhos = np.array([BEST_RHO] + [BEST_RHO - delta] * (q - 1))
    best = rhos == rhos.max()
    names = [f"m{i:02d}" for i in range(q)]
    bench = FunctionalAgreement(n_bootstrap=n_boot, n_permutations=0, groups=("all",))
    factors = [{"seed": i} for i in range(m)]
    # true ranks (ties: the range their tie group spans)
    true_low = np.array([1 + int((rhos > r).sum()) for r in rhos])
    true_high = np.array([int((rhos >= r).sum()) for r in rhos])
    rng = np.random.default_rng([seed, q, m, int(delta * 1000), int(heavy)])
    excl = marked = rank_cov = power_all = 0
    cover = power = 0.0
    start = time.perf_counter()
    for trial in range(trials):
        x, y = draw(rng, m, rhos, heavy)
        analysis = Analysis(bench, names, ["clean"], {ALL_PROBES: [0]}, seed=trial, detail=False)
        stat: dict[tuple[str, str], float] = {}
        for rec in analysis.run(x, y, factors):
            if rec.probe_set == ALL_PROBES and rec.metric:
                stat[(rec.statistic, rec.metric)] = rec.value
        inside = np.array([stat.get(("in_best_set", n), np.nan) == 1.0 for n in names])
        has_mark = np.array([("worse_p", n) in stat for n in names])
        lo = np.array([stat[("pearson_ci_low", n)] for n in names])
        hi = np.array([stat[("pearson_ci_high", n)] for n in names])
        rlo = np.array([stat[("rank_set_low", n)] for n in names])
        rhi = np.array([stat[("rank_set_high", n)] for n in names])
        excl += bool((~inside[best]).any())
        marked += bool(has_mark[best].any())
        cover += float(((lo <= rhos) & (rhos <= hi)).mean())
        rank_cov += bool(((rlo <= true_high) & (rhi >= true_low)).all())
        if (~best).any():
            power += float((~inside[~best]).mean())
            power_all += bool((~inside[~best]).all())
    t = trials
    out = {"metrics": q, "models": m, "scenario": scenario, "trials": t, "n_bootstrap": n_boot,
           "effects": "t3" if heavy else "normal", "false_exclusion": excl / t, "false_mark": marked / t,
           "coverage": cover / t, "rank_coverage": rank_cov / t,
           "power": power / t if delta else None, "power_all": power_all / t if delta else None,
           "seconds": round(time.perf_counter() - start, 1)}
    out["mc_se_5pct"] = math.sqrt(0.05 * 0.95 / t)
    return out


def markdown(rows: list[dict]) -> str:
    head = ("| effects | metrics | models | scenario | trials | B | false exclusion | false mark | "
            "interval coverage | rank-set coverage | power (per worse metric) | power (all worse) |")
    lines = [head, "|" + "---|" * 12]
    for r in rows:
        def pct(v: float | None) -> str:
            return "—" if v is None else f"{100 * v:.1f} %"
        lines.append(f"| {r['effects']} | {r['metrics']} | {r['models']} | {r['scenario']} | {r['trials']} | "
                     f"{r['n_bootstrap']} | {pct(r['false_exclusion'])} | {pct(r['false_mark'])} | "
                     f"{pct(r['coverage'])} | {pct(r['rank_coverage'])} | {pct(r['power'])} | {pct(r['power_all'])} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=400)
    parser.add_argument("--metrics", type=int, nargs="+", default=[4, 15])
    parser.add_argument("--models", type=int, nargs="+", default=[36, 180])
    parser.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), choices=list(SCENARIOS))
    parser.add_argument("--boot", type=int, default=2000, help="bootstrap replicates at 36 models (the boards')")
    parser.add_argument("--boot-large", type=int, default=500,
                        help="bootstrap replicates at more than 50 models (cost; the boards use 2000)")
    parser.add_argument("--normal", action="store_true", help="normal instead of t3 model effects")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--out", type=Path, default=None, help="append each finished cell to this JSON file")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    rows = []
    if args.out and args.out.exists():
        rows = json.loads(args.out.read_text())
    for m in args.models:
        for q in args.metrics:
            for scenario in args.scenarios:
                key = ("normal" if args.normal else "t3", q, m, scenario)
                if any((r["effects"], r["metrics"], r["models"], r["scenario"]) == key for r in rows):
                    continue
                row = run_cell(q, m, scenario, args.trials, args.boot if m <= 50 else args.boot_large,
                               not args.normal, args.seed)
                rows.append(row)
                print(json.dumps(row), flush=True)
                if args.out:
                    args.out.write_text(json.dumps(rows, indent=1) + "\n")
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
