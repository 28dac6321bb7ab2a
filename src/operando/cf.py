"""CF conventions shared by every product builder (pure; no I/O)."""

from __future__ import annotations

__all__ = ["cf_attrs"]


def cf_attrs(units: str, long_name: str, **extra: object) -> dict[str, object]:
    """The attributes of one product variable: CF ``units`` (UDUNITS text, ``"1"`` for a
    dimensionless quantity) and ``long_name``, plus any ``extra`` (``flag_values``,
    ``equation``, ...)."""
    return {"units": units, "long_name": long_name, **extra}
