"""Shared fixtures: the real-data folder and a simulated `small` run (made once per session)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# The tests read the run's own log (reduce.log) and the console, never the log lines a flow
# sends to Prefect's API; sending them costs ~10 % of a small flow's time. Set before
# Prefect is imported (a test or a command that needs them sets the variable itself).
os.environ.setdefault("PREFECT_LOGGING_TO_API_ENABLED", "false")
# Prefect's temporary server keeps every flow and task run in PREFECT_HOME's database; the
# user's (~/.prefect) grows with every session and each query slows with it (a 100 MB
# database made the suite ~15 % slower: 10 min 55 s against 9 min 26 s). The session gets
# its own, as a clean CI machine.
if "PREFECT_HOME" not in os.environ:
    import tempfile

    os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="operando-tests-prefect-")

from operando.io.shared_data import find_shared_data

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``; tests that need it skip with a reason when it is absent."""
    d = find_shared_data(REPO)
    if d is None:
        pytest.skip("real reference data (../shared/data) is not on this machine")
    return d


@pytest.fixture(scope="session")
def small_run(tmp_path_factory: pytest.TempPathFactory):
    """The `small` preset, seed 0, all streams: simulated once and shared (read-only)."""
    from operando.simulate.beamtime import simulate_beamtime

    return simulate_beamtime(tmp_path_factory.mktemp("small-seed0"), "small", seed=0)


@pytest.fixture(scope="session")
def small_reduced(small_run, tmp_path_factory: pytest.TempPathFactory):
    """The `small` run reduced once, every stream (in-process chunks), read-only for tests:
    ``(config, ReduceResult)``. Confocal SOC is also interpolated onto a 120 s grid."""
    from operando.config import load_config
    from pipelines.reduce import reduce_run

    cfg = load_config(small_run.run_config_path)
    out = tmp_path_factory.mktemp("reduced")
    cfg = cfg.model_copy(update={
        "output": cfg.output.model_copy(update={"directory": out, "overwrite": True}),
        "confocal": cfg.confocal.model_copy(update={"interpolate_step_s": 120.0})})
    return cfg, reduce_run(cfg, scheduler="none")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Prefect stops its temporary API server at interpreter exit and logs that through a
    handler bound to the stream pytest has already closed; do not print the resulting
    'Logging error' traceback (nothing is lost: it is the line 'Stopping temporary server')."""
    import logging

    logging.raiseExceptions = False
