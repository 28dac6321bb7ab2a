"""NeXus (HDF5) writer for time-resolved area-detector XRD, usable frame by frame.

Layout written by :class:`NexusXrdWriter`::

    /entry                              NXentry   start_time (ISO-8601 UTC), end_time, title
    /entry/instrument                   NXinstrument
    /entry/instrument/detector          NXdetector
        data        (n, ny, nx) uint32, chunks (1, ny, nx), bitshuffle-LZ4
        timestamp   (n,) float64, epoch s of exposure start, beamline clock
        count_time  (n,) float64, s
        frame_index (n,) int64
        description, distance (m), x_pixel_size, y_pixel_size (m)
    /entry/instrument/monitor           NXmonitor  data (n,) float64 counts per frame
    /entry/instrument/monochromator     NXmonochromator  wavelength (Å), energy (keV)
    /entry/data                         NXdata (signal="data"), data = hard link to the
                                        detector data (attribute target = its path)

The file is written under a temporary name beside the final one
(:func:`operando.io.atomic.atomic_path`) and renamed only when the context manager exits
without error; on any error (including while the layout is created in ``__enter__`` or
finalised in ``__exit__``) the file is closed and the partial file removed.
"""

from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path
from types import TracebackType

import h5py
import hdf5plugin
import numpy as np

from operando.constants import HC_KEV_A
from operando.io.atomic import atomic_path
from operando.io.nxutil import nx_group, write_root_attrs
from operando.io.timestamps import epoch_to_iso

__all__ = [
    "DETECTOR_DATA_PATH",
    "MONITOR_DATA_PATH",
    "TIMESTAMP_PATH",
    "NexusXrdWriter",
]

DETECTOR_DATA_PATH = "/entry/instrument/detector/data"
TIMESTAMP_PATH = "/entry/instrument/detector/timestamp"
MONITOR_DATA_PATH = "/entry/instrument/monitor/data"
COUNT_TIME_PATH = "/entry/instrument/detector/count_time"


def _scalar(parent: h5py.Group, name: str, value: float | str, **attrs: str) -> h5py.Dataset:
    d = parent.create_dataset(name, data=value)
    for k, v in attrs.items():
        d.attrs[k] = v
    return d


