"""Neutron networks owned by the tenant (external and shared networks are not migrated)."""

from tenantshift.resources.base import REGISTRY, Field, Kind

NETWORK = REGISTRY.register(
    Kind(
        name="network",
        doc="A tenant network. Keyed by name.",
        fields=(
            Field("name", is_name=True),
            Field("description", default=""),
            Field("is_admin_state_up", default=True),
            Field("is_port_security_enabled", default=True),
            Field("mtu"),
            # The user's Neutron tags (our marker is ``provenance``, never among them).
            Field("tags", default=[], unordered=True),
        ),
        key=lambda p, _: str(p["name"]),
    )
)
