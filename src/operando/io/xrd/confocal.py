"""Confocal (depth-resolved) XRD scan files: every point of every pass, with its own time.

A confocal run measures diffraction at a list of depth positions (a motor, e.g. ``sz``)
through an electrode, pass after pass; each pass is one Bliss scan entry ``"{n}.1"`` of a
master HDF5 file (layout in :mod:`operando.io.xrd.bliss`). Paths below are relative to the
entry (a path starting with ``/`` is absolute in the file); the config keys that name
them are given in brackets and appear in every error message.

Per point (``[confocal.*_path]``)
---------------------------------
``depth_path``      depth motor (``units`` attribute ``mm`` or ``um``; when present it must
                    agree with ``depth_unit``); a scalar means a fixed depth for the scan
``epoch_path``      exposure start, UTC epoch seconds on the beamline clock (``units``
                    s / ms / us / ns honoured); required
``count_time_path`` exposure time (s), per point or one scalar; None: unknown (NaN)
``monitor_path``    incident-beam monitor counts, per point or one scalar; None: unknown
A one-element array (shape ``(1,)``) is one value for the scan, like a scalar (depth,
count time, monitor; not the epoch).

Modes
-----
* angle-dispersive, :func:`open_confocal_frames`: ``instrument/<det>/data`` (n_points,
  ny, nx), usually external links to LIMA files, opened lazily with
  :func:`operando.io.xrd.frames.open_frames`;
* energy-dispersive, :func:`read_confocal_spectra`: ``instrument/mca/data``
  (n_points, n_channels) counts read into memory, the channel energy calibration
  ``[a, b, c]`` (E = a + b·ch + c·ch², ch 0-based; ``units`` keV or eV, keV when absent)
  and the fixed 2θ (degree) from the files or given as values.

Irregular passes (recorded in :attr:`ConfocalPoints.notes`, never an error)
-------------------------------------------------------------------------
* arrays of one entry of different lengths (frames or spectra vs depth, epoch, count
  time, monitor): the first ``min`` of the lengths are used (extra frames are never
  referenced by ``frame_index``);
* a point whose epoch or depth is not finite (an aborted exposure) is dropped;
* an entry with no point is left out of ``entries``;
* an entry with fewer (or more) points than most (a skipped depth, a pass cut short).
Where each point sits on the depth grid (missing depths, off-grid motor positions) is
decided by :func:`operando.confocal.grid.depth_grid`.

Bad input raises :class:`ConfocalFormatError` naming the file, the HDF5 path and the
config key: a file or a path missing, a counter of the wrong shape or units, no finite
epoch in an entry, epochs that are not epoch seconds, calibrations that disagree.

Entries are taken from the files in the order given and, within a file, in natural order
of their names (``"9.1"`` before ``"10.1"``), matching ``scans`` (an :mod:`fnmatch`
pattern over the top-level names). Every call opens, reads what it needs and closes.

Files still being written (``swmr``, a live run)
------------------------------------------------
The files are opened as HDF5 SWMR readers (frame files through
:func:`operando.io.xrd.frames.open_frames` with ``swmr``) and a point counts once all it
needs is written: its frame (or spectrum) and its counters, i.e. the entry's common length
above — a pass in progress has the points measured so far; the differing lengths of its
arrays are the points still being written, not an irregularity. A file with no entry yet
holds no point (the readers say so instead of listing the entries).
"""

from __future__ import annotations

import collections
import fnmatch
import gc
import posixpath
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import h5py
import hdf5plugin  # noqa: F401  (registers the HDF5 compression filters before any read)
import numpy as np

from operando.io.errors import InputFileError
from operando.io.nxutil import as_str
from operando.io.paths import natural_key
from operando.io.xrd.frame_segments import MIN_EPOCH_S, TIME_UNITS, join_sources
from operando.io.xrd.frames import FrameSource, open_frames

__all__ = [
    "ConfocalFormatError",
    "ConfocalPoints",
    "open_confocal_frames",
    "read_confocal_points",
    "read_confocal_spectra",
]

_DEPTH_UNITS = {"mm": "mm", "millimeter": "mm", "millimetre": "mm",
                "um": "um", "µm": "um", "μm": "um", "micron": "um", "microns": "um",
                "micrometer": "um", "micrometre": "um"}
_ENERGY_UNITS = {"kev": 1.0, "ev": 1e-3}
_ANGLE_UNITS = {"deg": 1.0, "degree": 1.0, "degrees": 1.0, "°": 1.0,
                "rad": float(np.degrees(1.0)), "radian": float(np.degrees(1.0)),
                "radians": float(np.degrees(1.0))}


class ConfocalFormatError(InputFileError):
    """A confocal scan file is missing, or lacks a dataset or has one of the wrong layout."""


