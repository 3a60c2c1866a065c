"""The source side: read a volume's allocated chunks and stream them.

Runs on the source conversion host as the forced command of a copy's ephemeral key, so its
only input is one JSON request line on stdin; the device directory and the volumes it may
read come from the command line the orchestrator fixed in authorized_keys, never from the
request. Every request field is checked (``parse_request``): the process runs as root.
"""

from __future__ import annotations

import collections
import json
import os
import queue
import struct
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import IO, Any, Iterator, NamedTuple, Sequence

from . import codecs, extents, hashes, validate
from .framing import (
    DATA,
    END,
    ERROR,
    HASH,
    HELLO,
    PREFIX,
    SAME,
    SKIP,
    ZDATA,
    Writer,
    error_payload,
)

HASHES = validate.HASHES


def new_hash(name: str) -> Any:
    return hashes.new(name)


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


class Request(NamedTuple):
    volume_id: str
    chunk_size: int
    hash_name: str
    start: int
    codecs: list[str]
    rate_limit: int | None
    workers: int
    verify_prefix: bool
    begin: int
    end: int | None
    split: tuple[int, int] | None
    #: A delta copy: bytes of the destination's chunk index that follow the request line.
    delta_index: int


def parse_request(request: Any) -> Request:
    """The destination's request, checked: whoever holds the ephemeral key sends it, and the
    process answering it runs as root."""
    if not isinstance(request, dict):
        raise validate.RequestError("the request is not a JSON object")
    return Request(
        volume_id=validate.volume_id(request.get("volume_id")),
        chunk_size=validate.chunk_size(request.get("chunk_size", 4 * 1024 * 1024)),
        hash_name=validate.hash_name(request.get("hash", "sha256")),
        start=validate.integer(request.get("start", 0), "start"),
        codecs=validate.codec_list(request.get("codecs", ["none"])),
        rate_limit=validate.rate_limit(request.get("rate_limit")),
        workers=validate.integer(request.get("workers", 2), "workers", 1, 8),
        verify_prefix=validate.flag(request.get("verify_prefix", False), "verify_prefix"),
        begin=validate.integer(request.get("begin", 0), "begin"),
        end=None if request.get("end") is None else validate.integer(request["end"], "end"),
        split=_split(request.get("split")),
        delta_index=validate.integer(request.get("delta_index", 0), "delta_index", 0, MAX_INDEX),
    )


#: The largest chunk index a delta copy may send (4 MiB chunks of 16 TiB, 32-byte hashes).
MAX_INDEX = 128 * 1024 * 1024


def _split(value: Any) -> tuple[int, int] | None:
    """``[i, n]``: stream part ``i`` of ``n`` parts of equal allocated size (the source
    computes them: it knows the allocation)."""
    if value is None:
        return None
    if not isinstance(value, list) or len(value) != 2:
        raise validate.RequestError("split must be [index, parts]")
    n = validate.integer(value[1], "split parts", 1, MAX_PARTS)
    return validate.integer(value[0], "split index", 0, n - 1), n


#: Streams a copy may be split into.
MAX_PARTS = 8


def split_points(found: list[extents.Extent], chunk_size: int, size: int, parts: int) -> list[int]:
    """``parts + 1`` chunk-grid offsets from 0 to ``size`` that cut the allocated bytes of
    ``found`` into ``parts`` nearly equal shares. Deterministic: every stream of a copy
    computes the same cuts (the destination checks that the parts it gets tile the volume)."""
    total = extents.allocated(found)
    points = [0]
    seen = 0
    want = 1
    for offset, length in found:
        while want < parts and seen + length >= total * want / parts:
            cut = offset + int(total * want / parts - seen)
            cut = min(cut - cut % chunk_size, size - size % chunk_size)
            points.append(max(cut, points[-1]))
            want += 1
        seen += length
    points += [size] * (parts + 1 - len(points))
    return points


