"""XANES step of the reduce flow: scan files → ``xanes.nc`` (+ ``report/xanes.png``).

Scans come from Bliss-like HDF5 files (``xanes.format: hdf5``, the ``*_path`` keys) or
from one text file per scan (``xanes.format: text``, the ``*_column`` keys; SOLEIL ROCK,
XDI, Athena, two-column); both give per scan an energy axis, μ (as given or from the
counts), the foil μ when configured, and the exposure window in UTC epoch seconds.
Reads the scans and standards named by the config (``operando.io``), reduces them with
:func:`operando.xanes.series.reduce_scans` (normalise, align, batched LCF), adds the
exposure-averaged electrochemistry and the XANES-vs-Faraday diagnostics when the echem
Dataset and a clock model are given, and returns a :class:`StreamProduct`. No Prefect
here: the flow, the CLI and a notebook call the same function.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import xarray as xr

from operando.config import XanesSection, expand_inputs
from operando.echem.attach import exposure_average
from operando.echem.sync import ClockModel
from operando.io.xas.hdf5 import XasChannels, read_xas_channels
from operando.io.xas.series import read_xas_text_scans
from operando.io.xas.text import select_column
from operando.report.xanes import xanes_figure
from operando.xanes.diagnostics import compare_faraday, isosbestic_points
from operando.xanes.product import xanes_dataset
from operando.xanes.series import XanesOptions, counts_to_mu, reduce_scans
from pipelines.stream import ProgressCallback, StreamProduct

__all__ = [
    "ScanSet",
    "build_xanes",
    "read_hdf5_scans",
    "read_scans",
    "read_standards",
    "read_text_scans",
    "scan_windows",
    "xanes_options",
    "xanes_pulses",
]

STREAM = "xanes"


def xanes_options(sec: XanesSection, scan_numbers: list[int]) -> XanesOptions:
    """The reduction options of a config section (``reference_scan`` → row index)."""
    ref_index = 0
    if sec.align_mode == "reference_scan":
        if sec.reference_scan not in scan_numbers:
            more = "..." if len(scan_numbers) > 10 else ""
            raise ValueError(f"xanes.reference_scan: scan {sec.reference_scan} is not among the "
                             f"scans read ({scan_numbers[:10]}{more})")
        ref_index = scan_numbers.index(sec.reference_scan)
    return XanesOptions(
        mode=sec.mode, e0_method=sec.e0_method, pre_edge_eV=sec.pre_edge_eV,
        norm_range_eV=sec.norm_range_eV, norm_order=sec.norm_order, lcf_array=sec.lcf_array,
        align_mode=sec.align_mode, reference_e0_eV=sec.reference_e0_eV,
        reference_index=ref_index, align_window_eV=sec.align_window_eV,
        fit_range_eV=sec.fit_range_eV, sum_to_one=sec.sum_to_one, nonneg=sec.nonneg,
        fit_shifts=sec.fit_shifts, max_shift_eV=sec.max_shift_eV,
        max_components=sec.max_components,
        prenormalized=sec.normalized and sec.input_format == "text",
    )


@dataclass
class ScanSet:
    """A run's scans, whatever the file format: per scan its name, energy (eV, recorded),
    μ, foil μ (``foil`` None when no foil channel is configured), QC flag from the counts,
    number, source (``file::/entry`` or the file), and exposure window (UTC epoch s);
    ``files`` read."""

    names: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    energy: list[np.ndarray] = field(default_factory=list)
    mu: list[np.ndarray] = field(default_factory=list)
    foil: list[np.ndarray | None] | None = None
    flag: list[int] = field(default_factory=list)
    number: list[int] = field(default_factory=list)
    start_epoch_s: list[float] = field(default_factory=list)
    end_epoch_s: list[float] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    #: per scan, every energy point's time (UTC epoch s), or None (text scans)
    point_epoch_s: list[np.ndarray | None] = field(default_factory=list)


def read_hdf5_scans(sec: XanesSection, files: list[Path],
                    say: ProgressCallback) -> ScanSet:
    """The scans of Bliss-like HDF5 files (the ``*_path`` keys), μ from the counts."""
    scans: list[XasChannels] = []
    for k, path in enumerate(files):
        scans.extend(read_xas_channels(
            path, scans=sec.scans, energy_path=sec.energy_path, i0_path=sec.i0_path,
            it_path=sec.it_path, if_path=sec.if_path, iref_path=sec.iref_path,
            epoch_path=sec.epoch_path, start_time_path=sec.start_time_path,
            end_time_path=sec.end_time_path, swmr=sec.swmr))
        say(STREAM, k + 1, len(files) + 2)
    mus = [counts_to_mu(s.i0, s.it, s.if_, s.iref, mode=sec.mode) for s in scans]
    return ScanSet(
        names=[s.source.split('::/')[-1] if len(files) == 1 else s.source for s in scans],
        sources=[s.source for s in scans],
        energy=[s.energy for s in scans], mu=[m[0] for m in mus],
        foil=[m[1] for m in mus] if sec.iref_path else None, flag=[m[2] for m in mus],
        number=[s.number for s in scans], start_epoch_s=[s.start_epoch_s for s in scans],
        end_epoch_s=[s.end_epoch_s for s in scans], files=files,
        point_epoch_s=[s.epoch for s in scans])


def read_text_scans(sec: XanesSection, files: list[Path], say: ProgressCallback) -> ScanSet:
    """The scans of a text series, one file each (the ``*_column`` keys): μ as given
    (``mu_column``, or the second of two columns) or from the counts (``i0_column``)."""
    scans = read_xas_text_scans(
        files, energy_column=sec.energy_column, mu_column=sec.mu_column,
        i0_column=sec.i0_column, it_column=sec.it_column, if_column=sec.if_column,
        iref_column=sec.iref_column, ref_column=sec.ref_column, timezone=sec.timezone,
        scan_end=sec.scan_end, scan_duration_s=sec.scan_duration_s, times=sec.times,
        mu_columns=sec.mu_columns)
    say(STREAM, len(files), len(files) + 2)
    out = ScanSet(files=files)
    use_foil = sec.ref_column is not None or sec.iref_column is not None
    out.foil = [] if use_foil else None
    for s in scans:
        foil = s.ref_mu
        if s.i0 is not None:
            mu, foil_counts, flag = counts_to_mu(s.i0, s.it, s.if_, s.iref, mode=sec.mode)
        else:
            assert s.mu is not None
            mu, foil_counts, flag = s.mu, None, 0
            if s.it is not None and s.iref is not None:
                foil_counts = counts_to_mu(s.it, s.iref)[0]  # ln(It/Iref)
        if out.foil is not None:
            out.foil.append(foil if foil is not None else foil_counts)
        out.names.append(f"{s.path.name}:{s.column}" if s.column else s.path.name)
        out.sources.append(s.source)
        out.energy.append(s.energy)
        out.mu.append(mu)
        out.flag.append(flag)
        out.number.append(s.number)
        out.start_epoch_s.append(s.start_epoch_s)
        out.end_epoch_s.append(s.end_epoch_s)
        out.point_epoch_s.append(None)
    return out


def read_scans(sec: XanesSection, say: ProgressCallback | None = None) -> ScanSet:
    """The scans of the section's files (HDF5 or text, :data:`XanesSection.input_format`)."""
    files = expand_inputs(list(sec.files))
    reader = read_text_scans if sec.input_format == "text" else read_hdf5_scans
    return reader(sec, files, say or (lambda _s, _d, _t: None))


