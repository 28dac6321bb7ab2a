"""``operando`` command line: thin, calls flows and library functions."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import numpy as np
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from operando import __version__
from operando.config import ConfigError, RunConfig, json_schema, load_config
from operando.simulate.presets import PRESETS

if TYPE_CHECKING:
    from operando.simulate.beamtime import BeamtimeResult
    from operando.simulate.scorecard import Check
    from pipelines.reduce import ReduceResult

app = typer.Typer(
    name="operando",
    help="Reduce synchrotron operando battery data (XRD, XANES, confocal XRD, CV) against the "
    "electrochemistry.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
# a message stays one line (a path in it is never broken); the terminal wraps it
err_console = Console(stderr=True, soft_wrap=True)
# silx (through pyFAI) warns on every start that pyopencl is absent; operando does not use it
logging.getLogger("silx.opencl.common").setLevel(logging.ERROR)

PRESET_NAMES = tuple(PRESETS)  # small, lfp-1c, lfp-10c


def _version_callback(value: bool) -> None:
    if value:
        console.print(f"operando {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version_callback,
                                          is_eager=True, help="Print the version.")] = False,
) -> None:
    """operando: synchrotron operando battery data reduction."""


@app.command()
def validate(
    config: Annotated[Path, typer.Argument(help="Run config (YAML).")],
    check_files: Annotated[bool, typer.Option(
        "--check-files/--no-check-files", help="Check that every input file exists.")] = True,
) -> None:
    """Validate a run config; print it resolved (YAML) or print the problems and exit 1."""
    try:
        cfg = load_config(config, check_files=check_files)
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(code=1) from None
    typer.echo(cfg.to_yaml(), nl=False)


@app.command()
def schema(
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Write here (e.g. docs/config-schema.json) instead of stdout.")
    ] = None,
) -> None:
    """Print or write the JSON schema of the run config."""
    from operando.io.atomic import write_text_atomic

    text = json.dumps(json_schema(), indent=2) + "\n"
    if output is None:
        typer.echo(text, nl=False)
    else:
        write_text_atomic(output, text)
        console.print(f"wrote {output}")


def _simulate_with_progress(outdir: Path, preset: str, seed: int,
                            streams: list[str] | None, real_data: bool) -> BeamtimeResult:
    from operando.simulate.beamtime import STREAMS, simulate_beamtime

    chosen = tuple(streams) if streams else STREAMS
    steps = 1 + len(chosen) + (1 if "xrd" in chosen else 0)
    with _progress_bar() as bar:
        job = bar.add_task(f"simulating {preset}", total=steps)
        frames = bar.add_task("frames", total=None, visible=False)
        state = {"n": 0}

        def step(name: str) -> None:
            if state["n"]:
                bar.advance(job)
            state["n"] += 1
            bar.update(job, description=f"simulating {preset}: {name}")
            bar.update(frames, visible=False)

        def items(stream: str, done: int, total: int) -> None:
            bar.update(frames, description=f"  {stream} frames", completed=done, total=total,
                       visible=True)

        res = simulate_beamtime(outdir, preset, seed, streams=chosen,
                                data_dir="auto" if real_data else None, progress=step,
                                item_progress=items)
        bar.update(job, completed=steps, description=f"simulated {preset}")
    for note in res.notes:
        console.print(f"[yellow]note[/]: {note}")
    return res


def _files_table(res: BeamtimeResult) -> Table:
    table = Table(title=f"simulated run in {res.outdir}", show_lines=False)
    table.add_column("stream")
    table.add_column("role")
    table.add_column("file")
    table.add_column("size", justify="right")
    for stream, files in res.files.items():
        for role, rel in files.items():
            size = (res.outdir / rel).stat().st_size
            table.add_row(stream, role, rel, f"{size / 1e6:.2f} MB")
    for rel in ("truth.json", "run.yaml"):
        table.add_row("", "", rel, f"{(res.outdir / rel).stat().st_size / 1e6:.2f} MB")
    return table


@app.command()
def simulate(
    outdir: Annotated[Path, typer.Argument(help="Folder to write the synthetic run into.")],
    preset: Annotated[str, typer.Option(help=f"One of {', '.join(PRESET_NAMES)}.")] = "small",
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same run.")] = 0,
    stream: Annotated[list[str] | None, typer.Option(
        help="Only these X-ray/CV streams (repeatable): xrd, xanes, confocal, kinetics.")] = None,
    real_data: Annotated[bool, typer.Option(
        "--real-data/--no-real-data",
        help="Use the measured Fe K-edge standards in ../shared/data when present.")] = True,
    live: Annotated[bool, typer.Option(
        "--live", help="Acquire the run live: cycler rows, trigger pulses and detector frames "
        "(HDF5 SWMR, one flush per frame) appended at --speed × real time, then the files "
        "closed and an END marker written.")] = False,
    speed: Annotated[float, typer.Option(help="--live: times real time.")] = 60.0,
) -> None:
    """Write a synthetic operando beamtime with known ground truth (truth.json, run.yaml)."""
    if preset not in PRESET_NAMES:
        err_console.print(f"--preset: expected one of {', '.join(PRESET_NAMES)}, found {preset!r}")
        raise typer.Exit(code=2)
    if live:
        from operando.simulate.live import simulate_live

        res = simulate_live(outdir, preset, seed, speed=speed,
                            streams=tuple(stream) if stream else None)
        console.print(f"live run written (closed): {res.run_config_path}", markup=False)
        return
    try:
        res = _simulate_with_progress(outdir, preset, seed, stream, real_data)
    except ValueError as exc:
        err_console.print(str(exc), markup=False)
        raise typer.Exit(code=2) from None
    console.print(_files_table(res))
    console.print(f"ground truth: {res.truth_path}\nrun config:   {res.run_config_path}")


@app.command()
def demo(
    workdir: Annotated[Path, typer.Option(help="Where the raw run and products go.")] = Path(
        "operando-demo"),
    preset: Annotated[str, typer.Option(help=f"One of {', '.join(PRESET_NAMES)}.")] = "lfp-1c",
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    scheduler: Annotated[str, typer.Option(
        help="Where XRD chunks run: 'local' (Dask LocalCluster), 'none' (this process) or a "
        "scheduler address.")] = "local",
    verbose: Annotated[bool, typer.Option("--verbose", "-v",
                                          help="Show Prefect's and Dask's INFO lines.")] = False,
) -> None:
    """Simulate a beamtime and reduce it end to end (Prefect embedded; no server to start)."""
    _quiet(verbose)
    if preset not in PRESET_NAMES:
        err_console.print(f"--preset: expected one of {', '.join(PRESET_NAMES)}, found {preset!r}")
        raise typer.Exit(code=2)
    from pipelines.demo import demo_flow

    console.rule(f"operando demo: preset {preset}, seed {seed}")
    with _progress_bar() as bar:
        progress = _stream_progress(bar)
        out = demo_flow(workdir, preset=preset, seed=seed, scheduler=scheduler,
                        progress=progress)
    res, cfg, segs, reduced = (out["simulation"], out["config"], out["segments"],
                               out["reduced"])
    console.print(_files_table(res))

    table = Table(title="electrochemistry read back from " + str(cfg.echem.files[0]))
    for col in ("#", "segment", "start (s)", "duration (s)", "mean I (mA)", "|Q| (mAh)",
                "E start → end (V)"):
        table.add_column(col, justify="right")
    for s in segs:
        table.add_row(str(s.index), s.kind, f"{s.start_s:.0f}", f"{s.duration_s:.0f}",
                      f"{s.mean_current_A * 1e3:+.4f}", f"{s.charge_mAh:.4f}",
                      f"{s.v_start_V:.3f} → {s.v_end_V:.3f}")
    console.print(table)
    _print_reduce_result(reduced)
    console.print(_scorecard_table(out["scorecard"]))
    console.print(
        f"run config (validated): {res.run_config_path}\n"
        f"ground truth:           {res.truth_path}\n"
        f"products:               {cfg.product_dir}"
    )
    _print_report_path(reduced.report)


def _print_report_path(path: Path | None) -> None:
    if path is not None:
        console.print(f"run report:             [bold]{path.resolve()}[/]", soft_wrap=True)
        console.print(f"                        {path.resolve().as_uri()}", style="dim",
                      soft_wrap=True)


def _scorecard_table(rows: list[Check]) -> Table:
    table = Table(title="recovered vs the simulator's ground truth (tolerances: the issues' "
                  "limits, set for the lfp presets; `small` is sized for speed)")
    for col in ("product", "quantity", "truth", "recovered", "error", "tolerance", ""):
        table.add_column(col, justify="left" if col in ("product", "quantity") else "right")
    for r in rows:
        table.add_row(r.product, r.quantity, r.truth, r.recovered, f"{r.error:.3g} {r.unit}",
                      f"{r.tolerance:g} {r.unit}",
                      "[green]ok[/]" if r.ok else "[red]outside[/]")
    return table


# --------------------------------------------------------------------------- reduce


class _RateColumn(ProgressColumn):
    """Items per second of a task (``frames/s``: the task's ``unit`` field)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        if speed is None and task.finished and (task.elapsed or 0) > 0.5:
            # counted from the first report (the task starts when the first unit is done)
            speed = (task.completed - task.fields.get("first", 0)) / task.elapsed or None
        unit = task.fields.get("unit", "frames")
        return Text("" if speed is None else f"{speed:,.1f} {unit}/s", style="cyan")


def _progress_bar() -> Progress:
    return Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(),
                    MofNCompleteColumn(), _RateColumn(), TimeElapsedColumn(),
                    TimeRemainingColumn(), console=console, transient=False)


