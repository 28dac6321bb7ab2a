"""Trigger clock synchronisation (operando.echem.sync): the simulated run and synthetic
sequences with a known clock model."""

from __future__ import annotations

import time

import h5py
import hdf5plugin  # noqa: F401  (registers the HDF5 compression filters)
import numpy as np
import pytest
import xarray as xr

from operando.echem.sync import (
    ClockModel,
    SyncError,
    clock_from_timestamps,
    fit_clock,
    reference_epoch_from_attrs,
)
from operando.io.echem.biologic import read_mpt
from operando.io.echem.triggers import read_trigger_record
from operando.simulate.beamtime import load_truth
from operando.simulate.clock import ClockModel as TruthClock

REF = 1_773_477_000.0  # a reference epoch (s, UTC)


def synthetic(
    seed: int, *, n: int = 400, period_s: float | tuple[float, float] = 10.0,
    offset_s: float = 1.3, drift_ppm: float = 25.0, drop_fraction: float = 0.1,
    n_spurious: int = 5, jitter_s: float = 1e-3, pause: tuple[int, float] | None = None,
) -> dict:
    """A trigger sequence seen by both clocks.

    True potentiostat times t_k (regular ``period_s`` or uniform in a (lo, hi) range; an
    optional ``pause`` = (after pulse k, extra s)); beamline sends ref + offset + rate·t_k
    (+ jitter); the potentiostat records t_k (+ jitter) minus dropped pulses (never the
    first or last, as the simulator) plus spurious pulses in the middle of random gaps.
    """
    rng = np.random.default_rng(seed)
    if isinstance(period_s, tuple):
        gaps = rng.uniform(*period_s, n - 1)
    else:
        gaps = np.full(n - 1, float(period_s))
    if pause is not None:
        gaps[pause[0]] += pause[1]
    t = 5.0 + np.concatenate([[0.0], np.cumsum(gaps)])
    sent = REF + offset_s + (1 + drift_ppm * 1e-6) * t + rng.normal(0, jitter_s / 2, n)
    n_drop = round(drop_fraction * n)
    missing = np.sort(rng.choice(np.arange(1, n - 1), n_drop, replace=False))
    kept = np.setdiff1d(np.arange(n), missing)
    rec = t[kept] + rng.normal(0, jitter_s, kept.size)
    where = rng.choice(np.arange(n - 1), n_spurious, replace=False)
    spurious = t[where] + rng.uniform(0.3, 0.7, n_spurious) * gaps[where]
    recorded = np.concatenate([rec, spurious])
    order = np.argsort(recorded)
    is_spurious = np.concatenate([np.zeros(rec.size, bool), np.ones(n_spurious, bool)])[order]
    return {"sent": sent, "recorded": recorded[order], "t": t, "missing": missing,
            "spurious": np.flatnonzero(is_spurious), "offset_s": offset_s,
            "drift_ppm": drift_ppm}


def assert_recovered(m: ClockModel, s: dict, *, offset_shift_s: float = 0.0) -> None:
    assert m.method == "triggers"
    assert m.offset_s == pytest.approx(s["offset_s"] + offset_shift_s, abs=0.010)
    assert m.drift_ppm == pytest.approx(s["drift_ppm"], abs=2.0)
    assert m.unmatched_sent == tuple(s["missing"])
    assert m.unmatched_recorded == tuple(s["spurious"])
    assert m.n_matched == s["sent"].size - s["missing"].size
    # the model puts every sent pulse on its true potentiostat time (a wrong reference is
    # absorbed by the offset)
    np.testing.assert_allclose(m.to_potentiostat(s["sent"]), s["t"], atol=0.010)


# --------------------------------------------------------------------------------------
# the simulated run


@pytest.fixture(scope="module")
def sim(small_run) -> dict:
    truth = load_truth(small_run.truth_path)
    ds = read_mpt(small_run.outdir / "echem/cell.mpt", timezone="Europe/Paris")
    with h5py.File(small_run.outdir / "xrd/xrd_0001.h5", "r") as f:
        sent = f["/entry/instrument/detector/timestamp"][()]
    recorded = read_trigger_record(small_run.outdir / "echem/triggers.txt")
    return {"truth": truth, "ds": ds, "sent": sent, "recorded": recorded}


