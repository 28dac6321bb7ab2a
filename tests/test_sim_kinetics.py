"""Synthetic CV / SECCM stream: Randles–Sevcik truth, file layouts, determinism."""

from __future__ import annotations

import json
import math
from pathlib import Path

import h5py
import numpy as np
import pytest

from operando.io.cv.nova import NOVA_COLUMNS, nova_filename, read_nova_cv, scan_rate_from_filename
from operando.io.cv.seccm import read_seccm_map
from operando.simulate.clock import make_clock
from operando.simulate.context import SimContext, StreamResult
from operando.simulate.cv import (
    RANDLES_SEVCIK_PSI_P,
    f_per_V,
    randles_sevcik_current_A,
    simulate_cv,
    simulate_kinetics,
    solve_dimensionless_cv,
)
from operando.simulate.echem import simulate_echem
from operando.simulate.presets import FARADAY_C_PER_MOL, Preset, get_preset

# a cheap variant for determinism / error tests
TINY = {"kinetics": {"scan_rates_V_s": (1e-4, 1e-3), "map_shape": (3, 4),
                     "map_scan_rates_V_s": (1e-4,)}}


def _ctx(outdir: Path, preset: Preset, seed: int = 0) -> SimContext:
    return SimContext(outdir=outdir, preset=preset, echem=simulate_echem(preset.echem),
                      clock=make_clock(preset.echem, preset.clock), seed=seed)


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, StreamResult]:
    out = tmp_path_factory.mktemp("kinetics")
    return out, simulate_kinetics(_ctx(out, get_preset("small")))


def _anodic_peak(e: np.ndarray, i: np.ndarray, half_window_V: float = 0.03) -> float:
    """Peak current of a noisy anodic sweep: quartic fit within ±30 mV of the smoothed max."""
    kernel = np.ones(9) / 9.0
    k = int(np.argmax(np.convolve(i, kernel, mode="same")))
    sel = np.abs(e - e[k]) <= half_window_V
    x = e[sel] - e[k]
    coef = np.polyfit(x, i[sel], 4)
    xf = np.linspace(x.min(), x.max(), 2001)
    return float(np.polyval(coef, xf).max())


def _rs_D(slope_A_per_sqrtV_s: float, n: int, area: float, conc: float, temp: float) -> float:
    """Invert i_p = 0.4463 nFAC √(f v D) for D given the slope of i_p vs √v."""
    f = f_per_V(n, temp)
    return (slope_A_per_sqrtV_s / (RANDLES_SEVCIK_PSI_P * n * FARADAY_C_PER_MOL * area * conc)) \
        ** 2 / f


# ------------------------------------------------------------------ dimensionless


def test_dimensionless_reversible_peak_and_separation() -> None:
    f = f_per_V(1, 298.15)
    sol = solve_dimensionless_cv(math.inf, 0.0, theta_start=-f * 0.4,
                                 theta_vertex=-f * 0.4 + 3200 * (f * 0.00025),
                                 d_theta=f * 0.00025)
    psi_a, th_a = sol.anodic_peak()
    psi_c, th_c = sol.cathodic_peak()
    assert psi_a == pytest.approx(0.4463, rel=5e-3)
    assert psi_a == pytest.approx(0.4463, rel=5e-4)  # in fact much better
    assert psi_c < 0
    d_ep_mV = (th_a - th_c) / f * 1e3
    assert d_ep_mV == pytest.approx(57.0, abs=1.0)


@pytest.mark.parametrize("n", [1, 2])
def test_peak_separation_reversible_low_rate(n: int) -> None:
    cv = simulate_cv(D_cm2_s=2.47e-11, scan_rate_V_s=1e-5, n_electrons=n, area_cm2=0.0314,
                     concentration_mol_cm3=0.0228, temperature_K=298.15, e0_V=3.43,
                     k0_cm_s=math.inf, R_u_ohm=0.0)
    d_ep_mV = (cv.peak_potential_V - cv.cathodic_peak_potential_V) * 1e3
    assert d_ep_mV == pytest.approx(57.0 / n, abs=1.0 / n)
    # E1/2 = E0 for equal D: the mid-peak potential sits on e0
    mid = 0.5 * (cv.peak_potential_V + cv.cathodic_peak_potential_V)
    assert mid == pytest.approx(3.43, abs=1e-3)
    ideal = randles_sevcik_current_A(n, 0.0314, 0.0228, 2.47e-11, 1e-5, 298.15)
    assert cv.peak_current_A == pytest.approx(ideal, rel=5e-3)


