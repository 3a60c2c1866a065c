"""Edge cases found in review: targeted replacements, adoption at apply time, swaps."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from tenantshift.engine.apply import apply_plan
from tenantshift.engine.planning import make_plan
from tenantshift.manifest import Manifest
from tenantshift.plans import Action
from tenantshift.providers import ProviderError
from tenantshift.providers.memory import MemoryProvider

MANIFEST = Manifest.model_validate(
    {"version": 1, "source": {"cloud": "src"}, "destination": {"cloud": "dst"}}
)


def _routed_subnet() -> tuple[MemoryProvider, MemoryProvider, str]:
    """A source router with an interface on n/s, copied to the destination."""
    source, destination = MemoryProvider("source"), MemoryProvider("destination")
    router = source.create("router", {"name": "r"}, None)
    net = source.create("network", {"name": "n"}, None)
    subnet = source.create(
        "subnet", {"network": net["id"], "name": "s", "cidr": "10.0.0.0/24"}, None
    )
    source.create("router_interface", {"router": router["id"], "subnet": subnet["id"]}, None)
    return source, destination, str(subnet["id"])


def test_a_targeted_replacement_takes_its_cascade_along(tmp_path: Path) -> None:
    """``--target subnet`` whose cidr changed: the interface on it must be destroyed first, so
    it belongs to the targeted plan (like Terraform, destroying a target takes its dependents)."""
    source, destination, subnet_id = _routed_subnet()
    assert apply_plan(make_plan(MANIFEST, source, destination).plan, destination, tmp_path).ok
    source.update("subnet", subnet_id, {"cidr": "10.9.0.0/24"})

    plan = make_plan(MANIFEST, source, destination, targets=("subnet.n/s",)).plan

    actions = {c.address: c.action for c in plan.changes}
    assert actions["router_interface.r/n/s"] is Action.REPLACE
    result = apply_plan(plan, destination, tmp_path)
    assert result.ok, {a: o.message for a, o in result.outcomes.items()}
    assert not make_plan(MANIFEST, source, destination).plan.has_changes


def test_a_create_does_not_adopt_a_copy_that_differs_in_an_immutable_field(
    tmp_path: Path,
) -> None:
    """Between plan and apply a keypair of the same name but another public key appears: the
    create must not call it "already there" (it cannot be updated into ours)."""
    source, destination = MemoryProvider("source"), MemoryProvider("destination")
    source.create("keypair", {"name": "ops", "public_key": "ssh-ed25519 AAAAours"}, None)
    plan = make_plan(MANIFEST, source, destination).plan
    destination.create("keypair", {"name": "ops", "public_key": "ssh-ed25519 AAAAtheirs"}, None)

    result = apply_plan(plan, destination, tmp_path)

    outcome = result.outcomes["keypair.ops"]
    assert not result.ok
    assert "public_key" in outcome.message
    [kept] = destination.snapshot().of_kind("keypair")
    assert kept.params["public_key"] == "ssh-ed25519 AAAAtheirs"


def _routed_via(source: MemoryProvider, cidr: str, nexthop: str) -> dict[str, str]:
    """Router r with interfaces on n/s (``cidr``) and n/t, and a static route via ``nexthop``."""
    router = source.create("router", {"name": "r"}, None)
    net = source.create("network", {"name": "n"}, None)
    s = source.create("subnet", {"network": net["id"], "name": "s", "cidr": cidr}, None)
    t = source.create("subnet", {"network": net["id"], "name": "t", "cidr": "10.1.0.0/24"}, None)
    for subnet in (s, t):
        source.create("router_interface", {"router": router["id"], "subnet": subnet["id"]}, None)
    routes = [
        {"destination": "172.16.0.0/24", "nexthop": nexthop},
        {"destination": "172.17.0.0/24", "nexthop": "10.1.0.7"},
    ]
    source.update("router", router["id"], {"routes": routes})
    return {"router": str(router["id"]), "s": str(s["id"])}


def test_memory_refuses_to_remove_an_interface_a_route_needs() -> None:
    """Like Neutron (409 RouterInterfaceInUseByRoute)."""
    cloud = MemoryProvider("cloud")
    ids = _routed_via(cloud, "10.0.0.0/24", "10.0.0.5")
    with pytest.raises(ProviderError, match="required by one or more routes"):
        cloud.delete("router_interface", _interface_id(cloud, ids["router"], ids["s"]))


def _interface_id(cloud: MemoryProvider, router: str, subnet: str) -> str:
    found = cloud.find("router_interface", None, {"router": router, "subnet": subnet})
    assert found is not None
    return str(found["id"])


def test_a_subnet_replaced_under_a_route_clears_the_route_before_its_interface(
    tmp_path: Path,
) -> None:
    """The source subnet s moved to another cidr and its route's nexthop with it: the old route
    must leave the router before the old interface can, the other route stays throughout, and
    the new route is set once the new interface exists."""
    source, destination = MemoryProvider("source"), MemoryProvider("destination")
    ids = _routed_via(source, "10.0.0.0/24", "10.0.0.5")
    assert apply_plan(make_plan(MANIFEST, source, destination).plan, destination, tmp_path).ok
    source.update("subnet", ids["s"], {"cidr": "10.9.0.0/24"})
    source.update(
        "router",
        ids["router"],
        {
            "routes": [
                {"destination": "172.16.0.0/24", "nexthop": "10.9.0.5"},
                {"destination": "172.17.0.0/24", "nexthop": "10.1.0.7"},
            ]
        },
    )
    seen: list[list[str]] = []

    def spy(operation: str, kind: str, params: Mapping[str, Any]) -> None:
        if kind == "router" and "routes" in params:
            seen.append(sorted(r["nexthop"] for r in params["routes"]))

    destination.fault = spy
    plan = make_plan(MANIFEST, source, destination).plan
    result = apply_plan(plan, destination, tmp_path)

    assert result.ok, {a: o.message for a, o in result.outcomes.items() if o.status != "done"}
    assert all("10.1.0.7" in hops for hops in seen), seen  # the unrelated route never left
    assert not make_plan(MANIFEST, source, destination).plan.has_changes


def test_pruning_a_router_with_routes_clears_them_before_its_interfaces(
    tmp_path: Path,
) -> None:
    source, destination = MemoryProvider("source"), MemoryProvider("destination")
    ids = _routed_via(source, "10.0.0.0/24", "10.0.0.5")
    assert apply_plan(make_plan(MANIFEST, source, destination).plan, destination, tmp_path).ok
    for interface in source.snapshot().of_kind("router_interface"):
        source.update("router", ids["router"], {"routes": []})
        source.delete("router_interface", str(interface.id))
    source.delete("router", ids["router"])
    pruning = MANIFEST.model_copy(
        update={"options": MANIFEST.options.model_copy(update={"prune": True})}
    )

    plan = make_plan(pruning, source, destination).plan
    assert plan.by_address()["router.r"].action is Action.DELETE
    result = apply_plan(plan, destination, tmp_path)

    assert result.ok, {a: o.message for a, o in result.outcomes.items() if o.status != "done"}
    assert destination.count("router") == 0


def test_an_auto_created_rule_that_differs_is_replaced_in_the_same_apply(tmp_path: Path) -> None:
    source, destination = MemoryProvider("source"), MemoryProvider("destination")
    group = source.create("security_group", {"name": "web"}, None)
    for rule in source.snapshot().of_kind("security_group_rule"):
        if rule.key == "web/egress/IPv4/any/any/0.0.0.0/0":
            source.delete("security_group_rule", str(rule.id))
    egress = {"security_group": group["id"], "direction": "egress", "ethertype": "IPv4"}
    source.create("security_group_rule", {**egress, "description": "all out"}, None)

    result = apply_plan(make_plan(MANIFEST, source, destination).plan, destination, tmp_path)

    assert result.ok, {a: o.message for a, o in result.outcomes.items() if o.status != "done"}
    assert not make_plan(MANIFEST, source, destination).plan.has_changes
