"""The agent on local sparse files: extents, framing, zero skipping, codecs, resume, verify.
No SSH here: source and sink are connected through an in-memory stream."""

from __future__ import annotations

import errno
import io
import json
import os
import subprocess
from pathlib import Path

import pytest

from tenantshift.transfer.agent import codecs, extents, framing, keys, source
from tenantshift.transfer.agent.sink import RemoteError, Sink, VerifyError, device_digest
from tenantshift.transfer.agent.state import State
from tenantshift.transfer.bundle import agent_zip

from .helpers import STANDARD_REGIONS, MiB, allocated, make_volume, sha256_file

CHUNK = 4 * MiB
SRC_ID = "11111111-2222-3333-4444-555555555555"
DST_ID = "66666666-7777-8888-9999-000000000000"
#: Non-zero bytes of STANDARD_REGIONS at 64 KiB block granularity.
SENT = 10 * MiB + 128 * 1024


@pytest.fixture()
def devices(tmp_path: Path) -> tuple[Path, Path]:
    src_dir, dst_dir = tmp_path / "src", tmp_path / "dst"
    src_dir.mkdir()
    dst_dir.mkdir()
    return src_dir, dst_dir


def _stream(
    src_dir: Path, start: int = 0, codec: str = "none", vid: str = SRC_ID, prefix: bool = True
) -> bytes:
    out = io.BytesIO()
    request = {"volume_id": vid, "start": start, "chunk_size": CHUNK, "codecs": [codec],
               "verify_prefix": prefix}  # fmt: skip
    source.serve(request, out, str(src_dir), [vid])
    return out.getvalue()


def _state(state_dir: Path, generation: str | None = None) -> State:
    return State(str(state_dir), {"source_volume_id": SRC_ID, "destination_volume_id": DST_ID,
                                  "source_generation": generation,
                                  "chunk_size": CHUNK, "hash": "sha256"})  # fmt: skip


def _records(stream: bytes) -> list[framing.Record]:
    reader = framing.Reader(io.BytesIO(stream))
    reader.magic()
    out = []
    while True:
        rec = reader.read()
        out.append(framing.Record(rec.kind, rec.offset, rec.length, memoryview(bytes(rec.payload))))
        if rec.kind in (framing.END, framing.ERROR):
            return out


def _apply(dst: Path, stream: bytes, state_dir: Path, **kw: object) -> Sink:
    fd = os.open(dst, os.O_RDWR)
    state = _state(state_dir)
    kw.setdefault("codecs_offered", ["zstd", "zlib", "none"])
    sink = Sink(fd, state, chunk_size=CHUNK, hash_name="sha256", **kw)  # type: ignore[arg-type]
    reader = framing.Reader(io.BytesIO(stream))
    try:
        sink.start(reader)
        sink.run(reader)
        sink.summary["verify"] = sink.verify()
    finally:
        state.close()
        os.close(fd)
    return sink


def _volume(src_dir: Path, dst_dir: Path, size: int = 64 * MiB) -> tuple[Path, Path]:
    src = src_dir / f"virtio-{SRC_ID[:20]}"
    dst = dst_dir / f"virtio-{DST_ID[:20]}"
    make_volume(src, size, STANDARD_REGIONS)
    with open(dst, "wb") as f:
        f.truncate(size)
    return src, dst


# -- extents


def test_extents_report_allocated_ranges(tmp_path: Path) -> None:
    path = tmp_path / "v"
    make_volume(path, 64 * MiB, [(MiB, "random", MiB), (10 * MiB, "text", 2 * MiB)])
    fd = os.open(path, os.O_RDONLY)
    try:
        found = extents.data_extents(fd, 0, 64 * MiB)
        assert found == [(MiB, MiB), (10 * MiB, 2 * MiB)]
        assert extents.data_extents(fd, 11 * MiB, 64 * MiB) == [(11 * MiB, MiB)]
        assert extents.device_size(fd) == 64 * MiB
    finally:
        os.close(fd)


