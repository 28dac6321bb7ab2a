"""Path helpers shared by the readers and the config (no file access, light imports)."""

from __future__ import annotations

import os
import re
from typing import Any

__all__ = ["natural_key"]


def natural_key(path: str | os.PathLike[str]) -> tuple[Any, ...]:
    """Sort key putting ``frame_9`` before ``frame_10`` (digit runs compare as numbers)."""
    parts = re.split(r"(\d+)", os.fspath(path))
    return tuple((0, int(p), p) if p.isdigit() else (1, 0, p) for p in parts)
