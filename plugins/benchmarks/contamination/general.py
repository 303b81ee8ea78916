"""Computation and tables of ``contamination_general`` (seed 004's general setting, App. F.1, Fig. 3(d) / 10).

Per model (the models are the units; the seed's runs differ by seed only): ``log_align`` = ``log R`` of the
hidden weights (:func:`simbench_plugins.data._contamination_impl.background_alignment`: energy along the mean
background direction over the mean energy along the other background directions; 0 without a preferred
direction), the same at initialisation (the zoo's trace, step 0), the signed mean background coordinate, and
hinge risk / 0-1 error on the ID and OOD probe sets.  Per activation, the pre-declared tests (seeds = units):

- contamination: one-sided one-sample t-test of ``mean log R > log(align_threshold)`` over the activation's
  models, Holm-adjusted over the tested activations, at ``alpha``; an activation whose mean ID error exceeds
  ``max_id_error`` did not learn the task and counts as not contaminated (the seed's claim is about networks that
  learn the core features);
- OOD failure (reported, not part of the claim): one-sided paired t-test of OOD error > ID error at ``alpha``.

The claim ("contamination in the general setting, for every activation tried") is reproduced when every tested
activation is contaminated.  Control activations (``identity``) get the same test, unadjusted, outside the claim.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
import torch

import simbench
from simbench.types import Table

from .._records import records_frame

BENCH = ""
ARCH_STATS = ("n", "id_error", "ood_error", "id_risk", "ood_risk", "log_align_init", "log_align", "align_ratio",
              "t", "p", "p_holm", "learned", "contaminated", "p_ood", "fails_ood", "bg_corr", "role")
VERDICT_TEXT = {1.0: "reproduced", 0.0: "not reproduced"}


def _rec(statistic: str, value: float, model: str = "", group: str = "", probe: str = "",
         n: int | None = None) -> Any:
    return simbench.Record(benchmark=BENCH, statistic=statistic, value=float(value), probe_set=probe, group=group,
                           model_a=model, n=n)


def one_sided_t(values: Any, mu0: float) -> tuple[float, float]:
    """``(t, p)`` of the one-sample t-test of ``mean(values) > mu0`` (one-sided; p = 1 for fewer than 2 values
    or zero spread with the mean at or below ``mu0``, 0 with zero spread above it)."""
    from scipy import stats

    v = np.asarray(values, dtype=float)
    if len(v) < 2:
        return float("nan"), 1.0
    if float(v.std(ddof=1)) == 0.0:
        return (float("inf"), 0.0) if float(v.mean()) > mu0 else (float("-inf"), 1.0)
    res = stats.ttest_1samp(v, mu0, alternative="greater")
    return float(res.statistic), float(res.pvalue)


def holm(pvalues: list[float]) -> list[float]:
    """Holm-adjusted p values (step-down, monotone, capped at 1), in the input order."""
    order = sorted(range(len(pvalues)), key=lambda i: pvalues[i])
    out = [1.0] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(pvalues) - rank) * pvalues[i]))
        out[i] = running
    return out


def _scores(view: Any, probe: str, n: int) -> torch.Tensor:
    outputs = view.outputs(probe)
    logits = torch.stack([outputs[k].double().cpu().reshape(n, -1) for k in range(len(view.specs))])
    return logits[:, :, 1] - logits[:, :, 0]


def evaluate(bench: Any, view: Any) -> list[Any]:
    from simbench_plugins.data import _contamination_impl as data_impl

    meta = view.data.meta
    if meta.get("generator") != "feature_contamination":
        raise ValueError("contamination_general needs feature_contamination data")
    for probe in (bench.id_probe_set, bench.ood_probe_set):
        if probe not in view.probe_sets:
            raise ValueError(f"contamination_general: no probe set {probe!r}; available: {list(view.probe_sets)}")
    _, bgb = data_impl.subspaces(meta)
    specs = list(view.specs)
    archs = {s.id: str(s.factors.get("arch", "")) for s in specs}
    records: list[Any] = []
    per: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    errors: dict[str, dict[str, float]] = {}
    for probe, tag in ((bench.id_probe_set, "id"), (bench.ood_probe_set, "ood")):
        ps = view.probe_set(probe)
        n = int(ps.y.shape[0])
        sign = (2 * ps.y.reshape(-1).long().cpu() - 1).double()
        f = _scores(view, probe, n)
        for k, spec in enumerate(specs):
            margin = sign * f[k]
            risk, err = float(torch.clamp(1 - margin, min=0).mean()), float((margin <= 0).double().mean())
            records += [_rec("hinge_risk", risk, spec.id, archs[spec.id], probe, n),
                        _rec("error", err, spec.id, archs[spec.id], probe, n)]
            per[archs[spec.id]][f"{tag}_risk"].append(risk)
            per[archs[spec.id]][f"{tag}_error"].append(err)
            errors.setdefault(spec.id, {})[tag] = err
    for spec in specs:
        arch = archs[spec.id]
        w = view.weights(spec.id)[0].double().cpu().T  # [m, d_in]
        log_align = float(data_impl.background_alignment(w, bgb))
        bg_corr = float((w @ bgb).mean())
        records += [_rec("log_align", log_align, spec.id, arch), _rec("bg_corr", bg_corr, spec.id, arch)]
        per[arch]["log_align"].append(log_align)
        per[arch]["bg_corr"].append(bg_corr)
        per[arch]["ood_minus_id_error"].append(errors[spec.id]["ood"] - errors[spec.id]["id"])
        history = view.buffers(spec.id).get("history")
        columns = data_impl.HISTORY_COLUMNS
        if history is not None and history.numel() and history.shape[1] == len(columns):
            init = float(history[0, columns.index("bg_align")])
            records.append(_rec("log_align_init", init, spec.id, arch))
            per[arch]["log_align_init"].append(init)

    tested = [a for a in per if a not in bench.control_archs]
    missing = [a for a in bench.tested_archs if a not in per]
    if missing:
        raise ValueError(f"contamination_general: tested_archs {missing} have no models; zoo archs: {list(per)}")
    if bench.tested_archs:
        tested = [a for a in tested if a in bench.tested_archs]
    mu0 = float(np.log(bench.align_threshold))
    tests = {a: one_sided_t(per[a]["log_align"], mu0) for a in per}
    adjusted = dict(zip(tested, holm([tests[a][1] for a in tested])))
    all_contaminated = True
    for arch, vals in per.items():
        role = "tested" if arch in tested else "control"
        learned = float(np.mean(vals["id_error"])) <= bench.max_id_error
        p_adj = adjusted.get(arch, tests[arch][1])
        contaminated = learned and p_adj < bench.alpha
        if role == "tested":
            all_contaminated = all_contaminated and contaminated
        _, p_ood = one_sided_t(vals["ood_minus_id_error"], 0.0)
        n = len(vals["log_align"])
        rows = {
            "n": n, "id_error": np.mean(vals["id_error"]), "ood_error": np.mean(vals["ood_error"]),
            "id_risk": np.mean(vals["id_risk"]), "ood_risk": np.mean(vals["ood_risk"]),
            "log_align": np.mean(vals["log_align"]), "align_ratio": float(np.exp(np.mean(vals["log_align"]))),
            "t": tests[arch][0], "p": tests[arch][1], "p_holm": p_adj, "learned": float(learned),
            "contaminated": float(contaminated), "p_ood": p_ood, "fails_ood": float(p_ood < bench.alpha),
            "bg_corr": np.mean(vals["bg_corr"]), "role": 1.0 if role == "tested" else 0.0,
        }
        if vals["log_align_init"]:
            rows["log_align_init"] = np.mean(vals["log_align_init"])
        records += [_rec(f"arch_{k}", float(v), "", arch, "", n) for k, v in rows.items()]
    records += [
        _rec("verdict_reproduced", float(all_contaminated and bool(tested)), "", "verdict"),
        _rec("verdict_n_tested", float(len(tested)), "", "verdict"),
        _rec("verdict_n_contaminated",
             float(sum(1 for a in tested if adjusted[a] < bench.alpha
                       and float(np.mean(per[a]["id_error"])) <= bench.max_id_error)), "", "verdict"),
        _rec("param_align_threshold", bench.align_threshold, "", "verdict"),
        _rec("param_alpha", bench.alpha, "", "verdict"),
        _rec("param_max_id_error", bench.max_id_error, "", "verdict"),
    ]
    return records


def tables(records: Any) -> list[Table]:
    import pandas as pd

    df = records_frame(records, ok_only=True)
    if df.empty:
        return []
    arch_rows = df[df["statistic"].str.startswith("arch_")]
    rows = []
    for arch in dict.fromkeys(arch_rows["group"]):
        m = arch_rows[arch_rows["group"] == arch].set_index("statistic")["value"]

        def get(key: str, m: Any = m) -> float:
            return float(m.get(f"arch_{key}", float("nan")))

        tested = get("role") == 1.0
        if not tested:
            verdict = "control: contaminated" if get("contaminated") == 1.0 else "control: not contaminated"
        elif get("learned") != 1.0:
            verdict = "not reproduced (did not learn the task ID)"
        else:
            verdict = "contaminated" if get("contaminated") == 1.0 else "not reproduced (not contaminated)"
        rows.append({
            "arch": arch, "role": "tested" if tested else "control", "n_models": int(get("n")),
            "error_id": get("id_error"), "error_ood": get("ood_error"), "risk_id": get("id_risk"),
            "risk_ood": get("ood_risk"), "align_ratio_init": float(np.exp(get("log_align_init"))),
            "align_ratio": get("align_ratio"), "t": get("t"), "p": get("p"), "p_holm": get("p_holm"),
            "bg_corr": get("bg_corr"), "p_ood": get("p_ood"),
            "fails_ood": "yes" if get("fails_ood") == 1.0 else "no", "verdict": verdict,
        })
    v = df[df["group"] == "verdict"].set_index("statistic")["value"]
    thr, alpha, max_err = (float(v.get(k, float("nan"))) for k in
                           ("param_align_threshold", "param_alpha", "param_max_id_error"))
    out = [Table(
        "general", "Feature contamination in the general setting, per activation (seeds are the units)",
        pd.DataFrame(rows),
        f"align_ratio = geometric mean over models of R, the hidden weights' energy along the mean background "
        f"direction over the mean energy along the other background directions (R = 1: no preferred direction; "
        f"_init = at initialisation); contaminated = one-sided t-test over the models of mean log R > "
        f"log {thr:g}, Holm over the tested activations, p_holm < {alpha:g}, and mean ID error <= {max_err:g}; "
        f"p_ood = one-sided paired t-test of OOD error > ID error (reported, not part of the claim).",
    )]
    if len(v):
        reproduced = float(v.get("verdict_reproduced", 0.0))
        not_cont = [r["arch"] for r in rows if r["role"] == "tested" and r["verdict"] != "contaminated"]
        text = VERDICT_TEXT[reproduced] + ("" if reproduced else f" ({', '.join(not_cont)} not contaminated)")
        out.append(Table("verdict", "Is contamination in the general setting reproduced (seed 004 App. F.1)?",
                         pd.DataFrame([{
                             "claim": "every activation tried is contaminated in the general setting",
                             "n_tested": int(v.get("verdict_n_tested", 0)),
                             "n_contaminated": int(v.get("verdict_n_contaminated", 0)),
                             "reproduced": "yes" if reproduced == 1.0 else "no", "verdict": text,
                         }]),
                         "Pre-declared: reproduced when every tested activation is contaminated (table above)."))
    per_model = df[(df["model_a"] != "")]
    if len(per_model):
        wide = per_model.pivot_table(index=["group", "model_a"], columns=["statistic", "probe_set"], values="value",
                                     aggfunc="first")
        wide.columns = [f"{s} ({p})" if p else s for s, p in wide.columns]
        out.append(Table("per_model", "Per model", wide.reset_index().rename(columns={"group": "arch",
                                                                                      "model_a": "model"})))
    return out
