"""Security group rules. Neutron rules are immutable, so every field forces a replacement."""

from collections.abc import Mapping
from typing import Any

from tenantshift.resources.base import REGISTRY, Field, KeyResolver, Kind

ALL_ADDRESSES = {"IPv4": "0.0.0.0/0", "IPv6": "::/0"}


def _rule_key(p: Mapping[str, Any], key_of: KeyResolver) -> str:
    """``web/ingress/IPv4/tcp/443/0.0.0.0/0``: group, direction, ethertype, protocol, ports,
    remote (a CIDR, ``group:<key>`` or ``any``).

    A rule without a remote prefix is keyed like one with the all-addresses prefix of its
    ethertype: Neutron treats the two as one rule (creating both is a 409), so they share an
    address, and the exact ``remote_ip_prefix`` (None or the prefix) is then compared like any
    other field: a difference is a replacement, never a second rule."""
    low, high = p.get("port_range_min"), p.get("port_range_max")
    if low is None and high is None:
        ports = "any"
    elif low == high:
        ports = str(low)
    else:
        ports = f"{low}-{high}"
    if p.get("remote_group"):
        remote = f"group:{key_of(p['remote_group'])}"
    else:
        remote = p.get("remote_ip_prefix") or ALL_ADDRESSES.get(str(p.get("ethertype"))) or "any"
    protocol = p.get("protocol") or "any"
    return "/".join(
        [key_of(p["security_group"]), p["direction"], p["ethertype"], str(protocol), ports, remote]
    )


SECURITY_GROUP_RULE = REGISTRY.register(
    Kind(
        name="security_group_rule",
        doc="A rule, keyed by everything that makes it distinct.",
        fields=(
            Field("security_group", ref="security_group", replace=True),
            Field("direction", replace=True),
            Field("ethertype", replace=True, default="IPv4"),
            Field("protocol", replace=True),
            Field("port_range_min", replace=True),
            Field("port_range_max", replace=True),
            Field("remote_ip_prefix", replace=True),
            Field("remote_group", ref="security_group", replace=True),
            Field("description", replace=True, default=""),
        ),
        key=_rule_key,
        owner="security_group",
        # A rule's key is its whole content, and Neutron rules take no tags: matched by key.
        provenance=False,
    )
)
