"""Files written while a run is acquired, as a beamline writes them (for `simulate --live`).

:class:`SwmrFrameWriter` re-writes a finished NeXus frame file (:mod:`operando.io.xrd.nexus`
layout) frame by frame into a growing HDF5 file in SWMR mode: the static metadata first,
then per frame the detector data (flushed), then its timestamp, count time, monitor and
frame index (flushed) — so a reader sees a frame's data before its timestamp, and counts the
frame complete only once both are there. :class:`LineAppender` appends the data rows of a
text record (cycler export, trigger record) line by line after its header.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from operando.io.atomic import write_bytes_atomic

__all__ = ["LineAppender", "SwmrFrameWriter"]

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


class SwmrFrameWriter:
    """``source`` (a closed NeXus frame file) re-written into ``dest`` one frame at a time
    (``append()``), readable by SWMR readers throughout; ``close()`` ends the file."""

    def __init__(self, source: Path, dest: Path, data_path: str, monitor_path: str) -> None:
        self.src = h5py.File(source, "r")
        self.data_path, self.monitor_path = data_path, monitor_path
        det = self.src[data_path].parent
        self.per_frame = [data_path, monitor_path, *(f"{det.name}/{n}" for n in _PER_FRAME
                                                    if n in det)]
        self.n_frames = int(self.src[data_path].shape[0])
        self.written = 0
        Path(dest).parent.mkdir(parents=True, exist_ok=True)
        self.f = h5py.File(dest, "w", libver="latest")
        for k, v in self.src.attrs.items():
            self.f.attrs[k] = v
        self._frame_objs = [self.src[p] for p in self.per_frame]
        self.src.visititems(self._copy_static)
        for path, obj in zip(self.per_frame, self._frame_objs, strict=True):
            d = self.f.create_dataset(
                path, shape=(0, *obj.shape[1:]), maxshape=(None, *obj.shape[1:]),
                dtype=obj.dtype, chunks=obj.chunks or (1, *obj.shape[1:]), **_filters(obj))
            for k, v in obj.attrs.items():
                d.attrs[k] = v
        for name, obj in self.src["/entry"].items():  # hard links (NXdata → detector data)
            if isinstance(obj, h5py.Group) and obj.attrs.get("NX_class") == "NXdata":
                for k, d in obj.items():
                    target = d.attrs.get("target")
                    if isinstance(d, h5py.Dataset) and target in self.f:
                        self.f[f"/entry/{name}/{k}"] = self.f[target]
        self.f.swmr_mode = True

    def _copy_static(self, name: str, obj: object) -> None:
        if isinstance(obj, h5py.Group):
            g = self.f.require_group(name)
            for k, v in obj.attrs.items():
                g.attrs[k] = v
        elif isinstance(obj, h5py.Dataset):
            if any(obj == o for o in self._frame_objs):
                return  # per-frame (visited once, under any of its hard links): made after
            d = self.f.create_dataset("/" + name, data=obj[()])
            for k, v in obj.attrs.items():
                d.attrs[k] = v

    def append(self) -> int:
        """Write the next frame: data (flush), then its per-frame metadata (flush). The
        number of frames written."""
        i = self.written
        data = self.f[self.data_path]
        data.resize(i + 1, axis=0)
        data[i] = self.src[self.data_path][i]
        data.flush()
        for path in self.per_frame[1:]:
            d = self.f[path]
            d.resize(i + 1, axis=0)
            d[i] = self.src[path][i]
        for path in self.per_frame[1:]:
            self.f[path].flush()
        self.written = i + 1
        return self.written

    def times(self) -> np.ndarray:
        """The frames' timestamps (beamline epoch s) from the source file."""
        det = self.src[self.data_path].parent
        return np.asarray(det["timestamp"][()], dtype=float)

    def close(self) -> None:
        self.f.close()
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