#: what a stream's progress counts (the rate column: frames/s, scans/s, …)
_UNITS = {"xanes": "steps", "confocal": "points", "kinetics": "units"}


def _stream_progress(bar: Progress) -> Callable[[str, int, int], None]:
    """A flow progress callback: one bar per stream, ``(stream, done, total)`` frames."""
    tasks: dict[str, TaskID] = {}

    def progress(stream: str, done: int, total: int) -> None:
        if stream not in tasks:
            tasks[stream] = bar.add_task(f"reducing {stream}", total=total, first=done,
                                         unit=_UNITS.get(stream.split()[0], "frames"))
        bar.update(tasks[stream], completed=done, total=total)

    return progress


def _quiet(verbose: bool) -> None:
    """Dask's and Prefect's INFO lines off unless ``verbose`` (set before either is
    imported; an explicit environment setting wins)."""
    import os
    import warnings

    level = "INFO" if verbose else "WARNING"
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", level)
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", level.lower())
    logging.getLogger("distributed").setLevel(level)
    if not verbose:  # e.g. "Port 8787 is already in use": the dashboard is not used
        warnings.filterwarnings("ignore", category=UserWarning, module="distributed")


def _load(config: Path) -> RunConfig:
    try:
        return load_config(config)
    except ConfigError as exc:
        err_console.print(str(exc), markup=False)
        raise typer.Exit(code=1) from None


