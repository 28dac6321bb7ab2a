"""X-ray absorption scans: Bliss-like HDF5 and text (XDI, Athena, ROCK series)."""
