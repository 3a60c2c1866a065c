"""Neutron ports a migration owns: the ports servers use, as data (not routers', DHCP's, ...).

A server's ports migrate before the server so it can boot on them with the same addresses and
security groups. Which ports are "ours" is the provider's business (device owner empty or
``compute:*``); the kind only says what a port is.
"""

from collections.abc import Mapping
from typing import Any

from tenantshift.resources.base import REGISTRY, Field, KeyResolver, Kind


def _port_key(p: Mapping[str, Any], key_of: KeyResolver) -> str:
    """``<network key>/<name>``; an unnamed port (most are) by its first fixed IP instead, so
    ``app-net/10.10.0.60`` rather than a pile of ``~2``, ``~3`` in creation order."""
    label = p.get("name") or next(
        (ip.get("ip_address") for ip in p.get("fixed_ips") or () if ip.get("ip_address")), "-"
    )
    return f"{key_of(p['network'])}/{label}"


PORT = REGISTRY.register(
    Kind(
        name="port",
        doc="A port of a server (or a free one), keyed by its network's key and its name.",
        fields=(
            Field("network", ref="network", replace=True),
            Field("name", is_name=True, default=""),
            Field("description", default=""),
            # The addresses are the port: a new address is a new port (the server keeps its own).
            Field(
                "fixed_ips",
                ref="subnet",
                many=True,
                ref_key="subnet",
                unordered=True,
                replace=True,
                default=[],
            ),
            # Carried over only with ``workloads.preserve_macs``; otherwise Neutron picks one.
            Field("mac_address", replace=True, computed=True, carried_if="preserve_macs"),
            Field("security_groups", ref="security_group", many=True, unordered=True, default=[]),
            Field("allowed_address_pairs", unordered=True, default=[]),
            Field("is_port_security_enabled", default=True),
            Field("is_admin_state_up", default=True),
            # ``normal`` unless the server uses SR-IOV or a smart NIC (``direct``, ``macvtap``,
            # ...): a member may set it; binding it needs that hardware in the destination.
            Field("binding_vnic_type", default="normal"),
            # The user's Neutron tags (our marker is ``provenance``, never among them).
            Field("tags", default=[], unordered=True),
        ),
        key=_port_key,
    )
)
