"""Durable, atomic products: fsync, stale .part removal, no-overwrite in one step, a full
disk and a read-only folder give one clear error and leave nothing behind."""

from __future__ import annotations

import ctypes
import os
import resource
import shutil
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from operando.io import atomic
from operando.io.products import write_product


def _ds(n: int = 10) -> xr.Dataset:
    return xr.Dataset({"v": ("t", np.arange(float(n)), {"units": "1", "long_name": "v"})},
                      coords={"t": ("t", np.arange(n), {"units": "s", "long_name": "t"})})


def test_fsync_before_and_after_rename(tmp_path, monkeypatch) -> None:
    calls: list[str] = []
    real = os.fsync

    def spy(fd: int) -> None:
        calls.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(atomic.os, "fsync", spy)
    final = tmp_path / "p.bin"
    atomic.write_bytes_atomic(final, b"x" * 100)
    assert calls[0].endswith(".part") and calls[-1] == str(tmp_path)
    assert final.read_bytes() == b"x" * 100


def test_stale_part_removed_by_next_write_live_one_kept(tmp_path) -> None:
    final = tmp_path / "xrd.nc"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    stale = final.with_name(f".xrd.nc.{atomic._HOST}-{dead}.0000abcd.part")
    legacy = final.with_name(".xrd.nc.k2j3h4_x.part")  # an older version's mkstemp name
    live = final.with_name(f".xrd.nc.{atomic._HOST}-{os.getppid()}.0000abcd.part")
    for p in (stale, legacy, live):
        p.write_bytes(b"half")
    write_product(_ds(), final, product="xrd")
    assert final.exists() and not stale.exists() and not legacy.exists() and live.exists()


def test_no_overwrite_check_and_rename_are_one_step(tmp_path) -> None:
    final = tmp_path / "p.bin"
    parts = []
    for k in range(8):
        p = tmp_path / f"part{k}"
        p.write_bytes(bytes([k]) * 10)
        parts.append(p)
    wins, losses = [], []
    barrier = threading.Barrier(len(parts))

    def go(p: Path) -> None:
        barrier.wait()
        try:
            atomic.publish(p, final, overwrite=False)
            wins.append(p)
        except FileExistsError as e:
            assert "overwrite is off" in str(e)
            losses.append(p)

    threads = [threading.Thread(target=go, args=(p,)) for p in parts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1 and len(losses) == len(parts) - 1
    assert final.read_bytes() == bytes([int(wins[0].name[-1])]) * 10


ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}", "COLUMNS": "80"}


def _file_size_limit(limit: int = 200_000) -> None:
    """preexec_fn: files of the child and its children stop at ``limit`` bytes. A write
    past it fails with EFBIG, as one on a full disk fails with ENOSPC (Python ignores
    SIGXFSZ, which would otherwise end the process)."""
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def _parts(folder: Path) -> list[Path]:
    return [*folder.glob("*.part"), *folder.glob(".*.part")]


def _writer_script(out: Path, n: int, *, streamed: bool) -> str:
    """A child that writes a product of ``n`` float64 values at once (``write_product``)
    or in blocks (``stream_product``), prints the error and ends normally."""
    return textwrap.dedent(f"""
        import dask.array as da, numpy as np, xarray as xr
        from operando.io.product_stream import stream_product
        from operando.io.products import write_product
        a = {{"units": "1", "long_name": "v"}}
        try:
            if {streamed!r}:
                ds = xr.Dataset({{"v": (("t", "q"), da.zeros(({n} // 1000, 1000)), a)}},
                                coords={{"t": ("t", np.arange({n} // 1000), a),
                                         "q": ("q", np.arange(1000), a)}})
                with stream_product(ds, {str(out)!r}, dim="t", product="xrd") as w:
                    for s in range(0, {n} // 1000, 100):
                        w.write(s, s + 100, {{"v": np.random.default_rng(s).random((100, 1000))}})
            else:
                ds = xr.Dataset({{"v": ("t", np.random.default_rng(0).random({n}), a)}})
                write_product(ds, {str(out)!r}, product="xrd")
        except OSError as e:
            print("OSError", e)
    """)


