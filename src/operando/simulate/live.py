"""A simulated run acquired live (`operando simulate OUTDIR --live --speed F`).

The run is simulated whole into a hidden staging folder (``OUTDIR/.staging``), then replayed
into ``OUTDIR`` at ``speed``× real time as a beamline writes it (:mod:`operando.io.live`).
First the static files (geometry, mask, XANES standards, CV files, ``truth.json``), the
scan files with no scan yet and the run config; then, in the order of the potentiostat
clock (the times are the simulation's truth):

- the cycler rows (``echem/cell.mpt``) and the trigger pulses (``echem/triggers*.txt``), a
  whole line at a time;
- the detector frames (``xrd/xrd_0001.h5``, HDF5 SWMR, one flush per frame: data, then its
  timestamp) as each exposure ends;
- the XANES scans (``xanes/xanes_scans.h5``): a scan's entry appears when it starts, with
  its measurement pre-extended and zero-filled and no ``end_time``; when it ends, its data
  and ``end_time`` are written (each a new version of the file, renamed into place);
- the confocal points as each exposure ends: the frame appended to the pass's LIMA file
  (``confocal/scanNNNN/<detector>_0000.h5``, HDF5 SWMR, closed when the pass ends), then
  the point's motor position, epoch, monitor and count time appended to the pass's entry of
  ``confocal/confocal.h5`` (and the spectrum with them in ``confocal/confocal_ed.h5``), a
  new version of each master per point; a pass's ``end_time`` is written when it ends.

At the end the files are closed (the trigger records get their ``n_triggers`` header
line), the end-of-run marker ``END`` is written and the staging folder removed. The closed
files hold what the offline simulation writes (same groups, values, types, attributes and
links; the datasets that grew are stored chunked).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from operando.io.atomic import write_text_atomic
from operando.io.cache import remove_tree
from operando.io.live import LineAppender, ScanFileReplay, SwmrFrameWriter
from operando.io.xrd.bliss import LIMA_DATA_PATH
from operando.io.xrd.nexus import DETECTOR_DATA_PATH, MONITOR_DATA_PATH
from operando.simulate.beamtime import BeamtimeResult, simulate_beamtime

__all__ = ["simulate_live"]

#: emit(i, j): write items i..j-1 of a stream whose item times are given beside it
Emit = Callable[[int, int], None]
#: on_item(stream, items written, wall time): a frame, scan or point was written
OnItem = Callable[[str, int, float], None]


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


class _LiveRun:
    """The writers of one live replay: ``streams`` (item times, emit) for :func:`_replay`,
    ``closers`` run at the end whatever happens."""

    def __init__(self, staging: Path, out: Path, on_item: OnItem | None) -> None:
        self.staging, self.out, self.on_item = staging, out, on_item
        self.streams: list[tuple[np.ndarray, Emit]] = []
        self.closers: list[Callable[[], None]] = []
        self.live: set[str] = set()  # files written live (relative paths)

    def text(self, rel: str, parts: Callable[[str], tuple[list[str], list[str], np.ndarray]],
             final: bool) -> None:
        """A text record appended line by line (``final``: replaced by the staged file at
        the end, for header lines only known then)."""
        raw = (self.staging / rel).read_bytes()
        head, rows, t = parts(raw.decode("latin-1"))  # CRLF kept
        w = LineAppender(self.out / rel, head)
        self.streams.append((t, lambda i, j: w.append(rows[i:j])))
        self.closers.append(lambda: w.finish(raw if final else None))
        self.live.add(rel)

    def said(self, stream: str, n: int) -> None:
        if self.on_item is not None:
            self.on_item(stream, n, time.time())

    def frames(self, rel: str, t_end: np.ndarray) -> None:
        w = SwmrFrameWriter(self.staging / rel, self.out / rel, DETECTOR_DATA_PATH,
                            MONITOR_DATA_PATH)
        self.closers.append(w.close)

        def emit(i: int, j: int) -> None:
            for _ in range(i, j):
                self.said("xrd", w.append())

        self.streams.append((t_end, emit))
        self.live.add(rel)

    def xanes(self, rel: str, t_start: np.ndarray, t_end: np.ndarray) -> None:
        """Scan k's entry at its start (pre-extended, zero-filled), its data and end_time
        at its end."""
        w = ScanFileReplay(self.staging / rel, self.out / rel)
        self.closers.append(w.close)
        names = w.entries()
        t = np.concatenate([t_start, t_end])
        acts = [(n, True) for n in names] + [(n, False) for n in names]  # (entry, starts)
        order = np.argsort(t, kind="stable")

        def emit(i: int, j: int) -> None:
            for k in order[i:j]:
                name, starts = acts[k]
                if starts:
                    w.start(name, prefill=True)
                else:
                    w.finish(name)
                    self.said("xanes", names.index(name) + 1)

        self.streams.append((t[order], emit))
        self.live.add(rel)

    def confocal(self, files: dict[str, str], t_end: np.ndarray, acquired: np.ndarray) -> None:
        """Point by point, pass after pass: the frame into the pass's LIMA file (SWMR),
        then the point into each master (``master``, ``ed_master``)."""
        masters = [ScanFileReplay(self.staging / files[role], self.out / files[role],
                                  per_point=("measurement", "instrument/positioners",
                                             "instrument/mca/data"))
                   for role in ("master", "ed_master") if role in files]
        self.closers += [m.close for m in masters]
        folder = Path(files["master"]).parent
        names = masters[0].entries()
        lima = {n: [f"{folder}/{f}" for f in masters[0].external_files(n)] for n in names}
        self.live.update(files[r] for r in ("master", "ed_master") if r in files)
        self.live.update(f for fs in lima.values() for f in fs)
        # the acquired points in acquisition order: (entry, points so far in it, last?)
        points: list[tuple[str, int, bool]] = []
        times: list[float] = []
        for name, row in zip(names, np.flatnonzero(acquired.any(axis=1)), strict=True):
            sel = np.flatnonzero(acquired[row])
            for m, i in enumerate(sel):
                points.append((name, m + 1, m + 1 == sel.size))
                times.append(float(t_end[row, i]))
        open_lima: dict[str, list[SwmrFrameWriter]] = {}
        done = [0]

        def close_lima() -> None:
            for ws in open_lima.values():
                for w in ws:
                    w.close()
            open_lima.clear()

        self.closers.append(close_lima)

        def emit(i: int, j: int) -> None:
            for name, m, last in points[i:j]:
                if m == 1:
                    open_lima[name] = [SwmrFrameWriter(self.staging / f, self.out / f,
                                                       LIMA_DATA_PATH) for f in lima[name]]
                for w in open_lima[name]:
                    w.append()  # the frame first
                for master in masters:  # then its time, in the master
                    if last:
                        master.finish(name)  # with the pass's end_time
                    else:
                        master.grow(name, m)
                if last:
                    for w in open_lima.pop(name):
                        w.close()
                done[0] += 1
                self.said("confocal", done[0])

        self.streams.append((np.asarray(times), emit))


def simulate_live(outdir: Path | str, preset: str = "small", seed: int = 0, *,
                  speed: float = 60.0, streams: tuple[str, ...] | None = None,
                  overrides: dict[str, dict[str, Any]] | None = None,
                  end_marker: str = "END", staging: Path | str | None = None,
                  on_item: OnItem | None = None) -> BeamtimeResult:
    """Simulate and replay a run live into ``outdir``; returns the simulation's result (its
    ``outdir`` is ``outdir``). ``streams`` and ``overrides`` as for
    :func:`operando.simulate.beamtime.simulate_beamtime` (default: every stream, the
    preset as it is). ``staging``: where the run is simulated first (default
    ``OUTDIR/.staging``, removed at the end); a folder given is kept — the offline
    simulation of the same run, to compare with. ``on_item(stream, written, wall_time)``
    each time a frame (``xrd``), scan (``xanes``) or point (``confocal``) is whole in its
    file (``written``: how many so far)."""
    out = Path(outdir)
    keep = staging is not None
    staging = Path(staging) if staging is not None else out / ".staging"
    kw: dict[str, Any] = {"streams": streams} if streams else {}
    res = simulate_beamtime(staging, preset, seed, overrides=overrides, **kw)
    run = _LiveRun(staging, out, on_item)
    try:
        for role, rel in res.files["echem"].items():
            if role == "mpt":
                run.text(rel, _mpt_parts, final=False)
            else:  # triggers.txt, triggers_<stream>.txt
                run.text(rel, _trigger_parts, final=True)
        if "xrd" in res.files:
            run.frames(res.files["xrd"]["frames"],
                       np.asarray(res.truth["xrd"]["time_end_s"], float))
        if "xanes" in res.files:
            t = res.truth["xanes"]
            run.xanes(res.files["xanes"]["scans"], np.asarray(t["time_start_s"], float),
                      np.asarray(t["time_end_s"], float))
        if "confocal" in res.files:
            t = res.truth["confocal"]
            run.confocal(res.files["confocal"], np.asarray(t["time_end_s"], float),
                         np.asarray(t["acquired"], bool))
        for p in sorted(staging.rglob("*")):
            rel = p.relative_to(staging)
            if p.is_file() and str(rel) not in (*run.live, "run.yaml"):
                (out / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(p, out / rel)
        # valid now: its inputs exist (its header names the staged copy: renamed)
        text = (staging / "run.yaml").read_text(encoding="utf-8")
        write_text_atomic(out / "run.yaml", text.replace(str(staging / "run.yaml"),
                                                         str(out / "run.yaml")))
        _replay(speed, run.streams)
    finally:
        for close in run.closers:
            close()
    (out / end_marker).write_text("", encoding="utf-8")
    if not keep:
        remove_tree(staging)
    res.outdir = out
    return res


def _replay(speed: float, streams: list[tuple[np.ndarray, Emit]]) -> None:
    """Emit each stream's items when the replay clock (``speed``× wall time from the first
    item) passes their time."""
    streams = [(t, emit) for t, emit in streams if t.size]
    if not streams:
        return
    t0 = min(float(t[0]) for t, _ in streams)
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
