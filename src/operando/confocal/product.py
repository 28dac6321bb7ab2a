"""The ``confocal.nc`` Dataset: dims (pass, depth, radial) plus the heterogeneity metrics.

Built from every acquired point's pattern and exposure (:class:`ConfocalPatterns`), the
(pass, depth) grid (:func:`operando.confocal.grid.depth_grid`), the peak fits of the points
and, when the points are on the potentiostat clock, the electrochemistry:

1. :func:`point_grid` — the points on the grid; :func:`point_times` — every point's
   exposure [start, end] on the potentiostat clock (or the beamline clock without a
   clock model);
2. :func:`confocal_dataset` — the fits (``peaks.nc`` variables per point), the local SOC
   and Li content (:mod:`operando.confocal.soc`), the electrochemistry averaged over each
   point's own exposure (:func:`operando.echem.attach.exposure_average`), all put on
   (pass, depth) with 2-D ``time(pass, depth)`` (s) and ``time_utc(pass, depth)``
   (datetime64[ns], UTC, beamline clock) coordinates, then the heterogeneity
   metrics (:func:`operando.confocal.metrics.heterogeneity_dataset`) against the
   protocol's segments and their electrode-average rates
   (:func:`operando.echem.faraday.reaction_rates_per_h`), and SOC interpolated onto a
   common time grid when asked.

CF ``units`` and ``long_name`` on every variable and coordinate. Pure numpy / xarray; no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
import xarray as xr

from operando.cf import cf_attrs
from operando.confocal.grid import POINT_STATUS, DepthGrid, depth_grid, points_on_grid
from operando.confocal.metrics import heterogeneity_dataset, interpolate_to_grid
from operando.confocal.soc import SocOptions, fitted_quantity, soc_from_quantity, x_li_from_soc
from operando.echem.attach import exposure_average
from operando.echem.faraday import reaction_rates_per_h
from operando.echem.segments import SegmentRun, segment_runs
from operando.echem.sync import ClockModel
from operando.xrd.energy_dispersive import channel_energy_keV, ed_patterns
from operando.xrd.peakfit import PatternFit
from operando.xrd.peaks_product import PeakSetup, peaks_dataset
from operando.xrd.product import epoch_to_datetime64, time_utc_variable
from operando.xrd.units import axis_of_dim

__all__ = [
    "AcquiredPoints",
    "ConfocalOptions",
    "ConfocalPatterns",
    "ConfocalProduct",
    "PointTimes",
    "confocal_dataset",
    "energy_dispersive_patterns",
    "point_grid",
    "point_times",
]


@dataclass(frozen=True)
class ConfocalOptions:
    """How a confocal run is reduced (the plain values of its ``confocal`` config section).

    ``soc``: how SOC is read from the fits. ``mode``: ``"angle"`` (detector frames) or
    ``"energy"`` (MCA spectra at a fixed 2θ). ``normalize_by_monitor``: intensities per
    monitor count. ``depth_origin``: the face at depth 0, ``"separator"`` or
    ``"current_collector"``. ``depth_motor`` (dataset path), ``depth_motor_unit`` (``"mm"``
    or ``"um"``), ``depth_zero`` (motor position of the origin, in ``depth_motor_unit``),
    ``depth_sign`` (+1, or −1 when the motor runs toward the origin): recorded on the depth
    coordinate. ``front_min_change``: smallest local SOC change (dimensionless) for a front
    arrival time; ``relaxation_min_amplitude``: smallest SOC deviation (dimensionless) for
    a relaxation fit. Default None (absent) for the rest: ``depths_um`` nominal depth grid
    (µm; clustered from the motor when None), ``depth_tolerance_um`` (µm; see
    :func:`~operando.confocal.grid.depth_grid`), ``gauge_length_um`` and ``thickness_um``
    (µm, recorded, NaN when None), ``interpolate_step_s`` (s; no interpolated SOC when None),
    ``nominal_wavelength_A`` (Å; energy mode: the wavelength of the reference intensities'
    2θ-convention areas).
    """

    soc: SocOptions
    mode: Literal["angle", "energy"]
    normalize_by_monitor: bool
    depth_origin: Literal["separator", "current_collector"]
    depth_motor: str
    depth_motor_unit: str
    depth_zero: float
    depth_sign: int
    front_min_change: float
    relaxation_min_amplitude: float
    depths_um: tuple[float, ...] | None = None
    depth_tolerance_um: float | None = None
    gauge_length_um: float | None = None
    thickness_um: float | None = None
    interpolate_step_s: float | None = None
    nominal_wavelength_A: float | None = None


class AcquiredPoints(Protocol):
    """The acquired points of a confocal run in acquisition order (n points), as the
    confocal readers return them (:class:`operando.io.xrd.confocal.ConfocalPoints`).

    ``entries``: one scan entry per pass; per point: ``pass_index`` (int, into
    ``entries``), ``depth_um`` (µm from the origin), ``epoch_s`` (exposure start, UTC epoch
    s, beamline clock), ``count_time_s`` (s, NaN where unknown), ``monitor`` (counts, NaN
    where unknown); ``notes``: one line per acquisition irregularity; ``sources``: where
    each quantity was read (keys ``count_time``, ``monitor``, …).
    """

    @property
    def entries(self) -> tuple[str, ...]: ...
    @property
    def pass_index(self) -> np.ndarray: ...
    @property
    def depth_um(self) -> np.ndarray: ...
    @property
    def epoch_s(self) -> np.ndarray: ...
    @property
    def count_time_s(self) -> np.ndarray: ...
    @property
    def monitor(self) -> np.ndarray: ...
    @property
    def notes(self) -> tuple[str, ...]: ...
    @property
    def sources(self) -> dict[str, str]: ...


@dataclass(frozen=True)
class ConfocalPatterns:
    """Every acquired point's pattern: ``intensity``, ``sigma`` (n, n_radial) on ``radial``
    (dimension ``radial_name``: ``q``, ``two_theta`` or ``d``; CF units ``radial_units``),
    ``wavelength_A`` λ (Å; NaN for energy scans without a nominal one), the ``points``
    (rows in the same order) and ``attrs``: how the patterns were made (mode, PONI,
    calibration, …)."""

    intensity: np.ndarray
    sigma: np.ndarray
    radial: np.ndarray
    radial_name: str
    radial_units: str
    wavelength_A: float
    points: AcquiredPoints
    attrs: dict[str, Any]

    @property
    def radial_unit(self) -> str:
        """The radial unit's pyFAI name (``q_A^-1``, ``2th_deg``, ``d_A``)."""
        return axis_of_dim(self.radial_name).unit


