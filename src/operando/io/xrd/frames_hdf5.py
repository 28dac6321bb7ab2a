"""HDF5 frame layouts: NeXus NXdetector data, Bliss scans (external links or virtual
datasets into LIMA files) and plain HDF5 stacks; the HDF5 helpers the Eiger layout shares.

Finding the frame dataset(s) of a file, each one's frame count and completeness (the
SWMR rule of :mod:`operando.io.xrd.frames`), its per-frame metadata; reading a frame range
and the metadata of a segment.
"""

from __future__ import annotations

import contextlib
import fnmatch
import math
import os
import posixpath
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import h5py
import hdf5plugin  # noqa: F401  (registers the HDF5 compression filters before any read)
import numpy as np

from operando.io.nxutil import as_str
from operando.io.xrd.chunkcheck import check_frame_chunks
from operando.io.xrd.frame_segments import (
    ANNOUNCED_NAMES,
    COUNT_TIME_NAMES,
    GLOB_CHARS,
    MIN_EPOCH_S,
    MONITOR_NAMES,
    TIME_UNITS,
    TIMESTAMP_NAMES,
    WRITTEN_NAMES,
    FrameSegment,
    MetaRef,
    OpenedSegment,
    OpenOptions,
)
from operando.io.xrd.images import (
    FrameFormatError,
    natural_key,
)

_BLISS_ENTRY = re.compile(r"^\d+\.\d+$")
_FILTER_NAMES = {1: "gzip", 2: "shuffle", 3: "fletcher32", 4: "szip", 5: "nbit",
                 6: "scaleoffset", 307: "bzip2", 32000: "lzf", 32001: "blosc", 32004: "lz4",
                 32008: "bitshuffle", 32013: "zfp", 32015: "zstd", 32017: "sz",
                 32026: "blosc2"}
_BLOSC_CODECS = {0: "blosclz", 1: "lz4", 2: "lz4hc", 3: "snappy", 4: "zlib", 5: "zstd"}


def h5open(path: Path, swmr: bool) -> h5py.File:
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


def compression_filters(dset: h5py.Dataset) -> tuple[str, ...]:
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


def link_target(parent_file: Path, name: str) -> Path:
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
            ext = link_target(file, link.filename)
            target = posixpath.join(link.path, rest) if rest else link.path
            if not ext.is_file():
                raise FrameFormatError(
                    f"{file}::{posixpath.join(cur, name)}: external link to {ext}::"
                    f"{link.path}, but {ext} does not exist"
                )
            with h5open(ext, swmr) as g:
                return _physical(g, ext, target, swmr, depth + 1)
        cur = posixpath.join(cur, name)
    return file, cur


def _obj_key(obj: h5py.HLObject) -> tuple[str, int]:
    return (os.path.realpath(obj.file.filename), h5py.h5o.get_info(obj.id).addr)


#: frames found automatically are at least this many pixels along each axis when the
#: detector shape is not known (a 3×3 orientation matrix or a 4×4 transformation is no frame)
MIN_FRAME_SIDE = 8
#: 2D datasets never taken as a lone frame by auto-detection (detector calibration images)
_NOT_FRAMES = re.compile(r"(^|_)(pixel_)?mask$|^flat(field)?$|^dark(field)?$|^gain$",
                         re.IGNORECASE)


@dataclass
class _Cand:
    path: str
    shape: tuple[int, ...]
    in_detector: bool
    dangling: str = ""  # for a link to a missing file/object: the link's target
    missing: str = ""  # ... and what is missing (the file, resolved, or the object)

    def fits(self, frame_shape: tuple[int, int] | None) -> bool:
        """A frame stack (n, ny, nx) or one frame (ny, nx) of the detector's shape (at
        least :data:`MIN_FRAME_SIDE` pixels a side when the shape is not known)."""
        if self.dangling or len(self.shape) not in (2, 3):
            return False
        frame = tuple(int(v) for v in self.shape[-2:])
        if frame_shape is not None:
            return frame == tuple(int(v) for v in frame_shape)
        return min(frame) >= MIN_FRAME_SIDE

    def text(self) -> str:
        if self.dangling:
            return f"{self.path} -> {self.dangling} ({self.missing or 'missing'})"
        return f"{self.path} {self.shape}"


