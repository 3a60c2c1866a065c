"""The source side: read a volume's allocated chunks and stream them.

Runs on the source conversion host as the forced command of the run's ephemeral key, so its
only input is one JSON request line on stdin; the device directory comes from the command
line the orchestrator fixed in authorized_keys, never from the request.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import struct
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import IO, Any, NamedTuple

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


def chunk_hash(hash_name: str, buf: bytearray, length: int) -> tuple[bytes, list[extents.Extent]]:
    """The hash of a chunk's content and its non-zero runs. Only the runs are hashed (with
    their positions and the chunk length), so zeros cost nothing, yet the hash depends on the
    content alone, never on how the chunk happens to be allocated on either side."""
    runs = extents.nonzero_runs(buf, length)
    view = memoryview(buf)
    h = new_hash(hash_name)
    h.update(struct.pack("!Q", length))
    for rel, n in runs:
        h.update(struct.pack("!QQ", rel, n))
        h.update(view[rel : rel + n])
    return h.digest(), runs


class _Chunk(NamedTuple):
    offset: int
    length: int
    digest: bytes
    records: list[tuple[bytes, int, int, Any]]  # kind, offset, raw length, payload
    data: int


class _Worker:
    """Reads, hashes and compresses one chunk. Runs in a small thread pool: preadv, hashlib
    and the codecs release the GIL, so chunks are prepared on several cores while the main
    thread writes the previous ones out. Each thread has its own codec context."""

    def __init__(self, fd: int, chunk_size: int, hash_name: str, codec_name: str) -> None:
        self.fd, self.chunk_size, self.hash_name = fd, chunk_size, hash_name
        self.codec_name = codec_name
        self.local = threading.local()

    def __call__(self, window: tuple[int, int, list[extents.Extent]]) -> _Chunk | None:
        offset, length, pieces = window
        codec = getattr(self.local, "codec", None)
        if codec is None:
            codec = self.local.codec = codecs.load(self.codec_name)
        buf = bytearray(self.chunk_size)  # fresh: the records below point into it
        extents.read_chunk(self.fd, buf, offset, length, pieces)
        if extents.is_zero(buf, length):
            return None  # allocated but all zeros: the next skip record covers it
        digest, runs = chunk_hash(self.hash_name, buf, length)
        view = memoryview(buf)
        records = [_pack(codec, view[rel : rel + n], offset + rel) for rel, n in runs]
        return _Chunk(offset, length, digest, records, sum(n for _, n in runs))


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
    throttle = _Throttle(request.get("rate_limit"))
    workers = max(1, min(int(request.get("workers", 2)), os.cpu_count() or 1, 8))
    work = _Worker(fd, chunk_size, hash_name, codec.name)
    pos = start
    chunks = data = 0
    pending: collections.deque[Future[_Chunk | None]] = collections.deque()
    windows = extents.chunk_windows(found, chunk_size, size)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        while True:
            # Keep a few chunks in flight, bounded so memory stays at a few chunk sizes.
            while len(pending) < 2 * workers:
                window = next(windows, None)
                if window is None:
                    break
                pending.append(pool.submit(work, window))
            if not pending:
                break
            chunk = pending.popleft().result()
            if chunk is None:
                continue
            if chunk.offset > pos:
                writer.record(SKIP, pos, chunk.offset - pos)
            for record in chunk.records:
                writer.record(*record)
            writer.record(HASH, chunk.offset, chunk.length, chunk.digest)
            chunks += 1
            data += chunk.data
            pos = chunk.offset + chunk.length
            throttle.wait(writer.bytes, writer)
    if pos < size:
        writer.record(SKIP, pos, size - pos)
    return {"chunks": chunks, "data_bytes": data, "stream_bytes": writer.bytes}


def _pack(codec: codecs.Codec, run: memoryview, offset: int) -> tuple[bytes, int, int, Any]:
    if codec.name != "none":
        # A slow codec proves itself on a sample before it gets the whole run.
        if not codec.cheap_on_random and len(run) > 2 * codecs.SAMPLE:
            sample = codec.compress(run[: codecs.SAMPLE])
            if len(sample) > codecs.WORTH_IT * codecs.SAMPLE:
                return DATA, offset, len(run), run
        packed = codec.compress(run)
        if len(packed) < codecs.WORTH_IT * len(run):
            return ZDATA, offset, len(run), packed
    return DATA, offset, len(run), run


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
