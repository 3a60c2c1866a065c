"""Neutron ports that a migration owns: unattached ones and those of servers (``compute:*``).

Router legs are ``router_interface`` records, and DHCP, floating IP, load balancer ports belong
to the services that made them: copying one would fight that service, so they are never listed.
Ports take tags, so the marker goes in with the create like any Neutron kind.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tenantshift.providers.openstack import records as rec
from tenantshift.providers.openstack.kinds import neutron_records as nrec
from tenantshift.providers.openstack.kinds.base import (
    Listing,
    Records,
    SdkObject,
    register_handler,
)
from tenantshift.providers.openstack.kinds.neutron import NeutronHandler
from tenantshift.resources import Record


def owned_by_migration(device_owner: str | None) -> bool:
    """An unattached port, or a server's: what migrates with the tenant's workloads."""
    return not device_owner or device_owner.startswith("compute:")


def fixed_ips_request(fixed_ips: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """``[{subnet, ip_address}]`` (subnet ids) -> Neutron's ``[{subnet_id, ip_address}]``; no
    address lets Neutron pick one on that subnet."""
    out = []
    for ip in fixed_ips:
        item = {"subnet_id": ip["subnet"]}
        if ip.get("ip_address"):
            item["ip_address"] = ip["ip_address"]
        out.append(item)
    return out


def address_pairs_request(pairs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """A pair without a MAC is sent without one: Neutron then uses the port's own."""
    return [{k: v for k, v in pair.items() if v is not None} for pair in pairs]


@register_handler
class PortHandler(NeutronHandler):
    kind = "port"
    plural = "ports"
    sdk_names = {"network": "network_id", "security_groups": "security_group_ids"}
    drop_none = frozenset(
        {
            "description",
            "mac_address",
            "is_port_security_enabled",
            "is_admin_state_up",
            "binding_vnic_type",
        }
    )
    handled_fields = frozenset({"fixed_ips", "allowed_address_pairs"})
    #: The ML2 extension driver that takes a port's tags in its POST (marker and user tags).
    tags_in_create = "tag-ports-during-bulk-creation"

    def to_record(self, res: SdkObject) -> Record:
        return nrec.port_record(res)

    def to_records(self, raw: Sequence[SdkObject], listing: Listing) -> Records:
        # Filtered here: Neutron's device_owner filter matches exact values only.
        return [self.to_record(p) for p in raw if owned_by_migration(p.device_owner)]

    def candidates(self, source_id: str | None, params: Mapping[str, Any]) -> Records:
        """By our tag, then the network's ports (by name when named): ``find_in`` compares
        keys, and an unnamed port's key is its first address, which no filter expresses."""
        lister = self.ctx.conn.network.ports
        project = self.ctx.project_id
        if source_id is not None:
            tagged = self.ctx.call(
                "network.ports(tags)",
                lambda: list(lister(project_id=project, tags=rec.provenance_tag(source_id))),
            )
            if tagged:
                return [self.to_record(p) for p in tagged]
        query: dict[str, Any] = {"project_id": project, "network_id": params["network"]}
        if params.get("name"):
            query["name"] = params["name"]
        found = self.ctx.call("network.ports(network)", lambda: list(lister(**query)))
        return [self.to_record(p) for p in found if owned_by_migration(p.device_owner)]

    def request_extras(self, params: Mapping[str, Any], *, creating: bool) -> dict[str, Any]:
        extras: dict[str, Any] = {}
        if params.get("fixed_ips"):
            extras["fixed_ips"] = fixed_ips_request(params["fixed_ips"])
        if "allowed_address_pairs" in params:
            extras["allowed_address_pairs"] = address_pairs_request(
                params["allowed_address_pairs"] or []
            )
        return extras
