"""The provider's logic over a fake connection: which calls it makes, and what it makes of them.

The real proof is tests/integration/test_openstack_provider.py against the devcloud; these pin
down the call pattern (one list per kind, tags before names) and the write paths cheaply.
"""

from __future__ import annotations

from typing import Any
from unittest import mock

import pytest
from openstack.compute.v2 import keypair
from openstack.network.v2 import network, port, router, security_group, security_group_rule, subnet
from openstack.test.fakes import generate_fake_resource

from tenantshift.providers import NotFoundError, Provider, ProviderError
from tests.providers.openstack_fakes import (
    fake_conn,
    fake_port,
    http_error,
    provider,
)


def net(id: str, name: str, tags: list[str] | None = None, external: bool = False) -> Any:
    return generate_fake_resource(
        network.Network,
        id=id,
        name=name,
        description="",
        tags=tags or [],
        mtu=1500,
        is_admin_state_up=True,
        is_port_security_enabled=True,
        is_router_external=external,
    )


def test_it_is_a_provider() -> None:
    assert isinstance(provider(fake_conn()), Provider)


def test_snapshot_lists_each_kind_once_filtered_by_project() -> None:
    conn = fake_conn()
    ext = net("ext", "public", external=True)
    conn.network.networks.side_effect = lambda **q: (
        [ext] if q.get("is_router_external") else [net("n1", "osm_net"), ext]
    )
    conn.network.subnets.return_value = [
        generate_fake_resource(
            subnet.Subnet,
            id="s1",
            network_id="n1",
            name="sub",
            tags=[],
            allocation_pools=[],
            host_routes=[],
            dns_nameservers=[],
            ip_version=4,
            cidr="10.0.0.0/24",
        ),
        generate_fake_resource(
            subnet.Subnet,
            id="s-ext",
            network_id="ext",
            name="pub",
            tags=[],
            allocation_pools=[],
            host_routes=[],
            dns_nameservers=[],
        ),
    ]
    conn.network.routers.return_value = [
        generate_fake_resource(
            router.Router,
            id="r1",
            name="rtr",
            tags=[],
            routes=[],
            external_gateway_info={"network_id": "ext"},
        )
    ]
    leg = generate_fake_resource(
        port.Port,
        device_id="r1",
        fixed_ips=[{"subnet_id": "s1"}],
        device_owner="network:router_interface",
    )
    vm_port = generate_fake_resource(
        port.Port,
        id="p-vm",
        network_id="n1",
        name="",
        device_owner="compute:nova",
        tags=[],
        fixed_ips=[{"subnet_id": "s1", "ip_address": "10.0.0.5"}],
        security_group_ids=[],
        allowed_address_pairs=[],
        mac_address="fa:16:3e:00:00:01",
    )
    dhcp = generate_fake_resource(port.Port, network_id="n1", device_owner="network:dhcp")
    # The interfaces' listing asks for router owners; the ports' listing filters client-side.
    conn.network.ports.side_effect = lambda **q: (
        [leg] if "device_owner" in q else [leg, vm_port, dhcp]
    )
    conn.network.security_groups.return_value = []
    conn.network.security_group_rules.return_value = []
    conn.compute.keypairs.return_value = [
        generate_fake_resource(keypair.Keypair, name="kp", public_key="ssh-ed25519 A", type="ssh")
    ]
    conn.network.get_quota.return_value = mock.Mock(
        networks={"limit": 10, "used": 1, "reserved": 0},
        subnets={"limit": -1, "used": 1},
        routers={"limit": 3, "used": 1, "reserved": 1},
        security_groups=None,
        security_group_rules=None,
        ports=None,
    )
    conn.compute.get_limits.return_value = mock.Mock(absolute=mock.Mock(keypairs=100, instances=10))
    conn.compute.servers.return_value = []
    conn.compute.flavors.return_value = []
    conn.block_storage.volumes.return_value = []
    conn.block_storage.get_quota_set.return_value = mock.Mock(
        volumes=10, usage={"volumes": 2}, reservation={"volumes": 1}
    )

    snap = provider(conn).snapshot()

    for lister in ("subnets", "routers", "security_groups", "security_group_rules"):
        getattr(conn.network, lister).assert_called_once_with(project_id="p1")
    port_queries = [c.kwargs for c in conn.network.ports.call_args_list]
    assert len(port_queries) == 2  # the router legs, and the ports (owner filtered here)
    assert all(q["project_id"] == "p1" for q in port_queries)
    assert any("network:router_interface" in q.get("device_owner", ()) for q in port_queries)
    assert conn.network.networks.call_count == 2  # the project's, and the external ones
    assert sorted(snap.resources) == [
        "keypair.kp",
        "network.osm_net",
        "port.osm_net/10.0.0.5",
        "router.rtr",
        "router_interface.rtr/osm_net/sub",
        "subnet.osm_net/sub",
    ]
    assert snap.resources["router.rtr"].params["external_network"] == "public"
    assert snap.externals == {"external_network": ["public"], "flavor": []}
    assert snap.quota_left == {"network": 9, "router": 1, "keypair": 99, "volume": 7, "server": 10}
    assert snap.project == "p1"


