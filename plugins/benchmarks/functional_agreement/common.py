"""Names and pair-group helpers shared by the benchmark's computation and its report.

Nothing here imports the rest of the package, so ``__init__`` (the plugin
class), ``stats`` and ``report`` can all import from it without circles.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

#: probe-set label of the aggregate over every probe set
ALL_PROBES = "(mean over probe sets)"
#: group label of the secondary analysis that keeps the models below ``min_accuracy``
WITH_EXCLUDED = "all (incl. excluded models)"
#: scatter-plot label of a pair that differs in more than one factor
SEVERAL = "several"
#: ``groups`` entry that expands to every factor that varies in the zoo
EVERY_FACTOR = "*"
#: the probe set whose accuracy decides whether a model collapsed
CLEAN = "clean"
#: label prefix of the groups of a ``within`` analysis ("within strategy = pgd")
WITHIN = "within "


def family_of(probe_set: str) -> str:
    """The probe-set family: ``"clean"``, or the perturbation that made it (``"mnist_c/fog"`` -> ``"mnist_c"``)."""
    return probe_set.split("/", 1)[0]


def family_label(family: str) -> str:
    """The aggregate probe-set label of one family, e.g. ``"(mean over mnist_c)"``."""
    return f"(mean over {family})"


def is_aggregate(probe_set: str) -> bool:
    return probe_set.startswith("(mean over ")


def factor_names(factors: Sequence[dict[str, Any]]) -> list[str]:
    """Factor keys that take more than one value over the zoo, in order of first appearance."""
    keys = list(dict.fromkeys(k for f in factors for k in f))
    return [k for k in keys if len({repr(f.get(k)) for f in factors}) > 1]


def resolve_groups(names: Iterable[str], factors: Sequence[dict[str, Any]]) -> list[str]:
    """Expand ``"*"`` to every varying factor; keep order, drop duplicates."""
    out: list[str] = []
    for name in names:
        out.extend(factor_names(factors) if name == EVERY_FACTOR else [name])
    return list(dict.fromkeys(out))


def pair_groups(factors: Sequence[dict[str, Any]], names: Iterable[str]) -> dict[str, Any]:
    """Boolean masks over the strict upper triangle: which pairs belong to each group.

    ``"all"`` is every unordered pair; a factor name selects the pairs that
    differ in exactly that factor and agree in every other.  Names that are
    no factor of the zoo are left out.
    """
    import numpy as np

    m = len(factors)
    iu, ju = np.triu_indices(m, k=1)
    keys = list(dict.fromkeys(k for f in factors for k in f))
    values = {k: np.array([repr(f.get(k)) for f in factors]) for k in keys}
    differs = {k: values[k][iu] != values[k][ju] for k in keys}
    n_diff = sum(differs.values()) if differs else np.zeros(len(iu), dtype=int)
    out: dict[str, Any] = {}
    for name in names:
        if name == "all":
            out[name] = np.ones(len(iu), dtype=bool)
        elif name in differs:
            out[name] = differs[name] & (n_diff == 1)
    return out


def group_blocks(factors: Sequence[dict[str, Any]], name: str) -> Any:
    """Block labels of the models for a group's permutation test and bootstrap (None for ``"all"``).

    The pairs that differ only in factor ``name`` are exactly the pairs inside
    the blocks of models that share every other factor.  Relabellings that
    map blocks onto blocks map the group onto itself, and pairs from
    different blocks share no model, so blocks are the bootstrap's units.
    """
    import numpy as np

    if name == "all":
        return None
    keys = sorted({k for f in factors for k in f} - {name})
    return np.array([repr([f.get(k) for k in keys]) for f in factors])


def group_label(group: str) -> str:
    """Plain words for a pair group."""
    if group == "all":
        return "all pairs"
    if group == WITH_EXCLUDED:
        return "all pairs, collapsed models included"
    if group.startswith(WITHIN):
        return f"pairs of models with {group.removeprefix(WITHIN)}"
    return f"pairs differing only in {group}"
