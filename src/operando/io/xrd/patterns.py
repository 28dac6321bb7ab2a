"""Integrated 1D patterns as text (``.xy``), the format pyFAI-integrate and Dioptas write.

Layout: ``#`` header lines (``key: value``), a ``#`` column line, then one row per bin:
radial value, intensity, sigma (``%.8g``), space-separated. Written atomically.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from operando._version import __version__
from operando.io.atomic import write_text_atomic

__all__ = ["read_xy", "write_xy"]


def write_xy(path: str | os.PathLike[str], radial: np.ndarray, intensity: np.ndarray,
             sigma: np.ndarray | None = None, *, radial_label: str = "q_1/angstrom",
             header: Mapping[str, Any] | None = None) -> Path:
    """Write one pattern: columns ``radial_label``, ``intensity``, ``sigma`` (if given)."""
    lines = [f"# written by operando {__version__}"]
    lines += [f"# {k}: {v}" for k, v in (header or {}).items()]
    cols = [np.asarray(radial, dtype=float), np.asarray(intensity, dtype=float)]
    names = [radial_label, "intensity"]
    if sigma is not None:
        cols.append(np.asarray(sigma, dtype=float))
        names.append("sigma")
    lines.append("# " + "  ".join(names))
    body = np.column_stack(cols)
    lines += [" ".join(f"{v:.8g}" for v in row) for row in body]
    return write_text_atomic(Path(path), "\n".join(lines) + "\n")


def read_xy(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a 2- or 3-column ``.xy`` (``#`` comments skipped) as an (n, ncol) float array."""
    return np.loadtxt(Path(path), comments="#", ndmin=2)
