"""Rerunning ``operando reduce``: what the cache and the freshness check save, against the
obvious alternative, recomputing everything (a cold run; ``--overwrite`` does the same
work, and also recomputes every cached unit), on the same run.

The ``small`` preset is simulated into a temporary folder (or ``--run RUN_DIR`` holding a
``run.yaml`` written by ``operando simulate``), then each row is one ``operando reduce``
command in a fresh process (what a user types; wall time includes Python's imports, and
Prefect's temporary server and the Dask LocalCluster where they are started):

cold
    empty product folder, no cache: every unit computed (the ratios' reference).
unchanged
    the same config again: every product fresh; neither Prefect nor Dask is started.
echem change
    ``echem.active_mass_mg`` × 1.2: echem, xrd, peaks, confocal and xanes rewritten (they
    carry x_li) from cached integration chunks and peak-fit blocks; no cluster started.
xanes change
    ``xanes.fit_range_eV`` narrowed by 5 eV: only ``xanes.nc`` rewritten.
--overwrite
    every product and every unit recomputed (the cluster started again).

Usage: python benchmarks/bench_rerun.py [--run RUN_DIR] [--scheduler local|none]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml


def _reduce(config: Path, scheduler: str, *extra: str) -> float:
    """Wall seconds of ``operando reduce CONFIG`` in a fresh process (fails loudly)."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "operando", "reduce", str(config), "--scheduler",
                    scheduler, *extra], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def _variant(config: Path, name: str, change: dict[str, dict[str, object]]) -> Path:
    """A copy of ``config`` beside it with some keys of some sections changed."""
    data = yaml.safe_load(config.read_text(encoding="utf-8"))
    for section, keys in change.items():
        data[section].update(keys)
    out = config.with_name(name)
    out.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, help="a folder written by `operando simulate`")
    ap.add_argument("--scheduler", default="local")
    args = ap.parse_args()
    tmp = None
    if args.run is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench-rerun-")
        args.run = Path(tmp.name)
        subprocess.run([sys.executable, "-m", "operando", "simulate", str(args.run),
                        "--preset", "small"], check=True, stdout=subprocess.DEVNULL)
    config = args.run / "run.yaml"
    data = yaml.safe_load(config.read_text(encoding="utf-8"))
    reduced = config.parent / data["output"]["directory"] / data["run"]["name"]
    subprocess.run([sys.executable, "-m", "operando", "clean", str(config), "--all"],
                   check=False, stdout=subprocess.DEVNULL)
    mass = _variant(config, "run_mass.yaml", {"echem": {
        "active_mass_mg": data["echem"]["active_mass_mg"] * 1.2}})
    lo, hi = data["xanes"]["fit_range_eV"]
    xanes = _variant(mass, "run_xanes.yaml", {"xanes": {"fit_range_eV": [lo, hi - 5.0]}})
    rows = [("cold", _reduce(config, args.scheduler)),
            ("unchanged", _reduce(config, args.scheduler)),
            ("echem change", _reduce(mass, args.scheduler)),
            ("xanes change", _reduce(xanes, args.scheduler)),
            ("--overwrite", _reduce(xanes, args.scheduler, "--overwrite"))]
    cold = rows[0][1]
    print(f"operando reduce on {reduced} (--scheduler {args.scheduler}), one process each")
    print(f"{'run':<14} {'wall s':>8} {'× cold':>8}")
    for name, t in rows:
        print(f"{name:<14} {t:8.2f} {t / cold:8.2f}")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
