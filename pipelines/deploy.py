"""Prefect deployments of the beamline service: runs, schedules and failures in the UI.

Two flows with JSON parameters (a deployment's parameters are stored by the server):

- ``operando-reduce-run`` (:func:`reduce_config`): one run config, reduced through
  :func:`pipelines.reduce.reduce_run` under the run's lock; fails (so the UI shows it) when a
  stream failed. Deployment ``reduce-run``: triggered by hand or by an automation with the
  config path.
- ``operando-beamtime-sweep`` (:func:`beamtime_sweep`): one pass of
  :class:`pipelines.serve.Beamtime` over a beamtime folder (what ``operando serve --once``
  does). Deployment ``beamtime-sweep``: on a cron schedule.

:func:`deployments` builds both (``flow.to_deployment``); :func:`serve_deployments` serves
them from this process (``prefect.serve``: ``operando serve --prefect``) — against the
server of ``PREFECT_API_URL``, or Prefect's temporary local one when none is set. For a
server with a work pool, ``prefect.yaml`` at the repository root declares the same two
deployments (``prefect deploy --all``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger

from pipelines.serve import DEFAULT_END_MARKER, DEFAULT_PATTERNS, Beamtime, ServeOptions

__all__ = ["DEFAULT_CRON", "beamtime_sweep", "deployments", "reduce_config",
           "serve_deployments"]

#: every ten minutes
DEFAULT_CRON = "*/10 * * * *"


@flow(name="operando-reduce-run", log_prints=True)
def reduce_config(config: str, only: list[str] | None = None, scheduler: str = "local",
                  lock_wait_s: float = 0.0) -> dict[str, str]:
    """Reduce one run (what is stale or missing) under its lock; stream → status. Raises
    when a stream failed or another reducer holds the lock (the flow run fails)."""
    from operando.config import load_config
    from pipelines.lock import run_lock
    from pipelines.reduce import reduce_run

    cfg = load_config(config)
    with run_lock(cfg, command="prefect operando-reduce-run").hold(lock_wait_s):
        res = reduce_run(cfg, only=only, scheduler=scheduler)
    return {s: label for s, (label, _) in res.status().items()}


@flow(name="operando-beamtime-sweep", log_prints=True)
def beamtime_sweep(beamtime_dir: str, patterns: list[str] | None = None,
                   end_marker: str = DEFAULT_END_MARKER, quiet_s: float = 60.0,
                   scheduler: str = "local") -> dict[str, str]:
    """One pass over a beamtime folder's runs (:meth:`pipelines.serve.Beamtime.sweep`): run
    → state. Fails (after every run was handled) when a run failed."""
    log = get_run_logger()
    opts = ServeOptions(patterns=tuple(patterns or DEFAULT_PATTERNS), end_marker=end_marker,
                        quiet_s=quiet_s, scheduler=scheduler)
    bt = Beamtime(Path(beamtime_dir), opts)
    bt.sweep()
    for st in bt.runs.values():
        name, state, when, prods, fails = st.row()
        log.info("%s: %s (last change %s) %s %s", name, state, when, prods, fails)
    if bt.failed:
        raise RuntimeError("runs failed: " + "; ".join(
            f"{st.name or st.config}: {st.reason}" for st in bt.failed))
    return {st.name or str(st.config): st.state for st in bt.runs.values()}


def deployments(beamtime_dir: Path | str, options: ServeOptions | None = None,
                cron: str = DEFAULT_CRON) -> list[Any]:
    """The two deployments (``RunnerDeployment``), for ``prefect.serve`` or to inspect:
    ``beamtime-sweep`` of ``beamtime_dir`` on ``cron``, and ``reduce-run`` (its
    ``config`` parameter given per run)."""
    opts = options or ServeOptions()
    sched = str(opts.scheduler)
    sweep = beamtime_sweep.to_deployment(
        name="beamtime-sweep", cron=cron,
        parameters={"beamtime_dir": str(Path(beamtime_dir).resolve()),
                    "patterns": list(opts.patterns), "end_marker": opts.end_marker,
                    "quiet_s": opts.quiet_s, "scheduler": sched},
        description="One pass of `operando serve --once` over the beamtime folder.",
        tags=["operando", "beamtime"])
    reduce = reduce_config.to_deployment(
        name="reduce-run", parameters={"scheduler": sched, "lock_wait_s": opts.lock_wait_s},
        description="Reduce one run config (what is stale or missing), under its lock.",
        tags=["operando"])
    return [sweep, reduce]


def serve_deployments(beamtime_dir: Path | str, options: ServeOptions | None = None,
                      cron: str = DEFAULT_CRON) -> None:
    """Serve both deployments from this process until interrupted (``prefect.serve``)."""
    from prefect import serve

    serve(*deployments(beamtime_dir, options, cron))
