"""Writing reduced products (``echem.nc``, ``xrd.nc``, …) per the data contract.

Every product is one file in ``reduced/<run>/``, NetCDF4 through the h5netcdf engine
(Zarr when the config asks and ``zarr`` is installed). :func:`write_product`

- checks the CF-style contract: every data variable and coordinate (except datetime
  coordinates, whose units live in the encoding) carries ``units`` and ``long_name``;
- stamps the provenance attributes: ``operando_version``, ``product``, ``created_utc``,
  ``config_yaml`` (the full resolved config), ``input_files`` with
  ``input_sizes_bytes`` and ``input_sha256``, and whatever extra attributes the caller
  passes (the clock model of the sync, ``clock_*``);
- writes under a temporary name beside the final path and renames it when complete, so
  a product on disk is always whole and an earlier product survives a failed write.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import xarray as xr

from operando._version import __version__
from operando.io.atomic import atomic_path, fsync_tree, part_path, publish, remove_stale_parts
from operando.io.xrd.images import split_hdf5_url

__all__ = [
    "ProductContractError",
    "file_sha256",
    "input_file_attrs",
    "missing_cf_attrs",
    "open_product",
    "product_path",
    "read_product",
    "stamp_product",
    "write_product",
    "zarr_group_atomic",
    "zarr_strings",
]

PRODUCT_SUFFIX = {"netcdf": ".nc", "zarr": ".zarr"}
#: ``output.format: zarr`` writes every product of a run as one group of this store
RUN_STORE = "run.zarr"


class ProductContractError(ValueError):
    """A product Dataset that does not meet the data contract (a programming error)."""


def product_path(product_dir: str | Path, name: str,
                 fmt: Literal["netcdf", "zarr"] = "netcdf") -> Path:
    """``<product_dir>/<name>.nc``, or for Zarr the group ``<product_dir>/run.zarr/<name>``
    (one store per run, a group per product: the layout :func:`operando.open_run` reads)."""
    if fmt == "zarr":
        return Path(product_dir) / RUN_STORE / name
    return Path(product_dir) / f"{name}{PRODUCT_SUFFIX[fmt]}"


_SHA_CACHE: dict[tuple[str, int, int], str] = {}


def read_product(path: str | Path) -> xr.Dataset:
    """A product written by :func:`write_product`, loaded into memory (NetCDF4 through
    h5netcdf, a group ``run.zarr/<name>`` of a run's Zarr store, or a ``.zarr`` folder); a
    missing or unreadable file names the path."""
    with open_product(path) as ds:
        try:
            return ds.load()
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path}: expected an operando product, could not read it: "
                             f"{exc}") from exc


@contextlib.contextmanager
def open_product(path: str | Path) -> Iterator[xr.Dataset]:
    """A product opened lazily (a variable, or a slice of it, is read when its values are
    asked for), closed when the block ends; errors as :func:`read_product`."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: expected an operando product, found no such file")
    in_store = path.parent.suffix == ".zarr"
    engine = "zarr" if in_store or path.suffix == ".zarr" else "h5netcdf"
    kw: dict[str, Any] = ({"group": path.name, "consolidated": False} if in_store
                          else {"consolidated": False} if engine == "zarr" else {})
    try:
        ds = xr.open_dataset(path.parent if in_store else path, engine=engine, **kw)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: expected an operando product ({engine}), could not read "
                         f"it: {exc}") from exc
    with ds:
        yield ds


def _zarr_group_files(path: Path) -> list[Path]:
    """The files of a Zarr group folder (``run.zarr/<product>``), in a fixed order."""
    return sorted(f for f in path.rglob("*") if f.is_file())


def _input_size(path: Path) -> int:
    """Bytes of a file, or of all files of a Zarr group folder."""
    if path.is_dir():
        return sum(f.stat().st_size for f in _zarr_group_files(path))
    return path.stat().st_size


