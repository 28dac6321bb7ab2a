"""End-to-end speed and memory of the batch azimuthal integration against a per-frame loop.

For an Eiger2 4M-size (2162 × 2068) and an Eiger 1M-size (1065 × 1030) detector, writes N
uint32 frames of powder rings with Poisson noise (``operando.simulate.diffraction``:
LiFePO4/FePO4 rings, module gaps reading 2**32-1, dead and hot pixels) as NeXus,
bitshuffle-LZ4, one frame per HDF5 chunk (as detectors write), in a temporary folder.
Then, in this one process and on the same files:

floor
    reading and decompressing the frames alone, on the same Dask cluster (2 worker
    processes, one chunk of frames per task, the same sub-batches as the operando path):
    the best any integration can do.
per-frame loop
    what pyFAI-integrate and the ESRF workflows do: for each frame, ``h5py`` read +
    ``ai.integrate1d`` (CSR, cython, OpenMP on both cores) with the same mask, corrections
    (solid angle, polarisation 0.99), Poisson error model, unit, bins and range; patterns
    written with xarray ``to_netcdf(engine="h5netcdf")``.
operando
    ``pipelines.xrd.integrate_frames`` on ``LocalCluster(n_workers=2, threads_per_worker=1,
    processes=True)`` (created once) + the same netCDF write. "cold" includes building the
    integrator in each worker (once per geometry per process; the imports are done at
    worker start, as in the loop's process); "warm" reuses it.

Reported: frames/s, ratios, peak worker RSS (sampled with psutil, else ``ru_maxrss``)
during warm runs of N and 4N frames (4N: the same file hard-linked four times), and the
largest relative difference operando vs loop over bins with counts.

The frames are read back from the OS page cache (written just before): the floor is
decompression-bound, as on a fast parallel file system.

Usage: python benchmarks/bench_integrate.py [--frames 300] [--quick] [--cases 4M 1M]
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

CASES = {  # name: (pyFAI detector, sample-detector distance m)
    "4M": ("Eiger2_4M", 0.5),
    "1M": ("Eiger1M", 0.25),
}
WAVELENGTH_A = 0.2066
N_DISTINCT = 6  # distinct noisy frames, cycled (rendering is not what is measured)


@dataclass
class CaseResult:
    name: str
    n: int
    shape: tuple[int, int]
    mb_per_frame: float = 0.0
    fps: dict[str, float] = field(default_factory=dict)
    rss_mb: dict[str, float] = field(default_factory=dict)
    max_rel_diff: float = float("nan")
    build_s: float = float("nan")


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


def _floor_chunk(source, start: int, stop: int, step: int) -> int:  # type: ignore[no-untyped-def]
    total = 0
    for a in range(start, stop, step):
        x = source.read(a, min(stop, a + step))
        total += int(x[:, 0, 0].astype(np.int64).sum())
    return total


def _import_all() -> None:
    """Import the integration stack in a worker (process start-up, not per geometry)."""
    import pipelines.xrd  # noqa: F401  (pyFAI, scipy.sparse, the ingest)


def _pid() -> int:
    return os.getpid()


def _max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class RssSampler:
    """Peak resident memory (MB) of the worker processes while a block runs.

    psutil samples every 20 ms when installed; otherwise the workers' ``ru_maxrss``
    (their lifetime peak) is read at the end.
    """

    def __init__(self, client) -> None:  # type: ignore[no-untyped-def]
        self.client = client
        self.peak = 0.0
        self._stop = False

    def __enter__(self) -> RssSampler:
        import threading

        try:
            import psutil
        except ImportError:
            self._thread = None
            return self
        procs = [psutil.Process(pid) for pid in self.client.run(_pid).values()]

        def sample() -> None:
            while not self._stop:
                rss = 0.0
                for p in procs:
                    rss = max(rss, p.memory_info().rss / 2**20)
                self.peak = max(self.peak, rss)
                time.sleep(0.02)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop = True
        if self._thread is None:
            self.peak = max(self.client.run(_max_rss_mb).values())
        else:
            self._thread.join()


def _write_nc(path: Path, radial: np.ndarray, intensity: np.ndarray, sigma: np.ndarray) -> None:
    import xarray as xr

    ds = xr.Dataset(
        {"intensity": (("time", "q"), intensity), "intensity_sigma": (("time", "q"), sigma)},
        coords={"q": ("q", radial, {"units": "1/angstrom"})},
    )
    ds.to_netcdf(path, engine="h5netcdf")


def time_floor(client, source, chunk_frames: int) -> float:  # type: ignore[no-untyped-def]
    from pipelines.xrd import sub_batch_frames

    step = sub_batch_frames(source)
    t0 = time.perf_counter()
    futs = [client.submit(_floor_chunk, source, a, b, step, pure=False)
            for a, b in source.chunks(chunk_frames)]
    client.gather(futs)
    return source.n_frames / (time.perf_counter() - t0)


def time_operando(client, source, setup, chunk_frames: int,  # type: ignore[no-untyped-def]
                  out: Path) -> tuple[float, np.ndarray]:
    from pipelines.xrd import describe_integrator, integrate_frames

    t0 = time.perf_counter()
    res = integrate_frames(source, setup, client=client, chunk_frames=chunk_frames)
    radial = client.submit(describe_integrator, setup, pure=False).result().radial
    intensity = np.concatenate([r.intensity for r in res])
    sigma = np.concatenate([r.sigma for r in res])
    _write_nc(out, radial, intensity, sigma)
    return source.n_frames / (time.perf_counter() - t0), intensity


def time_loop(frames_path: Path, poni: Path, mask_path: Path, opts, n: int,  # type: ignore[no-untyped-def]
              out: Path) -> tuple[float, np.ndarray, np.ndarray]:
    import h5py
    import hdf5plugin  # noqa: F401

    from operando.io.xrd.geometry import read_mask, read_poni
    from operando.io.xrd.nexus import DETECTOR_DATA_PATH

    t0 = time.perf_counter()
    ai = read_poni(poni)
    mask = read_mask(mask_path).astype(bool) | (ai.detector.mask != 0)
    intensity = np.empty((n, opts.npt), np.float32)
    sigma = np.empty((n, opts.npt), np.float32)
    count = np.empty((n, opts.npt))
    with h5py.File(frames_path, "r") as f:
        dset = f[DETECTOR_DATA_PATH]
        for i in range(n):
            r = ai.integrate1d(dset[i], opts.npt, unit=opts.unit, radial_range=opts.radial_range,
                               mask=mask, polarization_factor=opts.polarization_factor,
                               correctSolidAngle=opts.correct_solid_angle,
                               error_model=opts.error_model, method=opts.method)
            intensity[i], sigma[i], count[i] = r.intensity, r.sigma, r.count
    _write_nc(out, r.radial, intensity, sigma)
    return n / (time.perf_counter() - t0), intensity, count


def run_case(name: str, n: int, client, folder: Path, log,  # type: ignore[no-untyped-def]
             repeats: int = 2) -> CaseResult:
    import pipelines.xrd as px
    from operando.io.xrd.frames import open_frames
    from operando.xrd.integrate import IntegrationOptions

    detector, distance = CASES[name]
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    frames_path, poni, mask = make_run(folder, detector, distance, n)
    links = [frames_path]
    for k in range(1, 4):  # 4N frames without 4x the disk: hard links to the same file
        link = folder / f"frames_{k}.h5"
        os.link(frames_path, link)
        links.append(link)
    log(f"[{name}] wrote {n} frames in {time.perf_counter() - t0:.1f} s")
    source = open_frames(frames_path)
    source4 = open_frames(links)
    assert source4.n_frames == 4 * n
    opts = IntegrationOptions(unit="q_A^-1", npt=2000, radial_range=(0.3, 4.4),
                              error_model="poisson", polarization_factor=0.99)
    setup = px.IntegratorSetup(poni=poni, mask=mask, dark=None, flat=None,
                               frame_shape=source.frame_shape,
                               saturation_value=source.saturation_value, options=opts)
    res = CaseResult(name=name, n=n, shape=tuple(source.frame_shape))
    res.mb_per_frame = frames_path.stat().st_size / n / 1e6
    # chunks of whole sub-batches, at least 4 chunks so both workers stay busy
    chunk = max(1, min(2 * px.sub_batch_frames(source), -(-n // 4)))

    with open(frames_path, "rb") as fh:  # into the page cache, for every measurement alike
        while fh.read(1 << 24):
            pass
    floor = [time_floor(client, source, chunk) for _ in range(repeats + 1)]
    log(f"[{name}] floor {floor} frames/s")

    fps_loop, loop_i, loop_count = time_loop(frames_path, poni, mask, opts, n,
                                             folder / "loop.nc")
    res.fps["loop"] = fps_loop
    log(f"[{name}] per-frame loop {fps_loop:.1f} frames/s")

    # cold: the first run in these workers builds the integrator (once per geometry)
    fps_cold, op_i = time_operando(client, source, setup, chunk, folder / "operando.nc")
    warm = []
    with RssSampler(client) as mem:
        for _ in range(repeats):
            warm.append(time_operando(client, source, setup, chunk, folder / "operando.nc")[0])
    res.rss_mb["N"] = mem.peak
    res.fps["operando cold"] = fps_cold
    res.fps["operando warm"] = max(warm)
    res.build_s = n / fps_cold - n / max(warm)
    log(f"[{name}] operando cold {fps_cold:.1f}, warm {warm} frames/s")

    again = [time_floor(client, source, chunk) for _ in range(repeats)]
    res.fps["floor"] = max(floor + again)
    log(f"[{name}] floor again: {again} frames/s")

    has = (loop_count > 0) & np.isfinite(op_i)
    res.max_rel_diff = float(np.max(np.abs(op_i[has] - loop_i[has]) / np.abs(loop_i[has])))

    with RssSampler(client) as mem:
        time_operando(client, source4, setup, chunk, folder / "operando4.nc")
    res.rss_mb["4N"] = mem.peak
    log(f"[{name}] worker peak RSS N {res.rss_mb['N']:.0f} MB, 4N {res.rss_mb['4N']:.0f} MB")
    client.run(px.clear_integrator_cache)
    for p in folder.iterdir():
        p.unlink()
    return res


def print_table(results: list[CaseResult]) -> None:
    print()
    print("| detector | frames | MB/frame (LZ4) | floor fr/s | per-frame loop fr/s | operando "
          "cold fr/s | operando warm fr/s | warm / loop | floor / warm | cold / loop | "
          "floor / cold | cold - warm s (builds) | worker RSS N / 4N (MB) | max rel diff |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        f = r.fps
        print(f"| {r.name} {r.shape[0]}x{r.shape[1]} | {r.n} | {r.mb_per_frame:.2f} | "
              f"{f['floor']:.1f} | {f['loop']:.1f} | {f['operando cold']:.1f} | "
              f"{f['operando warm']:.1f} | {f['operando warm'] / f['loop']:.1f}x | "
              f"{f['floor'] / f['operando warm']:.2f}x | {f['operando cold'] / f['loop']:.1f}x | "
              f"{f['floor'] / f['operando cold']:.2f}x | {r.build_s:.1f} | "
              f"{r.rss_mb['N']:.0f} / {r.rss_mb['4N']:.0f} | {r.max_rel_diff:.1e} |")
    print()
    print("Targets (4M): operando >= 3x the per-frame loop, floor / operando <= 4; "
          "peak memory for 4N about that for N.")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=None,
                    help="frames per run (default 300; 24 with --quick)")
    ap.add_argument("--quick", action="store_true", help="few frames: a smoke run (< 1 min)")
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    args = ap.parse_args(argv)
    n = args.frames or (24 if args.quick else 300)

    logging.getLogger("pyFAI").setLevel(logging.ERROR)
    from distributed import Client, LocalCluster

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    results = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_integrate_") as tmp, \
            LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                         dashboard_address=None) as cluster, Client(cluster) as client:
        client.run(_import_all)  # the loop's process has imported pyFAI too
        for name in args.cases:
            results.append(run_case(name, n, client, Path(tmp) / name, log,
                                    repeats=1 if args.quick else 2))
    print_table(results)
    print(f"total benchmark time {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
