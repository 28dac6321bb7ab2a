"""Peak models for XRD time series: profiles, windows, constraints, and the lmfit reference path.

Pure: numpy in, numpy out (no I/O, no Prefect). Positions are configured as d-spacings (Å)
and converted to the pattern's radial unit with the wavelength λ (Å):

    q = 2π / d  (``q_A^-1``),   2θ = 2 asin(λ / 2d)  (``2th_deg``, degrees),   d (``d_A``).

Profile (unit area, FWHM w, Lorentzian fraction η, asymmetry α; a split pseudo-Voigt whose
half-widths are w(1 − α)/2 left of the centre c and w(1 + α)/2 right of it):

    f(x) = A / (w k(η)) · [η / (1 + u²) + (1 − η) exp(−ln 2 · u²)],
    u = 2 (x − c) / (w s),  s = 1 − α (x < c) or 1 + α (x ≥ c),
    k(η) = η π/2 + (1 − η) √(π / ln 2) / 2,

so ∫ f dx = A for every η and α. ``gaussian`` is η = 0, ``lorentzian`` η = 1,
``pseudo_voigt`` α = 0, ``split_pseudo_voigt`` α free. The background of a window is a
polynomial Σ_k b_k t^k in t = (x − x_mid) / x_half.

Constraints (one free parameter can drive several peaks): within a window each peak has a
free centre and area unless it is a *satellite* of a main peak of its phase (fixed area
ratio ``ratio``, centre tied to the main peak's by the ratio of nominal positions); all peaks
of a phase in a window share one FWHM (``shared_width``); η (and α) are shared by all
peaks of a window. Centres are bounded to ±``max_shift`` (relative, in d) about the nominal
position; areas are ≥ 0; FWHM in [fwhm_min, fwhm_max].

Fitting over time (:func:`fit_patterns`): frame n starts from frame n − 1 (``sequential``,
the lmfit reference path) or every frame of a block starts from the block's own first frame
(``batch``, :mod:`operando.xrd.batchfit`); a peak's centre and width are carried forward
only while its signal-to-noise ratio area/σ(area) ≥ ``snr_threshold`` (otherwise they are
reset to the nominal values), areas and background start from a per-frame linear least
squares, and each window follows the drift of its peaks (the window is shifted by the
median relative d-shift of its detected main peaks).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "PROFILES",
    "STATUS_MEANINGS",
    "CompiledWindow",
    "FitOptions",
    "PatternFit",
    "PeakDef",
    "WindowDef",
    "compile_window",
    "d_to_unit",
    "dtwotheta_dx",
    "fit_patterns",
    "peak_jacobian",
    "peak_profile",
    "unit_to_d",
    "wavelength_from_poni",
]

PROFILES = ("gaussian", "lorentzian", "pseudo_voigt", "split_pseudo_voigt")
UNITS = ("q_A^-1", "2th_deg", "d_A")
RADIAL_UNITS = {"q": "q_A^-1", "two_theta": "2th_deg", "d": "d_A"}

#: status code → meaning, per (frame, window)
STATUS_MEANINGS = {
    0: "ok",
    1: "no peak above the SNR threshold",
    2: "too few finite data points (NaN pattern or gaps)",
    3: "window outside the radial range of the data",
    4: "not converged within max_iter",
    5: "fit error",
}
LN2 = float(np.log(2.0))
_KG = 0.5 * float(np.sqrt(np.pi / LN2))  # area of a unit-height Gaussian of FWHM 1
_KL = 0.5 * float(np.pi)  # area of a unit-height Lorentzian of FWHM 1


# --------------------------------------------------------------------------- units


def wavelength_from_poni(poni_text: str) -> float:
    """λ (Å) from the text of a pyFAI PONI file (``Wavelength: <metres>``)."""
    for line in poni_text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() == "wavelength":
            return float(value) * 1e10
    raise ValueError("expected a 'Wavelength:' line in the PONI text, found none")


def d_to_unit(d_A: np.ndarray | float, unit: str, wavelength_A: float) -> np.ndarray:
    """d (Å) → radial unit: q = 2π/d (1/Å), 2θ = 2 asin(λ/2d) (deg), or d."""
    d = np.asarray(d_A, dtype=float)
    if unit == "q_A^-1":
        return 2.0 * np.pi / d
    if unit == "2th_deg":
        with np.errstate(invalid="ignore"):
            return np.degrees(2.0 * np.arcsin(wavelength_A / (2.0 * d)))
    if unit == "d_A":
        return d
    raise ValueError(f"unit: expected one of {UNITS}, found {unit!r}")


def unit_to_d(x: np.ndarray | float, unit: str, wavelength_A: float) -> np.ndarray:
    """Radial value → d (Å): d = 2π/q, λ / (2 sin θ), or d."""
    v = np.asarray(x, dtype=float)
    if unit == "q_A^-1":
        return 2.0 * np.pi / v
    if unit == "2th_deg":
        return wavelength_A / (2.0 * np.sin(np.radians(v) / 2.0))
    if unit == "d_A":
        return v
    raise ValueError(f"unit: expected one of {UNITS}, found {unit!r}")


def dtwotheta_dx(x: np.ndarray | float, unit: str, wavelength_A: float) -> np.ndarray:
    """|d(2θ in degrees)/dx| at radial value x: converts widths and areas to 2θ degrees.

    q: (360/π) (λ/4π) / cos θ;  d: (360/π) λ / (2 d² cos θ);  2θ: 1.
    """
    v = np.asarray(x, dtype=float)
    if unit == "2th_deg":
        return np.ones_like(v)
    d = unit_to_d(v, unit, wavelength_A)
    cos_t = np.sqrt(np.clip(1.0 - (wavelength_A / (2.0 * d)) ** 2, 1e-12, None))
    if unit == "q_A^-1":
        return np.degrees(2.0 * wavelength_A / (4.0 * np.pi) / cos_t)
    if unit == "d_A":
        return np.degrees(wavelength_A / (d**2 * cos_t))
    raise ValueError(f"unit: expected one of {UNITS}, found {unit!r}")


def _dx_dq(x: np.ndarray | float, unit: str, wavelength_A: float) -> np.ndarray:
    """|dx/dq| at radial value x (to turn a FWHM in q into the pattern's unit).

    d: 2π/q²;  2θ: (d2θ/dq) = (360/π) (λ/4π) / cos θ.
    """
    v = np.asarray(x, dtype=float)
    if unit == "q_A^-1":
        return np.ones_like(v)
    q = d_to_unit(unit_to_d(v, unit, wavelength_A), "q_A^-1", wavelength_A)
    if unit == "d_A":
        return 2.0 * np.pi / q**2
    # |dx/dq| = |d2θ/dq| / |d2θ/dx| (the 2θ route is exact for any x)
    return dtwotheta_dx(q, "q_A^-1", wavelength_A) / dtwotheta_dx(v, unit, wavelength_A)


# --------------------------------------------------------------------------- profile


def _k(eta: np.ndarray | float) -> np.ndarray:
    return np.asarray(eta) * _KL + (1.0 - np.asarray(eta)) * _KG


def peak_profile(x: np.ndarray, center: float | np.ndarray, area: float | np.ndarray,
                 fwhm: float | np.ndarray, eta: float | np.ndarray = 0.5,
                 asym: float | np.ndarray = 0.0) -> np.ndarray:
    """Split pseudo-Voigt of area ``area`` (see the module docstring); broadcasts."""
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


# --------------------------------------------------------------------------- definitions


@dataclass(frozen=True)
class PeakDef:
    """One reflection in a fit window.

    ``d_A``: nominal d-spacing; ``intensity``: integrated intensity (2θ-degree area) of this
    reflection for a phase fraction of 1, on a scale common to all phases (phase fractions);
    ``satellite_of``: name of the main peak of the same phase whose area (× ``ratio``),
    width and relative shift this peak follows.
    """

    name: str
    phase: str
    d_A: float
    hkl: tuple[int, int, int] | None = None
    intensity: float = 1.0
    satellite_of: str | None = None
    ratio: float = 1.0


@dataclass(frozen=True)
class WindowDef:
    """A radial window fitted as one model: peaks plus a polynomial background.

    ``d_range_A`` (d_min, d_max) in Å; ``background_order`` 0–3.
    """

    name: str
    d_range_A: tuple[float, float]
    peaks: tuple[PeakDef, ...]
    background_order: int = 1


@dataclass(frozen=True)
class FitOptions:
    """How windows are fitted. Widths are in q (1/Å, wavelength-independent); ``max_shift``
    is relative (Δd/d) and may be set per phase in ``max_shift_by_phase``."""

    profile: str = "pseudo_voigt"
    eta: float | None = None  # fixed Lorentzian fraction; None = free (shared per window)
    shared_width: bool = True
    fwhm_guess_q: float = 0.025
    fwhm_min_q: float = 0.002
    fwhm_max_q: float = 0.25
    max_shift: float = 0.01
    max_shift_by_phase: dict[str, float] = field(default_factory=dict)
    snr_threshold: float = 3.0
    max_iter: int = 200
    follow: bool = True
    joint: bool = False  # all windows of a frame as one model: one scale and FWHM per phase

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise ValueError(f"profile: expected one of {PROFILES}, found {self.profile!r}")


@dataclass
class CompiledWindow:
    """One or more windows (segments) laid out for one radial axis: data points, free
    parameters and index maps.

    Data point m is ``radial[idx[m]]`` of segment ``seg[m]``. Peak j has centre
    k_j p[ci_j], area r_j p[ai_j], FWHM kw_j p[wi_j], η = p[ei] (ei ≥ 0) or ``eta_const``,
    α = p[si] (si ≥ 0) or 0; the background of segment s is Σ_o p[b] t_s^o over the
    parameters b with ``bg_seg[b] = s`` (o = ``bg_order``). ``param_seg`` is the segment of
    each parameter (−1: shared by all segments, joint model).
    """

    name: str
    idx: np.ndarray
    x: np.ndarray
    seg: np.ndarray
    seg_mid: np.ndarray
    seg_half: np.ndarray
    peak_names: list[str]
    phases: list[str]
    peak_seg: np.ndarray
    c_nom: np.ndarray
    ci: np.ndarray
    ai: np.ndarray
    wi: np.ndarray
    k: np.ndarray
    r: np.ndarray
    kw: np.ndarray
    ei: int
    eta_const: float
    si: int
    bg_idx: np.ndarray
    bg_seg: np.ndarray
    bg_order: np.ndarray
    names: list[str]
    kinds: list[str]
    param_seg: np.ndarray
    p_default: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    main: np.ndarray  # bool per peak: not a satellite

    @property
    def n_params(self) -> int:
        return len(self.names)

    @property
    def n_points(self) -> int:
        return int(self.idx.size)

    @property
    def n_segments(self) -> int:
        return int(self.seg_mid.size)

    def peak_slice(self, j: int) -> slice:
        """The data points peak j is modelled on: those of its own segment (a reflection
        listed in two windows is two peaks, each seen only in its window's data)."""
        if self.n_segments == 1:
            return slice(None)
        g = int(self.peak_seg[j])
        lo = int(np.searchsorted(self.seg, g, side="left"))
        return slice(lo, int(np.searchsorted(self.seg, g, side="right")))

    @property
    def lo(self) -> int:
        return int(self.idx[0]) if self.idx.size else 0

    @property
    def hi(self) -> int:
        return int(self.idx[-1]) + 1 if self.idx.size else 0

    @property
    def x_mid(self) -> float:
        return float(self.seg_mid[0])

    @property
    def x_half(self) -> float:
        return float(self.seg_half[0])


def compile_window(window: WindowDef | Sequence[WindowDef], radial: np.ndarray, unit: str,
                   wavelength_A: float, options: FitOptions, *,
                   exclude_phases: Sequence[str] = (),
                   shift: float | Sequence[float] = 1.0) -> CompiledWindow:
    """Lay ``window`` (one WindowDef, or several fitted as one joint model) out on
    ``radial`` (ascending, in ``unit``).

    ``shift`` (one per window) scales a window's d-range (a window following its peaks); the
    centre bounds stay at nominal ± ``max_shift``. Peaks of ``exclude_phases`` are left out.
    With ``options.joint`` the areas of all peaks of a phase are tied to one scale
    parameter (area = scale × ``intensity`` / (d2θ/dx) at the nominal position, i.e. the
    configured 2θ-area for a phase fraction of 1 times the scale), and their widths to one
    FWHM in q per phase (FWHM_x = FWHM_q · dx/dq at the nominal position); η (and α) are
    shared by all segments. Centres stay free per main peak and window.
    """
    wins = (window,) if isinstance(window, WindowDef) else tuple(window)
    shifts = np.broadcast_to(np.asarray(shift, float), (len(wins),))
    joint = options.joint
    rad = np.asarray(radial, dtype=float)

    names: list[str] = []
    kinds: list[str] = []
    pseg: list[int] = []
    p0: list[float] = []
    lower: list[float] = []
    upper: list[float] = []

    def add(name: str, kind: str, v: float, lo_b: float, hi_b: float, sg: int) -> int:
        names.append(name)
        kinds.append(kind)
        pseg.append(sg)
        p0.append(v)
        lower.append(lo_b)
        upper.append(hi_b)
        return len(names) - 1

    idx_l, seg_l, mids, halves = [], [], [], []
    peak_names: list[str] = []
    phases: list[str] = []
    peak_seg: list[int] = []
    c_nom_l: list[float] = []
    ci_l: list[int] = []
    ai_l: list[int] = []
    wi_l: list[int] = []
    k_l: list[float] = []
    r_l: list[float] = []
    kw_l: list[float] = []
    main_l: list[bool] = []
    shared_area: dict[str, int] = {}
    shared_width: dict[str, int] = {}
    for sg, (win, sh) in enumerate(zip(wins, shifts, strict=True)):
        peaks = [p for p in win.peaks if p.phase not in exclude_phases]
        by_name = {p.name: p for p in peaks}
        lo_x, hi_x = sorted(float(v) for v in d_to_unit(np.array(win.d_range_A) * sh, unit,
                                                         wavelength_A))
        lo = int(np.searchsorted(rad, lo_x, side="left"))
        hi = int(np.searchsorted(rad, hi_x, side="right"))
        idx_l.append(np.arange(lo, hi))
        seg_l.append(np.full(hi - lo, sg))
        mids.append(0.5 * (lo_x + hi_x))
        halves.append(max(0.5 * (hi_x - lo_x), 1e-12))
        c_nom = d_to_unit(np.array([p.d_A for p in peaks]), unit, wavelength_A) if peaks \
            else np.zeros(0)
        nominal_shifted = d_to_unit(np.array([p.d_A * sh for p in peaks]), unit,
                                    wavelength_A) if peaks else np.zeros(0)
        n = len(peaks)
        base = len(peak_names)
        ci = np.zeros(n, int)
        ai = np.zeros(n, int)
        wi = np.zeros(n, int)
        kk = np.ones(n)
        rr = np.ones(n)
        kw = np.ones(n)
        width_param: dict[str, int] = {}
        index = {p.name: j for j, p in enumerate(peaks)}
        order = sorted(range(n), key=lambda j: peaks[j].satellite_of is not None)
        pre_s = f"s{sg}_" if len(wins) > 1 else ""
        for j in order:
            p = peaks[j]
            pid = f"{pre_s}p{j}_"
            conv_q = float(_dx_dq(c_nom[j], unit, wavelength_A))
            if joint:
                if p.phase not in shared_area:
                    shared_area[p.phase] = add(f"{_ident(p.phase)}_scale", "area", 0.0, 0.0,
                                               np.inf, -1)
                    shared_width[p.phase] = add(
                        f"{_ident(p.phase)}_fwhm_q", "fwhm", options.fwhm_guess_q,
                        options.fwhm_min_q, options.fwhm_max_q, -1)
                ai[j] = shared_area[p.phase]
                rr[j] = p.intensity / float(dtwotheta_dx(c_nom[j], unit, wavelength_A))
                wi[j] = shared_width[p.phase]
                kw[j] = conv_q
            if p.satellite_of is not None:
                ref = by_name.get(p.satellite_of)
                if ref is None:
                    raise ValueError(f"window {win.name!r}: peak {p.name!r} is a satellite "
                                     f"of {p.satellite_of!r}, which is not a peak of this "
                                     "window")
                if ref.satellite_of is not None:
                    raise ValueError(f"window {win.name!r}: peak {p.name!r} is a satellite "
                                     f"of {ref.name!r}, itself a satellite")
                m = index[ref.name]
                ci[j] = ci[m]
                kk[j] = c_nom[j] / c_nom[m]
                if not joint:
                    ai[j], wi[j] = ai[m], wi[m]
                    rr[j] = p.ratio
                continue
            shift_max = options.max_shift_by_phase.get(p.phase, options.max_shift)
            bounds = sorted(float(v) for v in d_to_unit(
                np.array([p.d_A * (1 - shift_max), p.d_A * (1 + shift_max)]), unit,
                wavelength_A))
            c0 = float(np.clip(nominal_shifted[j], *bounds))
            ci[j] = add(pid + "center", "center", c0, *bounds, sg)
            if joint:
                continue
            ai[j] = add(pid + "area", "area", 0.0, 0.0, np.inf, sg)
            conv = float(_dx_dq(c0, unit, wavelength_A))
            if options.shared_width and p.phase in width_param:
                wi[j] = width_param[p.phase]
            else:
                wi[j] = add(pid + "fwhm", "fwhm", options.fwhm_guess_q * conv,
                            options.fwhm_min_q * conv, options.fwhm_max_q * conv, sg)
                width_param.setdefault(p.phase, wi[j])
        peak_names += [p.name for p in peaks]
        phases += [p.phase for p in peaks]
        peak_seg += [sg] * n
        c_nom_l += [float(v) for v in c_nom]
        ci_l += ci.tolist()
        ai_l += ai.tolist()
        wi_l += wi.tolist()
        k_l += kk.tolist()
        r_l += rr.tolist()
        kw_l += kw.tolist()
        main_l += [p.satellite_of is None for p in peaks]
        del base
    n_all = len(peak_names)
    ei = -1
    eta_const = {"gaussian": 0.0, "lorentzian": 1.0}.get(options.profile,
                                                         options.eta if options.eta is not None
                                                         else 0.5)
    shared = -1 if len(wins) > 1 else 0
    if options.profile in ("pseudo_voigt", "split_pseudo_voigt") and options.eta is None \
            and n_all:
        ei = add("p0_eta", "eta", 0.5, 0.0, 1.0, shared)
    si = -1
    if options.profile == "split_pseudo_voigt" and n_all:
        si = add("p0_asym", "asym", 0.0, -0.5, 0.5, shared)
    bg_idx, bg_seg, bg_order = [], [], []
    for sg, win in enumerate(wins):
        pre_s = f"s{sg}_" if len(wins) > 1 else ""
        for o in range(win.background_order + 1):
            bg_idx.append(add(f"{pre_s}bg_c{o}", "bg", 0.0, -np.inf, np.inf, sg))
            bg_seg.append(sg)
            bg_order.append(o)
    idx = np.concatenate(idx_l) if idx_l else np.zeros(0, int)
    return CompiledWindow(
        name="+".join(w.name for w in wins), idx=idx, x=rad[idx],
        seg=np.concatenate(seg_l) if seg_l else np.zeros(0, int),
        seg_mid=np.array(mids, float), seg_half=np.array(halves, float),
        peak_names=peak_names, phases=phases, peak_seg=np.array(peak_seg, int),
        c_nom=np.array(c_nom_l, float), ci=np.array(ci_l, int), ai=np.array(ai_l, int),
        wi=np.array(wi_l, int), k=np.array(k_l, float), r=np.array(r_l, float),
        kw=np.array(kw_l, float), ei=ei, eta_const=float(eta_const), si=si,
        bg_idx=np.array(bg_idx, int), bg_seg=np.array(bg_seg, int),
        bg_order=np.array(bg_order, int), names=names, kinds=kinds,
        param_seg=np.array(pseg, int), p_default=np.array(p0, float),
        lower=np.array(lower, float), upper=np.array(upper, float),
        main=np.array(main_l, bool),
    )


def _ident(name: str) -> str:
    """A Python identifier from a phase name (lmfit parameter names)."""
    out = "".join(c if c.isalnum() else "_" for c in name)
    return out if out[:1].isalpha() else f"ph_{out}"


def peak_values(cw: CompiledWindow, p: np.ndarray) -> dict[str, np.ndarray]:
    """Per-peak (…, n_peaks) centre, area, fwhm, eta, asym from parameters p (…, P)."""
    p = np.asarray(p, float)
    eta = p[..., cw.ei] if cw.ei >= 0 else np.full(p.shape[:-1], cw.eta_const)
    asym = p[..., cw.si] if cw.si >= 0 else np.zeros(p.shape[:-1])
    n = len(cw.peak_names)
    return {
        "center": p[..., cw.ci] * cw.k,
        "area": p[..., cw.ai] * cw.r,
        "fwhm": p[..., cw.wi] * cw.kw,
        "eta": np.repeat(np.asarray(eta)[..., None], n, axis=-1),
        "asym": np.repeat(np.asarray(asym)[..., None], n, axis=-1),
    }


def peak_stderr(cw: CompiledWindow, s: np.ndarray) -> dict[str, np.ndarray]:
    """Standard errors per peak from parameter standard errors s (…, P) (linear maps)."""
    s = np.asarray(s, float)
    n = len(cw.peak_names)
    eta = s[..., cw.ei] if cw.ei >= 0 else np.zeros(s.shape[:-1])
    return {
        "center": s[..., cw.ci] * cw.k,
        "area": s[..., cw.ai] * cw.r,
        "fwhm": s[..., cw.wi] * cw.kw,
        "eta": np.repeat(np.asarray(eta)[..., None], n, axis=-1),
    }


def background_basis(cw: CompiledWindow, x: np.ndarray) -> np.ndarray:
    """(M, n_bg) polynomial basis t_s^o, t_s = (x − x_mid,s)/x_half,s, of the segment s of
    each point (0 outside it); ``x`` is ``cw.x`` (or any x of a one-segment window)."""
    x = np.asarray(x, float)
    seg = cw.seg if (cw.n_segments > 1 or x.shape == cw.seg.shape) else \
        np.zeros(x.shape, int)
    t = (x - cw.seg_mid[seg]) / cw.seg_half[seg]
    return np.where(seg[:, None] == cw.bg_seg[None, :], t[:, None] ** cw.bg_order[None, :],
                    0.0)


def linear_guess(cw: CompiledWindow, p_nonlin: np.ndarray, y: np.ndarray,
                 w: np.ndarray) -> np.ndarray:
    """Areas and background per frame by weighted linear least squares, the centres, widths
    and shapes held at ``p_nonlin`` (F, P). Areas are clipped at 0. Returns p (F, P)."""
    p = np.array(p_nonlin, float, copy=True)
    vals = peak_values(cw, p)
    x = cw.x[None, :]
    area_ids = sorted(set(cw.ai.tolist()))
    cols = []
    for a in area_ids:
        col = np.zeros(y.shape)
        for j in np.flatnonzero(cw.ai == a):
            sl = cw.peak_slice(j)
            col[:, sl] += cw.r[j] * peak_profile(x[:, sl], vals["center"][:, j:j + 1], 1.0,
                                          vals["fwhm"][:, j:j + 1], vals["eta"][:, j:j + 1],
                                          vals["asym"][:, j:j + 1])
        cols.append(col)
    basis = background_basis(cw, cw.x)
    cols += [np.broadcast_to(basis[:, o], y.shape) for o in range(basis.shape[1])]
    design = np.stack(cols, axis=-1)  # (F, M, L)
    dw = design * w[..., None]
    ata = np.einsum("fml,fmn->fln", dw, design)
    atb = np.einsum("fml,fm->fl", dw, y)
    scale = np.sqrt(np.clip(np.einsum("fll->fl", ata), 1e-300, None))
    ata_s = ata / scale[:, :, None] / scale[:, None, :] + 1e-10 * np.eye(len(cols))
    sol = np.linalg.solve(ata_s, (atb / scale)[..., None])[..., 0] / scale
    for i, a in enumerate(area_ids):
        p[:, a] = np.clip(sol[:, i], 0.0, None)
    p[:, cw.bg_idx] = sol[:, len(area_ids):]
    return p


def window_model(cw: CompiledWindow, p: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Model values (F, M) for parameters p (F, P) on x (M,)."""
    vals = peak_values(cw, p)
    xx = np.asarray(x, float)[None, :]
    out = background_basis(cw, x)[None, :, :] @ p[:, cw.bg_idx, None]
    out = out[..., 0]
    for j in range(len(cw.peak_names)):
        sl = cw.peak_slice(j)
        out[:, sl] += peak_profile(xx[:, sl], vals["center"][:, j:j + 1], vals["area"][:, j:j + 1],
                                 vals["fwhm"][:, j:j + 1], vals["eta"][:, j:j + 1],
                                 vals["asym"][:, j:j + 1])
    return out


# --------------------------------------------------------------------------- results


@dataclass
class PatternFit:
    """Fit results of frames × windows (one model variant).

    Per (frame, peak): ``center``, ``fwhm`` (pattern unit), ``area`` (intensity × unit),
    ``eta`` and their ``*_stderr``; per (frame, window): ``status`` (see
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
                   n_free=np.zeros((n_frames, nw), np.int64))


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


def _store(out: PatternFit, w: int, cw: CompiledWindow, rows: np.ndarray, cols: np.ndarray,
           p: np.ndarray, s: np.ndarray) -> None:
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
    none = ~np.any(np.isfinite(snr) & (snr >= snr_threshold), axis=1) & np.any(
        np.isfinite(snr), axis=1)
    sel = rows[none & (out.status[rows, w] == 0)]
    out.status[sel, w] = 1
    out.reason[sel, w] = STATUS_MEANINGS[1]


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
    """Fit every window in every frame of ``intensity`` (F, N) with uncertainties ``sigma``.

    ``method="batch"``: all frames of the block at once (vectorised Levenberg–Marquardt,
    :func:`operando.xrd.batchfit.levenberg_marquardt`), each frame starting from the
    block's first fitted frame (centres/widths, reset to nominal for weak peaks) and its own
    linear least-squares areas and background; the block is an independent work unit.
    ``method="lmfit"``: sequential, frame n starts from frame n − 1 (lmfit reference).
    A window outside the data, a frame with too few finite points, an empty window or an
    exception is recorded in ``status``/``reason``; it never raises for bad data.
    """
    from operando.xrd.batchfit import levenberg_marquardt

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
                              options, exclude_phases, levenberg_marquardt)
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
    from operando.xrd.batchfit import levenberg_marquardt

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
              conv: np.ndarray) -> None:
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

    if method == "batch":
        first = good[:1]
        p1, s1 = _fit_block(cw0, y_all[first], s_all[first], cw0.p_default[None],
                            levenberg_marquardt, options)[:2]
        cw = follow(cw0, p1[0], s1[0])
        start = _reset_weak(cw, p1, s1, options.snr_threshold, cw.p_default)
        p, sd, _chi2, _npts, conv = _fit_block(cw, y_all[good], s_all[good],
                                              np.repeat(start, good.size, axis=0),
                                              levenberg_marquardt, options)
        store(cw, good, p, sd, conv)
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
            p, err, success = _lmfit_generic(cw, y_all[f], s_all[f], start)
        except Exception as exc:
            for w in ws:
                out.status[f, w] = 5
                out.reason[f, w] = f"{STATUS_MEANINGS[5]}: {type(exc).__name__}: {exc}"
            continue
        store(cw, np.array([f]), p[None], err[None], np.array([success]))
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
                      exclude: Sequence[str], lm) -> None:
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
    p_first, s_first = _fit_block(cw, y_all[first], s_all[first], cw.p_default[None], lm,
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
    p, s, chi2, npts, conv = _fit_block(cw, y_all[good], s_all[good],
                                        np.repeat(start, good.size, axis=0), lm, options)
    _store(out, w, cw, good, cols, p, s)
    out.chi2[good, w] = chi2
    out.n_points[good, w] = npts
    out.n_free[good, w] = cw.n_params
    nc = good[~conv]
    out.status[nc, w] = 4
    out.reason[nc, w] = STATUS_MEANINGS[4]
    del n_frames


def _fit_block(cw: CompiledWindow, y: np.ndarray, s: np.ndarray, p_start: np.ndarray, lm,
               options: FitOptions):
    yy = y[:, cw.idx]
    ss = s[:, cw.idx]
    ok = _valid(yy, ss)
    wts = np.where(ok, 1.0 / np.where(ok, ss, 1.0) ** 2, 0.0)
    yy = np.where(ok, yy, 0.0)
    p0 = linear_guess(cw, p_start, yy, wts)
    res = lm(cw, cw.x, yy, wts, p0, max_iter=options.max_iter)
    return res.params, res.stderr, res.chi2, ok.sum(axis=1), res.converged


# --------------------------------------------------------------------------- lmfit path


def _poly_bg(x, c0=0.0, c1=0.0, c2=0.0, c3=0.0, xmid=0.0, xhalf=1.0):
    t = (x - xmid) / xhalf
    return c0 + t * (c1 + t * (c2 + t * c3))


def _pv_peak(x, center=0.0, area=1.0, fwhm=0.01, eta=0.5, asym=0.0):
    return peak_profile(x, center, area, fwhm, eta, asym)


def lmfit_model(cw: CompiledWindow):
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
    return model, params


def lmfit_one(cw: CompiledWindow, model, params, y: np.ndarray, s: np.ndarray,
              p_start: np.ndarray, max_nfev: int | None = None):
    """Fit one frame with lmfit from free-parameter values ``p_start`` (P,).

    Returns (p, stderr, chi2, n_points, success)."""
    yy = y[cw.idx]
    ss = s[cw.idx]
    ok = _valid(yy, ss)
    pars = params.copy()
    pars["bg_xmid"].set(value=cw.x_mid, vary=False)
    pars["bg_xhalf"].set(value=cw.x_half, vary=False)
    for i, name in enumerate(cw.names):
        pars[name].set(value=float(np.clip(p_start[i], cw.lower[i], cw.upper[i])))
    res = model.fit(yy[ok], pars, x=cw.x[ok], weights=1.0 / ss[ok], max_nfev=max_nfev)
    p = np.array([res.params[n].value for n in cw.names])
    err = np.array([np.nan if res.params[n].stderr is None else res.params[n].stderr
                    for n in cw.names])
    return p, err, float(res.chisqr), int(ok.sum()), bool(res.success)


def _lmfit_generic(cw: CompiledWindow, y: np.ndarray, s: np.ndarray, p_start: np.ndarray,
                   max_nfev: int | None = None) -> tuple[np.ndarray, np.ndarray, bool]:
    """lmfit (``minimize``, leastsq) of any compiled model (joint windows) from ``p_start``:
    the same constraints as the batch path, as one Parameter per free parameter and the
    model of :func:`window_model`. Returns (p, stderr, success)."""
    from lmfit import Parameters, minimize

    yy, ss = y[cw.idx], s[cw.idx]
    ok = _valid(yy, ss)
    pars = Parameters()
    for i, name in enumerate(cw.names):
        pars.add(name, value=float(np.clip(p_start[i], cw.lower[i], cw.upper[i])),
                 min=cw.lower[i], max=cw.upper[i])
    x = cw.x

    def resid(pp) -> np.ndarray:
        v = np.array([pp[n].value for n in cw.names])[None]
        return ((yy - window_model(cw, v, x)[0]) / np.where(ok, ss, 1.0))[ok]

    res = minimize(resid, pars, max_nfev=max_nfev)
    p = np.array([res.params[n].value for n in cw.names])
    err = np.array([np.nan if res.params[n].stderr is None else res.params[n].stderr
                    for n in cw.names])
    return p, err, bool(res.success)


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
            p, err, chi2, npts, success = lmfit_one(cw, model, params, y, s, start)
        except Exception as exc:
            out.status[f, w] = 5
            out.reason[f, w] = f"{STATUS_MEANINGS[5]}: {type(exc).__name__}: {exc}"
            continue
        _store(out, w, cw, np.array([f]), cols, p[None], err[None])
        out.chi2[f, w] = chi2
        out.n_points[f, w] = npts
        out.n_free[f, w] = cw.n_params
        if not success:
            out.status[f, w] = 4
            out.reason[f, w] = STATUS_MEANINGS[4]
        prev_p, prev_s = p, err
        if options.follow:
            shift = _drift(cw, p, err, unit, wl, options.snr_threshold)
            new = compile_window(wdef, rad, unit, wl, options, exclude_phases=exclude,
                                 shift=shift)
            if not np.array_equal(new.idx, cw.idx):
                if new.n_points >= new.n_params + 3:
                    cw = new
