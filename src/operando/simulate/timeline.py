"""Acquisition schedules and exposure-window averages, shared by every stream.

Times are seconds on the potentiostat clock. A stream acquires at
t_k = first + k·period, for every k whose exposure [t_k, t_k + count] ends
within the protocol. Ground truth for an exposure is the mean over its window,

    ⟨q⟩_k = (1 / Δt) ∫_{t_k}^{t_k+Δt} q(t) dt ≈ (1/n) Σ_j q(t_k + (j + ½) Δt / n)

(midpoint rule; exact for the piecewise-linear x(t) away from a segment edge).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypeVar

import numpy as np

N_WINDOW_SAMPLES = 32  # midpoint-rule sub-samples per exposure window

# The synthetic storage ring, shared by every stream (one beam for one beamtime)
MONITOR_COUNTS_PER_S = 1.0e5  # incident-beam monitor counts per second at nominal flux
TOPUP_PERIOD_S = 600.0  # top-up injection period (s)
TOPUP_DEPTH = 0.02  # relative decay of the current between injections
BEAM_NOISE = 0.002  # relative fluctuation per reading

T = TypeVar("T", np.ndarray, Mapping[str, np.ndarray])


def acquisition_starts(first_s: float, period_s: float, count_s: float,
                       duration_s: float) -> np.ndarray:
    """Starts t_k = first_s + k·period_s (s) of every exposure ending by ``duration_s``."""
    if period_s <= 0 or count_s < 0:
        raise ValueError(f"expected period_s > 0 and count_s >= 0, found period_s={period_s}, "
                         f"count_s={count_s}")
    last = duration_s - count_s
    if last < first_s:
        return np.empty(0)
    n = int(np.floor((last - first_s) / period_s + 1e-9)) + 1
    return first_s + period_s * np.arange(n)


def window_mean(fn: Callable[[np.ndarray], T], t_start_s: np.ndarray, t_end_s: np.ndarray,
                n: int = N_WINDOW_SAMPLES) -> T:
    """Mean of ``fn`` over each window [t_start, t_end] (midpoint rule, ``n`` samples).

    ``fn`` takes an array of times and returns an array whose leading dimensions are
    the times' (extra trailing dimensions are kept), or a mapping of such arrays.
    The result has the windows' shape (+ trailing dimensions).
    """
    t0 = np.asarray(t_start_s, dtype=float)
    t1 = np.asarray(t_end_s, dtype=float)
    u = (np.arange(n) + 0.5) / n
    ts = t0[..., None] + (t1 - t0)[..., None] * u
    vals = fn(ts)
    axis = t0.ndim
    if isinstance(vals, Mapping):
        return {k: np.asarray(v).mean(axis=axis) for k, v in vals.items()}  # type: ignore[return-value]
    return np.asarray(vals).mean(axis=axis)


def relative_beam_intensity(t_s: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Incident flux relative to nominal at potentiostat times ``t_s``.

    Top-up sawtooth, I/I0 = 1 − TOPUP_DEPTH · ((t mod T) / T), T = TOPUP_PERIOD_S,
    times (1 + BEAM_NOISE · N(0, 1)) per reading.
    """
    t = np.asarray(t_s, dtype=float)
    saw = np.mod(t, TOPUP_PERIOD_S) / TOPUP_PERIOD_S
    return (1.0 - TOPUP_DEPTH * saw) * (1.0 + BEAM_NOISE * rng.standard_normal(t.shape))
