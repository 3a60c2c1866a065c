"""Review H1 and M5: the destination's resume state cannot be planted, followed, forged or
replayed into a wrong "verified" result."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tenantshift.transfer.agent.state import State, StateDirError

from .fakes import CHUNK, DST_ID, SRC_ID, last, request, run_pull, serving_ssh
from .helpers import MiB, sha256_file

SIZE = 64 * MiB
NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
KEY = {"source_volume_id": SRC_ID, "destination_volume_id": DST_ID,
       "source_generation": None, "chunk_size": CHUNK, "hash": "sha256"}  # fmt: skip


def _as_nobody(*argv: str) -> None:
    subprocess.run([*NOBODY, *argv], check=True)


@pytest.fixture()
def shared() -> Iterator[Path]:
    """Like /var/tmp: world-writable and sticky (tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="ts-shared-"))
    path.chmod(0o1777)
    yield path
    shutil.rmtree(path)


def test_a_state_dir_planted_by_another_user_is_refused(tmp_path: Path, shared: Path) -> None:
    victim = tmp_path / "shadow"
    victim.write_text("root:$6$secret\n")
    state_dir = shared / "tenantshift-transfer"
    _as_nobody("mkdir", "-m", "0755", str(state_dir))
    for name in (f"{SRC_ID}--{DST_ID}.hashes", f"{SRC_ID}--{DST_ID}.json.tmp"):
        _as_nobody("ln", "-s", str(victim), str(state_dir / name))
    with pytest.raises(StateDirError, match="owned by uid 65534"):
        State(str(state_dir), KEY)
    assert victim.read_text() == "root:$6$secret\n"


def test_a_symlinked_or_open_state_dir_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(real)
    with pytest.raises(StateDirError, match="cannot open it as a directory"):
        State(str(tmp_path / "link"), KEY)
    real.chmod(0o755)
    with pytest.raises(StateDirError, match="0700"):
        State(str(real), KEY)
    fresh = tmp_path / "fresh"
    State(str(fresh), KEY).close()
    assert fresh.stat().st_mode & 0o777 == 0o700


def test_state_files_are_never_followed(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    victim = tmp_path / "sudoers"
    victim.write_text("root ALL=(ALL:ALL) ALL\n")
    name = f"{SRC_ID}--{DST_ID}.json"
    state_dir.mkdir(mode=0o700)
    for planted in (name + ".tmp", name):
        (state_dir / planted).symlink_to(victim)
    state = State(str(state_dir), KEY)
    assert state.offset == 0  # a symlinked state is not read
    state.checkpoint(CHUNK, SIZE)
    state.close()
    assert victim.read_text() == "root ALL=(ALL:ALL) ALL\n"
    assert json.loads((state_dir / name).read_text())["offset"] == CHUNK
    assert not (state_dir / name).is_symlink()
    lock = f"{SRC_ID}--{DST_ID}.lock"
    assert sorted(p.name for p in state_dir.iterdir()) == sorted([name, name + ".tmp", lock])


def test_a_second_copy_of_the_same_pair_waits_for_the_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("tenantshift.transfer.agent.state.LOCK_WAIT_SECONDS", 0.5)
    first = State(str(tmp_path), KEY)
    with pytest.raises(StateDirError, match=r"another copy to volume .* is still running"):
        State(str(tmp_path), KEY)
    first.close()
    State(str(tmp_path), KEY).close()  # free again once the first copy let go


def test_a_forged_resume_point_cannot_fake_a_copy(
    pair: tuple[Path, Path, Path, Path], tmp_path: Path
) -> None:
    src_dir, dst_dir, src, dst = pair
    state_dir = tmp_path / "state"
    # the tampered state claims everything but the last chunk is already copied
    with State(str(state_dir), KEY) as saved:
        saved.checkpoint(SIZE - CHUNK, SIZE)
    status, lines = run_pull(request(serving_ssh(tmp_path, src_dir), dst_dir, state_dir))
    result = last(lines)
    assert status == 0 and result["type"] == "result", lines
    # the resumed prefix did not match the source's hashes of this copy: it started over
    assert result["verified"] and result["resumed_from"] == 0
    assert sha256_file(dst) == sha256_file(src)
    hello = [m for m in lines if m["type"] == "hello"]
    assert [h["resumed_from"] for h in hello] == [SIZE - CHUNK, 0]


def test_a_finished_copy_is_copied_again_when_the_source_changed(
    pair: tuple[Path, Path, Path, Path], tmp_path: Path
) -> None:
    src_dir, dst_dir, src, dst = pair
    state_dir = tmp_path / "state"
    req = request(serving_ssh(tmp_path, src_dir), dst_dir, state_dir)
    status, lines = run_pull(req)
    assert status == 0 and last(lines)["verified"]
    # No resume point survives a finished copy; only the volume's chunk index (for deltas).
    assert [p.suffix for p in state_dir.iterdir()] == [".index"]
    with open(src, "r+b") as f:  # the source server ran again
        os.pwrite(f.fileno(), os.urandom(MiB), 30 * MiB)
    status, lines = run_pull(req)
    result = last(lines)
    assert status == 0 and result["verified"] and result["resumed_from"] == 0
    assert result["data_bytes"] > MiB
    assert sha256_file(dst) == sha256_file(src)


def test_the_resume_point_is_keyed_by_the_source_generation(
    pair: tuple[Path, Path, Path, Path], tmp_path: Path
) -> None:
    src_dir, dst_dir, src, dst = pair
    state_dir = tmp_path / "state"
    with State(str(state_dir), dict(KEY, source_generation="snap-1")) as saved:
        saved.checkpoint(2 * CHUNK, SIZE)
    ssh = serving_ssh(tmp_path, src_dir)
    status, lines = run_pull(request(ssh, dst_dir, state_dir, source_generation="snap-2"))
    assert status == 0 and last(lines)["resumed_from"] == 0
    with State(str(state_dir), dict(KEY, source_generation="snap-1")) as saved:
        saved.checkpoint(2 * CHUNK, SIZE)
    status, lines = run_pull(request(ssh, dst_dir, state_dir, source_generation="snap-1"))
    assert status == 0 and last(lines)["verified"]
    assert sha256_file(dst) == sha256_file(src)


def test_a_resume_after_the_source_changed_is_verified_against_the_source_now(
    pair: tuple[Path, Path, Path, Path], tmp_path: Path
) -> None:
    src_dir, dst_dir, src, dst = pair
    state_dir = tmp_path / "state"
    req = request(serving_ssh(tmp_path, src_dir), dst_dir, state_dir)
    assert run_pull(req)[0] == 0
    # an interrupted second copy: the state says 3 chunks are done, then the source changes
    # inside them (no generation given)
    with State(str(state_dir), KEY) as saved:
        saved.checkpoint(3 * CHUNK, SIZE)
    with open(src, "r+b") as f:
        os.pwrite(f.fileno(), b"\x01" * 4096, CHUNK + 4096)
    status, lines = run_pull(req)
    result = last(lines)
    assert status == 0 and result["verified"] and result["resumed_from"] == 0
    assert sha256_file(dst) == sha256_file(src)
