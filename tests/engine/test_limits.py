"""Every concurrency bound of an apply comes from one ``Limits``: the derived numbers, the sites
that read them, and what the walker lets run at once."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import networkx as nx
import pytest

from tenantshift.engine import commands
from tenantshift.engine.state.journal import Journal
from tenantshift.engine.walk.context import ApplyContext, ApplySettings
from tenantshift.engine.walk.executor import IdMap
from tenantshift.engine.walk.limits import Limits
from tenantshift.engine.walk.nodes import Node, ResourceClass, ResourceNode, Step, WorkloadNode
from tenantshift.engine.walk.walker import Listener, Status, walk
from tenantshift.manifest import Manifest
from tenantshift.plans import Action, Change
from tenantshift.providers.memory import MemoryProvider
from tests.engine.pairs import pool_manifest


def test_the_derived_numbers() -> None:
    limits = Limits.of(parallelism=10, copy_parallelism=2, pairs=3)
    assert limits == Limits(api=10, per_pair=2, pairs=3, copies=6, threads=16, connections=16)
    assert Limits.of(10, 2) == Limits(
        api=10, per_pair=2, pairs=1, copies=2, threads=12, connections=12
    )


@pytest.mark.parametrize("bad", [(0, 2, 1), (10, 0, 1), (10, 2, 0)])
def test_a_bound_below_one_is_refused(bad: tuple[int, int, int]) -> None:
    with pytest.raises(ValueError, match="must be at least 1"):
        Limits.of(*bad)


def test_a_manifest_without_conversion_hosts_counts_one_pair() -> None:
    manifest = Manifest.model_validate(
        {
            "version": 1,
            "source": {"cloud": "a"},
            "destination": {"cloud": "b"},
            "options": {"parallelism": 7, "copy_parallelism": 3},
        }
    )
    assert Limits.for_manifest(manifest) == Limits.of(7, 3, pairs=1)
    assert ApplySettings.from_manifest(manifest).limits == Limits.of(7, 3, pairs=1)


def test_the_context_sizes_its_thread_pool_and_pair_pool_from_the_limits(tmp_path: Path) -> None:
    settings = ApplySettings.from_manifest(pool_manifest(["a", "b", "c"]))
    settings = dataclasses.replace(settings, parallelism=10, copy_parallelism=2)
    assert settings.limits == Limits.of(10, 2, pairs=3)
    journal = Journal(tmp_path / "journal.sqlite")
    ctx = ApplyContext(
        destination=MemoryProvider("destination"),
        source=None,
        settings=settings,
        journal=journal,
        ids=IdMap(),
        listener=Listener(),
    )
    try:
        # Every node the walker runs at once has a thread: 10 API nodes + 2 copies x 3 pairs.
        assert ctx.pool._max_workers == 16
        assert ctx.pairs is not None and ctx.pairs.per_pair == 2 and len(ctx.pairs.pairs) == 3
    finally:
        ctx.shutdown()
        journal.close()


def test_both_clouds_keep_a_connection_for_every_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: dict[str, int | None] = {}

    def fake_open(ref: Any, label: str, *, concurrency: int | None = None) -> MemoryProvider:
        asked[label] = concurrency
        return MemoryProvider(label)

    monkeypatch.setattr(commands, "open_provider", fake_open)
    manifest = pool_manifest(["a", "b", "c"])  # parallelism 10, copy_parallelism 2
    commands.providers(manifest)
    assert asked == {"source": 16, "destination": 16}


def _node(address: str, cls: ResourceClass) -> Node:
    kind = address.partition(".")[0]
    if cls is ResourceClass.COPY:
        return WorkloadNode(
            Change(address=address, kind=kind, action=Action.MIGRATE, after={}), Step.MIGRATE
        )
    return ResourceNode(
        Change(address=address, kind=kind, action=Action.CREATE, after={}), Step.CREATE
    )


def test_three_pairs_run_six_copies_while_api_work_keeps_its_full_parallelism() -> None:
    """3 pairs x copy_parallelism 2: six copies at once (not two), and the four API slots stay
    the API nodes' own. Every node blocks until the test lets go, so what runs at once is
    exactly what the walker's bounds allow."""
    limits = Limits.of(parallelism=4, copy_parallelism=2, pairs=3)
    graph = nx.DiGraph()
    nodes = [_node(f"volume.v{i:02d}", ResourceClass.COPY) for i in range(10)]
    nodes += [_node(f"network.n{i:02d}", ResourceClass.API) for i in range(10)]
    for node in nodes:
        graph.add_node(node.id, node=node)
    running = {ResourceClass.API: 0, ResourceClass.COPY: 0}
    peak = dict(running)
    release = asyncio.Event()

    async def run(node: Node) -> str:
        cls = node.resource_class
        running[cls] += 1
        peak[cls] = max(peak[cls], running[cls])
        try:
            await release.wait()
        finally:
            running[cls] -= 1
        return "ok"

    async def main() -> dict[str, Any]:
        walking = asyncio.ensure_future(walk(graph, run, limits=limits))
        for _ in range(100):  # let everything that may start, start
            await asyncio.sleep(0)
        at_once = dict(running)
        release.set()
        outcomes = await asyncio.wait_for(walking, timeout=10)
        assert at_once == {ResourceClass.API: 4, ResourceClass.COPY: 6}
        return outcomes

    outcomes = asyncio.run(main())
    assert peak == {ResourceClass.API: 4, ResourceClass.COPY: 6}
    assert {o.status for o in outcomes.values()} == {Status.DONE}
