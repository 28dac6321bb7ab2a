"""The ``xanes.nc`` Dataset: dims (scan, energy) plus (scan, component) and (isosbestic).

One row per scan on dimension ``scan`` (XRD frames are on ``frame``), with the time
coordinates every X-ray group carries (:func:`operando.xrd.product.xray_time_coords`):
``time`` (s, scan midpoint on the potentiostat clock), ``time_start``/``time_end``,
``time_utc`` (datetime64[ns], UTC, beamline clock), and ``scan_name`` (the scan entry).

Built from a :class:`operando.xanes.series.XanesSeries`, the scan windows and, when given,
the exposure-averaged electrochemistry and the XANES-vs-Faraday comparison. CF ``units``
and ``long_name`` on every variable and coordinate. Pure xarray; no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr

from operando.xanes.diagnostics import FaradayComparison, IsosbesticPoints
from operando.xanes.series import XanesSeries
from operando.xrd.product import time_utc_variable, xray_time_coords

__all__ = ["SCAN_DIM", "xanes_dataset"]

#: the scan dimension of ``xanes.nc``
SCAN_DIM = "scan"


def xanes_dataset(
    series: XanesSeries,
    *,
    time_start_s: np.ndarray,
    time_end_s: np.ndarray,
    scan_names: Sequence[str],
    echem_coords: xr.Dataset | None = None,
    isosbestic: IsosbesticPoints | None = None,
    faraday: FaradayComparison | None = None,
    faraday_component: str | None = None,
    time_is_potentiostat: bool = True,
    epoch_start_s: np.ndarray | None = None,
    epoch_end_s: np.ndarray | None = None,
) -> xr.Dataset:
    """Assemble the product. ``time_start_s``/``time_end_s`` (n,) s: potentiostat clock when
    ``time_is_potentiostat`` (else beamline UTC epochs, and ``time`` becomes s since the
    first scan start on the beamline clock); ``epoch_start_s``/``epoch_end_s`` (n,) the
    scans' start/end, UTC epoch s on the beamline clock (default None: taken from
    ``time_start_s``/``time_end_s`` when those are epochs; with potentiostat times and no
    epochs ``time_utc`` is NaT); ``echem_coords``: output of
    :func:`operando.echem.attach.exposure_average`, one row per scan."""
    n = series.mu_norm.shape[0]
    sd = SCAN_DIM
    t0 = np.asarray(time_start_s, dtype=float)
    t1 = np.asarray(time_end_s, dtype=float)
    if not time_is_potentiostat and epoch_start_s is None and epoch_end_s is None:
        epoch_start_s, epoch_end_s = t0, t1
    coords: dict[str, xr.Variable] = {
        **xray_time_coords(sd, epoch_start_s=epoch_start_s, epoch_end_s=epoch_end_s,
                           time_start_s=t0 if time_is_potentiostat else None,
                           time_end_s=t1 if time_is_potentiostat else None, what="scan"),
        "energy": xr.Variable("energy", series.energy, {
            "units": "eV", "long_name": "photon energy, aligned to the reference foil"
            if series.align is not None else "photon energy (as recorded, not aligned)"}),
        "scan_name": xr.Variable(sd, np.asarray(scan_names, dtype=str), {
            "units": "1", "long_name": "scan entry name"}),
    }
    if "time_utc" not in coords:  # potentiostat times given without the scans' epochs
        coords["time_utc"] = time_utc_variable(
            sd, np.full(n, np.nan), long_name="scan midpoint, UTC: unknown (NaT), no beamline "
            "epochs given")
    if echem_coords is not None:
        for name, var in echem_coords.variables.items():
            if name in ("time", "time_start", "time_end") or var.ndim != 1:
                continue
            attrs = dict(var.attrs)
            attrs.setdefault("units", "1")
            attrs.setdefault("long_name", str(name))
            coords[str(name)] = xr.Variable(sd, var.values, attrs)
    nr = series.norm
    given = bool(nr.options.get("prenormalized", False))
    data: dict[str, xr.Variable] = {
        "mu_norm": xr.Variable((sd, "energy"), series.mu_norm, {
            "units": "1", "long_name": "normalised absorption (edge step 1) on the aligned grid",
            "normalisation": "as given in the input files (already normalised); edge_step "
                             "measured with Larch pre_edge conventions" if given else
                             "Larch pre_edge conventions; one E0 and one set of ranges for "
                             "the series"}),
        "e0": xr.Variable(sd, series.e0, {
            "units": "eV", "long_name": f"edge energy E0 ({nr.e0_method}), aligned axis"}),
        "edge_step": xr.Variable(sd, nr.edge_step, {
            "units": "1", "long_name": "edge step of mu (post-edge minus pre-edge at E0)"}),
        "energy_shift": xr.Variable(sd, series.shift, {
            "units": "eV", "long_name": "energy shift added to the recorded energy "
                                        "(alignment on the reference foil)"}),
        "qc_flag": xr.Variable(sd, series.qc_flag.astype(np.int32), {
            "units": "1", "long_name": "QC bit mask (0 = good)",
            "flag_masks": np.array([1, 2, 4, 8, 16, 32], dtype=np.int32),
            "flag_meanings": "nonfinite all_zero constant saturated no_edge fit_failed"}),
        "qc_reason": xr.Variable(sd, np.asarray(series.qc_reason, dtype=str), {
            "units": "1", "long_name": "QC reasons ('' = good)"}),
        "pre_edge_range": xr.Variable((sd, "bound"), np.column_stack([nr.pre1, nr.pre2]), {
            "units": "eV", "long_name": "pre-edge fit range relative to E0"}),
        "norm_range": xr.Variable((sd, "bound"), np.column_stack([nr.norm1, nr.norm2]), {
            "units": "eV", "long_name": "post-edge fit range relative to E0"}),
    }
    attrs: dict[str, object] = {"xanes_e0_method": nr.e0_method}
    if series.align is not None:
        al = series.align
        data["foil_e0"] = xr.Variable(sd, al.foil_e0, {
            "units": "eV", "long_name": "reference-foil edge E0 on the recorded axis"})
        attrs.update({
            "align_mode": al.mode, "align_target_e0_eV": al.target_e0,
            "align_reference_foil_e0_eV": al.reference_foil_e0,
            "align_reference_index": al.reference_index,
            "monochromator_offset_eV": al.monochromator_offset,
            "monochromator_offset_convention": "recorded - true = -median(energy_shift)",
        })
    fit = series.lcf
    if fit is not None:
        coords["component"] = xr.Variable("component", np.asarray(fit.names, dtype=str), {
            "units": "1", "long_name": "LCF standard"})
        data["fraction"] = xr.Variable((sd, "component"), fit.weights, {
            "units": "1", "long_name": "linear-combination weight of each standard"})
        data["fraction_stderr"] = xr.Variable((sd, "component"), fit.stderr, {
            "units": "1", "long_name": "1-sigma standard error of the weight"})
        data["r_factor"] = xr.Variable(sd, fit.r_factor, {
            "units": "1", "long_name": "LCF R-factor sum(resid^2)/sum(data^2)"})
        data["redchi"] = xr.Variable(sd, fit.redchi, {
            "units": "1", "long_name": "LCF reduced chi-square (unit weights)"})
        data["standard_shift"] = xr.Variable("component", fit.shifts_eV, {
            "units": "eV", "long_name": "energy shift of each standard"})
        attrs.update({"lcf_emin_eV": fit.emin, "lcf_emax_eV": fit.emax,
                      "lcf_n_points": fit.n_points, "lcf_sum_to_one": int(fit.sum_to_one),
                      "lcf_nonneg": int(fit.nonneg)})
    if series.combinations is not None:
        cb = series.combinations
        labels = np.asarray(["+".join(s) for s in cb.subsets], dtype=str)
        coords["subset"] = xr.Variable("subset", labels, {
            "units": "1", "long_name": "subset of standards (combinatorial LCF)"})
        data["subset_redchi"] = xr.Variable(("subset", sd), cb.redchi, {
            "units": "1", "long_name": "reduced chi-square of each subset"})
        data["subset_rank"] = xr.Variable(("subset", sd), cb.rank.astype(np.int32), {
            "units": "1", "long_name": "rank of the subset for the scan (0 = best)"})
    if isosbestic is not None:
        data["isosbestic_energy"] = xr.Variable("isosbestic", isosbestic.energy, {
            "units": "eV", "long_name": "isosbestic point (zero of the first component)"})
        data["isosbestic_spread"] = xr.Variable("isosbestic", isosbestic.spread_eV, {
            "units": "eV", "long_name": "std over scans of the crossing energy"})
        data["isosbestic_mu"] = xr.Variable("isosbestic", isosbestic.mu, {
            "units": "1", "long_name": "mean normalised mu at the isosbestic point"})
        data["isosbestic_mu_spread"] = xr.Variable("isosbestic", isosbestic.mu_spread, {
            "units": "1", "long_name": "std over scans of normalised mu at the point"})
        attrs["isosbestic_explained_variance"] = isosbestic.explained
    if faraday is not None:
        data["faraday_expected"] = xr.Variable(sd, faraday.expected, {
            "units": "1", "long_name": f"Faraday-expected {faraday_component} fraction, mean "
                                       "over the scan window"})
        data["fraction_residual"] = xr.Variable(sd, faraday.residual, {
            "units": "1", "long_name": "XANES fraction minus Faraday expectation (no lag)"})
        data["faraday_expected_lagged"] = xr.Variable(sd, faraday.expected_lagged, {
            "units": "1", "long_name": "Faraday-expected fraction at the fitted lag"})
        attrs.update({
            "faraday_component": str(faraday_component),
            "faraday_slope": faraday.slope, "faraday_slope_stderr": faraday.slope_stderr,
            "faraday_intercept": faraday.intercept,
            "faraday_intercept_stderr": faraday.intercept_stderr,
            "faraday_lag_s": faraday.lag_s, "faraday_lag_stderr_s": faraday.lag_stderr_s,
            "faraday_rms_residual": faraday.rms_residual,
            "faraday_rms_residual_lagged": faraday.rms_residual_lagged,
            "faraday_n_scans": faraday.n_used,
            "faraday_lag_convention": "positive: the XANES fraction follows the charge later",
        })
    ds = xr.Dataset(data, coords=coords, attrs=attrs)
    ds["bound"] = xr.Variable("bound", np.array(["low", "high"]), {
        "units": "1", "long_name": "range bound"})
    if n and sd in ds.dims:
        ds = ds.set_coords(["bound"])
    return ds
