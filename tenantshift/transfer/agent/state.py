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
import threading
import time
from typing import Any

from . import validate

MAX_STATE_BYTES = 64 * 1024
#: How long a copy waits for an earlier copy of the same pair to let go of it: an orchestrator
#: killed mid-copy leaves its pull agent running until its next progress write fails.
LOCK_WAIT_SECONDS = 30.0
#: Streams per copy (the source refuses more workers than this per request, too).
MAX_PARTS = 8
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
    """The resume point of one volume pair. A copy may run as several streams, each over its
    own part ``[begin, end)`` of the volume (chunk-grid aligned, the parts tile the volume);
    ``parts`` holds ``[begin, end, done]`` for each, ``done`` being how far that part is
    written and fsynced. A single-stream copy has one part, and ``offset`` is its ``done``."""

    def __init__(self, state_dir: str, key: dict[str, Any]) -> None:
        src = validate.volume_id(key["source_volume_id"], "source_volume_id")
        dst = validate.volume_id(key["destination_volume_id"], "destination_volume_id")
        self.dir_fd = open_state_dir(state_dir)
        self.name = f"{src}--{dst}.json"
        try:
            self.lock_fd = self._lock_pair(f"{src}--{dst}.lock", dst)
        except BaseException:
            os.close(self.dir_fd)
            raise
        self.key = dict(key)
        self.size: int | None = None
        self.parts: list[list[int]] = []
        self._lock = threading.Lock()
        self._load()

    def _lock_pair(self, name: str, volume_id: str) -> int:
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

    @property
    def offset(self) -> int:
        """Where a single-stream copy resumes (0 when there is nothing to resume)."""
        return self.parts[0][2] if len(self.parts) == 1 else 0

    def _load(self) -> None:
        saved = self._read()
        if not isinstance(saved, dict) or any(saved.get(k) != v for k, v in self.key.items()):
            return
        size = saved.get("size")
        parts = saved.get("parts")
        if parts is None:  # written by a single-stream copy of an earlier version
            parts = [[0, size, saved.get("offset")]]
        if isinstance(size, int) and self._valid(parts, size):
            self.size, self.parts = size, [list(p) for p in parts]

    def _valid(self, parts: Any, size: int) -> bool:
        """Parts that tile [0, size) on the chunk grid, each done within its range, and
        something to resume (a completed state never short-circuits a new copy)."""
        chunk = int(self.key["chunk_size"])
        if not isinstance(parts, list) or not 1 <= len(parts) <= MAX_PARTS or size <= 0:
            return False
        at = 0
        for part in parts:
            if (
                not isinstance(part, list)
                or len(part) != 3
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in part)
            ):
                return False
            begin, end, done = part
            if begin != at or not begin <= done <= end or begin % chunk:
                return False
            if (done % chunk and done != end) or (end % chunk and end != size):
                return False
            at = end
        if at != size:
            return False
        return any(done > begin for begin, _, done in parts) and not all(
            done == end for _, end, done in parts
        )

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
        self.size = None
        self.parts = []
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.name, dir_fd=self.dir_fd)

    def complete(self) -> None:
        """Forget the pair: the next copy starts from the beginning."""
        self.reset()
        with contextlib.suppress(FileNotFoundError):  # still held: waiters will try again
            os.unlink(self.lock_name, dir_fd=self.dir_fd)

    def checkpoint(self, offset: int, size: int) -> None:
        """Record ``offset`` as the resume point of a single-stream copy. The caller has
        fsynced the device."""
        self.start_parts([[0, size, offset]], size)

    def start_parts(self, parts: list[list[int]], size: int) -> None:
        """Record the parts of a copy (in memory; written at the next checkpoint)."""
        with self._lock:
            self.size = size
            self.parts = [list(p) for p in parts]
            if any(done > begin for begin, _, done in self.parts):
                self._write()

    def checkpoint_part(self, index: int, done: int) -> None:
        """Record that part ``index`` is written up to ``done``. The caller has fsynced the
        device. Thread-safe: each stream checkpoints its own part."""
        with self._lock:
            self.parts[index][2] = done
            self._write()

    def _write(self) -> None:
        data = json.dumps(
            dict(self.key, offset=self.offset, size=self.size, parts=self.parts), sort_keys=True
        )
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
