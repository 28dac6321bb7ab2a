"""The ``peaks.nc`` product: peak fits of an ``xrd.nc`` time series and their phase analysis.

Pure (xarray in, xarray out). :func:`fit_xrd_block` fits one block of frames (both model
variants: without and, when configured, with the intermediate phase); :func:`peaks_dataset`
turns the fits of all blocks into the Dataset — (time, peak) ``center``, ``fwhm``, ``area``,
``eta`` (+ ``_stderr``), ``d_spacing``; (time, window) fit status and reason; (time, phase)
``phase_fraction``, ``lattice_a/b/c`` (+ ``_stderr``), ``x_li``, ``fwhm_phase``; the
intermediate-phase test; the electrochemistry coordinates of ``xrd.nc``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, fields

import numpy as np
import xarray as xr

from operando.cf import cf_attrs
from operando.xrd.peaks import (
    RADIAL_UNITS,
    STATUS_MEANINGS,
    FitOptions,
    PatternFit,
    WindowDef,
    d_to_unit,
    dtwotheta_dx,
    fit_patterns,
    unit_to_d,
    wavelength_from_poni,
)
from operando.xrd.phases import (
    PhaseDef,
    fit_lattice,
    intermediate_test,
    phase_fractions,
    scherrer_size_nm,
    vegard_x,
)

__all__ = ["PeakSetup", "concat_fits", "fit_xrd_block", "peaks_dataset", "xrd_axis"]


@dataclass(frozen=True)
class PeakSetup:
    """Everything the peak step needs (built from the config's ``peaks`` section)."""

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


def xrd_axis(xrd: xr.Dataset) -> tuple[str, str, float]:
    """(radial dim, operando unit, λ in Å) of an ``xrd.nc`` Dataset (λ from its PONI text,
    else a ``wavelength_A`` attribute)."""
    rad = next((d for d in xrd["intensity"].dims if d in RADIAL_UNITS), None)
    if rad is None:
        raise ValueError(f"xrd.nc: expected a radial dimension q, two_theta or d on "
                         f"'intensity', found {xrd['intensity'].dims}")
    if "poni" in xrd.attrs:
        wl = wavelength_from_poni(str(xrd.attrs["poni"]))
    elif "wavelength_A" in xrd.attrs:
        wl = float(xrd.attrs["wavelength_A"])
    else:
        raise ValueError("xrd.nc: expected the PONI text (attribute 'poni') or 'wavelength_A' "
                         "to convert d-spacings to the pattern's unit, found neither")
    return rad, RADIAL_UNITS[rad], wl


def fit_xrd_block(intensity: np.ndarray, sigma: np.ndarray, radial: np.ndarray, unit: str,
                  wavelength_A: float, setup: PeakSetup,
                  ) -> tuple[PatternFit, PatternFit | None]:
    """Fit a block of frames: the model without the intermediate phase and, when one is
    configured, the model with it. An independent work unit (no state between blocks)."""
    excl = (setup.intermediate_phase,) if setup.intermediate_phase else ()
    fit_a = fit_patterns(intensity, sigma, radial, unit, wavelength_A, setup.windows,
                         setup.options, method=setup.method, exclude_phases=excl)
    fit_b = None
    if setup.intermediate_phase:
        fit_b = fit_patterns(intensity, sigma, radial, unit, wavelength_A, setup.windows,
                             setup.options, method=setup.method)
    return fit_a, fit_b


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


def _peak_table(setup: PeakSetup, excluded: tuple[str, ...] = ()) -> list[tuple]:
    """(window index, PeakDef) of the model, in PatternFit order."""
    return [(w, p) for w, win in enumerate(setup.windows) for p in win.peaks
            if p.phase not in excluded]


def _unique(names: list[str], windows: list[str]) -> list[str]:
    out = []
    for n, w in zip(names, windows, strict=True):
        out.append(n if names.count(n) == 1 else f"{n}@{w}")
    return out


def _expand(fit: PatternFit, table_all: list[tuple], table_fit: list[tuple],
            key: str) -> np.ndarray:
    """A (F, n_all) array of ``fit.key`` with NaN for peaks the fit does not model."""
    n_f = fit.center.shape[0]
    out = np.full((n_f, len(table_all)), np.nan)
    pos = {(w, p.name): i for i, (w, p) in enumerate(table_all)}
    src = getattr(fit, key)
    for j, (w, p) in enumerate(table_fit):
        out[:, pos[(w, p.name)]] = src[:, j]
    return out


def peaks_dataset(xrd: xr.Dataset, fit_a: PatternFit, fit_b: PatternFit | None,
                  setup: PeakSetup) -> xr.Dataset:
    """The ``peaks.nc`` Dataset from the fits of all frames of ``xrd`` (see module doc)."""
    rad, unit, wl = xrd_axis(xrd)
    n_f = fit_a.center.shape[0]
    inter = setup.intermediate_phase if fit_b is not None else None
    table_all = _peak_table(setup)
    table_a = _peak_table(setup, (inter,) if inter else ())
    win_names = [w.name for w in setup.windows]
    phase_names = [p.name for p in setup.phases]
    peak_phase = np.array([p.phase for _, p in table_all])
    peak_window = np.array([w for w, _ in table_all])
    intensity_ref = np.array([p.intensity for _, p in table_all])
    main = np.array([p.satellite_of is None for _, p in table_all])

    def pick(key: str) -> tuple[np.ndarray, np.ndarray]:
        a = _expand(fit_a, table_all, table_a, key)
        if fit_b is None:
            return a, a
        return a, _expand(fit_b, table_all, table_all, key)

    # ---- model choice per frame: the intermediate test
    status_a = fit_a.status
    ok_a = status_a == 0
    delta = flag = None
    inter_vars: dict[str, xr.Variable] = {}
    chosen_b = np.zeros(n_f, bool)
    if inter:
        ok_b = fit_b.status == 0
        has_int = np.array([any(p.phase == inter for p in w.peaks) for w in setup.windows])
        both = ok_a & ok_b & has_int[None, :]
        chi_a = np.where(both, fit_a.chi2, 0.0).sum(axis=1)
        chi_b = np.where(both, fit_b.chi2, 0.0).sum(axis=1)
        k_a = np.where(both, fit_a.n_free, 0).sum(axis=1)
        k_b = np.where(both, fit_b.n_free, 0).sum(axis=1)
        npts = np.where(both, fit_a.n_points, 0).sum(axis=1)
        any_both = both.any(axis=1)
        area_b = _expand(fit_b, table_all, table_all, "area")
        conv_b = dtwotheta_dx(_expand(fit_b, table_all, table_all, "center"), unit, wl)
        usable_b = ok_b[:, peak_window]
        frac_b, _ = phase_fractions(area_b * conv_b, intensity_ref, peak_phase, phase_names,
                                    [p.scale for p in setup.phases], usable_b)
        f_int = frac_b[:, phase_names.index(inter)]
        delta, flag = intermediate_test(
            np.where(any_both, chi_a, np.nan), k_a, np.where(any_both, chi_b, np.nan), k_b,
            npts, f_int, criterion=setup.intermediate_criterion,
            threshold=setup.intermediate_threshold,
            min_fraction=setup.intermediate_min_fraction)
        chosen_b = flag
        # position and intensity of the intermediate's strongest main reflection
        int_main = [i for i, (_, p) in enumerate(table_all) if p.phase == inter and
                    p.satellite_of is None]
        if int_main:
            strongest = max(int_main, key=lambda i: intensity_ref[i])
            c = _expand(fit_b, table_all, table_all, "center")[:, strongest]
            d_int = unit_to_d(c, unit, wl)
            a_int = (area_b * conv_b)[:, strongest]
        else:
            d_int = a_int = np.full(n_f, np.nan)
        inter_vars = {
            "intermediate_flag": xr.Variable("time", flag, {
                "long_name": f"intermediate phase {inter} detected "
                f"(Δ{setup.intermediate_criterion.upper()} < −{setup.intermediate_threshold:g} "
                f"and fraction ≥ {setup.intermediate_min_fraction:g})", "units": "1"}),
            "intermediate_delta_ic": xr.Variable("time", delta, cf_attrs(
                "1", f"Δ{setup.intermediate_criterion.upper()} of the model with the "
                "intermediate phase minus the model without it (χ² scaled by the reduced χ² "
                "of the model without, when > 1)")),
            "intermediate_d_spacing": xr.Variable("time", d_int, cf_attrs(
                "angstrom", f"d-spacing of the strongest fitted {inter} reflection (model with "
                "the intermediate)")),
            "intermediate_area": xr.Variable("time", a_int, cf_attrs(
                "degree" if str(xrd["intensity"].attrs.get("units", "1")) in ("1", "")
                else f"{xrd['intensity'].attrs['units']} degree",
                f"integrated intensity of that {inter} reflection (intensity × "
                "degree 2θ)")),
            "intermediate_fraction_if_present": xr.Variable("time", f_int, cf_attrs(
                "1", f"molar fraction of {inter} in the model with the intermediate")),
        }

    def choose(key: str) -> np.ndarray:
        a, b = pick(key)
        return np.where(chosen_b[:, None], b, a)

    center, center_err = choose("center"), choose("center_stderr")
    fwhm, fwhm_err = choose("fwhm"), choose("fwhm_stderr")
    area, area_err = choose("area"), choose("area_stderr")
    eta, eta_err = choose("eta"), choose("eta_stderr")
    status = np.where(chosen_b[:, None], fit_b.status if fit_b is not None else status_a,
                      status_a)
    reason = np.where(chosen_b[:, None], fit_b.reason if fit_b is not None else fit_a.reason,
                      fit_a.reason).astype(str)
    chi2 = np.where(chosen_b[:, None], fit_b.chi2 if fit_b is not None else fit_a.chi2,
                    fit_a.chi2)
    npts = np.where(chosen_b[:, None], fit_b.n_points if fit_b is not None else fit_a.n_points,
                    fit_a.n_points)
    nfree = np.where(chosen_b[:, None], fit_b.n_free if fit_b is not None else fit_a.n_free,
                     fit_a.n_free)
    if inter:  # unflagged frames: the intermediate's peaks are not part of the model
        no = (~chosen_b)[:, None] & (peak_phase == inter)[None, :]
        for arr in (center, center_err, fwhm, fwhm_err, eta, eta_err):
            arr[no] = np.nan
        area[no] = 0.0
        area_err[no] = np.nan

    d = unit_to_d(center, unit, wl)
    conv = dtwotheta_dx(center, unit, wl)
    with np.errstate(invalid="ignore", divide="ignore"):
        d_err = np.abs(d - unit_to_d(center + center_err, unit, wl))
        snr = np.where(area_err > 0, area / area_err, np.nan)
    ok_peak = (status == 0)[:, peak_window]
    detected = ok_peak & np.isfinite(snr) & (snr >= setup.options.snr_threshold)
    area_2th, area_2th_err = area * conv, area_err * conv
    fwhm_2th = fwhm * conv

    frac, frac_err = phase_fractions(np.stack([area_2th, np.nan_to_num(area_2th_err)], -1),
                                     intensity_ref, peak_phase, phase_names,
                                     [p.scale for p in setup.phases], ok_peak)
    if inter:
        i_int = phase_names.index(inter)
        frac[~chosen_b & np.all(np.isfinite(np.delete(frac, i_int, 1)), 1), i_int] = 0.0

    n_ph = len(phase_names)
    lat = np.full((n_f, n_ph, 3), np.nan)
    lat_err = np.full((n_f, n_ph, 3), np.nan)
    fwhm_phase = np.full((n_f, n_ph), np.nan)
    hkl_all = [p.hkl for _, p in table_all]
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
    x_li = np.full((n_f, n_ph), np.nan)
    if setup.vegard_lithiated and setup.vegard_delithiated:
        lith = setup.phase(setup.vegard_lithiated)
        deli = setup.phase(setup.vegard_delithiated)
        for i, ph in enumerate(setup.phases):
            if ph.system == lith.system:
                x_li[:, i] = vegard_x(lat[:, i], lith, deli, lith.system,
                                      setup.vegard_quantity)
    x_struct = np.nansum(np.nan_to_num(frac) * np.where(np.isfinite(x_li), x_li, 0.0), axis=1)
    x_struct = np.where(np.all(np.isfinite(frac), axis=1) &
                        np.all(np.isfinite(x_li) | (frac == 0), axis=1), x_struct, np.nan)

    # ---- assemble
    peak_names = _unique([p.name for _, p in table_all],
                         [win_names[w] for w, _ in table_all])
    tp, tw, tph = ("time", "peak"), ("time", "window"), ("time", "phase")
    runit = str(xrd[rad].attrs.get("units", unit))
    iunit = str(xrd["intensity"].attrs.get("units", "1"))
    # CF units of intensity × radial unit (xrd.nc intensities are dimensionless, units "1")
    area_units = runit if iunit in ("1", "") else f"{iunit} {runit}"
    area_2th_units = "degree" if iunit in ("1", "") else f"{iunit} degree"
    data: dict[str, xr.Variable] = {
        "center": xr.Variable(tp, center, cf_attrs(runit, f"fitted peak centre ({rad})")),
        "center_stderr": xr.Variable(tp, center_err, cf_attrs(runit, "standard error of "
                                                            "center")),
        "fwhm": xr.Variable(tp, fwhm, cf_attrs(runit, f"peak full width at half maximum "
                                             f"({rad})")),
        "fwhm_stderr": xr.Variable(tp, fwhm_err, cf_attrs(runit, "standard error of fwhm")),
        "area": xr.Variable(tp, area, cf_attrs(area_units, "integrated peak intensity "
                                             f"(intensity × {rad})")),
        "area_stderr": xr.Variable(tp, area_err, cf_attrs(area_units, "standard error of area")),
        "eta": xr.Variable(tp, eta, cf_attrs("1", "pseudo-Voigt Lorentzian fraction η")),
        "eta_stderr": xr.Variable(tp, eta_err, cf_attrs("1", "standard error of eta")),
        "d_spacing": xr.Variable(tp, d, cf_attrs("angstrom", "d-spacing of the fitted centre")),
        "d_spacing_stderr": xr.Variable(tp, d_err, cf_attrs("angstrom", "standard error of "
                                                          "d_spacing")),
        "area_2theta": xr.Variable(tp, area_2th, cf_attrs(area_2th_units, "integrated intensity "
                                                        "per degree 2θ (intensity × degree)")),
        "fwhm_2theta": xr.Variable(tp, fwhm_2th, cf_attrs("degree", "FWHM in 2θ")),
        "snr": xr.Variable(tp, snr, cf_attrs("1", "signal-to-noise ratio area / "
                                           "area_stderr")),
        "detected": xr.Variable(tp, detected, {"long_name": "peak above the SNR threshold "
                                               "in a successful window fit", "units": "1"}),
        "fit_status": xr.Variable(tw, status.astype(np.int8), {
            "long_name": "window fit status", "units": "1",
            "flag_values": np.array(list(STATUS_MEANINGS), np.int8),
            "flag_meanings": " ".join(v.replace(" ", "_").replace("(", "").replace(")", "")
                                      for v in STATUS_MEANINGS.values())}),
        "fit_reason": xr.Variable(tw, reason, {"long_name": "window fit status, in words",
                                               "units": "1"}),
        "chi2_reduced": xr.Variable(tw, chi2 / np.maximum(npts - nfree, 1), cf_attrs(
            "1", "reduced χ² of the window fit")),
        "phase_fraction": xr.Variable(tph, frac, cf_attrs("1", "molar phase fraction from "
                                                        "integrated intensities")),
        "phase_fraction_stderr": xr.Variable(tph, frac_err, cf_attrs(
            "1", "standard error of phase_fraction (counting statistics)")),
        "lattice_a": xr.Variable(tph, lat[..., 0], cf_attrs("angstrom", "lattice parameter a")),
        "lattice_b": xr.Variable(tph, lat[..., 1], cf_attrs("angstrom", "lattice parameter b")),
        "lattice_c": xr.Variable(tph, lat[..., 2], cf_attrs("angstrom", "lattice parameter c")),
        "lattice_a_stderr": xr.Variable(tph, lat_err[..., 0], cf_attrs("angstrom",
                                                                     "standard error of a")),
        "lattice_b_stderr": xr.Variable(tph, lat_err[..., 1], cf_attrs("angstrom",
                                                                     "standard error of b")),
        "lattice_c_stderr": xr.Variable(tph, lat_err[..., 2], cf_attrs("angstrom",
                                                                     "standard error of c")),
        "x_li": xr.Variable(tph, x_li, cf_attrs("1", "Li content of the phase by Vegard's law "
                                              f"on the {setup.vegard_quantity}")),
        "fwhm_phase": xr.Variable(tph, fwhm_phase, cf_attrs("degree", "mean FWHM (2θ) of the "
                                                          "phase's detected main peaks")),
        "x_li_structural": xr.Variable("time", x_struct, cf_attrs(
            "1", "Li content of the probed volume, Σ phase_fraction × x_li")),
        **inter_vars,
    }
    if setup.scherrer:
        tth = d_to_unit(d, "2th_deg", wl)
        size = scherrer_size_nm(fwhm_2th, tth, wl, setup.scherrer_k, setup.instrument_fwhm_deg)
        data["crystallite_size"] = xr.Variable(tp, size, cf_attrs(
            "nm", f"Scherrer crystallite size K λ/(β cos θ), K = {setup.scherrer_k:g}, "
            f"instrumental FWHM {setup.instrument_fwhm_deg:g}° removed in quadrature"))
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            sz = np.stack([np.nanmean(np.where(detected & (peak_phase == p)[None], size,
                                               np.nan), axis=1) for p in phase_names], -1)
        data["crystallite_size_phase"] = xr.Variable(tph, sz, cf_attrs(
            "nm", "mean Scherrer size of the phase's detected peaks"))
    coords: dict[str, xr.Variable] = {
        "peak": xr.Variable("peak", np.array(peak_names, dtype=str),
                            {"long_name": "reflection (phase_hkl)", "units": "1"}),
        "peak_phase": xr.Variable("peak", peak_phase.astype(str),
                                  {"long_name": "phase of the reflection", "units": "1"}),
        "peak_hkl": xr.Variable("peak", np.array([" ".join(map(str, h)) if h else ""
                                                  for h in hkl_all], dtype=str),
                                {"long_name": "Miller indices h k l", "units": "1"}),
        "peak_window": xr.Variable("peak", np.array([win_names[w] for w in peak_window],
                                                    dtype=str),
                                   {"long_name": "fit window of the reflection", "units": "1"}),
        "peak_is_main": xr.Variable("peak", main, {
            "long_name": "free centre and area (not a satellite tied to a main peak)",
            "units": "1"}),
        "peak_d_nominal": xr.Variable("peak", np.array([p.d_A for _, p in table_all]),
                                      cf_attrs("angstrom", "configured d-spacing")),
        "peak_intensity_ref": xr.Variable("peak", intensity_ref, cf_attrs(
            "1", "reference integrated intensity for a phase fraction of 1 (common scale)")),
        "window": xr.Variable("window", np.array(win_names, dtype=str),
                              {"long_name": "fit window", "units": "1"}),
        "phase": xr.Variable("phase", np.array(phase_names, dtype=str),
                             {"long_name": "crystalline phase", "units": "1"}),
    }
    for name, var in xrd.coords.items():
        if var.dims == ("time",):
            v = var.variable.copy()
            if name == "x_li":  # the name is taken by the per-phase Vegard x_li (time, phase)
                name = "x_li_faraday"
                v.attrs["long_name"] = ("Li content x from the charge passed (Faraday), "
                                        "exposure mean; 'x_li' in xrd.nc")
            if "long_name" not in v.attrs:
                v.attrs["long_name"] = name
            if "units" not in v.attrs and v.dtype.kind not in "MmUSOb":
                v.attrs["units"] = "1"
            coords[name] = v
    if "time" not in coords:
        coords["time"] = xr.Variable("time", np.arange(n_f, dtype=float), cf_attrs(
            "1", "frame number (no clock model in xrd.nc)"))
    ds = xr.Dataset(data, coords=coords)
    ds.attrs.update({
        "radial_unit": unit, "wavelength_A": wl, "fit_method": setup.method,
        "profile": setup.options.profile, "snr_threshold": setup.options.snr_threshold,
        "intermediate_phase": inter or "",
    })
    return ds
