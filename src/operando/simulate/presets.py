"""Presets of the synthetic operando beamtime.

A preset fixes every knob of the simulation: the electrochemical protocol, the
clock error between potentiostat and beamline, and the acquisition schedule and
physics of each X-ray stream. ``small`` is sized for tests (seconds to make),
``lfp-1c`` and ``lfp-10c`` for the demo and benchmarks.

All times are seconds, lengths in the unit named in the field, currents derive
from the C-rate and the theoretical capacity of the active mass.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

# re-exported: the simulator modules and tests import them from here
from operando.constants import FARADAY_C_PER_MOL, GAS_CONSTANT_J_PER_MOL_K  # noqa: F401

MOLAR_MASS_LFP_G_PER_MOL = 157.757  # LiFePO4


@dataclass(frozen=True)
class EchemSpec:
    """Galvanostatic LiFePO4 vs Li half cell: CC charge, rest, CC discharge, rest."""

    c_rate_per_h: float = 1.0
    active_mass_mg: float = 5.0
    molar_mass_g_mol: float = MOLAR_MASS_LFP_G_PER_MOL
    electrons_per_formula_unit: float = 1.0
    x_start: float = 1.0  # Li content of LixFePO4 at t = 0 (fully lithiated)
    depth_of_charge: float = 0.9  # fraction of theoretical capacity charged
    # Rate capability: the discharge returns r = 1 - k (C - 1) of the charge passed
    # (clipped to [0.5, 1]), standing in for the lower cutoff voltage being reached early at
    # high rate (LiFePO4 keeps ~85 % at 10C). So the cell rests partly delithiated after a
    # fast discharge, where a metastable intermediate can relax by the lever rule.
    rate_capability_loss_per_C: float = 0.015
    rest_s: float = 900.0
    sample_period_s: float = 5.0
    ocv_plateau_V: float = 3.428
    r_ohm_ohm: float = 20.0
    r_ct_ohm: float = 30.0
    tau_rc_s: float = 60.0
    acquisition_start_local: str = "2026-03-14T09:30:00.000"  # potentiostat PC local time
    timezone: str = "Europe/Paris"


@dataclass(frozen=True)
class ClockSpec:
    """Potentiostat vs beamline clock.

    ``beamline_epoch_s = acquisition_start_epoch_s + offset_s
    + (1 + drift_ppm * 1e-6) * t_potentiostat_s``.
    """

    offset_s: float = 1.7
    drift_ppm: float = 20.0
    beamline_jitter_s: float = 0.5e-3
    potentiostat_jitter_s: float = 1.0e-3
    n_missing_triggers: int = 3
    n_spurious_triggers: int = 1


@dataclass(frozen=True)
class XrdSpec:
    """Time-resolved angle-dispersive XRD on an area detector."""

    detector: str = "Pilatus100k"  # a pyFAI detector name
    frame_period_s: float = 30.0
    count_time_s: float = 10.0
    first_frame_s: float = 5.0  # potentiostat time of the first trigger
    wavelength_A: float = 0.2066  # 60 keV
    distance_m: float = 0.25
    # the probed spot lags the electrode-average Faraday state by this time (in-plane
    # inhomogeneity: a spot far from the tab reacts later); confocal's depth average does not
    lag_s: float = 60.0
    intermediate_min_c_rate: float = 5.0  # metastable LixFePO4 appears at or above this rate
    intermediate_peak_fraction: float = 0.25
    intermediate_decay_s: float = 300.0
    flux_counts: float = 2000.0  # peak counts per pixel scale of the strongest reflection
    background_counts: float = 20.0
    n_dead_pixels: int = 10
    n_hot_pixels: int = 5


@dataclass(frozen=True)
class XanesSpec:
    """Fe K-edge transmission XANES with a reference Fe foil."""

    scan_s: float = 30.0
    dead_time_s: float = 2.0
    first_scan_s: float = 10.0
    energy_min_eV: float = 7060.0
    energy_max_eV: float = 7260.0
    n_points: int = 400
    energy_offset_eV: float = 1.3  # monochromator reads this much too high
    lag_s: float = 120.0  # the XANES spot's lag behind the electrode average (see XrdSpec)
    i0_counts: float = 2.0e6
    absorber_mu_t: float = 1.0  # edge-step scale of the sample
    # what one pulse of the XANES controller marks when it has its own clock
    # (Preset.xanes_clock): "scan" (its start) or "point" (every energy point's mid-time)
    trigger: str = "scan"


@dataclass(frozen=True)
class ConfocalSpec:
    """Depth-resolved XRD through the cathode, in repeated passes.

    Acquisition defects: ``missing_points`` are (pass, depth) 0-based points not
    acquired (that pass's scan has one point fewer); ``cut_last_pass`` keeps an
    incomplete last pass as a shorter scan instead of dropping it.

    ``energy_dispersive`` also writes the same points as energy-dispersive spectra
    (``confocal/confocal_ed.h5``): a Ge detector at fixed ``ed_two_theta_deg`` with
    ``ed_n_channels`` channels, E = a + b·ch + c·ch² keV (``ed_calibration_keV`` =
    (a, b, c), ch 0-based), resolution FWHM(E) = sqrt(ed_fwhm_f0_keV² + ed_fwhm_f1_keV·E)
    keV; ``ed_flux_counts`` / ``ed_background_counts`` scale peaks / background (counts
    per channel, see :mod:`operando.simulate.confocal`).
    """

    detector: str = "Pilatus100k"
    n_depths: int = 9
    thickness_um: float = 170.0
    origin: str = "separator"  # depth 0 at the separator
    point_time_s: float = 12.0  # per depth point, including motor moves
    count_time_s: float = 8.0
    first_point_s: float = 0.0
    relaxation_time_s: float = 1800.0
    front_width_um: float = 15.0
    missing_points: tuple[tuple[int, int], ...] = ()
    cut_last_pass: bool = False
    energy_dispersive: bool = False
    ed_two_theta_deg: float = 6.0
    ed_n_channels: int = 4096
    ed_calibration_keV: tuple[float, float, float] = (0.05, 0.03, 0.0)
    ed_fwhm_f0_keV: float = 0.15
    ed_fwhm_f1_keV: float = 0.0007
    ed_flux_counts: float = 2000.0
    ed_background_counts: float = 20.0


@dataclass(frozen=True)
class KineticsSpec:
    """Cyclic voltammetry at several scan rates, and an SECCM-style per-pixel map."""

    D_cm2_s: float = 2.47e-11
    n_electrons: int = 1
    area_cm2: float = 0.0314  # 2 mm diameter disc
    concentration_mol_cm3: float = 0.0228  # Li in LiFePO4
    temperature_K: float = 298.15
    e0_V: float = 3.428  # the LiFePO4/FePO4 couple: same as EchemSpec.ocv_plateau_V
    # up to 50x max_linear: the quasi-reversible + iR fall-off grows only like sqrt(v), so
    # < 1 % at max_linear needs the ladder to reach ~50x it for a >= 5 % deviation
    scan_rates_V_s: tuple[float, ...] = (
        1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2
    )
    max_linear_scan_rate_V_s: float = 2e-4
    map_shape: tuple[int, int] = (16, 16)
    # SECCM sweeps are fast (a droplet cell on single particles): 0.1-2 V/s, with the map's
    # own Matsuda–Ayabe boundary (Λ = 15 for the fast domain) at the top rate
    map_scan_rates_V_s: tuple[float, ...] = (0.1, 0.2, 0.5, 1.0, 2.0)
    map_max_linear_scan_rate_V_s: float = 2.0
    map_D_low_cm2_s: float = 1.0e-11
    map_D_high_cm2_s: float = 5.0e-11
    map_area_cm2: float = 1.0e-7  # SECCM droplet footprint
    noise_fraction: float = 0.005
    sweep_half_width_V: float = 0.4  # CV from e0 - w to e0 + w and back
    sample_step_V: float = 1e-3  # potential step between recorded CV samples
    map_sample_step_V: float = 2e-3
    map_pitch_um: float = 5.0  # SECCM hopping step


@dataclass(frozen=True)
class Preset:
    name: str
    echem: EchemSpec = field(default_factory=EchemSpec)
    clock: ClockSpec = field(default_factory=ClockSpec)
    xrd: XrdSpec = field(default_factory=XrdSpec)
    xanes: XanesSpec = field(default_factory=XanesSpec)
    confocal: ConfocalSpec = field(default_factory=ConfocalSpec)
    kinetics: KineticsSpec = field(default_factory=KineticsSpec)
    # a stream timed by its own controller: its clock (offset, drift, jitter) and the
    # defects of its own trigger record; None: on the xrd controller's clock (``clock``)
    xanes_clock: ClockSpec | None = None
    confocal_clock: ClockSpec | None = None

    def stream_clock(self, stream: str) -> ClockSpec | None:
        """The own clock of ``stream`` (``xanes`` / ``confocal``), None when it has none."""
        return getattr(self, f"{stream}_clock", None)

    def with_overrides(self, overrides: dict[str, dict[str, Any]] | None) -> Preset:
        """Return a copy with ``{"section": {"field": value}}`` overrides applied."""
        if not overrides:
            return self
        out = self
        sections = {f.name for f in fields(self)} - {"name"}
        for section, values in overrides.items():
            if section not in sections:
                raise KeyError(f"unknown preset section {section!r}; expected one of "
                               f"{sorted(sections)}")
            sub = getattr(out, section)
            if sub is None:  # an own clock switched on by an override
                sub = ClockSpec()
            unknown = set(values) - set(sub.__dataclass_fields__)
            if unknown:
                raise KeyError(f"unknown field(s) {sorted(unknown)} in preset section {section!r}")
            out = replace(out, **{section: replace(sub, **values)})
        return out


PRESETS: dict[str, Preset] = {
    "small": Preset(
        name="small",
        echem=EchemSpec(c_rate_per_h=2.0, rest_s=600.0, sample_period_s=5.0),
        xrd=XrdSpec(detector="Pilatus100k", frame_period_s=30.0, count_time_s=10.0),
        xanes=XanesSpec(n_points=300),
        confocal=ConfocalSpec(
            detector="Pilatus100k", n_depths=6, point_time_s=10.0, count_time_s=6.0,
            relaxation_time_s=300.0, missing_points=((4, 2),), cut_last_pass=True,
            energy_dispersive=True,
        ),
    ),
    "lfp-1c": Preset(
        name="lfp-1c",
        echem=EchemSpec(c_rate_per_h=1.0, rest_s=1800.0, sample_period_s=5.0),
        xrd=XrdSpec(detector="Eiger1M", frame_period_s=20.0, count_time_s=5.0, lag_s=90.0),
        confocal=ConfocalSpec(detector="Pilatus300k", point_time_s=15.0,
                              relaxation_time_s=600.0),
    ),
    "lfp-10c": Preset(
        name="lfp-10c",
        echem=EchemSpec(c_rate_per_h=10.0, rest_s=1200.0, sample_period_s=1.0),
        xrd=XrdSpec(
            detector="Eiger1M", frame_period_s=4.0, count_time_s=1.0, first_frame_s=2.0,
            lag_s=15.0,
        ),
        xanes=XanesSpec(lag_s=20.0),
        confocal=ConfocalSpec(detector="Pilatus300k", point_time_s=6.0, count_time_s=3.0,
                              relaxation_time_s=400.0),
    ),
}


#: ``small`` with XANES and confocal timed by their own controllers: each sends its own
#: pulses to the potentiostat (XANES one per energy point), with its own offset, drift,
#: missing and spurious pulses
PRESETS["small-clocks"] = replace(
    PRESETS["small"], name="small-clocks",
    xanes=replace(PRESETS["small"].xanes, trigger="point"),
    xanes_clock=ClockSpec(offset_s=-2.35, drift_ppm=-35.0, n_missing_triggers=5,
                          n_spurious_triggers=2),
    confocal_clock=ClockSpec(offset_s=0.62, drift_ppm=48.0, n_missing_triggers=3,
                             n_spurious_triggers=1),
)


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise KeyError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}") from None
