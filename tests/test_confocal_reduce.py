"""Confocal XRD end to end: the simulated small run (angle- and energy-dispersive) reduced to
``confocal.nc`` and checked against the simulator's truth.

The small preset has a depth position missing from pass 5 and a last pass cut short; every
point keeps its own exposure interval.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from operando.config import RunConfig, load_config, validate_config
from operando.echem.sync import ClockModel
from operando.io.products import missing_cf_attrs, read_product
from operando.simulate.beamtime import confocal_ed_section, load_truth
from pipelines.reduce import reduce_run


def _config(small_run, out: Path, **confocal: object) -> RunConfig:
    cfg = load_config(small_run.run_config_path)
    update: dict = {"output": cfg.output.model_copy(update={"directory": out,
                                                            "overwrite": True})}
    if confocal:
        update["confocal"] = cfg.confocal.model_copy(update=confocal)
    return cfg.model_copy(update=update)


@pytest.fixture(scope="module")
def angle(small_reduced):
    cfg, res = small_reduced
    return cfg, res, read_product(res.products["confocal"])


@pytest.fixture(scope="module")
def energy(small_run, tmp_path_factory):
    """The energy-dispersive twin of the same points, passes 1 and 10-19 only (scans 1*.1):
    the comparison needs no more, and the fits of 4096-channel spectra take time."""
    out = tmp_path_factory.mktemp("confocal_energy")
    raw = yaml.safe_load(small_run.run_config_path.read_text())
    truth = load_truth(small_run.truth_path)["confocal"]
    raw["confocal"] = {**confocal_ed_section(raw["confocal"], truth), "scans": "1*.1"}
    raw["output"]["directory"] = str(out)
    cfg = validate_config(raw, base_dir=small_run.run_config_path.parent)
    res = reduce_run(cfg, only=["confocal"], scheduler="none")
    return cfg, res, read_product(res.products["confocal"])


@pytest.fixture(scope="module")
def truth(small_run) -> dict:
    return load_truth(small_run.truth_path)["confocal"]


def _f(values: object) -> np.ndarray:
    """A truth array with JSON nulls (points not acquired) as NaN."""
    return np.array(values, dtype=float)


def test_product_layout_and_own_times(angle, truth) -> None:
    cfg, _, ds = angle
    assert ds["intensity"].dims == ("pass", "depth", "q")
    assert "q" in ds.coords and ds["q"].attrs["units"] == "1/angstrom"
    assert np.all(np.diff(ds["q"].values) > 0)
    assert ds["trigger_time_utc"].dtype.kind == "M"
    assert ds["time"].dims == ("pass", "depth") and ds["time"].attrs["units"] == "s"
    assert ds["time_utc"].dims == ("pass", "depth") and ds["time_utc"].dtype.kind == "M"
    assert ds.sizes["pass"] == truth["n_passes"] and ds.sizes["depth"] == truth["n_depths"]
    np.testing.assert_allclose(ds["depth"].values, truth["depth_um"], atol=1e-6)
    assert ds["depth"].attrs["origin"] == "separator"
    assert ds["depth"].attrs["gauge_length_um"] == pytest.approx(
        truth["thickness_um"] / truth["n_depths"])
    # every point on its own exposure, on the potentiostat clock (trigger-fitted clock)
    acq = np.array(truth["acquired"], bool)
    for name, key in (("time_start", "time_start_s"), ("time_end", "time_end_s")):
        err = ds[name].values[acq] - _f(truth[key])[acq]
        assert np.max(np.abs(err)) < 5e-3, name
    assert np.all(np.isnan(ds["time"].values[~acq]))
    assert np.isnat(ds["time_utc"].values[~acq]).all()
    # time_utc: each point's exposure midpoint on the beamline clock, where the fitted clock
    # maps its potentiostat time
    clock = ClockModel.from_attrs(ds.attrs)
    utc = ds["time_utc"].values[acq].astype("datetime64[ns]").astype(np.int64) * 1e-9
    np.testing.assert_allclose(utc, clock.to_beamline(ds["time"].values[acq]), atol=1e-5)
    # not one shared time per pass: the depths of a pass are a point time apart
    np.testing.assert_allclose(np.nanmedian(np.diff(ds["time"].values, axis=1)),
                               truth["point_time_s"], atol=0.01)
    # electrochemistry averaged over each point's own exposure
    v = ds["voltage_V"].values[acq]
    np.testing.assert_allclose(v, _f(truth["echem"]["voltage_V"])[acq], atol=2e-3)
    assert missing_cf_attrs(ds) == []
    assert (cfg.product_dir / "report" / "confocal.png").read_bytes()[:4] == b"\x89PNG"


def test_missing_point_and_cut_pass_are_recorded(angle, truth) -> None:
    _, _, ds = angle
    acq = np.array(truth["acquired"], bool)
    status = ds["point_status"].values
    meanings = dict(zip(ds["point_status"].attrs["flag_values"].tolist(),
                        ds["point_status"].attrs["flag_meanings"].split(), strict=True))
    assert np.all(status[acq] == 0)
    missing = [tuple(p) for p in truth["missing_points"]]
    assert missing == [(4, 2)]
    assert meanings[int(status[4, 2])] == "missing"
    last = acq.shape[0] - 1
    assert truth["incomplete_last_pass"].startswith("kept")
    cut = np.flatnonzero(~acq[last])
    assert cut.size and all(meanings[int(status[last, j])] == "pass_cut_short" for j in cut)
    assert np.all(np.isnan(ds["soc"].values[~acq]))
    notes = " ".join(np.atleast_1d(ds.attrs["acquisition_notes"]))
    assert "5 of 6 depths" in notes and "cut short" in notes


def test_local_soc_recovers_the_depth_profile(angle, truth) -> None:
    _, _, ds = angle
    ref = _f(truth["phase_fraction"]["FePO4"])
    err = ds["soc"].values - ref
    ok = np.isfinite(ref)
    np.testing.assert_array_equal(np.isfinite(ds["soc"].values), ok)  # no point lost
    rms = float(np.sqrt(np.mean(err[ok] ** 2)))
    assert rms < 0.02, rms
    # Li content through the calibration: x = 1 - SOC for LiFePO4 / FePO4
    np.testing.assert_allclose(ds["x_li_local"].values, 1.0 - ds["soc"].values)


def test_front_arrival_order_and_times(angle, truth) -> None:
    _, _, ds = angle
    r = truth["reaction"]
    pass_s = truth["point_time_s"] * truth["n_depths"]
    half = _f(r["half_time_s"])
    got = ds["front_arrival_time"].values
    assert got.shape == half.shape
    assert list(ds["reaction_kind"].values) == list(r["kinds"])
    defined = np.isfinite(half)
    assert np.all(np.isfinite(got[defined]))
    assert np.max(np.abs(got[defined] - half[defined])) < pass_s
    for k in range(half.shape[0]):  # the order through depth is the truth's order
        d = defined[k]
        np.testing.assert_array_equal(np.argsort(got[k, d]), np.argsort(half[k, d]))
    assert list(ds["first_face"].values) == list(r["first_face"]) == ["separator"] * 2


def test_relaxation_time_within_ten_percent(angle, truth) -> None:
    """The shared τ of the rest after charge within 10 %; a per-depth τ, where the depth's
    deviation is large enough to give one, within 3 of its standard errors (about 10
    points per depth cannot give a per-depth τ to 10 % at this noise)."""
    _, _, ds = angle
    tau = truth["relaxation_time_s"]
    shared = ds["relaxation_time_shared"].values
    assert abs(shared[0] / tau - 1) < 0.10, shared
    per = ds["relaxation_time"].values
    err = ds["relaxation_time_stderr"].values
    fitted = np.isfinite(per)
    assert np.all(np.abs(per[fitted] - tau) < 3 * err[fitted]), (per, err)
    reasons = ds["relaxation_reason"].values[~fitted]
    assert all(r and r != "ok" for r in reasons), reasons


def test_through_depth_spread_and_interpolation(angle, truth) -> None:
    _, _, ds = angle
    ref = _f(truth["phase_fraction"]["FePO4"])
    # SOC noise ~0.015 per point (a weak minority phase now and then missed: up to 0.08)
    d_std = np.abs(ds["soc_depth_std"].values - np.nanstd(ref, axis=1))
    assert np.median(d_std) < 0.01 and d_std.max() < 0.04, d_std
    d_range = np.abs(ds["soc_depth_range"].values - (np.nanmax(ref, 1) - np.nanmin(ref, 1)))
    assert np.median(d_range) < 0.03 and d_range.max() < 0.1, d_range
    assert ds["soc_depth_std"].dims == ("pass",)
    # interpolation only as asked, and labelled
    si = ds["soc_interpolated"]
    assert si.dims == ("time_grid", "depth") and "interpolated" in si.attrs
    assert "INTERPOLATED" in si.attrs["long_name"]
    assert np.all(np.diff(ds["time_grid"].values) == pytest.approx(120.0))


def test_energy_dispersive_gives_the_same_d_spacings(angle, energy) -> None:
    _, _, ad_all = angle
    _, _, ed = energy
    assert ed.attrs["confocal_mode"] == "energy-dispersive"
    assert ed["intensity"].dims == ("pass", "depth", "q")
    names = [str(e).rpartition("::")[2] for e in ed["scan_entry"].values]
    assert names == ["/1.1", *(f"/{k}.1" for k in range(10, 20))]
    # the same points measured angle-dispersively: the AD passes of those scan entries
    ad_names = [str(e).rpartition("::")[2] for e in ad_all["scan_entry"].values]
    ad = ad_all.isel({"pass": [ad_names.index(n) for n in names]})
    both = ad["detected"].values & ed["detected"].values
    # per point, where both d-spacings are determined to better than 5e-4 (relative,
    # combined): the whole-pattern model frees weak, overlapped main peaks (a minority
    # phase's (121), (410)) whose centres carry a few 1e-3 of uncertainty
    sig = np.hypot(ad["d_spacing_stderr"].values, ed["d_spacing_stderr"].values) / \
        ad["d_spacing"].values
    both &= sig < 5e-4
    d_ad = ad["d_spacing"].values[both]
    d_ed = ed["d_spacing"].values[both]
    assert both.sum() > 300
    rel = (d_ed - d_ad) / d_ad
    assert abs(float(np.median(rel))) < 1e-4, np.median(rel)
    assert float(np.percentile(np.abs(rel), 95)) < 1e-3
    # both against the structure: the nominal d of the main peaks where detected
    nominal = ad["peak_d_nominal"].values
    main = ad["peak_is_main"].values
    for ds in (ad, ed):
        d = ds["d_spacing"].where(ds["detected"]).median(("pass", "depth")).values
        ok = main & np.isfinite(d)
        np.testing.assert_allclose(d[ok], nominal[ok], rtol=2e-3)
    # and the same local SOC
    diff = ed["soc"].values - ad["soc"].values
    assert float(np.sqrt(np.nanmean(diff**2))) < 0.03


def test_bad_depth_path_names_the_key(small_run, tmp_path: Path) -> None:
    cfg = _config(small_run, tmp_path, depth_path="instrument/positioners/nope")
    with pytest.raises(ValueError, match=r"confocal\.depth_path") as err:
        reduce_run(cfg, only=["confocal"], scheduler="none")
    assert "nope" in str(err.value) and "confocal.h5" in str(err.value)
    assert not (cfg.product_dir / "confocal.nc").exists()


def test_existing_product_is_kept_when_the_reduction_fails(angle, small_run) -> None:
    cfg, res, _ = angle
    before = res.products["confocal"].read_bytes()
    bad = cfg.model_copy(update={"confocal": cfg.confocal.model_copy(
        update={"epoch_path": "measurement/nope"})})
    with pytest.raises(ValueError, match=r"confocal\.epoch_path"):
        reduce_run(bad, only=["confocal"], scheduler="none")
    assert res.products["confocal"].read_bytes() == before
    assert not list(cfg.product_dir.glob(".*.part"))


def test_soc_from_a_table_calibration(small_run, tmp_path: Path, angle) -> None:
    """A tabulated (quantity, SOC) curve measured on a slow cycle, read from a CSV file with
    a header: here the phase fraction mapped through SOC = f² (deliberately non-linear)."""
    from operando.confocal.soc import soc_from_quantity
    from pipelines.confocal import confocal_plan

    _, _, ds = angle
    f = np.linspace(0.0, 1.2, 57)
    table = tmp_path / "soc_table.csv"
    table.write_text("phase_fraction,soc\n" + "\n".join(f"{a:.6f},{a * a:.8f}" for a in f))
    cfg = load_config(small_run.run_config_path)
    sec = cfg.confocal.model_copy(update={"soc": cfg.confocal.soc.model_copy(
        update={"calibration": "table", "table_file": table})})
    cal = confocal_plan(sec, cfg.peaks).options.soc.calibration
    q = ds["soc_quantity"].values
    soc, _, outside = soc_from_quantity(q, cal)
    np.testing.assert_allclose(soc, np.clip(q, 0, None) ** 2, atol=2e-4, equal_nan=True)
    assert not outside[np.isfinite(q) & (q >= 0)].any()
    table.write_text("d,soc\n1.0,0.0\n")
    with pytest.raises(ValueError, match=r"soc_table\.csv"):
        confocal_plan(sec, cfg.peaks)
