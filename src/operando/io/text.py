"""Reading text files: one decoding and one line-splitting rule for every text reader."""

from __future__ import annotations

import os
import re
from pathlib import Path

__all__ = ["decode_text", "read_text_lines", "split_lines"]

_NEWLINE = re.compile(r"\r\n|\r|\n")


def decode_text(raw: bytes) -> str:
    """UTF-8 (a leading byte-order mark is dropped), else latin-1 (which never fails)."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def split_lines(text: str) -> list[str]:
    """Lines of ``text`` split on ``\\r\\n``, ``\\r`` and ``\\n`` only.

    Not :meth:`str.splitlines`, which also breaks on ``\\x85``, ``\\x1c``, ``\\u2028``, ...
    that latin-1 text may hold. A final line terminator does not make an extra empty line
    (as with ``splitlines``).
    """
    lines = _NEWLINE.split(text)
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def read_text_lines(path: str | os.PathLike[str]) -> list[str]:
    """The lines of a text file (see :func:`decode_text` and :func:`split_lines`).

    Raises ``FileNotFoundError`` when the file is absent (readers turn it into their own
    :class:`~operando.io.errors.InputFileError` naming what they expected).
    """
    return split_lines(decode_text(Path(path).read_bytes()))
