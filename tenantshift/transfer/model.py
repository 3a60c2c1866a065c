"""What the transfer layer takes and gives: copies, options, progress, results."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from .agent import validate

MiB = 1024 * 1024

#: sshd's ``from=`` pattern-list: comma-separated, optionally negated host name, address or
#: CIDR patterns with ``*`` and ``?``. No quotes, backslashes, spaces or commas inside a
#: pattern, so the value can never close the option and add others.
_FROM_PATTERN = re.compile(r"\A!?[A-Za-z0-9.:*?/_%\[\]-]+\Z")


def check_source_from(value: str) -> None:
    patterns = value.split(",")
    if not value or len(value) > 1024 or not all(_FROM_PATTERN.match(p) for p in patterns):
        raise ValueError(
            "source_from must be an sshd pattern-list: comma-separated [!]host, address or "
            "CIDR patterns (letters, digits, . : * ? / _ % - [ ])"
        )


Compression = Literal["auto", "zstd", "zlib", "none"]


@dataclass(frozen=True)
class VolumeCopy:
    """One volume to copy: attached to the source host and to the destination host."""

    source_volume_id: str
    destination_volume_id: str
    source_generation: str | None = None
    """What the source volume's content is at, as the caller knows it (its ``updated_at``, or
    the id of the snapshot it was made from). Part of the resume key: an interrupted copy
    resumes only for the same generation. Optional; a resumed copy is verified against what
    the source holds now in any case."""

    delta_base: str | None = None
    """A delta copy: the digest the destination volume holds (the last verified copy's).
    Only chunks whose hash differs from the destination's move."""
    chunk_size: int | None = None
    """This copy's chunk grid, instead of the session's ``TransferOptions.chunk_size``: the
    granularity of a delta (a changed chunk moves whole). Copies that feed one destination's
    deltas use one size (the index of another size is rebuilt)."""

    def __post_init__(self) -> None:
        # The ids become by-id names and file names on the hosts, as root.
        for name in ("source_volume_id", "destination_volume_id"):
            validate.volume_id(getattr(self, name), name)
        validate.generation(self.source_generation)
        validate.generation(self.delta_base)
        if self.chunk_size is not None:
            validate.chunk_size(self.chunk_size)


@dataclass(frozen=True)
class TransferOptions:
    chunk_size: int = 4 * MiB
    """Grid the volume is read, hashed and resumed in."""
    compression: Compression = "auto"
    """``auto``: zstd when both hosts have it, else none. ``zstd``: zstd, else zlib, else none.
    ``zlib``: zlib level 1, else none. ``none``."""
    hash_algorithm: Literal["auto", "xxh3", "sha256", "blake2b"] = "auto"
    """Per-chunk hash. ``auto``: XXH3-128 when both hosts have libxxhash (about 10x faster
    than sha256 here; it guards against corruption and bugs, not against someone choosing
    colliding data, see ``agent/hashes.py``), else sha256 (hashlib's uses the CPU's SHA
    extensions: 1.3 GiB/s measured here against 0.57 GiB/s for blake2b). ``xxh3`` fails
    the copy if a host lacks it."""
    target_zeroed: bool = False
    """True only when destination volumes are known to read as zeros (freshly created thin
    volumes); otherwise ranges the source does not send are zeroed explicitly."""
    verify: bool = True
    """Prove the destination holds what the source holds, chunk by chunk (see ``reread``).
    False: no proof; a resume then trusts the state file."""
    reread: bool = False
    """With ``verify``: after the final fsync, re-read the whole destination and compare it
    with the source's chunk hashes, and check that everything else reads as zeros. Without
    it, each chunk is hashed as received (decompressed) and compared with the source's hash
    *before* it is written, skipped ranges are zeroed, and only a resumed prefix is re-read.
    The re-read additionally catches what happens between our write and a read (a device or
    driver that loses or alters writes, a wrong ``target_zeroed``), at the cost of a second
    pass over the data. See docs/transfer.md."""
    streams: int = 0
    """SSH connections (and source/destination processes) per volume copy, each streaming
    its own part of the volume (parts of equal allocated size, computed by the source).
    0: automatic, one per 2 GiB of volume size, at most 4. Separate connections are what
    parallelise: one sshd process serves all channels of a connection."""
    checkpoint_bytes: int = 256 * MiB
    """Data written between resume points (each costs an fsync)."""
    rate_limit: int | None = None
    """Cap on stream bytes per second per volume (at least 1 MiB/s); None for no cap."""
    state_dir: str = "/var/lib/tenantshift-transfer"
    """Directory on the destination host for resume points (survives reboots, unlike /tmp).
    The pull agent (root) creates it 0700 and refuses it unless it is owned by root and
    closed to group and others."""
    source_authorized_keys: str | None = None
    """authorized_keys file for the run's ephemeral key on the source host; by default the one
    the source's sshd reads for the login user (its AuthorizedKeysFile, else ~/.ssh/...)."""
    source_from: str | None = None
    """Restrict the ephemeral key to connections from this address pattern (sshd ``from=``),
    i.e. the destination host's address as the source host sees it."""
    key_lifetime: int = 24 * 3600
    """Seconds after which a copy's key line stops working (``expiry-time``), even if
    tenantshift dies before revoking it. Checked by sshd at login only, so it has to cover
    the time until a copy's connection starts (retries included), not the copy itself."""
    connect_timeout: float = 30.0
    progress_interval: float = 0.5
    """Seconds between progress reports."""

    def __post_init__(self) -> None:
        if self.chunk_size < 64 * 1024 or self.chunk_size % (64 * 1024):
            raise ValueError("chunk_size must be a multiple of 64 KiB")
        if self.chunk_size > 32 * MiB:
            raise ValueError("chunk_size must be at most 32 MiB")
        if not 0 <= self.streams <= 8:
            raise ValueError("streams must be between 0 (automatic) and 8")
        if self.rate_limit is not None and self.rate_limit < validate.MIN_RATE_LIMIT:
            raise ValueError("rate_limit must be at least 1 MiB/s (or None)")
        if not self.state_dir.startswith("/"):
            raise ValueError("state_dir must be an absolute path")
        if self.source_from is not None:
            check_source_from(self.source_from)
        if not 60 <= self.key_lifetime <= 30 * 24 * 3600:
            raise ValueError("key_lifetime must be between 60 seconds and 30 days")


@dataclass(frozen=True)
class Progress:
    """A progress report of one volume copy (the current attempt)."""

    source_volume_id: str
    destination_volume_id: str

    bytes_done: int
    """Logical offset up to which the volume is copied (holes count as done)."""
    bytes_total: int
    """Logical size of the volume."""
    data_bytes: int
    """Non-zero bytes written by this attempt."""
    wire_bytes: int
    """Stream bytes received by this attempt."""
    seconds: float
    rate: float
    """Logical bytes per second of this attempt (for an estimate of the time left)."""
    wire_rate: float


@dataclass(frozen=True)
class TransferResult:
    source_volume_id: str
    destination_volume_id: str

    bytes_logical: int
    """Size of the volume."""
    bytes_allocated: int
    """Allocated on the source as the source reports it (the full size on block devices)."""
    bytes_data: int
    """Non-zero bytes written by this run (less than the total when resumed)."""
    bytes_wire: int
    """Stream bytes this run moved between the hosts (before SSH's own framing)."""
    seconds: float
    """Wall time of this run, verification included."""
    copy_seconds: float
    """Seconds the destination agent spent copying (connection to the source, stream, final
    fsync), without verification."""
    resumed_from: int
    """Offset this run started from (0 unless an earlier run was interrupted)."""
    codec: str
    chunks: int
    """Non-zero chunks in the volume (the entries of the digest)."""
    digest: str | None
    """Hash over the per-chunk hashes: equal digests mean identical logical content."""
    verified: bool
    verify_seconds: float = 0.0
    bytes_read: int = 0
    """Bytes the source read (the whole allocated volume, for a delta copy too)."""
    delta: bool = False
    """A delta copy: only chunks that differed moved."""
    chunks_changed: int = 0
    """Chunks a delta copy sent or zeroed."""
    index_bytes: int = 0
    """Bytes of the destination's chunk index a delta copy sent to the source."""
    index_rebuilt: bool = False
    """A delta copy found no index it could trust and read the destination volume for it."""
    index_seconds: float = 0.0
    """Seconds that rebuilding took."""
    """Seconds spent verifying after the copy (re-read of a resumed prefix, or of everything
    with ``reread``)."""
