"""``compression: auto``: the source compresses only while the link, not the CPU, limits the
copy. The decision is a pure function (tested on its table); the stream test forces a busy host
and checks that the source switches to raw runs and that the copy stays identical."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from tenantshift.transfer.agent import framing, source
from tenantshift.transfer.agent.sink import Sink
from tenantshift.transfer.agent.state import State

from .helpers import MiB, make_volume, sha256_file

CHUNK = 4 * MiB
SRC_ID = "11111111-2222-3333-4444-555555555555"
DST_ID = "66666666-7777-8888-9999-000000000000"
SIZE = 48 * MiB


@pytest.mark.parametrize(
    ("compressing", "waiting", "writing", "idle", "expected"),
    [
        (True, 0.01, 0.20, 1.5, True),  # waits for the link, a core free: keep compressing
        (True, 0.20, 0.01, 1.5, False),  # waits for its workers: the codec is the limit
        (True, 0.01, 0.20, 0.3, False),  # the link waits, but no core to spare
        (False, 0.01, 0.20, 1.5, True),  # the link is the limit again: back on
        (False, 0.08, 0.10, 1.5, False),  # not clearly link-bound: stay raw
        (False, 0.01, 0.20, 0.5, False),  # link-bound but the host is busy: stay raw
        (True, 0.01, 0.20, None, True),  # idle CPU unknown (no /proc/stat): the stream decides
    ],
)
def test_compression_follows_the_bottleneck(
    compressing: bool, waiting: float, writing: float, idle: float | None, expected: bool
) -> None:
    assert source.decide(compressing, waiting, writing, idle) is expected


def _records(stream: bytes) -> list[framing.Record]:
    reader = framing.Reader(io.BytesIO(stream))
    reader.magic()
    out = []
    while True:
        rec = reader.read()
        out.append(rec._replace(payload=memoryview(bytes(rec.payload))))
        if rec.kind in (framing.END, framing.ERROR):
            return out


def _serve(src_dir: Path, adaptive: bool) -> bytes:
    out = io.BytesIO()
    request = {"volume_id": SRC_ID, "chunk_size": CHUNK, "codecs": ["zstd"],
               "adaptive": adaptive, "workers": 1}  # fmt: skip
    assert source.serve(request, out, str(src_dir), [SRC_ID]) == 0
    return out.getvalue()


@pytest.fixture()
def text_volume(tmp_path: Path) -> tuple[Path, Path]:
    src_dir = tmp_path / "src"
    src_dir.mkdir()
    src = src_dir / f"virtio-{SRC_ID[:20]}"
    make_volume(src, SIZE, [(0, "text", SIZE)])  # every chunk compresses well
    return src_dir, src


def test_a_busy_host_sends_raw_runs_and_the_copy_is_identical(
    text_volume: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src_dir, src = text_volume
    monkeypatch.setattr(source._Adapter, "WINDOW", 0.0)  # decide after every chunk
    monkeypatch.setattr(source, "_idle_cores", lambda *_: 0.0)  # no core to spare
    stream = _serve(src_dir, adaptive=True)
    kinds = [r.kind for r in _records(stream) if r.kind in (framing.DATA, framing.ZDATA)]
    # One worker prepares at most 2 chunks ahead: those were compressed before the first
    # decision, every later one goes raw.
    assert 0 < kinds.count(framing.ZDATA) <= 3
    assert kinds.count(framing.DATA) >= len(kinds) - 3

    dst = tmp_path / "dst"
    with open(dst, "wb") as f:
        f.truncate(SIZE)
    fd = os.open(dst, os.O_RDWR)
    state = State(str(tmp_path / "state"), {"source_volume_id": SRC_ID,
                  "destination_volume_id": DST_ID, "source_generation": None,
                  "chunk_size": CHUNK, "hash": "sha256"})  # fmt: skip
    try:
        sink = Sink(fd, state, chunk_size=CHUNK, hash_name="sha256", codecs_offered=["zstd"])
        reader = framing.Reader(io.BytesIO(stream))
        sink.start(reader)
        sink.run(reader)
    finally:
        state.close()
        os.close(fd)
    assert sha256_file(dst) == sha256_file(src)


def test_explicit_zstd_and_an_idle_host_keep_compressing(
    text_volume: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    src_dir, _ = text_volume
    monkeypatch.setattr(source._Adapter, "WINDOW", 0.0)
    monkeypatch.setattr(source, "_idle_cores", lambda *_: 0.0)
    explicit = [r.kind for r in _records(_serve(src_dir, adaptive=False))]
    assert framing.DATA not in explicit and explicit.count(framing.ZDATA) == SIZE // CHUNK

    # An idle host whose stream waits on the link (the sink is slow) keeps compressing.
    monkeypatch.setattr(source, "_idle_cores", lambda *_: 4.0)
    real = source.decide
    monkeypatch.setattr(source, "decide", lambda c, w, r, i: real(c, 0.0, 1.0, i))
    adaptive = [r.kind for r in _records(_serve(src_dir, adaptive=True))]
    assert framing.DATA not in adaptive and adaptive.count(framing.ZDATA) == SIZE // CHUNK
