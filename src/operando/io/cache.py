"""The work-unit cache and the identity stamps of a run's products: files only, no logic.

The reduce flow (``pipelines/cache.py``) decides *what* a work unit or a product is
identified by; this module does the file side of it:

- :func:`write_unit` / :func:`read_unit`: one pickle file per finished work unit under
  ``<product_dir>/.cache/``, written under a temporary name and renamed when complete
  (:func:`operando.io.atomic.write_bytes_atomic`), so a run killed at any point leaves
  only whole units behind; a unit file that cannot be read counts as absent;
- :func:`file_stamp`: what identifies an input file cheaply (path, size in bytes, mtime in
  ns), without reading it;
- :func:`source_digest`: sha256 over the Python sources of packages (the code version);
- :func:`read_identity`: the ``operando_identity`` attribute of a written product (JSON
  text) and its ``complete`` flag, read without loading its arrays;
- :func:`log_file_handler`: the run's log file (``reduce.log``: decisions, tracebacks);
- :func:`remove_tree`: ``operando clean``.

The cache folder is the run's own (written by this process under the products' folder):
its pickles are trusted like the products beside them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from operando.io.atomic import write_bytes_atomic

__all__ = ["IDENTITY_ATTR", "file_stamp", "log_file_handler", "read_identity", "read_unit",
           "remove_tree", "source_digest", "write_unit"]

#: dataset attribute of every product: JSON text of what it was made from
IDENTITY_ATTR = "operando_identity"


def write_unit(path: str | Path, value: Any) -> Path:
    """Pickle ``value`` to ``path`` atomically (temporary name + rename, fsync'd)."""
    return write_bytes_atomic(path, pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))


def read_unit(path: str | Path) -> tuple[bool, Any]:
    """``(True, value)`` of a unit file written by :func:`write_unit`; ``(False, None)``
    when it is absent or unreadable (a truncated or foreign file is not a result)."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        return False, None
    try:
        return True, pickle.loads(data)
    except Exception:  # any unpickling failure: the unit is recomputed
        return False, None


def file_stamp(path: str | Path) -> tuple[str, int, int]:
    """``(absolute path, size in bytes, mtime in ns)`` of a file; ``(path, -1, -1)`` when it
    does not exist (so a vanished input changes the stamp instead of raising)."""
    p = Path(path).absolute()
    try:
        st = p.stat()
    except FileNotFoundError:
        return str(p), -1, -1
    return str(p), int(st.st_size), int(st.st_mtime_ns)


def source_digest(roots: list[Path], pattern: str = "*.py") -> str:
    """sha256 (hex) over the relative names and contents of every ``pattern`` file under
    ``roots`` (sorted), e.g. the ``operando`` package and ``pipelines/``."""
    h = hashlib.sha256()
    for root in roots:
        for f in sorted(Path(root).rglob(pattern)):
            if "__pycache__" in f.parts:
                continue
            h.update(f"{root.name}/{f.relative_to(root).as_posix()}\0".encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def read_identity(path: str | Path) -> dict[str, Any] | None:
    """The ``operando_identity`` of a product (a ``.nc`` file, or a Zarr group
    ``run.zarr/<name>``) parsed from JSON, with the product's ``complete`` attribute (if
    any) under the key ``"complete"``, without loading its arrays; None when the product
    has no identity (written by an earlier version) or is not readable."""
    p = Path(path)
    try:
        if p.parent.suffix == ".zarr" or p.suffix == ".zarr":
            import zarr

            group = (zarr.open_group(p.parent, mode="r")[p.name] if p.parent.suffix == ".zarr"
                     else zarr.open_group(p, mode="r"))
            text, complete = group.attrs.get(IDENTITY_ATTR), group.attrs.get("complete")
        else:
            import h5py

            with h5py.File(p, "r") as f:
                text, complete = f.attrs.get(IDENTITY_ATTR), f.attrs.get("complete")
    except (OSError, KeyError, ValueError):
        return None
    if text is None:
        return None
    if isinstance(text, bytes):
        text = text.decode()
    try:
        out = json.loads(str(text))
    except json.JSONDecodeError:
        return None
    if not isinstance(out, dict):
        return None
    if complete is not None:
        flag = np.asarray(complete).ravel()
        value = flag[0] if flag.size else 1
        if isinstance(value, bytes):
            value = value.decode()
        out["complete"] = str(value).strip().lower() not in ("0", "false", "no")
    return out


def log_file_handler(path: str | Path) -> logging.Handler:
    """A ``logging`` handler appending to ``path`` (folder created), with time, level and
    logger name on each line; the caller removes and closes it."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(p, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    return handler


def remove_tree(path: str | Path) -> bool:
    """Remove a folder (or file) and everything in it; False when there was none."""
    p = Path(path)
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p)
        return True
    if p.exists() or p.is_symlink():
        os.unlink(p)
        return True
    return False
