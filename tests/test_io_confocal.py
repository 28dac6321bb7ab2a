"""Confocal scan files (angle and energy dispersive), the (pass, depth) grid, EDXRD physics.

Most tests write small Bliss-like files with h5py; the last ones read the simulated
`small` run (``confocal/confocal.h5`` and, when simulated, ``confocal/confocal_ed.h5``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pytest

from operando.confocal.grid import POINT_STATUS, depth_grid
from operando.io.errors import InputFileError
from operando.io.xrd.confocal import (
    ConfocalFormatError,
    open_confocal_frames,
    read_confocal_points,
    read_confocal_spectra,
)
from operando.xrd.energy_dispersive import (
    HC_KEV_A,
    channel_energy_keV,
    ed_d,
    ed_patterns,
    ed_q,
)

T0 = 1.7e9  # epoch s of the first point
FRAME = (4, 5)  # tiny detector frames
STATUS = {v: k for k, v in POINT_STATUS.items()}

COUNTERS = {"depth_path": "instrument/positioners/sz", "depth_unit": "mm",
            "epoch_path": "measurement/epoch", "count_time_path": "measurement/count_time",
            "monitor_path": "measurement/mon"}


@dataclass
class Pass:
    """One scan entry: motor positions, and optionally counters of other lengths."""

    number: int
    sz: list[float]
    n_frames: int | None = None  # frames/spectra written (default: len(sz))
    n_counters: int | None = None  # epoch / count_time / mon length (default: len(sz))
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.number}.1"


def frame_value(number: int, point: int) -> int:
    """What every pixel of scan ``number``'s frame ``point`` holds (to check the pairing)."""
    return 100 * number + point


def epoch_of(number: int, point: int) -> float:
    return T0 + 100.0 * number + 10.0 * point


def write_master(
    path: Path, passes: list[Pass], *, mode: str = "angle", lima: bool = True,
    sz_units: str = "mm", calibration: list[float] | None = None, cal_units: str = "keV",
    two_theta: float | None = 6.0, n_channels: int = 16,
) -> Path:
    """A Bliss-like master: angle frames (external links to LIMA files, or inline) or MCA
    spectra; entries written in the order given (not natural order)."""
    with h5py.File(path, "w") as f:
        for ps in passes:
            n_pts = len(ps.sz)
            nf = n_pts if ps.n_frames is None else ps.n_frames
            nc = n_pts if ps.n_counters is None else ps.n_counters
            e = f.create_group(ps.name)
            inst = e.create_group("instrument")
            d = inst.create_group("positioners").create_dataset("sz", data=np.array(ps.sz))
            d.attrs["units"] = sz_units
            meas = e.create_group("measurement")
            meas.create_dataset("epoch", data=[epoch_of(ps.number, i) for i in range(nc)])
            meas["epoch"].attrs["units"] = "s"
            meas.create_dataset("count_time", data=np.full(nc, 2.0))
            meas.create_dataset("mon", data=1000.0 + ps.number + np.arange(nc))
            for k, v in ps.extra.items():
                if k in meas:
                    del meas[k]
                meas.create_dataset(k, data=v)
            if mode == "angle":
                frames = np.stack([np.full(FRAME, frame_value(ps.number, i), np.uint16)
                                   for i in range(nf)]) if nf else np.zeros((0, *FRAME),
                                                                            np.uint16)
                det = inst.create_group("pilatus")
                det.attrs["NX_class"] = "NXdetector"
                if lima:
                    rel = f"scan{ps.number:04d}/pilatus_0000.h5"
                    (path.parent / rel).parent.mkdir(parents=True, exist_ok=True)
                    with h5py.File(path.parent / rel, "w") as g:
                        g.create_dataset("/entry_0000/measurement/data", data=frames,
                                         chunks=(1, *FRAME) if nf else None)
                    det["data"] = h5py.ExternalLink(rel, "/entry_0000/measurement/data")
                else:
                    det.create_dataset("data", data=frames)
            else:
                mca = inst.create_group("mca")
                spectra = np.array([[frame_value(ps.number, i) + ch for ch in range(n_channels)]
                                    for i in range(nf)], dtype=np.uint32)
                mca.create_dataset("data", data=spectra.reshape(nf, n_channels))
                cal = mca.create_dataset("calibration", data=calibration or [0.05, 0.03, 0.0])
                cal.attrs["units"] = cal_units
                if two_theta is not None:
                    tt = mca.create_dataset("two_theta", data=two_theta)
                    tt.attrs["units"] = "degree"
    return path