def test_kinetics_and_ohmic_drop_lower_the_peak() -> None:
    f = f_per_V(1, 298.15)
    kw = {"theta_start": -f * 0.4, "theta_vertex": f * 0.4, "d_theta": f * 0.8 / 1600}
    rev = solve_dimensionless_cv(math.inf, 0.0, **kw).anodic_peak()[0]
    quasi = solve_dimensionless_cv(1.0, 0.0, **kw).anodic_peak()[0]
    ohmic = solve_dimensionless_cv(math.inf, 1.0, **kw).anodic_peak()
    assert quasi < 0.95 * rev
    assert ohmic[0] < 0.99 * rev
    # the peak moves anodically with the iR drop
    assert ohmic[1] > solve_dimensionless_cv(math.inf, 0.0, **kw).anodic_peak()[1]
    # a very fast couple is reversible
    fast = solve_dimensionless_cv(1e4, 0.0, **kw).anodic_peak()[0]
    assert fast == pytest.approx(rev, rel=1e-3)


# -------------------------------------------------------------- cell CVs (NOVA)


def test_nova_files_layout(small_run: tuple[Path, StreamResult]) -> None:
    out, res = small_run
    truth = res.truth
    rates = truth["scan_rates_V_s"]
    roles = [f"cv_{i}" for i in range(len(rates))]
    assert set(res.files) == {*roles, "map"}
    assert rates == sorted(rates)
    e0 = truth["e0_V"]
    for role, v in zip(roles, rates, strict=True):
        path = out / res.files[role]
        assert path.name == nova_filename(v)
        assert scan_rate_from_filename(path) == pytest.approx(v)
        lines = path.read_text().splitlines()
        assert lines[0].split(";") == list(NOVA_COLUMNS)
        assert all(len(line.split(";")) == len(NOVA_COLUMNS) for line in lines[1:])
        d = read_nova_cv(path)
        e, t, i = d["Potential applied (V)"], d["Time (s)"], d["WE(1).Current (A)"]
        assert e[0] == pytest.approx(e0 - 0.4) and e[-1] == pytest.approx(e0 - 0.4)
        assert e.max() == pytest.approx(e0 + 0.4)
        assert np.argmax(e) == e.size // 2  # anodic first, one cycle
        assert np.all(np.diff(t) > 0) and t[0] == 0.0
        assert np.abs(np.diff(e) / np.diff(t)) == pytest.approx(v, rel=1e-6)
        assert np.array_equal(d["Index"], np.arange(1, e.size + 1))
        assert np.all(d["Scan"] == 1)
        assert np.all(d["Q+"] >= 0) and np.all(d["Q-"] <= 0)
        assert np.all(np.abs(i) <= d["Current range"])
        assert np.abs(d["WE(1).Potential (V)"] - e).max() < 2e-4
        assert not list(path.parent.glob("*.part"))
    json.dumps(truth)  # JSON-serialisable


def test_randles_sevcik_fit_recovers_D(small_run: tuple[Path, StreamResult]) -> None:
    out, res = small_run
    t = res.truth
    rates = np.asarray(t["scan_rates_V_s"])
    peaks = []
    for k in range(rates.size):
        d = read_nova_cv(out / res.files[f"cv_{k}"])
        e, i = d["Potential applied (V)"], d["WE(1).Current (A)"]
        half = int(np.argmax(e)) + 1
        peaks.append(_anodic_peak(e[:half], i[:half]))
    peaks_a = np.asarray(peaks)
    # the measured peaks agree with the noise-free truth
    assert peaks_a == pytest.approx(np.asarray(t["peak_current_A"]), rel=5e-3)
    lin = rates <= t["max_linear_scan_rate_V_s"] * (1 + 1e-9)
    s = np.sqrt(rates[lin])
    slope = float(np.sum(peaks_a[lin] * s) / np.sum(s * s))  # i_p = a √v through the origin
    d_fit = _rs_D(slope, t["n_electrons"], t["area_cm2"], t["concentration_mol_cm3"],
                  t["temperature_K"])
    assert d_fit == pytest.approx(t["D_cm2_s"], rel=0.02)
    # below v_max the couple is reversible (< 1 % off the ideal line) ...
    ideal = np.asarray(t["randles_sevcik_current_A"])
    dev_truth = np.asarray(t["peak_current_A"]) / ideal - 1.0
    assert np.all(np.abs(dev_truth[lin]) < 0.01)
    # ... above it i_p falls sub-linearly, ≥ 5 % below the √v line at the top rate
    assert np.all(np.diff(dev_truth) < 0)
    assert peaks_a[-1] <= 0.95 * ideal[-1]
    assert dev_truth[-1] <= -0.05
    assert peaks_a[-1] <= 0.955 * slope * math.sqrt(rates[-1])  # also below the fitted line
    assert t["R_u_ohm"] > 0 and t["alpha"] == 0.5
    f = f_per_V(t["n_electrons"], t["temperature_K"])
    lam_vmax = t["k0_cm_s"] / math.sqrt(t["D_cm2_s"] * f * t["max_linear_scan_rate_V_s"])
    assert lam_vmax == pytest.approx(15.0)


