"""An operando XAS series stored as one text file per scan (SOLEIL ROCK, XDI, Athena).

:func:`read_xas_text_scans` reads the files (:func:`operando.io.xas.text.read_xas_text`)
into :class:`XasTextScan` records — energy, the channels named by the config, and each
scan's exposure window as UTC epoch seconds — the text counterpart of
:func:`operando.io.xas.hdf5.read_xas_channels`.

Scan times come from each header:

* start: ``#Time at start=`` (ROCK / extranormal) or XDI ``Scan.start_time``. A time
  without a UTC offset is localised with ``timezone`` (never guessed: without one it is an
  error naming the file and the config key ``xanes.timezone``).
* end (``scan_end``): ``"header"`` — start + ``#Time from start (seconds)=`` (ROCK: the
  span of the averaged quick-EXAFS scans) or XDI ``Scan.end_time``; ``"next_start"`` — the
  next scan's start (the last scan: start + the median interval); ``"duration"`` — start +
  ``scan_duration_s``.

Errors are :class:`operando.io.xas.text.XasTextError` (a ``ValueError``) naming the file,
the column or header key and the config key.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from operando.io.timestamps import parse_time_utc, zoneinfo_or_raise
from operando.io.xas.text import MissingColumnError, XasText, XasTextError, read_xas_text
from operando.io.xas.times import ELAPSED_KEY, START_KEY

__all__ = ["END_KEYS", "START_KEYS", "XasTextScan", "read_xas_text_scans"]

#: Header keys of a scan's start time, tried in order (case-insensitive).
START_KEYS = (START_KEY, "Scan.start_time")
#: Header keys of a scan's end: an elapsed time in s (ROCK) or an absolute time (XDI).
END_KEYS = (ELAPSED_KEY, "Scan.end_time")


@dataclass
class XasTextScan:
    """One text scan: ``energy`` (file units, eV), ``mu`` (the mu column as given) or the
    counts ``i0``/``it``/``if_``/``iref``, the foil ``ref_mu`` (as given), and its exposure
    window ``start_epoch_s``/``end_epoch_s`` (UTC epoch s). ``number`` is the 1-based
    position in the series."""

    path: Path
    number: int
    energy: np.ndarray
    mu: np.ndarray | None
    i0: np.ndarray | None
    it: np.ndarray | None
    if_: np.ndarray | None
    iref: np.ndarray | None
    ref_mu: np.ndarray | None
    start_epoch_s: float
    end_epoch_s: float
    column: str = ""

    @property
    def source(self) -> str:
        """The file, and ``:column`` for one spectrum of a multi-column file."""
        return f"{self.path}:{self.column}" if self.column else str(self.path)


def _column(xt: XasText, name: str | None, key: str) -> np.ndarray | None:
    if name is None:
        return None
    try:
        return xt.column(name)
    except MissingColumnError as exc:
        raise MissingColumnError(f"{exc} (config xanes.{key})") from None


def _meta(xt: XasText, keys: Sequence[str]) -> tuple[str, str] | None:
    folded = {k.lower(): (k, v) for k, v in xt.metadata.items()}
    for key in keys:
        if key.lower() in folded:
            return folded[key.lower()]
    return None


def _epoch(xt: XasText, key: str, text: str, timezone: str | None) -> float:
    try:
        when, note = parse_time_utc(text, timezone, tz_key="xanes.timezone")
    except ValueError as exc:
        raise XasTextError(f"{xt.path}: header {key!r}: {exc}") from None
    if note:
        warnings.warn(f"{xt.path}: header {key!r}: {note}", stacklevel=3)
    return when.timestamp()


def read_xas_text_scans(
    paths: Sequence[str | os.PathLike[str]],
    *,
    energy_column: str | None = None,
    mu_column: str | None = None,
    i0_column: str | None = None,
    it_column: str | None = None,
    if_column: str | None = None,
    iref_column: str | None = None,
    ref_column: str | None = None,
    timezone: str | None = None,
    scan_end: Literal["header", "next_start", "duration"] = "header",
    scan_duration_s: float | None = None,
    times: Literal["header", "none"] = "header",
    mu_columns: Sequence[str] | str | None = None,
) -> list[XasTextScan]:
    """Read a series of text scans, one file each, in the order given (see the module
    docstring). Without ``mu_column`` and ``i0_column`` a file must hold exactly two
    columns (energy, mu). ``times="none"``: no start times are read (start and end NaN; a
    single spectrum or a series without times). ``mu_columns``: several columns of each
    file, each one scan (``"*"``: every column but the energy and ``ref_column``); needs
    ``times="none"``. Raises :class:`XasTextError` naming the file and what is wrong."""
    if mu_columns is not None:
        if times != "none":
            raise ValueError("read_xas_text_scans: mu_columns expects times='none'")
        return _multi_column_scans(paths, energy_column, mu_columns, ref_column)
    if timezone is not None:
        zoneinfo_or_raise(timezone)
    if scan_end == "duration" and not (scan_duration_s and scan_duration_s > 0):
        raise ValueError(f"read_xas_text_scans: scan_end 'duration' expects a positive "
                         f"scan_duration_s, found {scan_duration_s!r}")
    if not paths:
        raise XasTextError("xanes.files: no text scan files (the patterns matched nothing)")
    out: list[XasTextScan] = []
    header_ends: list[float] = []
    for k, path in enumerate(paths):
        xt = read_xas_text(path)
        energy = _column(xt, energy_column, "energy_column")
        if energy is None:
            energy = xt.energy
        mu = _column(xt, mu_column, "mu_column")
        if mu is None and i0_column is None:
            others = [c for c in xt.columns if c != xt.energy_label]
            if len(others) != 1:
                raise MissingColumnError(
                    f"{xt.path}: holds {len(xt.columns)} columns; name the one with mu "
                    "(xanes.mu_column) or the counts (xanes.i0_column ...); available: "
                    + ", ".join(repr(c) for c in xt.columns))
            mu = xt.columns[others[0]]
        found = _meta(xt, START_KEYS)
        if times == "none":
            out.append(XasTextScan(
                path=xt.path, number=k + 1, energy=energy, mu=mu,
                i0=_column(xt, i0_column, "i0_column"), it=_column(xt, it_column, "it_column"),
                if_=_column(xt, if_column, "if_column"),
                iref=_column(xt, iref_column, "iref_column"),
                ref_mu=_column(xt, ref_column, "ref_column"), start_epoch_s=float("nan"),
                end_epoch_s=float("nan")))
            continue
        if found is None:
            raise XasTextError(
                f"{xt.path}: no start time in the header (expected '#{START_KEY}=' as SOLEIL "
                f"ROCK writes it, or XDI 'Scan.start_time'); header keys found: "
                f"{list(xt.metadata)}")
        start = _epoch(xt, found[0], found[1], timezone)
        end = float("nan")
        if scan_end == "header":
            got = _meta(xt, END_KEYS[:1])
            if got is not None:
                elapsed = xt.metadata_float(got[0])
                if elapsed is None or not np.isfinite(elapsed) or elapsed < 0:
                    raise XasTextError(f"{xt.path}: header {got[0]!r}: expected seconds >= 0, "
                                       f"found {got[1]!r}")
                end = start + elapsed
            elif (got := _meta(xt, END_KEYS[1:])) is not None:
                end = _epoch(xt, got[0], got[1], timezone)
            else:
                raise XasTextError(
                    f"{xt.path}: no scan end in the header (expected '#{ELAPSED_KEY}=' or XDI "
                    "'Scan.end_time'); set xanes.scan_end: next_start or duration")
        elif scan_end == "duration":
            end = start + float(scan_duration_s)  # type: ignore[arg-type]
        header_ends.append(end)
        out.append(XasTextScan(
            path=xt.path, number=k + 1, energy=energy, mu=mu,
            i0=_column(xt, i0_column, "i0_column"), it=_column(xt, it_column, "it_column"),
            if_=_column(xt, if_column, "if_column"),
            iref=_column(xt, iref_column, "iref_column"),
            ref_mu=_column(xt, ref_column, "ref_column"), start_epoch_s=start,
            end_epoch_s=end))
    if times == "none":
        return out
    if scan_end == "next_start":
        starts = np.array([s.start_epoch_s for s in out])
        if starts.size < 2:
            raise XasTextError(f"{out[0].path}: scan_end 'next_start' needs at least two scans; "
                               "set xanes.scan_end: header or duration")
        gaps = np.diff(starts)
        if not np.all(gaps > 0):
            k = int(np.flatnonzero(gaps <= 0)[0])
            raise XasTextError(f"{out[k + 1].path}: starts no later than {out[k].path.name}; "
                               "scan_end 'next_start' expects the files in time order")
        for k, s in enumerate(out):
            s.end_epoch_s = float(starts[k + 1]) if k + 1 < len(out) \
                else float(starts[-1] + np.median(gaps))
    for s in out:
        if not s.end_epoch_s > s.start_epoch_s and scan_end != "header":
            raise XasTextError(f"{s.path}: scan end is not after its start")
    return out


def _multi_column_scans(paths: Sequence[str | os.PathLike[str]], energy_column: str | None,
                        mu_columns: Sequence[str] | str, ref_column: str | None
                        ) -> list[XasTextScan]:
    """Every listed column of every file as one scan (no times), numbered 1..n in order."""
    out: list[XasTextScan] = []
    if not paths:
        raise XasTextError("xanes.files: no text scan files (the patterns matched nothing)")
    for path in paths:
        xt = read_xas_text(path)
        energy = _column(xt, energy_column, "energy_column")
        if energy is None:
            energy = xt.energy
        ref = _column(xt, ref_column, "ref_column")
        skip = {xt.energy_label, energy_column, ref_column}
        names = ([c for c in xt.columns if c not in skip] if mu_columns == "*"
                 else list(mu_columns))
        if not names:
            raise MissingColumnError(f"{xt.path}: xanes.mu_columns '*': no column besides the "
                                     f"energy; columns: {list(xt.columns)}")
        for name in names:
            mu = _column(xt, name, "mu_columns")
            out.append(XasTextScan(path=xt.path, number=len(out) + 1, energy=energy, mu=mu,
                                   i0=None, it=None, if_=None, iref=None, ref_mu=ref,
                                   start_epoch_s=float("nan"), end_epoch_s=float("nan"),
                                   column=str(name)))
    return out
