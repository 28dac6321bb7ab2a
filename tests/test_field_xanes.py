"""H12 field files, XANES: spectra without acquisition times through ``reduce`` (a series of
files without start times, a series in one multi-column file, a single spectrum), and
``operando lcf`` with the combinatorial search, Larch's window boundary points and the
scale check. Every file is written by the test; the Fe K-edge standards of
``../shared/data`` are used by the ``realdata`` test only.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml
from typer.testing import CliRunner

from operando.cli import app
from operando.xanes.lcf import lcf
from pipelines.reduce import reduce_run

E0 = 7112.0


def _energy() -> np.ndarray:
    return np.concatenate([np.arange(6960.0, 7090.0, 5.0), np.arange(7090.0, 7160.0, 0.5),
                           np.arange(7160.0, 7400.0, 2.0)])


def _norm(e: np.ndarray, shift: float) -> np.ndarray:
    x = e - (E0 + shift)
    edge = 0.5 + np.arctan(x / 1.5) / np.pi
    return edge * (1 + 0.35 * np.exp(-0.5 * ((x - 8.0) / 3.0) ** 2))


def _raw(e: np.ndarray, shift: float, step: float = 0.8) -> np.ndarray:
    return 0.2 - 2e-4 * (e - E0) + step * _norm(e, shift)


def _config(tmp: Path, xanes: dict) -> Path:
    cfg = {"run": {"name": "t"}, "output": {"directory": str(tmp / "out"), "report": True},
           "xanes": {"align_mode": "none", "faraday_component": None, "format": "text",
                     **xanes}}
    path = tmp / "run.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def _reduce(path: Path) -> xr.Dataset:
    res = reduce_run(path, only=["xanes"], scheduler="none", overwrite=True)
    ds = xr.open_dataset(res.products["xanes"]).load()
    ds.close()
    assert (path.parent / "out" / "t" / "report" / "xanes.png").is_file()
    return ds


def _standards(tmp: Path) -> list[dict]:
    e = _energy()
    for name, s in (("a", 0.0), ("b", 3.0)):
        (tmp / f"std_{name}.txt").write_text(
            "# energy norm\n" + "\n".join(f"{u:.2f} {v:.8f}" for u, v in zip(e, _norm(e, s),
                                                                            strict=True)))
    return [{"name": "A", "file": str(tmp / "std_a.txt")},
            {"name": "B", "file": str(tmp / "std_b.txt")}]


FRACTIONS = np.array([0.0, 0.25, 0.5, 0.75, 1.0])


def test_series_of_files_without_start_times(tmp_path: Path) -> None:
    e = _energy()
    for k, f in enumerate(FRACTIONS):  # no '#Time at start' line: no times at all
        mu = (1 - f) * _raw(e, 0.0) + f * _raw(e, 3.0)
        (tmp_path / f"scan_{k + 1}.txt").write_text(
            "#energy mu\n" + "\n".join(f"{a:.2f} {b:.6f}" for a, b in zip(e, mu, strict=True)))
    ds = _reduce(_config(tmp_path, {"files": [str(tmp_path / "scan_*.txt")], "times": "none",
                                    "standards": _standards(tmp_path)}))
    assert ds.sizes["scan"] == len(FRACTIONS)
    assert (ds.qc_flag.values == 0).all()
    np.testing.assert_allclose(ds.edge_step.values, 0.8, atol=0.05)
    np.testing.assert_allclose(ds.fraction.sel(component="B").values, FRACTIONS, atol=0.02)
    assert np.isnan(ds.time.values).all() and "none" in ds.attrs["xanes_time_axis"]


def test_series_in_one_multicolumn_file_and_a_single_spectrum(tmp_path: Path) -> None:
    e = _energy()
    cols = [(1 - f) * _raw(e, 0.0) + f * _raw(e, 3.0) for f in FRACTIONS]
    names = [f"s{k}" for k in range(len(FRACTIONS))]
    rows = np.column_stack([e, *cols])
    (tmp_path / "series.dat").write_text(
        "# energy " + " ".join(names) + "\n"
        + "\n".join(" ".join(f"{v:.6f}" for v in r) for r in rows))
    stds = _standards(tmp_path)
    ds = _reduce(_config(tmp_path, {"files": [str(tmp_path / "series.dat")], "times": "none",
                                    "mu_columns": "*", "standards": stds,
                                    "max_components": 2}))
    assert list(ds.scan_name.values) == [f"series.dat:{n}" for n in names]
    np.testing.assert_allclose(ds.fraction.sel(component="B").values, FRACTIONS, atol=0.02)
    # one spectrum alone goes through too
    (tmp_path / "one.txt").write_text(
        "#energy mu\n" + "\n".join(f"{a:.2f} {b:.6f}" for a, b in zip(e, cols[2], strict=True)))
    ds = _reduce(_config(tmp_path, {"files": [str(tmp_path / "one.txt")], "times": "none",
                                    "standards": stds}))
    assert ds.sizes["scan"] == 1
    assert float(ds.fraction.sel(component="B")[0]) == pytest.approx(0.5, abs=0.02)
    assert np.isfinite(ds.e0.values).all()


def test_mu_columns_expects_times_none(tmp_path: Path) -> None:
    from operando.config import ConfigError, load_config

    (tmp_path / "series.dat").write_text("# energy a b\n1 2 3\n2 3 4\n")
    with pytest.raises(ConfigError, match=r"mu_columns.*times: none"):
        load_config(_config(tmp_path, {"files": [str(tmp_path / "series.dat")],
                                       "mu_columns": ["a", "b"]}))


# ----------------------------------------------------------------------------- lcf


def test_lcf_window_includes_the_boundary_points_as_larch() -> None:
    """Larch's lincombo_fit keeps the grid points at or below xmin and xmax (index_of):
    with a window edge between grid points, the point just below it is in the fit."""
    e = np.arange(7100.0, 7130.0, 1.0)
    std = {"A": (e, _norm(e, 0.0)), "B": (e, _norm(e, 3.0))}
    y = 0.3 * _norm(e, 0.0) + 0.7 * _norm(e, 3.0)
    r = lcf(e, y[None], std, emin=7105.5, emax=7120.5)
    assert r.emin == 7105.0 and r.emax == 7120.0 and r.n_points == 16
    r = lcf(e, y[None], std, emin=7105.0, emax=7120.0)
    assert r.emin == 7105.0 and r.emax == 7120.0 and r.n_points == 16


def _two_col(path: Path, e: np.ndarray, y: np.ndarray) -> str:
    path.write_text("# energy mu\n" + "\n".join(f"{a:.2f} {b:.8f}" for a, b in
                                                zip(e, y, strict=True)))
    return str(path)


def test_cli_lcf_combinations_ranked_table(tmp_path: Path) -> None:
    e = _energy()
    stds = [_two_col(tmp_path / f"std{k}.txt", e, _norm(e, s))
            for k, s in enumerate((0.0, 3.0, 6.0))]
    spec = _two_col(tmp_path / "x.txt", e, 0.4 * _norm(e, 0.0) + 0.6 * _norm(e, 3.0))
    r = CliRunner().invoke(app, ["lcf", spec, "--standards", *stds[:1], "--standards",
                                 stds[1], "--standards", stds[2], "--combinations", "2",
                                 "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    combos = data["fits"][0]["combinations"]
    assert len(combos) == 3 + 3  # every subset of 1 and 2 of 3 standards
    best = combos[0]
    # standards sharing a column name are named FILE:COLUMN
    assert best["rank"] == 1 and set(best["components"]) == {"std0.txt:mu", "std1.txt:mu"}
    assert best["weights"]["std1.txt:mu"] == pytest.approx(0.6, abs=1e-3)
    assert [c["rank"] for c in combos] == list(range(1, 7))
    assert all("r_factor" in c for c in combos)
    r = CliRunner().invoke(app, ["lcf", spec, "--standards", stds[0], "--standards", stds[1],
                                 "--combinations", "2"])
    assert r.exit_code == 0, r.output
    assert "every combination" in r.output and "rank" in r.output


def test_cli_lcf_warns_and_flags_a_spectrum_off_the_standards_scale(tmp_path: Path) -> None:
    e = _energy()
    stds = [_two_col(tmp_path / f"std{k}.txt", e, _norm(e, s)) for k, s in ((0, 0.0), (1, 3.0))]
    raw = _two_col(tmp_path / "raw.txt", e, 3.0 * (0.2 + 0.5 * _norm(e, 0.0)
                                                   + 0.5 * _norm(e, 3.0)))
    std_args = ["--standards", stds[0], "--standards", stds[1]]
    r = CliRunner().invoke(app, ["lcf", raw, *std_args, "--json"])
    assert r.exit_code == 1
    data = json.loads(r.stdout)
    flags = data["fits"][0]["flags"]
    assert "edge_step_off_scale" in flags
    warning = " ".join(r.stderr.split())  # rich wraps long lines
    assert "not on the standards' scale" in warning and "--normalize" in warning
    r = CliRunner().invoke(app, ["lcf", raw, *std_args, "--normalize", "--json"])
    assert r.exit_code == 0, r.output
    fit = json.loads(r.stdout)["fits"][0]
    assert fit["flags"] == [] and fit["weights"]["std1.txt:mu"] == pytest.approx(0.5, abs=0.02)


@pytest.mark.realdata
def test_cli_lcf_real_fe_standards_combinations(shared_data: Path) -> None:
    nor = shared_data / "xanes" / "FeLibNov2021.nor"
    if not nor.is_file():
        pytest.skip(f"{nor} is not in the shared data")
    from operando.io.xas.text import read_xas_text

    lfp, fp = "LiFe(II)PO4", "Fe(III)PO4"
    assert {lfp, fp} <= set(read_xas_text(nor).columns)
    r = CliRunner().invoke(app, ["lcf", f"{nor}:{lfp}", "--standards", f"{nor}:{lfp}",
                                 "--standards", f"{nor}:{fp}", "--combinations", "2", "--json"])
    assert r.exit_code == 0, r.output
    fit = json.loads(r.stdout)["fits"][0]
    assert fit["combinations"][0]["components"] == [lfp]
    assert fit["flags"] == []
