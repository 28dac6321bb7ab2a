"""Prefect flows and deployments: orchestration only, no science.

Flows call the same library functions as the CLI, so a run reduced by
``operando`` on the command line and by a scheduled deployment gives identical
files. Prefect runs embedded by default (a temporary local server is started
and stopped by Prefect itself; nothing to set up).
"""
