"""Where the chunk work runs: a Dask ``distributed`` client, registered under a key the
Prefect tasks look up (a client is not picklable into task parameters).

:func:`dask_client` gives the flow its client: none (in this process), a LocalCluster of
worker processes, an existing scheduler's address, or a facility cluster through
dask-jobqueue.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

__all__ = ["dask_client"]

#: live clients by key (what the tasks receive instead of the client itself)
_CLIENTS: dict[str, Any] = {}


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
