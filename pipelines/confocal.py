"""The confocal step: depth-resolved scans → ``confocal.nc`` (orchestration only, no science).

:func:`build_confocal` reads like the issue:

1. ingest every (pass, depth) point with its own exposure interval — angle-dispersive frames
   integrated in chunk-sized work units (:func:`pipelines.xrd.integrate_chunk`), or
   energy-dispersive spectra put on q = 4π E sin θ / hc (:mod:`operando.xrd.energy_dispersive`);
2. place the points on the nominal depth grid (:func:`operando.confocal.grid.depth_grid`):
   a missing depth or a pass cut short is a recorded cell status, never a crash;
3. fit the peaks of every point with the P4 fitting (:func:`pipelines.peaks.fit_chunk`, one
   work unit per block of points) and read the local SOC / Li content through the configured
   calibration (:mod:`operando.confocal.soc`);
4. average the electrochemistry over each point's own exposure, and derive the
   heterogeneity metrics (:mod:`operando.confocal.metrics`): front arrival per depth, local
   rate against the C-rate, through-depth spread, relaxation time per depth, first face;
5. the figure: depth × time SOC map beside the voltage curve.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from operando.cf import cf_attrs
from operando.config import ConfocalSection, RunConfig
from operando.confocal.grid import POINT_STATUS, DepthGrid, depth_grid
from operando.confocal.metrics import (
    Segment,
    heterogeneity_dataset,
    interpolate_to_grid,
    segments_from_labels,
)
from operando.confocal.soc import SocCalibration, soc_from_quantity, x_li_from_soc
from operando.echem.sync import ClockModel
from operando.io.text import read_numeric_table
from operando.io.xrd.confocal import (
    ConfocalPoints,
    open_confocal_frames,
    read_confocal_spectra,
)
from operando.report.confocal import confocal_figure
from operando.xrd.energy_dispersive import ed_patterns
from operando.xrd.peaks_product import peaks_dataset
from operando.xrd.product import RADIAL_LONG_NAMES, epoch_to_datetime64
from pipelines.peaks import fit_blocks, setup_from_config
from pipelines.stream import ProgressCallback, StreamProduct, UnitMapper, map_here
from pipelines.xrd import integrate_chunk, integrator_info, integrator_setup_for

__all__ = ["build_confocal", "soc_calibration"]

_UNIT_OF_RADIAL = {"q": "q_A^-1", "two_theta": "2th_deg", "d": "d_A"}


# --------------------------------------------------------------------------- ingest


def _angle_patterns(sec: ConfocalSection, map_units: UnitMapper,
                    progress: ProgressCallback | None
                    ) -> tuple[ConfocalPoints, np.ndarray, np.ndarray, np.ndarray, str, str,
                               float, dict[str, Any], list[Path]]:
    """Frames → patterns (n_points, npt): integration chunks as work units."""
    from operando.xrd.peaks import wavelength_from_poni

    source, points = open_confocal_frames(
        sec.files, scans=sec.scans, detector_path=sec.detector_path,
        depth_path=sec.depth_path, depth_unit=sec.depth_unit, depth_zero=sec.depth_zero,
        depth_sign=sec.depth_sign, epoch_path=sec.epoch_path,
        count_time_path=sec.count_time_path, monitor_path=sec.monitor_path)
    g = sec.integration
    assert g is not None
    setup = integrator_setup_for(g, source, cake=False)
    # built once per worker: asking for it first fails early on a bad geometry or mask
    info = next(iter(map_units(integrator_info, [(setup,)])))
    norm = None
    if sec.normalize_by_monitor:
        if not np.all(np.isfinite(points.monitor) & (points.monitor > 0)):
            raise ValueError("confocal.normalize_by_monitor: expected a positive monitor value "
                             f"per point, found none or non-positive ones ({points.sources})")
        norm = np.ones(source.n_frames)  # frames that are not points are not used
        norm[points.frame_index] = points.monitor
    n, npt = source.n_frames, len(info.radial)
    intensity = np.full((n, npt), np.nan, dtype=np.float32)
    sigma = np.full((n, npt), np.nan, dtype=np.float32)
    chunks = source.chunks(g.chunk_frames)
    units = ((source, a, b, setup, None if norm is None else norm[a:b]) for a, b in chunks)
    done = 0
    for res in map_units(integrate_chunk, units):
        intensity[res.start:res.stop] = res.intensity
        sigma[res.start:res.stop] = res.sigma
        done += res.stop - res.start
        if progress is not None:
            progress("confocal", done, n)
    rows = points.frame_index
    poni_text = Path(g.poni).read_text(encoding="utf-8")
    attrs = {"mode": "angle-dispersive", "poni": poni_text, "poni_file": str(g.poni),
             "mask_file": str(g.mask or ""), "mask_checksum": info.mask_checksum,
             **{f"integration_{k}": v for k, v in setup.options.to_attrs().items()}}
    inputs = [*source.inputs, *source.files, Path(g.poni), *([Path(g.mask)] if g.mask else [])]
    return (points, intensity[rows], sigma[rows], np.asarray(info.radial, float),
            info.radial_name, info.radial_units, wavelength_from_poni(poni_text), attrs, inputs)


def _energy_patterns(sec: ConfocalSection
                     ) -> tuple[ConfocalPoints, np.ndarray, np.ndarray, np.ndarray, str, str,
                                float, dict[str, Any], list[Path]]:
    """MCA spectra → patterns on q = 4π E sin θ / hc (one q per channel)."""
    counts, energy_keV, two_theta, points = read_confocal_spectra(
        sec.files, scans=sec.scans, spectrum_path=sec.spectrum_path,
        energy_calibration_path=sec.energy_calibration_path,
        energy_calibration_keV=sec.energy_calibration_keV,
        two_theta_path=sec.two_theta_path, two_theta_deg=sec.two_theta_deg,
        depth_path=sec.depth_path, depth_unit=sec.depth_unit, depth_zero=sec.depth_zero,
        depth_sign=sec.depth_sign, epoch_path=sec.epoch_path,
        count_time_path=sec.count_time_path, monitor_path=sec.monitor_path)
    norm = None
    if sec.normalize_by_monitor:
        if not np.all(np.isfinite(points.monitor) & (points.monitor > 0)):
            raise ValueError("confocal.normalize_by_monitor: expected a positive monitor value "
                             f"per point, found none or non-positive ones ({points.sources})")
        norm = points.monitor
    q, intensity, sigma = ed_patterns(counts[points.frame_index], energy_keV, two_theta,
                                      normalization=norm)
    if sec.nominal_wavelength_A is not None:
        wl = float(sec.nominal_wavelength_A)
    else:
        # no wavelength in an energy scan: d and q need none; 2θ-convention areas use this one
        wl = float("nan")
    attrs = {"mode": "energy-dispersive", "two_theta_deg": float(two_theta),
             "energy_min_keV": float(np.min(energy_keV)),
             "energy_max_keV": float(np.max(energy_keV)),
             "d_spacing_equation": "d = hc / (2 E sin θ), q = 2π/d, hc = 12.398419843 keV Å",
             "nominal_wavelength_A": wl}
    return (points, intensity, sigma, np.asarray(q, float), "q", "1/angstrom", wl, attrs,
            list(points.files))


# --------------------------------------------------------------------------- SOC


def soc_calibration(sec: ConfocalSection) -> SocCalibration:
    """The :class:`SocCalibration` of ``confocal.soc`` (a table file is read here)."""
    s = sec.soc
    if s.calibration == "linear":
        lo = 0.0 if s.discharged is None else s.discharged
        hi = 1.0 if s.charged is None else s.charged
        return SocCalibration(kind="linear", discharged=lo, charged=hi)
    if s.table is not None:
        arr = np.asarray(s.table, dtype=float)
    else:
        assert s.table_file is not None
        arr = read_numeric_table(s.table_file, 2, what="confocal.soc.table_file")
    return SocCalibration(kind="table", table_values=arr[:, 0], table_soc=arr[:, 1])


def _quantity(sec: ConfocalSection, fits: xr.Dataset) -> tuple[np.ndarray, np.ndarray, str,
                                                                  str]:
    """The per-point quantity SOC is read from, its stderr, units and description."""
    s = sec.soc
    if s.quantity == "phase_fraction":
        v = fits["phase_fraction"].sel(phase=s.phase)
        e = fits["phase_fraction_stderr"].sel(phase=s.phase)
        return v.values, e.values, "1", f"phase fraction of {s.phase}"
    if s.quantity == "peak_position":
        v = fits["d_spacing"].sel(peak=s.peak)
        e = fits["d_spacing_stderr"].sel(peak=s.peak)
        return v.values, e.values, "angstrom", f"d-spacing of peak {s.peak}"
    axis = s.quantity  # lattice_a / lattice_b / lattice_c
    v = fits[axis].sel(phase=s.phase)
    e = fits[f"{axis}_stderr"].sel(phase=s.phase)
    return v.values, e.values, "angstrom", f"{axis.replace('_', ' ')} of {s.phase}"


# --------------------------------------------------------------------------- assembly


def _to_grid(values: np.ndarray, grid: DepthGrid, fill: Any) -> np.ndarray:
    """Point-ordered values (n_points, ...) → (pass, depth, ...) with ``fill`` where no point."""
    idx = grid.index
    out = np.full((*idx.shape, *values.shape[1:]), fill, dtype=values.dtype)
    have = idx >= 0
    out[have] = values[idx[have]]
    return out


def _fill_for(var: xr.Variable) -> Any:
    """The value of a cell without a point, by dtype (NaN, NaT, False, -1, '')."""
    kind = var.dtype.kind
    if kind == "f":
        return np.nan
    if kind == "M":
        return np.datetime64("NaT")
    if kind == "m":
        return np.timedelta64("NaT")
    if kind == "b":
        return False
    if kind in "iu":
        return -1
    if kind in "US":
        return ""
    return None


def _grid_dataset(point_ds: xr.Dataset, grid: DepthGrid, point_dim: str = "time"
                  ) -> xr.Dataset:
    """Every variable of a per-point Dataset on ``point_dim`` put on (pass, depth) (cells
    without a point filled by dtype); variables without ``point_dim`` (the radial axis,
    …) kept as they are, coordinates staying coordinates."""
    data_vars: dict[str, xr.Variable] = {}
    coords: dict[str, xr.Variable] = {}
    for name, var in point_ds.variables.items():
        if name == point_dim:
            continue
        if point_dim in var.dims:
            if var.dims[0] != point_dim:
                var = var.transpose(point_dim, ...)
            fill = _fill_for(var)
            values = np.asarray(var.values)
            if fill is None:
                values, fill = values.astype(str), ""
            new = xr.Variable(("pass", "depth", *var.dims[1:]),
                              _to_grid(values, grid, fill), var.attrs)
            new.encoding.update(var.encoding)
            var = new
        (coords if name in point_ds.coords else data_vars)[name] = var
    return xr.Dataset(data_vars, coords=coords)


def _reaction_rates(echem: xr.Dataset | None, segments: list[Segment], x_d: float,
                    x_c: float) -> list[float] | None:
    """Global rate (h⁻¹) of each charge/discharge segment from the charge passed:
    |Δx_li| / |x_charged − x_discharged| / duration × 3600."""
    if echem is None or "x_li" not in echem:
        return None
    t = np.asarray(echem["time_s"].values, float)
    x = np.asarray(echem["x_li"].values, float)
    out = []
    for s in segments:
        if s.kind not in ("charge", "discharge"):
            continue
        x0, x1 = np.interp([s.start_s, s.end_s], t, x)
        out.append(abs(x1 - x0) / abs(x_c - x_d) / (s.end_s - s.start_s) * 3600.0)
    return out


def build_confocal(cfg: RunConfig, *, echem: xr.Dataset | None = None,
                   clock: ClockModel | None = None, map_units: UnitMapper = map_here,
                   progress: ProgressCallback | None = None) -> StreamProduct:
    """``confocal.nc`` (+ ``confocal.png``) of the run's confocal section.

    ``echem`` (the ``echem.nc`` Dataset) and ``clock`` (beamline → potentiostat) put every
    point on the potentiostat clock, average the electrochemistry over its exposure and
    give the protocol's segments for the front and relaxation metrics; without a clock the
    times are seconds since the first point on the beamline clock and no metric that needs
    the protocol is computed. ``map_units`` runs the integration chunks and fit blocks.
    """
    sec = cfg.confocal
    if sec is None:
        raise ValueError("confocal: asked for, but the config has no 'confocal' section")
    peaks_sec = sec.peaks or cfg.peaks
    assert peaks_sec is not None  # the config validator guarantees one
    notes: list[str] = []
    cal = soc_calibration(sec)  # a bad table file fails before any frame is read
    if sec.mode == "angle":
        points, inten, sig, radial, rad, rad_units, wl, mode_attrs, inputs = _angle_patterns(
            sec, map_units, progress)
    else:
        if sec.nominal_wavelength_A is None and (
                sec.soc.quantity == "phase_fraction" or peaks_sec.joint_windows
                or peaks_sec.intermediate is not None):
            raise ValueError("confocal.nominal_wavelength_A: energy mode with phase "
                             "fractions, joint_windows or an intermediate phase expects the "
                             "wavelength of the reference intensities (their areas are in "
                             "the angle-dispersive 2θ convention), found none")
        points, inten, sig, radial, rad, rad_units, wl, mode_attrs, inputs = \
            _energy_patterns(sec)
    notes.extend(f"confocal: {n}" for n in points.notes)
    grid = depth_grid(points.pass_index, points.depth_um, n_passes=len(points.entries),
                      depths_um=sec.depths_um, tolerance_um=sec.depth_tolerance_um,
                      pass_labels=list(points.entries))
    notes.extend(f"confocal: {n}" for n in grid.notes)
    n_pass, n_depth = grid.index.shape
    n_pts = len(points.pass_index)

    # ---- times of every point
    unknown = ~np.isfinite(points.count_time_s)
    if unknown.any():
        notes.append(f"confocal: {int(unknown.sum())} points have no count time "
                     f"({points.sources.get('count_time', 'absent')}): their electrochemistry "
                     "is the value at the exposure start, not a mean over the exposure")
    count = np.where(unknown, 0.0, points.count_time_s)
    if clock is not None:
        t0 = clock.to_potentiostat(points.epoch_s)
        t1 = clock.to_potentiostat(points.epoch_s + count)
        time_note = "potentiostat clock (s since its acquisition start)"
    else:
        ref = float(np.nanmin(points.epoch_s))
        t0, t1 = points.epoch_s - ref, points.epoch_s + count - ref
        time_note = "beamline clock, s since the first confocal point (no sync)"
        notes.append("confocal: no clock model (no sync section): times are on the beamline "
                     "clock and the protocol-dependent metrics are skipped")

    # ---- peaks of every acquired point (blocks of points as work units)
    setup = setup_from_config(peaks_sec)
    unit = _UNIT_OF_RADIAL[rad]
    fit_a, fit_b, _ = fit_blocks(inten, sig, radial, unit, wl, setup, map_units=map_units,
                                 progress=progress, stream="confocal peaks")
    pseudo = xr.Dataset(
        {"intensity": (("time", rad), inten)},
        coords={rad: radial, "time": 0.5 * (t0 + t1)}, attrs={"wavelength_A": wl})
    fits = peaks_dataset(pseudo, fit_a, fit_b, setup)

    # ---- SOC and Li content per point
    qty, qty_err, qty_units, qty_name = _quantity(sec, fits)
    soc, soc_err, outside = soc_from_quantity(qty, cal, qty_err)
    x_li = x_li_from_soc(soc, sec.soc.x_li_discharged, sec.soc.x_li_charged)
    if np.any(outside):
        notes.append(f"confocal: {int(np.sum(outside))} points outside the SOC calibration "
                     f"range of the {qty_name}")

    # ---- electrochemistry over each point's exposure
    point_vars: dict[str, xr.Variable] = {
        "time_start": xr.Variable("time", t0, cf_attrs("s", f"exposure start, {time_note}")),
        "time_end": xr.Variable("time", t1, cf_attrs("s", f"exposure end, {time_note}")),
        "soc": xr.Variable("time", soc, cf_attrs("1", f"local state of charge from the "
                                                 f"{qty_name} (0 discharged, 1 charged)")),
        "soc_stderr": xr.Variable("time", soc_err, cf_attrs("1", "standard error of soc")),
        "soc_outside_calibration": xr.Variable("time", np.asarray(outside, bool), {
            "long_name": "quantity beyond the calibrated range", "units": "1"}),
        "soc_quantity": xr.Variable("time", qty, cf_attrs(qty_units, qty_name)),
        "x_li_local": xr.Variable("time", x_li, cf_attrs("1", "local Li content x from soc")),
        "depth_measured": xr.Variable("time", points.depth_um, cf_attrs(
            "um", "measured depth of the point from the origin")),
        "count_time": xr.Variable("time", points.count_time_s, cf_attrs("s", "exposure time")),
        "monitor": xr.Variable("time", points.monitor, cf_attrs(
            "counts", "incident beam monitor counts")),
        "intensity": xr.Variable(("time", rad), inten, cf_attrs(
            "1", "azimuthally integrated intensity" if sec.mode == "angle" else
            "energy-dispersive counts per channel" + (" per monitor count"
                                                      if sec.normalize_by_monitor else ""))),
        "intensity_sigma": xr.Variable(("time", rad), sig, cf_attrs(
            "1", "standard uncertainty of intensity")),
    }
    trig = xr.Variable("time", epoch_to_datetime64(points.epoch_s),
                       {"long_name": "exposure start (trigger), beamline clock, UTC"})
    trig.encoding.update({"units": "nanoseconds since 1970-01-01T00:00:00Z", "dtype": "int64"})
    point_vars["trigger_time_utc"] = trig
    if echem is not None and clock is not None:
        from operando.echem.attach import exposure_average

        avg = exposure_average(echem, t0, t1, dim="time")
        for name, var in avg.variables.items():
            if name in ("time_start", "time_end"):
                continue
            if name == "x_li":
                name = "x_li_faraday"
                var = var.copy()
                var.attrs["long_name"] = ("electrode-average Li content x from the charge "
                                          "passed (Faraday), exposure mean")
            point_vars[name] = var
    fit_vars = {k: v for k, v in fits.variables.items() if "time" in v.dims and k != "time"}
    point_ds = xr.Dataset({**point_vars, **fit_vars}, coords={rad: radial})
    ds = _grid_dataset(point_ds, grid)
    for name in ("peak", "window", "phase"):
        if name in fits.coords:
            ds = ds.assign_coords({k: fits.coords[k] for k in fits.coords
                                   if fits.coords[k].dims == (name,)})
    time_mid = 0.5 * (ds["time_start"].values + ds["time_end"].values)
    status = grid.status.astype(np.int8)
    ds = ds.assign_coords(
        time=(("pass", "depth"), time_mid, {**cf_attrs("s", f"exposure midpoint, {time_note}"),
                                            "axis": "T"}),
        depth=("depth", grid.depth_um, {
            **cf_attrs("um", f"depth from the {sec.depth_origin.replace('_', ' ')}"),
            "origin": sec.depth_origin,
            "direction": "increasing away from the origin into the electrode",
            "gauge_length_um": float(sec.gauge_length_um) if sec.gauge_length_um else
            float("nan"),
            "gauge_length_note": "extent of the gauge volume along depth (confocal."
            "gauge_length_um)" if sec.gauge_length_um else "not given in the config",
            "thickness_um": float(sec.thickness_um) if sec.thickness_um else float("nan"),
            "motor": sec.depth_path, "motor_unit": sec.depth_unit,
            "motor_zero": sec.depth_zero, "motor_sign": sec.depth_sign}),
        **{"pass": ("pass", np.arange(1, n_pass + 1), cf_attrs("1", "pass over depth "
                                                                "(1-based)"))},
        scan_entry=("pass", np.asarray(points.entries, dtype=str), cf_attrs(
            "1", "scan entry of the pass")),
        point_status=(("pass", "depth"), status, {
            "long_name": "acquisition status of the point", "units": "1",
            "flag_values": np.array(sorted(POINT_STATUS), dtype=np.int8),
            "flag_meanings": " ".join(POINT_STATUS[k] for k in sorted(POINT_STATUS))}),
        depth_measured_um=ds["depth_measured"].variable,
    ).drop_vars("depth_measured")
    ds[rad].attrs.update(cf_attrs(rad_units, RADIAL_LONG_NAMES.get(rad, rad)))
    assert rad in ds.coords

    # ---- heterogeneity
    segments: list[Segment] = []
    if echem is not None and clock is not None and "segment" in echem:
        segments = segments_from_labels(np.asarray(echem["time_s"].values, float),
                                        np.asarray(echem["segment"].values).astype(str))
    rates = _reaction_rates(echem if clock is not None else None, segments,
                            sec.soc.x_li_discharged, sec.soc.x_li_charged)
    het = heterogeneity_dataset(
        time_mid, ds["soc"].values, grid.depth_um, sec.depth_origin, segments,
        soc_stderr=ds["soc_stderr"].values, global_rate_per_h=rates,
        min_change=sec.front_min_change, min_amplitude=sec.relaxation_min_amplitude)
    ds = ds.merge(het.drop_vars([v for v in ("depth", "pass") if v in het.variables]))
    ds.attrs.update({f"heterogeneity_{k}": v for k, v in het.attrs.items()})
    if sec.interpolate_step_s is not None:
        lo, hi = np.nanmin(time_mid), np.nanmax(time_mid)
        tg = np.arange(lo, hi + 0.5 * sec.interpolate_step_s, sec.interpolate_step_s)
        ds = ds.assign_coords(time_grid=("time_grid", tg, cf_attrs(
            "s", f"common time grid, {time_note}")))
        ds["soc_interpolated"] = (("time_grid", "depth"),
                                  interpolate_to_grid(time_mid, ds["soc"].values, tg), {
            **cf_attrs("1", "local state of charge INTERPOLATED onto the common time grid"),
            "interpolated": "yes: linear in time between each depth's own acquisitions; "
                            "NaN outside a depth's own time span",
            "measured_variable": "soc (on pass, depth with its own time)"})
    n_missing = int((status != 0).sum())
    notes.append(f"confocal: {n_pass} passes × {n_depth} depths, {n_pts} points "
                 f"({sec.mode}-dispersive), {n_missing} cells without a point")
    fig = confocal_figure(ds, echem=echem if clock is not None else None,
                          title=cfg.run.name)
    attrs = {**{f"confocal_{k}": v for k, v in mode_attrs.items() if k != "poni"},
             "soc_quantity": sec.soc.quantity, "soc_calibration": sec.soc.calibration,
             "soc_description": qty_name, "radial_unit": unit,
             "acquisition_notes": [*points.notes, *grid.notes] or ["none"]}
    if "poni" in mode_attrs:
        attrs["poni"] = mode_attrs["poni"]
    if clock is not None:
        attrs.update(clock.to_attrs())
    return StreamProduct(name="confocal", dataset=ds, attrs=attrs, inputs=inputs,
                         figures={"confocal.png": fig}, notes=notes)
