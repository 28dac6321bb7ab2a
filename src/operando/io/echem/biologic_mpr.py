"""BioLogic EC-Lab binary files (``.mpr``), read with galvani (``galvani.BioLogic.MPRfile``).

The format is not re-implemented here: galvani decodes the modules (settings, data, log,
loop). What this module adds:

* the data columns under the same EC-Lab names as the text export (galvani already uses
  them: ``time/s``, ``Ewe/V``, ``I/mA``, ``<I>/mA``, ``control/V/mA``, ``(Q-Qo)/mA.h``,
  ``Ns``, ``cycle number``, ...); the packed ``flags`` byte is unpacked into the export's
  integer columns ``mode``, ``ox/red``, ``error``, ``control changes``, ``Ns changes``,
  ``counter inc.``; so :func:`operando.io.echem.biologic.eclab_record` maps both files of one
  experiment onto the same variables;
* the acquisition start: galvani's ``MPRfile.timestamp``, decoded from the LOG module's
  OLE date, is the potentiostat PC's naive local wall time (the ``.mpt`` header's
  ``Acquisition started on``, to the ms on the real files); it is localised with the
  reader's ``timezone`` exactly like the text export;
* a file still being written: EC-Lab appends the LOG module (and the loop module) only
  when the experiment ends (:mod:`operando.io.echem.biologic_mpl`), and appends data
  records to the data module while it acquires. Such a file is read for its **complete
  records**: the data module is cut after the last whole record, at most as many as its
  header declares (never a half record, never a record the header does not count yet),
  and an incomplete module after it (a LOG module being appended) is left out; galvani
  then decodes that whole prefix. (In which order EC-Lab appends a record's bytes and
  updates the header's point count and module length is not documented: either way only
  records both wholly present and counted are read.) Its start comes from elsewhere
  (:mod:`operando.io.echem.eclab_start`: ``echem.start_time`` or the ``.mpl`` log);
* errors: galvani's own (unknown column ID, unknown data-module version, truncated module)
  become :class:`~operando.io.echem.schema.EchemFormatError` naming the file. A file cut
  inside its data module is indistinguishable from one still being written and is read
  as such (its complete records, no LOG module); a file cut anywhere else is refused.

What the binary lacks compared with the export: columns EC-Lab computes on export
(``<I>/mA`` when only ``dq/mA.h`` is stored, ``cycle number``, ``Q charge/mA.h``,
``Capacity/mA.h``, ``Efficiency/%``, energies, ``step time/s``, ...) and the technique
name (galvani does not decode it). The first two are derived as EC-Lab does (see
:func:`~operando.io.echem.biologic.eclab_record`); the rest are absent from the Dataset.

Precision: the binary stores ``Ewe/V``, ``I/mA``, ``control/*``, ``P/W`` as float32 and
``time/s``, ``<I>/mA`` (id 11), ``(Q-Qo)/mA.h`` as float64; the export writes them with 8
and 16 significant digits, so the two agree to the text's last digit.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from operando.io.echem.biologic import as_paths, eclab_record
from operando.io.echem.schema import EchemFormatError, EchemRecord, build_echem_dataset

__all__ = ["LOG_SOURCE", "MPR_MAGIC", "MprFile", "data_layout", "mpr_record", "read_mpr",
           "read_mpr_file"]

#: First bytes of every ``.mpr`` file.
MPR_MAGIC = b"BIO-LOGIC MODULAR FILE"
#: ``start_time_source`` of a start read from the file's LOG module.
LOG_SOURCE = "LOG module"
_DATA = b"VMP data  "
#: what galvani raises for a file it cannot decode (besides NotImplementedError)
_GALVANI_ERRORS = (ValueError, AssertionError, OSError, EOFError, KeyError)


@dataclass(frozen=True)
class MprFile:
    """One parsed ``.mpr`` file: raw columns (file units, EC-Lab names) and its start.

    ``acquisition_start``: the LOG module's start (naive potentiostat-local wall time), or
    None when the file has no LOG module (still being written). ``records_declared``: the
    point count in the data module's header; ``pending_bytes``: bytes after the last
    record read (a record being written, or whole records the header does not count yet);
    ``dropped``: what was left out after the data module (an incomplete module), or "".
    """

    path: Path
    acquisition_start: datetime | None
    columns: dict[str, np.ndarray]
    data_module_version: int
    loop_index: np.ndarray | None  # first row of each technique loop, when recorded
    records_declared: int = 0
    pending_bytes: int = 0
    dropped: str = ""

    @property
    def n_records(self) -> int:
        """Records read (rows)."""
        return int(next(iter(self.columns.values())).size) if self.columns else 0

    @property
    def still_written(self) -> str:
        """Why the file looks still being written ("" for a finished file)."""
        parts = []
        if self.acquisition_start is None:
            parts.append("no LOG module yet")
        if self.n_records < self.records_declared or self.pending_bytes:
            parts.append(f"{self.n_records} complete records of {self.records_declared} "
                         f"declared, {self.pending_bytes} bytes pending")
        if self.dropped:
            parts.append(self.dropped)
        return "; ".join(parts)


def _galvani():  # type: ignore[no-untyped-def]
    try:
        from galvani import BioLogic
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError(
            "reading BioLogic .mpr files needs galvani: pip install 'galvani>=0.5'"
        ) from None
    return BioLogic


@dataclass(frozen=True)
class _Prefix:
    """The whole-record prefix of a file still being written, as a complete ``.mpr``."""

    raw: bytes
    declared: int
    records: int
    pending_bytes: int
    dropped: str


def data_layout(body: bytes, version: int) -> tuple[np.ndarray, int] | None:
    """Column IDs and the offset of the first record in a data module's bytes ``body``
    (after its module header), as galvani 0.5 decodes them per data-module ``version``;
    None for a version galvani does not know or a body too short to hold its header.

    Version 0: one byte per ID from offset 5 and records from 100 when byte 5 is non-zero,
    else IDs in the odd bytes of 5 … 5 + 2n and records from 1007; versions 2 and 3:
    little-endian uint16 IDs from offset 5, records from 405 (2) or 406 (3).
    """
    if len(body) < 6:
        return None
    n_columns = body[4]
    try:
        if version == 0 and body[5]:
            ids, first = np.frombuffer(body, "u1", count=n_columns, offset=5), 100
        elif version == 0:
            ids, first = np.frombuffer(body, "u1", count=2 * n_columns, offset=5)[1::2], 1007
        elif version in (2, 3):
            ids, first = np.frombuffer(body, "<u2", count=n_columns, offset=5), 403 + version
        else:
            return None
    except ValueError:  # the IDs run past the bytes present
        return None
    return (ids, first) if len(body) >= first else None


def _walk_modules(raw: bytes, BioLogic: Any) -> tuple[list[dict[str, Any]], str]:
    """The module headers galvani finds (without their data), and why the walk stopped
    early: "" (end of file, or inside the last module), "bytes" (bytes after a module
    that do not start one), "header" (a module header cut short)."""
    buf = io.BytesIO(raw)
    buf.seek(len(BioLogic.MPR_MAGIC))
    modules: list[dict[str, Any]] = []
    try:
        for module in BioLogic.read_VMP_modules(buf, read_module_data=False):
            modules.append(module)
    except ValueError:
        return modules, "bytes"
    except OSError:
        return modules, "header"
    return modules, ""


def _whole_record_prefix(raw: bytes, BioLogic: Any) -> _Prefix | None:
    """A file still being written, cut to its complete records (module docstring), or
    None when ``raw`` is not shaped like one (damaged elsewhere: refused as before)."""
    modules, stop = _walk_modules(raw, BioLogic)
    names = [bytes(m["shortname"]) for m in modules]
    if _DATA not in names:
        return None
    k = names.index(_DATA)
    ends = [int(m["offset"]) + int(m["length"]) for m in modules]
    if any(e > len(raw) for e in ends[:k]) or any(e <= len(raw) for e in ends[k + 1:]):
        return None  # a module before the data cut short, or a whole one after it
    data = modules[k]
    begin = int(data["offset"])
    # bytes after the data module that start no module: records appended past its length
    end = len(raw) if stop == "bytes" and k == len(modules) - 1 else min(ends[k], len(raw))
    body = raw[begin:end]
    layout = data_layout(body, int(data["version"]))
    if layout is None:
        return None
    ids, first = layout
    dtype, _ = BioLogic.VMPdata_dtype_from_colIDs(ids)  # NotImplementedError: unknown ID
    declared = int.from_bytes(body[:4], "little")
    records = min(declared, (len(body) - first) // dtype.itemsize)
    used = first + records * dtype.itemsize
    hdr = BioLogic.VMPmodule_hdr_v2 if "max length" in data else BioLogic.VMPmodule_hdr_v1
    at = begin - hdr.itemsize
    header = bytearray(raw[at:begin])
    off = hdr.fields["length"][1]
    header[off:off + 4] = used.to_bytes(4, "little")
    prefix = raw[:at] + bytes(header) + records.to_bytes(4, "little") + body[4:used]
    dropped = ""
    if k + 1 < len(modules) or stop == "header":
        name = (bytes(modules[k + 1]["shortname"]).decode("latin-1").strip()
                if k + 1 < len(modules) else "next")
        dropped = f"an incomplete {name} module after the data left out"
    return _Prefix(prefix, declared, records, len(body) - used, dropped)


def _parse(raw: bytes, BioLogic: Any) -> tuple[Any, _Prefix | None]:
    """galvani's MPRfile of the whole file; else of its whole-record prefix (a file still
    being written); else galvani's first error."""
    try:
        return BioLogic.MPRfile(io.BytesIO(raw)), None
    except _GALVANI_ERRORS as exc:
        first = exc
    prefix = _whole_record_prefix(raw, BioLogic)
    if prefix is None:
        raise first
    try:
        return BioLogic.MPRfile(io.BytesIO(prefix.raw)), prefix
    except _GALVANI_ERRORS:
        raise first from None


