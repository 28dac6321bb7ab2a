"""Randles–Sevcik: i_p against √v, the linear range, and the diffusion coefficient.

For a reversible couple under semi-infinite planar diffusion the peak current is::

    i_p = 0.4463 n F A C (n F v D / R T)^½          [A]

with n electrons, F (C mol⁻¹), A the electrode area (cm²), C the bulk concentration
(mol cm⁻³), v the scan rate (V s⁻¹), D (cm² s⁻¹), R (J mol⁻¹ K⁻¹), T (K). So i_p is
linear in √v with slope s (A s^½ V^-½) and::

    D = (R T / n F) · [s / (0.4463 n F A C)]²      σ_D = 2 D σ_s / s.

The linear range: the quasi-reversible (finite k0, Matsuda–Ayabe Λ = k0/√(D f v)) and
ohmic fall-off of i_p is first order in 1/Λ ∝ √v, so i_p ≈ a√v (1 + b√v). A weighted
fit of i_p = a x + c x² (x = √v, through the origin) over all rates estimates the ideal
line a·x and the relative deviation of each rate from it, d = c x / a. The linear range
ends below the first rate where |d| exceeds ``linearity_tolerance`` by more than
``linearity_sigma`` standard errors; the slope is then a weighted linear fit over the
rates inside it (weights 1/σ_ip², standard errors scaled by the reduced χ²).

Everything is batched: arrays ``(B, m)`` for B fits of m scan rates (m ascending).
"""

from __future__ import annotations

import warnings

import numpy as np

from operando.constants import (
    FARADAY_C_PER_MOL,
    GAS_CONSTANT_J_PER_MOL_K,
    RANDLES_SEVCIK_PSI_P,
)

__all__ = [
    "diffusion_from_slope",
    "fit_sqrt_rate",
    "randles_sevcik_current_A",
    "reversible_delta_ep_V",
]


def _check_positive(**kw: float) -> None:
    for name, value in kw.items():
        if not np.all(np.asarray(value, dtype=float) > 0):
            raise ValueError(f"kinetics.{name}: expected a positive value, found {value}")


