"""The numbers of the run report (``report/index.html``): per stream the key results, and
the quality-control items a person reads first.

Pure: product Datasets in, plain records out (:class:`Fact`, :class:`Table`,
:class:`QCItem`); :mod:`operando.report.page` renders them, ``pipelines.report`` wires the
products in.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr

from operando.echem.faraday import c_rate_per_h
from operando.echem.summary import segments
from operando.xanes.diagnostics import compare_faraday

__all__ = ["Fact", "QCItem", "StreamSummary", "Table", "clock_facts", "confocal_summary",
           "coverage", "echem_protocol", "kinetics_summary", "peaks_summary", "qc_items",
           "xanes_summary"]


@dataclass(frozen=True)
class Fact:
    """One labelled number (already formatted) with an optional note."""

    label: str
    value: str
    note: str = ""


@dataclass(frozen=True)
class Table:
    """A small table: a caption, column names, rows of formatted cells."""

    caption: str
    columns: list[str]
    rows: list[list[str]]


@dataclass(frozen=True)
class QCItem:
    """One quality-control count: what, how many of how many, where it shows (an anchor of
    the page), the reasons behind it; ``severity``: ``bad`` / ``warn`` / ``ok``."""

    what: str
    count: int
    total: int | None
    anchor: str
    detail: str = ""
    severity: str = "warn"


@dataclass
class StreamSummary:
    """A stream's section of the page: key numbers, tables and the figure files it shows."""

    facts: list[Fact] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)


def _f(v: Any, spec: str = ".3g", unit: str = "") -> str:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return str(v)
    if not np.isfinite(x):
        return "n/a"
    return f"{x:{spec}}" + (f" {unit}" if unit else "")


def _pm(v: Any, err: Any, spec: str = ".3g", unit: str = "") -> str:
    e = _f(err, spec)
    return _f(v, spec) + (f" ± {e}" if e != "n/a" else "") + (f" {unit}" if unit else "")


def _values(ds: xr.Dataset, name: str) -> np.ndarray:
    return np.asarray(ds[name].values)


# --------------------------------------------------------------------------- run


def echem_protocol(echem: xr.Dataset) -> Table:
    """The protocol as recorded: every segment with its duration, charge passed, mean
    current, C-rate (against the reference capacity of the Faraday analysis) and voltages."""
    cap = float(echem.attrs.get("faraday_capacity_reference_C",
                                echem.attrs.get("capacity_theoretical_C", "nan")))
    rows = []
    for s in segments(echem):
        rate = c_rate_per_h(s.mean_current_A, cap) if np.isfinite(cap) and cap > 0 else np.nan
        rows.append([str(s.index), s.kind, _f(s.start_s, ".0f"), _f(s.end_s - s.start_s, ".0f"),
                     _f(s.charge_mAh, ".4f"), _f(s.mean_current_A * 1e3, "+.4f"),
                     _c_rate(rate, s.kind),
                     f"{s.v_start_V:.3f} → {s.v_end_V:.3f}"])
    cap_txt = f"{cap / 3.6:.4f} mAh" if np.isfinite(cap) else "unknown"
    return Table(f"Protocol as recorded (reference capacity {cap_txt}, "
                 f"{echem.attrs.get('faraday_capacity_reference', '?')})",
                 ["#", "segment", "start (s)", "duration (s)", "|Q| (mAh)", "mean I (mA)",
                  "C-rate", "E start → end (V)"], rows)


def _c_rate(rate: float, kind: str) -> str:
    if kind == "rest" or not np.isfinite(rate) or rate < 1e-3:
        return "rest" if kind == "rest" else "n/a"
    return f"{rate:.2g}C" if rate >= 1 else f"C/{1 / rate:.2g}"


