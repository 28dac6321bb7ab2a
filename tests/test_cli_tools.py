"""The one-off commands: `operando integrate` (like pyFAI-integrate) and `operando echem`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import xarray as xr

from operando.io.xrd.patterns import read_xy


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, COLUMNS="200", NO_COLOR="1")
    return subprocess.run([sys.executable, "-m", "operando", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=600)


def test_integrate_real_ceo2_frame_to_xy(shared_data: Path, tmp_path: Path) -> None:
    d = shared_data / "xrd"
    out = tmp_path / "ceo2.xy"
    proc = _run("integrate", str(d / "CeO2_Pilatus1M.tif"), "--poni",
                str(d / "CeO2_Pilatus1M.poni"), "--unit", "2th_deg", "--npt", "2000",
                "--flip-ud", "-o", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    mine = read_xy(out)
    ref = np.loadtxt(d / "CeO2_Pilatus1M.xy", comments="#")
    ok = (ref[:, 0] > mine[0, 0]) & (ref[:, 0] < mine[-1, 0])
    ours = np.interp(ref[ok, 0], mine[:, 0], np.nan_to_num(mine[:, 1]))
    assert np.corrcoef(ours, ref[ok, 1])[0, 1] >= 0.995
    assert mine.shape[1] == 3 and np.all(mine[np.isfinite(mine[:, 1]) & (mine[:, 1] > 0), 2] > 0)


def test_integrate_nexus_stack_to_netcdf(small_run, tmp_path: Path) -> None:
    raw = small_run.outdir / "xrd"
    out = tmp_path / "frames.nc"
    proc = _run("integrate", str(raw / "xrd_0001.h5"), "--poni", str(raw / "geometry.poni"),
                "--mask", str(raw / "mask.edf"), "--npt", "500", "-o", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    with xr.open_dataset(out, engine="h5netcdf") as ds:
        assert ds["intensity"].dims == ("frame", "q") and ds.sizes["q"] == 500
        assert ds.sizes["frame"] == 147 and "trigger_time_utc" in ds.coords
        # no clock model: time on the beamline clock from the first exposure, and time_utc
        assert ds["time"].attrs["clock"] == "beamline" and ds["time"].values[0] >= 0
        assert ds["time_utc"].dtype.kind == "M" and not np.isnat(ds["time_utc"].values).any()
        assert ds.attrs["product"] == "xrd" and ds.attrs["mask_checksum"]


def test_integrate_bad_poni_and_wrong_mask(small_run, tmp_path: Path) -> None:
    raw = small_run.outdir / "xrd"
    missing = _run("integrate", str(raw / "xrd_0001.h5"), "--poni", str(tmp_path / "no.poni"),
                   cwd=tmp_path)
    assert missing.returncode == 1 and "no.poni" in missing.stderr
    np.save(tmp_path / "m.npy", np.zeros((5, 5), dtype=np.uint8))
    wrong = _run("integrate", str(raw / "xrd_0001.h5"), "--poni", str(raw / "geometry.poni"),
                 "--mask", str(tmp_path / "m.npy"), cwd=tmp_path)
    assert wrong.returncode == 1 and "(5, 5)" in wrong.stderr and "m.npy" in wrong.stderr
    assert not list(tmp_path.glob("*.xy"))


def test_integrate_finds_frames_of_the_poni_shape_or_names_the_broken_link(
    shared_data: Path, tmp_path: Path
) -> None:
    import h5py
    from pyFAI.integrator.azimuthal import AzimuthalIntegrator

    from operando.io.xrd.geometry import write_poni

    # a NeXus file whose NXdetector data links a file not copied with it: once integrated
    # as "1 frame of (3, 3)" (the NXsample orientation matrix) with exit status 0
    broken = tmp_path / "broken.nxs"
    with h5py.File(broken, "w") as f:
        det = f.create_group("entry/instrument/detector")
        det.attrs["NX_class"] = "NXdetector"
        det["data"] = h5py.ExternalLink("broken_data_000001.h5", "/entry/data/data")
        f["entry/sample/orientation_matrix"] = np.eye(3)[None]
    proc = _run("integrate", str(broken), "--poni", str(shared_data / "xrd/CeO2_Pilatus1M.poni"),
                cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout
    assert f"missing file {tmp_path / 'broken_data_000001.h5'}" in proc.stderr
    assert "--dataset" in proc.stderr and "Traceback" not in proc.stderr
    assert not list(tmp_path.glob("*.xy"))
    # two stacks: the one shaped like the PONI's detector (Pilatus 100k, 195 x 487) is taken
    poni = write_poni(AzimuthalIntegrator(dist=0.25, detector="Pilatus100k",
                                          wavelength=2.066e-11), tmp_path / "p100k.poni")
    two = tmp_path / "two.h5"
    with h5py.File(two, "w") as f:
        f["scan/pilatus"] = np.random.default_rng(0).poisson(50, (2, 195, 487)).astype("u4")
        f["scan/roi_stack"] = np.zeros((2, 10, 12), dtype="u4")
    proc = _run("integrate", str(two), "--poni", str(poni), "--npt", "100", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "2 frame(s) of (195, 487)" in proc.stdout


def test_echem_command_summarises_and_plots(shared_data: Path, tmp_path: Path) -> None:
    ec = sorted((shared_data / "operando_xas_linio2" / "EC").glob("*.mpt"))
    png = tmp_path / "ec.png"
    proc = _run("echem", *map(str, ec), "--tz", "Europe/Paris", "--mass-mg", "10",
                "--molar-mass", "97.6", "--plot", str(png), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"{len(ec)} file(s)" in proc.stdout and "charge" in proc.stdout
    assert "C-rate" in proc.stdout and "mAh/g" in proc.stdout
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_echem_command_bad_timezone(shared_data: Path, tmp_path: Path) -> None:
    mpt = shared_data / "echem" / "cv.mpt"
    proc = _run("echem", str(mpt), "--tz", "Mars/Olympus", cwd=tmp_path)
    assert proc.returncode == 1 and "Mars/Olympus" in proc.stderr


def test_lcf_takes_several_standards_after_one_option(shared_data: Path) -> None:
    """`operando lcf SPEC... --standards STD1 STD2` (the documented syntax): both are standards,
    not one standard and an extra spectrum."""
    import json as _json

    import pytest
    from typer.testing import CliRunner

    from operando.cli import app, expand_multi_value_options

    lib = shared_data / "xanes" / "FeLibNov2021.nor"
    argv = ["lcf", f"{lib}:Magnetite", "--standards", f"{lib}:LiFe(II)PO4",
            f"{lib}:Fe(III)PO4", f"{lib}:Hematite_NP", "--json"]
    assert expand_multi_value_options(argv).count("--standards") == 3
    res = CliRunner().invoke(app, expand_multi_value_options(argv))
    assert res.exit_code == 0, res.output
    fits = _json.loads(res.output)["fits"]
    assert len(fits) == 1 and len(fits[0]["weights"]) == 3
    assert fits[0]["sum"] == pytest.approx(1.0, abs=1e-6)
