"""Delta copies (warm migration's syncs): only chunks whose hash differs from what the
destination holds move, chunks that became zero are zeroed, the whole-volume digest ends each
copy, and the destination's chunk index is trusted only for the digest it was written with.
The real pull agent runs in-process with its ``ssh`` replaced by the real ``agent.pyz
serve``, as in test_streams.py."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import pytest

from tenantshift.transfer.agent import framing, index, source
from tenantshift.transfer.agent.sink import RemoteError, Sink, device_digest
from tenantshift.transfer.agent.state import State

from .fakes import CHUNK, DST_ID, SRC_ID, crafted_ssh, last, request, run_pull, serving_ssh
from .helpers import MiB, sha256_file

SIZE = 64 * MiB


def copy(tmp_path: Path, src_dir: Path, dst_dir: Path, **overrides: Any) -> dict[str, Any]:
    req = request(serving_ssh(tmp_path, src_dir), dst_dir, tmp_path / "state", **overrides)
    status, lines = run_pull(req)
    result = last(lines)
    assert status == 0 and result["type"] == "result", lines
    return result


def digest_of(path: Path, size: int = SIZE) -> str:
    fd = os.open(path, os.O_RDONLY)
    try:
        return device_digest(fd, size, CHUNK, "sha256")
    finally:
        os.close(fd)


def nonzero_chunk(path: Path) -> int:
    """The offset of a chunk of ``path`` that holds data."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.lseek(fd, 0, os.SEEK_DATA) // CHUNK * CHUNK
    finally:
        os.close(fd)


def scribble(path: Path, offsets: list[int], length: int = 4096) -> None:
    with open(path, "r+b") as f:
        for offset in offsets:
            os.pwrite(f.fileno(), os.urandom(length), offset)


def test_a_delta_moves_only_the_changed_chunks_and_zeroes_what_became_zero(
    pair: tuple[Path, Path, Path, Path], tmp_path: Path
) -> None:
    src_dir, dst_dir, src, dst = pair
    full = copy(tmp_path, src_dir, dst_dir)
    assert full["verified"] and not full["delta"]
    assert (tmp_path / "state" / f"{DST_ID}.index").exists()
    # Three chunks change (one of them was a hole), one chunk of data becomes zeros.
    emptied = nonzero_chunk(src)
    scribble(src, [40 * MiB + 5, 50 * MiB, 61 * MiB + 1])
    with open(src, "r+b") as f:
        os.pwrite(f.fileno(), bytes(CHUNK), emptied)
    delta = copy(tmp_path, src_dir, dst_dir, delta_base=full["digest"])
    assert delta["delta"] and delta["verified"] and not delta["index_rebuilt"]
    assert sha256_file(dst) == sha256_file(src)
    assert delta["digest"] == digest_of(src)
    assert delta["chunks_changed"] == 4, delta
    assert delta["data_bytes"] <= 3 * CHUNK
    # On the wire: the changed chunks' data, plus a small record per unchanged chunk.
    assert delta["wire_bytes"] <= delta["data_bytes"] + 64 * 1024, delta
    assert delta["index_bytes"] == SIZE // CHUNK * 32
    assert delta["read_bytes"] >= delta["data_bytes"]  # the source reads all it holds
    # The chunk that became zero is a hole again: the destination stays thin.
    fd = os.open(dst, os.O_RDONLY)
    try:
        assert os.lseek(fd, emptied, os.SEEK_DATA) >= emptied + CHUNK
    finally:
        os.close(fd)

    again = copy(tmp_path, src_dir, dst_dir, delta_base=delta["digest"])
    assert again["data_bytes"] == 0 and again["chunks_changed"] == 0
    assert again["digest"] == delta["digest"]


@pytest.mark.parametrize("spoil", ["another digest", "no index"])
def test_an_index_that_cannot_be_trusted_is_rebuilt_from_the_volume(
    pair: tuple[Path, Path, Path, Path], tmp_path: Path, spoil: str
) -> None:
    src_dir, dst_dir, src, dst = pair
    full = copy(tmp_path, src_dir, dst_dir)
    scribble(dst, [20 * MiB + 3])  # someone wrote into the destination meanwhile
    scribble(src, [50 * MiB])
    base = full["digest"]
    if spoil == "no index":
        (tmp_path / "state" / f"{DST_ID}.index").unlink()
    else:
        base = "0" * 64  # not what the index was written with
    delta = copy(tmp_path, src_dir, dst_dir, delta_base=base)
    assert delta["index_rebuilt"] and delta["verified"]
    assert sha256_file(dst) == sha256_file(src)
    assert 0 < delta["data_bytes"] <= 2 * CHUNK