# ---------------------------------------------------------------------- the map


def test_seccm_map_layout_and_D(small_run: tuple[Path, StreamResult]) -> None:
    out, res = small_run
    t = res.truth
    path = out / res.files["map"]
    ny, nx = get_preset("small").kinetics.map_shape
    n_r = len(t["map_scan_rates_V_s"])
    with h5py.File(path, "r") as h5:
        assert h5["entry"].attrs["NX_class"] == "NXentry"
        g = h5["entry/map"]
        assert "NX_class" in g.attrs
        assert g["x_um"].shape == (nx,) and g["y_um"].shape == (ny,)
        assert g["scan_rate_V_s"].shape == (n_r,)
        n_s = g["time_s"].shape[1]
        assert g["time_s"].shape == (n_r, n_s)
        for name in ("potential_V", "current_A"):
            assert g[name].shape == (ny, nx, n_r, n_s)
            assert g[name].dtype == np.float32
            assert g[name].chunks == (1, nx, n_r, n_s)
        for ds in g.values():
            assert "units" in ds.attrs and "long_name" in ds.attrs
    m = read_seccm_map(path)
    rates = np.asarray(m["scan_rate_V_s"])
    assert np.all(rates <= t["map_max_linear_scan_rate_V_s"])
    assert m["pixel_area_cm2"] == t["map_area_cm2"]
    e = np.asarray(m["potential_V"], dtype=float)
    cur = np.asarray(m["current_A"], dtype=float)
    half = int(np.argmax(e[0, 0, 0])) + 1
    s = np.sqrt(rates)
    d_true = np.asarray(t["map_D_cm2_s"])
    assert d_true.shape == (ny, nx)
    assert set(np.unique(d_true)) == {t["map_domains"]["D_inside_cm2_s"],
                                      t["map_domains"]["D_outside_cm2_s"]}
    d_fit = np.empty((ny, nx))
    for iy in range(ny):
        for ix in range(nx):
            ip = np.array([_anodic_peak(e[iy, ix, r, :half], cur[iy, ix, r, :half])
                           for r in range(rates.size)])
            slope = float(np.sum(ip * s) / np.sum(s * s))
            d_fit[iy, ix] = _rs_D(slope, t["n_electrons"], t["map_area_cm2"],
                                  t["concentration_mol_cm3"], t["temperature_K"])
    rel = d_fit / d_true - 1.0
    assert np.abs(rel).max() < 0.03


def test_map_rates_must_be_linear(tmp_path: Path) -> None:
    p = get_preset("small").with_overrides(
        {"kinetics": {**TINY["kinetics"], "map_scan_rates_V_s": (1.0, 5.0)}})
    with pytest.raises(ValueError, match="map_scan_rates_V_s"):
        simulate_kinetics(_ctx(tmp_path, p))


# ------------------------------------------------------------------ determinism


def test_determinism(tmp_path: Path) -> None:
    p = get_preset("small").with_overrides(TINY)
    runs = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        res = simulate_kinetics(_ctx(tmp_path / name, p, seed))
        runs[name] = (
            (tmp_path / name / res.files["cv_1"]).read_bytes(),
            read_seccm_map(tmp_path / name / res.files["map"])["current_A"],
            res.truth,
        )
    assert runs["a"][0] == runs["b"][0]
    assert np.array_equal(runs["a"][1], runs["b"][1])
    assert runs["a"][2] == runs["b"][2]
    assert runs["a"][0] != runs["c"][0]
    assert not np.array_equal(runs["a"][1], runs["c"][1])
    assert runs["a"][2] == runs["c"][2]  # the truth does not depend on the noise
