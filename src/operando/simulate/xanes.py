"""Synthetic operando Fe K-edge XANES of a LiFePO4 cathode (transmission, with a reference foil).

Physics (all energies in eV, thicknesses as dimensionless μ·t):

* True photon energies ``E`` form a step-scan grid over
  ``[energy_min_eV, energy_max_eV]`` with ``n_points`` points, coarse before the
  edge, fine across ``EDGE_REGION_EV`` (7100–7160 eV) and coarser after it.
* **Energy convention**: the monochromator reading written to the file is
  ``E_recorded = E_true + energy_offset_eV`` (the mono reads too high for a
  positive offset). ``truth["energy_offset_eV"]`` is ``recorded − true``.
* Sample::

      μt_sample(E, t) = absorber_mu_t · [(1 − f(t)) μ_LiFePO4(E) + f(t) μ_FePO4(E)]
                        + a + b (E / 7112 eV)^-3                      (matrix, Victoreen-like)

  with μ_std the *normalised* standards (edge step 1). ``f(t)`` is the FePO4
  fraction, ``f(t) = faraday_fepo4_fraction_at(max(t − lag_s, 0))``, evaluated at
  each point's own mid-time, so ``f`` changes within a scan.
* Reference channel: an Fe foil after the sample, ``μt_foil(E) = FOIL_STEP ·
  μ_foil,norm(E) + c (E / 7112 eV)^-3``; the foil edge (maximum of dμ/dE) is at
  ``FOIL_E0_EV`` = 7111.0 eV true energy, i.e. at ``7111.0 + energy_offset_eV``
  on the recorded axis.
* Counts (Poisson)::

      I0   ~ Poisson(i0_counts · φ(t) · g(E))
      It   ~ Poisson(I0 · exp(−μt_sample − μ_air(E)))
      Iref ~ Poisson(It · exp(−μt_foil))

  with φ(t) a slowly varying beam flux (top-up sawtooth and a slow drift) and
  g(E) a smooth I0-chamber/mono throughput. So ``ln(I0/It)`` is μt_sample plus a
  smooth background and ``ln(It/Iref)`` is μt_foil.

Standards come from ``ctx.data_dir / "xanes" / "FeLibNov2021.nor"`` (columns
``LiFe(II)PO4`` and ``Fe(III)PO4``) and the foil from ``fe_metal_rt.xdi``; when
absent an analytic model is used (arctan edge + Lorentzian white line, Fe3+ edge
+3.5 eV above Fe2+) and the fallback is reported in ``StreamResult.notes``. The
library spans 7090–7199.7 eV: below it the standards are held at their first
value (≈ 0), above it they relax exponentially to 1 (10 eV decay).

Time line: scan k (k = 0, 1, ...) starts at ``first_scan_s + k (scan_s +
dead_time_s)`` on the potentiostat clock and lasts ``scan_s``; scans are made
while they end before ``ctx.echem.duration_s``. Points are uniform within the
scan (point i counts over ``[t0 + i·dt, t0 + (i+1)·dt]``, ``dt = scan_s /
n_points``). The file stores beamline-clock epochs (point mid-times),
``ctx.clock.to_beamline_epoch(t) + Normal(0, beamline_jitter_s)``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.interpolate import CubicSpline

from operando.io.timestamps import epoch_to_iso
from operando.io.xas.hdf5 import XasScan, write_xas_scans
from operando.io.xas.text import read_xas_text, write_xdi
from operando.simulate.context import SimContext, StreamResult
from operando.simulate.timeline import acquisition_starts, relative_beam_intensity, window_mean

STREAM = "xanes"
SCANS_FILE = "xanes/xanes_scans.h5"
STANDARD_FILE = "xanes/standard_{name}.xdi"  # one two-column XDI file per end member
LIBRARY_FILE = "FeLibNov2021.nor"
FOIL_FILE = "fe_metal_rt.xdi"
LIBRARY_COLUMNS = {"LiFePO4": "LiFe(II)PO4", "FePO4": "Fe(III)PO4"}
FOIL_E0_EV = 7111.0  # tabulated Fe foil K edge (first inflection), true energy
EDGE_REGION_EV = (7100.0, 7160.0)  # fine-step region of the scan
POINT_DENSITY = (1.0, 8.0, 2.0)  # relative points per eV: pre-edge, edge, post-edge

FOIL_STEP = 1.2  # μt edge step of the reference foil
FOIL_BACKGROUND = 0.15  # μt of foil + Iref path at 7112 eV, ∝ E^-3
MATRIX_A = 0.05  # energy-independent μt of the cell (windows, electrolyte, ...)
MATRIX_B = 0.40  # Victoreen-like μt ∝ E^-3 of the cell, at 7112 eV
AIR_MU_T = 0.10  # air path before It, at 7112 eV, ∝ E^-3
E_REF_EV = 7112.0
EDGE_TRUE_EV = 7125.0  # middle of the LiFePO4/FePO4 edge rise (true energy), for time_edge_s

PATHS = {
    "energy": "measurement/energy",
    "I0": "measurement/I0",
    "It": "measurement/It",
    "Iref": "measurement/Iref",
    "epoch": "measurement/epoch",
}


def energy_grid_eV(
    e_min_eV: float,
    e_max_eV: float,
    n_points: int,
    edge_region_eV: tuple[float, float] = EDGE_REGION_EV,
    density: tuple[float, float, float] = POINT_DENSITY,
) -> np.ndarray:
    """Step-scan energy grid (eV): piecewise uniform, ``density`` points/eV ratios.

    Exactly ``n_points`` values from ``e_min_eV`` to ``e_max_eV`` inclusive; the
    spacing in the edge region is ``density[1] / density[0]`` times finer than
    before it.
    """
    if n_points < 2 or not e_max_eV > e_min_eV:
        raise ValueError(
            f"xanes energy grid: expected n_points >= 2 and energy_max_eV > energy_min_eV, "
            f"found n_points={n_points}, range [{e_min_eV}, {e_max_eV}]"
        )
    lo = float(np.clip(edge_region_eV[0], e_min_eV, e_max_eV))
    hi = float(np.clip(edge_region_eV[1], lo, e_max_eV))
    knots = np.array([e_min_eV, lo, hi, e_max_eV], dtype=float)
    cum = np.concatenate([[0.0], np.cumsum(np.diff(knots) * np.asarray(density, dtype=float))])
    u = np.linspace(0.0, cum[-1], n_points)
    return np.interp(u, cum, knots)


def _arctan_step(e: np.ndarray, e0: float, width: float) -> np.ndarray:
    return 0.5 + np.arctan((e - e0) / width) / np.pi


def _lorentz(e: np.ndarray, center: float, fwhm: float) -> np.ndarray:
    h = 0.5 * fwhm
    return h * h / ((e - center) ** 2 + h * h)


def _gauss(e: np.ndarray, center: float, sigma: float) -> np.ndarray:
    return np.exp(-0.5 * ((e - center) / sigma) ** 2)


def analytic_standards(e_eV: np.ndarray) -> dict[str, np.ndarray]:
    """Normalised model μ(E) of LiFePO4 (Fe2+) and FePO4 (Fe3+), edge step 1.

    μ = ½ + arctan((E − E0)/Γ)/π + A·L(E; E_wl, w) + p·G(E; E_pre, 1 eV), with
    E0 = 7121.5 / 7125.0 eV (a +3.5 eV Fe2+ → Fe3+ shift), white lines at
    7126 / 7130.5 eV and weak 1s→3d pre-edge peaks at 7112.8 / 7114.0 eV.
    """
    e = np.asarray(e_eV, dtype=float)
    lfp = (
        _arctan_step(e, 7121.5, 1.5)
        + 0.70 * _lorentz(e, 7126.0, 5.0)
        + 0.04 * _gauss(e, 7112.8, 1.0)
    )
    fp = (
        _arctan_step(e, 7125.0, 1.8)
        + 0.50 * _lorentz(e, 7130.5, 6.0)
        + 0.06 * _gauss(e, 7114.0, 1.0)
    )
    return {"LiFePO4": lfp, "FePO4": fp}


def analytic_foil(e_eV: np.ndarray) -> np.ndarray:
    """Normalised model Fe foil μ(E): arctan edge at 7111.0 eV (Γ = 1 eV) + a broad bump."""
    e = np.asarray(e_eV, dtype=float)
    return _arctan_step(e, FOIL_E0_EV, 1.0) + 0.08 * _gauss(e, 7131.0, 4.0)


def _extend_normalised(e_src: np.ndarray, mu_src: np.ndarray, e: np.ndarray) -> np.ndarray:
    """Cubic-spline a normalised spectrum onto ``e``; hold below, relax to 1 above its range."""
    order = np.argsort(e_src)
    e_src, mu_src = e_src[order], mu_src[order]
    out = CubicSpline(e_src, mu_src)(np.clip(e, e_src[0], e_src[-1]))
    above = e > e_src[-1]
    out[above] = 1.0 + (mu_src[-1] - 1.0) * np.exp(-(e[above] - e_src[-1]) / 10.0)
    return out


def _normalise_foil(e_src: np.ndarray, mu_src: np.ndarray) -> np.ndarray:
    """Crude foil normalisation: subtract a pre-edge line, divide by the step at FOIL_E0_EV.

    Pre-edge line fitted over [E0 − 150, E0 − 30] eV, post-edge line over
    [E0 + 100, E0 + 400] eV; step = post(E0) − pre(E0).
    """
    pre = (e_src >= FOIL_E0_EV - 150) & (e_src <= FOIL_E0_EV - 30)
    post = (e_src >= FOIL_E0_EV + 100) & (e_src <= FOIL_E0_EV + 400)
    if pre.sum() < 2 or post.sum() < 2:
        raise ValueError(
            f"Fe foil spectrum spans {e_src.min():.1f}–{e_src.max():.1f} eV; expected data "
            f"from {FOIL_E0_EV - 150:.0f} to {FOIL_E0_EV + 100:.0f} eV at least"
        )
    pre_line = np.polyfit(e_src[pre], mu_src[pre], 1)
    post_line = np.polyfit(e_src[post], mu_src[post], 1)
    step = np.polyval(post_line, FOIL_E0_EV) - np.polyval(pre_line, FOIL_E0_EV)
    return (mu_src - np.polyval(pre_line, e_src)) / step


def _real_file(data_dir: Path | None, name: str) -> tuple[Path | None, str]:
    """``data_dir/xanes/name`` when it exists, else ``None`` and why (for the run's notes)."""
    if data_dir is None:
        return None, "no data_dir"
    path = data_dir / "xanes" / name
    return (path, "") if path.is_file() else (None, f"{path} absent")


def _standards(
    e_true: np.ndarray, data_dir: Path | None
) -> tuple[dict[str, np.ndarray], str | dict[str, str], list[str]]:
    """Normalised standards on ``e_true`` (true eV), their source, and notes."""
    lib, where = _real_file(data_dir, LIBRARY_FILE)
    if lib is None:
        return (
            analytic_standards(e_true),
            "analytic",
            [f"xanes: {where}; LiFePO4/FePO4 standards are the analytic edge model"],
        )
    xt = read_xas_text(lib)
    e_src = xt.energy
    out = {
        key: _extend_normalised(e_src, xt.column(col), e_true)
        for key, col in LIBRARY_COLUMNS.items()
    }
    notes = []
    if e_true.min() < e_src.min() or e_true.max() > e_src.max():
        notes.append(
            f"xanes: standards from {lib.name} span {e_src.min():.1f}–{e_src.max():.1f} eV; "
            "held flat below, relaxed to 1 above (scan covers "
            f"{e_true.min():.1f}–{e_true.max():.1f} eV)"
        )
    # sources named relative to the shared-data folder, so truth.json is machine-independent
    source = {key: f"shared/data/xanes/{lib.name}:{xt.resolve(col)}"
              for key, col in LIBRARY_COLUMNS.items()}
    return out, source, notes


def _foil(e_true: np.ndarray, data_dir: Path | None) -> tuple[np.ndarray, str, list[str]]:
    """Normalised Fe foil μ on ``e_true``, its source, and notes."""
    path, where = _real_file(data_dir, FOIL_FILE)
    if path is None:
        return (
            analytic_foil(e_true),
            "analytic",
            [f"xanes: {where}; reference Fe foil is the analytic edge model (E0 = 7111.0 eV)"],
        )
    xt = read_xas_text(path)
    e_src, mu_src = xt.energy, xt.column("mutrans")
    norm = _normalise_foil(e_src, mu_src)
    return (_extend_normalised(e_src, norm, e_true),
            f"shared/data/xanes/{path.name}:{xt.resolve('mutrans')}", [])


def scan_windows_s(ctx: SimContext) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (s, potentiostat clock) of every scan that ends within the protocol."""
    spec = ctx.preset.xanes
    if spec.scan_s <= 0 or spec.dead_time_s < 0:
        raise ValueError(
            f"preset xanes: expected scan_s > 0 and dead_time_s >= 0, found "
            f"scan_s={spec.scan_s}, dead_time_s={spec.dead_time_s}"
        )
    start = acquisition_starts(spec.first_scan_s, spec.scan_s + spec.dead_time_s, spec.scan_s,
                               ctx.echem.duration_s)
    if start.size < 1:
        raise ValueError(
            f"preset xanes: no scan fits: first_scan_s={spec.first_scan_s} + scan_s="
            f"{spec.scan_s} exceeds the echem protocol duration {ctx.echem.duration_s:.1f} s"
        )
    return start, start + spec.scan_s


def trigger_times_s(ctx: SimContext) -> np.ndarray:
    """The pulses the XANES controller sends (s, potentiostat clock): each scan's start
    (``XanesSpec.trigger`` ``scan``) or every energy point's mid-time (``point``), the
    times its file records."""
    spec = ctx.preset.xanes
    t_start, _ = scan_windows_s(ctx)
    if spec.trigger == "scan":
        return t_start
    if spec.trigger != "point":
        raise ValueError(f"preset xanes.trigger: expected 'scan' or 'point', found "
                         f"{spec.trigger!r}")
    dt = spec.scan_s / spec.n_points
    return (t_start[:, None] + (np.arange(spec.n_points) + 0.5) * dt).ravel()


def simulate_xanes(ctx: SimContext) -> StreamResult:
    """Write ``xanes/xanes_scans.h5`` and the end-member standards; return the truth.

    Files (roles): ``scans`` → ``xanes/xanes_scans.h5``; ``standard_LiFePO4`` and
    ``standard_FePO4`` → ``xanes/standard_<name>.xdi`` (energy on the true axis in
    eV, normalised μ), the exact spectra the data were made from, so the LCF
    reduction has standards with or without the real library.

    See the module docstring for the physics, time line and energy convention.
    Truth arrays are per scan; times in seconds on the potentiostat clock.
    """
    spec = ctx.preset.xanes
    rng = ctx.rng(STREAM)
    notes: list[str] = []

    e_true = energy_grid_eV(spec.energy_min_eV, spec.energy_max_eV, spec.n_points)
    e_recorded = e_true + spec.energy_offset_eV
    standards, standards_source, n1 = _standards(e_true, ctx.data_dir)
    foil_norm, foil_source, n2 = _foil(e_true, ctx.data_dir)
    notes += n1 + n2

    rel = e_true / E_REF_EV
    mu_matrix = MATRIX_A + MATRIX_B * rel**-3
    mu_air = AIR_MU_T * rel**-3
    mu_foil = FOIL_STEP * foil_norm + FOIL_BACKGROUND * rel**-3
    throughput = (e_true / 7160.0) ** -2.0  # smooth I0 energy dependence

    def fepo4(t: np.ndarray) -> np.ndarray:
        return ctx.echem.faraday_fepo4_fraction_at(np.clip(t - spec.lag_s, 0.0, None))

    t_start, t_end = scan_windows_s(ctx)
    n_pts = e_true.size
    dt = spec.scan_s / n_pts
    clock, clock_spec = ctx.stream_clock(STREAM)
    jitter = clock_spec.beamline_jitter_s

    # truth: average of f over each scan window; and f when the mono crosses the edge
    f_truth = window_mean(fepo4, t_start, t_end)
    i_edge = int(np.argmin(np.abs(e_true - EDGE_TRUE_EV)))
    t_edge = t_start + (i_edge + 0.5) * dt
    f_edge = fepo4(t_edge)

    scans: list[XasScan] = []
    for k, t0 in enumerate(t_start):
        t_mid = t0 + (np.arange(n_pts) + 0.5) * dt
        f = fepo4(t_mid)
        mu_sample = (
            spec.absorber_mu_t * ((1.0 - f) * standards["LiFePO4"] + f * standards["FePO4"])
            + mu_matrix
        )
        flux = relative_beam_intensity(t_mid, rng)
        i0 = rng.poisson(spec.i0_counts * flux * throughput).astype(float)
        it = rng.poisson(i0 * np.exp(-mu_sample - mu_air)).astype(float)
        iref = rng.poisson(it * np.exp(-mu_foil)).astype(float)
        epoch = clock.to_beamline_epoch(t_mid) + rng.normal(0.0, jitter, n_pts)
        edges = clock.to_beamline_epoch(np.array([t0, t0 + spec.scan_s]))
        edges = edges + rng.normal(0.0, jitter, 2)
        number = k + 1
        scans.append(
            XasScan(
                number=number,
                title=f"xanes {number}",
                start_time=epoch_to_iso(edges[0]),
                end_time=epoch_to_iso(edges[1]),
                measurement={
                    "energy": e_recorded,
                    "I0": i0,
                    "It": it,
                    "Iref": iref,
                    "epoch": epoch,
                },
                positioners={"sample_x_mm": 12.5, "sample_y_mm": -3.2},
                positioner_units={"sample_x_mm": "mm", "sample_y_mm": "mm"},
            )
        )

    write_xas_scans(
        ctx.stream_dir(STREAM) / Path(SCANS_FILE).name,
        scans,
        attrs={
            "title": "operando synthetic Fe K-edge XANES",
            "energy_convention": "energy = mono reading = true + offset",
        },
    )
    standard_files: dict[str, str] = {}
    for key in ("LiFePO4", "FePO4"):
        rel = STANDARD_FILE.format(name=key)
        source = standards_source if isinstance(standards_source, str) else standards_source[key]
        write_xdi(
            ctx.outdir / rel,
            {"energy": e_true, key: standards[key]},
            units={"energy": "eV"},
            metadata={
                "Element.symbol": "Fe",
                "Element.edge": "K",
                "Sample.name": key,
                "operando.energy_axis": "true (calibrated: Fe foil edge at 7111.0 eV)",
                "operando.source": source,
            },
            comments=["normalised mu(E) (edge step 1) used by the operando XANES simulator"],
        )
        standard_files[f"standard_{key}"] = rel

    truth = {
        "time_s": ((t_start + t_end) / 2).tolist(),
        "time_start_s": t_start.tolist(),
        "time_end_s": t_end.tolist(),
        "fraction": {"LiFePO4": (1.0 - f_truth).tolist(), "FePO4": f_truth.tolist()},
        "fraction_definition": "mean over the scan window [time_start_s, time_end_s]",
        "edge_true_eV": float(e_true[i_edge]),
        "time_edge_s": t_edge.tolist(),
        "fraction_at_edge": {"LiFePO4": (1.0 - f_edge).tolist(), "FePO4": f_edge.tolist()},
        "epoch_refers_to": "mid-time of each energy point (points evenly spaced in time)",
        "echem": ctx.echem.window_means(t_start, t_end),
        "energy_offset_eV": float(spec.energy_offset_eV),
        "energy_convention": "E_recorded = E_true + energy_offset_eV",
        "lag_s": float(spec.lag_s),
        "foil_e0_eV": FOIL_E0_EV,
        "foil_e0_recorded_eV": FOIL_E0_EV + float(spec.energy_offset_eV),
        "standards_source": standards_source,
        "foil_source": foil_source,
        "n_scans": int(t_start.size),
        "n_points": int(n_pts),
        "scan_names": [s.name for s in scans],
        "energy_true_eV": e_true.tolist(),
        "absorber_mu_t": float(spec.absorber_mu_t),
        "paths": dict(PATHS),
    }
    return StreamResult(files={"scans": SCANS_FILE, **standard_files}, truth=truth, notes=notes)
