"""Exposure-averaged electrochemistry (operando.echem.attach): analytic signals and the
simulated run's truth."""

from __future__ import annotations

import time

import h5py
import hdf5plugin  # noqa: F401  (registers the HDF5 compression filters)
import numpy as np
import pytest
import xarray as xr

from operando.echem.attach import exposure_average, interval_mean, majority_label
from operando.echem.faraday import add_faraday
from operando.echem.segments import add_segments
from operando.echem.sync import fit_clock, reference_epoch_from_attrs
from operando.io.echem.biologic import read_mpt
from operando.io.echem.triggers import read_trigger_record
from operando.simulate.beamtime import load_truth
from operando.simulate.timeline import N_WINDOW_SAMPLES

D = "echem_time"


def toy(t: np.ndarray, **variables: np.ndarray) -> xr.Dataset:
    return xr.Dataset({k: (D, np.asarray(v)) for k, v in variables.items()},
                      coords={"time_s": (D, np.asarray(t, dtype=float))})


# --------------------------------------------------------------------------------------
# analytic signals


def test_linear_signal_on_uneven_samples_is_exact() -> None:
    rng = np.random.default_rng(0)
    t = np.sort(np.concatenate([[0.0, 100.0], rng.uniform(0, 100, 200)]))
    ds = toy(t, voltage_V=2.0 * t + 1.0)
    a = rng.uniform(0, 100, 500)
    b = np.minimum(a + rng.uniform(0, 30, 500), 100.0)
    out = exposure_average(ds, a, b)
    # mean of 2t + 1 over [a, b] = a + b + 1
    np.testing.assert_allclose(out["voltage_V"].values, a + b + 1.0, rtol=1e-12)
    assert not out["outside_echem_range"].values.any()
    np.testing.assert_array_equal(out["time_start"].values, a)
    np.testing.assert_array_equal(out["time_end"].values, b)


def test_matches_a_dense_trapezoid_of_the_interpolant() -> None:
    rng = np.random.default_rng(1)
    t = np.cumsum(rng.uniform(0.5, 2.0, 300))
    v = np.cumsum(rng.normal(0, 1, t.size))
    a = rng.uniform(t[0], t[-1], 200)
    b = np.minimum(a + rng.uniform(0, 40, 200), t[-1])
    got = interval_mean(t, v, a, b)
    for k in range(0, 200, 17):
        # dense grid containing the knots: the trapezoid rule is exact for the interpolant
        grid = np.union1d(np.linspace(a[k], b[k], 50), t[(t > a[k]) & (t < b[k])])
        vals = np.interp(grid, t, v)
        want = np.sum(0.5 * (vals[1:] + vals[:-1]) * np.diff(grid)) / (b[k] - a[k])
        assert got[k] == pytest.approx(want, rel=1e-10, abs=1e-12)


def test_step_signal_with_and_without_a_repeated_sample_time() -> None:
    # a step at t = 5 recorded twice (EC-Lab writes a row at the step change): exact step
    t = np.array([0, 1, 2, 3, 4, 5, 5, 6, 7, 8, 9, 10], dtype=float)
    v = np.where(np.arange(t.size) >= 6, 1.0, 0.0)
    np.testing.assert_allclose(interval_mean(t, v, np.array([4.0, 5.0, 0.0, 2.5]),
                                             np.array([7.0, 8.0, 5.0, 2.5])),
                               [2.0 / 3.0, 1.0, 0.0, 0.0])
    # without the repeated row the interpolant ramps from 4 to 5: ∫_3^7 = 0.5 + 2
    t2 = np.arange(11, dtype=float)
    v2 = (t2 >= 5).astype(float)
    assert interval_mean(t2, v2, np.array([3.0]), np.array([7.0]))[0] == pytest.approx(0.625)
    # zero-length intervals: the interpolated value
    np.testing.assert_allclose(interval_mean(t2, v2, np.array([4.25, 10.0, 0.0]),
                                             np.array([4.25, 10.0, 0.0])), [0.25, 1.0, 0.0])


