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
   ``"previous-sweep"`` instead extrapolates the sweep before (the forward sweep of a
   return peak) in time: its decaying tail (the later half of the samples after its own
   peak, up to the vertex) is fitted with the Cottrell form i = a + b (t − t₀)^-½, t₀ the
   time it passed its half-wave potential (midway between its half-peak and its peak),
   and the fit continued under this sweep (the classical baseline of a reverse peak:
   Nicholson 1966). The residual scatter of that fit is σ.
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

__all__ = ["BACKGROUNDS", "REASONS", "PeakOptions", "previous_sweep_background", "sweep_peaks"]

#: the background models of :class:`PeakOptions`
BACKGROUNDS: tuple[str, ...] = ("none", "linear", "capacitive", "previous-sweep")

#: reason codes of :func:`sweep_peaks` (0 = a peak was found)
REASONS: dict[int, str] = {
    0: "peak found",
    1: "no peak: the current still rises at the edge of the search window",
    2: "no peak: the maximum is not above the noise (min_snr)",
    3: "no peak: too few samples in the baseline or search window",
    4: "no peak: the quartic fit has its maximum at the edge of the fit window",
    5: "no peak: no previous sweep with a decaying tail to extrapolate the background from "
       "(kinetics.background = previous-sweep)",
    6: "no peak: the cycle has no such sweep (kinetics.cycle / kinetics.sweep)",
}


@dataclass(frozen=True)
class PeakOptions:
    """How peaks are found (see the module docstring); potentials in V."""

    background: str = "linear"  # "none" | "linear" | "capacitive" | "previous-sweep"
    baseline_window_V: tuple[float, float] | None = None
    baseline_fraction: float = 0.2
    fit_half_width_V: float = 0.03
    min_snr: float = 5.0

    def __post_init__(self) -> None:
        if self.background not in BACKGROUNDS:
            raise ValueError(f"kinetics.background: expected one of {list(BACKGROUNDS)}, "
                             f"found {self.background!r}")
        if not 0 < self.baseline_fraction < 1:
            raise ValueError(f"kinetics.baseline_fraction: expected in (0, 1), found "
                             f"{self.baseline_fraction}")
        if not self.fit_half_width_V > 0:
            raise ValueError(f"kinetics.peak_fit_half_width_V: expected > 0, found "
                             f"{self.fit_half_width_V}")