@app.command()
def reduce(
    ctx: typer.Context,
    config: Annotated[Path, typer.Argument(help="Run config (YAML).")],
    only: Annotated[list[str] | None, typer.Option(
        help="Only these products (repeatable): echem, xrd, peaks, confocal, xanes, kinetics. "
        "'peaks' reads an existing xrd.nc, or reduces the XRD first.")] = None,
    scheduler: Annotated[str, typer.Option(
        help="Where chunks run: 'local' (a Dask LocalCluster of worker processes), 'none' "
        "(in this process), or a Dask scheduler address (tcp://host:8786).")] = "local",
    cluster: Annotated[Path | None, typer.Option(
        help="Run the chunks on a facility cluster through dask-jobqueue: a YAML file in its "
        "own terms ('slurm: {cores: 8, memory: 32GB, queue: ..., walltime: ...}' or "
        "'jobqueue: {slurm: {...}}', plus 'scale: {jobs: 4}'); replaces --scheduler.")] = None,
    overwrite: Annotated[bool | None, typer.Option(
        "--overwrite/--keep", help="Recompute every product / keep stale products with a "
        "warning (default: recompute what is stale or missing, every product when the "
        "config's output.overwrite is true).", show_default=False)] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v",
                                          help="Show Prefect's and Dask's INFO lines.")] = False,
    wait: Annotated[float, typer.Option(
        help="Seconds to wait for the run's lock when another reducer (reduce or serve) "
        "holds it; then exit 1 naming the holder (pid, host, since).")] = 0.0,
    follow: Annotated[bool, typer.Option(
        "--follow", help="A run still being acquired: reduce as frames complete (products "
        "marked complete = false) until the END marker appears or nothing changed for "
        "--quiet s, then reduce it whole.")] = False,
    quiet: Annotated[float, typer.Option(help="--follow: seconds without a change that "
                                              "end the run.")] = 60.0,
) -> None:
    """Reduce a run: echem.nc, sync, xrd.nc, peaks.nc, confocal.nc, xanes.nc, kinetics.nc
    (+ report figures) in <output.directory>/<run>/. Products already up to date are left
    alone (see `operando status`); finished work units are reused from <run>/.cache/."""
    _quiet(verbose)
    from pipelines.cache import plan_run

    cfg = _load(config)
    ctx.call_on_close(_hold_run_lock(cfg, wait, "operando reduce").release)
    where: object = scheduler  # an address, or a dask-jobqueue ClusterSpec
    if cluster is not None:
        from pipelines.cluster import load_cluster_spec

        if scheduler != "local":
            err_console.print("reduce: give --cluster or --scheduler, not both", markup=False)
            raise typer.Exit(code=2)
        try:
            where = load_cluster_spec(cluster)
        except ValueError as exc:
            err_console.print(f"reduce: {exc}", markup=False)
            raise typer.Exit(code=2) from None
    if follow:
        from pipelines.follow import FollowOptions, follow_run

        res = follow_run(cfg, config.resolve().parent, FollowOptions(
            quiet_s=quiet, scheduler=where), on_pass=lambda n, r: console.print(
                f"live: {n} frames reduced ({', '.join(r.status())})", markup=False))
        _print_reduce_result(res)
        raise typer.Exit(code=1 if res.failed else 0)
    mode = ("overwrite" if overwrite or (overwrite is None and cfg.output.overwrite)
            else "keep" if overwrite is False else "stale")
    try:
        plan = plan_run(cfg, only, mode)
    except ValueError as exc:
        err_console.print(f"reduce: {exc}", markup=False)
        raise typer.Exit(code=2) from None
    for name, why in plan.kept.items():
        err_console.print(f"warning: {name}: stale, kept (--keep): {why}", markup=False)
    if plan.nothing_to_do:  # decided here: neither Prefect nor Dask is imported or started
        table = Table(title=f"products in {cfg.product_dir}: nothing to do")
        table.add_column("product")
        table.add_column("status")
        for name, why in plan.kept.items():
            table.add_row(name, f"[yellow]kept (stale): {why}[/]")
        for name in plan.fresh:
            table.add_row(name, "fresh")
        console.print(table)
        return
    from pipelines.reduce import reduce_run

    with _progress_bar() as bar:
        progress = _stream_progress(bar)
        try:
            res = reduce_run(cfg, only=only, scheduler=where, overwrite=overwrite,
                             progress=progress, raise_on_failure=False)
        except (ValueError, OSError) as exc:
            err_console.print(f"reduce failed: {exc}", markup=False)
            raise typer.Exit(code=1) from None
    _print_reduce_result(res)
    _print_report_path(res.report)
    if res.failed:
        for stream, why in res.failed.items():
            err_console.print(f"{stream} failed: {why}", markup=False)
        err_console.print(f"traceback(s) in {res.log_file}", markup=False)
        raise typer.Exit(code=1)


def _hold_run_lock(cfg: RunConfig, wait: float, command: str) -> object:
    """The run's lock (pipelines.lock), held; exit 1 naming the holder when it is taken."""
    from pipelines.lock import LockHeld, run_lock

    lock = run_lock(cfg, command=command)
    try:
        lock.acquire(wait)
    except LockHeld as exc:
        err_console.print(f"reduce: {exc}", markup=False)
        raise typer.Exit(code=1) from None
    if lock.taken_over is not None:
        err_console.print(f"warning: stale lock of {lock.taken_over.describe()} taken over",
                          markup=False)
    return lock


_STATUS_STYLE = {"written": "green", "fresh": "green", "kept (stale)": "yellow",
                 "failed": "red", "skipped": "dim"}


def _print_reduce_result(res: ReduceResult) -> None:
    table = Table(title=f"products in {res.product_dir}")
    table.add_column("product")
    table.add_column("status")
    table.add_column("file / reason")
    table.add_column("size", justify="right")
    for name, (label, why) in res.status().items():
        style = _STATUS_STYLE.get(label, "")
        path = res.products.get(name)
        size = f"{path.stat().st_size / 1e6:.2f} MB" if path is not None and path.is_file() \
            else ""
        table.add_row(name, f"[{style}]{label}[/]", escape(str(path) if path else why), size)
    console.print(table)
    if res.clock is not None:
        c = res.clock
        console.print(
            f"clock ({c.method}): offset {c.offset_s:.4f} s ± {c.offset_stderr_s:.4f}, drift "
            f"{c.drift_ppm:.2f} ± {c.drift_stderr_ppm:.2f} ppm, RMS residual "
            f"{c.rms_residual_s * 1e3:.2f} ms (max {c.max_abs_residual_s * 1e3:.2f} ms), "
            f"{c.n_matched} pulses matched, {len(c.unmatched_sent)} missing, "
            f"{len(c.unmatched_recorded)} spurious")
    for note in res.warnings:
        console.print(f"[yellow]warning:[/] {escape(note)}")
    for f in res.figures:
        console.print(f"figure: {f}")
    if res.units:
        console.print("work units: " + ", ".join(
            f"{s} {u.get('computed', 0)} computed / {u.get('cached', 0)} cached"
            for s, u in res.units.items()))


