"""Atomic file output: a product is written under a temporary name beside its
final path and renamed only when complete, so a file on disk is always whole."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(final: str | Path, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path in the same folder; rename it to ``final`` on success.

    On an exception the temporary file is removed and ``final`` is untouched
    (an earlier product under that name stays intact).
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists() and not overwrite:
        raise FileExistsError(f"{final}: exists and overwrite is off; nothing was written")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".part", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.unlink()  # writers (h5py, fabio, pyFAI) create the file themselves
    try:
        yield tmp
        if not tmp.exists():
            raise RuntimeError(f"{final}: the writer produced no file")
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def write_bytes_atomic(final: str | Path, data: bytes) -> Path:
    """Write bytes to ``final`` atomically (flushed to disk before the rename)."""
    with atomic_path(final) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    return Path(final)


def write_text_atomic(final: str | Path, text: str, *, encoding: str = "utf-8") -> Path:
    """Write text to ``final`` atomically (no newline translation)."""
    return write_bytes_atomic(final, text.encode(encoding))
