"""Atomic, durable file output: a product is written under a temporary name beside its
final path and renamed only when complete, so a file on disk is always whole.

- The temporary name is ``.<name>.<host>-<pid>.<random>.part``: a run killed before its
  rename leaves it behind, and the next write of the same product removes it
  (:func:`remove_stale_parts`: only parts whose process is gone, so a second reducer that
  is still writing keeps its own).
- Durability: the finished temporary file (or every file of a temporary folder) is
  fsynced before the rename and its folder after, so a crash of the machine right after
  the rename leaves the old product or the whole new one, never an empty file.
- ``overwrite=False``: the "does it exist" check and the rename are one step
  (``renameat2(RENAME_NOREPLACE)``; where the file system lacks it, ``os.link`` for a file),
  so two writers racing for one name cannot both win.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import secrets
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from operando.io.h5fail import release_h5netcdf

__all__ = ["atomic_path", "fsync_tree", "part_path", "publish", "remove_stale_parts",
           "write_bytes_atomic", "write_text_atomic"]

_HOST = socket.gethostname().split(".")[0].replace("-", "_") or "host"
#: a part of another host (a shared file system) is removed only when this old (s)
_FOREIGN_PART_AGE_S = 7 * 86400


def part_path(final: str | Path) -> Path:
    """A temporary name beside ``final``, owned by this process (module doc)."""
    final = Path(final)
    return final.with_name(f".{final.name}.{_HOST}-{os.getpid()}.{secrets.token_hex(4)}.part")


def _owner_gone(part: Path) -> bool:
    fields = part.name.rsplit(".", 3)  # ['.name', 'host-pid', 'rand', 'part']
    host, _, pid = fields[1].rpartition("-") if len(fields) == 4 else ("", "", "")
    if not pid.isdigit():  # a part of an older version (mkstemp name): nobody owns it
        return True
    if host != _HOST:
        with contextlib.suppress(OSError):
            return time.time() - part.lstat().st_mtime > _FOREIGN_PART_AGE_S
        return False
    if int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def remove_stale_parts(final: str | Path) -> list[Path]:
    """Remove the temporary files or folders of ``final`` left by killed writers (module
    doc); returns what was removed."""
    final = Path(final)
    removed = []
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        for part in final.parent.glob(f".{final.name}.*.part"):
            if _owner_gone(part):
                if part.is_dir() and not part.is_symlink():
                    shutil.rmtree(part, ignore_errors=True)
                else:
                    with contextlib.suppress(FileNotFoundError):
                        part.unlink()
                removed.append(part)
    return removed


def _fsync(path: Path, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(path: str | Path) -> None:
    """fsync a file, or every file and folder under a folder (a Zarr store)."""
    path = Path(path)
    if not path.is_dir():
        _fsync(path)
        return
    for root, _dirs, files in os.walk(path):
        for f in files:
            _fsync(Path(root) / f)
        _fsync(Path(root), directory=True)


_RENAME_NOREPLACE = 1
_AT_FDCWD = -100


def _rename_noreplace(src: Path, dst: Path) -> None:
    """Rename ``src`` to ``dst`` unless ``dst`` exists, in one step (FileExistsError)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        fn = None
    if fn is not None:
        if fn(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), _RENAME_NOREPLACE) == 0:
            return
        err = ctypes.get_errno()
        if err == errno.EEXIST:
            raise FileExistsError(errno.EEXIST, "exists and overwrite is off", str(dst))
        if err not in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
            raise OSError(err, os.strerror(err), str(dst))
    if src.is_dir():  # rename(2) refuses a non-empty folder; an empty one is no product
        if dst.exists():
            raise FileExistsError(errno.EEXIST, "exists and overwrite is off", str(dst))
        os.rename(src, dst)
        return
    os.link(src, dst)  # FileExistsError when dst exists: check and publish in one step
    src.unlink()


def publish(tmp: str | Path, final: str | Path, *, overwrite: bool = True,
            durable: bool = True) -> None:
    """Move the finished ``tmp`` to ``final`` durably (fsync before and after the rename;
    ``durable`` False: the rename only, still atomic for readers); with ``overwrite`` False
    an existing ``final`` is never replaced (FileExistsError)."""
    tmp, final = Path(tmp), Path(final)
    if durable:
        fsync_tree(tmp)
    if overwrite:
        os.replace(tmp, final)
    else:
        try:
            _rename_noreplace(tmp, final)
        except FileExistsError:
            raise FileExistsError(
                f"{final}: exists and overwrite is off; nothing was written") from None
    if durable:
        _fsync(final.parent, directory=True)


@contextlib.contextmanager
def atomic_path(final: str | Path, *, overwrite: bool = True,
                durable: bool = True) -> Iterator[Path]:
    """Yield a temporary path in the same folder; rename it to ``final`` on success.

    On an exception the temporary file is emptied and removed and ``final`` is untouched
    (an earlier product under that name stays intact); an h5netcdf file left open on it by
    a failed write is dropped without touching HDF5 again (:mod:`operando.io.h5fail`).
    Parts of ``final`` left by a killed run are removed first. ``durable`` False skips the
    fsyncs (a file replaced many times a minute whose readers need it whole, not on disk
    after a crash: the versions of a simulated acquisition).
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists() and not overwrite:
        raise FileExistsError(f"{final}: exists and overwrite is off; nothing was written")
    remove_stale_parts(final)
    tmp = part_path(final)  # writers (h5py, fabio, pyFAI) create the file themselves
    try:
        yield tmp
        if not tmp.exists():
            raise RuntimeError(f"{final}: the writer produced no file")
        publish(tmp, final, overwrite=overwrite, durable=durable)
    except BaseException as err:
        release_h5netcdf(tmp)  # HDF5 must not touch a file it failed to write (h5fail)
        with contextlib.suppress(OSError):
            os.truncate(tmp, 0)  # its blocks freed even where a writer still holds it open
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        clear = _write_error(final, err)
        if clear is not None:
            raise clear from err
        raise


_ERRNO_TEXT = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded",
               errno.EFBIG: "the file size limit is exceeded",
               errno.EACCES: "the folder is not writable", errno.EPERM: "not permitted",
               errno.EROFS: "the file system is read-only"}


def _write_error(final: Path, err: BaseException) -> OSError | None:
    """One clear OSError for a write that failed on the disk (full, too large, not
    writable), whichever library raised it (h5py raises RuntimeError/OSError with the
    errno in the text); None for other errors."""
    code = err.errno if isinstance(err, OSError) else None
    if code is None and isinstance(err, (OSError, RuntimeError)):
        text = str(err)
        code = next((c for c in _ERRNO_TEXT if f"errno = {c}," in text
                     or os.strerror(c) in text), None)
    if code not in _ERRNO_TEXT:
        return None
    return OSError(code, f"{final}: cannot be written, {_ERRNO_TEXT[code]} "
                   f"({os.strerror(code)}); nothing was written, an earlier {final.name} "
                   "is intact")


def write_bytes_atomic(final: str | Path, data: bytes) -> Path:
    """Write bytes to ``final`` atomically (flushed to disk before the rename)."""
    with atomic_path(final) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
    return Path(final)


def write_text_atomic(final: str | Path, text: str, *, encoding: str = "utf-8") -> Path:
    """Write text to ``final`` atomically (no newline translation)."""
    return write_bytes_atomic(final, text.encode(encoding))
