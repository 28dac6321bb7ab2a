"""Randles–Sevcik kinetics: CV ingest, peaks, linear range, D (cells and maps) vs truth."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from operando.cli import app
from operando.config import load_config
from operando.io.cv.read import read_cv
from operando.io.products import write_product
from operando.kinetics.analysis import (
    KineticsInputError,
    KineticsOptions,
    analyse_cells,
    analyse_map,
)
from operando.kinetics.cv import ScanRateError, label_sweeps
from operando.kinetics.cv_peaks import PeakOptions
from operando.kinetics.randles_sevcik import diffusion_from_slope, randles_sevcik_current_A
from operando.simulate.clock import make_clock
from operando.simulate.context import SimContext
from operando.simulate.cv import simulate_cv, simulate_kinetics
from operando.simulate.echem import simulate_echem
from operando.simulate.presets import get_preset


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("kin")
    p = get_preset("small")
    ctx = SimContext(outdir=out, preset=p, echem=simulate_echem(p.echem),
                     clock=make_clock(p.echem, p.clock), seed=3)
    res = simulate_kinetics(ctx)
    cv_files = [out / res.files[f"cv_{i}"] for i in range(len(res.truth["scan_rates_V_s"]))]
    return out, res, cv_files


def _opts(t: dict, **kw: object) -> KineticsOptions:
    return KineticsOptions(n_electrons=t["n_electrons"],
                           concentration_mol_cm3=t["concentration_mol_cm3"],
                           temperature_K=t["temperature_K"], **kw)  # type: ignore[arg-type]


def test_randles_sevcik_round_trip() -> None:
    v = np.array([1e-4, 1e-3])
    ip = randles_sevcik_current_A(2.5e-11, v, n_electrons=1, area_cm2=0.03,
                                  concentration_mol_cm3=0.02, temperature_K=298.15)
    slope = ip[1] / math.sqrt(v[1])
    d, _ = diffusion_from_slope(slope, n_electrons=1, area_cm2=0.03,
                                concentration_mol_cm3=0.02, temperature_K=298.15)
    assert float(d) == pytest.approx(2.5e-11, rel=1e-12)
    with pytest.raises(ValueError, match=r"kinetics\.area_cm2"):
        diffusion_from_slope(slope, n_electrons=1, area_cm2=0.0, concentration_mol_cm3=0.02,
                             temperature_K=298.15)


def test_read_nova_rates_from_name_and_dEdt(sim) -> None:
    _, res, files = sim
    cvs = label_sweeps(read_cv(files))
    rates = [c.attrs["scan_rate_V_s"] for c in cvs]
    assert rates == pytest.approx(res.truth["scan_rates_V_s"])
    for c in cvs:
        assert c.attrs["scan_rate_source"] == "file name"
        assert c.attrs["scan_rate_dEdt_V_s"] == pytest.approx(c.attrs["scan_rate_V_s"], rel=1e-3)
        assert set(np.unique(c["direction"].values)) == {-1, 1}
        for var in c.variables.values():
            assert "units" in var.attrs and "long_name" in var.attrs


def test_cells_D_and_linear_range_vs_truth(sim) -> None:
    _, res, files = sim
    t = res.truth
    ds = analyse_cells(label_sweeps(read_cv(files)), t["area_cm2"], _opts(t))
    assert float(ds["cell_diffusion_cm2_s"]) == pytest.approx(t["D_cm2_s"], rel=0.03)
    assert float(ds["cell_max_linear_scan_rate_V_s"]) == pytest.approx(
        t["max_linear_scan_rate_V_s"])
    # the peaks themselves agree with the noise-free simulation
    assert ds["anodic_peak_current_A"].values == pytest.approx(
        np.asarray(t["peak_current_A"]), rel=0.01)
    assert ds["anodic_peak_potential_V"].values == pytest.approx(
        np.asarray(t["anodic_peak_potential_V"]), abs=2e-3)
    # D error bar is honest: within 4 sigma of the truth-derived D from the fit
    err = float(ds["cell_diffusion_stderr_cm2_s"])
    assert 0 < err < 0.02 * t["D_cm2_s"]
    assert bool(ds["cell_randles_sevcik_applies"]) and ds.attrs["reasons"] == []
    assert float(ds["cell_r2"]) > 0.999
    # ΔEp near the reversible 57-59 mV at the slowest rate
    assert float(ds["delta_ep_V"][0]) == pytest.approx(0.0585, abs=2e-3)


def test_map_D_domains_and_range(sim) -> None:
    out, res, _ = sim
    t = res.truth
    ds = analyse_map(label_sweeps(read_cv(out / res.files["map"])), _opts(t))
    d_true = np.asarray(t["map_D_cm2_s"])
    rel = ds["diffusion_cm2_s"].values / d_true - 1
    assert np.abs(rel).max() < 0.03
    assert bool(ds["fit_ok"].values.all())
    vmax = ds["max_linear_scan_rate_V_s"].values
    assert np.mean(np.isclose(vmax, t["map_max_linear_scan_rate_V_s"])) >= 0.97
    inside = d_true == t["map_domains"]["D_inside_cm2_s"]
    d = ds["diffusion_cm2_s"].values
    assert d[~inside].max() < d[inside].min()  # the two domains separate cleanly
    from operando.io.products import missing_cf_attrs

    assert not missing_cf_attrs(ds)


def test_real_biologic_mpt_and_mpr_same_peaks(shared_data: Path) -> None:
    mpt, mpr = (label_sweeps(read_cv(shared_data / "echem" / f"cv.{s}"))[0] for s in ("mpt", "mpr"))
    assert mpt.attrs["scan_rate_source"] == "header 'dE/dt'"
    assert mpt.attrs["scan_rate_V_s"] == pytest.approx(1e-4)
    assert mpr.attrs["scan_rate_V_s"] == pytest.approx(1e-4, rel=1e-3)  # from dE/dt
    from operando.kinetics.analysis import _sweeps, analyse_sweeps

    for cycle, expect_peak in ((1, False), (2, True)):
        got = []
        for cv in (mpt, mpr):
            a, c = _sweeps(cv, cycle)
            got.append(analyse_sweeps([a], [c], np.array([1e-4]), 0.001,
                                      KineticsOptions(cycle=cycle)))
        for key in ("anodic_peak_current_A", "anodic_peak_potential_V", "anodic_reason"):
            np.testing.assert_allclose(got[0][key], got[1][key], rtol=1e-5, equal_nan=True)
        assert bool(np.isfinite(got[0]["anodic_peak_current_A"]).all()) == expect_peak
    # cycle 2: an anodic peak near 2.91 V, ~33 uA
    assert float(got[0]["anodic_peak_potential_V"][0, 0]) == pytest.approx(2.913, abs=0.01)


# ------------------------------------------------------------------- bad input


def test_single_scan_rate_is_a_clear_error(sim) -> None:
    _, res, files = sim
    with pytest.raises(KineticsInputError, match=r"cv_0p1mVs\.txt.*2 or more scan rates"):
        analyse_cells(label_sweeps(read_cv(files[3])), res.truth["area_cm2"], _opts(res.truth))


def test_scan_rate_disagreeing_with_dEdt(sim, tmp_path: Path) -> None:
    _, _, files = sim
    bad = tmp_path / "cv_0p3mVs.txt"  # the 0.1 mV/s file, renamed
    shutil.copy(files[3], bad)
    with pytest.raises(ScanRateError, match=r"cv_0p3mVs\.txt.*disagrees with dE/dt"):
        label_sweeps(read_cv([files[0], bad]))
    with pytest.raises(ScanRateError, match="repeats"):
        label_sweeps(read_cv([files[3], files[3]]))


def test_no_peak_in_window_and_bad_area(sim) -> None:
    _, res, files = sim
    t = res.truth
    cvs = label_sweeps(read_cv(files[:4]))
    ds = analyse_cells(cvs, t["area_cm2"], _opts(t, anodic_window_V=(3.0, 3.3)))
    assert not bool(ds["cell_randles_sevcik_applies"])
    assert np.isnan(float(ds["cell_diffusion_cm2_s"]))
    assert any("cv_0p01mVs.txt" in r and "kinetics.anodic_window_V" in r
               for r in ds.attrs["reasons"])
    for area in (0.0, -1.0):
        with pytest.raises(ValueError, match=r"kinetics\.area_cm2"):
            analyse_cells(cvs, area, _opts(t))


def test_irreversible_couple_is_flagged(tmp_path: Path) -> None:
    """Slow kinetics (Λ ≪ 1): the peak drifts ~60 mV/decade; RS must say it does not apply.
    Also exercises the CSV reader (mA column, scan-rate column)."""
    rates = (0.01, 0.02, 0.05)
    rows = ["time/s,Ewe/V,<I>/mA,scan_rate_mV_s"]
    for v in rates:
        cv = simulate_cv(D_cm2_s=1e-9, scan_rate_V_s=v, n_electrons=1, area_cm2=0.01,
                         concentration_mol_cm3=1e-5, temperature_K=298.15, e0_V=0.5,
                         k0_cm_s=1e-5, half_width_V=0.6, sample_step_V=2e-3, substeps=2)
        rows += [f"{a:.6f},{b:.6f},{c * 1e3:.6e},{v * 1e3:g}"
                 for a, b, c in zip(cv.time_s, cv.potential_V, cv.current_A, strict=True)]
    path = tmp_path / "irrev.csv"
    path.write_text("\n".join(rows) + "\n")
    cvs = label_sweeps(read_cv(path))
    assert [c.attrs["scan_rate_V_s"] for c in cvs] == pytest.approx(list(rates))
    ds = analyse_cells(cvs, 0.01, KineticsOptions(concentration_mol_cm3=1e-5))
    assert int(ds["cell_flags"]) & 4
    assert not bool(ds["cell_randles_sevcik_applies"])
    assert float(ds["cell_peak_shift_V_per_decade"]) > 0.03
    assert any("not reversible" in r for r in ds.attrs["reasons"])


def test_peak_options_validate() -> None:
    with pytest.raises(ValueError, match=r"kinetics\.background"):
        PeakOptions(background="spline")


# ------------------------------------------------------------ pipeline and CLI


def test_build_kinetics_product_and_config(sim, tmp_path: Path) -> None:
    from pipelines.kinetics import build_kinetics

    out, res, files = sim
    t = res.truth
    cfg_dict = {
        "run": {"name": "kin"}, "output": {"directory": str(tmp_path / "reduced")},
        "kinetics": {"cv_files": [str(f) for f in files], "map_file": str(out / res.files["map"]),
                     "area_cm2": t["area_cm2"], "concentration_mol_cm3": t["concentration_mol_cm3"],
                     "cycle": 1, "background": "linear"},
    }
    cfg_path = tmp_path / "run.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg_dict))
    cfg = load_config(cfg_path)
    calls = []
    prod = build_kinetics(cfg.kinetics, progress=lambda s, d, n: calls.append((s, d, n)))
    assert calls[-1] == ("kinetics", 2, 2)
    assert set(prod.figures) == {"kinetics_ip.png", "kinetics_map.png"}
    ds = prod.dataset
    assert ds["diffusion_cm2_s"].dims == ("y", "x")
    assert ds["anodic_peak_current_A"].dims == ("scan_rate",)
    assert float(ds["cell_diffusion_cm2_s"]) == pytest.approx(t["D_cm2_s"], rel=0.03)
    from operando.io.products import missing_cf_attrs

    assert not missing_cf_attrs(ds)
    path = write_product(ds, tmp_path / "kinetics.nc", product="kinetics", inputs=prod.inputs,
                         extra_attrs=prod.attrs)
    assert path.is_file()
    bad = dict(cfg_dict["kinetics"], cycle=0)
    cfg_path.write_text(yaml.safe_dump({**cfg_dict, "kinetics": bad}))
    with pytest.raises(Exception, match="cycle"):
        load_config(cfg_path)


def test_cli_kinetics_json_and_errors(sim) -> None:
    _, res, files = sim
    runner = CliRunner()
    args = ["kinetics", *map(str, files), "--area-cm2", "0.0314", "--conc-mol-cm3", "0.0228"]
    r = runner.invoke(app, [*args, "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["diffusion_cm2_s"] == pytest.approx(res.truth["D_cm2_s"], rel=0.03)
    assert data["max_linear_scan_rate_V_s"] == pytest.approx(2e-4)
    assert len(data["scan_rates"]) == 10
    r = runner.invoke(app, ["kinetics", str(files[0]), "--area-cm2", "0.0314",
                            "--conc-mol-cm3", "0.0228"])
    assert r.exit_code == 1 and "2 or more scan rates" in r.output
    assert "Traceback" not in r.output
    r = runner.invoke(app, [*args[:-4], "--area-cm2", "0", "--conc-mol-cm3", "0.0228"])
    assert r.exit_code == 1 and "--area-cm2" in r.output