@pytest.mark.parametrize("streamed", [False, True], ids=["at-once", "streamed"])
def test_full_disk_leaves_earlier_product_and_no_part(tmp_path, streamed) -> None:
    """The child ends normally (exit 0, nothing on stderr): HDF5 is not touched again after
    the failed write (operando.io.h5fail), so no segmentation fault at exit."""
    final = tmp_path / "xrd.nc"
    write_product(_ds(), final, product="xrd")
    before = final.read_bytes()
    r = subprocess.run([sys.executable, "-c", _writer_script(final, 1_000_000,
                                                            streamed=streamed)],
                       capture_output=True, text=True, env=ENV, preexec_fn=_file_size_limit,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stderr == "", r.stderr[-3000:]  # no "Exception ignored" from h5py either
    assert r.stdout.count("OSError") == 1 and "file size limit is exceeded" in r.stdout, r.stdout
    assert str(final) in r.stdout and "an earlier xrd.nc is intact" in r.stdout
    assert final.read_bytes() == before
    assert not _parts(tmp_path)


def test_full_disk_cli_exits_1_with_one_line(small_run, tmp_path) -> None:
    """A real command (`operando integrate` writes its NetCDF block by block, as a reduce
    writes xrd.nc) on a full disk: exit code exactly 1 (not a signal), one line on stderr
    naming the product, no traceback; the earlier product intact, no part left."""
    raw = small_run.outdir / "xrd"
    out = tmp_path / "frames.nc"
    write_product(_ds(), out, product="xrd")  # an earlier product under the same name
    before = out.read_bytes()
    r = subprocess.run([sys.executable, "-m", "operando", "integrate", str(raw / "xrd_0001.h5"),
                        "--poni", str(raw / "geometry.poni"), "-o", str(out)],
                       capture_output=True, text=True, env=ENV, cwd=tmp_path,
                       stdin=subprocess.DEVNULL, preexec_fn=_file_size_limit, timeout=300)
    assert r.returncode == 1, (r.returncode, r.stderr[-3000:])
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr[-3000:]
    assert str(out) in lines[0] and "cannot be written, the file size limit is exceeded" \
        in lines[0] and "an earlier frames.nc is intact" in lines[0], lines[0]
    assert "Traceback" not in r.stdout + r.stderr
    assert out.read_bytes() == before
    assert not _parts(tmp_path)


_PR_CAPBSET_DROP = 24
#: CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH: what lets root write where the mode bits say no
_DAC_CAPS = (1, 2)


def _plain_owner() -> None:
    """preexec_fn for root: drop the capabilities that bypass file modes from the bounding
    set, so the program run keeps uid 0 (it reads the Python of /root) but is held to the
    owner's mode bits like any user."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in _DAC_CAPS:
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) refused")


def _can_drop_capabilities() -> bool:
    r = subprocess.run(["true"], preexec_fn=_plain_owner, capture_output=True, check=False) \
        if os.geteuid() == 0 else None
    return r is None or r.returncode == 0


def test_read_only_output_folder(tmp_path) -> None:
    """Root (CI) writes anyway, so the writer runs without the capabilities that bypass
    the mode bits; an ordinary user runs it as is."""
    if os.geteuid() == 0 and not _can_drop_capabilities():
        pytest.skip("running as root without CAP_SETPCAP: cannot drop CAP_DAC_OVERRIDE for "
                    "the writer, and root writes into read-only folders")
    d = tmp_path / "ro"
    d.mkdir()
    final = d / "xrd.nc"
    write_product(_ds(), final, product="xrd")
    before = final.read_bytes()
    d.chmod(0o500)
    try:
        r = subprocess.run([sys.executable, "-c", _writer_script(final, 1000, streamed=False)],
                           capture_output=True, text=True, env=ENV, timeout=300,
                           preexec_fn=_plain_owner if os.geteuid() == 0 else None)
    finally:
        d.chmod(0o700)
    assert r.returncode == 0 and r.stderr == "", r.stderr[-3000:]
    assert r.stdout.count("OSError") == 1, r.stdout
    assert f"{final}: cannot be written, the folder is not writable" in r.stdout, r.stdout
    assert "an earlier xrd.nc is intact" in r.stdout
    assert final.read_bytes() == before
    assert not _parts(d)


def _in_own_mount_namespace(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``sh -c script args…`` in a new user and mount namespace (util-linux ``unshare``; no
    privilege needed where the kernel allows unprivileged user namespaces): it may mount a
    tmpfs of its own, which disappears with it."""
    return subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
                           script, "sh", *args], capture_output=True, text=True, env=ENV,
                          stdin=subprocess.DEVNULL, timeout=600)


