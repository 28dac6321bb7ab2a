"""Identity, freshness and the plan of a reduce run: what is fresh, what must be recomputed.

A **product** records what it was made from in its ``operando_identity`` attribute (JSON):
the code version (:func:`code_version`), the config sections it depends on (as resolved
values, :data:`STREAM_SECTIONS`) and every input file it read with its size and mtime. A
product is

- ``fresh`` when all three still match (no reduction work);
- ``stale`` when one does not (the reason names the file or the config key that changed,
  e.g. ``echem.active_mass_mg: 5.0 → 6.0``);
- ``missing`` when there is no file; ``incomplete`` when only a partial write exists
  (``.<name>.nc.*.part``), or the product says ``complete = false`` (a live run).

The dependency graph is explicit: echem → sync → xrd → peaks; sync → xanes, confocal;
kinetics alone. Through the sections (xrd's identity holds the ``echem`` and ``sync``
sections: they give its x_li, voltage and time) and through files (peaks.nc records the
xrd.nc it was fitted on) a change reaches exactly the products downstream of it.
:func:`plan_run` turns the states into what to recompute, without Prefect or Dask: the
CLI and :func:`pipelines.reduce.reduce_run` call it before entering the flow, and nothing
is started when every product is fresh.

A **work unit**'s identity (:func:`pipelines.runner.unit_key`) hashes its function, its
arguments (a frame source by its files' path, size and mtime, a frame range, an integrator
setup by the content of its PONI and mask, arrays by content) and the code version; its
result is cached in ``<product_dir>/.cache/units/`` (:mod:`operando.io.cache`).
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import xarray as xr

import operando
from operando import __version__
from operando.config import RunConfig, expand_inputs
from operando.io.cache import IDENTITY_ATTR, file_stamp, read_identity, remove_tree, source_digest
from operando.io.products import product_path
from operando.io.xrd.images import split_hdf5_url

__all__ = ["COVERED_ATTRS", "DEPENDENTS", "IDENTITY_ATTR", "REDUCED_STREAMS",
           "STREAM_SECTIONS", "Plan", "ProductState", "cache_dir", "clean_run", "code_version",
           "identity_json", "in_live_pass",
           "live_attrs", "live_products", "plan_run", "product_state", "run_status"]

#: Streams this version reduces, in the order they run.
REDUCED_STREAMS = ("echem", "xrd", "peaks", "confocal", "xanes", "kinetics")

#: Config sections each product depends on (its own first). ``confocal`` uses the
#: top-level ``peaks`` only when it has no ``confocal.peaks``.
STREAM_SECTIONS: dict[str, tuple[str, ...]] = {
    "echem": ("echem", "sync"),
    "xrd": ("xrd", "echem", "sync"),
    "peaks": ("peaks", "xrd", "echem", "sync"),
    "confocal": ("confocal", "peaks", "echem", "sync"),
    "xanes": ("xanes", "echem", "sync"),
    "kinetics": ("kinetics",),
}

#: the run's log file beside its products (decisions, tracebacks)
LOG_NAME = "reduce.log"

#: Products made from another product's file: recomputing the key recomputes these.
DEPENDENTS: dict[str, tuple[str, ...]] = {"xrd": ("peaks",)}

Status = Literal["fresh", "stale", "missing", "incomplete"]


@functools.cache
def code_version() -> str:
    """``<operando version>+<sha256[:16] of the operando and pipelines sources>``: a code
    change makes every cached unit and product stale."""
    roots = [Path(operando.__file__).parent, Path(__file__).parent]
    return f"{__version__}+{source_digest(roots)[:16]}"


#: what a product written during a live run records it covers: attribute and how it is
#: counted in the product (cycler samples, frames, scans, measured points)
COVERED_ATTRS: dict[str, str] = {"echem": "samples_covered", "xrd": "frames_covered",
                                 "peaks": "frames_covered", "xanes": "scans_covered",
                                 "confocal": "points_covered"}
#: depth of :func:`live_products` blocks in progress (a live pass)
_LIVE: list[bool] = []


@contextlib.contextmanager
def live_products() -> Iterator[None]:
    """Products written inside (a live pass) are marked ``complete = 0`` (false) with what
    they hold (:func:`live_attrs`): :func:`product_state` calls them incomplete, so they are
    never taken as fresh."""
    _LIVE.append(True)
    try:
        yield
    finally:
        _LIVE.pop()


def in_live_pass() -> bool:
    """Inside :func:`live_products` (products written now are incomplete)."""
    return bool(_LIVE)


def _covered(product: str, ds: xr.Dataset) -> int | None:
    if product == "echem":
        return int(ds.sizes.get("echem_time", 0))
    if product in ("xrd", "peaks"):
        return int(ds.sizes.get("frame", 0))
    if product == "xanes":
        return int(ds.sizes.get("scan", 0))
    if product == "confocal" and "point_status" in ds:
        return int((np.asarray(ds["point_status"].values) == 0).sum())
    return None


def live_attrs(product: str, ds: xr.Dataset) -> dict[str, Any]:
    """The attributes of ``product`` (its Dataset ``ds``) written inside
    :func:`live_products`: ``complete = 0`` and what it holds, under
    :data:`COVERED_ATTRS` (``frames_covered``: the frames of xrd.nc and peaks.nc;
    ``scans_covered``, ``points_covered`` (measured cells), ``samples_covered``: cycler
    rows). Empty outside a live pass."""
    if not _LIVE:
        return {}
    n = _covered(product, ds)
    return {"complete": 0, **({COVERED_ATTRS[product]: n} if n is not None else {})}


def cache_dir(product_dir: Path) -> Path:
    """``<product_dir>/.cache``: the work-unit results of the run."""
    return Path(product_dir) / ".cache"


def _sections(cfg: RunConfig, stream: str) -> dict[str, Any]:
    """The resolved config sections ``stream`` depends on (absent ones as None); a section
    with ``files`` also records the files its globs match now."""
    names = list(STREAM_SECTIONS[stream])
    if stream == "confocal" and cfg.confocal is not None and cfg.confocal.peaks is not None:
        names.remove("peaks")
    out: dict[str, Any] = {}
    for name in names:
        sec = getattr(cfg, name)
        if sec is None:
            out[name] = None
            continue
        dump = sec.model_dump(mode="json")
        if name == "sync":
            dump = _sync_for(sec, stream, dump)
        for key in ("files", "cv_files"):  # the file lists that may hold glob patterns
            files = getattr(sec, key, None)
            if files:
                dump[f"{key}_matched"] = [str(p) for p in expand_inputs(list(files))]
        out[name] = dump
    return out


#: the X-ray stream whose clock a product is on (echem.nc: the reference stream's)
_CLOCK_OF = {"xrd": "xrd", "peaks": "xrd", "confocal": "confocal", "xanes": "xanes"}


def _sync_for(sec: Any, stream: str, dump: dict[str, Any]) -> dict[str, Any]:
    """The part of the ``sync`` section ``stream``'s clock depends on: the section's keys
    (defaults of every clock; ``trigger_file`` only when on the reference stream's clock)
    and the ``streams`` entries of the streams whose clock it is on, so a per-stream key
    makes only the products on that clock stale."""
    chain = sec.chain(_CLOCK_OF.get(stream, sec.reference_stream))
    entries = dump.pop("streams", None) or {}
    if chain[-1] != sec.reference_stream:
        dump.pop("trigger_file", None)
    mine = {k: v for k, v in entries.items() if k in chain}
    if mine:
        dump["streams"] = mine
    return dump


def identity_json(cfg: RunConfig, stream: str, inputs: Sequence[str | Path]) -> str:
    """The ``operando_identity`` attribute of a product of ``stream`` made from ``inputs``
    (HDF5 URLs count as their file): code version, sections, input file stamps."""
    files = dict.fromkeys(str(Path(split_hdf5_url(str(p))[0]).absolute()) for p in inputs)
    return json.dumps({"code": code_version(), "sections": _sections(cfg, stream),
                       "files": [list(file_stamp(f)) for f in files]}, sort_keys=True)


def _diff(old: Any, new: Any, key: str, out: list[str]) -> None:
    """Dotted keys where two JSON values differ (``a.b: old → new``)."""
    if isinstance(old, dict) and isinstance(new, dict):
        for k in sorted(set(old) | set(new)):
            _diff(old.get(k), new.get(k), f"{key}.{k}", out)
    elif old != new:
        def short(v: Any) -> str:
            s = json.dumps(v)
            return s if len(s) <= 40 else s[:37] + "..."
        out.append(f"{key}: {short(old)} → {short(new)}")


@dataclass
class ProductState:
    """One product's state: ``status`` (fresh / stale / missing / incomplete) and the
    ``reasons`` (which file, key or code changed)."""

    stream: str
    path: Path
    status: Status
    reasons: list[str] = field(default_factory=list)


def product_state(cfg: RunConfig, stream: str) -> ProductState:
    """The state of ``stream``'s product of the run (reads only its attributes and stats
    its recorded inputs)."""
    path = product_path(cfg.product_dir, stream, cfg.output.format)
    if not path.exists():
        partial = list(path.parent.glob(f".{path.name}.*.part"))
        if partial:
            return ProductState(stream, path, "incomplete",
                                [f"only a partial write ({partial[0].name})"])
        units = cache_dir(cfg.product_dir) / "units" / stream
        n = sum(1 for _ in units.glob("*.pkl")) if units.is_dir() else 0
        return ProductState(stream, path, "missing", [
            f"no product yet ({n} finished work units cached)" if n else "no product yet"])
    ident = read_identity(path)
    if ident is None:
        return ProductState(stream, path, "stale",
                            [f"{path.name} records no identity (written by an earlier "
                             "version, or unreadable)"])
    if ident.get("complete") is False:
        return ProductState(stream, path, "incomplete", ["complete = false (a live run)"])
    reasons: list[str] = []
    if ident.get("code") != code_version():
        reasons.append(f"code version {ident.get('code')} → {code_version()}")
    _diff(ident.get("sections", {}), _sections(cfg, stream), "", reasons)
    reasons = [r.lstrip(".") for r in reasons]
    for f, size, mtime in ident.get("files", []):
        now = file_stamp(f)
        if now[1] < 0:
            reasons.append(f"input {f} is gone")
        elif (now[1], now[2]) != (size, mtime):
            reasons.append(f"input {f} changed (size {size} → {now[1]} bytes"
                           f"{', mtime' if now[2] != mtime else ''})")
    return ProductState(stream, path, "stale" if reasons else "fresh", reasons)


def run_status(cfg: RunConfig, only: Sequence[str] | None = None) -> list[ProductState]:
    """Every configured product's state (``only``: those streams)."""
    return [product_state(cfg, s) for s in _wanted(cfg, only)]


