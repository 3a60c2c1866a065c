"""The graph walker: a node starts as soon as everything it depends on is done.

Parallelism is one semaphore. A failed node makes its dependents ``skipped`` with the root
cause's address, so a report names causes, not their echoes; independent branches go on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import networkx as nx

from tenantshift.engine.graph import Node

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

    def started(self, node: Node) -> None:  # pragma: no cover - default does nothing
        pass

    def finished(self, outcome: Outcome) -> None:  # pragma: no cover
        pass


RunNode = Callable[[Node], Awaitable[str]]


def _notify(callback: Callable[[Any], None], argument: Any) -> None:
    """A broken progress display must not abort an apply half-way: log it and go on."""
    try:
        callback(argument)
    except Exception:
        log.exception("progress listener failed")


async def walk(
    graph: nx.DiGraph, run: RunNode, *, parallelism: int, listener: Listener | None = None
) -> dict[str, Outcome]:
    listener = listener or Listener()
    listener.planned(graph.number_of_nodes())
    semaphore = asyncio.Semaphore(parallelism)
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
            if causes:
                outcome = Outcome(
                    node, Status.SKIPPED, "upstream failed: " + ", ".join(causes), tuple(causes)
                )
            else:
                async with semaphore:
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

    await asyncio.gather(*(visit(node_id) for node_id in nx.topological_sort(graph)))
    return outcomes