def test_a_killed_delta_leaves_no_index_and_the_next_one_converges(
    pair: tuple[Path, Path, Path, Path], tmp_path: Path
) -> None:
    src_dir, dst_dir, src, dst = pair
    full = copy(tmp_path, src_dir, dst_dir)
    scribble(src, [i * MiB + 7 for i in range(0, SIZE // MiB, 3)], 64 * 1024)
    # The source's delta stream, cut in the middle (a dropped link, a killed agent).
    dir_fd = os.open(tmp_path / "state", os.O_RDONLY)
    try:
        held = index.load(dir_fd, DST_ID, SIZE, CHUNK, "sha256", full["digest"])
    finally:
        os.close(dir_fd)
    assert held is not None
    blob = index.pack(held, "sha256")
    out = io.BytesIO()
    req = {"volume_id": SRC_ID, "chunk_size": CHUNK, "hash": "sha256", "codecs": ["none"],
           "start": 0, "delta_index": len(blob)}  # fmt: skip
    assert source.serve(req, out, str(src_dir), [SRC_ID], blob) == 0
    stream = out.getvalue()
    cut = request(crafted_ssh(tmp_path, stream[: len(stream) // 2]), dst_dir,
                  tmp_path / "state", delta_base=full["digest"])  # fmt: skip
    status, lines = run_pull(cut)
    assert status != 0 and last(lines)["type"] == "error", lines
    assert sha256_file(dst) != sha256_file(src)  # half-written
    assert not (tmp_path / "state" / f"{DST_ID}.index").exists()
    delta = copy(tmp_path, src_dir, dst_dir, delta_base=full["digest"])
    assert delta["index_rebuilt"] and delta["verified"]
    assert sha256_file(dst) == sha256_file(src)


def test_a_source_that_claims_an_unchanged_chunk_the_destination_does_not_hold_is_refused(
    tmp_path: Path,
) -> None:
    target = tmp_path / "dst"
    with open(target, "wb") as f:
        f.truncate(SIZE)
    held: index.Hashes = [None] * (SIZE // CHUNK)
    held[1] = os.urandom(32)
    out = io.BytesIO()
    w = framing.Writer(out)
    w.magic()
    w.json(framing.HELLO, {"size": SIZE, "allocated": SIZE, "codec": "none",
                           "chunk_size": CHUNK, "hash": "sha256", "start": 0})  # fmt: skip
    w.record(framing.SAME, 0, CHUNK, os.urandom(32))  # chunk 0: the destination has zeros
    w.flush()
    fd = os.open(target, os.O_RDWR)
    key = {"source_volume_id": SRC_ID, "destination_volume_id": DST_ID,
           "chunk_size": CHUNK, "hash": "sha256"}  # fmt: skip
    state = State(str(tmp_path / "state"), key)
    try:
        sink = Sink(fd, state, chunk_size=CHUNK, hash_name="sha256", codecs_offered=["none"],
                    index=held)  # fmt: skip
        reader = framing.Reader(io.BytesIO(out.getvalue()))
        sink.start(reader)
        with pytest.raises(RemoteError, match="unchanged chunk at 0") as err:
            sink.run(reader)
        assert err.value.kind == "protocol"
    finally:
        state.close()
        os.close(fd)


@pytest.mark.parametrize("blob", [b"short", b"\x00" * (SIZE // CHUNK * 32 + 1)])
def test_a_chunk_index_that_does_not_fit_the_volume_is_a_protocol_error(
    pair: tuple[Path, Path, Path, Path], blob: bytes
) -> None:
    src_dir = pair[0]
    out = io.BytesIO()
    req = {"volume_id": SRC_ID, "chunk_size": CHUNK, "hash": "sha256", "codecs": ["none"],
           "delta_index": len(blob)}  # fmt: skip
    assert source.serve(req, out, str(src_dir), [SRC_ID], blob) == 2
    assert b"the chunk index does not fit the volume" in out.getvalue()


def test_a_hole_of_4_gib_or_more_is_skipped_in_several_records(tmp_path: Path) -> None:
    """A record's length is 32 bits: a 6 GiB hole once stopped the source with a traceback."""
    size = 6 * 1024 * MiB
    src_dir, dst_dir = tmp_path / "src", tmp_path / "dst"
    src_dir.mkdir()
    dst_dir.mkdir()
    src, dst = src_dir / f"virtio-{SRC_ID[:20]}", dst_dir / f"virtio-{DST_ID[:20]}"
    for path in (src, dst):
        with open(path, "wb") as f:
            f.truncate(size)
    with open(src, "r+b") as f:
        os.pwrite(f.fileno(), os.urandom(64 * 1024), 0)
        os.pwrite(f.fileno(), os.urandom(64 * 1024), size - CHUNK)
    with open(dst, "r+b") as f:
        os.pwrite(f.fileno(), os.urandom(4096), 5 * 1024 * MiB)  # old data in the hole
    result = copy(tmp_path, src_dir, dst_dir, streams=1)
    assert result["verified"], result
    assert digest_of(dst, size) == digest_of(src, size) == result["digest"]
