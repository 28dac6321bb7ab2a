"""Timestamps and timezones in files: ISO-8601 in UTC with an explicit offset, naive
potentiostat-local wall times, IANA timezone names."""

from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["epoch_to_iso", "require_naive_local", "zoneinfo_or_raise"]


def epoch_to_iso(epoch_s: float) -> str:
    """``2026-03-14T08:30:06.700000+00:00`` for UTC epoch seconds (microsecond precision)."""
    return datetime.fromtimestamp(float(epoch_s), tz=timezone.utc).isoformat(
        timespec="microseconds")


def require_naive_local(dt: datetime, what: str) -> datetime:
    """``dt`` unchanged when naive; ``ValueError`` when it carries a timezone.

    Potentiostat files hold naive local wall time; silently dropping a timezone would
    shift the time by the UTC offset, so an aware datetime is refused. ``what`` names the
    argument (and file) in the message.
    """
    if dt.tzinfo is not None:
        raise ValueError(
            f"{what}: expected a naive potentiostat-local wall time, found a timezone-aware "
            f"datetime {dt.isoformat()} (convert it to the potentiostat's local time and "
            "drop the tzinfo)"
        )
    return dt


def zoneinfo_or_raise(tz_name: str) -> ZoneInfo:
    """``ZoneInfo(tz_name)``, with a ``ValueError`` naming the key when it is unknown."""
    try:
        return ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ValueError(
            f"expected an IANA timezone name such as 'Europe/Paris' or 'UTC', found "
            f"{tz_name!r} (unknown timezone)"
        ) from None
