"""The one way a random stream is derived from a seed.

Every random stream in simbench and its built-in plugins is *named*: a seed
(the suite's, or the one a stage hands its plugin in ``RunContext.seed``)
plus tags saying what the stream is for::

    derive_seed(ctx.seed, "mlp", "init", widths, member)      # an int
    numpy_rng(ctx.seed, "bootstrap", probe_set)               # a numpy Generator
    torch_generator(ctx.seed, "fgsm", model_id)               # a torch Generator

Why one helper: hand-made formulas (``seed * 1_000_003 + crc32(tag)``,
``SeedSequence([seed & 0xFFFFFFFF, 3])``, ``repr(parts)``) each had a way
to collide or drift -- masking a seed to 32 bits makes seeds that differ by
2**32 share every stream, summing tag hashes makes ``("a", "b")`` and
``("b", "a")``-like tuples meet, and ``repr`` of a numpy integer changed
between numpy 1 and 2.  Here the seed and tags are encoded unambiguously
(JSON of a list, tuples as lists, integers as integers whatever their type)
and hashed with SHA-256, so:

* the same seed and tags give the same stream on every platform and Python;
* different tags, tag boundaries, or seeds give unrelated streams;
* the result fits where it is used (63 bits by default: ``torch.manual_seed``
  and numpy take it; ``bits=31`` for APIs such as scikit-learn's
  ``random_state`` that want a 32-bit signed value).

Importing this module imports neither numpy nor torch.
"""

from __future__ import annotations

import hashlib
import json
import numbers
from typing import Any

__all__ = ["derive_seed", "numpy_rng", "torch_generator"]


def _canonical(tag: Any) -> Any:
    """A JSON-encodable form of ``tag`` that does not depend on its Python or numpy type."""
    if isinstance(tag, bool) or tag is None:
        return tag
    if isinstance(tag, str):
        return tag
    if isinstance(tag, numbers.Integral):
        return int(tag)
    if isinstance(tag, numbers.Real):
        value = float(tag)
        return int(value) if value.is_integer() else value.hex()
    if isinstance(tag, (tuple, list)):
        return [_canonical(t) for t in tag]
    raise TypeError(
        f"seed tag {tag!r} of type {type(tag).__name__}: expected str, int, float, bool, None or a tuple of them"
    )


def derive_seed(seed: int, *tags: Any, bits: int = 63) -> int:
    """A ``bits``-bit non-negative seed for the stream named by ``tags`` under ``seed``.

    ``seed`` is any integer (negative and > 64-bit values are kept whole, not
    masked).  ``tags`` are strings, integers, floats, booleans, ``None`` or
    tuples of them; ``3``, ``np.int64(3)`` and ``3.0`` name the same stream.
    """
    if not 1 <= bits <= 64:
        raise ValueError(f"bits={bits}: expected 1..64")
    key = json.dumps([_canonical(int(seed)), *(_canonical(t) for t in tags)], separators=(",", ":"))
    digest = hashlib.sha256(key.encode()).digest()
    return int.from_bytes(digest[:8], "little") >> (64 - bits)


def numpy_rng(seed: int, *tags: Any) -> Any:
    """A fresh ``numpy.random.Generator`` for the stream named by ``tags`` under ``seed``."""
    import numpy as np

    return np.random.default_rng(derive_seed(seed, *tags))


def torch_generator(seed: int, *tags: Any, device: Any = "cpu") -> Any:
    """A fresh ``torch.Generator`` on ``device`` for the stream named by ``tags`` under ``seed``."""
    import torch

    return torch.Generator(device=device).manual_seed(derive_seed(seed, *tags))
