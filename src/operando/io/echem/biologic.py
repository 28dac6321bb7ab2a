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

Reading: :func:`read_mpt_file` parses one export; :func:`eclab_record` maps EC-Lab
columns onto the standard variables (shared with the ``.mpr`` reader,
:mod:`operando.io.echem.biologic_mpr`); :func:`operando.io.echem.schema.build_echem_dataset`
builds the Dataset every cycler reader returns. Trigger events: EC-Lab's flag columns
``control changes``, ``Ns changes`` and ``counter inc.`` are step / loop bookkeeping, not
external triggers (in the real files: ``Ns changes`` is 1 on the first row of each ``Ns``;
``counter inc.`` in cv.mpt is 1 on every row from the first reduction sweep on). They are
kept as integer extra variables; no ``trigger`` variable is made from them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from operando.constants import MAH_TO_C
from operando.io.atomic import write_bytes_atomic
from operando.io.echem.schema import (
    EchemFormatError,
    EchemRecord,
    ExtraColumn,
    build_echem_dataset,
    datetime64_utc,
    localise_to_utc,
    sanitise_name,
)
from operando.io.text import read_text_file
from operando.io.timestamps import require_naive_local, zoneinfo_or_raise

__all__ = [
    "ACQUISITION_START_FORMATS",
    "MPT_SOURCE",
    "EchemFormatError",
    "MptFile",
    "datetime64_utc",
    "eclab_record",
    "localise_to_utc",
    "mpt_record",
    "parse_acquisition_start",
    "read_mpt",
    "read_mpt_file",
    "sanitise_name",
    "write_mpt",
]

MAGIC_LINES = ("EC-Lab ASCII FILE", "BT-Lab ASCII FILE")
#: ``start_time_source`` of a start read from an export's header.
MPT_SOURCE = "header 'Acquisition started on'"
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






def column_units(column: str) -> str:
    """CF-ish ``units`` of an EC-Lab column from the text after its first ``/`` ("1" if none)."""
    if "/" not in column or column.startswith("ox/red"):
        return "1"
    unit = column.split("/", 1)[1].strip()
    unit = {"%": "percent", "Ohm": "ohm", "°C": "degC"}.get(unit, unit)
    return unit.replace("µ", "u")




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


_NUMBER_SHAPE = re.compile(r"^[+-]?\d[.,]\d+E[+-]\d{3}$")
_NOT_FINITE = frozenset({"NaN", "Inf", "-Inf", "+Inf"})


def _shape(cell: str) -> str:
    """``9.999E+999``-like shape of an EC-Lab float (digits -> 9, signs dropped)."""
    return re.sub(r"\d", "9", cell.strip().lstrip("+-").replace("E-", "E+"))


def _check_last_row_complete(path: Path, names: Sequence[str], before: Sequence[str],
                             last: Sequence[str], line: int) -> None:
    """EC-Lab writes every float cell of a column in one fixed layout (``%.15E`` or
    ``%.7E``); a last row whose cell is shorter than the row before was cut mid-line
    (an export interrupted or a copy truncated), even when the cut left a valid number."""
    for name, a, b in zip(names, before, last, strict=True):
        if not _NUMBER_SHAPE.match(a.strip()) or b.strip() in _NOT_FINITE:
            continue
        if _shape(b) != _shape(a):
            raise EchemFormatError(
                f"{path}: line {line} (the last data row) looks cut mid-line: column "
                f"{name!r} holds {b.strip()!r}, expected a number written like the row "
                f"before ({a.strip()!r}); the file is truncated"
            )


def _parse_cells(path: Path, names: list[str], rows: list[str], first_line: int,
                 decimal_comma: bool) -> dict[str, np.ndarray]:
    ncol = len(names)
    table: list[list[str]] = []
    for k, row in enumerate(rows):
        cells = row.split("\t")
        while len(cells) > ncol and cells[-1].strip() == "":
            cells.pop()
        if len(cells) != ncol:
            hint = " (file cut mid-line?)" if k == len(rows) - 1 and len(cells) < ncol else ""
            raise EchemFormatError(
                f"{path}: line {first_line + k} (data row {k + 1}): expected {ncol} "
                f"tab-separated values (one per column), found {len(cells)}{hint}"
            )
        table.append(cells)
    if not table:
        return {n: np.zeros(0) for n in names}
    if len(table) > 1:
        _check_last_row_complete(path, names, table[-2], table[-1], first_line + len(table) - 1)
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
    lines = read_text_file(path, what="an EC-Lab .mpt export", error=EchemFormatError)
    if not lines:
        raise EchemFormatError(f"{path}: empty file (expected an EC-Lab ASCII export)")
    first = lines[0].strip()
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




