"""Frame ingest (operando.io.xrd.frames / .images): every layout written here, read back.

Each test writes small synthetic files (16 × 20 frames, a few frames) of one layout with
h5py / fabio and checks the frames come back bit for bit, with the metadata the layout
keeps; the simulator's NeXus and Bliss files are checked against its truth.json.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import fabio
import h5py
import hdf5plugin
import numpy as np
import pytest
from fabio.cbfimage import CbfImage
from fabio.edfimage import EdfImage
from fabio.tifimage import TifImage

from operando.io.errors import InputFileError
from operando.io.xrd.bliss import BlissScan, write_bliss_master, write_lima_file
from operando.io.xrd.frames import FrameFormatError, FrameSource, open_frames
from operando.io.xrd.images import check_image_shape, read_image
from operando.io.xrd.nexus import NexusXrdWriter

SHAPE = (16, 20)
T0 = 1.7e9


def _stack(n: int, seed: int = 0, dtype: type = np.uint32) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 5000, size=(n, *SHAPE)).astype(dtype)


def _nexus(path: Path, frames: np.ndarray, *, period_s: float = 2.0) -> dict[str, np.ndarray]:
    ts = T0 + period_s * np.arange(len(frames))
    mon = 1e5 + 10.0 * np.arange(len(frames))
    with NexusXrdWriter(path, frame_shape=SHAPE, wavelength_A=0.5, start_time_epoch_s=T0,
                        title="t") as w:
        for k, fr in enumerate(frames):
            w.append(fr, timestamp_s=ts[k], count_time_s=1.5, monitor=mon[k])
    return {"timestamp": ts, "monitor": mon}


def _assert_netcdf_attributes(attrs: dict, path: Path) -> None:
    """``attrs`` hold only str / int / float / lists of them, and survive a netCDF file."""
    import xarray as xr

    for key, value in attrs.items():
        items = value if isinstance(value, list) else [value]
        assert items and all(isinstance(v, (str, int, float)) and not isinstance(v, bool)
                             for v in items), (key, value)
    json.dumps(attrs)
    xr.Dataset(attrs=attrs).to_netcdf(path, engine="h5netcdf")
    with xr.open_dataset(path, engine="h5netcdf") as back:
        assert set(back.attrs) == set(attrs)


# ---------------------------------------------------------------------------------------
# NeXus
# ---------------------------------------------------------------------------------------

def test_nexus_writer_file_round_trip(tmp_path: Path) -> None:
    frames = _stack(7)
    meta = _nexus(tmp_path / "xrd.h5", frames)
    src = open_frames(tmp_path / "xrd.h5")
    assert (src.n_frames, src.n_pending, src.frame_shape) == (7, 0, SHAPE)
    assert src.dtype == np.uint32 and src.layout == "nexus" and src.hdf5_chunk_frames == 1
    assert src.files == (tmp_path / "xrd.h5",)
    np.testing.assert_array_equal(src.read(0, 7), frames)
    np.testing.assert_array_equal(src.read(2, 5), frames[2:5])
    assert src.read(3, 3).shape == (0, *SHAPE)
    md = src.metadata()
    np.testing.assert_array_equal(md.epoch_s, meta["timestamp"])
    np.testing.assert_array_equal(md.monitor, meta["monitor"])
    np.testing.assert_array_equal(md.count_time_s, np.full(7, 1.5))
    np.testing.assert_array_equal(md.frame_index, np.arange(7))
    assert md.timestamp_source.endswith("::/entry/instrument/detector/timestamp")
    assert md.monitor_source.endswith("::/entry/instrument/monitor/data")
    d = src.describe()
    assert d["layout"] == "nexus" and d["compression"] == ["bitshuffle-lz4"]
    assert d["dataset_paths"] == ["/entry/instrument/detector/data"]
    assert d["dataset_n_frames"] == [7] and d["n_pending"] == 0 and d["dtype"] == "uint32"
    _assert_netcdf_attributes(d, tmp_path / "attrs.nc")
    assert src.detector_mask() is None  # the writer records no pixel mask
    # nothing recorded: the uint32 ceiling is the overflow sentinel
    assert src.saturation_value == np.iinfo(np.uint32).max
    # the NXdata hard link names the same frames; metadata found through its `target`
    alias = open_frames(f"{tmp_path / 'xrd.h5'}::/entry/data/data")
    np.testing.assert_array_equal(alias.read(0, 7), frames)
    np.testing.assert_array_equal(alias.metadata().epoch_s, meta["timestamp"])


def test_simulated_run_frames_and_metadata_match_truth(small_run) -> None:
    from operando.simulate.beamtime import load_truth

    truth = load_truth(small_run.truth_path)["xrd"]
    path = small_run.outdir / "xrd/xrd_0001.h5"
    src = open_frames(path)
    assert src.n_frames == truth["n_frames"] and src.n_pending == 0
    md = src.metadata()
    np.testing.assert_array_equal(md.epoch_s, np.asarray(truth["timestamp_beamline_epoch_s"]))
    np.testing.assert_array_equal(md.monitor, np.asarray(truth["monitor"]))
    np.testing.assert_array_equal(md.count_time_s, np.full(src.n_frames, truth["count_time_s"]))
    with h5py.File(path, "r") as f:
        direct = f[truth["dataset_path"]][5:9]
    np.testing.assert_array_equal(src.read(5, 9), direct)


def test_saturation_value_recorded_in_nxdetector_wins(tmp_path: Path) -> None:
    frames = _stack(3)
    p = tmp_path / "sat.h5"
    with h5py.File(p, "w") as f:
        entry = f.create_group("entry")
        entry.attrs["NX_class"] = "NXentry"
        det = entry.create_group("instrument/detector")
        det.attrs["NX_class"] = "NXdetector"
        det.create_dataset("data", data=frames, chunks=(1, *SHAPE))
        det["saturation_value"] = 1048575
        bad = np.zeros(SHAPE, dtype=np.int32)
        bad[2, 3] = 2
        det["pixel_mask"] = bad  # NeXus NXdetector/pixel_mask
    src = open_frames(p)
    assert src.saturation_value == 1048575 and src.layout == "nexus"
    mask = src.detector_mask()
    assert mask is not None
    np.testing.assert_array_equal(mask, bad)
    assert src.describe()["saturation_value"] == 1048575
    assert src.metadata().epoch_s is None
    assert src.metadata().timestamp_source == "absent"
    assert np.isnan(src.metadata().count_time_s).all()


def test_float_frames_have_no_saturation_value(tmp_path: Path) -> None:
    p = tmp_path / "f.h5"
    with h5py.File(p, "w") as f:
        f["stack"] = _stack(2).astype(np.float32)
    src = open_frames(p)
    assert src.layout == "hdf5" and src.dtype == np.float32 and src.saturation_value is None
    d = src.describe()
    assert "saturation_value" not in d and d["compression"] == ["none"]
    _assert_netcdf_attributes(d, tmp_path / "attrs.nc")


# ---------------------------------------------------------------------------------------
# Bliss
# ---------------------------------------------------------------------------------------

def _bliss_ext(tmp_path: Path, n_scans: int = 2, n: int = 4) -> tuple[Path, list[np.ndarray]]:
    """Bliss master with external links into LIMA files (operando.io.xrd.bliss)."""
    stacks, scans = [], []
    for s in range(1, n_scans + 1):
        fr = _stack(n, seed=s)
        stacks.append(fr)
        lima = f"scan{s:04d}/pilatus_0000.h5"
        write_lima_file(tmp_path / lima, iter(fr), n_frames=n, frame_shape=SHAPE)
        epoch = T0 + 100 * s + np.arange(n)
        scans.append(BlissScan(
            number=s, title="ascan", start_epoch_s=epoch[0], end_epoch_s=epoch[-1] + 1,
            n_points=n, frame_shape=SHAPE, lima_file=lima,
            counters={"epoch": (epoch, "s"), "mon": (1000.0 * s + np.arange(n), "counts"),
                      "count_time": (np.full(n, 0.5 * s), "s")},
        ))
    master = write_bliss_master(tmp_path / "scan.h5", scans)
    return master, stacks


def test_bliss_external_links_select_scan_and_pattern(tmp_path: Path) -> None:
    master, stacks = _bliss_ext(tmp_path)
    with pytest.raises(FrameFormatError) as err:
        open_frames(master)
    msg = str(err.value)
    assert str(master) in msg and "/1.1/instrument/pilatus/data" in msg
    assert "/2.1/instrument/pilatus/data" in msg and "dataset=" in msg

    one = open_frames(f"{master}::/2.1/measurement/pilatus")
    assert one.layout == "bliss" and one.n_frames == 4
    assert one.files == (tmp_path / "scan0002/pilatus_0000.h5",)  # link followed, read direct
    np.testing.assert_array_equal(one.read(0, 4), stacks[1])
    md = one.metadata()
    np.testing.assert_array_equal(md.epoch_s, T0 + 200 + np.arange(4))
    np.testing.assert_array_equal(md.monitor, 2000.0 + np.arange(4))
    np.testing.assert_array_equal(md.count_time_s, np.full(4, 1.0))
    assert md.timestamp_source == f"{master}::/2.1/measurement/epoch"

    both = open_frames(master, dataset="/*.1/measurement/pilatus")
    assert both.n_frames == 8 and len(both.files) == 2
    np.testing.assert_array_equal(both.read(2, 7), np.concatenate(stacks)[2:7])
    md = both.metadata()
    np.testing.assert_array_equal(md.file_index, [0] * 4 + [1] * 4)
    np.testing.assert_array_equal(md.frame_in_file, [0, 1, 2, 3] * 2)
    np.testing.assert_array_equal(md.count_time_s, [0.5] * 4 + [1.0] * 4)
    # explicit relative metadata paths resolve inside each scan
    alt = open_frames(master, dataset="/*.1/instrument/pilatus/data",
                      monitor_path="measurement/epoch")
    np.testing.assert_array_equal(alt.metadata().monitor, md.epoch_s)


def test_bliss_scan_whose_lima_file_is_missing(tmp_path: Path) -> None:
    master, stacks = _bliss_ext(tmp_path, n_scans=3)
    (tmp_path / "scan0002/pilatus_0000.h5").unlink()
    pattern = "/*.1/measurement/pilatus"
    with pytest.raises(FrameFormatError) as err:
        open_frames(master, dataset=pattern)
    assert "/2.1/instrument/pilatus/data" in str(err.value)
    assert f"{tmp_path / 'scan0002/pilatus_0000.h5'} does not exist" in str(err.value)
    live = open_frames(master, dataset=pattern, swmr=True)  # scans up to the missing one
    assert live.n_frames == 4
    # scan 2 announces 4 frames (its measurement/epoch), scan 3 holds 4 after the gap
    assert live.n_pending == 8
    np.testing.assert_array_equal(live.read(0, 4), stacks[0])
    with pytest.raises(FrameFormatError) as err:
        open_frames(master, dataset="/2.1/measurement/nothing")
    assert ("/2.1/instrument/pilatus/data -> scan0002/pilatus_0000.h5::/entry_0000/measurement/"
            f"data (missing file {tmp_path / 'scan0002/pilatus_0000.h5'})") in str(err.value)


def _bliss_vds(tmp_path: Path, split: tuple[int, int] = (3, 2)) -> tuple[Path, np.ndarray]:
    """Bliss master whose detector data is a virtual dataset over two LIMA files."""
    frames = _stack(sum(split), seed=7)
    n = len(frames)
    layout = h5py.VirtualLayout(shape=(n, *SHAPE), dtype=np.uint32)
    start = 0
    for i, k in enumerate(split):
        name = f"lima/pilatus_{i:04d}.h5"
        (tmp_path / "lima").mkdir(exist_ok=True)
        with h5py.File(tmp_path / name, "w") as f:
            f.create_dataset("/entry_0000/measurement/data", data=frames[start:start + k],
                             chunks=(1, *SHAPE), **hdf5plugin.LZ4())
        layout[start:start + k] = h5py.VirtualSource(
            name, "/entry_0000/measurement/data", shape=(k, *SHAPE))
        start += k
    master = tmp_path / "vscan.h5"
    with h5py.File(master, "w") as f:
        entry = f.create_group("1.1")
        entry.attrs["NX_class"] = "NXentry"
        det = entry.create_group("instrument/pilatus")
        det.attrs["NX_class"] = "NXdetector"
        det.create_virtual_dataset("data", layout, fillvalue=0)
        meas = entry.create_group("measurement")
        meas["pilatus"] = h5py.SoftLink("/1.1/instrument/pilatus/data")
        meas["epoch"] = T0 + np.arange(n, dtype=float)
        det["acq_nb_frames"] = n
    return master, frames


def test_bliss_virtual_dataset_into_lima_files(tmp_path: Path, monkeypatch) -> None:
    master, frames = _bliss_vds(tmp_path)
    monkeypatch.chdir(tmp_path.parent)  # source names are relative to the master's folder
    src = open_frames(master)
    assert src.layout == "bliss" and src.n_frames == 5 and src.n_pending == 0
    assert src.describe()["compression"] == ["lz4"]
    np.testing.assert_array_equal(src.read(0, 5), frames)
    # chunks stop at the LIMA file boundary (frame 3)
    assert src.chunks(10) == [(0, 3), (3, 5)]
    np.testing.assert_array_equal(src.metadata().epoch_s, T0 + np.arange(5.0))
    np.testing.assert_array_equal(open_frames(f"{master}::/1.1/measurement/pilatus")
                                  .read(1, 4), frames[1:4])
    # a LIMA file opened alone: its NXdetector data (a hard link to measurement/data)
    lima = open_frames(tmp_path / "lima/pilatus_0001.h5")
    np.testing.assert_array_equal(lima.read(0, 2), frames[3:])
    # frames announced by the acquisition counter but not in the files: pending
    with h5py.File(master, "a") as f:
        f["1.1/instrument/pilatus/acq_nb_frames"][()] = 7
    assert (open_frames(master).n_frames, open_frames(master).n_pending) == (5, 2)


def test_bliss_virtual_dataset_missing_source(tmp_path: Path) -> None:
    master, frames = _bliss_vds(tmp_path)
    (tmp_path / "lima/pilatus_0001.h5").unlink()  # HDF5 itself would read zeros silently
    with pytest.raises(FrameFormatError, match=r"pilatus_0001\.h5 does not exist"):
        open_frames(master)
    src = open_frames(master, swmr=True)
    assert (src.n_frames, src.n_pending) == (3, 2)
    np.testing.assert_array_equal(src.read(0, 3), frames[:3])


def _proposal_master(tmp_path: Path) -> tuple[Path, dict[int, np.ndarray]]:
    """An ESRF-like proposal master: top-level entries are external links to the scans of
    a dataset file two folders down, whose detector data are virtual datasets over LIMA
    files named relative to that dataset file."""
    ddir = tmp_path / "sample/sample_0001"
    stacks: dict[int, np.ndarray] = {}
    with h5py.File(_mkdir(ddir) / "sample_0001.h5", "w") as f:
        for scan in (1, 2):
            frames = stacks[scan] = _stack(5, seed=10 + scan)
            layout = h5py.VirtualLayout(shape=(5, *SHAPE), dtype=np.uint32)
            for i, (a, b) in enumerate(((0, 3), (3, 5))):
                rel = f"scan{scan:04d}/pilatus_{i:04d}.h5"
                with h5py.File(_mkdir((ddir / rel).parent) / Path(rel).name, "w") as g:
                    g["/entry_0000/measurement/data"] = frames[a:b]
                layout[a:b] = h5py.VirtualSource(rel, "/entry_0000/measurement/data",
                                                 shape=(b - a, *SHAPE))
            entry = f.create_group(f"{scan}.1")
            entry.attrs["NX_class"] = "NXentry"
            det = entry.create_group("instrument/pilatus")
            det.attrs["NX_class"] = "NXdetector"
            det.create_virtual_dataset("data", layout, fillvalue=0)
            entry["measurement/pilatus"] = h5py.SoftLink(f"/{scan}.1/instrument/pilatus/data")
            entry["measurement/epoch"] = T0 + 100 * scan + np.arange(5.0)
    master = tmp_path / "ihch1234_id31.h5"
    with h5py.File(master, "w") as f:
        for scan in (1, 2):
            f[f"sample_0001_{scan}.1"] = h5py.ExternalLink("sample/sample_0001/sample_0001.h5",
                                                          f"/{scan}.1")
    return master, stacks


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_proposal_master_external_links_and_relative_vds(tmp_path: Path, monkeypatch) -> None:
    master, stacks = _proposal_master(tmp_path)
    monkeypatch.chdir(_mkdir(tmp_path / "elsewhere"))  # HDF5's cwd fallback cannot help
    with pytest.raises(FrameFormatError) as err:  # the links are followed: two scans found
        open_frames(master)
    assert "/sample_0001_1.1/instrument/pilatus/data (5, 16, 20)" in str(err.value)
    assert "/sample_0001_2.1/instrument/pilatus/data (5, 16, 20)" in str(err.value)
    one = open_frames(f"{master}::/sample_0001_2.1/measurement/pilatus")
    assert (one.n_frames, one.layout) == (5, "bliss")
    assert one.files == (tmp_path / "sample/sample_0001/sample_0001.h5",)
    assert one.chunks(10) == [(0, 3), (3, 5)]  # the LIMA file boundary
    np.testing.assert_array_equal(one.read(0, 5), stacks[2])
    np.testing.assert_array_equal(one.metadata().epoch_s, T0 + 200 + np.arange(5.0))
    both = open_frames(master, dataset="/sample_0001_*/measurement/pilatus")
    np.testing.assert_array_equal(both.to_dask(4).compute(),
                                  np.concatenate([stacks[1], stacks[2]]))
    # a missing LIMA file is named where HDF5 looks for it: beside the dataset file
    (tmp_path / "sample/sample_0001/scan0001/pilatus_0001.h5").unlink()
    with pytest.raises(FrameFormatError, match=r"source file .*/sample/sample_0001/scan0001/"
                                               r"pilatus_0001\.h5 does not exist"):
        open_frames(f"{master}::/sample_0001_1.1/measurement/pilatus")


def test_simulated_confocal_bliss_file(small_run) -> None:
    from operando.simulate.beamtime import load_truth

    truth = load_truth(small_run.truth_path)["confocal"]
    master = small_run.outdir / "confocal/confocal.h5"
    with pytest.raises(FrameFormatError, match="detector frame stacks found"):
        open_frames(master)
    src = open_frames(master, dataset="/*.1/" + truth["detector_path"])
    acquired = np.asarray(truth["acquired"], dtype=bool)
    per_pass = acquired.sum(axis=1)
    # the small preset has a missing point (pass 4, depth 2) and a last pass cut short
    assert not acquired[4, 2] and per_pass[4] == truth["n_depths"] - 1
    assert truth["incomplete_last_pass"] == "kept, cut short" and per_pass[-1] < per_pass[0]
    assert list(per_pass) == truth["points_per_pass"]
    n_pass = truth["n_passes"]
    assert src.n_frames == acquired.sum() == truth["n_acquired_points"]
    assert len(src.files) == n_pass
    md = src.metadata()
    monitor = np.asarray(truth["monitor"], dtype=float)  # JSON null (not acquired) -> NaN
    np.testing.assert_array_equal(md.monitor, monitor[acquired])
    np.testing.assert_array_equal(md.count_time_s, truth["count_time_s"])
    assert np.all(np.diff(md.epoch_s) > 0)
    named = open_frames(master, dataset="/*.1/" + truth["detector_path"],
                        timestamp_path=truth["epoch_path"], monitor_path=truth["monitor_path"])
    np.testing.assert_array_equal(named.metadata().epoch_s, md.epoch_s)
    np.testing.assert_array_equal(named.metadata().monitor, md.monitor)
    offsets = np.concatenate([[0], np.cumsum(per_pass)])
    for p in (3, 4, n_pass - 1):  # a whole pass, the one missing a point, the cut one
        with h5py.File(small_run.outdir / "confocal" / Path(src.files[p]).relative_to(
                master.parent), "r") as f:
            np.testing.assert_array_equal(src.read(offsets[p], offsets[p + 1]),
                                          f[truth["lima_data_path"]][()])
            assert f[truth["lima_data_path"]].shape[0] == per_pass[p]


# ---------------------------------------------------------------------------------------
# Eiger
# ---------------------------------------------------------------------------------------

def _eiger(tmp_path: Path, per_file: tuple[int, ...] = (3, 3, 2)) -> tuple[Path, np.ndarray]:
    frames = _stack(sum(per_file), seed=3, dtype=np.uint16)
    master = tmp_path / "run_master.h5"
    low = 1
    with h5py.File(master, "w") as f:
        f.create_group("entry/data")
        det = f.create_group("entry/instrument/detector")
        det["count_time"] = 0.099
        det["frame_time"] = 0.1
        det["bit_depth_image"] = 16
        spec = det.create_group("detectorSpecific")
        spec["countrate_correction_count_cutoff"] = 12440
        spec["nimages"] = sum(per_file)
        spec["ntrigger"] = 1
        mask = np.zeros(SHAPE, dtype=np.uint32)
        mask[:, 9:11] = 1
        spec["pixel_mask"] = mask
        for i, k in enumerate(per_file, start=1):
            name = f"run_data_{i:06d}.h5"
            with h5py.File(tmp_path / name, "w") as g:
                d = g.create_dataset("/entry/data/data", data=frames[low - 1:low - 1 + k],
                                     chunks=(1, *SHAPE), **hdf5plugin.Bitshuffle(cname="lz4"))
                d.attrs["image_nr_low"] = low
                d.attrs["image_nr_high"] = low + k - 1
            f[f"entry/data/data_{i:06d}"] = h5py.ExternalLink(name, "/entry/data/data")
            low += k
    return master, frames


def test_eiger_master_and_data_files(tmp_path: Path) -> None:
    master, frames = _eiger(tmp_path)
    src = open_frames(master)
    assert src.layout == "eiger" and (src.n_frames, src.n_pending) == (8, 0)
    assert src.dtype == np.uint16 and len(src.files) == 3
    np.testing.assert_array_equal(src.read(0, 8), frames)
    np.testing.assert_array_equal(src.read(2, 7), frames[2:7])  # across data files
    assert src.chunks(100) == [(0, 3), (3, 6), (6, 8)]
    assert src.saturation_value == 12440  # countrate_correction_count_cutoff
    md = src.metadata()
    np.testing.assert_array_equal(md.count_time_s, np.full(8, 0.099))
    assert md.epoch_s is None and np.isnan(md.monitor).all()
    np.testing.assert_array_equal(md.frame_in_file, [0, 1, 2, 0, 1, 2, 0, 1])
    mask = src.detector_mask()
    assert mask is not None and mask.dtype == np.uint32
    assert mask.shape == SHAPE and mask[:, 9:11].all() and mask.sum() == 2 * SHAPE[0]
    np.testing.assert_array_equal(read_image(src.pixel_mask, what="mask"), mask)
    d = src.describe()
    assert d["dataset_n_frames"] == [3, 3, 2] and len(d["datasets"]) == 3
    assert d["pixel_mask"].endswith("::/entry/instrument/detector/detectorSpecific/pixel_mask")
    _assert_netcdf_attributes(d, tmp_path / "attrs.nc")
    # a glob catching master and data files reads each frame once
    again = open_frames(str(tmp_path / "run_*.h5"))
    assert again.n_frames == 8 and again.layout == "eiger"


def test_eiger_missing_data_file_is_pending_or_an_error(tmp_path: Path) -> None:
    master, frames = _eiger(tmp_path)
    (tmp_path / "run_data_000003.h5").unlink()
    with pytest.raises(FrameFormatError, match=r"run_data_000003\.h5, which does not exist"):
        open_frames(master)
    src = open_frames(master, swmr=True)
    assert (src.n_frames, src.n_pending) == (6, 2)
    np.testing.assert_array_equal(src.read(0, 6), frames[:6])


def test_eiger_bit_depth_gives_saturation_without_cutoff(tmp_path: Path) -> None:
    master, _ = _eiger(tmp_path, per_file=(2,))
    with h5py.File(master, "a") as f:
        del f["entry/instrument/detector/detectorSpecific/countrate_correction_count_cutoff"]
        f["entry/instrument/detector/bit_depth_image"][()] = 12
    assert open_frames(master).saturation_value == 2**12 - 1


# ---------------------------------------------------------------------------------------
# image series
# ---------------------------------------------------------------------------------------

def test_edf_series_natural_order_and_count_time(tmp_path: Path) -> None:
    frames = _stack(11)
    for k in range(11):  # frame_10 must come after frame_9, not after frame_1
        EdfImage(data=frames[k], header={"count_time": f"{0.1 * (k + 1):.1f}"}).write(
            str(tmp_path / f"frames_{k}.edf"))
    src = open_frames(str(tmp_path / "frames_*.edf"))
    assert src.layout == "images" and src.n_frames == 11 and src.hdf5_chunk_frames == 1
    assert src.files[9].name == "frames_9.edf" and src.files[10].name == "frames_10.edf"
    np.testing.assert_array_equal(src.read(0, 11), frames)
    md = src.metadata()
    np.testing.assert_allclose(md.count_time_s, 0.1 * np.arange(1, 12), rtol=1e-12)
    assert "count_time" in md.count_time_source and md.epoch_s is None
    np.testing.assert_array_equal(src.to_dask(4).compute(), frames)
    # a header key named as the timestamp source
    for k in range(3):
        EdfImage(data=frames[k], header={"epoch": f"{T0 + k}"}).write(
            str(tmp_path / f"ts_{k}.edf"))
    ts = open_frames(str(tmp_path / "ts_*.edf"), timestamp_path="epoch")
    np.testing.assert_array_equal(ts.metadata().epoch_s, T0 + np.arange(3.0))
    with pytest.raises(FrameFormatError, match=r"no header field 'epoch'"):
        open_frames(str(tmp_path / "frames_*.edf"), timestamp_path="epoch")


def test_multiframe_edf_contributes_all_frames(tmp_path: Path) -> None:
    frames = _stack(3)
    img = EdfImage(data=frames[0])
    img.append_frame(data=frames[1])
    img.append_frame(data=frames[2])
    img.write(str(tmp_path / "multi.edf"))
    src = open_frames(tmp_path / "multi.edf")
    assert src.n_frames == 3
    np.testing.assert_array_equal(src.read(1, 3), frames[1:])


def test_cbf_and_tiff_series(tmp_path: Path) -> None:
    frames = _stack(3, dtype=np.int32)
    for k in range(3):
        img = CbfImage(data=frames[k])
        img.header["_array_data.header_contents"] = (
            "# Detector: PILATUS 100K\r\n# Exposure_time 0.0970000 s\r\n"
            "# Exposure_period 0.1000000 s")
        img.write(str(tmp_path / f"img_{k:05d}.cbf"))
        TifImage(data=frames[k].astype(np.uint16)).write(str(tmp_path / f"img_{k}.tif"))
    cbf = open_frames(str(tmp_path / "*.cbf"))
    np.testing.assert_array_equal(cbf.read(0, 3), frames)
    np.testing.assert_allclose(cbf.metadata().count_time_s, 0.097)
    assert cbf.saturation_value == np.iinfo(np.int32).max
    tif = open_frames([tmp_path / "img_2.tif", str(tmp_path / "img_[01].tif")])
    np.testing.assert_array_equal(tif.read(0, 3), frames[[2, 0, 1]].astype(np.uint16))
    assert np.isnan(tif.metadata().count_time_s).all()
    assert tif.metadata().count_time_source == "absent"


# ---------------------------------------------------------------------------------------
# compression, chunking, laziness, pickling
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("filt", "name"), [
    ({"compression": "gzip", "compression_opts": 4}, "gzip"),
    (hdf5plugin.Bitshuffle(cname="lz4"), "bitshuffle-lz4"),
    (hdf5plugin.LZ4(), "lz4"),
    (hdf5plugin.Blosc(), "blosc-lz4"),
])
def test_compressed_stacks_read_back_identically(tmp_path: Path, filt, name: str) -> None:
    frames = _stack(6)
    p = tmp_path / "c.h5"
    with h5py.File(p, "w") as f:
        f.create_dataset("entry/stack", data=frames, chunks=(2, *SHAPE), **dict(filt))
    src = open_frames(p)
    np.testing.assert_array_equal(src.read(0, 6), frames)
    assert src.describe()["compression"] == [name]
    assert src.hdf5_chunk_frames == 2


def test_chunks_align_to_hdf5_chunking_and_files(tmp_path: Path) -> None:
    frames = _stack(22)
    for name, part in (("a.h5", frames[:22]), ("b.h5", frames[:5])):
        with h5py.File(tmp_path / name, "w") as f:
            f.create_dataset("d", data=part, chunks=(4, *SHAPE))
    src = open_frames(tmp_path / "a.h5")
    assert src.hdf5_chunk_frames == 4
    assert src.chunks(10) == [(0, 8), (8, 16), (16, 22)]
    assert src.chunks(2) == [(0, 4), (4, 8), (8, 12), (12, 16), (16, 20), (20, 22)]
    with pytest.raises(ValueError, match="positive"):
        src.chunks(0)
    two = open_frames([tmp_path / "a.h5", tmp_path / "b.h5"])
    assert two.chunks(10) == [(0, 8), (8, 16), (16, 22), (22, 27)]  # none crosses a file
    arr = two.to_dask(10)
    assert arr.chunks[0] == (8, 8, 6, 5) and arr.dtype == np.uint32
    np.testing.assert_array_equal(arr.compute(), two.read(0, 27))
    np.testing.assert_array_equal(arr[20:24, 3].compute(), two.read(20, 24)[:, 3])
    with pytest.raises(IndexError):
        two.read(20, 28)


def test_read_touches_only_its_range(tmp_path: Path) -> None:
    """A corrupt chunk at frame 10 spoils reads of that range only, and says where."""
    frames = _stack(16)
    p = tmp_path / "bad.h5"
    with h5py.File(p, "w") as f:
        d = f.create_dataset("entry/stack", data=frames, chunks=(1, *SHAPE),
                             **hdf5plugin.Bitshuffle(cname="lz4"))
        offset, size = d.id.get_chunk_info(10).byte_offset, d.id.get_chunk_info(10).size
    with open(p, "r+b") as fh:  # overwrite chunk 10's compressed bytes
        fh.seek(offset)
        fh.write(b"\xff" * size)
    src = open_frames(p)
    np.testing.assert_array_equal(src.read(0, 10), frames[:10])
    np.testing.assert_array_equal(src.read(11, 16), frames[11:])
    with pytest.raises(FrameFormatError) as err:
        src.read(8, 12)
    assert str(p) in str(err.value) and "/entry/stack" in str(err.value)
    # the bad chunk itself is named (the bounds-checked decoder finds it before h5py)
    assert "frames 10..10" in str(err.value)


def test_source_is_picklable_and_reads_in_another_process(tmp_path: Path) -> None:
    frames = _stack(5)
    _nexus(tmp_path / "xrd.h5", frames)
    src = open_frames(tmp_path / "xrd.h5")
    blob = pickle.dumps(src)
    assert isinstance(pickle.loads(blob), FrameSource)
    (tmp_path / "src.pkl").write_bytes(blob)
    code = textwrap.dedent(f"""
        import pickle, sys
        src = pickle.loads(open({str(tmp_path / 'src.pkl')!r}, 'rb').read())
        sys.stdout.write(str(int(src.read(1, 4).astype('int64').sum())))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    assert int(out.stdout) == int(frames[1:4].astype(np.int64).sum())


