"""The in-memory cloud's per-kind rules: small behaviour objects, one per kind that has any.

``MemoryProvider`` keeps only what every kind shares (ids, references must exist, a referenced
resource cannot be deleted, markers); what Neutron does for one kind only (the ``default``
group, the egress rules of a new group, 409 on a duplicate rule, an interface a route needs)
is here. A new kind with rules of its own (an in-use volume cannot be deleted) adds a
``MemoryBehaviour`` subclass and registers it; a kind without any needs nothing.
"""

from __future__ import annotations

import ipaddress
import uuid
from collections.abc import Mapping
from typing import Any, ClassVar, Protocol

from tenantshift.providers.base import NotFoundError, ProviderError, find_in
from tenantshift.providers.memory_workloads import MemoryData
from tenantshift.resources import REGISTRY, Field, Record


class MemoryCloud(Protocol):
    """What a behaviour sees of the in-memory cloud (called with its lock held)."""

    external_networks: tuple[str, ...]
    data: MemoryData

    def records_of(self, kind: str) -> dict[str, Record]:
        """The live records of a kind by id (mutable: behaviours may cascade deletes)."""
        ...

    def insert(
        self, kind: str, params: dict[str, Any], provenance: str | None = None
    ) -> Record: ...


class MemoryBehaviour:
    """Default rules: none beyond the shared ones. Subclasses override the hooks they need."""

    kind: ClassVar[str | None] = None
    #: Fields the real API sets by calls of their own after the create (Cinder's bootable
    #: flag and image metadata): the memory cloud does the same, one counted call more.
    set_after_create: ClassVar[frozenset[str]] = frozenset()
    #: The marker goes on by a call of its own after the create (Neutron's tags where the
    #: POST cannot carry them), not in the create itself.
    marker_after_create: ClassVar[bool] = False
    #: A second resource with the same key is a 409 (Neutron refuses duplicate rules, a second
    #: leg of a router on one subnet).
    unique: ClassVar[bool] = False

    def seed(self, cloud: MemoryCloud) -> None:
        """What every new project already has of this kind."""

    def check_create(self, cloud: MemoryCloud, params: Mapping[str, Any]) -> None:
        if self.unique and self.kind is not None:
            same = find_in(cloud.records_of(self.kind).values(), self.kind, None, params)
            if same is not None:
                raise ProviderError(f"409 Conflict: {self.kind} already exists", call="create")

    def after_create(self, cloud: MemoryCloud, record: Record) -> None:
        """What the cloud creates by itself along with a new resource."""

    def check_delete(self, cloud: MemoryCloud, record: Record) -> None:
        """Raise if the cloud would refuse the delete for a reason of this kind's own."""

    def on_delete(self, cloud: MemoryCloud, record: Record) -> None:
        """What the cloud deletes along with the resource."""

    def blocks_delete(self, field: Field) -> bool:
        """Whether a resource of this kind referencing another through ``field`` keeps that
        other from being deleted (409 in use)."""
        return True


_BEHAVIOURS: dict[str, MemoryBehaviour] = {}
_DEFAULT = MemoryBehaviour()


def register_behaviour(behaviour: MemoryBehaviour) -> MemoryBehaviour:
    name = behaviour.kind
    if name is None or name not in REGISTRY:
        raise ValueError(f"{type(behaviour).__name__}: kind {name!r} is not declared")
    if name in _BEHAVIOURS:
        raise ValueError(f"kind {name!r} has two memory behaviours")
    _BEHAVIOURS[name] = behaviour
    return behaviour


def behaviour(kind: str) -> MemoryBehaviour:
    return _BEHAVIOURS.get(kind, _DEFAULT)


def add_egress_rules(cloud: MemoryCloud, group_id: str) -> None:
    for ethertype in ("IPv4", "IPv6"):
        cloud.insert(
            "security_group_rule",
            {"security_group": group_id, "direction": "egress", "ethertype": ethertype},
        )


