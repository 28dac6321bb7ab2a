"""Opening a reduced run: ``operando.open_run`` (one lazy DataTree) against reading every
product eagerly, and the NetCDF folder against the same run as one ``run.zarr`` store.

On one reduced run (``--run reduced/<run>/`` holding the NetCDF products; without it the
``small`` preset is simulated and reduced into a temporary folder first, ~1.5 min), the
Zarr copy is written with ``write_product(fmt="zarr")`` beside it. Then, in this one
process and on those same files (warm page cache, best of ``--repeats``):

open, eager
    what a script without operando does: ``xr.open_dataset(f).load()`` of every product.
open_run, lazy
    ``operando.open_run(folder)``: the tree, nothing read but metadata and indexes.
one pattern
    one frame of ``xrd.intensity`` read through the lazy tree (``.isel(frame=k).values``).
open_run + load
    the lazy tree then ``.load()`` of every group (the same bytes as the eager read).

Reported: wall ms (best of the untraced runs), Python heap peak (one run under tracemalloc;
numpy's buffers are traced) in MiB, each as a ratio to the eager read of the NetCDF files;
disk bytes of the two layouts.

Usage: python benchmarks/bench_open_run.py [--run PRODUCT_DIR] [--repeats 5]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import xarray as xr

import operando
from operando.io.products import product_path, read_product, write_product
from operando.io.run import PRODUCTS


def _measure(fn: Callable[[], Any], repeats: int) -> tuple[float, float]:
    """(best wall ms of ``repeats`` untraced runs, heap peak MiB of one traced run) of
    ``fn`` (tracemalloc slows Python down several-fold: never timed with it on)."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
        if hasattr(out, "close"):
            out.close()
        del out
    tracemalloc.start()
    out = fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    if hasattr(out, "close"):
        out.close()
    return best * 1e3, peak / 2**20


def _du(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _reduced_small(tmp: Path) -> Path:
    from operando.config import load_config
    from operando.simulate.beamtime import simulate_beamtime
    from pipelines.reduce import reduce_run

    run = simulate_beamtime(tmp / "sim", "small", seed=0)
    cfg = load_config(run.run_config_path)
    cfg = cfg.model_copy(update={"output": cfg.output.model_copy(
        update={"directory": tmp / "reduced", "overwrite": True})})
    return reduce_run(cfg, scheduler="none").product_dir


def _zarr_copy(nc_dir: Path, out_dir: Path) -> list[str]:
    names = [p for p in PRODUCTS if (nc_dir / f"{p}.nc").is_file()]
    for name in names:
        ds = read_product(nc_dir / f"{name}.nc")
        write_product(ds, product_path(out_dir, name, "zarr"), product=name, fmt="zarr",
                      extra_attrs={k: v for k, v in ds.attrs.items()
                                   if k.startswith("clock_")})
    return names


def _eager(nc_dir: Path, names: list[str]) -> dict[str, xr.Dataset]:
    out = {}
    for n in names:
        with xr.open_dataset(nc_dir / f"{n}.nc", engine="h5netcdf") as ds:
            out[n] = ds.load()
    return out


def _one_pattern(run_dir: Path) -> Any:
    with operando.open_run(run_dir) as tree:
        x = tree["xrd"]["intensity"]
        return x.isel(frame=x.sizes["frame"] // 2).values


def _load_all(run_dir: Path) -> Any:
    with operando.open_run(run_dir) as tree:
        return tree.load()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", type=Path, default=None, help="a folder of NetCDF products")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-open-run-"))
    try:
        nc_dir = args.run if args.run is not None else _reduced_small(tmp)
        z_dir = tmp / "zarr" / nc_dir.name
        names = _zarr_copy(nc_dir, z_dir)
        rows = [
            ("NetCDF, eager (open_dataset + load, every product)",
             _measure(lambda: _eager(nc_dir, names), args.repeats)),
            ("NetCDF, open_run (lazy)", _measure(lambda: operando.open_run(nc_dir),
                                                 args.repeats)),
            ("NetCDF, open_run + one xrd pattern",
             _measure(lambda: _one_pattern(nc_dir), args.repeats)),
            ("NetCDF, open_run + load every group",
             _measure(lambda: _load_all(nc_dir), args.repeats)),
            ("Zarr, open_run (lazy)", _measure(lambda: operando.open_run(z_dir), args.repeats)),
            ("Zarr, open_run + one xrd pattern",
             _measure(lambda: _one_pattern(z_dir), args.repeats)),
            ("Zarr, open_run + load every group",
             _measure(lambda: _load_all(z_dir), args.repeats)),
        ]
        ref_ms, ref_mib = rows[0][1]
        print(f"run {nc_dir.name}: {', '.join(names)}")
        print(f"{'path':52s} {'ms':>8s} {'× eager':>8s} {'heap MiB':>9s} {'× eager':>8s}")
        for label, (ms, mib) in rows:
            print(f"{label:52s} {ms:8.1f} {ms / ref_ms:8.2f} {mib:9.2f} {mib / ref_mib:8.3f}")
        nc_bytes = sum(_du(nc_dir / f"{n}.nc") for n in names)
        z_bytes = _du(z_dir / "run.zarr")
        print(f"disk: NetCDF {nc_bytes / 2**20:.2f} MiB, run.zarr {z_bytes / 2**20:.2f} MiB "
              f"(× {z_bytes / nc_bytes:.2f})")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
