"""CF conventions and attribute texts shared by the readers and the product builders
(pure; no I/O): both ``operando.io`` and the science packages import this module."""

from __future__ import annotations

__all__ = ["CHARGE_NOT_RECORDED", "cf_attrs"]

#: ``charge_C`` ``source`` attribute of a cycler file that records no charge (its rows are
#: NaN): written by the readers (:mod:`operando.io.echem.schema`), replaced by
#: :func:`operando.echem.segments.add_segments` once it has integrated the current
CHARGE_NOT_RECORDED = "not recorded in the file (NaN)"


def cf_attrs(units: str, long_name: str, **extra: object) -> dict[str, object]:
    """The attributes of one product variable: CF ``units`` (UDUNITS text, ``"1"`` for a
    dimensionless quantity) and ``long_name``, plus any ``extra`` (``flag_values``,
    ``equation``, ...)."""
    return {"units": units, "long_name": long_name, **extra}
