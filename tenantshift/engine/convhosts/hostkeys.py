"""Which host key a deployed conversion host gets pinned to: pure decisions, no I/O.

cloud-init prints the host's public keys to the console between ``-----BEGIN SSH HOST KEY
KEYS-----`` and ``-----END SSH HOST KEY KEYS-----``; Nova's console log is an out-of-band
channel (the API, over TLS, authenticated), so a key found there is trusted. When the image
prints none, the key offered at the first connection can be pinned (trust on first use), but
only when the manifest says ``deploy.trust_first_use: true``, and the user is told its
fingerprint. Once recorded, the key must match on every later connection.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass

from tenantshift.errors import TenantshiftError

__all__ = [
    "BEGIN",
    "END",
    "HostKeyRefused",
    "PinnedKey",
    "choose_host_key",
    "console_host_keys",
    "fingerprint",
]

BEGIN = "-----BEGIN SSH HOST KEY KEYS-----"
END = "-----END SSH HOST KEY KEYS-----"

_KEY_TYPES = (
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
)


class HostKeyRefused(TenantshiftError):
    """The offered host key cannot be trusted; the message says why and what to do."""


@dataclass(frozen=True)
class PinnedKey:
    key: str
    """``<type> <base64>``, without comment."""
    source: str
    """``recorded``, ``console-log`` or ``first-use``."""

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.key)


def _wire_strings(blob: bytes) -> list[bytes] | None:
    """The length-prefixed strings an SSH public key blob is made of; None unless they use
    the blob up exactly."""
    out, at = [], 0
    while at < len(blob):
        if at + 4 > len(blob):
            return None
        size = int.from_bytes(blob[at : at + 4], "big")
        at += 4
        if at + size > len(blob):
            return None
        out.append(blob[at : at + size])
        at += size
    return out


def _key_in(line: str) -> str | None:
    """The ``<type> <base64>`` in one console line, if it holds a well-formed public key. A
    console interleaves kernel messages and timestamps, so the key may not start the line."""
    words = line.replace("\r", "").split()
    for i, word in enumerate(words[:-1]):
        if word not in _KEY_TYPES:
            continue
        try:
            blob = base64.b64decode(words[i + 1], validate=True)
        except (binascii.Error, ValueError):
            return None
        fields = _wire_strings(blob)
        # The blob names its own type and is whole: catches mixed-up or cut-off lines.
        if fields is not None and len(fields) >= 2 and fields[0] == word.encode():
            return f"{word} {words[i + 1]}"
        return None
    return None


def console_host_keys(console: str) -> list[str]:
    """The host keys of the last complete BEGIN/END block of a console log (a reboot prints a
    new block; the last one is what the host has now). Empty when there is none."""
    found: list[str] = []
    block: list[str] | None = None
    for line in console.splitlines():
        if BEGIN in line:
            block = []
        elif END in line:
            if block:
                found = block
            block = None
        elif block is not None:
            key = _key_in(line)
            if key is not None:
                block.append(key)
    return found


def fingerprint(key: str) -> str:
    """OpenSSH's ``SHA256:...`` fingerprint of a public key line."""
    blob = base64.b64decode(key.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def _bare(key: str) -> str:
    return " ".join(key.split()[:2])


def choose_host_key(
    offered: str,
    *,
    recorded: str | None,
    console: list[str],
    trust_first_use: bool,
    server: str,
) -> PinnedKey:
    """The key to pin for ``server``, given the one it ``offered`` over SSH. Raises
    :class:`HostKeyRefused` when the offered key contradicts what is known, or when nothing is
    known and trust on first use is not allowed."""
    offered = _bare(offered)
    if recorded is not None:
        if _bare(recorded) != offered:
            raise HostKeyRefused(
                f"{server}: the host key changed since it was recorded (recorded "
                f"{fingerprint(recorded)}, offered {fingerprint(offered)}); refusing to connect. "
                "If the server was rebuilt on purpose, run 'conversion-hosts remove' and deploy "
                "again"
            )
        return PinnedKey(offered, "recorded")
    keys = [_bare(k) for k in console]
    if keys:
        if offered not in keys:
            listed = ", ".join(fingerprint(k) for k in keys)
            raise HostKeyRefused(
                f"{server}: the host key offered ({fingerprint(offered)}) is not one of those "
                f"its console log shows ({listed}); refusing to connect"
            )
        return PinnedKey(offered, "console-log")
    if not trust_first_use:
        raise HostKeyRefused(
            f"{server}: its console log shows no host keys, and the key offered at the first "
            f"connection ({fingerprint(offered)}) is not trusted without "
            "'deploy.trust_first_use: true'; compare the fingerprint with the host's own "
            "(ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub on its console) before allowing it"
        )
    return PinnedKey(offered, "first-use")
