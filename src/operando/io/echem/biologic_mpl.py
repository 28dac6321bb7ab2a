"""EC-Lab's log file (``.mpl``): the acquisition start of an ``.mpr`` still being written.

While EC-Lab acquires, the ``.mpr`` holds its settings and data modules only. The log (the
header text the ``.mpt`` export repeats: technique, channel, ``Acquisition started on :
MM/DD/YYYY HH:MM:SS.fff``, device, software versions, cell characteristics, technique
parameters) is kept in ``<stem>.mpl`` beside it, and the loop indexes in
``<stem>_LOOP.txt``; when the experiment ends EC-Lab appends them to the ``.mpr`` as its
LOG and loop modules and deletes both files. (Reported by EC-Lab users in galvani issue
#94 and pull request #102, and used the same way by Empa's aurora-cycler-manager EC-Lab
harvester, which copies ``.mpr`` + ``.mpl`` and takes the start from that line.) The
settings file ``.mps`` is written before the acquisition and holds the protocol, not its
start: it cannot supply one.

Layout, as in the real files (latin-1 / Windows-1252, CRLF)::

    EC-Lab LOG FILE                                   <- or 'BT-Lab LOG FILE'
    <blank>
    Galvanostatic Cycling with Potential Limitation
    <blank>
    Run on channel : 7 (SN 67339)
    ...
    Acquisition started on : 09/06/2023 15:18:20.995  <- potentiostat PC local wall time
    ...

Only the first line and the ``Acquisition started on`` line are read. Its value is parsed
like the export's (:func:`operando.io.echem.biologic.parse_acquisition_start`: month first,
never guessed); the similar ``Acquisition started at : xo = ...`` (a cell characteristic)
and ``Technique started on`` lines are not the start.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from operando.io.echem.biologic import parse_acquisition_start
from operando.io.echem.schema import EchemFormatError
from operando.io.text import read_text_file

__all__ = ["MPL_MAGIC_LINES", "MplStart", "mpl_sidecar", "read_mpl_start"]

#: First line of an EC-Lab (or BT-Lab) log file.
MPL_MAGIC_LINES = ("EC-Lab LOG FILE", "BT-Lab LOG FILE")
_START_KEY = "Acquisition started on"


@dataclass(frozen=True)
class MplStart:
    """The acquisition start an ``.mpl`` records: naive potentiostat-local wall time, and the
    file and 1-based line it was read from."""

    path: Path
    start: datetime
    line: int

    @property
    def where(self) -> str:
        """``name.mpl (line N)``, for messages and ``start_time_source``."""
        return f"{self.path.name} (line {self.line})"


def mpl_sidecar(mpr_path: str | os.PathLike[str]) -> Path | None:
    """EC-Lab's log beside an ``.mpr``: ``<stem>.mpl`` (or ``.MPL``), None when absent."""
    mpr_path = Path(mpr_path)
    for suffix in (".mpl", ".MPL"):
        candidate = mpr_path.with_suffix(suffix)
        if candidate.is_file():
            return candidate
    return None


def read_mpl_start(path: str | os.PathLike[str]) -> MplStart:
    """The ``Acquisition started on`` of an EC-Lab log file (module docstring).

    Raises :class:`EchemFormatError` naming the file (and the line) when it is missing, is
    not an EC-Lab log, has no such line, or its date does not parse.
    """
    path = Path(path)
    lines = read_text_file(path, what="an EC-Lab log file (.mpl)", error=EchemFormatError)
    first = lines[0].strip() if lines else ""
    if first not in MPL_MAGIC_LINES:
        found = repr(first[:80]) if lines else "an empty file"
        raise EchemFormatError(
            f"{path}: line 1: not an EC-Lab log file: expected {MPL_MAGIC_LINES[0]!r}, found "
            f"{found}")
    for k, line in enumerate(lines[1:], start=2):
        stripped = line.strip()
        if not stripped.lower().startswith(_START_KEY.lower()):
            continue
        rest = stripped[len(_START_KEY):].lstrip()
        if not rest.startswith(":"):
            continue
        try:
            return MplStart(path=path, start=parse_acquisition_start(rest[1:]), line=k)
        except ValueError as exc:
            raise EchemFormatError(f"{path}: line {k}: {_START_KEY!r}: {exc}") from None
    raise EchemFormatError(
        f"{path}: no line '{_START_KEY} : MM/DD/YYYY HH:MM:SS.fff' in its {len(lines)} lines "
        "(expected in an EC-Lab log; the file may still be being written)")
