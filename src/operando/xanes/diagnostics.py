"""Diagnostics of an operando XANES series: isosbestic points, and the XANES fraction
against the Faraday expectation (residual, slope, lag).

**Isosbestic points.** In a two-phase reaction every spectrum is
μ_i(E) = μ_a(E) + f_i [μ_b(E) − μ_a(E)], so the series varies along one direction v(E)
and stays constant where v(E) = 0. v is the first right singular vector of the centred
series (spectra × energy); isosbestic energies are its zero crossings (linear
interpolation) where |v| on both sides reaches ``min_amplitude`` × max|v| within
``side_eV`` (crossings in noise are ignored). The *spread* of a point is the standard
deviation over spectra of the energy where μ_i − μ̄ crosses zero near it (spectra whose
score on v is within the top 50 % in |score|), and ``mu_spread`` the standard deviation of
μ_i at the point (dimensionless): both ≈ 0 for a clean two-phase series.

**Fraction vs Faraday.** For scans k with exposure windows [t0_k, t1_k] (s, potentiostat
clock) the Faraday-expected fraction with a lag τ is the exposure mean
F_k(τ) = ⟨f_F⟩ over [t0_k − τ, t1_k − τ] (:func:`operando.echem.attach.exposure_average`;
only scans inside the echem record at τ = 0 are used; windows a lag pushes past its
ends are clipped to its first / last sample, i.e. the state before the record is the
initial one and after it the final one). Residual r_k = f_k − F_k(0); slope and
intercept of f_k = a + b F_k(τ̂) by least squares (1σ errors from the residual variance).
Lag τ̂ minimises SSR(τ) = Σ_k (f_k − F_k(τ))² on a grid (``lag_step_s``) refined by a
parabola; its 1σ error combines the statistical term from the profile Δχ² = 1 with
χ² = SSR/σ̂², σ̂² = SSR(τ̂)/(K − 1):  σ_stat = sqrt(2 σ̂² / SSR''(τ̂)), and a systematic
term d/√12 (d: median scan duration), since a scan's fraction is a sensitivity-weighted
mean over the scan whose reference instant is not the window mid-time. A positive lag
means the XANES fraction follows the charge passed later.

Pure numpy / xarray; no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

from operando.echem.attach import exposure_average

__all__ = ["FaradayComparison", "IsosbesticPoints", "compare_faraday", "faraday_expected",
           "isosbestic_points"]


@dataclass
class IsosbesticPoints:
    """``energy`` (eV), ``spread_eV`` (eV), ``mu`` (normalised μ at the point),
    ``mu_spread`` (std over spectra), all (p,); ``component`` (m,) the direction v(E) of
    the change; ``explained`` fraction of the variance it explains."""

    energy: np.ndarray
    spread_eV: np.ndarray
    mu: np.ndarray
    mu_spread: np.ndarray
    component: np.ndarray
    explained: float


def _crossings(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Zero crossings of y(x): (interpolated x, left index)."""
    s = np.sign(y)
    j = np.flatnonzero((s[:-1] * s[1:] < 0) | ((s[:-1] != 0) & (y[1:] == 0)))
    with np.errstate(invalid="ignore", divide="ignore"):
        t = y[j] / (y[j] - y[j + 1])
    return x[j] + t * (x[j + 1] - x[j]), j


