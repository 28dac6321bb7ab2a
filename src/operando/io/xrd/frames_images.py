"""Image series read with fabio (EDF, CBF, TIFF, ...): one segment per file, per-frame
metadata from the image headers (see :mod:`operando.io.xrd.frames`)."""

from __future__ import annotations

from pathlib import Path

import hdf5plugin  # noqa: F401  (registers the HDF5 compression filters before any read)
import numpy as np

from operando.io.xrd.frame_segments import (
    FrameSegment,
    MetaRef,
    OpenedSegment,
    OpenOptions,
)
from operando.io.xrd.images import (
    SINGLE_FRAME_SUFFIXES,
    FrameFormatError,
    header_count_time,
    header_float,
    read_image_headers,
    scan_image_file,
)


def image_segments(paths: list[Path], opts: OpenOptions) -> list[OpenedSegment]:
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
    out: list[OpenedSegment] = []
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


def image_metadata(seg: FrameSegment) -> dict[str, tuple[np.ndarray | None, str]]:
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
