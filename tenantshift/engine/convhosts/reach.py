"""Reaching a freshly deployed conversion host over SSH: wait until its sshd answers, learn the
key it offers (without logging in), then log in verifying the pinned key."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncssh

__all__ = ["login_works", "offered_host_key", "public_key_of"]


def public_key_of(key_file: str) -> str:
    """The OpenSSH public key line of a private key file (its ``.pub`` is not trusted to
    match: the key itself is read)."""
    key = asyncssh.read_private_key(key_file)
    return key.export_public_key("openssh").decode().split("\n")[0].strip()


async def offered_host_key(address: str, port: int, timeout: float) -> str:
    """The host key the sshd at ``address:port`` offers, retried until it answers or
    ``timeout`` seconds pass (a booting server's sshd starts late)."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            key = await asyncio.wait_for(
                asyncssh.get_server_host_key(address, port, config=None), timeout=15
            )
        except (TimeoutError, OSError, asyncssh.Error) as exc:
            last = exc
        else:
            if key is not None:
                return key.export_public_key("openssh").decode().split("\n")[0].strip()
        await asyncio.sleep(2)
    raise TimeoutError(f"SSH at {address}:{port} did not answer in {timeout:.0f} s: {last}")


async def login_works(
    address: str, port: int, user: str, key_file: str, host_key: str, timeout: float
) -> None:
    """Log in with ``key_file``, the host key verified against ``host_key`` only; retried
    until ``timeout`` (cloud-init may install the authorised key after sshd starts). Raises
    the last error when it never works; a host key mismatch is not retried."""
    deadline = time.monotonic() + timeout
    trusted: Any = ([asyncssh.import_public_key(host_key)], [], [])
    while True:
        try:
            async with asyncssh.connect(
                address,
                port=port,
                username=user,
                client_keys=[key_file],
                known_hosts=trusted,
                agent_path=None,
                config=None,
                connect_timeout=10,
            ) as conn:
                await conn.run("true", check=True)
                return
        except asyncssh.HostKeyNotVerifiable:
            raise
        except (TimeoutError, OSError, asyncssh.Error):
            if time.monotonic() >= deadline:
                raise
        await asyncio.sleep(2)
