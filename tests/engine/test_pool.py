"""The pool of conversion host pairs: the plan's schedule and the apply's copy slots."""

from __future__ import annotations

import asyncio
from typing import Any

import networkx as nx
import pytest

from tenantshift.engine.walk.limits import Limits
from tenantshift.engine.walk.nodes import Node, Step, WorkloadNode
from tenantshift.engine.walk.pool import NoPairError, PairPool, plan_pairs
from tenantshift.engine.walk.walker import walk
from tenantshift.engine.workloads.plan import assign_pairs
from tenantshift.manifest import Manifest
from tenantshift.plans import Action, Change
from tests.engine.pairs import host, pool_manifest

GiB = 2**30


def migrate(address: str, gib: int, **kw: Any) -> Change:
    return Change(
        address=address,
        kind=address.partition(".")[0],
        action=Action.MIGRATE,
        after={"size": gib},
        bytes_to_move=gib * GiB,
        **kw,
    )


# -- the plan's schedule ---------------------------------------------------------------------


def test_the_plan_puts_the_largest_first_each_on_the_least_loaded_pair() -> None:
    sizes = [("v1", 1), ("v5", 5), ("v3", 3), ("v4", 4), ("v2", 2)]
    assert plan_pairs(sizes, ["a", "b"]) == {
        "v5": "a",  # 5 | 0
        "v4": "b",  # 5 | 4
        "v3": "b",  # 5 | 7
        "v2": "a",  # 7 | 7
        "v1": "a",  # 8 | 7 (a tie goes to the earlier pair)
    }
    assert plan_pairs(sizes, ["only"]) == {name: "only" for name, _ in sizes}


def test_each_copying_migration_of_the_plan_names_its_pair() -> None:
    changes = [
        migrate("volume.small", 1),
        migrate("volume.big", 8),
        migrate("server.vm", 4),
        migrate("image.golden", 9),  # streams Glance to Glance: no pair
        migrate("volume.held", 2, reason="blocked_prerequisite", detail="quota"),
    ]
    planned = {
        c.address: c.conversion_pair for c in assign_pairs(changes, pool_manifest(["a", "b"]))
    }
    assert planned == {
        "volume.big": "a",
        "server.vm": "b",
        "volume.small": "b",
        "image.golden": None,
        "volume.held": None,
    }


def test_a_one_pair_manifest_plans_everything_on_its_default_pair() -> None:
    one = Manifest.model_validate(
        {
            "version": 1,
            "source": {"cloud": "a"},
            "destination": {"cloud": "b"},
            "conversion_hosts": {"source": host(22, "s"), "destination": host(22, "d")},
        }
    )
    planned = assign_pairs([migrate("volume.v", 1)], one)
    assert [c.conversion_pair for c in planned] == ["default"]


# -- the apply's copy slots ------------------------------------------------------------------


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_slots_are_per_pair_and_go_to_the_largest_waiting_workload_first() -> None:
    async def scenario() -> list[tuple[str, str]]:
        pool = PairPool(["a", "b"], per_pair=1)
        first = await pool.acquire("w0", 1)
        second = await pool.acquire("w1", 1)
        assert {first, second} == {"a", "b"}  # one slot each: both pairs in use
        waiting = [asyncio.ensure_future(pool.acquire(f"w{n}", n)) for n in (2, 9, 5)]
        await asyncio.sleep(0)
        assert not any(w.done() for w in waiting)  # no pair has a free slot
        pool.release(first)
        await asyncio.sleep(0)
        assert [w.done() for w in waiting] == [False, True, False]  # the 9 goes first
        pool.release(second)
        pool.release(await waiting[1])
        await asyncio.gather(*waiting)
        return pool.grants

    grants = run(scenario())
    assert [workload for workload, _ in grants] == ["w0", "w1", "w9", "w5", "w2"]


def test_a_resumed_workload_waits_for_its_pair_and_lets_others_pass() -> None:
    async def scenario() -> None:
        pool = PairPool(["a", "b"], per_pair=1)
        assert await pool.acquire("big", 9, ["a"]) == "a"
        resumed = asyncio.ensure_future(pool.acquire("resumed", 8, sticky="a"))
        other = asyncio.ensure_future(pool.acquire("other", 1, ["a"]))
        await asyncio.sleep(0)
        # The resumed copy's checkpoints are on pair a: it waits for a; the smaller one
        # behind it is not held up and takes b.
        assert not resumed.done() and other.done() and other.result() == "b"
        pool.release("a")
        assert await resumed == "a"

    run(scenario())


