"""One clock per X-ray stream (E13): config resolution and validation, the burst-aware
trigger fit, per-stream identities, and the `small-clocks` beamtime where XANES and
confocal are timed by their own controllers (offsets, drifts, missing / spurious pulses)."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import yaml

from operando.config import ConfigError, SyncSection, load_config, validate_config
from operando.echem.sync import fit_clock

EPOCH0 = 1.7734e9


# --------------------------------------------------------------------------- config


def test_legacy_sync_means_one_clock_of_the_reference():
    sec = SyncSection(trigger_file=None, method="timestamps", reference_stream="xrd")
    assert {s: sec.source(s) for s in ("xrd", "xanes", "confocal")} == \
        {"xrd": "xrd", "xanes": "xrd", "confocal": "xrd"}


def test_streams_own_and_borrowed_clocks(tmp_path):
    t = tmp_path / "t.txt"
    t.write_text("x")
    sec = SyncSection(trigger_file=t, reference_stream="xrd", max_rms_residual_s=0.01,
                      streams={"xanes": {"trigger_file": t, "pulse": "point", "drift": False},
                               "confocal": {"clock": "xanes"}})
    assert sec.source("xanes") == "xanes" and sec.source("confocal") == "xanes"
    assert sec.chain("confocal") == ["confocal", "xanes"]
    st = sec.settings("xanes")
    assert (st.pulse, st.drift, st.max_rms_residual_s) == ("point", False, 0.01)
    with pytest.raises(ValueError, match="circle"):
        SyncSection(trigger_file=t, streams={"xanes": {"clock": "confocal"},
                                             "confocal": {"clock": "xanes"}})
    with pytest.raises(ValueError, match=r"streams.xanes: method 'triggers' expects its own"):
        SyncSection(trigger_file=t, streams={"xanes": {"pulse": "scan"}})
    with pytest.raises(ValueError, match=r"streams.confocal.pulse"):
        SyncSection(trigger_file=t, streams={"confocal": {"trigger_file": t, "pulse": "scan"}})
    with pytest.raises(ValueError, match="expects no other key"):
        SyncSection(trigger_file=t, streams={"xanes": {"clock": "xrd", "trigger_file": t}})


@pytest.fixture(scope="module")
def clocks_run(tmp_path_factory):
    """`small-clocks`, XANES (a pulse per energy point) and confocal only, each on its own
    controller: simulated once for this module."""
    from operando.simulate.beamtime import simulate_beamtime

    return simulate_beamtime(tmp_path_factory.mktemp("small-clocks"), "small-clocks", seed=0,
                             streams=["xanes", "confocal"])


def _raw(run) -> dict:
    return yaml.safe_load(run.run_config_path.read_text())


def _validate(raw, run):
    return validate_config(raw, source="run.yaml", base_dir=run.outdir)


def test_validation_refuses_a_reference_the_run_cannot_provide(clocks_run):
    raw = _raw(clocks_run)
    bad = copy.deepcopy(raw)
    bad["sync"] = {"trigger_file": raw["sync"]["trigger_file"], "reference_stream": "xrd"}
    with pytest.raises(ConfigError, match=r"sync.reference_stream is 'xrd'"):
        _validate(bad, clocks_run)
    bad = copy.deepcopy(raw)
    del bad["confocal"]
    with pytest.raises(ConfigError, match=r"sync.streams.confocal: there is no 'confocal'"):
        _validate(bad, clocks_run)
    bad = copy.deepcopy(raw)
    bad["sync"]["streams"]["confocal"] = {"clock": "xrd"}
    with pytest.raises(ConfigError, match=r"sync.streams.confocal.clock: borrows 'xrd'"):
        _validate(bad, clocks_run)
    bad = copy.deepcopy(raw)
    bad["xanes"]["epoch_path"] = None
    with pytest.raises(ConfigError, match="pulse 'point' expects per-point times"):
        _validate(bad, clocks_run)


def test_run_yaml_and_truth_name_every_controller(clocks_run):
    raw = _raw(clocks_run)
    assert raw["sync"]["reference_stream"] == "xanes"
    assert raw["sync"]["streams"] == {
        "xanes": {"pulse": "point"},
        "confocal": {"trigger_file": "echem/triggers_confocal.txt"}}
    clocks = clocks_run.truth["clocks"]
    assert clocks["xanes"]["offset_s"] != clocks["confocal"]["offset_s"]
    assert clocks["xanes"]["drift_ppm"] != clocks["confocal"]["drift_ppm"]
    assert len(clocks["xanes"]["missing_trigger_index"]) == 5
    assert len(clocks["confocal"]["missing_trigger_index"]) == 3


# --------------------------------------------------------------------------- science


def test_fit_clock_bursts_point_pulses():
    """A pulse per XANES energy point (0.1 s apart, 2 s between scans): the offset (2.3 s)
    is many point periods from the header, so only the burst starts can place it."""
    rng = np.random.default_rng(3)
    t = (10.0 + 32.0 * np.arange(40)[:, None] + 0.1 * (np.arange(300) + 0.5)).ravel()
    offset, drift = -2.3, -35.0
    sent = EPOCH0 + offset + (1 + drift * 1e-6) * t + rng.normal(0, 5e-4, t.size)
    keep = np.ones(t.size, bool)
    keep[[0, 301, 5000, 9000]] = False  # the first pulse of a scan among them
    rec = np.sort(np.concatenate([t[keep] + rng.normal(0, 1e-3, keep.sum()), [15.05]]))
    c = fit_clock(sent, rec, reference_epoch_s=EPOCH0, bursts=True, stream="xanes",
                  pulse="point")
    assert abs(c.offset_s - offset) < 1e-3 and abs(c.drift_ppm - drift) < 0.5
    assert c.unmatched_sent == (0, 301, 5000, 9000) and len(c.unmatched_recorded) == 1
    assert (c.stream, c.pulse) == ("xanes", "point")
    assert 0 < len(c.residual_s) <= 1000 and len(c.residual_time_s) == len(c.residual_s)


# --------------------------------------------------------------------------- pipelines


def _clock_error(cfg, truth, stream):
    from pipelines.echem import read_echem_section
    from pipelines.sync import confocal_pulses, stream_clock
    from pipelines.xanes import xanes_pulses

    st = cfg.sync.settings(stream)
    sent = xanes_pulses(cfg.xanes, st.pulse) if stream == "xanes" else \
        confocal_pulses(cfg.confocal)
    clock, _ = stream_clock(cfg.sync, stream, read_echem_section(cfg.echem), sent)
    t = truth["clocks"][stream]
    return clock, (clock.offset_s - t["offset_s"]) * 1e3, clock.drift_ppm - t["drift_ppm"]


@pytest.mark.parametrize("stream", ["xanes", "confocal"])
def test_each_stream_clock_recovered(clocks_run, stream):
    cfg = load_config(clocks_run.run_config_path)
    clock, off_ms, drift_ppm = _clock_error(cfg, clocks_run.truth, stream)
    assert abs(off_ms) < 10 and abs(drift_ppm) < 2
    t = clocks_run.truth["clocks"][stream]
    assert len(clock.unmatched_sent) == len(t["missing_trigger_index"])
    assert len(clock.unmatched_recorded) == len(t["spurious_trigger_time_s"])


def test_confocal_only_run_syncs_by_its_triggers(clocks_run):
    raw = _raw(clocks_run)
    del raw["xanes"]
    raw["sync"] = {"trigger_file": "echem/triggers_confocal.txt",
                   "reference_stream": "confocal"}
    cfg = _validate(raw, clocks_run)
    _, off_ms, drift_ppm = _clock_error(cfg, clocks_run.truth, "confocal")
    assert abs(off_ms) < 10 and abs(drift_ppm) < 2


def test_xanes_scan_pulses(tmp_path):
    """A pulse per scan (its start): the XANES-only run syncs on the scan starts."""
    from operando.simulate.beamtime import simulate_beamtime

    run = simulate_beamtime(tmp_path, "small-clocks", seed=1, streams=["xanes"],
                            overrides={"xanes": {"trigger": "scan"}})
    raw = _raw(run)
    assert raw["sync"]["streams"]["xanes"] == {"pulse": "scan"}
    _, off_ms, drift_ppm = _clock_error(load_config(run.run_config_path), run.truth, "xanes")
    assert abs(off_ms) < 10 and abs(drift_ppm) < 2


def test_xanes_only_reduce_on_its_own_clock(clocks_run, tmp_path):
    from operando.io.products import open_product
    from operando.simulate.scorecard import scorecard
    from pipelines.reduce import reduce_run

    raw = _raw(clocks_run)
    del raw["confocal"]
    del raw["sync"]["streams"]["confocal"]
    raw["output"]["directory"] = str(tmp_path)
    cfg = _validate(raw, clocks_run)
    res = reduce_run(cfg, scheduler="none")
    assert not res.failed and res.clocks["xanes"].stream == "xanes"
    with open_product(res.products["xanes"]) as ds:
        attrs = dict(ds.attrs)
        t0 = ds["time_start"].values
    assert attrs["clock_stream"] == "xanes" and attrs["clock_pulse"] == "point"
    assert str(clocks_run.outdir / "echem/triggers_xanes.txt") in json.dumps(
        json.loads(attrs["operando_identity"])["files"])
    truth = clocks_run.truth["xanes"]
    # the scan's exposure from its point pulses: within a few ms of the true start
    assert np.max(np.abs(t0 - np.asarray(truth["time_start_s"]))) < 0.01
    with open_product(res.products["echem"]) as e, open_product(res.products["xanes"]) as x:
        rows = {r.quantity: r for r in scorecard(clocks_run.truth, {"echem": e, "xanes": x})}
    assert rows["clock offset"].ok and rows["clock drift"].ok
    assert rows["xanes clock offset"].ok and rows["xanes clock drift"].ok


def test_per_stream_key_makes_only_that_stream_stale(clocks_run):
    from pipelines.cache import _sections

    raw = _raw(clocks_run)
    a = _validate(raw, clocks_run)
    raw["sync"]["streams"]["confocal"]["max_rms_residual_s"] = 0.02
    b = _validate(raw, clocks_run)
    assert _sections(a, "xanes") == _sections(b, "xanes")
    assert _sections(a, "echem") == _sections(b, "echem")
    assert _sections(a, "confocal") != _sections(b, "confocal")
