"""The demo flow: simulate a beamtime, validate its run config, reduce it.

The reduction is :func:`pipelines.reduce.reduce_run` on the simulator's own run config,
so the demo exercises exactly what a beamline run does: echem.nc, the trigger-clock sync,
xrd.nc, peaks.nc, xanes.nc, kinetics.nc and the report figures. Streams a later version
reduces are listed as skipped. The products are then scored against the simulator's
ground truth (:mod:`operando.simulate.scorecard`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task

from operando.config import RunConfig, load_config
from operando.echem.summary import segments
from operando.io.products import read_product
from operando.simulate.beamtime import BeamtimeResult, load_truth, simulate_beamtime
from operando.simulate.scorecard import Check, scorecard
from pipelines.reduce import ProgressCallback, reduce_run


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


@task(name="score against truth")
def score_task(truth_path: Path, products: dict[str, Path]) -> list[Check]:
    """The reduced products against the simulator's ground truth (see
    :mod:`operando.simulate.scorecard`); each row is logged."""
    log = get_run_logger()
    rows = scorecard(load_truth(truth_path),
                     {name: read_product(path) for name, path in products.items()})
    for r in rows:
        log.info("%s %s: truth %s, recovered %s, error %.3g %s (tolerance %.3g) %s",
                 r.product, r.quantity, r.truth, r.recovered, r.error, r.unit, r.tolerance,
                 "ok" if r.ok else "OUTSIDE TOLERANCE")
    return rows


@flow(name="operando-demo", log_prints=True, validate_parameters=False)
def demo_flow(workdir: Path, preset: str = "lfp-1c", seed: int = 0,
              scheduler: str | None = "local",
              progress: ProgressCallback | None = None) -> dict[str, Any]:
    """Simulate ``preset`` into ``workdir/raw`` and reduce it into ``workdir/reduced``."""
    workdir = Path(workdir)
    res = simulate_task(workdir, preset, seed)
    cfg = validate_task(res.run_config_path)
    reduced = reduce_run(cfg, scheduler=scheduler, overwrite=True, progress=progress)
    segs = segments(reduced.echem) if reduced.echem is not None else []
    score = score_task(res.truth_path, reduced.products)
    get_run_logger().info("reduced: %s", ", ".join(f"{k} -> {v}" for k, v in
                                                  reduced.products.items()))
    return {"simulation": res, "config": cfg, "segments": segs, "reduced": reduced,
            "scorecard": score}
