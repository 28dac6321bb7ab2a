"""Damaged frame files: a clear error naming file, dataset and frames; never a crash."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest
from tests.faults.conftest import write_stack

from operando.io.xrd.chunkcheck import ChunkCorruptError, check_bitshuffle_lz4
from operando.io.xrd.frames import open_frames
from operando.io.xrd.images import FrameFormatError

DS = "entry/data/data"


def _chunk(path: Path, k: int) -> tuple[int, int]:
    with h5py.File(path) as f:
        info = f[DS].id.get_chunk_info(k)
    return info.byte_offset, info.size


def test_truncated_file_mid_chunk(tmp_path, frames) -> None:
    p = write_stack(tmp_path / "t.h5", frames)
    off, size = _chunk(p, 5)
    data = p.read_bytes()[:off + size // 2]
    cut = tmp_path / "cut.h5"
    cut.write_bytes(data)
    with pytest.raises(FrameFormatError) as e:
        open_frames([cut], dataset=DS).read(0, 8)
    assert str(cut) in str(e.value)


def test_corrupt_chunk_is_an_error_naming_file_and_frames(tmp_path, frames) -> None:
    p = write_stack(tmp_path / "c.h5", frames)
    off, size = _chunk(p, 3)
    with open(p, "r+b") as fh:
        fh.seek(off + size // 2)
        fh.write(np.random.default_rng(1).integers(0, 256, size // 3, np.uint8).tobytes())
    src = open_frames([p], dataset=DS)
    assert src.read(0, 3).shape == (3, 64, 96)  # frames before it still read
    with pytest.raises(ChunkCorruptError, match=r"c\.h5::/entry/data/data: .*frames 3\.\.3"):
        src.read(0, 8)


def test_random_corruption_never_crashes(tmp_path, frames) -> None:
    """Random damage of random chunks, read in a child: it exits 0 (each read is either
    an error naming the frames, or values), never with a signal."""
    p = write_stack(tmp_path / "r.h5", frames)
    script = textwrap.dedent(f"""
        import shutil, numpy as np, h5py
        from operando.io.xrd.frames import open_frames
        from operando.io.xrd.images import FrameFormatError
        rng = np.random.default_rng(7)
        src, dst = {str(p)!r}, {str(tmp_path / 'd.h5')!r}
        with h5py.File(src) as f:
            infos = [f[{DS!r}].id.get_chunk_info(k) for k in range(8)]
        errors = 0
        for trial in range(60):
            shutil.copy(src, dst)
            info = infos[rng.integers(8)]
            n = int(rng.integers(1, info.size // 2))
            at = int(rng.integers(0, info.size - n))
            with open(dst, "r+b") as fh:
                fh.seek(info.byte_offset + at)
                fh.write(rng.integers(0, 256, n, dtype=np.uint8).tobytes())
            try:
                open_frames([dst], dataset={DS!r}).read(0, 8)
            except FrameFormatError as e:
                assert "d.h5" in str(e), e
                errors += 1
        print(errors)
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, (r.returncode, r.stderr[-2000:])
    assert int(r.stdout.split()[-1]) >= 30  # most random damage is caught


def test_checker_accepts_every_intact_chunk(tmp_path, frames) -> None:
    p = write_stack(tmp_path / "ok.h5", frames)
    with h5py.File(p) as f:
        d = f[DS]
        for k in range(d.shape[0]):
            _, raw = d.id.read_direct_chunk((k, 0, 0))
            assert check_bitshuffle_lz4(raw, 4, frames[0].nbytes) is None


def test_missing_or_misnamed_dataset(tmp_path, frames) -> None:
    p = write_stack(tmp_path / "m.h5", frames)
    with pytest.raises(FrameFormatError) as e:
        open_frames([p], dataset="entry/data/nodata")
    assert "m.h5" in str(e.value) and "nodata" in str(e.value)


def test_frames_of_the_wrong_shape(tmp_path, frames) -> None:
    a = write_stack(tmp_path / "a.h5", frames)
    b = write_stack(tmp_path / "b.h5", frames[:, :32])
    with pytest.raises(FrameFormatError) as e:
        open_frames([a, b], dataset=DS)
    assert "b.h5" in str(e.value) and "(32, 96)" in str(e.value).replace(" x ", ", ")