# ---------------------------------------------------------------------------------------
# growing files (SWMR)
# ---------------------------------------------------------------------------------------

def test_swmr_growing_file_reports_pending_frames(tmp_path: Path) -> None:
    p = tmp_path / "live.h5"
    frames = _stack(8)
    f = h5py.File(p, "w", libver="latest")
    try:
        entry = f.create_group("entry")
        entry.attrs["NX_class"] = "NXentry"
        det = entry.create_group("instrument/detector")
        det.attrs["NX_class"] = "NXdetector"
        data = det.create_dataset("data", shape=(0, *SHAPE), maxshape=(None, *SHAPE),
                                  chunks=(1, *SHAPE), dtype=np.uint32)
        ts = det.create_dataset("timestamp", shape=(0,), maxshape=(None,), dtype=float)
        f.swmr_mode = True
        # the writer resized and wrote 5 frames but stamped only 3 of them
        data.resize(5, axis=0)
        data[:5] = frames[:5]
        ts.resize(3, axis=0)
        ts[:3] = T0 + np.arange(3)
        data.flush()
        ts.flush()
        src = open_frames(p, swmr=True)
        assert (src.n_frames, src.n_pending) == (3, 2)
        np.testing.assert_array_equal(src.read(0, 3), frames[:3])
        np.testing.assert_array_equal(src.metadata().epoch_s, T0 + np.arange(3))
        with pytest.raises(FrameFormatError, match="swmr=True"):
            open_frames(p)  # a plain reader is refused while the writer holds the file
        # pre-allocated timestamps: NaN marks frames not triggered yet
        ts.resize(8, axis=0)
        ts[3:] = [T0 + 3, T0 + 4, np.nan, np.nan, np.nan]
        ts.flush()
        src = open_frames(p, swmr=True)
        assert (src.n_frames, src.n_pending) == (5, 3)
        data.resize(8, axis=0)
        data[5:] = frames[5:]
        ts[5:] = T0 + np.arange(5, 8)
        data.flush()
        ts.flush()
        src = open_frames(p, swmr=True)
        assert (src.n_frames, src.n_pending) == (8, 0)
        np.testing.assert_array_equal(src.to_dask(3).compute(), frames)
    finally:
        f.close()


