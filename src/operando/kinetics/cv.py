"""Sweeps, scan rates and cycle selection of cyclic voltammograms (pure numpy / xarray).

A CV is a sequence of linear potential sweeps. A *sweep* is a maximal run of samples
whose (applied) potential moves in one direction: ``direction`` +1 (anodic, E rising),
−1 (cathodic, E falling), 0 (potential held). The scan rate of a sweep is the median
|ΔE/Δt| of its samples (V s⁻¹).

The normalised CV Dataset (made by :func:`label_sweeps` from what
:func:`operando.io.cv.read.read_cv` reads) has dimension
``sample`` (a map: ``y, x, sample``) and the variables

=====================  ======  ====================================================
``potential_V``        V       working-electrode potential (measured when recorded)
``potential_applied_V`` V      programmed potential (sweeps are cut on it)
``current_A``          A       current, anodic positive
``time_s``             s       time
``cycle``              1       cycle number as the file numbers it (1-based)
``sweep``              1       sweep index (0-based, in time order)
``direction``          1       +1 anodic, −1 cathodic, 0 held
=====================  ======  ====================================================

with the attribute ``scan_rate_V_s``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import xarray as xr

from operando.echem.segments import cumulative_trapezoid_C

__all__ = [
    "CycleSweeps",
    "ScanRateError",
    "cycle_sweeps",
    "label_sweeps",
    "scan_charges_C",
    "select_cycle",
    "sweep_labels",
    "sweep_scan_rates_V_s",
]

#: runs of one direction shorter than this many samples are noise, not a sweep
MIN_SWEEP_SAMPLES = 5


def sweep_labels(potential_V: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sweep index, direction) per sample of a 1-D potential record.

    The direction of sample k is that of the step k → k+1 (the last sample takes the
    direction of the step before it, so a vertex sample ends the sweep it closes). Steps
    smaller than 1e-3 of the median non-zero step count as held (0). Runs shorter than
    :data:`MIN_SWEEP_SAMPLES` are merged into the run before them (noise on a held or
    slowly read-back potential).
    """
    e = np.asarray(potential_V, dtype=float)
    n = e.size
    if n < 2:
        return np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int8)
    de = np.diff(e)
    nz = np.abs(de[de != 0])
    scale = float(np.median(nz)) if nz.size else 0.0
    d = np.where(np.abs(de) <= 1e-3 * scale, 0, np.sign(de)).astype(np.int8)
    d = np.append(d, d[-1])
    # run-length encode and absorb short runs into the run before them
    starts = np.flatnonzero(np.r_[True, d[1:] != d[:-1]])
    lengths = np.diff(np.r_[starts, n])
    values = d[starts].copy()
    for k in range(1, values.size):
        if lengths[k] < MIN_SWEEP_SAMPLES:
            values[k] = values[k - 1]
    if lengths[0] < MIN_SWEEP_SAMPLES and values.size > 1:
        values[0] = values[1]
    d = np.repeat(values, lengths)
    sweep = np.cumsum(np.r_[0, (d[1:] != d[:-1]).astype(np.int64)])
    return sweep.astype(np.int64), d


def sweep_scan_rates_V_s(potential_V: np.ndarray, time_s: np.ndarray,
                         sweep: np.ndarray, direction: np.ndarray) -> dict[int, float]:
    """Scan rate (V s⁻¹) of every moving sweep: median |ΔE/Δt| over its steps."""
    e = np.asarray(potential_V, dtype=float)
    t = np.asarray(time_s, dtype=float)
    out: dict[int, float] = {}
    for s in np.unique(sweep):
        idx = np.flatnonzero(sweep == s)
        if direction[idx[0]] == 0 or idx.size < 2:
            continue
        dt = np.diff(t[idx])
        ok = dt > 0
        if not ok.any():
            continue
        out[int(s)] = float(np.median(np.abs(np.diff(e[idx])[ok] / dt[ok])))
    return out


