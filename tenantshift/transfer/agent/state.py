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
import fcntl
import json
import os
import secrets
import stat
import time
from typing import Any

from . import validate

MAX_STATE_BYTES = 64 * 1024
#: How long a copy waits for an earlier copy of the same pair to let go of it: an orchestrator
#: killed mid-copy leaves its pull agent running until its next progress write fails.
LOCK_WAIT_SECONDS = 30.0
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
        try:
            self.lock_fd = self._lock(f"{src}--{dst}.lock", dst)
        except BaseException:
            os.close(self.dir_fd)
            raise
        self.key = dict(key)
        self.offset = 0
        self.size: int | None = None
        self._load()

    def _lock(self, name: str, volume_id: str) -> int:
        """One copy per pair at a time: two writers on one target would interleave. A finished
        copy removes the lock file, so a waiter that locked a removed file tries again."""
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        while True:
            fd = os.open(name, flags, 0o600, dir_fd=self.dir_fd)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                if time.monotonic() > deadline:
                    raise StateDirError(
                        f"another copy to volume {volume_id} is still running on this host"
                    ) from None
                time.sleep(0.2)
                continue
            held = os.fstat(fd)
            try:
                now = os.stat(name, dir_fd=self.dir_fd, follow_symlinks=False)
            except FileNotFoundError:
                now = None
            if now is not None and (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino):
                self.lock_name = name
                return fd
            os.close(fd)

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
        """Start this copy from the beginning (the pair stays locked)."""
        self.offset = 0
        self.size = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.name, dir_fd=self.dir_fd)

    def complete(self) -> None:
        """Forget the pair: the next copy starts from the beginning."""
        self.reset()
        with contextlib.suppress(FileNotFoundError):  # still held: waiters will try again
            os.unlink(self.lock_name, dir_fd=self.dir_fd)

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
        os.close(self.lock_fd)
        os.close(self.dir_fd)

    def __enter__(self) -> State:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
