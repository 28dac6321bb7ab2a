"""Batch azimuthal integration (operando.xrd.integrate, pipelines.xrd) against pyFAI and truth.

* the batch path equals pyFAI's own integrate1d / integrate2d frame by frame (1e-4 relative
  where a bin has counts) for every unit, error model and correction, with frames holding
  negative, NaN and sentinel pixels;
* a real Pilatus 1M CeO2 frame gives every reflection (111)..(511) within 0.005° of its
  Bragg angle and the Dioptas pattern of the same frame;
* simulated frames integrate back to the 1D patterns they were rendered from, within
  counting noise (reduced χ² ≈ 1);
* bad input fails with messages naming what and both shapes;
* integrate_frames gives the same arrays serially, in small sub-batches and on Dask.
"""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

import numpy as np
import pyFAI
import pytest
from pyFAI.integrator.azimuthal import AzimuthalIntegrator

from operando.xrd.integrate import BatchIntegrator, IntegrationError, IntegrationOptions

logging.getLogger("pyFAI").setLevel(logging.ERROR)

SENTINEL = np.uint32(2**32 - 1)
RTOL = 1e-4


# -- a synthetic detector with module gaps, a tilted geometry and powder rings -----------

@pytest.fixture(scope="module")
def geometry() -> AzimuthalIntegrator:
    det = pyFAI.detector_factory("Pilatus300k")  # 619 × 487, two horizontal module gaps
    return AzimuthalIntegrator(dist=0.12, poni1=0.03, poni2=0.04, rot1=0.05, rot2=0.02,
                               detector=det, wavelength=0.7e-10)


@pytest.fixture(scope="module")
def frames(geometry: AzimuthalIntegrator) -> np.ndarray:
    """Three uint32 Poisson frames of rings; gaps read the sentinel, as Pilatus/Eiger write.

    Frame 1 has two sentinel (overflow) pixels, frame 2 a run of ten, inside the pattern.
    """
    shape = geometry.detector.shape
    tth = geometry.center_array(shape, unit="2th_deg")
    lam = 40.0 + 600.0 * np.exp(-0.5 * ((tth % 3.0 - 1.5) / 0.05) ** 2)
    rng = np.random.default_rng(1)
    out = rng.poisson(lam, (3, *shape)).astype(np.uint32)
    out[:, geometry.detector.mask.astype(bool)] = SENTINEL
    out[1, 100, 200] = out[1, 101, 200] = SENTINEL
    out[2, 50:60, 300] = SENTINEL
    return out


