"""A Dask worker killed by native code: the stream fails with one line naming the file and
the frames of the unit whose worker died, the other streams go on."""

from __future__ import annotations

import ctypes
from pathlib import Path

import dask
import numpy as np
from tests.faults.conftest import write_stack

from operando.config import load_config
from pipelines.reduce import reduce_run

#: the chunk of the small run's 147 frames (chunks of 50) whose reading crashes the worker
#: (the first: a crash in a later one also loses the finished results the worker held,
#: recomputed on the restarted worker before the runner sees the failure, seconds more)
CRASH = (0, 50)


def _segfault_on_frames(lo: int, hi: int) -> None:
    """Run on every worker (``Client.run``): reading a range that overlaps frames
    ``[lo, hi)`` dereferences a null pointer in C — a real segmentation fault, as a
    decompression filter crashing on damaged bytes would. The worker's nanny restarts it
    without this patch."""
    from operando.io.xrd.frames import FrameSource

    read = FrameSource.read

    def crashing(self: FrameSource, start: int, stop: int) -> np.ndarray:
        if start < hi and lo < stop:
            ctypes.string_at(0)
        return read(self, start, stop)

    FrameSource.read = crashing


def test_killed_worker_names_file_and_frames_other_streams_go_on(small_run,
                                                                 tmp_path: Path) -> None:
    from distributed import Client, LocalCluster

    cfg = load_config(small_run.run_config_path)
    xrd = cfg.xrd.model_copy(update={"integration": cfg.xrd.integration.model_copy(
        update={"chunk_frames": 50})})
    cfg = cfg.model_copy(update={"xrd": xrd, "output": cfg.output.model_copy(
        update={"directory": tmp_path / "out", "overwrite": True, "report": False})})
    # one death is enough to give up on a unit (default 3: four workers die first)
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), \
            LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                         host="127.0.0.1", dashboard_address=None) as cluster, \
            Client(cluster) as client:
        client.run(_segfault_on_frames, *CRASH)
        res = reduce_run(cfg, only=["xrd", "kinetics"], scheduler=cluster.scheduler_address,
                         raise_on_failure=False)
    why = res.failed["xrd"]
    assert "\n" not in why
    # Dask counts the death against every unit on the dying worker (the one queued behind
    # the crashing one, too): those of the same death are named together
    data = f"{small_run.outdir / 'xrd' / 'xrd_0001.h5'}::/entry/instrument/detector/data"
    named, _, what = why.partition(": the worker process running ")
    assert named in (f"{data} frames 0..49", f"{data} frames 0..49, 50..99"), why
    assert what.startswith("this unit died (KilledWorker: 1 worker died running it)"
                           if "," not in named else "these 2 units died (KilledWorker"), why
    assert "native code crashed" in why
    assert set(res.products) == {"kinetics"}  # the other stream went on
    assert not (cfg.product_dir / "xrd.nc").exists()
    assert not list(cfg.product_dir.glob(".*.part"))
    log = res.log_file.read_text()
    assert "KilledWorker" in log and "Traceback" in log  # the traceback is in the log file


def test_where_names_file_dataset_and_frames(tmp_path: Path, frames: np.ndarray) -> None:
    """What a unit's error names: the dataset and its own frame numbers (the run's too when
    the dataset does not start the run)."""
    from operando.io.xrd.frames import open_frames
    from pipelines.runner import unit_where
    from pipelines.xrd import integrate_chunk

    a = write_stack(tmp_path / "a.h5", frames)
    b = write_stack(tmp_path / "b.h5", frames)
    src = open_frames([a, b], dataset="entry/data/data")
    assert src.where(2, 6) == f"{a}::/entry/data/data frames 2..5"
    assert src.where(6, 12) == (f"{a}::/entry/data/data frames 6..7 and {b}::/entry/data/"
                                "data frames 0..3 (frames 8..11 of the run)")
    assert unit_where(integrate_chunk, (src, 8, 16, None, None)) == \
        f"{b}::/entry/data/data frames 0..7 (frames 8..15 of the run)"
    assert unit_where(sum, (np.zeros((100, 3)),)) == "unit sum[100 rows]"
