"""What a stream's reduction step hands to the reduce flow: one product, ready to write.

Each stream module (``pipelines/peaks.py``, ``pipelines/xanes.py``, ``pipelines/confocal.py``,
``pipelines/kinetics.py``) builds a :class:`StreamProduct` from its config section, the
electrochemistry and the clock; :mod:`pipelines.reduce` writes it with
:func:`operando.io.products.write_product` and saves its figures under ``report/``.
Keeping the builders free of Prefect lets the CLI, the flow and a notebook call the same
code. The checks every X-ray stream makes of its exposures live here once:
:func:`monitor_normalization` and :func:`exposure_count_time`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

#: ``progress(stream, done, total)``: called as work units finish.
ProgressCallback = Callable[[str, int, int], None]

#: ``map_units(fn, [args, ...])`` runs ``fn(*args)`` for every work unit and yields the
#: results in order: :meth:`pipelines.runner.Runner.mapper` (the flow's: cached, on Dask);
#: :func:`pipelines.runner.map_here` is the same runner without a cache or a cluster.
UnitMapper = Callable[[Callable[..., Any], Iterable[tuple[Any, ...]]], Iterator[Any]]


@dataclass
class StreamProduct:
    """One product of a stream, not yet written.

    ``name``: the product name (``peaks`` → ``peaks.nc``); ``dataset``: CF-complete
    (``units``/``long_name`` on every variable); ``attrs``: extra dataset attributes
    (clock, options); ``inputs``: files it was made from (for provenance, with checksums);
    ``figures``: report file name (``peaks.png``) → matplotlib Figure; ``notes``: lines
    for the log (skipped items, QC summary).
    """

    name: str
    dataset: xr.Dataset
    attrs: dict[str, Any] = field(default_factory=dict)
    inputs: list[Path] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def monitor_normalization(monitor: np.ndarray, *, stream: str, per: str,
                          source: object) -> np.ndarray:
    """The incident-beam monitor counts (one per ``per``: frame, point) as the divisor of
    ``<stream>.normalize_by_monitor``; ``ValueError`` naming that key and ``source`` (where
    the monitor was read) when one is missing or not positive."""
    if not np.all(np.isfinite(monitor) & (monitor > 0)):
        raise ValueError(f"{stream}.normalize_by_monitor: expected a positive monitor value "
                         f"per {per}, found none or non-positive ones ({source})")
    return monitor


def exposure_count_time(count_time_s: np.ndarray, *, stream: str, items: str,
                        source: object) -> tuple[np.ndarray, str | None]:
    """Exposure times (s) with the unknown (NaN) ones as 0 — a zero-length exposure whose
    electrochemistry is the value at its start — and a note naming how many ``items``
    (frames, points) of ``stream`` had none and ``source`` (where the count time was read);
    the note is None when every count time is known."""
    unknown = ~np.isfinite(count_time_s)
    note = None
    if unknown.any():
        note = (f"{stream}: {int(unknown.sum())} {items} have no count time ({source}): their "
                "electrochemistry is the value at the exposure start, not a mean over the "
                "exposure")
    return np.where(unknown, 0.0, count_time_s), note


def timestamp_qc(epoch_s: np.ndarray, *, stream: str, items: str, source: object
                 ) -> tuple[dict[str, Any], str | None]:
    """QC of per-item timestamps (epoch s): dataset attributes ``qc_timestamps``
    (``ok`` or what is wrong) and ``qc_timestamps_bad_items`` (how many items step back,
    repeat the previous time or are not finite), and a warning naming the first such item
    and ``source`` (None when the times increase strictly). The times are kept as
    recorded, never reordered: a product with a flagged time axis says so."""
    t = np.asarray(epoch_s, dtype=float)
    step = np.diff(t)
    back = np.flatnonzero(step < 0) + 1
    same = np.flatnonzero(step == 0) + 1
    nonfinite = np.flatnonzero(~np.isfinite(t))
    parts = [f"{len(back)} step back in time" if len(back) else "",
             f"{len(same)} repeat the previous timestamp" if len(same) else "",
             f"{len(nonfinite)} not finite" if len(nonfinite) else ""]
    parts = [p for p in parts if p]
    if not parts:
        return {"qc_timestamps": "ok", "qc_timestamps_bad_items": 0}, None
    bad = np.union1d(np.union1d(back, same), nonfinite)
    what = ", ".join(parts)
    note = (f"{stream}: expected strictly increasing {items} timestamps, found {what} "
            f"(first: {items[:-1] if items.endswith('s') else items} {int(bad[0])}; "
            f"{source}); the time axis is kept as recorded and flagged qc_timestamps")
    return {"qc_timestamps": f"not strictly increasing: {what}",
            "qc_timestamps_bad_items": int(bad.size)}, note