@app.command()
def report(
    target: Annotated[Path, typer.Argument(help="A run's product folder "
                                                "(<output.directory>/<run>) or its run config "
                                                "(YAML).")],
) -> None:
    """Write the run report <run>/report/index.html: QC first, then the run, every product
    (fresh / stale / incomplete), the clock and each stream's key numbers and figures."""
    from pipelines.report import write_report

    try:
        path = write_report(target)
    except (ConfigError, OSError, ValueError) as exc:
        err_console.print(f"report: {exc}", markup=False)
        raise typer.Exit(code=1) from None
    console.print(f"wrote {path.resolve()}", markup=False)


@app.command()
def status(
    config: Annotated[Path, typer.Argument(help="Run config (YAML).")],
    only: Annotated[list[str] | None, typer.Option(
        help="Only these products (repeatable).")] = None,
) -> None:
    """Every product of a run as fresh / stale / missing / incomplete, with the reason
    (which input file or config key changed). Starts nothing; reads only attributes."""
    from pipelines.cache import run_status

    cfg = _load(config)
    try:
        states = run_status(cfg, only)
    except ValueError as exc:
        err_console.print(f"status: {exc}", markup=False)
        raise typer.Exit(code=2) from None
    style = {"fresh": "green", "stale": "yellow", "missing": "red", "incomplete": "red"}
    table = Table(title=f"products in {cfg.product_dir}")
    table.add_column("product")
    table.add_column("status")
    table.add_column("reason")
    for st in states:
        table.add_row(st.stream, f"[{style[st.status]}]{st.status}[/]",
                      escape("\n".join(st.reasons[:8]) + (
                          f"\n… {len(st.reasons) - 8} more" if len(st.reasons) > 8 else "")))
    console.print(table)


@app.command()
def clean(
    target: Annotated[Path, typer.Argument(help="A run config (YAML) or a run's product "
                                                "folder (<output.directory>/<run>).")],
    all_: Annotated[bool, typer.Option("--all", help="Remove the products, report/ and "
                                                     "reduce.log too (nothing else).")] = False,
) -> None:
    """Remove a run's work-unit cache (<run>/.cache/); the products stay unless --all."""
    from pipelines.cache import clean_run

    product_dir = _load(target).product_dir if target.is_file() else target
    if not product_dir.is_dir():
        err_console.print(f"clean: {product_dir}: expected a run's product folder, found none",
                          markup=False)
        raise typer.Exit(code=2)
    removed = clean_run(product_dir, products=all_)
    console.print("removed " + (", ".join(str(p) for p in removed) if removed else
                                f"nothing (no cache in {product_dir})"), markup=False)


# --------------------------------------------------------------------------- integrate


@app.command()
def integrate(
    inputs: Annotated[list[str], typer.Argument(
        help="Image file(s) or glob (EDF, CBF, TIFF, …), or HDF5/NeXus/Eiger master "
        "(file.h5 or file.h5::/path).")],
    poni: Annotated[Path, typer.Option(help="pyFAI PONI geometry file.")],
    mask: Annotated[str | None, typer.Option(help="Mask image (1 = masked), fabio or "
                                             "file.h5::/path.")] = None,
    dark: Annotated[str | None, typer.Option(help="Dark image.")] = None,
    flat: Annotated[str | None, typer.Option(help="Flat-field image.")] = None,
    unit: Annotated[str, typer.Option(help="q_A^-1, 2th_deg or d_A.")] = "q_A^-1",
    npt: Annotated[int, typer.Option(help="Number of radial bins.")] = 2000,
    radial_range: Annotated[tuple[float, float] | None, typer.Option(
        help="MIN MAX in the unit.")] = None,
    error_model: Annotated[str, typer.Option(help="poisson, azimuthal or none.")] = "poisson",
    polarization: Annotated[float | None, typer.Option(
        help="Polarization factor (-1..1).")] = 0.99,
    dataset: Annotated[str | None, typer.Option(
        help="HDF5 path of the frame stack (found automatically when absent).")] = None,
    flip_ud: Annotated[bool, typer.Option(
        "--flip-ud", help="Flip images vertically before integrating (TIFFs stored "
        "bottom-up, e.g. Dioptas test data).")] = False,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="out.xy (text; one file per frame when several) or out.nc "
        "(all frames). Default: <input stem>.xy beside the input.")] = None,
) -> None:
    """Azimuthally integrate one file (or a glob) like pyFAI-integrate."""

    from operando.io.product_stream import stream_product
    from operando.io.xrd.frames import open_frames
    from operando.io.xrd.geometry import poni_frame_shape
    from operando.io.xrd.patterns import write_xy
    from operando.xrd.integrate import IntegrationOptions
    from operando.xrd.product import FRAME_DIM
    from operando.xrd.units import RADIAL_AXES
    from pipelines.xrd import (
        IntegratorSetup,
        build_xrd_product,
        chunk_rows,
        describe_integrator,
        integrate_frames,
        xrd_placeholders,
    )

    if unit not in RADIAL_AXES:
        err_console.print(f"--unit: expected q_A^-1, 2th_deg or d_A, found {unit!r}")
        raise typer.Exit(code=2)
    if error_model not in ("poisson", "azimuthal", "none"):
        err_console.print(f"--error-model: expected poisson, azimuthal or none, found "
                          f"{error_model!r}")
        raise typer.Exit(code=2)
    try:
        source = open_frames(inputs, dataset=dataset, frame_shape=poni_frame_shape(poni))
        opts = IntegrationOptions(unit=unit, npt=npt, radial_range=radial_range,
                                  error_model=error_model, polarization_factor=polarization)
        setup = IntegratorSetup(poni=poni, mask=_path(mask), dark=_path(dark),
                                flat=_path(flat), frame_shape=tuple(source.frame_shape),
                                saturation_value=source.saturation_value, options=opts,
                                flip_ud=flip_ud)
        integ = describe_integrator(setup)
        first = source.inputs[0]
        out = output or first.with_suffix(".xy")
        with _progress_bar() as bar:
            job = bar.add_task("integrating frames", total=source.n_frames)
            chunks = integrate_frames(
                source, setup, progress=lambda d, t: bar.update(job, completed=d, total=t))
            if out.suffix == ".nc":  # each chunk written as it finishes
                prod = build_xrd_product(source, source.metadata(), setup, integ,
                                         **xrd_placeholders(source.n_frames, integ))
                with stream_product(prod.dataset, out, dim=FRAME_DIM, product="xrd",
                                    inputs=prod.inputs, extra_attrs=prod.attrs) as nc:
                    for c in chunks:
                        nc.write(c.start, c.stop, chunk_rows(c))
                written = [out]
            else:
                names = ([out] if source.n_frames == 1 else
                         [out.with_name(f"{out.stem}_{k:04d}{out.suffix}")
                          for k in range(source.n_frames)])
                header = {"source": str(first), "poni": str(poni), "unit": unit,
                          "error_model": error_model, "mask_checksum": integ.mask_checksum}
                written = [write_xy(names[c.start + i], integ.radial, c.intensity[i],
                                    c.sigma[i],
                                    radial_label=f"{integ.radial_name}_{integ.radial_units}",
                                    header={**header, "frame": c.start + i})
                           for c in chunks for i in range(c.stop - c.start)]
    except (ValueError, OSError) as exc:
        err_console.print(str(exc), markup=False)
        raise typer.Exit(code=1) from None
    console.print(f"{source.n_frames} frame(s) of {source.frame_shape} → "
                  f"{written[0]}{f' … ({len(written)} files)' if len(written) > 1 else ''}")


