"""Summary of a normalised electrochemistry dataset (segments, capacities, C-rates).

Input: the xarray Dataset of :func:`operando.io.echem.biologic.read_mpt` (dimension
``echem_time``; ``time_s`` in s, ``current_A`` in A, ``voltage_V`` in V,
``segment`` labels). Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

from operando.constants import MAH_TO_C


@dataclass(frozen=True)
class SegmentSummary:
    index: int
    kind: str  # charge / discharge / rest
    start_s: float
    end_s: float
    mean_current_A: float
    charge_mAh: float  # |ΔQ| over the segment, mA·h
    v_start_V: float
    v_end_V: float

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


def segments(ds: xr.Dataset) -> list[SegmentSummary]:
    """Contiguous runs of one segment label.

    The charge of a segment is ΔQ = Q(first sample of the next segment) − Q(first
    sample of this one), from the dataset's cumulative ``charge_C`` (the cycler's
    own counter, or ∫ I dt when the file had none); reported in mA·h = C / 3.6.
    """
    t = np.asarray(ds["time_s"].values, dtype=float)
    i = np.asarray(ds["current_A"].values, dtype=float)
    q = np.asarray(ds["charge_C"].values, dtype=float)
    v = np.asarray(ds["voltage_V"].values, dtype=float)
    lab = np.asarray(ds["segment"].values).astype(str)
    if t.size == 0:
        return []
    edges = np.flatnonzero(lab[1:] != lab[:-1]) + 1
    starts = np.concatenate([[0], edges])
    stops = np.concatenate([edges, [t.size]])
    out: list[SegmentSummary] = []
    for k, (a, b) in enumerate(zip(starts, stops, strict=True)):
        # up to the first sample of the next segment, so no interval is lost
        b_int = min(b + 1, t.size)
        q_c = float(q[b_int - 1] - q[a])
        out.append(SegmentSummary(
            index=k, kind=str(lab[a]), start_s=float(t[a]), end_s=float(t[b_int - 1]),
            mean_current_A=float(np.mean(i[a:b])), charge_mAh=abs(q_c) / MAH_TO_C,
            v_start_V=float(v[a]), v_end_V=float(v[b - 1]),
        ))
    return out


def c_rate_per_h(current_A: float, capacity_C: float) -> float:
    """C-rate = |I| / (Q / 1 h), with Q the reference capacity in C."""
    return abs(current_A) * 3600.0 / capacity_C
