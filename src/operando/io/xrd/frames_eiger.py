"""The Dectris Eiger layout: a master file whose ``/entry/data/data_NNNNNN`` are external
links into data files, each data file one segment (see :mod:`operando.io.xrd.frames`)."""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import replace
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401  (registers the HDF5 compression filters before any read)

from operando.io.xrd.frame_segments import (
    FrameSegment,
    OpenedSegment,
    OpenOptions,
)
from operando.io.xrd.frames_hdf5 import (
    attr_int,
    compression_filters,
    detector_saturation,
    find_meta,
    h5_get,
    h5open,
    link_target,
    scalar_int,
)
from operando.io.xrd.images import (
    FrameFormatError,
    natural_key,
)

_EIGER_LINK = re.compile(r"^data_\d{6}$")


def is_eiger_master(f: h5py.File) -> bool:
    grp = h5_get(f, "/entry/data")
    return isinstance(grp, h5py.Group) and any(_EIGER_LINK.match(n) for n in grp)


def eiger_data_files(paths: list[Path]) -> set[str]:
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
                    linked.add(os.path.realpath(link_target(p, link.filename)))
    return linked


def eiger_segments(
    f: h5py.File, file: Path, opts: OpenOptions
) -> tuple[list[OpenedSegment], int | None, str | None]:
    """One segment per linked data file (read directly); missing files are pending."""
    grp = f["/entry/data"]
    det = "/entry/instrument/detector"
    names = sorted((n for n in grp if _EIGER_LINK.match(n)), key=natural_key)
    refs = {
        "timestamp": (find_meta(f, file, det + "/data", "timestamp", opts.timestamp_path,
                                opts.swmr)
                      if opts.timestamp_path else None),
        "count_time": find_meta(f, file, det + "/data", "count_time", opts.count_time_path,
                                opts.swmr),
        "monitor": (find_meta(f, file, det + "/data", "monitor", opts.monitor_path, opts.swmr)
                    if opts.monitor_path else None),
    }
    nimages = scalar_int(f, det + "/detectorSpecific/nimages")
    ntrigger = scalar_int(f, det + "/detectorSpecific/ntrigger") or 1
    announced_total = nimages * ntrigger if nimages else None
    segs: list[OpenedSegment] = []
    expected_low = 1
    missing: list[str] = []
    per_file = 0
    for name in names:
        link = grp.get(name, getlink=True)
        where = f"{file}::/entry/data/{name}"
        if isinstance(link, h5py.ExternalLink):
            data_file, dpath = link_target(file, link.filename), link.path
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
        with h5open(data_file, opts.swmr) as g:
            d = h5_get(g, dpath)
            if not isinstance(d, h5py.Dataset) or d.ndim != 3:
                raise FrameFormatError(
                    f"{where}: {data_file} has no 3D frame dataset at {dpath}"
                )
            extent = int(d.shape[0])
            low = attr_int(d, "image_nr_low")
            high = attr_int(d, "image_nr_high")
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
                source=f"{where} -> {data_file}::{dpath}", compression=compression_filters(d),
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
    saturation = detector_saturation(f, det + "/data")
    mask_path = det + "/detectorSpecific/pixel_mask"
    mask = f"{file}::{mask_path}" if isinstance(h5_get(f, mask_path), h5py.Dataset) else None
    return segs, saturation, mask
