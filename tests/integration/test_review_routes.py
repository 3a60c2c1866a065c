"""Static routes and the interfaces they go through, against real Neutron (devcloud-dst).

Neutron refuses to remove a router interface while a static route's nexthop lies in its subnet
(409 RouterInterfaceInUseByRoute): replacing such a subnet, or pruning such a router, must shed
the routes first. The source is the memory provider; the destination holds only what this test
makes (a per-run name prefix, selected by the manifest), deleted at the end.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import openstack
import pytest

from tenantshift.engine.apply import apply_plan
from tenantshift.engine.planning import make_plan
from tenantshift.manifest import CloudRef, Manifest
from tenantshift.plans import Action
from tenantshift.providers.memory import MemoryProvider
from tenantshift.providers.openstack import OpenStackProvider, RetryPolicy
from tenantshift.resources import REGISTRY

pytestmark = pytest.mark.devcloud


@pytest.fixture
def prefix() -> str:
    return f"ts-rt-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def dst(request: pytest.FixtureRequest, prefix: str) -> Iterator[OpenStackProvider]:
    clouds = Path(request.getfixturevalue("devcloud").clouds_yaml)
    provider = OpenStackProvider.from_cloud_ref(
        CloudRef(cloud="devcloud-dst"),
        config_files=[str(clouds)],
        retry=RetryPolicy(attempts=4, base_delay=0.2, budget=20),
    )
    yield provider
    conn: openstack.connection.Connection = provider.conn
    project = conn.current_project_id
    for router in conn.network.routers(project_id=project):
        if router.name.startswith(prefix):
            conn.network.update_router(router, routes=[])
            for port in conn.network.ports(device_id=router.id):
                if port.device_owner.startswith("network:router_interface"):
                    conn.network.remove_interface_from_router(router, port_id=port.id)
            conn.network.delete_router(router)
    for network in conn.network.networks(project_id=project):
        if network.name.startswith(prefix):
            conn.network.delete_network(network)


def manifest(prefix: str, *, prune: bool = False) -> Manifest:
    mine = {"include": [f"{prefix}.*"]}
    return Manifest.model_validate(
        {
            "version": 1,
            "source": {"cloud": "memory"},
            "destination": {"cloud": "devcloud-dst"},
            "select": {kind: mine for kind in REGISTRY.names()},
            "options": {"prune": prune},
        }
    )


def routed_source(prefix: str) -> tuple[MemoryProvider, dict[str, str]]:
    source = MemoryProvider("source")
    router = source.create("router", {"name": f"{prefix}-r"}, None)
    net = source.create("network", {"name": f"{prefix}-n"}, None)
    ids = {"router": str(router["id"])}
    for name, cidr in (("s", "10.70.0.0/24"), ("t", "10.71.0.0/24")):
        subnet = source.create(
            "subnet",
            {
                "network": net["id"],
                "name": f"{prefix}-{name}",
                "cidr": cidr,
                "gateway_ip": cidr.replace("0/24", "1"),
            },
            None,
        )
        source.create("router_interface", {"router": router["id"], "subnet": subnet["id"]}, None)
        ids[name] = str(subnet["id"])
    routes = [
        {"destination": "172.30.0.0/24", "nexthop": "10.70.0.5"},
        {"destination": "172.31.0.0/24", "nexthop": "10.71.0.5"},
    ]
    source.update("router", router["id"], {"routes": routes})
    return source, ids


def test_a_subnet_under_a_route_is_replaced(
    dst: OpenStackProvider, prefix: str, tmp_path: Path
) -> None:
    source, ids = routed_source(prefix)
    wanted = manifest(prefix)
    first = apply_plan(make_plan(wanted, source, dst).plan, dst, tmp_path)
    assert first.ok, {a: o.message for a, o in first.outcomes.items() if o.status != "done"}

    source.update("subnet", ids["s"], {"cidr": "10.72.0.0/24", "gateway_ip": "10.72.0.1"})
    source.update(
        "router",
        ids["router"],
        {
            "routes": [
                {"destination": "172.30.0.0/24", "nexthop": "10.72.0.5"},
                {"destination": "172.31.0.0/24", "nexthop": "10.71.0.5"},
            ]
        },
    )
    plan = make_plan(wanted, source, dst).plan
    assert plan.by_address()[f"subnet.{prefix}-n/{prefix}-s"].action is Action.REPLACE
    result = apply_plan(plan, dst, tmp_path)

    assert result.ok, {a: o.message for a, o in result.outcomes.items() if o.status != "done"}
    # The memory source leaves mtu and pools unset, which Neutron fills in: those aside, done.
    again = make_plan(wanted, source, dst).plan
    left = [
        (c.address, c.action.value, sorted(f.field for f in c.fields))
        for c in again.changes
        if c.action is not Action.NOOP
    ]
    assert all(
        action == "update" and set(fields) <= {"mtu", "allocation_pools"}
        for _, action, fields in left
    ), left
    [router] = [r for r in dst.snapshot().of_kind("router") if r.key.startswith(prefix)]
    assert [r["nexthop"] for r in router.params["routes"]] == ["10.72.0.5", "10.71.0.5"]


def test_a_router_with_routes_is_pruned(
    dst: OpenStackProvider, prefix: str, tmp_path: Path
) -> None:
    source, ids = routed_source(prefix)
    first = apply_plan(make_plan(manifest(prefix), source, dst).plan, dst, tmp_path)
    assert first.ok, {a: o.message for a, o in first.outcomes.items() if o.status != "done"}

    source.update("router", ids["router"], {"routes": []})
    for interface in source.snapshot().of_kind("router_interface"):
        source.delete("router_interface", str(interface.id))
    source.delete("router", ids["router"])
    plan = make_plan(manifest(prefix, prune=True), source, dst).plan
    assert plan.by_address()[f"router.{prefix}-r"].action is Action.DELETE
    result = apply_plan(plan, dst, tmp_path)

    assert result.ok, {a: o.message for a, o in result.outcomes.items() if o.status != "done"}
    assert not [r for r in dst.snapshot().of_kind("router") if r.key.startswith(prefix)]
