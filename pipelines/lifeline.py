"""No process of a reduce outlives it: a lifeline watchdog and a SIGTERM handler.

Prefect's temporary API server (``prefect.server.api.server.SubprocessASGIServer``: a
``uvicorn`` child process, stopped by an ``atexit`` hook) and a Dask LocalCluster's
nanny/worker processes are children of the reducing process. When that process is killed
(SIGKILL, a segmentation fault in native code, the OOM killer) no ``atexit`` runs and they
are orphaned, running forever.

:func:`ensure_lifeline` starts, once per process, a small watchdog (``python -m
pipelines.lifeline PID``) in its own session, holding the read end of a pipe whose write
end only this process has. The watchdog notes every descendant of ``PID`` (with its
start time, so a reused PID is never hit) each :data:`POLL_S` seconds; when the pipe
closes — this process ended, however — it sends SIGTERM to the descendants still alive,
SIGKILL :data:`GRACE_S` seconds later, and exits. A normal exit stops them first through
their own ``atexit`` hooks; the watchdog then finds nothing left to do.

:func:`sigterm_as_exit` turns SIGTERM into ``SystemExit(143)`` while a reduce runs in the
main thread, so ``finally`` blocks (temporary product files removed, the cluster closed)
and ``atexit`` hooks (Prefect's server stopped) run as on Ctrl-C.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

__all__ = ["GRACE_S", "POLL_S", "ensure_lifeline", "sigterm_as_exit"]

#: how often the watchdog notes the descendants (s)
POLL_S = 0.5
#: SIGTERM → SIGKILL (s)
GRACE_S = 3.0

_lifeline: subprocess.Popen[bytes] | None = None
_lock = threading.Lock()


def ensure_lifeline() -> int | None:
    """Start the watchdog of this process if it is not running; its PID (None where it
    cannot run: no /proc, no psutil)."""
    global _lifeline
    with _lock:
        if _lifeline is not None and _lifeline.poll() is None:
            return _lifeline.pid
        try:
            import psutil  # noqa: F401 (the watchdog needs it)
        except ImportError:
            return None
        _lifeline = subprocess.Popen(
            [sys.executable, "-m", "pipelines.lifeline", str(os.getpid())],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True, close_fds=True,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)})
        return _lifeline.pid


@contextlib.contextmanager
def sigterm_as_exit() -> Iterator[None]:
    """SIGTERM raises ``SystemExit(143)`` inside the block (main thread only; elsewhere a
    no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _watch(parent_pid: int) -> None:
    import psutil

    known: dict[int, float] = {}
    import select

    while True:
        try:
            parent = psutil.Process(parent_pid)
            for child in parent.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    known[child.pid] = child.create_time()
        except psutil.NoSuchProcess:
            break
        ready, _, _ = select.select([sys.stdin], [], [], POLL_S)
        if ready and not os.read(sys.stdin.fileno(), 1024):
            break  # EOF: the parent is gone
    procs = []
    for pid, started in known.items():
        with contextlib.suppress(psutil.Error):
            p = psutil.Process(pid)
            if abs(p.create_time() - started) < 1e-3 and pid != os.getpid():
                procs.append(p)
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.terminate()
    _, alive = psutil.wait_procs(procs, timeout=GRACE_S)
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.kill()
    time.sleep(0.1)


if __name__ == "__main__":
    _watch(int(sys.argv[1]))
