"""Benchmark: Randles–Sevcik D map of a 64 × 64 × 5 SECCM map, vectorised vs a per-pixel
loop of the single-CV analysis (the same core called with one CV at a time).

Run: ``python benchmarks/bench_kinetics.py`` (prints a table; seconds, D differences).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from operando.io.cv.read import read_cv
from operando.kinetics.analysis import KineticsOptions, _sweeps, analyse_map, analyse_sweeps
from operando.kinetics.cv import label_sweeps
from operando.simulate.clock import make_clock
from operando.simulate.context import SimContext
from operando.simulate.cv import simulate_kinetics
from operando.simulate.echem import simulate_echem
from operando.simulate.presets import get_preset


def main() -> None:
    preset = get_preset("small").with_overrides(
        {"kinetics": {"map_shape": (64, 64), "scan_rates_V_s": (1e-4, 1e-3)}})
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        ctx = SimContext(outdir=out, preset=preset, echem=simulate_echem(preset.echem),
                         clock=make_clock(preset.echem, preset.clock), seed=0)
        t0 = time.perf_counter()
        res = simulate_kinetics(ctx)
        t_sim = time.perf_counter() - t0
        t0 = time.perf_counter()
        cvs = label_sweeps(read_cv(out / res.files["map"]))
        t_read = time.perf_counter() - t0
    truth = res.truth
    opts = KineticsOptions(n_electrons=truth["n_electrons"],
                           concentration_mol_cm3=truth["concentration_mol_cm3"],
                           temperature_K=truth["temperature_K"])
    t0 = time.perf_counter()
    ds = analyse_map(cvs, opts)
    t_vec = time.perf_counter() - t0
    d_vec = ds["diffusion_cm2_s"].values

    rates = np.asarray([c.attrs["scan_rate_V_s"] for c in cvs])
    area = float(cvs[0].attrs["pixel_area_cm2"])
    ny, nx = d_vec.shape
    t0 = time.perf_counter()
    sweeps = [_sweeps(c, opts.cycle) for c in cvs]  # (B, n) per rate; sliced per pixel below
    d_loop = np.empty(ny * nx)
    for p in range(ny * nx):
        an = [(s[0][0][p:p + 1], s[0][1][p:p + 1]) for s in sweeps]
        ca = [(s[1][0][p:p + 1], s[1][1][p:p + 1]) for s in sweeps]
        d_loop[p] = analyse_sweeps(an, ca, rates, area, opts)["diffusion_cm2_s"][0]
    t_loop = time.perf_counter() - t0
    d_loop = d_loop.reshape(ny, nx)
    d_true = np.asarray(truth["map_D_cm2_s"])
    rel = d_vec / d_true - 1
    inside = d_true == truth["map_domains"]["D_inside_cm2_s"]
    rows = [
        ("map", f"{ny}x{nx} px x {rates.size} rates x {cvs[0].sizes['sample']} samples"),
        ("simulate (s)", f"{t_sim:.2f}"),
        ("read_cv + label_sweeps (s)", f"{t_read:.2f}"),
        ("vectorised analyse_map (s)", f"{t_vec:.3f}"),
        ("per-pixel loop (s)", f"{t_loop:.2f}"),
        ("speed-up", f"{t_loop / t_vec:.1f}x"),
        ("max |D_vec - D_loop| / D", f"{np.nanmax(np.abs(d_vec - d_loop) / d_loop):.2e}"),
        ("max |D - D_true| / D_true", f"{np.nanmax(np.abs(rel)):.4f}"),
        ("mean D error, grain (D_high)", f"{rel[inside].mean():+.4f}"),
        ("mean D error, matrix (D_low)", f"{rel[~inside].mean():+.4f}"),
        ("pixels passing fit-quality mask", f"{int(ds['fit_ok'].sum())}/{ds['fit_ok'].size}"),
        ("pixels with linear range to v_max",
         f"{int(np.isclose(ds['max_linear_scan_rate_V_s'].values, rates.max()).sum())}"),
    ]
    width = max(len(k) for k, _ in rows)
    print(f"{'quantity':<{width}}  value")
    print("-" * (width + 40))
    for k, v in rows:
        print(f"{k:<{width}}  {v}")


if __name__ == "__main__":
    main()