def test_incomplete_file_without_swmr_is_an_error(tmp_path: Path) -> None:
    p = tmp_path / "short.h5"
    with h5py.File(p, "w") as f:
        det = f.create_group("entry/instrument/detector")
        det.attrs["NX_class"] = "NXdetector"
        det.create_dataset("data", data=_stack(5), maxshape=(None, *SHAPE))
        det["timestamp"] = T0 + np.arange(4.0)
    with pytest.raises(FrameFormatError) as err:
        open_frames(p)
    assert "4 timestamp values for the 5 frames" in str(err.value)
    assert str(p) in str(err.value)
    assert open_frames(p, swmr=True).n_frames == 4


def _nexus_one_element(path: Path, frames: np.ndarray, **extra: np.ndarray) -> Path:
    """A NeXus stack whose NXdetector keeps ``extra`` datasets (e.g. a (1,) count_time)."""
    with h5py.File(path, "w") as f:
        entry = f.create_group("entry")
        entry.attrs["NX_class"] = "NXentry"
        det = entry.create_group("instrument/detector")
        det.attrs["NX_class"] = "NXdetector"
        det["data"] = frames
        for name, value in extra.items():
            det[name] = value
    return path


def test_one_element_count_time_and_monitor_are_broadcast(tmp_path: Path) -> None:
    frames = _stack(10)
    p = _nexus_one_element(tmp_path / "ct1.nxs", frames, count_time=np.array([0.5]),
                           mon=np.array([1234.0]), start=np.array([T0]))
    data = "/entry/instrument/detector/data"
    for src in (open_frames(p), open_frames(p, dataset=data), open_frames(f"{p}::{data}")):
        assert src.n_frames == 10
        md = src.metadata()
        np.testing.assert_array_equal(md.count_time_s, np.full(10, 0.5))
        assert md.count_time_source == f"{p}::/entry/instrument/detector/count_time"
        assert np.isnan(md.monitor).all()  # a lone number is not taken as a monitor by search
    md = open_frames(p, monitor_path="instrument/detector/mon").metadata()
    np.testing.assert_array_equal(md.monitor, np.full(10, 1234.0))  # named: broadcast
    # a timestamp is per frame: one value dates a one-frame stack only
    with pytest.raises(FrameFormatError) as err:
        open_frames(p, timestamp_path="instrument/detector/start")
    assert str(err.value).startswith(f"{p}::/entry/instrument/detector/start: one timestamp "
                                     "value for the 10 frames")
    q = _nexus_one_element(tmp_path / "one.nxs", frames[:1], count_time=np.array([0.5]),
                           timestamp=np.array([T0]))
    np.testing.assert_array_equal(open_frames(q).metadata().epoch_s, [T0])
    r = _nexus_one_element(tmp_path / "ts1.nxs", frames, timestamp=np.array([T0]))
    assert open_frames(r).metadata().epoch_s is None  # found by search: not taken