@dataclass(frozen=True)
class ConfocalPoints:
    """Every acquired point of a confocal run, in acquisition order (arrays of length
    n_points).

    ``files`` the scan files read; ``entries`` one per pass, ``"file::/1.1"``, in the
    order read (natural order of the entry names within a file); ``pass_index`` (int)
    0-based index into ``entries``; ``point_in_pass`` (int) 0-based position of the point
    in its scan; ``depth_motor`` raw motor value (``depth_unit``); ``depth_um`` depth from
    the origin, µm: ``depth_sign * (motor - depth_zero) * (1000 if mm else 1)``;
    ``epoch_s`` exposure start, UTC epoch s on the beamline clock; ``count_time_s``
    exposure time, s (NaN where unknown); ``monitor`` monitor counts (NaN where
    unknown); ``frame_index`` (int) row of the point in the
    :class:`~operando.io.xrd.frames.FrameSource` (angle mode) or in the stacked spectra
    (energy mode); ``notes`` one human-readable line per irregularity; ``sources`` where
    each quantity came from (keys ``depth``, ``epoch``, ``count_time``, ``monitor``,
    ``depth_um``).
    """

    files: tuple[Path, ...]
    entries: tuple[str, ...]
    pass_index: np.ndarray
    point_in_pass: np.ndarray
    depth_motor: np.ndarray
    depth_um: np.ndarray
    epoch_s: np.ndarray
    count_time_s: np.ndarray
    monitor: np.ndarray
    frame_index: np.ndarray
    notes: tuple[str, ...] = ()
    sources: dict[str, str] = field(default_factory=dict)

    @property
    def n_points(self) -> int:
        return int(self.pass_index.size)

    @property
    def n_passes(self) -> int:
        return len(self.entries)


# ======================================================================================
# helpers
# ======================================================================================

@dataclass(frozen=True)
class _Opts:
    scans: str
    depth_path: str
    depth_unit: str
    depth_zero: float
    depth_sign: int
    epoch_path: str
    count_time_path: str | None
    monitor_path: str | None
    swmr: bool = False


def _key(name: str, value: Any) -> str:
    return f"confocal.{name} = {value!r}"


def _check_files(files: Sequence[str | Path]) -> tuple[Path, ...]:
    if isinstance(files, (str, Path)):
        files = [files]
    paths = tuple(Path(p) for p in files)
    if not paths:
        raise ConfocalFormatError("no confocal scan file given (confocal.files is empty)")
    for p in paths:
        if not p.is_file():
            raise ConfocalFormatError(f"confocal scan file not found: {p} (confocal.files)")
    return paths


def _open(path: Path, swmr: bool = False) -> h5py.File:
    try:
        return h5py.File(path, "r", swmr=True) if swmr else h5py.File(path, "r")
    except OSError as err:
        raise ConfocalFormatError(
            f"{path}: cannot open as HDF5 ({err}) (confocal.files)") from err


def _units(dset: h5py.Dataset) -> str:
    return as_str(dset.attrs.get("units", "")).strip()


def _list_entries(f: h5py.File, file: Path, scans: str, swmr: bool = False) -> list[str]:
    names = [n for n in f if fnmatch.fnmatchcase(n, scans)
             and isinstance(f.get(n, getlink=False), h5py.Group)]
    if not names and not swmr:
        found = sorted(f, key=natural_key)
        listing = ", ".join(found[:12]) + (", ..." if len(found) > 12 else "")
        raise ConfocalFormatError(
            f"{file}: no scan entry matches {scans!r} ({_key('scans', scans)}); top-level "
            f"entries found: {listing or 'none'}"
        )
    return sorted(names, key=natural_key)


def _full(entry: str, rel: str) -> str:
    return posixpath.join(f"/{entry}", rel)


def _dataset(f: h5py.File, file: Path, entry: str, rel: str, key: str) -> h5py.Dataset:
    """The dataset at ``rel`` in ``entry``, or an error naming file, path and config key."""
    path = _full(entry, rel)
    try:
        obj = f[path]
    except (KeyError, OSError, ValueError):
        obj = None
    if isinstance(obj, h5py.Dataset):
        return obj
    why = "no dataset" if obj is None else "a group, not a dataset,"
    parent, name = posixpath.split(path)
    try:
        link = f[parent].get(name, getlink=True) if parent in f else None
    except (KeyError, OSError, ValueError):
        link = None
    if isinstance(link, h5py.ExternalLink):
        why = f"a broken external link (to {link.filename}::{link.path})"
    raise ConfocalFormatError(f"{file}: {why} at {path} ({_key(key, rel)})")


def _numeric(dset: h5py.Dataset, file: Path, key: str, rel: str, max_ndim: int) -> None:
    if dset.dtype.kind not in "iuf" or dset.ndim > max_ndim:
        want = "a number per point (1D) or one scalar" if max_ndim == 1 else \
            "spectra (n_points, n_channels)"
        raise ConfocalFormatError(
            f"{file}::{dset.name}: expected {want}, found {dset.dtype} of shape {dset.shape} "
            f"({_key(key, rel)})"
        )


