"""The synthetic time-resolved XRD stream of an operando LiFePO4 beamtime.

Frames are triggered every ``XrdSpec.frame_period_s`` on the potentiostat clock,
t_k = first_frame_s + k × frame_period_s, for as long as the exposure
[t_k, t_k + count_time_s] ends within the electrochemical protocol. The beamline writes
timestamp_k = clock.to_beamline_epoch(t_k) + N(0, beamline_jitter_s).

Structure (phase fractions, molar, summing to 1) follows the charge passed with a lag:
the crystalline phases hold the Li content x_s(t) = x_Faraday(τ), τ = max(t − lag_s, 0).
The metastable intermediate LixiFePO4 (x_i = ``LI_OCCUPANCY_INTERMEDIATE`` ≈ 0.75, Vegard
on its cell volume) forms
during a fast discharge and relaxes at rest; Li is conserved by the lever rule:

    g(t)        = P · p(τ)                          during discharge, p = discharge progress
                = g_end · exp(−(τ − t_d,end) / τ_decay)   after discharge (rest)
                = 0                                   before discharge, or if C-rate < threshold
    f_int       = min(g, x_s / x_i, (1 − x_s) / (1 − x_i))      (all fractions ≥ 0)
    f_LiFePO4   = x_s − x_i f_int,     f_FePO4 = 1 − x_s − (1 − x_i) f_int

so f_LiFePO4 + x_i f_int = x_s at every instant: as the intermediate decays at rest it
splits into LiFePO4 and FePO4 in the ratio x_i : (1 − x_i). P =
``intermediate_peak_fraction``. Fractions are averaged over each exposure window
(``timeline.window_mean``). Peak widths broaden for a minority phase
(nanodomains): fwhm_p = FWHM_BASE_DEG + FWHM_MINORITY_DEG × (1 − f_p). The incident beam follows
``timeline.relative_beam_intensity`` (top-up sawtooth + noise); each frame's signal and
background scale with it, and the monitor records it.
"""

from __future__ import annotations

import numpy as np

from operando.io.xrd.geometry import write_mask_edf, write_poni
from operando.io.xrd.nexus import DETECTOR_DATA_PATH, TIMESTAMP_PATH, NexusXrdWriter
from operando.simulate.context import SimContext, StreamResult
from operando.simulate.diffraction import (
    LI_OCCUPANCY_INTERMEDIATE,
    PHASES,
    POLARIZATION_FACTOR,
    FrameRenderer,
    make_integrator,
    reflection_table,
)
from operando.simulate.echem import EchemProfile
from operando.simulate.presets import XrdSpec
from operando.simulate.timeline import (
    MONITOR_COUNTS_PER_S,
    acquisition_starts,
    relative_beam_intensity,
    window_mean,
)
from operando.xrd.integrate import BatchIntegrator, IntegrationOptions

__all__ = [
    "FWHM_BASE_DEG",
    "FWHM_MINORITY_DEG",
    "PHASE_NAMES",
    "exposure_averaged_fractions",
    "frame_trigger_times",
    "integrated_patterns",
    "peak_fwhm_deg",
    "phase_fractions_at",
    "simulate_xrd",
]

PHASE_NAMES = ("LiFePO4", "FePO4", "LixFePO4")
FWHM_BASE_DEG = 0.045  # instrumental + crystallite width of a majority phase (deg 2θ)
FWHM_MINORITY_DEG = 0.06  # extra width of a phase as its fraction → 0 (nanodomains)

XRD_FILES = {"frames": "xrd/xrd_0001.h5", "poni": "xrd/geometry.poni", "mask": "xrd/mask.edf"}


def frame_trigger_times(spec: XrdSpec, duration_s: float) -> np.ndarray:
    """Exposure starts t_k = first_frame_s + k·frame_period_s with t_k + count_time_s ≤ duration."""
    return acquisition_starts(spec.first_frame_s, spec.frame_period_s, spec.count_time_s,
                              duration_s)


