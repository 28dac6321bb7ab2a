"""Neware cycler files (``.nda`` / ``.ndax``), read with NewareNDA (``NewareNDA.read``).

NewareNDA returns one pandas DataFrame per file, one row per record (checked on the
real ``new_nda_file.nda``, nda version 29, and in NewareNDA's source)::

    Index  Cycle  Step  Step_Index  Status  Time  Voltage  Current(mA)
    Charge_Capacity(mAh)  Discharge_Capacity(mAh)  Charge_Energy(mWh)
    Discharge_Energy(mWh)  Timestamp  [aux columns such as T1, V1]

* ``Time`` is the time within the current step (s, float32, restarting at 0 in every
  step); ``Step`` counts step changes from 1; ``Step_Index`` is the program step; ``Cycle``
  is NewareNDA's "charge first" cycle count from 1; ``Status`` is ``CC_Chg``, ``CC_DChg``,
  ``CV_Chg``, ``CCCV_Chg``, ``Rest``, ``OCV``, ``Pause``, ...
* ``Voltage`` in V, ``Current(mA)`` in mA (negative on discharge), capacities in mA·h,
  unsigned and restarting at 0 in every step.
* ``Timestamp``: nda version 29 stores the cycler PC's naive local wall time in whole
  seconds, which NewareNDA returns naive; newer files (nda 130, ndax) store an epoch, which
  NewareNDA converts to the reading machine's local zone and returns tz-aware. A naive
  column is localised with the reader's ``timezone``; an aware one is converted to UTC
  as it is (an absolute time).

The normalised Dataset (see :mod:`operando.io.echem.schema`): ``time_s`` = the step times
laid end to end (each step starts when the previous one's last record was taken), with a
pause (the timestamps advancing more than ``PAUSE_TOLERANCE_S`` beyond the step times)
added where the cycler stood still between steps; ``time_utc`` = the first record's
timestamp + ``time_s`` (so 1 s resolution on nda 29); ``charge_C`` = net charge
(charge − discharge capacity) continued from step to step, × 3.6 C per mA·h; ``step`` =
``Step_Index``; ``cycle`` = ``Cycle`` − 1 (first cycle 0 as for EC-Lab); open circuit =
``Status`` Rest / OCV / Pause. Other columns are extra variables.
"""

from __future__ import annotations

import logging
import os
import re
import struct
import warnings
import zipfile
from collections.abc import Sequence
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from operando.constants import MAH_TO_C
from operando.io.echem.biologic import as_paths
from operando.io.echem.schema import (
    EchemFormatError,
    EchemRecord,
    ExtraColumn,
    build_echem_dataset,
)
from operando.io.timestamps import zoneinfo_or_raise

__all__ = [
    "NEWARE_SUFFIXES",
    "PAUSE_TOLERANCE_S",
    "neware_elapsed_time_s",
    "neware_record",
    "read_neware",
    "read_neware_frame",
]

NEWARE_SUFFIXES = (".nda", ".ndax")
#: A step starting this much later (s) on the timestamps than the step times say is a pause.
PAUSE_TOLERANCE_S = 2.0
OPEN_CIRCUIT_STATUS = frozenset({"Rest", "OCV", "Pause"})
REQUIRED = ("Time", "Voltage", "Current(mA)", "Step", "Step_Index", "Status", "Cycle",
            "Charge_Capacity(mAh)", "Discharge_Capacity(mAh)", "Timestamp")
#: NewareNDA column -> (variable name, units, long_name) for the extra variables.
KNOWN_EXTRAS: dict[str, tuple[str, str, str]] = {
    "Index": ("record_index", "1", "Neware record index"),
    "Step": ("step_count", "1", "step changes counted from 1 (NewareNDA Step)"),
    "Status": ("status", "1", "Neware step type (CC_Chg, CC_DChg, Rest, ...)"),
    "Time": ("step_time_s", "s", "time within the step"),
    "Charge_Capacity(mAh)": ("charge_capacity_mAh", "mA.h", "charge capacity within the step"),
    "Discharge_Capacity(mAh)": ("discharge_capacity_mAh", "mA.h",
                                "discharge capacity within the step"),
    "Charge_Energy(mWh)": ("charge_energy_mWh", "mW.h", "charge energy within the step"),
    "Discharge_Energy(mWh)": ("discharge_energy_mWh", "mW.h",
                              "discharge energy within the step"),
}
#: Auxiliary channels as NewareNDA names them: T1 (temperature), V1 (voltage), H1 ...
AUX_UNITS = {"T": ("degC", "auxiliary temperature"), "V": ("V", "auxiliary voltage"),
             "H": ("percent", "auxiliary humidity")}
_AUX = re.compile(r"^([A-Za-z])(-?\d+)$")
_PARSER_ERRORS = (ValueError, NotImplementedError, EOFError, TypeError, KeyError, IndexError,
                  OSError, struct.error, zipfile.BadZipFile)


