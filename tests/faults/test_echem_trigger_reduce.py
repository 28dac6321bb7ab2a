"""Echem and trigger faults tried end to end through a reduce of the shared simulated
`small` run: each case copies the cycler files and the trigger record, damages them (or
the config), and reduces ``echem`` (with ``kinetics`` alongside when something fails: a
stream that does not depend on the damaged one goes on) in this process; what a user sees
is asserted — the error naming the file or key, what was expected and what was found, or
the QC warning of the run summary — and that no number is silently wrong."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml

from operando.echem.sync import ClockModel
from operando.io.echem.triggers import read_trigger_file, write_trigger_record
from operando.simulate.beamtime import load_truth
from pipelines.reduce import ReduceResult, reduce_run

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def truth(small_run) -> dict:
    return load_truth(small_run.truth_path)


def _case(small_run, tmp_path: Path, **config: object) -> Path:
    """A copy of the run in ``tmp_path/run``: ``echem/`` (cycler file, trigger record) and
    the config copied, the other raw folders linked; ``config`` updates the ``echem``
    section. Returns the config's path (products under ``tmp_path/run/reduced``)."""
    src, run = small_run.outdir, tmp_path / "run"
    run.mkdir()
    for item in src.iterdir():
        if item.name == "echem":
            shutil.copytree(item, run / "echem")
        elif item.is_dir():
            (run / item.name).symlink_to(item, target_is_directory=True)
    cfg = yaml.safe_load((src / "run.yaml").read_text(encoding="utf-8"))
    cfg["echem"].update(config)
    cfg["output"] = {"directory": "reduced", "overwrite": True, "report": False}
    path = run / "run.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return path


def _reduce(config: Path, *only: str) -> ReduceResult:
    return reduce_run(config, only=list(only), scheduler="none", raise_on_failure=False)


def _failed_alone(res: ReduceResult, stream: str, skipped: dict[str, str]) -> str:
    """The one failure of the run, its dependants skipped, kinetics written; the reason."""
    assert set(res.failed) == {stream}, res.failed
    assert res.skipped == skipped, res.skipped
    assert set(res.products) == {"kinetics"}, res.products
    assert not (res.product_dir / "echem.nc").exists()
    assert not list(res.product_dir.glob(".*.part"))
    why = res.failed[stream]
    assert "\n" not in why and "Traceback" not in why
    return why


def _rewrite_record(config: Path, keep: np.ndarray | None = None,
                    add: np.ndarray | None = None) -> tuple[Path, np.ndarray]:
    """The trigger record as a potentiostat that missed or added pulses writes it (its
    header consistent): the pulses ``keep`` selects, plus ``add`` (s)."""
    path = config.parent / "echem" / "triggers.txt"
    meta, t = read_trigger_file(path)
    new = t[keep] if keep is not None else t
    if add is not None:
        new = np.sort(np.concatenate([new, add]))
    write_trigger_record(path, new, source=meta["source"],
                         acquisition_start=datetime.fromisoformat(meta["acquisition_start"]))
    return path, t


def _clock_right(res: ReduceResult, truth: dict) -> ClockModel:
    """The clock of the written echem.nc within its uncertainty of the simulated one."""
    with xr.open_dataset(res.products["echem"], engine="h5netcdf") as ds:
        clock = ClockModel.from_attrs(ds.attrs)
    assert abs(clock.offset_s - truth["clock"]["offset_s"]) < max(5 * clock.offset_stderr_s,
                                                                  2e-3)
    assert abs(clock.drift_ppm - truth["clock"]["drift_ppm"]) < max(
        5 * clock.drift_stderr_ppm, 0.5)
    return clock


# --------------------------------------------------------------------------- .mpt


