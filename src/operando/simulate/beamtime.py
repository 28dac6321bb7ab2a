"""A whole synthetic operando beamtime, written in the layouts real beamlines use.

``simulate_beamtime(outdir, preset, seed)`` writes::

    outdir/
      echem/cell.mpt          BioLogic EC-Lab text export (potentiostat clock, local time header)
      echem/triggers.txt      trigger pulses as the potentiostat recorded them (missing, spurious)
      xrd/xrd_0001.h5         NeXus frames (bitshuffle-LZ4) + geometry.poni + mask.edf
      xanes/xanes_scans.h5    Bliss-like XANES scans (energy, I0, It, Iref, epoch)
      confocal/confocal.h5    Bliss-like master + LIMA frame files, per pass over depth
      confocal/confocal_ed.h5 the same points as energy-dispersive MCA spectra (if enabled)
      kinetics/cv_*.txt       Autolab NOVA exports, one per scan rate; seccm_map.h5
      truth.json              every ground-truth value the reduction must recover
      run.yaml                a valid run config that reduces this run

Deterministic for a seed: every stream draws from its own generator
(:meth:`SimContext.rng`), so the streams do not depend on each other's order.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from operando import __version__
from operando.config import validate_config
from operando.constants import MAH_TO_C
from operando.io.atomic import write_text_atomic
from operando.io.echem.biologic import write_mpt
from operando.io.echem.triggers import write_trigger_record
from operando.io.shared_data import find_shared_data
from operando.io.xrd import nexus
from operando.simulate.clock import make_clock, record_triggers
from operando.simulate.context import SimContext, StreamResult, to_jsonable
from operando.simulate.diffraction import POLARIZATION_FACTOR
from operando.simulate.echem import discharge_retention, simulate_echem
from operando.simulate.eclab_export import gcpl_settings_lines, simulated_cell_columns
from operando.simulate.presets import Preset, get_preset

STREAMS: tuple[str, ...] = ("xrd", "xanes", "confocal", "kinetics")

CLOCK_CONVENTION = (
    "beamline_epoch_s = acquisition_start_epoch_s + offset_s "
    "+ (1 + drift_ppm * 1e-6) * t_potentiostat_s"
)


@dataclass
class BeamtimeResult:
    outdir: Path
    preset: Preset
    seed: int
    files: dict[str, dict[str, str]] = field(default_factory=dict)  # stream -> role -> rel path
    truth: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def run_config_path(self) -> Path:
        return self.outdir / "run.yaml"

    @property
    def truth_path(self) -> Path:
        return self.outdir / "truth.json"


def _run_stream(name: str, ctx: SimContext) -> StreamResult:
    if name == "xrd":
        from operando.simulate.xrd import simulate_xrd

        return simulate_xrd(ctx)
    if name == "xanes":
        from operando.simulate.xanes import simulate_xanes

        return simulate_xanes(ctx)
    if name == "confocal":
        from operando.simulate.confocal import simulate_confocal

        return simulate_confocal(ctx)
    if name == "kinetics":
        from operando.simulate.cv import simulate_kinetics

        return simulate_kinetics(ctx)
    raise ValueError(f"unknown stream {name!r}; expected one of {STREAMS}")


def _echem_truth(ctx: SimContext) -> dict[str, Any]:
    e = ctx.echem
    spec = e.spec
    return {
        "timezone": spec.timezone,
        "acquisition_start_local": spec.acquisition_start_local,
        "acquisition_start_epoch_s": ctx.clock.start_epoch_s,
        "c_rate_per_h": spec.c_rate_per_h,
        "active_mass_mg": spec.active_mass_mg,
        "molar_mass_g_mol": spec.molar_mass_g_mol,
        "electrons_per_formula_unit": spec.electrons_per_formula_unit,
        "x_start": spec.x_start,
        "capacity_theoretical_C": e.capacity_theoretical_C,
        "capacity_theoretical_mAh": e.capacity_theoretical_C / MAH_TO_C,
        "current_1c_A": e.current_1c_A,
        "current_A": e.current_1c_A * spec.c_rate_per_h,
        "segments": [
            {"name": n, "start_s": a, "end_s": b}
            for n, (a, b) in zip(e.segment_names, e.segment_bounds_s, strict=True)
        ],
        "charge_passed_C": float(e.charge_C.max()),
        "discharge_retention": discharge_retention(spec),
        "x_li_end": float(e.x_li[-1]),
        "x_li_min": float(e.x_li.min()),
        "duration_s": e.duration_s,
    }


def _integration(files: dict[str, str], npt: int) -> dict[str, Any]:
    """Integration section for frames rendered by ``FrameRenderer`` (its corrections)."""
    return {"poni": files["poni"], "mask": files["mask"], "unit": "q_A^-1", "npt": npt,
            "polarization_factor": POLARIZATION_FACTOR, "correct_solid_angle": True}


#: q ranges (1/Å) of the peak-fit windows: wide stretches of the pattern fitted whole (every
#: reflection of each phase, areas tied to one scale per phase), the (200) group and the
#: (020)–(311)–(121) stretch, where LiFePO4, the intermediate and FePO4 resolve best at
#: 60 keV. Wide windows let the smooth background be told apart from a broad minority
#: phase's tails (in a window a few peak widths wide, the two trade area: the fraction bias
#: benchmarks/bench_fractions.py measures).
PEAK_WINDOWS_Q = {"w200": (1.10, 1.40), "w020_311": (1.95, 2.75)}
#: background polynomial order per window (a wide window needs a cubic)
PEAK_WINDOW_BACKGROUND = {"w200": 2, "w020_311": 3}


def _window_peaks(ph: str, refl: list[dict], q0: float, q1: float, main_min_intensity: float,
                  main_separation_q: float) -> list[dict[str, Any]]:
    """Config entries of one phase's reflections in a window: main peaks (free centres:
    the strongest inside [q0, q1], then every other inside with ``intensity_common`` ≥
    ``main_min_intensity`` farther than ``main_separation_q`` from the mains chosen so far)
    and satellites (the rest: centre and area tied to the nearest main)."""
    def q_of(r: dict) -> float:
        return 2 * np.pi / r["d_A"]

    core = sorted((r for r in refl if q0 < q_of(r) < q1), key=lambda r: -r["intensity_common"])
    if not core:
        return []
    mains = [core[0]]
    for r in core[1:]:
        if r["intensity_common"] >= main_min_intensity and min(
                abs(q_of(r) - q_of(m)) for m in mains) > main_separation_q:
            mains.append(r)
    out = []
    for r in refl:
        entry: dict[str, Any] = {"phase": ph, "hkl": list(r["hkl"]),
                                 "intensity": round(float(r["intensity_common"]), 4)}
        if not any(r is m for m in mains):
            ref = min(mains, key=lambda m: abs(q_of(m) - q_of(r)))
            entry["satellite_of"] = f"{ph}_{''.join(map(str, ref['hkl']))}"
        out.append(entry)
    return out


def peaks_section(wavelength_A: float, *, margin_q: float = 0.1,
                  min_intensity: float = 0.2, main_min_intensity: float = 20.0,
                  main_separation_q: float = 0.03,
                  windows_q: dict[str, tuple[float, float]] | None = None,
                  background_order: dict[str, int] | None = None,
                  instrument_box: bool = True) -> dict[str, Any]:
    """The ``peaks`` config of a simulated LiFePO4 run, from the simulator's structures.

    Each window (``PEAK_WINDOWS_Q``) holds every reflection with ``intensity_common`` ≥
    ``min_intensity`` within its q range ± ``margin_q`` (tails of neighbours count); per
    phase, the strong well-separated reflections inside the range are main peaks (free
    centres, for the lattice parameters), the others their satellites (see
    :func:`_window_peaks`; relative areas from the structure). The fit is joint (one scale
    and FWHM per phase over all windows) with the instrument box (``instrument_box``).
    ``windows_q`` and ``background_order`` (default None: ``PEAK_WINDOWS_Q`` and
    ``PEAK_WINDOW_BACKGROUND``, else 2) replace the windows, e.g. to compare layouts.
    """
    from operando.simulate.diffraction import LATTICE_A, LI_OCCUPANCY_INTERMEDIATE, PHASES
    from operando.simulate.diffraction import reflection_table as _table

    x_li = {"LiFePO4": 1.0, "FePO4": 0.0, "LixFePO4": LI_OCCUPANCY_INTERMEDIATE}
    windows = []
    bg_order = PEAK_WINDOW_BACKGROUND if background_order is None else background_order
    for wname, (q0, q1) in (PEAK_WINDOWS_Q if windows_q is None else windows_q).items():
        peaks = []
        for ph in ("LiFePO4", "LixFePO4", "FePO4"):
            refl = [r for r in _table(PHASES[ph], wavelength_A, None)
                    if q0 - margin_q < 2 * np.pi / r["d_A"] < q1 + margin_q
                    and r["intensity_common"] >= min_intensity]
            peaks += _window_peaks(ph, refl, q0, q1, main_min_intensity, main_separation_q)
        windows.append({"name": wname, "unit": "q_A^-1", "range": [q0, q1],
                        "background_order": bg_order.get(wname, 2),
                        "peaks": peaks})
    phases = []
    for ph in ("LiFePO4", "FePO4", "LixFePO4"):
        a, b, c = LATTICE_A[ph]
        entry = {"name": ph, "system": "orthorhombic", "a_A": a, "b_A": b, "c_A": c,
                 "x_li": round(float(x_li[ph]), 6)}
        if ph == "LixFePO4":
            entry["max_shift"] = 0.0015
        phases.append(entry)
    return {
        "method": "batch", "chunk_frames": 100, "profile": "pseudo_voigt",
        "snr_threshold": 3.0, "joint_windows": True, "instrument_box": instrument_box,
        "max_iter": 1000, "phases": phases,
        "windows": windows,
        "vegard": {"lithiated": "LiFePO4", "delithiated": "FePO4", "quantity": "volume"},
        "intermediate": {"phase": "LixFePO4", "criterion": "bic", "threshold": 10.0,
                         "min_fraction": 0.02},
    }


def _run_config(res: BeamtimeResult, ctx: SimContext, output_directory: str) -> dict[str, Any]:
    """The run config (relative paths) that reduces this simulated run."""
    spec = ctx.preset.echem
    f = res.files
    cfg: dict[str, Any] = {
        "schema_version": 1,
        "run": {
            "name": f"sim-{ctx.preset.name}-seed{ctx.seed}",
            "sample": "LiFePO4 | Li half cell (simulated)",
            "beamline": "operando.simulate",
            "description": f"Synthetic operando beamtime, preset {ctx.preset.name}, seed "
                           f"{ctx.seed}; ground truth in truth.json.",
        },
        "output": {"directory": output_directory},
        "echem": {
            "files": [f["echem"]["mpt"]],
            "format": "biologic-mpt",
            "timezone": spec.timezone,
            "active_mass_mg": spec.active_mass_mg,
            "molar_mass_g_mol": spec.molar_mass_g_mol,
            "electrons_per_formula_unit": spec.electrons_per_formula_unit,
            "x0": spec.x_start,
        },
    }
    sync = _sync_section(res.truth, f)
    if sync is not None:
        cfg["sync"] = sync
    if "xrd" in f:
        cfg["xrd"] = {
            "files": [f["xrd"]["frames"]],
            "dataset": nexus.DETECTOR_DATA_PATH,
            "timestamp_path": nexus.TIMESTAMP_PATH,
            "count_time_path": nexus.COUNT_TIME_PATH,
            "monitor_path": nexus.MONITOR_DATA_PATH,
            "integration": _integration(f["xrd"], npt=1500),
        }
        cfg["peaks"] = peaks_section(float(res.truth["xrd"]["wavelength_A"]))
    if "xanes" in f:
        t = res.truth["xanes"]
        paths = t["paths"]
        cfg["xanes"] = {
            "files": [f["xanes"]["scans"]],
            "scans": "*.1",
            "mode": "transmission",
            "energy_path": paths["energy"],
            "i0_path": paths["I0"],
            "it_path": paths["It"],
            "iref_path": paths["Iref"],
            "epoch_path": paths["epoch"],
            "reference_e0_eV": t["foil_e0_eV"],
            "standards": [{"name": role.removeprefix("standard_"), "file": rel}
                          for role, rel in sorted(f["xanes"].items())
                          if role.startswith("standard_")],
            "e0_method": "derivative",
            "align_mode": "reference_e0",
            "fit_range_eV": [-20.0, 60.0],
            "sum_to_one": True,
            "lcf_array": "flat",
            "faraday_component": "FePO4",
        }
    if "confocal" in f:
        t = res.truth["confocal"]
        motor = t["depth_motor"]
        cfg["confocal"] = {
            "files": [f["confocal"]["master"]],
            "scans": "*.1",
            "detector_path": t["detector_path"],
            "depth_path": motor["path"],
            "depth_unit": motor["units"],
            "depth_origin": t["origin"],
            "epoch_path": t["epoch_path"],
            "monitor_path": t["monitor_path"],
            # each depth point stands for its slab of the electrode
            "gauge_length_um": t["thickness_um"] / t["n_depths"],
            "thickness_um": t["thickness_um"],
            "integration": _integration(f["confocal"], npt=1000),
            "soc": {"quantity": "phase_fraction", "phase": "FePO4", "calibration": "linear",
                    "x_li_discharged": 1.0, "x_li_charged": 0.0},
        }
        if "peaks" not in cfg:  # a confocal-only run fits with its own peaks section
            cfg["confocal"]["peaks"] = peaks_section(float(t["wavelength_A"]))
    if "kinetics" in f:
        t = res.truth["kinetics"]
        cv_roles = sorted((r for r in f["kinetics"] if r.startswith("cv_")),
                          key=lambda r: int(r.removeprefix("cv_")))  # ascending scan rate
        cfg["kinetics"] = {
            "cv_files": [f["kinetics"][r] for r in cv_roles],
            "cv_format": "nova",
            "map_file": f["kinetics"].get("map"),
            "n_electrons": t["n_electrons"],
            "area_cm2": t["area_cm2"],
            "concentration_mol_cm3": t["concentration_mol_cm3"],
            "temperature_K": t["temperature_K"],
            "cycle": 1,
            "background": "linear",
            "linearity_tolerance": 0.01,
        }
    return cfg


def confocal_ed_section(run_yaml_confocal: dict[str, Any],
                        truth_confocal: dict[str, Any]) -> dict[str, Any]:
    """The run config's ``confocal`` section switched to the energy-dispersive master.

    A deep copy of ``run_yaml_confocal`` with ``mode: "energy"``, ``files`` = the ED
    master, ``spectrum_path``, ``energy_calibration_path``, ``two_theta_path`` and
    ``nominal_wavelength_A`` from ``truth_confocal["energy_dispersive"]``, and without
    ``integration``. Both arguments are as in run.yaml / truth.json (paths relative to
    the run folder). Raises ``KeyError`` if the run has no energy-dispersive scans.
    """
    ed = truth_confocal.get("energy_dispersive")
    if not ed:
        raise KeyError("truth_confocal has no 'energy_dispersive' entry: simulate with "
                       "ConfocalSpec.energy_dispersive=True")
    out = copy.deepcopy(dict(run_yaml_confocal))
    out.pop("integration", None)
    out.update({
        "mode": "energy",
        "files": [ed["master"]],
        "spectrum_path": ed["spectrum_path"],
        "energy_calibration_path": ed["calibration_path"],
        "two_theta_path": ed["two_theta_path"],
        "nominal_wavelength_A": ed["nominal_wavelength_A"],
    })
    return out


def simulate_beamtime(
    outdir: str | Path,
    preset: str | Preset = "small",
    seed: int = 0,
    *,
    overrides: dict[str, dict[str, Any]] | None = None,
    streams: Sequence[str] = STREAMS,
    data_dir: Path | str | None = "auto",
    output_directory: str = "reduced",
    progress: Callable[[str], None] | None = None,
    item_progress: Callable[[str, int, int], None] | None = None,
) -> BeamtimeResult:
    """Simulate a run and write it to ``outdir`` (see the module docstring).

    ``data_dir="auto"`` looks for ``../shared/data`` (real XANES standards and Fe
    foil); ``None`` forces the analytic fallbacks. ``output_directory`` is the
    run config's ``output.directory`` (relative to ``outdir``). ``progress(step)`` is
    called as each stream starts, ``item_progress(stream, done, total)`` per frame
    written by the long streams.
    """
    p = get_preset(preset) if isinstance(preset, str) else preset
    p = p.with_overrides(overrides)
    unknown = set(streams) - set(STREAMS)
    if unknown:
        raise ValueError(f"unknown stream(s) {sorted(unknown)}; expected some of {STREAMS}")
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    ddir = find_shared_data() if data_dir == "auto" else (Path(data_dir) if data_dir else None)
    say = progress or (lambda _msg: None)

    echem = simulate_echem(p.echem)
    clock = make_clock(p.echem, p.clock)
    ctx = SimContext(outdir=outdir, preset=p, echem=echem, clock=clock, seed=seed,
                     data_dir=ddir, progress=item_progress)
    res = BeamtimeResult(outdir=outdir, preset=p, seed=seed)
    start_local = datetime.fromisoformat(p.echem.acquisition_start_local)

    say("electrochemistry")
    mpt = write_mpt(ctx.stream_dir("echem") / "cell.mpt", simulated_cell_columns(echem),
                    acquisition_start=start_local, settings_lines=gcpl_settings_lines(echem))
    res.files["echem"] = {"mpt": str(mpt.relative_to(outdir))}
    res.truth["echem"] = _echem_truth(ctx)

    for name in streams:
        say(name)
        sr = _run_stream(name, ctx)
        res.files[name] = dict(sr.files)
        res.truth[name] = sr.truth
        res.notes.extend(n if n.startswith(f"{name}:") else f"{name}: {n}" for n in sr.notes)

    clock_truth: dict[str, Any] = {
        "offset_s": p.clock.offset_s,
        "drift_ppm": p.clock.drift_ppm,
        "convention": CLOCK_CONVENTION,
        "acquisition_start_epoch_s": clock.start_epoch_s,
    }
    if "xrd" in res.truth:
        say("trigger record")
        sent = np.asarray(res.truth["xrd"]["trigger_time_s"], dtype=float)
        rec = record_triggers(sent, p.clock, ctx.rng("triggers"))
        path = write_trigger_record(ctx.stream_dir("echem") / "triggers.txt", rec.time_s,
                                    source="xrd frame triggers (BNC trigger input)",
                                    acquisition_start=start_local)
        res.files["echem"]["triggers"] = str(path.relative_to(outdir))
        clock_truth.update({
            "n_sent": int(sent.size),
            "n_recorded": int(rec.time_s.size),
            "missing_trigger_index": rec.missing_index,
            "spurious_trigger_time_s": rec.spurious_time_s,
        })
    clocks = _stream_clocks(res, ctx, start_local, clock_truth)
    res.truth = {
        "operando_version": __version__,
        "preset": p.name,
        "seed": seed,
        "time_base": "seconds on the potentiostat clock since 'Acquisition started on'",
        "uses_shared_data": ddir is not None,
        "clock": clock_truth,
        **({"clocks": clocks} if clocks else {}),
        **res.truth,
        "preset_parameters": asdict(p),
        "notes": res.notes,
    }
    write_text_atomic(res.truth_path,
                      json.dumps(to_jsonable(res.truth), indent=1, allow_nan=False) + "\n")

    cfg = _run_config(res, ctx, output_directory)
    validate_config(cfg, source=str(res.run_config_path), base_dir=outdir)  # never write a bad one
    header = (
        f"# Run config written by `operando simulate` (operando {__version__}).\n"
        f"# Check with: operando validate {res.run_config_path}\n"
        "# Paths are relative to this file. Ground truth: truth.json.\n"
    )
    write_text_atomic(res.run_config_path,
                      header + yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True))
    return res


def _own_trigger_times(stream: str, ctx: SimContext) -> np.ndarray:
    """The pulses (s, potentiostat clock) an own-controller stream sends."""
    if stream == "xanes":
        from operando.simulate.xanes import trigger_times_s

        return trigger_times_s(ctx)
    from operando.simulate.confocal import confocal_schedule

    t = confocal_schedule(ctx.preset.confocal, ctx.echem.duration_s).time_start_s
    return np.sort(t[np.isfinite(t)])


def _stream_clocks(res: BeamtimeResult, ctx: SimContext, start_local: datetime,
                   xrd_clock: dict[str, Any]) -> dict[str, Any]:
    """Trigger records of the streams timed by their own controllers
    (``echem/triggers_<stream>.txt``) and the truth of every X-ray stream's clock: its
    controller, offset, drift, pulse and the defects of its record. Empty when no
    simulated stream has its own controller (the run has one clock: ``truth["clock"]``)."""
    p = ctx.preset
    own = [s for s in ("xanes", "confocal") if s in res.truth and p.stream_clock(s)]
    if not own:
        return {}
    out: dict[str, Any] = {}
    if "xrd" in res.truth:
        out["xrd"] = {"controller": "xrd", "pulse": "frame", **{
            k: xrd_clock[k] for k in ("offset_s", "drift_ppm") if k in xrd_clock},
            "trigger_file": res.files["echem"].get("triggers")}
    for name in own:
        spec = p.stream_clock(name)
        assert spec is not None
        sent = _own_trigger_times(name, ctx)
        rec = record_triggers(sent, spec, ctx.rng(f"triggers-{name}"))
        pulse = p.xanes.trigger if name == "xanes" else "point"
        path = write_trigger_record(
            ctx.stream_dir("echem") / f"triggers_{name}.txt", rec.time_s,
            source=f"{name} controller, one pulse per {pulse}",
            acquisition_start=start_local)
        res.files["echem"][f"triggers_{name}"] = str(path.relative_to(res.outdir))
        out[name] = {
            "controller": name, "pulse": pulse, "offset_s": spec.offset_s,
            "drift_ppm": spec.drift_ppm, "trigger_file": res.files["echem"][f"triggers_{name}"],
            "n_sent": int(sent.size), "n_recorded": int(rec.time_s.size),
            "missing_trigger_index": rec.missing_index,
            "spurious_trigger_time_s": rec.spurious_time_s,
        }
    for name in ("xanes", "confocal"):
        if name in res.truth and name not in out:
            out[name] = {"controller": "xrd" if "xrd" in out else None,
                         "pulse": None, "borrows": "xrd"}
    return out


def _sync_section(truth: dict[str, Any], files: dict[str, dict[str, str]]
                  ) -> dict[str, Any] | None:
    """The run config's ``sync``: the xrd frames against ``triggers.txt`` as the reference,
    and every stream timed by its own controller under ``sync.streams`` (the first one is
    the reference when there is no XRD)."""
    clocks = truth.get("clocks", {})
    own = [s for s in ("xanes", "confocal") if clocks.get(s, {}).get("controller") == s]
    if "xrd" not in files and not own:
        return None
    sync: dict[str, Any] = {"method": "triggers"}
    if "xrd" in files:
        sync.update(trigger_file=files["echem"]["triggers"], reference_stream="xrd")
    else:
        sync.update(trigger_file=clocks[own[0]]["trigger_file"], reference_stream=own[0])
    streams: dict[str, Any] = {}
    for name in own:
        entry: dict[str, Any] = {}
        if name != sync["reference_stream"]:
            entry["trigger_file"] = clocks[name]["trigger_file"]
        if name == "xanes":
            entry["pulse"] = clocks[name]["pulse"]
        if entry:
            streams[name] = entry
    if streams:
        sync["streams"] = streams
    return sync


def load_truth(path: str | Path) -> dict[str, Any]:
    """Read a ``truth.json`` written by :func:`simulate_beamtime`."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


__all__ = ["STREAMS", "BeamtimeResult", "confocal_ed_section", "load_truth", "peaks_section",
           "simulate_beamtime"]
