"""Azimuthal integration of detector frames on pyFAI, a whole chunk of frames at a time.

pyFAI's ``integrate1d`` / ``integrate2d`` ("ng" CSR engine, the default
``("bbox", "csr", "cython")`` method) compute, for every output bin j with the sparse
pixel-splitting coefficients c_ij of the CSR integration matrix (pixel i, bin j):

    signal_i  = raw_i − dark_i                                   (float32)
    var_i     = max(raw_i, 1)                                    (Poisson model, float32;
                                                                  integrate1d adds no dark
                                                                  term, integrate2d adds
                                                                  max(dark_i, 0))
    norm_i    = k · flat_i · polarisation_i · solidangle_i       (k = normalization_factor)

    I_j = Σ_i c_ij signal_i / Σ_i c_ij norm_i
    σ_j = sqrt(Σ_i c_ij² var_i) / Σ_i c_ij norm_i                (pyFAI's "sem")
    count_j = Σ_i c_ij                                           (over valid pixels)

with masked pixels left out of every sum. The ``"azimuthal"`` error model replaces Σ c² var
by pyFAI's one-pass accumulation over the pixels of the bin, in the order they are stored
in the CSR row (``CSR_common.pxi``, ``integrate_ng``): with ω_k = c_k norm_k,
b_k = signal_k / norm_k and the running weighted mean m_k = Σ_{l≤k} c_l signal_l / Σ_{l≤k} ω_l,

    V_j = Σ_{k ≥ 2nd valid pixel} ω_k² (b_k − m_{k−1}) (b_k − m_k),    σ_j = sqrt(V_j) / Σ ω_k

(exactly what pyFAI computes, order dependence included). A frame with no dynamically
masked pixel gets it from pyFAI's own CSR engine (the same call integrate1d makes); a frame
with some gets it from prefix sums along the CSR rows, vectorised over frames (pyFAI's
engine would give NaN there: a masked pixel inside its recurrence divides 0 by 0).

:class:`BatchIntegrator` builds pyFAI's own CSR matrix once per (geometry, frame shape,
mask, dark, flat, options), with pyFAI's ``setup_sparse_integrator`` called the way
``integrate1d`` calls it, and then applies it to a whole chunk of frames as one sparse ×
dense product per block of pixels (frames transposed block by block so the block stays in
cache; the static Σ c·norm and Σ c are computed once). Pixels that are
invalid in one frame only (negative, NaN/inf, ≥ ``saturation_value``, pyFAI's detector
dummy value) are zeroed in that frame and the precomputed static sums are corrected for
them, so the result equals ``ai.integrate1d(frame, mask=static | dynamic_of_that_frame)``
without rebuilding anything. Results agree with pyFAI to ~1e-6 relative (float32 partial
sums per pixel block, float64 across blocks; pyFAI accumulates in float64).

Pure: numpy and pyFAI objects in, numpy out; no file I/O.
"""

from __future__ import annotations

import hashlib
import math
import threading
import warnings
import zlib
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np
import pyFAI
from pyFAI import units as pyfai_units
from pyFAI.containers import ErrorModel
from pyFAI.integrator.azimuthal import AzimuthalIntegrator
from scipy import sparse

from operando.xrd.units import RADIAL_AXES, RadialUnit

__all__ = [
    "BatchIntegrator",
    "Integration2DResult",
    "IntegrationError",
    "IntegrationOptions",
    "IntegrationResult",
]

ErrorModelName = Literal["poisson", "azimuthal", "none"]

#: pixels per block of the blocked sparse × dense product (block × frames stays in cache)
PIXEL_BLOCK = 32768
#: frames sent through the matrix together (larger sub-batches are split into groups)
FRAME_GROUP = 32
#: float64 elements per work array of the azimuthal-error-model pass (bounds its memory)
_AZIMUTHAL_WORK_ELEMENTS = 1 << 16


class IntegrationError(ValueError):
    """Inputs that cannot be integrated together (shapes, options), with a clear message."""


# ======================================================================================
# options and results
# ======================================================================================

