"""The confocal step, wiring only: scans → read (frames integrated in chunk work units, or
energy-dispersive spectra put on q) → peaks fitted in blocks of points → ``confocal.nc``
(:mod:`operando.confocal.product`) and its figure; one adapter: :func:`confocal_plan`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from operando.config import ConfocalSection, IntegrationSection, PeaksSection
from operando.confocal.product import (
    ConfocalOptions,
    ConfocalPatterns,
    confocal_dataset,
    energy_dispersive_patterns,
    point_grid,
    point_times,
)
from operando.confocal.soc import SocCalibration, SocOptions
from operando.echem.sync import ClockModel
from operando.io.text import read_numeric_table
from operando.io.xrd.confocal import open_confocal_frames, read_confocal_spectra
from operando.io.xrd.geometry import read_poni_text
from operando.report.confocal import confocal_figure
from operando.xrd.peaks_product import PeakSetup
from operando.xrd.units import RADIAL_AXES
from pipelines.peaks import fit_blocks, setup_from_config
from pipelines.runner import map_here
from pipelines.stream import (
    ProgressCallback,
    StreamProduct,
    UnitMapper,
    exposure_count_time,
    monitor_normalization,
)
from pipelines.xrd import IntegratorSetup, describe_integrator, integrate_chunk, xrd_product_inputs

__all__ = ["ConfocalPlan", "build_confocal", "confocal_plan"]


@dataclass(frozen=True)
class ConfocalPlan:
    """A ``confocal`` section as plain arguments: the product's ``options``, the ``peaks``
    setup, the ``read`` keyword arguments of the mode's reader
    (:func:`~operando.io.xrd.confocal.open_confocal_frames` or
    :func:`~operando.io.xrd.confocal.read_confocal_spectra`) and, in angle mode, the
    ``integration`` section (for :meth:`pipelines.xrd.IntegratorSetup.from_section`; else
    None)."""

    options: ConfocalOptions
    peaks: PeakSetup
    read: dict[str, Any]
    integration: IntegrationSection | None


def _soc_calibration(sec: ConfocalSection) -> SocCalibration:
    """The :class:`SocCalibration` of ``confocal.soc`` (a table file is read here); a
    linear calibration's ends default to 0 and 1 (a phase fraction's)."""
    s = sec.soc
    if s.calibration == "linear":
        return SocCalibration(kind="linear", discharged=0.0 if s.discharged is None else
                              s.discharged, charged=1.0 if s.charged is None else s.charged)
    arr = (np.asarray(s.table, dtype=float) if s.table is not None else
           read_numeric_table(s.table_file, 2, what="confocal.soc.table_file"))
    return SocCalibration(kind="table", table_values=arr[:, 0], table_soc=arr[:, 1])


def confocal_plan(sec: ConfocalSection, peaks: PeaksSection | None = None) -> ConfocalPlan:
    """The one adapter of the ``confocal`` section (peak setup of ``confocal.peaks``, else
    of ``peaks``, the run's top-level section; default None). Reads the SOC table file, so
    a bad one fails before any frame is read."""
    peaks_sec = sec.peaks or peaks
    if peaks_sec is None:
        raise ValueError("confocal.peaks: expected a peaks section (confocal.peaks or the "
                         "top-level peaks), found none")
    s = sec.soc
    soc = SocOptions(calibration=_soc_calibration(sec), quantity=s.quantity, phase=s.phase,
                     peak=s.peak, x_li_discharged=s.x_li_discharged,
                     x_li_charged=s.x_li_charged)
    if sec.mode == "energy" and sec.nominal_wavelength_A is None and (
            s.quantity == "phase_fraction" or peaks_sec.joint_windows
            or peaks_sec.intermediate is not None):
        raise ValueError("confocal.nominal_wavelength_A: energy mode with phase fractions, "
                         "joint_windows or an intermediate phase expects the wavelength of "
                         "the reference intensities (their areas are in the angle-dispersive "
                         "2θ convention), found none")
    read: dict[str, Any] = dict(
        files=sec.files, scans=sec.scans, depth_path=sec.depth_path, depth_unit=sec.depth_unit,
        depth_zero=sec.depth_zero, depth_sign=sec.depth_sign, epoch_path=sec.epoch_path,
        count_time_path=sec.count_time_path, monitor_path=sec.monitor_path, swmr=sec.swmr,
        **(dict(detector_path=sec.detector_path) if sec.mode == "angle" else dict(
            spectrum_path=sec.spectrum_path, two_theta_path=sec.two_theta_path,
            energy_calibration_path=sec.energy_calibration_path,
            energy_calibration_keV=sec.energy_calibration_keV,
            two_theta_deg=sec.two_theta_deg)))
    opts = ConfocalOptions(
        soc=soc, mode=sec.mode, normalize_by_monitor=sec.normalize_by_monitor,
        depth_origin=sec.depth_origin, depth_motor=sec.depth_path,
        depth_motor_unit=sec.depth_unit, depth_zero=sec.depth_zero, depth_sign=sec.depth_sign,
        front_min_change=sec.front_min_change,
        relaxation_min_amplitude=sec.relaxation_min_amplitude,
        depths_um=None if sec.depths_um is None else tuple(sec.depths_um),
        depth_tolerance_um=sec.depth_tolerance_um, gauge_length_um=sec.gauge_length_um,
        thickness_um=sec.thickness_um, interpolate_step_s=sec.interpolate_step_s,
        nominal_wavelength_A=sec.nominal_wavelength_A)
    return ConfocalPlan(opts, setup_from_config(peaks_sec), read,
                        sec.integration if sec.mode == "angle" else None)


def _angle_patterns(plan: ConfocalPlan, map_units: UnitMapper,
                    progress: ProgressCallback | None) -> tuple[ConfocalPatterns, list[Path]]:
    """Frames → patterns (n_points, npt): integration chunks as work units."""
    source, points = open_confocal_frames(**plan.read)
    g = plan.integration
    if g is None:
        raise ValueError("confocal.integration: mode 'angle' expects one, found none")
    setup = IntegratorSetup.from_section(g, source, cake=False)
    # built once per worker: asking for it first fails early on a bad geometry or mask
    info = next(iter(map_units(describe_integrator, [(setup,)])))
    norm = None
    if plan.options.normalize_by_monitor:
        norm = np.ones(source.n_frames)  # frames that are not points are not used
        norm[points.frame_index] = monitor_normalization(
            points.monitor, stream="confocal", per="point", source=points.sources)
    n, npt = source.n_frames, len(info.radial)
    intensity = np.full((n, npt), np.nan, dtype=np.float32)
    sigma = np.full((n, npt), np.nan, dtype=np.float32)
    units = ((source, a, b, setup, None if norm is None else norm[a:b])
             for a, b in source.chunks(g.chunk_frames))
    done = 0
    for res in map_units(integrate_chunk, units):
        intensity[res.start:res.stop] = res.intensity
        sigma[res.start:res.stop] = res.sigma
        done += res.stop - res.start
        if progress is not None:
            progress("confocal", done, n)
    poni = read_poni_text(g.poni)
    attrs = {"mode": "angle-dispersive", "poni": poni.text, "poni_file": str(g.poni),
             "mask_file": str(g.mask or ""), "mask_checksum": info.mask_checksum,
             **{f"integration_{k}": v for k, v in setup.options.to_attrs().items()}}
    rows = points.frame_index
    return (ConfocalPatterns(intensity[rows], sigma[rows], np.asarray(info.radial, float),
                             info.radial_name, info.radial_units, poni.wavelength_A, points,
                             attrs), xrd_product_inputs(source, setup))


def _energy_patterns(plan: ConfocalPlan) -> tuple[ConfocalPatterns, list[Path]]:
    """MCA spectra → patterns on q = 4π E sin θ / hc (one q per channel)."""
    counts, calibration_keV, two_theta, points = read_confocal_spectra(**plan.read)
    norm = (monitor_normalization(points.monitor, stream="confocal", per="point",
                                  source=points.sources)
            if plan.options.normalize_by_monitor else None)
    q, intensity, sigma, attrs = energy_dispersive_patterns(
        counts[points.frame_index], calibration_keV, two_theta, normalization=norm,
        nominal_wavelength_A=plan.options.nominal_wavelength_A)
    q_axis = RADIAL_AXES["q_A^-1"]
    return (ConfocalPatterns(intensity, sigma, q, q_axis.dim, q_axis.cf_units,
                             attrs["nominal_wavelength_A"], points, attrs), list(points.files))


def build_confocal(section: ConfocalSection, *, peaks: PeaksSection | None = None,
                   run_name: str = "", echem: xr.Dataset | None = None,
                   clock: ClockModel | None = None, map_units: UnitMapper = map_here,
                   progress: ProgressCallback | None = None) -> StreamProduct:
    """``confocal.nc`` (+ ``confocal.png``) of a run's ``confocal`` section; ``peaks``: the
    run's top-level peaks section, used when that has none (default None); ``run_name``
    titles the figure (default ""). ``echem`` (``echem.nc``) and ``clock`` (beamline →
    potentiostat; both default None) put every point on the potentiostat clock, average
    the electrochemistry over its exposure and give the protocol's segments to the
    metrics; without a clock the times are s since the first point on the beamline clock
    and the metrics that need the protocol are skipped. ``map_units`` runs the work units
    (default: here, in turn); ``progress(stream, done, total)`` (default None: silent)."""
    plan = confocal_plan(section, peaks)
    opts, setup = plan.options, plan.peaks
    if opts.mode == "angle":
        patterns, inputs = _angle_patterns(plan, map_units, progress)
    else:
        patterns, inputs = _energy_patterns(plan)
    grid, notes = point_grid(patterns, opts)
    points = patterns.points
    exposure_s, note = exposure_count_time(points.count_time_s, stream="confocal", items="points",
                                           source=points.sources.get("count_time", "absent"))
    times = point_times(points.epoch_s, exposure_s, clock)
    notes.extend(n for n in (note, times.note) if n)
    fit_without, fit_with, _ = fit_blocks(
        patterns.intensity, patterns.sigma, patterns.radial, patterns.radial_unit,
        patterns.wavelength_A, setup, map_units=map_units, progress=progress,
        stream="confocal peaks")
    product = confocal_dataset(patterns, grid, times, fit_without, fit_with, setup, opts,
                               echem=echem, clock=clock)
    fig = confocal_figure(product.dataset, echem=echem if clock is not None else None,
                          title=run_name)
    return StreamProduct(name="confocal", dataset=product.dataset, attrs=product.attrs,
                         inputs=inputs, figures={"confocal.png": fig},
                         notes=[*notes, *product.notes])
