"""BioLogic EC-Lab ASCII exports (``.mpt``): writing (simulator) and reading (reduction).

Layout of an EC-Lab text export, as checked on real files (EC-Lab v11.12 - v11.50)::

    EC-Lab ASCII FILE
    Nb header lines : 82                      <- counts EVERY header line, incl. the column line
    <blank>
    Galvanostatic Cycling with Potential Limitation    <- technique name
    <blank>
    Run on channel : 6 (SN 6042)
    User :
    ...
    Acquisition started on : 07/26/2022 22:38:30.190  <- potentiostat PC local wall time
    ...                                                   (month/day/year)
    mode<TAB>ox/red<TAB>...<TAB>cycle number<TAB>     <- line N (1-based), trailing tab
    3<TAB>1<TAB>...                                   <- data rows, no trailing tab

Numbers are ``%.15E`` or ``%.7E`` with a three-digit exponent (``1.5E+001``), written
with the Windows locale's decimal separator (``3,4912014E+000`` on European PCs);
flag columns (``mode``, ``ox/red``, ``Ns``, ...) are plain integers; ``cycle number`` is a
float. Files are latin-1 (``µF``, ``cm²``), CRLF, without a newline after the last row.

Units: ``time/s`` in s, ``Ewe/V`` in V, ``I/mA`` in mA, ``(Q-Qo)/mA.h`` in mA·h
(1 mA·h = 3.6 C). The reader returns SI-ish names with the unit in the name
(``time_s``, ``voltage_V``, ``current_A``, ``charge_C``).
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import xarray as xr

from operando.constants import MAH_TO_C
from operando.echem.segments import (
    cumulative_trapezoid_C,
    rest_threshold_from_current,
    segments_from_current,
)
from operando.io.atomic import write_bytes_atomic
from operando.io.errors import InputFileError
from operando.io.text import read_text_lines
from operando.io.timestamps import require_naive_local, zoneinfo_or_raise

__all__ = [
    "ACQUISITION_START_FORMATS",
    "EchemFormatError",
    "MptFile",
    "parse_acquisition_start",
    "read_mpt",
    "read_mpt_file",
    "write_mpt",
]

MAGIC_LINES = ("EC-Lab ASCII FILE", "BT-Lab ASCII FILE")
GCPL = "Galvanostatic Cycling with Potential Limitation"

# ``Acquisition started on`` formats, tried in order. The real files seen
# (EC-Lab v11.12 - v11.50) all use the first; older versions drop the
# milliseconds (or the seconds); ISO-8601 is accepted too. Nothing else is guessed:
# a dotted or dashed date could be day-first or month-first depending on the PC's
# locale, so an unknown layout is an error, never a silent day/month swap.
ACQUISITION_START_FORMATS: tuple[str, ...] = (
    "%m/%d/%Y %H:%M:%S.%f",
    "%m/%d/%Y %H:%M:%S",
    "%m/%d/%Y %H:%M",
    "%Y-%m-%d %H:%M:%S.%f",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M:%S.%f",
    "%Y-%m-%dT%H:%M:%S",
)

# Columns EC-Lab writes as plain integers.
INTEGER_COLUMNS = frozenset(
    {"mode", "ox/red", "error", "control changes", "Ns changes", "counter inc.", "Ns",
     "I Range", "half cycle", "Ns'", "z cycle"}
)
# Columns EC-Lab writes with 8 significant digits (``%.7E``); the rest get ``%.15E``.
SHORT_FLOAT_COLUMNS = frozenset(
    {"Ewe/V", "Ece/V", "Ecell/V", "I/mA", "control/V", "control/mA", "control/V/mA", "P/W",
     "Efficiency/%", "R/Ohm", "<Ewe>/V", "<Ece>/V", "Temperature/°C"}
)

TIME_COLUMNS = ("time/s",)
VOLTAGE_COLUMNS = ("Ewe/V", "Ecell/V", "<Ewe>/V", "<Ewe/V>")
CURRENT_COLUMNS = ("I/mA", "<I>/mA")
# column -> factor to coulomb
CHARGE_COLUMNS = {"(Q-Qo)/mA.h": MAH_TO_C, "(Q-Qo)/C": 1.0, "Q-Qo/mA.h": MAH_TO_C}
STEP_COLUMN = "Ns"
CYCLE_COLUMN = "cycle number"
MODE_COLUMN = "mode"
MODE_CC, MODE_CV, MODE_REST = 1, 2, 3


class EchemFormatError(InputFileError):
    """An electrochemistry file does not have the layout or content expected."""


# ---------------------------------------------------------------------------------------
# small pure conversions


def format_eclab_float(value: float, digits: int = 15, decimal_separator: str = ".") -> str:
    """Format like EC-Lab: ``%.{digits}E`` with a signed three-digit exponent."""
    v = float(value)
    if not np.isfinite(v):
        return "NaN" if np.isnan(v) else ("Inf" if v > 0 else "-Inf")
    mantissa, exponent = f"{v:.{digits}E}".split("E")
    text = f"{mantissa}E{exponent[0]}{int(exponent[1:]):03d}"
    return text.replace(".", decimal_separator) if decimal_separator != "." else text


def format_acquisition_start(start: datetime) -> str:
    """``MM/DD/YYYY HH:MM:SS.fff`` (milliseconds rounded), as EC-Lab writes it.

    ``start`` is naive potentiostat-local wall time (an aware datetime is refused).
    """
    require_naive_local(start, "acquisition_start")
    start_ms = start.replace(microsecond=0) + timedelta(
        milliseconds=round(start.microsecond / 1000.0)
    )
    return start_ms.strftime("%m/%d/%Y %H:%M:%S.") + f"{start_ms.microsecond // 1000:03d}"


def parse_acquisition_start(text: str) -> datetime:
    """Parse the value of ``Acquisition started on :`` into a naive local datetime.

    Raises ``ValueError`` listing the formats tried when none matches.
    """
    s = " ".join(text.strip().split())
    for fmt in ACQUISITION_START_FORMATS:
        try:
            return datetime.strptime(s, fmt)
        except ValueError:
            continue
    raise ValueError(
        f"unrecognised date {text.strip()!r}; expected one of {list(ACQUISITION_START_FORMATS)}"
    )


def localise_to_utc(local: datetime, tz: ZoneInfo) -> tuple[datetime, str | None]:
    """Interpret a naive wall-clock time in ``tz``; return (aware UTC datetime, note).

    A wall time that does not exist in the zone (spring-forward gap) raises ``ValueError``;
    an ambiguous one (autumn fold) takes the first occurrence and returns a note.
    """
    tz_name = tz.key
    aware = local.replace(tzinfo=tz, fold=0)
    utc = aware.astimezone(dt_timezone.utc)
    if utc.astimezone(tz).replace(tzinfo=None) != local:
        raise ValueError(
            f"local time {local.isoformat()} does not exist in {tz_name} "
            "(skipped by a daylight-saving change): wrong timezone for this potentiostat?"
        )
    other = local.replace(tzinfo=tz, fold=1).astimezone(dt_timezone.utc)
    note = None
    if other != utc:
        note = (f"local time {local.isoformat()} is ambiguous in {tz_name} (daylight-saving "
                f"fold); took the first occurrence {utc.isoformat()}")
    return utc, note


def sanitise_name(column: str) -> str:
    """A variable name from an EC-Lab column name: ``Capacitance charge/µF`` ->
    ``Capacitance_charge_uF``, ``Efficiency/%`` -> ``Efficiency_percent``."""
    s = column.replace("µ", "u").replace("°", "deg").replace("%", "percent")
    s = re.sub(r"[^0-9A-Za-z]+", "_", s).strip("_")
    if not s:
        s = "column"
    if s[0].isdigit():
        s = "c_" + s
    return s


def column_units(column: str) -> str:
    """CF-ish ``units`` of an EC-Lab column from the text after its first ``/`` ("1" if none)."""
    if "/" not in column or column.startswith("ox/red"):
        return "1"
    unit = column.split("/", 1)[1].strip()
    unit = {"%": "percent", "Ohm": "ohm", "°C": "degC"}.get(unit, unit)
    return unit.replace("µ", "u")


def datetime64_utc(start_utc: datetime, time_s: np.ndarray) -> np.ndarray:
    """UTC ``datetime64[ns]`` of ``start_utc + time_s`` (time_s in s).

    ``start_utc`` may be aware in any zone (converted to UTC) or naive (taken as UTC).
    """
    if start_utc.tzinfo is not None:
        start_utc = start_utc.astimezone(dt_timezone.utc).replace(tzinfo=None)
    start = np.datetime64(start_utc, "ns")
    return start + np.round(np.asarray(time_s, dtype=float) * 1e9).astype("timedelta64[ns]")


# ---------------------------------------------------------------------------------------
# writing


def _format_column(name: str, values: np.ndarray, decimal_separator: str) -> list[str]:
    if name in INTEGER_COLUMNS:
        ints = np.asarray(values)
        if ints.dtype.kind == "f":
            if not np.all(np.isfinite(ints)) or np.any(ints != np.round(ints)):
                raise ValueError(f"column {name!r} must hold integers (EC-Lab writes it as such)")
        return [str(int(v)) for v in ints]
    digits = 7 if name in SHORT_FLOAT_COLUMNS else 15
    return [format_eclab_float(v, digits, decimal_separator) for v in np.asarray(values, float)]


def write_mpt(
    path: str | os.PathLike[str],
    columns: Mapping[str, np.ndarray],
    *,
    acquisition_start: datetime,
    technique: str = GCPL,
    settings_lines: Sequence[str] = (),
    channel: int = 1,
    channel_serial: str = "0001",
    device: str = "VMP3 (SN 0001)",
    comments: str = "",
    decimal_separator: str = ".",
    newline: str = "\r\n",
) -> Path:
    """Write ``columns`` as a faithful EC-Lab ASCII export (atomically).

    ``columns`` maps EC-Lab column names (with their units, e.g. ``time/s``, ``Ewe/V``,
    ``I/mA``, ``(Q-Qo)/mA.h``) to equal-length arrays, written in mapping order.
    ``acquisition_start`` is the naive potentiostat-local wall time of ``time/s = 0``
    (an aware datetime is refused rather than silently shifted).
    ``channel`` and ``channel_serial`` make ``Run on channel : 1 (SN 0001)``; ``device``
    the ``Device : VMP3 (SN 0001)`` line (EC-Lab writes two different serials there).
    ``settings_lines`` are technique-parameter lines placed after ``Cycle Definition``.
    ``decimal_separator=","`` writes a European-locale export. The file is latin-1,
    ``newline``-terminated lines (CRLF as EC-Lab), no newline after the last row.
    """
    require_naive_local(acquisition_start, f"{path}: acquisition_start")
    if not columns:
        raise ValueError("no columns to write")
    names = list(columns)
    for name in names:
        if "\t" in name or "\n" in name or "\r" in name:
            raise ValueError(f"column name {name!r} contains a tab or newline")
    n_rows = {np.asarray(v).shape[0] for v in columns.values()}
    if len(n_rows) != 1 or any(np.asarray(v).ndim != 1 for v in columns.values()):
        raise ValueError(f"columns must be 1-D and of equal length, got lengths {sorted(n_rows)}")
    if decimal_separator not in (".", ","):
        raise ValueError("decimal_separator must be '.' or ','")
    path = Path(path)
    mpr_name = path.with_suffix(".mpr").name

    dec = decimal_separator
    before_columns = [
        "EC-Lab ASCII FILE",
        None,  # Nb header lines, filled below
        "",
        technique,
        "",
        f"Run on channel : {channel} (SN {channel_serial})",
        "User : ",
        "CE vs. WE compliance from -10 V to 10 V",
        "Electrode connection : standard",
        "Potential control : Ewe",
        f"Ewe ctrl range : min = 0{dec}00 V, max = 5{dec}00 V",
        "Safety Limits :",
        "\tDo not start on E overload",
        f"Acquisition started on : {format_acquisition_start(acquisition_start)}",
        "Loaded Setting File : NONE",
        "Saved on :",
        f"\tFile : {mpr_name}",
        "\tDirectory : C:\\Users\\operando\\Documents\\EC-Lab\\",
        "\tHost : 192.168.0.10",
        f"Device : {device}",
        "Address : USB",
        "EC-Lab for windows v11.43 (software)",
        "Internet server v11.40 (firmware)",
        "Command interpretor v11.40 (firmware)",
        "Electrode material : ",
        "Initial state : ",
        "Electrolyte : ",
        f"Comments : {comments}",
        "Cycle Definition : Charge/Discharge alternance",
        *settings_lines,
        "",
    ]
    column_line = "".join(f"{n}\t" for n in names)  # EC-Lab ends it with a tab
    n_header = len(before_columns) + 1
    before_columns[1] = "Nb header lines : " + f"{n_header}".ljust(28)

    cells = [_format_column(n, np.asarray(columns[n]), decimal_separator) for n in names]
    rows = ["\t".join(r) for r in zip(*cells, strict=True)]
    lines = [str(x) for x in before_columns] + [column_line] + rows
    for k, line in enumerate(lines[: n_header - 1]):
        if "\n" in line or "\r" in line:
            raise ValueError(f"header line {k + 1} contains a newline: {line!r}")
    text = newline.join(lines)
    try:
        raw = text.encode("latin-1")
    except UnicodeEncodeError as exc:
        bad = exc.object[max(exc.start - 20, 0):exc.end + 20]
        raise ValueError(
            f"{path}: EC-Lab exports are latin-1, but {exc.object[exc.start:exc.end]!r} in "
            f"...{bad!r}... has no latin-1 code; use latin-1 characters only"
        ) from None
    return write_bytes_atomic(path, raw)


# ---------------------------------------------------------------------------------------
# reading


@dataclass(frozen=True)
class MptFile:
    """One parsed ``.mpt`` file: header facts and the raw numeric columns (file units)."""

    path: Path
    n_header_lines: int
    technique: str
    acquisition_start: datetime  # naive, potentiostat-local wall time
    header_lines: tuple[str, ...]
    columns: dict[str, np.ndarray]  # EC-Lab name -> float64 values, in file order
    decimal_comma: bool


def _header_value(lines: Sequence[str], key: str) -> str | None:
    prefix = key.lower()
    for line in lines:
        stripped = line.strip()
        if stripped.lower().startswith(prefix):
            rest = stripped[len(key):].lstrip()
            if rest.startswith(":"):
                return rest[1:].strip()
    return None


def _parse_n_header(path: Path, lines: Sequence[str]) -> int:
    value = _header_value(lines[1:3], "Nb header lines")
    if value is None:
        found = lines[1] if len(lines) > 1 else "<end of file>"
        raise EchemFormatError(
            f"{path}: expected 'Nb header lines : N' on line 2, found {found!r}"
        )
    try:
        n = int(value.split()[0])
    except (ValueError, IndexError):
        raise EchemFormatError(
            f"{path}: expected an integer after 'Nb header lines :' on line 2, found {value!r}"
        ) from None
    if n < 3 or n > len(lines):
        raise EchemFormatError(
            f"{path}: 'Nb header lines : {n}' but the file has {len(lines)} lines"
        )
    return n


def _parse_cells(path: Path, names: list[str], rows: list[str], first_line: int,
                 decimal_comma: bool) -> dict[str, np.ndarray]:
    ncol = len(names)
    table: list[list[str]] = []
    for k, row in enumerate(rows):
        cells = row.split("\t")
        while len(cells) > ncol and cells[-1].strip() == "":
            cells.pop()
        if len(cells) != ncol:
            raise EchemFormatError(
                f"{path}: line {first_line + k} (data row {k + 1}): expected {ncol} "
                f"tab-separated values (one per column), found {len(cells)}"
            )
        table.append(cells)
    if not table:
        return {n: np.zeros(0) for n in names}
    out: dict[str, np.ndarray] = {}
    for j, name in enumerate(names):
        col = [r[j] for r in table]
        if decimal_comma:
            col = [c.replace(",", ".") for c in col]
        try:
            out[name] = np.asarray(col, dtype=float)
        except ValueError:
            for k, c in enumerate(col):
                try:
                    float(c)
                except ValueError:
                    raise EchemFormatError(
                        f"{path}: unparsable number {table[k][j]!r} at line {first_line + k} "
                        f"(data row {k + 1}), column {j + 1} {name!r}; expected a decimal "
                        "number such as 3.4912014E+000"
                    ) from None
            raise
    return out


def read_mpt_file(path: str | os.PathLike[str]) -> MptFile:
    """Parse one EC-Lab ASCII export into header facts and raw float columns (file units).

    Raises :class:`EchemFormatError` naming the file for any layout problem.
    """
    path = Path(path)
    try:
        lines = read_text_lines(path)
    except FileNotFoundError:
        raise EchemFormatError(f"{path}: no such file (expected an EC-Lab .mpt export)") from None
    first = lines[0].strip() if lines else "<empty file>"
    if first not in MAGIC_LINES:
        raise EchemFormatError(
            f"{path}: not an EC-Lab ASCII export: expected first line 'EC-Lab ASCII FILE', "
            f"found {first[:80]!r} (export from EC-Lab with the header included)"
        )
    n_header = _parse_n_header(path, lines)
    header = lines[: n_header - 1]
    column_line = lines[n_header - 1]
    names = [c.strip() for c in column_line.rstrip("\r\n").split("\t")]
    while names and names[-1] == "":
        names.pop()
    if len(names) < 2 or "time/s" not in names:
        raise EchemFormatError(
            f"{path}: 'Nb header lines : {n_header}' should make line {n_header} the "
            f"tab-separated column names (with 'time/s'), found {column_line[:120]!r}"
        )
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise EchemFormatError(f"{path}: duplicate column names {dupes} on line {n_header}")

    start_text = _header_value(header, "Acquisition started on")
    if start_text is None:
        raise EchemFormatError(
            f"{path}: missing header line 'Acquisition started on : MM/DD/YYYY HH:MM:SS.fff' "
            f"in the {n_header} header lines (needed for absolute time)"
        )
    try:
        start = parse_acquisition_start(start_text)
    except ValueError as exc:
        raise EchemFormatError(f"{path}: 'Acquisition started on': {exc}") from None

    technique = lines[3].strip() if n_header > 4 else ""
    rows = lines[n_header:]
    while rows and rows[-1].strip() == "":
        rows.pop()
    data_text = "\n".join(rows)
    decimal_comma = "," in data_text
    columns = _parse_cells(path, names, rows, n_header + 1, decimal_comma)
    return MptFile(
        path=path, n_header_lines=n_header, technique=technique, acquisition_start=start,
        header_lines=tuple(header), columns=columns, decimal_comma=decimal_comma,
    )


def _first_present(columns: Mapping[str, np.ndarray], candidates: Sequence[str]) -> str | None:
    return next((c for c in candidates if c in columns), None)


def _missing_column(path: Path, what: str, candidates: Sequence[str],
                    present: Sequence[str]) -> EchemFormatError:
    return EchemFormatError(
        f"{path}: missing required column for {what}: expected one of {list(candidates)}; "
        f"columns present: {list(present)}"
    )


@dataclass(frozen=True)
class _Standard:
    """One file's data mapped onto the standard variables (SI units)."""

    time_s: np.ndarray
    voltage_V: np.ndarray
    current_A: np.ndarray
    charge_C: np.ndarray
    step: np.ndarray | None
    cycle: np.ndarray | None
    mode: np.ndarray | None
    sources: dict[str, str]
    extras: dict[str, np.ndarray]


