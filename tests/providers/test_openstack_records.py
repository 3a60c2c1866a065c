"""SDK resources -> records: the normalization that makes copies compare equal across clouds."""

from __future__ import annotations

from typing import Any

import pytest
from openstack.compute.v2 import keypair
from openstack.network.v2 import network, port, router, security_group, security_group_rule, subnet
from openstack.test.fakes import generate_fake_resource

from tenantshift.providers.openstack import records as rec
from tenantshift.providers.openstack.kinds import keypair as kp
from tenantshift.providers.openstack.kinds import neutron
from tenantshift.providers.openstack.kinds import neutron_records as nrec
from tenantshift.providers.openstack.kinds import router_interface as ri
from tenantshift.resources import REGISTRY, normalize


def test_network_record_reads_marker_and_declared_fields() -> None:
    res = generate_fake_resource(
        network.Network,
        name="osm_net",
        description=None,
        is_admin_state_up=True,
        is_port_security_enabled=False,
        mtu=1450,
        tags=["team-a", "tenantshift-src:1111"],
    )
    record = nrec.network_record(res)
    assert record["provenance"] == "1111"
    assert record["description"] == ""  # None and "" are the same description
    assert record["is_port_security_enabled"] is False
    assert record["mtu"] == 1450
    assert record["id"] == res.id
    assert set(REGISTRY["network"].field_names) <= set(record)


def test_untagged_resource_has_no_provenance() -> None:
    res = generate_fake_resource(security_group.SecurityGroup, tags=[])
    assert nrec.security_group_record(res)["provenance"] is None


def test_subnet_lists_are_sorted_pairs_and_never_none() -> None:
    res = generate_fake_resource(
        subnet.Subnet,
        allocation_pools=[
            {"start": "10.0.0.100", "end": "10.0.0.200"},
            {"start": "10.0.0.10", "end": "10.0.0.50"},
        ],
        host_routes=None,
        dns_nameservers=["9.9.9.9", "1.1.1.1"],
        tags=[],
    )
    record = nrec.subnet_record(res)
    assert record["allocation_pools"] == [
        {"start": "10.0.0.10", "end": "10.0.0.50"},
        {"start": "10.0.0.100", "end": "10.0.0.200"},
    ]
    assert record["host_routes"] == []
    assert record["dns_nameservers"] == ["9.9.9.9", "1.1.1.1"]  # resolver order is kept
    assert record["network"] == res.network_id


def test_router_gateway_becomes_the_external_network_name() -> None:
    res = generate_fake_resource(
        router.Router,
        external_gateway_info={"network_id": "ext-id", "enable_snat": True},
        routes=[{"destination": "10.9.0.0/16", "nexthop": "10.0.0.5", "extra": 1}],
        tags=[],
    )
    record = nrec.router_record(res, {"ext-id": "public"})
    assert record["external_network"] == "public"
    assert record["routes"] == [{"destination": "10.9.0.0/16", "nexthop": "10.0.0.5"}]
    # A gateway on an invisible network keeps its id, so the plan can report it.
    assert nrec.router_record(res, {})["external_network"] == "ext-id"
    no_gw = generate_fake_resource(router.Router, external_gateway_info=None, routes=[], tags=[])
    assert nrec.router_record(no_gw, {})["external_network"] is None


def test_router_interface_records_one_per_subnet_of_the_port() -> None:
    res = generate_fake_resource(
        port.Port,
        device_id="r1",
        device_owner="network:router_interface",
        fixed_ips=[
            {"subnet_id": "s2", "ip_address": "fd00::1"},
            {"subnet_id": "s1", "ip_address": "fd01::1"},
        ],
    )
    records = ri.router_interface_records(res)
    assert [(r["router"], r["subnet"], r["id"]) for r in records] == [
        ("r1", "s1", "r1:s1"),
        ("r1", "s2", "r1:s2"),
    ]
    assert [r["ip_address"] for r in records] == ["fd01::1", "fd00::1"]
    assert ri.split_interface_id("r1:s1") == ("r1", "s1")
    with pytest.raises(ValueError):
        ri.split_interface_id("r1")


def test_a_leg_not_attached_to_a_router_is_no_interface() -> None:
    """What an interrupted create leaves: a port made to be a leg, never attached."""
    res = generate_fake_resource(
        port.Port,
        device_id="",
        device_owner="network:router_interface",
        fixed_ips=[{"subnet_id": "s1", "ip_address": "10.0.0.10"}],
    )
    assert ri.router_interface_records(res) == []


