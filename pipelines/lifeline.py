"""No process of a reduce outlives it: a lifeline watchdog and a SIGTERM handler.

Prefect's temporary API server (``prefect.server.api.server.SubprocessASGIServer``: a
``uvicorn`` child process, stopped by an ``atexit`` hook) and a Dask LocalCluster's
nanny/worker processes are children of the reducing process. When that process is killed
(SIGKILL, a segmentation fault in native code, the OOM killer) no ``atexit`` runs and they
are orphaned, running forever.

:func:`ensure_lifeline` starts, once per process, a small watchdog (``python -m
pipelines.lifeline PID TOKEN``) in its own session, holding the read end of a pipe whose
write end only this process has. Two ways find what to stop:

- the watchdog notes every descendant of ``PID`` (with its start time, so a reused PID is
  never hit) each :data:`POLL_S` seconds;
- before starting it, this process adds its ``TOKEN`` to the environment variable
  :data:`MARK_ENV`, which every process it starts afterwards inherits (Prefect passes
  ``os.environ`` to its server, Dask's spawned workers inherit it): a child started less
  than :data:`POLL_S` before the death — after the last look — is found by its mark, even
  though it is orphaned by then and no longer a descendant.

When the pipe closes — this process ended, however — the watchdog sends SIGTERM to the
noted descendants still alive and to every process of the same user carrying the mark,
SIGKILL :data:`GRACE_S` seconds later, looks once more for marked processes (one started
meanwhile) and exits. A normal exit stops them first through their own ``atexit`` hooks;
the watchdog then finds nothing left to do. A process meant to outlive its reducer must
therefore not be started from it (none is: the run's lock, products and cache are files).

:func:`sigterm_as_exit` turns SIGTERM into ``SystemExit(143)`` while a reduce runs in the
main thread, so ``finally`` blocks (temporary product files removed, the cluster closed)
and ``atexit`` hooks (Prefect's server stopped) run as on Ctrl-C; inside
:func:`sigterm_deferred` (a Dask cluster starting or closing) it waits for the block's end.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import psutil

__all__ = ["GRACE_S", "MARK_ENV", "POLL_S", "ensure_lifeline", "sigterm_as_exit",
           "sigterm_deferred"]

#: how often the watchdog notes the descendants (s)
POLL_S = 0.5
#: SIGTERM → SIGKILL (s)
GRACE_S = 3.0
#: the environment variable marking the processes started by a reducer: the tokens of the
#: reducers it descends from, separated by spaces
MARK_ENV = "OPERANDO_LIFELINE"

_lifeline: subprocess.Popen[bytes] | None = None
_lock = threading.Lock()
#: depth of :func:`sigterm_deferred` blocks in the main thread, and the signals that came
#: while it was > 0
_deferring = 0
_pending: list[int] = []


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
        token = f"{os.getpid()}.{secrets.token_hex(6)}"  # marks all this process starts
        os.environ[MARK_ENV] = " ".join([*os.environ.get(MARK_ENV, "").split(), token])
        _lifeline = subprocess.Popen(
            [sys.executable, "-m", "pipelines.lifeline", str(os.getpid()), token],
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
        if _deferring:
            _pending.append(signum)
            return
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def sigterm_deferred() -> Iterator[None]:
    """Inside, a SIGTERM that :func:`sigterm_as_exit` turns into ``SystemExit`` waits for
    the block to end, then is raised: for steps that must not be cut in half. A Dask
    LocalCluster interrupted while starting by anything but an ``Exception`` is never
    closed (``SpecCluster.__init__``): its scheduler goes at interpreter exit while its
    workers still run, and they print tracebacks ("Failed to communicate with scheduler
    during heartbeat"). Main thread only; elsewhere a no-op."""
    global _deferring
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _deferring += 1
    try:
        yield
    finally:
        _deferring -= 1
        if not _deferring and _pending:
            signum = _pending[0]
            _pending.clear()
            raise SystemExit(128 + signum)


def _marked(token: str) -> list[psutil.Process]:
    """Processes of this user (but this one) whose environment carries ``token``."""
    import psutil

    found = []
    for p in psutil.process_iter():
        if p.pid == os.getpid():
            continue
        with contextlib.suppress(psutil.Error, OSError):
            if token in p.environ().get(MARK_ENV, "").split():
                found.append(p)
    return found


def _watch(parent_pid: int, token: str) -> None:
    import select

    import psutil

    known: dict[int, float] = {}
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
    procs: dict[int, psutil.Process] = {}
    for pid, started in known.items():
        with contextlib.suppress(psutil.Error):
            p = psutil.Process(pid)
            if abs(p.create_time() - started) < 1e-3 and pid != os.getpid():
                procs[pid] = p
    for _ in range(2):  # a marked process started while the first ones stopped: again
        procs.update({p.pid: p for p in _marked(token)} if token else {})
        if not procs:
            break
        for p in procs.values():
            with contextlib.suppress(psutil.Error):
                p.terminate()
        _, alive = psutil.wait_procs(list(procs.values()), timeout=GRACE_S)
        for p in alive:
            with contextlib.suppress(psutil.Error):
                p.kill()
        procs = {}
    time.sleep(0.1)


if __name__ == "__main__":
    _watch(int(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else "")
