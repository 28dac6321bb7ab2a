"""Peak profiles of unit-normalised area and their analytic Jacobians (the lineshapes).

Profile (area A, FWHM w, Lorentzian fraction η, asymmetry α; a split pseudo-Voigt whose
half-widths are w(1 − α)/2 left of the centre c and w(1 + α)/2 right of it):

    f(x) = A / (w k(η)) · [η / (1 + u²) + (1 − η) exp(−ln 2 · u²)],
    u = 2 (x − c) / (w s),  s = 1 − α (x < c) or 1 + α (x ≥ c),
    k(η) = η π/2 + (1 − η) √(π / ln 2) / 2,

so ∫ f dx = A for every η and α. ``gaussian`` is η = 0, ``lorentzian`` η = 1,
``pseudo_voigt`` α = 0, ``split_pseudo_voigt`` α free. x, c and w share one radial unit;
A is in intensity × that unit.

Instrument box (:func:`boxed_profile`): the symmetric profile convolved with a rectangle of
full width b (same unit), the radial footprint of a detector pixel and of the integration
bin (a pixel's counts are spread uniformly over its radial extent, pyFAI's bounding-box
splitting; at 172 µm and 0.25 m that is ≈ 0.04° 2θ, as wide as a sharp peak). Written
with unit-area Lorentzian L̂ and Gaussian Ĝ of FWHM w (the height-mixed pseudo-Voigt above
is f = A [η K_L L̂ + (1 − η) K_G Ĝ] / k(η), K_L = π/2, K_G = √(π/ln 2)/2):

    L̂_b(x) = atan2(b/γ, 1 + z₊ z₋) / (π b),   z± = (x − c ± b/2)/γ,  γ = w/2,
    Ĝ_b(x) = [erf(v₊) − erf(v₋)] / (2b),       v± = (x − c ± b/2)/s,  s = w/(2√ln 2),

so b → 0 gives the pseudo-Voigt back and ∫ f dx = A still. (The radial bin of the
integration is a second, narrower box; with bins ≲ w/3 its effect on areas is below the
fitted box's reach and it is not modelled separately.) Pure: numpy in, numpy out.
"""

from __future__ import annotations

import numpy as np
from scipy.special import erf, erfc

__all__ = ["PROFILES", "boxed_jacobian", "boxed_profile", "peak_jacobian", "peak_profile"]

#: the profile names a fit can use (see the module docstring)
PROFILES = ("gaussian", "lorentzian", "pseudo_voigt", "split_pseudo_voigt")
LN2 = float(np.log(2.0))
_KG = 0.5 * float(np.sqrt(np.pi / LN2))  # area of a unit-height Gaussian of FWHM 1
_KL = 0.5 * float(np.pi)  # area of a unit-height Lorentzian of FWHM 1


def _k(eta: np.ndarray | float) -> np.ndarray:
    return np.asarray(eta) * _KL + (1.0 - np.asarray(eta)) * _KG


def peak_profile(x: np.ndarray, center: float | np.ndarray, area: float | np.ndarray,
                 fwhm: float | np.ndarray, eta: float | np.ndarray = 0.5,
                 asym: float | np.ndarray = 0.0) -> np.ndarray:
    """Split pseudo-Voigt of area ``area`` (see the module docstring); broadcasts.

    ``eta`` defaults to 0.5 (half Lorentzian), ``asym`` to 0 (symmetric)."""
    s = np.where(x < center, 1.0 - asym, 1.0 + asym)
    u = 2.0 * (x - center) / (fwhm * s)
    u2 = u * u
    shape = eta / (1.0 + u2) + (1.0 - eta) * np.exp(-LN2 * u2)
    return area / (fwhm * _k(eta)) * shape


def peak_jacobian(x: np.ndarray, center: np.ndarray, area: np.ndarray, fwhm: np.ndarray,
                  eta: np.ndarray, asym: np.ndarray) -> tuple[np.ndarray, ...]:
    """(f, ∂f/∂c, ∂f/∂A, ∂f/∂w, ∂f/∂η, ∂f/∂α) of :func:`peak_profile`, analytic.

    With P(u) = η/(1+u²) + (1−η) e^(−ln2 u²), H = A/(w k):  ∂f/∂c = H P'(u) (−2/(w s)),
    ∂f/∂w = −f/w − H P'(u) u/w,  ∂f/∂η = (A/w)[(1/(1+u²) − e^(−ln2 u²))/k − P k'/k²],
    ∂f/∂α = H P'(u) (−u/s)(∓1), k' = π/2 − √(π/ln2)/2.
    """
    left = x < center
    s = np.where(left, 1.0 - asym, 1.0 + asym)
    u = 2.0 * (x - center) / (fwhm * s)
    u2 = u * u
    lor = 1.0 / (1.0 + u2)
    gau = np.exp(-LN2 * u2)
    shape = eta * lor + (1.0 - eta) * gau
    k = _k(eta)
    h = area / (fwhm * k)
    f = h * shape
    dshape_du = -2.0 * u * (eta * lor * lor + (1.0 - eta) * LN2 * gau)
    hd = h * dshape_du
    d_c = hd * (-2.0 / (fwhm * s))
    d_a = shape / (fwhm * k)
    d_w = -f / fwhm - hd * u / fwhm
    d_eta = (area / fwhm) * ((lor - gau) / k - shape * (_KL - _KG) / (k * k))
    d_asym = hd * (-u / s) * np.where(left, -1.0, 1.0)
    return f, d_c, d_a, d_w, d_eta, d_asym