class SecurityGroups(MemoryBehaviour):
    """Every project has a ``default`` group; a new group gets two egress rules; a group's
    rules go with it."""

    kind = "security_group"

    def seed(self, cloud: MemoryCloud) -> None:
        default = cloud.insert("security_group", {"name": "default", "description": "Default"})
        for ethertype in ("IPv4", "IPv6"):
            cloud.insert(
                "security_group_rule",
                {
                    "security_group": default["id"],
                    "direction": "ingress",
                    "ethertype": ethertype,
                    "remote_group": default["id"],
                },
            )
        add_egress_rules(cloud, default["id"])

    def check_create(self, cloud: MemoryCloud, params: Mapping[str, Any]) -> None:
        if params.get("name") == "default":
            raise ProviderError("a project has exactly one 'default' group", call="create")

    def after_create(self, cloud: MemoryCloud, record: Record) -> None:
        add_egress_rules(cloud, record["id"])

    def on_delete(self, cloud: MemoryCloud, record: Record) -> None:
        rules = cloud.records_of("security_group_rule")
        for rule_id in [r for r, rule in rules.items() if rule["security_group"] == record["id"]]:
            del rules[rule_id]


class SecurityGroupRules(MemoryBehaviour):
    kind = "security_group_rule"
    unique = True

    def blocks_delete(self, field: Field) -> bool:
        # A rule's own group deletes it (``SecurityGroups.on_delete``); a rule naming another
        # group as its remote keeps that group.
        return field.name != REGISTRY["security_group_rule"].owner


class Routers(MemoryBehaviour):
    kind = "router"

    def check_create(self, cloud: MemoryCloud, params: Mapping[str, Any]) -> None:
        ext = params.get("external_network")
        if ext and ext not in cloud.external_networks:
            raise NotFoundError(f"external network {ext!r} not found", call="create")


class RouterInterfaces(MemoryBehaviour):
    """A leg made without an address stays without one here (Neutron would put it at the
    gateway): memory subnets are edited in place by tests, and an address would go stale."""

    kind = "router_interface"
    unique = True

    def check_delete(self, cloud: MemoryCloud, record: Record) -> None:
        """Neutron keeps an interface while a static route's nexthop lies in its subnet."""
        subnet = cloud.records_of("subnet").get(record["subnet"])
        router = cloud.records_of("router").get(record["router"])
        if subnet is None or router is None or not subnet.get("cidr"):
            return
        cidr = ipaddress.ip_network(subnet["cidr"], strict=False)
        for route in router.get("routes") or []:
            if ipaddress.ip_address(route["nexthop"]) in cidr:
                raise ProviderError(
                    f"409 Conflict: router interface for subnet {subnet['id']} on router "
                    f"{router['id']} cannot be deleted, as it is required by one or more routes",
                    call="delete",
                )


class Ports(MemoryBehaviour):
    """Neutron picks a MAC for a port created without one (``workloads.preserve_macs`` off)."""

    kind = "port"

    def after_create(self, cloud: MemoryCloud, record: Record) -> None:
        if record.get("mac_address") is None:
            record["mac_address"] = "fa:16:3e:" + ":".join(
                f"{b:02x}" for b in uuid.uuid4().bytes[:3]
            )


class Networks(MemoryBehaviour):
    """Neutron tags a network by ``PUT .../tags`` after its POST: a kill in between leaves an
    unmarked network."""

    kind = "network"
    marker_after_create = True


class Volumes(MemoryBehaviour):
    """Cinder: a new volume is ``available`` and empty; the bootable flag and image metadata
    are actions on it afterwards; an attached volume cannot be deleted."""

    kind = "volume"
    set_after_create = frozenset({"is_bootable", "image_metadata"})

    def after_create(self, cloud: MemoryCloud, record: Record) -> None:
        record.update(status="available", attached_to=[], migrated=None, temporary=False)
        record["updated_at"] = record["created_at"]
        cloud.data.blocks[record["id"]] = b""

    def check_delete(self, cloud: MemoryCloud, record: Record) -> None:
        if record.get("attached_to"):
            raise ProviderError(
                f"400 Bad Request: volume {record['id']} is in-use", call="delete volume"
            )

    def on_delete(self, cloud: MemoryCloud, record: Record) -> None:
        cloud.data.blocks.pop(record["id"], None)


class Images(MemoryBehaviour):
    """Glance: a new image is ``queued`` without data, and unprotected until it is marked."""

    kind = "image"

    def after_create(self, cloud: MemoryCloud, record: Record) -> None:
        record.update(status="queued", migrated=None, temporary=False, protected=False)
        record.update(size=None, checksum=None, os_hash_algo=None, os_hash_value=None)

    def on_delete(self, cloud: MemoryCloud, record: Record) -> None:
        cloud.data.images.pop(record["id"], None)


for _behaviour in (
    Networks(),
    Volumes(),
    Images(),
    SecurityGroups(),
    SecurityGroupRules(),
    Routers(),
    RouterInterfaces(),
    Ports(),
):
    register_behaviour(_behaviour)
