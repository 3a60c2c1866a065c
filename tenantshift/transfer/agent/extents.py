"""Devices, allocated extents, zero detection and explicit zeroing.

Everything here works on a plain file descriptor, so it is the same code for a real block
device under /dev/disk/by-id and for the sparse files that stand in for one in tests.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import stat
import struct
from typing import Any, Iterator, Tuple

from .validate import VOLUME_ID_RE

Extent = Tuple[int, int]  # (offset, length)

#: Granularity of zero detection inside a chunk: small enough that a chunk holding a few
#: scattered writes sends only those, large enough that the per-block test is negligible.
ZERO_BLOCK = 64 * 1024
_ZERO_BLOCK_BYTES = bytes(ZERO_BLOCK)

#: Volume ids appear in by-id names truncated to 20 characters (virtio serial length).
ID_PREFIX = 20

BLKZEROOUT = 0x127F
FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02


class DeviceNotFound(Exception):
    def __init__(self, volume_id: str, device_dir: str, detail: str) -> None:
        super().__init__(detail)
        self.volume_id = volume_id
        self.device_dir = device_dir


def by_id_names(volume_id: str) -> list[str]:
    """The names a volume's disk gets under /dev/disk/by-id: udev names it after the serial
    that Nova sets to the volume id, truncated to 20 characters by virtio-blk."""
    short = volume_id[:ID_PREFIX]
    names = [
        f"virtio-{short}",
        f"scsi-0QEMU_QEMU_HARDDISK_{volume_id}",
        f"scsi-0QEMU_QEMU_HARDDISK_{short}",
        f"scsi-SQEMU_QEMU_HARDDISK_{volume_id}",
    ]
    return sorted(set(names), key=names.index)


def _usable(mode: int) -> bool:
    # A block device, or a regular file (a file-backed volume, as on the devcloud); never a
    # directory, character device, fifo or socket.
    return stat.S_ISBLK(mode) or stat.S_ISREG(mode)


def find_device(device_dir: str, volume_id: str) -> str:
    """The device of ``volume_id``: one of its exact by-id names in ``device_dir`` (never a
    pattern, never a guessed /dev/vdX). Several names may point at one device (virtio-,
    scsi-); that is fine, different devices are not."""
    if not VOLUME_ID_RE.match(volume_id):
        raise DeviceNotFound(volume_id, device_dir, "not a volume id")
    found = [
        path
        for path in (os.path.join(device_dir, name) for name in by_id_names(volume_id))
        if os.path.lexists(path)
    ]
    if not found:
        raise DeviceNotFound(
            volume_id,
            device_dir,
            f"no device for volume {volume_id} on this host "
            f"(none of {', '.join(by_id_names(volume_id))} in {device_dir})",
        )
    targets = sorted({os.path.realpath(p) for p in found})
    if len(targets) > 1:
        raise DeviceNotFound(
            volume_id,
            device_dir,
            f"volume {volume_id} matches several devices: {', '.join(found)}",
        )
    try:
        mode = os.stat(targets[0]).st_mode
    except OSError as exc:
        raise DeviceNotFound(volume_id, device_dir, f"volume {volume_id}: {exc}") from None
    if not _usable(mode):
        raise DeviceNotFound(
            volume_id, device_dir, f"volume {volume_id}: {found[0]} is not a block device"
        )
    return targets[0]


def open_device(device_dir: str, volume_id: str, flags: int) -> int:
    """``find_device`` then open it, and check the opened file again (the name could have
    changed in between)."""
    path = find_device(device_dir, volume_id)
    fd = os.open(path, flags | os.O_CLOEXEC)
    if not _usable(os.fstat(fd).st_mode):
        os.close(fd)
        raise DeviceNotFound(volume_id, device_dir, f"volume {volume_id}: not a block device")
    return fd


def device_size(fd: int) -> int:
    # st_size is 0 for block devices; seeking to the end works for both kinds.
    return os.lseek(fd, 0, os.SEEK_END)


def is_block_device(fd: int) -> bool:
    return stat.S_ISBLK(os.fstat(fd).st_mode)


def data_extents(fd: int, start: int, end: int) -> list[Extent]:
    """Allocated ranges in [start, end), via SEEK_DATA/SEEK_HOLE. Where those are not
    supported the whole range counts as data (block devices report it that way themselves):
    zero-chunk detection then does the skipping."""
    out: list[Extent] = []
    pos = start
    try:
        while pos < end:
            try:
                data = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError as exc:
                if exc.errno == errno.ENXIO:  # no data after pos
                    break
                raise
            if data >= end:
                break
            hole = min(os.lseek(fd, data, os.SEEK_HOLE), end)
            out.append((data, hole - data))
            pos = hole
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.EOPNOTSUPP):
            raise
        return [(start, end - start)] if end > start else []
    return out


def clip(found: list[Extent], start: int, end: int) -> list[Extent]:
    """``found`` restricted to [start, end)."""
    out: list[Extent] = []
    for offset, length in found:
        lo, hi = max(offset, start), min(offset + length, end)
        if hi > lo:
            out.append((lo, hi - lo))
    return out


def allocated(extents: list[Extent]) -> int:
    return sum(length for _, length in extents)


def chunk_windows(
    found: list[Extent], chunk_size: int, size: int
) -> Iterator[tuple[int, int, list[Extent]]]:
    """The chunk-grid windows ``[k*chunk_size, (k+1)*chunk_size) ∩ [0, size)`` that touch an
    extent, in order, each with the extent pieces inside it (relative to the window). Chunks
    are grid-aligned so that both ends (and a resumed copy) agree on chunk boundaries whatever
    the allocation looks like; the pieces let readers skip the holes inside a chunk, which the
    kernel would otherwise materialise as zero pages (slow)."""
    current = -1
    pieces: list[Extent] = []
    for offset, length in found:
        end = offset + length
        while offset < end:
            k = offset // chunk_size
            piece_end = min((k + 1) * chunk_size, end)
            if k != current:
                if current >= 0:
                    base = current * chunk_size
                    yield base, min(chunk_size, size - base), pieces
                current, pieces = k, []
            pieces.append((offset - k * chunk_size, piece_end - offset))
            offset = piece_end
    if current >= 0:
        base = current * chunk_size
        yield base, min(chunk_size, size - base), pieces


def read_chunk(fd: int, buf: bytearray, offset: int, length: int, pieces: list[Extent]) -> None:
    """Fill ``buf[:length]`` with the chunk at ``offset``: the pieces read, the rest zeros."""
    view = memoryview(buf)
    for rel, n in gaps(pieces, length):  # only what is not read over (memset costs too)
        view[rel : rel + n] = _zero(n)
    for rel, n in pieces:
        got = read_full(fd, view[rel : rel + n], offset + rel)
        if got != n:
            raise OSError(f"short read at offset {offset + rel}: {got} of {n} bytes")


def is_zero(buf: bytearray, length: int) -> bool:
    # bytearray.startswith compares with memcmp (~25 GB/s); memoryview == is element-wise.
    return buf.startswith(_zero(length))


_zeros: bytes = b""


def _zero(length: int) -> memoryview:
    global _zeros
    if len(_zeros) < length:
        _zeros = bytes(length)
    return memoryview(_zeros)[:length]


def nonzero_runs(buf: bytearray, length: int, block: int = ZERO_BLOCK) -> list[Extent]:
    """Ranges of ``buf[:length]`` that hold non-zero bytes, at ``block`` granularity,
    adjacent blocks merged."""
    runs: list[Extent] = []
    zero_block = _ZERO_BLOCK_BYTES if block == ZERO_BLOCK else bytes(block)
    run_start = -1
    for pos in range(0, length, block):
        n = min(block, length - pos)
        zero = buf.startswith(zero_block if n == block else zero_block[:n], pos)
        if not zero and run_start < 0:
            run_start = pos
        elif zero and run_start >= 0:
            runs.append((run_start, pos - run_start))
            run_start = -1
    if run_start >= 0:
        runs.append((run_start, length - run_start))
    return runs


def gaps(runs: list[Extent], length: int) -> list[Extent]:
    """The complement of ``runs`` in [0, length)."""
    out: list[Extent] = []
    pos = 0
    for offset, n in runs:
        if offset > pos:
            out.append((pos, offset - pos))
        pos = offset + n
    if pos < length:
        out.append((pos, length - pos))
    return out


_libc: ctypes.CDLL | None = None


def _fallocate(fd: int, mode: int, offset: int, length: int) -> bool:
    global _libc
    try:
        if _libc is None:
            _libc = ctypes.CDLL(None, use_errno=True)
            _libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
        return _libc.fallocate(fd, mode, offset, length) == 0
    except (OSError, AttributeError):
        return False


SYNC_FILE_RANGE_WRITE = 0x2
_sync_file_range: Any = None


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask the kernel to start writing [offset, offset+length) to the device now, without
    waiting for it (sync_file_range with SYNC_FILE_RANGE_WRITE alone). The disk then works
    while the stream goes on, and a checkpoint's or the final fsync finds little left to
    write, instead of stalling the stream for all of it. Best effort: ignored where missing."""
    global _sync_file_range
    if _sync_file_range is None:
        try:
            func = ctypes.CDLL(None, use_errno=True).sync_file_range
            func.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
            _sync_file_range = func
        except (OSError, AttributeError):
            _sync_file_range = False
    if _sync_file_range:
        _sync_file_range(fd, offset, length, SYNC_FILE_RANGE_WRITE)


