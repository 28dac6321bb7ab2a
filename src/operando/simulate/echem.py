"""Galvanostatic LiFePO4 | Li half cell: the electrochemical ground truth.

The protocol is CC charge (delithiation, I > 0), rest, CC discharge (I < 0), rest.
The discharge returns the fraction r(C) = clip(1 − k (C − 1), 0.5, 1) of the charge
passed (rate capability: at high rate the lower cutoff is reached early).
Li content follows Faraday's law,

    x(t) = x_start - Q(t) / (F * n_mol * n_e),   Q(t) = ∫ I dt  [C],

with n_mol = m_active / M. The cell voltage is an equivalent circuit on top of an
open-circuit voltage U(x):

    E(t) = U(x) + I * R_ohm + V_rc,   dV_rc/dt = (I * R_ct - V_rc) / tau_rc.

Everything here is pure numpy; :mod:`operando.simulate.beamtime` writes it.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from operando.echem.segments import SEGMENT_CHARGE, SEGMENT_DISCHARGE, SEGMENT_REST
from operando.simulate.presets import FARADAY_C_PER_MOL, EchemSpec
from operando.simulate.timeline import window_mean

# the labels the cycler readers use (operando.echem.segments)
SEGMENT_NAMES = (SEGMENT_CHARGE, SEGMENT_REST, SEGMENT_DISCHARGE, SEGMENT_REST)


@dataclass(frozen=True)
class EchemProfile:
    """Sampled electrochemistry on the potentiostat clock (t = 0 at acquisition start)."""

    time_s: np.ndarray
    current_A: np.ndarray
    voltage_V: np.ndarray
    charge_C: np.ndarray  # ∫ I dt since t = 0 (positive on charge)
    x_li: np.ndarray  # Li content in LixFePO4
    segment_index: np.ndarray  # 0..3 into ``segment_bounds_s``
    segment_bounds_s: tuple[tuple[float, float], ...]
    segment_names: tuple[str, ...]
    segment_current_A: tuple[float, ...]  # programmed current per segment (+ = charge)
    capacity_theoretical_C: float
    current_1c_A: float
    spec: EchemSpec

    @property
    def duration_s(self) -> float:
        return float(self.segment_bounds_s[-1][1])

    def x_li_at(self, t_s: np.ndarray | float) -> np.ndarray:
        """Exact Faraday Li content at arbitrary potentiostat times (piecewise linear in t)."""
        return x_li_exact(np.asarray(t_s, dtype=float), self.segment_bounds_s,
                          self.segment_current_A, self.capacity_theoretical_C, self.spec.x_start)

    def faraday_fepo4_fraction_at(self, t_s: np.ndarray | float) -> np.ndarray:
        """FePO4 fraction expected from the charge passed, two-phase with end members x=1, x=0."""
        return np.clip(1.0 - self.x_li_at(t_s), 0.0, 1.0)

    def window_means(self, t_start_s: np.ndarray, t_end_s: np.ndarray) -> dict[str, np.ndarray]:
        """Electrochemistry averaged over exposure windows (the data contract's coordinates).

        ``x_li`` and ``charge_C`` = (x_start − x)·Q_th from the exact Faraday x(t);
        ``current_A`` from the programmed current; ``voltage_V`` interpolated on the samples.
        """
        def values(t: np.ndarray) -> dict[str, np.ndarray]:
            x = self.x_li_at(t)
            return {
                "x_li": x,
                "charge_C": (self.spec.x_start - x) * self.capacity_theoretical_C,
                "current_A": self.current_at(t),
                "voltage_V": np.interp(t, self.time_s, self.voltage_V),
            }

        return window_mean(values, t_start_s, t_end_s)

    def current_at(self, t_s: np.ndarray | float) -> np.ndarray:
        """Programmed current (A) at potentiostat time t (piecewise constant)."""
        t = np.asarray(t_s, dtype=float)
        out = np.zeros_like(t)
        for (t0, t1), amps in zip(self.segment_bounds_s, self.segment_current_A, strict=True):
            out = np.where((t >= t0) & (t < t1), amps, out)
        return out


def theoretical_capacity_C(spec: EchemSpec) -> float:
    """Q_th = F * n_e * m / M  (C)."""
    n_mol = spec.active_mass_mg * 1e-3 / spec.molar_mass_g_mol
    return FARADAY_C_PER_MOL * spec.electrons_per_formula_unit * n_mol


def ocv_V(x_li: np.ndarray, plateau_V: float) -> np.ndarray:
    """Open-circuit voltage of LixFePO4 (V vs Li+/Li).

    A flat two-phase plateau with steep single-phase ends:
    U = U_p + 0.008 ln((1−x)/x) + 0.02 [ln⁺(0.05/x) − ln⁺(0.05/(1−x))],
    with ln⁺(y) = max(ln y, 0) and x clipped to [1e-4, 1 − 1e-4].
    """
    x = np.clip(np.asarray(x_li, dtype=float), 1e-4, 1.0 - 1e-4)
    return plateau_V + 0.008 * np.log((1.0 - x) / x) + 0.02 * (np.log(0.05 / x).clip(0) -
                                                                 np.log(0.05 / (1 - x)).clip(0))


def x_li_exact(t: np.ndarray, bounds_s: tuple[tuple[float, float], ...],
               currents_A: tuple[float, ...], q_th_C: float, x_start: float) -> np.ndarray:
    """x(t) = x_start − Σ_seg I_seg · (clip(t, t0, t1) − t0) / Q_th  (piecewise linear)."""
    x = np.full_like(t, x_start, dtype=float)
    for (t0, t1), amps in zip(bounds_s, currents_A, strict=True):
        x = x - amps * (np.clip(t, t0, t1) - t0) / q_th_C
    return x


def discharge_retention(spec: EchemSpec) -> float:
    """r(C) = clip(1 − k (C − 1), 0.5, 1): the fraction of the charge passed given back."""
    r = 1.0 - spec.rate_capability_loss_per_C * max(spec.c_rate_per_h - 1.0, 0.0)
    return float(np.clip(r, 0.5, 1.0))


def simulate_echem(spec: EchemSpec) -> EchemProfile:
    """Sample the protocol every ``spec.sample_period_s`` (plus every segment boundary)."""
    q_th = theoretical_capacity_C(spec)
    i_1c = q_th / 3600.0
    t_cc = spec.depth_of_charge * 3600.0 / spec.c_rate_per_h
    durations = (t_cc, spec.rest_s, t_cc * discharge_retention(spec), spec.rest_s)
    edges = np.concatenate([[0.0], np.cumsum(durations)])
    bounds = tuple((float(a), float(b)) for a, b in itertools.pairwise(edges))

    times: list[np.ndarray] = []
    segs: list[np.ndarray] = []
    for k, (t0, t1) in enumerate(bounds):
        n = max(int(np.ceil((t1 - t0) / spec.sample_period_s)), 1)
        # include the segment start, exclude its end (next segment starts there)
        tk = t0 + np.arange(n) * spec.sample_period_s
        tk = tk[tk < t1]
        times.append(tk)
        segs.append(np.full(tk.size, k, dtype=np.int8))
    times.append(np.array([bounds[-1][1]]))
    segs.append(np.array([len(bounds) - 1], dtype=np.int8))
    t = np.concatenate(times)
    seg = np.concatenate(segs)

    i_cc = i_1c * spec.c_rate_per_h
    seg_currents = (i_cc, 0.0, -i_cc, 0.0)
    current = np.asarray(seg_currents)[seg]
    current[-1] = 0.0
    x = x_li_exact(t, bounds, seg_currents, q_th, spec.x_start)
    charge = (spec.x_start - x) * q_th

    # RC element integrated exactly for piecewise-constant current between samples
    v_rc = np.zeros_like(t)
    for k in range(1, t.size):
        dt = t[k] - t[k - 1]
        target = current[k - 1] * spec.r_ct_ohm
        v_rc[k] = target + (v_rc[k - 1] - target) * np.exp(-dt / spec.tau_rc_s)
    voltage = ocv_V(x, spec.ocv_plateau_V) + current * spec.r_ohm_ohm + v_rc

    return EchemProfile(
        time_s=t, current_A=current, voltage_V=voltage, charge_C=charge, x_li=x,
        segment_index=seg, segment_bounds_s=bounds, segment_names=SEGMENT_NAMES,
        segment_current_A=seg_currents, capacity_theoretical_C=q_th, current_1c_A=i_1c,
        spec=spec,
    )
