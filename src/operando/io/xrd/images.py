"""Single images and image series read with fabio: masks, darks, flats and frame files.

* :func:`read_image` reads one 2D image for a mask, dark or flat: EDF, TIFF, CBF, any other
  format fabio knows, NumPy ``.npy``, and HDF5 URLs ``file.h5::/path`` (a 2D dataset, or
  frame 0 of a 3D stack) and ``file.h5::/path[3]`` (frame 3 of a stack). fabio does the
  reading (its own ``fabio.open("file.h5::/path", frame=k)`` understands HDF5 URLs);
  ``hdf5plugin`` is imported first so compressed HDF5 data decode.
* :func:`check_image_shape` refuses an image whose shape differs from the detector frames.
* :func:`natural_key`, :func:`scan_image_file` and :func:`read_image_frames` are the
  image-series half of :func:`operando.io.xrd.frames.open_frames` (one file may hold several
  frames: multi-frame EDF or TIFF).

Every bad input raises :class:`FrameFormatError` naming the file, the HDF5 path where there
is one, what was expected and what was found.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import fabio
import h5py
import hdf5plugin  # noqa: F401  (registers the compression filters before h5py reads data)
import numpy as np

from operando.io.errors import InputFileError
from operando.io.paths import natural_key

T = TypeVar("T")

__all__ = [
    "FRAME_FILES",
    "FrameFormatError",
    "ImageFileInfo",
    "check_image_shape",
    "check_not_empty",
    "header_count_time",
    "header_float",
    "natural_key",
    "read_image",
    "read_image_frames",
    "read_image_headers",
    "scan_image_file",
    "split_hdf5_url",
]

#: header keys (fabio header dict) giving the exposure time in seconds, in order of preference
COUNT_TIME_HEADER_KEYS = ("count_time", "exposure_time", "Exposure_time", "ExposureTime",
                          "acq_expo_time", "preset_time")
# Pilatus/Eiger mini-CBF: "# Exposure_time 0.0970000 s" inside _array_data.header_contents
_CBF_EXPOSURE = re.compile(r"#\s*Exposure_time\s+([-+0-9.eE]+)\s*s?", re.IGNORECASE)
_URL_FRAME = re.compile(r"^(?P<path>.*?)\[(?P<frame>-?\d+)\]$")
#: formats that never hold more than one frame per file: not opened just to count frames
SINGLE_FRAME_SUFFIXES = (".cbf", ".cbf.gz", ".cbf.bz2", ".img", ".mccd", ".npy")


class FrameFormatError(InputFileError):
    """A frame file, mask, dark or flat is missing, unreadable or has the wrong layout."""


def split_hdf5_url(spec: str | os.PathLike[str]) -> tuple[Path, str | None]:
    """``"file.h5::/path"`` → ``(Path("file.h5"), "/path")``; a plain path → ``(path, None)``."""
    text = os.fspath(spec)
    if "::" in text:
        file, _, inner = text.partition("::")
        inner = inner.strip()
        return Path(file), ("/" + inner.lstrip("/")) if inner else "/"
    return Path(text), None


log = logging.getLogger(__name__)

#: what every reader of detector frames accepts, for "expected ..." in messages
FRAME_FILES = "detector frames (HDF5 / NeXus, or an image fabio reads: EDF, CBF, TIFF, ...)"


def check_not_empty(path: Path, expected: str) -> None:
    """Raise :class:`FrameFormatError` for a 0-byte file (a copy or a write cut short),
    naming it and what was ``expected``; fabio would fail on it with an unrelated error."""
    with contextlib.suppress(OSError):
        if path.is_file() and path.stat().st_size == 0:
            raise FrameFormatError(
                f"{path}: expected {expected}, found an empty file (0 bytes: a copy or a "
                "write cut short?)"
            )


class _FabioRelay(logging.Handler):
    """Takes the ``fabio`` loggers' records while operando reads images (see
    :func:`_fabio_logs`); records from threads not reading through operando go on to the
    root logger as if propagated."""

    def emit(self, record: logging.LogRecord) -> None:
        stack = getattr(_FABIO_LOCAL, "records", None)
        if stack:
            stack[-1].append(record)
        else:
            logging.getLogger().handle(record)


_FABIO_LOCK = threading.Lock()
_FABIO_LOCAL = threading.local()
_FABIO_RELAY = _FabioRelay()
_FABIO_STATE: dict[str, Any] = {"depth": 0, "propagate": True}
#: (logger, message template) of the fabio warnings already shown in this process
_FABIO_SEEN: set[tuple[str, str]] = set()


@contextlib.contextmanager
def _fabio_logs(path: str | os.PathLike[str]) -> Iterator[None]:
    """Read images with fabio without flooding the console: fabio's warnings (TIFF tags it
    cannot decode, ... one per file and per read) go to this module's logger, the first of
    each kind in the process as one WARNING naming the file, the rest at DEBUG (the log
    file). When the read fails, fabio's lines go to DEBUG: the exception says it better."""
    fabio_logger = logging.getLogger("fabio")
    with _FABIO_LOCK:
        if _FABIO_STATE["depth"] == 0:
            _FABIO_STATE["propagate"] = fabio_logger.propagate
            fabio_logger.addHandler(_FABIO_RELAY)
            fabio_logger.propagate = False
        _FABIO_STATE["depth"] += 1
    stack = _FABIO_LOCAL.__dict__.setdefault("records", [])
    stack.append([])
    failed = True
    try:
        yield
        failed = False
    finally:
        records = stack.pop()
        with _FABIO_LOCK:
            _FABIO_STATE["depth"] -= 1
            if _FABIO_STATE["depth"] == 0:
                fabio_logger.removeHandler(_FABIO_RELAY)
                fabio_logger.propagate = _FABIO_STATE["propagate"]
        _relay_fabio_records(os.fspath(path), records, failed)


