"""Phase analysis of fitted XRD peaks: lattice parameters, Vegard Li content, phase fractions,
Scherrer sizes and the intermediate-phase test. Pure numpy (no I/O).

Lattice parameters (Å) by weighted linear least squares in Q_hkl = 1/d² (Å⁻²):

    cubic          1/d² = (h² + k² + l²) / a²
    hexagonal      1/d² = 4/3 (h² + hk + k²) / a² + l² / c²      (rhombohedral: hexagonal axes)
    orthorhombic   1/d² = h²/a² + k²/b² + l²/c²

with σ(1/d²) = 2 σ_d / d³; a = (1/a²)^(−1/2), σ_a = ½ a³ σ(1/a²). The covariance is scaled
by max(1, χ²/(n − p)) when n > p.

Vegard's law between end members (x_lo at lattice L_lo, x_hi at L_hi) on a quantity G
(cell volume V by default, or one axis):  x = x_lo + (x_hi − x_lo)(G − G_lo)/(G_hi − G_lo).

Phase fractions (molar) from integrated intensities: each peak's area converted to 2θ
degrees, A_i, and its reference intensity I_i (area for a phase fraction of 1 on a common
scale) with a per-phase scale s_p give n_p = Σ_{i∈p} A_i / (s_p Σ_{i∈p} I_i) and
f_p = n_p / Σ_q n_q, over the windows fitted successfully in that frame. Standard errors
from the covariance C_A of the areas (tied areas — satellites, one scale per phase in a
joint fit — are fully correlated, and the scales of overlapping phases anti-correlated):
C_n = G C_A Gᵀ with G_pi = 1/(s_p Σ_{i∈p} I_i) for i ∈ p, and

    var f = D C_n Dᵀ,   D_pq = (δ_pq − f_p) / Σ_q n_q;

without a covariance the areas are taken as independent (C_A diagonal).

Scherrer: L = K λ / (β cos θ), β = √(w² − w_inst²) (radians of 2θ), L in nm.

Intermediate phase: per frame, χ² of the fits without (A) and with (B) the intermediate's
peaks over the windows where both succeeded; with the quasi-likelihood scale
s² = max(1, χ²_A/(n − k_A)) (a misfit common to both models does not count as evidence)

    ΔBIC = (χ²_B − χ²_A)/s² + (k_B − k_A) ln n,     ΔAIC = (χ²_B − χ²_A)/s² + 2 (k_B − k_A),

and the frame is flagged when Δ < −threshold and the intermediate's fraction ≥ min_fraction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "PhaseDef",
    "fit_lattice",
    "intermediate_test",
    "lattice_volume",
    "phase_fractions",
    "scherrer_size_nm",
    "vegard_x",
]

SYSTEMS = ("cubic", "hexagonal", "rhombohedral", "orthorhombic")


@dataclass(frozen=True)
class PhaseDef:
    """A crystalline phase: crystal system, reference lattice (Å; b, c may be None where
    the system fixes them), Li content ``x_li`` (for Vegard end members) and the scale
    factor of its reference intensities."""

    name: str
    system: str = "orthorhombic"
    a_A: float = 1.0
    b_A: float | None = None
    c_A: float | None = None
    x_li: float | None = None
    scale: float = 1.0

    def __post_init__(self) -> None:
        if self.system not in SYSTEMS:
            raise ValueError(f"system: expected one of {SYSTEMS}, found {self.system!r}")

    def lattice(self) -> tuple[float, float, float]:
        """(a, b, c) with the system's equalities filled in."""
        a = self.a_A
        if self.system == "cubic":
            return a, a, a
        if self.system in ("hexagonal", "rhombohedral"):
            return a, a, float(self.c_A if self.c_A is not None else np.nan)
        return a, float(self.b_A if self.b_A is not None else np.nan), \
            float(self.c_A if self.c_A is not None else np.nan)

    def d_spacing(self, hkl: Sequence[int]) -> float:
        """d (Å) of (hkl) from the reference lattice."""
        row = _design_row(self.system, hkl)
        a, b, c = self.lattice()
        coef = {"cubic": [1 / a**2], "hexagonal": [1 / a**2, 1 / c**2],
                "orthorhombic": [1 / a**2, 1 / b**2, 1 / c**2]}[_family(self.system)]
        return float(1.0 / np.sqrt(np.dot(row, coef)))


def _family(system: str) -> str:
    return "hexagonal" if system == "rhombohedral" else system


def _design_row(system: str, hkl: Sequence[int]) -> np.ndarray:
    h, k, l = (float(v) for v in hkl)  # noqa: E741
    fam = _family(system)
    if fam == "cubic":
        return np.array([h * h + k * k + l * l])
    if fam == "hexagonal":
        return np.array([4.0 / 3.0 * (h * h + h * k + k * k), l * l])
    return np.array([h * h, k * k, l * l])


