"""BioLogic ``.mpt`` writing/reading and the trigger record.

Real EC-Lab exports come from ``../shared/data`` (skipped with a reason when absent).
"""

from __future__ import annotations

import re
import warnings
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from operando.echem.segments import add_segments
from operando.io.echem.biologic import (
    EchemFormatError,
    parse_acquisition_start,
    read_mpt,
    read_mpt_file,
    write_mpt,
)
from operando.io.echem.triggers import (
    TriggerFormatError,
    read_trigger_metadata,
    read_trigger_record,
    write_trigger_record,
)
from operando.io.shared_data import find_shared_data
from operando.simulate.echem import EchemProfile, simulate_echem
from operando.simulate.eclab_export import gcpl_settings_lines, simulated_cell_columns
from operando.simulate.presets import get_preset

# the one locator of ../shared/data (also used by conftest.shared_data); when it is absent
# DATA names where it would be, for the skip messages
DATA = find_shared_data(Path(__file__).resolve().parents[1]) or (
    Path(__file__).resolve().parents[2] / "shared" / "data")
ECHEM_FILES = sorted((DATA / "echem").glob("*.mpt"))
LNO_FILES = sorted((DATA / "operando_xas_linio2" / "EC").glob("*.mpt"))
LNO_FIRST = DATA / "operando_xas_linio2" / "EC" / "220726cell4operandoxas_C06.mpt"
LNO_CONT = DATA / "operando_xas_linio2" / "EC" / "220726cell4operandoxascontinuation_C06.mpt"

needs_data = pytest.mark.skipif(
    not (DATA / "echem").is_dir(),
    reason=f"real data folder {DATA} is absent (see shared/data/README.md)",
)
needs_lno = pytest.mark.skipif(
    not (LNO_FIRST.is_file() and LNO_CONT.is_file()),
    reason=f"LiNiO2 EC-Lab pair absent under {DATA / 'operando_xas_linio2' / 'EC'}",
)


@pytest.fixture(scope="module")
def profile() -> EchemProfile:
    return simulate_echem(get_preset("small").echem)


@pytest.fixture(scope="module")
def sim_file(tmp_path_factory: pytest.TempPathFactory, profile: EchemProfile) -> Path:
    start = datetime.fromisoformat(profile.spec.acquisition_start_local)
    path = tmp_path_factory.mktemp("mpt") / "sim_C01.mpt"
    return write_mpt(path, simulated_cell_columns(profile), acquisition_start=start)


def _header_n(path: Path) -> int:
    with path.open("rb") as fh:
        fh.readline()
        return int(fh.readline().decode("latin-1").split(":")[1])


def _data_line_count(path: Path) -> int:
    lines = path.read_bytes().decode("latin-1").replace("\r\n", "\n").split("\n")
    return sum(1 for line in lines[_header_n(path):] if line.strip())


def _rewrite(src: Path, dst: Path, fn) -> Path:  # type: ignore[no-untyped-def]
    lines = src.read_bytes().decode("latin-1").split("\r\n")
    dst.write_bytes("\r\n".join(fn(lines)).encode("latin-1"))
    return dst


# --------------------------------------------------------------------------- round trip


def test_round_trip_simulated_profile(sim_file: Path, profile: EchemProfile) -> None:
    ds = add_segments(read_mpt(sim_file, timezone="Europe/Paris"))
    assert ds.sizes["echem_time"] == profile.time_s.size
    np.testing.assert_allclose(ds.time_s, profile.time_s, rtol=1e-14)
    np.testing.assert_allclose(ds.voltage_V, profile.voltage_V, rtol=1e-7)
    np.testing.assert_allclose(ds.current_A, profile.current_A, rtol=1e-7, atol=1e-15)
    np.testing.assert_allclose(ds.charge_C, profile.charge_C, rtol=1e-12, atol=1e-15)
    expected_seg = np.array([profile.segment_names[k] for k in profile.segment_index])
    expected_seg[profile.current_A == 0] = "rest"
    np.testing.assert_array_equal(ds.segment, expected_seg)
    np.testing.assert_array_equal(ds.cycle, 0)
    np.testing.assert_array_equal(ds.step, profile.segment_index)
    assert ds.charge_C.attrs["source"].startswith("(Q-Qo)/mA.h")
    # UTC: 2026-03-14 09:30 in Paris is CET (UTC+1)
    assert ds.time_utc.values[0] == np.datetime64("2026-03-14T08:30:00", "ns")
    np.testing.assert_array_equal(
        (ds.time_utc.values - ds.time_utc.values[0]) / np.timedelta64(1, "ns"),
        np.round(profile.time_s * 1e9),
    )
    assert ds.attrs["acquisition_start"] == "2026-03-14T09:30:00.000+01:00"
    assert ds.attrs["timezone"] == "Europe/Paris"
    assert ds.attrs["technique"] == "Galvanostatic Cycling with Potential Limitation"
    for name, var in ds.variables.items():
        assert "long_name" in var.attrs, name
        assert "units" in var.attrs or "units" in var.encoding, name