GRID_MM = [0.010, 0.030, 0.050, 0.070]


def irregular_passes() -> list[Pass]:
    """10 passes over 4 depths, entries written 10.1 first; pass 3 skips a depth, pass 6
    has counters longer than its frames, the last (10.1) is cut short after 2 points."""
    passes = []
    for n in range(1, 11):
        sz = list(GRID_MM)
        ps = Pass(n, sz)
        if n == 3:
            ps.sz = [GRID_MM[0], GRID_MM[1], GRID_MM[3]]
        if n == 6:
            ps.n_frames = 3  # counters 4, frames 3
        if n == 10:
            ps.sz = GRID_MM[:2]
        passes.append(ps)
    return passes[::-1]


# ======================================================================================
# energy-dispersive physics
# ======================================================================================

def test_channel_energy_and_conversions_by_hand() -> None:
    e = channel_energy_keV(np.array([0, 100, 1000]), [0.05, 0.03, 1e-6])
    np.testing.assert_allclose(e, [0.05, 0.05 + 3.0 + 0.01, 0.05 + 30.0 + 1.0], rtol=1e-12)
    np.testing.assert_allclose(channel_energy_keV([10], [1.0, 0.5]), [6.0])
    assert HC_KEV_A == pytest.approx(12.398419843320026, rel=1e-15)
    # a d = 3.0 Å reflection at 2θ = 6°: E = hc / (2 d sin 3°)
    e_peak = 12.398419843320026 / (2 * 3.0 * math.sin(math.radians(3.0)))
    assert e_peak == pytest.approx(39.48343, rel=1e-6)
    assert float(ed_d(e_peak, 6.0)) == pytest.approx(3.0, rel=1e-12)
    assert float(ed_q(e_peak, 6.0)) == pytest.approx(2 * math.pi / 3.0, rel=1e-12)
    # q = 4π E sin θ / hc at 20 keV, 2θ = 10°
    assert float(ed_q(20.0, 10.0)) == pytest.approx(
        4 * math.pi * 20.0 * math.sin(math.radians(5.0)) / 12.398419843320026, rel=1e-12)
    with pytest.raises(ValueError, match="two_theta_deg"):
        ed_q(20.0, 0.0)
    with pytest.raises(ValueError, match="coefficients"):
        channel_energy_keV([1], [1.0])


def test_ed_patterns_sigma_drop_and_order() -> None:
    counts = np.array([[0, 4, 9, 16, 0, 25], [1, 1, 1, 1, 1, 1]], dtype=float)
    energy = channel_energy_keV(np.arange(6), [-0.1, 0.05])  # -0.1, -0.05, 0, 0.05, 0.1, 0.15
    q, inten, sig = ed_patterns(counts, energy, 6.0, normalization=np.array([2.0, 4.0]))
    assert q.shape == (3,) and np.all(np.diff(q) > 0)
    np.testing.assert_allclose(q, ed_q([0.05, 0.1, 0.15], 6.0))
    assert inten.dtype == np.float32 and sig.dtype == np.float32
    np.testing.assert_allclose(inten, [[8.0, 0.0, 12.5], [0.25, 0.25, 0.25]])
    # Poisson σ = √max(counts, 1) / k: an empty channel has σ = 1 count
    np.testing.assert_allclose(sig, [[2.0, 0.5, 2.5], [0.25, 0.25, 0.25]])
    # a decreasing calibration is reversed so that q increases
    q2, i2, _ = ed_patterns(counts[:, ::-1], energy[::-1], 6.0)
    np.testing.assert_allclose(q2, q)
    np.testing.assert_allclose(i2[0], [16, 0, 25])
    with pytest.raises(ValueError, match="monotonic"):
        ed_patterns(counts, channel_energy_keV(np.arange(6), [1.0, 0.5, -0.1]), 6.0)
    with pytest.raises(ValueError, match="normalization"):
        ed_patterns(counts, energy, 6.0, normalization=np.array([1.0, 0.0]))


