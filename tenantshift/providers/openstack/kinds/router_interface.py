"""Router interfaces: ports Neutron owns, one record per (router, subnet) leg.

There is no interface resource in the API: an interface is added and removed through its router,
listed as ports by device owner, and addressed here by the opaque id ``<router>:<subnet>``.
Ports take no tags of ours, so interfaces are matched by key.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tenantshift.providers.base import ProviderError
from tenantshift.providers.openstack.kinds.base import (
    KindHandler,
    Listing,
    Records,
    Recover,
    SdkObject,
    SdkObjects,
    register_handler,
)
from tenantshift.resources import Record

#: Ports that are a router's leg on a subnet (legacy, DVR and HA routers).
ROUTER_INTERFACE_OWNERS = (
    "network:router_interface",
    "network:router_interface_distributed",
    "network:ha_router_replicated_interface",
)


def router_interface_records(port: Any) -> Records:
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


@register_handler
class RouterInterfaceHandler(KindHandler):
    kind = "router_interface"

    def list(self, project_id: str) -> SdkObjects:
        owners = list(ROUTER_INTERFACE_OWNERS)
        return list(self.ctx.conn.network.ports(project_id=project_id, device_owner=owners))

    def to_record(self, res: SdkObject) -> Record:
        raise NotImplementedError("a port is one record per subnet: use router_interface_records")

    def to_records(self, raw: Sequence[SdkObject], listing: Listing) -> Records:
        return [r for p in raw for r in router_interface_records(p)]

    def fetch(self, id: str) -> SdkObject:
        raise NotImplementedError("interfaces are read through get (a port is several records)")

    def get(self, id: str) -> Record | None:
        router, _subnet = split_interface_id(id)
        found = [r for r in self._interfaces(device_id=router) if r["id"] == id]
        return found[0] if found else None

    def candidates(self, source_id: str | None, params: Mapping[str, Any]) -> Records:
        return self._interfaces(device_id=params["router"])

    def _interfaces(self, **query: Any) -> Records:
        owners = list(ROUTER_INTERFACE_OWNERS)
        net = self.ctx.conn.network
        ports = self.ctx.call(
            "network.ports(router interfaces)",
            lambda: list(net.ports(device_owner=owners, **query)),
        )
        return [r for p in ports for r in router_interface_records(p)]

    def create_call(self, attrs: dict[str, Any], recover: Recover) -> SdkObject | Record:
        router, subnet = str(attrs["router"]), str(attrs["subnet"])
        net = self.ctx.conn.network
        try:
            self.ctx.call(
                "network.add_interface_to_router",
                lambda: net.add_interface_to_router(router, subnet=subnet),
                recover=lambda: None if recover() is None else {},
            )
        except ProviderError:
            # "Router already has a port on subnet" (a lost response, or a second run).
            found = recover()
            if found is not None:
                return found
            raise
        found = recover()
        if found is None:
            raise ProviderError(
                f"{self.ctx.label}: interface {router}:{subnet} was added but is not listed",
                call="network.add_interface_to_router",
            )
        return found

    def delete_call(self, id: str) -> None:
        router, subnet = split_interface_id(id)
        net = self.ctx.conn.network
        self.ctx.call(
            "network.remove_interface_from_router",
            lambda: net.remove_interface_from_router(router, subnet=subnet),
        )
