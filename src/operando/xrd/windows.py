"""Fit windows: peak and window definitions, constraints, and the compiled model (the models).

Positions are configured as d-spacings (Å) and converted to the pattern's radial unit with
the wavelength λ (Å) (:mod:`operando.xrd.units`). A window is fitted as one model: its
peaks (:mod:`operando.xrd.profiles`) plus a polynomial background Σ_k b_k t^k in
t = (x − x_mid) / x_half.

Constraints (one free parameter can drive several peaks): within a window each peak has a
free centre and area unless it is a *satellite* of a main peak of its phase (fixed area
ratio ``ratio``, centre tied to the main peak's by the ratio of nominal positions); all peaks
of a phase in a window share one FWHM (``shared_width``); η (and α) are shared by all
peaks of a window. With ``instrument_box`` every profile is convolved with a box (the
detector pixel's and integration bin's radial footprint, :func:`operando.xrd.profiles.
boxed_profile`) whose width, in q, is one free parameter shared by all peaks and windows.
Centres are bounded to ±``max_shift`` (relative, in d) about the nominal
position; areas are ≥ 0; FWHM in [fwhm_min, fwhm_max].

:func:`compile_window` lays windows out on a radial axis as a :class:`CompiledWindow` (data
points, free parameters, index maps); :func:`peak_values`, :func:`window_model` and
:func:`linear_guess` evaluate it. Pure: numpy in, numpy out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from operando.xrd.profiles import PROFILES, boxed_profile, peak_profile
from operando.xrd.units import d_to_unit, dtwotheta_dx, dx_dq

__all__ = [
    "CompiledWindow",
    "FitOptions",
    "PeakDef",
    "WindowDef",
    "background_basis",
    "compile_window",
    "linear_guess",
    "peak_stderr",
    "peak_values",
    "profile_values",
    "window_model",
]


@dataclass(frozen=True)
class PeakDef:
    """One reflection in a fit window.

    ``d_A``: nominal d-spacing (Å); ``hkl``: Miller indices (default None: not used for
    lattice parameters); ``intensity``: integrated intensity (2θ-degree area) of this
    reflection for a phase fraction of 1, on a scale common to all phases (phase fractions;
    default 1); ``satellite_of``: name of the main peak of the same phase whose area
    (× ``ratio``, default 1), width and relative shift this peak follows (default None: a
    main peak).
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

    ``d_range_A`` (d_min, d_max) in Å; ``background_order`` 0–3 (default 1: a line).
    """

    name: str
    d_range_A: tuple[float, float]
    peaks: tuple[PeakDef, ...]
    background_order: int = 1


@dataclass(frozen=True)
class FitOptions:
    """How windows are fitted.

    ``profile``: one of :data:`~operando.xrd.profiles.PROFILES` (default pseudo-Voigt);
    ``eta``: a fixed Lorentzian fraction, or None (default: free, shared per window);
    ``shared_width``: one FWHM per phase and window (default True); widths are in q
    (1/Å, wavelength-independent): start ``fwhm_guess_q`` 0.025, bounds ``fwhm_min_q``
    0.002 – ``fwhm_max_q`` 0.25; ``max_shift`` (default 0.01) is relative (Δd/d) and may be
    set per phase in ``max_shift_by_phase``; ``snr_threshold`` (area/σ(area), default 3)
    decides whether a peak is detected; ``max_iter`` (default 200) bounds the iterations of
    one fit; ``follow`` (default True): a window follows the drift of its peaks from frame to
    frame; ``joint`` (default False): all windows of a frame as one model with one scale and
    one FWHM per phase; ``instrument_box`` (default False): every profile convolved with a
    box of one free width in q (1/Å), shared by all peaks, started at ``box_guess_q`` 0.01
    and bounded to ``box_min_q`` 1e-4 – ``box_max_q`` 0.1 (a 172 µm pixel at 0.25 m and
    60 keV spans ≈ 0.02 Å⁻¹; the lower bound keeps the box formulas well conditioned)."""

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
    instrument_box: bool = False
    box_guess_q: float = 0.01
    box_min_q: float = 1e-4
    box_max_q: float = 0.1

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise ValueError(f"profile: expected one of {PROFILES}, found {self.profile!r}")
        if self.instrument_box and self.profile == "split_pseudo_voigt":
            raise ValueError("instrument_box: the box convolution takes a symmetric profile, "
                             "found profile 'split_pseudo_voigt'")
        if self.instrument_box and not (0 < self.box_min_q <= self.box_guess_q
                                        <= self.box_max_q):
            raise ValueError("instrument box: expected 0 < box_min_q ≤ box_guess_q ≤ "
                             f"box_max_q, found {self.box_min_q}, {self.box_guess_q}, "
                             f"{self.box_max_q}")


@dataclass
class CompiledWindow:
    """One or more windows (segments) laid out for one radial axis: data points, free
    parameters and index maps.

    Data point m is ``radial[idx[m]]`` of segment ``seg[m]``. Peak j has centre
    k_j p[ci_j], area r_j p[ai_j], FWHM kw_j p[wi_j], η = p[ei] (ei ≥ 0) or ``eta_const``,
    α = p[si] (si ≥ 0) or 0; with an instrument box (bi ≥ 0) the profile is convolved with a
    box of width kb_j p[bi]; the background of segment s is Σ_o p[b] t_s^o over the
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
    bi: int
    kb: np.ndarray
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