def _in_window(e: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    lo, hi = min(window), max(window)
    return (e >= lo) & (e <= hi)


def previous_sweep_background(
    previous_time_s: np.ndarray, previous_current_A: np.ndarray, previous_direction: int,
    time_s: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The previous sweep's decaying current extrapolated under a sweep (module docstring).

    ``previous_time_s``, ``previous_current_A``: ``(B, m)`` (or ``(m,)`` times) of the
    sweep before, in direction ``previous_direction`` (+1/−1); ``time_s``: ``(B, n)`` or
    ``(n,)`` of the sweep whose background is wanted. Returns ``(background_A (B, n),
    noise_A (B,), ok (B,), n_tail (B,))``: the signed background current, the residual σ
    of the Cottrell fit on the tail, whether the tail had enough (≥ 4) samples after a
    peak, and how many it had.
    """
    ip = np.atleast_2d(np.asarray(previous_current_A, dtype=float))
    tp = np.broadcast_to(np.atleast_2d(np.asarray(previous_time_s, dtype=float)), ip.shape)
    t = np.atleast_2d(np.asarray(time_s, dtype=float))
    b, m = ip.shape
    t = np.broadcast_to(t, (b, t.shape[-1]))
    y = previous_direction * ip
    rows = np.arange(b)
    k_pk = np.argmax(np.where(np.isfinite(y), y, -np.inf), axis=1)
    # half-peak on the rising side: the last sample before the peak below half its height
    below = (y < 0.5 * y[rows, k_pk][:, None]) & (np.arange(m)[None, :] < k_pk[:, None])
    k_half = np.where(below.any(1), m - 1 - np.argmax(below[:, ::-1], axis=1), 0)
    t0 = 0.5 * (tp[rows, k_half] + tp[rows, k_pk])
    t_end = tp[:, -1]
    tail = (tp >= (0.5 * (tp[rows, k_pk] + t_end))[:, None]) & (tp > t0[:, None]) \
        & np.isfinite(ip)
    ok = tail.sum(1) >= 4
    with np.errstate(invalid="ignore", divide="ignore"):
        u = np.where(tail, 1.0 / np.sqrt(np.where(tail, tp - t0[:, None], 1.0)), 0.0)
        w = tail.astype(float)
        nw = np.maximum(w.sum(1), 1)
        um = (w * u).sum(1) / nw
        im = (w * np.where(tail, ip, 0.0)).sum(1) / nw
        du = np.where(tail, u - um[:, None], 0.0)
        di = np.where(tail, ip - im[:, None], 0.0)
        suu = (du * du).sum(1)
        slope = np.where(suu > 0, (du * di).sum(1) / np.where(suu > 0, suu, 1), 0.0)
        resid = np.where(tail, di - slope[:, None] * du, 0.0)
        noise = np.sqrt((resid ** 2).sum(1) / np.maximum(w.sum(1) - 2, 1))
        dt = t - t0[:, None]
        base = im[:, None] + slope[:, None] * (np.where(dt > 0, dt, np.nan) ** -0.5
                                               - um[:, None])
    ok &= np.isfinite(base).all(1)
    return (np.where(ok[:, None], base, np.nan), np.where(ok, noise, np.nan), ok,
            tail.sum(1).astype(float))


def _window_background(e: np.ndarray, y: np.ndarray, options: PeakOptions, skip: int
                       ) -> tuple[np.ndarray, ...]:
    """Background of ``y`` from the baseline window: (base (B, n), noise (B,), mask of the
    window (B, n), its sample count, mean offset x̄ and Sxx (for the linear error))."""
    n = y.shape[1]
    idx = np.arange(n)
    if options.baseline_window_V is not None:
        m_bl = _in_window(e, options.baseline_window_V)
    else:
        span = np.abs(e[:, -1:] - e[:, :1])
        span = np.where(span > 0, span, np.abs(e.max(1, keepdims=True) - e.min(1, keepdims=True)))
        m_bl = (np.abs(e - e[:, :1]) <= options.baseline_fraction * span) & (idx >= skip)
    m_bl = m_bl & np.isfinite(y)
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
    return base, noise, m_bl, s0, xm, sxx


def sweep_peaks(
    potential_V: np.ndarray,
    current_A: np.ndarray,
    direction: int,
    options: PeakOptions = PeakOptions(),
    window_V: tuple[float, float] | None = None,
    *,
    time_s: np.ndarray | None = None,
    previous: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """Peak of each sweep in a batch ``(B, n)``; returns arrays of shape ``(B,)``:

    ``current_A`` (signed, background-subtracted; NaN when none), ``potential_V``,
    ``sigma_A`` (standard error of the peak current), ``noise_A`` (σ of the current in
    the baseline window), ``background_A`` (background at the peak potential, signed),
    ``found`` (bool), ``reason`` (int, :data:`REASONS`).

    With ``options.background == "previous-sweep"``: ``time_s`` (``(n,)`` or ``(B, n)``, s)
    of this sweep and ``previous`` = (time_s, current_A) of the sweep before it (in the
    other direction); without a previous sweep every row gets reason 5.
    """
    e = np.atleast_2d(np.asarray(potential_V, dtype=float))
    y = direction * np.atleast_2d(np.asarray(current_A, dtype=float))
    if e.shape != y.shape:
        e = np.broadcast_to(e, y.shape)
    b, n = y.shape
    idx = np.arange(n)
    skip = max(1, round(0.02 * n))
    reason = np.zeros(b, dtype=np.int64)
    if options.background == "previous-sweep":
        ok = np.zeros(b, dtype=bool)
        base, noise, s0 = np.zeros_like(y), np.full(b, np.nan), np.zeros(b)
        if previous is not None and time_s is not None:
            base_i, noise, ok, s0 = previous_sweep_background(previous[0], previous[1],
                                                              -direction, time_s)
            base = direction * np.where(ok[:, None], base_i, 0.0)
        reason[~ok] = 5
        xm = sxx = np.zeros(b)
        x = e - e[:, :1]
    else:
        base, noise, m_bl, s0, xm, sxx = _window_background(e, y, options, skip)
        x = e - e[:, :1]
        reason[s0 < 3] = 3
    safe0 = np.maximum(s0, 1)
    yc = y - base

    # 2. search window and smoothed maximum
    if window_V is not None:
        m_w = _in_window(e, window_V)
    elif options.background == "previous-sweep":
        m_w = np.broadcast_to(idx >= skip, y.shape)
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
    reason[(reason == 0) & ~(ip > options.min_snr * np.nan_to_num(noise))] = 2
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
    elif options.background in ("capacitive", "previous-sweep"):
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
