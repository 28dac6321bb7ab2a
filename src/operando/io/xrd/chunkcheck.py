"""Checking compressed HDF5 chunks before the HDF5 filter decompresses them.

The bitshuffle-LZ4 filter (HDF5 filter 32008, what Eiger/Bliss/NeXus frames use) decodes
with a decoder that trusts the stream: a chunk with corrupted bytes can make it write
outside its buffer and kill the process (a segmentation fault, no message, the whole
reduce gone). :func:`check_frame_chunks` reads each chunk's raw bytes
(``read_direct_chunk``: no filter runs) and decodes every LZ4 block with a bounds-checked
decoder (``numcodecs.lz4``, ``LZ4_decompress_safe``), checking the bitshuffle header
(uncompressed size, block size) and that the blocks use exactly the chunk's bytes. A
damaged chunk raises :class:`ChunkCorruptError` naming the file, the dataset and the frames
it holds; the filter never sees it. It costs one extra decompression (LZ4: GB/s), far less
than the integration of the frames.

What no check can see: bytes changed inside an LZ4 literal run decode "successfully" to
other pixel values (bitshuffle-LZ4 carries no checksum). Other filters: gzip/deflate
(zlib) checks its input itself; chunks of other third-party filters and virtual datasets
are read as they are.
"""

from __future__ import annotations

import struct

import h5py
import numpy as np

from operando.io.xrd.images import FrameFormatError

__all__ = ["BITSHUFFLE_FILTER", "ChunkCorruptError", "check_bitshuffle_lz4", "check_frame_chunks"]

#: HDF5 filter id of bitshuffle
BITSHUFFLE_FILTER = 32008
_LZ4 = 2  # bitshuffle's compression option: LZ4
_BLOCKED_MULT = 8


class ChunkCorruptError(FrameFormatError):
    """A compressed chunk that cannot be decoded (file, dataset and frames named)."""


def check_bitshuffle_lz4(raw: bytes, elem_size: int, expected_bytes: int) -> str | None:
    """None when ``raw`` (one bitshuffle-LZ4 chunk as stored) decodes safely to
    ``expected_bytes``; else what is wrong."""
    from numcodecs import lz4

    if len(raw) < 12:
        return f"{len(raw)} bytes, shorter than the 12-byte bitshuffle header"
    nbytes, block_bytes = struct.unpack(">QI", raw[:12])
    if nbytes != expected_bytes:
        return f"header says {nbytes} bytes uncompressed, expected {expected_bytes}"
    if block_bytes == 0 or block_bytes % elem_size or (block_bytes // elem_size) % _BLOCKED_MULT:
        return f"header block size {block_bytes} bytes is not a multiple of 8 elements"
    n_elem, bs = nbytes // elem_size, block_bytes // elem_size
    blocks = [bs] * (n_elem // bs)
    last = n_elem % bs - (n_elem % bs) % _BLOCKED_MULT
    if last:
        blocks.append(last)
    pos = 12
    for k, n in enumerate(blocks):
        if pos + 4 > len(raw):
            return f"block {k}: the chunk ends before its size field"
        (size,) = struct.unpack(">I", raw[pos:pos + 4])
        pos += 4
        if size > len(raw) - pos:
            return f"block {k}: {size} compressed bytes, only {len(raw) - pos} left"
        want = n * elem_size
        try:
            got = lz4.decompress(struct.pack("<I", want) + raw[pos:pos + size])
        except (RuntimeError, ValueError) as err:
            return f"block {k}: LZ4 stream invalid ({err})"
        if len(got) != want:
            return f"block {k}: decodes to {len(got)} bytes, expected {want}"
        pos += size
    leftover = (n_elem % bs) % _BLOCKED_MULT * elem_size  # copied raw after the blocks
    if pos + leftover != len(raw):
        return f"blocks use {pos + leftover} of the chunk's {len(raw)} bytes"
    return None


def check_frame_chunks(dset: h5py.Dataset, i0: int, i1: int, where: str) -> None:
    """Check the stored chunks holding frames ``i0:i1`` of a 3D frame stack compressed
    with bitshuffle-LZ4 (nothing to do for other layouts); :class:`ChunkCorruptError` on
    the first damaged one."""
    if i1 <= i0 or dset.chunks is None or dset.is_virtual:
        return
    plist = dset.id.get_create_plist()
    filters = [plist.get_filter(k) for k in range(plist.get_nfilters())]
    bs = [f for f in filters if f[0] == BITSHUFFLE_FILTER]
    if not bs:
        return
    opts = tuple(bs[0][2])
    if len(opts) < 5 or opts[4] != _LZ4 or len(filters) != 1:
        return  # bitshuffle without LZ4, or stacked filters: read as they are
    elem = dset.dtype.itemsize
    cf = dset.chunks[0]
    chunk_bytes = int(np.prod(dset.chunks, dtype=np.int64)) * elem
    for c0 in range(i0 - i0 % cf, i1, cf):
        offset = (c0,) + (0,) * (dset.ndim - 1)
        if dset.chunks[1:] != dset.shape[1:]:
            return  # frames split over several chunks: not the detector layout
        try:
            mask, raw = dset.id.read_direct_chunk(offset)
        except (OSError, KeyError, ValueError):
            continue  # unallocated (fill value) or unreadable: HDF5 reports that itself
        if mask & 1:
            continue  # the filter was skipped for this chunk: stored raw
        problem = check_bitshuffle_lz4(raw, elem, chunk_bytes)
        if problem:
            last = min(c0 + cf, dset.shape[0]) - 1
            raise ChunkCorruptError(
                f"{where}: the compressed chunk of frames {c0}..{last} is corrupt ({problem}); "
                "expected a valid bitshuffle-LZ4 chunk; those frames cannot be read")
