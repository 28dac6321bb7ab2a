"""Synthetic confocal (depth-resolved) XRD through the LiFePO4 cathode.

Depth grid
----------
The cathode of thickness ``L = ConfocalSpec.thickness_um`` is cut into
``N = n_depths`` equal slabs and the beam visits the slab centres::

    z_i = (i + 1/2) * L / N   [µm],   i = 0 .. N-1,

with the origin ``z = 0`` at the separator (``ConfocalSpec.origin``) and
``z = L`` at the current collector. The *depth average* of a profile is the
mean over these points, ⟨f⟩ = (1/N) Σ_i f(z_i): each point stands for its slab
(midpoint rule for the continuous thickness average).

Depth model (truth)
-------------------
``f(z, t)`` is the local FePO4 fraction (LiFePO4 = 1 − f). Each segment of the
protocol starts from the profile ``f0(z)`` left by the previous one (``f0 = 1 −
x_start``, uniform, at t = 0) and the profile is exactly continuous at every
segment boundary. With ``F(t)`` the Faraday fraction
(:meth:`EchemProfile.faraday_fepo4_fraction_at`), ``w = front_width_um`` and the
logistic ``σ(u) = 1 / (1 + exp(−u))``:

* **charge** (Li leaves; ionic transport is easiest near the separator, so a
  delithiation front enters from there)::

      f(z, t) = f0(z) + (1 − f0(z)) · σ((z_front(t) − z) / w)

  which for the fully lithiated start (f0 = 0) is ``σ((z_front − z)/w)``;
* **discharge** (LiFePO4 re-forms from the separator side, so the FePO4
  fraction is lowest there)::

      f(z, t) = f0(z) · (1 − σ((z_front(t) − z) / w))

* **rest** (the profile relaxes toward its depth average f̄, which is
  conserved)::

      f(z, t) = f̄ + (f0(z) − f̄) · exp(−(t − t_rest) / τ),   τ = relaxation_time_s.

In charge and discharge ``z_front(t)`` is solved (vectorised bisection on a
bracket that is exact for a weighted mean of logistics) so that ⟨f⟩(t) = F(t)
to machine precision; at the start of the segment the front sits at −∞ and
the profile is ``f0`` exactly. In rest F is constant, so ⟨f⟩ = F holds there by
construction. Charge is therefore conserved at every time.

Reaction truth
--------------
:func:`reaction_truth` condenses the dense f(z_i, t) into per-segment, per-depth
metrics (signed change, the 10/50/90 % crossing times, local and depth-mean rates,
the face that reacts first, rest amplitudes): see :class:`ReactionTruth`. They go
to the stream truth under ``"reaction"``.

Acquisition
-----------
One point every ``point_time_s`` from ``first_point_s``; the detector counts
for ``count_time_s`` at the start of each slot. Points sweep the depths from the
separator to the current collector, pass after pass; each pass is one Bliss scan.
Every point whose exposure ends by the end of the protocol (``ctx.echem.duration_s``)
is acquired, except:

* ``missing_points`` ((pass, depth), 0-based): the slot passes but nothing is
  recorded, so that pass's scan has one point fewer (no frame, motor position,
  epoch, monitor or count time for it);
* an incomplete last pass is dropped (``n_dropped_points`` of its points), unless
  ``cut_last_pass``: then it is kept as a shorter scan of the points that fit.

The truth arrays stay rectangular ``(n_passes, n_depths)`` with a boolean
``acquired`` mask; per-point values (times, fractions, monitor, front, echem
window means) are NaN where a point was not acquired. The truth fraction of a
point is its profile averaged over the exposure (``timeline.window_mean``).

Scope of the truth: two phases only (no LixFePO4 intermediate, even at high
rate), and the depth average follows the electrode-average Faraday fraction
with no lag (the ``lag_s`` of the XRD and XANES streams is the in-plane lag of
their probed spot behind the electrode average).

Frames are rendered by :class:`operando.simulate.diffraction.FrameRenderer`
and written frame by frame by :mod:`operando.io.xrd.bliss` (Bliss master + LIMA
files, bitshuffle-LZ4), with PONI and mask beside them.

Energy-dispersive scans
-----------------------
With ``ConfocalSpec.energy_dispersive`` the same points (schedule, depths, truth
fractions, epochs and monitor: one depth model) are also written as MCA spectra of
a Ge detector at fixed scattering angle 2θ_ED = ``ed_two_theta_deg``
(``confocal/confocal_ed.h5``, :func:`operando.io.xrd.bliss.write_bliss_mca_master`).
Channel ch (0-based) has energy E = a + b·ch + c·ch² keV (``ed_calibration_keV``),
scattering vector and d-spacing

    q = 4π sin(θ_ED) E / hc,   d = hc / (2 E sin θ_ED),   hc = 12.398419843320026 keV·Å,

and the *equivalent* angle at the nominal XRD wavelength λ (``xrd.wavelength_A``)
2θ_eq = 2 asin(q λ / 4π). The expected counts of a channel are

    μ(ch) = m · [b(2θ_eq) + f S_FP(2θ_eq) + (1 − f) S_LFP(2θ_eq)],   counts ~ Poisson(μ),

with m the relative beam intensity (the AD frames' monitor factor), b the smooth AD
background (``diffraction.background_profile``, scale ``ed_background_counts``), and
S_phase the AD powder profile of ``diffraction.pattern_1d`` (same phases, lattices,
reflection list and intensities m|F|² L(θ_eq)/V at λ, scale ``ed_flux_counts``) with
one change: each reflection's pseudo-Voigt FWHM is set by the energy resolution,
FWHM(E) = sqrt(f0² + f1·E) keV at E_d = hc / (2 d sin θ_ED), mapped to the equivalent
angle by ΔE/E = Δq/q = Δd/d: w_d = 2 tan θ_eq · FWHM(E_d)/E_d (rad). The profile is
area-conserving in 2θ_eq, so a peak's area over 2θ_eq (counts per channel treated as
a density in 2θ_eq) is the AD intensity of that reflection times ``ed_flux_counts``
·w_ref (w_ref = ``REFERENCE_FWHM_DEG``), whatever its width: converting channel → E →
q → 2θ_eq and fitting areas gives the AD phase-fraction convention. Channels with
q λ / 4π ≥ 1 (no equivalent angle) get background only. No incident-spectrum,
absorption, escape or fluorescence features are modelled.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from operando.simulate.context import SimContext, StreamResult
from operando.simulate.echem import EchemProfile
from operando.simulate.presets import ConfocalSpec, XrdSpec
from operando.simulate.timeline import (
    MONITOR_COUNTS_PER_S,
    acquisition_starts,
    relative_beam_intensity,
    window_mean,
)

if TYPE_CHECKING:  # pyFAI is imported only when frames are rendered
    from operando.simulate.diffraction import FrameRenderer

STREAM = "confocal"
FWHM_DEG = 0.05  # constant instrumental + size broadening of every reflection (°2θ)
HC_KEV_A = 12.398419843320026  # h c (keV Å): λ = hc / E
REACTION_MIN_CHANGE = 0.2  # |Δf| below which a depth's crossing times are NaN in the truth
MCA_DETECTOR = "mca"  # name of the energy-dispersive detector in the ED master
_BISECTION_STEPS = 64


def depth_positions_um(n_depths: int, thickness_um: float) -> np.ndarray:
    """Slab-centre depths ``z_i = (i + 1/2) L / N`` (µm from the separator)."""
    if n_depths < 1:
        raise ValueError(f"n_depths must be >= 1, got {n_depths}")
    if thickness_um <= 0:
        raise ValueError(f"thickness_um must be > 0, got {thickness_um}")
    return (np.arange(n_depths) + 0.5) * thickness_um / n_depths


def _sigmoid(u: np.ndarray) -> np.ndarray:
    # tanh form: no overflow warnings for large |u|
    return 0.5 * (1.0 + np.tanh(0.5 * u))


def _logit(p: np.ndarray) -> np.ndarray:
    return np.log(p) - np.log1p(-p)


def _solve_front(
    target: np.ndarray, weights: np.ndarray, depth_um: np.ndarray, width_um: float
) -> np.ndarray:
    """Solve Σ_i a_i σ((z_f − z_i)/w) = target for z_f, per time.

    ``weights`` (n_t, N) are the non-negative ``a_i``; ``target`` (n_t,) lies in
    (0, Σ a_i). With ``r = target / Σ a_i`` the weighted mean of logistics lies
    between σ((z_f − z_max)/w) and σ((z_f − z_min)/w), which brackets
    ``z_f ∈ [z_min + w·logit(r), z_max + w·logit(r)]``; the left side is monotonic
    in z_f, so bisection converges to machine precision.
    """
    total = weights.sum(axis=1)
    r = target / total
    lg = width_um * _logit(r)
    lo = depth_um.min() + lg
    hi = depth_um.max() + lg
    for _ in range(_BISECTION_STEPS):
        mid = 0.5 * (lo + hi)
        val = (weights * _sigmoid((mid[:, None] - depth_um[None, :]) / width_um)).sum(axis=1)
        above = val > target
        hi = np.where(above, mid, hi)
        lo = np.where(above, lo, mid)
    return 0.5 * (lo + hi)


@dataclass(frozen=True)
class DepthModel:
    """Truth FePO4 fraction f(z, t) through the cathode (see the module docstring).

    Attributes are numpy arrays / floats in the units named; ``start_profiles``
    is f0(z) at the start of each segment, shape (n_segments, n_depths).
    """

    depth_um: np.ndarray
    front_width_um: float
    relaxation_time_s: float
    segment_bounds_s: tuple[tuple[float, float], ...]
    segment_kinds: tuple[str, ...]
    start_profiles: np.ndarray
    echem: EchemProfile

    def _segment_index(self, t: np.ndarray) -> np.ndarray:
        starts = np.array([b[0] for b in self.segment_bounds_s])
        return np.clip(np.searchsorted(starts, t, side="right") - 1, 0, len(starts) - 1)

    def _evaluate(self, t: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Profile (n_t, N) and front position (n_t,) at times ``t`` inside segment k."""
        return _segment_profile(
            t, self.segment_kinds[k], self.segment_bounds_s[k][0], self.start_profiles[k],
            self.depth_um, self.front_width_um, self.relaxation_time_s, self.echem,
        )

    def fraction(self, t_s: np.ndarray | float) -> np.ndarray:
        """FePO4 fraction at potentiostat times ``t_s`` (s): shape ``t_s.shape + (n_depths,)``.

        A time on a segment boundary belongs to the segment that starts there
        (both sides agree to machine precision). Times before 0 take the initial
        profile; times after the end of the protocol continue the last segment.
        """
        return self.fraction_and_front(t_s)[0]

    def front_position_um(self, t_s: np.ndarray | float) -> np.ndarray:
        """Reaction-front depth z_front(t) (µm from the separator); NaN at rest.

        ±inf when the front has not entered yet / has crossed the whole electrode.
        """
        return self.fraction_and_front(t_s)[1]

    def fraction_and_front(self, t_s: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """(:meth:`fraction`, :meth:`front_position_um`) in one evaluation."""
        t = np.asarray(t_s, dtype=float)
        flat = t.reshape(-1)
        out = np.empty((flat.size, self.depth_um.size))
        front = np.full(flat.size, np.nan)
        seg = self._segment_index(flat)
        for k in np.unique(seg):
            sel = seg == k
            out[sel], front[sel] = self._evaluate(np.maximum(flat[sel], 0.0), int(k))
        return out.reshape((*t.shape, self.depth_um.size)), front.reshape(t.shape)

    def depth_mean(self, t_s: np.ndarray | float) -> np.ndarray:
        """⟨f⟩(t) = (1/N) Σ_i f(z_i, t); equals the Faraday fraction (charge conservation)."""
        return self.fraction(t_s).mean(axis=-1)

    def exposure_average(self, t_start_s: np.ndarray, t_end_s: np.ndarray) -> np.ndarray:
        """Profiles averaged over exposures [t_start, t_end] (s): shape ``t_start.shape + (N,)``.

        Midpoint rule (:func:`operando.simulate.timeline.window_mean`).
        """
        return window_mean(self.fraction, t_start_s, t_end_s)


def _segment_profile(
    t: np.ndarray, kind: str, t_seg0: float, f0: np.ndarray, depth_um: np.ndarray,
    width_um: float, tau_s: float, echem: EchemProfile,
) -> tuple[np.ndarray, np.ndarray]:
    n_t = t.size
    if kind == "rest":
        fbar = f0.mean()
        decay = np.exp(-(t - t_seg0) / tau_s)
        return fbar + (f0 - fbar)[None, :] * decay[:, None], np.full(n_t, np.nan)
    # charge: d = 1 − f0 (FePO4 grows); discharge: d = −f0 (FePO4 shrinks)
    d = (1.0 - f0) if kind == "charge" else -f0
    target = echem.faraday_fepo4_fraction_at(t) - f0.mean()  # Σ (d_i/N) σ_i must equal this
    total = d.mean()
    sign = 1.0 if kind == "charge" else -1.0
    g = sign * target  # ≥ 0 in the physical direction
    a = sign * d / d.size  # non-negative weights
    a_total = sign * total
    out = np.repeat(f0[None, :], n_t, axis=0)
    front = np.full(n_t, -np.inf)
    if a_total <= 0:  # nothing left to convert
        return out, front
    full = g >= a_total
    inner = (g > 0) & ~full
    out[full] = f0 + d
    front[full] = np.inf
    if inner.any():
        zf = _solve_front(
            g[inner], np.repeat(a[None, :], inner.sum(), axis=0), depth_um, width_um
        )
        out[inner] = f0 + d[None, :] * _sigmoid((zf[:, None] - depth_um[None, :]) / width_um)
        front[inner] = zf
    return out, front


def make_depth_model(echem: EchemProfile, spec: ConfocalSpec) -> DepthModel:
    """Build the truth depth model for a protocol and a confocal spec.

    Segment kinds come from ``echem.segment_names`` (falling back on the sign of
    the programmed current); each segment's start profile is the previous
    segment's profile evaluated at its end time, so f(z, t) is continuous.
    """
    if spec.origin != "separator":
        raise ValueError(
            f"ConfocalSpec.origin: only 'separator' is simulated, got {spec.origin!r}"
        )
    if spec.front_width_um <= 0 or spec.relaxation_time_s <= 0:
        raise ValueError("ConfocalSpec.front_width_um and relaxation_time_s must be > 0")
    depth = depth_positions_um(spec.n_depths, spec.thickness_um)
    bounds = echem.segment_bounds_s
    kinds = tuple(echem.segment_names)  # "charge" / "rest" / "discharge" / "rest"
    f_init = float(np.clip(1.0 - echem.spec.x_start, 0.0, 1.0))
    starts = np.empty((len(bounds), depth.size))
    f0 = np.full(depth.size, f_init)
    for k, (t0, t1) in enumerate(bounds):
        starts[k] = f0
        f0 = _segment_profile(
            np.array([t1]), kinds[k], t0, f0, depth, spec.front_width_um,
            spec.relaxation_time_s, echem,
        )[0][0]
    return DepthModel(
        depth_um=depth, front_width_um=float(spec.front_width_um),
        relaxation_time_s=float(spec.relaxation_time_s), segment_bounds_s=bounds,
        segment_kinds=kinds, start_profiles=starts, echem=echem,
    )


# --------------------------------------------------------------------------- reaction truth


@dataclass(frozen=True)
class ReactionTruth:
    """Per-segment, per-depth reaction metrics of the truth depth model.

    Computed by :func:`reaction_truth` from the dense noise-free f(z_i, t) (FePO4 fraction,
    i.e. SOC), not from the simulated acquisitions. Times are potentiostat seconds
    (absolute, not relative to the segment start); depths are ``DepthModel.depth_um``
    (index 0 nearest the separator). For *active* segment k (charge or discharge, in
    protocol order) with bounds [t0, t1] and depth i, with f_s = f(z_i, t0):

    * ``change[k, i] = f(z_i, t1) − f_s`` (signed: > 0 on charge, < 0 on discharge);
    * ``t10_s``, ``half_time_s``, ``t90_s``: the first time in [t0, t1] where f(z_i, t)
      reaches f_s + q·change for q = 0.1, 0.5, 0.9 (dense grid, linear interpolation,
      then bisection on the model: exact to < 1e-3 s);
    * ``local_rate_per_h = 0.8 |change| / (t90 − t10) · 3600`` (fraction per hour);
    * ``global_rate_per_h[k] = |⟨f⟩(t1) − ⟨f⟩(t0)| / (t1 − t0) · 3600`` with ⟨·⟩ the depth
      mean (equals the Faraday rate: charge is conserved);
    * ``first_face[k]``: the face whose nearest depth point (i = 0: ``"separator"``,
      i = N − 1: ``"current_collector"``) has the earlier half time (NaN counts as
      never; if both are NaN, the face nearer the earliest finite half time; ``"none"``
      if no depth reacts).

    Where ``|change| < min_change`` the crossing times and the local rate are NaN.
    For rest segment r with start t_r: ``rest_amplitude[r, i] = f(z_i, t_r) − ⟨f⟩(t_r)``;
    during the rest every amplitude decays as exp(−(t − t_r)/τ), τ = ``relaxation_time_s``.
    """

    kinds: tuple[str, ...]
    bounds_s: tuple[tuple[float, float], ...]
    change: np.ndarray
    half_time_s: np.ndarray
    t10_s: np.ndarray
    t90_s: np.ndarray
    local_rate_per_h: np.ndarray
    global_rate_per_h: np.ndarray
    first_face: tuple[str, ...]
    rest_bounds_s: tuple[tuple[float, float], ...]
    rest_amplitude: np.ndarray
    relaxation_time_s: float

    def as_dict(self) -> dict[str, Any]:
        """Every field by name (arrays as numpy arrays; ``to_jsonable`` makes them lists)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _segment_dense(model: DepthModel, k: int, dt_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Grid t0, t0 + dt, ..., t1 (end included) of segment k and f on it, (n_t, N)."""
    t0, t1 = model.segment_bounds_s[k]
    n = max(int(np.ceil((t1 - t0) / dt_s)), 1)
    t = np.append(t0 + dt_s * np.arange(n), t1)
    t = t[np.concatenate([t[:-1] < t1, [True]])]
    return t, model._evaluate(t, k)[0]


def _first_crossing(model: DepthModel, k: int, t: np.ndarray, f: np.ndarray,
                    level: np.ndarray, sign: np.ndarray, steps: int = 24) -> np.ndarray:
    """Per depth i, the first t where sign_i (f_i(t) − level_i) >= 0 (NaN if never).

    Bracketed on the dense grid, then refined by bisection on the model itself.
    """
    g = sign[None, :] * (f - level[None, :])
    hit = g >= 0.0
    found = hit.any(axis=0)
    j = np.argmax(hit, axis=0)
    out = np.full(level.shape, np.nan)
    at_start = found & (j == 0)
    out[at_start] = t[0]
    inner = np.flatnonzero(found & (j > 0))
    if inner.size:
        lo, hi = t[j[inner] - 1], t[j[inner]]
        for _ in range(steps):
            mid = 0.5 * (lo + hi)
            fm = model._evaluate(mid, k)[0][np.arange(inner.size), inner]
            above = sign[inner] * (fm - level[inner]) >= 0.0
            hi = np.where(above, mid, hi)
            lo = np.where(above, lo, mid)
        out[inner] = 0.5 * (lo + hi)
    return out


def reaction_truth(model: DepthModel, *, min_change: float = 0.2,
                   dt_s: float = 0.5) -> ReactionTruth:
    """Reaction metrics per active segment and depth, and rest amplitudes (see
    :class:`ReactionTruth` for the definitions and units)."""
    if dt_s <= 0:
        raise ValueError(f"dt_s must be > 0, got {dt_s}")
    n_depths = model.depth_um.size
    active = [k for k, kind in enumerate(model.segment_kinds) if kind in ("charge", "discharge")]
    rests = [k for k, kind in enumerate(model.segment_kinds) if kind == "rest"]
    shape = (len(active), n_depths)
    change = np.zeros(shape)
    times = {q: np.full(shape, np.nan) for q in (0.1, 0.5, 0.9)}
    global_rate = np.zeros(len(active))
    faces: list[str] = []
    for row, k in enumerate(active):
        t, f = _segment_dense(model, k, dt_s)
        f_s, f_e = f[0], f[-1]
        dchg = f_e - f_s
        change[row] = dchg
        sign = np.where(dchg >= 0.0, 1.0, -1.0)
        ok = np.abs(dchg) >= min_change
        for q in times:
            tq = _first_crossing(model, k, t, f, f_s + q * dchg, sign)
            times[q][row] = np.where(ok, tq, np.nan)
        t0, t1 = model.segment_bounds_s[k]
        global_rate[row] = abs(f_e.mean() - f_s.mean()) / (t1 - t0) * 3600.0
        faces.append(_first_face(times[0.5][row], model.depth_um))
    with np.errstate(divide="ignore", invalid="ignore"):
        local = 0.8 * np.abs(change) / (times[0.9] - times[0.1]) * 3600.0
    local = np.where(np.isfinite(local), local, np.nan)
    rest_amp = np.array([model.start_profiles[k] - model.start_profiles[k].mean()
                         for k in rests]).reshape(len(rests), n_depths)
    return ReactionTruth(
        kinds=tuple(model.segment_kinds[k] for k in active),
        bounds_s=tuple(model.segment_bounds_s[k] for k in active),
        change=change, half_time_s=times[0.5], t10_s=times[0.1], t90_s=times[0.9],
        local_rate_per_h=local, global_rate_per_h=global_rate, first_face=tuple(faces),
        rest_bounds_s=tuple(model.segment_bounds_s[k] for k in rests),
        rest_amplitude=rest_amp, relaxation_time_s=model.relaxation_time_s,
    )


def _first_face(half_time_s: np.ndarray, depth_um: np.ndarray) -> str:
    ht = np.where(np.isfinite(half_time_s), half_time_s, np.inf)
    if ht[0] < ht[-1]:
        return "separator"
    if ht[-1] < ht[0]:
        return "current_collector"
    if not np.isfinite(ht).any():
        return "none"
    i = int(np.argmin(ht))
    mid = 0.5 * (depth_um[0] + depth_um[-1])
    return "separator" if depth_um[i] <= mid else "current_collector"


# --------------------------------------------------------------------------- acquisition


@dataclass(frozen=True)
class ConfocalSchedule:
    """Acquisition slots of the kept passes, potentiostat clock (s).

    Point ``k = pass * n_depths + depth`` is scheduled at ``first_point_s + k * point_time_s``
    and counts for ``count_time_s``. Arrays are (n_passes, n_depths); ``acquired`` is
    False for the points of ``ConfocalSpec.missing_points`` and for the points of a cut
    last pass that do not fit before the end of the protocol; their ``time_*`` are NaN
    (``scheduled_start_s`` keeps the nominal slot of every point).
    """

    scheduled_start_s: np.ndarray
    acquired: np.ndarray
    count_time_s: float
    n_dropped_points: int  # points that fitted in the protocol but were dropped with an
    # incomplete last pass (0 when the pass is kept cut short)
    missing_points: tuple[tuple[int, int], ...]  # (pass, depth) missing inside the kept passes
    last_pass_cut: bool  # the last pass is kept with its points past the protocol's end missing

    @property
    def time_start_s(self) -> np.ndarray:
        return np.where(self.acquired, self.scheduled_start_s, np.nan)

    @property
    def time_end_s(self) -> np.ndarray:
        return self.time_start_s + self.count_time_s

    @property
    def time_mid_s(self) -> np.ndarray:
        return self.time_start_s + 0.5 * self.count_time_s

    @property
    def n_passes(self) -> int:
        return int(self.scheduled_start_s.shape[0])

    @property
    def points_per_pass(self) -> np.ndarray:
        """Number of acquired points of each pass (the length of its scan)."""
        return self.acquired.sum(axis=1)


def confocal_schedule(spec: ConfocalSpec, duration_s: float) -> ConfocalSchedule:
    """Passes over depth that fit in ``duration_s``, with the spec's acquisition defects.

    Every point whose exposure ends by ``duration_s`` is acquired, except
    ``spec.missing_points`` ((pass, depth), 0-based; those of passes beyond the
    schedule are ignored). An incomplete last pass is dropped (its points counted in
    ``n_dropped_points``) unless ``spec.cut_last_pass``, which keeps it as a shorter scan.
    """
    if spec.count_time_s <= 0 or spec.point_time_s < spec.count_time_s:
        raise ValueError(
            "ConfocalSpec: need 0 < count_time_s <= point_time_s, got "
            f"count_time_s={spec.count_time_s}, point_time_s={spec.point_time_s}"
        )
    n_depths = spec.n_depths
    starts = acquisition_starts(spec.first_point_s, spec.point_time_s, spec.count_time_s,
                                duration_s)
    n_points = starts.size
    n_complete, n_left = divmod(n_points, n_depths)
    if spec.cut_last_pass and n_left:
        n_passes, n_dropped = n_complete + 1, 0
    else:
        n_passes, n_dropped = n_complete, n_left
    if n_passes < 1:
        raise ValueError(
            f"ConfocalSpec: not one complete pass of {n_depths} points x "
            f"{spec.point_time_s} s fits in the {duration_s} s protocol"
        )
    k = np.arange(n_passes * n_depths)
    scheduled = (spec.first_point_s + spec.point_time_s * k).reshape(n_passes, n_depths)
    acquired = (k < n_points).reshape(n_passes, n_depths)
    missing: list[tuple[int, int]] = []
    for p, i in spec.missing_points:
        if p < 0 or not 0 <= i < n_depths:
            raise ValueError(f"ConfocalSpec.missing_points: ({p}, {i}) is not a (pass >= 0, "
                             f"0 <= depth < {n_depths}) index")
        if p < n_passes and acquired[p, i]:
            acquired[p, i] = False
            missing.append((int(p), int(i)))
    empty = np.flatnonzero(~acquired.any(axis=1))
    if empty.size:
        raise ValueError(f"ConfocalSpec.missing_points: pass(es) {empty.tolist()} would have "
                         "no point left")
    return ConfocalSchedule(
        scheduled_start_s=scheduled, acquired=acquired, count_time_s=float(spec.count_time_s),
        n_dropped_points=n_dropped, missing_points=tuple(sorted(missing)),
        last_pass_cut=n_points < n_passes * n_depths,
    )


def detector_key(detector: str) -> str:
    """Bliss/LIMA name of a pyFAI detector: ``"Pilatus300k"`` → ``"pilatus"``."""
    m = re.match(r"[A-Za-z]+", detector)
    return m.group(0).lower() if m else "detector"


class TwoPhaseFrames:
    """Fast frames of the mixture FePO4 (f) + LiFePO4 (1 − f) through a ``FrameRenderer``.

    The powder pattern is linear in the phase fractions, so the pure-phase
    profiles P_FP(2θ), P_LFP(2θ) (``pattern_1d``, scale = the renderer's flux) and
    the background b(2θ) are computed once on the renderer's 2θ grid; a frame is

        λ_pix = project_1d(monitor · (b + f P_FP + (1 − f) P_LFP)),
        counts ~ Poisson(λ_pix),

    equal to ``renderer.expected`` up to rounding (checked in the tests); noise and
    detector defects come from ``FrameRenderer.render_profile``. It saves the
    per-frame ``pattern_1d`` evaluation, which otherwise dominates the cost.
    """

    def __init__(self, renderer: FrameRenderer, fwhm_deg: float) -> None:
        from operando.simulate.diffraction import background_profile, pattern_1d

        self.renderer = renderer
        g = renderer.two_theta_grid_deg
        lam_a = renderer.wavelength_A
        self._fp = pattern_1d(g, {"FePO4": 1.0}, lam_a, fwhm_deg, scale=renderer.flux_counts)
        self._lfp = pattern_1d(g, {"LiFePO4": 1.0}, lam_a, fwhm_deg,
                               scale=renderer.flux_counts)
        self._bg = background_profile(g, renderer.background_counts)

    def profile(self, f_fepo4: float, *, monitor: float = 1.0) -> np.ndarray:
        """monitor · (b + f P_FP + (1 − f) P_LFP) on the renderer's 2θ grid."""
        return monitor * (self._bg + f_fepo4 * self._fp + (1.0 - f_fepo4) * self._lfp)

    def expected(self, f_fepo4: float, *, monitor: float = 1.0) -> np.ndarray:
        """Noise-free expected counts per pixel (float64), defects not applied."""
        return self.renderer.project_1d(self.profile(f_fepo4, monitor=monitor))

    def render(self, f_fepo4: float, *, monitor: float, rng: np.random.Generator) -> np.ndarray:
        """One uint32 frame with Poisson noise and the renderer's detector defects."""
        return self.renderer.render_profile(self.profile(f_fepo4, monitor=monitor), rng=rng)


# --------------------------------------------------------------------------- energy-dispersive


def ed_channel_energy_keV(n_channels: int,
                          calibration_keV: tuple[float, float, float]) -> np.ndarray:
    """E(ch) = a + b·ch + c·ch² (keV) of channels ch = 0 .. n_channels − 1."""
    a, b, c = (float(v) for v in calibration_keV)
    ch = np.arange(n_channels, dtype=float)
    return a + b * ch + c * ch**2


def ed_fwhm_keV(energy_keV: np.ndarray | float, f0_keV: float, f1_keV: float) -> np.ndarray:
    """Ge-detector resolution FWHM(E) = sqrt(f0² + f1·E) (keV)."""
    return np.sqrt(f0_keV**2 + f1_keV * np.asarray(energy_keV, dtype=float))


def ed_d_spacing_A(energy_keV: np.ndarray | float, two_theta_deg: float) -> np.ndarray:
    """d = hc / (2 E sin θ) (Å) of energy E at fixed scattering angle 2θ."""
    sin_t = np.sin(np.radians(two_theta_deg) / 2.0)
    with np.errstate(divide="ignore"):
        return HC_KEV_A / (2.0 * np.asarray(energy_keV, dtype=float) * sin_t)


def ed_equivalent_two_theta_deg(energy_keV: np.ndarray, two_theta_deg: float,
                                wavelength_A: float) -> np.ndarray:
    """2θ_eq = 2 asin(q λ / 4π) (deg), q = 4π sin θ E / hc; NaN where q λ / 4π ≥ 1."""
    s = (np.sin(np.radians(two_theta_deg) / 2.0) * np.asarray(energy_keV, dtype=float)
         * wavelength_A / HC_KEV_A)
    with np.errstate(invalid="ignore"):
        return np.degrees(2.0 * np.arcsin(np.where((s >= 0.0) & (s < 1.0), s, np.nan)))


class TwoPhaseSpectra:
    """Energy-dispersive spectra of FePO4 (f) + LiFePO4 (1 − f) at fixed 2θ (module docstring).

    The pure-phase spectra and the background are computed once on the channels; a
    spectrum is ``monitor · (b + f S_FP + (1 − f) S_LFP)`` expected counts per channel,
    Poisson-sampled by :meth:`render`.
    """

    def __init__(self, spec: ConfocalSpec, wavelength_A: float) -> None:
        if spec.ed_n_channels < 2:
            raise ValueError(f"ConfocalSpec.ed_n_channels must be >= 2, got {spec.ed_n_channels}")
        if not 0.0 < spec.ed_two_theta_deg < 180.0:
            raise ValueError("ConfocalSpec.ed_two_theta_deg must be in (0, 180), got "
                             f"{spec.ed_two_theta_deg}")
        self.spec = spec
        self.wavelength_A = float(wavelength_A)
        self.two_theta_deg = float(spec.ed_two_theta_deg)
        self.energy_keV = ed_channel_energy_keV(spec.ed_n_channels, spec.ed_calibration_keV)
        self.two_theta_eq_deg = ed_equivalent_two_theta_deg(
            self.energy_keV, self.two_theta_deg, self.wavelength_A)
        from operando.simulate.diffraction import background_profile

        valid = np.isfinite(self.two_theta_eq_deg)
        bg = np.zeros_like(self.energy_keV)
        bg[valid] = background_profile(self.two_theta_eq_deg[valid], spec.ed_background_counts)
        # beyond q λ / 4π >= 1 (no equivalent angle): the background's large-angle level
        bg[~valid] = 0.5 * spec.ed_background_counts
        self._bg = bg
        self._fp = self._phase_spectrum("FePO4", valid)
        self._lfp = self._phase_spectrum("LiFePO4", valid)

    def reflection_fwhm_deg(self, d_A: np.ndarray) -> np.ndarray:
        """FWHM in 2θ_eq (deg) of reflections at d: 2 tan θ_eq · FWHM(E_d)/E_d (rad → deg)."""
        d = np.asarray(d_A, dtype=float)
        e = HC_KEV_A / (2.0 * d * np.sin(np.radians(self.two_theta_deg) / 2.0))
        rel = ed_fwhm_keV(e, self.spec.ed_fwhm_f0_keV, self.spec.ed_fwhm_f1_keV) / e
        theta_eq = np.arcsin(self.wavelength_A / (2.0 * d))
        return np.degrees(2.0 * np.tan(theta_eq) * rel)

    def _phase_spectrum(self, name: str, valid: np.ndarray) -> np.ndarray:
        from operando.simulate.diffraction import (
            PHASES,
            REFERENCE_FWHM_DEG,
            _add_pseudo_voigt_peaks,
            _intensity_norm,
            lorentz_factor,
            two_theta_deg,
        )

        phase = PHASES[name]
        d = np.array([r.d_A for r in phase.reflections])
        f2m = np.array([r.f2_mult for r in phase.reflections])
        tth = two_theta_deg(d, self.wavelength_A)
        ok = np.isfinite(tth)
        d, tth = d[ok], tth[ok]
        inten = f2m[ok] * lorentz_factor(tth) / phase.volume_A3  # AD convention at λ
        widths = self.reflection_fwhm_deg(d)
        amp = (self.spec.ed_flux_counts * inten / _intensity_norm(self.wavelength_A)
               * REFERENCE_FWHM_DEG / widths)
        x = self.two_theta_eq_deg[valid]
        prof = np.zeros_like(x)
        for c, h, w in zip(tth, amp, widths, strict=True):
            _add_pseudo_voigt_peaks(prof, x, np.array([c]), np.array([h]), float(w))
        out = np.zeros_like(self.energy_keV)
        out[valid] = prof
        return out

    def expected(self, f_fepo4: float, *, monitor: float = 1.0) -> np.ndarray:
        """Noise-free expected counts per channel (float64)."""
        return monitor * (self._bg + f_fepo4 * self._fp + (1.0 - f_fepo4) * self._lfp)

    def render(self, f_fepo4: float, *, monitor: float, rng: np.random.Generator) -> np.ndarray:
        """One uint32 spectrum with Poisson noise."""
        return rng.poisson(self.expected(f_fepo4, monitor=monitor)).astype(np.uint32)


ED_FWHM_MODEL = ("FWHM(E) = sqrt(f0**2 + f1*E) keV (Ge detector); a reflection of d-spacing d "
                 "sits at E_d = hc / (2 d sin(theta)) with FWHM(E_d) keV, i.e. "
                 "FWHM(2theta_eq) = 2 tan(theta_eq) FWHM(E_d)/E_d rad")


# --------------------------------------------------------------------------- the stream


def simulate_confocal(ctx: SimContext) -> StreamResult:
    """Simulate and write the confocal XRD stream (see the module docstring).

    Writes ``confocal/confocal.h5`` (Bliss master, one NXentry ``"{pass}.1"`` per
    pass), ``confocal/scan{pass:04d}/<det>_0000.h5`` (LIMA frames),
    ``confocal/geometry.poni`` and ``confocal/mask.edf``; with
    ``ConfocalSpec.energy_dispersive`` also ``confocal/confocal_ed.h5`` (the same points
    as MCA spectra). Frames are rendered and written one at a time. Times in the truth
    are potentiostat seconds; times in the files are the beamline clock
    (``ctx.clock.to_beamline_epoch`` + Normal(0, ``beamline_jitter_s``)). Points not
    acquired (missing points, the end of a cut last pass) are absent from the files and
    NaN in the truth's per-point arrays (``acquired`` is their mask).
    """
    from operando.io.xrd.bliss import BlissScan, lima_file_name, write_bliss_master, write_lima_file
    from operando.io.xrd.geometry import write_mask_edf, write_poni
    from operando.simulate.diffraction import FrameRenderer, make_integrator

    spec = ctx.preset.confocal
    xrd = ctx.preset.xrd
    model = make_depth_model(ctx.echem, spec)
    sched = confocal_schedule(spec, ctx.echem.duration_s)
    n_passes, n_depths = sched.scheduled_start_s.shape
    acq = sched.acquired
    # evaluated on the nominal slots of every point, then NaN where not acquired
    t0_nom = sched.scheduled_start_s
    t1_nom = t0_nom + spec.count_time_s

    def masked(a: np.ndarray) -> np.ndarray:
        return np.where(acq, a, np.nan)

    # (P, N, N) profiles averaged over each exposure; point (p, i) sees depth i
    frac = masked(np.diagonal(model.exposure_average(t0_nom, t1_nom), axis1=1, axis2=2))
    front = model.front_position_um(t0_nom + 0.5 * spec.count_time_s)
    faraday = masked(window_mean(ctx.echem.faraday_fepo4_fraction_at, t0_nom, t1_nom))
    echem_means = {k: masked(v) for k, v in ctx.echem.window_means(t0_nom, t1_nom).items()}

    rng_det, rng_time, rng_mon, rng_frames, rng_ed = ctx.rng(STREAM).spawn(5)
    clock, clock_spec = ctx.stream_clock(STREAM)
    epoch = clock.to_beamline_epoch(t0_nom) + rng_time.normal(
        0.0, clock_spec.beamline_jitter_s, t0_nom.shape
    )
    rel_beam = relative_beam_intensity(t0_nom, rng_mon)
    monitor = MONITOR_COUNTS_PER_S * spec.count_time_s * rel_beam
    sz_mm = model.depth_um * 1e-3

    ai = make_integrator(spec.detector, xrd.wavelength_A, xrd.distance_m)
    flux = xrd.flux_counts * spec.count_time_s / xrd.count_time_s
    renderer = FrameRenderer(
        ai, flux_counts=flux, background_counts=xrd.background_counts,
        n_dead=xrd.n_dead_pixels, n_hot=xrd.n_hot_pixels, rng=rng_det,
    )
    mixture = TwoPhaseFrames(renderer, FWHM_DEG)
    frame_shape = renderer.shape
    det = detector_key(spec.detector)
    outdir = ctx.stream_dir(STREAM)
    n_total = int(acq.sum())
    done = 0

    def frames(p: int) -> Iterator[np.ndarray]:
        nonlocal done
        for i in np.flatnonzero(acq[p]):
            yield mixture.render(float(frac[p, i]), monitor=float(rel_beam[p, i]),
                                 rng=rng_frames)
            done += 1
            ctx.report(STREAM, done, n_total)

    title = (f"ascan sz {sz_mm[0]:.6g} {sz_mm[-1]:.6g} {n_depths - 1} "
             f"{spec.count_time_s:g}")  # as commanded: a scan cut short keeps its title

    def scan_meta(p: int) -> dict[str, Any]:
        sel = acq[p]
        ep = epoch[p, sel]
        return {
            "number": p + 1, "title": title, "start_epoch_s": float(ep[0]),
            "end_epoch_s": float(ep[-1] + spec.count_time_s),
            "positioners": {"sz": (sz_mm[sel], "mm")},
            "counters": {
                "epoch": (ep, "s"),
                "elapsed_time": (ep - ep[0], "s"),
                "sz": (sz_mm[sel], "mm"),
                "mon": (monitor[p, sel], "counts"),
                "count_time": (np.full(int(sel.sum()), spec.count_time_s), "s"),
            },
        }

    scans: list[BlissScan] = []
    for p in range(n_passes):
        meta = scan_meta(p)
        lima = lima_file_name(meta["number"], det)
        n_p = int(acq[p].sum())
        write_lima_file(outdir / lima, frames(p), n_frames=n_p,
                        frame_shape=frame_shape, detector=det)
        scans.append(BlissScan(**meta, n_points=n_p, frame_shape=frame_shape, lima_file=lima))
    write_bliss_master(outdir / "confocal.h5", scans, detector=det)
    write_poni(ai, outdir / "geometry.poni")
    write_mask_edf(renderer.mask, outdir / "mask.edf")

    rel = f"{STREAM}/"
    files = {"master": rel + "confocal.h5", "poni": rel + "geometry.poni",
             "mask": rel + "mask.edf"}
    ed_truth: dict[str, Any] | None = None
    if spec.energy_dispersive:
        files["ed_master"] = rel + "confocal_ed.h5"
        ed_truth = _write_energy_dispersive(
            outdir / "confocal_ed.h5", files["ed_master"], spec, xrd.wavelength_A,
            [scan_meta(p) for p in range(n_passes)], frac, rel_beam, acq, rng_ed)

    truth = _confocal_truth(model, sched, spec, xrd, frac=frac, faraday=faraday, front=front,
                            echem_means=echem_means, monitor=monitor, det=det)
    if ed_truth is not None:
        truth["energy_dispersive"] = ed_truth
    return StreamResult(files=files, truth=truth)


def _write_energy_dispersive(path: Path, master: str, spec: ConfocalSpec, wavelength_A: float,
                             metas: list[dict[str, Any]], frac: np.ndarray,
                             rel_beam: np.ndarray, acq: np.ndarray,
                             rng: np.random.Generator) -> dict[str, Any]:
    """Write the same points as MCA spectra at the fixed 2θ (Bliss master ``path``; one
    scan per pass, ``metas`` their metadata; ``frac`` the exposure-averaged FePO4 fraction,
    ``rel_beam`` the relative beam intensity per point, ``acq`` the acquired mask, ``rng``
    the noise) and return its truth (``master``: the path relative to the run)."""
    from operando.io.xrd.bliss import BlissMcaScan, write_bliss_mca_master

    spectra = TwoPhaseSpectra(spec, wavelength_A)
    ed_scans = [
        BlissMcaScan(
            **meta,
            spectra=np.array([spectra.render(float(frac[p, i]),
                                             monitor=float(rel_beam[p, i]), rng=rng)
                              for i in np.flatnonzero(acq[p])]),
            calibration_keV=tuple(float(v) for v in spec.ed_calibration_keV),
            two_theta_deg=float(spec.ed_two_theta_deg),
        )
        for p, meta in enumerate(metas)
    ]
    write_bliss_mca_master(path, ed_scans, detector=MCA_DETECTOR)
    return {
        "master": master,
        "spectrum_path": f"instrument/{MCA_DETECTOR}/data",
        "calibration_path": f"instrument/{MCA_DETECTOR}/calibration",
        "two_theta_path": f"instrument/{MCA_DETECTOR}/two_theta",
        "two_theta_deg": float(spec.ed_two_theta_deg),
        "calibration_keV": [float(v) for v in spec.ed_calibration_keV],
        "calibration_formula": "E = a + b*channel + c*channel**2 (channel 0-based)",
        "n_channels": int(spec.ed_n_channels),
        "nominal_wavelength_A": wavelength_A,
        "hc_keV_A": HC_KEV_A,
        "fwhm_model": ED_FWHM_MODEL,
        "fwhm_f0_keV": spec.ed_fwhm_f0_keV,
        "fwhm_f1_keV": spec.ed_fwhm_f1_keV,
        "flux_counts": spec.ed_flux_counts,
        "background_counts": spec.ed_background_counts,
        "profile": "pseudo-Voigt in 2theta_eq, eta = PV_ETA, areas in the AD convention "
                   "at nominal_wavelength_A",
        "same_points_as": "master (same schedule, truth fractions, epoch, mon)",
    }


def _confocal_truth(model: DepthModel, sched: ConfocalSchedule, spec: ConfocalSpec,
                    xrd: XrdSpec, *, frac: np.ndarray, faraday: np.ndarray, front: np.ndarray,
                    echem_means: dict[str, np.ndarray], monitor: np.ndarray, det: str
                    ) -> dict[str, Any]:
    """The truth of the stream (see :func:`simulate_confocal`): per-point arrays NaN where
    not acquired; ``frac`` the exposure-averaged FePO4 fraction, ``front`` the front
    position (µm, ±inf before / after it crosses, NaN at rest), ``xrd`` the preset's XRD
    spec (wavelength, distance), ``det`` the detector key."""
    acq = sched.acquired
    n_passes, n_depths = sched.scheduled_start_s.shape

    def masked(a: np.ndarray) -> np.ndarray:
        return np.where(acq, a, np.nan)

    return {
        "depth_um": model.depth_um,
        "depth_grid": "slab centres (i + 1/2) * thickness_um / n_depths",
        "origin": spec.origin,
        "thickness_um": spec.thickness_um,
        "relaxation_time_s": spec.relaxation_time_s,
        "front_width_um": spec.front_width_um,
        "n_passes": n_passes,
        "n_depths": n_depths,
        "acquired": acq,
        "n_acquired_points": int(acq.sum()),
        "points_per_pass": sched.points_per_pass,
        "missing_points": [list(m) for m in sched.missing_points],
        "incomplete_last_pass": ("kept, cut short" if sched.last_pass_cut else
                                 "dropped" if sched.n_dropped_points else "none"),
        "n_dropped_points": sched.n_dropped_points,
        "point_time_s": spec.point_time_s,
        "count_time_s": spec.count_time_s,
        "scheduled_time_start_s": sched.scheduled_start_s,
        "time_s": sched.time_mid_s,
        "time_start_s": sched.time_start_s,
        "time_end_s": sched.time_end_s,
        "phase_fraction": {"FePO4": frac, "LiFePO4": 1.0 - frac,
                           "LixFePO4": masked(np.zeros_like(frac))},
        "faraday_fepo4_fraction": faraday,
        "phases_modelled": "two-phase LiFePO4/FePO4 (no intermediate)",
        "depth_average_follows": "electrode-average Faraday fraction, no lag",
        "front_position_um": masked(np.where(np.isfinite(front), front, np.nan)),
        "front_state": np.where(acq, np.select(
            [np.isnan(front), np.isneginf(front), np.isposinf(front)],
            ["rest", "not yet entered", "crossed the electrode"], "moving"), "not acquired"),
        "epoch_refers_to": "exposure start",
        "echem": echem_means,
        "monitor": masked(monitor),
        "detector": spec.detector,
        "detector_path": f"instrument/{det}/data",
        "lima_data_path": "/entry_0000/measurement/data",
        "wavelength_A": xrd.wavelength_A,
        "distance_m": xrd.distance_m,
        "fwhm_deg": FWHM_DEG,
        "depth_motor": {"path": "instrument/positioners/sz", "units": "mm"},
        "epoch_path": "measurement/epoch",
        "monitor_path": "measurement/mon",
        "count_time_path": "measurement/count_time",
        "reaction": {**reaction_truth(model, min_change=REACTION_MIN_CHANGE).as_dict(),
                     "min_change": REACTION_MIN_CHANGE,
                     "definitions": "see operando.simulate.confocal.ReactionTruth"},
    }
