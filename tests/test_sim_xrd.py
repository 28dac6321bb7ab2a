"""The synthetic XRD stream: diffraction core, frame rendering, NeXus/PONI/mask files, truth."""

from __future__ import annotations

import json
from pathlib import Path

import fabio
import h5py
import hdf5plugin
import numpy as np
import pyFAI
import pytest

from operando.simulate.clock import make_clock
from operando.simulate.context import SimContext, StreamResult
from operando.simulate.diffraction import (
    GAP_VALUE,
    HOT_PIXEL_COUNTS,
    PHASES,
    POLARIZATION_FACTOR,
    FrameRenderer,
    background_profile,
    d_spacing_orthorhombic,
    make_integrator,
    pattern_1d,
)
from operando.simulate.echem import simulate_echem
from operando.simulate.presets import Preset, get_preset
from operando.simulate.xrd import simulate_xrd


def _ctx(outdir: Path, preset: Preset, seed: int = 0) -> SimContext:
    return SimContext(
        outdir=outdir, preset=preset, echem=simulate_echem(preset.echem),
        clock=make_clock(preset.echem, preset.clock), seed=seed,
    )


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[SimContext, StreamResult]:
    ctx = _ctx(tmp_path_factory.mktemp("xrd_small"), get_preset("small"))
    return ctx, simulate_xrd(ctx)


def _short(preset_name: str = "small") -> Preset:
    """A few frames only: for tests that run the whole stream several times."""
    return get_preset(preset_name).with_overrides({"xrd": {"frame_period_s": 600.0}})


def test_d_spacing_matches_hand_value() -> None:
    # LiFePO4 (311): 1/d² = 9/10.332² + 1/6.010² + 1/4.692²  →  d = 2.52042 Å
    d = d_spacing_orthorhombic(3, 1, 1, 10.332, 6.010, 4.692)
    assert d == pytest.approx(2.520418, abs=1e-5)
    d = d_spacing_orthorhombic(np.array([2, 0]), np.array([0, 2]), np.array([0, 0]),
                               10.332, 6.010, 4.692)
    np.testing.assert_allclose(d, [5.166, 3.005])


def test_reflection_lists_are_physical() -> None:
    for name, phase in PHASES.items():
        hkls = {r.hkl for r in phase.reflections}
        assert (2, 0, 0) in hkls and (3, 1, 1) in hkls, name
        # Pnma extinctions: (h00) h odd, (0kl) k+l odd, (hk0) h odd
        assert (1, 0, 0) not in hkls and (0, 1, 0) not in hkls and (1, 1, 0) not in hkls
        assert min(r.d_A for r in phase.reflections) >= 1.4
        assert max(r.rel_intensity for r in phase.reflections) == pytest.approx(100.0)


def test_fast_frame_path_equals_calcfrom1d() -> None:
    ai = make_integrator("Pilatus100k", 0.2066, 0.25)
    r = FrameRenderer(ai, flux_counts=2000.0, background_counts=20.0, n_dead=3, n_hot=2,
                      rng=np.random.default_rng(0))
    g = r.two_theta_grid_deg
    prof = pattern_1d(g, {"LiFePO4": 0.6, "FePO4": 0.4}, 0.2066,
                      {"LiFePO4": 0.05, "FePO4": 0.08}, scale=2000.0)
    prof += background_profile(g, 20.0)
    fast = r.project_1d(prof)
    ref = ai.calcfrom1d(g, prof, shape=r.shape, dim1_unit="2th_deg", correctSolidAngle=True,
                        polarization_factor=POLARIZATION_FACTOR)
    np.testing.assert_allclose(fast, ref, rtol=1e-6)


