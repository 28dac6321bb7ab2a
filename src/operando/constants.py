"""Physical constants used across the package (CODATA values via :mod:`scipy.constants`).

Units are in the names: ``HC_KEV_A`` is h·c in keV·Å, so a photon of energy E (keV) has
wavelength λ = HC_KEV_A / E (Å); ``FARADAY_C_PER_MOL`` in C mol⁻¹;
``GAS_CONSTANT_J_PER_MOL_K`` in J mol⁻¹ K⁻¹; ``MAH_TO_C`` in C per mA·h;
``RANDLES_SEVCIK_PSI_P`` is dimensionless.
"""

from __future__ import annotations

from scipy import constants as _c

__all__ = ["FARADAY_C_PER_MOL", "GAS_CONSTANT_J_PER_MOL_K", "HC_KEV_A", "MAH_TO_C",
           "RANDLES_SEVCIK_PSI_P"]

#: h·c in keV·Å (E[keV] × λ[Å] = 12.3984...).
HC_KEV_A: float = _c.h * _c.c / (_c.e * 1e3) * 1e10
#: Faraday constant F = N_A·e (C mol⁻¹).
FARADAY_C_PER_MOL: float = _c.N_A * _c.e
#: Molar gas constant R (J mol⁻¹ K⁻¹).
GAS_CONSTANT_J_PER_MOL_K: float = _c.R
#: Charge in one milliampere-hour: 1 mA·h = 1e-3 A × 3600 s = 3.6 C.
MAH_TO_C: float = 3.6
#: Reversible dimensionless peak current ψ_p of Randles–Sevcik (semi-infinite planar
#: diffusion): i_p = ψ_p n F A C √(n F v D / R T).
RANDLES_SEVCIK_PSI_P: float = 0.4463
