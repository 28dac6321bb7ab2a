"""Synthetic cyclic voltammetry with a known Randles–Sevcik truth, and an SECCM map.

Physics
-------
A one-electron-transfer couple R ⇌ O + n e⁻ (here LiFePO4 → FePO4 + Li⁺ + e⁻, the
electrode starts fully reduced, the first sweep is anodic) under semi-infinite
planar diffusion with equal diffusion coefficients D (cm² s⁻¹). With the surface
flux J(t) = i / (nFA) (mol cm⁻² s⁻¹), Fick's law gives the surface concentrations
exactly as convolution (Nicholson–Shain) integrals::

    C_R(0, t) = C* − (πD)^(-1/2) ∫₀ᵗ J(u) (t − u)^(-1/2) du,   C_O(0, t) = C* − C_R(0, t).

Dimensionless variables (f = nF/RT in V⁻¹, v the scan rate in V s⁻¹)::

    τ = f v t,   θ = f (E_applied − E0),   ψ = i / (nFAC* √(D f v)),
    m(τ) = π^(-1/2) ∫₀^τ ψ(s) (τ − s)^(-1/2) ds,   c_R = 1 − m,   c_O = m.

The electrode kinetics is Butler–Volmer with transfer coefficient α and standard
rate constant k0 (cm s⁻¹); the interfacial potential is the applied one minus the
ohmic drop over the uncompensated resistance R_u (Ω)::

    ψ = Λ [c_R e^{(1−α)η} − c_O e^{−αη}],   η = θ − ρ ψ,
    Λ = k0 / √(D f v)            (Matsuda–Ayabe parameter),
    ρ = f R_u nFAC* √(D f v)     (dimensionless uncompensated resistance).

A voltammogram therefore depends on (Λ, ρ, α) only: one dimensionless solve serves
every D, v, A, C* with the same (Λ, ρ). The integral equation is discretised with a
piecewise-constant ψ on a uniform τ grid (Nicholson–Shain / Huber step method); at
every step ψ solves a scalar monotone equation (closed form when ρ = 0, safeguarded
Newton otherwise). In the reversible limit (Λ → ∞, ρ = 0) the anodic peak is
ψ_p = 0.4463 and ΔEp = 2.218 RT/nF ≈ 57/n mV at 25 °C, i.e. Randles–Sevcik::

    i_p = 0.4463 nFAC* √(nF v D / RT)                      [A]

Choice of parameters
--------------------
* k0 = 15 √(D f v_max): Λ = 15 (the Matsuda–Ayabe reversible / quasi-reversible
  boundary) at ``max_linear_scan_rate_V_s``; the peak falls ≈ 0.8 % below
  Randles–Sevcik there, less at lower rates.
* The quasi-reversible fall-off alone is slow (≈ 1.7 % at 5 v_max), so an
  uncompensated resistance with ρ(v_max) = 0.06 is added: R_u = 0.06 / (f i_scale(v_max)),
  i_scale = nFAC*√(D f v). ρ grows like √v: < 1 % total deviation at v_max, ≈ 6 % at
  50 v_max (the top of the default ladder).
* The SECCM map uses a per-pixel footprint ``map_area_cm2`` (pA–nA currents: the ohmic
  drop is negligible, R_u = 0), fast SECCM sweeps (0.1–2 V/s) and its own boundary
  v_max,map = ``map_max_linear_scan_rate_V_s``: k0 = 15 √(D_high f v_max,map), so every
  pixel of both domains is at or above the reversible boundary at every map rate.

Everything here is pure numpy; files are written by :mod:`operando.io.cv.nova` and
:mod:`operando.io.cv.seccm`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from operando.constants import RANDLES_SEVCIK_PSI_P
from operando.io.cv.nova import nova_filename, write_nova_cv
from operando.io.cv.seccm import write_seccm_map
from operando.kinetics.cv import scan_charges_C
from operando.simulate.context import SimContext, StreamResult
from operando.simulate.presets import FARADAY_C_PER_MOL, GAS_CONSTANT_J_PER_MOL_K, KineticsSpec

MATSUDA_AYABE_LAMBDA_REVERSIBLE = 15.0
ALPHA = 0.5
RHO_AT_MAX_LINEAR = 0.06  # dimensionless ohmic drop f·R_u·i_scale at v_max (cell CVs)
SUBSTEPS = 4  # simulation steps per recorded sample of the cell CVs
MAP_SUBSTEPS = 8  # ... of the map (its samples are twice as coarse)
POTENTIAL_NOISE_V = 20e-6  # potentiostat read-back noise on WE(1).Potential


# --------------------------------------------------------------------------- helpers


def f_per_V(n_electrons: float, temperature_K: float) -> float:
    """f = nF / (RT)  (V⁻¹)."""
    return n_electrons * FARADAY_C_PER_MOL / (GAS_CONSTANT_J_PER_MOL_K * temperature_K)


def current_scale_A(
    n_electrons: float, area_cm2: float, concentration_mol_cm3: float, D_cm2_s: float,
    scan_rate_V_s: float | np.ndarray, temperature_K: float,
) -> float | np.ndarray:
    """i_scale = nFAC* √(D f v)  (A); the physical current is i = i_scale · ψ."""
    f = f_per_V(n_electrons, temperature_K)
    return (n_electrons * FARADAY_C_PER_MOL * area_cm2 * concentration_mol_cm3
            * np.sqrt(D_cm2_s * f * np.asarray(scan_rate_V_s, dtype=float)))


def randles_sevcik_current_A(
    n_electrons: float, area_cm2: float, concentration_mol_cm3: float, D_cm2_s: float,
    scan_rate_V_s: float | np.ndarray, temperature_K: float,
) -> float | np.ndarray:
    """i_p = 0.4463 nFAC* √(nF v D / RT)  (A), reversible couple, planar diffusion."""
    return RANDLES_SEVCIK_PSI_P * current_scale_A(
        n_electrons, area_cm2, concentration_mol_cm3, D_cm2_s, scan_rate_V_s, temperature_K
    )


def matsuda_ayabe_k0_cm_s(
    D_cm2_s: float, scan_rate_V_s: float, n_electrons: float, temperature_K: float,
    lam: float = MATSUDA_AYABE_LAMBDA_REVERSIBLE,
) -> float:
    """k0 (cm s⁻¹) giving Λ = k0 / √(D f v) = ``lam`` at ``scan_rate_V_s``."""
    return lam * math.sqrt(D_cm2_s * f_per_V(n_electrons, temperature_K) * scan_rate_V_s)


# --------------------------------------------------------------- dimensionless solver


@dataclass(frozen=True)
class DimensionlessCV:
    """One cycle in dimensionless form (see the module docstring).

    ``theta`` is f(E_applied − E0) at each step (first point: the start potential,
    before any current), ``psi`` the dimensionless current there, ``tau`` = f v t.
    The first half (indices ≤ ``vertex_index``) is the anodic sweep.
    """

    theta: np.ndarray
    psi: np.ndarray
    tau: np.ndarray
    vertex_index: int
    lam: float
    rho: float
    alpha: float

    def anodic_peak(self) -> tuple[float, float]:
        """(ψ_p, θ_p) of the anodic sweep, refined by a parabola through the top 3 points."""
        return _parabolic_peak(self.theta[: self.vertex_index + 1],
                               self.psi[: self.vertex_index + 1])

    def cathodic_peak(self) -> tuple[float, float]:
        """(ψ_p, θ_p) of the cathodic (return) sweep; ψ_p is negative."""
        s = slice(self.vertex_index, None)
        p, th = _parabolic_peak(self.theta[s], -self.psi[s])
        return -p, th


def _parabolic_peak(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    k = int(np.argmax(y))
    if k == 0 or k == y.size - 1:
        return float(y[k]), float(x[k])
    y0, y1, y2 = y[k - 1], y[k], y[k + 1]
    den = y0 - 2.0 * y1 + y2
    if den == 0.0:
        return float(y1), float(x[k])
    d = 0.5 * (y0 - y2) / den  # vertex offset in steps, in (-1, 1)
    return float(y1 - 0.25 * (y0 - y2) * d), float(x[k] + d * (x[k + 1] - x[k - 1]) / 2.0)


def solve_dimensionless_cv(
    lam: float,
    rho: float = 0.0,
    *,
    theta_start: float,
    theta_vertex: float,
    d_theta: float,
    alpha: float = ALPHA,
) -> DimensionlessCV:
    """Solve one cycle θ_start → θ_vertex → θ_start (θ_vertex > θ_start, anodic first).

    ``lam`` = Λ (``math.inf`` for a Nernstian couple), ``rho`` = ρ ≥ 0, ``d_theta`` the
    step in θ (= the step in τ). The vertex-to-start span must be a whole number of
    steps (within 1e-6). Cost O(N²) in the number of steps N (a dot product each).
    """
    if not theta_vertex > theta_start:
        raise ValueError(f"theta_vertex ({theta_vertex}) must exceed theta_start ({theta_start})")
    if rho < 0 or lam <= 0 or d_theta <= 0:
        raise ValueError(f"expected lam > 0, rho >= 0, d_theta > 0; got {lam}, {rho}, {d_theta}")
    n_half_f = (theta_vertex - theta_start) / d_theta
    n_half = round(n_half_f)
    if abs(n_half - n_half_f) > 1e-6 * max(n_half, 1):
        raise ValueError("(theta_vertex - theta_start) / d_theta must be an integer")
    k = np.arange(1, n_half + 1)
    up = theta_start + d_theta * k
    theta_steps = np.concatenate([up, theta_vertex - d_theta * k])
    n_steps = theta_steps.size

    kk = np.arange(n_steps + 1, dtype=float)
    w = 2.0 * math.sqrt(d_theta / math.pi) * (np.sqrt(kk + 1.0) - np.sqrt(kk))
    w_rev = np.ascontiguousarray(w[::-1])  # w_rev[n_steps - i] = w[i]
    w0 = float(w[0])
    psi = np.zeros(n_steps)
    a1, a2 = 1.0 - alpha, alpha
    p = 0.0
    reversible = math.isinf(lam)
    for n in range(n_steps):
        h = float(np.dot(psi[:n], w_rev[n_steps - n: n_steps])) if n else 0.0
        th = float(theta_steps[n])
        if rho == 0.0:
            if reversible:
                e = 1.0 / (1.0 + math.exp(-th)) if th > -700 else 0.0
                p = (e - h) / w0
            else:
                ea, eb = math.exp(a1 * th), math.exp(-a2 * th)
                p = lam * ((1.0 - h) * ea - h * eb) / (1.0 + lam * w0 * (ea + eb))
        else:
            p = _solve_step_iR(p, h, th, w0, lam, rho, a1, a2, reversible)
        psi[n] = p
    theta = np.concatenate([[theta_start], theta_steps])
    psi_all = np.concatenate([[0.0], psi])
    tau = d_theta * np.arange(n_steps + 1)
    return DimensionlessCV(theta=theta, psi=psi_all, tau=tau, vertex_index=n_half, lam=lam,
                           rho=rho, alpha=alpha)


def _solve_step_iR(p: float, h: float, th: float, w0: float, lam: float, rho: float,
                   a1: float, a2: float, reversible: bool) -> float:
    """Root of the monotone g(ψ) on ψ ∈ [−h/w0, (1−h)/w0] (c_O, c_R ≥ 0).

    Butler–Volmer: g = ψ − Λ[(1−h−w0ψ) e^{a1 η} − (h+w0ψ) e^{−a2 η}], η = θ − ρψ.
    Nernst (Λ = ∞): g = h + w0ψ − 1/(1 + e^{−η}). Safeguarded Newton.
    """
    lo, hi = -h / w0, (1.0 - h) / w0
    x = min(max(p, lo), hi)
    for _ in range(100):
        eta = th - rho * x
        if reversible:
            s = 1.0 / (1.0 + math.exp(-eta)) if eta > -700 else 0.0
            g = h + w0 * x - s
            dg = w0 + rho * s * (1.0 - s)
        else:
            ea, eb = math.exp(a1 * eta), math.exp(-a2 * eta)
            c_r, c_o = 1.0 - h - w0 * x, h + w0 * x
            g = x - lam * (c_r * ea - c_o * eb)
            dg = 1.0 + lam * (w0 * ea + c_r * a1 * rho * ea + w0 * eb + c_o * a2 * rho * eb)
        if g > 0:
            hi = x
        else:
            lo = x
        step = g / dg
        x_new = x - step
        if not lo <= x_new <= hi:
            x_new = 0.5 * (lo + hi)
        if abs(x_new - x) <= 1e-13 * max(1.0, abs(x)) or hi - lo < 1e-15:
            return x_new
        x = x_new
    return x


# ------------------------------------------------------------------ physical units


@dataclass(frozen=True)
class CVCurve:
    """One noise-free CV cycle in physical units, sampled every ``sample_step_V``."""

    time_s: np.ndarray
    potential_V: np.ndarray  # applied potential
    current_A: np.ndarray  # anodic positive
    scan_rate_V_s: float
    peak_current_A: float  # anodic, from the full-resolution solution
    peak_potential_V: float
    cathodic_peak_current_A: float
    cathodic_peak_potential_V: float
    lam: float
    rho: float


def simulate_cv(
    *,
    D_cm2_s: float,
    scan_rate_V_s: float,
    n_electrons: int,
    area_cm2: float,
    concentration_mol_cm3: float,
    temperature_K: float,
    e0_V: float,
    k0_cm_s: float = math.inf,
    alpha: float = ALPHA,
    R_u_ohm: float = 0.0,
    half_width_V: float = 0.4,
    sample_step_V: float = 1e-3,
    substeps: int = SUBSTEPS,
) -> CVCurve:
    """Noise-free CV, e0 − w → e0 + w → e0 − w at ``scan_rate_V_s`` (V s⁻¹).

    Λ = k0/√(D f v), ρ = f R_u i_scale; i = i_scale ψ(θ) with i_scale = nFAC√(D f v);
    t = τ / (f v). Samples every ``sample_step_V`` (V); the solver runs ``substeps``
    steps per sample.
    """
    f = f_per_V(n_electrons, temperature_K)
    scale = float(current_scale_A(n_electrons, area_cm2, concentration_mol_cm3, D_cm2_s,
                                  scan_rate_V_s, temperature_K))
    lam = k0_cm_s / math.sqrt(D_cm2_s * f * scan_rate_V_s)
    rho = f * R_u_ohm * scale
    d_theta = f * sample_step_V / substeps
    n_half = round(2.0 * half_width_V / sample_step_V)
    sol = solve_dimensionless_cv(lam, rho, theta_start=-f * half_width_V,
                                 theta_vertex=-f * half_width_V + n_half * substeps * d_theta,
                                 d_theta=d_theta, alpha=alpha)
    psi_a, th_a = sol.anodic_peak()
    psi_c, th_c = sol.cathodic_peak()
    idx = np.arange(0, sol.theta.size, substeps)
    return CVCurve(
        time_s=sol.tau[idx] / (f * scan_rate_V_s),
        potential_V=e0_V + sol.theta[idx] / f,
        current_A=scale * sol.psi[idx],
        scan_rate_V_s=float(scan_rate_V_s),
        peak_current_A=scale * psi_a,
        peak_potential_V=e0_V + th_a / f,
        cathodic_peak_current_A=scale * psi_c,
        cathodic_peak_potential_V=e0_V + th_c / f,
        lam=lam, rho=rho,
    )


# ------------------------------------------------------------------------- the map


def map_domains(spec: KineticsSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """Pixel coordinates and the two-domain truth: a circular fast grain in a slow matrix.

    Returns (x_um (nx,), y_um (ny,), inside (ny, nx) bool, description).
    """
    ny, nx = spec.map_shape
    x_um = spec.map_pitch_um * np.arange(nx, dtype=float)
    y_um = spec.map_pitch_um * np.arange(ny, dtype=float)
    cx = 0.55 * (nx - 1) * spec.map_pitch_um
    cy = 0.45 * (ny - 1) * spec.map_pitch_um
    radius = 0.3 * min(nx, ny) * spec.map_pitch_um
    inside = (x_um[None, :] - cx) ** 2 + (y_um[:, None] - cy) ** 2 <= radius**2
    desc = {
        "kind": "circular_grain",
        "description": "fast-diffusing circular grain (D_high) in a slow matrix (D_low); "
                       "a pixel is in the grain when its centre is within radius_um of the "
                       "grain centre",
        "center_x_um": cx, "center_y_um": cy, "radius_um": radius,
        "D_inside_cm2_s": spec.map_D_high_cm2_s, "D_outside_cm2_s": spec.map_D_low_cm2_s,
        "n_pixels_inside": int(inside.sum()), "pixel_pitch_um": spec.map_pitch_um,
    }
    return x_um, y_um, inside, desc


# ----------------------------------------------------------------------- the stream


def _rate_tag(rate: float) -> str:
    return f"{rate:.3g} V/s"


def simulate_kinetics(ctx: SimContext) -> StreamResult:
    """Cell CVs at every ``scan_rates_V_s`` (NOVA ASCII) and the SECCM map (HDF5).

    Writes ``kinetics/cv_<rate>mVs.txt`` (roles ``cv_0``… in ascending rate) and
    ``kinetics/seccm_map.h5`` (role ``map``); the truth holds the physical
    parameters, the simulated and ideal Randles–Sevcik peak currents and the D map.
    """
    spec = ctx.preset.kinetics
    rng = ctx.rng("kinetics")
    n, T = spec.n_electrons, spec.temperature_K
    f = f_per_V(n, T)
    v_max = spec.max_linear_scan_rate_V_s
    rates = sorted(float(r) for r in spec.scan_rates_V_s)
    kdir = ctx.stream_dir("kinetics")

    # ---- cell CVs
    k0 = matsuda_ayabe_k0_cm_s(spec.D_cm2_s, v_max, n, T)
    scale_vmax = float(current_scale_A(n, spec.area_cm2, spec.concentration_mol_cm3,
                                       spec.D_cm2_s, v_max, T))
    r_u = float(f"{RHO_AT_MAX_LINEAR / (f * scale_vmax):.4g}")
    files: dict[str, str] = {}
    peaks, ideal, ep_a, ep_c, lams, rhos = [], [], [], [], [], []
    for i, v in enumerate(rates):
        cv = simulate_cv(D_cm2_s=spec.D_cm2_s, scan_rate_V_s=v, n_electrons=n,
                         area_cm2=spec.area_cm2, concentration_mol_cm3=spec.concentration_mol_cm3,
                         temperature_K=T, e0_V=spec.e0_V, k0_cm_s=k0, R_u_ohm=r_u,
                         half_width_V=spec.sweep_half_width_V,
                         sample_step_V=spec.sample_step_V)
        ip_rs = float(randles_sevcik_current_A(n, spec.area_cm2, spec.concentration_mol_cm3,
                                               spec.D_cm2_s, v, T))
        current = cv.current_A + rng.normal(0.0, spec.noise_fraction * ip_rs, cv.current_A.size)
        measured_e = cv.potential_V + rng.normal(0.0, POTENTIAL_NOISE_V, cv.potential_V.size)
        path = kdir / nova_filename(v)
        q_pos, q_neg = scan_charges_C(cv.time_s, current)
        write_nova_cv(path, potential_applied_V=cv.potential_V, time_s=cv.time_s,
                      current_A=current, charge_positive_C=q_pos, charge_negative_C=q_neg,
                      potential_measured_V=measured_e)
        files[f"cv_{i}"] = str(path.relative_to(ctx.outdir))
        peaks.append(cv.peak_current_A)
        ideal.append(ip_rs)
        ep_a.append(cv.peak_potential_V)
        ep_c.append(cv.cathodic_peak_potential_V)
        lams.append(cv.lam)
        rhos.append(cv.rho)

    # ---- SECCM map
    map_rates = sorted(float(r) for r in spec.map_scan_rates_V_s)
    v_max_map = spec.map_max_linear_scan_rate_V_s
    if max(map_rates) > v_max_map * (1 + 1e-12):
        raise ValueError(
            f"preset kinetics.map_scan_rates_V_s: expected every rate <= "
            f"map_max_linear_scan_rate_V_s = {v_max_map} V/s (the map is analysed with "
            f"Randles–Sevcik), found {max(map_rates)}"
        )
    x_um, y_um, inside, desc = map_domains(spec)
    d_map = np.where(inside, spec.map_D_high_cm2_s, spec.map_D_low_cm2_s)
    map_k0 = matsuda_ayabe_k0_cm_s(max(spec.map_D_high_cm2_s, spec.map_D_low_cm2_s), v_max_map,
                                   n, T)
    domain_D = (spec.map_D_low_cm2_s, spec.map_D_high_cm2_s)
    ny, nx = spec.map_shape
    curves = [[simulate_cv(D_cm2_s=d, scan_rate_V_s=v, n_electrons=n, area_cm2=spec.map_area_cm2,
                           concentration_mol_cm3=spec.concentration_mol_cm3, temperature_K=T,
                           e0_V=spec.e0_V, k0_cm_s=map_k0, R_u_ohm=0.0,
                           half_width_V=spec.sweep_half_width_V,
                           sample_step_V=spec.map_sample_step_V, substeps=MAP_SUBSTEPS)
               for v in map_rates] for d in domain_D]
    n_samples = curves[0][0].current_A.size
    clean = np.stack([np.stack([c.current_A for c in row]) for row in curves])  # (2, nr, ns)
    sigma = np.array([[spec.noise_fraction * float(randles_sevcik_current_A(
        n, spec.map_area_cm2, spec.concentration_mol_cm3, d, v, T)) for v in map_rates]
        for d in domain_D])  # (2, nr)
    dom = inside.astype(np.intp)  # 0 = low, 1 = high
    current_map = clean[dom] + sigma[dom][..., None] * rng.standard_normal(
        (ny, nx, len(map_rates), n_samples))
    pot = np.stack([c.potential_V for c in curves[0]])  # (nr, ns), same for every D
    potential_map = np.broadcast_to(pot, (ny, nx, *pot.shape))
    time_map = np.stack([c.time_s for c in curves[0]])
    map_path = kdir / "seccm_map.h5"
    write_seccm_map(map_path, x_um=x_um, y_um=y_um, scan_rate_V_s=np.asarray(map_rates),
                    potential_V=potential_map, current_A=current_map, time_s=time_map,
                    pixel_area_cm2=spec.map_area_cm2)
    files["map"] = str(map_path.relative_to(ctx.outdir))
    map_peaks = [[c.peak_current_A for c in row] for row in curves]

    truth: dict[str, Any] = {
        "D_cm2_s": spec.D_cm2_s,
        "n_electrons": n,
        "area_cm2": spec.area_cm2,
        "concentration_mol_cm3": spec.concentration_mol_cm3,
        "temperature_K": T,
        "e0_V": spec.e0_V,
        "k0_cm_s": k0,
        "alpha": ALPHA,
        "R_u_ohm": r_u,
        "scan_rates_V_s": rates,
        "peak_current_A": peaks,
        "randles_sevcik_current_A": ideal,
        "peak_deviation_from_randles_sevcik": [p / q - 1.0 for p, q in zip(peaks, ideal,
                                                                          strict=True)],
        "anodic_peak_potential_V": ep_a,
        "cathodic_peak_potential_V": ep_c,
        "matsuda_ayabe_lambda": lams,
        "rho_iR": rhos,
        "max_linear_scan_rate_V_s": v_max,
        "sweep": {"start_V": spec.e0_V - spec.sweep_half_width_V,
                  "vertex_V": spec.e0_V + spec.sweep_half_width_V,
                  "end_V": spec.e0_V - spec.sweep_half_width_V, "first_direction": "anodic",
                  "cycles": 1},
        "noise_fraction": spec.noise_fraction,
        "map_D_cm2_s": d_map.tolist(),
        "map_scan_rates_V_s": map_rates,
        "map_max_linear_scan_rate_V_s": v_max_map,
        "map_area_cm2": spec.map_area_cm2,
        "map_k0_cm_s": map_k0,
        "map_R_u_ohm": 0.0,
        "map_domains": desc,
        "map_peak_current_A": {
            "D_low": dict(zip([_rate_tag(v) for v in map_rates], map_peaks[0], strict=True)),
            "D_high": dict(zip([_rate_tag(v) for v in map_rates], map_peaks[1], strict=True)),
        },
        "equations": {
            "randles_sevcik": "i_p = 0.4463 n F A C sqrt(n F v D / (R T))",
            "matsuda_ayabe": "Lambda = k0 / sqrt(D f v), f = nF/RT; k0 set for Lambda = 15 at "
                             "max_linear_scan_rate_V_s",
            "iR": "E_interface = E_applied - i R_u",
        },
    }
    notes = [
        f"kinetics: {len(rates)} CVs, k0 = {k0:.3g} cm/s, R_u = {r_u:.3g} ohm; map "
        f"{ny}x{nx} px at {len(map_rates)} rates"
    ]
    return StreamResult(files=files, truth=truth, notes=notes)
