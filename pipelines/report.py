"""The run report: ``<product_dir>/report/index.html`` from a reduced run.

:func:`write_report` is what ``operando report`` runs, what :func:`pipelines.reduce.reduce_run`
calls at the end of every reduce, and what a live service calls to refresh the page. It
only wires: the products through :func:`operando.open_run`, their freshness through
:func:`pipelines.cache.run_status` (``operando status``), the numbers through
:mod:`operando.report.summary`, the figures through :mod:`operando.report` (drawn only when
the flow did not leave one), the scorecard when a ``truth.json`` sits beside the raw data
(a simulated run), the page through :mod:`operando.report.page` and
:mod:`operando.io.report`.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
import yaml

from operando import __version__
from operando.config import RunConfig, load_config, validate_config
from operando.io.figures import save_figure
from operando.io.products import product_path
from operando.io.report import file_size, read_json, read_log_warnings, write_report_page
from operando.io.run import IncompleteRunWarning, open_run
from operando.report import summary as S
from operando.report.live import LIVE_TAG, is_live, live_marker
from operando.report.page import Figure, ProductRow, ReportPage, StreamSection, render_report
from pipelines.cache import LOG_NAME, code_version, run_status

__all__ = ["report_path", "write_report"]

#: stream → (section title, figures it shows: file name → caption)
SECTIONS: dict[str, tuple[str, dict[str, str]]] = {
    "xrd": ("XRD", {"xrd.png": "integrated patterns over time beside the voltage"}),
    "peaks": ("Phases", {"peaks.png": "phase fractions against the Faraday expectation, "
                         "lattice parameter a, d-spacings of the main peaks"}),
    "xanes": ("XANES", {"xanes.png": "fraction against the Faraday expectation, residual, "
                        "spectra with the isosbestic points"}),
    "confocal": ("Confocal", {"confocal.png": "depth × time map of the local state of charge "
                              "with the front arrivals, and the through-depth spread"}),
    "kinetics": ("Kinetics", {"kinetics_ip.png": "Randles–Sevcik: i_p against √v with the fit",
                              "kinetics_map.png": "D map (SECCM)"}),
}


def report_path(product_dir: str | os.PathLike[str]) -> Path:
    """``<product_dir>/report/index.html``."""
    return Path(product_dir) / "report" / "index.html"


def _resolve(source: Any) -> tuple[RunConfig | None, Path]:
    """A run config (object or YAML path) or a product folder → (config, product folder)."""
    if isinstance(source, RunConfig):
        return source, source.product_dir
    path = Path(source)
    if path.suffix.lower() in (".yaml", ".yml"):
        cfg = load_config(path, check_files=False)
        return cfg, cfg.product_dir
    return None, path


def _config_of_products(pdir: Path, products: Mapping[str, xr.Dataset]) -> RunConfig | None:
    """The config the products were written with (their ``config_yaml``), pointed at
    ``pdir`` (the folder may have moved); None when none records it."""
    for ds in products.values():
        text = ds.attrs.get("config_yaml")
        if not text:
            continue
        try:
            cfg = validate_config(yaml.safe_load(text), source=f"{pdir}: config_yaml",
                                  check_files=False)
        except ValueError:
            return None
        if cfg.run.name != pdir.name:
            return None
        return cfg.model_copy(update={"output": cfg.output.model_copy(
            update={"directory": pdir.parent})})
    return None


def _size(n: int | None) -> str:
    return "" if n is None else f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def _products_rows(cfg: RunConfig | None, pdir: Path, fmt: str,
                   products: Mapping[str, xr.Dataset]) -> list[ProductRow]:
    states = {}
    if cfg is not None:
        try:
            states = {s.stream: s for s in run_status(cfg)}
        except ValueError:  # a config section without its product: shown as found
            states = {}
    rows = []
    for name in [*states, *(p for p in products if p not in states)]:
        st = states.get(name)
        ds = products.get(name)
        path = product_path(pdir, name, fmt)
        href = f"../{path.relative_to(pdir).as_posix()}" if ds is not None else None
        rows.append(ProductRow(
            name=name, status=st.status if st else "unknown (no config)",
            reasons=st.reasons if st else [], size=_size(file_size(path)),
            coverage=S.coverage(name, ds) if ds is not None else "", href=href))
    return rows


def _figures(report_dir: Path, names: Mapping[str, str],
             draw: Callable[[str], Any] | None = None, version: str = "") -> list[Figure]:
    """The figures of a section: those the flow left in ``report/``; a missing one is drawn
    by ``draw(name)`` (a matplotlib Figure, or None when it cannot be drawn). ``version``
    (e.g. ``?v=<time>``) follows each file name, so a reloaded live page fetches them anew."""
    out = []
    for name, caption in names.items():
        if file_size(report_dir / name) is None and draw is not None:
            fig = draw(name)
            if fig is not None:
                save_figure(fig, report_dir / name)
        if file_size(report_dir / name) is not None:
            out.append(Figure(name + version, caption))
    return out


def _draw(products: Mapping[str, xr.Dataset], base: str) -> Callable[[str], Any]:
    """Draw a figure the flow did not leave (``output.report: false``, or an older run);
    ``base``: the run's name, and on a live product what it covers."""
    from operando.report.confocal import confocal_figure
    from operando.report.echem import echem_figure
    from operando.report.kinetics import d_map_figure, ip_figure
    from operando.report.peaks import peaks_figure
    from operando.report.xanes import xanes_figure
    from operando.report.xrd import xrd_figure

    def draw(name: str) -> Any:
        p = products
        product = name.split(".")[0].split("_")[0]  # kinetics_ip.png → kinetics
        marker = live_marker(p[product].attrs) if product in p else ""
        title = f"{base} ({marker})" if marker else base
        if name == "echem.png" and "echem" in p:
            return echem_figure(p["echem"], title=f"{title}: electrochemistry")
        if name == "xrd.png" and "xrd" in p:
            return xrd_figure(p["xrd"], title=f"{title}: integrated XRD")
        if name == "peaks.png" and "peaks" in p:
            ds = p["peaks"]
            far = (np.asarray(ds["time"].values, float),
                   np.asarray(ds["faraday_fraction"].values, float)) \
                if "faraday_fraction" in ds else None
            return peaks_figure(ds, faraday=far, title=title)
        if name == "xanes.png" and "xanes" in p:
            return xanes_figure(p["xanes"], title=f"{title}: XANES")
        if name == "confocal.png" and "confocal" in p:
            return confocal_figure(p["confocal"], echem=p.get("echem"), title=title)
        if name == "kinetics_ip.png" and "kinetics" in p and "scan_rate" in p["kinetics"].dims:
            return ip_figure(p["kinetics"])
        if name == "kinetics_map.png" and "kinetics" in p and "y" in p["kinetics"].dims:
            return d_map_figure(p["kinetics"])
        return None

    return draw


