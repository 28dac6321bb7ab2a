"""The flow's XRD stage against pyFAI, on one machine, one file, in one run.

For an Eiger2 4M-size (2162 × 2068) and an Eiger 1M-size (1065 × 1030) detector, writes N
uint32 frames of powder rings with Poisson noise (``operando.simulate.diffraction``:
LiFePO4/FePO4 rings, module gaps reading 2**32-1, dead and hot pixels) as NeXus,
bitshuffle-LZ4, one frame per HDF5 chunk (as detectors write), in a temporary folder, and
reads it back from the OS page cache (written just before; a fast parallel file system
behaves alike). Then, in this one process and on that same file:

floor
    read + decompress only, the tuned way: ``read_direct_chunk`` (h5py, serialised) and
    bitshuffle-LZ4 decompression (hdf5plugin's own ``bshuf_decompress_lz4`` through ctypes,
    which releases the GIL) into a reused buffer, on ``--threads`` threads (default: one
    per core). No integration can be faster.
per-frame loop
    what pyFAI-integrate and most scripts do: for each frame, ``h5py`` read +
    ``ai.integrate1d`` (pyFAI's default CSR engine, OpenMP on every core) with the same
    mask, corrections (solid angle, polarisation 0.99), Poisson error model, unit, bins and
    range.
tuned pyFAI
    pyFAI's direct-chunk-read tutorial (Parallelization/Direct_chunk_read): the same
    threaded direct chunk read + decompression feeding ``ai.integrate1d`` with the CSC
    engine (``("bbox", "csc", "cython")``, serial per call, thread-friendly) and Poisson σ,
    one frame per task on ``--threads`` threads, so threads decompress while others
    integrate.
operando, 1 process
    ``pipelines.xrd.integrate_frames`` through a runner without a client: the chunks in this
    process, one after another, each written into ``xrd.nc`` as it finishes (``operando
    reduce --scheduler none``).
operando, cluster
    the same on ``pipelines.cluster.dask_client("local", n_workers=2)`` (2 worker processes,
    one thread each, with the worker memory tuning), what ``operando reduce --scheduler
    local`` runs. "cold" includes building the integrator in each worker (once per geometry
    per process); "warm" reuses it.

Every path writes its patterns to netCDF: the pyFAI paths with xarray
``to_netcdf(engine="h5netcdf")`` at the end, the operando paths chunk by chunk through the
flow's streaming writer (the ``xrd.nc`` product with its provenance). Reported:
frames/s (best of ``--repeats``), CPU ms per frame (user + sys of every process involved:
insensitive to what else runs on the machine), the ratios, and the largest relative
difference of the operando patterns from the per-frame loop over bins with counts.

Usage: python benchmarks/bench_integrate.py [--frames 300] [--quick] [--cases 4M 1M]
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import resource
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

CASES = {  # name: (pyFAI detector, sample-detector distance m)
    "4M": ("Eiger2_4M", 0.5),
    "1M": ("Eiger1M", 0.25),
}
WAVELENGTH_A = 0.2066
N_DISTINCT = 6  # distinct noisy frames, cycled (rendering is not what is measured)
BITSHUFFLE_FILTER = 32008  # HDF5 filter id of bitshuffle
PATHS = ("floor", "loop", "tuned pyFAI", "operando 1 process", "operando cluster cold",
         "operando cluster")


@dataclass
class CaseResult:
    name: str
    n: int
    shape: tuple[int, int]
    mb_per_frame: float = 0.0
    fps: dict[str, float] = field(default_factory=dict)
    cpu_ms: dict[str, float] = field(default_factory=dict)
    max_rel_diff: float = float("nan")


def make_run(folder: Path, detector: str, distance_m: float, n: int) -> tuple[Path, Path, Path]:
    """Write ``n`` frames (NeXus, bitshuffle-LZ4), the PONI and the mask; return their paths."""
    from operando.io.xrd.geometry import write_mask_edf, write_poni
    from operando.io.xrd.nexus import NexusXrdWriter
    from operando.simulate.diffraction import FrameRenderer, make_integrator

    ai = make_integrator(detector, WAVELENGTH_A, distance_m)
    rng = np.random.default_rng(0)
    renderer = FrameRenderer(ai, flux_counts=400.0, background_counts=8.0, n_dead=200,
                             n_hot=20, rng=rng)
    distinct = []
    for k in range(N_DISTINCT):
        f = k / max(1, N_DISTINCT - 1)
        distinct.append(renderer.render({"LiFePO4": 1.0 - f, "FePO4": f}, 0.05, monitor=1.0,
                                        rng=rng))
    poni = write_poni(ai, folder / "geometry.poni")
    mask = write_mask_edf(renderer.mask, folder / "mask.edf")
    path = folder / "frames.h5"
    with NexusXrdWriter(path, frame_shape=renderer.shape, wavelength_A=WAVELENGTH_A,
                        start_time_epoch_s=1.7e9, title="bench_integrate",
                        detector_name=detector, distance_m=distance_m,
                        pixel_size_m=(float(ai.detector.pixel1), float(ai.detector.pixel2)),
                        n_frames_hint=n) as w:
        for i in range(n):
            w.append(distinct[i % N_DISTINCT], timestamp_s=1.7e9 + i, count_time_s=1.0,
                     monitor=1e5)
    return path, poni, mask


# ------------------------------------------------------------------ direct chunk reading


def _bshuf_decompress() -> Callable[..., int]:
    """hdf5plugin's bitshuffle library: ``bshuf_decompress_lz4(in, out, n_elements,
    element_size, block_size_elements)`` (what its HDF5 filter runs; ctypes drops the GIL)."""
    import hdf5plugin

    lib = ctypes.CDLL(os.path.join(os.path.dirname(hdf5plugin.__file__), "plugins",
                                   "libh5bshuf.so"))
    fn = lib.bshuf_decompress_lz4
    fn.restype = ctypes.c_int64
    fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t,
                   ctypes.c_size_t]
    return fn


class DirectChunks:
    """Frames of a one-frame-per-chunk bitshuffle-LZ4 dataset, read with
    ``read_direct_chunk`` and decompressed by hand into a caller's buffer."""

    def __init__(self, path: Path, dataset: str) -> None:
        import h5py

        self._file = h5py.File(path, "r")
        self.dset = self._file[dataset]
        plist = self.dset.id.get_create_plist()
        filters = [plist.get_filter(i)[0] for i in range(plist.get_nfilters())]
        if filters != [BITSHUFFLE_FILTER] or self.dset.chunks[0] != 1:
            raise ValueError(f"{path}::{dataset}: expected one frame per chunk, bitshuffle "
                             f"only, found chunks {self.dset.chunks}, filters {filters}")
        self.itemsize = self.dset.dtype.itemsize
        self._lock = threading.Lock()  # h5py serialises its calls anyway
        self._decompress = _bshuf_decompress()

    def read(self, i: int, out: np.ndarray) -> None:
        with self._lock:
            _, raw = self.dset.id.read_direct_chunk((i, 0, 0))
        total = int.from_bytes(raw[:8], "big")  # bitshuffle's header: bytes, block bytes
        block = int.from_bytes(raw[8:12], "big") // self.itemsize
        assert total == out.nbytes, (total, out.nbytes)
        src = ctypes.cast(ctypes.c_char_p(raw), ctypes.c_void_p).value
        if self._decompress(src + 12, out.ctypes.data, out.size, self.itemsize, block) < 0:
            raise ValueError(f"frame {i}: bitshuffle-LZ4 decompression failed")

    def close(self) -> None:
        self._file.close()


