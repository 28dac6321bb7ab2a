"""Fitting XRD time series: the driver over frames and windows (batch and lmfit paths).

Fitting over time (:func:`fit_patterns`): frame n starts from frame n − 1 (``sequential``,
the lmfit reference path) or every frame of a block starts from the block's own first frame
(``batch``, :mod:`operando.xrd.batchfit`); a peak's centre and width are carried forward
only while its signal-to-noise ratio area/σ(area) ≥ ``snr_threshold`` (otherwise they are
reset to the nominal values), areas and background start from a per-frame linear least
squares, and each window follows the drift of its peaks (the window is shifted by the
median relative d-shift of its detected main peaks).

A fit is 'ok' (status 0) only when it found something: status 1 ("no peak above the SNR
threshold") when no peak of the window reaches ``snr_threshold``, when its peaks have no
area at all, or when they lower χ² against the background polynomial alone by less than
snr_threshold² × χ²_ν (at least :data:`~operando.xrd.batchfit.CHI2_ATOL`) — a bound a
converged fit with a peak at the threshold always passes (:func:`_flag_no_gain`), which
catches a fit left at a point worse than the background alone (a flat, saturated frame
through lmfit) or one without a covariance (lmfit at a bound, SNR unknown).

The models are those of :mod:`operando.xrd.windows`; the lmfit reference path builds the
same model with the same constraints as lmfit ``Model``/``Parameters``. Pure: numpy in,
numpy out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from operando.xrd.batchfit import CHI2_ATOL, levenberg_marquardt, model_and_jacobian
from operando.xrd.profiles import boxed_profile, peak_profile
from operando.xrd.units import unit_to_d
from operando.xrd.windows import (
    CompiledWindow,
    FitOptions,
    WindowDef,
    background_basis,
    compile_window,
    linear_guess,
    peak_stderr,
    peak_values,
    window_model,
)

if TYPE_CHECKING:
    from lmfit import Model, Parameters

__all__ = [
    "STATUS_MEANINGS",
    "PatternFit",
    "fit_patterns",
    "lmfit_model",
    "lmfit_one",
]

#: status code → meaning, per (frame, window)
STATUS_MEANINGS = {
    0: "ok",
    1: "no peak above the SNR threshold",
    2: "too few finite data points (NaN pattern or gaps)",
    3: "window outside the radial range of the data",
    4: "not converged within max_iter",
    5: "fit error",
}


@dataclass
class PatternFit:
    """Fit results of frames × windows (one model variant).

    Per (frame, peak): ``center``, ``fwhm`` (pattern unit), ``area`` (intensity × unit),
    ``eta`` and their ``*_stderr``; per (frame, peak, peak) ``area_cov``, the covariance of
    the areas (scaled like the standard errors; areas tied to one parameter — satellites, a
    phase's scale in a joint model — are fully correlated; NaN where not fitted; peaks of
    different windows fitted apart are uncorrelated, 0); per (frame, window): ``status`` (see
    :data:`STATUS_MEANINGS`), ``reason`` text, ``chi2``, ``n_points``, ``n_free``.
    """

    peak_names: list[str]
    peak_window: np.ndarray  # window index of each peak
    window_names: list[str]
    center: np.ndarray
    fwhm: np.ndarray
    area: np.ndarray
    eta: np.ndarray
    center_stderr: np.ndarray
    fwhm_stderr: np.ndarray
    area_stderr: np.ndarray
    eta_stderr: np.ndarray
    status: np.ndarray
    reason: np.ndarray
    chi2: np.ndarray
    n_points: np.ndarray
    n_free: np.ndarray
    area_cov: np.ndarray
    params: list[np.ndarray] = field(default_factory=list)  # per window (F, P)
    params_stderr: list[np.ndarray] = field(default_factory=list)
    param_names: list[list[str]] = field(default_factory=list)

    @property
    def snr(self) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            s = self.area / self.area_stderr
        return np.where(np.isfinite(s), s, 0.0)

    @classmethod
    def empty(cls, n_frames: int, peak_names: list[str], peak_window: np.ndarray,
              window_names: list[str]) -> PatternFit:
        nan = np.full((n_frames, len(peak_names)), np.nan)
        nw = len(window_names)
        return cls(peak_names=list(peak_names), peak_window=np.asarray(peak_window, int),
                   window_names=list(window_names),
                   **{k: nan.copy() for k in ("center", "fwhm", "area", "eta", "center_stderr",
                                              "fwhm_stderr", "area_stderr", "eta_stderr")},
                   status=np.zeros((n_frames, nw), np.int8),
                   reason=np.full((n_frames, nw), "ok", dtype=object),
                   chi2=np.full((n_frames, nw), np.nan),
                   n_points=np.zeros((n_frames, nw), np.int64),
                   n_free=np.zeros((n_frames, nw), np.int64),
                   area_cov=np.zeros((n_frames, len(peak_names), len(peak_names))))


def _valid(y: np.ndarray, s: np.ndarray) -> np.ndarray:
    return np.isfinite(y) & np.isfinite(s) & (s > 0)


def _reset_weak(cw: CompiledWindow, p_prev: np.ndarray, s_prev: np.ndarray,
                snr_threshold: float, p_nom: np.ndarray) -> np.ndarray:
    """Nonlinear starting values carried from a previous fit; the centre and width of a
    peak whose area SNR is below the threshold (or not finite) go back to nominal."""
    p = np.array(p_prev, float, copy=True)
    bad_rows = ~np.all(np.isfinite(p), axis=-1)
    p[bad_rows] = p_nom
    with np.errstate(divide="ignore", invalid="ignore"):
        snr = p[:, cw.ai] / s_prev[:, cw.ai]
    weak = ~(np.isfinite(snr) & (snr >= snr_threshold))  # (F, n_area_params)
    for col in range(cw.ai.size):
        w = weak[:, col]
        p[w, cw.ci[col]] = p_nom[cw.ci[col]]
        # a width shared with a detected peak of the phase stays
        shared_ok = np.zeros_like(w)
        for col2 in np.flatnonzero(cw.wi == cw.wi[col]):
            shared_ok |= ~weak[:, col2]
        p[w & ~shared_ok, cw.wi[col]] = p_nom[cw.wi[col]]
    return p


def _drift(cw: CompiledWindow, p: np.ndarray, s: np.ndarray, unit: str, wl: float,
           snr_threshold: float, segment: int | None = None) -> float:
    """Median relative d-shift (d_fit / d_nominal) of the detected main peaks of one fit
    (of one segment of a joint model when ``segment`` is given)."""
    vals = peak_values(cw, p[None])
    err = peak_stderr(cw, s[None])
    with np.errstate(divide="ignore", invalid="ignore"):
        snr = vals["area"][0] / err["area"][0]
    ok = cw.main & np.isfinite(snr) & (snr >= snr_threshold) & np.isfinite(vals["center"][0])
    if segment is not None:
        ok &= cw.peak_seg == segment
    if not ok.any():
        return 1.0
    d_fit = unit_to_d(vals["center"][0][ok], unit, wl)
    d_nom = unit_to_d(cw.c_nom[ok], unit, wl)
    return float(np.median(d_fit / d_nom))


def _area_cov(cw: CompiledWindow, cov: np.ndarray) -> np.ndarray:
    """Covariance (F, n_peaks, n_peaks) of the peak areas r_j p[ai_j] from the parameter
    covariance ``cov`` (F, P, P)."""
    c = np.asarray(cov, float)[:, cw.ai[:, None], cw.ai[None, :]]
    return c * cw.r[None, :, None] * cw.r[None, None, :]


def _store(out: PatternFit, w: int, cw: CompiledWindow, rows: np.ndarray, cols: np.ndarray,
           p: np.ndarray, s: np.ndarray, cov: np.ndarray) -> None:
    out.area_cov[np.ix_(rows, cols, cols)] = _area_cov(cw, cov)
    vals = peak_values(cw, p)
    err = peak_stderr(cw, s)
    for key in ("center", "fwhm", "area", "eta"):
        getattr(out, key)[np.ix_(rows, cols)] = vals[key]
        getattr(out, key + "_stderr")[np.ix_(rows, cols)] = err[key]
    out.params[w][rows] = p
    out.params_stderr[w][rows] = s


def _classify(out: PatternFit, w: int, rows: np.ndarray, cols: np.ndarray,
              snr_threshold: float) -> None:
    """Status 1 for converged frames where no peak of the window reaches the SNR."""
    with np.errstate(divide="ignore", invalid="ignore"):
        snr = out.area[np.ix_(rows, cols)] / out.area_stderr[np.ix_(rows, cols)]
    # no covariance at all (lmfit with a parameter at a bound): SNR unknown, not 'no peak'
    # here (the background-alone comparison, _flag_no_gain, decides those)
    none = ~np.any(np.isfinite(snr) & (snr >= snr_threshold), axis=1) & np.any(
        np.isfinite(snr), axis=1)
    # no peak area at all (an all-zero frame: area 0 ± 0, SNR 0/0): no peak, not 'ok'
    area = out.area[np.ix_(rows, cols)]
    none |= np.any(np.isfinite(area), axis=1) & np.all(~(area > 0), axis=1)
    sel = rows[none & (out.status[rows, w] == 0)]
    out.status[sel, w] = 1
    out.reason[sel, w] = STATUS_MEANINGS[1]


def _background_chi2(cw: CompiledWindow, y: np.ndarray, s: np.ndarray) -> np.ndarray:
    """χ² (F,) of the background polynomials of ``cw`` alone (every peak area 0), fitted by
    weighted linear least squares (batched pseudo-inverse) to the valid points of each frame
    of ``y`` (F, N) with σ ``s`` on the whole radial axis."""
    yy, ss = y[:, cw.idx], s[:, cw.idx]
    ok = _valid(yy, ss)
    sw = np.where(ok, 1.0 / np.where(ok, ss, 1.0), 0.0)  # √weights, 0 at invalid points
    b = np.where(ok, yy, 0.0) * sw
    a = background_basis(cw, cw.x)[None, :, :] * sw[..., None]  # (F, M, n_bg)
    coef = np.linalg.pinv(a) @ b[..., None]
    return np.sum((b - (a @ coef)[..., 0]) ** 2, axis=1)


def _flag_no_gain(out: PatternFit, ws: Sequence[int], rows: np.ndarray,
                  chi2_background: np.ndarray, snr_threshold: float) -> None:
    """Status 1 for the fits (``rows`` of the windows ``ws``, fitted together) whose peaks
    lower χ² below the background-alone χ² ``chi2_background`` (rows,) by less than
    snr_threshold² × χ²_ν (less :data:`CHI2_ATOL`, the fits' own stopping tolerance).

    Why this threshold: at a least-squares minimum, removing the peaks raises χ² by
    Δχ² = â·C⁻¹·â ≥ â_i²/C_ii for every linear parameter i (C the covariance of the
    linear parameters, background free), while the reported SNR_i² = â_i²/(C_ii χ²_ν)
    (standard errors scaled by χ²_ν). So Δχ² < snr_threshold²·χ²_ν means no peak can reach
    the threshold: a converged fit is never flagged by this that the SNR rule would not
    flag. It catches the fits that report peaks the data do not hold: a flat (saturated)
    frame that lmfit leaves at a point worse than the background alone, its 'peaks' with
    SNR > 3 from the covariance of that point. Frames already not 'ok' keep their status."""
    if rows.size == 0:
        return
    wi = np.asarray(ws, int)
    chi2 = out.chi2[np.ix_(rows, wi)].sum(axis=1)
    dof = np.maximum(out.n_points[np.ix_(rows, wi)].sum(axis=1)
                     - out.n_free[np.ix_(rows, wi)].sum(axis=1), 1)
    gain = chi2_background - chi2
    limit = np.maximum(snr_threshold ** 2 * chi2 / dof - CHI2_ATOL, CHI2_ATOL)
    flag = np.isfinite(gain) & np.isfinite(limit) & (gain < limit)
    for i in np.flatnonzero(flag):
        for w in wi:
            if out.status[rows[i], w] == 0:
                out.status[rows[i], w] = 1
                out.reason[rows[i], w] = (
                    f"{STATUS_MEANINGS[1]}: the peaks lower χ² by {gain[i]:.3g} against the "
                    f"background alone, less than {limit[i]:.3g} (a flat, empty or "
                    f"saturated frame?)")


def fit_patterns(
    intensity: np.ndarray,
    sigma: np.ndarray,
    radial: np.ndarray,
    unit: str,
    wavelength_A: float,
    windows: Sequence[WindowDef],
    options: FitOptions,
    *,
    method: str = "batch",
    exclude_phases: Sequence[str] = (),
) -> PatternFit:
    """Fit every window in every frame of ``intensity`` (F, N) with uncertainties ``sigma``
    on ``radial`` (N,) in ``unit`` (λ ``wavelength_A`` in Å converts the windows' d-spacings);
    peaks of ``exclude_phases`` (default none) are left out of the model.

    ``method="batch"`` (default): all frames of the block at once (vectorised Levenberg–Marquardt,
    :func:`operando.xrd.batchfit.levenberg_marquardt`), each frame starting from the
    block's first fitted frame (centres/widths, reset to nominal for weak peaks) and its own
    linear least-squares areas and background; the block is an independent work unit.
    ``method="lmfit"``: sequential, frame n starts from frame n − 1 (lmfit reference).
    A window outside the data, a frame with too few finite points, an empty window or an
    exception is recorded in ``status``/``reason``; it never raises for bad data.
    """
    if method not in ("batch", "lmfit"):
        raise ValueError(f"method: expected 'batch' or 'lmfit', found {method!r}")
    y_all = np.atleast_2d(np.asarray(intensity, float))
    s_all = np.atleast_2d(np.asarray(sigma, float))
    rad = np.asarray(radial, float)
    if rad.size > 1 and rad[0] > rad[-1]:
        rad, y_all, s_all = rad[::-1], y_all[:, ::-1], s_all[:, ::-1]
    n_frames = y_all.shape[0]
    compiled0 = [compile_window(w, rad, unit, wavelength_A, options,
                                exclude_phases=exclude_phases) for w in windows]
    names: list[str] = []
    pw: list[int] = []
    for i, cw in enumerate(compiled0):
        names += cw.peak_names
        pw += [i] * len(cw.peak_names)
    out = PatternFit.empty(n_frames, names, np.array(pw), [w.name for w in windows])
    offset = 0
    joint_w: list[int] = []
    joint_cols: list[np.ndarray] = []
    for w, (wdef, cw0) in enumerate(zip(windows, compiled0, strict=True)):
        cols = np.arange(offset, offset + len(cw0.peak_names))
        offset += len(cw0.peak_names)
        out.params.append(np.full((n_frames, cw0.n_params), np.nan))
        out.params_stderr.append(np.full((n_frames, cw0.n_params), np.nan))
        out.param_names.append(list(cw0.names))
        min_pts = cw0.n_params + 3
        if cw0.n_points < min_pts or not cw0.peak_names:
            out.status[:, w] = 3
            out.reason[:, w] = (f"{STATUS_MEANINGS[3]}: window d = {wdef.d_range_A[0]:g}–"
                                f"{wdef.d_range_A[1]:g} Å has {cw0.n_points} bins in "
                                f"[{rad.min():g}, {rad.max():g}] {unit}"
                                if cw0.peak_names else "no peaks in this window")
            continue
        if options.joint:
            joint_w.append(w)
            joint_cols.append(cols)
            continue
        if method == "batch":
            _fit_window_batch(out, w, cols, wdef, cw0, y_all, s_all, rad, unit, wavelength_A,
                              options, exclude_phases)
        else:
            _fit_window_lmfit(out, w, cols, wdef, cw0, y_all, s_all, rad, unit, wavelength_A,
                              options, exclude_phases)
        _classify(out, w, np.arange(n_frames), cols, options.snr_threshold)
    if joint_w:
        _fit_joint(out, joint_w, joint_cols, [windows[w] for w in joint_w], y_all, s_all,
                   rad, unit, wavelength_A, options, exclude_phases, method)
        for w, cols in zip(joint_w, joint_cols, strict=True):
            _classify(out, w, np.arange(n_frames), cols, options.snr_threshold)
    return out


def _fit_joint(out: PatternFit, ws: list[int], cols_l: list[np.ndarray],
               wdefs: list[WindowDef], y_all: np.ndarray, s_all: np.ndarray, rad: np.ndarray,
               unit: str, wl: float, options: FitOptions, exclude: Sequence[str],
               method: str) -> None:
    """All usable windows of each frame as one joint model (``options.joint``).

    Every window gets the joint fit's status (status 2 for a window without enough finite
    points of its own in a frame); ``chi2``/``n_points`` are per window (its segment),
    ``n_free`` counts the window's own parameters plus the shared ones it owns (a phase's
    scale and width: the first window with a peak of that phase; η: the first window);
    ``params`` of each window hold the joint parameter vector."""
    cols = np.concatenate(cols_l)
    cw0 = compile_window(wdefs, rad, unit, wl, options, exclude_phases=exclude)
    n_frames = y_all.shape[0]
    for w in ws:
        out.params[w] = np.full((n_frames, cw0.n_params), np.nan)
        out.params_stderr[w] = np.full((n_frames, cw0.n_params), np.nan)
        out.param_names[w] = list(cw0.names)
    has = _frames_with_data(cw0, y_all, s_all)
    bad = np.flatnonzero(~has)
    for w in ws:
        out.status[bad, w] = 2
        out.reason[bad, w] = STATUS_MEANINGS[2]
    good = np.flatnonzero(has)
    if good.size == 0:
        return

    def follow(cw: CompiledWindow, p: np.ndarray, sd: np.ndarray) -> CompiledWindow:
        if not options.follow:
            return cw
        shifts = [_drift(cw, p, sd, unit, wl, options.snr_threshold, segment=g)
                  for g in range(cw.n_segments)]
        new = compile_window(wdefs, rad, unit, wl, options, exclude_phases=exclude,
                             shift=shifts)
        if np.array_equal(new.idx, cw.idx) or not _frames_with_data(
                new, y_all[good[:1]], s_all[good[:1]]).all():
            return cw
        return new

    def store(cw: CompiledWindow, rows: np.ndarray, p: np.ndarray, sd: np.ndarray,
              conv: np.ndarray, cov: np.ndarray) -> None:
        out.area_cov[np.ix_(rows, cols, cols)] = _area_cov(cw, cov)
        vals = peak_values(cw, p)
        err = peak_stderr(cw, sd)
        for key in ("center", "fwhm", "area", "eta"):
            getattr(out, key)[np.ix_(rows, cols)] = vals[key]
            getattr(out, key + "_stderr")[np.ix_(rows, cols)] = err[key]
        yy, ss = y_all[np.ix_(rows, cw.idx)], s_all[np.ix_(rows, cw.idx)]
        ok = _valid(yy, ss)
        with np.errstate(invalid="ignore", divide="ignore"):
            r2 = np.where(ok, ((yy - window_model(cw, p, cw.x)) / np.where(ok, ss, 1.0)) ** 2,
                          0.0)
        owner = _param_owner(cw)
        for g, w in enumerate(ws):
            in_g = cw.seg == g
            out.params[w][rows] = p
            out.params_stderr[w][rows] = sd
            out.chi2[rows, w] = r2[:, in_g].sum(axis=1)
            npts_g = ok[:, in_g].sum(axis=1)
            out.n_points[rows, w] = npts_g
            out.n_free[rows, w] = int(np.sum(owner == g))
            nc = rows[~conv]
            out.status[nc, w] = 4
            out.reason[nc, w] = STATUS_MEANINGS[4]
            # a window whose own data are missing in a frame (NaN/gaps there only): its
            # centres and background are undetermined, so it is a failed fit, not 'ok'
            empty = rows[npts_g < int(np.sum(cw.param_seg == g)) + 3]
            out.status[empty, w] = 2
            out.reason[empty, w] = STATUS_MEANINGS[2]
            for key in ("center", "fwhm", "area", "eta"):
                getattr(out, key)[np.ix_(empty, cols_l[g])] = np.nan
                getattr(out, key + "_stderr")[np.ix_(empty, cols_l[g])] = np.nan
            out.area_cov[np.ix_(empty, cols_l[g], cols)] = np.nan
            out.area_cov[np.ix_(empty, cols, cols_l[g])] = np.nan
        _flag_no_gain(out, ws, rows, _background_chi2(cw, y_all[rows], s_all[rows]),
                      options.snr_threshold)

    if method == "batch":
        first = good[:1]
        p1, s1 = _fit_block(cw0, y_all[first], s_all[first], cw0.p_default[None],
                            options)[:2]
        cw = follow(cw0, p1[0], s1[0])
        start = _reset_weak(cw, p1, s1, options.snr_threshold, cw.p_default)
        res = _fit_block(cw, y_all[good], s_all[good], np.repeat(start, good.size, axis=0),
                         options)
        res = _refit_stuck(cw, y_all[good], s_all[good], res, options)
        p, sd, _chi2, _npts, conv, cov = res
        store(cw, good, p, sd, conv, cov)
        return
    cw = cw0
    prev: tuple[np.ndarray, np.ndarray] | None = None
    for f in good:
        start = cw.p_default if prev is None else _reset_weak(
            cw, prev[0][None], prev[1][None], options.snr_threshold, cw.p_default)[0]
        yy, ss = y_all[f, cw.idx], s_all[f, cw.idx]
        ok = _valid(yy, ss)
        wts = np.where(ok, 1.0 / np.where(ok, ss, 1.0) ** 2, 0.0)
        start = linear_guess(cw, start[None], np.where(ok, yy, 0.0)[None], wts[None])[0]
        try:
            p, err, success, cov = _lmfit_generic(cw, y_all[f], s_all[f], start)
        except Exception as exc:
            for w in ws:
                out.status[f, w] = 5
                out.reason[f, w] = f"{STATUS_MEANINGS[5]}: {type(exc).__name__}: {exc}"
            continue
        store(cw, np.array([f]), p[None], err[None], np.array([success]), cov[None])
        prev = (p, err)
        cw = follow(cw, p, err)


def _param_owner(cw: CompiledWindow) -> np.ndarray:
    """The segment each parameter is counted in (information criteria per window): a
    parameter shared by all segments (a phase's scale or FWHM in a joint model) belongs to the
    first segment holding a peak of that phase, η and α to segment 0."""
    owner = cw.param_seg.copy()
    for i in np.flatnonzero(owner < 0):
        peaks = np.flatnonzero((cw.ai == i) | (cw.wi == i))
        owner[i] = int(cw.peak_seg[peaks].min()) if peaks.size else 0
    return owner


def _frames_with_data(cw: CompiledWindow, y: np.ndarray, s: np.ndarray) -> np.ndarray:
    ok = _valid(y[:, cw.idx], s[:, cw.idx])
    return ok.sum(axis=1) >= cw.n_params + 3


def _fit_window_batch(out: PatternFit, w: int, cols: np.ndarray, wdef: WindowDef,
                      cw0: CompiledWindow, y_all: np.ndarray, s_all: np.ndarray,
                      rad: np.ndarray, unit: str, wl: float, options: FitOptions,
                      exclude: Sequence[str]) -> None:
    n_frames = y_all.shape[0]
    has = _frames_with_data(cw0, y_all, s_all)
    bad = np.flatnonzero(~has)
    out.status[bad, w] = 2
    out.reason[bad, w] = STATUS_MEANINGS[2]
    good = np.flatnonzero(has)
    if good.size == 0:
        return
    # 1) the block's first usable frame, from nominal positions
    first = good[:1]
    cw = cw0
    p_first, s_first = _fit_block(cw, y_all[first], s_all[first], cw.p_default[None],
                                  options)[:2]
    if options.follow:
        shift = _drift(cw, p_first[0], s_first[0], unit, wl, options.snr_threshold)
        if abs(shift - 1.0) > 1e-6:
            cw = compile_window(wdef, rad, unit, wl, options, exclude_phases=exclude,
                                shift=shift)
            if not _frames_with_data(cw, y_all[first], s_all[first]).all():
                cw = cw0
    start = _reset_weak(cw, p_first, s_first, options.snr_threshold, cw.p_default)
    # 2) all frames from the first frame's nonlinear values, their own linear guesses
    p, s, chi2, npts, conv, cov = _fit_block(cw, y_all[good], s_all[good],
                                             np.repeat(start, good.size, axis=0), options)
    _store(out, w, cw, good, cols, p, s, cov)
    out.chi2[good, w] = chi2
    out.n_points[good, w] = npts
    out.n_free[good, w] = cw.n_params
    nc = good[~conv]
    out.status[nc, w] = 4
    out.reason[nc, w] = STATUS_MEANINGS[4]
    _flag_no_gain(out, [w], good, _background_chi2(cw, y_all[good], s_all[good]),
                  options.snr_threshold)
    del n_frames


def _refit_stuck(cw: CompiledWindow, y: np.ndarray, s: np.ndarray, res: tuple,
                 options: FitOptions, factor: float = 3.0) -> tuple:
    """Frames of a block whose χ² ended ``factor`` (default 3) times above the block's median
    (a local minimum far from the first frame's start: an intermediate found in one frame of a
    rest, its peaks elsewhere than the start put them) refitted from the nonlinear values of
    the nearest frame that did converge well; the lower χ² is kept. ``res`` is
    :func:`_fit_block`'s tuple, returned updated."""
    p, sd, chi2, npts, conv, cov = (np.array(r, copy=True) for r in res)
    red = chi2 / np.maximum(npts - cw.n_params, 1)
    fine = np.isfinite(red)
    if fine.sum() < 3:
        return p, sd, chi2, npts, conv, cov
    stuck = fine & (red > factor * np.median(red[fine]))
    good = np.flatnonzero(fine & ~stuck)
    bad = np.flatnonzero(stuck)
    if bad.size == 0 or good.size == 0:
        return p, sd, chi2, npts, conv, cov
    near = good[np.abs(good[None, :] - bad[:, None]).argmin(axis=1)]
    new = _fit_block(cw, y[bad], s[bad], p[near], options)
    better = new[2] < chi2[bad]
    for arr, val in zip((p, sd, chi2, npts, conv, cov), new, strict=True):
        arr[bad[better]] = val[better]
    return p, sd, chi2, npts, conv, cov


def _fit_block(cw: CompiledWindow, y: np.ndarray, s: np.ndarray, p_start: np.ndarray,
               options: FitOptions
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                          np.ndarray]:
    """Fit rows of ``y`` (F, N) (σ ``s``) with :func:`levenberg_marquardt` from the nonlinear
    values of ``p_start`` (F, P) and per-frame linear areas and background. Returns params,
    stderr (F, P), χ², number of points used, converged (F,) and the parameter covariance
    (F, P, P), scaled by χ²/(M − P) like the standard errors."""
    yy = y[:, cw.idx]
    ss = s[:, cw.idx]
    ok = _valid(yy, ss)
    wts = np.where(ok, 1.0 / np.where(ok, ss, 1.0) ** 2, 0.0)
    yy = np.where(ok, yy, 0.0)
    p0 = linear_guess(cw, p_start, yy, wts)
    res = levenberg_marquardt(cw, cw.x, yy, wts, p0, max_iter=options.max_iter)
    npts = ok.sum(axis=1)
    scale = res.chi2 / np.maximum(npts - cw.n_params, 1)
    cov = res.covariance * scale[:, None, None]
    return res.params, res.stderr, res.chi2, npts, res.converged, cov


# --------------------------------------------------------------------------- lmfit path


def _poly_bg(x: np.ndarray, c0: float = 0.0, c1: float = 0.0, c2: float = 0.0,
             c3: float = 0.0, xmid: float = 0.0, xhalf: float = 1.0) -> np.ndarray:
    """Σ_k c_k t^k, t = (x − xmid)/xhalf (the window background as an lmfit Model)."""
    t = (x - xmid) / xhalf
    return c0 + t * (c1 + t * (c2 + t * c3))


def _pv_peak(x: np.ndarray, center: float = 0.0, area: float = 1.0, fwhm: float = 0.01,
             eta: float = 0.5, asym: float = 0.0, box: float = 0.0) -> np.ndarray:
    """:func:`~operando.xrd.profiles.peak_profile` as an lmfit Model (convolved with the
    instrument box, :func:`~operando.xrd.profiles.boxed_profile`, when ``box`` > 0)."""
    if box > 0:
        return boxed_profile(x, center, area, fwhm, eta, box)
    return peak_profile(x, center, area, fwhm, eta, asym)


def lmfit_model(cw: CompiledWindow) -> tuple[Model, Parameters]:
    """The lmfit composite Model of a compiled window and its Parameters (with the same
    constraints as the batch path, as lmfit ``expr``/bounds/``vary``)."""
    from lmfit import Model

    model = Model(_poly_bg, prefix="bg_")
    for j in range(len(cw.peak_names)):
        model = model + Model(_pv_peak, prefix=f"p{j}_")
    params = model.make_params()
    free = set(cw.names)
    for o in range(4):
        params[f"bg_c{o}"].set(value=0.0, vary=f"bg_c{o}" in free)
    params["bg_xmid"].set(value=cw.x_mid, vary=False)
    params["bg_xhalf"].set(value=cw.x_half, vary=False)
    if cw.bi >= 0:
        params.add(cw.names[cw.bi])
    for i, name in enumerate(cw.names):
        params[name].set(value=cw.p_default[i], min=cw.lower[i], max=cw.upper[i], vary=True)
    for j in range(len(cw.peak_names)):
        pre = f"p{j}_"
        for key, idx, mult in (("center", cw.ci[j], cw.k[j]), ("area", cw.ai[j], cw.r[j]),
                               ("fwhm", cw.wi[j], 1.0)):
            owner = cw.names[idx]
            if owner != pre + key:
                params[pre + key].set(expr=f"{float(mult)!r}*{owner}" if mult != 1.0 else owner)
        if cw.ei >= 0:
            if cw.names[cw.ei] != pre + "eta":
                params[pre + "eta"].set(expr=cw.names[cw.ei])
        else:
            params[pre + "eta"].set(value=cw.eta_const, vary=False)
        if cw.si >= 0:
            if cw.names[cw.si] != pre + "asym":
                params[pre + "asym"].set(expr=cw.names[cw.si])
        else:
            params[pre + "asym"].set(value=0.0, vary=False)
        if cw.bi >= 0:
            params[pre + "box"].set(expr=f"{float(cw.kb[j])!r}*{cw.names[cw.bi]}")
        else:
            params[pre + "box"].set(value=0.0, vary=False)
    return model, params


def _lmfit_cov(cw: CompiledWindow, res: object) -> np.ndarray:
    """The (P, P) covariance of ``cw.names`` from an lmfit result (lmfit's scaled ``covar``
    over its varied parameters; NaN without one)."""
    out = np.full((cw.n_params, cw.n_params), np.nan)
    covar = getattr(res, "covar", None)
    var_names = list(getattr(res, "var_names", []) or [])
    if covar is None:
        return out
    pos = [var_names.index(n) if n in var_names else -1 for n in cw.names]
    for i, a in enumerate(pos):
        for j, b in enumerate(pos):
            if a >= 0 and b >= 0:
                out[i, j] = covar[a, b]
    return out


def _lmfit_start(cw: CompiledWindow, p_start: np.ndarray) -> np.ndarray:
    """``p_start`` (P,) moved just inside its bounds for lmfit: lmfit maps a bounded
    parameter through sin (or √ for one bound), whose derivative vanishes at the bound, so a
    start exactly there (a phase's scale at 0 or the box at its minimum, warm-started from
    the previous frame) freezes it and MINPACK stops at once ("relative error between two
    consecutive iterates"), far from the minimum."""
    lo, hi = cw.lower, cw.upper
    span = hi - lo
    gap = np.where(np.isfinite(span), 1e-3 * np.where(np.isfinite(span), span, 0.0), 1e-3)
    p = np.clip(np.asarray(p_start, float), lo, hi)
    p = np.where(np.isfinite(lo), np.maximum(p, lo + gap), p)
    return np.where(np.isfinite(hi), np.minimum(p, hi - gap), p)


def lmfit_one(cw: CompiledWindow, model: Model, params: Parameters, y: np.ndarray,
              s: np.ndarray, p_start: np.ndarray, max_nfev: int | None = None
              ) -> tuple[np.ndarray, np.ndarray, float, int, bool, np.ndarray]:
    """Fit one frame (``y``, σ ``s`` on the whole radial axis) with lmfit from
    free-parameter values ``p_start`` (P,); ``max_nfev`` (default None: lmfit's) bounds
    the function evaluations.

    Returns (p, stderr, chi2, n_points, success, covariance (P, P))."""
    yy = y[cw.idx]
    ss = s[cw.idx]
    ok = _valid(yy, ss)
    pars = params.copy()
    pars["bg_xmid"].set(value=cw.x_mid, vary=False)
    pars["bg_xhalf"].set(value=cw.x_half, vary=False)
    start = _lmfit_start(cw, p_start)
    for i, name in enumerate(cw.names):
        pars[name].set(value=float(start[i]))
    res = model.fit(yy[ok], pars, x=cw.x[ok], weights=1.0 / ss[ok], max_nfev=max_nfev)
    p = np.array([res.params[n].value for n in cw.names])
    err = np.array([np.nan if res.params[n].stderr is None else res.params[n].stderr
                    for n in cw.names])
    return p, err, float(res.chisqr), int(ok.sum()), bool(res.success), _lmfit_cov(cw, res)


def _lmfit_generic(cw: CompiledWindow, y: np.ndarray, s: np.ndarray, p_start: np.ndarray,
                   max_nfev: int | None = None
                   ) -> tuple[np.ndarray, np.ndarray, bool, np.ndarray]:
    """lmfit (``minimize``, leastsq) of any compiled model (joint windows) from ``p_start``:
    the same constraints as the batch path, as one Parameter per free parameter and the
    model of :func:`window_model`. Returns (p, stderr, success, covariance (P, P))."""
    from lmfit import Parameters, minimize

    yy, ss = y[cw.idx], s[cw.idx]
    ok = _valid(yy, ss)
    pars = Parameters()
    start = _lmfit_start(cw, p_start)
    for i, name in enumerate(cw.names):
        pars.add(name, value=float(start[i]),
                 min=cw.lower[i], max=cw.upper[i])
    x = cw.x

    inv_s = 1.0 / np.where(ok, ss, 1.0)[ok]

    def resid(pp: Parameters) -> np.ndarray:
        v = np.array([pp[n].value for n in cw.names])[None]
        return ((yy - window_model(cw, v, x)[0]) / np.where(ok, ss, 1.0))[ok]

    def jac(pp: Parameters) -> np.ndarray:
        # the analytic Jacobian (as the batch path's): MINPACK's forward differences cost
        # P + 1 model evaluations per iteration, minutes per frame for a whole pattern
        v = np.array([pp[n].value for n in cw.names])[None]
        return -model_and_jacobian(cw, x, v)[1][0][ok] * inv_s[:, None]

    # the batch path's stopping rule: a step gaining Δχ² < CHI2_ATOL moves nothing
    # meaningfully (MINPACK's ftol is relative: χ² ≈ the number of points at the minimum)
    res = minimize(resid, pars, max_nfev=max_nfev, Dfun=jac,
                   ftol=max(CHI2_ATOL / max(int(ok.sum()), 1), 1.5e-8))
    p = np.array([res.params[n].value for n in cw.names])
    err = np.array([np.nan if res.params[n].stderr is None else res.params[n].stderr
                    for n in cw.names])
    return p, err, bool(res.success), _lmfit_cov(cw, res)


def _fit_window_lmfit(out: PatternFit, w: int, cols: np.ndarray, wdef: WindowDef,
                      cw0: CompiledWindow, y_all: np.ndarray, s_all: np.ndarray,
                      rad: np.ndarray, unit: str, wl: float, options: FitOptions,
                      exclude: Sequence[str]) -> None:
    model, params = lmfit_model(cw0)
    cw = cw0
    prev_p: np.ndarray | None = None
    prev_s: np.ndarray | None = None
    for f in range(y_all.shape[0]):
        y, s = y_all[f], s_all[f]
        if not _frames_with_data(cw, y[None], s[None])[0]:
            out.status[f, w] = 2
            out.reason[f, w] = STATUS_MEANINGS[2]
            continue
        if prev_p is None:
            start = cw.p_default
        else:
            start = _reset_weak(cw, prev_p[None], prev_s[None], options.snr_threshold,
                                cw.p_default)[0]
        yy, ss = y[cw.idx], s[cw.idx]
        ok = _valid(yy, ss)
        wts = np.where(ok, 1.0 / np.where(ok, ss, 1.0) ** 2, 0.0)
        start = linear_guess(cw, start[None], np.where(ok, yy, 0.0)[None], wts[None])[0]
        try:
            p, err, chi2, npts, success, cov = lmfit_one(cw, model, params, y, s, start)
        except Exception as exc:
            out.status[f, w] = 5
            out.reason[f, w] = f"{STATUS_MEANINGS[5]}: {type(exc).__name__}: {exc}"
            continue
        _store(out, w, cw, np.array([f]), cols, p[None], err[None], cov[None])
        out.chi2[f, w] = chi2
        out.n_points[f, w] = npts
        out.n_free[f, w] = cw.n_params
        if not success:
            out.status[f, w] = 4
            out.reason[f, w] = STATUS_MEANINGS[4]
        _flag_no_gain(out, [w], np.array([f]), _background_chi2(cw, y[None], s[None]),
                      options.snr_threshold)
        prev_p, prev_s = p, err
        if options.follow:
            shift = _drift(cw, p, err, unit, wl, options.snr_threshold)
            new = compile_window(wdef, rad, unit, wl, options, exclude_phases=exclude,
                                 shift=shift)
            if not np.array_equal(new.idx, cw.idx):
                if new.n_points >= new.n_params + 3:
                    cw = new