def _time_scale(dset: h5py.Dataset, file: Path, key: str, rel: str) -> float:
    units = _units(dset)
    if not units:
        return 1.0
    scale = TIME_UNITS.get(units, TIME_UNITS.get(units.lower()))
    if scale is None:
        raise ConfocalFormatError(
            f"{file}::{dset.name}: units {units!r}, expected a time unit (s, ms, us, ns) "
            f"({_key(key, rel)})"
        )
    return scale


# ======================================================================================
# per-entry reading
# ======================================================================================

@dataclass
class _Entry:
    file: Path
    name: str
    n_frames: int | None
    depth: np.ndarray
    epoch: np.ndarray
    count_time: np.ndarray
    monitor: np.ndarray
    rows: np.ndarray  # kept positions in the scan
    sources: dict[str, str]

    @property
    def label(self) -> str:
        return f"{self.file}::/{self.name}"


def _counter(
    f: h5py.File, file: Path, entry: str, rel: str, key: str
) -> tuple[np.ndarray, bool, h5py.Dataset]:
    """(values float64, is_scalar, dataset) of a per-point counter; a one-element array
    (a constant stored the NeXus way, shape (1,)) is one value for the scan like a scalar
    (the epoch, always per point, ignores the flag)."""
    dset = _dataset(f, file, entry, rel, key)
    _numeric(dset, file, key, rel, 1)
    one = dset.ndim == 0 or dset.shape == (1,)
    return np.asarray(dset[()], dtype=np.float64).reshape(-1), one, dset


def _read_entry(
    f: h5py.File, file: Path, entry: str, opts: _Opts, n_frames: int | None,
    frames_name: str, notes: list[str],
) -> _Entry:
    label = f"{file.name}::/{entry}"
    depth, depth_scalar, dset = _counter(f, file, entry, opts.depth_path, "depth_path")
    units = _units(dset)
    if units:
        found = _DEPTH_UNITS.get(units, _DEPTH_UNITS.get(units.lower()))
        if found != opts.depth_unit:
            raise ConfocalFormatError(
                f"{file}::{dset.name}: units {units!r}, but confocal.depth_unit = "
                f"{opts.depth_unit!r}; expected the motor in {opts.depth_unit}"
            )
    sources = {"depth": f"{file}::{dset.name}"}
    epoch, _, dset = _counter(f, file, entry, opts.epoch_path, "epoch_path")
    epoch = epoch * _time_scale(dset, file, "epoch_path", opts.epoch_path)
    sources["epoch"] = f"{file}::{dset.name}"
    lengths: dict[str, int] = {}
    if n_frames is not None:
        lengths[frames_name] = int(n_frames)
    if not depth_scalar:
        lengths[posixpath.basename(opts.depth_path)] = depth.size
    lengths[posixpath.basename(opts.epoch_path)] = epoch.size
    optional: dict[str, tuple[np.ndarray, bool] | None] = {}
    for kind, rel in (("count_time", opts.count_time_path), ("monitor", opts.monitor_path)):
        if rel is None:
            optional[kind] = None
            continue
        values, scalar, dset = _counter(f, file, entry, rel, f"{kind}_path")
        if kind == "count_time":
            values = values * _time_scale(dset, file, "count_time_path", rel)
        optional[kind] = (values, scalar)
        if not scalar:
            lengths[posixpath.basename(rel) or kind] = values.size
        sources[kind] = f"{file}::{dset.name}" + (" (one value per scan)" if scalar else "")
    n = min(lengths.values())
    if len(set(lengths.values())) > 1 and not opts.swmr:  # live: points being written
        listing = ", ".join(f"{k} {v}" for k, v in lengths.items())
        notes.append(f"{label}: lengths differ ({listing}) -> {n} points used")

    def take(found: tuple[np.ndarray, bool] | None) -> np.ndarray:
        if found is None:
            return np.full(n, np.nan)
        values, scalar = found
        return np.full(n, values[0]) if scalar else values[:n]

    depth_n = take((depth, depth_scalar))
    epoch_n = epoch[:n]
    count_n = take(optional["count_time"])
    mon_n = take(optional["monitor"])
    finite_epoch = np.isfinite(epoch_n)
    if n > 0 and not finite_epoch.any():
        raise ConfocalFormatError(
            f"{file}::{_full(entry, opts.epoch_path)}: no finite epoch among the {n} points "
            f"({_key('epoch_path', opts.epoch_path)}); every point needs its exposure start"
        )
    good = epoch_n[finite_epoch]
    if good.size and not np.all(good > MIN_EPOCH_S):
        raise ConfocalFormatError(
            f"{file}::{_full(entry, opts.epoch_path)}: expected UTC epoch seconds (after "
            f"1973), found {good.min():g} ({_key('epoch_path', opts.epoch_path)}); a relative "
            "time (elapsed_time) cannot place the point on the electrochemistry clock"
        )
    keep = finite_epoch & np.isfinite(depth_n)
    for i in np.flatnonzero(~keep):
        what = "epoch" if not finite_epoch[i] else "depth"
        notes.append(f"{label}: point {int(i)} has no finite {what}; dropped")
    rows = np.flatnonzero(keep)
    return _Entry(file=file, name=entry, n_frames=n_frames, depth=depth_n[rows],
                  epoch=epoch_n[rows], count_time=count_n[rows], monitor=mon_n[rows],
                  rows=rows, sources=sources)