# ------------------------------------------------------------------ timing helpers


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _pid() -> int:
    return os.getpid()


def _write_nc(path: Path, radial: np.ndarray, intensity: np.ndarray, sigma: np.ndarray) -> None:
    import xarray as xr

    ds = xr.Dataset(
        {"intensity": (("time", "q"), intensity, {"units": "1", "long_name": "intensity"}),
         "intensity_sigma": (("time", "q"), sigma, {"units": "1", "long_name": "sigma"})},
        coords={"q": ("q", radial, {"units": "1/angstrom", "long_name": "q"})},
    )
    ds.to_netcdf(path, engine="h5netcdf")


def _per_thread_buffer(local: threading.local, shape: tuple[int, ...],
                       dtype: np.dtype) -> np.ndarray:
    buf = getattr(local, "buf", None)
    if buf is None:
        buf = local.buf = np.empty(shape, dtype)
    return buf


# ------------------------------------------------------------------ the paths


def time_floor(chunks: DirectChunks, n: int, threads: int) -> float:
    """Read + decompress every frame on ``threads`` threads (reused buffers); frames/s."""
    local = threading.local()
    shape, dtype = chunks.dset.shape[1:], chunks.dset.dtype

    def one(i: int) -> int:
        buf = _per_thread_buffer(local, shape, dtype)
        chunks.read(i, buf)
        return int(buf[0, 0])

    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as ex:
        list(ex.map(one, range(n)))
    return n / (time.perf_counter() - t0)


