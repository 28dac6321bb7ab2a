"""The ``peaks.nc`` product: peak fits of an ``xrd.nc`` time series and their phase analysis.

Pure (xarray in, xarray out). :func:`fit_xrd_block` fits one block of frames (both model
variants: without and, when configured, with the intermediate phase);
:func:`analyse_peaks` turns the fits of all blocks into per-frame results (the model chosen
by the intermediate test, d-spacings, phase fractions, lattice parameters, Vegard Li
content, Scherrer sizes) and :func:`peaks_dataset` assembles them into the Dataset —
(frame, peak) ``center``, ``fwhm``, ``area``, ``eta`` (+ ``_stderr``), ``d_spacing``;
(frame, window) fit status and reason; (frame, phase) ``phase_fraction``,
``lattice_a/b/c`` (+ ``_stderr``), ``x_li``, ``fwhm_phase``; the intermediate-phase test;
the per-frame coordinates of ``xrd.nc`` (``time``, ``time_utc``, the electrochemistry).
The frame dimension is the one of ``xrd.nc``'s ``intensity`` (``frame``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, fields

import numpy as np
import xarray as xr

from operando.cf import cf_attrs
from operando.xrd.peakfit import STATUS_MEANINGS, PatternFit, fit_patterns
from operando.xrd.phases import (
    PhaseDef,
    fit_lattice,
    intermediate_test,
    phase_fractions,
    scherrer_size_nm,
    vegard_x,
)
from operando.xrd.units import axis_of_dim, d_to_unit, dtwotheta_dx, unit_to_d
from operando.xrd.windows import FitOptions, PeakDef, WindowDef

__all__ = [
    "IntermediateResult",
    "PeakAnalysis",
    "PeakSetup",
    "analyse_peaks",
    "concat_fits",
    "fit_xrd_block",
    "peaks_dataset",
    "xrd_axis",
]


@dataclass(frozen=True)
class PeakSetup:
    """Everything the peak step needs (built from the config's ``peaks`` section).

    ``method``: ``batch`` (default) or ``lmfit``; ``chunk_frames``: frames per work unit
    (default 200); ``vegard_lithiated``/``vegard_delithiated``: the end-member phases of
    Vegard's law (default None: no Vegard x) on ``vegard_quantity`` (default ``volume``);
    ``intermediate_phase``: a phase fitted only when the information criterion
    ``intermediate_criterion`` (``bic`` default, or ``aic``) falls by more than
    ``intermediate_threshold`` (default 10) and its fraction reaches
    ``intermediate_min_fraction`` (default 0.02); ``scherrer`` (default False): crystallite
    sizes with the shape factor ``scherrer_k`` (default 0.9) after removing
    ``instrument_fwhm_deg`` (2θ degrees, default 0) in quadrature.
    """

    windows: tuple[WindowDef, ...]
    phases: tuple[PhaseDef, ...]
    options: FitOptions = field(default_factory=FitOptions)
    method: str = "batch"
    chunk_frames: int = 200
    vegard_lithiated: str | None = None
    vegard_delithiated: str | None = None
    vegard_quantity: str = "volume"
    intermediate_phase: str | None = None
    intermediate_criterion: str = "bic"
    intermediate_threshold: float = 10.0
    intermediate_min_fraction: float = 0.02
    scherrer: bool = False
    scherrer_k: float = 0.9
    instrument_fwhm_deg: float = 0.0

    def phase(self, name: str) -> PhaseDef:
        for p in self.phases:
            if p.name == name:
                return p
        raise KeyError(f"no phase named {name!r}; phases are {[p.name for p in self.phases]}")


def xrd_axis(xrd: xr.Dataset) -> tuple[str, str]:
    """(radial dimension, radial unit) of an ``xrd.nc`` Dataset, e.g. ``("q", "q_A^-1")``."""
    for dim in xrd["intensity"].dims:
        try:
            return str(dim), axis_of_dim(str(dim)).unit
        except KeyError:
            continue
    raise ValueError(f"xrd.nc: expected a radial dimension q, two_theta or d on "
                     f"'intensity', found {xrd['intensity'].dims}")


def fit_xrd_block(intensity: np.ndarray, sigma: np.ndarray, radial: np.ndarray, unit: str,
                  wavelength_A: float, setup: PeakSetup,
                  ) -> tuple[PatternFit, PatternFit | None]:
    """Fit a block of frames (``radial`` in ``unit``, λ ``wavelength_A`` in Å): the model
    without the intermediate phase and, when one is configured, the model with it (else
    None). An independent work unit (no state between blocks)."""
    excl = (setup.intermediate_phase,) if setup.intermediate_phase else ()
    fit_without = fit_patterns(intensity, sigma, radial, unit, wavelength_A, setup.windows,
                               setup.options, method=setup.method, exclude_phases=excl)
    fit_with = None
    if setup.intermediate_phase:
        fit_with = fit_patterns(intensity, sigma, radial, unit, wavelength_A, setup.windows,
                                setup.options, method=setup.method)
    return fit_without, fit_with


def concat_fits(fits: list[PatternFit]) -> PatternFit:
    """Stack the fits of consecutive blocks along the frame axis."""
    first = fits[0]
    out = {}
    for f in fields(PatternFit):
        v = getattr(first, f.name)
        if f.name in ("peak_names", "peak_window", "window_names", "param_names"):
            out[f.name] = v
        elif f.name in ("params", "params_stderr"):
            out[f.name] = [np.concatenate([getattr(x, f.name)[i] for x in fits])
                           for i in range(len(v))]
        else:
            out[f.name] = np.concatenate([getattr(x, f.name) for x in fits])
    return PatternFit(**out)


def _peak_table(setup: PeakSetup, excluded: tuple[str, ...] = ()) -> list[tuple[int, PeakDef]]:
    """(window index, PeakDef) of the model, in PatternFit order."""
    return [(w, p) for w, win in enumerate(setup.windows) for p in win.peaks
            if p.phase not in excluded]


def _unique(names: list[str], windows: list[str]) -> list[str]:
    out = []
    for n, w in zip(names, windows, strict=True):
        out.append(n if names.count(n) == 1 else f"{n}@{w}")
    return out


def _expand(fit: PatternFit, table_all: list[tuple[int, PeakDef]],
            table_fit: list[tuple[int, PeakDef]], key: str) -> np.ndarray:
    """A (F, n_all) array of ``fit.key`` with NaN for peaks the fit does not model."""
    n_f = fit.center.shape[0]
    out = np.full((n_f, len(table_all)), np.nan)
    pos = {(w, p.name): i for i, (w, p) in enumerate(table_all)}
    src = getattr(fit, key)
    for j, (w, p) in enumerate(table_fit):
        out[:, pos[(w, p.name)]] = src[:, j]
    return out


# --------------------------------------------------------------------------- analysis


@dataclass
class IntermediateResult:
    """The intermediate-phase test per frame (F,): ``flag`` (the model with the intermediate
    is chosen), ``delta_ic`` (ΔBIC or ΔAIC, with minus without), ``d_spacing`` (Å) and
    ``area_2theta`` (intensity × degree 2θ) of its strongest main reflection and its molar
    ``fraction_if_present`` in the model with it."""

    flag: np.ndarray
    delta_ic: np.ndarray
    d_spacing: np.ndarray
    area_2theta: np.ndarray
    fraction_if_present: np.ndarray


@dataclass
class PeakAnalysis:
    """Per-frame results of the peak fits, for the chosen model of each frame.

    Per (frame, peak), in the pattern's radial unit: ``center``, ``fwhm``, ``area``
    (intensity × unit), ``eta`` and their ``*_stderr``; ``d_spacing`` (+ stderr, Å),
    ``area_2theta`` (intensity × degree 2θ), ``fwhm_2theta`` (degree), ``snr``,
    ``detected``. Per (frame, window): ``status``, ``reason``, ``chi2``, ``n_points``,
    ``n_free``. Per (frame, phase): ``phase_fraction`` (+ stderr), ``lattice`` and
    ``lattice_stderr`` (…, 3: a, b, c in Å), ``x_li`` (Vegard), ``fwhm_phase`` (degree).
    Per frame: ``x_li_structural``. ``intermediate``: the test, or None without an
    intermediate phase; ``crystallite_size`` (frame, peak) and ``crystallite_size_phase``
    (frame, phase) in nm, or None without Scherrer.
    """

    center: np.ndarray
    center_stderr: np.ndarray
    fwhm: np.ndarray
    fwhm_stderr: np.ndarray
    area: np.ndarray
    area_stderr: np.ndarray
    eta: np.ndarray
    eta_stderr: np.ndarray
    d_spacing: np.ndarray
    d_spacing_stderr: np.ndarray
    area_2theta: np.ndarray
    fwhm_2theta: np.ndarray
    snr: np.ndarray
    detected: np.ndarray
    status: np.ndarray
    reason: np.ndarray
    chi2: np.ndarray
    n_points: np.ndarray
    n_free: np.ndarray
    phase_fraction: np.ndarray
    phase_fraction_stderr: np.ndarray
    lattice: np.ndarray
    lattice_stderr: np.ndarray
    x_li: np.ndarray
    fwhm_phase: np.ndarray
    x_li_structural: np.ndarray
    intermediate: IntermediateResult | None = None
    crystallite_size: np.ndarray | None = None
    crystallite_size_phase: np.ndarray | None = None


def _intermediate_test(fit_without: PatternFit, fit_with: PatternFit, setup: PeakSetup,
                       inter: str, unit: str, wavelength_A: float) -> IntermediateResult:
    """The model choice per frame: information criteria of both fits over the windows where
    both succeeded, and the intermediate's fraction in the model with it."""
    table_all = _peak_table(setup)
    n_f = fit_without.center.shape[0]
    phase_names = [p.name for p in setup.phases]
    peak_phase = np.array([p.phase for _, p in table_all])
    peak_window = np.array([w for w, _ in table_all])
    intensity_ref = np.array([p.intensity for _, p in table_all])
    ok_a = fit_without.status == 0
    ok_b = fit_with.status == 0
    has_int = np.array([any(p.phase == inter for p in w.peaks) for w in setup.windows])
    both = ok_a & ok_b & has_int[None, :]
    chi_a = np.where(both, fit_without.chi2, 0.0).sum(axis=1)
    chi_b = np.where(both, fit_with.chi2, 0.0).sum(axis=1)
    k_a = np.where(both, fit_without.n_free, 0).sum(axis=1)
    k_b = np.where(both, fit_with.n_free, 0).sum(axis=1)
    npts = np.where(both, fit_without.n_points, 0).sum(axis=1)
    any_both = both.any(axis=1)
    area_b = _expand(fit_with, table_all, table_all, "area")
    center_b = _expand(fit_with, table_all, table_all, "center")
    conv_b = dtwotheta_dx(center_b, unit, wavelength_A)
    usable_b = ok_b[:, peak_window]
    frac_b, _ = phase_fractions(area_b * conv_b, intensity_ref, peak_phase, phase_names,
                                [p.scale for p in setup.phases], usable_b)
    f_int = frac_b[:, phase_names.index(inter)]
    delta, flag = intermediate_test(
        np.where(any_both, chi_a, np.nan), k_a, np.where(any_both, chi_b, np.nan), k_b,
        npts, f_int, criterion=setup.intermediate_criterion,
        threshold=setup.intermediate_threshold,
        min_fraction=setup.intermediate_min_fraction)
    # position and intensity of the intermediate's strongest main reflection
    int_main = [i for i, (_, p) in enumerate(table_all) if p.phase == inter and
                p.satellite_of is None]
    if int_main:
        strongest = max(int_main, key=lambda i: intensity_ref[i])
        d_int = unit_to_d(center_b[:, strongest], unit, wavelength_A)
        a_int = (area_b * conv_b)[:, strongest]
    else:
        d_int = a_int = np.full(n_f, np.nan)
    return IntermediateResult(flag=flag, delta_ic=delta, d_spacing=d_int, area_2theta=a_int,
                              fraction_if_present=f_int)


def _expand_cov(fit: PatternFit, table_all: list[tuple[int, PeakDef]],
                table_fit: list[tuple[int, PeakDef]]) -> np.ndarray:
    """The (F, n_all, n_all) area covariance of ``fit`` with 0 for peaks it does not model."""
    pos = {(w, p.name): i for i, (w, p) in enumerate(table_all)}
    idx = np.array([pos[(w, p.name)] for w, p in table_fit], int)
    out = np.zeros((fit.center.shape[0], len(table_all), len(table_all)))
    out[:, idx[:, None], idx[None, :]] = fit.area_cov
    return out


def _chosen_model(fit_without: PatternFit, fit_with: PatternFit | None, setup: PeakSetup,
                  chosen: np.ndarray) -> dict[str, np.ndarray]:
    """Per-peak values and per-window fit quality of the model chosen in each frame (the one
    with the intermediate where ``chosen``); the intermediate's peaks are NaN (area 0) in
    frames where it is not chosen."""
    inter = setup.intermediate_phase if fit_with is not None else None
    table_all = _peak_table(setup)
    table_a = _peak_table(setup, (inter,) if inter else ())
    out: dict[str, np.ndarray] = {}
    for key in ("center", "center_stderr", "fwhm", "fwhm_stderr", "area", "area_stderr",
                "eta", "eta_stderr"):
        a = _expand(fit_without, table_all, table_a, key)
        b = a if fit_with is None else _expand(fit_with, table_all, table_all, key)
        out[key] = np.where(chosen[:, None], b, a)
    for key in ("status", "reason", "chi2", "n_points", "n_free"):
        a = getattr(fit_without, key)
        out[key] = np.where(chosen[:, None], a if fit_with is None else getattr(fit_with, key),
                            a)
    out["reason"] = out["reason"].astype(str)
    cov_a = _expand_cov(fit_without, table_all, table_a)
    out["area_cov"] = cov_a if fit_with is None else np.where(
        chosen[:, None, None], _expand_cov(fit_with, table_all, table_all), cov_a)
    if inter:  # unflagged frames: the intermediate's peaks are not part of the model
        peak_phase = np.array([p.phase for _, p in table_all])
        no = (~chosen)[:, None] & (peak_phase == inter)[None, :]
        for key in ("center", "center_stderr", "fwhm", "fwhm_stderr", "eta", "eta_stderr"):
            out[key][no] = np.nan
        out["area"][no] = 0.0
        out["area_stderr"][no] = np.nan
    return out


def _lattice(setup: PeakSetup, d: np.ndarray, d_err: np.ndarray, detected: np.ndarray,
             fwhm_2th: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lattice parameters (F, phase, 3) (Å) and their standard errors from the detected main
    peaks with Miller indices of each phase, and each phase's mean 2θ FWHM (degree)."""
    table_all = _peak_table(setup)
    n_f, n_ph = d.shape[0], len(setup.phases)
    peak_phase = np.array([p.phase for _, p in table_all])
    main = np.array([p.satellite_of is None for _, p in table_all])
    hkl_all = [p.hkl for _, p in table_all]
    lat = np.full((n_f, n_ph, 3), np.nan)
    lat_err = np.full((n_f, n_ph, 3), np.nan)
    fwhm_phase = np.full((n_f, n_ph), np.nan)
    for i, ph in enumerate(setup.phases):
        cols = np.flatnonzero((peak_phase == ph.name) & main &
                              np.array([h is not None for h in hkl_all]))
        if cols.size == 0:
            continue
        hkl = [hkl_all[c] for c in cols]
        for f in range(n_f):
            use = detected[f, cols]
            if not use.any():
                continue
            dd = np.where(use, d[f, cols], np.nan)
            lat[f, i], lat_err[f, i] = fit_lattice(hkl, dd, d_err[f, cols], ph.system)
        w_use = np.where(detected[:, cols], fwhm_2th[:, cols], np.nan)
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            fwhm_phase[:, i] = np.nanmean(w_use, axis=1)
    return lat, lat_err, fwhm_phase


def _vegard(setup: PeakSetup, lat: np.ndarray) -> np.ndarray:
    """Li content (F, phase) by Vegard's law for the phases of the end members' crystal
    system (NaN elsewhere, or without end members)."""
    x_li = np.full(lat.shape[:2], np.nan)
    if setup.vegard_lithiated and setup.vegard_delithiated:
        lith = setup.phase(setup.vegard_lithiated)
        deli = setup.phase(setup.vegard_delithiated)
        for i, ph in enumerate(setup.phases):
            if ph.system == lith.system:
                x_li[:, i] = vegard_x(lat[:, i], lith, deli, lith.system,
                                      setup.vegard_quantity)
    return x_li


def _scherrer(setup: PeakSetup, d: np.ndarray, fwhm_2th: np.ndarray, detected: np.ndarray,
              wavelength_A: float) -> tuple[np.ndarray, np.ndarray]:
    """Scherrer sizes (nm) per (frame, peak) and the mean of each phase's detected peaks."""
    peak_phase = np.array([p.phase for _, p in _peak_table(setup)])
    tth = d_to_unit(d, "2th_deg", wavelength_A)
    size = scherrer_size_nm(fwhm_2th, tth, wavelength_A, setup.scherrer_k,
                            setup.instrument_fwhm_deg)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        sz = np.stack([np.nanmean(np.where(detected & (peak_phase == p.name)[None], size,
                                           np.nan), axis=1) for p in setup.phases], -1)
    return size, sz


def analyse_peaks(fit_without_intermediate: PatternFit,
                  fit_with_intermediate: PatternFit | None, setup: PeakSetup, unit: str,
                  wavelength_A: float) -> PeakAnalysis:
    """Per-frame results of the fits of all frames (radial ``unit``, λ ``wavelength_A`` in
    Å): the model chosen by the intermediate test (the model without the intermediate when
    ``fit_with_intermediate`` is None), d-spacings, 2θ areas and widths, detected peaks,
    phase fractions, lattice parameters, Vegard Li content and, when configured, Scherrer
    sizes (see :class:`PeakAnalysis`)."""
    wl = wavelength_A
    n_f = fit_without_intermediate.center.shape[0]
    inter = setup.intermediate_phase if fit_with_intermediate is not None else None
    table_all = _peak_table(setup)
    phase_names = [p.name for p in setup.phases]
    peak_phase = np.array([p.phase for _, p in table_all])
    peak_window = np.array([w for w, _ in table_all])
    intensity_ref = np.array([p.intensity for _, p in table_all])
    test = None
    chosen = np.zeros(n_f, bool)
    if inter:
        assert fit_with_intermediate is not None
        test = _intermediate_test(fit_without_intermediate, fit_with_intermediate, setup,
                                  inter, unit, wl)
        chosen = test.flag
    m = _chosen_model(fit_without_intermediate, fit_with_intermediate, setup, chosen)
    center, center_err, area, area_err = (m["center"], m["center_stderr"], m["area"],
                                          m["area_stderr"])
    d = unit_to_d(center, unit, wl)
    conv = dtwotheta_dx(center, unit, wl)
    with np.errstate(invalid="ignore", divide="ignore"):
        d_err = np.abs(d - unit_to_d(center + center_err, unit, wl))
        snr = np.where(area_err > 0, area / area_err, np.nan)
    ok_peak = (m["status"] == 0)[:, peak_window]
    detected = ok_peak & np.isfinite(snr) & (snr >= setup.options.snr_threshold)
    area_2th, area_2th_err = area * conv, area_err * conv
    fwhm_2th = m["fwhm"] * conv
    cov_2th = m["area_cov"] * conv[:, :, None] * conv[:, None, :]
    frac, frac_err = phase_fractions(np.stack([area_2th, np.nan_to_num(area_2th_err)], -1),
                                     intensity_ref, peak_phase, phase_names,
                                     [p.scale for p in setup.phases], ok_peak,
                                     area_cov=cov_2th)
    if inter:
        i_int = phase_names.index(inter)
        frac[~chosen & np.all(np.isfinite(np.delete(frac, i_int, 1)), 1), i_int] = 0.0
    lat, lat_err, fwhm_phase = _lattice(setup, d, d_err, detected, fwhm_2th)
    x_li = _vegard(setup, lat)
    x_struct = np.nansum(np.nan_to_num(frac) * np.where(np.isfinite(x_li), x_li, 0.0), axis=1)
    x_struct = np.where(np.all(np.isfinite(frac), axis=1) &
                        np.all(np.isfinite(x_li) | (frac == 0), axis=1), x_struct, np.nan)
    size = size_phase = None
    if setup.scherrer:
        size, size_phase = _scherrer(setup, d, fwhm_2th, detected, wl)
    return PeakAnalysis(
        center=center, center_stderr=center_err, fwhm=m["fwhm"], fwhm_stderr=m["fwhm_stderr"],
        area=area, area_stderr=area_err, eta=m["eta"], eta_stderr=m["eta_stderr"],
        d_spacing=d, d_spacing_stderr=d_err, area_2theta=area_2th, fwhm_2theta=fwhm_2th,
        snr=snr, detected=detected, status=m["status"], reason=m["reason"], chi2=m["chi2"],
        n_points=m["n_points"], n_free=m["n_free"], phase_fraction=frac,
        phase_fraction_stderr=frac_err, lattice=lat, lattice_stderr=lat_err, x_li=x_li,
        fwhm_phase=fwhm_phase, x_li_structural=x_struct, intermediate=test,
        crystallite_size=size, crystallite_size_phase=size_phase)


# --------------------------------------------------------------------------- assembly


def _peak_variables(res: PeakAnalysis, rad: str, runit: str, iunit: str, fd: str
                    ) -> dict[str, xr.Variable]:
    """The (frame, peak) and (frame, window) variables (``fd`` the frame dimension);
    ``runit``/``iunit`` the CF units of the radial axis and of the intensity."""
    tp, tw = (fd, "peak"), (fd, "window")
    # CF units of intensity × radial unit (xrd.nc intensities are dimensionless, units "1")
    area_units = runit if iunit in ("1", "") else f"{iunit} {runit}"
    area_2th_units = "degree" if iunit in ("1", "") else f"{iunit} degree"
    return {
        "center": xr.Variable(tp, res.center, cf_attrs(runit, f"fitted peak centre ({rad})")),
        "center_stderr": xr.Variable(tp, res.center_stderr, cf_attrs(
            runit, "standard error of center")),
        "fwhm": xr.Variable(tp, res.fwhm, cf_attrs(runit, f"peak full width at half maximum "
                                                   f"({rad})")),
        "fwhm_stderr": xr.Variable(tp, res.fwhm_stderr, cf_attrs(runit,
                                                                 "standard error of fwhm")),
        "area": xr.Variable(tp, res.area, cf_attrs(area_units, "integrated peak intensity "
                                                   f"(intensity × {rad})")),
        "area_stderr": xr.Variable(tp, res.area_stderr, cf_attrs(area_units,
                                                                 "standard error of area")),
        "eta": xr.Variable(tp, res.eta, cf_attrs("1", "pseudo-Voigt Lorentzian fraction η")),
        "eta_stderr": xr.Variable(tp, res.eta_stderr, cf_attrs("1", "standard error of eta")),
        "d_spacing": xr.Variable(tp, res.d_spacing, cf_attrs(
            "angstrom", "d-spacing of the fitted centre")),
        "d_spacing_stderr": xr.Variable(tp, res.d_spacing_stderr, cf_attrs(
            "angstrom", "standard error of d_spacing")),
        "area_2theta": xr.Variable(tp, res.area_2theta, cf_attrs(
            area_2th_units, "integrated intensity per degree 2θ (intensity × degree)")),
        "fwhm_2theta": xr.Variable(tp, res.fwhm_2theta, cf_attrs("degree", "FWHM in 2θ")),
        "snr": xr.Variable(tp, res.snr, cf_attrs("1", "signal-to-noise ratio area / "
                                                 "area_stderr")),
        "detected": xr.Variable(tp, res.detected, {"long_name": "peak above the SNR threshold "
                                                   "in a successful window fit", "units": "1"}),
        "fit_status": xr.Variable(tw, res.status.astype(np.int8), {
            "long_name": "window fit status", "units": "1",
            "flag_values": np.array(list(STATUS_MEANINGS), np.int8),
            "flag_meanings": " ".join(v.replace(" ", "_").replace("(", "").replace(")", "")
                                      for v in STATUS_MEANINGS.values())}),
        "fit_reason": xr.Variable(tw, res.reason, {"long_name": "window fit status, in words",
                                                   "units": "1"}),
        "chi2_reduced": xr.Variable(tw, res.chi2 / np.maximum(res.n_points - res.n_free, 1),
                                    cf_attrs("1", "reduced χ² of the window fit")),
    }


def _phase_variables(res: PeakAnalysis, setup: PeakSetup, fd: str) -> dict[str, xr.Variable]:
    """The (frame, phase) variables and the structural Li content on frame (``fd``)."""
    tph = (fd, "phase")
    lat, lat_err = res.lattice, res.lattice_stderr
    return {
        "phase_fraction": xr.Variable(tph, res.phase_fraction, cf_attrs(
            "1", "molar phase fraction from integrated intensities")),
        "phase_fraction_stderr": xr.Variable(tph, res.phase_fraction_stderr, cf_attrs(
            "1", "standard error of phase_fraction (counting statistics, with the "
            "covariance of the fitted areas)")),
        "lattice_a": xr.Variable(tph, lat[..., 0], cf_attrs("angstrom", "lattice parameter a")),
        "lattice_b": xr.Variable(tph, lat[..., 1], cf_attrs("angstrom", "lattice parameter b")),
        "lattice_c": xr.Variable(tph, lat[..., 2], cf_attrs("angstrom", "lattice parameter c")),
        "lattice_a_stderr": xr.Variable(tph, lat_err[..., 0], cf_attrs("angstrom",
                                                                     "standard error of a")),
        "lattice_b_stderr": xr.Variable(tph, lat_err[..., 1], cf_attrs("angstrom",
                                                                     "standard error of b")),
        "lattice_c_stderr": xr.Variable(tph, lat_err[..., 2], cf_attrs("angstrom",
                                                                     "standard error of c")),
        "x_li": xr.Variable(tph, res.x_li, cf_attrs("1", "Li content of the phase by Vegard's "
                                                    f"law on the {setup.vegard_quantity}")),
        "fwhm_phase": xr.Variable(tph, res.fwhm_phase, cf_attrs(
            "degree", "mean FWHM (2θ) of the phase's detected main peaks")),
        "x_li_structural": xr.Variable(fd, res.x_li_structural, cf_attrs(
            "1", "Li content of the probed volume, Σ phase_fraction × x_li")),
    }


def _intermediate_variables(test: IntermediateResult, setup: PeakSetup, inter: str,
                            area_2th_units: str, fd: str) -> dict[str, xr.Variable]:
    """The intermediate-phase test on the frame dimension ``fd``."""
    crit = setup.intermediate_criterion.upper()
    return {
        "intermediate_flag": xr.Variable(fd, test.flag, {
            "long_name": f"intermediate phase {inter} detected "
            f"(Δ{crit} < −{setup.intermediate_threshold:g} "
            f"and fraction ≥ {setup.intermediate_min_fraction:g})", "units": "1"}),
        "intermediate_delta_ic": xr.Variable(fd, test.delta_ic, cf_attrs(
            "1", f"Δ{crit} of the model with the "
            "intermediate phase minus the model without it (χ² scaled by the reduced χ² "
            "of the model without, when > 1)")),
        "intermediate_d_spacing": xr.Variable(fd, test.d_spacing, cf_attrs(
            "angstrom", f"d-spacing of the strongest fitted {inter} reflection (model with "
            "the intermediate)")),
        "intermediate_area": xr.Variable(fd, test.area_2theta, cf_attrs(
            area_2th_units, f"integrated intensity of that {inter} reflection (intensity × "
            "degree 2θ)")),
        "intermediate_fraction_if_present": xr.Variable(fd, test.fraction_if_present,
                                                        cf_attrs(
            "1", f"molar fraction of {inter} in the model with the intermediate")),
    }


def _coords(setup: PeakSetup, xrd: xr.Dataset, n_f: int, fd: str) -> dict[str, xr.Variable]:
    """The peak, window and phase coordinates, and the per-frame coordinates of ``xrd`` on
    its frame dimension ``fd`` (time, time_utc, its electrochemistry; ``x_li`` renamed
    ``x_li_faraday``)."""
    table_all = _peak_table(setup)
    win_names = [w.name for w in setup.windows]
    peak_names = _unique([p.name for _, p in table_all], [win_names[w] for w, _ in table_all])
    coords: dict[str, xr.Variable] = {
        "peak": xr.Variable("peak", np.array(peak_names, dtype=str),
                            {"long_name": "reflection (phase_hkl)", "units": "1"}),
        "peak_phase": xr.Variable("peak", np.array([p.phase for _, p in table_all]).astype(str),
                                  {"long_name": "phase of the reflection", "units": "1"}),
        "peak_hkl": xr.Variable("peak", np.array([" ".join(map(str, p.hkl)) if p.hkl else ""
                                                  for _, p in table_all], dtype=str),
                                {"long_name": "Miller indices h k l", "units": "1"}),
        "peak_window": xr.Variable("peak", np.array([win_names[w] for w, _ in table_all],
                                                    dtype=str),
                                   {"long_name": "fit window of the reflection", "units": "1"}),
        "peak_is_main": xr.Variable("peak", np.array([p.satellite_of is None
                                                      for _, p in table_all]), {
            "long_name": "free centre and area (not a satellite tied to a main peak)",
            "units": "1"}),
        "peak_d_nominal": xr.Variable("peak", np.array([p.d_A for _, p in table_all]),
                                      cf_attrs("angstrom", "configured d-spacing")),
        "peak_intensity_ref": xr.Variable("peak", np.array([p.intensity for _, p in table_all]),
                                          cf_attrs("1", "reference integrated intensity for a "
                                                   "phase fraction of 1 (common scale)")),
        "window": xr.Variable("window", np.array(win_names, dtype=str),
                              {"long_name": "fit window", "units": "1"}),
        "phase": xr.Variable("phase", np.array([p.name for p in setup.phases], dtype=str),
                             {"long_name": "crystalline phase", "units": "1"}),
    }
    for name, var in xrd.coords.items():
        if var.dims == (fd,):
            v = var.variable.copy()
            if name == "x_li":  # the name is taken by the per-phase Vegard x_li (frame, phase)
                name = "x_li_faraday"
                v.attrs["long_name"] = ("Li content x from the charge passed (Faraday), "
                                        "exposure mean; 'x_li' in xrd.nc")
            if "long_name" not in v.attrs:
                v.attrs["long_name"] = name
            if "units" not in v.attrs and v.dtype.kind not in "MmUSOb":
                v.attrs["units"] = "1"
            coords[name] = v
    if "time" not in coords:
        coords["time"] = xr.Variable(fd, np.arange(n_f, dtype=float), {**cf_attrs(
            "1", "frame number (no time in xrd.nc)"), "clock": "none"})
    return coords


def peaks_dataset(xrd: xr.Dataset, fit_without_intermediate: PatternFit,
                  fit_with_intermediate: PatternFit | None, setup: PeakSetup,
                  wavelength_A: float) -> xr.Dataset:
    """The ``peaks.nc`` Dataset from the fits of all frames of ``xrd`` (see module doc):
    the fits of the model without the intermediate phase and, when one is configured, of
    the model with it (else None); λ ``wavelength_A`` in Å (the product's, e.g.
    :func:`operando.io.xrd.geometry.product_wavelength_A`)."""
    rad, unit = xrd_axis(xrd)
    fd = next(str(d) for d in xrd["intensity"].dims if d != rad)
    res = analyse_peaks(fit_without_intermediate, fit_with_intermediate, setup, unit,
                        wavelength_A)
    inter = setup.intermediate_phase if fit_with_intermediate is not None else None
    runit = str(xrd[rad].attrs.get("units", unit))
    iunit = str(xrd["intensity"].attrs.get("units", "1"))
    data = {**_peak_variables(res, rad, runit, iunit, fd), **_phase_variables(res, setup, fd)}
    if inter and res.intermediate is not None:
        area_2th_units = "degree" if iunit in ("1", "") else f"{iunit} degree"
        data.update(_intermediate_variables(res.intermediate, setup, inter, area_2th_units,
                                            fd))
    if res.crystallite_size is not None and res.crystallite_size_phase is not None:
        data["crystallite_size"] = xr.Variable((fd, "peak"), res.crystallite_size, cf_attrs(
            "nm", f"Scherrer crystallite size K λ/(β cos θ), K = {setup.scherrer_k:g}, "
            f"instrumental FWHM {setup.instrument_fwhm_deg:g}° removed in quadrature"))
        data["crystallite_size_phase"] = xr.Variable(
            (fd, "phase"), res.crystallite_size_phase, cf_attrs(
                "nm", "mean Scherrer size of the phase's detected peaks"))
    n_f = fit_without_intermediate.center.shape[0]
    ds = xr.Dataset(data, coords=_coords(setup, xrd, n_f, fd))
    ds.attrs.update({
        "radial_unit": unit, "wavelength_A": wavelength_A, "fit_method": setup.method,
        "profile": setup.options.profile, "snr_threshold": setup.options.snr_threshold,
        "intermediate_phase": inter or "",
    })
    return ds
