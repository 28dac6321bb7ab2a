"""Local state of charge (SOC) and Li content from a measured quantity through a calibration.

SOC is dimensionless: 0 = discharged (lithiated, e.g. LiFePO4), 1 = charged (delithiated,
FePO4). The measured quantity ``v`` is anything that moves monotonically with SOC: a phase
fraction, a peak position (Å or °), a lattice parameter, an edge energy (eV), ...

Two calibrations (:class:`SocCalibration`):

* ``"linear"`` — two anchors, ``v_d`` at SOC 0 and ``v_c`` at SOC 1::

      SOC = (v − v_d) / (v_c − v_d),      σ_SOC = σ_v / |v_c − v_d|

  Values beyond [v_d, v_c] are **extrapolated linearly** (SOC < 0 or > 1 is returned as
  is) and flagged ``outside``.
* ``"table"`` — a tabulated quantity ``table_values`` with the SOC at each entry
  ``table_soc`` (e.g. a peak position measured on a slow, near-equilibrium cycle). SOC must
  be strictly monotonic in the quantity (increasing or decreasing; the table may come in any
  order and is sorted by the quantity). Interpolation is **monotone cubic** (scipy
  ``PchipInterpolator``): it passes through every entry, never overshoots between them
  (monotone table → monotone SOC(v)), and its first derivative is continuous, so the
  stderr propagated through the local slope, σ_SOC = |dSOC/dv| σ_v, has no jumps at the
  table entries (piecewise-linear interpolation would). Values beyond the table are
  **clipped** to the SOC of the nearest end, flagged ``outside``, and their stderr is NaN
  (the calibration says nothing about them).

NaN in → NaN out (``outside`` is False there).

What SOC is read from in a confocal run (:class:`SocOptions`, :func:`fitted_quantity`): the
fraction of a phase, the d-spacing of a peak or a lattice parameter of a phase, taken from
the peak fits of every point (the ``peaks.nc`` variables). Pure numpy/scipy/xarray; no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import xarray as xr
from scipy.interpolate import PchipInterpolator

__all__ = ["SocCalibration", "SocOptions", "fitted_quantity", "soc_from_quantity",
           "x_li_from_soc"]

SocQuantity = Literal["phase_fraction", "peak_position", "lattice_a", "lattice_b", "lattice_c"]


@dataclass(frozen=True, eq=False)
class SocCalibration:
    """How a measured quantity maps to SOC (see the module docstring).

    ``kind="linear"``: ``discharged`` (quantity at SOC 0) and ``charged`` (at SOC 1), in the
    quantity's unit. ``kind="table"``: ``table_values`` (quantity) and ``table_soc`` (SOC,
    dimensionless), equal length ≥ 2, SOC strictly monotonic in the quantity.
    Checked on construction (ValueError naming the field and the offending entries).
    """

    kind: Literal["linear", "table"]
    discharged: float | None = None
    charged: float | None = None
    table_values: np.ndarray | None = None
    table_soc: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.kind == "linear":
            if self.discharged is None or self.charged is None:
                raise ValueError("SocCalibration(kind='linear') needs both 'discharged' and "
                                 f"'charged'; got discharged={self.discharged!r}, "
                                 f"charged={self.charged!r}")
            d, c = float(self.discharged), float(self.charged)
            if not (np.isfinite(d) and np.isfinite(c)) or d == c:
                raise ValueError("SocCalibration(kind='linear'): 'discharged' and 'charged' "
                                 f"must be finite and different; got {d!r} and {c!r}")
        elif self.kind == "table":
            _sorted_table(self.table_values, self.table_soc)
        else:
            raise ValueError(f"SocCalibration.kind must be 'linear' or 'table', got "
                             f"{self.kind!r}")


def _sorted_table(values: np.ndarray | None, soc: np.ndarray | None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """The table sorted by quantity, after checking it (ValueError naming the entries)."""
    if values is None or soc is None:
        raise ValueError("SocCalibration(kind='table') needs both 'table_values' and "
                         "'table_soc'")
    v = np.asarray(values, dtype=float).ravel()
    s = np.asarray(soc, dtype=float).ravel()
    if v.size != s.size or v.size < 2:
        raise ValueError("SocCalibration: 'table_values' and 'table_soc' must have the same "
                         f"length >= 2; got {v.size} and {s.size}")
    bad = np.flatnonzero(~(np.isfinite(v) & np.isfinite(s)))
    if bad.size:
        raise ValueError(f"SocCalibration: non-finite table entries at index {bad.tolist()}")
    order = np.argsort(v, kind="stable")
    vs, ss = v[order], s[order]
    dup = np.flatnonzero(np.diff(vs) == 0)
    if dup.size:
        pairs = [(int(order[i]), int(order[i + 1])) for i in dup]
        raise ValueError("SocCalibration: table is not strictly monotonic — equal quantity "
                         f"values at entries (index pairs) {pairs}")
    ds = np.diff(ss)
    sign = np.sign(ds[np.argmax(np.abs(ds))]) if np.any(ds != 0) else 0.0
    wrong = np.flatnonzero(ds * sign <= 0) if sign != 0 else np.arange(ds.size)
    if wrong.size:
        pairs = [(int(order[i]), int(order[i + 1])) for i in wrong]
        direction = "increasing" if sign > 0 else "decreasing"
        raise ValueError(
            "SocCalibration: table SOC is not strictly monotonic in the quantity (mostly "
            f"{direction}); it breaks between entries (original index pairs, in order of "
            f"the quantity) {pairs}, e.g. value {v[pairs[0][0]]:g} -> SOC "
            f"{s[pairs[0][0]]:g} then value {v[pairs[0][1]]:g} -> SOC {s[pairs[0][1]]:g}")
    return vs, ss


def soc_from_quantity(
    values: np.ndarray, cal: SocCalibration, stderr: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SOC (dimensionless) of each measured ``values`` (any shape, e.g. (pass, depth)).

    Returns ``(soc, soc_stderr, outside)``, each of ``values``' shape:

    * ``soc`` — linear: SOC = (v − v_d)/(v_c − v_d) (extrapolated beyond the anchors);
      table: monotone cubic (PCHIP) interpolation of the table, clipped beyond its ends;
    * ``soc_stderr`` — σ_SOC = |dSOC/dv| · ``stderr`` (the local slope of the calibration;
      NaN everywhere when ``stderr`` is None, NaN outside a table);
    * ``outside`` — bool, the value lies beyond the calibrated range.

    NaN in ``values`` gives NaN out (``outside`` False).
    """
    v = np.asarray(values, dtype=float)
    err = None if stderr is None else np.broadcast_to(np.asarray(stderr, dtype=float), v.shape)
    finite = np.isfinite(v)
    if cal.kind == "linear":
        d, c = float(cal.discharged), float(cal.charged)  # type: ignore[arg-type]
        soc = (v - d) / (c - d)
        slope = np.full(v.shape, 1.0 / abs(c - d))
        lo, hi = min(d, c), max(d, c)
        outside = finite & ((v < lo) | (v > hi))
    else:
        tv, ts = _sorted_table(cal.table_values, cal.table_soc)
        interp = PchipInterpolator(tv, ts, extrapolate=False)
        vc = np.clip(v, tv[0], tv[-1])
        soc = np.where(finite, interp(np.where(finite, vc, tv[0])), np.nan)
        outside = finite & ((v < tv[0]) | (v > tv[-1]))
        slope = np.abs(interp.derivative()(np.where(finite, vc, tv[0])))
        slope = np.where(outside, np.nan, slope)
    soc_err = np.full(v.shape, np.nan) if err is None else slope * err
    soc_err = np.where(finite, soc_err, np.nan)
    return soc, soc_err, outside