def _assemble(
    files: tuple[Path, ...], entries: list[_Entry], opts: _Opts, notes: list[str],
    frame_offsets: list[int] | None,
) -> ConfocalPoints:
    """Concatenate entries (empty ones left out); frame_index from ``frame_offsets``
    (one per entry read, the row of the entry's first frame) or the stacked kept points."""
    kept: list[tuple[_Entry, int]] = []
    for k, e in enumerate(entries):
        if e.rows.size == 0:
            notes.append(f"{e.file.name}::/{e.name}: no point; entry left out")
            continue
        kept.append((e, k))
    counts = collections.Counter(e.rows.size for e, _ in kept)
    if len(counts) > 1:
        typical = max(counts.items(), key=lambda kv: (kv[1], kv[0]))[0]
        for p, (e, _) in enumerate(kept):
            if e.rows.size != typical:
                notes.append(f"pass {p} ({e.file.name}::/{e.name}): {e.rows.size} points, "
                             f"most passes have {typical}")

    def cat(values: list[np.ndarray], dtype: Any = np.float64) -> np.ndarray:
        return np.concatenate(values).astype(dtype) if values else np.empty(0, dtype=dtype)

    pass_index = cat([np.full(e.rows.size, p) for p, (e, _) in enumerate(kept)], np.int64)
    point_in_pass = cat([e.rows for e, _ in kept], np.int64)
    if frame_offsets is not None:
        frame_index = cat([frame_offsets[k] + e.rows for e, k in kept], np.int64)
    else:
        frame_index = np.arange(pass_index.size, dtype=np.int64)
    depth_motor = cat([e.depth for e, _ in kept])
    scale = 1000.0 if opts.depth_unit == "mm" else 1.0
    depth_um = opts.depth_sign * (depth_motor - opts.depth_zero) * scale
    srcs: dict[str, list[str]] = {"depth": [], "epoch": [], "count_time": [], "monitor": []}
    for e, _ in kept:
        for kind in srcs:
            if kind in e.sources:
                srcs[kind].append(e.sources[kind])
    sources = {kind: join_sources(v, "entries, the same path in each")
               for kind, v in srcs.items()}
    sign = "" if opts.depth_sign == 1 else "-"
    sources["depth_um"] = (f"{sign}({posixpath.basename(opts.depth_path)} - {opts.depth_zero:g}"
                           f" {opts.depth_unit})" + (" x 1000" if scale != 1.0 else ""))
    return ConfocalPoints(
        files=files,
        entries=tuple(f"{e.file}::/{e.name}" for e, _ in kept),
        pass_index=pass_index, point_in_pass=point_in_pass,
        depth_motor=depth_motor, depth_um=depth_um,
        epoch_s=cat([e.epoch for e, _ in kept]),
        count_time_s=cat([e.count_time for e, _ in kept]),
        monitor=cat([e.monitor for e, _ in kept]),
        frame_index=frame_index, notes=tuple(notes), sources=sources,
    )


def _opts(
    scans: str, depth_path: str, depth_unit: str, depth_zero: float, depth_sign: int,
    epoch_path: str, count_time_path: str | None, monitor_path: str | None,
    swmr: bool = False,
) -> _Opts:
    if depth_unit not in ("mm", "um"):
        raise ValueError(f"confocal.depth_unit: expected 'mm' or 'um', found {depth_unit!r}")
    if depth_sign not in (1, -1):
        raise ValueError(f"confocal.depth_sign: expected 1 or -1, found {depth_sign!r}")
    if not np.isfinite(depth_zero):
        raise ValueError(f"confocal.depth_zero: expected a finite motor position, found "
                         f"{depth_zero!r}")
    return _Opts(scans=scans, depth_path=depth_path, depth_unit=depth_unit,
                 depth_zero=float(depth_zero), depth_sign=int(depth_sign),
                 epoch_path=epoch_path, count_time_path=count_time_path,
                 monitor_path=monitor_path, swmr=swmr)


def _entry_names(files: tuple[Path, ...], scans: str, swmr: bool = False
                 ) -> list[tuple[Path, str]]:
    out: list[tuple[Path, str]] = []
    for file in files:
        with _open(file, swmr) as f:
            out.extend((file, name) for name in _list_entries(f, file, scans, swmr))
    return out