# ======================================================================================
# the (pass, depth) grid
# ======================================================================================

def test_grid_clustered_with_jitter_missing_cut_short_and_duplicate() -> None:
    rng = np.random.default_rng(1)
    nominal = np.array([10.0, 30.0, 50.0, 70.0])
    rows_p, rows_d = [], []
    plan = {0: [0, 1, 2, 3], 1: [0, 1, 3], 2: [0, 1, 1, 2, 3], 3: [0, 1]}
    for p, cells in plan.items():
        for j in cells:
            rows_p.append(p)
            rows_d.append(nominal[j] + rng.normal(0, 0.3))
    g = depth_grid(rows_p, rows_d, n_passes=4, pass_labels=["a", "b", "c", "d"])
    np.testing.assert_allclose(g.depth_um, nominal, atol=1.0)
    assert g.tolerance_um == pytest.approx(5.0, rel=0.1)
    assert g.status[1, 2] == STATUS["missing"]
    assert list(g.status[3]) == [0, 0, STATUS["pass_cut_short"], STATUS["pass_cut_short"]]
    assert g.status[2].tolist() == [0, 0, 0, 0]
    assert g.index[2, 1] == 8  # the first of the two points of pass 2 at 30 µm is kept
    assert np.isclose(g.measured_depth_um[2, 1], rows_d[8])
    text = "\n".join(g.notes)
    assert "pass 1 (b): 3 of 4 depths, missing 50" in text
    assert "pass 3 (d): cut short" in text
    assert "duplicate_dropped point 9" in text


def test_grid_decreasing_sweep_off_grid_and_given_depths() -> None:
    # passes sweep from deep to shallow; pass 1 stops after two points; pass 2 has a
    # motor glitch at 41 µm (off the given grid) instead of 50 µm
    p = [0, 0, 0, 0, 1, 1, 2, 2, 2, 2]
    d = [70, 50, 30, 10, 70, 50, 70, 41, 30, 10]
    assert depth_grid(p, d, n_passes=3, depths_um=[10, 30, 50, 70]).tolerance_um == 10.0
    g = depth_grid(p, d, n_passes=3, depths_um=[70, 10, 30, 50], tolerance_um=3.0)
    assert list(g.status[1]) == [2, 2, 0, 0]  # cut short on the shallow side
    assert g.status[2, 2] == STATUS["missing"]
    assert any("point 7 at 41 µm: off grid (9 µm from the nearest depth 50 µm" in n
               for n in g.notes)
    assert g.index[0].tolist() == [3, 2, 1, 0]
    # clustering drops a depth seen in far fewer passes than the others
    g2 = depth_grid(p, d, n_passes=3)
    np.testing.assert_allclose(g2.depth_um, [10, 30, 50, 70])
    assert any("off grid" in n for n in g2.notes)
    # an empty pass is cut short everywhere
    g3 = depth_grid([0, 0], [10.0, 30.0], n_passes=2, depths_um=[10, 30])
    assert g3.status[1].tolist() == [2, 2]


# ======================================================================================
# angle-dispersive files
# ======================================================================================

