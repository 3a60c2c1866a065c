"""Plans shared by the renderer, schema and plan-file tests, made by the real diff."""

from __future__ import annotations

from typing import Any

from tenantshift.plans import Fingerprint, Plan, diff
from tenantshift.resources import derive_desired, normalize

SOURCE: dict[str, list[dict[str, Any]]] = {
    "network": [
        {"id": "n-app", "name": "app", "description": "application tier"},
        {"id": "n-new", "name": "new", "mtu": 1450},
    ],
    "subnet": [
        {"id": "s-app", "network": "n-app", "name": "app-sub", "cidr": "10.1.0.0/24",
         "gateway_ip": "10.1.0.1", "dns_nameservers": ["1.1.1.1", "8.8.8.8"]},
        {"id": "s-new", "network": "n-new", "name": "new-sub", "cidr": "10.9.0.0/24"},
    ],
    "router": [
        {"id": "r-edge", "name": "edge", "external_network": "public"},
        {"id": "r-far", "name": "far", "external_network": "ext-old"},
    ],
    "router_interface": [{"id": "p-1", "router": "r-edge", "subnet": "s-app"}],
    "security_group": [{"id": "g-web", "name": "web"}, {"id": "g-api", "name": "api"}],
    "security_group_rule": [
        {"id": "sr-a4", "security_group": "g-api", "direction": "egress", "ethertype": "IPv4"},
        {"id": "sr-a6", "security_group": "g-api", "direction": "egress", "ethertype": "IPv6"},
        {"id": "sr-1", "security_group": "g-web", "direction": "ingress", "protocol": "tcp",
         "port_range_min": 443, "port_range_max": 443, "remote_ip_prefix": "0.0.0.0/0"},
        {"id": "sr-2", "security_group": "g-web", "direction": "egress"},
    ],
    "keypair": [{"id": "ops", "name": "ops", "public_key": "ssh-ed25519 AAAAnew ops"}],
}  # fmt: skip

DESTINATION: dict[str, list[dict[str, Any]]] = {
    "network": [{"id": "d-app", "name": "app", "description": "", "provenance": "n-app"}],
    "subnet": [
        {"id": "d-sub", "network": "d-app", "name": "app-sub", "cidr": "10.0.0.0/24",
         "gateway_ip": "10.0.0.1", "dns_nameservers": ["8.8.8.8"], "provenance": "s-app"},
    ],
    "router": [{"id": "d-edge", "name": "edge", "external_network": "public",
                "provenance": "r-edge"}],
    "router_interface": [{"id": "d-p1", "router": "d-edge", "subnet": "d-sub"}],
    "security_group": [{"id": "d-web", "name": "web", "provenance": "g-web"}],
    "security_group_rule": [
        {"id": "d-r1", "security_group": "d-web", "direction": "ingress", "protocol": "tcp",
         "port_range_min": 443, "port_range_max": 443, "remote_ip_prefix": "0.0.0.0/0"},
        {"id": "d-r2", "security_group": "d-web", "direction": "egress"},
        {"id": "d-r3", "security_group": "d-web", "direction": "ingress", "protocol": "tcp",
         "port_range_min": 22, "port_range_max": 22, "remote_ip_prefix": "0.0.0.0/0"},
    ],
    "keypair": [{"id": "ops", "name": "ops", "public_key": "ssh-ed25519 AAAAold ops"}],
}  # fmt: skip


def make_plan(
    source: dict[str, list[dict[str, Any]]] = SOURCE,
    destination: dict[str, list[dict[str, Any]]] = DESTINATION,
    *,
    warnings: tuple[str, ...] = (),
) -> Plan:
    src = normalize("src", source)
    dst = normalize("dst", destination, externals={"external_network": ["public"]})
    desired = derive_desired(src, None, None)
    return Plan(
        tool_version="0.1.0",
        created_at="2024-01-01T00:00:00+00:00",
        manifest_path="/work/migration.yaml",
        manifest_hash="0" * 64,
        source=Fingerprint(digest=src.fingerprint(), resources=src.resource_digests()),
        destination=Fingerprint(digest=dst.fingerprint(), resources=dst.resource_digests()),
        changes=diff(desired, dst),
        warnings=[*warnings, *src.warnings, *desired.warnings, *dst.warnings],
    )


def full_plan() -> Plan:
    """create, update, replace (forced and cascaded), delete, blocked, warnings, reasoned no-ops."""
    return make_plan(warnings=("2 network resources share the key 'x'; told apart as x, x~2",))


def no_changes_plan() -> Plan:
    """The destination already matches: only no-ops."""
    src = {"network": [{"id": "n-app", "name": "app"}]}
    dst = {"network": [{"id": "d-app", "name": "app", "provenance": "n-app"}]}
    return make_plan(src, dst)