def test_snapshot_leaves_out_forbidden_quotas() -> None:
    conn = fake_conn()
    for name in ("subnets", "routers", "ports", "security_groups", "security_group_rules"):
        getattr(conn.network, name).return_value = []
    conn.compute.keypairs.return_value = []
    conn.network.get_quota.side_effect = http_error(403, "not allowed")
    conn.compute.get_limits.side_effect = http_error(403, "not allowed")
    conn.block_storage.volumes.return_value = []
    conn.block_storage.get_quota_set.side_effect = http_error(403, "not allowed")
    assert provider(conn).snapshot().quota_left == {}


def test_snapshot_error_names_the_failing_list() -> None:
    conn = fake_conn()
    conn.network.subnets.side_effect = http_error(500, "database is gone")
    with pytest.raises(ProviderError, match=r"list subnet failed \(after 3 attempts\).*database"):
        provider(conn).snapshot()


def test_find_asks_for_our_tag_before_the_name() -> None:
    conn = fake_conn()
    tagged = net("n2", "renamed", tags=["tenantshift-src:src-1"])
    conn.network.networks.side_effect = lambda **q: [tagged] if "tags" in q else []
    found = provider(conn).find("network", "src-1", {"name": "osm_net"})
    assert found is not None and found["id"] == "n2" and found["provenance"] == "src-1"
    assert conn.network.networks.call_args_list[0].kwargs == {
        "project_id": "p1",
        "tags": "tenantshift-src:src-1",
    }


def test_find_falls_back_to_the_name_but_not_onto_another_sources_copy() -> None:
    conn = fake_conn()
    other = net("n3", "osm_net", tags=["tenantshift-src:someone-else"])
    conn.network.networks.side_effect = lambda **q: [] if "tags" in q else [other]
    assert provider(conn).find("network", "src-1", {"name": "osm_net"}) is None
    plain = net("n4", "osm_net")
    conn.network.networks.side_effect = lambda **q: [] if "tags" in q else [plain]
    found = provider(conn).find("network", "src-1", {"name": "osm_net"})
    assert found is not None and found["id"] == "n4"


def test_a_network_is_tagged_right_after_its_create_in_one_call() -> None:
    """Neutron refuses tags in a network's POST (whatever ``tag-creation`` says): none are sent,
    and the marker and the user's tags follow in one PUT, with no re-read: two calls."""
    conn = fake_conn()
    conn.network.create_network.side_effect = lambda **a: net("n9", a["name"])
    params = {"name": "osm_net", "mtu": None, "tags": ["test_tag_2", "test_tag_1"]}
    record = provider(conn).create("network", params, "src-1")
    assert conn.network.create_network.call_args.kwargs == {"name": "osm_net"}
    assert conn.network.set_tags.call_args.args[1] == [
        "tenantshift-src:src-1",
        "test_tag_1",
        "test_tag_2",
    ]
    conn.network.get_network.assert_not_called()
    assert record["provenance"] == "src-1"
    assert record["tags"] == ["test_tag_1", "test_tag_2"]


