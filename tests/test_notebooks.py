"""Every notebook in notebooks/ executes top to bottom on the `small` run (raw: the session's
simulated run through OPERANDO_RAW; reduced: the session's reduced run through
OPERANDO_RUN), and the numbers the notebooks print are the run's: checked against the
products and the simulator's ground truth, not only that no cell failed."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import nbformat
import numpy as np
import pytest
import xarray as xr
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks() -> None:
    assert NOTEBOOKS, "notebooks/ holds no notebook"


def _execute(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, raw: Path,
             product_dir: Path) -> str:
    """Run a notebook in ``tmp_path`` (no demo output there: only the variables lead to a
    run); its stdout, and no cell failed."""
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("OPERANDO_RAW", str(raw))
    monkeypatch.setenv("OPERANDO_RUN", str(product_dir))
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    errors = [o for o in outputs if o.get("output_type") == "error"]
    assert not errors, errors
    assert os.environ.get("MPLBACKEND") == "Agg"
    return "".join(o.get("text", "") for o in outputs
                   if o.get("output_type") == "stream" and o.get("name") == "stdout")


def _number(text: str, label: str) -> float:
    m = re.search(rf"^{re.escape(label)}: ([-+0-9.e]+)", text, re.M)
    assert m, f"the notebook printed no '{label}:' line:\n{text}"
    return float(m.group(1))


@pytest.fixture(scope="module")
def run_paths(small_run, small_reduced) -> tuple[Path, Path, dict]:
    cfg, _ = small_reduced
    truth = json.loads(Path(small_run.truth_path).read_text(encoding="utf-8"))
    return Path(small_run.outdir), cfg.product_dir, truth


def test_synthetic_beamtime_opens_the_given_raw_run(run_paths, tmp_path, monkeypatch) -> None:
    raw, pdir, truth = run_paths
    out = _execute(NOTEBOOKS[0], tmp_path, monkeypatch, raw, pdir)
    assert f"| preset {truth['preset']} | seed {truth['seed']}" in out
    assert not list(tmp_path.rglob("truth.json")), "simulated its own run"


def test_reduced_products(run_paths, tmp_path, monkeypatch) -> None:
    raw, pdir, _ = run_paths
    out = _execute(NOTEBOOKS[1], tmp_path, monkeypatch, raw, pdir)
    with xr.open_dataset(pdir / "xanes.nc", engine="h5netcdf") as xanes:
        lag = float(xanes.attrs["faraday_lag_s"])
    assert f"lag {lag:.0f} ±" in out
    with xr.open_dataset(pdir / "peaks.nc", engine="h5netcdf") as peaks:
        bad = int((peaks.fit_status != 0).sum())
    assert f"| {bad} window fits not ok" in out


def test_the_run(run_paths, tmp_path, monkeypatch) -> None:
    """XRD waterfall, fractions against Faraday with the lag, the depth × time map with
    the front arrivals, the D map: what they print is the run's."""
    raw, pdir, truth = run_paths
    out = _execute(NOTEBOOKS[2], tmp_path, monkeypatch, raw, pdir)
    assert _number(out, "XRD frames") == truth["xrd"]["n_frames"]
    assert abs(_number(out, "XRD lag") - truth["xrd"]["lag_s"]) < 30.0
    assert abs(_number(out, "XRD slope") - 1.0) < 0.15
    with xr.open_dataset(pdir / "xanes.nc", engine="h5netcdf") as xanes:
        assert _number(out, "XANES lag") == pytest.approx(xanes.attrs["faraday_lag_s"], abs=0.1)
        assert _number(out, "XANES slope") == pytest.approx(xanes.attrs["faraday_slope"],
                                                            abs=1e-3)
    assert abs(_number(out, "XANES lag") - truth["xanes"]["lag_s"]) < 30.0
    with xr.open_dataset(pdir / "confocal.nc", engine="h5netcdf") as conf:
        for r in range(conf.sizes["reaction"]):
            m = re.search(rf"^front arrival {r}: (.*) s$", out, re.M)
            assert m, out
            printed = np.array([float(v) for v in m.group(1).split(",")])
            np.testing.assert_allclose(printed, conf.front_arrival_time.isel(reaction=r),
                                       atol=0.5)
            assert np.all(np.diff(printed) > 0), "the front moves away from the separator"
    assert f"first face {truth['confocal']['origin']}" in out
    assert _number(out, "relaxation time") == pytest.approx(
        truth["confocal"]["relaxation_time_s"], rel=0.3)
    assert _number(out, "cell D") == pytest.approx(truth["kinetics"]["D_cm2_s"], rel=0.1)
    assert _number(out, "map D median") == pytest.approx(
        float(np.median(truth["kinetics"]["map_D_cm2_s"])), rel=0.2)


def test_every_notebook_is_tested() -> None:
    assert [p.name for p in NOTEBOOKS] == ["01_synthetic_beamtime.ipynb",
                                           "02_reduced_products.ipynb", "03_the_run.ipynb"]
