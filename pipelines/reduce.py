"""The reduce flow: one run config → products in ``<output.directory>/<run.name>/``.

Reads like DESIGN.md's table; each stream's adapter (``pipelines/<stream>.py``) turns its own
config section into reader arguments and options, this module only wires them:

1. electrochemistry (:mod:`pipelines.echem`): cycler files → ``echem.nc`` (x_li, Faraday
   fraction, segments);
2. sync (:mod:`pipelines.sync`): the trigger record against the reference X-ray stream's
   frame timestamps → a clock model (offset, drift, residuals) stored in the attributes of
   every product;
3. XRD (:mod:`pipelines.xrd`): detector frames → azimuthal integration in chunk-sized work
   units → ``xrd.nc`` with the electrochemistry averaged over each exposure;
4. peaks (:mod:`pipelines.peaks`): ``xrd.nc`` → peak fits in blocks of frames, lattice
   parameters, Li content and phase fractions → ``peaks.nc``;
5. confocal (:mod:`pipelines.confocal`): depth-resolved scans (frames integrated in
   chunk-sized units, or energy-dispersive spectra) → per-(pass, depth) peak fits, local
   state of charge, front arrival, spread and relaxation → ``confocal.nc``;
6. XANES (:mod:`pipelines.xanes`): scans → normalisation, energy alignment, batched
   linear-combination fits → ``xanes.nc``;
7. kinetics (:mod:`pipelines.kinetics`): CVs at several scan rates (cell files and/or an
   SECCM map) → Randles–Sevcik diffusion coefficients → ``kinetics.nc``.

Dependencies: echem → sync → xrd → peaks; sync → xanes, confocal; kinetics alone.

:func:`reduce_run` (``operando reduce``, the demo, a deployment) first decides per product
what is fresh, stale or missing (:func:`pipelines.cache.plan_run`: no Prefect, no Dask);
only when something is to be done does it enter the Prefect flow :func:`reduce_flow`. Every
work unit runs through one :class:`pipelines.runner.Runner` (cached in
``<product_dir>/.cache/``, retried on transient I/O errors, on the Dask client when there
is one — started only when a unit is not in the cache). A stream that fails is recorded
with its reason (traceback in ``<product_dir>/reduce.log``) and the streams that do not
depend on it go on.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import xarray as xr
from prefect import flow, get_run_logger

from operando.config import (
    ConfocalSection,
    KineticsSection,
    PeaksSection,
    RunConfig,
    XanesSection,
    XrdSection,
    load_config,
)
from operando.echem.attach import exposure_average
from operando.echem.sync import ClockModel
from operando.io.cache import IDENTITY_ATTR, log_file_handler
from operando.io.figures import save_figure
from operando.io.product_stream import ProductWriter, stream_product
from operando.io.products import open_product, product_path, write_product
from operando.io.xrd.frames import FrameMetadata, FrameSource
from operando.report.echem import echem_figure
from operando.report.live import LIVE_TAG, live_marker, retitle
from operando.report.xrd import sync_figure, xrd_figure
from operando.xrd.product import FRAME_DIM
from pipelines.cache import (
    LOG_NAME,
    REDUCED_STREAMS,
    cache_dir,
    code_version,
    identity_json,
    in_live_pass,
    live_attrs,
    plan_run,
)
from pipelines.cluster import dask_client
from pipelines.echem import read_echem_section
from pipelines.lifeline import ensure_lifeline, sigterm_as_exit
from pipelines.runner import Runner
from pipelines.stream import (
    ProgressCallback,
    StreamProduct,
    exposure_count_time,
    monitor_normalization,
    timestamp_qc,
)
from pipelines.sync import (
    clock_coverage_note,
    clock_sources,
    clock_summary,
    confocal_pulses,
    sent_triggers,
    stream_clock,
    sync_inputs,
    uses_xrd_frames,
)
from pipelines.xrd import (
    IntegratorSetup,
    build_xrd_product,
    chunk_rows,
    describe_integrator,
    integrate_frames,
    open_xrd_frames,
    xrd_placeholders,
)

__all__ = ["REDUCED_STREAMS", "OutputOptions", "ReduceFailed", "ReduceResult", "reduce_flow",
           "reduce_run"]

#: the run's log file (decisions, per-unit lines, tracebacks of failed streams)
_log = logging.getLogger("operando.reduce")
_log.propagate = False  # to the run's log file; the console shows Prefect's lines (-v)


@dataclass
class ReduceResult:
    """What a reduce run did, per product: ``products`` written (paths), ``fresh`` (up to
    date, not touched), ``kept`` (stale, kept by ``--keep``: why), ``failed`` (the reason),
    ``skipped`` (not run: why, e.g. what it depends on failed); the figures, the clock, the
    echem Dataset, the work units per stream (``units[stream]["computed"|"cached"]``),
    whether the Prefect flow ran, and the log file."""

    product_dir: Path
    products: dict[str, Path] = field(default_factory=dict)
    figures: list[Path] = field(default_factory=list)
    clock: ClockModel | None = None
    #: X-ray stream → the clock it was put on (its own, or the one it borrows)
    clocks: dict[str, ClockModel] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    echem: xr.Dataset | None = None
    fresh: dict[str, str] = field(default_factory=dict)
    kept: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    #: QC warnings of the run (recorded as flags in the products too), for its summary
    warnings: list[str] = field(default_factory=list)
    units: dict[str, dict[str, int]] = field(default_factory=dict)
    flow_ran: bool = False
    dask_started: bool = False
    log_file: Path | None = None
    #: the run report page (report/index.html), when written
    report: Path | None = None

    def status(self) -> dict[str, tuple[str, str]]:
        """stream → (failed / written / fresh / kept (stale) / skipped, detail), in stream
        order (``sync`` when it failed or was skipped: it is no product of its own)."""
        rows: dict[str, tuple[str, str]] = {}
        syncs = sorted({k for t in (self.failed, self.skipped) for k in t
                        if k.startswith("sync:")})
        for s in ("echem", "sync", *syncs, *REDUCED_STREAMS[1:]):
            for label, table in (("failed", self.failed), ("written", self.products),
                                 ("fresh", self.fresh), ("kept (stale)", self.kept),
                                 ("skipped", self.skipped)):
                if s in table:
                    rows[s] = (label, str(table[s]))
                    break
        return rows


class ReduceFailed(ValueError):
    """One or more streams failed (bad input: a ``ValueError``); ``result`` holds what was
    written and every reason."""

    def __init__(self, result: ReduceResult) -> None:
        self.result = result
        where = f" (traceback in {result.log_file})" if result.log_file else ""
        super().__init__("; ".join(f"{s}: {why}" for s, why in result.failed.items()) + where)


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

    def with_overwrite(self) -> OutputOptions:
        """The same options replacing existing products (the plan decided to rewrite)."""
        return replace(self, overwrite=True)

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

    def stream(self, product: str, ds: xr.Dataset, inputs: Sequence[Path],
               attrs: dict[str, Any] | None, dim: str) -> contextlib.AbstractContextManager[
                   ProductWriter]:
        """Write a product whose lazy variables arrive in row blocks along ``dim``
        (:func:`operando.io.product_stream.stream_product`: atomic, CF-checked,
        provenance-stamped, renamed into place only when every row was written)."""
        return stream_product(ds, self.path(product), dim=dim, product=product,
                              config_yaml=self.config_yaml, inputs=list(inputs),
                              extra_attrs=attrs, overwrite=self.overwrite, fmt=self.format)


class _Log:
    """Log lines to the flow's Prefect logger and to the run's log file."""

    def __init__(self) -> None:
        self.prefect = get_run_logger()

    def info(self, msg: str, *args: Any) -> None:
        self.prefect.info(msg, *args)
        _log.info(msg, *args)

    def warning(self, msg: str, *args: Any) -> None:
        self.prefect.warning(msg, *args)
        _log.warning(msg, *args)


@dataclass
class _Run:
    """The state a flow run passes between its stages."""

    cfg: RunConfig
    out: OutputOptions
    compute: dict[str, str]
    result: ReduceResult
    runner: Runner
    log: _Log
    progress: ProgressCallback | None
    echem: xr.Dataset | None = None
    source: FrameSource | None = None
    meta: FrameMetadata | None = None
    clock: ClockModel | None = None
    clock_inputs: list[Path] = field(default_factory=list)
    #: source stream → its own clock and the files it came from (``sync.streams``)
    own_clocks: dict[str, tuple[ClockModel, list[Path]]] = field(default_factory=dict)
    #: X-ray stream → the stream whose own clock it is on
    sources: dict[str, str] = field(default_factory=dict)
    #: what did not complete: streams, and "echem-data" / "frames" / "clock" / "clock:<s>"
    broken: set[str] = field(default_factory=set)

    def clock_of(self, stream: str) -> tuple[ClockModel | None, list[Path]]:
        """The clock ``stream`` is on and its files (None, [] without a sync section)."""
        src = self.sources.get(stream)
        if src is None or src not in self.own_clocks:
            return None, []
        clock, files = self.own_clocks[src]
        return clock, list(files)

    def clock_needs(self, stream: str) -> tuple[str, ...]:
        """The marks a stream's stage needs for its clock (none without a sync section)."""
        src = self.sources.get(stream)
        return () if src is None else ("echem-data", _clock_mark(self, src))

    def _attrs(self, stream: str, ds: xr.Dataset, inputs: Sequence[Path],
               attrs: dict[str, Any] | None) -> dict[str, Any]:
        """``attrs`` with the product's identity (code, sections, input stamps) and, on a
        live pass, ``complete = 0`` and what ``ds`` covers (``frames_covered``, ...)."""
        a = dict(attrs or {})
        a[IDENTITY_ATTR] = identity_json(self.cfg, stream, inputs)
        a.update(live_attrs(stream, ds))
        return a

    def title(self, what: str = "", stream: str = "", ds: xr.Dataset | None = None) -> str:
        """A figure title: the run's name, ``what`` after a colon and, on a live pass,
        ``(live)`` — with what the ``stream``'s product ``ds`` covers when given (``(live: 12
        of ? frames)``); else :meth:`figures` fills it in once the product is known."""
        marker = ""
        if in_live_pass():
            marker = live_marker(live_attrs(stream, ds)) if ds is not None else LIVE_TAG
        return (f"{self.out.run_name}{': ' + what if what else ''}"
                f"{f' ({marker})' if marker else ''}")

    def _written(self, stream: str, path: Path) -> Path:
        self.result.products[stream] = path
        self.log.info("%s: wrote %s", stream, path)
        return path

    def write(self, stream: str, ds: xr.Dataset, inputs: Sequence[Path],
              attrs: dict[str, Any] | None) -> Path:
        """Write a product with its identity (code, sections, input stamps)."""
        return self._written(stream, self.out.write(stream, ds, inputs,
                                                    self._attrs(stream, ds, inputs, attrs)))

    @contextlib.contextmanager
    def stream(self, stream: str, ds: xr.Dataset, inputs: Sequence[Path],
               attrs: dict[str, Any] | None, dim: str) -> Iterator[ProductWriter]:
        """:meth:`write` for a product written block by block as its units finish
        (:meth:`OutputOptions.stream`); recorded as written when the block ends."""
        with self.out.stream(stream, ds, inputs, self._attrs(stream, ds, inputs, attrs),
                             dim) as writer:
            yield writer
        self._written(stream, self.out.path(stream))

    def flag(self, note: str) -> None:
        """A QC warning: to the log and to the run's summary (``result.warnings``)."""
        self.log.warning("%s", note)
        self.result.warnings.append(note)

    def figures(self, figures: dict[str, Any], stream: str = "",
                ds: xr.Dataset | None = None) -> None:
        """Save figures under ``report/`` (when ``output.report``); on a live pass the
        ``(live)`` of their titles says what the ``stream``'s product ``ds`` covers."""
        if not self.out.report:
            return
        marker = live_marker(live_attrs(stream, ds)) if ds is not None else ""
        for fname, fig in figures.items():
            if marker:
                retitle(fig, f"({LIVE_TAG})", f"({marker})")
            self.result.figures.append(save_figure(fig, self.out.figure_path(fname)))

    def stage(self, stream: str, fn: Callable[[], None], *, needs: Sequence[str] = (),
              marks: str | None = None) -> None:
        """Run one stream's stage; a failure is recorded under ``stream`` (reason; the
        traceback to the log file) and marks ``marks`` (default: ``stream``) as broken
        without stopping the others; the stage is skipped when one of ``needs`` is broken
        (``echem-data``: the cycler data, ``frames``: the xrd frames, ``clock``: the sync,
        or a stream)."""
        mark = marks or stream
        blocked = [n for n in needs if n in self.broken]
        if blocked or stream in self.result.failed:
            self.broken.add(mark)
            if stream not in self.result.failed:
                what = _MARKS.get(blocked[0], blocked[0])
                self.result.skipped[stream] = f"{what} did not complete"
                self.log.warning("%s: skipped, %s did not complete", stream, what)
            return
        try:
            fn()
        except Exception as exc:  # isolated per stream, reported
            reason = str(exc) or type(exc).__name__
            self.result.failed[stream] = reason
            self.broken.add(mark)
            _log.error("%s failed: %s", stream, reason, exc_info=exc)
            self.log.prefect.info("%s failed: %s", stream, reason)  # console: the CLI's table


