"""Sparse test volumes: random, compressible, explicit-zero regions with holes between."""

from __future__ import annotations

import hashlib
import os
import random
from pathlib import Path

MiB = 1024 * 1024


def text_like(n: int, seed: int) -> bytes:
    """Compressible bytes that are not trivially so (zstd -1 shrinks them ~3x)."""
    rng = random.Random(seed)
    words = [b"volume", b"tenant", b"server", b"extent", b"migrate", b"chunk", b"zero", b"hash"]
    out = bytearray()
    while len(out) < n:
        out += rng.choice(words) + str(rng.randint(0, 99999)).encode() + b" "
    return bytes(out[:n])


def make_volume(path: Path, size: int, regions: list[tuple[int, str, int]], seed: int = 1) -> None:
    """``regions``: (offset, kind, length) with kind random | text | zeros (allocated zeros)."""
    rng = random.Random(seed)
    with open(path, "wb") as f:
        f.truncate(size)
        for offset, kind, length in regions:
            if kind == "random":
                data = rng.randbytes(length)
            elif kind == "text":
                data = text_like(length, seed + offset)
            else:
                data = bytes(length)
            os.pwrite(f.fileno(), data, offset)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(4 * MiB):
            h.update(chunk)
    return h.hexdigest()


def allocated(path: Path) -> int:
    return os.stat(path).st_blocks * 512


#: The size of the ``pair`` fixture's volumes (tests/transfer/conftest.py).
PAIR_SIZE = 64 * MiB

STANDARD_REGIONS = [
    (0, "random", 1 * MiB),  # a boot sector and then some
    (5 * MiB + 4096, "text", 3 * MiB),  # not chunk aligned
    (20 * MiB, "zeros", 8 * MiB),  # allocated but zero: must not cross the wire
    (40 * MiB, "random", 6 * MiB),
    (47 * MiB, "text", 64 * 1024),
]
