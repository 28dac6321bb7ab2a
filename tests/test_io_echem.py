"""The unified cycler reader: BioLogic .mpt/.mpr, Neware .nda, CSV — one schema.

Real files come from ``../shared/data/echem`` (the ``shared_data`` fixture skips without
them): each ``.mpr`` must agree with its own ``.mpt`` export to the digits the text keeps,
and the Neware file with NewareNDA's reference table.
"""

from __future__ import annotations

import re
import warnings
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from operando.echem.segments import add_segments, cumulative_trapezoid_C
from operando.io.echem.biologic import EchemFormatError, read_mpt, write_mpt
from operando.io.echem.biologic_mpr import read_mpr, read_mpr_file
from operando.io.echem.csv_table import read_echem_csv
from operando.io.echem.neware import neware_elapsed_time_s, read_neware
from operando.io.echem.read import detect_echem_format, read_echem
from operando.simulate.echem import EchemProfile, simulate_echem
from operando.simulate.eclab_export import simulated_cell_columns
from operando.simulate.presets import get_preset

PAIRS = ("cv", "gcpl.issue_149", "ocv", "mb.issue_95")
STANDARD = ("voltage_V", "current_A", "charge_C", "segment", "step", "cycle", "file_index")
EPS = np.finfo(float).eps


@pytest.fixture(scope="module")
def profile() -> EchemProfile:
    return simulate_echem(get_preset("small").echem)


@pytest.fixture(scope="module")
def sim_mpt(tmp_path_factory: pytest.TempPathFactory, profile: EchemProfile) -> Path:
    path = tmp_path_factory.mktemp("echem") / "sim_C01.mpt"
    return write_mpt(path, simulated_cell_columns(profile),
                     acquisition_start=datetime(2026, 3, 14, 9, 30))


def _write_csv(path: Path, profile: EchemProfile, *, sep: str = ",", comma: bool = False,
               extra_rows: list[str] | None = None, with_charge: bool = True) -> Path:
    head = ["time (s)", "Ewe (V)", "I (mA)", "Q (mAh)", "step", "label"]
    if not with_charge:
        head.remove("Q (mAh)")
    lines = ["# exported by a generic cycler", sep.join(head)]
    for k in range(profile.time_s.size):
        cells = [repr(float(profile.time_s[k])), repr(float(profile.voltage_V[k])),
                 repr(float(profile.current_A[k] * 1e3)),
                 repr(float(profile.charge_C[k] / 3.6)),
                 str(int(profile.segment_index[k])),
                 profile.segment_names[int(profile.segment_index[k])]]
        if not with_charge:
            del cells[3]
        if comma:
            cells = [c.replace(".", ",") for c in cells]
        lines.append(sep.join(cells))
    lines += extra_rows or []
    path.write_text("\n".join(lines) + "\n")
    return path


CSV_MAP = {"time_s": "time (s)", "voltage_V": "Ewe (V)", "current_A": "I (mA)",
           "current_scale": 1e-3, "charge_C": "Q (mAh)", "charge_scale": 3.6, "step": "step"}


# --------------------------------------------------------------------------- helpers


def _mpt_cells(path: Path, column: str) -> list[str]:
    """The raw text cells of one column of an EC-Lab export (as written, any locale)."""
    lines = path.read_bytes().decode("latin-1").replace("\r\n", "\n").split("\n")
    n = int(lines[1].split(":")[1])
    names = lines[n - 1].rstrip("\t").split("\t")
    j = names.index(column)
    return [row.split("\t")[j] for row in lines[n:] if row.strip()]


def _half_last_digit(cells: list[str]) -> np.ndarray:
    """Half a unit of the last written digit of each ``%.{d}E`` cell (its text precision)."""
    out = []
    for c in cells:
        m = re.fullmatch(r"[+-]?(\d)[.,](\d+)E([+-]\d+)", c.strip())
        assert m, c
        out.append(0.5 * 10.0 ** (int(m.group(3)) - len(m.group(2))))
    return np.asarray(out)


# --------------------------------------------------------------------------- .mpr vs .mpt