def _by_file(names: list[tuple[Path, str]]) -> list[tuple[Path, list[tuple[int, str]]]]:
    """``(file, [(k, entry), ...])`` in order, k the entry's position in ``names``."""
    out: list[tuple[Path, list[tuple[int, str]]]] = []
    for k, (file, name) in enumerate(names):
        if not out or out[-1][0] != file:
            out.append((file, []))
        out[-1][1].append((k, name))
    return out


def _read_points(
    files: tuple[Path, ...], opts: _Opts, n_frames: Sequence[int] | None,
    frames_name: str, frame_offsets: list[int] | None,
    names: list[tuple[Path, str]] | None = None, extra_notes: Sequence[str] = (),
) -> ConfocalPoints:
    if names is None:
        names = _entry_names(files, opts.scans, opts.swmr)
    if n_frames is not None and len(n_frames) != len(names):
        raise ValueError(f"n_frames_per_entry: {len(n_frames)} values for the {len(names)} "
                         f"entries matching {opts.scans!r} in {', '.join(map(str, files))}")
    notes = list(extra_notes)
    entries: list[_Entry] = []
    for file, items in _by_file(names):
        with _open(file, opts.swmr) as f:
            for k, name in items:
                nf = None if n_frames is None else int(n_frames[k])
                entries.append(_read_entry(f, file, name, opts, nf, frames_name, notes))
    if frame_offsets is None and n_frames is not None:
        frame_offsets = [0, *np.cumsum(np.asarray(n_frames, dtype=np.int64))[:-1].tolist()]
    return _assemble(files, entries, opts, notes, frame_offsets)


# ======================================================================================
# public readers
# ======================================================================================

def read_confocal_points(
    files: Sequence[str | Path],
    *,
    scans: str = "*",
    depth_path: str,
    depth_unit: Literal["mm", "um"],
    depth_zero: float = 0.0,
    depth_sign: Literal[1, -1] = 1,
    epoch_path: str,
    count_time_path: str | None,
    monitor_path: str | None,
    n_frames_per_entry: Sequence[int] | None = None,
    swmr: bool = False,
) -> ConfocalPoints:
    """Read every point's depth, time, count time and monitor (see the module docstring).

    ``depth_zero`` is the motor position (``depth_unit``) of the depth origin and
    ``depth_sign`` -1 when the motor runs toward the origin: depth (µm) =
    ``depth_sign * (motor - depth_zero) * (1000 if mm else 1)``. ``n_frames_per_entry``
    (one per entry, in the order read) are the frames or spectra of each entry: they
    take part in the common length of the entry and place ``frame_index`` (row in the
    concatenated frames); without it ``frame_index`` numbers the kept points 0..n-1.
    ``swmr``: files still being written (a live run, module docstring).
    """
    paths = _check_files(files)
    opts = _opts(scans, depth_path, depth_unit, depth_zero, depth_sign, epoch_path,
                 count_time_path, monitor_path, swmr)
    return _read_points(paths, opts, n_frames_per_entry, "frames", None)


def _frames_error(err: Exception | str, detector_path: str, scans: str) -> ConfocalFormatError:
    return ConfocalFormatError(
        f"{err} ({_key('detector_path', detector_path)}, {_key('scans', scans)})")


def open_confocal_frames(
    files: Sequence[str | Path],
    *,
    scans: str = "*",
    detector_path: str,
    depth_path: str,
    depth_unit: Literal["mm", "um"],
    depth_zero: float = 0.0,
    depth_sign: Literal[1, -1] = 1,
    epoch_path: str,
    count_time_path: str | None,
    monitor_path: str | None,
    swmr: bool = False,
) -> tuple[FrameSource, ConfocalPoints]:
    """Angle-dispersive confocal run: the lazy frame stack and its points.

    Frames are opened with ``open_frames(files, dataset=f"/{scans}/{detector_path}")``
    (one segment per entry, paired with the entries in order; each segment must come
    from its entry). When ``open_frames`` refuses the run because an entry's per-frame
    metadata and frames differ in length, each entry is opened on its own instead and
    the common length is used (recorded in the notes). ``points.frame_index`` is the row
    of each point in the returned :class:`~operando.io.xrd.frames.FrameSource`; the source
    may hold frames that are no point (beyond an entry's common length, or whose epoch
    is not finite), so reduce the rows ``points.frame_index``, not every frame.

    ``swmr``: files still being written (a live run): the frames are opened as growing
    files (:func:`~operando.io.xrd.frames.open_frames` with ``swmr``: a frame counts once
    written with its metadata) and a point counts once its frame and its counters (epoch,
    depth, ...) are written (the common length of the entry); before the first entry a
    :class:`ConfocalFormatError` says so.
    """
    paths = _check_files(files)
    opts = _opts(scans, depth_path, depth_unit, depth_zero, depth_sign, epoch_path,
                 count_time_path, monitor_path, swmr)
    names = _entry_names(paths, scans, swmr)
    if not names:
        raise ConfocalFormatError(f"no scan entry yet in {', '.join(map(str, paths))} "
                                  f"({_key('scans', scans)}; the files are being written)")
    rel = detector_path.lstrip("/")
    # every entry must hold the frames (open_frames' pattern skips entries without them)
    for file, items in _by_file(names):
        with _open(file, swmr) as f:
            for _, name in items:
                _frame_dataset_check(f, file, name, rel)
    refused: str | None = None
    notes: list[str] = []
    try:
        source = open_frames([str(p) for p in paths], dataset=f"/{scans}/{rel}", swmr=swmr)
    except InputFileError as err:
        refused = str(err)  # not the exception: its traceback would keep files open
    if refused is not None:
        gc.collect()  # close what the failed attempt left open (SWMR reopens them)
        source = _open_per_entry(paths, names, rel, opts, refused, notes)
    segments = source.segments
    if len(segments) != len(names):
        raise ConfocalFormatError(
            f"{len(segments)} frame datasets found for the {len(names)} entries matching "
            f"{scans!r} in {', '.join(map(str, paths))} ({_key('detector_path', rel)})"
        )
    for seg, (file, name) in zip(segments, names, strict=True):
        where = seg.source.split(" -> ")[0]
        if not where.startswith(f"{file}::/{name}/"):
            raise ConfocalFormatError(
                f"frame dataset {seg.source} does not belong to entry {file}::/{name} "
                f"(expected {file}::{_full(name, rel)}; {_key('detector_path', rel)})"
            )
    n_frames = [int(s.n_frames) for s in segments]
    offsets = [0, *np.cumsum(n_frames)[:-1].tolist()]
    points = _read_points(paths, opts, n_frames, "frames", offsets, names, notes)
    return source, points