def test_a_port_takes_its_tags_in_the_post_where_ml2_allows() -> None:
    conn = fake_conn()
    conn.network.create_port.side_effect = lambda **a: fake_port(tags=a["tags"])
    params = {"network": "n1", "fixed_ips": [], "tags": ["x"]}
    record = provider(conn).create("port", params, "src-p1")
    assert conn.network.create_port.call_args.kwargs["tags"] == ["tenantshift-src:src-p1", "x"]
    conn.network.set_tags.assert_not_called()
    assert record["tags"] == ["x"] and record["provenance"] == "src-p1"

    conn.network.extensions.return_value = []  # another cloud: no such driver
    conn.network.create_port.side_effect = lambda **a: fake_port(tags=[])
    record = provider(conn).create("port", params, "src-p1")
    assert "tags" not in conn.network.create_port.call_args.kwargs
    assert conn.network.set_tags.call_args.args[1] == ["tenantshift-src:src-p1", "x"]


def test_only_the_tags_change_in_one_call_keeping_our_marker() -> None:
    conn = fake_conn()
    conn.network.get_network.return_value = net("n1", "osm_net", ["old", "tenantshift-src:s"])
    record = provider(conn).update("network", "n1", {"tags": ["new"]})
    conn.network.update_network.assert_not_called()
    assert conn.network.set_tags.call_args.args[1] == ["new", "tenantshift-src:s"]
    assert record["tags"] == ["new"] and record["provenance"] == "s"


def test_lost_create_response_adopts_instead_of_duplicating() -> None:
    from keystoneauth1 import exceptions as ksa_exc

    conn = fake_conn()
    created = net("n9", "osm_net", ["tenantshift-src:src-1"])
    conn.network.create_network.side_effect = ksa_exc.ConnectFailure("Connection aborted")
    conn.network.networks.side_effect = lambda **q: [created] if "tags" in q else []
    record = provider(conn).create("network", {"name": "osm_net"}, "src-1")
    assert record["id"] == "n9"
    assert conn.network.create_network.call_count == 1


def test_router_gateway_resolves_the_external_name() -> None:
    conn = fake_conn()
    conn.network.networks.side_effect = lambda **q: [net("e1", "public", external=True)]
    conn.network.create_router.side_effect = lambda **a: generate_fake_resource(
        router.Router,
        id="r1",
        name=a["name"],
        tags=a.get("tags", []),
        routes=[],
        external_gateway_info=a["external_gateway_info"],
    )
    record = provider(conn).create("router", {"name": "r", "external_network": "public"}, "s")
    assert conn.network.create_router.call_args.kwargs["external_gateway_info"] == {
        "network_id": "e1"
    }
    assert record["external_network"] == "public"


@pytest.mark.parametrize("visible", [[], ["public", "public"]], ids=["absent", "ambiguous"])
def test_router_gateway_name_must_be_unique_and_visible(visible: list[str]) -> None:
    conn = fake_conn()
    conn.network.networks.side_effect = lambda **q: [
        net(f"e{i}", name, external=True) for i, name in enumerate(visible)
    ]
    with pytest.raises(ProviderError, match="public"):
        provider(conn).create("router", {"name": "r", "external_network": "public"}, "s")
    conn.network.create_router.assert_not_called()


