"""Where the chunk work runs: a Dask ``distributed`` client.

:func:`dask_client` gives the flow's runner its client: none (in this process), a
LocalCluster of worker processes, an existing scheduler's address, or a facility cluster
through dask-jobqueue (:class:`ClusterSpec`, read from a cluster file by
:func:`load_cluster_spec`, built by :func:`jobqueue_cluster`). Every client's workers get
:class:`WorkerMemoryTuning`.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

from operando.io.cluster import read_cluster_file
from pipelines.lifeline import sigterm_deferred

__all__ = [
    "JOBQUEUE_SYSTEMS",
    "ClusterSpec",
    "WorkerMemoryTuning",
    "cluster_spec",
    "dask_client",
    "jobqueue_cluster",
    "load_cluster_spec",
    "tune_malloc",
]

#: batch systems of dask-jobqueue: section name → cluster class in ``dask_jobqueue``
JOBQUEUE_SYSTEMS = {
    "slurm": "SLURMCluster", "pbs": "PBSCluster", "sge": "SGECluster", "lsf": "LSFCluster",
    "oar": "OARCluster", "moab": "MoabCluster", "htcondor": "HTCondorCluster",
}
#: dask-jobqueue configuration keys whose keyword argument has another name
_RENAMED_KEYS = {"name": "job_name"}

#: glibc ``mallopt`` parameters (``malloc.h``)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: allocations below this come from the heap and are reused: one decompressed Eiger-4M
#: frame (HDF5's per-chunk filter buffer) is 17.9 MB
MMAP_THRESHOLD_BYTES = 64 * 2**20
#: free memory at the top of the heap kept for reuse rather than returned to the OS
TRIM_THRESHOLD_BYTES = 256 * 2**20



def tune_malloc(mmap_threshold: int = MMAP_THRESHOLD_BYTES,
                trim_threshold: int = TRIM_THRESHOLD_BYTES) -> bool:
    """Let this process reuse its large allocations (glibc only; returns False elsewhere).

    Dask's nanny starts every worker with ``MALLOC_TRIM_THRESHOLD_=65536``
    (``distributed.nanny.pre-spawn-environ``), which also freezes glibc's mmap threshold at
    128 kB: HDF5's filter pipeline then maps, faults in page by page and unmaps a fresh
    output buffer for every compressed chunk it decodes (one 17.9 MB buffer per Eiger-4M
    frame: ~4,400 page faults a frame, as much kernel time as decompression itself).
    Raising both thresholds (``mmap_threshold`` default 64 MiB, ``trim_threshold`` default
    256 MiB) keeps those buffers on the heap, reused from frame to frame.
    """
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, int(mmap_threshold))) and bool(
        mallopt(_M_TRIM_THRESHOLD, int(trim_threshold)))


class WorkerMemoryTuning(WorkerPlugin):
    """A Dask worker plugin: :func:`tune_malloc` in every worker process, present and
    future (registered by :func:`dask_client` on every client it makes)."""

    name = "operando-worker-memory-tuning"

    def setup(self, worker: Any) -> None:
        tune_malloc()


@dataclass(frozen=True)
class ClusterSpec:
    """A facility cluster in dask-jobqueue's terms.

    ``system``: a key of :data:`JOBQUEUE_SYSTEMS` (``slurm``, ``pbs``, ...); ``options``:
    the keyword arguments of its cluster class (``cores``, ``memory``, ``queue``,
    ``walltime``, ``job_extra_directives``, ...; dask-jobqueue's configuration keys with
    ``-`` become ``_``, ``name`` becomes ``job_name``); ``jobs`` / ``workers``: how many
    batch jobs / worker processes to ask for, or ``adapt`` (``minimum_jobs``,
    ``maximum_jobs``) to let Dask scale between bounds; ``source`` names where it came
    from, for error messages.
    """

    system: str
    options: dict[str, Any] = field(default_factory=dict)
    jobs: int | None = None
    workers: int | None = None
    adapt: dict[str, int] | None = None
    source: str = "cluster spec"

    @property
    def threads(self) -> int:
        """Chunks that may run at once when the cluster is at full size (≥ 1): threads per
        job (``cores``) × jobs, or per worker process × workers."""
        cores = int(self.options.get("cores") or 1)
        processes = int(self.options.get("processes") or 1)
        if self.workers is not None:
            return max(1, self.workers * max(1, cores // processes))
        jobs = self.jobs if self.jobs is not None else (self.adapt or {}).get("maximum_jobs", 1)
        return max(1, int(jobs) * cores)


def _count(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{where}: expected a positive integer, found {value!r}")
    return value


def _scale(data: Any, where: str) -> dict[str, Any]:
    """``jobs`` / ``workers`` / ``adapt`` of a ``scale`` section (default ``jobs: 1``)."""
    if data is None:
        return {"jobs": 1}
    if not isinstance(data, Mapping) or len(data) != 1 or \
            next(iter(data)) not in ("jobs", "workers", "adapt"):
        raise ValueError(f"{where}: expected one of 'jobs: N', 'workers: N' or 'adapt: "
                         f"{{minimum_jobs: N, maximum_jobs: M}}', found {data!r}")
    (key, value), = data.items()
    if key != "adapt":
        return {key: _count(value, f"{where}.{key}")}
    if not isinstance(value, Mapping) or not value or \
            set(value) - {"minimum_jobs", "maximum_jobs"}:
        raise ValueError(f"{where}.adapt: expected minimum_jobs and/or maximum_jobs, found "
                         f"{value!r}")
    bounds = {k: _count(v, f"{where}.adapt.{k}") for k, v in value.items()}
    if bounds.get("minimum_jobs", 0) > bounds.get("maximum_jobs", bounds.get("minimum_jobs")):
        raise ValueError(f"{where}.adapt: minimum_jobs > maximum_jobs ({bounds})")
    return {"adapt": bounds}


def cluster_spec(data: Mapping[str, Any], source: str = "cluster spec") -> ClusterSpec:
    """A :class:`ClusterSpec` from a cluster file's mapping (see
    :mod:`operando.io.cluster`): dask-jobqueue's configuration layout
    (``jobqueue: {slurm: {...}}``) or one batch-system section (``slurm: {...}``), and an
    optional ``scale`` section. ``source`` (the file) starts every error message."""
    body = dict(data)
    scale = _scale(body.pop("scale", None), f"{source}: scale")
    if set(body) == {"jobqueue"}:
        body = body["jobqueue"]
        where = f"{source}: jobqueue"
        if not isinstance(body, Mapping):
            raise ValueError(f"{where}: expected a mapping of batch systems, found {body!r}")
    else:
        where = source
    systems = [k for k in body if k in JOBQUEUE_SYSTEMS]
    other = sorted(set(body) - set(systems))
    if len(systems) != 1 or other:
        raise ValueError(
            f"{where}: expected exactly one batch-system section (one of "
            f"{', '.join(JOBQUEUE_SYSTEMS)}) and 'scale', found "
            f"{', '.join(map(str, body)) or 'none'}")
    system = systems[0]
    section = body[system] or {}
    if not isinstance(section, Mapping):
        raise ValueError(f"{where}.{system}: expected a mapping of dask-jobqueue options, "
                         f"found {section!r}")
    options = {_RENAMED_KEYS.get(str(k), str(k).replace("-", "_")): v
               for k, v in section.items()}
    return ClusterSpec(system=system, options=options, source=source, **scale)


def load_cluster_spec(path: str | Path) -> ClusterSpec:
    """The :class:`ClusterSpec` of a cluster file (YAML, read by
    :func:`operando.io.cluster.read_cluster_file`)."""
    return cluster_spec(read_cluster_file(path), source=str(path))


def jobqueue_cluster(spec: ClusterSpec) -> Any:
    """The dask-jobqueue cluster of ``spec``, with no job submitted yet (its
    ``job_script()`` shows what would be). The scheduler runs in this process; no
    dashboard unless ``scheduler_options`` asks for one. A missing dask-jobqueue or an
    option its cluster class does not take is a ``ValueError`` naming ``spec.source``."""
    try:
        import dask_jobqueue
    except ImportError as err:
        raise ValueError(f"{spec.source}: a {spec.system} cluster needs dask-jobqueue "
                         "(pip install 'operando[cluster]')") from err
    cls = getattr(dask_jobqueue, JOBQUEUE_SYSTEMS[spec.system])
    options = dict(spec.options)
    options["scheduler_options"] = {"dashboard_address": None,
                                    **(options.get("scheduler_options") or {})}
    try:
        return cls(**options)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{spec.source}: {spec.system}: dask-jobqueue's "
                         f"{cls.__name__} rejects these options ({err})") from err


@contextlib.contextmanager
def dask_client(scheduler: str | ClusterSpec | None,
                n_workers: int | None = None) -> Iterator[tuple[Any, int]]:
    """A Dask client for the chunk work, closed (with its cluster) at the end.

    ``scheduler``: ``None``/``"none"`` runs chunks in this process (small runs, tests);
    ``"local"`` starts a LocalCluster of worker processes (one thread each; one worker per
    core, at most 4, unless ``n_workers``); a :class:`ClusterSpec` submits batch jobs
    through dask-jobqueue (scaled as the spec says, stopped at the end); anything else is
    the address of an existing scheduler (``tcp://host:8786``).
    Yields ``(client, workers)``: the client is None in-process; ``workers`` is how many
    chunks may run at once (1 in-process), which bounds the chunk tasks in flight.
    """
    if scheduler is None or (isinstance(scheduler, str)
                             and scheduler in ("none", "sync")):
        yield None, 1
        return
    from distributed import Client, LocalCluster

    cluster = None
    client = None
    expected = 0
    try:
        with sigterm_deferred():  # a cluster cut in half while starting is never closed
            if isinstance(scheduler, ClusterSpec):
                cluster = jobqueue_cluster(scheduler)
                if scheduler.adapt is not None:
                    cluster.adapt(**scheduler.adapt)
                elif scheduler.workers is not None:
                    cluster.scale(n=scheduler.workers)
                else:
                    cluster.scale(jobs=scheduler.jobs or 1)
                expected = scheduler.threads
                client = Client(cluster)
            elif scheduler == "local":
                workers = n_workers or max(1, min(os.cpu_count() or 1, 4))
                cluster = LocalCluster(n_workers=workers, threads_per_worker=1,
                                       processes=True, dashboard_address=None)
                client = Client(cluster)
            else:
                client = Client(scheduler)
            client.register_plugin(WorkerMemoryTuning())
            n = sum(w.get("nthreads", 1)
                    for w in client.scheduler_info()["workers"].values())
        yield client, max(1, n, expected)
    finally:
        with sigterm_deferred():  # nor one cut in half while closing
            if client is not None:
                client.close()
            if cluster is not None:
                cluster.close()
