"""The kinetics step: CV files and an SECCM map → ``kinetics.nc`` and its figures.

Orchestration only: :func:`kinetics_options` turns the ``kinetics`` config section into the
analysis options, :func:`operando.io.cv.read.read_cv` reads,
:func:`operando.kinetics.cv.label_sweeps` cuts sweeps and scan rates, :mod:`operando.kinetics`
analyses, :mod:`operando.report.kinetics` draws; :mod:`pipelines.reduce` writes the
:class:`~pipelines.stream.StreamProduct`.
"""

from __future__ import annotations

from collections.abc import Sequence

from operando.config import KineticsSection, expand_inputs
from operando.constants import RANDLES_SEVCIK_PSI_P
from operando.io.cv.read import read_cv
from operando.kinetics.analysis import KineticsOptions, analyse_cells, analyse_map
from operando.kinetics.cv import label_sweeps
from operando.kinetics.cv_peaks import PeakOptions
from operando.kinetics.product import kinetics_dataset
from operando.report.kinetics import d_map_figure, ip_figure
from pipelines.stream import ProgressCallback, StreamProduct


def _window(v: Sequence[float] | None) -> tuple[float, float] | None:
    return None if v is None else (float(v[0]), float(v[1]))


def kinetics_options(section: KineticsSection) -> KineticsOptions:
    """The analysis options of a ``kinetics`` config section (potentials in V,
    concentration in mol cm⁻³, temperature in K)."""
    return KineticsOptions(
        n_electrons=section.n_electrons, concentration_mol_cm3=section.concentration_mol_cm3,
        temperature_K=section.temperature_K, cycle=section.cycle, fit_peak=section.fit_peak,
        peaks=PeakOptions(background=section.background,
                          baseline_window_V=_window(section.baseline_window_V),
                          baseline_fraction=section.baseline_fraction,
                          fit_half_width_V=section.peak_fit_half_width_V,
                          min_snr=section.min_peak_snr),
        anodic_window_V=_window(section.anodic_window_V),
        cathodic_window_V=_window(section.cathodic_window_V),
        linearity_tolerance=section.linearity_tolerance,
        linearity_sigma=section.linearity_sigma, fit_intercept=section.fit_intercept,
        min_r2=section.min_r2, max_peak_shift_V_per_decade=section.max_peak_shift_V_per_decade,
        max_delta_ep_V=section.max_delta_ep_V, sweep=section.sweep, ir_ohm=section.ir_ohm,
        force=section.force,
    )


def build_kinetics(section: KineticsSection, *,
                   progress: ProgressCallback | None = None) -> StreamProduct:
    """Reduce a ``kinetics`` section: cell CVs (``cv_files``) and/or the map (``map_file``).

    Two work units (cells, map), reported through ``progress("kinetics", done, total)``
    (default None: no reports). Figures: ``kinetics_ip.png`` (i_p against √v with the fit)
    and, with a map, ``kinetics_map.png``. Bad files raise
    :class:`operando.io.cv.read.CVFormatError` naming the file, scan rates that disagree
    with dE/dt :class:`operando.kinetics.cv.ScanRateError`.
    """
    k = section
    options = kinetics_options(k)
    total = int(bool(k.cv_files)) + int(k.map_file is not None)  # a glob matches (validated)
    done = 0
    cells = map_ds = None
    notes: list[str] = []
    cv_files = expand_inputs(list(k.cv_files))
    inputs = [*cv_files]
    if cv_files:
        cvs = label_sweeps(read_cv(cv_files, format=k.cv_format),
                           scan_rate_tolerance=k.scan_rate_tolerance)
        cells = analyse_cells(cvs, k.area_cm2, options)  # type: ignore[arg-type]
        notes.append(
            f"kinetics cells: D = {float(cells['cell_diffusion_cm2_s']):.4g} ± "
            f"{float(cells['cell_diffusion_stderr_cm2_s']):.2g} cm²/s, linear up to "
            f"{float(cells['cell_max_linear_scan_rate_V_s']) * 1e3:.4g} mV/s "
            f"({int(cells['cell_n_linear'])}/{cells.sizes['scan_rate']} rates), "
            f"R² = {float(cells['cell_r2']):.5f}")
        notes.extend(f"kinetics: {r}" for r in cells.attrs.get("reasons", []))
        done += 1
        if progress is not None:
            progress("kinetics", done, total)
    if k.map_file is not None:
        inputs.append(k.map_file)
        mcv = label_sweeps(read_cv(k.map_file, format="seccm"),
                           scan_rate_tolerance=k.scan_rate_tolerance)
        map_ds = analyse_map(mcv, options, area_cm2=k.map_area_cm2)
        ok = map_ds["fit_ok"].values
        notes.append(f"kinetics map: {int(ok.sum())}/{ok.size} pixels pass the fit-quality "
                     f"mask")
        done += 1
        if progress is not None:
            progress("kinetics", done, total)
    ds = kinetics_dataset(cells, map_ds)
    figures = {"kinetics_ip.png": ip_figure(ds)}
    if map_ds is not None:
        figures["kinetics_map.png"] = d_map_figure(ds)
    attrs = {"kinetics_n_electrons": k.n_electrons,
             "kinetics_concentration_mol_cm3": k.concentration_mol_cm3,
             "kinetics_temperature_K": k.temperature_K,
             "kinetics_linearity_tolerance": k.linearity_tolerance,
             "kinetics_equation": f"i_p = {RANDLES_SEVCIK_PSI_P} n F A C sqrt(n F v D / (R T)); "
                                  f"D = (R T / n F) (slope / ({RANDLES_SEVCIK_PSI_P} n F A C))^2"}
    return StreamProduct(name="kinetics", dataset=ds, attrs=attrs, inputs=list(inputs),
                         figures=figures, notes=notes)
