"""Computation and tables of ``contamination_distill`` (seed 004 §2 analogue on the synthetic generator).

Reads the ``contamination_distill`` zoo's models from the store view: the probe outputs (accuracy ID and OOD),
the hidden representations (how far the student is from the teacher, ID and OOD) and the hidden weights (the
background alignment ``log R`` of :func:`simbench_plugins.data._contamination_impl.background_alignment`).

Per seed (the unit: one teacher, its student and a standard network share the seed): the fraction of the
teacher-vs-standard OOD accuracy gap the student closes, ``f = (acc_S - acc_B) / (acc_T - acc_B)`` on the OOD
probe set (the seed's effective-robustness gap, whose baseline is the standard models; here the three have nearly
the same ID accuracy, so the gap is the OOD accuracy difference).  Pre-declared verdict (seed §2: distilled models
gain over standard models but "close only about half" of the gap, with ID accuracy like the teacher's):

- ``no verdict`` when the distillation failed ID (mean student ID accuracy below the teacher's by more than
  ``id_tolerance``) or the teacher is not better than the standard networks OOD (no gap to close);
- ``reproduced`` when both one-sided t-tests over the seeds reject at ``alpha`` (intersection-union, no
  correction needed): mean ``f > 0`` (the student gains) and mean ``f < max_closed`` (it leaves at least
  ``1 - max_closed`` of the gap open);
- ``not reproduced`` otherwise, saying which half failed.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

import simbench
from simbench.types import Table

from .._records import records_frame
from .general import one_sided_t

BENCH = ""
ROLES = ("teacher", "student", "standard")


def _rec(statistic: str, value: float, model: str = "", group: str = "", probe: str = "",
         n: int | None = None) -> Any:
    return simbench.Record(benchmark=BENCH, statistic=statistic, value=float(value), probe_set=probe, group=group,
                           model_a=model, n=n)


def verdict_code(id_ok: bool, gap_ok: bool, p_gain: float, p_lag: float, alpha: float) -> str:
    """The pre-declared verdict (module docstring) as one word: ``no_verdict_id``, ``no_verdict_gap``,
    ``reproduced``, ``not_lagging`` (the student closes too much of the gap) or ``no_gain``."""
    if not id_ok:
        return "no_verdict_id"
    if not gap_ok:
        return "no_verdict_gap"
    if p_lag >= alpha:
        return "not_lagging"
    if p_gain >= alpha:
        return "no_gain"
    return "reproduced"


CODES = {"reproduced": 1.0, "not_lagging": 2.0, "no_gain": 3.0, "no_verdict_id": 4.0, "no_verdict_gap": 5.0}


def evaluate(bench: Any, view: Any) -> list[Any]:
    from simbench_plugins.data import _contamination_impl as data_impl

    meta = view.data.meta
    if meta.get("generator") != "feature_contamination":
        raise ValueError("contamination_distill needs feature_contamination data")
    for probe in (bench.id_probe_set, bench.ood_probe_set):
        if probe not in view.probe_sets:
            raise ValueError(f"contamination_distill: no probe set {probe!r}; available: {list(view.probe_sets)}")
    specs = list(view.specs)
    by_seed: dict[int, dict[str, int]] = defaultdict(dict)
    for k, spec in enumerate(specs):
        role = str(spec.factors.get("arch", ""))
        if role not in ROLES:
            raise ValueError(f"contamination_distill: model {spec.id} has arch {role!r}; expected one of {ROLES} "
                             "(the contamination_distill zoo)")
        by_seed[int(spec.factors.get("seed", 0))][role] = k
    seeds = sorted(s for s, roles in by_seed.items() if len(roles) == len(ROLES))
    if len(seeds) < 2:
        raise ValueError("contamination_distill: needs at least two seeds with a teacher, a student and a standard "
                         "network each")
    _, bgb = data_impl.subspaces(meta)
    records: list[Any] = []
    acc: dict[tuple[int, str], float] = {}  # (spec index, "id"/"ood") -> accuracy
    rep_err: dict[tuple[int, str], float] = {}  # (seed, "id"/"ood") -> student's relative error
    for probe, tag in ((bench.id_probe_set, "id"), (bench.ood_probe_set, "ood")):
        ps = view.probe_set(probe)
        n = int(ps.y.shape[0])
        labels = ps.y.reshape(-1).long().cpu()
        outputs = view.outputs(probe)
        hidden = view.representations(probe, "hidden")
        for k, spec in enumerate(specs):
            logits = outputs[k].double().cpu().reshape(n, -1)
            a = float((logits.argmax(1) == labels).double().mean())
            acc[(k, tag)] = a
            records.append(_rec("accuracy", a, spec.id, str(spec.factors["arch"]), probe, n))
        for s in seeds:
            h_t = hidden[by_seed[s]["teacher"]].double().cpu().reshape(n, -1)
            h_s = hidden[by_seed[s]["student"]].double().cpu().reshape(n, -1)
            err = float(((h_s - h_t) ** 2).sum() / (h_t**2).sum().clamp(min=1e-30))
            rep_err[(s, tag)] = err
            records.append(_rec("student_rep_error", err, view.specs[by_seed[s]["student"]].id, "student", probe, n))
    for k, spec in enumerate(specs):
        w = view.weights(spec.id)[0].double().cpu().T
        records.append(_rec("log_align", float(data_impl.background_alignment(w, bgb)), spec.id,
                            str(spec.factors["arch"])))
    closed = []
    for s in seeds:
        t, st, b = (acc[(by_seed[s][r], "ood")] for r in ROLES)
        if t - b > 0:
            closed.append((st - b) / (t - b))
            records.append(_rec("gap_closed", closed[-1], specs[by_seed[s]["student"]].id, "student",
                                bench.ood_probe_set))
    means = {(r, tag): float(np.mean([acc[(by_seed[s][r], tag)] for s in seeds])) for r in ROLES for tag in
             ("id", "ood")}
    for (r, tag), v in means.items():
        records.append(_rec("mean_accuracy", v, "", r, bench.id_probe_set if tag == "id" else bench.ood_probe_set,
                            len(seeds)))
    for tag in ("id", "ood"):
        records.append(_rec("mean_student_rep_error", float(np.mean([rep_err[(s, tag)] for s in seeds])), "",
                            "student", bench.id_probe_set if tag == "id" else bench.ood_probe_set, len(seeds)))
    id_ok = means[("student", "id")] >= means[("teacher", "id")] - bench.id_tolerance
    gap_ok = len(closed) == len(seeds)  # the teacher beats the standard network OOD for every seed
    _, p_gain = one_sided_t(closed, 0.0) if closed else (0.0, 1.0)
    _, p_lag = one_sided_t([-c for c in closed], -bench.max_closed) if closed else (0.0, 1.0)
    code = verdict_code(id_ok, gap_ok, p_gain, p_lag, bench.alpha)
    mean_closed = float(np.mean(closed)) if closed else float("nan")
    sd = float(np.std(closed, ddof=1)) if len(closed) > 1 else float("nan")
    for stat, value in (("gap_closed_mean", mean_closed), ("gap_closed_sd", sd), ("n_seeds", len(seeds)),
                        ("p_gain", p_gain), ("p_lag", p_lag), ("id_ok", float(id_ok)), ("gap_ok", float(gap_ok)),
                        ("verdict_code", CODES[code]), ("param_max_closed", bench.max_closed),
                        ("param_alpha", bench.alpha), ("param_id_tolerance", bench.id_tolerance)):
        records.append(_rec(stat, float(value), "", "verdict", bench.ood_probe_set, len(seeds)))
    return records


def verdict_text(code: float, mean_closed: float, max_closed: float) -> str:
    """The verdict sentence of a stored ``verdict_code``."""
    name = {v: k for k, v in CODES.items()}.get(code, "")
    pct = f"{100 * mean_closed:.0f} %"
    return {
        "reproduced": f"reproduced (the student closes {pct} of the gap)",
        "not_lagging": f"not reproduced (the student closes {pct} of the gap, not significantly less than "
                       f"{100 * max_closed:.0f} %)",
        "no_gain": f"not reproduced (the student closes {pct} of the gap, not significantly more than 0)",
        "no_verdict_id": "no verdict (the distillation failed ID)",
        "no_verdict_gap": "no verdict (the teacher is not better than standard training OOD for every seed)",
    }.get(name, "no verdict")


def tables(records: Any) -> list[Table]:
    import pandas as pd

    df = records_frame(records, ok_only=True)
    if df.empty:
        return []
    means = df[df["statistic"] == "mean_accuracy"]
    probes = list(dict.fromkeys(means["probe_set"]))
    rows = []
    for role in ROLES:
        m = means[means["group"] == role].set_index("probe_set")["value"]
        align = df[(df["statistic"] == "log_align") & (df["group"] == role)]["value"]
        row: dict[str, Any] = {"role": role, "n_models": len(align)}
        if len(probes) == 2:
            row["accuracy_id"] = float(m.get(probes[0], float("nan")))
            row["accuracy_ood"] = float(m.get(probes[1], float("nan")))
        row["align_ratio"] = float(np.exp(align.mean())) if len(align) else float("nan")
        rows.append(row)
    rep = df[df["statistic"] == "mean_student_rep_error"].set_index("probe_set")["value"]
    out = [Table("distillation", "Teacher, distilled student and standard networks (means over seeds)",
                 pd.DataFrame(rows),
                 "accuracy of a linear probe fitted on the frozen hidden layer on the ID training split, on the ID "
                 "probes and on the background-shifted (OOD) probes; align_ratio = geometric mean of R (energy of "
                 "the hidden weights along the mean background direction / along a typical other background "
                 "direction; 1 = none preferred). Student's relative representation error ||h_S - h_T||^2 / "
                 "||h_T||^2: " + ", ".join(f"{p} {v:.3f}" for p, v in rep.items()) + ".")]
    v = df[df["group"] == "verdict"].set_index("statistic")["value"]
    if len(v):
        get = lambda k: float(v.get(k, float("nan")))
        code = get("verdict_code")
        out.append(Table("verdict", "Does the distilled student close only part of the OOD gap (seed 004 §2)?",
                         pd.DataFrame([{
                             "claim": "a student distilled from an OOD-robust teacher closes only part of the gap",
                             "n_seeds": int(get("n_seeds")), "gap_closed": get("gap_closed_mean"),
                             "gap_closed_sd": get("gap_closed_sd"), "p_gain": get("p_gain"), "p_lag": get("p_lag"),
                             "reproduced": "yes" if code == CODES["reproduced"] else "no",
                             "verdict": verdict_text(code, get("gap_closed_mean"), get("param_max_closed")),
                         }]),
                         f"gap_closed = mean over seeds of (acc_student - acc_standard) / (acc_teacher - "
                         f"acc_standard) on the OOD probes; reproduced when one-sided t-tests over the seeds give "
                         f"mean > 0 (p_gain) and mean < {get('param_max_closed'):g} (p_lag), both < "
                         f"{get('param_alpha'):g}, with the student's mean ID accuracy within "
                         f"{get('param_id_tolerance'):g} of the teacher's (seed: about half of the gap)."))
    per_model = df[df["model_a"] != ""]
    if len(per_model):
        wide = per_model.pivot_table(index=["group", "model_a"], columns=["statistic", "probe_set"], values="value",
                                     aggfunc="first")
        wide.columns = [f"{s} ({p})" if p else s for s, p in wide.columns]
        out.append(Table("per_model", "Per model", wide.reset_index().rename(columns={"group": "role",
                                                                                      "model_a": "model"})))
    return out