def test_swmr_one_element_growing_count_time_is_per_frame(tmp_path: Path) -> None:
    p = tmp_path / "live.h5"
    with h5py.File(p, "w", libver="latest") as f:
        det = f.create_group("entry/instrument/detector")
        det.attrs["NX_class"] = "NXdetector"
        det.create_dataset("data", data=_stack(3), maxshape=(None, *SHAPE))
        det.create_dataset("count_time", data=[0.5], maxshape=(None,))
    src = open_frames(p, swmr=True)  # resizable: its first value, not a constant
    assert (src.n_frames, src.n_pending) == (1, 2)
    assert open_frames(p).n_frames == 3  # a finished file: one value for every frame
    np.testing.assert_array_equal(open_frames(p).metadata().count_time_s, [0.5] * 3)


# ---------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------

def test_errors_name_file_and_path(tmp_path: Path) -> None:
    frames = _stack(3)
    _nexus(tmp_path / "xrd.h5", frames)
    with pytest.raises(FrameFormatError, match="no file matches"):
        open_frames(str(tmp_path / "nothing_*.h5"))
    with pytest.raises(FrameFormatError, match="frame file not found"):
        open_frames(tmp_path / "absent.h5")
    with pytest.raises(FrameFormatError) as err:
        open_frames(tmp_path / "xrd.h5", dataset="/entry/foo")
    assert str(err.value) == (
        f"{tmp_path / 'xrd.h5'}: no dataset at /entry/foo; found 3D datasets: "
        "/entry/instrument/detector/data (3, 16, 20)"
    )
    assert isinstance(err.value, InputFileError) and isinstance(err.value, ValueError)
    (tmp_path / "notes.txt").write_text("not a detector file\n")
    with pytest.raises(FrameFormatError, match=r"notes\.txt: neither HDF5 nor an image"):
        open_frames(tmp_path / "notes.txt")
    with pytest.raises(FrameFormatError, match="count time dataset at /entry/nope"):
        open_frames(tmp_path / "xrd.h5", count_time_path="/entry/nope")