def _relay_fabio_records(path: str, records: list[logging.LogRecord], failed: bool) -> None:
    for record in records:
        if record.levelno < logging.WARNING:
            continue
        key = (record.name, str(record.msg))
        first = not failed and key not in _FABIO_SEEN
        _FABIO_SEEN.add(key)
        if first:
            log.warning("%s: fabio: %s (further warnings of this kind go to the log only)",
                        path, record.getMessage().strip())
        else:
            log.debug("%s: %s: %s", path, record.name, record.getMessage().strip())


def _fabio_reader(fn: Callable[..., T]) -> Callable[..., T]:
    """Run ``fn(path, ...)`` inside :func:`_fabio_logs` for its first argument."""
    @functools.wraps(fn)
    def wrapper(path: Any, *args: Any, **kwargs: Any) -> T:
        with _fabio_logs(path):
            return fn(path, *args, **kwargs)
    return wrapper


def _close(img: Any) -> None:
    """Release the file a fabio image may keep open (its HDF5 reader keeps the file)."""
    with contextlib.suppress(Exception):
        img.close()
    h5 = getattr(img, "hdf5", None)
    if h5 is not None:
        with contextlib.suppress(Exception):
            h5.close()


def _hdf5_candidates(path: Path) -> list[str]:
    """2D and 3D numeric datasets in an HDF5 file, for an error message ('found: ...')."""
    found: list[str] = []
    with contextlib.suppress(Exception), h5py.File(path, "r") as f:
        def visit(name: str, obj: Any) -> None:
            if (isinstance(obj, h5py.Dataset) and obj.ndim in (2, 3)
                    and obj.dtype.kind in "iuf" and len(found) < 20):
                found.append(f"/{name} {obj.shape}")
        f.visititems(visit)
    return found


@_fabio_reader
def _read_hdf5_url(file: Path, inner: str, what: str, spec: str) -> np.ndarray:
    m = _URL_FRAME.match(inner)
    frame: int | None = int(m.group("frame")) if m else None
    dpath = m.group("path") if m else inner
    try:
        img = fabio.open(f"{file}::{dpath}", frame=frame)
    except KeyError as err:
        cands = _hdf5_candidates(file)
        raise FrameFormatError(
            f"{what} {file}: no dataset at {dpath}; found 2D/3D datasets: "
            f"{', '.join(cands) if cands else 'none'}"
        ) from err
    except (IndexError, ValueError) as err:
        n_found = "an unknown number of"
        with contextlib.suppress(Exception), h5py.File(file, "r") as f:
            n_found = str(f[dpath].shape[0])
        raise FrameFormatError(
            f"{what} {file}::{dpath}: frame {frame} requested, the stack holds {n_found} "
            f"frames ({err})"
        ) from err
    except Exception as err:
        raise FrameFormatError(f"{what} {spec}: cannot read the HDF5 image ({err})") from err
    try:
        n = int(getattr(img, "nframes", 1) or 1)
        if frame is not None and not 0 <= frame < n:
            raise FrameFormatError(
                f"{what} {file}::{dpath}: frame {frame} requested, the stack holds {n} "
                f"frames (0..{n - 1})"
            )
        data = np.array(img.data)
    finally:
        _close(img)
    return data


@_fabio_reader
def read_image(spec: str | os.PathLike[str], *, what: str = "image") -> np.ndarray:
    """Read one 2D image (mask, dark, flat) with fabio, in its stored dtype.

    ``spec`` is a file fabio reads (EDF, TIFF, CBF, ...), a NumPy ``.npy`` file, or an HDF5
    URL ``file.h5::/path`` / ``file.h5::/path[k]`` (frame ``k`` of a 3D stack; frame 0 when
    no index is given). ``what`` ("mask", "dark", "flat") names the image in errors.
    A multi-frame file (EDF, TIFF, a 3D ``.npy``) gives its first frame, as fabio reads it.
    """
    text = os.fspath(spec)
    file, inner = split_hdf5_url(text)
    if not file.is_file():
        raise FrameFormatError(f"{what} file not found: {file}")
    check_not_empty(file, f"a {what} image (EDF, TIFF, CBF, .npy, or HDF5 file.h5::/path)")
    if inner is not None:
        data = _read_hdf5_url(file, inner, what, text)
    else:
        try:
            img = fabio.open(str(file))
        except Exception as err:
            raise FrameFormatError(
                f"{what} {file}: not an image fabio can read (EDF, TIFF, CBF, .npy, or an "
                f"HDF5 URL file.h5::/path): {err}"
            ) from err
        try:
            data = np.array(img.data)
        finally:
            _close(img)
    if data.ndim != 2:
        raise FrameFormatError(
            f"{what} {text}: expected a 2D image, found an array of shape {data.shape}"
        )
    return data


