"""Heterogeneity metrics of depth-resolved (confocal) SOC: reaction fronts, spread, relaxation.

Inputs (every function): ``time_s`` (pass, depth) — each point's own exposure midpoint (s,
potentiostat clock; NaN where a point is missing); ``soc`` (pass, depth) — local state of
charge (dimensionless, 0 = discharged, 1 = charged; NaN where missing or failed);
``depth_um`` (depth,) — distance from the depth origin (µm); ``origin`` — the face at depth
0, ``"separator"`` or ``"current_collector"`` (the other face is at the far end). Protocol
segments are :class:`operando.echem.segments.SegmentRun` (kind, start_s, end_s in s; from
the record's labels by :func:`operando.echem.segments.segment_runs`, or written by hand);
a *reaction* is a charge or discharge segment.

Definitions (the simulator's truth, :func:`operando.simulate.confocal.reaction_truth`,
uses the same)
------------------------------------------------------------------------------------------
Per reaction [T0, T1] and depth z:

* ΔSOC(z) = SOC(z, T1) − SOC(z, T0);
* t_q(z) = first time in [T0, T1] at which SOC crosses SOC(z, T0) + q·ΔSOC(z), for
  q = 0.1, 0.5, 0.9; t½ = t_0.5 is the front arrival time;
* local insertion rate r(z) = 0.8 |ΔSOC| / (t90 − t10) · 3600  [h⁻¹];
* relative rate r(z) / r_global, r_global (h⁻¹) given (the C-rate of the segment) or
  |Δ⟨SOC⟩_z| / (T1 − T0) · 3600 from the depth-mean SOC;
* depths with |ΔSOC| < ``min_change`` get NaN times and rate, with a reason.

Which face reacts first: the sign of the weighted straight-line fit t½ = a + b·z
(weights 1/σ(t½)², covariance scaled by max(1, χ²_ν)); b > 0 → the face at depth 0
(``origin``) arrives first, b < 0 → the far face; "undetermined" if |b| < 2 σ_b or fewer
than three depths have an arrival.

Through-depth spread per pass: population standard deviation (ddof = 0), max − min and mean
of SOC over depth (NaN ignored), and the pass's mean point time.

Relaxation in a rest segment [R0, R1], per depth: SOC(t) = s∞ + A·exp(−(t − R0)/τ);
plus one τ shared by all depths with a significant amplitude (per-depth s∞ and A).

Estimators
----------
Points are sparse (one per pass per depth) and noisy, so crossing times are **not**
interpolated between samples. Each depth's points inside the reaction are fitted (scipy
``curve_fit``, trust-region with bounds; starts ν = 1, e^−1.5, e^1.5, best kept) with a
generalised (Richards) logistic in time::

    s(t) = lo + (hi − lo) · y(u),   y(u) = (1 + ν e^(−u))^(−1/ν),   u = (t − t0)/k,

k > 0, ln ν ∈ [−3, 3] (ν = 1 is the plain logistic), asymptotes bounded to the physical
SOC range with a margin, [min(0, min s) − 0.1, max(1, max s) + 0.1]. Why this model: a
front that is a logistic in depth crossing at near-constant speed makes each depth a
logistic in time; where the front enters (first depth) or stops (last depth) its speed
changes and the curve is skewed, which ν absorbs (the plain logistic biased r(z) there by
4–28 %). The fit uses every point of the transition, where interpolating a crossing uses
two. Two anchors pin the segment ends: SOC is continuous, so SOC(T0) and SOC(T1) are
extrapolated linearly from the two nearest points of the adjacent segments (within 2.5
point spacings; weight from the extrapolation's noise) and fitted as points at T0 and T1.
Without them a depth that reacts right at the segment start (its first in-segment point
already half-way) has no handle on SOC(T0) and t½ errs by more than a pass. The crossing
times have a closed form that uses the fitted curve's *own* values at the segment ends,
so a transition cut by the segment end (partial change) is read as fractions of that
partial change::

    ΔSOC = s(T1) − s(T0),   y_q = y(u0) + q (y(u1) − y(u0)),
    t_q = t0 + k (ln ν − ln(expm1(−ν ln y_q))),   u0,1 = (T0,1 − t0)/k

(lo and hi cancel). Standard errors of ΔSOC, t_q and r come from the fit covariance by
first-order propagation (numerical Jacobian), weighted by ``soc_stderr`` if given, scaled by
the residual variance pooled over the segment's depth fits (one noise level for all
depths: a 5-parameter fit of ~6 points has too few degrees of freedom for its own χ²).
With ``soc_stderr`` the covariance is scaled by max(1, pooled χ²_ν): the given stderr is a
floor, scatter beyond it still counts. Points without a usable stderr (NaN, ≤ 0) get the
median of the others; if none has one, the residuals are used. A
depth whose transition is faster than the sampling (k at its lower bound, spacing / 20)
keeps t½ but gets NaN t10/t90/rate with a reason.

Relaxation: (1) one-τ fit (``least_squares``, parameters ln τ and per depth s∞, A) over
every depth with ≥ 4 points in the rest; depths with |A| < ``min_amplitude`` or
|A| ≤ 2σ_A are dropped; (2) the shared fit is redone over the others → the shared τ
(NaN if σ_τ/τ > ``max_shared_tau_rel_stderr``); (3) each kept depth's own fit (``curve_fit``,
τ ∈ [spacing/10, 20·(R1 − R0)]) is reported where τ is off its bounds and the depth's
data can determine τ to ``max_tau_rel_stderr`` — judged from the Fisher information at
the shared τ and the depth's shared-fit A, not from the own fit's stderr (gating on that
keeps preferentially the fits whose noise made τ short: a bias). Covariances as for the
fronts (absolute, or pooled reduced χ²). With ~10 points per depth and SOC noise 0.01,
σ_τ/τ ≈ 0.6·(0.1/|A|) per depth (Cramér–Rao), so per-depth τ needs |A| ≳ 0.3; the
shared τ is the robust number. The shared τ is NaN when σ_τ/τ > 0.3: weaker relaxations
(e.g. one depth with |A| = 0.05) give exponential fits whose errors are skewed to short τ
with a stderr several times too small.

Interpolation onto a common time grid (:func:`interpolate_to_grid`) is only done on
request and is linear in time on each depth's own point times.

Pure numpy / scipy / xarray; no I/O.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import xarray as xr
from scipy.optimize import OptimizeWarning, curve_fit, least_squares

from operando.cf import cf_attrs
from operando.echem.segments import SegmentRun

__all__ = [
    "FACES",
    "FrontFit",
    "FrontOrder",
    "PassSpread",
    "RelaxationFit",
    "depth_spread",
    "first_face",
    "front_metrics",
    "heterogeneity_dataset",
    "interpolate_to_grid",
    "relaxation_metrics",
]

FACES: tuple[str, str] = ("separator", "current_collector")
REACTION_KINDS = ("charge", "discharge")
REST_KIND = "rest"
OK = "ok"
#: Fractions of the local change that define t10, t½, t90.
FRACTIONS = (0.1, 0.5, 0.9)
_SOC_MARGIN = 0.1  # asymptotes of the sigmoid may exceed [0, 1] (or the data) by this much
_MIN_FRONT_POINTS = 5
_MIN_RELAX_POINTS = 4
_AMP_SIGNIFICANCE = 2.0  # a depth joins the shared-τ fit when |A| > this many σ_A


# ------------------------------------------------------------------------------ helpers


def _richards_unit(u: np.ndarray, ln_nu: float) -> np.ndarray:
    """(1 + ν e^(−u))^(−1/ν), ν = e^ln_nu, in log space (no overflow)."""
    nu = np.exp(ln_nu)
    return np.exp(-np.logaddexp(0.0, ln_nu - np.asarray(u, dtype=float)) / nu)


def _richards(t: np.ndarray, lo: float, hi: float, t0: float, k: float, ln_nu: float
              ) -> np.ndarray:
    """Generalised logistic s(t) = lo + (hi − lo)·(1 + ν e^(−(t − t0)/k))^(−1/ν)."""
    return lo + (hi - lo) * _richards_unit((np.asarray(t, dtype=float) - t0) / k, ln_nu)


def _crossings(p: np.ndarray, seg0: float, seg1: float) -> np.ndarray:
    """t10, t½, t90 (s) of the curve's own change over [seg0, seg1] (closed form)."""
    t0, k, ln_nu = p[2], p[3], p[4]
    nu = np.exp(ln_nu)
    y0 = _richards_unit((seg0 - t0) / k, ln_nu)
    y1 = _richards_unit((seg1 - t0) / k, ln_nu)
    y = np.clip(y0 + np.asarray(FRACTIONS) * (y1 - y0), 1e-300, 1.0 - 1e-16)
    # y^(−ν) − 1 = ν e^(−u)  →  u = ln ν − ln(expm1(−ν ln y))
    return t0 + k * (ln_nu - np.log(np.expm1(-nu * np.log(y))))


