"""Put the acquired confocal points on a (pass, depth) grid, recording every irregularity.

A confocal run measures a list of depths through the electrode, pass after pass. The
points come in acquisition order with their pass and measured depth (µm from the
origin, :class:`operando.io.xrd.confocal.ConfocalPoints`); :func:`depth_grid` finds the
nominal depths and the point of each (pass, depth) cell.

Nominal depths
--------------
* ``depths_um`` given: those depths (sorted increasing). Each point goes to the nearest
  one when it lies within ``tolerance_um`` of it (default: half the smallest spacing of
  the grid; with one depth, any distance); a point farther away is **off grid**: it is
  dropped and recorded in ``notes``.
* otherwise clustered from the measured depths: all finite depths sorted, split where
  the gap between neighbours exceeds ``tolerance_um`` (default 0.25 × the median nonzero
  |depth step| between consecutive points of a pass), the nominal depth of a cluster being
  the median of its points. A cluster measured in fewer than half as many passes as the
  best-covered one (a motor glitch, a stray point) is off grid too: its points are dropped
  and recorded. Give ``depths_um`` to decide that explicitly.

Points with a non-finite depth are dropped and recorded.

Cells
-----
``index[p, j]`` is the row of the point (in the inputs' order) measured in pass ``p`` at
depth ``j``, -1 when there is none. ``status`` codes (:data:`POINT_STATUS`, for CF
``flag_values`` / ``flag_meanings``):

``ok`` (0)
    a point is there. When a pass has two points in one cell the first (in acquisition
    order) is kept, the later one dropped and recorded (``duplicate_dropped`` in
    ``notes``); the cell stays ``ok``.
``missing`` (1)
    no point, though the pass went on past this depth (a skipped position).
``pass_cut_short`` (2)
    no point because the pass ended early: the cell lies beyond the pass's last acquired
    depth in its scan direction (a pass with no point at all is cut short everywhere).

The motor may sweep either way: a pass's direction is that of its own points (first to
last acquired); one with fewer than two distinct depths takes the direction most passes
have (increasing depth when none tells). Passes may alternate direction.

:func:`points_on_grid` puts every per-point variable of a Dataset on the (pass, depth)
grid, a cell without a point filled by the variable's dtype.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

__all__ = ["POINT_STATUS", "DepthGrid", "depth_grid", "points_on_grid"]

#: cell status codes → meaning (CF flag_values / flag_meanings of the product)
POINT_STATUS: dict[int, str] = {0: "ok", 1: "missing", 2: "pass_cut_short",
                                3: "duplicate_dropped"}
OK, MISSING, PASS_CUT_SHORT, DUPLICATE_DROPPED = 0, 1, 2, 3


@dataclass(frozen=True)
class DepthGrid:
    """The (pass, depth) grid of a confocal run (see the module docstring).

    ``depth_um`` (n_depths,) nominal depths, µm from the origin, increasing;
    ``index`` (n_passes, n_depths) int64 row of the input points for each cell, -1 if
    none; ``status`` (n_passes, n_depths) int8 codes of :data:`POINT_STATUS`;
    ``measured_depth_um`` (n_passes, n_depths) the cell's point's own measured depth (µm),
    NaN if none; ``tolerance_um`` the largest distance of a point from its nominal depth
    used (µm); ``notes`` one human-readable line per irregularity.
    """

    depth_um: np.ndarray
    index: np.ndarray
    status: np.ndarray
    measured_depth_um: np.ndarray
    tolerance_um: float
    notes: tuple[str, ...]

    @property
    def n_passes(self) -> int:
        return int(self.index.shape[0])

    @property
    def n_depths(self) -> int:
        return int(self.index.shape[1])


def _label(p: int, labels: Sequence[str] | None) -> str:
    return f"pass {p} ({labels[p]})" if labels is not None else f"pass {p}"


def _fmt(v: float) -> str:
    return f"{v:.4g} µm"


def _default_cluster_tolerance(pass_index: np.ndarray, depth: np.ndarray) -> float | None:
    steps: list[np.ndarray] = []
    for p in np.unique(pass_index):
        d = depth[pass_index == p]
        d = d[np.isfinite(d)]
        if d.size > 1:
            s = np.abs(np.diff(d))
            steps.append(s[s > 0])
    allsteps = np.concatenate(steps) if steps else np.empty(0)
    return 0.25 * float(np.median(allsteps)) if allsteps.size else None


def _cluster(
    pass_index: np.ndarray, depth: np.ndarray, finite: np.ndarray, tol: float,
    notes: list[str], labels: Sequence[str] | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Nominal depths (increasing) and each point's depth index (-1: dropped)."""
    rows = np.flatnonzero(finite)
    order = rows[np.argsort(depth[rows], kind="stable")]
    assign = np.full(depth.size, -1, dtype=np.int64)
    if order.size == 0:
        return np.empty(0), assign
    gaps = np.diff(depth[order])
    cuts = np.flatnonzero(gaps > tol) + 1
    groups = np.split(order, cuts)
    coverage = np.array([np.unique(pass_index[g]).size for g in groups])
    keep = coverage * 2 >= coverage.max()
    nominal = []
    for g, ok, cov in zip(groups, keep, coverage, strict=True):
        value = float(np.median(depth[g]))
        if ok:
            assign[g] = len(nominal)
            nominal.append(value)
            continue
        for r in g:
            notes.append(
                f"{_label(int(pass_index[r]), labels)}, point {int(r)} at "
                f"{_fmt(depth[r])}: off grid (a depth measured in {int(cov)} of "
                f"{int(coverage.max())} passes); dropped"
            )
    return np.asarray(nominal, dtype=np.float64), assign


