"""The demo flow: simulate a beamtime, validate its run config, reduce what exists.

At this stage the reduction reads the electrochemistry back; later streams add
their tasks here in the order of DESIGN.md's table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task

from operando.config import RunConfig, load_config
from operando.echem.summary import SegmentSummary, segments
from operando.io.biologic import read_mpt
from operando.io.figures import save_figure
from operando.report.echem import echem_figure
from operando.simulate.beamtime import BeamtimeResult, simulate_beamtime


@task(name="simulate beamtime")
def simulate_task(workdir: Path, preset: str, seed: int) -> BeamtimeResult:
    log = get_run_logger()

    def every_tenth(stream: str, done: int, total: int) -> None:
        if done == total or done % max(total // 10, 1) == 0:
            log.info("%s: %d/%d frames", stream, done, total)

    res = simulate_beamtime(workdir / "raw", preset, seed, output_directory="../reduced",
                            progress=lambda s: log.info("simulating %s", s),
                            item_progress=every_tenth)
    for note in res.notes:
        log.warning(note)
    return res


@task(name="validate run config")
def validate_task(config_path: Path) -> RunConfig:
    return load_config(config_path)


@task(name="read electrochemistry")
def echem_task(cfg: RunConfig) -> tuple[list[SegmentSummary], list[Path]]:
    """Read the cycler files back; summary by segment; figure in <product dir>/report/."""
    if cfg.echem is None:
        return [], []
    ds = read_mpt(cfg.echem.files, timezone=cfg.echem.timezone)
    figures: list[Path] = []
    if cfg.output.report:
        fig = echem_figure(ds, title=f"{cfg.run.name}: electrochemistry")
        figures.append(save_figure(fig, cfg.product_dir / "report" / "echem.png"))
    return segments(ds), figures


@flow(name="operando-demo", log_prints=True)
def demo_flow(workdir: Path, preset: str = "lfp-1c", seed: int = 0) -> dict[str, Any]:
    """Simulate ``preset`` into ``workdir/raw`` and reduce it into ``workdir/reduced``."""
    workdir = Path(workdir)
    res = simulate_task(workdir, preset, seed)
    cfg = validate_task(res.run_config_path)
    segs, figures = echem_task(cfg)
    get_run_logger().info("electrochemistry read back: %d segments", len(segs))
    return {"simulation": res, "config": cfg, "segments": segs, "figures": figures}
