"""Live reduction (`operando reduce CONFIG --follow`): a run reduced while it is acquired.

The run's folder is watched (:func:`operando.io.watch.watch_changes`); whenever more
detector frames are complete — a frame counts only when its data and its timestamp are
written (:mod:`operando.io.xrd.frames`, SWMR) — the run is reduced again through
:func:`pipelines.reduce.reduce_run` with the XRD read as a growing file, and every product
written then carries ``complete = 0`` and ``frames_covered``
(:func:`pipelines.cache.live_products`): never taken as fresh. A live pass that fails (e.g.
too few trigger pulses yet for the clock fit) is logged and the next one tries again. When
the run ends (the end-of-run marker appears, or nothing changed for ``quiet_s``) the run is
reduced once more as configured: the products are then complete and equal to the offline
reduction of the closed files.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from operando.config import RunConfig
from operando.io.watch import folder_stamp, watch_changes
from pipelines.cache import live_products
from pipelines.reduce import ReduceResult, reduce_run

__all__ = ["FollowOptions", "complete_frames", "follow_run", "live_config"]

log = logging.getLogger("operando.serve")


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
    """The config reading the frames as a growing file (SWMR)."""
    if cfg.xrd is None or cfg.xrd.swmr:
        return cfg
    return cfg.model_copy(update={"xrd": cfg.xrd.model_copy(update={"swmr": True})})


def complete_frames(cfg: RunConfig) -> int:
    from pipelines.xrd import open_xrd_frames

    if cfg.xrd is None:
        return 0
    try:
        return int(open_xrd_frames(cfg.xrd).n_frames)
    except (OSError, ValueError):  # the file is not there yet, or has no frame yet
        return 0


def follow_run(cfg: RunConfig, run_dir: Path, options: FollowOptions | None = None,
               on_pass: Callable[[int, ReduceResult], None] | None = None,
               stop: object | None = None) -> ReduceResult:
    """Reduce ``cfg`` (its raw files in ``run_dir``) as its frames complete, until the run
    ends; then the final reduction (returned). ``on_pass(frames, result)`` after each live
    pass."""
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

    done = 0
    for _ in watch_changes(run_dir, ignored, tick_s=opts.tick_s, stop=stop):
        if ended():
            break
        n = complete_frames(live)
        if n <= done:  # a pass only when frames were added
            continue
        with live_products(n):
            res = reduce_run(live, scheduler=opts.scheduler, raise_on_failure=False)
        done = n
        log.info("%s: live pass on %d frames: %s", cfg.run.name, n, ", ".join(
            f"{s} {lab}" for s, (lab, _) in res.status().items()))
        if on_pass is not None:
            on_pass(n, res)
    log.info("%s: the run ended; final reduction", cfg.run.name)
    return reduce_run(cfg, scheduler=opts.scheduler, raise_on_failure=False)