def _frame_dataset_check(f: h5py.File, file: Path, entry: str, rel: str) -> None:
    dset = _dataset(f, file, entry, rel, "detector_path")
    if dset.ndim not in (2, 3):
        raise ConfocalFormatError(
            f"{file}::{dset.name}: expected frames (n_points, ny, nx), found shape "
            f"{dset.shape} ({_key('detector_path', rel)})"
        )


def _open_per_entry(
    paths: tuple[Path, ...], names: list[tuple[Path, str]], rel: str, opts: _Opts,
    refused: str, notes: list[str],
) -> FrameSource:
    """Fallback when open_frames refuses the whole run: each entry alone, as a SWMR
    reader (which takes metadata/frame length differences instead of refusing them).
    Any frame missing for another reason (a virtual-dataset source absent, ...) raises
    the error ``open_frames`` gave (``refused``)."""
    sources: list[FrameSource] = []
    for file, name in names:
        try:
            src = open_frames(f"{file}::{_full(name, rel)}", swmr=True)
        except InputFileError as err:
            raise _frames_error(err, rel, opts.scans) from err
        with _open(file, opts.swmr) as f:
            extent = _dataset(f, file, name, rel, "detector_path")
            n_extent = int(extent.shape[0]) if extent.ndim == 3 else 1
            wanted = [n_extent]
            for path in (opts.depth_path, opts.epoch_path, opts.count_time_path,
                         opts.monitor_path):
                if path is None:
                    continue
                d = f.get(_full(name, path))
                if isinstance(d, h5py.Dataset) and d.ndim == 1:
                    wanted.append(int(d.shape[0]))
        seg = src.segments[0]
        if len(src.segments) != 1 or seg.n_frames < min(wanted):
            raise _frames_error(refused, rel, opts.scans)
        if seg.n_frames < n_extent:
            notes.append(f"{file.name}::/{name}: {n_extent} frames, {seg.n_frames} with "
                         "their per-frame metadata (open_frames' SWMR rule); "
                         f"{seg.n_frames} used")
        sources.append(replace(src, segments=(replace(seg, n_pending=0),)))
    first = sources[0]
    for s in sources[1:]:
        if s.frame_shape != first.frame_shape or s.dtype != first.dtype:
            raise ConfocalFormatError(
                f"{s.segments[0].source}: frames {s.frame_shape} {s.dtype}, but "
                f"{first.segments[0].source} has {first.frame_shape} {first.dtype}; every "
                f"entry must hold frames of one shape ({_key('detector_path', rel)})"
            )
    layouts = list(dict.fromkeys(s.layout for s in sources))
    fingerprint = tuple(dict.fromkeys(fp for s in sources for fp in s.fingerprint))
    return FrameSource(
        segments=tuple(s.segments[0] for s in sources), frame_shape=first.frame_shape,
        dtype=first.dtype, layout="+".join(layouts), saturation_value=first.saturation_value,
        swmr=False, inputs=paths,
        pixel_mask=next((s.pixel_mask for s in sources if s.pixel_mask), None),
        fingerprint=fingerprint,
    )


