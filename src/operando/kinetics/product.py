"""The ``kinetics.nc`` Dataset: cell results (dimension ``scan_rate``, scalars prefixed
``cell_``) and/or map results (``(y, x)``, per-rate maps on ``(map_scan_rate, y, x)``)."""

from __future__ import annotations

import xarray as xr

__all__ = ["kinetics_dataset"]


def kinetics_dataset(cells: xr.Dataset | None = None,
                     map_result: xr.Dataset | None = None) -> xr.Dataset:
    """Merge the cell and map results into one product Dataset (either may be ``None``).

    The ``reasons`` attribute of the cells becomes ``cell_reasons`` (newline-joined text).
    """
    if cells is None and map_result is None:
        raise ValueError("kinetics product: expected cell CV results or a map, found neither")
    parts = [p for p in (cells, map_result) if p is not None]
    ds = xr.merge(parts, combine_attrs="override", compat="no_conflicts", join="outer")
    attrs: dict[str, object] = {}
    for p in parts:
        attrs.update({k: v for k, v in p.attrs.items() if k != "reasons"})
    if cells is not None:
        attrs["cell_reasons"] = "\n".join(cells.attrs.get("reasons", []))
    ds.attrs = attrs
    return ds
