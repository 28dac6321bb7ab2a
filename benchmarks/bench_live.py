"""Live reduction latency: item written → in its product (xrd.nc / peaks.nc, xanes.nc,
confocal.nc).

Simulates the ``small`` run live (``operando.simulate.live.simulate_live``: cycler rows,
trigger pulses, SWMR frames, XANES scans and confocal points written as they end, at
``--speed`` × real time) in a thread and follows it (``pipelines.follow.follow_run``, what
``operando reduce CONFIG --follow`` runs) in this process. For every detector frame, XANES
scan and confocal point: the wall time it was whole in its file (a frame's data and
timestamp flushed, a scan's data and end time, a point's frame and counters), and the wall
time the first live pass whose product holds it finished (the product's
``frames_covered`` / ``scans_covered`` / ``points_covered``; ``xrd.nc`` and, in the same
pass, ``peaks.nc``). Reported per stream: latency median / 90th percentile / max, the
number of passes, what each pass covered, and the time of the final (offline-equal)
reduction after the run ended.

A growing (SWMR) frame source is identified in work-unit keys by its files' paths and
inodes, not their sizes and mtimes (``FrameSource.__dask_tokenize__``), so a live pass
takes every complete integration chunk and peak-fit block of an earlier pass from the
cache and computes only the chunk still filling; what remains per pass is the fixed cost
(Prefect's temporary server, reading the cycler log, writing the products and the report)
and the streams refitted whole (the XANES series, the confocal peak-fit block still filling).
Figures: README, "Live mode".

    python benchmarks/bench_live.py [--speed 40] [--streams xrd,xanes,confocal] [--no-peaks]
                                    [--scheduler none]
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import xarray as xr

from operando.config import load_config
from operando.simulate.live import simulate_live
from pipelines.cache import COVERED_ATTRS
from pipelines.follow import FollowOptions, follow_run

ITEMS = {"xrd": "frames", "xanes": "scans", "confocal": "points"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--speed", type=float, default=40.0)
    ap.add_argument("--streams", default="xrd,xanes,confocal")
    ap.add_argument("--no-peaks", action="store_true")
    ap.add_argument("--scheduler", default="none")
    args = ap.parse_args()
    streams = tuple(args.streams.split(","))
    written: dict[str, dict[int, float]] = {s: {} for s in streams}
    passes: list[tuple[dict[str, int], float, bool]] = []
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "live"
        sim = threading.Thread(target=simulate_live, args=(run_dir, "small", 0), kwargs={
            "speed": args.speed, "streams": streams,
            "on_item": lambda s, n, t: written[s].setdefault(n, t)}, daemon=True)
        t_start = time.time()
        sim.start()
        while not (run_dir / "run.yaml").exists():
            time.sleep(0.05)
        cfg = load_config(run_dir / "run.yaml")
        if args.no_peaks:
            cfg = cfg.model_copy(update={"peaks": None})

        def on_pass(counts: dict[str, int], res: object) -> None:
            held = {}
            for s in streams:  # what the pass's product holds (at least what started it)
                path = res.products.get(s)  # type: ignore[attr-defined]
                if path is not None:
                    with xr.open_dataset(path, engine="h5netcdf") as ds:
                        held[s] = int(ds.attrs[COVERED_ATTRS[s]])
            passes.append((held, time.time(), not res.failed))  # type: ignore[attr-defined]

        final = follow_run(cfg, run_dir, FollowOptions(quiet_s=30.0, tick_s=0.2,
                                                       scheduler=args.scheduler),
                           on_pass=on_pass)
        t_end = time.time()
        sim.join()
    print(f"small run live at {args.speed:g}x ({', '.join(streams)}): "
          f"{', '.join(f'{len(written[s])} {ITEMS[s]}' for s in streams)}; run written in "
          f"{max(max(w.values(), default=t_start) for w in written.values()) - t_start:.0f} s")
    print(f"{len(passes)} live passes ({sum(not ok for *_, ok in passes)} with a failed "
          f"stream: too early for the clock fit), covering "
          f"{[', '.join(f'{s} {n}' for s, n in held.items()) for held, *_ in passes]}")
    for s in streams:
        lat = []
        for k, tw in written[s].items():
            covered = [t for held, t, ok in passes if ok and held.get(s, 0) >= k]
            if covered:
                lat.append(covered[0] - tw)
        what = "xrd.nc" + ("" if args.no_peaks else " and peaks.nc") if s == "xrd" \
            else f"{s}.nc"
        if lat:
            a = np.array(lat)
            print(f"latency {ITEMS[s][:-1]} written -> in {what}: median {np.median(a):.2f} s, "
                  f"p90 {np.percentile(a, 90):.2f} s, max {a.max():.2f} s ({a.size} of "
                  f"{len(written[s])} {ITEMS[s]} covered by a live pass)")
        else:
            print(f"latency {ITEMS[s][:-1]} -> {what}: no live pass covered one")
    last = max(max(w.values(), default=0.0) for w in written.values())
    print(f"final reduction done {t_end - last:.2f} s after the last item; products "
          f"{sorted(final.products)}; failed {final.failed or 'none'}")


if __name__ == "__main__":
    main()
