"""H12 field files, CVs: NOVA exports as instruments write them (tab / ';' / ',' separators,
decimal commas, blank padding rows), a CV whose first sweep is partial, the kinetics options
on the command line (background, windows, sweep, iR, --force) and globs in cv_files.

Every file here is written by the test, in the layout the instrument writes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from operando.cli import app
from operando.io.cv.nova import read_nova_cv
from operando.io.cv.read import read_cv
from operando.io.errors import InputFileError
from operando.kinetics.analysis import KineticsOptions, analyse_cells
from operando.kinetics.cv import label_sweeps
from operando.kinetics.cv_peaks import PeakOptions
from operando.kinetics.randles_sevcik import randles_sevcik_current_A
from operando.simulate.cv import simulate_cv

PHYS = dict(D_cm2_s=1e-9, n_electrons=1, area_cm2=0.01, concentration_mol_cm3=1e-5,
            temperature_K=298.15)
RATES = (0.005, 0.01, 0.02, 0.05)
HEADER = ("Potential applied (V)", "Time (s)", "WE(1).Current (A)", "WE(1).Potential (V)",
          "Scan", "Index", "Q+", "Q-", "Current range")


def _rs(v: float) -> float:
    return float(randles_sevcik_current_A(PHYS["D_cm2_s"], v, n_electrons=1, area_cm2=0.01,
                                          concentration_mol_cm3=1e-5, temperature_K=298.15))


def nova_text(e: np.ndarray, t: np.ndarray, i: np.ndarray, *, sep: str = "\t",
              decimal_comma: bool = True, padding: int = 3000) -> str:
    """A NOVA ASCII export as a European-locale NOVA writes it: ``sep`` between fields,
    decimal commas, and ``padding`` blank rows (every cell empty) after the data."""
    def num(x: float, spec: str) -> str:
        text = format(x, spec)
        return text.replace(".", ",") if decimal_comma else text

    lines = [sep.join(HEADER)]
    for k in range(e.size):
        lines.append(sep.join([num(e[k], ".6f"), num(t[k], ".4f"), num(i[k], ".6E"),
                               num(e[k], ".6f"), "1", str(k + 1), num(0.0, ".3E"),
                               num(0.0, ".3E"), num(1e-6, ".0E")]))
    lines += [sep * (len(HEADER) - 1)] * padding
    return "\r\n".join(lines) + "\r\n"


def _full_cv(v: float, **kw: object):
    return simulate_cv(scan_rate_V_s=v, e0_V=0.0, half_width_V=0.4, sample_step_V=2e-3,
                       substeps=2, **{**PHYS, **kw})  # type: ignore[arg-type]


# ------------------------------------------------------------------ 4. NOVA layouts


@pytest.mark.parametrize(("sep", "comma"), [("\t", True), (";", True), (",", False)])
def test_nova_exports_tab_semicolon_comma_with_padding(tmp_path: Path, sep: str,
                                                       comma: bool) -> None:
    cv = _full_cv(0.01)
    path = tmp_path / "cv_10mVs.txt"
    path.write_text(nova_text(cv.potential_V, cv.time_s, cv.current_A, sep=sep,
                              decimal_comma=comma), encoding="utf-8")
    raw = read_cv(path)[0]
    assert raw.attrs["format"] == "nova"
    assert raw.sizes["sample"] == cv.potential_V.size  # the padding rows are not samples
    np.testing.assert_allclose(raw["current_A"].values, cv.current_A, rtol=1e-6, atol=1e-18)
    np.testing.assert_allclose(raw["potential_V"].values, cv.potential_V, atol=1e-6)
    (c,) = label_sweeps([raw])
    assert c.attrs["scan_rate_V_s"] == pytest.approx(0.01)


def test_nova_parse_errors_name_file_line_and_column(tmp_path: Path) -> None:
    cv = _full_cv(0.01)
    lines = nova_text(cv.potential_V, cv.time_s, cv.current_A, padding=5).splitlines()
    cells = lines[9].split("\t")
    cells[2] = "1,2,3"
    bad = tmp_path / "bad.txt"
    bad.write_text("\n".join([*lines[:9], "\t".join(cells), *lines[10:]]) + "\n")
    with pytest.raises(InputFileError, match=r"bad\.txt: line 10, column 3 'WE\(1\)\.Current "
                                             r"\(A\)': expected a number.*found '1,2,3'"):
        read_nova_cv(bad)
    cells = lines[20].split("\t")
    cells[1] = ""
    hole = tmp_path / "hole.txt"
    hole.write_text("\n".join([*lines[:20], "\t".join(cells), *lines[21:]]) + "\n")
    with pytest.raises(InputFileError, match=r"hole\.txt: line 21, column 2 'Time \(s\)': "
                                             r"expected a number.*found an empty cell"):
        read_cv(hole)
    # a generic CSV CV names the line too
    csv = tmp_path / "cv.csv"
    csv.write_text("time/s,Ewe/V,I/A\n0,0.1,1e-6\n1,0.2,2e-6\n,0.3,3e-6\n")
    with pytest.raises(InputFileError, match=r"cv\.csv: line 4, column 'time/s': expected a "
                                             r"number, found an empty cell"):
        read_cv(csv)


# ------------------------------------------------------ 5. partial first sweep, options


def partial_first_sweep(v: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """A CV that starts at +0.25 V (mid-range) going cathodic through the reduction peak
    to -0.3 V, sweeps up to +0.9 V and back down to +0.25 V (one NOVA scan): the longest
    cathodic sweep (+0.9 → +0.25 V) holds no peak. Returns E, t, i and the true |i_pc|.

    The partial sweep starts from equilibrium with only the oxidised form present, so it
    is the mirror image (E → −E, i → −i) of a fresh anodic sweep: its peak is the
    Randles–Sevcik current at E0 − 28.5 mV."""
    full = simulate_cv(scan_rate_V_s=v, e0_V=0.0, half_width_V=0.9, sample_step_V=2e-3,
                       substeps=2, **PHYS)  # type: ignore[arg-type]
    e, i = full.potential_V, full.current_A
    vx = int(np.argmax(e))
    up_e, up_i = e[:vx + 1], i[:vx + 1]
    part1 = (up_e >= -0.25 - 1e-9) & (up_e <= 0.3 + 1e-9)
    e1, i1 = -up_e[part1], -up_i[part1]
    part2 = up_e >= -0.3 - 1e-9
    e2, i2 = up_e[part2][1:], up_i[part2][1:]
    dn_e, dn_i = e[vx:], i[vx:]
    part3 = dn_e >= 0.25 - 1e-9
    e3, i3 = dn_e[part3][1:], dn_i[part3][1:]
    ee = np.concatenate([e1, e2, e3])
    ii = np.concatenate([i1, i2, i3])
    tt = np.arange(ee.size) * 2e-3 / v
    return ee, tt, ii, full.peak_current_A


@pytest.fixture(scope="module")
def partial_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], list[float]]:
    out = tmp_path_factory.mktemp("partial")
    files, ips = [], []
    for v in RATES:
        e, t, i, ip = partial_first_sweep(v)
        path = out / f"cv_{v * 1e3:g}mVs.txt".replace(".", "p").replace("ptxt", ".txt")
        path.write_text(nova_text(e, t, i, padding=2000))
        files.append(path)
        ips.append(ip)
    return files, ips


def test_partial_first_sweep_peak_is_found(partial_files) -> None:
    files, ips = partial_files
    cvs = label_sweeps(read_cv(files))
    opts = KineticsOptions(concentration_mol_cm3=1e-5, fit_peak="cathodic",
                           cathodic_window_V=(-0.2, 0.1), anodic_window_V=(-0.1, 0.2))
    ds = analyse_cells(cvs, 0.01, opts)
    ipc = ds["cathodic_peak_current_A"].values
    assert np.isfinite(ipc).all(), ds.attrs["reasons"]
    np.testing.assert_allclose(-ipc, ips, rtol=0.02)
    np.testing.assert_allclose(ds["cathodic_peak_potential_V"].values, -0.0285, atol=3e-3)
    assert float(ds["cell_diffusion_cm2_s"]) == pytest.approx(PHYS["D_cm2_s"], rel=0.05)
    # only the longest sweep (the old rule): +0.9 -> +0.25 V holds no reduction peak
    old = analyse_cells(cvs, 0.01, KineticsOptions(concentration_mol_cm3=1e-5,
                                                   fit_peak="cathodic", sweep="longest",
                                                   cathodic_window_V=(-0.2, 0.1)))
    assert np.isnan(old["cathodic_peak_current_A"].values).all()
    # sweep N: the first cathodic sweep of the cycle is the partial one
    first = analyse_cells(cvs, 0.01, KineticsOptions(concentration_mol_cm3=1e-5,
                                                     fit_peak="cathodic", sweep=1,
                                                     cathodic_window_V=(-0.2, 0.1)))
    np.testing.assert_allclose(first["cathodic_peak_current_A"].values, ipc)


def test_previous_sweep_background_gives_the_return_peak() -> None:
    """The return (cathodic) peak of a reversible CV over the extrapolated decay of the
    forward sweep is the Randles–Sevcik current (Nicholson: i_pc/i_pa = 1)."""
    cvs = []
    for v in RATES:
        cv = _full_cv(v)
        import xarray as xr

        raw = xr.Dataset({"potential_V": ("sample", cv.potential_V),
                          "potential_applied_V": ("sample", cv.potential_V),
                          "current_A": ("sample", cv.current_A)},
                         coords={"time_s": ("sample", cv.time_s)},
                         attrs={"source_file": f"sim{v}", "format": "csv", "technique": "",
                                "scan_rates_recorded_V_s": np.asarray([v]),
                                "scan_rate_source": "test"})
        cvs.extend(label_sweeps([raw]))
    truth = np.array([_rs(v) for v in RATES])
    prev = analyse_cells(cvs, 0.01, KineticsOptions(
        concentration_mol_cm3=1e-5, fit_peak="cathodic",
        peaks=PeakOptions(background="previous-sweep")))
    np.testing.assert_allclose(-prev["cathodic_peak_current_A"].values, truth, rtol=0.03)
    assert float(prev["cell_diffusion_cm2_s"]) == pytest.approx(PHYS["D_cm2_s"], rel=0.06)
    zero = analyse_cells(cvs, 0.01, KineticsOptions(
        concentration_mol_cm3=1e-5, fit_peak="cathodic", peaks=PeakOptions(background="none")))
    assert np.all(-zero["cathodic_peak_current_A"].values < 0.9 * truth)  # the tail is not 0


def test_cli_reproduces_the_analysis_with_every_option(partial_files, tmp_path: Path) -> None:
    files, ips = partial_files
    args = ["kinetics", *map(str, files), "--area-cm2", "0.01", "--conc-mol-cm3", "1e-5",
            "--fit-peak", "cathodic", "--cathodic-window", "-0.2:0.1", "--anodic-window",
            "-0.1:0.2", "--sweep", "auto", "--background", "linear", "--cycle", "1", "--json"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["diffusion_cm2_s"] == pytest.approx(PHYS["D_cm2_s"], rel=0.05)
    assert [-row["cathodic_peak_current_A"] for row in data["scan_rates"]] == pytest.approx(
        ips, rel=0.02)
    r = CliRunner().invoke(app, [*args[:-1], "--cathodic-window", "0.3:0.1"])
    assert r.exit_code == 1 and "--cathodic-window" in r.output
    r = CliRunner().invoke(app, [*args[:-1], "--background", "spline"])
    assert r.exit_code == 1 and "kinetics.background" in r.output


def test_ir_correction_restores_the_reversible_separation() -> None:
    import xarray as xr

    r_u = 5.0e4  # Ω: i_p·R_u ≈ 20-30 mV at these rates
    cvs = []
    for v in (0.02, 0.05, 0.1):
        cv = _full_cv(v, R_u_ohm=r_u)
        raw = xr.Dataset({"potential_V": ("sample", cv.potential_V),
                          "potential_applied_V": ("sample", cv.potential_V),
                          "current_A": ("sample", cv.current_A)},
                         coords={"time_s": ("sample", cv.time_s)},
                         attrs={"source_file": f"ir{v}", "format": "csv", "technique": "",
                                "scan_rates_recorded_V_s": np.asarray([v]),
                                "scan_rate_source": "test"})
        cvs.extend(label_sweeps([raw]))
    raw_res = analyse_cells(cvs, 0.01, KineticsOptions(concentration_mol_cm3=1e-5))
    fixed = analyse_cells(cvs, 0.01, KineticsOptions(concentration_mol_cm3=1e-5, ir_ohm=r_u))
    # the peaks move by i_p·R_u (E - I·R_u at the peak), so ΔEp shrinks towards 58.5 mV (not
    # all the way: the interface did not see a linear ramp, which no post-hoc correction undoes)
    shift = raw_res["anodic_peak_current_A"].values * r_u
    np.testing.assert_allclose(fixed["anodic_peak_potential_V"].values,
                               raw_res["anodic_peak_potential_V"].values - shift, atol=1e-3)
    excess_raw = raw_res["delta_ep_V"].values - 0.0585
    excess_fixed = fixed["delta_ep_V"].values - 0.0585
    assert np.all(excess_raw > 0.012) and np.all(excess_fixed < 0.45 * excess_raw)


def _irreversible_csv(path: Path) -> Path:
    rows = ["time/s,Ewe/V,<I>/mA,scan_rate_mV_s"]
    for v in (0.01, 0.02, 0.05):
        cv = simulate_cv(D_cm2_s=1e-9, scan_rate_V_s=v, n_electrons=1, area_cm2=0.01,
                         concentration_mol_cm3=1e-5, temperature_K=298.15, e0_V=0.5,
                         k0_cm_s=1e-5, half_width_V=0.6, sample_step_V=2e-3, substeps=2)
        rows += [f"{a:.6f},{b:.6f},{c * 1e3:.6e},{v * 1e3:g}"
                 for a, b, c in zip(cv.time_s, cv.potential_V, cv.current_A, strict=True)]
    path.write_text("\n".join(rows) + "\n")
    return path


def test_force_reports_D_of_a_non_reversible_couple_with_its_flag(tmp_path: Path) -> None:
    path = _irreversible_csv(tmp_path / "irrev.csv")
    cvs = label_sweeps(read_cv(path))
    plain = analyse_cells(cvs, 0.01, KineticsOptions(concentration_mol_cm3=1e-5))
    assert int(plain["cell_flags"]) & 4
    assert np.isnan(float(plain["cell_diffusion_cm2_s"]))
    assert any("--force" in r for r in plain.attrs["reasons"])
    forced = analyse_cells(cvs, 0.01, KineticsOptions(concentration_mol_cm3=1e-5, force=True))
    assert np.isfinite(float(forced["cell_diffusion_cm2_s"]))
    assert int(forced["cell_flags"]) & 4 and not bool(forced["cell_randles_sevcik_applies"])
    args = ["kinetics", str(path), "--area-cm2", "0.01", "--conc-mol-cm3", "1e-5"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 1 and "not reversible" in r.output
    r = CliRunner().invoke(app, [*args, "--force", "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["diffusion_cm2_s"] > 0 and "peak_shift" in data["flags"] and data["forced"]


def test_glob_in_cv_files_is_expanded(partial_files, tmp_path: Path) -> None:
    from operando.config import load_config
    from pipelines.kinetics import build_kinetics

    files, _ = partial_files
    cfg = {"run": {"name": "glob"}, "output": {"directory": str(tmp_path / "out")},
           "kinetics": {"cv_files": [str(files[0].parent / "cv_*mVs.txt")], "area_cm2": 0.01,
                        "concentration_mol_cm3": 1e-5, "fit_peak": "cathodic",
                        "cathodic_window_V": [-0.2, 0.1], "sweep": "auto",
                        "background": "linear"}}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    prod = build_kinetics(load_config(path).kinetics)
    assert prod.dataset.sizes["scan_rate"] == len(RATES)
    assert sorted(map(Path, prod.inputs)) == sorted(files)
    assert float(prod.dataset["cell_diffusion_cm2_s"]) == pytest.approx(1e-9, rel=0.05)
