"""The graph walker: a node starts as soon as everything it depends on is done.

Each node holds the semaphore of its resource class while it runs (``api``: short calls,
``copy``: long workload migrations; both sized by ``Limits``), so a two-hour copy never takes
a slot from API work. A failed node makes its dependents ``skipped`` with the root cause's
address, so a report names causes, not their echoes; independent branches go on. An
``always_run`` node (cleanup) runs whatever happened upstream, like Terraform's tolerant
vertices.

Nodes naming the same ``serial_key`` (a router, for its interfaces) run one at a time. A node
takes its key's turn *before* its slot: waiting for the turn inside the slot (the per-router
lock once tried in the OpenStack provider) had interface nodes hold the ``api`` slots while
they queued behind each other, and the rest of the apply waited with them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import networkx as nx

from tenantshift.engine.walk.limits import Limits
from tenantshift.engine.walk.nodes import Node, ResourceClass

log = logging.getLogger(__name__)


class Status(StrEnum):
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class Outcome:
    node: Node
    status: Status
    message: str = ""
    #: For a skipped node: the failed nodes upstream that caused it.
    root_causes: tuple[str, ...] = ()


class Listener:
    """Progress callbacks; the CLI renders them, tests record them."""

    def planned(self, total: int) -> None:  # pragma: no cover - default does nothing
        pass

    def planned_bytes(self, total: int) -> None:  # pragma: no cover - default does nothing
        """The bytes the plan's workloads will copy (their ``bytes_to_move``), before the walk."""

    def started(self, node: Node) -> None:  # pragma: no cover - default does nothing
        pass

    def finished(self, outcome: Outcome) -> None:  # pragma: no cover
        pass

    def step(self, node: Node, name: str) -> None:  # pragma: no cover - default does nothing
        """A long node entered one of its phases."""

    def progress(self, node: Node, done: int, total: int) -> None:  # pragma: no cover
        """A long node moved ``done`` of ``total`` units (bytes for copies)."""


RunNode = Callable[[Node], Awaitable[str]]


def _notify(callback: Callable[[Any], None], argument: Any) -> None:
    """A broken progress display must not abort an apply half-way: log it and go on."""
    try:
        callback(argument)
    except Exception:
        log.exception("progress listener failed")


async def walk(
    graph: nx.DiGraph,
    run: RunNode,
    *,
    limits: Limits,
    listener: Listener | None = None,
    on_skip: Callable[[Outcome], None] | None = None,
) -> dict[str, Outcome]:
    """Run every node of ``graph``; ``on_skip`` sees each skipped node as it is decided."""
    listener = listener or Listener()
    listener.planned(graph.number_of_nodes())
    semaphores = {
        ResourceClass.API: asyncio.Semaphore(limits.api),
        ResourceClass.COPY: asyncio.Semaphore(limits.copies),
    }
    #: serial key -> its turn (FIFO: asyncio.Lock serves waiters in order)
    turns: dict[str, asyncio.Lock] = {}
    finished: dict[str, asyncio.Event] = {node_id: asyncio.Event() for node_id in graph}
    outcomes: dict[str, Outcome] = {}

    async def visit(node_id: str) -> None:
        node: Node = graph.nodes[node_id]["node"]
        try:
            predecessors = list(graph.predecessors(node_id))
            for pred in predecessors:
                await finished[pred].wait()
            causes = sorted(
                {
                    cause
                    for pred in predecessors
                    if outcomes[pred].status is not Status.DONE
                    for cause in (outcomes[pred].root_causes or (pred,))
                }
            )
            if causes and not node.always_run:
                outcome = Outcome(
                    node, Status.SKIPPED, "upstream failed: " + ", ".join(causes), tuple(causes)
                )
                if on_skip is not None:
                    on_skip(outcome)
            else:
                key = node.serial_key
                turn: contextlib.AbstractAsyncContextManager[Any] = (
                    turns.setdefault(key, asyncio.Lock())
                    if key is not None
                    else contextlib.nullcontext()
                )
                # The turn first, then the slot: a node waiting for its turn holds no slot.
                async with turn, semaphores[node.resource_class]:
                    _notify(listener.started, node)
                    try:
                        message = await run(node)
                        outcome = Outcome(node, Status.DONE, message)
                    except Exception as exc:  # one node's failure must not stop the walk
                        outcome = Outcome(node, Status.FAILED, str(exc) or type(exc).__name__)
            outcomes[node_id] = outcome
            _notify(listener.finished, outcome)
        finally:
            finished[node_id].set()

    def largest_first(node_id: str) -> tuple[int, str]:
        # Among nodes ready together, the copies that move most start first (and so end
        # closest together); everything else keeps a stable order.
        return (-(graph.nodes[node_id]["node"].change.bytes_to_move or 0), node_id)

    order = nx.lexicographical_topological_sort(graph, key=largest_first)
    await asyncio.gather(*(visit(node_id) for node_id in order))
    return outcomes
