"""What every apply node gets: both clouds, the manifest's settings, the journal, the thread
pool for blocking SDK calls, the pool of conversion host pairs and the run's transfer sessions.

A transfer session is run-scoped per pair (Terraform's provider nodes plus
``CloseProviderTransformer``): opened when the pair's first copy needs it, shared by every copy
on that pair, always closed when the walk ends.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from tenantshift.engine.state.journal import Journal
from tenantshift.engine.state.temporary import Temporary
from tenantshift.engine.walk.executor import IdMap, ResourceExecutor
from tenantshift.engine.walk.limits import Limits, pair_count
from tenantshift.engine.walk.links import CopySession, Links
from tenantshift.engine.walk.pool import PairPool
from tenantshift.engine.walk.walker import Listener
from tenantshift.errors import UsageError
from tenantshift.manifest import AnyConversionHosts, ConversionPair, Manifest, Workloads
from tenantshift.providers import Provider
from tenantshift.transfer import RevokeError, TransferOptions

log = logging.getLogger(__name__)

#: The journal owner of run-scoped temporaries (the transfer session's key).
TRANSFER_OWNER = "transfer-session"

T = TypeVar("T")


@dataclass(frozen=True)
class ApplySettings:
    """The parts of a manifest that steer an apply (not which resources: the plan says that)."""

    parallelism: int = 10
    copy_parallelism: int = 2
    conversion_hosts: AnyConversionHosts | None = None
    workloads: Workloads = field(default_factory=Workloads)
    transfer: TransferOptions = field(default_factory=TransferOptions)
    #: ``map.volume_types``: the disks of a server are not volume resources of their own.
    volume_types: Mapping[str, str] = field(default_factory=dict)
    #: The plan was made, or checked against both clouds, under this apply's lock: a create
    #: that no run of the journal has started has nothing of its own to find in the
    #: destination, and skips the look-up (two round trips of three).
    fresh_plan: bool = False

    @property
    def limits(self) -> Limits:
        """Every concurrency bound of the apply, derived from these settings."""
        return Limits.of(self.parallelism, self.copy_parallelism, pair_count(self.conversion_hosts))

    @classmethod
    def from_manifest(cls, manifest: Manifest) -> ApplySettings:
        return cls(
            parallelism=manifest.options.parallelism,
            copy_parallelism=manifest.options.copy_parallelism,
            conversion_hosts=manifest.conversion_hosts,
            workloads=manifest.workloads,
            volume_types=dict(manifest.map.volume_types),
        )


class ApplyContext:
    def __init__(
        self,
        *,
        destination: Provider,
        source: Provider | None,
        settings: ApplySettings,
        journal: Journal,
        ids: IdMap,
        listener: Listener,
        links: Links | None = None,
    ) -> None:
        self.destination = destination
        self.source = source
        self.settings = settings
        self.journal = journal
        self.ids = ids
        self.listener = listener
        #: How copies reach the conversion hosts (SSH unless a test says otherwise).
        self.links = links or Links()
        self.executor = ResourceExecutor(
            destination,
            journal,
            ids,
            started=journal.started_nodes() if settings.fresh_plan else None,
        )
        limits = settings.limits
        # One thread for each node the walker may run at once (``Limits.threads``).
        self.pool = ThreadPoolExecutor(
            max_workers=limits.threads, thread_name_prefix="tenantshift-apply"
        )
        #: The pool's copy slots (``Limits.per_pair`` per pair); None without hosts.
        self.pairs: PairPool | None = None
        hosts = settings.conversion_hosts
        if hosts is not None:
            names = [pair.name for pair in hosts.all_pairs]
            self.pairs = PairPool(names, limits.per_pair)
        #: One transfer session per pair, each opened by its pair's first copy.
        self._sessions: dict[str, CopySession] = {}
        self._key_rows: dict[str, int] = {}
        self._dir_rows: dict[str, list[int]] = {}
        self._session_lock = asyncio.Lock()

    async def run_blocking(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking (SDK) call in the apply's pool."""
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    def conversion_pair(self, name: str | None = None) -> ConversionPair:
        """The manifest's pair ``name`` (the only one when None)."""
        hosts = self.settings.conversion_hosts
        if hosts is None:
            raise UsageError("this plan migrates workloads: the manifest needs conversion_hosts")
        return hosts.only_pair() if name is None else hosts.pair(name)

    async def transfer_session(self, pair_name: str | None = None) -> CopySession:
        """The run's transfer session for a pair, opened on first use. Its key marker is
        journaled as a temporary (with the pair) before anything is authorised, so a key left
        by a killed run is swept on the right host."""
        pair = self.conversion_pair(pair_name)
        async with self._session_lock:
            session = self._sessions.get(pair.name)
            if session is None:
                session = self.links.open_session(pair, self.settings.transfer)
                where = {"pair": pair.name}
                self._key_rows[pair.name] = self.journal.intend_temporary(
                    TRANSFER_OWNER, "source", Temporary.COPY_KEY, session.marker, where
                )
                self._sessions[pair.name] = session
                await session.open()
                self.journal.temporary_created(self._key_rows[pair.name], session.marker)
                # A kill leaves these behind (with the agent): journaled for the sweep.
                for role, run_dir in (
                    ("source", session.source_run_dir),
                    ("destination", session.destination_run_dir),
                ):
                    if run_dir:
                        row = self.journal.intend_temporary(
                            TRANSFER_OWNER, role, Temporary.RUN_DIR, run_dir, where
                        )
                        self.journal.temporary_created(row, run_dir)
                        self._dir_rows.setdefault(pair.name, []).append(row)
            return session

    async def drop_session(self, pair_name: str) -> None:
        """Close a pair's session (it went away): whatever cannot be revoked stays journaled
        for a later sweep, and the line expires by itself meanwhile."""
        async with self._session_lock:
            session = self._sessions.pop(pair_name, None)
        if session is not None:
            await self._close(pair_name, session)

    async def aclose(self) -> None:
        """Close every transfer session (revoking the copy keys); always called after the
        walk. A failed revoke leaves the journaled marker pending: the next apply or
        ``cleanup`` sweeps it (and the line expires by itself meanwhile)."""
        async with self._session_lock:
            sessions, self._sessions = self._sessions, {}
        for name, session in sessions.items():
            await self._close(name, session)

    async def _close(self, name: str, session: CopySession) -> None:
        try:
            await session.close()
        except (RevokeError, OSError) as exc:
            log.warning("copy key left on pair %s's source host (swept next time): %s", name, exc)
            return
        key_row = self._key_rows.pop(name, None)
        if session.leftover_marker is None and key_row is not None:
            self.journal.temporary_cleaned(key_row)
        for row in self._dir_rows.pop(name, []):  # close() removed them (or logged why not)
            self.journal.temporary_cleaned(row)

    def shutdown(self) -> None:
        self.pool.shutdown(wait=True)