def _integrate1d_kwargs(mask: np.ndarray, opts: Any) -> dict[str, Any]:
    return {"unit": opts.unit, "radial_range": opts.radial_range, "mask": mask,
            "polarization_factor": opts.polarization_factor,
            "correctSolidAngle": opts.correct_solid_angle, "error_model": opts.error_model}


def time_loop(frames_path: Path, ai: Any, mask: np.ndarray, opts: Any, n: int,
              out: Path) -> tuple[float, np.ndarray, np.ndarray]:
    """h5py read + ``ai.integrate1d`` (CSR) frame by frame; frames/s, patterns, counts."""
    import h5py

    from operando.io.xrd.nexus import DETECTOR_DATA_PATH

    kw = _integrate1d_kwargs(mask, opts)
    intensity = np.empty((n, opts.npt), np.float32)
    sigma = np.empty((n, opts.npt), np.float32)
    count = np.empty((n, opts.npt))
    t0 = time.perf_counter()
    with h5py.File(frames_path, "r") as f:
        dset = f[DETECTOR_DATA_PATH]
        for i in range(n):
            r = ai.integrate1d(dset[i], opts.npt, method=opts.method, **kw)
            intensity[i], sigma[i], count[i] = r.intensity, r.sigma, r.count
    _write_nc(out, r.radial, intensity, sigma)
    return n / (time.perf_counter() - t0), intensity, count


def time_tuned(chunks: DirectChunks, ai: Any, mask: np.ndarray, opts: Any, n: int,
               threads: int, out: Path) -> float:
    """pyFAI's direct-chunk-read pipeline: threads read + decompress + integrate (CSC)."""
    kw = _integrate1d_kwargs(mask, opts)
    method = ("bbox", "csc", "cython")
    local = threading.local()
    shape, dtype = chunks.dset.shape[1:], chunks.dset.dtype
    intensity = np.empty((n, opts.npt), np.float32)
    sigma = np.empty((n, opts.npt), np.float32)
    radial: list[np.ndarray] = []

    def one(i: int) -> None:
        buf = _per_thread_buffer(local, shape, dtype)
        chunks.read(i, buf)
        r = ai.integrate1d(buf, opts.npt, method=method, **kw)
        intensity[i], sigma[i] = r.intensity, r.sigma
        if i == 0:
            radial.append(r.radial)

    one(0)  # builds the CSC engine once (as the tutorial does before its timing)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as ex:
        list(ex.map(one, range(n)))
    _write_nc(out, radial[0], intensity, sigma)
    return n / (time.perf_counter() - t0)