def diffusion_from_slope(
    slope_A_sqrt_s_per_V: np.ndarray | float,
    *, n_electrons: int, area_cm2: np.ndarray | float, concentration_mol_cm3: float,
    temperature_K: float, slope_stderr: np.ndarray | float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(D, σ_D) in cm² s⁻¹ from the slope of i_p (A) against √v (√(V s⁻¹)).

    D = (R T / n F) · [s / (0.4463 n F A C)]², A in cm², C in mol cm⁻³, T in K;
    σ_D = 2 D σ_s / |s| (NaN without ``slope_stderr``). Raises ``ValueError`` naming the
    key for a non-positive area, concentration, temperature or electron count.
    """
    _check_positive(area_cm2=area_cm2, concentration_mol_cm3=concentration_mol_cm3,
                    temperature_K=temperature_K, n_electrons=n_electrons)
    s = np.asarray(slope_A_sqrt_s_per_V, dtype=float)
    nf = n_electrons * FARADAY_C_PER_MOL
    d = (GAS_CONSTANT_J_PER_MOL_K * temperature_K / nf) * (
        s / (RANDLES_SEVCIK_PSI_P * nf * np.asarray(area_cm2) * concentration_mol_cm3)) ** 2
    if slope_stderr is None:
        return d, np.full_like(d, np.nan)
    return d, 2.0 * d * np.asarray(slope_stderr, dtype=float) / np.abs(s)


def randles_sevcik_current_A(
    D_cm2_s: np.ndarray | float, scan_rate_V_s: np.ndarray | float, *, n_electrons: int,
    area_cm2: float, concentration_mol_cm3: float, temperature_K: float,
) -> np.ndarray:
    """i_p = 0.4463 n F A C √(n F v D / R T)  (A)."""
    nf = n_electrons * FARADAY_C_PER_MOL
    return RANDLES_SEVCIK_PSI_P * nf * area_cm2 * concentration_mol_cm3 * np.sqrt(
        nf * np.asarray(scan_rate_V_s) * np.asarray(D_cm2_s)
        / (GAS_CONSTANT_J_PER_MOL_K * temperature_K))


def reversible_delta_ep_V(n_electrons: int, temperature_K: float) -> float:
    """ΔEp = 2.218 R T / n F (V): 57 mV / n at 25 °C for a reversible couple."""
    return 2.218 * GAS_CONSTANT_J_PER_MOL_K * temperature_K / (n_electrons * FARADAY_C_PER_MOL)


def fit_sqrt_rate(
    peak_current_A: np.ndarray,
    sigma_A: np.ndarray,
    scan_rate_V_s: np.ndarray,
    *,
    linearity_tolerance: float = 0.01,
    linearity_sigma: float = 2.0,
    fit_intercept: bool = False,
) -> dict[str, np.ndarray]:
    """Weighted i_p–√v fits with automatic linear range, batched over rows.

    ``peak_current_A``, ``sigma_A``: ``(B, m)`` (NaN = no peak at that rate; a peak with
    σ ≤ 0 or NaN gets the median σ of its row); ``scan_rate_V_s``: ``(m,)`` ascending.
    The sign of i_p is taken as given (pass |i_p| for cathodic peaks).

    Returns ``(B,)`` arrays ``slope`` (A/√(V/s)), ``slope_stderr``, ``intercept_A`` and
    ``intercept_stderr_A`` (0 and NaN without ``fit_intercept``), ``r2`` (weighted,
    about the weighted mean), ``n_linear``, ``max_linear_scan_rate_V_s``, ``n_valid``,
    ``range_tested`` (bool: ≥ 3 valid rates), and ``(B, m)`` arrays ``in_linear_range``
    (bool) and ``deviation`` (d = c√v/a, NaN where untested).
    """
    y = np.atleast_2d(np.asarray(peak_current_A, dtype=float))
    sig = np.atleast_2d(np.asarray(sigma_A, dtype=float))
    v = np.asarray(scan_rate_V_s, dtype=float).reshape(-1)
    if np.any(np.diff(v) <= 0):
        raise ValueError(f"scan rates must be strictly ascending, found {v.tolist()}")
    bsz, m = y.shape
    x = np.sqrt(v)[None, :]
    valid = np.isfinite(y)
    with warnings.catch_warnings():  # rows without any peak: all-NaN, handled below
        warnings.simplefilter("ignore", RuntimeWarning)
        med = np.nanmedian(np.where(valid & (sig > 0), sig, np.nan), axis=1, keepdims=True)
    med = np.where(np.isfinite(med), med, 1.0)
    sig = np.where(np.isfinite(sig) & (sig > 0), sig, med)
    w = np.where(valid, 1.0 / sig**2, 0.0)
    yv = np.where(valid, y, 0.0)
    n_valid = valid.sum(1)

    # --- curvature model i_p = a x + c x² through the origin (all valid rates)
    s2, s3, s4 = ((w * x**p).sum(1) for p in (2, 3, 4))
    t1, t2 = (w * x * yv).sum(1), (w * x**2 * yv).sum(1)
    det = s2 * s4 - s3**2
    tested = (n_valid >= 3) & (det > 0)
    dets = np.where(tested, det, 1.0)
    a = (s4 * t1 - s3 * t2) / dets
    c = (s2 * t2 - s3 * t1) / dets
    res = np.where(valid, yv - a[:, None] * x - c[:, None] * x**2, 0.0)
    chi2 = (w * res**2).sum(1) / np.maximum(n_valid - 2, 1)
    scale = np.maximum(chi2, 1.0)
    var_a, var_c, cov_ac = s4 / dets * scale, s2 / dets * scale, -s3 / dets * scale
    a_safe = np.where(a != 0, a, np.nan)
    dev = c[:, None] * x / a_safe[:, None]
    ga, gc = -c[:, None] * x / a_safe[:, None] ** 2, x / a_safe[:, None]
    sd = np.sqrt(np.maximum(ga**2 * var_a[:, None] + gc**2 * var_c[:, None]
                            + 2 * ga * gc * cov_ac[:, None], 0.0))
    nonlinear = valid & tested[:, None] & (np.abs(dev) > linearity_tolerance + linearity_sigma * sd)
    first_bad = np.where(nonlinear.any(1), np.argmax(nonlinear, axis=1), m)
    in_range = valid & (np.arange(m)[None, :] < first_bad[:, None])
    deviation = np.where(valid & tested[:, None], dev, np.nan)

    # --- weighted linear fit over the linear range
    wl = np.where(in_range, w, 0.0)
    n_lin = in_range.sum(1)
    sw, swx, swy = wl.sum(1), (wl * x).sum(1), (wl * yv).sum(1)
    swxx, swxy = (wl * x * x).sum(1), (wl * x * yv).sum(1)
    nan = np.full(bsz, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        if fit_intercept:
            dd = sw * swxx - swx**2
            ok = (n_lin >= 3) & (dd > 0)
            slope = np.where(ok, (sw * swxy - swx * swy) / dd, nan)
            icpt = np.where(ok, (swxx * swy - swx * swxy) / dd, nan)
            n_par = 2
        else:
            ok = (n_lin >= 2) & (swxx > 0)
            slope = np.where(ok, swxy / swxx, nan)
            icpt = np.zeros(bsz)
            n_par = 1
        fit = slope[:, None] * x + icpt[:, None]
        r = np.where(in_range, yv - fit, 0.0)
        ssr = (wl * r**2).sum(1)
        chi2l = ssr / np.maximum(n_lin - n_par, 1)
        if fit_intercept:
            slope_err = np.sqrt(chi2l * sw / dd)
            icpt_err = np.sqrt(chi2l * swxx / dd)
        else:
            slope_err = np.sqrt(chi2l / swxx)
            icpt_err = nan
        ybar = swy / sw
        sst = (wl * np.where(in_range, yv - ybar[:, None], 0.0) ** 2).sum(1)
        r2 = np.where(ok & (sst > 0), 1.0 - ssr / sst, nan)
        vmax = np.where(n_lin > 0, np.max(np.where(in_range, v[None, :], -np.inf), axis=1), nan)
    return {
        "slope": slope,
        "slope_stderr": np.where(ok, slope_err, nan),
        "intercept_A": icpt,
        "intercept_stderr_A": np.where(ok, icpt_err, nan) if fit_intercept else nan,
        "r2": r2,
        "n_linear": n_lin,
        "n_valid": n_valid,
        "max_linear_scan_rate_V_s": vmax,
        "range_tested": tested,
        "in_linear_range": in_range,
        "deviation": deviation,
    }
