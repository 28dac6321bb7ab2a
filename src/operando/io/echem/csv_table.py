"""Generic CSV / TSV cycler exports, read with a column map (``echem.columns`` in the config).

Layout accepted: optional leading comment lines (``#``) and blank lines, one header line of
column names, then one row per record with the same number of fields; blank padding rows
(every cell empty, e.g. ``;;;;``) are skipped wherever they are. The field separator
is ``columns.delimiter`` or, when absent, the one of tab / ``;`` / ``,`` that splits the
header into the most fields. With a separator other than ``,`` a decimal comma
(``3,41``) is accepted. Quoted fields follow the csv module's rules.

The map (:class:`CsvColumnMap`, or a mapping with its keys) names the columns: ``time_s``
(elapsed seconds), ``voltage_V`` (V), ``current_A`` (× ``current_scale`` → A), optional
``charge_C`` (× ``charge_scale`` → C; integrated from current when absent), ``step``,
``cycle`` and ``trigger`` (a column that is non-zero at rows where an external trigger was
recorded). Every other column is carried as an extra variable (numbers as float, anything
else as text).

A CSV has no start time of its own: ``time_utc`` is NaT (with a note) unless
``start_time`` is given — naive local wall time (localised with ``timezone``) or an
aware datetime / ISO-8601 string with an offset. Nothing is guessed.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from operando.io.echem.biologic import as_paths
from operando.io.echem.schema import (
    CONFIG_START_SOURCE,
    EchemFormatError,
    EchemRecord,
    ExtraColumn,
    build_echem_dataset,
)
from operando.io.text import parse_number, read_text_file
from operando.io.timestamps import parse_start_time, zoneinfo_or_raise

__all__ = ["CsvColumnMap", "CsvTable", "csv_columns", "csv_record", "numeric_column",
           "read_csv_table", "read_echem_csv"]

_DELIMITERS = ("\t", ";", ",")
_UNIT = re.compile(r"(?:[\[(]\s*([^\])]+?)\s*[\])]|/\s*([^/\s]+))\s*$")


@dataclass(frozen=True)
class CsvColumnMap:
    """Column names of a generic CSV/TSV cycler export (``echem.columns`` in a run config).

    ``time_s``: the column of elapsed time (s); ``voltage_V``: the working-electrode voltage
    (V); ``current_A``: the current, times ``current_scale`` (default 1.0) in A;
    ``charge_C``: the charge, times ``charge_scale`` (default 1.0) in C, or None (default):
    integrated from the current; ``step``, ``cycle``: integer columns, or None (default);
    ``trigger``: a column that is non-zero at rows where an external trigger was recorded
    (exposed as ``trigger``), or None (default); ``delimiter``: the field separator, or
    None (default): sniffed from the header. Raises ``ValueError`` naming the key for a
    name that is not text or a scale that is not a number.
    """

    time_s: str
    voltage_V: str
    current_A: str
    current_scale: float = 1.0
    charge_C: str | None = None
    charge_scale: float = 1.0
    step: str | None = None
    cycle: str | None = None
    trigger: str | None = None
    delimiter: str | None = None

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name.endswith("_scale"):
                if isinstance(value, bool) or not isinstance(value, int | float | str):
                    raise ValueError(f"columns.{f.name}: expected a number, found {value!r}")
                try:
                    object.__setattr__(self, f.name, float(value))
                except ValueError:
                    raise ValueError(f"columns.{f.name}: expected a number, found "
                                     f"{value!r}") from None
            elif not (isinstance(value, str) or (value is None and f.default is None)):
                raise ValueError(f"columns.{f.name}: expected a column name (text), found "
                                 f"{value!r}")

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> CsvColumnMap:
        """The map of a mapping with its keys (``time_s``, ``voltage_V``, ``current_A``
        required); ``ValueError`` naming an unknown or missing key."""
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(raw) - set(known))
        if unknown:
            raise ValueError(f"columns: unknown key(s) {unknown}; expected some of {known}")
        missing = [k for k in ("time_s", "voltage_V", "current_A") if k not in raw]
        if missing:
            raise ValueError(f"columns: expected the key(s) {missing}, found none")
        return cls(**raw)


@dataclass(frozen=True)
class CsvTable:
    """The cells of one CSV file: header names, text columns, and where rows came from."""

    path: Path
    names: list[str]
    cells: dict[str, list[str]]
    first_data_line: int  # 1-based line after the header
    delimiter: str
    data_lines: list[int]  # 1-based file line of each data row

    @property
    def n_rows(self) -> int:
        return len(self.data_lines)


def _sniff(header: str) -> str:
    counts = [(len(next(csv.reader([header], delimiter=d))), -k, d)
              for k, d in enumerate(_DELIMITERS)]
    return max(counts)[2]


def read_csv_table(path: str | os.PathLike[str], delimiter: str | None = None) -> CsvTable:
    """Split one CSV/TSV file into header names and text cells (no number parsing).

    Raises :class:`EchemFormatError` naming the file for a missing or empty file, a
    duplicate column name, and a row whose field count differs from the header's (the
    last row of a file cut mid-line among them).
    """
    path = Path(path)
    lines = read_text_file(path, what="a CSV/TSV export", error=EchemFormatError)
    k = 0
    while k < len(lines) and (not lines[k].strip() or lines[k].lstrip().startswith("#")):
        k += 1
    if k == len(lines):
        raise EchemFormatError(f"{path}: empty file: expected a header line of column names "
                               "followed by data rows, found none")
    header_line = k + 1
    delim = delimiter if delimiter is not None else _sniff(lines[k])
    names = [n.strip() for n in next(csv.reader([lines[k]], delimiter=delim))]
    while names and names[-1] == "":
        names.pop()
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise EchemFormatError(f"{path}: duplicate column names {dupes} on line {header_line}")
    rows: list[list[str]] = []
    data_lines: list[int] = []
    body = lines[k + 1:]
    last = max((j for j, x in enumerate(body) if x.strip()), default=-1)
    for j, line in enumerate(body):
        if not line.strip():
            continue
        fields = next(csv.reader([line], delimiter=delim))
        if all(not f.strip() for f in fields):
            continue  # a blank padding row (every cell empty)
        while len(fields) > len(names) and fields[-1].strip() == "":
            fields.pop()
        if len(fields) != len(names):
            hint = " (file cut mid-line?)" if j == last and len(fields) < len(names) else ""
            raise EchemFormatError(
                f"{path}: line {header_line + 1 + j}: expected {len(names)} fields separated "
                f"by {delim!r} (one per header column), found {len(fields)}{hint}"
            )
        rows.append(fields)
        data_lines.append(header_line + 1 + j)
    cells = {n: [r[c].strip() for r in rows] for c, n in enumerate(names)}
    return CsvTable(path, names, cells, header_line + 1, delim, data_lines)


def csv_columns(columns: CsvColumnMap | Mapping[str, Any]) -> tuple[CsvColumnMap, str | None]:
    """The validated column map and the optional ``trigger`` column name."""
    cols = columns if isinstance(columns, CsvColumnMap) else CsvColumnMap.from_mapping(columns)
    return cols, cols.trigger


def numeric_column(table: CsvTable, column: str, *, key: str = "",
                   error: type[Exception] = EchemFormatError) -> np.ndarray:
    """The cells of ``column`` as floats (a decimal comma is accepted unless the separator
    is ``,``). A cell that is not a number raises ``error`` naming the file, the line, the
    column (and the config ``key`` that named it, when given) and the cell found."""
    comma_ok = table.delimiter != ","
    out = np.empty(table.n_rows)
    for k, text in enumerate(table.cells[column]):
        value = parse_number(text, decimal_comma=comma_ok)
        if value is None:
            where = f" ({key})" if key else ""
            found = repr(text) if text.strip() else "an empty cell"
            raise error(
                f"{table.path}: line {table.data_lines[k]}, column {column!r}{where}: expected "
                f"a number, found {found}"
            )
        out[k] = value
    return out


def _numbers(table: CsvTable, key: str, column: str) -> np.ndarray:
    return numeric_column(table, column, key=f"columns.{key}")


def _maybe_numbers(table: CsvTable, column: str) -> np.ndarray:
    try:
        return _numbers(table, column, column)
    except EchemFormatError:
        return np.asarray(table.cells[column], dtype=str)


def _column(table: CsvTable, key: str, column: str) -> str:
    if column in table.names:
        return column
    raise EchemFormatError(
        f"{table.path}: columns.{key} names column {column!r}, which is not in the header "
        f"(line {table.first_data_line - 1}); available columns: {table.names}"
    )


def csv_record(
    table: CsvTable,
    columns: CsvColumnMap | Mapping[str, Any],
    *,
    start_time: str | datetime | None = None,
) -> EchemRecord:
    """Map one CSV table onto the standard variables with the column map (module doc)."""
    cmap, trigger_col = csv_columns(columns)
    path = table.path
    named: dict[str, str] = {"time_s": cmap.time_s, "voltage_V": cmap.voltage_V,
                             "current_A": cmap.current_A}
    for key in ("charge_C", "step", "cycle"):
        if getattr(cmap, key) is not None:
            named[key] = getattr(cmap, key)
    if trigger_col is not None:
        named["trigger"] = trigger_col
    for key, col in named.items():
        _column(table, key, col)
    values = {key: _numbers(table, key, col) for key, col in named.items()}
    sources = {"time_s": cmap.time_s, "voltage_V": cmap.voltage_V,
               "current_A": f"{cmap.current_A} * {cmap.current_scale}"}
    charge = None
    if "charge_C" in values:
        charge = values["charge_C"] * cmap.charge_scale
        sources["charge_C"] = f"{cmap.charge_C} * {cmap.charge_scale}"
    ints: dict[str, np.ndarray] = {}
    for key in ("step", "cycle"):
        if key in values:
            v = values[key]
            if not np.all(np.isfinite(v)) or np.any(v != np.round(v)):
                k = int(np.flatnonzero(~np.isfinite(v) | (v != np.round(v)))[0])
                raise EchemFormatError(
                    f"{path}: line {table.data_lines[k]}, column {named[key]!r} (columns."
                    f"{key}): expected an integer, found {table.cells[named[key]][k]!r}")
            ints[key] = v.astype(np.int64)
            sources[key] = named[key]
    trigger = None
    if "trigger" in values:
        trigger = values["trigger"] != 0
        sources["trigger"] = f"{trigger_col} != 0"

    used = set(named.values())
    extras = {}
    for col in table.names:
        if col in used:
            continue
        m = _UNIT.search(col)
        units = next((g for g in m.groups() if g), "1") if m else "1"
        extras[col] = ExtraColumn(_maybe_numbers(table, col),
                                  {"units": units, "long_name": col, "csv_column": col})

    start = parse_start_time(start_time)
    return EchemRecord(
        path=path, format="csv", time_s=values["time_s"], voltage_V=values["voltage_V"],
        current_A=values["current_A"] * cmap.current_scale, charge_C=charge,
        step=ints.get("step"), cycle=ints.get("cycle"), open_circuit=None, sources=sources,
        extras=extras,
        start_local=start if start is not None and start.tzinfo is None else None,
        start_utc=start if start is not None and start.tzinfo is not None else None,
        trigger=trigger, first_data_line=table.first_data_line,
        time_utc_note=("unknown: a CSV has no acquisition start and no start_time was given "
                       "(pass start_time to set it); never guessed"),
        per_file_attrs={"csv_delimiter": table.delimiter},
        start_source=CONFIG_START_SOURCE if start is not None else "",
    )


def read_echem_csv(
    paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    columns: CsvColumnMap | Mapping[str, Any],
    timezone: str,
    start_time: str | datetime | None = None,
) -> xr.Dataset:
    """Read one CSV/TSV cycler export into the normalised Dataset
    (:mod:`operando.io.echem.schema`) with the column map ``columns``.

    ``start_time``: the acquisition start (time_s = 0): naive local wall time, localised
    with ``timezone`` (IANA), or timezone-aware; without it ``time_utc`` is NaT.
    One file per call: a column map gives no per-file start to stitch several files on.
    """
    zoneinfo_or_raise(timezone)
    files = as_paths(paths, "read_echem_csv")
    if len(files) > 1:
        raise EchemFormatError(
            f"{files[1]}: several CSV files given ({len(files)}); a CSV has no start time of "
            "its own to stitch files on: concatenate them into one file or read each "
            "separately")
    cmap, _ = csv_columns(columns)
    table = read_csv_table(files[0], cmap.delimiter)
    record = csv_record(table, columns, start_time=start_time)
    return build_echem_dataset([record], timezone=timezone)
