"""A run's XANES scans from counts to fractions: μ, QC, normalisation, alignment, LCF.

Steps (all batched over scans; energies in eV):

1. μ from counts (:func:`counts_to_mu`): transmission μ = ln(I0/It), fluorescence
   μ = If/I0, reference foil μ_ref = ln(It/Iref). QC flags (bit mask,
   :data:`operando.xanes.normalize.QC_REASONS`): non-finite (a zero count), all zero,
   constant, and *saturated* — a channel whose maximum value repeats over a run of at
   least max(3, 2 % of the points) consecutive points (a clipped detector or a
   saturated counter).
2. Scans on different grids are interpolated onto the first good scan's grid.
3. Alignment of the foils (:func:`operando.xanes.align.align_scans`): shift s_k per scan.
4. Normalisation of each sample scan (:func:`operando.xanes.normalize.normalize`) on its
   own recorded axis; E0 reported on the aligned axis (E0 + s_k).
   With ``prenormalized`` (text files already normalised) the spectra are used as given
   and only E0, edge step and QC are measured (see :mod:`operando.xanes.normalize`).
5. The normalised (or flattened) spectra are interpolated onto one common aligned grid
   (the recorded grid + median shift) and fitted together (:func:`operando.xanes.lcf.lcf`),
   window ``fit_range_eV`` relative to the median aligned E0 (:func:`lcf_window`).

Spectra that are not a run (``operando lcf``: a few columns of text files, no foil, no
counts) go through :func:`prepare_curve` and :func:`fit_spectra`: the same common grid
(:func:`common_grid`) and median-E0 window, without alignment and QC.

Pure numpy; no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from operando.xanes.align import AlignResult, align_scans
from operando.xanes.lcf import CombinationResult, LcfResult, interp_onto, lcf, lcf_combinations
from operando.xanes.normalize import (
    QC_FIT,
    QC_OK,
    QC_SATURATED,
    NormalizeResult,
    find_e0,
    normalize,
    qc_reason_text,
)

__all__ = ["SpectraFit", "XanesOptions", "XanesSeries", "common_grid", "counts_to_mu",
           "fit_spectra", "lcf_window", "prepare_curve", "reduce_scans", "saturated",
           "step_corrected"]


def saturated(counts: np.ndarray) -> bool:
    """True when the channel's maximum repeats over ≥ max(3, 2 % of points) consecutive
    points (and is positive)."""
    c = np.asarray(counts, dtype=float)
    if c.size == 0 or not np.isfinite(c).any():
        return False
    top = np.nanmax(c)
    if top <= 0:
        return False
    at = np.concatenate([[0], (c == top).astype(np.int8), [0]])
    d = np.diff(at)
    runs = np.flatnonzero(d == -1) - np.flatnonzero(d == 1)
    return bool(runs.max(initial=0) >= max(3, int(0.02 * c.size)))


def counts_to_mu(
    i0: np.ndarray,
    it: np.ndarray | None = None,
    if_: np.ndarray | None = None,
    iref: np.ndarray | None = None,
    *,
    mode: Literal["transmission", "fluorescence"] = "transmission",
) -> tuple[np.ndarray, np.ndarray | None, int]:
    """(μ sample, μ foil or None, QC flag) of one scan from its counts.

    μ = ln(I0/It) (transmission) or If/I0 (fluorescence); foil μ = ln(It/Iref) (needs
    It). The flag carries :data:`QC_SATURATED` when a used channel is saturated.
    """
    i0 = np.asarray(i0, dtype=float)
    used = [i0]
    with np.errstate(divide="ignore", invalid="ignore"):
        if mode == "transmission":
            if it is None:
                raise ValueError("counts_to_mu: transmission needs It")
            mu = np.log(i0 / np.asarray(it, dtype=float))
            used.append(np.asarray(it, dtype=float))
        elif mode == "fluorescence":
            if if_ is None:
                raise ValueError("counts_to_mu: fluorescence needs If")
            mu = np.asarray(if_, dtype=float) / i0
            used.append(np.asarray(if_, dtype=float))
        else:
            raise ValueError(f"counts_to_mu: mode must be transmission or fluorescence, found "
                             f"{mode!r}")
        foil = None
        if iref is not None and it is not None:
            foil = np.log(np.asarray(it, dtype=float) / np.asarray(iref, dtype=float))
    flag = QC_SATURATED if any(saturated(c) for c in used) else QC_OK
    return mu, foil, flag


@dataclass
class XanesOptions:
    """Reduction options (the config's ``xanes`` section; energies in eV)."""

    mode: Literal["transmission", "fluorescence"] = "transmission"
    e0_method: Literal["derivative", "half_step"] = "derivative"
    pre_edge_eV: tuple[float, float] | None = None
    norm_range_eV: tuple[float, float] | None = None
    norm_order: int | None = None
    lcf_array: Literal["flat", "norm"] = "flat"
    align_mode: Literal["reference_e0", "reference_scan", "none"] = "reference_e0"
    reference_e0_eV: float | None = None
    reference_index: int = 0
    align_window_eV: tuple[float, float] = (-15.0, 35.0)
    fit_range_eV: tuple[float, float] = (-20.0, 60.0)
    sum_to_one: bool = True
    nonneg: bool = True
    fit_shifts: bool = False
    max_shift_eV: float = 3.0
    max_components: int | None = None
    normalize_standards: bool = True
    prenormalized: bool = False


@dataclass
class XanesSeries:
    """The reduced series. ``energy`` (m,) common aligned grid; ``mu_norm`` (n, m) the
    spectra fitted (``lcf_array``) on it; ``norm`` the normalisation on the recorded axis;
    ``shift`` (n,) eV; ``e0`` (n,) eV on the aligned axis; ``qc_flag``/``qc_reason``;
    ``lcf`` over all scans (rows with QC ≠ 0 are NaN); ``combinations`` when asked."""

    energy: np.ndarray
    mu_norm: np.ndarray
    norm: NormalizeResult
    shift: np.ndarray
    e0: np.ndarray
    qc_flag: np.ndarray
    qc_reason: list[str]
    lcf: LcfResult | None
    align: AlignResult | None
    combinations: CombinationResult | None = None
    notes: list[str] = field(default_factory=list)


def common_grid(energies: Sequence[np.ndarray], arrays: Sequence[np.ndarray | None],
                ref: np.ndarray) -> np.ndarray | None:
    """The curves ``arrays[i]`` (on ``energies[i]``, eV, any order) on the grid ``ref`` (eV):
    (n, m), NaN outside a curve's span and for a curve that is None; None when all are."""
    if all(a is None for a in arrays):
        return None
    out = np.full((len(arrays), ref.size), np.nan)
    for i, (e, a) in enumerate(zip(energies, arrays, strict=True)):
        if a is None:
            continue
        e = np.asarray(e, dtype=float)
        if e.shape == ref.shape and np.array_equal(e, ref):
            out[i] = a
        else:
            out[i] = interp_onto(ref, e, a)
    return out


def _renormalise(
    standards: Mapping[str, tuple[np.ndarray, np.ndarray]],
    ranges: dict[str, float],
    nnorm: int,
    e0_eV: float,
    options: XanesOptions,
    notes: list[str],
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], np.ndarray]:
    """The standards normalised exactly as the data were (same E0, pre-edge and post-edge
    ranges and order, same flattening), and their edge steps under that normalisation
    (1 where a standard is used as given)."""
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    steps = np.ones(len(standards))
    for j, (name, (es, ys)) in enumerate(standards.items()):
        es = np.asarray(es, dtype=float)
        ys = np.asarray(ys, dtype=float)
        o = np.argsort(es)
        es, ys = es[o], ys[o]
        covered = (es[0] <= e0_eV + ranges["pre1"] + 1
                   and es[-1] >= e0_eV + ranges["norm2"] - 1)
        if not covered:
            notes.append(f"xanes: standard {name!r} spans {es[0]:.1f}-{es[-1]:.1f} eV, short of "
                         f"the data's normalisation ranges; used as given (already normalised)")
            out[name] = (es, ys)
            continue
        r = normalize(es, ys, e0=e0_eV, pre1=ranges["pre1"], pre2=ranges["pre2"],
                      norm1=ranges["norm1"], norm2=ranges["norm2"], nnorm=nnorm)
        if not r.ok[0]:
            notes.append(f"xanes: standard {name!r} could not be re-normalised "
                         f"({r.qc_reason[0]}); used as given")
            out[name] = (es, ys)
            continue
        out[name] = (es, (r.flat if options.lcf_array == "flat" else r.norm)[0])
        steps[j] = float(r.edge_step[0])
    return out, steps