def test_simulated_columns_follow_eclab_conventions(profile: EchemProfile) -> None:
    cols = simulated_cell_columns(profile)
    seg = profile.segment_index
    rest = profile.current_A == 0
    np.testing.assert_array_equal(cols["mode"], np.where(rest, 3, 1))
    assert np.all(cols["ox/red"][profile.current_A > 0] == 1)
    assert np.all(cols["ox/red"][profile.current_A < 0] == 0)
    starts = np.flatnonzero(np.r_[True, seg[1:] != seg[:-1]])
    np.testing.assert_array_equal(np.flatnonzero(cols["Ns changes"]), starts)
    np.testing.assert_array_equal(np.flatnonzero(cols["control changes"]), starts)
    np.testing.assert_allclose(cols["(Q-Qo)/mA.h"] * 3.6, profile.charge_C)
    np.testing.assert_array_equal(cols["cycle number"], 0.0)


def test_gcpl_settings_lines_in_header(tmp_path: Path, profile: EchemProfile) -> None:
    settings = gcpl_settings_lines(profile, decimal_separator=",")
    assert settings[0].split() == ["Ns", "0", "1", "2", "3"]
    assert all(len(x) == 20 * 5 for x in settings)
    p = write_mpt(tmp_path / "gcpl.mpt", simulated_cell_columns(profile),
                  acquisition_start=datetime(2026, 3, 14, 9, 30), settings_lines=settings,
                  decimal_separator=",")
    f = read_mpt_file(p)
    assert f.header_lines[-len(settings) - 1:-1] == tuple(settings)
    is_row = next(x for x in settings if x.startswith("Is "))
    i_ma = float(is_row.split()[1].replace(",", "."))
    assert i_ma == pytest.approx(profile.current_A.max() * 1e3, rel=1e-3)
    np.testing.assert_allclose(f.columns["I/mA"], profile.current_A * 1e3, rtol=1e-7)


def test_written_file_is_faithful_eclab_layout(sim_file: Path) -> None:
    raw = sim_file.read_bytes()
    assert raw.count(b"\r\n") == raw.count(b"\n")  # CRLF everywhere
    assert not raw.endswith(b"\n")  # EC-Lab has no newline after the last row
    lines = raw.decode("latin-1").split("\r\n")
    n = _header_n(sim_file)
    assert lines[0] == "EC-Lab ASCII FILE"
    assert lines[1].startswith("Nb header lines : ")
    assert lines[2] == "" and lines[4] == ""
    assert lines[3] == "Galvanostatic Cycling with Potential Limitation"
    assert any(re.fullmatch(r"Acquisition started on : 03/14/2026 09:30:00\.000", x)
               for x in lines[:n])
    assert lines[n - 1].startswith("mode\tox/red\t") and lines[n - 1].endswith("\t")
    first = lines[n].split("\t")
    assert first[0] == "1" and first[6] == "0"  # integers as integers
    assert re.fullmatch(r"0\.0{15}E\+000", first[7])  # time/s, 3-digit exponent
    assert re.fullmatch(r"\d\.\d{7}E[+-]\d{3}", first[8])  # Ewe/V %.7E
    assert not sim_file.with_name(sim_file.name + ".part").exists()
    assert not list(sim_file.parent.glob(".*.part"))


@pytest.mark.parametrize(
    ("local", "utc"),
    [
        ("2026-07-01T09:30:00.000", "2026-07-01T07:30:00"),  # CEST, UTC+2
        ("2026-01-15T09:30:00.250", "2026-01-15T08:30:00.250"),  # CET, UTC+1
    ],
)
def test_utc_conversion_summer_and_winter(tmp_path: Path, profile: EchemProfile,
                                          local: str, utc: str) -> None:
    p = write_mpt(tmp_path / "a.mpt", simulated_cell_columns(profile),
                  acquisition_start=datetime.fromisoformat(local))
    ds = add_segments(read_mpt(p, timezone="Europe/Paris"))
    assert ds.time_utc.values[0] == np.datetime64(utc, "ns")