def _wanted(cfg: RunConfig, only: Sequence[str] | None) -> list[str]:
    wanted = set(only) if only else {s for s in REDUCED_STREAMS if getattr(cfg, s) is not None}
    unknown = wanted - set(REDUCED_STREAMS)
    if unknown:
        raise ValueError(f"--only: expected some of {', '.join(REDUCED_STREAMS)}, found "
                         f"{', '.join(sorted(unknown))}")
    for s in sorted(wanted):
        if getattr(cfg, s) is None:
            raise ValueError(f"{s}: asked for, but the config has no '{s}' section")
    return [s for s in REDUCED_STREAMS if s in wanted]


@dataclass
class Plan:
    """What a reduce run does: ``compute`` (streams to write, in order, with why), ``fresh``
    (kept: up to date), ``kept`` (stale but kept by ``--keep``; the reason), and every
    state looked at."""

    compute: dict[str, str] = field(default_factory=dict)
    fresh: dict[str, str] = field(default_factory=dict)
    kept: dict[str, str] = field(default_factory=dict)
    states: dict[str, ProductState] = field(default_factory=dict)

    @property
    def nothing_to_do(self) -> bool:
        return not self.compute


def plan_run(cfg: RunConfig, only: Sequence[str] | None = None,
             mode: Literal["stale", "keep", "overwrite"] = "stale") -> Plan:
    """Decide per product: ``overwrite`` recomputes all; ``stale`` (default) recomputes
    missing, incomplete and stale ones; ``keep`` recomputes only missing and incomplete
    ones and keeps stale ones (with their reason, for a warning). A recomputed xrd.nc
    recomputes peaks.nc; peaks without an xrd.nc reduces the XRD first."""
    plan = Plan()
    wanted = _wanted(cfg, only)
    for s in wanted:
        st = product_state(cfg, s)
        plan.states[s] = st
        why = "; ".join(st.reasons)
        if mode == "overwrite":
            plan.compute[s] = "--overwrite"
        elif st.status in ("missing", "incomplete"):
            plan.compute[s] = f"{st.status}: {why}"
        elif st.status == "stale" and mode == "stale":
            plan.compute[s] = f"stale: {why}"
        elif st.status == "stale":
            plan.kept[s] = why
        else:
            plan.fresh[s] = "fresh"
    for up, downs in DEPENDENTS.items():
        for d in downs:
            if up in plan.compute and d in wanted and d not in plan.compute:
                plan.fresh.pop(d, None)
                plan.kept.pop(d, None)
                plan.compute[d] = f"{up} is recomputed"
    if "peaks" in plan.compute and "xrd" not in plan.compute and "xrd" not in plan.kept:
        # peaks is fitted on xrd.nc: never on a stale one unless --keep says so
        st = plan.states.get("xrd") or product_state(cfg, "xrd")
        if st.status in ("missing", "incomplete"):
            plan.compute["xrd"] = f"peaks needs it: {st.status}"
        elif st.status == "stale" and mode == "stale":
            plan.compute["xrd"] = f"peaks needs it: stale: {'; '.join(st.reasons)}"
        elif st.status == "stale":
            plan.kept["xrd"] = f"peaks is fitted on it: {'; '.join(st.reasons)}"
    plan.compute = {s: plan.compute[s] for s in REDUCED_STREAMS if s in plan.compute}
    return plan


def clean_run(product_dir: Path, *, products: bool = False) -> list[Path]:
    """Remove the run's work-unit cache (``.cache/``) and, with ``products``, what the reduce
    flow writes there: every product (``<name>.nc``, ``run.zarr``), ``report/`` and
    ``reduce.log``. Nothing else is touched (a folder given by mistake keeps its other
    files), and the folder itself goes only when nothing else is left in it. Returns what
    was removed."""
    pdir = Path(product_dir)
    targets = [cache_dir(pdir)]
    if products:
        targets += [product_path(pdir, name, "netcdf") for name in STREAM_SECTIONS]
        targets += [product_path(pdir, "xrd", "zarr").parent, pdir / "report", pdir / LOG_NAME]
    removed = [t for t in targets if remove_tree(t)]
    if products and pdir.is_dir() and not any(pdir.iterdir()):
        pdir.rmdir()
        removed.append(pdir)
    return removed
