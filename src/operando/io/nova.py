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
(``1e-5 V/s`` → ``cv_0p01mVs.txt``).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from operando.io.atomic import write_text_atomic

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
    potential_measured_V: np.ndarray | None = None,
    scan: np.ndarray | int = 1,
) -> Path:
    """Write one CV as a NOVA ASCII export, atomically (temp name + rename).

    All arrays are 1-D of equal length; ``scan`` is a scalar or per-sample cycle number.
    Returns the final path.
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
    index = np.zeros(n, dtype=int)
    q_pos = np.zeros(n)
    q_neg = np.zeros(n)
    for s in np.unique(scan_arr):
        sel = np.flatnonzero(scan_arr == s)
        index[sel] = np.arange(1, sel.size + 1)
        dt = np.diff(t[sel])
        ip, im = np.clip(i[sel], 0, None), np.clip(i[sel], None, 0)
        q_pos[sel] = np.concatenate([[0.0], np.cumsum(0.5 * (ip[1:] + ip[:-1]) * dt)])
        q_neg[sel] = np.concatenate([[0.0], np.cumsum(0.5 * (im[1:] + im[:-1]) * dt)])
    rng_a = _current_range(i)
    lines = [";".join(NOVA_COLUMNS)]
    lines.extend(
        f"{e_app[k]:.9g};{t[k]:.9g};{i[k]:.9E};{e_we[k]:.9g};{scan_arr[k]};{index[k]};"
        f"{q_pos[k]:.9E};{q_neg[k]:.9E};{rng_a[k]:.0E}"
        for k in range(n)
    )
    return write_text_atomic(path, "\n".join(lines) + "\n")


def read_nova_cv(path: str | Path) -> dict[str, np.ndarray]:
    """Read a NOVA ASCII export: column name → float array (``Scan``, ``Index`` as int)."""
    path = Path(path)
    with open(path, encoding="utf-8-sig") as fh:
        header = fh.readline().rstrip("\r\n").split(";")
        missing = [c for c in ("Potential applied (V)", "Time (s)", "WE(1).Current (A)")
                   if c not in header]
        if missing:
            raise ValueError(f"{path}: expected NOVA columns {missing} in the header line, "
                             f"found {header}")
        data = np.loadtxt(fh, delimiter=";", ndmin=2)
    if data.shape[1] != len(header):
        raise ValueError(f"{path}: header has {len(header)} columns, rows have {data.shape[1]}")
    out = {name: data[:, k] for k, name in enumerate(header)}
    for name in ("Scan", "Index"):
        if name in out:
            out[name] = out[name].astype(int)
    return out
