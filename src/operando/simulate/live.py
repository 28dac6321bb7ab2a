"""A simulated run acquired live (`operando simulate OUTDIR --live --speed F`).

The run is simulated whole into a hidden staging folder (``OUTDIR/.staging``), then replayed
into ``OUTDIR`` at ``speed``× real time as a beamline writes it: the run config and the
static files (geometry, mask, standards, and the streams that are not acquired live: XANES,
confocal, CV) first; then, in the order of the potentiostat clock, the cycler rows
(``echem/cell.mpt``, a whole line at a time), the trigger pulses (``echem/triggers.txt``) and
the detector frames (``xrd/xrd_0001.h5`` in HDF5 SWMR mode, one flush per frame: data, then
its timestamp) as each exposure ends. At the end the files are closed (the trigger record
gets its ``n_triggers`` header line), the end-of-run marker ``END`` is written and the
staging folder removed. The closed files hold exactly what the offline simulation writes.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from operando.io.cache import remove_tree
from operando.io.live import LineAppender, SwmrFrameWriter
from operando.io.xrd.nexus import DETECTOR_DATA_PATH, MONITOR_DATA_PATH
from operando.simulate.beamtime import BeamtimeResult, simulate_beamtime

__all__ = ["simulate_live"]

LIVE_FILES = ("echem/cell.mpt", "echem/triggers.txt", "xrd/xrd_0001.h5")


def _mpt_parts(text: str) -> tuple[list[str], list[str], np.ndarray]:
    """(header lines, data lines, their time/s) of an EC-Lab export."""
    lines = text.splitlines(keepends=True)
    n_header = int(lines[1].split(":")[1])
    header, rows = lines[:n_header], lines[n_header:]
    col = header[-1].rstrip("\r\n").split("\t").index("time/s")
    t = np.array([float(r.split("\t")[col]) for r in rows])
    return header, rows, t


def _trigger_parts(text: str) -> tuple[list[str], list[str], np.ndarray]:
    lines = text.splitlines(keepends=True)
    k = next(i for i, ln in enumerate(lines) if ln.strip() == "trigger_time_s") + 1
    header = [ln for ln in lines[:k] if not ln.startswith("# n_triggers")]
    rows = lines[k:]
    return header, rows, np.array([float(r) for r in rows])


def simulate_live(outdir: Path | str, preset: str = "small", seed: int = 0, *,
                  speed: float = 60.0, streams: tuple[str, ...] | None = None,
                  end_marker: str = "END",
                  on_frame: Callable[[int, int, float], None] | None = None) -> BeamtimeResult:
    """Simulate and replay a run live into ``outdir``; returns the simulation's result (its
    ``outdir`` is ``outdir``). ``on_frame(written, total, wall_time)`` after each frame."""
    out = Path(outdir)
    staging = out / ".staging"
    kw = {"streams": streams} if streams else {}
    res = simulate_beamtime(staging, preset, seed, **kw)
    for p in sorted(staging.rglob("*")):
        rel = p.relative_to(staging)
        if p.is_file() and str(rel) not in (*LIVE_FILES, "run.yaml"):
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(p, out / rel)
    mpt_text = (staging / LIVE_FILES[0]).read_bytes().decode("latin-1")  # CRLF kept
    trig_bytes = (staging / LIVE_FILES[1]).read_bytes()
    m_head, m_rows, m_t = _mpt_parts(mpt_text)
    t_head, t_rows, t_t = _trigger_parts(trig_bytes.decode("latin-1"))
    frames = SwmrFrameWriter(staging / LIVE_FILES[2], out / LIVE_FILES[2],
                             DETECTOR_DATA_PATH, MONITOR_DATA_PATH)
    mpt = LineAppender(out / LIVE_FILES[0], m_head)
    trig = LineAppender(out / LIVE_FILES[1], t_head)
    shutil.copy2(staging / "run.yaml", out / "run.yaml")  # valid now: its inputs exist
    try:
        stamps = frames.times()
        count = np.asarray(frames.src[DETECTOR_DATA_PATH].parent["count_time"][()], float)
        # exposure ends on the potentiostat clock (the first pulse is the first frame)
        f_t = stamps - stamps[0] + (t_t[0] if t_t.size else 0.0) + count
        _replay(speed, [(m_t, lambda i, j: mpt.append(m_rows[i:j])),
                        (t_t, lambda i, j: trig.append(t_rows[i:j])),
                        (f_t, lambda i, j: _frames(frames, i, j, on_frame))])
    finally:
        frames.close()
        mpt.finish()
        trig.finish(trig_bytes)
    (out / end_marker).write_text("", encoding="utf-8")
    remove_tree(staging)
    res.outdir = out
    return res


def _frames(w: SwmrFrameWriter, i: int, j: int,
            on_frame: Callable[[int, int, float], None] | None) -> None:
    for _ in range(i, j):
        n = w.append()
        if on_frame is not None:
            on_frame(n, w.n_frames, time.time())


def _replay(speed: float, streams: list[tuple[np.ndarray, Callable[[int, int], None]]]
            ) -> None:
    """Emit each stream's items when the replay clock (``speed``× wall time from the first
    item) passes their time."""
    t0 = min(float(t[0]) for t, _ in streams if t.size)
    wall0 = time.monotonic()
    done = [0] * len(streams)
    while any(d < t.size for d, (t, _) in zip(done, streams, strict=True)):
        now = t0 + (time.monotonic() - wall0) * speed
        for k, (t, emit) in enumerate(streams):
            j = int(np.searchsorted(t, now, side="right"))
            if j > done[k]:
                emit(done[k], j)
                done[k] = j
        nxt = min((float(t[d]) for d, (t, _) in zip(done, streams, strict=True)
                   if d < t.size), default=now)
        time.sleep(min(max((nxt - now) / speed, 0.0), 0.5))
