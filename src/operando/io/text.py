"""Reading text files: one decoding and one line-splitting rule for every text reader."""

from __future__ import annotations

import os
import re
from pathlib import Path

__all__ = ["decode_text", "is_float", "read_file_head", "read_text_lines", "split_lines"]

_NEWLINE = re.compile(r"\r\n|\r|\n")


def is_float(text: str) -> bool:
    """True when ``float(text)`` parses (a numeric cell of a text table)."""
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_file_head(path: str | os.PathLike[str], nbytes: int, *, what: str,
                   error: type[Exception]) -> bytes:
    """The first ``nbytes`` of a file (a leading UTF-8 byte-order mark dropped), to detect
    its format. A missing file, a folder or an empty file raises ``error`` naming the path
    and ``what`` was expected (e.g. "a cycler file")."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            head = fh.read(nbytes)
    except FileNotFoundError:
        raise error(f"{path}: no such file (expected {what})") from None
    except IsADirectoryError:
        raise error(f"{path}: is a folder, expected {what}") from None
    if not head:
        raise error(f"{path}: empty file (0 bytes), expected {what}")
    return head.removeprefix(b"\xef\xbb\xbf")


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
