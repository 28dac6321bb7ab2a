"""Assemble the ``xrd.nc`` product Dataset from integrated patterns (pure, no I/O).

Dims ``(frame, <radial>)`` with ``<radial>`` one of ``q`` (1/Å), ``two_theta`` (degree)
or ``d`` (Å); a 2D cake adds ``(frame, chi, <radial>)``. Per-frame coordinates on
``frame``: ``frame_index``, ``trigger_time_utc`` (exposure start on the beamline clock,
UTC), ``count_time`` (s), ``monitor`` (counts), ``n_invalid_pixels``, and the time of
every X-ray group (:func:`xray_time_coords`): ``time`` (s, exposure midpoint: on the
potentiostat clock when a clock model exists), ``time_start``/``time_end`` and
``time_utc`` (datetime64[ns], UTC, exposure midpoint on the beamline clock, onto which the
clock model maps the potentiostat time); with a clock model also the electrochemistry
averaged over each exposure (:func:`operando.echem.attach.exposure_average`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from operando.xrd.units import axis_of_dim

__all__ = ["FRAME_DIM", "epoch_to_datetime64", "time_utc_variable", "xray_time_coords",
           "xrd_dataset"]

#: the frame dimension of ``xrd.nc`` and ``peaks.nc`` (XANES scans are on ``scan``)
FRAME_DIM = "frame"
_UTC_ENCODING = {"units": "nanoseconds since 1970-01-01T00:00:00Z", "dtype": "int64",
                 "calendar": "proleptic_gregorian"}

INTENSITY_NOTE = ("mean over the pixels of each bin of (counts − dark) / (flat · solid angle · "
                  "polarization · normalization), solid angle relative to the PONI pixel; "
                  "pyFAI convention")


def epoch_to_datetime64(epoch_s: np.ndarray) -> np.ndarray:
    """UTC epoch seconds (float) → datetime64[ns] (NaN → NaT), rounded to the nanosecond."""
    e = np.asarray(epoch_s, dtype=float)
    ns = np.full(e.shape, np.iinfo(np.int64).min, dtype=np.int64)  # NaT
    ok = np.isfinite(e)
    whole = np.floor(e[ok])
    ns[ok] = whole.astype(np.int64) * 1_000_000_000 + np.round((e[ok] - whole) * 1e9).astype(
        np.int64)
    return ns.view("datetime64[ns]")


def time_utc_variable(dims: str | tuple[str, ...], mid_epoch_s: np.ndarray,
                      what: str = "exposure", *, long_name: str | None = None) -> xr.Variable:
    """``time_utc``: the ``what`` midpoint ``mid_epoch_s`` (UTC epoch s, beamline clock;
    NaN → NaT) as datetime64[ns]. With a clock model this equals ``clock.to_beamline(time)``:
    the beamline clock is the UTC axis the fitted model maps the potentiostat time onto.
    ``long_name`` (default None: that description) replaces the CF long name."""
    attrs = {"long_name": long_name or f"{what} midpoint, UTC (beamline clock; the clock "
             "model maps the potentiostat time onto it)", "standard_name": "time"}
    var = xr.Variable(dims, epoch_to_datetime64(np.asarray(mid_epoch_s, dtype=float)), attrs)
    var.encoding.update(_UTC_ENCODING)
    return var


def xray_time_coords(dim: str | tuple[str, ...], *, epoch_start_s: np.ndarray | None,
                     epoch_end_s: np.ndarray | None, time_start_s: np.ndarray | None = None,
                     time_end_s: np.ndarray | None = None, what: str = "exposure"
                     ) -> dict[str, xr.Variable]:
    """The time coordinates every X-ray group carries, along ``dim``:

    - ``time`` (s): the ``what`` midpoint ``(time_start + time_end)/2``;
      ``time_start``/``time_end`` (s). On the potentiostat clock (s since its acquisition
      start) when ``time_start_s``/``time_end_s`` are given (a clock model exists), else on
      the beamline clock in s since the first start ``epoch_start_s`` (attribute
      ``clock`` says which: ``potentiostat`` / ``beamline``); without either, frame numbers
      (units ``1``, ``clock = none``);
    - ``time_utc`` (datetime64[ns], UTC): the midpoint ``(epoch_start + epoch_end)/2`` of
      the beamline epochs (s); NaT without timestamps.
    """
    out: dict[str, xr.Variable] = {}
    e0 = None if epoch_start_s is None else np.asarray(epoch_start_s, dtype=float)
    e1 = None if epoch_end_s is None else np.asarray(epoch_end_s, dtype=float)
    if time_start_s is not None and time_end_s is not None:
        t0, t1 = np.asarray(time_start_s, dtype=float), np.asarray(time_end_s, dtype=float)
        clock, on = "potentiostat", "potentiostat clock (s since its acquisition start)"
    elif e0 is not None and e1 is not None:
        ref = float(np.nanmin(e0)) if np.isfinite(e0).any() else 0.0
        t0, t1 = e0 - ref, e1 - ref
        clock, on = "beamline", "beamline clock, s since the first start (no clock model)"
    else:
        t0 = t1 = None
        clock, on = "none", ""
    if t0 is not None and t1 is not None:
        out["time"] = xr.Variable(dim, 0.5 * (t0 + t1), {
            "units": "s", "long_name": f"{what} midpoint, {on}", "axis": "T", "clock": clock})
        out["time_start"] = xr.Variable(dim, t0, {"units": "s",
                                                  "long_name": f"{what} start, {on}"})
        out["time_end"] = xr.Variable(dim, t1, {"units": "s", "long_name": f"{what} end, {on}"})
    if e0 is not None and e1 is not None:
        out["time_utc"] = time_utc_variable(dim, 0.5 * (e0 + e1), what)
    return out


def _rows(values: Any, dtype: Any = None) -> Any:
    """Per-frame data as an array: a lazy (chunked, e.g. Dask) array is kept as it is — the
    product's frame, filled chunk by chunk by a streaming writer — anything else through
    ``np.asarray``."""
    if getattr(values, "chunks", None) is not None and not isinstance(values, np.ndarray):
        return values if dtype is None else values.astype(dtype)
    return np.asarray(values, dtype=dtype)


def xrd_dataset(
    intensity: np.ndarray,
    sigma: np.ndarray,
    *,
    radial: np.ndarray,
    radial_name: str,
    radial_units: str,
    frame_index: np.ndarray,
    epoch_s: np.ndarray | None,
    count_time_s: np.ndarray,
    monitor: np.ndarray,
    n_invalid: np.ndarray | None = None,
    time_start_s: np.ndarray | None = None,
    time_end_s: np.ndarray | None = None,
    echem_points: xr.Dataset | None = None,
    cake: np.ndarray | None = None,
    cake_sigma: np.ndarray | None = None,
    chi_deg: np.ndarray | None = None,
    error_model: str = "poisson",
) -> xr.Dataset:
    """The ``xrd.nc`` Dataset (no file attributes; :func:`operando.io.products.write_product`
    adds provenance).

    ``intensity``/``sigma`` (n_frames, npt) — arrays, or lazy (Dask) placeholders that a
    streaming writer fills chunk by chunk (so too ``n_invalid``, ``cake``, ``cake_sigma``);
    ``radial`` bin centres in ``radial_units``;
    ``epoch_s`` exposure-start timestamps (UTC epoch s, beamline clock) or None;
    ``time_start_s``/``time_end_s`` the exposure on the potentiostat clock (s) when a
    clock model exists; ``echem_points`` the output of ``exposure_average`` on one
    dimension, one row per frame (its variables become coordinates on ``frame``).
    """
    n = intensity.shape[0]
    rad, fr = radial_name, FRAME_DIM
    coords: dict[str, xr.Variable] = {
        rad: xr.Variable(rad, np.asarray(radial, dtype=float),
                         {"units": radial_units, "long_name": axis_of_dim(rad).long_name}),
        "frame_index": xr.Variable(fr, np.asarray(frame_index, dtype=np.int64),
                                   {"units": "1", "long_name": "detector frame number (0-based, "
                                    "over all files of the run)"}),
        "count_time": xr.Variable(fr, np.asarray(count_time_s, dtype=float),
                                  {"units": "s", "long_name": "exposure time"}),
        "monitor": xr.Variable(fr, np.asarray(monitor, dtype=float),
                               {"units": "counts", "long_name": "incident beam monitor counts "
                                "per frame"}),
    }
    if n_invalid is not None:
        coords["n_invalid_pixels"] = xr.Variable(
            fr, _rows(n_invalid, np.int64),
            {"units": "1", "long_name": "pixels masked in this frame only (negative, NaN or at "
             "the detector's saturation sentinel)"})
    e0 = e1 = None
    if epoch_s is not None:
        trig = xr.Variable(fr, epoch_to_datetime64(epoch_s),
                           {"long_name": "exposure start (trigger), beamline clock, UTC"})
        trig.encoding.update(_UTC_ENCODING)
        coords["trigger_time_utc"] = trig
        e0 = np.asarray(epoch_s, dtype=float)
        # exposure end: start + count time; where the count time is unknown, the length of
        # the exposure the flow mapped onto the potentiostat clock (else a zero length)
        length = np.asarray(count_time_s, dtype=float)
        if time_start_s is not None and time_end_s is not None:
            mapped = np.asarray(time_end_s, dtype=float) - np.asarray(time_start_s, dtype=float)
            length = np.where(np.isfinite(length), length, mapped)
        e1 = e0 + np.nan_to_num(length)
    times = xray_time_coords(fr, epoch_start_s=e0, epoch_end_s=e1,
                             time_start_s=time_start_s, time_end_s=time_end_s)
    if "time" not in times:  # no timestamps, no clock: the frame number
        times["time"] = xr.Variable(fr, np.asarray(frame_index, dtype=float), {
            "units": "1", "long_name": "frame number (no timestamps, no clock model)",
            "clock": "none"})
    if "time_utc" not in times:
        times["time_utc"] = time_utc_variable(
            fr, np.full(n, np.nan), long_name="exposure midpoint, UTC: unknown (NaT), the "
            "frames have no timestamps")
    coords.update(times)
    if echem_points is not None:
        for name, var in echem_points.variables.items():
            if name in ("time", "time_start", "time_end") or var.ndim != 1:
                continue
            coords[name] = xr.Variable(fr, var.values, var.attrs, var.encoding)
    unit_note = {"units": "1", "intensity_definition": INTENSITY_NOTE}
    data_vars = {
        "intensity": xr.Variable((fr, rad), _rows(intensity), {
            **unit_note, "long_name": "azimuthally integrated intensity"}),
        "intensity_sigma": xr.Variable((fr, rad), _rows(sigma), {
            **unit_note, "long_name": f"standard uncertainty of intensity ({error_model} error "
            "model)"}),
    }
    if cake is not None and chi_deg is not None:
        coords["chi"] = xr.Variable("chi", np.asarray(chi_deg, dtype=float), {
            "units": "degree", "long_name": "azimuthal angle χ"})
        data_vars["cake"] = xr.Variable((fr, "chi", rad), _rows(cake), {
            **unit_note, "long_name": "2D regrouped intensity (cake)"})
        if cake_sigma is not None:
            data_vars["cake_sigma"] = xr.Variable((fr, "chi", rad), _rows(cake_sigma), {
                **unit_note, "long_name": "standard uncertainty of the cake"})
    if coords["frame_index"].shape[0] != n:
        raise ValueError(f"xrd_dataset: {n} patterns but {coords['frame_index'].shape[0]} frame "
                         "indices")
    return xr.Dataset(data_vars, coords=coords)
