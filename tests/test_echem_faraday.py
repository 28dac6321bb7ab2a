"""Faraday quantities (operando.echem.faraday) against the simulator's truth and by hand."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from operando.constants import FARADAY_C_PER_MOL, MAH_TO_C
from operando.echem.faraday import (
    achieved_capacity_C,
    add_faraday,
    c_rate_per_segment,
    faraday_phase_fraction,
    li_content,
    reference_capacity_C,
    theoretical_capacity_C,
    theoretical_capacity_mAh_g,
)
from operando.echem.segments import add_segments
from operando.io.echem.biologic import read_mpt
from operando.simulate.beamtime import load_truth

LFP_G_MOL = 157.757


@pytest.fixture(scope="module")
def run(small_run):
    truth = load_truth(small_run.truth_path)
    ds = add_segments(read_mpt(small_run.outdir / "echem/cell.mpt", timezone="Europe/Paris"))
    return ds, truth["echem"]


def _faraday_kwargs(te: dict) -> dict:
    return {"active_mass_mg": te["active_mass_mg"], "molar_mass_g_mol": te["molar_mass_g_mol"],
            "electrons_per_formula_unit": te["electrons_per_formula_unit"]}


def _truth_x(te: dict, t: np.ndarray) -> np.ndarray:
    """x(t) of the simulated protocol from the truth alone: x_start − Σ I_seg·Δt / Q_th,
    with I_seg = +I on charge, −I on discharge, 0 at rest (piecewise linear)."""
    sign = {"charge": 1.0, "discharge": -1.0, "rest": 0.0}
    x = np.full(t.shape, te["x_start"], dtype=float)
    for seg in te["segments"]:
        dt = np.clip(t, seg["start_s"], seg["end_s"]) - seg["start_s"]
        x -= sign[seg["name"]] * te["current_A"] * dt / te["capacity_theoretical_C"]
    return x


# --------------------------------------------------------------------------------------
# against the simulated run


def test_theoretical_capacity_matches_truth(run) -> None:
    _, te = run
    q = theoretical_capacity_C(**_faraday_kwargs(te))
    assert q == pytest.approx(te["capacity_theoretical_C"], rel=1e-12)
    # mA·h/g × g × 3.6 C/(mA·h) is the same capacity
    q_specific = theoretical_capacity_mAh_g(te["molar_mass_g_mol"],
                                            te["electrons_per_formula_unit"])
    assert q_specific * te["active_mass_mg"] * 1e-3 * MAH_TO_C == pytest.approx(q, rel=1e-12)


def test_li_content_follows_truth_at_every_sample(run) -> None:
    """x(t) from the mpt's charge column = the protocol's exact Faraday x(t). The charge is
    printed with 16 significant digits (%.15E mA·h), so x agrees to ~1e-15; 1e-12 allowed."""
    ds, te = run
    out = add_faraday(ds, **_faraday_kwargs(te), x0=te["x_start"])
    x = out["x_li"].values
    t = ds["time_s"].values
    np.testing.assert_allclose(x, _truth_x(te, t), rtol=0, atol=1e-12)
    assert x[-1] == pytest.approx(te["x_li_end"], abs=1e-12)
    assert x.min() == pytest.approx(te["x_li_min"], abs=1e-12)
    # the same with the bare function (charging lowers x)
    np.testing.assert_allclose(
        li_content(ds["charge_C"].values, **_faraday_kwargs(te), x0=te["x_start"]), x,
        rtol=0, atol=1e-15)
    attrs = out["x_li"].attrs
    assert attrs["units"] == "1" and "Faraday" in attrs["long_name"]
    assert attrs["equation"] == "x = x0 - Q * M / (n * F * m)"
    assert attrs["capacity_theoretical_C"] == pytest.approx(te["capacity_theoretical_C"])


def test_faraday_fraction_theoretical_and_achieved(run) -> None:
    ds, te = run
    t = ds["time_s"].values
    theo = add_faraday(ds, **_faraday_kwargs(te), x0=te["x_start"],
                       capacity_reference="theoretical")
    # two-phase LiFePO4 / FePO4: FePO4 fraction = 1 − x (x within [0, 1] here)
    np.testing.assert_allclose(theo["faraday_fraction"].values, 1.0 - _truth_x(te, t),
                               rtol=0, atol=1e-12)
    assert theo["faraday_fraction"].attrs["capacity_reference"] == "theoretical"
    assert theo["faraday_fraction"].attrs["capacity_reference_C"] == pytest.approx(
        te["capacity_theoretical_C"], rel=1e-12)

    # achieved: the first charge passed 0.9 Q_th; normalised by it, the end of charge is 1
    q_ach = achieved_capacity_C(ds)
    assert q_ach == pytest.approx(te["charge_passed_C"], rel=1e-12)
    ach = add_faraday(ds, **_faraday_kwargs(te), x0=te["x_start"],
                      capacity_reference="achieved")
    f = ach["faraday_fraction"].values
    end_charge = te["segments"][0]["end_s"]
    assert f[np.searchsorted(t, end_charge)] == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(f, ds["charge_C"].values / te["charge_passed_C"], atol=1e-12)
    assert ach["faraday_fraction"].attrs["capacity_reference_C"] == pytest.approx(q_ach)
    # a given capacity replaces the first charge
    given = add_faraday(ds, **_faraday_kwargs(te), capacity_reference="achieved",
                        capacity_C=2.0 * te["charge_passed_C"])
    assert given["faraday_fraction"].values.max() == pytest.approx(0.5, abs=1e-12)


def test_c_rate_per_segment_matches_truth(run) -> None:
    ds, te = run
    rates = c_rate_per_segment(ds, te["capacity_theoretical_C"])
    assert [r.kind for r in rates] == [s["name"] for s in te["segments"]]
    for r, seg in zip(rates, te["segments"], strict=True):
        assert r.start_s == pytest.approx(seg["start_s"])
        assert r.end_s == pytest.approx(seg["end_s"])
        if seg["name"] == "rest":
            assert r.c_rate_per_h == pytest.approx(0.0, abs=1e-9)
        else:
            assert r.c_rate_per_h == pytest.approx(te["c_rate_per_h"], rel=0.01)
            assert r.mean_abs_current_A == pytest.approx(te["current_A"], rel=1e-6)


# --------------------------------------------------------------------------------------
# by hand


def test_theoretical_capacity_by_hand() -> None:
    # LiFePO4: 169.9 mA·h/g; 5 mg -> n F m / M
    assert theoretical_capacity_mAh_g(LFP_G_MOL) == pytest.approx(169.9, abs=0.05)
    assert theoretical_capacity_C(5.0, LFP_G_MOL) == pytest.approx(
        FARADAY_C_PER_MOL * 5e-3 / LFP_G_MOL, rel=1e-15)
    assert theoretical_capacity_C(5.0, LFP_G_MOL, 2.0) == pytest.approx(
        2 * theoretical_capacity_C(5.0, LFP_G_MOL), rel=1e-15)
    with pytest.raises(ValueError, match="active_mass_mg"):
        theoretical_capacity_C(0.0, LFP_G_MOL)
    with pytest.raises(ValueError, match="molar_mass_g_mol"):
        theoretical_capacity_C(5.0, -1.0)


def test_li_content_sign_and_x0() -> None:
    q_th = theoretical_capacity_C(5.0, LFP_G_MOL)
    kw = {"active_mass_mg": 5.0, "molar_mass_g_mol": LFP_G_MOL}
    # charge (positive Q) delithiates; a full theoretical capacity takes x from 1 to 0
    np.testing.assert_allclose(li_content(np.array([0.0, 0.5 * q_th, q_th]), **kw),
                               [1.0, 0.5, 0.0], atol=1e-15)
    assert li_content(-0.25 * q_th, **kw, x0=0.5) == pytest.approx(0.75)
    # not clipped: over-charge shows as x < 0
    assert li_content(1.1 * q_th, **kw) == pytest.approx(-0.1)


def test_phase_fraction_reference_x0_and_clipping() -> None:
    q = np.array([-1.0, 0.0, 1.0, 2.0, 3.0])
    np.testing.assert_allclose(faraday_phase_fraction(q, capacity_C=2.0),
                               [0.0, 0.0, 0.5, 1.0, 1.0])
    np.testing.assert_allclose(faraday_phase_fraction(q, capacity_C=2.0, clip=False),
                               [-0.5, 0.0, 0.5, 1.0, 1.5])
    # start partly delithiated: x0 = 0.8 -> 20 % FePO4 before any charge
    assert faraday_phase_fraction(0.0, capacity_C=2.0, x0=0.8) == pytest.approx(0.2)
    # other end members: x between 0.9 and 0.1, x0 = 0.9 -> f = Q / Q_ref
    assert faraday_phase_fraction(1.0, capacity_C=4.0, x0=0.9, x_lithiated=0.9,
                                  x_delithiated=0.1) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="x_lithiated > x_delithiated"):
        faraday_phase_fraction(q, capacity_C=2.0, x_lithiated=0.0, x_delithiated=1.0)
    with pytest.raises(ValueError, match="capacity_C"):
        faraday_phase_fraction(q, capacity_C=0.0)
    # the theoretical reference spans the end members: Q_th · (x_lith − x_delith)
    q_ref, how = reference_capacity_C(None, "theoretical", active_mass_mg=5.0,
                                      molar_mass_g_mol=LFP_G_MOL, x_lithiated=0.9,
                                      x_delithiated=0.1)
    assert q_ref == pytest.approx(0.8 * theoretical_capacity_C(5.0, LFP_G_MOL))
    assert "theoretical" in how
    with pytest.raises(ValueError, match="'theoretical' or 'achieved'"):
        reference_capacity_C(None, "nominal", active_mass_mg=5.0,  # type: ignore[arg-type]
                             molar_mass_g_mol=LFP_G_MOL)


def _toy(current_A: list[float], dt_s: float = 10.0) -> xr.Dataset:
    """Echem dataset from per-sample currents: Q by the trapezoid rule, labels by sign."""
    i = np.asarray(current_A, dtype=float)
    t = dt_s * np.arange(i.size)
    q = np.concatenate([[0.0], np.cumsum(0.5 * (i[1:] + i[:-1]) * np.diff(t))])
    seg = np.where(i > 0, "charge", np.where(i < 0, "discharge", "rest"))
    d = "echem_time"
    return xr.Dataset({"current_A": (d, i), "charge_C": (d, q), "voltage_V": (d, 3.4 + 0 * i),
                       "segment": (d, seg)}, coords={"time_s": (d, t)})


def test_achieved_capacity_counts_a_charge_interrupted_by_rests() -> None:
    # charge 1 mA (samples 0-3), rest, charge again, then discharge: the first charge is
    # both charge segments (30 s + 20 s at 1 mA up to the next label's first sample)
    ds = _toy([1e-3, 1e-3, 1e-3, 1e-3, 0, 0, 1e-3, 1e-3, 1e-3, -1e-3, -1e-3])
    q = ds["charge_C"].values
    expected = (q[4] - q[0]) + (q[9] - q[6])
    assert achieved_capacity_C(ds) == pytest.approx(expected, rel=1e-12)
    assert achieved_capacity_C(ds, "discharge") == pytest.approx(abs(q[-1] - q[9]))
    with pytest.raises(ValueError, match="expected a 'charge' segment"):
        achieved_capacity_C(_toy([0, 0, -1e-3, -1e-3]))
    with pytest.raises(ValueError, match="half_cycle"):
        achieved_capacity_C(ds, "rest")


def test_add_faraday_bad_input() -> None:
    ds = _toy([1e-3, 1e-3, 0.0])
    with pytest.raises(ValueError, match="no 'charge_C'"):
        add_faraday(ds.drop_vars("charge_C"), active_mass_mg=5.0, molar_mass_g_mol=LFP_G_MOL)
    with pytest.raises(ValueError, match=r"dataset lacks \['segment'\]"):
        add_faraday(ds.drop_vars("segment"), active_mass_mg=5.0, molar_mass_g_mol=LFP_G_MOL,
                    capacity_reference="achieved")
    with pytest.raises(ValueError, match="only used with capacity_reference 'achieved'"):
        add_faraday(ds, active_mass_mg=5.0, molar_mass_g_mol=LFP_G_MOL, capacity_C=1.0)
    out = add_faraday(ds, active_mass_mg=5.0, molar_mass_g_mol=LFP_G_MOL)
    assert set(out.data_vars) == set(ds.data_vars) | {"x_li", "faraday_fraction"}
    assert "x_li" not in ds  # the input is not modified
    assert out["faraday_fraction"].attrs["units"] == "1"