def scan_windows(scans: ScanSet, pulse: str = "scan") -> tuple[np.ndarray, np.ndarray]:
    """Each scan's exposure [start, end] (UTC epoch s, beamline clock). ``pulse`` ``scan``:
    the scan's start (its trigger) and end as recorded; ``point``: from the pulses of its
    energy points, the first less and the last plus half the median point spacing (a
    point's time is its mid-time). Scans without point times keep their recorded window."""
    t0 = np.asarray(scans.start_epoch_s, dtype=float)
    t1 = np.asarray(scans.end_epoch_s, dtype=float)
    if pulse == "point":
        for k, ep in enumerate(scans.point_epoch_s):
            if ep is not None and ep.size > 1 and np.isfinite(ep).all():
                half = 0.5 * float(np.median(np.diff(ep)))
                t0[k], t1[k] = float(ep.min() - half), float(ep.max() + half)
    return t0, t1


def xanes_pulses(sec: XanesSection, pulse: str = "scan") -> np.ndarray:
    """The XANES trigger pulses the beamline sent (UTC epoch s, sorted): each scan's start
    (``pulse: scan``) or every energy point's time (``pulse: point``). ``ValueError`` naming
    the config key when the scans do not carry them."""
    scans = read_scans(sec)
    if pulse == "point":
        if any(e is None for e in scans.point_epoch_s):
            raise ValueError(f"sync: xanes pulse 'point' expects per-point times at "
                             f"xanes.epoch_path ({sec.epoch_path!r}) in every scan")
        out = np.concatenate([np.asarray(e, dtype=float) for e in scans.point_epoch_s])
    else:
        out = np.asarray(scans.start_epoch_s, dtype=float)
    if not np.isfinite(out).all():
        raise ValueError(f"sync: xanes pulse {pulse!r}: {int((~np.isfinite(out)).sum())} "
                         f"scan time(s) missing; expected xanes.start_time_path "
                         f"({sec.start_time_path!r}) or xanes.epoch_path ({sec.epoch_path!r})")
    return np.sort(out)


def read_standards(sec: XanesSection) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]],
                                               list[Path]]:
    """Standards of the config: name → (energy eV, normalised μ), and their files."""
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    files: list[Path] = []
    for std in sec.standards:
        spec = f"{std.file}:{std.column}" if std.column else str(std.file)
        col = select_column(spec)
        out[std.name] = (col.energy, col.values)
        files.append(Path(std.file))
    return out, files


