"""Synthetic confocal XRD: the depth-model truth and the Bliss/LIMA files."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import h5py
import numpy as np
import pytest

from operando.simulate.clock import make_clock
from operando.simulate.confocal import (
    HC_KEV_A,
    TwoPhaseFrames,
    TwoPhaseSpectra,
    confocal_schedule,
    depth_positions_um,
    ed_channel_energy_keV,
    make_depth_model,
    reaction_truth,
    simulate_confocal,
)
from operando.simulate.context import SimContext
from operando.simulate.echem import simulate_echem
from operando.simulate.presets import ConfocalSpec, get_preset
from operando.simulate.timeline import MONITOR_COUNTS_PER_S


def _ctx(outdir: Path, seed: int = 0, preset: str = "small") -> SimContext:
    p = get_preset(preset)
    return SimContext(outdir=outdir, preset=p, echem=simulate_echem(p.echem),
                      clock=make_clock(p.echem, p.clock), seed=seed)


@pytest.fixture(scope="module")
def model_small():
    p = get_preset("small")
    echem = simulate_echem(p.echem)
    return make_depth_model(echem, p.confocal), echem, p.confocal


# ----------------------------------------------------------------------- depth model


def test_depth_grid_is_slab_centres() -> None:
    z = depth_positions_um(4, 100.0)
    np.testing.assert_allclose(z, [12.5, 37.5, 62.5, 87.5])


def test_depth_mean_equals_faraday_at_any_time(model_small) -> None:
    model, echem, _ = model_small
    edges = np.array([b for seg in echem.segment_bounds_s for b in seg])
    t = np.concatenate([
        np.linspace(0.0, echem.duration_s, 4001),
        np.random.default_rng(1).uniform(0.0, echem.duration_s, 2000),
        edges, edges - 1e-3, edges + 1e-3,
    ])
    f = model.fraction(t)
    assert f.shape == (t.size, model.depth_um.size)
    assert f.min() >= 0.0 and f.max() <= 1.0
    np.testing.assert_allclose(f.mean(axis=1), echem.faraday_fepo4_fraction_at(t), atol=1e-6)


def test_front_enters_from_the_separator_on_charge(model_small) -> None:
    model, echem, _ = model_small
    (c0, c1), _, (d0, d1), _ = echem.segment_bounds_s
    t = np.linspace(c0, c1, 50)[1:-1]
    f = model.fraction(t)
    assert np.all(np.diff(f, axis=1) <= 1e-12), "FePO4 must decrease with depth during charge"
    assert np.all(f[:, 0] > f[:, -1])
    zf = model.front_position_um(t)
    assert np.all(np.diff(zf) > 0), "the front moves away from the separator"
    # discharge: LiFePO4 re-forms from the separator side, FePO4 lowest there
    fd = model.fraction(np.linspace(d0, d1, 50)[10:-1])
    assert np.all(fd[:, 0] < fd[:, -1])
    assert np.all(np.argmin(fd, axis=1) == 0)


def test_rest_relaxation_time_fits_back(model_small) -> None:
    model, echem, spec = model_small
    r0, r1 = echem.segment_bounds_s[1]
    assert model.segment_kinds[1] == "rest"
    t = np.linspace(r0, r1, 40)
    f = model.fraction(t)
    fbar = f.mean(axis=1)
    np.testing.assert_allclose(fbar, fbar[0], atol=1e-12)  # conserved during rest
    dev = f - fbar[:, None]
    i = int(np.argmax(np.abs(dev[0])))
    slope = np.polyfit(t - r0, np.log(np.abs(dev[:, i])), 1)[0]
    tau = -1.0 / slope
    assert tau == pytest.approx(spec.relaxation_time_s, rel=0.01)
    # and it is exp(-Δt/τ) for every depth, not only on average
    np.testing.assert_allclose(
        dev, dev[0][None, :] * np.exp(-(t - r0) / spec.relaxation_time_s)[:, None], atol=1e-12
    )


def test_profile_is_continuous_at_segment_edges(model_small) -> None:
    model, echem, _ = model_small
    for k, (_, t1) in enumerate(echem.segment_bounds_s[:-1]):
        before = model.fraction(t1 - 1e-7)
        at = model.fraction(t1)
        np.testing.assert_allclose(before, at, atol=1e-8)
        np.testing.assert_allclose(at, model.start_profiles[k + 1], atol=1e-12)


def test_schedule_keeps_complete_passes_only(model_small) -> None:
    _, echem, spec0 = model_small
    spec = replace(spec0, missing_points=(), cut_last_pass=False)
    s = confocal_schedule(spec, echem.duration_s)
    assert s.time_start_s.shape[1] == spec.n_depths
    assert s.acquired.all() and not s.last_pass_cut and s.missing_points == ()
    assert s.time_end_s.max() <= echem.duration_s
    assert 0 < s.n_dropped_points < spec.n_depths  # the small preset's last pass is incomplete
    np.testing.assert_allclose(np.diff(s.time_start_s.ravel()), spec.point_time_s)
    # the next point (first of the dropped pass) would not have fitted a whole pass
    next_pass_end = s.time_start_s[-1, -1] + spec.n_depths * spec.point_time_s + spec.count_time_s
    assert next_pass_end > echem.duration_s


def test_schedule_missing_point_and_cut_pass(model_small) -> None:
    _, echem, spec = model_small
    assert spec.cut_last_pass and spec.missing_points == ((4, 2),)
    full = confocal_schedule(replace(spec, missing_points=(), cut_last_pass=False),
                             echem.duration_s)
    s = confocal_schedule(spec, echem.duration_s)
    assert s.n_passes == full.n_passes + 1 and s.last_pass_cut and s.n_dropped_points == 0
    assert s.missing_points == ((4, 2),)
    expected = np.ones((s.n_passes, spec.n_depths), bool)
    expected[4, 2] = False
    expected[-1, full.n_dropped_points:] = False
    np.testing.assert_array_equal(s.acquired, expected)
    assert s.points_per_pass[4] == spec.n_depths - 1
    assert s.points_per_pass[-1] == full.n_dropped_points
    np.testing.assert_array_equal(np.isnan(s.time_start_s), ~expected)
    # acquired points keep their slots; every acquired exposure ends within the protocol
    np.testing.assert_array_equal(s.time_start_s[:-1][expected[:-1]],
                                  full.time_start_s[expected[:-1]])
    k = np.arange(s.n_passes * spec.n_depths).reshape(s.n_passes, -1)
    np.testing.assert_allclose(s.scheduled_start_s, spec.first_point_s + spec.point_time_s * k)
    assert np.nanmax(s.time_end_s) <= echem.duration_s
    assert s.scheduled_start_s[-1, -1] + spec.count_time_s > echem.duration_s
    # missing points outside the schedule are ignored; a bad depth index or an empty pass
    # is refused
    far = confocal_schedule(replace(spec, missing_points=((10_000, 0),)), echem.duration_s)
    assert far.missing_points == () and far.acquired[:-1].all()
    with pytest.raises(ValueError, match="missing_points"):
        confocal_schedule(replace(spec, missing_points=((0, spec.n_depths),)), echem.duration_s)
    with pytest.raises(ValueError, match="no point left"):
        confocal_schedule(replace(spec, missing_points=tuple((0, i) for i in
                                                             range(spec.n_depths))),
                          echem.duration_s)


# ----------------------------------------------------------------------- reaction truth


@pytest.fixture(scope="module")
def reaction_small(model_small):
    model, _, _ = model_small
    return reaction_truth(model)


def test_reaction_truth_shapes_and_segments(model_small, reaction_small) -> None:
    model, echem, _ = model_small
    r = reaction_small
    n = model.depth_um.size
    assert r.kinds == ("charge", "discharge")
    assert r.bounds_s == (echem.segment_bounds_s[0], echem.segment_bounds_s[2])
    assert r.rest_bounds_s == (echem.segment_bounds_s[1], echem.segment_bounds_s[3])
    for a in (r.change, r.half_time_s, r.t10_s, r.t90_s, r.local_rate_per_h):
        assert a.shape == (2, n)
    assert r.global_rate_per_h.shape == (2,) and r.rest_amplitude.shape == (2, n)
    assert r.relaxation_time_s == model.relaxation_time_s
    # change is f(end) - f(start) of the dense truth; signs follow the segment
    for k, (t0, t1) in enumerate(r.bounds_s):
        np.testing.assert_allclose(r.change[k], model.fraction(t1) - model.fraction(t0),
                                   atol=1e-8)
    assert np.all(r.change[0] > 0) and np.all(r.change[1] < 0)
    # depth-mean rate = the Faraday rate: C-rate x depth of charge / duration
    e = echem.spec
    assert r.global_rate_per_h[0] == pytest.approx(e.c_rate_per_h, rel=1e-6)
    assert r.global_rate_per_h[1] == pytest.approx(e.c_rate_per_h, rel=1e-6)
    # NaN exactly where |change| < min_change
    small = np.abs(r.change) < 0.2
    for a in (r.half_time_s, r.t10_s, r.t90_s, r.local_rate_per_h):
        np.testing.assert_array_equal(np.isnan(a), small)
    d = r.as_dict()
    assert set(d) >= {"kinds", "change", "half_time_s", "first_face", "rest_amplitude"}


def test_reaction_truth_crossings_are_exact(model_small, reaction_small) -> None:
    model, _, _ = model_small
    r = reaction_small
    for k, (t0, t1) in enumerate(r.bounds_s):
        f0 = model.fraction(t0)
        for q, times in ((0.1, r.t10_s), (0.5, r.half_time_s), (0.9, r.t90_s)):
            for i in np.flatnonzero(np.isfinite(times[k])):
                t = times[k, i]
                assert t0 < t < t1
                level = f0[i] + q * r.change[k, i]
                # a second either side brackets the level (monotonic front), to < 1 s
                before, after = model.fraction(np.array([t - 0.5, t + 0.5]))[:, i]
                assert (before - level) * (after - level) < 0
                np.testing.assert_allclose(model.fraction(t)[i], level, atol=1e-6)
        ok = np.isfinite(r.t10_s[k])
        assert np.all(r.t10_s[k, ok] < r.half_time_s[k, ok])
        assert np.all(r.half_time_s[k, ok] < r.t90_s[k, ok])
        np.testing.assert_allclose(
            r.local_rate_per_h[k, ok],
            0.8 * np.abs(r.change[k, ok]) / (r.t90_s[k, ok] - r.t10_s[k, ok]) * 3600.0)


def test_reaction_truth_front_from_the_separator(model_small, reaction_small) -> None:
    model, _, spec = model_small
    r = reaction_small
    assert r.first_face == ("separator", "separator")
    for k in range(2):
        ht = r.half_time_s[k][np.isfinite(r.half_time_s[k])]
        assert ht.size >= 4 and np.all(np.diff(ht) > 0), "later deeper from the separator"
    # a sharp front (width << thickness): each depth converts much faster than the mean
    assert spec.front_width_um < 0.2 * spec.thickness_um
    ok = np.isfinite(r.local_rate_per_h)
    assert np.all(r.local_rate_per_h[ok] > 1.5 * np.repeat(r.global_rate_per_h[:, None],
                                                            model.depth_um.size, 1)[ok])
    # rests start from the profile left by the segment before; amplitudes then decay with τ
    for k, (t0, _) in enumerate(r.rest_bounds_s):
        f = model.fraction(t0)
        np.testing.assert_allclose(r.rest_amplitude[k], f - f.mean(), atol=1e-10)
        g = model.fraction(t0 + r.relaxation_time_s)
        np.testing.assert_allclose(g - g.mean(), r.rest_amplitude[k] * np.exp(-1.0),
                                   atol=1e-10)
    assert np.abs(r.rest_amplitude[0]).max() > 0.2


def test_reaction_truth_front_from_the_collector_is_named() -> None:
    """Depth index 0 is the separator: with the depth axis reversed (the front now enters
    at the last index) first_face follows the half times, it is not hard-wired."""
    p = get_preset("small")
    echem = simulate_echem(p.echem)
    model = make_depth_model(echem, p.confocal)
    flipped = replace(model, depth_um=model.depth_um[::-1].copy())  # z reversed
    r = reaction_truth(flipped)
    assert r.first_face[0] == "current_collector"


# ----------------------------------------------------------------------- written files


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("confocal_small")
    ctx = _ctx(out)
    return out, ctx, simulate_confocal(ctx)


def test_result_files_and_truth_shapes(small_run) -> None:
    out, ctx, res = small_run
    assert res.files == {"master": "confocal/confocal.h5", "poni": "confocal/geometry.poni",
                         "mask": "confocal/mask.edf", "ed_master": "confocal/confocal_ed.h5"}
    for rel in res.files.values():
        assert (out / rel).is_file()
    assert not list(out.rglob("*.part")), "no temporary file left behind"
    t = json.loads(json.dumps(res.truth))  # JSON-serialisable
    n_p, n_d = t["n_passes"], t["n_depths"]
    assert n_d == ctx.preset.confocal.n_depths and n_p >= 10
    acq = np.asarray(t["acquired"])
    assert acq.shape == (n_p, n_d) and acq.dtype == bool
    assert (~acq).sum() == 1 + (n_d - t["points_per_pass"][-1])  # missing (4, 2) + cut pass
    assert not acq[4, 2] and t["missing_points"] == [[4, 2]]
    assert t["incomplete_last_pass"] == "kept, cut short" and t["n_dropped_points"] == 0
    assert t["n_acquired_points"] == acq.sum() == sum(t["points_per_pass"])

    def arr(v) -> np.ndarray:  # JSON null -> NaN
        return np.array(v, dtype=float)

    per_point = [t["time_s"], t["time_start_s"], t["time_end_s"], t["monitor"],
                 t["faraday_fepo4_fraction"], t["front_position_um"], t["echem"]["x_li"],
                 t["echem"]["voltage_V"]]
    per_point += [t["phase_fraction"][ph] for ph in ("FePO4", "LiFePO4", "LixFePO4")]
    for v in per_point:
        a = arr(v)
        assert a.shape == (n_p, n_d)
        assert np.all(np.isnan(a[~acq]))
    for key in ("time_s", "time_start_s", "time_end_s", "monitor"):
        assert np.all(np.isfinite(arr(t[key])[acq]))
    assert np.all(np.asarray(t["front_state"])[~acq] == "not acquired")
    assert np.isfinite(arr(t["scheduled_time_start_s"])).all()
    assert t["origin"] == "separator"
    assert t["depth_motor"] == {"path": "instrument/positioners/sz", "units": "mm"}
    assert t["relaxation_time_s"] == ctx.preset.confocal.relaxation_time_s
    assert t["wavelength_A"] == ctx.preset.xrd.wavelength_A
    # exposure-averaged truth: per pass the depth mean tracks the Faraday fraction
    f = arr(t["phase_fraction"]["FePO4"])[acq]
    assert np.all(np.diff(arr(t["time_s"])[acq]) > 0)
    np.testing.assert_allclose(f + arr(t["phase_fraction"]["LiFePO4"])[acq], 1.0)
    assert f.max() > 0.9 and f.min() < 0.05
    # the reaction truth is in the stream truth
    rx = t["reaction"]
    assert rx["kinds"] == ["charge", "discharge"] and rx["first_face"] == ["separator"] * 2
    assert np.asarray(rx["change"]).shape == (2, n_d)
    assert rx["relaxation_time_s"] == ctx.preset.confocal.relaxation_time_s
    assert t["energy_dispersive"]["master"] == res.files["ed_master"]


def test_bliss_layout_opens_with_plain_h5py(small_run) -> None:
    out, ctx, res = small_run
    t = res.truth
    det = t["detector_path"]
    acq = np.asarray(t["acquired"])
    cwd = os.getcwd()
    os.chdir(out.parent)  # external links must resolve relative to the master, not the cwd
    try:
        with h5py.File(out / res.files["master"], "r") as f:
            assert f.attrs["NX_class"] == "NXroot"
            assert sorted(f, key=lambda s: int(s.split(".")[0])) == [
                f"{n}.1" for n in range(1, t["n_passes"] + 1)
            ]
            for n in range(1, t["n_passes"] + 1):
                e = f[f"{n}.1"]
                sel = acq[n - 1]
                n_pts = int(sel.sum())
                assert n_pts == t["points_per_pass"][n - 1]
                assert e.attrs["NX_class"] == "NXentry"
                assert e["instrument"].attrs["NX_class"] == "NXinstrument"
                assert e["instrument/pilatus"].attrs["NX_class"] == "NXdetector"
                assert e["measurement"].attrs["NX_class"] == "NXcollection"
                assert e["title"][()].decode().startswith("ascan sz ")
                link = e.get("instrument/pilatus/data", getlink=True)
                assert isinstance(link, h5py.ExternalLink)
                assert link.filename == f"scan{n:04d}/pilatus_0000.h5"
                data = e[det]
                assert data.shape[0] == n_pts
                assert data.dtype == np.uint32
                assert data.chunks == (1, *data.shape[1:])
                assert "32008" in data._filters  # bitshuffle
                assert data._filters["32008"][-1] == 2  # ... with LZ4
                assert e["measurement/pilatus"].shape == data.shape
                epoch = e["measurement/epoch"][()]
                assert epoch.shape == (n_pts,) and np.all(np.diff(epoch) > 0)
                t_start = np.asarray(t["time_start_s"][n - 1], dtype=float)[sel]
                np.testing.assert_allclose(
                    epoch, ctx.clock.to_beamline_epoch(t_start), rtol=0,
                    atol=6 * ctx.preset.clock.beamline_jitter_s)
                sz = e["instrument/positioners/sz"]
                assert sz.attrs["units"] == "mm"
                np.testing.assert_allclose(sz[()] * 1e3, np.asarray(t["depth_um"])[sel],
                                           rtol=1e-12)
                np.testing.assert_allclose(e["measurement/sz"][()], sz[()])
                np.testing.assert_array_equal(
                    e["measurement/mon"][()], np.asarray(t["monitor"][n - 1], float)[sel])
                assert np.all(e["measurement/mon"][()] > 0)
                np.testing.assert_allclose(e["measurement/count_time"][()],
                                           np.full(n_pts, ctx.preset.confocal.count_time_s))
                start = datetime.fromisoformat(e["start_time"][()].decode())
                end = datetime.fromisoformat(e["end_time"][()].decode())
                assert start.utcoffset() == timedelta(0)
                assert start.timestamp() == pytest.approx(epoch[0], abs=1e-5)
                assert end > start
            # the pass with the missing point: depth 2 is absent, not padded
            np.testing.assert_allclose(f["5.1/instrument/positioners/sz"][()] * 1e3,
                                       np.delete(np.asarray(t["depth_um"]), 2))
        with h5py.File(out / "confocal/scan0001/pilatus_0000.h5", "r") as g:
            assert g["/entry_0000/measurement/data"].shape[0] == t["n_depths"]
        with h5py.File(out / f"confocal/scan{t['n_passes']:04d}/pilatus_0000.h5", "r") as g:
            assert g["/entry_0000/measurement/data"].shape[0] == t["points_per_pass"][-1]
    finally:
        os.chdir(cwd)


def test_integrated_peaks_track_truth_fraction(small_run) -> None:
    """Integrate two frames of one pass with pyFAI from the written PONI + mask.

    The 1D pattern is fitted by heights of the two pure-phase patterns (same scale)
    plus a cubic background; FePO4 / (FePO4 + LiFePO4) of the fitted heights must
    give back the truth fraction at a separator-side and a collector-side point.
    """
    import fabio
    import pyFAI

    from operando.simulate.diffraction import PHASES, pattern_1d, reflection_table

    out, _, res = small_run
    t = res.truth
    ai = pyFAI.load(str(out / res.files["poni"]))
    mask = fabio.open(str(out / res.files["mask"])).data
    assert mask.shape == ai.detector.shape and mask.sum() > 0
    f = np.asarray(t["phase_fraction"]["FePO4"], dtype=float)
    # a charge pass with a steep front: separator side mostly FePO4, collector side LiFePO4
    ok = (f[:, 0] < 0.95) & np.asarray(t["acquired"]).all(axis=1)
    p = int(np.argmax(np.where(ok, f[:, 0] - f[:, -1], -1.0)))
    i_sep, i_col = 0, t["n_depths"] - 1
    assert f[p, i_sep] > 0.5 and f[p, i_col] < 0.1
    lam, w = t["wavelength_A"], t["fwhm_deg"]
    (lfp,) = [r["two_theta_deg"] for r in reflection_table(PHASES["LiFePO4"], lam, None)
              if r["hkl"] == [0, 2, 0]]
    (fp,) = [r["two_theta_deg"] for r in reflection_table(PHASES["FePO4"], lam, None)
             if r["hkl"] == [0, 2, 0]]
    est, raw_ratio = [], []
    with h5py.File(out / res.files["master"], "r") as h:
        for i in (i_sep, i_col):
            frame = h[f"{p + 1}.1/{t['detector_path']}"][i]
            r = ai.integrate1d(frame, 600, unit="2th_deg", mask=mask,
                               polarization_factor=0.99, radial_range=(2.0, 6.0))
            x, y = r.radial, r.intensity
            design = np.column_stack([
                pattern_1d(x, {"FePO4": 1.0}, lam, w), pattern_1d(x, {"LiFePO4": 1.0}, lam, w),
                np.ones_like(x), x, x**2, x**3,
            ])
            h_fp, h_lfp = np.linalg.lstsq(design, y, rcond=None)[0][:2]
            est.append(h_fp / (h_fp + h_lfp))
            # raw (020) peak heights, for the direction of the change
            raw_ratio.append(y[np.abs(x - fp) < 0.03].max() / y[np.abs(x - lfp) < 0.03].max())
    np.testing.assert_allclose(est, [f[p, i_sep], f[p, i_col]], atol=0.04)
    assert raw_ratio[0] > 2.0 > 0.5 > raw_ratio[1]


def test_two_phase_frames_match_frame_renderer() -> None:
    from operando.simulate.diffraction import FrameRenderer, make_integrator

    ai = make_integrator("Pilatus100k", 0.2066, 0.25)
    r = FrameRenderer(ai, flux_counts=1000.0, background_counts=20.0, n_dead=4, n_hot=3,
                      rng=np.random.default_rng(3))
    mix = TwoPhaseFrames(r, 0.05)
    fr = {"FePO4": 0.3, "LiFePO4": 0.7, "LixFePO4": 0.0}
    np.testing.assert_allclose(mix.expected(0.3, monitor=0.97),
                               r.expected(fr, 0.05, monitor=0.97), rtol=1e-9, atol=1e-9)
    a = mix.render(0.3, monitor=1.0, rng=np.random.default_rng(5))
    b = r.render(fr, 0.05, monitor=1.0, rng=np.random.default_rng(5))
    assert a.dtype == b.dtype == np.uint32
    defects = r.mask.astype(bool)
    np.testing.assert_array_equal(a[defects], b[defects])


def test_deterministic_for_a_seed(tmp_path) -> None:
    over = {"echem": {"depth_of_charge": 0.05, "rest_s": 60.0}}

    def run(sub: str, seed: int):
        p = get_preset("small").with_overrides(over)
        ctx = SimContext(outdir=tmp_path / sub, preset=p, echem=simulate_echem(p.echem),
                         clock=make_clock(p.echem, p.clock), seed=seed)
        res = simulate_confocal(ctx)
        with h5py.File(ctx.outdir / res.files["master"], "r") as f:
            frames = np.concatenate([f[f"{n}.1/measurement/pilatus"][()]
                                     for n in range(1, res.truth["n_passes"] + 1)])
            epoch = np.concatenate([f[f"{n}.1/measurement/epoch"][()]
                                    for n in range(1, res.truth["n_passes"] + 1)])
        with h5py.File(ctx.outdir / res.files["ed_master"], "r") as f:
            spectra = np.concatenate([f[f"{n}.1/measurement/mca"][()]
                                      for n in range(1, res.truth["n_passes"] + 1)])
        return res.truth, frames, epoch, spectra

    t1, fr1, ep1, sp1 = run("a", 0)
    t2, fr2, ep2, sp2 = run("b", 0)
    _, fr3, _, sp3 = run("c", 1)
    assert json.dumps(t1) == json.dumps(t2)
    np.testing.assert_array_equal(fr1, fr2)
    np.testing.assert_array_equal(ep1, ep2)
    np.testing.assert_array_equal(sp1, sp2)
    assert not np.array_equal(fr1, fr3)
    assert not np.array_equal(sp1, sp3)
    assert fr1.shape[0] == sp1.shape[0] == np.sum(t1["acquired"])


# ----------------------------------------------------------------------- energy-dispersive


def test_ed_master_holds_the_same_points(small_run) -> None:
    out, ctx, res = small_run
    t = res.truth
    ed = t["energy_dispersive"]
    spec = ctx.preset.confocal
    assert ed["spectrum_path"] == "instrument/mca/data"
    assert ed["calibration_path"] == "instrument/mca/calibration"
    assert ed["two_theta_path"] == "instrument/mca/two_theta"
    assert ed["two_theta_deg"] == spec.ed_two_theta_deg
    assert ed["calibration_keV"] == list(spec.ed_calibration_keV)
    assert ed["nominal_wavelength_A"] == ctx.preset.xrd.wavelength_A
    with h5py.File(out / res.files["master"], "r") as ad, \
            h5py.File(out / ed["master"], "r") as f:
        assert f.attrs["NX_class"] == "NXroot"
        assert sorted(f) == sorted(ad)
        for n in range(1, t["n_passes"] + 1):
            e, a = f[f"{n}.1"], ad[f"{n}.1"]
            assert e.attrs["NX_class"] == "NXentry"
            assert e["instrument/mca"].attrs["NX_class"] == "NXdetector"
            data = e[ed["spectrum_path"]]
            assert data.dtype == np.uint32
            assert data.shape == (t["points_per_pass"][n - 1], spec.ed_n_channels)
            link = e["measurement"].get("mca", getlink=True)
            assert isinstance(link, h5py.SoftLink)
            assert link.path == f"/{n}.1/instrument/mca/data"
            cal = e[ed["calibration_path"]]
            assert cal.dtype == np.float64 and cal.shape == (3,)
            assert cal.attrs["units"] == "keV"
            assert cal.attrs["formula"] == "E = a + b*channel + c*channel**2 (channel 0-based)"
            np.testing.assert_array_equal(cal[()], spec.ed_calibration_keV)
            tth = e[ed["two_theta_path"]]
            assert tth.shape == () and tth.attrs["units"] == "degree"
            assert tth[()] == spec.ed_two_theta_deg
            for name in ("measurement/epoch", "measurement/mon", "measurement/count_time",
                         "measurement/sz", "instrument/positioners/sz"):
                np.testing.assert_array_equal(e[name][()], a[name][()])
                assert e[name].attrs["units"] == a[name].attrs["units"]
            assert e["start_time"][()] == a["start_time"][()]


def _isolated_reflections(spec: ConfocalSpec, lam: float, min_common: float = 15.0):
    """(phase, d_A, intensity_common) of strong reflections with no other line (either
    phase, intensity_common > 0.5) within 5 ED FWHM."""
    from operando.simulate.diffraction import PHASES, reflection_table

    table = {ph: reflection_table(PHASES[ph], lam, None) for ph in ("LiFePO4", "FePO4")}
    every = np.array([r["d_A"] for rows in table.values() for r in rows
                      if r["intensity_common"] > 0.5])
    sin_t = np.sin(np.radians(spec.ed_two_theta_deg) / 2)
    out = []
    for ph, rows in table.items():
        for r in rows:
            d = r["d_A"]
            e = HC_KEV_A / (2 * d * sin_t)
            rel = np.sqrt(spec.ed_fwhm_f0_keV**2 + spec.ed_fwhm_f1_keV * e) / e
            near = np.abs(every - d) < 5 * rel * d
            if r["intensity_common"] > min_common and near.sum() == 1:
                out.append((ph, d, r["intensity_common"]))
    return out


def _point(truth: dict, phase: str) -> tuple[int, int]:
    """An acquired point that is nearly pure ``phase``."""
    f = np.asarray(truth["phase_fraction"]["FePO4"], dtype=float)
    score = f if phase == "FePO4" else 1.0 - f
    p, i = np.unravel_index(np.nanargmax(score), f.shape)
    assert score[p, i] > 0.97
    return int(p), int(i)


def test_ed_peaks_sit_at_the_reflection_d_spacings(small_run) -> None:
    out, ctx, res = small_run
    t = res.truth
    ed = t["energy_dispersive"]
    spec = ctx.preset.confocal
    refl = _isolated_reflections(spec, ed["nominal_wavelength_A"])
    assert {ph for ph, _, _ in refl} == {"LiFePO4", "FePO4"} and len(refl) >= 4
    with h5py.File(out / ed["master"], "r") as f:
        a, b, c = f[f"1.1/{ed['calibration_path']}"][()]
        tth = f[f"1.1/{ed['two_theta_path']}"][()]
        ch = np.arange(spec.ed_n_channels)
        energy = a + b * ch + c * ch**2
        np.testing.assert_allclose(energy, ed_channel_energy_keV(spec.ed_n_channels, (a, b, c)))
        sin_t = np.sin(np.radians(tth) / 2)
        for ph, d, _ in refl:
            p, i = _point(t, ph)
            k = int(np.asarray(t["acquired"])[p, :i].sum())  # index in the scan
            y = f[f"{p + 1}.1/{ed['spectrum_path']}"][k].astype(float)
            e_pred = HC_KEV_A / (2 * d * sin_t)
            c0 = int(np.argmin(np.abs(energy - e_pred)))
            j = c0 - 10 + int(np.argmax(y[c0 - 10:c0 + 11]))
            u = np.arange(-2, 3)
            top = np.polyfit(u, np.log(y[j - 2:j + 3]), 2)
            ch_peak = j - top[1] / (2 * top[0])
            e_peak = a + b * ch_peak + c * ch_peak**2
            d_peak = HC_KEV_A / (2 * e_peak * sin_t)
            d_per_channel = d * b / e_peak
            assert abs(d_peak - d) < 0.25 * d_per_channel, (ph, d, d_peak)


def test_ed_counts_follow_the_model(small_run) -> None:
    """One point's spectrum against the expected counts (Poisson χ²), and the peak-area
    convention checked independently: areas over 2θ_eq of isolated lines are the AD
    intensities (intensity_common) times flux × w_ref × the unit-height pV area."""
    from operando.simulate.diffraction import PV_ETA, REFERENCE_FWHM_DEG, background_profile

    out, ctx, res = small_run
    t = res.truth
    ed = t["energy_dispersive"]
    spec = ctx.preset.confocal
    model = TwoPhaseSpectra(spec, ed["nominal_wavelength_A"])
    p, i = 20, 3
    assert t["acquired"][p][i]
    f_true = t["phase_fraction"]["FePO4"][p][i]
    with h5py.File(out / ed["master"], "r") as f:
        y = f[f"{p + 1}.1/{ed['spectrum_path']}"][i].astype(float)
        mon = f[f"{p + 1}.1/measurement/mon"][i]
    rel_beam = mon / (MONITOR_COUNTS_PER_S * spec.count_time_s)
    mu = model.expected(f_true, monitor=rel_beam)
    chi2 = np.mean((y - mu) ** 2 / mu)
    assert abs(chi2 - 1.0) < 5 * np.sqrt(2.0 / y.size)
    assert abs(y.sum() - mu.sum()) < 5 * np.sqrt(mu.sum())

    # areas of the noise-free pure-phase spectra, background removed, over 2θ_eq
    lam = ed["nominal_wavelength_A"]
    energy = ed_channel_energy_keV(spec.ed_n_channels, spec.ed_calibration_keV)
    sin_t = np.sin(np.radians(spec.ed_two_theta_deg) / 2)
    x = np.degrees(2 * np.arcsin(sin_t * energy * lam / HC_KEV_A))
    bg = background_profile(x, spec.ed_background_counts)
    unit_area = PV_ETA * np.pi / 2 + (1 - PV_ETA) * np.sqrt(np.pi / (4 * np.log(2)))
    lorentz_kept = 1 - PV_ETA * (1 - 2 / np.pi * np.arctan(8.0))  # within ± 4 FWHM
    for ph, d, common in _isolated_reflections(spec, lam, min_common=30.0):
        s = model.expected(1.0 if ph == "FePO4" else 0.0) - bg
        c_ = np.degrees(2 * np.arcsin(lam / (2 * d)))
        w = float(model.reflection_fwhm_deg(np.array([d]))[0])
        win = np.abs(x - c_) < 4 * w
        area = np.trapezoid(s[win], x[win])
        expected = (spec.ed_flux_counts * common / 100 * REFERENCE_FWHM_DEG * unit_area
                    * lorentz_kept)
        assert area == pytest.approx(expected, rel=0.03), (ph, d)


def test_confocal_ed_section_switches_to_the_ed_master(small_run) -> None:
    from operando.simulate.beamtime import confocal_ed_section

    _, _, res = small_run
    t = res.truth
    section = {"files": [res.files["master"]], "scans": "*.1",
               "detector_path": t["detector_path"], "depth_path": "instrument/positioners/sz",
               "depth_unit": "mm", "depth_origin": "separator",
               "epoch_path": t["epoch_path"], "monitor_path": t["monitor_path"],
               "integration": {"poni": res.files["poni"], "npt": 1000}}
    before = json.dumps(section)
    ed = confocal_ed_section(section, t)
    assert json.dumps(section) == before, "the input is not modified"
    assert "integration" not in ed
    changed = {k for k in set(ed) | set(section) if ed.get(k) != section.get(k)}
    assert changed == {"mode", "files", "spectrum_path", "energy_calibration_path",
                       "two_theta_path", "nominal_wavelength_A", "integration"}
    assert ed["mode"] == "energy" and ed["files"] == [res.files["ed_master"]]
    assert ed["spectrum_path"] == "instrument/mca/data"
    assert ed["energy_calibration_path"] == "instrument/mca/calibration"
    assert ed["two_theta_path"] == "instrument/mca/two_theta"
    assert ed["nominal_wavelength_A"] == t["wavelength_A"]
    with pytest.raises(KeyError, match="energy_dispersive"):
        confocal_ed_section(section, {k: v for k, v in t.items() if k != "energy_dispersive"})


def test_write_bliss_mca_master_refuses_bad_input(tmp_path: Path) -> None:
    from operando.io.xrd.bliss import BlissMcaScan, write_bliss_mca_master

    good = BlissMcaScan(number=1, title="ascan sz 0 1 1 1", start_epoch_s=1.7e9,
                        end_epoch_s=1.7e9 + 2, spectra=np.ones((2, 8), np.uint32),
                        calibration_keV=(0.0, 0.1, 0.0), two_theta_deg=6.0,
                        counters={"epoch": (np.array([1.7e9, 1.7e9 + 1]), "s")})
    path = write_bliss_mca_master(tmp_path / "ok.h5", [good])
    with h5py.File(path, "r") as f:
        assert f["1.1/measurement/mca"].shape == (2, 8)
    bad = replace(good, counters={"epoch": (np.array([1.7e9]), "s")})
    with pytest.raises(ValueError, match=r"bad\.h5.*'epoch'.*\(2,\)"):
        write_bliss_mca_master(tmp_path / "bad.h5", [bad])
    with pytest.raises(ValueError, match="outside the uint32 range"):
        write_bliss_mca_master(tmp_path / "neg.h5", [replace(good, spectra=-np.ones((2, 8),
                                                                                   int))])
    with pytest.raises(ValueError, match="calibration"):
        write_bliss_mca_master(tmp_path / "cal.h5", [replace(good, calibration_keV=(1.0, 2.0))])
    assert not (tmp_path / "bad.h5").exists() and not list(tmp_path.glob("*.part"))
