"""XANES reduction: normalisation, alignment, batched LCF, diagnostics, product, CLI.

Checked against the simulator's truth, real Fe data (../shared/data) and xraylarch
(skipped cleanly when absent)."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from operando.io.xas.hdf5 import XasScanFileError, read_xas_channels
from operando.io.xas.text import read_xas_text, select_column
from operando.xanes.align import energy_shift
from operando.xanes.diagnostics import isosbestic_points
from operando.xanes.lcf import lcf, lcf_combinations
from operando.xanes.normalize import QC_NONFINITE, QC_SATURATED, QC_ZERO, find_e0, normalize
from operando.xanes.series import XanesOptions, counts_to_mu, reduce_scans


def _library(shared_data: Path):
    lib = read_xas_text(shared_data / "xanes" / "FeLibNov2021.nor")
    return lib.energy, lib


def _crossings(e: np.ndarray, d: np.ndarray) -> np.ndarray:
    j = np.flatnonzero(np.sign(d[:-1]) * np.sign(d[1:]) < 0)
    return e[j] - d[j] * (e[j + 1] - e[j]) / (d[j + 1] - d[j])


def _clock(truth: dict):
    from operando.echem.sync import ClockModel

    c = truth["clock"]
    return ClockModel(method="truth", offset_s=c["offset_s"], drift_ppm=c["drift_ppm"],
                      reference_epoch_s=c["acquisition_start_epoch_s"])


def _echem(cfg):
    from pipelines.echem import read_echem_section

    return read_echem_section(cfg.echem)


# ------------------------------------------------------------------ simulated runs


@pytest.fixture(scope="module")
def small_product(small_run):
    from operando.config import load_config
    from pipelines.xanes import build_xanes

    if not small_run.truth.get("uses_shared_data"):
        pytest.skip("the simulated run uses the analytic standards (no ../shared/data)")
    cfg = load_config(small_run.run_config_path)
    sp = build_xanes(cfg.xanes, echem=_echem(cfg), clock=_clock(small_run.truth))
    return small_run, sp


def test_small_run_fraction_offset_isosbestic(small_product, shared_data):
    run, sp = small_product
    ds = sp.dataset
    truth = run.truth["xanes"]
    f = ds["fraction"].sel(component="FePO4").values
    ft = np.asarray(truth["fraction"]["FePO4"])
    assert f.shape == ft.shape
    rms = float(np.sqrt(np.mean((f - ft) ** 2)))
    assert rms <= 0.01, rms
    # weights sum to one, errors positive and small
    assert np.allclose(ds["fraction"].sum("component"), 1.0, atol=1e-9)
    assert np.all(ds["fraction_stderr"].values > 0)
    # monochromator offset from the foil alignment
    assert abs(ds.attrs["monochromator_offset_eV"] - truth["energy_offset_eV"]) <= 0.2
    # isosbestic points: where the two end members cross (on the calibrated axis)
    e, lib = _library(shared_data)
    expected = _crossings(e, lib.column("Fe(III)PO4") - lib.column("LiFe(II)PO4"))
    expected = expected[(expected > 7125) & (expected < 7160)]
    assert expected.size == 2  # ≈ 7129.8 and 7157.2 eV
    found = ds["isosbestic_energy"].values
    for x in expected:
        assert np.min(np.abs(found - x)) <= 1.5, (x, found)
    # the lag of the small preset (120 s) within one scan interval
    interval = np.median(np.diff(truth["time_start_s"]))
    assert abs(ds.attrs["faraday_lag_s"] - truth["lag_s"]) <= interval
    assert 0 < ds.attrs["faraday_lag_stderr_s"] < interval
    assert abs(ds.attrs["faraday_slope"] - 1.0) < 0.02


def test_small_run_product_contract(small_product, tmp_path):
    from operando.io.products import missing_cf_attrs, write_product

    run, sp = small_product
    ds = sp.dataset
    assert ds["mu_norm"].dims == ("scan", "energy")
    assert ds["fraction"].dims == ("scan", "component")
    assert ds["time"].dims == ("scan",) and ds["time"].attrs["clock"] == "potentiostat"
    assert ds["time_utc"].dims == ("scan",) and ds["time_utc"].dtype.kind == "M"
    # time_utc is the scan midpoint on the beamline clock, onto which the clock maps time
    from operando.echem.sync import ClockModel

    clock = ClockModel.from_attrs(sp.attrs)
    utc_s = ds["time_utc"].values.astype("datetime64[ns]").astype(np.int64) * 1e-9
    np.testing.assert_allclose(utc_s, clock.to_beamline(ds["time"].values), atol=1e-5)
    for name in ("time_start", "time_end", "voltage_V", "current_A", "charge_C", "x_li",
                 "faraday_fraction", "segment", "cycle", "e0", "energy_shift", "r_factor",
                 "redchi", "qc_flag", "qc_reason", "isosbestic_energy"):
        assert name in ds.variables, name
    assert not missing_cf_attrs(ds)
    assert "clock_offset_s" in sp.attrs
    assert "xanes.png" in sp.figures
    assert any(p.suffix == ".h5" for p in sp.inputs) and any(p.suffix == ".xdi"
                                                             for p in sp.inputs)
    # scan windows on the potentiostat clock match the truth
    assert np.allclose(ds["time_start"].values, run.truth["xanes"]["time_start_s"], atol=0.05)
    out = write_product(ds, tmp_path / "xanes.nc", product="xanes", inputs=sp.inputs,
                        extra_attrs=sp.attrs)
    assert out.is_file()


def test_lfp10c_lag(tmp_path, shared_data):
    """lfp-10c: XANES lag 20 s recovered within one scan interval (echem + xanes only)."""
    from operando.config import load_config
    from operando.simulate.beamtime import simulate_beamtime
    from pipelines.xanes import build_xanes

    run = simulate_beamtime(tmp_path / "run", "lfp-10c", seed=1, streams=("xanes",))
    cfg = load_config(run.run_config_path)
    sp = build_xanes(cfg.xanes, echem=_echem(cfg), clock=_clock(run.truth))
    truth = run.truth["xanes"]
    ds = sp.dataset
    interval = float(np.median(np.diff(truth["time_start_s"])))
    lag, err = ds.attrs["faraday_lag_s"], ds.attrs["faraday_lag_stderr_s"]
    assert abs(lag - truth["lag_s"]) <= interval, (lag, err)
    assert abs(lag - truth["lag_s"]) <= 3 * err
    f = ds["fraction"].sel(component="FePO4").values
    rms_edge = np.sqrt(np.mean((f - np.asarray(truth["fraction_at_edge"]["FePO4"])) ** 2))
    assert rms_edge <= 0.02
    assert abs(ds.attrs["monochromator_offset_eV"] - truth["energy_offset_eV"]) <= 0.2


# ------------------------------------------------------------------ real data, Larch


def test_fe_foil_alignment(shared_data):
    fe = read_xas_text(shared_data / "xanes" / "fe.060")
    ref = read_xas_text(shared_data / "xanes" / "fe_metal_rt.xdi")
    mu = np.log(fe.column("I0") / fe.column("It"))
    shift = energy_shift(fe.energy, mu, ref.energy, ref.column("mutrans"))
    de0 = find_e0(ref.energy, ref.column("mutrans")) - find_e0(fe.energy, mu)
    assert 4.5 < shift < 7.5
    assert abs(shift - de0) <= 0.3, (shift, de0)
    assert find_e0(ref.energy, ref.column("mutrans")) == pytest.approx(7111.0, abs=0.3)


def test_normalize_matches_larch(shared_data):
    pytest.importorskip("larch")
    from larch import Group
    from larch.xafs import pre_edge

    fe = read_xas_text(shared_data / "xanes" / "fe.060")
    ref = read_xas_text(shared_data / "xanes" / "fe_metal_rt.xdi")
    cases = [(fe.energy, np.log(fe.column("I0") / fe.column("It"))),
             (ref.energy, ref.column("mutrans"))]
    for e, mu in cases:
        g = Group(energy=e, mu=mu)
        pre_edge(g)
        r = normalize(e, mu)
        assert abs(r.e0[0] - g.e0) <= 0.005
        assert abs(r.edge_step[0] - g.edge_step) <= 0.005
        assert np.nanmax(np.abs(r.flat[0] - g.flat)) < 1e-6
        # a short pre-edge range (3 eV, few points) still works, as in Larch
        g2 = Group(energy=e, mu=mu)
        pre_edge(g2, pre1=-20, pre2=-17, nnorm=1)
        r2 = normalize(e, mu, pre1=-20, pre2=-17, nnorm=1)
        assert r2.ok[0] and abs(r2.edge_step[0] - g2.edge_step) <= 0.005


def test_lcf_matches_larch(shared_data):
    pytest.importorskip("larch")
    from larch import Group
    from larch.math import lincombo_fit

    e, lib = _library(shared_data)
    names = ["LiFe(II)PO4", "Fe(III)PO4", "Magnetite", "Goethite"]
    comps = {n: (e, lib.column(n)) for n in names}
    rng = np.random.default_rng(3)
    # interior solutions: with a weight at its bound Larch's lmfit expression for the last
    # weight can break the sum (seen: weights summing to 1.009), so compare where it is exact
    truth = np.array([[0.3, 0.5, 0.1, 0.1], [0.1, 0.2, 0.4, 0.3], [0.6, 0.2, 0.1, 0.1]])
    Y = truth @ np.array([lib.column(n) for n in names]) + rng.normal(0, 0.005, (3, e.size))
    res = lcf(e, Y, comps, emin=7100.0, emax=7180.0)
    groups = [Group(energy=e, norm=lib.column(n), filename=n) for n in names]
    for i in range(Y.shape[0]):
        out = lincombo_fit(Group(energy=e, norm=Y[i]), groups, minvals=[0] * 4,
                           xmin=7100.0, xmax=7180.0)
        w = np.array([out.weights[n] for n in names])
        assert np.max(np.abs(w - res.weights[i])) <= 0.005, (w, res.weights[i])
        assert abs(out.rfactor - res.r_factor[i]) <= 0.005
    assert np.max(np.abs(res.weights - truth)) < 0.05


def test_lcf_constraints_and_combinations(shared_data):
    e, lib = _library(shared_data)
    a, b, c = (lib.column(n) for n in ("LiFe(II)PO4", "Fe(III)PO4", "Hematite_NP"))
    Y = np.vstack([0.25 * a + 0.75 * b, 1.2 * (0.5 * a + 0.5 * b), a])
    std = {"LFP": (e, a), "FP": (e, b), "Hem": (e, c)}
    r = lcf(e, Y, std, emin=7100, emax=7180)
    assert np.all(r.weights >= 0) and np.allclose(r.weights.sum(axis=1), 1)
    assert np.allclose(r.weights[0], [0.25, 0.75, 0], atol=1e-6)
    free = lcf(e, Y, std, emin=7100, emax=7180, sum_to_one=False)
    assert np.allclose(free.weights[1], [0.6, 0.6, 0.0], atol=1e-6)
    cb = lcf_combinations(e, Y, std, max_components=2, emin=7100, emax=7180)
    assert len(cb.subsets) == 6  # 3 singles + 3 pairs
    assert set(cb.subsets[int(np.argmin(cb.rank[:, 0]))]) == {"LFP", "FP"}
    assert cb.subsets[int(np.argmin(cb.rank[:, 2]))] == ("LFP",)


def test_isosbestic_synthetic():
    e = np.linspace(7100, 7200, 501)
    lo = 0.5 + np.arctan((e - 7120) / 2) / np.pi
    hi = 0.5 + np.arctan((e - 7124) / 2) / np.pi + 0.3 * np.exp(-0.5 * ((e - 7150) / 5) ** 2)
    f = np.linspace(0, 1, 20)[:, None]
    Y = (1 - f) * lo + f * hi
    iso = isosbestic_points(e, Y, emin=7105, emax=7195, min_amplitude=0.02)
    truth = _crossings(e, hi - lo)  # 7137.2 and 7166.5 eV (the second one faint)
    assert np.min(np.abs(iso.energy - truth[0])) < 0.05
    for x in iso.energy:
        assert np.min(np.abs(truth - x)) < 0.05
    assert np.all(iso.mu_spread < 1e-9)


# ------------------------------------------------------------------ bad input


def test_qc_flags_bad_scans():
    e = np.linspace(7050, 7250, 300)
    good = 1.0 + 0.5 + np.arctan((e - 7120) / 2) / np.pi
    rng = np.random.default_rng(0)
    i0 = rng.poisson(1e6, e.size).astype(float)
    it = rng.poisson(i0 * np.exp(-good)).astype(float)
    it_nan = it.copy()
    it_nan[50] = np.nan
    it_sat = it.copy()
    it_sat[100:120] = it_sat.max() * 1.5  # a clipped counter sitting at its maximum
    scans = [(i0, it), (np.zeros(e.size), np.zeros(e.size)), (i0, it_nan), (i0, it_sat),
             (i0, it * 0 + 5e5)]
    mus = [counts_to_mu(a, b, None, None) for a, b in scans]
    assert mus[3][2] == QC_SATURATED
    ser = reduce_scans([e] * len(scans), [m[0] for m in mus], None, {},
                       XanesOptions(align_mode="none"), qc_flag=[m[2] for m in mus])
    assert ser.qc_flag[0] == 0
    assert ser.qc_flag[1] & QC_NONFINITE  # ln(0/0)
    assert ser.qc_flag[2] & QC_NONFINITE
    assert ser.qc_flag[3] & QC_SATURATED
    assert ser.qc_flag[4] != 0  # a channel stuck at one value reads as saturated
    assert all(ser.qc_reason[i] for i in range(1, 5))
    assert np.isnan(ser.e0[1:]).all() and np.isfinite(ser.e0[0])
    r = normalize(e, np.zeros((1, e.size)))
    assert r.qc_flag[0] & QC_ZERO and np.isnan(r.norm).all()


def test_missing_dataset_path_names_file_and_path(small_run):
    path = small_run.outdir / small_run.files["xanes"]["scans"]
    with pytest.raises(XasScanFileError) as err:
        read_xas_channels(path, it_path="measurement/It_missing")
    msg = str(err.value)
    assert str(path) in msg and "measurement/It_missing" in msg and "it_path" in msg
    assert "It" in msg  # what was found


def test_wrong_shape_dataset(tmp_path):
    p = tmp_path / "bad.h5"
    with h5py.File(p, "w") as f:
        g = f.create_group("1.1")
        g["measurement/energy"] = np.arange(10.0)
        g["measurement/I0"] = np.ones((2, 5))
        g["start_time"] = "2026-01-01T00:00:00+00:00"
        g["end_time"] = "2026-01-01T00:00:30+00:00"
    with pytest.raises(XasScanFileError, match=r"/1\.1/measurement/I0.*1-D.*\(2, 5\)"):
        read_xas_channels(p, it_path=None, iref_path=None)


# ------------------------------------------------------------------ CLI


def test_cli_lcf(shared_data):
    from typer.testing import CliRunner

    from operando.cli import app

    lib = shared_data / "xanes" / "FeLibNov2021.nor"
    runner = CliRunner()
    res = runner.invoke(app, ["lcf", f"{lib}:Magnetite", "--standards", f"{lib}:Magnetite",
                              "--standards", f"{lib}:Fe(III)PO4", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    w = out["fits"][0]["weights"]
    assert w["Magnetite"] == pytest.approx(1.0, abs=1e-6)
    bad = runner.invoke(app, ["lcf", f"{lib}:NoSuchColumn", "--standards", f"{lib}:2"])
    assert bad.exit_code != 0
    assert "NoSuchColumn" in bad.output and "Traceback" not in bad.output
    assert select_column(f"{lib}:Magnetite").name == "Magnetite"


def test_step_corrected_free_weights_keep_scale():
    from operando.xanes.series import step_corrected

    w = np.array([[0.33, 0.72]])
    cov = np.full((1, 2, 2), 1e-4)
    s = np.array([1.1, 0.9])
    free, cfree = step_corrected(w, cov, s, sum_to_one=False)
    assert np.allclose(free, w / s)  # given standard = re-normalised one × s_j
    assert np.allclose(cfree[0], 1e-4 / np.outer(s, s))
    tied, _ = step_corrected(w, cov, s)
    assert np.allclose(tied.sum(axis=1), 1.0)


def test_compare_faraday_negative_lag_at_record_end():
    import xarray as xr

    from operando.xanes.diagnostics import compare_faraday

    t = np.linspace(0.0, 3600.0, 3601)
    frac = np.clip((t - 600.0) / 2400.0, 0, 1)
    echem = xr.Dataset({"faraday_fraction": ("echem_time", frac)},
                       coords={"time_s": ("echem_time", t)})
    t0 = np.arange(0.0, 3570.0, 30.0)
    t1 = t0 + 30.0  # the last scan ends where the echem record ends
    lag_true = -90.0  # XANES leads the charge
    f = np.interp(0.5 * (t0 + t1) - lag_true, t, frac)
    cmp = compare_faraday(f, echem, t0, t1, max_lag_s=300.0, lag_step_s=3.0)
    assert abs(cmp.lag_s - lag_true) <= 3.0, cmp.lag_s
