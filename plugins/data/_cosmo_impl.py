"""Synthetic 2D cosmological fields in two "simulation suites" (torch code).

A stand-in for the CAMELS Multifield Dataset (seed ``000_3674ff43c5aa32ce``,
§2.1) that runs offline: each map is a periodic ``size x size`` slice of a
``25 Mpc/h`` box, generated from four parameters

=========  ==========  ==========================================================
name       prior       what it does here
=========  ==========  ==========================================================
omega_m    U[0.1, 0.5] mean matter density and the turnover scale of the spectrum
sigma_8    U[0.6, 1.0] amplitude of the linear field (rms at a fixed smoothing)
a_sn       logU[1/4,4] supernova feedback: heats dense gas (temperature)
a_agn      logU[1/4,4] AGN feedback: small-scale power suppression and hot bubbles
=========  ==========  ==========================================================

Construction, per map:

1. white noise ``eps`` (the "initial conditions": the phases);
2. a Gaussian linear field ``delta_L = irfft(rfft(eps) * sqrt(P(k)))`` with
   ``P(k) ∝ k / (1 + (k / k_eq)^2)^2``, ``k_eq = 6 (omega_m / 0.3)`` cycles per
   box, normalised so that its rms after Gaussian smoothing on 2 px is
   ``GROWTH * sigma_8`` (so power rises as ``sigma_8^2`` at every ``k``);
3. a suite-specific *baryonic transfer* ``S(k)`` at high ``k`` (AGN-driven
   suppression; suite B's is stronger and sets in at larger scales);
4. matter: a lognormal map ``omega_m * exp(delta - var/2)`` in ``log10``;
5. temperature: the gas (pressure-smoothed on a suite-specific scale) through a
   suite-specific temperature-density relation ``T0 rho^(gamma-1)`` plus
   feedback heating terms, in ``log10``.

The two suites share the large-scale physics and the phases (as CAMELS'
IllustrisTNG and SIMBA latin-hypercube runs share their parameter values), so
the *matter* maps differ only at small scales (a small shift) while the
*temperature* maps differ in their whole density-temperature mapping (a large
shift), mirroring the Mtot vs Temperature contrast of seed 000.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from simbench.seeding import torch_generator

PARAM_NAMES: tuple[str, ...] = ("omega_m", "sigma_8", "a_sn", "a_agn")
#: prior ranges (low, high) and whether the prior is uniform in log10
PARAM_RANGES: dict[str, tuple[float, float, bool]] = {
    "omega_m": (0.1, 0.5, False),
    "sigma_8": (0.6, 1.0, False),
    "a_sn": (0.25, 4.0, True),
    "a_agn": (0.25, 4.0, True),
}
FIELDS: tuple[str, ...] = ("matter", "temperature")
SIMULATIONS: tuple[str, ...] = ("A", "B")
SPLITS: tuple[str, ...] = ("train", "val", "test")

#: rms of the linear field smoothed on SMOOTH_PX pixels is GROWTH * sigma_8
GROWTH = 0.45
SMOOTH_PX = 2.0

#: Per-suite small-scale physics.  ``fb``/``kb``: strength and onset of the
#: AGN power suppression of the matter field; ``kf``: gas pressure smoothing;
#: ``log_t0``/``slope``: temperature-density relation; ``sn``: supernova
#: heating of dense gas; ``agn``/``bubble_px``: AGN heating of the gas around
#: density peaks, on a given smoothing scale.
SUITE_PHYSICS: dict[str, dict[str, float]] = {
    # "TNG-like": mild suppression at the smallest scales, compact hot bubbles
    "A": {"fb": 0.10, "kb": 20.0, "kf": 18.0, "log_t0": 3.9, "slope": 0.55, "sn": 0.25, "agn": 0.35, "bubble_px": 1.5},
    # "SIMBA-like": stronger suppression from larger scales on, jets heating
    # the diffuse gas broadly, a steeper and hotter temperature-density relation
    "B": {"fb": 0.14, "kb": 16.0, "kf": 12.0, "log_t0": 4.3, "slope": 0.85, "sn": 0.10, "agn": 0.90, "bubble_px": 4.0},
}


# --------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------


def to_physical(y_norm: torch.Tensor) -> dict[str, torch.Tensor]:
    """Map normalised targets (``[n, 4]`` in [0, 1]) to physical parameter values."""
    out = {}
    for j, name in enumerate(PARAM_NAMES):
        lo, hi, log = PARAM_RANGES[name]
        u = y_norm[:, j].double()
        out[name] = 10.0 ** (math.log10(lo) + u * (math.log10(hi) - math.log10(lo))) if log else lo + u * (hi - lo)
    return out


def sample_targets(n: int, seed: int, split: str) -> torch.Tensor:
    """Normalised parameters ``[n, 4]`` (float32, uniform in [0, 1]) for one split."""
    g = torch_generator(seed, split, "params")
    return torch.rand(n, len(PARAM_NAMES), generator=g)


def sample_phases(n: int, size: int, seed: int, split: str) -> torch.Tensor:
    """White noise ``[n, size, size]`` (the initial conditions) for one split."""
    g = torch_generator(seed, split, "phases")
    return torch.randn(n, size, size, generator=g)


# --------------------------------------------------------------------------
# Spectra
# --------------------------------------------------------------------------


def wavenumbers(size: int, device: Any = "cpu") -> torch.Tensor:
    """``|k|`` in cycles per box on the ``rfft2`` grid, ``[size, size // 2 + 1]``."""
    kx = torch.fft.fftfreq(size, d=1.0 / size, device=device, dtype=torch.float64)
    ky = torch.fft.rfftfreq(size, d=1.0 / size, device=device, dtype=torch.float64)
    return torch.sqrt(kx[:, None] ** 2 + ky[None, :] ** 2)


def _rfft_weights(size: int, device: Any) -> torch.Tensor:
    # columns 1 .. size/2-1 of the half-plane stand for two modes of the full plane
    w = torch.full((size // 2 + 1,), 2.0, dtype=torch.float64, device=device)
    w[0] = 1.0
    w[-1] = 1.0
    return w


def grid_variance(power: torch.Tensor) -> torch.Tensor:
    """Variance of ``irfft2(rfft2(eps) * sqrt(power))`` for unit white noise ``eps``."""
    size = power.shape[-2]
    return (power * _rfft_weights(size, power.device)).sum((-2, -1)) / (size * size)


def linear_power(k: torch.Tensor, omega_m: torch.Tensor, sigma_8: torch.Tensor) -> torch.Tensor:
    """``[n, size, size//2+1]`` linear power, normalised to the sigma_8-like amplitude."""
    size = k.shape[0]
    om = omega_m.to(k)[:, None, None]
    keq = 6.0 * om / 0.3
    kk = k.clamp(min=1e-9)[None]
    shape = kk / (1.0 + (kk / keq) ** 2) ** 2
    shape = torch.where(k[None] == 0, torch.zeros_like(shape), shape)
    window = torch.exp(-0.5 * (2 * math.pi * k / size * SMOOTH_PX) ** 2)
    norm = grid_variance(shape * window**2)
    amp = (GROWTH * sigma_8.to(k)) ** 2 / norm
    return shape * amp[:, None, None]


def baryon_transfer(k: torch.Tensor, a_agn: torch.Tensor, simulation: str) -> torch.Tensor:
    """Suite-specific suppression ``S(k) <= 1`` of the matter amplitude at high ``k``."""
    phys = SUITE_PHYSICS[simulation]
    strength = (phys["fb"] * a_agn.to(k) ** 0.5).clamp(max=0.9)[:, None, None]
    x = (k / phys["kb"])[None]
    if simulation == "A":
        profile = x**2 / (1.0 + x**2)
    else:  # a different functional form, not just different numbers
        profile = 1.0 - torch.exp(-(x**1.5))
    return 1.0 - strength * profile


def _smooth(field: torch.Tensor, px: float) -> torch.Tensor:
    size = field.shape[-1]
    k = wavenumbers(size, field.device)
    window = torch.exp(-0.5 * (2 * math.pi * k / size * px) ** 2).to(field.dtype)
    return torch.fft.irfft2(torch.fft.rfft2(field) * window, s=field.shape[-2:])


def log_fields(
    y_norm: torch.Tensor, phases: torch.Tensor, simulation: str, fields: Sequence[str] = FIELDS
) -> dict[str, torch.Tensor]:
    """``log10`` maps ``{field: [n, size, size]}`` (float64) for the given parameters and phases."""
    if simulation not in SUITE_PHYSICS:
        raise ValueError(f"unknown simulation suite {simulation!r}; expected one of {SIMULATIONS}")
    phys = SUITE_PHYSICS[simulation]
    p = to_physical(y_norm)
    size = phases.shape[-1]
    device = phases.device
    k = wavenumbers(size, device)
    p = {name: v.to(device) for name, v in p.items()}
    power = linear_power(k, p["omega_m"], p["sigma_8"])
    transfer = baryon_transfer(k, p["a_agn"], simulation)
    eps_k = torch.fft.rfft2(phases.double())
    amp = torch.sqrt(power) * transfer
    delta = torch.fft.irfft2(eps_k * amp, s=(size, size))
    var = grid_variance(amp**2)[:, None, None]
    out: dict[str, torch.Tensor] = {}
    if "matter" in fields:
        # lognormal density with mean omega_m (CAMELS' Mtot maps carry the mean density)
        out["matter"] = torch.log10(p["omega_m"][:, None, None]) + (delta - var / 2) / math.log(10.0)
    if "temperature" in fields:
        gas_window = torch.exp(-0.5 * (k / phys["kf"]) ** 2)
        gas_amp = amp * gas_window
        delta_g = torch.fft.irfft2(eps_k * gas_amp, s=(size, size))
        var_g = grid_variance(gas_amp**2)[:, None, None]
        log_rho = (delta_g - var_g / 2) / math.log(10.0)  # log10 gas overdensity
        rho = 10.0**log_rho
        log_t = phys["log_t0"] + phys["slope"] * log_rho
        # supernova heating of dense gas; AGN heating around smoothed density peaks
        sn = phys["sn"] * p["a_sn"][:, None, None] ** 0.5 * torch.log1p(rho) / math.log(10.0)
        peaks = _smooth(rho, phys["bubble_px"]).clamp(min=0.0)
        agn = torch.log10(1.0 + phys["agn"] * p["a_agn"][:, None, None] ** 0.7 * peaks**1.5)
        out["temperature"] = log_t + sn + agn
    unknown = set(fields) - set(FIELDS)
    if unknown:
        raise ValueError(f"unknown field(s) {sorted(unknown)}; expected a subset of {FIELDS}")
    return out


def radial_power(maps: torch.Tensor, bins: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Azimuthally averaged power spectrum of mean-subtracted maps.

    Returns ``(k, P)`` with ``k`` the integer-cycle bin centres ``1 .. size/2``
    and ``P`` of shape ``[n, len(k)]`` (float64).
    """
    maps = maps.double()
    size = maps.shape[-1]
    f = torch.fft.rfft2(maps - maps.mean((-2, -1), keepdim=True))
    pk = f.abs() ** 2 * _rfft_weights(size, maps.device) / size**4
    k = wavenumbers(size, maps.device)
    kbin = torch.round(k).long()
    nb = bins or size // 2
    out = torch.zeros(maps.shape[0], nb + 1, dtype=torch.float64, device=maps.device)
    counts = torch.zeros(nb + 1, dtype=torch.float64, device=maps.device)
    mask = kbin <= nb
    idx = kbin[mask]
    out.index_add_(1, idx, pk[:, mask])
    counts.index_add_(0, idx, _rfft_weights(size, maps.device).expand_as(k)[mask])
    return torch.arange(1, nb + 1, dtype=torch.float64), (out / counts.clamp(min=1))[:, 1:]


# --------------------------------------------------------------------------
# Splits
# --------------------------------------------------------------------------


def make_split(
    meta: Mapping[str, Any], split: str, simulation: str | None = None, device: Any = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x [n, C, size, size] float32 normalised, y [n, 4] float32)`` of one split.

    ``meta`` is the dataset's ``DataSplits.meta`` (seed, sizes, fields and the
    normalisation constants); ``simulation`` overrides the suite, which is how
    the shifted probe sets are made: same parameters and phases, other physics.
    """
    n = int(meta["sizes"][split])
    y = sample_targets(n, int(meta["seed"]), split)
    phases = sample_phases(n, int(meta["size"]), int(meta["seed"]), split).to(device)
    fields = list(meta["fields"])
    maps = log_fields(y.to(device), phases, simulation or meta["simulation"], fields)
    norm = meta.get("norm")
    chans = []
    for name in fields:
        m = maps[name]
        if norm is not None:
            mean, std = norm[name]
            m = (m - mean) / std
        chans.append(m.float())
    return torch.stack(chans, 1), y.to(device)


def load(
    simulation: str, fields: Sequence[str], sizes: Mapping[str, int], size: int, seed: int
) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], dict[str, Any]]:
    """Generate all splits; normalisation constants come from the training split."""
    meta: dict[str, Any] = {
        "generator": "cosmo_fields",
        "simulation": simulation,
        "fields": list(fields),
        "channels": list(fields),
        "size": int(size),
        "seed": int(seed),
        "sizes": {k: int(v) for k, v in sizes.items()},
        "targets": list(PARAM_NAMES),
        "target_ranges": {k: list(v) for k, v in PARAM_RANGES.items()},
        "box_mpc_h": 25.0,
    }
    x_raw, _ = make_split(meta, "train")
    meta["norm"] = {
        name: [float(x_raw[:, c].double().mean()), float(x_raw[:, c].double().std())] for c, name in enumerate(fields)
    }
    splits = {split: make_split(meta, split) for split in SPLITS}
    return splits, meta


# --------------------------------------------------------------------------
# The simulation-suite shift (used by the ``cosmo_shift`` perturbation)
# --------------------------------------------------------------------------


def match_rows(x: torch.Tensor, pool: torch.Tensor) -> torch.Tensor:
    """Index into ``pool`` of every row of ``x`` (rows must be exact copies).

    The runner takes the clean probe set from the test split; matching by
    content (not by position) keeps the shift correct however it selected
    the probes.
    """
    xs = x.detach().reshape(x.shape[0], -1).cpu().contiguous()
    ps = pool.detach().reshape(pool.shape[0], -1).cpu().contiguous()
    lookup = {ps[i].numpy().tobytes(): i for i in range(ps.shape[0])}
    idx = []
    for i in range(xs.shape[0]):
        j = lookup.get(xs[i].numpy().tobytes())
        if j is None:
            raise ValueError(
                "cosmo_shift: a clean probe input is not in the dataset's test split; "
                "the shift can only regenerate probes drawn from it"
            )
        idx.append(j)
    return torch.tensor(idx, dtype=torch.long)


def shifted_test(meta: Mapping[str, Any], simulation: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The whole test split regenerated (or re-read) under another simulation suite."""
    source = meta.get("generator")
    if source == "cosmo_fields":
        if simulation not in SIMULATIONS:
            raise ValueError(f"cosmo_shift: unknown simulation suite {simulation!r}; expected one of {SIMULATIONS}")
        return make_split(meta, "test", simulation=simulation)
    if source == "camels_cmd":
        from . import _camels_impl

        return _camels_impl.read_split(meta, "test", suite=simulation)
    raise ValueError(
        f"cosmo_shift: needs data from cosmo_fields or camels_cmd (got data generated by {source!r})"
    )


# --------------------------------------------------------------------------
# The size-matched control shift (used by ``cosmo_shift`` with ``control_fields``)
# --------------------------------------------------------------------------


def paired_rms(a: torch.Tensor, b: torch.Tensor) -> float:
    """The size of a paired input change: the per-map root-mean-square pixel difference of ``a`` and ``b``
    (``[n, H, W]``, the same probes before and after), averaged over the maps."""
    d = (a.double() - b.double()).reshape(a.shape[0], -1)
    return float((d**2).mean(1).sqrt().mean())


def control_phases(meta: Mapping[str, Any], idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(phases, extra)`` of the test maps ``idx``: their white noise and a second, independent white noise
    (its own seeded stream), which :func:`rotated_split` mixes in."""
    n, size, seed = int(meta["sizes"]["test"]), int(meta["size"]), int(meta["seed"])
    phases = sample_phases(n, size, seed, "test")[idx]
    g = torch_generator(seed, "test", "control-phases")
    extra = torch.randn(n, size, size, generator=g)[idx]
    return phases, extra


def rotated_split(
    meta: Mapping[str, Any], simulation: str, idx: torch.Tensor, theta: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Test maps ``idx`` of suite ``simulation`` with their phases rotated by ``theta`` (radians) towards an
    independent realisation: ``cos(theta) eps + sin(theta) eps'``.  For every ``theta`` this is again unit
    white noise, so the maps are an exact draw from the suite's own distribution (the same parameters, hence
    the same targets): an input change of tunable size that never leaves the training distribution."""
    y = sample_targets(int(meta["sizes"]["test"]), int(meta["seed"]), "test")[idx]
    phases, extra = control_phases(meta, idx)
    eps = math.cos(theta) * phases + math.sin(theta) * extra
    fields = list(meta["fields"])
    maps = log_fields(y, eps, simulation, fields)
    norm = meta.get("norm")
    chans = []
    for name in fields:
        m = maps[name]
        if norm is not None:
            mean, std = norm[name]
            m = (m - mean) / std
        chans.append(m.float())
    return torch.stack(chans, 1), y


def matched_control(
    meta: Mapping[str, Any], simulation: str, idx: torch.Tensor, field: str, target: float, iters: int = 24
) -> tuple[torch.Tensor, torch.Tensor, float, float]:
    """The control probe set of suite ``simulation`` whose channel ``field`` moves by ``target`` (the
    :func:`paired_rms` size of the suite shift): ``(x, y, theta, achieved size)``.

    ``theta`` is found by bisection on ``[0, pi]`` (the size grows with ``theta`` up to a sign flip of the
    phases, ``theta = pi``); a target larger than the flip's size stops there and reports the size reached.
    """
    fields = list(meta["fields"])
    if field not in fields:
        raise ValueError(f"cosmo_shift: control field {field!r} is not a field of the data (fields: {fields})")
    c = fields.index(field)
    base, _ = rotated_split(meta, simulation, idx, 0.0)

    def size(theta: float) -> float:
        return paired_rms(rotated_split(meta, simulation, idx, theta)[0][:, c], base[:, c])

    lo, hi = 0.0, math.pi
    if size(hi) <= target:
        lo = hi
    else:
        for _ in range(iters):
            mid = 0.5 * (lo + hi)
            if size(mid) < target:
                lo = mid
            else:
                hi = mid
    theta = 0.5 * (lo + hi) if lo < hi else lo
    x, y = rotated_split(meta, simulation, idx, theta)
    return x, y, theta, paired_rms(x[:, c], base[:, c])
