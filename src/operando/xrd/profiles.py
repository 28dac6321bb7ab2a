"""Peak profiles of unit-normalised area and their analytic Jacobians (the lineshapes).

Profile (area A, FWHM w, Lorentzian fraction η, asymmetry α; a split pseudo-Voigt whose
half-widths are w(1 − α)/2 left of the centre c and w(1 + α)/2 right of it):

    f(x) = A / (w k(η)) · [η / (1 + u²) + (1 − η) exp(−ln 2 · u²)],
    u = 2 (x − c) / (w s),  s = 1 − α (x < c) or 1 + α (x ≥ c),
    k(η) = η π/2 + (1 − η) √(π / ln 2) / 2,

so ∫ f dx = A for every η and α. ``gaussian`` is η = 0, ``lorentzian`` η = 1,
``pseudo_voigt`` α = 0, ``split_pseudo_voigt`` α free. x, c and w share one radial unit;
A is in intensity × that unit. Pure: numpy in, numpy out.
"""

from __future__ import annotations

import numpy as np

__all__ = ["PROFILES", "peak_jacobian", "peak_profile"]

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