@pytest.mark.realdata
@pytest.mark.parametrize("name", PAIRS)
def test_mpr_and_mpt_of_one_experiment_agree(shared_data: Path, name: str) -> None:
    mpt_path = shared_data / "echem" / f"{name}.mpt"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        text = add_segments(read_echem(mpt_path, timezone="Europe/Berlin"))
        binary = add_segments(read_echem(shared_data / "echem" / f"{name}.mpr",
                                         timezone="Europe/Berlin"))
    assert text.attrs["formats"] == ["biologic-mpt"]
    assert binary.attrs["formats"] == ["biologic-mpr"]
    assert binary.sizes == text.sizes
    # same standard variables; every .mpr variable is one the .mpt reader also produces
    for ds in (text, binary):
        assert set(STANDARD) <= set(ds.data_vars)
    assert set(binary.variables) <= set(text.variables)
    # time, voltage, current: equal to the last digit the text export keeps
    t_col = "time/s"
    v_col = next(c for c in ("Ewe/V", "<Ewe>/V") if c in _mpt_header(mpt_path))
    checks = [("time_s", t_col, 1.0), ("voltage_V", v_col, 1.0)]
    i_col = next((c for c in ("I/mA", "<I>/mA") if c in _mpt_header(mpt_path)), None)
    if i_col is not None:
        checks.append(("current_A", i_col, 1e-3))
    else:  # ocv: no current column in either file
        np.testing.assert_array_equal(binary.current_A, 0.0)
    for var, col, scale in checks:
        a, b = text[var].values, binary[var].values
        tol = _half_last_digit(_mpt_cells(mpt_path, col)) * scale + 4 * EPS * np.abs(a)
        excess = np.abs(a - b) - tol
        assert excess.max() <= 0, (var, int(excess.argmax()), a[excess.argmax()])
    # the other shared variables: integers equal, floats to their 8-digit text precision
    for var in binary.data_vars:
        a, b = text[var].values, binary[var].values
        if a.dtype.kind in "iuUO":
            np.testing.assert_array_equal(a, b, err_msg=var)
        else:
            np.testing.assert_allclose(b, a, rtol=5e-8, atol=1e-12, err_msg=var)
    # same absolute time to the ms (the binary's start is the LOG module's OLE date)
    dt_ns = np.abs((text.time_utc.values - binary.time_utc.values) / np.timedelta64(1, "ns"))
    assert dt_ns.max() < 1e6
    assert binary.attrs["acquisition_start"] == text.attrs["acquisition_start"]


def _mpt_header(path: Path) -> list[str]:
    lines = path.read_bytes().decode("latin-1").replace("\r\n", "\n").split("\n")
    return lines[int(lines[1].split(":")[1]) - 1].rstrip("\t").split("\t")


@pytest.mark.realdata
def test_mpr_without_current_column_gets_eclab_average_current(shared_data: Path) -> None:
    # gcpl.issue_149.mpr stores dq/mA.h but no current; the export's <I>/mA is dq / dt
    f = read_mpr_file(shared_data / "echem" / "gcpl.issue_149.mpr")
    assert "I/mA" not in f.columns and "<I>/mA" not in f.columns
    ds = add_segments(read_mpr(shared_data / "echem" / "gcpl.issue_149.mpr", timezone="UTC"))
    assert "dq/mA.h" in ds.current_A.attrs["source"]
    assert "half cycle" in ds.cycle.attrs["source"]
    np.testing.assert_array_equal(ds.cycle.values[[0, 43, 44, 77, 110, 131]], [0, 0, 1, 2, 3, 3])
    seg = ds.segment.values
    assert np.abs(ds.current_A.values[seg != "rest"]).max() == pytest.approx(30e-6, rel=0.01)


# --------------------------------------------------------------------------- Neware


