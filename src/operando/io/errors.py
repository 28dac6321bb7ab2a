"""The error raised for bad input files.

Every reader raises a subclass of :class:`InputFileError` whose message names the file
(and the dataset path, line or column where it applies), what was expected and what was
found. It is a ``ValueError`` so callers that catch ``ValueError`` keep working.
"""

from __future__ import annotations

__all__ = ["InputFileError"]


class InputFileError(ValueError):
    """An input file is missing or does not have the layout or content expected."""