def file_sha256(path: str | Path, *, block_bytes: int = 1 << 22) -> str:
    """SHA-256 hex digest of a file, streamed in 4 MiB blocks; of a Zarr group folder (a
    product of ``run.zarr`` read by another product), over each file's relative path and
    contents in sorted order.

    Cached on (path, size, mtime) for the life of the process, so several products of one
    run hash a large frame file once.
    """
    p = Path(path)
    files = _zarr_group_files(p) if p.is_dir() else [p]
    stats = [f.stat() for f in files]
    key = (str(p.resolve()), sum(st.st_size for st in stats),
           max((st.st_mtime_ns for st in stats), default=0))
    if key not in _SHA_CACHE:
        h = hashlib.sha256()
        for f in files:
            if p.is_dir():
                h.update(f.relative_to(p).as_posix().encode() + b"\0")
            with open(f, "rb") as fh:
                while block := fh.read(block_bytes):
                    h.update(block)
        _SHA_CACHE[key] = h.hexdigest()
    return _SHA_CACHE[key]


def input_file_attrs(paths: Iterable[str | Path]) -> dict[str, Any]:
    """``input_files``, ``input_sizes_bytes``, ``input_sha256`` for the product attributes.

    HDF5 URLs (``file.h5::/path``) count as their file; each file once. A product of a
    run's Zarr store (``run.zarr/xrd``, the input of ``peaks``) counts as its group folder.
    """
    files = [Path(split_hdf5_url(str(p))[0]) for p in paths]
    files = [Path(p) for p in dict.fromkeys(str(p) for p in files)]
    missing = [str(p) for p in files
               if not (p.is_file() or (p.is_dir() and (p / "zarr.json").is_file()))]
    if missing:
        raise FileNotFoundError(f"input files of the product not found: {', '.join(missing)}")
    return {
        "input_files": [str(p) for p in files],
        "input_sizes_bytes": np.asarray([_input_size(p) for p in files], dtype=np.int64),
        "input_sha256": [file_sha256(p) for p in files],
    }


def missing_cf_attrs(ds: xr.Dataset) -> list[str]:
    """Names of variables/coordinates lacking ``units`` or ``long_name``.

    Datetime variables need only ``long_name`` (their units are set by the encoding);
    string/label variables (dtype kind U/S/O) and booleans need only ``long_name``,
    with ``units`` optional (CF: dimensionless flags and labels).
    """
    missing: list[str] = []
    for name, var in {**ds.coords, **ds.data_vars}.items():
        if name in ds.dims and name not in ds.coords:
            continue
        needs_units = var.dtype.kind not in "MmUSOb"
        lacks = [k for k in (("units", "long_name") if needs_units else ("long_name",))
                 if k not in var.attrs]
        if lacks:
            missing.append(f"{name} (no {' or '.join(lacks)})")
    return missing


def _netcdf_safe(value: Any) -> Any:
    """Attribute values netCDF can store: str, numbers, 1-D arrays; None/bool made explicit."""
    if value is None:
        return ""
    if isinstance(value, bool | np.bool_):
        return int(value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list | tuple):
        if all(isinstance(v, str | Path) or v is None for v in value):
            return ["" if v is None else str(v) for v in value]
        return np.asarray([int(v) if isinstance(v, bool) else v for v in value])
    return value


def stamp_product(ds: xr.Dataset, path: Path, *, product: str,
                  config_yaml: str | None = None, inputs: Iterable[str | Path] = (),
                  extra_attrs: Mapping[str, Any] | None = None) -> xr.Dataset:
    """A shallow copy of ``ds`` with the provenance attributes of the data contract (see
    :func:`write_product`), after checking every variable's CF ``units``/``long_name``
    (:class:`ProductContractError` naming ``path`` and the variables)."""
    missing = missing_cf_attrs(ds)
    if missing:
        raise ProductContractError(
            f"{path.name}: every variable needs CF 'units' and 'long_name'; missing on "
            + ", ".join(missing)
        )
    out = ds.copy(deep=False)
    attrs: dict[str, Any] = {k: _netcdf_safe(v) for k, v in ds.attrs.items()}
    attrs.update({
        "Conventions": "CF-1.10",
        "product": product,
        "operando_version": __version__,
        "created_utc": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
    })
    if config_yaml is not None:
        attrs["config_yaml"] = config_yaml
    attrs.update(input_file_attrs(inputs))
    for k, v in (extra_attrs or {}).items():
        attrs[k] = _netcdf_safe(v)
    out.attrs = attrs
    for var in out.variables.values():
        var.attrs = {k: _netcdf_safe(v) for k, v in var.attrs.items()}

    return out


