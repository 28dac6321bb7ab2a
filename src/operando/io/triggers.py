"""The potentiostat's trigger record: times (s, potentiostat clock) of the trigger pulses
its input logged, one per X-ray acquisition (some may be missing, some spurious).

File layout (text, UTF-8, LF)::

    # operando trigger record
    # clock = potentiostat
    # units = s
    # acquisition_start = 2026-03-14T09:30:00.000  (potentiostat local wall time)
    # source = <what wrote it>
    # n_triggers = 123
    trigger_time_s
    5.0003
    ...

``trigger_time_s`` is seconds since the potentiostat's ``Acquisition started on``, the
same time base as ``time/s`` in the ``.mpt`` export.
"""

from __future__ import annotations

import math
import os
from datetime import datetime
from pathlib import Path

import numpy as np

from operando.io.atomic import write_bytes_atomic

__all__ = [
    "TRIGGER_MAGIC",
    "TriggerFormatError",
    "read_trigger_metadata",
    "read_trigger_record",
    "write_trigger_record",
]

TRIGGER_MAGIC = "# operando trigger record"
COLUMN_NAME = "trigger_time_s"


class TriggerFormatError(ValueError):
    """A trigger record does not have the layout or content expected."""


def write_trigger_record(
    path: str | os.PathLike[str],
    time_s: np.ndarray,
    *,
    source: str,
    acquisition_start: datetime,
) -> Path:
    """Write trigger times (s, potentiostat clock, sorted) atomically; return the path.

    ``acquisition_start`` is the naive potentiostat-local wall time of t = 0.
    Values are written with full float precision (``repr``), so they read back exactly.
    """
    t = np.asarray(time_s, dtype=float)
    if t.ndim != 1:
        raise ValueError(f"time_s must be 1-D, got shape {t.shape}")
    if not np.all(np.isfinite(t)):
        raise ValueError("time_s must be finite")
    if np.any(np.diff(t) < 0):
        raise ValueError("time_s must be sorted (non-decreasing)")
    if "\n" in source or "\r" in source:
        raise ValueError("source must be one line")
    start = acquisition_start.replace(tzinfo=None).isoformat(timespec="milliseconds")
    lines = [
        TRIGGER_MAGIC,
        "# clock = potentiostat",
        "# units = s",
        f"# acquisition_start = {start}  (potentiostat local wall time)",
        f"# source = {source}",
        f"# n_triggers = {t.size}",
        COLUMN_NAME,
        *(repr(float(v)) for v in t),
    ]
    return write_bytes_atomic(Path(path), ("\n".join(lines) + "\n").encode("utf-8"))


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise TriggerFormatError(f"{path}: no such file") from None
    except UnicodeDecodeError as exc:
        raise TriggerFormatError(f"{path}: not a UTF-8 text trigger record ({exc})") from None


def read_trigger_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The ``# key = value`` header lines of a trigger record (values as text)."""
    path = Path(path)
    lines = _read_lines(path)
    _check_magic(path, lines)
    meta: dict[str, str] = {}
    for line in lines[1:]:
        if not line.startswith("#"):
            break
        key, sep, value = line[1:].partition("=")
        if sep:
            meta[key.strip()] = value.strip()
    return meta


def _check_magic(path: Path, lines: list[str]) -> None:
    found = lines[0].strip() if lines else "<empty file>"
    if found != TRIGGER_MAGIC:
        raise TriggerFormatError(
            f"{path}: line 1: expected {TRIGGER_MAGIC!r}, found {found[:80]!r}"
        )


def read_trigger_record(path: str | os.PathLike[str]) -> np.ndarray:
    """Trigger times (s, potentiostat clock) from a trigger record, as float64.

    Raises :class:`TriggerFormatError` naming the file and line on any problem.
    """
    path = Path(path)
    lines = _read_lines(path)
    _check_magic(path, lines)
    k = 1
    while k < len(lines) and lines[k].startswith("#"):
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
    return np.asarray(values, dtype=float)
