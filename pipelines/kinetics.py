"""The kinetics step: CV files and an SECCM map → ``kinetics.nc`` and its figures.

Orchestration only: :func:`operando.io.cv.read.read_cv` reads, :mod:`operando.kinetics`
analyses, :mod:`operando.report.kinetics` draws; :mod:`pipelines.reduce` writes the
:class:`~pipelines.stream.StreamProduct`.
"""

from __future__ import annotations

from operando.config import RunConfig
from operando.constants import RANDLES_SEVCIK_PSI_P
from operando.io.cv.read import read_cv
from operando.kinetics.analysis import KineticsOptions, analyse_cells, analyse_map
from operando.kinetics.product import kinetics_dataset
from operando.report.kinetics import d_map_figure, ip_figure
from pipelines.stream import ProgressCallback, StreamProduct


def build_kinetics(cfg: RunConfig, *, progress: ProgressCallback | None = None) -> StreamProduct:
    """Reduce ``cfg.kinetics``: cell CVs (``cv_files``) and/or the map (``map_file``).

    Two work units (cells, map), reported through ``progress("kinetics", done, total)``.
    Figures: ``kinetics_ip.png`` (i_p against √v with the fit) and, with a map,
    ``kinetics_map.png``. Raises ``ValueError`` when the config has no kinetics section;
    bad files raise :class:`operando.io.cv.read.CVFormatError` naming the file.
    """
    k = cfg.kinetics
    if k is None:
        raise ValueError("kinetics: the run config has no 'kinetics' section")
    options = KineticsOptions.from_config(k)
    total = int(bool(k.cv_files)) + int(k.map_file is not None)
    done = 0
    cells = map_ds = None
    notes: list[str] = []
    inputs = [*k.cv_files]
    if k.cv_files:
        cvs = read_cv(k.cv_files, format=k.cv_format, scan_rate_tolerance=k.scan_rate_tolerance)
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
        mcv = read_cv(k.map_file, format="seccm", scan_rate_tolerance=k.scan_rate_tolerance)
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