def test_angle_mode_irregular_passes(tmp_path: Path) -> None:
    master = write_master(tmp_path / "confocal.h5", irregular_passes())
    source, pts = open_confocal_frames([master], detector_path="instrument/pilatus/data",
                                       **COUNTERS)
    names = [e.split("::/")[1] for e in pts.entries]
    assert names == [f"{n}.1" for n in range(1, 11)]  # natural order, 9.1 before 10.1
    assert all(e.startswith(f"{master}::/") for e in pts.entries)
    per_pass = np.bincount(pts.pass_index)
    assert per_pass.tolist() == [4, 4, 3, 4, 4, 3, 4, 4, 4, 2]
    assert pts.n_points == 36
    # every point reads its own frame and keeps its own time
    frames = source.read(0, source.n_frames)
    numbers = np.array([int(n.split(".")[0]) for n in names])[pts.pass_index]
    assert np.all(frames[pts.frame_index, 0, 0] == 100 * numbers + pts.point_in_pass)
    np.testing.assert_allclose(pts.epoch_s, T0 + 100.0 * numbers + 10.0 * pts.point_in_pass)
    np.testing.assert_allclose(pts.monitor, 1000.0 + numbers + pts.point_in_pass)
    np.testing.assert_allclose(pts.count_time_s, 2.0)
    np.testing.assert_allclose(pts.depth_um, pts.depth_motor * 1000.0)
    text = "\n".join(pts.notes)
    assert "6.1: lengths differ (frames 3, sz 4, epoch 4, count_time 4, mon 4) -> 3" in text
    assert "pass 9 (confocal.h5::/10.1): 2 points, most passes have 4" in text
    assert "measurement/epoch" in pts.sources["epoch"]
    g = depth_grid(pts.pass_index, pts.depth_um, n_passes=pts.n_passes)
    np.testing.assert_allclose(g.depth_um, [10, 30, 50, 70])
    assert g.status[2].tolist() == [0, 0, STATUS["missing"], 0]
    assert g.status[5].tolist() == [0, 0, 0, STATUS["pass_cut_short"]]
    assert g.status[9].tolist() == [0, 0, 2, 2]


def test_angle_mode_regular_uses_one_frame_source_inline_frames(tmp_path: Path) -> None:
    passes = [Pass(n, list(GRID_MM)) for n in (2, 1, 3)]
    master = write_master(tmp_path / "run.h5", passes, lima=False)
    source, pts = open_confocal_frames([master], scans="*.1",
                                       detector_path="instrument/pilatus/data", **COUNTERS)
    assert source.layout == "bliss" and source.n_frames == 12 and pts.notes == ()
    assert pts.frame_index.tolist() == list(range(12))
    assert source.read(5, 6)[0, 0, 0] == frame_value(2, 1)


def test_depth_in_um_with_sign_and_zero(tmp_path: Path) -> None:
    # the motor runs toward the origin: depth = -(motor - 500) µm; within a pass the
    # motor increases, so depth decreases (sweep from the collector side)
    passes = [Pass(1, [430.0, 450.0, 470.0, 490.0]), Pass(2, [430.0, 450.0, 470.0])]
    master = write_master(tmp_path / "um.h5", passes, sz_units="um")
    kw = {**COUNTERS, "depth_unit": "um"}
    pts = read_confocal_points([master], depth_zero=500.0, depth_sign=-1, **kw)
    np.testing.assert_allclose(pts.depth_um[:4], [70.0, 50.0, 30.0, 10.0])
    assert pts.frame_index.tolist() == list(range(7))
    assert pts.sources["depth_um"] == "-(sz - 500 um)"
    g = depth_grid(pts.pass_index, pts.depth_um, n_passes=2)
    assert g.status[1].tolist() == [STATUS["pass_cut_short"], 0, 0, 0]
    with pytest.raises(ConfocalFormatError, match=r"units 'um'.*confocal.depth_unit = 'mm'"):
        read_confocal_points([master], **COUNTERS)


