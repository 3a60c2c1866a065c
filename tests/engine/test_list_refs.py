"""List references end to end on the memory provider: normalize -> derive_desired -> diff ->
graph -> apply, with a test-only kind holding an ordered list reference, an unordered one and a
list of dicts whose ``subnet`` is a reference."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tenantshift.engine.apply import apply_plan
from tenantshift.engine.walk.graph import build_graph
from tenantshift.plans import Action, Fingerprint, Plan, Reason, diff
from tenantshift.providers import ProviderError
from tenantshift.providers.memory import MemoryProvider
from tenantshift.resources import REGISTRY, derive_desired, normalize
from tenantshift.resources.base import Field, Kind, Record

BOX = Kind(
    name="box",
    doc="test only: a server-like kind with list references",
    fields=(
        Field("name", is_name=True),
        Field("nets", ref="network", many=True, default=[]),
        Field("groups", ref="security_group", many=True, unordered=True, default=[]),
        Field(
            "addrs",
            ref="subnet",
            many=True,
            ref_key="subnet",
            unordered=True,
            replace=True,
            default=[],
        ),
    ),
    key=lambda p, _: str(p["name"]),
)


@pytest.fixture(autouse=True)
def box_kind() -> Iterator[Kind]:
    REGISTRY.register(BOX)
    yield BOX
    del REGISTRY.kinds[BOX.name]


def build_source() -> tuple[MemoryProvider, dict[str, Record]]:
    cloud = MemoryProvider("source")
    net_a = cloud.create("network", {"name": "net-a"}, None)
    net_b = cloud.create("network", {"name": "net-b"}, None)
    sub_a = cloud.create(
        "subnet", {"network": net_a["id"], "name": "sub-a", "cidr": "10.0.0.0/24"}, None
    )
    sub_b = cloud.create(
        "subnet", {"network": net_b["id"], "name": "sub-b", "cidr": "10.1.0.0/24"}, None
    )
    web = cloud.create("security_group", {"name": "web"}, None)
    db = cloud.create("security_group", {"name": "db"}, None)
    box = cloud.create(
        "box",
        {
            "name": "vm",
            "nets": [net_b["id"], net_a["id"]],
            "groups": [web["id"], db["id"]],
            "addrs": [
                {"subnet": sub_b["id"], "ip_address": "10.1.0.5"},
                {"subnet": sub_a["id"], "ip_address": "10.0.0.5"},
            ],
        },
        None,
    )
    ids = {"net-a": net_a, "net-b": net_b, "sub-a": sub_a, "sub-b": sub_b, "web": web, "db": db}
    return cloud, {**ids, "vm": box}


def plan_for(source: MemoryProvider, destination: MemoryProvider) -> Plan:
    """``make_plan`` without a manifest (its ``select`` knows only the real kinds)."""
    src, dst = source.snapshot(), destination.snapshot()
    desired = derive_desired(src, None, None)
    return Plan(
        tool_version="test",
        created_at=datetime.now(UTC).isoformat(),
        manifest_path="",
        manifest_hash="-",
        source=Fingerprint(digest=src.fingerprint()),
        destination=Fingerprint(digest=dst.fingerprint()),
        changes=diff(desired, dst),
        warnings=[*src.warnings, *desired.warnings],
    )


def changed(plan: Plan) -> dict[str, Action]:
    return {c.address: c.action for c in plan.changes if c.action is not Action.NOOP}


def test_normalize_rewrites_every_element_and_keeps_order_where_it_matters() -> None:
    source, _ = build_source()
    params = source.snapshot().resources["box.vm"].params
    assert params["nets"] == ["network.net-b", "network.net-a"]
    assert params["groups"] == ["security_group.db", "security_group.web"]
    assert params["addrs"] == [
        {"ip_address": "10.0.0.5", "subnet": "subnet.net-a/sub-a"},
        {"ip_address": "10.1.0.5", "subnet": "subnet.net-b/sub-b"},
    ]


@pytest.mark.parametrize(
    "bad",
    [
        {"groups": ["sg-1", "elsewhere"]},
        {"addrs": [{"subnet": "elsewhere", "ip_address": "10.0.0.9"}]},
    ],
)
def test_a_missing_element_leaves_the_resource_out_with_a_warning(bad: dict[str, object]) -> None:
    records = {
        "security_group": [{"id": "sg-1", "name": "web"}],
        "box": [{"id": "b-1", "name": "vm", **bad}],
    }
    snap = normalize("src", records)
    assert "box.vm" not in snap.resources
    assert any("box b-1: left out" in w and "elsewhere" in w for w in snap.warnings)


def test_create_apply_converge(tmp_path: Path) -> None:
    source, _ = build_source()
    destination = MemoryProvider("destination")
    plan = plan_for(source, destination)
    box = plan.by_address()["box.vm"]
    assert box.action is Action.CREATE
    assert box.depends_on == [
        "network.net-a",
        "network.net-b",
        "security_group.db",
        "security_group.web",
        "subnet.net-a/sub-a",
        "subnet.net-b/sub-b",
    ]
    graph = build_graph(plan)
    assert set(graph.predecessors("box.vm")) == set(box.depends_on)

    result = apply_plan(plan, destination, tmp_path)

    assert result.ok
    assert not plan_for(source, destination).has_changes
    dst = destination.snapshot().resources["box.vm"].params
    assert dst == source.snapshot().resources["box.vm"].params
    # Every element is a reference the memory cloud holds on to.
    web = next(r for r in destination.records_of("security_group").values() if r["name"] == "web")
    with pytest.raises(ProviderError, match="in use by box"):
        destination.delete("security_group", web["id"])


def test_reordering_an_ordered_list_is_an_update_an_unordered_one_nothing(tmp_path: Path) -> None:
    source, rec = build_source()
    destination = MemoryProvider("destination")
    assert apply_plan(plan_for(source, destination), destination, tmp_path).ok

    vm = rec["vm"]
    source.update("box", vm["id"], {"groups": list(reversed(vm["groups"]))})
    assert not plan_for(source, destination).has_changes

    source.update("box", vm["id"], {"nets": list(reversed(vm["nets"]))})
    plan = plan_for(source, destination)
    assert changed(plan) == {"box.vm": Action.UPDATE}
    assert [f.field for f in plan.by_address()["box.vm"].fields] == ["nets"]
    assert apply_plan(plan, destination, tmp_path).ok
    assert destination.snapshot().resources["box.vm"].params["nets"] == [
        "network.net-a",
        "network.net-b",
    ]
    assert not plan_for(source, destination).has_changes


def test_a_replaced_element_cascades_to_the_referrer(tmp_path: Path) -> None:
    source, rec = build_source()
    destination = MemoryProvider("destination")
    assert apply_plan(plan_for(source, destination), destination, tmp_path).ok

    # The memory cloud lets the source change what Neutron could not (a subnet's cidr).
    source.update("subnet", rec["sub-b"]["id"], {"cidr": "10.9.0.0/24"})
    plan = plan_for(source, destination)
    assert changed(plan) == {"subnet.net-b/sub-b": Action.REPLACE, "box.vm": Action.REPLACE}
    assert plan.by_address()["box.vm"].reason is Reason.DEPENDENCY_REPLACED
    graph = build_graph(plan)
    # The box goes before the subnet it references (the memory cloud would refuse otherwise).
    assert graph.has_edge("box.vm#destroy", "subnet.net-b/sub-b#destroy")
    assert graph.has_edge("subnet.net-b/sub-b", "box.vm")

    result = apply_plan(plan, destination, tmp_path)

    assert result.ok, [o.message for o in result.outcomes.values()]
    assert not plan_for(source, destination).has_changes
