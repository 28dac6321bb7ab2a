"""Speed and memory of the synthetic beamtime.

1. Frame rendering: ``FrameRenderer.render`` (per-pixel geometry precomputed
   once, one interpolation + Poisson draw per frame) against the obvious
   alternative, ``ai.calcfrom1d`` per frame followed by ``rng.poisson``, in the
   same process, on the same detector.
2. Whole presets: wall time per stream, bytes written, and the peak resident
   memory of a child process per preset (so presets do not share a peak).

Usage: python benchmarks/bench_simulate.py [--presets small lfp-1c] [--frames 20]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def bench_render(detector: str, n_frames: int) -> dict[str, float]:
    from operando.simulate.diffraction import (
        POLARIZATION_FACTOR,
        FrameRenderer,
        background_profile,
        make_integrator,
        pattern_1d,
    )

    ai = make_integrator(detector, 0.2066, 0.25)
    r = FrameRenderer(ai, flux_counts=2000.0, background_counts=20.0, n_dead=10, n_hot=5,
                      rng=np.random.default_rng(0))
    fr = [{"LiFePO4": 1 - f, "FePO4": f} for f in np.linspace(0, 1, n_frames)]
    rng = np.random.default_rng(1)
    r.render(fr[0], 0.05, monitor=1.0, rng=rng)  # warm-up (thread pool, caches)
    t0 = time.perf_counter()
    for f in fr:
        r.render(f, 0.05, monitor=1.0, rng=rng)
    fast = (time.perf_counter() - t0) / n_frames

    g = r.two_theta_grid_deg
    ai.calcfrom1d(g, np.ones_like(g), dim1_unit="2th_deg", correctSolidAngle=True,
                  polarization_factor=POLARIZATION_FACTOR)  # warm-up: pyFAI caches arrays
    t0 = time.perf_counter()
    for f in fr:
        prof = pattern_1d(g, f, 0.2066, 0.05, scale=2000.0) + background_profile(g, 20.0)
        img = ai.calcfrom1d(g, prof, dim1_unit="2th_deg", correctSolidAngle=True,
                            polarization_factor=POLARIZATION_FACTOR)
        rng.poisson(np.clip(img, 0, None)).astype(np.uint32)
    slow = (time.perf_counter() - t0) / n_frames
    return {"pixels": float(np.prod(r.shape)), "fast_ms": fast * 1e3, "slow_ms": slow * 1e3}


def run_preset(preset: str) -> dict:
    """Child-process body: simulate one preset, report per-stream times and peak RSS."""
    from operando.simulate.beamtime import simulate_beamtime

    marks: list[tuple[str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        res = simulate_beamtime(Path(tmp) / preset, preset, seed=0,
                                progress=lambda s: marks.append((s, time.perf_counter())))
        t_end = time.perf_counter()
        sizes: dict[str, int] = {}
        for stream, files in res.files.items():
            total = 0
            for rel in files.values():
                total += (res.outdir / rel).stat().st_size
            if stream == "confocal":  # LIMA frame files sit beside the master
                total += sum(p.stat().st_size for p in (res.outdir / "confocal").rglob("*.h5")
                             if p.name != "confocal.h5")
            sizes[stream] = total
    names = [m[0] for m in marks]
    times = [m[1] for m in marks] + [t_end]
    per = {n: times[i + 1] - times[i] for i, n in enumerate(names)}
    per["triggers"] = per.pop("trigger record", 0.0)
    return {"total_s": t_end - t0, "per_stream_s": per, "bytes": sizes,
            "max_rss_MB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", nargs="+", default=["small", "lfp-1c"])
    ap.add_argument("--frames", type=int, default=20)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(run_preset(args.child)))
        return

    print("\n## Frame rendering (per frame, same process)\n")
    print("| detector | pixels | FrameRenderer.render (ms) | calcfrom1d + poisson (ms) | ratio |")
    print("|---|---|---|---|---|")
    for det in ("Pilatus100k", "Eiger1M"):
        b = bench_render(det, args.frames)
        print(f"| {det} | {b['pixels'] / 1e6:.2f} M | {b['fast_ms']:.1f} | {b['slow_ms']:.1f} | "
              f"{b['slow_ms'] / b['fast_ms']:.1f}x |")

    print("\n## Whole presets (one child process each)\n")
    print("| preset | echem (s) | xrd (s) | xanes (s) | confocal (s) | kinetics (s) | total (s) "
          "| written (MB) | peak RSS (MB) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for preset in args.presets:
        proc = subprocess.run([sys.executable, __file__, "--child", preset],
                              capture_output=True, text=True, check=True)
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        p = r["per_stream_s"]
        cells = [f"{p.get(k, float('nan')):.1f}" for k in
                 ("electrochemistry", "xrd", "xanes", "confocal", "kinetics")]
        print(f"| {preset} | " + " | ".join(cells) + f" | {r['total_s']:.1f} | "
              f"{sum(r['bytes'].values()) / 1e6:.0f} | {r['max_rss_MB']:.0f} |")


if __name__ == "__main__":
    main()