def test_run_across_spring_dst_change_has_no_jump(tmp_path: Path, profile: EchemProfile) -> None:
    # starts 01:30 CET on the night clocks jump 02:00 -> 03:00; the run lasts > 1 h
    p = write_mpt(tmp_path / "dst.mpt", simulated_cell_columns(profile),
                  acquisition_start=datetime(2026, 3, 29, 1, 30))
    ds = add_segments(read_mpt(p, timezone="Europe/Paris"))
    assert ds.time_utc.values[0] == np.datetime64("2026-03-29T00:30:00", "ns")
    elapsed = (ds.time_utc.values[-1] - ds.time_utc.values[0]) / np.timedelta64(1, "s")
    assert elapsed == pytest.approx(profile.time_s[-1])


def test_nonexistent_and_ambiguous_local_start(tmp_path: Path, profile: EchemProfile) -> None:
    cols = simulated_cell_columns(profile)
    gap = write_mpt(tmp_path / "gap.mpt", cols, acquisition_start=datetime(2026, 3, 29, 2, 30))
    with pytest.raises(EchemFormatError, match=r"gap\.mpt.*does not exist in Europe/Paris"):
        read_mpt(gap, timezone="Europe/Paris")
    fold = write_mpt(tmp_path / "fold.mpt", cols, acquisition_start=datetime(2026, 10, 25, 2, 30))
    with pytest.warns(UserWarning, match="ambiguous"):
        ds = add_segments(read_mpt(fold, timezone="Europe/Paris"))
    assert ds.time_utc.values[0] == np.datetime64("2026-10-25T00:30:00", "ns")  # first: CEST
    with pytest.raises(ValueError, match="unknown timezone"):
        read_mpt(fold, timezone="Mars/Olympus")


