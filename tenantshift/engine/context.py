"""What every apply node gets: both clouds, the manifest's settings, the journal, the thread
pool for blocking SDK calls, and the run's one transfer session.

The transfer session is run-scoped (Terraform's provider nodes plus ``CloseProviderTransformer``):
opened when the first copy needs it, shared by every copy of the run, always closed when the
walk ends, so the copy key is authorised once and revoked once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from tenantshift.engine.executor import IdMap, ResourceExecutor
from tenantshift.engine.journal import Journal
from tenantshift.engine.walker import Listener
from tenantshift.manifest import ConversionHosts, Manifest, Workloads
from tenantshift.providers import Provider
from tenantshift.transfer import RevokeError, TransferOptions, TransferSession

log = logging.getLogger(__name__)

#: The journal owner of run-scoped temporaries (the transfer session's key).
TRANSFER_OWNER = "transfer-session"

T = TypeVar("T")


@dataclass(frozen=True)
class ApplySettings:
    """The parts of a manifest that steer an apply (not which resources: the plan says that)."""

    parallelism: int = 10
    copy_parallelism: int = 2
    conversion_hosts: ConversionHosts | None = None
    workloads: Workloads = field(default_factory=Workloads)
    transfer: TransferOptions = field(default_factory=TransferOptions)
    #: ``map.volume_types``: the disks of a server are not volume resources of their own.
    volume_types: Mapping[str, str] = field(default_factory=dict)
    #: The plan was made, or checked against both clouds, under this apply's lock: a create
    #: that no run of the journal has started has nothing of its own to find in the
    #: destination, and skips the look-up (two round trips of three).
    fresh_plan: bool = False

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
    ) -> None:
        self.destination = destination
        self.source = source
        self.settings = settings
        self.journal = journal
        self.ids = ids
        self.listener = listener
        self.executor = ResourceExecutor(
            destination,
            journal,
            ids,
            started=journal.started_nodes() if settings.fresh_plan else None,
        )
        # Sized to what may run at once: every API node plus every copy's blocking calls. The
        # default pool (cpu + 4 threads) silently capped parallelism at 6 on 2 cores.
        self.pool = ThreadPoolExecutor(
            max_workers=settings.parallelism + settings.copy_parallelism,
            thread_name_prefix="tenantshift-apply",
        )
        self._session: TransferSession | None = None
        self._key_row: int | None = None
        self._dir_rows: list[int] = []
        self._session_lock = asyncio.Lock()

    async def run_blocking(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking (SDK) call in the apply's pool."""
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    async def transfer_session(self) -> TransferSession:
        """The run's transfer session, opened on first use. Its key marker is journaled as a
        temporary before anything is authorised, so a key left by a killed run is swept."""
        async with self._session_lock:
            if self._session is None:
                hosts = self.settings.conversion_hosts
                if hosts is None:
                    raise ValueError(
                        "this plan migrates workloads: the manifest needs conversion_hosts"
                    )
                session = TransferSession(hosts, self.settings.transfer)
                self._key_row = self.journal.intend_temporary(
                    TRANSFER_OWNER, "source", "copy_key", session.marker
                )
                self._session = session
                await session.open()
                self.journal.temporary_created(self._key_row, session.marker)
                # A kill leaves these behind (with the agent): journaled for the sweep.
                for role, run_dir in (
                    ("source", session.source_run_dir),
                    ("destination", session.destination_run_dir),
                ):
                    if run_dir:
                        row = self.journal.intend_temporary(
                            TRANSFER_OWNER, role, "run_dir", run_dir
                        )
                        self.journal.temporary_created(row, run_dir)
                        self._dir_rows.append(row)
            return self._session

    async def aclose(self) -> None:
        """Close the transfer session (revoking the copy keys); always called after the walk.
        A failed revoke leaves the journaled marker pending: the next apply or ``cleanup``
        sweeps it (and the line expires by itself meanwhile)."""
        async with self._session_lock:
            session, self._session = self._session, None
        if session is None:
            return
        try:
            await session.close()
        except RevokeError as exc:
            log.warning("copy key left on the source host (swept next time): %s", exc)
            return
        if session.leftover_marker is None and self._key_row is not None:
            self.journal.temporary_cleaned(self._key_row)
        for row in self._dir_rows:  # close() removed them (or logged why it could not)
            self.journal.temporary_cleaned(row)

    def shutdown(self) -> None:
        self.pool.shutdown(wait=True)