def _small_tmpfs_possible(tmp_path: Path) -> str | None:
    """None when a 64 kB tmpfs can be mounted in an own namespace, else why not."""
    if shutil.which("unshare") is None:
        return "util-linux unshare is not installed"
    d = tmp_path / "probe"
    d.mkdir()
    r = _in_own_mount_namespace('mount -t tmpfs -o size=64k tmpfs "$1"', str(d))
    return None if r.returncode == 0 else f"cannot mount a tmpfs in a user namespace: " \
        f"{r.stderr.strip()[-300:]}"


@pytest.mark.slow
def test_full_disk_reduce_exits_1_naming_the_product(small_run, tmp_path) -> None:
    """A whole `operando reduce` on a really full disk: the output folder a 1 MB tmpfs
    (ENOSPC, not a size limit, and only there: Prefect's database is elsewhere). Exit code
    exactly 1; stderr is the failed product's one line and where the traceback went; the
    earlier xrd.nc intact; no part left."""
    why = _small_tmpfs_possible(tmp_path)
    if why:
        pytest.skip(why)
    from operando.config import load_config

    base = load_config(small_run.run_config_path)
    out = tmp_path / "reduced"
    out.mkdir()
    cfg = tmp_path / "run.yaml"
    cfg.write_text(base.model_copy(update={"output": base.output.model_copy(
        update={"directory": out})}).to_yaml(), encoding="utf-8")
    earlier = write_product(_ds(), tmp_path / "earlier.nc", product="xrd")
    run_dir = out / base.run.name
    script = textwrap.dedent("""
        mount -t tmpfs -o size=1m tmpfs "$1" || exit 99
        mkdir -p "$2" && cp "$3" "$2/xrd.nc"
        "$5" -m operando reduce "$4" --only xrd --scheduler none >/dev/null 2>"$6"
        echo "rc=$?"
        cmp -s "$3" "$2/xrd.nc" && echo "earlier intact"
        ls -A "$2"
    """)
    err = tmp_path / "stderr.txt"
    r = _in_own_mount_namespace(script, str(out), str(run_dir), str(earlier), str(cfg),
                                sys.executable, str(err))
    assert r.returncode == 0, r.stderr[-3000:]
    stderr = err.read_text()
    assert "rc=1\n" in r.stdout, (r.stdout, stderr[-3000:])
    assert "earlier intact" in r.stdout, r.stdout
    assert ".part" not in r.stdout, r.stdout
    lines = stderr.splitlines()
    assert lines[0] == f"xrd failed: [Errno 28] {run_dir / 'xrd.nc'}: cannot be written, the " \
        "disk is full (No space left on device); nothing was written, an earlier xrd.nc is " \
        "intact", stderr[-3000:]
    assert len(lines) == 2 and lines[1].startswith("traceback(s) in "), stderr[-3000:]
    assert "Traceback" not in stderr
