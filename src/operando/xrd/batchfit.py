"""Vectorised Levenberg–Marquardt over many patterns at once (numpy, analytic Jacobians).

Every frame of a block is an independent weighted least-squares problem

    min_p χ²(p) = Σ_m w_m (y_m − f(x_m; p))²,   w_m = 1/σ_m²,

of the same model (a :class:`operando.xrd.windows.CompiledWindow`). One iteration, for all
frames together: J = ∂f/∂p (F, M, P) from the analytic derivatives of the profile
(:func:`operando.xrd.profiles.peak_jacobian`, or
:func:`~operando.xrd.profiles.boxed_jacobian` with an instrument box) scattered through
the window's parameter index maps, then the damped normal equations

    (JᵀWJ + λ diag(JᵀWJ)) δ = JᵀW (y − f)

solved per frame (batched ``numpy.linalg.solve``), the step projected onto the bounds,
accepted where χ² falls (λ ← λ/10) and rejected elsewhere (λ ← 10 λ). A frame stops when
its relative χ² change is below ``ftol``, or its absolute change below ``chi2_atol``
(:data:`CHI2_ATOL`, also the lmfit joint path's stopping Δχ²) (a step gaining
Δχ² = 0.01 moves the parameters by ≈ 0.1σ along the direction it improves, statistically
nothing: large joint models creep along weakly determined directions
otherwise — the centres and width of an absent phase fitting the noise, a few 1e-3 of χ²
per step for thousands of steps), for an accepted step (or λ grows past 1e12).

The model and its Jacobian are evaluated for all the peaks of a segment at once ((F, M_s,
N_s) arrays, no Python loop over peaks): frames that converge slowly iterate with few
frames active, where per-call overhead, not arithmetic, sets the cost. The sums over
peaks are taken in peak order, so the numbers are those of adding the peaks one by one.

Standard errors follow lmfit's convention (``scale_covar=True``):
σ(p_i) = √(C_ii χ²/(M − P)), C = (JᵀWJ)⁻¹ at the solution (pseudo-inverse; parameters that
the data do not determine — e.g. the centre of a peak of zero area — get NaN).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from operando.xrd.profiles import boxed_jacobian, peak_jacobian
from operando.xrd.windows import CompiledWindow, background_basis, peak_values

__all__ = ["CHI2_ATOL", "BatchResult", "levenberg_marquardt", "model_and_jacobian"]

#: absolute Δχ² below which an accepted step ends a fit (see the module docstring)
CHI2_ATOL = 1e-2


@dataclass
class BatchResult:
    """Per frame: ``params`` (F, P), ``stderr`` (F, P), ``chi2`` (F,), ``converged`` (F,),
    ``n_iter`` (F,), ``covariance`` (F, P, P) (unscaled (JᵀWJ)⁻¹)."""

    params: np.ndarray
    stderr: np.ndarray
    chi2: np.ndarray
    converged: np.ndarray
    n_iter: np.ndarray
    covariance: np.ndarray


def _segments(cw: CompiledWindow) -> list[tuple[slice, np.ndarray]]:
    """(data points, peaks modelled on them) per segment; one segment: all points, all
    peaks (see :meth:`CompiledWindow.peak_slice`)."""
    if cw.n_segments == 1:
        return [(slice(None), np.arange(len(cw.peak_names)))]
    seg = np.asarray(cw.seg)
    peak_seg = np.asarray(cw.peak_seg)
    parts = []
    for g in np.unique(peak_seg):
        lo, hi = np.searchsorted(seg, g, side="left"), np.searchsorted(seg, g, side="right")
        parts.append((slice(int(lo), int(hi)), np.flatnonzero(peak_seg == g)))
    return parts


def model_and_jacobian(cw: CompiledWindow, x: np.ndarray, p: np.ndarray,
                       jac: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """f (F, M) and ∂f/∂p (F, M, P) of the window model at parameters p (F, P).

    The profiles and derivatives of all the peaks of a segment are computed at once,
    (N_s, F, M_s) arrays, on the data points of that segment
    (:meth:`CompiledWindow.peak_slice`); they are then added peak after peak, in peak
    order (the rounding of evaluating the peaks one by one)."""
    n_f, n_p = p.shape
    x = np.asarray(x, float)
    basis = background_basis(cw, x)  # (M, B)
    vals = peak_values(cw, p)
    f = p[:, cw.bg_idx] @ basis.T
    J = None
    if jac:
        J = np.zeros((n_f, x.size, n_p))
        J[:, :, cw.bg_idx] = basis[None, :, :]
    boxed = cw.bi >= 0
    last = "box" if boxed else "asym"
    for pts, pk in _segments(cw):
        xs = x[pts][None, None, :]
        args = [vals[k].T[pk, :, None] for k in ("center", "area", "fwhm", "eta", last)]
        parts = boxed_jacobian(xs, *args) if boxed else peak_jacobian(xs, *args)
        fj, dc, da, dw, de, ds = (np.broadcast_to(q, (pk.size, n_f, xs.shape[2]))
                                  for q in parts)
        fs = f[:, pts]  # a view
        for i in range(pk.size):
            fs += fj[i]
        if J is None:
            continue
        Js = J[:, pts]  # a view
        for i, j in enumerate(pk):
            Js[:, :, cw.ci[j]] += cw.k[j] * dc[i]
            Js[:, :, cw.ai[j]] += cw.r[j] * da[i]
            Js[:, :, cw.wi[j]] += cw.kw[j] * dw[i]
            if cw.ei >= 0:
                Js[:, :, cw.ei] += de[i]
            if cw.si >= 0:
                Js[:, :, cw.si] += ds[i]
            if boxed:
                Js[:, :, cw.bi] += cw.kb[j] * ds[i]
    return f, J


def levenberg_marquardt(cw: CompiledWindow, x: np.ndarray, y: np.ndarray, w: np.ndarray,
                        p0: np.ndarray, *, max_iter: int = 200, ftol: float = 1.5e-8,
                        chi2_atol: float = CHI2_ATOL) -> BatchResult:
    """Fit y (F, M) with weights w (F, M) (0 = excluded point) from p0 (F, P).

    ``max_iter`` (default 200) iterations at most; stop tests ``ftol`` (relative Δχ²,
    default 1.5e-8) and ``chi2_atol`` (absolute Δχ², default 1e-2): see the module
    docstring.
    """
    p = np.clip(np.array(p0, float, copy=True), cw.lower, cw.upper)
    n_f, n_p = p.shape
    lam = np.full(n_f, 1e-3)
    active = np.ones(n_f, bool)
    converged = np.zeros(n_f, bool)
    n_iter = np.zeros(n_f, int)
    f, J = model_and_jacobian(cw, x, p)
    chi2 = np.einsum("fm,fm->f", w, (y - f) ** 2)
    eye = np.eye(n_p)
    for _ in range(max_iter):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        Ja, ra, wa = J[idx], (y[idx] - f[idx]), w[idx]
        JtW = Ja * wa[:, :, None]
        A = np.einsum("fmp,fmq->fpq", JtW, Ja)
        g = np.einsum("fmp,fm->fp", JtW, ra)
        # active set: a parameter at a bound whose gradient points outward is held there
        pa = p[idx]
        held = ((pa <= cw.lower) & (g < 0)) | ((pa >= cw.upper) & (g > 0))
        if held.any():
            keep = ~held
            A = A * keep[:, :, None] * keep[:, None, :]
            g = np.where(held, 0.0, g)
            A[held[:, :, None] & eye.astype(bool)[None]] = 1.0
        diag = np.einsum("fpp->fp", A)
        dmax = diag.max(axis=1, keepdims=True)
        diag = np.maximum(diag, 1e-12 * np.maximum(dmax, 1e-300))
        # Jacobi-scaled system for conditioning
        sc = np.sqrt(diag)
        As = A / sc[:, :, None] / sc[:, None, :]
        gs = g / sc
        M = As + lam[idx, None, None] * eye[None]
        try:
            step_s = np.linalg.solve(M, gs[..., None])[..., 0]
        except np.linalg.LinAlgError:
            step_s = np.einsum("fpq,fq->fp", np.linalg.pinv(M), gs)
        p_new = np.clip(p[idx] + step_s / sc, cw.lower, cw.upper)
        f_new, _ = model_and_jacobian(cw, x, p_new, jac=False)
        chi2_new = np.einsum("fm,fm->f", wa, (y[idx] - f_new) ** 2)
        better = np.isfinite(chi2_new) & (chi2_new <= chi2[idx])
        rel = np.abs(chi2[idx] - chi2_new) / np.maximum(chi2[idx], 1e-300)
        acc = idx[better]
        p[acc] = p_new[better]
        lam[acc] = np.maximum(lam[acc] / 10.0, 1e-9)
        rej = idx[~better]
        lam[rej] *= 10.0
        n_iter[idx] += 1
        done = better & ((rel < ftol) | (np.abs(chi2[idx] - chi2_new) < chi2_atol))
        converged[idx[done]] = True
        stalled = idx[~better & (lam[idx] > 1e12)]
        converged[stalled] = True  # no step lowers χ²: a (local) minimum within precision
        active[idx[done]] = False
        active[stalled] = False
        if acc.size:
            f_acc, J_acc = model_and_jacobian(cw, x, p[acc])
            f[acc] = f_acc
            J[acc] = J_acc
            chi2[acc] = chi2_new[better]
    # covariance at the solution
    JtW = J * w[:, :, None]
    A = np.einsum("fmp,fmq->fpq", JtW, J)
    diag = np.einsum("fpp->fp", A)
    sc = np.sqrt(np.where(diag > 0, diag, 1.0))
    As = A / sc[:, :, None] / sc[:, None, :]
    cov = np.linalg.pinv(As, rcond=1e-12, hermitian=True) / sc[:, :, None] / sc[:, None, :]
    npts = (w > 0).sum(axis=1)
    dof = np.maximum(npts - n_p, 1)
    var = np.einsum("fpp->fp", cov) * (chi2 / dof)[:, None]
    stderr = np.where((diag > 0) & (var >= 0), np.sqrt(np.abs(var)), np.nan)
    return BatchResult(params=p, stderr=stderr, chi2=chi2, converged=converged,
                       n_iter=n_iter, covariance=cov)