def test_auto_detection_failures_list_what_was_found(tmp_path: Path) -> None:
    p = tmp_path / "two.h5"
    with h5py.File(p, "w") as f:
        f["a/stack"] = _stack(2)
        f["b/stack"] = _stack(3)
        f["flat2d"] = np.ones(SHAPE)
        f["curve"] = np.arange(5.0)
        f["four"] = np.zeros((2, 2, *SHAPE))
    with pytest.raises(FrameFormatError) as err:
        open_frames(p)
    assert "/a/stack (2, 16, 20)" in str(err.value) and "/b/stack (3, 16, 20)" in str(err.value)
    one = open_frames(f"{p}::/flat2d")  # a 2D dataset is a one-frame stack
    assert one.n_frames == 1 and one.read(0, 1).shape == (1, *SHAPE)
    for bad in ("/curve", "/four"):
        with pytest.raises(FrameFormatError, match=rf"{bad}: expected a frame stack"):
            open_frames(p, dataset=bad)
    q = tmp_path / "flat.h5"
    with h5py.File(q, "w") as f:
        f["img"] = np.ones(SHAPE)
        f["img2"] = np.ones(SHAPE)
    with pytest.raises(FrameFormatError) as err:
        open_frames(q)
    assert "no frame stack found" in str(err.value)
    assert "2D datasets shaped like one frame: /img (16, 20), /img2 (16, 20)" in str(err.value)
    assert "--dataset /img " in str(err.value) and f"{q}::/img" in str(err.value)


