"""Absolute-time sync of a real operando XAS series to its cycler log (no triggers).

``../shared/data/operando_xas_linio2``: 58 normalised Ni K-edge spectra of a LiNiO2 cell
(SOLEIL ROCK), each header with ``#Time at start=`` (beamline PC wall time), and the
BioLogic GCPL log of the same cell in two ``.mpt`` files (the second continues the first).

Timezone: both clocks are at SOLEIL, so Europe/Paris (CEST in July 2022) for both. The
data agree: the cycler's first charge begins at 23:01:27 local (1376.9 s after its
22:38:30.190 start) and the first spectrum starts at 23:01:58 local, 31 s later — the
scientists started the X-ray series with the charge. Read as UTC instead, the series
would start two hours into the charge and its last 12 spectra would fall in the
discharge while the Ni edge keeps rising; the edge-vs-charge correlation is then worse
(checked below).

Spectrum times are put on the stitched cycler clock and voltage and charge are linearly
interpolated at each start (a later interval average will replace this).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr

from operando.echem.segments import add_segments
from operando.io.echem.read import read_echem
from operando.io.xas.text import XasText, read_xas_text
from operando.io.xas.times import read_xas_start_times, xas_start_times

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def folder(shared_data: Path) -> Path:
    d = shared_data / "operando_xas_linio2"
    if not (d / "EC").is_dir() or not (d / "XAS_normalized").is_dir():
        pytest.skip(f"LiNiO2 operando data absent under {d}")
    return d


@pytest.fixture(scope="module")
def spectra(folder: Path) -> list[Path]:
    files = sorted((folder / "XAS_normalized").glob("*.txt"))
    assert len(files) == 58
    return files


@pytest.fixture(scope="module")
def echem(folder: Path):  # type: ignore[no-untyped-def]
    return add_segments(read_echem(sorted((folder / "EC").glob("*.mpt")),
                                   timezone="Europe/Paris"))


@pytest.fixture(scope="module")
def parsed(spectra: list[Path]) -> list[XasText]:
    return [read_xas_text(p) for p in spectra]


def _edge_eV(x: XasText) -> float:
    """Energy (eV) where the normalised μ first reaches 0.5 in 8330-8360 eV (linear)."""
    e, mu = x.columns["shifted energy"], x.columns["normalized"]
    sel = (e > 8330) & (e < 8360)
    e, mu = e[sel], mu[sel]
    k = int(np.flatnonzero(mu >= 0.5)[0])
    return float(e[k - 1] + (0.5 - mu[k - 1]) * (e[k] - e[k - 1]) / (mu[k] - mu[k - 1]))


def _on_echem_clock(echem, start_utc: np.ndarray) -> np.ndarray:  # type: ignore[no-untyped-def]
    t0 = echem.time_utc.values[0]
    return float(echem.time_s.values[0]) + (start_utc - t0) / np.timedelta64(1, "s")


@pytest.fixture(scope="module")
def synced(echem, parsed):  # type: ignore[no-untyped-def]
    times = xas_start_times(parsed, timezone="Europe/Paris")
    t = _on_echem_clock(echem, times.start_utc)
    ts = echem.time_s.values
    v = np.interp(t, ts, echem.voltage_V.values)
    q_mAh = np.interp(t, ts, echem.charge_C.values) / 3.6
    seg = echem.segment.values[np.searchsorted(ts, t, side="right") - 1]
    edge = np.array([_edge_eV(x) for x in parsed])
    return times, t, v, q_mAh, seg, edge


def test_spectra_land_on_the_stitched_echem_time_line(echem, synced, spectra) -> None:  # type: ignore[no-untyped-def]
    times, t, v, q_mAh, seg, edge = synced
    assert echem.attrs["source_files"][1].endswith("continuation_C06.mpt")
    # header of the first spectrum: 2022-07-26 23:01:58.055 Paris (CEST) = 21:01:58.055 UTC
    assert times.start_utc[0] == np.datetime64("2022-07-26T21:01:58.055", "ns")
    assert np.all(np.diff(t) > 0)
    ts = echem.time_s.values
    assert np.all((t >= ts[0]) & (t <= ts[-1]))
    # one spectrum every ~11.5 min, each an average over ~65 s of scans
    np.testing.assert_allclose(np.diff(t), 687.0, atol=2.0)
    np.testing.assert_allclose(times.elapsed_s, 65.0, atol=0.5)
    print()
    print(f"{'spectrum':>8} {'time_s':>10} {'voltage_V':>10} {'charge_mAh':>11} "
          f"{'segment':>9} {'Ni_edge_eV':>10}")
    for k, p in enumerate(spectra):
        print(f"{p.name.split('_')[5]:>8} {t[k]:10.1f} {v[k]:10.4f} {q_mAh[k]:11.4f} "
              f"{seg[k]:>9} {edge[k]:10.3f}")


def test_voltage_and_ni_edge_rise_with_charge(synced) -> None:  # type: ignore[no-untyped-def]
    _times, t, v, q_mAh, seg, edge = synced
    charging = seg == "charge"
    # the series covers the first charge (154 µA) and the start of the discharge
    assert charging[:55].all() and np.all(seg[55:] == "discharge")
    assert spearmanr(t[charging], v[charging]).statistic > 0.9
    assert 3.6 < v[0] < 3.7 and 4.2 < v[charging].max() < 4.3
    assert np.all(np.diff(q_mAh[charging]) > 0)
    # Ni K edge: 8344.8 -> 8346.2 eV on charge (Ni3+ -> Ni4+), tracking the charge passed
    assert edge[0] == pytest.approx(8344.8, abs=0.1)
    assert edge[charging].max() == pytest.approx(8346.2, abs=0.1)
    assert pearsonr(q_mAh[charging], edge[charging]).statistic > 0.95
    assert spearmanr(q_mAh[charging], edge[charging]).statistic > 0.95


def test_timezone_of_the_xas_headers_is_paris_not_utc(echem, parsed, synced) -> None:  # type: ignore[no-untyped-def]
    _times, t, _v, q_mAh, _seg, edge = synced
    # first charge onset on the cycler clock
    seg, ts = echem.segment.values, echem.time_s.values
    onset = ts[np.flatnonzero(seg == "charge")[0]]
    assert 0.0 < t[0] - onset < 60.0  # the X-ray series starts with the charge
    as_utc = _on_echem_clock(echem, xas_start_times(parsed, timezone="UTC").start_utc)
    assert as_utc[0] - t[0] == pytest.approx(7200.0, abs=1e-3)  # CEST = UTC+2
    q_utc = np.interp(as_utc, ts, echem.charge_C.values) / 3.6
    # read as UTC the edge would keep rising while charge is taken out again
    assert pearsonr(q_mAh, edge).statistic > pearsonr(q_utc, edge).statistic + 0.03


def test_read_xas_start_times_and_its_errors(spectra, synced, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from operando.io.xas.text import XasTextError

    one = read_xas_start_times(spectra[0], timezone="Europe/Paris")
    assert one.start_utc[0] == synced[0].start_utc[0]
    assert one.end_utc[0] - one.start_utc[0] == np.timedelta64(65003889607, "ns")
    body = spectra[0].read_text()
    cases = {
        "nostart.txt": (body.replace("#Time at start=", "#Started="), r"no '#Time at start="),
        "baddate.txt": (body.replace("2022-07-26 23:01:58.055", "26/07/22 23h"),
                        r"expected an ISO-8601 date.*'26/07/22 23h'"),
        "gap.txt": (body.replace("2022-07-26 23:01:58.055", "2022-03-27 02:30:00"),
                    r"does not exist in Europe/Paris"),
    }
    for name, (text, message) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(XasTextError, match=rf"{name}: .*{message}"):
            read_xas_start_times(tmp_path / name, timezone="Europe/Paris")
    with pytest.raises(ValueError, match="unknown timezone"):
        read_xas_start_times(spectra[0], timezone="Paris")