def test_a_planned_workload_moves_only_to_an_idle_pair() -> None:
    async def scenario() -> None:
        pool = PairPool(["a", "b", "c"], per_pair=2)
        for workload, pair in (("a1", "a"), ("a2", "a"), ("b1", "b"), ("c1", "c"), ("c2", "c")):
            assert await pool.acquire(workload, 1, [pair]) == pair
        # Planned on a (full). b still copies with a free slot: taking a3 would share b's
        # link and make b finish later than the plan balanced; a3 waits.
        a3 = asyncio.ensure_future(pool.acquire("a3", 1, ["a"]))
        await asyncio.sleep(0)
        assert not a3.done()
        # c becomes idle while b still copies: c takes a3 over.
        pool.release("c")
        await asyncio.sleep(0)
        assert not a3.done()  # c still has c2
        pool.release("c")
        assert await a3 == "c"
        # An idle pair keeps itself for a waiting workload planned on it, even a smaller one.
        pool = PairPool(["a", "b"], per_pair=1)
        assert [await pool.acquire(w, 1, [w[0]]) for w in ("a1", "b1")] == ["a", "b"]
        a2 = asyncio.ensure_future(pool.acquire("a2", 9, ["a"]))
        b2 = asyncio.ensure_future(pool.acquire("b2", 1, ["b"]))
        await asyncio.sleep(0)
        pool.release("b")
        assert await b2 == "b" and not a2.done()
        pool.release("a")
        assert await a2 == "a"

    run(scenario())


def test_an_idle_pair_keeps_itself_for_the_workloads_planned_on_it_before_they_ask() -> None:
    async def scenario() -> None:
        pool = PairPool(["a", "b"], per_pair=1)
        pool.expect({"a1": "a", "a2": "a", "b1": "b"})
        assert await pool.acquire("a1", 1, ["a"]) == "a"
        # b is idle, but b1 (planned on b) has not asked yet: a2 waits for a.
        a2 = asyncio.ensure_future(pool.acquire("a2", 1, ["a"]))
        await asyncio.sleep(0)
        assert not a2.done()
        assert await pool.acquire("b1", 1, ["b"]) == "b"
        pool.release("b")  # b1 is done; nothing else is planned on b: b takes a2 over
        assert await a2 == "b"
        # A planned workload that ends without asking (failed, skipped) frees its pair too.
        pool.expect({"x": "a", "y": "a", "z": "b"})
        x = asyncio.ensure_future(pool.acquire("x", 1, ["a"]))
        y = asyncio.ensure_future(pool.acquire("y", 1, ["a"]))
        await asyncio.sleep(0)
        assert not x.done() and not y.done()  # a is busy (a1), b is busy (a2)
        pool.release("b")
        await asyncio.sleep(0)
        assert not x.done() and not y.done()  # b is kept for z
        pool.settle("z")
        assert await x == "b" and not y.done()

    run(scenario())


def test_a_pair_marked_down_gets_nothing_new_and_an_empty_pool_fails_clearly() -> None:
    async def scenario() -> None:
        pool = PairPool(["a", "b"], per_pair=2)
        pool.mark_down("a", "sshd gone")
        assert [await pool.acquire(f"w{n}", n, ["a"]) for n in range(2)] == ["b", "b"]
        # A workload sticky to the dead pair goes to a live one instead.
        waiting = asyncio.ensure_future(pool.acquire("sticky", 5, sticky="a"))
        await asyncio.sleep(0)
        assert not waiting.done()  # b is full
        pool.mark_down("b", "server ERROR")
        with pytest.raises(NoPairError, match="pair 'a': sshd gone; pair 'b': server ERROR"):
            await waiting

    run(scenario())


def test_the_walker_with_the_pool_keeps_per_pair_limits_and_starts_the_largest_first() -> None:
    sizes = {f"volume.v{n}": n for n in (3, 1, 7, 5, 2, 6, 4)}
    graph = nx.DiGraph()
    for address, gib in sizes.items():
        node = WorkloadNode(migrate(address, gib), Step.MIGRATE)
        graph.add_node(node.id, node=node)
    pool = PairPool(["a", "b", "c"], per_pair=2)
    running: dict[str, int] = {"a": 0, "b": 0, "c": 0}
    peak: dict[str, int] = dict(running)
    started: list[str] = []

    async def copy(node: Node) -> str:
        pair = await pool.acquire(node.id, node.change.bytes_to_move or 0)
        started.append(node.id)
        running[pair] += 1
        peak[pair] = max(peak[pair], running[pair])
        await asyncio.sleep(0.01 * sizes[node.id])
        running[pair] -= 1
        pool.release(pair)
        return pair

    outcomes = run(walk(graph, copy, limits=Limits.of(10, 2, pairs=3)))
    assert all(o.status.value == "done" for o in outcomes.values())
    # Six slots for seven copies: the six largest start at once, the smallest waits.
    assert started[:6] == [
        "volume.v7",
        "volume.v6",
        "volume.v5",
        "volume.v4",
        "volume.v3",
        "volume.v2",
    ]
    assert started[6] == "volume.v1"
    assert peak == {"a": 2, "b": 2, "c": 2}  # every pair used, never beyond its slots
