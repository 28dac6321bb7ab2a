"""EC-Lab columns and GCPL settings of a simulated profile, for
:func:`operando.io.echem.biologic.write_mpt`.

Simulator-only: it turns an :class:`~operando.simulate.echem.EchemProfile` into what an
EC-Lab export holds (the writer itself, and the reader, live in :mod:`operando.io.echem.biologic`).
"""

from __future__ import annotations

import numpy as np

from operando.constants import MAH_TO_C
from operando.io.echem.biologic import MODE_CC, MODE_REST
from operando.simulate.echem import EchemProfile

__all__ = ["gcpl_settings_lines", "simulated_cell_columns"]


def simulated_cell_columns(profile: EchemProfile) -> dict[str, np.ndarray]:
    """EC-Lab GCPL columns of a simulated profile.

    ``mode`` 1 (CC) or 3 (rest); ``ox/red`` 1 on oxidation (I > 0, charge), 0 on reduction,
    held through rests; ``control changes`` and ``Ns changes`` 1 on the first row of each
    sequence; ``Ns`` the protocol segment index; ``time/s`` (s), ``Ewe/V`` (V), ``I/mA``
    (mA), ``(Q-Qo)/mA.h`` (mA·h = C / 3.6); ``cycle number`` 0 (one cycle, numbered from 0).
    """
    seg = np.asarray(profile.segment_index, dtype=int)
    current_mA = np.asarray(profile.current_A, dtype=float) * 1e3
    is_rest = np.array([profile.segment_names[k] == "rest" for k in seg], dtype=bool)
    is_rest |= current_mA == 0.0
    mode = np.where(is_rest, MODE_REST, MODE_CC).astype(int)

    ox_red = np.empty(seg.size, dtype=int)
    state = 1
    for k, i_mA in enumerate(current_mA):
        if i_mA > 0:
            state = 1
        elif i_mA < 0:
            state = 0
        ox_red[k] = state

    new_seq = np.ones(seg.size, dtype=int)
    new_seq[1:] = (seg[1:] != seg[:-1]).astype(int)
    zeros = np.zeros(seg.size, dtype=int)
    return {
        "mode": mode,
        "ox/red": ox_red,
        "error": zeros.copy(),
        "control changes": new_seq.copy(),
        "Ns changes": new_seq.copy(),
        "counter inc.": zeros.copy(),
        "Ns": seg.copy(),
        "time/s": np.asarray(profile.time_s, dtype=float),
        "Ewe/V": np.asarray(profile.voltage_V, dtype=float),
        "I/mA": current_mA,
        "(Q-Qo)/mA.h": np.asarray(profile.charge_C, dtype=float) / MAH_TO_C,
        "cycle number": np.zeros(seg.size, dtype=float),
    }


def _hms(seconds: float, decimal_separator: str) -> str:
    """EC-Lab ``h:mm:s.ffff`` duration (hours unbounded, seconds not zero-padded).

    Rounded to 0.1 ms *before* splitting, so 59.99999 s is ``0:01:0.0000``, never
    ``0:00:60.0000``.
    """
    ticks = round(float(seconds) * 10_000)  # units of 0.1 ms
    h, rem = divmod(ticks, 3600 * 10_000)
    m, rem = divmod(rem, 60 * 10_000)
    s, frac = divmod(rem, 10_000)
    return f"{h}:{m:02d}:{s}{decimal_separator}{frac:04d}"


def gcpl_settings_lines(profile: EchemProfile, decimal_separator: str = ".") -> list[str]:
    """The GCPL sequence table (``Ns``, ``Is``, ``t1``, ``tR``, ...) of a simulated protocol,
    in EC-Lab's fixed-width layout, for ``write_mpt(settings_lines=...)``.

    One sequence per segment: CC segments carry the current (mA) for ``t1``, rest
    segments ``Is = 0`` for ``tR``.
    """
    i_1c_mA = profile.current_1c_A * profile.spec.c_rate_per_h * 1e3
    dec = decimal_separator
    rows: dict[str, list[str]] = {k: [] for k in (
        "Ns", "Set I/C", "Is", "unit Is", "vs.", "N", "I sign", "t1 (h:m:s)", "EM (V)",
        "tR (h:m:s)", "goto Ns'", "nc cycles")}
    for k, ((t0, t1), name) in enumerate(
        zip(profile.segment_bounds_s, profile.segment_names, strict=True)
    ):
        amps = {"charge": i_1c_mA, "discharge": -i_1c_mA}.get(name, 0.0)
        rest = name == "rest"
        rows["Ns"].append(str(k))
        rows["Set I/C"].append("I")
        rows["Is"].append(f"{amps:.3f}".replace(".", dec))
        rows["unit Is"].append("mA")
        rows["vs."].append("<None>")
        rows["N"].append(f"{1:.2f}".replace(".", dec))
        rows["I sign"].append("> 0")
        rows["t1 (h:m:s)"].append(_hms(0.0 if rest else t1 - t0, dec))
        rows["EM (V)"].append("pass")
        rows["tR (h:m:s)"].append(_hms(t1 - t0 if rest else 0.0, dec))
        rows["goto Ns'"].append("0")
        rows["nc cycles"].append("0")
    return [key.ljust(20) + "".join(v.ljust(20) for v in vals) for key, vals in rows.items()]
