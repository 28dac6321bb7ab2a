"""Detector geometry files: pyFAI PONI and EDF pixel mask, written atomically.

Both writers write to ``<name>.part`` in the target folder and rename on success, so a
half-written file never sits under the final name. The PONI text is produced by pyFAI's
own :class:`pyFAI.io.ponifile.PoniFile` (``ai.write`` is not used: it *appends* to an
existing file and only logs I/O errors).
"""

from __future__ import annotations

import os
from pathlib import Path

import fabio
import numpy as np
import pyFAI
from fabio.edfimage import EdfImage
from pyFAI.integrator.azimuthal import AzimuthalIntegrator
from pyFAI.io.ponifile import PoniFile

__all__ = ["read_mask", "read_poni", "write_mask_edf", "write_poni"]


def _part(path: Path) -> Path:
    return path.with_name(path.name + ".part")


def write_poni(ai: AzimuthalIntegrator, path: str | os.PathLike[str]) -> Path:
    """Write the geometry of ``ai`` (distance, PONI, rotations, wavelength, detector)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _part(path)
    try:
        with open(tmp, "w", encoding="utf-8") as fd:
            PoniFile(ai).write(fd)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_mask_edf(mask: np.ndarray, path: str | os.PathLike[str]) -> Path:
    """Write a pixel mask (uint8, 1 = masked, pyFAI convention) as EDF."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _part(path)
    try:
        EdfImage(data=np.ascontiguousarray(mask, dtype=np.uint8)).write(str(tmp))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read_poni(path: str | os.PathLike[str]) -> AzimuthalIntegrator:
    """Load a PONI file into an AzimuthalIntegrator (``pyFAI.load``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"PONI file not found: {path}")
    return pyFAI.load(str(path))


def read_mask(path: str | os.PathLike[str]) -> np.ndarray:
    """Load a mask image (EDF or any fabio format) as uint8, 1 = masked."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"mask file not found: {path}")
    return (np.asarray(fabio.open(str(path)).data) != 0).astype(np.uint8)
