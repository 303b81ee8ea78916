"""Leaderboard tables and the Fig. 1 plot of the ``early_layers`` benchmark, from its records alone."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from simbench.types import Table

from .._records import records_frame as frame
from .common import FUNCTION, SETTINGS, pair_label


def _settings(df: Any) -> dict[str, float]:
    rows = df[(df["group"] == SETTINGS) & (df["statistic"] == "threshold")]
    return {str(k): float(v) for k, v in zip(rows["model_a"], rows["value"], strict=True)}


def _layers(df: Any) -> list[str]:
    rows = df[(df["statistic"] == "cka_mean") & df["group"].ne(SETTINGS) & df["group"].ne(FUNCTION)]
    rows = rows.sort_values("coord_layer")
    return list(dict.fromkeys(rows["group"]))


def _conditions(df: Any) -> list[str]:
    rows = df[(df["group"] == FUNCTION) & (df["statistic"] == "accuracy_mean")]
    return list(dict.fromkeys(rows["model_a"]))


def _cell(df: Any, statistic: str, group: str, a: str = "", b: str = "") -> float:
    rows = df[(df["statistic"] == statistic) & (df["group"] == group) & (df["status"] == "ok")]
    if a:
        rows = rows[rows["model_a"] == a]
    if b:
        rows = rows[rows["model_b"] == b]
    return float(rows["value"].iloc[0]) if len(rows) else float("nan")


def _yes(v: float) -> str:
    return "n/a" if not math.isfinite(v) else ("yes" if v >= 0.5 else "no")


def verdict_rows(df: Any) -> list[dict[str, Any]]:
    """One row per pair of conditions (the pre-declared rule, see the package docstring) and ``(overall)``."""
    th = _settings(df)
    layers = _layers(df)
    conds = _conditions(df)
    if not layers or len(conds) < 2:
        return []
    first = layers[0]
    rows = []
    for i, a in enumerate(conds):
        for b in conds[i + 1:]:
            cka = _cell(df, "cka_mean", first, a, b)
            floor = _cell(df, "within_min", first, a, b)
            alike = _cell(df, "alike", first, a, b)
            through = 0
            for layer in layers:
                if _cell(df, "alike", layer, a, b) >= 0.5:
                    through += 1
                else:
                    break
            agreement = _cell(df, "agreement_mean", FUNCTION, a, b)
            gap = _cell(df, "accuracy_gap", FUNCTION, a, b)
            p_acc = _cell(df, "p_accuracy", FUNCTION, a, b)
            differs = agreement < th.get("max_agreement", float("nan"))
            if math.isfinite(gap):  # a pair with the generalising condition: the accuracy test too
                differs = differs and gap >= th.get("min_gap", float("nan")) and p_acc < th.get("alpha", 0.0)
            mem = [_cell(df, "memorised", FUNCTION, c) for c in (a, b) if c == "memorising"]
            memorised = all(m >= th.get("memorised", float("nan")) for m in mem)
            ok = math.isfinite(alike) and alike >= 0.5 and differs and memorised
            if not math.isfinite(alike):
                why = f"the {first} matrix failed"
            elif not memorised:
                why = "the memorising models did not memorise their labels: the pair tests nothing"
            elif not differs:
                why = "the two conditions do not differ enough in function"
            elif ok:
                why = (f"CKA at {first} is high and inside the within-condition spread while the function differs, "
                       "as the seed reports")
            elif cka < th.get("high", float("nan")):
                why = f"CKA at {first} is below the pre-declared 'high' ({th.get('high', float('nan')):g})"
            else:
                why = f"CKA at {first} is high but below every within-condition pair (outside the spread)"
            rows.append({
                "pair": pair_label(a, b),
                "observed": f"CKA {cka:.3f} at {first}",
                f"cka[{first}]": cka,
                f"within_min[{first}]": floor,
                "alike_first": _yes(alike),
                "alike_through": f"{through} of {len(layers)} layers" if through else "none",
                f"p_separates[{first}]": _cell(df, "p_separates", first, a, b),
                "agreement": agreement,
                "accuracy_gap": gap,
                "p_accuracy": p_acc,
                "function_differs": "yes" if differs else "no",
                "reproduced": "yes" if ok else "no",
                "why": why,
            })
    hits = sum(r["reproduced"] == "yes" for r in rows)
    rows.append({"pair": "(overall)", "observed": f"{hits} of {len(rows)} pairs alike at {first} with different "
                 f"function", "reproduced": "yes" if hits == len(rows) else "no",
                 "why": "every pair of conditions must be reproduced"})
    return rows


def tables(records: Any) -> list[Table]:
    import pandas as pd

    df = frame(records)
    if df.empty:
        return []
    th = _settings(df)
    out: list[Table] = []
    rows = verdict_rows(df)
    layers = _layers(df)
    conds = _conditions(df)
    if rows:
        out.append(Table(
            "verdict", "Do early layers of generalising, memorising and random networks look alike under CKA "
            "(seed 003 §3.1)?", pd.DataFrame(rows),
            f"Pre-declared rule (thresholds fixed in the suite before the run): a pair of conditions is *alike* at a "
            f"layer when the mean CKA over its cross pairs of models is >= {th.get('high', float('nan')):g} and >= "
            f"the smallest within-condition CKA of either condition (inside the spread of two networks of one "
            f"kind); the *function differs* when the cross pairs agree on < {th.get('max_agreement', float('nan')):g}"
            f" of the probes and, for pairs with the generalising condition, its test accuracy is higher by >= "
            f"{th.get('min_gap', float('nan')):g} (exact one-sided permutation test over models, p < "
            f"{th.get('alpha', float('nan')):g}); memorising models must fit their permuted labels (mean training "
            f"accuracy >= {th.get('memorised', float('nan')):g}). Reproduced = alike at the first layer and the "
            f"function differs. alike_through = layers alike from the first on. p_separates = exact permutation "
            f"test over models of the condition labels (within minus cross CKA, one-sided): small p = CKA does "
            f"tell the two conditions apart, even where its values are high."))
    if layers:
        grid = []
        cross = [(a, b) for i, a in enumerate(conds) for b in conds[i + 1:]]
        for layer in layers:
            row: dict[str, Any] = {"layer": layer}
            for c in conds:
                row[f"within {c}"] = _cell(df, "cka_mean", layer, c, c)
            for a, b in cross:
                row[pair_label(a, b)] = _cell(df, "cka_mean", layer, a, b)
            for a, b in cross:
                row[f"alike[{pair_label(a, b)}]"] = _yes(_cell(df, "alike", layer, a, b))
            grid.append(row)
        out.append(Table("layers", "Layer-wise CKA within and between conditions (the seed's Fig. 1)",
                         pd.DataFrame(grid),
                         "Mean CKA over pairs of models: within a condition (different seeds) and across two "
                         "conditions (every model of one with every model of the other). alike: the rule above."))
    if conds:
        fn = []
        for c in conds:
            accs = df[(df["statistic"] == "test_accuracy") & (df["model_b"] == c)]["value"]
            fn.append({"condition": c, "models": len(accs), "test_accuracy": _cell(df, "accuracy_mean", FUNCTION, c),
                       "test_accuracy_min": float(accs.min()) if len(accs) else float("nan"),
                       "test_accuracy_max": float(accs.max()) if len(accs) else float("nan"),
                       "train_accuracy_own_labels": _cell(df, "memorised", FUNCTION, c),
                       "agreement_within": _cell(df, "agreement_mean", FUNCTION, c, c)})
        out.append(Table("function", "What the networks do", pd.DataFrame(fn),
                         "test_accuracy on the probe set (true labels); train_accuracy_own_labels on the labels each "
                         "model was trained with (permuted ones for memorising; true ones for random, which is "
                         "untrained); agreement_within = mean share of probes on which two models of the condition "
                         "predict the same class."))
    failed = df[df["status"] == "failed"]
    if len(failed):
        out.append(Table("failures", "Failed measurements", failed[["metric", "group", "error"]]
                         .reset_index(drop=True), "The metric raised or returned non-finite values on that layer."))
    return out


def plots(records: Any, out_dir: Any) -> list[Path]:
    import numpy as np

    from .. import _plots

    df = frame(records)
    layers = _layers(df)
    conds = _conditions(df)
    if not layers or len(conds) < 2:
        return []
    plt = _plots.pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    x = np.arange(len(layers))
    cross = [(a, b) for i, a in enumerate(conds) for b in conds[i + 1:]]
    palette = _plots.colors(len(cross) + len(conds))
    for k, (a, b) in enumerate(cross):
        mean = [_cell(df, "cka_mean", layer, a, b) for layer in layers]
        lo = [_cell(df, "cka_min", layer, a, b) for layer in layers]
        hi = [_cell(df, "cka_max", layer, a, b) for layer in layers]
        ax.errorbar(x + 0.06 * (k - 1), mean, yerr=[np.subtract(mean, lo), np.subtract(hi, mean)], marker="o",
                    ms=4, capsize=2, color=palette[k], label=pair_label(a, b))
    for k, c in enumerate(conds):
        mean = [_cell(df, "cka_mean", layer, c, c) for layer in layers]
        ax.plot(x, mean, linestyle="--", linewidth=1.0, color=palette[len(cross) + k], label=f"within {c}")
    high = _settings(df).get("high")
    if high is not None:
        ax.axhline(high, color="0.5", linewidth=0.7, linestyle=":")
    ax.set_xticks(x)
    ax.set_xticklabels(layers, rotation=30, ha="right", fontsize=8)
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("CKA (mean over pairs; bars: min-max)")
    ax.grid(axis="y", color="0.92")
    ax.legend(fontsize=7, ncol=2, loc="lower left")
    ax.set_title("Seed 003 §3.1: layer-wise CKA between generalising, memorising and random networks", fontsize=9)
    fig.tight_layout()
    label = _plots.safe_name(str(df["benchmark"].iloc[0]) or "early_layers")
    return [_plots.save(fig, Path(out_dir) / f"{label}_layers.png")]
