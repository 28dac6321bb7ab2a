"""Dropping an HDF5 file that a write failed on (a full disk, ``RLIMIT_FSIZE``) without
touching it again, so the process goes on — and exits — normally.

When HDF5 cannot write a file its later calls on that file are not safe: closing it fails
too ("unable to extend file properly", "Can't close dataset"), and after such a close
HDF5 can die of a segmentation fault — on the next call that names the file
(``H5Fget_name``), when h5py deallocates a dataset or file object at the next garbage
collection, or when the library shuts down at interpreter exit. h5netcdf makes it certain:
its ``File.__del__`` is ``close`` → ``flush``, which reads the root group of the broken file.

So after a failed write nothing calls HDF5 on that file again:

- :func:`abandon` marks the h5py objects' identifiers *locked*: h5py never releases a
  locked identifier when the object is deallocated (its own mechanism for the library's
  constant identifiers);
- :func:`release_h5netcdf` finds the ``h5netcdf.File`` objects open on a path (by the name
  they keep in Python, never by asking HDF5), marks them closed (their private ``_closed``
  flag: h5netcdf has no public way to drop a file whose close failed) and abandons their
  h5py file.

The library keeps the file open until the process ends (HDF5 ends it quietly: it does not
retry a failed write at shutdown); :func:`operando.io.atomic.atomic_path` truncates the
temporary file to 0 bytes before removing it, so the descriptor HDF5 keeps holds no disk
space.
"""

from __future__ import annotations

import contextlib
import gc
import os
import sys
from pathlib import Path
from typing import Any

__all__ = ["abandon", "release_h5netcdf"]


def abandon(*objects: Any) -> None:
    """Never let h5py release these objects' identifiers (h5py ``File``, ``Dataset``,
    ``Group`` objects or bare identifiers; None is skipped)."""
    for obj in objects:
        oid = getattr(obj, "id", obj)
        with contextlib.suppress(AttributeError, TypeError):
            oid.locked = True


def release_h5netcdf(path: str | Path) -> int:
    """Drop every ``h5netcdf.File`` still open on ``path`` (module doc); how many. Nothing
    happens when h5netcdf was never imported."""
    h5nc = sys.modules.get("h5netcdf")
    if h5nc is None:
        return 0
    target = os.path.realpath(path)
    dropped = 0
    for obj in gc.get_objects():
        if not isinstance(obj, h5nc.File) or getattr(obj, "_closed", True):
            continue
        name = getattr(obj, "_filename", None)
        if not isinstance(name, str | bytes) or os.path.realpath(os.fsdecode(name)) != target:
            continue
        h5file = obj._h5file
        obj._closed = True
        abandon(h5file)
        dropped += 1
    return dropped