def lattice_volume(a: np.ndarray, b: np.ndarray, c: np.ndarray, system: str) -> np.ndarray:
    """Cell volume (Å³): abc; hexagonal √3/2 a² c."""
    a, b, c = (np.asarray(v, float) for v in (a, b, c))
    if _family(system) == "hexagonal":
        return np.sqrt(3.0) / 2.0 * a * a * c
    return a * b * c


def fit_lattice(hkl: Sequence[Sequence[int]], d_A: np.ndarray, d_stderr_A: np.ndarray,
                system: str) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares lattice (a, b, c) and standard errors (Å) from reflections.

    NaN rows are ignored; with fewer usable reflections than unknowns, NaN. For cubic,
    b = c = a; for hexagonal, b = a.
    """
    d = np.asarray(d_A, float)
    sd = np.asarray(d_stderr_A, float)
    X = np.array([_design_row(system, h) for h in hkl]) if len(hkl) else np.zeros((0, 1))
    nan3 = np.full(3, np.nan)
    ok = np.isfinite(d) & np.isfinite(sd) & (sd > 0) & (d > 0)
    n_par = {"cubic": 1, "hexagonal": 2, "orthorhombic": 3}[_family(system)]
    if ok.sum() < n_par:
        return nan3, nan3.copy()
    X, d, sd = X[ok], d[ok], sd[ok]
    if np.linalg.matrix_rank(X) < n_par:
        return nan3, nan3.copy()
    yq = 1.0 / d**2
    sq = 2.0 * sd / d**3
    Xw, yw = X / sq[:, None], yq / sq
    coef, *_ = np.linalg.lstsq(Xw, yw, rcond=None)
    cov = np.linalg.inv(Xw.T @ Xw)
    n = d.size
    if n > n_par:
        chi2 = float(np.sum((Xw @ coef - yw) ** 2))
        cov = cov * max(1.0, chi2 / (n - n_par))
    with np.errstate(invalid="ignore"):
        axes = 1.0 / np.sqrt(coef)
        errs = 0.5 * axes**3 * np.sqrt(np.diag(cov))
    fam = _family(system)
    if fam == "cubic":
        return np.repeat(axes, 3), np.repeat(errs, 3)
    if fam == "hexagonal":
        return np.array([axes[0], axes[0], axes[1]]), np.array([errs[0], errs[0], errs[1]])
    return axes, errs


def vegard_x(lattice: np.ndarray, lithiated: PhaseDef, delithiated: PhaseDef,
             system: str, quantity: str = "volume") -> np.ndarray:
    """Li content by Vegard's law; ``lattice`` (..., 3) = (a, b, c) in Å."""
    lat = np.asarray(lattice, float)

    def g(v: np.ndarray) -> np.ndarray:
        if quantity == "volume":
            return lattice_volume(v[..., 0], v[..., 1], v[..., 2], system)
        return v[..., "abc".index(quantity)]

    if quantity not in ("volume", "a", "b", "c"):
        raise ValueError(f"quantity: expected volume, a, b or c, found {quantity!r}")
    g_hi = g(np.array(lithiated.lattice()))
    g_lo = g(np.array(delithiated.lattice()))
    x_hi = 1.0 if lithiated.x_li is None else lithiated.x_li
    x_lo = 0.0 if delithiated.x_li is None else delithiated.x_li
    return x_lo + (x_hi - x_lo) * (g(lat) - g_lo) / (g_hi - g_lo)


