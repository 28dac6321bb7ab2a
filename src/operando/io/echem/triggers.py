"""The potentiostat's trigger record: times (s, potentiostat clock) of the trigger pulses
its input logged, one per X-ray acquisition (some may be missing, some spurious).

File layout (text, UTF-8, LF)::

    # operando trigger record
    # clock = potentiostat
    # units = s
    # acquisition_start = 2026-03-14T09:30:00.000
    # (acquisition_start is the potentiostat local wall time, no timezone)
    # source = <what wrote it>
    # n_triggers = 123
    trigger_time_s
    5.0003
    ...

``trigger_time_s`` is seconds since the potentiostat's ``Acquisition started on``, the
same time base as ``time/s`` in the ``.mpt`` export. Header values are plain text
(``datetime.fromisoformat`` reads ``acquisition_start``); ``n_triggers`` is checked
against the number of values read, so a truncated copy is an error.
"""

from __future__ import annotations

import math
import os
from datetime import datetime
from pathlib import Path

import numpy as np

from operando.io.atomic import write_bytes_atomic
from operando.io.errors import InputFileError
from operando.io.text import read_text_file
from operando.io.timestamps import require_naive_local

__all__ = [
    "TRIGGER_MAGIC",
    "TriggerFormatError",
    "read_trigger_file",
    "read_trigger_metadata",
    "read_trigger_record",
    "write_trigger_record",
]

TRIGGER_MAGIC = "# operando trigger record"
COLUMN_NAME = "trigger_time_s"


class TriggerFormatError(InputFileError):
    """A trigger record does not have the layout or content expected."""


def write_trigger_record(
    path: str | os.PathLike[str],
    time_s: np.ndarray,
    *,
    source: str,
    acquisition_start: datetime,
) -> Path:
    """Write trigger times (s, potentiostat clock, sorted) atomically; return the path.

    ``acquisition_start`` is the naive potentiostat-local wall time of t = 0 (an aware
    datetime is refused rather than silently shifted).
    Values are written with full float precision (``repr``), so they read back exactly.
    """
    require_naive_local(acquisition_start, f"{path}: acquisition_start")
    t = np.asarray(time_s, dtype=float)
    if t.ndim != 1:
        raise ValueError(f"time_s must be 1-D, got shape {t.shape}")
    if not np.all(np.isfinite(t)):
        raise ValueError("time_s must be finite")
    if np.any(np.diff(t) < 0):
        raise ValueError("time_s must be sorted (non-decreasing)")
    if "\n" in source or "\r" in source:
        raise ValueError("source must be one line")
    start = acquisition_start.isoformat(timespec="milliseconds")
    lines = [
        TRIGGER_MAGIC,
        "# clock = potentiostat",
        "# units = s",
        f"# acquisition_start = {start}",
        "# (acquisition_start is the potentiostat local wall time, no timezone)",
        f"# source = {source}",
        f"# n_triggers = {t.size}",
        COLUMN_NAME,
        *(repr(float(v)) for v in t),
    ]
    return write_bytes_atomic(Path(path), ("\n".join(lines) + "\n").encode("utf-8"))


def _check_magic(path: Path, lines: list[str]) -> None:
    found = lines[0].strip() if lines else "<empty file>"
    if found != TRIGGER_MAGIC:
        raise TriggerFormatError(
            f"{path}: line 1: expected {TRIGGER_MAGIC!r}, found {found[:80]!r}"
        )


def read_trigger_file(path: str | os.PathLike[str]) -> tuple[dict[str, str], np.ndarray]:
    """Header and trigger times of a trigger record: ``(metadata, time_s)``.

    ``metadata`` holds the ``# key = value`` header lines (values as text); ``time_s`` the
    trigger times (s, potentiostat clock) as float64. Raises :class:`TriggerFormatError`
    naming the file and line on any problem, including a value count different from the
    header's ``n_triggers`` (a truncated copy).
    """
    path = Path(path)
    lines = read_text_file(path, what="a trigger record", error=TriggerFormatError)
    _check_magic(path, lines)
    meta: dict[str, str] = {}
    k = 1
    while k < len(lines) and lines[k].startswith("#"):
        key, sep, value = lines[k][1:].partition("=")
        if sep:
            meta[key.strip()] = value.strip()
        k += 1
    if k >= len(lines) or lines[k].strip() != COLUMN_NAME:
        found = lines[k].strip()[:80] if k < len(lines) else "<end of file>"
        raise TriggerFormatError(
            f"{path}: line {k + 1}: expected the column name {COLUMN_NAME!r}, found {found!r}"
        )
    values: list[float] = []
    for n, line in enumerate(lines[k + 1:], start=k + 2):
        text = line.strip()
        if not text:
            continue
        try:
            v = float(text)
        except ValueError:
            raise TriggerFormatError(
                f"{path}: line {n}: expected a time in seconds, found {text[:80]!r}"
            ) from None
        if not math.isfinite(v):
            raise TriggerFormatError(f"{path}: line {n}: time must be finite, found {text!r}")
        if values and v < values[-1]:
            raise TriggerFormatError(
                f"{path}: line {n}: times must be non-decreasing, found {v} after {values[-1]}"
            )
        values.append(v)
    if "n_triggers" in meta:
        try:
            expected = int(meta["n_triggers"])
        except ValueError:
            raise TriggerFormatError(
                f"{path}: header 'n_triggers': expected an integer, found {meta['n_triggers']!r}"
            ) from None
        if expected != len(values):
            raise TriggerFormatError(
                f"{path}: header says n_triggers = {expected}, found {len(values)} trigger "
                "time(s): truncated or edited copy?"
            )
    return meta, np.asarray(values, dtype=float)


def read_trigger_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The ``# key = value`` header lines of a trigger record (values as text)."""
    return read_trigger_file(path)[0]


def read_trigger_record(path: str | os.PathLike[str]) -> np.ndarray:
    """Trigger times (s, potentiostat clock) from a trigger record, as float64.

    Raises :class:`TriggerFormatError` naming the file and line on any problem.
    """
    return read_trigger_file(path)[1]
