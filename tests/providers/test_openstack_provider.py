"""The provider's logic over a fake connection: which calls it makes, and what it makes of them.

The real proof is tests/integration/test_openstack_provider.py against the devcloud; these pin
down the call pattern (one list per kind, tags before names) and the write paths cheaply.
"""

from __future__ import annotations

import json
from typing import Any
from unittest import mock

import pytest
import requests
from openstack import exceptions as sdk_exc
from openstack.compute.v2 import keypair
from openstack.network.v2 import network, port, router, security_group, security_group_rule, subnet
from openstack.test.fakes import generate_fake_resource

from tenantshift.providers import NotFoundError, Provider, ProviderError
from tenantshift.providers.openstack import OpenStackProvider, RetryPolicy


def http_error(status: int, message: str) -> Exception:
    response = requests.Response()
    response.status_code = status
    response.headers["content-type"] = "application/json"
    response._content = json.dumps({"NeutronError": {"message": message}}).encode()
    try:
        sdk_exc.raise_from_response(response)
    except sdk_exc.SDKException as exc:
        return exc
    raise AssertionError


def fake_conn() -> mock.MagicMock:
    conn = mock.MagicMock()
    conn.session.session.hooks = {"response": []}
    conn.current_project_id = "p1"
    conn.network.extensions.return_value = [mock.Mock(alias="tag-creation")]
    conn.network.networks.return_value = []
    return conn


def provider(conn: mock.MagicMock) -> OpenStackProvider:
    return OpenStackProvider(
        conn, label="fake", retry=RetryPolicy(attempts=3, base_delay=0, sleep=lambda _s: None)
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


def test_create_stamps_the_marker_in_the_same_request() -> None:
    conn = fake_conn()
    conn.network.create_network.side_effect = lambda **a: net("n9", a["name"], a["tags"])
    record = provider(conn).create("network", {"name": "osm_net", "mtu": None}, "src-1")
    assert conn.network.create_network.call_args.kwargs == {
        "name": "osm_net",
        "tags": ["tenantshift-src:src-1"],
    }
    assert record["provenance"] == "src-1"
    conn.network.set_tags.assert_not_called()


def add_tag(res: Any, tag: str) -> Any:
    """The SDK's ``add_tag``: one PUT, then the tag appended to the resource it was given."""
    res.tags = [*res.tags, tag]
    return res


def test_create_without_tag_creation_adds_the_tag_in_one_call() -> None:
    """Create, then ``PUT .../tags/<marker>``: it adds one tag and leaves the others alone, so
    nothing is read before (``set_tags`` would replace the list) or after (two round trips in
    all, where stamping by ``set_tags`` took four)."""
    conn = fake_conn()
    conn.network.extensions.return_value = []
    conn.network.create_network.side_effect = lambda **a: net("n9", a["name"])
    conn.network.add_tag.side_effect = add_tag
    record = provider(conn).create("network", {"name": "osm_net"}, "src-1")
    assert "tags" not in conn.network.create_network.call_args.kwargs
    assert conn.network.add_tag.call_args.args[1] == "tenantshift-src:src-1"
    conn.network.set_tags.assert_not_called()
    conn.network.get_network.assert_not_called()
    assert record["provenance"] == "src-1" and record["id"] == "n9"


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
        tags=a["tags"],
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


def test_a_kind_refusing_tags_in_the_post_keeps_the_others_atomic() -> None:
    conn = fake_conn()
    group = generate_fake_resource(security_group.SecurityGroup, id="g1", name="web", tags=[])
    conn.network.create_security_group.side_effect = [
        http_error(400, "Attribute 'tags' not allowed in POST"),
        group,
    ]
    conn.network.get_security_group.return_value = group
    conn.network.create_network.side_effect = lambda **a: net("n9", a["name"], a.get("tags"))
    cloud = provider(conn)
    cloud.create("security_group", {"name": "web"}, "src-g")
    assert "tags" not in conn.network.create_security_group.call_args.kwargs
    cloud.create("network", {"name": "osm_net"}, "src-n")
    assert conn.network.create_network.call_args.kwargs["tags"] == ["tenantshift-src:src-n"]


def test_only_the_first_create_of_a_kind_tries_the_marker_in_the_request() -> None:
    """Neutron announces ``tag-creation`` yet refuses tags in most POSTs: of many creates
    started at once, one is refused (and tells the others), not every one of them."""
    import threading
    import time

    conn = fake_conn()
    refused, sent = [], []

    def create_network(**attrs: Any) -> Any:
        time.sleep(0.02)  # a round trip: the other workers arrive meanwhile
        if "tags" in attrs:
            refused.append(attrs["name"])
            raise http_error(400, "Attribute 'tags' not allowed in POST")
        sent.append(attrs["name"])
        return net(f"id-{attrs['name']}", attrs["name"])

    conn.network.create_network.side_effect = create_network
    conn.network.add_tag.side_effect = add_tag
    cloud = provider(conn)
    records: list[Any] = []
    workers = [
        threading.Thread(
            target=lambda i=i: records.append(cloud.create("network", {"name": f"n{i}"}, f"s{i}"))
        )
        for i in range(12)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(10)
    assert len(refused) == 1 and len(sent) == 12
    assert sorted(r["provenance"] for r in records) == sorted(f"s{i}" for i in range(12))


def test_find_waits_for_a_create_to_stamp_its_marker() -> None:
    """Without tag-creation a network exists unmarked until tagged: a ``find`` for another
    source's same-named network must not adopt it in that window (issue 8)."""
    import threading
    import time

    conn = fake_conn()
    conn.network.extensions.return_value = []
    state: dict[str, Any] = {"created": False, "tags": []}
    conn.network.networks.side_effect = lambda **q: (
        [] if "tags" in q or not state["created"] else [net("n1", "X", list(state["tags"]))]
    )
    conn.network.get_network.side_effect = lambda _id: net("n1", "X", list(state["tags"]))

    def tag(res: Any, tag: str) -> Any:
        state.update(tags=[*state["tags"], tag])
        return add_tag(res, tag)

    conn.network.add_tag.side_effect = tag
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