def test_continuation_stitches_on_utc_across_dst(tmp_path: Path, profile: EchemProfile) -> None:
    cols = simulated_cell_columns(profile)
    k = profile.time_s.size // 2
    t_split = profile.time_s[k]
    first = {n: v[:k] for n, v in cols.items()}
    second = {n: v[k:].copy() for n, v in cols.items()}
    second["time/s"] = second["time/s"] - t_split
    q_split = cols["(Q-Qo)/mA.h"][k]
    second["(Q-Qo)/mA.h"] = second["(Q-Qo)/mA.h"] - q_split  # EC-Lab restarts Q-Qo at 0
    # first file: Saturday 22:00 CET; the continuation: Sunday 10:00 CEST -> 11 h later
    p1 = write_mpt(tmp_path / "run_C01.mpt", first, acquisition_start=datetime(2026, 3, 28, 22))
    p2 = write_mpt(tmp_path / "run_cont_C01.mpt", second,
                   acquisition_start=datetime(2026, 3, 29, 10))
    ds = add_segments(read_mpt([p2, p1], timezone="Europe/Paris"))  # order given does not matter
    assert ds.attrs["source_files"] == [str(p1), str(p2)]
    np.testing.assert_allclose(ds.attrs["file_start_offsets_s"], [0.0, 11 * 3600.0])
    t = ds.time_s.values
    assert np.all(np.diff(t) > 0)
    assert t[k] == pytest.approx(11 * 3600.0)
    np.testing.assert_allclose(ds.charge_C, profile.charge_C, rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(ds.file_index[:k], 0)
    np.testing.assert_array_equal(ds.file_index[k:], 1)
    np.testing.assert_array_equal(ds.cycle[k:], 1)  # cycle numbers do not repeat across files
    assert ds.time_utc.values[k] == np.datetime64("2026-03-29T08:00:00", "ns")


def test_overlapping_files_are_not_a_continuation(tmp_path: Path, profile: EchemProfile) -> None:
    cols = simulated_cell_columns(profile)
    p1 = write_mpt(tmp_path / "a.mpt", cols, acquisition_start=datetime(2026, 3, 10, 9))
    p2 = write_mpt(tmp_path / "b.mpt", cols, acquisition_start=datetime(2026, 3, 10, 10))
    with pytest.raises(EchemFormatError, match=r"b\.mpt.*a\.mpt.*not a continuation"):
        read_mpt([p1, p2], timezone="UTC")


def test_charge_integrated_when_q_column_absent(tmp_path: Path, profile: EchemProfile) -> None:
    cols = simulated_cell_columns(profile)
    del cols["(Q-Qo)/mA.h"]
    p = write_mpt(tmp_path / "noq.mpt", cols, acquisition_start=datetime(2026, 3, 14, 9))
    ds = add_segments(read_mpt(p, timezone="Europe/Paris"))
    assert "trapezoid" in ds.charge_C.attrs["source"]
    # piecewise-constant current: trapezoid error is half a sample at each of 3 switches
    err_bound = 3 * abs(profile.current_A).max() * profile.spec.sample_period_s
    np.testing.assert_allclose(ds.charge_C, profile.charge_C, atol=err_bound)


def test_decimal_comma_writer_gives_same_numbers(tmp_path: Path, profile: EchemProfile) -> None:
    cols = simulated_cell_columns(profile)
    start = datetime(2026, 3, 14, 9, 30)
    dot = add_segments(read_mpt(write_mpt(tmp_path / "dot.mpt", cols, acquisition_start=start),
                                timezone="Europe/Paris"))
    p = write_mpt(tmp_path / "comma.mpt", cols, acquisition_start=start, decimal_separator=",")
    assert re.search(r"\t\d,\d{7}E[+-]\d{3}\t", p.read_bytes().decode("latin-1"))
    comma = add_segments(read_mpt(p, timezone="Europe/Paris"))
    for name in ("time_s", "voltage_V", "current_A", "charge_C"):
        np.testing.assert_array_equal(comma[name].values, dot[name].values)
    assert comma.attrs["decimal_comma"] == [1] and dot.attrs["decimal_comma"] == [0]


def test_header_line_count_is_honoured(tmp_path: Path, profile: EchemProfile) -> None:
    cols = simulated_cell_columns(profile)
    start = datetime(2026, 3, 14, 9, 30)
    extra = [f"Setting {k:<12d}{k:<20d}" for k in range(7)]
    plain = write_mpt(tmp_path / "plain.mpt", cols, acquisition_start=start)
    longer = write_mpt(tmp_path / "longer.mpt", cols, acquisition_start=start,
                       settings_lines=extra)
    assert _header_n(longer) == _header_n(plain) + len(extra)
    a, b = read_mpt_file(plain), read_mpt_file(longer)
    assert b.n_header_lines == a.n_header_lines + 7
    np.testing.assert_array_equal(a.columns["Ewe/V"], b.columns["Ewe/V"])
    # a wrong count that does not land on the column line is an error naming file and line
    bad = _rewrite(longer, tmp_path / "badcount.mpt",
                   lambda ls: [ls[0], ls[1].replace(str(_header_n(longer)),
                                                    str(_header_n(longer) - 2)), *ls[2:]])
    with pytest.raises(EchemFormatError, match=r"badcount\.mpt.*Nb header lines.*line \d+"):
        read_mpt_file(bad)


# --------------------------------------------------------------------------- errors


def test_error_not_an_eclab_file(tmp_path: Path) -> None:
    p = tmp_path / "notes.mpt"
    p.write_text("time,voltage\n0,3.4\n")
    with pytest.raises(EchemFormatError, match=r"notes\.mpt.*EC-Lab ASCII FILE.*'time,voltage'"):
        read_mpt(p, timezone="UTC")
    with pytest.raises(EchemFormatError, match=r"missing\.mpt.*no such file"):
        read_mpt(tmp_path / "missing.mpt", timezone="UTC")


def test_error_missing_acquisition_start(tmp_path: Path, sim_file: Path) -> None:
    p = _rewrite(sim_file, tmp_path / "nostart.mpt",
                 lambda ls: [x.replace("Acquisition started on", "Acquisition begun on")
                             for x in ls])
    with pytest.raises(EchemFormatError, match=r"nostart\.mpt.*Acquisition started on"):
        read_mpt(p, timezone="UTC")


def test_error_missing_required_column_lists_present(tmp_path: Path,
                                                     profile: EchemProfile) -> None:
    cols = simulated_cell_columns(profile)
    del cols["Ewe/V"]
    p = write_mpt(tmp_path / "noewe.mpt", cols, acquisition_start=datetime(2026, 3, 14))
    with pytest.raises(EchemFormatError) as info:
        read_mpt(p, timezone="UTC")
    msg = str(info.value)
    assert "noewe.mpt" in msg and "Ewe/V" in msg and "voltage" in msg
    assert "'I/mA'" in msg and "'time/s'" in msg  # the columns present are listed
    cols = simulated_cell_columns(profile)
    del cols["I/mA"]
    p = write_mpt(tmp_path / "noi.mpt", cols, acquisition_start=datetime(2026, 3, 14))
    with pytest.raises(EchemFormatError, match=r"noi\.mpt.*current.*I/mA.*present.*Ewe/V"):
        read_mpt(p, timezone="UTC")


def test_error_unparsable_number_names_row_and_column(tmp_path: Path, sim_file: Path) -> None:
    n = _header_n(sim_file)

    def corrupt(lines: list[str]) -> list[str]:
        row = lines[n + 4].split("\t")
        row[8] = "3.41x"
        lines[n + 4] = "\t".join(row)
        return lines

    p = _rewrite(sim_file, tmp_path / "corrupt.mpt", corrupt)
    with pytest.raises(EchemFormatError) as info:
        read_mpt(p, timezone="UTC")
    msg = str(info.value)
    assert "corrupt.mpt" in msg and "'3.41x'" in msg
    assert f"line {n + 5}" in msg and "data row 5" in msg and "column 9 'Ewe/V'" in msg


def test_error_ragged_row(tmp_path: Path, sim_file: Path) -> None:
    n = _header_n(sim_file)
    p = _rewrite(sim_file, tmp_path / "ragged.mpt",
                 lambda ls: [*ls[: n + 2], ls[n + 2].rsplit("\t", 2)[0], *ls[n + 3:]])
    with pytest.raises(EchemFormatError, match=r"ragged\.mpt: line \d+ \(data row 3\).*found"):
        read_mpt(p, timezone="UTC")


def test_unknown_columns_are_preserved(tmp_path: Path, profile: EchemProfile) -> None:
    cols = simulated_cell_columns(profile)
    cols["Temperature/°C"] = np.linspace(25.0, 26.0, profile.time_s.size)
    cols["Capacitance charge/µF"] = np.full(profile.time_s.size, 1.5)
    cols["weird col #1"] = np.arange(profile.time_s.size, dtype=float)
    p = write_mpt(tmp_path / "extra.mpt", cols, acquisition_start=datetime(2026, 3, 14))
    assert "°C".encode("latin-1") in p.read_bytes()  # latin-1, as EC-Lab
    ds = add_segments(read_mpt(p, timezone="UTC"))
    np.testing.assert_allclose(ds["Temperature_degC"], cols["Temperature/°C"], rtol=1e-7)
    assert ds["Temperature_degC"].attrs["ec_lab_column"] == "Temperature/°C"
    assert ds["Temperature_degC"].attrs["units"] == "degC"
    assert ds["Capacitance_charge_uF"].attrs["units"] == "uF"
    np.testing.assert_array_equal(ds["weird_col_1"], cols["weird col #1"])
    np.testing.assert_array_equal(ds["mode"], cols["mode"])  # flags are carried too
    assert ds["mode"].dtype.kind == "i"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("07/26/2022 22:38:30.190", datetime(2022, 7, 26, 22, 38, 30, 190000)),
        ("01/10/2018 17:01:24", datetime(2018, 1, 10, 17, 1, 24)),
        ("  12/08/2022   14:36:53.355 ", datetime(2022, 12, 8, 14, 36, 53, 355000)),
        ("2022-07-26 22:38:30.5", datetime(2022, 7, 26, 22, 38, 30, 500000)),
    ],
)
def test_acquisition_start_formats(text: str, expected: datetime) -> None:
    assert parse_acquisition_start(text) == expected


