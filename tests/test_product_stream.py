"""Products written chunk by chunk (O8 item 3): operando.io.product_stream.

* a streamed product (NetCDF4 and a Zarr group of run.zarr, blocks out of order) reads back
  identical to the same Dataset written at once by write_product;
* a stream that ends with rows missing, or with an error, leaves no product and keeps the
  earlier one intact (no half-written file under the final name);
* integrating and writing a run chunk by chunk holds memory bounded by the chunk: the peak
  of traced allocations (numpy reports to tracemalloc) for 4N frames stays within 10 % of N.
"""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import dask.array
import numpy as np
import pytest
import xarray as xr

from operando.io.product_stream import stream_product
from operando.io.products import product_path, read_product, write_product

N, NQ, NCHI = 10, 7, 3


def _dataset(rng: np.random.Generator, lazy: bool) -> tuple[xr.Dataset, dict[str, np.ndarray]]:
    rows = {"intensity": rng.random((N, NQ)).astype("f4"),
            "cake": rng.random((N, NCHI, NQ)).astype("f4"),
            "n_invalid": np.arange(N, dtype=np.int64)}
    rows["intensity"][2, 3] = np.nan  # NaN survives as a value, not as "unwritten"

    def data(name: str) -> object:
        a = rows[name]
        return dask.array.empty(a.shape, a.dtype, chunks=(4, *a.shape[1:])) if lazy else a

    cf = {"units": "1", "long_name": "x"}
    ds = xr.Dataset(
        {"intensity": (("frame", "q"), data("intensity"), cf),
         "cake": (("frame", "chi", "q"), data("cake"), cf),
         "background": (("q",), np.ones(NQ), cf)},
        coords={"q": ("q", np.linspace(1, 2, NQ), {"units": "1/Å", "long_name": "q"}),
                "chi": ("chi", np.arange(NCHI) * 5.0, {"units": "degree", "long_name": "χ"}),
                "frame_index": ("frame", np.arange(N), cf),
                "n_invalid": ("frame", data("n_invalid"), cf),
                "time": ("frame", np.arange(N) * 2.0, {"units": "s", "long_name": "t"})},
        attrs={"note": "test"})
    return ds, rows


@pytest.mark.parametrize("fmt", ["netcdf", "zarr"])
def test_streamed_product_equals_written_at_once(tmp_path: Path, fmt: str) -> None:
    rng = np.random.default_rng(0)
    ds, rows = _dataset(rng, lazy=False)
    lazy, _ = _dataset(np.random.default_rng(0), lazy=True)
    ref = write_product(ds, product_path(tmp_path / "ref", "xrd", fmt), product="xrd",
                        fmt=fmt)
    out = product_path(tmp_path / "run", "xrd", fmt)
    with stream_product(lazy, out, dim="frame", product="xrd", fmt=fmt) as w:
        for a in (4, 8, 0):  # in any order
            w.write(a, min(N, a + 4), {k: v[a:a + 4] for k, v in rows.items()})
        assert not out.exists()  # nothing under the final name until the end
    got, want = read_product(out), read_product(ref)
    for d in (got, want):
        d.attrs.pop("created_utc")
    xr.testing.assert_identical(got, want)
    assert "n_invalid" in got.coords and np.isnan(got["intensity"].values[2, 3])


@pytest.mark.parametrize("fmt", ["netcdf", "zarr"])
def test_incomplete_or_failed_stream_keeps_the_earlier_product(tmp_path: Path,
                                                               fmt: str) -> None:
    ds, rows = _dataset(np.random.default_rng(1), lazy=False)
    out = product_path(tmp_path, "xrd", fmt)
    write_product(ds, out, product="xrd", fmt=fmt)
    before = read_product(out)
    lazy, _ = _dataset(np.random.default_rng(2), lazy=True)
    with pytest.raises(ValueError, match=r"6 of 10 rows .* never written \(first: 4\)"):
        with stream_product(lazy, out, dim="frame", product="xrd", fmt=fmt) as w:
            w.write(0, 4, {k: v[:4] for k, v in rows.items()})
    with pytest.raises(RuntimeError, match="worker died"):
        with stream_product(lazy, out, dim="frame", product="xrd", fmt=fmt) as w:
            w.write(0, 4, {k: v[:4] for k, v in rows.items()})
            raise RuntimeError("worker died")
    xr.testing.assert_identical(read_product(out), before)
    leftovers = [p.name for p in out.parent.rglob("*.part")]
    assert leftovers == [], leftovers


def test_stream_refuses_a_block_without_every_variable(tmp_path: Path) -> None:
    lazy, rows = _dataset(np.random.default_rng(3), lazy=True)
    with pytest.raises(ValueError, match=r"block 0:4 lacks \['cake'\]"):
        with stream_product(lazy, tmp_path / "xrd.nc", dim="frame", product="xrd") as w:
            w.write(0, 4, {"intensity": rows["intensity"][:4],
                           "n_invalid": rows["n_invalid"][:4]})
    assert not (tmp_path / "xrd.nc").exists()


def _frames(src: Path, out: Path, n: int) -> Path:
    """``n`` frames cycled from the simulated NeXus file ``src`` into ``out``."""
    import h5py

    from operando.io.xrd.nexus import NexusXrdWriter

    with h5py.File(src, "r") as f:
        frames = f["entry/data/data"][:8]
    with NexusXrdWriter(out, frame_shape=frames.shape[1:], wavelength_A=0.2066,
                        start_time_epoch_s=1.7e9, title="t", n_frames_hint=n) as w:
        for i in range(n):
            w.append(frames[i % len(frames)], timestamp_s=1.7e9 + i, count_time_s=1.0,
                     monitor=1e5)
    return out


def test_integrate_and_stream_memory_is_bounded_by_the_chunk(small_run, tmp_path) -> None:
    """Traced peak of integrating + writing N and 4N frames with a cake, chunks of 10."""
    import pipelines.xrd as px
    from operando.io.xrd.frames import open_frames
    from operando.xrd.integrate import IntegrationOptions
    from operando.xrd.product import FRAME_DIM

    raw = small_run.outdir / "xrd"
    peaks = {}
    for n in (30, 120):
        src = open_frames(_frames(raw / "xrd_0001.h5", tmp_path / f"f{n}.h5", n))
        setup = px.IntegratorSetup(
            poni=raw / "geometry.poni", mask=raw / "mask.edf", dark=None, flat=None,
            frame_shape=src.frame_shape, saturation_value=src.saturation_value,
            options=IntegrationOptions(unit="q_A^-1", npt=1000, npt_azimuthal=72))
        info = px.describe_integrator(setup)  # built before tracing (per process, cached)
        tracemalloc.start()
        prod = px.build_xrd_product(src, src.metadata(), setup, info,
                                    **px.xrd_placeholders(n, info, 10))
        with stream_product(prod.dataset, tmp_path / f"xrd{n}.nc", dim=FRAME_DIM,
                            product="xrd", inputs=prod.inputs, extra_attrs=prod.attrs) as w:
            for res in px.integrate_frames(src, setup, chunk_frames=10):
                w.write(res.start, res.stop, px.chunk_rows(res))
        peaks[n] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        got = read_product(tmp_path / f"xrd{n}.nc")
        assert got.sizes["frame"] == n and np.isfinite(got["cake"].values).any()
    # a whole-run flow holds 4 × the cake (~16 MB more); chunk-bounded stays the same
    assert peaks[120] <= 1.1 * peaks[30], peaks
