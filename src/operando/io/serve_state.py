"""What the beamline service remembers between passes: one JSON file per beamtime.

``operando serve --once`` (a cron job, the scheduled Prefect sweep) starts afresh on every
pass; without a memory it would reduce a failing run again on every pass, and ask every
finished run's flow whether it is up to date. The file holds, per run config, what the run
looked like when it was last handled and what came of it. It is written atomically; a
file that cannot be read (damaged, from another version) is set aside with a warning and
the service starts without a memory: it only costs the passes it saves.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from operando.io.atomic import write_text_atomic

__all__ = ["STATE_VERSION", "read_serve_state", "write_serve_state"]

#: version of the file's layout: a file of another version is not read
STATE_VERSION = 1

log = logging.getLogger("operando.serve")


def read_serve_state(path: Path) -> dict[str, dict[str, Any]]:
    """The runs recorded in ``path`` (``{config path: record}``); empty when the file is
    absent, unreadable or of another layout (then logged, naming the file and why)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        log.warning("%s: the service's memory cannot be read (%s); starting without it",
                    path, exc.strerror or exc)
        return {}
    try:
        data = json.loads(text)
    except ValueError as exc:
        log.warning("%s: the service's memory is not valid JSON (%s); starting without it",
                    path, exc)
        return {}
    if not isinstance(data, dict) or data.get("version") != STATE_VERSION \
            or not isinstance(data.get("runs"), dict):
        found = data.get("version") if isinstance(data, dict) else type(data).__name__
        log.warning("%s: expected the service's memory of layout version %d, found %r; "
                    "starting without it", path, STATE_VERSION, found)
        return {}
    return {str(k): v for k, v in data["runs"].items() if isinstance(v, dict)}


def write_serve_state(path: Path, runs: dict[str, dict[str, Any]]) -> bool:
    """Write the records atomically; False (logged once per call) when the folder is not
    writable: the service goes on without a memory."""
    text = json.dumps({"version": STATE_VERSION, "runs": runs}, indent=1, sort_keys=True)
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, text + "\n")
    except OSError as exc:
        log.warning("%s: the service's memory cannot be written (%s); the next pass starts "
                    "without it", path, exc)
        return False
    return True