def test_extents_fall_back_to_the_full_range(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "v"
    make_volume(path, 8 * MiB, [(MiB, "random", 4096)])
    real = os.lseek

    def no_seek_data(fd: int, pos: int, how: int) -> int:
        if how in (os.SEEK_DATA, os.SEEK_HOLE):
            raise OSError(errno.EINVAL, "not supported")
        return real(fd, pos, how)

    monkeypatch.setattr(os, "lseek", no_seek_data)
    fd = os.open(path, os.O_RDONLY)
    try:
        assert extents.data_extents(fd, 0, 8 * MiB) == [(0, 8 * MiB)]
    finally:
        os.close(fd)


def test_chunk_grid_runs_and_gaps() -> None:
    found = [(MiB, 10), (CHUNK - 1, 2), (3 * CHUNK, CHUNK)]
    assert list(extents.chunk_windows(found, CHUNK, 5 * CHUNK - 7)) == [
        (0, CHUNK, [(MiB, 10), (CHUNK - 1, 1)]),  # an extent across a chunk boundary splits
        (CHUNK, CHUNK, [(0, 1)]),
        (3 * CHUNK, CHUNK, [(0, CHUNK)]),
    ]
    last = list(extents.chunk_windows([(4 * CHUNK, 9)], CHUNK, 4 * CHUNK + 9))
    assert last == [(4 * CHUNK, 9, [(0, 9)])]  # the last chunk is short
    buf = bytearray(MiB)
    buf[70000] = 1  # block 1 (64 KiB blocks)
    buf[200000:200002] = b"xy"  # block 3
    buf[-1] = 7  # last block
    runs = extents.nonzero_runs(buf, MiB)
    assert runs == [(65536, 65536), (196608, 65536), (MiB - 65536, 65536)]
    assert extents.gaps(runs, MiB)[0] == (0, 65536)
    assert extents.is_zero(bytearray(MiB), MiB) and not extents.is_zero(buf, MiB)


def test_find_device_by_id_prefix(tmp_path: Path) -> None:
    (tmp_path / f"virtio-{SRC_ID[:20]}").touch()
    assert extents.find_device(str(tmp_path), SRC_ID).endswith(SRC_ID[:20])
    with pytest.raises(extents.DeviceNotFound, match=DST_ID):
        extents.find_device(str(tmp_path), DST_ID)


# -- framing


def test_framing_round_trip_and_rejects_garbage() -> None:
    out = io.BytesIO()
    w = framing.Writer(out)
    w.magic()
    w.json(framing.HELLO, {"size": 5})
    w.record(framing.DATA, 7, 3, b"abc")
    w.record(framing.SKIP, 10, 90)
    assert w.bytes == len(out.getvalue())
    r = framing.Reader(io.BytesIO(out.getvalue()))
    r.magic()
    assert r.read().json() == {"size": 5}
    rec = r.read()
    assert (rec.kind, rec.offset, rec.length, bytes(rec.payload)) == (b"D", 7, 3, b"abc")
    assert r.read()[:3] == (b"S", 10, 90)
    with pytest.raises(EOFError):
        r.read()
    with pytest.raises(framing.FramingError, match="not a tenantshift"):
        framing.Reader(io.BytesIO(b"HTTP/1.1 200")).magic()
    bad = framing.MAGIC + framing.HEADER.pack(b"Q", 0, 0, 0)
    reader = framing.Reader(io.BytesIO(bad))
    reader.magic()
    with pytest.raises(framing.FramingError, match="unknown record kind"):
        reader.read()


# -- source: zero skipping and codecs


def test_source_sends_only_non_zero_data(devices: tuple[Path, Path]) -> None:
    src, _ = _volume(*devices)
    records = _records(_stream(devices[0]))
    hello = records[0].json()
    data = [r for r in records if r.kind == framing.DATA]
    sent = sum(r.length for r in data)
    # 1 + 3 + 6 MiB + 64 KiB of non-zero data, in 64 KiB blocks (the unaligned text region
    # touches one block more); the 8 MiB of allocated zeros never appear
    assert sent == SENT
    assert hello["allocated"] == allocated(src) >= 18 * MiB  # the zeros are allocated
    assert not any(r.offset < 28 * MiB and r.offset + r.length > 20 * MiB for r in data)
    covered = sorted(
        (r.offset, r.length) for r in records if r.kind in (framing.HASH, framing.SKIP)
    )
    pos = 0
    for offset, length in covered:  # hash and skip records tile the volume
        assert offset == pos
        pos += length
    assert pos == 64 * MiB and records[-1].kind == framing.END


def test_codec_negotiation() -> None:
    assert codecs.negotiate(codecs.preference("auto"), ["zlib", "none"]) == "none"
    assert codecs.negotiate(codecs.preference("auto"), ["zstd", "zlib", "none"]) == "zstd"
    assert codecs.negotiate(codecs.preference("zstd"), ["zlib", "none"]) == "zlib"
    assert codecs.negotiate(codecs.preference("none"), ["zstd", "zlib", "none"]) == "none"
    with pytest.raises(codecs.CodecError):
        codecs.preference("lz4")
    # the source picks from what the destination offered and says so in its hello
    for offered, expected in ((["zlib", "none"], "zlib"), (["none"], "none")):
        assert codecs.negotiate(offered, codecs.available()) == expected


@pytest.mark.parametrize("name", codecs.available())
def test_codec_round_trip(name: str) -> None:
    codec = codecs.load(name)
    data = (b"compressible " * 100000)[:MiB] + os.urandom(4096)
    packed = codec.compress(memoryview(bytearray(data)))
    out = bytearray(len(data))
    codec.decompress_into(memoryview(bytearray(packed)), memoryview(out))
    assert out == data
    if name != "none":
        assert len(packed) < len(data) // 4


def test_zstd_is_available_without_third_party_modules() -> None:
    # The conversion hosts here have only the standard library: zstd must come via libzstd.
    code = f"import sys; sys.path.insert(0, {str(_zip_path())!r}); from tsagent import codecs; "
    probe = subprocess.run(["/usr/bin/python3", "-I", "-c", code + "print(codecs.available())"],
                           capture_output=True, text=True, check=True)  # fmt: skip
    assert "zstd" in probe.stdout


_zip_cache: list[Path] = []


def _zip_path() -> Path:
    if not _zip_cache:
        import tempfile

        path = Path(tempfile.mkdtemp()) / "agent.pyz"
        path.write_bytes(agent_zip())
        _zip_cache.append(path)
    return _zip_cache[0]


def test_agent_zip_runs_with_the_system_python() -> None:
    out = subprocess.run(["/usr/bin/python3", "-I", str(_zip_path()), "info"],
                         capture_output=True, text=True, check=True)  # fmt: skip
    info = json.loads(out.stdout)
    assert info["protocol"] == 2 and "none" in info["codecs"]


# -- sink: copy, sparse result, zeroing, verification


@pytest.mark.parametrize("codec", ["none", "zlib", "zstd"])
def test_local_copy_is_identical_and_sparse(
    devices: tuple[Path, Path], tmp_path: Path, codec: str
) -> None:
    src, dst = _volume(*devices)
    stream = _stream(devices[0], codec=codec)
    sink = _apply(dst, stream, tmp_path / "state")
    assert sha256_file(dst) == sha256_file(src)
    assert allocated(dst) <= SENT + 64 * 1024  # data only (+fs metadata): zeros stay a hole
    assert sink.data_bytes == SENT
    fd_s, fd_d = os.open(src, os.O_RDONLY), os.open(dst, os.O_RDONLY)
    try:
        assert device_digest(fd_s, 64 * MiB, CHUNK, "sha256") == sink.summary["verify"]["digest"]
        assert device_digest(fd_d, 64 * MiB, CHUNK, "sha256") == sink.summary["verify"]["digest"]
    finally:
        os.close(fd_s)
        os.close(fd_d)
    if codec != "none":
        assert len(stream) < 9 * MiB  # the text regions shrink


def test_destination_garbage_is_zeroed_unless_promised_zero(
    devices: tuple[Path, Path], tmp_path: Path
) -> None:
    src, dst = _volume(*devices)
    with open(dst, "r+b") as f:  # a reused volume: old bytes where the source has holes
        os.pwrite(f.fileno(), b"\xff" * MiB, 30 * MiB)
        os.pwrite(f.fileno(), b"\xee" * 100, 40 * MiB + 7 * MiB)
    _apply(dst, _stream(devices[0]), tmp_path / "s1")
    assert sha256_file(dst) == sha256_file(src)
    with open(dst, "r+b") as f:
        os.pwrite(f.fileno(), b"\xff" * 100, 60 * MiB)
    with pytest.raises(VerifyError, match="where the source has zeros"):
        _apply(dst, _stream(devices[0]), tmp_path / "s2", target_zeroed=True)


def test_transit_corruption_is_caught(devices: tuple[Path, Path], tmp_path: Path) -> None:
    _, dst = _volume(*devices)
    stream = bytearray(_stream(devices[0]))
    header = len(framing.MAGIC)
    # flip a byte inside the first data payload
    pos = header
    while True:
        kind, _, _, size = framing.HEADER.unpack_from(stream, pos)
        if kind == framing.DATA:
            stream[pos + framing.HEADER.size + 10] ^= 0xFF
            break
        pos += framing.HEADER.size + size
    with pytest.raises(VerifyError, match="corrupted in transit"):
        _apply(dst, bytes(stream), tmp_path / "state")


def test_missing_device_is_an_error_record(devices: tuple[Path, Path]) -> None:
    records = _records(_stream(devices[0], vid="deadbeef-0000-0000-0000-000000000000"))
    assert records[0].kind == framing.ERROR
    info = records[0].json()
    assert info["kind"] == "device_not_found" and "deadbeef-0000-0000-0000" in info["message"]


# -- resume


def test_interrupted_stream_resumes_from_the_last_checkpoint(
    devices: tuple[Path, Path], tmp_path: Path
) -> None:
    src, dst = _volume(*devices)
    state_dir = tmp_path / "state"
    full = _stream(devices[0])
    cut = full[: len(full) * 2 // 3]  # the connection dies two thirds in
    with pytest.raises(EOFError):
        _apply(dst, cut, state_dir, checkpoint_bytes=MiB)
    saved = json.loads(next(state_dir.glob("*.json")).read_text())
    assert 0 < saved["offset"] < 64 * MiB and saved["offset"] % CHUNK == 0
    # the next attempt asks the source to start at the resume point, and only the rest moves
    rest = _stream(devices[0], start=saved["offset"])
    assert len(rest) < len(full)
    # only prefix hashes (no data) before the resume point
    before = [r for r in _records(rest)[1:] if r.offset < saved["offset"]]
    assert before and all(r.kind == framing.PREFIX for r in before)
    sink = _apply(dst, rest, state_dir)
    assert sink.resumed_from == saved["offset"]
    assert sink.data_bytes < SENT
    assert sha256_file(dst) == sha256_file(src)
    # verification covered the chunks of the first attempt too (prefix hashes of the source)
    assert sink.summary["verify"]["chunks_total"] == sum(
        1 for r in _records(full) if r.kind == framing.HASH
    )
    # a finished copy leaves no resume point: running it again starts from the beginning
    assert not list(state_dir.glob("*.json"))
    with _state(state_dir) as state:
        assert state.offset == 0


def test_stale_state_for_another_size_is_refused(
    devices: tuple[Path, Path], tmp_path: Path
) -> None:
    _, dst = _volume(*devices)
    state_dir = tmp_path / "state"
    with _state(state_dir) as state:
        state.checkpoint(CHUNK, 128 * MiB)  # saved for a volume twice the size
    with pytest.raises(RemoteError) as err:
        _apply(dst, _stream(devices[0], start=CHUNK), state_dir)
    assert err.value.kind == "stale_state"


# -- keys


def test_authorize_and_revoke(tmp_path: Path) -> None:
    path = tmp_path / "ssh" / "authorized_keys"
    path.parent.mkdir()
    path.write_text("ssh-ed25519 AAAAuser user@example")  # no final newline
    marker = "tenantshift-transfer-" + "ab" * 16
    line = f'restrict,command="x" ssh-ed25519 AAAAeph {marker}\n'
    assert keys.authorize(line, marker, str(path)) == {"file": str(path)}
    assert path.read_text().splitlines() == ["ssh-ed25519 AAAAuser user@example", line.strip()]
    with pytest.raises(ValueError):
        keys.authorize("ssh-ed25519 AAAAx someone-else\n", marker, str(path))
    assert keys.revoke(marker, str(path))["removed"] == 1
    assert path.read_text() == "ssh-ed25519 AAAAuser user@example\n"


def test_authorized_keys_file_comes_from_the_sshd_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "sshd_config"
    cfg.write_text("Port 22\nAuthorizedKeysFile %h/.ssh/ts_keys .ssh/other\nMatch User x\n")
    monkeypatch.setattr(keys, "_sshd_config", lambda: str(cfg))
    monkeypatch.setenv("HOME", str(tmp_path))
    assert keys.authorized_keys_path() == f"{tmp_path}/.ssh/ts_keys"
    cfg.write_text("Port 22\n")
    assert keys.authorized_keys_path() == f"{tmp_path}/.ssh/authorized_keys"
    assert keys.authorized_keys_path("/x/keys") == "/x/keys"


def test_cleanup_only_removes_run_directories(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        keys.cleanup(str(tmp_path))
    run = tmp_path / "tenantshift-transfer-abc"
    run.mkdir()
    assert keys.cleanup(str(run)) == {"removed": True} and not run.exists()