#: what a broken mark is, for the "skipped" reasons
_MARKS = {"echem-data": "echem", "frames": "xrd", "clock": "sync", "clock:xrd": "sync:xrd",
          "clock:xanes": "sync:xanes", "clock:confocal": "sync:confocal"}


def _clock_mark(run: _Run, source: str) -> str:
    """The broken-mark of a source stream's clock: ``clock`` for the reference stream (the
    ``sync`` stage), ``clock:<stream>`` for another (the ``sync:<stream>`` stage)."""
    sync = run.cfg.sync
    return "clock" if sync is None or source == sync.reference_stream else f"clock:{source}"


# --------------------------------------------------------------------------- stages


def _echem_and_clock(run: _Run) -> None:
    """The electrochemistry, the xrd frames a clock needs, one clock per source stream (the
    reference stream's first); echem.nc (on the reference stream's clock)."""
    cfg, want = run.cfg, run.compute
    xray = [s for s in ("xrd", "xanes", "confocal") if s in want and getattr(cfg, s)]
    sync = cfg.sync if "echem" in want or xray else None
    needs_echem = "echem" in want or (sync is not None and bool(xray))
    if needs_echem and cfg.echem is not None:
        section = cfg.echem

        def read_cycler() -> None:
            run.echem = read_echem_section(section)
            # a start not read from the cycler file itself (an .mpr still being written),
            # or a configured start that disagrees with it: to the log and the summary
            for note in run.echem.attrs.get("start_time_notes", ()):
                run.flag(f"echem: {note}")
        run.stage("echem", read_cycler, marks="echem-data")
        run.result.echem = run.echem
    if sync is not None:
        run.sources = clock_sources(sync, xray)
    wanted = set(run.sources.values()) | ({sync.reference_stream} if sync and "echem" in want
                                          else set())
    xrd_frames = sync is not None and "xrd" in wanted and uses_xrd_frames(sync, ["xrd"])
    if cfg.xrd is not None and ("xrd" in want or xrd_frames):
        def open_frames() -> None:
            run.source = open_xrd_frames(cfg.xrd)
            run.meta = run.source.metadata()
        run.stage("xrd", open_frames, marks="frames")
    if sync is not None:
        for src in sorted(wanted, key=lambda s: s != sync.reference_stream):
            name = "sync" if src == sync.reference_stream else f"sync:{src}"
            needs = ("echem-data", "frames") if src == "xrd" and xrd_frames else ("echem-data",)
            run.stage(name, lambda src=src: _clock(run, sync, src),
                      marks=_clock_mark(run, src), needs=needs)
    if "echem" in want and run.echem is not None:
        def write_echem() -> None:
            clock = run.clock
            run.write("echem", run.echem, sync_inputs(sync, run.echem, clock),
                      clock.to_attrs() if clock else None)
            run.figures({"echem.png": echem_figure(
                run.echem, title=run.title("electrochemistry", "echem", run.echem))})
        run.stage("echem", write_echem, needs=("clock",) if sync is not None else ())