@pytest.mark.realdata
def test_neware_matches_reference_table(shared_data: Path) -> None:
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    ref = pd.read_feather(shared_data / "echem" / "new_nda_file.ftr")
    assert len(ref) == 439
    ds = add_segments(read_echem(shared_data / "echem" / "new_nda_file.nda",
                                 timezone="Asia/Shanghai"))
    assert ds.attrs["formats"] == ["neware"] and ds.sizes["echem_time"] == 439
    np.testing.assert_array_equal(ds.record_index.values, ref["Index"].to_numpy())
    np.testing.assert_array_equal(ds.voltage_V.values, ref["Voltage"].to_numpy().astype(float))
    np.testing.assert_allclose(ds.current_A.values,
                               ref["Current(mA)"].to_numpy().astype(float) * 1e-3, rtol=1e-15)
    np.testing.assert_array_equal(ds.cycle.values, ref["Cycle"].to_numpy().astype(int) - 1)
    np.testing.assert_array_equal(ds.status.values, ref["Status"].astype(str).to_numpy())
    np.testing.assert_array_equal(ds.step_count.values, ref["Step"].to_numpy())
    # time_s: step times laid end to end, from 0 at the first record
    step_time = ref["Time"].to_numpy().astype(float)
    first = np.r_[True, np.diff(ref["Step"].to_numpy()) != 0]
    t = ds.time_s.values
    assert t[0] == 0.0 and np.all(np.diff(t) >= 0)
    np.testing.assert_allclose(np.diff(t)[~first[1:]], np.diff(step_time)[~first[1:]],
                               atol=2e-3)
    np.testing.assert_allclose(t[first][1:], t[np.flatnonzero(first)[1:] - 1], atol=1e-9)
    last_of_step = np.r_[np.flatnonzero(first)[1:] - 1, len(ref) - 1]
    assert t[-1] == pytest.approx(step_time[last_of_step].sum(), abs=5e-3)  # 721.6 s
    # time_utc: the Timestamp (whole seconds, local) localised in the given zone
    wall = (ref["Timestamp"].to_numpy().astype("datetime64[ns]")
            - np.timedelta64(8, "h"))  # Asia/Shanghai, UTC+8, no DST in 2020
    lag = (wall - ds.time_utc.values) / np.timedelta64(1, "s")
    assert np.abs(lag).max() <= 1.0
    assert ds.time_utc.values[0] == np.datetime64("2020-03-25T03:16:50", "ns")
    # charge: the cycler's per-step capacities continued over the steps ...
    net = (ref["Charge_Capacity(mAh)"] - ref["Discharge_Capacity(mAh)"]).to_numpy(float)
    q_mAh = ds.charge_C.values / 3.6
    for a, b in zip(np.flatnonzero(first), last_of_step, strict=True):
        assert q_mAh[b] - q_mAh[a] == pytest.approx(net[b] - net[a], abs=1e-12)
    # ... and against ∫I dt: trapezoid error per interval <= |ΔI|·Δt/2 (monotone current)
    i = ds.current_A.values
    trap = cumulative_trapezoid_C(t, i)
    bound = np.r_[0.0, np.cumsum(np.abs(np.diff(i)) * np.diff(t) / 2)] + 1e-9
    assert np.all(np.abs(ds.charge_C.values - trap) <= bound)
    assert ds.charge_C.values[-1] / 3.6 == pytest.approx(-6.378e-3, rel=1e-3)  # net discharge
    # segments from the current sign and the Rest status
    seg = ds.segment.values
    assert np.all(seg[ds.status.values == "Rest"] == "rest")
    assert np.all(i[seg == "charge"] > 0) and np.all(i[seg == "discharge"] < 0)


def test_neware_pause_between_steps_is_taken_from_timestamps() -> None:
    step_time = np.array([0.0, 10.0, 20.0, 0.0, 10.0, 0.0, 5.0])
    new_step = np.array([1, 0, 0, 1, 0, 1, 0], dtype=bool)
    # a 100 s pause before the second step; the timestamps carry 0.4 s of rounding noise
    wall = np.array([0.0, 10.4, 20.0, 120.0, 130.0, 130.3, 135.0])
    t, pauses = neware_elapsed_time_s(new_step, step_time, wall)
    np.testing.assert_allclose(t, [0, 10, 20, 120, 130, 130, 135])
    assert len(pauses) == 1 and pauses[0][0] == 3 and pauses[0][1] == pytest.approx(100.0)
    t2, none = neware_elapsed_time_s(new_step, step_time, None)
    np.testing.assert_allclose(t2, [0, 10, 20, 20, 30, 30, 35])
    assert none == []


def test_neware_unreadable_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "cell.nda"
    bad.write_bytes(b"not a neware file at all" * 10)
    with pytest.raises(EchemFormatError, match=r"cell\.nda: NewareNDA could not read"):
        read_echem(bad, timezone="UTC")
    with pytest.raises(EchemFormatError, match=r"gone\.nda: no such file"):
        read_neware(tmp_path / "gone.nda", timezone="UTC")


# --------------------------------------------------------------------------- CSV


def test_csv_with_column_map_matches_known_profile(tmp_path: Path, profile: EchemProfile) -> None:
    p = _write_csv(tmp_path / "run.csv", profile)
    ds = add_segments(read_echem(p, timezone="Europe/Paris", columns=CSV_MAP,
                                 start_time="2026-03-14T09:30:00"))
    assert ds.attrs["formats"] == ["csv"]
    np.testing.assert_array_equal(ds.time_s.values, profile.time_s)
    np.testing.assert_array_equal(ds.voltage_V.values, profile.voltage_V)
    np.testing.assert_allclose(ds.current_A.values, profile.current_A, rtol=1e-15)
    np.testing.assert_allclose(ds.charge_C.values, profile.charge_C, rtol=1e-14, atol=1e-18)
    np.testing.assert_array_equal(ds.step.values, profile.segment_index)
    assert ds.time_utc.values[0] == np.datetime64("2026-03-14T08:30:00", "ns")  # CET
    # unmapped columns are carried, not dropped: text as text
    np.testing.assert_array_equal(
        ds.label.values, [profile.segment_names[int(k)] for k in profile.segment_index])
    assert ds.voltage_V.attrs["source"] == "Ewe (V)"
    assert ds.cycle.attrs["source"].startswith("absent")


