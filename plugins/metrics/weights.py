"""Weight-space similarity: weights CKA (seed 001), with its computation.

torch is imported inside the functions: importing this module stays light.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._base import BuiltinMetric, as_matrix, check_kwargs

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import Tensor


@dataclass(frozen=True)
class WeightsCKA(BuiltinMetric):
    """Weights CKA (wCKA, seed 001 section 2.2, eq. 5).

    Each model's dense weight matrices (each ``[in, out]``, input side first)
    are chained, ``W = W(1) W(2) ... W(l)`` ([d_in, d_out]), and compared by
    ``||W2^T W1||_F^2 / (||W1^T W1||_F ||W2^T W2||_F)`` (uncentred, as eq. 5).
    No probe data.  Hidden-unit permutations and positive rescalings through
    (Leaky)ReLU layers cancel in the chain product (seed 001 section 2.3).
    Models must share the input size.
    """

    name = "wcka"
    description = "Weights CKA on chain products of dense weights (seed 001)"
    kind = "weight"
    higher_is_more_similar = True
    symmetric = True
    value_range = (0.0, 1.0)
    invariances = frozenset({"weight_permutation", "weight_positive_scaling"})

    def __call__(self, a: Any, b: Any, **kwargs: Any) -> float:
        check_kwargs(self.name, kwargs)
        return float(pair_wcka(a, b))

    def pairwise(self, reps: Sequence[Any], **kwargs: Any) -> torch.Tensor:
        check_kwargs(self.name, kwargs)
        return as_matrix(pairwise_wcka(list(reps), self.max_memory_mb))


# --------------------------------------------------------------------------
# Weights CKA (seed 001, eq. 5)
# --------------------------------------------------------------------------


def chain_product(weights: Any, what: str) -> Tensor:
    """``W(1) W(2) ... W(l)``: a model's dense weights, each ``[in, out]``, input side first."""
    import torch

    from . import _linalg as la

    if isinstance(weights, torch.Tensor):
        weights = [weights]
    ws = [la.as_tensor(w) for w in weights]
    if not ws:
        raise ValueError(f"{what}: no weight matrices")
    for k, w in enumerate(ws):
        if w.ndim != 2:
            raise ValueError(f"{what}: weight matrix {k} must be 2-D [in, out], got shape {tuple(w.shape)}")
        if not bool(torch.isfinite(w).all()):
            raise ValueError(f"{what}: weight matrix {k} contains NaN or infinite values")
    dtype = la.compute_dtype(ws)
    # wCKA is scale-invariant; exact power-of-two scaling keeps the chain and its squares finite
    ws = [la.pow2_normalize(w.to(dtype)) for w in ws]
    chain = ws[0]
    for k, w in enumerate(ws[1:], start=1):
        if w.shape[0] != chain.shape[1]:
            raise ValueError(
                f"{what}: weight matrix {k} has {w.shape[0]} inputs but the previous layer has "
                f"{chain.shape[1]} outputs (expected [in, out] matrices, input side first)"
            )
        chain = la.pow2_normalize(chain @ w)
    return chain


def _chains(reps: Sequence[Any]) -> list[Tensor]:
    from . import _linalg as la

    chains = [chain_product(w, f"model {i}") for i, w in enumerate(reps)]
    dtype = la.compute_dtype(chains)
    d_in = chains[0].shape[0]
    for i, c in enumerate(chains):
        if c.shape[0] != d_in:
            raise ValueError(
                f"wCKA needs models with the same input size: model 0 has {d_in}, model {i} has {c.shape[0]}"
            )
    return [c.to(dtype) for c in chains]


def pair_wcka(a: Any, b: Any) -> float:
    from . import _linalg as la

    wa, wb = (la.compress(c) for c in _chains([a, b]))
    return la.cka_value(la.frob2(wb.T @ wa), la.frob2(wa.T @ wa), la.frob2(wb.T @ wb))


def pairwise_wcka(reps: list[Any], max_memory_mb: int) -> Tensor:
    from . import _linalg as la

    if not reps:
        raise ValueError("no models given")
    feats = [la.compress(c) for c in _chains(reps)]
    return la.normalize_kernel_matrix(la.frob2_auto(feats, max_memory_mb))