@dataclass
class _Params:
    """The free parameters of a model as they are added, one row each: (name, kind (center,
    area, fwhm, eta, asym, bg), start value, lower bound, upper bound, segment (−1: shared
    by all segments))."""

    rows: list[tuple[str, str, float, float, float, int]] = field(default_factory=list)

    def add(self, name: str, kind: str, v: float, lo_b: float, hi_b: float, sg: int) -> int:
        """Append one parameter; returns its index."""
        self.rows.append((name, kind, v, lo_b, hi_b, sg))
        return len(self.rows) - 1

    def column(self, i: int) -> list:
        """Column ``i`` of the rows (0 name, 1 kind, 2 start, 3 lower, 4 upper, 5 segment)."""
        return [r[i] for r in self.rows]


@dataclass
class _Peaks:
    """The peaks of a model as segments are laid out: names, phases, segment, nominal
    centre (radial unit), index maps ci/ai/wi and multipliers k/r/kw (see
    :class:`CompiledWindow`), main (not a satellite); ``shared_area``/``shared_width``: a
    phase's scale and FWHM parameter in a joint model."""

    names: list[str] = field(default_factory=list)
    phases: list[str] = field(default_factory=list)
    seg: list[int] = field(default_factory=list)
    c_nom: list[float] = field(default_factory=list)
    ci: list[int] = field(default_factory=list)
    ai: list[int] = field(default_factory=list)
    wi: list[int] = field(default_factory=list)
    k: list[float] = field(default_factory=list)
    r: list[float] = field(default_factory=list)
    kw: list[float] = field(default_factory=list)
    main: list[bool] = field(default_factory=list)
    shared_area: dict[str, int] = field(default_factory=dict)
    shared_width: dict[str, int] = field(default_factory=dict)