# ---------------------------------------------------------------------------------------
# EC-Lab columns -> the standard variables (shared by the .mpt and .mpr readers)

#: Flag columns: rest whatever the current reads when ``mode`` is 3 (open circuit).
OPEN_CIRCUIT_TECHNIQUES = ("open circuit",)
#: EC-Lab's average current over the last interval, from the charge increment.
DQ_COLUMN = "dq/mA.h"
HALF_CYCLE_COLUMN = "half cycle"


def _first_present(columns: Mapping[str, np.ndarray], candidates: Sequence[str]) -> str | None:
    return next((c for c in candidates if c in columns), None)


def _missing_column(path: Path, what: str, candidates: Sequence[str],
                    present: Sequence[str]) -> EchemFormatError:
    return EchemFormatError(
        f"{path}: missing required column for {what}: expected one of {list(candidates)}; "
        f"columns present: {list(present)}"
    )


def current_from_dq_A(time_s: np.ndarray, dq_mAh: np.ndarray) -> np.ndarray:
    """EC-Lab's ``<I>`` (A): the charge increment ``dq`` (mA·h, since the previous row)
    over the time since the previous row (s). 0 on the first row and wherever dq is 0 with
    no time elapsed; NaN where dq is non-zero with no time elapsed.

    This is how EC-Lab fills ``<I>/mA`` in a text export of a GCPL ``.mpr`` that stores
    no current column (checked on gcpl.issue_149: equal to the export's 16 digits).
    """
    time_s = np.asarray(time_s, dtype=float)
    dq_C = np.asarray(dq_mAh, dtype=float) * MAH_TO_C
    dt = np.diff(time_s, prepend=time_s[:1])
    out = np.full(time_s.shape, np.nan)
    ok = dt > 0
    out[ok] = dq_C[ok] / dt[ok]
    out[~ok & (dq_C == 0)] = 0.0
    return out


def eclab_record(
    path: Path,
    columns: Mapping[str, np.ndarray],
    *,
    fmt: str,
    technique: str,
    acquisition_start: datetime | None,
    first_data_line: int | None = None,
    per_file_attrs: Mapping[str, Any] | None = None,
    start_source: str = "",
) -> EchemRecord:
    """Map EC-Lab columns (names as in the text export, file units) onto the standard
    variables. ``acquisition_start`` is the naive PC-local wall time of ``time/s = 0``
    (None: the file holds none, e.g. an ``.mpr`` still being written), ``start_source``
    where it was read.

    voltage: ``Ewe/V`` (else ``Ecell/V``, ``<Ewe>/V``); current: ``I/mA`` or ``<I>/mA``
    × 1e-3, else ``dq/mA.h`` over the time step (EC-Lab's ``<I>``), else 0 for an
    open-circuit technique (all ``mode`` 3); charge: ``(Q-Qo)/mA.h`` × 3.6 or
    ``(Q-Qo)/C``, else integrated later; step: ``Ns``; cycle: ``cycle number``, else
    ``half cycle // 2`` (EC-Lab's "Charge/Discharge alternance" count, checked on the real
    GCPL and MB files: equal to the export's ``cycle number``); open circuit: ``mode``
    3. Every other column is an extra variable (sanitised name, original in
    ``attrs['ec_lab_column']``), flags and counters as integers.
    """
    cols = dict(columns)
    t_col = _first_present(cols, TIME_COLUMNS)
    if t_col is None:
        raise _missing_column(path, "time", TIME_COLUMNS, list(cols))
    v_col = _first_present(cols, VOLTAGE_COLUMNS)
    if v_col is None:
        raise _missing_column(path, "voltage", VOLTAGE_COLUMNS, list(cols))
    time_s = np.asarray(cols[t_col], dtype=float)
    used = {t_col, v_col}
    sources = {"time_s": t_col, "voltage_V": v_col}

    mode = cols.get(MODE_COLUMN)
    i_col = _first_present(cols, CURRENT_COLUMNS)
    if i_col is not None:
        current_A = np.asarray(cols[i_col], dtype=float) * 1e-3
        used.add(i_col)
        sources["current_A"] = f"{i_col} * 1e-3"
    elif DQ_COLUMN in cols:
        current_A = current_from_dq_A(time_s, cols[DQ_COLUMN])
        sources["current_A"] = (f"<I> = {DQ_COLUMN} * 3.6 / (time step in s), as EC-Lab "
                                "computes <I>/mA (the file stores no current column)")
    elif any(k in technique.lower() for k in OPEN_CIRCUIT_TECHNIQUES) or (
        mode is not None and mode.size and np.all(mode == MODE_REST)
    ):
        current_A = np.zeros_like(time_s)
        sources["current_A"] = "no current column: open-circuit technique, set to 0"
    else:
        raise _missing_column(path, "current", (*CURRENT_COLUMNS, DQ_COLUMN), list(cols))

    q_col = _first_present(cols, list(CHARGE_COLUMNS))
    charge_C = None
    if q_col is not None:
        charge_C = np.asarray(cols[q_col], dtype=float) * CHARGE_COLUMNS[q_col]
        used.add(q_col)
        sources["charge_C"] = f"{q_col} * {CHARGE_COLUMNS[q_col]}"

    step = cycle = None
    if STEP_COLUMN in cols:
        step = np.round(cols[STEP_COLUMN]).astype(np.int64)
        used.add(STEP_COLUMN)
        sources["step"] = STEP_COLUMN
    if CYCLE_COLUMN in cols:
        cycle = np.round(cols[CYCLE_COLUMN]).astype(np.int64)
        used.add(CYCLE_COLUMN)
        sources["cycle"] = CYCLE_COLUMN
    elif HALF_CYCLE_COLUMN in cols:
        cycle = np.round(cols[HALF_CYCLE_COLUMN]).astype(np.int64) // 2
        sources["cycle"] = (f"'{HALF_CYCLE_COLUMN}' // 2 (EC-Lab 'Charge/Discharge "
                            "alternance' cycles; the file stores no cycle number)")

    extras: dict[str, ExtraColumn] = {}
    for name, values in cols.items():
        if name in used:
            continue
        vals = np.asarray(values)
        if name in INTEGER_COLUMNS and np.all(np.isfinite(vals)):
            vals = np.round(vals).astype(np.int64)
        else:
            vals = vals.astype(float)
        extras[name] = ExtraColumn(vals, {"units": column_units(name), "long_name": name,
                                          "ec_lab_column": name})
    return EchemRecord(
        path=path, format=fmt, time_s=time_s, voltage_V=np.asarray(cols[v_col], dtype=float),
        current_A=current_A, charge_C=charge_C, step=step, cycle=cycle,
        open_circuit=None if mode is None else np.asarray(mode) == MODE_REST,
        sources=sources, extras=extras, start_local=acquisition_start, technique=technique,
        first_data_line=first_data_line, per_file_attrs=dict(per_file_attrs or {}),
        start_source=start_source if acquisition_start is not None else "",
    )