@dataclass(frozen=True)
class CycleSweeps:
    """Index arrays (into ``sample``) of the anodic and cathodic sweep of one cycle.

    Either is ``None`` when the cycle has no sweep in that direction.
    """

    cycle: int
    anodic: np.ndarray | None
    cathodic: np.ndarray | None


def _cycle_samples(cv: xr.Dataset, cycle: int | str
                   ) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    """``(chosen cycle, mask of its samples, sweep label, direction)`` per sample for
    ``cycle`` (file numbering, or ``"last"``); a cycle not in the record is a
    ``ValueError`` naming the source file and ``kinetics.cycle``."""
    cycles = np.asarray(cv["cycle"].values).reshape(-1)
    present = np.unique(cycles)
    src = cv.attrs.get("source_file", "<cv>")
    if cycle == "last":
        chosen = int(present.max())
    else:
        chosen = int(cycle)
        if chosen not in present:
            raise ValueError(f"{src}: kinetics.cycle: expected one of the recorded cycles "
                             f"{present.tolist()}, found {cycle!r}")
    sweep = np.asarray(cv["sweep"].values).reshape(-1)
    direction = np.asarray(cv["direction"].values).reshape(-1)
    in_cycle = cycles == chosen
    return chosen, in_cycle, sweep, direction


def select_cycle(cv: xr.Dataset, cycle: int | str = 1) -> CycleSweeps:
    """The anodic and cathodic sweep of ``cycle`` (file numbering, or ``"last"``).

    Within the cycle, the longest anodic and the longest cathodic sweep are taken (a
    partial first or last sweep, e.g. from the open-circuit potential to the first
    vertex, is shorter than a full one). Raises ``ValueError`` naming the source file and
    the key ``kinetics.cycle`` when the cycle is not in the record.
    """
    chosen, in_cycle, sweep, direction = _cycle_samples(cv, cycle)

    def longest(sign: int) -> np.ndarray | None:
        best: np.ndarray | None = None
        for s in np.unique(sweep[in_cycle & (direction == sign)]):
            idx = np.flatnonzero((sweep == s) & in_cycle)
            if best is None or idx.size > best.size:
                best = idx
        return best

    return CycleSweeps(cycle=chosen, anodic=longest(1), cathodic=longest(-1))


def cycle_sweeps(cv: xr.Dataset, cycle: int | str = 1) -> dict[int, list[np.ndarray]]:
    """Every sweep (half-cycle) of ``cycle`` (file numbering, or ``"last"``) by direction:
    ``{+1: [index arrays of the anodic sweeps, in time order], -1: [... cathodic]}``.

    A partial first sweep (from the open-circuit potential to the first vertex) is one of
    them, so a peak it holds can be found. Raises ``ValueError`` naming the source file and
    ``kinetics.cycle`` when the cycle is not in the record.
    """
    _, in_cycle, sweep, direction = _cycle_samples(cv, cycle)
    out: dict[int, list[np.ndarray]] = {1: [], -1: []}
    for s in np.unique(sweep[in_cycle]):
        idx = np.flatnonzero((sweep == s) & in_cycle)
        d = int(direction[idx[0]])
        if d in out and idx.size >= MIN_SWEEP_SAMPLES:
            out[d].append(idx)
    return out


def previous_sweep_indices(cv: xr.Dataset, idx: np.ndarray) -> np.ndarray | None:
    """Indices (into ``sample``) of the moving sweep just before the one holding ``idx``
    (whatever its cycle), or None when it is the first."""
    sweep = np.asarray(cv["sweep"].values).reshape(-1)
    direction = np.asarray(cv["direction"].values).reshape(-1)
    s = int(sweep[idx[0]])
    for prev in range(s - 1, -1, -1):
        p = np.flatnonzero(sweep == prev)
        if p.size and direction[p[0]] != 0:
            return p
    return None


# --------------------------------------------------------- one Dataset per scan rate


class ScanRateError(ValueError):
    """A CV whose recorded scan rate disagrees with dE/dt, or two CVs of one scan rate."""


_DERIVED_ATTRS = {
    "potential_applied_V": ("V", "applied (programmed) potential"),
    "cycle": ("1", "cycle number"),
    "sweep": ("1", "sweep index (0-based, time order)"),
    "direction": ("1", "sweep direction: +1 anodic, -1 cathodic, 0 held"),
}