def read_mpr_file(path: str | os.PathLike[str]) -> MprFile:
    """Parse one ``.mpr`` with galvani into columns named as in the EC-Lab text export.

    A finished file is decoded whole. A file still being written (no LOG module; data
    module growing) gives its complete records and ``acquisition_start = None``.
    Raises :class:`EchemFormatError` naming the file when it is missing, not an ``.mpr``,
    damaged (other than cut inside its data module), or of a data-module version or with a
    column ID galvani does not know.
    """
    path = Path(path)
    BioLogic = _galvani()
    try:
        raw = path.read_bytes()
        if not raw.startswith(MPR_MAGIC):
            found = raw[:40] if raw else b"<empty file>"
            raise EchemFormatError(
                f"{path}: not a BioLogic .mpr: expected the file to start with "
                f"{MPR_MAGIC!r}, found {found!r}"
            )
        mpr, prefix = _parse(raw, BioLogic)
    except FileNotFoundError:
        raise EchemFormatError(f"{path}: no such file (expected a BioLogic .mpr)") from None
    except EchemFormatError:
        raise
    except NotImplementedError as exc:  # galvani: "Column ID 999 after column X is unknown"
        raise EchemFormatError(
            f"{path}: unknown column in the data module ({exc}); galvani cannot decode this "
            "column, so the file is refused rather than read without it (export it as .mpt "
            "or update galvani)"
        ) from None
    except _GALVANI_ERRORS as exc:
        text = str(exc) or type(exc).__name__
        raise EchemFormatError(
            f"{path}: galvani could not read this .mpr ({type(exc).__name__}: "
            f"{' '.join(text.split())}); unknown format version or damaged file"
        ) from None
    start = getattr(mpr, "timestamp", None)
    data = mpr.data
    columns: dict[str, np.ndarray] = {}
    for name in data.dtype.names:
        if name == "flags":
            for flag in mpr.flags_dict:
                columns[flag] = np.asarray(mpr.get_flag(flag)).astype(np.int64)
        else:
            columns[name] = np.asarray(data[name]).astype(float)
    loop = None if mpr.loop_index is None else np.asarray(mpr.loop_index, dtype=np.int64)
    return MprFile(
        path=path, acquisition_start=None if start is None else start.replace(tzinfo=None),
        columns=columns, data_module_version=int(mpr.version), loop_index=loop,
        records_declared=int(np.asarray(mpr.npts).ravel()[0]) if prefix is None
        else prefix.declared,
        pending_bytes=0 if prefix is None else prefix.pending_bytes,
        dropped="" if prefix is None else prefix.dropped)


