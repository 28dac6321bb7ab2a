"""Helpers of the fault suite: tiny damaged inputs written by the tests themselves."""

from __future__ import annotations

from pathlib import Path

import h5py
import hdf5plugin
import numpy as np
import pytest


def write_stack(path: Path, frames: np.ndarray, *, timestamps: np.ndarray | None = None,
                dataset: str = "entry/data/data", compress: bool = True) -> Path:
    """A plain HDF5 frame stack (one frame per chunk, bitshuffle-LZ4 like an Eiger)."""
    with h5py.File(path, "w") as f:
        kw = dict(hdf5plugin.Bitshuffle(cname="lz4")) if compress else {}
        f.create_dataset(dataset, data=frames, chunks=(1, *frames.shape[1:]), **kw)
        if timestamps is not None:
            f.create_dataset("entry/data/epoch", data=timestamps)
    return path


@pytest.fixture
def frames() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.poisson(50.0, size=(8, 64, 96)).astype(np.uint32)
