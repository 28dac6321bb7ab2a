"""The typed run configuration.

A run config is a YAML file that says what to reduce and how. It is validated
by :class:`RunConfig` (pydantic v2, unknown keys rejected). Relative paths are
resolved against the directory of the config file. Every problem is reported
with the config file, the key path, what was expected and what was found::

    run.yaml: xrd.npt: expected a positive integer, found -5

Schema evolution: every file carries ``schema_version``. A file written for an
older version is upgraded by the functions in :data:`MIGRATIONS` (one per
version step) before validation; a newer version than this operando knows is
an error.
"""

from __future__ import annotations

import contextlib
import difflib
import glob
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from operando.io.echem.csv_table import CsvColumnMap
from operando.io.paths import natural_key
from operando.io.timestamps import parse_start_time, start_to_utc, zoneinfo_or_raise
from operando.xrd.units import RadialUnit

SCHEMA_VERSION = 1

#: ``MIGRATIONS[n]`` turns a raw mapping of schema version ``n`` into version ``n + 1``.
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


class ConfigError(ValueError):
    """A run config that cannot be used; ``problems`` holds one line per problem."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        lines = [f"{source}: {p}" for p in problems]
        super().__init__(
            f"invalid run config {source} ({len(problems)} problem"
            f"{'s' if len(problems) != 1 else ''}):\n  " + "\n  ".join(lines)
        )


# --------------------------------------------------------------------------- paths


def _resolve_path(value: Path, info: ValidationInfo) -> Path:
    """Resolve a path relative to the config file's directory (``context['base_dir']``).

    An HDF5 URL ``file.h5::/inner/path`` resolves its file part and keeps the inner path.
    """
    file_part, sep, inner = str(Path(value).expanduser()).partition("::")
    p = Path(file_part)
    base = (info.context or {}).get("base_dir")
    if not p.is_absolute() and base is not None:
        p = Path(base) / p
    if not _is_glob(file_part):
        p = p.resolve()
    return Path(f"{p}{sep}{inner}") if sep else p


def _is_glob(text: str) -> bool:
    return any(ch in text for ch in "*?[")


def _check_exists(value: Path, info: ValidationInfo) -> Path:
    if not (info.context or {}).get("check_files", False):
        return value
    file_part = str(value).partition("::")[0]
    if _is_glob(file_part):
        if not glob.glob(file_part):
            raise ValueError(
                f"expected at least one file matching the pattern, found none: {file_part}")
    elif not Path(file_part).exists():
        raise ValueError(f"expected an existing file, found nothing at {file_part}")
    return value


#: An input path (file or glob pattern), resolved against the config's folder and checked.
InputPath = Annotated[Path, AfterValidator(_resolve_path), AfterValidator(_check_exists)]
#: An output path, resolved against the config's folder; need not exist.
OutputPath = Annotated[Path, AfterValidator(_resolve_path)]


def expand_inputs(paths: list[Path]) -> list[Path]:
    """Expand glob patterns (sorted, natural order of names) and keep literal paths."""
    out: list[Path] = []
    for p in paths:
        out.extend(sorted((Path(m) for m in glob.glob(str(p))), key=natural_key)
                   if _is_glob(str(p)) else [p])
    return out


def _timezone(value: str) -> str:
    zoneinfo_or_raise(value)
    return value


Timezone = Annotated[str, AfterValidator(_timezone)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


# --------------------------------------------------------------------------- sections


class RunSection(_Section):
    """What was measured."""

    name: str = Field(
        description="Run identifier; products go to <output.directory>/<name>/.",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$",
    )
    sample: str = Field("", description="Sample / cell description.")
    beamline: str = Field("", description="Beamline and facility.")
    proposal: str = Field("", description="Proposal or experiment number.")
    description: str = Field("", description="Free text.")


class OutputSection(_Section):
    """Where and how products are written."""

    directory: OutputPath = Field(description="Parent folder of the per-run product folder.")
    format: Literal["netcdf", "zarr"] = Field("netcdf", description="Product file format.")
    overwrite: bool = Field(
        False, description="Replace existing products (otherwise an existing product is kept)."
    )
    report: bool = Field(True, description="Write PNG figures and a summary to report/.")


class CsvColumns(_Section):
    """Column names of a generic CSV/TSV cycler export (``echem.format: csv``)."""

    time_s: str = Field(description="Column with elapsed time in seconds.")
    voltage_V: str = Field(description="Column with the working-electrode voltage in V.")
    current_A: str = Field(description="Column with the current.")
    current_scale: float = Field(1.0, description="Multiply the current column by this to get A.")
    charge_C: str | None = Field(None, description="Column with charge; integrated when absent.")
    charge_scale: float = Field(1.0, description="Multiply the charge column by this to get C.")
    step: str | None = None
    cycle: str | None = None
    trigger: str | None = Field(None, description="Column that is non-zero at rows where an "
                                "external trigger was recorded (exposed as 'trigger').")
    delimiter: str | None = Field(None, description="Field separator; sniffed when absent.")

    # the reader's own map (operando.io.echem.csv_table) checks the keys and is what it takes

    @model_validator(mode="after")
    def _reader_map(self) -> CsvColumns:
        self.column_map()
        return self

    def column_map(self) -> CsvColumnMap:
        """The column map :func:`operando.io.echem.read.read_echem` takes."""
        return CsvColumnMap(**self.model_dump())


class EchemSection(_Section):
    """The potentiostat / cycler log and the Faraday quantities derived from it."""

    files: list[InputPath] = Field(
        min_length=1, description="Cycler files of the run in time order (a continuation after "
        "a pause is a second file). Globs allowed."
    )
    format: Literal["auto", "biologic-mpt", "biologic-mpr", "neware", "csv"] = "auto"
    timezone: Timezone = Field(
        description="IANA timezone of the cycler PC clock, e.g. 'Europe/Paris'. Required: a "
        "naive local time is never guessed."
    )
    columns: CsvColumns | None = Field(None, description="Column map; required for format csv.")
    start_time: str | None = Field(
        None, description="Acquisition start (time_s = 0) when the file holds none: a CSV's "
        "(without it time_utc is NaT), or a BioLogic .mpr's still being written (no LOG "
        "module yet; without it EC-Lab's .mpl log beside the .mpr is read). ISO-8601: naive "
        "= wall time of the cycler PC in 'timezone' (never this machine's), or with a UTC "
        "offset. A file's own start (LOG module, .mpt header) always wins; a start here that "
        "agrees with none of them within 1 s is a warning."
    )
    active_mass_mg: float = Field(gt=0, description="Active material mass in mg.")
    molar_mass_g_mol: float = Field(157.757, gt=0, description="Molar mass of the active "
                                    "material (LiFePO4: 157.757 g/mol).")
    electrons_per_formula_unit: float = Field(1.0, gt=0)
    x0: float = Field(1.0, description="Li content x in LixMO at the start of the file.")
    capacity_reference: Literal["theoretical", "achieved"] = Field(
        "theoretical", description="Capacity that defines the Faraday-expected phase fraction."
    )

    @field_validator("start_time", mode="before")
    @classmethod
    def _start_time_text(cls, value: Any) -> Any:
        # an unquoted YAML timestamp arrives as a datetime (a date alone as a date)
        if isinstance(value, datetime):
            return value.isoformat()
        if isinstance(value, date):
            raise ValueError(f"expected a date and time (ISO-8601, e.g. "
                             f"'{value.isoformat()}T09:30:00'), found the date {value} alone")
        return value

    @model_validator(mode="after")
    def _csv_needs_columns(self) -> EchemSection:
        if self.format == "csv" and self.columns is None:
            raise ValueError("format 'csv' expects a 'columns' map, found none")
        return self

    @field_validator("start_time")
    @classmethod
    def _start_time_is_an_instant(cls, value: str | None, info: ValidationInfo) -> str | None:
        # parsed and placed in 'timezone' now, so a bad value fails before any file is read
        try:
            start = parse_start_time(value, "start_time")
            tz = info.data.get("timezone")  # absent when the timezone itself is invalid
            if start is not None and tz is not None:
                start_to_utc(start, zoneinfo_or_raise(tz))
        except ValueError as exc:
            raise ValueError(str(exc).removeprefix("start_time: ")) from None
        return value


XrayStream = Literal["xrd", "xanes", "confocal"]

#: what one trigger pulse of each X-ray stream may mark (the first is the default)
PULSES: dict[str, tuple[str, ...]] = {"xrd": ("frame",), "xanes": ("scan", "point"),
                                      "confocal": ("point",)}


class SyncStream(_Section):
    """One X-ray stream's own clock (``sync.streams.<stream>``): its own trigger record
    (or absolute timestamps), or ``clock: <stream>`` to borrow another stream's clock.
    Keys left out take the value of the ``sync`` section (except ``trigger_file``: a
    stream never matches its pulses against another stream's record)."""

    clock: XrayStream | None = Field(
        None, description="Borrow this stream's clock instead of fitting one (no other key "
        "then).")
    method: Literal["triggers", "timestamps"] | None = Field(
        None, description="'triggers' or 'timestamps'; default: sync.method.")
    trigger_file: InputPath | None = Field(
        None, description="This stream's trigger record (potentiostat clock).")
    pulse: Literal["frame", "scan", "point"] | None = Field(
        None, description="What one pulse marks: xrd 'frame'; xanes 'scan' (its start, the "
        "default) or 'point' (every energy point); confocal 'point'.")
    fixed_offset_s: float | None = None
    drift: bool | None = None
    max_rms_residual_s: float | None = Field(None, gt=0)
    max_abs_residual_s: float | None = Field(None, gt=0)
    offset_guess_s: float | None = None
    max_offset_s: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _borrow_alone(self) -> SyncStream:
        if self.clock is not None:
            others = sorted(k for k in self.model_fields_set if k != "clock")
            if others:
                raise ValueError(f"'clock' (borrow {self.clock!r}'s clock) expects no other "
                                 f"key, found {others}")
        return self


@dataclass(frozen=True)
class StreamClockSettings:
    """The resolved settings of one stream's own clock (:meth:`SyncSection.settings`)."""

    stream: str
    method: str
    trigger_file: Path | None
    pulse: str
    fixed_offset_s: float
    drift: bool
    max_rms_residual_s: float
    max_abs_residual_s: float
    offset_guess_s: float
    max_offset_s: float


class SyncSection(_Section):
    """Putting X-ray timestamps on the potentiostat clock: one clock per X-ray stream.

    The section's own keys make the clock of ``reference_stream`` (its pulses matched
    against ``trigger_file``); every other stream is on that clock unless
    ``streams.<stream>`` gives it its own (a trigger record, or absolute timestamps) or
    names another stream's clock to borrow (``clock: <stream>``)."""

    method: Literal["triggers", "timestamps"] = Field(
        "triggers", description="'triggers': fit a clock model (offset + drift) to trigger pulses "
        "seen by both sides. 'timestamps': use absolute timestamps (+ fixed_offset_s)."
    )
    trigger_file: InputPath | None = Field(
        None, description="Trigger times recorded by the potentiostat (its clock) for the "
        "reference stream."
    )
    reference_stream: XrayStream = Field(
        "xrd", description="X-ray stream whose timestamps are the sent triggers of "
        "'trigger_file'; the streams without an entry in 'streams' are on its clock."
    )
    fixed_offset_s: float = Field(0.0, description="Added to beamline times (timestamps method).")
    drift: bool = Field(True, description="Fit a linear drift as well as an offset.")
    max_rms_residual_s: float = Field(0.05, gt=0, description="Fail when the fit RMS exceeds it.")
    max_abs_residual_s: float = Field(0.25, gt=0, description="Fail when a residual exceeds it.")
    offset_guess_s: float = Field(0.0, description="Expected beamline-minus-header offset (s); "
                                  "resolves the trigger-period ambiguity.")
    max_offset_s: float = Field(60.0, gt=0, description="Largest |offset| (s) searched between "
                                "the beamline clock and the potentiostat header.")
    streams: dict[XrayStream, SyncStream] | None = Field(
        None, description="Per-stream clocks: a stream timed by its own controller gets its "
        "own trigger record (or timestamps) here; 'clock: <stream>' borrows another's.")

    @model_validator(mode="after")
    def _triggers_need_file(self) -> SyncSection:
        for name in PULSES:
            entry = (self.streams or {}).get(name)  # type: ignore[call-overload]
            if entry is None or entry.clock is not None:
                continue
            where = f"streams.{name}"
            if entry.pulse is not None and entry.pulse not in PULSES[name]:
                raise ValueError(f"{where}.pulse: expected one of {list(PULSES[name])} for "
                                 f"{name}, found {entry.pulse!r}")
            if (entry.method or self.method) == "triggers" and entry.trigger_file is None and \
                    name != self.reference_stream:
                raise ValueError(f"{where}: method 'triggers' expects its own 'trigger_file' "
                                 f"(or 'clock: <stream>' to borrow another stream's clock), "
                                 "found none")
        ref = self.settings(self.reference_stream) \
            if self.source(self.reference_stream) == self.reference_stream else None
        if ref is not None and ref.method == "triggers" and ref.trigger_file is None:
            raise ValueError("method 'triggers' expects 'trigger_file', found none")
        for name in PULSES:
            self.source(name)  # a borrowing cycle is an error
        return self

    def chain(self, stream: str) -> list[str]:
        """``stream``, then every stream whose clock it is on in turn (``clock:`` borrowing
        followed; a stream without an entry is on ``reference_stream``'s clock); the last
        one fits its own. ``ValueError`` for a circle."""
        seen, cur = [stream], stream
        while True:
            entry = (self.streams or {}).get(cur)  # type: ignore[call-overload]
            if entry is None:
                if cur == self.reference_stream:
                    return seen
                nxt = self.reference_stream
            elif entry.clock is None:
                return seen
            else:
                nxt = entry.clock
            if nxt in seen:
                raise ValueError(f"streams.{stream}.clock: the streams borrow each other's "
                                 f"clock in a circle ({' → '.join([*seen, nxt])})")
            seen.append(nxt)
            cur = nxt

    def source(self, stream: str) -> str:
        """The stream whose own clock ``stream`` is on (see :meth:`chain`)."""
        return self.chain(stream)[-1]

    def settings(self, stream: str) -> StreamClockSettings:
        """The resolved settings of ``stream``'s own clock (its ``streams`` entry over the
        section's keys; the trigger record of the reference stream defaults to
        ``trigger_file``)."""
        e = (self.streams or {}).get(stream) or SyncStream()  # type: ignore[call-overload]

        def pick(key: str) -> Any:
            v = getattr(e, key)
            return getattr(self, key) if v is None else v

        trig = e.trigger_file
        if trig is None and stream == self.reference_stream:
            trig = self.trigger_file
        return StreamClockSettings(
            stream=stream, method=pick("method"), trigger_file=trig,
            pulse=e.pulse or PULSES[stream][0], fixed_offset_s=pick("fixed_offset_s"),
            drift=pick("drift"), max_rms_residual_s=pick("max_rms_residual_s"),
            max_abs_residual_s=pick("max_abs_residual_s"),
            offset_guess_s=pick("offset_guess_s"), max_offset_s=pick("max_offset_s"))


class IntegrationSection(_Section):
    """Azimuthal integration with pyFAI (shared by xrd and confocal)."""

    poni: InputPath = Field(description="pyFAI PONI geometry file.")
    mask: InputPath | None = Field(None, description="Mask image (1 = masked), read with fabio.")
    dark: InputPath | None = None
    flat: InputPath | None = None
    unit: RadialUnit = "q_A^-1"
    npt: int = Field(2000, gt=0, description="Number of radial bins.")
    radial_range: tuple[float, float] | None = Field(None, description="(min, max) in `unit`.")
    azimuth_range_deg: tuple[float, float] | None = None
    npt_azimuthal: int | None = Field(None, gt=0, description="Also write a 2D cake when set.")
    error_model: Literal["poisson", "azimuthal", "none"] = "poisson"
    polarization_factor: float | None = Field(0.99, ge=-1, le=1)
    correct_solid_angle: bool = True
    chunk_frames: int = Field(200, gt=0, description="Frames per work unit.")

    @field_validator("radial_range", "azimuth_range_deg")
    @classmethod
    def _ordered(cls, v: tuple[float, float] | None) -> tuple[float, float] | None:
        if v is not None and not v[0] < v[1]:
            raise ValueError(f"expected (min, max) with min < max, found {list(v)}")
        return v

    @model_validator(mode="after")
    def _fits_in_memory(self) -> IntegrationSection:
        # refused here, before anything is allocated: a work unit holds chunk_frames
        # patterns (intensity, sigma) and pyFAI four accumulators, npt × npt_azimuthal each
        bins = self.npt * (self.npt_azimuthal or 1)
        need = 8 * bins * (2 * self.chunk_frames + 4)
        budget = memory_budget_bytes()
        if need > budget:
            raise ValueError(
                f"expected a work unit that fits in memory (at most {budget / 2**30:.1f} GiB: "
                f"half of this machine's RAM); found npt={self.npt}, npt_azimuthal="
                f"{self.npt_azimuthal}, chunk_frames={self.chunk_frames}: about "
                f"{need / 2**30:.1f} GiB of patterns per work unit")
        return self


def memory_budget_bytes() -> int:
    """The most one work unit may hold: half the physical memory (``OPERANDO_MEMORY_BUDGET``,
    bytes, overrides it)."""
    env = os.environ.get("OPERANDO_MEMORY_BUDGET")
    if env:
        return int(float(env))
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    except (ValueError, OSError, AttributeError):
        return 8 * 2**30


class XrdSection(_Section):
    """Time-resolved XRD: detector frames to I(q) per frame."""

    files: list[InputPath] = Field(min_length=1, description="Frame files (HDF5/NeXus, Eiger "
                                   "master, or images fabio reads). Globs allowed.")
    dataset: str | None = Field(None, description="HDF5 path of the frame stack; found "
                                "automatically (NXdetector/data) when absent.")
    timestamp_path: str | None = Field(None, description="HDF5 path of per-frame epoch seconds.")
    count_time_path: str | None = None
    monitor_path: str | None = None
    normalize_by_monitor: bool = Field(False, description="Divide each frame by its monitor "
                                       "counts (pyFAI normalization_factor).")
    swmr: bool = Field(False, description="Read files the detector is still writing (HDF5 "
                       "SWMR): frames up to the last complete one; the rest reported pending.")
    integration: IntegrationSection


class PeakEntry(_Section):
    """One reflection of a fit window."""

    phase: str = Field(description="Name of the phase (one of peaks.phases[*].name).")
    hkl: tuple[int, int, int] | None = Field(None, description="Miller indices; used for the "
                                             "lattice refinement and to compute the position "
                                             "from the phase's lattice when 'position' is absent.")
    position: float | None = Field(None, gt=0, description="Nominal position in the window's "
                                   "'unit' (d in Å or q in 1/Å); from hkl and the phase's "
                                   "lattice when absent.")
    name: str | None = Field(None, description="Peak name; default '<phase>_<hkl>'.")
    intensity: float = Field(1.0, gt=0, description="Integrated intensity (2θ area) of this "
                             "reflection for a phase fraction of 1, on a scale common to all "
                             "phases: turns areas into phase fractions.")
    satellite_of: str | None = Field(None, description="Name of a main peak of the same phase "
                                     "in this window: this peak's area is fixed at 'ratio' × "
                                     "that peak's, its width is shared and its centre moves "
                                     "with it (overlapping or weak reflections).")
    ratio: float | None = Field(None, gt=0, description="Fixed area ratio to 'satellite_of'; "
                                "default intensity / intensity of that peak.")

    @property
    def label(self) -> str:
        """The peak's name in peaks.nc: ``name``, or ``<phase>_<h><k><l>`` when absent
        (``<phase>_`` without hkl)."""
        return self.name or f"{self.phase}_{''.join(map(str, self.hkl or ()))}"


class PeakWindow(_Section):
    """A radial window fitted as one model: its peaks plus a polynomial background."""

    name: str = Field(description="Window name (used in peaks.nc).")
    unit: Literal["d_A", "q_A^-1"] = Field("d_A", description="Unit of 'range' and of the "
                                           "peak positions: d (Å) or q (1/Å), so the model "
                                           "serves any wavelength.")
    range: tuple[float, float] = Field(description="(min, max) of the fitted data in 'unit'.")
    background_order: int = Field(1, ge=0, le=3, description="Polynomial background order.")
    peaks: list[PeakEntry] = Field(min_length=1, description="Reflections in (and just "
                                   "outside) the window; tails of neighbours count.")

    @field_validator("range")
    @classmethod
    def _ordered(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not 0 < v[0] < v[1]:
            raise ValueError(f"expected (min, max) with 0 < min < max, found {list(v)}")
        return v


class PeakPhase(_Section):
    """A crystalline phase: lattice for positions, Vegard end members and lattice refinement."""

    name: str = Field(description="Phase name, e.g. 'LiFePO4'.")
    system: Literal["cubic", "hexagonal", "rhombohedral", "orthorhombic"] = Field(
        "orthorhombic", description="Crystal system of the lattice refinement (rhombohedral "
        "in hexagonal axes).")
    a_A: float = Field(gt=0, description="Reference lattice parameter a (Å).")
    b_A: float | None = Field(None, gt=0, description="b (Å); orthorhombic only.")
    c_A: float | None = Field(None, gt=0, description="c (Å); hexagonal/rhombohedral and "
                              "orthorhombic.")
    x_li: float | None = Field(None, description="Li content of this phase as a Vegard end "
                               "member (e.g. 1 for LiFePO4, 0 for FePO4).")
    scale: float = Field(1.0, gt=0, description="Per-phase scale factor of the reference "
                         "intensities (phase fraction ∝ area / (scale × intensity)).")
    max_shift: float | None = Field(None, gt=0, lt=0.2, description="Largest relative shift "
                                    "Δd/d of its peaks from nominal; default peaks.max_shift.")

    @model_validator(mode="after")
    def _axes(self) -> PeakPhase:
        need = {"cubic": (), "hexagonal": ("c_A",), "rhombohedral": ("c_A",),
                "orthorhombic": ("b_A", "c_A")}[self.system]
        for key in need:
            if getattr(self, key) is None:
                raise ValueError(f"system {self.system!r} expects '{key}', found none")
        return self


class VegardSection(_Section):
    """Li content by Vegard's law between two end-member phases."""

    lithiated: str = Field(description="Phase name of the lithiated end member (its x_li, "
                           "default 1).")
    delithiated: str = Field(description="Phase name of the delithiated end member (its "
                             "x_li, default 0).")
    quantity: Literal["volume", "a", "b", "c"] = Field("volume", description="Lattice quantity "
                                                       "interpolated linearly in x.")


class IntermediatePhaseSection(_Section):
    """Per-frame test for an intermediate phase: model with it vs without it."""

    phase: str = Field(description="Phase name of the intermediate (its peaks are only in the "
                       "larger model).")
    criterion: Literal["bic", "aic"] = Field("bic", description="Information criterion.")
    threshold: float = Field(10.0, ge=0, description="Flag when Δ(criterion) < −threshold.")
    min_fraction: float = Field(0.02, ge=0, lt=1, description="...and the intermediate's "
                                "fraction is at least this.")


class ScherrerSection(_Section):
    """Crystallite size from peak widths."""

    enabled: bool = Field(False, description="Write Scherrer sizes to peaks.nc.")
    k: float = Field(0.9, gt=0, description="Scherrer constant K.")
    instrument_fwhm_deg: float = Field(0.0, ge=0, description="Instrumental FWHM (2θ deg), "
                                       "removed in quadrature.")


class PeaksSection(_Section):
    """Peak fitting of the integrated XRD patterns and phase analysis (peaks.nc)."""

    method: Literal["batch", "lmfit"] = Field("batch", description="'batch': vectorised "
                                              "Levenberg–Marquardt over a chunk of frames; "
                                              "'lmfit': sequential per-frame lmfit reference.")
    chunk_frames: int = Field(200, gt=0, description="Frames per work unit.")
    profile: Literal["gaussian", "lorentzian", "pseudo_voigt", "split_pseudo_voigt"] = Field(
        "pseudo_voigt", description="Peak profile (split_pseudo_voigt: asymmetric).")
    eta: float | None = Field(None, ge=0, le=1, description="Fixed pseudo-Voigt Lorentzian "
                              "fraction; free (one per window) when absent.")
    shared_width: bool = Field(True, description="One FWHM per phase per window.")
    fwhm_guess_q: float = Field(0.025, gt=0, description="Starting FWHM in q (1/Å).")
    fwhm_min_q: float = Field(0.002, gt=0, description="Lower bound of the FWHM in q (1/Å).")
    fwhm_max_q: float = Field(0.25, gt=0, description="Upper bound of the FWHM in q (1/Å).")
    max_shift: float = Field(0.01, gt=0, lt=0.2, description="Largest relative shift Δd/d of a "
                             "peak centre from nominal.")
    snr_threshold: float = Field(3.0, ge=0, description="A peak with area/σ(area) below this "
                                 "is not carried forward, nor used for lattice parameters.")
    max_iter: int = Field(200, gt=0, description="Iterations of the batch Levenberg–Marquardt.")
    follow_peaks: bool = Field(True, description="Windows follow the drift of their peaks.")
    joint_windows: bool = Field(False, description="Fit all windows of a frame as one model "
                                "(per-window backgrounds and peak centres): one intensity "
                                "scale per phase with the peaks' areas fixed at their "
                                "'intensity' ratios, and one FWHM in q per phase (η shared). "
                                "Phase fractions then follow from the scales; needs correct "
                                "relative intensities.")
    instrument_box: bool = Field(False, description="Convolve every profile with a box (the "
                                 "detector pixel's radial footprint, pyFAI bounding-box "
                                 "splitting) of one free width in q shared by all peaks; "
                                 "a symmetric profile only. Without it, a pixel as wide as "
                                 "a sharp peak biases the phase fractions towards the "
                                 "majority phase.")
    box_guess_q: float = Field(0.01, gt=0, description="Starting instrument box width in q "
                               "(1/Å).")
    box_max_q: float = Field(0.1, gt=0, description="Upper bound of the instrument box width "
                             "in q (1/Å).")
    phases: list[PeakPhase] = Field(min_length=1, description="Phases of the peaks.")
    windows: list[PeakWindow] = Field(min_length=1, description="Fit windows.")
    vegard: VegardSection | None = Field(None, description="Li content by Vegard's law.")
    intermediate: IntermediatePhaseSection | None = Field(None, description="Intermediate-"
                                                          "phase detection.")
    scherrer: ScherrerSection | None = Field(None, description="Scherrer sizes.")

    @model_validator(mode="after")
    def _references(self) -> PeaksSection:
        names = [p.name for p in self.phases]
        if len(set(names)) != len(names):
            raise ValueError(f"phases: expected unique names, found {names}")
        if self.instrument_box and self.profile == "split_pseudo_voigt":
            raise ValueError("instrument_box: expected a symmetric profile, found profile "
                             "'split_pseudo_voigt'")
        if not self.box_guess_q <= self.box_max_q:
            raise ValueError("box_guess_q: expected box_guess_q ≤ box_max_q, found "
                             f"{self.box_guess_q}, {self.box_max_q}")
        if not self.fwhm_min_q < self.fwhm_guess_q < self.fwhm_max_q:
            raise ValueError("fwhm_guess_q: expected fwhm_min_q < fwhm_guess_q < fwhm_max_q, "
                             f"found {self.fwhm_min_q}, {self.fwhm_guess_q}, {self.fwhm_max_q}")
        for i, w in enumerate(self.windows):
            for j, p in enumerate(w.peaks):
                key = f"windows[{i}].peaks[{j}]"
                if p.phase not in names:
                    raise ValueError(f"{key}.phase: expected one of {names}, found {p.phase!r}")
                if p.position is None and p.hkl is None:
                    raise ValueError(f"{key}: expected 'position' or 'hkl', found neither")
            pnames = [p.label for p in w.peaks]
            dup = sorted({n for n in pnames if pnames.count(n) > 1})
            if dup:
                raise ValueError(f"windows[{i}].peaks: expected unique peak names in window "
                                 f"{w.name!r}, found {dup} more than once")
            for j, p in enumerate(w.peaks):
                if p.satellite_of is None:
                    continue
                key = f"windows[{i}].peaks[{j}].satellite_of"
                if p.satellite_of not in pnames:
                    raise ValueError(f"{key}: expected a peak name of window {w.name!r} "
                                     f"({', '.join(pnames)}), found {p.satellite_of!r}")
                ref = w.peaks[pnames.index(p.satellite_of)]
                if ref.phase != p.phase or ref.satellite_of is not None:
                    raise ValueError(f"{key}: expected a main peak of phase {p.phase!r}, found "
                                     f"{p.satellite_of!r}")
        for key, val in (("vegard.lithiated", self.vegard and self.vegard.lithiated),
                         ("vegard.delithiated", self.vegard and self.vegard.delithiated),
                         ("intermediate.phase", self.intermediate and self.intermediate.phase)):
            if val and val not in names:
                raise ValueError(f"{key}: expected one of {names}, found {val!r}")
        return self


class XanesStandard(_Section):
    name: str
    file: InputPath
    column: str | None = Field(None, description="Column in a multicolumn file (Athena .nor).")


class XanesSection(_Section):
    """XANES scans: normalisation, energy alignment, linear-combination fitting."""

    files: list[InputPath] = Field(min_length=1)
    format: Literal["auto", "hdf5", "text"] = Field(
        "auto", description="Scan files: 'hdf5' (Bliss-like, one entry '<n>.1' per scan; the "
        "*_path keys), 'text' (one scan per file: XDI, Athena .nor/.xmu, SOLEIL ROCK, two-column; "
        "the *_column keys); 'auto': by suffix (.h5 .hdf5 .hdf .nxs .nx5 .nx -> hdf5, else text).")
    scans: str = Field("*", description="Glob over scan entry names in the HDF5 file(s).")
    mode: Literal["transmission", "fluorescence"] = "transmission"
    energy_path: str = "measurement/energy"
    i0_path: str = "measurement/I0"
    it_path: str | None = "measurement/It"
    if_path: str | None = None
    iref_path: str | None = "measurement/Iref"
    epoch_path: str | None = "measurement/epoch"
    start_time_path: str | None = "start_time"
    end_time_path: str | None = "end_time"
    swmr: bool = Field(False, description="HDF5 scan files still being written (a live run): "
                       "only complete scans are read (end_time written, every point's data "
                       "and epoch written, not a zero-filled slot); the others are pending, "
                       "not an error.")
    energy_column: str | None = Field(
        None, description="Text: column of the energy axis (label or 1-based index); null: the "
        "column named like energy, else column 1.")
    mu_column: str | None = Field(
        None, description="Text: column holding mu (or normalised mu, see 'normalized'), e.g. "
        "'normalized' (ROCK) or 'mu'; null: computed from i0_column/it_column/if_column; a "
        "two-column file needs neither.")
    i0_column: str | None = Field(
        None, description="Text: I0 column; mu = ln(I0/It) (transmission) or If/I0 "
        "(fluorescence) with it_column / if_column.")
    it_column: str | None = Field(None, description="Text: It column (transmission; and the "
                                  "foil mu ln(It/Iref) with iref_column).")
    if_column: str | None = Field(None, description="Text: If column (fluorescence).")
    iref_column: str | None = Field(None, description="Text: Iref column; the reference-foil "
                                    "mu = ln(It/Iref) for energy alignment.")
    ref_column: str | None = Field(
        None, description="Text: column holding the reference-foil mu itself (e.g. ROCK "
        "'reference'), instead of it_column/iref_column, for energy alignment.")
    normalized: bool = Field(
        False, description="Text mu is already normalised (Athena .nor, ROCK 'normalized'): "
        "kept as given (not re-normalised, not flattened; standards used as given too). E0 "
        "is still found on it (half_step: where it crosses 0.5) and the edge step is still "
        "measured with the Larch background fits (~1; a flat pre-edge is fine), as a check.")
    timezone: Timezone | None = Field(
        None, description="Text: IANA timezone of header start times without a UTC offset "
        "(ROCK '#Time at start=' is Paris wall time: 'Europe/Paris'). Required for such "
        "headers: a naive local time is never guessed.")
    scan_end: Literal["header", "next_start", "duration"] = Field(
        "header", description="Text: end of each scan's exposure. 'header': start + the "
        "header's 'Time from start (seconds)' (ROCK) or XDI Scan.end_time; 'next_start': the "
        "next scan's start (the last scan: the median interval); 'duration': start + "
        "scan_duration_s.")
    scan_duration_s: float | None = Field(
        None, gt=0, description="Text: exposure of each scan (s) for scan_end: duration.")
    times: Literal["header", "none"] = Field(
        "header", description="Text: acquisition times of the scans. 'header': each file's "
        "start time (and scan_end); 'none': no time axis (a single spectrum, or a series "
        "without start times, e.g. one multi-column file): scans are indexed 1..n, not "
        "synchronised, not compared with the echem.")
    mu_columns: list[str] | Literal["*"] | None = Field(
        None, description="Text: several columns of each file, each one scan (a series in "
        "one file: energy + one column per spectrum); '*': every column but the energy (and "
        "ref_column). Such a file has one header for all its spectra: expects times: none.")
    reference_e0_eV: float | None = Field(
        None, description="Tabulated edge of the reference foil (Fe: 7112.0 eV by Bearden; "
        "use the value your standards were calibrated to)."
    )
    standards: list[XanesStandard] = Field(default_factory=list)
    fit_range_eV: tuple[float, float] = Field((-20.0, 60.0), description="LCF window relative "
                                              "to E0 (eV).")
    sum_to_one: bool = Field(True, description="LCF weights sum to 1 (false: free sum).")
    nonneg: bool = Field(True, description="LCF weights >= 0.")
    e0_method: Literal["derivative", "half_step"] = Field(
        "derivative", description="E0: maximum of dmu/dE (Larch find_e0) or the energy where "
        "the normalised mu crosses 0.5 (half edge step).")
    pre_edge_eV: tuple[float, float] | None = Field(
        None, description="Pre-edge line range relative to E0 (eV), e.g. [-150, -30]; null: "
        "Larch defaults (first point rounded to 5 eV .. half of it).")
    norm_range_eV: tuple[float, float] | None = Field(
        None, description="Post-edge polynomial range relative to E0 (eV), e.g. [25, 150]; "
        "null: Larch defaults (min(25, norm2/15) .. last point).")
    norm_order: int | None = Field(
        None, ge=0, le=3, description="Post-edge polynomial order (0-3); null: Larch rule (2 "
        "if the range spans >= 300 eV, 1 if >= 30 eV, else 0).")
    lcf_array: Literal["flat", "norm"] = Field(
        "flat", description="Spectrum fitted by LCF: flattened (Athena's default) or normalised.")
    align_mode: Literal["reference_e0", "reference_scan", "none"] = Field(
        "reference_e0", description="Energy alignment on the reference foil (iref_path): to "
        "reference_e0_eV, to one scan's foil (reference_scan), or none.")
    reference_scan: int = Field(
        1, ge=1, description="Scan number (entry '<n>.1') whose foil is the reference for "
        "align_mode: reference_scan.")
    align_window_eV: tuple[float, float] = Field(
        (-15.0, 35.0), description="Foil matching window relative to the foil E0 (eV).")
    fit_shifts: bool = Field(
        False, description="Fit one energy shift per standard (common to the run) in the LCF.")
    max_shift_eV: float = Field(3.0, gt=0, description="Bound on each standard's shift (eV).")
    max_components: int | None = Field(
        None, ge=1, description="Also try every subset of up to this many standards and rank "
        "them by reduced chi-square (Larch fit-all); null: off.")
    faraday_component: str | None = Field(
        "FePO4", description="Standard whose fraction the Faraday-expected fraction (echem "
        "faraday_fraction: the delithiated end member) predicts; null: no comparison.")
    max_lag_s: float = Field(600.0, gt=0, description="Lag search range +/- (s) of the "
                             "XANES-vs-Faraday comparison.")

    @property
    def input_format(self) -> Literal["hdf5", "text"]:
        """'hdf5' or 'text': ``format``, or for 'auto' the suffix of the files (all alike)."""
        if self.format != "auto":
            return self.format
        kinds = {"hdf5" if Path(f).suffix.lower() in (".h5", ".hdf5", ".hdf", ".nxs", ".nx5",
                                                     ".nx") else "text" for f in self.files}
        if len(kinds) != 1:
            raise ValueError(f"'format' auto: the files mix HDF5 and text suffixes "
                             f"({[Path(f).name for f in self.files]}); expected one kind, or "
                             "set format")
        return "hdf5" if kinds == {"hdf5"} else "text"

    @model_validator(mode="after")
    def _channels(self) -> XanesSection:
        if self.input_format == "text":
            self._text_channels()
        else:
            self._hdf5_channels()
        names = [s.name for s in self.standards]
        if len(set(names)) != len(names):
            raise ValueError(f"'standards' names must be unique, found {names}")
        if self.faraday_component is not None and names \
                and self.faraday_component not in names:
            raise ValueError(f"'faraday_component' {self.faraday_component!r} is not a standard; "
                             f"expected one of {names} or null")
        for key in ("fit_range_eV", "align_window_eV", "pre_edge_eV", "norm_range_eV"):
            rng = getattr(self, key)
            if rng is not None and not rng[0] < rng[1]:
                raise ValueError(f"'{key}' expects [low, high] with low < high, found "
                                 f"{list(rng)}")
        return self

    def _hdf5_channels(self) -> None:
        """The channel checks for HDF5 scans (the *_path keys)."""
        need = self.it_path if self.mode == "transmission" else self.if_path
        if need is None:
            key = "it_path" if self.mode == "transmission" else "if_path"
            raise ValueError(f"mode {self.mode!r} expects '{key}', found none")
        if self.align_mode == "reference_e0" and self.iref_path is not None \
                and self.reference_e0_eV is None:
            raise ValueError("align_mode 'reference_e0' expects 'reference_e0_eV' (the foil's "
                             "tabulated edge), found none; or set align_mode: none")
        if self.align_mode != "none" and self.it_path is None:
            raise ValueError(f"align_mode {self.align_mode!r} expects 'it_path' (the foil's "
                             "mu = ln(It/Iref) needs It), found none; or set align_mode: none")
        if self.align_mode != "none" and self.iref_path is None:
            raise ValueError(f"align_mode {self.align_mode!r} expects 'iref_path' (the "
                             "reference-foil channel), found none; or set align_mode: none")

    def _text_channels(self) -> None:
        """The checks of ``_channels`` for text scans (the *_column keys)."""
        if self.mu_columns is not None:
            if self.mu_column is not None or self.i0_column is not None:
                raise ValueError("'mu_columns' expects neither 'mu_column' nor 'i0_column' "
                                 "(each listed column is a scan's mu), found one")
            if self.times != "none":
                raise ValueError("'mu_columns' (several spectra in one file) expects 'times: "
                                 "none' (one header for all its spectra: no per-scan start "
                                 f"time), found times: {self.times!r}")
        if self.mu_column is not None and self.i0_column is not None:
            raise ValueError("'mu_column' and 'i0_column' are both set; expected one (mu as "
                             "given, or mu computed from the counts)")
        if self.i0_column is not None:
            key = "it_column" if self.mode == "transmission" else "if_column"
            if getattr(self, key) is None:
                raise ValueError(f"'i0_column' with mode {self.mode!r} expects '{key}', found "
                                 "none")
        if self.normalized and self.i0_column is not None:
            raise ValueError("'normalized': true expects mu as given ('mu_column'), found "
                             "counts ('i0_column')")
        if self.ref_column is not None and self.iref_column is not None:
            raise ValueError("'ref_column' and 'iref_column' are both set; expected one")
        if self.iref_column is not None and self.it_column is None:
            raise ValueError("'iref_column' expects 'it_column' (foil mu = ln(It/Iref)), "
                             "found none")
        foil = self.ref_column is not None or self.iref_column is not None
        if self.align_mode != "none" and not foil:
            raise ValueError(f"align_mode {self.align_mode!r} expects a reference-foil column "
                             "('ref_column', or 'iref_column' with 'it_column'), found none; "
                             "or set align_mode: none")
        if self.align_mode == "reference_e0" and self.reference_e0_eV is None:
            raise ValueError("align_mode 'reference_e0' expects 'reference_e0_eV' (the foil's "
                             "tabulated edge), found none; or set align_mode: none")
        if self.scan_end == "duration" and self.scan_duration_s is None:
            raise ValueError("scan_end 'duration' expects 'scan_duration_s', found none")
        if self.scan_duration_s is not None and self.scan_end != "duration":
            raise ValueError(f"'scan_duration_s' is set but scan_end is {self.scan_end!r}; set "
                             "scan_end: duration, or remove scan_duration_s")


class ConfocalSocSection(_Section):
    """Local state of charge (0 = discharged, 1 = charged) of each confocal point, from a
    fitted quantity through a calibration."""

    quantity: Literal["phase_fraction", "peak_position", "lattice_a", "lattice_b",
                      "lattice_c"] = Field(
        "phase_fraction", description="What SOC is read from: the fraction of 'phase' "
        "(two-phase materials), the d-spacing of 'peak' (Å; solid solutions), or a lattice "
        "parameter of 'phase' (Å).")
    phase: str | None = Field(None, description="Phase (peaks phases[*].name): the charged end "
                              "member for phase_fraction; the phase whose lattice is used.")
    peak: str | None = Field(None, description="Peak name (a window's peaks[*].name) for "
                             "peak_position.")
    calibration: Literal["linear", "table"] = Field(
        "linear", description="'linear': between the end states 'discharged' and 'charged'; "
        "'table': a tabulated curve (quantity, SOC) measured on a slow cycle.")
    discharged: float | None = Field(None, description="Quantity at SOC 0 (linear); 0 for "
                                     "phase_fraction when absent.")
    charged: float | None = Field(None, description="Quantity at SOC 1 (linear); 1 for "
                                  "phase_fraction when absent.")
    table_file: InputPath | None = Field(None, description="CSV/whitespace text with two "
                                         "columns: quantity, SOC (header lines allowed).")
    table: list[tuple[float, float]] | None = Field(None, description="Inline table of "
                                                    "(quantity, SOC) pairs.")
    x_li_discharged: float = Field(1.0, description="Li content x at SOC 0.")
    x_li_charged: float = Field(0.0, description="Li content x at SOC 1.")

    @model_validator(mode="after")
    def _complete(self) -> ConfocalSocSection:
        if self.quantity == "peak_position" and self.peak is None:
            raise ValueError("quantity 'peak_position' expects 'peak' (a peak name), found none")
        if self.quantity != "peak_position" and self.phase is None:
            raise ValueError(f"quantity {self.quantity!r} expects 'phase' (a phase name), "
                             "found none")
        if self.calibration == "table":
            if (self.table_file is None) == (self.table is None):
                raise ValueError("calibration 'table' expects exactly one of 'table_file' and "
                                 "'table', found "
                                 + ("both" if self.table is not None else "neither"))
            if self.table is not None and len(self.table) < 2:
                raise ValueError(f"table: expected at least 2 (quantity, SOC) pairs, found "
                                 f"{len(self.table)}")
        elif self.quantity != "phase_fraction" and (self.discharged is None
                                                     or self.charged is None):
            raise ValueError(f"calibration 'linear' of {self.quantity!r} expects 'discharged' "
                             "and 'charged' (the quantity at SOC 0 and 1), found "
                             f"{self.discharged} and {self.charged}")
        if self.discharged is not None and self.charged is not None \
                and self.discharged == self.charged:
            raise ValueError(f"discharged and charged: expected different values, found "
                             f"{self.discharged} for both")
        return self


class ConfocalSection(_Section):
    """Depth-resolved XRD: passes over depth positions through the electrode, each point with
    its own acquisition time (angle-dispersive frames, or energy-dispersive spectra at a
    fixed 2θ)."""

    mode: Literal["angle", "energy"] = Field(
        "angle", description="'angle': a 2D detector frame per point (needs 'integration'); "
        "'energy': an MCA spectrum per point at a fixed 2θ, d = hc / (2 E sin θ).")
    files: list[InputPath] = Field(min_length=1, description="Bliss-style scan files (one "
                                   "entry per pass over depth).")
    scans: str = Field("*", description="Glob over scan (pass) entry names, e.g. '*.1'.")
    detector_path: str = Field("instrument/pilatus/data", description="Frames of a point, "
                               "relative to the entry (angle mode).")
    spectrum_path: str = Field("instrument/mca/data", description="MCA spectra (points x "
                               "channels), relative to the entry (energy mode).")
    energy_calibration_path: str | None = Field(
        None, description="Dataset of the channel energy calibration [a, b, c] "
        "(E = a + b ch + c ch², ch 0-based; units attribute keV or eV), relative to the entry.")
    energy_calibration_keV: list[float] | None = Field(
        None, min_length=2, max_length=3, description="The calibration [a, b(, c)] in keV, "
        "instead of energy_calibration_path.")
    two_theta_path: str | None = Field(None, description="Dataset of the fixed scattering angle "
                                       "2θ (degree), relative to the entry (energy mode).")
    two_theta_deg: float | None = Field(None, gt=0, lt=180, description="The fixed 2θ (degree), "
                                        "instead of two_theta_path.")
    nominal_wavelength_A: float | None = Field(
        None, gt=0, description="Energy mode: wavelength at which peak areas are put in the "
        "angle-dispersive convention for phase fractions (that of the reference intensities).")
    depth_path: str = Field("instrument/positioners/sz", description="Depth motor per point, "
                            "relative to the entry.")
    depth_unit: Literal["mm", "um"] = "mm"
    depth_origin: Literal["separator", "current_collector"] = Field(
        "separator", description="The face at depth 0.")
    depth_zero: float = Field(0.0, description="Motor position (depth_unit) of the origin.")
    depth_sign: Literal[1, -1] = Field(1, description="-1 when the motor runs toward the origin.")
    depths_um: list[float] | None = Field(None, description="Nominal depth grid (µm from the "
                                          "origin); clustered from the motor positions when "
                                          "absent.")
    depth_tolerance_um: float | None = Field(None, gt=0, description="Largest distance of a "
                                             "point from its nominal depth (µm).")
    gauge_length_um: float | None = Field(None, gt=0, description="Extent of the gauge volume "
                                          "along the depth direction (µm), recorded on the "
                                          "depth coordinate.")
    thickness_um: float | None = Field(None, gt=0, description="Electrode thickness (µm), "
                                       "recorded on the depth coordinate.")
    epoch_path: str = Field("measurement/epoch", description="Exposure start per point (UTC "
                            "epoch s, beamline clock), relative to the entry.")
    count_time_path: str | None = "measurement/count_time"
    monitor_path: str | None = "measurement/mon"
    normalize_by_monitor: bool = Field(False, description="Divide each point by its monitor "
                                       "counts.")
    swmr: bool = Field(False, description="Scan files still being written (a live run; frame "
                       "files read as HDF5 SWMR): only complete points (frame or spectrum and "
                       "epoch written); the others are pending, not an error.")
    integration: IntegrationSection | None = Field(None, description="Azimuthal integration "
                                                   "(angle mode).")
    peaks: PeaksSection | None = Field(None, description="Peak fitting of the confocal "
                                       "patterns; the top-level 'peaks' section when absent.")
    soc: ConfocalSocSection = Field(
        default_factory=lambda: ConfocalSocSection(phase="FePO4"),
        description="Local state of charge from the fits.")
    front_min_change: float = Field(0.2, gt=0, le=1, description="Smallest local SOC change "
                                    "in a charge/discharge for a front arrival time and rate.")
    relaxation_min_amplitude: float = Field(0.03, gt=0, description="Smallest SOC deviation "
                                            "from the depth's rest level for a relaxation fit.")
    interpolate_step_s: float | None = Field(
        None, gt=0, description="Also write SOC interpolated onto a common time grid of this "
        "step (s), labelled as interpolated; off when absent.")

    @model_validator(mode="after")
    def _mode_inputs(self) -> ConfocalSection:
        if self.mode == "angle" and self.integration is None:
            raise ValueError("mode 'angle' expects 'integration' (PONI, mask, unit, npt), "
                             "found none")
        if self.mode == "energy":
            if (self.energy_calibration_path is None) == (self.energy_calibration_keV is None):
                raise ValueError("mode 'energy' expects exactly one of "
                                 "'energy_calibration_path' and 'energy_calibration_keV', "
                                 "found " + ("both" if self.energy_calibration_keV else "neither"))
            if (self.two_theta_path is None) == (self.two_theta_deg is None):
                raise ValueError("mode 'energy' expects exactly one of 'two_theta_path' and "
                                 "'two_theta_deg', found "
                                 + ("both" if self.two_theta_deg else "neither"))
        return self


class KineticsSection(_Section):
    """Cyclic voltammetry at several scan rates, Randles–Sevcik analysis."""

    cv_files: list[InputPath] = Field(
        default_factory=list, description="Cell CV files (or glob patterns, expanded in natural "
        "order): one per scan rate, or files holding several rates (NOVA text, EC-Lab "
        ".mpt/.mpr, CSV).")
    cv_format: Literal["auto", "nova", "biologic-mpt", "biologic-mpr", "csv"] = Field(
        "auto", description="Format of cv_files; auto detects each file.")
    map_file: InputPath | None = Field(
        None, description="SECCM map HDF5 (pixels x scan rates x samples).")
    n_electrons: int = Field(1, gt=0, description="Electrons transferred per formula unit (n).")
    area_cm2: float | None = Field(None, gt=0, description="Electrode area for the cell CVs "
                                   "(cm²).")
    map_area_cm2: float | None = Field(
        None, gt=0, description="Pixel (droplet) area of the map (cm²); null: the file's "
        "pixel_area_cm2.")
    concentration_mol_cm3: float = Field(gt=0, description="Bulk concentration of the "
                                         "diffusing species C (mol cm⁻³).")
    temperature_K: float = Field(298.15, gt=0, description="Temperature T (K).")
    cycle: int | Literal["last"] = Field(
        1, description="Cycle of each CV whose sweeps are analysed (file numbering, 1-based; "
        "'last': the last cycle).")
    fit_peak: Literal["anodic", "cathodic"] = Field(
        "anodic", description="Which peak current goes into the i_p-√v fit.")
    background: Literal["none", "linear", "capacitive", "previous-sweep"] = Field(
        "linear", description="Background under the peak: linear baseline or mean "
        "(capacitive C_dl·v) current of the pre-peak window, the previous sweep's decaying "
        "current extrapolated in time (Cottrell; the classical baseline of a return peak), or "
        "none.")
    sweep: int | Literal["auto", "longest"] = Field(
        "auto", description="Half-cycle of the cycle searched for each peak: 'auto' (every "
        "sweep of that direction in the cycle, longest first; the first with a peak in the "
        "window wins, so a partial first sweep holding the peak counts), 'longest', or N (the "
        "N-th sweep of that direction in the cycle, 1-based).")
    ir_ohm: float = Field(
        0.0, ge=0, description="Uncompensated resistance R_u (ohm): potentials corrected to "
        "E - I*R_u before peaks are searched; 0: none.")
    force: bool = Field(
        False, description="Report D even when the couple is flagged not reversible (peak "
        "shift, delta Ep), with the flag; false: D is withheld (NaN) then.")
    baseline_window_V: tuple[float, float] | None = Field(
        None, description="Pre-peak potential window [V, V] for the background; null: the "
        "first baseline_fraction of each sweep.")
    baseline_fraction: float = Field(
        0.2, gt=0, lt=1, description="Fraction of the sweep's span used as the pre-peak "
        "window when baseline_window_V is null.")
    anodic_window_V: tuple[float, float] | None = Field(
        None, description="Potential window [V, V] searched for the anodic peak; null: the "
        "sweep after the baseline window.")
    cathodic_window_V: tuple[float, float] | None = Field(
        None, description="Potential window [V, V] searched for the cathodic peak.")
    peak_fit_half_width_V: float = Field(
        0.03, gt=0, description="Half-width (V) of the quartic fit around each peak.")
    min_peak_snr: float = Field(
        5.0, gt=0, description="A peak must exceed this many noise σ of the baseline window.")
    scan_rate_tolerance: float = Field(
        0.05, gt=0, lt=1, description="Relative agreement expected between a recorded scan "
        "rate and dE/dt (and between sweeps of one rate).")
    linearity_tolerance: float = Field(
        0.01, gt=0, lt=1, description="Relative deviation from the i_p ∝ √v line that ends the "
        "linear range (the quasi-reversible fall-off is gradual: ~1 % at the Matsuda–Ayabe "
        "boundary Λ = 15)."
    )
    linearity_sigma: float = Field(
        3.0, ge=0, description="A deviation must exceed linearity_tolerance by this many "
        "standard errors to end the linear range.")
    fit_intercept: bool = Field(
        False, description="Fit i_p = a√v + b instead of the Randles–Sevcik line through 0.")
    min_r2: float = Field(0.98, ge=0, le=1, description="R² below which a fit is flagged.")
    max_peak_shift_V_per_decade: float = Field(
        0.015, gt=0, description="Largest drift of the peak potential per decade of scan rate "
        "accepted as reversible (V); beyond it Randles–Sevcik is flagged as not applying.")
    max_delta_ep_V: float | None = Field(
        None, gt=0, description="Largest peak separation ΔEp (V) accepted as reversible; "
        "null: not checked (reversible: 2.218 RT/nF = 57 mV / n).")

    @model_validator(mode="after")
    def _some_input(self) -> KineticsSection:
        if not self.cv_files and self.map_file is None:
            raise ValueError("expected 'cv_files' or 'map_file', found neither")
        if self.cv_files and self.area_cm2 is None:
            raise ValueError("'cv_files' expects 'area_cm2' (electrode area), found none")
        if isinstance(self.cycle, int) and self.cycle < 1:
            raise ValueError(f"'cycle' expects a cycle number >= 1 or 'last', found {self.cycle}")
        if isinstance(self.sweep, int) and self.sweep < 1:
            raise ValueError(f"'sweep' expects 'auto', 'longest' or a sweep number >= 1, found "
                             f"{self.sweep}")
        for key in ("baseline_window_V", "anodic_window_V", "cathodic_window_V"):
            w = getattr(self, key)
            if w is not None and not w[0] < w[1]:
                raise ValueError(f"'{key}' expects [low, high] with low < high, found {list(w)}")
        return self


class RunConfig(_Section):
    """A whole run: what was measured, where products go, and each stream to reduce."""

    schema_version: int = Field(SCHEMA_VERSION, description="Config schema version.")
    run: RunSection
    output: OutputSection
    echem: EchemSection | None = None
    sync: SyncSection | None = None
    xrd: XrdSection | None = None
    peaks: PeaksSection | None = None
    xanes: XanesSection | None = None
    confocal: ConfocalSection | None = None
    kinetics: KineticsSection | None = None

    @model_validator(mode="after")
    def _cross_section(self) -> RunConfig:
        if self.sync is not None and self.echem is None:
            raise ValueError("'sync' expects an 'echem' section to sync to, found none")
        if self.sync is not None:
            self._check_clocks(self.sync)
        if self.peaks is not None and self.xrd is None:
            raise ValueError("'peaks' expects an 'xrd' section (the patterns it fits), found none")
        if self.confocal is not None:
            peaks = self.confocal.peaks or self.peaks
            if peaks is None:
                raise ValueError("'confocal' expects a peaks section to fit its patterns "
                                 "(confocal.peaks, or the top-level peaks), found none")
            soc = self.confocal.soc
            phases = [p.name for p in peaks.phases]
            names = [p.label for w in peaks.windows for p in w.peaks]
            if soc.quantity == "peak_position" and soc.peak not in names:
                raise ValueError(f"confocal.soc.peak: expected one of {names}, found "
                                 f"{soc.peak!r}")
            if soc.quantity != "peak_position" and soc.phase not in phases:
                raise ValueError(f"confocal.soc.phase: expected one of {phases}, found "
                                 f"{soc.phase!r}")
        return self

    def _check_clocks(self, sync: SyncSection) -> None:
        """Every clock the run needs can be made from what the run has (before any work):
        the reference stream and every stream named under ``sync.streams`` (as an entry or
        by ``clock:``) is configured, and a stream fitted to triggers has timestamps."""
        if getattr(self, sync.reference_stream) is None:
            raise ValueError(f"sync.reference_stream is {sync.reference_stream!r}, but that "
                             "section is absent")
        for name, entry in (sync.streams or {}).items():
            if getattr(self, name) is None:
                raise ValueError(f"sync.streams.{name}: there is no '{name}' section to sync")
            if entry.clock is not None and getattr(self, entry.clock) is None:
                raise ValueError(f"sync.streams.{name}.clock: borrows {entry.clock!r}'s clock, "
                                 f"but the run has no '{entry.clock}' section")
        own = {sync.source(s) for s in PULSES if getattr(self, s) is not None}
        for name in sorted(own):
            st = sync.settings(name)
            key = (f"sync.streams.{name}" if name in (sync.streams or {})
                   else "sync.reference_stream")
            if st.method == "triggers" and name == "xanes" and self.xanes is not None:
                x = self.xanes
                if x.input_format == "text" and (x.times == "none" or st.pulse == "point"):
                    raise ValueError(
                        f"{key}: xanes pulses ({st.pulse}) cannot be matched: the text scans "
                        + ("have no acquisition times (xanes.times: none)" if x.times == "none"
                           else "carry no per-point times (xanes.format: text); use pulse: "
                           "scan"))
                if st.pulse == "point" and not x.epoch_path:
                    raise ValueError(f"{key}: xanes pulse 'point' expects per-point times "
                                     "(xanes.epoch_path), found none")
                if st.pulse == "scan" and not (x.start_time_path or x.epoch_path) and \
                        x.input_format == "hdf5":
                    raise ValueError(f"{key}: xanes pulse 'scan' expects scan start times "
                                     "(xanes.start_time_path or xanes.epoch_path), found none")

    @property
    def product_dir(self) -> Path:
        """``<output.directory>/<run.name>/``."""
        return self.output.directory / self.run.name

    def to_yaml(self) -> str:
        """The resolved config (absolute paths) as YAML text."""
        data = self.model_dump(mode="json", exclude_none=True)
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


# --------------------------------------------------------------------------- loading


def migrate(raw: dict[str, Any], source: str) -> dict[str, Any]:
    """Upgrade a raw config mapping to :data:`SCHEMA_VERSION` with :data:`MIGRATIONS`."""
    version = raw.get("schema_version", SCHEMA_VERSION)
    if not isinstance(version, int) or isinstance(version, bool):
        raise ConfigError(source, [f"schema_version: expected an integer, found {version!r}"])
    if version > SCHEMA_VERSION:
        raise ConfigError(source, [
            f"schema_version: expected at most {SCHEMA_VERSION} (this operando), found {version}; "
            "upgrade operando to read this file"
        ])
    while version < SCHEMA_VERSION:
        step = MIGRATIONS.get(version)
        if step is None:
            raise ConfigError(source, [
                f"schema_version: no migration from version {version} to {version + 1}"
            ])
        raw = step(dict(raw))
        version += 1
        raw["schema_version"] = version
    return raw


def _loc_text(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Field names of the model section a location points into (for 'did you mean')."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return []
        ann = field.annotation
        for cand in (*getattr(ann, "__args__", ()), ann):
            inner = getattr(cand, "__args__", ())
            for c in (cand, *inner):
                if isinstance(c, type) and issubclass(c, BaseModel):
                    current = c
                    break
            else:
                continue
            break
    return list(getattr(current, "model_fields", {}))


def _describe(err: dict[str, Any]) -> str:
    loc = tuple(err.get("loc", ()))
    kind = err.get("type", "")
    found = err.get("input")
    if kind == "extra_forbidden":
        key = loc[-1] if loc else "?"
        allowed = _allowed_keys(RunConfig, loc)
        hint = difflib.get_close_matches(str(key), allowed, n=1)
        did = f"; did you mean '{hint[0]}'?" if hint else ""
        expected = f"one of {', '.join(allowed)}" if allowed else "no such key"
        return f"{_loc_text(loc)}: unknown key '{key}' (expected {expected}){did}"
    if kind == "missing":
        return f"{_loc_text(loc)}: required key is missing"
    msg = str(err.get("msg", "")).removeprefix("Value error, ")
    if kind == "value_error":  # our own validators word their messages fully
        return f"{_loc_text(loc)}: {msg}"
    if kind == "too_short":
        ctx = err.get("ctx", {})
        return (f"{_loc_text(loc)}: expected at least {ctx.get('min_length')} item(s), "
                f"found {ctx.get('actual_length')}")
    msg = msg.removeprefix("Input should be ").removeprefix("Input ")
    if isinstance(found, dict | list):
        found_text = type(found).__name__
    else:
        found_text = repr(found)
    return f"{_loc_text(loc)}: expected {msg[0].lower() + msg[1:]}; found {found_text}"


def validate_config(
    raw: Any, *, source: str = "<config>", base_dir: Path | None = None, check_files: bool = True
) -> RunConfig:
    """Validate a mapping (already parsed YAML) into a :class:`RunConfig`."""
    if not isinstance(raw, dict):
        found = "an empty document" if raw is None else type(raw).__name__
        raise ConfigError(source, [f"(top level): expected a mapping of sections, found {found}"])
    raw = migrate(raw, source)
    try:
        return RunConfig.model_validate(
            raw, context={"base_dir": base_dir, "check_files": check_files}
        )
    except ValidationError as exc:
        raise ConfigError(source, [_describe(e) for e in exc.errors()]) from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader refusing a key given twice in one mapping (PyYAML keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)  # type: ignore[no-untyped-call]
            with contextlib.suppress(TypeError):
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"expected each key once, found {key!r} twice (first "
                        f"on line {seen[key]})", key_node.start_mark)
                seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def load_config(path: str | Path, *, check_files: bool = True) -> RunConfig:
    """Read, migrate and validate a YAML run config; relative paths resolve to its folder."""
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(source, ["expected a YAML run config, found no such file"]) from None
    except IsADirectoryError:
        raise ConfigError(source, ["expected a YAML run config, found a directory"]) from None
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[:exc.start].count(b"\n") + 1
        raise ConfigError(source, [f"line {line}: expected UTF-8 text, found the byte "
                                   f"{exc.object[exc.start:exc.start + 1]!r} at offset "
                                   f"{exc.start}"]) from None
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        if isinstance(exc, yaml.constructor.ConstructorError) and "each key once" in problem:
            raise ConfigError(source, [f"{where}{problem}"]) from None
        raise ConfigError(source, [f"{where}expected valid YAML, found a syntax error ({problem})"]
                          ) from None
    return validate_config(raw, source=source, base_dir=path.resolve().parent,
                           check_files=check_files)


def json_schema() -> dict[str, Any]:
    """The JSON schema of :class:`RunConfig` (written to docs/config-schema.json)."""
    schema = RunConfig.model_json_schema()
    schema["$id"] = "https://operando.invalid/config-schema.json"
    schema["title"] = "operando run config"
    return schema
