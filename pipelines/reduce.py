"""The reduce flow: one run config → products in ``<output.directory>/<run.name>/``.

Reads like DESIGN.md's table; each stream's adapter (``pipelines/<stream>.py``) turns its own
config section into reader arguments and options, this module only wires them:

1. electrochemistry (:mod:`pipelines.echem`): cycler files → ``echem.nc`` (x_li, Faraday
   fraction, segments);
2. sync (:mod:`pipelines.sync`): the trigger record against the reference X-ray stream's
   frame timestamps → a clock model (offset, drift, residuals) stored in the attributes of
   every product;
3. XRD (:mod:`pipelines.xrd`): detector frames → azimuthal integration in chunk-sized tasks
   (the chunks run on a Dask cluster: a LocalCluster of worker processes by default, or an
   existing scheduler) → ``xrd.nc`` with the electrochemistry averaged over each exposure;
4. peaks (:mod:`pipelines.peaks`): ``xrd.nc`` → peak fits in chunk-sized tasks on the same
   cluster, lattice parameters, Li content and phase fractions → ``peaks.nc``;
5. confocal (:mod:`pipelines.confocal`): depth-resolved scans (frames integrated in
   chunk-sized tasks, or energy-dispersive spectra) → per-(pass, depth) peak fits, local
   state of charge, front arrival, local rates, through-depth spread and relaxation →
   ``confocal.nc``;
6. XANES (:mod:`pipelines.xanes`): scans → normalisation, energy alignment, batched
   linear-combination fits → ``xanes.nc`` with each scan's electrochemistry and the
   fraction-vs-Faraday lag;
7. kinetics (:mod:`pipelines.kinetics`): CVs at several scan rates (cell files and/or an
   SECCM map) → Randles–Sevcik diffusion coefficients → ``kinetics.nc``.

Dependencies: echem → sync → xrd → peaks; sync → xanes, confocal; kinetics alone.
``operando reduce CONFIG [--only ...]`` calls :func:`reduce_run`; so does a deployment.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner

from operando.config import (
    ConfocalSection,
    EchemSection,
    KineticsSection,
    PeaksSection,
    RunConfig,
    SyncSection,
    XanesSection,
    XrdSection,
    load_config,
)
from operando.echem.sync import ClockModel
from operando.io.figures import save_figure
from operando.io.products import product_path, read_product, write_product
from operando.io.xrd.frames import FrameMetadata, FrameSource
from operando.report.echem import echem_figure
from operando.report.xrd import sync_figure, xrd_figure
from pipelines.cluster import _CLIENTS, dask_client
from pipelines.echem import read_echem_section
from pipelines.stream import (
    ProgressCallback,
    StreamProduct,
    UnitMapper,
    exposure_count_time,
    map_here,
    monitor_normalization,
)
from pipelines.sync import clock_summary, sent_triggers, sync_clock, sync_inputs, uses_xrd_frames
from pipelines.xrd import (
    ChunkResult,
    IntegratorSetup,
    build_xrd_product,
    describe_integrator,
    integrate_chunk,
    open_xrd_frames,
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


@dataclass(frozen=True)
class OutputOptions:
    """Where and how a run's products go (its ``output`` section, for this run) and the
    provenance every product carries.

    ``product_dir``: ``<output.directory>/<run.name>/``; ``format``: ``netcdf`` or ``zarr``;
    ``overwrite``: replace existing products; ``report``: write the figures under
    ``report/``; ``run_name``: titles the figures; ``config_yaml``: the resolved run config
    as YAML text, stored in every product.
    """

    product_dir: Path
    format: str
    overwrite: bool
    report: bool
    run_name: str
    config_yaml: str

    @classmethod
    def of(cls, cfg: RunConfig) -> OutputOptions:
        """The options of a run config (its ``output`` and ``run`` sections)."""
        o = cfg.output
        return cls(product_dir=cfg.product_dir, format=o.format, overwrite=o.overwrite,
                   report=o.report, run_name=cfg.run.name, config_yaml=cfg.to_yaml())

    def path(self, product: str) -> Path:
        """The file of a product (``xrd`` → ``<product_dir>/xrd.nc``)."""
        return product_path(self.product_dir, product, self.format)

    def figure_path(self, name: str) -> Path:
        """Where a report figure goes (``sync.png`` → ``<product_dir>/report/sync.png``)."""
        return self.product_dir / "report" / name

    def write(self, product: str, ds: xr.Dataset, inputs: Sequence[Path],
              attrs: dict[str, Any] | None) -> Path:
        """Write a product (atomic, CF-checked, provenance-stamped)."""
        return write_product(ds, self.path(product), product=product,
                             config_yaml=self.config_yaml, inputs=list(inputs),
                             extra_attrs=attrs, overwrite=self.overwrite, fmt=self.format)


# --------------------------------------------------------------------------- tasks


@task(name="read electrochemistry", cache_policy=NO_CACHE)
def read_echem_task(section: EchemSection) -> xr.Dataset:
    """Cycler files → normalised Dataset with x_li and the Faraday-expected fraction."""
    return read_echem_section(section)


@task(name="open xrd frames", cache_policy=NO_CACHE)
def open_xrd_task(section: XrdSection) -> FrameSource:
    """The xrd section's frame files, opened lazily (nothing integrated yet)."""
    return open_xrd_frames(section)


