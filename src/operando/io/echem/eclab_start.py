"""Where each file of a BioLogic run gets its acquisition start, and what is said about it.

A BioLogic file normally carries its own start: the ``.mpt`` export's header line
``Acquisition started on`` and a finished ``.mpr``'s LOG module. An ``.mpr`` still being
written has no LOG module yet (EC-Lab appends it when the experiment ends), so its start
comes, in this order, from

1. ``start_time`` (the config's ``echem.start_time``): ISO-8601 with a UTC offset, or
   naive wall time of the cycler PC localised with ``timezone`` like every other start
   (never the local time of the machine reducing);
2. EC-Lab's log ``<stem>.mpl`` beside it (:mod:`operando.io.echem.biologic_mpl`): its
   ``Acquisition started on`` line;

and without either it is one error naming the file, saying what is missing and both ways
to give it. ``start_time`` is the start of *the* file without its own: with two such files
it would be ambiguous, and is refused (each then needs its ``.mpl``).

**A file's own start wins.** The LOG module is written by EC-Lab from the same PC clock and
at the same moment as the export's header and the ``.mpl``, so a configured start that
disagrees with it is a typo or the value typed in during the live phase; a wrong PC clock
is not mended by moving one file's start (it shifts the export and the log alike: that is
the trigger clock fit's job). There is no switch to let the config override it. When
``start_time`` is given and agrees with none of the files' own starts within
:data:`AGREEMENT_S`, that is said; likewise when the config's start and the ``.mpl`` of
the file it is used for disagree (the config is used, as the order above says).

Each record says where its start came from (``start_source``: ``LOG module``,
``header 'Acquisition started on'``, ``config echem.start_time`` or ``<stem>.mpl (line
N)``); a start not read from the file itself, and every disagreement, is a note
(``start_notes``, a ``UserWarning`` too); an ``.mpl`` read is listed in ``start_files``
(an input of the product: when EC-Lab finishes the file and deletes its log, the product
is stale).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from operando.io.echem.biologic import mpt_record, read_mpt_file
from operando.io.echem.biologic_mpl import mpl_sidecar, read_mpl_start
from operando.io.echem.biologic_mpr import MprFile, mpr_record, read_mpr_file
from operando.io.echem.schema import CONFIG_START_SOURCE, EchemFormatError, EchemRecord
from operando.io.timestamps import parse_start_time, start_to_utc, zoneinfo_or_raise

__all__ = ["AGREEMENT_S", "eclab_records", "missing_start_error"]

#: Two starts of one file closer than this (s) agree (the .mpl and the export keep ms).
AGREEMENT_S = 1.0


def missing_start_error(path: Path) -> EchemFormatError:
    """The error for an ``.mpr`` without a LOG module, a configured start or an ``.mpl``."""
    return EchemFormatError(
        f"{path}: no LOG module (EC-Lab appends it when the experiment ends: the file is "
        "still being written), so it holds no acquisition start; expected it from "
        "echem.start_time in the run config (ISO-8601, e.g. '2026-03-14T09:30:00' in "
        "echem.timezone or '2026-03-14T09:30:00+01:00'; `operando echem --start-time`) or "
        f"from EC-Lab's log {path.with_suffix('.mpl').name} beside it (its 'Acquisition "
        "started on' line); found neither")


def _iso(when: datetime) -> str:
    return when.isoformat(timespec="milliseconds")


def _utc(when: datetime, tz: ZoneInfo, what: str) -> datetime:
    try:
        return start_to_utc(when, tz)
    except ValueError as exc:
        raise EchemFormatError(f"{what}: {exc}") from None


def _own_start_utc(r: EchemRecord, tz: ZoneInfo) -> datetime | None:
    if r.start_utc is not None:
        return start_to_utc(r.start_utc, tz)
    if r.start_local is None:
        return None
    try:
        return start_to_utc(r.start_local, tz)
    except ValueError:  # a wall time in a DST gap: build_echem_dataset names it
        return None


def _from_config(r: EchemRecord, f: MprFile, given: datetime, given_utc: datetime,
                 tz: ZoneInfo) -> EchemRecord:
    """``r`` started at the configured start; its ``.mpl`` (if any) compared with it."""
    name = f.path.name
    notes = [f"{name}: {f.still_written}: acquisition start {_iso(given)} from "
             f"{CONFIG_START_SOURCE}"]
    side = mpl_sidecar(f.path)
    if side is not None:
        try:
            log = read_mpl_start(side)
            off = (given_utc - _utc(log.start, tz, str(side))).total_seconds()
        except EchemFormatError as exc:
            notes.append(f"{name}: {CONFIG_START_SOURCE} not compared with its log: {exc}")
        else:
            if abs(off) > AGREEMENT_S:
                notes.append(f"{name}: {CONFIG_START_SOURCE} ({_iso(given)}) differs from "
                             f"{log.where} ({_iso(log.start)}) by {off:+.3f} s; the config "
                             "is used")
    aware = given.tzinfo is not None
    return replace(r, start_local=None if aware else given, start_utc=given if aware else None,
                   start_source=CONFIG_START_SOURCE, start_notes=tuple(notes))


def _from_log_file(r: EchemRecord, f: MprFile) -> EchemRecord:
    """``r`` started at its ``.mpl``'s ``Acquisition started on``; else the error."""
    side = mpl_sidecar(f.path)
    if side is None:
        raise missing_start_error(f.path)
    log = read_mpl_start(side)
    return replace(r, start_local=log.start, start_utc=None, start_source=log.where,
                   start_files=(side,), start_notes=(
                       f"{f.path.name}: {f.still_written}: acquisition start "
                       f"{_iso(log.start)} from {log.where}",))