def write_product(
    ds: xr.Dataset,
    path: str | Path,
    *,
    product: str,
    config_yaml: str | None = None,
    inputs: Iterable[str | Path] = (),
    extra_attrs: Mapping[str, Any] | None = None,
    overwrite: bool = True,
    fmt: Literal["netcdf", "zarr"] = "netcdf",
) -> Path:
    """Write a product atomically with the provenance attributes of the data contract.

    ``product`` names it (``"xrd"``, ``"echem"``…); ``config_yaml`` is the full resolved
    run config; ``inputs`` are the raw files it was reduced from (size and SHA-256
    recorded); ``extra_attrs`` e.g. the clock model (``ClockModel.to_attrs()``).
    Raises :class:`ProductContractError` when a variable lacks ``units``/``long_name``,
    and ``FileExistsError`` when ``path`` exists and ``overwrite`` is false (the existing
    product is left as it was).
    """
    path = Path(path)
    out = stamp_product(ds, path, product=product, config_yaml=config_yaml, inputs=inputs,
                        extra_attrs=extra_attrs)
    if fmt == "netcdf":
        with atomic_path(path, overwrite=overwrite) as tmp:
            out.to_netcdf(tmp, engine="h5netcdf", invalid_netcdf=False)
        return path
    if fmt == "zarr":
        return _write_zarr_atomic(out, path, overwrite=overwrite)
    raise ValueError(f"output.format: expected 'netcdf' or 'zarr', found {fmt!r}")


def zarr_strings(ds: xr.Dataset) -> xr.Dataset:
    """Fixed-width unicode variables as variable-length strings: Zarr v3 has a specified
    ``string`` data type, while numpy's ``<U`` has none (zarr warns it may change)."""
    strs = {k: v.astype(object) for k, v in ds.variables.items() if v.dtype.kind == "U"}
    out = ds.assign_coords({k: v for k, v in strs.items() if k in ds.coords})
    return out.assign({k: v for k, v in strs.items() if k not in ds.coords})


def _write_zarr_atomic(ds: xr.Dataset, path: Path, *, overwrite: bool) -> Path:
    """Write ``ds`` as the Zarr v3 group ``path`` (:func:`zarr_group_atomic`)."""
    with zarr_group_atomic(path, overwrite=overwrite) as tmp:
        zarr_strings(ds).to_zarr(tmp, mode="w", zarr_format=3, consolidated=False)
    return path


@contextlib.contextmanager
def zarr_group_atomic(path: Path, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary Zarr store to write the group ``path`` into; swap it in when the
    block ends without error (else remove it, leaving an earlier group intact).

    When ``path`` lies in a ``*.zarr`` store (``run.zarr/<product>``) the store's root group
    is created if missing; the temporary store lies beside the run store and is renamed into
    it (a group of a local store is a folder), so a reader never sees half a group."""
    import zarr

    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: exists and overwrite is off; nothing was written")
    in_store = path.parent.suffix == ".zarr"
    if in_store:
        path.parent.parent.mkdir(parents=True, exist_ok=True)
        zarr.open_group(path.parent, mode="a", zarr_format=3)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = path.parent.parent if in_store else path.parent
    old = path.with_name(f".{path.name}.old")
    if old.exists():  # a run killed between the two renames below
        if path.exists():
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(old, path)
    remove_stale_parts(tmp_dir / path.name)
    tmp = part_path(tmp_dir / path.name)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsync_tree(tmp)
    if not overwrite:
        try:
            publish(tmp, path, overwrite=False)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return
    old = old if path.exists() else None
    if old is not None:
        os.replace(path, old)
    try:
        publish(tmp, path)
    except BaseException:
        if old is not None:  # put the earlier product back under its name
            os.replace(old, path)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
