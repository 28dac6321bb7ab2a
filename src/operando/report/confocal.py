"""Figure of the confocal product: the depth × time map of local state of charge beside the
voltage curve, with the front arrival times and the through-depth spread. Pure: Dataset in,
matplotlib Figure out."""

from __future__ import annotations

import numpy as np
import xarray as xr
from matplotlib.figure import Figure


def _edges(t: np.ndarray) -> np.ndarray:
    """Cell edges around increasing centres ``t`` (half-way between neighbours)."""
    if t.size == 1:
        return np.array([t[0] - 0.5, t[0] + 0.5])
    mid = 0.5 * (t[1:] + t[:-1])
    return np.concatenate([[t[0] - (mid[0] - t[0])], mid, [t[-1] + (t[-1] - mid[-1])]])


def confocal_figure(ds: xr.Dataset, *, echem: xr.Dataset | None = None,
                    title: str = "") -> Figure:
    """Three panels over time (h): the voltage (the potentiostat record when ``echem`` is
    given, else the exposure means of the points), the SOC map — one row per depth, each
    cell centred on that point's own time (no common time grid) — with the front arrival
    times, and the through-depth standard deviation and max − min of SOC per pass."""
    on_clock = "potentiostat" in str(ds["time"].attrs.get("long_name", ""))
    t = np.asarray(ds["time"].values, float) / 3600.0
    soc = np.asarray(ds["soc"].values, float)
    depth = np.asarray(ds["depth"].values, float)
    origin = str(ds["depth"].attrs.get("origin", "origin")).replace("_", " ")
    d_edges = _edges(depth)
    fig = Figure(figsize=(9.0, 8.0), layout="constrained")
    ax_v, ax_m, ax_s = fig.subplots(3, 1, sharex=True,
                                    gridspec_kw={"height_ratios": [1.0, 2.2, 1.0]})
    if echem is not None and "voltage_V" in echem:
        ax_v.plot(np.asarray(echem["time_s"].values, float) / 3600.0,
                  echem["voltage_V"].values, "k-", lw=0.8)
    elif "voltage_V" in ds:
        order = np.argsort(t.ravel())
        ax_v.plot(t.ravel()[order], np.asarray(ds["voltage_V"].values).ravel()[order], "k.",
                  ms=2)
    ax_v.set_ylabel("voltage (V)")
    mesh = None
    for j in range(depth.size):
        ok = np.isfinite(t[:, j]) & np.isfinite(soc[:, j])
        if ok.sum() < 1:
            continue
        tj, sj = t[ok, j], soc[ok, j]
        order = np.argsort(tj)
        x = _edges(tj[order])
        mesh = ax_m.pcolormesh(x, d_edges[j:j + 2], sj[order][None, :], cmap="viridis",
                               vmin=0.0, vmax=1.0, shading="flat")
    if "front_arrival_time" in ds:
        arr = np.asarray(ds["front_arrival_time"].values, float) / 3600.0
        kinds = np.asarray(ds["reaction_kind"].values).astype(str)
        for r in range(arr.shape[0]):
            ok = np.isfinite(arr[r])
            ax_m.plot(arr[r, ok], depth[ok], "wo-", ms=3, lw=0.8,
                      label="front arrival t½" if r == 0 else None)
            if ok.any():
                ax_m.annotate(kinds[r], (arr[r, ok][0], depth[ok][0]), color="w", fontsize=7,
                              xytext=(3, 3), textcoords="offset points")
        if arr.size and np.isfinite(arr).any():
            ax_m.legend(fontsize=7, frameon=False, loc="lower left", labelcolor="w")
    if mesh is not None:
        fig.colorbar(mesh, ax=ax_m, label="local state of charge", pad=0.01)
    ax_m.set_ylim(d_edges[-1], d_edges[0])
    ax_m.set_ylabel(f"depth from {origin} (µm)")
    if "soc_depth_std" in ds:
        tp = np.asarray(ds["pass_time"].values, float) / 3600.0
        ax_s.plot(tp, ds["soc_depth_std"].values, ".-", ms=3, label="std over depth")
        ax_s.plot(tp, ds["soc_depth_range"].values, ".-", ms=3, label="max − min over depth")
        ax_s.legend(fontsize=7, frameon=False)
    ax_s.set_ylabel("SOC spread")
    ax_s.set_xlabel("time (h, potentiostat clock)" if on_clock else
                    "time (h since the first point, beamline clock)")
    fig.suptitle(f"{title}: confocal XRD, local state of charge through depth" if title
                 else "confocal XRD, local state of charge through depth")
    return fig
