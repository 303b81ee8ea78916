"""Built-in benchmarks."""

from __future__ import annotations

import simbench


@simbench.hookimpl
def register_benchmarks(register):  # type: ignore[no-untyped-def]
    from .calibration import Calibration
    from .cka_cubes import CkaCubes
    from .functional_agreement import FunctionalAgreement
    from .layer_map import LayerMap
    from .manipulation import Manipulation
    from .sanity import Sanity

    register(FunctionalAgreement)
    register(Calibration)
    register(Sanity)
    register(Manipulation)
    register(LayerMap)
    register(CkaCubes)
