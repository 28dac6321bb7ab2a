"""The one table of input file formats and how each is recognised.

Every format a family reader accepts (cycler logs: :mod:`operando.io.echem.read`; cyclic
voltammograms: :mod:`operando.io.cv.read`) has one :class:`FileFormat` entry here, keyed by
its name (the ``format`` value of the config and the CLI). An entry recognises a file by
its first bytes (``magic``) and, failing that, by its suffix; ``guess_can_open(path)``
asks both, as xarray's ``BackendEntrypoint.guess_can_open`` does. :func:`detect_format`
picks the format of one file among a family's names: content first (any name), then
suffix, else an error naming the file, its suffix, its first bytes and what was expected.

=================  ============================================  ======================
format             first bytes                                   suffixes
=================  ============================================  ======================
``seccm``          HDF5 signature                                ``.h5 .hdf5 .hdf .nxs``
``biologic-mpr``   ``BIO-LOGIC MODULAR FILE``                    ``.mpr``
``biologic-mpt``   ``EC-Lab ASCII FILE`` / ``BT-Lab ASCII FILE``  ``.mpt``
``neware``         ``NEWARE``                                    ``.nda .ndax``
``nova``           a header naming ``Potential applied (V)`` or      (none)
                   ``WE(1).Current (A)`` (``;``, tab or ``,``)
``csv``            (none)                                        ``.csv .tsv .txt .dat``
=================  ============================================  ======================
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from operando.io.echem.biologic import MAGIC_LINES
from operando.io.echem.biologic_mpr import MPR_MAGIC
from operando.io.echem.neware import NEWARE_SUFFIXES
from operando.io.text import read_file_head

__all__ = ["FORMATS", "HDF5_MAGIC", "HEAD_BYTES", "FileFormat", "detect_format"]

#: the first bytes of every HDF5 file
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
#: how many leading bytes the content checks see
HEAD_BYTES = 256


@dataclass(frozen=True)
class FileFormat:
    """One input format: ``magic(head)`` is True when the first :data:`HEAD_BYTES` bytes
    (a UTF-8 byte-order mark dropped) are this format's; ``suffixes`` (lower case, with the
    dot) name it when the content does not."""

    name: str
    magic: Callable[[bytes], bool]
    suffixes: tuple[str, ...] = ()

    def guess_can_open(self, path: str | os.PathLike[str]) -> bool:
        """True when ``path`` looks like this format (content, else suffix); a missing or
        empty file is False."""
        p = Path(path)
        try:
            head = read_file_head(p, HEAD_BYTES, what="", error=ValueError)
        except ValueError:
            return False
        return self.magic(head) or p.suffix.lower() in self.suffixes


def _nova_header(head: bytes) -> bool:
    """A NOVA ASCII export: its first non-blank line names NOVA columns, separated by
    ``;``, tab or ``,``."""
    first = head.lstrip().split(b"\n", 1)[0]
    return (any(s in first for s in (b";", b"\t", b","))
            and (b"Potential applied (V)" in first or b"WE(1).Current (A)" in first))


def _no_magic(head: bytes) -> bool:
    return False


FORMATS: dict[str, FileFormat] = {f.name: f for f in (
    FileFormat("seccm", lambda h: h.startswith(HDF5_MAGIC), (".h5", ".hdf5", ".hdf", ".nxs")),
    FileFormat("biologic-mpr", lambda h: h.startswith(MPR_MAGIC), (".mpr",)),
    FileFormat("biologic-mpt", lambda h: any(h.startswith(m.encode()) for m in MAGIC_LINES),
               (".mpt",)),
    FileFormat("neware", lambda h: h.startswith(b"NEWARE"), tuple(NEWARE_SUFFIXES)),
    FileFormat("nova", _nova_header),
    FileFormat("csv", _no_magic, (".csv", ".tsv", ".txt", ".dat")),
)}


def detect_format(
    path: str | os.PathLike[str], names: Sequence[str], *, what: str,
    error: type[Exception], expected: str = "",
) -> str:
    """The format of ``path`` among ``names`` (keys of :data:`FORMATS`): the first whose
    content check matches, else the first whose suffix matches.

    A missing, empty or unrecognised file raises ``error`` naming the file and ``what``
    was expected (e.g. "a cycler file"); for an unrecognised one the message gives the
    suffix, the first bytes and ``names``, then ``expected`` (extra text, default "").
    """
    path = Path(path)
    head = read_file_head(path, HEAD_BYTES, what=f"a {what}", error=error)
    for name in names:
        if FORMATS[name].magic(head):
            return name
    suffix = path.suffix.lower()
    for name in names:
        if suffix in FORMATS[name].suffixes:
            return name
    raise error(
        f"{path}: unknown {what} format (suffix {path.suffix!r}, starts with "
        f"{head[:24]!r}); expected one of {list(names)}{expected}"
    )