def clock_facts(attrs: Mapping[str, Any]) -> list[Fact]:
    """The clock model of the sync (``clock_*`` attributes of a product)."""
    if "clock_method" not in attrs:
        return []
    a = attrs
    missing = str(a.get("clock_unmatched_sent", "")).split()
    spurious = str(a.get("clock_unmatched_recorded", "")).split()
    return [
        Fact("method", str(a["clock_method"]), str(a.get("clock_what", ""))),
        Fact("offset", _pm(a.get("clock_offset_s"), a.get("clock_offset_stderr_s"), ".4f", "s")),
        Fact("drift", _pm(a.get("clock_drift_ppm"), a.get("clock_drift_stderr_ppm"), ".2f",
                          "ppm")),
        Fact("RMS residual", _f(float(a.get("clock_rms_residual_s", np.nan)) * 1e3, ".2f", "ms"),
             f"max {_f(float(a.get('clock_max_abs_residual_s', np.nan)) * 1e3, '.2f')} ms"),
        Fact("pulses matched", f"{a.get('clock_n_matched', '?')} of {a.get('clock_n_sent', '?')}"
             f" sent, {a.get('clock_n_recorded', '?')} recorded"),
        Fact("missing pulses", str(len(missing)),
             ("sent #" + ", ".join(missing)) if missing else ""),
        Fact("spurious pulses", str(len(spurious)),
             ("recorded #" + ", ".join(spurious)) if spurious else ""),
    ]


def coverage(name: str, ds: xr.Dataset) -> str:
    """What a product covers, in its own units (frames, scans, points, pixels)."""
    s = ds.sizes
    if name == "echem":
        t = _values(ds, "time_s").astype(float)
        return f"{s.get('echem_time', 0)} samples, {(t[-1] - t[0]) / 3600:.2f} h" if t.size \
            else "no samples"
    if name in ("xrd", "peaks"):
        return f"{s.get('frame', 0)} frames" + (f" × {s['q']} q" if "q" in s else "")
    if name == "xanes":
        return f"{s.get('scan', 0)} scans × {s.get('energy', 0)} energies"
    if name == "confocal":
        ok = int((_values(ds, "point_status") == 0).sum()) if "point_status" in ds else 0
        return (f"{s.get('pass', 0)} passes × {s.get('depth', 0)} depths "
                f"({ok} points measured)")
    if name == "kinetics":
        parts = [f"{s['scan_rate']} scan rates"] if "scan_rate" in s else []
        if "y" in s:
            parts.append(f"{s['y']} × {s['x']} pixels")
        return ", ".join(parts)
    return ", ".join(f"{k} {v}" for k, v in s.items())


# --------------------------------------------------------------------------- streams


def _delithiated_phase(peaks: xr.Dataset) -> str | None:
    """The phase the Faraday expectation describes: the one best correlated with it."""
    if "faraday_fraction" not in peaks:
        return None
    ff = _values(peaks, "faraday_fraction").astype(float)
    best, score = None, -np.inf
    for i, ph in enumerate(peaks["phase"].values):
        f = _values(peaks, "phase_fraction")[:, i].astype(float)
        ok = np.isfinite(f) & np.isfinite(ff)
        if ok.sum() > 2 and np.std(f[ok]) > 0 and np.std(ff[ok]) > 0:
            r = float(np.corrcoef(f[ok], ff[ok])[0, 1])
            if r > score:
                best, score = str(ph), r
    return best


def peaks_summary(peaks: xr.Dataset, echem: xr.Dataset | None, *,
                  lag_step_s: float = 10.0) -> StreamSummary:
    """Phase fraction vs the Faraday expectation (slope, lag searched in ±600 s by
    ``lag_step_s``), lattice parameters and Li content per phase, the frames where the
    intermediate phase is flagged."""
    out = StreamSummary()
    phase = _delithiated_phase(peaks)
    if phase is not None and echem is not None and "time_start" in peaks:
        f = peaks["phase_fraction"].sel(phase=phase).values.astype(float)
        cmp = compare_faraday(f, echem, _values(peaks, "time_start").astype(float),
                              _values(peaks, "time_end").astype(float), lag_step_s=lag_step_s)
        out.facts += [
            Fact(f"{phase} fraction vs Faraday: slope", _pm(cmp.slope, cmp.slope_stderr, ".3f")),
            Fact("lag", _pm(cmp.lag_s, cmp.lag_stderr_s, ".0f", "s"),
                 "positive: the structure follows the charge later"),
            Fact("RMS residual", _f(cmp.rms_residual, ".3f"),
                 f"{_f(cmp.rms_residual_lagged, '.3f')} at the fitted lag"),
        ]
    rows = []
    for ph in peaks["phase"].values:
        p = peaks.sel(phase=ph)
        frac = _values(p, "phase_fraction").astype(float)
        present = frac > 0.25
        cells = []
        for ax in ("a", "b", "c"):
            v = _values(p, f"lattice_{ax}").astype(float)[present]
            cells.append(_pm(np.nanmedian(v), np.nanstd(v), ".4f") if np.isfinite(v).any()
                         else "n/a")
        x = _values(p, "x_li").astype(float)[present]
        rows.append([str(ph), f"{_f(np.nanmin(frac), '.2f')} – {_f(np.nanmax(frac), '.2f')}",
                     *cells, _f(np.nanmedian(x), ".3f") if np.isfinite(x).any() else "n/a"])
    out.tables.append(Table("Per phase (lattice parameters and Li content: median ± spread "
                            "over the frames where the phase makes up > 25 %)",
                            ["phase", "fraction range", "a (Å)", "b (Å)", "c (Å)",
                             "x_li (Vegard)"], rows))
    if "x_li_structural" in peaks:
        x = _values(peaks, "x_li_structural").astype(float)
        out.facts.append(Fact("Li content of the probed volume",
                              f"{_f(np.nanmin(x), '.3f')} – {_f(np.nanmax(x), '.3f')}"
                              if np.isfinite(x).any() else "n/a"))
    if "intermediate_flag" in peaks:
        flag = _values(peaks, "intermediate_flag").astype(bool)
        frames = _values(peaks, "frame_index")[flag] if "frame_index" in peaks \
            else np.flatnonzero(flag)
        out.facts.append(Fact(f"intermediate {peaks.attrs.get('intermediate_phase', '')} "
                              "flagged", f"{int(flag.sum())} of {flag.size} frames",
                              _list(frames)))
    return out


