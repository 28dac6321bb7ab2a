"""Live reduction (`operando reduce CONFIG --follow`): a run reduced while it is acquired.

The run's folder is watched (:func:`operando.io.watch.watch_changes`); whenever one of its
X-ray streams has more complete items — detector frames, XANES scans, confocal points:
an item counts only when its data and its time are written (a frame with its timestamp,
HDF5 SWMR: :mod:`operando.io.xrd.frames`; a scan with its data and end time, not a
zero-filled slot: :func:`operando.io.xas.hdf5.read_xas_channels`; a point with its frame
or spectrum and its epoch: :mod:`operando.io.xrd.confocal`) — the run is reduced again
through :func:`pipelines.reduce.reduce_run` with the files read as growing ones
(:func:`live_config`): the electrochemistry and every stream that grew (the XRD with its
peaks). Every product written then carries ``complete = 0`` and what it holds
(``frames_covered``, ``scans_covered``, ``points_covered``, ``samples_covered``:
:func:`pipelines.cache.live_products`; read when the pass reads the files, so at least
the items that started it): never taken as fresh; the report page says so, shows the
figures marked live and reloads itself. A live pass that fails (e.g. too few trigger
pulses yet for the clock fit) is logged and the next one tries again. When the run ends
(the end-of-run marker appears, or nothing changed for ``quiet_s``) the run is reduced
once more as configured: the products are then complete and equal to the offline
reduction of the closed files.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from operando.config import RunConfig
from operando.io.watch import folder_stamp, watch_changes
from pipelines.cache import live_products
from pipelines.reduce import ReduceResult, reduce_run

__all__ = ["LIVE_STREAMS", "FollowOptions", "complete_frames", "complete_items",
           "follow_run", "live_config", "live_only", "live_pass"]

log = logging.getLogger("operando.serve")

#: the streams acquired item by item (frames, scans, points), in the order they reduce
LIVE_STREAMS = ("xrd", "confocal", "xanes")


@dataclass(frozen=True)
class FollowOptions:
    """``end_marker``: the file (in the run's folder) that ends the run; ``quiet_s``: the
    run has ended when its files have not changed for this long; ``tick_s``: how often the
    watch wakes without an event; ``scheduler``: where the chunks run."""

    end_marker: str = "END"
    quiet_s: float = 60.0
    tick_s: float = 0.5
    scheduler: object = "local"


def live_config(cfg: RunConfig) -> RunConfig:
    """The config reading the X-ray files as growing ones (``swmr`` on xrd, xanes and
    confocal)."""
    update = {s: sec.model_copy(update={"swmr": True}) for s in LIVE_STREAMS
              if (sec := getattr(cfg, s)) is not None and not sec.swmr}
    return cfg.model_copy(update=update) if update else cfg


def complete_frames(cfg: RunConfig) -> int:
    """Detector frames complete now (0 before the first, or without an ``xrd`` section)."""
    from pipelines.xrd import open_xrd_frames

    if cfg.xrd is None:
        return 0
    try:
        return int(open_xrd_frames(cfg.xrd).n_frames)
    except (OSError, ValueError):  # the file is not there yet, or has no frame yet
        return 0


def _complete_scans(cfg: RunConfig) -> int:
    from pipelines.xanes import read_scans

    try:
        return len(read_scans(cfg.xanes).names) if cfg.xanes is not None else 0
    except (OSError, ValueError):  # no file yet
        return 0


def _complete_points(cfg: RunConfig) -> int:
    from operando.io.xrd.confocal import open_confocal_frames, read_confocal_spectra
    from pipelines.confocal import confocal_plan

    if cfg.confocal is None:
        return 0
    try:
        read = confocal_plan(cfg.confocal, cfg.peaks).read
        if cfg.confocal.mode == "angle":
            return open_confocal_frames(**read)[1].n_points
        return read_confocal_spectra(**read)[3].n_points
    except (OSError, ValueError):  # no entry yet, a frame file not there yet
        return 0


def complete_items(cfg: RunConfig) -> dict[str, int]:
    """Stream → its items complete now (frames, scans, points), for each X-ray stream the
    config has (read as ``cfg`` says: give :func:`live_config`'s on a live run)."""
    count = {"xrd": complete_frames, "xanes": _complete_scans, "confocal": _complete_points}
    return {s: count[s](cfg) for s in LIVE_STREAMS if getattr(cfg, s) is not None}


def live_only(cfg: RunConfig, grown: Sequence[str]) -> list[str]:
    """The products a live pass writes: echem.nc and those of the streams that ``grown``
    (xrd with its peaks)."""
    out = ["echem"] if cfg.echem is not None else []
    for s in grown:
        out.append(s)
        if s == "xrd" and cfg.peaks is not None:
            out.append("peaks")
    return out


def live_pass(cfg: RunConfig, grown: Sequence[str], scheduler: object = "local"
              ) -> ReduceResult:
    """Reduce the products of the streams that ``grown`` (and echem.nc), marked
    ``complete = 0`` with what each holds; ``cfg``: the live config."""
    with live_products():
        return reduce_run(cfg, only=live_only(cfg, grown), scheduler=scheduler,
                          raise_on_failure=False)


def follow_run(cfg: RunConfig, run_dir: Path, options: FollowOptions | None = None,
               on_pass: Callable[[dict[str, int], ReduceResult], None] | None = None,
               stop: object | None = None) -> ReduceResult:
    """Reduce ``cfg`` (its raw files in ``run_dir``) as its frames, scans and points
    complete, until the run ends; then the final reduction (returned).
    ``on_pass(counts, result)`` after each live pass (``counts``: stream → items covered)."""
    opts = options or FollowOptions()
    live = live_config(cfg)
    out = cfg.output.directory.resolve()
    run_dir = Path(run_dir).resolve()

    def ignored(p: Path) -> bool:
        return p.is_relative_to(out) or any(
            part.startswith(".") for part in p.relative_to(run_dir).parts)

    def ended() -> bool:
        if (run_dir / opts.end_marker).exists():
            return True
        newest = folder_stamp(run_dir, exclude=[out], skip_names=[opts.end_marker]).newest_mtime
        return time.time() - newest >= opts.quiet_s

    done: dict[str, int] = {}
    for _ in watch_changes(run_dir, ignored, tick_s=opts.tick_s, stop=stop):
        if ended():
            break
        counts = complete_items(live)
        grown = [s for s, n in counts.items() if n > done.get(s, 0)]
        if not grown:  # a pass only when a stream has more complete items
            continue
        res = live_pass(live, grown, opts.scheduler)
        done = counts
        log.info("%s: live pass on %s: %s", cfg.run.name,
                 ", ".join(f"{s} {n}" for s, n in counts.items()),
                 ", ".join(f"{s} {lab}" for s, (lab, _) in res.status().items()))
        if on_pass is not None:
            on_pass(counts, res)
    log.info("%s: the run ended; final reduction", cfg.run.name)
    return reduce_run(cfg, scheduler=opts.scheduler, raise_on_failure=False)