@task(name="fit clock", cache_policy=NO_CACHE)
def sync_task(section: SyncSection, echem: xr.Dataset, sent_epoch_s: np.ndarray | None
              ) -> tuple[ClockModel, np.ndarray | None]:
    """The clock model: trigger fit (sync.method triggers) or absolute timestamps."""
    clock, recorded = sync_clock(section, echem, sent_epoch_s)
    if recorded is not None:
        get_run_logger().info("%s", clock_summary(clock))
    return clock, recorded


@task(name="write echem.nc", cache_policy=NO_CACHE)
def write_echem_task(out: OutputOptions, echem: xr.Dataset, clock: ClockModel | None,
                     inputs: Sequence[Path]) -> Path:
    return out.write("echem", echem, inputs, clock.to_attrs() if clock else None)


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


@flow(name="reduce-xrd", validate_parameters=False)
def reduce_xrd(section: XrdSection, out: OutputOptions, source: FrameSource | None = None,
               meta: FrameMetadata | None = None,
               echem: xr.Dataset | None = None, clock: ClockModel | None = None,
               clock_inputs: Sequence[Path] = (), client_key: str | None = None,
               in_flight: int = 1, progress: ProgressCallback | None = None
               ) -> tuple[Path, xr.Dataset]:
    """Detector frames → ``xrd.nc``: chunk-sized integration tasks, then one product.

    The integrator is built once per geometry (per worker process); chunks follow the
    HDF5 chunking and ``xrd.integration.chunk_frames``; at most ``in_flight`` chunk tasks
    run at once (the Dask workers' threads), so the flow holds only the integrated
    patterns, filled into the product's arrays as chunks finish. With ``clock`` and
    ``echem`` the exposure intervals are put on the potentiostat clock and the
    electrochemistry is averaged over each (``time``, ``time_start``, ``voltage_V``, …);
    ``clock_inputs`` (the files the clock and the electrochemistry come from) join the
    product's inputs.
    """
    from operando.echem.attach import exposure_average

    log = get_run_logger()
    if source is None:
        source = open_xrd_task(section)
    if meta is None:
        meta = source.metadata()
    setup = IntegratorSetup.from_section(section.integration, source)
    # built once per worker (cached there); asking for it first fails early on a bad
    # geometry or mask, before any chunk is read
    integ = (describe_integrator(setup) if client_key is None else
             _CLIENTS[client_key].submit(describe_integrator, setup, pure=False).result())
    norm = monitor_normalization(meta.monitor, stream="xrd", per="frame",
                                 source=meta.monitor_source) \
        if section.normalize_by_monitor else None
    if clock is not None and meta.epoch_s is None:
        raise ValueError(f"sync: the xrd frames of {source.files[0]} carry no timestamps to "
                         "put on the potentiostat clock; name them with xrd.timestamp_path")
    chunks = source.chunks(section.integration.chunk_frames)
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
        count, note = exposure_count_time(meta.count_time_s, stream="xrd", items="frames",
                                          source=meta.count_time_source)
        if note:
            log.warning("%s", note)
        t_start = clock.to_potentiostat(meta.epoch_s)
        t_end = clock.to_potentiostat(meta.epoch_s + count)
        if echem is not None:
            points = exposure_average(echem, t_start, t_end, dim="time")
    prod = build_xrd_product(source, meta, setup, integ, intensity, sigma, n_invalid,
                             cake=cake, cake_sigma=cake_sigma, time_start_s=t_start,
                             time_end_s=t_end, echem_points=points,
                             normalized=norm is not None)
    ds, attrs, inputs = prod.dataset, prod.attrs, prod.inputs
    if clock is not None:
        attrs.update(clock.to_attrs())
        inputs += list(clock_inputs)
    ds.attrs.update(attrs)  # the in-memory product carries them too (peaks reads the PONI)
    path = out.write("xrd", ds, inputs, attrs)
    log.info("xrd: wrote %s", path)
    return path, ds


