"""SDK resources -> records (pure functions: no API calls), and records -> SDK request bodies.

A record carries the kind's declared field names; the normalization here is what makes the
copy of a resource read back equal to its source in another cloud (another Neutron version,
another driver): lowercase protocol names, numeric protocols by name, sorted unordered lists,
empty lists instead of ``None``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from tenantshift.resources import Record

#: Our Neutron tag: ``tenantshift-src:<marker>``, the marker as tenantshift.resources.marker makes
#: it (older versions stamped the bare source id). The one place the prefix is spelled.
PROVENANCE_PREFIX = "tenantshift-src:"

#: Ports that are a router's leg on a subnet (legacy, DVR and HA routers).
ROUTER_INTERFACE_OWNERS = (
    "network:router_interface",
    "network:router_interface_distributed",
    "network:ha_router_replicated_interface",
)

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


def provenance_tag(source_id: str) -> str:
    return f"{PROVENANCE_PREFIX}{source_id}"


def provenance_of(tags: Iterable[str] | None) -> str | None:
    """The source id stamped on a resource; the lowest one wins if somebody stamped several."""
    prefix = PROVENANCE_PREFIX
    found = sorted(t[len(prefix) :] for t in tags or () if t.startswith(prefix))
    return found[0] if found else None


def retag(tags: Iterable[str] | None, source_id: str | None) -> list[str]:
    """Tags with our marker replaced (or removed when ``source_id`` is None); others kept."""
    kept = [t for t in tags or () if not t.startswith(PROVENANCE_PREFIX)]
    if source_id is not None:
        kept.append(provenance_tag(source_id))
    return sorted(kept)


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


def _pairs(items: Any, first: str, second: str) -> list[dict[str, Any]]:
    """``[{start, end}]``-style lists: only the two keys, sorted, never ``None``."""
    out = [{first: item.get(first), second: item.get(second)} for item in items or ()]
    return sorted(out, key=lambda d: (str(d[first]), str(d[second])))


def _info(res: Any, *extra: str) -> dict[str, Any]:
    """Info-only keys every Neutron record carries (never compared)."""
    info = {
        "id": res.id,
        "project_id": getattr(res, "project_id", None),
        "created_at": getattr(res, "created_at", None),
        "updated_at": getattr(res, "updated_at", None),
        "revision_number": getattr(res, "revision_number", None),
    }
    for name in extra:
        info[name] = getattr(res, name, None)
    return info


def network_record(res: Any) -> Record:
    return {
        "name": res.name,
        "description": res.description or "",
        "is_admin_state_up": res.is_admin_state_up,
        "is_port_security_enabled": res.is_port_security_enabled,
        "mtu": res.mtu,
        "provenance": provenance_of(res.tags),
        **_info(res, "status", "is_shared", "is_router_external"),
    }


def subnet_record(res: Any) -> Record:
    return {
        "network": res.network_id,
        "name": res.name,
        "description": res.description or "",
        "ip_version": res.ip_version,
        "cidr": res.cidr,
        "gateway_ip": res.gateway_ip,
        "allocation_pools": _pairs(res.allocation_pools, "start", "end"),
        "host_routes": _pairs(res.host_routes, "destination", "nexthop"),
        "dns_nameservers": list(res.dns_nameservers or []),
        "is_dhcp_enabled": res.is_dhcp_enabled,
        "ipv6_ra_mode": res.ipv6_ra_mode,
        "ipv6_address_mode": res.ipv6_address_mode,
        "provenance": provenance_of(res.tags),
        **_info(res, "subnet_pool_id"),
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
        "routes": _pairs(res.routes, "destination", "nexthop"),
        "provenance": provenance_of(res.tags),
        "external_network_id": network_id,
        **_info(res, "status"),
    }


def router_interface_records(port: Any) -> list[Record]:
    """One record per subnet the port sits on (IPv6 subnets of one network share a port)."""
    subnets = sorted({ip["subnet_id"] for ip in port.fixed_ips or () if ip.get("subnet_id")})
    return [
        {
            "router": port.device_id,
            "subnet": subnet,
            "id": interface_id(port.device_id, subnet),
            "provenance": None,
            "port_id": port.id,
            "project_id": port.project_id,
            "created_at": port.created_at,
            "status": port.status,
        }
        for subnet in subnets
    ]


def interface_id(router_id: str, subnet_id: str) -> str:
    """Opaque router_interface id: all that ``remove_interface`` needs."""
    return f"{router_id}:{subnet_id}"


def split_interface_id(id: str) -> tuple[str, str]:
    router, sep, subnet = id.partition(":")
    if not sep or not router or not subnet:
        raise ValueError(f"not a router_interface id (router:subnet): {id!r}")
    return router, subnet


def security_group_record(res: Any) -> Record:
    return {
        "name": res.name,
        "description": res.description or "",
        "provenance": provenance_of(res.tags),
        **_info(res, "stateful"),
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
        "provenance": None,
        **_info(res, "remote_address_group_id"),
    }


def keypair_record(res: Any) -> Record:
    return {
        "name": res.name,
        "public_key": (res.public_key or "").strip(),
        "type": res.type or "ssh",
        # Nova keypairs are addressed by name.
        "id": res.name,
        "provenance": None,
        "fingerprint": res.fingerprint,
        "user_id": getattr(res, "user_id", None),
        "created_at": res.created_at,
    }


# -- records -> SDK request attributes ------------------------------------------------------

#: Record field -> SDK attribute, where they differ.
_SDK_NAMES: dict[str, dict[str, str]] = {
    "subnet": {"network": "network_id"},
    "security_group_rule": {
        "security_group": "security_group_id",
        "ethertype": "ether_type",
        "remote_group": "remote_group_id",
    },
}

#: Fields where ``None`` means "let the cloud choose" and must not be sent as JSON null
#: (Neutron rejects a null mtu; a null description is not "").
_DROP_NONE: dict[str, frozenset[str]] = {
    "network": frozenset({"mtu", "description", "is_port_security_enabled", "is_admin_state_up"}),
    "subnet": frozenset({"description", "ipv6_ra_mode", "ipv6_address_mode", "is_dhcp_enabled"}),
    "router": frozenset({"description", "is_admin_state_up"}),
    "security_group": frozenset({"description"}),
    "security_group_rule": frozenset(
        {
            "protocol",
            "port_range_min",
            "port_range_max",
            "remote_ip_prefix",
            "remote_group",
            "description",
        }
    ),
    "keypair": frozenset({"type"}),
}


def to_sdk(kind: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """Record fields -> keyword arguments of the SDK's create/update calls.

    ``external_network`` and ``provenance`` are handled by the provider (they need lookups).
    ``gateway_ip: None`` *is* sent: on a subnet it means "no gateway".
    """
    names = _SDK_NAMES.get(kind, {})
    drop = _DROP_NONE.get(kind, frozenset())
    out: dict[str, Any] = {}
    for key, value in params.items():
        if key in ("external_network", "provenance", "id") or (value is None and key in drop):
            continue
        out[names.get(key, key)] = value
    return out
