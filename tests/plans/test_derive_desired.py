"""derive_desired with real manifests: selection, cascade of unselected parents, maps."""

from __future__ import annotations

from typing import Any

from tenantshift.manifest import Manifest
from tenantshift.plans import Action, diff
from tenantshift.resources import Snapshot, derive_desired, normalize

SOURCE_RECORDS: dict[str, list[dict[str, Any]]] = {
    "network": [
        {"id": "n-app", "name": "app-net"},
        {"id": "n-db", "name": "db-net"},
        {"id": "n-tmp", "name": "tmp-net"},
    ],
    "subnet": [
        {"id": "s-app", "network": "n-app", "name": "app-sub", "cidr": "10.0.1.0/24"},
        {"id": "s-db", "network": "n-db", "name": "db-sub", "cidr": "10.0.2.0/24"},
    ],
    "router": [{"id": "r-edge", "name": "edge", "external_network": "ext-old"}],
    "router_interface": [
        {"id": "p-app", "router": "r-edge", "subnet": "s-app"},
        {"id": "p-db", "router": "r-edge", "subnet": "s-db"},
    ],
    "security_group": [
        {"id": "g-default", "name": "default"},
        {"id": "g-web", "name": "web"},
    ],
    "security_group_rule": [
        {"id": "sr-1", "security_group": "g-web", "direction": "ingress", "protocol": "tcp",
         "port_range_min": 443, "port_range_max": 443},
        {"id": "sr-2", "security_group": "g-default", "direction": "ingress",
         "remote_group": "g-default"},
    ],
    "keypair": [{"id": "ops", "name": "ops", "public_key": "ssh-ed25519 AAAA ops"}],
}  # fmt: skip


def source() -> Snapshot:
    return normalize("src", SOURCE_RECORDS, externals={"external_network": ["ext-old"]})


def manifest(**sections: Any) -> Manifest:
    return Manifest.model_validate(
        {"version": 1, "source": {"cloud": "a"}, "destination": {"cloud": "b"}, **sections}
    )


def derive(m: Manifest) -> Snapshot:
    return derive_desired(source(), m.select, m.map)


def test_everything_by_default_with_source_ids() -> None:
    desired = derive(manifest())
    assert set(desired.resources) == set(source().resources)
    net = desired.resources["network.app-net"]
    assert net.info == {"source_id": "n-app", "source_address": "network.app-net"}
    assert desired.resources["subnet.app-net/app-sub"].params["network"] == "network.app-net"
    assert desired.warnings == []


def test_include_drops_children_of_unselected_parents() -> None:
    desired = derive(manifest(select={"network": {"include": ["app-.*"]}}))
    assert "network.app-net" in desired.resources
    assert "network.db-net" not in desired.resources
    # db-sub and its router interface cannot migrate without db-net: gone, with a warning each.
    assert "subnet.db-net/db-sub" not in desired.resources
    assert "router_interface.edge/db-net/db-sub" not in desired.resources
    assert "router_interface.edge/app-net/app-sub" in desired.resources
    assert desired.warnings == [
        "subnet subnet.db-net/db-sub: not migrated, references outside: network=network.db-net",
        "router_interface router_interface.edge/db-net/db-sub: not migrated, "
        "references outside: subnet=subnet.db-net/db-sub",
    ]


def test_include_is_anchored() -> None:
    desired = derive(manifest(select={"network": {"include": ["app"]}}))
    assert not desired.of_kind("network")


def test_exclude_applies_after_include() -> None:
    select = {
        "network": {"include": [".*-net"], "exclude": ["tmp-.*"]},
        "keypair": {"exclude": [".*"]},
    }
    desired = derive(manifest(select=select))
    assert {r.address for r in desired.of_kind("network")} == {"network.app-net", "network.db-net"}
    assert desired.of_kind("keypair") == []
    assert len(desired.of_kind("subnet")) == 2


def test_excluding_a_group_drops_its_rules() -> None:
    desired = derive(manifest(select={"security_group": {"exclude": ["web"]}}))
    assert [r.key for r in desired.of_kind("security_group")] == ["default"]
    assert [r.key for r in desired.of_kind("security_group_rule")] == [
        "default/ingress/IPv4/any/any/group:default"
    ]