@dataclass(frozen=True)
class IntegrationOptions:
    """How frames are integrated (the integration section of a run config).

    ``radial_range`` is in ``unit``; ``azimuth_range_deg`` in degrees (pyFAI's χ);
    ``npt_azimuthal`` also makes a 2D cake (χ × radial) when set. ``error_model``:
    ``"poisson"`` (variance = max(raw, 1) per pixel, propagated), ``"azimuthal"`` (the
    spread of the pixels of a bin, pyFAI's definition) or ``"none"``. ``polarization_factor``
    is pyFAI's (−1 vertical … +1 horizontal, None for no correction). ``method`` is the
    pyFAI (split, algo, impl) of the reference ``integrate1d``; the batch path uses the same
    CSR matrix, so algo must be ``"csr"`` and impl ``"cython"``.
    """

    unit: RadialUnit = "q_A^-1"
    npt: int = 2000
    radial_range: tuple[float, float] | None = None
    azimuth_range_deg: tuple[float, float] | None = None
    npt_azimuthal: int | None = None
    error_model: ErrorModelName = "poisson"
    polarization_factor: float | None = 0.99
    correct_solid_angle: bool = True
    method: tuple[str, str, str] = ("bbox", "csr", "cython")

    def __post_init__(self) -> None:
        # canonical types (a config may give lists and ints): equal options, equal repr
        def canon(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        for name in ("radial_range", "azimuth_range_deg"):
            rng = getattr(self, name)
            if rng is not None:
                if len(rng) != 2:
                    raise IntegrationError(f"{name} must be (min, max), found {rng!r}")
                canon(name, (float(rng[0]), float(rng[1])))
        if self.polarization_factor is not None:
            canon("polarization_factor", float(self.polarization_factor))
        canon("method", tuple(str(m) for m in self.method))
        canon("correct_solid_angle", bool(self.correct_solid_angle))
        if self.unit not in get_args(RadialUnit):
            raise IntegrationError(
                f"unit must be one of {list(get_args(RadialUnit))}, found {self.unit!r}")
        if int(self.npt) != self.npt or self.npt < 1:
            raise IntegrationError(f"npt must be a positive integer, found {self.npt!r}")
        if self.npt_azimuthal is not None and (
                int(self.npt_azimuthal) != self.npt_azimuthal or self.npt_azimuthal < 1):
            raise IntegrationError(
                f"npt_azimuthal must be a positive integer or None, found {self.npt_azimuthal!r}")
        if self.error_model not in get_args(ErrorModelName):
            raise IntegrationError(f"error_model must be one of {list(get_args(ErrorModelName))}"
                                   f", found {self.error_model!r}")
        for name in ("radial_range", "azimuth_range_deg"):
            rng = getattr(self, name)
            if rng is not None and not (len(rng) == 2 and all(math.isfinite(v) for v in rng)
                                        and rng[0] < rng[1]):
                raise IntegrationError(
                    f"{name} must be a finite (min, max) with min < max, found {rng!r}")
        pf = self.polarization_factor
        if pf is not None and not -1.0 <= pf <= 1.0:
            raise IntegrationError(f"polarization_factor must be in [-1, 1] or None, found {pf!r}")
        if len(self.method) != 3:
            raise IntegrationError(
                f"method must be a pyFAI (split, algo, impl) triple, found {self.method!r}")
        split, algo, impl = (str(m).lower() for m in self.method)
        if split not in ("no", "bbox", "pseudo", "full") or algo != "csr" or impl != "cython":
            raise IntegrationError(
                "method must be (split, 'csr', 'cython') with split one of no/bbox/pseudo/full "
                f"(the batch path applies pyFAI's CSR matrix), found {self.method!r}")

    @property
    def radial_name(self) -> str:
        """The product dimension of the radial axis (``q``, ``two_theta``, ``d``)."""
        return RADIAL_AXES[self.unit].dim

    @property
    def radial_units(self) -> str:
        """CF units of the radial axis (``1/angstrom``, ``degree``, ``angstrom``)."""
        return RADIAL_AXES[self.unit].cf_units

    def to_attrs(self) -> dict[str, str | int | float | list[float]]:
        """The options as netCDF-safe attributes (str, int, float, list of float; no None).

        Keys are bare (``unit``, ``npt``, …): prefix them in the product
        (``integration_unit``)."""
        def rng(v: tuple[float, float] | None, none: str) -> str | list[float]:
            return none if v is None else [float(v[0]), float(v[1])]

        return {
            "unit": self.unit,
            "npt": int(self.npt),
            "radial_range": rng(self.radial_range, "auto"),
            "azimuth_range_deg": rng(self.azimuth_range_deg, "full"),
            "npt_azimuthal": 0 if self.npt_azimuthal is None else int(self.npt_azimuthal),
            "error_model": self.error_model,
            "polarization_factor": ("none" if self.polarization_factor is None
                                    else float(self.polarization_factor)),
            "correct_solid_angle": int(bool(self.correct_solid_angle)),
            "method": ",".join(str(m) for m in self.method),
            "engine": f"pyFAI {pyFAI.version} CSR matrix, batch sparse x dense",
        }


@dataclass
class IntegrationResult:
    """1D patterns of n frames on ``npt`` radial bins.

    ``intensity`` and ``sigma`` (NaN for error model "none") are NaN in empty bins;
    ``count`` is Σ c_ij over the valid pixels of the bin (pixel-splitting fractions, so
    a bin is empty exactly when it is 0); ``n_invalid`` counts, per frame, the pixels of
    the pattern masked dynamically (negative, NaN, saturated, detector dummy).
    """

    intensity: np.ndarray  # (n, npt) float64
    sigma: np.ndarray  # (n, npt) float64
    count: np.ndarray  # (n, npt) float64
    n_invalid: np.ndarray  # (n,) int64


@dataclass
class Integration2DResult:
    """2D cakes (χ × radial) of n frames, arrays (n, npt_azimuthal, npt); see
    :class:`IntegrationResult` for the meaning of each field."""

    intensity: np.ndarray
    sigma: np.ndarray
    count: np.ndarray
    n_invalid: np.ndarray


# ======================================================================================
# dynamic (per-frame) invalid values
# ======================================================================================

@dataclass(frozen=True)
class _BadValueRule:
    """Which raw values are invalid for frames of one dtype.

    Invalid: non-finite, negative, ≥ ``saturation`` and pyFAI's detector dummy window
    |float32(v) − dummy| ≤ delta (what ``integrate1d`` masks by itself by default).
    ``hi``: any value ≥ hi may be invalid (cheap screening on per-pixel maxima);
    ``screen_low``: negative values / NaN possible (signed and float dtypes).
    """

    kind: str
    saturation: float | None
    dummy: np.float32 | None
    delta: np.float32
    hi: float
    screen_low: bool

    @classmethod
    def make(cls, dtype: np.dtype, saturation: float | None,
             detector: Any) -> _BadValueRule:
        dummy, delta = None, np.float32(0.0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            d, dd = detector.get_dummies(dtype) if detector is not None else (None, None)
        hi = math.inf if saturation is None else float(saturation)
        if d is not None:
            dummy = np.float32(d)
            delta = np.float32(0.0 if dd is None else dd)
            lo_w, hi_w = float(dummy) - float(delta), float(dummy) + float(delta)
            if hi_w >= 0.0:  # not already caught by the "negative" test
                hi = min(hi, lo_w - abs(lo_w) * 2.0**-20 - 1.0)
        kind = np.dtype(dtype).kind
        return cls(kind=kind, saturation=saturation, dummy=dummy, delta=delta, hi=hi,
                   screen_low=kind in "if")

    def exact(self, values: np.ndarray) -> np.ndarray:
        """Boolean array, True where ``values`` (native dtype) are invalid."""
        bad = np.zeros(values.shape, dtype=bool)
        if self.kind == "f":
            bad |= ~np.isfinite(values)
        if self.kind in "if":
            with np.errstate(invalid="ignore"):
                bad |= values < 0
        if self.saturation is not None:
            with np.errstate(invalid="ignore"):
                bad |= values >= self.saturation
        if self.dummy is not None:
            f = values.astype(np.float32)
            with np.errstate(invalid="ignore"):
                if self.delta == 0:
                    bad |= f == self.dummy
                else:
                    bad |= np.abs(f - self.dummy) <= self.delta
        return bad

    def screen(self, block: np.ndarray) -> np.ndarray | None:
        """Per pixel of ``block`` (n, k): may any frame be invalid there? None: none can."""
        cand = None
        if self.hi < math.inf or self.kind == "f":
            top = block.max(axis=0)
            with np.errstate(invalid="ignore"):
                cand = ~(top < self.hi)  # NaN counts as a candidate
        if self.screen_low:
            low = block.min(axis=0)
            with np.errstate(invalid="ignore"):
                c2 = ~(low >= 0)
            cand = c2 if cand is None else cand | c2
        return cand


# ======================================================================================
# the sparse operator (one per output: 1D pattern or 2D cake)
# ======================================================================================

@dataclass
class _Block:
    p0: int
    p1: int
    rows: np.ndarray | slice  # output rows of the block's matrix rows (a slice if contiguous)
    c: sparse.csc_matrix  # (len(rows), p1 - p0), coefficients c
    c2: sparse.csc_matrix  # same pattern, c²
    contributes: np.ndarray  # (p1 - p0,) bool: pixel has a coefficient
    norm: np.ndarray  # (p1 - p0,) float64 static normalisation of the block's pixels


@dataclass
class _Operator:
    """pyFAI's CSR matrix in pixel blocks, with the static per-bin sums."""

    nrows: int
    blocks: list[_Block]
    sum_norm: np.ndarray  # Σ c·norm (float64, per row), all valid pixels, k = 1
    sum_count: np.ndarray  # Σ c
    csr: tuple[np.ndarray, np.ndarray, np.ndarray] | None  # (data, indices, indptr) for azim.
    n_pixels: int  # pixels with at least one coefficient
    poisson_adds_dark: bool  # Poisson variance max(raw, 1) + max(dark, 0) (pyFAI's 2D path)
    engine: Any = None  # pyFAI's own CSR engine (kept for the azimuthal error model only)


def _make_operator(lut: tuple[np.ndarray, np.ndarray, np.ndarray], nrows: int, npix: int,
                   norm: np.ndarray, keep_csr: bool, poisson_adds_dark: bool) -> _Operator:
    data, indices, indptr = (np.asarray(a) for a in lut)
    data = data.astype(np.float32, copy=False)
    norm64 = norm.astype(np.float64)
    row_of = np.repeat(np.arange(nrows), np.diff(indptr))
    c64 = data.astype(np.float64)
    cn = c64 * norm64[indices]
    sum_norm = np.bincount(row_of, weights=cn, minlength=nrows)
    sum_count = np.bincount(row_of, weights=c64, minlength=nrows)
    del row_of, c64, cn
    csc = sparse.csr_matrix((data, indices, indptr), shape=(nrows, npix)).tocsc()
    csc.sort_indices()
    blocks: list[_Block] = []
    renumber = np.zeros(nrows, dtype=np.int32)
    for p0 in range(0, npix, PIXEL_BLOCK):
        p1 = min(p0 + PIXEL_BLOCK, npix)
        a, b = int(csc.indptr[p0]), int(csc.indptr[p1])
        if a == b:
            continue
        ptr = (csc.indptr[p0:p1 + 1] - a).astype(np.int32)
        # the output rows this block touches, and the block's rows renumbered 0..len(rows);
        # a contiguous range (with a few empty rows) when that is at most twice as many,
        # so results are added with a slice rather than fancy indexing
        rows = np.flatnonzero(np.bincount(csc.indices[a:b], minlength=nrows))
        lo, hi = int(rows[0]), int(rows[-1]) + 1
        out_rows: np.ndarray | slice
        if hi - lo <= 2 * rows.size:
            out_rows = slice(lo, hi)
            rows = np.arange(lo, hi)
        else:
            out_rows = rows.astype(np.intp)
        renumber[rows] = np.arange(rows.size, dtype=np.int32)
        inv = renumber[csc.indices[a:b]]
        coef = csc.data[a:b]
        shape = (rows.size, p1 - p0)
        blocks.append(_Block(
            p0=p0, p1=p1, rows=out_rows,
            c=sparse.csc_matrix((coef, inv, ptr), shape=shape),
            c2=sparse.csc_matrix((coef * coef, inv, ptr), shape=shape),
            contributes=np.diff(ptr) > 0,
            norm=norm64[p0:p1],
        ))
    n_pixels = int(np.count_nonzero(np.diff(csc.indptr)))
    return _Operator(nrows=nrows, blocks=blocks, sum_norm=sum_norm, sum_count=sum_count,
                     csr=(data, indices, indptr.astype(np.int64)) if keep_csr else None,
                     n_pixels=n_pixels, poisson_adds_dark=poisson_adds_dark)


@dataclass
class _Sums:
    """Per-row sums for n frames, arrays (nrows, n)."""

    signal: np.ndarray
    variance: np.ndarray | None
    norm: np.ndarray  # Σ c·norm_static over valid pixels (k = 1)
    count: np.ndarray
    n_invalid: np.ndarray  # (n,)
    bad_frames: np.ndarray  # (m,) frame index of each dynamically invalid pixel
    bad_pixels: np.ndarray  # (m,) flat pixel index


# ======================================================================================
# the integrator
# ======================================================================================

class BatchIntegrator:
    """Built ONCE per (geometry, frame shape, mask, dark, flat, options); reused for every chunk.

    ``ai`` is the PONI geometry; ``shape`` the frame shape (ny, nx), which must match the
    PONI detector's; ``mask`` (nonzero = masked), ``dark``, ``flat`` images of that shape.
    The static mask is ``mask | ai.detector.mask`` (module gaps) ``| flat ≤ 0 or non-finite
    | dark non-finite``; per frame, pixels with negative, non-finite or ≥
    ``saturation_value`` counts (and pyFAI's detector dummy value) are masked dynamically.
    """

    radial: np.ndarray
    radial_name: str
    radial_units: str
    azimuthal: np.ndarray | None
    mask_checksum: str

    def __init__(
        self,
        ai: AzimuthalIntegrator,
        shape: tuple[int, int],
        options: IntegrationOptions,
        *,
        mask: np.ndarray | None = None,
        dark: np.ndarray | None = None,
        flat: np.ndarray | None = None,
        saturation_value: float | None = None,
    ) -> None:
        if len(tuple(shape)) != 2:
            raise IntegrationError(f"frame shape must be (ny, nx), found {tuple(shape)}")
        self.ai = ai
        self.shape: tuple[int, int] = (int(shape[0]), int(shape[1]))
        self.options = options
        self.saturation_value = None if saturation_value is None else float(saturation_value)
        det = ai.detector
        det_shape = getattr(det, "shape", None)
        if det_shape is not None and tuple(int(s) for s in det_shape) != self.shape:
            raise IntegrationError(
                f"frame shape {self.shape} does not match the PONI detector "
                f"{det.name!r}, whose shape is {tuple(int(s) for s in det_shape)} (ny, nx): "
                "wrong PONI file, or binned/cropped frames"
            )
        npix = self.shape[0] * self.shape[1]
        self._npix = npix

        static = np.zeros(self.shape, dtype=bool)
        if mask is not None:
            static |= self._image(mask, "mask") != 0
        det_mask = getattr(det, "mask", None)
        if det_mask is not None and np.shape(det_mask) == self.shape:
            static |= np.asarray(det_mask) != 0
        self.dark: np.ndarray | None = None
        if dark is not None:
            d = self._image(dark, "dark")
            static |= ~np.isfinite(d)
            self.dark = d
        self.flat: np.ndarray | None = None
        if flat is not None:
            f = self._image(flat, "flat")
            with np.errstate(invalid="ignore"):
                static |= ~(np.isfinite(f) & (f > 0))
            self.flat = f
        self.static_mask: np.ndarray = static
        packed = np.packbits(static, axis=None)
        self.mask_checksum = hashlib.sha256(
            f"{self.shape}".encode() + packed.tobytes()).hexdigest()
        self._mask_crc = zlib.crc32(np.ascontiguousarray(static).tobytes())

        # per-pixel float32 terms, in pyFAI's order: norm = k·flat·polarisation·solid angle
        factors: list[np.ndarray] = []
        if self.flat is not None:
            factors.append(np.where(static, 1.0, self.flat).astype(np.float32).ravel())
        if options.polarization_factor is not None:
            factors.append(np.asarray(ai.polarization(self.shape, options.polarization_factor),
                                      dtype=np.float32).ravel())
        if options.correct_solid_angle:
            factors.append(np.asarray(ai.solidAngleArray(self.shape, True),
                                      dtype=np.float32).ravel())
        self._norm_factors = factors
        # pyFAI's own arrays, for its CSR engine (azimuthal error model, clean frames)
        self._pyfai_pol = (None if options.polarization_factor is None else
                           ai.polarization(self.shape, options.polarization_factor))
        self._pyfai_sa = ai.solidAngleArray(self.shape, True) if options.correct_solid_angle \
            else None
        self._engine_lock = threading.Lock()
        norm = np.ones(npix, dtype=np.float32)
        for f in factors:
            norm *= f
        self._norm = norm
        self._dark32 = (None if self.dark is None
                        else np.where(static, 0.0, self.dark).astype(np.float32).ravel())

        unit = pyfai_units.to_unit(options.unit)
        self._unit = unit
        split = str(options.method[0]).lower()
        self._split = "full" if split == "pseudo" else split
        self.radial_name, self.radial_units = options.radial_name, options.radial_units
        keep_csr = options.error_model == "azimuthal"

        # 1D: pyFAI's CSR engine, set up as integrate1d sets it up
        pos0 = (None if options.radial_range is None
                else tuple(v / unit.scale for v in options.radial_range))
        pos1 = (None if options.azimuth_range_deg is None
                else ai.normalize_azimuth_range(options.azimuth_range_deg))
        eng = ai.setup_sparse_integrator(
            self.shape, int(options.npt), mask=static, pos0_range=pos0, pos1_range=pos1,
            mask_checksum=self._mask_crc, unit=unit, split=self._split, algo="CSR",
            empty=0.0, scale=False)
        # the resolved radial range (internal units): the bins then never depend on which
        # pixels a frame masks dynamically
        self._pos0_range = (float(eng.pos0_min), float(eng.pos0_maxin))
        self.radial = np.asarray(eng.bin_centers, dtype=np.float64) * unit.scale
        self._op1 = _make_operator(eng.lut, int(options.npt), npix, norm, keep_csr,
                                   poisson_adds_dark=False)
        if keep_csr:
            self._op1.engine = eng
        del eng

        self.azimuthal = None
        self._op2: _Operator | None = None
        self._radial2d: np.ndarray | None = None
        if options.npt_azimuthal is not None:
            chi = pyfai_units.CHI_DEG
            pos1_2d = None
            if options.azimuth_range_deg is not None:
                pos1_2d = ai.normalize_azimuth_range(options.azimuth_range_deg)
            eng2 = ai.setup_sparse_integrator(
                self.shape, (int(options.npt), int(options.npt_azimuthal)), mask=static,
                pos0_range=pos0, pos1_range=pos1_2d, mask_checksum=self._mask_crc,
                unit=(unit, chi), split=self._split, algo="CSR", empty=0.0, scale=False)
            self._pos0_range_2d = (float(eng2.pos0_min), float(eng2.pos0_maxin))
            self._radial2d = np.asarray(eng2.bin_centers0, dtype=np.float64) * unit.scale
            self.azimuthal = np.asarray(eng2.bin_centers1, dtype=np.float64) * chi.scale
            # pyFAI's integrate2d hands its CSR engine an explicit Poisson variance
            # max(raw, 1) + max(dark, 0); integrate1d lets the engine use max(raw, 1)
            self._op2 = _make_operator(eng2.lut, int(options.npt) * int(options.npt_azimuthal),
                                       npix, norm, keep_csr, poisson_adds_dark=True)
            if keep_csr:
                self._op2.engine = eng2
            del eng2
        self._rules: dict[np.dtype, tuple[_BadValueRule, np.ndarray]] = {}

    # -- inputs ------------------------------------------------------------------------
    def _image(self, image: np.ndarray, what: str) -> np.ndarray:
        arr = np.asarray(image)
        if arr.shape != self.shape:
            raise IntegrationError(
                f"{what} has shape {arr.shape}, expected the frame shape {self.shape} (ny, nx)")
        return arr

    def _frames(self, frames: np.ndarray) -> np.ndarray:
        arr = np.asarray(frames)
        if arr.ndim != 3 or arr.shape[1:] != self.shape:
            raise IntegrationError(
                f"frames of shape {arr.shape} do not match the integrator: expected "
                f"(n, {self.shape[0]}, {self.shape[1]}), the PONI detector's frame shape")
        if arr.dtype.kind not in "uif":
            raise IntegrationError(f"frames must be integer or float, found dtype {arr.dtype}")
        return np.ascontiguousarray(arr).reshape(arr.shape[0], self._npix)

    def _normalization(self, normalization: np.ndarray | None, n: int) -> np.ndarray:
        if normalization is None:
            return np.ones(n)
        k = np.asarray(normalization, dtype=np.float64).reshape(-1)
        if k.shape != (n,):
            raise IntegrationError(
                f"normalization has {k.size} values for {n} frames (one divisor per frame)")
        if not np.all(np.isfinite(k) & (k > 0)):
            raise IntegrationError("normalization must be finite and > 0 for every frame")
        return k

    def _rule(self, dtype: np.dtype) -> tuple[_BadValueRule, np.ndarray]:
        """The invalid-value rule for frames of ``dtype`` and its always-invalid pixels."""
        entry = self._rules.get(dtype)
        if entry is None:
            rule = _BadValueRule.make(dtype, self.saturation_value, self.ai.detector)
            entry = (rule, self._always_bad(rule))
            self._rules[dtype] = entry
        return entry

    def _always_bad(self, rule: _BadValueRule) -> np.ndarray:
        """Pixels pyFAI masks in every frame of this dtype: dark or flat equal to the dummy."""
        if rule.dummy is None:
            return np.zeros(0, dtype=np.intp)
        hit = np.zeros(self._npix, dtype=bool)
        for img in (self.dark, self.flat):
            if img is not None:
                f = img.astype(np.float32).ravel()
                with np.errstate(invalid="ignore"):
                    hit |= (np.abs(f - rule.dummy) <= rule.delta if rule.delta != 0
                            else f == rule.dummy)
        hit &= ~self.static_mask.ravel()
        return np.flatnonzero(hit)

    # -- the batch path ----------------------------------------------------------------
    def _accumulate(self, op: _Operator, frames: np.ndarray) -> _Sums:
        """Σ c·signal (and Σ c²·var) for all frames; static sums corrected for bad pixels.

        Frames go through the matrix in groups of at most ``FRAME_GROUP`` (the transposed
        pixel block × group stays in cache; the matrix traversal is amortised over the group).
        """
        n = frames.shape[0]
        if n > FRAME_GROUP:
            size = -(-n // -(-n // FRAME_GROUP))  # balanced groups of at most FRAME_GROUP
            offsets = np.arange(0, n, size)
            parts = [self._accumulate(op, frames[g:g + size]) for g in offsets]
            return _Sums(
                signal=np.concatenate([p.signal for p in parts], axis=1),
                variance=(None if parts[0].variance is None else
                          np.concatenate([p.variance for p in parts], axis=1)),  # type: ignore[misc]
                norm=np.concatenate([p.norm for p in parts], axis=1),
                count=np.concatenate([p.count for p in parts], axis=1),
                n_invalid=np.concatenate([p.n_invalid for p in parts]),
                bad_frames=np.concatenate([p.bad_frames + o for p, o in zip(parts, offsets,
                                                                             strict=True)]),
                bad_pixels=np.concatenate([p.bad_pixels for p in parts]),
            )
        rule, always_bad = self._rule(frames.dtype)
        poisson = self.options.error_model == "poisson"
        sig = np.zeros((op.nrows, n))
        var = np.zeros((op.nrows, n)) if poisson else None
        corr_norm = np.zeros((op.nrows, n))
        corr_count = np.zeros((op.nrows, n))
        n_invalid = np.zeros(n, dtype=np.int64)
        bad_f: list[np.ndarray] = []
        bad_p: list[np.ndarray] = []
        tbuf = np.empty((PIXEL_BLOCK, n), dtype=np.float32)
        # transposing in the native dtype then casting contiguously beats a casting transpose
        ubuf = (np.empty((PIXEL_BLOCK, n), dtype=frames.dtype)
                if frames.dtype != np.float32 else None)
        vbuf = np.empty((PIXEL_BLOCK, n), dtype=np.float32) if poisson else None
        dark = self._dark32
        dark_var = (np.maximum(dark, np.float32(0.0))
                    if dark is not None and op.poisson_adds_dark else None)
        for blk in op.blocks:
            k = blk.p1 - blk.p0
            xb = frames[:, blk.p0:blk.p1]
            t = tbuf[:k]  # the block transposed, float32: (pixels, frames)
            if ubuf is None:
                t[...] = xb.T
            else:
                u = ubuf[:k]
                u[...] = xb.T
                np.copyto(t, u, casting="unsafe")
            # dynamic mask of this block: screen per-pixel extrema, then test exactly
            fb, pb = self._bad_in_block(xb, blk, rule, always_bad)
            if poisson:
                v = vbuf[:k]
                np.maximum(t, np.float32(1.0), out=v)  # variance of the raw counts
                if dark_var is not None:
                    v += dark_var[blk.p0:blk.p1, None]
            if dark is not None:
                t -= dark[blk.p0:blk.p1, None]
            if pb.size:
                t[pb, fb] = 0.0
                if poisson:
                    v[pb, fb] = 0.0
            sig[blk.rows] += blk.c @ t
            if poisson:
                var[blk.rows] += blk.c2 @ v
            if pb.size:
                e_shape = (k, n)
                ones = np.ones(pb.size)
                nb = blk.norm[pb]
                corr_count[blk.rows] += (blk.c @ sparse.csc_matrix((ones, (pb, fb)), e_shape)
                                         ).toarray()
                corr_norm[blk.rows] += (blk.c @ sparse.csc_matrix((nb, (pb, fb)), e_shape)
                                        ).toarray()
                n_invalid += np.bincount(fb, minlength=n)
                bad_f.append(fb)
                bad_p.append(pb + blk.p0)
        return _Sums(
            signal=sig, variance=var,
            norm=op.sum_norm[:, None] - corr_norm,
            count=op.sum_count[:, None] - corr_count,
            n_invalid=n_invalid,
            bad_frames=np.concatenate(bad_f) if bad_f else np.zeros(0, dtype=np.intp),
            bad_pixels=np.concatenate(bad_p) if bad_p else np.zeros(0, dtype=np.intp),
        )

    @staticmethod
    def _bad_in_block(xb: np.ndarray, blk: _Block, rule: _BadValueRule,
                      always_bad: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(frame, pixel-in-block) of the dynamically invalid pixels that contribute."""
        cand = rule.screen(xb)
        fb = pb = np.zeros(0, dtype=np.intp)
        if cand is not None:
            cand &= blk.contributes
            cols = np.flatnonzero(cand)
            if cols.size:
                f, j = np.nonzero(rule.exact(xb[:, cols]))
                fb, pb = f.astype(np.intp), cols[j]
        if always_bad.size:
            lo, hi = np.searchsorted(always_bad, (blk.p0, blk.p1))
            extra = always_bad[lo:hi] - blk.p0
            extra = extra[blk.contributes[extra]]
            if extra.size:
                n = xb.shape[0]
                pairs = np.unique(np.concatenate([
                    np.stack([fb, pb], axis=1),
                    np.stack([np.repeat(np.arange(n), extra.size), np.tile(extra, n)], axis=1),
                ]), axis=0)
                fb, pb = pairs[:, 0].astype(np.intp), pairs[:, 1].astype(np.intp)
        return fb, pb

    def _frame_norm(self, k: np.ndarray) -> np.ndarray:
        """norm_i = k·flat·polarisation·solid angle per frame (ng, npix), float32 products in
        pyFAI's order (the rounding matters for the azimuthal variance of tiny bins)."""
        out = np.empty((k.size, self._npix), dtype=np.float32)
        out[...] = k.astype(np.float32)[:, None]
        for f in self._norm_factors:
            out *= f[None, :]
        return out

    def _azimuthal_variance(self, op: _Operator, frames: np.ndarray, sums: _Sums,
                            k: np.ndarray) -> np.ndarray:
        """pyFAI's one-pass azimuthal variance V_j per row and frame, (nrows, n).

        A frame without dynamically masked pixels goes through pyFAI's own CSR engine
        (``integrate_ng``, exactly what ``integrate1d``/``integrate2d`` run on it); a frame
        with some is done by :meth:`_azimuthal_prefix` (pyFAI's engine would turn the bins
        of a masked pixel into NaN, its recurrence dividing 0 by 0).
        """
        n = frames.shape[0]
        out = np.zeros((op.nrows, n))
        always_bad = self._rule(frames.dtype)[1]
        dirty = np.zeros(n, dtype=bool)
        dirty[sums.bad_frames] = True
        if always_bad.size or op.engine is None:
            dirty[:] = True
        shape2d = None if op is self._op1 else (int(self.options.npt),
                                               int(self.options.npt_azimuthal or 0))
        for i in np.flatnonzero(~dirty):
            with self._engine_lock:  # the engine reuses its own work buffer
                res = op.engine.integrate_ng(
                    frames[i], error_model=ErrorModel.AZIMUTHAL, dark=self.dark,
                    flat=self.flat, solidangle=self._pyfai_sa, polarization=self._pyfai_pol,
                    normalization_factor=float(k[i]))
            v = np.asarray(res.variance, dtype=np.float64)
            out[:, i] = v.ravel() if shape2d is None else v.T.reshape(-1)
        which = np.flatnonzero(dirty)
        if which.size:
            out[:, which] = self._azimuthal_prefix(op, frames, sums, k, which)
        return out

    def _azimuthal_prefix(self, op: _Operator, frames: np.ndarray, sums: _Sums,
                          k: np.ndarray, which: np.ndarray) -> np.ndarray:
        """The azimuthal variance of frames ``which``, (nrows, len(which)), vectorised.

        V = Σ_k ω_k² (b_k − m_{k−1})(b_k − m_k) over the valid pixels of the row in CSR
        order, from the 2nd valid pixel on (see module docstring); computed with prefix
        sums along the row, a few frames at once. The sums are of deviations from the
        bin mean μ (b − m_k = (b − μ) − Σ ω (b − μ) / Σ ω), so that prefix sums over many
        rows never cancel catastrophically.
        """
        assert op.csr is not None
        data, indices, indptr = op.csr
        out = np.zeros((op.nrows, which.size))
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(sums.norm > 0, sums.signal / sums.norm, 0.0)  # (nrows, n), k = 1
        # a few frames at a time: per pixel [signal, norm] of each frame side by side, so one
        # gather along the CSR row fetches them all (norm = 0 marks an invalid pixel)
        group = max(1, min(4, (1 << 25) // max(1, self._npix)))
        for q0 in range(0, which.size, group):
            sel_frames = which[q0:q0 + group]
            ng = sel_frames.size
            packed = np.empty((self._npix, ng, 2), dtype=np.float32)
            signal = frames[sel_frames].astype(np.float32)
            if self._dark32 is not None:
                signal -= self._dark32[None, :]
            packed[:, :, 0] = signal.T
            del signal
            packed[:, :, 1] = self._frame_norm(k[sel_frames]).T
            slot = np.full(frames.shape[0], -1)
            slot[sel_frames] = np.arange(ng)
            hit = slot[sums.bad_frames] >= 0
            packed[sums.bad_pixels[hit], slot[sums.bad_frames[hit]], :] = 0.0
            packed[self._rule(frames.dtype)[1]] = 0.0
            mu = mean[:, sel_frames] / k[None, sel_frames]
            seg = max(1024, _AZIMUTHAL_WORK_ELEMENTS // ng)
            r0 = 0
            while r0 < op.nrows:
                # rows [r0, r1) holding about `seg` coefficients (at least one row)
                r1 = int(np.searchsorted(indptr, indptr[r0] + seg, side="right")) - 1
                r1 = min(op.nrows, max(r1, r0 + 1))
                j0, j1 = int(indptr[r0]), int(indptr[r1])
                if j1 > j0:
                    out[r0:r1, q0:q0 + ng] = self._azimuthal_rows(
                        data[j0:j1], indices[j0:j1], indptr[r0:r1 + 1] - j0, packed,
                        mu[r0:r1])
                r0 = r1
        return out

    @staticmethod
    def _azimuthal_rows(coef: np.ndarray, idx: np.ndarray, ptr: np.ndarray,
                        packed: np.ndarray, mu: np.ndarray) -> np.ndarray:
        """V for the rows of one CSR segment, (nrows_segment, ng). ``packed`` (npix, ng, 2)
        holds [signal, norm] per pixel and frame; ``mu`` (nrows, ng) is a value close to
        each bin's mean (any value gives the same V up to rounding)."""
        c = coef.astype(np.float64)[:, None]
        g = np.take(packed, idx, axis=0)  # (L, ng, 2)
        w = g[:, :, 1].astype(np.float64)
        w *= c  # ω = c·norm
        ok = w > 0
        lengths = np.diff(ptr)
        starts = ptr[:-1]
        dev = g[:, :, 0].astype(np.float64)
        dev *= c
        dev -= np.repeat(mu, lengths, axis=0) * w  # ω (b − μ) = c·signal − μ·ω
        del g

        def row_prefix(x: np.ndarray) -> np.ndarray:
            """Inclusive prefix sums along axis 0, restarting at every row."""
            cs = np.cumsum(x, axis=0)
            before = np.concatenate([np.zeros((1, x.shape[1]), dtype=cs.dtype), cs])
            cs -= np.repeat(before[starts], lengths, axis=0)
            return cs

        big_d = row_prefix(dev)
        big_w = row_prefix(w)
        # the first valid pixel of a row only initialises pyFAI's accumulators
        nonempty = lengths > 0
        if ok.all():
            first = np.zeros(ok.shape, dtype=bool)
            first[starts[nonempty]] = True
        else:
            first = row_prefix(ok.astype(np.int32)) == ok  # no valid pixel before it
        with np.errstate(invalid="ignore", divide="ignore"):
            b_mu = dev / w  # b − μ
            d_now = b_mu - big_d / big_w  # b − m_k
            big_d -= dev
            big_w -= w
            b_mu -= big_d / big_w  # b − m_{k−1}
            inc = w * w * b_mu * d_now
        inc[~ok | first] = 0.0
        out = np.zeros((lengths.size, inc.shape[1]))
        # summed row by row (a prefix sum over the segment would lose small variances)
        out[nonempty] = np.add.reduceat(inc, starts[nonempty], axis=0)
        return out

    def _finish(self, op: _Operator, frames: np.ndarray,
                normalization: np.ndarray | None) -> tuple[np.ndarray, ...]:
        n = frames.shape[0]
        k = self._normalization(normalization, n)
        sums = self._accumulate(op, frames)
        # a bin is empty when no valid pixel is left in it (pyFAI: Σ (c·norm)² = 0)
        empty = sums.count <= 1e-9 * np.maximum(op.sum_count[:, None], 1e-300)
        norm = sums.norm * k[None, :]
        with np.errstate(invalid="ignore", divide="ignore"):
            intensity = np.where(empty, np.nan, sums.signal / norm)
            if self.options.error_model == "poisson":
                assert sums.variance is not None
                sigma = np.where(empty, np.nan, np.sqrt(np.maximum(sums.variance, 0.0)) / norm)
            elif self.options.error_model == "azimuthal":
                v = self._azimuthal_variance(op, frames, sums, k)
                sigma = np.where(empty, np.nan, np.sqrt(np.maximum(v, 0.0)) / norm)
            else:
                sigma = np.full_like(intensity, np.nan)
        count = np.where(empty, 0.0, sums.count)
        return intensity.T, sigma.T, count.T, sums.n_invalid

    # -- public ------------------------------------------------------------------------
    def integrate(self, frames: np.ndarray,
                  normalization: np.ndarray | None = None) -> IntegrationResult:
        """1D patterns of a chunk of frames (n, ny, nx), any integer or float dtype.

        ``normalization`` (n,) divides each frame like pyFAI's ``normalization_factor``
        (e.g. the monitor): I = Σ c signal / (k Σ c norm). Memory: the frames plus a few
        (npt, n) arrays; the caller bounds n.
        """
        arr = self._frames(frames)
        i, s, c, bad = self._finish(self._op1, arr, normalization)
        return IntegrationResult(intensity=i, sigma=s, count=c, n_invalid=bad)

    def integrate2d(self, frames: np.ndarray,
                    normalization: np.ndarray | None = None) -> Integration2DResult:
        """2D cakes (n, npt_azimuthal, npt) of a chunk of frames (needs ``npt_azimuthal``)."""
        if self._op2 is None:
            raise IntegrationError("integrate2d needs IntegrationOptions.npt_azimuthal")
        arr = self._frames(frames)
        i, s, c, bad = self._finish(self._op2, arr, normalization)
        shape = (arr.shape[0], int(self.options.npt), int(self.options.npt_azimuthal or 0))
        def cake(x: np.ndarray) -> np.ndarray:
            return np.ascontiguousarray(x.reshape(shape).transpose(0, 2, 1))
        return Integration2DResult(intensity=cake(i), sigma=cake(s), count=cake(c),
                                   n_invalid=bad)

    @property
    def n_pixels(self) -> int:
        """Pixels that contribute to the 1D pattern (valid and within the ranges)."""
        return self._op1.n_pixels

    @property
    def radial_range(self) -> tuple[float, float]:
        """The radial range of the 1D bins actually used, in ``options.unit``."""
        lo, hi = self._pos0_range
        return (lo * self._unit.scale, hi * self._unit.scale)

    def dynamic_mask(self, frame: np.ndarray) -> np.ndarray:
        """Pixels of one frame (ny, nx) masked dynamically (outside the static mask)."""
        arr = np.asarray(frame)
        if arr.shape != self.shape:
            raise IntegrationError(
                f"frame of shape {arr.shape} does not match the frame shape {self.shape}")
        rule, always_bad = self._rule(arr.dtype)
        bad = rule.exact(arr)
        bad.ravel()[always_bad] = True
        return bad & ~self.static_mask

    def _reference_kwargs(self, frame: np.ndarray, normalization: float) -> dict[str, Any]:
        o = self.options
        return {
            "unit": o.unit,
            "mask": (self.static_mask | self.dynamic_mask(frame)).astype(np.int8),
            "dark": self.dark, "flat": self.flat,
            "polarization_factor": o.polarization_factor,
            "correctSolidAngle": o.correct_solid_angle,
            "error_model": None if o.error_model == "none" else o.error_model,
            "method": tuple(o.method),
            "normalization_factor": float(normalization),
            "azimuth_range": o.azimuth_range_deg,
        }

    def reference_integrate1d(self, frame: np.ndarray, normalization: float = 1.0) -> Any:
        """pyFAI's own ``integrate1d`` of one frame, same corrections, masks and bins.

        The mask is ``static | dynamic_mask(frame)``; the radial range is the one the
        batch path resolved (``radial_range``), so the bins do not move when a frame masks
        an outermost pixel. Slow (pyFAI rebuilds its CSR whenever the mask changes): for
        tests and the per-frame baseline of the benchmark.
        """
        kw = self._reference_kwargs(frame, normalization)
        return self.ai.integrate1d(np.asarray(frame), int(self.options.npt),
                                   radial_range=self.radial_range, **kw)

    def reference_integrate2d(self, frame: np.ndarray, normalization: float = 1.0) -> Any:
        """pyFAI's own ``integrate2d`` of one frame (see :meth:`reference_integrate1d`)."""
        if self._op2 is None:
            raise IntegrationError("reference_integrate2d needs IntegrationOptions.npt_azimuthal")
        kw = self._reference_kwargs(frame, normalization)
        lo, hi = self._pos0_range_2d
        return self.ai.integrate2d(
            np.asarray(frame), int(self.options.npt), int(self.options.npt_azimuthal or 0),
            radial_range=(lo * self._unit.scale, hi * self._unit.scale), **kw)
