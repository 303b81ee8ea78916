"""Light helpers shared by the zoo plugins (no torch: imported when plugins are listed)."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Field

from simbench.errors import ParamError, UserError

Strategy = Literal["standard", "fgsm", "fgsm_rs", "pgd"]
STRATEGIES: tuple[str, ...] = ("standard", "fgsm", "fgsm_rs", "pgd")
PositiveInt = Annotated[int, Field(ge=1)]
PositiveFloat = Annotated[float, Field(gt=0.0)]
NonNegativeFloat = Annotated[float, Field(ge=0.0)]
NonNegativeInt = Annotated[int, Field(ge=0)]

_PAPER = re.compile(r"^(\d+)x(\d+)$")
_DIMS = re.compile(r"^\d+(?:-\d+)+$")


def parse_arch(arch: str) -> tuple[tuple[int, ...], int | None, int | None]:
    """``"4x32"`` -> ((32, 32, 32, 32), None, None); ``"784-8-3"`` -> ((8,), 784, 3).

    The paper's names (seed 001 §3.2: 1x8, 4x8, 4x32) give depth x width of
    the hidden layers; input and output sizes then come from the data.
    Raises ``ValueError`` with a readable message.
    """
    text = arch.strip().lower()
    m = _PAPER.match(text)
    if m:
        depth, width = int(m.group(1)), int(m.group(2))
        if depth < 1 or width < 1:
            raise ValueError(f"architecture {arch!r}: depth and width must be >= 1")
        return (width,) * depth, None, None
    if _DIMS.match(text):
        dims = tuple(int(v) for v in text.split("-"))
        if len(dims) < 3:
            raise ValueError(f"architecture {arch!r}: expected at least one hidden layer, e.g. '784-32-3'")
        if min(dims) < 1:
            raise ValueError(f"architecture {arch!r}: layer sizes must be >= 1")
        return dims[1:-1], dims[0], dims[-1]
    raise ValueError(f"architecture {arch!r}: expected '<depth>x<width>' (e.g. '4x32') or sizes like '784-32-32-3'")


def check_archs(key: str, archs: tuple[str, ...]) -> None:
    if not archs:
        raise ParamError(key, "expected at least one architecture")
    for arch in archs:
        try:
            parse_arch(arch)
        except ValueError as exc:
            raise ParamError(key, str(exc)) from None
    if len(set(archs)) != len(archs):
        raise ParamError(key, f"expected distinct architectures, got {list(archs)}")


def check_distinct(key: str, values: tuple[Any, ...], minimum: int | None = 0) -> None:
    if not values:
        raise ParamError(key, "expected at least one value")
    if len(set(values)) != len(values):
        raise ParamError(key, f"expected distinct values, got {list(values)}")
    if minimum is not None and min(values) < minimum:
        raise ParamError(key, f"expected values >= {minimum}, got {list(values)}")


def resolve_widths(arch: str, n_in: int, n_out: int) -> tuple[int, ...]:
    """All layer sizes (input, hidden..., output) of ``arch`` for data with ``n_in`` inputs and ``n_out`` classes."""
    hidden, a_in, a_out = parse_arch(arch)
    if a_in is not None and a_in != n_in:
        raise UserError(f"architecture {arch!r} expects {a_in} inputs but the data has {n_in} features per example")
    if a_out is not None and a_out != n_out:
        raise UserError(f"architecture {arch!r} has {a_out} outputs but the data has {n_out} classes")
    return (n_in, *hidden, n_out)
