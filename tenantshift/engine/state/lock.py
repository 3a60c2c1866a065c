"""The apply lock: one apply per manifest, and per destination project, at a time.

``flock`` is released by the kernel when the holder dies, so a killed apply never leaves a stale
lock behind; the pid written inside is only there to make the refusal message useful.

The manifest's lock lives in its state directory. A second lock, named after the destination
project (auth URL and project id), lives in a per-user directory: two checkouts of one manifest,
or two manifests into one project, cannot interleave their find-then-create steps and leave
duplicates (a lock per manifest path alone did not see them).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from tenantshift.errors import LocalFileError, TenantshiftError


class LockedError(TenantshiftError):
    pass


def lock_root() -> Path:
    """Per-user directory of the destination locks (private: 0700)."""
    base = os.environ.get("XDG_RUNTIME_DIR") or str(Path.home() / ".cache")
    return Path(base) / "tenantshift" / "locks"


class ApplyLock:
    """``destination``: the destination project's identity, locked as well when given."""

    def __init__(self, state_dir: Path, destination: str | None = None) -> None:
        self.path = state_dir / "apply.lock"
        self.paths = [self.path]
        if destination is not None:
            digest = hashlib.sha256(destination.encode()).hexdigest()[:24]
            self.paths.append(lock_root() / f"{digest}.lock")
        self._fds: list[int] = []
        self._depth = 0  # re-entered by the same caller: released when the outermost exits

    def __enter__(self) -> ApplyLock:
        if self._fds:
            self._depth += 1
            return self
        try:
            for index, path in enumerate(self.paths):
                self._fds.append(
                    _take(path, "this manifest" if index == 0 else "this destination project")
                )
        except BaseException:
            self._release()
            raise
        self._depth = 1
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._depth -= 1
        if self._depth == 0:
            self._release()

    def _release(self) -> None:
        for fd in reversed(self._fds):
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
        self._fds = []


def _take(path: Path, what: str) -> int:
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        # The first write into the state directory of a run: a directory the user cannot
        # write (or a symlink planted at the lock) is reported here, before any cloud call.
        raise LocalFileError(
            f"cannot take the apply lock of {what}: {path}: {exc.strerror or exc}"
        ) from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise LockedError(
            f"another apply of {what} is running ({holder}); wait for it to finish (lock: {path})"
        ) from None
    os.ftruncate(fd, 0)
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    os.pwrite(fd, f"pid {os.getpid()} since {stamp}".encode(), 0)
    return fd
