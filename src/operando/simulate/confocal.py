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

Acquisition
-----------
One point every ``point_time_s`` from ``first_point_s``; the detector counts
for ``count_time_s`` at the start of each slot. Points sweep the depths from the
separator to the current collector, pass after pass. Only **complete passes**
are kept: the last pass is dropped if its last exposure would end after the
end of the protocol (``ctx.echem.duration_s``), so every truth array is
rectangular ``(n_passes, n_depths)`` with no padding. The truth fraction of a
point is its profile averaged over the exposure (``timeline.window_mean``).

Scope of the truth: two phases only (no LixFePO4 intermediate, even at high
rate), and the depth average follows the electrode-average Faraday fraction
with no lag (the ``lag_s`` of the XRD and XANES streams is the in-plane lag of
their probed spot behind the electrode average).

Frames are rendered by :class:`operando.simulate.diffraction.FrameRenderer`
and written frame by frame by :mod:`operando.io.bliss` (Bliss master + LIMA
files, bitshuffle-LZ4), with PONI and mask beside them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from operando.simulate.context import SimContext, StreamResult
from operando.simulate.echem import EchemProfile
from operando.simulate.presets import ConfocalSpec
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


# --------------------------------------------------------------------------- acquisition


@dataclass(frozen=True)
class ConfocalSchedule:
    """Acquisition times of the kept (complete) passes, potentiostat clock (s).

    Point ``k = pass * n_depths + depth`` starts at ``first_point_s + k * point_time_s``
    and counts for ``count_time_s``. Arrays are (n_passes, n_depths).
    """

    time_start_s: np.ndarray
    time_end_s: np.ndarray
    n_dropped_points: int  # points of the incomplete last pass that were not acquired

    @property
    def time_mid_s(self) -> np.ndarray:
        return 0.5 * (self.time_start_s + self.time_end_s)

    @property
    def n_passes(self) -> int:
        return int(self.time_start_s.shape[0])


