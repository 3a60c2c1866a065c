"""The destination's resume point: one small JSON file per volume pair.

It holds the offset up to which the target is written and fsynced, and is replaced
atomically (write, fsync, rename) only after the device is fsynced, so after a crash it never
claims more than is on disk.

The pull agent runs as root, so the state directory is trusted only when it is ours: it is
created 0700, and opened (never followed through a symlink) and checked by its file
descriptor to be owned by this uid and closed to group and others. Every file in it is
opened relative to that descriptor with O_NOFOLLOW, and temporary files get random names and
O_EXCL. Even so, the resume point is only a hint: the final verification compares the resumed
prefix with hashes the source computes for *this* copy (see ``sink``), so a forged or stale
state file can cost a second copy, never a wrong result. A completed copy deletes its state,
so a later copy of the same pair starts from the beginning.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import stat
from typing import Any

from . import validate

MAX_STATE_BYTES = 64 * 1024
_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class StateDirError(Exception):
    pass


def open_state_dir(path: str) -> int:
    """A descriptor of ``path``, created 0700 if missing, checked to be ours and private."""
    if not os.path.isabs(path):
        raise StateDirError(f"state_dir {path!r} is not an absolute path")
    parent = os.path.dirname(os.path.normpath(path))
    os.makedirs(parent, mode=0o755, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    try:
        fd = os.open(path, _OPEN_DIR)
    except OSError as exc:
        raise StateDirError(f"state_dir {path}: cannot open it as a directory: {exc}") from None
    st = os.fstat(fd)
    if st.st_uid != os.geteuid() or stat.S_IMODE(st.st_mode) & 0o077:
        os.close(fd)
        raise StateDirError(
            f"state_dir {path} is owned by uid {st.st_uid} with mode "
            f"{stat.S_IMODE(st.st_mode):o}; it must be owned by uid {os.geteuid()} and "
            "closed to group and others (0700): refusing to use it"
        )
    return fd


class State:
    def __init__(self, state_dir: str, key: dict[str, Any]) -> None:
        src = validate.volume_id(key["source_volume_id"], "source_volume_id")
        dst = validate.volume_id(key["destination_volume_id"], "destination_volume_id")
        self.dir_fd = open_state_dir(state_dir)
        self.name = f"{src}--{dst}.json"
        self.key = dict(key)
        self.offset = 0
        self.size: int | None = None
        self._load()

    def _load(self) -> None:
        saved = self._read()
        if not isinstance(saved, dict) or any(saved.get(k) != v for k, v in self.key.items()):
            return
        offset, size = saved.get("offset"), saved.get("size")
        chunk = int(self.key["chunk_size"])
        if (
            isinstance(offset, int)
            and isinstance(size, int)
            and 0 < offset < size  # a completed state never short-circuits a new copy
            and offset % chunk == 0
        ):
            self.offset, self.size = offset, size

    def _read(self) -> Any:
        try:
            fd = os.open(self.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=self.dir_fd)
        except OSError:
            return None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_STATE_BYTES:
                return None
            return json.loads(os.read(fd, MAX_STATE_BYTES).decode("utf-8"))
        except (OSError, ValueError):
            return None
        finally:
            os.close(fd)

    def reset(self) -> None:
        self.offset = 0
        self.size = None
        self.complete()

    def complete(self) -> None:
        """Forget the pair: the next copy starts from the beginning."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.name, dir_fd=self.dir_fd)

    def checkpoint(self, offset: int, size: int) -> None:
        """Record ``offset`` as the resume point. The caller has fsynced the device."""
        self.offset = offset
        self.size = size
        data = json.dumps(dict(self.key, offset=offset, size=size), sort_keys=True)
        tmp = f".{self.name}.{secrets.token_hex(8)}.tmp"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(tmp, flags, 0o600, dir_fd=self.dir_fd)
        try:
            try:
                os.write(fd, data.encode("utf-8"))
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.name, src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=self.dir_fd)
            raise
        os.fsync(self.dir_fd)

    def close(self) -> None:
        os.close(self.dir_fd)
