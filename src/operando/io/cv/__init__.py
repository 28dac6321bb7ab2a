"""Cyclic voltammetry: NOVA, EC-Lab, CSV and SECCM map files."""
