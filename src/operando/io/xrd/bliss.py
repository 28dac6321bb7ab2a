"""Bliss / ESRF-style HDF5 output: a master scan file plus LIMA detector files.

Layout written (what :func:`write_lima_file` and :func:`write_bliss_master` make)::

    <dir>/<master>.h5                       NXroot
      /{n}.1                                NXentry, one per scan, n = 1, 2, ...
        title                               str, e.g. "ascan sz 0.00944 0.16056 8 8"
        start_time, end_time                ISO-8601 UTC strings with offset (+00:00)
        instrument/                         NXinstrument
          positioners/                      NXcollection
            <motor>                         (n_points,) float64, attrs units
          <detector>/                       NXdetector
            data                            ExternalLink -> <lima file>:/entry_0000/measurement/data
        measurement/                        NXcollection
          <counter>                         (n_points,) float64, attrs units (epoch, sz, mon, ...)
          <detector>                        SoftLink -> /{n}.1/instrument/<detector>/data
    <dir>/scan{n:04d}/<detector>_0000.h5    LIMA file, NXroot
      /entry_0000                           NXentry
        measurement/data                    (n_points, ny, nx), chunks (1, ny, nx),
                                            bitshuffle-LZ4 (HDF5 filter 32008)
        instrument/<detector>/data          hard link to the same dataset (NXdetector)

Energy-dispersive scans (what :func:`write_bliss_mca_master` makes): the same
master layout, with the spectra inside the master instead of LIMA files::

    <dir>/<master>.h5                       NXroot
      /{n}.1                                NXentry (title, start_time, end_time as above)
        instrument/positioners/<motor>      (n_points,) float64, attrs units
        instrument/<mca>/                   NXdetector
          data                              (n_points, n_channels) uint32 counts, chunks
                                            (1, n_channels), gzip (built into HDF5)
          calibration                       (3,) float64 [a, b, c], attrs units="keV",
                                            formula="E = a + b*channel + c*channel**2 ..."
          two_theta                         float64 scalar, attrs units="degree"
        measurement/<counter>               (n_points,) float64, attrs units
        measurement/<mca>                   SoftLink -> /{n}.1/instrument/<mca>/data

External-link file names are relative to the master file's folder, so the whole
tree can be moved. Every file is written under a temporary name and renamed
when complete; the LIMA files are written first, the master last, so a master
on disk always points at whole data files.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import hdf5plugin
import numpy as np

from operando.io.atomic import atomic_path
from operando.io.nxutil import nx_group, write_root_attrs
from operando.io.timestamps import epoch_to_iso

LIMA_DATA_PATH = "/entry_0000/measurement/data"
MCA_CALIBRATION_FORMULA = "E = a + b*channel + c*channel**2 (channel 0-based)"


def lima_file_name(scan_number: int, detector: str) -> str:
    """Path of scan ``n``'s LIMA file relative to the master's folder."""
    return f"scan{scan_number:04d}/{detector}_0000.h5"


@dataclass(frozen=True)
class BlissScan:
    """Metadata of one Bliss scan (one NXentry ``"{number}.1"``).

    ``positioners`` and ``counters`` map a name to ``(values per point, units)``;
    ``lima_file`` is relative to the master's folder (see :func:`lima_file_name`).
    """

    number: int
    title: str
    start_epoch_s: float
    end_epoch_s: float
    n_points: int
    frame_shape: tuple[int, int]
    lima_file: str
    positioners: Mapping[str, tuple[np.ndarray, str]] = field(default_factory=dict)
    counters: Mapping[str, tuple[np.ndarray, str]] = field(default_factory=dict)


def _check_frame(path: Path, n: int, frame: np.ndarray, shape: tuple[int, int],
                 dtype: np.dtype) -> np.ndarray:
    """``frame`` as ``dtype``, refusing a wrong shape or values the dtype cannot hold."""
    frame = np.asarray(frame)
    if frame.shape != shape:
        raise ValueError(f"{path}: frame {n} has shape {frame.shape}, expected {shape}")
    if frame.dtype == dtype or np.can_cast(frame.dtype, dtype, casting="safe"):
        return frame.astype(dtype, copy=False)
    if frame.dtype.kind in "iub" and dtype.kind in "iu":
        info = np.iinfo(dtype)
        lo, hi = (int(frame.min()), int(frame.max())) if frame.size else (0, 0)
        if info.min <= lo and hi <= info.max:
            return frame.astype(dtype)
        raise ValueError(
            f"{path}: frame {n} holds values {lo}..{hi} outside the {dtype} range "
            f"{info.min}..{info.max}; expected detector counts"
        )
    raise ValueError(
        f"{path}: frame {n} has dtype {frame.dtype}, expected {dtype} (or an integer type "
        "whose values fit); convert the counts explicitly rather than let them be cast"
    )


def write_lima_file(
    path: str | Path,
    frames: Iterable[np.ndarray],
    *,
    n_frames: int,
    frame_shape: tuple[int, int],
    detector: str = "pilatus",
    dtype: np.dtype | type = np.uint32,
) -> Path:
    """Write a LIMA-style detector file, consuming ``frames`` one at a time.

    ``frames`` may be a generator: only one frame is held in memory. The data
    set is ``(n_frames, ny, nx)`` of ``dtype``, one chunk per frame, compressed
    with bitshuffle-LZ4. Raises ``ValueError`` naming the file when the number
    or shape of the frames does not match, or a frame's values would not survive
    the cast to ``dtype`` (floats, negatives or overflow into ``uint32``).
    """
    path = Path(path)
    ny, nx = frame_shape
    target = np.dtype(dtype)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        write_root_attrs(f, file_name=path.name, creator="operando.io.xrd.bliss (LIMA layout)")
        entry = nx_group(f, "entry_0000", "NXentry")
        meas = nx_group(entry, "measurement", "NXcollection")
        dset = meas.create_dataset(
            "data", shape=(n_frames, ny, nx), dtype=dtype, chunks=(1, ny, nx),
            **hdf5plugin.Bitshuffle(cname="lz4"),
        )
        dset.attrs["interpretation"] = "image"
        det = nx_group(nx_group(entry, "instrument", "NXinstrument"), detector, "NXdetector")
        det["data"] = dset  # hard link, as LIMA does
        n = 0
        for frame in frames:
            if n >= n_frames:
                raise ValueError(f"{path}: more than the declared {n_frames} frames")
            dset[n] = _check_frame(path, n, frame, (ny, nx), target)
            n += 1
        if n != n_frames:
            raise ValueError(f"{path}: got {n} frames, declared {n_frames}")
    return path


def _scan_entry(f: h5py.File, name: str,
                scan: BlissScan | BlissMcaScan) -> tuple[h5py.Group, h5py.Group]:
    """The NXentry ``name`` of a scan with its title, start/end times and positioners;
    returns (entry, instrument)."""
    entry = nx_group(f, name, "NXentry")
    entry["title"] = scan.title
    entry["start_time"] = epoch_to_iso(scan.start_epoch_s)
    entry["end_time"] = epoch_to_iso(scan.end_epoch_s)
    inst = nx_group(entry, "instrument", "NXinstrument")
    pos = nx_group(inst, "positioners", "NXcollection")
    for motor, (values, units) in scan.positioners.items():
        ds = pos.create_dataset(motor, data=np.asarray(values, dtype=float))
        ds.attrs["units"] = units
    return entry, inst



def _measurement(entry: h5py.Group, name: str, scan: BlissScan | BlissMcaScan,
                 detector: str) -> None:
    """The scan's ``measurement`` group: its counters (with units) and a soft link to the
    detector data."""
    meas = nx_group(entry, "measurement", "NXcollection")
    for counter, (values, units) in scan.counters.items():
        ds = meas.create_dataset(counter, data=np.asarray(values, dtype=float))
        ds.attrs["units"] = units
    meas[detector] = h5py.SoftLink(f"/{name}/instrument/{detector}/data")


def write_bliss_master(
    path: str | Path, scans: Sequence[BlissScan], *, detector: str = "pilatus"
) -> Path:
    """Write the Bliss master file linking each scan's LIMA data (see module docstring).

    The LIMA files should exist already (they are not opened here; an external
    link is only a file name and a data set path).
    """
    path = Path(path)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        write_root_attrs(f, file_name=path.name, creator="operando.io.xrd.bliss (Bliss layout)")
        for scan in scans:
            name = f"{scan.number}.1"
            entry, inst = _scan_entry(f, name, scan)
            det = nx_group(inst, detector, "NXdetector")
            det["data"] = h5py.ExternalLink(scan.lima_file, LIMA_DATA_PATH)
            det.attrs["lima_file"] = scan.lima_file
            _measurement(entry, name, scan, detector)
    return path


@dataclass(frozen=True)
class BlissMcaScan:
    """One energy-dispersive Bliss scan (NXentry ``"{number}.1"``) with its spectra.

    ``spectra`` is (n_points, n_channels) counts; ``calibration_keV`` is (a, b, c) of
    E = a + b·ch + c·ch² keV (ch 0-based); ``two_theta_deg`` the fixed scattering angle.
    ``positioners`` and ``counters`` as in :class:`BlissScan`, one value per point.
    """

    number: int
    title: str
    start_epoch_s: float
    end_epoch_s: float
    spectra: np.ndarray
    calibration_keV: tuple[float, float, float]
    two_theta_deg: float
    positioners: Mapping[str, tuple[np.ndarray, str]] = field(default_factory=dict)
    counters: Mapping[str, tuple[np.ndarray, str]] = field(default_factory=dict)


def write_bliss_mca_master(
    path: str | Path, scans: Sequence[BlissMcaScan], *, detector: str = "mca",
    dtype: np.dtype | type = np.uint32,
) -> Path:
    """Write an energy-dispersive Bliss master (see the module docstring), atomically.

    Raises ``ValueError`` naming the file and scan when the spectra are not a 2D array
    of counts that fit ``dtype``, the calibration is not three numbers, or a positioner
    or counter does not hold one value per point.
    """
    path = Path(path)
    target = np.dtype(dtype)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        write_root_attrs(f, file_name=path.name, creator="operando.io.xrd.bliss (Bliss MCA layout)")
        for scan in scans:
            name = f"{scan.number}.1"
            spectra = np.asarray(scan.spectra)
            if spectra.ndim != 2:
                raise ValueError(f"{path}: scan {name} spectra have shape {spectra.shape}, "
                                 "expected (n_points, n_channels)")
            spectra = _check_frame(path, scan.number, spectra, spectra.shape, target)
            n_points = spectra.shape[0]
            calib = np.asarray(scan.calibration_keV, dtype=float)
            if calib.shape != (3,):
                raise ValueError(f"{path}: scan {name} calibration has shape {calib.shape}, "
                                 "expected (3,) = [a, b, c] keV")
            for kind, items in (("positioner", scan.positioners), ("counter", scan.counters)):
                for key, (values, _) in items.items():
                    if np.shape(values) != (n_points,):
                        raise ValueError(
                            f"{path}: scan {name} {kind} {key!r} has shape "
                            f"{np.shape(values)}, expected ({n_points},) (one per spectrum)")
            entry, inst = _scan_entry(f, name, scan)
            det = nx_group(inst, detector, "NXdetector")
            data = det.create_dataset(
                "data", data=spectra, chunks=(1, spectra.shape[1]) if spectra.size else None,
                compression="gzip" if spectra.size else None)
            data.attrs["interpretation"] = "spectrum"
            data.attrs["units"] = "counts"
            cal = det.create_dataset("calibration", data=calib)
            cal.attrs["units"] = "keV"
            cal.attrs["formula"] = MCA_CALIBRATION_FORMULA
            tth = det.create_dataset("two_theta", data=float(scan.two_theta_deg))
            tth.attrs["units"] = "degree"
            _measurement(entry, name, scan, detector)
    return path