def phase_fractions_at(
    t_s: np.ndarray | float, echem: EchemProfile, spec: XrdSpec
) -> dict[str, np.ndarray]:
    """Instantaneous molar phase fractions at potentiostat times ``t_s`` (see module doc)."""
    t = np.asarray(t_s, dtype=float)
    tau = np.maximum(t - spec.lag_s, 0.0)
    x_s = np.clip(np.asarray(echem.x_li_at(tau), dtype=float), 0.0, 1.0)
    xi = LI_OCCUPANCY_INTERMEDIATE
    f_int = np.zeros_like(x_s)
    if echem.spec.c_rate_per_h >= spec.intermediate_min_c_rate:
        d0, d1 = echem.segment_bounds_s[echem.segment_names.index("discharge")]
        progress = np.clip((tau - d0) / (d1 - d0), 0.0, 1.0)
        after = np.exp(-np.maximum(tau - d1, 0.0) / spec.intermediate_decay_s)
        g = np.where(tau < d0, 0.0, spec.intermediate_peak_fraction * progress * after)
        f_int = np.minimum(g, np.minimum(x_s / xi, (1.0 - x_s) / (1.0 - xi)))
    return {
        "LiFePO4": x_s - xi * f_int,
        "FePO4": 1.0 - x_s - (1.0 - xi) * f_int,
        "LixFePO4": f_int,
    }


def exposure_averaged_fractions(
    t_start_s: np.ndarray, t_end_s: np.ndarray, echem: EchemProfile, spec: XrdSpec,
) -> dict[str, np.ndarray]:
    """Phase fractions averaged over each exposure [t_start, t_end] (``timeline.window_mean``)."""
    return window_mean(lambda t: phase_fractions_at(t, echem, spec), t_start_s, t_end_s)


