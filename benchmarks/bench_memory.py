"""Peak resident memory of the reduce flow for N and 4N frames, with and without a 2D cake.

The ``small`` preset's XRD frames (Pilatus 100k size, 195 × 487) are simulated once into a
temporary folder and repeated into NeXus files of N and 4N frames (one frame per second);
each case is a run config with the ``xrd`` and ``peaks`` sections only (no clock: memory is
what is measured), reduced from a clean product folder by ``pipelines.reduce.reduce_run``
in a **fresh process**, on a LocalCluster of 2 worker processes (one thread each: what
``operando reduce --scheduler local`` starts; the scheduler lives in the flow process, as in
``operando reduce``) or in the flow process alone (``--scheduler none``).

Reported per case: the peak resident set size (``getrusage(RUSAGE_SELF).ru_maxrss``) of the
flow process and of each worker (asked with ``Client.run`` after the reduce), the size of
``xrd.nc``, and the 4N / N ratio of each peak: a flow whose memory is bounded by the chunk
gives ratios near 1.00 (the goal: within ±10 %), one that holds the whole run gives ratios
that grow with the frames.

Usage: python benchmarks/bench_memory.py [--frames 300] [--chunk 100] [--schedulers local none]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml

#: the flow process of one case: reduce, then report the peaks as one JSON line
_CASE = r"""
import json, resource, sys
from pathlib import Path
config, scheduler = sys.argv[1], sys.argv[2]
from pipelines.reduce import reduce_run

def peak_mib():
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

workers = []
if scheduler == "local":
    from distributed import Client, LocalCluster
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster:
        reduce_run(config, scheduler=cluster.scheduler_address, overwrite=True)
        with Client(cluster) as client:
            workers = sorted(client.run(peak_mib).values())
else:
    reduce_run(config, scheduler="none", overwrite=True)
print(json.dumps({"flow": peak_mib(), "workers": workers}))
"""


def make_frames(src: Path, out: Path, n: int) -> Path:
    """``n`` frames cycled from the simulated file ``src`` into a new NeXus file ``out``."""
    import h5py

    from operando.io.xrd.nexus import NexusXrdWriter

    with h5py.File(src, "r") as f:
        frames = f["entry/data/data"][()]
        det = f["entry/instrument/detector"]
        distance = float(det["distance"][()])
        pixel = (float(det["y_pixel_size"][()]), float(det["x_pixel_size"][()]))
        wavelength = float(f["entry/instrument/monochromator/wavelength"][()])
    with NexusXrdWriter(out, frame_shape=frames.shape[1:], wavelength_A=wavelength,
                        start_time_epoch_s=1.7e9, title="bench_memory",
                        detector_name="Pilatus100k", distance_m=distance, pixel_size_m=pixel,
                        n_frames_hint=n) as w:
        for i in range(n):
            w.append(frames[i % len(frames)], timestamp_s=1.7e9 + i, count_time_s=0.5,
                     monitor=1e5)
    return out


def make_config(sim: Path, frames: Path, name: str, cake: bool, chunk: int) -> Path:
    """A run config beside the simulated one: its ``xrd`` (these frames) and ``peaks``."""
    data = yaml.safe_load((sim / "run.yaml").read_text(encoding="utf-8"))
    for key in ("echem", "sync"):
        data.pop(key, None)
    data["run"]["name"] = name
    data["xrd"]["files"] = [str(frames)]
    data["xrd"]["integration"]["chunk_frames"] = chunk
    data["xrd"]["integration"]["npt_azimuthal"] = 72 if cake else None
    data["peaks"]["chunk_frames"] = chunk
    data["peaks"].pop("vegard", None)
    out = sim / f"{name}.yaml"
    out.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return out


def run_case(config: Path, scheduler: str) -> dict[str, object]:
    """One reduce in a fresh process: its peaks (MiB) and the size of xrd.nc (MiB)."""
    proc = subprocess.run([sys.executable, "-c", _CASE, str(config), scheduler],
                          capture_output=True, text=True, check=False)
    if proc.returncode:
        raise RuntimeError(f"{config.name} ({scheduler}) failed:\n{proc.stderr[-3000:]}")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    data = yaml.safe_load(config.read_text(encoding="utf-8"))
    product = config.parent / data["output"]["directory"] / data["run"]["name"] / "xrd.nc"
    res["xrd_mib"] = product.stat().st_size / 2**20
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=300, help="N (default 300)")
    ap.add_argument("--chunk", type=int, default=100, help="frames per work unit")
    ap.add_argument("--schedulers", nargs="+", default=["local", "none"])
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        sim = Path(tmp)
        subprocess.run([sys.executable, "-m", "operando", "simulate", str(sim), "--preset",
                        "small", "--stream", "xrd", "--no-real-data"], check=True,
                       stdout=subprocess.DEVNULL)
        src = sim / "xrd" / "xrd_0001.h5"
        sizes = {"N": args.frames, "4N": 4 * args.frames}
        files = {k: make_frames(src, sim / f"frames_{k}.h5", n) for k, n in sizes.items()}
        print(f"bench_memory: Pilatus100k frames (195 × 487), N = {args.frames}, work units "
              f"of {args.chunk} frames, npt 1500 (cake: 72 × 1500), xrd + peaks\n")
        head = (f"{'scheduler':<10}{'cake':<6}{'frames':>7}{'xrd.nc MiB':>12}"
                f"{'flow MiB':>10}{'worker MiB':>16}")
        print(head)
        print("-" * len(head))
        ratios = []
        for scheduler in args.schedulers:
            for cake in (False, True):
                peaks = {}
                for k, n in sizes.items():
                    cfg = make_config(sim, files[k], f"mem-{scheduler}-{k}-{int(cake)}",
                                      cake, args.chunk)
                    r = run_case(cfg, scheduler)
                    peaks[k] = r
                    w = r["workers"]
                    wtxt = " / ".join(f"{v:.0f}" for v in w) if w else "–"
                    print(f"{scheduler:<10}{'yes' if cake else 'no':<6}{n:>7}"
                          f"{r['xrd_mib']:>12.1f}{r['flow']:>10.0f}{wtxt:>16}", flush=True)
                flow = peaks["4N"]["flow"] / peaks["N"]["flow"]
                wk = (max(peaks["4N"]["workers"]) / max(peaks["N"]["workers"])
                      if peaks["N"]["workers"] else float("nan"))
                ratios.append((scheduler, cake, flow, wk))
        print("\npeak memory 4N / N (bounded by the chunk: 1.00 ± 0.10)")
        print(f"{'scheduler':<10}{'cake':<6}{'flow':>8}{'worker':>8}")
        for scheduler, cake, flow, wk in ratios:
            wtxt = "–" if np.isnan(wk) else f"{wk:.2f}"
            print(f"{scheduler:<10}{'yes' if cake else 'no':<6}{flow:>8.2f}{wtxt:>8}")


if __name__ == "__main__":
    main()
