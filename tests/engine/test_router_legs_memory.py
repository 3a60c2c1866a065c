"""Router legs that keep their address, on the memory provider (issue 12): a router at .10
rather than the gateway, two routers on one subnet, a leg on a subnet without a gateway with a
static route through it; and rules without a remote prefix, and tags."""

from __future__ import annotations

from pathlib import Path

from tenantshift.engine.apply import apply_plan
from tenantshift.engine.planning import make_plan
from tenantshift.engine.walk.walker import Status
from tenantshift.manifest import Manifest
from tenantshift.providers.memory import MemoryProvider

MANIFEST = Manifest.model_validate(
    {"version": 1, "source": {"cloud": "src"}, "destination": {"cloud": "dst"}}
)


def build() -> MemoryProvider:
    src = MemoryProvider("source")
    net = src.create("network", {"name": "osm_net", "tags": ["test_tag_1", "test_tag_2"]}, None)
    sub = src.create(
        "subnet",
        {"network": net["id"], "name": "osm_subnet", "cidr": "192.168.0.0/24",
         "gateway_ip": "192.168.0.1", "tags": ["t"]},
        None,
    )  # fmt: skip
    isolated = src.create(
        "subnet",
        {"network": net["id"], "name": "isolated", "cidr": "192.168.20.0/24", "gateway_ip": None},
        None,
    )
    edge = src.create("router", {"name": "osm_router", "tags": ["r"]}, None)
    other = src.create("router", {"name": "other"}, None)
    legs = [
        (edge, sub, "192.168.0.10"),
        (other, sub, "192.168.0.1"),
        (edge, isolated, "192.168.20.5"),
    ]
    for router, subnet, address in legs:
        src.create(
            "router_interface",
            {"router": router["id"], "subnet": subnet["id"], "ip_address": address},
            None,
        )
    src.update(
        "router",
        edge["id"],
        {"routes": [{"destination": "10.9.0.0/16", "nexthop": "192.168.20.7"}]},
    )
    group = src.create("security_group", {"name": "osm_sg", "tags": ["g"]}, None)
    src.create(
        "security_group_rule",
        {"security_group": group["id"], "direction": "ingress", "protocol": "icmp"},
        None,
    )
    return src


def test_legs_keep_their_addresses_and_routes_follow(tmp_path: Path) -> None:
    source, destination = build(), MemoryProvider("destination")
    plan = make_plan(MANIFEST, source, destination).plan
    result = apply_plan(plan, destination, tmp_path, parallelism=4)
    assert result.ok, [o.message for o in result.outcomes.values() if o.status is not Status.DONE]

    src, dst = source.snapshot(), destination.snapshot()
    assert set(src.resources) == set(dst.resources)
    for address, res in src.resources.items():
        assert dst.resources[address].params == res.params, address
    legs = {
        a: r.params["ip_address"] for a, r in dst.resources.items() if r.kind == "router_interface"
    }
    assert legs == {
        "router_interface.osm_router/osm_net/osm_subnet": "192.168.0.10",
        "router_interface.other/osm_net/osm_subnet": "192.168.0.1",
        "router_interface.osm_router/osm_net/isolated": "192.168.20.5",
    }
    rule = dst.resources["security_group_rule.osm_sg/ingress/IPv4/icmp/any/0.0.0.0/0"]
    assert rule.params["remote_ip_prefix"] is None
    assert not make_plan(MANIFEST, source, destination).plan.has_changes
