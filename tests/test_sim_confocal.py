"""Synthetic confocal XRD: the depth-model truth and the Bliss/LIMA files."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta
from pathlib import Path

import h5py
import numpy as np
import pytest

from operando.simulate.clock import make_clock
from operando.simulate.confocal import (
    TwoPhaseFrames,
    confocal_schedule,
    depth_positions_um,
    make_depth_model,
    simulate_confocal,
)
from operando.simulate.context import SimContext
from operando.simulate.echem import simulate_echem
from operando.simulate.presets import get_preset


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
    _, echem, spec = model_small
    s = confocal_schedule(spec, echem.duration_s)
    assert s.time_start_s.shape[1] == spec.n_depths
    assert s.time_end_s.max() <= echem.duration_s
    assert 0 <= s.n_dropped_points < spec.n_depths
    np.testing.assert_allclose(np.diff(s.time_start_s.ravel()), spec.point_time_s)
    # the next point (first of the dropped pass) would not have fitted a whole pass
    next_pass_end = s.time_start_s[-1, -1] + spec.n_depths * spec.point_time_s + spec.count_time_s
    assert next_pass_end > echem.duration_s


# ----------------------------------------------------------------------- written files


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("confocal_small")
    ctx = _ctx(out)
    return out, ctx, simulate_confocal(ctx)


def test_result_files_and_truth_shapes(small_run) -> None:
    out, ctx, res = small_run
    assert res.files == {"master": "confocal/confocal.h5", "poni": "confocal/geometry.poni",
                         "mask": "confocal/mask.edf"}
    for rel in res.files.values():
        assert (out / rel).is_file()
    assert not list(out.rglob("*.part")), "no temporary file left behind"
    t = json.loads(json.dumps(res.truth))  # JSON-serialisable
    n_p, n_d = t["n_passes"], t["n_depths"]
    assert n_d == ctx.preset.confocal.n_depths and n_p >= 10
    for key in ("time_s", "time_start_s", "time_end_s"):
        assert np.asarray(t[key]).shape == (n_p, n_d)
    for ph in ("FePO4", "LiFePO4"):
        assert np.asarray(t["phase_fraction"][ph]).shape == (n_p, n_d)
    assert t["origin"] == "separator"
    assert t["depth_motor"] == {"path": "instrument/positioners/sz", "units": "mm"}
    assert t["relaxation_time_s"] == ctx.preset.confocal.relaxation_time_s
    assert t["wavelength_A"] == ctx.preset.xrd.wavelength_A
    # exposure-averaged truth: per pass the depth mean tracks the Faraday fraction
    f = np.asarray(t["phase_fraction"]["FePO4"])
    assert np.all(np.diff(np.asarray(t["time_s"]).ravel()) > 0)
    np.testing.assert_allclose(f + np.asarray(t["phase_fraction"]["LiFePO4"]), 1.0)
    assert f.max() > 0.9 and f.min() < 0.05


def test_bliss_layout_opens_with_plain_h5py(small_run) -> None:
    out, ctx, res = small_run
    t = res.truth
    det = t["detector_path"]
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
                assert e.attrs["NX_class"] == "NXentry"
                assert e["instrument"].attrs["NX_class"] == "NXinstrument"
                assert e["instrument/pilatus"].attrs["NX_class"] == "NXdetector"
                assert e["measurement"].attrs["NX_class"] == "NXcollection"
                assert e["title"][()].decode().startswith("ascan sz ")
                link = e.get("instrument/pilatus/data", getlink=True)
                assert isinstance(link, h5py.ExternalLink)
                assert link.filename == f"scan{n:04d}/pilatus_0000.h5"
                data = e[det]
                assert data.shape[0] == t["n_depths"]
                assert data.dtype == np.uint32
                assert data.chunks == (1, *data.shape[1:])
                assert "32008" in data._filters  # bitshuffle
                assert data._filters["32008"][-1] == 2  # ... with LZ4
                assert e["measurement/pilatus"].shape == data.shape
                epoch = e["measurement/epoch"][()]
                assert np.all(np.diff(epoch) > 0)
                expected = ctx.clock.to_beamline_epoch(np.asarray(t["time_start_s"][n - 1]))
                np.testing.assert_allclose(
                    epoch, expected, rtol=0, atol=6 * ctx.preset.clock.beamline_jitter_s
                )
                sz = e["instrument/positioners/sz"]
                assert sz.attrs["units"] == "mm"
                np.testing.assert_allclose(sz[()] * 1e3, t["depth_um"], rtol=1e-12)
                np.testing.assert_allclose(e["measurement/sz"][()], sz[()])
                assert np.all(e["measurement/mon"][()] > 0)
                np.testing.assert_allclose(e["measurement/count_time"][()],
                                           ctx.preset.confocal.count_time_s)
                start = datetime.fromisoformat(e["start_time"][()].decode())
                end = datetime.fromisoformat(e["end_time"][()].decode())
                assert start.utcoffset() == timedelta(0)
                assert start.timestamp() == pytest.approx(epoch[0], abs=1e-5)
                assert end > start
        with h5py.File(out / "confocal/scan0001/pilatus_0000.h5", "r") as g:
            assert g["/entry_0000/measurement/data"].shape[0] == t["n_depths"]
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
    f = np.asarray(t["phase_fraction"]["FePO4"])
    # a charge pass with a steep front: separator side mostly FePO4, collector side LiFePO4
    ok = f[:, 0] < 0.95
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
        return res.truth, frames, epoch

    t1, fr1, ep1 = run("a", 0)
    t2, fr2, ep2 = run("b", 0)
    _, fr3, _ = run("c", 1)
    assert json.dumps(t1) == json.dumps(t2)
    np.testing.assert_array_equal(fr1, fr2)
    np.testing.assert_array_equal(ep1, ep2)
    assert not np.array_equal(fr1, fr3)
