"""Reading text files: one decoding and one line-splitting rule for every text reader."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from operando.io.errors import InputFileError

__all__ = [
    "decode_text",
    "is_float",
    "parse_number",
    "read_file_head",
    "read_numeric_table",
    "read_text_file",
    "read_text_lines",
    "split_lines",
]

_NEWLINE = re.compile(r"\r\n|\r|\n")


def is_float(text: str) -> bool:
    """True when ``float(text)`` parses (a numeric cell of a text table)."""
    try:
        float(text)
    except ValueError:
        return False
    return True


def parse_number(text: str, *, decimal_comma: bool) -> float | None:
    """``text`` as a float (``3.41``, ``3,41`` when ``decimal_comma``, ``1,5E-06``), or None
    (empty or not a number)."""
    t = text.strip()
    if not t:
        return None
    try:
        return float(t)
    except ValueError:
        pass
    if decimal_comma and t.count(",") == 1:
        try:
            return float(t.replace(",", "."))
        except ValueError:
            return None
    return None


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


def read_text_file(path: str | os.PathLike[str], *, what: str,
                   error: type[Exception] = InputFileError) -> list[str]:
    """The lines of a text file (:func:`read_text_lines`), or this format's error.

    ``what``: the format expected, for the message (e.g. "an EC-Lab .mpt export");
    ``error``: the format's error class (default :class:`InputFileError`), raised naming
    the path when the file is missing or is a folder.
    """
    path = Path(path)
    try:
        return read_text_lines(path)
    except FileNotFoundError:
        raise error(f"{path}: no such file (expected {what})") from None
    except IsADirectoryError:
        raise error(f"{path}: is a folder, expected {what}") from None


_CELL_SEP = re.compile(r"[,;\s]+")


def read_numeric_table(path: str | os.PathLike[str], n_columns: int, *, what: str) -> np.ndarray:
    """The numeric rows of a small text table (comma, semicolon or whitespace separated) as
    a float array (n_rows, n_columns); the first ``n_columns`` cells of each row are used.

    Lines starting with ``#`` and lines whose cells do not all parse (headers) are skipped.
    A missing file, or fewer than two numeric rows, raises
    :class:`~operando.io.errors.InputFileError` naming the file and ``what`` it is for.
    """
    path = Path(path)
    lines = read_text_file(path, what=what)
    rows = []
    for line in lines:
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        cells = [c for c in _CELL_SEP.split(text) if c][:n_columns]
        if len(cells) == n_columns and all(is_float(c) for c in cells):
            rows.append([float(c) for c in cells])
    if len(rows) < 2:
        raise InputFileError(f"{path}: expected at least 2 rows of {n_columns} numbers ({what}), "
                             f"found {len(rows)}")
    return np.asarray(rows, dtype=float)