def _pulses(run: _Run, sync: Any, stream: str) -> Any:
    """The pulses ``stream``'s controller sent (UTC epoch s), or None (timestamps)."""
    if sync.settings(stream).method != "triggers":
        return None
    if stream == "xrd":
        return sent_triggers(sync, run.meta)
    if stream == "xanes":
        from pipelines.xanes import xanes_pulses

        return xanes_pulses(run.cfg.xanes, sync.settings("xanes").pulse)
    return confocal_pulses(run.cfg.confocal)


def _clock(run: _Run, sync: Any, stream: str) -> None:
    """The own clock of a source stream; the reference stream's is also the run's."""
    sent = _pulses(run, sync, stream)
    clock, recorded = stream_clock(sync, stream, run.echem, sent)
    inputs = sync_inputs(sync, run.echem, clock)
    run.own_clocks[stream] = (clock, inputs)
    for s, src in run.sources.items():
        if src == stream:
            run.result.clocks[s] = clock
    if stream == sync.reference_stream:
        run.clock = run.result.clock = clock
        run.clock_inputs = inputs
    if recorded is not None:
        run.log.info("%s", clock_summary(clock))
        note = clock_coverage_note(clock)
        if note:
            run.flag(note)
        if sent is not None:
            ref = stream == sync.reference_stream
            run.figures({"sync.png" if ref else f"sync_{stream}.png": sync_figure(
                clock, sent, recorded, title=f"{run.out.run_name}: "
                f"{'' if ref else stream + ' '}trigger clock sync")})


