"""The run report page (``report/index.html``): a Jinja2 template filled from plain records.

Pure: :func:`render_report` takes the page's content (:class:`ReportPage`) and returns the
HTML text; nothing is read from or written to disk here (the template ships with the
package; ``operando.io.report`` writes the page). The page is self-contained: the figures
are PNG files beside it, the products are linked by relative paths, no script, no font or
style sheet from the network. While the run is live (:attr:`ReportPage.refresh_s`) the page
reloads itself (``<meta http-equiv="refresh">``), so the figures follow the acquisition.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import jinja2

from operando.report.summary import Fact, QCItem, StreamSummary, Table

__all__ = ["Figure", "ProductRow", "ReportPage", "StreamSection", "render_report"]


@dataclass(frozen=True)
class Figure:
    """A figure of the page: ``src`` relative to index.html, a caption."""

    src: str
    caption: str


@dataclass(frozen=True)
class ProductRow:
    """One product: status (fresh / stale / incomplete / missing), why, size, coverage,
    link (relative to index.html)."""

    name: str
    status: str
    reasons: list[str]
    size: str
    coverage: str
    href: str | None


@dataclass
class StreamSection:
    """A stream's section: anchor id, title, its summary and figures."""

    id: str
    title: str
    summary: StreamSummary
    figures: list[Figure] = field(default_factory=list)


@dataclass
class ReportPage:
    """Everything the page shows."""

    run_name: str
    created_utc: str
    run_facts: list[Fact]
    config_yaml: str
    qc: list[QCItem]
    warnings: list[str]
    products: list[ProductRow]
    clock: list[Fact]
    clock_figures: list[Figure]
    protocol: Table | None
    protocol_figures: list[Figure]
    streams: list[StreamSection]
    scorecard: Table | None = None
    scorecard_failed: int = 0
    log_href: str | None = None
    #: a live run (products incomplete): what they cover so far, shown at the top; "" else
    live: str = ""
    #: seconds after which the browser reloads the page (a live run); None: never
    refresh_s: int | None = None


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("operando.report", "templates"),
        autoescape=jinja2.select_autoescape(("html", "j2")),
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def render_report(page: ReportPage, **extra: Any) -> str:
    """The HTML text of the run report."""
    return _environment().get_template("index.html.j2").render(page=page, **extra)
