"""The light base class of the built-in metrics and the plumbing they share (no torch at import time)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field

import simbench
from simbench.errors import MeasurementFailed

if TYPE_CHECKING:  # pragma: no cover
    import torch

#: bytes of the compute dtype the estimates assume (float32 representations)
FLOAT32 = 4

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

    #: bytes per entry of the largest cross-product tile: the tile, its square or gathered blocks, and
    #: the float64 SVD work of the shape / CCA reductions (measured; see ``tests/test_metrics_memory.py``)
    tile_bytes_per_entry = 16
    #: bytes of one feature value in the tiled GEMMs (float32; 8 for the shape and CCA metrics)
    tile_size = FLOAT32

    def memory_bytes(self, n: int, d: int, m: int) -> int:
        """Estimated peak memory of ``pairwise`` for ``m`` float32 representations ``[n, d]``.

        This is the feature-space metrics' estimate (linear / unbiased /
        minibatch CKA, shape, CCA, R^2, wCKA): the prepared float32 copies,
        the features and their stacked (padded) copy, one model's SVD work,
        and the largest tile of the strip GEMMs, sized exactly as the engine
        sizes it (:func:`tile_entries`), times :attr:`tile_bytes_per_entry`.
        The metrics that hold or stream ``n x n`` objects (RSA, RBF CKA,
        k-NN, dCKA) override it next to their computation.  Every estimate
        adds :data:`OVERHEAD_BYTES`; measured peaks are within 0.5-3x of it
        at the widths tested.
        """
        w, feats = feature_bytes(n, d, m)
        cap = self.memory_limit_bytes()
        tiles = tile_entries(m, w, cap, self.symmetric, self.tile_size) * self.tile_bytes_per_entry
        return m * n * d * FLOAT32 + 2 * feats + tiles + 4 * n * w * 8 + OVERHEAD_BYTES

    def matrix_flags(self, reps: Sequence[Any], ids: Sequence[str] | None = None, **kwargs: Any) -> list[str]:
        """Notes on the ``pairwise`` matrix of ``reps``, in the runner's flag format ``"<name>:<model>"``.

        ``<model>`` is ``ids[i]`` (the index ``i`` without ``ids``).  None by
        default; ``pwcca`` names the models in its ill-defined regime
        (``"ill_defined:<model>"``).  Cheap next to ``pairwise`` (ranks only).
        """
        return []


#: the streamed block buffer of the kernel / k-NN metrics (``_linalg.STREAM_BLOCK_MB``)
STREAM_BLOCK_BYTES = 512 << 20


def feature_bytes(n: int, d: int, m: int) -> tuple[int, int]:
    """The per-model feature width ``min(n, d)`` and the bytes of every model's prepared features.

    Every metric holds the prepared float32 copies and per-model features,
    ``m n min(n, d)`` values, float64 for the shape and CCA metrics.
    """
    w = max(1, min(n, d))
    return w, m * n * w * 8


#: added to every estimate: allocator slack, small temporaries, torch's lazily loaded kernels
OVERHEAD_BYTES = 8 << 20


def tile_entries(m: int, w: int, cap: int, symmetric: bool = True, size: int = FLOAT32) -> int:
    """Entries of the largest tile ``_linalg.tile_ranges`` cuts for ``m`` models of width ``w`` (its first one)."""
    budget = max(1, int(cap) // (size * 4))
    per_block = w * w
    g = max(1, min(-(-m // 8) if symmetric else m, math.isqrt(max(1, budget // per_block))))
    rows = min(g, m)
    return rows * min(m, max(1, budget // (per_block * rows))) * per_block


def stream_rows(m: int, n: int, cap: int, triangle: bool, size: int = FLOAT32) -> int:
    """Rows per streamed block, exactly as ``_linalg.rows_per_block`` / ``triangle_rows_per_block`` choose them."""
    budget = min(int(cap), STREAM_BLOCK_BYTES) // size
    rows = max(1, budget // max(1, (m + 3) * n))
    return max(1, min(rows, -(-n // 8))) if triangle else rows


def stream_bytes(m: int, n: int, cap: int, triangle: bool, temp_per_entry: int, size: int = FLOAT32) -> int:
    """Peak bytes of one streamed row block: every model's block (``size`` bytes an entry) plus the
    temporaries of building one model's block (``temp_per_entry`` bytes an entry, float64 work)."""
    entries = min(n, stream_rows(m, n, cap, triangle, size)) * n
    return entries * (m * size + temp_per_entry)
