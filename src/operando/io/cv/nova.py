"""Autolab NOVA-style ASCII exports of cyclic voltammograms.

NOVA's "Export ASCII" of a CV writes one header line of column names and one
line per sample, fields separated by ``;``, decimal point ``.``::

    Potential applied (V);Time (s);WE(1).Current (A);WE(1).Potential (V);Scan;Index;...

(the header continues with ``Q+;Q-;Current range`` on the same line).

* ``Potential applied (V)``: the programmed (set) potential;
* ``WE(1).Potential (V)``: the potential the potentiostat read back;
* ``Scan``: cycle number (1-based), ``Index``: sample number within the scan (1-based);
* ``Q+`` / ``Q-``: charge (C) integrated (trapezoid) since the start of the scan over the
  positive / negative part of the current (``Q-`` ≤ 0);
* ``Current range``: the auto-selected current range (A, a decade: 1E-05 means 10 µA).

One file per scan rate, named ``cv_<rate in mV/s>mVs.txt`` with ``.`` written ``p``
(``1e-5 V/s`` → ``cv_0p01mVs.txt``): that is what :func:`write_nova_cv` writes.

:func:`read_nova_cv` also reads what NOVA writes on other set-ups: fields separated by a
tab or ``,`` (sniffed from the header), a decimal comma (``1,234E-06``) with ``;`` or tab
separators (a European locale), blank padding rows (every cell empty; NOVA pads a
column-group export with thousands of them), and a header with only some of the columns
(``Time (s)``, ``WE(1).Current (A)`` and one of the potentials are needed).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from operando.io.atomic import write_text_atomic
from operando.io.errors import InputFileError
from operando.io.text import parse_number, read_text_file

NOVA_COLUMNS: tuple[str, ...] = (
    "Potential applied (V)", "Time (s)", "WE(1).Current (A)", "WE(1).Potential (V)", "Scan",
    "Index", "Q+", "Q-", "Current range",
)
_NAME_RE = re.compile(r"cv_(\d+(?:p\d+)?)mVs\.txt$")


def nova_filename(scan_rate_V_s: float) -> str:
    """``cv_<mV/s>mVs.txt`` with the decimal point as ``p`` (1e-5 V/s → ``cv_0p01mVs.txt``)."""
    if not scan_rate_V_s > 0:
        raise ValueError(f"scan rate must be positive, got {scan_rate_V_s}")
    mv = round(scan_rate_V_s * 1e3, 9)
    text = np.format_float_positional(mv, trim="-")
    return f"cv_{text.replace('.', 'p')}mVs.txt"


def scan_rate_from_filename(path: str | Path) -> float:
    """Scan rate (V s⁻¹) encoded in a name made by :func:`nova_filename`."""
    m = _NAME_RE.search(Path(path).name)
    if m is None:
        raise ValueError(f"{path}: expected a name like 'cv_0p01mVs.txt' (rate in mV/s), "
                         f"found {Path(path).name!r}")
    return float(m.group(1).replace("p", ".")) * 1e-3


def _current_range(current_A: np.ndarray) -> np.ndarray:
    """Smallest decade ≥ |i| (A), between 1 nA and 1 A, as the autoranger would pick."""
    mag = np.maximum(np.abs(current_A), 1e-12)
    return 10.0 ** np.clip(np.ceil(np.log10(mag)), -9, 0)


def write_nova_cv(
    path: str | Path,
    *,
    potential_applied_V: np.ndarray,
    time_s: np.ndarray,
    current_A: np.ndarray,
    charge_positive_C: np.ndarray,
    charge_negative_C: np.ndarray,
    potential_measured_V: np.ndarray | None = None,
    scan: np.ndarray | int = 1,
) -> Path:
    """Write one CV as a NOVA ASCII export, atomically (temp name + rename).

    All arrays are 1-D of equal length: potentials in V, ``time_s`` in s, ``current_A`` in
    A, ``charge_positive_C`` / ``charge_negative_C`` the ``Q+`` / ``Q-`` columns in C
    (:func:`operando.kinetics.cv.scan_charges_C`); ``potential_measured_V`` defaults to
    None (the applied potential is written); ``scan`` (default 1) is a scalar or
    per-sample cycle number. Returns the final path.
    """
    e_app = np.asarray(potential_applied_V, dtype=float)
    t = np.asarray(time_s, dtype=float)
    i = np.asarray(current_A, dtype=float)
    e_we = e_app if potential_measured_V is None else np.asarray(potential_measured_V, float)
    n = e_app.size
    if not (t.size == i.size == e_we.size == n):
        raise ValueError(f"{path}: expected equal-length arrays, got {n}, {t.size}, {i.size}, "
                         f"{e_we.size}")
    scan_arr = np.broadcast_to(np.asarray(scan, dtype=int), (n,))
    q_pos = np.asarray(charge_positive_C, dtype=float)
    q_neg = np.asarray(charge_negative_C, dtype=float)
    if not (q_pos.size == q_neg.size == n):
        raise ValueError(f"{path}: expected Q+ and Q- of {n} samples, got {q_pos.size}, "
                         f"{q_neg.size}")
    index = np.zeros(n, dtype=int)
    for s in np.unique(scan_arr):
        sel = np.flatnonzero(scan_arr == s)
        index[sel] = np.arange(1, sel.size + 1)
    rng_a = _current_range(i)
    lines = [";".join(NOVA_COLUMNS)]
    lines.extend(
        f"{e_app[k]:.9g};{t[k]:.9g};{i[k]:.9E};{e_we[k]:.9g};{scan_arr[k]};{index[k]};"
        f"{q_pos[k]:.9E};{q_neg[k]:.9E};{rng_a[k]:.0E}"
        for k in range(n)
    )
    return write_text_atomic(path, "\n".join(lines) + "\n")


#: field separators of NOVA exports, by preference when sniffing the header line
NOVA_SEPARATORS: tuple[str, ...] = (";", "\t", ",")
#: columns that must hold a number on every data row (when present)
_STRICT = ("Potential applied (V)", "Time (s)", "WE(1).Current (A)", "WE(1).Potential (V)",
           "Scan", "Index")
_POTENTIALS = ("Potential applied (V)", "WE(1).Potential (V)")


def _separator(header: str) -> str:
    """The separator (``;``, tab or ``,``) that splits the header into the most fields."""
    return max(NOVA_SEPARATORS, key=lambda s: (header.count(s), -NOVA_SEPARATORS.index(s)))


def _sep_name(sep: str) -> str:
    return {"\t": "tab", ";": "';'", ",": "','"}[sep]


def read_nova_cv(path: str | Path) -> dict[str, np.ndarray]:
    """Read a NOVA ASCII export: column name → float array (``Scan``, ``Index`` as int).

    Layouts read: fields separated by ``;``, tab or ``,`` (sniffed from the header line),
    decimal point or, with ``;`` or tab, decimal comma (``1,234E-06``), and blank padding
    rows (every cell empty: NOVA pads exports with thousands of them) anywhere, which are
    skipped. The header must name ``Time (s)``, ``WE(1).Current (A)`` and a potential
    (``Potential applied (V)`` and/or ``WE(1).Potential (V)``). Those columns and
    ``Scan``/``Index`` must hold a number on every data row; other columns are numbers
    where they parse, NaN elsewhere. Raises :class:`~operando.io.errors.InputFileError`
    naming the file, the line and the column: missing file, missing columns, a row with
    the wrong number of fields, a cell that is not a number.
    """
    path = Path(path)
    lines = read_text_file(path, what="a NOVA ASCII CV export, e.g. cv_0p01mVs.txt")
    first = next((k for k, line in enumerate(lines) if line.strip()), None)
    if first is None:
        raise InputFileError(f"{path}: empty file: expected a NOVA header line (Potential "
                             "applied (V);Time (s);WE(1).Current (A);...), found none")
    sep = _separator(lines[first])
    header = [c.strip() for c in lines[first].split(sep)]
    while header and header[-1] == "":
        header.pop()
    missing = [c for c in ("Time (s)", "WE(1).Current (A)") if c not in header]
    if not any(c in header for c in _POTENTIALS):
        missing.insert(0, "Potential applied (V)")
    if missing:
        raise InputFileError(
            f"{path}: line {first + 1}: expected the NOVA columns {missing} in the header "
            f"line (separated by ';', tab or ','), found {header[:12]}")
    decimal_comma = sep != ","
    strict = [k for k, name in enumerate(header) if name in _STRICT]
    rows: list[list[float]] = []
    for n, line in enumerate(lines[first + 1:], start=first + 2):
        cells = line.split(sep)
        if all(not c.strip() for c in cells):
            continue  # blank padding row
        while len(cells) > len(header) and not cells[-1].strip():
            cells.pop()
        if len(cells) != len(header):
            raise InputFileError(
                f"{path}: line {n}: expected {len(header)} {_sep_name(sep)}-separated values "
                f"(one per header column), found {len(cells)}: {line[:80]!r}")
        values = [parse_number(c, decimal_comma=decimal_comma) for c in cells]
        for k in strict:
            if values[k] is None:
                found = repr(cells[k].strip()) if cells[k].strip() else "an empty cell"
                raise InputFileError(
                    f"{path}: line {n}, column {k + 1} {header[k]!r}: expected a number "
                    f"(decimal point{' or comma' if decimal_comma else ''}), found {found}")
        rows.append([np.nan if v is None else v for v in values])
    if not rows:
        raise InputFileError(f"{path}: expected data rows after the header (line {first + 1}), "
                             "found none (only blank padding rows)")
    data = np.asarray(rows, dtype=float).reshape(len(rows), len(header))
    out = {name: data[:, k] for k, name in enumerate(header)}
    for name in ("Scan", "Index"):
        if name in out:
            out[name] = out[name].astype(int)
    return out
