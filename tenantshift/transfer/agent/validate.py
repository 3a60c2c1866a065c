"""Checks of the values that cross a trust boundary: the pull request from the orchestrator,
the serve request from the destination host (which holds only an ephemeral key), and the
hello of the source host. Everything here raises ``RequestError`` with a message that names
the field, so a bad value becomes a clean protocol error instead of a traceback."""

from __future__ import annotations

import re
from typing import Any

KiB = 1024
MiB = 1024 * KiB

#: Volume ids become path components and by-id names: UUID-like values only.
VOLUME_ID_RE = re.compile(r"\A[0-9a-f-]{1,64}\Z")
#: The chunk grid: whole zero-detection blocks, and small enough that the two chunk-sized
#: buffers of the sink stay modest.
CHUNK_STEP = 64 * KiB
MAX_CHUNK = 32 * MiB
#: Below this a copy of a real volume takes days, and each connection holds a root process.
MIN_RATE_LIMIT = 1 * MiB
MAX_GENERATION = 256
HASHES = ("sha256", "blake2b", "xxh3")
CODECS = ("zstd", "zlib", "none")
#: Offsets and sizes fit in a signed 64-bit off_t.
MAX_OFFSET = (1 << 63) - 1


class RequestError(ValueError):
    pass


def integer(value: Any, name: str, low: int = 0, high: int = MAX_OFFSET) -> int:
    # bool is an int subclass: a JSON true must not pass as 1
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise RequestError(f"{name} must be an integer in [{low}, {high}]")
    return value


def number(value: Any, name: str, low: float, high: float) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not low <= value <= high:
        raise RequestError(f"{name} must be a number in [{low}, {high}]")
    return float(value)


def volume_id(value: Any, name: str = "volume_id") -> str:
    if not isinstance(value, str) or not VOLUME_ID_RE.match(value):
        raise RequestError(f"{name} is not a volume id ([0-9a-f-], 1 to 64 characters)")
    return value


def chunk_size(value: Any) -> int:
    size = integer(value, "chunk_size", CHUNK_STEP, MAX_CHUNK)
    if size % CHUNK_STEP:
        raise RequestError("chunk_size must be a multiple of 64 KiB")
    return size


def hash_name(value: Any) -> str:
    if value not in HASHES:
        raise RequestError(f"hash must be one of {', '.join(HASHES)}")
    return str(value)


def codec_list(value: Any) -> list[str]:
    if not isinstance(value, list) or not 1 <= len(value) <= len(CODECS):
        raise RequestError("codecs must be a non-empty list")
    for name in value:
        if name not in CODECS:
            raise RequestError(f"codecs must be among {', '.join(CODECS)}")
    return [str(name) for name in value]


def rate_limit(value: Any) -> int | None:
    if value is None:
        return None
    return integer(value, "rate_limit", MIN_RATE_LIMIT)


def flag(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise RequestError(f"{name} must be true or false")
    return value


def generation(value: Any) -> str | None:
    if value is None:
        return None
    if (
        not isinstance(value, str)
        or not 0 < len(value) <= MAX_GENERATION
        or not value.isprintable()
    ):
        raise RequestError(f"source_generation must be printable, 1 to {MAX_GENERATION} chars")
    return value


def text(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value or not value.isprintable():
        raise RequestError(f"{name} must be a non-empty printable string")
    return value