def x_li_from_soc(soc: np.ndarray, x_discharged: float, x_charged: float) -> np.ndarray:
    """Li content x (per formula unit) from SOC: x = x_d + SOC · (x_c − x_d).

    E.g. LixFePO4: ``x_discharged=1``, ``x_charged=0``. NaN in → NaN out.
    """
    s = np.asarray(soc, dtype=float)
    return float(x_discharged) + s * (float(x_charged) - float(x_discharged))


@dataclass(frozen=True, eq=False)
class SocOptions:
    """How the local SOC of a confocal point is read from its peak fits.

    ``calibration``: quantity → SOC. ``quantity``: ``"phase_fraction"`` (the fraction of
    ``phase``, dimensionless), ``"peak_position"`` (the d-spacing of ``peak``, Å) or
    ``"lattice_a"`` / ``"lattice_b"`` / ``"lattice_c"`` (of ``phase``, Å). ``phase``,
    ``peak``: names as in the peak setup (no default: None where the quantity needs none).
    ``x_li_discharged``, ``x_li_charged``: Li content x at SOC 0 and 1 (e.g. 1 and 0 for
    LixFePO4). No field has a default: the run's config section gives each.
    """

    calibration: SocCalibration
    quantity: SocQuantity
    phase: str | None
    peak: str | None
    x_li_discharged: float
    x_li_charged: float


def fitted_quantity(fits: xr.Dataset, options: SocOptions
                    ) -> tuple[np.ndarray, np.ndarray, str, str]:
    """The quantity SOC is read from, per point of the peak fits ``fits`` (the ``peaks.nc``
    Dataset of the points): (values, standard errors, CF units, description)."""
    if options.quantity == "phase_fraction":
        v = fits["phase_fraction"].sel(phase=options.phase)
        e = fits["phase_fraction_stderr"].sel(phase=options.phase)
        return v.values, e.values, "1", f"phase fraction of {options.phase}"
    if options.quantity == "peak_position":
        v = fits["d_spacing"].sel(peak=options.peak)
        e = fits["d_spacing_stderr"].sel(peak=options.peak)
        return v.values, e.values, "angstrom", f"d-spacing of peak {options.peak}"
    axis = options.quantity  # lattice_a / lattice_b / lattice_c
    v = fits[axis].sel(phase=options.phase)
    e = fits[f"{axis}_stderr"].sel(phase=options.phase)
    return v.values, e.values, "angstrom", f"{axis.replace('_', ' ')} of {options.phase}"
