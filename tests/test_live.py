"""Live reduction: a `small` run (echem, sync, XRD) acquired live (`simulate --live`: cycler
rows, trigger pulses, SWMR frames appended) and followed (`reduce --follow`) to its end:
every product written while the run lasts says complete = 0 with the frames it covers and
is never taken as fresh; the final products equal the offline reduction of the closed
files."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from operando.config import load_config
from operando.io.cache import read_identity
from pipelines.cache import plan_run
from pipelines.follow import FollowOptions, follow_run
from pipelines.reduce import reduce_run

PRODUCTS = ("echem", "xrd")


def _no_peaks(cfg):
    return cfg.model_copy(update={"peaks": None})


def test_followed_live_run_equals_offline(tmp_path: Path) -> None:
    from operando.simulate.live import simulate_live

    run_dir = tmp_path / "live"
    sim = threading.Thread(target=simulate_live, args=(run_dir, "small", 0),
                           kwargs={"speed": 300.0, "streams": ("xrd",)}, daemon=True)
    sim.start()
    deadline = time.time() + 120
    while time.time() < deadline and not (run_dir / "run.yaml").exists():
        time.sleep(0.1)
    cfg = _no_peaks(load_config(run_dir / "run.yaml"))
    passes: list[tuple[int, dict, str]] = []

    def on_pass(n, res) -> None:
        if "xrd" in res.products:
            ident = read_identity(res.products["xrd"])
            status = plan_run(cfg, PRODUCTS).states["xrd"].status
            passes.append((n, ident, status))

    final = follow_run(cfg, run_dir, FollowOptions(quiet_s=30.0, tick_s=0.3,
                                                   scheduler="none"), on_pass=on_pass)
    sim.join(60)
    assert not sim.is_alive() and (run_dir / "END").exists()
    assert not final.failed, final.failed
    assert passes, "no live pass wrote xrd.nc"
    n, ident, status = passes[0]
    assert ident["complete"] is False and status == "incomplete"
    with xr.open_dataset(final.products["xrd"], engine="h5netcdf") as ds:
        assert "complete" not in ds.attrs
        n_total = ds.sizes["frame"]
    assert 0 < n < n_total
    # the offline reduction of the closed files, in a folder of its own
    off = cfg.model_copy(update={"output": cfg.output.model_copy(
        update={"directory": tmp_path / "offline"})})
    ref = reduce_run(off, scheduler="none")
    for s in PRODUCTS:
        with xr.open_dataset(final.products[s], engine="h5netcdf") as a, \
                xr.open_dataset(ref.products[s], engine="h5netcdf") as b:
            for v in b.data_vars:
                np.testing.assert_array_equal(a[v].values, b[v].values, err_msg=f"{s}.{v}")
    assert plan_run(cfg, PRODUCTS).nothing_to_do


def test_live_product_is_never_fresh(small_run, tmp_path: Path) -> None:
    """A product written inside live_products is incomplete, whatever else matches."""
    from pipelines.cache import live_products, product_state

    n = 3
    cfg = load_config(small_run.run_config_path)
    cfg = cfg.model_copy(update={"output": cfg.output.model_copy(
        update={"directory": tmp_path, "overwrite": True})})
    with live_products(n):
        reduce_run(cfg, only=["echem"], scheduler="none")
    st = product_state(cfg, "echem")
    assert st.status == "incomplete", st
    with xr.open_dataset(cfg.product_dir / "echem.nc", engine="h5netcdf") as ds:
        assert int(ds.attrs["complete"]) == 0 and int(ds.attrs["frames_covered"]) == n
    assert plan_run(cfg, ["echem"]).compute == {"echem": "incomplete: complete = false "
                                                "(a live run)"}


@pytest.mark.slow
def test_serve_follows_a_live_run(tmp_path: Path) -> None:
    """`operando serve` on a run being acquired: live passes (products incomplete), then the
    final reduction when END appears."""
    from operando.simulate.live import simulate_live
    from pipelines.serve import Beamtime, ServeOptions

    run_dir = tmp_path / "bt" / "live"
    sim = threading.Thread(target=simulate_live, args=(run_dir, "small", 0),
                           kwargs={"speed": 200.0, "streams": ("xrd",)}, daemon=True)
    sim.start()
    bt = Beamtime(tmp_path / "bt", ServeOptions(quiet_s=60.0, scheduler="none", tick_s=0.3))
    stop = threading.Event()
    watch = threading.Thread(target=bt.serve, kwargs={"stop": stop}, daemon=True)
    watch.start()
    seen_live = False
    try:
        deadline = time.time() + 300
        while time.time() < deadline:
            states = list(bt.runs.values())
            if states and states[0].live_frames:
                seen_live = True
            if states and states[0].state == "reduced":
                break
            time.sleep(0.2)
    finally:
        stop.set()
        watch.join(60)
    st = next(iter(bt.runs.values()))
    assert seen_live and st.state == "reduced", st
    assert read_identity(run_dir / "reduced" / st.name / "xrd.nc").get("complete") is None
