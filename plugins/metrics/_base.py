"""The light base class of the built-in metrics and the plumbing they share (no torch at import time)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field

import simbench
from simbench.errors import MeasurementFailed

if TYPE_CHECKING:  # pragma: no cover
    import torch

#: The activation-space invariances of the centred, scale-normalised measures.
ISOMETRY = frozenset({"orthogonal", "isotropic_scaling", "permutation", "translation"})


class UndefinedSimilarity(MeasurementFailed, ValueError):
    """The metric has no value for these representations (0/0), e.g. a degenerate representation.

    A :class:`~simbench.errors.MeasurementFailed`, so the runner records the
    cell as failed with this message, and a ``ValueError``, so callers that
    treat bad inputs as ``ValueError`` (the conformance kit) see a clear refusal.
    """


def check_kwargs(name: str, kwargs: dict[str, Any], allowed: tuple[str, ...] = ("inputs",)) -> None:
    """A ``TypeError`` naming any keyword argument other than ``inputs=``."""
    unknown = set(kwargs) - set(allowed)
    if unknown:
        raise TypeError(f"metric {name!r} got unexpected keyword arguments {sorted(unknown)}")


def as_matrix(out: torch.Tensor) -> torch.Tensor:
    """An all-pairs result as ``pairwise`` returns it: float64 on the CPU."""
    import torch

    return out.to(device="cpu", dtype=torch.float64)


@dataclass(frozen=True)
class BuiltinMetric(simbench.Metric):
    """What the built-in metrics share: the memory cap and its estimate.

    Each metric class defines its own ``__call__`` (one pair) and
    ``pairwise`` (all pairs), calling the computation written next to it in
    its module (torch is imported inside those functions, on first use).

    ``max_memory_mb`` caps the intermediates of the all-pairs computation
    (tiles of the big cross-product, streamed kernel blocks, the stacked RDM
    vectors, ...); the inputs themselves are not counted.  4096 holds the
    ranked RDMs of 180 models of 3147 probes (3.6 GB), so each is built once.
    """

    max_memory_mb: Annotated[int, Field(ge=1)] = 4096

    def memory_limit_bytes(self) -> int:
        """``max_memory_mb`` in bytes: suites whose probe count would exceed it are refused in validate."""
        return int(self.max_memory_mb) << 20

    def memory_bytes(self, n: int, d: int, m: int) -> int:
        """Estimated peak memory of ``pairwise`` for ``m`` float32 representations ``[n, d]``.

        This is the feature-space metrics' estimate (linear / unbiased /
        minibatch CKA, shape, CCA, R^2, wCKA): the features, float64 copies
        for the shape/CCA cross products, and tiles bounded by the cap.  The
        metrics that hold or stream ``n x n`` objects (RSA, RBF CKA, k-NN,
        dCKA) override it next to their computation.  All estimates follow
        the engine's allocations (measured at n = 3000).
        """
        w, feats = feature_bytes(n, d, m)
        tiles = min(self.memory_limit_bytes(), 4 * (m * w) ** 2 * 8)
        return 2 * feats + tiles + 4 * n * w * 8


#: the streamed block buffer of the kernel / k-NN metrics (``_linalg.STREAM_BLOCK_MB``)
STREAM_BLOCK_BYTES = 512 << 20


def feature_bytes(n: int, d: int, m: int) -> tuple[int, int]:
    """The per-model feature width ``min(n, d)`` and the bytes of every model's prepared features.

    Every metric holds the prepared float32 copies and per-model features,
    ``m n min(n, d)`` values, float64 for the shape and CCA metrics.
    """
    w = max(1, min(n, d))
    return w, m * n * w * 8


def stream_bytes(m: int, cap: int) -> int:
    """The streamed block buffer of the kernel / k-NN metrics (at most 512 MB) and its per-model share."""
    return min(STREAM_BLOCK_BYTES, cap) + 3 * STREAM_BLOCK_BYTES // max(1, m + 3) * 2