def test_acquisition_start_unparsable(tmp_path: Path, sim_file: Path) -> None:
    p = _rewrite(sim_file, tmp_path / "baddate.mpt",
                 lambda ls: [re.sub(r"(Acquisition started on : ).*", r"\1yesterday", x)
                             for x in ls])
    with pytest.raises(EchemFormatError, match=r"baddate\.mpt.*'yesterday'.*%m/%d/%Y"):
        read_mpt(p, timezone="UTC")


# --------------------------------------------------------------------------- real files


@needs_data
@pytest.mark.realdata
@pytest.mark.parametrize("path", ECHEM_FILES, ids=lambda p: p.name)
def test_real_echem_files_read(path: Path) -> None:
    f = read_mpt_file(path)
    lines = path.read_bytes().decode("latin-1").replace("\r\n", "\n").split("\n")
    assert "time/s" in lines[f.n_header_lines - 1].split("\t")  # N counts the column line
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = add_segments(read_mpt(path, timezone="Europe/Berlin"))
    assert ds.sizes["echem_time"] == _data_line_count(path) > 0
    v = ds.voltage_V.values
    assert np.all(np.isfinite(v)) and v.min() > -5.0 and v.max() < 10.0
    assert np.all(np.diff(ds.time_s.values) >= 0)
    assert np.all(np.isfinite(ds.current_A.values)) and np.all(np.isfinite(ds.charge_C.values))
    assert set(np.unique(ds.segment.values)) <= {"charge", "discharge", "rest"}
    start = parse_acquisition_start(
        next(x for x in lines if x.startswith("Acquisition started on")).split(" : ", 1)[1]
    )
    assert ds.attrs["acquisition_start"].startswith(start.isoformat(timespec="milliseconds"))
    assert ds.attrs["technique"] == lines[3].strip()
    # every column of the file is somewhere in the dataset
    used = {ds[k].attrs.get("ec_lab_column") for k in ds.data_vars}
    sources = " ".join(str(ds[k].attrs.get("source", "")) for k in ds.data_vars)
    for col in f.columns:
        assert col in used or col in sources or col in ("time/s", "Ns", "cycle number"), col


