"""Detector frame stacks, opened lazily: NeXus, Bliss, Eiger, plain HDF5 and image series.

:func:`open_frames` looks at the input files once and returns a :class:`FrameSource`: a
small picklable description (file names, HDF5 paths, frame counts, never an open handle)
whose :meth:`FrameSource.read` opens, reads one frame range and closes, so Dask worker
processes read their own chunks and a run never has to fit in memory.

Modules: this one holds :func:`open_frames` and :class:`FrameSource` (chunking, reading,
metadata); :mod:`.frame_segments` the pieces a source is made of; the layouts it
understands live in :mod:`.frames_hdf5` (NeXus, Bliss links / VDS, plain HDF5),
:mod:`.frames_eiger` (Eiger master + data) and :mod:`.frames_images` (fabio series).

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
    return fill values silently). Relative source names resolve against the file holding
    the virtual dataset, as HDF5 does, also when it is reached through an external link
    (a proposal master whose top-level entries link to scan files, e.g.
    ``sample_0001_1.1 -> sample/sample_0001/sample_0001.h5::/1.1``): the frames are then
    read from that file directly.
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
the file is walked through hard links and external links (a proposal master whose entries
are external links to scan files is entered), and only numeric datasets shaped like frames
are candidates: ``(n, ny, nx)`` or ``(ny, nx)`` with ``(ny, nx)`` the detector's shape when
known (``frame_shape``, from the PONI), else at least :data:`MIN_FRAME_SIDE` pixels a side
(a 3×3 orientation matrix is not a frame). Every dataset named ``data`` in an
``NX_class = NXdetector`` group is a detector candidate (hard links, soft links and external
links to the same object count once). One candidate is taken. An NXdetector ``data`` link
that does not resolve (its file missing: the message names it), or NXdetector frames of
another shape, are never passed over for another dataset. Several candidates (e.g. several
Bliss scans) is an error listing them: pass ``dataset`` (an HDF5 path, or a pattern such
as ``"/*.1/measurement/pilatus"`` matched level by level with :mod:`fnmatch`, every match
being a segment, in natural order), or ``"file.h5::/path"``. With no NXdetector data, the
file's single 3D candidate is taken, else its single 2D one (one frame stored outside the
NeXus conventions; masks, flats and darks by name are not taken). Several or none is an
error listing what was found, what was not taken and why. A 2D dataset named explicitly is
a one-frame stack.

Per-frame metadata
------------------
``timestamp_path``, ``count_time_path`` and ``monitor_path`` name HDF5 datasets (absolute,
or relative to the entry holding the frames, e.g. ``"measurement/epoch"`` for every Bliss
scan). When not given they are searched in the group holding the frames, the group named
by the data set's NeXus ``target`` attribute, ``<entry>/measurement`` and the entry's
NXdetector / NXmonitor groups, under the names in :data:`TIMESTAMP_NAMES`,
:data:`COUNT_TIME_NAMES`, :data:`MONITOR_NAMES` (an NXmonitor's ``data`` too). A timestamp
found by search must look like epoch seconds (after 1973, ``units`` s/ms/us/ns honoured).
A scalar or a one-element array (a constant stored the NeXus way, shape ``(1,)``) is one
value for every frame: a count time is broadcast, a monitor too when named (searched for, a
lone number is not taken as a monitor), a timestamp only dates a one-frame stack (for more
frames it is skipped when searched for, an error when named). With ``swmr`` a one-element
array that can still grow (``maxshape`` > 1) is per-frame data holding its first value.
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

import glob
import itertools
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import dask.array as da
import h5py
import hdf5plugin  # noqa: F401  (registers the HDF5 compression filters before any read)
import numpy as np
from dask.base import tokenize

from operando.io.xrd.frame_segments import (
    COUNT_TIME_NAMES,
    GLOB_CHARS,
    MONITOR_NAMES,
    TIMESTAMP_NAMES,
    FrameMetadata,
    FrameSegment,
    MetaRef,
    OpenedSegment,
    OpenOptions,
    join_sources,
)
from operando.io.xrd.frames_eiger import eiger_data_files, eiger_segments, is_eiger_master
from operando.io.xrd.frames_hdf5 import (
    MIN_FRAME_SIDE,
    dataset_segments,
    h5open,
    hdf5_metadata,
    read_hdf5_frames,
)
from operando.io.xrd.frames_images import image_metadata, image_segments
from operando.io.xrd.images import (
    FRAME_FILES,
    FrameFormatError,
    check_image_shape,
    check_not_empty,
    natural_key,
    read_image,
    read_image_frames,
    split_hdf5_url,
)

__all__ = [
    "COUNT_TIME_NAMES",
    "MIN_FRAME_SIDE",
    "MONITOR_NAMES",
    "TIMESTAMP_NAMES",
    "FrameFormatError",
    "FrameMetadata",
    "FrameSegment",
    "FrameSource",
    "MetaRef",
    "check_image_shape",
    "join_sources",
    "open_frames",
    "read_image",
]


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

    def __dask_tokenize__(self) -> object:
        """This source's identity in work-unit keys (:func:`dask.base.tokenize`).

        A finished source: every field, the files' sizes and mtimes included (a changed
        file is a new source). A growing source (``swmr``): the files' paths, devices and
        inodes and the layout, but not the sizes, mtimes or frame counts, which change with
        every frame written: in an append-only SWMR file a complete frame never changes, so
        a unit over frames ``[a, b)`` integrated in an earlier live pass is reused by the
        next one (a file replaced under the same name gets a new inode, hence new keys)."""
        if not self.swmr:
            return (type(self).__name__, self.segments, self.frame_shape, str(self.dtype),
                    self.layout, self.saturation_value, self.inputs, self.pixel_mask,
                    self.fingerprint)
        files = []
        for path, _size, _mtime in self.fingerprint:
            st = os.stat(path)
            files.append((path, st.st_dev, st.st_ino))
        segments = tuple(replace(seg, n_frames=0, n_pending=0) for seg in self.segments)
        return (type(self).__name__, "swmr", segments, self.frame_shape, str(self.dtype),
                self.layout, self.saturation_value, self.inputs, self.pixel_mask,
                tuple(files))

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

    def where(self, start: int, stop: int) -> str:
        """Frames ``start:stop`` (global indices) as the user finds them, for a message:
        ``"xrd_0001.h5::/entry/data/data frames 0..49"`` per dataset (or image series) they
        lie in, with the run's frame numbers when the dataset does not start the run
        (``"... frames 0..49 (frames 100..149 of the run)"``)."""
        start, stop = int(start), int(stop)
        parts = []
        for seg, off in zip(self.segments, self._offsets(), strict=True):
            a, b = max(start, off), min(stop, off + seg.n_frames)
            if a < b:
                run = f" (frames {a}..{b - 1} of the run)" if off else ""
                parts.append(f"{seg.source} frames {a - off}..{b - off - 1}{run}")
        return " and ".join(parts) or f"{self._name()} frames {start}..{stop - 1}"

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
                found = image_metadata(seg)
            else:
                found = hdf5_metadata(seg, self.swmr)
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


def _expand_inputs(inputs: Any) -> list[tuple[Path, str | None]]:
    """Files (globs expanded, natural order) each with the HDF5 path from a ``::`` URL."""
    items = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    if not items:
        raise FrameFormatError("no frame files given")
    out: list[tuple[Path, str | None]] = []
    for item in items:
        file, inner = split_hdf5_url(item)
        text = str(file)
        if GLOB_CHARS.search(text) and not file.exists():
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
    for file, _ in out:
        check_not_empty(file, FRAME_FILES)
    return list(dict.fromkeys(out))


def open_frames(
    inputs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    dataset: str | None = None,
    timestamp_path: str | None = None,
    count_time_path: str | None = None,
    monitor_path: str | None = None,
    swmr: bool = False,
    frame_shape: tuple[int, int] | None = None,
) -> FrameSource:
    """Describe the frame stack in ``inputs`` (files, globs or ``"file.h5::/path"``).

    ``dataset`` is the HDF5 path (or fnmatch pattern) of the ``(n, ny, nx)`` stack in each
    HDF5 file, found automatically when None; a ``::`` path in an input overrides it.
    ``timestamp_path`` (epoch s, UTC), ``count_time_path`` (s) and ``monitor_path`` name
    per-frame datasets (header keys for image files), searched for when None. ``swmr``
    opens HDF5 files as SWMR readers and reports frames still being written as pending
    (see the module docstring for the rule). Raises :class:`FrameFormatError` naming the
    file and path for every bad input. ``frame_shape`` (ny, nx), the detector's shape when
    known (:func:`operando.io.xrd.geometry.poni_frame_shape`), is the shape of the frames
    auto-detection looks for.
    """
    opts = OpenOptions(dataset, timestamp_path, count_time_path, monitor_path, bool(swmr),
                       None if frame_shape is None else
                       (int(frame_shape[0]), int(frame_shape[1])))
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
        segments = image_segments([p for p, _ in img_items], opts)
    else:
        linked = eiger_data_files([p for p, _ in h5_items])
        for p, inner in h5_items:
            if os.path.realpath(p) in linked:
                continue  # an Eiger data file whose master is among the inputs
            segs, sat, mask = _hdf5_segments(p, inner if inner is not None else dataset, opts)
            segments.extend(segs)
            saturation = sat if saturation is None else saturation
            pixel_mask = pixel_mask or mask
    return _assemble(segments, [p for p, _ in items], opts, saturation, pixel_mask)


def _assemble(
    segments: list[OpenedSegment], inputs: list[Path], opts: OpenOptions,
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


def _hdf5_segments(
    file: Path, dataset: str | None, opts: OpenOptions
) -> tuple[list[OpenedSegment], int | None, str | None]:
    """The segments of one HDF5 file: an Eiger master's data files, else its stacks."""
    with h5open(file, opts.swmr) as f:
        if dataset is None and is_eiger_master(f):
            return eiger_segments(f, file, opts)
        return dataset_segments(f, file, dataset, opts)


def _read_segment(
    seg: FrameSegment, i0: int, i1: int, out: np.ndarray, swmr: bool,
    shape: tuple[int, int], dtype: np.dtype,
) -> None:
    """Frames ``i0:i1`` of one segment into ``out`` (a C-contiguous view)."""
    if seg.dataset is None:
        out[...] = read_image_frames(seg.file, i0, i1, frame_shape=shape, dtype=dtype)
    else:
        read_hdf5_frames(seg, i0, i1, out, swmr)