def _standardise(f: MptFile) -> _Standard:
    cols = f.columns
    t_col = _first_present(cols, TIME_COLUMNS)
    if t_col is None:
        raise _missing_column(f.path, "time", TIME_COLUMNS, list(cols))
    v_col = _first_present(cols, VOLTAGE_COLUMNS)
    if v_col is None:
        raise _missing_column(f.path, "voltage", VOLTAGE_COLUMNS, list(cols))
    time_s = cols[t_col]
    used = {t_col, v_col}
    sources = {"time_s": t_col, "voltage_V": v_col}

    mode = cols.get(MODE_COLUMN)
    i_col = _first_present(cols, CURRENT_COLUMNS)
    if i_col is not None:
        current_A = cols[i_col] * 1e-3
        used.add(i_col)
        sources["current_A"] = f"{i_col} * 1e-3"
    elif "open circuit" in f.technique.lower() or (
        mode is not None and mode.size and np.all(mode == MODE_REST)
    ):
        current_A = np.zeros_like(time_s)
        sources["current_A"] = "no current column: open-circuit technique, set to 0"
    else:
        raise _missing_column(f.path, "current", CURRENT_COLUMNS, list(cols))

    q_col = _first_present(cols, list(CHARGE_COLUMNS))
    if q_col is not None:
        charge_C = cols[q_col] * CHARGE_COLUMNS[q_col]
        used.add(q_col)
        sources["charge_C"] = f"{q_col} * {CHARGE_COLUMNS[q_col]}"
    else:
        charge_C = cumulative_trapezoid_C(time_s, current_A)
        sources["charge_C"] = "integrated from current_A (trapezoid rule)"

    step = cycle = None
    if STEP_COLUMN in cols:
        step = np.round(cols[STEP_COLUMN]).astype(np.int64)
        used.add(STEP_COLUMN)
    if CYCLE_COLUMN in cols:
        cycle = np.round(cols[CYCLE_COLUMN]).astype(np.int64)
        used.add(CYCLE_COLUMN)
    extras = {n: v for n, v in cols.items() if n not in used}
    return _Standard(time_s, cols[v_col], current_A, charge_C, step, cycle, mode, sources,
                     extras)


