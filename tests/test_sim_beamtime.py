"""The synthetic beamtime as a whole: echem physics, clock and triggers, truth.json,
run.yaml, and determinism for a seed."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import h5py
import numpy as np
import pytest

from operando.config import expand_inputs, load_config
from operando.io.echem.biologic import read_mpt
from operando.io.echem.triggers import read_trigger_record
from operando.simulate.beamtime import simulate_beamtime
from operando.simulate.clock import ClockModel, make_clock, record_triggers
from operando.simulate.echem import discharge_retention, simulate_echem
from operando.simulate.presets import FARADAY_C_PER_MOL, PRESETS, ClockSpec, get_preset

REQUIRED_TRUTH = [
    "clock.offset_s", "clock.drift_ppm", "xrd.time_s", "xrd.phase_fraction.LiFePO4",
    "xrd.phase_fraction.FePO4", "xrd.wavelength_A", "xanes.time_s", "xanes.fraction.LiFePO4",
    "xanes.fraction.FePO4", "xanes.energy_offset_eV", "xanes.lag_s", "confocal.depth_um",
    "confocal.relaxation_time_s", "kinetics.D_cm2_s", "kinetics.max_linear_scan_rate_V_s",
    "kinetics.map_D_cm2_s",
]


def _get(d: dict, dotted: str):
    for part in dotted.split("."):
        d = d[part]
    return d


# ----------------------------------------------------------------------------- echem


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_echem_obeys_faraday(name: str) -> None:
    spec = get_preset(name).echem
    e = simulate_echem(spec)
    n_mol = spec.active_mass_mg * 1e-3 / spec.molar_mass_g_mol
    assert e.capacity_theoretical_C == pytest.approx(FARADAY_C_PER_MOL * n_mol)
    # 170 mAh/g is LiFePO4's theoretical specific capacity
    assert e.capacity_theoretical_C / 3.6 / (spec.active_mass_mg * 1e-3) == pytest.approx(
        169.9, abs=0.1)
    # charge passed = ∫ I dt (piecewise-constant current: exact for the left-point rule)
    q = np.concatenate([[0.0], np.cumsum(e.current_A[:-1] * np.diff(e.time_s))])
    np.testing.assert_allclose(e.charge_C, q, atol=1e-9)
    # x falls by the depth of charge; the discharge gives back r(C) of it (rate capability)
    assert e.x_li.min() == pytest.approx(spec.x_start - spec.depth_of_charge)
    r = discharge_retention(spec)
    assert r == pytest.approx(min(1.0, 1 - 0.015 * (spec.c_rate_per_h - 1)))
    assert e.x_li[-1] == pytest.approx(spec.x_start - spec.depth_of_charge * (1 - r))
    charge_end = e.segment_bounds_s[0][1]
    assert charge_end == pytest.approx(spec.depth_of_charge * 3600 / spec.c_rate_per_h)
    t_dis = np.diff(e.segment_bounds_s[2])[0]
    assert t_dis == pytest.approx(r * charge_end)
    # charge current is positive (oxidation), discharge negative, rests zero
    seg = e.segment_index
    assert np.all(e.current_A[seg == 0] > 0) and np.all(e.current_A[seg == 2] < 0)
    assert np.all(e.current_A[(seg == 1) | (seg == 3)] == 0)
    # voltage: above the LFP plateau on charge by the iR drop, below it on discharge
    mid_charge = np.argmin(np.abs(e.time_s - charge_end / 2))
    i = e.current_A[mid_charge]
    assert e.voltage_V[mid_charge] == pytest.approx(
        spec.ocv_plateau_V + i * (spec.r_ohm_ohm + spec.r_ct_ohm), abs=0.02)
    assert np.all((e.voltage_V > 2.5) & (e.voltage_V < 4.3))


def test_faraday_fraction_is_exact_between_samples() -> None:
    e = simulate_echem(get_preset("small").echem)  # 2C: charge 1620 s, returns 98.5 %
    t = np.array([0.0, 810.0, e.segment_bounds_s[0][1], e.duration_s])
    np.testing.assert_allclose(e.faraday_fepo4_fraction_at(t), [0.0, 0.45, 0.9, 0.9 * 0.015],
                               atol=1e-12)


# ----------------------------------------------------------------------------- clock


def test_clock_start_is_local_time_in_the_configured_zone() -> None:
    spec = get_preset("small").echem  # 2026-03-14 09:30 Europe/Paris = CET, UTC+1
    clock = make_clock(spec, ClockSpec())
    assert datetime.fromtimestamp(clock.start_epoch_s, tz=timezone.utc) == datetime(
        2026, 3, 14, 8, 30, tzinfo=timezone.utc)
    t = np.array([0.0, 1000.0, 1e5])
    np.testing.assert_allclose(clock.to_potentiostat(clock.to_beamline_epoch(t)), t, atol=1e-6)
    # offset 1.7 s at t=0; 20 ppm drift adds 2 ms per 100 s
    assert clock.to_beamline_epoch(0.0) - clock.start_epoch_s == pytest.approx(1.7)
    assert (clock.to_beamline_epoch(1e5) - clock.to_beamline_epoch(0.0)) == pytest.approx(
        1e5 + 2.0)


def test_trigger_record_has_missing_and_spurious_pulses() -> None:
    sent = np.arange(5.0, 3000.0, 30.0)
    spec = ClockSpec(n_missing_triggers=3, n_spurious_triggers=1)
    rec = record_triggers(sent, spec, np.random.default_rng(1))
    assert rec.time_s.size == sent.size - 3 + 1
    assert rec.missing_index.size == 3 and 0 not in rec.missing_index
    assert sent.size - 1 not in rec.missing_index
    assert np.all(np.diff(rec.time_s) > 0)
    kept = np.setdiff1d(np.arange(sent.size), rec.missing_index)
    real = np.array([t for t in rec.time_s if np.min(np.abs(rec.spurious_time_s - t)) > 1e-3])
    np.testing.assert_allclose(real, sent[kept], atol=5 * spec.potentiostat_jitter_s)


# ----------------------------------------------------------------------------- beamtime


def test_truth_has_every_required_key(small_run) -> None:
    truth = json.loads(small_run.truth_path.read_text())
    for key in REQUIRED_TRUTH:
        assert _get(truth, key) is not None, key
    n = len(truth["xrd"]["time_s"])
    for phase, frac in truth["xrd"]["phase_fraction"].items():
        assert len(frac) == n, phase
    total = np.sum([truth["xrd"]["phase_fraction"][p] for p in truth["xrd"]["phase_fraction"]],
                   axis=0)
    np.testing.assert_allclose(total, 1.0, atol=1e-9)
    for frac in truth["xrd"]["phase_fraction"].values():
        assert min(frac) >= -1e-12
    # the crystalline phases conserve Li: f_LFP + x_i f_int = x at (t − lag)
    e = simulate_echem(small_run.preset.echem)
    lag = truth["xrd"]["lag_s"]
    t0, t1 = np.array(truth["xrd"]["time_start_s"]), np.array(truth["xrd"]["time_end_s"])
    ts = t0[:, None] + (t1 - t0)[:, None] * (np.arange(64) + 0.5) / 64
    x_expected = e.x_li_at(np.maximum(ts - lag, 0)).mean(axis=1)
    np.testing.assert_allclose(truth["xrd"]["x_li_structural"], x_expected, atol=2e-3)
    assert truth["clock"]["offset_s"] == pytest.approx(1.7)
    assert truth["clock"]["drift_ppm"] == pytest.approx(20.0)
    assert len(truth["xanes"]["fraction"]["FePO4"]) == len(truth["xanes"]["time_s"])
    assert np.asarray(truth["kinetics"]["map_D_cm2_s"]).shape == (16, 16)


def test_run_yaml_is_valid_and_points_at_every_file(small_run) -> None:
    cfg = load_config(small_run.run_config_path)  # checks every input exists
    assert cfg.echem is not None and cfg.xrd is not None and cfg.xanes is not None
    assert cfg.confocal is not None and cfg.kinetics is not None and cfg.sync is not None
    assert cfg.product_dir == (small_run.outdir / "reduced" / cfg.run.name).resolve()
    assert cfg.echem.timezone == "Europe/Paris"
    written = {(small_run.outdir / rel).resolve() for f in small_run.files.values()
               for rel in f.values()}
    referenced = set(cfg.echem.files) | set(expand_inputs(cfg.xrd.files)) | {
        cfg.sync.trigger_file, cfg.xrd.integration.poni, cfg.xrd.integration.mask,
        *cfg.xanes.files, *cfg.confocal.files, cfg.confocal.integration.poni,
        cfg.confocal.integration.mask, *expand_inputs(cfg.kinetics.cv_files),
        cfg.kinetics.map_file}
    assert referenced <= written
    with h5py.File(cfg.xrd.files[0], "r") as h5:
        assert cfg.xrd.dataset in h5 and cfg.xrd.timestamp_path in h5
        assert cfg.xrd.monitor_path in h5 and cfg.xrd.count_time_path in h5


def test_echem_file_reads_back_to_the_truth(small_run) -> None:
    truth = json.loads(small_run.truth_path.read_text())
    cfg = load_config(small_run.run_config_path)
    ds = read_mpt(cfg.echem.files, timezone=cfg.echem.timezone)
    e = simulate_echem(small_run.preset.echem)
    np.testing.assert_allclose(ds["time_s"].values, e.time_s, atol=1e-3)
    np.testing.assert_allclose(ds["current_A"].values, e.current_A, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(ds["voltage_V"].values, e.voltage_V, atol=1e-6)
    np.testing.assert_allclose(ds["charge_C"].values.max(), truth["echem"]["charge_passed_C"],
                               rtol=1e-5)
    t0 = np.datetime64(int(truth["echem"]["acquisition_start_epoch_s"] * 1e9), "ns")
    assert ds["time_utc"].values[0] == t0


def test_trigger_record_and_frame_timestamps_follow_the_clock_truth(small_run) -> None:
    truth = json.loads(small_run.truth_path.read_text())
    cfg = load_config(small_run.run_config_path)
    recorded = read_trigger_record(cfg.sync.trigger_file)
    with h5py.File(cfg.xrd.files[0], "r") as h5:
        stamps = h5[cfg.xrd.timestamp_path][()]
    c = truth["clock"]
    clock = ClockModel(c["acquisition_start_epoch_s"], c["offset_s"], c["drift_ppm"])
    sent_pot = clock.to_potentiostat(stamps)
    np.testing.assert_allclose(sent_pot, truth["xrd"]["trigger_time_s"], atol=5e-3)
    assert recorded.size == c["n_recorded"] == c["n_sent"] - len(c["missing_trigger_index"]) + len(
        c["spurious_trigger_time_s"])
    kept = np.setdiff1d(np.arange(stamps.size), c["missing_trigger_index"])
    genuine = recorded[~np.isin(np.round(recorded, 4), np.round(c["spurious_trigger_time_s"], 4))]
    np.testing.assert_allclose(genuine, sent_pot[kept], atol=10e-3)
    # without the clock model the two sides disagree by the offset: the sync is needed
    naive = stamps - c["acquisition_start_epoch_s"]
    assert np.all(np.abs(naive[kept] - genuine) > 1.5)


def _datasets(path: Path) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    with h5py.File(path, "r") as h5:
        h5.visititems(lambda name, obj: out.__setitem__(name, obj[()])
                      if isinstance(obj, h5py.Dataset) else None)
    return out


def test_same_seed_same_run_different_seed_different(small_run, tmp_path: Path) -> None:
    again = simulate_beamtime(tmp_path / "again", "small", seed=0)
    t0 = json.loads(small_run.truth_path.read_text())
    t1 = json.loads(again.truth_path.read_text())
    assert t0 == t1
    for stream, files in small_run.files.items():
        for role, rel in files.items():
            a, b = small_run.outdir / rel, again.outdir / rel
            if a.suffix == ".h5":
                da, db = _datasets(a), _datasets(b)
                assert da.keys() == db.keys(), (stream, role)
                for k in da:
                    np.testing.assert_array_equal(da[k], db[k], err_msg=f"{rel}:{k}")
            else:
                assert a.read_bytes() == b.read_bytes(), (stream, role)
    other = simulate_beamtime(tmp_path / "other", "small", seed=1, streams=("xrd", "xanes"))
    t2 = json.loads(other.truth_path.read_text())
    assert t2["clock"]["missing_trigger_index"] != t0["clock"]["missing_trigger_index"] or \
        t2["clock"]["spurious_trigger_time_s"] != t0["clock"]["spurious_trigger_time_s"]
    key = "/entry/instrument/detector/data"
    with h5py.File(small_run.outdir / small_run.files["xrd"]["frames"], "r") as h0, \
            h5py.File(other.outdir / other.files["xrd"]["frames"], "r") as h1:
        assert not np.array_equal(h0[key][:3], h1[key][:3])
    # the physics (truth fractions) does not depend on the seed, only the noise does
    np.testing.assert_allclose(t2["xrd"]["phase_fraction"]["FePO4"],
                               t0["xrd"]["phase_fraction"]["FePO4"])


def test_a_stream_subset_gives_a_valid_config(tmp_path: Path) -> None:
    res = simulate_beamtime(tmp_path, "small", seed=3, streams=("kinetics",))
    cfg = load_config(res.run_config_path)
    assert cfg.xrd is None and cfg.sync is None and cfg.kinetics is not None
    assert "trigger_file" not in res.run_config_path.read_text()


def test_configs_demo_yaml_matches_what_the_simulator_writes(small_run) -> None:
    """configs/demo.yaml is the demo run's run.yaml with paths rebased onto configs/."""
    import yaml

    repo = Path(__file__).resolve().parents[1]
    demo = yaml.safe_load((repo / "configs" / "demo.yaml").read_text())
    sim = yaml.safe_load(small_run.run_config_path.read_text())
    prefix = "../operando-demo/raw/"

    def paths(node, out: list[str]) -> list[str]:
        if isinstance(node, dict):
            for k, v in node.items():
                if k in ("files", "cv_files", "trigger_file", "poni", "mask", "map_file", "file"):
                    out.extend([v] if isinstance(v, str) else v)
                else:
                    paths(v, out)
        elif isinstance(node, list):
            for v in node:
                paths(v, out)
        return out

    demo_paths = paths(demo, [])
    assert all(p.startswith(prefix) for p in demo_paths), demo_paths
    assert [p.removeprefix(prefix) for p in demo_paths] == paths(sim, [])
    assert demo["output"]["directory"] == "../operando-demo/reduced"
    assert demo.keys() == sim.keys()
    for section in sim:
        if isinstance(sim[section], dict):
            assert demo[section].keys() == sim[section].keys(), section