def isosbestic_points(
    energy: np.ndarray,
    mu_norm: np.ndarray,
    *,
    emin: float | None = None,
    emax: float | None = None,
    min_amplitude: float = 0.05,
    side_eV: float = 5.0,
) -> IsosbesticPoints:
    """Isosbestic energies of a series ``mu_norm`` (n, m) on ``energy`` (m,) eV, searched in
    [emin, emax] (see the module docstring). Rows with NaN are ignored."""
    e = np.asarray(energy, dtype=float)
    Y = np.atleast_2d(np.asarray(mu_norm, dtype=float))
    sel = np.ones(e.size, dtype=bool)
    if emin is not None:
        sel &= e >= emin
    if emax is not None:
        sel &= e <= emax
    rows = np.isfinite(Y[:, sel]).all(axis=1)
    empty = IsosbesticPoints(np.array([]), np.array([]), np.array([]), np.array([]),
                             np.full(e.size, np.nan), float("nan"))
    if rows.sum() < 3 or sel.sum() < 5:
        return empty
    x = e[sel]
    Z = Y[rows][:, sel]
    mean = Z.mean(axis=0)
    C = Z - mean
    u, sv, vt = np.linalg.svd(C, full_matrices=False)
    v = vt[0]
    explained = float(sv[0] ** 2 / max((sv**2).sum(), 1e-300))
    vmax = np.abs(v).max()
    xs, js = _crossings(x, v)
    keep_e, keep_s, keep_mu, keep_mus = [], [], [], []
    score = u[:, 0] * sv[0]
    strong = np.abs(score) >= np.quantile(np.abs(score), 0.5)
    for xc, j in zip(xs, js, strict=True):
        left = (x >= xc - side_eV) & (x <= xc)
        right = (x >= xc) & (x <= xc + side_eV)
        if not (left.any() and right.any()):
            continue
        if min(np.abs(v[left]).max(), np.abs(v[right]).max()) < min_amplitude * vmax:
            continue
        # per-spectrum crossing of (μ_i − μ̄) nearest xc
        near = (x >= xc - side_eV) & (x <= xc + side_eV)
        cross = []
        for row in C[strong]:
            cx, _ = _crossings(x[near], row[near])
            if cx.size:
                cross.append(cx[np.argmin(np.abs(cx - xc))])
        mu_at = np.array([np.interp(xc, x, z) for z in Z])
        keep_e.append(float(xc))
        keep_s.append(float(np.std(cross)) if len(cross) > 1 else float("nan"))
        keep_mu.append(float(mu_at.mean()))
        keep_mus.append(float(mu_at.std()))
        del j
    comp = np.full(e.size, np.nan)
    comp[sel] = v * np.sign(v[np.argmax(np.abs(v))])
    return IsosbesticPoints(np.array(keep_e), np.array(keep_s), np.array(keep_mu),
                            np.array(keep_mus), comp, explained)


def faraday_expected(
    echem: xr.Dataset,
    time_start_s: np.ndarray,
    time_end_s: np.ndarray,
    lag_s: float = 0.0,
    variable: str = "faraday_fraction",
    *,
    clip_end: bool = False,
) -> np.ndarray:
    """Exposure mean of ``echem[variable]`` over [t0 − lag, t1 − lag] (s, potentiostat
    clock), windows before the first echem sample clipped to it (the initial state);
    with ``clip_end`` also windows after the last sample (the final state), else those
    give NaN."""
    t = np.asarray(echem["time_s"].values, dtype=float)
    t0 = np.asarray(time_start_s, dtype=float) - lag_s
    t1 = np.asarray(time_end_s, dtype=float) - lag_s
    t0c, t1c = np.maximum(t0, t[0]), np.maximum(t1, t[0])
    if clip_end:
        t0c, t1c = np.minimum(t0c, t[-1]), np.minimum(t1c, t[-1])
    av = exposure_average(echem, t0c, t1c, variables=(variable,))
    return np.asarray(av[variable].values, dtype=float)


@dataclass
class FaradayComparison:
    """XANES fraction f_k vs the Faraday expectation F_k (see the module docstring).

    ``expected`` F_k(0) and ``residual`` f_k − F_k(0) (n,); ``expected_lagged`` F_k(τ̂);
    ``slope``, ``slope_stderr``, ``intercept``, ``intercept_stderr`` of f = a + b F(τ̂);
    ``lag_s`` τ̂ and ``lag_stderr_s`` (s); ``rms_residual`` at τ = 0 and
    ``rms_residual_lagged`` at τ̂; ``lag_grid_s``/``ssr`` the profile; ``n_used``."""

    expected: np.ndarray
    residual: np.ndarray
    expected_lagged: np.ndarray
    slope: float
    slope_stderr: float
    intercept: float
    intercept_stderr: float
    lag_s: float
    lag_stderr_s: float
    rms_residual: float
    rms_residual_lagged: float
    lag_grid_s: np.ndarray
    ssr: np.ndarray
    n_used: int