def test_csv_equals_mpt_of_the_same_profile(tmp_path: Path, profile: EchemProfile,
                                            sim_mpt: Path) -> None:
    csv_ds = add_segments(read_echem(_write_csv(tmp_path / "run.csv", profile),
                                     timezone="Europe/Paris", columns=CSV_MAP,
                                     start_time=datetime(2026, 3, 14, 9, 30)))
    mpt_ds = add_segments(read_echem(sim_mpt, timezone="Europe/Paris"))
    for name in ("voltage_V", "current_A", "charge_C"):
        np.testing.assert_allclose(csv_ds[name], mpt_ds[name], rtol=1e-7, atol=1e-12)
    for name in ("segment", "step", "cycle", "time_s", "time_utc"):
        np.testing.assert_array_equal(csv_ds[name].values, mpt_ds[name].values)
    _assert_same_schema(csv_ds, mpt_ds)


def test_csv_semicolon_decimal_comma_tsv_and_integrated_charge(tmp_path: Path,
                                                               profile: EchemProfile) -> None:
    ref = add_segments(read_echem_csv(_write_csv(tmp_path / "a.csv", profile), columns=CSV_MAP,
                                      timezone="UTC"))
    semi = add_segments(read_echem_csv(_write_csv(tmp_path / "b.csv", profile, sep=";", comma=True),
                                       columns=CSV_MAP, timezone="UTC"))
    tsv = add_segments(read_echem(_write_csv(tmp_path / "c.tsv", profile, sep="\t"),
                                  columns=CSV_MAP, timezone="UTC"))
    for ds in (semi, tsv):
        for name in ("time_s", "voltage_V", "current_A", "charge_C"):
            np.testing.assert_array_equal(ds[name].values, ref[name].values)
    assert semi.attrs["csv_delimiter"] == [";"] and tsv.attrs["csv_delimiter"] == ["\t"]
    no_q = {k: v for k, v in CSV_MAP.items() if not k.startswith("charge")}
    integ = add_segments(read_echem_csv(_write_csv(tmp_path / "d.csv", profile, with_charge=False),
                                        columns=no_q, timezone="UTC"))
    assert "trapezoid" in integ.charge_C.attrs["source"]
    err = 3 * abs(profile.current_A).max() * profile.spec.sample_period_s
    np.testing.assert_allclose(integ.charge_C, profile.charge_C, atol=err)


def test_csv_start_time_aware_naive_and_absent(tmp_path: Path, profile: EchemProfile) -> None:
    p = _write_csv(tmp_path / "run.csv", profile)
    aware = add_segments(read_echem(p, timezone="Europe/Paris", columns=CSV_MAP,
                                    start_time="2026-07-01T09:30:00+00:00"))
    assert aware.time_utc.values[0] == np.datetime64("2026-07-01T09:30:00", "ns")
    naive = add_segments(read_echem(p, timezone="Europe/Paris", columns=CSV_MAP,
                                    start_time=datetime(2026, 7, 1, 9, 30)))  # CEST
    assert naive.time_utc.values[0] == np.datetime64("2026-07-01T07:30:00", "ns")
    none = add_segments(read_echem(p, timezone="Europe/Paris", columns=CSV_MAP))
    assert np.all(np.isnat(none.time_utc.values))
    assert "start_time" in none.time_utc.attrs["note"]
    assert "acquisition_start" not in none.attrs
    with pytest.raises(ValueError, match=r"start_time: expected an ISO-8601.*'yesterday'"):
        read_echem(p, timezone="UTC", columns=CSV_MAP, start_time="yesterday")


def test_csv_trigger_column_is_exposed(tmp_path: Path) -> None:
    p = tmp_path / "trig.csv"
    p.write_text("t,E,I,TTL\n0,3.4,0.001,0\n1,3.41,0.001,1\n2,3.42,0.001,0\n3,3.43,0.001,1\n")
    ds = add_segments(read_echem(p, timezone="UTC",
                                 columns={"time_s": "t", "voltage_V": "E", "current_A": "I",
                                          "trigger": "TTL"}))
    np.testing.assert_array_equal(ds.trigger.values, [0, 1, 0, 1])
    np.testing.assert_array_equal(ds.time_s.values[ds.trigger.values == 1], [1.0, 3.0])
    assert "TTL" in ds.trigger.attrs["source"]


