"""XANES normalisation: E0, pre-edge line, post-edge polynomial, edge step, flattening.

The operations and defaults follow Athena / Larch ``pre_edge`` so that results compare
one to one (energies in eV, μ dimensionless):

* **E0** (``e0_method="derivative"``, default): the energy of the maximum of dμ/dE,
  found as Larch ``find_e0`` does — a first pass on the raw derivative, then a second
  pass within ±75 points on the derivative smoothed with a Lorentzian of width
  σ = ½(clip(ΔE_min, 0.01, 1) + clip(E0/25000, 0.01, 1)) eV; only points whose
  neighbours are also in the top 40 % of the derivative qualify (no single-point glitch).
  E0 is therefore always a grid energy. ``e0_method="half_step"``: the energy where the
  normalised μ (with the derivative E0's background lines) crosses ½ going up — of
  several upward crossings, the one nearest the derivative E0 — linearly interpolated
  (Athena's "fraction of edge step" = 0.5).
* **pre-edge line** ``pre(E) = a + b·E`` fitted by least squares to μ over
  ``[E0 + pre1, E0 + pre2]`` (defaults: pre1 = second energy point − E0 rounded to 5 eV,
  or to 2 eV when E0 lies within the first 20 points; pre2 = pre1 / 2). Fewer than 3
  points in the range → a constant (the mean), as in Larch.
* **post-edge polynomial** ``post(E) = pre(E) + Σ_n c_n E^n`` (n ≤ ``nnorm``) fitted to
  μ − pre over ``[E0 + norm1, E0 + norm2]`` (defaults: norm2 = E_max − E0 rounded to 5 eV,
  norm1 = min(25, norm2 / 15 rounded to 5 eV); nnorm = 2 when norm2 − norm1 ≥ 300 eV, 1
  when ≥ 30 eV, else 0). Index conventions are Larch's: the range starts at the last
  point at or below its lower bound and stops before the point nearest its upper bound.
* **edge step** ``Δμ = post(E_i0) − pre(E_i0)`` at the grid point nearest E0;
  **normalised** ``norm = (μ − pre) / Δμ``;
  **flattened** ``flat = norm − (post − pre)/Δμ + (post − pre)(E_i0)/Δμ`` above E0, and
  ``norm`` below it (Larch ``flat``).

**Already-normalised input** (``prenormalized=True``: Athena ``.nor``, SOLEIL ROCK
``normalized`` columns): the backgrounds are still fitted exactly as above, so E0, the
edge step (≈ 1; how far from 1 says how the file's normalisation differs from these
ranges) and the QC flags are measured, but ``norm`` and ``flat`` are μ as given — neither
re-normalised nor flattened — and the half-step E0 is where the given μ crosses ½.
Re-normalising such data with other ranges would rescale them by a few per cent and move
the half-step E0 (0.4 eV on the LiNiO2 ROCK series). A flat (all-zero) pre-edge fits a
zero line and is not a failure.

Short pre-edge ranges work (down to 1 point: a constant). A spectrum that is all zero,
holds NaN/inf, is constant, or has no positive edge step gets a QC flag and a reason
(:data:`QC_REASONS`) and NaN outputs; it never raises. The background fits are batched
over spectra that share an energy grid (one masked least-squares solve per fit).
Pure numpy; no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from scipy.signal import fftconvolve

__all__ = [
    "QC_CONSTANT",
    "QC_EDGE",
    "QC_NONFINITE",
    "QC_OK",
    "QC_REASONS",
    "QC_SATURATED",
    "QC_ZERO",
    "NormalizeResult",
    "find_e0",
    "normalize",
    "qc_reason_text",
    "refine_e0",
]

QC_OK = 0
QC_NONFINITE = 1  # NaN or ±inf in μ (e.g. a zero count in the denominator of ln(I0/It))
QC_ZERO = 2  # all zero
QC_CONSTANT = 4  # no variation at all
QC_SATURATED = 8  # a detector channel sits at its maximum (set by the caller from counts)
QC_EDGE = 16  # no usable edge: E0 outside the scan or edge step not positive/finite
QC_FIT = 32  # the linear-combination fit failed or is outside its energy window
QC_REASONS = {
    QC_NONFINITE: "non-finite mu (NaN/inf)",
    QC_ZERO: "all-zero mu",
    QC_CONSTANT: "constant mu (no edge)",
    QC_SATURATED: "saturated detector channel",
    QC_EDGE: "no usable edge (E0 out of range or edge step <= 0)",
    QC_FIT: "linear-combination fit failed",
}

E0Method = Literal["derivative", "half_step"]


def qc_reason_text(flag: int) -> str:
    """Human-readable reasons of a QC bit mask ('' for 0), joined with '; '."""
    return "; ".join(text for bit, text in QC_REASONS.items() if int(flag) & bit)


def _index_of(energy: np.ndarray, value: float) -> int:
    """Index of the last point at or below ``value`` (0 below the grid): Larch index_of."""
    if value < energy[0]:
        return 0
    return int(np.flatnonzero(energy <= value)[-1])


def _index_nearest(energy: np.ndarray, value: float) -> int:
    return int(np.abs(energy - value).argmin())


def _smooth_lorentzian(x: np.ndarray, y: np.ndarray, sigma: float, xstep: float) -> np.ndarray:
    """Larch ``smooth(x, y, sigma, xstep)``: y on a uniform grid of step ``xstep``, reflected
    at both ends, convolved with a normalised Lorentzian of half-width ``sigma``, and
    interpolated back onto x."""
    npad = 5
    xmin = xstep * int((x.min() - npad * xstep) / xstep)
    xmax = xstep * int((x.max() + npad * xstep) / xstep)
    npts = min(1 + int(abs(xmax - xmin + xstep * 0.1) / xstep), 50 * x.size)
    x0 = np.linspace(xmin, xmax, npts)
    y0 = np.interp(x0, x, y)
    s = sigma / xstep
    wx = np.arange(2 * npts)
    win = (s / np.pi) / ((wx - npts) ** 2 + s * s)
    y1 = np.concatenate((y0[npts:0:-1], y0, y0[-1 : -npts - 1 : -1]))
    y2 = fftconvolve(y1, win / win.sum(), mode="valid")
    if y2.size > x0.size:
        nex = (y2.size - x0.size) // 2
        y2 = y2[nex:][: x0.size]
    return np.interp(x, x0, y2)


def _energy_step(energy: np.ndarray, frac_ignore: float = 0.01, nave: int = 10) -> float:
    """Typical energy step: Larch find_energy_step (smallest steps ignored, next averaged)."""
    nskip = int(frac_ignore * energy.size)
    head = energy[:-1]
    ediff = np.diff(head[nskip : head.size - nskip] if nskip else head)
    ediff = np.sort(ediff)
    return float(ediff[nskip : nskip + nave].mean())


def _finde0(energy: np.ndarray, mu: np.ndarray, estep: float | None,
            use_smooth: bool) -> tuple[float, int, float]:
    if estep is None:
        estep = _energy_step(energy)
    n = energy.size
    nmin = max(3, int(n * 0.02))
    with np.errstate(invalid="ignore", divide="ignore"):
        dmu = np.gradient(mu) / np.gradient(energy)
    if use_smooth:
        dmu = _smooth_lorentzian(energy, dmu, sigma=estep, xstep=estep)
    dmu = np.where(np.isfinite(dmu), dmu, -1.0)
    inner = dmu[nmin:-nmin] if n > 2 * nmin else dmu
    dm_min = inner.min()
    dm_ptp = max(1e-10, float(np.ptp(inner)))
    dmu = (dmu - dm_min) / dm_ptp
    dhigh = 0.60 if n > 20 else 0.30
    high = np.flatnonzero(dmu > dhigh)
    if high.size < 3:
        for _ in range(2):
            if high.size > 3:
                break
            dhigh *= 0.5
            high = np.flatnonzero(dmu > dhigh)
    if high.size < 3:
        high = np.flatnonzero(np.isfinite(dmu))
    is_high = np.zeros(n + 2, dtype=bool)
    is_high[high + 1] = True
    idx = np.arange(n)
    ok = is_high[idx + 1] & is_high[idx] & is_high[idx + 2] & (idx >= nmin) & (idx <= n - nmin)
    if not ok.any():
        return float(energy[0]), 0, estep
    cand = idx[ok]
    imax = int(cand[np.argmax(dmu[cand])])
    if dmu[imax] <= 0:
        return float(energy[0]), 0, estep
    return float(energy[imax]), imax, estep


def find_e0(energy: np.ndarray, mu: np.ndarray) -> float:
    """E0 (eV) of one spectrum: the maximum of dμ/dE, as Larch ``find_e0``.

    ``energy`` (eV) strictly increasing, ``mu`` the same length, finite. First the raw
    derivative gives a point ie0; then the derivative smoothed (Lorentzian, σ in eV, see
    the module docstring) over the points ie0 ± 75 gives E0, a grid energy.
    """
    e = np.asarray(energy, dtype=float)
    m = np.asarray(mu, dtype=float)
    e1, ie0, estep1 = _finde0(e, m, estep=None, use_smooth=False)
    istart = max(3, ie0 - 75)
    istop = min(ie0 + 75, e.size - 3)
    if ie0 < 0.05 * e.size:
        e1 = float(e.mean())
        istart = max(3, ie0 - 20)
        istop = e.size - 3
    estep = 0.5 * (max(0.01, min(1.0, estep1)) + max(0.01, min(1.0, e1 / 25000.0)))
    e0, ix, _ = _finde0(e[istart:istop], m[istart:istop], estep=estep, use_smooth=True)
    if ix < 1:
        e0 = float(e[istart + 2])
    return float(e0)


def refine_e0(energy: np.ndarray, mu: np.ndarray, e0: float, half_width_eV: float = 1.0
              ) -> float:
    """Sub-grid E0 (eV): the vertex of a parabola fitted by least squares to dμ/dE over
    ``e0 ± half_width_eV`` (at least 3 points, else ``e0`` unchanged). For a low-noise
    curve (a mean foil), where the grid spacing would otherwise quantise E0."""
    e = np.asarray(energy, dtype=float)
    d = np.gradient(np.asarray(mu, dtype=float), e)
    sel = np.abs(e - e0) <= half_width_eV
    if sel.sum() < 3:
        k = _index_nearest(e, e0)
        sel = np.zeros(e.size, dtype=bool)
        sel[max(k - 1, 0) : k + 2] = True
        if sel.sum() < 3:
            return float(e0)
    c2, c1, _ = np.polyfit(e[sel] - e0, d[sel], 2)
    if c2 >= 0:
        return float(e0)
    return float(e0 + np.clip(-c1 / (2 * c2), -half_width_eV, half_width_eV))


@dataclass
class NormalizeResult:
    """Normalisation of n spectra on one energy grid (m points); arrays (n, m) or (n,).

    ``e0`` (eV), ``edge_step`` (μ units), ``pre_edge``/``post_edge`` (μ units, the fitted
    background lines on the whole grid), ``norm`` and ``flat`` (dimensionless, edge step 1),
    ``qc_flag`` (bit mask, :data:`QC_REASONS`) and ``qc_reason`` (text; '' when fine);
    flagged spectra hold NaN. ``pre1``..``norm2`` (eV relative to E0) and ``nnorm`` are the
    ranges and order actually used (per spectrum, since defaults depend on E0).
    """

    energy: np.ndarray
    e0: np.ndarray
    edge_step: np.ndarray
    pre_edge: np.ndarray
    post_edge: np.ndarray
    norm: np.ndarray
    flat: np.ndarray
    qc_flag: np.ndarray
    qc_reason: list[str]
    pre1: np.ndarray
    pre2: np.ndarray
    norm1: np.ndarray
    norm2: np.ndarray
    nnorm: np.ndarray
    e0_method: str = "derivative"
    options: dict[str, object] = field(default_factory=dict)

    @property
    def ok(self) -> np.ndarray:
        """True where the spectrum passed QC."""
        return self.qc_flag == QC_OK


def _batched_polyfit(x: np.ndarray, y: np.ndarray, mask: np.ndarray, order: np.ndarray,
                     max_order: int) -> np.ndarray:
    """Least-squares polynomial coefficients (n, max_order+1), lowest power first, of y (n, m)
    over the points where mask (n, m); per row the order is ``order[i]`` (higher powers 0).

    Powers of a centred, scaled x keep the normal equations well conditioned; the
    coefficients returned are for the raw x.
    """
    n, _ = y.shape
    xc = 0.5 * (x.min() + x.max())
    xs = max(0.5 * (x.max() - x.min()), 1e-12)
    u = (x - xc) / xs
    powers = np.arange(max_order + 1)
    V = u[None, :] ** powers[:, None]  # (p, m)
    use = powers[None, :] <= order[:, None]  # (n, p)
    w = mask.astype(float)
    A = np.einsum("pm,qm,nm->npq", V, V, w)
    b = np.einsum("pm,nm->np", V, np.where(mask, y, 0.0))
    # drop unused powers: identity rows/cols
    eye = np.eye(max_order + 1)[None]
    keep = use[:, :, None] & use[:, None, :]
    A = np.where(keep, A, eye)
    b = np.where(use, b, 0.0)
    try:
        cu = np.linalg.solve(A, b[..., None])[..., 0]
    except np.linalg.LinAlgError:
        cu = np.stack([np.linalg.lstsq(A[i], b[i], rcond=None)[0] for i in range(n)])
    # convert coefficients of u = (x - xc)/xs into powers of x
    out = np.zeros_like(cu)
    from math import comb
    for p in range(max_order + 1):
        # (x - xc)^p / xs^p = Σ_j C(p, j) x^j (-xc)^(p-j) / xs^p
        for j in range(p + 1):
            out[:, j] += cu[:, p] * comb(p, j) * (-xc) ** (p - j) / xs**p
    return out


def _polyval(coefs: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Σ_j coefs[:, j] x^j for each row (n, m)."""
    return np.einsum("nj,jm->nm", coefs, x[None, :] ** np.arange(coefs.shape[1])[:, None])


