"""Workload migrations: resumable state machines, one per ``migrate`` change.

Each migration is an ordered list of phases. A phase re-reads the clouds before it acts and
does nothing when its work is already done (pyinfra's fact-then-operation, per phase); after it
completes, the journal's ``node_state`` moves forward with the ids the next phases need
(alembic's ``update_to_step``). A killed apply therefore resumes at the phase it was in.

Every temporary change (a volume attached to a conversion host, a temporary volume or snapshot)
is journaled as *intended* before it is made and *cleaned* when undone, so the cleanup node,
``tenantshift cleanup`` and the sweep at the start of the next apply can always find it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any

from tenantshift.engine.context import ApplyContext
from tenantshift.engine.nodes import Node
from tenantshift.providers import Provider, ProviderError
from tenantshift.providers.volume_ops import MIGRATED_KEY, VolumeOps
from tenantshift.transfer import DeviceNotFoundError, Progress, TransferResult, VolumeCopy

log = logging.getLogger(__name__)

#: How long a freshly attached volume may take to show up under the host's device directory.
DEVICE_WAIT_SECONDS = 120.0

Cloud = str  # "source" | "destination"


#: Fault injection for the kill-and-resume tests: SIGKILL this process right after the named
#: phase is journaled, exactly as a crash or ``kill -9`` would land there.
FAULT_KILL_AFTER = "TENANTSHIFT_FAULT_KILL_AFTER"


class WorkloadError(Exception):
    pass


def _fault_point(phase: str) -> None:
    if os.environ.get(FAULT_KILL_AFTER) == phase:
        os.kill(os.getpid(), signal.SIGKILL)


def _ops(ctx: ApplyContext, cloud: Cloud) -> VolumeOps:
    provider: Provider | None = ctx.source if cloud == "source" else ctx.destination
    if provider is None:
        raise WorkloadError(f"migrating workloads needs the {cloud} cloud, and apply has none")
    ops = getattr(provider, "volume_ops", None)
    if ops is None:
        raise WorkloadError(f"{provider.label}: this provider cannot attach or copy volumes")
    return ops


class VolumeMigration:
    """A detached volume: a destination twin, both attached to their conversion hosts, the
    bytes copied and verified between the hosts, both detached, the twin marked migrated."""

    PHASES = ("destination_volume", "attached", "copied", "detached")

    def __init__(self, ctx: ApplyContext, node: Node) -> None:
        self.ctx = ctx
        self.node = node
        self.change = node.change
        self.source_id = str(self.change.source_id)
        self.src = _ops(ctx, "source")
        self.dst = _ops(ctx, "destination")
        hosts = ctx.settings.conversion_hosts
        if hosts is None:
            raise WorkloadError("migrating volumes needs conversion_hosts in the manifest")
        self.hosts = hosts

    async def run(self) -> str:
        journal = self.ctx.journal
        state = journal.state_of(self.node.id)
        done_phase, data = state if state else ("", {})
        if data.get("source_id") not in (None, self.source_id):
            done_phase, data = "", {}  # a state from another source volume: start over
        data["source_id"] = self.source_id
        steps: dict[str, Callable[[dict[str, Any]], Awaitable[None]]] = {
            "destination_volume": self._destination_volume,
            "attached": self._attach,
            "copied": self._copy,
            "detached": self._detach,
        }
        start = self.PHASES.index(done_phase) + 1 if done_phase in self.PHASES else 0
        if start:
            self._step(f"resuming after {done_phase}")
        for phase in self.PHASES[start:]:
            self._step(phase)
            await steps[phase](data)
            journal.advance(self.node.id, phase, data)
            _fault_point(phase)
        await self._block(self.dst.set_metadata, data["dst_volume"], {MIGRATED_KEY: data["digest"]})
        journal.clear_state(self.node.id)
        return (
            f"copied to {data['dst_volume']}: {data['data_bytes'] / 2**20:.1f} MiB of data, "
            f"{data['wire_bytes'] / 2**20:.1f} MiB on the wire, verified (digest "
            f"{str(data['digest'])[:16]})"
        )

    # -- phases -----------------------------------------------------------------------------
    async def _destination_volume(self, data: dict[str, Any]) -> None:
        source = await self._block(self.src.volume, self.source_id)
        if source is None:
            raise WorkloadError(f"source volume {self.source_id} is gone")
        src_host = await self._block(self.src.server_id, self._host_name("source"))
        # Attached only to the source conversion host: an earlier, killed run of ours did it.
        ours = set(source.get("attached_to") or []) <= {src_host}
        if source["status"] not in ("available", "in-use") or not ours:
            raise WorkloadError(
                f"source volume {self.source_id} is {source['status']} (attached to "
                f"{', '.join(source.get('attached_to') or []) or 'nothing'}): a detached volume "
                "must stay detached while it migrates"
            )
        params = dict(self.change.after or {})
        found = await self._block(
            self.ctx.destination.find, self.change.kind, self.source_id, params
        )
        if found is None:
            found = await self._block(
                self.ctx.destination.create, self.change.kind, params, self.source_id
            )
            note = "created"
        else:
            note = "found"
        self.ctx.ids.set(self.change.address, str(found["id"]))
        data["dst_volume"] = str(found["id"])
        data["size"] = source["size"]
        log.info("%s: destination volume %s %s", self.change.address, found["id"], note)

    async def _attach(self, data: dict[str, Any]) -> None:
        data["src_host"] = await self._block(self.src.server_id, self._host_name("source"))
        data["dst_host"] = await self._block(self.dst.server_id, self._host_name("destination"))
        await asyncio.gather(
            self._attach_one("source", data["src_host"], self.source_id),
            self._attach_one("destination", data["dst_host"], data["dst_volume"]),
        )

    async def _copy(self, data: dict[str, Any]) -> None:
        session = await self.ctx.transfer_session()
        copy = VolumeCopy(self.source_id, data["dst_volume"])

        def progress(report: Progress) -> None:
            self.ctx.listener.progress(self.node, report.bytes_done, report.bytes_total)

        deadline = time.monotonic() + DEVICE_WAIT_SECONDS
        while True:
            try:
                result: TransferResult = await session.copy(copy, progress)
                break
            except DeviceNotFoundError:
                # Attached in the API, not yet visible to the guest: wait for the device.
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(2)
        if not result.verified:
            raise WorkloadError(f"{self.change.address}: the copy was not verified")
        data.update(
            digest=result.digest,
            data_bytes=result.bytes_data,
            wire_bytes=result.bytes_wire,
            codec=result.codec,
            resumed_from=result.resumed_from,
        )

    async def _detach(self, data: dict[str, Any]) -> None:
        await clean_up(self.ctx, owner=self.node.id)

    # -- helpers ----------------------------------------------------------------------------
    async def _attach_one(self, cloud: Cloud, server_id: str, volume_id: str) -> None:
        ops = self.src if cloud == "source" else self.dst
        journal = self.ctx.journal
        seq = journal.intend_temporary(
            self.node.id,
            cloud,
            "attachment",
            f"{volume_id}@{server_id}",
            {"server_id": server_id, "volume_id": volume_id},
        )
        await self._block(ops.attach, server_id, volume_id)
        journal.temporary_created(seq, volume_id)

    def _host_name(self, cloud: Cloud) -> str:
        host = self.hosts.source if cloud == "source" else self.hosts.destination
        if not host.server:
            raise WorkloadError(
                f"conversion_hosts.{cloud}.server is needed to attach volumes to that host"
            )
        return host.server

    def _step(self, name: str) -> None:
        try:
            self.ctx.listener.step(self.node, name)
        except Exception:  # a broken display must not stop a migration
            log.exception("progress listener failed")

    async def _block(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await self.ctx.run_blocking(fn, *args)


#: Migration per kind; a kind declared ``workload=True`` must have one.
MIGRATIONS: dict[str, type[VolumeMigration]] = {"volume": VolumeMigration}


async def migrate(ctx: ApplyContext, node: Node) -> str:
    migration = MIGRATIONS.get(node.change.kind)
    if migration is None:
        raise WorkloadError(f"{node.change.address}: no migration for kind {node.change.kind}")
    if node.change.blocked:
        raise WorkloadError(f"blocked: {node.change.detail}")
    return await migration(ctx, node).run()


# -- undoing temporaries --------------------------------------------------------------------
async def _undo(ctx: ApplyContext, row: dict[str, Any]) -> None:
    ops = _ops(ctx, str(row["cloud"]))
    data = row["data"]
    if row["kind"] == "attachment":
        await ctx.run_blocking(ops.detach, data["server_id"], data["volume_id"])
    elif row["kind"] == "volume":
        if row["resource_id"]:
            await ctx.run_blocking(ops.delete_volume, row["resource_id"])
    else:
        raise WorkloadError(f"unknown temporary kind {row['kind']!r}")


async def clean_up(ctx: ApplyContext, *, owner: str | None) -> str:
    """Undo the pending temporaries of ``owner`` (all owners when None), newest first. Every
    one is tried; the first failure is raised after the others were attempted."""
    rows = ctx.journal.pending_temporaries(owner)
    failures: list[str] = []
    for row in rows:
        try:
            await _undo(ctx, row)
        except (ProviderError, WorkloadError) as exc:
            failures.append(f"{row['kind']} {row['name']} ({row['cloud']}): {exc}")
            continue
        ctx.journal.temporary_cleaned(int(row["seq"]))
    if failures:
        raise WorkloadError("could not clean up: " + "; ".join(failures))
    return f"cleaned up {len(rows)} temporaries" if rows else "nothing to clean up"


async def sweep(ctx: ApplyContext, keep: frozenset[str] = frozenset()) -> tuple[str, ...]:
    """Before a walk: undo what earlier runs left, except for owners that will resume now."""
    swept = []
    for owner in sorted({str(r["owner"]) for r in ctx.journal.pending_temporaries()} - keep):
        swept.append(f"{owner}: {await clean_up(ctx, owner=owner)}")
    return tuple(swept)
