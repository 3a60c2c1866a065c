"""The destination side: apply a stream to the target device, checkpoint, verify.

``Sink`` is transport-free (it reads records from any binary stream) so the unit tests drive
it with a local source; ``pull`` wraps it with the SSH connection to the source host.
"""

from __future__ import annotations

import os
import struct
import time
from typing import Any, Callable

from . import codecs, extents, hashes, validate
from .framing import DATA, END, ERROR, HASH, HELLO, PREFIX, SAME, SKIP, ZDATA, Reader, Record
from .source import chunk_hash, new_hash
from .state import State

DIGEST_TAG = b"tenantshift-transfer-v1"


class RemoteError(Exception):
    """An error reported by the other end, with its kind (device_not_found, protocol...)."""

    def __init__(self, kind: str, message: str, volume_id: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.volume_id = volume_id


class VerifyError(Exception):
    pass


def content_digest(size: int, chunk_size: int, hash_name: str, entries: Any) -> str:
    """The volume's content digest: a hash over ``(offset, chunk hash)`` of every non-zero
    grid chunk, in order. Equal digests (same size) mean bit-identical logical content."""
    h = new_hash(hash_name)
    h.update(DIGEST_TAG + struct.pack("!QQ", size, chunk_size))
    for offset, digest in entries:
        h.update(struct.pack("!Q", offset) + digest)
    return h.hexdigest()


def device_digest(fd: int, size: int, chunk_size: int, hash_name: str) -> str:
    """``content_digest`` computed from a device alone: reads only allocated chunks."""
    buf = bytearray(chunk_size)
    entries = []
    for offset, length, pieces in extents.chunk_windows(
        extents.data_extents(fd, 0, size), chunk_size, size
    ):
        extents.read_chunk(fd, buf, offset, length, pieces)
        if not extents.is_zero(buf, length):
            entries.append((offset, chunk_hash(hash_name, buf, length)[0]))
    return content_digest(size, chunk_size, hash_name, entries)


class Sink:
    """Writes one volume's stream to ``fd`` from the state's resume point on.

    The source is not trusted further than its data: it must use the chunk size, hash and
    one of the codecs this side asked for, and every record must lie inside the volume, in
    order. Anything else is a ``RemoteError("protocol")``.
    """

    def __init__(
        self,
        fd: int,
        state: State,
        *,
        chunk_size: int,
        hash_name: str,
        codecs_offered: list[str],
        target_zeroed: bool = False,
        checkpoint_bytes: int = 256 * 1024 * 1024,
        checkpoint_seconds: float = 10.0,
        progress: Callable[[Sink], None] | None = None,
        part: int = 0,
        split: bool = False,
        index: list[bytes | None] | None = None,
    ) -> None:
        self.fd = fd
        self.state = state
        self.chunk_size = chunk_size
        self.hash_name = hash_name
        self.codecs_offered = list(codecs_offered)
        self.target_zeroed = target_zeroed
        self.block_device = extents.is_block_device(fd)
        self.checkpoint_bytes = checkpoint_bytes
        self.checkpoint_seconds = checkpoint_seconds
        self.progress = progress
        self.hello: dict[str, Any] = {}
        self.size = 0
        #: This stream's part of the volume: [begin, end); it starts at ``resumed_from``
        #: (its begin, or how far an earlier attempt got).
        self.part = part
        begin, end, done = state.parts[part] if state.parts else (0, -1, 0)
        self.begin = begin
        self.end = end  # -1: the source says (its size, or the part it computed)
        self.position = done
        self.resumed_from = done
        #: a fresh copy in several parts: the source computed this one (``[i, n]``); the
        #: caller checks that the parts tile the volume and records them in the state
        self.split = split
        self.data_bytes = 0  # non-zero bytes written by this attempt
        self.wire_bytes = 0
        self.chunks = 0
        #: (offset, hash) of every non-zero chunk as the source holds it now: prefix hashes
        #: for a resumed copy, then the hashes of the chunks this attempt received.
        self.entries: list[tuple[int, bytes]] = []
        self.summary: dict[str, Any] = {}
        #: A delta copy: what the destination holds per chunk (the index it sent the source).
        self.index = index
        #: A delta copy's chunks the source found unchanged, and those it zeroed here.
        self.chunks_same = 0
        self.chunks_zeroed = 0

    # -- stream

    def start(self, reader: Reader) -> dict[str, Any]:
        """Read the stream's hello; checks it against the request, the target and the state."""
        reader.magic()
        record = reader.read()
        if record.kind == ERROR:
            self._raise_remote(record)
        if record.kind != HELLO:
            raise RemoteError("protocol", "stream does not start with a hello record")
        hello = record.json()
        try:
            size = validate.integer(hello.get("size"), "size")
            validate.integer(hello.get("allocated"), "allocated")
            start = validate.integer(hello.get("start"), "start")
        except validate.RequestError as exc:
            raise RemoteError("protocol", f"hello: {exc}") from None
        if hello.get("chunk_size") != self.chunk_size or hello.get("hash") != self.hash_name:
            raise RemoteError("protocol", "the source chose another chunk size or hash")
        if hello.get("codec") not in self.codecs_offered:
            raise RemoteError("protocol", f"the source chose codec {hello.get('codec')!r}, "
                              "which was not offered")  # fmt: skip
        try:
            begin = validate.integer(hello.get("begin", 0), "begin")
            end = validate.integer(hello.get("end", size), "end")
        except validate.RequestError as exc:
            raise RemoteError("protocol", f"hello: {exc}") from None
        if self.split and not self.state.parts and start == begin:
            self.begin = self.position = self.resumed_from = begin
        if start != self.position or begin != self.begin:
            raise RemoteError("protocol", f"source started at {start}, not {self.position}")
        if self.state.parts and self.state.size != size:
            raise RemoteError("stale_state", "the resume point was saved for another size")
        if (
            not begin <= start <= end <= size
            or (self.end >= 0 and end != self.end)
            or begin % self.chunk_size
            or (end % self.chunk_size and end != size)
        ):
            raise RemoteError("protocol", f"the source's part [{begin}, {end}) is not as asked")
        target_size = extents.device_size(self.fd)
        if target_size < size:
            raise RemoteError(
                "target_too_small",
                f"destination device holds {target_size} bytes, the source volume {size}",
            )
        self.hello = hello
        self.size = size
        self.end = end
        if not self.state.parts and not self.split:  # one stream over the volume, fresh
            self.state.start_parts([[begin, end, start]], size)
        return hello

    def _chunk_length(self, offset: int) -> int:
        return min(self.chunk_size, self.size - offset)

    def run(self, reader: Reader) -> None:
        """Apply records until the end record."""
        chunk_size, hash_name = self.chunk_size, self.hash_name
        size = self.end  # records must lie in this stream's part
        codec = codecs.load(str(self.hello["codec"]))
        digest_size = hashes.SIZES[hash_name]
        buf = bytearray(chunk_size)
        view = memoryview(buf)
        zeros = memoryview(bytes(chunk_size))
        runs: list[extents.Extent] = []
        chunk_start = -1
        since_ckpt = 0
        last_ckpt = time.monotonic()
        prefix_open = self.position > self.begin  # prefix hashes come first, before any data
        prefix_next = self.begin
        while True:
            kind, offset, length, size_of_payload = reader.header()
            # A raw run's payload is read later, straight into the chunk buffer.
            payload = memoryview(b"") if kind == DATA else reader.payload(size_of_payload)
            record = Record(kind, offset, length, payload)
            self.wire_bytes = reader.bytes
            if kind != PREFIX:
                prefix_open = False
            if kind in (DATA, ZDATA, HASH, SKIP, PREFIX, SAME) and (
                record.offset > size or record.length > size - record.offset
            ):
                raise RemoteError("protocol", f"record at {record.offset} lies past the end")
            if kind in (DATA, ZDATA):
                base = record.offset - record.offset % chunk_size
                if base < self.position or not record.length:
                    raise RemoteError("protocol", f"run at {record.offset} out of order")
                if base != chunk_start:
                    if runs:
                        raise RemoteError("protocol", f"chunk at {chunk_start} has no hash record")
                    chunk_start = base  # the buffer is all zeros here (see HASH)
                rel = record.offset - base
                if runs and rel < runs[-1][0] + runs[-1][1]:
                    raise RemoteError("protocol", f"run at {record.offset} overlaps")
                out = view[rel : rel + record.length]
                if rel + record.length > chunk_size or len(out) != record.length:
                    raise RemoteError("protocol", f"run at {record.offset} crosses its chunk")
                if kind == ZDATA:
                    try:
                        codec.decompress_into(record.payload, out)
                    except codecs.CodecError as exc:
                        raise RemoteError("protocol", f"run at {record.offset}: {exc}") from None
                else:
                    if size_of_payload != record.length:
                        raise RemoteError("protocol", f"raw run at {record.offset}: wrong length")
                    reader.payload_into(out)
                    self.wire_bytes = reader.bytes
                runs.append((rel, record.length))
            elif kind == HASH:
                if not runs or record.offset != chunk_start or record.offset < self.position:
                    raise RemoteError("protocol", f"hash record for {record.offset} out of order")
                length = self._chunk_length(chunk_start)
                if record.length != length or len(record.payload) != digest_size:
                    raise RemoteError("protocol", f"hash record for {record.offset}: bad length")
                digest = chunk_hash(hash_name, buf, length)[0]
                if digest != bytes(record.payload):
                    raise VerifyError(
                        f"chunk at offset {record.offset} does not match its source hash "
                        "(corrupted in transit)"
                    )
                for rel, n in runs:
                    extents.write_full(self.fd, view[rel : rel + n], chunk_start + rel)
                    self.data_bytes += n
                    since_ckpt += n
                extents.start_writeback(self.fd, chunk_start, length)
                if not self.target_zeroed:
                    for rel, n in extents.gaps(runs, length):
                        extents.zero_range(self.fd, chunk_start + rel, n, self.block_device)
                self.entries.append((chunk_start, digest))
                self.chunks += 1
                for rel, n in runs:  # back to all zeros, clearing only what was written
                    view[rel : rel + n] = zeros[:n]
                runs = []
                chunk_start = -1
                self.position = record.offset + length
            elif kind == SAME:
                # A delta copy's chunk the destination holds already: nothing to write.
                i = record.offset // chunk_size
                if (
                    self.index is None
                    or runs
                    or record.offset != self.position
                    or record.offset % chunk_size
                    or record.length != self._chunk_length(record.offset)
                    or bytes(record.payload) != self.index[i]
                ):
                    raise RemoteError("protocol", f"unchanged chunk at {record.offset}: not ours")
                self.entries.append((record.offset, bytes(record.payload)))
                self.chunks_same += 1
                self.position = record.offset + record.length
            elif kind == SKIP:
                if runs or record.offset != self.position or not record.length:
                    raise RemoteError(
                        "protocol", f"skip at {record.offset}, expected {self.position}"
                    )
                if self.index is not None:
                    self._zero_held(record.offset, record.length)
                elif not self.target_zeroed:
                    extents.zero_range(self.fd, record.offset, record.length, self.block_device)
                self.position = record.offset + record.length
            elif kind == PREFIX:
                offset = record.offset
                if (
                    not prefix_open
                    or offset < prefix_next
                    or offset % chunk_size
                    or offset + record.length > self.resumed_from
                    or record.length != self._chunk_length(offset)
                    or len(record.payload) != digest_size
                ):
                    raise RemoteError("protocol", f"prefix hash for {offset} out of order")
                self.entries.append((offset, bytes(record.payload)))
                prefix_next = offset + record.length
            elif kind == END:
                if self.position != size or runs:
                    raise RemoteError("protocol", f"stream ended at {self.position} of {size}")
                self.summary = record.json()
                os.fsync(self.fd)
                if len(self.state.parts) == 1:
                    self.state.complete()  # a finished copy is never resumed from
                else:  # the pull completes the state once every part is done
                    self.state.checkpoint_part(self.part, self.position)
                return
            elif kind == ERROR:
                self._raise_remote(record)
            else:
                raise RemoteError("protocol", f"unexpected record {kind!r}")
            if (
                since_ckpt >= self.checkpoint_bytes
                or (since_ckpt and time.monotonic() - last_ckpt >= self.checkpoint_seconds)
            ) and chunk_start < 0:  # only between chunks: the position is then verified
                self._checkpoint()
                since_ckpt = 0
                last_ckpt = time.monotonic()
            if self.progress is not None:
                self.progress(self)

    def _zero_held(self, offset: int, length: int) -> None:
        """A delta copy zeroes only the chunks of a zero range that the destination's index
        says hold data: zeroing a whole volume on every sync would rewrite it (or, on a block
        device, send a write-zeroes over all of it)."""
        assert self.index is not None
        end = offset + length
        first, last = offset // self.chunk_size, (end - 1) // self.chunk_size
        for i in range(first, last + 1):
            if self.index[i] is None:
                continue
            lo = max(offset, i * self.chunk_size)
            hi = min(end, (i + 1) * self.chunk_size)
            extents.zero_range(self.fd, lo, hi - lo, self.block_device)
            self.chunks_zeroed += 1

    def _checkpoint(self) -> None:
        os.fsync(self.fd)
        self.state.checkpoint_part(self.part, self.position)

    @staticmethod
    def _raise_remote(record: Record) -> None:
        info = record.json()
        raise RemoteError(
            str(info.get("kind", "remote"))[:40],
            str(info.get("message", ""))[:2000],
            _volume_id(info.get("volume_id")),
        )

    # -- verification

    def verify(self, reread: bool = True) -> dict[str, Any]:
        """Compare the destination with the source's chunk hashes of this copy (prefix hashes
        for what earlier attempts wrote).

        ``reread``: re-read the whole destination after the final fsync: every chunk the
        source holds must hash the same, every other allocated chunk must be zeros.

        Otherwise (stream verification): the chunks this attempt received were hashed as
        decompressed, before they were written, and compared with the source's hash
        (``run``), every write was complete, and every range the source skipped was zeroed
        (unless ``target_zeroed`` said it already was). Only what earlier attempts wrote
        (the resumed prefix, whatever the state file claimed) is re-read, with the same
        checks as ``reread``. The digest is built from the compared hashes either way."""
        ranges = [(0, self.size)] if reread else [(self.begin, self.resumed_from)]
        return verify_entries(
            self.fd, self.size, self.chunk_size, self.hash_name, self.entries, ranges
        )


def verify_entries(
    fd: int,
    size: int,
    chunk_size: int,
    hash_name: str,
    entries: list[tuple[int, bytes]],
    ranges: list[tuple[int, int]],
) -> dict[str, Any]:
    """Re-read ``ranges`` of the destination (chunk-grid aligned) against the source's hashes
    ``entries``: every chunk the source holds hashes the same, every other allocated chunk
    reads as zeros. Returns the content digest over ``entries``."""
    entries = sorted(entries)
    buf = bytearray(chunk_size)
    reread = 0
    for lo, hi in ranges:
        if hi <= lo:
            continue
        reread += hi - lo
        # What the destination holds, chunk by chunk (holes inside chunks are not read).
        held = {
            offset: pieces
            for offset, _, pieces in extents.chunk_windows(
                extents.data_extents(fd, lo, hi), chunk_size, size
            )
        }
        for offset, digest in entries:
            if not lo <= offset < hi:
                continue
            length = min(chunk_size, size - offset)
            extents.read_chunk(fd, buf, offset, length, held.pop(offset, []))
            if chunk_hash(hash_name, buf, length)[0] != digest:
                raise VerifyError(f"destination chunk at offset {offset} differs from the source")
        for offset, pieces in sorted(held.items()):  # data where the source sent none
            length = min(chunk_size, size - offset)
            extents.read_chunk(fd, buf, offset, length, pieces)
            if not extents.is_zero(buf, length):
                raise VerifyError(
                    f"destination has data at offset {offset} where the source has zeros"
                )
    value = content_digest(size, chunk_size, hash_name, entries)
    return {"digest": value, "chunks_total": len(entries), "reread_bytes": reread}


def _volume_id(value: Any) -> str | None:
    # The peer's error names a volume; pass it on only if it is one.
    return value if isinstance(value, str) and validate.VOLUME_ID_RE.match(value) else None