def serve(
    request: Any,
    out: IO[bytes],
    device_dir: str,
    allowed_volume_ids: Sequence[str],
    index_blob: bytes = b"",
) -> int:
    """Stream the volume named in ``request`` to ``out``; returns an exit status. Only the
    volumes in ``allowed_volume_ids`` (fixed by the forced command, not by the request) can
    be read. ``index_blob``: a delta copy's chunk index of the destination (what followed the
    request line): chunks whose hash it holds are not sent."""
    writer = Writer(out)
    writer.magic()

    def fail(kind: str, message: str, volume_id: str | None = None) -> int:
        writer.json(ERROR, error_payload(kind, message, volume_id))
        writer.flush()
        return 2

    try:
        req = parse_request(request)
    except validate.RequestError as exc:
        return fail("protocol", str(exc))
    volume_id = req.volume_id
    if req.hash_name not in hashes.available():
        return fail("protocol", f"this host cannot compute {req.hash_name} hashes", volume_id)
    if volume_id not in allowed_volume_ids:
        return fail("forbidden", f"this key may not read volume {volume_id}", volume_id)
    try:
        fd = extents.open_device(device_dir, volume_id, os.O_RDONLY)
    except extents.DeviceNotFound as exc:
        return fail("device_not_found", str(exc), volume_id)
    except OSError as exc:
        return fail("io", f"volume {volume_id}: cannot open its device: {exc}", volume_id)
    try:
        size = extents.device_size(fd)
        every = extents.data_extents(fd, 0, size)
        begin, start, end = req.begin, req.start, size if req.end is None else req.end
        if req.split is not None:
            index, parts = req.split
            points = split_points(every, req.chunk_size, size, parts)
            begin = start = points[index]
            end = points[index + 1]
        if (
            begin % req.chunk_size
            or start % req.chunk_size
            or not begin <= start <= end <= size
            or (end % req.chunk_size and end != size)
        ):
            return fail("protocol", f"bad range [{begin}, {start}, {end})", volume_id)
        held: list[bytes | None] | None = None  # a delta copy: the destination's hashes
        if req.delta_index:
            width = hashes.SIZES[req.hash_name]
            count = (size + req.chunk_size - 1) // req.chunk_size
            if len(index_blob) != count * width:
                return fail("protocol", "the chunk index does not fit the volume", volume_id)
            empty = bytes(width)
            held = [
                None if index_blob[i : i + width] == empty else index_blob[i : i + width]
                for i in range(0, len(index_blob), width)
            ]
        codec = codecs.load(codecs.negotiate(req.codecs, codecs.available()))
        writer.json(
            HELLO,
            {
                "size": size,
                "allocated": extents.allocated(every),
                "codec": codec.name,
                "chunk_size": req.chunk_size,
                "hash": req.hash_name,
                "start": start,
                "begin": begin,
                "end": end,
            },
        )
        if req.verify_prefix and start > begin:
            _prefix(fd, extents.clip(every, begin, start), req, start, writer)
        found = extents.clip(every, start, end)
        summary = _stream(fd, start, end, found, req, codec, writer, held)
        writer.json(END, summary, offset=end)
        writer.flush()
        return 0
    except (OSError, codecs.CodecError) as exc:
        if isinstance(exc, BrokenPipeError):
            raise
        return fail("io", f"volume {volume_id}: {exc}", volume_id)
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
    buf: bytearray  # the records point into it: back to the pool once they are written
    same: bool = False  # a delta copy's chunk the destination holds already


