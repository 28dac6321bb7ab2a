"""Randles–Sevcik analysis of cell CVs and of SECCM maps (one batched core).

:func:`analyse_sweeps` is the numpy core: the selected sweeps of every scan rate as
``(B, n)`` arrays → peaks, ΔEp, the i_p–√v fit with its linear range, D ± σ_D, and the
validity flags, for B CVs at once (B = 1 for a cell, B = pixels for a map).
:func:`analyse_cells` and :func:`analyse_map` wrap it for the normalised CV Datasets of
:func:`operando.io.cv.read.read_cv` and return xarray Datasets with CF ``units`` and
``long_name`` on every variable.

Units: i in A, E in V, v in V s⁻¹, A in cm², C in mol cm⁻³, T in K, D in cm² s⁻¹.

When Randles–Sevcik does not apply the result says so instead of raising: ``flags`` is a
bit mask (:data:`FLAGS`), ``randles_sevcik_applies`` / ``fit_ok`` is false and the cell
result lists the ``reasons`` (naming the file and the config key).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import xarray as xr

from operando.cf import cf_attrs
from operando.kinetics.cv import cycle_sweeps, previous_sweep_indices
from operando.kinetics.cv_peaks import REASONS, PeakOptions, sweep_peaks
from operando.kinetics.randles_sevcik import (
    diffusion_from_slope,
    fit_sqrt_rate,
    reversible_delta_ep_V,
)

__all__ = [
    "FLAGS",
    "KineticsInputError",
    "KineticsOptions",
    "SweepArrays",
    "analyse_cells",
    "analyse_map",
    "analyse_sweeps",
]

#: bit → (name, meaning) of the ``flags`` variable
FLAGS: dict[int, tuple[str, str]] = {
    1: ("missing_peak", "no peak at one or more scan rates (excluded from the fit)"),
    2: ("too_few_rates", "fewer than 2 scan rates with a peak in the linear range: no D"),
    4: ("peak_shift", "peak potential drifts with scan rate beyond "
                      "kinetics.max_peak_shift_V_per_decade (not reversible)"),
    8: ("low_r2", "R² of the i_p-√v fit below kinetics.min_r2"),
    16: ("range_untested", "fewer than 3 scan rates with a peak: linear range not tested"),
    32: ("wide_delta_ep", "ΔEp above kinetics.max_delta_ep_V (not reversible)"),
}
#: flags that make Randles–Sevcik inapplicable
FATAL_FLAGS = 2 | 4 | 8 | 32
#: flags saying the couple is not reversible: D is withheld unless ``force``
NOT_REVERSIBLE = 4 | 32
#: reason code of a scan rate whose cycle has no sweep of the wanted direction / number
NO_SWEEP = 6


class KineticsInputError(ValueError):
    """Input that the Randles–Sevcik analysis cannot use (message names the file/key)."""


@dataclass(frozen=True)
class KineticsOptions:
    """Analysis settings, one field per key of the ``kinetics`` config section (units in the
    names: V, mol cm⁻³, K; the pipeline's kinetics adapter fills them from the section).

    Defaults: 1 electron, C = 0.0228 mol cm⁻³ (LiFePO4), T = 298.15 K, cycle 1, the anodic
    peak in the fit, :class:`PeakOptions` defaults, no peak search windows (None: the sweep
    after the baseline window), linear range ended by a 1 % deviation at 2 standard errors,
    no intercept, R² >= 0.98, peak drift <= 0.015 V per decade, ΔEp not checked (None).

    ``sweep``: which half-cycle of the cycle is searched for each peak: ``"auto"`` (every
    sweep of that direction in the cycle, longest first; the first with a peak in the
    window wins, so a partial first sweep holding the peak is used), ``"longest"`` (only
    the longest sweep) or N (the N-th sweep of that direction in the cycle, 1-based).
    ``ir_ohm``: uncompensated resistance R_u (Ω); the potential is corrected to E − I·R_u
    before peaks are searched (default 0). ``force``: report D even when the couple is
    flagged not reversible (peak shift, ΔEp), with the flags (default False: D is NaN then).
    """

    n_electrons: int = 1
    concentration_mol_cm3: float = 0.0228
    temperature_K: float = 298.15
    cycle: int | str = 1
    fit_peak: str = "anodic"
    peaks: PeakOptions = field(default_factory=PeakOptions)
    anodic_window_V: tuple[float, float] | None = None
    cathodic_window_V: tuple[float, float] | None = None
    linearity_tolerance: float = 0.01
    linearity_sigma: float = 2.0
    fit_intercept: bool = False
    min_r2: float = 0.98
    max_peak_shift_V_per_decade: float = 0.015
    max_delta_ep_V: float | None = None
    sweep: int | str = "auto"
    ir_ohm: float = 0.0
    force: bool = False

    def __post_init__(self) -> None:
        if not (self.sweep in ("auto", "longest")
                or (isinstance(self.sweep, int) and not isinstance(self.sweep, bool)
                    and self.sweep >= 1)):
            raise ValueError(f"kinetics.sweep: expected 'auto', 'longest' or a sweep number "
                             f">= 1, found {self.sweep!r}")
        if not self.ir_ohm >= 0:
            raise ValueError(f"kinetics.ir_ohm: expected a resistance >= 0 (Ω), found "
                             f"{self.ir_ohm}")
        if self.fit_peak not in ("anodic", "cathodic"):
            raise ValueError(f"kinetics.fit_peak: expected 'anodic' or 'cathodic', found "
                             f"{self.fit_peak!r}")
        for key in ("n_electrons", "concentration_mol_cm3", "temperature_K"):
            if not getattr(self, key) > 0:
                raise ValueError(f"kinetics.{key}: expected a positive value, found "
                                 f"{getattr(self, key)}")


# --------------------------------------------------------------------- the core


@dataclass(frozen=True)
class SweepArrays:
    """One sweep of B CVs: ``potential_V``, ``current_A`` ``(B, n)``; ``time_s`` ``(n,)``
    or ``(B, n)`` and ``previous`` = (time_s, current_A) of the sweep before it, for the
    previous-sweep background (None: not available)."""

    potential_V: np.ndarray
    current_A: np.ndarray
    time_s: np.ndarray | None = None
    previous: tuple[np.ndarray, np.ndarray] | None = None


Candidates = SweepArrays | tuple[np.ndarray, np.ndarray] | Sequence[SweepArrays] | None


def _as_candidates(item: Candidates) -> list[SweepArrays]:
    if item is None:
        return []
    if isinstance(item, SweepArrays):
        return [item]
    if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], np.ndarray):
        return [SweepArrays(item[0], item[1])]
    return list(item)  # type: ignore[arg-type]


def _best_peak(cands: list[SweepArrays], sign: int, options: KineticsOptions,
               window: tuple[float, float] | None, bsz: int) -> tuple[np.ndarray, ...]:
    """Peak current, potential, stderr and reason ``(B,)`` over the candidate sweeps: per
    row the first candidate with a peak; where none has one, the first one's reason."""
    cur, pot, err = (np.full(bsz, np.nan) for _ in range(3))
    reason = np.full(bsz, NO_SWEEP, dtype=np.int64)
    for k, c in enumerate(cands):
        p = sweep_peaks(c.potential_V, c.current_A, sign, options.peaks, window,
                        time_s=c.time_s, previous=c.previous)
        take = p["found"] & ~np.isfinite(cur)
        if k == 0:
            reason = p["reason"].copy()
        cur = np.where(take, p["current_A"], cur)
        pot = np.where(take, p["potential_V"], pot)
        err = np.where(take, p["sigma_A"], err)
        reason = np.where(take, 0, reason)
    return cur, pot, err, reason


def analyse_sweeps(
    anodic: Sequence[Candidates],
    cathodic: Sequence[Candidates],
    scan_rate_V_s: np.ndarray,
    area_cm2: float | np.ndarray,
    options: KineticsOptions,
) -> dict[str, np.ndarray]:
    """The batched analysis: per scan rate r, ``anodic[r]`` / ``cathodic[r]`` are
    ``(potential_V, current_A)`` arrays of shape ``(B, n_r)``, a :class:`SweepArrays`, a
    list of them (candidate sweeps in order of preference: per row the first with a peak
    is used), or ``None`` when the cycle has no such sweep; ``scan_rate_V_s`` ascending
    ``(m,)``.

    Returns ``(B, m)`` arrays ``{anodic,cathodic}_peak_{current_A,potential_V,stderr_A}``,
    ``*_reason`` (int), ``delta_ep_V``, ``in_linear_range``, ``deviation``; and ``(B,)``
    arrays ``slope``, ``slope_stderr``, ``intercept_A``, ``r2``, ``n_linear``,
    ``max_linear_scan_rate_V_s``, ``diffusion_cm2_s``, ``diffusion_stderr_cm2_s``,
    ``peak_shift_V_per_decade``, ``flags`` (bit mask, :data:`FLAGS`), ``fit_ok``.
    """
    v = np.asarray(scan_rate_V_s, dtype=float)
    m = v.size
    cands = {"anodic": [_as_candidates(s) for s in anodic],
             "cathodic": [_as_candidates(s) for s in cathodic]}
    bsz = next((np.atleast_2d(c[0].current_A).shape[0] for c in
                (*cands["anodic"], *cands["cathodic"]) if c), None)
    if bsz is None:
        raise KineticsInputError("Randles–Sevcik: no sweep in the selected cycle at any scan "
                                 "rate (kinetics.cycle / kinetics.sweep)")
    out: dict[str, np.ndarray] = {}
    for name, sign, window in (("anodic", 1, options.anodic_window_V),
                               ("cathodic", -1, options.cathodic_window_V)):
        cur = np.full((bsz, m), np.nan)
        pot = np.full((bsz, m), np.nan)
        err = np.full((bsz, m), np.nan)
        reason = np.full((bsz, m), NO_SWEEP, dtype=np.int64)
        for r, c in enumerate(cands[name]):
            if c:
                cur[:, r], pot[:, r], err[:, r], reason[:, r] = _best_peak(
                    c, sign, options, window, bsz)
        out[f"{name}_peak_current_A"] = cur
        out[f"{name}_peak_potential_V"] = pot
        out[f"{name}_peak_stderr_A"] = err
        out[f"{name}_reason"] = reason
    out["delta_ep_V"] = out["anodic_peak_potential_V"] - out["cathodic_peak_potential_V"]
    res = _fit_and_flag(out, v, area_cm2, options, options.linearity_tolerance)
    if options.force:
        # a couple flagged not reversible has no quasi-reversible fall-off to test: the
        # forced D is the fit over every rate with a peak, as authors report it
        forced = (res["flags"] & NOT_REVERSIBLE) != 0
        if forced.any():
            alt = _fit_and_flag(out, v, area_cm2, options, np.inf)
            for key, value in alt.items():
                sel = forced.reshape((-1,) + (1,) * (value.ndim - 1))
                res[key] = np.where(sel, value, res[key])
    else:  # not reversible: D is withheld unless asked for
        withheld = (res["flags"] & NOT_REVERSIBLE) != 0
        res["diffusion_cm2_s"] = np.where(withheld, np.nan, res["diffusion_cm2_s"])
        res["diffusion_stderr_cm2_s"] = np.where(withheld, np.nan,
                                                 res["diffusion_stderr_cm2_s"])
    out.update(res)
    return out


def _fit_and_flag(peaks: dict[str, np.ndarray], v: np.ndarray, area_cm2: float | np.ndarray,
                  options: KineticsOptions, linearity_tolerance: float
                  ) -> dict[str, np.ndarray]:
    """The i_p-√v fit (:func:`fit_sqrt_rate`), D, the peak drift and the flags of B CV sets
    from their peaks (``{anodic,cathodic}_peak_*``, ``delta_ep_V``; ``(B, m)``)."""
    bsz = peaks["delta_ep_V"].shape[0]
    ip = np.abs(peaks[f"{options.fit_peak}_peak_current_A"])
    fit = fit_sqrt_rate(ip, peaks[f"{options.fit_peak}_peak_stderr_A"], v,
                        linearity_tolerance=linearity_tolerance,
                        linearity_sigma=options.linearity_sigma,
                        fit_intercept=options.fit_intercept)
    d, d_err = diffusion_from_slope(
        fit["slope"], n_electrons=options.n_electrons, area_cm2=area_cm2,
        concentration_mol_cm3=options.concentration_mol_cm3,
        temperature_K=options.temperature_K, slope_stderr=fit["slope_stderr"])
    out = dict(fit)
    out["diffusion_cm2_s"], out["diffusion_stderr_cm2_s"] = d, d_err

    # peak-potential drift dEp/dlog10(v) over the linear range (0 for a reversible couple)
    ep = peaks[f"{options.fit_peak}_peak_potential_V"]
    inr = fit["in_linear_range"] & np.isfinite(ep)
    # fewer than 2 rates in the linear range: judge the drift on every rate with a peak
    inr = np.where((inr.sum(1) >= 2)[:, None], inr, np.isfinite(ep))
    lv = np.log10(v)[None, :]
    nn = inr.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        lm = np.where(inr, lv, 0).sum(1) / nn
        em = np.where(inr, ep, 0).sum(1) / nn
        dl = np.where(inr, lv - lm[:, None], 0)
        shift = (dl * np.where(inr, ep - em[:, None], 0)).sum(1) / (dl * dl).sum(1)
    shift = np.where(nn >= 2, shift, np.nan)
    out["peak_shift_V_per_decade"] = shift

    flags = np.zeros(bsz, dtype=np.int64)
    flags |= np.where(np.isnan(ip).any(1), 1, 0)
    flags |= np.where(~np.isfinite(fit["slope"]), 2, 0)
    flags |= np.where(np.abs(shift) > options.max_peak_shift_V_per_decade, 4, 0)
    flags |= np.where(fit["r2"] < options.min_r2, 8, 0)
    flags |= np.where(~fit["range_tested"], 16, 0)
    if options.max_delta_ep_V is not None:
        dep = np.where(inr, peaks["delta_ep_V"], np.nan)
        flags |= np.where(np.nanmax(np.where(np.isfinite(dep), dep, -np.inf), axis=1)
                          > options.max_delta_ep_V, 32, 0)
    out["flags"] = flags
    out["fit_ok"] = ((flags & FATAL_FLAGS) == 0) & np.isfinite(d)
    return out


# ------------------------------------------------------------------- Datasets


def _sweeps(cv: xr.Dataset, cycle: int | str, sweep: int | str = "auto", ir_ohm: float = 0.0
            ) -> tuple[list[SweepArrays], list[SweepArrays]]:
    """The candidate anodic and cathodic sweeps of ``cycle`` (see ``KineticsOptions.sweep``),
    each with its previous sweep, the potential corrected by ``ir_ohm`` (Ω)."""
    found = cycle_sweeps(cv, cycle)
    i = np.asarray(cv["current_A"].values, dtype=float)
    e = np.asarray(cv["potential_V"].values, dtype=float) - ir_ohm * i
    t = np.asarray(cv["time_s"].values, dtype=float)
    lead = e.shape[:-1]
    b = int(np.prod(lead)) if lead else 1

    def arrays(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return (e[..., idx].reshape(b, idx.size), i[..., idx].reshape(b, idx.size),
                t[..., idx].reshape(-1, idx.size))

    def take(direction: int) -> list[SweepArrays]:
        sweeps = found[direction]
        if sweep == "longest":
            sweeps = sorted(sweeps, key=lambda x: -x.size)[:1]
        elif sweep == "auto":
            sweeps = sorted(sweeps, key=lambda x: -x.size)
        else:
            sweeps = sweeps[int(sweep) - 1:int(sweep)]
        out = []
        for idx in sweeps:
            pe, pi, pt = arrays(idx)
            prev = previous_sweep_indices(cv, idx)
            previous = None
            if prev is not None:
                _, prev_i, prev_t = arrays(prev)
                previous = (prev_t, prev_i)
            out.append(SweepArrays(pe, pi, pt, previous))
        return out

    return take(1), take(-1)


def _rates(cvs: Sequence[xr.Dataset]) -> np.ndarray:
    if not cvs:
        raise KineticsInputError("Randles–Sevcik needs CVs at 2 or more scan rates, found none")
    rates = np.asarray([float(c.attrs["scan_rate_V_s"]) for c in cvs])
    files = sorted({str(c.attrs.get("source_file", "?")) for c in cvs})
    if rates.size < 2:
        raise KineticsInputError(
            f"{', '.join(files)}: Randles–Sevcik needs CVs at 2 or more scan rates (the slope "
            f"of i_p against √v), found 1 ({rates[0] * 1e3:.6g} mV/s); add files at other "
            "rates (kinetics.cv_files)")
    if np.any(np.diff(rates) <= 0):
        raise KineticsInputError(f"{', '.join(files)}: expected distinct ascending scan "
                                 f"rates, found {rates.tolist()}")
    return rates


_FLAG_ATTRS = {
    "long_name": "Randles–Sevcik validity flags (bit mask)",
    "units": "1",
    "flag_masks": np.asarray(list(FLAGS), dtype=np.int64),
    "flag_meanings": " ".join(name for name, _ in FLAGS.values()),
    "comment": "; ".join(f"{bit} {name}: {text}" for bit, (name, text) in FLAGS.items()),
}


def _withheld(options: KineticsOptions) -> str:
    return ("; D reported anyway, flagged (kinetics.force)" if options.force else
            "; D not reported (kinetics.force / --force reports it with this flag)")


def _reasons(res: dict[str, np.ndarray], cvs: Sequence[xr.Dataset],
             options: KineticsOptions) -> list[str]:
    """Human-readable reasons (file, rate, config key) for a single-CV-set result."""
    out = []
    key = {"anodic": "kinetics.anodic_window_V", "cathodic": "kinetics.cathodic_window_V"}
    for r, cv in enumerate(cvs):
        code = int(res[f"{options.fit_peak}_reason"][0, r])
        if code:
            src = cv.attrs.get("source_file", "?")
            window = getattr(options, f"{options.fit_peak}_window_V")
            where = f"in {key[options.fit_peak]} = {list(window)} V" if window else \
                f"in the sweep (set {key[options.fit_peak]})"
            out.append(f"{src}: {float(cv.attrs['scan_rate_V_s']) * 1e3:.6g} mV/s, cycle "
                       f"{options.cycle}: no {options.fit_peak} peak {where}: {REASONS[code]}")
    flags = int(res["flags"][0])
    if flags & 2:
        out.append(f"fewer than 2 scan rates with a {options.fit_peak} peak in the linear range:"
                   " D cannot be computed")
    if flags & 4:
        out.append(f"{options.fit_peak} peak potential drifts by "
                   f"{res['peak_shift_V_per_decade'][0] * 1e3:.3g} mV per decade of scan rate "
                   f"(> kinetics.max_peak_shift_V_per_decade = "
                   f"{options.max_peak_shift_V_per_decade * 1e3:.3g} mV): the couple is not "
                   "reversible, Randles–Sevcik does not apply" + _withheld(options))
    if flags & 8:
        out.append(f"R² = {res['r2'][0]:.4f} of the i_p-√v fit is below kinetics.min_r2 = "
                   f"{options.min_r2}")
    if flags & 16:
        out.append("fewer than 3 scan rates with a peak: the linear range is not tested")
    if flags & 32:
        out.append(f"ΔEp exceeds kinetics.max_delta_ep_V = {options.max_delta_ep_V} V "
                   f"(reversible: {reversible_delta_ep_V(options.n_electrons, options.temperature_K) * 1e3:.1f} mV)"  # noqa: E501
                   + _withheld(options))
    return out


def analyse_cells(cvs: Sequence[xr.Dataset], area_cm2: float,
                  options: KineticsOptions) -> xr.Dataset:
    """Cell CVs (one normalised Dataset per scan rate, ascending) → the cell result.

    Dimension ``scan_rate``; scalar results prefixed ``cell_``; attribute ``reasons``
    (list of str, empty when Randles–Sevcik applies cleanly). Raises
    :class:`KineticsInputError` for fewer than 2 scan rates and ``ValueError`` naming
    ``kinetics.area_cm2`` for a non-positive area.
    """
    if not (area_cm2 is not None and area_cm2 > 0):
        raise ValueError(f"kinetics.area_cm2: expected a positive electrode area (cm²), found "
                         f"{area_cm2}")
    rates = _rates(cvs)
    sw = [_sweeps(c, options.cycle, options.sweep, options.ir_ohm) for c in cvs]
    res = analyse_sweeps([s[0] for s in sw], [s[1] for s in sw], rates, area_cm2, options)
    reasons = _reasons(res, cvs, options)
    per = ("scan_rate",)
    a = cf_attrs
    ds = xr.Dataset(
        {
            "anodic_peak_current_A": (per, res["anodic_peak_current_A"][0],
                                      a("A", "anodic peak current above the background")),
            "anodic_peak_current_stderr_A": (per, res["anodic_peak_stderr_A"][0],
                                             a("A", "standard error of the anodic peak current")),
            "anodic_peak_potential_V": (per, res["anodic_peak_potential_V"][0],
                                        a("V", "anodic peak potential")),
            "cathodic_peak_current_A": (per, res["cathodic_peak_current_A"][0],
                                        a("A", "cathodic peak current above the background "
                                          "(negative)")),
            "cathodic_peak_current_stderr_A": (per, res["cathodic_peak_stderr_A"][0],
                                               a("A", "standard error of the cathodic peak "
                                                 "current")),
            "cathodic_peak_potential_V": (per, res["cathodic_peak_potential_V"][0],
                                          a("V", "cathodic peak potential")),
            "delta_ep_V": (per, res["delta_ep_V"][0], a("V", "peak separation Epa - Epc")),
            "in_linear_range": (per, res["in_linear_range"][0],
                                a("1", "scan rate inside the Randles–Sevcik linear range")),
            "deviation_from_line": (per, res["deviation"][0],
                                    a("1", "relative deviation of i_p from the ideal "
                                      "√v line (curvature model)")),
            "source_file": (per, np.asarray([str(c.attrs.get("source_file", "")) for c in cvs]),
                            a("1", "CV file of this scan rate")),
            "cell_slope": ((), res["slope"][0],
                           a("A s0.5 V-0.5", "slope of i_p against sqrt(scan rate)")),
            "cell_slope_stderr": ((), res["slope_stderr"][0],
                                  a("A s0.5 V-0.5", "standard error of the slope")),
            "cell_r2": ((), res["r2"][0], a("1", "weighted R² of the i_p-√v fit")),
            "cell_diffusion_cm2_s": ((), res["diffusion_cm2_s"][0],
                                     a("cm2 s-1", "Randles–Sevcik diffusion coefficient")),
            "cell_diffusion_stderr_cm2_s": ((), res["diffusion_stderr_cm2_s"][0],
                                            a("cm2 s-1", "standard error of D")),
            "cell_max_linear_scan_rate_V_s": ((), res["max_linear_scan_rate_V_s"][0],
                                              a("V s-1", "highest scan rate in the linear "
                                                "range")),
            "cell_n_linear": ((), res["n_linear"][0],
                              a("1", "number of scan rates in the linear range")),
            "cell_peak_shift_V_per_decade": ((), res["peak_shift_V_per_decade"][0],
                                             a("V", "drift of the peak potential per decade of "
                                               "scan rate (linear range)")),
            "cell_flags": ((), res["flags"][0], dict(_FLAG_ATTRS)),
            "cell_randles_sevcik_applies": ((), bool(res["fit_ok"][0]),
                                            a("1", "Randles–Sevcik applies (no fatal flag, D "
                                              "computed)")),
        },
        coords={"scan_rate": ("scan_rate", rates, a("V s-1", "potential scan rate")),
                "sqrt_scan_rate": ("scan_rate", np.sqrt(rates),
                                   a("V0.5 s-0.5", "square root of the scan rate"))},
        attrs={"cell_area_cm2": float(area_cm2), "cell_cycle": str(options.cycle),
               "cell_fit_peak": options.fit_peak, "reasons": reasons},
    )
    return ds


def analyse_map(cvs: Sequence[xr.Dataset], options: KineticsOptions, *,
                area_cm2: float | None = None) -> xr.Dataset:
    """An SECCM map (one ``(y, x, sample)`` Dataset per scan rate) → maps on ``(y, x)``.

    ``area_cm2`` overrides the file's ``pixel_area_cm2``. Variables: ``diffusion_cm2_s``,
    ``diffusion_stderr_cm2_s``, ``slope``, ``slope_stderr``, ``r2``,
    ``max_linear_scan_rate_V_s``, ``n_linear``, ``peak_shift_V_per_decade``, ``flags``,
    ``fit_ok``; per ``map_scan_rate``: ``map_anodic_peak_current_A``,
    ``map_anodic_peak_potential_V``, ``map_cathodic_peak_current_A``,
    ``map_cathodic_peak_potential_V``, ``map_in_linear_range``.
    """
    rates = _rates(cvs)
    area = float(area_cm2 if area_cm2 is not None else cvs[0].attrs.get("pixel_area_cm2", 0))
    if not area > 0:
        raise ValueError(f"{cvs[0].attrs.get('source_file', '?')}: kinetics.map_area_cm2 / "
                         f"pixel_area_cm2: expected a positive pixel area (cm²), found {area}")
    ny, nx = cvs[0].sizes["y"], cvs[0].sizes["x"]
    sw = [_sweeps(c, options.cycle, options.sweep, options.ir_ohm) for c in cvs]
    res = analyse_sweeps([s[0] for s in sw], [s[1] for s in sw], rates, area, options)
    yx = ("y", "x")
    ryx = ("map_scan_rate", "y", "x")

    def m2(key: str) -> np.ndarray:
        return res[key].reshape(ny, nx)

    def m3(key: str) -> np.ndarray:
        return np.moveaxis(res[key].reshape(ny, nx, rates.size), -1, 0)

    a = cf_attrs
    ds = xr.Dataset(
        {
            "diffusion_cm2_s": (yx, m2("diffusion_cm2_s"),
                                a("cm2 s-1", "Randles–Sevcik diffusion coefficient")),
            "diffusion_stderr_cm2_s": (yx, m2("diffusion_stderr_cm2_s"),
                                       a("cm2 s-1", "standard error of D")),
            "slope": (yx, m2("slope"), a("A s0.5 V-0.5", "slope of i_p against sqrt(v)")),
            "slope_stderr": (yx, m2("slope_stderr"), a("A s0.5 V-0.5", "standard error of "
                                                         "the slope")),
            "r2": (yx, m2("r2"), a("1", "weighted R² of the i_p-√v fit")),
            "max_linear_scan_rate_V_s": (yx, m2("max_linear_scan_rate_V_s"),
                                         a("V s-1", "highest scan rate in the linear range")),
            "n_linear": (yx, m2("n_linear"), a("1", "number of scan rates in the linear "
                                                "range")),
            "peak_shift_V_per_decade": (yx, m2("peak_shift_V_per_decade"),
                                        a("V", "drift of the peak potential per decade of "
                                          "scan rate")),
            "flags": (yx, m2("flags"), dict(_FLAG_ATTRS)),
            "fit_ok": (yx, m2("fit_ok"), a("1", "fit-quality mask: Randles–Sevcik applies "
                                           "and D computed")),
            "map_anodic_peak_current_A": (ryx, m3("anodic_peak_current_A"),
                                          a("A", "anodic peak current above the background")),
            "map_anodic_peak_potential_V": (ryx, m3("anodic_peak_potential_V"),
                                            a("V", "anodic peak potential")),
            "map_cathodic_peak_current_A": (ryx, m3("cathodic_peak_current_A"),
                                            a("A", "cathodic peak current above the "
                                              "background")),
            "map_cathodic_peak_potential_V": (ryx, m3("cathodic_peak_potential_V"),
                                              a("V", "cathodic peak potential")),
            "map_in_linear_range": (ryx, m3("in_linear_range"),
                                    a("1", "scan rate inside the linear range")),
        },
        coords={
            "map_scan_rate": ("map_scan_rate", rates, a("V s-1", "SECCM potential scan rate")),
            "y": ("y", cvs[0]["y_um"].values, a("um", "pixel centre y")) if "y_um" in cvs[0]
            else ("y", np.arange(ny, dtype=float), a("1", "pixel row index")),
            "x": ("x", cvs[0]["x_um"].values, a("um", "pixel centre x")) if "x_um" in cvs[0]
            else ("x", np.arange(nx, dtype=float), a("1", "pixel column index")),
        },
        attrs={"map_pixel_area_cm2": area, "map_cycle": str(options.cycle),
               "map_fit_peak": options.fit_peak},
    )
    return ds
