"""Potentiostat ↔ beamline clock model and the trigger record of the synthetic run.

Truth convention (also written to ``truth.json``)::

    beamline_epoch_s = acquisition_start_epoch_s + offset_s
                       + (1 + drift_ppm * 1e-6) * t_potentiostat_s

``acquisition_start_epoch_s`` is the UTC epoch of the potentiostat's
``Acquisition started on`` header read in the cell's configured timezone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np

from operando.io.echem.biologic import localise_to_utc
from operando.io.timestamps import zoneinfo_or_raise
from operando.simulate.presets import ClockSpec, EchemSpec


def acquisition_start_epoch_s(spec: EchemSpec) -> float:
    """UTC epoch seconds of the potentiostat's local ``acquisition_start_local``.

    The same conversion the EC-Lab reader applies (a wall time skipped by a DST change
    is an error), so simulator and reader agree by construction.
    """
    local = datetime.fromisoformat(spec.acquisition_start_local)
    utc, _note = localise_to_utc(local, zoneinfo_or_raise(spec.timezone))
    return utc.timestamp()


@dataclass(frozen=True)
class ClockModel:
    start_epoch_s: float
    offset_s: float
    drift_ppm: float

    @property
    def rate(self) -> float:
        return 1.0 + self.drift_ppm * 1e-6

    def to_beamline_epoch(self, t_pot_s: np.ndarray | float) -> np.ndarray:
        return self.start_epoch_s + self.offset_s + self.rate * np.asarray(t_pot_s, dtype=float)

    def to_potentiostat(self, epoch_s: np.ndarray | float) -> np.ndarray:
        return (np.asarray(epoch_s, dtype=float) - self.start_epoch_s - self.offset_s) / self.rate


def make_clock(echem: EchemSpec, clock: ClockSpec) -> ClockModel:
    return ClockModel(acquisition_start_epoch_s(echem), clock.offset_s, clock.drift_ppm)


@dataclass(frozen=True)
class TriggerRecord:
    """What the potentiostat's trigger input logged (its own clock)."""

    time_s: np.ndarray  # recorded pulse times, sorted, potentiostat clock
    missing_index: np.ndarray  # indices (into the true trigger list) that were not recorded
    spurious_time_s: np.ndarray  # pulses recorded that no acquisition sent


def record_triggers(
    true_trigger_s: np.ndarray, spec: ClockSpec, rng: np.random.Generator
) -> TriggerRecord:
    """Potentiostat view of the trigger pulses: jitter, a few missing, some spurious."""
    t = np.asarray(true_trigger_s, dtype=float)
    n = t.size
    n_missing = min(spec.n_missing_triggers, max(n - 2, 0))
    # never drop the first or last pulse, so the record spans the run
    missing = np.sort(rng.choice(np.arange(1, n - 1), size=n_missing, replace=False)) if n > 2 \
        else np.array([], dtype=int)
    keep = np.setdiff1d(np.arange(n), missing)
    recorded = t[keep] + rng.normal(0.0, spec.potentiostat_jitter_s, keep.size)
    spurious = np.empty(0)
    if spec.n_spurious_triggers and n > 1:
        if spec.n_spurious_triggers > n - 1:
            raise ValueError(f"ClockSpec.n_spurious_triggers={spec.n_spurious_triggers}: expected "
                             f"at most one per gap between the {n} sent pulses")
        gaps = rng.choice(np.arange(n - 1), size=spec.n_spurious_triggers, replace=False)
        spurious = np.sort(t[gaps] + rng.uniform(0.3, 0.7, gaps.size) * np.diff(t)[gaps])
    # the record holds 0.1 ms resolution; the truth names the spurious pulses as recorded
    recorded, spurious = np.round(recorded, 4), np.round(spurious, 4)
    all_t = np.sort(np.concatenate([recorded, spurious]))
    return TriggerRecord(time_s=all_t, missing_index=missing, spurious_time_s=spurious)