def test_simulated_run_offset_drift_and_unmatched(sim) -> None:
    tc = sim["truth"]["clock"]
    ref = reference_epoch_from_attrs(sim["ds"].attrs)
    assert ref == pytest.approx(tc["acquisition_start_epoch_s"], abs=1e-3)
    m = fit_clock(sim["sent"], sim["recorded"], reference_epoch_s=ref)
    # truth: offset 1.7 s, drift 20 ppm; jitter 1 ms (potentiostat) and 0.5 ms (beamline)
    assert abs(m.offset_s - tc["offset_s"]) < 0.010
    assert abs(m.drift_ppm - tc["drift_ppm"]) < 2.0
    # the least-squares uncertainties are honest: the truth is within 4 sigma
    assert abs(m.offset_s - tc["offset_s"]) < 4 * m.offset_stderr_s + 1e-4
    assert abs(m.drift_ppm - tc["drift_ppm"]) < 4 * m.drift_stderr_ppm + 0.05
    assert m.n_sent == tc["n_sent"] and m.n_recorded == tc["n_recorded"]
    assert list(m.unmatched_sent) == tc["missing_trigger_index"]
    spurious = np.flatnonzero(np.isin(sim["recorded"], tc["spurious_trigger_time_s"]))
    assert spurious.size == len(tc["spurious_trigger_time_s"]) == 1
    assert list(m.unmatched_recorded) == spurious.tolist()
    assert m.n_matched == tc["n_sent"] - len(tc["missing_trigger_index"])
    assert m.rms_residual_s < 0.003 and m.max_abs_residual_s < 0.01
    # same mapping as the truth's clock model (both directions)
    truth = TruthClock(tc["acquisition_start_epoch_s"], tc["offset_s"], tc["drift_ppm"])
    t = np.linspace(0.0, 5000.0, 11)
    np.testing.assert_allclose(m.to_beamline(t), truth.to_beamline_epoch(t), rtol=0, atol=0.01)
    np.testing.assert_allclose(m.to_potentiostat(m.to_beamline(t)), t, rtol=0, atol=1e-6)
    frames = np.asarray(sim["truth"]["xrd"]["time_start_s"])
    np.testing.assert_allclose(m.to_potentiostat(sim["sent"]), frames, atol=0.005)


def test_clock_attrs_are_netcdf_safe_and_round_trip(sim, tmp_path) -> None:
    ref = reference_epoch_from_attrs(sim["ds"].attrs)
    m = fit_clock(sim["sent"], sim["recorded"], reference_epoch_s=ref)
    attrs = m.to_attrs()
    assert all(k.startswith("clock_") for k in attrs)
    for key in ("clock_method", "clock_offset_s", "clock_drift_ppm", "clock_rms_residual_s",
                "clock_max_abs_residual_s", "clock_n_matched", "clock_equation"):
        assert key in attrs
    path = tmp_path / "clock.nc"
    xr.Dataset({"v": ("time", np.arange(3.0))}, attrs=attrs).to_netcdf(path, engine="h5netcdf")
    with xr.open_dataset(path, engine="h5netcdf") as back:
        again = ClockModel.from_attrs(dict(back.attrs))
    assert again.offset_s == m.offset_s and again.drift_ppm == m.drift_ppm
    assert again.unmatched_sent == m.unmatched_sent
    assert again.unmatched_recorded == m.unmatched_recorded
    assert again.n_matched == m.n_matched and again.method == "triggers"


# --------------------------------------------------------------------------------------
# synthetic sequences


def test_irregular_periods_with_a_pause_drops_and_spurious() -> None:
    s = synthetic(1, n=600, period_s=(8.0, 12.0), pause=(250, 1800.0), drift_ppm=-35.0,
                  offset_s=-2.3)
    m = fit_clock(s["sent"], s["recorded"], reference_epoch_s=REF)
    assert_recovered(m, s)
    assert len(s["missing"]) == 60 and len(s["spurious"]) == 5


