"""Nova servers: workloads. Their disks are copied between the conversion hosts and the server is
booted again in the destination from the copies, with its ports (fixed IPs kept), flavor,
keypair, availability zone and metadata.

The conversion hosts themselves never migrate. A server's volumes are not volume resources of
their own: they move inside the server's migration.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tenantshift.resources.base import REGISTRY, Field, Kind


def _not_on_its_own(info: Mapping[str, Any], conversion_hosts: frozenset[str]) -> str | None:
    if str(info.get("id")) in conversion_hosts:
        return "it is the source conversion host"
    return None


SERVER = REGISTRY.register(
    Kind(
        name="server",
        doc="A server with its disks and ports, keyed by name.",
        fields=(
            Field("name", is_name=True),
            Field("flavor", mapping="flavors", external="flavor", replace=True),
            Field("availability_zone", mapping="availability_zones", replace=True),
            Field("keypair", ref="keypair", replace=True),
            # In NIC order (eth0 first): the guest names its interfaces by it.
            Field("ports", ref="port", many=True, replace=True),
            Field("metadata", default={}),
        ),
        key=lambda p, _: str(p["name"]),
        workload=True,
        migrates_with=_not_on_its_own,
    )
)