def _propagate(fn: Callable[[np.ndarray], np.ndarray], p: np.ndarray, cov: np.ndarray
               ) -> np.ndarray:
    """First-order stderr of ``fn(p)`` from the parameter covariance (numerical Jacobian)."""
    f0 = np.asarray(fn(p), dtype=float)
    jac = np.empty((f0.size, p.size))
    for j in range(p.size):
        h = 1e-6 * max(abs(p[j]), 1.0) if p[j] != 0 else 1e-6
        if np.isfinite(cov[j, j]) and cov[j, j] > 0:
            h = min(h, 1e-3 * np.sqrt(cov[j, j]))
        dp = np.zeros_like(p)
        dp[j] = h
        jac[:, j] = (np.asarray(fn(p + dp)) - np.asarray(fn(p - dp))) / (2 * h)
    var = np.einsum("ij,jk,ik->i", jac, cov, jac)
    return np.sqrt(np.clip(var, 0.0, None))


def _points(time_s: np.ndarray, soc: np.ndarray, sig: np.ndarray | None, j: int,
            t0: float, t1: float) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    t, s = time_s[:, j], soc[:, j]
    ok = np.isfinite(t) & np.isfinite(s) & (t >= t0) & (t <= t1)
    if sig is not None:
        ok &= np.isfinite(sig[:, j]) & (sig[:, j] > 0)
    order = np.argsort(t[ok])
    return t[ok][order], s[ok][order], None if sig is None else sig[:, j][ok][order]