@needs_data
@pytest.mark.realdata
def test_real_gcpl_values_and_segments() -> None:
    ds = add_segments(read_mpt(DATA / "echem" / "gcpl.issue_149.mpt", timezone="Europe/Berlin"))
    # first data row, decimal-comma export: 3,015299923827115E+001  ...  3,4228721E+000
    assert ds.time_s.values[0] == pytest.approx(30.15299923827115)
    assert ds.voltage_V.values[0] == pytest.approx(3.4228721)
    assert ds.attrs["decimal_comma"] == [1]
    # 30 µA charge then discharge with rests (mode 3) in between
    seg = ds.segment.values
    assert np.all(ds.current_A.values[seg == "charge"] > 0)
    assert np.all(ds.current_A.values[seg == "discharge"] < 0)
    assert np.all(seg[ds["mode"].values == 3] == "rest")
    assert np.abs(ds.current_A.values[seg != "rest"]).max() == pytest.approx(30e-6, rel=0.01)
    # 01/10/2024 11:02:29.886 is January 10 (month first) -> CET
    assert ds.time_utc.values[0] == np.datetime64("2024-01-10T10:02:29.886", "ns") + \
        np.timedelta64(round(30.15299923827115 * 1e9), "ns")


@needs_data
@pytest.mark.realdata
def test_real_cv_charge_in_coulomb_and_ocv_without_current() -> None:
    cv = add_segments(read_mpt(DATA / "echem" / "cv.mpt", timezone="Europe/Berlin"))
    assert cv.charge_C.attrs["source"].startswith("(Q-Qo)/C")
    assert set(np.unique(cv.segment.values)) >= {"charge", "discharge"}
    ocv = add_segments(read_mpt(DATA / "echem" / "ocv.mpt", timezone="Europe/Berlin"))
    assert "open-circuit" in ocv.current_A.attrs["source"]
    assert np.all(ocv.segment.values == "rest") and np.all(ocv.charge_C.values == 0)


@needs_data
@pytest.mark.realdata
def test_real_decimal_comma_variant_of_real_file(tmp_path: Path) -> None:
    src = DATA / "echem" / "cv.mpt"
    n = _header_n(src)
    lines = src.read_bytes().decode("latin-1").split("\n")
    lines[n:] = [x.replace(".", ",") for x in lines[n:]]
    p = tmp_path / "cv_comma.mpt"
    p.write_bytes("\n".join(lines).encode("latin-1"))
    a = add_segments(read_mpt(src, timezone="Europe/Berlin"))
    b = add_segments(read_mpt(p, timezone="Europe/Berlin"))
    for name in ("time_s", "voltage_V", "current_A", "charge_C", "cycle", "P_W"):
        np.testing.assert_array_equal(a[name].values, b[name].values)
    np.testing.assert_array_equal(a.segment.values, b.segment.values)


