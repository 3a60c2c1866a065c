"""A router's interface on a subnet (a port Neutron owns; it has no tags, so no provenance).

A router has at most one leg per subnet (Neutron refuses a second), so ``router/subnet`` is the
key; several routers on one subnet, or one router on several subnets of one network, are
several interfaces. The leg's address is part of it: a router at ``.10`` instead of the
gateway address, or on a subnet without a gateway, keeps that address in the copy.
"""

from tenantshift.resources.base import REGISTRY, Field, Kind

ROUTER_INTERFACE = REGISTRY.register(
    Kind(
        name="router_interface",
        doc="Keyed by the router's key and the subnet's key.",
        fields=(
            Field("router", ref="router", replace=True),
            Field("subnet", ref="subnet", replace=True),
            # The router's address on the subnet (the port's fixed IP there). None lets the
            # cloud choose (the gateway address), and is then not compared: plans and snapshot
            # files made before the address was modelled still read as no change.
            Field("ip_address", replace=True, computed=True),
        ),
        key=lambda p, key_of: f"{key_of(p['router'])}/{key_of(p['subnet'])}",
        provenance=False,
        # Neutron adds or removes one interface of a router at a time: at parallelism 50, adds
        # sent at once to one router queued there until they timed out.
        serial_by="router",
    )
)