def _run_facts(cfg: RunConfig | None, products: Mapping[str, xr.Dataset]) -> list[S.Fact]:
    facts = []
    if cfg is not None:
        r = cfg.run
        facts += [S.Fact(k, v) for k, v in (("sample", r.sample), ("beamline", r.beamline),
                                             ("proposal", r.proposal),
                                             ("description", r.description)) if v]
    codes = set()
    created = []
    for ds in products.values():
        created.append(str(ds.attrs.get("created_utc", "")))
        try:
            codes.add(json.loads(ds.attrs.get("operando_identity", "{}")).get("code"))
        except ValueError:
            pass
    codes.discard(None)
    now = code_version()
    facts.append(S.Fact("code version of the products", ", ".join(sorted(codes)) or "unknown",
                        "the installed code" if codes == {now} else f"installed: {now}"))
    if created:
        facts.append(S.Fact("products written", f"{min(created)} – {max(created)}"))
    ref = next((ds.attrs["acquisition_start_utc"] for ds in products.values()
                if "acquisition_start_utc" in ds.attrs), None)
    if ref:
        facts.append(S.Fact("acquisition start (potentiostat)", str(ref)))
    return facts


def _truth_path(cfg: RunConfig | None) -> Path | None:
    """``truth.json`` beside the raw data (a simulated run), looked for up to two folders
    above the cycler files."""
    if cfg is None or cfg.echem is None:
        return None
    for f in cfg.echem.files:
        for d in list(Path(f).parents)[:2]:
            if file_size(d / "truth.json") is not None:
                return d / "truth.json"
    return None


def _scorecard(cfg: RunConfig | None, products: Mapping[str, xr.Dataset]
               ) -> tuple[S.Table | None, int]:
    truth_path = _truth_path(cfg)
    if truth_path is None:
        return None, 0
    from operando.simulate.scorecard import scorecard

    rows = scorecard(read_json(truth_path), products)
    table = S.Table(f"Recovered against {truth_path.name} (tolerances: the issues' limits)",
                    ["product", "quantity", "truth", "recovered", "error", "tolerance", ""],
                    [[r.product, r.quantity, r.truth, r.recovered, f"{r.error:.3g} {r.unit}",
                      f"{r.tolerance:g} {r.unit}", "ok" if r.ok else "outside"] for r in rows])
    return table, sum(not r.ok for r in rows)


