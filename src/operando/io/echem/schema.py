"""The one normalised electrochemistry Dataset every cycler reader returns.

Each format module (``biologic`` for ``.mpt``, ``biologic_mpr``, ``neware``,
``csv_table``) turns one file into an :class:`EchemRecord`: the file's rows already
mapped onto the standard variables in SI units, plus the file's start time and its
other columns. :func:`build_echem_dataset` checks the records, stitches several files
of one run on UTC and builds the Dataset, so names, units, attributes, cycle offsets
and the ``time_utc`` encoding live here only. The Dataset holds what the files hold;
:func:`operando.echem.segments.add_segments` derives the segment labels and the charge
continued across files from it.

The Dataset (dimension ``echem_time``):

========================  ==============================================================
``time_s`` (coord)        s on the potentiostat clock, since the first file's start
``time_utc`` (coord)      UTC ``datetime64[ns]``; NaT (with ``attrs['note']``) when the
                          source gives no absolute start (a CSV read without
                          ``start_time``): never guessed
``voltage_V``             V (working electrode / cell)
``current_A``             A, positive = oxidation = charge
``charge_C``              C as each file records it (from that file's own start); NaN in
                          the rows of a file that records none
``step``, ``cycle``       int64; 0 with ``attrs['source']`` saying so when the file has none;
                          ``cycle`` offset per file so that no number repeats
``file_index``            index into ``attrs['source_files']``
``trigger``               int8 0/1, only when a file records external trigger events
``open_circuit``          int8 0/1, only when a file flags open-circuit rows (EC-Lab mode 3,
                          Neware Rest/OCV/Pause)
others                    every other column of the files (sanitised names)
========================  ==============================================================
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from datetime import timezone as dt_timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import xarray as xr

from operando.cf import CHARGE_NOT_RECORDED
from operando.io.errors import InputFileError
from operando.io.timestamps import localise_to_utc, zoneinfo_or_raise

__all__ = [
    "CONFIG_START_SOURCE",
    "DIM",
    "STANDARD_ATTRS",
    "EchemFormatError",
    "EchemRecord",
    "ExtraColumn",
    "build_echem_dataset",
    "datetime64_utc",
    "localise_to_utc",
    "sanitise_name",
]

DIM = "echem_time"
#: ``start_time_source`` of a start given by the config (``echem.start_time``).
CONFIG_START_SOURCE = "config echem.start_time"


class EchemFormatError(InputFileError):
    """An electrochemistry file does not have the layout or content expected."""


STANDARD_ATTRS: dict[str, dict[str, str]] = {
    "time_s": {"units": "s", "long_name": "time since the first file's acquisition start "
               "(potentiostat clock)"},
    "time_utc": {"long_name": "absolute time (UTC)"},
    "voltage_V": {"units": "V", "long_name": "working electrode potential"},
    "current_A": {"units": "A", "long_name": "current (positive = oxidation = charge)"},
    "charge_C": {"units": "C", "long_name": "charge passed since the first acquisition start"},
    "step": {"units": "1", "long_name": "program step index within its file (EC-Lab Ns, "
             "Neware Step_Index)"},
    "cycle": {"units": "1", "long_name": "cycle number (first cycle = 0)"},
    "file_index": {"units": "1", "long_name": "index into attrs['source_files']"},
    "trigger": {"units": "1", "long_name": "1 where the cycler recorded an external trigger "
                "event"},
    "open_circuit": {"units": "1", "long_name": "1 where the cycler flags the row as open "
                     "circuit (EC-Lab mode 3, Neware Rest/OCV/Pause)"},
}
#: names the extra columns never take (``segment`` is added by the echem science)
_RESERVED = {"time_s", "time_utc", DIM, "segment", *STANDARD_ATTRS}


# ---------------------------------------------------------------------------------------
# small pure conversions


def datetime64_utc(start_utc: datetime, time_s: np.ndarray) -> np.ndarray:
    """UTC ``datetime64[ns]`` of ``start_utc + time_s`` (time_s in s).

    ``start_utc`` may be aware in any zone (converted to UTC) or naive (taken as UTC).
    """
    if start_utc.tzinfo is not None:
        start_utc = start_utc.astimezone(dt_timezone.utc).replace(tzinfo=None)
    start = np.datetime64(start_utc, "ns")
    return start + np.round(np.asarray(time_s, dtype=float) * 1e9).astype("timedelta64[ns]")


def sanitise_name(column: str) -> str:
    """A variable name from a column name: ``Capacitance charge/µF`` ->
    ``Capacitance_charge_uF``, ``Efficiency/%`` -> ``Efficiency_percent``."""
    s = column.replace("µ", "u").replace("°", "deg").replace("%", "percent")
    s = re.sub(r"[^0-9A-Za-z]+", "_", s).strip("_")
    if not s:
        s = "column"
    if s[0].isdigit():
        s = "c_" + s
    return s


# ---------------------------------------------------------------------------------------
# one file, standardised


@dataclass(frozen=True)
class ExtraColumn:
    """A non-standard column carried into the Dataset.

    ``values``: one per row (float, int or str). ``attrs``: at least ``units`` and
    ``long_name`` (the original column name), plus where it came from. ``name``: the
    variable name; ``None`` = sanitised from the column name.
    """

    values: np.ndarray
    attrs: dict[str, str]
    name: str | None = None


@dataclass(frozen=True)
class EchemRecord:
    """One cycler file mapped onto the standard variables (SI units), before stitching.

    ``time_s`` is s since the file's own start on the cycler clock. The start is
    ``start_local`` (naive wall time of the cycler PC, localised with the reader's
    ``timezone``) or ``start_utc`` (aware, when the source stores absolute time); both
    ``None`` only when the file gives no absolute time at all (then ``time_utc`` is NaT
    and ``time_utc_note`` says why). ``start_source`` says where the start came from (e.g.
    ``LOG module``, ``config echem.start_time``, ``cell.mpl (line 14)``), ``start_files``
    the files other than ``path`` read for it (inputs of the product), ``start_notes``
    what the reader noticed about it (a start not from the file, a disagreement).
    ``charge_C`` ``None`` = integrate ``current_A``.
    ``open_circuit``: rows that are rest whatever the current reads (EC-Lab mode 3,
    Neware Rest). ``trigger``: rows where an external trigger was recorded, ``None`` when
    the file has no such record. ``sources`` says, per standard variable, which column
    (and factor) it came from. ``first_data_line``: 1-based line of the first data row
    in a text file (for error messages), ``None`` for binary files.
    """

    path: Path
    format: str
    time_s: np.ndarray
    voltage_V: np.ndarray
    current_A: np.ndarray
    charge_C: np.ndarray | None
    step: np.ndarray | None
    cycle: np.ndarray | None
    open_circuit: np.ndarray | None
    sources: dict[str, str]
    extras: dict[str, ExtraColumn] = field(default_factory=dict)
    start_local: datetime | None = None
    start_utc: datetime | None = None
    technique: str = ""
    trigger: np.ndarray | None = None
    first_data_line: int | None = None
    per_file_attrs: dict[str, Any] = field(default_factory=dict)
    time_utc_note: str = ""
    start_source: str = ""
    start_files: tuple[Path, ...] = ()
    start_notes: tuple[str, ...] = ()

    def row_text(self, k: int) -> str:
        """``data row k+1 (line L)`` for messages (0-based ``k``)."""
        if self.first_data_line is None:
            return f"record {k + 1}"
        return f"data row {k + 1} (line {self.first_data_line + k})"


def _check_record(r: EchemRecord) -> None:
    n = r.time_s.shape[0] if r.time_s.ndim == 1 else -1
    if n == 0:
        raise EchemFormatError(f"{r.path}: no data rows (expected at least one record after "
                               "the header): empty or header-only file")
    arrays = {"time_s": r.time_s, "voltage_V": r.voltage_V, "current_A": r.current_A,
              "charge_C": r.charge_C, "step": r.step, "cycle": r.cycle,
              "open_circuit": r.open_circuit, "trigger": r.trigger}
    for name, a in arrays.items():
        if a is not None and a.shape != (n,):
            raise EchemFormatError(f"{r.path}: {name} has shape {a.shape}, expected ({n},)")
    t = np.asarray(r.time_s, dtype=float)
    bad = np.flatnonzero(~np.isfinite(t))
    if bad.size:
        k = int(bad[0])
        raise EchemFormatError(f"{r.path}: time is not a finite number at {r.row_text(k)} "
                               f"(found {t[k]!r})")
    back = np.flatnonzero(np.diff(t) < 0)
    if back.size:
        k = int(back[0]) + 1
        raise EchemFormatError(
            f"{r.path}: non-monotonic time at {r.row_text(k)}: {t[k]!r} s follows "
            f"{t[k - 1]!r} s ({r.sources.get('time_s', 'time')}); expected non-decreasing time"
        )


def _extra_variable_names(keys: Sequence[str], named: Mapping[str, str | None]) -> dict[str, str]:
    out: dict[str, str] = {}
    taken = set(_RESERVED)
    for key in keys:
        base = named.get(key) or sanitise_name(key)
        name, k = base, 2
        while name in taken:
            name, k = f"{base}_{k}", k + 1
        taken.add(name)
        out[key] = name
    return out


def _concat_extra(pieces: list[np.ndarray | None], sizes: list[int]) -> np.ndarray:
    present = [p for p in pieces if p is not None]
    kinds = {p.dtype.kind for p in present}
    if kinds <= {"U", "S", "O"}:
        return np.concatenate([np.asarray(p, dtype=str) if p is not None else
                               np.full(n, "", dtype=str) for p, n in zip(pieces, sizes,
                                                                         strict=True)])
    if all(p is not None for p in pieces) and kinds <= {"i", "u", "b"}:
        return np.concatenate([np.asarray(p, dtype=np.int64) for p in present])
    return np.concatenate([np.asarray(p, dtype=float) if p is not None else
                           np.full(n, np.nan) for p, n in zip(pieces, sizes, strict=True)])


def _record_start_utc(r: EchemRecord, tz: ZoneInfo, notes: list[str]) -> datetime | None:
    if r.start_utc is not None:
        if r.start_utc.tzinfo is None:
            raise ValueError(f"{r.path}: start_utc must be timezone-aware")
        return r.start_utc.astimezone(dt_timezone.utc)
    if r.start_local is None:
        return None
    try:
        utc, note = localise_to_utc(r.start_local, tz)
    except ValueError as exc:
        raise EchemFormatError(f"{r.path}: acquisition start: {exc}") from None
    if note:
        notes.append(f"{r.path.name}: {note}")
        warnings.warn(f"{r.path}: {note}", stacklevel=3)
    return utc


def _ordered_starts(
    records: Sequence[EchemRecord], tz: ZoneInfo, notes: list[str]
) -> tuple[list[EchemRecord], list[datetime | None]]:
    """The records in time order with their UTC starts (given order when none has one)."""
    starts = [_record_start_utc(r, tz, notes) for r in records]
    known = [s is not None for s in starts]
    if any(known) and not all(known):
        missing = [str(r.path) for r, k in zip(records, known, strict=True) if not k]
        raise EchemFormatError(
            f"cannot stitch files with and without an absolute start time: {missing} have "
            "none (give the CSV start_time, or read them separately)")
    if not all(known) and len(records) > 1:
        raise EchemFormatError(
            f"{records[1].path}: several files of one run are stitched on their absolute start "
            "times, but these files have none")
    order = sorted(range(len(records)), key=lambda k: starts[k]) if all(known) else [0]
    return [records[k] for k in order], [starts[k] for k in order]


def _stitched_time_and_cycle(
    records: Sequence[EchemRecord], offsets: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """time_s (s, first file's clock) and cycle (offset per file so none repeats)."""
    time_pieces: list[np.ndarray] = []
    cycle_pieces: list[np.ndarray] = []
    cycle_offset = 0
    prev_end: float | None = None
    for k, (r, off) in enumerate(zip(records, offsets, strict=True)):
        t = np.asarray(r.time_s, dtype=float) + off
        if prev_end is not None and t[0] < prev_end:
            raise EchemFormatError(
                f"{r.path}: starts at {t[0]:.3f} s on the run clock, before the previous file "
                f"{records[k - 1].path} ends ({prev_end:.3f} s): not a continuation"
            )
        prev_end = float(t[-1])
        time_pieces.append(t)
        cyc = (np.zeros(t.size, dtype=np.int64) if r.cycle is None
               else np.asarray(r.cycle, dtype=np.int64))
        cycle_pieces.append(cyc + cycle_offset)
        cycle_offset += int(cyc.max()) + 1
    return np.concatenate(time_pieces), np.concatenate(cycle_pieces)


def _source_text(records: Sequence[EchemRecord], key: str, default: str) -> str:
    """Where ``key`` came from: one text when every file agrees, else ``name: text; ...``."""
    texts = [r.sources.get(key, default) for r in records]
    if len(set(texts)) == 1:
        return texts[0]
    return "; ".join(f"{r.path.name}: {s}" for r, s in zip(records, texts, strict=True))


def _start_source_text(records: Sequence[EchemRecord]) -> str:
    """Where the starts came from: one text when every file agrees, else ``name: text; ...``."""
    texts = [r.start_source or "none" for r in records]
    if len(set(texts)) == 1:
        return texts[0]
    return "; ".join(f"{r.path.name}: {s}" for r, s in zip(records, texts, strict=True))


def _per_row(records: Sequence[EchemRecord], name: str, dtype: Any, fill: Any) -> np.ndarray:
    """``name`` of every record concatenated; ``fill`` in the rows of a record without it."""
    return np.concatenate([np.full(r.time_s.size, fill, dtype=dtype) if getattr(r, name) is None
                           else np.asarray(getattr(r, name)).astype(dtype) for r in records])


def _standard_variables(
    records: Sequence[EchemRecord], cycle: np.ndarray
) -> dict[str, tuple[np.ndarray, dict[str, Any]]]:
    """The standard variables (values, attrs) of the stitched records, in product order."""

    def source(key: str, default: str) -> str:
        return _source_text(records, key, default)

    data_vars: dict[str, tuple[np.ndarray, dict[str, Any]]] = {
        "voltage_V": (_per_row(records, "voltage_V", float, np.nan),
                      {"source": source("voltage_V", "")}),
        "current_A": (_per_row(records, "current_A", float, np.nan),
                      {"source": source("current_A", "")}),
        "charge_C": (_per_row(records, "charge_C", float, np.nan),
                     {"source": source("charge_C", CHARGE_NOT_RECORDED)}),
        "step": (_per_row(records, "step", np.int64, 0),
                 {"source": source("step", "absent from the file: 0")}),
        "cycle": (cycle, {"source": source("cycle", "absent from the file: 0")}),
        "file_index": (np.concatenate([np.full(r.time_s.size, k, dtype=np.int64)
                                       for k, r in enumerate(records)]), {}),
    }
    if len(records) > 1:
        data_vars["cycle"][1]["stitching"] = ("offset per file so cycle numbers do not repeat "
                                              "across files")
    if any(r.trigger is not None for r in records):
        trig = np.concatenate([np.zeros(r.time_s.size, np.int8) if r.trigger is None
                               else np.asarray(r.trigger, dtype=bool).astype(np.int8)
                               for r in records])
        data_vars["trigger"] = (trig, {"source": source("trigger", "no trigger record: 0")})
    if any(r.open_circuit is not None for r in records):
        data_vars["open_circuit"] = (_per_row(records, "open_circuit", np.int8, 0), {})
    return data_vars


def _extra_variables(
    records: Sequence[EchemRecord]
) -> dict[str, tuple[np.ndarray, dict[str, Any]]]:
    """Extra columns under sanitised names; NaN / "" in the rows of a file that lacks one."""
    keys: list[str] = []
    named: dict[str, str | None] = {}
    for r in records:
        for key, col in r.extras.items():
            if key not in named:
                keys.append(key)
                named[key] = col.name
    names = _extra_variable_names(keys, named)
    sizes = [r.time_s.size for r in records]
    out: dict[str, tuple[np.ndarray, dict[str, Any]]] = {}
    for key in keys:
        pieces = [r.extras[key].values if key in r.extras else None for r in records]
        attrs = dict(next(r.extras[key].attrs for r in records if key in r.extras))
        out[names[key]] = (_concat_extra(pieces, sizes), attrs)
    return out


def _time_coords(
    records: Sequence[EchemRecord], time_s: np.ndarray, t0: datetime | None, source: str
) -> dict[str, xr.Variable]:
    """``time_s`` and ``time_utc`` (NaT with a note when no file gives an absolute start)."""
    time_attrs = dict(STANDARD_ATTRS["time_s"])
    time_attrs["source"] = source
    if t0 is None:
        time_attrs["long_name"] = "elapsed time of the file's time column (cycler clock)"
        time_utc_values = np.full(time_s.size, np.datetime64("NaT"), dtype="datetime64[ns]")
        note = "; ".join(dict.fromkeys(r.time_utc_note for r in records if r.time_utc_note))
        utc_attrs = {**STANDARD_ATTRS["time_utc"],
                     "note": note or "unknown: the file gives no absolute start time"}
    else:
        time_utc_values = datetime64_utc(t0, time_s)
        utc_attrs = dict(STANDARD_ATTRS["time_utc"])
    time_utc = xr.Variable(DIM, time_utc_values, attrs=utc_attrs)
    # CF units of a datetime live in the encoding (xarray writes them on to_netcdf)
    time_utc.encoding.update({"units": "nanoseconds since 1970-01-01T00:00:00Z",
                              "calendar": "proleptic_gregorian", "dtype": "int64"})
    return {"time_s": xr.Variable(DIM, time_s, attrs=time_attrs), "time_utc": time_utc}


def _dataset_attrs(
    records: Sequence[EchemRecord], starts: Sequence[datetime | None], offsets: Sequence[float],
    tz: ZoneInfo, timezone: str, notes: list[str],
) -> dict[str, Any]:
    """Run attributes: source files, formats, acquisition starts, per-file attributes."""
    attrs: dict[str, Any] = {
        "source_files": [str(r.path) for r in records],
        "formats": [r.format for r in records],
        "technique": "; ".join(dict.fromkeys(r.technique for r in records)),
    }
    t0 = starts[0]
    if t0 is not None:
        local_start = t0.astimezone(tz)
        attrs.update({
            "acquisition_start": local_start.isoformat(timespec="milliseconds"),
            "acquisition_start_utc": t0.isoformat(timespec="milliseconds"),
            "acquisition_starts": [s.astimezone(tz).isoformat(timespec="milliseconds")
                                   for s in starts if s is not None],
        })
    attrs.update({
        "file_start_offsets_s": np.asarray(offsets, dtype=float),
        "timezone": timezone,
        "clock": "potentiostat",
    })
    if any(r.start_source for r in records):
        attrs["start_time_source"] = _start_source_text(records)
    files = [str(p) for r in records for p in r.start_files]
    if files:
        attrs["start_time_files"] = files
    start_notes = [n for r in records for n in r.start_notes]
    if start_notes:
        attrs["start_time_notes"] = start_notes
    for key in dict.fromkeys(k for r in records for k in r.per_file_attrs):
        if all(key in r.per_file_attrs for r in records):
            attrs[key] = [r.per_file_attrs[key] for r in records]
    if notes:
        attrs["notes"] = notes
    return attrs


def build_echem_dataset(records: Sequence[EchemRecord], *, timezone: str) -> xr.Dataset:
    """Stitch the records of one run and build the normalised Dataset (module docstring).

    Each record is checked (at least one row; time finite and non-decreasing, else an
    :class:`EchemFormatError` naming the file and row). Records with a start are ordered
    by it and placed on the first one's clock by their UTC difference (so a
    daylight-saving change between files is handled); a record must not start before the
    previous one ends. Records without any start keep the given order, and then there may
    be only one. ``cycle`` is offset so that no cycle number repeats across files;
    ``charge_C`` is each file's own record (NaN in a file that records none) and
    ``open_circuit`` the files' open-circuit flags: the segment labels and the charge
    continued across files are derived by :func:`operando.echem.segments.add_segments`.
    ``timezone`` (IANA name) localises naive starts and is kept in ``attrs['timezone']``.
    """
    tz = zoneinfo_or_raise(timezone)
    if not records:
        raise ValueError("no electrochemistry file given")
    for r in records:
        _check_record(r)
    notes: list[str] = []
    records, starts = _ordered_starts(records, tz, notes)
    t0 = starts[0]
    offsets = [0.0 if t0 is None or s is None else (s - t0).total_seconds() for s in starts]
    time_s, cycle = _stitched_time_and_cycle(records, offsets)
    data_vars = {**_standard_variables(records, cycle), **_extra_variables(records)}
    variables = {
        name: xr.Variable(DIM, values, attrs={**STANDARD_ATTRS.get(name, {}),
                                              **{k: v for k, v in attrs.items() if v != ""}})
        for name, (values, attrs) in data_vars.items()
    }
    ds = xr.Dataset(variables, coords=_time_coords(records, time_s, t0,
                                                   _source_text(records, "time_s", "")))
    ds.attrs.update(_dataset_attrs(records, starts, offsets, tz, timezone, notes))
    return ds
