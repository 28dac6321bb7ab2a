"""What a live run's report shows as incomplete: products written while the run is still
acquired carry ``complete = 0`` and what they hold (``frames_covered``, ``scans_covered``,
``points_covered``, ``samples_covered``); their figures and the page say so.

Pure: attributes and matplotlib figures in, text and figures out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from matplotlib.figure import Figure
from matplotlib.text import Text

from operando.cf import covered, is_incomplete

__all__ = ["LIVE_TAG", "is_live", "live_marker", "retitle"]

#: the word a live figure's title carries until what it covers is known: ``(live)``
LIVE_TAG = "live"


#: a product written during a live run: its ``complete`` attribute is 0 / false
is_live = is_incomplete


def live_marker(attrs: Mapping[str, Any]) -> str:
    """``"live: 12 of ? scans"`` for a product written during a live run (what it holds:
    its ``<items>_covered`` attributes; the run's total is not known yet), ``""`` for a
    complete one."""
    if not is_live(attrs):
        return ""
    parts = [f"{n} of ? {items}" for items, n in covered(attrs).items()]
    return f"{LIVE_TAG}: " + (", ".join(parts) if parts else "incomplete")


def retitle(fig: Figure, old: str, new: str) -> Figure:
    """``fig`` with ``old`` replaced by ``new`` in every text it shows (titles, suptitle)."""
    for text in fig.findobj(Text):
        s = text.get_text()
        if old in s:
            text.set_text(s.replace(old, new))
    return fig
