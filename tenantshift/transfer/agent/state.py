"""The destination's resume point: a small JSON file plus a sidecar of verified chunk hashes.

The JSON file holds the offset up to which everything is written, fsynced and verified, and
how many sidecar records belong to that prefix. It is replaced atomically (write, fsync,
rename) only after the device and the sidecar are fsynced, so after a crash it never claims
more than is on disk. The sidecar (``offset, hash`` per non-zero chunk) lets the final
verification cover chunks copied by earlier, interrupted attempts.
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
from typing import Any, Iterator

ENTRY = struct.Struct("!Q32s")


class State:
    def __init__(self, state_dir: str, key: dict[str, Any]) -> None:
        os.makedirs(state_dir, mode=0o700, exist_ok=True)
        name = f"{key['source_volume_id']}--{key['destination_volume_id']}"
        self.path = os.path.join(state_dir, name + ".json")
        self.key = dict(key)
        self.offset = 0
        self.size: int | None = None
        self.count = 0
        self._pending = 0  # sidecar records appended since the last checkpoint
        self._sidecar = open(os.path.join(state_dir, name + ".hashes"), "a+b")  # noqa: SIM115 (closed by close())
        self._load()

    def _load(self) -> None:
        try:
            with open(self.path, encoding="utf-8") as f:
                saved = json.load(f)
        except (OSError, ValueError):
            saved = None
        if isinstance(saved, dict) and all(saved.get(k) == v for k, v in self.key.items()):
            self.offset = int(saved["offset"])
            self.size = int(saved["size"])
            self.count = int(saved["hashes"])
        self._sidecar.truncate(self.count * ENTRY.size)
        self._sidecar.seek(0, os.SEEK_END)

    def reset(self) -> None:
        self.offset = 0
        self.size = None
        self.count = 0
        self._pending = 0
        self._sidecar.truncate(0)
        self._sidecar.seek(0)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    def append(self, offset: int, digest: bytes) -> None:
        self._sidecar.write(ENTRY.pack(offset, digest))
        self._pending += 1

    def checkpoint(self, offset: int, size: int) -> None:
        """Record ``offset`` as the resume point. The caller has fsynced the device."""
        self._sidecar.flush()
        os.fsync(self._sidecar.fileno())
        self.count += self._pending
        self._pending = 0
        self.offset = offset
        self.size = size
        data = dict(self.key, offset=offset, size=size, hashes=self.count)
        tmp = self.path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        dir_fd = os.open(os.path.dirname(self.path) or ".", os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def entries(self) -> Iterator[tuple[int, bytes]]:
        """The verified chunks recorded so far (checkpointed or not), in offset order."""
        self._sidecar.flush()
        with open(self._sidecar.name, "rb") as f:
            while True:
                raw = f.read(ENTRY.size * 4096)
                if not raw:
                    return
                for i in range(0, len(raw) - len(raw) % ENTRY.size, ENTRY.size):
                    yield ENTRY.unpack_from(raw, i)

    def close(self) -> None:
        self._sidecar.close()