def build_xanes(
    sec: XanesSection,
    *,
    echem: xr.Dataset | None = None,
    clock: ClockModel | None = None,
    run_name: str = "",
    progress: ProgressCallback | None = None,
) -> StreamProduct:
    """Reduce the run's XANES scans (its ``xanes`` section) to the ``xanes`` product (see
    the module docstring).

    ``echem`` (default None): the echem Dataset with ``time_s`` and ``faraday_fraction``
    (after ``add_faraday``); ``clock`` (default None) maps beamline epochs to potentiostat
    seconds. Without a clock the times stay beamline epochs and no echem coordinates or
    Faraday diagnostics are added. ``run_name`` (default "") titles the figure;
    ``progress(stream, done, total)`` as files are read (default None: no reports).
    Raises ``ValueError`` (an ``InputFileError`` for bad files) naming the file, dataset
    path or config key.
    """
    say = progress or (lambda _s, _d, _t: None)
    files = expand_inputs(list(sec.files))
    text = sec.input_format == "text"
    scans = read_scans(sec, say)
    standards, std_files = read_standards(sec)
    options = xanes_options(sec, scans.number)
    series = reduce_scans(scans.energy, scans.mu, scans.foil, standards, options,
                          qc_flag=scans.flag)
    say(STREAM, len(files) + 1, len(files) + 2)
    notes = list(series.notes)

    # on its own clock, the scan's exposure is taken from the pulses that clock was fitted to
    own_points = clock is not None and clock.stream == STREAM and clock.pulse == "point"
    t0, t1 = scan_windows(scans, "point" if own_points else "scan")
    timeless = text and sec.times == "none"
    untimed = [name for name, a, b in zip(scans.sources, t0, t1, strict=True)
               if not (np.isfinite(a) and np.isfinite(b))]
    if timeless:
        notes.append(f"xanes: {len(scans.mu)} scan(s) without acquisition times (xanes.times: "
                     "none): indexed by scan, not synchronised, not compared with the echem")
        clock = echem = None
    elif untimed:
        raise ValueError(
            f"xanes: {len(untimed)} scan(s) without a start/end time, e.g. {untimed[0]}; "
            f"expected the datasets of xanes.start_time_path ({sec.start_time_path!r}) and "
            f"xanes.end_time_path ({sec.end_time_path!r}), or per-point epochs at "
            f"xanes.epoch_path ({sec.epoch_path!r})")
    attrs: dict[str, object] = {}
    echem_coords = None
    faraday = None
    if clock is not None:
        t0, t1 = clock.to_potentiostat(t0), clock.to_potentiostat(t1)
        attrs.update(clock.to_attrs())
        if echem is not None:
            echem_coords = exposure_average(echem, t0, t1)
    good = series.qc_flag == 0
    emin = emax = None
    if series.lcf is not None:
        emin, emax = series.lcf.emin, series.lcf.emax
    iso = isosbestic_points(series.energy, series.mu_norm[good], emin=emin, emax=emax)
    comp = sec.faraday_component
    if (echem is not None and clock is not None and series.lcf is not None and comp
            and comp in series.lcf.names and "faraday_fraction" in echem.variables):
        j = series.lcf.names.index(comp)
        try:
            faraday = compare_faraday(series.lcf.weights[:, j], echem, t0, t1,
                                      max_lag_s=sec.max_lag_s)
        except ValueError as exc:
            notes.append(f"xanes: no Faraday comparison: {exc}")
    elif comp and (echem is None or clock is None):
        notes.append("xanes: no echem or clock; fractions not compared with Faraday")
    ds = xanes_dataset(series, time_start_s=t0, time_end_s=t1,
                       scan_names=scans.names,
                       echem_coords=echem_coords, isosbestic=iso, faraday=faraday,
                       faraday_component=comp, time_is_potentiostat=clock is not None,
                       epoch_start_s=None if timeless else scans.start_epoch_s,
                       epoch_end_s=None if timeless else scans.end_epoch_s)
    if timeless:
        attrs["xanes_time_axis"] = "none: scans indexed 1..n (no acquisition times)"
    attrs["xanes_qc_skipped"] = int((~good).sum())
    fig = xanes_figure(ds, title=f"{run_name}: XANES" if run_name else "XANES")
    say(STREAM, len(files) + 2, len(files) + 2)
    if series.lcf is not None and faraday is not None:
        notes.append(f"xanes: {len(scans.mu)} scans, lag {faraday.lag_s:.1f} ± "
                     f"{faraday.lag_stderr_s:.1f} s, slope {faraday.slope:.3f}")
    return StreamProduct(name="xanes", dataset=ds, attrs=attrs, inputs=files + std_files,
                         figures={"xanes.png": fig}, notes=notes)