def _linfit(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float, float]:
    A = np.column_stack([np.ones_like(x), x])
    coef, *_ = np.linalg.lstsq(A, y, rcond=None)
    r = y - A @ coef
    dof = max(x.size - 2, 1)
    cov = np.linalg.pinv(A.T @ A) * (r @ r) / dof
    return float(coef[1]), float(np.sqrt(cov[1, 1])), float(coef[0]), float(np.sqrt(cov[0, 0]))


def compare_faraday(
    fraction: np.ndarray,
    echem: xr.Dataset,
    time_start_s: np.ndarray,
    time_end_s: np.ndarray,
    *,
    max_lag_s: float = 600.0,
    lag_step_s: float | None = None,
    variable: str = "faraday_fraction",
) -> FaradayComparison:
    """Compare XANES fractions (n,) of the end member that ``echem[variable]`` predicts
    with the Faraday expectation over each scan window; lag searched in ±``max_lag_s``
    (step default: a tenth of the median scan duration, at least 0.5 s)."""
    f = np.asarray(fraction, dtype=float)
    t0 = np.asarray(time_start_s, dtype=float)
    t1 = np.asarray(time_end_s, dtype=float)
    expected = faraday_expected(echem, t0, t1, 0.0, variable)
    use = np.isfinite(f) & np.isfinite(expected)
    if use.sum() < 4:
        raise ValueError(f"compare_faraday: {int(use.sum())} scan(s) with both a XANES "
                         "fraction and a Faraday expectation; expected at least 4")
    dur = float(np.median(t1 - t0)) if t0.size else 1.0
    step = lag_step_s if lag_step_s is not None else max(0.5, dur / 10.0)
    grid = np.arange(-max_lag_s, max_lag_s + 0.5 * step, step)
    ssr = np.empty(grid.size)
    for i, lag in enumerate(grid):
        # scans inside the record at lag 0; a lag pushing a window past either end of the
        # record sees the initial / final state there (not NaN: else negative lags would
        # be cut off whenever the last scan ends near the end of the echem record)
        F = faraday_expected(echem, t0[use], t1[use], float(lag), variable, clip_end=True)
        good = np.isfinite(F)
        ssr[i] = ((f[use][good] - F[good]) ** 2).sum() if good.all() else np.inf
    i = int(np.argmin(ssr))
    if 0 < i < grid.size - 1 and np.all(np.isfinite(ssr[i - 1 : i + 2])):
        a, b, c = ssr[i - 1], ssr[i], ssr[i + 1]
        curv = (a - 2 * b + c) / step**2  # SSR''
        off = 0.5 * (a - c) / (a - 2 * b + c) if a - 2 * b + c > 0 else 0.0
        lag = float(grid[i] + np.clip(off, -1, 1) * step)
        ssr_min = float(b - 0.25 * (a - c) * off) if curv > 0 else float(b)
        sigma2 = max(ssr_min, 0.0) / max(int(use.sum()) - 1, 1)
        lag_err = float(np.sqrt(2 * sigma2 / curv)) if curv > 0 else float("nan")
        # plus the systematic term: a scan's fraction is a weighted mean over the scan, so
        # the instant it refers to is uncertain within the scan (uniform: dur/√12)
        lag_err = float(np.hypot(lag_err, dur / np.sqrt(12)))
    else:
        lag, lag_err = float(grid[i]), float("nan")
    lagged = np.full(f.size, np.nan)
    inside = np.isfinite(expected)
    lagged[inside] = faraday_expected(echem, t0[inside], t1[inside], lag, variable,
                                      clip_end=True)
    both = use & np.isfinite(lagged)
    slope, slope_err, icpt, icpt_err = _linfit(lagged[both], f[both])
    resid = f - expected
    resid_lag = f - lagged
    return FaradayComparison(
        expected=expected, residual=resid, expected_lagged=lagged, slope=slope,
        slope_stderr=slope_err, intercept=icpt, intercept_stderr=icpt_err, lag_s=lag,
        lag_stderr_s=lag_err, rms_residual=float(np.sqrt(np.nanmean(resid[use] ** 2))),
        rms_residual_lagged=float(np.sqrt(np.nanmean(resid_lag[both] ** 2))),
        lag_grid_s=grid, ssr=ssr, n_used=int(use.sum()),
    )
