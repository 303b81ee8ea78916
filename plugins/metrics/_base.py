"""The light base class of the built-in metrics (no torch at import time)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

from pydantic import Field

import simbench

if TYPE_CHECKING:  # pragma: no cover
    import torch

#: The activation-space invariances of the centred, scale-normalised measures.
ISOMETRY = frozenset({"orthogonal", "isotropic_scaling", "permutation", "translation"})


@dataclass(frozen=True)
class BuiltinMetric(simbench.Metric):
    """Shared plumbing: ``__call__`` and ``pairwise`` dispatch to :mod:`._impl` lazily.

    ``max_memory_mb`` caps the intermediates of the all-pairs computation
    (tiles of the big cross-product, streamed kernel blocks, the stacked RDM
    vectors, ...); the inputs themselves are not counted.  4096 holds the
    ranked RDMs of 180 models of 3147 probes (3.6 GB), so each is built once.
    """

    max_memory_mb: Annotated[int, Field(ge=1)] = 4096

    #: which ``_impl.pair_<key>`` / ``_impl.pairwise_<key>`` computes this metric;
    #: a subclass of a built-in inherits its parent's key
    impl_key: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "impl_key" not in cls.__dict__ and not cls.impl_key:
            cls.impl_key = cls.__dict__.get("name", "")

    def memory_limit_bytes(self) -> int:
        """``max_memory_mb`` in bytes: suites whose probe count would exceed it are refused in validate."""
        return int(self.max_memory_mb) << 20

    def memory_bytes(self, n: int, d: int, m: int) -> int:
        """Estimated peak memory of ``pairwise`` for ``m`` float32 representations ``[n, d]`` (see :func:`memory_estimate`)."""
        return memory_estimate(self.impl_key, n, d, m, int(self.max_memory_mb) << 20)

    def __call__(self, a: Any, b: Any, **kwargs: Any) -> float:
        """The metric on one pair (``inputs=`` for metrics that need the probe inputs)."""
        from . import _impl

        return _impl.pair(self, a, b, **kwargs)

    def pairwise(self, reps: Sequence[Any], **kwargs: Any) -> torch.Tensor:
        """All pairs at once: a float64 ``M x M`` CPU tensor, ``[i, j] = self(reps[i], reps[j])``."""
        from . import _impl

        return _impl.pairwise(self, reps, **kwargs)


#: the streamed block buffer of the kernel / k-NN metrics (``_linalg.STREAM_BLOCK_MB``)
STREAM_BLOCK_BYTES = 512 << 20
#: width assumed for the probe inputs of dCKA (784 = MNIST pixels, rounded up)
INPUT_WIDTH = 1024


def memory_estimate(key: str, n: int, d: int, m: int, cap: int) -> int:
    """Peak bytes of the all-pairs computation, from the engine's allocations (measured at n = 3000).

    * every metric: the prepared float32 copies and per-model features,
      ``m n min(n, d)`` values, float64 for the shape and CCA metrics;
    * feature-space metrics: strip tiles of the cross product, at most the cap;
    * RSA: building one ranked RDM takes ~40 bytes per ``n^2`` (the float64
      triangle, its sort values and int64 order, average ranks); the M
      float32 rank vectors are held at once if they fit the cap, else two
      groups' worth (rebuilt per group pair);
    * RBF CKA: one model's kernel statistics ~26 bytes per ``n^2`` (float64
      squared distances, the sorted-out median, the exponentials), then
      blocks streamed through a buffer of at most 512 MB;
    * k-NN: similarities are taken ~32 MB of rows at a time, the weights
      streamed like RBF CKA (no ``n^2`` object is ever held);
    * dCKA: the QR and eigenproblem of ``[X, X0]`` with ``X0`` the probe
      inputs (width 1024 assumed), one model at a time.
    """
    w = max(1, min(n, d))
    pairs = n * (n - 1) // 2
    feats = m * n * w * 8
    stream = min(STREAM_BLOCK_BYTES, cap) + 3 * STREAM_BLOCK_BYTES // max(1, m + 3) * 2
    if key == "rsa":
        held, room = m * pairs * 4, cap - 40 * n * n - feats
        return feats + 40 * n * n + (held if held <= room else max(room, 2 * pairs * 4))
    if key == "rbf_cka":
        return feats + 26 * n * n + stream
    if key in ("mutual_knn", "jaccard_knn"):
        # similarity rows ~2^22 entries at a time; Jaccard's per-row [c, M, M] products at most a block's worth
        per_row = min(cap // 4, STREAM_BLOCK_BYTES) if key == "jaccard_knn" else 0
        return feats + 6 * max(1 << 22, n) * 8 + stream + per_row
    if key == "dcka":
        a = n * (w + min(n, INPUT_WIDTH)) * 8
        core = (w + min(n, INPUT_WIDTH)) ** 2 * 8
        return feats + 4 * a + 3 * core + min(cap, 2 * feats)
    # feature-space metrics (linear / unbiased / minibatch CKA, shape, CCA, R^2, wCKA):
    # features, float64 copies for the shape/CCA cross products, tiles bounded by the cap
    tiles = min(cap, 4 * (m * w) ** 2 * 8)
    return 2 * feats + tiles + 4 * n * w * 8
