"""One lock per run: a second reducer of the same run waits or is told who holds it.

The lock is an OS file lock (:class:`filelock.FileLock`: ``flock`` on POSIX) on
``<output.directory>/.<run>.lock``; the kernel releases it when its holder dies, so a
killed ``operando reduce`` or ``serve`` never blocks the run for good. Beside it,
``.<run>.lock.json`` names the holder (pid, host, since, command) for the message a second
reducer prints; a holder file left behind by a killed process (the lock itself is free) is
reported as a stale lock taken over.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from filelock import FileLock, Timeout

from operando.io.atomic import write_text_atomic
from operando.io.timestamps import epoch_to_iso

__all__ = ["LockHeld", "LockHolder", "RunLock", "lock_path"]


def lock_path(output_dir: Path, run_name: str) -> Path:
    """``<output.directory>/.<run>.lock``: outside the run's product folder, so cleaning the
    folder never removes the lock of a reducer at work."""
    return Path(output_dir) / f".{run_name}.lock"


@dataclass(frozen=True)
class LockHolder:
    """Who holds (or held) a run lock."""

    pid: int
    host: str
    since: float
    command: str = ""

    def describe(self) -> str:
        return (f"pid {self.pid} on {self.host} since {epoch_to_iso(self.since)}"
                + (f" ({self.command})" if self.command else ""))

    def alive(self) -> bool | None:
        """Whether the holder process still runs (None: another host, cannot tell)."""
        if self.host != socket.gethostname():
            return None
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


class LockHeld(RuntimeError):
    """The run is locked by another reducer: ``holder`` says who (None when unknown)."""

    def __init__(self, run: str, path: Path, holder: LockHolder | None) -> None:
        self.run, self.path, self.holder = run, path, holder
        who = holder.describe() if holder else "another process (no holder file)"
        super().__init__(f"run {run} is being reduced by {who}; lock {path}")


class RunLock:
    """The lock of one run. ``acquire(wait)``: wait up to ``wait`` s (0: not at all, None:
    for ever), else :class:`LockHeld`. ``taken_over``: the holder file of a killed process
    found at acquisition (the stale lock that was taken over), else None."""

    def __init__(self, path: Path, run: str, command: str = "") -> None:
        self.path = Path(path)
        self.info_path = self.path.with_name(self.path.name + ".json")
        self.run = run
        self.command = command or " ".join(Path(a).name if i == 0 else a
                                           for i, a in enumerate(sys.argv[:3]))
        self._lock = FileLock(self.path, thread_local=False)
        self.taken_over: LockHolder | None = None

    def holder(self) -> LockHolder | None:
        """The holder file's content (None when absent or unreadable)."""
        try:
            return LockHolder(**json.loads(self.info_path.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            return None

    def acquire(self, wait: float | None = 0) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire(timeout=-1 if wait is None else max(wait, 0.0))
        except Timeout:
            raise LockHeld(self.run, self.path, self.holder()) from None
        prev = self.holder()
        self.taken_over = prev if prev is not None and prev.pid != os.getpid() else None
        me = LockHolder(os.getpid(), socket.gethostname(), time.time(), self.command)
        write_text_atomic(self.info_path, json.dumps(asdict(me)))
        return self

    def release(self) -> None:
        if self._lock.is_locked:
            with contextlib.suppress(FileNotFoundError):
                self.info_path.unlink()
            self._lock.release()

    @property
    def held(self) -> bool:
        return self._lock.is_locked

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    @contextlib.contextmanager
    def hold(self, wait: float | None = 0) -> Iterator[RunLock]:
        self.acquire(wait)
        try:
            yield self
        finally:
            self.release()