def _layout_segment(win: WindowDef, sg: int, sh: float, n_wins: int, rad: np.ndarray,
                    unit: str, wavelength_A: float, options: FitOptions,
                    exclude_phases: Sequence[str], params: _Params,
                    table: _Peaks) -> tuple[np.ndarray, float, float]:
    """Lay window ``win`` out as segment ``sg`` (its d-range scaled by ``sh``): adds its
    peaks to ``table`` and their free parameters to ``params``. Returns the indices of its
    data points in ``rad`` and the segment's mid point and half width (radial unit)."""
    joint = options.joint
    peaks = [p for p in win.peaks if p.phase not in exclude_phases]
    by_name = {p.name: p for p in peaks}
    lo_x, hi_x = sorted(float(v) for v in d_to_unit(np.array(win.d_range_A) * sh, unit,
                                                     wavelength_A))
    lo = int(np.searchsorted(rad, lo_x, side="left"))
    hi = int(np.searchsorted(rad, hi_x, side="right"))
    c_nom = d_to_unit(np.array([p.d_A for p in peaks]), unit, wavelength_A) if peaks \
        else np.zeros(0)
    nominal_shifted = d_to_unit(np.array([p.d_A * sh for p in peaks]), unit,
                                wavelength_A) if peaks else np.zeros(0)
    n = len(peaks)
    ci = np.zeros(n, int)
    ai = np.zeros(n, int)
    wi = np.zeros(n, int)
    kk = np.ones(n)
    rr = np.ones(n)
    kw = np.ones(n)
    width_param: dict[str, int] = {}
    index = {p.name: j for j, p in enumerate(peaks)}
    order = sorted(range(n), key=lambda j: peaks[j].satellite_of is not None)
    pre_s = f"s{sg}_" if n_wins > 1 else ""
    add = params.add
    for j in order:
        p = peaks[j]
        pid = f"{pre_s}p{j}_"
        conv_q = float(dx_dq(c_nom[j], unit, wavelength_A))
        if joint:
            if p.phase not in table.shared_area:
                table.shared_area[p.phase] = add(f"{_ident(p.phase)}_scale", "area", 0.0, 0.0,
                                                 np.inf, -1)
                table.shared_width[p.phase] = add(
                    f"{_ident(p.phase)}_fwhm_q", "fwhm", options.fwhm_guess_q,
                    options.fwhm_min_q, options.fwhm_max_q, -1)
            ai[j] = table.shared_area[p.phase]
            rr[j] = p.intensity / float(dtwotheta_dx(c_nom[j], unit, wavelength_A))
            wi[j] = table.shared_width[p.phase]
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
        conv = float(dx_dq(c0, unit, wavelength_A))
        if options.shared_width and p.phase in width_param:
            wi[j] = width_param[p.phase]
        else:
            wi[j] = add(pid + "fwhm", "fwhm", options.fwhm_guess_q * conv,
                        options.fwhm_min_q * conv, options.fwhm_max_q * conv, sg)
            width_param.setdefault(p.phase, wi[j])
    table.names += [p.name for p in peaks]
    table.phases += [p.phase for p in peaks]
    table.seg += [sg] * n
    table.c_nom += [float(v) for v in c_nom]
    table.ci += ci.tolist()
    table.ai += ai.tolist()
    table.wi += wi.tolist()
    table.k += kk.tolist()
    table.r += rr.tolist()
    table.kw += kw.tolist()
    table.main += [p.satellite_of is None for p in peaks]
    return np.arange(lo, hi), 0.5 * (lo_x + hi_x), max(0.5 * (hi_x - lo_x), 1e-12)


