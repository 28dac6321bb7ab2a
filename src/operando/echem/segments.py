"""Segment labels (charge / discharge / rest), the runs of one label, and charge integration.

Pure numpy: arrays in, arrays out, no I/O. Units are in the names: ``time_s`` in s,
``current_A`` in A (positive = oxidation = charge), charges in C.

A *segment* of a record is a contiguous run of one label (:class:`SegmentRun`, found by
:func:`segment_runs`): the one segment type of the echem summaries
(:mod:`operando.echem.summary`), the C-rates (:mod:`operando.echem.faraday`) and the
confocal metrics (:mod:`operando.confocal.metrics`). :func:`add_segments` puts the labels
and the run's continued charge on the cycler readers' Dataset (xarray in and out).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from operando.cf import CHARGE_NOT_RECORDED

__all__ = [
    "CHARGE_INTEGRATED",
    "DEFAULT_REST_THRESHOLD_FRACTION",
    "REST_THRESHOLD_FLOOR_A",
    "SEGMENT_CHARGE",
    "SEGMENT_DISCHARGE",
    "SEGMENT_REST",
    "SegmentRun",
    "add_segments",
    "continued_charge_C",
    "cumulative_trapezoid_C",
    "rest_threshold_from_current",
    "segment_runs",
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


@dataclass(frozen=True)
class SegmentRun:
    """One segment: a contiguous run of one label of an electrochemistry record.

    ``kind``: the label (``charge`` / ``discharge`` / ``rest``). ``start_s``, ``end_s`` (s,
    the record's clock): from the run's first row to the first row of the next run (the
    last row for the last run), so consecutive segments tile the record without a gap.
    ``index``: 0-based position among the record's segments; ``start``, ``stop``: the rows
    ``[start, stop)`` of the run. A segment known only by its times (a protocol written by
    hand) leaves ``index``, ``start`` and ``stop`` at their default 0.

    The records that add quantities to a segment (:class:`operando.echem.summary.
    SegmentSummary`, :class:`operando.echem.faraday.SegmentCRate`) extend this class.
    """

    kind: str
    start_s: float
    end_s: float
    index: int = 0
    start: int = 0
    stop: int = 0

    @property
    def duration_s(self) -> float:
        """end_s − start_s (s)."""
        return self.end_s - self.start_s

    def run_fields(self) -> dict[str, Any]:
        """The :class:`SegmentRun` fields of this segment (a subclass's quantities left out),
        as keyword arguments for another segment record."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(SegmentRun)}


def segment_runs(labels: np.ndarray, time_s: np.ndarray, *, min_duration_s: float = 0.0
                 ) -> list[SegmentRun]:
    """The segments of a record: each contiguous run of one label, in order.

    ``labels`` (n,) per-row label (str), ``time_s`` (n,) finite, non-decreasing (s). A
    segment starts at its first row and ends where the next one begins (the last at the
    last row). Runs shorter than ``min_duration_s`` (s; default 0: every run kept) are
    glitches: dropped, their time given to the segment before them, and the neighbours
    they separated merged when they carry the same label (rows ``[start, stop)`` of a
    merged segment span the glitch too). ValueError when the lengths differ or the time
    is not finite and non-decreasing; an empty record has no segment.
    """
    t = np.asarray(time_s, dtype=float).ravel()
    lab = np.asarray(labels).astype(str).ravel()
    if t.size != lab.size:
        raise ValueError(f"segment_runs: time_s has {t.size} rows, labels {lab.size}")
    if t.size == 0:
        return []
    if np.any(~np.isfinite(t)) or np.any(np.diff(t) < 0):
        raise ValueError("segment_runs: time_s must be finite and non-decreasing")
    change = np.flatnonzero(lab[1:] != lab[:-1]) + 1
    starts = np.concatenate([[0], change])
    stops = np.concatenate([change, [t.size]])
    kept: list[SegmentRun] = []
    for a, b in zip(starts, stops, strict=True):
        run = SegmentRun(kind=str(lab[a]), start_s=float(t[a]),
                         end_s=float(t[min(b, t.size - 1)]), start=int(a), stop=int(b))
        if run.duration_s < min_duration_s:
            if kept:
                kept[-1] = dataclasses.replace(kept[-1], end_s=run.end_s, stop=run.stop)
            continue
        if kept and kept[-1].kind == run.kind:
            kept[-1] = dataclasses.replace(kept[-1], end_s=run.end_s, stop=run.stop)
            continue
        if kept:
            kept[-1] = dataclasses.replace(kept[-1], end_s=run.start_s, stop=run.start)
        kept.append(dataclasses.replace(run, index=len(kept)))
    return kept


#: ``charge_C`` source text once :func:`add_segments` has integrated the current
CHARGE_INTEGRATED = "integrated from current_A (trapezoid rule)"
_SEGMENT_RULE = ("|I| <= rest_threshold_A or an open-circuit flag (EC-Lab mode 3, "
                 "Neware Rest/OCV/Pause) -> rest; I > 0 charge; I < 0 discharge")


def continued_charge_C(
    time_s: np.ndarray, current_A: np.ndarray, charge_C: np.ndarray, file_index: np.ndarray
) -> np.ndarray:
    """Charge (C) since the first file's start, continued across the files of one run.

    ``charge_C`` is each file's own record (C; all NaN in a file that records none, whose
    charge is then ∫ I dt by the trapezoid rule); ``file_index`` numbers the files in
    time order (their rows contiguous). Each file continues from the previous one's last
    value. ``time_s`` in s, ``current_A`` in A, equal length.
    """
    time_s = np.asarray(time_s, dtype=float)
    current_A = np.asarray(current_A, dtype=float)
    charge_C = np.asarray(charge_C, dtype=float)
    file_index = np.asarray(file_index)
    out = np.empty(time_s.size)
    offset = 0.0
    for k in dict.fromkeys(file_index.tolist()):
        rows = file_index == k
        q = charge_C[rows]
        if np.all(np.isnan(q)):
            q = cumulative_trapezoid_C(time_s[rows], current_A[rows])
        out[rows] = q + offset
        offset += float(q[-1])
    return out


def add_segments(ds: xr.Dataset, rest_threshold_A: float | None = None) -> xr.Dataset:
    """The normalised cycler Dataset with its segment labels and the charge of the run.

    ``ds`` is what :func:`operando.io.echem.read.read_echem` returns (dimension
    ``echem_time``; ``time_s``, ``current_A``, ``charge_C`` per file as recorded,
    ``file_index``, optional ``open_circuit``). Returns a new Dataset where ``charge_C``
    (C) runs since the first file's start (:func:`continued_charge_C`: a file without a
    charge record is integrated) and ``segment`` (after ``charge_C``) labels each row
    ``charge`` / ``discharge`` / ``rest``: rest when |I| <= ``rest_threshold_A`` (A;
    default ``None`` = 1e-3 of the median non-zero |I| outside open circuit, see
    :func:`rest_threshold_from_current`) or where ``open_circuit`` flags the row, which
    is folded into ``segment`` and dropped.
    """
    current_A = np.asarray(ds["current_A"].values, dtype=float)
    dim = ds["current_A"].dims
    n = current_A.size
    open_circuit = (np.asarray(ds["open_circuit"].values, dtype=bool)
                    if "open_circuit" in ds else None)
    recorded = (ds["charge_C"].values if "charge_C" in ds else np.full(n, np.nan))
    file_index = ds["file_index"].values if "file_index" in ds else np.zeros(n, np.int64)
    charge = continued_charge_C(ds["time_s"].values, current_A, recorded, file_index)
    q_attrs = dict(ds["charge_C"].attrs) if "charge_C" in ds else {
        "units": "C", "long_name": "charge passed since the first acquisition start"}
    q_attrs["source"] = str(q_attrs.get("source", CHARGE_NOT_RECORDED)).replace(
        CHARGE_NOT_RECORDED, CHARGE_INTEGRATED)
    thr = rest_threshold_from_current(current_A, open_circuit, rest_threshold_A)
    segment = xr.Variable(dim, segments_from_current(current_A, open_circuit, thr), attrs={
        "units": "1", "long_name": "segment label (charge / discharge / rest)",
        "rest_threshold_A": thr, "rule": _SEGMENT_RULE})
    data_vars: dict[str, xr.Variable] = {}
    for name, var in ds.data_vars.items():
        if name in ("open_circuit", "segment"):
            continue
        if name == "charge_C":
            data_vars["charge_C"] = xr.Variable(dim, charge, attrs=q_attrs,
                                                encoding=var.encoding)
            data_vars["segment"] = segment
            continue
        data_vars[str(name)] = var.variable
    if "charge_C" not in data_vars:
        data_vars["charge_C"] = xr.Variable(dim, charge, attrs=q_attrs)
        data_vars["segment"] = segment
    return xr.Dataset(data_vars, coords=ds.coords, attrs=ds.attrs)
