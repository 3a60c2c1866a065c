"""The source side: read a volume's allocated chunks and stream them.

Runs on the source conversion host as the forced command of the run's ephemeral key, so its
only input is one JSON request line on stdin; the device directory comes from the command
line the orchestrator fixed in authorized_keys, never from the request.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from typing import IO, Any

from . import codecs, extents
from .framing import DATA, END, ERROR, HASH, HELLO, SKIP, ZDATA, Writer, error_payload

HASHES = ("sha256", "blake2b")


def new_hash(name: str) -> Any:
    if name == "blake2b":
        return hashlib.blake2b(digest_size=32)
    if name == "sha256":
        return hashlib.sha256()
    raise ValueError(f"unknown hash {name!r}")


class _Throttle:
    """Optional bandwidth cap (bytes per second of stream), so a copy can share a link."""

    def __init__(self, rate: int | None) -> None:
        self.rate = rate
        self.start = time.monotonic()

    def wait(self, sent: int, writer: Writer) -> None:
        if not self.rate:
            return
        ahead = sent / self.rate - (time.monotonic() - self.start)
        if ahead > 0:
            writer.flush()
            time.sleep(ahead)


def serve(request: dict[str, Any], out: IO[bytes], device_dir: str) -> int:
    """Stream the volume named in ``request`` to ``out``; returns an exit status."""
    writer = Writer(out)
    writer.magic()
    volume_id = str(request.get("volume_id", ""))
    try:
        path = extents.find_device(device_dir, volume_id)
    except extents.DeviceNotFound as exc:
        writer.json(ERROR, error_payload("device_not_found", str(exc), volume_id))
        writer.flush()
        return 2
    chunk_size = int(request.get("chunk_size", 4 * 1024 * 1024))
    hash_name = str(request.get("hash", "sha256"))
    start = int(request.get("start", 0))
    codec = codecs.load(codecs.negotiate(list(request.get("codecs", ["none"])), codecs.available()))
    fd = os.open(path, os.O_RDONLY)
    try:
        size = extents.device_size(fd)
        if start % chunk_size or start > size:
            writer.json(ERROR, error_payload("protocol", f"bad start offset {start}", volume_id))
            return 2
        every = extents.data_extents(fd, 0, size)
        found = extents.clip(every, start, size)
        writer.json(
            HELLO,
            {
                "size": size,
                "allocated": extents.allocated(every),
                "codec": codec.name,
                "chunk_size": chunk_size,
                "hash": hash_name,
                "start": start,
            },
        )
        summary = _stream(fd, size, start, found, chunk_size, hash_name, codec, writer, request)
        writer.json(END, summary, offset=size)
        writer.flush()
        return 0
    finally:
        os.close(fd)


def _stream(
    fd: int,
    size: int,
    start: int,
    found: list[extents.Extent],
    chunk_size: int,
    hash_name: str,
    codec: codecs.Codec,
    writer: Writer,
    request: dict[str, Any],
) -> dict[str, Any]:
    buf = bytearray(chunk_size)
    view = memoryview(buf)
    throttle = _Throttle(request.get("rate_limit"))
    pos = start
    chunks = data = 0
    for offset, length in extents.chunk_windows(found, chunk_size, size):
        n = extents.read_full(fd, view[:length], offset)
        if n != length:
            raise OSError(f"short read at offset {offset}: {n} of {length} bytes")
        if extents.is_zero(buf, length):
            continue  # an allocated but all-zero chunk: the next skip record covers it
        if offset > pos:
            writer.record(SKIP, pos, offset - pos)
        for run_off, run_len in extents.nonzero_runs(buf, length):
            _send_run(writer, codec, view[run_off : run_off + run_len], offset + run_off)
            data += run_len
        writer.record(HASH, offset, length, _digest(hash_name, view[:length]))
        chunks += 1
        pos = offset + length
        throttle.wait(writer.bytes, writer)
    if pos < size:
        writer.record(SKIP, pos, size - pos)
    return {"chunks": chunks, "data_bytes": data, "stream_bytes": writer.bytes}


def _digest(hash_name: str, view: memoryview) -> bytes:
    h = new_hash(hash_name)
    h.update(view)
    return h.digest()


def _send_run(writer: Writer, codec: codecs.Codec, run: memoryview, offset: int) -> None:
    if codec.name != "none":
        # A slow codec proves itself on a sample before it gets the whole run.
        if not codec.cheap_on_random and len(run) > 2 * codecs.SAMPLE:
            sample = codec.compress(run[: codecs.SAMPLE])
            if len(sample) > codecs.WORTH_IT * codecs.SAMPLE:
                writer.record(DATA, offset, len(run), run)
                return
        packed = codec.compress(run)
        if len(packed) < codecs.WORTH_IT * len(run):
            writer.record(ZDATA, offset, len(run), packed)
            return
    writer.record(DATA, offset, len(run), run)


def main(stdin: IO[bytes], stdout: IO[bytes], device_dir: str) -> int:
    line = stdin.readline(65536)
    try:
        request = json.loads(line.decode("utf-8"))
    except ValueError:
        writer = Writer(stdout)
        writer.magic()
        writer.json(ERROR, error_payload("protocol", "the request is not a JSON line"))
        writer.flush()
        return 2
    return serve(request, stdout, device_dir)