class _Worker:
    """Reads, hashes and compresses one chunk. Runs in a small thread pool: preadv, hashlib
    and the codecs release the GIL, so chunks are prepared on several cores while the main
    thread writes the previous ones out. Each thread has its own codec context."""

    def __init__(
        self,
        fd: int,
        chunk_size: int,
        hash_name: str,
        codec_name: str,
        index: list[bytes | None] | None = None,
    ) -> None:
        self.fd, self.chunk_size, self.hash_name = fd, chunk_size, hash_name
        self.codec_name = codec_name  # "" for hashes only (prefix verification)
        self.index = index  # a delta copy: what the destination holds, per chunk
        self.local = threading.local()
        #: Chunk buffers, reused: a fresh 4 MiB bytearray per chunk costs the kernel a
        #: page fault and a zeroed page for every 4 KiB of it. ``_prepared`` sizes it.
        self.buffers: queue.SimpleQueue[bytearray] = queue.SimpleQueue()

    def __call__(self, window: tuple[int, int, list[extents.Extent]]) -> _Chunk | None:
        offset, length, pieces = window
        codec = getattr(self.local, "codec", None)
        if codec is None and self.codec_name:
            codec = self.local.codec = codecs.load(self.codec_name)
        buf = self.buffers.get()  # the records below point into it
        extents.read_chunk(self.fd, buf, offset, length, pieces)
        if extents.is_zero(buf, length):
            self.buffers.put(buf)
            return None  # allocated but all zeros: the next skip record covers it
        digest, runs = chunk_hash(self.hash_name, buf, length)
        if self.index is not None and self.index[offset // self.chunk_size] == digest:
            return _Chunk(offset, length, digest, [], 0, buf, same=True)  # nothing to pack
        if codec is None:
            return _Chunk(offset, length, digest, [], 0, buf)
        view = memoryview(buf)
        records = [_pack(codec, view[rel : rel + n], offset + rel) for rel, n in runs]
        return _Chunk(offset, length, digest, records, sum(n for _, n in runs), buf)


def _prepared(
    fd: int, windows: Iterator[tuple[int, int, list[extents.Extent]]], work: _Worker, workers: int
) -> Iterator[_Chunk]:
    """The non-zero chunks of ``windows``, in order, prepared by a small thread pool."""
    pending: collections.deque[Future[_Chunk | None]] = collections.deque()
    for _ in range(2 * workers + 1):  # in flight, plus the one being written
        work.buffers.put(bytearray(work.chunk_size))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        while True:
            # Keep a few chunks in flight, bounded so memory stays at a few chunk sizes.
            while len(pending) < 2 * workers:
                window = next(windows, None)
                if window is None:
                    break
                pending.append(pool.submit(work, window))
            if not pending:
                return
            chunk = pending.popleft().result()
            if chunk is not None:
                yield chunk  # the caller writes its records out before it asks for more
                work.buffers.put(chunk.buf)


def _workers(req: Request, codec_name: str = "") -> int:
    if codec_name in ("", "none"):
        # Reading and hashing alone outrun any SSH stream on one thread; a second one only
        # adds hand-offs (measured: 20-30% more CPU for the same wall time).
        return 1
    return max(1, min(req.workers, os.cpu_count() or 1, 8))


def _prefix(fd: int, found: list[extents.Extent], req: Request, start: int, writer: Writer) -> None:
    """Hashes of the non-zero chunks before the start offset, as the source holds them now.
    Costs a read of the prefix's allocated data on the source, none on the wire."""
    work = _Worker(fd, req.chunk_size, req.hash_name, "")
    windows = extents.chunk_windows(found, req.chunk_size, start)
    for chunk in _prepared(fd, windows, work, _workers(req)):
        writer.record(PREFIX, chunk.offset, chunk.length, chunk.digest)


def _stream(
    fd: int,
    start: int,
    size: int,
    found: list[extents.Extent],
    req: Request,
    codec: codecs.Codec,
    writer: Writer,
    index: list[bytes | None] | None = None,
) -> dict[str, Any]:
    """Records for [start, size) (``size``: the end of this stream's part). A delta copy
    (``index``) sends a chunk the destination holds as one ``SAME`` record."""
    throttle = _Throttle(req.rate_limit)
    work = _Worker(fd, req.chunk_size, req.hash_name, codec.name, index)
    pos = start
    chunks = data = read = 0

    def counted() -> Iterator[tuple[int, int, list[extents.Extent]]]:
        nonlocal read
        for window in extents.chunk_windows(found, req.chunk_size, size):
            read += sum(n for _, n in window[2])
            yield window

    for chunk in _prepared(fd, counted(), work, _workers(req, codec.name)):
        if chunk.offset > pos:
            _skip(writer, pos, chunk.offset - pos, req.chunk_size)
        if chunk.same:
            writer.record(SAME, chunk.offset, chunk.length, chunk.digest)
        else:
            for record in chunk.records:
                writer.record(*record)
            writer.record(HASH, chunk.offset, chunk.length, chunk.digest)
        chunks += 1
        data += chunk.data
        pos = chunk.offset + chunk.length
        throttle.wait(writer.bytes, writer)
    if pos < size:
        _skip(writer, pos, size - pos, req.chunk_size)
    return {"chunks": chunks, "data_bytes": data, "stream_bytes": writer.bytes, "read_bytes": read}


def _skip(writer: Writer, offset: int, length: int, chunk_size: int) -> None:
    """A zero range as skip records: several when it is longer than a record's 32-bit length
    can say (a hole of 4 GiB or more), each but the last a whole number of chunks."""
    most = (MAX_RECORD_LENGTH // chunk_size) * chunk_size
    while length > most:
        writer.record(SKIP, offset, most)
        offset += most
        length -= most
    writer.record(SKIP, offset, length)


#: The largest length a record's header can state.
MAX_RECORD_LENGTH = (1 << 32) - 1


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


def main(
    stdin: IO[bytes], stdout: IO[bytes], device_dir: str, allowed_volume_ids: Sequence[str]
) -> int:
    line = stdin.readline(65536)
    blob = b""
    try:
        request = json.loads(line.decode("utf-8"))
        wanted = request.get("delta_index") if isinstance(request, dict) else None
        if isinstance(wanted, int) and 0 < wanted <= MAX_INDEX:
            # A delta copy's chunk index follows the line; ``serve`` checks its length.
            blob = stdin.read(wanted)
    except ValueError:
        writer = Writer(stdout)
        writer.magic()
        writer.json(ERROR, error_payload("protocol", "the request is not a JSON line"))
        writer.flush()
        return 2
    return serve(request, stdout, device_dir, allowed_volume_ids, blob)