def check_image_shape(
    image: np.ndarray, shape: tuple[int, int], *, what: str, source: str
) -> None:
    """Raise :class:`FrameFormatError` unless ``image.shape == shape`` (the frame shape)."""
    found = tuple(int(s) for s in np.shape(image))
    want = (int(shape[0]), int(shape[1]))
    if found != want:
        raise FrameFormatError(
            f"{what} {source}: expected shape {want} like the detector frames, found {found}"
        )


# -- image series ----------------------------------------------------------------------

@dataclass(frozen=True)
class ImageFileInfo:
    """What :func:`scan_image_file` learns from one image file."""

    n_frames: int
    frame_shape: tuple[int, int]
    dtype: np.dtype


def _open(path: Path) -> Any:
    check_not_empty(path, FRAME_FILES)
    try:
        return fabio.open(str(path))
    except FileNotFoundError as err:
        raise FrameFormatError(f"frame file not found: {path}") from err
    except Exception as err:
        raise FrameFormatError(
            f"{path}: neither HDF5 nor an image fabio can read ({type(err).__name__}: {err})"
        ) from err


@_fabio_reader
def scan_image_file(path: Path) -> ImageFileInfo:
    """Frame count, frame shape and dtype of one image file (reads its first frame)."""
    img = _open(path)
    try:
        data = np.asarray(img.data)
        n = int(getattr(img, "nframes", 1) or 1)
    finally:
        _close(img)
    if data.ndim != 2:
        raise FrameFormatError(f"{path}: expected 2D frames, found an image of shape {data.shape}")
    return ImageFileInfo(n_frames=n, frame_shape=(data.shape[0], data.shape[1]),
                         dtype=data.dtype)


@_fabio_reader
def read_image_frames(
    path: Path, start: int, stop: int, *, frame_shape: tuple[int, int], dtype: np.dtype
) -> np.ndarray:
    """Frames ``start:stop`` of one image file as ``(stop-start, ny, nx)`` of ``dtype``."""
    out = np.empty((stop - start, *frame_shape), dtype=dtype)
    img = _open(path)
    try:
        for k in range(start, stop):
            try:
                data = np.asarray((img if k == 0 else img.getframe(k)).data)
            except Exception as err:
                raise FrameFormatError(
                    f"{path}: cannot read frame {k} ({type(err).__name__}: {err}); the file "
                    "may be truncated"
                ) from err
            if data.shape != frame_shape:
                raise FrameFormatError(
                    f"{path}: frame {k} has shape {data.shape}, expected {frame_shape} like "
                    "the other frames of the series"
                )
            if data.dtype != dtype and not np.can_cast(data.dtype, dtype, casting="safe"):
                raise FrameFormatError(
                    f"{path}: frame {k} has dtype {data.dtype}, expected {dtype} like the "
                    "other frames of the series"
                )
            out[k - start] = data
    finally:
        _close(img)
    return out


@_fabio_reader
def read_image_headers(path: Path, n_frames: int) -> list[dict[str, str]]:
    """The fabio header (key → text) of each of the first ``n_frames`` frames of one file."""
    headers: list[dict[str, str]] = []
    img = _open(path)
    try:
        for k in range(n_frames):
            frame = img if k == 0 else img.getframe(k)
            headers.append({str(key): str(v) for key, v in dict(frame.header).items()})
    except FrameFormatError:
        raise
    except Exception as err:
        raise FrameFormatError(
            f"{path}: cannot read the header of frame {len(headers)} ({err})"
        ) from err
    finally:
        _close(img)
    return headers


def header_float(header: dict[str, str], key: str) -> float:
    """The number at the start of header field ``key`` (``"0.5 s"`` → 0.5); NaN if absent."""
    text = header.get(key)
    if text is None:
        return math.nan
    try:
        return float(text.split()[0])
    except (ValueError, IndexError):
        return math.nan


def header_count_time(header: dict[str, str]) -> tuple[float, str | None]:
    """Exposure time (s) from an image header and the field it came from, or (NaN, None).

    Fields tried: EDF-style ``count_time``, ``exposure_time``, ... (:data:`COUNT_TIME_HEADER_KEYS`),
    then the Pilatus/Eiger mini-CBF line ``# Exposure_time 0.097 s``.
    """
    for key in COUNT_TIME_HEADER_KEYS:
        value = header_float(header, key)
        if math.isfinite(value):
            return value, key
    m = _CBF_EXPOSURE.search(header.get("_array_data.header_contents", ""))
    if m:
        return float(m.group(1)), "Exposure_time (mini-CBF header)"
    return math.nan, None