# --------------------------------------------------------------------------- streams


@task(name="write product", cache_policy=NO_CACHE)
def write_stream_task(out: OutputOptions, product: StreamProduct,
                      extra_inputs: Sequence[Path] = ()) -> Path:
    """Write a stream's product (atomic, provenance-stamped) and log its notes."""
    log = get_run_logger()
    for note in product.notes:
        log.info("%s", note)
    path = out.write(product.name, product.dataset, [*product.inputs, *extra_inputs],
                     product.attrs)
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
def peaks_task(section: PeaksSection, xrd: xr.Dataset, echem: xr.Dataset | None,
               run_name: str, client_key: str | None,
               progress: ProgressCallback | None) -> StreamProduct:
    from pipelines.peaks import build_peaks

    return build_peaks(section, xrd, echem=echem, run_name=run_name,
                       map_units=_dask_runner(client_key), progress=progress)


@task(name="reduce xanes", cache_policy=NO_CACHE)
def xanes_task(section: XanesSection, echem: xr.Dataset | None, clock: ClockModel | None,
               run_name: str, progress: ProgressCallback | None) -> StreamProduct:
    from pipelines.xanes import build_xanes

    return build_xanes(section, echem=echem, clock=clock, run_name=run_name,
                       progress=progress)


@task(name="reduce confocal", cache_policy=NO_CACHE)
def confocal_task(section: ConfocalSection, peaks: PeaksSection | None,
                  echem: xr.Dataset | None, clock: ClockModel | None, run_name: str,
                  client_key: str | None, progress: ProgressCallback | None) -> StreamProduct:
    from pipelines.confocal import build_confocal

    return build_confocal(section, peaks=peaks, run_name=run_name, echem=echem, clock=clock,
                          map_units=_dask_runner(client_key), progress=progress)


@task(name="reduce kinetics", cache_policy=NO_CACHE)
def kinetics_task(section: KineticsSection, progress: ProgressCallback | None
                  ) -> StreamProduct:
    from pipelines.kinetics import build_kinetics

    return build_kinetics(section, progress=progress)


# --------------------------------------------------------------------------- run


def _figures(out: OutputOptions, result: ReduceResult, figures: dict[str, Any]) -> None:
    """Save a product's figures under ``report/`` (when ``output.report``)."""
    if not out.report:
        return
    for fname, fig in figures.items():
        result.figures.append(figure_task(fig, out.figure_path(fname)))


