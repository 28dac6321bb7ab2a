"""A beamtime folder on disk: its runs (run configs found by glob patterns), what a run's
raw files look like now (a stamp), and change events from the OS (through watchfiles:
inotify on Linux, FSEvents on macOS; polling only where the OS offers nothing)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["FolderStamp", "discover_configs", "folder_stamp", "watch_changes"]


def discover_configs(root: Path, patterns: Sequence[str]) -> list[Path]:
    """Every file under ``root`` matching one of the glob ``patterns`` (relative to
    ``root``, e.g. ``*/run.yaml``), sorted, without duplicates; hidden folders are skipped."""
    found: dict[Path, None] = {}
    for pat in patterns:
        for p in sorted(Path(root).glob(pat)):
            rel = p.relative_to(root).parts
            if p.is_file() and not any(part.startswith(".") for part in rel):
                found[p.resolve()] = None
    return list(found)


@dataclass(frozen=True)
class FolderStamp:
    """What a run's raw files look like: how many, their total size, the newest mtime (s),
    and the newest mtime of a file still growing past the stamp (compare two stamps)."""

    n_files: int
    total_bytes: int
    newest_mtime: float
    digest: int  # hash of every (path, size, mtime_ns): any change changes it

    @property
    def key(self) -> tuple[int, int, int]:
        return (self.n_files, self.total_bytes, self.digest)


def folder_stamp(folder: Path, exclude: Sequence[Path] = (),
                 skip_names: Sequence[str] = ()) -> FolderStamp:
    """Stat every file under ``folder`` (hidden files and folders, ``exclude`` folders and
    files named in ``skip_names`` left out)."""
    excl = {str(Path(e).resolve()) for e in exclude}
    n = total = 0
    newest = 0.0
    items: list[tuple[str, int, int]] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")
                       and str(Path(dirpath, d).resolve()) not in excl]
        for name in filenames:
            if name.startswith(".") or name in skip_names:
                continue
            try:
                st = os.stat(os.path.join(dirpath, name))
            except FileNotFoundError:
                continue
            n += 1
            total += st.st_size
            newest = max(newest, st.st_mtime)
            items.append((os.path.join(dirpath, name), st.st_size, st.st_mtime_ns))
    return FolderStamp(n, total, newest, hash(tuple(sorted(items))))


def watch_changes(root: Path, ignore: Callable[[Path], bool], tick_s: float = 1.0,
                  stop: object | None = None) -> Iterator[set[Path]]:
    """Yield the set of changed paths under ``root`` as the OS reports them (debounced),
    and an empty set after ``tick_s`` seconds without a change (so quiet-time timers run);
    ``ignore(path)`` drops events (products, caches, locks). One OS watcher for the whole
    watch: events that happen while the caller works are kept for the next yield.
    ``stop``: a ``threading.Event`` ending the watch."""
    import watchfiles

    def keep(change: watchfiles.Change, path: str) -> bool:
        return not ignore(Path(path))

    for changes in watchfiles.watch(root, watch_filter=keep, debounce=400, step=50,
                                    rust_timeout=int(max(0.05, tick_s) * 1000),
                                    yield_on_timeout=True, stop_event=stop,
                                    raise_interrupt=False):
        yield {Path(p) for _, p in changes}