def _list(values: Iterable[Any], n: int = 20) -> str:
    v = [str(x) for x in values]
    return ", ".join(v[:n]) + (f", … ({len(v) - n} more)" if len(v) > n else "")


def xanes_summary(xanes: xr.Dataset) -> StreamSummary:
    """Fraction vs Faraday (slope, lag), isosbestic points, energy shifts, edge positions."""
    a = xanes.attrs
    out = StreamSummary()
    comp = a.get("faraday_component", "")
    if "faraday_slope" in a:
        out.facts += [
            Fact(f"{comp} fraction vs Faraday: slope",
                 _pm(a["faraday_slope"], a.get("faraday_slope_stderr"), ".3f")),
            Fact("lag", _pm(a.get("faraday_lag_s"), a.get("faraday_lag_stderr_s"), ".0f", "s"),
                 str(a.get("faraday_lag_convention", ""))),
            Fact("RMS residual", _f(a.get("faraday_rms_residual"), ".3f"),
                 f"{_f(a.get('faraday_rms_residual_lagged'), '.3f')} at the fitted lag"),
        ]
    if "isosbestic_energy" in xanes:
        e = _values(xanes, "isosbestic_energy").astype(float)
        sp = _values(xanes, "isosbestic_spread").astype(float)
        out.facts.append(Fact("isosbestic points", ", ".join(
            f"{x:.1f} ± {s:.2f} eV" for x, s in zip(e, sp, strict=True)) or "none",
            f"explained variance {_f(a.get('isosbestic_explained_variance'), '.4f')}"))
    if "energy_shift" in xanes:
        sh = _values(xanes, "energy_shift").astype(float)
        out.facts.append(Fact("energy shift (foil alignment)",
                              f"{_f(np.nanmedian(sh), '.3f')} eV median",
                              f"range {_f(np.nanmin(sh), '.3f')} – {_f(np.nanmax(sh), '.3f')}"
                              " eV"))
    if "monochromator_offset_eV" in a:
        out.facts.append(Fact("monochromator offset", _f(a["monochromator_offset_eV"], ".3f",
                                                          "eV")))
    if "e0" in xanes:
        e0 = _values(xanes, "e0").astype(float)
        out.facts.append(Fact("edge E0", f"{_f(np.nanmin(e0), '.2f')} – "
                              f"{_f(np.nanmax(e0), '.2f')} eV"))
    if "r_factor" in xanes:
        out.facts.append(Fact("LCF R-factor, median",
                              _f(np.nanmedian(_values(xanes, "r_factor").astype(float)), ".2e")))
    return out


