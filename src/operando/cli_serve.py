"""``operando serve BEAMTIME_DIR``: the beamline service (:mod:`pipelines.serve`), kept
beside :mod:`operando.cli` (which registers it) so the reduce commands stay short."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from pipelines.serve import Beamtime

console = Console()
# a message stays one line (a path in it is never broken); the terminal wraps it
err_console = Console(stderr=True, soft_wrap=True)

_STYLE = {"reduced": "green", "up to date": "green", "live": "cyan", "locked": "yellow",
          "failed": "red", "invalid": "red", "new": "dim"}


def status_table(bt: Beamtime) -> Table:
    """The runs of a beamtime: state, last change, products, failures."""
    table = Table(title=f"runs in {bt.root}")
    for col in ("run", "state", "last change (UTC)", "products", "failures"):
        table.add_column(col)
    for st in bt.runs.values():
        name, state, when, prods, fails = st.row()
        table.add_row(escape(name), f"[{_STYLE.get(state, '')}]{state}[/]", when,
                      escape(prods), escape(fails))
    return table


def serve(
    beamtime_dir: Annotated[Path, typer.Argument(help="The beamtime folder (one folder per "
                                                      "run, each with its run config).")],
    once: Annotated[bool, typer.Option(
        "--once", help="One pass over the runs, then exit (cron, CI); exit 1 when a run "
        "failed. Live runs are left for a later pass.")] = False,
    pattern: Annotated[list[str] | None, typer.Option(
        help="Glob of the run configs, relative to BEAMTIME_DIR (repeatable; default "
        "'*/run.yaml').")] = None,
    end_marker: Annotated[str, typer.Option(
        help="A file of this name in a run's folder ends the run.")] = "END",
    quiet: Annotated[float, typer.Option(
        help="Seconds without a change to a run's raw files after which the run has "
        "ended.")] = 60.0,
    scheduler: Annotated[str, typer.Option(
        help="Where chunks run: 'local', 'none' or a Dask scheduler address.")] = "local",
    lock_wait: Annotated[float, typer.Option(
        help="Seconds to wait for a run locked by another reducer before trying it again "
        "on a later pass.")] = 0.0,
    live: Annotated[bool, typer.Option(
        "--live/--no-live", help="Reduce a live run as its frames complete (products marked "
        "complete = false), not only when it ends.")] = True,
    prefect: Annotated[bool, typer.Option(
        "--prefect", help="Serve the Prefect deployments (pipelines/deploy.py: the reduce "
        "flow and the scheduled beamtime sweep) instead of watching the folder here.")] = False,
    cron: Annotated[str, typer.Option(
        help="--prefect: the cron schedule of the beamtime sweep.")] = "*/10 * * * *",
    verbose: Annotated[bool, typer.Option("--verbose", "-v",
                                          help="Show Prefect's and Dask's INFO lines.")] = False,
) -> None:
    """Reduce a beamtime's runs as they are acquired: every run config under BEAMTIME_DIR
    (default '*/run.yaml') is reduced through the cached flow when it is new or changed and
    its raw files have stopped growing (--quiet) or its END marker appeared; one lock per
    run; a failing run is retried on its next change. Prints a status table of the runs."""
    from operando.cli import _quiet

    _quiet(verbose)
    if not beamtime_dir.is_dir():
        err_console.print(f"serve: {beamtime_dir}: expected a beamtime folder, found none",
                          markup=False)
        raise typer.Exit(code=2)
    from pipelines.serve import DEFAULT_PATTERNS, Beamtime, ServeOptions

    opts = ServeOptions(patterns=tuple(pattern or DEFAULT_PATTERNS), end_marker=end_marker,
                        quiet_s=quiet, scheduler=scheduler, lock_wait_s=lock_wait,
                        live=live)
    if prefect:
        from pipelines.deploy import serve_deployments

        serve_deployments(beamtime_dir, opts, cron=cron)
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    serve_log = logging.getLogger("operando.serve")
    serve_log.addHandler(handler)
    serve_log.setLevel(logging.INFO)
    serve_log.propagate = False
    bt = Beamtime(beamtime_dir, opts, on_change=lambda b: console.print(status_table(b)))
    try:
        if once:
            if not bt.sweep():
                console.print(status_table(bt))
        else:
            console.print(f"serving {bt.root} ({', '.join(opts.patterns)}; end marker "
                          f"'{opts.end_marker}', quiet {opts.quiet_s:g} s); Ctrl-C stops")
            bt.serve()
    finally:
        serve_log.removeHandler(handler)
    if once and bt.failed:
        raise typer.Exit(code=1)