def _dangling(group: h5py.Group, name: str, link: Any) -> tuple[str, str]:
    """(target, what is missing) of a soft or external link that does not resolve."""
    if isinstance(link, h5py.SoftLink):
        return link.path, f"no object {link.path}"
    here = Path(group.file.filename)
    ext = link_target(here, link.filename)
    if not ext.is_file():
        return f"{link.filename}::{link.path}", f"missing file {ext}"
    return f"{link.filename}::{link.path}", f"{ext} has no object {link.path}"


def _walk_candidates(f: h5py.File) -> list[_Cand]:
    """Numeric 2D/3D datasets reachable by hard and external links (groups reached through
    an external link are entered: a proposal master linking scan files), each object once;
    and the links of an NXdetector's ``data`` (or any external link) that do not resolve."""
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
            child = posixpath.join(path, name)
            if isinstance(link, h5py.SoftLink):
                if is_det and name == "data" and h5_get(group, name) is None:
                    dangling.append(_Cand(child, (), True, *_dangling(group, name, link)))
                continue  # its target is visited under its own name
            try:
                obj = group[name]
            except (KeyError, OSError):
                if isinstance(link, h5py.ExternalLink):  # dangling: reported in errors
                    dangling.append(_Cand(child, (), is_det and name == "data",
                                          *_dangling(group, name, link)))
                continue
            if isinstance(obj, h5py.Group):
                if isinstance(link, (h5py.HardLink, h5py.ExternalLink)):
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
    found = [c.text() for c in cands if len(c.shape) == 3 or c.dangling]
    return _listing(found)


def _listing(found: list[str]) -> str:
    if len(found) > 8:
        found = [*found[:8], f"... and {len(found) - 8} more"]
    return ", ".join(found) if found else "none"


def _how_to_name(file: Path, example: str) -> str:
    return (f"name the frame stack with --dataset {example} (config: xrd.dataset; Python: "
            f"dataset='{example}') or give it as {file}::{example}")


def _auto_select(f: h5py.File, file: Path, frame_shape: tuple[int, int] | None) -> str:
    """The one frame stack of a file (module docstring of :mod:`.frames`), else an error
    listing the candidates, the links that do not resolve and how to name a stack."""
    everything = _walk_candidates(f)
    fits = [c for c in everything if c.fits(frame_shape)]
    det = [c for c in fits if c.in_detector]
    broken = [c for c in everything if c.dangling and c.in_detector]
    other_broken = [c for c in everything if c.dangling and not c.in_detector]
    unfit = [c for c in everything if not c.dangling and not c.fits(frame_shape)]
    wanted = (f"frames of the detector's shape {tuple(frame_shape)}" if frame_shape
              else f"frames of at least {MIN_FRAME_SIDE}×{MIN_FRAME_SIDE} pixels")
    notes = ""
    if unfit:
        notes += f"; not taken (expected {wanted}): {_listing([c.text() for c in unfit])}"
    if other_broken:
        notes += ("; external links that do not resolve: "
                  f"{_listing([c.text() for c in other_broken])}")
    if len(det) == 1 and not broken:
        return det[0].path
    if det or broken:
        if not det:
            missing = "; ".join(f"{c.path} -> {c.dangling}: {c.missing}" for c in broken)
            others = [c.text() for c in fits]
            raise FrameFormatError(
                f"{file}: the NXdetector frame data is a link that does not resolve "
                f"({missing}); copy the linked file beside {file.name} (where the link "
                f"expects it), or {_how_to_name(file, fits[0].path if fits else '<path>')}"
                f"; other datasets shaped like frames: {_listing(others)}{notes}"
            )
        listing = _listing([c.text() for c in [*det, *broken]])
        raise FrameFormatError(
            f"{file}: {len(det) + len(broken)} detector frame stacks found ({listing}); "
            f"{_how_to_name(file, det[0].path)}, or take them all in order with a pattern "
            "such as --dataset '/*.1/instrument/<detector>/data'" + notes
        )
    odd = [c for c in unfit if c.in_detector and len(c.shape) in (2, 3)]
    if odd:  # the NXdetector's frames, of another shape: never replaced by another dataset
        c = odd[0]
        raise FrameFormatError(
            f"{file}: the NXdetector frames {c.path} {c.shape} are frames of shape "
            f"{tuple(c.shape[-2:])} (ny, nx); expected {wanted} (check the PONI file), or "
            f"{_how_to_name(file, c.path)}{notes}"
        )
    three = [c for c in fits if len(c.shape) == 3]
    if len(three) == 1:
        return three[0].path
    if len(three) > 1:
        raise FrameFormatError(
            f"{file}: no NXdetector data and {len(three)} 3D datasets shaped like frame "
            f"stacks ({_listing([c.text() for c in three])}); "
            f"{_how_to_name(file, three[0].path)}{notes}"
        )
    two = [c for c in fits if not _NOT_FRAMES.search(posixpath.basename(c.path))]
    if len(two) == 1 and not other_broken:
        return two[0].path  # a single 2D frame outside the NeXus conventions
    example = two[0].path if two else "<path>"
    raise FrameFormatError(
        f"{file}: no frame stack found (no NXdetector data, no 3D dataset of {wanted}); "
        f"2D datasets shaped like one frame: {_listing([c.text() for c in two])}; "
        f"{_how_to_name(file, example)}{notes}"
    )


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
            names = [part] if not GLOB_CHARS.search(part) else \
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
    return TIME_UNITS.get(units, TIME_UNITS.get(units.lower(), 1.0))


