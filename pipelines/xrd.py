"""XRD integration work units: what the ``reduce_xrd`` flow and the CLI call, chunk by chunk.

* :class:`IntegratorSetup` names the geometry (PONI), mask, dark, flat, frame shape and
  options: small and picklable, so it travels to Dask workers; :meth:`IntegratorSetup.key`
  hashes the *content* of those files with the rest; :meth:`IntegratorSetup.from_section`
  makes one from an ``integration`` config section.
* :func:`cached_integrator` builds the :class:`~operando.xrd.integrate.BatchIntegrator` once
  per process and key (the CSR matrix costs seconds on a 4M detector), then reuses it;
  :func:`describe_integrator` says what a product needs to know about it (its axes).
* :func:`integrate_chunk` integrates frames ``[start, stop)`` of a
  :class:`~operando.io.xrd.frames.FrameSource`, reading and integrating sub-batches of at most
  ``SUB_BATCH_BYTES`` of raw frames: peak memory is bounded by the sub-batch, not the chunk.
* :func:`integrate_frames` runs every chunk of a source through a
  :class:`~pipelines.runner.Runner` (in this process, or one task per chunk on its Dask
  client: worker processes read their own frames) and yields the results in frame order.
* :func:`build_xrd_product` turns the frame metadata and the setup into the ``xrd.nc``
  product (Dataset, attributes, inputs): the one builder of the reduce flow and ``operando
  integrate``. Given :func:`xrd_placeholders` for the patterns, the Dataset is the product's
  frame, written by :func:`operando.io.product_stream.stream_product` chunk by chunk
  (:func:`chunk_rows`) as the chunks finish: the writer never holds the run.

Plain functions, no Prefect: the flow wraps them in tasks.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dask.array
import numpy as np

from operando.config import IntegrationSection, XrdSection
from operando.io.products import file_sha256
from operando.io.xrd.frames import (
    FrameMetadata,
    FrameSource,
    check_image_shape,
    open_frames,
    read_image,
)
from operando.io.xrd.geometry import poni_frame_shape, read_poni, read_poni_text
from operando.io.xrd.images import split_hdf5_url
from operando.xrd.integrate import BatchIntegrator, IntegrationError, IntegrationOptions
from operando.xrd.product import xrd_dataset
from pipelines.runner import Runner
from pipelines.stream import StreamProduct

if TYPE_CHECKING:
    import xarray as xr

__all__ = [
    "SUB_BATCH_BYTES",
    "ChunkResult",
    "IntegratorInfo",
    "IntegratorSetup",
    "build_xrd_product",
    "cached_integrator",
    "chunk_rows",
    "clear_integrator_cache",
    "describe_integrator",
    "integrate_chunk",
    "integrate_frames",
    "open_xrd_frames",
    "sub_batch_frames",
    "xrd_placeholders",
    "xrd_product_inputs",
]

#: raw frame bytes read and integrated at once inside a chunk (bounds a worker's memory)
SUB_BATCH_BYTES = 512 * 2**20
#: integrators kept per process (a 4M detector's takes ~0.3 GB)
_CACHE_SIZE = 2
_CACHE: OrderedDict[str, BatchIntegrator] = OrderedDict()
_CACHE_LOCK = threading.Lock()


def _content_token(spec: Path | None) -> str:
    """What identifies an input image: content hash of its file (+ HDF5 path), or "none"."""
    if spec is None:
        return "none"
    file, inner = split_hdf5_url(os.fspath(spec))
    return f"{file_sha256(file)}::{inner or ''}"


@dataclass(frozen=True)
class IntegratorSetup:
    """Everything an integrator is built from: paths and options only (small, picklable).

    ``mask``/``dark``/``flat`` are anything :func:`operando.io.xrd.frames.read_image` reads
    (EDF, TIFF, CBF, ``.npy``, ``file.h5::/path``); mask nonzero = masked.
    ``saturation_value``: raw values ≥ it are masked per frame (e.g.
    ``FrameSource.saturation_value``, the ``2**n − 1`` sentinel). ``flip_ud``: the frames
    are stored bottom-up relative to the PONI (e.g. TIFFs from some detectors and Dioptas'
    test data) and are flipped vertically before integration.
    """

    poni: Path
    mask: Path | None
    dark: Path | None
    flat: Path | None
    frame_shape: tuple[int, int]
    saturation_value: float | None
    options: IntegrationOptions
    flip_ud: bool = False

    def key(self) -> str:
        """sha256 of the PONI, mask, dark and flat contents, frame shape, saturation, options."""
        parts = [
            f"poni={_content_token(self.poni)}",
            f"mask={_content_token(self.mask)}",
            f"dark={_content_token(self.dark)}",
            f"flat={_content_token(self.flat)}",
            f"shape={tuple(int(s) for s in self.frame_shape)}",
            f"saturation={self.saturation_value!r}",
            f"options={self.options!r}",
            f"flip_ud={self.flip_ud}",
        ]
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()

    def __dask_tokenize__(self) -> str:
        """The work units' identity (:func:`pipelines.runner.unit_key`): the content of the
        PONI, mask, dark and flat, not their names (:meth:`key`)."""
        return self.key()

    @classmethod
    def from_section(cls, g: IntegrationSection, source: FrameSource, *,
                     cake: bool = True) -> IntegratorSetup:
        """The setup of an ``integration`` config section for the frames of ``source``
        (shape, saturation sentinel); ``cake=False`` (default True) leaves out the 2D cake
        even when ``npt_azimuthal`` is set."""
        opts = IntegrationOptions(
            unit=g.unit, npt=g.npt, radial_range=g.radial_range,
            azimuth_range_deg=g.azimuth_range_deg,
            npt_azimuthal=g.npt_azimuthal if cake else None,
            error_model=g.error_model, polarization_factor=g.polarization_factor,
            correct_solid_angle=g.correct_solid_angle,
        )
        return cls(poni=g.poni, mask=g.mask, dark=g.dark, flat=g.flat,
                   frame_shape=tuple(source.frame_shape),
                   saturation_value=source.saturation_value, options=opts)


def _read_optional(spec: Path | None, what: str, shape: tuple[int, int]) -> np.ndarray | None:
    if spec is None:
        return None
    image = read_image(spec, what=what)
    check_image_shape(image, shape, what=what, source=os.fspath(spec))
    return image


def _build(setup: IntegratorSetup) -> BatchIntegrator:
    shape = (int(setup.frame_shape[0]), int(setup.frame_shape[1]))
    ai = read_poni(setup.poni)
    mask = _read_optional(setup.mask, "mask", shape)
    dark = _read_optional(setup.dark, "dark", shape)
    flat = _read_optional(setup.flat, "flat", shape)
    try:
        return BatchIntegrator(ai, shape, setup.options, mask=mask, dark=dark, flat=flat,
                               saturation_value=setup.saturation_value)
    except IntegrationError as err:
        raise IntegrationError(f"{setup.poni}: {err}") from err


def cached_integrator(setup: IntegratorSetup) -> BatchIntegrator:
    """The integrator of ``setup``, built once per process and reused (the last
    ``_CACHE_SIZE`` = 2 setups are kept)."""
    key = setup.key()
    with _CACHE_LOCK:
        integ = _CACHE.get(key)
        if integ is None:
            integ = _build(setup)
            _CACHE[key] = integ
            while len(_CACHE) > _CACHE_SIZE:
                _CACHE.popitem(last=False)
        else:
            _CACHE.move_to_end(key)
        return integ


def clear_integrator_cache() -> None:
    """Drop this process's cached integrators (e.g. between runs of different detectors)."""
    with _CACHE_LOCK:
        _CACHE.clear()