def test_nan_sample_only_spoils_the_intervals_that_touch_it() -> None:
    t = np.arange(20, dtype=float)
    v = t.copy()
    v[10] = np.nan
    got = interval_mean(t, v, np.array([0.0, 2.0, 9.5, 12.0, 8.0]),
                        np.array([5.0, 9.0, 9.7, 19.0, 15.0]))
    np.testing.assert_allclose(got[[0, 1, 3]], [2.5, 5.5, 15.5])
    assert np.isnan(got[2]) and np.isnan(got[4])


def test_out_of_range_points_are_nan_and_flagged_never_an_error() -> None:
    t = np.arange(11, dtype=float)
    ds = toy(t, current_A=np.ones(11), segment=np.full(11, "charge"),
             cycle=np.zeros(11, dtype=np.int64))
    a = np.array([-1.0, 2.0, 9.0, 20.0, np.nan, 0.0, 10.0])
    b = np.array([1.0, 3.0, 11.0, 25.0, 1.0, 10.0, 10.0])
    out = exposure_average(ds, a, b)
    outside = out["outside_echem_range"].values
    np.testing.assert_array_equal(outside, [True, False, True, True, True, False, False])
    assert np.all(np.isnan(out["current_A"].values[outside]))
    np.testing.assert_allclose(out["current_A"].values[~outside], 1.0)
    assert list(out["segment"].values[outside]) == [""] * 4
    assert list(out["cycle"].values[outside]) == [-1] * 4
    assert not out["straddles_step"].values[outside].any()
    with pytest.raises(ValueError, match=r"time_end_s >= time_start_s, found \[3.0, 2.0\]"):
        exposure_average(ds, np.array([0.0, 3.0]), np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="of one length"):
        exposure_average(ds, np.zeros(3), np.zeros(2))
    with pytest.raises(ValueError, match="non-decreasing"):
        exposure_average(toy(t[::-1], current_A=np.ones(11)), a, b)
    with pytest.raises(ValueError, match="numeric"):
        exposure_average(ds, a, b, variables=("segment",))


def test_straddle_flag_labels_and_attributes() -> None:
    # charge 0-5 s (step 0), rest 5-8 s (step 1), charge again 8-20 s (step 2), cycle 0 then 1
    t = np.arange(21, dtype=float)
    cur = np.where((t >= 5) & (t < 8), 0.0, 1e-3)
    seg = np.where(cur > 0, "charge", "rest")
    step = np.select([t < 5, t < 8], [0, 1], 2)
    cyc = (t >= 8).astype(np.int64)
    ds = toy(t, current_A=cur, segment=seg, step=step, cycle=cyc,
             voltage_V=3.4 + 0.01 * t)
    ds["voltage_V"].attrs.update(units="V", long_name="working electrode potential")
    a = np.array([1.0, 4.0, 5.0, 4.5, 2.0, 6.5, 9.0, 4.0])
    b = np.array([4.0, 6.0, 8.0, 9.0, 12.0, 6.5, 12.0, 5.0])
    out = exposure_average(ds, a, b)
    # a step lies strictly inside: 5 (in [4,6], [4.5,9], [2,12]) or 8 (in [4.5,9], [2,12])
    np.testing.assert_array_equal(out["straddles_step"].values,
                                  [False, True, False, True, True, False, False, False])
    # majority: [4,6] 1 s charge + 1 s rest -> tie -> earliest (charge); [4.5,9] rest 3 s
    # vs charge 0.5 + 1; [2,12] charge 3 + 4 (two runs summed) vs rest 3 -> charge
    assert list(out["segment"].values) == ["charge", "charge", "rest", "rest", "charge",
                                           "rest", "charge", "charge"]
    # cycle 1 from t = 8: [2,12] has 6 s of cycle 0 and 4 s of cycle 1
    assert list(out["cycle"].values) == [0, 0, 0, 0, 0, 0, 1, 0]
    v = out["voltage_V"]
    assert v.attrs["units"] == "V"
    assert v.attrs["long_name"] == "working electrode potential, mean over the exposure"
    assert v.attrs["cell_methods"].startswith("time: mean")
    assert out["time_start"].attrs["units"] == "s" and out["time_end"].dims == ("time",)
    # a current jump alone (no step / segment columns) also counts; below threshold not
    plain = toy(t, current_A=np.where(t >= 10, 2e-3, 1e-3))
    np.testing.assert_array_equal(
        exposure_average(plain, np.array([9.0, 10.0]), np.array([11.0, 11.0]),
                         dim="frame")["straddles_step"].values, [True, False])
    np.testing.assert_array_equal(
        exposure_average(plain, np.array([9.0]), np.array([11.0]),
                         current_jump_A=5e-3)["straddles_step"].values, [False])