def reduce_xrd(run: _Run, section: XrdSection) -> None:
    """Detector frames → ``xrd.nc``: chunk-sized integration units through the runner, each
    written into the product as it finishes (the flow never holds the run's patterns).

    The integrator is built once per geometry (per worker process); chunks follow the HDF5
    chunking and ``xrd.integration.chunk_frames``. With a clock and the electrochemistry
    the exposure intervals are put on the potentiostat clock and the electrochemistry is
    averaged over each (``time``, ``time_start``, ``voltage_V``, …); the files of the
    clock and the electrochemistry join the product's inputs.
    """
    source, meta, echem = run.source, run.meta, run.echem
    clock, clock_inputs = run.clock_of("xrd")
    if source is None or meta is None:
        raise ValueError("xrd: the frames were not opened")
    setup = IntegratorSetup.from_section(section.integration, source)
    # every worker builds the integrator at once when the cluster starts (not one after the
    # other inside the stage); asking for it first fails early on a bad geometry or mask
    run.runner.on_workers(describe_integrator, setup)
    integ = run.runner.run(describe_integrator, setup, stream="xrd")
    norm = monitor_normalization(meta.monitor, stream="xrd", per="frame",
                                 source=meta.monitor_source) \
        if section.normalize_by_monitor else None
    if clock is not None and meta.epoch_s is None:
        raise ValueError(f"sync: the xrd frames of {source.files[0]} carry no timestamps to "
                         "put on the potentiostat clock; name them with xrd.timestamp_path")
    chunk = section.integration.chunk_frames
    run.log.info("xrd: %d frames of %s in %d chunks (%s)%s", source.n_frames,
                 source.frame_shape, len(source.chunks(chunk)),
                 source.describe().get("layout", "?"),
                 f"; {source.n_pending} frames pending" if source.n_pending else "")
    t_start = t_end = points = None
    qc: dict[str, Any] = {}
    if meta.epoch_s is not None:
        qc, qc_note = timestamp_qc(meta.epoch_s, stream="xrd", items="frames",
                                   source=meta.timestamp_source)
        if qc_note:
            run.flag(qc_note)
    if clock is not None and meta.epoch_s is not None:
        count, note = exposure_count_time(meta.count_time_s, stream="xrd", items="frames",
                                          source=meta.count_time_source)
        if note:
            run.log.warning("%s", note)
        t_start = clock.to_potentiostat(meta.epoch_s)
        t_end = clock.to_potentiostat(meta.epoch_s + count)
        if echem is not None:
            points = exposure_average(echem, t_start, t_end, dim="time")
    prod = build_xrd_product(source, meta, setup, integ,
                             **xrd_placeholders(source.n_frames, integ, chunk),
                             time_start_s=t_start, time_end_s=t_end, echem_points=points,
                             normalized=norm is not None)
    attrs, inputs = prod.attrs, prod.inputs
    attrs.update(qc)
    if clock is not None:
        attrs.update(clock.to_attrs())
        inputs += clock_inputs
    with run.stream("xrd", prod.dataset, inputs, attrs, FRAME_DIM) as out:
        for res in integrate_frames(
                source, setup, run.runner, chunk_frames=chunk, normalization=norm,
                progress=(lambda d, t: run.progress("xrd", d, t)) if run.progress else None):
            out.write(res.start, res.stop, chunk_rows(res))
    with open_product(run.out.path("xrd")) as ds:
        run.figures({"xrd.png": xrd_figure(ds, title=run.title("integrated XRD", "xrd", ds))})


