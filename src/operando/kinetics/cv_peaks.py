"""Background correction and peak currents / potentials of CV sweeps, batched.

Every function takes a batch of sweeps of equal length, ``potential_V`` and
``current_A`` of shape ``(B, n)`` (samples in time order; a single CV is ``B = 1``, a map
row-stacks its pixels), so one code path serves a single CV and a 64 × 64 map.

Steps for a sweep of direction d (+1 anodic, −1 cathodic), on y = d·i (A) so that the
peak is a maximum:

1. background from the pre-peak window (``baseline_window_V``, default the first
   ``baseline_fraction`` of the sweep's span, skipping its first 2 % of samples, the
   switching transient): ``"linear"`` fits y = b0 + b1·E (capacitive current plus a slow
   background), ``"capacitive"`` takes the mean (the double-layer current C_dl·v),
   ``"none"`` nothing. The residual scatter there is the noise σ (A).
2. the largest moving average of the corrected current in the search window (default:
   the sweep after the baseline window) is the peak candidate; at the edge of the window
   (still rising) there is no peak.
3. a quartic least-squares fit over ±``fit_half_width_V`` around it gives the peak
   current (its maximum) and potential; its standard error combines the fit's
   σ·√(vᵀ(VᵀV)⁻¹v) at the maximum and the error of the background extrapolated there
   (σ²(1/N + (E − Ē)²/Sₓₓ) for the linear baseline).

Peak currents are relative to the background: i_p (A), signed (anodic > 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["REASONS", "PeakOptions", "sweep_peaks"]

#: reason codes of :func:`sweep_peaks` (0 = a peak was found)
REASONS: dict[int, str] = {
    0: "peak found",
    1: "no peak: the current still rises at the edge of the search window",
    2: "no peak: the maximum is not above the noise (min_snr)",
    3: "no peak: too few samples in the baseline or search window",
    4: "no peak: the quartic fit has its maximum at the edge of the fit window",
}


@dataclass(frozen=True)
class PeakOptions:
    """How peaks are found (see the module docstring); potentials in V."""

    background: str = "linear"  # "none" | "linear" | "capacitive"
    baseline_window_V: tuple[float, float] | None = None
    baseline_fraction: float = 0.2
    fit_half_width_V: float = 0.03
    min_snr: float = 5.0

    def __post_init__(self) -> None:
        if self.background not in ("none", "linear", "capacitive"):
            raise ValueError(f"kinetics.background: expected 'none', 'linear' or "
                             f"'capacitive', found {self.background!r}")
        if not 0 < self.baseline_fraction < 1:
            raise ValueError(f"kinetics.baseline_fraction: expected in (0, 1), found "
                             f"{self.baseline_fraction}")
        if not self.fit_half_width_V > 0:
            raise ValueError(f"kinetics.peak_fit_half_width_V: expected > 0, found "
                             f"{self.fit_half_width_V}")


def _in_window(e: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    lo, hi = min(window), max(window)
    return (e >= lo) & (e <= hi)


def sweep_peaks(
    potential_V: np.ndarray,
    current_A: np.ndarray,
    direction: int,
    options: PeakOptions = PeakOptions(),
    window_V: tuple[float, float] | None = None,
) -> dict[str, np.ndarray]:
    """Peak of each sweep in a batch ``(B, n)``; returns arrays of shape ``(B,)``:

    ``current_A`` (signed, background-subtracted; NaN when none), ``potential_V``,
    ``sigma_A`` (standard error of the peak current), ``noise_A`` (σ of the current in
    the baseline window), ``background_A`` (background at the peak potential, signed),
    ``found`` (bool), ``reason`` (int, :data:`REASONS`).
    """
    e = np.atleast_2d(np.asarray(potential_V, dtype=float))
    y = direction * np.atleast_2d(np.asarray(current_A, dtype=float))
    if e.shape != y.shape:
        e = np.broadcast_to(e, y.shape)
    b, n = y.shape
    idx = np.arange(n)
    skip = max(1, round(0.02 * n))
    if options.baseline_window_V is not None:
        m_bl = _in_window(e, options.baseline_window_V)
    else:
        span = np.abs(e[:, -1:] - e[:, :1])
        span = np.where(span > 0, span, np.abs(e.max(1, keepdims=True) - e.min(1, keepdims=True)))
        m_bl = (np.abs(e - e[:, :1]) <= options.baseline_fraction * span) & (idx >= skip)
    m_bl = m_bl & np.isfinite(y)
    reason = np.zeros(b, dtype=np.int64)

    # 1. background on the baseline window
    w = m_bl.astype(float)
    s0 = w.sum(1)
    x = e - e[:, :1]
    safe0 = np.maximum(s0, 1)
    xm = (w * x).sum(1) / safe0
    ym = (w * np.where(m_bl, y, 0)).sum(1) / safe0
    dx = np.where(m_bl, x - xm[:, None], 0.0)
    dy = np.where(m_bl, y - ym[:, None], 0.0)
    sxx = (dx * dx).sum(1)
    if options.background == "linear":
        slope = np.where(sxx > 0, (dx * dy).sum(1) / np.where(sxx > 0, sxx, 1), 0.0)
        base = ym[:, None] + slope[:, None] * (x - xm[:, None])
        n_par = 2
    elif options.background == "capacitive":
        base = np.broadcast_to(ym[:, None], y.shape)
        n_par = 1
    else:
        base = np.zeros_like(y)
        n_par = 0
    resid = np.where(m_bl, y - base if options.background != "none" else dy, 0.0)
    dof = np.maximum(s0 - max(n_par, 1), 1)
    noise = np.sqrt((resid**2).sum(1) / dof)
    reason[s0 < 3] = 3
    yc = y - base

    # 2. search window and smoothed maximum
    if window_V is not None:
        m_w = _in_window(e, window_V)
    elif options.baseline_window_V is not None:
        m_w = ~_in_window(e, options.baseline_window_V) & (idx >= skip)
    else:
        last_bl = np.where(m_bl.any(1), n - 1 - np.argmax(m_bl[:, ::-1], axis=1), 0)
        m_w = idx[None, :] > last_bl[:, None]
    step = np.nanmedian(np.abs(np.diff(e, axis=1)))
    h = max(2, round(options.fit_half_width_V / step)) if step > 0 else 2
    hw = max(1, h // 3)
    c = np.cumsum(np.pad(np.nan_to_num(yc), ((0, 0), (1, 0))), axis=1)
    sm = np.full_like(yc, -np.inf)
    sm[:, hw:n - hw] = (c[:, 2 * hw + 1:] - c[:, :n - 2 * hw]) / (2 * hw + 1)
    sm = np.where(m_w, sm, -np.inf)
    k = np.argmax(sm, axis=1)
    has_w = m_w.sum(1) >= 2 * h + 1
    first_w = np.argmax(m_w, axis=1)
    last_w = n - 1 - np.argmax(m_w[:, ::-1], axis=1)
    edge = (k - first_w < h) | (last_w - k < h) | (k - h < 0) | (k + h > n - 1)
    reason[(reason == 0) & ~has_w] = 3
    reason[(reason == 0) & edge] = 1

    # 3. quartic fit around the candidate
    j = np.arange(-h, h + 1)
    u = j / h
    vmat = np.vander(u, 5, increasing=True)
    pinv = np.linalg.pinv(vmat)  # (5, 2h+1)
    cov_unit = np.linalg.inv(vmat.T @ vmat)
    kk = np.clip(k, h, n - 1 - h)
    rows = np.arange(b)[:, None]
    cols = kk[:, None] + j[None, :]
    yw = yc[rows, cols]
    ew = e[rows, cols]
    coef = yw @ pinv.T  # (B, 5)
    ug = np.linspace(-1.0, 1.0, 801)
    vals = coef @ np.vander(ug, 5, increasing=True).T
    a = np.argmax(vals, axis=1)
    ip = vals[np.arange(b), a]
    ustar = ug[a]
    reason[(reason == 0) & ((a == 0) | (a == ug.size - 1))] = 4
    reason[(reason == 0) & ~(ip > options.min_snr * noise)] = 2
    e0 = ew.mean(1)
    e1 = (ew * u).sum(1) / (u * u).sum()
    ep = e0 + e1 * ustar
    vstar = np.vander(ustar, 5, increasing=True)
    var_fit = np.einsum("bi,ij,bj->b", vstar, cov_unit, vstar)
    # the background extrapolated to the peak carries its own error (often the larger part)
    kpk = np.clip(np.rint(kk + ustar * h).astype(np.int64), 0, n - 1)
    if options.background == "linear":
        xpk = x[np.arange(b), kpk]
        sxx_safe = np.where(sxx > 0, sxx, np.inf)
        var_bg = 1.0 / safe0 + (xpk - xm) ** 2 / sxx_safe
    elif options.background == "capacitive":
        var_bg = 1.0 / safe0
    else:
        var_bg = np.zeros(b)
    sigma = noise * np.sqrt(var_fit + var_bg)
    found = reason == 0
    # background at the peak potential (interpolated on the sample grid)
    bg = base[np.arange(b), kpk]
    nan = np.full(b, np.nan)
    return {
        "current_A": np.where(found, direction * ip, nan),
        "potential_V": np.where(found, ep, nan),
        "sigma_A": np.where(found, sigma, nan),
        "noise_A": noise,
        "background_A": np.where(found, direction * bg, nan),
        "found": found,
        "reason": reason,
    }
