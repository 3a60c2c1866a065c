"""Apply: walk the plan's graph under the apply lock, journaling every step."""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from pathlib import Path

from tenantshift.engine.executor import IdMap, ResourceExecutor
from tenantshift.engine.graph import Node, build_graph
from tenantshift.engine.journal import Journal
from tenantshift.engine.lock import ApplyLock
from tenantshift.engine.walker import Listener, Outcome, Status, walk
from tenantshift.plans import Plan
from tenantshift.providers import Provider

JOURNAL_FILE = "journal.sqlite"


@dataclass(frozen=True)
class ApplyResult:
    outcomes: dict[str, Outcome]
    run_id: str
    resumed_from: str | None
    in_doubt: frozenset[str]

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
    parallelism: int = 10,
    listener: Listener | None = None,
    lock: ApplyLock | None = None,
) -> ApplyResult:
    """Run every change of ``plan``; raises ``LockedError`` if another apply holds the lock.

    A caller that must check or confirm the plan under the same lock (so that no other apply
    slips in between) takes the ``ApplyLock`` itself and passes it in, already held.
    """
    graph = build_graph(plan)
    with lock or ApplyLock(state_dir):
        journal = Journal(state_dir / JOURNAL_FILE)
        try:
            run_id = journal.start_run(plan_digest(plan))
            executor = ResourceExecutor(destination, journal, IdMap(plan))

            async def run(node: Node) -> str:
                return await asyncio.to_thread(executor.run, node)

            outcomes = asyncio.run(walk(graph, run, parallelism=parallelism, listener=listener))
            for outcome in outcomes.values():
                if outcome.status is Status.SKIPPED:
                    journal.record(
                        outcome.node.id, outcome.node.step.value, "skipped", detail=outcome.message
                    )
            result = ApplyResult(
                outcomes=outcomes,
                run_id=run_id,
                resumed_from=journal.resumed_from,
                in_doubt=frozenset(journal.in_doubt),
            )
            journal.finish_run(result.ok)
            return result
        finally:
            journal.close()
