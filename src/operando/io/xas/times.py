"""Absolute acquisition times of text XAS spectra (SOLEIL ROCK / extranormal exports).

Each spectrum's header (read with :func:`operando.io.xas.text.read_xas_text`) holds::

    #Time at start=2022-07-26 23:01:58.055          <- beamline control PC wall time
    #Time from start (seconds)=65.003889607          <- span of the averaged scans

``Time at start`` is a naive local wall time: it is localised with the ``timezone`` the
caller names (for SOLEIL, Europe/Paris; never guessed), or kept as it is when it carries
an offset. ``Time from start (seconds)`` is the time from the first to the last of the
quick-EXAFS scans averaged into the spectrum (≈ 65 s for each of the LiNiO2 spectra, whose
starts are ≈ 687 s apart), so a spectrum covers [start, start + elapsed].
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from operando.io.echem.schema import datetime64_utc
from operando.io.timestamps import parse_time_utc, zoneinfo_or_raise
from operando.io.xas.text import XasText, XasTextError, read_xas_text

__all__ = ["ELAPSED_KEY", "START_KEY", "XasStartTimes", "read_xas_start_times",
           "xas_start_times"]

START_KEY = "Time at start"
ELAPSED_KEY = "Time from start (seconds)"


@dataclass(frozen=True)
class XasStartTimes:
    """Per spectrum, in the order given: file, start (UTC ``datetime64[ns]``) and the
    header's ``Time from start (seconds)`` (s; NaN when the header has none)."""

    paths: list[Path]
    start_utc: np.ndarray
    elapsed_s: np.ndarray
    timezone: str

    @property
    def end_utc(self) -> np.ndarray:
        """``start_utc + elapsed_s`` (UTC ``datetime64[ns]``, NaT where elapsed is NaN)."""
        ns = np.where(np.isfinite(self.elapsed_s), np.round(self.elapsed_s * 1e9), 0)
        end = self.start_utc + ns.astype("timedelta64[ns]")
        return np.where(np.isfinite(self.elapsed_s), end, np.datetime64("NaT", "ns"))


def xas_start_times(spectra: Sequence[XasText], *, timezone: str) -> XasStartTimes:
    """The ``Time at start`` of already-read spectra as UTC, localised with ``timezone``.

    Raises :class:`~operando.io.xas.text.XasTextError` naming the file when the header has
    no ``Time at start`` (listing the header keys found), an unreadable date, or a local
    time that does not exist in ``timezone``; ``ValueError`` for an unknown timezone.
    """
    tz = zoneinfo_or_raise(timezone)
    starts: list[np.datetime64] = []
    elapsed: list[float] = []
    for spectrum in spectra:
        path, meta = spectrum.path, spectrum.metadata
        text = meta.get(START_KEY)
        if text is None:
            raise XasTextError(f"{path}: no '#{START_KEY}=' line in the header (needed for the "
                               f"absolute time); header keys found: {list(meta)}")
        try:
            when, note = parse_time_utc(text, tz.key, tz_key="timezone")
        except ValueError as exc:
            raise XasTextError(f"{path}: '{START_KEY}': {exc}") from None
        if note:
            warnings.warn(f"{path}: '{START_KEY}': {note}", stacklevel=2)
        starts.append(datetime64_utc(when, np.zeros(1))[0])
        value = spectrum.metadata_float(ELAPSED_KEY)
        elapsed.append(np.nan if value is None else value)
    return XasStartTimes(paths=[x.path for x in spectra],
                         start_utc=np.asarray(starts, dtype="datetime64[ns]"),
                         elapsed_s=np.asarray(elapsed, dtype=float), timezone=timezone)


def read_xas_start_times(
    paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    timezone: str,
) -> XasStartTimes:
    """Read text spectra (:func:`~operando.io.xas.text.read_xas_text`) and return their
    start times (:func:`xas_start_times`), in the order given."""
    zoneinfo_or_raise(timezone)
    files = [Path(paths)] if isinstance(paths, (str, os.PathLike)) else [Path(p) for p in paths]
    return xas_start_times([read_xas_text(p) for p in files], timezone=timezone)
