"""The reduce flow on the simulated `small` run: echem.nc, the trigger-clock sync and
xrd.nc against the simulator's truth; provenance attributes; bad input leaves nothing
under a product's final name."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import xarray as xr

from operando.config import RunConfig, load_config
from operando.simulate.beamtime import load_truth
from pipelines.cache import cache_dir
from pipelines.reduce import reduce_run


def _config(small_run, out: Path, **xrd_updates) -> RunConfig:
    cfg = load_config(small_run.run_config_path)
    update: dict = {"output": cfg.output.model_copy(update={"directory": out,
                                                            "overwrite": True})}
    if xrd_updates:
        integ = xrd_updates.pop("integration", None)
        x = cfg.xrd.model_copy(update=xrd_updates)
        if integ:
            x = x.model_copy(update={"integration": x.integration.model_copy(update=integ)})
        update["xrd"] = x
    return cfg.model_copy(update=update)


#: the dimension of each X-ray product's acquisitions (none of them is `time`)
XRAY_DIMS = {"xrd": "frame", "peaks": "frame", "xanes": "scan", "confocal": "pass"}


@pytest.fixture(scope="module")
def reduced(small_reduced):
    return small_reduced


def test_products_and_provenance(reduced, small_run) -> None:
    cfg, res = reduced
    assert set(res.products) == {"echem", "xrd", "peaks", "confocal", "xanes", "kinetics"}
    assert not res.skipped
    for name, path in res.products.items():
        assert path == cfg.product_dir / f"{name}.nc" and path.is_file()
        ds = xr.open_dataset(path, engine="h5netcdf")
        a = ds.attrs
        assert a["product"] == name and a["operando_version"]
        assert "schema_version: 1" in a["config_yaml"]
        assert a["created_utc"].endswith("Z")
        assert np.size(a["input_sha256"]) == np.size(a["input_files"]) >= 1
        names = {Path(f).name for f in np.atleast_1d(a["input_files"])}
        if name == "kinetics":  # CVs have no X-ray clock
            assert "clock_method" not in a and "seccm_map.h5" in names, names
        else:
            assert a["clock_method"] == "triggers"
            assert {"cell.mpt", "triggers.txt"} <= names or name == "peaks", names
        if name == "xrd":
            assert {"xrd_0001.h5", "geometry.poni", "mask.edf"} <= names, names
        if name == "peaks":  # made from xrd.nc, which records the frames and the clock
            assert names == {"xrd.nc"}, names
        if name == "xanes":
            assert "xanes_scans.h5" in names, names
        if name == "confocal":
            assert {"confocal.h5", "pilatus_0000.h5", "geometry.poni"} <= names, names
        for var in {**ds.coords, **ds.data_vars}.values():
            assert "long_name" in var.attrs or var.dtype.kind == "M", var.name
        if name in XRAY_DIMS:  # one dimension name per stream; time and time_utc on each
            assert XRAY_DIMS[name] in ds.dims and "time" not in ds.dims, (name, ds.dims)
            assert ds["time"].attrs["units"] == "s" and ds["time"].attrs["clock"] == \
                "potentiostat", name
            assert ds["time_utc"].dims == ds["time"].dims, name
            assert ds["time_utc"].dtype == np.dtype("datetime64[ns]"), name
            assert not np.isnat(ds["time_utc"].values[np.isfinite(ds["time"].values)]).any()
        ds.close()
    assert not list(cfg.product_dir.glob(".*.part"))
    for fig in ("echem.png", "sync.png", "xrd.png", "peaks.png", "confocal.png", "xanes.png",
                "kinetics_ip.png", "kinetics_map.png"):
        assert (cfg.product_dir / "report" / fig).read_bytes()[:4] == b"\x89PNG"


def test_clock_recovered_within_tolerance(reduced, small_run) -> None:
    _, res = reduced
    truth = load_truth(small_run.truth_path)["clock"]
    c = res.clock
    assert abs(c.offset_s - truth["offset_s"]) < 0.010
    assert abs(c.drift_ppm - truth["drift_ppm"]) < 2.0
    assert sorted(c.unmatched_sent) == sorted(truth["missing_trigger_index"])
    assert len(c.unmatched_recorded) == len(truth["spurious_trigger_time_s"])


def test_xrd_product_carries_exposure_averaged_echem(reduced, small_run) -> None:
    cfg, res = reduced
    truth = load_truth(small_run.truth_path)["xrd"]
    ds = xr.open_dataset(res.products["xrd"], engine="h5netcdf")
    assert ds["intensity"].dims == ("frame", "q")
    assert ds.sizes["frame"] == truth["n_frames"] and ds.sizes["q"] == cfg.xrd.integration.npt
    # time (s, potentiostat clock) and time_utc (UTC, beamline clock) on every frame: the
    # fitted clock maps one onto the other (midpoints of the exposures)
    assert ds["time"].dims == ("frame",) and ds["time"].attrs["clock"] == "potentiostat"
    assert ds["time_utc"].dtype == np.dtype("datetime64[ns]")
    utc_s = ds["time_utc"].values.astype("datetime64[ns]").astype(np.int64) * 1e-9
    np.testing.assert_allclose(utc_s, res.clock.to_beamline(ds["time"].values), atol=1e-5)
    assert ds["q"].attrs["units"] == "1/angstrom"
    np.testing.assert_allclose(ds["time_start"], truth["time_start_s"], atol=0.01)
    np.testing.assert_allclose(ds["time_end"], truth["time_end_s"], atol=0.01)
    np.testing.assert_allclose(ds["count_time"], truth["count_time_s"])
    np.testing.assert_allclose(ds["monitor"], truth["monitor"], rtol=1e-6)
    # the mean over each exposure, not the midpoint sample: equal to truth to the precision
    # the .mpt keeps (charge printed in mA·h with 8 significant digits, 1 s sampling)
    q_true = np.asarray(truth["echem"]["charge_C"])
    np.testing.assert_allclose(ds["charge_C"], q_true, atol=2e-4 * np.max(np.abs(q_true)))
    np.testing.assert_allclose(ds["voltage_V"], truth["echem"]["voltage_V"], atol=2e-3)
    np.testing.assert_allclose(ds["x_li"], truth["echem"]["x_li"], atol=2e-4)
    assert set(np.unique(ds["segment"].values)) <= {"charge", "rest", "discharge"}
    assert ds["straddles_step"].values.sum() >= 1
    # intensities finite where the detector sees the ring, sigma positive
    inten, sig = ds["intensity"].values, ds["intensity_sigma"].values
    seen = np.isfinite(inten).all(axis=0) & (sig > 0).all(axis=0)
    assert seen.mean() > 0.5
    assert ds.attrs["poni"].startswith("#") or "Detector" in ds.attrs["poni"]
    assert len(ds.attrs["mask_checksum"]) >= 16
    ds.close()


def test_echem_product_has_faraday_quantities(reduced, small_run) -> None:
    _, res = reduced
    truth = load_truth(small_run.truth_path)["echem"]
    ds = xr.open_dataset(res.products["echem"], engine="h5netcdf")
    assert ds["x_li"].min() == pytest.approx(truth["x_li_min"], abs=2e-3)
    assert float(ds["x_li"][-1]) == pytest.approx(truth["x_li_end"], abs=2e-3)
    assert {"voltage_V", "current_A", "charge_C", "segment", "faraday_fraction"} <= set(ds)
    assert str(ds["time_utc"].dtype) == "datetime64[ns]"
    ds.close()


def test_existing_products_are_kept_unless_overwrite(reduced, small_run) -> None:
    cfg, res = reduced
    before = res.products["xrd"].stat().st_mtime_ns
    keep = cfg.model_copy(update={"output": cfg.output.model_copy(update={"overwrite": False})})
    again = reduce_run(keep, only=["xrd"], scheduler="none")
    # up to date: decided before the flow, which does not run
    assert again.fresh == {"xrd": "fresh"} and not again.products and not again.flow_ran
    assert res.products["xrd"].stat().st_mtime_ns == before


def test_peaks_product_recovers_phase_fractions(reduced, small_run) -> None:
    """peaks.nc of the `small` run (through real integration of Pilatus-100k frames, which
    see fewer reflections than the lfp presets: see test_xrd_peaks.py for those)."""
    from operando.io.products import missing_cf_attrs

    _, res = reduced
    truth = load_truth(small_run.truth_path)["xrd"]
    with xr.open_dataset(res.products["peaks"], engine="h5netcdf") as ds:
        assert not missing_cf_attrs(ds)
        for v in ("center", "fwhm", "area", "eta", "center_stderr", "d_spacing",
                  "phase_fraction", "lattice_a", "x_li", "intermediate_flag", "voltage_V",
                  "time_start", "segment", "x_li_faraday"):
            assert v in ds.variables, v
        names = [str(p) for p in ds["phase"].values]
        tr = np.stack([truth["phase_fraction"][p] for p in names], -1)
        rms = float(np.sqrt(np.nanmean((ds["phase_fraction"].values - tr) ** 2)))
        assert rms < 0.035, rms
        assert not ds["intermediate_flag"].values.any()
        np.testing.assert_allclose(ds["time_start"], truth["time_start_s"], atol=0.01)
        assert ds["phase_fraction"].dims == ("frame", "phase")
        assert ds["center"].dims == ("frame", "peak")
        with xr.open_dataset(res.products["xrd"], engine="h5netcdf") as x:
            np.testing.assert_array_equal(ds["time_utc"].values, x["time_utc"].values)


def test_peaks_alone_reads_the_existing_xrd_product(reduced, tmp_path: Path) -> None:
    """`--only peaks` on a run with xrd.nc refits from it (xrd.nc untouched); on a fresh
    folder it reduces the XRD first."""
    cfg, res = reduced
    xrd_before = res.products["xrd"].stat().st_mtime_ns
    again = reduce_run(cfg, only=["peaks"], scheduler="none")
    assert set(again.products) == {"peaks"}
    assert res.products["xrd"].stat().st_mtime_ns == xrd_before
    with xr.open_dataset(again.products["peaks"], engine="h5netcdf") as new, \
            xr.open_dataset(res.products["peaks"], engine="h5netcdf") as old:
        np.testing.assert_allclose(new["phase_fraction"], old["phase_fraction"],
                                   equal_nan=True)
        assert new.attrs["clock_method"] == "triggers"  # carried over from xrd.nc
    fresh = cfg.model_copy(update={"output": cfg.output.model_copy(
        update={"directory": tmp_path, "overwrite": False})})
    # the work units of the first reduce (taken from the cache: not --overwrite), so only
    # the wiring is exercised again
    shutil.copytree(cache_dir(cfg.product_dir), cache_dir(fresh.product_dir))
    first = reduce_run(fresh, only=["peaks"], scheduler="none")
    assert set(first.products) == {"xrd", "peaks"}


def _no_product(out: Path) -> None:
    leftovers = [p.name for p in out.rglob("*") if p.suffix in (".nc", ".part")
                 or p.name.endswith(".part")]
    assert not [n for n in leftovers if n.startswith("xrd") or ".xrd.nc" in n], leftovers


def test_bad_dataset_path_names_file_and_path(small_run, tmp_path: Path) -> None:
    cfg = _config(small_run, tmp_path, dataset="/entry/instrument/nothing/data")
    with pytest.raises(Exception, match=r"xrd_0001\.h5.*(/entry/instrument/nothing/data)"):
        reduce_run(cfg, only=["xrd"], scheduler="none")
    _no_product(tmp_path)


def test_mask_of_wrong_shape_is_a_clear_error(small_run, tmp_path: Path) -> None:
    bad_mask = tmp_path / "mask.npy"
    np.save(bad_mask, np.zeros((10, 12), dtype=np.uint8))
    cfg = _config(small_run, tmp_path, integration={"mask": bad_mask})
    with pytest.raises(Exception, match=r"(?s)mask.*\(10, 12\)"):
        reduce_run(cfg, only=["xrd"], scheduler="none")
    _no_product(tmp_path)


def test_truncated_frame_file_fails_without_a_product(small_run, tmp_path: Path) -> None:
    src = small_run.outdir / "xrd" / "xrd_0001.h5"
    cut = tmp_path / "xrd_cut.h5"
    data = src.read_bytes()
    cut.write_bytes(data[: int(len(data) * 0.6)])
    cfg = _config(small_run, tmp_path / "out", files=[cut])
    with pytest.raises(Exception, match=r"xrd_cut\.h5"):
        reduce_run(cfg, only=["xrd"], scheduler="none")
    _no_product(tmp_path)


def test_frame_shape_not_matching_the_poni_detector(small_run, tmp_path: Path) -> None:
    odd = tmp_path / "odd.h5"
    with h5py.File(odd, "w") as f:
        f.create_dataset("/entry/instrument/detector/data",
                         data=np.ones((3, 40, 50), dtype=np.uint32))
        f["/entry/instrument/detector"].attrs["NX_class"] = "NXdetector"
        f["/entry"].attrs["NX_class"] = "NXentry"
        f["/entry/instrument"].attrs["NX_class"] = "NXinstrument"
    cfg = _config(small_run, tmp_path / "out", files=[odd], dataset=None, timestamp_path=None,
                  count_time_path=None, monitor_path=None)
    cfg = cfg.model_copy(update={"sync": None})
    with pytest.raises(Exception, match=r"(?s)\(40, 50\).*\(195, 487\)|\(195, 487\).*\(40, 50\)"):
        reduce_run(cfg, only=["xrd"], scheduler="none")
    _no_product(tmp_path)


def test_bad_poni_is_a_clear_error(small_run, tmp_path: Path) -> None:
    poni = tmp_path / "broken.poni"
    poni.write_text("Distance: 0.25\nPoni1: 0.01\n")
    cfg = _config(small_run, tmp_path / "out", integration={"poni": poni})
    with pytest.raises(Exception, match=r"broken\.poni.*missing poni2, wavelength"):
        reduce_run(cfg, only=["xrd"], scheduler="none")
    _no_product(tmp_path)


def test_csv_cycler_file_with_a_column_map(small_run, tmp_path: Path) -> None:
    """format 'auto' + echem.columns: the CSV export of the run gives the .mpt's echem.nc."""
    from operando.config import CsvColumns
    from operando.io.echem.biologic import read_mpt

    mpt = read_mpt(small_run.outdir / "echem" / "cell.mpt", timezone="Europe/Paris")
    csv = tmp_path / "cell.csv"
    rows = np.column_stack([mpt["time_s"], mpt["voltage_V"], mpt["current_A"] * 1e3])
    np.savetxt(csv, rows, delimiter=",", header="t_s,E_V,I_mA", comments="", fmt="%.10g")
    cfg = _config(small_run, tmp_path / "out")
    echem = cfg.echem.model_copy(update={
        "files": [csv], "format": "auto", "start_time": mpt.attrs["acquisition_start"],
        "columns": CsvColumns(time_s="t_s", voltage_V="E_V", current_A="I_mA",
                              current_scale=1e-3)})
    cfg = cfg.model_copy(update={"echem": echem, "sync": None})
    res = reduce_run(cfg, only=["echem"], scheduler="none")
    with xr.open_dataset(res.products["echem"], engine="h5netcdf") as ds:
        # no charge column: ∫I dt by trapezoids; where the current steps between two
        # samples the trapezoid errs by at most |ΔI|·Δt/2 against the cycler's own counter
        t, i = mpt["time_s"].values, mpt["current_A"].values
        bound = np.concatenate([[0.0], np.cumsum(np.abs(np.diff(i)) * np.diff(t) / 2)])
        err = np.abs(ds["charge_C"].values - mpt["charge_C"].values)
        assert np.all(err <= bound + 1e-6), float(np.max(err - bound))
        assert err.max() > 0  # the counter and the integral differ: the column was not copied
        assert ds["time_utc"].values[0] == mpt["time_utc"].values[0]