def test_bad_input_errors_name_file_path_and_key(tmp_path: Path) -> None:
    master = write_master(tmp_path / "c.h5", [Pass(1, GRID_MM), Pass(2, GRID_MM)])
    with pytest.raises(ConfocalFormatError, match=r"not found: .*nope.h5 \(confocal.files\)"):
        read_confocal_points([tmp_path / "nope.h5"], **COUNTERS)
    for key, bad in (("epoch_path", "measurement/epoch_x"),
                     ("depth_path", "instrument/positioners/zz"),
                     ("monitor_path", "measurement/i0"),
                     ("count_time_path", "measurement/ct")):
        with pytest.raises(ConfocalFormatError) as err:
            read_confocal_points([master], **{**COUNTERS, key: bad})
        msg = str(err.value)
        assert str(master) in msg and f"/1.1/{bad}" in msg and f"confocal.{key}" in msg
    assert issubclass(ConfocalFormatError, InputFileError)
    with pytest.raises(ConfocalFormatError, match=r"no scan entry matches '\*\.2'.*"
                       r"confocal.scans.*1\.1, 2\.1"):
        read_confocal_points([master], scans="*.2", **COUNTERS)
    with pytest.raises(ConfocalFormatError, match=r"/1.1/instrument/eiger/data.*"
                       r"confocal.detector_path"):
        open_confocal_frames([master], detector_path="instrument/eiger/data", **COUNTERS)
    (tmp_path / "scan0002" / "pilatus_0000.h5").unlink()
    with pytest.raises(ConfocalFormatError, match=r"c.h5: a broken external link .*"
                       r"scan0002/pilatus_0000.h5.* at /2.1/instrument/pilatus/data"):
        open_confocal_frames([master], detector_path="instrument/pilatus/data", **COUNTERS)


def test_epoch_problems(tmp_path: Path) -> None:
    nan_one = np.array([epoch_of(1, 0), np.nan, epoch_of(1, 2), epoch_of(1, 3)])
    m1 = write_master(tmp_path / "a.h5", [Pass(1, GRID_MM, extra={"epoch": nan_one})])
    pts = read_confocal_points([m1], **COUNTERS)
    assert pts.point_in_pass.tolist() == [0, 2, 3] and pts.frame_index.tolist() == [0, 1, 2]
    assert any("point 1 has no finite epoch; dropped" in n for n in pts.notes)
    m2 = write_master(tmp_path / "b.h5", [Pass(1, GRID_MM, extra={"epoch": np.full(4, np.nan)})])
    with pytest.raises(ConfocalFormatError, match=r"b.h5::/1.1/measurement/epoch: no finite "
                       r"epoch.*confocal.epoch_path"):
        read_confocal_points([m2], **COUNTERS)
    m3 = write_master(tmp_path / "c.h5", [Pass(1, GRID_MM, extra={"epoch": np.arange(4.0)})])
    with pytest.raises(ConfocalFormatError, match="expected UTC epoch seconds"):
        read_confocal_points([m3], **COUNTERS)
    # optional counters may be absent (None) or one scalar per scan
    m4 = write_master(tmp_path / "d.h5", [Pass(1, GRID_MM, extra={"count_time": np.array(3.0)})])
    pts = read_confocal_points([m4], **{**COUNTERS, "monitor_path": None})
    assert np.all(np.isnan(pts.monitor)) and pts.sources["monitor"] == "absent"
    np.testing.assert_allclose(pts.count_time_s, 3.0)
    # ... or one value stored as a one-element array (NeXus writers): not a 1-point scan
    m5 = write_master(tmp_path / "e.h5", [Pass(1, GRID_MM, extra={
        "count_time": np.array([3.0]), "mon": np.array([5.0])})])
    pts = read_confocal_points([m5], **COUNTERS)
    assert pts.point_in_pass.tolist() == [0, 1, 2, 3] and not pts.notes
    np.testing.assert_allclose(pts.count_time_s, 3.0)
    np.testing.assert_allclose(pts.monitor, 5.0)