def confocal_schedule(spec: ConfocalSpec, duration_s: float) -> ConfocalSchedule:
    """Complete passes whose last exposure ends by ``duration_s`` (incomplete pass dropped)."""
    if spec.count_time_s <= 0 or spec.point_time_s < spec.count_time_s:
        raise ValueError(
            "ConfocalSpec: need 0 < count_time_s <= point_time_s, got "
            f"count_time_s={spec.count_time_s}, point_time_s={spec.point_time_s}"
        )
    starts = acquisition_starts(spec.first_point_s, spec.point_time_s, spec.count_time_s,
                                duration_s)
    n_points = starts.size
    n_passes = n_points // spec.n_depths
    if n_passes < 1:
        raise ValueError(
            f"ConfocalSpec: not one complete pass of {spec.n_depths} points x "
            f"{spec.point_time_s} s fits in the {duration_s} s protocol"
        )
    t0 = starts[: n_passes * spec.n_depths].reshape(n_passes, spec.n_depths)
    return ConfocalSchedule(
        time_start_s=t0, time_end_s=t0 + spec.count_time_s,
        n_dropped_points=n_points - n_passes * spec.n_depths,
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


def simulate_confocal(ctx: SimContext) -> StreamResult:
    """Simulate and write the confocal XRD stream (see the module docstring).

    Writes ``confocal/confocal.h5`` (Bliss master, one NXentry ``"{pass}.1"`` per
    pass), ``confocal/scan{pass:04d}/<det>_0000.h5`` (LIMA frames),
    ``confocal/geometry.poni`` and ``confocal/mask.edf``. Frames are rendered
    and written one at a time. Times in the truth are potentiostat seconds;
    times in the files are the beamline clock
    (``ctx.clock.to_beamline_epoch`` + Normal(0, ``beamline_jitter_s``)).
    """
    from operando.io.bliss import (
        BlissScan,
        lima_file_name,
        write_bliss_master,
        write_lima_file,
    )
    from operando.io.geometry import write_mask_edf, write_poni
    from operando.simulate.diffraction import FrameRenderer, make_integrator

    spec = ctx.preset.confocal
    xrd = ctx.preset.xrd
    model = make_depth_model(ctx.echem, spec)
    sched = confocal_schedule(spec, ctx.echem.duration_s)
    n_passes, n_depths = sched.time_start_s.shape
    # (P, N, N) profiles averaged over each exposure; point (p, i) sees depth i
    frac = np.diagonal(
        model.exposure_average(sched.time_start_s, sched.time_end_s), axis1=1, axis2=2
    ).copy()
    front = model.front_position_um(sched.time_mid_s)
    faraday = window_mean(ctx.echem.faraday_fepo4_fraction_at, sched.time_start_s,
                          sched.time_end_s)

    rng_det, rng_time, rng_mon, rng_frames = ctx.rng(STREAM).spawn(4)
    epoch = ctx.clock.to_beamline_epoch(sched.time_start_s) + rng_time.normal(
        0.0, ctx.preset.clock.beamline_jitter_s, sched.time_start_s.shape
    )
    rel_beam = relative_beam_intensity(sched.time_start_s, rng_mon)
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

    def frames(p: int) -> Iterator[np.ndarray]:
        for i in range(n_depths):
            yield mixture.render(float(frac[p, i]), monitor=float(rel_beam[p, i]),
                                 rng=rng_frames)
            ctx.report(STREAM, p * n_depths + i + 1, n_passes * n_depths)

    scans: list[BlissScan] = []
    title = (f"ascan sz {sz_mm[0]:.6g} {sz_mm[-1]:.6g} {n_depths - 1} "
             f"{spec.count_time_s:g}")
    for p in range(n_passes):
        number = p + 1
        lima = lima_file_name(number, det)
        write_lima_file(outdir / lima, frames(p), n_frames=n_depths,
                        frame_shape=frame_shape, detector=det)
        scans.append(BlissScan(
            number=number, title=title,
            start_epoch_s=float(epoch[p, 0]),
            end_epoch_s=float(epoch[p, -1] + spec.count_time_s),
            n_points=n_depths, frame_shape=frame_shape, lima_file=lima,
            positioners={"sz": (sz_mm, "mm")},
            counters={
                "epoch": (epoch[p], "s"),
                "elapsed_time": (epoch[p] - epoch[p, 0], "s"),
                "sz": (sz_mm, "mm"),
                "mon": (monitor[p], "counts"),
                "count_time": (np.full(n_depths, spec.count_time_s), "s"),
            },
        ))
    write_bliss_master(outdir / "confocal.h5", scans, detector=det)
    write_poni(ai, outdir / "geometry.poni")
    write_mask_edf(renderer.mask, outdir / "mask.edf")

    rel = f"{STREAM}/"
    truth = {
        "depth_um": model.depth_um,
        "depth_grid": "slab centres (i + 1/2) * thickness_um / n_depths",
        "origin": spec.origin,
        "thickness_um": spec.thickness_um,
        "relaxation_time_s": spec.relaxation_time_s,
        "front_width_um": spec.front_width_um,
        "n_passes": n_passes,
        "n_depths": n_depths,
        "incomplete_last_pass": "dropped",
        "n_dropped_points": sched.n_dropped_points,
        "point_time_s": spec.point_time_s,
        "count_time_s": spec.count_time_s,
        "time_s": sched.time_mid_s,
        "time_start_s": sched.time_start_s,
        "time_end_s": sched.time_end_s,
        "phase_fraction": {"FePO4": frac, "LiFePO4": 1.0 - frac,
                           "LixFePO4": np.zeros_like(frac)},
        "faraday_fepo4_fraction": faraday,
        "phases_modelled": "two-phase LiFePO4/FePO4 (no intermediate)",
        "depth_average_follows": "electrode-average Faraday fraction, no lag",
        "front_position_um": np.where(np.isfinite(front), front, np.nan),
        "front_state": np.select(
            [np.isnan(front), np.isneginf(front), np.isposinf(front)],
            ["rest", "not yet entered", "crossed the electrode"], "moving"),
        "epoch_refers_to": "exposure start",
        "echem": ctx.echem.window_means(sched.time_start_s, sched.time_end_s),
        "monitor": monitor,
        "detector": spec.detector,
        "detector_path": f"instrument/{det}/data",
        "lima_data_path": "/entry_0000/measurement/data",
        "wavelength_A": xrd.wavelength_A,
        "distance_m": xrd.distance_m,
        "fwhm_deg": FWHM_DEG,
        "depth_motor": {"path": "instrument/positioners/sz", "units": "mm"},
        "epoch_path": "measurement/epoch",
        "monitor_path": "measurement/mon",
    }
    return StreamResult(
        files={"master": rel + "confocal.h5", "poni": rel + "geometry.poni",
               "mask": rel + "mask.edf"},
        truth=truth,
    )

