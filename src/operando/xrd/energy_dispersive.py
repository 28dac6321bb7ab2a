"""Energy-dispersive diffraction (EDXRD): MCA spectra at a fixed scattering angle → I(q).

A solid-state detector at a fixed scattering angle 2θ records counts per MCA channel.
Channel ``ch`` (0-based) has the photon energy given by the detector calibration::

    E(ch) = a + b·ch + c·ch²                         [keV]

and Bragg's law with λ = hc / E gives, for a photon of energy E scattered by 2θ::

    d = hc / (2 E sin θ)                             [Å]
    q = 2π / d = 4π E sin θ / hc                     [Å⁻¹]

with hc = :data:`HC_KEV_A` = 12.398419843320026 keV·Å (CODATA). So each channel is one
q value: the pattern is kept on the channels' own q values (no rebinning), which are
increasing when the calibration is.

Counting statistics are Poisson: σ(counts) = √max(counts, 1) (an empty channel still has
an uncertainty of one count), and a pattern normalised by a monitor or count time k is
``counts / k`` ± ``σ / k`` — the same model as the angle-dispersive integration
(:mod:`operando.xrd.integrate`). Pure numpy: no file I/O.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from operando.constants import HC_KEV_A

__all__ = ["HC_KEV_A", "channel_energy_keV", "ed_d", "ed_patterns", "ed_q"]


def channel_energy_keV(
    channels: np.ndarray | Sequence[float], calibration_keV: Sequence[float] | np.ndarray
) -> np.ndarray:
    """Photon energy (keV) of MCA ``channels`` (0-based channel numbers, any shape).

    ``calibration_keV`` is ``[a, b]`` or ``[a, b, c]`` (keV, keV/channel, keV/channel²):
    E = a + b·ch + c·ch². Returns float64 of the shape of ``channels``.
    """
    cal = np.asarray(calibration_keV, dtype=np.float64).reshape(-1)
    if cal.size not in (2, 3) or not np.all(np.isfinite(cal)):
        raise ValueError(
            f"energy calibration: expected 2 or 3 finite coefficients [a, b(, c)] in keV "
            f"(E = a + b ch + c ch^2), found {cal.tolist()}"
        )
    a, b = cal[0], cal[1]
    c = cal[2] if cal.size == 3 else 0.0
    ch = np.asarray(channels, dtype=np.float64)
    return a + b * ch + c * ch * ch


def _sin_theta(two_theta_deg: float) -> float:
    tth = float(two_theta_deg)
    if not (np.isfinite(tth) and 0.0 < tth < 180.0):
        raise ValueError(f"two_theta_deg: expected a scattering angle in (0, 180) degree, "
                         f"found {two_theta_deg}")
    return float(np.sin(np.deg2rad(tth) / 2.0))


def ed_q(energy_keV: np.ndarray | float, two_theta_deg: float) -> np.ndarray:
    """Scattering vector q = 4π E sin θ / hc (Å⁻¹) of photons of ``energy_keV`` (keV)
    scattered by ``two_theta_deg`` (degree, 0 < 2θ < 180); hc = :data:`HC_KEV_A` keV·Å."""
    return 4.0 * np.pi * np.asarray(energy_keV, dtype=np.float64) * _sin_theta(
        two_theta_deg) / HC_KEV_A


def ed_d(energy_keV: np.ndarray | float, two_theta_deg: float) -> np.ndarray:
    """d-spacing d = hc / (2 E sin θ) (Å) diffracting photons of ``energy_keV`` (keV) into
    ``two_theta_deg`` (degree, 0 < 2θ < 180); hc = :data:`HC_KEV_A` keV·Å.

    E ≤ 0 gives inf / negative values (no warning): drop such channels first.
    """
    e = np.asarray(energy_keV, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return HC_KEV_A / (2.0 * e * _sin_theta(two_theta_deg))


def ed_patterns(
    counts: np.ndarray,
    energy_keV: np.ndarray,
    two_theta_deg: float,
    *,
    normalization: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Spectra → patterns on the channels' q values.

    ``counts`` (n, n_channels) are raw MCA counts, ``energy_keV`` (n_channels,) the
    channel energies (keV, :func:`channel_energy_keV`), ``two_theta_deg`` the fixed
    scattering angle (degree), ``normalization`` (n,) an optional divisor per spectrum
    (monitor counts, count time s, ...; finite and > 0).

    Returns ``(q, intensity, sigma)``: ``q`` (m,) float64 in Å⁻¹, increasing;
    ``intensity = counts / normalization`` and ``sigma = √max(counts, 1) / normalization``
    (Poisson), both (n, m) float32. Channels with E ≤ 0 (below the calibration's zero)
    are dropped, so m ≤ n_channels; the remaining energies must be strictly monotonic (a
    quadratic calibration that turns over is an error). A decreasing calibration is
    reversed so that q increases.
    """
    c = np.asarray(counts, dtype=np.float64)
    e = np.asarray(energy_keV, dtype=np.float64).reshape(-1)
    if c.ndim != 2:
        raise ValueError(f"counts: expected spectra (n, n_channels), found shape {c.shape}")
    if c.shape[1] != e.size:
        raise ValueError(f"counts have {c.shape[1]} channels, energy_keV has {e.size} values")
    if not np.all(np.isfinite(e)):
        raise ValueError("energy_keV: expected finite channel energies, found NaN/inf")
    keep = np.flatnonzero(e > 0.0)
    if keep.size == 0:
        raise ValueError(f"energy_keV: no channel above 0 keV (range {e.min():g}.."
                         f"{e.max():g} keV); check the energy calibration")
    ek = e[keep]
    step = np.diff(ek)
    if ek.size > 1 and not (np.all(step > 0) or np.all(step < 0)):
        bad = int(np.flatnonzero(np.sign(step) != np.sign(step[0]))[0])
        raise ValueError(
            "energy calibration: expected channel energies strictly monotonic, found a turn "
            f"or a repeat at channel {int(keep[bad + 1])} ({ek[bad]:g} -> {ek[bad + 1]:g} keV)"
        )
    if ek.size > 1 and step[0] < 0:
        keep = keep[::-1]
    if normalization is None:
        k = np.ones(c.shape[0])
    else:
        k = np.asarray(normalization, dtype=np.float64).reshape(-1)
        if k.shape != (c.shape[0],):
            raise ValueError(f"normalization has {k.size} values for {c.shape[0]} spectra "
                             "(one divisor per spectrum)")
        if not np.all(np.isfinite(k) & (k > 0)):
            raise ValueError("normalization must be finite and > 0 for every spectrum")
    sel = c[:, keep]
    q = ed_q(e[keep], two_theta_deg)
    intensity = (sel / k[:, None]).astype(np.float32)
    sigma = (np.sqrt(np.maximum(sel, 1.0)) / k[:, None]).astype(np.float32)
    return q, intensity, sigma
