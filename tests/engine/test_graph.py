"""The apply graph: ordering rules and cycle reports."""

from __future__ import annotations

import networkx as nx
import pytest

from tenantshift.engine.walk.graph import GraphCycleError, build_graph
from tenantshift.plans import Action, Change, Fingerprint, Plan, Reason


def plan_of(*changes: Change) -> Plan:
    empty = Fingerprint(digest="x")
    return Plan(
        tool_version="t",
        created_at="now",
        manifest_path="m",
        manifest_hash="h",
        source=empty,
        destination=empty,
        changes=list(changes),
    )


def change(address: str, action: Action, **kw: object) -> Change:
    kind = address.partition(".")[0]
    return Change(address=address, kind=kind, action=action, **kw)  # type: ignore[arg-type]


def before(graph: nx.DiGraph, first: str, second: str) -> bool:
    return nx.has_path(graph, first, second)


def test_references_order_creates_and_noops_add_no_nodes() -> None:
    graph = build_graph(
        plan_of(
            change("network.a", Action.NOOP, target_id="n1"),
            change(
                "subnet.a/s",
                Action.CREATE,
                depends_on=["network.a"],
                after={"network": "network.a", "name": "s"},
            ),
            change("router.r", Action.CREATE, after={"name": "r"}),
            change(
                "router_interface.r/a/s",
                Action.CREATE,
                depends_on=["router.r", "subnet.a/s"],
                after={"router": "router.r", "subnet": "subnet.a/s"},
            ),
        )
    )
    assert "network.a" not in graph
    assert before(graph, "subnet.a/s", "router_interface.r/a/s")
    assert before(graph, "router.r", "router_interface.r/a/s")


def test_replace_destroys_referrers_first_and_creates_after() -> None:
    subnet_before = {"network": "network.a", "name": "s", "cidr": "10.0.0.0/24"}
    graph = build_graph(
        plan_of(
            change(
                "subnet.a/s",
                Action.REPLACE,
                reason=Reason.IMMUTABLE_FIELD,
                target_id="s1",
                before=subnet_before,
                after={**subnet_before, "cidr": "10.9.0.0/24"},
            ),
            change(
                "router_interface.r/a/s",
                Action.REPLACE,
                target_id="p1",
                reason=Reason.DEPENDENCY_REPLACED,
                depends_on=["router.r", "subnet.a/s"],
                before={"router": "router.r", "subnet": "subnet.a/s"},
                after={"router": "router.r", "subnet": "subnet.a/s"},
            ),
        )
    )
    assert before(graph, "router_interface.r/a/s#destroy", "subnet.a/s#destroy")
    assert before(graph, "subnet.a/s#destroy", "subnet.a/s")
    assert before(graph, "subnet.a/s", "router_interface.r/a/s")


def test_late_fields_wait_for_every_referrer() -> None:
    graph = build_graph(
        plan_of(
            change(
                "router.r",
                Action.CREATE,
                after={"name": "r", "routes": [{"destination": "0/0", "nexthop": "10.0.0.1"}]},
            ),
            change(
                "router_interface.r/a/s",
                Action.CREATE,
                depends_on=["router.r"],
                after={"router": "router.r", "subnet": "subnet.a/s"},
            ),
        )
    )
    assert before(graph, "router.r", "router.r#late")
    assert before(graph, "router_interface.r/a/s", "router.r#late")


def test_a_router_without_routes_gets_no_late_node() -> None:
    graph = build_graph(plan_of(change("router.r", Action.CREATE, after={"name": "r"})))
    assert list(graph) == ["router.r"]


def test_a_cycle_names_its_addresses() -> None:
    with pytest.raises(GraphCycleError) as caught:
        build_graph(
            plan_of(
                change("subnet.a/s", Action.CREATE, depends_on=["router_interface.x"]),
                change("router_interface.x", Action.CREATE, depends_on=["subnet.a/s"]),
            )
        )
    assert set(caught.value.cycle) == {"subnet.a/s", "router_interface.x"}
    assert "subnet.a/s" in str(caught.value) and "->" in str(caught.value)
