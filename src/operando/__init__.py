"""operando: data reduction for synchrotron operando battery experiments.

``operando.open_run(run)`` opens a reduced run as one ``xarray.DataTree``; it is imported
on first use, so ``import operando`` stays light.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from operando._version import __version__

if TYPE_CHECKING:
    import xarray as xr

__all__ = ["__version__", "open_run"]

_CONFIG_SUFFIXES = (".yaml", ".yml")


def open_run(run: str | os.PathLike[str] | Any, **kwargs: Any) -> xr.DataTree:
    """A reduced run as one lazy ``xarray.DataTree``, a group per product (``/echem``,
    ``/xrd``, ``/peaks``, ``/xanes``, ``/confocal``, ``/kinetics``).

    ``run``: the product folder ``reduced/<run>/`` (NetCDF files or a ``run.zarr`` store),
    a run config file (``*.yaml``: its ``product_dir``), or a ``RunConfig``. Keyword
    arguments go to :func:`operando.io.run.open_run` (``format``, ``chunks``).
    """
    from operando.io.run import open_run as _open_run

    if isinstance(run, str | os.PathLike) and Path(run).suffix.lower() in _CONFIG_SUFFIXES:
        from operando.config import load_config

        run = load_config(run)
    return _open_run(run, **kwargs)
