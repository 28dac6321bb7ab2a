"""Detector frame stacks, opened lazily: NeXus, Bliss, Eiger, plain HDF5 and image series.

:func:`open_frames` looks at the input files once and returns a :class:`FrameSource`: a
small picklable description (file names, HDF5 paths, frame counts, never an open handle)
whose :meth:`FrameSource.read` opens, reads one frame range and closes, so Dask worker
processes read their own chunks and a run never has to fit in memory.

Layouts (``FrameSource.layout``)
--------------------------------
``nexus``
    An NXdetector group's ``data`` (``/entry/instrument/detector/data`` as written by
    :class:`operando.io.xrd.nexus.NexusXrdWriter`; a LIMA file's ``/entry_0000/instrument/<det>``).
``bliss``
    A Bliss scan file: top-level entries named ``<scan>.<n>`` (``1.1``, ``2.1``, ...) whose
    ``instrument/<det>/data`` is an external link or a virtual dataset into LIMA files, and
    ``measurement/<det>`` a link to it. External links are followed to the LIMA file, which
    is then read directly; a virtual dataset is read through the scan file, after checking
    that every source file exists and holds the frames mapped from it (HDF5 would otherwise
    return fill values silently).
``eiger``
    A Dectris master ``xxx_master.h5`` whose ``/entry/data/data_000001``, ``data_000002``, ...
    are external links to ``xxx_data_00000k.h5:/entry/data/data`` (attributes
    ``image_nr_low``/``image_nr_high``, 1-based); each data file is one segment.
``hdf5``
    Any other HDF5 file: its one 3D dataset, or the one named with ``dataset``.
``images``
    Files fabio reads (EDF, CBF, TIFF, ...), given by globs, in natural order (``frame_9``
    before ``frame_10``); a multi-frame EDF/TIFF contributes all its frames.

Auto-detection (``dataset=None``)
---------------------------------
An HDF5 file is an Eiger master when ``/entry/data`` holds ``data_NNNNNN`` links. Otherwise
every dataset named ``data`` in an ``NX_class = NXdetector`` group is a candidate (hard
links, soft links and external links to the same object count once). One candidate is
taken; several (e.g. several Bliss scans) is an error listing them: pass ``dataset`` (an
HDF5 path, or a pattern such as ``"/*.1/measurement/pilatus"`` matched level by level with
:mod:`fnmatch`, every match being a segment, in natural order), or ``"file.h5::/path"``.
With no NXdetector data, the file's single 3D numeric dataset is taken (several or none:
an error listing what was found). A 2D dataset named explicitly is a one-frame stack.

Per-frame metadata
------------------
``timestamp_path``, ``count_time_path`` and ``monitor_path`` name HDF5 datasets (absolute,
or relative to the entry holding the frames, e.g. ``"measurement/epoch"`` for every Bliss
scan). When not given they are searched in the group holding the frames, the group named
by the data set's NeXus ``target`` attribute, ``<entry>/measurement`` and the entry's
NXdetector / NXmonitor groups, under the names in :data:`TIMESTAMP_NAMES`,
:data:`COUNT_TIME_NAMES`, :data:`MONITOR_NAMES` (an NXmonitor's ``data`` too). A timestamp
found by search must look like epoch seconds (after 1973, ``units`` s/ms/us/ns honoured).
For an Eiger master the count time is ``/entry/instrument/detector/count_time``; its
timestamps and monitor are read only when named (the filewriter records none per frame).
For image series the three names are fabio header keys; the count time is also read from
the usual header fields (EDF ``count_time``/``exposure_time``, mini-CBF ``Exposure_time``).

Detector sentinel and mask
--------------------------
``FrameSource.saturation_value`` is the overflow / invalid-pixel value: NXdetector
``saturation_value``, else Eiger ``detectorSpecific/countrate_correction_count_cutoff``, else
``2**bit_depth_image - 1``; with nothing recorded ``np.iinfo(dtype).max`` for integer
frames, None for float frames. ``FrameSource.detector_mask()`` reads the
detector's own pixel mask (Eiger ``detectorSpecific/pixel_mask``, NXdetector ``pixel_mask``)
when the file keeps one.

Growing files (``swmr=True``)
-----------------------------
HDF5 files are opened with ``h5py.File(path, "r", swmr=True, libver="latest")`` and frames
being written are told apart from complete ones by this rule: a frame is complete when it
lies within the current extent of the frame dataset, within the extent of every per-frame
metadata dataset found (timestamp, count time, monitor, NXdetector ``frame_index``), its
timestamp (when there is one) is finite — a trailing run of NaN timestamps is frames not yet
triggered — and, for a virtual dataset or an Eiger master, its source file exists and holds
it. Frames announced beyond that (a larger extent or metadata length, a LIMA
``acq_nb_frames``/``nb_frames`` or Eiger ``nimages × ntrigger`` counter, a linked file not yet
written) are ``n_pending``; once one segment has pending frames every later segment counts
as pending, so frame numbers stay contiguous. With ``swmr=False`` the same incompleteness
is an error naming the file and path (a finished run must be whole), except frames only
announced by a counter, which are reported as ``n_pending``.
"""

from __future__ import annotations

import contextlib
import fnmatch
import glob
import itertools
import math
import os
import posixpath
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import dask.array as da
import h5py
import hdf5plugin  # noqa: F401  (registers the HDF5 compression filters before any read)
import numpy as np
from dask.base import tokenize

from operando.io.nxutil import as_str
from operando.io.xrd.images import (
    SINGLE_FRAME_SUFFIXES,
    FrameFormatError,
    check_image_shape,
    header_count_time,
    header_float,
    natural_key,
    read_image,
    read_image_frames,
    read_image_headers,
    scan_image_file,
    split_hdf5_url,
)

__all__ = [
    "COUNT_TIME_NAMES",
    "MONITOR_NAMES",
    "TIMESTAMP_NAMES",
    "FrameFormatError",
    "FrameMetadata",
    "FrameSegment",
    "FrameSource",
    "MetaRef",
    "check_image_shape",
    "open_frames",
    "read_image",
]

#: dataset names searched for per-frame epoch timestamps
TIMESTAMP_NAMES = ("timestamp", "epoch", "epoch_s", "time_stamp", "timestamps")
#: dataset names searched for the exposure time (per frame or one scalar), s
COUNT_TIME_NAMES = ("count_time", "exposure_time", "acq_expo_time", "integration_time")
#: dataset names searched for per-frame incident-beam monitor counts
MONITOR_NAMES = ("monitor", "mon", "I0", "i0")
#: per-frame "frames written" counters (their length is the number of frames written)
WRITTEN_NAMES = ("frame_index",)
#: scalar "frames announced" counters (LIMA-like)
ANNOUNCED_NAMES = ("acq_nb_frames", "nb_frames")
#: earliest plausible epoch timestamp, s (1973): anything smaller is a relative time
MIN_EPOCH_S = 1.0e8

_TIME_UNITS = {"s": 1.0, "sec": 1.0, "second": 1.0, "seconds": 1.0, "ms": 1e-3,
               "us": 1e-6, "µs": 1e-6, "microsecond": 1e-6, "ns": 1e-9, "nanosecond": 1e-9}
