"""Errors of the transfer layer. Messages name hosts and volumes, never keys or secrets."""

from __future__ import annotations

from tenantshift.errors import TenantshiftError

from .model import TransferResult


class TransferError(TenantshiftError):
    """A volume copy (or the session around it) failed."""


class HostKeyError(TransferError):
    """A conversion host presented a host key that its configuration does not trust."""


class ConnectError(TransferError):
    """A conversion host could not be reached or refused the login."""


class DeviceNotFoundError(TransferError):
    """A volume's device is not attached (not found under the host's device_dir)."""

    def __init__(self, message: str, volume_id: str, side: str) -> None:
        super().__init__(message)
        self.volume_id = volume_id
        self.side = side


class VerificationError(TransferError):
    """The destination does not hold what the source sent."""


class StreamError(TransferError):
    """The stream between the hosts broke (the copy can be resumed by running it again)."""


class RevokeError(TransferError):
    """A key line could not be removed from the source's authorized_keys. It expires by
    itself (``TransferOptions.key_lifetime``); ``sweep_leftover_keys(hosts, [marker])``
    removes it. Copies that finished are on ``results``."""

    def __init__(self, message: str, marker: str, host: str) -> None:
        super().__init__(message)
        self.marker = marker
        self.host = host
        self.results: list[TransferResult] = []
