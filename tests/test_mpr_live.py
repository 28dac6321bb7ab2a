"""A BioLogic ``.mpr`` still being written: read for its complete records, its start from the
config's ``echem.start_time`` or EC-Lab's ``.mpl`` log, and the reader says which.

The "still being written" files are made here from the real, finished ones of
``../shared/data/echem`` (the ``shared_data`` fixture skips without them): EC-Lab appends the
LOG module (and the loop module) only when the experiment ends, so a live file is the
finished one without those modules, and one caught mid-append is also cut inside its data
module. Expected values come from galvani reading the finished file whole.
"""

from __future__ import annotations

import io
import warnings
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from galvani import BioLogic

from operando.config import ConfigError, validate_config
from operando.io.echem.biologic import read_mpt_file
from operando.io.echem.biologic_mpl import read_mpl_start
from operando.io.echem.biologic_mpr import data_layout, read_mpr, read_mpr_file
from operando.io.echem.read import read_echem
from operando.io.echem.schema import EchemFormatError

pytestmark = pytest.mark.realdata

NAMES = ("cv", "gcpl.issue_149", "mb.issue_95", "ocv")
TZ = "Europe/Paris"


# --------------------------------------------------------------------------- building files


def _modules(raw: bytes) -> dict[str, dict]:
    """galvani's module headers by short name, with where each module starts (its magic)."""
    buf = io.BytesIO(raw)
    buf.seek(len(BioLogic.MPR_MAGIC))
    out = {}
    for m in BioLogic.read_VMP_modules(buf, read_module_data=False):
        hdr = BioLogic.VMPmodule_hdr_v2 if "max length" in m else BioLogic.VMPmodule_hdr_v1
        m["header_at"] = int(m["offset"]) - hdr.itemsize
        m["magic_at"] = m["header_at"] - len(b"MODULE")
        m["hdr"] = hdr
        out[bytes(m["shortname"]).decode().strip()] = m
    return out


def _record_layout(path: Path) -> tuple[int, int, int]:
    """(offset of the first record in the file, record size, records) from galvani alone."""
    mpr = BioLogic.MPRfile(str(path))
    data = _modules(path.read_bytes())["VMP data"]
    n, size = int(mpr.npts[0]), mpr.dtype.itemsize
    return int(data["offset"]) + int(data["length"]) - n * size, size, n


def _without_log(raw: bytes) -> bytes:
    """The file as EC-Lab leaves it while acquiring: no LOG (and no loop) module."""
    return raw[:_modules(raw)["VMP LOG"]["magic_at"]]


def _mpl_text(mpt: Path, start_line: str | None = None) -> str:
    """EC-Lab's log in its own layout: the export's header lines under 'EC-Lab LOG FILE'
    (the export adds 'Nb header lines' and the column line; the log has neither)."""
    lines = list(read_mpt_file(mpt).header_lines[2:])
    if start_line is not None:
        lines = [start_line if ln.startswith("Acquisition started on") else ln for ln in lines]
    return "\r\n".join(["EC-Lab LOG FILE", *lines]) + "\r\n"


@pytest.fixture(scope="module")
def full(shared_data: Path) -> dict[str, xr.Dataset]:
    return {n: read_echem(shared_data / "echem" / f"{n}.mpr", timezone=TZ) for n in NAMES}


def _same_rows(ds: xr.Dataset, ref: xr.Dataset, n: int) -> None:
    assert ds.sizes["echem_time"] == n
    for name in ref.data_vars:
        np.testing.assert_array_equal(ds[name].values, ref[name].values[:n], err_msg=name)
    np.testing.assert_array_equal(ds["time_s"].values, ref["time_s"].values[:n])


# --------------------------------------------------------------------------- data


