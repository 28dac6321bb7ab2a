"""Writing a product block by block as its work units finish, so the writer never holds it.

:func:`stream_product` takes the product's Dataset in which the variables that arrive in
blocks are *lazy* placeholders (Dask arrays, never computed: their shape, dtype and chunks
only), writes everything else at once — coordinates, attributes, the provenance of
:func:`operando.io.products.stamp_product` — under a temporary name, and yields a
:class:`ProductWriter` whose :meth:`ProductWriter.write` puts rows ``[start, stop)`` of those
variables into the file. When the block ends without error and every row of every
streamed variable was written, the file is renamed to its final name (NetCDF4 through
h5netcdf; Zarr v3 groups of ``run.zarr`` swapped in by
:func:`operando.io.products.zarr_group_atomic`); otherwise the temporary file is removed and
an earlier product under the final name stays as it was.

NetCDF4: the fixed part is written by xarray; each streamed variable is created with
h5netcdf (chunked by rows of at most :data:`CHUNK_BYTES`, NaN fill for floats) with the
attributes xarray would give it (its own, and ``coordinates`` naming the non-dimension
coordinates on its dimensions, so xarray reads the same Dataset back); its rows are
written through h5py datasets held open, the file flushed after each block, so a block
that cannot be written (a full disk) raises there, and the file is then dropped without
another HDF5 call (:mod:`operando.io.h5fail`). Zarr: the
documented region-write pattern (``to_zarr(compute=False)`` creates every array, then
``to_zarr(region=...)`` writes each block).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
import xarray as xr

from operando.io.atomic import atomic_path
from operando.io.h5fail import abandon
from operando.io.products import stamp_product, zarr_group_atomic, zarr_strings

__all__ = ["CHUNK_BYTES", "ProductWriter", "chunk_rows_of", "stream_product",
           "streamed_variables"]

#: largest HDF5 chunk of a streamed variable (a row is never split): reading one frame of
#: a cake reads one chunk, not a whole work unit
CHUNK_BYTES = 2**20


def chunk_rows_of(shape: tuple[int, ...], dtype: np.dtype) -> int:
    """Rows per on-disk chunk of a streamed variable: as many whole rows as fit in
    :data:`CHUNK_BYTES`, at least one, at most all."""
    row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * np.dtype(dtype).itemsize
    return max(1, min(int(shape[0]), CHUNK_BYTES // max(1, row_bytes)))


def streamed_variables(ds: xr.Dataset, dim: str) -> list[str]:
    """Names of the lazy (Dask-backed) variables of ``ds``: those written block by block;
    each must have ``dim`` as its first dimension."""
    names = [str(k) for k, v in ds.variables.items() if v.chunks is not None]
    bad = [n for n in names if ds[n].dims[:1] != (dim,)]
    if bad:
        raise ValueError(f"streamed variables must start with dimension {dim!r}: "
                         f"{', '.join(f'{n} {ds[n].dims}' for n in bad)}")
    return names


class ProductWriter:
    """Rows of the streamed variables into the temporary product (see the module doc)."""

    def __init__(self, path: Path, tmp: Path, ds: xr.Dataset, dim: str, names: list[str],
                 fmt: str) -> None:
        self.path, self.tmp, self.dim, self.names, self.fmt = path, tmp, dim, names, fmt
        self.n = int(ds.sizes[dim])
        self._dims = {n: tuple(str(d) for d in ds[n].dims) for n in names}
        self._done = np.zeros(self.n, dtype=bool)
        self._file: Any = None
        self._datasets: dict[str, Any] = {}

    def _open_netcdf(self, ds: xr.Dataset) -> None:
        import h5netcdf
        import h5py

        with h5netcdf.File(self.tmp, "a") as nc:
            plain = [str(c) for c in ds.coords if c not in ds.dims]
            for name in self.names:
                var = ds[name].variable
                rows = chunk_rows_of(var.shape, var.dtype)
                floating = var.dtype.kind == "f"
                v = nc.create_variable(
                    name, self._dims[name], dtype=var.dtype,
                    chunks=(rows, *var.shape[1:]) if self.n else None,
                    fillvalue=np.nan if floating else None)
                for key, value in var.attrs.items():
                    v.attrs[key] = value
                if name not in ds.coords:
                    mine = [c for c in plain if set(ds[c].dims) <= set(var.dims) and c != name]
                    if mine:
                        v.attrs["coordinates"] = " ".join(mine)
        # the rows go in through h5py handles held open until the end (h5netcdf opens and
        # closes a dataset per access: a chunk that cannot be written would fail in that
        # close, where h5py can only print the error)
        self._file = h5py.File(self.tmp, "r+")
        self._datasets = {name: self._file[name] for name in self.names}

    def write(self, start: int, stop: int, values: Mapping[str, np.ndarray]) -> None:
        """Rows ``[start, stop)`` of each streamed variable (every one of them, shaped
        ``(stop − start, …)`` like the variable)."""
        missing = set(self.names) - set(values)
        if missing:
            raise ValueError(f"{self.path}: block {start}:{stop} lacks {sorted(missing)}")
        if not 0 <= start <= stop <= self.n:
            raise IndexError(f"{self.path}: rows {start}:{stop} outside 0:{self.n}")
        if self.fmt == "netcdf":
            try:
                for name in self.names:
                    self._datasets[name][start:stop] = values[name]
                self._file.flush()  # a block that cannot be written (full disk) fails here
            except BaseException:
                self._abandon()
                raise
        else:
            block = xr.Dataset({n: (self._dims[n], np.asarray(values[n])) for n in self.names})
            block.to_zarr(self.tmp, region={self.dim: slice(start, stop)}, mode="r+",
                          zarr_format=3, consolidated=False)
        self._done[start:stop] = True

    @property
    def rows_written(self) -> int:
        """Rows written so far."""
        return int(self._done.sum())

    def close(self) -> None:
        """Close the file (NetCDF4); the rename is :func:`stream_product`'s."""
        if self._file is not None:
            try:
                self._file.flush()
                self._file.close()
            except BaseException:
                self._abandon()
                raise
            self._file, self._datasets = None, {}

    def _abandon(self) -> None:
        """After a failed write: drop the file without calling HDF5 on it again
        (:mod:`operando.io.h5fail`); the temporary file is removed by the caller."""
        abandon(self._file, *self._datasets.values())
        self._file, self._datasets = None, {}

    def check_complete(self) -> None:
        """Raise when a row of the streamed variables was never written."""
        if not self._done.all():
            first = int(np.flatnonzero(~self._done)[0])
            raise ValueError(f"{self.path}: {self.n - self.rows_written} of {self.n} rows of "
                             f"{', '.join(self.names)} were never written (first: {first}); "
                             "the product was not finalised")


