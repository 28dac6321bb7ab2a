"""Sweeps, scan rates and cycle selection of cyclic voltammograms (pure numpy / xarray).

A CV is a sequence of linear potential sweeps. A *sweep* is a maximal run of samples
whose (applied) potential moves in one direction: ``direction`` +1 (anodic, E rising),
−1 (cathodic, E falling), 0 (potential held). The scan rate of a sweep is the median
|ΔE/Δt| of its samples (V s⁻¹).

The normalised CV Dataset (made by :func:`operando.io.cv.read.read_cv`) has dimension
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

from dataclasses import dataclass

import numpy as np
import xarray as xr

__all__ = ["CycleSweeps", "select_cycle", "sweep_labels", "sweep_scan_rates_V_s"]

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


def select_cycle(cv: xr.Dataset, cycle: int | str = 1) -> CycleSweeps:
    """The anodic and cathodic sweep of ``cycle`` (file numbering, or ``"last"``).

    Within the cycle, the longest anodic and the longest cathodic sweep are taken (a
    partial first or last sweep, e.g. from the open-circuit potential to the first
    vertex, is shorter than a full one). Raises ``ValueError`` naming the source file and
    the key ``kinetics.cycle`` when the cycle is not in the record.
    """
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

    def longest(sign: int) -> np.ndarray | None:
        best: np.ndarray | None = None
        for s in np.unique(sweep[in_cycle & (direction == sign)]):
            idx = np.flatnonzero((sweep == s) & in_cycle)
            if best is None or idx.size > best.size:
                best = idx
        return best

    return CycleSweeps(cycle=chosen, anodic=longest(1), cathodic=longest(-1))
