"""Local-neighbourhood measures: mutual k-NN and Jaccard k-NN overlap, with their computation.

torch is imported inside the functions: importing this module stays light.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field

from ._base import FLOAT32, OVERHEAD_BYTES, BuiltinMetric, as_matrix, check_kwargs, stream_bytes, stream_rows

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import Tensor

_COSINE = frozenset({"orthogonal", "isotropic_scaling", "permutation"})


@dataclass(frozen=True)
class MutualKNN(BuiltinMetric):
    """Mutual k-nearest-neighbour alignment (Huh et al. 2024).

    Mean over probe inputs of ``|N_k^X(i) & N_k^Y(i)| / k`` with cosine
    neighbours (an input is not its own neighbour).  Needs n > k.  Ties at
    the k-th neighbour are split: the expected overlap over uniformly random
    tie-breaks, so the value does not depend on the order of the probes.  A
    constant representation scores the chance level ``k / (n - 1)``.
    """

    name = "mutual_knn"
    description = "Mutual k-NN overlap, cosine neighbours"
    kind = "activation"
    higher_is_more_similar = True
    symmetric = True
    value_range = (0.0, 1.0)
    invariances = _COSINE

    k: Annotated[int, Field(ge=1)] = 10

    def __call__(self, a: Any, b: Any, **kwargs: Any) -> float:
        check_kwargs(self.name, kwargs)
        return float(pair_knn(a, b, self.k, jaccard=False))

    def pairwise(self, reps: Sequence[Any], **kwargs: Any) -> torch.Tensor:
        check_kwargs(self.name, kwargs)
        return as_matrix(pairwise_knn(list(reps), self.k, self.max_memory_mb, jaccard=False))

    def memory_bytes(self, n: int, d: int, m: int) -> int:
        """See :func:`knn_memory_bytes`."""
        return knn_memory_bytes(n, d, m, self.memory_limit_bytes(), jaccard=False)


@dataclass(frozen=True)
class JaccardKNN(BuiltinMetric):
    """Mean Jaccard index ``|N_k^X(i) & N_k^Y(i)| / |N_k^X(i) | N_k^Y(i)|`` of
    cosine k-NN sets (Klabunde et al. 2023).  Needs n > k.  With ties at the
    k-th neighbour, each input's expected overlap ``o`` over random
    tie-breaks gives ``o / (2k - o)``; a constant representation scores that
    with ``o = k^2 / (n - 1)``."""

    name = "jaccard_knn"
    description = "Jaccard k-NN overlap, cosine neighbours"
    kind = "activation"
    higher_is_more_similar = True
    symmetric = True
    value_range = (0.0, 1.0)
    invariances = _COSINE

    k: Annotated[int, Field(ge=1)] = 10

    def __call__(self, a: Any, b: Any, **kwargs: Any) -> float:
        check_kwargs(self.name, kwargs)
        return float(pair_knn(a, b, self.k, jaccard=True))

    def pairwise(self, reps: Sequence[Any], **kwargs: Any) -> torch.Tensor:
        check_kwargs(self.name, kwargs)
        return as_matrix(pairwise_knn(list(reps), self.k, self.max_memory_mb, jaccard=True))

    def memory_bytes(self, n: int, d: int, m: int) -> int:
        """See :func:`knn_memory_bytes`."""
        return knn_memory_bytes(n, d, m, self.memory_limit_bytes(), jaccard=True)


#: float64 temporaries per entry of one model's similarities while its thresholds are found, and while
#: a block of its weights is built (similarities, comparisons, differences), measured
KNN_BUILD_TEMP = 25
KNN_BLOCK_TEMP = 64


def knn_memory_bytes(n: int, d: int, m: int, cap: int, jaccard: bool) -> int:
    """Peak bytes of the all-pairs k-NN computation.

    Every model's prepared float32 copy and float64 unit-norm rows are held;
    thresholds are found ~32 MB of similarities (2^22 entries, at least one
    row) at a time; then the weights are streamed in row blocks sized
    exactly as the engine sizes them (every model's block plus one model's
    temporaries); Jaccard's per-row ``[c, M, M]`` products (float32 and
    float64 copies) come on top.  No ``n^2`` object is ever held.
    """
    held = m * n * d * 12 + m * n * 16
    build = KNN_BUILD_TEMP * min(n, max(1, (1 << 22) // n)) * n + n * d * 8
    stream = stream_bytes(m, n, cap, False, KNN_BLOCK_TEMP)
    if jaccard:
        rows = min(n, stream_rows(m, n, cap, False), max(1, (cap // (4 * FLOAT32)) // max(1, m * m)))
        stream = rows * n * (m * FLOAT32 + KNN_BLOCK_TEMP) + rows * m * m * (FLOAT32 + 3 * 8) + m * rows * n * FLOAT32
    return held + max(build, stream) + OVERHEAD_BYTES


# --------------------------------------------------------------------------
# k-nearest-neighbour overlap (mutual k-NN, Jaccard k-NN)
# --------------------------------------------------------------------------


#: cosine similarities within this of the k-th largest are tied with it (float64 rounding is ~1e-15)
KNN_TIE_TOL = 1e-10


class Neighbours:
    """One representation's k-NN sets with ties split: a weight matrix ``W`` (n x n), built in row blocks.

    ``W[i, j]`` is the probability that j is among i's k nearest other inputs
    (cosine similarity) when ties are broken uniformly at random: 1 above the
    k-th largest similarity, ``(k - above) / tied`` for the inputs tied with
    it, 0 below; every row sums to k.  The expected overlap of two
    independently tie-broken sets is ``<W_X[i], W_Y[i]>``, so the metrics
    depend on the set of probe inputs only, never on their order.  A
    constant (or zero) representation ties every input with every other and
    scores the chance level ``k / (n - 1)`` in mutual k-NN.
    """

    def __init__(self, x: Tensor, k: int) -> None:
        import torch

        n = x.shape[0]
        if k >= n:
            raise ValueError(f"k = {k} nearest neighbours need more than {k} probe inputs, got {n}")
        x64 = x.to(torch.float64)
        norms = torch.linalg.vector_norm(x64, dim=1, keepdim=True)
        self.z = torch.where(norms > 0, x64 / norms.clamp_min(torch.finfo(torch.float64).tiny), torch.zeros_like(x64))
        self.k, self.n = k, n
        self.kth = torch.empty(n, dtype=torch.float64, device=x.device)
        self.share = torch.empty(n, dtype=torch.float64, device=x.device)
        step = max(1, (1 << 22) // n)  # ~32 MB of similarities at a time
        for r0 in range(0, n, step):
            r1 = min(n, r0 + step)
            sim = self._similarities(r0, r1)
            kth = torch.topk(sim, k, dim=1).values[:, -1:]
            above = (sim > kth + KNN_TIE_TOL).sum(dim=1)
            tied = ((sim - kth).abs() <= KNN_TIE_TOL).sum(dim=1)
            self.kth[r0:r1] = kth[:, 0]
            self.share[r0:r1] = (k - above).to(torch.float64) / tied

    def _similarities(self, r0: int, r1: int) -> Tensor:
        import torch

        sim = self.z[r0:r1] @ self.z.T
        rows = torch.arange(r0, r1, device=sim.device)
        sim[rows - r0, rows] = -math.inf  # an input is not its own neighbour
        return sim

    def block(self, r0: int, r1: int, dtype: torch.dtype | None = None) -> Tensor:
        """Rows ``r0:r1`` of ``W`` (float64 unless ``dtype`` says otherwise)."""
        import torch

        sim = self._similarities(r0, r1)
        kth = self.kth[r0:r1, None]
        w = (sim > kth + KNN_TIE_TOL).to(torch.float64)
        w += ((sim - kth).abs() <= KNN_TIE_TOL) * self.share[r0:r1, None]
        return w.to(torch.float64 if dtype is None else dtype)


def _knn_stat(overlap: Tensor, k: int, jaccard: bool) -> Tensor:
    """Per-input overlap -> mutual (``o / k``) or Jaccard (``o / (2k - o)``) value (mean over inputs outside)."""
    return overlap / (2 * k - overlap) if jaccard else overlap / k


def pair_knn(a: Any, b: Any, k: int, jaccard: bool) -> float:
    from . import _linalg as la

    (x, y), _ = la.prepare_activations([a, b])
    nx, ny = Neighbours(x, k), Neighbours(y, k)
    overlap = (nx.block(0, x.shape[0]) * ny.block(0, y.shape[0])).sum(dim=1)
    return float(_knn_stat(overlap, k, jaccard).mean())


def pairwise_knn(reps: list[Any], k: int, max_memory_mb: int, jaccard: bool) -> Tensor:
    """Each model's thresholds once; the weight matrices streamed in row blocks, one GEMM per block.

    Mutual k-NN is bilinear in the weights (a GEMM over whole blocks);
    Jaccard maps each input's overlap first (a batched GEMM per row).
    """
    from . import _linalg as la

    xs, dtype = la.prepare_activations(reps)
    n = xs[0].shape[0]
    nbrs = [Neighbours(x, k) for x in xs]

    def block(i: int, r0: int, r1: int) -> Tensor:
        return nbrs[i].block(r0, r1, dtype)

    if jaccard:
        total = la.row_block_products(
            len(xs), n, block, dtype, xs[0].device, max_memory_mb, per_row=lambda o: _knn_stat(o, k, True)
        )
    else:
        total = la.row_block_products(len(xs), n, block, dtype, xs[0].device, max_memory_mb) / k
    return (total / n).clamp(0.0, 1.0)
