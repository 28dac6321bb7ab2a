"""The sync step: the ``sync`` config section → one clock model per X-ray stream.

Each X-ray stream is on the clock of a *source* stream (``SyncSection.source``): its own
(the reference stream, or a ``sync.streams.<stream>`` entry with its own trigger record or
timestamps), or one it borrows (``clock: <stream>``, or no entry: the reference stream's,
which is what a config without ``sync.streams`` means). Per source stream, ``triggers``
fits offset and drift of its controller's clock to its trigger record, matched against
that stream's pulses (:func:`operando.echem.sync.fit_clock`): the xrd frame timestamps, the
XANES scan starts (``pulse: scan``) or every energy point's time (``pulse: point``), the
confocal point times; ``timestamps`` takes both clocks as UTC plus ``fixed_offset_s``
(:func:`operando.echem.sync.clock_from_timestamps`). Orchestration only:
:func:`operando.io.echem.triggers.read_trigger_record` reads the record, each stream's
adapter reads its pulses (:func:`pipelines.xanes.xanes_pulses`, :func:`confocal_pulses`);
the clock model is science.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import xarray as xr

from operando.config import ConfocalSection, SyncSection
from operando.echem.sync import (
    ClockModel,
    clock_from_timestamps,
    fit_clock,
    reference_epoch_from_attrs,
)
from operando.io.echem.triggers import read_trigger_record
from operando.io.xrd.confocal import read_confocal_points
from operando.io.xrd.frames import FrameMetadata

__all__ = ["clock_coverage_note", "clock_sources", "clock_summary", "confocal_pulses",
           "sent_triggers", "stream_clock", "sync_clock", "sync_inputs", "uses_xrd_frames"]

#: what the timestamps of each stream's pulses are, for messages and ``ClockModel.what``
_PULSE_TEXT = {"frame": "frame triggers", "scan": "scan-start triggers",
               "point": "point triggers"}


def clock_sources(section: SyncSection, streams: Iterable[str]) -> dict[str, str]:
    """X-ray stream → the stream whose own clock it is on, for ``streams``."""
    return {s: section.source(s) for s in streams}


def uses_xrd_frames(section: SyncSection, streams: Iterable[str] | None = None) -> bool:
    """True when a clock of ``streams`` (default: every X-ray stream) is fitted to the xrd
    stream's frame timestamps."""
    names = ("xrd", "xanes", "confocal") if streams is None else tuple(streams)
    return any(section.source(s) == "xrd" for s in names) and \
        section.settings("xrd").method == "triggers"


def sent_triggers(section: SyncSection, xrd_meta: FrameMetadata | None) -> np.ndarray | None:
    """The xrd frame timestamps (UTC epoch s) as sent triggers when the xrd stream's clock is
    fitted to triggers; None otherwise."""
    if section.settings("xrd").method != "triggers" or xrd_meta is None:
        return None
    return xrd_meta.epoch_s


def confocal_pulses(section: ConfocalSection) -> np.ndarray:
    """The confocal pulses (UTC epoch s, beamline clock): every point's exposure start, as
    the master file records it (counters only; no frame or spectrum is read)."""
    points = read_confocal_points(
        section.files, scans=section.scans, depth_path=section.depth_path,
        depth_unit=section.depth_unit, depth_zero=section.depth_zero,
        depth_sign=section.depth_sign, epoch_path=section.epoch_path,
        count_time_path=section.count_time_path, monitor_path=section.monitor_path)
    return np.sort(np.asarray(points.epoch_s, dtype=float))


def stream_clock(section: SyncSection, stream: str, echem: xr.Dataset,
                 sent_epoch_s: np.ndarray | None) -> tuple[ClockModel, np.ndarray | None]:
    """The own clock of ``stream`` and, for ``triggers``, its recorded pulses (s on the
    potentiostat clock; None for ``timestamps``). ``echem`` carries the acquisition start
    (its ``acquisition_start_utc`` attribute); ``sent_epoch_s``: the stream's pulses (UTC
    epoch s). Raises ``ValueError`` (``SyncError``) naming the config key when the clocks
    cannot be put on one time base within the tolerances."""
    st = section.settings(stream)
    key = f"sync.streams.{stream}" if stream in (section.streams or {}) else "sync"
    reference = reference_epoch_from_attrs(echem.attrs)
    if st.method == "timestamps":
        model = clock_from_timestamps(reference_epoch_s=reference,
                                      fixed_offset_s=st.fixed_offset_s)
        return dataclasses.replace(model, stream=stream, pulse=st.pulse), None
    if st.trigger_file is None:  # the section's validator asks for one already
        raise ValueError(f"{key}.trigger_file: method 'triggers' expects one, found none")
    if sent_epoch_s is None:
        raise ValueError(f"{key}: the {stream} stream carries no timestamps to match the "
                         f"trigger record against; name them (e.g. {stream}.timestamp_path / "
                         f"{stream}.epoch_path) or use method: timestamps")
    recorded = read_trigger_record(st.trigger_file)
    clock = fit_clock(
        sent_epoch_s, recorded, reference_epoch_s=reference, fit_drift=st.drift,
        max_rms_residual_s=st.max_rms_residual_s, max_abs_residual_s=st.max_abs_residual_s,
        offset_guess_s=st.offset_guess_s, max_offset_s=st.max_offset_s,
        bursts=st.pulse == "point" and stream == "xanes", stream=stream, pulse=st.pulse,
        what=f"{stream} {_PULSE_TEXT[st.pulse]} vs {st.trigger_file.name}")
    return clock, recorded