def _newarenda():  # type: ignore[no-untyped-def]
    try:
        import NewareNDA
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError("reading Neware .nda/.ndax files needs NewareNDA: "
                          "pip install NewareNDA") from None
    return NewareNDA


def read_neware_frame(path: str | os.PathLike[str]) -> Any:
    """The NewareNDA DataFrame of one ``.nda``/``.ndax`` file (columns as in the module
    docstring). Raises :class:`EchemFormatError` naming the file when it is missing, of
    another suffix, or unreadable (NewareNDA's own error is quoted)."""
    path = Path(path)
    if path.suffix.lower() not in NEWARE_SUFFIXES:
        raise EchemFormatError(f"{path}: expected a Neware file ending in .nda or .ndax, "
                               f"found suffix {path.suffix!r}")
    if not path.is_file():
        raise EchemFormatError(f"{path}: no such file (expected a Neware .nda/.ndax)")
    nda = _newarenda()
    logger = logging.getLogger("newarenda")
    level = logger.level
    try:
        with warnings.catch_warnings():
            # NewareNDA's own pandas deprecation warnings are not the user's business
            warnings.filterwarnings("ignore", module=r"NewareNDA(\.|$)")
            return nda.read(str(path), log_level="WARNING")
    except _PARSER_ERRORS as exc:
        text = " ".join((str(exc) or type(exc).__name__).split())
        raise EchemFormatError(
            f"{path}: NewareNDA could not read this file ({type(exc).__name__}: {text}); "
            "not a Neware file, an unsupported version, or damaged"
        ) from None
    finally:
        logger.setLevel(level)


def neware_elapsed_time_s(
    new_step: np.ndarray,
    step_time_s: np.ndarray,
    wall_s: np.ndarray | None,
    pause_tolerance_s: float = PAUSE_TOLERANCE_S,
) -> tuple[np.ndarray, list[tuple[int, float]]]:
    """Time since the first record (s) from per-step times laid end to end.

    ``new_step``: True at the first row of each step; ``step_time_s``: time within the
    step (s); ``wall_s``: the rows' timestamps in s since the first (UTC), or None. Each
    step starts at the previous step's last record. Where the timestamps say a step
    started more than ``pause_tolerance_s`` later than that (relative to the previous
    step, so a slow clock drift is not a pause), the difference is added: the cycler was
    paused. Returns (time_s, [(row, pause_s), ...]).
    """
    step_time_s = np.asarray(step_time_s, dtype=float)
    starts = np.flatnonzero(np.asarray(new_step, dtype=bool))
    if step_time_s.size and (starts.size == 0 or starts[0] != 0):
        starts = np.concatenate([[0], starts])
    stops = np.concatenate([starts[1:], [step_time_s.size]])
    out = np.empty_like(step_time_s)
    pauses: list[tuple[int, float]] = []
    base: float | None = None
    for a, b in zip(starts, stops, strict=True):
        offset = 0.0 if a == 0 else out[a - 1]
        out[a:b] = offset + step_time_s[a:b] - (step_time_s[0] if a == 0 else 0.0)
        if wall_s is None:
            continue
        resid = float(wall_s[a] - out[a])
        if base is not None and resid - base > pause_tolerance_s:
            out[a:b] += resid - base
            pauses.append((int(a), resid - base))
        else:
            base = resid
    return out, pauses


def _utc_seconds(path: Path, stamps: Any, timezone: str) -> tuple[np.ndarray, list[str]]:
    """Timestamps as UTC ns (int64) and notes; naive ones localised in ``timezone``."""
    import pandas as pd

    notes: list[str] = []
    raw = pd.Series(stamps)
    if raw.isna().any():
        k = int(np.flatnonzero(raw.isna().to_numpy())[0])
        raise EchemFormatError(f"{path}: record {k + 1} has no Timestamp")
    aware = isinstance(raw.dtype, pd.DatetimeTZDtype) or (
        raw.dtype == object and getattr(raw.iloc[0], "tzinfo", None) is not None)
    if aware:  # an epoch NewareNDA put in the reading machine's zone (offsets may vary)
        utc = pd.to_datetime(raw, utc=True)
        notes.append("Timestamp is absolute (tz-aware from NewareNDA): converted to UTC")
    else:
        ts = pd.to_datetime(raw)
        zoneinfo_or_raise(timezone)
        try:
            utc = ts.dt.tz_localize(timezone, ambiguous="infer", nonexistent="raise")
        except ValueError as exc:
            if "nonexistent" in str(exc).lower():
                when = str(exc).split(" is a")[0]
                raise EchemFormatError(
                    f"{path}: local Timestamp {when} does not exist in {timezone} (skipped by "
                    "a daylight-saving change): wrong timezone for this cycler?") from None
            utc = ts.dt.tz_localize(timezone, ambiguous=np.ones(len(ts), dtype=bool),
                                    nonexistent="raise")
            note = (f"{path.name}: ambiguous local Timestamps in {timezone} (daylight-saving "
                    "fold) could not be ordered; took the first occurrence")
            notes.append(note)
            warnings.warn(note, stacklevel=3)
        utc = utc.dt.tz_convert("UTC")
    ns = utc.dt.tz_localize(None).to_numpy().astype("datetime64[ns]").astype(np.int64)
    return ns, notes


