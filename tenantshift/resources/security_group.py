"""Neutron security groups. ``default`` exists in every project: it is reconciled, never created."""

from collections.abc import Mapping
from typing import Any

from tenantshift.resources.base import REGISTRY, Field, Kind


def _default_egress_rules(_group: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Neutron gives every new group one allow-all egress rule per ethertype."""
    return [
        ("security_group_rule", {"direction": "egress", "ethertype": ethertype})
        for ethertype in ("IPv4", "IPv6")
    ]


SECURITY_GROUP = REGISTRY.register(
    Kind(
        name="security_group",
        doc="A security group, keyed by name.",
        fields=(
            Field("name", is_name=True),
            Field("description", default=""),
            # A stateless group (no connection tracking) copied stateful would filter otherwise.
            Field("stateful", default=True),
            # The user's Neutron tags (our marker is ``provenance``, never among them).
            Field("tags", default=[], unordered=True),
        ),
        key=lambda p, _: str(p["name"]),
        builtin_names=frozenset({"default"}),
        auto_children=_default_egress_rules,
    )
)
