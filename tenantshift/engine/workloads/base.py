"""The shape every workload migration shares: journaled phases, temporaries, copies.

A migration is an ordered list of phases. A phase re-reads the clouds before it acts and does
nothing when its work is already done (pyinfra's fact-then-operation, per phase); after it
completes, the journal's ``node_state`` moves forward with the ids the next phases need
(alembic's ``update_to_step``), so a killed apply resumes at the phase it was in.

Every temporary change (a volume attached to a conversion host, a snapshot, a temporary volume,
a data volume detached from its server) is journaled as *intended* before it is made and
*cleaned* when undone, so the cleanup node, ``tenantshift cleanup`` and the sweep at the start
of the next apply can always find it (``temporaries.py`` undoes them).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

import asyncssh

from tenantshift.engine.context import ApplyContext
from tenantshift.engine.nodes import Node
from tenantshift.engine.pool import NoPairError
from tenantshift.errors import TenantshiftError
from tenantshift.manifest import DEFAULT_PAIR, ConversionPair
from tenantshift.providers import Provider
from tenantshift.providers.volume_ops import VolumeOps
from tenantshift.resources.marker import make_marker, split_marker
from tenantshift.transfer import (
    DeviceNotFoundError,
    Progress,
    TransferError,
    TransferResult,
    VolumeCopy,
    probe_hosts,
)

log = logging.getLogger(__name__)

#: How long a freshly attached volume may take to show up under the host's device directory.
DEVICE_WAIT_SECONDS = 120.0
#: How long the check of a pair that failed a copy may take to reach its hosts.
PROBE_SECONDS = 10.0

#: Fault injection for the kill-and-resume tests: SIGKILL this process right after the named
#: phase is journaled, exactly as a crash or ``kill -9`` would land there.
FAULT_KILL_AFTER = "TENANTSHIFT_FAULT_KILL_AFTER"
#: ... or as soon as a copy reports this many bytes done (a kill in the middle of a copy).
FAULT_KILL_AT_BYTES = "TENANTSHIFT_FAULT_KILL_AT_BYTES"

Cloud = str  # "source" | "destination"
Data = dict[str, Any]


class WorkloadError(TenantshiftError):
    pass


class PairLost(Exception):
    """The node's conversion host pair went away mid-run (handled by ``_fail_over``)."""

    def __init__(self, pair: str, reason: str) -> None:
        super().__init__(f"conversion host pair {pair!r} went away: {reason}")
        self.pair = pair
        self.reason = reason


def provider_ops(ctx: ApplyContext, cloud: Cloud, attr: str, what: str, cannot: str) -> Any:
    """``provider.<attr>`` of one side (its volume or image operations), or a clear error."""
    provider: Provider | None = ctx.source if cloud == "source" else ctx.destination
    if provider is None:
        raise WorkloadError(f"migrating {what} needs the {cloud} cloud, and apply has none")
    ops = getattr(provider, attr, None)
    if ops is None:
        raise WorkloadError(f"{provider.label}: this provider cannot {cannot}")
    return ops


def ops_of(ctx: ApplyContext, cloud: Cloud) -> VolumeOps:
    ops: VolumeOps = provider_ops(ctx, cloud, "volume_ops", "workloads", "attach or copy volumes")
    return ops


def _fault_point(phase: str) -> None:
    if os.environ.get(FAULT_KILL_AFTER) == phase:
        os.kill(os.getpid(), signal.SIGKILL)


def _fault_at_bytes(done: int) -> None:
    limit = os.environ.get(FAULT_KILL_AT_BYTES)
    if limit and done >= int(limit):
        os.kill(os.getpid(), signal.SIGKILL)