_BLISS_ENTRY = re.compile(r"^\d+\.\d+$")
_EIGER_LINK = re.compile(r"^data_\d{6}$")
_GLOB_CHARS = re.compile(r"[*?\[]")
_FILTER_NAMES = {1: "gzip", 2: "shuffle", 3: "fletcher32", 4: "szip", 5: "nbit",
                 6: "scaleoffset", 307: "bzip2", 32000: "lzf", 32001: "blosc", 32004: "lz4",
                 32008: "bitshuffle", 32013: "zfp", 32015: "zstd", 32017: "sz",
                 32026: "blosc2"}
_BLOSC_CODECS = {0: "blosclz", 1: "lz4", 2: "lz4hc", 3: "snappy", 4: "zlib", 5: "zstd"}


# ======================================================================================
# the picklable description
# ======================================================================================

@dataclass(frozen=True)
class MetaRef:
    """Where one per-frame quantity lives: HDF5 ``file::path``, or an image header key."""

    file: Path
    path: str
    scale: float = 1.0  # multiply to get seconds (timestamps / count times)
    scalar: bool = False  # one value for every frame (count time)

    def __str__(self) -> str:
        return f"{self.file}::{self.path}"


@dataclass(frozen=True)
class FrameSegment:
    """One frame dataset (or one image file): the unit never split across by chunks.

    ``file``/``dataset`` is what :meth:`FrameSource.read` opens (after following external
    links); ``source`` is the name the user sees (``"scan.h5::/1.1/measurement/pilatus"``).
    ``breaks`` are frame offsets where a virtual dataset changes source file.
    """

    file: Path
    dataset: str | None
    n_frames: int
    n_pending: int
    chunk_frames: int
    layout: str
    source: str
    compression: tuple[str, ...] = ()
    breaks: tuple[int, ...] = ()
    timestamp: MetaRef | None = None
    count_time: MetaRef | None = None
    monitor: MetaRef | None = None
    input_file: Path | None = None


@dataclass(frozen=True)
class FrameMetadata:
    """Per-frame metadata of a :class:`FrameSource`, arrays of length ``n_frames``.

    ``epoch_s`` is exposure start (or the trigger) in seconds since 1970-01-01T00:00Z, None
    when no timestamps were found; ``count_time_s`` (s) and ``monitor`` (counts) are NaN
    where unknown. ``*_source`` say which ``file::/path`` (or header key) each came from,
    or ``"absent"``.
    """

    frame_index: np.ndarray
    file_index: np.ndarray
    frame_in_file: np.ndarray
    epoch_s: np.ndarray | None
    count_time_s: np.ndarray
    monitor: np.ndarray
    timestamp_source: str
    count_time_source: str
    monitor_source: str


class _FrameArray:
    """Array-like view of a FrameSource for :func:`dask.array.from_array` (slices only)."""

    def __init__(self, source: FrameSource) -> None:
        self.source = source
        self.shape = (source.n_frames, *source.frame_shape)
        self.dtype = source.dtype
        self.ndim = 3

    def __getitem__(self, key: Any) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        first = key[0] if key else slice(None)
        if not isinstance(first, slice) or first.step not in (None, 1):
            raise TypeError(f"frame sources support contiguous slices only, got {first!r}")
        start, stop, _ = first.indices(self.shape[0])
        frames = self.source.read(start, max(start, stop))
        return frames[(slice(None), *key[1:])]


