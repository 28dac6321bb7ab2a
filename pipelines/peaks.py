"""The peak-fitting step: ``xrd.nc`` → ``peaks.nc`` (orchestration only, no science).

:func:`build_peaks` cuts the frames into blocks of ``peaks.chunk_frames``; each block is one
independent work unit (:func:`fit_chunk`, module-level and picklable, so the flow's
``map_units`` can submit it to Dask) that fits both model variants; the fits are stacked
and analysed by :func:`operando.xrd.peaks_product.peaks_dataset`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from operando.config import PeaksSection
from operando.io.xrd.geometry import product_wavelength_A
from operando.report.peaks import peaks_figure
from operando.xrd.peakfit import PatternFit
from operando.xrd.peaks_product import (
    PeakSetup,
    concat_fits,
    fit_xrd_block,
    peaks_dataset,
    xrd_axis,
)
from operando.xrd.phases import PhaseDef
from operando.xrd.units import d_to_unit, unit_to_d
from operando.xrd.windows import FitOptions, PeakDef, WindowDef
from pipelines.runner import map_here
from pipelines.stream import ProgressCallback, StreamProduct, UnitMapper

__all__ = ["build_peaks", "fit_blocks", "fit_chunk", "setup_from_config"]


def setup_from_config(section: PeaksSection) -> PeakSetup:
    """The pure :class:`PeakSetup` of a validated ``peaks`` config section (positions in
    d; a window's q range becomes a d range)."""
    phases = tuple(PhaseDef(name=p.name, system=p.system, a_A=p.a_A, b_A=p.b_A, c_A=p.c_A,
                            x_li=p.x_li, scale=p.scale) for p in section.phases)
    by_name = {p.name: p for p in phases}
    windows = []
    for w in section.windows:
        to_d = (lambda v: float(v)) if w.unit == "d_A" else (
            lambda v: float(unit_to_d(v, "q_A^-1", 1.0)))
        names = [p.label for p in w.peaks]
        inten = dict(zip(names, (p.intensity for p in w.peaks), strict=True))
        peaks = []
        for name, p in zip(names, w.peaks, strict=True):
            d = to_d(p.position) if p.position is not None else \
                by_name[p.phase].d_spacing(p.hkl)
            ratio = p.ratio if p.ratio is not None else (
                p.intensity / inten[p.satellite_of] if p.satellite_of else 1.0)
            peaks.append(PeakDef(name=name, phase=p.phase, d_A=d, hkl=p.hkl,
                                 intensity=p.intensity, satellite_of=p.satellite_of,
                                 ratio=ratio))
        lo, hi = sorted(to_d(v) for v in w.range)
        windows.append(WindowDef(name=w.name, d_range_A=(lo, hi), peaks=tuple(peaks),
                                 background_order=w.background_order))
    options = FitOptions(
        profile=section.profile, eta=section.eta, shared_width=section.shared_width,
        fwhm_guess_q=section.fwhm_guess_q, fwhm_min_q=section.fwhm_min_q,
        fwhm_max_q=section.fwhm_max_q, max_shift=section.max_shift,
        max_shift_by_phase={p.name: p.max_shift for p in section.phases
                            if p.max_shift is not None},
        snr_threshold=section.snr_threshold, max_iter=section.max_iter,
        follow=section.follow_peaks, joint=section.joint_windows,
        instrument_box=section.instrument_box, box_guess_q=section.box_guess_q,
        box_max_q=section.box_max_q)
    sch = section.scherrer
    inter = section.intermediate
    return PeakSetup(
        windows=tuple(windows), phases=phases, options=options, method=section.method,
        chunk_frames=section.chunk_frames,
        vegard_lithiated=section.vegard.lithiated if section.vegard else None,
        vegard_delithiated=section.vegard.delithiated if section.vegard else None,
        vegard_quantity=section.vegard.quantity if section.vegard else "volume",
        intermediate_phase=inter.phase if inter else None,
        intermediate_criterion=inter.criterion if inter else "bic",
        intermediate_threshold=inter.threshold if inter else 10.0,
        intermediate_min_fraction=inter.min_fraction if inter else 0.02,
        scherrer=bool(sch and sch.enabled), scherrer_k=sch.k if sch else 0.9,
        instrument_fwhm_deg=sch.instrument_fwhm_deg if sch else 0.0)


def fit_chunk(intensity: np.ndarray, sigma: np.ndarray, radial: np.ndarray, unit: str,
              wavelength_A: float, setup: PeakSetup) -> tuple[PatternFit, PatternFit | None]:
    """One work unit: fit a block of frames (both model variants). Independent of every
    other block (each initialises from its own first frame)."""
    return fit_xrd_block(np.asarray(intensity, float), np.asarray(sigma, float),
                         np.asarray(radial, float), unit, wavelength_A, setup)


def fit_blocks(intensity: Any, sigma: Any, radial: np.ndarray, unit: str, wavelength_A: float,
               setup: PeakSetup, *, map_units: UnitMapper = map_here,
               progress: ProgressCallback | None = None, stream: str = "peaks",
               ) -> tuple[PatternFit, PatternFit | None, int]:
    """Fit every pattern (rows of ``intensity``/``sigma``, (n, radial): arrays or lazy
    DataArrays) in blocks of ``setup.chunk_frames``, each block one work unit
    (:func:`fit_chunk`) run by ``map_units``; a block is read when its unit is submitted.
    Returns the stacked fits of both model variants and the number of work units;
    ``progress(stream, done, total)`` in frames as blocks finish."""
    n = len(intensity)
    step = setup.chunk_frames
    bounds = [(i, min(i + step, n)) for i in range(0, n, step)]
    units = ((np.asarray(intensity[a:b]), np.asarray(sigma[a:b]), radial, unit,
              wavelength_A, setup) for a, b in bounds)
    results = []
    done, n_frames = 0, sum(b - a for a, b in bounds)
    for (a, b), res in zip(bounds, map_units(fit_chunk, units), strict=True):
        results.append(res)
        done += b - a
        if progress is not None:  # in frames (the bar shows frames/s)
            progress(stream, done, n_frames)
    fit_without = concat_fits([r[0] for r in results])
    fit_with = concat_fits([r[1] for r in results]) if results[0][1] is not None else None
    return fit_without, fit_with, len(bounds)


def build_peaks(section: PeaksSection, xrd: xr.Dataset, *, echem: xr.Dataset | None = None,
                run_name: str = "", map_units: UnitMapper = map_here,
                progress: ProgressCallback | None = None) -> StreamProduct:
    """``peaks.nc`` (+ ``peaks.png``) from the ``xrd.nc`` Dataset of the run and its
    ``peaks`` section.

    ``echem`` (``echem.nc``; default None) supplies the Faraday expectation for the figure
    when ``xrd.nc`` has no ``faraday_fraction`` coordinate. ``run_name`` (default "") titles
    the figure. ``map_units(fit_chunk, blocks)`` runs the blocks (default: here, one after
    another; the flow's keeps one per Dask worker in flight); ``progress("peaks", done,
    total)`` as blocks finish (default None: no reports).
    """
    setup = setup_from_config(section)
    rad, unit = xrd_axis(xrd)
    wl = product_wavelength_A(xrd.attrs)
    radial = np.asarray(xrd[rad].values, float)
    fd = next(str(d) for d in xrd["intensity"].dims if d != rad)  # "frame"
    n = xrd.sizes[fd]
    if n == 0:
        raise ValueError(f"peaks: xrd.nc has no frames (dimension {fd!r} is empty)")
    notes: list[str] = []
    lo_x, hi_x = float(np.nanmin(radial)), float(np.nanmax(radial))
    for w in setup.windows:
        x = sorted(float(v) for v in d_to_unit(np.array(w.d_range_A), unit, wl))
        if x[1] < lo_x or x[0] > hi_x:
            notes.append(f"peaks: window {w.name!r} ({x[0]:.4g}–{x[1]:.4g} {unit}) is outside "
                         f"the data ({lo_x:.4g}–{hi_x:.4g} {unit}); recorded as failed")
    # (frame, radial) whatever the order on disk; each block read on its own (lazy files)
    inten = xrd["intensity"].transpose(fd, rad)
    sig = xrd["intensity_sigma"].transpose(fd, rad)
    fit_without, fit_with, n_units = fit_blocks(
        inten, sig, radial, unit, wl, setup, map_units=map_units, progress=progress,
        stream="peaks")
    ds = peaks_dataset(xrd, fit_without, fit_with, setup, wl)
    faraday = None
    if "faraday_fraction" in xrd.coords:
        faraday = (np.asarray(xrd["time"].values, float),
                   np.asarray(xrd["faraday_fraction"].values, float))
    elif echem is not None and "faraday_fraction" in echem:
        faraday = (np.asarray(echem["time_s"].values if "time_s" in echem else
                              echem["echem_time"].values, float),
                   np.asarray(echem["faraday_fraction"].values, float))
    bad = int((ds["fit_status"].values != 0).sum())
    notes.append(f"peaks: {n} frames × {len(setup.windows)} windows fitted ({setup.method}, "
                 f"{n_units} work units); {bad} window fits not ok")
    if "intermediate_flag" in ds:
        notes.append(f"peaks: intermediate {setup.intermediate_phase} flagged in "
                     f"{int(ds['intermediate_flag'].values.sum())} of {n} frames")
    fig = peaks_figure(ds, faraday=faraday, delithiated=setup.vegard_delithiated,
                       title=run_name)
    attrs = {"peaks_method": setup.method, "peaks_chunk_frames": setup.chunk_frames,
             "peaks_n_work_units": n_units}
    return StreamProduct(name="peaks", dataset=ds, attrs=attrs, figures={"peaks.png": fig},
                         notes=notes)
