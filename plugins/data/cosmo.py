"""Dataset ``cosmo_fields``: synthetic CAMELS-like 2D maps in two simulation suites.

The generator lives in :mod:`simbench_plugins.data._cosmo_impl` (torch); this
module only declares the plugin so that listing plugins stays cheap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, ClassVar, Literal

from pydantic import Field

import simbench
from simbench import ParamError

FieldName = Literal["matter", "temperature"]


@dataclass(frozen=True)
class CosmoFields(simbench.Dataset):
    """Synthetic cosmological fields (seed 000's setting, runnable offline).

    Each example is a periodic ``size x size`` map of a ``25 Mpc/h`` box
    generated from four parameters (``omega_m``, ``sigma_8`` and two feedback
    amplitudes ``a_sn``, ``a_agn``): a Gaussian random field whose power
    spectrum amplitude (``sigma_8``) and shape (``omega_m``) follow the
    parameters, pushed through a lognormal map (``matter``) or a
    density-temperature relation with feedback heating (``temperature``).
    The two *simulation suites* ``"A"`` and ``"B"`` share phases and
    large-scale physics but differ in their small-scale baryonic transfer and
    in the temperature mapping, so matter maps shift a little between suites
    and temperature maps a lot - the IllustrisTNG / SIMBA contrast of seed
    ``000_3674ff43c5aa32ce`` (Mtot robust, Temperature not).

    ``x`` is ``[N, len(fields), size, size]`` float32: ``log10`` of each field,
    standardised with the training split's mean and std.  ``y`` is
    ``[N, 4]`` float32, the parameters scaled to [0, 1] over their priors
    (``meta["targets"]`` names the columns).  A shifted probe set with the
    same parameters and phases from the other suite comes from the
    ``cosmo_shift`` perturbation.
    """

    name: ClassVar[str] = "cosmo_fields"
    description: ClassVar[str] = "Synthetic CAMELS-like matter / temperature maps from two simulation suites"
    version: ClassVar[str] = "2"

    simulation: Literal["A", "B"] = "A"
    fields: tuple[FieldName, ...] = ("matter", "temperature")
    size: Annotated[int, Field(ge=16, le=256)] = 64
    n_train: Annotated[int, Field(ge=8)] = 2000
    n_val: Annotated[int, Field(ge=8)] = 300
    n_test: Annotated[int, Field(ge=8)] = 500

    def __post_init__(self) -> None:
        if self.size & (self.size - 1):
            raise ParamError("size", f"must be a power of two (got {self.size})")
        if not self.fields:
            raise ParamError("fields", "must name at least one field")
        if len(set(self.fields)) != len(self.fields):
            raise ParamError("fields", f"must not repeat a field (got {list(self.fields)})")

    def load(self, ctx: simbench.RunContext) -> simbench.DataSplits:
        from . import _cosmo_impl

        sizes = {"train": self.n_train, "val": self.n_val, "test": self.n_test}
        splits, meta = _cosmo_impl.load(self.simulation, self.fields, sizes, self.size, ctx.seed)
        return simbench.DataSplits(
            train=simbench.Split(*splits["train"]),
            val=simbench.Split(*splits["val"]),
            test=simbench.Split(*splits["test"]),
            task="regression",
            meta=meta,
        )
