"""Detector geometry files: pyFAI PONI and EDF pixel mask, read and written atomically.

The PONI text (``Key: value`` lines, ``#`` comments) is parsed in one place,
:func:`parse_poni`; :func:`read_poni_text` reads a file through it and :func:`read_poni`
loads a validated file into pyFAI.

Both writers go through :mod:`operando.io.atomic` (temporary name in the target folder,
flushed to disk, renamed on success), so a half-written file never sits under the final
name. The PONI text is produced by pyFAI's own :class:`pyFAI.io.ponifile.PoniFile`
(``ai.write`` is not used: it *appends* to an existing file and only logs I/O errors).
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyFAI
from fabio.edfimage import EdfImage
from pyFAI.integrator.azimuthal import AzimuthalIntegrator
from pyFAI.io.ponifile import PoniFile

from operando.io.atomic import atomic_path, write_text_atomic
from operando.io.errors import InputFileError

__all__ = [
    "PoniFormatError",
    "PoniText",
    "parse_poni",
    "poni_frame_shape",
    "product_wavelength_A",
    "read_mask",
    "read_poni",
    "read_poni_text",
    "write_mask_edf",
    "write_poni",
]


def write_poni(ai: AzimuthalIntegrator, path: str | os.PathLike[str]) -> Path:
    """Write the geometry of ``ai`` (distance, PONI, rotations, wavelength, detector).

    pyFAI's writer stamps the wall-clock time in a ``# Calibration done on`` comment;
    it is dropped so the same geometry always gives the same file.
    """
    buf = io.StringIO()
    PoniFile(ai).write(buf)
    lines = [ln for ln in buf.getvalue().splitlines(keepends=True)
             if not ln.startswith("# Calibration done ")]
    return write_text_atomic(Path(path), "".join(lines))


def write_mask_edf(mask: np.ndarray, path: str | os.PathLike[str]) -> Path:
    """Write a pixel mask (uint8, 1 = masked, pyFAI convention) as EDF."""
    path = Path(path)
    with atomic_path(path) as tmp:
        EdfImage(data=np.ascontiguousarray(mask, dtype=np.uint8)).write(str(tmp))
        with open(tmp, "rb+") as fh:  # fabio does not sync: flush to disk before the rename
            os.fsync(fh.fileno())
    return path


#: keys a PONI file must set (case-insensitive) for a usable geometry; the detector is
#: ``Detector`` (PONI v2+) or ``PixelSize1`` (v1 files, e.g. Dioptas' CeO2 example)
PONI_REQUIRED_KEYS = ("distance", "poni1", "poni2", "wavelength")


class PoniFormatError(InputFileError):
    """A PONI file that pyFAI cannot read, or one lacking the keys of a geometry."""


@dataclass(frozen=True)
class PoniText:
    """The text of a PONI file and its settings.

    ``text``: the file's text as it is; ``values``: lower-case key → value text of every
    ``Key: value`` line (comment lines starting with ``#`` left out), e.g. ``wavelength``
    → ``"2.066e-11"`` (metres, pyFAI's convention).
    """

    text: str
    values: dict[str, str]

    @property
    def wavelength_A(self) -> float:
        """λ in Å (the ``Wavelength`` setting, in metres, × 1e10)."""
        if "wavelength" not in self.values:
            raise PoniFormatError("expected a 'Wavelength:' line in the PONI text, found none")
        return float(self.values["wavelength"]) * 1e10


def parse_poni(text: str) -> PoniText:
    """The settings of PONI ``text`` (the one parser of PONI text; see :class:`PoniText`)."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        if ":" not in line or line.lstrip().startswith("#"):
            continue
        key, _, value = line.partition(":")
        values.setdefault(key.strip().lower(), value.strip())
    return PoniText(text=text, values=values)


def read_poni_text(path: str | os.PathLike[str]) -> PoniText:
    """The text (UTF-8) and settings of the PONI file at ``path``, as it is (not validated:
    :func:`read_poni` checks the keys of a geometry)."""
    return parse_poni(Path(path).read_text(encoding="utf-8"))


def product_wavelength_A(attrs: Mapping[str, Any]) -> float:
    """λ (Å) of an XRD product from its attributes: the PONI text it was integrated with
    (``poni``), else a ``wavelength_A`` attribute (energy-dispersive or hand-made data)."""
    if "poni" in attrs:
        return parse_poni(str(attrs["poni"])).wavelength_A
    if "wavelength_A" in attrs:
        return float(attrs["wavelength_A"])
    raise ValueError("xrd.nc: expected the PONI text (attribute 'poni') or 'wavelength_A' "
                     "to convert d-spacings to the pattern's unit, found neither")


def read_poni(path: str | os.PathLike[str]) -> AzimuthalIntegrator:
    """Load a PONI file into an AzimuthalIntegrator (``pyFAI.load``).

    The file must set ``Distance``, ``Poni1``, ``Poni2``, ``Wavelength`` and ``Detector``
    (or v1's ``PixelSize1``): pyFAI would otherwise load a default 1 m geometry on an
    undefined detector.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"PONI file not found: {path}")
    keys = set(parse_poni(path.read_text(encoding="utf-8", errors="replace")).values)
    missing = [k for k in PONI_REQUIRED_KEYS if k not in keys]
    if not keys & {"detector", "pixelsize1"}:
        missing.append("detector (or pixelsize1)")
    if missing:
        raise PoniFormatError(f"{path}: expected a pyFAI PONI file with the keys "
                              f"{', '.join(PONI_REQUIRED_KEYS)} and a detector; missing "
                              f"{', '.join(missing)}")
    try:
        return pyFAI.load(str(path))
    except Exception as exc:  # pyFAI raises ValueError/KeyError/RuntimeError on bad values
        raise PoniFormatError(f"{path}: pyFAI cannot read this PONI file ({exc})") from None


def poni_frame_shape(path: str | os.PathLike[str]) -> tuple[int, int] | None:
    """The frame shape (ny, nx) of the PONI file's detector (pyFAI ``max_shape``), or None
    when the file gives pixel sizes only (a v1 PONI, or a generic ``Detector``)."""
    shape = read_poni(path).detector.max_shape
    return None if shape is None else (int(shape[0]), int(shape[1]))


def read_mask(path: str | os.PathLike[str]) -> np.ndarray:
    """Load a mask image (EDF or anything :func:`operando.io.xrd.images.read_image` reads) as
    uint8, 1 = masked."""
    from operando.io.xrd.images import read_image

    return (np.asarray(read_image(path, what="mask")) != 0).astype(np.uint8)