def _path(value: str | None) -> Path | None:
    return None if value is None else Path(value)


# --------------------------------------------------------------------------- lcf


@app.command()
def lcf(
    spectra: Annotated[list[str], typer.Argument(
        help="Spectra to fit: FILE:COLUMN (Athena .nor / XDI multicolumn; COLUMN a label or "
        "1-based index) or a two-column FILE (energy, mu).")],
    standards: Annotated[list[str], typer.Option(
        "--standards", help="Standards, FILE:COLUMN or two-column FILE: several after one "
        "--standards (give the spectra before it), or the option repeated.")],
    emin: Annotated[float, typer.Option(
        help="Fit window start, eV RELATIVE TO E0 (the median derivative-maximum E0 of the "
        "spectra) unless --absolute.")] = -20.0,
    emax: Annotated[float, typer.Option(
        help="Fit window end, eV relative to E0 unless --absolute.")] = 60.0,
    absolute: Annotated[bool, typer.Option(
        "--absolute", help="--emin/--emax are absolute energies (eV).")] = False,
    sum_to_one: Annotated[bool, typer.Option(
        "--sum-to-one/--no-sum-to-one", help="Weights sum to 1 (default) or are free.")] = True,
    normalize_inputs: Annotated[bool, typer.Option(
        "--normalize", help="Normalise spectra and standards first (Larch pre_edge defaults); "
        "default: the columns are already normalised mu.")] = False,
    combinations: Annotated[int | None, typer.Option(
        "--combinations", min=1, help="Also fit every subset of 1..K standards and print them "
        "ranked by reduced χ² (Larch fit-all), with weights and R-factor.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Linear-combination fit of XANES spectra with standards (weights >= 0, batched).

    The window takes in the grid points at or below its ends, as Larch does. A spectrum
    clearly not on the standards' scale (edge step outside 0.5-2, or R-factor > 0.05) is
    flagged, warned about on stderr, and the exit code is 1."""
    from operando.io.xas.text import select_column
    from operando.xanes.series import fit_spectra, prepare_curve

    if len(spectra) < 1 or len(standards) < 1:
        err_console.print("lcf: expected at least one SPECTRUM and one --standards")
        raise typer.Exit(code=2)
    if not emin < emax:
        err_console.print(f"--emin/--emax: expected emin < emax, found {emin} >= {emax}")
        raise typer.Exit(code=2)
    try:
        cols = [select_column(s) for s in spectra]
        stds = [select_column(s) for s in standards]
        curves = [prepare_curve(c.energy, c.values, normalize_first=normalize_inputs,
                                what=c.spec) for c in cols]
        std_map: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for c in stds:
            name = c.name if sum(x.name == c.name for x in stds) == 1 \
                else f"{c.path.name}:{c.name}"
            if name in std_map:
                raise ValueError(f"--standards: {name} given twice")
            std_map[name] = prepare_curve(c.energy, c.values, normalize_first=normalize_inputs,
                                          what=c.spec)
        fitted = fit_spectra(curves, std_map, fit_range_eV=(emin, emax), absolute=absolute,
                             sum_to_one=sum_to_one, max_components=combinations)
        res, e0s = fitted.lcf, fitted.e0
    except (ValueError, OSError) as exc:
        err_console.print(str(exc), markup=False)
        raise typer.Exit(code=1) from None
    def num(v: float) -> float | None:  # JSON has no NaN: a failed fit's numbers are null
        return float(v) if np.isfinite(v) else None

    rows = []
    for i, c in enumerate(cols):
        ok = bool(res.ok[i])
        rows.append({
            "spectrum": c.spec, "e0_eV": num(e0s[i]), "ok": ok,
            "reason": "" if ok else "spectrum does not cover the fit window (or too few "
                      "finite points in it)",
            "weights": {n: num(w) for n, w in zip(res.names, res.weights[i], strict=True)},
            "stderr": {n: num(w) for n, w in zip(res.names, res.stderr[i], strict=True)},
            "sum": num(np.nansum(res.weights[i])) if ok else None,
            "r_factor": num(res.r_factor[i]), "redchi": num(res.redchi[i]),
            "edge_step": num(fitted.edge_step[i]), "flags": fitted.flags[i],
        })
        if fitted.combinations is not None:
            rows[-1]["combinations"] = _ranked_combinations(fitted.combinations, i, num)
    for r in rows:
        if r["flags"]:
            err_console.print(
                f"warning: {r['spectrum']}: not on the standards' scale ({', '.join(r['flags'])}:"
                f" edge step {fmt_or(r['edge_step'], '.3g')}, R-factor "
                f"{fmt_or(r['r_factor'], '.3g')}); the weights mean nothing: normalise it "
                "(--normalize) or give normalised mu", markup=False)
    flagged = any(r["flags"] for r in rows)
    if as_json:
        print(json.dumps({"emin_eV": res.emin, "emax_eV": res.emax, "n_points": res.n_points,
                          "sum_to_one": sum_to_one, "fits": rows}, indent=1))
        if flagged:
            raise typer.Exit(code=1)
        return
    table = Table(title=f"LCF {res.emin:.1f}–{res.emax:.1f} eV ({res.n_points} points)")
    table.add_column("spectrum")
    for n in res.names:
        table.add_column(n, justify="right")
    for col in ("sum", "R-factor", "red. χ²"):
        table.add_column(col, justify="right")
    def fmt(v: float | None, spec: str) -> str:
        return "–" if v is None else format(v, spec)

    for r in rows:
        if not r["ok"]:
            table.add_row(r["spectrum"], *["–"] * len(res.names), "–", "–",
                          f"[red]not fitted: {r['reason']}[/]")
            continue
        table.add_row(r["spectrum"], *[f"{fmt(r['weights'][n], '.4f')} ± "
                                      f"{fmt(r['stderr'][n], '.4f')}" for n in res.names],
                      fmt(r["sum"], ".4f"), fmt(r["r_factor"], ".2e"),
                      fmt(r["redchi"], ".2e"))
    console.print(table)
    for r in rows:
        if "combinations" in r:
            console.print(_combinations_table(r["spectrum"], r["combinations"]))
    if flagged:
        raise typer.Exit(code=1)


def fmt_or(v: float | None, spec: str) -> str:
    """``v`` formatted, or "–" for None (a JSON null)."""
    return "–" if v is None else format(v, spec)


def _ranked_combinations(combos: object, i: int, num: Callable[[float], float | None]
                         ) -> list[dict[str, object]]:
    """Every subset of the combinatorial LCF for spectrum ``i``, best (rank 1) first."""
    c = combos  # CombinationResult
    order = np.argsort(c.rank[:, i], kind="stable")  # type: ignore[attr-defined]
    out = []
    for k in order:
        f = c.fits[k]  # type: ignore[attr-defined]
        out.append({"rank": int(c.rank[k, i]) + 1,  # type: ignore[attr-defined]
                    "components": list(c.subsets[k]),  # type: ignore[attr-defined]
                    "weights": {n: num(w) for n, w in zip(f.names, f.weights[i], strict=True)},
                    "stderr": {n: num(w) for n, w in zip(f.names, f.stderr[i], strict=True)},
                    "r_factor": num(f.r_factor[i]), "redchi": num(f.redchi[i])})
    return out


def _combinations_table(spectrum: str, combos: list[dict[str, object]]) -> Table:
    table = Table(title=f"{spectrum}: every combination, ranked by reduced χ²")
    for col in ("rank", "standards", "weights", "R-factor", "red. χ²"):
        table.add_column(col, justify="right" if col != "standards" else "left")
    for c in combos:
        w = c["weights"]
        assert isinstance(w, dict)
        table.add_row(str(c["rank"]), "+".join(c["components"]),  # type: ignore[arg-type]
                      ", ".join(f"{fmt_or(v, '.4f')}" for v in w.values()),
                      fmt_or(c["r_factor"], ".2e"),  # type: ignore[arg-type]
                      fmt_or(c["redchi"], ".2e"))  # type: ignore[arg-type]
    return table


# --------------------------------------------------------------------------- echem


@app.command()
def echem(
    files: Annotated[list[Path], typer.Argument(help="Cycler file(s) of one run (.mpt, .mpr, "
                                                 ".nda/.ndax; CSV needs a run config's column "
                                                 "map); a continuation is a second file.")],
    tz: Annotated[str, typer.Option(
        "--tz", help="IANA timezone of the cycler PC clock, e.g. Europe/Paris (required: a "
        "naive local time is never guessed).")],
    file_format: Annotated[str, typer.Option(
        "--format", help="auto, biologic-mpt, biologic-mpr, neware.")] = "auto",
    mass_mg: Annotated[float | None, typer.Option(
        "--mass-mg", help="Active mass (mg): adds theoretical capacity and C-rates.")] = None,
    molar_mass: Annotated[float, typer.Option(
        "--molar-mass", help="Molar mass, g/mol (LiFePO4 157.757).")] = 157.757,
    plot: Annotated[Path | None, typer.Option(help="Write V(t), I(t) to this PNG.")] = None,
) -> None:
    """Summarise a cycler log: segments, cycles, capacities, C-rates; optionally plot it."""
    from operando.echem.faraday import (
        c_rate_per_segment,
        theoretical_capacity_C,
        theoretical_capacity_mAh_g,
    )
    from operando.echem.segments import add_segments
    from operando.echem.summary import segments
    from operando.io.echem.read import read_echem
    from operando.io.figures import save_figure
    from operando.report.echem import echem_figure

    try:
        ds = add_segments(read_echem(files, timezone=tz,
                                     format=file_format))  # type: ignore[arg-type]
    except (ValueError, OSError) as exc:
        err_console.print(str(exc), markup=False)
        raise typer.Exit(code=1) from None
    t = ds["time_s"].values
    start, start_utc = (ds.attrs.get(k, "?") for k in ("acquisition_start",
                                                        "acquisition_start_utc"))
    console.print(f"{len(files)} file(s), {t.size} points, {float(t[-1] - t[0]) / 3600:.3f} h;"
                  f" start {start} (UTC {start_utc})")
    q_th = (theoretical_capacity_C(mass_mg, molar_mass) if mass_mg is not None else None)
    rates = {r.index: r.c_rate_per_h for r in c_rate_per_segment(ds, q_th)} if q_th else {}
    table = Table(title="segments")
    cols = ["#", "segment", "cycle", "start (s)", "duration (s)", "mean I (mA)", "|Q| (mAh)",
            "E start → end (V)"] + (["C-rate (1/h)"] if rates else [])
    for col in cols:
        table.add_column(col, justify="right")
    cyc = ds["cycle"].values if "cycle" in ds else None
    segs = segments(ds)
    for s in segs:
        k = int(np.searchsorted(t, s.start_s)) if cyc is not None else 0
        row = [str(s.index), s.kind, str(int(cyc[k])) if cyc is not None else "",
               f"{s.start_s:.0f}", f"{s.duration_s:.0f}", f"{s.mean_current_A * 1e3:+.4f}",
               f"{s.charge_mAh:.4f}", f"{s.v_start_V:.3f} → {s.v_end_V:.3f}"]
        if rates:
            row.append(f"{rates[s.index]:.3f}" if s.kind != "rest" else "")
        table.add_row(*row)
    console.print(table)
    for kind in ("charge", "discharge"):
        total = sum(s.charge_mAh for s in segs if s.kind == kind)
        extra = (f" = {total / (mass_mg * 1e-3):.1f} mAh/g of {mass_mg} mg (theoretical "
                 f"{theoretical_capacity_mAh_g(molar_mass):.1f} mAh/g)") if q_th and mass_mg else ""
        console.print(f"total {kind}: {total:.4f} mAh{extra}")
    if plot is not None:
        save_figure(echem_figure(ds, title=", ".join(f.name for f in files)), plot)
        console.print(f"figure: {plot}")


def _window_option(value: str | None, key: str) -> tuple[float, float] | None:
    """``"LOW:HIGH"`` or ``"LOW,HIGH"`` (V) → (low, high); None stays None."""
    if value is None:
        return None
    parts = value.replace(",", ":").split(":")
    try:
        lo, hi = (float(x) for x in parts)
    except ValueError:
        raise ValueError(f"{key}: expected LOW:HIGH in V (e.g. 3.2:3.6), found {value!r}") from None
    if not lo < hi:
        raise ValueError(f"{key}: expected LOW < HIGH, found {value!r}")
    return lo, hi


def _kinetics_options(cycle: str, sweep: str, background: str, baseline_window: str | None,
                      anodic_window: str | None, cathodic_window: str | None,
                      **kw: object) -> object:
    from operando.kinetics.analysis import KineticsOptions
    from operando.kinetics.cv_peaks import PeakOptions

    cyc: int | str = cycle if cycle == "last" else int(cycle)
    swp: int | str = sweep if sweep in ("auto", "longest") else int(sweep)
    peaks = PeakOptions(background=background,
                        baseline_window_V=_window_option(baseline_window, "--baseline-window"))
    return KineticsOptions(cycle=cyc, sweep=swp, peaks=peaks,
                           anodic_window_V=_window_option(anodic_window, "--anodic-window"),
                           cathodic_window_V=_window_option(cathodic_window,
                                                            "--cathodic-window"),
                           **kw)  # type: ignore[arg-type]


@app.command()
def kinetics(
    files: Annotated[list[Path], typer.Argument(help="CV files: one per scan rate, or files "
                                                 "holding several (NOVA .txt, .mpt, .mpr, CSV).")],
    area_cm2: Annotated[float, typer.Option("--area-cm2", help="Electrode area A (cm²).")],
    conc_mol_cm3: Annotated[float, typer.Option(
        "--conc-mol-cm3", help="Bulk concentration C (mol/cm³), e.g. 0.0228 for LiFePO4.")],
    n: Annotated[int, typer.Option("--n", help="Electrons transferred.")] = 1,
    temperature_K: Annotated[float, typer.Option("--temperature-K", help="T (K).")] = 298.15,
    file_format: Annotated[str, typer.Option(
        "--format", help="auto, nova, biologic-mpt, biologic-mpr, csv.")] = "auto",
    cycle: Annotated[str, typer.Option(help="Cycle to analyse (number or 'last').")] = "1",
    sweep: Annotated[str, typer.Option(
        help="Half-cycle of the cycle searched for each peak: auto (every sweep, longest "
        "first; the first with a peak wins), longest, or N (the N-th sweep of that "
        "direction).")] = "auto",
    fit_peak: Annotated[str, typer.Option(
        "--fit-peak", help="Peak in the i_p-√v fit: anodic or cathodic.")] = "anodic",
    background: Annotated[str, typer.Option(
        help="Background under each peak: linear, capacitive, previous-sweep (the previous "
        "sweep's decay extrapolated), none.")] = "linear",
    baseline_window: Annotated[str | None, typer.Option(
        "--baseline-window", help="Pre-peak window LOW:HIGH (V) for linear/capacitive "
        "backgrounds (default: the first 20 % of each sweep).")] = None,
    anodic_window: Annotated[str | None, typer.Option(
        "--anodic-window", help="Potential window LOW:HIGH (V) searched for the anodic "
        "peak.")] = None,
    cathodic_window: Annotated[str | None, typer.Option(
        "--cathodic-window", help="Potential window LOW:HIGH (V) searched for the cathodic "
        "peak.")] = None,
    ir_ohm: Annotated[float, typer.Option(
        "--ir-ohm", help="Uncompensated resistance R_u (Ω): E corrected to E - I·R_u.")] = 0.0,
    fit_intercept: Annotated[bool, typer.Option(
        "--fit-intercept", help="Fit i_p = a√v + b instead of the line through 0.")] = False,
    max_shift: Annotated[float, typer.Option(
        "--max-peak-shift", help="Largest peak drift (V per decade of v) accepted as "
                                 "reversible.")] = 0.015,
    force: Annotated[bool, typer.Option(
        "--force", help="Report D even when the couple is flagged not reversible (peak "
        "shift, ΔEp), with the flag.")] = False,
    tolerance: Annotated[float, typer.Option(
        "--linearity-tolerance", help="Deviation from i_p ∝ √v ending the linear range.")] = 0.01,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Randles–Sevcik from CVs at several scan rates: peaks, slope, D ± error, linear range.

    Every option of the config's kinetics section that changes the numbers is here, so a
    published analysis can be reproduced from the command line."""
    from operando.io.cv.read import read_cv
    from operando.kinetics.analysis import analyse_cells
    from operando.kinetics.cv import label_sweeps

    try:
        for key, value in (("--area-cm2", area_cm2), ("--conc-mol-cm3", conc_mol_cm3),
                           ("--n", n), ("--temperature-K", temperature_K)):
            if not value > 0:
                raise ValueError(f"{key}: expected a positive value, found {value}")
        opts = _kinetics_options(
            cycle, sweep, background, baseline_window, anodic_window, cathodic_window,
            n_electrons=n, concentration_mol_cm3=conc_mol_cm3, temperature_K=temperature_K,
            fit_peak=fit_peak, linearity_tolerance=tolerance, fit_intercept=fit_intercept,
            max_peak_shift_V_per_decade=max_shift, ir_ohm=ir_ohm, force=force)
        res = analyse_cells(label_sweeps(read_cv(files, format=file_format)),  # type: ignore[arg-type]
                            area_cm2, opts)  # type: ignore[arg-type]
    except (ValueError, OSError) as exc:
        err_console.print(str(exc), markup=False)
        raise typer.Exit(code=1) from None
    rates = res["scan_rate"].values

    def num(x: object) -> float | None:
        v = float(x)  # type: ignore[arg-type]
        return v if np.isfinite(v) else None

    rows = [{"file": str(res["source_file"].values[k]), "scan_rate_V_s": float(rates[k]),
             "anodic_peak_current_A": num(res["anodic_peak_current_A"].values[k]),
             "anodic_peak_potential_V": num(res["anodic_peak_potential_V"].values[k]),
             "cathodic_peak_current_A": num(res["cathodic_peak_current_A"].values[k]),
             "cathodic_peak_potential_V": num(res["cathodic_peak_potential_V"].values[k]),
             "delta_ep_V": num(res["delta_ep_V"].values[k]),
             "in_linear_range": bool(res["in_linear_range"].values[k])}
            for k in range(rates.size)]
    summary = {"slope_A_sqrt_s_per_V": num(res["cell_slope"]),
               "slope_stderr": num(res["cell_slope_stderr"]),
               "diffusion_cm2_s": num(res["cell_diffusion_cm2_s"]),
               "diffusion_stderr_cm2_s": num(res["cell_diffusion_stderr_cm2_s"]),
               "r2": num(res["cell_r2"]),
               "max_linear_scan_rate_V_s": num(res["cell_max_linear_scan_rate_V_s"]),
               "n_linear": int(res["cell_n_linear"]),
               "randles_sevcik_applies": bool(res["cell_randles_sevcik_applies"]),
               "flags": _flag_names(int(res["cell_flags"])), "forced": force,
               "reasons": list(res.attrs["reasons"])}
    if as_json:
        typer.echo(json.dumps({"scan_rates": rows, **summary}, indent=2))
    else:
        table = Table(title="CV peaks")
        for col in ("v (mV/s)", "i_pa (µA)", "E_pa (V)", "i_pc (µA)", "E_pc (V)", "ΔEp (mV)",
                    "linear", "file"):
            table.add_column(col, justify="right")

        def f(x: float | None, scale: float = 1.0, fmt: str = ".4g") -> str:
            return "—" if x is None else format(x * scale, fmt)

        for r in rows:
            table.add_row(f(r["scan_rate_V_s"], 1e3), f(r["anodic_peak_current_A"], 1e6),
                          f(r["anodic_peak_potential_V"], 1, ".4f"),
                          f(r["cathodic_peak_current_A"], 1e6),
                          f(r["cathodic_peak_potential_V"], 1, ".4f"),
                          f(r["delta_ep_V"], 1e3, ".1f"), "yes" if r["in_linear_range"] else "no",
                          Path(str(r["file"])).name)
        console.print(table)
        console.print(f"slope = {f(summary['slope_A_sqrt_s_per_V'])} ± "
                      f"{f(summary['slope_stderr'], 1, '.2g')} A/√(V/s), R² = "
                      f"{f(summary['r2'], 1, '.5f')}")
        flagged = f"  [flags: {', '.join(summary['flags'])}]" if summary["flags"] else ""
        console.print(f"D = {f(summary['diffusion_cm2_s'])} ± "
                      f"{f(summary['diffusion_stderr_cm2_s'], 1, '.2g')} cm²/s{flagged}",
                      markup=False)
        console.print(f"linear range: up to {f(summary['max_linear_scan_rate_V_s'], 1e3)} mV/s "
                      f"({summary['n_linear']}/{len(rows)} scan rates)")
        for reason in summary["reasons"]:
            console.print(f"note: {reason}", markup=False)
    if summary["diffusion_cm2_s"] is None:
        err_console.print("Randles–Sevcik: D not reported (see the notes above)")
        raise typer.Exit(code=1)


def _flag_names(flags: int) -> list[str]:
    from operando.kinetics.analysis import FLAGS

    return [name for bit, (name, _) in FLAGS.items() if flags & bit]


def expand_multi_value_options(argv: list[str],
                               options: tuple[str, ...] = ("--standards", "--only")
                               ) -> list[str]:
    """``lcf A B --standards S1 S2 --json`` → ``... --standards S1 --standards S2 --json``
    (and ``reduce CONFIG --only xrd peaks`` likewise).

    Typer (click) options take one value each; the documented syntax, what a user types,
    lists several after one ``--standards``. Without this the extra standards would be
    taken as spectra, silently. Values run until the next token starting with ``--``.
    """
    out: list[str] = []
    current: str | None = None
    for tok in argv:
        if tok in options:
            current = tok
            continue
        if tok.startswith("--"):
            current = None
        elif current is not None:
            out.append(current)
        out.append(tok)
    return out


def _register_serve() -> None:
    from operando.cli_serve import serve

    app.command()(serve)


_register_serve()


def main() -> None:
    import sys

    app(args=expand_multi_value_options(sys.argv[1:]))


if __name__ == "__main__":
    main()