def confocal_summary(conf: xr.Dataset) -> StreamSummary:
    """Front arrival per depth, r(z) against the global rate (the C-rate), relaxation τ."""
    out = StreamSummary()
    depth = _values(conf, "depth").astype(float)
    origin = str(conf["depth"].attrs.get("origin", "")).replace("_", " ")
    if "front_arrival_time" in conf:
        for r in range(conf.sizes.get("reaction", 0)):
            c = conf.isel(reaction=r)
            kind = str(c["reaction_kind"].values)
            rows = [[_f(z, ".0f"), _pm(t, te, ".0f"), _f(ta, ".0f"), _pm(k, ke, ".3g"),
                     _f(rel, ".2f"), str(why)]
                    for z, t, te, ta, k, ke, rel, why in zip(
                        depth, c["front_arrival_time"].values,
                        c["front_arrival_time_stderr"].values,
                        c["arrival_after_reaction_start"].values, c["local_rate_per_h"].values,
                        c["local_rate_per_h_stderr"].values, c["relative_rate"].values,
                        c["front_reason"].values, strict=True)]
            out.tables.append(Table(
                f"Reaction {r} ({kind}): global rate {_f(c['global_rate_per_h'].values, '.3g')}"
                f" h⁻¹; first face {c['first_face'].values}; front slope "
                f"{_pm(c['front_slope'].values, c['front_slope_stderr'].values, '.3g')} s/µm",
                [f"depth from {origin} (µm)", "front arrival t½ (s)", "after start (s)",
                 "r(z) (h⁻¹)", "r(z) / global", "note"], rows))
    if "relaxation_time" in conf:
        for r in range(conf.sizes.get("rest", 0)):
            c = conf.isel(rest=r)
            out.facts.append(Fact(
                f"relaxation τ, rest {r} (shared over depths)",
                _pm(c["relaxation_time_shared"].values,
                    c["relaxation_time_shared_stderr"].values, ".0f", "s"),
                str(c["relaxation_shared_note"].values)))
            tau = c["relaxation_time"].values.astype(float)
            out.facts.append(Fact(f"relaxation τ per depth, rest {r}", ", ".join(
                f"{z:.0f} µm: {_f(t, '.0f')}" for z, t in zip(depth, tau, strict=True))))
    if "soc_depth_std" in conf:
        out.facts.append(Fact("through-depth SOC spread, max over passes",
                              _f(np.nanmax(_values(conf, "soc_depth_std").astype(float)), ".3f"),
                              "standard deviation of the local SOC over depth"))
    return out


def kinetics_summary(kin: xr.Dataset) -> StreamSummary:
    """The Randles–Sevcik fit of the cell CVs and the D map."""
    out = StreamSummary()
    if "cell_diffusion_cm2_s" in kin:
        out.facts += [
            Fact("cell D (Randles–Sevcik)", _pm(kin["cell_diffusion_cm2_s"].values,
                                                kin["cell_diffusion_stderr_cm2_s"].values,
                                                ".3e", "cm²/s")),
            Fact("slope i_p vs √v", _pm(kin["cell_slope"].values,
                                         kin["cell_slope_stderr"].values, ".3e",
                                         "A s^½ V^-½"),
                 f"weighted R² {_f(kin['cell_r2'].values, '.4f')}"),
            Fact("linear range",
                 f"up to {_f(float(kin['cell_max_linear_scan_rate_V_s']) * 1e3, 'g')} mV/s",
                 f"{int(kin['cell_n_linear'])} scan rates"),
            Fact("flags", ", ".join(_flag_names(int(kin["cell_flags"]), kin["cell_flags"]))
                 or "none"),
        ]
    if "diffusion_cm2_s" in kin:
        d = _values(kin, "diffusion_cm2_s").astype(float)
        ok = _values(kin, "fit_ok").astype(bool) if "fit_ok" in kin else np.isfinite(d)
        dv = d[ok & np.isfinite(d)]
        out.facts += [
            Fact("D map, median", _f(np.median(dv), ".3e", "cm²/s") if dv.size else "n/a",
                 f"{_f(np.percentile(dv, 5), '.2e')} – {_f(np.percentile(dv, 95), '.2e')} "
                 "(5–95 %)" if dv.size else ""),
            Fact("pixels passing the fit-quality mask", f"{int(ok.sum())} of {ok.size}"),
        ]
    return out


# --------------------------------------------------------------------------- QC


def _flag_names(value: int, var: xr.DataArray) -> list[str]:
    masks = np.atleast_1d(var.attrs.get("flag_masks", []))
    names = str(var.attrs.get("flag_meanings", "")).split()
    return [n for m, n in zip(masks, names, strict=False) if value & int(m)]