def _nearest(
    pass_index: np.ndarray, depth: np.ndarray, finite: np.ndarray, grid: np.ndarray,
    tol: float, notes: list[str], labels: Sequence[str] | None,
) -> np.ndarray:
    assign = np.full(depth.size, -1, dtype=np.int64)
    for r in np.flatnonzero(finite):
        j = int(np.argmin(np.abs(grid - depth[r])))
        dist = abs(float(grid[j] - depth[r]))
        if dist <= tol:
            assign[r] = j
        else:
            notes.append(
                f"{_label(int(pass_index[r]), labels)}, point {int(r)} at {_fmt(depth[r])}: "
                f"off grid ({_fmt(dist)} from the nearest depth {_fmt(grid[j])}, "
                f"tolerance {_fmt(tol)}); dropped"
            )
    return assign


def depth_grid(
    pass_index: np.ndarray | Sequence[int],
    depth_um: np.ndarray | Sequence[float],
    *,
    n_passes: int,
    depths_um: Sequence[float] | np.ndarray | None = None,
    tolerance_um: float | None = None,
    pass_labels: Sequence[str] | None = None,
) -> DepthGrid:
    """Place points on the (pass, depth) grid (rules in the module docstring).

    ``pass_index`` (n_points,) int in ``0..n_passes-1`` and ``depth_um`` (n_points,)
    measured depths (µm from the origin) are in acquisition order. ``depths_um`` is the
    nominal grid (µm), clustered from the data when None; ``tolerance_um`` (µm, > 0) the
    largest point-to-nominal distance (defaults in the module docstring). ``pass_labels``
    (n_passes,) name the passes in ``notes`` (e.g. the scan entries).
    """
    p_idx = np.asarray(pass_index, dtype=np.int64).reshape(-1)
    depth = np.asarray(depth_um, dtype=np.float64).reshape(-1)
    n_passes = int(n_passes)
    if p_idx.shape != depth.shape:
        raise ValueError(f"pass_index has {p_idx.size} values, depth_um {depth.size}")
    if n_passes < 0 or (p_idx.size and (p_idx.min() < 0 or p_idx.max() >= n_passes)):
        found = f"{p_idx.min()}..{p_idx.max()}" if p_idx.size else "none"
        raise ValueError(f"pass_index: expected values in 0..{n_passes - 1}, found {found}")
    if pass_labels is not None and len(pass_labels) != n_passes:
        raise ValueError(f"pass_labels: expected {n_passes} labels, found {len(pass_labels)}")
    if tolerance_um is not None and not (np.isfinite(tolerance_um) and tolerance_um > 0):
        raise ValueError(f"tolerance_um: expected a finite value > 0 (µm), found {tolerance_um}")
    notes: list[str] = []
    finite = np.isfinite(depth)
    for r in np.flatnonzero(~finite):
        notes.append(f"{_label(int(p_idx[r]), pass_labels)}, point {int(r)}: no finite depth; "
                     "dropped")

    if depths_um is not None:
        grid = np.sort(np.asarray(depths_um, dtype=np.float64).reshape(-1))
        if grid.size == 0 or not np.all(np.isfinite(grid)):
            raise ValueError(f"depths_um: expected finite depths (µm), found {grid.tolist()}")
        if np.any(np.diff(grid) <= 0):
            raise ValueError(f"depths_um: expected distinct depths, found {grid.tolist()}")
        if tolerance_um is not None:
            tol = float(tolerance_um)
        else:
            tol = 0.5 * float(np.diff(grid).min()) if grid.size > 1 else float("inf")
        assign = _nearest(p_idx, depth, finite, grid, tol, notes, pass_labels)
    else:
        if tolerance_um is not None:
            tol = float(tolerance_um)
        else:
            found = _default_cluster_tolerance(p_idx[finite], depth[finite])
            if found is None:
                tol = 0.0
                notes.append("no depth step within any pass: depths clustered with tolerance "
                             "0 (identical motor positions only); set the tolerance or the "
                             "nominal depths")
            else:
                tol = found
        grid, assign = _cluster(p_idx, depth, finite, tol, notes, pass_labels)

    n_depths = grid.size
    index = np.full((n_passes, n_depths), -1, dtype=np.int64)
    measured = np.full((n_passes, n_depths), np.nan)
    for r in np.flatnonzero(assign >= 0):
        p, j = int(p_idx[r]), int(assign[r])
        if index[p, j] >= 0:
            notes.append(
                f"{_label(p, pass_labels)}: two points at depth {_fmt(grid[j])} (points "
                f"{int(index[p, j])} at {_fmt(measured[p, j])} and {int(r)} at "
                f"{_fmt(depth[r])}): kept the first, {POINT_STATUS[DUPLICATE_DROPPED]} "
                f"point {int(r)}"
            )
            continue
        index[p, j] = r
        measured[p, j] = depth[r]

    # scan direction of each pass (+1 toward larger depth index), from its own points
    direction = np.zeros(n_passes, dtype=np.int64)
    last = np.full(n_passes, -1, dtype=np.int64)
    for p in range(n_passes):
        rows = np.flatnonzero((p_idx == p) & (assign >= 0))
        if rows.size:
            last[p] = assign[rows[-1]]
            direction[p] = int(np.sign(assign[rows[-1]] - assign[rows[0]]))
    known = direction[direction != 0]
    default = -1 if known.size and (known < 0).sum() > (known > 0).sum() else 1
    direction[direction == 0] = default

    status = np.where(index >= 0, OK, MISSING).astype(np.int8)
    for p in range(n_passes):
        label = _label(p, pass_labels)
        empty = np.flatnonzero(index[p] < 0)
        if last[p] < 0:
            status[p, :] = PASS_CUT_SHORT
            notes.append(f"{label}: no point on the grid (cut short everywhere)")
            continue
        if empty.size == 0:
            continue
        beyond = empty > last[p] if direction[p] > 0 else empty < last[p]
        status[p, empty[beyond]] = PASS_CUT_SHORT
        n_ok = n_depths - empty.size
        if beyond.any():
            notes.append(f"{label}: cut short after {_fmt(grid[last[p]])}: {n_ok} of "
                         f"{n_depths} depths")
        if (~beyond).any():
            miss = ", ".join(_fmt(v) for v in grid[empty[~beyond]])
            notes.append(f"{label}: {n_ok} of {n_depths} depths, missing {miss}")
    return DepthGrid(depth_um=grid, index=index, status=status, measured_depth_um=measured,
                     tolerance_um=float(tol), notes=tuple(notes))