def zero_range(fd: int, offset: int, length: int, block_device: bool) -> None:
    """Make [offset, offset+length) read as zeros without writing zeros where the target can
    do better. A file: a punched hole (it stays sparse). A block device: first a punched
    hole, which the kernel turns into an unmapping write-zeroes and refuses (EOPNOTSUPP)
    unless the device guarantees that the range then reads back as zeros, so a thin
    volume stays thin; a plain discard is never used, since it may leave old data
    readable. Then BLKZEROOUT (zeroes, allocating on a thin device). Writing zeros last."""
    if length <= 0:
        return
    if _fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length):
        return
    if block_device:
        try:
            fcntl.ioctl(fd, BLKZEROOUT, struct.pack("QQ", offset, length))
            return
        except OSError:
            pass
    step = 1024 * 1024
    end = offset + length
    while offset < end:
        n = min(step, end - offset)
        os.pwrite(fd, _zero(n), offset)
        offset += n


def read_full(fd: int, view: memoryview, offset: int) -> int:
    """Read ``len(view)`` bytes at ``offset`` (fewer only at end of device)."""
    done = 0
    while done < len(view):
        n = os.preadv(fd, [view[done:]], offset + done)
        if n == 0:
            break
        done += n
    return done


def write_full(fd: int, view: memoryview, offset: int) -> None:
    done = 0
    while done < len(view):
        done += os.pwrite(fd, view[done:], offset + done)