def phase_fractions(area_2th: np.ndarray, intensity: np.ndarray, peak_phase: Sequence[str],
                    phases: Sequence[str], scale: Sequence[float],
                    usable: np.ndarray, area_cov: np.ndarray | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Molar fractions (F, n_phases) and their standard errors from peak areas.

    ``area_2th`` (F, n_peaks) in 2θ-degree units (NaN allowed); ``usable`` (F, n_peaks)
    marks peaks of successfully fitted windows. Errors are propagated from the per-peak
    area errors passed in ``area_2th[..., 1]`` when ``area_2th`` has a trailing axis 2
    (independent areas), or from ``area_cov`` (F, n_peaks, n_peaks), the areas' covariance
    in the same units, when given (default None); see the module docstring.
    """
    arr = np.asarray(area_2th, float)
    if arr.ndim == 3:
        area, area_err = arr[..., 0], arr[..., 1]
    else:
        area, area_err = arr, np.zeros_like(arr)
    inten = np.asarray(intensity, float)
    pp = np.asarray(peak_phase)
    n_f = area.shape[0]
    amount = np.zeros((n_f, len(phases)))
    var = np.zeros((n_f, len(phases)))
    for i, (ph, s) in enumerate(zip(phases, scale, strict=True)):
        sel = (pp == ph)
        use = usable & sel[None, :] & np.isfinite(area)
        num = np.where(use, area, 0.0).sum(axis=1)
        den = np.where(use, inten[None, :], 0.0).sum(axis=1) * s
        with np.errstate(divide="ignore", invalid="ignore"):
            amount[:, i] = np.where(den > 0, num / den, np.nan)
            var[:, i] = np.where(den > 0, np.where(use, np.nan_to_num(area_err) ** 2,
                                                   0.0).sum(axis=1) / den**2, np.nan)
    total = np.nansum(amount, axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(total > 0, amount / total, np.nan)
        if area_cov is None:
            # dF_i/dn_j = (δ_ij − F_i)/T, uncorrelated amounts
            err = np.sqrt((1 - 2 * frac) * var + frac**2 * np.nansum(var, axis=1,
                                                                       keepdims=True)) / total
        else:
            err = _fraction_stderr(area_cov, usable & np.isfinite(area), inten, pp, phases,
                                   scale, frac, total)
    frac = np.where(np.isfinite(amount), frac, np.nan)
    return frac, err


def _fraction_stderr(area_cov: np.ndarray, use: np.ndarray, inten: np.ndarray,
                     pp: np.ndarray, phases: Sequence[str], scale: Sequence[float],
                     frac: np.ndarray, total: np.ndarray) -> np.ndarray:
    """√diag(D G C_A Gᵀ Dᵀ) of the module docstring, per frame (F, n_phases)."""
    n_f, n_ph = frac.shape
    g = np.zeros((n_f, n_ph, use.shape[1]))
    for i, (ph, s) in enumerate(zip(phases, scale, strict=True)):
        sel = use & (pp == ph)[None, :]
        den = np.where(sel, inten[None, :], 0.0).sum(axis=1) * s
        g[:, i, :] = np.where(sel, 1.0 / np.where(den > 0, den, np.nan)[:, None], 0.0)
    c = np.where(use[:, :, None] & use[:, None, :], np.nan_to_num(area_cov), 0.0)
    c_n = np.einsum("fpi,fij,fqj->fpq", g, c, g)
    f0 = np.nan_to_num(frac)
    d = (np.eye(n_ph)[None] - f0[:, :, None]) / total[:, :, None]
    var = np.einsum("fpq,fqr,fpr->fp", d, c_n, d)
    return np.where(np.isfinite(frac), np.sqrt(np.clip(var, 0.0, None)), np.nan)


def scherrer_size_nm(fwhm_2th_deg: np.ndarray, two_theta_deg: np.ndarray,
                     wavelength_A: float, k: float = 0.9,
                     instrument_fwhm_deg: float = 0.0) -> np.ndarray:
    """Crystallite size (nm) L = K λ / (β cos θ), β = √(w² − w_inst²) in radians; NaN
    where the width does not exceed the instrumental width."""
    w = np.asarray(fwhm_2th_deg, float)
    with np.errstate(invalid="ignore"):
        beta = np.radians(np.sqrt(w**2 - instrument_fwhm_deg**2))
        theta = np.radians(np.asarray(two_theta_deg, float)) / 2.0
        size = k * wavelength_A / (beta * np.cos(theta)) / 10.0
    return np.where(np.isfinite(size) & (beta > 0), size, np.nan)


def intermediate_test(chi2_a: np.ndarray, k_a: np.ndarray, chi2_b: np.ndarray,
                      k_b: np.ndarray, n_points: np.ndarray, fraction: np.ndarray,
                      *, criterion: str = "bic", threshold: float = 10.0,
                      min_fraction: float = 0.02) -> tuple[np.ndarray, np.ndarray]:
    """(delta (F,), flag (F,)) of the model comparison in the module docstring.

    Inputs are per frame, summed over the windows that hold intermediate peaks and
    were fitted successfully in both models (NaN where none).
    """
    chi2_a, chi2_b = np.asarray(chi2_a, float), np.asarray(chi2_b, float)
    n = np.asarray(n_points, float)
    dk = np.asarray(k_b, float) - np.asarray(k_a, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        s2 = np.maximum(1.0, chi2_a / np.maximum(n - np.asarray(k_a, float), 1.0))
        penalty = dk * (np.log(np.maximum(n, 1.0)) if criterion == "bic" else 2.0)
        delta = (chi2_b - chi2_a) / s2 + penalty
    if criterion not in ("bic", "aic"):
        raise ValueError(f"criterion: expected 'bic' or 'aic', found {criterion!r}")
    flag = np.isfinite(delta) & (delta < -threshold) & (np.nan_to_num(fraction) >= min_fraction)
    return delta, flag