def _write_stream(run: _Run, product: StreamProduct, extra_inputs: Sequence[Path] = ()
                  ) -> None:
    for note in product.notes:
        run.log.info("%s", note)
    run.write(product.name, product.dataset, [*product.inputs, *extra_inputs],
              product.attrs)
    run.figures(product.figures, product.name, product.dataset)


def _peaks(run: _Run, section: PeaksSection) -> None:
    from pipelines.peaks import build_peaks

    # read block by block as the fit units are submitted (the run is never held whole)
    with open_product(run.out.path("xrd")) as xrd_ds:
        fits = build_peaks(section, xrd_ds, echem=run.echem, run_name=run.title(),
                           map_units=run.runner.mapper("peaks"), progress=run.progress)
        # the clock that put xrd.nc on the potentiostat time base
        fits.attrs.update({k: v for k, v in xrd_ds.attrs.items()
                           if k.startswith("clock_") and k not in fits.attrs})
    _write_stream(run, fits, [run.out.path("xrd")])


def _confocal(run: _Run, section: ConfocalSection) -> None:
    from pipelines.confocal import build_confocal

    # its own peaks section, else the top-level one
    clock, clock_inputs = run.clock_of("confocal")
    depth = build_confocal(section, peaks=run.cfg.peaks, run_name=run.title(),
                           echem=run.echem, clock=clock,
                           map_units=run.runner.mapper("confocal"), progress=run.progress)
    _write_stream(run, depth, clock_inputs)


