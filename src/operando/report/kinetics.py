"""Figures of the kinetics product: i_p against √v with the Randles–Sevcik fit, and the D
map. Pure: the kinetics Dataset in, matplotlib Figure out."""

from __future__ import annotations

import numpy as np
import xarray as xr
from matplotlib.figure import Figure


def ip_figure(ds: xr.Dataset, title: str = "") -> Figure:
    """|i_p| against √v: rates inside the linear range filled, excluded (non-linear or no
    peak) rates open; the fitted line over the linear range, extended dashed beyond it.
    Cell CVs when present (``scan_rate``), else the map's median over good pixels."""
    fig = Figure(figsize=(6.5, 4.5), layout="constrained")
    ax = fig.subplots()
    peak = str(ds.attrs.get("cell_fit_peak", ds.attrs.get("map_fit_peak", "anodic")))
    if "scan_rate" in ds.dims:
        x = np.sqrt(ds["scan_rate"].values)
        ip = np.abs(ds[f"{peak}_peak_current_A"].values)
        err = ds[f"{peak}_peak_current_stderr_A"].values
        inr = ds["in_linear_range"].values.astype(bool)
        slope = float(ds["cell_slope"])
        d, d_err = float(ds["cell_diffusion_cm2_s"]), float(ds["cell_diffusion_stderr_cm2_s"])
        vmax = float(ds["cell_max_linear_scan_rate_V_s"])
        label = "cell"
    else:
        good = ds["fit_ok"].values.astype(bool)
        x = np.sqrt(ds["map_scan_rate"].values)
        cur = np.abs(ds[f"map_{peak}_peak_current_A"].values)
        ip = np.nanmedian(np.where(good, cur, np.nan), axis=(1, 2)) if good.any() else \
            np.full(x.size, np.nan)
        err = np.full(x.size, np.nan)
        inr = np.ones(x.size, dtype=bool)
        slope = float(np.nanmedian(np.where(good, ds["slope"].values, np.nan))) if good.any() \
            else np.nan
        d = float(np.nanmedian(np.where(good, ds["diffusion_cm2_s"].values, np.nan))) \
            if good.any() else np.nan
        d_err, vmax, label = np.nan, float(x.max() ** 2), "map median"
    scale = 1e6
    ax.errorbar(x[inr], ip[inr] * scale, yerr=np.nan_to_num(err[inr]) * scale, fmt="o",
                color="C0", label=f"{label}: linear range")
    if (~inr).any():
        ax.plot(x[~inr], ip[~inr] * scale, "o", mfc="none", color="C3",
                label="excluded (non-linear)")
    if np.isfinite(slope):
        xl = np.linspace(0, np.sqrt(vmax), 50)
        ax.plot(xl, slope * xl * scale, "-", color="C0",
                label=f"fit: D = {d:.3g} ± {d_err:.2g} cm²/s" if np.isfinite(d_err)
                else f"fit: D = {d:.3g} cm²/s")
        xe = np.linspace(np.sqrt(vmax), x.max(), 30)
        ax.plot(xe, slope * xe * scale, "--", color="C0", lw=0.8)
    ax.set_xlabel("√v (√(V/s))")
    ax.set_ylabel(f"|{peak} i_p| (µA)")
    ax.legend(fontsize="small")
    ax.set_title(title or "Randles–Sevcik: i_p against √v")
    return fig


def d_map_figure(ds: xr.Dataset, title: str = "") -> Figure:
    """D map (log10 cm²/s) with the pixels that fail the fit-quality mask hatched grey."""
    fig = Figure(figsize=(6.0, 5.0), layout="constrained")
    ax = fig.subplots()
    d = ds["diffusion_cm2_s"].values
    ok = ds["fit_ok"].values.astype(bool)
    img = np.where(ok & (d > 0), np.log10(np.where(d > 0, d, 1.0)), np.nan)
    mesh = ax.pcolormesh(ds["x"].values, ds["y"].values, img, shading="nearest", cmap="viridis")
    bad = np.where(ok, np.nan, 1.0)
    if np.isfinite(bad).any():
        ax.pcolormesh(ds["x"].values, ds["y"].values, bad, shading="nearest", cmap="Greys",
                      vmin=0, vmax=2)
    fig.colorbar(mesh, ax=ax, label="log10 D (cm²/s)")
    ax.set_aspect("equal")
    ax.set_xlabel("x (µm)")
    ax.set_ylabel("y (µm)")
    ax.set_title(title or f"Randles–Sevcik D map ({int(ok.sum())}/{ok.size} pixels pass)")
    return fig
