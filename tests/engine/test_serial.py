"""Changes the cloud makes one at a time per resource (a router's interfaces) take turns in the
walker, and a node waiting for its turn holds no slot: the rest of the apply goes on."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import networkx as nx
import pytest

from tenantshift.engine.apply import apply_plan
from tenantshift.engine.planning import make_plan
from tenantshift.engine.walk.limits import Limits
from tenantshift.engine.walk.nodes import Node, nodes_for
from tenantshift.engine.walk.walker import Status, walk
from tenantshift.manifest import Manifest
from tenantshift.plans import Action, Change
from tenantshift.providers.memory import MemoryProvider
from tenantshift.resources import REGISTRY, Field, Kind


def interface(router: str, subnet: str, action: Action = Action.CREATE) -> Change:
    params = {"router": f"router.{router}", "subnet": f"subnet.{subnet}", "ip_address": None}
    return Change(
        address=f"router_interface.{router}/{subnet}",
        kind="router_interface",
        action=action,
        before=params if action is not Action.CREATE else None,
        after=params if action is not Action.DELETE else None,
    )


def group(name: str) -> Change:
    return Change(
        address=f"security_group.{name}", kind="security_group", action=Action.CREATE, after={}
    )


def test_a_router_interface_takes_turns_on_its_router() -> None:
    assert REGISTRY["router_interface"].serial_by == "router"
    (create,) = nodes_for(interface("r", "s1"))
    (destroy,) = nodes_for(interface("r", "s2", Action.DELETE))
    first, second = nodes_for(interface("r", "s3", Action.REPLACE))
    assert {create.serial_key, destroy.serial_key, first.serial_key, second.serial_key} == {
        "router.r"
    }
    (independent,) = nodes_for(group("g"))
    assert independent.serial_key is None


def test_serial_by_must_name_a_single_reference() -> None:
    with pytest.raises(ValueError, match="serial_by"):
        Kind(name="x", fields=(Field("name"),), key=lambda p, k: "x", serial_by="name")


def graph_of(changes: list[Change]) -> nx.DiGraph:
    graph = nx.DiGraph()
    for change in changes:
        for node in nodes_for(change):
            graph.add_node(node.id, node=node)
    return graph


def test_interfaces_of_one_router_run_one_at_a_time_and_others_run_while_they_wait() -> None:
    """Parallelism 2, eight adds on one router, eight independent nodes. Walked first (their
    addresses sort first), the interface nodes would take both slots, one of them only to wait
    for the router; the first interface here runs until every independent node is done, which
    can only happen in the slot the waiting interfaces do not hold."""
    changes = [interface("r", f"s{i}") for i in range(8)] + [group(f"g{i}") for i in range(8)]
    running: Counter[str] = Counter()
    peak: Counter[str] = Counter()
    independent_left = [8]
    independent_done = asyncio.Event()
    starved: list[str] = []

    async def run(node: Node) -> str:
        key = node.serial_key
        if key is None:
            await asyncio.sleep(0)
            independent_left[0] -= 1
            if not independent_left[0]:
                independent_done.set()
            return "ok"
        running[key] += 1
        peak[key] = max(peak[key], running[key])
        try:
            await asyncio.wait_for(independent_done.wait(), timeout=1)
        except TimeoutError:
            starved.append(node.id)  # the independent nodes had no slot while this one ran
        finally:
            running[key] -= 1
        return "added"

    outcomes = asyncio.run(walk(graph_of(changes), run, limits=Limits.of(2, 1)))
    assert {o.status for o in outcomes.values()} == {Status.DONE}
    assert peak == {"router.r": 1}  # (a) never two of one router's interfaces at once
    assert starved == []  # (b) the independent nodes ran while the interfaces waited


def test_interfaces_of_different_routers_run_side_by_side() -> None:
    changes = [interface(router, f"s{i}") for router in ("r", "q") for i in range(4)]
    running: Counter[str] = Counter()
    peak: Counter[str] = Counter()
    both = [0, 0]  # now, peak

    async def run(node: Node) -> str:
        key = str(node.serial_key)
        running[key] += 1
        both[0] += 1
        peak[key] = max(peak[key], running[key])
        both[1] = max(both[1], both[0])
        await asyncio.sleep(0.01)
        running[key] -= 1
        both[0] -= 1
        return "added"

    outcomes = asyncio.run(walk(graph_of(changes), run, limits=Limits.of(4, 1)))
    assert {o.status for o in outcomes.values()} == {Status.DONE}
    assert peak == {"router.r": 1, "router.q": 1}
    assert both[1] == 2


def test_an_apply_on_the_memory_provider_adds_one_interface_per_router_at_a_time(
    tmp_path: Path,
) -> None:
    source = MemoryProvider("source")
    net = source.create("network", {"name": "net"}, None)
    router = source.create("router", {"name": "edge"}, None)
    for i in range(6):
        subnet = source.create(
            "subnet",
            {"network": net["id"], "name": f"s{i}", "cidr": f"10.0.{i}.0/24",
             "gateway_ip": f"10.0.{i}.1"},
            None,
        )  # fmt: skip
        source.create("router_interface", {"router": router["id"], "subnet": subnet["id"]}, None)
    for i in range(6):
        source.create("security_group", {"name": f"g{i}"}, None)
    in_flight: Counter[str] = Counter()
    peak: Counter[str] = Counter()
    lock = threading.Lock()

    def slow(operation: str, kind: str, params: Any) -> None:
        if operation != "create" or kind not in ("router_interface", "security_group"):
            return
        with lock:
            in_flight[kind] += 1
            peak[kind] = max(peak[kind], in_flight[kind])
        time.sleep(0.05)
        with lock:
            in_flight[kind] -= 1

    destination = MemoryProvider("destination", fault=slow)
    manifest = Manifest.model_validate(
        {"version": 1, "source": {"cloud": "src"}, "destination": {"cloud": "dst"}}
    )
    plan = make_plan(manifest, source, destination).plan
    result = apply_plan(plan, destination, tmp_path, parallelism=4)
    assert result.ok
    assert peak["router_interface"] == 1  # one router: its six legs one at a time
    assert peak["security_group"] > 1  # the groups beside them, in the other slots
