"""Synthetic XANES stream and the XAS text / HDF5 io it uses."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from scipy.interpolate import CubicSpline

from operando.io.shared_data import find_shared_data
from operando.io.xas.hdf5 import read_xas_scans
from operando.io.xas.text import (
    MissingColumnError,
    XasTextError,
    read_xas_text,
    select_column,
    write_xdi,
)
from operando.simulate.clock import make_clock
from operando.simulate.context import SimContext
from operando.simulate.echem import simulate_echem
from operando.simulate.presets import get_preset
from operando.simulate.xanes import simulate_xanes

# the one locator of ../shared/data (also used by conftest.shared_data); when it is absent
# DATA names where it would be, for the skip messages
DATA = find_shared_data(Path(__file__).resolve().parents[1]) or (
    Path(__file__).resolve().parents[2] / "shared" / "data")
XANES = DATA / "xanes"
LIB = XANES / "FeLibNov2021.nor"
FOIL = XANES / "fe_metal_rt.xdi"


def _need(path: Path) -> Path:
    if not path.is_file():
        pytest.skip(f"real data file {path} absent (shared data folder not mounted)")
    return path


def _ctx(outdir: Path, seed: int = 0, data_dir: Path | None = DATA) -> SimContext:
    p = get_preset("small")
    return SimContext(
        outdir=outdir,
        preset=p,
        echem=simulate_echem(p.echem),
        clock=make_clock(p.echem, p.clock),
        seed=seed,
        data_dir=data_dir,
    )


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> tuple[SimContext, object]:
    _need(LIB)
    _need(FOIL)
    ctx = _ctx(tmp_path_factory.mktemp("xanes"))
    return ctx, simulate_xanes(ctx)


@pytest.fixture(scope="module")
def analytic(tmp_path_factory: pytest.TempPathFactory) -> tuple[SimContext, object]:
    ctx = _ctx(tmp_path_factory.mktemp("xanes-analytic"), data_dir=None)
    return ctx, simulate_xanes(ctx)


@pytest.fixture(scope="module")
def sim_scans(sim) -> list:
    ctx, res = sim
    return read_xas_scans(ctx.outdir / res.files["scans"])


# --- text readers on real files ------------------------------------------------------------


@pytest.mark.realdata
def test_xdi_foil_columns_and_metadata() -> None:
    xt = read_xas_text(_need(FOIL))
    assert xt.format == "xdi"
    assert xt.labels == ["energy", "mutrans", "i0"]
    assert xt.units["energy"] == "eV"
    assert xt.metadata["Element.symbol"] == "Fe"
    assert xt.metadata_float("Scan.edge_energy") == pytest.approx(7112.0)
    assert xt.n_rows > 300 and np.all(np.diff(xt.energy) > 0)
    assert "room temperature" in xt.comments
    # the calibrated foil edge (max derivative) is the tabulated 7111.0 eV
    e = np.arange(7100.0, 7125.0, 0.05)
    mu = CubicSpline(xt.energy, xt.column("mutrans"))(e)
    assert e[np.argmax(np.gradient(mu, e))] == pytest.approx(7111.0, abs=0.3)


@pytest.mark.realdata
def test_nor_library_lists_lfp_and_fepo4() -> None:
    xt = read_xas_text(_need(LIB))
    assert xt.labels[0] == "energy"
    assert {"LiFe(II)PO4", "Fe(III)PO4"} <= set(xt.labels)
    assert len(xt.labels) == 12 and xt.n_rows == 196
    lfp = xt.column("LiFe(II)PO4")
    assert abs(lfp[:5]).max() < 0.01 and abs(lfp[-20:].mean() - 1.0) < 0.1  # normalised


@pytest.mark.realdata
def test_plain_xdac_file() -> None:
    xt = read_xas_text(_need(XANES / "fe.060"))
    assert xt.format == "plain"
    assert xt.labels == ["Energy", "I0", "It"]
    assert xt.energy_label == "Energy"
    assert xt.metadata_float("E0") == pytest.approx(7112.0)


@pytest.mark.realdata
def test_select_column_file_colon_column() -> None:
    sel = select_column(f"{_need(LIB)}:Fe(III)PO4")
    assert sel.name == "Fe(III)PO4"
    assert sel.energy.shape == sel.values.shape == (196,)
    assert select_column(f"{LIB}:fe(iii)po4").name == "Fe(III)PO4"  # case-insensitive
    assert select_column(f"{LIB}:8").name == "LiFe(II)PO4"  # 1-based index


@pytest.mark.realdata
def test_missing_column_error_names_file_and_lists_columns() -> None:
    with pytest.raises(MissingColumnError) as err:
        select_column(f"{_need(LIB)}:LiFePO4")
    msg = str(err.value)
    assert str(LIB) in msg and "'LiFePO4'" in msg
    assert "LiFe(II)PO4" in msg and "Hematite_NP" in msg
    with pytest.raises(MissingColumnError, match="name one as FILE:COLUMN"):
        select_column(LIB)


def test_reader_errors_and_plain_two_column(tmp_path: Path) -> None:
    bad = tmp_path / "notes.txt"
    bad.write_text("just words\nno numbers here\n")
    with pytest.raises(XasTextError, match=r"notes\.txt: no numeric data"):
        read_xas_text(bad)
    ragged = tmp_path / "ragged.dat"
    ragged.write_text("# e mu\n1 2\n3 4\n5 6 7\n8 9 10\n")
    with pytest.raises(XasTextError, match=r"ragged\.dat: line 3 has 2 column"):
        read_xas_text(ragged)
    with pytest.raises(XasTextError, match="no such file"):
        select_column(tmp_path / "absent.nor:x")
    two = tmp_path / "two.txt"
    two.write_text("7100.0, 0.1\n7101.0, 0.2\n")
    sel = select_column(two)
    assert sel.name == "col2" and sel.values.tolist() == [0.1, 0.2]


def test_write_xdi_round_trip(tmp_path: Path) -> None:
    e = np.linspace(7100, 7200, 11)
    path = write_xdi(
        tmp_path / "s.xdi",
        {"energy": e, "A": e * 0 + 1.5},
        units={"energy": "eV"},
        metadata={"Element.symbol": "Fe"},
    )
    xt = read_xas_text(path)
    assert xt.labels == ["energy", "A"] and xt.units == {"energy": "eV"}
    np.testing.assert_allclose(xt.energy, e)
    assert xt.metadata["Element.symbol"] == "Fe"


# --- the simulated stream ------------------------------------------------------------------


@pytest.mark.realdata
def test_file_layout_plain_h5py(sim) -> None:
    ctx, res = sim
    assert res.files["scans"] == "xanes/xanes_scans.h5"
    for name in ("LiFePO4", "FePO4"):
        sel = select_column(ctx.outdir / res.files[f"standard_{name}"])
        assert sel.name == name and sel.values.size == res.truth["n_points"]
    truth = res.truth
    json.dumps(truth)
    n = truth["n_scans"]
    assert n == len(truth["time_s"]) == len(truth["fraction"]["FePO4"]) > 100
    with h5py.File(ctx.outdir / res.files["scans"], "r") as f:
        assert sorted(f, key=lambda s: int(s.split(".")[0])) == [f"{k}.1" for k in range(1, n + 1)]
        entry = f["3.1"]
        assert entry.attrs["NX_class"] == "NXentry"
        assert entry["title"][()].decode() == "xanes 3"
        start = entry["start_time"][()].decode()
        assert start.endswith("+00:00") and "T" in start
        assert entry["measurement"].attrs["NX_class"] == "NXcollection"
        for key, rel in truth["paths"].items():
            ds = entry[rel]
            assert ds.shape == (truth["n_points"],), key
        assert entry["measurement/energy"].attrs["units"] == "eV"
        assert entry["measurement/epoch"].attrs["units"] == "s"
        epoch = entry["measurement/epoch"][()]
    t_pot = ctx.clock.to_potentiostat(epoch)
    assert t_pot[0] >= truth["time_start_s"][2] - 0.01
    assert t_pot[-1] <= truth["time_end_s"][2] + 0.01
    # the reader used by later stages agrees
    scans = read_xas_scans(ctx.outdir / res.files["scans"])
    assert len(scans) == n and scans[2].title == "xanes 3"
    assert scans[2].start_time == start


def _norm_mu(e_true: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """Crude normalisation: pre-edge line (E < 7100) removed, post-edge mean → 1."""
    pre = e_true < 7100.0
    post = (e_true > 7150.0) & (e_true < 7195.0)
    line = np.polyval(np.polyfit(e_true[pre], mu[pre], 1), e_true)
    return (mu - line) / (mu - line)[post].mean()


@pytest.mark.realdata
def test_lcf_of_a_scan_recovers_truth_fraction(sim, sim_scans) -> None:
    _, res = sim
    truth = res.truth
    lib = read_xas_text(LIB)
    frac = np.asarray(truth["fraction"]["FePO4"])
    picks = [int(np.argmin(abs(frac - target))) for target in (0.1, 0.5, 0.85)]
    scans = sim_scans
    for k in picks:
        m = scans[k].measurement
        e_true = m["energy"] - truth["energy_offset_eV"]
        mu = _norm_mu(e_true, np.log(m["I0"] / m["It"]))
        fit = (e_true > 7105.0) & (e_true < 7195.0)
        basis = np.column_stack(
            [
                np.interp(e_true[fit], lib.energy, lib.column(c))
                for c in ("LiFe(II)PO4", "Fe(III)PO4")
            ]
        )
        coef, *_ = np.linalg.lstsq(basis, mu[fit], rcond=None)
        got = coef[1] / coef.sum()
        assert got == pytest.approx(frac[k], abs=0.03), (k, got, frac[k])


@pytest.mark.realdata
def test_reference_foil_edge_at_offset(sim, sim_scans) -> None:
    _, res = sim
    scans = sim_scans
    expected = 7111.0 + res.truth["energy_offset_eV"]
    assert res.truth["foil_e0_eV"] == 7111.0
    for scan in scans[::25]:
        m = scan.measurement
        e = m["energy"]
        ref = np.log(m["It"] / m["Iref"])
        ref = np.convolve(ref, np.ones(3) / 3, mode="same")  # light smoothing
        d = np.gradient(ref, e)
        sel = (e > 7105) & (e < 7125)
        assert e[sel][np.argmax(d[sel])] == pytest.approx(expected, abs=0.5)


def test_determinism_and_seed(analytic, tmp_path: Path) -> None:
    ctx_a, a = analytic
    b = simulate_xanes(_ctx(tmp_path / "b", seed=0, data_dir=None))
    c = simulate_xanes(_ctx(tmp_path / "c", seed=1, data_dir=None))
    assert a.truth == b.truth

    def entry(root: Path, res) -> dict[str, np.ndarray]:
        with h5py.File(root / res.files["scans"], "r") as f:
            return {k: f["6.1/measurement"][k][()] for k in ("I0", "It", "Iref", "epoch")}

    ea, eb, ec = entry(ctx_a.outdir, a), entry(tmp_path / "b", b), entry(tmp_path / "c", c)
    for key in ea:
        np.testing.assert_array_equal(ea[key], eb[key])
    assert not np.array_equal(ea["It"], ec["It"])
    assert not np.array_equal(ea["epoch"], ec["epoch"])


def test_analytic_fallback_without_data(analytic) -> None:
    ctx, res = analytic
    tmp_path = ctx.outdir
    truth = res.truth
    assert truth["standards_source"] == "analytic" and truth["foil_source"] == "analytic"
    assert any("analytic" in n for n in res.notes)
    scans = read_xas_scans(tmp_path / res.files["scans"])
    # analytic foil edge also lands at 7111.0 + offset on the recorded axis
    m = scans[10].measurement
    d = np.gradient(np.log(m["It"] / m["Iref"]), m["energy"])
    assert m["energy"][np.argmax(d)] == pytest.approx(7111.0 + truth["energy_offset_eV"], abs=0.5)
    # and the LCF on the written analytic standards recovers the fraction
    std = {c: select_column(tmp_path / res.files[f"standard_{c}"]) for c in ("LiFePO4", "FePO4")}
    frac = np.asarray(truth["fraction"]["FePO4"])
    k = int(np.argmin(abs(frac - 0.6)))
    m = scans[k].measurement
    e_true = m["energy"] - truth["energy_offset_eV"]
    mu = _norm_mu(e_true, np.log(m["I0"] / m["It"]))
    fit = (e_true > 7105.0) & (e_true < 7195.0)
    basis = np.column_stack(
        [np.interp(e_true[fit], std[c].energy, std[c].values) for c in ("LiFePO4", "FePO4")]
    )
    coef, *_ = np.linalg.lstsq(basis, mu[fit], rcond=None)
    assert coef[1] / coef.sum() == pytest.approx(frac[k], abs=0.03)