def test_duplicate_rule_returns_the_existing_one() -> None:
    conn = fake_conn()
    params = {
        "security_group": "g1",
        "direction": "ingress",
        "ethertype": "IPv4",
        "protocol": "tcp",
        "port_range_min": 22,
        "port_range_max": 22,
        "remote_ip_prefix": None,
        "remote_group": None,
        "description": "",
    }
    existing = generate_fake_resource(
        security_group_rule.SecurityGroupRule,
        id="rule1",
        security_group_id="g1",
        direction="ingress",
        ether_type="IPv4",
        protocol="6",
        port_range_min=22,
        port_range_max=22,
        remote_ip_prefix=None,
        remote_group_id=None,
        description="",
    )
    conn.network.create_security_group_rule.side_effect = http_error(
        409, "Security group rule already exists. Rule id is rule1."
    )
    conn.network.security_group_rules.return_value = [existing]
    assert provider(conn).create("security_group_rule", params, None)["id"] == "rule1"

    conn.network.security_group_rules.return_value = []
    with pytest.raises(ProviderError, match="Rule id is rule1"):
        provider(conn).create("security_group_rule", params, None)


def test_update_replaces_only_our_tag() -> None:
    conn = fake_conn()
    grp = generate_fake_resource(
        security_group.SecurityGroup, id="g1", name="web", tags=["x", "tenantshift-src:old"]
    )
    conn.network.update_security_group.return_value = grp
    conn.network.get_security_group.return_value = generate_fake_resource(
        security_group.SecurityGroup, id="g1", name="web", tags=["tenantshift-src:new", "x"]
    )
    changes = {"description": "d", "provenance": "new"}
    record = provider(conn).update("security_group", "g1", changes)
    conn.network.update_security_group.assert_called_once_with("g1", description="d")
    assert conn.network.set_tags.call_args.args[1] == ["tenantshift-src:new", "x"]
    assert record["provenance"] == "new"


def test_rules_cannot_be_updated() -> None:
    with pytest.raises(ProviderError, match="replaced"):
        provider(fake_conn()).update("security_group_rule", "r1", {"protocol": "udp"})


def test_delete_of_what_is_gone_is_fine_and_interfaces_use_their_subnet() -> None:
    conn = fake_conn()
    conn.network.delete_network.side_effect = http_error(404, "Network n1 could not be found.")
    provider(conn).delete("network", "n1")
    provider(conn).delete("router_interface", "r1:s1")
    conn.network.remove_interface_from_router.assert_called_once_with("r1", subnet="s1")


def test_get_returns_none_when_gone_and_keypairs_by_name() -> None:
    conn = fake_conn()
    conn.network.get_subnet.side_effect = http_error(404, "gone")
    assert provider(conn).get("subnet", "s1") is None
    conn.compute.get_keypair.side_effect = http_error(404, "gone")
    assert provider(conn).get("keypair", "kp") is None
    with pytest.raises(ProviderError, match="does not handle"):
        provider(conn).get("flavor", "x")
    assert not isinstance(ProviderError("x"), NotFoundError)


def test_a_refused_tagged_post_is_retried_without_tags_and_stamped_after() -> None:
    """The extension is announced but the POST refuses tags: the handler stops sending them."""
    conn = fake_conn()
    conn.network.create_port.side_effect = [
        http_error(400, "Attribute 'tags' not allowed in POST"),
        fake_port(tags=[]),
        fake_port(tags=[]),
    ]
    cloud = provider(conn)
    cloud.create("port", {"network": "n1", "fixed_ips": []}, "src-p")
    assert "tags" not in conn.network.create_port.call_args.kwargs
    assert conn.network.set_tags.call_args.args[1] == ["tenantshift-src:src-p"]
    cloud.create("port", {"network": "n1", "fixed_ips": []}, "src-q")
    assert conn.network.create_port.call_count == 3  # no second refused attempt


