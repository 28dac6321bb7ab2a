"""Prefect flows and deployments: orchestration only, no science.

Flows call the same library functions as the CLI, so a run reduced by
``operando`` on the command line and by a scheduled deployment gives identical
files. Prefect runs embedded by default (a temporary local server is started
and stopped by Prefect itself; nothing to set up), and only when something is to be done:
:func:`pipelines.cache.plan_run` decides first which products are fresh. Every work unit
runs through :class:`pipelines.runner.Runner` (cached in ``<run>/.cache/``).
"""

import logging
import os

# Embedded Prefect: give the temporary API server time to start on a busy 2-core machine
# (Prefect's default is 20 s), and do not try to reach the internet for telemetry.
# Set before prefect is imported; an explicit environment setting wins.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

# pyFAI imports silx, which warns at WARNING level that pyopencl is absent on every start;
# operando never uses OpenCL (CPU CSR integration), so that line is noise in flow logs.
logging.getLogger("silx.opencl.common").setLevel(logging.ERROR)
