"""The code base stays `ruff` clean (the rules are in pyproject.toml).

ruff runs as ``sys.executable -m ruff``: the one installed with the dev extras into the
interpreter running the tests, whichever ``bin/`` is (or is not) on PATH.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_ruff_clean() -> None:
    if importlib.util.find_spec("ruff") is None:
        pytest.fail(f"ruff is not installed for {sys.executable}; it is part of the dev "
                    "extras: pip install -e '.[dev]'")
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", "src", "tests", "pipelines",
                           "benchmarks"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
