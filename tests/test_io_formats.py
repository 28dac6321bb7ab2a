"""io/ layer: text decoding, XAS text and HDF5, NeXus / Bliss / SECCM / geometry writers,
NOVA reader, error types, shared-data locator, constants, pure echem segment helpers.

Real ROCK/SOLEIL XAS files come from ``../shared/data`` (skipped with a reason when absent).
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.constants

from operando import constants
from operando.echem.segments import (
    cumulative_trapezoid_C,
    rest_threshold_from_current,
    segments_from_current,
)
from operando.io.cv.nova import read_nova_cv, write_nova_cv
from operando.io.cv.seccm import read_seccm_map, write_seccm_map
from operando.io.errors import InputFileError
from operando.io.shared_data import ENV_VAR, find_shared_data
from operando.io.text import read_text_lines
from operando.io.xas.hdf5 import XasScan, XasScanFileError, read_xas_scans, write_xas_scans
from operando.io.xas.text import XasTextError, read_xas_text
from operando.io.xrd import geometry, nexus
from operando.io.xrd.bliss import write_lima_file
from operando.kinetics.cv import scan_charges_C
from operando.simulate import presets

DATA = find_shared_data(Path(__file__).resolve().parents[1]) or (
    Path(__file__).resolve().parents[2] / "shared" / "data")
ROCK_NORM = (DATA / "operando_xas_linio2" / "XAS_normalized"
             / "norm_op2_cell4_pos1_dq1_0001_av240_00001.txt")

needs_rock = pytest.mark.skipif(
    not ROCK_NORM.is_file(), reason=f"real ROCK/SOLEIL XAS file {ROCK_NORM} absent")


def _no_temporaries(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.name.endswith(".part"))


# --------------------------------------------------------------------------- text decoding


def test_read_text_lines_bom_crlf_and_latin1(tmp_path: Path) -> None:
    p = tmp_path / "a.txt"
    p.write_bytes(b"\xef\xbb\xbfone\r\ntwo\rthree\nfour\n")
    assert read_text_lines(p) == ["one", "two", "three", "four"]
    q = tmp_path / "b.txt"
    q.write_bytes(b"mu\xb5 \x85 still one line\x1c too\r\nnext")  # latin-1, not UTF-8
    assert read_text_lines(q) == ["muµ \x85 still one line\x1c too", "next"]


def test_bom_prefixed_xdi_is_read_as_xdi(tmp_path: Path) -> None:
    p = tmp_path / "bom.xdi"
    text = ("# XDI/1.0 test\n# Column.1: energy eV\n# Column.2: mu\n# Element.symbol: Fe\n"
            "# ///\n#----\n# energy mu\n7100 0.1\n7110 0.2\n7120 0.9\n")
    p.write_bytes(b"\xef\xbb\xbf" + text.encode())
    xt = read_xas_text(p)
    assert xt.format == "xdi"
    assert xt.metadata["Element.symbol"] == "Fe"
    assert xt.units == {"energy": "eV"}


# --------------------------------------------------------------------------- XAS text


@needs_rock
def test_rock_tab_separated_labels_with_spaces() -> None:
    xt = read_xas_text(ROCK_NORM)
    assert xt.labels == ["shifted energy", "normalized", "reference", "ref.derivative", "I0"]
    assert xt.column("shifted energy")[0] == pytest.approx(8060.0)
    assert xt.column("normalized").size == xt.n_rows


@needs_rock
def test_rock_metadata_keys_with_parentheses() -> None:
    xt = read_xas_text(ROCK_NORM)
    assert xt.metadata_float("Time from start (seconds)") == pytest.approx(65.003889607)
    assert xt.metadata["Time at start"] == "2022-07-26 23:01:58.055"
    assert "Sample temperature (C)" in xt.metadata
    assert xt.metadata["Data from HDF File"].startswith("/nfs/ruche-rock")


def test_units_follow_columns_when_labels_repeat(tmp_path: Path) -> None:
    p = tmp_path / "dup.xdi"
    p.write_text("# XDI/1.0 test\n# Column.1: energy eV\n# Column.2: I0 V\n"
                 "# Column.3: I0 counts\n# ///\n#----\n7100 1 2\n7110 3 4\n")
    xt = read_xas_text(p)
    assert xt.labels == ["energy", "I0", "I0_2"]
    assert xt.units == {"energy": "eV", "I0": "V", "I0_2": "counts"}
    np.testing.assert_array_equal(xt.column("I0_2"), [2.0, 4.0])


# --------------------------------------------------------------------------- XAS HDF5


def _scan(n: int, extra: dict[str, np.ndarray] | None = None, **kw) -> XasScan:
    e = np.linspace(7100.0, 7200.0, 5)
    meas = {"energy": e, "I0": np.full(5, 1e5), "It": np.full(5, 5e4), "epoch": e * 0 + n}
    meas.update(extra or {})
    return XasScan(number=n, title=f"xanes {n}", start_time="2026-03-14T08:30:00+00:00",
                   end_time="2026-03-14T08:30:30+00:00", measurement=meas, **kw)


def test_read_xas_scans_takes_only_n_dot_1_entries(tmp_path: Path) -> None:
    p = write_xas_scans(tmp_path / "scans.h5", [_scan(2), _scan(10), _scan(1)])
    with h5py.File(p, "a") as f:
        f.copy("1.1", "1.2")  # a sub-scan
        f.create_group("meta").create_dataset("x", data=1.0)  # not a scan at all
        f.create_group("3.1x")
    scans = read_xas_scans(p)
    assert [s.number for s in scans] == [1, 2, 10]
    assert [s.name for s in scans] == ["1.1", "2.1", "10.1"]


def test_read_xas_scans_no_entries_is_an_input_error(tmp_path: Path) -> None:
    p = tmp_path / "empty.h5"
    with h5py.File(p, "w") as f:
        f.create_group("1.2")
    with pytest.raises(XasScanFileError, match=r"empty\.h5: no scan entries") as err:
        read_xas_scans(p)
    assert isinstance(err.value, InputFileError)


def test_xas_measurement_units(tmp_path: Path) -> None:
    scan = _scan(1, extra={"mu": np.ones(5), "temperature": np.ones(5)},
                 measurement_units={"temperature": "K"})
    p = write_xas_scans(tmp_path / "u.h5", [scan])
    with h5py.File(p, "r") as f:
        m = f["1.1/measurement"]
        assert m["energy"].attrs["units"] == "eV"
        assert m["epoch"].attrs["units"] == "s"
        assert m["I0"].attrs["units"] == "counts" and m["It"].attrs["units"] == "counts"
        assert "units" not in m["mu"].attrs
        assert m["temperature"].attrs["units"] == "K"
        assert f.attrs["NX_class"] == "NXroot" and f.attrs["file_name"] == "u.h5"
    (back,) = read_xas_scans(p)
    assert back.measurement_units == {"temperature": "K"}


# --------------------------------------------------------------------------- NeXus writer


def _writer(path: Path, **kw) -> nexus.NexusXrdWriter:
    args = {"frame_shape": (4, 5), "wavelength_A": 0.2, "start_time_epoch_s": 1.7e9,
            "title": "t"}
    args.update(kw)
    return nexus.NexusXrdWriter(path, **args)


def _open_hdf5_files() -> int:
    return h5py.h5f.get_obj_count(h5py.h5f.OBJ_ALL, h5py.h5f.OBJ_FILE)


def test_nexus_writer_failing_layout_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(self, f):
        f.create_group("entry")
        raise RuntimeError("layout failed")

    monkeypatch.setattr(nexus.NexusXrdWriter, "_create_layout", boom)
    before = _open_hdf5_files()
    path = tmp_path / "xrd.nxs"
    with pytest.raises(RuntimeError, match="layout failed"), _writer(path):
        pytest.fail("the body must not run")
    assert not path.exists()
    assert _no_temporaries(tmp_path) == [] and list(tmp_path.iterdir()) == []
    assert _open_hdf5_files() == before, "the temporary HDF5 file was left open"


def test_nexus_writer_failing_body_or_finalise_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "xrd.nxs"
    path.write_bytes(b"earlier product")
    before = _open_hdf5_files()
    with pytest.raises(ValueError, match=r"xrd\.nxs: frame 0"), _writer(path) as w:
        w.append(np.zeros((4, 5), np.float64), timestamp_s=1.7e9, count_time_s=1.0,
                 monitor=1.0)
    assert path.read_bytes() == b"earlier product"

    def bad_finalise(self, f):
        raise OSError("disk full")

    monkeypatch.setattr(nexus.NexusXrdWriter, "_finalise", bad_finalise)
    with pytest.raises(OSError, match="disk full"), _writer(path) as w:
        w.append(np.zeros((4, 5), np.uint32), timestamp_s=1.7e9, count_time_s=1.0,
                 monitor=1.0)
    assert path.read_bytes() == b"earlier product"
    assert _no_temporaries(tmp_path) == []
    assert _open_hdf5_files() == before


def test_nexus_writer_success_and_wavelength_check(tmp_path: Path) -> None:
    path = tmp_path / "ok.nxs"
    with _writer(path) as w:
        w.append(np.ones((4, 5), np.uint32), timestamp_s=1.7e9, count_time_s=1.0, monitor=2.0)
    assert _no_temporaries(tmp_path) == []
    with h5py.File(path, "r") as f:
        assert f["entry/instrument/detector/data"].shape == (1, 4, 5)
        assert f["entry/instrument/monochromator/energy"][()] == pytest.approx(
            constants.HC_KEV_A / 0.2)
        assert f["entry/end_time"][()].decode().endswith("+00:00")
        assert f.attrs["file_name"] == "ok.nxs"
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match=r"bad\.nxs: wavelength_A must be a positive"):
            _writer(tmp_path / "bad.nxs", wavelength_A=bad)


# --------------------------------------------------------------------------- geometry


def test_geometry_writers_are_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pyFAI.integrator.azimuthal import AzimuthalIntegrator

    ai = AzimuthalIntegrator(dist=0.1, wavelength=1e-10, detector="Pilatus100k")
    poni = geometry.write_poni(ai, tmp_path / "g.poni")
    assert geometry.read_poni(poni).dist == pytest.approx(0.1)
    mask = np.zeros((3, 4), np.uint8)
    mask[1, 2] = 1
    edf = geometry.write_mask_edf(mask, tmp_path / "m.edf")
    np.testing.assert_array_equal(geometry.read_mask(edf), mask)
    assert _no_temporaries(tmp_path) == []

    def broken(self, fname):
        Path(fname).write_bytes(b"half")
        raise OSError("no space")

    monkeypatch.setattr(geometry.EdfImage, "write", broken)
    with pytest.raises(OSError, match="no space"):
        geometry.write_mask_edf(mask, tmp_path / "m.edf")
    np.testing.assert_array_equal(geometry.read_mask(edf), mask)  # earlier file intact
    assert _no_temporaries(tmp_path) == []


# --------------------------------------------------------------------------- Bliss / LIMA


def test_lima_frames_are_checked_not_silently_cast(tmp_path: Path) -> None:
    ok = write_lima_file(tmp_path / "ok.h5", [np.ones((2, 3), np.uint16)] * 2, n_frames=2,
                         frame_shape=(2, 3))
    with h5py.File(ok, "r") as f:
        assert f["entry_0000/measurement/data"].dtype == np.uint32
    ints = write_lima_file(tmp_path / "int64.h5", [np.full((2, 3), 7, np.int64)], n_frames=1,
                           frame_shape=(2, 3))
    with h5py.File(ints, "r") as f:
        assert f["entry_0000/measurement/data"][0, 0, 0] == 7
    cases = (
        (np.full((2, 3), 1.5), r"float\.h5: frame 0 has dtype float64, expected uint32"),
        (np.full((2, 3), -1, np.int32), r"neg\.h5: frame 0 holds values -1\.\.-1 outside"),
        (np.ones((3, 2), np.uint32), r"shape\.h5: frame 0 has shape \(3, 2\)"),
    )
    for (frame, match), name in zip(cases, ("float.h5", "neg.h5", "shape.h5"), strict=True):
        with pytest.raises(ValueError, match=match):
            write_lima_file(tmp_path / name, [frame], n_frames=1, frame_shape=(2, 3))
        assert not (tmp_path / name).exists()
    assert _no_temporaries(tmp_path) == []


# --------------------------------------------------------------------------- SECCM map


def _seccm(path: Path) -> Path:
    shape = (2, 3, 1, 4)
    return write_seccm_map(path, x_um=np.arange(3.0), y_um=np.arange(2.0),
                           scan_rate_V_s=np.array([0.1]), potential_V=np.zeros(shape),
                           current_A=np.ones(shape), time_s=np.arange(4.0)[None, :],
                           pixel_area_cm2=1e-8)


def test_seccm_nexus_attributes(tmp_path: Path) -> None:
    p = _seccm(tmp_path / "map.h5")
    with h5py.File(p, "r") as f:
        assert f.attrs["NX_class"] == "NXroot" and f.attrs["file_name"] == "map.h5"
        assert "definition" not in f["entry"].attrs
        assert f["entry/title"][()].decode() == "SECCM cyclic-voltammetry map"
        assert f["entry/map"].attrs["NX_class"] == "NXdata"
    assert read_seccm_map(p)["pixel_area_cm2"] == pytest.approx(1e-8)


def test_seccm_reader_errors_name_file_and_path(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match=r"nothere\.h5: no such file"):
        read_seccm_map(tmp_path / "nothere.h5")
    p = _seccm(tmp_path / "nodata.h5")
    with h5py.File(p, "a") as f:
        del f["entry/map/current_A"]
    with pytest.raises(InputFileError, match=r"nodata\.h5: /entry/map: .*missing \['current_A'\]"):
        read_seccm_map(p)
    q = _seccm(tmp_path / "noattr.h5")
    with h5py.File(q, "a") as f:
        del f["entry/map"].attrs["pixel_area_cm2"]
    with pytest.raises(InputFileError, match=r"noattr\.h5: /entry/map: .*'pixel_area_cm2'"):
        read_seccm_map(q)
    r = tmp_path / "other.h5"
    with h5py.File(r, "w") as f:
        f.create_group("data")
    with pytest.raises(InputFileError, match=r"other\.h5: expected group /entry/map.*'data'"):
        read_seccm_map(r)


# --------------------------------------------------------------------------- NOVA


def test_nova_reader_errors(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match=r"cv_1mVs\.txt: no such file"):
        read_nova_cv(tmp_path / "cv_1mVs.txt")
    t, i = np.arange(5.0), np.linspace(-1e-6, 1e-6, 5)
    q_pos, q_neg = scan_charges_C(t, i)
    p = write_nova_cv(tmp_path / "cv_10mVs.txt", potential_applied_V=np.linspace(0, 1, 5),
                      time_s=t, current_A=i, charge_positive_C=q_pos, charge_negative_C=q_neg)
    lines = p.read_text().splitlines()
    bad = tmp_path / "bad.txt"
    bad.write_text("\n".join([*lines[:3], lines[3].replace(";", ";x", 1), *lines[4:]]) + "\n")
    with pytest.raises(InputFileError,
                       match=r"bad\.txt: line 4, column 2 'Time \(s\)': expected a number.*'x2'"):
        read_nova_cv(bad)
    short = tmp_path / "short.txt"
    short.write_text("\n".join([*lines[:2], "0.1;2"]) + "\n")
    with pytest.raises(InputFileError, match=r"short\.txt: line 3: expected 9 .*found 2"):
        read_nova_cv(short)
    nohead = tmp_path / "nohead.txt"
    nohead.write_text("a;b\n1;2\n")
    with pytest.raises(InputFileError, match=r"nohead\.txt: line 1: expected the NOVA columns"):
        read_nova_cv(nohead)


def test_nova_charges_use_the_shared_trapezoid(tmp_path: Path) -> None:
    t = np.linspace(0.0, 10.0, 21)
    i = 1e-6 * np.sin(t)
    q_pos, q_neg = scan_charges_C(t, i)
    p = write_nova_cv(tmp_path / "cv_1mVs.txt", potential_applied_V=t * 0.01, time_s=t,
                      current_A=i, charge_positive_C=q_pos, charge_negative_C=q_neg)
    cv = read_nova_cv(p)
    np.testing.assert_allclose(cv["Q+"], cumulative_trapezoid_C(t, np.clip(i, 0, None)),
                               rtol=1e-8, atol=1e-20)
    np.testing.assert_allclose(cv["Q-"], cumulative_trapezoid_C(t, np.clip(i, None, 0)),
                               rtol=1e-8, atol=1e-20)


# --------------------------------------------------------------------------- pure echem


def test_segment_helpers() -> None:
    t = np.array([0.0, 1.0, 3.0])
    np.testing.assert_allclose(cumulative_trapezoid_C(t, np.array([1.0, 1.0, 2.0])),
                               [0.0, 1.0, 4.0])
    assert cumulative_trapezoid_C(np.zeros(0), np.zeros(0)).size == 0
    i = np.array([1e-3, 1e-3, 0.0, -1e-3, 1e-9])
    thr = rest_threshold_from_current(i, None, None)
    assert thr == pytest.approx(1e-6)
    ocv = np.array([False, True, False, False, False])
    assert list(segments_from_current(i, ocv, thr)) == [
        "charge", "rest", "rest", "discharge", "rest"]
    assert rest_threshold_from_current(i, None, 0.5) == 0.5


# --------------------------------------------------------------------------- misc


def test_constants_single_source() -> None:
    assert constants.HC_KEV_A == pytest.approx(12.398419843, rel=1e-9)
    assert presets.FARADAY_C_PER_MOL is constants.FARADAY_C_PER_MOL
    assert constants.FARADAY_C_PER_MOL == pytest.approx(
        scipy.constants.physical_constants["Faraday constant"][0])
    assert presets.GAS_CONSTANT_J_PER_MOL_K == scipy.constants.R


def test_input_errors_share_one_base() -> None:
    from operando.io.echem.biologic import EchemFormatError
    from operando.io.echem.triggers import TriggerFormatError

    for cls in (EchemFormatError, TriggerFormatError, XasTextError, XasScanFileError):
        assert issubclass(cls, InputFileError) and issubclass(cls, ValueError)


def test_shared_data_env_pointing_nowhere_warns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "no-such-folder"
    monkeypatch.setenv(ENV_VAR, os.fspath(missing))
    with pytest.warns(UserWarning, match=rf"{ENV_VAR}.*no-such-folder"):
        assert find_shared_data() is None
    monkeypatch.setenv(ENV_VAR, os.fspath(tmp_path))
    assert find_shared_data() == tmp_path
