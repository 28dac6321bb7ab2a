"""`operando demo` end to end (Prefect embedded, no server) and `operando simulate`."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from operando.simulate.echem import simulate_echem
from operando.simulate.presets import get_preset


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, COLUMNS="200", NO_COLOR="1")
    return subprocess.run([sys.executable, "-m", "operando", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=600)


def test_demo_command_simulates_and_reduces(tmp_path: Path) -> None:
    proc = _run("demo", "--workdir", str(tmp_path / "w"), "--preset", "small", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    raw = tmp_path / "w" / "raw"
    for rel in ("run.yaml", "truth.json", "echem/cell.mpt", "echem/triggers.txt",
                "xrd/xrd_0001.h5", "xanes/xanes_scans.h5", "confocal/confocal.h5",
                "confocal/confocal_ed.h5",
                "kinetics/seccm_map.h5"):
        assert (raw / rel).is_file(), rel
        assert Path(rel).name in out, rel
    # the echem table: four segments, charge passed as simulated
    spec = get_preset("small").echem
    q_mAh = simulate_echem(spec).charge_C.max() / 3.6
    for kind in ("charge", "rest", "discharge"):
        assert kind in out
    assert f"{q_mAh:.4f}" in out
    # every stream's work units ran through the runner (Prefect's INFO lines, with the
    # flow-run state, are off by default: -v shows them)
    units = " ".join(out.split())
    for stream in ("xrd", "peaks", "confocal", "xanes", "kinetics"):
        assert re.search(rf"\b{stream} [1-9][0-9]* computed / 0 cached", units), stream
    reduced = tmp_path / "w" / "reduced" / "sim-small-seed0"
    for fig in ("echem.png", "sync.png", "xrd.png", "peaks.png", "confocal.png", "xanes.png",
                "kinetics_ip.png", "kinetics_map.png"):
        png = reduced / "report" / fig
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and str(png) in out.replace("\n", "")
    # products written (their physics is checked in test_reduce.py) and the clock printed
    for product in ("echem.nc", "xrd.nc", "peaks.nc", "confocal.nc", "xanes.nc", "kinetics.nc"):
        assert (reduced / product).stat().st_size > 0 and product in out
    assert "clock (triggers): offset 1.70" in out and "3 missing, 1 spurious" in out
    assert "recovered vs the simulator's ground truth" in out
    # it ends with the run report's path
    index = reduced / "report" / "index.html"
    assert index.is_file() and str(index.resolve()) in out.replace("\n", "")


def test_simulate_command_and_bad_preset(tmp_path: Path) -> None:
    proc = _run("simulate", str(tmp_path / "s"), "--preset", "small", "--seed", "7",
                "--stream", "kinetics", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    truth = json.loads((tmp_path / "s" / "truth.json").read_text())
    assert truth["seed"] == 7 and "kinetics" in truth and "xrd" not in truth
    bad = _run("simulate", str(tmp_path / "b"), "--preset", "huge", cwd=tmp_path)
    assert bad.returncode == 2 and "--preset: expected one of small, lfp-1c, lfp-10c" in \
        bad.stderr


@pytest.mark.parametrize("cmd", [["--version"], ["--help"]])
def test_cli_basics(cmd: list[str], tmp_path: Path) -> None:
    proc = _run(*cmd, cwd=tmp_path)
    assert proc.returncode == 0 and "operando" in proc.stdout