def lcf_window(e0_eV: np.ndarray, fit_range_eV: tuple[float, float]) -> tuple[float, float]:
    """The LCF window (eV, absolute): ``fit_range_eV`` (eV) relative to the median E0 (eV)
    of the spectra (NaN ignored)."""
    mid = float(np.nanmedian(e0_eV))
    return mid + fit_range_eV[0], mid + fit_range_eV[1]


def step_corrected(weights: np.ndarray, covariance: np.ndarray, steps: np.ndarray,
                   *, sum_to_one: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Weights in the basis of the standards as given (each with edge step 1), from weights
    w' fitted with standards re-normalised to edge steps ``steps`` s_j:
    w_j = (w'_j / s_j) / Σ_k (w'_k / s_k) with the sum constraint, w_j = w'_j / s_j
    without it (free weights keep their scale); covariance by the delta method J C Jᵀ.

    Why: normalisation is linear, so a sample Σ w_j μ_j normalises to
    Σ_j [w_j s_j / Σ_k w_k s_k] · norm(μ_j) when every spectrum is normalised at one E0
    with one set of ranges; w' is that bracket. A re-normalised standard is the given one
    divided by s_j, so a free fit's w'_j / s_j is the weight of the given standard."""
    w = np.asarray(weights, dtype=float)
    s = np.asarray(steps, dtype=float)[None, :]
    u = w / s
    if not sum_to_one:
        inv = 1.0 / s  # (1, k)
        return u, covariance * inv[:, :, None] * inv[:, None, :]
    T = u.sum(axis=1, keepdims=True)
    out = u / T
    k = w.shape[1]
    # J_ij = δ_ij / (s_j T) − u_i / (s_j T²)
    J = (np.eye(k)[None] / (s[:, None, :] * T[:, :, None])
         - u[:, :, None] / (s[:, None, :] * T[:, :, None] ** 2))
    cov = np.einsum("nij,njk,nlk->nil", J, covariance, J)
    return out, cov


def reduce_scans(
    energies: Sequence[np.ndarray],
    mu: Sequence[np.ndarray],
    foil_mu: Sequence[np.ndarray | None] | None,
    standards: Mapping[str, tuple[np.ndarray, np.ndarray]],
    options: XanesOptions,
    *,
    qc_flag: Sequence[int] | None = None,
) -> XanesSeries:
    """Normalise, align and fit a run's scans (see the module docstring).

    ``energies`` (n arrays, eV, recorded axis), ``mu`` (n arrays), ``foil_mu`` (n arrays
    or None), ``standards`` name → (energy eV, normalised μ) on the calibrated axis,
    ``qc_flag`` (n,) flags raised from the counts. Bad scans are flagged and skipped.
    """
    n = len(mu)
    if n == 0:
        raise ValueError("reduce_scans: no scans")
    flag0 = np.zeros(n, dtype=np.int64) if qc_flag is None else np.asarray(qc_flag, np.int64)
    notes: list[str] = []
    first = next((i for i in range(n) if flag0[i] == 0 and np.isfinite(mu[i]).all()), 0)
    egrid = np.asarray(energies[first], dtype=float)
    order = np.argsort(egrid)
    egrid = egrid[order]
    Y = common_grid(energies, list(mu), egrid)
    assert Y is not None
    F = common_grid(energies, list(foil_mu), egrid) if foil_mu is not None else None

    pre = options.pre_edge_eV or (None, None)
    post = options.norm_range_eV or (None, None)
    nr = normalize(egrid, Y, e0_method=options.e0_method, pre1=pre[0], pre2=pre[1],
                   norm1=post[0], norm2=post[1], nnorm=options.norm_order, qc_flag=flag0,
                   prenormalized=options.prenormalized)
    flag = nr.qc_flag.copy()
    good = flag == 0
    # the spectra fitted: every scan normalised at one E0 (the series median) with one set
    # of ranges, so that the normalisation is one linear map for the whole series
    ranges = {k: float(np.nanmedian(getattr(nr, k)[good])) if good.any() else np.nan
              for k in ("pre1", "pre2", "norm1", "norm2")}
    nn = int(np.median(nr.nnorm[good])) if good.any() else 0
    e0_fix = float(np.nanmedian(nr.e0[good])) if good.any() else float("nan")
    fixed = nr
    if good.any():
        fixed = normalize(egrid, Y, e0=e0_fix, pre1=ranges["pre1"], pre2=ranges["pre2"],
                          norm1=ranges["norm1"], norm2=ranges["norm2"], nnorm=nn,
                          qc_flag=flag, prenormalized=options.prenormalized)
        flag |= fixed.qc_flag

    shift = np.zeros(n)
    al: AlignResult | None = None
    if options.align_mode != "none":
        if F is None:
            raise ValueError(f"reduce_scans: align_mode {options.align_mode!r} needs the "
                             "reference-foil channel (iref)")
        al = align_scans(egrid, F, mode=options.align_mode,
                         reference_e0_eV=options.reference_e0_eV,
                         reference_index=options.reference_index,
                         window_eV=options.align_window_eV, qc_flag=flag)
        shift = np.where(np.isfinite(al.shift), al.shift, np.nan)
        no_foil = (flag == 0) & ~np.isfinite(shift)
        if no_foil.any():
            notes.append(f"xanes: {int(no_foil.sum())} scan(s) without a usable foil edge take "
                         "the median shift")
        shift = np.where(np.isfinite(shift), shift, np.nanmedian(shift))
    e0 = nr.e0 + shift
    base = fixed.flat if options.lcf_array == "flat" else fixed.norm
    common = egrid + float(np.nanmedian(shift[flag == 0])) if (flag == 0).any() else egrid
    # each scan: value at common energy E is its curve at recorded energy E - s_k
    mu_common = np.full((n, egrid.size), np.nan)
    for i in np.flatnonzero(flag == 0):
        mu_common[i] = np.interp(common, egrid + shift[i], base[i], left=np.nan, right=np.nan)

    fit: LcfResult | None = None
    combos: CombinationResult | None = None
    if standards and (flag == 0).any():
        steps = np.ones(len(standards))
        if options.prenormalized:
            notes.append("xanes: spectra already normalised (used as given); standards used "
                         "as given too")
        elif options.normalize_standards:
            e0_std = e0_fix + float(np.nanmedian(shift[flag == 0]))
            standards, steps = _renormalise(standards, ranges, nn, e0_std, options, notes)
        emin, emax = lcf_window(e0[flag == 0], options.fit_range_eV)
        kw = dict(emin=emin, emax=emax, sum_to_one=options.sum_to_one, nonneg=options.nonneg,
                  fit_shifts=options.fit_shifts, max_shift_eV=options.max_shift_eV)
        fit = lcf(common, np.where((flag == 0)[:, None], mu_common, np.nan), standards,
                  **kw)  # type: ignore[arg-type]
        bad_fit = (flag == 0) & ~fit.ok
        flag |= np.where(bad_fit, QC_FIT, 0)
        if not np.allclose(steps, 1.0):
            fit.weights, fit.covariance = step_corrected(fit.weights, fit.covariance, steps,
                                                         sum_to_one=options.sum_to_one)
            fit.stderr = np.sqrt(np.clip(np.diagonal(fit.covariance, axis1=1, axis2=2), 0,
                                         None))
            notes.append("xanes: standards re-normalised like the data (edge steps "
                         + ", ".join(f"{name}={v:.4f}" for name, v in zip(standards, steps,
                                                                          strict=True))
                         + "); weights converted back to the standards' own normalisation")
        if options.max_components is not None:
            combos = lcf_combinations(common, np.where((flag == 0)[:, None], mu_common, np.nan),
                                      standards, max_components=options.max_components,
                                      **kw)  # type: ignore[arg-type]
    elif not standards:
        notes.append("xanes: no standards configured; no linear-combination fit")
    n_bad = int((flag != 0).sum())
    if n_bad:
        notes.append(f"xanes: {n_bad} of {n} scan(s) skipped by QC")
    return XanesSeries(energy=common, mu_norm=mu_common, norm=nr, shift=shift, e0=e0,
                       qc_flag=flag, qc_reason=[qc_reason_text(f) for f in flag], lcf=fit,
                       align=al, combinations=combos, notes=notes)


def prepare_curve(energy: np.ndarray, mu: np.ndarray, *, normalize_first: bool = False,
                  what: str = "spectrum") -> tuple[np.ndarray, np.ndarray]:
    """One spectrum or standard for :func:`fit_spectra`: (energy eV, μ) sorted by energy,
    and with ``normalize_first`` (default False: μ is already normalised) normalised on
    its own axis with Larch's default ranges. ``ValueError`` naming ``what`` when it
    cannot be normalised."""
    e = np.asarray(energy, dtype=float)
    y = np.asarray(mu, dtype=float)
    o = np.argsort(e)
    e, y = e[o], y[o]
    if normalize_first:
        r = normalize(e, y)
        if not r.ok[0]:
            raise ValueError(f"{what}: cannot normalise: {r.qc_reason[0]}")
        y = r.norm[0]
    return e, y


#: edge steps outside this range are "far from 1": not on the scale of normalised standards
EDGE_STEP_RANGE = (0.5, 2.0)
#: R-factors above this are far above a good XANES LCF (~0.01 and below)
MAX_R_FACTOR = 0.05


@dataclass
class SpectraFit:
    """The LCF of standalone spectra (:func:`fit_spectra`), each spectrum's E0 (eV, the
    maximum of dμ/dE on its own axis) and edge step (Larch pre_edge conventions, on the
    curve as fitted), the combinatorial search when asked, and per spectrum the scale
    flags (:func:`scale_flags`)."""

    lcf: LcfResult
    e0: np.ndarray
    edge_step: np.ndarray = field(default_factory=lambda: np.empty(0))
    combinations: CombinationResult | None = None
    flags: list[list[str]] = field(default_factory=list)


def scale_flags(edge_step: float, r_factor: float) -> list[str]:
    """Why a fitted spectrum is clearly not on the scale of normalised standards:
    ``edge_step_off_scale`` (edge step outside :data:`EDGE_STEP_RANGE`, e.g. raw μ fitted
    with normalised standards), ``high_r_factor`` (R-factor above :data:`MAX_R_FACTOR`)."""
    out = []
    if not (EDGE_STEP_RANGE[0] <= edge_step <= EDGE_STEP_RANGE[1]):
        out.append("edge_step_off_scale")
    if np.isfinite(r_factor) and r_factor > MAX_R_FACTOR:
        out.append("high_r_factor")
    return out


def fit_spectra(
    curves: Sequence[tuple[np.ndarray, np.ndarray]],
    standards: Mapping[str, tuple[np.ndarray, np.ndarray]],
    *,
    fit_range_eV: tuple[float, float] = (-20.0, 60.0),
    absolute: bool = False,
    sum_to_one: bool = True,
    max_components: int | None = None,
) -> SpectraFit:
    """Linear-combination fit of spectra that are not a run (no foil, no counts; each from
    :func:`prepare_curve`): on the first spectrum's grid (:func:`common_grid`), window
    ``fit_range_eV`` (eV; default -20 to 60) relative to the median E0 of the spectra
    (:func:`lcf_window`), or absolute energies with ``absolute`` (default False); weights
    >= 0, summing to 1 unless ``sum_to_one`` is False (default True). ``standards``:
    name → (energy eV, normalised μ). ``max_components`` (default None: off): also fit
    every subset of 1..max_components standards, ranked by reduced χ² (Larch fit-all).
    Each spectrum's edge step and R-factor give its scale flags (:func:`scale_flags`)."""
    grid = curves[0][0]
    Y = common_grid([e for e, _ in curves], [y for _, y in curves], grid)
    assert Y is not None
    e0 = np.array([find_e0(e, y) for e, y in curves])
    lo, hi = fit_range_eV if absolute else lcf_window(e0, fit_range_eV)
    fit = lcf(grid, Y, standards, emin=lo, emax=hi, sum_to_one=sum_to_one)
    combos = None
    if max_components is not None:
        combos = lcf_combinations(grid, Y, standards, max_components=max_components,
                                  emin=lo, emax=hi, sum_to_one=sum_to_one)
    steps = np.array([float(normalize(e, y).edge_step[0]) for e, y in curves])
    flags = [scale_flags(steps[i], float(fit.r_factor[i])) for i in range(len(curves))]
    return SpectraFit(lcf=fit, e0=e0, edge_step=steps, combinations=combos, flags=flags)