def _broken_nexus(path: Path) -> Path:
    """A NeXus file whose NXdetector data is an external link to a file not copied with it,
    beside a (1, 3, 3) NXsample orientation matrix and a 2D pixel mask."""
    with h5py.File(path, "w") as f:
        entry = f.create_group("entry")
        entry.attrs["NX_class"] = "NXentry"
        det = entry.create_group("instrument/detector")
        det.attrs["NX_class"] = "NXdetector"
        det["data"] = h5py.ExternalLink("scan_data_000001.h5", "/entry/data/data")
        det["pixel_mask"] = np.zeros(SHAPE, dtype=np.uint8)
        sample = entry.create_group("sample")
        sample.attrs["NX_class"] = "NXsample"
        sample["orientation_matrix"] = np.eye(3)[None]
        sample["ub_matrix"] = np.eye(3)
    return path


def test_auto_detection_broken_detector_link_is_named_not_replaced(tmp_path: Path) -> None:
    p = _broken_nexus(tmp_path / "scan.nxs")
    with pytest.raises(FrameFormatError) as err:
        open_frames(p)
    msg = str(err.value)
    assert "/entry/instrument/detector/data -> scan_data_000001.h5::/entry/data/data" in msg
    assert f"missing file {tmp_path / 'scan_data_000001.h5'}" in msg
    assert "--dataset" in msg and f"{p}::" in msg
    assert "/entry/sample/orientation_matrix (1, 3, 3)" in msg  # listed as not taken
    # a dangling soft link in the NXdetector is reported the same way
    with h5py.File(p, "a") as f:
        del f["entry/instrument/detector/data"]
        f["entry/instrument/detector/data"] = h5py.SoftLink("/entry/data/gone")
    with pytest.raises(FrameFormatError, match=r"detector/data -> /entry/data/gone"):
        open_frames(p)


