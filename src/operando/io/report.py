"""Files of the run report: the page written atomically, the run log's warnings, sizes.

Only reads and writes; the page itself is made by :mod:`operando.report.page`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from operando.io.atomic import write_text_atomic
from operando.io.text import read_text_lines

__all__ = ["INDEX_NAME", "file_size", "read_json", "read_log_warnings", "write_report_page"]

#: the report page, in ``<product_dir>/report/``
INDEX_NAME = "index.html"

#: a line of the run log (``operando.io.cache.log_file_handler``'s format)
_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (?P<level>[A-Z]+) (?P<name>[\w.]+): "
                   r"(?P<msg>.*)$")
#: the first line of each reduce invocation (``pipelines.reduce.reduce_run``)
_START = re.compile(r"^reduce \S+ \(")


def read_log_warnings(path: str | Path) -> list[str]:
    """The WARNING and ERROR lines of the last reduce recorded in a run's ``reduce.log``
    (the log appends every run; earlier runs are not this product's). Empty when there is
    no log. Each line as ``LEVEL message`` (tracebacks left out)."""
    p = Path(path)
    if not p.is_file():
        return []
    out: list[str] = []
    for line in read_text_lines(p):
        m = _LINE.match(line)
        if m is None:
            continue
        if _START.match(m["msg"]):
            out = []
        elif m["level"] in ("WARNING", "ERROR", "CRITICAL"):
            out.append(f"{m['level']} {m['msg']}")
    return out


def read_json(path: str | Path) -> Any:
    """A JSON file (e.g. a simulated run's ``truth.json``)."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def file_size(path: str | Path) -> int | None:
    """Bytes of a file, or of every file in a folder (a Zarr store); None when absent."""
    p = Path(path)
    if p.is_file():
        return p.stat().st_size
    if p.is_dir():
        return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
    return None


def write_report_page(report_dir: str | Path, html: str) -> Path:
    """Write ``report_dir/index.html`` (temporary name, then rename)."""
    return write_text_atomic(Path(report_dir) / INDEX_NAME, html)