def mpt_record(f: MptFile) -> EchemRecord:
    """One parsed ``.mpt`` as an :class:`~operando.io.echem.schema.EchemRecord`."""
    return eclab_record(
        f.path, f.columns, fmt="biologic-mpt", technique=f.technique,
        acquisition_start=f.acquisition_start, first_data_line=f.n_header_lines + 1,
        per_file_attrs={"decimal_comma": int(f.decimal_comma)}, start_source=MPT_SOURCE,
    )


def as_paths(paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
             what: str = "read_mpt") -> list[Path]:
    """One path or a sequence of paths as a non-empty list of :class:`Path`."""
    if isinstance(paths, (str, os.PathLike)):
        return [Path(paths)]
    out = [Path(p) for p in paths]
    if not out:
        raise ValueError(f"{what}: no file given")
    return out


def read_mpt(
    paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    timezone: str,
) -> xr.Dataset:
    """Read one EC-Lab ``.mpt`` export, or several files of one run, into a Dataset.

    Dimension ``echem_time``. Coordinates ``time_s`` (s on the potentiostat clock, since
    the FIRST file's ``Acquisition started on``) and ``time_utc`` (UTC datetime64[ns]: the
    header's local wall time localised in ``timezone``, an IANA name, then converted).
    Variables ``voltage_V`` (V), ``current_A`` (A), ``charge_C`` (C, as the file
    records it), ``open_circuit`` (EC-Lab ``mode`` 3), ``step`` (EC-Lab ``Ns``) and
    ``cycle`` (0 with a ``source`` attribute saying so when the file has neither),
    ``file_index``, and every other column as an extra variable (sanitised name, original in
    ``attrs['ec_lab_column']``). See :mod:`operando.io.echem.schema` for the schema and
    :func:`eclab_record` for the column mapping.

    Several files are a continuation of one run: they are ordered by acquisition start and
    stitched on UTC (so a daylight-saving change between them is handled); ``cycle`` is
    offset so that no cycle number repeats across files. Segment labels and the charge
    continued across files: :func:`operando.echem.segments.add_segments`.
    Time going backwards inside a file, a file without data rows and a last row cut
    mid-line are :class:`EchemFormatError` naming the file and line.
    """
    zoneinfo_or_raise(timezone)  # an unknown zone fails before any file is read
    records = [mpt_record(read_mpt_file(p)) for p in as_paths(paths)]
    return build_echem_dataset(records, timezone=timezone)
