"""Sparse-preserving file copies (SEEK_DATA/SEEK_HOLE), shared by the Cinder and Nova drivers.

Volumes are sparse files; copying them naively would allocate every hole and make a 1 GiB
volume cost 1 GiB of disk and read time. These helpers copy only allocated extents.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator

CHUNK = 4 * 1024 * 1024


def extents(fd: int, size: int) -> Iterator[tuple[int, int]]:
    """(offset, length) of the allocated data regions of an open file."""
    pos = 0
    while pos < size:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError:  # ENXIO: no data after pos
            return
        end = os.lseek(fd, start, os.SEEK_HOLE)
        yield start, min(end, size) - start
        pos = end


def copy_sparse(src: str, dst: str, size: int | None = None) -> None:
    """Copy file `src` to a new `dst` of `size` bytes (default: src's size), holes kept."""
    tmp = dst + ".part"
    with open(src, "rb") as fin, open(tmp, "wb") as fout:
        src_size = os.fstat(fin.fileno()).st_size
        total = src_size if size is None else size
        fout.truncate(total)
        for off, length in extents(fin.fileno(), min(src_size, total)):
            done = 0
            while done < length:
                n = min(CHUNK, length - done)
                data = os.pread(fin.fileno(), n, off + done)
                if not data:
                    break
                if data.count(0) != len(data):  # skip all-zero chunks: keep them holes
                    os.pwrite(fout.fileno(), data, off + done)
                done += len(data)
        fout.flush()
        os.fsync(fout.fileno())
    os.replace(tmp, dst)


def write_stream_sparse(chunks: Iterable[bytes], dst: str, size: int) -> int:
    """Write a byte stream to a new file of `size` bytes, leaving zero blocks as holes."""
    tmp = dst + ".part"
    written = 0
    with open(tmp, "wb") as fout:
        fout.truncate(size)
        buf = bytearray()
        for chunk in chunks:
            buf += chunk
            while len(buf) >= CHUNK:
                written = _put(fout.fileno(), bytes(buf[:CHUNK]), written)
                del buf[:CHUNK]
        if buf:
            written = _put(fout.fileno(), bytes(buf), written)
        if written > size:
            fout.truncate(written)
        os.fsync(fout.fileno())
    os.replace(tmp, dst)
    return written


def _put(fd: int, data: bytes, offset: int) -> int:
    if data.count(0) != len(data):
        os.pwrite(fd, data, offset)
    return offset + len(data)


def read_chunks(path: str) -> Iterator[bytes]:
    """The full logical content (holes read as zeros), in chunks, for uploads."""
    with open(path, "rb") as f:
        while True:
            data = f.read(CHUNK)
            if not data:
                return
            yield data