def test_auto_detection_takes_frame_shaped_datasets_only(tmp_path: Path) -> None:
    frames = _stack(4)
    p = tmp_path / "plain.h5"
    with h5py.File(p, "w") as f:
        f["orientation"] = np.eye(3)[None]  # (1, 3, 3): no frame
        f["scan/frames"] = frames
    assert open_frames(p).n_frames == 4
    with h5py.File(p, "a") as f:
        f["scan/binned"] = np.zeros((4, 8, 10), dtype=np.uint32)
    with pytest.raises(FrameFormatError, match=r"2 3D datasets shaped like frame stacks"):
        open_frames(p)
    # the detector's shape (from the PONI) tells them apart
    src = open_frames(p, frame_shape=SHAPE)
    assert src.describe()["dataset_paths"] == ["/scan/frames"]
    assert open_frames(p, frame_shape=(8, 10)).describe()["dataset_paths"] == ["/scan/binned"]
    with pytest.raises(FrameFormatError) as err:
        open_frames(p, frame_shape=(195, 487))
    assert "expected frames of the detector's shape (195, 487)" in str(err.value)
    assert "/scan/frames (4, 16, 20)" in str(err.value)
    # NXdetector frames of another shape than the PONI's detector are not replaced
    n = tmp_path / "binned.nxs"
    _nexus_one_element(n, np.zeros((3, 8, 10), dtype=np.uint32))
    with h5py.File(n, "a") as f:
        f["scan/frames"] = frames
    with pytest.raises(FrameFormatError, match=r"NXdetector frames /entry/instrument/detector/"
                                               r"data \(3, 8, 10\) are frames of shape \(8, 10\)"
                                               r".*detector's shape \(16, 20\)"):
        open_frames(n, frame_shape=SHAPE)
    # a single 2D frame outside the NeXus conventions (a mask beside it is not a frame)
    q = tmp_path / "one.h5"
    with h5py.File(q, "w") as f:
        f["image"] = frames[0]
        f["mask"] = np.zeros(SHAPE, dtype=np.uint8)
        f["ub"] = np.eye(3)
    one = open_frames(q)
    assert one.n_frames == 1 and one.describe()["dataset_paths"] == ["/image"]
    np.testing.assert_array_equal(one.read(0, 1)[0], frames[0])