def _energy_calibration(
    f: h5py.File, file: Path, entry: str, rel: str
) -> np.ndarray:
    dset = _dataset(f, file, entry, rel, "energy_calibration_path")
    values = np.asarray(dset[()], dtype=np.float64).reshape(-1) \
        if dset.dtype.kind in "iuf" else np.empty(0)
    if values.size not in (2, 3) or not np.all(np.isfinite(values)):
        raise ConfocalFormatError(
            f"{file}::{dset.name}: expected 2 or 3 finite calibration coefficients "
            f"[a, b(, c)] (E = a + b ch + c ch^2), found {values.tolist() or dset.dtype} "
            f"({_key('energy_calibration_path', rel)})"
        )
    units = _units(dset)
    scale = _ENERGY_UNITS.get(units.lower(), None) if units else 1.0
    if scale is None:
        raise ConfocalFormatError(
            f"{file}::{dset.name}: units {units!r}, expected keV or eV "
            f"({_key('energy_calibration_path', rel)})"
        )
    return values * scale


def _two_theta(f: h5py.File, file: Path, entry: str, rel: str) -> float:
    dset = _dataset(f, file, entry, rel, "two_theta_path")
    _numeric(dset, file, "two_theta_path", rel, 1)
    values = np.asarray(dset[()], dtype=np.float64).reshape(-1)
    units = _units(dset)
    scale = _ANGLE_UNITS.get(units.lower(), None) if units else 1.0
    if scale is None:
        raise ConfocalFormatError(
            f"{file}::{dset.name}: units {units!r}, expected degree "
            f"({_key('two_theta_path', rel)})"
        )
    values = values[np.isfinite(values)] * scale
    if values.size == 0 or np.ptp(values) > 1e-9 * abs(values[0]):
        raise ConfocalFormatError(
            f"{file}::{dset.name}: expected one fixed 2θ, found "
            f"{values.tolist() if values.size < 8 else f'{values.min()}..{values.max()}'} "
            f"({_key('two_theta_path', rel)})"
        )
    return float(values[0])


def _ed_entry(
    f: h5py.File, file: Path, name: str, spectrum_path: str,
    energy_calibration_path: str | None, two_theta_path: str | None,
) -> tuple[int, int, np.ndarray | None, float | None]:
    """(spectra, channels, calibration keV or None, 2θ degree or None) of one entry."""
    dset = _dataset(f, file, name, spectrum_path, "spectrum_path")
    _numeric(dset, file, "spectrum_path", spectrum_path, 2)
    if dset.ndim == 0:
        raise ConfocalFormatError(
            f"{file}::{dset.name}: expected spectra (n_points, n_channels), found a scalar "
            f"({_key('spectrum_path', spectrum_path)})")
    n = int(dset.shape[0]) if dset.ndim == 2 else 1
    cal = (None if energy_calibration_path is None
           else _energy_calibration(f, file, name, energy_calibration_path))
    tth = None if two_theta_path is None else _two_theta(f, file, name, two_theta_path)
    return n, int(dset.shape[-1]), cal, tth


def _same_calibration(a: np.ndarray, b: np.ndarray, n_channels: int) -> bool:
    """Calibrations ``a`` and ``b`` ([a, b(, c)] keV) agree: each term of E = a + b ch +
    c ch² differs by at most 1e-9 of the largest term over the channels (relative)."""
    pa, pb = np.zeros(3), np.zeros(3)
    pa[: a.size], pb[: b.size] = a, b
    ch = float(max(n_channels, 2) - 1)
    powers = np.array([1.0, ch, ch * ch])
    scale = max(float(np.max(np.abs(pa) * powers)), 1e-300)
    return bool(np.max(np.abs(pa - pb) * powers) <= 1e-9 * scale)