def compile_window(window: WindowDef | Sequence[WindowDef], radial: np.ndarray, unit: str,
                   wavelength_A: float, options: FitOptions, *,
                   exclude_phases: Sequence[str] = (),
                   shift: float | Sequence[float] = 1.0) -> CompiledWindow:
    """Lay ``window`` (one WindowDef, or several fitted as one joint model) out on
    ``radial`` (ascending, in ``unit``; ``wavelength_A`` λ in Å).

    ``shift`` (one per window, default 1: nominal) scales a window's d-range (a window
    following its peaks); the centre bounds stay at nominal ± ``max_shift``. Peaks of
    ``exclude_phases`` (default none) are left out.
    With ``options.joint`` the areas of all peaks of a phase are tied to one scale
    parameter (area = scale × ``intensity`` / (d2θ/dx) at the nominal position, i.e. the
    configured 2θ-area for a phase fraction of 1 times the scale), and their widths to one
    FWHM in q per phase (FWHM_x = FWHM_q · dx/dq at the nominal position); η (and α) are
    shared by all segments. Centres stay free per main peak and window.
    """
    wins = (window,) if isinstance(window, WindowDef) else tuple(window)
    shifts = np.broadcast_to(np.asarray(shift, float), (len(wins),))
    rad = np.asarray(radial, dtype=float)
    params = _Params()
    table = _Peaks()
    idx_l, seg_l, mids, halves = [], [], [], []
    for sg, (win, sh) in enumerate(zip(wins, shifts, strict=True)):
        idx_s, mid, half = _layout_segment(win, sg, sh, len(wins), rad, unit, wavelength_A,
                                           options, exclude_phases, params, table)
        idx_l.append(idx_s)
        seg_l.append(np.full(idx_s.size, sg))
        mids.append(mid)
        halves.append(half)
    n_all = len(table.names)
    ei = -1
    eta_const = {"gaussian": 0.0, "lorentzian": 1.0}.get(options.profile,
                                                         options.eta if options.eta is not None
                                                         else 0.5)
    shared = -1 if len(wins) > 1 else 0
    if options.profile in ("pseudo_voigt", "split_pseudo_voigt") and options.eta is None \
            and n_all:
        ei = params.add("p0_eta", "eta", 0.5, 0.0, 1.0, shared)
    si = -1
    if options.profile == "split_pseudo_voigt" and n_all:
        si = params.add("p0_asym", "asym", 0.0, -0.5, 0.5, shared)
    bi = -1
    if options.instrument_box and n_all:
        bi = params.add("box_q", "box", options.box_guess_q, options.box_min_q,
                        options.box_max_q, shared)
    c_all = np.array(table.c_nom, float)
    kb = np.array([float(dx_dq(c, unit, wavelength_A)) for c in c_all]) if bi >= 0 \
        else np.zeros(c_all.size)
    bg_idx, bg_seg, bg_order = [], [], []
    for sg, win in enumerate(wins):
        pre_s = f"s{sg}_" if len(wins) > 1 else ""
        for o in range(win.background_order + 1):
            bg_idx.append(params.add(f"{pre_s}bg_c{o}", "bg", 0.0, -np.inf, np.inf, sg))
            bg_seg.append(sg)
            bg_order.append(o)
    idx = np.concatenate(idx_l) if idx_l else np.zeros(0, int)
    return CompiledWindow(
        name="+".join(w.name for w in wins), idx=idx, x=rad[idx],
        seg=np.concatenate(seg_l) if seg_l else np.zeros(0, int),
        seg_mid=np.array(mids, float), seg_half=np.array(halves, float),
        peak_names=table.names, phases=table.phases, peak_seg=np.array(table.seg, int),
        c_nom=np.array(table.c_nom, float), ci=np.array(table.ci, int),
        ai=np.array(table.ai, int), wi=np.array(table.wi, int), k=np.array(table.k, float),
        r=np.array(table.r, float), kw=np.array(table.kw, float), ei=ei,
        eta_const=float(eta_const), si=si, bi=bi, kb=kb,
        bg_idx=np.array(bg_idx, int), bg_seg=np.array(bg_seg, int),
        bg_order=np.array(bg_order, int), names=params.column(0), kinds=params.column(1),
        param_seg=np.array(params.column(5), int), p_default=np.array(params.column(2), float),
        lower=np.array(params.column(3), float), upper=np.array(params.column(4), float),
        main=np.array(table.main, bool),
    )


def _ident(name: str) -> str:
    """A Python identifier from a phase name (lmfit parameter names)."""
    out = "".join(c if c.isalnum() else "_" for c in name)
    return out if out[:1].isalpha() else f"ph_{out}"


def peak_values(cw: CompiledWindow, p: np.ndarray) -> dict[str, np.ndarray]:
    """Per-peak (…, n_peaks) centre, area, fwhm, eta, asym and box (instrument box width,
    0 without one) from parameters p (…, P)."""
    p = np.asarray(p, float)
    eta = p[..., cw.ei] if cw.ei >= 0 else np.full(p.shape[:-1], cw.eta_const)
    asym = p[..., cw.si] if cw.si >= 0 else np.zeros(p.shape[:-1])
    n = len(cw.peak_names)
    box = p[..., cw.bi, None] * cw.kb if cw.bi >= 0 else np.zeros((*p.shape[:-1], n))
    return {
        "box": box,
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


def profile_values(cw: CompiledWindow, x: np.ndarray, vals: dict[str, np.ndarray], j: int,
                   area: np.ndarray | float | None = None) -> np.ndarray:
    """Profile of peak j (F, M) on x (1, M) from :func:`peak_values` ``vals`` (F, n_peaks):
    the pseudo-Voigt, convolved with the instrument box when the model has one; ``area``
    (default None: the fitted one) overrides the area."""
    a = vals["area"][:, j:j + 1] if area is None else area
    c, w, e = (vals[k][:, j:j + 1] for k in ("center", "fwhm", "eta"))
    if cw.bi >= 0:
        return boxed_profile(x, c, a, w, e, vals["box"][:, j:j + 1])
    return peak_profile(x, c, a, w, e, vals["asym"][:, j:j + 1])


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
            col[:, sl] += cw.r[j] * profile_values(cw, x[:, sl], vals, j, 1.0)
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
        out[:, sl] += profile_values(cw, xx[:, sl], vals, j)
    return out
