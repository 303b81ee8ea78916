"""Checks before training: what a suite will need, refused in one line before any model is trained.

:func:`preflight` (model count, layer names, an estimated size, the metrics'
memory) runs in ``simbench run`` right after the data is loaded;
:func:`load_data_offline` is ``simbench validate``'s data check (never a download).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .boundary import PluginCallFailed, plugin_call
from .errors import StageFailed, SuiteError, UserError, one_line
from .seeding import derive_seed
from .suite import Suite
from .types import DataSplits, RunContext


@dataclass(frozen=True)
class SizeEstimate:
    """What a suite will hold in memory, estimated without training (models built on torch's meta device)."""

    n_models: int
    parameters: int  # all models together
    width: int  # features per probe at the suite's layer (largest model)
    probes: int
    probe_sets: int

    @property
    def gigabytes(self) -> float:
        reps = self.n_models * self.probes * self.width * self.probe_sets
        return 4.0 * (self.parameters + reps) / 1e9


def preflight(suite: Suite, data: DataSplits, sample: int = 64) -> SizeEstimate | None:
    """Check what can be checked before training, raising a one-line :class:`SuiteError`.

    * the number of models against ``run.max_models``;
    * ``probes.layer`` against each model's ``readable_layers`` (models are
      instantiated on torch's ``meta`` device: no memory, no training);
    * a size estimate (models x parameters + probes x width) against
      ``run.max_size_gb``.

    Up to ``sample`` specs, spread over the zoo, are instantiated; the
    estimate extrapolates.  A zoo whose ``instantiate`` cannot run on the meta
    device is skipped silently (the layer is then checked after training).
    """
    import torch

    from .suite import check_data_files

    check_data_files(suite)
    file = str(suite.path)
    try:
        specs = list(plugin_call(f"zoo {suite.zoo.name!r} specs", suite.zoo.obj.specs))
    except PluginCallFailed as exc:
        raise StageFailed(str(exc)) from None
    limit = int(suite.run["max_models"])
    if len(specs) > limit:
        raise SuiteError(file, "run.max_models",
                         f"the zoo has {len(specs)} models, more than the limit of {limit}; raise run.max_models to allow it")
    if not specs:
        return None
    step = max(1, len(specs) // sample)
    chosen = specs[::step][:sample]
    layer = suite.probes["layer"]
    params: list[int] = []
    width = 0
    n = suite.probes["n"] or (len(data.test) if suite.probes["split"] == "test" else len(data.val))
    for spec in chosen:
        try:
            with torch.device("meta"):
                module = suite.zoo.obj.instantiate(spec, data)
        except KeyboardInterrupt:
            raise
        except Exception:  # noqa: BLE001 - not meta-capable: checked after training instead
            return None
        except BaseException as exc:  # noqa: BLE001 - sys.exit is no meta-device limitation: the zoo is broken
            raise StageFailed(f"zoo {suite.zoo.name!r} instantiate: {one_line(exc)}") from None
        readable = tuple(getattr(module, "readable_layers", ()) or ())
        name = getattr(module, "default_layer", "") if layer == "default" else layer
        if readable and name not in readable:
            raise SuiteError(file, "probes.layer",
                             f"model {spec.id!r} has no layer {name!r}; readable layers: {', '.join(readable)}")
        params.append(sum(int(p.numel()) for p in module.parameters()))
        try:
            x = torch.empty((1, *data.input_shape), device="meta")
            out = module.read(x, [name])[name]
            width = max(width, int(out.reshape(1, -1).shape[1]))
        except KeyboardInterrupt:
            raise
        except Exception:  # noqa: BLE001 - the estimate then counts parameters only
            pass
        except BaseException as exc:  # noqa: BLE001 - sys.exit in a model's read
            raise StageFailed(f"zoo {suite.zoo.name!r}: model {spec.id!r} read: {one_line(exc)}") from None
    n_probe_sets = 1 + sum(len(u.obj.variants()) for u in suite.perturbations if u.obj.target == "input")
    analysed = [s for s in specs if not s.held_out]  # held-out models are trained, never measured
    n_models = len(analysed) * (1 + sum(1 for u in suite.perturbations if u.obj.target == "model"))
    if width:
        from .suite import check_metric_memory

        # the load-time check knew no width; now each metric's estimate uses the models' real one
        check_metric_memory(file, suite.metrics, int(n), n_models, width)
    estimate = SizeEstimate(n_models, int(sum(params) / len(params) * n_models), width, int(n), n_probe_sets)
    limit_gb = float(suite.run["max_size_gb"])
    if estimate.gigabytes > limit_gb:
        raise SuiteError(
            file, "run.max_size_gb",
            f"estimated {estimate.gigabytes:.3g} GB ({n_models} models x {estimate.parameters // max(1, n_models)} "
            f"parameters, {n_probe_sets} probe sets x {n} probes x width {width}), above the limit of {limit_gb:g} GB; "
            "make the suite smaller or raise run.max_size_gb",
        )
    return estimate


def load_data_offline(suite: Suite) -> DataSplits:
    """Load the suite's dataset with the Hugging Face hub switched off (``validate``: never download).

    A dataset that needs a download answers with a one-line error naming it.
    """
    from .suite import check_data_files

    check_data_files(suite)  # a missing file is named as such, not as an unreachable dataset
    saved = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")}
    os.environ.update({"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"})
    try:
        use = suite.data
        ctx = RunContext(seed=derive_seed(suite.seed, "data"), device="cpu")
        try:
            data = plugin_call(f"dataset {use.name!r}", use.obj.load, ctx)
        except PluginCallFailed as exc:
            raise UserError(f"{suite.path}: data: not reachable without downloading ({exc})") from None
        except UserError as exc:
            raise UserError(f"{suite.path}: data: {exc}") from None
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    if not isinstance(data, DataSplits):
        raise UserError(f"dataset {suite.data.name!r} returned {type(data).__name__}; expected simbench.DataSplits")
    return data