def _xanes_unit(section: XanesSection, echem: xr.Dataset | None, clock: ClockModel | None,
                run_name: str, progress: ProgressCallback | None) -> StreamProduct:
    """The XANES work unit: the whole series (one batched LCF)."""
    from pipelines.xanes import build_xanes

    return build_xanes(section, echem=echem, clock=clock, run_name=run_name,
                       progress=progress)


def _kinetics_unit(section: KineticsSection, progress: ProgressCallback | None
                   ) -> StreamProduct:
    """The kinetics work unit: the cell CVs and the map."""
    from pipelines.kinetics import build_kinetics

    return build_kinetics(section, progress=progress)


# --------------------------------------------------------------------------- run


@flow(name="operando-reduce", validate_parameters=False)
def reduce_flow(cfg: RunConfig, compute: dict[str, str], scheduler: Any = "local",
                progress: ProgressCallback | None = None,
                result: ReduceResult | None = None, refresh: bool = False) -> ReduceResult:
    """Write the products of ``compute`` (stream → why, from
    :func:`pipelines.cache.plan_run`), in the order of the dependency graph; the
    electrochemistry and the clock are computed when a product needs them. ``scheduler``:
    see :func:`pipelines.cluster.dask_client` (started only when a work unit is not in the
    cache). ``refresh``: recompute every work unit too (``--overwrite``), else cached
    units are reused. Fills and returns ``result``."""
    result = result or ReduceResult(product_dir=cfg.product_dir)
    result.flow_ran = True
    log = _Log()
    for s, why in compute.items():
        log.info("%s: reducing (%s)", s, why)
    with contextlib.ExitStack() as stack:
        runner = Runner(cache_dir(cfg.product_dir), code_version(), logger=log,
                        refresh=refresh,
                        client=lambda: stack.enter_context(dask_client(scheduler)))
        run = _Run(cfg, OutputOptions.of(cfg).with_overwrite(), compute, result, runner, log,
                   progress)
        _echem_and_clock(run)
        if "xrd" in compute and cfg.xrd is not None:
            run.stage("xrd", lambda: reduce_xrd(run, cfg.xrd),
                      needs=("frames", *run.clock_needs("xrd")))
        if "peaks" in compute and cfg.peaks is not None:
            run.stage("peaks", lambda: _peaks(run, cfg.peaks), needs=("xrd",))
        if "confocal" in compute and cfg.confocal is not None:
            run.stage("confocal", lambda: _confocal(run, cfg.confocal),
                      needs=run.clock_needs("confocal"))
        if "xanes" in compute and cfg.xanes is not None:
            run.stage("xanes", lambda: _write_stream(run, runner.run(
                _xanes_unit, cfg.xanes, run.echem, run.clock_of("xanes")[0],
                run.title(), progress, stream="xanes", cache=False, local=True),
                run.clock_of("xanes")[1]), needs=run.clock_needs("xanes"))
        if "kinetics" in compute and cfg.kinetics is not None:
            run.stage("kinetics", lambda: _write_stream(run, runner.run(
                _kinetics_unit, cfg.kinetics, progress, stream="kinetics", cache=False,
                local=True)))
        result.units = {s: dict(c) for s, c in runner.counts.items()}
        result.dask_started = runner.client_started and scheduler not in (None, "none", "sync")
    return result


