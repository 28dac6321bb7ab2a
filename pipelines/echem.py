"""The electrochemistry step: the ``echem`` config section → the run's cycler Dataset.

Orchestration only: :func:`operando.io.echem.read.read_echem` reads the cycler files,
:func:`operando.echem.segments.add_segments` labels the segments and continues the charge
across files, :func:`operando.echem.faraday.add_faraday` adds the Li content and the
Faraday-expected phase fraction. This module turns the section into their arguments.
"""

from __future__ import annotations

from typing import Any

import xarray as xr

from operando.config import EchemSection, expand_inputs
from operando.echem.faraday import add_faraday
from operando.echem.segments import add_segments
from operando.io.echem.read import read_echem

__all__ = ["faraday_options", "read_echem_section", "reader_arguments"]


def reader_arguments(section: EchemSection) -> dict[str, Any]:
    """Keyword arguments of :func:`operando.io.echem.read.read_echem` (besides the files):
    ``timezone``, ``format``, ``columns`` (the CSV column map, None when absent) and
    ``start_time`` (a CSV's start, or a BioLogic .mpr's still being written; None when
    absent)."""
    return {"timezone": section.timezone, "format": section.format,
            "columns": section.columns.column_map() if section.columns is not None else None,
            "start_time": section.start_time}


def faraday_options(section: EchemSection) -> dict[str, Any]:
    """Keyword arguments of :func:`operando.echem.faraday.add_faraday`: active mass (mg),
    molar mass (g/mol), electrons per formula unit, x0 and the capacity reference."""
    return {"active_mass_mg": section.active_mass_mg,
            "molar_mass_g_mol": section.molar_mass_g_mol,
            "electrons_per_formula_unit": section.electrons_per_formula_unit,
            "x0": section.x0, "capacity_reference": section.capacity_reference}


def read_echem_section(section: EchemSection) -> xr.Dataset:
    """Cycler files → the normalised Dataset with segments, ``x_li`` and the Faraday-expected
    fraction (dimension ``echem_time``; time in s, voltage in V, current in A, charge in C).
    """
    ds = read_echem(expand_inputs(section.files), **reader_arguments(section))
    return add_faraday(add_segments(ds), **faraday_options(section))