def test_frame_shape_mismatch_between_files(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f["d"] = _stack(2)
    with h5py.File(tmp_path / "b.h5", "w") as f:
        f["d"] = np.zeros((2, 8, 8), dtype=np.uint32)
    with pytest.raises(FrameFormatError, match=r"b\.h5::/d: frames of shape \(8, 8\)"):
        open_frames(str(tmp_path / "*.h5"))


def test_truncated_file(tmp_path: Path) -> None:
    p = tmp_path / "xrd.h5"
    _nexus(p, _stack(6))
    blob = p.read_bytes()
    cut = tmp_path / "cut.h5"
    cut.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(FrameFormatError, match=r"cut\.h5: cannot open as HDF5.*truncated"):
        open_frames(cut)


def test_mixing_hdf5_and_images_is_refused(tmp_path: Path) -> None:
    _nexus(tmp_path / "xrd.h5", _stack(2))
    EdfImage(data=_stack(1)[0]).write(str(tmp_path / "f.edf"))
    with pytest.raises(FrameFormatError, match="mixing HDF5 files"):
        open_frames([tmp_path / "xrd.h5", tmp_path / "f.edf"])
    with pytest.raises(FrameFormatError, match=r"f\.edf: not an HDF5 file, but an HDF5 dataset"):
        open_frames(tmp_path / "f.edf", dataset="/entry/data")


def test_empty_image_file_is_named(tmp_path: Path) -> None:
    frame = _stack(1, dtype=np.int32)[0]
    CbfImage(data=frame).write(str(tmp_path / "f_0001.cbf"))
    (tmp_path / "f_0002.cbf").write_bytes(b"")  # fabio: AttributeError ('NoneType' ...)
    with pytest.raises(FrameFormatError) as err:
        open_frames(str(tmp_path / "f_*.cbf"))
    assert str(err.value).startswith(f"{tmp_path / 'f_0002.cbf'}: expected detector frames")
    assert "found an empty file (0 bytes" in str(err.value)
    assert "AttributeError" not in str(err.value)
    with pytest.raises(FrameFormatError, match=r"m\.cbf: expected a mask image.*"
                                               r"found an empty file \(0 bytes"):
        read_image(_empty(tmp_path / "m.cbf"), what="mask")


def _empty(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def test_fabio_tiff_warnings_do_not_flood(tmp_path: Path, caplog, monkeypatch) -> None:
    import logging

    from PIL import Image

    from operando.io.xrd import images

    monkeypatch.setattr(images, "_FABIO_SEEN", set(), raising=False)  # none shown yet
    for k in range(4):  # a description tag fabio cannot decode: one warning per file read
        Image.fromarray(_stack(1, seed=k, dtype=np.int32)[0]).save(
            tmp_path / f"f_{k:04d}.tif", tiffinfo={270: b"T = 25\xb0C"})
    caplog.set_level(logging.DEBUG, logger="operando.io.xrd.images")
    src = open_frames(str(tmp_path / "f_*.tif"))
    assert src.read(0, 4).shape == (4, *SHAPE)
    src.metadata()
    shown = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(shown) == 1, [r.getMessage() for r in shown]
    assert shown[0].getMessage().startswith(f"{tmp_path / 'f_0000.tif'}: fabio: TIFF file tag")
    assert shown[0].name == "operando.io.xrd.images"
    logged = [r for r in caplog.records if "non ASCII" in r.getMessage()]
    assert len(logged) >= 8  # every one is still in the log, at debug level
    assert not logging.getLogger("fabio").handlers and logging.getLogger("fabio").propagate


# ---------------------------------------------------------------------------------------
# read_image / check_image_shape
# ---------------------------------------------------------------------------------------

def test_read_image_formats_round_trip(tmp_path: Path) -> None:
    img = _stack(1)[0]
    mask = (img > 2500).astype(np.uint8)
    EdfImage(data=mask).write(str(tmp_path / "mask.edf"))
    TifImage(data=img.astype(np.float32)).write(str(tmp_path / "flat.tif"))
    np.save(tmp_path / "dark.npy", img.astype(np.uint16))
    stack = _stack(4)
    with h5py.File(tmp_path / "cal.h5", "w") as f:
        f.create_dataset("entry/dark", data=stack, chunks=(1, *SHAPE),
                         **hdf5plugin.Bitshuffle(cname="lz4"))
        f["entry/mask"] = mask
    np.testing.assert_array_equal(read_image(tmp_path / "mask.edf", what="mask"), mask)
    flat = read_image(tmp_path / "flat.tif", what="flat")
    assert flat.dtype == np.float32
    np.testing.assert_array_equal(flat, img.astype(np.float32))
    np.testing.assert_array_equal(read_image(tmp_path / "dark.npy", what="dark"), img)
    np.testing.assert_array_equal(read_image(f"{tmp_path / 'cal.h5'}::/entry/mask"), mask)
    np.testing.assert_array_equal(read_image(f"{tmp_path / 'cal.h5'}::/entry/dark[2]"),
                                  stack[2])
    np.testing.assert_array_equal(read_image(f"{tmp_path / 'cal.h5'}::/entry/dark"), stack[0])
    assert fabio.open(str(tmp_path / "mask.edf")).data.shape == SHAPE


def test_read_image_errors(tmp_path: Path) -> None:
    with pytest.raises(FrameFormatError, match=r"^mask file not found: .*nomask\.edf$"):
        read_image(tmp_path / "nomask.edf", what="mask")
    with h5py.File(tmp_path / "cal.h5", "w") as f:
        f["entry/dark"] = _stack(2)
    with pytest.raises(FrameFormatError, match=r"dark .*cal\.h5: no dataset at /entry/flat; "
                                               r"found 2D/3D datasets: /entry/dark"):
        read_image(f"{tmp_path / 'cal.h5'}::/entry/flat", what="dark")
    with pytest.raises(FrameFormatError, match=r"frame 5 requested, the stack holds 2"):
        read_image(f"{tmp_path / 'cal.h5'}::/entry/dark[5]", what="dark")
    (tmp_path / "junk.edf").write_bytes(b"junk" * 20)
    with pytest.raises(FrameFormatError, match=r"^flat .*junk\.edf: not an image fabio"):
        read_image(tmp_path / "junk.edf", what="flat")
    cube = np.arange(24).reshape(2, 3, 4)
    np.save(tmp_path / "cube.npy", cube)  # multi-frame: the first frame, as fabio reads it
    np.testing.assert_array_equal(read_image(tmp_path / "cube.npy", what="mask"), cube[0])


def test_check_image_shape_message() -> None:
    check_image_shape(np.zeros((195, 487)), (195, 487), what="mask", source="/x/mask.edf")
    with pytest.raises(FrameFormatError) as err:
        check_image_shape(np.zeros((100, 100)), (195, 487), what="mask", source="/x/mask.edf")
    assert str(err.value) == (
        "mask /x/mask.edf: expected shape (195, 487) like the detector frames, found (100, 100)"
    )


def test_environment_has_no_leftover_open_files(tmp_path: Path) -> None:
    """read() closes what it opens: the file can be replaced right after (Windows-safe idiom)."""
    _nexus(tmp_path / "xrd.h5", _stack(3))
    src = open_frames(tmp_path / "xrd.h5")
    src.read(0, 3)
    read_image(f"{tmp_path / 'xrd.h5'}::/entry/instrument/detector/data[1]")
    os.replace(tmp_path / "xrd.h5", tmp_path / "moved.h5")
    with h5py.File(tmp_path / "moved.h5", "a") as f:  # would fail if a handle were still open
        f.attrs["touched"] = 1


def test_growing_swmr_source_keeps_the_identity_of_complete_frames(tmp_path: Path) -> None:
    """A live pass reuses the work units of frames an earlier pass integrated: the identity
    of a growing (swmr) source does not hold its size, mtime or frame count; a finished
    source's does, and a file replaced under the same name is another source."""
    from dask.base import tokenize

    p = tmp_path / "live.h5"
    f = h5py.File(p, "w", libver="latest")
    d = f.create_dataset("entry/data/data", shape=(0, *SHAPE), maxshape=(None, *SHAPE),
                         dtype="u4", chunks=(1, *SHAPE))
    f.swmr_mode = True

    def append(n: int) -> None:
        k = d.shape[0]
        d.resize((k + n, *SHAPE))
        d[k:k + n] = _stack(n).astype("u4")
        d.flush()

    try:
        append(3)
        early = open_frames([str(p)], dataset="/entry/data/data", swmr=True)
        append(4)
        later = open_frames([str(p)], dataset="/entry/data/data", swmr=True)
    finally:
        f.close()
    assert (early.n_frames, later.n_frames) == (3, 7)
    assert tokenize(early, 0, 3) == tokenize(later, 0, 3)
    closed = open_frames([str(p)], dataset="/entry/data/data")
    assert tokenize(closed, 0, 3) != tokenize(later, 0, 3)
    key = tokenize(later, 0, 3)  # (a key is computed when its unit is submitted)
    p.rename(tmp_path / "old.h5")
    with h5py.File(p, "w") as g:  # another file under the same name
        g.create_dataset("entry/data/data", data=_stack(7).astype("u4"), chunks=(1, *SHAPE))
    again = open_frames([str(p)], dataset="/entry/data/data", swmr=True)
    assert tokenize(again, 0, 3) != key
