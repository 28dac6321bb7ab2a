"""No process of a reduce outlives it: SIGKILL, SIGTERM, a crash."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil
import pytest
import xarray as xr

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


# --------------------------------------------------------------------------- a real reduce
#
# `python -m operando reduce` of the simulated `small` run (XRD only: the run's
# electrochemistry, the trigger clock and xrd.nc, 147 frames in work units of 20), killed
# at a point of its work. Its processes (Prefect's temporary server, the lifeline, the
# Dask cluster when there is one) are collected by walking its descendants every few ms
# until the kill, and by its session afterwards (it is started in a session of its own).

POLL_S = 0.005
#: a bound on waiting for a reduce, never a requirement of the test
WAIT_S = 600.0


def _numeric(ds: xr.Dataset) -> xr.Dataset:
    keep = [k for k, v in ds.variables.items() if v.dtype.kind in "biufcmM"]
    return ds[[k for k in keep if k in ds.data_vars]].drop_vars(
        [k for k in ds.coords if k not in keep])


def _same_numbers(a: Path, b: Path) -> None:
    with xr.open_dataset(a, engine="h5netcdf") as x, xr.open_dataset(b, engine="h5netcdf") as y:
        xs, ys = _numeric(x), _numeric(y)
        assert sorted(xs.variables) == sorted(ys.variables)
        xr.testing.assert_equal(xs.load(), ys.load())


@dataclass
class Killed:
    """What a killed reduce left: return code, stderr, processes seen, parts, the time of
    the kill (monotonic s)."""

    rc: int
    stderr: str
    seen: dict[int, tuple[float, str]]
    parts: list[Path]
    killed_at: float
    lifeline_seen: bool


@pytest.fixture(scope="module")
def kill_config(small_run, small_reduced, tmp_path_factory):
    """``config(folder) -> path``: the small run's config writing into ``folder`` (XRD work
    units of 20 frames: xrd.nc is written in 8 blocks, its part on disk long enough to be
    seen); the clean xrd.nc to compare with (the session's reduce, one work unit); the
    run's name."""
    from operando.config import load_config

    base = load_config(small_run.run_config_path)
    clean = small_reduced[0].product_dir / "xrd.nc"

    def config(folder: Path) -> Path:
        integ = base.xrd.integration.model_copy(update={"chunk_frames": 20})
        cfg = base.model_copy(update={
            "output": base.output.model_copy(update={"directory": folder / "reduced"}),
            "xrd": base.xrd.model_copy(update={"integration": integ})})
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "run.yaml"
        path.write_text(cfg.to_yaml(), encoding="utf-8")
        return path

    return config, clean, base.run.name


def _reduce_cmd(cfg: Path, scheduler: str) -> list[str]:
    return [sys.executable, "-m", "operando", "reduce", str(cfg), "--only", "xrd",
            "--scheduler", scheduler]


def _alive(pid: int, started: float) -> bool:
    try:
        p = psutil.Process(pid)
        return abs(p.create_time() - started) < 1e-3 and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _session(sid: int) -> dict[int, tuple[float, str]]:
    out = {}
    for p in psutil.process_iter(["create_time"]):
        with contextlib.suppress(psutil.Error, OSError):
            if os.getsid(p.pid) == sid and p.status() != psutil.STATUS_ZOMBIE:
                out[p.pid] = (p.info["create_time"], " ".join(p.cmdline()))
    return out


def _kill_reduce(cfg: Path, product_dir: Path, sig: signal.Signals, when, *,
                 scheduler: str = "none") -> Killed:
    """Run a reduce, send ``sig`` once ``when(pid, seen, product_dir, t)`` is true (``pid``:
    the reducer's; ``seen``: pid → (start time, command line) of its descendants so far;
    ``t``: seconds since its start); return what it left once every process of it is gone
    or 10 s have passed. Survivors are killed by PID at the end (asserted on by the
    caller)."""
    err = cfg.parent / f"stderr-{len(list(cfg.parent.glob('stderr-*')))}-{sig.name}.txt"
    with open(err, "w") as fh:
        p = subprocess.Popen(_reduce_cmd(cfg, scheduler), stdout=subprocess.DEVNULL,
                             stderr=fh, stdin=subprocess.DEVNULL, env=ENV,
                             start_new_session=True)
    seen: dict[int, tuple[float, str]] = {}
    t0 = time.monotonic()
    killed_at = 0.0
    try:
        while p.poll() is None and time.monotonic() - t0 < WAIT_S:
            with contextlib.suppress(psutil.Error):
                for c in psutil.Process(p.pid).children(recursive=True):
                    with contextlib.suppress(psutil.Error):
                        seen.setdefault(c.pid, (c.create_time(), " ".join(c.cmdline())))
            if when(p.pid, seen, product_dir, time.monotonic() - t0):
                os.kill(p.pid, sig)
                killed_at = time.monotonic()
                break
            time.sleep(POLL_S)
        assert killed_at, f"the reduce ended (rc {p.poll()}) before the kill point"
        seen.update(_session(p.pid))
        rc = p.wait(timeout=WAIT_S)
        while time.monotonic() - killed_at < 10.0 and any(_alive(q, s) for q, (s, _) in
                                                          seen.items()):
            time.sleep(0.1)
        parts = sorted(product_dir.glob(".*.part"))
        lifeline = any("pipelines.lifeline" in cmd for _, cmd in seen.values())
        return Killed(rc, err.read_text(), seen, parts, killed_at, lifeline)
    finally:
        for pid, (started, _) in [(p.pid, (0.0, "")), *seen.items()]:
            with contextlib.suppress(ProcessLookupError, psutil.Error):
                if (pid == p.pid and p.poll() is None) or _alive(pid, started):
                    os.kill(pid, signal.SIGKILL)
        p.wait(timeout=30)


def _survivors(k: Killed) -> list[str]:
    return [f"{pid} {cmd}" for pid, (started, cmd) in k.seen.items() if _alive(pid, started)]


def _part_written(pid: int, seen, product_dir: Path, t: float) -> bool:
    """The reducer's own part of xrd.nc is on disk (its name holds the writer's pid)."""
    return any(product_dir.glob(f".xrd.nc.*-{pid}.*.part"))


def _server_started(pid: int, seen, product_dir: Path, t: float) -> bool:
    return any("uvicorn" in cmd and "prefect" in cmd for _, cmd in seen.values())


def _no_partial_under_final_name(product_dir: Path, clean: Path) -> None:
    """A product under its final name is whole: the clean one, number for number."""
    if (product_dir / "xrd.nc").exists():
        _same_numbers(product_dir / "xrd.nc", clean)


def _rerun_matches_clean(cfg: Path, product_dir: Path, clean: Path,
                         scheduler: str = "none") -> subprocess.CompletedProcess[str]:
    r = subprocess.run(_reduce_cmd(cfg, scheduler), capture_output=True, text=True, env=ENV,
                       stdin=subprocess.DEVNULL, timeout=WAIT_S)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    assert not list(product_dir.glob(".*.part")), "a part of the killed reduce is left"
    _same_numbers(product_dir / "xrd.nc", clean)
    return r


def test_sigkill_as_the_server_appears_leaves_nothing_running(kill_config,
                                                              tmp_path) -> None:
    """SIGKILL of a real reduce (in-process chunks: Prefect's temporary server and the
    lifeline are its processes) the moment Prefect's temporary server process appears,
    before the watchdog's next look (the server used to be left running): rc -9, nothing of
    the reduce alive 10 s later. (SIGKILL while xrd.nc is written and the clean rerun: the
    next test; SIGTERM, and kills with a Dask cluster: the slow tests below.)"""
    config, _, run = kill_config
    cfg = config(tmp_path)
    k = _kill_reduce(cfg, tmp_path / "reduced" / run, signal.SIGKILL, _server_started)
    assert k.rc == -signal.SIGKILL
    assert not _survivors(k), _survivors(k)


@pytest.mark.slow
def test_killed_while_writing_then_the_next_reduce_is_clean(kill_config, tmp_path) -> None:
    """SIGKILL while xrd.nc is being written (its part on disk): the part is left, no
    partial xrd.nc under the final name, nothing alive 10 s later; the next reduce
    succeeds, removes that part, and its xrd.nc equals the clean reduce's, number for
    number (slow: two real reduces; a stale part's removal is also proved in the default
    suite by test_durability::test_stale_part_removed_by_next_write_live_one_kept)."""
    config, clean, run = kill_config
    cfg = config(tmp_path)
    product_dir = tmp_path / "reduced" / run
    k = _kill_reduce(cfg, product_dir, signal.SIGKILL, _part_written)
    assert k.rc == -signal.SIGKILL
    assert not _survivors(k), _survivors(k)
    assert k.parts, "killed while writing: its part is left for the next reduce"
    _no_partial_under_final_name(product_dir, clean)
    _rerun_matches_clean(cfg, product_dir, clean)


@pytest.mark.slow
def test_sigterm_at_the_server_start_exits_143_leaving_nothing(kill_config, tmp_path) -> None:
    """SIGTERM the moment Prefect's temporary server appears: rc 143, no traceback, nothing
    of the reduce alive 10 s later (slow: one more real reduce; the stand-in child test
    covers SIGTERM in the default suite)."""
    config, _, run = kill_config
    cfg = config(tmp_path)
    k = _kill_reduce(cfg, tmp_path / "reduced" / run, signal.SIGTERM, _server_started)
    assert k.rc == 128 + signal.SIGTERM, k.stderr[-3000:]
    assert not _survivors(k), _survivors(k)
    assert "Traceback" not in k.stderr and len(k.stderr.splitlines()) <= 3, k.stderr[-3000:]


@pytest.fixture(scope="module")
def clean_local(kill_config, tmp_path_factory):
    """A clean reduce with the default scheduler (a Dask LocalCluster) and its duration
    (s): the span the random kill points are drawn from; its xrd.nc equals the session's."""
    config, clean, run = kill_config
    folder = tmp_path_factory.mktemp("clean-local")
    cfg = config(folder)
    t0 = time.monotonic()
    _rerun_matches_clean(cfg, folder / "reduced" / run, clean, scheduler="local")
    return time.monotonic() - t0


@pytest.mark.slow
@pytest.mark.parametrize("case", range(8))
def test_kill_at_a_random_point_of_a_reduce(kill_config, clean_local, tmp_path, case) -> None:
    """SIGKILL or SIGTERM after a delay drawn (seeded) from the whole of a clean reduce with
    a Dask LocalCluster: nothing of it alive 10 s later (server, lifeline, nanny, workers);
    SIGKILL gives -9; SIGTERM 143 — or -15 when it came before the reduce started its flow
    (imports, config, lock) or after its products were written (report), where the signal's
    default action ends the process; no traceback; no partial product under a final name;
    the next reduce succeeds, removes the parts, and its xrd.nc equals the clean one."""
    config, clean, run = kill_config
    rng = np.random.default_rng(1000 + case)
    sig = (signal.SIGKILL, signal.SIGTERM)[case % 2]
    delay = float(rng.uniform(0.03, 0.97)) * clean_local
    cfg = config(tmp_path)
    product_dir = tmp_path / "reduced" / run

    k = _kill_reduce(cfg, product_dir, sig, lambda pid, seen, d, t: t >= delay, scheduler="local")
    assert not _survivors(k), (delay, _survivors(k))
    if sig == signal.SIGKILL:
        assert k.rc == -signal.SIGKILL
    else:
        outside_flow = not k.lifeline_seen or (product_dir / "xrd.nc").exists()
        assert k.rc == 128 + signal.SIGTERM or (k.rc == -signal.SIGTERM and outside_flow), \
            (k.rc, delay, k.stderr[-3000:])
        assert "Traceback" not in k.stderr, k.stderr[-3000:]
    _no_partial_under_final_name(product_dir, clean)
    _rerun_matches_clean(cfg, product_dir, clean, scheduler="local")