def test_mpt_cut_mid_line(small_run, tmp_path: Path) -> None:
    config = _case(small_run, tmp_path)
    mpt = config.parent / "echem" / "cell.mpt"
    data = mpt.read_bytes()
    start = [m.end() for m in re.finditer(rb"\n", data)][400]  # a data line: cut inside it
    cut = data[:start + 30]
    mpt.write_bytes(cut)
    line = cut.count(b"\n") + 1
    why = _failed_alone(_reduce(config, "echem", "kinetics"), "echem",
                        {"sync": "echem did not complete"})
    assert why.startswith(f"{mpt}: line {line} ("), why
    assert re.search(r"expected 12 tab-separated values \(one per column\), found \d+ "
                     r"\(file cut mid-line\?\)", why), why


def test_mpt_with_a_required_column_removed_through_the_cli(small_run,
                                                            tmp_path: Path) -> None:
    """`operando reduce` (in process): exit 1, the failing stream's line naming the file,
    the missing column and the columns present, the traceback left to the log file."""
    from typer.testing import CliRunner

    from operando.cli import app, expand_multi_value_options

    config = _case(small_run, tmp_path)
    mpt = config.parent / "echem" / "cell.mpt"
    lines = mpt.read_text(encoding="latin-1").splitlines()
    n_header = int(re.search(r"Nb header lines : (\d+)", lines[1])[1])
    col = lines[n_header - 1].split("\t").index("Ewe/V")
    for k in range(n_header - 1, len(lines)):
        fields = lines[k].split("\t")
        del fields[col]
        lines[k] = "\t".join(fields)
    mpt.write_text("\n".join(lines) + "\n", encoding="latin-1")
    res = CliRunner().invoke(app, expand_multi_value_options(
        ["reduce", str(config), "--scheduler", "none", "--only", "echem", "kinetics"]))
    assert res.exit_code == 1, res.output
    out = res.stderr
    assert "Traceback" not in res.output, res.output
    failed = [ln for ln in out.splitlines() if ln.startswith("echem failed:")]
    assert len(failed) == 1, out
    assert failed[0].startswith(f"echem failed: {mpt}: missing required column for voltage: "
                                "expected one of ['Ewe/V', "), out
    assert "columns present: ['mode', " in failed[0] and "'I/mA'" in failed[0], out
    assert "traceback(s) in " in out and "reduce.log" in out
    reduced = config.parent / "reduced" / "sim-small-seed0"
    assert (reduced / "kinetics.nc").is_file() and not (reduced / "echem.nc").exists()


# --------------------------------------------------------------------------- timezone


def test_unknown_timezone_through_the_cli(small_run, tmp_path: Path) -> None:
    """`python -m operando reduce`: refused before anything runs, exit 1, the key and the
    zone named, no traceback."""
    config = _case(small_run, tmp_path, timezone="Mars/Olympus_Mons")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT / "src"), str(ROOT), os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run([sys.executable, "-m", "operando", "reduce", str(config),
                        "--scheduler", "none"], capture_output=True, text=True, env=env,
                       cwd=tmp_path, timeout=300)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr + r.stdout
    assert f"{config}: echem.timezone: expected an IANA timezone name such as " \
           "'Europe/Paris' or 'UTC', found 'Mars/Olympus_Mons' (unknown timezone)" in r.stderr
    assert not (config.parent / "reduced").exists()


def test_wrong_timezone_is_a_sync_error_naming_the_key(small_run, tmp_path: Path) -> None:
    """A real zone, but not the potentiostat's (UTC for Europe/Paris: one hour off)."""
    config = _case(small_run, tmp_path, timezone="UTC")
    why = _failed_alone(_reduce(config, "echem", "kinetics"), "sync",
                        {"echem": "sync did not complete"})
    assert why.startswith("xrd frame triggers vs triggers.txt: only "), why
    assert re.search(r"only \d+ trigger pulses matched \(147 sent, 145 recorded; .*\); "
                     r"expected at least 73 ", why), why
    assert "echem.timezone right?" in why


# --------------------------------------------------------------------------- triggers


