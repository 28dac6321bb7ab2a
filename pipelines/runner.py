"""The one runner of work units: every chunk of frames, block of patterns, XANES series and
kinetics set goes through :class:`Runner`.

For each unit the runner

1. computes its identity (:func:`unit_key`: the function, its arguments tokenised by
   :func:`dask.base.tokenize` — a :class:`~operando.io.xrd.frames.FrameSource` by its files'
   path, size and mtime, an :class:`~pipelines.xrd.IntegratorSetup` by the content hash of
   its PONI, mask, dark and flat (their ``__dask_tokenize__``), arrays by content — and the
   code version);
2. returns the cached result from ``<product_dir>/.cache/units/<stream>/`` when there is
   one (a killed run resumes here);
3. otherwise runs it — on the Dask client when the flow has one, else in this process —
   retrying a transient ``OSError`` (:data:`RETRIED`) up to ``retries`` times, with at most
   ``in_flight`` units submitted at once (two per worker thread: memory stays bounded by the
   chunks in flight), and writes the result to the cache atomically as it arrives;
4. logs one line per unit with its identity (the flow's Prefect log), and counts what it
   computed and what it took from the cache (:attr:`Runner.counts`).

A unit whose worker process died under it (native code crashing on its input, or memory
running out: Dask's ``KilledWorker`` once ``distributed.scheduler.allowed-failures``
workers died running it) raises :class:`WorkerDiedError` naming what the unit reads —
the file, dataset and frames (:func:`unit_where`) — so its stream fails with that one line
and the other streams go on (a LocalCluster's nanny restarts the worker).

:meth:`Runner.mapper` gives a :data:`pipelines.stream.UnitMapper`, what the stream builders
(:func:`pipelines.peaks.build_peaks`, :func:`pipelines.confocal.build_confocal`) take.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import dask
import numpy as np
from dask.base import tokenize

from operando.io.cache import read_unit, write_unit
from pipelines.stream import UnitMapper

__all__ = ["RETRIED", "Runner", "WorkerDiedError", "call_with_retries", "map_here",
           "unit_key", "unit_where"]

log = logging.getLogger("operando.reduce")

#: errors retried (transient I/O: a network file system, a file being written); a missing
#: file or a refused permission is not transient
RETRIED = (OSError,)
NOT_RETRIED = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)


def unit_key(fn: Callable[..., Any], args: tuple[Any, ...], code: str) -> str | None:
    """The identity of ``fn(*args)`` under code version ``code`` (hex); None when an
    argument cannot be tokenised deterministically (such a unit is not cached)."""
    try:
        with dask.config.set({"tokenize.ensure-deterministic": True}):
            return tokenize(f"{fn.__module__}.{fn.__qualname__}", args, code)
    except (RuntimeError, TypeError, ValueError):
        return None


def call_with_retries(fn: Callable[..., Any], args: tuple[Any, ...], retries: int = 2,
                      delay_s: float = 0.5) -> Any:
    """``fn(*args)``, retried up to ``retries`` times (after ``delay_s``, doubling) when it
    raises a transient ``OSError``; the last error is raised. Module-level: runs on a Dask
    worker as well as here."""
    for attempt in range(retries + 1):
        try:
            return fn(*args)
        except NOT_RETRIED:
            raise
        except RETRIED as exc:
            if attempt == retries:
                raise
            logging.getLogger("operando.reduce").warning(
                "%s: %s; retry %d of %d", getattr(fn, "__name__", fn), exc, attempt + 1,
                retries)
            time.sleep(delay_s * 2 ** attempt)
    raise AssertionError("unreachable")


class WorkerDiedError(RuntimeError):
    """The worker process running a work unit died (the message names the unit's input)."""


def _describe(fn: Callable[..., Any], args: tuple[Any, ...]) -> str:
    """``integrate_chunk[200:300]``, ``fit_chunk[100 rows]``: a unit for the log."""
    ints = [a for a in args if isinstance(a, int | np.integer) and not isinstance(a, bool)]
    rows = next((len(a) for a in args if isinstance(a, np.ndarray) and a.ndim >= 2), None)
    where = (f"[{ints[0]}:{ints[1]}]" if len(ints) >= 2 else
             f"[{rows} rows]" if rows is not None else "")
    return f"{fn.__name__}{where}"


def unit_where(fn: Callable[..., Any], args: tuple[Any, ...]) -> str:
    """What a unit reads, for its error: when an argument is a frame source (it has
    ``where(start, stop)``, :meth:`operando.io.xrd.frames.FrameSource.where`) and two
    integers give the range, its file, dataset and frames; else ``unit <name>[range]``."""
    ints = [int(a) for a in args if isinstance(a, int | np.integer) and not isinstance(a, bool)]
    source = next((a for a in args if callable(getattr(a, "where", None))), None)
    if source is not None and len(ints) >= 2:
        return str(source.where(ints[0], ints[1]))
    return f"unit {_describe(fn, args)}"


#: seconds to wait for the other units in flight when one's worker died (see _co_victims)
CO_VICTIM_WAIT_S = 1.0


def _co_victims(queue: deque[_Pending]) -> list[_Pending]:
    """The units in flight (``queue``) whose worker died too. Dask counts a death against
    every unit assigned to the dying worker — running, queued behind it, or finished a few
    milliseconds earlier but not yet reported — and gives up on all that reached
    ``allowed-failures`` at the same moment, so the unit crashing the worker can be any of
    them: they are named together. Their errors arrive with the first one's; the others
    are given :data:`CO_VICTIM_WAIT_S` to finish."""
    futures = [p for p in queue if p[0] == "future"]
    if not futures:
        return []
    from distributed import wait

    try:
        wait([p[1] for p in futures], timeout=CO_VICTIM_WAIT_S)
    except Exception:  # still running (a timeout) or cancelled: not a victim
        pass
    return [p for p in futures if p[1].status == "error" and _worker_died(p[1].exception())]


def _join_wheres(wheres: list[str]) -> str:
    """``"f.h5::/d frames 0..49"``, ``"f.h5::/d frames 50..99"`` → ``"f.h5::/d frames 0..49,
    50..99"``; units of different datasets are separated by ``"; "``."""
    groups: list[tuple[str, list[str]]] = []
    for w in wheres:
        head, sep, rest = w.partition(" frames ")
        if sep and groups and groups[-1][0] == head:
            groups[-1][1].append(rest)
        else:
            groups.append((head if sep else w, [rest] if sep else []))
    return "; ".join(f"{h} frames {', '.join(r)}" if r else h for h, r in groups)


def _died_message(victims: list[_Pending], exc: BaseException) -> str:
    """The one line of a :class:`WorkerDiedError`: what the units read, what happened."""
    where = _join_wheres([unit_where(p[5], p[6]) for p in victims])
    n = getattr(exc, "allowed_failures", 0) + 1
    deaths = (f"{type(exc).__name__}: {n} worker{'s' if n > 1 else ''} died running "
              f"{'it' if len(victims) == 1 else 'each'}")
    if len(victims) == 1:
        return (f"{where}: the worker process running this unit died ({deaths}): native "
                "code crashed while reading or processing it (e.g. on damaged bytes), or "
                "the worker ran out of memory")
    return (f"{where}: the worker process running these {len(victims)} units died "
            f"({deaths}; Dask cannot tell which one crashed it): native code crashed while "
            "reading or processing one of them (e.g. on damaged bytes), or the worker ran "
            "out of memory")


def _worker_died(exc: BaseException) -> bool:
    """``exc`` says the worker running the task died (Dask's ``KilledWorker``)."""
    try:
        from distributed.scheduler import KilledWorker
    except ImportError:  # pragma: no cover - distributed is a dependency
        return False
    return isinstance(exc, KilledWorker)


#: a unit in flight: kind ("value": from the cache, "future": submitted), the value or
#: future, cache path, log name, start time, function and arguments
_Pending = tuple[str, Any, Path | None, str, float, Callable[..., Any], tuple[Any, ...]]


class Runner:
    """Runs work units (see the module docstring).

    ``cache``: the run's cache folder (None: nothing cached); ``code``: the code version in
    every key; ``client``: called once, when the first unit that is not cached is to run,
    it returns ``(client, workers)`` (:func:`pipelines.cluster.dask_client`; client None:
    in this process), so a run whose units are all cached starts no cluster; ``workers``
    bounds the units in flight; ``retries``: per unit, for a transient ``OSError``;
    ``refresh`` (default False): recompute every unit, replacing its cached result
    (``--overwrite``); ``logger``: where the per-unit lines go.
    """

    def __init__(self, cache: Path | None, code: str, *,
                 client: Callable[[], tuple[Any, int]] | None = None,
                 retries: int = 2, refresh: bool = False,
                 logger: Any = None) -> None:
        self.cache = cache
        self.refresh = refresh
        self.code = code
        self._client_factory = client
        self._client: Any = None
        #: True once the Dask client was asked for (a unit was not in the cache)
        self.client_started = False
        self.in_flight = 1
        self.retries = retries
        self.log = logger or log
        #: per stream: how many units were ``computed`` and how many came ``cached``
        self.counts: dict[str, Counter[str]] = {}
        #: per-worker set-ups (:meth:`on_workers`), run on every worker when the client starts
        self._warmups: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []

    def _get_client(self) -> Any:
        """The Dask client, started on first use (None: run here)."""
        if not self.client_started:
            self.client_started = True
            if self._client_factory is not None:
                self._client, workers = self._client_factory()
                # two units per worker: one running, one queued behind it, so a worker
                # never idles while its finished result is collected in order
                self.in_flight = 2 * max(1, workers)
                for fn, args in self._warmups:
                    self._warm(fn, args)
        return self._client

    def _warm(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        if self._client is not None:
            self._client.run(fn, *args)  # on every worker at once, outside the task graph

    def on_workers(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` once on every worker (``Client.run``), all workers in parallel,
        when the Dask client starts (now, if it has started): a per-process set-up such as
        building the integrator (:func:`pipelines.xrd.describe_integrator`), which would
        otherwise be built by each worker's first unit, one worker after the other, while
        in-order collection waits for it. Nothing is run without a client."""
        self._warmups.append((fn, args))
        if self.client_started:
            self._warm(fn, args)

    def _path(self, stream: str, fn: Callable[..., Any], key: str | None) -> Path | None:
        if self.cache is None or key is None:
            return None
        return self.cache / "units" / stream.replace(" ", "_") / f"{fn.__name__}-{key}.pkl"

    def _done(self, stream: str, what: str, path: Path | None, value: Any, name: str,
              t0: float) -> Any:
        self.counts.setdefault(stream, Counter())[what] += 1
        if what == "computed" and path is not None:
            write_unit(path, value)
        key = path.stem.rsplit("-", 1)[-1][:12] if path is not None else "uncached"
        self.log.info("%s: unit %s %s %s (%.2f s)", stream, name, key, what,
                      time.perf_counter() - t0)
        return value

    def map(self, fn: Callable[..., Any], arg_list: Iterable[tuple[Any, ...]], *,
            stream: str, cache: bool = True, local: bool = False) -> Iterator[Any]:
        """``fn(*args)`` for every ``args``, results yielded in order. ``cache`` (default
        True): take / store results in the cache; ``local`` (default False): run here even
        with a Dask client (results that do not travel, e.g. figures)."""
        queue: deque[_Pending] = deque()
        running = 0
        try:
            for args in arg_list:
                t0 = time.perf_counter()
                key = unit_key(fn, args, self.code) if cache else None
                path = self._path(stream, fn, key)
                name = _describe(fn, args)
                hit, value = (read_unit(path) if path is not None and not self.refresh
                              else (False, None))
                client = None if hit or local else self._get_client()
                if hit:
                    queue.append(("value", value, path, name, t0, fn, args))
                elif client is None:
                    value = call_with_retries(fn, args, self.retries)
                    yield from self._drain(queue, stream, 0)
                    yield self._done(stream, "computed", path, value, name, t0)
                    continue
                else:
                    queue.append(("future", client.submit(call_with_retries, fn, args,
                                                          self.retries, pure=False),
                                  path, name, t0, fn, args))
                    running += 1
                while queue and (queue[0][0] == "value" or running >= self.in_flight):
                    pending = queue.popleft()
                    running -= pending[0] == "future"
                    yield self._finish(stream, pending, queue)
            while queue:
                yield self._finish(stream, queue.popleft(), queue)
        finally:
            futures = [item for kind, item, *_ in queue if kind == "future"]
            if futures and self._client is not None:
                self._client.cancel(futures)

    def _finish(self, stream: str, pending: _Pending, queue: deque[_Pending]) -> Any:
        kind, item, path, name, t0, _fn, _args = pending
        if kind == "value":
            return self._done(stream, "cached", path, item, name, t0)
        try:
            value = item.result()
        except Exception as exc:
            if not _worker_died(exc):
                raise
            victims = [pending, *_co_victims(queue)]
            raise WorkerDiedError(_died_message(victims, exc)) from exc
        item.release()
        return self._done(stream, "computed", path, value, name, t0)

    def _drain(self, queue: deque[_Pending], stream: str, keep: int) -> Iterator[Any]:
        while len(queue) > keep:
            yield self._finish(stream, queue.popleft(), queue)

    def run(self, fn: Callable[..., Any], *args: Any, stream: str, cache: bool = True,
            local: bool = False) -> Any:
        """One unit: ``fn(*args)`` through :meth:`map`."""
        return next(iter(self.map(fn, [args], stream=stream, cache=cache, local=local)))

    def mapper(self, stream: str) -> UnitMapper:
        """A :data:`~pipelines.stream.UnitMapper` of this runner for ``stream``'s units."""
        def map_units(fn: Callable[..., Any], arg_list: Iterable[tuple[Any, ...]]
                      ) -> Iterator[Any]:
            return self.map(fn, arg_list, stream=stream)
        return map_units

    def computed(self, stream: str) -> int:
        """Units of ``stream`` run (not taken from the cache) so far."""
        return self.counts.get(stream, Counter())["computed"]


def map_here(fn: Callable[..., Any], arg_list: Iterable[tuple[Any, ...]]) -> Iterator[Any]:
    """The default :data:`~pipelines.stream.UnitMapper` (a builder called from a notebook or
    the CLI tools): a :class:`Runner` with no cache and no Dask client, so the units run
    one after another here, with the same retries and log lines as in the flow."""
    return Runner(None, "").map(fn, arg_list, stream=getattr(fn, "__name__", "units"),
                                cache=False)
