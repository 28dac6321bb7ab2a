"""Batch Levenberg–Marquardt vs a per-pattern lmfit loop on the same patterns.

N patterns (default 2000) of one window with four overlapping pseudo-Voigt peaks (two
phases, the LiFePO4/FePO4 (311)/(121) group at 60 keV) and a quadratic background, with
Poisson noise. Prints throughput of both paths and the largest parameter difference in
units of the lmfit standard error. ``python benchmarks/bench_peaks.py [N]``.

``python benchmarks/bench_peaks.py --confocal`` times instead the joint multi-window fit of
the `small` preset's confocal stream (simulated in a temporary folder: 440 points, 26
peaks in 4 windows, 25 parameters), whose few slowly converging points iterate alone for
hundreds of iterations: the Levenberg–Marquardt time, the iterations (median, 99th
percentile, max) and the whole confocal build.
"""

from __future__ import annotations

import sys
import time

import numpy as np


def main(n: int = 2000) -> None:
    from operando.xrd.peakfit import fit_patterns
    from operando.xrd.profiles import peak_profile
    from operando.xrd.windows import FitOptions, PeakDef, WindowDef

    wl = 0.2066
    peaks = (PeakDef("L311", "L", 2.5204, (3, 1, 1), 100.0),
             PeakDef("L121", "L", 2.4579, (1, 2, 1), 30.4, satellite_of="L311", ratio=0.304),
             PeakDef("F311", "F", 2.4490, (3, 1, 1), 98.6),
             PeakDef("F121", "F", 2.4027, (1, 2, 1), 23.2))
    win = WindowDef("w311", (2.385, 2.57), peaks, background_order=2)
    q = np.linspace(2.40, 2.66, 90)
    rng = np.random.default_rng(0)
    frac = rng.uniform(0.2, 0.8, n)
    y = np.empty((n, q.size))
    for i, f in enumerate(frac):
        lam = 20.0 + 5.0 * (q - 2.5)
        for p, a in ((peaks[0], 1 - f), (peaks[1], 0.304 * (1 - f)), (peaks[2], f),
                     (peaks[3], 0.235 * f)):
            lam = lam + peak_profile(q, 2 * np.pi / p.d_A, 40.0 * a, 0.03, 0.5)
        y[i] = rng.poisson(lam * 2000) / 2000
    s = np.sqrt(np.maximum(y * 2000, 1)) / 2000
    opts = FitOptions(max_shift=0.004)
    t0 = time.perf_counter()
    fb = fit_patterns(y, s, q, "q_A^-1", wl, [win], opts, method="batch")
    tb = time.perf_counter() - t0
    t0 = time.perf_counter()
    fl = fit_patterns(y, s, q, "q_A^-1", wl, [win], opts, method="lmfit")
    tl = time.perf_counter() - t0
    worst = 0.0
    for key in ("center", "area", "fwhm", "eta"):
        z = np.abs(getattr(fb, key) - getattr(fl, key)) / getattr(fl, key + "_stderr")
        worst = max(worst, float(np.nanmax(z)))
    same = float(np.mean(np.abs(fb.chi2 - fl.chi2) < 1e-3 * np.maximum(fl.chi2, 1)))
    print(f"{'path':<22}{'patterns':>9}{'time (s)':>10}{'patterns/s':>12}")
    print(f"{'batch LM (numpy)':<22}{n:>9}{tb:>10.2f}{n / tb:>12.0f}")
    print(f"{'lmfit, per pattern':<22}{n:>9}{tl:>10.2f}{n / tl:>12.0f}")
    print(f"speed-up: {tl / tb:.1f}x; largest parameter difference: {worst:.3g} stderr; "
          f"same χ² minimum in {100 * same:.1f} % of patterns")


def confocal_tail() -> None:
    """The slow-convergence tail: the batch fit inside the `small` run's confocal build."""
    import tempfile

    import operando.xrd.peakfit as peakfit
    from operando.config import load_config
    from operando.simulate.beamtime import simulate_beamtime
    from pipelines.confocal import build_confocal

    calls: list[tuple[float, np.ndarray]] = []
    lm = peakfit.levenberg_marquardt

    def timed(*args, **kwargs):  # type: ignore[no-untyped-def]
        t0 = time.perf_counter()
        res = lm(*args, **kwargs)
        calls.append((time.perf_counter() - t0, res.n_iter))
        return res

    peakfit.levenberg_marquardt = timed
    try:
        with tempfile.TemporaryDirectory(prefix="bench_peaks_") as tmp:
            run = simulate_beamtime(tmp, "small", seed=0, streams=("xrd", "confocal"))
            cfg = load_config(run.run_config_path)
            t0 = time.perf_counter()
            build_confocal(cfg.confocal, peaks=cfg.peaks, run_name="bench")
            total = time.perf_counter() - t0
    finally:
        peakfit.levenberg_marquardt = lm
    it = np.concatenate([n for _, n in calls])
    lm_s = sum(t for t, _ in calls)
    print(f"confocal fit of the small run: {it.size} point fits in {len(calls)} blocks; "
          f"Levenberg-Marquardt {lm_s:.1f} s, build_confocal {total:.1f} s; iterations "
          f"median {np.median(it):.0f}, 99th percentile {np.percentile(it, 99):.0f}, "
          f"max {it.max()}")


if __name__ == "__main__":
    if "--confocal" in sys.argv[1:]:
        confocal_tail()
    else:
        main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
