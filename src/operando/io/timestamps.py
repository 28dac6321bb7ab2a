"""Timestamp text in files: ISO-8601 in UTC with an explicit offset."""

from __future__ import annotations

from datetime import datetime, timezone


def epoch_to_iso(epoch_s: float) -> str:
    """``2026-03-14T08:30:06.700000+00:00`` for UTC epoch seconds (microsecond precision)."""
    return datetime.fromtimestamp(float(epoch_s), tz=timezone.utc).isoformat(
        timespec="microseconds")
