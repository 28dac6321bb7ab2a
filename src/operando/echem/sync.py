"""Clock synchronisation: beamline timestamps onto the potentiostat clock.

Convention (the simulator's, :mod:`operando.simulate.clock`, so a fitted model compares
directly with the truth)::

    epoch_beamline = reference_epoch_s + offset_s + (1 + drift_ppm * 1e-6) * t_potentiostat

``reference_epoch_s`` is the potentiostat's acquisition start as a UTC epoch (s), from the
cycler file header read in its explicit timezone; ``t_potentiostat`` is ``time_s`` of the
echem dataset (s since that start); ``epoch_beamline`` a beamline timestamp (UTC epoch s).

Two ways to get a model:

* :func:`fit_clock` — both sides recorded the same trigger pulses (the beamline's per-frame
  timestamps are the pulses sent, the potentiostat's trigger input logged them on its own
  clock). Pulses may be missing on the potentiostat side and spurious ones recorded, so the
  two sequences are *matched*, never paired by index; offset and drift are then fitted by
  least squares with outlier rejection, and the fit is checked against residual tolerances.
* :func:`clock_from_timestamps` — no triggers: both clocks are taken as UTC (explicit
  timezones on both sides) plus a fixed offset.

Pure numpy; no I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np

__all__ = [
    "CLOCK_EQUATION",
    "ClockModel",
    "SyncError",
    "clock_from_timestamps",
    "fit_clock",
    "reference_epoch_from_attrs",
]

CLOCK_EQUATION = (
    "epoch_beamline = clock_reference_epoch_s + clock_offset_s "
    "+ (1 + clock_drift_ppm * 1e-6) * time_s_potentiostat"
)
#: a matched pair is an outlier when its residual exceeds this many robust sigmas …
OUTLIER_SIGMAS = 5.0
#: … and this floor (s), so a record with sub-ms jitter keeps pulses off by a millisecond
OUTLIER_FLOOR_S = 1e-3
#: matching window of a sent pulse: this fraction of the gap to its nearest neighbour
MATCH_WINDOW_FRACTION = 0.45
#: sent pulses used to find the coarse offset candidates (from the start of the overlap)
N_COARSE_PULSES = 300
#: first span of the drift bootstrap, in median trigger periods …
BOOTSTRAP_SPAN_PERIODS = 32.0
#: … grown by this factor per round until it covers the record
BOOTSTRAP_GROWTH = 4.0
#: residual samples a model keeps (for a plot from a product's attributes)
MAX_RESIDUAL_SAMPLES = 1000
#: a gap longer than this many median pulse periods starts a new burst (``bursts=True``)
BURST_GAP_PERIODS = 5.0


class SyncError(ValueError):
    """The two clocks cannot be put on one time base within the configured tolerances."""


def _iso_utc(epoch_s: float) -> str:
    if not math.isfinite(epoch_s):
        return "nan"
    return datetime.fromtimestamp(epoch_s, tz=timezone.utc).isoformat(timespec="milliseconds")


def _index_text(idx: tuple[int, ...]) -> str:
    return " ".join(str(i) for i in idx)


def _parse_index_text(text: Any) -> tuple[int, ...]:
    if isinstance(text, str):
        return tuple(int(v) for v in text.replace(",", " ").split())
    return tuple(int(v) for v in np.atleast_1d(np.asarray(text)))


def _end_runs(indices: tuple[int, ...], n: int) -> tuple[int, int]:
    """How many of the indices 0, 1, … and n − 1, n − 2, … are all in ``indices``
    (all n counted once, as leading, when every index is)."""
    have = set(indices)
    lead = 0
    while lead < n and lead in have:
        lead += 1
    trail = 0
    while trail < n - lead and n - 1 - trail in have:
        trail += 1
    return lead, trail


@dataclass(frozen=True)
class ClockModel:
    """A linear map between the beamline clock (UTC epoch s) and the potentiostat clock (s).

    ``epoch_beamline = reference_epoch_s + offset_s + (1 + drift_ppm·1e-6) · t_potentiostat``.

    ``method`` is ``"triggers"`` (fitted by :func:`fit_clock`) or ``"timestamps"``
    (:func:`clock_from_timestamps`). For a fit: ``n_matched`` trigger pulses used (inliers),
    of ``n_sent`` (beamline) and ``n_recorded`` (potentiostat); ``unmatched_sent`` are
    indices into the sent sequence with no recorded partner (missing pulses),
    ``unmatched_recorded`` indices into the recorded sequence with no sent partner
    (spurious pulses); residuals (s, beamline − model) and the 1-sigma standard errors of
    offset (s) and drift (ppm) from the least-squares covariance. NaN where not applicable.
    """

    method: str
    offset_s: float
    drift_ppm: float
    reference_epoch_s: float
    n_matched: int = 0
    n_sent: int = 0
    n_recorded: int = 0
    unmatched_sent: tuple[int, ...] = ()
    unmatched_recorded: tuple[int, ...] = ()
    rms_residual_s: float = math.nan
    max_abs_residual_s: float = math.nan
    offset_stderr_s: float = math.nan
    drift_stderr_ppm: float = math.nan
    what: str = ""
    notes: tuple[str, ...] = field(default=())
    stream: str = ""
    pulse: str = ""
    residual_time_s: tuple[float, ...] = ()
    residual_s: tuple[float, ...] = ()

    @property
    def rate(self) -> float:
        """d(epoch_beamline) / d(t_potentiostat) = 1 + drift_ppm·1e-6."""
        return 1.0 + self.drift_ppm * 1e-6

    @property
    def unmatched_ends(self) -> tuple[int, int, int, int]:
        """Pulses without a partner at the ends of the sequences: (sent before the first
        matched one, sent after the last, recorded before the first, recorded after the
        last) — runs of unmatched indices from index 0 and from the last index. Sent pulses
        beyond the record are timed by the model extrapolated, not matched (a record that
        stopped early or started late); recorded ones beyond the sent pulses have no
        acquisition (frames missing from the files, a longer acquisition's record). All
        zero for ``timestamps``."""
        return (*_end_runs(self.unmatched_sent, self.n_sent),
                *_end_runs(self.unmatched_recorded, self.n_recorded))

    def to_potentiostat(self, epoch_s: np.ndarray | float) -> np.ndarray:
        """Beamline epoch (s, UTC) -> potentiostat ``time_s`` (s since acquisition start)."""
        e = np.asarray(epoch_s, dtype=float)
        return ((e - self.reference_epoch_s) - self.offset_s) / self.rate

    def to_beamline(self, time_s: np.ndarray | float) -> np.ndarray:
        """Potentiostat ``time_s`` (s) -> beamline epoch (s, UTC)."""
        t = np.asarray(time_s, dtype=float)
        return self.reference_epoch_s + (self.offset_s + self.rate * t)

    def to_attrs(self) -> dict[str, str | float | int | np.ndarray]:
        """netCDF-safe attributes, all prefixed ``clock_`` (index lists as space-separated
        text, NaN for what does not apply; the residual samples as float arrays)."""
        return {
            "clock_method": self.method,
            "clock_equation": CLOCK_EQUATION,
            "clock_offset_s": float(self.offset_s),
            "clock_drift_ppm": float(self.drift_ppm),
            "clock_reference_epoch_s": float(self.reference_epoch_s),
            "clock_reference_utc": _iso_utc(self.reference_epoch_s),
            "clock_offset_stderr_s": float(self.offset_stderr_s),
            "clock_drift_stderr_ppm": float(self.drift_stderr_ppm),
            "clock_rms_residual_s": float(self.rms_residual_s),
            "clock_max_abs_residual_s": float(self.max_abs_residual_s),
            "clock_n_matched": int(self.n_matched),
            "clock_n_sent": int(self.n_sent),
            "clock_n_recorded": int(self.n_recorded),
            "clock_unmatched_sent": _index_text(self.unmatched_sent),
            "clock_unmatched_recorded": _index_text(self.unmatched_recorded),
            "clock_what": self.what,
            "clock_notes": "; ".join(self.notes),
            "clock_stream": self.stream,
            "clock_pulse": self.pulse,
            "clock_residual_time_s": np.asarray(self.residual_time_s, dtype=float),
            "clock_residual_s": np.asarray(self.residual_s, dtype=float),
        }

    @classmethod
    def from_attrs(cls, attrs: dict[str, Any]) -> ClockModel:
        """Rebuild a model from :meth:`to_attrs` output (e.g. a product's attributes)."""
        try:
            return cls(
                method=str(attrs["clock_method"]),
                offset_s=float(attrs["clock_offset_s"]),
                drift_ppm=float(attrs["clock_drift_ppm"]),
                reference_epoch_s=float(attrs["clock_reference_epoch_s"]),
                n_matched=int(attrs.get("clock_n_matched", 0)),
                n_sent=int(attrs.get("clock_n_sent", 0)),
                n_recorded=int(attrs.get("clock_n_recorded", 0)),
                unmatched_sent=_parse_index_text(attrs.get("clock_unmatched_sent", "")),
                unmatched_recorded=_parse_index_text(attrs.get("clock_unmatched_recorded", "")),
                rms_residual_s=float(attrs.get("clock_rms_residual_s", math.nan)),
                max_abs_residual_s=float(attrs.get("clock_max_abs_residual_s", math.nan)),
                offset_stderr_s=float(attrs.get("clock_offset_stderr_s", math.nan)),
                drift_stderr_ppm=float(attrs.get("clock_drift_stderr_ppm", math.nan)),
                what=str(attrs.get("clock_what", "")),
                notes=tuple(n for n in str(attrs.get("clock_notes", "")).split("; ") if n),
                stream=str(attrs.get("clock_stream", "")),
                pulse=str(attrs.get("clock_pulse", "")),
                residual_time_s=tuple(float(v) for v in np.atleast_1d(
                    np.asarray(attrs.get("clock_residual_time_s", []), dtype=float))),
                residual_s=tuple(float(v) for v in np.atleast_1d(
                    np.asarray(attrs.get("clock_residual_s", []), dtype=float))),
            )
        except KeyError as exc:
            raise ValueError(f"clock attributes: missing {exc.args[0]!r}; expected the "
                             "output of ClockModel.to_attrs()") from None


def reference_epoch_from_attrs(attrs: dict[str, Any], key: str = "acquisition_start_utc") -> float:
    """UTC epoch (s) of an echem dataset's acquisition start (ISO text with a UTC offset)."""
    if key not in attrs:
        raise ValueError(f"echem attributes: expected {key!r} (ISO-8601 with a UTC offset), "
                         f"found keys {sorted(attrs)}")
    text = str(attrs[key])
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"echem attribute {key!r}: expected ISO-8601 text, found {text!r}") \
            from None
    if dt.tzinfo is None:
        raise ValueError(f"echem attribute {key!r} = {text!r} has no UTC offset: a naive time "
                         "is never guessed")
    return dt.timestamp()


def clock_from_timestamps(*, reference_epoch_s: float, fixed_offset_s: float = 0.0) -> ClockModel:
    """No triggers: both clocks are absolute UTC times, plus a fixed correction.

    ``fixed_offset_s`` is *added to beamline times* (config ``sync.fixed_offset_s``):
    t_potentiostat = epoch_beamline + fixed_offset_s − reference_epoch_s, i.e. the model's
    ``offset_s = −fixed_offset_s`` and no drift. Residuals and uncertainties are NaN: nothing
    was measured.
    """
    if not (math.isfinite(reference_epoch_s) and math.isfinite(fixed_offset_s)):
        raise ValueError(f"expected finite reference_epoch_s and fixed_offset_s, found "
                         f"{reference_epoch_s!r}, {fixed_offset_s!r}")
    return ClockModel(
        method="timestamps", offset_s=-float(fixed_offset_s), drift_ppm=0.0,
        reference_epoch_s=float(reference_epoch_s), what="absolute timestamps (UTC)",
        notes=(f"sync.fixed_offset_s = {float(fixed_offset_s)!r} s added to beamline times",),
    )


# ---------------------------------------------------------------------------------------
# trigger matching


@dataclass(frozen=True)
class _Fit:
    offset_s: float  # a in s = a + b r (s relative to the reference epoch)
    rate: float  # b
    i_sent: np.ndarray  # sorted-sent indices of the inlier pairs
    j_rec: np.ndarray  # sorted-recorded indices of the inlier pairs
    residual_s: np.ndarray  # s_i − (a + b r_j) of the inlier pairs
    offset_stderr_s: float
    rate_stderr: float

    @property
    def n(self) -> int:
        return int(self.i_sent.size)


def _as_times(values: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(values, dtype=float)
    if a.ndim != 1:
        raise SyncError(f"{name}: expected a 1-D array of times (s), found shape {a.shape}")
    bad = np.flatnonzero(~np.isfinite(a))
    if bad.size:
        raise SyncError(f"{name}: expected finite times, found {float(a[bad[0]])!r} at index "
                        f"{int(bad[0])} ({bad.size} non-finite value(s))")
    return a


def _match_windows(s: np.ndarray) -> np.ndarray:
    """Matching half-window per sorted sent pulse: a fraction of the gap to its nearest
    neighbour, so a recorded pulse can never be within the window of two sent pulses."""
    gaps = np.diff(s)
    prev = np.concatenate([[np.inf], gaps])
    nxt = np.concatenate([gaps, [np.inf]])
    w = MATCH_WINDOW_FRACTION * np.minimum(prev, nxt)
    return np.where(np.isfinite(w), w, np.inf)


def _match(s: np.ndarray, win: np.ndarray, q: np.ndarray
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nearest-neighbour pairs (i into s, j into q, residual s_i − q_j) within the windows,
    at most one recorded pulse per sent pulse (the closest)."""
    if q.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0)
    k = np.searchsorted(s, q)
    left = np.clip(k - 1, 0, s.size - 1)
    right = np.clip(k, 0, s.size - 1)
    i = np.where(np.abs(s[right] - q) < np.abs(s[left] - q), right, left)
    e = s[i] - q
    ok = np.abs(e) <= win[i]
    j = np.flatnonzero(ok)
    i, e = i[ok], e[ok]
    order = np.lexsort((np.abs(e), i))
    i, j, e = i[order], j[order], e[order]
    _, first = np.unique(i, return_index=True)
    return i[first], j[first], e[first]


def _lsq(x: np.ndarray, y: np.ndarray, fit_drift: bool) -> tuple[float, float, float, float]:
    """y = a + b x by least squares: (a, b, se_a, se_b), 1-sigma standard errors.

    Solved for d = y − x = a + (b − 1) x so that b − 1 (ppm-small) keeps full precision.
    Without drift (or with fewer than 3 points) b = 1 and se_b = 0 (not fitted).
    """
    n = x.size
    d = y - x
    if not fit_drift or n < 3 or np.ptp(x) == 0:
        a = float(np.mean(d))
        se_a = float(np.std(d, ddof=1) / math.sqrt(n)) if n > 1 else math.nan
        return a, 1.0, se_a, 0.0
    xm = float(np.mean(x))
    xc = x - xm
    sxx = float(np.sum(xc**2))
    b1 = float(np.sum(xc * d) / sxx)
    a = float(np.mean(d)) - b1 * xm
    res = d - (a + b1 * x)
    s2 = float(np.sum(res**2) / (n - 2))
    se_b = math.sqrt(s2 / sxx)
    se_a = math.sqrt(s2 / n + xm**2 * s2 / sxx)
    return a, 1.0 + b1, se_a, se_b


def _robust_fit(s: np.ndarray, r: np.ndarray, win: np.ndarray, n_rec: int, a: float, b: float,
                fit_drift: bool, max_iter: int) -> _Fit:
    """Match the first ``n_rec`` recorded pulses under (a, b), then iterate least squares of
    offset (+ drift) on the inliers (|residual| <= max(5 robust sigma, 1 ms)), rematching
    with each new model, until the inlier set no longer changes."""
    prev: tuple[bytes, bytes] | None = None
    se_a = se_b = math.nan
    i = j = np.zeros(0, dtype=np.int64)
    res = np.zeros(0)
    for _ in range(max_iter):
        i, j, _e = _match(s, win, a + b * r[:n_rec])
        if i.size == 0:
            break
        x, y = r[j], s[i]
        res = y - (a + b * x)
        med = float(np.median(res))
        sigma = 1.4826 * float(np.median(np.abs(res - med)))
        inl = np.abs(res - med) <= max(OUTLIER_SIGMAS * sigma, OUTLIER_FLOOR_S)
        for _k in range(5):  # inner: refit on the inliers, re-judge every pair
            if inl.sum() == 0:
                break
            a, b, se_a, se_b = _lsq(x[inl], y[inl], fit_drift)
            res = y - (a + b * x)
            sigma = 1.4826 * float(np.median(np.abs(res[inl])))
            new = np.abs(res) <= max(OUTLIER_SIGMAS * sigma, OUTLIER_FLOOR_S)
            if np.array_equal(new, inl):
                break
            inl = new
        i, j, res = i[inl], j[inl], res[inl]
        key = (i.tobytes(), j.tobytes())
        if key == prev:
            break
        prev = key
    return _Fit(a, b, i, j, res, se_a, se_b)


def _bootstrap(s: np.ndarray, r: np.ndarray, win: np.ndarray, offset_s: float, period_s: float,
               fit_drift: bool, rate: float = 1.0) -> _Fit:
    """Fit from a coarse offset: first on a short span of the overlap (where an unknown
    drift cannot have moved pulses), then on spans grown 4× per round until the whole
    record, so a large drift over a long run is followed instead of breaking the matching
    (each extrapolation is over at most 3× the span the drift was fitted on)."""
    a, b = offset_s, rate
    start = max(float(r[0]), float(s[0]) - a)
    span = BOOTSTRAP_SPAN_PERIODS * period_s
    while True:
        n_rec = int(np.searchsorted(r, start + span, side="right"))
        if n_rec >= r.size:
            break
        fit = _robust_fit(s, r, win, n_rec, a, b, fit_drift, max_iter=3)
        if fit.n >= 2:
            a, b = fit.offset_s, fit.rate
        span *= BOOTSTRAP_GROWTH
    return _robust_fit(s, r, win, r.size, a, b, fit_drift, max_iter=20)


def _offset_candidates(s: np.ndarray, r: np.ndarray, guess_s: float, max_offset_s: float,
                       period_s: float) -> list[tuple[float, int]]:
    """Coarse offset candidates (offset, support): modes of the pairwise differences
    s_i − r_j within ±max_offset_s of the guess, from the first sent pulses of the overlap.

    Support of an offset = number of pairs whose difference lies within ±h of it
    (h = min(0.1 period, 0.5 s)); peaks closer than half a period to a stronger one are
    suppressed (non-maximum suppression).
    """
    lo_t, hi_t = r[0] - max_offset_s, r[-1] + max_offset_s
    sub = s[(s - guess_s >= lo_t) & (s - guess_s <= hi_t)][:N_COARSE_PULSES]
    if sub.size == 0:
        return []
    lo = np.searchsorted(r, sub - guess_s - max_offset_s, side="left")
    hi = np.searchsorted(r, sub - guess_s + max_offset_s, side="right")
    counts = hi - lo
    total = int(counts.sum())
    if total == 0:
        return []
    i_s = np.repeat(np.arange(sub.size), counts)
    starts = np.cumsum(counts) - counts
    j_r = lo[i_s] + (np.arange(total) - np.repeat(starts, counts))
    d = np.sort(sub[i_s] - r[j_r])
    h = min(0.1 * period_s, 0.5)
    support = (np.searchsorted(d, d + h, side="right")
               - np.searchsorted(d, d - h, side="left")).astype(float)
    radius = 0.5 * period_s
    out: list[tuple[float, int]] = []
    best = float(support.max())
    work = support.copy()
    for _ in range(256):
        k = int(np.argmax(work))
        if work[k] < max(0.5 * best, 2.0):
            break
        near = slice(int(np.searchsorted(d, d[k] - h, side="left")),
                     int(np.searchsorted(d, d[k] + h, side="right")))
        out.append((float(np.median(d[near])), int(support[k])))
        work[int(np.searchsorted(d, d[k] - radius, side="left")):
             int(np.searchsorted(d, d[k] + radius, side="right"))] = -1.0
    return out


def _check_residuals(fit: _Fit, s_raw: np.ndarray, r_raw: np.ndarray, order_s: np.ndarray,
                     order_r: np.ndarray, *, what: str, max_rms_residual_s: float,
                     max_abs_residual_s: float) -> tuple[float, float]:
    """(RMS, largest |residual|) of the fit in s; ``SyncError`` naming the config key, the
    value found and the worst pulse when either exceeds its tolerance (s)."""
    res = fit.residual_s
    rms = float(np.sqrt(np.mean(res**2)))
    worst = int(np.argmax(np.abs(res)))
    max_abs = float(abs(res[worst]))
    i_worst, j_worst = int(order_s[fit.i_sent[worst]]), int(order_r[fit.j_rec[worst]])
    worst_text = (f"worst pulse: sent #{i_worst} (beamline {_iso_utc(s_raw[i_worst])}) vs "
                  f"recorded #{j_worst} (potentiostat t = {r_raw[j_worst]:.4f} s), residual "
                  f"{res[worst]:+.4f} s")
    drift_ppm = (fit.rate - 1.0) * 1e6
    model_text = (f"fit: offset {fit.offset_s:+.4f} s, drift {drift_ppm:+.2f} ppm, "
                  f"{fit.n} pulses matched")
    if rms > max_rms_residual_s:
        raise SyncError(
            f"{what}: clock fit RMS residual {rms:.4f} s exceeds sync.max_rms_residual_s = "
            f"{max_rms_residual_s} s ({model_text}; {worst_text}). Jittery trigger input, or "
            "a trigger record from another run?"
        )
    if max_abs > max_abs_residual_s:
        raise SyncError(
            f"{what}: clock fit residual {max_abs:.4f} s exceeds sync.max_abs_residual_s = "
            f"{max_abs_residual_s} s ({model_text}; {worst_text})"
        )
    return rms, max_abs


def _resolve_period(fit: _Fit, s: np.ndarray, r: np.ndarray, win: np.ndarray,
                    cands: list[tuple[float, int]], chosen_offset_s: float, period: float,
                    fit_drift: bool, *, what: str, reference_epoch_s: float) -> list[str]:
    """The period-ambiguity check of :func:`fit_clock` (step 4); returns its notes.

    Refits from the chosen model shifted by one period (s) either way, and by the distance
    to the neighbouring strong candidates (in a periodic sequence those share the drift, so
    no second bootstrap). An alternative counts only the pulses it matches as tightly as
    the chosen fit (5 robust sigma), so a loose fit of an irregular sequence can never
    outvote it; one that matches more raises ``SyncError``.
    """
    notes: list[str] = []
    below = [c[0] for c in cands if c[0] < chosen_offset_s - 0.5 * period]
    above = [c[0] for c in cands if c[0] > chosen_offset_s + 0.5 * period]
    shifts = {-period, period}
    if below:
        shifts.add(max(below) - chosen_offset_s)
    if above:
        shifts.add(min(above) - chosen_offset_s)
    sigma = 1.4826 * float(np.median(np.abs(fit.residual_s)))
    tight = max(OUTLIER_SIGMAS * sigma, OUTLIER_FLOOR_S)
    tried = [fit.offset_s]
    for shift in sorted(shifts):
        alt = _robust_fit(s, r, win, r.size, fit.offset_s + shift, fit.rate, fit_drift,
                          max_iter=5)
        if min(abs(alt.offset_s - o) for o in tried) < 0.25 * period:
            continue  # fell back onto the chosen alignment, or one already tried
        tried.append(alt.offset_s)
        n_alt = int(np.count_nonzero(np.abs(alt.residual_s) <= tight))
        if n_alt > fit.n:
            raise SyncError(
                f"{what}: cannot resolve the trigger alignment. The pulses repeat every "
                f"~{period:.4g} s, so alignments one period apart fit almost equally; the one "
                f"nearest the potentiostat header (offset {fit.offset_s:+.3f} s, {fit.n} "
                f"pulses matched) is not the one the pulses favour (offset "
                f"{alt.offset_s:+.3f} s, {n_alt} matched). The header's acquisition start "
                f"({_iso_utc(reference_epoch_s)}) is probably off by more than half a period: "
                "check echem.timezone and the potentiostat PC clock, or give offset_guess_s."
            )
        if n_alt >= 0.5 * fit.n:
            notes.append(f"alignment offset {alt.offset_s:+.3f} s (one period away) matched "
                         f"{n_alt} pulses, the chosen one {fit.n}: resolved by the header")
    return notes


def fit_clock(
    sent_epoch_s: np.ndarray,
    recorded_time_s: np.ndarray,
    *,
    reference_epoch_s: float,
    fit_drift: bool = True,
    max_rms_residual_s: float = 0.05,
    max_abs_residual_s: float = 0.25,
    what: str = "xrd frame triggers",
    offset_guess_s: float = 0.0,
    max_offset_s: float = 60.0,
    min_matched: int = 5,
    min_match_fraction: float = 0.5,
    bursts: bool = False,
    stream: str = "",
    pulse: str = "",
) -> ClockModel:
    """Fit offset (+ drift) of the beamline clock against the potentiostat's trigger record.

    ``sent_epoch_s``: the beamline's trigger times (UTC epoch s; the per-frame timestamps of
    the reference X-ray stream, exposure start). ``recorded_time_s``: the pulses the
    potentiostat logged (s on its clock, since ``reference_epoch_s``, its acquisition start
    as UTC epoch s). Counts may differ: pulses dropped by the potentiostat input, spurious
    ones recorded. Model ``s_i − reference_epoch_s = offset + (1 + drift·1e-6) · r_j``.

    Steps (vectorised numpy):

    1. *Coarse offsets*: modes of the pairwise differences s_i − r_j within
       ±``max_offset_s`` of ``offset_guess_s`` (the header's acquisition start makes the
       offset ~0, to a second or so). A (nearly) periodic trigger sequence gives a family of
       candidates one period apart.
    2. The candidate nearest the guess is *bootstrapped*: nearest-neighbour matching (window
       0.45 × the gap to the neighbouring sent pulse), least squares of offset + drift on
       the inliers (|residual| <= max(5 robust sigma, 1 ms)), on spans of the record grown 4×
       until the whole run, then iterated to convergence. Pairs rejected as outliers and
       pulses without a partner are the unmatched (missing / spurious) pulses.
    3. *Checks*: at least ``min_matched`` pulses and ``min_match_fraction`` of the shorter
       sequence matched; RMS residual <= ``max_rms_residual_s`` and every residual <=
       ``max_abs_residual_s`` (config ``sync.max_rms_residual_s`` / ``sync.max_abs_residual_s``),
       else ``SyncError`` naming the key, the value found and the worst pulse.
    4. *Period ambiguity*: the alignments one period either side (and the neighbouring
       candidates) are refitted; if one matches more pulses (within the chosen fit's 5
       robust sigma) than the alignment nearest the header, the data and the header
       disagree — the header is off by more than about half a period: ``SyncError``.
       Equal counts are resolved by the header (noted in ``ClockModel.notes``).

    Offset and drift uncertainties (1 sigma) come from the least-squares covariance.

    ``bursts``: the pulses come in bursts (a pulse per energy point of XANES scans, a
    dead time between scans): the point period is far shorter than the header's
    uncertainty, so alignments one point apart are indistinguishable. The first pulse of
    every burst (after a gap of more than :data:`BURST_GAP_PERIODS` median periods) on
    both sides is fitted first, as above, and that model is the guess of the fit of every
    pulse. ``stream`` and ``pulse`` are recorded on the model.
    """
    s_raw = _as_times(sent_epoch_s, f"{what}: sent_epoch_s (beamline timestamps)")
    r_raw = _as_times(recorded_time_s, f"{what}: recorded_time_s (potentiostat record)")
    if not math.isfinite(reference_epoch_s):
        raise SyncError(f"{what}: reference_epoch_s must be finite, found {reference_epoch_s!r}")
    for name, v in (("max_rms_residual_s", max_rms_residual_s),
                    ("max_abs_residual_s", max_abs_residual_s), ("max_offset_s", max_offset_s)):
        if not (math.isfinite(v) and v > 0):
            raise ValueError(f"{name}: expected a finite value > 0, found {v!r}")
    min_matched = max(int(min_matched), 3 if fit_drift else 2)
    if s_raw.size < min_matched or r_raw.size < min_matched:
        raise SyncError(
            f"{what}: too few trigger pulses to fit a clock: {s_raw.size} sent (beamline) and "
            f"{r_raw.size} recorded (potentiostat); at least {min_matched} of each are needed "
            "(use sync.method 'timestamps' when there are no triggers)"
        )
    order_s = np.argsort(s_raw, kind="stable")
    order_r = np.argsort(r_raw, kind="stable")
    s = s_raw[order_s] - reference_epoch_s
    r = r_raw[order_r]
    gaps = np.diff(s)
    period = float(np.median(gaps[gaps > 0])) if np.any(gaps > 0) else math.nan
    if not (math.isfinite(period) and period > 0):
        raise SyncError(f"{what}: the {s.size} sent timestamps are all equal; expected one "
                        "per frame, increasing")
    win = _match_windows(s)
    rate_guess = 1.0
    if bursts:
        coarse = _burst_clock(s, r, reference_epoch_s, period, fit_drift=fit_drift,
                              max_rms_residual_s=max_rms_residual_s,
                              max_abs_residual_s=max_abs_residual_s, what=what,
                              offset_guess_s=offset_guess_s, max_offset_s=max_offset_s)
        if coarse is not None:
            offset_guess_s, rate_guess = coarse.offset_s, coarse.rate
            max_offset_s = min(max_offset_s, 0.5 * BURST_GAP_PERIODS * period)

    cands = _offset_candidates(s, r, offset_guess_s, max_offset_s, period)
    if not cands:
        raise SyncError(
            f"{what}: no consistent offset within ±{max_offset_s} s of the potentiostat header "
            f"(acquisition start {_iso_utc(reference_epoch_s)}): the beamline timestamps span "
            f"{s[0]:.3f} … {s[-1]:.3f} s and the potentiostat trigger record {r[0]:.3f} … "
            f"{r[-1]:.3f} s after that start. Wrong echem.timezone, or the wrong files?"
        )
    chosen = min(cands, key=lambda c: (abs(c[0] - offset_guess_s), -c[1]))
    fit = _bootstrap(s, r, win, chosen[0], period, fit_drift, rate_guess)
    n_short = min(s.size, r.size)
    n_needed = max(min_matched, math.ceil(min_match_fraction * n_short))
    if fit.n < n_needed:
        raise SyncError(
            f"{what}: only {fit.n} trigger pulses matched ({s.size} sent, {r.size} recorded; "
            f"best offset {fit.offset_s:+.3f} s from the potentiostat header "
            f"{_iso_utc(reference_epoch_s)}); expected at least {n_needed} (min_matched / "
            "min_match_fraction). Is the trigger record from this run, and echem.timezone right?"
        )
    rms, max_abs = _check_residuals(fit, s_raw, r_raw, order_s, order_r, what=what,
                                    max_rms_residual_s=max_rms_residual_s,
                                    max_abs_residual_s=max_abs_residual_s)
    drift_ppm = (fit.rate - 1.0) * 1e6
    notes = _resolve_period(fit, s, r, win, cands, chosen[0], period, fit_drift, what=what,
                            reference_epoch_s=reference_epoch_s)

    matched_s = np.zeros(s.size, dtype=bool)
    matched_s[fit.i_sent] = True
    matched_r = np.zeros(r.size, dtype=bool)
    matched_r[fit.j_rec] = True
    return ClockModel(
        method="triggers",
        offset_s=float(fit.offset_s),
        drift_ppm=float(drift_ppm) if fit_drift else 0.0,
        reference_epoch_s=float(reference_epoch_s),
        n_matched=fit.n,
        n_sent=int(s.size),
        n_recorded=int(r.size),
        unmatched_sent=tuple(sorted(int(v) for v in order_s[~matched_s])),
        unmatched_recorded=tuple(sorted(int(v) for v in order_r[~matched_r])),
        rms_residual_s=rms,
        max_abs_residual_s=max_abs,
        offset_stderr_s=float(fit.offset_stderr_s),
        drift_stderr_ppm=float(fit.rate_stderr * 1e6) if fit_drift else 0.0,
        what=what,
        notes=tuple(notes),
        stream=stream,
        pulse=pulse,
        **_residual_samples(r[fit.j_rec], fit.residual_s),
    )


def _residual_samples(t: np.ndarray, res: np.ndarray) -> dict[str, tuple[float, ...]]:
    """At most :data:`MAX_RESIDUAL_SAMPLES` (time, residual) pairs: all, or the largest
    |residual| of each of that many consecutive bins."""
    if t.size > MAX_RESIDUAL_SAMPLES:
        keep = [int(b[np.argmax(np.abs(res[b]))])
                for b in np.array_split(np.arange(t.size), MAX_RESIDUAL_SAMPLES)]
        t, res = t[keep], res[keep]
    return {"residual_time_s": tuple(float(v) for v in t),
            "residual_s": tuple(float(v) for v in res)}


def _burst_starts(t: np.ndarray) -> np.ndarray:
    """Indices (into sorted ``t``) of the first pulse of every burst: the first pulse and
    every pulse after a gap longer than :data:`BURST_GAP_PERIODS` median gaps."""
    gaps = np.diff(t)
    pos = gaps[gaps > 0]
    if pos.size == 0:
        return np.zeros(1, dtype=np.int64)
    big = np.flatnonzero(gaps > BURST_GAP_PERIODS * float(np.median(pos))) + 1
    return np.concatenate([[0], big]).astype(np.int64)


def _burst_clock(s: np.ndarray, r: np.ndarray, reference_epoch_s: float, period: float, *,
                 what: str, **kw: Any) -> ClockModel | None:
    """The clock fitted on the first pulse of every burst (``s`` relative to the
    reference epoch, both sorted); None when either side has fewer than 3 bursts or the
    bursts are not much longer than the pulse period (nothing to disambiguate)."""
    i, j = _burst_starts(s), _burst_starts(r)
    if i.size < 3 or j.size < 3:
        return None
    if float(np.median(np.diff(s[i]))) < 4 * BURST_GAP_PERIODS * period:
        return None
    return fit_clock(s[i] + reference_epoch_s, r[j], reference_epoch_s=reference_epoch_s,
                     what=f"{what} (first pulse of each burst)", min_matched=3, **kw)
