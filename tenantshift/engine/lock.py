"""The apply lock: one apply per manifest at a time.

``flock`` is released by the kernel when the holder dies, so a killed apply never leaves a stale
lock behind; the pid written inside is only there to make the refusal message useful.
"""

from __future__ import annotations

import fcntl
import os
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType


class LockedError(Exception):
    pass


class ApplyLock:
    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "apply.lock"
        self._fd: int | None = None
        self._depth = 0  # re-entered by the same caller: released when the outermost exits

    def __enter__(self) -> ApplyLock:
        if self._fd is not None:
            self._depth += 1
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise LockedError(
                f"another apply of this manifest is running ({holder}); "
                f"wait for it to finish (lock: {self.path})"
            ) from None
        os.ftruncate(fd, 0)
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        os.pwrite(fd, f"pid {os.getpid()} since {stamp}".encode(), 0)
        self._fd = fd
        self._depth = 1
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._depth -= 1
        if self._fd is not None and self._depth == 0:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
