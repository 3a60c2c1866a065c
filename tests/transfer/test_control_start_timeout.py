"""A conversion host whose login never runs our command (a shell start-up that blocks, as a
stale pyenv lock in root's .bashrc did on this machine) fails the session with a clear error
after the timeout instead of hanging the migration."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tenantshift.manifest.schema import ConversionHost
from tenantshift.transfer import TransferError
from tenantshift.transfer.ssh import start_control


class _Silent:
    """An SSH process that accepts input and never prints a line."""

    def __init__(self) -> None:
        self.closed = False
        self.stdin = self
        self.stdout = self

    def write(self, data: bytes) -> None:
        pass

    async def readline(self) -> bytes:
        await asyncio.sleep(3600)
        return b""

    def close(self) -> None:
        self.closed = True


class _Conn:
    def __init__(self) -> None:
        self.process = _Silent()

    async def create_process(self, command: str, encoding: Any = None) -> _Silent:
        return self.process


def test_an_agent_that_never_answers_fails_after_the_timeout(tmp_path: Path) -> None:
    host = ConversionHost.model_validate(
        {"address": "127.0.0.1", "key_file": str(tmp_path / "key"),
         "host_key_policy": "insecure-skip"}
    )  # fmt: skip
    conn = _Conn()
    with pytest.raises(TransferError, match="no answer in 0 s"):
        asyncio.run(start_control(conn, host, "source", b"zip", timeout=0.2))  # type: ignore[arg-type]
    assert conn.process.closed  # the session on the host is closed, not left running