def _to_grid(values: np.ndarray, grid: DepthGrid, fill: Any) -> np.ndarray:
    """Point-ordered values (n_points, ...) → (pass, depth, ...) with ``fill`` where no point."""
    idx = grid.index
    out = np.full((*idx.shape, *values.shape[1:]), fill, dtype=values.dtype)
    have = idx >= 0
    out[have] = values[idx[have]]
    return out


def _fill_for(var: xr.Variable) -> Any:
    """The value of a cell without a point, by dtype (NaN, NaT, False, -1, '')."""
    kind = var.dtype.kind
    if kind == "f":
        return np.nan
    if kind == "M":
        return np.datetime64("NaT")
    if kind == "m":
        return np.timedelta64("NaT")
    if kind == "b":
        return False
    if kind in "iu":
        return -1
    if kind in "US":
        return ""
    return None


def points_on_grid(point_ds: xr.Dataset, grid: DepthGrid, point_dim: str = "time"
                   ) -> xr.Dataset:
    """Every variable of a per-point Dataset on ``point_dim`` (default ``"time"``: the
    points in the order :func:`depth_grid` was given them) put on (pass, depth): cells
    without a point hold NaN / NaT / False / -1 / '' by dtype (other dtypes become str).
    Variables without ``point_dim`` (the radial axis, …) are kept as they are,
    coordinates stay coordinates, attributes and encodings are kept."""
    data_vars: dict[str, xr.Variable] = {}
    coords: dict[str, xr.Variable] = {}
    for name, var in point_ds.variables.items():
        if name == point_dim:
            continue
        if point_dim in var.dims:
            if var.dims[0] != point_dim:
                var = var.transpose(point_dim, ...)
            fill = _fill_for(var)
            values = np.asarray(var.values)
            if fill is None:
                values, fill = values.astype(str), ""
            new = xr.Variable(("pass", "depth", *var.dims[1:]),
                              _to_grid(values, grid, fill), var.attrs)
            new.encoding.update(var.encoding)
            var = new
        (coords if name in point_ds.coords else data_vars)[name] = var
    return xr.Dataset(data_vars, coords=coords)
