"""The one lock of a run (:class:`operando.io.lock.RunLock`), for `operando reduce` and
`operando serve` alike: ``<output.directory>/.<run>.lock``."""

from __future__ import annotations

from operando.config import RunConfig
from operando.io.lock import LockHeld, LockHolder, RunLock, lock_path

__all__ = ["LockHeld", "LockHolder", "RunLock", "run_lock"]


def run_lock(cfg: RunConfig, command: str = "") -> RunLock:
    """The lock of ``cfg``'s run (not acquired yet: ``.acquire(wait)`` or ``.hold(wait)``)."""
    return RunLock(lock_path(cfg.output.directory, cfg.run.name), cfg.run.name, command)
