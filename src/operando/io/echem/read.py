"""One entry point for every cycler file: :func:`read_echem`.

It picks the format per file (by content first, then by suffix: the one table of
:mod:`operando.io.formats`), reads each file into an
:class:`~operando.io.echem.schema.EchemRecord` with the format's reader and builds the one
normalised Dataset of :mod:`operando.io.echem.schema` (dimension ``echem_time``;
``time_s``, ``time_utc``, ``voltage_V``, ``current_A``, ``charge_C``, ``step``, ``cycle``,
...).

========================  ======================================================
format                    reader module
========================  ======================================================
``biologic-mpt``          :mod:`.biologic`
``biologic-mpr``          :mod:`.biologic_mpr`
``neware``                :mod:`.neware`
``csv``                   :mod:`.csv_table` (needs a column map)
========================  ======================================================

Several files are one run stitched on UTC (a continuation after a pause); ``.mpt`` and
``.mpr`` files may be mixed (same instrument, same schema), other mixes are an error.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import xarray as xr

from operando.io.echem.biologic import as_paths
from operando.io.echem.csv_table import (
    CsvColumnMap,
    csv_columns,
    csv_record,
    read_csv_table,
)
from operando.io.echem.eclab_start import eclab_records
from operando.io.echem.neware import neware_record, read_neware_frame
from operando.io.echem.schema import EchemFormatError, EchemRecord, build_echem_dataset
from operando.io.formats import detect_format
from operando.io.timestamps import zoneinfo_or_raise

__all__ = ["ECHEM_FORMATS", "EchemFormat", "detect_echem_format", "read_echem"]

EchemFormat = Literal["biologic-mpt", "biologic-mpr", "neware", "csv"]
ECHEM_FORMATS: tuple[str, ...] = ("biologic-mpt", "biologic-mpr", "neware", "csv")
_FAMILY = {"biologic-mpt": "BioLogic", "biologic-mpr": "BioLogic", "neware": "Neware",
           "csv": "CSV"}


def detect_echem_format(path: str | os.PathLike[str]) -> str:
    """The format of one cycler file: its first bytes decide, then its suffix.

    Raises :class:`EchemFormatError` naming the file when it is missing, empty, or of no
    known format (the message lists the formats and what the file starts with).
    """
    return detect_format(
        path, ECHEM_FORMATS, what="cycler file", error=EchemFormatError,
        expected=": an EC-Lab .mpt/.mpr, a Neware .nda/.ndax or a .csv/.tsv/.txt with a "
                 "column map (or pass format=...)")


def _csv_record(path: Path, *, columns: CsvColumnMap | Mapping[str, Any] | None,
                start_time: str | datetime | None, **_: Any) -> EchemRecord:
    if columns is None:
        raise EchemFormatError(
            f"{path}: read as CSV, which needs a column map: expected 'columns' (echem."
            "columns in the config: time_s, voltage_V, current_A, ...), found none")
    cmap, _ = csv_columns(columns)
    return csv_record(read_csv_table(path, cmap.delimiter), columns, start_time=start_time)


#: format name → reader (path, timezone=, columns=, start_time=) → EchemRecord; BioLogic
#: files are read together (:func:`operando.io.echem.eclab_start.eclab_records`)
_READERS: dict[str, Callable[..., EchemRecord]] = {
    "neware": lambda path, *, timezone, **_: neware_record(path, read_neware_frame(path),
                                                           timezone=timezone),
    "csv": _csv_record,
}


def read_echem(
    paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    timezone: str,
    format: Literal["auto", "biologic-mpt", "biologic-mpr", "neware", "csv"] = "auto",
    columns: CsvColumnMap | Mapping[str, Any] | None = None,
    start_time: str | datetime | None = None,
) -> xr.Dataset:
    """Read the cycler file(s) of one run into the normalised Dataset.

    ``timezone``: IANA name of the cycler PC's clock (localises the naive start times the
    files hold; never guessed). ``format``: ``"auto"`` detects each file
    (:func:`detect_echem_format`). ``columns``: the CSV column map
    (:class:`operando.io.echem.csv_table.CsvColumnMap` or a mapping with its keys); CSV only.
    ``start_time``: the acquisition start (ISO-8601 text or datetime; naive = local wall
    time of the cycler PC, localised with ``timezone``; or timezone-aware): a CSV's (without
    it its ``time_utc`` is NaT), or a BioLogic ``.mpr``'s still being written (no LOG module;
    else its EC-Lab ``.mpl`` log is read; a file's own start always wins, a disagreement is
    a warning: :mod:`operando.io.echem.eclab_start`). ``attrs['start_time_source']`` says
    where each start came from.

    Several files are one run: ordered by start and stitched on UTC, cycle numbers offset
    (:func:`operando.io.echem.schema.build_echem_dataset`); segment labels and the charge
    continued across files are derived by :func:`operando.echem.segments.add_segments`.
    Errors name the file: :class:`EchemFormatError` for bad content, ``ValueError`` for a bad
    argument (unknown timezone or format).
    """
    zoneinfo_or_raise(timezone)
    if format != "auto" and format not in ECHEM_FORMATS:
        raise ValueError(f"format: expected 'auto' or one of {list(ECHEM_FORMATS)}, found "
                         f"{format!r}")
    files = as_paths(paths, "read_echem")
    formats = [detect_echem_format(p) if format == "auto" else format for p in files]
    families = {_FAMILY[f] for f in formats}
    if len(families) > 1:
        pairs = ", ".join(f"{p.name}: {f}" for p, f in zip(files, formats, strict=True))
        raise EchemFormatError(
            f"files of different cyclers in one run ({pairs}); expected files of one "
            "instrument (BioLogic .mpt/.mpr may be mixed): read them separately")
    family = families.pop()
    if family != "CSV" and columns is not None:
        raise ValueError(f"columns is for CSV files only; {files[0]} is {formats[0]}, which "
                         "carries its own column names")
    if family == "Neware" and start_time is not None:
        raise ValueError(f"start_time is for CSV and BioLogic files only; {files[0]} is "
                         f"{formats[0]}, which carries its own start time")
    if family == "CSV" and len(files) > 1:
        raise EchemFormatError(
            f"{files[1]}: several CSV files given ({len(files)}); a CSV has no start time of "
            "its own to stitch files on: concatenate them or read each separately")
    if family == "BioLogic":
        records = eclab_records(files, formats, timezone=timezone, start_time=start_time)
    else:
        records = [_READERS[f](p, timezone=timezone, columns=columns, start_time=start_time)
                   for p, f in zip(files, formats, strict=True)]
    return build_echem_dataset(records, timezone=timezone)