def time_operando(source: Any, setup: Any, chunk_frames: int, out: Path,
                  client: Any = None) -> tuple[float, np.ndarray]:
    """``integrate_frames`` through a runner (in this process, or on ``client``), each chunk
    written into ``xrd.nc`` as it finishes (the flow's streaming writer)."""
    from operando.io.product_stream import stream_product
    from operando.io.products import read_product
    from operando.xrd.product import FRAME_DIM
    from pipelines.runner import Runner
    from pipelines.xrd import (
        build_xrd_product,
        chunk_rows,
        describe_integrator,
        integrate_frames,
        xrd_placeholders,
    )

    t0 = time.perf_counter()
    workers = 0 if client is None else sum(
        w["nthreads"] for w in client.scheduler_info()["workers"].values())
    runner = Runner(None, "", client=None if client is None else lambda: (client, workers))
    info = runner.run(describe_integrator, setup, stream="xrd", cache=False)
    prod = build_xrd_product(source, source.metadata(), setup, info,
                             **xrd_placeholders(source.n_frames, info, chunk_frames))
    with stream_product(prod.dataset, out, dim=FRAME_DIM, product="xrd",
                        inputs=prod.inputs, extra_attrs=prod.attrs) as nc:
        for res in integrate_frames(source, setup, runner, chunk_frames=chunk_frames):
            nc.write(res.start, res.stop, chunk_rows(res))
    fps = source.n_frames / (time.perf_counter() - t0)
    return fps, read_product(out)["intensity"].values


def _timed(label: str, res: CaseResult, n: int, fn: Callable[[], float],
           cpu: Callable[[], float] = _cpu_s) -> None:
    """Run ``fn`` (returns frames/s); keep the best frames/s and its CPU ms per frame."""
    c0 = cpu()
    fps = fn()
    ms = 1e3 * (cpu() - c0) / n
    if fps > res.fps.get(label, 0.0):
        res.fps[label], res.cpu_ms[label] = fps, ms