def test_regular_period_with_a_pause() -> None:
    s = synthetic(2, n=300, period_s=10.0, pause=(120, 437.0), offset_s=0.8)
    m = fit_clock(s["sent"], s["recorded"], reference_epoch_s=REF)
    assert_recovered(m, s)


def test_header_off_by_04_period_is_resolved() -> None:
    """The header start is wrong by 0.4 period: the alignment nearest it is still right."""
    period = 10.0
    s = synthetic(3, period_s=period, offset_s=0.3)
    wrong_ref = REF - 0.4 * period
    m = fit_clock(s["sent"], s["recorded"], reference_epoch_s=wrong_ref)
    # relative to the wrong reference the offset is 0.4 period larger; matching is exact
    assert_recovered(m, s, offset_shift_s=0.4 * period)


def test_header_off_by_06_period_is_a_clear_error() -> None:
    period = 10.0
    s = synthetic(3, period_s=period, offset_s=0.3)
    with pytest.raises(SyncError, match="half a period") as err:
        fit_clock(s["sent"], s["recorded"], reference_epoch_s=REF - 0.6 * period)
    assert "cannot resolve the trigger alignment" in str(err.value)
    # the same with a pause in the sequence (still periodic on both sides of it)
    s = synthetic(4, period_s=period, offset_s=0.3, pause=(150, 1234.5))
    with pytest.raises(SyncError, match="half a period"):
        fit_clock(s["sent"], s["recorded"], reference_epoch_s=REF - 0.6 * period)
    # a period longer than the offset search window (±60 s): the right alignment is not
    # even a candidate, the one-period shift of the chosen one still finds it
    s = synthetic(5, n=100, period_s=100.0, offset_s=0.3)
    with pytest.raises(SyncError, match="half a period"):
        fit_clock(s["sent"], s["recorded"], reference_epoch_s=REF - 60.0)
    m = fit_clock(s["sent"], s["recorded"], reference_epoch_s=REF - 40.0)
    assert_recovered(m, s, offset_shift_s=40.0)


def test_irregular_spacing_resolves_a_large_header_error() -> None:
    """With irregular spacing there is no period ambiguity: a header 25 s off is fine."""
    s = synthetic(5, period_s=(7.0, 13.0), offset_s=0.5)
    m = fit_clock(s["sent"], s["recorded"], reference_epoch_s=REF - 25.0)
    assert_recovered(m, s, offset_shift_s=25.0)


def test_long_run_with_large_drift_and_many_pulses_is_fast() -> None:
    """20 000 pulses over 28 h at 150 ppm: the clocks drift 15 s apart (3 periods) over the
    run, which the span-doubling bootstrap follows. Thousands of pulses take milliseconds."""
    s = synthetic(6, n=20_000, period_s=5.0, drift_ppm=150.0, drop_fraction=0.02,
                  n_spurious=20, offset_s=-0.7)
    t0 = time.perf_counter()
    m = fit_clock(s["sent"], s["recorded"], reference_epoch_s=REF)
    elapsed = time.perf_counter() - t0
    assert_recovered(m, s)
    assert elapsed < 2.0, f"fit_clock took {elapsed:.2f} s for 20 000 pulses"
    s = synthetic(7, n=3000, period_s=4.0)
    t0 = time.perf_counter()
    fit_clock(s["sent"], s["recorded"], reference_epoch_s=REF)
    assert time.perf_counter() - t0 < 0.5


def test_without_drift_fit() -> None:
    s = synthetic(8, drift_ppm=0.0, offset_s=0.05)
    m = fit_clock(s["sent"], s["recorded"], reference_epoch_s=REF, fit_drift=False)
    assert m.drift_ppm == 0.0 and m.drift_stderr_ppm == 0.0
    assert_recovered(m, s)