def test_find_waits_for_a_create_to_stamp_its_marker() -> None:
    """A network exists unmarked until set_tags (Neutron takes no tags in its POST): a
    ``find`` for another source's same-named network must not adopt it in that window (issue 8)."""
    import threading
    import time

    conn = fake_conn()
    conn.network.extensions.return_value = []
    state: dict[str, Any] = {"created": False, "tags": []}
    conn.network.networks.side_effect = lambda **q: (
        [] if "tags" in q or not state["created"] else [net("n1", "X", list(state["tags"]))]
    )
    conn.network.get_network.side_effect = lambda _id: net("n1", "X", list(state["tags"]))
    conn.network.set_tags.side_effect = lambda _res, tags: state.update(tags=tags)
    cloud = provider(conn)
    found: list[Any] = []
    other = threading.Thread(target=lambda: found.append(cloud.find("network", "b", {"name": "X"})))

    def create_network(**attrs: Any) -> Any:
        state["created"] = True
        other.start()
        time.sleep(0.3)  # the other worker's find runs now, in the unmarked window
        assert other.is_alive(), "find did not wait for the marker"
        return net("n1", "X")

    conn.network.create_network.side_effect = create_network
    assert cloud.create("network", {"name": "X"}, "a")["provenance"] == "a"
    other.join(5)
    assert found == [None]


def test_two_markers_are_a_warning_in_the_snapshot_and_a_conflict_for_find() -> None:
    conn = fake_conn()
    both = net("n1", "X", tags=["tenantshift-src:a", "tenantshift-src:b"])
    conn.network.networks.side_effect = lambda **q: [] if q.get("is_router_external") else [both]
    for name in ("subnets", "routers", "ports", "security_groups", "security_group_rules"):
        getattr(conn.network, name).return_value = []
    conn.compute.keypairs.return_value = []
    conn.network.get_quota.side_effect = http_error(403, "not allowed")
    conn.compute.get_limits.side_effect = http_error(403, "not allowed")
    snap = provider(conn).snapshot()
    assert any("n1 carries the markers of 2 source resources (a, b)" in w for w in snap.warnings)
    with pytest.raises(ProviderError, match=r"markers of 2 source resources \(a, b\)"):
        provider(conn).find("network", "a", {"name": "X"})


def test_optional_extension_attributes_are_sent_only_when_they_matter() -> None:
    """``stateful`` and ``service_types`` come from extensions a cloud may lack: a create sends
    them only when they differ from the default; an update sends the change either way."""
    conn = fake_conn()
    conn.network.create_security_group.side_effect = lambda **a: generate_fake_resource(
        security_group.SecurityGroup, id="g1", tags=[], stateful=a.get("stateful", True), **{
            k: v for k, v in a.items() if k == "name"
        }
    )  # fmt: skip
    cloud = provider(conn)
    cloud.create("security_group", {"name": "a", "stateful": True}, "s")
    assert "stateful" not in conn.network.create_security_group.call_args.kwargs
    record = cloud.create("security_group", {"name": "b", "stateful": False}, "s")
    assert conn.network.create_security_group.call_args.kwargs["stateful"] is False
    assert record["stateful"] is False
    conn.network.update_security_group.return_value = generate_fake_resource(
        security_group.SecurityGroup, id="g1", tags=[], stateful=True
    )
    cloud.update("security_group", "g1", {"stateful": True})
    conn.network.update_security_group.assert_called_once_with("g1", stateful=True)

    conn.network.create_subnet.side_effect = lambda **a: generate_fake_resource(
        subnet.Subnet,
        id="s1",
        tags=[],
        allocation_pools=[],
        host_routes=[],
        dns_nameservers=[],
        service_types=a.get("service_types", []),
    )
    cloud.create("subnet", {"network": "n1", "name": "x", "service_types": []}, "s")
    assert "service_types" not in conn.network.create_subnet.call_args.kwargs
    cloud.create("subnet", {"network": "n1", "name": "x", "service_types": ["b", "a"]}, "s")
    assert conn.network.create_subnet.call_args.kwargs["service_types"] == ["a", "b"]