@needs_lno
@pytest.mark.realdata
def test_real_linio2_continuation_stitches() -> None:
    ds = add_segments(read_mpt([LNO_FIRST, LNO_CONT], timezone="Europe/Paris"))
    n1, n2 = _data_line_count(LNO_FIRST), _data_line_count(LNO_CONT)
    assert ds.sizes["echem_time"] == n1 + n2
    t = ds.time_s.values
    assert np.all(np.diff(t) >= 0)
    # header starts: 07/26/2022 22:38:30.190 and 07/28/2022 13:31:45.341 (both CEST)
    fmt = "%m/%d/%Y %H:%M:%S.%f"
    dt = (datetime.strptime("07/28/2022 13:31:45.341", fmt)
          - datetime.strptime("07/26/2022 22:38:30.190", fmt)).total_seconds()
    assert abs(t[n1] - dt) < 1.0
    assert t[n1 - 1] < t[n1]
    assert ds.time_utc.values[0] == np.datetime64("2022-07-26T20:38:30.190", "ns")
    assert ds.time_utc.values[n1] == np.datetime64("2022-07-28T11:31:45.341", "ns")
    # charge continues through the pause; x-ray-era voltages of a LiNiO2 cell
    q = ds.charge_C.values
    assert q[n1] == pytest.approx(q[n1 - 1])
    v = ds.voltage_V.values
    assert 2.5 < v.min() and v.max() < 4.5
    assert ds.cycle.values[n1] > ds.cycle.values[n1 - 1]
    assert ds.attrs["acquisition_start"] == "2022-07-26T22:38:30.190+02:00"


# --------------------------------------------------------------------------- trigger record


def test_trigger_record_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    t = np.sort(rng.uniform(0, 4000, 150))
    t[:3] = [5.0, 35.0001, 65.00012345678901]
    p = write_trigger_record(tmp_path / "triggers.txt", t, source="simulated potentiostat",
                             acquisition_start=datetime(2026, 3, 14, 9, 30))
    np.testing.assert_array_equal(read_trigger_record(p), t)
    meta = read_trigger_metadata(p)
    assert meta["clock"] == "potentiostat" and meta["units"] == "s"
    assert meta["acquisition_start"].startswith("2026-03-14T09:30:00.000")
    assert meta["n_triggers"] == "150"
    assert p.read_text().splitlines()[0] == "# operando trigger record"
    empty = write_trigger_record(tmp_path / "none.txt", np.array([]), source="x",
                                 acquisition_start=datetime(2026, 3, 14))
    assert read_trigger_record(empty).size == 0


def test_trigger_record_errors(tmp_path: Path) -> None:
    p = write_trigger_record(tmp_path / "trig.txt", np.array([1.0, 2.0, 3.0]), source="s",
                             acquisition_start=datetime(2026, 3, 14))
    lines = p.read_text().splitlines()
    bad = tmp_path / "bad.txt"
    bad.write_text("\n".join([*lines[:-1], "3.0s"]) + "\n")
    with pytest.raises(TriggerFormatError, match=rf"bad\.txt: line {len(lines)}: .*'3.0s'"):
        read_trigger_record(bad)
    unsorted = tmp_path / "unsorted.txt"
    unsorted.write_text("\n".join([*lines, "0.5"]) + "\n")
    with pytest.raises(TriggerFormatError, match=r"unsorted\.txt: line \d+: .*non-decreasing"):
        read_trigger_record(unsorted)
    other = tmp_path / "other.txt"
    other.write_text("time\n1\n")
    with pytest.raises(TriggerFormatError, match=r"other\.txt: line 1: expected"):
        read_trigger_record(other)
    nocol = tmp_path / "nocol.txt"
    nocol.write_text("\n".join(lines[:6]) + "\n1.0\n")
    with pytest.raises(TriggerFormatError, match=r"nocol\.txt: line 7: .*trigger_time_s"):
        read_trigger_record(nocol)
    with pytest.raises(ValueError, match="sorted"):
        write_trigger_record(tmp_path / "w.txt", np.array([2.0, 1.0]), source="s",
                             acquisition_start=datetime(2026, 3, 14))


# --------------------------------------------------------------------------- review fixes


def test_month_first_dotted_date_is_an_error_not_a_guess(tmp_path: Path, sim_file: Path) -> None:
    for text in ("07.26.2022 22:38:30", "26-07-2022 22:38:30"):
        with pytest.raises(ValueError, match="unrecognised date"):
            parse_acquisition_start(text)
    p = _rewrite(sim_file, tmp_path / "dotted.mpt",
                 lambda ls: [re.sub(r"(Acquisition started on : ).*", r"\g<1>07.08.2022 10:00:00",
                                    x) for x in ls])
    with pytest.raises(EchemFormatError,
                       match=r"dotted\.mpt.*'07\.08\.2022 10:00:00'.*%m/%d/%Y %H:%M:%S\.%f"):
        read_mpt(p, timezone="UTC")


