"""The destination's chunk index of a volume, for delta copies.

After every verified copy the destination host keeps ``<state_dir>/<volume id>.index``: what
each chunk-grid chunk of the destination volume holds (the source's hash of it, or nothing
for a zero chunk), with the volume's content digest. The next copy into that volume with a
``delta_base`` trusts the index only when it names this volume, size, chunk size and hash and
its digest is the ``delta_base`` the orchestrator recorded for the last verified copy;
anything else (no index, another host of a pool, a copy killed half-way) and the index is
rebuilt by reading the volume here, which costs a local read, not the wire.

A copy removes the index before it writes anything, so a killed copy never leaves an index
that does not describe the volume. The file: one JSON header line, then one hash per chunk
(all-zero bytes for a zero chunk).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import stat
from typing import List, Optional

from . import extents, hashes
from .source import chunk_hash

#: Hashes of a volume's chunks, None for a zero chunk.
Hashes = List[Optional[bytes]]
#: 4 MiB chunks of a 16 TiB volume with 32-byte hashes.
MAX_INDEX_BYTES = 128 * 1024 * 1024
_HEADER_BYTES = 4096


def chunks_of(size: int, chunk_size: int) -> int:
    return (size + chunk_size - 1) // chunk_size


def _name(volume_id: str) -> str:
    return f"{volume_id}.index"


def pack(found: Hashes, hash_name: str) -> bytes:
    empty = bytes(hashes.SIZES[hash_name])
    return b"".join(h or empty for h in found)


def unpack(blob: bytes, count: int, hash_name: str) -> Hashes:
    """``count`` hashes from ``blob``; ValueError when it has another length."""
    width = hashes.SIZES[hash_name]
    if len(blob) != count * width:
        raise ValueError(f"a chunk index of {len(blob)} bytes for {count} chunks")
    empty = bytes(width)
    out: Hashes = []
    for i in range(count):
        entry = blob[i * width : (i + 1) * width]
        out.append(None if entry == empty else entry)
    return out


def from_entries(entries: list, size: int, chunk_size: int) -> Hashes:
    """The index of a volume whose non-zero chunks are ``entries`` ((offset, hash))."""
    found: Hashes = [None] * chunks_of(size, chunk_size)
    for offset, digest in entries:
        found[offset // chunk_size] = bytes(digest)
    return found


def rebuild(fd: int, size: int, chunk_size: int, hash_name: str) -> Hashes:
    """The index of what the device holds, read here (allocated chunks only)."""
    found: Hashes = [None] * chunks_of(size, chunk_size)
    buf = bytearray(chunk_size)
    windows = extents.chunk_windows(extents.data_extents(fd, 0, size), chunk_size, size)
    for offset, length, pieces in windows:
        extents.read_chunk(fd, buf, offset, length, pieces)
        if not extents.is_zero(buf, length):
            found[offset // chunk_size] = chunk_hash(hash_name, buf, length)[0]
    return found


def load(
    dir_fd: int, volume_id: str, size: int, chunk_size: int, hash_name: str, digest: str
) -> Hashes | None:
    """The saved index, if it describes this volume as of ``digest``; else None."""
    try:
        fd = os.open(_name(volume_id), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_INDEX_BYTES:
            return None
        with os.fdopen(os.dup(fd), "rb") as f:
            header = json.loads(f.readline(_HEADER_BYTES).decode("utf-8"))
            wanted = {
                "volume_id": volume_id,
                "size": size,
                "chunk_size": chunk_size,
                "hash": hash_name,
                "digest": digest,
            }
            if not isinstance(header, dict) or any(header.get(k) != v for k, v in wanted.items()):
                return None
            return unpack(f.read(MAX_INDEX_BYTES), chunks_of(size, chunk_size), hash_name)
    except (OSError, ValueError):
        return None
    finally:
        os.close(fd)


def save(
    dir_fd: int,
    volume_id: str,
    size: int,
    chunk_size: int,
    hash_name: str,
    digest: str,
    found: Hashes,
) -> None:
    """Write the index atomically (a random name, then renamed over the old one)."""
    header = {
        "volume_id": volume_id,
        "size": size,
        "chunk_size": chunk_size,
        "hash": hash_name,
        "digest": digest,
    }
    data = (json.dumps(header, sort_keys=True) + "\n").encode("utf-8") + pack(found, hash_name)
    tmp = f".{_name(volume_id)}.{secrets.token_hex(8)}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(tmp, flags, 0o600, dir_fd=dir_fd)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, _name(volume_id), src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dir_fd)
        raise
    os.fsync(dir_fd)


def remove(dir_fd: int, volume_id: str) -> None:
    """Forget the index before the volume is written (a killed copy leaves none)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(_name(volume_id), dir_fd=dir_fd)
    os.fsync(dir_fd)