def h5_get(f: h5py.File, path: str) -> Any:
    try:
        return f[path]
    except (KeyError, OSError, ValueError):
        return None


def _search_groups(f: h5py.File, data_path: str) -> list[str]:
    """Groups searched for per-frame metadata of the frames at ``data_path`` (in order)."""
    groups = [posixpath.dirname(data_path) or "/"]
    dset = h5_get(f, data_path)
    if dset is not None:
        target = as_str(dset.attrs.get("target", "")) if "target" in dset.attrs else ""
        if target.startswith("/"):
            groups.append(posixpath.dirname(target))
    entry = _entry_of(data_path)
    groups.append(posixpath.join(entry, "measurement"))
    inst = h5_get(f, posixpath.join(entry, "instrument"))
    if isinstance(inst, h5py.Group):
        for name in inst:
            if isinstance(inst.get(name, getlink=True), h5py.ExternalLink):
                continue
            sub = h5_get(inst, name)
            if isinstance(sub, h5py.Group) and _nx_class(sub) in ("NXdetector", "NXmonitor"):
                groups.append(sub.name)
    return list(dict.fromkeys(groups))


def one_value(dset: h5py.Dataset, swmr: bool = False) -> bool:
    """True when ``dset`` holds one value for every frame: a scalar, or a one-element 1D
    array (NeXus writers often store a constant that way) unless, read as SWMR, it can still
    grow (``maxshape`` larger than 1: a per-frame dataset holding its first value so far)."""
    if dset.ndim == 0:
        return True
    if dset.shape != (1,):
        return False
    return not swmr or dset.maxshape == (1,)


def find_meta(
    f: h5py.File, file: Path, data_path: str, kind: str, explicit: str | None,
    swmr: bool = False,
) -> MetaRef | None:
    """Locate a per-frame quantity (``kind`` = timestamp / count_time / monitor / written).

    A scalar or one-element dataset (:func:`one_value`) is marked ``scalar``: one value for
    every frame. Searched for, such a monitor is not taken (a lone number beside the frames
    is a total or a preset more often than a per-frame monitor); named, it is."""
    if explicit is not None:
        path = explicit if explicit.startswith("/") else \
            posixpath.join(_entry_of(data_path), explicit)
        dset = h5_get(f, path)
        if not isinstance(dset, h5py.Dataset):
            raise FrameFormatError(
                f"{file}: no {kind.replace('_', ' ')} dataset at {path} "
                f"(named by {kind}_path={explicit!r})"
            )
        return _meta_ref(file, path, dset, kind, swmr)
    names = {"timestamp": TIMESTAMP_NAMES, "count_time": COUNT_TIME_NAMES,
             "monitor": MONITOR_NAMES, "written": WRITTEN_NAMES}[kind]
    for gpath in _search_groups(f, data_path):
        grp = h5_get(f, gpath)
        if not isinstance(grp, h5py.Group):
            continue
        cands = list(names)
        if kind == "monitor" and _nx_class(grp) == "NXmonitor":
            cands.append("data")
        if kind != "monitor" and _nx_class(grp) == "NXmonitor":
            continue
        for name in cands:
            dset = h5_get(grp, name)
            if not isinstance(dset, h5py.Dataset) or dset.dtype.kind not in "iuf":
                continue
            if dset.ndim > 1 or (kind in ("monitor", "written") and one_value(dset, swmr)):
                continue
            ref = _meta_ref(file, posixpath.join(gpath, name), dset, kind, swmr)
            if kind == "timestamp" and not _looks_like_epoch(dset, ref.scale):
                continue
            return ref
    return None