def _plan(cfg: RunConfig, out: OutputOptions, only: Sequence[str] | None,
          result: ReduceResult) -> set[str]:
    """The products to write: ``only`` (default: every stream with a section), without the
    ones that exist when ``output.overwrite`` is false (recorded in ``result.skipped``),
    with ``xrd`` when ``peaks`` needs an ``xrd.nc`` that does not exist yet."""
    log = get_run_logger()
    wanted = set(only) if only else {s for s in REDUCED_STREAMS if getattr(cfg, s) is not None}
    unknown = wanted - set(REDUCED_STREAMS)
    if unknown:
        raise ValueError(f"--only: expected some of {', '.join(REDUCED_STREAMS)}, found "
                         f"{', '.join(sorted(unknown))}")
    for s in sorted(wanted):
        if getattr(cfg, s) is None:
            raise ValueError(f"{s}: asked for, but the config has no '{s}' section")
    for s in sorted(wanted):
        if out.path(s).exists() and not out.overwrite:
            wanted.discard(s)
            result.skipped[s] = f"{out.path(s)} exists and output.overwrite is false (kept)"
    if "peaks" in wanted and "xrd" not in wanted and not out.path("xrd").exists():
        log.info("peaks: no %s yet; reducing the XRD first", out.path("xrd"))
        wanted.add("xrd")
    for s, why in result.skipped.items():
        log.info("%s: skipped, %s", s, why)
    return wanted


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
    out = OutputOptions.of(cfg)
    result = ReduceResult(product_dir=cfg.product_dir)
    wanted = _plan(cfg, out, only, result)
    xrd, peaks, confocal, xanes, kinetics = (
        getattr(cfg, s) if s in wanted else None
        for s in ("xrd", "peaks", "confocal", "xanes", "kinetics"))

    # echem → sync: the clock every X-ray stream is put on
    sync = cfg.sync if wanted & {"echem", "xrd", "xanes", "confocal"} else None
    needs_echem = "echem" in wanted or (sync is not None and bool(
        wanted & {"xrd", "xanes", "confocal"}))
    echem = read_echem_task(cfg.echem) if needs_echem and cfg.echem is not None else None
    result.echem = echem
    source = open_xrd_task(cfg.xrd) if cfg.xrd is not None and (
        "xrd" in wanted or (sync is not None and uses_xrd_frames(sync))) else None
    meta = source.metadata() if source is not None else None
    clock = None
    if sync is not None and echem is not None:
        sent = sent_triggers(sync, meta)
        clock, recorded = sync_task(sync, echem, sent)
        result.clock = clock
        if recorded is not None and sent is not None:
            _figures(out, result, {"sync.png": sync_figure(
                clock, sent, recorded, title=f"{out.run_name}: trigger clock sync")})
    clock_inputs = sync_inputs(sync, echem, clock) if clock is not None else []

    if "echem" in wanted and echem is not None:
        result.products["echem"] = write_echem_task(out, echem, clock,
                                                    sync_inputs(sync, echem, clock))
        _figures(out, result, {"echem.png": echem_figure(
            echem, title=f"{out.run_name}: electrochemistry")})
    # xrd → peaks, and confocal, on one Dask cluster
    if xrd is not None or peaks is not None or confocal is not None:
        with dask_client(scheduler) as (key, workers):
            xrd_ds = None
            if xrd is not None:
                runner = reduce_xrd.with_options(
                    task_runner=ThreadPoolTaskRunner(max_workers=workers))
                path, xrd_ds = runner(xrd, out, source=source, meta=meta, echem=echem,
                                      clock=clock, clock_inputs=clock_inputs, client_key=key,
                                      in_flight=workers, progress=progress)
                result.products["xrd"] = path
                _figures(out, result, {"xrd.png": xrd_figure(
                    xrd_ds, title=f"{out.run_name}: integrated XRD")})
            if peaks is not None:
                if xrd_ds is None:
                    log.info("peaks: reading %s", out.path("xrd"))
                    xrd_ds = read_product(out.path("xrd"))
                fits = peaks_task(peaks, xrd_ds, echem, out.run_name, key, progress)
                # the clock that put xrd.nc on the potentiostat time base
                fits.attrs.update({k: v for k, v in xrd_ds.attrs.items()
                                   if k.startswith("clock_") and k not in fits.attrs})
                result.products["peaks"] = write_stream_task(out, fits, [out.path("xrd")])
                _figures(out, result, fits.figures)
            if confocal is not None:  # its own peaks section, else the top-level one
                depth = confocal_task(confocal, cfg.peaks, echem, clock, out.run_name, key,
                                      progress)
                result.products["confocal"] = write_stream_task(out, depth, clock_inputs)
                _figures(out, result, depth.figures)
    if xanes is not None:
        spectra = xanes_task(xanes, echem, clock, out.run_name, progress)
        result.products["xanes"] = write_stream_task(out, spectra, clock_inputs)
        _figures(out, result, spectra.figures)
    if kinetics is not None:
        kin = kinetics_task(kinetics, progress)
        result.products["kinetics"] = write_stream_task(out, kin)
        _figures(out, result, kin.figures)
    return result
