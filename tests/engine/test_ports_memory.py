"""Ports end to end on the memory provider, through ``make_plan`` and the manifest: fixed IPs
and security groups follow, the MAC only with ``workloads.preserve_macs``."""

from __future__ import annotations

from pathlib import Path

import pytest

from tenantshift.engine.apply import apply_plan
from tenantshift.engine.planning import make_plan
from tenantshift.manifest import Manifest
from tenantshift.plans import Action
from tenantshift.providers.memory import MemoryProvider

SOURCE_MAC = "fa:16:3e:12:34:56"


def manifest(**workloads: bool) -> Manifest:
    return Manifest.model_validate(
        {
            "version": 1,
            "source": {"cloud": "src"},
            "destination": {"cloud": "dst"},
            "select": {"server": {"include": []}},
            "workloads": workloads,
        }
    )


def build_source() -> MemoryProvider:
    cloud = MemoryProvider("source")
    net = cloud.create("network", {"name": "app-net"}, None)
    sub = cloud.create(
        "subnet", {"network": net["id"], "name": "app-v4", "cidr": "10.10.0.0/24"}, None
    )
    web = cloud.create("security_group", {"name": "web"}, None)
    for name, ip in (("vm-multinic-app", "10.10.0.60"), ("", "10.10.0.61")):
        cloud.create(
            "port",
            {
                "network": net["id"],
                "name": name,
                "fixed_ips": [{"subnet": sub["id"], "ip_address": ip}],
                "mac_address": SOURCE_MAC if name else None,
                "security_groups": [web["id"]],
                "allowed_address_pairs": [{"ip_address": "10.10.0.200", "mac_address": None}],
            },
            None,
        )
    return cloud


@pytest.mark.parametrize("preserve", [False, True])
def test_ports_migrate_and_converge(tmp_path: Path, preserve: bool) -> None:
    source, destination = build_source(), MemoryProvider("destination")
    m = manifest(preserve_macs=preserve)
    plan = make_plan(m, source, destination).plan
    ports = {c.address: c for c in plan.changes if c.kind == "port"}
    assert set(ports) == {"port.app-net/vm-multinic-app", "port.app-net/10.10.0.61"}
    assert all(c.action is Action.CREATE for c in ports.values())
    assert not any("preserve_macs" in w for w in plan.warnings)  # it acts now

    assert apply_plan(plan, destination, tmp_path).ok

    second = make_plan(m, source, destination).plan
    assert not second.has_changes, [c.address for c in second.changes if c.action.value != "no-op"]
    have = destination.snapshot().resources["port.app-net/vm-multinic-app"].params
    assert have["fixed_ips"] == [{"ip_address": "10.10.0.60", "subnet": "subnet.app-net/app-v4"}]
    assert have["security_groups"] == ["security_group.web"]
    assert (have["mac_address"] == SOURCE_MAC) is preserve


def test_switching_preserve_macs_on_later_replaces_ports_with_another_mac(tmp_path: Path) -> None:
    source, destination = build_source(), MemoryProvider("destination")
    assert apply_plan(make_plan(manifest(), source, destination).plan, destination, tmp_path).ok

    plan = make_plan(manifest(preserve_macs=True), source, destination).plan

    named = plan.by_address()["port.app-net/vm-multinic-app"]
    assert named.action is Action.REPLACE
    assert [f.field for f in named.fields] == ["mac_address"]
