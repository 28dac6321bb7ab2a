"""Live reduction: a `small` run acquired live (`simulate --live`: cycler rows, trigger
pulses, SWMR frames, XANES scans and confocal points written as they end) and followed
(`reduce --follow`) to its end: every product written while the run lasts says complete = 0
with what it covers and is never taken as fresh; the live report page shows the XANES and
confocal figures marked live and reloads itself; the closed files equal the offline
simulation and the final products its offline reduction, for every stream."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401  (reads the compressed frames)
import numpy as np
import pytest
import xarray as xr
from prefect import flow

from operando.config import PeaksSection, load_config
from operando.io.cache import read_identity
from operando.simulate.beamtime import peaks_section
from pipelines.cache import COVERED_ATTRS, plan_run
from pipelines.follow import FollowOptions, follow_run
from pipelines.reduce import reduce_run

PRODUCTS = ("echem", "xrd", "peaks", "confocal", "xanes")
STREAMS = ("xrd", "xanes", "confocal")
#: a cheaper `small` run: 4C and 200 s rests (1984 s: 66 frames, 61 scans of 150 energies), a
#: confocal point every 20 s (98 points) and no energy-dispersive copy
OVERRIDES = {"echem": {"c_rate_per_h": 4.0, "rest_s": 200.0}, "xanes": {"n_points": 150},
             "confocal": {"point_time_s": 20.0, "energy_dispersive": False}}


@flow(name="operando-test-warm-up")
def _warm_up() -> None:
    """Nothing: running it starts Prefect's temporary server (once per process, ~10 s; at
    once when an earlier test started it), so the first live pass does not spend the run's
    first seconds on it."""


def _cheap(cfg, output: Path | None = None):
    """The run's config with one peak window (w200: the fits ~10x cheaper), for the XRD and
    the confocal patterns alike; ``output``: another output folder."""
    peaks = PeaksSection.model_validate(peaks_section(0.2066, windows_q={"w200": (1.1, 1.4)}))
    update: dict = {"peaks": peaks}
    if output is not None:
        update["output"] = cfg.output.model_copy(update={"directory": output})
    return cfg.model_copy(update=update)


def _h5_tree(path: Path) -> dict:
    """Every group, dataset (type, shape, values), link and attribute of an HDF5 file (the
    root's ``file_time`` left out: when it was written)."""
    out: dict = {}

    def attrs(o) -> dict:
        return {k: np.asarray(v).tolist() for k, v in o.attrs.items() if k != "file_time"}

    def walk(g, pre: str) -> None:
        for name in g:
            link, p = g.get(name, getlink=True), f"{pre}/{name}"
            if isinstance(link, (h5py.SoftLink, h5py.ExternalLink)):
                out[p] = (type(link).__name__, getattr(link, "filename", ""), link.path)
                continue
            o = g[name]
            if isinstance(o, h5py.Group):
                out[p] = ("group", attrs(o))
                walk(o, p)
            else:
                v = o[()]
                out[p] = (str(o.dtype), o.shape,
                          v.tobytes() if isinstance(v, np.ndarray) else v, attrs(o))

    with h5py.File(path, "r") as f:
        out["/"] = attrs(f)
        walk(f, "")
    return out


def _same(a: xr.Dataset, b: xr.Dataset, name: str, folders: tuple[Path, Path]) -> None:
    """Every variable and coordinate of two products equal: numbers within 1e-9 (relative),
    text with the two run folders named alike."""
    assert set(a.variables) == set(b.variables), name
    for v in b.variables:
        x, y = a[v].values, b[v].values
        if x.dtype.kind == "f":
            np.testing.assert_allclose(x, y, rtol=1e-9, atol=1e-12, err_msg=f"{name}.{v}")
        elif x.dtype.kind in "OUS":
            def norm(s):
                return np.array([str(t).replace(str(folders[0]), "<run>").replace(
                    str(folders[1]), "<run>") for t in np.ravel(s)])
            np.testing.assert_array_equal(norm(x), norm(y), err_msg=f"{name}.{v}")
        else:
            np.testing.assert_array_equal(x, y, err_msg=f"{name}.{v}")
    clock = {k: v for k, v in b.attrs.items() if k.startswith("clock_")}
    for k, v in clock.items():  # the sync: the same clock model
        if isinstance(v, (float, np.floating)):
            assert abs(float(a.attrs[k]) - float(v)) <= 1e-9 * max(1.0, abs(float(v))), k


def test_followed_live_run_equals_offline(tmp_path: Path) -> None:
    from operando.simulate.live import simulate_live

    run_dir, offline = tmp_path / "live", tmp_path / "offline"
    _warm_up()  # (before the run starts: its live passes come while it is acquired)
    sim = threading.Thread(target=simulate_live, args=(run_dir, "small", 0), kwargs={
        "speed": 150.0, "streams": STREAMS, "overrides": OVERRIDES, "staging": offline},
        daemon=True)
    sim.start()
    deadline = time.time() + 120
    while time.time() < deadline and not (run_dir / "run.yaml").exists():
        time.sleep(0.1)
    cfg = _cheap(load_config(run_dir / "run.yaml"))
    passes: list[tuple[str, dict, int, str]] = []
    pages: list[str] = []

    def on_pass(counts, res) -> None:
        for s in res.products:
            if s == "echem":
                continue
            with xr.open_dataset(res.products[s], engine="h5netcdf") as ds:
                n = int(ds.attrs[COVERED_ATTRS[s]])
            passes.append((s, read_identity(res.products[s]),  n,
                           plan_run(cfg, [s]).states[s].status))
        if res.report is not None:
            pages.append(res.report.read_text(encoding="utf-8"))

    final = follow_run(cfg, run_dir, FollowOptions(quiet_s=30.0, tick_s=0.3,
                                                   scheduler="none"), on_pass=on_pass)
    sim.join(60)
    assert not sim.is_alive() and (run_dir / "END").exists()
    assert not final.failed, final.failed
    # every live product: incomplete, never fresh; each stream covered part of the run once
    totals = {}
    for s in PRODUCTS[1:]:
        with xr.open_dataset(final.products[s], engine="h5netcdf") as ds:
            assert "complete" not in ds.attrs and COVERED_ATTRS[s] not in ds.attrs
            totals[s] = int(ds.sizes["frame"] if s in ("xrd", "peaks") else
                            ds.sizes["scan"] if s == "xanes" else
                            (ds["point_status"].values == 0).sum())
    assert {s for s, *_ in passes} == set(PRODUCTS[1:]), passes
    for s, ident, n, status in passes:
        assert ident["complete"] is False and status == "incomplete", (s, status)
        assert 0 < n <= totals[s], (s, n, totals[s])
    for s in PRODUCTS[1:]:
        assert min(n for t, _, n, _ in passes if t == s) < totals[s], s
    # the live page: the XANES and confocal figures, marked live; it reloads itself
    live_page = next(p for p in pages if "xanes.png" in p and "confocal.png" in p)
    assert 'http-equiv="refresh"' in live_page and "Live run" in live_page
    assert "xanes: " in live_page and "of ? scans" in live_page and "of ? points" in live_page
    page = final.report.read_text(encoding="utf-8")
    assert 'http-equiv="refresh"' not in page and "Live run" not in page
    assert 'src="xanes.png"' in page and 'src="confocal.png"' in page
    # the closed files are the offline simulation's
    for f in sorted(offline.rglob("*")):
        rel = f.relative_to(offline)
        if f.suffix == ".h5":
            assert _h5_tree(run_dir / rel) == _h5_tree(f), rel
        elif f.suffix in (".mpt", ".txt", ".xdi", ".poni", ".edf", ".json"):
            assert (run_dir / rel).read_bytes() == f.read_bytes(), rel
    # the final products are its offline reduction's (no report needed)
    off = _cheap(load_config(offline / "run.yaml"))
    off = off.model_copy(update={"output": off.output.model_copy(update={"report": False})})
    ref = reduce_run(off, scheduler="none")
    for s in PRODUCTS:
        with xr.open_dataset(final.products[s], engine="h5netcdf") as a, \
                xr.open_dataset(ref.products[s], engine="h5netcdf") as b:
            _same(a, b, s, (run_dir, offline))
    assert plan_run(cfg, PRODUCTS).nothing_to_do


T0 = 1.7e9  # epoch s of the first point of the small files below


def _xas_scan(k: int) -> object:
    from operando.io.timestamps import epoch_to_iso
    from operando.io.xas.hdf5 import XasScan

    e = np.linspace(7100.0, 7200.0, 8)
    t = T0 + 40.0 * k + np.arange(8)
    return XasScan(number=k + 1, title=f"xanes {k + 1}", start_time=epoch_to_iso(t[0] - 0.5),
                   end_time=epoch_to_iso(t[-1] + 0.5),
                   measurement={"energy": e, "I0": 1e5 + e, "It": 1e4 + e, "Iref": 1e3 + e,
                                "epoch": t}, positioners={"sample_x_mm": 1.5})


def test_growing_xanes_file_counts_complete_scans(tmp_path: Path) -> None:
    """A scan counts once its data and end time are written: a started scan (pre-extended
    with zeros, no end_time) is not one, nor an ended one whose epochs are still zero; the
    closed file is the one replayed."""
    from operando.io.live import ScanFileReplay
    from operando.io.xas.hdf5 import read_xas_channels, write_xas_scans

    src, live = tmp_path / "scans.h5", tmp_path / "live.h5"
    write_xas_scans(src, [_xas_scan(0), _xas_scan(1)])
    w = ScanFileReplay(src, live)

    def scans(path: Path = live) -> list[int]:
        return [c.number for c in read_xas_channels(path, swmr=True)]

    assert scans() == []
    w.start("1.1", prefill=True)
    assert scans() == []  # a zero-filled slot without end_time
    assert len(read_xas_channels(live)) == 1  # a reader of a closed file would take it
    w.finish("1.1")
    w.start("2.1", prefill=True)
    assert scans() == [1]
    early = tmp_path / "early.h5"  # a writer that wrote the end time before the data
    early.write_bytes(live.read_bytes())
    with h5py.File(early, "r+") as f:
        f["2.1/end_time"] = f["1.1/end_time"][()]
    assert scans(early) == [1]
    w.finish("2.1")
    assert scans() == [1, 2]
    w.close()
    got = read_xas_channels(live, swmr=True)[1]
    np.testing.assert_array_equal(got.epoch, _xas_scan(1).measurement["epoch"])


def test_growing_confocal_files_count_complete_points(tmp_path: Path) -> None:
    """A confocal point counts once its frame (LIMA file, SWMR) and its counters (master)
    are written — the frame first; MCA spectra with their counters; the closed files are
    the ones replayed."""
    from operando.io.live import ScanFileReplay, SwmrFrameWriter
    from operando.io.xrd.bliss import (
        LIMA_DATA_PATH,
        BlissMcaScan,
        BlissScan,
        lima_file_name,
        write_bliss_master,
        write_bliss_mca_master,
        write_lima_file,
    )
    from operando.io.xrd.confocal import open_confocal_frames, read_confocal_spectra

    src, out = tmp_path / "src", tmp_path / "live"
    src.mkdir()
    sz = np.array([0.01, 0.05, 0.09])
    metas = []
    for k in range(2):
        ep = T0 + 100.0 * k + 10.0 * np.arange(3)
        metas.append(dict(number=k + 1, title="ascan sz", start_epoch_s=ep[0],
                          end_epoch_s=ep[-1] + 6.0, positioners={"sz": (sz, "mm")},
                          counters={"epoch": (ep, "s"), "sz": (sz, "mm"),
                                    "mon": (np.full(3, 1e5), "counts"),
                                    "count_time": (np.full(3, 6.0), "s")}))
        write_lima_file(src / lima_file_name(k + 1, "det"),
                        (np.full((4, 5), 10 * k + i, np.uint32) for i in range(3)),
                        n_frames=3, frame_shape=(4, 5), detector="det")
    write_bliss_master(src / "confocal.h5", [
        BlissScan(**m, n_points=3, frame_shape=(4, 5), lima_file=lima_file_name(m["number"],
                                                                              "det"))
        for m in metas], detector="det")
    rng = np.random.default_rng(0)
    write_bliss_mca_master(src / "ed.h5", [
        BlissMcaScan(**m, spectra=rng.poisson(50, (3, 16)), calibration_keV=(0.0, 1.0, 0.0),
                     two_theta_deg=6.0) for m in metas], detector="mca")
    kw = dict(depth_path="instrument/positioners/sz", depth_unit="mm",
              epoch_path="measurement/epoch", count_time_path="measurement/count_time",
              monitor_path="measurement/mon", swmr=True)
    master = ScanFileReplay(src / "confocal.h5", out / "confocal.h5")
    ed = ScanFileReplay(src / "ed.h5", out / "ed.h5", per_point=(
        "measurement", "instrument/positioners", "instrument/mca/data"))

    def points() -> tuple[int, int]:
        try:
            n_ad = open_confocal_frames([out / "confocal.h5"], detector_path="instrument/det/"
                                        "data", **kw)[1].n_points
        except ValueError:  # no entry yet
            n_ad = 0
        try:
            n_ed = read_confocal_spectra([out / "ed.h5"], spectrum_path="instrument/mca/data",
                                         energy_calibration_path="instrument/mca/calibration",
                                         two_theta_path="instrument/mca/two_theta",
                                         **kw)[3].n_points
        except ValueError:
            n_ed = 0
        return n_ad, n_ed

    assert points() == (0, 0)
    seen = []
    for m in metas:
        name, lima = f"{m['number']}.1", lima_file_name(m["number"], "det")
        frames = SwmrFrameWriter(src / lima, out / lima, LIMA_DATA_PATH)
        for i in range(3):
            frames.append()
            if i:  # the frame is there, its time not yet: not a point
                seen.append(points())
            if i < 2:
                master.grow(name, i + 1)
                ed.grow(name, i + 1)
            else:
                master.finish(name)
                ed.finish(name)
            seen.append(points())
        frames.close()
    assert seen == [(1, 1), (1, 1), (2, 2), (2, 2), (3, 3), (4, 4), (4, 4), (5, 5), (5, 5),
                    (6, 6)]
    master.close()
    ed.close()
    for f in sorted(src.rglob("*.h5")):
        assert _h5_tree(out / f.relative_to(src)) == _h5_tree(f), f
    source, _ = open_confocal_frames([out / "confocal.h5"], detector_path="instrument/det/"
                                       "data", **{**kw, "swmr": False})
    np.testing.assert_array_equal(source.read(0, 6)[:, 0, 0], [0, 1, 2, 10, 11, 12])


def test_live_figure_titles_say_what_they_cover() -> None:
    """A live product's marker ('live: 12 of ? scans'), put in its figure's title in place
    of '(live)'; none for a complete product."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from operando.report.live import LIVE_TAG, live_marker, retitle

    assert live_marker({"complete": np.int8(0), "scans_covered": 12}) == "live: 12 of ? scans"
    assert live_marker({"scans_covered": 12}) == "" == live_marker({"complete": 1})
    fig = Figure()
    fig.suptitle(f"run ({LIVE_TAG}): XANES")
    fig.add_subplot().set_title(f"run ({LIVE_TAG})")
    retitle(fig, f"({LIVE_TAG})", "(live: 12 of ? scans)")
    assert fig.get_suptitle() == "run (live: 12 of ? scans): XANES"
    assert fig.axes[0].get_title() == "run (live: 12 of ? scans)"


def test_live_product_is_never_fresh(small_run, tmp_path: Path) -> None:
    """A product written inside live_products is incomplete, whatever else matches: echem
    and a XANES product covering the run's scans, recomputed by the next reduce."""
    from pipelines.cache import live_products, product_state

    cfg = load_config(small_run.run_config_path)
    cfg = cfg.model_copy(update={"output": cfg.output.model_copy(
        update={"directory": tmp_path, "overwrite": True})})
    with live_products():
        reduce_run(cfg, only=["echem", "xanes"], scheduler="none")
    for s, items in (("echem", "echem_time"), ("xanes", "scan")):
        st = product_state(cfg, s)
        assert st.status == "incomplete", st
        with xr.open_dataset(cfg.product_dir / f"{s}.nc", engine="h5netcdf") as ds:
            assert int(ds.attrs["complete"]) == 0
            assert int(ds.attrs[COVERED_ATTRS[s]]) == ds.sizes[items] > 0
    assert plan_run(cfg, ["echem", "xanes"]).compute == {
        s: "incomplete: complete = false (a live run)" for s in ("echem", "xanes")}


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
            if states and states[0].live_items:
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