def _input_qc(mu: np.ndarray) -> np.ndarray:
    flag = np.zeros(mu.shape[0], dtype=np.int64)
    finite = np.isfinite(mu)
    flag |= np.where(~finite.all(axis=1), QC_NONFINITE, 0)
    safe = np.where(finite, mu, 0.0)
    zero = (safe == 0).all(axis=1) & finite.all(axis=1)
    flag |= np.where(zero, QC_ZERO, 0)
    const = (np.ptp(safe, axis=1) == 0) & ~zero & finite.all(axis=1)
    flag |= np.where(const, QC_CONSTANT, 0)
    return flag


def normalize(
    energy: np.ndarray,
    mu: np.ndarray,
    *,
    e0: float | np.ndarray | None = None,
    e0_method: E0Method = "derivative",
    pre1: float | None = None,
    pre2: float | None = None,
    norm1: float | None = None,
    norm2: float | None = None,
    nnorm: int | None = None,
    qc_flag: np.ndarray | None = None,
    prenormalized: bool = False,
) -> NormalizeResult:
    """Normalise spectra μ(E) on a shared energy grid (Larch ``pre_edge`` conventions).

    ``energy`` (m,) eV, strictly increasing; ``mu`` (m,) or (n, m). ``e0`` (eV) fixes E0
    (scalar or one per spectrum); otherwise ``e0_method`` finds it. ``pre1``, ``pre2``,
    ``norm1``, ``norm2`` (eV relative to E0) and ``nnorm`` (0–3) default as in Larch (see
    the module docstring). ``qc_flag`` (n,) carries flags already raised by the caller
    (e.g. :data:`QC_SATURATED` from the counts); flagged spectra are skipped (NaN out).
    ``prenormalized``: μ is already normalised; ``norm``/``flat`` are μ as given (see the
    module docstring), the edge step and E0 are still measured.
    """
    e = np.asarray(energy, dtype=float)
    y = np.atleast_2d(np.asarray(mu, dtype=float))
    if e.ndim != 1 or y.shape[1] != e.size:
        raise ValueError(f"normalize: expected energy (m,) and mu (n, m) with the same m; "
                         f"found energy {e.shape}, mu {np.shape(mu)}")
    if e.size < 5 or not np.all(np.diff(e) > 0):
        raise ValueError(f"normalize: expected at least 5 strictly increasing energies, found "
                         f"{e.size} point(s){'' if np.all(np.diff(e) > 0) else ' not increasing'}")
    if nnorm is not None and not 0 <= int(nnorm) <= 3:
        raise ValueError(f"normalize: nnorm must be 0..3, found {nnorm}")
    n, m = y.shape
    flag = _input_qc(y)
    if qc_flag is not None:
        flag |= np.asarray(qc_flag, dtype=np.int64)
    e0_given = None if e0 is None else np.broadcast_to(np.asarray(e0, dtype=float), (n,))

    e0s = np.full(n, np.nan)
    for i in np.flatnonzero(flag == 0):
        if e0_given is not None and e[1] <= e0_given[i] <= e[-2]:
            e0s[i] = e0_given[i]
        else:
            e0s[i] = find_e0(e, y[i])
    good = flag == 0
    flag |= np.where(good & ~((e0s > e[1]) & (e0s < e[-2])), QC_EDGE, 0)
    good = flag == 0

    # per-spectrum ranges (eV relative to E0) and index windows, Larch's rules
    P1 = np.zeros(n)
    P2 = np.zeros(n)
    N1 = np.zeros(n)
    N2 = np.zeros(n)
    NN = np.zeros(n, dtype=int)
    ie0 = np.zeros(n, dtype=int)
    pre_mask = np.zeros((n, m), dtype=bool)
    post_mask = np.zeros((n, m), dtype=bool)
    npre = np.ones(n, dtype=int)
    for i in np.flatnonzero(good):
        z = e0s[i]
        k0 = _index_nearest(e, z)
        ie0[i] = k0
        p1 = pre1 if pre1 is not None else (
            5.0 * round((e[1] - z) / 5.0) if k0 > 20 else 2.0 * round((e[1] - z) / 2.0))
        p1 = max(p1, e.min() - z)
        p2 = pre2 if pre2 is not None else 0.5 * p1
        if p1 > p2:
            p1, p2 = p2, p1
        a, b = _index_of(e - z, p1), _index_of(e - z, p2)
        if b - a < 3:
            npre[i] = 0
        a, b = _index_of(e, p1 + z), _index_nearest(e, p2 + z)
        if npre[i] == 0 and b == a:
            b = a + 1
        if npre[i] == 1 and b - a < 2:
            b = min(m, a + 2)
        pre_mask[i, a:b] = True
        q2 = norm2 if norm2 is not None else 5.0 * round((e.max() - z) / 5.0)
        if q2 < 0:
            q2 = e.max() - z - q2
        q2 = min(q2, e.max() - z)
        q1 = norm1 if norm1 is not None else min(25.0, 5.0 * round(q2 / 15.0))
        if q1 > q2:
            q1, q2 = q2, q1
        q1 = min(q1, q2 - 2)
        if nnorm is None:
            nn = 2 if q2 - q1 >= 300 else (1 if q2 - q1 >= 30 else 0)
        else:
            nn = int(nnorm)
        c, d = _index_of(e, q1 + z), _index_nearest(e, q2 + z)
        if c > m - 3:
            c = m - 3
        if d - c < 2:
            c, nn = c - 2, 0
        elif d - c < 5:
            nn = min(1, nn)
        post_mask[i, c:d] = True
        P1[i], P2[i], N1[i], N2[i], NN[i] = p1, p2, q1, q2, nn

    ys = np.where(good[:, None], y, 0.0)
    pre_c = _batched_polyfit(e, ys, pre_mask & good[:, None], npre, 1)
    pre_edge = _polyval(pre_c, e)
    post_c = _batched_polyfit(e, ys - pre_edge, post_mask & good[:, None], NN, 3)
    post_edge = pre_edge + _polyval(post_c, e)
    rows = np.arange(n)
    step = post_edge[rows, ie0] - pre_edge[rows, ie0]
    flag |= np.where(good & ~(np.isfinite(step) & (step > 0)), QC_EDGE, 0)
    good = flag == 0
    safe_step = np.where(good, step, 1.0)
    norm = (y - pre_edge) / safe_step[:, None]
    resid = (post_edge - pre_edge) / safe_step[:, None]
    flat = norm - resid + resid[rows, ie0][:, None]
    below = np.arange(m)[None, :] < ie0[:, None]
    flat = np.where(below, norm, flat)
    if prenormalized:
        norm = y.copy()
        flat = y.copy()

    if e0_method == "half_step":
        for i in np.flatnonzero(good):
            up = np.flatnonzero((norm[i, :-1] < 0.5) & (norm[i, 1:] >= 0.5))
            if up.size:
                # the crossing nearest the derivative E0
                j = int(up[np.argmin(np.abs(e[up] - e0s[i]))])
                t = (0.5 - norm[i, j]) / (norm[i, j + 1] - norm[i, j])
                e0s[i] = e[j] + t * (e[j + 1] - e[j])
    elif e0_method != "derivative":
        raise ValueError(f"normalize: e0_method must be 'derivative' or 'half_step', found "
                         f"{e0_method!r}")

    nan = ~good
    for arr in (norm, flat, pre_edge, post_edge):
        arr[nan] = np.nan
    e0s[nan] = np.nan
    step = np.where(good, step, np.nan)
    return NormalizeResult(
        energy=e, e0=e0s, edge_step=step, pre_edge=pre_edge, post_edge=post_edge, norm=norm,
        flat=flat, qc_flag=flag, qc_reason=[qc_reason_text(f) for f in flag],
        pre1=np.where(good, P1, np.nan), pre2=np.where(good, P2, np.nan),
        norm1=np.where(good, N1, np.nan), norm2=np.where(good, N2, np.nan),
        nnorm=np.where(good, NN, -1), e0_method=e0_method,
        options={"pre1": pre1, "pre2": pre2, "norm1": norm1, "norm2": norm2, "nnorm": nnorm,
                 "prenormalized": bool(prenormalized)},
    )