def read_confocal_spectra(
    files: Sequence[str | Path],
    *,
    scans: str = "*",
    spectrum_path: str,
    energy_calibration_path: str | None = None,
    energy_calibration_keV: Sequence[float] | None = None,
    two_theta_path: str | None = None,
    two_theta_deg: float | None = None,
    depth_path: str,
    depth_unit: Literal["mm", "um"],
    depth_zero: float = 0.0,
    depth_sign: Literal[1, -1] = 1,
    epoch_path: str,
    count_time_path: str | None,
    monitor_path: str | None,
    swmr: bool = False,
) -> tuple[np.ndarray, np.ndarray, float, ConfocalPoints]:
    """Energy-dispersive confocal run: every point's MCA spectrum, the calibration, 2θ.

    Returns ``(counts, calibration_keV, two_theta_deg, points)``: ``counts`` (n_points,
    n_channels) float64, one row per point (``points.frame_index`` = 0..n-1);
    ``calibration_keV`` the energy calibration [a, b(, c)] (keV, keV/channel,
    keV/channel²: E = a + b ch + c ch², channel energies by
    :func:`operando.xrd.energy_dispersive.channel_energy_keV`), ``energy_calibration_keV``
    or the dataset at ``energy_calibration_path`` in every entry, which must agree within
    1e-9 relative;
    ``two_theta_deg`` the fixed scattering angle (degree; ``two_theta_deg`` or the dataset
    at ``two_theta_path``, one value in every entry). Exactly one of each pair is given.
    ``swmr``: files still being written (a live run): a point counts once its spectrum and
    its counters are written (the common length of the entry).
    """
    if (energy_calibration_path is None) == (energy_calibration_keV is None):
        raise ValueError(
            "energy mode: expected exactly one of confocal.energy_calibration_path and "
            "confocal.energy_calibration_keV, found "
            + ("both" if energy_calibration_path is not None else "neither"))
    if (two_theta_path is None) == (two_theta_deg is None):
        raise ValueError(
            "energy mode: expected exactly one of confocal.two_theta_path and "
            "confocal.two_theta_deg, found " + ("both" if two_theta_path is not None
                                                else "neither"))
    paths = _check_files(files)
    opts = _opts(scans, depth_path, depth_unit, depth_zero, depth_sign, epoch_path,
                 count_time_path, monitor_path, swmr)
    names = _entry_names(paths, scans, swmr)
    if not names:
        raise ConfocalFormatError(f"no scan entry yet in {', '.join(map(str, paths))} "
                                  f"({_key('scans', scans)}; the files are being written)")
    n_spectra: list[int] = []
    n_channels: int | None = None
    first_where = ""
    cal: np.ndarray | None = None
    cal_where = "confocal.energy_calibration_keV"
    if energy_calibration_keV is not None:
        cal = np.asarray(energy_calibration_keV, dtype=np.float64)
    tth: float | None = None if two_theta_deg is None else float(two_theta_deg)
    tth_where = "confocal.two_theta_deg"
    for file, items in _by_file(names):
        with _open(file, swmr) as f:
            for _, name in items:
                n, nch, c, t = _ed_entry(f, file, name, spectrum_path,
                                         energy_calibration_path, two_theta_path)
                n_spectra.append(n)
                where = f"{file}::{_full(name, spectrum_path)}"
                if n_channels is None:
                    n_channels, first_where = nch, where
                elif nch != n_channels:
                    raise ConfocalFormatError(
                        f"{where}: {nch} channels, but {first_where} has {n_channels} "
                        f"({_key('spectrum_path', spectrum_path)})")
                if c is not None:
                    here = f"{file}::{_full(name, str(energy_calibration_path))}"
                    if cal is None:
                        cal, cal_where = c, here
                    elif not _same_calibration(cal, c, nch):
                        raise ConfocalFormatError(
                            f"energy calibrations differ: {cal.tolist()} keV at {cal_where}, "
                            f"{c.tolist()} keV at {here} (one calibration for the run, "
                            f"{_key('energy_calibration_path', energy_calibration_path)})")
                if t is not None:
                    here = f"{file}::{_full(name, str(two_theta_path))}"
                    if tth is None:
                        tth, tth_where = t, here
                    elif abs(t - tth) > 1e-9 * abs(tth):
                        raise ConfocalFormatError(
                            f"2θ differs: {tth} degree at {tth_where}, {t} degree at {here} "
                            f"(one fixed 2θ for the run, "
                            f"{_key('two_theta_path', two_theta_path)})")
    assert cal is not None and tth is not None and n_channels is not None
    if not 0.0 < tth < 180.0:
        raise ConfocalFormatError(f"2θ = {tth} degree at {tth_where}: expected 0 < 2θ < 180")
    points = _read_points(paths, opts, n_spectra, "spectra", None, names)
    points = replace(points, frame_index=np.arange(points.n_points, dtype=np.int64))
    counts = np.empty((points.n_points, n_channels), dtype=np.float64)
    pass_of = {label: p for p, label in enumerate(points.entries)}
    for file, items in _by_file(names):
        with _open(file, swmr) as f:
            for _, name in items:
                p = pass_of.get(f"{file}::/{name}")
                if p is None:  # an entry with no point
                    continue
                out = np.flatnonzero(points.pass_index == p)
                rows = points.point_in_pass[out]
                dset = _dataset(f, file, name, spectrum_path, "spectrum_path")
                if dset.ndim == 1:
                    counts[out] = np.asarray(dset[()], dtype=np.float64)[None, :]
                else:
                    block = np.asarray(dset[: int(rows.max()) + 1], dtype=np.float64)
                    counts[out] = block[rows]
    sources = dict(points.sources)
    sources["spectra"] = join_sources([f"{file}::{_full(n, spectrum_path)}"
                                        for file, n in names])
    sources["energy_calibration"] = (f"{cal_where}: {cal.tolist()} keV"
                                     if energy_calibration_path is not None
                                     else f"confocal.energy_calibration_keV = {cal.tolist()}")
    sources["two_theta"] = (f"{tth_where}: {tth:g} degree" if two_theta_path is not None
                            else f"confocal.two_theta_deg = {tth:g}")
    return counts, cal, float(tth), replace(points, sources=sources)
