"""The shape every workload migration shares: journaled phases, temporaries, copies.

A migration is an ordered list of phases. A phase re-reads the clouds before it acts, checks
what it finds against what it would have made, and does nothing more when its work is already
done (pyinfra's fact-then-operation, per phase); after it completes, the journal's
``node_state`` moves forward with the ids the next phases need (alembic's ``update_to_step``),
so a killed apply resumes at the phase it was in. Running a phase again after a kill at any
point inside it leads to the same end state: that is what ``tests/engine/test_kill_points.py``
checks at every cloud call.

Every temporary change (``engine/state/temporary.py``) is journaled as *intended* before it is made
and *cleaned* when undone, so the cleanup node, ``tenantshift cleanup`` and the sweep at the
start of the next apply can always find it (``temporaries.py`` undoes them). Whatever undoes a
phase's effects also moves the journal back to before that phase (``rewind``).

A workload kind registers its migration with ``@register_migration`` (``registry.py``); its
plan-time needs, description and problems are class methods of the migration, read by
``plan.py``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

import asyncssh

from tenantshift import faults
from tenantshift.engine.state.temporary import Temporary
from tenantshift.engine.walk.context import ApplyContext
from tenantshift.engine.walk.nodes import Node
from tenantshift.engine.walk.pool import NoPairError
from tenantshift.engine.workloads.registry import (
    Cloud,
    Info,
    Needs,
    Sizes,
    WorkloadError,
    verbs_of,
)
from tenantshift.engine.workloads.temporaries import clean_up
from tenantshift.manifest import DEFAULT_PAIR, ConversionPair, Workloads
from tenantshift.plans import Change
from tenantshift.providers.workload import WorkloadVerbs
from tenantshift.resources.marker import make_marker, split_marker
from tenantshift.transfer import (
    DeviceNotFoundError,
    Progress,
    TransferError,
    TransferResult,
    VolumeCopy,
)

log = logging.getLogger(__name__)

#: How long a freshly attached volume may take to show up under the host's device directory.
DEVICE_WAIT_SECONDS = 120.0
#: How long the check of a pair that failed a copy may take to reach its hosts.
PROBE_SECONDS = 10.0

Data = dict[str, Any]

#: The chunk grid of a warm migration's copies, its deltas' granularity. A guest's scattered
#: writes of 4 KiB-1 MiB move about 1.2x their bytes at 64 KiB (each write adds at most a
#: chunk), 5-10x at the default 4 MiB; the index costs 16 bytes per chunk with xxh3 (0.024%
#: of the volume), and the first sync a little more CPU per byte (docs/benchmarks.md).
WARM_CHUNK = 64 * 1024
#: At most this many chunks per volume: a larger volume's warm grid doubles until it fits,
#: so its index (sent to the source, held in memory by both agents) stays at 16-32 MiB.
WARM_MAX_CHUNKS = 1 << 20


def warm_chunk(size_gib: int) -> int:
    """The warm grid of a volume of ``size_gib``: the same for every copy into it."""
    chunk = WARM_CHUNK
    while size_gib * 2**30 > chunk * WARM_MAX_CHUNKS:
        chunk *= 2
    return chunk


class PairLost(Exception):
    """The node's conversion host pair went away mid-run (handled by ``_fail_over``)."""

    def __init__(self, pair: str, reason: str) -> None:
        super().__init__(f"conversion host pair {pair!r} went away: {reason}")
        self.pair = pair
        self.reason = reason


