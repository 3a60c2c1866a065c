"""The devcloud's extent-only copy helpers (devcloud/ext/devcloud_ext/sparse.py), which every
Cinder data path uses. Pure standard library: no devcloud needed, so no `devcloud` marker."""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path
from types import ModuleType

import pytest

SPARSE_PY = Path(__file__).resolve().parents[1] / "devcloud" / "ext" / "devcloud_ext" / "sparse.py"
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def sparse() -> ModuleType:
    # Loaded by path: devcloud_ext lives in the devcloud venv, not in the test venv.
    spec = importlib.util.spec_from_file_location("devcloud_sparse", SPARSE_PY)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _make(path: Path, size: int, writes: dict[int, bytes]) -> None:
    with open(path, "wb") as f:
        f.truncate(size)
        for off, data in writes.items():
            os.pwrite(f.fileno(), data, off)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_copy_sparse_keeps_bytes_and_holes(sparse: ModuleType, tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    _make(
        src,
        64 * MiB,
        {
            0: os.urandom(MiB),
            20 * MiB: b"x" * (3 * MiB),
            40 * MiB: bytes(2 * MiB),
            64 * MiB - 10: b"tail-bytes",
        },
    )
    sparse.copy_sparse(str(src), str(dst))
    assert _sha(dst) == _sha(src)
    assert dst.stat().st_size == 64 * MiB
    # data regions only (the explicit zeros become a hole): far less than the logical size
    assert dst.stat().st_blocks * 512 <= 6 * MiB


def test_copy_sparse_grows_to_requested_size(sparse: ModuleType, tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    _make(src, 8 * MiB, {MiB: b"data"})
    sparse.copy_sparse(str(src), str(dst), 16 * MiB)
    assert dst.stat().st_size == 16 * MiB
    assert dst.read_bytes() == src.read_bytes() + bytes(8 * MiB)


def test_stream_roundtrip(sparse: ModuleType, tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    _make(src, 32 * MiB, {5 * MiB + 3: os.urandom(MiB), 31 * MiB: b"end"})
    written = sparse.write_stream_sparse(sparse.read_chunks(str(src)), str(dst), 32 * MiB)
    assert written == 32 * MiB
    assert _sha(dst) == _sha(src)
    assert dst.stat().st_blocks * 512 < 16 * MiB
