"""The OpenStack provider against the devcloud, as the non-admin ``devcloud-dst`` user.

Every resource made here has a per-run name prefix and is deleted at the end, so the tests can
run while the tenants hold other things (they never reset the devcloud themselves).
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tenantshift.providers import NotFoundError, ProviderError
from tenantshift.providers.openstack import ConflictError, OpenStackProvider
from tenantshift.providers.openstack.records import PROVENANCE_PREFIX
from tenantshift.resources.snapshot import VOLATILE_INFO
from tests.integration.providers import devcloud_clouds, make_provider

pytestmark = pytest.mark.devcloud

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def clouds(request: pytest.FixtureRequest) -> Path:
    return devcloud_clouds(request)


@pytest.fixture(scope="module")
def dst(clouds: Path) -> OpenStackProvider:
    return make_provider(clouds, "devcloud-dst")


@pytest.fixture
def name() -> Callable[[str], str]:
    run = uuid.uuid4().hex[:6]
    return lambda base: f"ts-it-{run}-{base}"


@pytest.fixture
def made(dst: OpenStackProvider) -> Iterator[list[tuple[str, str]]]:
    """(kind, id) of what a test created; deleted last-created first, whatever happened."""
    created: list[tuple[str, str]] = []
    yield created
    for kind, id in reversed(created):
        try:
            dst.delete(kind, id)
        except ProviderError as exc:
            print(f"cleanup: {exc}")


def create(
    dst: OpenStackProvider,
    made: list[tuple[str, str]],
    kind: str,
    params: dict[str, Any],
    source_id: str | None = None,
) -> dict[str, Any]:
    record = dst.create(kind, params, source_id)
    made.append((kind, str(record["id"])))
    return record


def stable(record: dict[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (record or {}).items() if k not in VOLATILE_INFO}


def raw_tags(dst: OpenStackProvider, kind: str, id: str) -> list[str]:
    return list(getattr(dst.conn.network, f"get_{kind}")(id).tags or [])


# -- networks and subnets ---------------------------------------------------------------------


def test_network_and_subnet_lifecycle(
    dst: OpenStackProvider, made: list[tuple[str, str]], name: Callable[[str], str]
) -> None:
    src_id = uuid.uuid4().hex
    assert dst.project_id and dst.get("network", uuid.uuid4().hex) is None  # token, discovery
    before = dst.api_calls
    params = {"name": name("net"), "description": "d1", "tags": ["team-b", "team-a"]}
    net = create(dst, made, "network", params, src_id)
    # Neutron takes no tags in a network's POST: the POST, then one PUT of marker and tags.
    assert dst.api_calls - before == 2
    assert net["provenance"] == src_id and net["tags"] == ["team-a", "team-b"]
    assert sorted(raw_tags(dst, "network", net["id"])) == sorted(
        [f"{PROVENANCE_PREFIX}{src_id}", "team-a", "team-b"]
    )
    assert net["project_id"] == dst.project_id
    # The record comes from the create's own responses (no re-read after tagging): the same as
    # a fresh read but for what changes without the resource changing (revision, timestamps).
    assert stable(dst.get("network", net["id"])) == stable(net)

    # Renamed behind our back: the tag still finds it; the name alone would not.
    dst.update("network", net["id"], {"name": name("renamed"), "mtu": 1400})
    found = dst.find("network", src_id, {"name": name("net")})
    assert found is not None and found["id"] == net["id"] and found["mtu"] == 1400

    # A new marker replaces ours and keeps everybody else's tags.
    dst.conn.network.set_tags(
        dst.conn.network.get_network(net["id"]), ["owner-team", f"{PROVENANCE_PREFIX}{src_id}"]
    )
    updated = dst.update("network", net["id"], {"provenance": "other-source"})
    assert updated["provenance"] == "other-source"
    assert sorted(raw_tags(dst, "network", net["id"])) == [
        "owner-team",
        f"{PROVENANCE_PREFIX}other-source",
    ]
    # The user's tags alone change: ours stays.
    retagged = dst.update("network", net["id"], {"tags": ["x"]})
    assert retagged["tags"] == ["x"] and retagged["provenance"] == "other-source"
    assert sorted(raw_tags(dst, "network", net["id"])) == sorted(
        [f"{PROVENANCE_PREFIX}other-source", "x"]
    )

    sub_params = {
        "network": net["id"],
        "name": name("sub"),
        "ip_version": 4,
        "cidr": "10.61.0.0/24",
        "gateway_ip": "10.61.0.1",
        "is_dhcp_enabled": False,
        "allocation_pools": [
            {"start": "10.61.0.100", "end": "10.61.0.150"},
            {"start": "10.61.0.10", "end": "10.61.0.20"},
        ],
        "host_routes": [{"destination": "10.62.0.0/16", "nexthop": "10.61.0.254"}],
        "dns_nameservers": ["9.9.9.9", "1.1.1.1"],
    }
    sub_src = uuid.uuid4().hex
    sub = create(dst, made, "subnet", sub_params, sub_src)
    assert sub["allocation_pools"] == [
        {"start": "10.61.0.10", "end": "10.61.0.20"},
        {"start": "10.61.0.100", "end": "10.61.0.150"},
    ]
    assert sub["dns_nameservers"] == ["9.9.9.9", "1.1.1.1"]
    assert sub["host_routes"] == sub_params["host_routes"]
    assert sub["network"] == net["id"] and sub["is_dhcp_enabled"] is False

    changed = dst.update("subnet", sub["id"], {"dns_nameservers": ["1.1.1.1"], "host_routes": []})
    assert changed["dns_nameservers"] == ["1.1.1.1"] and changed["host_routes"] == []
    found_sub = dst.find("subnet", sub_src, {"network": net["id"], "name": "whatever"})
    assert found_sub is not None and found_sub["id"] == sub["id"]
    # Another source's copy is never taken for ours, even under the same name.
    assert dst.find("subnet", "another", {"network": net["id"], "name": name("sub")}) is None

    no_gw = create(
        dst,
        made,
        "subnet",
        {
            "network": net["id"],
            "name": name("nogw"),
            "cidr": "10.63.0.0/24",
            "ip_version": 4,
            "gateway_ip": None,
        },
        None,
    )
    assert no_gw["gateway_ip"] is None and no_gw["provenance"] is None
    # Without a marker it is found by its natural key (network + name).
    found_key = dst.find("subnet", "src-x", {"network": net["id"], "name": name("nogw")})
    assert found_key is not None and found_key["id"] == no_gw["id"]

    for kind, id in (("subnet", no_gw["id"]), ("subnet", sub["id"]), ("network", net["id"])):
        dst.delete(kind, id)
        assert dst.get(kind, id) is None
        dst.delete(kind, id)  # already gone: fine


def test_cloud_errors_name_the_call(
    dst: OpenStackProvider, made: list[tuple[str, str]], name: Callable[[str], str]
) -> None:
    net = create(dst, made, "network", {"name": name("bad")}, None)
    with pytest.raises(ProviderError) as info:
        dst.create(
            "subnet",
            {"network": net["id"], "name": "x", "cidr": "10.0.0.0/33", "ip_version": 4},
            None,
        )
    assert "network.create_subnet" in str(info.value) and "HTTP 400" in str(info.value)
    assert info.value.__cause__ is None


# -- routers and interfaces -------------------------------------------------------------------


def test_router_gateway_interfaces_and_routes(
    dst: OpenStackProvider, made: list[tuple[str, str]], name: Callable[[str], str]
) -> None:
    snap = dst.snapshot()
    assert snap.externals["external_network"], "the devcloud has no external network"
    public = snap.externals["external_network"][0]

    net = create(dst, made, "network", {"name": name("rnet")}, uuid.uuid4().hex)
    sub = create(
        dst,
        made,
        "subnet",
        {"network": net["id"], "name": name("rsub"), "cidr": "10.71.0.0/24", "ip_version": 4},
        None,
    )
    rtr_src = uuid.uuid4().hex
    rtr = create(dst, made, "router", {"name": name("rtr"), "external_network": public}, rtr_src)
    assert rtr["external_network"] == public and rtr["provenance"] == rtr_src

    iface = create(dst, made, "router_interface", {"router": rtr["id"], "subnet": sub["id"]})
    assert iface["id"] == f"{rtr['id']}:{sub['id']}"
    # The create's record is read from add_router_interface's answer (no listing): the
    # router, subnet, port and id; the address the cloud chose (None asked) and the port's
    # info come with a read.
    got = dst.get("router_interface", iface["id"])
    assert got is not None and got["ip_address"] == "10.71.0.1"
    assert {k: got[k] for k in iface if k != "ip_address"} == {
        k: v for k, v in iface.items() if k != "ip_address"
    }
    assert dst.find("router_interface", None, {"router": rtr["id"], "subnet": sub["id"]}) == got
    # A second run that re-creates it gets the same interface, not an error.
    again = dst.create("router_interface", {"router": rtr["id"], "subnet": sub["id"]}, None)
    assert again["id"] == iface["id"]

    routes = [{"destination": "10.99.0.0/24", "nexthop": "10.71.0.50"}]
    assert dst.update("router", rtr["id"], {"routes": routes})["routes"] == routes
    cleared = dst.update("router", rtr["id"], {"routes": [], "external_network": None})
    assert cleared["routes"] == [] and cleared["external_network"] is None

    with pytest.raises(NotFoundError, match="no-such-external"):
        dst.update("router", rtr["id"], {"external_network": "no-such-external"})

    dst.delete("router_interface", iface["id"])
    assert dst.get("router_interface", iface["id"]) is None
    dst.delete("router_interface", iface["id"])
    dst.delete("router", rtr["id"])
    assert dst.get("router", rtr["id"]) is None


# -- security groups and rules ----------------------------------------------------------------


def test_security_groups_and_rules(
    dst: OpenStackProvider, made: list[tuple[str, str]], name: Callable[[str], str]
) -> None:
    grp_src = uuid.uuid4().hex
    grp = create(dst, made, "security_group", {"name": name("web"), "description": "w"}, grp_src)
    assert grp["provenance"] == grp_src

    # Neutron gives a new group its two egress rules: find sees them by key.
    for ethertype in ("IPv4", "IPv6"):
        auto = dst.find(
            "security_group_rule",
            None,
            {"security_group": grp["id"], "direction": "egress", "ethertype": ethertype},
        )
        assert auto is not None

    ssh = {
        "security_group": grp["id"],
        "direction": "ingress",
        "ethertype": "IPv4",
        "protocol": "tcp",
        "port_range_min": 22,
        "port_range_max": 22,
        "remote_ip_prefix": "0.0.0.0/0",
        "remote_group": None,
        "description": "ssh",
    }
    rule = create(dst, made, "security_group_rule", ssh)
    assert {k: rule[k] for k in ssh} == ssh
    # Idempotent: the same rule again is the existing rule.
    assert dst.create("security_group_rule", ssh, None)["id"] == rule["id"]
    # Written as a number, read as the name: both clouds agree on "tcp".
    numeric = create(
        dst,
        made,
        "security_group_rule",
        {**ssh, "protocol": "6", "port_range_min": 80, "port_range_max": 80},
    )
    assert numeric["protocol"] == "tcp"
    icmp6 = create(
        dst,
        made,
        "security_group_rule",
        {
            "security_group": grp["id"],
            "direction": "ingress",
            "ethertype": "IPv6",
            "protocol": "ipv6-icmp",
            "remote_group": grp["id"],
        },
    )
    assert icmp6["protocol"] == "ipv6-icmp" and icmp6["remote_group"] == grp["id"]

    with pytest.raises(ProviderError, match="replaced"):
        dst.update("security_group_rule", rule["id"], {"description": "no"})

    dst.delete("security_group_rule", rule["id"])
    assert dst.get("security_group_rule", rule["id"]) is None
    dst.delete("security_group_rule", rule["id"])
    dst.update("security_group", grp["id"], {"description": "w2"})
    assert dst.get("security_group", grp["id"])["description"] == "w2"  # type: ignore[index]
    dst.delete("security_group", grp["id"])
    assert dst.get("security_group", grp["id"]) is None


# -- keypairs ---------------------------------------------------------------------------------


def public_key(tmp_path: Path, stem: str) -> str:
    key = tmp_path / stem
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", stem, "-f", str(key)], check=True
    )
    return key.with_suffix(".pub").read_text().strip()


def test_keypair_lifecycle(
    dst: OpenStackProvider, made: list[tuple[str, str]], name: Callable[[str], str], tmp_path: Path
) -> None:
    key = public_key(tmp_path, "a")
    params = {"name": name("kp"), "public_key": key, "type": "ssh"}
    kp = create(dst, made, "keypair", params)
    assert kp["id"] == params["name"] and kp["public_key"] == key and kp["type"] == "ssh"
    assert dst.get("keypair", kp["id"]) is not None
    assert dst.find("keypair", None, params)["id"] == kp["id"]  # type: ignore[index]
    assert dst.create("keypair", params, None)["id"] == kp["id"]
    with pytest.raises(ConflictError, match="another public key"):
        dst.create("keypair", {**params, "public_key": public_key(tmp_path, "b")}, None)
    dst.delete("keypair", kp["id"])
    assert dst.get("keypair", kp["id"]) is None
    dst.delete("keypair", kp["id"])


# -- snapshots --------------------------------------------------------------------------------


def test_snapshot_costs_calls_per_kind_not_per_resource(
    dst: OpenStackProvider, made: list[tuple[str, str]], name: Callable[[str], str]
) -> None:
    dst.snapshot()  # token and endpoint discovery out of the way
    before = dst.snapshot()
    for i in range(4):
        net = create(dst, made, "network", {"name": name(f"n{i}")}, uuid.uuid4().hex)
        create(
            dst,
            made,
            "subnet",
            {"network": net["id"], "name": "s", "ip_version": 4, "cidr": f"10.8{i}.0.0/24"},
            None,
        )
        create(dst, made, "security_group", {"name": name(f"g{i}")}, None)
    after = dst.snapshot()
    assert len(after.resources) >= len(before.resources) + 4 * 5  # + 2 egress rules per group
    # One call per kind (11; images two: Glance lists hidden images only when asked for them
    # alone), external networks, flavors, 3 quota reads: never per resource.
    assert after.api_calls == before.api_calls <= 17
    for i in range(4):
        assert f"network.{name(f'n{i}')}" in after.resources
        assert f"subnet.{name(f'n{i}')}/s" in after.resources
        assert f"security_group_rule.{name(f'g{i}')}/egress/IPv6/any/any/::/0" in after.resources
    assert "security_group.default" in after.resources
    assert after.warnings == []


#: seed.json section -> the kind whose resources it names (name -> id).
SEED_SECTIONS = {
    "networks": "network",
    "subnets": "subnet",
    "routers": "router",
    "security_groups": "security_group",
}


def test_snapshot_of_the_seeded_source(clouds: Path) -> None:
    seed_file = clouds.parent / "seed.json"
    assert seed_file.exists(), "the devcloud fixture seeds src-tenant"
    seed = json.loads(seed_file.read_text())
    src = make_provider(clouds, "devcloud-src")
    src.snapshot()
    snap = src.snapshot()
    assert snap.project == seed["project_id"]
    by_id = {r.id: r for r in snap.resources.values()}
    expected = 0
    for section, kind in SEED_SECTIONS.items():
        for seed_name, seed_id in seed.get(section, {}).items():
            res = by_id.get(seed_id)
            assert res is not None, f"{kind} {seed_name} ({seed_id}) missing from the snapshot"
            assert res.kind == kind and res.params["name"] == seed_name
            # Addresses: the name for top-level kinds, "<network>/<name>" for subnets.
            assert res.key == seed_name or res.key.endswith(f"/{seed_name}")
            expected += 1
    assert expected >= 5
    assert f"keypair.{seed['keypair']['name']}" in snap.resources
    assert snap.resources[f"keypair.{seed['keypair']['name']}"].params["public_key"] == (
        seed["keypair"]["public_key"].strip()
    )
    # Every router interface and rule resolved to addresses inside the project.
    assert snap.of_kind("router_interface") and snap.of_kind("security_group_rule")
    assert not [w for w in snap.warnings if "left out" in w], snap.warnings
    assert snap.externals["external_network"]
    # O(kinds): 11 lists (one per kind, two for images: visible and hidden) + external
    # networks + flavors + 3 quota reads (Neutron, Nova, Cinder), whatever the tenant holds.
    assert snap.api_calls == 17
