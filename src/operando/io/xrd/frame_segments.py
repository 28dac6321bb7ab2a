"""What a frame source is made of: per-frame metadata references, segments, options.

The picklable pieces :func:`operando.io.xrd.frames.open_frames` assembles into a
:class:`~operando.io.xrd.frames.FrameSource`, and the names it searches for per-frame
metadata (shared by every layout module: :mod:`.frames_hdf5`, :mod:`.frames_eiger`,
:mod:`.frames_images`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "ANNOUNCED_NAMES",
    "COUNT_TIME_NAMES",
    "GLOB_CHARS",
    "MIN_EPOCH_S",
    "MONITOR_NAMES",
    "TIMESTAMP_NAMES",
    "TIME_UNITS",
    "WRITTEN_NAMES",
    "FrameMetadata",
    "FrameSegment",
    "MetaRef",
    "OpenOptions",
    "OpenedSegment",
    "join_sources",
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
#: time units of timestamp / count-time datasets → factor to seconds
TIME_UNITS = {"s": 1.0, "sec": 1.0, "second": 1.0, "seconds": 1.0, "ms": 1e-3,
              "us": 1e-6, "µs": 1e-6, "microsecond": 1e-6, "ns": 1e-9, "nanosecond": 1e-9}
#: characters that make an input name a glob pattern
GLOB_CHARS = re.compile(r"[*?\[]")


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


@dataclass
class OpenOptions:
    """The :func:`~operando.io.xrd.frames.open_frames` options every layout reads: the
    frame dataset path or pattern (None = found automatically), the per-frame metadata
    paths (None = searched for), whether HDF5 files are opened as SWMR readers and the
    detector's frame shape (ny, nx) auto-detection must find (None: not known)."""

    dataset: str | None
    timestamp_path: str | None
    count_time_path: str | None
    monitor_path: str | None
    swmr: bool
    frame_shape: tuple[int, int] | None = None  # the detector's (ny, nx), when known


#: a segment with its frame shape and dtype, while opening
OpenedSegment = tuple[FrameSegment, tuple[int, int], np.dtype]


def join_sources(sources: list[str], what: str = "datasets") -> str:
    """Where a per-frame quantity came from, for an attribute: up to four ``file::/path``
    joined with ``; ``, else the first and a count of ``what``; ``"absent"`` for none."""
    uniq = list(dict.fromkeys(sources))
    if not uniq:
        return "absent"
    if len(uniq) <= 4:
        return "; ".join(uniq)
    return f"{uniq[0]}; ... ({len(uniq)} {what})"