def test_nexus_layout(small_run: tuple[SimContext, StreamResult]) -> None:
    ctx, res = small_run
    assert res.files == {"frames": "xrd/xrd_0001.h5", "poni": "xrd/geometry.poni",
                         "mask": "xrd/mask.edf"}
    path = ctx.outdir / res.files["frames"]
    assert not path.with_name(path.name + ".part").exists()
    n = res.truth["n_frames"]
    with h5py.File(path, "r") as f:
        def nx(p: str) -> str:
            v = f[p].attrs["NX_class"]
            return v.decode() if isinstance(v, bytes) else str(v)

        assert nx("/entry") == "NXentry"
        assert nx("/entry/instrument") == "NXinstrument"
        assert nx("/entry/instrument/detector") == "NXdetector"
        assert nx("/entry/instrument/monitor") == "NXmonitor"
        assert nx("/entry/instrument/monochromator") == "NXmonochromator"
        assert nx("/entry/data") == "NXdata"
        assert f["/entry/data"].attrs["signal"] == "data"
        start = f["/entry/start_time"][()].decode()
        assert start.endswith("+00:00") and start.startswith("2026-03-14T08:30")
        assert f["/entry/title"][()]

        data = f[res.truth["dataset_path"]]
        ny, nx_ = data.shape[1:]
        assert data.shape == (n, 195, 487) and data.dtype == np.uint32
        assert data.chunks == (1, ny, nx_)
        filt = data.id.get_create_plist().get_filter(0)
        assert filt[0] == hdf5plugin.BSHUF_ID and filt[2][-1] == 2  # bitshuffle, LZ4
        assert f["/entry/data/data"].id == data.id  # the link resolves to the same dataset

        ts = f[res.truth["timestamp_path"]]
        assert ts.dtype == np.float64 and ts.attrs["units"] == "s" and "long_name" in ts.attrs
        ts = ts[()]
        assert ts.shape == (n,) and np.all(np.diff(ts) > 0)
        np.testing.assert_array_equal(f["/entry/instrument/detector/frame_index"][()],
                                      np.arange(n))
        np.testing.assert_allclose(f["/entry/instrument/detector/count_time"][()], 10.0)
        np.testing.assert_allclose(f["/entry/instrument/monitor/data"][()],
                                   res.truth["monitor"])
        mono = f["/entry/instrument/monochromator"]
        assert mono["wavelength"][()] == pytest.approx(0.2066)
        assert mono["wavelength"].attrs["units"] == "angstrom"
        assert mono["energy"][()] == pytest.approx(60.01, abs=0.01)

        # beamline timestamps map back through the clock to the true triggers (± jitter)
        back = ctx.clock.to_potentiostat(ts)
        jitter = ctx.preset.clock.beamline_jitter_s
        np.testing.assert_allclose(back, res.truth["trigger_time_s"], atol=6 * jitter)
        assert np.std(back - np.asarray(res.truth["trigger_time_s"])) > 0.1 * jitter

        frame = data[n // 2]
    ai = pyFAI.load(str(ctx.outdir / res.files["poni"]))
    assert ai.wavelength == pytest.approx(0.2066e-10)
    assert ai.detector.shape == (195, 487)
    mask = fabio.open(str(ctx.outdir / res.files["mask"])).data
    assert mask.shape == (195, 487) and mask.sum() == 15
    assert np.count_nonzero(frame == HOT_PIXEL_COUNTS) == 5
    assert not np.any(frame == GAP_VALUE)  # the Pilatus100k is a single module
    json.dumps(res.truth)


def test_truth_is_consistent(small_run: tuple[SimContext, StreamResult]) -> None:
    ctx, res = small_run
    t = res.truth
    n = t["n_frames"]
    assert 140 <= n <= 160
    for key in ("time_s", "time_start_s", "time_end_s", "trigger_time_s", "monitor"):
        assert len(t[key]) == n
    np.testing.assert_allclose(np.asarray(t["time_end_s"]) - t["time_start_s"], 10.0)
    assert t["time_end_s"][-1] <= ctx.echem.duration_s
    fr = {p: np.asarray(v) for p, v in t["phase_fraction"].items()}
    np.testing.assert_allclose(sum(fr.values()), 1.0, atol=1e-12)
    assert fr["FePO4"].max() > 0.8 and fr["LiFePO4"][0] > 0.99
    assert set(t["reflections"]) == set(PHASES) and len(t["reflections"]["LiFePO4"]) == 8
    mon = np.asarray(t["monitor"])
    assert mon[-1] < mon[0]


def test_intermediate_only_at_high_rate(
    small_run: tuple[SimContext, StreamResult], tmp_path: Path
) -> None:
    _, res = small_run
    assert res.truth["intermediate_present"] is False
    assert all(v == 0.0 for v in res.truth["phase_fraction"]["LixFePO4"])

    p10 = get_preset("small").with_overrides({"echem": {"c_rate_per_h": 10.0}})
    ctx = _ctx(tmp_path, p10)
    t = simulate_xrd(ctx).truth
    f_int = np.asarray(t["phase_fraction"]["LixFePO4"])
    d0, d1 = ctx.echem.segment_bounds_s[2]
    mid = np.asarray(t["time_s"])
    assert t["intermediate_present"] is True
    assert np.all(f_int[mid < d0] == 0.0)  # nothing before (or during) the charge
    in_discharge = (mid >= d0) & (mid <= d1 + ctx.preset.xrd.lag_s)
    assert f_int[in_discharge].max() > 0.1
    assert f_int[-1] < 0.5 * f_int.max()  # decays during the final rest


def test_determinism(tmp_path: Path) -> None:
    p = _short()

    def frames(seed: int, sub: str) -> tuple[np.ndarray, dict]:
        ctx = _ctx(tmp_path / sub, p, seed)
        res = simulate_xrd(ctx)
        with h5py.File(ctx.outdir / res.files["frames"], "r") as f:
            return f[res.truth["dataset_path"]][()], res.truth

    a, ta = frames(0, "a")
    b, tb = frames(0, "b")
    c, tc = frames(1, "c")
    np.testing.assert_array_equal(a, b)
    assert json.dumps(ta) == json.dumps(tb)
    assert not np.array_equal(a, c)
    assert ta["monitor"] != tc["monitor"]


def test_peaks_at_expected_two_theta(small_run: tuple[SimContext, StreamResult]) -> None:
    ctx, res = small_run
    t = res.truth
    ai = pyFAI.load(str(ctx.outdir / res.files["poni"]))
    mask = fabio.open(str(ctx.outdir / res.files["mask"])).data
    fr = t["phase_fraction"]
    with h5py.File(ctx.outdir / res.files["frames"], "r") as f:
        data = f[t["dataset_path"]]
        for phase in ("LiFePO4", "FePO4"):
            k = int(np.argmax(fr[phase]))
            strongest = max(t["reflections"][phase], key=lambda r: r["rel_intensity"])
            expected = strongest["two_theta_deg"]
            res1d = ai.integrate1d(
                data[k].astype(np.float64), 1600, unit="2th_deg", mask=mask,
                radial_range=(expected - 0.4, expected + 0.4), correctSolidAngle=True,
                polarization_factor=POLARIZATION_FACTOR,
            )
            x, y = res1d.radial, res1d.intensity
            i = int(np.argmax(y))
            win = np.abs(x - x[i]) <= 0.5 * t["fwhm_deg"][phase][k]
            base = np.median(y)
            centre = np.sum(x[win] * (y[win] - base)) / np.sum(y[win] - base)
            assert abs(x[i] - expected) < 0.05, phase  # the strongest peak in the window
            assert centre == pytest.approx(expected, abs=0.01), phase