def test_datetime64_utc_converts_aware_non_utc() -> None:
    from zoneinfo import ZoneInfo

    from operando.io.echem.biologic import datetime64_utc

    paris = datetime(2026, 7, 1, 12, 0, tzinfo=ZoneInfo("Europe/Paris"))  # CEST, UTC+2
    out = datetime64_utc(paris, np.array([0.0, 1.5]))
    np.testing.assert_array_equal(
        out, np.array(["2026-07-01T10:00:00", "2026-07-01T10:00:01.5"], dtype="datetime64[ns]"))


def test_aware_acquisition_start_is_refused_by_both_writers(tmp_path: Path,
                                                           profile: EchemProfile) -> None:
    from zoneinfo import ZoneInfo

    aware = datetime(2026, 3, 14, 9, 30, tzinfo=ZoneInfo("Europe/Paris"))
    with pytest.raises(ValueError, match=r"t\.txt: acquisition_start: expected a naive"):
        write_trigger_record(tmp_path / "t.txt", np.array([1.0]), source="s",
                             acquisition_start=aware)
    with pytest.raises(ValueError, match=r"c\.mpt: acquisition_start: expected a naive"):
        write_mpt(tmp_path / "c.mpt", simulated_cell_columns(profile), acquisition_start=aware)
    assert list(tmp_path.iterdir()) == []


def test_trigger_metadata_start_parses_and_count_is_checked(tmp_path: Path) -> None:
    start = datetime(2026, 3, 14, 9, 30, 0, 250000)
    p = write_trigger_record(tmp_path / "trig.txt", np.array([1.0, 2.0, 3.0]), source="s",
                             acquisition_start=start)
    from operando.io.echem.triggers import read_trigger_file

    meta, t = read_trigger_file(p)
    assert datetime.fromisoformat(read_trigger_metadata(p)["acquisition_start"]) == start
    assert datetime.fromisoformat(meta["acquisition_start"]) == start
    np.testing.assert_array_equal(t, [1.0, 2.0, 3.0])
    lines = p.read_text().splitlines()
    cut = tmp_path / "cut.txt"
    cut.write_text("\n".join(lines[:-1]) + "\n")  # a truncated copy
    with pytest.raises(TriggerFormatError, match=r"cut\.txt: header says n_triggers = 3, found 2"):
        read_trigger_record(cut)


def test_one_timezone_check_for_config_and_reader(sim_file: Path) -> None:
    from operando.config import _timezone
    from operando.io.timestamps import zoneinfo_or_raise

    with pytest.raises(ValueError) as a:
        _timezone("CEST")
    with pytest.raises(ValueError) as b:
        zoneinfo_or_raise("CEST")
    with pytest.raises(ValueError) as c:
        read_mpt(sim_file, timezone="CEST")
    assert str(a.value) == str(b.value) == str(c.value)
    assert "expected an IANA timezone name" in str(a.value)


def test_hms_rounds_before_splitting() -> None:
    from operando.simulate.eclab_export import _hms

    assert _hms(59.99999, ".") == "0:01:0.0000"
    assert _hms(3599.99996, ",") == "1:00:0,0000"
    assert _hms(3725.5, ".") == "1:02:5.5000"
    assert _hms(0.0, ".") == "0:00:0.0000"


def test_write_mpt_channel_serial_and_latin1_error(tmp_path: Path, profile: EchemProfile) -> None:
    cols = simulated_cell_columns(profile)
    p = write_mpt(tmp_path / "c.mpt", cols, acquisition_start=datetime(2026, 3, 14, 9, 30),
                  channel=6, channel_serial="6042", device="VMP3 (SN 0198)")
    header = p.read_bytes().decode("latin-1").split("\r\n")
    assert "Run on channel : 6 (SN 6042)" in header
    assert "Device : VMP3 (SN 0198)" in header
    with pytest.raises(ValueError, match=r"bad\.mpt: .*latin-1.*'→'"):
        write_mpt(tmp_path / "bad.mpt", cols, acquisition_start=datetime(2026, 3, 14, 9, 30),
                  comments="charge → discharge")
    assert not (tmp_path / "bad.mpt").exists()
