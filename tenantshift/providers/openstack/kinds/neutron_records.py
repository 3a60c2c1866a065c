"""Neutron SDK resources -> records (pure functions: no API calls).

The normalization here is what makes the copy of a resource read back equal to its source in
another cloud (another Neutron version, another driver): lowercase protocol names, numeric
protocols by name, sorted unordered lists, empty lists instead of ``None``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from tenantshift.providers.openstack.records import (
    labels_in_tags,
    markers_in_tags,
    pairs,
    provenance_fields,
)
from tenantshift.resources import Record

#: Neutron's own protocol table (neutron_lib.constants.IP_PROTOCOL_MAP), reversed: a rule
#: written as "6" in one cloud and "tcp" in another is the same rule, and Neutron itself
#: refuses the second as a duplicate, so both read as "tcp".
_PROTOCOL_BY_NUMBER = {
    "1": "icmp",
    "2": "igmp",
    "4": "ipip",
    "6": "tcp",
    "8": "egp",
    "17": "udp",
    "33": "dccp",
    "41": "ipv6-encap",
    "43": "ipv6-route",
    "44": "ipv6-frag",
    "46": "rsvp",
    "47": "gre",
    "50": "esp",
    "51": "ah",
    "58": "ipv6-icmp",
    "59": "ipv6-nonxt",
    "60": "ipv6-opts",
    "89": "ospf",
    "103": "pim",
    "112": "vrrp",
    "113": "pgm",
    "132": "sctp",
    "136": "udplite",
}
#: Spellings of ICMP for IPv6 rules that Neutron treats as one protocol.
_ICMP6_ALIASES = frozenset({"icmp", "icmpv6", "ipv6-icmp"})


def normalize_protocol(protocol: Any, ethertype: str | None) -> str | None:
    if protocol is None:
        return None
    value = str(protocol).strip().lower()
    if value in ("", "any"):
        return None
    value = _PROTOCOL_BY_NUMBER.get(value, value)
    if ethertype == "IPv6" and value in _ICMP6_ALIASES:
        return "ipv6-icmp"
    return value


def info(res: Any, *extra: str) -> dict[str, Any]:
    """Info-only keys every Neutron record carries (never compared)."""
    out = {
        "id": res.id,
        "project_id": getattr(res, "project_id", None),
        "created_at": getattr(res, "created_at", None),
        "updated_at": getattr(res, "updated_at", None),
        "revision_number": getattr(res, "revision_number", None),
    }
    for name in extra:
        out[name] = getattr(res, name, None)
    return out


def _marker(res: Any) -> dict[str, Any]:
    """The user's tags as ``tags``, ours as ``provenance``: copies compare their tags without
    our marker, and the marker never migrates as a tag."""
    return {"tags": labels_in_tags(res.tags), **provenance_fields(markers_in_tags(res.tags))}


def network_record(res: Any) -> Record:
    return {
        "name": res.name,
        "description": res.description or "",
        "is_admin_state_up": res.is_admin_state_up,
        "is_port_security_enabled": res.is_port_security_enabled,
        "mtu": res.mtu,
        **_marker(res),
        **info(res, "status", "is_shared", "is_router_external"),
    }


def subnet_record(res: Any) -> Record:
    return {
        "network": res.network_id,
        "name": res.name,
        "description": res.description or "",
        "ip_version": res.ip_version,
        "cidr": res.cidr,
        "gateway_ip": res.gateway_ip,
        "allocation_pools": pairs(res.allocation_pools, "start", "end"),
        "host_routes": pairs(res.host_routes, "destination", "nexthop"),
        "dns_nameservers": list(res.dns_nameservers or []),
        "is_dhcp_enabled": res.is_dhcp_enabled,
        "service_types": sorted(getattr(res, "service_types", None) or []),
        "ipv6_ra_mode": res.ipv6_ra_mode,
        "ipv6_address_mode": res.ipv6_address_mode,
        **_marker(res),
        **info(res, "subnet_pool_id"),
    }


def router_record(res: Any, external_names: Mapping[str, str]) -> Record:
    """``external_names``: external network id -> name (the record holds the name)."""
    gateway = res.external_gateway_info or {}
    network_id = gateway.get("network_id")
    # A gateway on a network this project cannot see keeps its id: the plan then reports it
    # as a missing external network instead of silently dropping the gateway.
    external = external_names.get(network_id, network_id) if network_id else None
    return {
        "name": res.name,
        "description": res.description or "",
        "is_admin_state_up": res.is_admin_state_up,
        "external_network": external,
        "routes": pairs(res.routes, "destination", "nexthop"),
        **_marker(res),
        "external_network_id": network_id,
        **info(res, "status"),
    }


def security_group_record(res: Any) -> Record:
    stateful = getattr(res, "stateful", None)
    return {
        "name": res.name,
        "description": res.description or "",
        # Absent where the extension is not loaded: every group is then stateful.
        "stateful": True if stateful is None else bool(stateful),
        **_marker(res),
        **info(res),
    }


def security_group_rule_record(res: Any) -> Record:
    return {
        "security_group": res.security_group_id,
        "direction": res.direction,
        "ethertype": res.ether_type,
        "protocol": normalize_protocol(res.protocol, res.ether_type),
        "port_range_min": res.port_range_min,
        "port_range_max": res.port_range_max,
        # Kept as the API returns it: "0.0.0.0/0" and None both mean "anywhere" to Neutron, but
        # a cloud returns whichever it was given, so the same input reads back the same.
        "remote_ip_prefix": res.remote_ip_prefix,
        "remote_group": res.remote_group_id,
        "description": res.description or "",
        "provenance": None,  # Neutron rules take no tags
        **info(res, "remote_address_group_id"),
    }


def derived_from_mac(ip: str | None, mac: str | None) -> bool:
    """Whether ``ip`` is an IPv6 SLAAC address of the port: its interface id is the EUI-64 of
    ``mac``. Such an address is not chosen but derived (Neutron refuses one given explicitly on
    an automatic-address subnet), so the record holds no address for it: a copy with another
    MAC derives another address and is still the same port."""
    if not ip or not mac:
        return False
    try:
        address = ipaddress.ip_address(ip)
        octets = bytearray(int(part, 16) for part in mac.split(":"))
    except ValueError:
        return False
    if address.version != 6 or len(octets) != 6:
        return False
    octets[0] ^= 0x02  # the universal/local bit flips in a modified EUI-64
    return address.packed[8:] == bytes(octets[:3]) + b"\xff\xfe" + bytes(octets[3:])


def port_record(res: Any) -> Record:
    """A server's port. ``device_id``/``device_owner`` are info (the server migrates the
    attachment, not the port); an allowed address pair that names the port's own MAC reads
    as no MAC, which is how Neutron fills in one left out, so a copy with another MAC (no
    ``preserve_macs``) reads back equal."""
    own_mac = res.mac_address
    address_pairs = [
        {
            "ip_address": pair.get("ip_address"),
            "mac_address": None if pair.get("mac_address") == own_mac else pair.get("mac_address"),
        }
        for pair in res.allowed_address_pairs or ()
    ]
    return {
        "network": res.network_id,
        "name": res.name or "",
        "description": res.description or "",
        "fixed_ips": pairs(
            [
                {
                    "subnet": ip.get("subnet_id"),
                    "ip_address": None
                    if derived_from_mac(ip.get("ip_address"), own_mac)
                    else ip.get("ip_address"),
                }
                for ip in res.fixed_ips or ()
            ],
            "subnet",
            "ip_address",
        ),
        "mac_address": own_mac,
        "security_groups": sorted(res.security_group_ids or []),
        "allowed_address_pairs": pairs(address_pairs, "ip_address", "mac_address"),
        "is_port_security_enabled": res.is_port_security_enabled,
        "is_admin_state_up": res.is_admin_state_up,
        "binding_vnic_type": getattr(res, "binding_vnic_type", None),
        **_marker(res),
        **info(res, "status", "device_id", "device_owner"),
    }