def _stream_summary(name: str, products: Mapping[str, xr.Dataset]) -> S.StreamSummary:
    ds = products[name]
    if name == "peaks":
        return S.peaks_summary(ds, products.get("echem"))
    if name == "xanes":
        return S.xanes_summary(ds)
    if name == "confocal":
        return S.confocal_summary(ds)
    if name == "kinetics":
        return S.kinetics_summary(ds)
    return S.StreamSummary([S.Fact("covers", S.coverage(name, ds))])


#: how often a live run's page reloads itself (s): about a live pass's period
LIVE_REFRESH_S = 15


def _live_banner(live: Mapping[str, str]) -> str:
    """The line atop a live run's page: what each incomplete product covers so far."""
    if not live:
        return ""
    return ("Live run, still being acquired: the products are incomplete ("
            + "; ".join(f"{name}: {marker.removeprefix(LIVE_TAG + ': ')}"
                        for name, marker in live.items())
            + f"). This page reloads every {LIVE_REFRESH_S} s.")


def write_report(run_dir_or_config: Any) -> Path:
    """Write ``<product_dir>/report/index.html`` for a reduced run and return its path.

    ``run_dir_or_config``: the run's product folder (``reduced/<run>/``), its run config
    (YAML path or ``RunConfig``). A folder's config is the one its products recorded.
    Figures the flow wrote are shown as they are; missing ones are drawn from the
    products. While a product is incomplete (a live run, ``complete = 0``) the page says
    what each covers, leaves the scorecard for the end and reloads itself every
    :data:`LIVE_REFRESH_S` s. Raises what :func:`operando.open_run` raises for a folder
    without products.
    """
    cfg, pdir = _resolve(run_dir_or_config)
    with warnings.catch_warnings():  # a live run's page says so itself, product by product
        warnings.simplefilter("ignore", IncompleteRunWarning)
        tree = open_run(pdir)
    try:
        # every product but the patterns is small: read once, not variable by variable
        products = {g: tree[g].to_dataset() if g == "xrd" else tree[g].to_dataset().load()
                    for g in tree.children}
        if cfg is None:
            cfg = _config_of_products(pdir, products)
        title = cfg.run.name if cfg is not None else pdir.name
        report_dir = pdir / "report"
        draw = _draw(products, title)
        clock_attrs = next((ds.attrs for ds in products.values() if "clock_method" in ds.attrs),
                           {})
        live = {name: live_marker(ds.attrs) for name, ds in products.items()
                if is_live(ds.attrs)}
        # a live page's figures change under the same names: the reloaded page asks anew
        version = f"?v={time.time_ns()}" if live else ""
        streams = [StreamSection(name, SECTIONS[name][0], _stream_summary(name, products),
                                 _figures(report_dir, SECTIONS[name][1], draw, version))
                   for name in SECTIONS if name in products]
        # the truth is the whole run's: scored once the products are complete
        scorecard, failed = _scorecard(cfg, products) if not live else (None, 0)
        page = ReportPage(
            run_name=title, created_utc=datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
            run_facts=_run_facts(cfg, products),
            config_yaml=cfg.to_yaml() if cfg is not None else "",
            qc=S.qc_items(products), warnings=read_log_warnings(pdir / LOG_NAME),
            products=_products_rows(cfg, pdir, str(tree.attrs.get("format", "netcdf")),
                                    products),
            clock=S.clock_facts(clock_attrs),
            clock_figures=_figures(report_dir, {"sync.png": "trigger-clock residuals"},
                                   version=version),
            protocol=S.echem_protocol(products["echem"]) if "echem" in products else None,
            protocol_figures=_figures(report_dir, {"echem.png": "voltage and current"}, draw,
                                      version),
            streams=streams, scorecard=scorecard, scorecard_failed=failed,
            log_href=f"../{LOG_NAME}" if file_size(pdir / LOG_NAME) is not None else None,
            live=_live_banner(live), refresh_s=LIVE_REFRESH_S if live else None)
        return write_report_page(report_dir, render_report(page, version=__version__))
    finally:
        tree.close()
