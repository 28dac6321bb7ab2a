"""Figure of the peak product: phase fractions against the Faraday expectation, lattice
parameters and peak positions over time. Pure: Dataset in, matplotlib Figure out."""

from __future__ import annotations

import numpy as np
import xarray as xr
from matplotlib.figure import Figure


def peaks_figure(peaks: xr.Dataset, *, faraday: tuple[np.ndarray, np.ndarray] | None = None,
                 delithiated: str | None = None, title: str = "") -> Figure:
    """Three panels over time (h): phase fractions (+ the Faraday-expected fraction of the
    ``delithiated`` phase, and intermediate flags), lattice parameter a per phase, and the
    d-spacing of each phase's main peaks where they are detected."""
    on_clock = peaks["time"].attrs.get("units") == "s"  # else frame numbers (no timestamps)
    clock = str(peaks["time"].attrs.get("clock", "potentiostat"))
    t = np.asarray(peaks["time"].values, float) / (3600.0 if on_clock else 1.0)
    fig = Figure(figsize=(8.0, 8.0), layout="constrained")
    ax_f, ax_a, ax_d = fig.subplots(3, 1, sharex=True)
    for i, ph in enumerate(peaks["phase"].values):
        ax_f.plot(t, peaks["phase_fraction"].values[:, i], ".", ms=3, label=str(ph))
    if faraday is not None and on_clock and clock == "potentiostat":
        tf, ff = faraday
        ax_f.plot(np.asarray(tf) / 3600.0, ff, "k-", lw=1.0,
                  label=f"Faraday expectation ({delithiated or 'delithiated'})")
    if "intermediate_flag" in peaks:
        flag = np.asarray(peaks["intermediate_flag"].values, bool)
        if flag.any():
            ax_f.plot(t[flag], np.full(flag.sum(), 1.03), "|", color="C3",
                      label="intermediate flagged")
    ax_f.set_ylabel("phase fraction")
    ax_f.set_ylim(-0.05, 1.08)
    ax_f.legend(fontsize=7, frameon=False, ncol=2)
    for i, ph in enumerate(peaks["phase"].values):
        ax_a.errorbar(t, peaks["lattice_a"].values[:, i],
                      yerr=peaks["lattice_a_stderr"].values[:, i], fmt=".", ms=3, lw=0.5,
                      label=str(ph))
    ax_a.set_ylabel("lattice a (Å)")
    ax_a.legend(fontsize=7, frameon=False)
    main = np.asarray(peaks["peak_is_main"].values, bool)
    d = np.asarray(peaks["d_spacing"].values, float)
    if "detected" in peaks:  # a peak below the SNR threshold has no meaningful position
        d = np.where(np.asarray(peaks["detected"].values, bool), d, np.nan)
    for j in np.flatnonzero(main):
        ax_d.plot(t, d[:, j], ".", ms=2,
                  label=str(peaks["peak"].values[j]))
    ax_d.set_ylabel("d (Å), main peaks")
    ax_d.set_xlabel(f"time on the {clock} clock (h)" if on_clock else "frame")
    ax_d.legend(fontsize=6, frameon=False, ncol=4)
    if title:
        ax_f.set_title(title)
    return fig