def test_csv_errors_name_file_key_and_column(tmp_path: Path, profile: EchemProfile) -> None:
    p = _write_csv(tmp_path / "run.csv", profile)
    with pytest.raises(EchemFormatError) as info:
        read_echem(p, timezone="UTC", columns={**CSV_MAP, "voltage_V": "Ewe/V"})
    msg = str(info.value)
    assert "run.csv" in msg and "columns.voltage_V" in msg and "'Ewe/V'" in msg
    assert "'Ewe (V)'" in msg and "'time (s)'" in msg  # the available columns are listed
    with pytest.raises(EchemFormatError, match=r"run\.csv: read as CSV.*column map"):
        read_echem(p, timezone="UTC")
    cut = _write_csv(tmp_path / "cut.csv", profile, extra_rows=["1e5,3.4"])
    with pytest.raises(EchemFormatError, match=r"cut\.csv: line \d+: expected 6 fields.*found "
                                                r"2 \(file cut mid-line\?\)"):
        read_echem(cut, timezone="UTC", columns=CSV_MAP)
    bad = _write_csv(tmp_path / "bad.csv", profile, extra_rows=["1e5,3.4x,0,0,0,rest"])
    with pytest.raises(EchemFormatError, match=r"bad\.csv: line \d+, column 'Ewe \(V\)' "
                                                r"\(columns\.voltage_V\).*'3\.4x'"):
        read_echem(bad, timezone="UTC", columns=CSV_MAP)
    with pytest.raises(EchemFormatError, match=r"several CSV files"):
        read_echem([p, cut], timezone="UTC", columns=CSV_MAP)


# ------------------------------------------------------------------ bad input, all readers


def test_non_monotonic_time_names_file_and_row(tmp_path: Path, profile: EchemProfile,
                                               sim_mpt: Path) -> None:
    lines = sim_mpt.read_bytes().decode("latin-1").split("\r\n")
    n = int(lines[1].split(":")[1])
    a, b = lines[n + 5].split("\t"), lines[n + 6].split("\t")
    a[7], b[7] = b[7], a[7]  # swap two time/s cells
    lines[n + 5], lines[n + 6] = "\t".join(a), "\t".join(b)
    p = tmp_path / "back.mpt"
    p.write_bytes("\r\n".join(lines).encode("latin-1"))
    with pytest.raises(EchemFormatError,
                       match=rf"back\.mpt: non-monotonic time at data row 7 \(line {n + 7}\)"):
        read_echem(p, timezone="UTC")
    c = _write_csv(tmp_path / "back.csv", profile, extra_rows=["1.0,3.4,0,0,0,rest"])
    with pytest.raises(EchemFormatError, match=r"back\.csv: non-monotonic time at data row "
                                                rf"{profile.time_s.size + 1} \(line \d+\)"):
        read_echem(c, timezone="UTC", columns=CSV_MAP)


def test_empty_and_header_only_files(tmp_path: Path, sim_mpt: Path) -> None:
    for name in ("empty.mpt", "empty.mpr", "empty.nda", "empty.csv"):
        (tmp_path / name).write_bytes(b"")
        with pytest.raises(EchemFormatError, match=rf"{re.escape(name)}: empty file"):
            read_echem(tmp_path / name, timezone="UTC", columns=None)
    with pytest.raises(EchemFormatError, match=r"empty\.mpt: empty file"):
        read_mpt(tmp_path / "empty.mpt", timezone="UTC")
    with pytest.raises(EchemFormatError, match=r"empty\.nda: NewareNDA could not read"):
        read_neware(tmp_path / "empty.nda", timezone="UTC")
    with pytest.raises(EchemFormatError, match=r"empty\.mpr: not a BioLogic \.mpr.*empty file"):
        read_mpr(tmp_path / "empty.mpr", timezone="UTC")
    lines = sim_mpt.read_bytes().decode("latin-1").split("\r\n")
    n = int(lines[1].split(":")[1])
    head = tmp_path / "header_only.mpt"
    head.write_bytes("\r\n".join(lines[:n]).encode("latin-1"))
    with pytest.raises(EchemFormatError, match=r"header_only\.mpt: no data rows"):
        read_echem(head, timezone="UTC")
    csv_head = tmp_path / "header_only.csv"
    csv_head.write_text("t,E,I\n")
    with pytest.raises(EchemFormatError, match=r"header_only\.csv: no data rows"):
        read_echem(csv_head, timezone="UTC",
                   columns={"time_s": "t", "voltage_V": "E", "current_A": "I"})
    comments = tmp_path / "comments.csv"
    comments.write_text("# nothing here\n\n")
    with pytest.raises(EchemFormatError, match=r"comments\.csv: empty file"):
        read_echem(comments, timezone="UTC",
                   columns={"time_s": "t", "voltage_V": "E", "current_A": "I"})


