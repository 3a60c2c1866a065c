"""Review M1: a malicious source host cannot choose the codec, chunk size or hash, inflate a
small payload into gigabytes, write outside the volume, or crash the destination agent."""

from __future__ import annotations

import io
import json
import os
import tracemalloc
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tenantshift.transfer.agent import codecs, framing
from tenantshift.transfer.agent.sink import RemoteError, Sink
from tenantshift.transfer.agent.state import State

from .fakes import CHUNK, DST_ID, SRC_ID, crafted_ssh, last, request, run_pull

SIZE = 16 * 1024 * 1024
BLOCK = 64 * 1024


def _hello(**overrides: Any) -> dict[str, Any]:
    hello = {"size": SIZE, "allocated": SIZE, "codec": "none", "chunk_size": CHUNK,
             "hash": "sha256", "start": 0}  # fmt: skip
    hello.update(overrides)
    return hello


def _stream(hello: dict[str, Any], *records: tuple[bytes, int, int, bytes]) -> bytes:
    out = io.BytesIO()
    w = framing.Writer(out)
    w.magic()
    w.json(framing.HELLO, hello)
    for kind, offset, length, payload in records:
        out.write(framing.HEADER.pack(kind, offset, length, len(payload)) + payload)
    return out.getvalue()


@pytest.fixture()
def target(tmp_path: Path) -> Path:
    dst_dir = tmp_path / "dst"
    dst_dir.mkdir()
    path = dst_dir / f"virtio-{DST_ID[:20]}"
    with open(path, "wb") as f:
        f.truncate(SIZE)
    return path


def _apply(target: Path, tmp_path: Path, stream: bytes, offered: list[str] | None = None) -> None:
    fd = os.open(target, os.O_RDWR)
    key = {"source_volume_id": SRC_ID, "destination_volume_id": DST_ID,
           "chunk_size": CHUNK, "hash": "sha256"}  # fmt: skip
    state = State(str(tmp_path / "state"), key)
    sink = Sink(fd, state, chunk_size=CHUNK, hash_name="sha256",
                codecs_offered=offered or ["none"])  # fmt: skip
    try:
        reader = framing.Reader(io.BytesIO(stream))
        sink.start(reader)
        sink.run(reader)
    finally:
        state.close()
        os.close(fd)


def _protocol_error(target: Path, tmp_path: Path, stream: bytes, match: str, **kw: Any) -> None:
    with pytest.raises(RemoteError, match=match) as err:
        _apply(target, tmp_path, stream, **kw)
    assert err.value.kind == "protocol"


@pytest.mark.parametrize(
    ("hello", "match"),
    [
        (_hello(codec="zlib"), "codec 'zlib', which was not offered"),
        (_hello(chunk_size=0), "another chunk size"),
        (_hello(chunk_size=1 << 40), "another chunk size"),
        (_hello(hash="md5"), "another chunk size or hash"),
        (_hello(size=-1), "size must be"),
        (_hello(size="big"), "size must be"),
    ],
)
def test_the_source_cannot_choose_the_parameters(
    target: Path, tmp_path: Path, hello: dict[str, Any], match: str
) -> None:
    _protocol_error(target, tmp_path, _stream(hello), match)


def test_a_zlib_bomb_is_not_inflated(target: Path, tmp_path: Path) -> None:
    bomb = zlib.compress(bytes(64 * 1024 * 1024), 9)  # ~64 KiB that inflate to 64 MiB
    stream = _stream(_hello(codec="zlib"), (framing.ZDATA, 0, BLOCK, bomb))
    tracemalloc.start()
    try:
        _protocol_error(target, tmp_path, stream, "zlib run", offered=["zlib", "none"])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 24 * 1024 * 1024  # a few chunk buffers, never the 64 MiB the bomb holds


@pytest.mark.parametrize(
    ("record", "match"),
    [
        ((framing.DATA, SIZE, BLOCK, bytes(BLOCK)), "past the end"),  # past the announced size
        ((framing.DATA, 1 << 40, BLOCK, bytes(BLOCK)), "past the end"),
        ((framing.DATA, (1 << 64) - BLOCK, BLOCK, bytes(BLOCK)), "past the end"),  # no overflow
        ((framing.SKIP, 0, SIZE + 1, b""), "past the end"),
        ((framing.SKIP, 0, 0, b""), "skip at 0"),
        ((framing.HASH, 0, CHUNK, b"x" * 32), "out of order"),  # a hash without data
        ((framing.PREFIX, 0, CHUNK, b"x" * 32), "prefix hash"),  # not a resumed copy
    ],
)
def test_records_outside_the_volume_or_out_of_order_are_refused(
    target: Path, tmp_path: Path, record: tuple[bytes, int, int, bytes], match: str
) -> None:
    _protocol_error(target, tmp_path, _stream(_hello(), record), match)
    assert target.stat().st_size == SIZE  # the file did not grow


