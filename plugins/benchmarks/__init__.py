"""Built-in benchmarks."""

from __future__ import annotations

import simbench


@simbench.hookimpl
def register_benchmarks(register):  # type: ignore[no-untyped-def]
    from .calibration import Calibration
    from .cka_cubes import CkaCubes
    from .early_layers import EarlyLayers
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
    register(EarlyLayers)


@simbench.hookimpl
def register_zoos(register):  # type: ignore[no-untyped-def]
    """The zoo the ``early_layers`` benchmark is made for (seed 003 §3.1), registered here rather than in
    ``simbench_plugins.zoos``: that package's ``__init__`` is hashed into the cache keys of the zoos that
    import it (``from . import``), so editing it would retrain other boards' zoos."""
    from simbench_plugins.zoos.memorisation import MemorisationZoo

    register(MemorisationZoo)