@pytest.mark.realdata
def test_mpt_cut_mid_line(shared_data: Path, tmp_path: Path) -> None:
    raw = (shared_data / "echem" / "gcpl.issue_149.mpt").read_bytes()
    # cut inside the last row's last number: the cell still parses ("3,0000") but is short
    short = tmp_path / "short.mpt"
    short.write_bytes(raw[:-16])
    assert raw[-22:-16].endswith(b"0")
    with pytest.raises(EchemFormatError, match=r"short\.mpt: line \d+ \(the last data row\) "
                                                r"looks cut mid-line: column 'cycle number'"):
        read_echem(short, timezone="UTC")
    # cut between cells: fewer values than columns
    last_tab = raw.rindex(b"\t")
    fewer = tmp_path / "fewer.mpt"
    fewer.write_bytes(raw[:last_tab - 40])
    with pytest.raises(EchemFormatError, match=r"fewer\.mpt: line \d+ \(data row 132\): "
                                                r"expected 29.*\(file cut mid-line\?\)"):
        read_echem(fewer, timezone="UTC")


def test_unknown_timezone_is_refused_by_every_reader(tmp_path: Path, sim_mpt: Path,
                                                     profile: EchemProfile) -> None:
    csv_path = _write_csv(tmp_path / "run.csv", profile)
    for call in (lambda: read_echem(sim_mpt, timezone="Mars/Olympus"),
                 lambda: read_mpt(sim_mpt, timezone="Mars/Olympus"),
                 lambda: read_echem(csv_path, timezone="Mars/Olympus", columns=CSV_MAP),
                 lambda: read_neware(tmp_path / "x.nda", timezone="Mars/Olympus"),
                 lambda: read_mpr(tmp_path / "x.mpr", timezone="Mars/Olympus")):
        with pytest.raises(ValueError, match=r"'Mars/Olympus' \(unknown timezone\)"):
            call()


