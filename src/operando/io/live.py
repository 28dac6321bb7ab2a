"""Files written while a run is acquired, as a beamline writes them (for `simulate --live`).

Each writer re-writes a finished file (the offline simulation's) as it would have grown:

- :class:`SwmrFrameWriter`: a frame stack (the NeXus file of :mod:`operando.io.xrd.nexus`, a
  LIMA file of :mod:`operando.io.xrd.bliss`) frame by frame into a growing HDF5 file in SWMR
  mode: the static metadata first, then per frame the detector data (flushed), then its
  per-frame metadata — timestamp, count time, monitor, frame index — (flushed), so a reader
  sees a frame's data before its timestamp and counts the frame complete only once both are
  there.
- :class:`ScanFileReplay`: a Bliss-like scan file (one entry ``<n>.1`` per scan: XANES scans,
  confocal passes) entry by entry and point by point. Every change publishes a new version of
  the whole file (written beside it, renamed into place: :func:`operando.io.atomic.atomic_path`),
  so a reader opening it sees a whole file holding what was acquired up to then: a scan
  started but not ended has no ``end_time`` (and, when pre-extended, zero-filled data), a
  pass in progress has the points measured so far.
- :class:`LineAppender`: the data rows of a text record (cycler export, trigger record) line
  by line after its header.

The closed files hold the same groups, datasets (values, types, attributes) and links as the
files they were made from; only the storage of the datasets that grew differs (chunked,
extensible).
"""

from __future__ import annotations

import contextlib
import posixpath
import shutil
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import h5py

from operando.io.atomic import atomic_path, write_bytes_atomic

__all__ = ["LineAppender", "ScanFileReplay", "SwmrFrameWriter", "copy_layout"]

_PER_FRAME = ("timestamp", "count_time", "frame_index")


def _filters(d: h5py.Dataset) -> dict[str, object]:
    """The compression of a dataset as ``create_dataset`` arguments (registered filters such
    as bitshuffle-LZ4 by their id: hdf5plugin is imported)."""
    import hdf5plugin  # noqa: F401  (registers the filters)

    out: dict[str, object] = {}
    for fid, opts in d._filters.items():
        if fid == "shuffle":
            out["shuffle"] = True
        elif fid in ("gzip", "lzf") or fid.isdigit():
            out["compression"] = int(fid) if fid.isdigit() else fid
            out["compression_opts"] = tuple(opts) if fid.isdigit() else opts
    return out


def _address(obj: h5py.HLObject) -> int:
    return int(h5py.h5o.get_info(obj.id).addr)


def _links(group: h5py.Group, prefix: str = "") -> Iterator[tuple[str, object]]:
    """(path relative to ``group``, link) of every link below ``group``, parents first;
    hard-linked groups are walked once."""
    seen: set[int] = set()

    def walk(g: h5py.Group, pre: str) -> Iterator[tuple[str, object]]:
        for name in g:
            link = g.get(name, getlink=True)
            path = f"{pre}/{name}" if pre else name
            yield path, link
            if isinstance(link, h5py.HardLink):
                obj = g[name]
                if isinstance(obj, h5py.Group) and _address(obj) not in seen:
                    seen.add(_address(obj))
                    yield from walk(obj, path)

    yield from walk(group, prefix)


def _copy_attrs(src: h5py.HLObject, dst: h5py.HLObject) -> None:
    for k, v in src.attrs.items():
        dst.attrs[k] = v


def copy_layout(src: h5py.Group, dst: h5py.Group,
                grown: Callable[[str, h5py.Dataset], h5py.Dataset | None],
                skip: Callable[[str], bool] = lambda _p: False) -> list[str]:
    """Copy the groups, datasets and links below ``src`` into ``dst`` (another file).

    ``grown(path, dataset)`` creates, for a dataset that is to grow, its (empty or
    zero-filled) counterpart in ``dst`` and returns it, or returns None: the dataset is then
    copied whole (values, type, storage, attributes). Paths ``skip(path)`` names are left
    out. A dataset reached under several names (hard links) is made once and linked under
    the others; soft and external links are copied as links. Returns the paths of the
    datasets ``grown`` made (one name each)."""
    made: dict[int, str] = {}
    grew: list[str] = []
    _copy_attrs(src, dst)
    for path, link in _links(src):
        if skip(path):
            continue
        if isinstance(link, h5py.SoftLink):
            dst[path] = h5py.SoftLink(link.path)
            continue
        if isinstance(link, h5py.ExternalLink):
            dst[path] = h5py.ExternalLink(link.filename, link.path)
            continue
        obj = src[path]
        addr = _address(obj)
        if addr in made:
            dst[path] = dst[made[addr]]
            continue
        made[addr] = path
        if isinstance(obj, h5py.Group):
            _copy_attrs(obj, dst.require_group(path))
            continue
        parent, name = posixpath.split(path)
        new = grown(path, obj)
        if new is None:
            src.copy(obj, dst.require_group(parent) if parent else dst, name=name)
        else:
            _copy_attrs(obj, new)
            grew.append(path)
    return grew