def _meta_ref(file: Path, path: str, dset: h5py.Dataset, kind: str,
              swmr: bool = False) -> MetaRef:
    if dset.ndim > 1:
        raise FrameFormatError(
            f"{file}::{path}: expected a 1D per-frame {kind.replace('_', ' ')} dataset "
            f"(or a scalar), found shape {dset.shape}"
        )
    scale = _time_scale(dset) if kind in ("timestamp", "count_time") else 1.0
    return MetaRef(file=file, path=path, scale=scale, scalar=one_value(dset, swmr))


def _looks_like_epoch(dset: h5py.Dataset, scale: float) -> bool:
    n = dset.shape[0] if dset.ndim else 1
    if n == 0:
        return True  # a growing file before its first frame
    head = np.asarray(dset[: min(n, 16)] if dset.ndim else dset[()], dtype=float).ravel() * scale
    head = head[np.isfinite(head)]
    return head.size == 0 or bool(head[0] > MIN_EPOCH_S)


def scalar_int(f: h5py.File | h5py.Group, path: str) -> int | None:
    dset = h5_get(f, path)
    if not isinstance(dset, h5py.Dataset) or dset.ndim != 0 or dset.dtype.kind not in "iuf":
        return None
    value = float(dset[()])
    return int(value) if math.isfinite(value) else None


def _layout_of(f: h5py.File, path: str, depth: int = 0) -> str:
    """bliss / nexus / hdf5; an entry that is an external link (a proposal master linking
    scan files) has the layout of the file it links to."""
    entry_path = _entry_of(path)
    link = f.get(entry_path, getlink=True) if entry_path != "/" else None
    if isinstance(link, h5py.ExternalLink) and depth < 8:
        target = link_target(Path(f.filename), link.filename)
        with contextlib.suppress(OSError, FrameFormatError), h5open(target, False) as g:
            return _layout_of(g, link.path, depth + 1)
    if any(_BLISS_ENTRY.match(name) for name in f):
        return "bliss"
    entry = h5_get(f, entry_path)
    if entry is not None and _nx_class(entry) == "NXentry":
        return "nexus"
    return "hdf5"


def detector_saturation(f: h5py.File, path: str) -> int | None:
    """The detector's overflow sentinel recorded near the frames, None when absent."""
    for gpath in _search_groups(f, path):
        grp = h5_get(f, gpath)
        if not isinstance(grp, h5py.Group):
            continue
        for name in ("saturation_value", "detectorSpecific/countrate_correction_count_cutoff"):
            value = scalar_int(grp, name)
            if value is not None and value > 0:
                return value
        for name in ("bit_depth_image", "detectorSpecific/bit_depth_image"):
            bits = scalar_int(grp, name)
            if bits is not None and 0 < bits <= 64:
                return 2**bits - 1
    return None


def pixel_mask_ref(f: h5py.File, file: Path, path: str) -> str | None:
    """``file::/path`` of a 2D ``pixel_mask`` in the NXdetector of the frames, or None."""
    for gpath in _search_groups(f, path):
        grp = h5_get(f, gpath)
        if not isinstance(grp, h5py.Group) or _nx_class(grp) == "NXmonitor":
            continue
        for name in ("pixel_mask", "detectorSpecific/pixel_mask"):
            dset = h5_get(grp, name)
            if isinstance(dset, h5py.Dataset) and dset.ndim == 2:
                return f"{file}::{posixpath.join(gpath, name)}"
    return None


def select_paths(
    f: h5py.File, file: Path, dataset: str | None, opts_swmr: bool = False,
    frame_shape: tuple[int, int] | None = None,
) -> tuple[list[str], list[str]]:
    """The logical HDF5 path(s) of the frame stack(s) in one file (see module docstring),
    and, with ``swmr``, the pattern matches from the first one whose linked file is not
    written yet on (their frames are pending)."""
    if dataset is None:
        return [_auto_select(f, file, frame_shape)], []
    if GLOB_CHARS.search(dataset):
        pattern = "/" + dataset.lstrip("/")
        paths: list[str] = []
        later: list[str] = []
        for p in _glob_h5(f, pattern):
            obj = h5_get(f, p)
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
    obj = h5_get(f, path)
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
        if isinstance(h5_get(obj, "data"), h5py.Dataset):
            return [posixpath.join(path, "data")], []
        raise FrameFormatError(
            f"{file}: {path} is a group, not a dataset; found 3D datasets: "
            f"{_list_3d(_walk_candidates(f))}"
        )
    return [path], []