def sync_clock(section: SyncSection, echem: xr.Dataset, sent_epoch_s: np.ndarray | None
               ) -> tuple[ClockModel, np.ndarray | None]:
    """The reference stream's clock (:func:`stream_clock` of ``sync.reference_stream``)."""
    return stream_clock(section, section.reference_stream, echem, sent_epoch_s)


def clock_summary(clock: ClockModel) -> str:
    """One log line: offset, drift, RMS residual and the matched / missing / spurious
    pulses of a fitted clock."""
    who = f"{clock.stream} " if clock.stream else ""
    return (f"{who}clock: offset {clock.offset_s:.4f} ± {clock.offset_stderr_s:.4f} s, drift "
            f"{clock.drift_ppm:.2f} ± {clock.drift_stderr_ppm:.2f} ppm, RMS "
            f"{clock.rms_residual_s * 1e3:.2f} ms, {clock.n_matched} matched, "
            f"{len(clock.unmatched_sent)} missing, {len(clock.unmatched_recorded)} spurious")


#: what a stream's pulses mark, for :func:`clock_coverage_note`
_ITEMS = {"frame": "frames", "scan": "scans", "point": "points"}


def _span(a: int, b: int) -> str:
    return f"#{a}" if a == b else f"#{a}..{b}"


def clock_coverage_note(clock: ClockModel) -> str | None:
    """A QC warning when a trigger-fitted clock's pulses do not cover each other's ends
    (:attr:`~operando.echem.sync.ClockModel.unmatched_ends`): acquisitions beyond the
    recorded pulses (timed by the clock extrapolated, not matched) or recorded pulses
    beyond the acquisitions — the frame count is not the trigger count at an end. None
    when both ends match (missing and spurious pulses inside the run are the clock's own
    record: ``clock_unmatched_*``)."""
    if clock.method != "triggers":
        return None
    s0, s1, r0, r1 = clock.unmatched_ends
    if not (s0 or s1 or r0 or r1):
        return None
    items = _ITEMS.get(clock.pulse, "acquisitions")
    ns, nr = clock.n_sent, clock.n_recorded
    parts = []
    if s0 or s1:
        where = ", ".join(w for w in (
            f"{_span(0, s0 - 1)} before the first recorded pulse" if s0 else "",
            f"{_span(ns - s1, ns - 1)} after the last" if s1 else "") if w)
        parts.append(f"{s0 + s1} of the {ns} {items} lie beyond the recorded pulses ({where}): "
                     "timed by the clock extrapolated, not matched to a pulse (a record that "
                     "stopped early or started late?)")
    if r0 or r1:
        where = ", ".join(w for w in (
            f"{_span(0, r0 - 1)} before the first {items[:-1]}" if r0 else "",
            f"{_span(nr - r1, nr - 1)} after the last" if r1 else "") if w)
        parts.append(f"{r0 + r1} of the {nr} recorded pulses lie beyond the {items} ({where}): "
                     f"{items} missing from the files, or the record of a longer acquisition?")
    shifted = " — both sequences overhang: the wrong echem.timezone or trigger record?" \
        if (s0 or s1) and (r0 or r1) else ""
    return f"sync: {clock.what}: {ns} {items}, {nr} pulses recorded; " + "; ".join(parts) + \
        shifted


def sync_inputs(section: SyncSection | None, echem: xr.Dataset | None,
                clock: ClockModel | None) -> list[Path]:
    """Files a product's electrochemistry and clock come from: the cycler files of ``echem``
    and the files read for their starts (an EC-Lab ``.mpl`` log), and, with a
    trigger-fitted clock, the trigger record of the stream it was fitted on."""
    files = [Path(f) for key in ("source_files", "start_time_files")
             for f in np.atleast_1d(echem.attrs.get(key, []))] if echem is not None else []
    if clock is not None and section is not None and clock.method == "triggers":
        trig = section.settings(clock.stream or section.reference_stream).trigger_file
        if trig is not None:
            files.append(trig)
    return files
