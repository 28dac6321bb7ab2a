"""Timestamps and timezones in files: ISO-8601 in UTC with an explicit offset, naive
potentiostat-local wall times, IANA timezone names."""

from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["epoch_to_iso", "localise_to_utc", "parse_start_time", "parse_time_utc",
           "require_naive_local", "start_to_utc", "zoneinfo_or_raise"]


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


def localise_to_utc(local: datetime, tz: ZoneInfo) -> tuple[datetime, str | None]:
    """Interpret a naive wall-clock time in ``tz``; return (aware UTC datetime, note).

    A wall time that does not exist in the zone (spring-forward gap) raises ``ValueError``;
    an ambiguous one (autumn fold) takes the first occurrence and returns a note.
    """
    tz_name = tz.key
    aware = local.replace(tzinfo=tz, fold=0)
    utc = aware.astimezone(timezone.utc)
    if utc.astimezone(tz).replace(tzinfo=None) != local:
        raise ValueError(
            f"local time {local.isoformat()} does not exist in {tz_name} "
            "(skipped by a daylight-saving change): wrong timezone for this potentiostat?"
        )
    other = local.replace(tzinfo=tz, fold=1).astimezone(timezone.utc)
    note = None
    if other != utc:
        note = (f"local time {local.isoformat()} is ambiguous in {tz_name} (daylight-saving "
                f"fold); took the first occurrence {utc.isoformat()}")
    return utc, note


def parse_time_utc(text: str, tz_name: str | None, *,
                   tz_key: str) -> tuple[datetime, str | None]:
    """ISO-8601 text from a file header → (aware UTC datetime, note).

    A time with a UTC offset is taken as it is. A naive one is local wall time in
    ``tz_name`` (IANA; see :func:`localise_to_utc` for gaps and folds); without ``tz_name``
    it is refused with a ``ValueError`` naming ``tz_key`` (the setting that would supply
    the zone): a naive local time is never guessed.
    """
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"expected an ISO-8601 date such as '2022-07-26 23:01:58.055', "
                         f"found {text!r}") from None
    if when.tzinfo is not None:
        return when.astimezone(timezone.utc), None
    if tz_name is None:
        raise ValueError(f"{text!r} has no UTC offset and {tz_key} is not set (the IANA "
                         "timezone of that clock, e.g. Europe/Paris): a naive local time is "
                         "never guessed")
    return localise_to_utc(when, zoneinfo_or_raise(tz_name))


def parse_start_time(value: str | datetime | None, key: str = "start_time") -> datetime | None:
    """A given acquisition start: a datetime as it is, ISO-8601 text parsed (with a UTC
    offset: aware; without: naive wall time of the cycler PC, localised later with the
    reader's timezone, never the local time of this machine), None as None.

    Raises ``ValueError`` naming ``key`` and the value when the text does not parse.
    """
    if value is None or isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(str(value).strip())
    except ValueError:
        raise ValueError(f"{key}: expected an ISO-8601 date and time such as "
                         f"'2026-03-14T09:30:00' or '2026-03-14T09:30:00+01:00', found "
                         f"{value!r}") from None


def start_to_utc(start: datetime, tz: ZoneInfo) -> datetime:
    """An aware ``start`` in UTC; a naive one localised in ``tz`` first (a wall time that
    does not exist there raises ``ValueError``, an ambiguous one takes the first)."""
    if start.tzinfo is not None:
        return start.astimezone(timezone.utc)
    return localise_to_utc(start, tz)[0]
