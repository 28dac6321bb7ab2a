"""The reduce flow: one run config → products in ``<output.directory>/<run.name>/``.

Reads like DESIGN.md's table:

1. electrochemistry: cycler files → ``echem.nc`` (x_li, Faraday fraction, segments);
2. sync: the trigger record against the reference X-ray stream's frame timestamps → a
   clock model (offset, drift, residuals) stored in the attributes of every product;
3. XRD: detector frames → azimuthal integration in chunk-sized tasks (the chunks run on a
   Dask cluster: a LocalCluster of worker processes by default, or an existing scheduler)
   → ``xrd.nc`` with the electrochemistry averaged over each exposure;
4. peaks: ``xrd.nc`` → peak fits in chunk-sized tasks on the same cluster, lattice
   parameters, Li content and phase fractions → ``peaks.nc``;
5. XANES: scans → normalisation, energy alignment, batched linear-combination fits →
   ``xanes.nc`` with each scan's electrochemistry and the fraction-vs-Faraday lag;
6. confocal: depth-resolved scans (frames integrated in chunk-sized tasks, or energy-
   dispersive spectra) → per-(pass, depth) peak fits, local state of charge, front arrival,
   local rates, through-depth spread and relaxation → ``confocal.nc``;
7. kinetics: CVs at several scan rates (cell files and/or an SECCM map) → Randles–Sevcik
   diffusion coefficients → ``kinetics.nc``.

``operando reduce CONFIG [--only ...]`` calls :func:`reduce_run`; so does a deployment.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner

from operando.config import RunConfig, expand_inputs, load_config
from operando.echem.faraday import add_faraday
from operando.echem.sync import (
    ClockModel,
    clock_from_timestamps,
    fit_clock,
    reference_epoch_from_attrs,
)
from operando.io.echem.read import read_echem
from operando.io.echem.triggers import read_trigger_record
from operando.io.figures import save_figure
from operando.io.products import product_path, read_product, write_product
from operando.io.xrd.frames import FrameMetadata, FrameSource, open_frames
from operando.report.echem import echem_figure
from operando.report.xrd import sync_figure, xrd_figure
from operando.xrd.product import xrd_dataset
from pipelines.stream import ProgressCallback, StreamProduct, UnitMapper, map_here
from pipelines.xrd import (
    ChunkResult,
    IntegratorSetup,
    integrate_chunk,
    integrator_info,
    integrator_setup_for,
    xrd_product_attrs,
    xrd_product_inputs,
)

#: Streams this version reduces, in the order they run.
REDUCED_STREAMS = ("echem", "xrd", "peaks", "confocal", "xanes", "kinetics")


@dataclass
class ReduceResult:
    """What a reduce run wrote: product paths by stream, figures, the clock, skipped streams."""

    product_dir: Path
    products: dict[str, Path] = field(default_factory=dict)
    figures: list[Path] = field(default_factory=list)
    clock: ClockModel | None = None
    skipped: dict[str, str] = field(default_factory=dict)
    echem: xr.Dataset | None = None


# --------------------------------------------------------------------------- Dask


_CLIENTS: dict[str, Any] = {}


@contextlib.contextmanager
def dask_client(scheduler: str | None,
                n_workers: int | None = None) -> Iterator[tuple[str | None, int]]:
    """A Dask client for the chunk work, registered under a key the tasks look up.

    ``scheduler``: ``None``/``"none"`` runs chunks in this process (small runs, tests);
    ``"local"`` starts a LocalCluster of worker processes (one thread each; one worker per
    core, at most 4, unless ``n_workers``); anything else is the address of an existing
    scheduler (``tcp://host:8786``, e.g. a facility cluster through dask-jobqueue).
    Yields ``(key, workers)``: the key is None in-process; ``workers`` is how many chunks
    may run at once (1 in-process), which bounds the chunk tasks in flight.
    """
    if scheduler in (None, "none", "sync"):
        yield None, 1
        return
    from distributed import Client, LocalCluster

    cluster = None
    client = None
    key = None
    try:
        if scheduler == "local":
            workers = n_workers or max(1, min(os.cpu_count() or 1, 4))
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                   dashboard_address=None)
            client = Client(cluster)
        else:
            client = Client(scheduler)
        key = f"{scheduler}:{id(client)}"
        _CLIENTS[key] = client
        n = sum(w.get("nthreads", 1) for w in client.scheduler_info()["workers"].values())
        yield key, max(1, n)
    finally:
        if key is not None:
            _CLIENTS.pop(key, None)
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()


# --------------------------------------------------------------------------- tasks


@task(name="read electrochemistry", cache_policy=NO_CACHE)
def read_echem_task(cfg: RunConfig) -> xr.Dataset:
    """Cycler files → normalised Dataset with x_li and the Faraday-expected fraction."""
    e = cfg.echem
    assert e is not None
    ds = read_echem(expand_inputs(e.files), timezone=e.timezone, format=e.format,
                    columns=e.columns, start_time=e.start_time)
    return add_faraday(ds, active_mass_mg=e.active_mass_mg, molar_mass_g_mol=e.molar_mass_g_mol,
                       electrons_per_formula_unit=e.electrons_per_formula_unit, x0=e.x0,
                       capacity_reference=e.capacity_reference)


@task(name="open xrd frames", cache_policy=NO_CACHE)
def open_xrd_task(cfg: RunConfig) -> FrameSource:
    x = cfg.xrd
    assert x is not None
    return open_frames([str(p) for p in x.files], dataset=x.dataset,
                       timestamp_path=x.timestamp_path, count_time_path=x.count_time_path,
                       monitor_path=x.monitor_path, swmr=x.swmr)


@task(name="fit clock", cache_policy=NO_CACHE)
def sync_task(cfg: RunConfig, echem: xr.Dataset, sent_epoch_s: np.ndarray | None
              ) -> tuple[ClockModel, np.ndarray | None]:
    """The clock model: trigger fit (sync.method triggers) or absolute timestamps."""
    s = cfg.sync
    assert s is not None
    reference = reference_epoch_from_attrs(echem.attrs)
    if s.method == "timestamps":
        return clock_from_timestamps(reference_epoch_s=reference,
                                     fixed_offset_s=s.fixed_offset_s), None
    assert s.trigger_file is not None
    if sent_epoch_s is None:
        raise ValueError(f"sync.reference_stream {s.reference_stream!r}: its frames carry no "
                         "timestamps to match the trigger record against; name them with "
                         f"{s.reference_stream}.timestamp_path or use sync.method: timestamps")
    recorded = read_trigger_record(s.trigger_file)
    clock = fit_clock(sent_epoch_s, recorded, reference_epoch_s=reference, fit_drift=s.drift,
                      max_rms_residual_s=s.max_rms_residual_s,
                      max_abs_residual_s=s.max_abs_residual_s,
                      offset_guess_s=s.offset_guess_s, max_offset_s=s.max_offset_s,
                      what=f"{s.reference_stream} frame triggers vs {s.trigger_file.name}")
    get_run_logger().info(
        "clock: offset %.4f ± %.4f s, drift %.2f ± %.2f ppm, RMS %.2f ms, %d matched, "
        "%d missing, %d spurious", clock.offset_s, clock.offset_stderr_s, clock.drift_ppm,
        clock.drift_stderr_ppm, clock.rms_residual_s * 1e3, clock.n_matched,
        len(clock.unmatched_sent), len(clock.unmatched_recorded))
    return clock, recorded


def sync_inputs(cfg: RunConfig, echem: xr.Dataset | None,
                clock: ClockModel | None) -> list[Path]:
    """Files a product's electrochemistry and clock come from: the cycler files of ``echem``
    and, with a trigger-fitted clock, the trigger record."""
    files = [Path(f) for f in np.atleast_1d(echem.attrs.get("source_files", []))] \
        if echem is not None else []
    if clock is not None and cfg.sync is not None and cfg.sync.trigger_file is not None:
        files.append(cfg.sync.trigger_file)
    return files


@task(name="write echem.nc", cache_policy=NO_CACHE)
def write_echem_task(cfg: RunConfig, echem: xr.Dataset, clock: ClockModel | None) -> Path:
    e = cfg.echem
    assert e is not None
    return write_product(
        echem, product_path(cfg.product_dir, "echem", cfg.output.format), product="echem",
        config_yaml=cfg.to_yaml(),
        inputs=sync_inputs(cfg, echem, clock),
        extra_attrs=clock.to_attrs() if clock else None, overwrite=cfg.output.overwrite,
        fmt=cfg.output.format)


@task(name="integrate xrd chunk", cache_policy=NO_CACHE)
def integrate_chunk_task(source: FrameSource, start: int, stop: int, setup: IntegratorSetup,
                         client_key: str | None,
                         normalization: np.ndarray | None = None) -> ChunkResult:
    """One work unit: frames [start, stop) read, integrated, returned (on Dask if a client)."""
    if client_key is None:
        return integrate_chunk(source, start, stop, setup, normalization)
    client = _CLIENTS[client_key]
    return client.submit(integrate_chunk, source, start, stop, setup, normalization,
                         pure=False).result()


@task(name="write figure", cache_policy=NO_CACHE)
def figure_task(fig: Any, path: Path) -> Path:
    return save_figure(fig, path)


# --------------------------------------------------------------------------- xrd


def integrator_setup(cfg: RunConfig, source: FrameSource) -> IntegratorSetup:
    """The picklable description of the integrator for the config's xrd section."""
    x = cfg.xrd
    assert x is not None
    return integrator_setup_for(x.integration, source)


@flow(name="reduce-xrd", validate_parameters=False)
def reduce_xrd(cfg: RunConfig, source: FrameSource | None = None,
               meta: FrameMetadata | None = None,
               echem: xr.Dataset | None = None, clock: ClockModel | None = None,
               client_key: str | None = None, in_flight: int = 1,
               progress: ProgressCallback | None = None) -> tuple[Path, xr.Dataset]:
    """Detector frames → ``xrd.nc``: chunk-sized integration tasks, then one product.

    The integrator is built once per geometry (per worker process); chunks follow the
    HDF5 chunking and ``xrd.integration.chunk_frames``; at most ``in_flight`` chunk tasks
    run at once (the Dask workers' threads), so the flow holds only the integrated
    patterns, filled into the product's arrays as chunks finish. With ``clock`` and
    ``echem`` the exposure intervals are put on the potentiostat clock and the
    electrochemistry is averaged over each (``time``, ``time_start``, ``voltage_V``, …).
    """
    from operando.echem.attach import exposure_average

    log = get_run_logger()
    x = cfg.xrd
    assert x is not None
    if source is None:
        source = open_xrd_task(cfg)
    if meta is None:
        meta = source.metadata()
    setup = integrator_setup(cfg, source)
    # built once per worker (cached there); asking for it first fails early on a bad
    # geometry or mask, before any chunk is read
    integ = (integrator_info(setup) if client_key is None else
             _CLIENTS[client_key].submit(integrator_info, setup, pure=False).result())
    norm = None
    if x.normalize_by_monitor:
        if not np.all(np.isfinite(meta.monitor) & (meta.monitor > 0)):
            raise ValueError(f"xrd.normalize_by_monitor: expected a positive monitor value per "
                             f"frame, found none or non-positive ones ({meta.monitor_source})")
        norm = meta.monitor
    if clock is not None and meta.epoch_s is None:
        raise ValueError(f"sync: the xrd frames of {source.files[0]} carry no timestamps to "
                         "put on the potentiostat clock; name them with xrd.timestamp_path")
    chunks = source.chunks(x.integration.chunk_frames)
    described = source.describe()
    log.info("xrd: %d frames of %s in %d chunks (%s)%s", source.n_frames, source.frame_shape,
             len(chunks), described.get("layout", "?"),
             f"; {source.n_pending} frames pending" if source.n_pending else "")
    n, npt = source.n_frames, len(integ.radial)
    intensity = np.full((n, npt), np.nan, dtype=np.float32)
    sigma = np.full((n, npt), np.nan, dtype=np.float32)
    n_invalid = np.zeros(n, dtype=np.int64)
    cake = cake_sigma = None
    if integ.azimuthal is not None:
        cake = np.full((n, len(integ.azimuthal), npt), np.nan, dtype=np.float32)
        cake_sigma = np.full_like(cake, np.nan)
    pending = list(chunks)
    running: list[Any] = []
    done = 0
    while pending or running:
        while pending and len(running) < max(1, in_flight):
            a, b = pending.pop(0)
            running.append(integrate_chunk_task.submit(
                source, a, b, setup, client_key, None if norm is None else norm[a:b]))
        res: ChunkResult = running.pop(0).result()  # in order; later chunks keep running
        sl = slice(res.start, res.stop)
        intensity[sl], sigma[sl], n_invalid[sl] = res.intensity, res.sigma, res.n_invalid
        if cake is not None and cake_sigma is not None and res.cake is not None:
            cake[sl] = res.cake
            if res.cake_sigma is not None:
                cake_sigma[sl] = res.cake_sigma
        done += res.stop - res.start
        del res
        if progress:
            progress("xrd", done, n)
        log.info("xrd: %d/%d frames integrated", done, n)

    t_start = t_end = None
    points = None
    if clock is not None and meta.epoch_s is not None:
        unknown = ~np.isfinite(meta.count_time_s)
        if unknown.any():
            log.warning("xrd: %d frames have no count time (%s): their electrochemistry is "
                        "the value at the exposure start, not a mean over the exposure",
                        int(unknown.sum()), meta.count_time_source)
        count = np.where(unknown, 0.0, meta.count_time_s)
        t_start = clock.to_potentiostat(meta.epoch_s)
        t_end = clock.to_potentiostat(meta.epoch_s + count)
        if echem is not None:
            points = exposure_average(echem, t_start, t_end, dim="time")
    ds = xrd_dataset(
        intensity, sigma, radial=integ.radial, radial_name=integ.radial_name,
        radial_units=integ.radial_units, frame_index=meta.frame_index, epoch_s=meta.epoch_s,
        count_time_s=meta.count_time_s, monitor=meta.monitor, n_invalid=n_invalid,
        time_start_s=t_start, time_end_s=t_end, echem_points=points, cake=cake,
        cake_sigma=cake_sigma, chi_deg=integ.azimuthal, error_model=setup.options.error_model,
    )
    attrs = xrd_product_attrs(source, meta, setup, integ, normalized=norm is not None)
    inputs = xrd_product_inputs(source, setup)
    if clock is not None:
        attrs.update(clock.to_attrs())
        inputs += sync_inputs(cfg, echem if points is not None else None, clock)
    ds.attrs.update(attrs)  # the in-memory product carries them too (peaks reads the PONI)
    path = write_product(
        ds, product_path(cfg.product_dir, "xrd", cfg.output.format), product="xrd",
        config_yaml=cfg.to_yaml(), inputs=inputs, extra_attrs=attrs,
        overwrite=cfg.output.overwrite, fmt=cfg.output.format)
    log.info("xrd: wrote %s", path)
    return path, ds


# --------------------------------------------------------------------------- streams


@task(name="write product", cache_policy=NO_CACHE)
def write_stream_task(cfg: RunConfig, product: StreamProduct,
                      extra_inputs: Sequence[Path] = ()) -> Path:
    """Write a stream's product (atomic, provenance-stamped) and log its notes."""
    log = get_run_logger()
    for note in product.notes:
        log.info("%s", note)
    path = write_product(
        product.dataset, product_path(cfg.product_dir, product.name, cfg.output.format),
        product=product.name, config_yaml=cfg.to_yaml(),
        inputs=[*product.inputs, *extra_inputs], extra_attrs=product.attrs,
        overwrite=cfg.output.overwrite, fmt=cfg.output.format)
    log.info("%s: wrote %s", product.name, path)
    return path


def _dask_runner(client_key: str | None) -> UnitMapper:
    """A :data:`pipelines.stream.UnitMapper` that runs work units on the registered Dask
    client (at most one in flight per worker thread), or in this process without one."""
    if client_key is None:
        return map_here
    client = _CLIENTS[client_key]

    def run(fn: Callable[..., Any], arg_list: Iterable[tuple[Any, ...]]) -> Iterator[Any]:
        n = max(1, sum(w.get("nthreads", 1)
                       for w in client.scheduler_info()["workers"].values()))
        pending = iter(arg_list)  # drawn lazily: only the units in flight are built
        running: list[Any] = []
        for args in pending:
            running.append(client.submit(fn, *args, pure=False))
            if len(running) >= n:
                yield running.pop(0).result()
        while running:
            yield running.pop(0).result()

    return run


@task(name="fit peaks", cache_policy=NO_CACHE)
def peaks_task(cfg: RunConfig, xrd: xr.Dataset, echem: xr.Dataset | None,
               client_key: str | None, progress: ProgressCallback | None) -> StreamProduct:
    from pipelines.peaks import build_peaks

    return build_peaks(cfg, xrd, echem=echem, map_units=_dask_runner(client_key),
                       progress=progress)


@task(name="reduce xanes", cache_policy=NO_CACHE)
def xanes_task(cfg: RunConfig, echem: xr.Dataset | None, clock: ClockModel | None,
               progress: ProgressCallback | None) -> StreamProduct:
    from pipelines.xanes import build_xanes

    return build_xanes(cfg, echem=echem, clock=clock, progress=progress)


@task(name="reduce confocal", cache_policy=NO_CACHE)
def confocal_task(cfg: RunConfig, echem: xr.Dataset | None, clock: ClockModel | None,
                  client_key: str | None, progress: ProgressCallback | None) -> StreamProduct:
    from pipelines.confocal import build_confocal

    return build_confocal(cfg, echem=echem, clock=clock, map_units=_dask_runner(client_key),
                          progress=progress)


@task(name="reduce kinetics", cache_policy=NO_CACHE)
def kinetics_task(cfg: RunConfig, progress: ProgressCallback | None) -> StreamProduct:
    from pipelines.kinetics import build_kinetics

    return build_kinetics(cfg, progress=progress)


# --------------------------------------------------------------------------- run


def _exists(cfg: RunConfig, name: str) -> bool:
    return product_path(cfg.product_dir, name, cfg.output.format).exists()


def _figures(cfg: RunConfig, result: ReduceResult, product: StreamProduct) -> None:
    if not cfg.output.report:
        return
    for fname, fig in product.figures.items():
        result.figures.append(figure_task(fig, cfg.product_dir / "report" / fname))


@flow(name="operando-reduce", validate_parameters=False)
def reduce_run(config: Path | str | RunConfig, only: Sequence[str] | None = None,
               scheduler: str | None = "local", overwrite: bool | None = None,
               progress: ProgressCallback | None = None) -> ReduceResult:
    """Reduce one run. ``only`` limits the products written (``echem``, ``xrd``, ``peaks``,
    ``confocal``, ``xanes``, ``kinetics``); the electrochemistry and the clock are still
    computed when a chosen product needs them, and ``peaks`` reads an existing ``xrd.nc``
    or reduces the XRD first. ``scheduler``: see :func:`dask_client`. ``overwrite`` overrides
    ``output.overwrite``.
    """
    log = get_run_logger()
    cfg = config if isinstance(config, RunConfig) else load_config(config)
    if overwrite is not None:
        cfg = cfg.model_copy(update={"output": cfg.output.model_copy(
            update={"overwrite": overwrite})})
    wanted = set(only) if only else {s for s in REDUCED_STREAMS if getattr(cfg, s) is not None}
    unknown = wanted - set(REDUCED_STREAMS)
    if unknown:
        raise ValueError(f"--only: expected some of {', '.join(REDUCED_STREAMS)}, found "
                         f"{', '.join(sorted(unknown))}")
    result = ReduceResult(product_dir=cfg.product_dir)
    for s in sorted(wanted):
        if getattr(cfg, s) is None:
            raise ValueError(f"{s}: asked for, but the config has no '{s}' section")
    for s in sorted(wanted):
        if _exists(cfg, s) and not cfg.output.overwrite:
            wanted.discard(s)
            result.skipped[s] = (f"{product_path(cfg.product_dir, s, cfg.output.format)} "
                                 "exists and output.overwrite is false (kept)")
    if "peaks" in wanted and "xrd" not in wanted and not _exists(cfg, "xrd"):
        log.info("peaks: no %s yet; reducing the XRD first",
                 product_path(cfg.product_dir, "xrd", cfg.output.format))
        wanted.add("xrd")
    for s, why in result.skipped.items():
        log.info("%s: skipped, %s", s, why)

    synced = cfg.sync is not None and bool(wanted & {"echem", "xrd", "xanes", "confocal"})
    needs_echem = "echem" in wanted or (synced and bool(wanted & {"xrd", "xanes", "confocal"}))
    echem = read_echem_task(cfg) if needs_echem and cfg.echem is not None else None
    result.echem = echem
    triggers_on_xrd = synced and cfg.sync is not None and cfg.sync.method == "triggers" \
        and cfg.sync.reference_stream == "xrd"
    source = open_xrd_task(cfg) if cfg.xrd is not None and (
        "xrd" in wanted or triggers_on_xrd) else None
    meta = source.metadata() if source is not None else None

    clock = None
    if synced and cfg.sync is not None and echem is not None:
        sent = None
        if cfg.sync.method == "triggers":
            if cfg.sync.reference_stream != "xrd" or meta is None:
                raise ValueError(f"sync.reference_stream {cfg.sync.reference_stream!r}: this "
                                 "version syncs on the xrd stream's frame timestamps")
            sent = meta.epoch_s
        clock, recorded = sync_task(cfg, echem, sent)
        result.clock = clock
        if cfg.output.report and recorded is not None and sent is not None:
            result.figures.append(figure_task(
                sync_figure(clock, sent, recorded, title=f"{cfg.run.name}: trigger clock sync"),
                cfg.product_dir / "report" / "sync.png"))

    if "echem" in wanted and echem is not None:
        result.products["echem"] = write_echem_task(cfg, echem, clock)
        if cfg.output.report:
            result.figures.append(figure_task(
                echem_figure(echem, title=f"{cfg.run.name}: electrochemistry"),
                cfg.product_dir / "report" / "echem.png"))
    xrd_ds = None
    if wanted & {"xrd", "peaks", "confocal"}:
        with dask_client(scheduler) as (key, workers):
            if "xrd" in wanted:
                runner = reduce_xrd.with_options(
                    task_runner=ThreadPoolTaskRunner(max_workers=workers))
                path, xrd_ds = runner(cfg, source=source, meta=meta, echem=echem, clock=clock,
                                      client_key=key, in_flight=workers, progress=progress)
                result.products["xrd"] = path
                if cfg.output.report:
                    result.figures.append(figure_task(
                        xrd_figure(xrd_ds, title=f"{cfg.run.name}: integrated XRD"),
                        cfg.product_dir / "report" / "xrd.png"))
            if "peaks" in wanted:
                xrd_path = product_path(cfg.product_dir, "xrd", cfg.output.format)
                if xrd_ds is None:
                    log.info("peaks: reading %s", xrd_path)
                    xrd_ds = read_product(xrd_path)
                peaks = peaks_task(cfg, xrd_ds, echem, key, progress)
                # the clock that put xrd.nc on the potentiostat time base
                peaks.attrs.update({k: v for k, v in xrd_ds.attrs.items()
                                    if k.startswith("clock_") and k not in peaks.attrs})
                result.products["peaks"] = write_stream_task(cfg, peaks, [xrd_path])
                _figures(cfg, result, peaks)
            if "confocal" in wanted:
                confocal = confocal_task(cfg, echem, clock, key, progress)
                result.products["confocal"] = write_stream_task(
                    cfg, confocal, sync_inputs(cfg, echem, clock) if clock is not None else [])
                _figures(cfg, result, confocal)
    if "xanes" in wanted:
        xanes = xanes_task(cfg, echem, clock, progress)
        result.products["xanes"] = write_stream_task(
            cfg, xanes, sync_inputs(cfg, echem, clock) if clock is not None else [])
        _figures(cfg, result, xanes)
    if "kinetics" in wanted:
        kin = kinetics_task(cfg, progress)
        result.products["kinetics"] = write_stream_task(cfg, kin)
        _figures(cfg, result, kin)
    return result
