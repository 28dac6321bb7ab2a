"""`operando serve`: a beamtime folder of two runs (the `small` run's echem and XANES, cheap)
reduced once each and left alone afterwards; a run still being written waits for its end
marker or quiet time; an edited xanes section recomputes only that run's xanes.nc; a failing
run does not stop the others and is retried once fixed; the watch reacts to a change; one
lock per run: a second reducer is refused with the holder named, a killed holder's lock is
taken over."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from operando.cli import app
from operando.config import load_config
from pipelines.lock import run_lock
from pipelines.serve import Beamtime, ServeOptions

RUNS = ("run-a", "run-b")
REPO = Path(__file__).resolve().parents[1]


def _make_run(small_run, folder: Path, name: str) -> Path:
    """A run folder with the small run's echem and XANES files and a config for them."""
    src = Path(small_run.run_config_path).parent
    for sub in ("echem", "xanes"):
        shutil.copytree(src / sub, folder / sub)
    d = yaml.safe_load(Path(small_run.run_config_path).read_text(encoding="utf-8"))
    cfg = {k: d[k] for k in ("schema_version", "run", "output", "echem", "xanes")}
    cfg["run"]["name"] = name
    path = folder / "run.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def beamtime(small_run, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("beamtime")
    for name in RUNS:
        _make_run(small_run, root / name, name)
    return root


def _products(root: Path, run: str) -> dict[str, int]:
    d = root / run / "reduced" / run
    return {p.name: p.stat().st_mtime_ns for p in sorted(d.glob("*.nc"))}


def _opts(**kw) -> ServeOptions:
    return ServeOptions(**{"scheduler": "none", "quiet_s": 0.0, "tick_s": 0.3, **kw})


def test_once_waits_for_the_end_then_reduces_both_then_nothing(beamtime: Path) -> None:
    # no live passes (their scans would be reduced as they come: tests/test_live.py)
    live = Beamtime(beamtime, _opts(quiet_s=3600, live=False))
    live.sweep()
    assert [st.state for st in live.runs.values()] == ["live", "live"]
    assert not _products(beamtime, "run-a")
    (beamtime / "run-a" / "END").write_text("", encoding="utf-8")  # end-of-run marker
    live.sweep()
    assert [st.state for st in live.runs.values()] == ["reduced", "live"]
    assert set(_products(beamtime, "run-a")) == {"echem.nc", "xanes.nc"}

    bt = Beamtime(beamtime, _opts())  # quiet time over: run-b ends
    bt.sweep()
    assert [st.state for st in bt.runs.values()] == ["up to date", "reduced"]
    before = {r: _products(beamtime, r) for r in RUNS}
    out = CliRunner().invoke(app, ["serve", str(beamtime), "--once", "--quiet", "0",
                                   "--scheduler", "none"])
    assert out.exit_code == 0, out.output
    assert out.output.count("up to date") >= 2 and "written" not in out.output, out.output
    assert {r: _products(beamtime, r) for r in RUNS} == before


def test_edited_xanes_section_recomputes_only_its_xanes(beamtime: Path) -> None:
    bt = Beamtime(beamtime, _opts())
    bt.sweep()
    before = {r: _products(beamtime, r) for r in RUNS}
    cfg_path = beamtime / "run-a" / "run.yaml"
    d = yaml.safe_load(cfg_path.read_text(encoding="utf-8"))
    d["xanes"]["fit_range_eV"] = [-25.0, 55.0]
    cfg_path.write_text(yaml.safe_dump(d), encoding="utf-8")
    bt.sweep()
    after = {r: _products(beamtime, r) for r in RUNS}
    assert after["run-b"] == before["run-b"]
    assert after["run-a"]["echem.nc"] == before["run-a"]["echem.nc"]
    assert after["run-a"]["xanes.nc"] != before["run-a"]["xanes.nc"]
    assert bt.runs[cfg_path.resolve()].products == {"echem": "fresh", "xanes": "written"}


def test_failing_run_does_not_stop_the_service(small_run, tmp_path: Path) -> None:
    good = _make_run(small_run, tmp_path / "good", "good")
    bad = _make_run(small_run, tmp_path / "bad", "bad")
    (tmp_path / "invalid").mkdir()
    (tmp_path / "invalid" / "run.yaml").write_text("run: {name: x}\n", encoding="utf-8")
    mpt = bad.parent / "echem" / "cell.mpt"
    text = mpt.read_bytes()
    mpt.write_text("not a cycler file\n", encoding="utf-8")
    bt = Beamtime(tmp_path, _opts())
    bt.sweep()
    states = {st.config.parent.name: st for st in bt.runs.values()}
    assert states["good"].state == "reduced"
    assert states["bad"].state == "failed" and "echem" in states["bad"].reason
    assert states["invalid"].state == "invalid"
    assert {s.config.parent.name for s in bt.failed} == {"bad", "invalid"}
    bt.sweep()  # unchanged: not retried
    assert states["bad"].failures == 1
    mpt.write_bytes(text)  # fixed: retried on its change
    bt.sweep()
    assert states["bad"].state == "reduced" and states["bad"].failures == 1
    assert states["good"].reductions == 1  # unchanged: not looked at again
    out = CliRunner().invoke(app, ["serve", str(tmp_path), "--once", "--quiet", "0",
                                   "--scheduler", "none"])
    assert out.exit_code == 1 and "invalid" in out.output, out.output
    assert load_config(good).product_dir.is_dir()


