"""Powder diffraction of the LiFePO4 / FePO4 system: the pure core of the XRD simulators.

Everything here is numpy in, numpy out (no file I/O). Units are in the names:
``_A`` ångström, ``_deg`` degrees, ``_m`` metres.

Crystallography
    All three phases are orthorhombic olivines, space group Pnma (No. 62), Z = 4.
    The d-spacing of reflection (hkl) is

        1/d² = h²/a² + k²/b² + l²/c².

    Structure factors use the literature LiFePO4 atomic positions (Li 4a, Fe/P/O1/O2
    4c, O3 8d), expanded with the eight general-position operators of Pnma:

        F(hkl) = Σ_j occ_j f_j(s) exp(-B s²) exp(2πi (h x_j + k y_j + l z_j)),
        s = sin θ / λ = 1 / (2d),

    with neutral-atom Cromer–Mann form factors

        f(s) = Σ_{i=1..4} a_i exp(-b_i s²) + c

    (coefficients from International Tables for Crystallography, Vol. C, Table 6.1.1.4)
    and an overall isotropic Debye–Waller factor B = ``B_ISO_A2``. FePO4 uses the same
    fractional coordinates without Li; the metastable LixFePO4 uses them with Li
    occupancy ``LI_OCCUPANCY_INTERMEDIATE``.

Powder intensities
    A reflection's integrated intensity on the detector, per unit length of the
    Debye–Scherrer ring (what a pixel sees), is

        I_hkl ∝ (phase fraction) × m_hkl |F_hkl|² / V_cell × L(θ),
        L(θ) = 1 / (sin²θ cos θ)     (powder Lorentz factor),

    the polarisation of the (horizontally polarised) synchrotron beam being applied per
    pixel by the pyFAI geometry when a frame is rendered (``POLARIZATION_FACTOR``).
    The profile is a pseudo-Voigt of mixing ``PV_ETA`` whose area is conserved when the
    width changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from itertools import product

import numpy as np
import pyFAI
from pyFAI.integrator.azimuthal import AzimuthalIntegrator

__all__ = [
    "B_ISO_A2",
    "D_MIN_A",
    "GAP_VALUE",
    "GAUSS_WINDOW_FWHM",
    "HOT_PIXEL_COUNTS",
    "LI_OCCUPANCY_INTERMEDIATE",
    "PHASES",
    "POLARIZATION_FACTOR",
    "PV_ETA",
    "REFERENCE_FWHM_DEG",
    "FrameRenderer",
    "Phase",
    "Reflection",
    "atomic_form_factor",
    "background_profile",
    "d_spacing_orthorhombic",
    "lorentz_factor",
    "make_integrator",
    "pattern_1d",
    "reflection_table",
    "two_theta_deg",
]

D_MIN_A = 1.4  # shortest d-spacing kept in the reflection lists (Å)
B_ISO_A2 = 0.6  # overall isotropic Debye–Waller factor (Å²)
# Lattice constants (Å) of the end members and of the metastable intermediate (Pnma)
LATTICE_A: dict[str, tuple[float, float, float]] = {
    "LiFePO4": (10.332, 6.010, 4.692),
    "FePO4": (9.821, 5.792, 4.788),
    "LixFePO4": (10.207, 5.943, 4.724),
}


def vegard_x_from_volume(a_A: float, b_A: float, c_A: float) -> float:
    """Li content by Vegard's law on the unit-cell volume between FePO4 (x=0) and LiFePO4 (x=1):
    x = (V − V_FP) / (V_LFP − V_FP)."""
    v_lfp, v_fp = np.prod(LATTICE_A["LiFePO4"]), np.prod(LATTICE_A["FePO4"])
    return float((a_A * b_A * c_A - v_fp) / (v_lfp - v_fp))


# Li content of the intermediate, consistent with its lattice (Vegard on volume: x ≈ 0.748);
# used as its Li site occupancy and in the lever rule of the phase model.
LI_OCCUPANCY_INTERMEDIATE = vegard_x_from_volume(*LATTICE_A["LixFePO4"])
PV_ETA = 0.5  # pseudo-Voigt Lorentzian fraction
GAUSS_WINDOW_FWHM = 3.5  # Gaussian parts are evaluated within ± this many FWHM
REFERENCE_FWHM_DEG = 0.02  # ``scale`` in pattern_1d is the peak height at this FWHM
POLARIZATION_FACTOR = 0.99  # pyFAI convention, (Ih - Iv)/(Ih + Iv): horizontal, synchrotron
GAP_VALUE = np.uint32(2**32 - 1)  # Eiger sentinel for pixels in module gaps
HOT_PIXEL_COUNTS = np.uint32(1_048_575)  # a hot pixel reads this (2**20 - 1) in every frame

# Cromer–Mann coefficients (a1, a2, a3, a4, b1, b2, b3, b4, c) for neutral atoms,
# International Tables for Crystallography Vol. C (2006), Table 6.1.1.4.
_CROMER_MANN: dict[str, tuple[float, ...]] = {
    "Li": (1.1282, 0.7508, 0.6175, 0.4653, 3.9546, 1.0524, 85.3905, 168.261, 0.0377),
    "Fe": (11.7695, 7.3573, 3.5222, 2.3045, 4.7611, 0.3072, 15.3535, 76.8805, 1.0369),
    "P": (6.4345, 4.1791, 1.7800, 1.4908, 1.9067, 27.1570, 0.5260, 68.1645, 1.1149),
    "O": (3.0485, 2.2868, 1.5463, 0.8670, 13.2771, 5.7011, 0.3239, 32.9089, 0.2508),
}

# Asymmetric unit of LiFePO4, Pnma (standard setting), fractional coordinates.
_LFP_SITES: tuple[tuple[str, tuple[float, float, float]], ...] = (
    ("Li", (0.0, 0.0, 0.0)),  # 4a
    ("Fe", (0.2822, 0.25, 0.9748)),  # 4c
    ("P", (0.0949, 0.25, 0.4182)),  # 4c
    ("O", (0.0968, 0.25, 0.7428)),  # O1 4c
    ("O", (0.4571, 0.25, 0.2060)),  # O2 4c
    ("O", (0.1656, 0.0465, 0.2848)),  # O3 8d
)


def _pnma_positions(xyz: tuple[float, float, float]) -> np.ndarray:
    """All symmetry-equivalent positions of ``xyz`` in Pnma (duplicates removed), shape (n, 3)."""
    x, y, z = xyz
    ops = [
        (x, y, z), (-x + 0.5, -y, z + 0.5), (-x, y + 0.5, -z), (x + 0.5, -y + 0.5, -z + 0.5),
        (-x, -y, -z), (x + 0.5, y, -z + 0.5), (x, -y + 0.5, z), (-x + 0.5, y + 0.5, z + 0.5),
    ]
    pos = np.mod(np.array(ops, dtype=float), 1.0)
    keep: list[np.ndarray] = []
    for p in pos:
        if not any(np.allclose(_wrap(p - q), 0.0, atol=1e-6) for q in keep):
            keep.append(p)
    return np.array(keep)


def _wrap(delta: np.ndarray) -> np.ndarray:
    return delta - np.round(delta)


@dataclass(frozen=True)
class Reflection:
    """One (hkl) reflection of a phase.

    ``rel_intensity`` is m |F|² normalised to 100 for the phase's strongest reflection
    (structure only, no Lorentz factor: that depends on the wavelength);
    ``f2_mult`` is the absolute m |F|² in electrons².
    """

    hkl: tuple[int, int, int]
    d_A: float
    rel_intensity: float
    f2_mult: float = 0.0


@dataclass(frozen=True)
class Phase:
    """An orthorhombic (Pnma) phase with lattice constants (Å) and its reflection list."""

    name: str
    a_A: float
    b_A: float
    c_A: float
    reflections: tuple[Reflection, ...]

    @property
    def volume_A3(self) -> float:
        return self.a_A * self.b_A * self.c_A


def d_spacing_orthorhombic(
    h: np.ndarray | int, k: np.ndarray | int, l: np.ndarray | int,  # noqa: E741
    a_A: float, b_A: float, c_A: float,
) -> np.ndarray:
    """d (Å) of (hkl) in an orthorhombic cell: 1/d² = h²/a² + k²/b² + l²/c²."""
    h, k, l = (np.asarray(v, dtype=float) for v in (h, k, l))  # noqa: E741
    return 1.0 / np.sqrt(h**2 / a_A**2 + k**2 / b_A**2 + l**2 / c_A**2)


def atomic_form_factor(element: str, s_inv_A: np.ndarray | float) -> np.ndarray:
    """Cromer–Mann form factor f(s) = Σ a_i exp(-b_i s²) + c, s = sin θ / λ (Å⁻¹)."""
    coef = _CROMER_MANN[element]
    s2 = np.asarray(s_inv_A, dtype=float) ** 2
    a, b, c = coef[:4], coef[4:8], coef[8]
    return sum(ai * np.exp(-bi * s2) for ai, bi in zip(a, b, strict=True)) + c


def two_theta_deg(d_A: np.ndarray | float, wavelength_A: float) -> np.ndarray:
    """Bragg angle 2θ (deg) = 2 asin(λ / 2d); NaN where λ > 2d."""
    ratio = wavelength_A / (2.0 * np.asarray(d_A, dtype=float))
    with np.errstate(invalid="ignore"):
        return np.degrees(2.0 * np.arcsin(np.where(ratio <= 1.0, ratio, np.nan)))


def lorentz_factor(two_theta_deg_: np.ndarray | float) -> np.ndarray:
    """Powder Lorentz factor L = 1 / (sin²θ cos θ)."""
    theta = np.radians(np.asarray(two_theta_deg_, dtype=float)) / 2.0
    return 1.0 / (np.sin(theta) ** 2 * np.cos(theta))


def _build_phase(
    name: str, a_A: float, b_A: float, c_A: float, li_occupancy: float, d_min_A: float = D_MIN_A
) -> Phase:
    """Reflections with d ≥ d_min, m|F|² from the LiFePO4 structure (Li scaled by occupancy)."""
    elements: list[str] = []
    occ: list[float] = []
    positions: list[np.ndarray] = []
    for el, xyz in _LFP_SITES:
        o = li_occupancy if el == "Li" else 1.0
        if o <= 0.0:
            continue
        pos = _pnma_positions(xyz)
        positions.append(pos)
        elements += [el] * len(pos)
        occ += [o] * len(pos)
    xyz_all = np.concatenate(positions)
    occ_arr = np.asarray(occ)

    hmax, kmax, lmax = (int(np.floor(x / d_min_A)) for x in (a_A, b_A, c_A))
    hkl = np.array(
        [t for t in product(range(hmax + 1), range(kmax + 1), range(lmax + 1)) if any(t)]
    )
    d = d_spacing_orthorhombic(hkl[:, 0], hkl[:, 1], hkl[:, 2], a_A, b_A, c_A)
    keep = d >= d_min_A
    hkl, d = hkl[keep], d[keep]
    s = 1.0 / (2.0 * d)
    f = np.stack([atomic_form_factor(el, s) for el in elements], axis=1)  # (n_hkl, n_atoms)
    f *= occ_arr[None, :] * np.exp(-B_ISO_A2 * s**2)[:, None]
    phase_arg = 2.0 * np.pi * hkl @ xyz_all.T
    fhkl = (f * np.exp(1j * phase_arg)).sum(axis=1)
    mult = 2.0 ** np.count_nonzero(hkl, axis=1)  # mmm Laue class: (±h, ±k, ±l)
    f2m = mult * np.abs(fhkl) ** 2
    present = f2m > 1e-6 * f2m.max()  # drops systematic absences (|F| ~ 1e-13)
    hkl, d, f2m = hkl[present], d[present], f2m[present]
    order = np.argsort(-d, kind="stable")
    rel = 100.0 * f2m / f2m.max()
    refl = tuple(
        Reflection(
            hkl=(int(hkl[i, 0]), int(hkl[i, 1]), int(hkl[i, 2])),
            d_A=float(d[i]), rel_intensity=float(rel[i]), f2_mult=float(f2m[i]),
        )
        for i in order
    )
    return Phase(name=name, a_A=a_A, b_A=b_A, c_A=c_A, reflections=refl)


PHASES: dict[str, Phase] = {
    name: _build_phase(name, *LATTICE_A[name], li_occupancy=occ)
    for name, occ in (("LiFePO4", 1.0), ("FePO4", 0.0),
                      ("LixFePO4", LI_OCCUPANCY_INTERMEDIATE))
}


def _phase_peak_table(phase: Phase, wavelength_A: float) -> tuple[np.ndarray, np.ndarray]:
    """(2θ_deg, absolute intensity m|F|² L(θ) / V) of the reflections visible at λ."""
    d = np.array([r.d_A for r in phase.reflections])
    f2m = np.array([r.f2_mult for r in phase.reflections])
    tth = two_theta_deg(d, wavelength_A)
    ok = np.isfinite(tth)
    return tth[ok], f2m[ok] * lorentz_factor(tth[ok]) / phase.volume_A3


def _intensity_norm(wavelength_A: float) -> float:
    """Largest m|F|² L / V of pure LiFePO4 at λ: the common intensity unit of all phases."""
    return float(_phase_peak_table(PHASES["LiFePO4"], wavelength_A)[1].max())


def reflection_table(phase: Phase, wavelength_A: float, n_strongest: int | None = 8) -> list[dict]:
    """The strongest reflections of ``phase`` at λ, as JSON-ready dicts sorted by 2θ.

    ``rel_intensity`` here includes the Lorentz factor (100 = strongest of the phase).
    ``intensity_common`` is the integrated intensity of the reflection for a phase fraction
    of 1, m|F|² L / V, on the scale shared by all phases (100 = strongest LiFePO4 line): the
    per-phase scale a refinement needs to turn peak areas into molar fractions.
    """
    d = np.array([r.d_A for r in phase.reflections])
    tth = two_theta_deg(d, wavelength_A)
    inten = np.array([r.f2_mult for r in phase.reflections]) * lorentz_factor(tth)
    inten = np.where(np.isfinite(inten), inten, 0.0)
    rel = 100.0 * inten / inten.max()
    common = 100.0 * inten / phase.volume_A3 / _intensity_norm(wavelength_A)
    idx = np.argsort(-rel, kind="stable")
    if n_strongest is not None:
        idx = idx[:n_strongest]
    idx = idx[np.argsort(tth[idx])]
    return [
        {
            "hkl": list(phase.reflections[i].hkl),
            "d_A": float(d[i]),
            "two_theta_deg": float(tth[i]),
            "rel_intensity": float(rel[i]),
            "intensity_common": float(common[i]),
        }
        for i in idx
    ]


def _add_pseudo_voigt_peaks(
    out: np.ndarray, x: np.ndarray, centres: np.ndarray, heights: np.ndarray, fwhm: float,
    eta: float = PV_ETA,
) -> None:
    """out += Σ_i h_i [η / (1 + u_i) + (1 − η) exp(−ln2 · u_i)],  u_i = (2 (x − c_i) / w)².

    The Lorentzian part is summed over the whole of ``x`` (no truncation); the Gaussian
    part within ±``GAUSS_WINDOW_FWHM`` FWHM of each centre (beyond, it is < 1e-10).
    ``x`` is 1D; where it is sorted the Gaussian windows are found by bisection.
    """
    k = 2.0 / fwhm
    for c, h in zip(centres, heights, strict=True):
        out += (h * eta) / (1.0 + ((x - c) * k) ** 2)
    half = GAUSS_WINDOW_FWHM * fwhm
    g = (1.0 - eta) * heights
    if x.size > 1 and bool(np.all(x[1:] >= x[:-1])):
        lo = np.searchsorted(x, centres - half, side="left")
        hi = np.searchsorted(x, centres + half, side="right")
        for c, h, i0, i1 in zip(centres, g, lo, hi, strict=True):
            if i1 > i0:
                out[i0:i1] += h * np.exp(-np.log(2.0) * ((x[i0:i1] - c) * k) ** 2)
    else:
        for c, h in zip(centres, g, strict=True):
            near = np.abs(x - c) < half
            out[near] += h * np.exp(-np.log(2.0) * ((x[near] - c) * k) ** 2)


def pattern_1d(
    two_theta_deg: np.ndarray,
    fractions: Mapping[str, float],
    wavelength_A: float,
    fwhm_deg: Mapping[str, float] | float = 0.02,
    scale: float = 1.0,
) -> np.ndarray:
    """Powder pattern I(2θ) of a phase mixture (no background), per pixel of the ring.

    I(2θ) = scale Σ_p f_p Σ_hkl (m|F|² L(θ) / V)_hkl / N × (w_ref / w_p) pV(2θ − 2θ_hkl; w_p)

    with pV = η L + (1 − η) G of unit height and FWHM w_p (η = ``PV_ETA``),
    w_ref = ``REFERENCE_FWHM_DEG`` (so peak *areas* do not change with the width w_p) and
    N the largest m|F|² L / V of pure LiFePO4 at this λ: ``scale`` is the height of the
    strongest LiFePO4 peak of pure LiFePO4 at FWHM = w_ref. ``two_theta_deg`` may have
    any shape. Phases are keyed as in ``PHASES``; unknown names raise KeyError.
    """
    x_in = np.asarray(two_theta_deg, dtype=float)
    x = x_in.ravel()
    out = np.zeros_like(x)
    norm = _intensity_norm(wavelength_A)
    for name, frac in fractions.items():
        phase = PHASES[name]
        if frac <= 0.0:
            continue
        w = float(fwhm_deg if not isinstance(fwhm_deg, Mapping) else fwhm_deg[name])
        tth, inten = _phase_peak_table(phase, wavelength_A)
        amp = scale * frac * inten / norm * (REFERENCE_FWHM_DEG / w)
        _add_pseudo_voigt_peaks(out, x, tth, amp, w)
    return out.reshape(x_in.shape)


def background_profile(two_theta_deg: np.ndarray, background_counts: float) -> np.ndarray:
    """Smooth background (counts per pixel before solid angle/polarisation).

    b(2θ) = B [0.5 + 0.5 exp(-2θ / 6°) + 0.4 exp(-½ ((2θ - 3.0°) / 0.8°)²)]:
    air/cell-window scattering falling with angle plus the broad hump of the
    amorphous electrolyte/separator near d ≈ 4 Å (at 60 keV).
    """
    x = np.asarray(two_theta_deg, dtype=float)
    return background_counts * (
        0.5 + 0.5 * np.exp(-x / 6.0) + 0.4 * np.exp(-0.5 * ((x - 3.0) / 0.8) ** 2)
    )


def make_integrator(detector: str, wavelength_A: float, distance_m: float) -> AzimuthalIntegrator:
    """A pyFAI geometry that puts the rings with d ≥ ``D_MIN_A`` on ``detector``.

    Orthogonal detector (no tilts). If full rings up to 2θ_max = 2 asin(λ / 2 d_min) fit
    (ring radius r = D tan 2θ_max within half the short side) the beam is centred (the
    direct beam is assumed stopped upstream); otherwise the beam
    sits 1 mm beyond one short edge, mid-height, and the detector sees arcs.
    """
    det = pyFAI.detector_factory(detector)
    ny, nx = det.shape
    height, width = ny * det.pixel1, nx * det.pixel2
    tth_max = np.radians(float(two_theta_deg(D_MIN_A, wavelength_A)))
    r_max = distance_m * np.tan(tth_max)
    if min(height, width) / 2.0 >= r_max:
        poni1, poni2 = 0.5 * height, 0.5 * width
    elif width >= height:
        poni1, poni2 = 0.5 * height, -1e-3
    else:
        poni1, poni2 = -1e-3, 0.5 * width
    return AzimuthalIntegrator(
        dist=distance_m, poni1=poni1, poni2=poni2, detector=det, wavelength=wavelength_A * 1e-10
    )


class FrameRenderer:
    """Renders detector frames of a phase mixture through a fixed pyFAI geometry.

    Precomputes once, per pixel: 2θ at the pixel centre (``ai.center_array``), the
    relative solid angle cos³(incidence) and the polarisation factor, and the linear
    interpolation weights from a fine 2θ grid. A frame is then

        λ_pix = monitor × Ω_pix P_pix × interp(2θ_pix; grid, flux × pattern_1d + b(2θ)),
        counts ~ Poisson(λ_pix)

    which is exactly ``ai.calcfrom1d`` (correctSolidAngle=True,
    polarization_factor=POLARIZATION_FACTOR) followed by Poisson noise. Pixels in
    detector gaps read ``GAP_VALUE`` (2**32 - 1), dead pixels 0 and hot pixels
    ``HOT_PIXEL_COUNTS``; all three are set in ``mask`` (uint8, 1 = masked, pyFAI).
    """

    def __init__(
        self,
        ai: AzimuthalIntegrator,
        *,
        flux_counts: float,
        background_counts: float,
        n_dead: int,
        n_hot: int,
        rng: np.random.Generator,
        grid_step_deg: float = 0.002,
    ) -> None:
        self.ai = ai
        self.flux_counts = float(flux_counts)
        self.background_counts = float(background_counts)
        self.wavelength_A: float = float(ai.wavelength) * 1e10
        self.shape: tuple[int, int] = tuple(ai.detector.shape)
        tth = np.asarray(ai.center_array(self.shape, unit="2th_deg"), dtype=float).ravel()
        corr = np.asarray(ai.solidAngleArray(self.shape), dtype=float) * np.asarray(
            ai.polarization(self.shape, factor=POLARIZATION_FACTOR), dtype=float
        )
        self.pixel_two_theta_deg = tth.reshape(self.shape)
        self.two_theta_grid_deg = np.arange(
            max(tth.min() - 2 * grid_step_deg, 0.0), tth.max() + 2 * grid_step_deg, grid_step_deg
        )
        g = self.two_theta_grid_deg
        idx = np.clip(np.searchsorted(g, tth, side="right") - 1, 0, g.size - 2)
        self._idx = idx
        self._w1 = (tth - g[idx]) / (g[idx + 1] - g[idx])
        self._corr = corr.ravel()

        gaps = ai.detector.mask
        gaps = np.zeros(self.shape, bool) if gaps is None else np.asarray(gaps, bool)
        valid = np.flatnonzero(~gaps.ravel())
        chosen = rng.choice(valid, size=n_dead + n_hot, replace=False)
        self._gap_idx = np.flatnonzero(gaps.ravel())
        self.dead_index = np.sort(chosen[:n_dead])
        self.hot_index = np.sort(chosen[n_dead:])
        mask = gaps.ravel().astype(np.uint8)
        mask[chosen] = 1
        self.mask: np.ndarray = mask.reshape(self.shape)

    def project_1d(self, intensity_on_grid: np.ndarray) -> np.ndarray:
        """2D float image from a 1D profile on ``two_theta_grid_deg`` (= ``ai.calcfrom1d``)."""
        p = np.asarray(intensity_on_grid, dtype=float)
        w1 = self._w1
        img = p[self._idx] * (1.0 - w1) + p[self._idx + 1] * w1
        img *= self._corr
        return img.reshape(self.shape)

    def expected(
        self, fractions: Mapping[str, float], fwhm_deg: Mapping[str, float] | float,
        *, monitor: float = 1.0,
    ) -> np.ndarray:
        """Noise-free expected counts per pixel (float64), defects not applied."""
        return self.project_1d(self.profile_on_grid(fractions, fwhm_deg, monitor=monitor))

    def profile_on_grid(
        self, fractions: Mapping[str, float], fwhm_deg: Mapping[str, float] | float,
        *, monitor: float = 1.0,
    ) -> np.ndarray:
        """monitor × (flux × pattern_1d + background_profile) on ``two_theta_grid_deg``."""
        g = self.two_theta_grid_deg
        prof = pattern_1d(g, fractions, self.wavelength_A, fwhm_deg, scale=self.flux_counts)
        prof += background_profile(g, self.background_counts)
        prof *= monitor
        return prof

    def render(
        self, fractions: Mapping[str, float], fwhm_deg: Mapping[str, float] | float,
        *, monitor: float, rng: np.random.Generator,
    ) -> np.ndarray:
        """One uint32 frame: Poisson counts; gaps 2**32-1, dead 0, hot ``HOT_PIXEL_COUNTS``.

        ``monitor`` is the relative incident flux (1 = nominal) scaling signal and background.
        """
        return self.render_profile(
            self.profile_on_grid(fractions, fwhm_deg, monitor=monitor), rng=rng)

    def render_profile(self, prof: np.ndarray, *, rng: np.random.Generator) -> np.ndarray:
        """One uint32 frame from a 1D expected-count profile on ``two_theta_grid_deg``.

        λ_pix = ``project_1d(prof)``; counts ~ Poisson(λ_pix); then the detector
        defects: gaps 2**32-1, dead 0, hot ``HOT_PIXEL_COUNTS``.
        """
        lam = self.project_1d(prof).ravel()
        frame = rng.poisson(lam).astype(np.uint32)
        frame[self._gap_idx] = GAP_VALUE
        frame[self.dead_index] = 0
        frame[self.hot_index] = HOT_PIXEL_COUNTS
        return frame.reshape(self.shape)