def test_several_files_in_the_order_given(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    m1 = write_master(tmp_path / "b" / "m.h5", [Pass(1, GRID_MM), Pass(2, GRID_MM)])
    m2 = write_master(tmp_path / "a" / "m.h5", [Pass(3, GRID_MM)])
    source, pts = open_confocal_frames([m1, m2], detector_path="instrument/pilatus/data",
                                       **COUNTERS)
    assert pts.entries == (f"{m1}::/1.1", f"{m1}::/2.1", f"{m2}::/3.1")
    assert source.read(8, 9)[0, 0, 0] == frame_value(3, 0)


# ======================================================================================
# energy-dispersive files
# ======================================================================================

ED = {"spectrum_path": "instrument/mca/data", **COUNTERS}


def test_energy_mode_spectra_calibration_and_two_theta(tmp_path: Path) -> None:
    passes = [Pass(10, GRID_MM), Pass(9, GRID_MM, n_frames=5),  # spectra longer
              Pass(11, GRID_MM[:3])]
    master = write_master(tmp_path / "ed.h5", passes, mode="energy",
                          calibration=[50.0, 30.0, 0.0], cal_units="eV")
    counts, cal, tth, pts = read_confocal_spectra(
        [master], energy_calibration_path="instrument/mca/calibration",
        two_theta_path="instrument/mca/two_theta", **ED)
    energy = channel_energy_keV(np.arange(counts.shape[1]), cal)
    assert [e.split("::/")[1] for e in pts.entries] == ["9.1", "10.1", "11.1"]
    assert counts.shape == (11, 16) and counts.dtype == np.float64
    numbers = np.array([9, 10, 11])[pts.pass_index]
    np.testing.assert_array_equal(counts[:, 0], 100 * numbers + pts.point_in_pass)
    np.testing.assert_array_equal(counts[:, 3] - counts[:, 0], 3)
    assert pts.frame_index.tolist() == list(range(11))
    np.testing.assert_allclose(energy, 0.05 + 0.03 * np.arange(16), rtol=1e-12)  # eV -> keV
    assert tth == 6.0
    assert any("9.1: lengths differ (spectra 5, sz 4" in n for n in pts.notes)
    assert "calibration" in pts.sources["energy_calibration"]
    # the same from config values
    c2, cal2, t2, _ = read_confocal_spectra([master], energy_calibration_keV=[0.05, 0.03],
                                            two_theta_deg=6.0, **ED)
    e2 = channel_energy_keV(np.arange(c2.shape[1]), cal2)
    np.testing.assert_array_equal(c2, counts)
    np.testing.assert_allclose(e2, energy, rtol=1e-12)
    assert t2 == 6.0
    q, inten, _ = ed_patterns(counts, energy, tth, normalization=pts.monitor)
    assert q.shape == (16,) and inten.shape == (11, 16)


def test_energy_mode_errors(tmp_path: Path) -> None:
    master = write_master(tmp_path / "ed.h5", [Pass(1, GRID_MM)], mode="energy",
                          two_theta=None)
    with pytest.raises(ValueError, match=r"confocal\.energy_calibration_path and "
                       r"confocal\.energy_calibration_keV, found both"):
        read_confocal_spectra([master], energy_calibration_path="x",
                              energy_calibration_keV=[0, 1], two_theta_deg=6.0, **ED)
    with pytest.raises(ValueError, match=r"confocal\.two_theta_path and "
                       r"confocal\.two_theta_deg, found neither"):
        read_confocal_spectra([master], energy_calibration_keV=[0, 1], **ED)
    with pytest.raises(ConfocalFormatError, match=r"ed.h5: no dataset at "
                       r"/1.1/instrument/mca/two_theta \(confocal.two_theta_path"):
        read_confocal_spectra([master], energy_calibration_keV=[0, 1],
                              two_theta_path="instrument/mca/two_theta", **ED)
    with pytest.raises(ConfocalFormatError, match=r"/1.1/instrument/xia/data.*"
                       r"confocal.spectrum_path"):
        read_confocal_spectra([master], energy_calibration_keV=[0, 1], two_theta_deg=6.0,
                              **{**ED, "spectrum_path": "instrument/xia/data"})
    # calibrations that disagree between entries: an error naming both
    m2 = write_master(tmp_path / "ed2.h5", [Pass(1, GRID_MM)], mode="energy")
    with h5py.File(m2, "a") as f:
        g = f.copy("1.1", "2.1") or f["2.1"]
        g["instrument/mca/calibration"][1] = 0.0300001
    with pytest.raises(ConfocalFormatError, match=r"calibrations differ.*ed2.h5::/1.1/"
                       r"instrument/mca/calibration.*ed2.h5::/2.1/instrument/mca/calibration"):
        read_confocal_spectra([m2], energy_calibration_path="instrument/mca/calibration",
                              two_theta_deg=6.0, **ED)


# ======================================================================================
# the simulated run
# ======================================================================================

def _truth_epoch(truth: dict, t_s: np.ndarray) -> np.ndarray:
    clock = truth["clock"]
    return (clock["acquisition_start_epoch_s"] + clock["offset_s"]
            + (1.0 + clock["drift_ppm"] * 1e-6) * t_s)


def _check_against_truth(pts, truth: dict) -> None:
    conf = truth["confocal"]
    depth = np.asarray(conf["depth_um"], dtype=float)
    g = depth_grid(pts.pass_index, pts.depth_um, n_passes=pts.n_passes)
    np.testing.assert_allclose(g.depth_um, depth, atol=1e-6)
    start = np.asarray(conf["time_start_s"], dtype=float)
    monitor = np.asarray(conf["monitor"], dtype=float)
    assert g.index.shape == start.shape
    ok = g.index >= 0
    if "acquired" in conf:
        acquired = np.asarray(conf["acquired"], dtype=bool)
        np.testing.assert_array_equal(ok, acquired)
        # a skipped depth is "missing", the end of a cut last pass "pass_cut_short"
        assert set(g.status[~acquired].tolist()) <= {STATUS["missing"],
                                                     STATUS["pass_cut_short"]}
        assert pts.n_points == int(acquired.sum())
    rows = g.index[ok]
    expected = _truth_epoch(truth, start[ok])
    assert np.max(np.abs(pts.epoch_s[rows] - expected)) < 0.01  # jitter 0.5 ms
    np.testing.assert_allclose(pts.monitor[rows], monitor[ok], rtol=1e-12)
    np.testing.assert_allclose(pts.count_time_s, conf["count_time_s"])


def test_simulated_small_run(small_run) -> None:
    from operando.simulate.beamtime import load_truth

    truth = load_truth(small_run.truth_path)
    master = small_run.outdir / "confocal" / "confocal.h5"
    source, pts = open_confocal_frames([master], detector_path="instrument/pilatus/data",
                                       **COUNTERS)
    assert source.n_frames >= pts.n_points
    assert int(pts.frame_index.max()) < source.n_frames
    _check_against_truth(pts, truth)
    ed = small_run.outdir / "confocal" / "confocal_ed.h5"
    if not ed.exists():
        pytest.skip("the simulator does not write confocal/confocal_ed.h5 yet")
    counts, cal, tth, ed_pts = read_confocal_spectra(
        [ed], energy_calibration_path="instrument/mca/calibration",
        two_theta_path="instrument/mca/two_theta", **ED)
    energy = channel_energy_keV(np.arange(counts.shape[1]), cal)
    _check_against_truth(ed_pts, truth)
    spec = truth["confocal"].get("energy_dispersive", {})
    if "two_theta_deg" in spec:
        assert tth == pytest.approx(spec["two_theta_deg"])
    if "calibration_keV" in spec:
        np.testing.assert_allclose(energy, channel_energy_keV(np.arange(energy.size),
                                                              spec["calibration_keV"]))
    assert counts.shape == (ed_pts.n_points, energy.size)
    assert np.all(counts >= 0) and counts.sum() > 0