def test_names_template_renames_and_rekeys_but_spares_builtins() -> None:
    desired = derive(manifest(map={"names": "mig-{name}"}))
    assert desired.resources["network.mig-app-net"].params["name"] == "mig-app-net"
    sub = desired.resources["subnet.mig-app-net/mig-app-sub"]
    assert sub.params["network"] == "network.mig-app-net"
    assert "router_interface.mig-edge/mig-app-net/mig-app-sub" in desired.resources
    assert "security_group.mig-web" in desired.resources
    # default is the cloud's own group: its name is never templated
    assert "security_group.default" in desired.resources
    assert "security_group_rule.default/ingress/IPv4/any/any/group:default" in desired.resources
    assert "security_group_rule.mig-web/ingress/IPv4/tcp/443/0.0.0.0/0" in desired.resources


def test_names_template_renames_keypairs_and_the_servers_that_use_them() -> None:
    """Issue 12: a keypair is renamed like the rest, and a server's key_name follows it."""
    records = {
        **SOURCE_RECORDS,
        "server": [{"id": "vm-1", "name": "vm", "flavor": "m1", "keypair": "ops", "ports": []}],
    }
    m = manifest(map={"names": "mig-{name}"})
    desired = derive_desired(normalize("src", records), m.select, m.map)
    assert desired.resources["keypair.mig-ops"].params["name"] == "mig-ops"
    assert "keypair.ops" not in desired.resources
    assert desired.resources["server.mig-vm"].params["keypair"] == "keypair.mig-ops"


def test_names_template_with_kind() -> None:
    desired = derive(manifest(map={"names": "{kind}-{name}"}))
    assert "network.network-app-net" in desired.resources
    assert "router.router-edge" in desired.resources


def test_external_networks_map() -> None:
    desired = derive(manifest(map={"external_networks": {"ext-old": "public"}}))
    assert desired.resources["router.edge"].params["external_network"] == "public"
    unmapped = derive(manifest(map={"external_networks": {"other": "public"}}))
    assert unmapped.resources["router.edge"].params["external_network"] == "ext-old"


def test_unmapped_external_network_blocks_router_in_the_plan() -> None:
    """End to end: derive (no map) then diff against a destination that only has 'public'."""
    desired = derive(manifest(select={"network": {"exclude": [".*"]}}))
    actual = normalize("dst", {}, externals={"external_network": ["public"]})
    router = {c.address: c for c in diff(desired, actual)}["router.edge"]
    assert router.action is Action.CREATE
    assert router.blocked
    assert "map.external_networks" in router.detail
    mapped = derive(
        manifest(
            select={"network": {"exclude": [".*"]}},
            map={"external_networks": {"ext-old": "public"}},
        )
    )
    router = {c.address: c for c in diff(mapped, actual)}["router.edge"]
    assert not router.blocked


def test_volumes_held_by_a_migration_in_progress_are_not_migrated_on_their_own() -> None:
    """A data volume detached by an unfinished server migration, the temporary volume of a
    snapshot, a volume on a workload server or on the conversion host: none is a volume to
    migrate by itself; a plain detached one is."""
    snap = normalize(
        "src",
        {
            "volume": [
                {"id": "v-free", "name": "archive", "size": 1},
                {"id": "v-held", "name": "data", "size": 2},
                {"id": "v-tmp", "name": "tenantshift-boot-x", "size": 1, "temporary": True},
                {"id": "v-on-vm", "name": "boot", "size": 1, "attached_to": ["vm-1"]},
                {"id": "v-on-host", "name": "moving", "size": 1, "attached_to": ["host-1"]},
            ]
        },
    )
    desired = derive_desired(
        snap,
        None,
        None,
        conversion_hosts=frozenset({"host-1"}),
        held={"v-held": "detached from its server by the unfinished migration of server.vm"},
    )
    assert sorted(desired.resources) == ["volume.archive", "volume.moving"]
    notes = "\n".join(desired.warnings)
    assert "volume.data: not migrated on its own: detached from its server" in notes
    assert "volume.tenantshift-boot-x: not migrated on its own: a temporary volume" in notes
    assert "volume.boot: not migrated on its own: attached to server vm-1" in notes
