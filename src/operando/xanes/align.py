"""Energy alignment of XANES scans on their reference-foil channel.

Convention: a scan recorded on the monochromator axis ``E`` is *aligned* by adding its
shift ``s`` (eV): ``E_aligned = E + s``. For a mono that reads ``offset`` too high
(``E = E_true + offset``) a correct alignment gives ``s = −offset``.

The reference foil of one scan is noisy (it sees the beam after the sample), so each
scan's foil edge is not taken from its own derivative alone. Instead:

1. the foils are normalised (:func:`operando.xanes.normalize.normalize`, Larch rules);
2. a reference foil is built: the mean normalised foil of all good scans
   (``mode="reference_e0"``) or one chosen scan (``mode="reference_scan"``);
3. each scan's relative shift δ_k minimises Σ_E [n_k(E − δ) − n_ref(E)]² over the window
   ``E0_ref + window_eV`` (n = normalised foil μ; a coarse grid over ±``max_shift_eV``,
   a parabola through the best three, then two Gauss–Newton steps; batched over scans);
4. ``mode="reference_e0"``: s_k = E0_tab − E0(mean foil) + δ_k, with E0 the maximum of
   dμ/dE (:func:`operando.xanes.normalize.find_e0`, refined below the grid spacing by
   a parabola, :func:`operando.xanes.normalize.refine_e0`) and E0_tab the foil's tabulated edge
   (config ``reference_e0_eV``); ``mode="reference_scan"``: s_k = δ_k (the reference
   scan keeps its axis). ``foil_e0`` = E0 of each scan's foil on the recorded axis.

Pure numpy; no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from operando.xanes.normalize import QC_OK, find_e0, normalize, refine_e0

__all__ = ["AlignResult", "align_scans", "edge_shift", "energy_shift"]

AlignMode = Literal["reference_e0", "reference_scan"]
AlignArray = Literal["dmude", "norm"]


def _as_array(e: np.ndarray, norm: np.ndarray, array: AlignArray) -> np.ndarray:
    """The curve matched: normalised μ, or its derivative dμ/dE (1/eV; Larch's default)."""
    if array == "norm":
        return norm
    if array == "dmude":
        return np.gradient(norm, e, axis=-1)
    raise ValueError(f"alignment array must be 'dmude' or 'norm', found {array!r}")


@dataclass
class AlignResult:
    """Per scan (n,): ``shift`` (eV, add to the recorded energy), ``relative_shift`` (eV,
    δ against the reference foil), ``foil_e0`` (eV, recorded axis), ``foil_ok``; and the
    reference foil's E0 on the recorded axis (``reference_foil_e0``), the target
    (``target_e0``: tabulated E0, or the reference scan's foil E0), ``mode``,
    ``reference_index`` (−1 for the mean foil) and ``monochromator_offset`` (eV, recorded −
    true = −median shift; NaN for ``reference_scan``)."""

    shift: np.ndarray
    relative_shift: np.ndarray
    foil_e0: np.ndarray
    foil_ok: np.ndarray
    reference_foil_e0: float
    target_e0: float
    mode: str
    reference_index: int
    monochromator_offset: float


def _shifted(e: np.ndarray, y: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Linear interpolation of rows y (n, m) on the shared grid e at points ``at`` (n, w)."""
    j = np.clip(np.searchsorted(e, at) - 1, 0, e.size - 2)
    t = (at - e[j]) / (e[j + 1] - e[j])
    rows = np.arange(y.shape[0])[:, None]
    return y[rows, j] * (1 - t) + y[rows, j + 1] * t


def edge_shift(
    energy: np.ndarray,
    spectra: np.ndarray,
    ref_energy: np.ndarray,
    ref_spectrum: np.ndarray,
    *,
    window_eV: tuple[float, float],
    max_shift_eV: float = 10.0,
    step_eV: float = 0.05,
) -> np.ndarray:
    """Shift δ (eV, one per row) so that ``spectra(E − δ)`` best matches ``ref_spectrum(E)``
    over the absolute energy window ``window_eV`` (least squares; batched over rows).

    ``energy`` (m,) shared by ``spectra`` (n, m) (NaN rows give NaN); ``ref_energy``,
    ``ref_spectrum`` the reference on its own grid. So ``energy + δ`` is the spectra's
    axis aligned to the reference's.
    """
    e = np.asarray(energy, dtype=float)
    y = np.atleast_2d(np.asarray(spectra, dtype=float))
    er = np.asarray(ref_energy, dtype=float)
    yr = np.asarray(ref_spectrum, dtype=float)
    sel = (er >= window_eV[0]) & (er <= window_eV[1]) & np.isfinite(yr)
    lo, hi = e[0] + max_shift_eV, e[-1] - max_shift_eV
    sel &= (er >= lo) & (er <= hi)
    if sel.sum() < 5:
        raise ValueError(f"edge_shift: fewer than 5 reference points in the window "
                         f"{window_eV} eV within the scan range {e[0]:.1f}-{e[-1]:.1f} eV "
                         f"(less ±{max_shift_eV} eV)")
    x, target = er[sel], yr[sel]
    n = y.shape[0]
    bad = ~np.isfinite(y).all(axis=1)
    y = np.where(bad[:, None], 0.0, y)
    grid = np.arange(-max_shift_eV, max_shift_eV + 0.5 * step_eV, step_eV)
    ssr = np.empty((n, grid.size))
    for k, s in enumerate(grid):
        at = np.broadcast_to(x - s, (n, x.size))
        ssr[:, k] = ((_shifted(e, y, at) - target) ** 2).sum(axis=1)
    kbest = np.clip(ssr.argmin(axis=1), 1, grid.size - 2)
    rows = np.arange(n)
    a, b, c = ssr[rows, kbest - 1], ssr[rows, kbest], ssr[rows, kbest + 1]
    den = a - 2 * b + c
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(den > 0, 0.5 * (a - c) / den, 0.0)
    delta = grid[kbest] + np.clip(frac, -1, 1) * step_eV
    h = 1e-3
    for _ in range(2):  # Gauss–Newton on δ
        at = x[None, :] - delta[:, None]
        r = _shifted(e, y, at) - target
        g = -(_shifted(e, y, at + h) - _shifted(e, y, at - h)) / (2 * h)
        with np.errstate(invalid="ignore", divide="ignore"):
            step = -(r * g).sum(axis=1) / (g * g).sum(axis=1)
        delta = delta + np.clip(np.nan_to_num(step), -step_eV, step_eV)
    return np.where(bad, np.nan, delta)


def energy_shift(
    energy: np.ndarray,
    mu: np.ndarray,
    ref_energy: np.ndarray,
    ref_mu: np.ndarray,
    *,
    window_eV: tuple[float, float] = (-15.0, 35.0),
    max_shift_eV: float = 10.0,
    array: AlignArray = "dmude",
) -> float:
    """Shift (eV) to add to ``energy`` so one foil spectrum matches a reference foil.

    Both μ(E) are normalised (Larch defaults) and matched by least squares over
    ``E0_ref + window_eV`` (E0_ref: derivative maximum of the reference), comparing
    ``array`` (dμ/dE by default, as Larch ``energy_align``, or ``norm``). The coarse
    search covers ±``max_shift_eV`` around the difference of the two E0s.
    """
    e = np.asarray(energy, dtype=float)
    er = np.asarray(ref_energy, dtype=float)
    n1 = normalize(e, mu)
    n2 = normalize(er, ref_mu)
    if not (n1.ok[0] and n2.ok[0]):
        raise ValueError(f"energy_shift: cannot normalise the "
                         f"{'spectrum' if not n1.ok[0] else 'reference'}: "
                         f"{n1.qc_reason[0] or n2.qc_reason[0]}")
    guess = float(n2.e0[0] - n1.e0[0])
    e0r = float(n2.e0[0])
    delta = edge_shift(e + guess, _as_array(e, n1.norm, array), er,
                       _as_array(er, n2.norm[0], array),
                       window_eV=(e0r + window_eV[0], e0r + window_eV[1]),
                       max_shift_eV=max_shift_eV)
    return guess + float(delta[0])


def align_scans(
    energy: np.ndarray,
    foil_mu: np.ndarray,
    *,
    mode: AlignMode = "reference_e0",
    reference_e0_eV: float | None = None,
    reference_index: int = 0,
    window_eV: tuple[float, float] = (-15.0, 35.0),
    max_shift_eV: float = 10.0,
    array: AlignArray = "norm",
    qc_flag: np.ndarray | None = None,
) -> AlignResult:
    """Per-scan energy shifts from the reference-foil channel (see the module docstring).

    ``energy`` (m,) recorded axis (eV) shared by the scans; ``foil_mu`` (n, m) raw foil
    μ = ln(It/Iref). ``reference_e0_eV`` is required for ``mode="reference_e0"``;
    ``reference_index`` names the reference scan (row) for ``"reference_scan"``.
    ``array``: the curve matched (``norm`` by default: a single scan's foil behind the
    sample is noisy, and its derivative more so). ``qc_flag`` (n,) marks scans to leave
    out of the reference (their shifts are still computed when their foil normalises).
    """
    e = np.asarray(energy, dtype=float)
    mu = np.atleast_2d(np.asarray(foil_mu, dtype=float))
    n = mu.shape[0]
    nr = normalize(e, mu)
    ok = nr.ok.copy()
    use = ok if qc_flag is None else ok & (np.asarray(qc_flag) == QC_OK)
    if not use.any():
        raise ValueError("align_scans: no scan has a usable reference-foil edge "
                         f"(reasons: {sorted(set(nr.qc_reason))})")
    if mode == "reference_e0":
        if reference_e0_eV is None:
            raise ValueError("align_scans: mode 'reference_e0' needs reference_e0_eV (the "
                             "foil's tabulated edge)")
        ref = np.nanmean(nr.norm[use], axis=0)
        ref_e0 = refine_e0(e, ref, find_e0(e, ref))
        ref_index = -1
    elif mode == "reference_scan":
        if not 0 <= reference_index < n:
            raise ValueError(f"align_scans: reference_index {reference_index} outside 0..{n - 1}")
        if not ok[reference_index]:
            raise ValueError(f"align_scans: the reference scan (index {reference_index}) has no "
                             f"usable foil edge: {nr.qc_reason[reference_index]}")
        ref = nr.norm[reference_index]
        ref_e0 = float(nr.e0[reference_index])
        ref_index = reference_index
    else:
        raise ValueError(f"align_scans: mode must be 'reference_e0' or 'reference_scan', found "
                         f"{mode!r}")
    delta = edge_shift(e, _as_array(e, np.where(ok[:, None], nr.norm, np.nan), array), e,
                       _as_array(e, ref, array),
                       window_eV=(ref_e0 + window_eV[0], ref_e0 + window_eV[1]),
                       max_shift_eV=max_shift_eV)
    if mode == "reference_scan":
        delta = delta - delta[ref_index]
        shift = delta
        target = ref_e0
        offset = float("nan")
    else:
        target = float(reference_e0_eV)  # type: ignore[arg-type]
        shift = target - ref_e0 + delta
        offset = float(-np.nanmedian(shift[use]))
    return AlignResult(shift=shift, relative_shift=delta, foil_e0=ref_e0 - delta, foil_ok=ok,
                       reference_foil_e0=float(ref_e0), target_e0=target, mode=mode,
                       reference_index=ref_index, monochromator_offset=offset)
