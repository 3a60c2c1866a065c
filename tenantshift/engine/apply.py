"""Apply: walk the plan's graph under the apply lock, journaling every step.

Before the walk, temporaries an earlier (killed) run left behind are swept; after it, the run's
transfer session is closed whatever happened. Skipped nodes are journaled as they are decided.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import networkx as nx

from tenantshift.engine.state.journal import JOURNAL_FILE, Journal
from tenantshift.engine.state.lock import ApplyLock
from tenantshift.engine.walk.context import ApplyContext, ApplySettings
from tenantshift.engine.walk.executor import IdMap
from tenantshift.engine.walk.graph import build_graph
from tenantshift.engine.walk.links import Links
from tenantshift.engine.walk.nodes import CleanupNode, Node, ResourceNode, Step, WorkloadNode
from tenantshift.engine.walk.walker import Listener, Outcome, Status, walk
from tenantshift.engine.workloads import clean_up, migrate, sweep
from tenantshift.plans import Plan
from tenantshift.plans.render import plan_document
from tenantshift.providers import Provider

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ApplyResult:
    outcomes: dict[str, Outcome]
    run_id: str
    resumed_from: str | None
    in_doubt: frozenset[str]
    #: What the sweep before the walk removed (temporaries of an earlier, interrupted run).
    swept: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return all(o.status is Status.DONE for o in self.outcomes.values())

    def count(self, status: Status) -> int:
        return sum(1 for o in self.outcomes.values() if o.status is status)


def plan_digest(plan: Plan) -> str:
    return hashlib.sha256(plan.model_dump_json().encode()).hexdigest()[:16]


def apply_plan(
    plan: Plan,
    destination: Provider,
    state_dir: Path,
    *,
    source: Provider | None = None,
    settings: ApplySettings | None = None,
    parallelism: int | None = None,
    listener: Listener | None = None,
    lock: ApplyLock | None = None,
    links: Links | None = None,
) -> ApplyResult:
    """Run every change of ``plan``; raises ``LockedError`` if another apply holds the lock.

    A caller that must check or confirm the plan under the same lock (so that no other apply
    slips in between) takes the ``ApplyLock`` itself and passes it in, already held.
    ``parallelism`` overrides ``settings.parallelism`` (a shorthand for tests and callers
    without a manifest).
    """
    settings = settings or ApplySettings()
    if parallelism is not None:
        settings = dataclasses.replace(settings, parallelism=parallelism)
    graph = build_graph(plan)
    listener = listener or Listener()
    with lock or ApplyLock(state_dir):
        journal = Journal(state_dir / JOURNAL_FILE)
        try:
            run_id = journal.start_run(plan_digest(plan), plan_document(plan))
            ctx = ApplyContext(
                destination=destination,
                source=source,
                settings=settings,
                journal=journal,
                ids=IdMap(plan),
                listener=listener,
                links=links,
            )
            try:
                outcomes, swept = asyncio.run(_run(ctx, graph))
            finally:
                ctx.shutdown()
            result = ApplyResult(
                outcomes=outcomes,
                run_id=run_id,
                resumed_from=journal.resumed_from,
                in_doubt=frozenset(journal.in_doubt),
                swept=swept,
            )
            journal.finish_run(result.ok)
            return result
        finally:
            journal.close()


async def _run(ctx: ApplyContext, graph: nx.DiGraph) -> tuple[dict[str, Outcome], tuple[str, ...]]:
    # Workloads in this plan resume from their temporaries; everyone else's are swept.
    resuming = frozenset(
        data["node"].id
        for _, data in graph.nodes(data=True)
        if isinstance(data["node"], WorkloadNode)
    )

    pool = ctx.pairs
    if pool is not None:
        pool.expect(
            {
                data["node"].id: data["node"].change.conversion_pair
                for _, data in graph.nodes(data=True)
                if isinstance(data["node"], WorkloadNode)
                and data["node"].step is Step.MIGRATE
                and data["node"].change.conversion_pair
            }
        )

    def journal_skip(outcome: Outcome) -> None:
        node = outcome.node
        ctx.journal.record(node.id, node.step.value, "skipped", detail=outcome.message)
        if pool is not None:
            pool.settle(node.id)

    async def run(node: Node) -> str:
        if isinstance(node, ResourceNode):
            # The executor journals its own steps.
            return await ctx.run_blocking(ctx.executor.run, node)
        # Workloads and their cleanups: begin and end journaled here, for status and reports.
        ctx.journal.record(node.id, node.step.value, "begin", target_id=node.change.target_id)
        try:
            message = await execute(ctx, node)
        except Exception as exc:
            ctx.journal.record(node.id, node.step.value, "failed", detail=str(exc))
            raise
        finally:
            if pool is not None:
                pool.settle(node.id)
        ctx.journal.record(node.id, node.step.value, "done", detail=message)
        return message

    planned = sum(
        data["node"].change.bytes_to_move or 0
        for _, data in graph.nodes(data=True)
        if isinstance(data["node"], WorkloadNode)
    )
    try:
        ctx.listener.planned_bytes(planned)
    except Exception:  # a broken display must not stop an apply
        log.exception("progress listener failed")
    try:
        swept = await sweep(ctx, resuming)
        outcomes = await walk(
            graph,
            run,
            limits=ctx.settings.limits,
            listener=ctx.listener,
            on_skip=journal_skip,
        )
    finally:
        await ctx.aclose()
    return outcomes, swept


async def execute(ctx: ApplyContext, node: Node) -> str:
    """Run a workload node or its cleanup (the walker only knows they are nodes)."""
    if isinstance(node, WorkloadNode):
        return await migrate(ctx, node)
    if isinstance(node, CleanupNode):
        return await clean_up(ctx, owner=node.change.address)
    raise TypeError(f"{node.id}: no runner for {type(node).__name__}")