def test_missing_and_extra_pulses_are_matched_around(small_run, tmp_path: Path,
                                                     truth: dict) -> None:
    """Every fourth pulse lost and 25 spurious ones: the clock is still right, the lost
    and spurious pulses are on record in every product (``clock_unmatched_*``) and the run
    summary's clock line; none at an end, so no warning."""
    config = _case(small_run, tmp_path)
    rng = np.random.default_rng(3)
    _, t = read_trigger_file(config.parent / "echem" / "triggers.txt")
    keep = np.arange(t.size) % 4 != 1
    _rewrite_record(config, keep, rng.uniform(t[1], t[-2], 25))
    res = _reduce(config, "echem")
    assert not res.failed and set(res.products) == {"echem"}
    assert res.warnings == []
    clock = _clock_right(res, truth)
    assert clock.n_recorded == keep.sum() + 25
    # frames whose pulse was dropped (the simulator's own missing ones among them)
    assert len(clock.unmatched_sent) == (~keep).sum() + len(truth["clock"][
        "missing_trigger_index"])
    assert len(clock.unmatched_recorded) == 25 + len(truth["clock"]["spurious_trigger_time_s"])
    assert res.clock is not None and res.clock.n_matched == clock.n_matched


@pytest.mark.parametrize("case", ["record stops halfway", "record goes on after the frames"])
def test_frame_count_not_trigger_count(small_run, tmp_path: Path, truth: dict,
                                       case: str) -> None:
    """147 frames against 72 recorded pulses, or against 204: the products are written on
    a clock that is still right, and the run summary says which frames are timed by the
    clock extrapolated (or which pulses have no frame)."""
    config = _case(small_run, tmp_path)
    _, t = read_trigger_file(config.parent / "echem" / "triggers.txt")
    if case == "record stops halfway":
        _rewrite_record(config, np.arange(t.size) < t.size // 2)
    else:
        _rewrite_record(config, add=t[-1] + 30.0 * np.arange(1, 60))
    res = _reduce(config, "echem")
    assert not res.failed and set(res.products) == {"echem"}
    _clock_right(res, truth)
    assert len(res.warnings) == 1, res.warnings
    note = res.warnings[0]
    assert note.startswith("sync: xrd frame triggers vs triggers.txt: 147 frames, ")
    if case == "record stops halfway":
        assert re.search(r"72 pulses recorded; 73 of the 147 frames lie beyond the recorded "
                         r"pulses \(#74\.\.146 after the last\): timed by the clock "
                         r"extrapolated, not matched", note), note
    else:
        assert "204 pulses recorded; 59 of the 204 recorded pulses lie beyond the frames " \
               "(#145..203 after the last): frames missing from the files" in note, note
    assert "overhang" not in note
    # in the log too, which the run report lists
    assert "WARNING" in res.log_file.read_text() and note in res.log_file.read_text()


def test_edited_trigger_record_is_refused(small_run, tmp_path: Path) -> None:
    """Pulses deleted by hand (header's n_triggers unchanged): an error naming the file,
    the header's count and the count found."""
    config = _case(small_run, tmp_path)
    path = config.parent / "echem" / "triggers.txt"
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    first = lines.index("trigger_time_s\n") + 1
    path.write_text("".join(lines[:first + 10] + lines[first + 20:]), encoding="utf-8")
    why = _failed_alone(_reduce(config, "echem", "kinetics"), "sync",
                        {"echem": "sync did not complete"})
    assert why == (f"{path}: header says n_triggers = 145, found 135 trigger time(s): "
                   "truncated or edited copy?")


def test_too_few_pulses_is_a_sync_error(small_run, tmp_path: Path) -> None:
    config = _case(small_run, tmp_path)
    _rewrite_record(config, np.arange(145) < 3)
    why = _failed_alone(_reduce(config, "echem", "kinetics"), "sync",
                        {"echem": "sync did not complete"})
    assert why == ("xrd frame triggers vs triggers.txt: too few trigger pulses to fit a "
                   "clock: 147 sent (beamline) and 3 recorded (potentiostat); at least 5 of "
                   "each are needed (use sync.method 'timestamps' when there are no "
                   "triggers)")
