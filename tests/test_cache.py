"""Caching, staleness and failure isolation of the reduce flow on the `small` run (echem,
xrd and xanes only: cheap): an unchanged rerun does no work and starts nothing; a changed
section recomputes only its stream and what depends on it (an echem change integrates no
frame); stale products are recomputed, or kept with --keep; `operando status` and
`operando clean`; a failed stream does not stop the others; kill -9 then resume gives the
products of an uninterrupted run (slow)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from typer.testing import CliRunner

from operando.cli import app
from operando.config import RunConfig, load_config
from pipelines.cache import code_version, plan_run, product_state
from pipelines.reduce import ReduceFailed, reduce_run

STREAMS = ["echem", "xrd", "xanes"]
REPO = Path(__file__).resolve().parents[1]


def _cfg(small_run, out: Path, **sections) -> RunConfig:
    cfg = load_config(small_run.run_config_path)
    update: dict = {"output": cfg.output.model_copy(update={"directory": out,
                                                            "overwrite": False})}
    for name, changes in sections.items():
        update[name] = getattr(cfg, name).model_copy(update=changes)
    return cfg.model_copy(update=update)


def _mtimes(cfg: RunConfig) -> dict[str, int]:
    return {s: (cfg.product_dir / f"{s}.nc").stat().st_mtime_ns for s in STREAMS}


@pytest.fixture(scope="module")
def run(small_run, small_reduced, tmp_path_factory: pytest.TempPathFactory):
    """echem.nc, xrd.nc, xanes.nc of the small run: the session's reduced run (products and
    unit cache) copied to a folder of this module's own; fresh for a config pointing at it
    (a product's identity holds its inputs and sections, not where it lies)."""
    import shutil

    _, ref = small_reduced
    cfg = _cfg(small_run, tmp_path_factory.mktemp("cached"))
    cfg.product_dir.mkdir(parents=True)
    for s in STREAMS:
        shutil.copy2(ref.products[s], cfg.product_dir / f"{s}.nc")
    shutil.copytree(ref.product_dir / ".cache", cfg.product_dir / ".cache")
    assert [product_state(cfg, s).status for s in STREAMS] == ["fresh"] * 3
    return cfg


def test_unchanged_rerun_does_no_work(run) -> None:
    before = _mtimes(run)
    res = reduce_run(run, only=STREAMS, scheduler="local")
    assert not res.flow_ran and not res.dask_started and not res.units
    assert res.fresh == dict.fromkeys(STREAMS, "fresh") and not res.products
    assert _mtimes(run) == before
    out = CliRunner().invoke(app, ["status", str(_write(run))])
    assert out.exit_code == 0 and out.output.count("fresh") >= 3, out.output


def _write(cfg: RunConfig) -> Path:
    path = cfg.product_dir.parent / f"{cfg.product_dir.name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(cfg.to_yaml(), encoding="utf-8")
    return path


def test_echem_change_reattaches_without_integrating(run) -> None:
    """echem.active_mass_mg changes x_li: echem.nc, xrd.nc (carries x_li) and xanes.nc are
    rewritten; every integration unit comes from the cache and no cluster starts."""
    changed = run.model_copy(update={"echem": run.echem.model_copy(
        update={"active_mass_mg": run.echem.active_mass_mg * 1.2})})
    st = product_state(changed, "xrd")
    assert st.status == "stale" and any("echem.active_mass_mg" in r for r in st.reasons)
    with xr.open_dataset(run.product_dir / "xrd.nc", engine="h5netcdf") as old:
        old = old.load()
    res = reduce_run(changed, only=STREAMS, scheduler="local")
    assert set(res.products) == set(STREAMS)
    assert res.units["xrd"].get("computed", 0) == 0 and res.units["xrd"]["cached"] >= 2
    assert not res.dask_started  # every unit cached: no LocalCluster
    with xr.open_dataset(res.products["xrd"], engine="h5netcdf") as new:
        np.testing.assert_array_equal(new["intensity"].values, old["intensity"].values)
        dx = np.abs(new["x_li"].values - old["x_li"].values)
        assert np.nanmax(dx) > 1e-3  # the exposure-averaged echem was re-attached
    # back to the original config: stale again, re-attached again from the cache
    back = reduce_run(run, only=STREAMS, scheduler="none")
    assert back.units["xrd"].get("computed", 0) == 0


def test_xanes_change_rewrites_only_xanes(run) -> None:
    before = _mtimes(run)
    fr = list(run.xanes.fit_range_eV)
    changed = run.model_copy(update={"xanes": run.xanes.model_copy(
        update={"fit_range_eV": (fr[0], fr[1] - 5.0)})})
    plan = plan_run(changed, STREAMS)
    assert list(plan.compute) == ["xanes"] and "xanes.fit_range_eV" in plan.compute["xanes"]
    res = reduce_run(changed, only=STREAMS, scheduler="none")
    assert set(res.products) == {"xanes"} and set(res.fresh) == {"echem", "xrd"}
    after = _mtimes(run)
    assert after["echem"] == before["echem"] and after["xrd"] == before["xrd"]
    assert after["xanes"] != before["xanes"]
    # --keep keeps the (now stale) product under the original config, with the reason
    kept = reduce_run(run, only=["xanes"], scheduler="none", overwrite=False)
    assert not kept.flow_ran and "xanes.fit_range_eV" in kept.kept["xanes"]
    out = CliRunner().invoke(app, ["status", str(_write(run)), "--only", "xanes"])
    assert out.exit_code == 0 and "stale" in out.output
    assert "xanes.fit_range_eV" in out.output.replace("\n", "").replace("│", "")
    again = reduce_run(run, only=["xanes"], scheduler="none")  # default: recomputed
    assert set(again.products) == {"xanes"}
    assert product_state(run, "xanes").status == "fresh"


def test_changed_input_file_is_stale(run, small_run, tmp_path: Path) -> None:
    """A product records its inputs' size and mtime: touching one makes it stale."""
    std = Path(run.xanes.standards[0].file)
    copy = tmp_path / std.name
    copy.write_bytes(std.read_bytes())
    cfg = run.model_copy(update={"output": run.output.model_copy(
        update={"directory": tmp_path / "out"})})
    stds = [s.model_copy(update={"file": copy}) if i == 0 else s
            for i, s in enumerate(cfg.xanes.standards)]
    cfg = cfg.model_copy(update={"xanes": cfg.xanes.model_copy(update={"standards": stds})})
    reduce_run(cfg, only=["xanes"], scheduler="none")
    assert product_state(cfg, "xanes").status == "fresh"
    os.utime(copy, ns=(time.time_ns(), time.time_ns() + 10**9))
    st = product_state(cfg, "xanes")
    assert st.status == "stale" and any(str(copy) in r for r in st.reasons), st.reasons


def test_failed_stream_does_not_stop_the_others(run, tmp_path: Path) -> None:
    cfg = run.model_copy(update={
        "output": run.output.model_copy(update={"directory": tmp_path}),
        "xanes": run.xanes.model_copy(update={"energy_path": "measurement/nothing"})})
    with pytest.raises(ReduceFailed, match=r"xanes: .*measurement/nothing"):
        reduce_run(cfg, only=["echem", "xanes"], scheduler="none")
    assert (cfg.product_dir / "echem.nc").is_file()  # written although xanes failed
    res = reduce_run(cfg, only=["echem", "xanes"], scheduler="none", raise_on_failure=False)
    assert set(res.failed) == {"xanes"} and set(res.fresh) == {"echem"}
    assert res.status()["xanes"][0] == "failed"
    assert "Traceback" in res.log_file.read_text(encoding="utf-8")
    assert not (cfg.product_dir / "xanes.nc").exists()
    out = CliRunner().invoke(app, ["reduce", str(_write(cfg)), "--scheduler", "none",
                                   "--only", "xanes"])
    assert out.exit_code == 1 and "xanes failed" in out.output, out.output
    assert "Traceback" not in out.output and "reduce.log" in out.output.replace("\n", "")


def test_clean_removes_the_cache_not_the_products(run, tmp_path: Path) -> None:
    cfg = run.model_copy(update={"output": run.output.model_copy(
        update={"directory": tmp_path})})
    reduce_run(cfg, only=["echem"], scheduler="none")
    (cfg.product_dir / ".cache" / "units").mkdir(parents=True, exist_ok=True)
    out = CliRunner().invoke(app, ["clean", str(cfg.product_dir)])
    assert out.exit_code == 0 and not (cfg.product_dir / ".cache").exists()
    assert (cfg.product_dir / "echem.nc").is_file()
    stray = cfg.product_dir.parent / "raw-frames.h5"  # not the pipeline's: never removed
    stray.write_bytes(b"data")
    out = CliRunner().invoke(app, ["clean", str(cfg.product_dir.parent), "--all"])
    assert out.exit_code == 0 and stray.read_bytes() == b"data"
    out = CliRunner().invoke(app, ["clean", str(_write(cfg)), "--all"])
    assert out.exit_code == 0 and not cfg.product_dir.exists()


@pytest.mark.slow
def test_kill_9_then_resume_equals_uninterrupted(run, small_run, tmp_path: Path) -> None:
    """`operando reduce` in a subprocess, killed (SIGKILL, by PID) as soon as the first
    integration chunk is cached; the resumed run reuses it and gives the xrd.nc of the
    uninterrupted run."""
    cfg = _cfg(small_run, tmp_path / "out",
               xrd={"integration": load_config(small_run.run_config_path).xrd.integration
                    .model_copy(update={"chunk_frames": 30})})
    config = _write(cfg)
    units = cfg.product_dir / ".cache" / "units" / "xrd"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "operando", "reduce", str(config),
                             "--scheduler", "none", "--only", "echem", "--only", "xrd"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # its own process group (PGID = its PID)
    try:
        while proc.poll() is None and not list(units.glob("integrate_chunk-*.pkl")):
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        # what the killed run had started (Prefect's temporary server) is stopped too, by the
        # group's PID: kill -9 of the run orphans it otherwise
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL, "the run finished before a chunk was cached"
    assert not (cfg.product_dir / "xrd.nc").exists()
    n_cached = len(list(units.glob("integrate_chunk-*.pkl")))
    st = product_state(cfg, "xrd")
    assert st.status == "missing" and "finished work units cached" in st.reasons[0]
    code_version.cache_clear()  # a restart is a new process: the code as it is now
    res = reduce_run(cfg, only=["echem", "xrd"], scheduler="none")
    assert res.units["xrd"]["cached"] >= n_cached >= 1
    with xr.open_dataset(res.products["xrd"], engine="h5netcdf") as a, \
            xr.open_dataset(run.product_dir / "xrd.nc", engine="h5netcdf") as b:
        for v in ("intensity", "intensity_sigma", "x_li", "voltage_V", "time_start"):
            np.testing.assert_array_equal(a[v].values, b[v].values, err_msg=v)


def test_peaks_alone_refits_on_a_current_xrd(run, tmp_path: Path) -> None:
    """`--only peaks` after an xrd change: xrd.nc is stale, so it is recomputed first (it
    used to be kept and peaks.nc fitted on it, stamped with the new config)."""
    changed = run.model_copy(update={"xrd": run.xrd.model_copy(update={
        "integration": run.xrd.integration.model_copy(update={"npt": 1400})})})
    plan = plan_run(changed, ["peaks"])
    assert list(plan.compute) == ["xrd", "peaks"], plan.compute
    assert "xrd.integration.npt" in plan.compute["xrd"]
    kept = plan_run(changed, ["peaks"], mode="keep")
    assert "xrd" in kept.kept and "xrd" not in kept.compute


def test_transient_oserror_is_retried_a_bounded_number_of_times() -> None:
    from pipelines.runner import call_with_retries

    calls: list[int] = []

    def flaky(n_failures: int) -> str:
        calls.append(1)
        if len(calls) <= n_failures:
            raise OSError("Resource temporarily unavailable")
        return "ok"

    assert call_with_retries(flaky, (2,), retries=2, delay_s=0.0) == "ok" and len(calls) == 3
    calls.clear()
    with pytest.raises(OSError, match="temporarily"):
        call_with_retries(flaky, (5,), retries=2, delay_s=0.0)
    assert len(calls) == 3
    calls.clear()

    def missing() -> None:
        calls.append(1)
        raise FileNotFoundError("gone.h5")

    with pytest.raises(FileNotFoundError):
        call_with_retries(missing, (), retries=2, delay_s=0.0)
    assert len(calls) == 1  # a missing file is not transient


def test_incomplete_products(run, tmp_path: Path) -> None:
    """A partial write (killed run) or a product marked complete = false (a live run) is
    incomplete, and is recomputed even with --keep."""
    from operando.io.products import read_product, write_product

    cfg = run.model_copy(update={"output": run.output.model_copy(
        update={"directory": tmp_path})})
    cfg.product_dir.mkdir(parents=True)
    (cfg.product_dir / ".echem.nc.x1y2.part").write_bytes(b"\x89HDF")
    st = product_state(cfg, "echem")
    assert st.status == "incomplete" and ".echem.nc.x1y2.part" in st.reasons[0]
    ds = read_product(run.product_dir / "echem.nc")
    write_product(ds, cfg.product_dir / "echem.nc", product="echem",
                  extra_attrs={"complete": False})
    assert product_state(cfg, "echem").status == "incomplete"
    assert "echem" in plan_run(cfg, ["echem"], mode="keep").compute
