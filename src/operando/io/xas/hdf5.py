"""Bliss-like HDF5 files of step-scanned XAS (one NXentry per scan).

Layout written by :func:`write_xas_scans` (and read by :func:`read_xas_scans`)::

    /                                   NX_class=NXroot, creator, file_name, file_time
    /<n>.1/                             NX_class=NXentry   (n = 1, 2, ...)
        title           "xanes <n>"
        start_time      ISO-8601 UTC with explicit offset, e.g. 2026-03-14T08:30:11.7+00:00
        end_time        ISO-8601 UTC
        measurement/                    NX_class=NXcollection
            energy      (npts,) float64, units="eV"  — monochromator reading
            I0, It, Iref (npts,) counts, units="counts" (also If)
            epoch       (npts,) float64, units="s"  — beamline epoch of each point
            <other>     (npts,) units only when given in XasScan.measurement_units
        instrument/                     NX_class=NXinstrument
            positioners/                NX_class=NXcollection
                energy  hard link to measurement/energy
                <motor> scalar start positions (e.g. sample_x_mm)

The file is written under a temporary name in the same folder and renamed when
complete, so a file at the final name is always whole. :func:`read_xas_scans` reads
the entries named ``<n>.1`` only (sub-scans ``<n>.2`` and other groups are ignored).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from operando.io.atomic import atomic_path
from operando.io.errors import InputFileError
from operando.io.nxutil import as_str, nx_group, write_root_attrs
from operando.io.timestamps import parse_time_utc
from operando.io.xrd.frame_segments import MIN_EPOCH_S

__all__ = [
    "MEASUREMENT_UNITS",
    "XasChannels",
    "XasScan",
    "XasScanFileError",
    "read_xas_channels",
    "read_xas_scans",
    "write_xas_scans",
]

#: Units written on ``measurement/`` datasets by name; other datasets carry a ``units``
#: attribute only when :attr:`XasScan.measurement_units` gives one.
MEASUREMENT_UNITS = {
    "energy": "eV", "epoch": "s", "I0": "counts", "It": "counts", "If": "counts",
    "Iref": "counts",
}
_SCAN_ENTRY = re.compile(r"(\d+)\.1")


class XasScanFileError(InputFileError):
    """An XAS scan file does not have the expected layout (the message names file and path)."""


@dataclass
class XasScan:
    """One step scan: per-point arrays under ``measurement`` plus scan metadata.

    ``measurement`` maps dataset names to 1-D arrays of equal length; it must hold
    ``energy`` (eV). ``positioners`` holds scalar motor positions at scan start.
    ``measurement_units`` gives units of measurement datasets beyond
    :data:`MEASUREMENT_UNITS` (or overrides them).
    """

    number: int
    title: str
    start_time: str
    end_time: str
    measurement: dict[str, np.ndarray]
    positioners: dict[str, float] = field(default_factory=dict)
    positioner_units: dict[str, str] = field(default_factory=dict)
    measurement_units: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.number}.1"


def _check_scan(path: Path, scan: XasScan) -> None:
    if "energy" not in scan.measurement:
        raise XasScanFileError(
            f"{path}: scan {scan.name} has no 'energy' in measurement; found "
            f"{sorted(scan.measurement)}"
        )
    sizes = {k: np.asarray(v).shape for k, v in scan.measurement.items()}
    if any(len(s) != 1 for s in sizes.values()) or len({s[0] for s in sizes.values()}) != 1:
        raise XasScanFileError(
            f"{path}: scan {scan.name} measurement arrays must be 1-D of equal length; "
            f"found shapes {sizes}"
        )


def write_xas_scans(
    path: str | os.PathLike[str],
    scans: Iterable[XasScan],
    *,
    attrs: Mapping[str, str] | None = None,
) -> Path:
    """Write scans to ``path`` in the Bliss-like layout above (atomic rename).

    ``attrs`` are extra string attributes on the root group.
    """
    p = Path(path)
    with atomic_path(p) as tmp, h5py.File(tmp, "w") as f:
        write_root_attrs(f, file_name=p.name, creator="operando")
        for key, value in (attrs or {}).items():
            f.attrs[key] = value
        for scan in scans:
            _check_scan(p, scan)
            if scan.name in f:
                raise XasScanFileError(f"{p}: duplicate scan number {scan.number}")
            entry = nx_group(f, scan.name, "NXentry")
            entry["title"] = scan.title
            entry["start_time"] = scan.start_time
            entry["end_time"] = scan.end_time
            meas = nx_group(entry, "measurement", "NXcollection")
            for key, values in scan.measurement.items():
                ds = meas.create_dataset(key, data=np.asarray(values))
                unit = scan.measurement_units.get(key, MEASUREMENT_UNITS.get(key))
                if unit:
                    ds.attrs["units"] = unit
            pos = nx_group(nx_group(entry, "instrument", "NXinstrument"), "positioners",
                           "NXcollection")
            pos["energy"] = meas["energy"]  # hard link: the scanned axis
            for key, value in scan.positioners.items():
                ds = pos.create_dataset(key, data=float(value))
                if key in scan.positioner_units:
                    ds.attrs["units"] = scan.positioner_units[key]
    return p


def read_xas_scans(path: str | os.PathLike[str]) -> list[XasScan]:
    """Read every ``<n>.1`` entry of a Bliss-like XAS scan file, in scan order.

    Other top-level names (sub-scans such as ``1.2``, non-scan groups) are ignored.

    Raises :class:`XasScanFileError` naming the file and dataset path when an
    entry lacks ``measurement/energy`` or ``start_time``/``end_time``.
    """
    p = Path(path)
    if not p.is_file():
        raise XasScanFileError(f"{p}: no such file (expected a Bliss-like XAS scan HDF5 file)")
    out: list[XasScan] = []
    with h5py.File(p, "r") as f:
        numbered = sorted(
            (int(m.group(1)), k) for k in f
            if (m := _SCAN_ENTRY.fullmatch(k)) and isinstance(f[k], h5py.Group)
        )
        for number, name in numbered:
            entry = f[name]
            for required in ("measurement/energy", "start_time", "end_time"):
                if required not in entry:
                    raise XasScanFileError(
                        f"{p}: /{name}/{required} missing; expected a Bliss-like scan entry "
                        f"with measurement/energy, start_time, end_time; found {sorted(entry)}"
                    )
            meas = {
                k: entry["measurement"][k][()]
                for k in entry["measurement"]
                if isinstance(entry["measurement"][k], h5py.Dataset)
            }
            positioners: dict[str, float] = {}
            units: dict[str, str] = {}
            meas_units = {
                k: as_str(entry["measurement"][k].attrs["units"]) for k in meas
                if "units" in entry["measurement"][k].attrs
                and MEASUREMENT_UNITS.get(k) != as_str(entry["measurement"][k].attrs["units"])
            }
            if "instrument/positioners" in entry:
                for k, ds in entry["instrument/positioners"].items():
                    if isinstance(ds, h5py.Dataset) and ds.shape == ():
                        positioners[k] = float(ds[()])
                        if "units" in ds.attrs:
                            units[k] = as_str(ds.attrs["units"])
            out.append(
                XasScan(
                    number=number,
                    title=as_str(entry["title"][()]) if "title" in entry else name,
                    start_time=as_str(entry["start_time"][()]),
                    end_time=as_str(entry["end_time"][()]),
                    measurement=meas,
                    positioners=positioners,
                    positioner_units=units,
                    measurement_units=meas_units,
                )
            )
    if not out:
        raise XasScanFileError(f"{p}: no scan entries (expected groups named '<n>.1')")
    return out


@dataclass
class XasChannels:
    """The channels of one scan named by a config (see :func:`read_xas_channels`).

    ``energy`` (eV, monochromator reading), ``i0``/``it``/``if_``/``iref`` counts (None
    when not asked for), ``epoch`` (s, beamline epoch of each point, or None),
    ``start_epoch_s``/``end_epoch_s`` (s; from the start/end time datasets, else from the
    point epochs, else NaN), ``source`` = ``file::/entry``.
    """

    path: Path
    entry: str
    number: int
    energy: np.ndarray
    i0: np.ndarray
    it: np.ndarray | None
    if_: np.ndarray | None
    iref: np.ndarray | None
    epoch: np.ndarray | None
    start_epoch_s: float
    end_epoch_s: float

    @property
    def source(self) -> str:
        return f"{self.path}::/{self.entry}"


def _data_written(energy: np.ndarray, epoch: np.ndarray | None) -> bool:
    """A scan's data are written: a non-zero energy axis and (per-point epochs) every epoch
    a finite epoch time (after 1973), not a zero fill."""
    if energy.size == 0 or not np.any(energy):
        return False
    return epoch is None or bool(np.all(np.isfinite(epoch)) and np.all(epoch > MIN_EPOCH_S))


def _iso_epoch(path: Path, where: str, text: str) -> float:
    try:  # Bliss writes ISO-8601 with its UTC offset; there is no zone setting to fall back on
        when, _ = parse_time_utc(text, None, tz_key="(for HDF5 scans) a UTC offset in the file")
    except ValueError as exc:
        raise XasScanFileError(f"{path}: {where}: {exc}") from None
    return when.timestamp()


def read_xas_channels(
    path: str | os.PathLike[str],
    *,
    scans: str = "*",
    energy_path: str = "measurement/energy",
    i0_path: str = "measurement/I0",
    it_path: str | None = "measurement/It",
    if_path: str | None = None,
    iref_path: str | None = "measurement/Iref",
    epoch_path: str | None = "measurement/epoch",
    start_time_path: str | None = "start_time",
    end_time_path: str | None = "end_time",
    swmr: bool = False,
) -> list[XasChannels]:
    """The named channels of every ``<n>.1`` entry matching the glob ``scans``, in scan order.

    Paths are relative to each entry. A missing or malformed dataset raises
    :class:`XasScanFileError` naming the file, the dataset path, what was expected and what
    was found (the entry's members). ``epoch_path`` and the start/end paths are optional:
    absent datasets give None / NaN.

    ``swmr``: the file is still being written (a live run; opened as an SWMR reader). Only
    complete scans are returned: a scan counts once its end time is written (the dataset
    at ``end_time_path``, when given; an entry without it is still being acquired and is
    not read) and its data are (a non-zero energy axis and, with per-point epochs, every
    one a finite epoch time: a scan pre-extended with zeros is not one yet). No complete
    scan gives an empty list instead of an error.
    """
    from fnmatch import fnmatchcase

    p = Path(path)
    if not p.is_file():
        raise XasScanFileError(f"{p}: no such file (expected a Bliss-like XAS scan HDF5 file)")
    out: list[XasChannels] = []
    try:
        f = h5py.File(p, "r", swmr=True) if swmr else h5py.File(p, "r")
    except OSError as exc:
        raise XasScanFileError(f"{p}: not a readable HDF5 file ({exc})") from None
    with f:
        numbered = sorted(
            (int(m.group(1)), k) for k in f
            if (m := _SCAN_ENTRY.fullmatch(k)) and isinstance(f[k], h5py.Group)
            and fnmatchcase(k, scans)
        )
        if not numbered and not swmr:
            raise XasScanFileError(f"{p}: no scan entry matches {scans!r} (expected groups named "
                                   f"'<n>.1'); found top-level names {sorted(f)[:20]}")
        for number, name in numbered:
            entry = f[name]
            if swmr and end_time_path and end_time_path not in entry:
                continue  # being acquired: its end is not written yet

            def array(rel: str, key: str, *, entry: h5py.Group = entry, name: str = name
                      ) -> np.ndarray:
                if rel not in entry:
                    parent = rel.rsplit("/", 1)[0] if "/" in rel else ""
                    found = sorted(entry[parent]) if parent and parent in entry else sorted(entry)
                    raise XasScanFileError(
                        f"{p}: /{name}/{rel} missing (config xanes.{key}); expected a 1-D "
                        f"dataset; found {found} under /{name}/{parent}".rstrip("/"))
                ds = entry[rel]
                if not isinstance(ds, h5py.Dataset) or ds.ndim != 1:
                    shape = getattr(ds, "shape", "a group")
                    raise XasScanFileError(f"{p}: /{name}/{rel} (config xanes.{key}): expected a "
                                           f"1-D dataset, found {shape}")
                return np.asarray(ds[()], dtype=float)

            energy = array(energy_path, "energy_path")
            chans: dict[str, np.ndarray | None] = {"i0": array(i0_path, "i0_path")}
            for attr, rel, key in (("it", it_path, "it_path"), ("if_", if_path, "if_path"),
                                   ("iref", iref_path, "iref_path")):
                chans[attr] = None if rel is None else array(rel, key)
            epoch = array(epoch_path, "epoch_path") if epoch_path and epoch_path in entry \
                else None
            for key, values in (*chans.items(), ("epoch", epoch)):
                if values is not None and values.shape != energy.shape:
                    raise XasScanFileError(
                        f"{p}: /{name}: channel {key} has {values.size} points but "
                        f"{energy_path} has {energy.size}; expected equal lengths")
            if swmr and not _data_written(energy, epoch):
                continue  # a pre-extended slot, not yet filled
            t0 = t1 = float("nan")
            for rel, which in ((start_time_path, "start"), (end_time_path, "end")):
                if rel and rel in entry:
                    value = _iso_epoch(p, f"/{name}/{rel}", as_str(entry[rel][()]))
                    if which == "start":
                        t0 = value
                    else:
                        t1 = value
            if epoch is not None and epoch.size > 1 and np.isfinite(epoch).all():
                half = 0.5 * float(np.median(np.diff(epoch)))
                if not np.isfinite(t0):
                    t0 = float(epoch.min() - half)
                if not np.isfinite(t1):
                    t1 = float(epoch.max() + half)
            out.append(XasChannels(path=p, entry=name, number=number, energy=energy,
                                   i0=chans["i0"], it=chans["it"], if_=chans["if_"],  # type: ignore[arg-type]
                                   iref=chans["iref"], epoch=epoch, start_epoch_s=t0,
                                   end_epoch_s=t1))
    return out