def _by_reason(var: xr.DataArray) -> tuple[int, str]:
    """Non-zero entries of a CF flag variable (flag_values or flag_masks) and their count
    per meaning."""
    v = np.asarray(var.values)
    v = np.where(np.isfinite(v.astype(float)), v, 0).astype(int)
    names = str(var.attrs.get("flag_meanings", "")).split()
    counts: Counter[str] = Counter()
    if "flag_masks" in var.attrs:
        for m, n in zip(np.atleast_1d(var.attrs["flag_masks"]), names, strict=False):
            counts[n] += int((v & int(m) != 0).sum())
    else:
        values = list(np.atleast_1d(var.attrs.get("flag_values", [])))
        # negative codes outside flag_values are fill (e.g. a window of a point not measured)
        v = np.where((v < 0) & ~np.isin(v, values), 0, v)
        for code, n in Counter(v[v != 0].ravel().tolist()).items():
            counts[names[values.index(code)] if code in values else str(code)] += n
    detail = "; ".join(f"{n.replace('_', ' ')}: {c}" for n, c in counts.items() if c)
    return int((v != 0).sum()), detail


def _reasons(var: xr.DataArray) -> tuple[int, str]:
    """Entries of a text reason variable other than 'ok', grouped by their first words."""
    v = [str(x) for x in np.asarray(var.values).ravel()]
    bad = [x for x in v if x not in ("ok", "")]
    # the reason without its numbers: "|amplitude| 0.016 < min_amplitude 0.03" → one group
    groups = Counter(re.sub(r"\d+(\.\d+)?", "x", x).split(":")[0][:70] for x in bad)
    return len(bad), "; ".join(f"{k}: {c}" for k, c in groups.items())


def qc_items(products: Mapping[str, xr.Dataset]) -> list[QCItem]:
    """Every quality-control count of the run, per product, with a page anchor."""
    items: list[QCItem] = []
    add = items.append
    xrd = products.get("xrd")
    if xrd is not None:
        n = xrd.sizes.get("frame", 0)
        for var, what in (("outside_echem_range", "XRD frames outside the echem record"),
                          ("straddles_step", "XRD frames straddling a current step")):
            if var in xrd:
                add(QCItem(what, int(_values(xrd, var).astype(bool).sum()), n, "xrd"))
    peaks = products.get("peaks")
    if peaks is not None and "fit_status" in peaks:
        c, d = _by_reason(peaks["fit_status"])
        add(QCItem("failed peak-window fits", c, int(peaks["fit_status"].size), "peaks", d,
                   "bad" if c else "ok"))
        if "intermediate_flag" in peaks:
            add(QCItem("frames with the intermediate phase flagged",
                       int(_values(peaks, "intermediate_flag").astype(bool).sum()),
                       peaks.sizes["frame"], "peaks"))
    xanes = products.get("xanes")
    if xanes is not None and "qc_flag" in xanes:
        c, d = _by_reason(xanes["qc_flag"])
        add(QCItem("XANES scans flagged by QC", c, xanes.sizes["scan"], "xanes", d,
                   "bad" if c else "ok"))
    conf = products.get("confocal")
    if conf is not None:
        if "point_status" in conf:
            c, d = _by_reason(conf["point_status"])
            add(QCItem("confocal points missing", c, int(conf["point_status"].size),
                       "confocal", d))
        if "fit_status" in conf:
            c, d = _by_reason(conf["fit_status"])
            add(QCItem("failed confocal peak-window fits", c, int(conf["fit_status"].size),
                       "confocal", d, "bad" if c else "ok"))
        for var, what in (("front_reason", "depths without a front arrival"),
                          ("relaxation_reason", "depths without a relaxation time")):
            if var in conf:
                c, d = _reasons(conf[var])
                add(QCItem(what, c, int(conf[var].size), "confocal", d))
    kin = products.get("kinetics")
    if kin is not None:
        if "fit_ok" in kin:
            ok = _values(kin, "fit_ok").astype(bool)
            _, d = _by_reason(kin["flags"]) if "flags" in kin else (0, "")
            add(QCItem("SECCM pixels failing the fit-quality mask", int((~ok).sum()), ok.size,
                       "kinetics", d))
        if "cell_randles_sevcik_applies" in kin and not bool(kin["cell_randles_sevcik_applies"]):
            add(QCItem("cell CVs: Randles–Sevcik does not apply", 1, 1, "kinetics",
                       str(kin.attrs.get("cell_reasons", "")), "bad"))
    return [i if i.count or i.severity != "warn" else QCItem(
        i.what, i.count, i.total, i.anchor, i.detail, "ok") for i in items]
