"""Assemble the ``xrd.nc`` product Dataset from integrated patterns (pure, no I/O).

Dims ``(time, <radial>)`` with ``<radial>`` one of ``q`` (1/Å), ``two_theta`` (degree)
or ``d`` (Å); a 2D cake adds ``(time, chi, <radial>)``. Per-frame coordinates on
``time``: ``frame_index``, ``trigger_time_utc`` (exposure start on the beamline clock,
UTC), ``count_time`` (s), ``monitor`` (counts), ``n_invalid_pixels``; with a clock model
also ``time`` (s, potentiostat clock, exposure midpoint), ``time_start``/``time_end``
and the electrochemistry averaged over each exposure (:func:`operando.echem.attach.
exposure_average`).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from operando.xrd.units import axis_of_dim

__all__ = ["epoch_to_datetime64", "xrd_dataset"]

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

    ``intensity``/``sigma`` (n_frames, npt); ``radial`` bin centres in ``radial_units``;
    ``epoch_s`` exposure-start timestamps (UTC epoch s, beamline clock) or None;
    ``time_start_s``/``time_end_s`` the exposure on the potentiostat clock (s) when a
    clock model exists; ``echem_points`` the output of ``exposure_average`` on dim
    ``time`` (its variables become coordinates).
    """
    n = intensity.shape[0]
    rad = radial_name
    coords: dict[str, xr.Variable] = {
        rad: xr.Variable(rad, np.asarray(radial, dtype=float),
                         {"units": radial_units, "long_name": axis_of_dim(rad).long_name}),
        "frame_index": xr.Variable("time", np.asarray(frame_index, dtype=np.int64),
                                   {"units": "1", "long_name": "detector frame number (0-based, "
                                    "over all files of the run)"}),
        "count_time": xr.Variable("time", np.asarray(count_time_s, dtype=float),
                                  {"units": "s", "long_name": "exposure time"}),
        "monitor": xr.Variable("time", np.asarray(monitor, dtype=float),
                               {"units": "counts", "long_name": "incident beam monitor counts "
                                "per frame"}),
    }
    if n_invalid is not None:
        coords["n_invalid_pixels"] = xr.Variable(
            "time", np.asarray(n_invalid, dtype=np.int64),
            {"units": "1", "long_name": "pixels masked in this frame only (negative, NaN or at "
             "the detector's saturation sentinel)"})
    if epoch_s is not None:
        trig = xr.Variable("time", epoch_to_datetime64(epoch_s),
                           {"long_name": "exposure start (trigger), beamline clock, UTC"})
        trig.encoding.update({"units": "nanoseconds since 1970-01-01T00:00:00Z",
                              "dtype": "int64", "calendar": "proleptic_gregorian"})
        coords["trigger_time_utc"] = trig
    if time_start_s is not None and time_end_s is not None:
        t0 = np.asarray(time_start_s, dtype=float)
        t1 = np.asarray(time_end_s, dtype=float)
        coords["time"] = xr.Variable("time", 0.5 * (t0 + t1), {
            "units": "s", "long_name": "exposure midpoint, potentiostat clock (s since its "
            "acquisition start)", "axis": "T"})
        coords["time_start"] = xr.Variable("time", t0, {
            "units": "s", "long_name": "exposure start, potentiostat clock"})
        coords["time_end"] = xr.Variable("time", t1, {
            "units": "s", "long_name": "exposure end, potentiostat clock"})
    if echem_points is not None:
        for name, var in echem_points.variables.items():
            if name in ("time", "time_start", "time_end") or var.dims != ("time",):
                continue
            coords[name] = var.copy()
    unit_note = {"units": "1", "intensity_definition": INTENSITY_NOTE}
    data_vars = {
        "intensity": xr.Variable(("time", rad), np.asarray(intensity), {
            **unit_note, "long_name": "azimuthally integrated intensity"}),
        "intensity_sigma": xr.Variable(("time", rad), np.asarray(sigma), {
            **unit_note, "long_name": f"standard uncertainty of intensity ({error_model} error "
            "model)"}),
    }
    if cake is not None and chi_deg is not None:
        coords["chi"] = xr.Variable("chi", np.asarray(chi_deg, dtype=float), {
            "units": "degree", "long_name": "azimuthal angle χ"})
        data_vars["cake"] = xr.Variable(("time", "chi", rad), np.asarray(cake), {
            **unit_note, "long_name": "2D regrouped intensity (cake)"})
        if cake_sigma is not None:
            data_vars["cake_sigma"] = xr.Variable(("time", "chi", rad), np.asarray(cake_sigma), {
                **unit_note, "long_name": "standard uncertainty of the cake"})
    if coords["frame_index"].shape[0] != n:
        raise ValueError(f"xrd_dataset: {n} patterns but {coords['frame_index'].shape[0]} frame "
                         "indices")
    return xr.Dataset(data_vars, coords=coords)
