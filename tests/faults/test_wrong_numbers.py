"""Inputs that used to give a wrong number with exit 0: now an error or a QC flag."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from operando.xanes.lcf import lcf
from operando.xrd.peakfit import fit_patterns
from pipelines.stream import timestamp_qc


def _edge(e: np.ndarray, e0: float) -> np.ndarray:
    return 1 / (1 + np.exp(-(e - e0) / 1.5))


def test_standard_short_of_fit_range_is_refused() -> None:
    e = np.arange(7080.0, 7200.0, 0.5)
    full = np.arange(7050.0, 7250.0, 0.5)
    short = np.arange(7050.0, 7135.0, 0.5)  # stops ~50 eV short of the window's end
    y = 0.3 * _edge(e, 7120) + 0.7 * _edge(e, 7125)
    stds = {"A": (full, _edge(full, 7120)), "B": (short, _edge(short, 7125))}
    with pytest.raises(ValueError, match=r"standards covering the fit window 7100\.0-7180\.0 "
                       r"eV; found 'B' covers 7050\.0-7134\.5 eV"):
        lcf(e, y[None], stds, emin=7100, emax=7180)
    stds["B"] = (full, _edge(full, 7125))
    fit = lcf(e, y[None], stds, emin=7100, emax=7180)
    assert abs(fit.weights[0, 0] - 0.3) < 1e-6


@given(st.lists(st.floats(0, 1e4, allow_nan=False), min_size=2, max_size=40))
@settings(max_examples=200, deadline=None)
def test_timestamps_flagged_iff_not_strictly_increasing(times) -> None:
    t = np.asarray(times)
    attrs, note = timestamp_qc(t, stream="xrd", items="frames", source="f.h5::/t")
    increasing = bool(np.all(np.diff(t) > 0))
    assert (attrs["qc_timestamps"] == "ok") == increasing == (note is None)
    if not increasing:
        assert "f.h5::/t" in note and attrs["qc_timestamps_bad_items"] > 0


def test_duplicate_and_swapped_timestamps_named() -> None:
    t = np.array([0.0, 1.0, 1.0, 3.0, 2.0, 5.0])
    attrs, note = timestamp_qc(t, stream="xrd", items="frames", source="x.h5")
    assert "1 step back in time" in note and "1 repeat" in note and "first: frame 2" in note
    assert attrs["qc_timestamps_bad_items"] == 2


def _window_patterns():
    from tests.test_xrd_peaks import WL, simulated_patterns

    from operando.config import PeaksSection
    from operando.simulate.beamtime import peaks_section
    from pipelines.peaks import setup_from_config

    inten, sig, q, _ = simulated_patterns("lfp-1c", every=100)
    setup = setup_from_config(PeaksSection.model_validate(peaks_section(WL)))
    return inten[:5].copy(), sig[:5].copy(), q, setup, WL


@pytest.mark.parametrize("joint", [True, False], ids=["joint", "per-window"])
def test_zero_nan_negative_saturated_frames_are_not_ok(joint: bool) -> None:
    """Both fit paths (batch and the lmfit reference), both model layouts (all windows as
    one joint model, each window alone): a damaged frame is never 'ok'. The saturated
    frame is the one the lmfit path used to call 'ok': it stopped at a point worse than the
    background alone and reported peaks of SNR > 3 from that point's covariance."""
    import dataclasses

    inten, sig, q, setup, wl = _window_patterns()
    inten[1], sig[1] = 0.0, 0.02          # all-zero frame (σ of an empty detector)
    inten[2] = np.nan                     # NaN frame
    inten[3] = -5.0                       # negative (bad dark subtraction)
    inten[4] = np.float32(2**32 - 1)      # saturated everywhere: flat, no peak
    options = dataclasses.replace(setup.options, joint=joint)
    # one window when fitted alone: lmfit's Model path (forward differences, 32 peaks in
    # the second window) costs minutes per frame there
    windows = setup.windows if joint else setup.windows[:1]
    for method in ("batch", "lmfit"):
        # the all-zero frame through the per-window lmfit path alone takes ~10-20 s
        # (MINPACK on a degenerate problem; it ends not 'ok'): left to the joint case
        rows = [0, 1, 2, 3, 4] if joint or method == "batch" else [0, 2, 3, 4]
        res = fit_patterns(inten[rows], sig[rows], q, "q_A^-1", wl, windows, options,
                           method=method)
        assert np.isin(res.status[0], (0, 4)).all(), (method, res.reason[0])
        for k in range(1, len(rows)):
            assert (res.status[k] != 0).all(), (method, rows[k], res.reason[k])
        sat = res.status[rows.index(4)]
        assert (sat == 1).all(), (method, res.reason[rows.index(4)])