def _disagreement(records: Sequence[EchemRecord], given: datetime, given_utc: datetime,
                  tz: ZoneInfo) -> str:
    """A note when the configured start agrees with no file's own start, else ""."""
    best: tuple[float, EchemRecord, datetime] | None = None
    for r in records:
        own = _own_start_utc(r, tz)
        if own is None:
            continue
        off = (given_utc - own).total_seconds()
        if best is None or abs(off) < abs(best[0]):
            best = (off, r, own)
    if best is None or abs(best[0]) <= AGREEMENT_S:
        return ""
    off, r, own = best
    shown = r.start_local if r.start_local is not None else own
    return (f"{CONFIG_START_SOURCE} ({_iso(given)}) agrees with no file's own start: the "
            f"nearest, {r.path.name} ({r.start_source}: {_iso(shown)}), is {off:+.3f} s "
            "away; the files' own starts are used")


def eclab_records(
    paths: Sequence[Path],
    formats: Sequence[str],
    *,
    timezone: str,
    start_time: str | datetime | None = None,
) -> list[EchemRecord]:
    """The records of a BioLogic run's files (``formats``: ``biologic-mpt`` or
    ``biologic-mpr`` per path), each with its start (module docstring).

    ``timezone``: IANA name localising naive starts (for the comparisons here and, later,
    the Dataset). ``start_time``: the configured start (``echem.start_time``), or None.
    Raises :class:`EchemFormatError` naming the file when an ``.mpr`` has no start from
    any source, when ``start_time`` would be ambiguous, or for a bad ``.mpl``;
    ``ValueError`` for an unparsable ``start_time``.
    """
    tz = zoneinfo_or_raise(timezone)
    given = parse_start_time(start_time)
    given_utc = None if given is None else _utc(given, tz, "start_time")
    files = [read_mpt_file(p) if fmt == "biologic-mpt" else read_mpr_file(p)
             for p, fmt in zip(paths, formats, strict=True)]
    records = [mpr_record(f) if isinstance(f, MprFile) else mpt_record(f) for f in files]
    lacking = [k for k, f in enumerate(files) if f.acquisition_start is None]
    if given is not None and len(lacking) > 1:
        names = ", ".join(files[k].path.name for k in lacking)
        raise EchemFormatError(
            f"{files[lacking[1]].path}: {len(lacking)} files have no LOG module ({names}); "
            "echem.start_time gives the start of one file only, so it is ambiguous here: "
            "expected each file's EC-Lab log (.mpl) beside it, and no echem.start_time")
    for k in lacking:
        f = files[k]
        assert isinstance(f, MprFile)
        records[k] = (_from_config(records[k], f, given, given_utc, tz)
                      if given is not None and given_utc is not None
                      else _from_log_file(records[k], f))
    if given is not None and given_utc is not None and not lacking:
        note = _disagreement(records, given, given_utc, tz)
        if note:
            records[0] = replace(records[0], start_notes=(*records[0].start_notes, note))
    for r in records:
        for note in r.start_notes:
            warnings.warn(note, UserWarning, stacklevel=2)
    return records