def run_case(name: str, n: int, folder: Path, log: Callable[[str], None], repeats: int,
             threads: int) -> CaseResult:
    import pipelines.xrd as px
    from operando.io.xrd.frames import open_frames
    from operando.io.xrd.geometry import read_mask, read_poni
    from operando.io.xrd.nexus import DETECTOR_DATA_PATH
    from operando.xrd.integrate import IntegrationOptions
    from pipelines.cluster import dask_client

    detector, distance = CASES[name]
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    frames_path, poni, mask_path = make_run(folder, detector, distance, n)
    log(f"[{name}] wrote {n} frames in {time.perf_counter() - t0:.1f} s")
    source = open_frames(frames_path)
    opts = IntegrationOptions(unit="q_A^-1", npt=2000, radial_range=(0.3, 4.4),
                              error_model="poisson", polarization_factor=0.99)
    setup = px.IntegratorSetup(poni=poni, mask=mask_path, dark=None, flat=None,
                               frame_shape=source.frame_shape,
                               saturation_value=source.saturation_value, options=opts)
    res = CaseResult(name=name, n=n, shape=tuple(source.frame_shape))
    res.mb_per_frame = frames_path.stat().st_size / n / 1e6
    # at most one sub-batch per chunk, and 8 equal chunks at least: 4 rounds of 2 workers,
    # none left alone with the last chunk (a real run has hundreds of chunks)
    chunk = max(1, min(px.sub_batch_frames(source), -(-n // 8)))
    with open(frames_path, "rb") as fh:  # into the page cache, for every measurement alike
        while fh.read(1 << 24):
            pass
    ai = read_poni(poni)
    mask = read_mask(mask_path).astype(bool) | (ai.detector.mask != 0)
    chunks = DirectChunks(frames_path, DETECTOR_DATA_PATH)
    try:
        for _ in range(repeats):
            _timed("floor", res, n, lambda: time_floor(chunks, n, threads))
            _timed("tuned pyFAI", res, n, lambda: time_tuned(
                chunks, ai, mask, opts, n, threads, folder / "tuned.nc"))
    finally:
        chunks.close()
    log(f"[{name}] floor {res.fps['floor']:.1f}, tuned pyFAI {res.fps['tuned pyFAI']:.1f} fr/s")
    loop: list[Any] = []

    def loop_run() -> float:
        fps, i, c = time_loop(frames_path, ai, mask, opts, n, folder / "loop.nc")
        loop[:] = [i, c]
        return fps

    _timed("loop", res, n, loop_run)
    log(f"[{name}] per-frame loop {res.fps['loop']:.1f} fr/s")
    out: list[np.ndarray] = []

    def single() -> float:
        fps, i = time_operando(source, setup, chunk, folder / "operando.nc")
        out[:] = [i]
        return fps

    for _ in range(repeats + 1):  # the first builds the integrator in this process
        _timed("operando 1 process", res, n, single)
    px.clear_integrator_cache()
    log(f"[{name}] operando 1 process {res.fps['operando 1 process']:.1f} fr/s")

    with dask_client("local", n_workers=2) as (client, _):
        client.run(_import_all)  # process start-up, not per geometry (as in this process)

        def cluster_cpu() -> float:
            return _cpu_s() + sum(client.run(_cpu_s).values())

        _timed("operando cluster cold", res, n, lambda: time_operando(
            source, setup, chunk, folder / "cluster.nc", client)[0], cluster_cpu)
        for _ in range(repeats):
            _timed("operando cluster", res, n, lambda: time_operando(
                source, setup, chunk, folder / "cluster.nc", client)[0], cluster_cpu)
    log(f"[{name}] operando cluster cold {res.fps['operando cluster cold']:.1f}, warm "
        f"{res.fps['operando cluster']:.1f} fr/s")
    loop_i, loop_count = loop
    has = (loop_count > 0) & np.isfinite(out[0])
    res.max_rel_diff = float(np.max(np.abs(out[0][has] - loop_i[has]) / np.abs(loop_i[has])))
    for p in folder.iterdir():
        p.unlink()
    return res


def _import_all() -> None:
    """Import the integration stack in a worker (process start-up, not per geometry)."""
    import pipelines.xrd  # noqa: F401  (pyFAI, scipy.sparse, the ingest)


def print_table(results: list[CaseResult], threads: int) -> None:
    print()
    print("| detector | path | frames/s | CPU ms/frame | vs tuned pyFAI | vs 1 process |")
    print("|---|---|---|---|---|---|")
    for r in results:
        f = r.fps
        for p in PATHS:
            print(f"| {r.name} {r.shape[0]}x{r.shape[1]}, {r.n} frames, "
                  f"{r.mb_per_frame:.2f} MB/frame | {p} | {f[p]:.1f} | {r.cpu_ms[p]:.0f} | "
                  f"{f[p] / f['tuned pyFAI']:.2f}x | {f[p] / f['operando 1 process']:.2f}x |")
    print()
    for r in results:
        f = r.fps
        c = f["operando cluster"]
        print(f"{r.name}: cluster / 1 process {c / f['operando 1 process']:.2f}x "
              f"(target >= 1.6), cluster / tuned pyFAI {c / f['tuned pyFAI']:.2f}x "
              f"(target >= 2), floor / cluster {f['floor'] / c:.2f}x, "
              f"cluster / loop {c / f['loop']:.1f}x; max rel diff "
              f"operando vs loop {r.max_rel_diff:.1e}; {threads} threads, "
              f"{os.cpu_count()} cores")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\\n\\n")[0])
    ap.add_argument("--frames", type=int, default=None,
                    help="frames per run (default 300; 24 with --quick)")
    ap.add_argument("--quick", action="store_true", help="few frames: a smoke run")
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    ap.add_argument("--repeats", type=int, default=None,
                    help="timed runs per path, best kept (default 2; 1 with --quick)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                    help="threads of the floor and the tuned pyFAI pipeline (default: cores)")
    args = ap.parse_args(argv)
    n = args.frames or (24 if args.quick else 300)
    repeats = args.repeats or (1 if args.quick else 2)

    logging.getLogger("pyFAI").setLevel(logging.ERROR)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    results = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_integrate_") as tmp:
        for name in args.cases:
            results.append(run_case(name, n, Path(tmp) / name, log, repeats, args.threads))
    print_table(results, args.threads)
    print(f"total benchmark time {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
