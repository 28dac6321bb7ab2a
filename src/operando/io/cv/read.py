"""Cyclic voltammograms from any supported file: one entry, :func:`read_cv`.

=================  ==============================================  =========================
format             recognised by                                   scan rate recorded in
=================  ==============================================  =========================
``nova``           ``;`` header with ``Potential applied (V)``      the name ``cv_<mV/s>mVs.txt``
``biologic-mpt``   ``EC-Lab ASCII FILE`` / ``.mpt``                the header's ``dE/dt`` lines
``biologic-mpr``   ``BIO-LOGIC MODULAR FILE`` / ``.mpr``           (not decoded: dE/dt only)
``csv``            ``.csv`` / ``.tsv`` / ``.txt`` with named columns  an optional scan-rate column
``seccm``          HDF5 (``.h5``/``.hdf5``/``.nxs``), /entry/map   ``scan_rate_V_s`` dataset
=================  ==============================================  =========================

Every file is cut into sweeps on its applied potential
(:func:`operando.kinetics.cv.sweep_labels`); the scan rate of each sweep is its median
|dE/dt|. Sweeps whose rates agree within ``scan_rate_tolerance`` are one scan rate, so
a file may hold several scan rates (each becomes its own Dataset, cycles renumbered from
1 within it). When the file records its rate(s), each must agree with dE/dt within the
tolerance, else :class:`CVFormatError` names the file, both values and the tolerance.

The result is a list of normalised Datasets (layout in :mod:`operando.kinetics.cv`), one
per scan rate, sorted by rate; attributes ``scan_rate_V_s`` (the recorded rate when
there is one, else dE/dt), ``scan_rate_dEdt_V_s``, ``scan_rate_recorded_V_s`` (NaN when
none), ``scan_rate_source``, ``source_file``, ``format``.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import xarray as xr

from operando.io.cv.nova import read_nova_cv, scan_rate_from_filename
from operando.io.cv.seccm import read_seccm_map
from operando.io.echem.biologic import MAGIC_LINES, mpt_record, read_mpt_file
from operando.io.echem.biologic_mpr import MPR_MAGIC, mpr_record, read_mpr_file
from operando.io.echem.csv_table import read_csv_table
from operando.io.echem.schema import build_echem_dataset
from operando.io.errors import InputFileError
from operando.io.text import is_float, read_file_head
from operando.kinetics.cv import sweep_labels, sweep_scan_rates_V_s

__all__ = ["CV_FORMATS", "CVFormat", "CVFormatError", "detect_cv_format", "read_cv"]

CVFormat = Literal["nova", "biologic-mpt", "biologic-mpr", "csv", "seccm"]
CV_FORMATS: tuple[str, ...] = ("nova", "biologic-mpt", "biologic-mpr", "csv", "seccm")
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".nxs")
_CSV_SUFFIXES = (".csv", ".tsv", ".txt", ".dat")

_VAR_ATTRS = {
    "potential_V": ("V", "working-electrode potential"),
    "potential_applied_V": ("V", "applied (programmed) potential"),
    "current_A": ("A", "current (anodic positive)"),
    "time_s": ("s", "time"),
    "cycle": ("1", "cycle number"),
    "sweep": ("1", "sweep index (0-based, time order)"),
    "direction": ("1", "sweep direction: +1 anodic, -1 cathodic, 0 held"),
    "x_um": ("um", "pixel centre x"),
    "y_um": ("um", "pixel centre y"),
}


class CVFormatError(InputFileError):
    """A CV file that is missing, of an unknown layout, or whose scan rates disagree."""


# ------------------------------------------------------------------------ detection


def detect_cv_format(path: str | os.PathLike[str]) -> str:
    """The CV format of one file: its first bytes decide, then its suffix."""
    path = Path(path)
    text = read_file_head(path, 256, what="a CV file", error=CVFormatError)
    if text.startswith(HDF5_MAGIC):
        return "seccm"
    if text.startswith(MPR_MAGIC):
        return "biologic-mpr"
    if any(text.startswith(m.encode()) for m in MAGIC_LINES):
        return "biologic-mpt"
    first = text.split(b"\n", 1)[0]
    if b";" in first and b"Potential applied (V)" in first:
        return "nova"
    suffix = path.suffix.lower()
    if suffix in _HDF5_SUFFIXES:
        return "seccm"
    if suffix == ".mpt":
        return "biologic-mpt"
    if suffix == ".mpr":
        return "biologic-mpr"
    if suffix in _CSV_SUFFIXES:
        return "csv"
    raise CVFormatError(
        f"{path}: unknown CV file format (suffix {path.suffix!r}, starts with {text[:24]!r}); "
        f"expected one of {list(CV_FORMATS)}"
    )


# --------------------------------------------------------------- raw 1-D records


class _Raw:
    """The columns of one 1-D CV file before splitting by scan rate."""

    def __init__(self, path: Path, fmt: str, *, potential_V: np.ndarray,
                 current_A: np.ndarray, time_s: np.ndarray,
                 potential_applied_V: np.ndarray | None = None,
                 cycle: np.ndarray | None = None, recorded_rates: Sequence[float] = (),
                 recorded_source: str = "", row_rate_V_s: np.ndarray | None = None,
                 technique: str = "") -> None:
        self.path, self.fmt = path, fmt
        self.potential_V = np.asarray(potential_V, dtype=float)
        self.current_A = np.asarray(current_A, dtype=float)
        self.time_s = np.asarray(time_s, dtype=float)
        self.potential_applied_V = (self.potential_V if potential_applied_V is None
                                    else np.asarray(potential_applied_V, dtype=float))
        self.cycle = None if cycle is None else np.asarray(cycle, dtype=np.int64)
        self.recorded_rates = [float(r) for r in recorded_rates]
        self.recorded_source = recorded_source
        self.row_rate_V_s = row_rate_V_s
        self.technique = technique


def _raw_nova(path: Path) -> _Raw:
    d = read_nova_cv(path)
    try:
        rates, source = [scan_rate_from_filename(path)], "file name"
    except ValueError:
        rates, source = [], ""
    e_app = d["Potential applied (V)"]
    return _Raw(path, "nova", potential_V=d.get("WE(1).Potential (V)", e_app),
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


def _raw_biologic(path: Path, fmt: str) -> _Raw:
    if fmt == "biologic-mpt":
        f = read_mpt_file(path)
        rec, rates = mpt_record(f), _mpt_header_rates(path, f.header_lines)
        technique = f.technique
    else:
        rec, rates, technique = mpr_record(read_mpr_file(path)), [], ""
    ds = build_echem_dataset([rec], timezone="UTC")
    e = ds["voltage_V"].values
    e_app = ds["control_V"].values if "control_V" in ds else None
    return _Raw(path, fmt, potential_V=e, potential_applied_V=e_app,
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


def _raw_csv(path: Path) -> _Raw:
    table = read_csv_table(path)
    lower = {n.lower(): n for n in table.names}
    cols: dict[str, np.ndarray] = {}
    for key, names in _CSV_NAMES.items():
        for name, factor in names.items():
            if name in lower:
                text = table.cells[lower[name]]
                try:
                    cols[key] = np.asarray([float(c) for c in text]) * factor
                except ValueError:
                    bad = next(c for c in text if not is_float(c))
                    raise CVFormatError(f"{path}: column {lower[name]!r}: expected numbers, "
                                        f"found {bad!r}") from None
                break
    missing = [k for k in ("time_s", "potential_V", "current_A") if k not in cols]
    if missing:
        accepted = {k: sorted(_CSV_NAMES[k]) for k in missing}
        raise CVFormatError(f"{path}: CV CSV needs columns for {missing} (case-insensitive "
                            f"names accepted: {accepted}); found {table.names}")
    rate = cols.get("scan_rate_V_s")
    return _Raw(path, "csv", potential_V=cols["potential_V"], current_A=cols["current_A"],
                time_s=cols["time_s"], potential_applied_V=cols.get("potential_applied_V"),
                cycle=None if "cycle" not in cols else cols["cycle"].astype(np.int64),
                row_rate_V_s=rate, recorded_source="scan-rate column" if rate is not None
                else "")


# ------------------------------------------------------------------- splitting


def _cycles_from_sweeps(sweep: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """Cycle numbers (1-based) when the file has none: a cycle starts at each sweep in the
    direction of the first moving sweep."""
    moving = direction != 0
    if not moving.any():
        return np.ones(sweep.size, dtype=np.int64)
    first_dir = direction[np.flatnonzero(moving)[0]]
    starts = np.r_[True, sweep[1:] != sweep[:-1]] & (direction == first_dir)
    return np.maximum(np.cumsum(starts), 1).astype(np.int64)


def _group_rates(rates: dict[int, float], tol: float) -> list[list[int]]:
    """Sweeps grouped by scan rate: sorted, a new group where neighbours differ > tol."""
    order = sorted(rates, key=lambda s: rates[s])
    groups: list[list[int]] = []
    for s in order:
        if groups and rates[s] <= rates[groups[-1][0]] * (1 + tol):
            groups[-1].append(s)
        else:
            groups.append([s])
    return groups


def _rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-300)


def _fmt_rate(v: float) -> str:
    return f"{v * 1e3:.6g} mV/s"


def _split(raw: _Raw, tol: float) -> list[xr.Dataset]:
    path = raw.path
    n = raw.potential_V.size
    if n < 2 * 5:
        raise CVFormatError(f"{path}: expected a CV (at least 10 samples), found {n} rows")
    sweep, direction = sweep_labels(raw.potential_applied_V)
    cycle = raw.cycle if raw.cycle is not None else _cycles_from_sweeps(sweep, direction)
    rates = sweep_scan_rates_V_s(raw.potential_applied_V, raw.time_s, sweep, direction)
    if not rates:
        raise CVFormatError(f"{path}: the potential never sweeps (held at "
                            f"{raw.potential_applied_V[0]:.4g} V): not a CV")
    if raw.row_rate_V_s is not None:  # CSV with a scan-rate column: it defines the groups
        groups_rows = []
        for value in np.unique(raw.row_rate_V_s):
            rows = raw.row_rate_V_s == value
            sw = [s for s in rates if np.any(rows & (sweep == s))]
            dedt = float(np.median([rates[s] for s in sw])) if sw else math.nan
            if not sw or _rel(dedt, value) > tol:
                raise CVFormatError(
                    f"{path}: scan rate in the file (scan-rate column: {_fmt_rate(value)}) "
                    f"disagrees with dE/dt of the potential ({_fmt_rate(dedt)}) by more than "
                    f"kinetics.scan_rate_tolerance = {tol:.3g}")
            groups_rows.append((float(value), dedt, sw))
    else:
        groups = _group_rates(rates, tol)
        dedts = [float(np.median([rates[s] for s in g])) for g in groups]
        recorded = raw.recorded_rates
        if recorded and len(recorded) != len(groups):
            raise CVFormatError(
                f"{path}: scan rate in the file ({raw.recorded_source}: "
                f"{', '.join(_fmt_rate(r) for r in recorded)}) disagrees with dE/dt of the "
                f"potential ({', '.join(_fmt_rate(r) for r in dedts)}; sweeps within "
                f"kinetics.scan_rate_tolerance = {tol:.3g} of each other are one rate)")
        groups_rows = []
        for g, dedt in zip(groups, dedts, strict=True):
            value = dedt
            if recorded:
                value = min(recorded, key=lambda r, d=dedt: _rel(d, r))
                if _rel(dedt, value) > tol:
                    raise CVFormatError(
                        f"{path}: scan rate in the file ({raw.recorded_source}: "
                        f"{_fmt_rate(value)}) disagrees with dE/dt of the potential "
                        f"({_fmt_rate(dedt)}, {100 * _rel(dedt, value):.3g} % off) by more "
                        f"than kinetics.scan_rate_tolerance = {tol:.3g}")
            groups_rows.append((value, dedt, g))
    several = len(groups_rows) > 1
    out = []
    for value, dedt, g in groups_rows:
        sel = np.isin(sweep, g)
        cyc = cycle[sel]
        if several:  # renumber the cycles of this rate from 1
            cyc = np.searchsorted(np.unique(cyc), cyc) + 1
        recorded_v = value if (raw.recorded_rates or raw.row_rate_V_s is not None) else math.nan
        ds = xr.Dataset(
            {
                "potential_V": ("sample", raw.potential_V[sel]),
                "potential_applied_V": ("sample", raw.potential_applied_V[sel]),
                "current_A": ("sample", raw.current_A[sel]),
                "cycle": ("sample", cyc.astype(np.int64)),
                "sweep": ("sample", sweep[sel]),
                "direction": ("sample", direction[sel]),
            },
            coords={"time_s": ("sample", raw.time_s[sel])},
            attrs={
                "scan_rate_V_s": float(value),
                "scan_rate_dEdt_V_s": float(dedt),
                "scan_rate_recorded_V_s": float(recorded_v),
                "scan_rate_source": raw.recorded_source or "dE/dt",
                "source_file": str(path),
                "format": raw.fmt,
                "technique": raw.technique,
            },
        )
        out.append(_with_attrs(ds))
    return out


def _with_attrs(ds: xr.Dataset) -> xr.Dataset:
    for name, var in ds.variables.items():
        if name in _VAR_ATTRS:
            var.attrs["units"], var.attrs["long_name"] = _VAR_ATTRS[name]
    return ds


# ------------------------------------------------------------------------ SECCM


def _read_seccm(path: Path, tol: float) -> list[xr.Dataset]:
    m = read_seccm_map(path)
    area = float(m["pixel_area_cm2"])
    if not area > 0:
        raise CVFormatError(f"{path}: /entry/map@pixel_area_cm2: expected a positive droplet "
                            f"footprint (cm²), found {area}")
    rates = np.asarray(m["scan_rate_V_s"], dtype=float).reshape(-1)
    pot = np.asarray(m["potential_V"])
    cur = np.asarray(m["current_A"])
    t = np.asarray(m["time_s"], dtype=float)
    if rates.size and np.any(~(rates > 0)):
        raise CVFormatError(f"{path}: /entry/map/scan_rate_V_s: expected positive rates, "
                            f"found {rates.tolist()}")
    out = []
    for r, v in enumerate(rates):
        e_mean = pot[:, :, r, :].mean(axis=(0, 1), dtype=float)
        sweep, direction = sweep_labels(e_mean)
        srates = sweep_scan_rates_V_s(e_mean, t[r], sweep, direction)
        dedt = float(np.median(list(srates.values()))) if srates else math.nan
        if not srates or _rel(dedt, v) > tol:
            raise CVFormatError(
                f"{path}: /entry/map/scan_rate_V_s[{r}]: scan rate in the file "
                f"({_fmt_rate(v)}) disagrees with dE/dt of potential_V ({_fmt_rate(dedt)}) "
                f"by more than kinetics.scan_rate_tolerance = {tol:.3g}")
        ds = xr.Dataset(
            {
                "potential_V": (("y", "x", "sample"), pot[:, :, r, :]),
                "current_A": (("y", "x", "sample"), cur[:, :, r, :]),
                "potential_applied_V": ("sample", e_mean),
                "cycle": ("sample", _cycles_from_sweeps(sweep, direction)),
                "sweep": ("sample", sweep),
                "direction": ("sample", direction),
            },
            coords={"time_s": ("sample", t[r]),
                    "y_um": ("y", np.asarray(m["y_um"], dtype=float)),
                    "x_um": ("x", np.asarray(m["x_um"], dtype=float))},
            attrs={"scan_rate_V_s": float(v), "scan_rate_dEdt_V_s": dedt,
                   "scan_rate_recorded_V_s": float(v),
                   "scan_rate_source": "/entry/map/scan_rate_V_s", "source_file": str(path),
                   "format": "seccm", "technique": "SECCM map", "pixel_area_cm2": area},
        )
        out.append(_with_attrs(ds))
    return out


# ------------------------------------------------------------------------ entry


def read_cv(
    paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    format: Literal["auto", "nova", "biologic-mpt", "biologic-mpr", "csv", "seccm"] = "auto",
    *,
    scan_rate_tolerance: float = 0.05,
) -> list[xr.Dataset]:
    """Read CV file(s) into one normalised Dataset per scan rate, sorted by rate.

    ``paths``: one file or several (one per scan rate, or files holding several rates);
    ``format``: ``"auto"`` detects each file (:func:`detect_cv_format`);
    ``scan_rate_tolerance``: relative agreement expected between sweeps of one rate and
    between a recorded rate and dE/dt. An SECCM map gives Datasets on ``(y, x, sample)``
    and cannot be mixed with cell CVs. Raises :class:`CVFormatError` (naming the file) for
    bad content, disagreeing scan rates, two files with the same rate, or a mix of maps
    and cell files.
    """
    if format != "auto" and format not in CV_FORMATS:
        raise ValueError(f"kinetics.cv_format: expected 'auto' or one of {list(CV_FORMATS)}, "
                         f"found {format!r}")
    if not scan_rate_tolerance > 0:
        raise ValueError(f"kinetics.scan_rate_tolerance: expected > 0, found "
                         f"{scan_rate_tolerance}")
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
        if fmt == "seccm":
            out.extend(_read_seccm(p, scan_rate_tolerance))
            continue
        if fmt == "nova":
            raw = _raw_nova(p)
        elif fmt in ("biologic-mpt", "biologic-mpr"):
            raw = _raw_biologic(p, fmt)
        else:
            raw = _raw_csv(p)
        out.extend(_split(raw, scan_rate_tolerance))
    out.sort(key=lambda d: d.attrs["scan_rate_V_s"])
    for a, b in itertools.pairwise(out):
        va, vb = a.attrs["scan_rate_V_s"], b.attrs["scan_rate_V_s"]
        if _rel(vb, va) <= scan_rate_tolerance:
            raise CVFormatError(
                f"{b.attrs['source_file']}: scan rate {_fmt_rate(vb)} repeats that of "
                f"{a.attrs['source_file']} ({_fmt_rate(va)}, within kinetics.scan_rate_"
                f"tolerance = {scan_rate_tolerance:.3g}); expected one CV per scan rate")
    return out

