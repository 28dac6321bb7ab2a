"""Reading a cluster file: where ``operando reduce --cluster cluster.yaml`` runs its chunks.

The file is YAML in dask-jobqueue's own terms, either its configuration layout
(``jobqueue: {slurm: {cores: 8, memory: 32GB, ...}}``, as in ``~/.config/dask/jobqueue.yaml``)
or one section per batch system (``slurm: {cores: 8, ...}``), plus an optional ``scale``
section (``{jobs: 4}``, ``{workers: 8}`` or ``{adapt: {minimum_jobs: 1, maximum_jobs: 10}}``).
This module only reads the text and checks it is a mapping; what the keys mean is
dask-jobqueue's (``pipelines.cluster`` builds the cluster).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from operando.io.errors import InputFileError

__all__ = ["ClusterFileError", "read_cluster_file"]


class ClusterFileError(InputFileError):
    """A cluster file that cannot be read or is not a YAML mapping."""


def read_cluster_file(path: str | Path) -> dict[str, Any]:
    """The YAML mapping of a cluster file (keys as written).

    Raises :class:`ClusterFileError` naming the file when it is missing, is not valid YAML
    or does not hold a mapping at its top level.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ClusterFileError(f"{p}: cannot read the cluster file ({err})") from err
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ClusterFileError(f"{p}: not valid YAML ({err})") from err
    if not isinstance(data, dict):
        raise ClusterFileError(
            f"{p}: expected a YAML mapping (e.g. 'slurm: {{cores: 8, memory: 32GB}}' or "
            f"dask-jobqueue's 'jobqueue: {{slurm: {{...}}}}'), found "
            f"{type(data).__name__}")
    return data