def peak_fwhm_deg(fractions: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """fwhm_p = FWHM_BASE_DEG + FWHM_MINORITY_DEG · (1 − f_p)  (deg 2θ)."""
    return {k: FWHM_BASE_DEG + FWHM_MINORITY_DEG * (1.0 - np.asarray(v)) for k, v in
            fractions.items()}


def simulate_xrd(ctx: SimContext) -> StreamResult:
    """Write ``xrd/xrd_0001.h5`` (NeXus), ``xrd/geometry.poni`` and ``xrd/mask.edf``.

    Frames are rendered and written one at a time (memory: one frame). Returns the files
    and the ground truth (times on the potentiostat clock, s).
    """
    spec = ctx.preset.xrd
    echem = ctx.echem
    t_start = frame_trigger_times(spec, echem.duration_s)
    n = t_start.size
    if n == 0:
        raise ValueError(
            f"preset {ctx.preset.name!r}: xrd.first_frame_s={spec.first_frame_s} + "
            f"count_time_s={spec.count_time_s} exceeds the protocol ({echem.duration_s} s)"
        )
    t_end = t_start + spec.count_time_s
    t_mid = 0.5 * (t_start + t_end)

    rng_det, rng_ts, rng_mon, rng_frames = ctx.rng("xrd").spawn(4)
    fractions = exposure_averaged_fractions(t_start, t_end, echem, spec)
    fwhm = peak_fwhm_deg(fractions)
    monitor_rel = relative_beam_intensity(t_mid, rng_mon)
    monitor = MONITOR_COUNTS_PER_S * spec.count_time_s * monitor_rel
    timestamps = ctx.clock.to_beamline_epoch(t_start) + rng_ts.normal(
        0.0, ctx.preset.clock.beamline_jitter_s, n
    )

    ai = make_integrator(spec.detector, spec.wavelength_A, spec.distance_m)
    renderer = FrameRenderer(
        ai, flux_counts=spec.flux_counts, background_counts=spec.background_counts,
        n_dead=spec.n_dead_pixels, n_hot=spec.n_hot_pixels, rng=rng_det,
    )
    ctx.stream_dir("xrd")
    write_poni(ai, ctx.outdir / XRD_FILES["poni"])
    write_mask_edf(renderer.mask, ctx.outdir / XRD_FILES["mask"])

    frame_rngs = rng_frames.spawn(n)
    with NexusXrdWriter(
        ctx.outdir / XRD_FILES["frames"],
        frame_shape=renderer.shape,
        wavelength_A=spec.wavelength_A,
        start_time_epoch_s=float(timestamps[0]),
        title=f"operando synthetic XRD, preset {ctx.preset.name}, seed {ctx.seed}",
        detector_name=spec.detector,
        distance_m=spec.distance_m,
        pixel_size_m=(float(ai.detector.pixel1), float(ai.detector.pixel2)),
        n_frames_hint=n,
    ) as writer:
        for k in range(n):
            frac_k = {p: float(fractions[p][k]) for p in PHASE_NAMES}
            fwhm_k = {p: float(fwhm[p][k]) for p in PHASE_NAMES}
            frame = renderer.render(frac_k, fwhm_k, monitor=float(monitor_rel[k]),
                                    rng=frame_rngs[k])
            writer.append(frame, timestamp_s=float(timestamps[k]),
                          count_time_s=spec.count_time_s, monitor=float(monitor[k]))
            ctx.report("xrd", k + 1, n)

    intermediate_present = bool(echem.spec.c_rate_per_h >= spec.intermediate_min_c_rate)
    truth = {
        "time_s": t_mid.tolist(),
        "time_start_s": t_start.tolist(),
        "time_end_s": t_end.tolist(),
        "trigger_time_s": t_start.tolist(),
        "timestamp_refers_to": "exposure start (the trigger)",
        "echem": echem.window_means(t_start, t_end),
        "timestamp_beamline_epoch_s": np.asarray(timestamps).tolist(),
        "phase_fraction": {p: fractions[p].tolist() for p in PHASE_NAMES},
        "fwhm_deg": {p: fwhm[p].tolist() for p in PHASE_NAMES},
        "fwhm_model": {"base_deg": FWHM_BASE_DEG, "minority_deg": FWHM_MINORITY_DEG,
                       "equation": "fwhm_p = base + minority * (1 - f_p)"},
        "lattice_A": {p: {"a": PHASES[p].a_A, "b": PHASES[p].b_A, "c": PHASES[p].c_A}
                      for p in PHASE_NAMES},
        "wavelength_A": spec.wavelength_A,
        "distance_m": spec.distance_m,
        "lag_s": spec.lag_s,
        "x_li_structural": [float(x) for x in
                            fractions["LiFePO4"] + LI_OCCUPANCY_INTERMEDIATE
                            * fractions["LixFePO4"]],
        "intermediate_x_li": LI_OCCUPANCY_INTERMEDIATE,
        "intermediate_x_li_method": "Vegard's law on the unit-cell volume",
        "polarization_factor": POLARIZATION_FACTOR,
        "solid_angle_in_frames": True,
        "intermediate_present": intermediate_present,
        "detector": spec.detector,
        "n_frames": int(n),
        "count_time_s": spec.count_time_s,
        "monitor": monitor.tolist(),
        "dataset_path": DETECTOR_DATA_PATH,
        "timestamp_path": TIMESTAMP_PATH,
        "reflections": {p: reflection_table(PHASES[p], spec.wavelength_A, 8)
                        for p in PHASE_NAMES},
        "dead_pixels": int(spec.n_dead_pixels),
        "hot_pixels": int(spec.n_hot_pixels),
    }
    return StreamResult(files=dict(XRD_FILES), truth=truth)


def integrated_patterns(
    fepo4_fraction: np.ndarray, *, count_scale: float | None = 1.0,
    rng: np.random.Generator | None = None, spec: XrdSpec | None = None, npt: int = 1500,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Integrated patterns of LiFePO4/FePO4 mixtures, as the XRD stream's frames reduce to.

    ``fepo4_fraction`` (F,) FePO4 molar fractions (LiFePO4 the rest; widths from
    :func:`peak_fwhm_deg`); frames rendered by ``FrameRenderer`` through the geometry of
    ``spec`` (default ``XrdSpec()``: Pilatus100k, 60 keV, 0.25 m, the ``small`` preset's
    flux), no defect pixels, Poisson counts of ``count_scale`` × the expected counts
    (default 1: the demo's noise; 4: four times the counts, half the relative noise;
    None: noise-free, σ that of the expected counts), integrated to ``npt`` q bins with Poisson
    errors (normalised back by ``count_scale``). Returns (q in 1/Å (npt,), intensity (F,
    npt), σ (F, npt)). Pure (no files); the benchmark and tests of the phase-fraction bias
    sweep the fraction with it.
    """
    spec = spec or XrdSpec()
    rng = rng if rng is not None else np.random.default_rng(0)
    ai = make_integrator(spec.detector, spec.wavelength_A, spec.distance_m)
    ren = FrameRenderer(ai, flux_counts=spec.flux_counts,
                        background_counts=spec.background_counts, n_dead=0, n_hot=0,
                        rng=np.random.default_rng(0))
    integ = BatchIntegrator(ai, ren.shape, IntegrationOptions(
        npt=npt, polarization_factor=POLARIZATION_FACTOR), mask=ren.mask)
    f = np.atleast_1d(np.asarray(fepo4_fraction, float))
    scale = 1.0 if count_scale is None else float(count_scale)
    frames = np.empty((f.size, *ren.shape))
    for i, fi in enumerate(f):
        frac = {"LiFePO4": 1.0 - fi, "FePO4": fi}
        lam = ren.expected(frac, peak_fwhm_deg(frac)) * scale
        frames[i] = lam if count_scale is None else rng.poisson(lam)
    res = integ.integrate(frames, normalization=np.full(f.size, scale))
    return np.asarray(integ.radial, float), res.intensity, res.sigma
