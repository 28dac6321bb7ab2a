"""Readers (and a small writer) for XAS spectra stored as text.

Three layouts are recognised, all whitespace- (or comma-) separated columns of
numbers after a header:

* **XDI** (``# XDI/1.0 ...`` first line): ``# Namespace.tag: value`` metadata,
  ``# Column.N: name [units]`` column names (N from 1), ``# ///`` ending the
  metadata, free comments, ``#----`` and then an optional ``#`` column-label line.
  Athena/Demeter multicolumn exports (``.nor``, ``.xmu``) are usually XDI too.
* **Athena / Demeter multicolumn without XDI**: a ``#`` header whose last comment
  line before the data holds the column labels.
* **Plain columns**: any header of free text (e.g. XDAC ``fe.060``), the last
  header line carrying as many words as there are columns gives the labels,
  otherwise the columns are named ``col1``, ``col2``, ...

Column labels are kept verbatim (``LiFe(II)PO4``); energies are whatever the
file holds (normally eV). Nothing here normalises or interpolates.

``FILE:COLUMN`` specifications (``select_column``) name one column of one file,
e.g. ``FeLibNov2021.nor:LiFe(II)PO4``; COLUMN may also be a 1-based column index.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from operando.io.atomic import write_text_atomic
from operando.io.errors import InputFileError
from operando.io.text import read_text_file

__all__ = [
    "ENERGY_LABELS",
    "MissingColumnError",
    "SelectedColumn",
    "XasText",
    "XasTextError",
    "parse_column_spec",
    "read_xas_text",
    "select_column",
    "write_xdi",
]

#: Column labels recognised (case-insensitively) as the energy axis.
ENERGY_LABELS = ("energy", "energy_ev", "e", "ev", "energy(ev)", "mono_energy")

_COMMENT_CHARS = ("#", ";", "%", "!")
_XDI_COLUMN = re.compile(r"^column\.(\d+)$", re.IGNORECASE)
# ``key: value`` or ``key=value``; keys may hold ``( ) /`` as in SOLEIL/ROCK headers
# (``#Time from start (seconds)=65.0``, ``#Sample temperature (C)=nan``)
_META = re.compile(r"^\s*([A-Za-z][\w.\-()/ ]{0,60}?)\s*[:=]\s*(.*?)\s*$")
_SPLIT = re.compile(r"[\s,]+")


class XasTextError(InputFileError):
    """A text spectrum file could not be read as expected (the message names the file)."""


class MissingColumnError(XasTextError, KeyError):
    """A requested column is absent; the message lists the columns that exist."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class XasText:
    """One text spectrum file.

    ``columns`` maps each column label to its values (float64, one per data row,
    in file order); ``units`` holds units declared by XDI ``Column.N`` lines;
    ``metadata`` holds ``key: value`` / ``key= value`` header entries (XDI tags
    such as ``Element.symbol`` keep their dotted names); ``comments`` keeps the
    remaining header text lines without the comment character.
    """

    path: Path
    columns: dict[str, np.ndarray]
    metadata: dict[str, str] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)
    comments: list[str] = field(default_factory=list)
    format: str = "plain"  # "xdi" | "athena" | "plain"

    @property
    def labels(self) -> list[str]:
        return list(self.columns)

    @property
    def n_rows(self) -> int:
        return int(next(iter(self.columns.values())).size)

    @property
    def energy_label(self) -> str:
        """Label of the energy axis: the first column named like ``energy``, else column 1."""
        for label in self.columns:
            if label.strip().lower() in ENERGY_LABELS:
                return label
        return next(iter(self.columns))

    @property
    def energy(self) -> np.ndarray:
        """The energy axis (file units, normally eV)."""
        return self.columns[self.energy_label]

    def resolve(self, name: str | int) -> str:
        """The label of column ``name``: exact, then case-insensitive, then 1-based index.

        Raises :class:`MissingColumnError` naming the file and listing the labels.
        """
        key = str(name).strip()
        if key in self.columns:
            return key
        folded = {label.lower(): label for label in self.columns}
        if key.lower() in folded:
            return folded[key.lower()]
        if key.isdigit() and 1 <= int(key) <= len(self.columns):
            return self.labels[int(key) - 1]
        raise MissingColumnError(
            f"{self.path}: no column {key!r}; available columns: "
            + ", ".join(repr(c) for c in self.columns)
            + f" (or a 1-based index 1..{len(self.columns)})"
        )

    def column(self, name: str | int) -> np.ndarray:
        """Values of one column (see :meth:`resolve` for how ``name`` is matched)."""
        return self.columns[self.resolve(name)]

    def metadata_float(self, key: str) -> float | None:
        """A numeric header entry (first number in its value), or None when absent."""
        folded = {k.lower(): v for k, v in self.metadata.items()}
        value = folded.get(key.lower())
        if value is None:
            return None
        m = re.search(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?", value)
        return float(m.group()) if m else None


@dataclass(frozen=True)
class SelectedColumn:
    """One column chosen by a ``FILE:COLUMN`` spec, with the file's energy axis."""

    path: Path
    name: str
    energy: np.ndarray
    values: np.ndarray
    source: XasText

    @property
    def spec(self) -> str:
        return f"{self.path}:{self.name}"


def _is_comment(line: str) -> bool:
    return line.lstrip().startswith(_COMMENT_CHARS)


def _strip_comment(line: str) -> str:
    s = line.strip()
    while s and s[0] in _COMMENT_CHARS:
        s = s[1:]
    return s.strip()


def _numeric_row(line: str) -> list[float] | None:
    """The floats of a data line, or None when any token is not a number."""
    s = line.strip()
    if not s or _is_comment(s):
        return None
    tokens = [t for t in _SPLIT.split(s) if t]
    try:
        return [float(t.replace("D", "E").replace("d", "e")) for t in tokens]
    except ValueError:
        return None


def _dedupe(labels: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out: list[str] = []
    for label in labels:
        n = seen.get(label, 0) + 1
        seen[label] = n
        out.append(label if n == 1 else f"{label}_{n}")
    return out


def read_xas_text(path: str | os.PathLike[str]) -> XasText:
    """Read an XDI, Athena/Demeter multicolumn or plain column text file.

    Raises :class:`XasTextError` (naming the file) when the file is missing, holds
    no numeric rows, or its rows do not all have the same number of columns.
    """
    p = Path(path)
    lines = read_text_file(p, what="an XAS text file: XDI, .nor/.xmu, or plain columns",
                           error=XasTextError)
    rows = [_numeric_row(line) for line in lines]

    numeric_idx = [i for i, r in enumerate(rows) if r is not None]
    if not numeric_idx:
        raise XasTextError(
            f"{p}: no numeric data (expected rows of whitespace-separated numbers after the "
            f"header; found {len(lines)} line(s), none numeric)"
        )
    last = numeric_idx[-1]
    width = len(rows[last])  # type: ignore[arg-type]
    # walk back over the data block: numeric rows of the final width, blank lines
    start = last
    i = last - 1
    while i >= 0 and (not lines[i].strip() or (rows[i] is not None and len(rows[i]) == width)):
        if lines[i].strip():
            start = i
        i -= 1
    if i >= 0 and rows[i] is not None:
        raise XasTextError(
            f"{p}: line {i + 1} has {len(rows[i])} column(s) but the data below it has "  # type: ignore[arg-type]
            f"{width}; expected every data row to have the same number of columns"
        )
    for j in range(last + 1, len(lines)):
        if lines[j].strip() and not _is_comment(lines[j]):
            raise XasTextError(
                f"{p}: line {j + 1} is not numeric after the data block "
                f"({lines[j].strip()[:60]!r}); expected rows of {width} numbers"
            )
    header = lines[:start]
    n_header_numeric = sum(1 for r in rows[:start] if r is not None and len(r) == width)
    if n_header_numeric >= 3:
        raise XasTextError(
            f"{p}: the data block is interrupted at line {start} "
            f"({lines[start - 1].strip()[:60]!r}); expected one contiguous block of rows"
        )
    data = np.array([r for r in rows[start : last + 1] if r is not None], dtype=float)

    fmt, labels, units, metadata, comments = _parse_header(header, width)
    columns = {label: np.ascontiguousarray(data[:, k]) for k, label in enumerate(labels)}
    return XasText(
        path=p, columns=columns, metadata=metadata, units=units, comments=comments, format=fmt
    )


def _parse_header(
    header: list[str], width: int
) -> tuple[str, list[str], dict[str, str], dict[str, str], list[str]]:
    """Format, column labels (made unique), units (keyed by those labels), metadata and
    free comments from the header lines."""
    is_xdi = bool(header) and _strip_comment(header[0]).upper().startswith("XDI/")
    metadata: dict[str, str] = {}
    comments: list[str] = []
    xdi_names: dict[int, tuple[str, str]] = {}
    in_fields = is_xdi
    for k, line in enumerate(header):
        body = _strip_comment(line) if _is_comment(line) else line.strip()
        if not body:
            continue
        if k == 0 and is_xdi:
            metadata["XDI"] = body[4:].strip()
            continue
        if is_xdi and body.startswith("///"):
            in_fields = False
            continue
        if set(body) <= set("-=*_ "):
            in_fields = False if is_xdi else in_fields
            continue
        m = _META.match(body)
        if m and (in_fields or not is_xdi):
            key, value = m.group(1).strip(), m.group(2)
            cm = _XDI_COLUMN.match(key)
            if cm:
                parts = value.split()
                if parts:
                    xdi_names[int(cm.group(1))] = (parts[0], " ".join(parts[1:]))
            metadata[key] = value
        else:
            comments.append(body)

    label_line = _label_line(header, width)
    if xdi_names:
        labels = []
        for n in range(1, width + 1):
            if n in xdi_names:
                labels.append(xdi_names[n][0])
            elif label_line is not None:
                labels.append(label_line[n - 1])
            else:
                labels.append(f"col{n}")
    elif label_line is not None:
        labels = list(label_line)
    else:
        labels = [f"col{n}" for n in range(1, width + 1)]
    # deduplicate first, then key the units by column position, so a repeated label
    # cannot carry another column's unit
    labels = _dedupe(labels)
    units = {
        labels[n - 1]: unit for n, (_name, unit) in sorted(xdi_names.items())
        if unit and n <= width
    }
    if label_line is not None and comments and label_line == _split_labels(comments[-1]):
        comments = comments[:-1]
    fmt = (
        "xdi"
        if is_xdi
        else (
            "athena" if header and all(_is_comment(h) or not h.strip() for h in header) else "plain"
        )
    )
    return fmt, labels, units, metadata, comments


def _split_labels(body: str, width: int | None = None) -> list[str]:
    """Column labels of a header line: tab-separated when the line holds a tab and that
    gives ``width`` labels (labels may then contain spaces: ``shifted energy``), else
    split on whitespace and commas."""
    if "\t" in body:
        tabbed = [w.strip() for w in body.split("\t") if w.strip()]
        if width is None or len(tabbed) == width:
            return tabbed
    return [w for w in re.split(r"\s+|,", body) if w]


def _label_line(header: list[str], width: int) -> list[str] | None:
    """The last non-empty, non-rule header line, when it has exactly ``width`` labels
    (see :func:`_split_labels`)."""
    for line in reversed(header):
        body = _strip_comment(line) if _is_comment(line) else line.strip()
        if not body or set(body) <= set("-=*_ \t"):
            continue
        words = _split_labels(body, width)
        return words if len(words) == width else None
    return None


def parse_column_spec(spec: str | os.PathLike[str]) -> tuple[Path, str | None]:
    """Split ``FILE:COLUMN`` into (path, column); a bare existing file gives column None.

    The split is at the last ``:`` so that drive letters and ``:`` in directory
    names survive; when the whole string is an existing file it is taken as is.
    """
    s = os.fspath(spec)
    if Path(s).is_file() or ":" not in s:
        return Path(s), None
    file_part, column = s.rsplit(":", 1)
    if not file_part:
        raise XasTextError(f"{s!r}: expected FILE:COLUMN, found an empty file name")
    return Path(file_part), (column or None)


def select_column(path_spec: str | os.PathLike[str]) -> SelectedColumn:
    """One spectrum from ``FILE:COLUMN`` (e.g. ``FeLibNov2021.nor:LiFe(II)PO4``).

    COLUMN is matched exactly, then case-insensitively, then as a 1-based index.
    Without ``:COLUMN`` the file must hold exactly two columns (energy, value).
    Returns the column with the file's energy axis (see :attr:`XasText.energy`).
    """
    path, column = parse_column_spec(path_spec)
    if not path.is_file():
        raise XasTextError(
            f"{path}: no such file (from spec {os.fspath(path_spec)!r}; expected FILE:COLUMN)"
        )
    xt = read_xas_text(path)
    if column is None:
        others = [c for c in xt.columns if c != xt.energy_label]
        if len(others) != 1:
            raise MissingColumnError(
                f"{path}: holds {len(xt.columns)} columns, name one as FILE:COLUMN; available "
                "columns: " + ", ".join(repr(c) for c in xt.columns)
            )
        name = others[0]
    else:
        name = xt.resolve(column)
    return SelectedColumn(
        path=path, name=name, energy=xt.energy, values=xt.columns[name], source=xt
    )


def write_xdi(
    path: str | os.PathLike[str],
    columns: Mapping[str, np.ndarray],
    *,
    units: Mapping[str, str] | None = None,
    metadata: Mapping[str, str] | None = None,
    comments: list[str] | None = None,
) -> Path:
    """Write columns as an XDI/1.0 file (read back by :func:`read_xas_text`).

    Labels must not contain whitespace. Written to a temporary name, then renamed.
    """
    p = Path(path)
    labels = list(columns)
    if not labels:
        raise XasTextError(f"{p}: nothing to write (no columns)")
    bad = [c for c in labels if not c or re.search(r"\s", c)]
    if bad:
        raise XasTextError(f"{p}: column labels must be non-empty without spaces, found {bad}")
    arrays = [np.asarray(columns[c], dtype=float).ravel() for c in labels]
    sizes = {a.size for a in arrays}
    if len(sizes) != 1:
        found = ", ".join(f"{c}={a.size}" for c, a in zip(labels, arrays, strict=True))
        raise XasTextError(f"{p}: columns differ in length: {found}")
    units = dict(units or {})
    out = ["# XDI/1.0 operando"]
    for n, c in enumerate(labels, start=1):
        out.append(f"# Column.{n}: {c} {units.get(c, '')}".rstrip())
    for k, v in (metadata or {}).items():
        out.append(f"# {k}: {v}")
    out.append("# ///")
    out.extend(f"# {c}" for c in (comments or []))
    out.append("#----")
    out.append("# " + "  ".join(labels))
    table = np.column_stack(arrays)
    body = "\n".join(" ".join(f"{v:.10g}" for v in row) for row in table)
    write_text_atomic(p, "\n".join(out) + "\n" + body + "\n")
    return p
