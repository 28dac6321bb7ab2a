"""The sync step: the ``sync`` config section → the clock model of the run.

Two ways (``sync.method``): ``triggers`` fits offset and drift of the beamline clock to
the potentiostat's trigger record, matched against the reference X-ray stream's frame
timestamps (:func:`operando.echem.sync.fit_clock`); ``timestamps`` takes both clocks as
UTC plus ``sync.fixed_offset_s`` (:func:`operando.echem.sync.clock_from_timestamps`).
Orchestration only: :func:`operando.io.echem.triggers.read_trigger_record` reads the
record; the clock model is science.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from operando.config import SyncSection
from operando.echem.sync import (
    ClockModel,
    clock_from_timestamps,
    fit_clock,
    reference_epoch_from_attrs,
)
from operando.io.echem.triggers import read_trigger_record
from operando.io.xrd.frames import FrameMetadata

__all__ = ["clock_summary", "sent_triggers", "sync_clock", "sync_inputs", "uses_xrd_frames"]


def uses_xrd_frames(section: SyncSection) -> bool:
    """True when the clock is fitted to the xrd stream's frame timestamps."""
    return section.method == "triggers" and section.reference_stream == "xrd"


def sent_triggers(section: SyncSection, xrd_meta: FrameMetadata | None) -> np.ndarray | None:
    """The trigger pulses the beamline sent (UTC epoch s): the reference stream's frame
    timestamps for ``triggers``, None for ``timestamps``. ``ValueError`` when the
    reference stream is not the xrd stream, the only one this version syncs on."""
    if section.method != "triggers":
        return None
    if not uses_xrd_frames(section) or xrd_meta is None:
        raise ValueError(f"sync.reference_stream {section.reference_stream!r}: this version "
                         "syncs on the xrd stream's frame timestamps")
    return xrd_meta.epoch_s


def sync_clock(section: SyncSection, echem: xr.Dataset, sent_epoch_s: np.ndarray | None
               ) -> tuple[ClockModel, np.ndarray | None]:
    """The clock model and, for ``triggers``, the recorded pulses (s on the potentiostat
    clock; None for ``timestamps``). ``echem`` carries the acquisition start (its
    ``acquisition_start_utc`` attribute); ``sent_epoch_s`` from :func:`sent_triggers`.
    Raises ``ValueError`` (``SyncError``) naming the config key when the clocks cannot be
    put on one time base within the section's tolerances."""
    reference = reference_epoch_from_attrs(echem.attrs)
    if section.method == "timestamps":
        return clock_from_timestamps(reference_epoch_s=reference,
                                     fixed_offset_s=section.fixed_offset_s), None
    if section.trigger_file is None:  # the section's validator asks for one already
        raise ValueError("sync.trigger_file: method 'triggers' expects one, found none")
    if sent_epoch_s is None:
        raise ValueError(f"sync.reference_stream {section.reference_stream!r}: its frames "
                         "carry no timestamps to match the trigger record against; name them "
                         f"with {section.reference_stream}.timestamp_path or use sync.method: "
                         "timestamps")
    recorded = read_trigger_record(section.trigger_file)
    clock = fit_clock(
        sent_epoch_s, recorded, reference_epoch_s=reference, fit_drift=section.drift,
        max_rms_residual_s=section.max_rms_residual_s,
        max_abs_residual_s=section.max_abs_residual_s,
        offset_guess_s=section.offset_guess_s, max_offset_s=section.max_offset_s,
        what=f"{section.reference_stream} frame triggers vs {section.trigger_file.name}")
    return clock, recorded


def clock_summary(clock: ClockModel) -> str:
    """One log line: offset, drift, RMS residual and the matched / missing / spurious
    pulses of a fitted clock."""
    return (f"clock: offset {clock.offset_s:.4f} ± {clock.offset_stderr_s:.4f} s, drift "
            f"{clock.drift_ppm:.2f} ± {clock.drift_stderr_ppm:.2f} ppm, RMS "
            f"{clock.rms_residual_s * 1e3:.2f} ms, {clock.n_matched} matched, "
            f"{len(clock.unmatched_sent)} missing, {len(clock.unmatched_recorded)} spurious")


def sync_inputs(section: SyncSection | None, echem: xr.Dataset | None,
                clock: ClockModel | None) -> list[Path]:
    """Files a product's electrochemistry and clock come from: the cycler files of ``echem``
    and, with a trigger-fitted clock, the trigger record."""
    files = [Path(f) for f in np.atleast_1d(echem.attrs.get("source_files", []))] \
        if echem is not None else []
    if clock is not None and section is not None and section.trigger_file is not None:
        files.append(section.trigger_file)
    return files