@dataclass(frozen=True)
class IntegratorInfo:
    """What a product needs to know about the integrator of a setup (small, picklable).

    ``radial`` bin centres in ``options.unit`` (dimension ``radial_name``, CF units
    ``radial_units``), ``radial_range`` the range actually binned, ``azimuthal`` χ bin
    centres (deg) of the cake or None, ``mask_checksum`` the sha256 of the static mask,
    ``n_pixels`` the pixels contributing to the pattern.
    """

    radial: np.ndarray
    radial_name: str
    radial_units: str
    radial_range: tuple[float, float]
    azimuthal: np.ndarray | None
    mask_checksum: str
    n_pixels: int


def describe_integrator(setup: IntegratorSetup) -> IntegratorInfo:
    """:class:`IntegratorInfo` of ``setup`` from this process's cached integrator (with a
    Dask client: ``client.submit(describe_integrator, setup).result()`` reuses a
    worker's)."""
    integ = cached_integrator(setup)
    return IntegratorInfo(
        radial=integ.radial.copy(), radial_name=integ.radial_name,
        radial_units=integ.radial_units, radial_range=integ.radial_range,
        azimuthal=None if integ.azimuthal is None else integ.azimuthal.copy(),
        mask_checksum=integ.mask_checksum, n_pixels=integ.n_pixels)


