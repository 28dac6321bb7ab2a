"""XANES from a series of text files (one scan per file): synthetic and real (SOLEIL ROCK).

(a) synthetic series written to tmp — two-column (naive header times, ``scan_end:
next_start``) and XDI multicolumn counts (offset times, ``Scan.end_time``) — reduced through
``reduce_run(only=["xanes"])`` with a known edge shift recovered;
(b) the real LiNiO2 Ni K-edge series (58 normalised spectra) with its BioLogic log, synced by
absolute timestamps: E0 8344.8 → 8346.2 eV tracking the charge;
(c) bad input: a missing column and a naive header time without ``xanes.timezone``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml

from operando.config import ConfigError, load_config
from operando.io.products import missing_cf_attrs
from operando.io.xas.text import write_xdi
from pipelines.reduce import reduce_run
from pipelines.xanes import build_xanes

SHIFTS = np.array([0.0, 0.4, 0.8, 1.2, 1.6, 2.0])
E0 = 7112.0


def _energy() -> np.ndarray:
    return np.concatenate([np.arange(6960.0, 7090.0, 5.0), np.arange(7090.0, 7160.0, 0.2),
                           np.arange(7160.0, 7400.0, 2.0)])


def _mu(e: np.ndarray, shift: float) -> np.ndarray:
    """A raw-looking μ: sloped pre-edge, arctan edge of step 0.8 at E0 + shift, white line."""
    x = e - (E0 + shift)
    edge = 0.5 + np.arctan(x / 1.5) / np.pi
    white = 0.35 * np.exp(-0.5 * ((x - 8.0) / 3.0) ** 2)
    return 0.2 - 2e-4 * (e - E0) + 0.8 * (edge + white * edge)


def _config(tmp: Path, xanes: dict, **extra: dict) -> Path:
    cfg = {"run": {"name": "t"}, "output": {"directory": str(tmp / "out"), "report": True},
           "xanes": {"align_mode": "none", "faraday_component": None, **xanes}, **extra}
    path = tmp / "run.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def _reduce(path: Path) -> xr.Dataset:
    res = reduce_run(path, only=["xanes"], scheduler="none", overwrite=True)
    ds = xr.open_dataset(res.products["xanes"]).load()
    ds.close()
    assert (path.parent / "out" / "t" / "report" / "xanes.png").is_file()
    return ds


def test_two_column_series_recovers_the_edge_shift(tmp_path: Path) -> None:
    e = _energy()
    for k, s in enumerate(SHIFTS):
        body = "\n".join(f"{a:.2f} {b:.6f}" for a, b in zip(e, _mu(e, s), strict=True))
        (tmp_path / f"scan_{k + 1:03d}.txt").write_text(
            f"#Time at start=2024-03-14 10:{2 * k:02d}:00.000\n#energy mu\n{body}\n")
    ds = _reduce(_config(tmp_path, {"files": [str(tmp_path / "scan_*.txt")], "format": "text",
                                    "timezone": "Europe/Paris", "scan_end": "next_start"}))
    assert ds.sizes["scan"] == len(SHIFTS)
    assert (ds.qc_flag.values == 0).all()
    np.testing.assert_allclose(ds.e0.values - ds.e0.values[0], SHIFTS, atol=0.11)
    np.testing.assert_allclose(ds.edge_step.values, 0.8, atol=0.05)
    # naive Paris wall time (CET, UTC+1): 10:00 local = 09:00 UTC; each scan ends at the next
    t0 = np.datetime64("2024-03-14T09:00:00").astype("datetime64[s]").astype(float)
    # no clock: time on the beamline clock from the first scan start; time_utc absolute
    assert ds["time"].attrs["clock"] == "beamline"
    np.testing.assert_allclose(ds.time_start.values, 120.0 * np.arange(len(SHIFTS)))
    np.testing.assert_allclose(ds.time_end.values - ds.time_start.values, 120.0)
    utc = ds.time_utc.values.astype("datetime64[ns]").astype(np.int64) * 1e-9
    np.testing.assert_allclose(utc, t0 + 60.0 + 120.0 * np.arange(len(SHIFTS)))
    assert list(ds.scan_name.values[:2]) == ["scan_001.txt", "scan_002.txt"]
    assert "fraction" not in ds and missing_cf_attrs(ds) == []


def test_xdi_counts_series_with_foil_alignment(tmp_path: Path) -> None:
    """XDI multicolumn counts: μ = ln(I0/It), foil ln(It/Iref) aligned to 7112 eV; the foil
    edge sits 1.5 eV low in every scan (monochromator offset), the sample moves by SHIFTS."""
    e = _energy()
    for k, s in enumerate(SHIFTS):
        i0 = 1e5 * (1 + 0.1 * np.cos(e / 50.0))
        it = i0 * np.exp(-_mu(e, s - 1.5))
        iref = it * np.exp(-_mu(e, -1.5))
        write_xdi(tmp_path / f"cell_{k + 1}.xdi", {"energy": e, "I0": i0, "It": it, "Iref": iref},
                  units={"energy": "eV"},
                  metadata={"Scan.start_time": f"2024-03-14T09:{2 * k:02d}:00+00:00",
                            "Scan.end_time": f"2024-03-14T09:{2 * k + 1:02d}:30+00:00"})
    ds = _reduce(_config(tmp_path, {"files": [str(tmp_path / "cell_*.xdi")],
                                    "i0_column": "I0", "it_column": "It", "iref_column": "Iref",
                                    "align_mode": "reference_e0", "reference_e0_eV": E0}))
    np.testing.assert_allclose(ds.energy_shift.values, 1.5, atol=0.11)
    np.testing.assert_allclose(ds.e0.values, E0 + SHIFTS, atol=0.15)
    np.testing.assert_allclose(ds.time_end.values - ds.time_start.values, 90.0)
    assert missing_cf_attrs(ds) == []


def test_prenormalised_text_with_standards_fits_fractions(tmp_path: Path) -> None:
    """Already-normalised spectra (flat, exactly-zero pre-edge) mixed from two text
    standards: used as given, the LCF recovers the mixing fractions."""
    e = _energy()

    def norm(shift: float) -> np.ndarray:
        x = e - (E0 + shift)
        edge = np.clip(0.5 + np.arctan(x / 1.5) / np.pi, 0, None)
        edge[x < -40] = 0.0  # exactly flat pre-edge
        return edge * (1 + 0.35 * np.exp(-0.5 * ((x - 8.0) / 3.0) ** 2))

    a, b = norm(0.0), norm(3.0)
    for name, y in (("std_a.txt", a), ("std_b.txt", b)):
        (tmp_path / name).write_text("\n".join(f"{u} {v}" for u, v in zip(e, y, strict=True)))
    frac = np.linspace(0.0, 1.0, 5)
    for k, f in enumerate(frac):
        cols = np.column_stack([e, (1 - f) * a + f * b, np.full(e.size, 1e4)])
        (tmp_path / f"n_{k}.nor").write_text(
            f"# Time at start = 2024-03-14T09:{k:02d}:00+00:00\n# Time from start (seconds) = 30\n"
            "# energy norm i0\n" + "\n".join(" ".join(f"{v:.8g}" for v in r) for r in cols))
    cfg = load_config(_config(tmp_path, {
        "files": [str(tmp_path / "n_*.nor")], "mu_column": "norm", "normalized": True,
        "e0_method": "half_step", "faraday_component": "B",
        "standards": [{"name": "A", "file": str(tmp_path / "std_a.txt")},
                      {"name": "B", "file": str(tmp_path / "std_b.txt")}]}))
    prod = build_xanes(cfg.xanes)
    ds = prod.dataset
    assert (ds.qc_flag.values == 0).all()
    np.testing.assert_allclose(ds.fraction.sel(component="B").values, frac, atol=0.01)
    np.testing.assert_allclose(ds.edge_step.values, 1.0, atol=0.1)
    assert "as given" in ds.mu_norm.attrs["normalisation"]
    np.testing.assert_allclose(ds.time_end.values - ds.time_start.values, 30.0)


# --------------------------------------------------------------------------- real data


@pytest.mark.realdata
def test_real_linio2_rock_series_on_the_cycler_clock(shared_data: Path, tmp_path: Path) -> None:
    d = shared_data / "operando_xas_linio2"
    if not (d / "EC").is_dir() or not (d / "XAS_normalized").is_dir():
        pytest.skip(f"LiNiO2 operando data absent under {d}")
    path = _config(
        tmp_path,
        {"files": [str(d / "XAS_normalized" / "*.txt")], "mu_column": "normalized",
         "normalized": True, "timezone": "Europe/Paris", "e0_method": "half_step"},
        echem={"files": [str(d / "EC" / "*.mpt")], "timezone": "Europe/Paris",
               "active_mass_mg": 5.0, "molar_mass_g_mol": 97.6},
        sync={"method": "timestamps", "reference_stream": "xanes"})
    res = reduce_run(path, only=["echem", "xanes"], scheduler="none", overwrite=True)
    with xr.open_dataset(res.products["xanes"]) as x, xr.open_dataset(res.products["echem"]) as ec:
        ds, echem = x.load(), ec.load()
    assert ds.sizes["scan"] == 58 and (ds.qc_flag.values == 0).all()
    e0, seg = ds.e0.values, ds.segment.values
    charging = seg == "charge"
    assert charging[:55].all() and list(seg[55:]) == ["discharge"] * 3
    assert e0[0] == pytest.approx(8344.8, abs=0.3)
    assert e0[charging].max() == pytest.approx(8346.2, abs=0.3)
    assert np.corrcoef(ds.charge_C.values[charging], e0[charging])[0, 1] > 0.95
    # potentiostat clock: first spectrum 23:01:58.055, cycler start 22:38:30.190 (both Paris)
    t0, t1 = ds.time_start.values, ds.time_end.values
    assert t0[0] == pytest.approx(1407.865, abs=1e-3)
    np.testing.assert_allclose(t1 - t0, 65.0, atol=0.5)
    ts = echem.time_s.values
    assert np.all(t0 < t1) and t0.min() >= ts.min() and t1.max() <= ts.max()
    assert ds.attrs["clock_method"] == "timestamps"
    assert missing_cf_attrs(ds) == []


# --------------------------------------------------------------------------- bad input


def _one_scan(tmp_path: Path, header: str = "#Time at start=2024-03-14 10:00:00\n") -> Path:
    e = _energy()
    body = "\n".join(f"{a:.2f} {b:.6f} 1000" for a, b in zip(e, _mu(e, 0.0), strict=True))
    p = tmp_path / "scan_1.txt"
    p.write_text(f"{header}#energy mu i0\n{body}\n")
    return p


def test_missing_column_names_file_and_column(tmp_path: Path) -> None:
    p = _one_scan(tmp_path)
    cfg = load_config(_config(tmp_path, {"files": [str(p)], "mu_column": "xmu",
                                         "timezone": "UTC"}))
    with pytest.raises(ValueError, match=r"scan_1\.txt: no column 'xmu'.*xanes\.mu_column"):
        build_xanes(cfg.xanes)
    cfg = load_config(_config(tmp_path, {"files": [str(p)], "timezone": "UTC"}))
    with pytest.raises(ValueError, match=r"scan_1\.txt: holds 3 columns.*xanes\.mu_column"):
        build_xanes(cfg.xanes)


def test_naive_header_time_without_timezone_names_the_key(tmp_path: Path) -> None:
    p = _one_scan(tmp_path)
    cfg = load_config(_config(tmp_path, {"files": [str(p)], "mu_column": "mu"}))
    with pytest.raises(ValueError, match=r"scan_1\.txt: header 'Time at start'.*no UTC "
                                         r"offset and xanes\.timezone is not set"):
        build_xanes(cfg.xanes)


def test_text_config_errors_name_the_key(tmp_path: Path) -> None:
    p = _one_scan(tmp_path)
    bad = [({"scan_end": "duration"}, "scan_duration_s"),
           ({"align_mode": "reference_e0"}, "ref_column"),
           ({"mu_column": "mu", "i0_column": "i0"}, "i0_column"),
           ({"timezone": "Paris"}, "timezone")]
    for extra, key in bad:
        with pytest.raises(ConfigError, match=rf"xanes.*{key}"):
            load_config(_config(tmp_path, {"files": [str(p)], **extra}))
