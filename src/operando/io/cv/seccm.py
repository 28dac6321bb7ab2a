"""SECCM-style per-pixel cyclic-voltammetry map in NeXus-flavoured HDF5.

Layout (``kinetics/seccm_map.h5``)::

    /                           NX_class = NXroot, creator, file_name, file_time
    /entry                      NX_class = NXentry, title (dataset)
    /entry/map                  NX_class = NXdata, signal = current_A
        x_um          (nx,)                                   µm, pixel centres
        y_um          (ny,)                                   µm
        scan_rate_V_s (n_rates,)                              V/s
        potential_V   (ny, nx, n_rates, n_samples) float32    V, applied potential
        current_A     (ny, nx, n_rates, n_samples) float32    A, anodic positive
        time_s        (n_rates, n_samples)                    s, since the start of each sweep
      attrs: pixel_area_cm2 (droplet footprint)

Every dataset carries ``units`` and ``long_name``; the 4-D datasets are chunked one
pixel row per chunk. The file is written under a temporary name and renamed.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from operando.io.atomic import atomic_path
from operando.io.errors import InputFileError
from operando.io.nxutil import nx_group, write_root_attrs

MAP_GROUP = "entry/map"
MAP_DATASETS = ("x_um", "y_um", "scan_rate_V_s", "time_s", "potential_V", "current_A")


def write_seccm_map(
    path: str | Path,
    *,
    x_um: np.ndarray,
    y_um: np.ndarray,
    scan_rate_V_s: np.ndarray,
    potential_V: np.ndarray,
    current_A: np.ndarray,
    time_s: np.ndarray,
    pixel_area_cm2: float,
) -> Path:
    """Write the map atomically; shapes as in the module docstring. Returns the path."""
    x = np.asarray(x_um, dtype=float)
    y = np.asarray(y_um, dtype=float)
    rates = np.asarray(scan_rate_V_s, dtype=float)
    t = np.asarray(time_s, dtype=float)
    shape = (y.size, x.size, rates.size, t.shape[-1])
    for name, arr in (("potential_V", potential_V), ("current_A", current_A)):
        if np.shape(arr) != shape:
            raise ValueError(f"{path}: {name} expected shape (ny, nx, n_rates, n_samples) = "
                             f"{shape}, found {np.shape(arr)}")
    if t.shape != shape[2:]:
        raise ValueError(f"{path}: time_s expected shape {shape[2:]}, found {t.shape}")
    chunks = (1, *shape[1:])
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as h5:
        write_root_attrs(h5, file_name=Path(path).name, creator="operando.io.cv.seccm")
        h5.attrs["default"] = "entry"
        entry = nx_group(h5, "entry", "NXentry")
        entry.attrs["default"] = "map"
        entry["title"] = "SECCM cyclic-voltammetry map"
        g = nx_group(entry, "map", "NXdata")
        g.attrs.update({
            "signal": "current_A",
            "axes": np.array(["y_um", "x_um", "scan_rate_V_s", "."], dtype=h5py.string_dtype()),
            "y_um_indices": 0, "x_um_indices": 1, "scan_rate_V_s_indices": 2,
            "pixel_area_cm2": float(pixel_area_cm2),
        })
        specs = (
            ("x_um", x, "um", "pixel centre x", None),
            ("y_um", y, "um", "pixel centre y", None),
            ("scan_rate_V_s", rates, "V/s", "potential scan rate", None),
            ("time_s", t, "s", "time since the start of the sweep", None),
            ("potential_V", potential_V, "V", "applied potential", chunks),
            ("current_A", current_A, "A", "working-electrode current (anodic positive)", chunks),
        )
        for name, arr, units, long_name, ch in specs:
            if ch is None:
                ds = g.create_dataset(name, data=arr)
            else:
                ds = g.create_dataset(name, data=np.asarray(arr, dtype=np.float32),
                                      chunks=ch, compression="gzip", compression_opts=1,
                                      shuffle=True)
            ds.attrs["units"] = units
            ds.attrs["long_name"] = long_name
    return Path(path)


def read_seccm_map(path: str | Path) -> dict[str, np.ndarray | float]:
    """Read the whole map: dataset name → array, plus ``pixel_area_cm2`` (float).

    Raises :class:`~operando.io.errors.InputFileError` naming the file and the dataset
    path when the file, the group, a dataset or the ``pixel_area_cm2`` attribute is missing.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{path}: no such file (expected an SECCM map HDF5 file)")
    with h5py.File(path, "r") as h5:
        g = h5.get(MAP_GROUP)
        if not isinstance(g, h5py.Group):
            raise InputFileError(
                f"{path}: expected group /{MAP_GROUP} (the SECCM map), found top-level "
                f"{sorted(h5)}"
            )
        missing = [n for n in MAP_DATASETS if not isinstance(g.get(n), h5py.Dataset)]
        if missing:
            raise InputFileError(
                f"{path}: /{MAP_GROUP}: expected datasets {list(MAP_DATASETS)}; missing "
                f"{missing}, found {sorted(g)}"
            )
        if "pixel_area_cm2" not in g.attrs:
            raise InputFileError(
                f"{path}: /{MAP_GROUP}: expected attribute 'pixel_area_cm2' (droplet "
                f"footprint, cm²), found attributes {sorted(g.attrs)}"
            )
        out: dict[str, np.ndarray | float] = {name: g[name][()] for name in MAP_DATASETS}
        out["pixel_area_cm2"] = float(g.attrs["pixel_area_cm2"])
    return out