def test_residuals_over_tolerance_name_the_config_key() -> None:
    s = synthetic(9, jitter_s=0.08)
    with pytest.raises(SyncError, match=r"sync\.max_rms_residual_s = 0\.05 s") as err:
        fit_clock(s["sent"], s["recorded"], reference_epoch_s=REF)
    assert "worst pulse: sent #" in str(err.value)
    s = synthetic(10, n=500, jitter_s=0.04)
    with pytest.raises(SyncError, match=r"exceeds sync\.max_abs_residual_s = 0\.1 s") as err:
        fit_clock(s["sent"], s["recorded"], reference_epoch_s=REF, max_abs_residual_s=0.1)
    assert "worst pulse: sent #" in str(err.value) and "recorded #" in str(err.value)
    # within tolerance when the tolerance allows it
    m = fit_clock(s["sent"], s["recorded"], reference_epoch_s=REF, max_abs_residual_s=0.5)
    assert m.rms_residual_s == pytest.approx(0.04 * np.sqrt(1.25), rel=0.15)


def test_too_few_pulses_and_bad_input() -> None:
    s = synthetic(11, n=4, drop_fraction=0.0, n_spurious=0)
    with pytest.raises(SyncError, match="too few trigger pulses"):
        fit_clock(s["sent"], s["recorded"], reference_epoch_s=REF)
    with pytest.raises(SyncError, match="too few trigger pulses"):
        fit_clock(np.array([]), np.array([]), reference_epoch_s=REF)
    s = synthetic(12)
    sent = s["sent"].copy()
    sent[7] = np.nan
    with pytest.raises(SyncError, match=r"expected finite times, found nan at index 7"):
        fit_clock(sent, s["recorded"], reference_epoch_s=REF)
    with pytest.raises(SyncError, match="1-D"):
        fit_clock(s["sent"].reshape(20, 20), s["recorded"], reference_epoch_s=REF)


def test_a_record_from_another_run_is_refused() -> None:
    s = synthetic(13, period_s=10.0)
    rng = np.random.default_rng(0)
    unrelated = np.sort(rng.uniform(0, s["t"][-1], s["recorded"].size))
    with pytest.raises(SyncError, match=r"exceeds sync\.max_rms_residual_s|only \d+ trigger"):
        fit_clock(s["sent"], unrelated, reference_epoch_s=REF)
    # a timezone error (header one hour off): the periodic pulses still line up 360 periods
    # apart over the last 400 s of the run, but far too few of them
    with pytest.raises(SyncError, match=r"only \d+ trigger pulses matched"):
        fit_clock(s["sent"], s["recorded"], reference_epoch_s=REF - 3600.0)
    # a day off: no overlap at all
    with pytest.raises(SyncError, match=r"no consistent offset within ±60\.0 s"):
        fit_clock(s["sent"], s["recorded"], reference_epoch_s=REF - 86400.0)


def test_clock_from_timestamps() -> None:
    m = clock_from_timestamps(reference_epoch_s=REF, fixed_offset_s=2.0)
    assert m.method == "timestamps" and m.drift_ppm == 0.0
    # fixed_offset_s is added to beamline times: beamline REF + 100 s -> potentiostat 102 s
    assert m.to_potentiostat(REF + 100.0) == pytest.approx(102.0)
    assert m.to_beamline(102.0) == pytest.approx(REF + 100.0)
    attrs = m.to_attrs()
    assert attrs["clock_method"] == "timestamps" and np.isnan(attrs["clock_rms_residual_s"])
    with pytest.raises(ValueError, match="finite"):
        clock_from_timestamps(reference_epoch_s=float("nan"))


def test_reference_epoch_from_attrs() -> None:
    assert reference_epoch_from_attrs(
        {"acquisition_start_utc": "2026-03-14T08:30:00.000+00:00"}) == REF
    assert reference_epoch_from_attrs(
        {"acquisition_start_utc": "2026-03-14T09:30:00.250+01:00"}) == REF + 0.25
    with pytest.raises(ValueError, match="no UTC offset"):
        reference_epoch_from_attrs({"acquisition_start_utc": "2026-03-14T08:30:00"})
    with pytest.raises(ValueError, match="expected 'acquisition_start_utc'"):
        reference_epoch_from_attrs({})