class Migration:
    """Run ``PHASES`` in order from where the journal says this node stopped."""

    PHASES: ClassVar[tuple[str, ...]] = ()
    #: Its data moves between the conversion hosts (volumes, servers). An image's does not:
    #: it streams from Glance to Glance, and the plan does not require conversion hosts for it.
    NEEDS_HOSTS: ClassVar[bool] = True

    src: VolumeOps
    dst: VolumeOps
    #: The conversion host pair this node's copies use (set when it gets a slot).
    pair: ConversionPair

    def __init__(self, ctx: ApplyContext, node: Node) -> None:
        self.ctx = ctx
        self.node = node
        self.change = node.change
        #: Our provenance marker for the copy (it names this migration and the source)...
        self.marker = str(self.change.source_id)
        self.migration, source_id = split_marker(self.marker)
        #: ... and the source resource's own id.
        self.source_id = source_id
        if self.NEEDS_HOSTS:
            self.src = ops_of(ctx, "source")
            self.dst = ops_of(ctx, "destination")
            if ctx.settings.conversion_hosts is None:
                raise WorkloadError("migrating data needs conversion_hosts in the manifest")

    async def run(self) -> str:
        journal = self.ctx.journal
        state = journal.state_of(self.node.id)
        done_phase, data = state if state else ("", {})
        if data.get("source_id") not in (None, self.source_id):
            done_phase, data = "", {}  # a state left by another source resource: start over
        data["source_id"] = self.source_id
        if not self.NEEDS_HOSTS:
            return await self._phases(done_phase, data)
        return await self._on_a_pair(done_phase, data)

    async def _on_a_pair(self, done_phase: str, data: Data) -> str:
        """Run the phases holding a copy slot of one pair: the pair the journal names (a
        resumed copy's checkpoints are on its destination host), else the planned one when it
        is free, else any. A pair that goes away mid-run is taken out of the pool and the
        node's copies start again on another (``_fail_over``), at most once per other pair."""
        pool = self.ctx.pairs
        if pool is None:
            raise WorkloadError("migrating data needs conversion_hosts in the manifest")
        size = self.change.bytes_to_move or 0
        sticky = data.get("pair")
        prefer = [p for p in (sticky, self.change.conversion_pair) if p]
        name = await pool.acquire(self.node.id, size, prefer, sticky=sticky)
        try:
            for _ in range(len(pool.pairs)):
                done_phase = await self._use_pair(name, done_phase, data)
                try:
                    return await self._phases(done_phase, data)
                except PairLost as lost:
                    state = self.ctx.journal.state_of(self.node.id)
                    done_phase = state[0] if state else ""
                    name = await self._fail_over(lost, name, size)
            raise WorkloadError(f"{self.change.address}: every conversion host pair failed")
        finally:
            pool.release(name)

    async def _use_pair(self, name: str, done_phase: str, data: Data) -> str:
        """Make ``name`` this node's pair; returns the phase to resume after. A node moved
        from another pair before its copies were done attaches and copies again."""
        self.pair = self.ctx.conversion_pair(name)
        previous = data.get("pair")
        data["pair"] = name
        self.step(f"on conversion host pair {name}")
        if previous in (None, name) or "copied" not in self.PHASES:
            return done_phase
        attached, copied = self.PHASES.index("attached"), self.PHASES.index("copied")
        done = self.PHASES.index(done_phase) if done_phase in self.PHASES else -1
        if done >= copied:
            return done_phase  # the copies are verified: only clean-up is left
        from tenantshift.engine.workloads.temporaries import clean_up

        # The old pair's attachments go (journaled, so this is a tolerant re-do after a
        # crash too), the volumes go to this pair's hosts, and the copy starts over there:
        # its checkpoints were on the old destination host.
        await clean_up(self.ctx, owner=self.node.id, kinds=frozenset({"attachment"}))
        if "src_host" in data:
            await self.host_ids(data)
        if done < attached:
            return done_phase
        rewound = self.PHASES[attached - 1]
        self.ctx.journal.advance(self.node.id, rewound, data)
        return rewound

    async def _fail_over(self, lost: PairLost, held: str, size: int) -> str:
        """Take the lost pair out of the pool, detach from its hosts, get another pair."""
        pool = self.ctx.pairs
        assert pool is not None
        pool.mark_down(lost.pair, lost.reason)
        self.step(f"conversion host pair {lost.pair} went away: {lost.reason}")
        log.warning("%s: pair %s went away: %s", self.change.address, lost.pair, lost.reason)
        await self.ctx.drop_session(lost.pair)
        from tenantshift.engine.workloads.temporaries import clean_up

        try:
            await clean_up(self.ctx, owner=self.node.id, kinds=frozenset({"attachment"}))
        except WorkloadError as exc:
            raise WorkloadError(
                f"conversion host pair {lost.pair!r} went away ({lost.reason}), and its "
                f"attachments could not be removed: {exc}"
            ) from None
        pool.release(held)
        try:
            return await pool.acquire(self.node.id, size)
        except NoPairError:
            # The slot was given back: hold one again so the caller's release balances.
            pool.busy[held] += 1
            raise WorkloadError(
                f"conversion host pair {lost.pair!r} went away ({lost.reason}) and no "
                "other pair is left; run apply again when a pair is back"
            ) from None

    async def _phases(self, done_phase: str, data: Data) -> str:
        journal = self.ctx.journal
        start = self.PHASES.index(done_phase) + 1 if done_phase in self.PHASES else 0
        if start:
            self.step(f"resuming after {done_phase}")
        for phase in self.PHASES[start:]:
            self.step(phase)
            seq = journal.phase_started(self.node.id, phase)
            try:
                await self.phase(phase)(data)
            except BaseException as exc:
                journal.phase_finished(seq, "failed", str(exc) or type(exc).__name__)
                raise
            journal.advance(self.node.id, phase, data)
            journal.phase_finished(seq, "done")
            _fault_point(phase)
        message = await self.finish(data)
        journal.clear_state(self.node.id)
        return message

    async def pair_problem(self) -> str | None:
        """Why this node's pair is gone (a host's server not ACTIVE, its sshd unreachable or
        not working), or None when it is fine and a failure was the copy's own."""
        for side, ops, host in (
            ("source", self.src, self.pair.source),
            ("destination", self.dst, self.pair.destination),
        ):
            if host.server:
                try:
                    status = await self.block(ops.server_status, host.server)
                except Exception as exc:
                    return f"the {side} host's server {host.server!r}: {exc}"
                if status != "ACTIVE":
                    return f"the {side} host's server {host.server!r} is {status}"
        problems = await probe_hosts(self.pair, timeout=PROBE_SECONDS)
        return "; ".join(problems) if problems else None

    def phase(self, name: str) -> Callable[[Data], Awaitable[None]]:
        method: Callable[[Data], Awaitable[None]] = getattr(self, f"_{name}")
        return method

    async def finish(self, data: Data) -> str:
        """Mark the destination copy complete; return the line the user sees."""
        raise NotImplementedError

    # -- shared steps -----------------------------------------------------------------------
    def marker_for(self, source_id: str) -> str:
        """The marker a copy of another source resource (a server's disk) carries."""
        return make_marker(self.migration, source_id) if self.migration else source_id

    def host_name(self, cloud: Cloud) -> str:
        host = self.pair.source if cloud == "source" else self.pair.destination
        if not host.server:
            where = "" if self.pair.name == DEFAULT_PAIR else f"pairs[{self.pair.name}]."
            raise WorkloadError(
                f"conversion_hosts.{where}{cloud}.server is needed to attach volumes to that host"
            )
        return host.server

    async def host_ids(self, data: Data) -> None:
        data["src_host"] = await self.block(self.src.server_id, self.host_name("source"))
        data["dst_host"] = await self.block(self.dst.server_id, self.host_name("destination"))

    async def attach(self, cloud: Cloud, server_id: str, volume_id: str) -> None:
        """Attach a volume to a conversion host, journaled so it is always detached again."""
        ops = self.src if cloud == "source" else self.dst
        journal = self.ctx.journal
        seq = journal.intend_temporary(
            self.node.id,
            cloud,
            "attachment",
            f"{volume_id}@{server_id}",
            {"server_id": server_id, "volume_id": volume_id},
        )
        try:
            await self.block(ops.attach, server_id, volume_id)
        except Exception as exc:
            problem = await self.pair_problem()
            if problem is not None:
                raise PairLost(self.pair.name, problem) from exc
            raise
        journal.temporary_created(seq, volume_id)

    async def copy(
        self, source_volume: str, destination_volume: str, generation: str | None = None
    ) -> TransferResult:
        """Copy one volume between the conversion hosts, waiting for freshly attached devices
        to appear; an interrupted copy of the same source generation resumes."""
        copy = VolumeCopy(source_volume, destination_volume, source_generation=generation)

        def progress(report: Progress) -> None:
            _fault_at_bytes(report.bytes_done)
            self.ctx.listener.progress(self.node, report.bytes_done, report.bytes_total)

        deadline = time.monotonic() + DEVICE_WAIT_SECONDS
        while True:
            try:
                session = await self.ctx.transfer_session(self.pair.name)
                result = await session.copy(copy, progress)
                break
            except DeviceNotFoundError:
                # Attached in the API, not yet visible in the guest: wait for the device.
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(2)
            except (TransferError, OSError, asyncssh.Error) as exc:
                # The pair itself may be gone (sshd down, server not ACTIVE): then the copy
                # moves to another pair; otherwise this was the copy's own failure.
                problem = await self.pair_problem()
                if problem is not None:
                    raise PairLost(self.pair.name, problem) from exc
                raise
        # Every figure of the copy, for reports (node_state forgets them once the node is done).
        self.ctx.journal.record_copy(
            self.node.id, {**dataclasses.asdict(result), "pair": self.pair.name}
        )
        if not result.verified:
            raise WorkloadError(
                f"{self.change.address}: the copy of {source_volume} failed to verify"
            )
        return result

    def step(self, name: str) -> None:
        try:
            self.ctx.listener.step(self.node, name)
        except Exception:  # a broken display must not stop a migration
            log.exception("progress listener failed")

    async def block(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await self.ctx.run_blocking(fn, *args)


def copied_line(results: list[Data]) -> str:
    data = sum(int(r["data_bytes"]) for r in results)
    wire = sum(int(r["wire_bytes"]) for r in results)
    # What an interrupted run had already copied and this one did not send again.
    resumed = sum(int(r.get("resumed_from") or 0) for r in results)
    return (
        f"{len(results)} volume{'s' if len(results) != 1 else ''}, "
        f"{data / 2**20:.1f} MiB of data, {wire / 2**20:.1f} MiB on the wire"
        + (f", resumed at {resumed / 2**20:.0f} MiB" if resumed else "")
        + ", verified"
    )
