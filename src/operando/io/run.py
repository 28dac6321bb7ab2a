"""One reduced run as one :class:`xarray.DataTree` (:func:`open_run`).

A run's products live in ``reduced/<run>/``, either one NetCDF4 file per product
(``echem.nc``, ``xrd.nc``, …; ``output.format: netcdf``) or one Zarr v3 store ``run.zarr``
with a group per product (``output.format: zarr``, written by
:func:`operando.io.products.write_product`). :func:`open_run` opens either as the same tree:

```
/            attrs: run, products, format, complete, and the provenance every product
             agrees on
├── echem    dims (echem_time)
├── xrd      dims (frame, q)            coords time (s, potentiostat clock), time_utc
├── peaks    dims (frame, peak, window, phase)
├── xanes    dims (scan, energy, component, …)
├── confocal dims (pass, depth, q, …)   coords time (pass, depth), time_utc (pass, depth)
└── kinetics dims (scan_rate) and/or (y, x)
```

Lazily: every variable is dask-backed (``chunks={}``: the chunks of the file), nothing is
read until ``.load()`` / ``.compute()`` / ``.values``; index coordinates (``q``, ``peak``…)
are read to build their index. ``tree.close()`` (or ``with open_run(...) as tree``)
closes the files. A run opened while it is still being acquired (products written by a
live pass carry ``complete = false``) has root ``complete = 0`` and
``incomplete_products``, and :func:`open_run` warns (:class:`IncompleteRunWarning`) that
they are not final. Reads only; knows nothing of the config (an object with a
``product_dir`` attribute is accepted; :func:`operando.open_run` also takes a config path).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Protocol

import xarray as xr

from operando.cf import covered, is_incomplete
from operando.io.products import RUN_STORE, product_path

__all__ = ["PRODUCTS", "IncompleteRunWarning", "NoProductError", "open_run", "shared_attrs"]

#: product names in the order of the reduction (and of the tree's groups)
PRODUCTS = ("echem", "xrd", "peaks", "xanes", "confocal", "kinetics")

#: attributes lifted to the root when every product that carries them agrees
SHARED_PREFIXES = ("clock_",)
SHARED_KEYS = ("operando_version", "Conventions")


class IncompleteRunWarning(UserWarning):
    """A run opened while it is still being acquired: some products carry
    ``complete = false`` (written by a live pass) and are not final."""


class NoProductError(FileNotFoundError):
    """A folder that holds no operando product."""


class HasProductDir(Protocol):
    """Anything with a ``product_dir`` (e.g. a ``RunConfig``)."""

    product_dir: Path


def _product_dir(source: str | os.PathLike[str] | HasProductDir) -> Path:
    if isinstance(source, str | os.PathLike):
        return Path(source)
    pdir = getattr(source, "product_dir", None)
    if pdir is None:
        raise TypeError(f"open_run: expected a product folder (reduced/<run>/), a run.zarr "
                        f"store or an object with a 'product_dir' (a RunConfig), found "
                        f"{type(source).__name__}")
    return Path(pdir)


def shared_attrs(attrs_by_product: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The provenance attributes (``operando_version``, ``Conventions``, the clock model
    ``clock_*``) that every product carrying them holds with the same value."""
    keys: dict[str, None] = {}
    for attrs in attrs_by_product.values():
        for k in attrs:
            if k in SHARED_KEYS or k.startswith(SHARED_PREFIXES):
                keys.setdefault(k)
    out: dict[str, Any] = {}
    for k in keys:
        values = [a[k] for a in attrs_by_product.values() if k in a]
        first = values[0]
        if all(_same(first, v) for v in values[1:]):
            out[k] = first
    return out


def _same(a: Any, b: Any) -> bool:
    import numpy as np

    try:
        return bool(np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True))
    except TypeError:  # strings: equal_nan needs numbers
        return bool(np.array_equal(np.asarray(a), np.asarray(b)))


def _netcdf_products(pdir: Path) -> dict[str, Path]:
    paths = {p: product_path(pdir, p, "netcdf") for p in PRODUCTS}
    return {p: path for p, path in paths.items() if path.is_file()}


def _open_netcdf(pdir: Path, files: Mapping[str, Path], chunks: Any) -> xr.DataTree:
    datasets: dict[str, xr.Dataset] = {}
    try:
        for name, path in files.items():
            try:
                datasets[name] = xr.open_dataset(path, engine="h5netcdf", chunks=chunks)
            except (OSError, ValueError) as exc:
                raise ValueError(f"{path}: expected an operando product (NetCDF4), could "
                                 f"not open it: {exc}") from exc
    except BaseException:
        for ds in datasets.values():
            ds.close()
        raise
    tree = xr.DataTree.from_dict({f"/{k}": ds for k, ds in datasets.items()})
    for name, ds in datasets.items():  # each group closes its own file
        tree[name].set_close(ds.close)
    return tree