def _extra_variable_names(names: Sequence[str], reserved: set[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    taken = set(reserved)
    for n in names:
        base = sanitise_name(n)
        name, k = base, 2
        while name in taken:
            name, k = f"{base}_{k}", k + 1
        taken.add(name)
        out[n] = name
    return out


STANDARD_ATTRS: dict[str, dict[str, str]] = {
    "time_s": {"units": "s", "long_name": "time since the first file's acquisition start "
               "(potentiostat clock)"},
    "time_utc": {"long_name": "absolute time (UTC)"},
    "voltage_V": {"units": "V", "long_name": "working electrode potential"},
    "current_A": {"units": "A", "long_name": "current (positive = oxidation = charge)"},
    "charge_C": {"units": "C", "long_name": "charge passed since the first acquisition start"},
    "step": {"units": "1", "long_name": "EC-Lab sequence index (Ns) within its file"},
    "cycle": {"units": "1", "long_name": "cycle number (EC-Lab numbering, from 0)"},
    "segment": {"units": "1", "long_name": "segment label (charge / discharge / rest)"},
    "file_index": {"units": "1", "long_name": "index into attrs['source_files']"},
}


def _as_paths(paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[Path]:
    if isinstance(paths, (str, os.PathLike)):
        return [Path(paths)]
    out = [Path(p) for p in paths]
    if not out:
        raise ValueError("read_mpt: no file given")
    return out


def read_mpt(
    paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    timezone: str,
    rest_threshold_A: float | None = None,
) -> xr.Dataset:
    """Read one EC-Lab ``.mpt`` export, or several files of one run, into a Dataset.

    Dimension ``echem_time``. Coordinates ``time_s`` (s on the potentiostat clock, since
    the FIRST file's ``Acquisition started on``) and ``time_utc`` (UTC datetime64[ns]: the
    header's local wall time localised in ``timezone``, an IANA name, then converted).
    Variables ``voltage_V`` (V), ``current_A`` (A), ``charge_C`` (C), ``segment``
    (charge / discharge / rest), ``step`` (EC-Lab ``Ns``) and ``cycle`` when the file has
    them, ``file_index``, and every other column as an extra variable (sanitised name,
    original in ``attrs['ec_lab_column']``).

    Several files are a continuation of one run: they are ordered by acquisition start and
    stitched on UTC (so a daylight-saving change between them is handled); ``charge_C``
    continues from the previous file's last value and ``cycle`` is offset so that no cycle
    number repeats across files. A row is rest when |I| <= ``rest_threshold_A`` (default
    1e-3 of the median non-zero |I| outside open circuit) or EC-Lab ``mode`` is 3.
    """
    tz_name = timezone
    tz = zoneinfo_or_raise(tz_name)
    files = [read_mpt_file(p) for p in _as_paths(paths)]
    starts: list[datetime] = []
    notes: list[str] = []
    for f in files:
        try:
            utc, note = localise_to_utc(f.acquisition_start, tz)
        except ValueError as exc:
            raise EchemFormatError(f"{f.path}: 'Acquisition started on': {exc}") from None
        starts.append(utc)
        if note:
            notes.append(f"{f.path.name}: {note}")
            warnings.warn(f"{f.path}: {note}", stacklevel=2)
    order = sorted(range(len(files)), key=lambda k: starts[k])
    files = [files[k] for k in order]
    starts = [starts[k] for k in order]
    std = [_standardise(f) for f in files]

    t0 = starts[0]
    offsets = [(s - t0).total_seconds() for s in starts]
    pieces: dict[str, list[np.ndarray]] = {k: [] for k in
                                            ("time_s", "voltage_V", "current_A", "charge_C",
                                             "step", "cycle", "mode", "file_index")}
    charge_offset = 0.0
    cycle_offset = 0
    has_step = all(s.step is not None for s in std)
    has_cycle = all(s.cycle is not None for s in std)
    has_mode = all(s.mode is not None for s in std)
    prev_end: float | None = None
    for k, (f, s, off) in enumerate(zip(files, std, offsets, strict=True)):
        t = s.time_s + off
        if prev_end is not None and t.size and t[0] < prev_end:
            raise EchemFormatError(
                f"{f.path}: starts at {t[0]:.3f} s on the run clock, before the previous file "
                f"{files[k - 1].path} ends ({prev_end:.3f} s): not a continuation"
            )
        if t.size:
            prev_end = float(t[-1])
        pieces["time_s"].append(t)
        pieces["voltage_V"].append(s.voltage_V)
        pieces["current_A"].append(s.current_A)
        pieces["charge_C"].append(s.charge_C + charge_offset)
        if s.charge_C.size:
            charge_offset += float(s.charge_C[-1])
        if has_step and s.step is not None:
            pieces["step"].append(s.step)
        if has_cycle and s.cycle is not None:
            pieces["cycle"].append(s.cycle + cycle_offset)
            if s.cycle.size:
                cycle_offset += int(s.cycle.max()) + 1
        if has_mode and s.mode is not None:
            pieces["mode"].append(s.mode)
        pieces["file_index"].append(np.full(t.size, k, dtype=np.int64))

    time_s = np.concatenate(pieces["time_s"])
    current_A = np.concatenate(pieces["current_A"])
    mode = np.concatenate(pieces["mode"]) if has_mode else None
    open_circuit = None if mode is None else mode == MODE_REST
    thr = rest_threshold_from_current(current_A, open_circuit, rest_threshold_A)
    dim = "echem_time"
    data_vars: dict[str, tuple[str, np.ndarray, dict[str, str]]] = {
        "voltage_V": (dim, np.concatenate(pieces["voltage_V"]),
                      {**STANDARD_ATTRS["voltage_V"], "source": std[0].sources["voltage_V"]}),
        "current_A": (dim, current_A,
                      {**STANDARD_ATTRS["current_A"], "source": std[0].sources["current_A"]}),
        "charge_C": (dim, np.concatenate(pieces["charge_C"]),
                     {**STANDARD_ATTRS["charge_C"], "source": std[0].sources["charge_C"]}),
        "segment": (dim, segments_from_current(current_A, open_circuit, thr),
                    {**STANDARD_ATTRS["segment"], "rest_threshold_A": thr,
                     "rule": "|I| <= rest_threshold_A or EC-Lab mode == 3 -> rest; "
                             "I > 0 charge; I < 0 discharge"}),
        "file_index": (dim, np.concatenate(pieces["file_index"]), STANDARD_ATTRS["file_index"]),
    }
    if has_step:
        data_vars["step"] = (dim, np.concatenate(pieces["step"]), STANDARD_ATTRS["step"])
    if has_cycle:
        attrs = dict(STANDARD_ATTRS["cycle"])
        if len(files) > 1:
            attrs["stitching"] = "offset per file so cycle numbers do not repeat across files"
        data_vars["cycle"] = (dim, np.concatenate(pieces["cycle"]), attrs)

    # extra columns: carried through under sanitised names; NaN where a file lacks one
    extra_names: list[str] = []
    for s in std:
        extra_names += [n for n in s.extras if n not in extra_names]
    reserved = set(data_vars) | {"time_s", "time_utc", dim}
    var_names = _extra_variable_names(extra_names, reserved)
    for col in extra_names:
        vals = np.concatenate([s.extras.get(col, np.full(s.time_s.size, np.nan)) for s in std])
        if col in INTEGER_COLUMNS and np.all(np.isfinite(vals)):
            vals = np.round(vals).astype(np.int64)
        data_vars[var_names[col]] = (dim, vals, {"units": column_units(col), "long_name": col,
                                                 "ec_lab_column": col})

    per_source = {k: sorted({s.sources[k] for s in std}) for k in std[0].sources}
    for k, srcs in per_source.items():
        if k in data_vars and len(srcs) > 1:
            data_vars[k][2]["source"] = "; ".join(
                f"{f.path.name}: {s.sources[k]}" for f, s in zip(files, std, strict=True)
            )

    time_utc = xr.Variable(dim, datetime64_utc(t0, time_s), attrs=dict(STANDARD_ATTRS["time_utc"]))
    # CF units of a datetime live in the encoding (xarray writes them on to_netcdf)
    time_utc.encoding.update({"units": "nanoseconds since 1970-01-01T00:00:00Z",
                              "calendar": "proleptic_gregorian", "dtype": "int64"})
    ds = xr.Dataset(
        {name: xr.Variable(d, v, attrs=a) for name, (d, v, a) in data_vars.items()},
        coords={
            "time_s": xr.Variable(dim, time_s, attrs=dict(STANDARD_ATTRS["time_s"])),
            "time_utc": time_utc,
        },
    )
    local_start = t0.astimezone(tz)
    ds.attrs.update({
        "source_files": [str(f.path) for f in files],
        "technique": "; ".join(dict.fromkeys(f.technique for f in files)),
        "acquisition_start": local_start.isoformat(timespec="milliseconds"),
        "acquisition_start_utc": t0.isoformat(timespec="milliseconds"),
        "acquisition_starts": [s.astimezone(local_start.tzinfo).isoformat(
            timespec="milliseconds") for s in starts],
        "file_start_offsets_s": np.asarray(offsets, dtype=float),
        "timezone": tz_name,
        "clock": "potentiostat",
        "decimal_comma": [int(f.decimal_comma) for f in files],
    })
    if notes:
        ds.attrs["notes"] = notes
    return ds
