"""Router interfaces over a fake connection: a leg at the gateway is added by subnet, any other
address (a router at .10, a subnet without a gateway) through a port made with that address."""

from __future__ import annotations

from typing import Any

import pytest
from openstack.network.v2 import port, subnet
from openstack.test.fakes import generate_fake_resource

from tenantshift.providers import ProviderError
from tests.providers.openstack_fakes import fake_conn, http_error, provider

ROUTER, SUBNET, NETWORK = "r1", "s1", "n1"


def leg(address: str, device_id: str = ROUTER, id: str = "leg1") -> Any:
    return generate_fake_resource(
        port.Port,
        id=id,
        network_id=NETWORK,
        device_id=device_id,
        device_owner="network:router_interface",
        mac_address="fa:16:3e:00:00:09",
        fixed_ips=[{"subnet_id": SUBNET, "ip_address": address}],
    )


def conn_with(gateway: str | None, attached: list[Any], unattached: list[Any]) -> Any:
    conn = fake_conn()
    conn.network.get_subnet.return_value = generate_fake_resource(
        subnet.Subnet, id=SUBNET, network_id=NETWORK, gateway_ip=gateway
    )

    def ports(**q: Any) -> list[Any]:
        if q.get("device_id") == ROUTER:
            return list(attached)
        assert q == {"network_id": NETWORK, "device_owner": "network:router_interface"}
        return list(unattached)

    conn.network.ports.side_effect = ports
    return conn


def params(address: str | None) -> dict[str, Any]:
    return {"router": ROUTER, "subnet": SUBNET, "ip_address": address}


def test_a_leg_at_the_gateway_is_added_by_subnet() -> None:
    conn = conn_with("10.0.0.1", [leg("10.0.0.1")], [])
    record = provider(conn).create("router_interface", params("10.0.0.1"), None)
    conn.network.add_interface_to_router.assert_called_once_with(ROUTER, subnet=SUBNET)
    conn.network.create_port.assert_not_called()
    assert record["ip_address"] == "10.0.0.1" and record["id"] == "r1:s1"


def test_another_address_goes_through_a_port_with_that_address() -> None:
    made = leg("10.0.0.10", device_id="")
    conn = conn_with("10.0.0.1", [leg("10.0.0.10")], [])
    conn.network.create_port.return_value = made
    record = provider(conn).create("router_interface", params("10.0.0.10"), None)
    conn.network.create_port.assert_called_once_with(
        network_id=NETWORK,
        device_owner="network:router_interface",
        fixed_ips=[{"subnet_id": SUBNET, "ip_address": "10.0.0.10"}],
    )
    conn.network.add_interface_to_router.assert_called_once_with(ROUTER, port="leg1")
    assert record["ip_address"] == "10.0.0.10"


def test_a_subnet_without_a_gateway_gets_its_leg_through_a_port() -> None:
    conn = conn_with(None, [leg("10.0.0.5")], [])
    conn.network.create_port.return_value = leg("10.0.0.5", device_id="")
    provider(conn).create("router_interface", params("10.0.0.5"), None)
    conn.network.add_interface_to_router.assert_called_once_with(ROUTER, port="leg1")


def test_a_leg_left_unattached_by_an_interrupted_run_is_reused() -> None:
    left = leg("10.0.0.10", device_id="", id="left")
    someone_elses = leg("10.0.0.11", device_id="", id="other")
    conn = conn_with("10.0.0.1", [leg("10.0.0.10", id="left")], [someone_elses, left])
    provider(conn).create("router_interface", params("10.0.0.10"), None)
    conn.network.create_port.assert_not_called()
    conn.network.add_interface_to_router.assert_called_once_with(ROUTER, port="left")


def test_a_refused_attach_deletes_the_port_made_for_it() -> None:
    conn = conn_with("10.0.0.1", [], [])
    conn.network.create_port.return_value = leg("10.0.0.10", device_id="")
    conn.network.add_interface_to_router.side_effect = http_error(
        400, "Bad router request: Cidr 10.0.0.0/24 of subnet s1 overlaps with cidr 10.0.0.0/16"
    )
    with pytest.raises(ProviderError, match="overlaps"):
        provider(conn).create("router_interface", params("10.0.0.10"), None)
    conn.network.delete_port.assert_called_once_with("leg1")


def added(port_id: str = "leg1") -> dict[str, Any]:
    """Neutron's answer to ``add_router_interface``: the router, its port and the subnets."""
    return {
        "id": ROUTER,
        "port_id": port_id,
        "subnet_id": SUBNET,
        "subnet_ids": [SUBNET],
        "network_id": NETWORK,
    }


def test_the_added_interface_is_read_from_the_answer_not_listed_again() -> None:
    """Issue 10: add_router_interface answers with the port and subnet; listing the router's
    ports afterwards was one more round trip per interface."""
    conn = conn_with("10.0.0.1", [leg("10.0.0.1")], [])
    conn.network.add_interface_to_router.return_value = added()
    record = provider(conn).create("router_interface", params(None), None)
    conn.network.ports.assert_not_called()
    conn.network.get_subnet.assert_not_called()
    assert record["id"] == "r1:s1" and record["port_id"] == "leg1"
    conn = conn_with("10.0.0.1", [], [])
    conn.network.create_port.return_value = leg("10.0.0.10", device_id="")
    conn.network.add_interface_to_router.return_value = added()
    record = provider(conn).create("router_interface", params("10.0.0.10"), None)
    # One listing: the look for a leg an interrupted run left; none after the add.
    assert conn.network.ports.call_count == 1
    assert record["ip_address"] == "10.0.0.10"


def test_an_answer_for_another_subnet_is_checked_by_listing() -> None:
    conn = conn_with("10.0.0.1", [leg("10.0.0.1")], [])
    conn.network.add_interface_to_router.return_value = {**added(), "subnet_ids": ["s9"]}
    record = provider(conn).create("router_interface", params(None), None)
    assert conn.network.ports.call_count == 1 and record["id"] == "r1:s1"


def test_a_leg_at_a_gateway_the_provider_has_seen_needs_no_read_of_its_subnet() -> None:
    """Issue 10: the apply created (or read) the subnet just before; reading it again for its
    gateway was one more round trip per interface. A leg elsewhere still reads it."""
    conn = conn_with("10.0.0.1", [leg("10.0.0.1")], [])
    conn.network.get_subnet.return_value = generate_fake_resource(
        subnet.Subnet,
        id=SUBNET,
        network_id=NETWORK,
        gateway_ip="10.0.0.1",
        cidr="10.0.0.0/24",
        ip_version=4,
        allocation_pools=[],
        dns_nameservers=[],
        host_routes=[],
        service_types=[],
        tags=[],
    )
    conn.network.add_interface_to_router.return_value = added()
    ours = provider(conn)
    assert ours.get("subnet", SUBNET) is not None  # as a create or update would have
    assert conn.network.get_subnet.call_count == 1
    ours.create("router_interface", params("10.0.0.1"), None)
    assert conn.network.get_subnet.call_count == 1
    conn.network.add_interface_to_router.assert_called_once_with(ROUTER, subnet=SUBNET)
    # Unknown subnet, or an address that is not its gateway: read, as before.
    conn = conn_with("10.0.0.1", [leg("10.0.0.1")], [])
    conn.network.add_interface_to_router.return_value = added()
    provider(conn).create("router_interface", params("10.0.0.1"), None)
    assert conn.network.get_subnet.call_count == 1
