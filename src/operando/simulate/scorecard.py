"""Reduced products of a simulated run scored against the run's ground truth.

The demo prints this table so that one command shows not only that the pipeline runs but
that it recovers what the simulator put in: the clock, the phase fractions and lattice
parameters, the XANES fractions, energy offset and lag, the confocal state of charge, front
arrival, local rates and relaxation time, and the diffusion coefficients.
Tolerances are the acceptance limits of the issues that introduced each product.

Pure: the truth mapping (``truth.json``) and product Datasets in, rows out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr


@dataclass(frozen=True)
class Check:
    """One recovered quantity: truth, recovered value, error, tolerance, within it or not."""

    product: str
    quantity: str
    truth: str
    recovered: str
    error: float
    tolerance: float
    unit: str

    @property
    def ok(self) -> bool:
        return bool(np.isfinite(self.error) and abs(self.error) <= self.tolerance)


def _rms(a: np.ndarray) -> float:
    a = a[np.isfinite(a)]
    return float(np.sqrt(np.mean(a**2))) if a.size else float("nan")


def clock_checks(truth: Mapping[str, Any], clock_attrs: Mapping[str, Any]) -> list[Check]:
    """Offset (s) and drift (ppm) of the fitted clock (``clock_*`` attributes) vs truth."""
    t = truth["clock"]
    off, drift = float(clock_attrs["clock_offset_s"]), float(clock_attrs["clock_drift_ppm"])
    return [
        Check("sync", "clock offset", f"{t['offset_s']:.4f} s", f"{off:.4f} s",
              (off - t["offset_s"]) * 1e3, 10.0, "ms"),
        Check("sync", "clock drift", f"{t['drift_ppm']:.2f} ppm", f"{drift:.2f} ppm",
              drift - t["drift_ppm"], 2.0, "ppm"),
    ]


def stream_clock_checks(truth: Mapping[str, Any], products: Mapping[str, xr.Dataset]
                        ) -> list[Check]:
    """Offset and drift of every stream timed by its own controller (``truth["clocks"]``)
    against the clock its product carries; none for a run with one clock."""
    rows: list[Check] = []
    for name, t in truth.get("clocks", {}).items():
        ds = products.get(name)
        if t.get("controller") != name or name == "xrd" or ds is None or \
                ds.attrs.get("clock_stream") != name:
            continue
        own = {"clock": t}
        for row in clock_checks(own, ds.attrs):
            rows.append(Check(name, f"{name} {row.quantity}", row.truth, row.recovered,
                              row.error, row.tolerance, row.unit))
    return rows


def peaks_checks(truth: Mapping[str, Any], peaks: xr.Dataset) -> list[Check]:
    """Phase-fraction RMS error over frames and phases, and the RMS lattice-parameter error
    (largest one shown) of the phases where they make up more than a quarter of the sample."""
    t = truth["xrd"]
    rows: list[Check] = []
    errs = []
    for name, values in t["phase_fraction"].items():
        if name in peaks["phase"].values:
            got = peaks["phase_fraction"].sel(phase=name).values.astype(float)
            errs.append(got - np.asarray(values, float)[: got.size])
    if errs:
        e = np.concatenate(errs)
        rows.append(Check("peaks", "phase fraction RMS", "per frame",
                          f"{np.isfinite(e).sum()} values", _rms(e), 0.02, ""))
    lat_err: list[np.ndarray] = []
    for name, cell in t.get("lattice_A", {}).items():
        if name not in peaks["phase"].values or not isinstance(cell, Mapping):
            continue
        frac = np.asarray(t["phase_fraction"].get(name, []), float)
        for axis in ("a", "b", "c"):
            var = f"lattice_{axis}"
            if var not in peaks or axis not in cell:
                continue
            got = peaks[var].sel(phase=name).values.astype(float)
            ref = np.asarray(cell[axis], float)
            ref = np.broadcast_to(ref, got.shape) if ref.ndim == 0 else ref[: got.size]
            sel = (frac[: got.size] > 0.25) & np.isfinite(got) if frac.size else \
                np.isfinite(got)
            lat_err.append(got[sel] - ref[sel])
    if lat_err:
        e = np.concatenate(lat_err)
        worst = float(np.max(np.abs(e))) if e.size else float("nan")
        rows.append(Check("peaks", "lattice RMS (> 25 %)", "a, b, c", f"max {worst:.4f} Å",
                          _rms(e), 0.002, "Å"))
    if "intermediate_flag" in peaks:
        n = int(np.asarray(peaks["intermediate_flag"].values, bool).sum())
        present = bool(t.get("intermediate_present", False))
        rows.append(Check("peaks", "intermediate flagged",
                          "present" if present else "absent", f"{n} frames",
                          0.0 if (n > 0) == present else 1.0, 0.0, ""))
    return rows


def xanes_checks(truth: Mapping[str, Any], xanes: xr.Dataset) -> list[Check]:
    """LCF fraction RMS error, monochromator offset (eV) and the fraction-vs-charge lag (s)."""
    t = truth["xanes"]
    rows: list[Check] = []
    errs = [xanes["fraction"].sel(component=c).values.astype(float)
            - np.asarray(v, float)[: xanes.sizes["scan"]]
            for c, v in t["fraction"].items() if c in xanes["component"].values]
    if errs:
        rows.append(Check("xanes", "LCF fraction RMS", "per scan",
                          f"{xanes.sizes['scan']} scans", _rms(np.concatenate(errs)), 0.01, ""))
    a = xanes.attrs
    if "monochromator_offset_eV" in a and "energy_offset_eV" in t:
        got = float(a["monochromator_offset_eV"])
        rows.append(Check("xanes", "mono energy offset", f"{t['energy_offset_eV']:.2f} eV",
                          f"{got:.2f} eV", got - t["energy_offset_eV"], 0.2, "eV"))
    if "faraday_lag_s" in a and "lag_s" in t:
        got = float(a["faraday_lag_s"])
        interval = float(np.median(np.diff(np.asarray(t["time_s"], float))))
        rows.append(Check("xanes", "XANES lag",
                          f"{t['lag_s']:.0f} s",
                          f"{got:.1f} ± {float(a.get('faraday_lag_stderr_s', np.nan)):.1f} s",
                          got - t["lag_s"], interval, "s"))
    return rows


def confocal_checks(truth: Mapping[str, Any], conf: xr.Dataset) -> list[Check]:
    """Local SOC RMS error (the FePO4 fraction of every acquired point), the worst front
    arrival error in pass intervals, the face reacting first, the worst local-rate error
    (%) and the relaxation time (%) of the first rest after a reaction."""
    t = truth["confocal"]
    rows: list[Check] = []
    ref = np.asarray(t["phase_fraction"]["FePO4"], dtype=float)
    soc = conf["soc"].values.astype(float)
    if soc.shape != ref.shape:  # points lost or invented: a failing row, not a silent skip
        rows.append(Check("confocal", "local SOC RMS", f"{ref.shape} points",
                          f"{soc.shape} points", float("nan"), 0.02, ""))
    else:
        lost = int((np.isfinite(ref) & ~np.isfinite(soc)).sum())
        rows.append(Check("confocal", "local SOC RMS", f"{int(np.isfinite(ref).sum())} points",
                          f"{int(np.isfinite(soc).sum())} points",
                          _rms(soc - ref) if lost == 0 else float("nan"), 0.02, ""))
    r = t.get("reaction")
    if r is None or "front_arrival_time" not in conf:
        return rows
    half = np.asarray(r["half_time_s"], dtype=float)
    got = conf["front_arrival_time"].values.astype(float)
    pass_s = float(t["point_time_s"]) * int(t["n_depths"])
    if got.shape == half.shape and got.size:
        err = (got - half) / pass_s
        rows.append(Check("confocal", "front arrival, worst",
                          f"{np.isfinite(half).sum()} depth × reaction",
                          f"{np.isfinite(got).sum()} found", float(np.nanmax(np.abs(err))),
                          1.0, "passes"))
        faces = [str(f) for f in conf["first_face"].values]
        rows.append(Check("confocal", "first face", ", ".join(map(str, r["first_face"])),
                          ", ".join(faces), float(faces != [str(f) for f in r["first_face"]]),
                          0.0, ""))
        rate = conf["local_rate_per_h"].values.astype(float)
        ref_rate = np.asarray(r["local_rate_per_h"], dtype=float)
        rel = 100 * (rate / ref_rate - 1)
        rows.append(Check("confocal", "local rate r(z), worst",
                          f"{np.nanmin(ref_rate):.2f}–{np.nanmax(ref_rate):.2f} h⁻¹",
                          f"{np.isfinite(rate).sum()} found, median error "
                          f"{np.nanmedian(np.abs(rel)):.1f} %", float(np.nanmax(np.abs(rel))),
                          5.0, "%"))
    if "relaxation_time_shared" in conf and conf.sizes.get("rest", 0):
        tau = conf["relaxation_time_shared"].values.astype(float)
        ok = np.isfinite(tau)
        if ok.any():
            k = int(np.flatnonzero(ok)[0])
            got_tau = float(tau[k])
            err_tau = float(conf["relaxation_time_shared_stderr"].values[k])
            rows.append(Check("confocal", "relaxation τ", f"{t['relaxation_time_s']:.0f} s",
                              f"{got_tau:.0f} ± {err_tau:.0f} s",
                              100 * (got_tau / float(t["relaxation_time_s"]) - 1), 10.0, "%"))
    return rows


def kinetics_checks(truth: Mapping[str, Any], kin: xr.Dataset) -> list[Check]:
    """Cell and map diffusion coefficients (relative error, %) and the linear-range limit."""
    t = truth["kinetics"]
    rows: list[Check] = []
    if "cell_diffusion_cm2_s" in kin:
        got = float(kin["cell_diffusion_cm2_s"])
        rows.append(Check("kinetics", "D, cell CVs", f"{t['D_cm2_s']:.3e} cm²/s",
                          f"{got:.3e} cm²/s", 100 * (got / t["D_cm2_s"] - 1), 3.0, "%"))
        vmax = float(kin["cell_max_linear_scan_rate_V_s"])
        rows.append(Check("kinetics", "linear up to",
                          f"{t['max_linear_scan_rate_V_s'] * 1e3:g} mV/s",
                          f"{vmax * 1e3:g} mV/s",
                          0.0 if np.isclose(vmax, t["max_linear_scan_rate_V_s"]) else 1.0,
                          0.0, ""))
    if "diffusion_cm2_s" in kin and "map_D_cm2_s" in t:
        got = kin["diffusion_cm2_s"].values.astype(float)
        ref = np.asarray(t["map_D_cm2_s"], float)
        if ref.shape == got.shape:
            rel = 100 * (got / ref - 1)
            rows.append(Check("kinetics", "D map, worst",
                              f"{np.nanmin(ref):.2e}–{np.nanmax(ref):.2e} cm²/s",
                              f"{np.isfinite(got).sum()} pixels",
                              float(np.nanmax(np.abs(rel))), 3.0, "%"))
    return rows


def scorecard(truth: Mapping[str, Any], products: Mapping[str, xr.Dataset]) -> list[Check]:
    """Every check that the given products and the truth allow, in stream order."""
    rows: list[Check] = []
    clock_src = next((ds.attrs for ds in products.values() if "clock_offset_s" in ds.attrs),
                     None)
    if clock_src is not None and "clock" in truth:
        src = str(clock_src.get("clock_stream", ""))
        own = truth.get("clocks", {}).get(src, {})
        on_own = src != "xrd" and own.get("controller") == src  # e.g. a XANES-only run
        rows += clock_checks({"clock": own} if on_own else truth, clock_src)
    rows += stream_clock_checks(truth, products)
    if "peaks" in products and "xrd" in truth:
        rows += peaks_checks(truth, products["peaks"])
    if "confocal" in products and "confocal" in truth:
        rows += confocal_checks(truth, products["confocal"])
    if "xanes" in products and "xanes" in truth:
        rows += xanes_checks(truth, products["xanes"])
    if "kinetics" in products and "kinetics" in truth:
        rows += kinetics_checks(truth, products["kinetics"])
    return rows
