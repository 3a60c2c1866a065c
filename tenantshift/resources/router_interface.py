"""A router's interface on a subnet (a port Neutron owns; it has no tags, so no provenance)."""

from tenantshift.resources.base import REGISTRY, Field, Kind

ROUTER_INTERFACE = REGISTRY.register(
    Kind(
        name="router_interface",
        doc="Keyed by the router's key and the subnet's key.",
        fields=(
            Field("router", ref="router", replace=True),
            Field("subnet", ref="subnet", replace=True),
        ),
        key=lambda p, key_of: f"{key_of(p['router'])}/{key_of(p['subnet'])}",
        provenance=False,
    )
)