@pytest.fixture(scope="module")
def images(geometry: AzimuthalIntegrator) -> dict[str, np.ndarray]:
    shape = geometry.detector.shape
    rng = np.random.default_rng(2)
    mask = np.zeros(shape, np.uint8)
    mask[10:20, 10:40] = 1
    flat = rng.uniform(0.9, 1.1, shape).astype(np.float32)
    flat[5, 5] = 0.0  # a dead flat-field pixel: masked statically
    return {"mask": mask, "dark": rng.uniform(0.0, 3.0, shape).astype(np.float32),
            "flat": flat}


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    """Largest |a − b| / |b|; where b is 0 (σ of a one-pixel bin), a must be ~0 too."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    assert np.all(np.isfinite(a)) and np.all(np.isfinite(b))
    zero = b == 0
    if zero.any():
        assert np.all(np.abs(a[zero]) <= 1e-9 * np.max(np.abs(b))), a[zero]
    return float(np.max(np.abs(a - b)[~zero] / np.abs(b[~zero]))) if (~zero).any() else 0.0


def _compare_1d(bi: BatchIntegrator, frames: np.ndarray, k: np.ndarray) -> dict[str, float]:
    res = bi.integrate(frames, k)
    worst = {"I": 0.0, "sigma": 0.0, "count": 0.0}
    for i in range(frames.shape[0]):
        ref = bi.reference_integrate1d(frames[i], float(k[i]))
        np.testing.assert_allclose(bi.radial, ref.radial, rtol=1e-9)
        has = ref.count > 0
        assert np.array_equal(has, res.count[i] > 0), "empty bins differ from pyFAI"
        assert np.all(np.isnan(res.intensity[i][~has]))
        worst["I"] = max(worst["I"], _rel(res.intensity[i][has], ref.intensity[has]))
        worst["count"] = max(worst["count"], _rel(res.count[i][has], ref.count[has]))
        if bi.options.error_model == "none":
            assert np.all(np.isnan(res.sigma[i]))
        else:
            worst["sigma"] = max(worst["sigma"], _rel(res.sigma[i][has], ref.sigma[has]))
        # pixels masked in this frame only, among those in the pattern
        assert 0 <= res.n_invalid[i] <= int(bi.dynamic_mask(frames[i]).sum())
    return worst


CASES_1D = [
    # unit, error model, options, images, frame dtype
    ("2th_deg", "poisson", {}, (), "uint32"),
    ("q_A^-1", "azimuthal", {}, (), "uint32"),
    ("d_A", "poisson", {"radial_range": (1.0, 6.0)}, ("mask", "dark", "flat"), "uint32"),
    ("2th_deg", "azimuthal", {"azimuth_range_deg": (-90.0, 45.0), "polarization_factor": None,
                              "correct_solid_angle": False}, ("mask", "dark", "flat"), "uint32"),
    ("q_A^-1", "poisson", {"radial_range": (0.5, 3.5), "polarization_factor": -0.5},
     ("mask", "flat"), "int32"),
    ("2th_deg", "none", {"method": ("no", "csr", "cython")}, ("dark",), "float32"),
    ("d_A", "azimuthal", {"method": ("full", "csr", "cython"), "radial_range": (1.2, 4.0)},
     ("mask",), "float64"),
]


@pytest.mark.parametrize(("unit", "model", "extra", "use", "dtype"), CASES_1D)
def test_batch_equals_pyfai_integrate1d(
    geometry: AzimuthalIntegrator, frames: np.ndarray, images: dict[str, np.ndarray],
    unit: str, model: str, extra: dict, use: tuple[str, ...], dtype: str,
) -> None:
    opts = IntegrationOptions(unit=unit, npt=400, error_model=model, **extra)  # type: ignore[arg-type]
    bi = BatchIntegrator(geometry, frames.shape[1:], opts, saturation_value=float(SENTINEL),
                         **{k: images[k] for k in use})
    data = frames.astype(dtype)
    if dtype in ("int32", "float32", "float64"):
        data[0, 30, 30] = -5  # a negative pixel: masked in that frame only
    if dtype.startswith("float"):
        data[1, 40, 41] = np.nan
    k = np.array([1.0, 2.5, 0.7])  # per-frame normalisation (monitor)
    worst = _compare_1d(bi, data, k)
    assert worst["I"] < RTOL, worst
    assert worst["sigma"] < RTOL, worst
    assert worst["count"] < 1e-6, worst


def test_dynamic_pixels_are_counted_and_excluded(
    geometry: AzimuthalIntegrator, frames: np.ndarray,
) -> None:
    """The sentinel pixels of frames 1 and 2 are masked in those frames only, and counted;
    the result equals integrate1d with those pixels in the mask, not integrate1d on raw
    counts of 4e9 (which the detector's own dummy value would hide)."""
    bi = BatchIntegrator(geometry, frames.shape[1:], IntegrationOptions(unit="2th_deg", npt=300),
                         saturation_value=float(SENTINEL))
    res = bi.integrate(frames)
    assert res.n_invalid.tolist() == [0, 2, 10]
    assert [int(bi.dynamic_mask(f).sum()) for f in frames] == [0, 2, 10]
    assert np.all(np.isfinite(res.intensity[:, res.count[0] > 0]))
    assert np.nanmax(res.intensity) < 1e4  # a 4.3e9 sentinel would dominate its bin
    # without a saturation value, uint32 2**32-1 is still caught by pyFAI's detector dummy
    bi2 = BatchIntegrator(geometry, frames.shape[1:], IntegrationOptions(unit="2th_deg", npt=300))
    np.testing.assert_array_equal(bi2.integrate(frames).intensity, res.intensity)


@pytest.mark.parametrize("model", ["poisson", "azimuthal"])
def test_batch_equals_pyfai_integrate2d(
    geometry: AzimuthalIntegrator, frames: np.ndarray, images: dict[str, np.ndarray], model: str,
) -> None:
    extra = {"azimuth_range_deg": (-100.0, 60.0)} if model == "azimuthal" else {}
    opts = IntegrationOptions(unit="q_A^-1", npt=200, npt_azimuthal=24, error_model=model,
                              **extra)  # type: ignore[arg-type]
    bi = BatchIntegrator(geometry, frames.shape[1:], opts, saturation_value=float(SENTINEL),
                         dark=images["dark"], flat=images["flat"])
    k = np.array([1.0, 3.0, 0.5])
    res = bi.integrate2d(frames, k)
    assert res.intensity.shape == (3, 24, 200)
    assert bi.azimuthal is not None and bi.azimuthal.shape == (24,)
    for i in range(3):
        ref = bi.reference_integrate2d(frames[i], float(k[i]))
        np.testing.assert_allclose(ref.azimuthal, bi.azimuthal, rtol=1e-9)
        has = ref.count > 0
        assert np.array_equal(has, res.count[i] > 0)
        assert _rel(res.intensity[i][has], ref.intensity[has]) < RTOL
        assert _rel(res.sigma[i][has], ref.sigma[has]) < RTOL
    # the 1D pattern of the same integrator is still pyFAI's integrate1d
    r1 = bi.integrate(frames[:1])
    ref1 = bi.reference_integrate1d(frames[0])
    has = ref1.count > 0
    assert _rel(r1.intensity[0][has], ref1.intensity[has]) < RTOL


# -- real data: CeO2 on a Pilatus 1M ---------------------------------------------------------

CEO2_A = 5.411651  # Å
CEO2_HKL = [(1, 1, 1), (2, 0, 0), (2, 2, 0), (3, 1, 1), (2, 2, 2), (4, 0, 0), (3, 3, 1),
            (4, 2, 0), (4, 2, 2), (5, 1, 1)]


def _gauss_line(x: np.ndarray, amp: float, c: float, s: float, b0: float,
                b1: float) -> np.ndarray:
    return amp * np.exp(-0.5 * ((x - c) / s) ** 2) + b0 + b1 * (x - c)


def test_real_ceo2_pilatus1m(shared_data: Path) -> None:
    from scipy.optimize import curve_fit

    from operando.io.xrd.frames import read_image
    from operando.io.xrd.geometry import read_poni

    d = shared_data / "xrd"
    ai = read_poni(d / "CeO2_Pilatus1M.poni")
    wavelength_A = ai.wavelength * 1e10
    assert wavelength_A == pytest.approx(0.4066)
    frame = np.flipud(read_image(d / "CeO2_Pilatus1M.tif", what="frame"))  # rows bottom-up
    # Dioptas integrated it without polarisation correction
    opts = IntegrationOptions(unit="2th_deg", npt=3000, polarization_factor=None)
    bi = BatchIntegrator(ai, frame.shape, opts)
    res = bi.integrate(frame[None])
    x, y = bi.radial, res.intensity[0]
    ok = np.isfinite(y)
    assert res.n_invalid[0] == int((frame < 0).sum())  # module gaps read -1 / -2
    deviations = {}
    for hkl in CEO2_HKL:
        d_A = CEO2_A / np.sqrt(sum(h * h for h in hkl))
        expected = np.degrees(2.0 * np.arcsin(wavelength_A / (2.0 * d_A)))
        w = ok & (np.abs(x - expected) < 0.15)
        xs, ys = x[w], y[w]
        p0 = [ys.max() - ys.min(), xs[np.argmax(ys)], 0.03, ys.min(), 0.0]
        p, _ = curve_fit(_gauss_line, xs, ys, p0=p0)
        deviations[hkl] = float(p[1] - expected)
    worst = max(deviations.items(), key=lambda kv: abs(kv[1]))
    print(f"CeO2 worst 2θ deviation: {worst[0]} {worst[1]:+.4f}°")
    assert abs(worst[1]) < 0.005, deviations
    xy = np.loadtxt(d / "CeO2_Pilatus1M.xy")
    inside = (xy[:, 0] >= x[ok][0]) & (xy[:, 0] <= x[ok][-1])
    ours = np.interp(xy[inside, 0], x[ok], y[ok])
    corr = float(np.corrcoef(ours, xy[inside, 1])[0, 1])
    print(f"correlation with Dioptas: {corr:.5f}")
    assert corr >= 0.995


# -- simulated run: patterns back within counting noise --------------------------------------

def test_simulated_frames_integrate_to_their_patterns(small_run) -> None:
    from operando.io.xrd.frames import open_frames, read_image
    from operando.io.xrd.geometry import read_poni
    from operando.simulate.beamtime import load_truth
    from operando.simulate.diffraction import POLARIZATION_FACTOR, FrameRenderer
    from operando.simulate.presets import get_preset
    from operando.simulate.timeline import MONITOR_COUNTS_PER_S

    truth = load_truth(small_run.truth_path)["xrd"]
    raw = small_run.outdir / "xrd"
    ai = read_poni(raw / "geometry.poni")
    mask = read_image(raw / "mask.edf", what="mask")
    src = open_frames(raw / "xrd_0001.h5")
    assert src.n_frames == truth["n_frames"]
    spec = get_preset("small").xrd
    monitor_rel = np.asarray(truth["monitor"]) / (MONITOR_COUNTS_PER_S * truth["count_time_s"])

    # no pixel splitting: each pixel counts in the bin of its centre, so the expected
    # intensity of a bin is the mean over its pixels of the rendered 1D profile. Wide bins
    # (~900 pixels) make the test sensitive: a polarisation factor of 0.5 instead of 0.99,
    # a missing solid-angle correction or ignoring the monitor give reduced χ² of 2.3–60.
    opts = IntegrationOptions(unit="2th_deg", npt=100, method=("no", "csr", "cython"),
                              polarization_factor=POLARIZATION_FACTOR)
    bi = BatchIntegrator(ai, src.frame_shape, opts, mask=mask,
                         saturation_value=src.saturation_value)
    renderer = FrameRenderer(ai, flux_counts=spec.flux_counts,
                             background_counts=spec.background_counts, n_dead=0, n_hot=0,
                             rng=np.random.default_rng(0))
    corr = (np.asarray(ai.solidAngleArray(src.frame_shape), float)
            * np.asarray(ai.polarization(src.frame_shape, factor=POLARIZATION_FACTOR), float))
    lo, hi = bi.radial_range
    tth = renderer.pixel_two_theta_deg.ravel()
    pix_bin = np.floor((tth - lo) / ((hi - lo) / opts.npt)).astype(int)
    use = (mask.ravel() == 0) & (pix_bin >= 0) & (pix_bin < opts.npt)

    picks = [0, src.n_frames // 2, src.n_frames - 1]
    frames = np.stack([src.read(i, i + 1)[0] for i in picks])
    res = bi.integrate(frames, monitor_rel[picks])
    chi2 = []
    for j, i in enumerate(picks):
        frac = {p: truth["phase_fraction"][p][i] for p in truth["phase_fraction"]}
        fwhm = {p: truth["fwhm_deg"][p][i] for p in truth["fwhm_deg"]}
        expected_counts = renderer.expected(frac, fwhm, monitor=1.0).ravel()
        num = np.bincount(pix_bin[use], expected_counts[use], minlength=opts.npt)
        den = np.bincount(pix_bin[use], corr.ravel()[use], minlength=opts.npt)
        has = res.count[j] > 0
        truth_i = num[has] / den[has]
        z = (res.intensity[j][has] - truth_i) / res.sigma[j][has]
        chi2.append(float(np.mean(z**2)))
        # the pattern carries the reflections: strongest bin well above the background
        assert truth_i.max() > 5 * np.median(truth_i)
    print("reduced chi2 per frame:", [round(c, 3) for c in chi2])
    assert all(0.7 < c < 1.5 for c in chi2), chi2


# -- bad input -------------------------------------------------------------------------------

def test_frame_shape_must_match_poni_detector(geometry: AzimuthalIntegrator) -> None:
    with pytest.raises(IntegrationError, match=r"\(619, 400\).*Pilatus 300k.*\(619, 487\)"):
        BatchIntegrator(geometry, (619, 400), IntegrationOptions())


def test_mask_of_wrong_shape(geometry: AzimuthalIntegrator) -> None:
    with pytest.raises(IntegrationError, match=r"mask has shape \(10, 10\).*\(619, 487\)"):
        BatchIntegrator(geometry, (619, 487), IntegrationOptions(), mask=np.zeros((10, 10)))
    with pytest.raises(IntegrationError, match=r"flat has shape \(487, 619\)"):
        BatchIntegrator(geometry, (619, 487), IntegrationOptions(), flat=np.ones((487, 619)))


def test_frames_of_wrong_shape_and_bad_options(
    geometry: AzimuthalIntegrator, frames: np.ndarray,
) -> None:
    bi = BatchIntegrator(geometry, frames.shape[1:], IntegrationOptions(npt=100))
    with pytest.raises(IntegrationError, match=r"\(2, 619, 486\).*\(n, 619, 487\)"):
        bi.integrate(frames[:2, :, :486])
    with pytest.raises(IntegrationError, match="normalization has 2 values for 3 frames"):
        bi.integrate(frames, np.ones(2))
    with pytest.raises(IntegrationError, match="npt_azimuthal"):
        bi.integrate2d(frames)
    with pytest.raises(IntegrationError, match="radial_range"):
        IntegrationOptions(radial_range=(5.0, 1.0))
    with pytest.raises(IntegrationError, match="csr"):
        IntegrationOptions(method=("bbox", "histogram", "cython"))


def test_options_attrs_are_netcdf_safe() -> None:
    attrs = IntegrationOptions(radial_range=(1.0, 2.0), npt_azimuthal=36).to_attrs()
    for key, value in attrs.items():
        assert value is not None, key
        assert isinstance(value, str | int | float | list), (key, value)
    assert attrs["radial_range"] == [1.0, 2.0]
    assert attrs["polarization_factor"] == 0.99
    assert attrs["npt_azimuthal"] == 36 and attrs["method"] == "bbox,csr,cython"


# -- pipelines.xrd: chunks, sub-batches, Dask ------------------------------------------------

def test_integrate_frames_serial_subbatched_and_dask(small_run, monkeypatch) -> None:
    from distributed import Client, LocalCluster

    import pipelines.xrd as px
    from operando.io.xrd.frames import open_frames
    from pipelines.runner import Runner

    raw = small_run.outdir / "xrd"
    src = open_frames(raw / "xrd_0001.h5")
    setup = px.IntegratorSetup(
        poni=raw / "geometry.poni", mask=raw / "mask.edf", dark=None, flat=None,
        frame_shape=src.frame_shape, saturation_value=src.saturation_value,
        options=IntegrationOptions(unit="2th_deg", npt=500, npt_azimuthal=12))
    assert setup.key() == px.IntegratorSetup(**setup.__dict__).key()
    seen: list[tuple[int, int]] = []
    serial = list(px.integrate_frames(src, setup, chunk_frames=40,
                                      progress=lambda d, t: seen.append((d, t))))
    assert [(r.start, r.stop) for r in serial] == src.chunks(40)
    assert seen[-1] == (src.n_frames, src.n_frames)
    assert px.cached_integrator(setup) is px.cached_integrator(setup)  # built once per process
    info = pickle.loads(pickle.dumps(px.describe_integrator(setup)))
    assert (info.radial_name, info.radial_units) == ("two_theta", "degree")
    assert info.radial.shape == (500,) and info.azimuthal is not None
    assert info.azimuthal.shape == (12,) and len(info.mask_checksum) == 64

    # the same with tiny sub-batches (3 frames): identical arrays
    frame_bytes = src.frame_shape[0] * src.frame_shape[1] * np.dtype(src.dtype).itemsize
    monkeypatch.setattr(px, "SUB_BATCH_BYTES", 3 * frame_bytes)
    assert px.sub_batch_frames(src) == 3
    small = list(px.integrate_frames(src, setup, chunk_frames=40))
    for a, b in zip(serial, small, strict=True):
        np.testing.assert_array_equal(a.intensity, b.intensity)
        np.testing.assert_array_equal(a.cake, b.cake)

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        runner = Runner(None, "", client=lambda: (client, 1))
        dist = list(px.integrate_frames(src, setup, runner, chunk_frames=40))
    assert [(r.start, r.stop) for r in dist] == [(r.start, r.stop) for r in serial]
    for a, b in zip(serial, dist, strict=True):
        assert a.intensity.dtype == np.float32 and a.intensity.shape == (b.stop - b.start, 500)
        np.testing.assert_array_equal(a.intensity, b.intensity)
        np.testing.assert_array_equal(a.sigma, b.sigma)
        np.testing.assert_array_equal(a.cake, b.cake)
        np.testing.assert_array_equal(a.n_invalid, b.n_invalid)
    # equal to the integrator applied directly to the frames
    direct = px.cached_integrator(setup).integrate(src.read(0, 5))
    np.testing.assert_allclose(serial[0].intensity[:5], direct.intensity, rtol=1e-6)


def test_integrate_chunk_refuses_other_frame_shape(small_run) -> None:
    import pipelines.xrd as px
    from operando.io.xrd.frames import open_frames

    raw = small_run.outdir / "xrd"
    src = open_frames(raw / "xrd_0001.h5")
    setup = px.IntegratorSetup(poni=raw / "geometry.poni", mask=None, dark=None, flat=None,
                               frame_shape=(100, 100), saturation_value=None,
                               options=IntegrationOptions())
    with pytest.raises(IntegrationError, match=r"\(195, 487\).*\(100, 100\)"):
        px.integrate_chunk(src, 0, 2, setup)
