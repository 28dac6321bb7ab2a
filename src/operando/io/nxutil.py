"""Small NeXus helpers shared by the HDF5 readers and writers (groups with ``NX_class``,
NXroot attrs, attribute text)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import h5py
import numpy as np

__all__ = ["as_str", "nx_group", "write_root_attrs"]


def nx_group(parent: h5py.Group, name: str, nx_class: str) -> h5py.Group:
    """Create ``parent/name`` with ``NX_class = nx_class``."""
    g = parent.create_group(name)
    g.attrs["NX_class"] = nx_class
    return g


def write_root_attrs(f: h5py.File, *, file_name: str, creator: str) -> None:
    """The NXroot attributes: ``NX_class``, ``creator``, ``file_name`` (the final name, not
    the temporary one), ``file_time`` (UTC, ISO-8601), HDF5 and h5py versions."""
    f.attrs["NX_class"] = "NXroot"
    f.attrs["creator"] = creator
    f.attrs["file_name"] = file_name
    f.attrs["file_time"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    f.attrs["HDF5_Version"] = h5py.version.hdf5_version
    f.attrs["h5py_version"] = h5py.version.version


def as_str(value: Any) -> str:
    """An HDF5 attribute or scalar dataset value as text (bytes decoded as UTF-8, a 0-d
    array unwrapped)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray) and value.shape == ():
        return as_str(value[()])
    return str(value)
