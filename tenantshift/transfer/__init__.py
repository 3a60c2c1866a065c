"""The conversion-host data path: copy volumes from the source conversion host to the
destination one, directly between them, extents only, hashed, verified and resumable.

See docs/transfer.md. The workload engine calls :func:`copy_volumes` (or a
:class:`TransferSession` when it wants to interleave copies with other steps).
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
