"""Locating the real reference data (``../shared/data`` beside the checkout)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

ENV_VAR = "OPERANDO_SHARED_DATA"


def find_shared_data(start: Path | None = None) -> Path | None:
    """The real-data folder, or ``None`` when it is not on this machine.

    Looked for, in order: ``$OPERANDO_SHARED_DATA``; ``shared/data`` in the parents
    of ``start`` (default: the current directory) and of this source file. When
    ``$OPERANDO_SHARED_DATA`` names a folder that does not exist, a warning says so
    (a typo there should not look like "no real data on this machine") and ``None``
    is returned.
    """
    env = os.environ.get(ENV_VAR)
    if env:
        p = Path(env).expanduser()
        if p.is_dir():
            return p
        warnings.warn(
            f"${ENV_VAR} = {env!r}: no such folder ({p}); expected the real-data folder "
            "(shared/data); real-data checks are skipped",
            stacklevel=2,
        )
        return None
    roots = [Path(start or Path.cwd()).resolve(), Path(__file__).resolve()]
    for root in roots:
        for parent in [root, *root.parents]:
            cand = parent / "shared" / "data"
            if cand.is_dir() and (cand / "README.md").exists():
                return cand
    return None