def dataset_segments(
    f: h5py.File, file: Path, dataset: str | None, opts: OpenOptions
) -> tuple[list[OpenedSegment], int | None, str | None]:
    """The frame stacks of a NeXus / Bliss / plain HDF5 file (``dataset``: a path or
    pattern, None = found automatically) with the detector's saturation value and pixel
    mask reference (``file::/path``, None when absent)."""
    paths, later = select_paths(f, file, dataset, opts.swmr, opts.frame_shape)
    segs = [dataset_segment(f, file, p, opts) for p in paths]
    extra = sum(announced_frames(f, file, p, opts) for p in later)
    if extra:
        last, shape, dtype = segs[-1]
        segs[-1] = (replace(last, n_pending=last.n_pending + extra), shape, dtype)
    return segs, detector_saturation(f, paths[0]), pixel_mask_ref(f, file, paths[0])


def announced_frames(f: h5py.File, file: Path, path: str, opts: OpenOptions) -> int:
    """Frames announced for a stack not readable yet (swmr): its extent when it resolves,
    else the longest per-frame metadata or ``acq_nb_frames``-like counter kept beside it."""
    obj = h5_get(f, path)
    if isinstance(obj, h5py.Dataset):
        return int(obj.shape[0]) if obj.ndim == 3 else 1
    n = 0
    for kind, explicit in (("timestamp", opts.timestamp_path),
                           ("count_time", opts.count_time_path),
                           ("monitor", opts.monitor_path)):
        try:
            ref = find_meta(f, file, path, kind, explicit, opts.swmr)
        except FrameFormatError:
            ref = None
        if ref is not None and not ref.scalar:
            n = max(n, int(f[ref.path].shape[0]))
    for gpath in _search_groups(f, path):
        for name in ANNOUNCED_NAMES:
            value = scalar_int(f, posixpath.join(gpath, name))
            if value is not None:
                n = max(n, value)
    return n


def _meta_length(f: h5py.File, ref: MetaRef) -> int | None:
    if ref.scalar:
        return None
    return int(f[ref.path].shape[0])


def dataset_segment(f: h5py.File, file: Path, path: str, opts: OpenOptions) -> OpenedSegment:
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
    # the file holding the dataset: HDF5 resolves a virtual dataset's relative source
    # names against it (not against a master file linking to it)
    read_file, read_path = _physical(f, file, path, opts.swmr)
    if read_file != file or read_path != path:
        where = f"{file}::{path} -> {read_file}::{read_path}"
    if dset.is_virtual:
        complete, breaks, chunk, comp = _vds_check(dset, read_file, where, extent, opts.swmr)
    else:
        chunk = int(dset.chunks[0]) if dset.chunks and dset.ndim == 3 else 1
        comp = compression_filters(dset)
        complete, breaks = extent, ()
    refs = {kind: find_meta(f, file, path, kind, explicit, opts.swmr)
            for kind, explicit in (("timestamp", opts.timestamp_path),
                                   ("count_time", opts.count_time_path),
                                   ("monitor", opts.monitor_path))}
    refs["timestamp"] = _per_frame_timestamp(refs["timestamp"], extent, where, opts)
    written = find_meta(f, file, path, "written", None, opts.swmr) if opts.swmr else None
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
            value = scalar_int(f, posixpath.join(gpath, name))
            if value is not None:
                announced = max(announced, value)
    seg = FrameSegment(
        file=read_file, dataset=read_path, n_frames=complete, n_pending=announced - complete,
        chunk_frames=max(1, chunk), layout=_layout_of(f, path), source=where,
        compression=comp, breaks=breaks, timestamp=refs["timestamp"],
        count_time=refs["count_time"], monitor=refs["monitor"], input_file=file,
    )
    return seg, shape, dset.dtype


def _per_frame_timestamp(
    ref: MetaRef | None, extent: int, where: str, opts: OpenOptions
) -> MetaRef | None:
    """A timestamp holding one value (scalar or one-element array) dates one frame only:
    kept for a one-frame stack; for more frames it is not taken when found by search (it
    is the scan's start, not a per-frame time) and an error when named by timestamp_path."""
    if ref is None or not ref.scalar or extent <= 1:
        return ref
    if opts.timestamp_path is None:
        return None
    raise FrameFormatError(
        f"{ref}: one timestamp value for the {extent} frames of {where} (named by "
        f"timestamp_path={opts.timestamp_path!r}); expected one epoch time per frame (a "
        "single value is taken only for a one-frame stack)"
    )


