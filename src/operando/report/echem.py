"""Figure of an electrochemistry dataset: E(t) and I(t) with segments shaded.

Pure: takes the normalised xarray Dataset (dimension ``echem_time``; ``time_s`` s,
``voltage_V`` V, ``current_A`` A, ``segment``) and returns a matplotlib Figure;
writing it is :func:`operando.io.figures.save_figure`.
"""

from __future__ import annotations

import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from operando.echem.summary import segments

SEGMENT_COLOURS = {"charge": "#fde0c5", "discharge": "#c6dbef", "rest": "#eeeeee"}


def echem_figure(ds: xr.Dataset, title: str = "") -> Figure:
    """Two panels sharing the time axis (h): E (V) and I (mA), segments shaded."""
    fig = Figure(figsize=(8.0, 5.0), layout="constrained")
    ax_v, ax_i = fig.subplots(2, 1, sharex=True)
    t_h = np.asarray(ds["time_s"].values, dtype=float) / 3600.0
    ax_v.plot(t_h, ds["voltage_V"].values, color="k", lw=1.0)
    ax_i.plot(t_h, np.asarray(ds["current_A"].values) * 1e3, color="C3", lw=1.0)
    seen: set[str] = set()
    for seg in segments(ds):
        colour = SEGMENT_COLOURS.get(seg.kind, "#ffffff")
        for ax in (ax_v, ax_i):
            ax.axvspan(seg.start_s / 3600.0, seg.end_s / 3600.0, color=colour, lw=0,
                       label=seg.kind if ax is ax_v and seg.kind not in seen else None)
        seen.add(seg.kind)
    ax_v.set_ylabel("E (V)")
    ax_i.set_ylabel("I (mA)")
    ax_i.set_xlabel("time on the potentiostat clock (h)")
    ax_v.legend(loc="best", fontsize=8, frameon=False)
    if title:
        ax_v.set_title(title)
    return fig
