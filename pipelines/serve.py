"""The beamline service: a beamtime folder's runs reduced as they are acquired and changed.

A **run** is a run config found under the beamtime folder by one of
:attr:`ServeOptions.patterns` (default ``*/run.yaml``: one folder per run); every file in the
config's folder (hidden files, the run's output directory and the end marker left out) is
its raw data. A run is

- ``live`` while its raw files change: the newest one is younger than ``quiet_s`` and no
  end-of-run marker (``end_marker``, default ``END``) is in its folder. It is reduced when
  it ends (quiet for ``quiet_s``, or the marker appears);
- reduced through :func:`pipelines.reduce.reduce_run` under the run's lock
  (:func:`pipelines.lock.run_lock`) whenever its config or raw files change: the cached
  flow recomputes only the products whose inputs or sections changed;
- ``failed`` when the reduction failed (the reason kept; the traceback in its
  ``reduce.log``): retried on its next change, the other runs go on;
- ``locked`` while another reducer holds its lock (retried on the next tick).

What each run looked like when it was last handled, and what came of it, is remembered
between passes in ``<beamtime>/.operando/serve-state.json``
(:mod:`operando.io.serve_state`; :attr:`ServeOptions.state_file`): a pass of
``serve --once`` (cron, the scheduled deployment) neither retries a failed run whose files,
config and operando code are unchanged, nor starts the flow of a finished run whose
products are all still current (:func:`pipelines.cache.run_status`: a product deleted or
gone stale is reduced again).

:class:`Beamtime` holds these states; :meth:`Beamtime.sweep` is one pass over every run
(``operando serve --once``, a cron job, the scheduled deployment), :meth:`Beamtime.serve`
watches the folder (OS file events through :mod:`operando.io.watch`) and sweeps the runs
that changed, plus the live ones when their quiet time may have run out.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from operando.config import ConfigError, RunConfig, load_config
from operando.io.cache import file_stamp
from operando.io.serve_state import read_serve_state, write_serve_state
from operando.io.timestamps import epoch_to_iso
from operando.io.watch import discover_configs, folder_stamp, watch_changes
from pipelines.cache import code_version, run_status
from pipelines.lock import LockHeld, run_lock

__all__ = ["DEFAULT_END_MARKER", "DEFAULT_PATTERNS", "Beamtime", "RunState", "ServeOptions"]

DEFAULT_PATTERNS = ("*/run.yaml",)
DEFAULT_END_MARKER = "END"
#: the service's memory between passes, relative to the beamtime folder
DEFAULT_STATE_FILE = ".operando/serve-state.json"

log = logging.getLogger("operando.serve")


@dataclass(frozen=True)
class ServeOptions:
    """How a beamtime folder is served.

    ``patterns``: globs (relative to the beamtime folder) of the run configs;
    ``end_marker``: the file name that ends a run; ``quiet_s``: a run whose raw files have
    not changed for this long has ended; ``scheduler``: where the chunks run
    (:func:`pipelines.cluster.dask_client`); ``lock_wait_s``: how long to wait for a run
    locked by another reducer before trying again on a later pass; ``tick_s``: how often
    the watch wakes without a file event (quiet timers, locked runs); ``live``: reduce a
    live run as its frames, scans and points complete (products marked ``complete = 0``),
    not only at its end; ``state_file``: where the runs' states are remembered between
    passes (relative to the beamtime folder; None: no memory, every pass starts afresh);
    ``retry_failed``: retry the runs remembered as failed even when nothing changed (e.g.
    after a disk was freed or a scheduler came back)."""

    patterns: tuple[str, ...] = DEFAULT_PATTERNS
    end_marker: str = DEFAULT_END_MARKER
    quiet_s: float = 60.0
    scheduler: Any = "local"
    lock_wait_s: float = 0.0
    tick_s: float = 2.0
    live: bool = True
    state_file: str | None = DEFAULT_STATE_FILE
    retry_failed: bool = False


@dataclass
class RunState:
    """One run as the service sees it: ``state`` (new / live / reduced / up to date /
    failed / invalid / locked), the newest change of its files (epoch s), the products
    and their status, the failures so far and the last reason."""

    config: Path
    name: str = ""
    state: str = "new"
    last_change: float = 0.0
    products: dict[str, str] = field(default_factory=dict)
    failures: int = 0
    reason: str = ""
    reductions: int = 0
    #: stream → items (frames, scans, points) covered by the last live pass
    live_items: dict[str, int] = field(default_factory=dict)
    #: what the run looked like when it was last handled (config, raw files, marker), as
    #: plain JSON values
    done_key: list[Any] | None = None
    #: the operando code version it was last handled with (a new version retries it)
    code: str = ""
    #: restored from the service's memory (its products are checked before it is skipped)
    remembered: bool = False

    #: the fields kept in the service's memory
    MEMORY = ("name", "state", "last_change", "products", "failures", "reason",
              "reductions", "done_key", "code")

    def record(self) -> dict[str, Any]:
        """What the service's memory keeps of this run."""
        return {k: getattr(self, k) for k in self.MEMORY}

    @classmethod
    def restore(cls, config: Path, rec: dict[str, Any]) -> RunState:
        """The run as remembered; a run that was live (or had not been handled) starts as
        new."""
        st = cls(config)
        for k in cls.MEMORY:
            if k in rec:
                setattr(st, k, rec[k])
        if st.state in ("new", "live", "locked"):
            st.state, st.done_key = "new", None
        st.remembered = True
        return st

    def row(self) -> tuple[str, str, str, str, str]:
        """(run, state, last change, products, failures) for the status table."""
        prods = ", ".join(f"{s} {lab}" for s, lab in self.products.items())
        fails = f"{self.failures}: {self.reason}" if self.failures else self.reason
        return (self.name or self.config.parent.name, self.state,
                epoch_to_iso(self.last_change) if self.last_change else "", prods, fails)