def _write_report(cfg: RunConfig) -> Path | None:
    """The run report page (:func:`pipelines.report.write_report`); a page that cannot be
    written is a warning in the log, never a failed reduce."""
    from pipelines.report import write_report

    try:
        path = write_report(cfg)
    except Exception as exc:  # the products are written; the page is a view of them
        _log.warning("report: index.html not written: %s", exc, exc_info=exc)
        return None
    _log.info("report: wrote %s", path)
    return path


def reduce_run(config: Path | str | RunConfig, only: Sequence[str] | None = None,
               scheduler: Any = "local", overwrite: bool | None = None,
               progress: ProgressCallback | None = None, *,
               raise_on_failure: bool = True) -> ReduceResult:
    """Reduce one run: what is stale or missing is recomputed, what is fresh is left alone.

    ``only`` limits the products (``echem``, ``xrd``, ``peaks``, ``confocal``, ``xanes``,
    ``kinetics``); ``overwrite``: True recomputes every product and every work unit
    (``--overwrite``), False
    keeps stale ones with a warning (``--keep``), None (default) follows
    ``output.overwrite`` (true: recompute all) and else recomputes stale ones.
    ``scheduler``: see :func:`pipelines.cluster.dask_client`. The decision is made before
    the Prefect flow; with nothing to do neither Prefect nor Dask is started.
    A stream that fails does not stop the others; ``ReduceFailed`` (with the result) is
    raised at the end when one did, unless ``raise_on_failure`` is False.
    """
    cfg = config if isinstance(config, RunConfig) else load_config(config)
    mode = ("overwrite" if overwrite or (overwrite is None and cfg.output.overwrite)
            else "keep" if overwrite is False else "stale")
    plan = plan_run(cfg, only, mode)
    result = ReduceResult(product_dir=cfg.product_dir, fresh=dict(plan.fresh),
                          kept=dict(plan.kept), log_file=cfg.product_dir / LOG_NAME)
    handler = log_file_handler(result.log_file)
    _log.addHandler(handler)
    level = _log.level
    _log.setLevel(logging.INFO)
    try:
        _log.info("reduce %s (%s): %s", cfg.run.name, mode, "; ".join(
            f"{s}: {why}" for s, why in plan.compute.items()) or "nothing to do")
        for s, why in plan.kept.items():
            _log.warning("%s: stale, kept (--keep): %s", s, why)
        if not plan.nothing_to_do:
            # no server, cluster or worker outlives the run, however it ends
            ensure_lifeline()
            with sigterm_as_exit():
                reduce_flow(cfg, plan.compute, scheduler=scheduler, progress=progress,
                            result=result, refresh=mode == "overwrite")
        for s, (label, why) in result.status().items():
            _log.info("%s: %s %s", s, label, why)
        # the page is a view of the products: rewritten when one was (re)computed or kept
        # stale, or when it is missing; an unchanged rerun leaves it as it is (and fast)
        page = cfg.product_dir / "report" / "index.html"
        if cfg.output.report and (not plan.nothing_to_do or plan.kept or not page.exists()):
            result.report = _write_report(cfg)
        elif page.exists():
            result.report = page
    finally:
        _log.removeHandler(handler)
        _log.setLevel(level)
        handler.close()
    if result.failed and raise_on_failure:
        raise ReduceFailed(result)
    return result
