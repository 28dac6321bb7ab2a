"""Phase-fraction bias against the truth: a sweep of the FePO4 fraction from 0 to 1.

Patterns of LiFePO4/FePO4 mixtures are rendered on the `small` preset's detector
(Pilatus100k, 60 keV, 0.25 m: a 172 µm pixel spans ≈ 0.04° 2θ, as wide as a majority
peak), Poisson noise at several count levels, integrated as the XRD stream is
(:func:`operando.simulate.xrd.integrated_patterns`), then fitted by the peak step and turned
into phase fractions. Per bin of the true fraction (0.1 wide; the ends 0 and 1 alone) it
prints the bias (mean error), the RMS error and the coverage of the ±1σ interval of the
reported standard error (≈ 68 % when σ is right), for three fit models:

- ``narrow``: four windows a few peak widths wide, one main peak per phase and window, a
  quadratic background each, plain pseudo-Voigt (the model before P14);
- ``narrow+box``: the same with the instrument box (the pixel's radial footprint);
- ``whole``: the wide windows of the simulated runs' config (every reflection, several
  main peaks per phase, cubic background over 0.8 Å⁻¹), with the instrument box.

Noise levels: ``none`` (expected counts: the model's own bias), and count scales 0.25, 1
(the demo) and 4. ``python benchmarks/bench_fractions.py [--realisations N] [--models
narrow,whole] [--levels none,1]``; default 4 realisations per fraction (21 fractions).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

#: the windows before P14 (narrow groups, quadratic background each)
NARROW_WINDOWS_Q = {"w200": (1.15, 1.34), "w020": (2.03, 2.215), "w301": (2.225, 2.36),
                    "w311": (2.445, 2.625)}
BINS = [(0.0, 0.0)] + [(a / 10, (a + 1) / 10) for a in range(10)] + [(1.0, 1.0)]


def setup_for(model: str):  # a PeakSetup
    """The PeakSetup of one benchmark model (see the module docstring)."""
    from operando.config import PeaksSection
    from operando.simulate.beamtime import peaks_section
    from operando.simulate.presets import XrdSpec
    from pipelines.peaks import setup_from_config

    wl = XrdSpec().wavelength_A
    if model == "whole":
        sec = peaks_section(wl)
    else:
        sec = peaks_section(wl, windows_q=NARROW_WINDOWS_Q, main_min_intensity=np.inf,
                            background_order={}, instrument_box=model == "narrow+box")
    return setup_from_config(PeaksSection.model_validate(sec))


def sweep(model: str, level: float | None, realisations: int, seed: int = 0
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(true, fitted, σ) FePO4 fractions of the sweep for one model and count level."""
    from operando.simulate.presets import XrdSpec
    from operando.simulate.xrd import integrated_patterns
    from operando.xrd.peaks_product import analyse_peaks, fit_xrd_block

    setup = setup_for(model)
    wl = XrdSpec().wavelength_A
    truth = np.repeat(np.linspace(0.0, 1.0, 21), 1 if level is None else realisations)
    q, y, s = integrated_patterns(truth, count_scale=level, rng=np.random.default_rng(seed))
    fit_a, fit_b = fit_xrd_block(y, s, q, "q_A^-1", wl, setup)
    res = analyse_peaks(fit_a, fit_b, setup, "q_A^-1", wl)
    i = [p.name for p in setup.phases].index("FePO4")
    return truth, res.phase_fraction[:, i], res.phase_fraction_stderr[:, i]


def table(truth: np.ndarray, got: np.ndarray, err: np.ndarray) -> list[tuple]:
    """(bin label, n, bias, RMS, 1σ coverage) per bin of the true fraction."""
    rows = []
    for lo, hi in BINS:
        if lo == hi:
            sel = truth == lo
        else:
            sel = (truth > lo) & (truth < hi) if lo == 0 else (truth >= lo) & (truth < hi)
        d = got[sel] - truth[sel]
        cover = np.mean(np.abs(d) <= err[sel]) if sel.any() else np.nan
        label = f"{lo:.1f}" if lo == hi else f"{lo:.1f}–{hi:.1f}"
        rows.append((label, int(sel.sum()), float(np.nanmean(d)),
                     float(np.sqrt(np.nanmean(d ** 2))), float(cover)))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--realisations", type=int, default=4)
    ap.add_argument("--models", default="narrow,narrow+box,whole")
    ap.add_argument("--levels", default="none,0.25,1,4")
    args = ap.parse_args()
    for model in args.models.split(","):
        for lv in args.levels.split(","):
            level = None if lv == "none" else float(lv)
            t0 = time.perf_counter()
            truth, got, err = sweep(model, level, args.realisations)
            dt = time.perf_counter() - t0
            print(f"\nmodel {model}, counts × {lv} ({truth.size} patterns, {dt:.1f} s)")
            print(f"{'f_FePO4':>9} {'n':>4} {'bias':>8} {'RMS':>7} {'1σ cover':>9}")
            for label, n, bias, rms, cover in table(truth, got, err):
                print(f"{label:>9} {n:4d} {bias:+8.4f} {rms:7.4f} {cover:9.0%}")
            rows = table(truth, got, err)
            worst = max(abs(r[2]) for r in rows)
            d = got - truth
            inner = (truth > 0) & (truth < 1)
            cover = np.mean(np.abs(d[inner]) <= err[inner])
            print(f"{'all':>9} {truth.size:4d} worst |bias| {worst:.4f}, RMS "
                  f"{np.sqrt(np.nanmean(d ** 2)):.4f}, 1σ coverage {cover:.0%} (interior)")


if __name__ == "__main__":
    main()