def _select_rows(space: h5py.h5s.SpaceID) -> tuple[int, int]:
    """First and past-the-end index along axis 0 of a dataspace selection."""
    if space.get_select_type() == h5py.h5s.SEL_ALL:
        dims = space.get_simple_extent_dims()
        return 0, int(dims[0]) if dims else 1
    bounds = space.get_select_bounds()
    return int(bounds[0][0]), int(bounds[1][0]) + 1


def _vds_check(
    dset: h5py.Dataset, file: Path, where: str, extent: int, swmr: bool
) -> tuple[int, tuple[int, ...], int, tuple[str, ...]]:
    """Check each virtual-dataset source exists and holds its frames (``file``: the file
    holding the virtual dataset, against which relative source names resolve; ``where``
    names the dataset in errors).

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
        src = file if fname == "." else link_target(file, fname)
        available = 0
        problem: str | None = None
        if not src.is_file():
            problem = f"source file {src} does not exist"
        else:
            with h5open(src, swmr) as g:
                sd = h5_get(g, dname)
                if not isinstance(sd, h5py.Dataset):
                    problem = f"source {src} has no dataset {dname}"
                else:
                    available = int(sd.shape[0]) if sd.ndim else 1
                    if chunk is None:
                        chunk = int(sd.chunks[0]) if sd.chunks and sd.ndim == 3 else 1
                        comp = compression_filters(sd)
                    if available < s_hi:
                        problem = (f"source {src}::{dname} holds {available} frames, frames "
                                   f"{s_lo}..{s_hi - 1} are mapped")
        if problem is not None:
            if not swmr:
                raise FrameFormatError(
                    f"{where}: virtual dataset frames {lo}..{hi - 1}: {problem} "
                    "(if the acquisition is still running, open with swmr=True)"
                )
            complete = min(complete, lo + max(0, min(hi - lo, available - s_lo)))
    return complete, tuple(sorted(b for b in breaks if b > 0)), chunk or 1, comp


def attr_int(dset: h5py.Dataset, name: str) -> int | None:
    if name not in dset.attrs:
        return None
    try:
        return int(np.asarray(dset.attrs[name]).ravel()[0])
    except (ValueError, TypeError, IndexError):
        return None


def read_hdf5_frames(seg: FrameSegment, i0: int, i1: int, out: np.ndarray, swmr: bool) -> None:
    """Frames ``i0:i1`` of one HDF5 segment into ``out`` (a C-contiguous view); ``swmr``
    opens the file as an SWMR reader."""
    where = f"{seg.file}::{seg.dataset}"
    try:
        with h5open(seg.file, swmr) as f:
            dset = h5_get(f, seg.dataset)
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
                check_frame_chunks(dset, i0, i1, where)  # a corrupt chunk can crash the filter
                dset.read_direct(out, np.s_[i0:i1])
    except OSError as err:
        raise FrameFormatError(
            f"{where}: cannot read frames {i0}..{i1 - 1} ({err}); the file may be truncated "
            "or corrupt"
        ) from err


def hdf5_metadata(seg: FrameSegment, swmr: bool) -> dict[str, tuple[np.ndarray | None, str]]:
    n = seg.n_frames
    out: dict[str, tuple[np.ndarray | None, str]] = {}
    for key, ref in (("timestamp", seg.timestamp), ("count_time", seg.count_time),
                     ("monitor", seg.monitor)):
        if ref is None:
            out[key] = (None, "")
            continue
        with h5open(ref.file, swmr) as f:
            dset = h5_get(f, ref.path)
            if not isinstance(dset, h5py.Dataset):
                raise FrameFormatError(f"{ref}: the {key.replace('_', ' ')} dataset is gone")
            if ref.scalar and key == "timestamp" and n > 1:
                raise FrameFormatError(
                    f"{ref}: one timestamp value for {n} frames; expected one epoch time per "
                    "frame (a single value is taken only for a one-frame stack)"
                )
            if ref.scalar:
                values = np.full(n, float(np.asarray(dset[()], dtype=np.float64).ravel()[0]))
            else:
                if dset.shape[0] < n:
                    raise FrameFormatError(
                        f"{ref}: {dset.shape[0]} {key.replace('_', ' ')} values for {n} frames"
                    )
                values = np.asarray(dset[:n], dtype=np.float64)
        out[key] = (values * ref.scale, str(ref))
    return out
