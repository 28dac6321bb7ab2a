"""Faraday quantities from the charge passed: capacity, Li content, phase fraction, C-rates.

Pure numpy / xarray (no I/O). Units are in the names: charges in C, masses in mg, molar
masses in g/mol, currents in A.

Sign convention (the readers' and the simulator's): positive current is oxidation,
i.e. *charge* of a cathode = delithiation, so the cumulative charge ``charge_C`` grows
on charge and the Li content falls:

    Q_th = n F m / M                         (theoretical capacity, C; m in g)
    x(t) = x0 − Q(t) · M / (n F m)           (Li per formula unit in LixMO)

with F the Faraday constant (:data:`operando.constants.FARADAY_C_PER_MOL`), n the electrons
per formula unit, m the active mass, M the molar mass and Q(t) the charge passed since the
instant where x = x0.

The Faraday-expected fraction of the delithiated end member (FePO4 for LiFePO4) in a
two-phase reaction between end members x_lithiated and x_delithiated is

    f(t) = f0 + Q(t) / Q_ref,   f0 = (x_lithiated − x0) / (x_lithiated − x_delithiated)

where Q_ref is the charge of a *full* conversion between the end members. With the
``"theoretical"`` reference Q_ref = Q_th · (x_lithiated − x_delithiated), so f = (x_lith − x)
/ (x_lith − x_delith) exactly; with ``"achieved"`` Q_ref is the capacity actually passed in
the first charge (:func:`achieved_capacity_C`) or a capacity given by the user — the first
charge is then taken as a full conversion.

C-rates of a segment (:class:`operando.echem.segments.SegmentRun`): from its mean current,
C-rate = |I| · 3600 s/h / Q_ref (:func:`c_rate_per_segment`), or from the Li content x(t)
of the charge passed, |Δx| / |x_charged − x_discharged| / duration · 3600 s/h
(:func:`reaction_rates_per_h`: the electrode-average rate the confocal metrics compare
the local rates with).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import xarray as xr

from operando.constants import FARADAY_C_PER_MOL, MAH_TO_C
from operando.echem.segments import SEGMENT_CHARGE, SEGMENT_DISCHARGE, SegmentRun
from operando.echem.summary import segments

__all__ = [
    "CapacityReference",
    "SegmentCRate",
    "achieved_capacity_C",
    "add_faraday",
    "c_rate_per_h",
    "c_rate_per_segment",
    "faraday_phase_fraction",
    "li_content",
    "reaction_rates_per_h",
    "reference_capacity_C",
    "theoretical_capacity_C",
    "theoretical_capacity_mAh_g",
]

CapacityReference = Literal["theoretical", "achieved"]


def _check_positive(**values: float) -> None:
    for name, v in values.items():
        if not (np.isfinite(v) and v > 0):
            raise ValueError(f"{name}: expected a finite value > 0, found {v!r}")


def theoretical_capacity_C(
    active_mass_mg: float, molar_mass_g_mol: float, electrons_per_formula_unit: float = 1.0
) -> float:
    """Theoretical capacity Q_th = n F m / M (C) of ``active_mass_mg`` mg of active material.

    ``molar_mass_g_mol`` in g/mol, ``electrons_per_formula_unit`` n (LiFePO4: 1).
    Example: 5 mg of LiFePO4 (157.757 g/mol) hold 3.058 C = 0.8495 mA·h.
    """
    _check_positive(active_mass_mg=active_mass_mg, molar_mass_g_mol=molar_mass_g_mol,
                    electrons_per_formula_unit=electrons_per_formula_unit)
    n_mol = active_mass_mg * 1e-3 / molar_mass_g_mol
    return float(FARADAY_C_PER_MOL * electrons_per_formula_unit * n_mol)


def theoretical_capacity_mAh_g(
    molar_mass_g_mol: float, electrons_per_formula_unit: float = 1.0
) -> float:
    """Specific theoretical capacity n F / M in mA·h/g (= C/g / 3.6); LiFePO4: 169.9 mA·h/g."""
    _check_positive(molar_mass_g_mol=molar_mass_g_mol,
                    electrons_per_formula_unit=electrons_per_formula_unit)
    return float(FARADAY_C_PER_MOL * electrons_per_formula_unit / molar_mass_g_mol / MAH_TO_C)


def li_content(
    charge_C: np.ndarray | float,
    *,
    active_mass_mg: float,
    molar_mass_g_mol: float,
    electrons_per_formula_unit: float = 1.0,
    x0: float = 1.0,
) -> np.ndarray:
    """Li content x in LixMO from the charge passed: x = x0 − Q · M / (n F m).

    ``charge_C``: charge Q (C) passed since the instant where x = ``x0``; positive current
    (oxidation, charge of a cathode) delithiates, so x falls as Q grows. Not clipped: x
    outside [0, 1] means the mass or x0 is wrong, or side reactions.
    """
    q_th = theoretical_capacity_C(active_mass_mg, molar_mass_g_mol, electrons_per_formula_unit)
    return x0 - np.asarray(charge_C, dtype=float) / q_th


def faraday_phase_fraction(
    charge_C: np.ndarray | float,
    *,
    capacity_C: float,
    x0: float = 1.0,
    x_lithiated: float = 1.0,
    x_delithiated: float = 0.0,
    clip: bool = True,
) -> np.ndarray:
    """Faraday-expected fraction of the delithiated end member (FePO4 for LiFePO4).

    f = f0 + Q / Q_ref with f0 = (x_lithiated − x0) / (x_lithiated − x_delithiated):
    a two-phase reaction between the end members, with ``charge_C`` Q (C) passed since the
    instant where x = ``x0`` and ``capacity_C`` Q_ref (C) the charge of a full conversion
    lithiated → delithiated (see :func:`reference_capacity_C`: theoretical or achieved).

    ``clip=True`` (default) clips f to [0, 1]: beyond the end members the reaction is no
    longer two-phase (solid-solution ends, over-charge, side reactions) and no more of the
    end member can form; ``clip=False`` returns the raw linear value for diagnostics.
    """
    _check_positive(capacity_C=capacity_C)
    span = x_lithiated - x_delithiated
    if not (np.isfinite(span) and span > 0):
        raise ValueError(f"expected x_lithiated > x_delithiated, found x_lithiated="
                         f"{x_lithiated}, x_delithiated={x_delithiated}")
    f0 = (x_lithiated - x0) / span
    f = f0 + np.asarray(charge_C, dtype=float) / capacity_C
    return np.clip(f, 0.0, 1.0) if clip else f


def achieved_capacity_C(ds: xr.Dataset, half_cycle: str = SEGMENT_CHARGE) -> float:
    """Capacity (C) actually passed in the first charge (or discharge) of an echem Dataset.

    The sum of |ΔQ| over the ``half_cycle`` segments (``charge`` or ``discharge`` labels of
    ``ds["segment"]``) from the start up to the first segment of the opposite kind, so a
    first charge interrupted by rests (GITT, a beam dump) counts whole. ΔQ per segment from
    :func:`operando.echem.summary.segments` (the cumulative ``charge_C``). Raises
    ``ValueError`` when the record holds no such segment before the first opposite one.
    """
    if half_cycle not in (SEGMENT_CHARGE, SEGMENT_DISCHARGE):
        raise ValueError(f"half_cycle: expected {SEGMENT_CHARGE!r} or {SEGMENT_DISCHARGE!r}, "
                         f"found {half_cycle!r}")
    missing = [v for v in ("time_s", "current_A", "charge_C", "voltage_V", "segment")
               if v not in ds.variables]
    if missing:
        raise ValueError(f"achieved capacity: the echem dataset lacks {missing}; found "
                         f"{sorted(map(str, ds.variables))}")
    opposite = SEGMENT_DISCHARGE if half_cycle == SEGMENT_CHARGE else SEGMENT_CHARGE
    total_mAh = 0.0
    n_seg = 0
    for seg in segments(ds):
        if seg.kind == opposite and n_seg:
            break
        if seg.kind == half_cycle:
            total_mAh += seg.charge_mAh
            n_seg += 1
    if n_seg == 0 or total_mAh <= 0:
        kinds = [s.kind for s in segments(ds)][:10]
        raise ValueError(
            f"achieved capacity: expected a {half_cycle!r} segment with charge passed before "
            f"the first {opposite!r} one, found segments {kinds}"
            f"{' ...' if len(kinds) == 10 else ''}; give the capacity explicitly instead"
        )
    return total_mAh * MAH_TO_C


def reference_capacity_C(
    ds: xr.Dataset | None,
    reference: CapacityReference,
    *,
    active_mass_mg: float,
    molar_mass_g_mol: float,
    electrons_per_formula_unit: float = 1.0,
    x_lithiated: float = 1.0,
    x_delithiated: float = 0.0,
    capacity_C: float | None = None,
) -> tuple[float, str]:
    """Charge Q_ref (C) of a full conversion between the end members, and how it was found.

    ``"theoretical"``: Q_th · (x_lithiated − x_delithiated) with Q_th = n F m / M.
    ``"achieved"``: ``capacity_C`` when given, else :func:`achieved_capacity_C` of ``ds``
    (the first charge taken as the full conversion).
    """
    if reference == "theoretical":
        if capacity_C is not None:
            raise ValueError("capacity_C is only used with capacity_reference 'achieved'; "
                             "the theoretical capacity comes from the mass")
        q_th = theoretical_capacity_C(active_mass_mg, molar_mass_g_mol,
                                      electrons_per_formula_unit)
        q = q_th * (x_lithiated - x_delithiated)
        return q, (f"theoretical: n F m / M x (x_lithiated - x_delithiated) = {q_th:.6g} C x "
                   f"{x_lithiated - x_delithiated:g}")
    if reference == "achieved":
        if capacity_C is not None:
            _check_positive(capacity_C=capacity_C)
            return float(capacity_C), "achieved: given capacity"
        if ds is None:
            raise ValueError("capacity_reference 'achieved' needs the echem dataset or "
                             "capacity_C")
        return achieved_capacity_C(ds), "achieved: charge passed in the first charge"
    raise ValueError(f"capacity_reference: expected 'theoretical' or 'achieved', found "
                     f"{reference!r}")


def c_rate_per_h(current_A: float, capacity_C: float) -> float:
    """C-rate (1/h) = |I| / (Q / 1 h): ``current_A`` I in A, ``capacity_C`` the reference
    capacity Q in C."""
    return abs(current_A) * 3600.0 / capacity_C


@dataclass(frozen=True, kw_only=True)
class SegmentCRate(SegmentRun):
    """A segment (:class:`~operando.echem.segments.SegmentRun`) with its C-rate:
    C-rate = |mean I| · 3600 s/h / Q_ref (1/h); ``mean_abs_current_A`` |mean I| in A."""

    mean_abs_current_A: float
    c_rate_per_h: float


def c_rate_per_segment(ds: xr.Dataset, capacity_C: float) -> list[SegmentCRate]:
    """C-rate of every segment of an echem Dataset (rests included, ~0).

    Segments and their mean current from :func:`operando.echem.summary.segments`; C-rate
    = |I_mean| · 3600 / ``capacity_C`` (1/h) by :func:`c_rate_per_h`. ``capacity_C`` is
    the reference capacity (C), usually the theoretical one.
    """
    _check_positive(capacity_C=capacity_C)
    out = []
    for seg in segments(ds):
        mean_abs = abs(seg.mean_current_A)
        out.append(SegmentCRate(
            **seg.run_fields(), mean_abs_current_A=mean_abs,
            c_rate_per_h=c_rate_per_h(mean_abs, capacity_C),
        ))
    return out


def reaction_rates_per_h(time_s: np.ndarray, x_li: np.ndarray, runs: Sequence[SegmentRun],
                         *, x_discharged: float, x_charged: float) -> list[float]:
    """Electrode-average rate (1/h) of each charge / discharge segment of ``runs``, in order
    (rests skipped), from the Li content of the charge passed:

        r = |x(end) − x(start)| / |x_charged − x_discharged| / (end − start) · 3600 s/h

    ``time_s`` (n,) s and ``x_li`` (n,) the record's x(t) (Faraday), interpolated linearly
    at the segment ends; ``x_discharged``, ``x_charged`` the Li content at the two end
    states (e.g. 1 and 0 for LixFePO4). 1/h means one full conversion per hour (1C).
    """
    t = np.asarray(time_s, dtype=float)
    x = np.asarray(x_li, dtype=float)
    out = []
    for s in runs:
        if s.kind not in (SEGMENT_CHARGE, SEGMENT_DISCHARGE):
            continue
        x0, x1 = np.interp([s.start_s, s.end_s], t, x)
        out.append(abs(x1 - x0) / abs(x_charged - x_discharged) / (s.end_s - s.start_s)
                   * 3600.0)
    return out


def add_faraday(
    ds: xr.Dataset,
    *,
    active_mass_mg: float,
    molar_mass_g_mol: float,
    electrons_per_formula_unit: float = 1.0,
    x0: float = 1.0,
    capacity_reference: CapacityReference = "theoretical",
    capacity_C: float | None = None,
    x_lithiated: float = 1.0,
    x_delithiated: float = 0.0,
) -> xr.Dataset:
    """A copy of the echem Dataset with ``x_li`` and ``faraday_fraction`` added.

    Q(t) = charge_C(t) − charge_C(first sample), so ``x0`` is the Li content at the first
    sample (the start of the first file). ``x_li`` = x0 − Q·M/(nFm) (unclipped);
    ``faraday_fraction`` = the delithiated end member's fraction f = f0 + Q/Q_ref clipped
    to [0, 1] (:func:`faraday_phase_fraction`), with Q_ref from ``capacity_reference``
    (:func:`reference_capacity_C`). Equations, the masses and the capacities used are in the
    variables' attributes.
    """
    if "charge_C" not in ds.variables:
        raise ValueError(f"add_faraday: the echem dataset has no 'charge_C' variable; found "
                         f"{sorted(map(str, ds.variables))}")
    q_all = np.asarray(ds["charge_C"].values, dtype=float)
    if q_all.size == 0:
        raise ValueError("add_faraday: the echem dataset is empty")
    q = q_all - q_all[0]
    q_th = theoretical_capacity_C(active_mass_mg, molar_mass_g_mol, electrons_per_formula_unit)
    q_ref, how = reference_capacity_C(
        ds, capacity_reference, active_mass_mg=active_mass_mg,
        molar_mass_g_mol=molar_mass_g_mol,
        electrons_per_formula_unit=electrons_per_formula_unit,
        x_lithiated=x_lithiated, x_delithiated=x_delithiated, capacity_C=capacity_C,
    )
    x = li_content(q, active_mass_mg=active_mass_mg, molar_mass_g_mol=molar_mass_g_mol,
                   electrons_per_formula_unit=electrons_per_formula_unit, x0=x0)
    f = faraday_phase_fraction(q, capacity_C=q_ref, x0=x0, x_lithiated=x_lithiated,
                               x_delithiated=x_delithiated, clip=True)
    dim = ds["charge_C"].dims
    common = {
        "active_mass_mg": float(active_mass_mg),
        "molar_mass_g_mol": float(molar_mass_g_mol),
        "electrons_per_formula_unit": float(electrons_per_formula_unit),
        "x0": float(x0),
        "capacity_theoretical_C": q_th,
        "faraday_constant_C_per_mol": FARADAY_C_PER_MOL,
        "charge_origin": "Q = charge_C - charge_C[0] (x = x0 at the first sample)",
    }
    out = ds.copy()
    out["x_li"] = xr.Variable(dim, x, attrs={
        "units": "1",
        "long_name": "Li content x in LixMO from the charge passed (Faraday's law)",
        "equation": "x = x0 - Q * M / (n * F * m)",
        "sign_convention": "positive current = oxidation = delithiation (x falls on charge)",
        **common,
    })
    out["faraday_fraction"] = xr.Variable(dim, f, attrs={
        "units": "1",
        "long_name": "Faraday-expected fraction of the delithiated end member",
        "equation": "f = clip((x_lithiated - x0) / (x_lithiated - x_delithiated) + Q / Q_ref, "
                    "0, 1)",
        "capacity_reference": str(capacity_reference),
        "capacity_reference_C": float(q_ref),
        "capacity_reference_note": how,
        "x_lithiated": float(x_lithiated),
        "x_delithiated": float(x_delithiated),
        "clipping": "clipped to [0, 1]: beyond the end members no more of one can form",
        **common,
    })
    out.attrs["faraday_capacity_reference"] = str(capacity_reference)
    out.attrs["faraday_capacity_reference_C"] = float(q_ref)
    out.attrs["capacity_theoretical_C"] = q_th
    return out
