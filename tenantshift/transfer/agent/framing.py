"""The stream between the source agent and the destination agent.

A stream is ``MAGIC`` then records. Each record is a fixed header ``kind, offset, raw length,
payload length`` followed by the payload. Kinds:

``J`` hello (JSON: size, allocated bytes, codec, chunk size, hash, start offset)
``D`` data run sent raw; ``Z`` data run compressed with the negotiated codec
``H`` chunk complete: offset and length of the grid chunk, payload its hash (of the whole
      chunk, zeros included); the runs of that chunk precede it
``S`` skip: [offset, offset+raw length) is all zeros on the source
``P`` prefix hash: on a resumed copy, the hash of a non-zero chunk *before* the start offset,
      as the source holds it now (no data follows); sent right after the hello, so the
      destination verifies what earlier attempts wrote against the source of this copy
``E`` end (JSON summary); ``X`` error (JSON: kind, message, volume_id)

Records come in offset order and cover the volume from the start offset to its size, so the
receiver always knows how far the stream has been verified.
"""

from __future__ import annotations

import json
import struct
from typing import IO, Any, NamedTuple

MAGIC = b"TSX2"
HEADER = struct.Struct("!cQII")

HELLO = b"J"
DATA = b"D"
ZDATA = b"Z"
HASH = b"H"
SKIP = b"S"
END = b"E"
ERROR = b"X"
PREFIX = b"P"
#: A delta copy's chunk that the destination holds already (its hash is the payload).
SAME = b"="
KINDS = frozenset((HELLO, DATA, ZDATA, HASH, SKIP, END, ERROR, PREFIX, SAME))

#: Largest payload accepted (a corrupt header must not make us allocate gigabytes).
MAX_PAYLOAD = 64 * 1024 * 1024


class FramingError(Exception):
    pass


class Record(NamedTuple):
    kind: bytes
    offset: int
    length: int  # raw (uncompressed) length, or the range length for S and H
    payload: memoryview

    def json(self) -> dict[str, Any]:
        value = json.loads(bytes(self.payload).decode("utf-8"))
        if not isinstance(value, dict):
            raise FramingError(f"record {self.kind!r}: JSON payload is not an object")
        return value


class Writer:
    """Writes records; counts every byte it puts on the stream."""

    def __init__(self, out: IO[bytes]) -> None:
        self._out = out
        self.bytes = 0

    def _write(self, data: Any) -> None:
        self._out.write(data)
        self.bytes += len(data)

    def magic(self) -> None:
        self._write(MAGIC)

    def record(self, kind: bytes, offset: int, length: int, payload: Any = b"") -> None:
        self._write(HEADER.pack(kind, offset, length, len(payload)))
        if len(payload):
            self._write(payload)

    def json(self, kind: bytes, obj: dict[str, Any], offset: int = 0) -> None:
        self.record(kind, offset, 0, json.dumps(obj, sort_keys=True).encode("utf-8"))

    def flush(self) -> None:
        self._out.flush()


class Reader:
    """Reads records into one reusable buffer (so a payload is only valid until the next
    read); counts every byte it takes off the stream."""

    def __init__(self, inp: IO[bytes]) -> None:
        self._inp = inp
        self.bytes = 0
        self._buf = bytearray(1024 * 1024)
        self._header = bytearray(HEADER.size)

    def _read_into(self, view: memoryview) -> None:
        done = 0
        while done < len(view):
            n = self._inp.readinto(view[done:])  # type: ignore[attr-defined]
            if not n:
                raise EOFError(f"stream ended after {self.bytes + done} bytes")
            done += n
        self.bytes += done

    def magic(self) -> None:
        got = bytearray(len(MAGIC))
        self._read_into(memoryview(got))
        if bytes(got) != MAGIC:
            raise FramingError(f"not a tenantshift transfer stream (got {bytes(got)!r})")

    def read(self) -> Record:
        kind, offset, length, size = self.header()
        return Record(kind, offset, length, self.payload(size))

    def header(self) -> tuple[bytes, int, int, int]:
        """The next record's ``kind, offset, raw length, payload size``; the caller must then
        take the payload with ``payload`` or ``payload_into``."""
        self._read_into(memoryview(self._header))
        kind, offset, length, size = HEADER.unpack(self._header)
        if kind not in KINDS:
            raise FramingError(f"unknown record kind {kind!r} at stream byte {self.bytes}")
        if size > MAX_PAYLOAD:
            raise FramingError(f"record payload of {size} bytes is too large")
        return kind, offset, length, size

    def payload(self, size: int) -> memoryview:
        """The payload, in the reader's own buffer (valid until the next read)."""
        if len(self._buf) < size:
            self._buf = bytearray(size)
        view = memoryview(self._buf)[:size]
        if size:
            self._read_into(view)
        return view

    def payload_into(self, out: memoryview) -> None:
        """The payload, read straight into ``out`` (exactly its size): a raw data run goes
        from the pipe to the chunk buffer without a copy in between."""
        self._read_into(out)


def error_payload(kind: str, message: str, volume_id: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": kind, "message": message}
    if volume_id is not None:
        out["volume_id"] = volume_id
    return out
