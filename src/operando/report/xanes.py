"""Figure of the XANES product: fraction vs the Faraday expectation over time, the
residual (with the fitted lag), and a few normalised spectra with the isosbestic points.
Pure: Dataset in, matplotlib Figure out."""

from __future__ import annotations

import numpy as np
import xarray as xr
from matplotlib.figure import Figure


def xanes_figure(ds: xr.Dataset, title: str = "") -> Figure:
    """Three panels: (a) XANES fraction ± 1σ of the Faraday component and the Faraday
    expectation (no lag, and at the fitted lag) vs time (without a fit: E0 vs time);
    (b) residual; (c) normalised spectra (up to 6, evenly spread) with the isosbestic
    energies marked."""
    fig = Figure(figsize=(10.0, 7.0), layout="constrained")
    axd = fig.subplot_mosaic([["f", "s"], ["r", "s"]], width_ratios=[3, 2],
                             height_ratios=[2, 1])
    ax_f, ax_s, ax_r = axd["f"], axd["s"], axd["r"]
    t = np.asarray(ds["time"].values, dtype=float) / 3600.0
    on_clock = "potentiostat" in str(ds["time"].attrs.get("long_name", ""))  # else: epoch
    indexed = not np.isfinite(t).any()  # no acquisition times: the scan index
    if indexed:
        t = np.arange(1, t.size + 1, dtype=float)
    elif not on_clock and t.size:
        t = t - np.nanmin(t)
    comp = str(ds.attrs.get("faraday_component", ""))
    have_fit = "fraction" in ds
    if have_fit:
        names = [str(c) for c in ds["component"].values]
        j = names.index(comp) if comp in names else len(names) - 1
        f = ds["fraction"].values[:, j]
        e = ds["fraction_stderr"].values[:, j]
        ax_f.errorbar(t, f, yerr=e, fmt="o", ms=3, lw=0.8, label=f"XANES {names[j]}")
    if "faraday_expected" in ds:
        ax_f.plot(t, ds["faraday_expected"].values, "k-", lw=1.0, label="Faraday (no lag)")
        lag = float(ds.attrs.get("faraday_lag_s", np.nan))
        err = float(ds.attrs.get("faraday_lag_stderr_s", np.nan))
        ax_f.plot(t, ds["faraday_expected_lagged"].values, "r--", lw=1.0,
                  label=f"Faraday, lag {lag:.1f} ± {err:.1f} s")
        inset = ax_r
        inset.axhline(0, color="0.6", lw=0.8)
        inset.plot(t, ds["fraction_residual"].values, "o", ms=2.5, label="no lag")
        inset.plot(t, (f - ds["faraday_expected_lagged"].values) if have_fit else t * np.nan,
                   "s", ms=2.0, label="at fitted lag")
        inset.set_ylabel("residual")
        inset.set_xlabel("time on the potentiostat clock (h)")
        inset.legend(fontsize=7)
        slope = float(ds.attrs.get("faraday_slope", np.nan))
        ax_f.set_title(f"slope {slope:.3f} ± {float(ds.attrs.get('faraday_slope_stderr', 0)):.3f}",
                       fontsize=9)
    else:
        ax_r.set_axis_off()
        ax_f.set_xlabel("scan (no acquisition times)" if indexed else
                        "time on the potentiostat clock (h)" if on_clock else
                        "time since the first scan (h, beamline clock)")
    if have_fit:
        ax_f.set_ylabel("fraction")
    elif "e0" in ds:  # no standards: the edge energy carries the story
        method = ds.attrs.get("xanes_e0_method", "")
        ax_f.plot(t, ds["e0"].values, "o", ms=3, label=f"E0 ({method})")
        ax_f.set_ylabel("edge energy E0 (eV)")
    if ax_f.get_legend_handles_labels()[0]:
        ax_f.legend(fontsize=8)
    mu = np.asarray(ds["mu_norm"].values, dtype=float)
    en = np.asarray(ds["energy"].values, dtype=float)
    # aligned scans are NaN where their shifted range ends: any mostly-finite scan will do
    good = np.flatnonzero(np.isfinite(mu).mean(axis=1) > 0.8) if mu.size else \
        np.array([], int)
    pick = good[np.linspace(0, good.size - 1, min(6, good.size)).astype(int)] if good.size \
        else []
    for i in pick:
        ax_s.plot(en, mu[i], lw=0.9, label=f"{t[i]:.2f} h")
    if "isosbestic_energy" in ds:
        for x in np.asarray(ds["isosbestic_energy"].values, dtype=float):
            ax_s.axvline(x, color="0.4", ls=":", lw=0.9)
    if "lcf_emin_eV" in ds.attrs:
        ax_s.set_xlim(float(ds.attrs["lcf_emin_eV"]) - 10, float(ds.attrs["lcf_emax_eV"]) + 10)
    aligned = str(ds.attrs.get("align_mode", "none")) != "none"
    ax_s.set_xlabel("energy (eV, aligned)" if aligned else "energy (eV)")
    ax_s.set_ylabel("normalised μ")
    ax_s.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    return fig
