"""The installed version of operando (``importlib.metadata``), in a module of its own so the
lower layers (``operando.io``) can stamp it on products without importing the package face."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("operando")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"