def _check_inputs(time_s: np.ndarray, soc: np.ndarray, soc_stderr: np.ndarray | None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    t = np.asarray(time_s, dtype=float)
    s = np.asarray(soc, dtype=float)
    if t.ndim != 2 or t.shape != s.shape:
        raise ValueError("time_s and soc must both be (pass, depth); got shapes "
                         f"{t.shape} and {s.shape}")
    e = None
    if soc_stderr is not None:
        e = np.asarray(soc_stderr, dtype=float)
        if e.shape != s.shape:
            raise ValueError(f"soc_stderr must be (pass, depth) like soc {s.shape}, got "
                             f"{e.shape}")
        good = np.isfinite(e) & (e > 0)
        if not good.any():
            return t, s, None  # no usable stderr: noise from the fit residuals
        # a point without a usable stderr keeps its weight at the typical one
        e = np.where(good, e, float(np.median(e[good])))
    return t, s, e


def _check_origin(origin: str) -> None:
    if origin not in FACES:
        raise ValueError(f"origin must be one of {FACES}, got {origin!r}")


# ------------------------------------------------------------------------------ fronts


@dataclass(frozen=True)
class FrontFit:
    """Front metrics of one reaction, arrays (depth,): times in s (potentiostat clock),
    SOC dimensionless, rates in h⁻¹; ``reason`` "ok" or why the depth's times are NaN."""

    segment: SegmentRun
    soc_start: np.ndarray
    soc_end: np.ndarray
    change: np.ndarray
    change_stderr: np.ndarray
    t10_s: np.ndarray
    t50_s: np.ndarray
    t90_s: np.ndarray
    t10_stderr_s: np.ndarray
    t50_stderr_s: np.ndarray
    t90_stderr_s: np.ndarray
    rate_per_h: np.ndarray
    rate_stderr_per_h: np.ndarray
    n_points: np.ndarray
    reason: np.ndarray


def _boundary_anchor(t: np.ndarray, s: np.ndarray, e: np.ndarray | None, at: float,
                     side: int, window_s: float) -> tuple[float, float] | None:
    """SOC at a segment boundary ``at`` by linear extrapolation of the two points of the
    adjacent segment nearest to it (``side`` −1: before, +1: after) within ``window_s``.

    Returns (value, sigma): sigma is the extrapolation's noise, sqrt((1+r)² σ1² + r² σ2²),
    r = |at − t1| / |t1 − t2| (σ = 1 for both points when ``e`` is None: a relative weight).
    """
    if side < 0:
        idx = np.flatnonzero((t < at) & (t >= at - window_s))[-2:][::-1]
    else:
        idx = np.flatnonzero((t > at) & (t <= at + window_s))[:2]
    if idx.size < 2 or t[idx[0]] == t[idx[1]]:
        return None
    (t1, t2), (s1, s2) = t[idx], s[idx]
    r = abs(at - t1) / abs(t1 - t2)
    e1, e2 = (1.0, 1.0) if e is None else (e[idx[0]], e[idx[1]])
    return float(s1 + (s1 - s2) * r), float(np.hypot((1 + r) * e1, r * e2))


_START_LN_NU = (0.0, -1.5, 1.5)  # logistic first, then skewed either way
_LN_NU_BOUND = 3.0


@dataclass(frozen=True)
class _CurveFit:
    """One depth's least-squares fit: parameters, unscaled covariance (JᵀWJ)⁻¹ with the
    given (absolute or relative) sigmas, weighted residual sum of squares, dof."""

    popt: np.ndarray
    cov_unscaled: np.ndarray
    wrss: float
    dof: int


def _fit_sigmoid(t: np.ndarray, s: np.ndarray, sig: np.ndarray, seg: SegmentRun,
                 spacing: float) -> _CurveFit | str:
    """Generalised-logistic fit of one depth (points + anchors); a str says why it failed."""
    T0, T1 = seg.start_s, seg.end_s
    a_lo = min(0.0, float(s.min())) - _SOC_MARGIN
    a_hi = max(1.0, float(s.max())) + _SOC_MARGIN
    k_min, k_max = max(spacing / 20.0, 1e-9), max(seg.duration_s, spacing)
    order = np.argsort(t)
    so = s[order]
    n5 = max(1, so.size // 5)
    lo0, hi0 = float(np.mean(so[:n5])), float(np.mean(so[-n5:]))
    above = (so - 0.5 * (lo0 + hi0)) * np.sign(hi0 - lo0 or 1.0) > 0
    tc = float(t[order][np.argmax(above)]) if above.any() else 0.5 * (T0 + T1)
    lower = [a_lo, a_lo, T0 - seg.duration_s, k_min, -_LN_NU_BOUND]
    upper = [a_hi, a_hi, T1 + seg.duration_s, k_max, _LN_NU_BOUND]
    best: _CurveFit | None = None
    err = ""
    for ln_nu0 in _START_LN_NU:
        p0 = [np.clip(lo0, a_lo, a_hi), np.clip(hi0, a_lo, a_hi),
              float(np.clip(tc, lower[2], upper[2])),
              float(np.clip(seg.duration_s / 10.0, k_min, k_max)), ln_nu0]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", OptimizeWarning)
                popt, pcov = curve_fit(
                    _richards, t, s, p0=p0, bounds=(lower, upper), sigma=sig,
                    absolute_sigma=True, method="trf",
                    x_scale=[0.1, 0.1, spacing, spacing, 1.0], max_nfev=3000)
        except (RuntimeError, ValueError) as exc:
            err = str(exc)
            continue
        wrss = float(np.sum(((_richards(t, *popt) - s) / sig) ** 2))
        if best is None or wrss < best.wrss:
            best = _CurveFit(popt, pcov, wrss, t.size - popt.size)
    return best if best is not None else f"sigmoid fit failed: {err}"


def _front_outputs(fit: _CurveFit | None, scale: float, seg: SegmentRun, spacing: float,
                   min_change: float) -> dict[str, float | str]:
    """Change, crossing times and rate (± stderr) read off one depth's fit."""
    nan = float("nan")
    out: dict[str, float | str] = dict(
        change_stderr=nan, t10=nan, t50=nan, t90=nan, t10_se=nan, t50_se=nan, t90_se=nan,
        rate=nan, rate_se=nan, reason=OK)
    if fit is None:
        return out
    T0, T1 = seg.start_s, seg.end_s
    popt = fit.popt
    cov = fit.cov_unscaled * scale
    finite_cov = bool(np.all(np.isfinite(cov)))
    bounds = np.array([T0, T1])

    def change_of(p: np.ndarray) -> np.ndarray:
        return np.diff(_richards(bounds, *p))

    def times(p: np.ndarray) -> np.ndarray:
        return _crossings(p, T0, T1)

    def rate(p: np.ndarray) -> np.ndarray:
        tq = times(p)
        return 0.8 * np.abs(change_of(p)) / (tq[2] - tq[0]) * 3600.0

    change = float(change_of(popt)[0])
    if finite_cov:
        out["change_stderr"] = float(_propagate(change_of, popt, cov)[0])
    if abs(change) < min_change:
        out["reason"] = f"|change| {abs(change):.3f} < min_change {min_change:g}"
        return out
    tq = times(popt)
    tq_se = _propagate(times, popt, cov) if finite_cov else np.full(3, nan)
    out.update(t10=float(tq[0]), t50=float(tq[1]), t90=float(tq[2]),
               t10_se=float(tq_se[0]), t50_se=float(tq_se[1]), t90_se=float(tq_se[2]))
    if popt[3] <= max(spacing / 20.0, 1e-9) * 1.001:
        out["reason"] = "transition faster than the sampling: t10/t90 and rate undetermined"
        out.update(t10=nan, t90=nan, t10_se=nan, t90_se=nan)
        return out
    out["rate"] = float(rate(popt)[0])
    out["rate_se"] = float(_propagate(rate, popt, cov)[0]) if finite_cov else nan
    return out


def _pooled_scale(fits: Sequence[_CurveFit | None], absolute: bool) -> float:
    """Covariance scale: the reduced χ² pooled over the fits; with given (absolute) sigmas
    max(1, pooled χ²_ν), so scatter beyond the stated stderr still counts."""
    ok = [f for f in fits if f is not None and f.dof > 0]
    dof = sum(f.dof for f in ok)
    pooled = sum(f.wrss for f in ok) / dof if dof else float("nan")
    if absolute:
        return max(1.0, pooled) if np.isfinite(pooled) else 1.0
    return pooled


def front_metrics(
    time_s: np.ndarray, soc: np.ndarray, segment: SegmentRun, *,
    soc_stderr: np.ndarray | None = None, min_change: float = 0.2,
    anchor_window_passes: float = 2.5,
) -> FrontFit:
    """Front arrival (t10, t½, t90), local change and local rate per depth for one reaction.

    ``time_s``, ``soc`` (and ``soc_stderr``) (pass, depth). Per depth, the points whose time
    lies in [segment.start_s, segment.end_s] are fitted with the generalised logistic of the
    module docstring, together with the SOC at each segment boundary extrapolated linearly
    from the two nearest points of the adjacent segment (within ``anchor_window_passes`` ×
    the depth's median point spacing; weighted by the extrapolation's noise; skipped where
    there are not two such points). ΔSOC, t_q and r(z) = 0.8|ΔSOC|/(t90 − t10)·3600 (h⁻¹)
    are read off the fit; ``soc_start``/``soc_end`` are its values at the segment ends
    (the first and last in-segment points when there is no fit). Stderr: from the
    residual variance pooled over the depths' fits (noise assumed common to the depths);
    with ``soc_stderr`` that of the given stderr, inflated by max(1, pooled χ²_ν). NaN
    with a ``reason`` where the depth has < 5 points in the segment, the fit fails,
    |ΔSOC| < ``min_change`` or the transition is faster than the sampling (then t½ is
    kept, t10/t90/rate NaN).
    """
    t, s, e = _check_inputs(time_s, soc, soc_stderr)
    if segment.end_s <= segment.start_s:
        raise ValueError(f"segment {segment} has no duration")
    nd = s.shape[1]
    fits: list[_CurveFit | None] = []
    reasons: list[str] = []
    spacings, counts = np.full(nd, np.nan), np.zeros(nd, dtype=int)
    start, end = np.full(nd, np.nan), np.full(nd, np.nan)
    for j in range(nd):
        tj, sj, ej = _points(t, s, e, j, -np.inf, np.inf)
        inside = (tj >= segment.start_s) & (tj <= segment.end_s)
        n_in = int(inside.sum())
        counts[j] = n_in
        if n_in:
            start[j], end[j] = sj[inside][0], sj[inside][-1]
        if n_in < _MIN_FRONT_POINTS:
            fits.append(None)
            reasons.append(f"{n_in} point(s) in the segment; need {_MIN_FRONT_POINTS}")
            continue
        spacings[j] = spacing = float(np.median(np.diff(tj)))
        tf, sf = tj[inside], sj[inside]
        ef = np.ones(n_in) if ej is None else ej[inside]
        if anchor_window_passes > 0:
            for at, side in ((segment.start_s, -1), (segment.end_s, 1)):
                got = _boundary_anchor(tj, sj, ej, at, side, anchor_window_passes * spacing)
                if got is not None:
                    tf, sf, ef = np.r_[tf, at], np.r_[sf, got[0]], np.r_[ef, got[1]]
        fit = _fit_sigmoid(tf, sf, ef, segment, spacing)
        fits.append(fit if isinstance(fit, _CurveFit) else None)
        reasons.append(OK if isinstance(fit, _CurveFit) else fit)
        if isinstance(fit, _CurveFit):
            start[j], end[j] = _richards(np.array([segment.start_s, segment.end_s]), *fit.popt)
    scale = _pooled_scale(fits, e is not None)
    rows = []
    for j in range(nd):
        row = _front_outputs(fits[j], scale, segment, float(spacings[j]), min_change)
        if reasons[j] != OK:
            row["reason"] = reasons[j]
        rows.append(row)

    def col(key: str) -> np.ndarray:
        return np.array([r[key] for r in rows], dtype=float)

    return FrontFit(
        segment=segment, soc_start=start, soc_end=end, change=end - start,
        change_stderr=col("change_stderr"),
        t10_s=col("t10"), t50_s=col("t50"), t90_s=col("t90"),
        t10_stderr_s=col("t10_se"), t50_stderr_s=col("t50_se"), t90_stderr_s=col("t90_se"),
        rate_per_h=col("rate"), rate_stderr_per_h=col("rate_se"), n_points=counts,
        reason=np.array([str(r["reason"]) for r in rows], dtype=str),
    )


@dataclass(frozen=True)
class FrontOrder:
    """Which face reacts first: ``face`` "separator" | "current_collector" | "undetermined";
    ``slope_s_per_um`` ± ``slope_stderr_s_per_um`` of t½ against depth; ``note`` says why."""

    face: str
    slope_s_per_um: float
    slope_stderr_s_per_um: float
    note: str


def first_face(arrival_s: np.ndarray, depth_um: np.ndarray, origin: str,
               arrival_stderr_s: np.ndarray | None = None) -> FrontOrder:
    """The face reacting first, from a weighted straight line t½ = a + b·z (see module doc).

    ``arrival_s`` (depth,) t½ in s (NaN where undefined), ``depth_um`` (depth,) µm from
    ``origin``. b > 0 → ``origin`` first; b < 0 → the other face; "undetermined" when
    |b| < 2σ_b or fewer than 3 arrivals. σ_b from the weighted covariance scaled by
    max(1, χ²_ν) (so scatter beyond the stated stderr counts); unweighted with the residual
    scatter when no stderr is given or one of the arrivals lacks it.
    """
    _check_origin(origin)
    y = np.asarray(arrival_s, dtype=float)
    z = np.asarray(depth_um, dtype=float)
    w = np.ones_like(y)
    weighted = False
    if arrival_stderr_s is not None:
        se = np.asarray(arrival_stderr_s, dtype=float)
        good = np.isfinite(se) & (se > 0)
        # weights only when every arrival has a usable stderr; else an unweighted fit
        weighted = bool(np.all(good[np.isfinite(y)]))
        if weighted:
            w = 1.0 / np.where(good, se, 1.0) ** 2
    ok = np.isfinite(y) & np.isfinite(z)
    n = int(ok.sum())
    if n < 3 or np.ptp(z[ok]) == 0:
        return FrontOrder("undetermined", float("nan"), float("nan"),
                          f"{n} depth(s) with a front arrival; need 3 at distinct depths")
    y, z, w = y[ok], z[ok], w[ok]
    X = np.stack([np.ones_like(z), z], axis=1)
    A = X.T @ (w[:, None] * X)
    cov = np.linalg.inv(A)
    beta = cov @ (X.T @ (w * y))
    resid = y - X @ beta
    chi2nu = float(np.sum(w * resid**2) / (n - 2))
    scale = max(1.0, chi2nu) if weighted else chi2nu
    b, sb = float(beta[1]), float(np.sqrt(cov[1, 1] * scale))
    other = FACES[1] if origin == FACES[0] else FACES[0]
    note = f"slope {b:.4g} ± {sb:.2g} s/µm over {n} depths (origin {origin})"
    if not np.isfinite(sb) or abs(b) < 2.0 * sb:
        return FrontOrder("undetermined", b, sb, note + ": not significant at 2σ")
    return FrontOrder(origin if b > 0 else other, b, sb, note)


# ------------------------------------------------------------------------------ spread


@dataclass(frozen=True)
class PassSpread:
    """Per pass (pass,): SOC std over depth (ddof 0), max − min, mean, number of valid depths,
    mean point time (s)."""

    std: np.ndarray
    range: np.ndarray
    mean: np.ndarray
    count: np.ndarray
    time_s: np.ndarray


def depth_spread(time_s: np.ndarray, soc: np.ndarray) -> PassSpread:
    """Through-depth spread of SOC per pass, ignoring NaN points.

    σ_z = sqrt(mean_z (SOC − ⟨SOC⟩_z)²) (population std), range = max_z − min_z,
    ⟨SOC⟩_z, the number of valid depths, and the pass time = mean of the valid points'
    times (s). A pass without valid points gives NaN (count 0).
    """
    t, s, _ = _check_inputs(time_s, soc, None)
    ok = np.isfinite(s) & np.isfinite(t)
    n = ok.sum(axis=1)
    sv = np.where(ok, s, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = sv.sum(axis=1) / n
        std = np.sqrt(np.where(ok, (s - mean[:, None]) ** 2, 0.0).sum(axis=1) / n)
        tmean = np.where(ok, t, 0.0).sum(axis=1) / n
    smax = np.where(ok, s, -np.inf).max(axis=1, initial=-np.inf)
    smin = np.where(ok, s, np.inf).min(axis=1, initial=np.inf)
    empty = n == 0
    rng = np.where(empty, np.nan, smax - smin)
    return PassSpread(std=np.where(empty, np.nan, std), range=rng,
                      mean=np.where(empty, np.nan, mean), count=n.astype(int),
                      time_s=np.where(empty, np.nan, tmean))


# ------------------------------------------------------------------------------ relaxation


@dataclass(frozen=True)
class RelaxationFit:
    """Relaxation in one rest, arrays (depth,): τ (s), A and s∞ (dimensionless) ± stderr of
    the per-depth fits, ``reason`` "ok" or why NaN; shared τ (s) ± stderr over the depths
    with |A| ≥ min_amplitude, with each such depth's A and s∞ in that fit."""

    segment: SegmentRun
    tau_s: np.ndarray
    tau_stderr_s: np.ndarray
    amplitude: np.ndarray
    amplitude_stderr: np.ndarray
    level: np.ndarray
    level_stderr: np.ndarray
    n_points: np.ndarray
    reason: np.ndarray
    tau_shared_s: float
    tau_shared_stderr_s: float
    shared_amplitude: np.ndarray
    shared_level: np.ndarray
    shared_note: str


def _exp_model(t: np.ndarray, s_inf: float, amp: float, tau: float, t_rest: float
               ) -> np.ndarray:
    return s_inf + amp * np.exp(-(t - t_rest) / tau)


def _tau_bounds(t: np.ndarray, seg: SegmentRun) -> tuple[float, float]:
    spacing = float(np.median(np.diff(t))) if t.size > 1 else seg.duration_s
    return max(spacing / 10.0, 1e-9), 20.0 * seg.duration_s


def _fit_relax_depth(t: np.ndarray, s: np.ndarray, sig: np.ndarray, seg: SegmentRun
                     ) -> _CurveFit | str:
    """Exponential fit (s∞, A, τ) of one depth's rest points; a str says why it failed."""
    R0, dur = seg.start_s, seg.duration_s
    tau_lo, tau_hi = _tau_bounds(t, seg)
    n5 = max(1, t.size // 5)
    s_last = float(np.mean(s[-n5:]))
    amp0 = float(s[0] - s_last)
    p0 = [s_last, amp0 if amp0 != 0 else 1e-3, float(np.clip(dur / 3.0, tau_lo, tau_hi))]

    def model(tt: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
        return _exp_model(tt, a, b, c, R0)

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizeWarning)
            popt, pcov = curve_fit(model, t, s, p0=p0, bounds=([-np.inf, -np.inf, tau_lo],
                                                              [np.inf, np.inf, tau_hi]),
                                   sigma=sig, absolute_sigma=True, method="trf",
                                   x_scale=[0.1, 0.1, max(dur / 3.0, tau_lo)], max_nfev=3000)
    except (RuntimeError, ValueError) as exc:
        return f"exponential fit failed: {exc}"
    wrss = float(np.sum(((model(t, *popt) - s) / sig) ** 2))
    return _CurveFit(popt, pcov, wrss, t.size - 3)


def _expected_tau_rel_stderr(series: tuple[np.ndarray, np.ndarray, np.ndarray], t_rest: float,
                             amp: float, tau: float, scale: float) -> float:
    """σ_τ/τ of a one-depth exponential fit at (A, τ) for the depth's times and sigmas
    (Fisher information, covariance scaled like the fits)."""
    t, _, sig = series
    decay = np.exp(-(t - t_rest) / tau)
    jac = np.stack([np.ones_like(t), decay, amp * (t - t_rest) / tau**2 * decay], axis=1)
    jac /= sig[:, None]
    try:
        cov = np.linalg.inv(jac.T @ jac) * scale
    except np.linalg.LinAlgError:
        return float("inf")
    return float(np.sqrt(max(cov[2, 2], 0.0)) / tau)


@dataclass(frozen=True)
class _SharedFit:
    tau_s: float
    tau_stderr_s: float
    level: np.ndarray  # per series
    amplitude: np.ndarray
    amplitude_stderr: np.ndarray
    note: str


def _shared_tau(series: list[tuple[np.ndarray, np.ndarray, np.ndarray]], seg: SegmentRun,
                tau0: float, starts: np.ndarray, absolute: bool) -> _SharedFit | str:
    """One τ for all series (per-series s∞, A): least squares on the stacked residuals."""
    m = len(series)
    tau_lo, tau_hi = _tau_bounds(np.concatenate([x[0] for x in series]), seg)
    x0 = np.concatenate([[np.log(np.clip(tau0, tau_lo * 1.01, tau_hi / 1.01))], starts.ravel()])
    lower = np.full(x0.size, -np.inf)
    upper = np.full(x0.size, np.inf)
    lower[0], upper[0] = np.log(tau_lo), np.log(tau_hi)

    def resid(x: np.ndarray) -> np.ndarray:
        tau = np.exp(x[0])
        return np.concatenate([
            (_exp_model(t, x[1 + 2 * i], x[2 + 2 * i], tau, seg.start_s) - s) / e
            for i, (t, s, e) in enumerate(series)])

    try:
        sol = least_squares(resid, x0, bounds=(lower, upper), method="trf", max_nfev=5000)
    except (RuntimeError, ValueError) as exc:
        return f"shared fit failed: {exc}"
    if not sol.success:
        return f"shared fit failed: {sol.message}"
    n = sol.fun.size
    dof = n - x0.size
    try:
        cov = np.linalg.inv(sol.jac.T @ sol.jac)
    except np.linalg.LinAlgError:
        return "shared fit failed: singular covariance"
    chi2nu = float(np.sum(sol.fun**2)) / dof if dof > 0 else np.nan
    scale = (max(1.0, chi2nu) if np.isfinite(chi2nu) else 1.0) if absolute else chi2nu
    tau = float(np.exp(sol.x[0]))
    if sol.x[0] <= lower[0] + 1e-6 or sol.x[0] >= upper[0] - 1e-6:
        return f"shared τ at a bound of [{tau_lo:.3g}, {tau_hi:.3g}] s (unbounded)"
    err = np.sqrt(np.clip(np.diagonal(cov) * scale, 0.0, None))
    return _SharedFit(tau, tau * float(err[0]), sol.x[1::2].copy(), sol.x[2::2].copy(),
                      err[2::2].copy(), f"one τ over {m} depth(s), {n} points")


def relaxation_metrics(
    time_s: np.ndarray, soc: np.ndarray, segment: SegmentRun, *,
    soc_stderr: np.ndarray | None = None, min_amplitude: float = 0.03,
    max_tau_rel_stderr: float = 0.2, max_shared_tau_rel_stderr: float = 0.3,
) -> RelaxationFit:
    """Fit SOC(t) = s∞ + A·exp(−(t − t_rest_start)/τ) per depth, and one shared τ.

    Points with time in [segment.start_s, segment.end_s]; τ in s, A and s∞ dimensionless.
    Steps: (1) a shared-τ fit over every depth with ≥ 4 points gives each depth's A;
    depths with |A| < ``min_amplitude`` or |A| ≤ 2σ_A are dropped; (2) the shared-τ fit is
    redone over the others (``tau_shared_s``, ``shared_amplitude``, ``shared_level``; τ NaN
    when σ_τ/τ > ``max_shared_tau_rel_stderr``); (3) each remaining depth is fitted on its
    own (``curve_fit``; τ bounded to [spacing/10, 20·duration]) and reported unless τ sits
    at a bound or the depth's data cannot give τ to ``max_tau_rel_stderr`` (relative
    stderr expected at the shared τ and the depth's shared-fit A). Stderr scaled by the
    reduced χ² pooled over the depths' own fits (with ``soc_stderr``: by max(1, χ²_ν)).
    """
    t, s, e = _check_inputs(time_s, soc, soc_stderr)
    nd = s.shape[1]
    nan = float("nan")
    tau, tau_se, amp, amp_se, lev, lev_se, sh_amp, sh_lev = (np.full(nd, nan)
                                                             for _ in range(8))
    reasons = [OK] * nd
    counts = np.zeros(nd, dtype=int)
    series: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    fits: dict[int, _CurveFit] = {}
    for j in range(nd):
        tj, sj, ej = _points(t, s, e, j, segment.start_s, segment.end_s)
        counts[j] = tj.size
        if tj.size < _MIN_RELAX_POINTS:
            reasons[j] = f"{tj.size} point(s) in the rest; need {_MIN_RELAX_POINTS}"
            continue
        sig = np.ones(tj.size) if ej is None else ej
        series[j] = (tj, sj, sig)
        fit = _fit_relax_depth(tj, sj, sig, segment)
        if isinstance(fit, str):
            reasons[j] = fit
        else:
            fits[j] = fit
    scale = _pooled_scale(list(fits.values()), e is not None)

    def start_values(idx: list[int]) -> np.ndarray:
        out = []
        for j in idx:
            if j in fits:
                out.append(fits[j].popt[:2])
            else:
                sj = series[j][1]
                out.append([sj[-1], sj[0] - sj[-1]])
        return np.array(out, dtype=float)

    tau0 = segment.duration_s / 3.0
    good = [j for j in fits if np.isfinite(fits[j].cov_unscaled[2, 2])]
    if good:
        w = np.array([1.0 / max(fits[j].cov_unscaled[2, 2], 1e-30) for j in good])
        tau0 = float(np.exp(np.sum(w * np.log([fits[j].popt[2] for j in good])) / w.sum()))
    idx = sorted(series)
    shared: _SharedFit | str = "no depth with enough points in the rest"
    if idx:
        first = _shared_tau([series[j] for j in idx], segment, tau0, start_values(idx),
                            e is not None)
        if isinstance(first, _SharedFit):
            amps, amps_se = first.amplitude, first.amplitude_stderr
        else:
            amps = np.array([fits[j].popt[1] if j in fits else nan for j in idx])
            amps_se = np.array([np.sqrt(fits[j].cov_unscaled[1, 1] * scale) if j in fits
                                else nan for j in idx])
        keep = []
        for j, a_j, se_j in zip(idx, amps, amps_se, strict=True):
            if not np.isfinite(a_j) or abs(a_j) < min_amplitude:
                why = f"|amplitude| {abs(a_j):.3f} < min_amplitude {min_amplitude:g}"
            elif not abs(a_j) > _AMP_SIGNIFICANCE * se_j:
                why = f"amplitude {a_j:.3f} not significant (stderr {se_j:.3f})"
            else:
                keep.append(j)
                continue
            if reasons[j] == OK:
                reasons[j] = why
        shared = "no depth with a significant amplitude >= min_amplitude"
        if keep:
            shared = _shared_tau([series[j] for j in keep], segment, tau0,
                                 start_values(keep), e is not None)
            if isinstance(shared, _SharedFit):
                sh_lev[keep], sh_amp[keep] = shared.level, shared.amplitude
                if not shared.tau_stderr_s <= max_shared_tau_rel_stderr * shared.tau_s:
                    shared = (f"shared τ unbounded by the data: σ_τ/τ = "
                              f"{shared.tau_stderr_s / shared.tau_s:.2g} > "
                              f"{max_shared_tau_rel_stderr:g}")
    shared_tau = shared.tau_s if isinstance(shared, _SharedFit) else nan
    for j in fits:
        if reasons[j] != OK:
            continue
        p = fits[j].popt
        err = np.sqrt(np.clip(np.diagonal(fits[j].cov_unscaled) * scale, 0.0, None))
        tau_lo, tau_hi = _tau_bounds(series[j][0], segment)
        # precision the depth's data can give τ, judged at the shared τ and the depth's
        # shared-fit amplitude (not at its own noisy τ: gating on the own stderr keeps
        # preferentially the fits whose noise shortened τ, a bias)
        rel = (_expected_tau_rel_stderr(series[j], segment.start_s, sh_amp[j], shared_tau,
                                        scale) if np.isfinite(shared_tau) and
               np.isfinite(sh_amp[j]) else err[2] / p[2])
        if p[2] <= tau_lo * 1.001 or p[2] >= tau_hi * 0.999:
            reasons[j] = f"τ at a bound of [{tau_lo:.3g}, {tau_hi:.3g}] s (unbounded)"
        elif not np.all(np.isfinite(err)) or not rel <= max_tau_rel_stderr:
            reasons[j] = (f"τ not determined by the depth's data: expected σ_τ/τ = "
                          f"{rel:.2g} > {max_tau_rel_stderr:g}")
        else:
            lev[j], amp[j], tau[j] = p
            lev_se[j], amp_se[j], tau_se[j] = err
    if isinstance(shared, _SharedFit):
        ts, tse, note = shared.tau_s, shared.tau_stderr_s, shared.note
    else:
        ts, tse, note = nan, nan, shared
    return RelaxationFit(
        segment=segment, tau_s=tau, tau_stderr_s=tau_se, amplitude=amp,
        amplitude_stderr=amp_se, level=lev, level_stderr=lev_se, n_points=counts,
        reason=np.array(reasons, dtype=str), tau_shared_s=ts, tau_shared_stderr_s=tse,
        shared_amplitude=sh_amp, shared_level=sh_lev, shared_note=note,
    )


# ------------------------------------------------------------------------------ time grid


def interpolate_to_grid(time_s: np.ndarray, values: np.ndarray, grid_s: np.ndarray
                        ) -> np.ndarray:
    """Values (pass, depth) interpolated onto a common time grid: (grid, depth).

    Linear in time on each depth's own point times (NaN points skipped); NaN outside each
    depth's own time span [first, last valid point]. Only for display or comparison on
    request — the result is interpolated, not measured, and must be labelled so.
    """
    t = np.asarray(time_s, dtype=float)
    v = np.asarray(values, dtype=float)
    g = np.asarray(grid_s, dtype=float).ravel()
    if t.ndim != 2 or t.shape != v.shape:
        raise ValueError(f"time_s and values must both be (pass, depth); got {t.shape}, "
                         f"{v.shape}")
    out = np.full((g.size, t.shape[1]), np.nan)
    for j in range(t.shape[1]):
        ok = np.isfinite(t[:, j]) & np.isfinite(v[:, j])
        if not ok.any():
            continue
        order = np.argsort(t[ok, j])
        tj, vj = t[ok, j][order], v[ok, j][order]
        out[:, j] = np.interp(g, tj, vj, left=np.nan, right=np.nan)
    return out


# ------------------------------------------------------------------------------ dataset


def _global_rates(global_rate_per_h: float | Sequence[float] | np.ndarray | None,
                  n: int) -> np.ndarray:
    if global_rate_per_h is None:
        return np.full(n, np.nan)
    g = np.atleast_1d(np.asarray(global_rate_per_h, dtype=float))
    if g.size == 1:
        return np.full(n, abs(float(g[0])))
    if g.size != n:
        raise ValueError(f"global_rate_per_h: expected one value or {n} (one per reaction), "
                         f"got {g.size}")
    return np.abs(g)


def _stack(items: Sequence[FrontFit] | Sequence[RelaxationFit], attr: str, nd: int
           ) -> np.ndarray:
    """One float array per segment (``attr`` of each fit) stacked: (segment, depth)."""
    if not items:
        return np.zeros((0, nd))
    return np.stack([np.asarray(getattr(x, attr), dtype=float) for x in items])


def _sstack(items: Sequence[FrontFit] | Sequence[RelaxationFit], attr: str, nd: int
            ) -> np.ndarray:
    """As :func:`_stack`, for str arrays."""
    if not items:
        return np.zeros((0, nd), dtype=str)
    return np.stack([np.asarray(getattr(x, attr), dtype=str) for x in items])


def _reaction_variables(reactions: list[SegmentRun], fronts: list[FrontFit],
                        orders: list[FrontOrder], grate: np.ndarray, grate_src: list[str],
                        nd: int) -> dict[str, tuple]:
    """The variables on ``reaction`` and (reaction, depth): segments, global rates, first
    face, per-depth front metrics."""
    nr = len(reactions)
    rd = ("reaction", "depth")
    r_start = np.array([g.start_s for g in reactions], dtype=float)
    t50 = _stack(fronts, "t50_s", nd)
    rate = _stack(fronts, "rate_per_h", nd)
    return {
        "reaction_kind": (("reaction",), np.array([g.kind for g in reactions], dtype=str),
                          cf_attrs("1", "kind of reaction segment (charge or discharge)")),
        "reaction_start": (("reaction",), r_start, cf_attrs("s", "reaction segment start",
                                                            clock="potentiostat")),
        "reaction_end": (("reaction",), np.array([g.end_s for g in reactions], dtype=float),
                         cf_attrs("s", "reaction segment end", clock="potentiostat")),
        "global_rate_per_h": (("reaction",), grate, cf_attrs(
            "h-1", "global (electrode-average) rate of the segment")),
        "global_rate_source": (("reaction",), np.asarray(grate_src, dtype=str),
                               cf_attrs("1", "where global_rate_per_h comes from")),
        "first_face": (("reaction",), np.array([o.face for o in orders], dtype=str),
                       cf_attrs("1", "electrode face reached first by the reaction front",
                                flag_meanings="separator current_collector undetermined")),
        "front_slope": (("reaction",), np.array([o.slope_s_per_um for o in orders]),
                        cf_attrs("s um-1", "slope of front arrival time against depth",
                                 equation="t½ = a + b z (weighted least squares)")),
        "front_slope_stderr": (("reaction",),
                               np.array([o.slope_stderr_s_per_um for o in orders]),
                               cf_attrs("s um-1", "standard error of front_slope")),
        "front_note": (("reaction",), np.array([o.note for o in orders], dtype=str),
                       cf_attrs("1", "how first_face was decided")),
        "soc_start": (rd, _stack(fronts, "soc_start", nd),
                      cf_attrs("1", "local SOC at the reaction start (fitted)")),
        "soc_end": (rd, _stack(fronts, "soc_end", nd),
                    cf_attrs("1", "local SOC at the reaction end (fitted)")),
        "soc_change": (rd, _stack(fronts, "change", nd), cf_attrs(
            "1", "local SOC change over the reaction", equation="SOC(end) - SOC(start)")),
        "soc_change_stderr": (rd, _stack(fronts, "change_stderr", nd),
                              cf_attrs("1", "standard error of soc_change")),
        "front_arrival_time": (rd, t50, cf_attrs(
            "s", "front arrival time t½ (local SOC half-way through its change)",
            clock="potentiostat", estimator="generalised-logistic fit in time per depth")),
        "front_arrival_time_stderr": (rd, _stack(fronts, "t50_stderr_s", nd),
                                      cf_attrs("s", "standard error of front_arrival_time")),
        "arrival_after_reaction_start": (rd, t50 - r_start[:, None] if nr else t50, cf_attrs(
            "s", "front arrival time after the reaction start")),
        "t10": (rd, _stack(fronts, "t10_s", nd), cf_attrs(
            "s", "time of 10 % of the local SOC change", clock="potentiostat")),
        "t10_stderr": (rd, _stack(fronts, "t10_stderr_s", nd),
                       cf_attrs("s", "standard error of t10")),
        "t90": (rd, _stack(fronts, "t90_s", nd), cf_attrs(
            "s", "time of 90 % of the local SOC change", clock="potentiostat")),
        "t90_stderr": (rd, _stack(fronts, "t90_stderr_s", nd),
                       cf_attrs("s", "standard error of t90")),
        "local_rate_per_h": (rd, rate, cf_attrs(
            "h-1", "local insertion rate", equation="0.8 |dSOC| / (t90 - t10) * 3600")),
        "local_rate_per_h_stderr": (rd, _stack(fronts, "rate_stderr_per_h", nd),
                                    cf_attrs("h-1", "standard error of local_rate_per_h")),
        "relative_rate": (rd, rate / np.where(grate > 0, grate, np.nan)[:, None], cf_attrs(
            "1", "local rate relative to the global rate",
            equation="local_rate_per_h / global_rate_per_h")),
        "front_points": (rd, _stack(fronts, "n_points", nd).astype(int),
                         cf_attrs("1", "number of points of the depth in the reaction")),
        "front_reason": (rd, _sstack(fronts, "reason", nd),
                         cf_attrs("1", "why a depth's front metrics are NaN ('ok' if not)")),
    }


def _pass_variables(spread: PassSpread) -> dict[str, tuple]:
    """The variables on ``pass``: the through-depth spread of SOC."""
    return {
        "soc_depth_std": (("pass",), spread.std, cf_attrs(
            "1", "standard deviation of SOC over depth (ddof 0)")),
        "soc_depth_range": (("pass",), spread.range, cf_attrs(
            "1", "max - min of SOC over depth")),
        "soc_depth_mean": (("pass",), spread.mean, cf_attrs("1", "mean SOC over depth")),
        "soc_depth_count": (("pass",), spread.count, cf_attrs(
            "1", "number of depths with a valid SOC in the pass")),
        "pass_time": (("pass",), spread.time_s, cf_attrs(
            "s", "mean time of the pass's valid points", clock="potentiostat")),
    }


def _rest_variables(rests: list[SegmentRun], relax: list[RelaxationFit], nd: int
                    ) -> dict[str, tuple]:
    """The variables on ``rest`` and (rest, depth): relaxation per depth and shared."""
    qd = ("rest", "depth")
    return {
        "rest_start": (("rest",), np.array([g.start_s for g in rests], dtype=float),
                       cf_attrs("s", "rest segment start", clock="potentiostat")),
        "rest_end": (("rest",), np.array([g.end_s for g in rests], dtype=float),
                     cf_attrs("s", "rest segment end", clock="potentiostat")),
        "relaxation_time": (qd, _stack(relax, "tau_s", nd), cf_attrs(
            "s", "local relaxation time constant",
            equation="SOC = s_inf + A exp(-(t - t_rest_start) / tau)")),
        "relaxation_time_stderr": (qd, _stack(relax, "tau_stderr_s", nd),
                                   cf_attrs("s", "standard error of relaxation_time")),
        "relaxation_amplitude": (qd, _stack(relax, "amplitude", nd),
                                 cf_attrs("1", "local relaxation amplitude A")),
        "relaxation_amplitude_stderr": (qd, _stack(relax, "amplitude_stderr", nd),
                                        cf_attrs("1", "standard error of relaxation_amplitude")),
        "relaxation_level": (qd, _stack(relax, "level", nd),
                             cf_attrs("1", "local relaxed SOC s_inf")),
        "relaxation_level_stderr": (qd, _stack(relax, "level_stderr", nd),
                                    cf_attrs("1", "standard error of relaxation_level")),
        "relaxation_points": (qd, _stack(relax, "n_points", nd).astype(int),
                              cf_attrs("1", "number of points of the depth in the rest")),
        "relaxation_reason": (qd, _sstack(relax, "reason", nd), cf_attrs(
            "1", "why a depth's relaxation fit is NaN ('ok' if not)")),
        "relaxation_amplitude_shared_tau": (qd, _stack(relax, "shared_amplitude", nd), cf_attrs(
            "1", "local relaxation amplitude A in the shared-tau fit")),
        "relaxation_level_shared_tau": (qd, _stack(relax, "shared_level", nd), cf_attrs(
            "1", "local relaxed SOC s_inf in the shared-tau fit")),
        "relaxation_time_shared": (("rest",), np.array([r.tau_shared_s for r in relax]),
                                   cf_attrs("s", "relaxation time shared by all fitted depths")),
        "relaxation_time_shared_stderr": (
            ("rest",), np.array([r.tau_shared_stderr_s for r in relax]),
            cf_attrs("s", "standard error of relaxation_time_shared")),
        "relaxation_shared_note": (("rest",),
                                   np.array([r.shared_note for r in relax], dtype=str),
                                   cf_attrs("1", "what the shared relaxation fit used")),
    }


def heterogeneity_dataset(
    time_s: np.ndarray, soc: np.ndarray, depth_um: np.ndarray, origin: str,
    segments: Sequence[SegmentRun], *, soc_stderr: np.ndarray | None = None,
    global_rate_per_h: float | Sequence[float] | np.ndarray | None = None,
    min_change: float = 0.2, min_amplitude: float = 0.03, max_tau_rel_stderr: float = 0.2,
    max_shared_tau_rel_stderr: float = 0.3,
) -> xr.Dataset:
    """All heterogeneity metrics of a confocal run in one dataset (see the module docstring).

    Dims: ``reaction`` (one per charge/discharge segment, in order), ``rest`` (one per rest
    segment), ``depth``, ``pass``. ``global_rate_per_h`` (h⁻¹): one value, one per
    reaction (NaN entries computed), or None → |Δ⟨SOC⟩_z| / duration · 3600 from the fitted
    per-depth SOC at the segment ends. Every variable carries CF ``units`` and
    ``long_name``; string variables are plain str arrays.
    """
    _check_origin(origin)
    t, s, e = _check_inputs(time_s, soc, soc_stderr)
    z = np.asarray(depth_um, dtype=float).ravel()
    if z.size != s.shape[1]:
        raise ValueError(f"depth_um has {z.size} entries, soc has {s.shape[1]} depths")
    reactions = [g for g in segments if g.kind in REACTION_KINDS]
    rests = [g for g in segments if g.kind == REST_KIND]
    unknown = sorted({g.kind for g in segments} - {*REACTION_KINDS, REST_KIND})
    if unknown:
        raise ValueError(f"segments: unknown kind(s) {unknown}; expected charge/discharge/rest")
    nr, nq, nd = len(reactions), len(rests), z.size

    fronts = [front_metrics(t, s, g, soc_stderr=e, min_change=min_change) for g in reactions]
    grate = _global_rates(global_rate_per_h, nr)
    grate_src = ["given"] * nr
    for i, (g, f) in enumerate(zip(reactions, fronts, strict=True)):
        if not np.isfinite(grate[i]):
            d = np.nanmean(f.soc_end - f.soc_start) if np.isfinite(f.change).any() else np.nan
            grate[i] = abs(d) / g.duration_s * 3600.0
            grate_src[i] = "depth-mean SOC change / duration"
    orders = [first_face(f.t50_s, z, origin, f.t50_stderr_s) for f in fronts]
    relax = [relaxation_metrics(t, s, g, soc_stderr=e, min_amplitude=min_amplitude,
                                max_tau_rel_stderr=max_tau_rel_stderr,
                                max_shared_tau_rel_stderr=max_shared_tau_rel_stderr)
             for g in rests]

    data = {**_reaction_variables(reactions, fronts, orders, grate, grate_src, nd),
            **_pass_variables(depth_spread(t, s)), **_rest_variables(rests, relax, nd)}
    coords = {
        "depth": ("depth", z, cf_attrs("um", "depth from the origin face", origin=origin)),
        "pass": ("pass", np.arange(s.shape[0]), cf_attrs("1", "pass index")),
        "reaction": ("reaction", np.arange(nr), cf_attrs("1", "reaction segment index")),
        "rest": ("rest", np.arange(nq), cf_attrs("1", "rest segment index")),
    }
    ds = xr.Dataset({k: xr.Variable(d, v, a) for k, (d, v, a) in data.items()},
                    coords={k: xr.Variable(d, v, a) for k, (d, v, a) in coords.items()})
    ds.attrs.update(
        origin=origin,
        front_estimator=("per-depth generalised logistic in time with boundary anchors; t_q "
                         "of the fitted curve's own change"),
        relaxation_estimator=("shared-tau exponential (least_squares) over depths with a "
                              "significant amplitude + per-depth exponential (curve_fit)"),
        min_change=min_change, min_amplitude=min_amplitude,
        max_tau_rel_stderr=max_tau_rel_stderr,
        max_shared_tau_rel_stderr=max_shared_tau_rel_stderr,
        stderr_basis=("given soc_stderr, inflated by max(1, pooled reduced chi2)"
                      if e is not None else "fit residuals (pooled reduced chi2)"),
    )
    return ds
