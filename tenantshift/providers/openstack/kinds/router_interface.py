"""Router interfaces: ports Neutron owns, one record per (router, subnet) leg.

There is no interface resource in the API: an interface is added and removed through its router,
listed as ports by device owner, and addressed here by the opaque id ``<router>:<subnet>``.
Ports take no tags of ours, so interfaces are matched by key.

A leg at the subnet's gateway address is added by subnet (one call). Any other address (a
router at ``.10``, a second router on the subnet, a subnet without a gateway, which Neutron
refuses by subnet) goes through a port made with that fixed IP, then attached by port id (as
os-migrate does). The port is made with the router-interface device owner, which the network's
owner may set: Neutron then gives it no automatic IPv6 (SLAAC) address, so the router gets no
leg the source router did not have; an attach that fails deletes it again.
"""

from __future__ import annotations

import contextlib
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
from tenantshift.providers.openstack.kinds.neutron_records import derived_from_mac
from tenantshift.resources import Record

#: Ports that are a router's leg on a subnet (legacy, DVR and HA routers).
ROUTER_INTERFACE_OWNERS = (
    "network:router_interface",
    "network:router_interface_distributed",
    "network:ha_router_replicated_interface",
)


#: The device owner of a leg Neutron makes itself (legacy routers); what our ports are made with.
LEG_OWNER = "network:router_interface"


def router_interface_records(port: Any) -> Records:
    """One record per subnet the port sits on (IPv6 subnets of one network share a port), with
    the port's address there. A leg not attached to any router (made by an interrupted create)
    is no interface."""
    if not port.device_id:
        return []
    addresses: dict[str, str | None] = {}
    for ip in sorted(port.fixed_ips or (), key=lambda i: str(i.get("ip_address"))):
        subnet = ip.get("subnet_id")
        if subnet and subnet not in addresses:
            address = ip.get("ip_address")
            # An address derived from the MAC is not chosen, and cannot be asked for.
            addresses[subnet] = None if derived_from_mac(address, port.mac_address) else address
    return [
        {
            "router": port.device_id,
            "subnet": subnet,
            "ip_address": addresses[subnet],
            "id": interface_id(port.device_id, subnet),
            "provenance": None,
            "port_id": port.id,
            "project_id": port.project_id,
            "created_at": port.created_at,
            "status": port.status,
        }
        for subnet in sorted(addresses)
    ]


def interface_id(router_id: str, subnet_id: str) -> str:
    """Opaque router_interface id: all that ``remove_interface`` needs."""
    return f"{router_id}:{subnet_id}"


def split_interface_id(id: str) -> tuple[str, str]:
    router, sep, subnet = id.partition(":")
    if not sep or not router or not subnet:
        raise ValueError(f"not a router_interface id (router:subnet): {id!r}")
    return router, subnet


def _added_record(answer: Any, router: str, subnet: str, address: Any) -> Record | None:
    """The record of the leg ``add_router_interface`` answered with (``port_id``,
    ``subnet_ids``), or None when the answer does not say it is on ``subnet``. The address is
    the one asked for (None: the gateway, which the cloud chose and is not compared)."""
    if not isinstance(answer, Mapping) or not answer.get("port_id"):
        return None
    subnets = answer.get("subnet_ids") or [answer.get("subnet_id")]
    if subnet not in subnets:
        return None
    return {
        "router": router,
        "subnet": subnet,
        "ip_address": address or None,
        "id": interface_id(router, subnet),
        "provenance": None,
        "port_id": str(answer["port_id"]),
    }


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
        address = attrs.get("ip_address")
        net = self.ctx.conn.network
        leg: SdkObject | None = None
        # At the gateway (the usual case) by subnet; the subnet's gateway is known when this
        # provider created or read the subnet (the same apply), else it is read.
        if address and self.ctx.subnet_gateways.get(subnet, "") != address:
            sub = self.ctx.call("network.get_subnet", lambda: net.get_subnet(subnet))
            self.ctx.subnet_gateways[subnet] = sub.gateway_ip
            if address != sub.gateway_ip:
                leg = self._leg(sub, str(address))
        port = None if leg is None else str(leg.id)
        try:
            answer = self.ctx.call(
                "network.add_interface_to_router",
                lambda: (
                    net.add_interface_to_router(router, subnet=subnet)
                    if port is None
                    else net.add_interface_to_router(router, port=port)
                ),
                recover=lambda: None if recover() is None else {},
            )
        except ProviderError:
            # "Router already has a port on subnet" (a lost response, or a second run).
            found = recover()
            if found is not None:
                return found
            if leg is not None:
                self._drop_leg(leg)
            raise
        # Neutron answers with the router's port and its subnets: no listing to read it back.
        made = _added_record(answer, router, subnet, address)
        if made is not None:
            return made
        found = recover()  # a lost answer recovered by listing, or one that names another subnet
        if found is None:
            raise ProviderError(
                f"{self.ctx.label}: interface {router}:{subnet} was added but is not listed",
                call="network.add_interface_to_router",
            )
        return found

    def _leg(self, subnet: SdkObject, address: str) -> SdkObject:
        """The port that will be the router's leg at ``address``: one an interrupted create
        left unattached, else a new one (looked for again if its response is lost)."""
        net = self.ctx.conn.network
        wanted = {"subnet_id": str(subnet.id), "ip_address": address}

        def left_over() -> SdkObject | None:
            ports = net.ports(network_id=subnet.network_id, device_owner=LEG_OWNER)
            for port in ports:
                ips = [
                    {"subnet_id": i.get("subnet_id"), "ip_address": i.get("ip_address")}
                    for i in port.fixed_ips or ()
                ]
                if not port.device_id and ips == [wanted]:
                    return port
            return None

        found = self.ctx.call("network.ports(unattached legs)", left_over)
        if found is not None:
            return found
        return self.ctx.call(
            "network.create_port(router leg)",
            lambda: net.create_port(
                network_id=subnet.network_id, device_owner=LEG_OWNER, fixed_ips=[wanted]
            ),
            recover=left_over,
        )

    def _drop_leg(self, leg: SdkObject) -> None:
        """The attach failed: the port made for it goes (it would hold the address)."""
        net = self.ctx.conn.network
        # Best effort: if it stays, the next create finds it and reuses it.
        with contextlib.suppress(ProviderError):
            self.ctx.call("network.delete_port(router leg)", lambda: net.delete_port(leg.id))

    def delete_call(self, id: str) -> None:
        router, subnet = split_interface_id(id)
        net = self.ctx.conn.network
        self.ctx.call(
            "network.remove_interface_from_router",
            lambda: net.remove_interface_from_router(router, subnet=subnet),
        )