@pytest.mark.parametrize(
    ("protocol", "ethertype", "expected"),
    [
        ("tcp", "IPv4", "tcp"),
        ("TCP", "IPv4", "tcp"),
        ("6", "IPv4", "tcp"),
        (6, "IPv4", "tcp"),
        ("17", "IPv4", "udp"),
        ("132", "IPv4", "sctp"),
        ("1", "IPv4", "icmp"),
        ("icmp", "IPv6", "ipv6-icmp"),
        ("icmpv6", "IPv6", "ipv6-icmp"),
        ("58", "IPv6", "ipv6-icmp"),
        ("1", "IPv6", "ipv6-icmp"),  # Neutron reads ICMP on an IPv6 rule as ICMPv6
        ("icmp", "IPv4", "icmp"),
        ("any", "IPv4", None),
        ("", "IPv4", None),
        (None, "IPv6", None),
        ("99", "IPv4", "99"),  # no name: kept as the number
    ],
)
def test_protocol_normalization(protocol: Any, ethertype: str, expected: str | None) -> None:
    assert nrec.normalize_protocol(protocol, ethertype) == expected


def test_rule_record_keeps_remote_prefix_as_returned() -> None:
    res = generate_fake_resource(
        security_group_rule.SecurityGroupRule,
        ether_type="IPv4",
        protocol="6",
        port_range_min=443,
        port_range_max=443,
        remote_ip_prefix="0.0.0.0/0",
        remote_group_id=None,
        description=None,
    )
    record = nrec.security_group_rule_record(res)
    assert record["protocol"] == "tcp"
    assert record["ethertype"] == "IPv4"
    assert record["remote_ip_prefix"] == "0.0.0.0/0"
    assert record["security_group"] == res.security_group_id
    assert record["description"] == ""
    assert record["provenance"] is None


def test_keypair_record_is_addressed_by_name() -> None:
    res = generate_fake_resource(
        keypair.Keypair, name="deploy", public_key="ssh-ed25519 AAAA x\n", type=None
    )
    record = kp.keypair_record(res)
    assert record["id"] == "deploy"
    assert record["public_key"] == "ssh-ed25519 AAAA x"
    assert record["type"] == "ssh"


def test_retag_replaces_only_our_marker() -> None:
    assert rec.retag(["b", "tenantshift-src:old", "a"], "new") == [
        "a",
        "b",
        "tenantshift-src:new",
    ]
    assert rec.retag(["tenantshift-src:old"], None) == []
    assert rec.provenance_of(["tenantshift-src:b", "tenantshift-src:a"]) == "a"


def test_to_sdk_renames_and_drops_only_defaultable_nones() -> None:
    assert neutron.SecurityGroupRuleHandler.to_request(
        {
            "security_group": "g",
            "ethertype": "IPv4",
            "remote_group": None,
            "direction": "ingress",
            "protocol": None,
        },
    ) == {"security_group_id": "g", "ether_type": "IPv4", "direction": "ingress"}
    # A subnet without gateway must say so explicitly (null), a null mtu must not be sent.
    assert neutron.SubnetHandler.to_request({"network": "n", "gateway_ip": None}) == {
        "network_id": "n",
        "gateway_ip": None,
    }
    assert neutron.NetworkHandler.to_request({"name": "x", "mtu": None}) == {"name": "x"}
    assert neutron.RouterHandler.to_request({"name": "r", "external_network": "public"}) == {
        "name": "r"
    }


def test_records_of_two_clouds_normalize_to_equal_snapshots() -> None:
    """The same rule written differently in two clouds gives the same address and params."""

    def rules(protocol: str, group_id: str) -> dict[str, list[dict[str, Any]]]:
        grp = generate_fake_resource(
            security_group.SecurityGroup, id=group_id, name="web", description="", tags=[]
        )
        rule = generate_fake_resource(
            security_group_rule.SecurityGroupRule,
            security_group_id=group_id,
            direction="ingress",
            ether_type="IPv4",
            protocol=protocol,
            port_range_min=22,
            port_range_max=22,
            remote_ip_prefix=None,
            remote_group_id=None,
            description="",
        )
        return {
            "security_group": [nrec.security_group_record(grp)],
            "security_group_rule": [nrec.security_group_rule_record(rule)],
        }

    a = normalize("a", rules("6", "g-a"))
    b = normalize("b", rules("TCP", "g-b"))
    assert sorted(a.resources) == sorted(b.resources)
    address = "security_group_rule.web/ingress/IPv4/tcp/22/0.0.0.0/0"
    assert a.resources[address].params == b.resources[address].params
