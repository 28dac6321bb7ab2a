"""No process of a reduce outlives it: SIGKILL, SIGTERM, a crash."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}

CHILD = textwrap.dedent("""
    import subprocess, sys, time
    from pipelines.lifeline import ensure_lifeline, sigterm_as_exit
    ensure_lifeline()
    # stands for Prefect's temporary server: a child stopped only by an atexit hook
    server = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    print(server.pid, flush=True)
    with sigterm_as_exit():
        if sys.argv[1] == "segv":
            import ctypes; time.sleep(1.5); ctypes.string_at(0)
        time.sleep(600)
""")


def _gone_within(pid: int, seconds: float) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM", "segv"])
def test_children_do_not_outlive_the_reducer(how) -> None:
    p = subprocess.Popen([sys.executable, "-c", CHILD, how], stdout=subprocess.PIPE,
                         text=True, env=ENV, start_new_session=True)
    grandchild = 0
    try:
        grandchild = int(p.stdout.readline())
        time.sleep(1.0)  # the watchdog has seen it
        if how != "segv":
            os.kill(p.pid, getattr(signal, how))
        p.wait(timeout=30)
        assert _gone_within(grandchild, 10.0), f"{grandchild} outlived {how}"
    finally:
        for pid in (p.pid, grandchild):
            if pid:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