@contextlib.contextmanager
def _version(dest: Path, new: bool = False) -> Iterator[h5py.File]:
    """A new version of ``dest``: the current file (``new``: none) copied under a temporary
    name and opened for writing; renamed into place when the block ends without error."""
    with atomic_path(dest, durable=False) as tmp:  # whole for readers; a simulation
        if not new:
            shutil.copyfile(dest, tmp)
        with h5py.File(tmp, "w" if new else "r+") as f:
            yield f


def _growing(dst: h5py.Group, path: str, d: h5py.Dataset, rows: int) -> h5py.Dataset:
    """An extensible copy of ``d``'s type, filters and row shape with ``rows`` rows."""
    chunks = d.chunks or (max(1, min(int(d.shape[0]), 1024)), *d.shape[1:])
    return dst.create_dataset(path, shape=(rows, *d.shape[1:]), maxshape=(None, *d.shape[1:]),
                              dtype=d.dtype, chunks=chunks, **_filters(d))


class SwmrFrameWriter:
    """``source`` (a closed frame file) re-written into ``dest`` one frame at a time
    (``append()``), readable by SWMR readers throughout; ``close()`` ends the file.

    ``data_path``: the frame stack; ``monitor_path`` (None: none) and the
    ``timestamp``/``count_time``/``frame_index`` datasets beside the stack are per-frame
    metadata, written after each frame's data."""

    def __init__(self, source: Path, dest: Path, data_path: str,
                 monitor_path: str | None = None) -> None:
        self.src = h5py.File(source, "r")
        self.data_path = data_path
        det = self.src[data_path].parent
        paths = [data_path, *([monitor_path] if monitor_path else []),
                 *(f"{det.name}/{n}" for n in _PER_FRAME if n in det)]
        self._src_objs = [self.src[p] for p in paths]
        self.n_frames = int(self.src[data_path].shape[0])
        self.written = 0
        Path(dest).parent.mkdir(parents=True, exist_ok=True)
        self.f = h5py.File(dest, "w", libver="latest")
        made: dict[int, str] = {}

        def grown(path: str, d: h5py.Dataset) -> h5py.Dataset | None:
            if not any(d == o for o in self._src_objs):
                return None
            made[_address(d)] = "/" + path
            return _growing(self.f, "/" + path, d, 0)

        copy_layout(self.src, self.f, grown)
        # each per-frame dataset under its name in the source (any of its hard links)
        self.per_frame = [(o, self.f[made[_address(o)]]) for o in self._src_objs]
        self.f.swmr_mode = True

    def append(self) -> int:
        """Write the next frame: data (flush), then its per-frame metadata (flush). The
        number of frames written."""
        i = self.written
        for k, (src, dst) in enumerate(self.per_frame):
            dst.resize(i + 1, axis=0)
            dst[i] = src[i]
            if k == 0:
                dst.flush()
        for _, dst in self.per_frame[1:]:
            dst.flush()
        self.written = i + 1
        return self.written

    def close(self) -> None:
        self.f.close()
        self.src.close()