def neware_record(path: Path, df: Any, *, timezone: str) -> EchemRecord:
    """Map one NewareNDA DataFrame onto the standard variables (module docstring)."""
    cols = list(df.columns)
    missing = [c for c in REQUIRED if c not in cols]
    if missing:
        raise EchemFormatError(f"{path}: NewareNDA gave no column(s) {missing}; expected "
                               f"{list(REQUIRED)}; columns present: {cols}")
    n = len(df)
    if n == 0:
        raise EchemFormatError(f"{path}: no data records in this Neware file")
    step_count = df["Step"].to_numpy().astype(np.int64)
    new_step = np.r_[True, step_count[1:] != step_count[:-1]]
    # float32 from NewareNDA; nda 29 stores whole ms, which rounding to 1 ms recovers
    step_time_s = np.round(df["Time"].to_numpy().astype(float), 3)
    utc_ns, notes = _utc_seconds(path, df["Timestamp"], timezone)
    wall_s = (utc_ns - utc_ns[0]) * 1e-9
    time_s, pauses = neware_elapsed_time_s(new_step, step_time_s, wall_s)
    for row, gap in pauses:
        notes.append(f"{path.name}: pause of {gap:.1f} s before record {row + 1} (step "
                     f"{int(step_count[row])}) added from the timestamps")
    start_utc = datetime(1970, 1, 1, tzinfo=dt_timezone.utc) + timedelta(
        microseconds=int(utc_ns[0]) // 1000)

    chg = df["Charge_Capacity(mAh)"].to_numpy().astype(float)
    dchg = df["Discharge_Capacity(mAh)"].to_numpy().astype(float)
    within = chg - dchg
    starts = np.flatnonzero(new_step)
    ends_before = np.zeros(n)
    ends_before[starts[1:]] = within[starts[1:] - 1]
    net_mAh = within + np.cumsum(ends_before)
    status = df["Status"].astype(str).to_numpy()
    current_A = df["Current(mA)"].to_numpy().astype(float) * 1e-3

    extras: dict[str, ExtraColumn] = {}
    used = {"Voltage", "Current(mA)", "Step_Index", "Cycle", "Timestamp"}
    for c in cols:
        if c in used:
            continue
        vals = df[c].to_numpy()
        if c in KNOWN_EXTRAS:
            name, units, long_name = KNOWN_EXTRAS[c]
        else:
            m = _AUX.match(str(c))
            units, long_name = AUX_UNITS.get(m.group(1), ("1", "")) if m else ("1", "")
            name, long_name = None, f"{long_name} ({c})" if long_name else str(c)
        if c == "Time":
            vals = step_time_s
        elif vals.dtype.kind in "OUS" or c == "Status":
            vals = np.asarray(vals, dtype=str)
        elif vals.dtype.kind in "iub":
            vals = vals.astype(np.int64)
        else:
            vals = vals.astype(float)
        extras[str(c)] = ExtraColumn(vals, {"units": units, "long_name": long_name,
                                            "neware_column": str(c)}, name)
    return EchemRecord(
        path=path, format="neware", time_s=time_s,
        voltage_V=df["Voltage"].to_numpy().astype(float), current_A=current_A,
        charge_C=net_mAh * MAH_TO_C,
        step=df["Step_Index"].to_numpy().astype(np.int64),
        cycle=df["Cycle"].to_numpy().astype(np.int64) - 1,
        open_circuit=np.isin(status, list(OPEN_CIRCUIT_STATUS)),
        sources={
            "time_s": "Time (step time) laid end to end over Step changes"
                      + (", pauses from Timestamp" if pauses else ""),
            "voltage_V": "Voltage",
            "current_A": "Current(mA) * 1e-3",
            "charge_C": "(Charge_Capacity(mAh) - Discharge_Capacity(mAh)) continued over "
                        "steps * 3.6",
            "step": "Step_Index",
            "cycle": "Cycle - 1 (NewareNDA charge-first cycle count)",
        },
        extras=extras, start_utc=start_utc, technique="Neware",
        per_file_attrs={"neware_notes": "; ".join(notes) if notes else "none",
                        "time_utc_resolution_s": 1.0},
    )


def read_neware(
    paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    timezone: str,
) -> xr.Dataset:
    """Read one Neware ``.nda``/``.ndax`` file (or several of one run) into the normalised
    Dataset (:mod:`operando.io.echem.schema`); ``timezone`` (IANA) localises naive
    timestamps."""
    zoneinfo_or_raise(timezone)
    records = [neware_record(p, read_neware_frame(p), timezone=timezone)
               for p in as_paths(paths, "read_neware")]
    return build_echem_dataset(records, timezone=timezone)