def mpr_record(f: MprFile) -> EchemRecord:
    """One parsed ``.mpr`` as an :class:`~operando.io.echem.schema.EchemRecord`: its start
    from the LOG module; none (``time_utc`` NaT, with a note) for a file still being
    written, whose start :func:`operando.io.echem.eclab_start.eclab_records` supplies."""
    record = eclab_record(
        f.path, f.columns, fmt="biologic-mpr", technique="",
        acquisition_start=f.acquisition_start, start_source=LOG_SOURCE,
        per_file_attrs={"mpr_data_module_version": f.data_module_version,
                        "mpr_records_declared": f.records_declared,
                        "mpr_pending_bytes": f.pending_bytes},
    )
    if f.acquisition_start is not None:
        return record
    return replace(record, time_utc_note=(
        f"unknown: {f.path.name} has no LOG module yet (still being written) and no start "
        "was given (echem.start_time, or EC-Lab's .mpl log beside it); never guessed"))


def read_mpr(
    paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    timezone: str,
    start_time: str | datetime | None = None,
) -> xr.Dataset:
    """Read one ``.mpr`` (or several files of one run) into the normalised Dataset.

    Same schema, names and stitching as :func:`operando.io.echem.biologic.read_mpt`:
    ``time_utc`` from the LOG module's start (naive PC-local time localised in
    ``timezone``, an IANA name). A file still being written (no LOG module) takes its
    start from ``start_time``, else from its ``.mpl`` log
    (:mod:`operando.io.echem.eclab_start`); ``attrs['start_time_source']`` says which.
    """
    from operando.io.echem.eclab_start import eclab_records  # it reads .mpr files with this

    files = as_paths(paths, "read_mpr")
    records = eclab_records(files, ["biologic-mpr"] * len(files), timezone=timezone,
                            start_time=start_time)
    return build_echem_dataset(records, timezone=timezone)
