"""Counter-based random numbers: deterministic per image, batched, device-independent.

Why not ``torch.Generator``: a generator per image means a Python loop over
images, and CPU and CUDA generators give different streams.  Instead every
random number is a hash of (seed, stream name, image index, element counter),
computed with 32-bit integer arithmetic held in int64 tensors (products stay
below 2**63, so nothing overflows).  The same image at the same index gets the
same noise whatever the batch size, the chunking or the device.
"""

from __future__ import annotations

import torch

from simbench.seeding import derive_seed

_M32 = 0xFFFFFFFF
_MULT = 0x45D9F3B  # a well-mixing odd multiplier < 2**27 (Thomas Mueller's integer hash)


def mix32(x: torch.Tensor) -> torch.Tensor:
    """A bijective avalanche hash of uint32 values stored in an int64 tensor."""
    x = (((x >> 16) ^ x) * _MULT) & _M32
    x = (((x >> 16) ^ x) * _MULT) & _M32
    return (x >> 16) ^ x


def image_keys(seed: int, stream: str, index: torch.Tensor) -> torch.Tensor:
    """One uint32 key per image from the run seed, a stream name and each image's index."""
    base = derive_seed(seed, stream, bits=32)  # the stream's key; the counter hash below is per image
    return mix32((index.to(torch.int64) & _M32) ^ base)


def indices(n: int, device: torch.device | str, offset: int = 0) -> torch.Tensor:
    """The default image indices ``offset .. offset + n - 1``."""
    return torch.arange(offset, offset + n, dtype=torch.int64, device=device)


def uniform(keys: torch.Tensor, shape: tuple[int, ...], draw: int = 0) -> torch.Tensor:
    """``Tensor[N, *shape]`` float32 uniforms in the open interval (0, 1).

    ``draw`` (0..255) separates independent draws from the same keys; each draw
    holds up to 2**24 numbers per image.
    """
    if not 0 <= draw < 256:
        raise ValueError(f"draw must be in 0..255, got {draw}")
    count = 1
    for s in shape:
        count *= int(s)
    if count >= 1 << 24:
        raise ValueError(f"at most 2**24 random numbers per image and draw, asked for {count}")
    counter = torch.arange(count, dtype=torch.int64, device=keys.device) + (draw << 24)
    h = mix32(keys.reshape(-1, 1) ^ mix32(counter).reshape(1, -1))
    h = mix32(h ^ 0x9E3779B9)
    u = ((h >> 8).to(torch.float32) + 0.5) * (1.0 / (1 << 24))
    return u.reshape((keys.shape[0], *shape))


def normal(keys: torch.Tensor, shape: tuple[int, ...], draw: int = 0) -> torch.Tensor:
    """Standard normals by Box-Muller from draws ``draw`` and ``draw + 128`` (use ``draw < 128``)."""
    u1 = uniform(keys, shape, draw)
    u2 = uniform(keys, shape, (draw + 128) % 256)
    return torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2.0 * torch.pi * u2)


def signs(keys: torch.Tensor, count: int, draw: int) -> torch.Tensor:
    """``Tensor[N, count]`` of random -1.0 / +1.0."""
    return torch.where(uniform(keys, (count,), draw) < 0.5, -1.0, 1.0)