def test_scorecard_scores_the_products_against_truth(reduced, small_run) -> None:
    """The demo's last table: each product against truth.json; a wrong product fails it."""
    from operando.io.products import read_product
    from operando.simulate.scorecard import scorecard

    _, res = reduced
    truth = load_truth(small_run.truth_path)
    products = {n: read_product(p) for n, p in res.products.items()}
    rows = {(r.product, r.quantity): r for r in scorecard(truth, products)}
    assert {p for p, _ in rows} == {"sync", "peaks", "confocal", "xanes", "kinetics"}
    for key in [("sync", "clock offset"), ("sync", "clock drift"),
                ("xanes", "LCF fraction RMS"), ("xanes", "mono energy offset"),
                ("xanes", "XANES lag"), ("kinetics", "D, cell CVs"),
                ("kinetics", "linear up to"), ("kinetics", "D map, worst"),
                ("peaks", "intermediate flagged"), ("confocal", "local SOC RMS"),
                ("confocal", "front arrival, worst"), ("confocal", "first face"),
                ("confocal", "relaxation τ")]:
        assert rows[key].ok, rows[key]
    bad = products["xanes"].copy()
    bad["fraction"] = bad["fraction"] + 0.05
    (row,) = [r for r in scorecard(truth, {"xanes": bad}) if r.quantity == "LCF fraction RMS"]
    assert not row.ok and row.error == pytest.approx(0.05, abs=0.01)
