"""The port handler and record over a fake connection: which ports are ours, what a record
holds, what a create sends, how ``find`` looks an earlier run's copy up."""

from __future__ import annotations

from typing import Any

from tenantshift.providers.openstack.kinds import neutron_records as nrec
from tenantshift.providers.openstack.kinds.port import (
    address_pairs_request,
    fixed_ips_request,
    owned_by_migration,
)
from tenantshift.resources import REGISTRY, normalize
from tests.providers.openstack_fakes import fake_conn, fake_port, provider


def test_port_record() -> None:
    record = nrec.port_record(fake_port())
    assert record["network"] == "n1"
    assert record["fixed_ips"] == [
        {"subnet": "s1", "ip_address": "10.10.0.60"},
        {"subnet": "s2", "ip_address": "10.20.0.60"},
    ]
    assert record["security_groups"] == ["g1", "g2"]
    # The port's own MAC in a pair is how Neutron fills in a pair given without one.
    assert record["allowed_address_pairs"] == [
        {"ip_address": "10.10.0.100", "mac_address": "fa:16:3e:99:99:99"},
        {"ip_address": "10.10.0.200", "mac_address": None},
    ]
    assert record["description"] == ""
    assert record["provenance"] == "src-p1"
    assert (record["device_id"], record["device_owner"]) == ("srv-1", "compute:nova")
    assert set(REGISTRY["port"].field_names) <= set(record)


def test_port_normalizes_with_device_as_info_and_subnets_as_addresses() -> None:
    records = {
        "network": [{"id": "n1", "name": "app-net"}],
        "subnet": [
            {"id": "s1", "network": "n1", "name": "a", "cidr": "10.10.0.0/24"},
            {"id": "s2", "network": "n1", "name": "b", "cidr": "10.20.0.0/24"},
        ],
        "security_group": [{"id": "g1", "name": "web"}, {"id": "g2", "name": "db"}],
        "port": [nrec.port_record(fake_port())],
    }
    res = normalize("src", records).resources["port.app-net/10.10.0.60"]
    assert res.params["fixed_ips"] == [
        {"subnet": "subnet.app-net/a", "ip_address": "10.10.0.60"},
        {"subnet": "subnet.app-net/b", "ip_address": "10.20.0.60"},
    ]
    assert res.params["security_groups"] == ["security_group.db", "security_group.web"]
    assert "device_id" in res.info and "device_id" not in res.params


def test_a_slaac_address_is_derived_so_the_record_holds_none() -> None:
    mac = "fa:16:3e:b4:9f:e6"
    assert nrec.derived_from_mac("2001:db8:10:0:f816:3eff:feb4:9fe6", mac)
    assert not nrec.derived_from_mac("2001:db8:10::60", mac)
    assert not nrec.derived_from_mac("10.10.0.60", mac)
    res = fake_port(
        mac_address=mac,
        fixed_ips=[
            {"subnet_id": "v6", "ip_address": "2001:db8:10:0:f816:3eff:feb4:9fe6"},
            {"subnet_id": "v4", "ip_address": "10.10.0.60"},
        ],
    )
    assert nrec.port_record(res)["fixed_ips"] == [
        {"subnet": "v4", "ip_address": "10.10.0.60"},
        {"subnet": "v6", "ip_address": None},
    ]


def test_only_unattached_and_server_ports_migrate() -> None:
    assert owned_by_migration("") and owned_by_migration(None)
    assert owned_by_migration("compute:nova") and owned_by_migration("compute:az-1")
    for owner in (
        "network:dhcp",
        "network:router_interface",
        "network:floatingip",
        "network:router_gateway",
        "Octavia",
    ):
        assert not owned_by_migration(owner)


def test_request_bodies() -> None:
    assert fixed_ips_request(
        [{"subnet": "s1", "ip_address": None}, {"subnet": "s2", "ip_address": "10.0.0.5"}]
    ) == [
        {"subnet_id": "s1"},
        {"subnet_id": "s2", "ip_address": "10.0.0.5"},
    ]
    assert address_pairs_request([{"ip_address": "10.0.0.9", "mac_address": None}]) == [
        {"ip_address": "10.0.0.9"}
    ]


def test_create_sends_ids_tags_and_no_mac_when_the_cloud_picks() -> None:
    conn = fake_conn()
    conn.network.create_port.side_effect = lambda **a: fake_port(tags=a["tags"])
    params = {
        "network": "n1",
        "name": "",
        "description": "",
        "fixed_ips": [{"subnet": "s1", "ip_address": "10.10.0.60"}],
        "mac_address": None,
        "security_groups": ["g1"],
        "allowed_address_pairs": [{"ip_address": "10.10.0.200", "mac_address": None}],
        "is_port_security_enabled": True,
        "is_admin_state_up": True,
    }
    record = provider(conn).create("port", params, "src-p1")
    sent = conn.network.create_port.call_args.kwargs
    assert sent["network_id"] == "n1"
    assert sent["fixed_ips"] == [{"subnet_id": "s1", "ip_address": "10.10.0.60"}]
    assert sent["security_group_ids"] == ["g1"]
    assert sent["allowed_address_pairs"] == [{"ip_address": "10.10.0.200"}]
    assert "mac_address" not in sent
    assert "tenantshift-src:src-p1" in sent["tags"]
    assert record["provenance"] == "src-p1"


def test_vnic_type_is_read_and_sent() -> None:
    """docs/attributes.md: a port's ``binding:vnic_type`` (a member may set it) migrates."""
    assert nrec.port_record(fake_port(binding_vnic_type="direct"))["binding_vnic_type"] == "direct"
    conn = fake_conn()
    conn.network.create_port.side_effect = lambda **a: fake_port(tags=a.get("tags"))
    params = {"network": "n1", "fixed_ips": [], "binding_vnic_type": "macvtap"}
    provider(conn).create("port", params, None)
    assert conn.network.create_port.call_args.kwargs["binding_vnic_type"] == "macvtap"


def test_find_by_tag_then_by_network_key() -> None:
    conn = fake_conn()
    ours = fake_port(tags=[])

    def ports(**q: Any) -> list[Any]:
        if "tags" in q:
            return []
        assert q == {"project_id": "p1", "network_id": "n1"}  # unnamed: no name filter
        return [ours, fake_port(id="other", device_owner="network:dhcp", tags=[])]

    conn.network.ports.side_effect = ports
    params = {
        "network": "n1",
        "name": "",
        "fixed_ips": [
            {"subnet": "s1", "ip_address": "10.10.0.60"},
            {"subnet": "s2", "ip_address": "10.20.0.60"},
        ],
    }
    found = provider(conn).find("port", "src-p1", params)
    assert found is not None and found["id"] == "p1"