class NexusXrdWriter:
    """Context manager that appends detector frames to a NeXus file.

    >>> with NexusXrdWriter(path, frame_shape=(195, 487), wavelength_A=0.2066,
    ...                     start_time_epoch_s=t0, title="...") as w:
    ...     for frame, ts, mon in ...:
    ...         w.append(frame, timestamp_s=ts, count_time_s=10.0, monitor=mon)

    Memory use is one frame: every ``append`` writes its frame to disk.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        frame_shape: tuple[int, int],
        wavelength_A: float,
        start_time_epoch_s: float,
        title: str,
        detector_name: str = "",
        distance_m: float | None = None,
        pixel_size_m: tuple[float, float] | None = None,
        n_frames_hint: int = 0,
    ) -> None:
        self.path = Path(path)
        if not (math.isfinite(float(wavelength_A)) and float(wavelength_A) > 0):
            raise ValueError(
                f"{self.path}: wavelength_A must be a positive number of ångström, "
                f"found {wavelength_A!r}"
            )
        self.frame_shape = (int(frame_shape[0]), int(frame_shape[1]))
        self.wavelength_A = float(wavelength_A)
        self.start_time_epoch_s = float(start_time_epoch_s)
        self.title = title
        self.detector_name = detector_name
        self.distance_m = distance_m
        self.pixel_size_m = pixel_size_m
        self.n_frames_hint = int(n_frames_hint)
        self.n_frames = 0
        self._file: h5py.File | None = None
        self._stack: contextlib.ExitStack | None = None
        self._last_end_s: float | None = None

    # -- context manager -------------------------------------------------------------
    def __enter__(self) -> NexusXrdWriter:
        with contextlib.ExitStack() as stack:
            # atomic_path is entered first, so it is left last: the HDF5 file is closed
            # before the temporary is renamed (or removed on error)
            tmp = stack.enter_context(atomic_path(self.path))
            f = stack.enter_context(h5py.File(tmp, "w"))
            self._create_layout(f)
            self._file = f
            self._stack = stack.pop_all()
        # an exception above unwound the stack: file closed, temporary removed
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        stack, f = self._stack, self._file
        self._stack = self._file = None
        if stack is None:
            return None
        if exc_type is None and f is not None:
            try:
                self._finalise(f)
            except BaseException as err:  # close and remove the partial file, then raise
                if not stack.__exit__(type(err), err, err.__traceback__):
                    raise
                return None
        return stack.__exit__(exc_type, exc, tb)

    # -- writing ---------------------------------------------------------------------
    def _create_layout(self, f: h5py.File) -> None:
        write_root_attrs(f, file_name=self.path.name, creator="operando.io.xrd.nexus")
        entry = nx_group(f, "entry", "NXentry")
        f.attrs["default"] = "entry"
        entry.attrs["default"] = "data"
        _scalar(entry, "start_time", epoch_to_iso(self.start_time_epoch_s))
        _scalar(entry, "title", self.title)
        inst = nx_group(entry, "instrument", "NXinstrument")
        det = nx_group(inst, "detector", "NXdetector")
        ny, nx = self.frame_shape
        n0 = self.n_frames_hint
        data = det.create_dataset(
            "data", shape=(0, ny, nx), maxshape=(None, ny, nx), dtype=np.uint32,
            chunks=(1, ny, nx), **hdf5plugin.Bitshuffle(cname="lz4"),
        )
        data.attrs["interpretation"] = "image"
        data.attrs["units"] = "counts"
        data.attrs["long_name"] = "detector counts per pixel"
        data.attrs["target"] = DETECTOR_DATA_PATH
        for name, dtype, attrs in (
            ("timestamp", np.float64, {
                "units": "s",
                "long_name": "exposure start, beamline clock, seconds since 1970-01-01T00:00Z",
            }),
            ("count_time", np.float64, {"units": "s", "long_name": "exposure time"}),
            ("frame_index", np.int64, {"long_name": "frame number, 0-based"}),
        ):
            d = det.create_dataset(name, shape=(0,), maxshape=(None,), dtype=dtype,
                                   chunks=(max(min(n0, 4096), 256),))
            for k, v in attrs.items():
                d.attrs[k] = v
        if self.detector_name:
            _scalar(det, "description", self.detector_name)
        if self.distance_m is not None:
            _scalar(det, "distance", float(self.distance_m), units="m")
        if self.pixel_size_m is not None:
            _scalar(det, "y_pixel_size", float(self.pixel_size_m[0]), units="m")
            _scalar(det, "x_pixel_size", float(self.pixel_size_m[1]), units="m")
        mon = nx_group(inst, "monitor", "NXmonitor")
        md = mon.create_dataset("data", shape=(0,), maxshape=(None,), dtype=np.float64,
                                chunks=(max(min(n0, 4096), 256),))
        md.attrs["units"] = "counts"
        md.attrs["long_name"] = "incident beam monitor counts per frame"
        mono = nx_group(inst, "monochromator", "NXmonochromator")
        _scalar(mono, "wavelength", self.wavelength_A, units="angstrom")
        _scalar(mono, "energy", HC_KEV_A / self.wavelength_A, units="keV")
        nxdata = nx_group(entry, "data", "NXdata")
        nxdata.attrs["signal"] = "data"
        nxdata["data"] = data  # hard link: the same dataset under both names

    def append(
        self, frame: np.ndarray, *, timestamp_s: float, count_time_s: float, monitor: float
    ) -> None:
        """Append one frame (uint32, ``frame_shape``) with its beamline timestamp (epoch s)."""
        if self._file is None:
            raise RuntimeError(f"{self.path}: append() outside the 'with' block")
        frame = np.asarray(frame)
        if frame.shape != self.frame_shape or frame.dtype != np.uint32:
            raise ValueError(
                f"{self.path}: frame {self.n_frames} has shape {frame.shape} dtype {frame.dtype},"
                f" expected {self.frame_shape} uint32"
            )
        det = self._file["entry/instrument/detector"]
        n = self.n_frames
        data = det["data"]
        data.resize(n + 1, axis=0)
        data[n] = frame
        for name, value in (
            ("timestamp", timestamp_s), ("count_time", count_time_s), ("frame_index", n),
        ):
            d = det[name]
            d.resize(n + 1, axis=0)
            d[n] = value
        md = self._file["entry/instrument/monitor/data"]
        md.resize(n + 1, axis=0)
        md[n] = monitor
        self.n_frames = n + 1
        self._last_end_s = float(timestamp_s) + float(count_time_s)

    def _finalise(self, f: h5py.File) -> None:
        if self._last_end_s is not None:
            _scalar(f["entry"], "end_time", epoch_to_iso(self._last_end_s))