_SQRT_LN2 = float(np.sqrt(LN2))
_TWO_OVER_SQRTPI = 2.0 / float(np.sqrt(np.pi))


def _erf_diff(vp: np.ndarray, vm: np.ndarray) -> np.ndarray:
    """erf(v₊) − erf(v₋) for v₊ ≥ v₋, through erfc in the tails (no cancellation there)."""
    right = vm > 0
    left = vp < 0
    mid = erf(vp) - erf(vm)
    return np.where(right, erfc(vm) - erfc(vp), np.where(left, erfc(-vp) - erfc(-vm), mid))


def _boxed_parts(x: np.ndarray, center: np.ndarray, fwhm: np.ndarray, box: np.ndarray
                 ) -> tuple[np.ndarray, ...]:
    """(L̂_b, Ĝ_b, z₊, z₋, v₊, v₋, γ, s) of the module docstring."""
    gam = 0.5 * fwhm
    s = fwhm / (2.0 * _SQRT_LN2)
    dx = x - center
    half = 0.5 * box
    zp, zm = (dx + half) / gam, (dx - half) / gam
    vp, vm = (dx + half) / s, (dx - half) / s
    lb = np.arctan2(box / gam, 1.0 + zp * zm) / (np.pi * box)
    gb = _erf_diff(vp, vm) / (2.0 * box)
    return lb, gb, zp, zm, vp, vm, gam, s


def boxed_profile(x: np.ndarray, center: float | np.ndarray, area: float | np.ndarray,
                  fwhm: float | np.ndarray, eta: float | np.ndarray = 0.5,
                  box: float | np.ndarray = 1e-3) -> np.ndarray:
    """Pseudo-Voigt of area ``area`` and FWHM ``fwhm`` convolved with a box of full width
    ``box`` (> 0; same unit as x), see the module docstring; broadcasts."""
    lb, gb = _boxed_parts(np.asarray(x, float), np.asarray(center, float),
                          np.asarray(fwhm, float), np.asarray(box, float))[:2]
    return area * (eta * _KL * lb + (1.0 - eta) * _KG * gb) / _k(eta)


def boxed_jacobian(x: np.ndarray, center: np.ndarray, area: np.ndarray, fwhm: np.ndarray,
                   eta: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, ...]:
    """(f, ∂f/∂c, ∂f/∂A, ∂f/∂w, ∂f/∂η, ∂f/∂b) of :func:`boxed_profile`, analytic.

    With Q± = 1/(1 + z±²) and E± = (2/√π) exp(−v±²):
    ∂L̂_b/∂c = (Q₋ − Q₊)/(π b γ), ∂L̂_b/∂w = (z₋Q₋ − z₊Q₊)/(2π b γ),
    ∂L̂_b/∂b = −L̂_b/b + (Q₊ + Q₋)/(2π b γ); ∂Ĝ_b/∂c = (E₋ − E₊)/(2 b s),
    ∂Ĝ_b/∂w = (v₋E₋ − v₊E₊)/(2 b w), ∂Ĝ_b/∂b = −Ĝ_b/b + (E₊ + E₋)/(4 b s).
    """
    lb, gb, zp, zm, vp, vm, gam, s = _boxed_parts(x, center, fwhm, box)
    qp, qm = 1.0 / (1.0 + zp * zp), 1.0 / (1.0 + zm * zm)
    ep, em = _TWO_OVER_SQRTPI * np.exp(-vp * vp), _TWO_OVER_SQRTPI * np.exp(-vm * vm)
    k = _k(eta)
    wl, wg = eta * _KL, (1.0 - eta) * _KG
    shape = wl * lb + wg * gb
    f = area * shape / k
    pb = np.pi * box
    dl_c = (qm - qp) / (pb * gam)
    dl_w = (zm * qm - zp * qp) / (2.0 * pb * gam)
    dl_b = -lb / box + (qp + qm) / (2.0 * pb * gam)
    dg_c = (em - ep) / (2.0 * box * s)
    dg_w = (vm * em - vp * ep) / (2.0 * box * fwhm)
    dg_b = -gb / box + (ep + em) / (4.0 * box * s)
    h = area / k
    d_c = h * (wl * dl_c + wg * dg_c)
    d_a = shape / k
    d_w = h * (wl * dl_w + wg * dg_w)
    d_eta = area * ((_KL * lb - _KG * gb) / k - shape * (_KL - _KG) / (k * k))
    d_b = h * (wl * dl_b + wg * dg_b)
    return f, d_c, d_a, d_w, d_eta, d_b

