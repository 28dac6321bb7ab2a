"""Where the chunk work runs: a Dask ``distributed`` client, registered under a key the
Prefect tasks look up (a client is not picklable into task parameters).

:func:`dask_client` gives the flow its client: none (in this process), a LocalCluster of
worker processes, an existing scheduler's address, or a facility cluster through
dask-jobqueue.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
from collections.abc import Iterator
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

__all__ = ["WorkerMemoryTuning", "dask_client", "tune_malloc"]

#: glibc ``mallopt`` parameters (``malloc.h``)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: allocations below this come from the heap and are reused: one decompressed Eiger-4M
#: frame (HDF5's per-chunk filter buffer) is 17.9 MB
MMAP_THRESHOLD_BYTES = 64 * 2**20
#: free memory at the top of the heap kept for reuse rather than returned to the OS
TRIM_THRESHOLD_BYTES = 256 * 2**20

#: live clients by key (what the tasks receive instead of the client itself)
_CLIENTS: dict[str, Any] = {}


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


@contextlib.contextmanager
def dask_client(scheduler: str | None,
                n_workers: int | None = None) -> Iterator[tuple[str | None, int]]:
    """A Dask client for the chunk work, registered under a key the tasks look up.

    ``scheduler``: ``None``/``"none"`` runs chunks in this process (small runs, tests);
    ``"local"`` starts a LocalCluster of worker processes (one thread each; one worker per
    core, at most 4, unless ``n_workers``); anything else is the address of an existing
    scheduler (``tcp://host:8786``, e.g. a facility cluster through dask-jobqueue).
    Yields ``(key, workers)``: the key is None in-process; ``workers`` is how many chunks
    may run at once (1 in-process), which bounds the chunk tasks in flight.
    """
    if scheduler in (None, "none", "sync"):
        yield None, 1
        return
    from distributed import Client, LocalCluster

    cluster = None
    client = None
    key = None
    try:
        if scheduler == "local":
            workers = n_workers or max(1, min(os.cpu_count() or 1, 4))
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                   dashboard_address=None)
            client = Client(cluster)
        else:
            client = Client(scheduler)
        client.register_plugin(WorkerMemoryTuning())
        key = f"{scheduler}:{id(client)}"
        _CLIENTS[key] = client
        n = sum(w.get("nthreads", 1) for w in client.scheduler_info()["workers"].values())
        yield key, max(1, n)
    finally:
        if key is not None:
            _CLIENTS.pop(key, None)
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()
