"""Electrochemistry averaged over X-ray exposure intervals (the per-frame echem coordinates).

Every X-ray point has an exposure [t0, t1] on the potentiostat clock (s). Its echem
quantities are means over that interval, not values at one instant:

    ⟨v⟩ = (1 / (t1 − t0)) ∫_{t0}^{t1} v(t) dt

with v(t) linearly interpolated between the echem samples, integrated exactly: a
cumulative trapezoid over the whole samples inside the interval plus the two partial
pieces at its ends (trapezoids of the interpolated end values). A zero-length interval
gives the interpolated value v(t0). Labels (``segment``, ``cycle``) hold from the sample
where they appear to the next change (a change is dated at the first sample showing it, as
EC-Lab records a point at every step change); an interval gets the label covering most of
it. Pure numpy / xarray, vectorised over points (no Python loop over X-ray points).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr

from operando.echem.segments import SEGMENT_REST

__all__ = [
    "CELL_METHODS",
    "DEFAULT_CURRENT_JUMP_FRACTION",
    "DEFAULT_VARIABLES",
    "exposure_average",
    "interval_mean",
    "majority_label",
]

DEFAULT_VARIABLES = ("voltage_V", "current_A", "charge_C", "x_li", "faraday_fraction")
CELL_METHODS = "time: mean (over the exposure interval [time_start, time_end])"
#: default current-jump threshold, as a fraction of the median |I| of the non-rest samples
DEFAULT_CURRENT_JUMP_FRACTION = 0.1
LABEL_OUTSIDE = ""  # segment of a point outside the echem record
CYCLE_OUTSIDE = -1  # cycle of a point outside the echem record


def _piece_index(t: np.ndarray, tau: np.ndarray) -> np.ndarray:
    """Index j of the sample interval [t_j, t_{j+1}] holding tau (last one for tau = t[-1];
    after a repeated time, the interval that starts at the last repeat)."""
    return np.clip(np.searchsorted(t, tau, side="right") - 1, 0, t.size - 2)


def _interp(t: np.ndarray, v: np.ndarray, j: np.ndarray, tau: np.ndarray) -> np.ndarray:
    """Linear interpolation in piece j; a query on a sample takes that sample's value alone
    (so a NaN neighbour does not leak into it)."""
    dt = t[j + 1] - t[j]
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(dt > 0, (tau - t[j]) / np.where(dt > 0, dt, 1.0), 1.0)
        mixed = v[j] + (v[j + 1] - v[j]) * frac
    return np.where(frac <= 0.0, v[j], np.where(frac >= 1.0, v[j + 1], mixed))


def interval_mean(t: np.ndarray, v: np.ndarray, t0: np.ndarray, t1: np.ndarray) -> np.ndarray:
    """Exact mean of the piecewise-linear interpolant of (t, v) over each [t0, t1].

    ``t`` (s) non-decreasing with at least 2 samples; ``t0 <= t1`` inside [t[0], t[-1]]
    (the caller masks the rest). A NaN sample makes the mean of every interval that
    touches it NaN, and only those. Zero-length intervals give the interpolated value.
    """
    t = np.asarray(t, dtype=float)
    v = np.asarray(v, dtype=float)
    t0 = np.asarray(t0, dtype=float)
    t1 = np.asarray(t1, dtype=float)
    piece = 0.5 * (v[1:] + v[:-1]) * np.diff(t)
    bad = ~np.isfinite(piece)
    cum = np.concatenate([[0.0], np.cumsum(np.where(bad, 0.0, piece))])
    cum_bad = np.concatenate([[0], np.cumsum(bad)])
    j0 = _piece_index(t, t0)
    j1 = _piece_index(t, t1)
    v0 = _interp(t, v, j0, t0)
    v1 = _interp(t, v, j1, t1)
    same = j1 == j0
    k = np.minimum(j0 + 1, j1)  # first whole sample inside (unused where same)
    head = 0.5 * (v0 + v[j0 + 1]) * (t[j0 + 1] - t0)
    tail = 0.5 * (v[j1] + v1) * (t1 - t[j1])
    middle = np.where(cum_bad[j1] > cum_bad[k], np.nan, cum[j1] - cum[k])
    width = t1 - t0
    with np.errstate(invalid="ignore", divide="ignore"):
        spanning = (head + middle + tail) / np.where(width > 0, width, 1.0)
    out = np.where(same, 0.5 * (v0 + v1), spanning)
    return np.where(width > 0, out, v0)


def majority_label(t: np.ndarray, labels: np.ndarray, t0: np.ndarray, t1: np.ndarray
                   ) -> np.ndarray:
    """The label covering most of each [t0, t1] (ties: the earliest; zero length: the
    label at t0). Labels hold from their first sample to the next change (forward hold).

    Vectorised over the runs of equal labels each interval overlaps: (point, label) groups
    summed with ``bincount``, no loop over points.
    """
    t = np.asarray(t, dtype=float)
    labels = np.asarray(labels)
    t0 = np.asarray(t0, dtype=float)
    t1 = np.asarray(t1, dtype=float)
    change = np.flatnonzero(labels[1:] != labels[:-1]) + 1
    run_first = np.concatenate([[0], change])
    run_start = t[run_first]
    run_end = np.concatenate([run_start[1:], [t[-1]]])
    run_labels = labels[run_first]
    codes_unique, run_code = np.unique(run_labels, return_inverse=True)
    n_runs = run_start.size
    r0 = np.clip(np.searchsorted(run_start, t0, side="right") - 1, 0, n_runs - 1)
    r1 = np.clip(np.searchsorted(run_start, t1, side="right") - 1, 0, n_runs - 1)
    r1 = np.maximum(r1, r0)
    counts = r1 - r0 + 1
    total = int(counts.sum())
    p_idx = np.repeat(np.arange(t0.size), counts)
    first = np.cumsum(counts) - counts
    r_idx = r0[p_idx] + (np.arange(total) - np.repeat(first, counts))
    cover = np.clip(np.minimum(t1[p_idx], run_end[r_idx]) - np.maximum(t0[p_idx],
                                                                          run_start[r_idx]),
                    0.0, None)
    n_codes = codes_unique.size
    key = p_idx.astype(np.int64) * n_codes + run_code[r_idx]
    groups, first_at, inverse = np.unique(key, return_index=True, return_inverse=True)
    group_cover = np.bincount(inverse.ravel(), weights=cover, minlength=groups.size)
    group_point = groups // n_codes
    order = np.lexsort((first_at, -group_cover, group_point))
    keep = order[np.concatenate([[True], group_point[order][1:] != group_point[order][:-1]])]
    out = np.empty(t0.size, dtype=codes_unique.dtype)
    out[group_point[keep]] = codes_unique[groups[keep] % n_codes]
    return out


def _event_times(echem: xr.Dataset, t: np.ndarray, current_jump_A: float | None
                 ) -> tuple[np.ndarray, float]:
    """Times of current steps: a change of ``step`` or ``segment`` between consecutive
    samples, or |ΔI| > the jump threshold; dated at the first sample after the change."""
    n = t.size
    ev = np.zeros(n - 1, dtype=bool)
    for name in ("step", "segment"):
        if name in echem.variables:
            lab = np.asarray(echem[name].values)
            ev |= lab[1:] != lab[:-1]
    thr = np.inf
    if "current_A" in echem.variables:
        cur = np.asarray(echem["current_A"].values, dtype=float)
        if current_jump_A is not None:
            thr = float(current_jump_A)
        else:
            active = np.isfinite(cur) & (cur != 0.0)
            if "segment" in echem.variables:
                active &= np.asarray(echem["segment"].values).astype(str) != SEGMENT_REST
            if active.any():
                thr = DEFAULT_CURRENT_JUMP_FRACTION * float(np.median(np.abs(cur[active])))
        with np.errstate(invalid="ignore"):
            ev |= np.abs(np.diff(cur)) > thr
    return t[1:][ev], thr


def exposure_average(
    echem: xr.Dataset,
    time_start_s: np.ndarray,
    time_end_s: np.ndarray,
    variables: Sequence[str] = DEFAULT_VARIABLES,
    dim: str = "time",
    *,
    time_coord: str = "time_s",
    current_jump_A: float | None = None,
) -> xr.Dataset:
    """Echem quantities averaged over each X-ray exposure [time_start_s, time_end_s].

    ``echem``: the normalised echem Dataset (``time_s`` in s on the potentiostat clock along
    its dimension, ``current_A``, ``charge_C``, ``segment``, ``step``, ``cycle``, ...).
    ``time_start_s``, ``time_end_s``: exposure start / end of each X-ray point, s on the
    potentiostat clock (map beamline timestamps with :class:`operando.echem.sync.ClockModel`).

    Returns a Dataset on dimension ``dim`` with ``time_start``, ``time_end`` (s), the mean
    over the exposure of every name in ``variables`` present in ``echem`` (exact integral
    of the piecewise-linear interpolant, see the module docstring; same units), ``segment``
    and ``cycle`` (the label covering most of the interval), ``straddles_step`` (True when
    a current step lies strictly inside the interval: ``step`` or ``segment`` changes, or
    |ΔI| between consecutive samples above ``current_jump_A``, default 0.1 × the median |I|
    of the non-rest samples) and ``outside_echem_range`` (True when the interval is not
    wholly inside the echem record, or its times are not finite: means NaN, segment "",
    cycle −1 — never an exception).
    """
    if time_coord not in echem.variables:
        raise ValueError(f"exposure_average: the echem dataset has no {time_coord!r}; found "
                         f"{sorted(map(str, echem.variables))}")
    tvar = echem[time_coord]
    if tvar.ndim != 1:
        raise ValueError(f"exposure_average: {time_coord!r} must be 1-D, found dims {tvar.dims}")
    edim = tvar.dims[0]
    t = np.asarray(tvar.values, dtype=float)
    if t.size < 2:
        raise ValueError(f"exposure_average: expected at least 2 echem samples, found {t.size}")
    if not np.all(np.isfinite(t)):
        raise ValueError(f"exposure_average: {time_coord!r} has non-finite values (first at "
                         f"index {int(np.flatnonzero(~np.isfinite(t))[0])})")
    back = np.flatnonzero(np.diff(t) < 0)
    if back.size:
        k = int(back[0])
        raise ValueError(f"exposure_average: {time_coord!r} must be non-decreasing; found "
                         f"{t[k + 1]} s after {t[k]} s at index {k + 1}")
    t0 = np.asarray(time_start_s, dtype=float)
    t1 = np.asarray(time_end_s, dtype=float)
    if t0.ndim != 1 or t0.shape != t1.shape:
        raise ValueError(f"exposure_average: expected 1-D time_start_s and time_end_s of one "
                         f"length, found shapes {t0.shape} and {t1.shape}")
    with np.errstate(invalid="ignore"):
        reversed_ = np.flatnonzero(t1 < t0)
    if reversed_.size:
        k = int(reversed_[0])
        raise ValueError(f"exposure_average: expected time_end_s >= time_start_s, found "
                         f"[{t0[k]}, {t1[k]}] s at point {k} ({reversed_.size} such point(s))")
    finite = np.isfinite(t0) & np.isfinite(t1)
    with np.errstate(invalid="ignore"):
        inside = finite & (t0 >= t[0]) & (t1 <= t[-1])
    # masked points are computed at a harmless placeholder and blanked afterwards
    q0 = np.where(inside, t0, t[0])
    q1 = np.where(inside, t1, t[0])

    out: dict[str, xr.Variable] = {
        "time_start": xr.Variable(dim, t0, {"units": "s", "long_name": "exposure start "
                                            "(potentiostat clock)"}),
        "time_end": xr.Variable(dim, t1, {"units": "s", "long_name": "exposure end "
                                          "(potentiostat clock)"}),
    }
    for name in variables:
        if name not in echem.variables:
            continue
        var = echem[name]
        if var.dims != (edim,):
            raise ValueError(f"exposure_average: {name!r} must lie along {edim!r} only, found "
                             f"dims {var.dims}")
        if var.dtype.kind not in "fiu":
            raise ValueError(f"exposure_average: {name!r} must be numeric to be averaged, found "
                             f"dtype {var.dtype}")
        mean = interval_mean(t, np.asarray(var.values, dtype=float), q0, q1)
        attrs = {k: v for k, v in var.attrs.items() if k not in ("long_name", "cell_methods")}
        attrs["long_name"] = f"{var.attrs.get('long_name', name)}, mean over the exposure"
        attrs["cell_methods"] = CELL_METHODS
        attrs.setdefault("units", "1")
        out[name] = xr.Variable(dim, np.where(inside, mean, np.nan), attrs)

    if "segment" in echem.variables:
        seg = majority_label(t, np.asarray(echem["segment"].values).astype(str), q0, q1)
        seg = np.where(inside, seg, LABEL_OUTSIDE).astype(str)
        out["segment"] = xr.Variable(dim, seg, {
            "units": "1", "long_name": "segment label covering most of the exposure",
            "missing_label": "'' outside the echem record"})
    if "cycle" in echem.variables:
        cyc = majority_label(t, np.asarray(echem["cycle"].values).astype(np.int64), q0, q1)
        out["cycle"] = xr.Variable(dim, np.where(inside, cyc, CYCLE_OUTSIDE).astype(np.int64), {
            "units": "1", "long_name": "cycle number covering most of the exposure",
            "missing_value_note": f"{CYCLE_OUTSIDE} outside the echem record"})

    events, thr = _event_times(echem, t, current_jump_A)
    n_inside = np.searchsorted(events, q1, side="left") - np.searchsorted(events, q0,
                                                                          side="right")
    out["straddles_step"] = xr.Variable(dim, inside & (n_inside > 0), {
        "long_name": "a current step lies strictly inside the exposure",
        "rule": "step or segment changes, or |dI| between consecutive samples > "
                "current_jump_A, dated at the first sample after the change",
        "current_jump_A": float(thr)})
    out["outside_echem_range"] = xr.Variable(dim, ~inside, {
        "long_name": "exposure not wholly inside the echem record (echem means are NaN)",
        "echem_time_range_s": np.array([t[0], t[-1]])})
    return xr.Dataset(out, attrs={"echem_averaging": CELL_METHODS})