@pytest.mark.realdata
def test_mpr_unknown_column_version_and_damage(shared_data: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from galvani import BioLogic

    src = shared_data / "echem" / "cv.mpr"
    raw = src.read_bytes()
    # a column ID the parser does not know (here: time/s, id 4, made unknown)
    table = dict(BioLogic.VMPdata_colID_dtype_map)
    del table[4]
    monkeypatch.setattr(BioLogic, "VMPdata_colID_dtype_map", table)
    with pytest.raises(EchemFormatError, match=r"cv\.mpr: unknown column .*Column ID 4"):
        read_echem(src, timezone="UTC")
    monkeypatch.undo()
    # an unknown data-module version: rewrite the version field of the data module header
    with src.open("rb") as fh:
        fh.seek(len(BioLogic.MPR_MAGIC))
        mod = next(m for m in BioLogic.read_VMP_modules(fh) if m["shortname"] == b"VMP data  ")
    hdr = BioLogic.VMPmodule_hdr_v1
    at = mod["offset"] - hdr.itemsize + hdr.fields["version"][1]
    assert int.from_bytes(raw[at:at + 4], "little") == 2
    v7 = tmp_path / "v7.mpr"
    v7.write_bytes(raw[:at] + (7).to_bytes(4, "little") + raw[at + 4:])
    with pytest.raises(EchemFormatError, match=r"v7\.mpr: galvani could not read.*version.*7"):
        read_echem(v7, timezone="UTC")
    # cut inside the settings module: damaged, refused (a file cut inside its data module
    # is one still being written, read for its complete records: tests/test_mpr_live.py)
    cut = tmp_path / "cut.mpr"
    cut.write_bytes(raw[:1000])
    with pytest.raises(EchemFormatError, match=r"cut\.mpr: galvani could not read"):
        read_echem(cut, timezone="UTC")
    fake = tmp_path / "fake.mpr"
    fake.write_bytes(b"EC-Lab but not binary")
    with pytest.raises(EchemFormatError, match=r"fake\.mpr: not a BioLogic \.mpr"):
        read_mpr(fake, timezone="UTC")


# --------------------------------------------------------------------------- dispatch, schema


@pytest.mark.realdata
def test_format_detection_and_mixing(shared_data: Path, tmp_path: Path, sim_mpt: Path) -> None:
    d = shared_data / "echem"
    assert detect_echem_format(d / "cv.mpt") == "biologic-mpt"
    assert detect_echem_format(d / "cv.mpr") == "biologic-mpr"
    assert detect_echem_format(d / "new_nda_file.nda") == "neware"
    renamed = tmp_path / "export.txt"  # an EC-Lab export under another suffix: by content
    renamed.write_bytes(sim_mpt.read_bytes())
    assert detect_echem_format(renamed) == "biologic-mpt"
    with pytest.raises(EchemFormatError, match=r"new_nda_file\.ftr: unknown cycler file format"):
        read_echem(d / "new_nda_file.ftr", timezone="UTC")
    with pytest.raises(EchemFormatError, match=r"different cyclers.*cv\.mpt: biologic-mpt.*"
                                                r"new_nda_file\.nda: neware"):
        read_echem([d / "cv.mpt", d / "new_nda_file.nda"], timezone="UTC")
    with pytest.raises(ValueError, match=r"columns is for CSV files only"):
        read_echem(d / "cv.mpt", timezone="UTC", columns=CSV_MAP)
    with pytest.raises(EchemFormatError, match=r"cv\.mpt: not a BioLogic \.mpr"):
        read_echem(d / "cv.mpt", timezone="UTC", format="biologic-mpr")
    with pytest.raises(ValueError, match=r"format: expected 'auto' or one of"):
        read_echem(d / "cv.mpt", timezone="UTC", format="gamry")  # type: ignore[arg-type]


@pytest.mark.realdata
def test_mpt_and_mpr_pieces_of_one_run_stitch(shared_data: Path, tmp_path: Path) -> None:
    # two BioLogic files given out of order: cv.mpr (2018) is placed before ocv.mpt (2020)
    ds = add_segments(read_echem([shared_data / "echem" / "cv.mpr",
                                  shared_data / "echem" / "ocv.mpt"], timezone="Europe/Paris"))
    assert ds.attrs["formats"] == ["biologic-mpr", "biologic-mpt"]  # ordered by start
    assert np.all(np.diff(ds.time_s.values) >= 0)
    assert ds.cycle.values[ds.file_index.values == 1].min() > ds.cycle.values[
        ds.file_index.values == 0].max()


@pytest.mark.realdata
def test_every_reader_returns_the_same_schema(shared_data: Path, tmp_path: Path,
                                              profile: EchemProfile) -> None:
    d = shared_data / "echem"
    sets = {
        "mpt": add_segments(read_echem(d / "gcpl.issue_149.mpt", timezone="UTC")),
        "mpr": add_segments(read_echem(d / "gcpl.issue_149.mpr", timezone="UTC")),
        "neware": add_segments(read_echem(d / "new_nda_file.nda", timezone="UTC")),
        "csv": add_segments(read_echem(_write_csv(tmp_path / "a.csv", profile), timezone="UTC",
                                       columns=CSV_MAP, start_time="2026-01-01T00:00:00")),
    }
    first = sets["mpt"]
    for name, ds in sets.items():
        _assert_same_schema(ds, first)
        # the product is NetCDF (h5netcdf): every reader's Dataset survives the round trip
        path = tmp_path / f"{name}.nc"
        ds.to_netcdf(path, engine="h5netcdf")
        with xr.open_dataset(path, engine="h5netcdf") as back:
            back.load()
        xr.testing.assert_equal(back, ds)  # values, dims, coords (NaT included)
        for var in ds.variables:
            assert back[var].attrs == ds[var].attrs, (name, var)


def _assert_same_schema(ds: xr.Dataset, ref: xr.Dataset) -> None:
    assert list(ds.dims) == ["echem_time"]
    assert set(ds.coords) == {"time_s", "time_utc"}
    for name in (*STANDARD, "time_s", "time_utc"):
        assert ds[name].dtype.kind == ref[name].dtype.kind, name
        for key in ("units", "long_name"):
            assert ds[name].attrs.get(key) == ref[name].attrs.get(key), (name, key)
    assert ds.time_utc.dtype == np.dtype("datetime64[ns]")
    assert ds.time_utc.encoding["units"].startswith("nanoseconds since 1970")
    assert set(np.unique(ds.segment.values)) <= {"charge", "discharge", "rest"}
    for name, var in ds.variables.items():
        assert "long_name" in var.attrs, name
        assert "units" in var.attrs or "units" in var.encoding, name
    for key in ("source_files", "formats", "timezone", "clock", "file_start_offsets_s"):
        assert key in ds.attrs, key


# ------------------------------------------------------------------ Neware, synthetic frames


def _neware_frame(stamps: list, step_time: list[float], step: list[int],
                  status: list[str], current_mA: list[float]):  # type: ignore[no-untyped-def]
    """A DataFrame shaped like NewareNDA's output (columns and dtypes of nda 29)."""
    pd = pytest.importorskip("pandas")
    n = len(step_time)
    i = np.asarray(current_mA, dtype=float)
    t = np.asarray(step_time, dtype=float)
    q = np.zeros(n)
    for k in range(1, n):  # per-step capacity (mA·h), restarting at every step
        q[k] = 0.0 if step[k] != step[k - 1] else q[k - 1] + abs(i[k]) * (t[k] - t[k - 1]) / 3600
    return pd.DataFrame({
        "Index": np.arange(1, n + 1, dtype=np.uint32), "Cycle": np.ones(n, np.uint32),
        "Step": np.asarray(step, np.uint32), "Step_Index": np.asarray(step, np.uint32),
        "Status": pd.Categorical(status), "Time": t.astype(np.float32),
        "Voltage": np.full(n, 3.5, np.float32), "Current(mA)": i.astype(np.float32),
        "Charge_Capacity(mAh)": np.where(i > 0, q, 0.0).astype(np.float32),
        "Discharge_Capacity(mAh)": np.where(i < 0, q, 0.0).astype(np.float32),
        "Charge_Energy(mWh)": np.zeros(n, np.float32),
        "Discharge_Energy(mWh)": np.zeros(n, np.float32),
        "Timestamp": stamps, "T1": np.full(n, 25.0, np.float32),
    })


def _neware_ds(df, timezone: str) -> xr.Dataset:  # type: ignore[no-untyped-def]
    from operando.io.echem.neware import neware_record
    from operando.io.echem.schema import build_echem_dataset

    record = neware_record(Path("cell.nda"), df, timezone=timezone)
    return add_segments(build_echem_dataset([record], timezone=timezone))


def test_neware_naive_timestamps_across_dst_fold_pause_and_aux() -> None:
    pd = pytest.importorskip("pandas")
    # Paris, night of 2026-10-25: 02:00-03:00 happens twice; 10-min records over 2 h
    stamps = pd.to_datetime(["2026-10-25 01:40", "2026-10-25 01:50", "2026-10-25 02:00",
                             "2026-10-25 02:10", "2026-10-25 02:50", "2026-10-25 02:00",
                             "2026-10-25 02:10", "2026-10-25 02:20"])
    df = _neware_frame(list(stamps), [0, 600, 1200, 1800, 0, 600, 1200, 1800],
                       [1, 1, 1, 1, 2, 2, 2, 2], ["CC_Chg"] * 4 + ["Rest"] * 4,
                       [1.0] * 4 + [0.0] * 4)
    ds = _neware_ds(df, "Europe/Paris")
    assert ds.time_utc.values[0] == np.datetime64("2026-10-24T23:40", "ns")  # CEST
    # step 2 starts at the end of step 1 (1800 s) plus a 40-min pause the stamps show
    np.testing.assert_allclose(ds.time_s.values, [0, 600, 1200, 1800, 4200, 4800, 5400, 6000])
    assert "pause of 2400.0 s before record 5" in ds.attrs["neware_notes"][0]
    assert ds.time_utc.values[-1] == np.datetime64("2026-10-25T01:20", "ns")  # 02:20 CET
    np.testing.assert_array_equal(ds.segment.values, ["charge"] * 4 + ["rest"] * 4)
    assert ds.charge_C.values[-1] == pytest.approx(1e-3 * 1800)  # 1 mA for 30 min
    assert ds.T1.attrs["units"] == "degC" and "temperature" in ds.T1.attrs["long_name"]
    assert ds.cycle.values.tolist() == [0] * 8


def test_neware_aware_timestamps_and_bad_frames() -> None:
    pd = pytest.importorskip("pandas")
    from datetime import timezone as dt_timezone
    from zoneinfo import ZoneInfo

    # nda 130 / ndax: NewareNDA gives epochs in the reading machine's zone, tz-aware
    utc0 = datetime(2026, 3, 29, 0, 30, tzinfo=dt_timezone.utc)
    local = [(utc0 + pd.Timedelta(seconds=s)).astimezone(ZoneInfo("Europe/Paris"))
             for s in (0, 1800, 3600)]  # 01:30 CET, 03:00 CEST, 03:30 CEST: mixed offsets
    df = _neware_frame(local, [0, 1800, 3600], [1, 1, 1], ["CC_DChg"] * 3, [-1.0] * 3)
    ds = _neware_ds(df, "Asia/Tokyo")  # the zone does not matter for absolute stamps
    assert ds.time_utc.values[0] == np.datetime64("2026-03-29T00:30", "ns")
    np.testing.assert_allclose(ds.time_s.values, [0, 1800, 3600])
    assert "absolute" in ds.attrs["neware_notes"][0]
    # a naive stamp inside the spring-forward gap
    gap = _neware_frame(list(pd.to_datetime(["2026-03-29 01:50", "2026-03-29 02:20"])),
                        [0, 1800], [1, 1], ["Rest"] * 2, [0.0] * 2)
    with pytest.raises(EchemFormatError, match=r"cell\.nda: local Timestamp 2026-03-29 "
                                                r"02:20:00 does not exist in Europe/Paris"):
        _neware_ds(gap, "Europe/Paris")
    # a column NewareNDA did not give
    with pytest.raises(EchemFormatError, match=r"cell\.nda: NewareNDA gave no column\(s\) "
                                                r"\['Voltage'\].*present"):
        _neware_ds(df.drop(columns=["Voltage"]), "UTC")
