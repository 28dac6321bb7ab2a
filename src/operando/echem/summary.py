"""Summary of a normalised electrochemistry dataset: the segments with their current,
charge and voltage.

Input: the xarray Dataset of :func:`operando.io.echem.read.read_echem` (dimension
``echem_time``; ``time_s`` in s, ``current_A`` in A, ``voltage_V`` in V, ``charge_C`` in C,
``segment`` labels). Segments are the runs of one label (:func:`operando.echem.segments.
segment_runs`); C-rates are in :mod:`operando.echem.faraday`. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

from operando.constants import MAH_TO_C
from operando.echem.segments import SegmentRun, segment_runs

__all__ = ["SegmentSummary", "segments"]


@dataclass(frozen=True, kw_only=True)
class SegmentSummary(SegmentRun):
    """A segment (:class:`~operando.echem.segments.SegmentRun`) with its mean current (A),
    |ΔQ| (mA·h) and the voltage (V) at its first and last row."""

    mean_current_A: float
    charge_mAh: float  # |ΔQ| over the segment, mA·h
    v_start_V: float
    v_end_V: float


def segments(ds: xr.Dataset) -> list[SegmentSummary]:
    """The segments of the record (contiguous runs of one ``segment`` label) with their
    quantities.

    The charge of a segment is ΔQ = Q(first sample of the next segment) − Q(first
    sample of this one), from the dataset's cumulative ``charge_C`` (the cycler's
    own counter, or ∫ I dt when the file had none); reported in mA·h = C / 3.6. The mean
    current is over the segment's own rows.
    """
    t = np.asarray(ds["time_s"].values, dtype=float)
    i = np.asarray(ds["current_A"].values, dtype=float)
    q = np.asarray(ds["charge_C"].values, dtype=float)
    v = np.asarray(ds["voltage_V"].values, dtype=float)
    out: list[SegmentSummary] = []
    for run in segment_runs(np.asarray(ds["segment"].values), t):
        a, b = run.start, run.stop
        # up to the first sample of the next segment, so no interval is lost
        q_c = float(q[min(b, t.size - 1)] - q[a])
        out.append(SegmentSummary(
            **run.run_fields(), mean_current_A=float(np.mean(i[a:b])),
            charge_mAh=abs(q_c) / MAH_TO_C, v_start_V=float(v[a]), v_end_V=float(v[b - 1]),
        ))
    return out
