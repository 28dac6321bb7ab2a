"""Segment labels (charge / discharge / rest) and charge integration from a current trace.

Pure numpy: arrays in, arrays out, no I/O. Units are in the names: ``time_s`` in s,
``current_A`` in A (positive = oxidation = charge), charges in C.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "DEFAULT_REST_THRESHOLD_FRACTION",
    "REST_THRESHOLD_FLOOR_A",
    "SEGMENT_CHARGE",
    "SEGMENT_DISCHARGE",
    "SEGMENT_REST",
    "cumulative_trapezoid_C",
    "rest_threshold_from_current",
    "segments_from_current",
]

SEGMENT_CHARGE, SEGMENT_DISCHARGE, SEGMENT_REST = "charge", "discharge", "rest"
#: Default rest threshold, as a fraction of the median active |I|.
DEFAULT_REST_THRESHOLD_FRACTION = 1e-3
#: The rest threshold is never below this (A).
REST_THRESHOLD_FLOOR_A = 1e-12


def rest_threshold_from_current(
    current_A: np.ndarray, open_circuit: np.ndarray | None, threshold_A: float | None
) -> float:
    """|I| (A) at or below which a row counts as rest.

    ``threshold_A`` (A) when given; else 1e-3 of the median non-zero |I| over the rows not
    at open circuit (``open_circuit``: boolean per row, or None when unknown), at least
    1e-12 A. The median keeps the threshold small for CVs whose current spans decades and
    immune to spikes.
    """
    if threshold_A is not None:
        return float(threshold_A)
    current_A = np.asarray(current_A, dtype=float)
    active = np.isfinite(current_A) & (current_A != 0.0)
    if open_circuit is not None:
        active &= ~np.asarray(open_circuit, dtype=bool)
    scale = float(np.median(np.abs(current_A[active]))) if active.any() else 0.0
    return max(DEFAULT_REST_THRESHOLD_FRACTION * scale, REST_THRESHOLD_FLOOR_A)


def segments_from_current(
    current_A: np.ndarray, open_circuit: np.ndarray | None, threshold_A: float
) -> np.ndarray:
    """Per-row label: ``charge`` (I > thr, oxidation), ``discharge`` (I < -thr) or ``rest``.

    ``current_A`` and ``threshold_A`` in A. Rows flagged in ``open_circuit`` (boolean per
    row, e.g. EC-Lab ``mode == 3``) are rest whatever the current reads.
    """
    current_A = np.asarray(current_A, dtype=float)
    seg = np.full(current_A.shape, SEGMENT_REST, dtype=object)
    seg[current_A > threshold_A] = SEGMENT_CHARGE
    seg[current_A < -threshold_A] = SEGMENT_DISCHARGE
    if open_circuit is not None:
        seg[np.asarray(open_circuit, dtype=bool)] = SEGMENT_REST
    return seg.astype(str)


def cumulative_trapezoid_C(time_s: np.ndarray, current_A: np.ndarray) -> np.ndarray:
    """∫ I dt (C) from the first row to each row, trapezoid rule; 0 at the first row.

    ``time_s`` in s, ``current_A`` in A, equal length; an empty input gives an empty array.
    """
    time_s = np.asarray(time_s, dtype=float)
    current_A = np.asarray(current_A, dtype=float)
    if time_s.size == 0:
        return np.zeros(0)
    steps = 0.5 * (current_A[1:] + current_A[:-1]) * np.diff(time_s)
    return np.concatenate([[0.0], np.cumsum(steps)])
