"""Neutron subnets: addressing is immutable, pools, routes and DNS are updated in place."""

from tenantshift.resources.base import REGISTRY, Field, Kind

SUBNET = REGISTRY.register(
    Kind(
        name="subnet",
        doc="A subnet, keyed by its network's key and its own name.",
        fields=(
            Field("network", ref="network", replace=True),
            Field("name", is_name=True),
            Field("description", default=""),
            Field("ip_version", replace=True, default=4),
            Field("cidr", replace=True),
            Field("gateway_ip"),
            Field("allocation_pools", default=[], unordered=True),
            Field("host_routes", default=[], unordered=True),
            # Resolver order matters to clients, so DNS servers keep the order they were given.
            Field("dns_nameservers", default=[]),
            Field("is_dhcp_enabled", default=True),
            # Which ports may take addresses here (e.g. only floating IPs, routers' gateways).
            Field("service_types", default=[], unordered=True),
            Field("ipv6_ra_mode", replace=True),
            Field("ipv6_address_mode", replace=True),
            # The user's Neutron tags (our marker is ``provenance``, never among them).
            Field("tags", default=[], unordered=True),
        ),
        key=lambda p, key_of: f"{key_of(p['network'])}/{p['name']}",
    )
)