def test_layout_agrees_with_galvani_on_every_real_file(shared_data: Path) -> None:
    # the whole-record cut relies on where records start: it must be galvani's own offset
    for name in NAMES:
        path = shared_data / "echem" / f"{name}.mpr"
        raw = path.read_bytes()
        data = _modules(raw)["VMP data"]
        body = raw[int(data["offset"]):int(data["offset"]) + int(data["length"])]
        ids, first = data_layout(body, int(data["version"]))
        start, size, n = _record_layout(path)
        assert int(data["offset"]) + first == start, name
        assert BioLogic.VMPdata_dtype_from_colIDs(ids)[0].itemsize == size, name
        assert int.from_bytes(body[:4], "little") == n, name


@pytest.mark.parametrize("name", NAMES)
def test_without_log_module_the_data_are_the_finished_files(
        shared_data: Path, tmp_path: Path, full: dict[str, xr.Dataset], name: str) -> None:
    ref = full[name]
    live = tmp_path / f"{name}.mpr"
    live.write_bytes(_without_log((shared_data / "echem" / f"{name}.mpr").read_bytes()))
    f = read_mpr_file(live)
    assert f.acquisition_start is None and f.still_written == "no LOG module yet"
    start = ref.attrs["acquisition_start"]  # the LOG module's, with its offset
    with pytest.warns(UserWarning, match=rf"{name}\.mpr: no LOG module yet: acquisition "
                                         r"start .* from config echem\.start_time"):
        ds = read_echem(live, timezone=TZ, start_time=start)
    _same_rows(ds, ref, ref.sizes["echem_time"])
    np.testing.assert_array_equal(ds["time_utc"].values, ref["time_utc"].values)
    assert ds.attrs["start_time_source"] == "config echem.start_time"
    assert ref.attrs["start_time_source"] == "LOG module"
    assert "start_time_notes" not in ref.attrs