def test_watch_reduces_a_changed_run(beamtime: Path) -> None:
    bt = Beamtime(beamtime, _opts())
    stop = threading.Event()
    thread = threading.Thread(target=bt.serve, kwargs={"stop": stop}, daemon=True)
    thread.start()
    try:
        deadline = time.time() + 60
        while time.time() < deadline and len(bt.runs) < 2:
            time.sleep(0.2)
        st = bt.runs[(beamtime / "run-b" / "run.yaml").resolve()]
        n = st.reductions
        cfg_path = st.config
        d = yaml.safe_load(cfg_path.read_text(encoding="utf-8"))
        d["xanes"]["fit_range_eV"] = [-22.0, 58.0]
        cfg_path.write_text(yaml.safe_dump(d), encoding="utf-8")
        while time.time() < deadline and st.reductions == n:
            time.sleep(0.2)
        assert st.reductions == n + 1 and st.products.get("xanes") == "written"
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive()


def test_lock_refuses_a_second_reducer(beamtime: Path) -> None:
    cfg_path = beamtime / "run-a" / "run.yaml"
    cfg = load_config(cfg_path)
    with run_lock(cfg, command="test").hold():
        out = CliRunner().invoke(app, ["reduce", str(cfg_path), "--scheduler", "none"])
        assert out.exit_code == 1
        assert f"pid {os.getpid()} on {socket.gethostname()} since" in out.output, out.output
        bt = Beamtime(beamtime, _opts(state_file=None))  # no memory: it must reduce
        bt.sweep()
        st = bt.runs[cfg_path.resolve()]
        assert st.state == "locked" and str(os.getpid()) in st.reason
    bt.sweep()  # released: handled on the next pass
    assert bt.runs[cfg_path.resolve()].state in ("up to date", "reduced")


def test_stale_lock_of_a_killed_process_is_taken_over(beamtime: Path) -> None:
    cfg = load_config(beamtime / "run-b" / "run.yaml")
    code = ("import time; from operando.config import load_config; "
            "from pipelines.lock import run_lock; "
            f"lock = run_lock(load_config({str(beamtime / 'run-b' / 'run.yaml')!r}), "
            "'holder').acquire(); print('held', flush=True); time.sleep(60)")
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}"}
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, env=env,
                            text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        lock = run_lock(cfg)
        with pytest.raises(Exception, match=f"pid {proc.pid}"):
            lock.acquire(0)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    lock.acquire(5)
    try:
        assert lock.taken_over is not None and lock.taken_over.pid == proc.pid
        assert lock.taken_over.alive() is False
    finally:
        lock.release()


def test_sweep_flow_reports_the_runs(beamtime: Path) -> None:
    """The scheduled deployment's flow: one pass, run → state."""
    from pipelines.deploy import beamtime_sweep

    states = beamtime_sweep(str(beamtime), quiet_s=0.0, scheduler="none")
    assert states == {"run-a": "up to date", "run-b": "up to date"}


def test_passes_remember_runs_between_processes(small_run, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Each `serve --once` pass is a new process (a new Beamtime): the memory in
    .operando/serve-state.json keeps a failed run from being retried until it changes, and
    a finished run's flow from being started while its products are current."""
    import pipelines.reduce as reduce_mod
    import pipelines.serve as serve_mod

    good = _make_run(small_run, tmp_path / "good", "good")
    bad = _make_run(small_run, tmp_path / "bad", "bad")
    mpt = bad.parent / "echem" / "cell.mpt"
    text = mpt.read_bytes()
    mpt.write_text("not a cycler file\n", encoding="utf-8")
    calls: list[str] = []
    real = reduce_mod.reduce_run

    def counting(cfg, **kw):
        calls.append(cfg.run.name)
        return real(cfg, **kw)

    monkeypatch.setattr(reduce_mod, "reduce_run", counting)

    def one_pass(**kw) -> dict[str, object]:
        bt = Beamtime(tmp_path, _opts(**kw))
        bt.sweep()
        return {st.config.parent.name: st for st in bt.runs.values()}

    first = one_pass()
    assert calls == ["bad", "good"] or sorted(calls) == ["bad", "good"]
    assert first["bad"].state == "failed" and first["good"].state == "reduced"
    assert (tmp_path / ".operando" / "serve-state.json").is_file()
    calls.clear()
    again = one_pass()  # nothing changed: no flow started, the failure is remembered
    assert calls == []
    assert again["bad"].state == "failed" and again["bad"].failures == 1
    assert again["bad"].reason == first["bad"].reason
    assert again["good"].state == "up to date"
    assert one_pass(retry_failed=True)["bad"].failures == 2 and calls == ["bad"]
    calls.clear()
    xanes = load_config(good).product_dir / "xanes.nc"
    xanes.unlink()  # a product gone: the finished run is reduced again
    assert one_pass()["good"].state == "reduced" and calls == ["good"] and xanes.is_file()
    calls.clear()
    mpt.write_bytes(text)  # fixed: retried on its change
    fixed = one_pass()
    assert calls == ["bad"] and fixed["bad"].state == "reduced"
    assert fixed["bad"].failures == 2  # the count of failures so far is kept
    calls.clear()
    monkeypatch.setattr(serve_mod, "code_version", lambda: "new-code")
    one_pass()  # a new operando version looks at every run again (the flow decides)
    assert sorted(calls) == ["bad", "good"]
    (tmp_path / ".operando" / "serve-state.json").write_text("{not json", encoding="utf-8")
    calls.clear()
    assert one_pass()["good"].state == "up to date"  # damaged memory: starts afresh
    assert sorted(calls) == ["bad", "good"]