def _items(counts: dict[str, int]) -> str:
    """``xrd 12, xanes 3`` (items covered per stream)."""
    return ", ".join(f"{s} {n}" for s, n in counts.items())


class Beamtime:
    """The runs of a beamtime folder and what the service did with them."""

    def __init__(self, root: Path, options: ServeOptions | None = None,
                 on_change: Callable[[Beamtime], None] | None = None) -> None:
        self.root = Path(root).resolve()
        self.options = options or ServeOptions()
        self.runs: dict[Path, RunState] = {}
        self.on_change = on_change
        #: output directories of the runs (their events are the service's own writes)
        self._outputs: set[Path] = set()
        sf = self.options.state_file
        self.state_file = None if sf is None else self.root / sf
        self._memory = read_serve_state(self.state_file) if self.state_file else {}

    # ------------------------------------------------------------------ discovery

    def discover(self) -> list[RunState]:
        """Add the run configs that appeared (and forget those gone); the new ones."""
        found = discover_configs(self.root, self.options.patterns)
        new = [RunState.restore(p, self._memory[str(p)]) if str(p) in self._memory
               else RunState(p) for p in found if p not in self.runs]
        for st in new:
            self.runs[st.config] = st
            log.info("run found: %s", st.config)
        for gone in set(self.runs) - set(found):
            log.info("run gone: %s", gone)
            del self.runs[gone]
        return new

    def ignored(self, path: Path) -> bool:
        """Events the service does not act on: hidden files (caches, locks, partial
        writes) and everything under a run's output directory."""
        rel = path.relative_to(self.root).parts if path.is_relative_to(self.root) else ()
        if any(part.startswith(".") for part in rel):
            return True
        return any(path.is_relative_to(o) for o in self._outputs)

    # ------------------------------------------------------------------ one run

    def _look(self, st: RunState) -> tuple[RunConfig | None, list[Any], bool]:
        """(config or None when invalid, the run's key now, whether it has ended)."""
        folder = st.config.parent
        marker = (folder / self.options.end_marker).exists()
        cfg: RunConfig | None = None
        try:
            cfg = load_config(st.config)
            st.name = cfg.run.name
            out = cfg.output.directory.resolve()
            self._outputs.add(out)
        except ConfigError as exc:
            st.state, st.reason = "invalid", str(exc).splitlines()[0]
            out = None
        stamp = folder_stamp(folder, exclude=[out] if out else [],
                             skip_names=[self.options.end_marker, st.config.name])
        st.last_change = max(stamp.newest_mtime, file_stamp(st.config)[2] / 1e9)
        ended = marker or time.time() - stamp.newest_mtime >= self.options.quiet_s
        key = json.loads(json.dumps((file_stamp(st.config), stamp.key, marker)))
        return cfg, key, ended

    def _still_done(self, st: RunState, cfg: RunConfig | None) -> bool:
        """Whether a run unchanged since it was last handled stays as it is: not when the
        operando code changed since; a remembered finished run only when every product is
        still current (one deleted or gone stale is reduced again)."""
        if st.code and st.code != code_version():
            log.info("%s: handled with operando %s, now %s: looked at again", st.name,
                     st.code, code_version())
            return False
        if st.remembered and cfg is not None and st.state in ("reduced", "up to date"):
            try:
                states = run_status(cfg)
            except (OSError, ValueError):
                return False
            if any(p.status != "fresh" for p in states):
                return False
            st.state, st.products = "up to date", {p.stream: p.status for p in states}
        elif st.remembered and st.state in ("failed", "invalid") and \
                self.options.retry_failed:
            return False
        elif st.remembered and st.state == "failed":
            log.info("%s: failed before (%s); unchanged since, so not retried until its "
                     "files or config change", st.name, st.reason)
        st.remembered = False
        return True

    def check(self, st: RunState) -> bool:
        """Handle one run: reduce it when it changed and has ended. True when something
        was done or its state changed."""
        before = (st.state, st.reason, st.reductions, st.failures)
        cfg, key, ended = self._look(st)
        if key == st.done_key and self._still_done(st, cfg):
            return False
        if cfg is None:
            st.failures += 1
            st.done_key, st.code = key, code_version()
            log.error("%s: invalid run config: %s", st.config, st.reason)
        elif not ended:
            st.state = "live"
            if self.options.live:
                self._live_pass(st, cfg)
        else:
            st.live_items = {}
            self._reduce(st, cfg, key)
        return (st.state, st.reason, st.reductions, st.failures) != before

    def _live_pass(self, st: RunState, cfg: RunConfig) -> None:
        """Reduce a live run again when one of its streams has more complete frames, scans
        or points (:mod:`pipelines.follow`)."""
        from pipelines.follow import complete_items, live_config

        live = live_config(cfg)
        counts = complete_items(live)
        grown = [s for s, n in counts.items() if n > st.live_items.get(s, 0)]
        if grown:
            failures = st.failures
            self._reduce(st, live, None, live=(counts, grown))
            if st.state == "failed":  # e.g. too few trigger pulses yet: the next pass retries
                st.reason = f"live pass on {_items(counts)}: {st.reason}"
            st.state, st.failures = "live", failures

    def _reduce(self, st: RunState, cfg: RunConfig, key: list[Any] | None,
                live: tuple[dict[str, int], list[str]] | None = None) -> None:
        """Reduce under the run's lock (``live``: a live pass, (items covered per stream,
        the streams that grew), products marked incomplete); ``key``: what the run looked
        like (None: look again next time)."""
        from pipelines.follow import live_pass
        from pipelines.reduce import reduce_run

        lock = run_lock(cfg, command="operando serve")
        try:
            lock.acquire(self.options.lock_wait_s)
        except LockHeld as exc:
            st.state, st.reason = "locked", str(exc)
            log.warning("%s", exc)
            return  # done_key unchanged: tried again on the next pass
        try:
            if lock.taken_over is not None:
                log.warning("%s: stale lock of %s taken over", st.name,
                            lock.taken_over.describe())
            log.info("%s: reducing %s%s", st.name, st.config,
                     f" (live: {_items(live[0])})" if live else "")
            if live:
                res = live_pass(cfg, live[1], scheduler=self.options.scheduler)
                st.live_items = dict(live[0])
            else:
                res = reduce_run(cfg, scheduler=self.options.scheduler,
                                 raise_on_failure=False)
        except Exception as exc:  # one run's failure never stops the service
            st.state, st.reason = "failed", f"{type(exc).__name__}: {exc}"
            st.failures += 1
            log.exception("%s: reduction failed", st.name)
        else:
            st.reductions += 1
            st.products = {s: lab for s, (lab, _) in res.status().items()}
            if res.failed:
                st.state = "failed"
                st.failures += 1
                st.reason = "; ".join(f"{s}: {why}" for s, why in res.failed.items())
                log.error("%s: failed: %s (traceback in %s)", st.name, st.reason,
                          res.log_file)
            else:
                st.state = "reduced" if res.flow_ran else "up to date"
                st.reason = ""
                log.info("%s: %s", st.name, st.state)
        finally:
            lock.release()
        if key is not None:
            st.done_key, st.code = key, code_version()

    # ------------------------------------------------------------------ passes

    def sweep(self, runs: Iterable[RunState] | None = None) -> bool:
        """One pass: discover the runs, handle ``runs`` (default: all). True when a run's
        state changed (the status table is worth printing again)."""
        self.discover()
        todo = list(self.runs.values()) if runs is None else list(runs)
        changed = False
        for st in todo:
            if st.config not in self.runs:
                continue
            try:
                changed |= self.check(st)
            except Exception as exc:  # e.g. the run's folder vanished under the look
                st.state, st.reason = "failed", f"{type(exc).__name__}: {exc}"
                st.failures += 1
                changed = True
                log.exception("%s: could not be handled", st.config)
        if changed:
            self.remember()
            if self.on_change is not None:
                self.on_change(self)
        return changed

    def remember(self) -> None:
        """Write the runs' states to the service's memory (``state_file``)."""
        if self.state_file is None:
            return
        self._memory = {str(p): st.record() for p, st in self.runs.items()}
        if not write_serve_state(self.state_file, self._memory):
            self.state_file = None  # warned once; the service goes on without a memory

    def pending(self) -> list[RunState]:
        """Runs looked at on every tick: live ones (their quiet time may run out) and
        locked ones."""
        return [st for st in self.runs.values() if st.state in ("live", "locked", "new")]

    def serve(self, stop: Any | None = None) -> None:
        """Sweep every run, then watch the folder until ``stop`` (a ``threading.Event``)
        is set or the process is interrupted: a change sweeps the runs it touched (a new
        config is discovered), a tick sweeps the pending ones."""
        self.sweep()
        for changes in watch_changes(self.root, self.ignored, tick_s=self.options.tick_s,
                                     stop=stop):
            touched = self._runs_of(changes)
            self.sweep([*touched, *(st for st in self.pending() if st not in touched)])

    def _runs_of(self, paths: Sequence[Path]) -> list[RunState]:
        self.discover()
        return [st for st in self.runs.values()
                if any(p.is_relative_to(st.config.parent) for p in paths)]

    @property
    def failed(self) -> list[RunState]:
        return [st for st in self.runs.values() if st.state in ("failed", "invalid")]