def _open_zarr(store: Path, chunks: Any) -> xr.DataTree:
    try:
        tree = xr.open_datatree(store, engine="zarr", chunks=chunks, consolidated=False)
    except (OSError, ValueError, KeyError) as exc:
        raise ValueError(f"{store}: expected a run's Zarr store (a group per product), "
                         f"could not open it: {exc}") from exc
    unknown = [c for c in tree.children if c not in PRODUCTS]
    if unknown:
        tree.close()
        raise ValueError(f"{store}: expected groups among {', '.join(PRODUCTS)}, found "
                         f"{', '.join(sorted(unknown))}")
    if not tree.children:
        tree.close()
        raise NoProductError(f"{store}: expected a group per product ({', '.join(PRODUCTS)}),"
                             " found an empty store")
    # the groups in the reduction's order, whatever the store listed first
    ordered = {f"/{k}": tree[k] for k in PRODUCTS if k in tree.children}
    out = xr.DataTree.from_dict(ordered)
    out.set_close(tree.close)
    return out


def open_run(source: str | os.PathLike[str] | HasProductDir, *,
             format: Literal["auto", "netcdf", "zarr"] = "auto",
             chunks: Any = None) -> xr.DataTree:
    """Open a reduced run as one DataTree, a group per product present, lazily.

    ``source``: the product folder ``reduced/<run>/``, its ``run.zarr`` store, or an object
    with a ``product_dir`` attribute (a ``RunConfig``). ``format``: ``auto`` (the default)
    takes ``run.zarr`` when the folder holds one and no ``*.nc`` product, the NetCDF files
    when it holds no ``run.zarr``, and asks for an explicit choice when it holds both.
    ``chunks``: passed to xarray (default ``{}``: dask arrays with the file's chunks).

    Root attributes: ``run`` (the run's name: the product folder's name), ``products``
    (the groups, in reduction order), ``format``, ``complete`` (0 when a product was
    written by a live pass: then ``incomplete_products`` names them and an
    :class:`IncompleteRunWarning` is issued), and the provenance every product that
    carries it agrees on (:func:`shared_attrs`: ``operando_version``, the clock model).

    Raises ``FileNotFoundError`` for a missing folder, :class:`NoProductError` for a folder
    with no product, ``ValueError`` for an unreadable product (each naming the path).
    """
    chunks = {} if chunks is None else chunks
    path = _product_dir(source)
    if not path.exists():
        raise FileNotFoundError(f"{path}: expected a reduced run's product folder, found no "
                                "such folder")
    if path.is_file():
        raise NotADirectoryError(
            f"{path}: expected a product folder (reduced/<run>/) or a run.zarr store, found a "
            "file (a run config is opened through operando.open_run)")
    if path.suffix == ".zarr":
        store, pdir, files = path, path.parent, {}
    else:
        pdir, store, files = path, path / RUN_STORE, _netcdf_products(path)
    has_zarr = store.is_dir()
    if format == "auto":
        if has_zarr and files:
            raise ValueError(
                f"{pdir}: holds both NetCDF products ({', '.join(f.name for f in files.values())})"
                f" and {RUN_STORE}; pass format='netcdf' or format='zarr'")
        format = "zarr" if has_zarr else "netcdf"
    if format == "zarr":
        if not has_zarr:
            raise NoProductError(f"{pdir}: expected a {RUN_STORE} store (output.format: zarr), "
                                 "found none")
        tree = _open_zarr(store, chunks)
    elif format == "netcdf":
        if not files:
            found = sorted(p.name for p in pdir.iterdir() if not p.name.startswith("."))
            raise NoProductError(
                f"{pdir}: expected at least one product "
                f"({', '.join(p + '.nc' for p in PRODUCTS)}, or {RUN_STORE}), found "
                + (", ".join(found) if found else "an empty folder"))
        tree = _open_netcdf(pdir, files, chunks)
    else:
        raise ValueError(f"open_run: format expected 'auto', 'netcdf' or 'zarr', found "
                         f"{format!r}")
    groups = list(tree.children)
    incomplete = {g: covered(tree[g].attrs) for g in groups if is_incomplete(tree[g].attrs)}
    shared = shared_attrs({g: tree[g].attrs for g in groups})
    for k in ("complete", *(f"{items}_covered" for c in incomplete.values() for items in c)):
        shared.pop(k, None)
    tree.attrs = {
        "run": pdir.resolve().name,
        "products": " ".join(groups),
        "format": format,
        **shared,
        "complete": int(not incomplete),
    }
    if incomplete:
        tree.attrs["incomplete_products"] = " ".join(incomplete)
        what = "; ".join(f"{g} ({', '.join(f'{n} {k}' for k, n in c.items()) or 'partial'})"
                         for g, c in incomplete.items())
        warnings.warn(IncompleteRunWarning(
            f"{pdir}: the run is still being acquired: {what} "
            f"{'is' if len(incomplete) == 1 else 'are'} incomplete (complete = false), not "
            "final"), stacklevel=2)
    return tree