@dataclass(frozen=True)
class PointTimes:
    """Each point's exposure ``start_s`` and ``end_s`` (s) on the clock ``description``
    says: the potentiostat's when ``on_potentiostat``, else the beamline's (s since the
    first point); ``note`` (default None) says what the times lack; ``mid_epoch_s``
    (default None: unknown) the exposure midpoint, UTC epoch s on the beamline clock
    (``time_utc``)."""

    start_s: np.ndarray
    end_s: np.ndarray
    description: str
    on_potentiostat: bool
    note: str | None = None
    mid_epoch_s: np.ndarray | None = None

    @property
    def mid_s(self) -> np.ndarray:
        return 0.5 * (self.start_s + self.end_s)


@dataclass(frozen=True)
class ConfocalProduct:
    """``dataset`` (``confocal.nc``), ``attrs`` (its product-level attributes, written
    beside the provenance) and ``notes`` (one line per irregularity or summary)."""

    dataset: xr.Dataset
    attrs: dict[str, Any]
    notes: list[str]


def energy_dispersive_patterns(
    counts: np.ndarray, calibration_keV: np.ndarray, two_theta_deg: float, *,
    normalization: np.ndarray | None = None, nominal_wavelength_A: float | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """MCA spectra ``counts`` (n, n_channels) → patterns on q = 4π E sin θ / hc
    (:func:`operando.xrd.energy_dispersive.ed_patterns`), the channel energies from the
    calibration [a, b(, c)] (keV: E = a + b ch + c ch², ch 0-based) at the fixed
    ``two_theta_deg`` (degree); ``normalization`` (n,) a divisor per spectrum (default
    None: none). Returns ``(q, intensity, sigma, attrs)``: ``attrs`` say how (the
    ``confocal_*`` attributes): 2θ, the channel energy range (keV), the d-spacing equation
    and ``nominal_wavelength_A`` (Å; NaN when None, the default: an energy scan has no
    wavelength, d and q need none, only areas in the angle-dispersive 2θ convention do)."""
    energy_keV = channel_energy_keV(np.arange(counts.shape[1]), calibration_keV)
    q, intensity, sigma = ed_patterns(counts, energy_keV, two_theta_deg,
                                      normalization=normalization)
    attrs = {"mode": "energy-dispersive", "two_theta_deg": float(two_theta_deg),
             "energy_min_keV": float(np.min(energy_keV)),
             "energy_max_keV": float(np.max(energy_keV)),
             "d_spacing_equation": "d = hc / (2 E sin θ), q = 2π/d, hc = 12.398419843 keV Å",
             "nominal_wavelength_A": float("nan") if nominal_wavelength_A is None else
             float(nominal_wavelength_A)}
    return np.asarray(q, float), intensity, sigma, attrs


def point_grid(patterns: ConfocalPatterns, options: ConfocalOptions
               ) -> tuple[DepthGrid, list[str]]:
    """The (pass, depth) grid of the points (:func:`~operando.confocal.grid.depth_grid`
    with the options' nominal depths and tolerance), and the notes on the acquisition and
    on the grid."""
    p = patterns.points
    grid = depth_grid(p.pass_index, p.depth_um, n_passes=len(p.entries),
                      depths_um=options.depths_um, tolerance_um=options.depth_tolerance_um,
                      pass_labels=list(p.entries))
    return grid, [f"confocal: {n}" for n in (*p.notes, *grid.notes)]


def point_times(epoch_s: np.ndarray, exposure_s: np.ndarray, clock: ClockModel | None
                ) -> PointTimes:
    """Each point's exposure [start, start + ``exposure_s``] (s) from its start
    ``epoch_s`` (UTC epoch s, beamline clock): through ``clock`` (beamline → potentiostat)
    onto the potentiostat clock, or without a clock (default None) in s since the first
    point on the beamline clock, with a note saying so."""
    mid_epoch = np.asarray(epoch_s, dtype=float) + 0.5 * np.asarray(exposure_s, dtype=float)
    if clock is not None:
        return PointTimes(clock.to_potentiostat(epoch_s),
                          clock.to_potentiostat(epoch_s + exposure_s),
                          "potentiostat clock (s since its acquisition start)", True,
                          mid_epoch_s=mid_epoch)
    ref = float(np.nanmin(epoch_s))
    return PointTimes(epoch_s - ref, epoch_s + exposure_s - ref,
                      "beamline clock, s since the first confocal point (no sync)", False,
                      note="confocal: no clock model (no sync section): times are on the "
                           "beamline clock and the protocol-dependent metrics are skipped",
                      mid_epoch_s=mid_epoch)


def _point_variables(p: ConfocalPatterns, times: PointTimes, options: ConfocalOptions,
                     soc: tuple[np.ndarray, ...], qty_units: str, qty_name: str
                     ) -> dict[str, xr.Variable]:
    """The per-point variables (dimension ``time``, the points) besides the fits."""
    rad, note, pts = p.radial_name, times.description, p.points
    value, err, outside, qty, x_li = soc
    what = ("azimuthally integrated intensity" if options.mode == "angle" else
            "energy-dispersive counts per channel"
            + (" per monitor count" if options.normalize_by_monitor else ""))
    out = {
        "time_start": xr.Variable("time", times.start_s, cf_attrs("s", f"exposure start, {note}")),
        "time_end": xr.Variable("time", times.end_s, cf_attrs("s", f"exposure end, {note}")),
        "soc": xr.Variable("time", value, cf_attrs("1", f"local state of charge from the "
                                                   f"{qty_name} (0 discharged, 1 charged)")),
        "soc_stderr": xr.Variable("time", err, cf_attrs("1", "standard error of soc")),
        "soc_outside_calibration": xr.Variable("time", np.asarray(outside, bool), {
            "long_name": "quantity beyond the calibrated range", "units": "1"}),
        "soc_quantity": xr.Variable("time", qty, cf_attrs(qty_units, qty_name)),
        "x_li_local": xr.Variable("time", x_li, cf_attrs("1", "local Li content x from soc")),
        "depth_measured": xr.Variable("time", pts.depth_um, cf_attrs(
            "um", "measured depth of the point from the origin")),
        "count_time": xr.Variable("time", pts.count_time_s, cf_attrs("s", "exposure time")),
        "monitor": xr.Variable("time", pts.monitor, cf_attrs(
            "counts", "incident beam monitor counts")),
        "intensity": xr.Variable(("time", rad), p.intensity, cf_attrs("1", what)),
        "intensity_sigma": xr.Variable(("time", rad), p.sigma, cf_attrs(
            "1", "standard uncertainty of intensity")),
    }
    trig = xr.Variable("time", epoch_to_datetime64(pts.epoch_s),
                       {"long_name": "exposure start (trigger), beamline clock, UTC"})
    trig.encoding.update({"units": "nanoseconds since 1970-01-01T00:00:00Z", "dtype": "int64"})
    out["trigger_time_utc"] = trig
    mid = times.mid_epoch_s
    if mid is None:  # unknown exposure: the midpoint from the start and the exposure length
        mid = np.asarray(pts.epoch_s, float) + 0.5 * (times.end_s - times.start_s)
    out["time_utc"] = time_utc_variable("time", mid)
    return out


def _echem_variables(echem: xr.Dataset, times: PointTimes) -> dict[str, xr.Variable]:
    """The electrochemistry averaged over each point's exposure (``x_li`` as
    ``x_li_faraday``)."""
    out: dict[str, xr.Variable] = {}
    avg = exposure_average(echem, times.start_s, times.end_s, dim="time")
    for name, var in avg.variables.items():
        if name in ("time_start", "time_end"):
            continue
        if name == "x_li":
            name = "x_li_faraday"
            var = var.copy()
            var.attrs["long_name"] = ("electrode-average Li content x from the charge "
                                      "passed (Faraday), exposure mean")
        out[str(name)] = var
    return out


def _grid_coords(ds: xr.Dataset, p: ConfocalPatterns, grid: DepthGrid, times: PointTimes,
                 options: ConfocalOptions) -> xr.Dataset:
    """The (pass, depth) coordinates: time (s) and time_utc (UTC, beamline clock), depth
    (with its origin and motor), pass, scan entry, point status, measured depth; the radial
    axis's CF attributes."""
    o = options
    time_mid = 0.5 * (ds["time_start"].values + ds["time_end"].values)
    status = grid.status.astype(np.int8)
    ds = ds.assign_coords(
        time=(("pass", "depth"), time_mid, {**cf_attrs(
            "s", f"exposure midpoint, {times.description}"), "axis": "T",
            "clock": "potentiostat" if times.on_potentiostat else "beamline"}),
        depth=("depth", grid.depth_um, {
            **cf_attrs("um", f"depth from the {o.depth_origin.replace('_', ' ')}"),
            "origin": o.depth_origin,
            "direction": "increasing away from the origin into the electrode",
            "gauge_length_um": float(o.gauge_length_um) if o.gauge_length_um else
            float("nan"),
            "gauge_length_note": "extent of the gauge volume along depth (confocal."
            "gauge_length_um)" if o.gauge_length_um else "not given in the config",
            "thickness_um": float(o.thickness_um) if o.thickness_um else float("nan"),
            "motor": o.depth_motor, "motor_unit": o.depth_motor_unit,
            "motor_zero": o.depth_zero, "motor_sign": o.depth_sign}),
        **{"pass": ("pass", np.arange(1, grid.n_passes + 1), cf_attrs(
            "1", "pass over depth (1-based)"))},
        scan_entry=("pass", np.asarray(p.points.entries, dtype=str), cf_attrs(
            "1", "scan entry of the pass")),
        point_status=(("pass", "depth"), status, {
            "long_name": "acquisition status of the point", "units": "1",
            "flag_values": np.array(sorted(POINT_STATUS), dtype=np.int8),
            "flag_meanings": " ".join(POINT_STATUS[k] for k in sorted(POINT_STATUS))}),
        depth_measured_um=ds["depth_measured"].variable,
    ).drop_vars("depth_measured").set_coords("time_utc")
    ds[p.radial_name].attrs.update(cf_attrs(p.radial_units,
                                            axis_of_dim(p.radial_name).long_name))
    return ds


def _heterogeneity(ds: xr.Dataset, grid: DepthGrid, times: PointTimes,
                   options: ConfocalOptions, echem: xr.Dataset | None) -> xr.Dataset:
    """The heterogeneity metrics merged in (dataset attributes ``heterogeneity_*``), and
    SOC interpolated onto the common time grid when ``options.interpolate_step_s`` is set."""
    o = options
    time_mid = ds["time"].values
    segments: list[SegmentRun] = []
    rates = None
    if echem is not None and times.on_potentiostat:
        t_echem = np.asarray(echem["time_s"].values, float)
        if "segment" in echem:
            segments = segment_runs(np.asarray(echem["segment"].values), t_echem)
        if "x_li" in echem:
            rates = reaction_rates_per_h(t_echem, np.asarray(echem["x_li"].values, float),
                                         segments, x_discharged=o.soc.x_li_discharged,
                                         x_charged=o.soc.x_li_charged)
    het = heterogeneity_dataset(
        time_mid, ds["soc"].values, grid.depth_um, o.depth_origin, segments,
        soc_stderr=ds["soc_stderr"].values, global_rate_per_h=rates,
        min_change=o.front_min_change, min_amplitude=o.relaxation_min_amplitude)
    ds = ds.merge(het.drop_vars([v for v in ("depth", "pass") if v in het.variables]))
    ds.attrs.update({f"heterogeneity_{k}": v for k, v in het.attrs.items()})
    if o.interpolate_step_s is not None:
        lo, hi = np.nanmin(time_mid), np.nanmax(time_mid)
        tg = np.arange(lo, hi + 0.5 * o.interpolate_step_s, o.interpolate_step_s)
        ds = ds.assign_coords(time_grid=("time_grid", tg, cf_attrs(
            "s", f"common time grid, {times.description}")))
        ds["soc_interpolated"] = (("time_grid", "depth"),
                                  interpolate_to_grid(time_mid, ds["soc"].values, tg), {
            **cf_attrs("1", "local state of charge INTERPOLATED onto the common time grid"),
            "interpolated": "yes: linear in time between each depth's own acquisitions; "
                            "NaN outside a depth's own time span",
            "measured_variable": "soc (on pass, depth with its own time)"})
    return ds


def confocal_dataset(patterns: ConfocalPatterns, grid: DepthGrid, times: PointTimes,
                     fit_without: PatternFit, fit_with: PatternFit | None, setup: PeakSetup,
                     options: ConfocalOptions, *, echem: xr.Dataset | None = None,
                     clock: ClockModel | None = None) -> ConfocalProduct:
    """The ``confocal.nc`` product of the points (see the module docstring).

    ``grid`` from :func:`point_grid`, ``times`` from :func:`point_times`;
    ``fit_without``, ``fit_with``: the peak fits of every point (rows as in ``patterns``)
    without and with the intermediate phase (None when the setup has none), analysed by
    :func:`operando.xrd.peaks_product.peaks_dataset` with ``setup``. ``echem`` (the
    ``echem.nc`` Dataset; default None) is used only when the times are on the
    potentiostat clock: exposure means and the protocol's segments. ``clock`` (default
    None): its model is recorded in the attributes.
    """
    p, o = patterns, options
    rad = p.radial_name
    pseudo = xr.Dataset({"intensity": (("time", rad), p.intensity)},
                        coords={rad: p.radial, "time": times.mid_s},
                        attrs={"wavelength_A": p.wavelength_A})
    fits = peaks_dataset(pseudo, fit_without, fit_with, setup, p.wavelength_A)
    notes: list[str] = []
    qty, qty_err, qty_units, qty_name = fitted_quantity(fits, o.soc)
    soc, soc_err, outside = soc_from_quantity(qty, o.soc.calibration, qty_err)
    x_li = x_li_from_soc(soc, o.soc.x_li_discharged, o.soc.x_li_charged)
    if np.any(outside):
        notes.append(f"confocal: {int(np.sum(outside))} points outside the SOC calibration "
                     f"range of the {qty_name}")
    echem = echem if times.on_potentiostat else None
    point_vars = _point_variables(p, times, o, (soc, soc_err, outside, qty, x_li), qty_units,
                                  qty_name)
    if echem is not None:
        point_vars.update(_echem_variables(echem, times))
    fit_vars = {k: v for k, v in fits.variables.items() if "time" in v.dims and k != "time"}
    ds = points_on_grid(xr.Dataset({**point_vars, **fit_vars}, coords={rad: p.radial}), grid)
    for name in ("peak", "window", "phase"):
        if name in fits.coords:
            ds = ds.assign_coords({k: fits.coords[k] for k in fits.coords
                                   if fits.coords[k].dims == (name,)})
    ds = _grid_coords(ds, p, grid, times, o)
    ds = _heterogeneity(ds, grid, times, o, echem)
    n_missing = int((grid.status != 0).sum())
    notes.append(f"confocal: {grid.n_passes} passes × {grid.n_depths} depths, "
                 f"{len(p.points.pass_index)} points ({o.mode}-dispersive), {n_missing} cells "
                 "without a point")
    attrs = {**{f"confocal_{k}": v for k, v in p.attrs.items() if k != "poni"},
             "soc_quantity": o.soc.quantity, "soc_calibration": o.soc.calibration.kind,
             "soc_description": qty_name, "radial_unit": p.radial_unit,
             "acquisition_notes": [*p.points.notes, *grid.notes] or ["none"]}
    if "poni" in p.attrs:
        attrs["poni"] = p.attrs["poni"]
    if clock is not None:
        attrs.update(clock.to_attrs())
    return ConfocalProduct(dataset=ds, attrs=attrs, notes=notes)
