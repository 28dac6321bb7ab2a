"""Radial units of XRD patterns: the one table of axes and the conversions between them.

A pattern's radial axis is in one of three units (pyFAI's names), each with the dimension
name it has in the products, its CF units and its long name (:data:`RADIAL_AXES`):

    ``q_A^-1``   q (1/Å)          q = 4π sin(θ)/λ = 2π / d
    ``2th_deg``  two_theta (°)    2θ = 2 asin(λ / 2d)
    ``d_A``      d (Å)            d = λ / (2 sin θ)

with λ the wavelength in Å. Pure: numpy in, numpy out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = [
    "RADIAL_AXES",
    "RadialAxis",
    "RadialUnit",
    "axis_of_dim",
    "d_to_unit",
    "dtwotheta_dx",
    "dx_dq",
    "unit_to_d",
]

#: the radial units a pattern can be in (pyFAI's unit names)
RadialUnit = Literal["q_A^-1", "2th_deg", "d_A"]


@dataclass(frozen=True)
class RadialAxis:
    """One radial unit: ``unit`` (pyFAI's name, e.g. ``q_A^-1``), ``dim`` (the dimension
    and coordinate name in the products, e.g. ``q``), ``cf_units`` (CF ``units`` attribute)
    and ``long_name`` (CF ``long_name`` attribute of the coordinate)."""

    unit: str
    dim: str
    cf_units: str
    long_name: str


#: radial unit → its axis; the one table every product and module uses
RADIAL_AXES: dict[str, RadialAxis] = {
    a.unit: a for a in (
        RadialAxis("q_A^-1", "q", "1/angstrom", "scattering vector magnitude q = 4π sin(θ)/λ"),
        RadialAxis("2th_deg", "two_theta", "degree", "scattering angle 2θ"),
        RadialAxis("d_A", "d", "angstrom", "d-spacing d = λ / (2 sin θ)"),
    )
}
_BY_DIM = {a.dim: a for a in RADIAL_AXES.values()}


def axis_of_dim(dim: str) -> RadialAxis:
    """The :class:`RadialAxis` whose product dimension is ``dim`` (``q``, ``two_theta``,
    ``d``); KeyError for any other name."""
    try:
        return _BY_DIM[dim]
    except KeyError:
        raise KeyError(f"radial dimension: expected one of {sorted(_BY_DIM)}, "
                       f"found {dim!r}") from None


def _unknown(unit: str) -> ValueError:
    return ValueError(f"unit: expected one of {tuple(RADIAL_AXES)}, found {unit!r}")


def d_to_unit(d_A: np.ndarray | float, unit: str, wavelength_A: float) -> np.ndarray:
    """d (Å) → radial unit: q = 2π/d (1/Å), 2θ = 2 asin(λ/2d) (degree, NaN where λ > 2d),
    or d (Å) unchanged; ``wavelength_A`` λ in Å (used for 2θ only)."""
    d = np.asarray(d_A, dtype=float)
    if unit == "q_A^-1":
        return 2.0 * np.pi / d
    if unit == "2th_deg":
        with np.errstate(invalid="ignore"):
            return np.degrees(2.0 * np.arcsin(wavelength_A / (2.0 * d)))
    if unit == "d_A":
        return d
    raise _unknown(unit)


def unit_to_d(x: np.ndarray | float, unit: str, wavelength_A: float) -> np.ndarray:
    """Radial value x in ``unit`` → d (Å): d = 2π/q, λ / (2 sin θ), or d unchanged;
    ``wavelength_A`` λ in Å (used for 2θ only)."""
    v = np.asarray(x, dtype=float)
    if unit == "q_A^-1":
        return 2.0 * np.pi / v
    if unit == "2th_deg":
        return wavelength_A / (2.0 * np.sin(np.radians(v) / 2.0))
    if unit == "d_A":
        return v
    raise _unknown(unit)


def dtwotheta_dx(x: np.ndarray | float, unit: str, wavelength_A: float) -> np.ndarray:
    """|d(2θ in degrees)/dx| at radial value x (in ``unit``; λ ``wavelength_A`` in Å):
    converts widths and areas to 2θ degrees.

    q: (360/π) (λ/4π) / cos θ;  d: (360/π) λ / (2 d² cos θ);  2θ: 1.
    """
    v = np.asarray(x, dtype=float)
    if unit == "2th_deg":
        return np.ones_like(v)
    d = unit_to_d(v, unit, wavelength_A)
    cos_t = np.sqrt(np.clip(1.0 - (wavelength_A / (2.0 * d)) ** 2, 1e-12, None))
    if unit == "q_A^-1":
        return np.degrees(2.0 * wavelength_A / (4.0 * np.pi) / cos_t)
    if unit == "d_A":
        return np.degrees(wavelength_A / (d**2 * cos_t))
    raise _unknown(unit)


def dx_dq(x: np.ndarray | float, unit: str, wavelength_A: float) -> np.ndarray:
    """|dx/dq| at radial value x (in ``unit``; λ ``wavelength_A`` in Å): turns a FWHM in q
    (1/Å) into the pattern's unit.

    q: 1;  d: 2π/q²;  2θ: (d2θ/dq) = (360/π) (λ/4π) / cos θ.
    """
    v = np.asarray(x, dtype=float)
    if unit == "q_A^-1":
        return np.ones_like(v)
    q = d_to_unit(unit_to_d(v, unit, wavelength_A), "q_A^-1", wavelength_A)
    if unit == "d_A":
        return 2.0 * np.pi / q**2
    # |dx/dq| = |d2θ/dq| / |d2θ/dx| (the 2θ route is exact for any x)
    return dtwotheta_dx(q, "q_A^-1", wavelength_A) / dtwotheta_dx(v, unit, wavelength_A)
