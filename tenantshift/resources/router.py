"""Neutron routers; the gateway points at an external network by name, through the map."""

from tenantshift.resources.base import REGISTRY, Field, Kind

ROUTER = REGISTRY.register(
    Kind(
        name="router",
        doc="A router, keyed by name. Static routes are set once its interfaces exist.",
        fields=(
            Field("name", is_name=True),
            Field("description", default=""),
            Field("is_admin_state_up", default=True),
            Field("external_network", external="external_network", mapping="external_networks"),
            Field("routes", default=[], unordered=True, late=True),
            # The user's Neutron tags (our marker is ``provenance``, never among them).
            Field("tags", default=[], unordered=True),
        ),
        key=lambda p, _: str(p["name"]),
    )
)
