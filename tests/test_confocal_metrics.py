"""Confocal heterogeneity metrics and SOC calibration, checked against the depth-model truth.

Measured SOC = the truth FePO4 fraction (= SOC) of the depth model averaged over each
point's exposure (point (p, i) sees depth i) + Gaussian noise σ = 0.01, fixed seed; truth
from :func:`operando.simulate.confocal.reaction_truth`. No frames, no files.

Tolerances and what they rest on (30 noise seeds, see the notes per test): front arrival
t½ is within 0.3 pass interval of the truth at every depth of every preset; the local
rate r(z) reaches 5 % at interior depths of "small" and "lfp-1c" (rms 1.5–2.6 %), not at
10C (rms 3–5 %, 5 points per depth in a 324 s charge); the relaxation time is limited by
the information in ~10 noisy points per depth (Cramér–Rao σ_τ/τ ≈ 57 % per depth for
|A| = 0.1 on "small"), so per-depth τ is checked against its own stderr and the shared τ
at 10 % where its stderr allows it (lfp-1c, lfp-10c).
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass

import numpy as np
import pytest
import xarray as xr

from operando.confocal.metrics import (
    depth_spread,
    first_face,
    front_metrics,
    heterogeneity_dataset,
    interpolate_to_grid,
)
from operando.confocal.soc import SocCalibration, soc_from_quantity, x_li_from_soc
from operando.echem.segments import SegmentRun, segment_runs
from operando.simulate.confocal import (
    confocal_schedule,
    make_depth_model,
    reaction_truth,
)
from operando.simulate.echem import simulate_echem
from operando.simulate.presets import get_preset

PRESETS = ("small", "lfp-1c", "lfp-10c")
NOISE = 0.01
SEED = 0


@dataclass(frozen=True)
class Run:
    name: str
    time_s: np.ndarray  # (pass, depth) exposure midpoints, NaN where not acquired
    soc: np.ndarray  # (pass, depth) measured SOC, NaN where not acquired
    depth_um: np.ndarray
    segments: list[SegmentRun]
    truth: object  # ReactionTruth
    pass_interval_s: float
    c_rate_per_h: float
    thickness_um: float


@functools.cache
def _run(name: str, seed: int = SEED) -> Run:
    p = get_preset(name)
    echem = simulate_echem(p.echem)
    model = make_depth_model(echem, p.confocal)
    sched = confocal_schedule(p.confocal, echem.duration_s)
    acquired = np.isfinite(sched.time_start_s)
    t0 = np.where(acquired, sched.time_start_s, 0.0)
    frac = np.diagonal(model.exposure_average(t0, t0 + sched.count_time_s),
                       axis1=1, axis2=2)
    noise = np.random.default_rng(seed).normal(0.0, NOISE, frac.shape)
    soc = np.where(acquired, frac + noise, np.nan)
    labels = np.asarray(echem.segment_names)[echem.segment_index]
    return Run(
        name=name, time_s=sched.time_mid_s, soc=soc, depth_um=model.depth_um,
        segments=segment_runs(labels, echem.time_s), truth=reaction_truth(model),
        pass_interval_s=p.confocal.n_depths * p.confocal.point_time_s,
        c_rate_per_h=p.echem.c_rate_per_h, thickness_um=p.confocal.thickness_um,
    )


@functools.cache
def _dataset(name: str) -> xr.Dataset:
    r = _run(name)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning from NaN points or fits
        return heterogeneity_dataset(r.time_s, r.soc, r.depth_um, "separator", r.segments)


# ------------------------------------------------------------------------------- fronts


@pytest.mark.parametrize("name", PRESETS)
def test_segments_from_the_echem_record_match_the_protocol(name: str) -> None:
    r = _run(name)
    p = get_preset(name)
    echem = simulate_echem(p.echem)
    assert [g.kind for g in r.segments] == list(echem.segment_names)
    np.testing.assert_allclose([(g.start_s, g.end_s) for g in r.segments],
                               echem.segment_bounds_s)


@pytest.mark.parametrize("name", PRESETS)
def test_front_arrival_order_and_time(name: str) -> None:
    """|t½ − truth| < one pass interval wherever the truth has an arrival (reached: ≤ 0.3
    pass at every depth over 30 seeds), arrival order as the truth, separator first."""
    r, ds = _run(name), _dataset(name)
    tr = r.truth
    assert list(ds.reaction_kind.values) == list(tr.kinds)
    for k in range(len(tr.kinds)):
        truth = tr.half_time_s[k]
        est = ds.front_arrival_time.values[k]
        defined = np.isfinite(truth)
        assert defined.sum() >= 3
        assert np.all(np.isfinite(est[defined])), ds.front_reason.values[k]
        err = np.abs(est[defined] - truth[defined])
        assert err.max() < r.pass_interval_s, (k, err / r.pass_interval_s)
        # order: every consecutive pair of defined depths arrives in the truth's order
        np.testing.assert_array_equal(np.sign(np.diff(est[defined])),
                                      np.sign(np.diff(truth[defined])))
        assert ds.first_face.values[k] == "separator" == tr.first_face[k]
        assert ds.front_slope.values[k] > 2 * ds.front_slope_stderr.values[k]
        np.testing.assert_allclose(ds.arrival_after_reaction_start.values[k],
                                   est - ds.reaction_start.values[k])
        # the local change (also where the transition is cut by the segment end). Over 16
        # seeds |error| ≤ 0.035 except at the first depth (≤ 0.07): it reacts from the
        # segment's first instant, before its first point, and where no earlier point
        # anchors SOC(T0) (the protocol's first charge) the fit extrapolates back to it.
        err = np.abs(ds.soc_change.values[k] - tr.change[k])
        assert err[0] < 0.08 and err[1:].max() < 0.05, err


# interior depths (1 .. N-2) / first and last depth; None = only the stderr check.
# Over 30 seeds, rms (max) of r(z)/truth − 1:
#   small   interior 1.3–2.1 % (5.3 %), first 1.7–2.1 % (5.1 %), last 2.4–4.4 % (9.8 %)
#   lfp-1c  interior 1.4–2.6 % (7.3 % at depth N-2 of the charge), first 2.2–2.6 % bias
#           +2.7 % (7.0 %), last (charge cut at ΔSOC 0.47) 5.5 % (20.6 %)
#   lfp-10c depths 1 .. N-3: 2.5–4.7 % (12.3 %); first depth biased +9.5 % (the front
#           enters between the first two samples, 54 s apart, of a 100 s transition); the
#           last 2 depths are cut by the segment end and sampled by ~2 points: their rate
#           is NaN ("faster than the sampling") in about half the seeds, or off by up to 2x.
# So 5 % holds for small and lfp-1c interior depths at ~2.5 rms: the fixed seed meets it
# everywhere; over 20 other seeds 3 lfp-1c runs had one depth at 5.3–6.0 %. 10C
# reaches ~12 % at depths 1 .. N-3 and is tested at 15 %.
RATE_TOL = {"small": (0.05, 0.12), "lfp-1c": (0.05, 0.25), "lfp-10c": (0.15, None)}
N_CUT = {"small": 0, "lfp-1c": 0, "lfp-10c": 1}  # depths before N-1 excluded from interior


@pytest.mark.parametrize("name", PRESETS)
def test_local_rate_against_truth(name: str) -> None:
    r, ds = _run(name), _dataset(name)
    tr = r.truth
    tol_in, tol_edge = RATE_TOL[name]
    est = ds.local_rate_per_h.values
    se = ds.local_rate_per_h_stderr.values
    rel = est / tr.local_rate_per_h - 1.0
    n = est.shape[1]
    interior = np.arange(1, n - 1 - N_CUT[name])
    assert np.all(np.isfinite(rel[:, interior]))
    assert np.abs(rel[:, interior]).max() < tol_in, rel
    if tol_edge is not None:
        edges = rel[:, [0, n - 1]]
        assert np.all(np.isfinite(edges))
        assert np.abs(edges).max() < tol_edge, rel
    # the stated uncertainty covers the error wherever a rate is given
    ok = np.isfinite(est)
    assert np.all(np.abs(est - tr.local_rate_per_h)[ok] < 4 * se[ok])
    # relative rate against the given C-rate
    ds_c = heterogeneity_dataset(r.time_s, r.soc, r.depth_um, "separator", r.segments,
                                 global_rate_per_h=r.c_rate_per_h)
    np.testing.assert_allclose(ds_c.relative_rate.values, est / r.c_rate_per_h)
    assert list(ds_c.global_rate_source.values) == ["given"] * est.shape[0]
    # from the depth-mean SOC when no rate is given: the Faraday rate
    np.testing.assert_allclose(ds.global_rate_per_h.values, tr.global_rate_per_h, rtol=0.03)


def test_given_soc_stderr_is_used_as_weights() -> None:
    r, ds = _run("small"), _dataset("small")
    ds_e = heterogeneity_dataset(r.time_s, r.soc, r.depth_um, "separator", r.segments,
                                 soc_stderr=np.full(r.soc.shape, NOISE),
                                 global_rate_per_h=[np.nan, r.c_rate_per_h])
    assert ds_e.attrs["stderr_basis"].startswith("given soc_stderr")
    err = np.abs(ds_e.front_arrival_time.values - r.truth.half_time_s)
    assert err.max() < r.pass_interval_s
    # the pooled-residual stderr estimates the same noise: same scale as the absolute one
    ratio = ds.local_rate_per_h_stderr.values / ds_e.local_rate_per_h_stderr.values
    assert np.all((ratio > 0.6) & (ratio < 1.6)), ratio
    np.testing.assert_allclose(ds_e.global_rate_per_h.values,
                               [ds.global_rate_per_h.values[0], r.c_rate_per_h])
    assert list(ds_e.global_rate_source.values) == ["depth-mean SOC change / duration",
                                                    "given"]


def test_transition_cut_by_the_segment_end_reads_fractions_of_the_partial_change() -> None:
    """A logistic centred 60 s before the segment end: ΔSOC is partial and t10/t½/t90 are
    10/50/90 % of that partial change (closed form)."""
    t_end, t_c, w = 1000.0, 940.0, 40.0
    t = np.arange(5.0, 1400.0, 20.0)[:, None]
    rng = np.random.default_rng(3)

    def sig(x: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(x - t_c) / w))

    # after the segment end the SOC stays where it was (a rest with no relaxation)
    soc = np.where(t <= t_end, sig(t), sig(np.array(t_end))) + rng.normal(0, 0.005, t.shape)
    f = front_metrics(t, soc, SegmentRun("charge", 0.0, t_end))
    s0, s1 = sig(np.array(0.0)), sig(np.array(t_end))
    assert f.reason[0] == "ok"
    np.testing.assert_allclose(f.change[0], s1 - s0, atol=0.02)
    for q, got in ((0.1, f.t10_s[0]), (0.5, f.t50_s[0]), (0.9, f.t90_s[0])):
        y = s0 + q * (s1 - s0)
        truth = t_c + w * np.log(y / (1 - y))
        assert abs(got - truth) < 8.0, (q, got, truth)


def test_small_change_gives_nan_with_reason() -> None:
    t = np.arange(0.0, 1000.0, 20.0)[:, None]
    soc = 0.5 + 0.05 * (t / 1000.0) + np.random.default_rng(0).normal(0, 0.005, t.shape)
    f = front_metrics(t, soc, SegmentRun("charge", 0.0, 1000.0), min_change=0.2)
    assert np.isnan(f.t50_s[0]) and np.isnan(f.rate_per_h[0])
    assert "min_change" in f.reason[0]
    assert abs(f.change[0] - 0.05) < 0.02


# ------------------------------------------------------------------------------ relaxation

# Shared τ over 21 seeds (rms, fraction within 10 %): small 10.3 %, 67 % (Cramér–Rao
# ≈ 11–13 %: 5 depths, 10 points each, |A| = 0.08–0.36); lfp-1c 5.1 %, 95 %; lfp-10c
# 4.9 % / 4.4 %, 100 % / 95 %. 10 % is tested where the rms allows it, "small" against
# 3 stderr. A rest where nothing relaxes (after the 1C discharge) must give NaN.
SHARED_TAU_TOL = {"small": None, "lfp-1c": 0.10, "lfp-10c": 0.10}


@pytest.mark.parametrize("name", PRESETS)
def test_relaxation_time_against_truth(name: str) -> None:
    r, ds = _run(name), _dataset(name)
    tr = r.truth
    tau = tr.relaxation_time_s
    assert ds.sizes["rest"] == len(tr.rest_bounds_s)
    for q in range(ds.sizes["rest"]):
        amp = np.abs(tr.rest_amplitude[q])
        shared = float(ds.relaxation_time_shared.values[q])
        shared_se = float(ds.relaxation_time_shared_stderr.values[q])
        note = ds.relaxation_shared_note.values[q]
        if amp.max() < 0.03:  # nothing relaxes: no τ
            assert np.isnan(shared), note
        if amp.max() >= 0.3:
            assert np.isfinite(shared), note
            tol = SHARED_TAU_TOL[name]
            if tol is not None:
                assert abs(shared / tau - 1) < tol, shared
        if np.isfinite(shared):  # e.g. after the 2C discharge, one depth at |A| = 0.05
            assert abs(shared - tau) < 3 * shared_se, (shared, shared_se, note)
        # per depth: reported only where the data can give τ to 20 % (max_tau_rel_stderr),
        # i.e. |A| ≳ 0.15–0.35 here; within 3 stderr (max |pull| 3.1 over 30 seeds); rms
        # 5–8 % at |A| ≈ 0.45, 14 % at |A| = 0.2–0.36, so 10 % per depth is not reached
        per = ds.relaxation_time.values[q]
        per_se = ds.relaxation_time_stderr.values[q]
        fitted = np.isfinite(per)
        assert np.all(amp[fitted] >= 0.03)
        assert np.all(np.abs(per[fitted] - tau) < 3 * per_se[fitted])
        if amp.max() >= 0.4:  # Cramér–Rao σ_τ/τ 6–8 % (lfp-1c, lfp-10c); small (0.36): 14 %
            assert fitted[np.argmax(amp)]
        reasons = ds.relaxation_reason.values[q]
        assert np.all((reasons == "ok") == fitted)


def test_relaxation_amplitude_below_threshold_is_nan_with_reason() -> None:
    t = np.arange(0.0, 1200.0, 60.0)[:, None] * np.ones((1, 3))
    amp = np.array([0.3, 0.01, -0.2])
    soc = 0.5 + amp * np.exp(-t / 300.0) + np.random.default_rng(2).normal(0, 0.005, t.shape)
    ds = heterogeneity_dataset(t, soc, np.array([10.0, 50.0, 90.0]), "separator",
                               [SegmentRun("rest", 0.0, 1200.0)])
    assert ds.sizes["reaction"] == 0
    reasons = ds.relaxation_reason.values[0]
    assert reasons[0] == "ok" and reasons[2] == "ok"
    assert "amplitude" in reasons[1] and np.isnan(ds.relaxation_time.values[0, 1])
    assert abs(ds.relaxation_time_shared.values[0] / 300.0 - 1) < 0.05
    np.testing.assert_allclose(ds.relaxation_amplitude.values[0, [0, 2]], amp[[0, 2]],
                               atol=0.02)


# ------------------------------------------------------------------------------ spread, NaN


def test_missing_points_and_cut_last_pass() -> None:
    """'small' has a missing point (pass 4, depth 2) and keeps its last pass cut short."""
    r, ds = _run("small"), _dataset("small")
    missing = np.isnan(r.time_s)
    assert missing[4, 2] and missing[-1, -1] and not missing[-1, 0]
    n = r.soc.shape[1]
    np.testing.assert_array_equal(ds.soc_depth_count.values, n - missing.sum(axis=1))
    assert np.isfinite(ds.soc_depth_std.values).all()
    # knock out the points nearest each depth's charge arrival, and a whole pass
    soc = r.soc.copy()
    t50 = r.truth.half_time_s[0]
    for j in range(n):
        soc[np.nanargmin(np.abs(r.time_s[:, j] - t50[j])), j] = np.nan
    soc[10] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds2 = heterogeneity_dataset(r.time_s, soc, r.depth_um, "separator", r.segments)
    assert ds2.soc_depth_count.values[10] == 0 and np.isnan(ds2.soc_depth_std.values[10])
    assert np.isnan(ds2.pass_time.values[10])
    err = np.abs(ds2.front_arrival_time.values[0] - t50)
    assert err.max() < r.pass_interval_s
    assert ds2.first_face.values[0] == "separator"


def test_depth_spread_definitions() -> None:
    time = np.array([[0.0, 1.0, 2.0], [3.0, 4.0, np.nan], [np.nan] * 3])
    soc = np.array([[0.1, 0.2, 0.6], [0.5, 0.7, 0.9], [np.nan] * 3])
    sp = depth_spread(time, soc)
    np.testing.assert_allclose(sp.std[:2], [np.std([0.1, 0.2, 0.6]), 0.1])
    np.testing.assert_allclose(sp.range[:2], [0.5, 0.2])
    np.testing.assert_allclose(sp.mean[:2], [0.3, 0.6])
    np.testing.assert_allclose(sp.time_s[:2], [1.0, 3.5])
    np.testing.assert_array_equal(sp.count, [3, 2, 0])
    assert np.isnan([sp.std[2], sp.range[2], sp.mean[2], sp.time_s[2]]).all()


def test_interpolate_to_grid_uses_each_depths_own_times() -> None:
    time = np.array([[0.0, 10.0], [100.0, 110.0], [200.0, np.nan], [300.0, 310.0]])
    vals = np.array([[0.0, 1.0], [1.0, 2.0], [2.0, 9.0], [3.0, 3.0]])
    grid = np.array([-5.0, 0.0, 50.0, 105.0, 250.0, 305.0, 320.0])
    out = interpolate_to_grid(time, vals, grid)
    assert out.shape == (grid.size, 2)
    np.testing.assert_allclose(out[:, 0], [np.nan, 0.0, 0.5, 1.05, 2.5, np.nan, np.nan])
    np.testing.assert_allclose(out[:, 1], [np.nan, np.nan, 1.4, 1.95, 2.7, 2.975, np.nan])


# ------------------------------------------------------------------------------ origin


def test_origin_current_collector_flips_first_face() -> None:
    r = _run("lfp-1c")
    # same numbers, depth 0 now declared at the current collector
    ds = heterogeneity_dataset(r.time_s, r.soc, r.depth_um, "current_collector", r.segments)
    assert list(ds.first_face.values) == ["current_collector"] * 2
    assert ds.depth.attrs["origin"] == "current_collector"
    # the same cell described from the current collector: reversed depth axis, z' = L − z
    ds_rev = heterogeneity_dataset(r.time_s[:, ::-1], r.soc[:, ::-1],
                                   r.thickness_um - r.depth_um[::-1], "current_collector",
                                   r.segments)
    assert list(ds_rev.first_face.values) == ["separator"] * 2
    np.testing.assert_allclose(ds_rev.front_arrival_time.values[:, ::-1],
                               _dataset("lfp-1c").front_arrival_time.values, rtol=1e-6)


def test_first_face_undetermined_without_a_trend() -> None:
    z = np.linspace(10, 160, 8)
    arrival = 1000.0 + np.random.default_rng(5).normal(0, 30.0, z.size)
    order = first_face(arrival, z, "separator")
    assert order.face == "undetermined" and "2σ" in order.note
    assert first_face(np.array([1.0, 2.0, np.nan]), z[:3], "separator").face == "undetermined"
    with pytest.raises(ValueError, match="origin"):
        first_face(arrival, z, "anode")


# ------------------------------------------------------------------------------ product


def test_dataset_is_cf_annotated() -> None:
    ds = _dataset("small")
    assert set(ds.dims) == {"reaction", "rest", "depth", "pass"}
    for name, var in {**ds.data_vars, **ds.coords}.items():
        assert "units" in var.attrs and "long_name" in var.attrs, name
        assert var.dtype.kind != "O", name
    for name in ("reaction_kind", "first_face", "front_note", "front_reason",
                 "relaxation_reason", "relaxation_shared_note", "global_rate_source"):
        assert ds[name].dtype.kind == "U", name
    assert ds.local_rate_per_h.attrs["units"] == "h-1"
    assert ds.front_arrival_time.attrs["units"] == "s"
    assert ds.attrs["origin"] == "separator"


def test_segment_runs_merges_short_glitches() -> None:
    t = np.arange(0.0, 100.0, 1.0)
    lab = np.array(["rest"] * 10 + ["charge"] * 40 + ["rest"] * 2 + ["charge"] * 18
                   + ["discharge"] * 30)
    segs = segment_runs(lab, t)
    assert [g.kind for g in segs] == ["rest", "charge", "rest", "charge", "discharge"]
    assert segs[1] == SegmentRun("charge", 10.0, 50.0, index=1, start=10, stop=50)
    merged = segment_runs(lab, t, min_duration_s=5.0)
    assert merged == [SegmentRun("rest", 0.0, 10.0, index=0, start=0, stop=10),
                      SegmentRun("charge", 10.0, 70.0, index=1, start=10, stop=70),
                      SegmentRun("discharge", 70.0, 99.0, index=2, start=70, stop=100)]


# ------------------------------------------------------------------------------ SOC


def test_linear_calibration_extrapolates_and_flags() -> None:
    cal = SocCalibration("linear", discharged=3.50, charged=3.30)  # e.g. a peak position, Å
    v = np.array([[3.50, 3.40], [3.30, 3.25], [np.nan, 3.55]])
    soc, se, out = soc_from_quantity(v, cal, stderr=np.full(v.shape, 0.002))
    np.testing.assert_allclose(soc, [[0.0, 0.5], [1.0, 1.25], [np.nan, -0.25]])
    np.testing.assert_allclose(se[:2], 0.01)
    assert np.isnan(se[2, 0])
    np.testing.assert_array_equal(out, [[False, False], [False, True], [False, True]])
    assert np.isnan(soc_from_quantity(v, cal)[1]).all()
    with pytest.raises(ValueError, match="different"):
        SocCalibration("linear", discharged=1.0, charged=1.0)


def test_table_calibration_round_trip() -> None:
    soc_true = np.linspace(0.0, 1.0, 41)
    values = 10.30 - 0.12 * soc_true - 0.03 * soc_true**2  # decreasing in SOC, any order
    perm = np.random.default_rng(0).permutation(soc_true.size)
    cal = SocCalibration("table", table_values=values[perm], table_soc=soc_true[perm])
    s_query = np.linspace(0.01, 0.99, 30).reshape(5, 6)
    v_query = 10.30 - 0.12 * s_query - 0.03 * s_query**2
    soc, se, out = soc_from_quantity(v_query, cal, stderr=np.full(v_query.shape, 1e-3))
    np.testing.assert_allclose(soc, s_query, atol=2e-5)
    slope = np.abs(1.0 / (-0.12 - 0.06 * s_query))  # |dSOC/dv|
    np.testing.assert_allclose(se, slope * 1e-3, rtol=0.02)
    assert not out.any()
    # beyond the table: clipped to its end SOC, flagged, stderr NaN
    soc2, se2, out2 = soc_from_quantity(np.array([10.5, 10.0, np.nan]), cal,
                                        stderr=np.array([1e-3, 1e-3, 1e-3]))
    np.testing.assert_allclose(soc2[:2], [0.0, 1.0], atol=1e-12)
    np.testing.assert_array_equal(out2, [True, True, False])
    assert np.isnan(se2).all() and np.isnan(soc2[2])
    np.testing.assert_allclose(x_li_from_soc(soc, 1.0, 0.0), 1.0 - soc)


def test_non_monotonic_table_is_an_error_naming_the_entries() -> None:
    with pytest.raises(ValueError, match=r"not strictly monotonic.*\(2, 3\)"):
        SocCalibration("table", table_values=np.array([1.0, 2.0, 3.0, 4.0, 5.0]),
                       table_soc=np.array([0.0, 0.3, 0.6, 0.5, 1.0]))
    with pytest.raises(ValueError, match=r"equal quantity values.*\(1, 2\)"):
        SocCalibration("table", table_values=np.array([1.0, 2.0, 2.0]),
                       table_soc=np.array([0.0, 0.5, 1.0]))
    with pytest.raises(ValueError, match="table_values"):
        SocCalibration("table", table_values=np.array([1.0, 2.0]))