@dataclass
class ChunkResult:
    """Integrated frames ``[start, stop)``: patterns (n, npt), cakes (n, npt_azimuthal, npt).

    Intensities and σ are float32, NaN in empty bins (σ NaN for error model "none");
    ``n_invalid`` counts the pixels masked dynamically in each frame.
    """

    start: int
    stop: int
    intensity: np.ndarray
    sigma: np.ndarray
    n_invalid: np.ndarray
    cake: np.ndarray | None = None
    cake_sigma: np.ndarray | None = None


def _normalization(values: np.ndarray | None, n: int, what: str) -> np.ndarray | None:
    """Per-frame divisors as float64 (n,), or None; a length mismatch is an error."""
    if values is None:
        return None
    norm = np.asarray(values, dtype=np.float64).reshape(-1)
    if norm.size != n:
        raise IntegrationError(f"normalization has {norm.size} values for {what}")
    return norm


def sub_batch_frames(source: FrameSource) -> int:
    """Frames per sub-batch: ``SUB_BATCH_BYTES`` of raw frames, at least one."""
    ny, nx = source.frame_shape
    return max(1, SUB_BATCH_BYTES // (ny * nx * np.dtype(source.dtype).itemsize))


def integrate_chunk(
    source: FrameSource,
    start: int,
    stop: int,
    setup: IntegratorSetup,
    normalization: np.ndarray | None = None,
) -> ChunkResult:
    """Integrate frames ``[start, stop)`` of ``source`` (1D, and the cake when configured).

    Frames are read with ``source.read`` in sub-batches of :func:`sub_batch_frames` and
    integrated with the process's cached integrator; ``normalization`` (stop − start,)
    divides each frame (pyFAI's ``normalization_factor``, e.g. the monitor).
    """
    shape = (int(setup.frame_shape[0]), int(setup.frame_shape[1]))
    if tuple(source.frame_shape) != shape:
        where = source.segments[0].source if source.segments else "the frame source"
        raise IntegrationError(
            f"frames of {where} have shape {tuple(source.frame_shape)} (ny, nx), the "
            f"integrator was set up for {shape} (PONI {setup.poni})")
    start, stop = int(start), int(stop)
    if not 0 <= start <= stop <= source.n_frames:
        raise IndexError(f"frame range {start}:{stop} outside 0:{source.n_frames}")
    n = stop - start
    norm = _normalization(normalization, n, f"the {n} frames {start}:{stop}")
    integ = cached_integrator(setup)
    opts = setup.options
    npt = int(opts.npt)
    intensity = np.empty((n, npt), dtype=np.float32)
    sigma = np.empty((n, npt), dtype=np.float32)
    n_invalid = np.zeros(n, dtype=np.int64)
    cake = cake_sigma = None
    if opts.npt_azimuthal is not None:
        cake = np.empty((n, int(opts.npt_azimuthal), npt), dtype=np.float32)
        cake_sigma = np.empty_like(cake)
    step = sub_batch_frames(source)
    for a in range(start, stop, step):
        b = min(stop, a + step)
        frames = source.read(a, b)
        if setup.flip_ud:
            frames = frames[:, ::-1, :]
        k = None if norm is None else norm[a - start:b - start]
        res = integ.integrate(frames, k)
        intensity[a - start:b - start] = res.intensity
        sigma[a - start:b - start] = res.sigma
        n_invalid[a - start:b - start] = res.n_invalid
        if cake is not None and cake_sigma is not None:
            res2 = integ.integrate2d(frames, k)
            cake[a - start:b - start] = res2.intensity
            cake_sigma[a - start:b - start] = res2.sigma
        del frames, res
    return ChunkResult(start=start, stop=stop, intensity=intensity, sigma=sigma,
                       n_invalid=n_invalid, cake=cake, cake_sigma=cake_sigma)


def integrate_frames(
    source: FrameSource,
    setup: IntegratorSetup,
    runner: Runner | None = None,
    *,
    chunk_frames: int = 200,
    progress: Callable[[int, int], None] | None = None,
    normalization: np.ndarray | None = None,
    stream: str = "xrd",
) -> Iterator[ChunkResult]:
    """Integrate every frame of ``source``: the chunks of ``source.chunks(chunk_frames)``,
    each one work unit (:func:`integrate_chunk`) of ``runner`` (default: a runner with no
    cache and no Dask client, so the chunks run here one after another), yielded in frame
    order as they finish; with a Dask client each chunk is one task, and the runner keeps
    two per worker in flight. ``progress(done_frames, total_frames)`` is called as chunks
    finish; ``normalization`` (n_frames,) divides each frame; ``stream`` names the units
    in the log and the cache."""
    from pipelines.runner import Runner

    total = source.n_frames
    norm = _normalization(normalization, total, f"the {total} frames of the source")
    runner = runner or Runner(None, "")
    units = ((source, a, b, setup, None if norm is None else norm[a:b])
             for a, b in (source.chunks(int(chunk_frames)) if total else []))
    done = 0
    for res in runner.map(integrate_chunk, units, stream=stream):
        done += res.stop - res.start
        if progress is not None:
            progress(done, total)
        yield res


def xrd_placeholders(n_frames: int, info: IntegratorInfo, chunk_frames: int = 200
                     ) -> dict[str, Any]:
    """Lazy stand-ins (Dask arrays, never computed: shape, dtype, chunks) for the patterns
    of ``n_frames`` frames, as :func:`build_xrd_product`'s keyword arguments
    (``intensity``, ``sigma``, ``n_invalid``, and ``cake``/``cake_sigma`` when ``info`` has
    an azimuthal axis): the product's frame for
    :func:`operando.io.product_stream.stream_product`."""
    npt, rows = len(info.radial), max(1, min(int(chunk_frames), max(1, n_frames)))

    def lazy(*shape: int, dtype: Any = np.float32) -> Any:
        return dask.array.empty((n_frames, *shape), dtype=dtype, chunks=(rows, *shape))

    out = {"intensity": lazy(npt), "sigma": lazy(npt), "n_invalid": lazy(dtype=np.int64)}
    if info.azimuthal is not None:
        out["cake"] = lazy(len(info.azimuthal), npt)
        out["cake_sigma"] = lazy(len(info.azimuthal), npt)
    return out


def chunk_rows(res: ChunkResult) -> dict[str, np.ndarray]:
    """The rows of a chunk by ``xrd.nc`` variable name (what
    :meth:`operando.io.product_stream.ProductWriter.write` takes)."""
    rows = {"intensity": res.intensity, "intensity_sigma": res.sigma,
            "n_invalid_pixels": res.n_invalid}
    if res.cake is not None:
        rows["cake"] = res.cake
        if res.cake_sigma is not None:
            rows["cake_sigma"] = res.cake_sigma
    return rows


def _xrd_product_attrs(source: FrameSource, meta: FrameMetadata, setup: IntegratorSetup,
                       info: IntegratorInfo, *, normalized: bool = False) -> dict[str, Any]:
    """The attributes of an ``xrd.nc``: the frame source (``frames_*``), where the
    per-frame metadata came from, the PONI text and files, the mask checksum, the
    integration options (``integration_*``)."""
    return {
        **{f"frames_{k}": v for k, v in source.describe().items()},
        "timestamp_source": meta.timestamp_source,
        "count_time_source": meta.count_time_source,
        "monitor_source": meta.monitor_source,
        "poni": read_poni_text(setup.poni).text,
        "poni_file": str(setup.poni),
        "mask_file": str(setup.mask or ""),
        "dark_file": str(setup.dark or ""),
        "flat_file": str(setup.flat or ""),
        "mask_checksum": info.mask_checksum,
        "normalization": "per monitor count" if normalized else "none",
        "flip_ud": int(setup.flip_ud),
        **{f"integration_{k}": v for k, v in setup.options.to_attrs().items()},
    }


def xrd_product_inputs(source: FrameSource, setup: IntegratorSetup) -> list[Path]:
    """Files an ``xrd.nc`` is reduced from: the given inputs (Eiger master, Bliss scan file),
    the files the frames are read from, the PONI, mask, dark and flat."""
    extra = [Path(split_hdf5_url(os.fspath(p))[0])
             for p in (setup.mask, setup.dark, setup.flat) if p]
    return [*source.inputs, *source.files, Path(setup.poni), *extra]


def build_xrd_product(source: FrameSource, meta: FrameMetadata, setup: IntegratorSetup,
                      info: IntegratorInfo, intensity: np.ndarray, sigma: np.ndarray,
                      n_invalid: np.ndarray, *, cake: np.ndarray | None = None,
                      cake_sigma: np.ndarray | None = None,
                      time_start_s: np.ndarray | None = None,
                      time_end_s: np.ndarray | None = None,
                      echem_points: xr.Dataset | None = None,
                      normalized: bool = False) -> StreamProduct:
    """The ``xrd.nc`` product of integrated frames (the reduce flow's and ``operando
    integrate``'s alike): the Dataset (:func:`operando.xrd.product.xrd_dataset`), its
    attributes (frame source, metadata sources, PONI text and files, mask checksum,
    integration options) and inputs (:func:`xrd_product_inputs`).

    ``intensity``/``sigma`` (n_frames, npt) and ``n_invalid`` (n_frames,) from the chunks;
    ``cake``/``cake_sigma`` (n_frames, npt_azimuthal, npt) or None (default); the exposure
    on the potentiostat clock ``time_start_s``/``time_end_s`` (s) and the electrochemistry
    averaged over it ``echem_points`` when a clock model exists (default None);
    ``normalized`` (default False): the frames were divided by the monitor.
    """
    ds = xrd_dataset(
        intensity, sigma, radial=info.radial, radial_name=info.radial_name,
        radial_units=info.radial_units, frame_index=meta.frame_index, epoch_s=meta.epoch_s,
        count_time_s=meta.count_time_s, monitor=meta.monitor, n_invalid=n_invalid,
        time_start_s=time_start_s, time_end_s=time_end_s, echem_points=echem_points,
        cake=cake, cake_sigma=cake_sigma, chi_deg=info.azimuthal,
        error_model=setup.options.error_model,
    )
    return StreamProduct(name="xrd", dataset=ds,
                         attrs=_xrd_product_attrs(source, meta, setup, info,
                                                  normalized=normalized),
                         inputs=xrd_product_inputs(source, setup))


def open_xrd_frames(section: XrdSection) -> FrameSource:
    """The frame files of an ``xrd`` config section, opened lazily: the frame stack
    (``dataset``; found when None), the per-frame timestamps, count times and monitor
    (their HDF5 paths; absent when None), read while being written with ``swmr``; the
    PONI's detector shape is the frame shape auto-detection looks for."""
    return open_frames([str(p) for p in section.files], dataset=section.dataset,
                       timestamp_path=section.timestamp_path,
                       count_time_path=section.count_time_path,
                       monitor_path=section.monitor_path, swmr=section.swmr,
                       frame_shape=poni_frame_shape(section.integration.poni))