def test_cut_mid_record_reads_complete_records_only(shared_data: Path, tmp_path: Path,
                                                    full: dict[str, xr.Dataset]) -> None:
    src = shared_data / "echem" / "cv.mpr"
    raw = _without_log(src.read_bytes())
    first, size, n = _record_layout(src)
    ref = full["cv"]
    start = ref.attrs["acquisition_start"]
    for k, extra in ((n * 2 // 3, size // 2), (1, size - 1), (n - 1, 1)):
        live = tmp_path / f"cut_{k}.mpr"
        live.write_bytes(raw[:first + k * size + extra])  # k whole records and a piece
        f = read_mpr_file(live)
        assert (f.n_records, f.records_declared, f.pending_bytes) == (k, n, extra)
        with pytest.warns(UserWarning, match=rf"{k} complete records of {n} declared"):
            ds = read_echem(live, timezone=TZ, start_time=start)
        _same_rows(ds, ref, k)
        assert ds.attrs["mpr_records_declared"] == [n]
    # no complete record yet: one clear error, not a half record
    live = tmp_path / "cut_0.mpr"
    live.write_bytes(raw[:first + size - 1])
    with pytest.raises(EchemFormatError, match=r"cut_0\.mpr: no data rows"), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")
        read_echem(live, timezone=TZ, start_time=start)


def test_header_behind_the_records_and_a_log_module_being_appended(
        shared_data: Path, tmp_path: Path, full: dict[str, xr.Dataset]) -> None:
    src = shared_data / "echem" / "gcpl.issue_149.mpr"  # EC-Lab 11.50 module headers
    raw = src.read_bytes()
    mods = _modules(raw)
    first, size, n = _record_layout(src)
    ref = full["gcpl.issue_149"]
    start = ref.attrs["acquisition_start"]
    # records appended beyond what the data module's header counts yet: only those counted
    data = mods["VMP data"]
    k = n - 5
    head = bytearray(raw[:first + (n - 2) * size + 7])
    at = data["header_at"] + data["hdr"].fields["length"][1]
    head[at:at + 4] = (first - int(data["offset"]) + k * size).to_bytes(4, "little")
    head[int(data["offset"]):int(data["offset"]) + 4] = k.to_bytes(4, "little")
    lag = tmp_path / "lag.mpr"
    lag.write_bytes(bytes(head))
    with pytest.warns(UserWarning):
        _same_rows(read_echem(lag, timezone=TZ, start_time=start), ref, k)
    # EC-Lab ending the run: the LOG module only partly appended is left out
    log = mods["VMP LOG"]
    for cut in (log["magic_at"] + 20, int(log["offset"]) + 100):
        ending = tmp_path / f"ending_{cut}.mpr"
        ending.write_bytes(raw[:cut])
        f = read_mpr_file(ending)
        assert f.acquisition_start is None and "incomplete" in f.still_written
        assert f.n_records == n
    # a file cut before its data module is damaged, not live: refused as before
    cut = tmp_path / "settings_cut.mpr"
    cut.write_bytes(raw[:mods["VMP data"]["magic_at"] - 10])
    with pytest.raises(EchemFormatError, match=r"settings_cut\.mpr: galvani could not read"):
        read_mpr_file(cut)


# --------------------------------------------------------------------------- the start


def test_start_from_the_mpl_log_in_eclab_layout(shared_data: Path, tmp_path: Path,
                                                full: dict[str, xr.Dataset]) -> None:
    ref = full["gcpl.issue_149"]
    live = tmp_path / "cell_C01.mpr"
    live.write_bytes(_without_log((shared_data / "echem" / "gcpl.issue_149.mpr").read_bytes()))
    mpl = live.with_suffix(".mpl")
    mpl.write_bytes(_mpl_text(shared_data / "echem" / "gcpl.issue_149.mpt").encode("latin-1"))
    log = read_mpl_start(mpl)
    assert log.start == datetime(2024, 1, 10, 11, 2, 29, 886000)
    assert mpl.read_text(encoding="latin-1").splitlines()[log.line - 1].startswith(
        "Acquisition started on : 01/10/2024")
    with pytest.warns(UserWarning, match=rf"from cell_C01\.mpl \(line {log.line}\)"):
        ds = read_echem(live, timezone=TZ)
    np.testing.assert_array_equal(ds["time_utc"].values, ref["time_utc"].values)
    assert ds.attrs["start_time_source"] == f"cell_C01.mpl (line {log.line})"
    assert ds.attrs["start_time_files"] == [str(mpl)]
    assert ds.attrs["acquisition_start"] == ref.attrs["acquisition_start"]
    # the config's start comes first; a .mpl that disagrees with it is said
    later = "2024-01-10T11:02:39.886"
    with pytest.warns(UserWarning) as seen:
        ds = read_echem(live, timezone=TZ, start_time=later)
    assert ds.attrs["start_time_source"] == "config echem.start_time"
    assert "start_time_files" not in ds.attrs
    assert any(f"differs from cell_C01.mpl (line {log.line})" in str(w.message) and
               "+10.000 s; the config is used" in str(w.message) for w in seen)
    shift = ds["time_utc"].values - ref["time_utc"].values
    assert np.all(shift == np.timedelta64(10, "s"))
    # read_mpr reads the same way
    with pytest.warns(UserWarning):
        assert read_mpr(live, timezone=TZ).attrs["start_time_source"].startswith("cell_C01.mpl")


def test_no_start_anywhere_is_one_clear_error(shared_data: Path, tmp_path: Path) -> None:
    live = tmp_path / "run_C02.mpr"
    live.write_bytes(_without_log((shared_data / "echem" / "ocv.mpr").read_bytes()))
    with pytest.raises(EchemFormatError) as err:
        read_echem(live, timezone=TZ)
    text = str(err.value)
    assert text.startswith(f"{live}: no LOG module")
    for part in ("still being written", "echem.start_time", "run_C02.mpl",
                 "'Acquisition started on'", "found neither"):
        assert part in text, part
    # the library without a start keeps time_utc NaT with a note (never guessed)
    f = read_mpr_file(live)
    assert f.acquisition_start is None


def test_mpl_errors_name_file_and_line(shared_data: Path, tmp_path: Path) -> None:
    mpt = shared_data / "echem" / "ocv.mpt"
    bad = tmp_path / "a.mpl"
    bad.write_text("EC-Lab ASCII FILE\r\nAcquisition started on : 01/16/2020 14:13:34.000\r\n")
    with pytest.raises(EchemFormatError, match=r"a\.mpl: line 1: not an EC-Lab log file: "
                                               r"expected 'EC-Lab LOG FILE'"):
        read_mpl_start(bad)
    bad.write_text(_mpl_text(mpt, "Acquisition started on : 16.01.2020 14:13:34"),
                   encoding="latin-1")
    line = next(k for k, ln in enumerate(bad.read_text(encoding="latin-1").splitlines(), 1)
                if ln.startswith("Acquisition started on"))
    with pytest.raises(EchemFormatError, match=rf"a\.mpl: line {line}: 'Acquisition started "
                                               r"on': unrecognised date '16\.01\.2020"):
        read_mpl_start(bad)
    bad.write_text("EC-Lab LOG FILE\r\n\r\nOpen Circuit Voltage\r\nAcquisition started at : "
                   "xo = 0.000\r\n")  # the cell characteristic is not the start
    with pytest.raises(EchemFormatError, match=r"a\.mpl: no line 'Acquisition started on"):
        read_mpl_start(bad)
    # a bad log beside a live .mpr is that error, naming the log
    live = tmp_path / "a.mpr"
    live.write_bytes(_without_log((shared_data / "echem" / "ocv.mpr").read_bytes()))
    with pytest.raises(EchemFormatError, match=r"a\.mpl: no line"):
        read_echem(live, timezone=TZ)


def test_log_module_wins_over_the_config_and_a_disagreement_is_said(
        shared_data: Path, tmp_path: Path, full: dict[str, xr.Dataset]) -> None:
    path = shared_data / "echem" / "ocv.mpr"
    ref = full["ocv"]
    log_start = datetime.fromisoformat(ref.attrs["acquisition_start"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # within a second: agreement, nothing said
        ds = read_echem(path, timezone=TZ, start_time=(log_start + timedelta(seconds=0.4))
                        .isoformat())
    assert ds.attrs["start_time_source"] == "LOG module" and "start_time_notes" not in ds.attrs
    off = log_start + timedelta(seconds=5)
    with pytest.warns(UserWarning, match=r"agrees with no file's own start: the nearest, "
                                         r"ocv\.mpr \(LOG module: .*\), is \+5\.000 s away; "
                                         r"the files' own starts are used"):
        ds = read_echem(path, timezone=TZ, start_time=off.isoformat())
    np.testing.assert_array_equal(ds["time_utc"].values, ref["time_utc"].values)
    assert ds.attrs["start_time_source"] == "LOG module"
    assert len(ds.attrs["start_time_notes"]) == 1
    # the same instant written in UTC agrees
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_echem(path, timezone=TZ, start_time=ref.attrs["acquisition_start_utc"])


def test_one_start_time_for_two_files_without_log_is_ambiguous(
        shared_data: Path, tmp_path: Path) -> None:
    a, b = tmp_path / "a.mpr", tmp_path / "b.mpr"
    a.write_bytes(_without_log((shared_data / "echem" / "cv.mpr").read_bytes()))
    b.write_bytes(_without_log((shared_data / "echem" / "ocv.mpr").read_bytes()))
    with pytest.raises(EchemFormatError, match=r"b\.mpr: 2 files have no LOG module \(a\.mpr, "
                                               r"b\.mpr\); echem\.start_time .* ambiguous"):
        read_echem([a, b], timezone=TZ, start_time="2020-01-16T14:13:34")
    # a finished file and a live one: the start goes to the live one
    with pytest.warns(UserWarning, match=r"b\.mpr: no LOG module yet"):
        ds = read_echem([shared_data / "echem" / "cv.mpr", b], timezone=TZ,
                        start_time="2020-01-16T14:13:34")
    assert ds.attrs["start_time_source"] == "cv.mpr: LOG module; b.mpr: config echem.start_time"


def test_config_start_time_is_checked_when_the_config_is_read(tmp_path: Path) -> None:
    import yaml

    def section(value: object) -> dict:
        return {"run": {"name": "r"}, "output": {"directory": str(tmp_path)},
                "echem": {"files": [str(tmp_path / "x.mpr")], "timezone": TZ,
                          "active_mass_mg": 1.0, "start_time": value}}

    ok = validate_config(section(yaml.safe_load("t: 2024-03-14 09:30:00")["t"]),
                         check_files=False)
    assert ok.echem.start_time == "2024-03-14T09:30:00"  # an unquoted YAML timestamp
    for value, message in [
        ("yesterday", r"echem\.start_time: expected an ISO-8601 date and time .* 'yesterday'"),
        (yaml.safe_load("t: 2024-03-14")["t"], r"echem\.start_time: expected a date and time"),
        ("2024-03-31T02:30:00", r"echem\.start_time: local time 2024-03-31T02:30:00 does not "
                                r"exist in Europe/Paris"),
    ]:
        with pytest.raises(ConfigError, match=message):
            validate_config(section(value), check_files=False)


def test_reduce_echem_stage_on_an_mpr_still_being_written(shared_data: Path,
                                                          tmp_path: Path) -> None:
    from pipelines.cache import product_state
    from pipelines.reduce import reduce_run

    raw = (shared_data / "echem" / "gcpl.issue_149.mpr").read_bytes()
    first, size, _ = _record_layout(shared_data / "echem" / "gcpl.issue_149.mpr")
    live = tmp_path / "raw" / "cell_C01.mpr"
    live.parent.mkdir()
    live.write_bytes(_without_log(raw)[:first + 100 * size + 3])  # 100 records and a piece
    mpl = live.with_suffix(".mpl")
    mpl.write_bytes(_mpl_text(shared_data / "echem" / "gcpl.issue_149.mpt").encode("latin-1"))
    cfg = validate_config({
        "run": {"name": "live"},
        "output": {"directory": str(tmp_path / "out"), "report": False},
        "echem": {"files": [str(live)], "timezone": TZ, "active_mass_mg": 1.0}})
    with pytest.warns(UserWarning, match=r"cell_C01\.mpl"):
        res = reduce_run(cfg, only=["echem"], scheduler="none")
    assert any("echem: cell_C01.mpr: no LOG module yet; 100 complete records of 132 "
               "declared, 3 bytes pending: acquisition start 2024-01-10T11:02:29.886 from "
               "cell_C01.mpl (line" in w for w in res.warnings), res.warnings
    with xr.open_dataset(res.products["echem"], engine="h5netcdf") as ds:
        assert ds.sizes["echem_time"] == 100
        assert ds.attrs["start_time_source"].startswith("cell_C01.mpl (line ")
        assert ds.attrs["acquisition_start"] == "2024-01-10T11:02:29.886+01:00"
    assert product_state(cfg, "echem").status == "fresh"
    # EC-Lab finishing the file deletes its log: the product is stale
    mpl.unlink()
    state = product_state(cfg, "echem")
    assert state.status == "stale" and any("cell_C01.mpl is gone" in r for r in state.reasons)


def test_echem_command_takes_the_start_of_a_live_mpr(shared_data: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from operando.cli import app

    live = tmp_path / "cell.mpr"
    live.write_bytes(_without_log((shared_data / "echem" / "ocv.mpr").read_bytes()))
    env = {"COLUMNS": "200", "NO_COLOR": "1"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = CliRunner().invoke(app, ["echem", str(live), "--tz", TZ, "--start-time",
                                       "2020-01-16T14:13:34"], env=env)
        assert res.exit_code == 0, res.output
        assert "start 2020-01-16T14:13:34.000+01:00" in res.output
        assert "from config echem.start_time" in res.output
        res = CliRunner().invoke(app, ["echem", str(live), "--tz", TZ], env=env)
    assert res.exit_code == 1 and "cell.mpr: no LOG module" in " ".join(res.output.split())
