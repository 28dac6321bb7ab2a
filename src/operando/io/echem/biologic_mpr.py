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
* errors: galvani's own (unknown column ID, unknown data-module version, truncated module)
  become :class:`~operando.io.echem.schema.EchemFormatError` naming the file.

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

import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import xarray as xr

from operando.io.echem.biologic import as_paths, eclab_record
from operando.io.echem.schema import EchemFormatError, EchemRecord, build_echem_dataset
from operando.io.timestamps import zoneinfo_or_raise

__all__ = ["MPR_MAGIC", "MprFile", "mpr_record", "read_mpr", "read_mpr_file"]

#: First bytes of every ``.mpr`` file.
MPR_MAGIC = b"BIO-LOGIC MODULAR FILE"


@dataclass(frozen=True)
class MprFile:
    """One parsed ``.mpr`` file: raw columns (file units, EC-Lab names) and its start."""

    path: Path
    acquisition_start: datetime  # naive, potentiostat-local wall time
    columns: dict[str, np.ndarray]
    data_module_version: int
    loop_index: np.ndarray | None  # first row of each technique loop, when recorded


def _galvani():  # type: ignore[no-untyped-def]
    try:
        from galvani import BioLogic
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError(
            "reading BioLogic .mpr files needs galvani: pip install 'galvani>=0.5'"
        ) from None
    return BioLogic


def read_mpr_file(path: str | os.PathLike[str]) -> MprFile:
    """Parse one ``.mpr`` with galvani into columns named as in the EC-Lab text export.

    Raises :class:`EchemFormatError` naming the file when it is missing, not an ``.mpr``,
    truncated, of a data-module version or with a column ID galvani does not know, or
    without the LOG module that holds the acquisition start.
    """
    path = Path(path)
    BioLogic = _galvani()
    try:
        with path.open("rb") as fh:
            magic = fh.read(len(MPR_MAGIC))
            if magic != MPR_MAGIC:
                found = magic[:40] if magic else b"<empty file>"
                raise EchemFormatError(
                    f"{path}: not a BioLogic .mpr: expected the file to start with "
                    f"{MPR_MAGIC!r}, found {found!r}"
                )
            fh.seek(0)
            mpr = BioLogic.MPRfile(fh)
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
    except (ValueError, AssertionError, OSError, EOFError, KeyError) as exc:
        text = str(exc) or type(exc).__name__
        raise EchemFormatError(
            f"{path}: galvani could not read this .mpr ({type(exc).__name__}: "
            f"{' '.join(text.split())}); unknown format version or damaged file"
        ) from None
    start = getattr(mpr, "timestamp", None)
    if start is None:
        raise EchemFormatError(
            f"{path}: no LOG module with the acquisition start in this .mpr (needed for "
            "absolute time)"
        )
    data = mpr.data
    columns: dict[str, np.ndarray] = {}
    for name in data.dtype.names:
        if name == "flags":
            for flag in mpr.flags_dict:
                columns[flag] = np.asarray(mpr.get_flag(flag)).astype(np.int64)
        else:
            columns[name] = np.asarray(data[name]).astype(float)
    loop = None if mpr.loop_index is None else np.asarray(mpr.loop_index, dtype=np.int64)
    return MprFile(path=path, acquisition_start=start.replace(tzinfo=None), columns=columns,
                   data_module_version=int(mpr.version), loop_index=loop)


def mpr_record(f: MprFile) -> EchemRecord:
    """One parsed ``.mpr`` as an :class:`~operando.io.echem.schema.EchemRecord`."""
    return eclab_record(
        f.path, f.columns, fmt="biologic-mpr", technique="",
        acquisition_start=f.acquisition_start,
        per_file_attrs={"mpr_data_module_version": f.data_module_version},
    )


def read_mpr(
    paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    timezone: str,
) -> xr.Dataset:
    """Read one ``.mpr`` (or several files of one run) into the normalised Dataset.

    Same schema, names and stitching as :func:`operando.io.echem.biologic.read_mpt`:
    ``time_utc`` from the LOG module's start (naive PC-local time localised in
    ``timezone``, an IANA name).
    """
    zoneinfo_or_raise(timezone)  # an unknown zone fails before any file is read
    records = [mpr_record(read_mpr_file(p)) for p in as_paths(paths, "read_mpr")]
    return build_echem_dataset(records, timezone=timezone)