@contextlib.contextmanager
def stream_product(
    ds: xr.Dataset,
    path: str | Path,
    *,
    dim: str,
    product: str,
    config_yaml: str | None = None,
    inputs: Iterable[str | Path] = (),
    extra_attrs: Mapping[str, Any] | None = None,
    overwrite: bool = True,
    fmt: Literal["netcdf", "zarr"] = "netcdf",
) -> Iterator[ProductWriter]:
    """Write the product ``ds`` whose lazy variables arrive in row blocks along ``dim``
    (module doc); arguments as :func:`operando.io.products.write_product`. The product is
    renamed into place when the block ends, only when every row was written."""
    path = Path(path)
    out = stamp_product(ds, path, product=product, config_yaml=config_yaml, inputs=inputs,
                        extra_attrs=extra_attrs)
    names = streamed_variables(out, dim)
    if fmt == "netcdf":
        with atomic_path(path, overwrite=overwrite) as tmp:
            out.drop_vars(names).to_netcdf(tmp, engine="h5netcdf", invalid_netcdf=False)
            writer = ProductWriter(path, tmp, out, dim, names, fmt)
            try:
                writer._open_netcdf(out)
                yield writer
            finally:
                writer.close()
            writer.check_complete()
        return
    if fmt == "zarr":
        # Zarr chunks as the NetCDF ones (≤ CHUNK_BYTES of whole rows), not a whole work
        # unit: reading one frame of a cake reads one chunk (the placeholders cost nothing)
        rechunked = {n: out.variables[n].chunk({dim: chunk_rows_of(out.variables[n].shape,
                                                                   out.variables[n].dtype)})
                     for n in names}
        out = out.assign({n: v for n, v in rechunked.items() if n not in out.coords})
        out = out.assign_coords({n: v for n, v in rechunked.items() if n in out.coords})
        with zarr_group_atomic(path, overwrite=overwrite) as tmp:
            zarr_strings(out).to_zarr(tmp, mode="w", zarr_format=3, consolidated=False,
                                      compute=False)
            writer = ProductWriter(path, tmp, out, dim, names, fmt)
            yield writer
            writer.check_complete()
        return
    raise ValueError(f"output.format: expected 'netcdf' or 'zarr', found {fmt!r}")