class ScanFileReplay:
    """A finished Bliss-like scan file ``source`` (entries ``<n>.1``) published at ``dest``
    as it was acquired, one new version of the whole file per call (module docstring).

    Per-point datasets of an entry are those under one of ``per_point`` (paths relative to
    the entry) whose first dimension is the entry's number of points (the length of
    ``points_path``); ``late`` datasets (the scan's ``end_time``) are written by
    :meth:`finish` only. The file starts with the source's root attributes and no entry."""

    def __init__(self, source: Path, dest: Path, *,
                 points_path: str = "measurement/epoch",
                 per_point: Sequence[str] = ("measurement", "instrument/positioners"),
                 late: Sequence[str] = ("end_time",)) -> None:
        self.src = h5py.File(source, "r")
        self.dest = Path(dest)
        self.points_path, self.per_point, self.late = points_path, tuple(per_point), tuple(late)
        self._grown: dict[str, list[str]] = {}
        self._rows: dict[str, int] = {}
        with self._version(new=True) as f:
            _copy_attrs(self.src, f)

    def entries(self) -> list[str]:
        """The source's scan entries in scan order."""
        names = [n for n in self.src if n.endswith(".1") and n[:-2].isdigit()]
        return sorted(names, key=lambda n: int(n[:-2]))

    def external_files(self, entry: str) -> list[str]:
        """The files the entry's external links point to (as written in the links)."""
        return list(dict.fromkeys(link.filename for _, link in _links(self.src[entry])
                                  if isinstance(link, h5py.ExternalLink)))

    def n_points(self, entry: str) -> int:
        return int(self.src[entry][self.points_path].shape[0])

    def _version(self, new: bool = False) -> contextlib.AbstractContextManager[h5py.File]:
        return _version(self.dest, new)

    def _is_per_point(self, path: str, d: h5py.Dataset, n_points: int) -> bool:
        inside = any(path == p or path.startswith(p + "/") for p in self.per_point)
        return inside and d.ndim >= 1 and d.shape[0] == n_points

    def _start(self, f: h5py.File, entry: str, prefill: bool) -> None:
        src = self.src[entry]
        dst = f.create_group(entry)
        n_points = self.n_points(entry)

        def grown(path: str, d: h5py.Dataset) -> h5py.Dataset | None:
            if not self._is_per_point(path, d, n_points):
                return None
            if prefill:
                return dst.create_dataset(path, shape=d.shape, dtype=d.dtype,
                                          chunks=d.chunks, **_filters(d))
            return _growing(dst, path, d, 0)

        self._grown[entry] = copy_layout(src, dst, grown, skip=lambda p: p in self.late)
        self._rows[entry] = n_points if prefill else 0

    def start(self, entry: str, *, prefill: bool = False) -> None:
        """The entry appears: its static datasets and links, the per-point datasets empty
        (``prefill``: at their full length, zero-filled, as a writer that pre-extends),
        no ``late`` dataset."""
        with self._version() as f:
            self._start(f, entry, prefill)

    def grow(self, entry: str, n: int) -> None:
        """The entry's first ``n`` points are written (per-point datasets extended); the
        entry appears first (:meth:`start`) when it is not there yet."""
        src = self.src[entry]
        with self._version() as f:
            if entry not in self._rows:
                self._start(f, entry, prefill=False)
            old = self._rows[entry]
            for path in self._grown[entry]:
                d = f[entry][path]
                if d.shape[0] < n:
                    d.resize(n, axis=0)
                d[old:n] = src[path][old:n]
        self._rows[entry] = n

    def finish(self, entry: str) -> None:
        """The scan ends: every point's data, then the ``late`` datasets (the entry
        appears first when it is not there yet)."""
        src = self.src[entry]
        with self._version() as f:
            if entry not in self._rows:
                self._start(f, entry, prefill=False)
            dst = f[entry]
            for path in self._grown[entry]:
                d = dst[path]
                if d.shape[0] != src[path].shape[0]:
                    d.resize(src[path].shape[0], axis=0)
                d[...] = src[path][()]
            for path in self.late:
                if path in src:
                    parent, name = posixpath.split(path)
                    src.copy(src[path], dst.require_group(parent) if parent else dst,
                             name=name)
        self._rows[entry] = self.n_points(entry)

    def close(self) -> None:
        self.src.close()


class LineAppender:
    """A text record re-written as it grows: ``header`` lines at once, then data lines
    appended (each flushed whole); ``finish(final)`` replaces the file atomically by its
    final text (e.g. a header line only known at the end)."""

    def __init__(self, dest: Path, header: list[str]) -> None:
        self.dest = Path(dest)
        self.dest.parent.mkdir(parents=True, exist_ok=True)
        self.fh = open(self.dest, "w", encoding="latin-1", newline="")
        self.fh.write("".join(header))
        self.fh.flush()

    def append(self, lines: list[str]) -> None:
        if lines:
            self.fh.write("".join(lines))
            self.fh.flush()

    def finish(self, final: bytes | None = None) -> None:
        self.fh.close()
        if final is not None:
            write_bytes_atomic(self.dest, final)
