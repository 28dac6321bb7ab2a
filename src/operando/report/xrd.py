"""Figures of the XRD product: intensity map over time beside the voltage curve, and the
trigger-clock residuals of the sync. Pure: Datasets/arrays in, matplotlib Figure out."""

from __future__ import annotations

import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from operando.echem.sync import ClockModel


def xrd_figure(xrd: xr.Dataset, title: str = "", max_frames: int = 300) -> Figure:
    """Heat map of log10 intensity (radial × time, frames on ``frame``) with the
    exposure-averaged voltage beside it when the product carries electrochemistry
    (``voltage_V`` coordinate). Time in h on the clock the ``time`` coordinate's ``clock``
    attribute names; frame numbers without one.

    At most ``max_frames`` rows are drawn (default 300, about the heat map's height in
    pixels at the report's resolution): every k-th frame of a longer run, read alone from
    a lazily opened product, so drawing never loads the run."""
    frame_dim, rad = xrd["intensity"].dims[0], xrd["intensity"].dims[-1]
    step = max(1, -(-int(xrd.sizes[frame_dim]) // max(1, int(max_frames))))
    xrd = xrd.isel({frame_dim: slice(None, None, step)})
    inten = np.asarray(xrd["intensity"].transpose(frame_dim, rad).values, dtype=float)
    on = str(xrd["time"].attrs.get("clock", "")) if "time" in xrd.coords else "none"
    timed = on in ("potentiostat", "beamline")
    has_v = "voltage_V" in xrd.coords and timed
    fig = Figure(figsize=(9.0, 5.0), layout="constrained")
    if has_v:
        ax, ax_v = fig.subplots(1, 2, sharey=True, width_ratios=[4, 1])
    else:
        ax, ax_v = fig.subplots(1, 1), None
    y = (np.asarray(xrd["time"].values, dtype=float) / 3600.0 if timed
         else np.asarray(xrd["frame_index"].values, dtype=float))
    x = np.asarray(xrd[rad].values, dtype=float)
    positive = inten[np.isfinite(inten) & (inten > 0)]
    floor = float(np.percentile(positive, 1)) if positive.size else 1.0
    img = np.log10(np.clip(np.nan_to_num(inten, nan=floor), floor, None))
    mesh = ax.pcolormesh(x, y, img, shading="nearest", cmap="viridis", rasterized=True)
    fig.colorbar(mesh, ax=ax, label="log10 intensity", location="bottom", shrink=0.6)
    ax.set_xlabel(f"{xrd[rad].attrs.get('long_name', rad)} ({xrd[rad].attrs.get('units', '')})")
    ax.set_ylabel((f"time on the {on} clock (h)" if timed else "frame")
                  + (f", one frame in {step}" if step > 1 else ""))
    if ax_v is not None:
        ax_v.plot(xrd["voltage_V"].values, y, color="k", lw=1.0)
        ax_v.set_xlabel("E (V), exposure mean")
    if title:
        ax.set_title(title)
    return fig


def sync_residuals(clock: ClockModel, sent_epoch_s: np.ndarray,
                   recorded_time_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(recorded time (s), residual (s)) of each recorded pulse against the nearest sent
    trigger mapped through ``clock`` (t_recorded − clock.to_potentiostat(sent))."""
    mapped = np.sort(clock.to_potentiostat(np.asarray(sent_epoch_s, dtype=float)))
    rec = np.asarray(recorded_time_s, dtype=float)
    if mapped.size == 0 or rec.size == 0:
        return rec, np.full(rec.shape, np.nan)
    j = np.clip(np.searchsorted(mapped, rec), 1, max(mapped.size - 1, 1))
    left = mapped[np.maximum(j - 1, 0)]
    right = mapped[np.minimum(j, mapped.size - 1)]
    nearest = np.where(np.abs(rec - left) <= np.abs(rec - right), left, right)
    return rec, rec - nearest


def sync_figure(clock: ClockModel, sent_epoch_s: np.ndarray, recorded_time_s: np.ndarray,
                title: str = "") -> Figure:
    """Residual (ms) of every recorded trigger pulse after the clock fit; spurious pulses
    (unmatched recorded) in red; the fitted offset and drift in the title."""
    t, res = sync_residuals(clock, sent_epoch_s, recorded_time_s)
    spurious = np.zeros(t.shape, dtype=bool)
    spurious[[i for i in clock.unmatched_recorded if i < t.size]] = True
    fig = Figure(figsize=(8.0, 3.5), layout="constrained")
    ax = fig.subplots()
    ax.plot(t[~spurious] / 3600.0, res[~spurious] * 1e3, ".", ms=3, color="k",
            label="matched pulses")
    if spurious.any():
        ax.plot(t[spurious] / 3600.0, np.clip(res[spurious] * 1e3, -50, 50), "x", color="C3",
                label="spurious (unmatched) pulses, clipped to ±50 ms")
    ax.axhline(0.0, color="0.6", lw=0.8)
    ax.set_xlabel("potentiostat time (h)")
    ax.set_ylabel("residual (ms)")
    ax.legend(fontsize=8, frameon=False)
    ax.set_title((title + "\n" if title else "") +
                 f"offset {clock.offset_s:.4f} s, drift {clock.drift_ppm:.2f} ppm, "
                 f"RMS {clock.rms_residual_s * 1e3:.2f} ms, {clock.n_matched} matched, "
                 f"{len(clock.unmatched_sent)} missing, {len(clock.unmatched_recorded)} spurious",
                 fontsize=9)
    return fig
