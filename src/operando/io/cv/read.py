"""Cyclic voltammograms from any supported file, as the file holds them: :func:`read_cv`.

=================  ==============================================  =========================
format             recognised by                                   scan rate recorded in
=================  ==============================================  =========================
``nova``           header naming ``WE(1).Current (A)`` or         the name ``cv_<mV/s>mVs.txt``
                   ``Potential applied (V)`` (``;``/tab/``,``)
``biologic-mpt``   ``EC-Lab ASCII FILE`` / ``.mpt``                the header's ``dE/dt`` lines
``biologic-mpr``   ``BIO-LOGIC MODULAR FILE`` / ``.mpr``           (not decoded: dE/dt only)
``csv``            ``.csv`` / ``.tsv`` / ``.txt`` with named columns  an optional scan-rate column
``seccm``          HDF5 (``.h5``/``.hdf5``/``.nxs``), /entry/map   ``scan_rate_V_s`` dataset
=================  ==============================================  =========================

The result is one Dataset per file. A cell CV (dimension ``sample``): ``potential_V``
(V, measured when recorded), ``potential_applied_V`` (V), ``current_A`` (A, anodic
positive), ``cycle`` (only when the file numbers cycles), ``scan_rate_V_s`` (V/s, only
from a CSV scan-rate column), coordinate ``time_s`` (s); attributes ``source_file``,
``format``, ``technique``, ``scan_rates_recorded_V_s`` (the rates the file records, V/s;
empty when none) and ``scan_rate_source`` (where they were found; "" when none). An
SECCM map: ``potential_V`` and ``current_A`` on ``(y, x, rate, sample)``, ``time_s`` on
``(rate, sample)``, ``scan_rate_V_s`` on ``rate``, coordinates ``y_um``, ``x_um``;
attribute ``pixel_area_cm2``.

Cutting a record into sweeps, one Dataset per scan rate and the check of each recorded
rate against dE/dt: :func:`operando.kinetics.cv.label_sweeps`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import xarray as xr

from operando.io.cv.nova import read_nova_cv, scan_rate_from_filename
from operando.io.cv.seccm import read_seccm_map
from operando.io.echem.biologic import mpt_record, read_mpt_file
from operando.io.echem.biologic_mpr import mpr_record, read_mpr_file
from operando.io.echem.csv_table import numeric_column, read_csv_table
from operando.io.echem.schema import build_echem_dataset
from operando.io.errors import InputFileError
from operando.io.formats import detect_format

__all__ = ["CV_FORMATS", "CVFormat", "CVFormatError", "detect_cv_format", "read_cv"]

CVFormat = Literal["nova", "biologic-mpt", "biologic-mpr", "csv", "seccm"]
CV_FORMATS: tuple[str, ...] = ("nova", "biologic-mpt", "biologic-mpr", "csv", "seccm")

_VAR_ATTRS = {
    "potential_V": ("V", "working-electrode potential"),
    "potential_applied_V": ("V", "applied (programmed) potential"),
    "current_A": ("A", "current (anodic positive)"),
    "time_s": ("s", "time"),
    "cycle": ("1", "cycle number"),
    "scan_rate_V_s": ("V/s", "scan rate recorded in the file"),
    "x_um": ("um", "pixel centre x"),
    "y_um": ("um", "pixel centre y"),
}


class CVFormatError(InputFileError):
    """A CV file that is missing or of an unknown layout or content."""


# ------------------------------------------------------------------------ detection


def detect_cv_format(path: str | os.PathLike[str]) -> str:
    """The CV format of one file: its first bytes decide, then its suffix (the one table
    of :mod:`operando.io.formats`)."""
    return detect_format(path, CV_FORMATS, what="CV file", error=CVFormatError)


# --------------------------------------------------------------- raw 1-D records


def _record(path: Path, fmt: str, *, potential_V: np.ndarray, current_A: np.ndarray,
            time_s: np.ndarray, potential_applied_V: np.ndarray | None = None,
            cycle: np.ndarray | None = None, recorded_rates: Sequence[float] = (),
            recorded_source: str = "", row_rate_V_s: np.ndarray | None = None,
            technique: str = "") -> xr.Dataset:
    """One 1-D CV file as a Dataset (layout in the module docstring)."""
    potential_V = np.asarray(potential_V, dtype=float)
    data_vars: dict[str, tuple[str, np.ndarray]] = {
        "potential_V": ("sample", potential_V),
        "potential_applied_V": ("sample", potential_V if potential_applied_V is None
                                else np.asarray(potential_applied_V, dtype=float)),
        "current_A": ("sample", np.asarray(current_A, dtype=float)),
    }
    if cycle is not None:
        data_vars["cycle"] = ("sample", np.asarray(cycle, dtype=np.int64))
    if row_rate_V_s is not None:
        data_vars["scan_rate_V_s"] = ("sample", np.asarray(row_rate_V_s, dtype=float))
    ds = xr.Dataset(data_vars, coords={"time_s": ("sample", np.asarray(time_s, dtype=float))},
                    attrs={"source_file": str(path), "format": fmt, "technique": technique,
                           "scan_rates_recorded_V_s": np.asarray([float(r) for r in
                                                                  recorded_rates]),
                           "scan_rate_source": recorded_source})
    return _with_attrs(ds)


def _raw_nova(path: Path) -> xr.Dataset:
    d = read_nova_cv(path)
    try:
        rates, source = [scan_rate_from_filename(path)], "file name"
    except ValueError:
        rates, source = [], ""
    e_app = d.get("Potential applied (V)", d.get("WE(1).Potential (V)"))
    return _record(path, "nova", potential_V=d.get("WE(1).Potential (V)", e_app),
                potential_applied_V=e_app, current_A=d["WE(1).Current (A)"],
                time_s=d["Time (s)"], cycle=d.get("Scan"), recorded_rates=rates,
                recorded_source=source)


_RATE_UNITS = {"v/s": 1.0, "mv/s": 1e-3, "uv/s": 1e-6, "µv/s": 1e-6, "mv/min": 1e-3 / 60,
               "v/min": 1 / 60}


def _mpt_header_rates(path: Path, header: Sequence[str]) -> list[float]:
    """The ``dE/dt`` settings of an EC-Lab CV header (one value per technique column)."""
    values: list[str] | None = None
    unit: list[str] | None = None
    for line in header:
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "dE/dt":
            if parts[1] == "unit":
                unit = parts[2:]
            elif values is None:
                values = parts[1:]
    if not values:
        return []
    units = unit or ["mV/s"] * len(values)
    out = []
    for k, text in enumerate(values):
        u = units[min(k, len(units) - 1)].lower()
        if u not in _RATE_UNITS:
            raise CVFormatError(f"{path}: header 'dE/dt unit': expected one of "
                                f"{sorted(_RATE_UNITS)}, found {u!r}")
        try:
            out.append(float(text.replace(",", ".")) * _RATE_UNITS[u])
        except ValueError:
            raise CVFormatError(f"{path}: header 'dE/dt': expected a number, found "
                                f"{text!r}") from None
    return out


def _raw_biologic(path: Path, fmt: str) -> xr.Dataset:
    if fmt == "biologic-mpt":
        f = read_mpt_file(path)
        rec, rates = mpt_record(f), _mpt_header_rates(path, f.header_lines)
        technique = f.technique
    else:
        rec, rates, technique = mpr_record(read_mpr_file(path)), [], ""
    ds = build_echem_dataset([rec], timezone="UTC")
    e = ds["voltage_V"].values
    e_app = ds["control_V"].values if "control_V" in ds else None
    return _record(path, fmt, potential_V=e, potential_applied_V=e_app,
                current_A=ds["current_A"].values, time_s=ds["time_s"].values,
                cycle=ds["cycle"].values, recorded_rates=sorted(set(rates)),
                recorded_source="header 'dE/dt'" if rates else "", technique=technique)


_CSV_NAMES: dict[str, dict[str, float]] = {
    "time_s": {"time_s": 1.0, "time/s": 1.0, "time (s)": 1.0, "t/s": 1.0, "t (s)": 1.0,
               "time": 1.0},
    "potential_V": {"potential_v": 1.0, "ewe/v": 1.0, "e/v": 1.0, "potential (v)": 1.0,
                    "we(1).potential (v)": 1.0, "e (v)": 1.0, "voltage_v": 1.0,
                    "voltage (v)": 1.0, "ewe/mv": 1e-3, "potential (mv)": 1e-3},
    "potential_applied_V": {"potential_applied_v": 1.0, "control/v": 1.0,
                            "potential applied (v)": 1.0, "e_applied (v)": 1.0},
    "current_A": {"current_a": 1.0, "i/a": 1.0, "current (a)": 1.0, "we(1).current (a)": 1.0,
                  "i (a)": 1.0, "<i>/ma": 1e-3, "i/ma": 1e-3, "current (ma)": 1e-3,
                  "current_ma": 1e-3, "current (ua)": 1e-6, "current_ua": 1e-6},
    "cycle": {"cycle": 1.0, "cycle number": 1.0, "cycle_number": 1.0, "scan": 1.0},
    "scan_rate_V_s": {"scan_rate_v_s": 1.0, "scan rate (v/s)": 1.0, "scan_rate_mv_s": 1e-3,
                      "scan rate (mv/s)": 1e-3},
}


def _raw_csv(path: Path) -> xr.Dataset:
    table = read_csv_table(path)
    lower = {n.lower(): n for n in table.names}
    cols: dict[str, np.ndarray] = {}
    for key, names in _CSV_NAMES.items():
        for name, factor in names.items():
            if name in lower:
                cols[key] = numeric_column(table, lower[name], error=CVFormatError) * factor
                break
    missing = [k for k in ("time_s", "potential_V", "current_A") if k not in cols]
    if missing:
        accepted = {k: sorted(_CSV_NAMES[k]) for k in missing}
        raise CVFormatError(f"{path}: CV CSV needs columns for {missing} (case-insensitive "
                            f"names accepted: {accepted}); found {table.names}")
    rate = cols.get("scan_rate_V_s")
    return _record(path, "csv", potential_V=cols["potential_V"], current_A=cols["current_A"],
                time_s=cols["time_s"], potential_applied_V=cols.get("potential_applied_V"),
                cycle=None if "cycle" not in cols else cols["cycle"].astype(np.int64),
                row_rate_V_s=rate, recorded_source="scan-rate column" if rate is not None
                else "")


def _with_attrs(ds: xr.Dataset) -> xr.Dataset:
    for name, var in ds.variables.items():
        if name in _VAR_ATTRS:
            var.attrs["units"], var.attrs["long_name"] = _VAR_ATTRS[name]
    return ds


# ------------------------------------------------------------------------ SECCM


def _raw_seccm(path: Path) -> xr.Dataset:
    """The SECCM map as a Dataset on (y, x, rate, sample) (module docstring)."""
    m = read_seccm_map(path)
    area = float(m["pixel_area_cm2"])
    if not area > 0:
        raise CVFormatError(f"{path}: /entry/map@pixel_area_cm2: expected a positive droplet "
                            f"footprint (cm²), found {area}")
    rates = np.asarray(m["scan_rate_V_s"], dtype=float).reshape(-1)
    if rates.size and np.any(~(rates > 0)):
        raise CVFormatError(f"{path}: /entry/map/scan_rate_V_s: expected positive rates, "
                            f"found {rates.tolist()}")
    ds = xr.Dataset(
        {
            "potential_V": (("y", "x", "rate", "sample"), np.asarray(m["potential_V"])),
            "current_A": (("y", "x", "rate", "sample"), np.asarray(m["current_A"])),
            "time_s": (("rate", "sample"), np.asarray(m["time_s"], dtype=float)),
            "scan_rate_V_s": ("rate", rates),
        },
        coords={"y_um": ("y", np.asarray(m["y_um"], dtype=float)),
                "x_um": ("x", np.asarray(m["x_um"], dtype=float))},
        attrs={"source_file": str(path), "format": "seccm", "technique": "SECCM map",
               "pixel_area_cm2": area, "scan_rates_recorded_V_s": rates,
               "scan_rate_source": "/entry/map/scan_rate_V_s"},
    )
    return _with_attrs(ds)


# ------------------------------------------------------------------------ entry


_READERS: dict[str, Callable[[Path], xr.Dataset]] = {
    "nova": _raw_nova,
    "biologic-mpt": lambda p: _raw_biologic(p, "biologic-mpt"),
    "biologic-mpr": lambda p: _raw_biologic(p, "biologic-mpr"),
    "csv": _raw_csv,
    "seccm": _raw_seccm,
}


def read_cv(
    paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    format: Literal["auto", "nova", "biologic-mpt", "biologic-mpr", "csv", "seccm"] = "auto",
) -> list[xr.Dataset]:
    """Read CV file(s) as they are: one Dataset per file (layout in the module docstring).

    ``paths``: one file or several; ``format``: ``"auto"`` (the default) detects each file
    (:func:`detect_cv_format`). An SECCM map cannot be mixed with cell CVs. Raises
    :class:`CVFormatError` (naming the file) for a missing file or bad content, and for a
    map given with other files. Sweeps and scan rates:
    :func:`operando.kinetics.cv.label_sweeps`.
    """
    if format != "auto" and format not in CV_FORMATS:
        raise ValueError(f"kinetics.cv_format: expected 'auto' or one of {list(CV_FORMATS)}, "
                         f"found {format!r}")
    items = [paths] if isinstance(paths, str | os.PathLike) else list(paths)
    if not items:
        raise ValueError("read_cv: expected at least one CV file, found none")
    files = [Path(p) for p in items]
    formats = [detect_cv_format(p) if format == "auto" else format for p in files]
    if "seccm" in formats and len(files) > 1:
        raise CVFormatError(f"{files[formats.index('seccm')]}: an SECCM map holds all its scan "
                            "rates; expected it alone (read cell CVs separately)")
    out: list[xr.Dataset] = []
    for p, fmt in zip(files, formats, strict=True):
        if not p.is_file():
            raise CVFormatError(f"{p}: no such file (expected a CV file, format {fmt})")
        out.append(_READERS[fmt](p))
    return out
