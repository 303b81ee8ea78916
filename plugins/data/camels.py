"""Dataset ``camels_cmd``: the real CAMELS Multifield Dataset 2D maps, read from disk.

The reader lives in :mod:`simbench_plugins.data._camels_impl`; nothing is
downloaded (the data is ~4 GB per field and suite): point ``root`` at a local
copy of CMD's ``2D_maps/data`` files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Annotated, ClassVar

from pydantic import Field

import simbench
from simbench import ParamError

ROOT_ENV = "SIMBENCH_CAMELS_ROOT"


@dataclass(frozen=True)
class CamelsCMD(simbench.Dataset):
    """CAMELS Multifield Dataset 2D maps (Villaescusa-Navarro et al. 2022), as in seed 000.

    Reads ``Maps_<field>_<suite>_<set>_z=<redshift>.npy`` (e.g.
    ``Maps_Mtot_IllustrisTNG_LH_z=0.00.npy``, or ``T`` for gas temperature)
    and ``params_<set>_<suite>.txt`` from ``root`` (default: the
    ``SIMBENCH_CAMELS_ROOT`` environment variable).  Maps are block-averaged
    to ``size`` pixels, ``log10``-ed and standardised with the training
    split's statistics; ``x`` is ``[N, len(fields), size, size]``.  Targets
    are the six CMD parameters (``omega_m, sigma_8, a_sn1, a_agn1, a_sn2,
    a_agn2``) scaled to [0, 1] (the feedback ones in ``log10``).  Splits are
    by simulation (``max_sims`` limits how many are used, ``maps_per_sim``
    how many of each simulation's 15 maps).  The ``cosmo_shift``
    perturbation reads the same simulations from another suite's files.
    """

    name: ClassVar[str] = "camels_cmd"
    description: ClassVar[str] = "CAMELS Multifield Dataset 2D maps from a local directory"

    root: str = ""
    suite: str = "IllustrisTNG"
    fields: tuple[str, ...] = ("Mtot",)
    sim_set: str = "LH"
    redshift: str = "0.00"
    size: Annotated[int, Field(ge=8, le=1024)] = 64
    max_sims: Annotated[int, Field(ge=0)] = 0
    maps_per_sim: Annotated[int, Field(ge=0)] = 0
    val_fraction: Annotated[float, Field(gt=0.0, lt=0.5)] = 0.1
    test_fraction: Annotated[float, Field(gt=0.0, lt=0.5)] = 0.1
    log: bool = True
    params_file: str = ""

    def __post_init__(self) -> None:
        if not self.fields:
            raise ParamError("fields", "must name at least one CMD field prefix (e.g. 'Mtot', 'T')")
        if len(set(self.fields)) != len(self.fields):
            raise ParamError("fields", f"must not repeat a field (got {list(self.fields)})")

    def load(self, ctx: simbench.RunContext) -> simbench.DataSplits:
        from . import _camels_impl

        root = self.root or os.environ.get(ROOT_ENV, "")
        splits, meta = _camels_impl.load(
            root,
            self.suite,
            self.fields,
            self.sim_set,
            self.redshift,
            self.size,
            self.max_sims,
            self.maps_per_sim,
            self.val_fraction,
            self.test_fraction,
            self.log,
            self.params_file,
            ctx.seed,
        )
        return simbench.DataSplits(
            train=simbench.Split(*splits["train"]),
            val=simbench.Split(*splits["val"]),
            test=simbench.Split(*splits["test"]),
            task="regression",
            meta=meta,
        )
