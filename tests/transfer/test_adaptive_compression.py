"""``compression: auto``: the source measures which mode moves volume data faster (compressed
or raw) and uses it, measuring again every epoch. The adapter is driven with a fake clock; the
stream tests check that a stream that goes raw is copied identically and that an explicit
``zstd`` is never second-guessed."""

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


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _drive(
    monkeypatch: pytest.MonkeyPatch, packed_s: float, raw_s: float, chunks: int
) -> list[bool]:
    """Feed an adapter ``chunks`` chunks of 4 MiB, each taking ``packed_s`` or ``raw_s``
    seconds by the mode it was prepared in; the modes it asked for, chunk by chunk."""
    clock = _Clock()
    monkeypatch.setattr(source.time, "monotonic", clock)
    work = source._Worker(-1, CHUNK, "sha256", "zstd")
    adapter = source._Adapter(work)
    modes = []
    for _ in range(chunks):
        packed = work.compress
        modes.append(packed)
        clock.now += packed_s if packed else raw_s
        adapter.observe(packed, CHUNK)
    return modes


def test_compression_stays_on_where_it_moves_data_faster(monkeypatch: pytest.MonkeyPatch) -> None:
    probe, exploit = source._Adapter.PROBE, source._Adapter.EXPLOIT
    modes = _drive(monkeypatch, packed_s=0.02, raw_s=0.04, chunks=2 * probe + exploit)
    assert modes[:probe] == [True] * probe and modes[probe : 2 * probe] == [False] * probe
    assert all(modes[2 * probe :])  # a slow link: compressed chunks went faster


def test_compression_goes_off_where_it_is_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    probe, exploit = source._Adapter.PROBE, source._Adapter.EXPLOIT
    modes = _drive(monkeypatch, packed_s=0.05, raw_s=0.02, chunks=3 * probe + exploit)
    assert not any(modes[2 * probe : 2 * probe + exploit])  # busy cores: raw went faster
    # then it measures again (the load or the link may have changed)
    assert modes[2 * probe + exploit :] == [True] * probe


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


def test_a_stream_that_goes_raw_is_copied_identically(
    text_volume: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src_dir, src = text_volume
    monkeypatch.setattr(source._Adapter, "PROBE", 1)
    monkeypatch.setattr(source, "choose", lambda *_: False)  # raw measured faster
    stream = _serve(src_dir, adaptive=True)
    kinds = [r.kind for r in _records(stream) if r.kind in (framing.DATA, framing.ZDATA)]
    # the first chunk compressed, the second raw (the probe), then raw; a chunk or two were
    # already prepared compressed when the choice was made
    assert 1 <= kinds.count(framing.ZDATA) <= 4
    assert kinds.count(framing.DATA) >= len(kinds) - 4

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


def test_explicit_zstd_always_compresses(
    text_volume: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    src_dir, _ = text_volume
    monkeypatch.setattr(source._Adapter, "PROBE", 1)
    monkeypatch.setattr(source, "choose", lambda *_: False)
    explicit = [r.kind for r in _records(_serve(src_dir, adaptive=False))]
    assert framing.DATA not in explicit and explicit.count(framing.ZDATA) == SIZE // CHUNK
