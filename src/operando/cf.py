"""CF conventions and attribute texts shared by the readers and the product builders
(pure; no I/O): both ``operando.io`` and the science packages import this module."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["CHARGE_NOT_RECORDED", "cf_attrs", "covered", "is_incomplete"]

#: ``charge_C`` ``source`` attribute of a cycler file that records no charge (its rows are
#: NaN): written by the readers (:mod:`operando.io.echem.schema`), replaced by
#: :func:`operando.echem.segments.add_segments` once it has integrated the current
CHARGE_NOT_RECORDED = "not recorded in the file (NaN)"


def cf_attrs(units: str, long_name: str, **extra: object) -> dict[str, object]:
    """The attributes of one product variable: CF ``units`` (UDUNITS text, ``"1"`` for a
    dimensionless quantity) and ``long_name``, plus any ``extra`` (``flag_values``,
    ``equation``, ...)."""
    return {"units": units, "long_name": long_name, **extra}


def is_incomplete(attrs: Mapping[str, Any]) -> bool:
    """A product written while its run was still acquired: its ``complete`` attribute is
    0 / false (absent: a complete product)."""
    if "complete" not in attrs:
        return False
    flag = np.asarray(attrs["complete"]).ravel()
    value = flag[0] if flag.size else 1
    return str(value).strip().lower() in ("0", "false", "no")


def covered(attrs: Mapping[str, Any]) -> dict[str, int]:
    """What an incomplete product holds: its ``<items>_covered`` attributes
    (``{"frames": 120}``)."""
    return {k.removesuffix("_covered"): int(np.asarray(v).ravel()[0])
            for k, v in attrs.items() if k.endswith("_covered")}