def test_majority_label_many_runs_vectorised() -> None:
    t = np.arange(200_001, dtype=float)
    lab = (t // 7).astype(np.int64)  # a new label every 7 s
    rng = np.random.default_rng(2)
    a = rng.uniform(0, 199_000, 100_000)
    b = a + rng.uniform(0, 30, a.size)
    t0 = time.perf_counter()
    got = majority_label(t, lab, a, b)
    elapsed = time.perf_counter() - t0
    # brute force on a few points: the label with most time in [a, b] (labels hold forward)
    for k in range(0, a.size, 9973):
        edges = np.arange(7 * np.floor(a[k] / 7), b[k] + 7, 7.0)
        cover = np.clip(np.minimum(edges + 7, b[k]) - np.maximum(edges, a[k]), 0, None)
        assert got[k] == int(edges[np.argmax(cover)] // 7)
    assert elapsed < 2.0


# --------------------------------------------------------------------------------------
# the simulated run


@pytest.fixture(scope="module")
def sim(small_run) -> dict:
    truth = load_truth(small_run.truth_path)
    te = truth["echem"]
    ds = add_segments(read_mpt(small_run.outdir / "echem/cell.mpt", timezone="Europe/Paris"))
    ds = add_faraday(ds, active_mass_mg=te["active_mass_mg"],
                     molar_mass_g_mol=te["molar_mass_g_mol"],
                     electrons_per_formula_unit=te["electrons_per_formula_unit"],
                     x0=te["x_start"])
    with h5py.File(small_run.outdir / "xrd/xrd_0001.h5", "r") as f:
        stamps = f["/entry/instrument/detector/timestamp"][()]
        count = f["/entry/instrument/detector/count_time"][()]
    recorded = read_trigger_record(small_run.outdir / "echem/triggers.txt")
    return {"truth": truth, "ds": ds, "stamps": stamps, "count": count, "recorded": recorded}


def midpoint_rule_bound(t: np.ndarray, v: np.ndarray, a: np.ndarray, b: np.ndarray,
                        n: int = N_WINDOW_SAMPLES) -> np.ndarray:
    """Bound on |truth − exact mean| per window, where the truth's mean is the n-point
    midpoint rule (operando.simulate.timeline.window_mean) of a function that is linear
    between the knots t. The midpoint rule is exact on linear pieces; a kink of slope change
    Δs inside a sub-interval of width h = Δt/n errs by at most |Δs|·h²/8 (the error is
    linear in the function, so kinks add up), i.e. the mean by Σ|Δs|·h²/(8Δt)."""
    slope = np.diff(v) / np.diff(t)
    kink_t, kink = t[1:-1], np.abs(np.diff(slope))
    out = np.zeros(a.size)
    for k in range(a.size):
        inside = (kink_t > a[k]) & (kink_t < b[k])
        h = (b[k] - a[k]) / n
        out[k] = kink[inside].sum() * h**2 / 8 / (b[k] - a[k])
    return out


def _switch_times(truth: dict) -> np.ndarray:
    return np.array([seg["start_s"] for seg in truth["echem"]["segments"][1:]])


def test_exposure_average_equals_truth_on_truth_intervals(sim) -> None:
    """Charge, x and voltage per frame = the truth's exposure means on [time_start_s,
    time_end_s].

    Tolerance: the mpt prints time and Q with 16 significant digits (%.15E), so Q and x(t)
    are exact piecewise-linear functions of t with knots at the samples (the simulator
    samples every segment boundary) up to ~1e-15 relative; the exact integral then differs
    from the truth only by the truth's own 32-point midpoint rule, bounded by
    :func:`midpoint_rule_bound` (zero away from a kink). ``Ewe`` and ``I`` are printed with
    8 significant digits (%.7E): 3.4 V -> 1e-7 V, 1.7 mA -> 1e-10 A.
    """
    truth = sim["truth"]
    xt = truth["xrd"]
    a, b = np.asarray(xt["time_start_s"]), np.asarray(xt["time_end_s"])
    out = exposure_average(sim["ds"], a, b)
    t = sim["ds"]["time_s"].values
    te = xt["echem"]
    q = sim["ds"]["charge_C"].values
    tol_q = midpoint_rule_bound(t, q, a, b) + 1e-12
    assert np.all(np.abs(out["charge_C"].values - te["charge_C"]) <= tol_q)
    q_th = truth["echem"]["capacity_theoretical_C"]
    assert np.all(np.abs(out["x_li"].values - te["x_li"]) <= tol_q / q_th + 1e-14)
    np.testing.assert_allclose(out["faraday_fraction"].values, 1.0 - np.asarray(te["x_li"]),
                               atol=float(tol_q.max() / q_th) + 1e-14)
    tol_v = midpoint_rule_bound(t, sim["ds"]["voltage_V"].values, a, b) + 1e-6
    assert np.all(np.abs(out["voltage_V"].values - te["voltage_V"]) <= tol_v)

    # straddle: exactly the frames with a charge/rest/discharge switch strictly inside
    sw = _switch_times(truth)
    expected = ((sw[None, :] > a[:, None]) & (sw[None, :] < b[:, None])).any(axis=1)
    assert expected.any(), "the preset should have a frame across a switch"
    np.testing.assert_array_equal(out["straddles_step"].values, expected)
    # away from a switch the current is the programmed one (8 significant digits)
    np.testing.assert_allclose(out["current_A"].values[~expected],
                               np.asarray(te["current_A"])[~expected], rtol=1e-7, atol=1e-12)
    # the frame across a switch is charged with the current's interpolated ramp, which is
    # why it is flagged: its mean current differs from the programmed one
    i_prog = truth["echem"]["current_A"]
    assert np.all(np.abs(out["current_A"].values[expected]
                         - np.asarray(te["current_A"])[expected]) > 0.01 * i_prog)

    # segment: the truth segment covering most of each exposure
    segs = truth["echem"]["segments"]
    cover = np.array([[max(0.0, min(b[k], s["end_s"]) - max(a[k], s["start_s"]))
                       for s in segs] for k in range(a.size)])
    want = [segs[k]["name"] for k in np.argmax(cover, axis=1)]
    assert list(out["segment"].values) == want
    assert not out["outside_echem_range"].values.any()
    assert set(out["cycle"].values.tolist()) == {0}


def test_exposure_average_through_the_fitted_clock(sim) -> None:
    """The same per-frame charge from the NeXus timestamps + count_time mapped through the
    clock fitted on the triggers.

    Tolerance: a timing error δ moves a window mean of Q by at most max|I|·|δ|. δ is the
    beamline timestamp jitter (σ = 0.5 ms) plus the clock model's error (~0.2 ms for 144
    pulses of ~1 ms jitter); 5 ms covers > 9σ. On top, the truth's midpoint-rule bound.
    (A clock wrong by its 1.7 s offset would miss by ~3e-3 C: this test would fail.)
    """
    ds, truth = sim["ds"], sim["truth"]
    m = fit_clock(sim["stamps"], sim["recorded"], reference_epoch_s=reference_epoch_from_attrs(
        ds.attrs))
    a = m.to_potentiostat(sim["stamps"])
    b = m.to_potentiostat(sim["stamps"] + sim["count"])
    out = exposure_average(ds, a, b)
    te = truth["xrd"]["echem"]
    i_max = float(np.abs(ds["current_A"].values).max())
    tol = i_max * 5e-3 + midpoint_rule_bound(ds["time_s"].values, ds["charge_C"].values,
                                             a, b) + 1e-12
    err = np.abs(out["charge_C"].values - te["charge_C"])
    assert np.all(err <= tol), f"max error {err.max():.3g} C"
    np.testing.assert_allclose(a, truth["xrd"]["time_start_s"], atol=5e-3)
    sw = _switch_times(truth)
    expected = ((sw[None, :] > a[:, None]) & (sw[None, :] < b[:, None])).any(axis=1)
    np.testing.assert_array_equal(out["straddles_step"].values, expected)