def test_a_hash_record_must_cover_its_whole_chunk(target: Path, tmp_path: Path) -> None:
    data = os.urandom(BLOCK)
    stream = _stream(_hello(), (framing.DATA, 0, BLOCK, data), (framing.HASH, 0, BLOCK, b""))
    _protocol_error(target, tmp_path, stream, "bad length")


StreamFactory = Callable[[], bytes]
CRAFTED: dict[str, StreamFactory] = {
    "garbage": lambda: b"HTTP/1.1 200 OK\r\n\r\n",
    "bad-json-hello": lambda: framing.MAGIC + framing.HEADER.pack(b"J", 0, 0, 3) + b"\xff{[",
    "hello-not-object": lambda: framing.MAGIC + framing.HEADER.pack(b"J", 0, 0, 2) + b"[]",
    "huge-payload": lambda: framing.MAGIC + framing.HEADER.pack(b"J", 0, 0, 1 << 31),
    "chunk0": lambda: _stream(_hello(chunk_size=0)),
    "far": lambda: _stream(_hello(), (framing.DATA, 1 << 40, BLOCK, bytes(BLOCK))),
    "overflow": lambda: _stream(_hello(), (framing.SKIP, 1 << 63, 1, b"")),
    "bad-error-record": lambda: _stream(_hello(), (framing.ERROR, 0, 0, b"\x00")),
    "zbomb": lambda: _stream(
        _hello(codec="zlib"), (framing.ZDATA, 0, BLOCK, zlib.compress(bytes(1 << 24)))
    ),
}


@pytest.mark.parametrize("name", sorted(CRAFTED))
def test_the_pull_agent_reports_a_protocol_error_never_a_traceback(
    target: Path, tmp_path: Path, name: str
) -> None:
    ssh = crafted_ssh(tmp_path, CRAFTED[name]())
    req = request(ssh, target.parent, tmp_path / "state", codecs=["zlib", "none"])
    status, lines = run_pull(req)
    error = last(lines)
    assert status == 1 and error["type"] == "error", lines
    assert error["kind"] == "protocol", error
    assert target.stat().st_size == SIZE
    json.dumps(error)  # one clean JSON line for the orchestrator


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"chunk_size": 0}, "chunk_size"),
        ({"verify": "yes"}, "verify"),
        ({"state_dir": "relative"}, "state_dir"),
        ({"ssh": {"key": "k", "address": "-oProxyCommand=sh", "user": "root"}}, "ssh.address"),
    ],
)
def test_a_bad_pull_request_is_a_protocol_error(
    target: Path, tmp_path: Path, overrides: dict[str, Any], field: str
) -> None:
    req = dict(request("/bin/false", target.parent, tmp_path / "state"), **overrides)
    status, lines = run_pull(req)
    assert status == 2 and lines[-1]["kind"] == "protocol" and field in lines[-1]["message"]


class _FakeZstandard:
    """The ``zstandard`` module's surface, as a frame that claims a huge content size."""

    class ZstdError(Exception):
        pass

    def __init__(self) -> None:
        self.decompressed = False

    def frame_content_size(self, data: Any) -> int:
        return 1 << 40

    def ZstdCompressor(self, level: int) -> Any:
        return None

    def ZstdDecompressor(self) -> Any:
        outer = self

        class D:
            def decompress(self, data: Any, max_output_size: int = 0) -> bytes:
                outer.decompressed = True
                return bytes(1 << 20)

        return D()


def test_the_zstandard_path_refuses_a_frame_claiming_more_than_the_run() -> None:
    module = _FakeZstandard()
    codec = codecs._ModuleZstd(module)
    with pytest.raises(codecs.CodecError, match="declares"):
        codec.decompress_into(memoryview(b"frame"), memoryview(bytearray(BLOCK)))
    assert not module.decompressed  # refused before anything was allocated