def _rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-300)


def _fmt_rate(v: float) -> str:
    return f"{v * 1e3:.6g} mV/s"


def _cycles_from_sweeps(sweep: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """Cycle numbers (1-based) when the file has none: a cycle starts at each sweep in the
    direction of the first moving sweep."""
    moving = direction != 0
    if not moving.any():
        return np.ones(sweep.size, dtype=np.int64)
    first_dir = direction[np.flatnonzero(moving)[0]]
    starts = np.r_[True, sweep[1:] != sweep[:-1]] & (direction == first_dir)
    return np.maximum(np.cumsum(starts), 1).astype(np.int64)


def _group_rates(rates: dict[int, float], tol: float) -> list[list[int]]:
    """Sweeps grouped by scan rate: sorted, a new group where neighbours differ > tol."""
    order = sorted(rates, key=lambda s: rates[s])
    groups: list[list[int]] = []
    for s in order:
        if groups and rates[s] <= rates[groups[-1][0]] * (1 + tol):
            groups[-1].append(s)
        else:
            groups.append([s])
    return groups


def _with_attrs(ds: xr.Dataset, raw: xr.Dataset) -> xr.Dataset:
    """Units and long names: the reader's for what it read, these for what is derived."""
    for name, var in ds.variables.items():
        if name in raw.variables and raw[name].attrs:
            var.attrs.update(raw[name].attrs)
        elif name in _DERIVED_ATTRS:
            var.attrs["units"], var.attrs["long_name"] = _DERIVED_ATTRS[name]
    return ds


def _rate_groups_from_column(path: str, row_rate: np.ndarray, sweep: np.ndarray,
                             rates: dict[int, float], tol: float
                             ) -> list[tuple[float, float, list[int]]]:
    """(recorded, dE/dt, sweeps) per value of a scan-rate column (which defines groups)."""
    out = []
    for value in np.unique(row_rate):
        rows = row_rate == value
        sw = [s for s in rates if np.any(rows & (sweep == s))]
        dedt = float(np.median([rates[s] for s in sw])) if sw else math.nan
        if not sw or _rel(dedt, value) > tol:
            raise ScanRateError(
                f"{path}: scan rate in the file (scan-rate column: {_fmt_rate(value)}) "
                f"disagrees with dE/dt of the potential ({_fmt_rate(dedt)}) by more than "
                f"kinetics.scan_rate_tolerance = {tol:.3g}")
        out.append((float(value), dedt, sw))
    return out


def _rate_groups(path: str, recorded: list[float], source: str, rates: dict[int, float],
                 tol: float) -> list[tuple[float, float, list[int]]]:
    """(scan rate, dE/dt, sweeps) per group of sweeps of one rate; a recorded rate must
    match each group's dE/dt within ``tol``."""
    groups = _group_rates(rates, tol)
    dedts = [float(np.median([rates[s] for s in g])) for g in groups]
    if recorded and len(recorded) != len(groups):
        raise ScanRateError(
            f"{path}: scan rate in the file ({source}: "
            f"{', '.join(_fmt_rate(r) for r in recorded)}) disagrees with dE/dt of the "
            f"potential ({', '.join(_fmt_rate(r) for r in dedts)}; sweeps within "
            f"kinetics.scan_rate_tolerance = {tol:.3g} of each other are one rate)")
    out = []
    for g, dedt in zip(groups, dedts, strict=True):
        value = dedt
        if recorded:
            value = min(recorded, key=lambda r, d=dedt: _rel(d, r))
            if _rel(dedt, value) > tol:
                raise ScanRateError(
                    f"{path}: scan rate in the file ({source}: "
                    f"{_fmt_rate(value)}) disagrees with dE/dt of the potential "
                    f"({_fmt_rate(dedt)}, {100 * _rel(dedt, value):.3g} % off) by more "
                    f"than kinetics.scan_rate_tolerance = {tol:.3g}")
        out.append((value, dedt, g))
    return out


def _split_cell(raw: xr.Dataset, tol: float) -> list[xr.Dataset]:
    """One cell CV record → one Dataset per scan rate."""
    path = raw.attrs["source_file"]
    e_app = np.asarray(raw["potential_applied_V"].values, dtype=float)
    t = np.asarray(raw["time_s"].values, dtype=float)
    n = e_app.size
    if n < 2 * 5:
        raise ScanRateError(f"{path}: expected a CV (at least 10 samples), found {n} rows")
    sweep, direction = sweep_labels(e_app)
    cycle = (raw["cycle"].values if "cycle" in raw
             else _cycles_from_sweeps(sweep, direction))
    rates = sweep_scan_rates_V_s(e_app, t, sweep, direction)
    if not rates:
        raise ScanRateError(f"{path}: the potential never sweeps (held at "
                            f"{e_app[0]:.4g} V): not a CV")
    recorded = [float(r) for r in np.asarray(raw.attrs["scan_rates_recorded_V_s"]).ravel()]
    source = str(raw.attrs.get("scan_rate_source", ""))
    has_column = "scan_rate_V_s" in raw
    groups = (_rate_groups_from_column(path, raw["scan_rate_V_s"].values, sweep, rates, tol)
              if has_column else _rate_groups(path, recorded, source, rates, tol))
    several = len(groups) > 1
    out = []
    for value, dedt, g in groups:
        sel = np.isin(sweep, g)
        cyc = cycle[sel]
        if several:  # renumber the cycles of this rate from 1
            cyc = np.searchsorted(np.unique(cyc), cyc) + 1
        recorded_v = value if (recorded or has_column) else math.nan
        ds = xr.Dataset(
            {
                "potential_V": ("sample", raw["potential_V"].values[sel]),
                "potential_applied_V": ("sample", e_app[sel]),
                "current_A": ("sample", raw["current_A"].values[sel]),
                "cycle": ("sample", cyc.astype(np.int64)),
                "sweep": ("sample", sweep[sel]),
                "direction": ("sample", direction[sel]),
            },
            coords={"time_s": ("sample", t[sel])},
            attrs={
                "scan_rate_V_s": float(value),
                "scan_rate_dEdt_V_s": float(dedt),
                "scan_rate_recorded_V_s": float(recorded_v),
                "scan_rate_source": source or "dE/dt",
                "source_file": path,
                "format": raw.attrs["format"],
                "technique": raw.attrs["technique"],
            },
        )
        out.append(_with_attrs(ds, raw))
    return out


def _split_map(raw: xr.Dataset, tol: float) -> list[xr.Dataset]:
    """An SECCM map on (y, x, rate, sample) → one Dataset per scan rate on (y, x, sample)."""
    path = raw.attrs["source_file"]
    pot = raw["potential_V"].values
    cur = raw["current_A"].values
    t = raw["time_s"].values
    out = []
    for r, v in enumerate(raw["scan_rate_V_s"].values):
        e_mean = pot[:, :, r, :].mean(axis=(0, 1), dtype=float)
        sweep, direction = sweep_labels(e_mean)
        srates = sweep_scan_rates_V_s(e_mean, t[r], sweep, direction)
        dedt = float(np.median(list(srates.values()))) if srates else math.nan
        if not srates or _rel(dedt, v) > tol:
            raise ScanRateError(
                f"{path}: /entry/map/scan_rate_V_s[{r}]: scan rate in the file "
                f"({_fmt_rate(v)}) disagrees with dE/dt of potential_V ({_fmt_rate(dedt)}) "
                f"by more than kinetics.scan_rate_tolerance = {tol:.3g}")
        ds = xr.Dataset(
            {
                "potential_V": (("y", "x", "sample"), pot[:, :, r, :]),
                "current_A": (("y", "x", "sample"), cur[:, :, r, :]),
                "potential_applied_V": ("sample", e_mean),
                "cycle": ("sample", _cycles_from_sweeps(sweep, direction)),
                "sweep": ("sample", sweep),
                "direction": ("sample", direction),
            },
            coords={"time_s": ("sample", t[r]),
                    "y_um": ("y", raw["y_um"].values), "x_um": ("x", raw["x_um"].values)},
            attrs={"scan_rate_V_s": float(v), "scan_rate_dEdt_V_s": dedt,
                   "scan_rate_recorded_V_s": float(v),
                   "scan_rate_source": raw.attrs["scan_rate_source"], "source_file": path,
                   "format": "seccm", "technique": raw.attrs["technique"],
                   "pixel_area_cm2": raw.attrs["pixel_area_cm2"]},
        )
        out.append(_with_attrs(ds, raw))
    return out


def label_sweeps(records: Sequence[xr.Dataset], scan_rate_tolerance: float = 0.05
                 ) -> list[xr.Dataset]:
    """CV records as read (:func:`operando.io.cv.read.read_cv`) → the normalised CV
    Datasets (module docstring), one per scan rate, sorted by rate.

    Each record is cut into sweeps on its applied potential (:func:`sweep_labels`); the
    scan rate of a sweep is its median |dE/dt| (V/s). Sweeps whose rates agree within
    ``scan_rate_tolerance`` (relative; default 0.05) are one scan rate, so a file may
    hold several (each its own Dataset, cycles renumbered from 1 within it; a file
    without cycle numbers gets them from its sweeps). A rate the file records (name,
    header, column, map dataset) must agree with dE/dt within the tolerance. Attributes
    ``scan_rate_V_s`` (the recorded rate when there is one, else dE/dt),
    ``scan_rate_dEdt_V_s``, ``scan_rate_recorded_V_s`` (NaN when none),
    ``scan_rate_source``, ``source_file``, ``format``, ``technique``. An SECCM map
    (dimensions ``y, x, rate, sample``) gives Datasets on ``(y, x, sample)``. Raises
    :class:`ScanRateError` naming the file for a recorded rate that disagrees with dE/dt,
    a record that is not a CV, or two records of one rate.
    """
    if not scan_rate_tolerance > 0:
        raise ValueError(f"kinetics.scan_rate_tolerance: expected > 0, found "
                         f"{scan_rate_tolerance}")
    out: list[xr.Dataset] = []
    for raw in records:
        out.extend(_split_map(raw, scan_rate_tolerance) if "rate" in raw.dims
                   else _split_cell(raw, scan_rate_tolerance))
    out.sort(key=lambda d: d.attrs["scan_rate_V_s"])
    for a, b in itertools.pairwise(out):
        va, vb = a.attrs["scan_rate_V_s"], b.attrs["scan_rate_V_s"]
        if _rel(vb, va) <= scan_rate_tolerance:
            raise ScanRateError(
                f"{b.attrs['source_file']}: scan rate {_fmt_rate(vb)} repeats that of "
                f"{a.attrs['source_file']} ({_fmt_rate(va)}, within kinetics.scan_rate_"
                f"tolerance = {scan_rate_tolerance:.3g}); expected one CV per scan rate")
    return out


def scan_charges_C(time_s: np.ndarray, current_A: np.ndarray,
                   scan: np.ndarray | int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(Q+, Q-) in C per sample: ∫ max(I, 0) dt and ∫ min(I, 0) dt (trapezoid rule) since
    the start of each scan, as a NOVA export records them (``Q-`` ≤ 0).

    ``time_s`` in s and ``current_A`` in A, 1-D of equal length; ``scan`` (default 1) a
    scalar or per-sample cycle number.
    """
    t = np.asarray(time_s, dtype=float)
    i = np.asarray(current_A, dtype=float)
    scan_arr = np.broadcast_to(np.asarray(scan, dtype=int), t.shape)
    q_pos = np.zeros(t.size)
    q_neg = np.zeros(t.size)
    for s in np.unique(scan_arr):
        sel = np.flatnonzero(scan_arr == s)
        q_pos[sel] = cumulative_trapezoid_C(t[sel], np.clip(i[sel], 0, None))
        q_neg[sel] = cumulative_trapezoid_C(t[sel], np.clip(i[sel], None, 0))
    return q_pos, q_neg
