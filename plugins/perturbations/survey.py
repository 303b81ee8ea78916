"""``survey_shift``: what changes between imaging surveys, as composable steps (no torch at import).

A survey is a list of steps applied in order to idealised images (or to
images from another survey).  Each step is a ``(kind, params)`` pair:

=========== ====================================================================
``band``    channel mix ``mix`` (rows = output channels) and/or intensity
            response ``scale * x ** gamma``
``psf``     convolution with a ``gaussian`` or ``moffat`` (``beta``) PSF of
            full width at half maximum ``fwhm`` pixels
``resample`` to pixels ``factor`` times larger and back (flux-conserving
            area average down, bilinear up)
``noise``   Gaussian background noise of standard deviation ``std`` (the
            target depth), plus source shot noise of variance ``x / gain``
            when ``gain > 0``
``stretch`` display stretch ``asinh`` or ``log`` with softening ``a``,
            mapping [0, 1] onto [0, 1]
``clip``    clamp to [``low``, ``high``]
=========== ====================================================================

:func:`apply_survey` is the plain function other code (e.g. a galaxy image
generator) reuses; the ``survey_shift`` plugin turns presets and free
parameters into probe sets.  Grounded in seed 002: a morphology model trained
on one survey (SDSS) degrades on another (UKIDSS: infrared, different PSF,
pixel scale and depth).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field

import simbench

Step = tuple[str, Mapping[str, Any]]

STEP_KINDS: tuple[str, ...] = ("band", "psf", "resample", "noise", "stretch", "clip")

#: Named surveys, in pixels of the input grid (inputs = idealised images in [0, 1]).
PRESETS: dict[str, tuple[Step, ...]] = {
    # the survey a model is typically trained on: moderate seeing and depth
    "reference": (
        ("psf", {"profile": "gaussian", "fwhm": 2.0}),
        ("noise", {"std": 0.02}),
        ("clip", {}),
    ),
    # a deeper survey with better seeing (DECaLS-like relative to SDSS)
    "deeper_sharper": (
        ("psf", {"profile": "gaussian", "fwhm": 1.2}),
        ("noise", {"std": 0.005}),
        ("stretch", {"kind": "asinh", "a": 0.2}),
        ("clip", {}),
    ),
    # an infrared survey with worse seeing, coarser pixels and less depth (UKIDSS-like)
    "shallower_blurrier_ir": (
        ("band", {"gamma": 0.8, "scale": 0.9, "mix": ((0.0, 0.3, 0.7), (0.0, 0.3, 0.7), (0.0, 0.3, 0.7))}),
        ("psf", {"profile": "moffat", "fwhm": 3.0, "beta": 2.5}),
        ("resample", {"factor": 2.0}),
        ("noise", {"std": 0.03, "gain": 400.0}),
        ("stretch", {"kind": "log", "a": 0.3}),
        ("clip", {}),
    ),
    # a near-infrared survey at the reference pixel scale (UKIDSS-LAS-like relative to SDSS): every
    # channel sees a redder band (young blue light fades), slightly better seeing, brighter sky (less depth)
    "redder_shallower_ir": (
        ("band", {"mix": ((0.0, 0.7, 0.3), (0.0, 0.3, 0.7), (0.0, 0.0, 1.0))}),
        ("psf", {"profile": "gaussian", "fwhm": 1.6}),
        ("noise", {"std": 0.04}),
        ("clip", {}),
    ),
}


def survey_steps(spec: str | Sequence[Step]) -> tuple[Step, ...]:
    """Resolve a preset name or validate an explicit step list."""
    if isinstance(spec, str):
        if spec not in PRESETS:
            raise ValueError(f"unknown survey preset {spec!r}; expected one of {', '.join(PRESETS)}")
        return PRESETS[spec]
    steps = tuple((str(kind), dict(params)) for kind, params in spec)
    for kind, _ in steps:
        if kind not in STEP_KINDS:
            raise ValueError(f"unknown survey step {kind!r}; expected one of {', '.join(STEP_KINDS)}")
    return steps


def apply_survey(
    x: Any, preset_or_steps: str | Sequence[Step], seed: int = 0, index: Any = None, stream: str = ""
) -> Any:
    """Image ``x`` (``Tensor[N, C, H, W]``, ``[N, H, W]`` or flat square) as seen by a survey.

    ``preset_or_steps`` is a name from :data:`PRESETS` or a list of
    ``(kind, params)`` steps (see the module docstring).  Noise is seeded per
    image from ``seed``, the image's ``index`` (default ``0..N-1``) and
    ``stream`` (default: the preset name), so results do not depend on
    batching.  Returns a tensor on ``x``'s device.
    """
    from ._survey_impl import run_steps

    steps = survey_steps(preset_or_steps)
    if not stream:
        stream = preset_or_steps if isinstance(preset_or_steps, str) else "custom"
    return run_steps(x, steps, seed=seed, index=index, stream=stream)


@dataclass(frozen=True)
class SurveyShift(simbench.Perturbation):
    """Survey shift (seed 002): the probe images as other imaging surveys would record them.

    One probe set per named preset (``presets``), plus ``survey_shift/custom``
    when any free parameter is set.  The free parameters build the step list
    band -> psf -> resample -> noise -> stretch -> clip.  See
    :mod:`simbench_plugins.perturbations.survey` for the steps and presets.
    """

    name: ClassVar[str] = "survey_shift"
    description: ClassVar[str] = "imaging-survey shift: PSF, pixel scale, depth, band, stretch (seed 002)"
    target: ClassVar[str] = "input"

    presets: tuple[str, ...] = ("deeper_sharper", "shallower_blurrier_ir")
    psf: Literal["none", "gaussian", "moffat"] = "none"
    psf_fwhm: Annotated[float, Field(ge=0.0)] = 0.0
    moffat_beta: Annotated[float, Field(gt=1.0)] = 3.5
    pixel_scale_ratio: Annotated[float, Field(ge=1.0)] = 1.0
    noise_std: Annotated[float, Field(ge=0.0)] = 0.0
    gain: Annotated[float, Field(ge=0.0)] = 0.0
    band_mix: tuple[tuple[float, ...], ...] = ()
    band_gamma: Annotated[float, Field(gt=0.0)] = 1.0
    band_scale: Annotated[float, Field(gt=0.0)] = 1.0
    stretch: Literal["none", "asinh", "log"] = "none"
    stretch_softening: Annotated[float, Field(gt=0.0)] = 0.1
    clip: bool = True

    def __post_init__(self) -> None:
        for p in self.presets:
            if p not in PRESETS:
                raise simbench.ParamError("presets", f"unknown preset {p!r}; expected one of {', '.join(PRESETS)}")
        if len(set(self.presets)) != len(self.presets):
            raise simbench.ParamError("presets", "a preset is listed twice")
        if (self.psf == "none") != (self.psf_fwhm == 0.0):
            raise simbench.ParamError("psf_fwhm", "set psf ('gaussian' or 'moffat') and psf_fwhm > 0 together")
        if self.band_mix and len({len(r) for r in self.band_mix}) != 1:
            raise simbench.ParamError("band_mix", "every row of the channel mix needs the same length (input channels)")
        if not self.presets and not self.custom_steps():
            raise simbench.ParamError("presets", "nothing to do: name a preset or set a free parameter")

    def custom_steps(self) -> tuple[Step, ...]:
        """The step list built from the free parameters (empty when none is set)."""
        steps: list[Step] = []
        if self.band_mix or self.band_gamma != 1.0 or self.band_scale != 1.0:
            band: dict[str, Any] = {"gamma": self.band_gamma, "scale": self.band_scale}
            if self.band_mix:
                band["mix"] = self.band_mix
            steps.append(("band", band))
        if self.psf != "none":
            steps.append(("psf", {"profile": self.psf, "fwhm": self.psf_fwhm, "beta": self.moffat_beta}))
        if self.pixel_scale_ratio != 1.0:
            steps.append(("resample", {"factor": self.pixel_scale_ratio}))
        if self.noise_std > 0 or self.gain > 0:
            steps.append(("noise", {"std": self.noise_std, "gain": self.gain}))
        if self.stretch != "none":
            steps.append(("stretch", {"kind": self.stretch, "a": self.stretch_softening}))
        if steps and self.clip:
            steps.append(("clip", {}))
        return tuple(steps)

    def surveys(self) -> dict[str, tuple[Step, ...]]:
        """Variant name -> steps."""
        out = {f"{self.name}/{p}": PRESETS[p] for p in self.presets}
        custom = self.custom_steps()
        if custom:
            out[f"{self.name}/custom"] = custom
        return out

    def variants(self) -> list[str]:
        return list(self.surveys())

    def probe_sets(self, clean: simbench.ProbeSet, ctx: simbench.PerturbContext) -> list[simbench.ProbeSet]:
        from ._survey_impl import run_steps

        out = []
        for variant, steps in self.surveys().items():
            x = run_steps(clean.x, steps, seed=ctx.seed, stream=variant)
            meta = {"perturbation": self.name, "survey": variant.split("/", 1)[1], "steps": repr(steps)}
            out.append(simbench.ProbeSet(name=variant, x=x, y=clean.y, meta=meta))
        return out