class Migration:
    """Run ``PHASES`` in order from where the journal says this node stopped."""

    kind: ClassVar[str]
    PHASES: ClassVar[tuple[str, ...]] = ()
    #: Its data moves between the conversion hosts (volumes, servers). An image's does not:
    #: it streams from Glance to Glance, and the plan does not require conversion hosts for it.
    NEEDS_HOSTS: ClassVar[bool] = True
    #: The phase that makes each kind of temporary (``temporaries._rewind`` moves the journal
    #: back to before it when the temporary is undone before the copies are verified).
    MADE_IN: ClassVar[dict[Temporary, str]] = {}

    #: Its migration can be warm (``workloads.mode: warm``): synced while the source runs,
    #: then cut over (``Change.warm``).
    WARM: ClassVar[bool] = False

    src: WorkloadVerbs
    dst: WorkloadVerbs
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
        self.src = verbs_of(ctx, "source", f"{self.kind}s")
        self.dst = verbs_of(ctx, "destination", f"{self.kind}s")
        if self.NEEDS_HOSTS and ctx.settings.conversion_hosts is None:
            raise WorkloadError("migrating data needs conversion_hosts in the manifest")

    # -- plan time (class methods: no cloud, no context) ----------------------------------------
    @classmethod
    def needs(cls, change: Change, info: Info, sizes: Sizes) -> Needs:
        """What this migration consumes of the quotas (a copy that exists already: nothing)."""
        return {}

    @classmethod
    def gib_to_move(cls, change: Change, info: Info, sizes: Sizes) -> int:
        """How many GiB its copies read: the reviewer's "how big", the progress bar's total."""
        need = cls.needs(change.model_copy(update={"target_id": None}), info, sizes)
        return need.get(("destination", "gigabytes"), 0)

    @classmethod
    def describe(cls, change: Change, info: Info) -> str:
        """What the plan says it will do."""
        return ""

    @classmethod
    def source_problem(
        cls, info: Info, workloads: Workloads, warm: str | None = None
    ) -> str | None:
        """Why the source resource cannot migrate as it is (None: it can)."""
        return None

    async def resume_point(self, done_phase: str, data: Data) -> str:
        """Where a resumed run goes on, once what the journal says was checked against the
        clouds (the journal's phase by default)."""
        return done_phase

    def phases(self) -> tuple[str, ...]:
        """The phases this run goes through, in ``PHASES`` order (a warm sync skips some)."""
        return self.PHASES

    # -- apply ----------------------------------------------------------------------------------
    async def run(self) -> str:
        journal = self.ctx.journal
        state = journal.state_of(self.node.id)
        done_phase, data = state if state else ("", {})
        if data.get("source_id") not in (None, self.source_id):
            done_phase, data = "", {}  # a state left by another source resource: start over
        if data and data.get("warm") != self.change.warm:
            # A sync left half-done and now a cutover (or the other way): another sequence of
            # phases. Its temporaries go and the new one starts from the beginning.
            self.step(f"starting over as {self.change.warm or 'cold'}")
            await clean_up(self.ctx, owner=self.node.id)
            self.ctx.journal.clear_state(self.node.id)
            done_phase, data = "", {}
        data["source_id"] = self.source_id
        data["warm"] = self.change.warm
        done_phase = await self.resume_point(done_phase, data)
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
        if self._done(done_phase, "copied"):
            return done_phase  # the copies are verified: only clean-up is left
        # The old pair's attachments go (journaled, so this is a tolerant re-do after a
        # crash too), the volumes go to this pair's hosts, and the copy starts over there:
        # its checkpoints were on the old destination host.
        await clean_up(self.ctx, owner=self.node.id, kinds=frozenset({Temporary.ATTACHMENT}))
        if "src_host" in data:
            await self.host_ids(data)
        return self.rewind(done_phase, "attached", data)

    def _done(self, done_phase: str, phase: str) -> bool:
        """Whether the journal says ``phase`` is done."""
        if done_phase not in self.PHASES:
            return False
        return self.PHASES.index(done_phase) >= self.PHASES.index(phase)

    def rewind(self, done_phase: str, phase: str, data: Data) -> str:
        """The journal moves back to just before ``phase`` when it says ``phase`` is done:
        whatever undid that phase's effects (detached the volumes) must not leave a journal
        that trusts them. Returns the phase to resume after."""
        if not self._done(done_phase, phase):
            return done_phase
        rewound = self.PHASES[self.PHASES.index(phase) - 1]
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
        try:
            await clean_up(self.ctx, owner=self.node.id, kinds=frozenset({Temporary.ATTACHMENT}))
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
            if phase not in self.phases():
                continue
            self.step(phase)
            seq = journal.phase_started(self.node.id, phase)
            began = time.time()
            try:
                await self.phase(phase)(data)
            except BaseException as exc:
                if faults.killed():
                    raise  # a test's stand-in for SIGKILL: nothing more is written
                journal.phase_finished(seq, "failed", str(exc) or type(exc).__name__)
                raise
            # Each phase's wall time, summed over resumed runs: a cutover's downtime split.
            timings = data.setdefault("timings", {})
            timings[phase] = round(timings.get(phase, 0.0) + time.time() - began, 3)
            journal.advance(self.node.id, phase, data)
            journal.phase_finished(seq, "done")
            faults.after_phase(phase)
        message = await self.finish(data)
        journal.clear_state(self.node.id)
        return message

    async def pair_problem(self) -> str | None:
        """Why this node's pair is gone (a host's server not ACTIVE, its sshd unreachable or
        not working), or None when it is fine and a failure was the copy's own."""
        for side, verbs, host in (
            ("source", self.src, self.pair.source),
            ("destination", self.dst, self.pair.destination),
        ):
            if host.server:
                try:
                    status = await self.block(verbs.server.status, host.server)
                except Exception as exc:
                    return f"the {side} host's server {host.server!r}: {exc}"
                if status != "ACTIVE":
                    return f"the {side} host's server {host.server!r} is {status}"
        problems = await self.ctx.links.probe(self.pair, PROBE_SECONDS)
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
        data["src_host"] = await self.block(self.src.server.id_of, self.host_name("source"))
        data["dst_host"] = await self.block(self.dst.server.id_of, self.host_name("destination"))

    async def attach(self, cloud: Cloud, server_id: str, volume_id: str) -> None:
        """Attach a volume to a conversion host, journaled so it is always detached again."""
        verbs = self.src if cloud == "source" else self.dst
        journal = self.ctx.journal
        seq = journal.intend_temporary(
            self.node.id,
            cloud,
            Temporary.ATTACHMENT,
            f"{volume_id}@{server_id}",
            {"server_id": server_id, "volume_id": volume_id},
        )
        try:
            await self.block(verbs.volume.attach, server_id, volume_id)
        except Exception as exc:
            problem = await self.pair_problem()
            if problem is not None:
                raise PairLost(self.pair.name, problem) from exc
            raise
        journal.temporary_created(seq, volume_id)

    async def check_attached(self, cloud: Cloud, server_id: str, volume_id: str) -> None:
        """A resumed copy's precondition, checked rather than trusted from the journal."""
        verbs = self.src if cloud == "source" else self.dst
        volume = await self.block(verbs.volume.get, volume_id)
        if volume is None or server_id not in (volume.get("attached_to") or []):
            await self.attach(cloud, server_id, volume_id)

    async def copy(
        self,
        source_volume: str,
        destination_volume: str,
        generation: str | None = None,
        delta_base: str | None = None,
        size_gib: int = 0,
    ) -> TransferResult:
        """Copy one volume between the conversion hosts, waiting for freshly attached devices
        to appear; an interrupted copy of the same source generation resumes. With
        ``delta_base`` (the digest the destination holds) only what differs moves. A warm
        migration's copies use the finer ``warm_chunk`` grid of the volume's ``size_gib``: a
        changed chunk moves whole."""
        copy = VolumeCopy(
            source_volume,
            destination_volume,
            source_generation=generation,
            delta_base=delta_base,
            chunk_size=warm_chunk(size_gib) if self.change.warm else None,
        )

        def progress(report: Progress) -> None:
            faults.at_bytes(report.bytes_done)
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


def copy_record(source: str, destination: str, result: TransferResult) -> Data:
    """What the journal keeps of one verified copy (the report and the final marker read it)."""
    return {
        "source": source,
        "destination": destination,
        "digest": result.digest,
        "data_bytes": result.bytes_data,
        "wire_bytes": result.bytes_wire,
        "codec": result.codec,
        "resumed_from": result.resumed_from,
        "read_bytes": result.bytes_read,
        "delta": result.delta,
        "seconds": round(result.seconds, 3),
    }


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
