"""Several streams per copy (the source cuts the volume into parts of equal allocated size,
each part its own SSH connection, resumed part by part) and the xxh3 chunk hash. The real
pull agent runs in-process with its ``ssh`` replaced by the real ``agent.pyz serve``."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest

from tenantshift.transfer.agent import hashes
from tenantshift.transfer.agent.source import split_points
from tenantshift.transfer.agent.state import State

from .fakes import CHUNK, DST_ID, SRC_ID, last, request, run_pull, serving_ssh
from .helpers import MiB, sha256_file

SIZE = 64 * MiB
SENT = 10 * MiB + 128 * 1024  # non-zero bytes of STANDARD_REGIONS at 64 KiB granularity


def test_xxh3_is_xxh3_128() -> None:
    h = hashes.new("xxh3")
    assert h.hexdigest() == "99aa06d3014798d86001c324468d497f"  # XXH3_128 of b"" (canonical)
    data = bytearray(os.urandom(3 * MiB + 17))
    whole, parts = hashes.new("xxh3"), hashes.new("xxh3")
    whole.update(data)
    parts.update(memoryview(data)[:1000])
    parts.update(bytes(data[1000:]))  # read-only buffers too
    assert whole.digest() == parts.digest() and len(whole.digest()) == hashes.SIZES["xxh3"]
    assert "xxh3" in hashes.available()  # this machine has libxxhash (apt links it)


@pytest.mark.parametrize("parts", [1, 2, 3, 8])
def test_split_points_tile_the_volume_by_allocated_bytes(parts: int) -> None:
    found = [(0, 3 * MiB), (20 * MiB, 9 * MiB), (40 * MiB + 4096, 12 * MiB)]
    size = 64 * MiB + 4096  # not on the chunk grid
    points = split_points(found, CHUNK, size, parts)
    assert len(points) == parts + 1 and points[0] == 0 and points[-1] == size
    assert points == sorted(points)
    assert all(p % CHUNK == 0 for p in points[:-1])
    # every part holds about its share of the 24 MiB allocated (within a chunk)
    for lo, hi in itertools.pairwise(points):
        share = sum(max(0, min(o + n, hi) - max(o, lo)) for o, n in found)
        assert abs(share - 24 * MiB / parts) <= CHUNK
    assert split_points([], CHUNK, size, 3) == [0, size, size, size]


def test_a_copy_in_three_streams_is_identical(
    pair: tuple[Path, Path, Path, Path], tmp_path: Path
) -> None:
    src_dir, dst_dir, src, dst = pair
    req = request(serving_ssh(tmp_path, src_dir), dst_dir, tmp_path / "state",
                  streams=3, hash="xxh3")  # fmt: skip
    status, lines = run_pull(req)
    result = last(lines)
    assert status == 0 and result["type"] == "result", lines
    assert result["streams"] == 3 and result["verified"] and result["hash"] == "xxh3"
    assert SENT <= result["data_bytes"] <= SENT + 64 * 1024
    assert sha256_file(dst) == sha256_file(src)
    # A finished copy keeps no resume point; only the volume's chunk index (for deltas).
    assert [p.suffix for p in (tmp_path / "state").iterdir()] == [".index"]


def test_parts_resume_where_each_got_to_and_are_verified(
    pair: tuple[Path, Path, Path, Path], tmp_path: Path
) -> None:
    src_dir, dst_dir, src, dst = pair
    state_dir = tmp_path / "state"
    req = request(serving_ssh(tmp_path, src_dir), dst_dir, state_dir, streams=2)
    assert run_pull(req)[0] == 0
    # as if the copy had been interrupted: part 0 finished, part 1 checkpointed at 44 MiB
    # (what the destination holds is indeed the source's there)
    key = {"source_volume_id": SRC_ID, "destination_volume_id": DST_ID,
           "source_generation": None, "chunk_size": CHUNK, "hash": "sha256"}  # fmt: skip
    with State(str(state_dir), key) as saved:
        saved.start_parts([[0, 40 * MiB, 40 * MiB], [40 * MiB, SIZE, 44 * MiB]], SIZE)
    with open(src, "r+b") as f:  # data past the checkpoint changed meanwhile
        os.pwrite(f.fileno(), os.urandom(MiB), 50 * MiB)
    status, lines = run_pull(req)
    result = last(lines)
    assert status == 0 and result["verified"], lines
    assert result["resumed_from"] == 44 * MiB  # 40 MiB of part 0 and 4 MiB of part 1
    assert result["data_bytes"] < 4 * MiB  # only what lies past the checkpoints moved
    assert sha256_file(dst) == sha256_file(src)


def test_a_part_resumed_over_wrong_data_starts_the_copy_over(
    pair: tuple[Path, Path, Path, Path], tmp_path: Path
) -> None:
    src_dir, dst_dir, src, dst = pair
    state_dir = tmp_path / "state"
    key = {"source_volume_id": SRC_ID, "destination_volume_id": DST_ID,
           "source_generation": None, "chunk_size": CHUNK, "hash": "sha256"}  # fmt: skip
    # a state that claims both parts mostly done, over an empty destination
    with State(str(state_dir), key) as saved:
        saved.start_parts([[0, 40 * MiB, 36 * MiB], [40 * MiB, SIZE, 60 * MiB]], SIZE)
    status, lines = run_pull(request(serving_ssh(tmp_path, src_dir), dst_dir, state_dir,
                                     streams=2))  # fmt: skip
    result = last(lines)
    assert status == 0 and result["verified"] and result["resumed_from"] == 0, lines
    assert sha256_file(dst) == sha256_file(src)
