"""``operando`` command line: thin, calls flows and library functions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from operando import __version__
from operando.config import ConfigError, json_schema, load_config
from operando.simulate.presets import PRESETS

if TYPE_CHECKING:
    from operando.simulate.beamtime import BeamtimeResult

app = typer.Typer(
    name="operando",
    help="Reduce synchrotron operando battery data (XRD, XANES, confocal XRD, CV) against the "
    "electrochemistry.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)

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
    with Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(),
                  TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                  console=console, transient=False) as bar:
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
) -> None:
    """Write a synthetic operando beamtime with known ground truth (truth.json, run.yaml)."""
    if preset not in PRESET_NAMES:
        err_console.print(f"--preset: expected one of {', '.join(PRESET_NAMES)}, found {preset!r}")
        raise typer.Exit(code=2)
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
) -> None:
    """Simulate a beamtime and reduce it end to end (Prefect embedded; no server to start)."""
    if preset not in PRESET_NAMES:
        err_console.print(f"--preset: expected one of {', '.join(PRESET_NAMES)}, found {preset!r}")
        raise typer.Exit(code=2)
    from pipelines.demo import demo_flow

    console.rule(f"operando demo: preset {preset}, seed {seed}")
    out = demo_flow(workdir, preset=preset, seed=seed)
    res, cfg, segs, figures = (out["simulation"], out["config"], out["segments"],
                               out["figures"])
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
    console.print(
        f"run config (validated): {res.run_config_path}\n"
        f"ground truth:           {res.truth_path}\n"
        f"products:               {cfg.product_dir}\n"
        + "".join(f"  report figure:        {f}\n" for f in figures)
        + "reduced data products: none yet at this version (XRD, XANES, sync, peaks and "
        "kinetics land in later releases)."
    )


def main() -> None:
    app()


if __name__ == "__main__":
    main()