@dataclass(frozen=True)
class FrameSource:
    """A lazily read stack of detector frames over one or more files (see module docs).

    Picklable: it holds paths, HDF5 paths and frame counts only; :meth:`read` opens,
    reads and closes.
    """

    segments: tuple[FrameSegment, ...]
    frame_shape: tuple[int, int]
    dtype: np.dtype
    layout: str
    saturation_value: int | None
    swmr: bool = False
    inputs: tuple[Path, ...] = ()
    pixel_mask: str | None = None
    fingerprint: tuple[tuple[str, int, int], ...] = field(default=(), repr=False)

    # -- sizes ---------------------------------------------------------------------
    @property
    def files(self) -> tuple[Path, ...]:
        """The files frames are read from, in frame order, each once."""
        return tuple(dict.fromkeys(s.file for s in self.segments))

    @property
    def n_frames(self) -> int:
        """Complete frames available over all files."""
        return sum(s.n_frames for s in self.segments)

    @property
    def n_pending(self) -> int:
        """Frames announced but not (yet) complete; 0 for a finished run."""
        return sum(s.n_pending for s in self.segments)

    @property
    def hdf5_chunk_frames(self) -> int:
        """Frames per HDF5 chunk along the frame axis (first segment's; 1 for images)."""
        return self.segments[0].chunk_frames if self.segments else 1

    def _offsets(self) -> list[int]:
        out, off = [], 0
        for s in self.segments:
            out.append(off)
            off += s.n_frames
        return out

    # -- chunking and reading --------------------------------------------------------
    def chunks(self, target_frames: int) -> list[tuple[int, int]]:
        """Global ``(start, stop)`` ranges covering ``0..n_frames``.

        Each range holds at most ``target_frames`` rounded down to a multiple of the HDF5
        chunk length (at least one chunk), starts on a chunk boundary of its dataset and
        never crosses a file (or virtual-dataset source) boundary.
        """
        if int(target_frames) < 1:
            raise ValueError(f"target_frames must be a positive integer, found {target_frames}")
        out: list[tuple[int, int]] = []
        for seg, off in zip(self.segments, self._offsets(), strict=True):
            c = max(1, seg.chunk_frames)
            step = max(c, (int(target_frames) // c) * c)
            bounds = sorted({0, seg.n_frames, *(b for b in seg.breaks if 0 < b < seg.n_frames)})
            for lo, hi in itertools.pairwise(bounds):
                for s in range(lo, hi, step):
                    out.append((off + s, off + min(hi, s + step)))
        return out

    def read(self, start: int, stop: int) -> np.ndarray:
        """Frames ``start:stop`` (global indices) as ``(stop-start, ny, nx)``, native dtype.

        Reads only that range (HDF5 hyperslab ``read_direct``), opening and closing each
        file it touches, so it works inside a worker process.
        """
        n = self.n_frames
        start, stop = int(start), int(stop)
        if not 0 <= start <= stop <= n:
            raise IndexError(f"frame range {start}:{stop} outside 0:{n} ({self._name()})")
        out = np.empty((stop - start, *self.frame_shape), dtype=self.dtype)
        for seg, off in zip(self.segments, self._offsets(), strict=True):
            a, b = max(start, off), min(stop, off + seg.n_frames)
            if a < b:
                _read_segment(seg, a - off, b - off, out[a - start:b - start], self.swmr,
                              self.frame_shape, self.dtype)
        return out

    def iter_chunks(self, target_frames: int) -> Iterator[tuple[int, int, np.ndarray]]:
        """Yield ``(start, stop, frames)`` over :meth:`chunks`, one chunk in memory at a time."""
        for a, b in self.chunks(target_frames):
            yield a, b, self.read(a, b)

    def to_dask(self, target_frames: int) -> da.Array:
        """A lazy dask array ``(n_frames, ny, nx)`` whose blocks are :meth:`chunks`."""
        ranges = self.chunks(target_frames)
        sizes = tuple(b - a for a, b in ranges) or (0,)
        ny, nx = self.frame_shape
        name = "frames-" + tokenize(self.segments, self.fingerprint, self.swmr, sizes)
        return da.from_array(
            _FrameArray(self), chunks=(sizes, (ny,), (nx,)), name=name,
            meta=np.empty((0, 0, 0), dtype=self.dtype), asarray=True, fancy=False,
        )

    # -- metadata --------------------------------------------------------------------
    def metadata(self) -> FrameMetadata:
        """Per-frame timestamps (epoch s), count time (s) and monitor, read from the files."""
        n = self.n_frames
        files = self.files
        file_pos = {f: i for i, f in enumerate(files)}
        file_index = np.empty(n, dtype=np.int64)
        frame_in_file = np.empty(n, dtype=np.int64)
        epoch = np.full(n, np.nan)
        count = np.full(n, np.nan)
        monitor = np.full(n, np.nan)
        srcs: dict[str, list[str]] = {"timestamp": [], "count_time": [], "monitor": []}
        any_epoch = False
        for seg, off in zip(self.segments, self._offsets(), strict=True):
            sl = slice(off, off + seg.n_frames)
            file_index[sl] = file_pos[seg.file]
            frame_in_file[sl] = np.arange(seg.n_frames)
            if seg.n_frames == 0:
                continue
            if seg.layout == "images":
                found = _image_metadata(seg)
            else:
                found = _hdf5_metadata(seg, self.swmr)
            for key, target in (("timestamp", epoch), ("count_time", count),
                                ("monitor", monitor)):
                values, src = found[key]
                if values is not None:
                    target[sl] = values
                    srcs[key].append(src)
                    any_epoch = any_epoch or key == "timestamp"
        return FrameMetadata(
            frame_index=np.arange(n, dtype=np.int64),
            file_index=file_index,
            frame_in_file=frame_in_file,
            epoch_s=epoch if any_epoch else None,
            count_time_s=count,
            monitor=monitor,
            timestamp_source=join_sources(srcs["timestamp"]),
            count_time_source=join_sources(srcs["count_time"]),
            monitor_source=join_sources(srcs["monitor"]),
        )

    def describe(self) -> dict[str, Any]:
        """Summary for product attributes: layout, datasets, frame counts, dtype, filters.

        Every value is netCDF-attribute friendly: a str, an int or a list of str / int
        (per-dataset lists are parallel: ``datasets[i]`` holds ``dataset_n_frames[i]``
        frames). ``saturation_value`` and ``pixel_mask`` appear only when known.
        """
        compression = sorted({c for s in self.segments for c in s.compression})
        out: dict[str, Any] = {
            "layout": self.layout,
            "inputs": [str(p) for p in self.inputs],
            "files": [str(p) for p in self.files],
            "datasets": [s.source for s in self.segments],
            "dataset_paths": [s.dataset or "" for s in self.segments],
            "dataset_n_frames": [int(s.n_frames) for s in self.segments],
            "dataset_n_pending": [int(s.n_pending) for s in self.segments],
            "dataset_chunk_frames": [int(s.chunk_frames) for s in self.segments],
            "n_frames": int(self.n_frames),
            "n_pending": int(self.n_pending),
            "frame_shape": [int(v) for v in self.frame_shape],
            "dtype": str(self.dtype),
            "hdf5_chunk_frames": int(self.hdf5_chunk_frames),
            "compression": compression or ["none"],
            "swmr": int(self.swmr),
        }
        if self.saturation_value is not None:
            out["saturation_value"] = int(self.saturation_value)
        if self.pixel_mask is not None:
            out["pixel_mask"] = self.pixel_mask
        return out

    def detector_mask(self) -> np.ndarray | None:
        """The detector's own pixel mask (Eiger ``detectorSpecific/pixel_mask``, NeXus
        NXdetector ``pixel_mask``) as stored — nonzero = bad pixel (Eiger bit flags: 1 gap,
        2 dead, 4 under-responding, 8 noisy) — or None when the files record none.

        Opens, reads and closes (``pixel_mask`` holds its ``file::/path``).
        """
        if self.pixel_mask is None:
            return None
        return read_image(self.pixel_mask, what="detector pixel mask")

    def _name(self) -> str:
        return self.segments[0].source if self.segments else "empty frame source"


def join_sources(sources: list[str], what: str = "datasets") -> str:
    """Where a per-frame quantity came from, for an attribute: up to four ``file::/path``
    joined with ``; ``, else the first and a count of ``what``; ``"absent"`` for none."""
    uniq = list(dict.fromkeys(sources))
    if not uniq:
        return "absent"
    if len(uniq) <= 4:
        return "; ".join(uniq)
    return f"{uniq[0]}; ... ({len(uniq)} {what})"


# ======================================================================================
# HDF5 helpers
# ======================================================================================

def _h5open(path: Path, swmr: bool) -> h5py.File:
    """Open read-only (SWMR reader when asked); errors name the file and say why."""
    try:
        if swmr:
            return h5py.File(path, "r", swmr=True, libver="latest")
        return h5py.File(path, "r")
    except FileNotFoundError as err:
        raise FrameFormatError(f"frame file not found: {path}") from err
    except OSError as err:
        hint = ""
        text = str(err)
        if "truncated" in text:
            hint = "; the file is truncated (copy incomplete or writer stopped)"
        elif "already open for write" in text or "lock" in text:
            hint = "; it is being written: open it with swmr=True"
        raise FrameFormatError(f"{path}: cannot open as HDF5 ({text}){hint}") from err


def _nx_class(obj: h5py.HLObject) -> str:
    return as_str(obj.attrs.get("NX_class", ""))


def _compression(dset: h5py.Dataset) -> tuple[str, ...]:
    names: list[str] = []
    with contextlib.suppress(Exception):
        plist = dset.id.get_create_plist()
        for i in range(plist.get_nfilters()):
            code, _flags, values, _name = plist.get_filter(i)
            name = _FILTER_NAMES.get(code, f"filter-{code}")
            if code == 32008 and len(values) > 4:
                name = {2: "bitshuffle-lz4", 3: "bitshuffle-zstd"}.get(values[4], name)
            elif code == 32001 and len(values) > 6:
                name = f"blosc-{_BLOSC_CODECS.get(values[6], values[6])}"
            names.append(name)
    return tuple(names)


def _link_target(parent_file: Path, name: str) -> Path:
    """An external link's file: absolute, else beside the linking file, else the cwd."""
    p = Path(name)
    if p.is_absolute():
        return p
    beside = parent_file.parent / p
    return beside if beside.exists() or not p.exists() else p


def _physical(
    f: h5py.File, file: Path, path: str, swmr: bool = False, depth: int = 0
) -> tuple[Path, str]:
    """Follow soft and external links in ``path`` to the file and path holding the object.

    Raises FrameFormatError for a dangling link (naming the missing file or path).
    """
    if depth > 16:
        raise FrameFormatError(f"{file}::{path}: more than 16 nested links")
    parts = [p for p in path.split("/") if p]
    cur = "/"
    for i, name in enumerate(parts):
        rest = "/".join(parts[i + 1:])
        try:
            link = f[cur].get(name, getlink=True)
        except (KeyError, TypeError):
            link = None
        if link is None:
            raise FrameFormatError(f"{file}: no object at {posixpath.join(cur, name)}")
        if isinstance(link, h5py.SoftLink):
            target = posixpath.normpath(posixpath.join(cur, link.path))
            return _physical(f, file, posixpath.join(target, rest) if rest else target,
                             swmr, depth + 1)
        if isinstance(link, h5py.ExternalLink):
            ext = _link_target(file, link.filename)
            target = posixpath.join(link.path, rest) if rest else link.path
            if not ext.is_file():
                raise FrameFormatError(
                    f"{file}::{posixpath.join(cur, name)}: external link to {ext}::"
                    f"{link.path}, but {ext} does not exist"
                )
            with _h5open(ext, swmr) as g:
                return _physical(g, ext, target, swmr, depth + 1)
        cur = posixpath.join(cur, name)
    return file, cur


def _obj_key(obj: h5py.HLObject) -> tuple[str, int]:
    return (os.path.realpath(obj.file.filename), h5py.h5o.get_info(obj.id).addr)


@dataclass
class _Cand:
    path: str
    shape: tuple[int, ...]
    in_detector: bool
    dangling: str = ""  # for an external link to a missing file/object: the link's target


def _walk_candidates(f: h5py.File) -> list[_Cand]:
    """Numeric 2D/3D datasets reachable by hard and external links, each object once."""
    seen_groups: set[tuple[str, int]] = set()
    seen: dict[tuple[str, int], _Cand] = {}
    dangling: list[_Cand] = []

    def visit(group: h5py.Group, path: str) -> None:
        key = _obj_key(group)
        if key in seen_groups:
            return
        seen_groups.add(key)
        is_det = _nx_class(group) == "NXdetector"
        for name in group:
            link = group.get(name, getlink=True)
            if isinstance(link, h5py.SoftLink):
                continue  # its target is visited under its own name
            child = posixpath.join(path, name)
            try:
                obj = group[name]
            except (KeyError, OSError):
                if isinstance(link, h5py.ExternalLink):  # dangling: reported in errors
                    dangling.append(_Cand(child, (), is_det and name == "data",
                                          f"{link.filename}::{link.path}"))
                continue
            if isinstance(obj, h5py.Group):
                if isinstance(link, h5py.HardLink):
                    visit(obj, child)
                continue
            if obj.ndim not in (2, 3) or obj.dtype.kind not in "iuf":
                continue
            okey = _obj_key(obj)
            cand = _Cand(child, tuple(obj.shape), is_det and name == "data")
            old = seen.get(okey)
            if old is None or (cand.in_detector and not old.in_detector):
                seen[okey] = cand

    visit(f["/"], "/")
    return sorted([*seen.values(), *dangling], key=lambda c: natural_key(c.path))


def _list_3d(cands: list[_Cand]) -> str:
    found = [f"{c.path} {c.shape}" for c in cands if len(c.shape) == 3]
    found += [f"{c.path} -> {c.dangling} (missing)" for c in cands if c.dangling]
    if len(found) > 8:
        found = [*found[:8], f"... and {len(found) - 8} more"]
    return ", ".join(found) if found else "none"


def _glob_h5(f: h5py.File, pattern: str) -> list[str]:
    """HDF5 paths matching ``pattern`` level by level (fnmatch), following every link."""
    parts = [p for p in pattern.split("/") if p]
    paths = ["/"]
    for i, part in enumerate(parts):
        nxt: list[str] = []
        for p in paths:
            try:
                grp = f[p]
            except (KeyError, OSError):
                continue
            if not isinstance(grp, h5py.Group):
                continue
            names = [part] if not _GLOB_CHARS.search(part) else \
                [n for n in grp if fnmatch.fnmatchcase(n, part)]
            for n in names:
                if n in grp or (i == len(parts) - 1 and grp.get(n, getlink=True) is not None):
                    nxt.append(posixpath.join(p, n))
        paths = nxt
    return sorted(dict.fromkeys(paths), key=natural_key)


def _entry_of(path: str) -> str:
    parts = [p for p in path.split("/") if p]
    return "/" + parts[0] if parts else "/"


def _time_scale(dset: h5py.Dataset) -> float:
    units = as_str(dset.attrs.get("units", "s")).strip()
    return _TIME_UNITS.get(units, _TIME_UNITS.get(units.lower(), 1.0))


def _h5_get(f: h5py.File, path: str) -> Any:
    try:
        return f[path]
    except (KeyError, OSError, ValueError):
        return None


def _search_groups(f: h5py.File, data_path: str) -> list[str]:
    """Groups searched for per-frame metadata of the frames at ``data_path`` (in order)."""
    groups = [posixpath.dirname(data_path) or "/"]
    dset = _h5_get(f, data_path)
    if dset is not None:
        target = as_str(dset.attrs.get("target", "")) if "target" in dset.attrs else ""
        if target.startswith("/"):
            groups.append(posixpath.dirname(target))
    entry = _entry_of(data_path)
    groups.append(posixpath.join(entry, "measurement"))
    inst = _h5_get(f, posixpath.join(entry, "instrument"))
    if isinstance(inst, h5py.Group):
        for name in inst:
            if isinstance(inst.get(name, getlink=True), h5py.ExternalLink):
                continue
            sub = _h5_get(inst, name)
            if isinstance(sub, h5py.Group) and _nx_class(sub) in ("NXdetector", "NXmonitor"):
                groups.append(sub.name)
    return list(dict.fromkeys(groups))


def _find_meta(
    f: h5py.File, file: Path, data_path: str, kind: str, explicit: str | None
) -> MetaRef | None:
    """Locate a per-frame quantity (``kind`` = timestamp / count_time / monitor / written)."""
    if explicit is not None:
        path = explicit if explicit.startswith("/") else \
            posixpath.join(_entry_of(data_path), explicit)
        dset = _h5_get(f, path)
        if not isinstance(dset, h5py.Dataset):
            raise FrameFormatError(
                f"{file}: no {kind.replace('_', ' ')} dataset at {path} "
                f"(named by {kind}_path={explicit!r})"
            )
        return _meta_ref(file, path, dset, kind)
    names = {"timestamp": TIMESTAMP_NAMES, "count_time": COUNT_TIME_NAMES,
             "monitor": MONITOR_NAMES, "written": WRITTEN_NAMES}[kind]
    for gpath in _search_groups(f, data_path):
        grp = _h5_get(f, gpath)
        if not isinstance(grp, h5py.Group):
            continue
        cands = list(names)
        if kind == "monitor" and _nx_class(grp) == "NXmonitor":
            cands.append("data")
        if kind != "monitor" and _nx_class(grp) == "NXmonitor":
            continue
        for name in cands:
            dset = _h5_get(grp, name)
            if not isinstance(dset, h5py.Dataset) or dset.dtype.kind not in "iuf":
                continue
            if dset.ndim > 1 or (dset.ndim == 0 and kind != "count_time"):
                continue
            ref = _meta_ref(file, posixpath.join(gpath, name), dset, kind)
            if kind == "timestamp" and not _looks_like_epoch(dset, ref.scale):
                continue
            return ref
    return None


def _meta_ref(file: Path, path: str, dset: h5py.Dataset, kind: str) -> MetaRef:
    if dset.ndim > 1:
        raise FrameFormatError(
            f"{file}::{path}: expected a 1D per-frame {kind.replace('_', ' ')} dataset "
            f"(or a scalar), found shape {dset.shape}"
        )
    scale = _time_scale(dset) if kind in ("timestamp", "count_time") else 1.0
    return MetaRef(file=file, path=path, scale=scale, scalar=dset.ndim == 0)


def _looks_like_epoch(dset: h5py.Dataset, scale: float) -> bool:
    n = dset.shape[0] if dset.ndim else 1
    if n == 0:
        return True  # a growing file before its first frame
    head = np.asarray(dset[: min(n, 16)] if dset.ndim else dset[()], dtype=float).ravel() * scale
    head = head[np.isfinite(head)]
    return head.size == 0 or bool(head[0] > MIN_EPOCH_S)


def _scalar_int(f: h5py.File | h5py.Group, path: str) -> int | None:
    dset = _h5_get(f, path)
    if not isinstance(dset, h5py.Dataset) or dset.ndim != 0 or dset.dtype.kind not in "iuf":
        return None
    value = float(dset[()])
    return int(value) if math.isfinite(value) else None


# ======================================================================================
# opening
# ======================================================================================

@dataclass
class _Opts:
    dataset: str | None
    timestamp_path: str | None
    count_time_path: str | None
    monitor_path: str | None
    swmr: bool


def _expand_inputs(inputs: Any) -> list[tuple[Path, str | None]]:
    """Files (globs expanded, natural order) each with the HDF5 path from a ``::`` URL."""
    items = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    if not items:
        raise FrameFormatError("no frame files given")
    out: list[tuple[Path, str | None]] = []
    for item in items:
        file, inner = split_hdf5_url(item)
        text = str(file)
        if _GLOB_CHARS.search(text) and not file.exists():
            matches = sorted(glob.glob(os.path.expanduser(text)), key=natural_key)
            matches = [m for m in matches if Path(m).is_file()]
            if not matches:
                raise FrameFormatError(f"no file matches {text!r}")
            out.extend((Path(m), inner) for m in matches)
        else:
            file = Path(os.path.expanduser(text))
            if not file.is_file():
                raise FrameFormatError(f"frame file not found: {file}")
            out.append((file, inner))
    return list(dict.fromkeys(out))


def open_frames(
    inputs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    dataset: str | None = None,
    timestamp_path: str | None = None,
    count_time_path: str | None = None,
    monitor_path: str | None = None,
    swmr: bool = False,
) -> FrameSource:
    """Describe the frame stack in ``inputs`` (files, globs or ``"file.h5::/path"``).

    ``dataset`` is the HDF5 path (or fnmatch pattern) of the ``(n, ny, nx)`` stack in each
    HDF5 file, found automatically when None; a ``::`` path in an input overrides it.
    ``timestamp_path`` (epoch s, UTC), ``count_time_path`` (s) and ``monitor_path`` name
    per-frame datasets (header keys for image files), searched for when None. ``swmr``
    opens HDF5 files as SWMR readers and reports frames still being written as pending
    (see the module docstring for the rule). Raises :class:`FrameFormatError` naming the
    file and path for every bad input.
    """
    opts = _Opts(dataset, timestamp_path, count_time_path, monitor_path, bool(swmr))
    items = _expand_inputs(inputs)
    h5_items = [(p, inner) for p, inner in items if h5py.is_hdf5(p)]
    img_items = [(p, inner) for p, inner in items if not h5py.is_hdf5(p)]
    if h5_items and img_items:
        raise FrameFormatError(
            f"mixing HDF5 files ({h5_items[0][0]}) and image files ({img_items[0][0]}) in one "
            "frame source; open them separately"
        )
    segments: list[FrameSegment] = []
    saturation: int | None = None
    pixel_mask: str | None = None
    if img_items:
        for p, inner in img_items:
            if inner is not None or dataset is not None:
                raise FrameFormatError(
                    f"{p}: not an HDF5 file, but an HDF5 dataset path "
                    f"{inner if inner is not None else dataset} was given"
                )
        segments = _image_segments([p for p, _ in img_items], opts)
    else:
        linked = _eiger_data_files([p for p, _ in h5_items])
        for p, inner in h5_items:
            if os.path.realpath(p) in linked:
                continue  # an Eiger data file whose master is among the inputs
            segs, sat, mask = _hdf5_segments(p, inner if inner is not None else dataset, opts)
            segments.extend(segs)
            saturation = sat if saturation is None else saturation
            pixel_mask = pixel_mask or mask
    return _assemble(segments, [p for p, _ in items], opts, saturation, pixel_mask)


# a segment with its frame shape and dtype, while opening
_Seg = tuple[FrameSegment, tuple[int, int], np.dtype]


def _assemble(
    segments: list[_Seg], inputs: list[Path], opts: _Opts,
    saturation: int | None, pixel_mask: str | None,
) -> FrameSource:
    """Check shapes/dtypes agree; with swmr, all segments after a pending one are pending."""
    if not segments:
        raise FrameFormatError(f"no frames found in {', '.join(map(str, inputs))}")
    first, shape, dtype = segments[0]
    out: list[FrameSegment] = []
    blocked = False
    for seg, sh, dt in segments:
        if sh != shape:
            raise FrameFormatError(
                f"{seg.source}: frames of shape {sh}, but {first.source} has {shape}; "
                "every file must hold frames of one shape"
            )
        if dt != dtype:
            raise FrameFormatError(
                f"{seg.source}: frames of dtype {dt}, but {first.source} has {dtype}"
            )
        if blocked:
            seg = replace(seg, n_frames=0, n_pending=seg.n_frames + seg.n_pending)
        blocked = opts.swmr and (blocked or seg.n_pending > 0)
        out.append(seg)
    layouts = list(dict.fromkeys(s.layout for s in out))
    layout = layouts[0] if len(layouts) == 1 else "+".join(layouts)
    if saturation is None and dtype.kind in "iu":
        saturation = int(np.iinfo(dtype).max)
    fingerprint = []
    for p in dict.fromkeys([*inputs, *(s.file for s in out)]):
        st = p.stat()
        fingerprint.append((str(p), int(st.st_size), int(st.st_mtime_ns)))
    return FrameSource(
        segments=tuple(out), frame_shape=shape, dtype=dtype, layout=layout,
        saturation_value=saturation, swmr=opts.swmr, inputs=tuple(inputs),
        pixel_mask=pixel_mask, fingerprint=tuple(fingerprint),
    )


# -- image series -------------------------------------------------------------------------

def _image_segments(paths: list[Path], opts: _Opts) -> list[_Seg]:
    """One segment per image file; single-frame formats (CBF, ...) are not opened here."""
    info0 = scan_image_file(paths[0])
    shape, dtype = info0.frame_shape, info0.dtype
    headers0 = read_image_headers(paths[0], 1)[0]
    for key, name in ((opts.timestamp_path, "timestamp_path"),
                      (opts.count_time_path, "count_time_path"),
                      (opts.monitor_path, "monitor_path")):
        if key is not None and key not in headers0:
            raise FrameFormatError(
                f"{paths[0]}: no header field {key!r} (named by {name}); fields found: "
                f"{', '.join(sorted(headers0)) or 'none'}"
            )
    out: list[_Seg] = []
    for i, p in enumerate(paths):
        if i == 0:
            n = info0.n_frames
        elif p.name.lower().endswith(SINGLE_FRAME_SUFFIXES):
            n = 1  # shape and dtype are checked when the frame is read
        else:
            info = scan_image_file(p)
            if info.frame_shape != shape:
                raise FrameFormatError(
                    f"{p}: frames of shape {info.frame_shape}, but {paths[0]} has {shape}; "
                    "every file must hold frames of one shape"
                )
            n = info.n_frames
        refs = {k: (MetaRef(p, v) if v is not None else None) for k, v in (
            ("timestamp", opts.timestamp_path), ("count_time", opts.count_time_path),
            ("monitor", opts.monitor_path))}
        seg = FrameSegment(
            file=p, dataset=None, n_frames=n, n_pending=0, chunk_frames=1, layout="images",
            source=str(p), compression=(), timestamp=refs["timestamp"],
            count_time=refs["count_time"], monitor=refs["monitor"], input_file=p,
        )
        out.append((seg, shape, dtype))
    return out


def _image_metadata(seg: FrameSegment) -> dict[str, tuple[np.ndarray | None, str]]:
    headers = read_image_headers(seg.file, seg.n_frames)
    out: dict[str, tuple[np.ndarray | None, str]] = {}
    for key, ref in (("timestamp", seg.timestamp), ("monitor", seg.monitor)):
        if ref is None:
            out[key] = (None, "")
            continue
        values = np.array([header_float(h, ref.path) for h in headers])
        out[key] = (values, f"{seg.file} header {ref.path!r}")
    if seg.count_time is not None:
        values = np.array([header_float(h, seg.count_time.path) for h in headers])
        out["count_time"] = (values, f"{seg.file} header {seg.count_time.path!r}")
    else:
        found = [header_count_time(h) for h in headers]
        values = np.array([v for v, _ in found])
        keys = [k for _, k in found if k is not None]
        out["count_time"] = ((values, f"{seg.file} header {keys[0]!r}") if keys
                             else (None, ""))
    return out


# -- HDF5 ---------------------------------------------------------------------------------

def _layout_of(f: h5py.File, path: str) -> str:
    if any(_BLISS_ENTRY.match(name) for name in f):
        return "bliss"
    entry = _h5_get(f, _entry_of(path))
    if entry is not None and _nx_class(entry) == "NXentry":
        return "nexus"
    return "hdf5"


def _saturation(f: h5py.File, path: str) -> int | None:
    """The detector's overflow sentinel recorded near the frames, None when absent."""
    for gpath in _search_groups(f, path):
        grp = _h5_get(f, gpath)
        if not isinstance(grp, h5py.Group):
            continue
        for name in ("saturation_value", "detectorSpecific/countrate_correction_count_cutoff"):
            value = _scalar_int(grp, name)
            if value is not None and value > 0:
                return value
        for name in ("bit_depth_image", "detectorSpecific/bit_depth_image"):
            bits = _scalar_int(grp, name)
            if bits is not None and 0 < bits <= 64:
                return 2**bits - 1
    return None


def _pixel_mask_ref(f: h5py.File, file: Path, path: str) -> str | None:
    """``file::/path`` of a 2D ``pixel_mask`` in the NXdetector of the frames, or None."""
    for gpath in _search_groups(f, path):
        grp = _h5_get(f, gpath)
        if not isinstance(grp, h5py.Group) or _nx_class(grp) == "NXmonitor":
            continue
        for name in ("pixel_mask", "detectorSpecific/pixel_mask"):
            dset = _h5_get(grp, name)
            if isinstance(dset, h5py.Dataset) and dset.ndim == 2:
                return f"{file}::{posixpath.join(gpath, name)}"
    return None


def _select_paths(
    f: h5py.File, file: Path, dataset: str | None, opts_swmr: bool = False
) -> tuple[list[str], list[str]]:
    """The logical HDF5 path(s) of the frame stack(s) in one file (see module docstring),
    and, with ``swmr``, the pattern matches from the first one whose linked file is not
    written yet on (their frames are pending)."""
    if dataset is None:
        everything = _walk_candidates(f)
        cands = [c for c in everything if not c.dangling]
        det = [c for c in cands if c.in_detector]
        if len(det) == 1:
            return [det[0].path], []
        if len(det) > 1:
            listing = ", ".join(f"{c.path} {c.shape}" for c in det[:8])
            if len(det) > 8:
                listing += f", ... and {len(det) - 8} more"
            raise FrameFormatError(
                f"{file}: {len(det)} detector frame stacks found ({listing}); choose with "
                f"dataset='<path>' or '{file}::<path>', or take them all in order with a "
                "pattern such as dataset='/*.1/instrument/<detector>/data'"
            )
        three = [c for c in cands if len(c.shape) == 3]
        if len(three) == 1:
            return [three[0].path], []
        if len(three) > 1:
            raise FrameFormatError(
                f"{file}: no NXdetector data and {len(three)} 3D datasets ({_list_3d(three)}); "
                "name the frame stack with dataset='<path>'"
            )
        two = ", ".join(f"{c.path} {c.shape}" for c in cands) or "none"
        broken = ", ".join(f"{c.path} -> {c.dangling}" for c in everything if c.dangling)
        raise FrameFormatError(
            f"{file}: no frame stack found (no NXdetector data, no 3D dataset); 2D datasets: "
            f"{two}" + (f"; external links to missing files: {broken}" if broken else "")
        )
    if _GLOB_CHARS.search(dataset):
        pattern = "/" + dataset.lstrip("/")
        paths: list[str] = []
        later: list[str] = []
        for p in _glob_h5(f, pattern):
            obj = _h5_get(f, p)
            if later or (obj is None and opts_swmr):
                # a scan whose detector file is not written yet: it and every later one
                later.append(p)
                continue
            if obj is None:  # a dangling link: error naming the missing file
                _physical(f, file, p)
            if isinstance(obj, h5py.Dataset):
                paths.append(p)
        if not paths:
            pending = f" (matches whose file is not written yet: {', '.join(later)})" \
                if later else ""
            raise FrameFormatError(
                f"{file}: no readable dataset matches {pattern}{pending}; found 3D datasets: "
                f"{_list_3d(_walk_candidates(f))}"
            )
        keyed: dict[tuple[str, int], str] = {}
        for p in paths:
            keyed.setdefault(_obj_key(f[p]), p)
        return list(keyed.values()), later
    path = "/" + dataset.lstrip("/")
    obj = _h5_get(f, path)
    if obj is None:
        try:
            _physical(f, file, path)
        except FrameFormatError as err:
            if "external link" in str(err):
                raise
        raise FrameFormatError(
            f"{file}: no dataset at {path}; found 3D datasets: {_list_3d(_walk_candidates(f))}"
        )
    if isinstance(obj, h5py.Group):
        if isinstance(_h5_get(obj, "data"), h5py.Dataset):
            return [posixpath.join(path, "data")], []
        raise FrameFormatError(
            f"{file}: {path} is a group, not a dataset; found 3D datasets: "
            f"{_list_3d(_walk_candidates(f))}"
        )
    return [path], []


def _hdf5_segments(
    file: Path, dataset: str | None, opts: _Opts
) -> tuple[list[_Seg], int | None, str | None]:
    with _h5open(file, opts.swmr) as f:
        if dataset is None and _is_eiger_master(f):
            return _eiger_segments(f, file, opts)
        paths, later = _select_paths(f, file, dataset, opts.swmr)
        segs = [_dataset_segment(f, file, p, opts) for p in paths]
        extra = sum(_announced_frames(f, file, p, opts) for p in later)
        if extra:
            last, shape, dtype = segs[-1]
            segs[-1] = (replace(last, n_pending=last.n_pending + extra), shape, dtype)
        return segs, _saturation(f, paths[0]), _pixel_mask_ref(f, file, paths[0])


def _announced_frames(f: h5py.File, file: Path, path: str, opts: _Opts) -> int:
    """Frames announced for a stack not readable yet (swmr): its extent when it resolves,
    else the longest per-frame metadata or ``acq_nb_frames``-like counter kept beside it."""
    obj = _h5_get(f, path)
    if isinstance(obj, h5py.Dataset):
        return int(obj.shape[0]) if obj.ndim == 3 else 1
    n = 0
    for kind, explicit in (("timestamp", opts.timestamp_path),
                           ("count_time", opts.count_time_path),
                           ("monitor", opts.monitor_path)):
        try:
            ref = _find_meta(f, file, path, kind, explicit)
        except FrameFormatError:
            ref = None
        if ref is not None and not ref.scalar:
            n = max(n, int(f[ref.path].shape[0]))
    for gpath in _search_groups(f, path):
        for name in ANNOUNCED_NAMES:
            value = _scalar_int(f, posixpath.join(gpath, name))
            if value is not None:
                n = max(n, value)
    return n


def _meta_length(f: h5py.File, ref: MetaRef) -> int | None:
    if ref.scalar:
        return None
    return int(f[ref.path].shape[0])


def _dataset_segment(f: h5py.File, file: Path, path: str, opts: _Opts) -> _Seg:
    """One HDF5 frame dataset: counts, completeness (module docstring rule), metadata refs."""
    dset = f[path]
    if not isinstance(dset, h5py.Dataset):
        raise FrameFormatError(f"{file}: {path} is not a dataset")
    if dset.ndim == 3:
        extent, shape = int(dset.shape[0]), (int(dset.shape[1]), int(dset.shape[2]))
    elif dset.ndim == 2:
        extent, shape = 1, (int(dset.shape[0]), int(dset.shape[1]))
    else:
        raise FrameFormatError(
            f"{file}::{path}: expected a frame stack (n, ny, nx) or one 2D frame, found "
            f"shape {dset.shape}"
        )
    if dset.dtype.kind not in "iuf":
        raise FrameFormatError(f"{file}::{path}: expected numeric frames, found {dset.dtype}")
    where = f"{file}::{path}"
    if dset.is_virtual:
        read_file, read_path = file, path
        complete, breaks, chunk, comp = _vds_check(dset, file, path, extent, opts.swmr)
    else:
        read_file, read_path = _physical(f, file, path, opts.swmr)
        chunk = int(dset.chunks[0]) if dset.chunks and dset.ndim == 3 else 1
        comp = _compression(dset)
        complete, breaks = extent, ()
        if read_file != file or read_path != path:
            where = f"{file}::{path} -> {read_file}::{read_path}"
    refs = {kind: _find_meta(f, file, path, kind, explicit) for kind, explicit in (
        ("timestamp", opts.timestamp_path), ("count_time", opts.count_time_path),
        ("monitor", opts.monitor_path))}
    written = _find_meta(f, file, path, "written", None) if opts.swmr else None
    announced = extent
    for kind, ref in (*refs.items(), ("written", written)):
        if ref is None:
            continue
        n_meta = _meta_length(f, ref)
        if n_meta is None:
            continue
        if opts.swmr:
            complete = min(complete, n_meta)
            announced = max(announced, n_meta)
        elif kind != "written" and n_meta != extent:
            raise FrameFormatError(
                f"{ref}: {n_meta} {kind.replace('_', ' ')} values for the {extent} frames of "
                f"{where} (if the file is still being written, open it with swmr=True)"
            )
    ts = refs["timestamp"]
    if opts.swmr and ts is not None and not ts.scalar and complete > 0:
        values = np.asarray(f[ts.path][:complete], dtype=float)
        finite = np.flatnonzero(np.isfinite(values))
        complete = int(finite[-1]) + 1 if finite.size else 0
    for gpath in _search_groups(f, path):
        for name in ANNOUNCED_NAMES:
            value = _scalar_int(f, posixpath.join(gpath, name))
            if value is not None:
                announced = max(announced, value)
    seg = FrameSegment(
        file=read_file, dataset=read_path, n_frames=complete, n_pending=announced - complete,
        chunk_frames=max(1, chunk), layout=_layout_of(f, path), source=where,
        compression=comp, breaks=breaks, timestamp=refs["timestamp"],
        count_time=refs["count_time"], monitor=refs["monitor"], input_file=file,
    )
    return seg, shape, dset.dtype


def _select_rows(space: h5py.h5s.SpaceID) -> tuple[int, int]:
    """First and past-the-end index along axis 0 of a dataspace selection."""
    if space.get_select_type() == h5py.h5s.SEL_ALL:
        dims = space.get_simple_extent_dims()
        return 0, int(dims[0]) if dims else 1
    bounds = space.get_select_bounds()
    return int(bounds[0][0]), int(bounds[1][0]) + 1


def _vds_check(
    dset: h5py.Dataset, file: Path, path: str, extent: int, swmr: bool
) -> tuple[int, tuple[int, ...], int, tuple[str, ...]]:
    """Check each virtual-dataset source exists and holds its frames.

    Returns (complete frames, source start offsets, source chunk length, source filters).
    A missing or short source is an error unless ``swmr`` (then its frames are pending).
    """
    plist = dset.id.get_create_plist()
    complete = extent
    breaks: set[int] = set()
    chunk: int | None = None
    comp: tuple[str, ...] = ()
    for i in range(plist.get_virtual_count()):
        try:
            lo, hi = _select_rows(plist.get_virtual_vspace(i))
            s_lo, s_hi = _select_rows(plist.get_virtual_srcspace(i))
        except Exception:  # unlimited selections have no bounds: not checked
            continue
        if lo >= extent:
            continue
        breaks.add(lo)
        fname = plist.get_virtual_filename(i)
        dname = plist.get_virtual_dsetname(i)
        src = file if fname == "." else _link_target(file, fname)
        available = 0
        problem: str | None = None
        if not src.is_file():
            problem = f"source file {src} does not exist"
        else:
            with _h5open(src, swmr) as g:
                sd = _h5_get(g, dname)
                if not isinstance(sd, h5py.Dataset):
                    problem = f"source {src} has no dataset {dname}"
                else:
                    available = int(sd.shape[0]) if sd.ndim else 1
                    if chunk is None:
                        chunk = int(sd.chunks[0]) if sd.chunks and sd.ndim == 3 else 1
                        comp = _compression(sd)
                    if available < s_hi:
                        problem = (f"source {src}::{dname} holds {available} frames, frames "
                                   f"{s_lo}..{s_hi - 1} are mapped")
        if problem is not None:
            if not swmr:
                raise FrameFormatError(
                    f"{file}::{path}: virtual dataset frames {lo}..{hi - 1}: {problem} "
                    "(if the acquisition is still running, open with swmr=True)"
                )
            complete = min(complete, lo + max(0, min(hi - lo, available - s_lo)))
    return complete, tuple(sorted(b for b in breaks if b > 0)), chunk or 1, comp


# -- Eiger --------------------------------------------------------------------------------

def _is_eiger_master(f: h5py.File) -> bool:
    grp = _h5_get(f, "/entry/data")
    return isinstance(grp, h5py.Group) and any(_EIGER_LINK.match(n) for n in grp)


def _eiger_data_files(paths: list[Path]) -> set[str]:
    """Real paths of the data files linked by the Eiger masters among ``paths``."""
    linked: set[str] = set()
    if len(paths) < 2:
        return linked
    for p in paths:
        if "master" not in p.name:
            continue
        with contextlib.suppress(OSError, FrameFormatError), h5py.File(p, "r") as f:
            grp = f.get("/entry/data")
            if not isinstance(grp, h5py.Group):
                continue
            for name in grp:
                link = grp.get(name, getlink=True)
                if isinstance(link, h5py.ExternalLink) and _EIGER_LINK.match(name):
                    linked.add(os.path.realpath(_link_target(p, link.filename)))
    return linked


def _eiger_segments(
    f: h5py.File, file: Path, opts: _Opts
) -> tuple[list[_Seg], int | None, str | None]:
    """One segment per linked data file (read directly); missing files are pending."""
    grp = f["/entry/data"]
    det = "/entry/instrument/detector"
    names = sorted((n for n in grp if _EIGER_LINK.match(n)), key=natural_key)
    refs = {
        "timestamp": (_find_meta(f, file, det + "/data", "timestamp", opts.timestamp_path)
                      if opts.timestamp_path else None),
        "count_time": _find_meta(f, file, det + "/data", "count_time", opts.count_time_path),
        "monitor": (_find_meta(f, file, det + "/data", "monitor", opts.monitor_path)
                    if opts.monitor_path else None),
    }
    nimages = _scalar_int(f, det + "/detectorSpecific/nimages")
    ntrigger = _scalar_int(f, det + "/detectorSpecific/ntrigger") or 1
    announced_total = nimages * ntrigger if nimages else None
    segs: list[_Seg] = []
    expected_low = 1
    missing: list[str] = []
    per_file = 0
    for name in names:
        link = grp.get(name, getlink=True)
        where = f"{file}::/entry/data/{name}"
        if isinstance(link, h5py.ExternalLink):
            data_file, dpath = _link_target(file, link.filename), link.path
        else:
            data_file, dpath = file, grp[name].name
        if missing or not data_file.is_file():
            if not opts.swmr and not data_file.is_file():
                raise FrameFormatError(
                    f"{where}: links to {data_file}, which does not exist (if the acquisition "
                    "is still running, open with swmr=True to read the frames written so far)"
                )
            missing.append(name)
            continue
        with _h5open(data_file, opts.swmr) as g:
            d = _h5_get(g, dpath)
            if not isinstance(d, h5py.Dataset) or d.ndim != 3:
                raise FrameFormatError(
                    f"{where}: {data_file} has no 3D frame dataset at {dpath}"
                )
            extent = int(d.shape[0])
            low = _attr_int(d, "image_nr_low")
            high = _attr_int(d, "image_nr_high")
            expected = high - low + 1 if low is not None and high is not None else extent
            if low is not None and low != expected_low:
                raise FrameFormatError(
                    f"{data_file}::{dpath}: image_nr_low = {low}, expected {expected_low} "
                    "(the data files must continue each other)"
                )
            if extent < expected and not opts.swmr:
                raise FrameFormatError(
                    f"{data_file}::{dpath}: holds {extent} frames, image_nr_low..high = "
                    f"{low}..{high} announce {expected} (truncated, or still being written: "
                    "open with swmr=True)"
                )
            complete = min(extent, expected)
            per_file = per_file or expected
            expected_low += expected
            seg = FrameSegment(
                file=data_file, dataset=dpath, n_frames=complete,
                n_pending=expected - complete,
                chunk_frames=int(d.chunks[0]) if d.chunks else 1, layout="eiger",
                source=f"{where} -> {data_file}::{dpath}", compression=_compression(d),
                timestamp=refs["timestamp"], count_time=refs["count_time"],
                monitor=refs["monitor"], input_file=file,
            )
            segs.append((seg, (int(d.shape[1]), int(d.shape[2])), d.dtype))
    if not segs:
        raise FrameFormatError(
            f"{file}: Eiger master whose data files ({', '.join(missing) or 'none'}) are not "
            "written yet: no frames to read"
        )
    present = sum(s.n_frames + s.n_pending for s, _, _ in segs)
    extra = (max(0, announced_total - present) if announced_total is not None
             else len(missing) * per_file)
    if extra:
        last, shape, dtype = segs[-1]
        segs[-1] = (replace(last, n_pending=last.n_pending + extra), shape, dtype)
    saturation = _saturation(f, det + "/data")
    mask_path = det + "/detectorSpecific/pixel_mask"
    mask = f"{file}::{mask_path}" if isinstance(_h5_get(f, mask_path), h5py.Dataset) else None
    return segs, saturation, mask


def _attr_int(dset: h5py.Dataset, name: str) -> int | None:
    if name not in dset.attrs:
        return None
    try:
        return int(np.asarray(dset.attrs[name]).ravel()[0])
    except (ValueError, TypeError, IndexError):
        return None


# -- reading ------------------------------------------------------------------------------

def _read_segment(
    seg: FrameSegment, i0: int, i1: int, out: np.ndarray, swmr: bool,
    shape: tuple[int, int], dtype: np.dtype,
) -> None:
    """Frames ``i0:i1`` of one segment into ``out`` (a C-contiguous view)."""
    if seg.dataset is None:
        out[...] = read_image_frames(seg.file, i0, i1, frame_shape=shape, dtype=dtype)
        return
    where = f"{seg.file}::{seg.dataset}"
    try:
        with _h5open(seg.file, swmr) as f:
            dset = _h5_get(f, seg.dataset)
            if not isinstance(dset, h5py.Dataset):
                raise FrameFormatError(f"{where}: the frame dataset is gone")
            if dset.ndim == 2:
                out[0] = dset[()]
                return
            if dset.shape[0] < i1:
                raise FrameFormatError(
                    f"{where}: holds {dset.shape[0]} frames now, frames {i0}..{i1 - 1} asked "
                    "(the file shrank or was replaced since it was opened)"
                )
            if out.size:
                dset.read_direct(out, np.s_[i0:i1])
    except OSError as err:
        raise FrameFormatError(
            f"{where}: cannot read frames {i0}..{i1 - 1} ({err}); the file may be truncated "
            "or corrupt"
        ) from err


def _hdf5_metadata(seg: FrameSegment, swmr: bool) -> dict[str, tuple[np.ndarray | None, str]]:
    n = seg.n_frames
    out: dict[str, tuple[np.ndarray | None, str]] = {}
    for key, ref in (("timestamp", seg.timestamp), ("count_time", seg.count_time),
                     ("monitor", seg.monitor)):
        if ref is None:
            out[key] = (None, "")
            continue
        with _h5open(ref.file, swmr) as f:
            dset = _h5_get(f, ref.path)
            if not isinstance(dset, h5py.Dataset):
                raise FrameFormatError(f"{ref}: the {key.replace('_', ' ')} dataset is gone")
            if ref.scalar:
                values = np.full(n, float(dset[()]))
            else:
                if dset.shape[0] < n:
                    raise FrameFormatError(
                        f"{ref}: {dset.shape[0]} {key.replace('_', ' ')} values for {n} frames"
                    )
                values = np.asarray(dset[:n], dtype=np.float64)
        out[key] = (values * ref.scale, str(ref))
    return out
