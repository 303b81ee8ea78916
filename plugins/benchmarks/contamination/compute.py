"""Computation of the ``contamination`` benchmark (torch); tables and plots are in ``report``.

It reads the store view only: outputs, the ``contamination_net`` float64 layers ``hidden_f64`` and
``act_derivative`` (which the model computes from its pre-activations), the hidden weights (``view.weights``)
and the training trace the zoo stored in each model's ``history`` buffer (``view.buffers``); it runs no model."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
import torch

import simbench

#: records leave ``benchmark`` empty: the runner fills in the suite label of this benchmark entry
BENCH = ""
TRACE_COLUMNS: tuple[str, ...] = ("core_proj", "bg_proj", "bg_corr", "id_risk", "ood_risk", "id_error", "ood_error")


def selectivity(post: torch.Tensor, labels: torch.Tensor, num_classes: int, eps: float) -> torch.Tensor:
    """Per-neuron selectivity (seed 004 eq. 61) of activations ``post [n, m]``.

    ``(mu_max - mu_rest) / (mu_max + mu_rest + eps)`` with ``mu_c`` the
    class-conditional mean activation *magnitude* ("the difference of neuron
    activation magnitudes", §5), ``mu_max`` the largest and ``mu_rest`` the
    mean of the other classes.  For ReLU, magnitude and activation coincide.
    """
    mag = post.abs().double()
    onehot = _onehot(labels, num_classes).to(mag)
    counts = onehot.sum(0).clamp(min=1)
    mu = (onehot.T @ mag) / counts[:, None]  # [C, m]
    mu_max = mu.max(0).values
    rest = (mu.sum(0) - mu_max) / max(1, num_classes - 1)
    return (mu_max - rest) / (mu_max + rest + eps)


def _onehot(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(labels.long().reshape(-1).cpu(), num_classes).double()


def asymmetry(deriv: torch.Tensor, labels: torch.Tensor, eps: float) -> torch.Tensor:
    """Per-neuron ``|D1 - D0| / (|D1| + |D0| + eps)``, ``Dc`` = class-mean derivative of the activation.

    The expected gradient of a neuron's weight along a background feature is
    proportional to ``D1 - D0`` (seed 004 Eq. 7): zero for a linear network,
    whose derivative is 1 for every input.
    """
    d = deriv.double().cpu()
    lab = labels.reshape(-1).cpu()
    d1 = d[lab == 1].mean(0)
    d0 = d[lab == 0].mean(0)
    return (d1 - d0).abs() / (d1.abs() + d0.abs() + eps)


#: the model layers this benchmark reads (float64 in ``contamination_net``): post-activations, activation slopes
POST_LAYER, DERIVATIVE_LAYER = "hidden_f64", "act_derivative"


def _rec(statistic: str, value: float, model: str = "", group: str = "", probe: str = "", n: int | None = None,
         coords: dict[str, float] | None = None) -> Any:
    return simbench.Record(
        benchmark=BENCH, statistic=statistic, value=float(value), probe_set=probe, group=group, model_a=model,
        n=n, coords=coords or {},
    )


def _check_layers(view: Any, specs: Any) -> None:
    for spec in specs:
        missing = [name for name in (POST_LAYER, DERIVATIVE_LAYER) if name not in view.layers(spec.id)]
        if missing:
            raise ValueError(f"contamination: model {spec.id} has no layer(s) {missing} (the contamination_net "
                             "zoo's post-activation and activation-derivative layers)")


def paired_tests(specs: Any, per_model: dict[tuple[str, str, str], float], contaminated_arch: str,
                 linear_arch: str, ood_probe: str) -> tuple[float, float, int]:
    """Model-level tests of the finding, pairing the two archs' models of the same seed (same initial weights and
    batch order): one-sided paired t-tests over the seeds of ``log(bg_proj ratio) > log 2`` and of ``OOD
    hinge-risk gap difference > 0.1``.  Returns ``(p_contaminated, p_fails_ood, pairs)``; p = 1 with < 2 pairs."""
    from .general import one_sided_t

    by_seed: dict[Any, dict[str, str]] = defaultdict(dict)
    for spec in specs:
        by_seed[spec.factors.get("seed")][str(spec.factors.get("arch", ""))] = spec.id
    log_ratio, gap_diff = [], []
    for models in by_seed.values():
        if contaminated_arch in models and linear_arch in models:
            a, b = models[contaminated_arch], models[linear_arch]
            log_ratio.append(float(np.log(per_model[(a, "", "bg_proj")] / max(per_model[(b, "", "bg_proj")], 1e-30))))
            gap_diff.append(per_model[(a, ood_probe, "ood_gap_risk")] - per_model[(b, ood_probe, "ood_gap_risk")])
    if len(log_ratio) < 2:
        return 1.0, 1.0, len(log_ratio)
    return one_sided_t(log_ratio, float(np.log(2.0)))[1], one_sided_t(gap_diff, 0.1)[1], len(log_ratio)


def evaluate(bench: Any, view: Any) -> list[Any]:
    from simbench_plugins.data import _contamination_impl as data_impl

    meta = view.data.meta
    if meta.get("generator") != "feature_contamination":
        raise ValueError("the contamination benchmark needs feature_contamination data")
    if bench.id_probe_set not in view.probe_sets:
        raise ValueError(f"contamination: no probe set {bench.id_probe_set!r}; available: {list(view.probe_sets)}")
    ood = list(bench.ood_probe_sets) or [p for p in view.probe_sets if p != bench.id_probe_set]
    unknown = [p for p in ood if p not in view.probe_sets]
    if unknown:
        raise ValueError(f"contamination: unknown probe set(s) {unknown}; available: {list(view.probe_sets)}")
    core, bgb = data_impl.subspaces(meta)
    specs = list(view.specs)
    _check_layers(view, specs)
    archs = {s.id: str(s.factors.get("arch", "")) for s in specs}
    records: list[Any] = []
    per_model: dict[tuple[str, str, str], float] = {}  # (model, probe, stat) -> value

    def add(stat: str, value: float, model: str, probe: str = "", n: int | None = None,
            coords: dict[str, float] | None = None) -> None:
        records.append(_rec(stat, value, model, archs[model], probe, n, coords))
        if not coords:  # a trace point is not a per-model value
            per_model[(model, probe, stat)] = float(value)

    for probe in [bench.id_probe_set, *ood]:
        ps = view.probe_set(probe)
        n = int(ps.y.shape[0])
        labels = ps.y.reshape(-1).long().cpu()
        sign = (2 * labels - 1).double()
        outputs = view.outputs(probe)
        post_all = view.representations(probe, POST_LAYER)
        deriv_all = view.representations(probe, DERIVATIVE_LAYER)
        for k, spec in enumerate(specs):
            logits = outputs[k].double().cpu().reshape(n, -1)
            f = logits[:, 1] - logits[:, 0]
            margin = sign * f
            add("hinge_risk", float(torch.clamp(1 - margin, min=0).mean()), spec.id, probe, n)
            add("error", float((margin <= 0).double().mean()), spec.id, probe, n)
            post = post_all[k].double().cpu()
            add("selectivity", float(selectivity(post, labels, 2, bench.eps).mean()), spec.id, probe, n)
            add("asymmetry", float(asymmetry(deriv_all[k], labels, bench.eps).mean()), spec.id, probe, n)
            if probe != bench.id_probe_set:
                for stat in ("hinge_risk", "error"):
                    gap = per_model[(spec.id, probe, stat)] - per_model[(spec.id, bench.id_probe_set, stat)]
                    add("ood_gap_risk" if stat == "hinge_risk" else "ood_gap_error", gap, spec.id, probe, n)

    for spec in specs:
        w = view.weights(spec.id)[0].double().cpu().T  # [m, d_in]
        proj_bg = w @ bgb
        add("core_proj", float((w @ core).norm(dim=1).mean()), spec.id)
        add("bg_proj", float(proj_bg.norm(dim=1).mean()), spec.id)
        add("bg_corr", float(proj_bg.mean()), spec.id)
        history = view.buffers(spec.id).get("history")  # the zoo's training trace, one row per recorded step
        if history is not None and history.numel():
            h = history.double().cpu()
            for row in h:
                for c, col in enumerate(TRACE_COLUMNS):
                    add(f"trace_{col}", float(row[c + 1]), spec.id, coords={"step": float(row[0])})
            if float(h[0, 2]) > 0:
                add("bg_growth", per_model[(spec.id, "", "bg_proj")] / float(h[0, 2]), spec.id)

    # means over the models of each arch (seeds)
    grouped: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for (model, probe, stat), value in per_model.items():
        grouped[(archs[model], probe, stat)].append(value)
    means: dict[tuple[str, str, str], float] = {}
    for (arch, probe, stat), values in grouped.items():
        means[(arch, probe, stat)] = float(np.mean(values))
        records.append(_rec(f"mean_{stat}", means[(arch, probe, stat)], "", arch, probe, len(values)))

    c, lin = bench.contaminated_arch, bench.linear_arch
    if ood and (c, "", "bg_proj") in means and (lin, "", "bg_proj") in means:
        first = ood[0]
        relu_bg, lin_bg = means[(c, "", "bg_proj")], means[(lin, "", "bg_proj")]
        relu_gap, lin_gap = means[(c, first, "ood_gap_risk")], means[(lin, first, "ood_gap_risk")]
        p_cont, p_fail, n_pairs = paired_tests(specs, per_model, c, lin, first)
        contaminated = relu_bg >= 2.0 * lin_bg and means[(c, "", "bg_corr")] > 0 and p_cont < bench.alpha
        fails_ood = relu_gap >= 0.1 and relu_gap >= 5.0 * max(lin_gap, 0.0) and p_fail < bench.alpha
        for stat, value in (
            ("bg_proj_ratio", relu_bg / max(lin_bg, 1e-12)),
            ("ood_gap_risk_contaminated", relu_gap),
            ("ood_gap_risk_linear", lin_gap),
            ("n_seed_pairs", float(n_pairs)),
            ("p_contaminated", p_cont),
            ("p_fails_ood", p_fail),
            ("contaminated", float(contaminated)),
            ("fails_ood", float(fails_ood)),
            ("reproduced", float(contaminated and fails_ood)),
        ):
            records.append(_rec(stat, value, "", "finding", first))
    return records
