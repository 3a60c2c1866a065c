"""The conversion-host data path: copy volumes from the source conversion host to the
destination one, directly between them, extents only, hashed, verified and resumable.

See docs/transfer.md. The workload engine opens one :class:`TransferSession` per conversion
host pair for a whole apply (``ApplyContext.transfer_session``) and copies through it between
its other steps; :func:`copy_volumes` is the one-shot form, a session around one batch of copies
(the transfer benchmark and tests use it).
"""

from .errors import (
    ConnectError,
    DeviceNotFoundError,
    HostKeyError,
    RevokeError,
    StreamError,
    TransferError,
    VerificationError,
)
from .model import Progress, TransferOptions, TransferResult, VolumeCopy
from .probe import probe_hosts
from .session import TransferSession, copy_volumes
from .sweep import remove_run_dirs, sweep_leftover_keys

__all__ = [
    "ConnectError",
    "DeviceNotFoundError",
    "HostKeyError",
    "Progress",
    "RevokeError",
    "StreamError",
    "TransferError",
    "TransferOptions",
    "TransferResult",
    "TransferSession",
    "VerificationError",
    "VolumeCopy",
    "copy_volumes",
    "probe_hosts",
    "remove_run_dirs",
    "sweep_leftover_keys",
]
